//! Drives the real `probewatch` binary on the shared real dumps and on files
//! written here: the table, the JSON contract of `probe --json`, thread-count
//! determinism, clear errors for bad input, and the README's commands.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::shared_dumps;

fn psrole() -> PathBuf {
    shared_dumps().join("streusle-ps_role-minilm.safetensors")
}

fn probewatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_probewatch"))
        .args(args)
        .output()
        .expect("running probewatch")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "probewatch failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// `probewatch [pre…] probe FILE [extra…] --json`, parsed.
fn probe_json(pre: &[&str], file: &Path, extra: &[&str]) -> Value {
    let f = file.to_str().unwrap();
    let args: Vec<&str> = pre
        .iter()
        .copied()
        .chain(["probe", f])
        .chain(extra.iter().copied())
        .chain(["--json"])
        .collect();
    serde_json::from_str(&stdout(&probewatch(&args))).unwrap()
}

fn json_without_seconds(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("seconds");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

#[test]
fn probe_table_reproduces_reference_layer6() {
    let p = psrole();
    let out = stdout(&probewatch(&[
        "probe",
        p.to_str().unwrap(),
        "--layers",
        "6",
    ]));
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("6 "))
        .unwrap_or_else(|| panic!("no layer-6 row in:\n{out}"));
    // Reference DirectProbe (Python + Gurobi): 40 clusters, 48.25 % test accuracy.
    assert!(row.contains("40/40"), "{row}");
    assert!(row.contains("48.25%"), "{row}");
    assert!(out.contains("task ps_role"), "{out}");
}

#[test]
fn probe_json_contract_and_reference_distances() {
    let v = probe_json(&[], &psrole(), &["--layers", "6"]);
    assert_eq!(v["task"], "ps_role");
    assert_eq!(v["step"], 0);
    assert_eq!(v["labels"].as_array().unwrap().len(), 41);
    assert_eq!(v["splits"]["train"], 462);
    assert_eq!(v["splits"]["test"], 485);
    let l = &v["layers"][0];
    assert_eq!(l["layer"], 6);
    assert_eq!(l["clusters"], 40);
    assert_eq!(l["clusters_per_label"].as_array().unwrap().len(), 41);
    let ld = l["label_distance"].as_array().unwrap();
    assert_eq!(ld.len(), 40 * 39 / 2);
    for e in ld {
        let e = e.as_array().unwrap();
        assert_eq!(e.len(), 3);
        assert!(e[0].as_u64().unwrap() < e[1].as_u64().unwrap());
        assert!(e[2].as_f64().unwrap() > 0.0);
    }
    let mins = l["min_label_distance"].as_array().unwrap();
    assert_eq!(mins.len(), 41);
    assert_eq!(
        mins.iter().filter(|m| m.is_null()).count(),
        1,
        "one label is absent from train"
    );
    // 234 of 485 test items.
    let acc = l["accuracy"]["test"].as_f64().unwrap();
    assert!((acc - 234.0 / 485.0).abs() < 1e-12, "{acc}");
    let sim = l["similarity"]["train_test"].as_f64().unwrap();
    assert!(sim > 0.5 && sim <= 1.0, "{sim}");
    assert!(l["seconds"].as_f64().unwrap() >= 0.0);
    // Reference cluster distances: min / mean / max 0.979 / 3.152 / 9.474.
    let cd = &l["cluster_distance"];
    for (key, want) in [("min", 0.979), ("mean", 3.152), ("max", 9.474)] {
        let got = cd[key].as_f64().unwrap();
        assert!((got - want).abs() < 5e-4, "{key}: {got} vs {want}");
    }
    assert_eq!(cd["pairs"], 780);
    assert_eq!(cd["zero_pairs"], 0);
}

#[test]
fn layer0_coinciding_points_are_handled() {
    let v = probe_json(&[], &psrole(), &["--layers", "0"]);
    let l = &v["layers"][0];
    // Exact DESIGN §2 semantics (see README, "Reference numbers"): coinciding
    // points of different labels never merge with anything that would make
    // their hulls intersect, so layer 0 has more clusters than labels.
    let clusters = l["clusters"].as_u64().unwrap();
    assert_eq!(clusters, 306);
    let cd = &l["cluster_distance"];
    assert_eq!(cd["min"].as_f64().unwrap(), 0.0);
    assert!(cd["zero_pairs"].as_u64().unwrap() > 0);
    let acc = l["accuracy"]["test"].as_f64().unwrap();
    assert!((acc - 115.0 / 485.0).abs() < 1e-12, "{acc}");
}

