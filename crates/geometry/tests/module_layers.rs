//! The crate's internal shape, checked on its sources (after rust-analyzer's
//! `tidy` tests): its modules import each other in one direction (the table
//! in `lib.rs`), and no source file grows past 1,000 lines. The invariants of
//! the crate as a whole (numeric dependencies only, no I/O, no clock, no
//! logging) are the workspace's, in `tests/architecture.rs`.

use std::path::{Path, PathBuf};

/// The modules in the order of `lib.rs`'s table: each may import only the
/// modules before it.
const LAYERS: &[&str] = &[
    "input",
    "rng",
    "hull",
    "working_set",
    "directprobe",
    "classifier",
    "layer_report",
    "memory",
    "measures",
    "synth",
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, sorted.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src readable")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            out.extend(sources(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out
}

/// The top-level module a source file belongs to (`lib` for `lib.rs`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

/// Lines of code of `text`, without comments and without the inline
/// `#[cfg(test)] mod tests { … }` at the end of a file.
fn code_lines(text: &str) -> Vec<&str> {
    let end = text.find("#[cfg(test)]\nmod tests {").unwrap_or(text.len());
    text[..end]
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect()
}

#[test]
fn modules_import_downwards_only() {
    let src = manifest_dir().join("src");
    for file in sources(&src) {
        let module = module_of(&src, &file);
        // Test files may use anything (e.g. `synth` for data).
        if module == "lib" || file.file_name().is_some_and(|f| f == "tests.rs") {
            continue;
        }
        let rank = LAYERS
            .iter()
            .position(|m| *m == module)
            .unwrap_or_else(|| panic!("module {module} missing from LAYERS and lib.rs's table"));
        // In a file directly under `src/`, `super::` is the crate root too.
        let top_level = file.parent() == Some(src.as_path());
        let text = std::fs::read_to_string(&file).expect("source");
        for line in code_lines(&text) {
            for (k, m) in LAYERS.iter().enumerate() {
                let mut paths = vec![format!("crate::{m}")];
                if top_level {
                    paths.push(format!("super::{m}"));
                }
                let imports = paths.iter().any(|path| {
                    line.match_indices(path.as_str()).any(|(i, _)| {
                        !line[i + path.len()..]
                            .starts_with(|c: char| c == '_' || c.is_alphanumeric())
                    })
                });
                assert!(
                    !imports || k <= rank,
                    "{}: {module} imports {m}, which is not above it in lib.rs's table: {line:?}",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn no_source_file_over_1000_lines() {
    for file in sources(&manifest_dir().join("src")) {
        let n = std::fs::read_to_string(&file)
            .expect("source")
            .lines()
            .count();
        assert!(n <= 1000, "{} has {n} lines: split it", file.display());
    }
}
