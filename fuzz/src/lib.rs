//! Helpers shared by the fuzz targets: a per-process scratch folder (on
//! `/dev/shm` when it exists) for the entry points that read files, the
//! paths of the project's fixtures, and the assertions every target makes
//! about an error message.
//!
//! Nothing here parses anything: each target calls the library's own entry
//! point (the one the daemon or the CLI calls) on the fuzzer's bytes.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A folder private to this process, created on first use, under
/// `$PROBEWATCH_FUZZ_SCRATCH` (set by `scripts/fuzz.sh`, which removes it
/// afterwards), else `/dev/shm` or the temporary folder.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if let Some(dir) = std::env::var_os("PROBEWATCH_FUZZ_SCRATCH") {
            PathBuf::from(dir)
        } else if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("probewatch-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the fuzz scratch folder");
        dir
    })
}

/// Writes `bytes` to `name` in the scratch folder and returns its path.
pub fn write_scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("creating a scratch sub-folder");
    }
    std::fs::write(&path, bytes).expect("writing a scratch file");
    path
}

/// The project's root (the fuzz crate's parent).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the fuzz crate lives in the project")
        .to_path_buf()
}

/// Panics unless `message` names `path` (every parser error must say which
/// file is wrong).
pub fn assert_names(message: &str, path: &Path) {
    let shown = path.display().to_string();
    assert!(
        message.contains(&shown),
        "error does not name the file {shown}: {message}"
    );
}