#[test]
fn output_is_identical_for_one_and_two_threads() {
    let p = psrole();
    let run = |threads: &str| -> Value {
        json_without_seconds(probe_json(
            &["--threads", threads],
            &p,
            &["--layers", "0,5,6"],
        ))
    };
    assert_eq!(run("1"), run("2"));
}

#[test]
fn multi_task_dump_needs_a_task() {
    let f = shared_dumps().join("crosstask/step-50.safetensors");
    let o = probewatch(&["probe", f.to_str().unwrap(), "--layers", "6"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ps_fxn") && err.contains("ps_role"), "{err}");
    let v = probe_json(&[], &f, &["--task", "ps_fxn", "--layers", "6"]);
    assert_eq!(v["step"], 50);
    assert_eq!(v["task"], "ps_fxn");
    assert_eq!(v["labels"].as_array().unwrap().len(), 36);
}

#[test]
fn truncated_dump_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(psrole()).unwrap();
    let f = dir.path().join("cut.safetensors");
    std::fs::write(&f, &bytes[..bytes.len() - 1000]).unwrap();
    let o = probewatch(&["probe", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cut.safetensors"), "{err}");
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn missing_file_and_unknown_layer_are_clear_errors() {
    let o = probewatch(&["probe", "/nonexistent/acts.safetensors"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/nonexistent/acts.safetensors"), "{err}");

    let p = psrole();
    let o = probewatch(&["probe", p.to_str().unwrap(), "--layers", "9"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no layer 9") && err.contains("[0, 1, 2, 3, 4, 5, 6]"),
        "{err}"
    );
}

#[test]
fn nan_activations_name_the_layer_and_rows() {
    use safetensors::tensor::{Dtype, TensorView};
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("nan-7.safetensors");
    let mut layer = [0.5f32; 6 * 2];
    layer[2] = f32::NAN;
    layer[9] = f32::INFINITY;
    let layer_bytes: Vec<u8> = layer.iter().flat_map(|v| v.to_le_bytes()).collect();
    let labels: Vec<u8> = [0i64, 1, 0, 1, 0, 1]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let tensors = vec![
        (
            "layer.0",
            TensorView::new(Dtype::F32, vec![6, 2], &layer_bytes).unwrap(),
        ),
        (
            "labels",
            TensorView::new(Dtype::I64, vec![6], &labels).unwrap(),
        ),
    ];
    let mut meta = std::collections::HashMap::new();
    meta.insert("label_names".to_string(), r#"["a","b"]"#.to_string());
    safetensors::serialize_to_file(tensors, Some(meta), &f).unwrap();
    let o = probewatch(&["probe", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nan-7.safetensors"), "{err}");
    assert!(err.contains("layer 0") || err.contains("layer.0"), "{err}");
    assert!(err.contains('2'), "two bad rows: {err}");
}

/// The README's two set-up commands: the test command is what `.ci/run`
/// runs, and the first command works as written.
#[test]
fn readme_commands_are_live() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    let runs: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("cargo run --release -- "))
        .collect();
    assert!(
        !runs.is_empty(),
        "README has `cargo run --release -- …` lines"
    );
    // The first of the two set-up commands is the demo; CI smoke-runs it.
    assert_eq!(runs[0], "cargo run --release -- demo");
    assert!(
        ci.lines()
            .any(|l| l.trim_start().starts_with("\"$bin\" demo")),
        ".ci/run must smoke-run the demo"
    );
    let test_cmd = readme
        .lines()
        .find(|l| l.starts_with("cargo test"))
        .expect("README has a `cargo test` line");
    assert!(
        ci.lines()
            .any(|l| l.trim() == format!("{test_cmd} --locked") || l.trim() == test_cmd),
        ".ci/run must run the README's test command `{test_cmd}`"
    );
    for line in runs {
        let args: Vec<&str> = line["cargo run --release -- ".len()..]
            .split_whitespace()
            .collect();
        match args[0] {
            // Runs until Ctrl-C: tests/daemon.rs drives it (demo_smoke).
            "demo" => {}
            // A benchmark run takes minutes; .ci/run runs a quick pass.
            "bench" => {}
            _ => {
                // Paths in the README are relative to the project root.
                let o = Command::new(env!("CARGO_BIN_EXE_probewatch"))
                    .args(&args)
                    .current_dir(root)
                    .output()
                    .unwrap();
                assert!(
                    o.status.success(),
                    "`{line}` failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
    }
}
