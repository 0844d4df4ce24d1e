//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

/// `../shared/data/dumps` beside the checkout; panics with a clear message
/// when it is missing.
pub fn shared_dumps() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/dumps");
    assert!(
        p.is_dir(),
        "the shared data folder {} is required (it sits beside the project checkout)",
        p.display()
    );
    p
}
