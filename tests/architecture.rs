//! The architecture invariants of ARCHITECTURE.md that a test can check:
//! the crate graph points one way (down), the numeric core has no I/O
//! dependency and no I/O in its code, and the user's binary carries no
//! HTTP client and no developer tooling.
//!
//! The manifests are read with the `toml` crate; the binary's dependency
//! tree comes from `cargo tree` (offline, from Cargo.lock).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `[dependencies]` (normal, not dev) of a manifest, by the name the
/// code uses.
fn normal_dependencies(manifest: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(manifest)
        .unwrap_or_else(|e| panic!("reading {}: {e}", manifest.display()));
    let doc: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("parsing {}: {e}", manifest.display()));
    doc.get("dependencies")
        .and_then(|d| d.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

/// Each library crate and the workspace crates it may depend on: a layer
/// may use only layers below it, so the graph has no cycle and points down.
fn layers() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("geometry", &[][..]),
        ("source", &["geometry"][..]),
        ("analysis", &["geometry", "source"][..]),
        ("store", &[][..]),
        ("metrics", &[][..]),
        ("view", &["geometry", "analysis", "store", "metrics"][..]),
        ("report", &["geometry", "store", "view"][..]),
        (
            "daemon",
            &[
                "geometry", "source", "analysis", "store", "metrics", "view", "report",
            ][..],
        ),
    ])
}

/// Every workspace crate name a manifest may mention.
fn workspace_crates() -> BTreeSet<&'static str> {
    let mut all: BTreeSet<&str> = layers().keys().copied().collect();
    all.insert("harness");
    all
}

#[test]
fn library_crates_depend_only_on_lower_layers() {
    let all = workspace_crates();
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("crates")).expect("crates/ is readable") {
        let dir = entry.expect("a crates/ entry").path();
        let manifest = dir.join("Cargo.toml");
        if !manifest.is_file() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let deps = normal_dependencies(&manifest);
        let internal: BTreeSet<&str> = deps
            .iter()
            .map(String::as_str)
            .filter(|d| all.contains(d))
            .collect();
        if name == "harness" {
            // Dev tooling: it may drive anything, nothing may depend on it.
            continue;
        }
        let allowed = layers()
            .get(name.as_str())
            .copied()
            .unwrap_or_else(|| panic!("crates/{name} is not in the layer map of this test"));
        let extra: Vec<&&str> = internal.iter().filter(|d| !allowed.contains(d)).collect();
        assert!(
            extra.is_empty(),
            "crates/{name} depends on {extra:?}, which are not below it (allowed: {allowed:?})"
        );
        seen.insert(name);
    }
    for name in layers().keys() {
        assert!(seen.contains(*name), "crates/{name} is missing");
    }
}

#[test]
fn geometry_has_no_io_dependency_and_no_io_in_its_code() {
    let crate_dir = root().join("crates/geometry");
    let deps = normal_dependencies(&crate_dir.join("Cargo.toml"));
    let allowed: BTreeSet<&str> = ["faer", "rayon", "serde", "thiserror"].into();
    let extra: Vec<&String> = deps
        .iter()
        .filter(|d| !allowed.contains(d.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "geometry may depend on {allowed:?} only; it also has {extra:?}"
    );
    // No file, network, clock, environment, logging or async runtime in the
    // numeric core's code (tests included: they use generated data).
    let forbidden = [
        "std::fs",
        "std::net",
        "std::env",
        "std::time",
        "Instant::now",
        "SystemTime",
        "tokio",
        "tracing",
        "println!",
        "eprintln!",
    ];
    let mut stack = vec![crate_dir.join("src")];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable source folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&path).expect("readable source");
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for f in forbidden {
                    assert!(
                        !code.contains(f),
                        "{}:{}: `{f}` in the numeric core: {line}",
                        path.display(),
                        n + 1
                    );
                }
            }
        }
    }
    assert!(files > 5, "read {files} geometry source files");
}

#[test]
fn the_binary_ships_no_http_client_and_no_dev_tooling() {
    let out = Command::new(env!("CARGO"))
        .current_dir(root())
        .args([
            "tree",
            "--offline",
            "--locked",
            "-p",
            "probewatch",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let packages: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(packages.contains("probewatch-daemon"), "{packages:?}");
    for banned in [
        "ureq",
        "reqwest",
        "probewatch-harness",
        "xtask",
        "clarabel",
        "prometheus-parse",
    ] {
        assert!(
            !packages.contains(banned),
            "the probewatch binary depends on {banned}: {packages:?}"
        );
    }
}

#[test]
fn the_user_help_lists_the_user_commands_only() {
    let out = Command::new(env!("CARGO_BIN_EXE_probewatch"))
        .arg("--help")
        .output()
        .expect("running probewatch --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .expect("a Commands section")
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        [
            "probe",
            "watch",
            "extract",
            "check-config",
            "demo",
            "export-openmetrics",
            "report",
            "help"
        ],
        "{help}"
    );
}
