//! Parity of the Rust encoder with HF transformers: every hidden state of
//! every fixture model (tests/fixtures/encoder/, made by
//! scripts/make_encoder_fixtures.py) within 1e-4 max abs difference.

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use source::encoder::Encoder;

const TOLERANCE: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/encoder")
        .join(name)
}

/// The reference: (ids, hidden states per layer as row-major f32) per sequence.
fn reference(dir: &Path) -> Vec<(Vec<u32>, Vec<Vec<f32>>)> {
    let bytes = std::fs::read(dir.join("hidden_states.safetensors")).expect("reference file");
    let st = SafeTensors::deserialize(&bytes).expect("reference parses");
    let mut out = Vec::new();
    for s in 0.. {
        let Ok(ids) = st.tensor(&format!("ids.{s}")) else {
            break;
        };
        assert_eq!(ids.dtype(), Dtype::I64);
        let ids: Vec<u32> = ids
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect();
        let mut layers = Vec::new();
        for l in 0.. {
            let Ok(h) = st.tensor(&format!("hidden.{s}.{l}")) else {
                break;
            };
            assert_eq!(h.dtype(), Dtype::F32);
            layers.push(
                h.data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            );
        }
        out.push((ids, layers));
    }
    assert_eq!(
        out.len(),
        3,
        "three reference sequences in {}",
        dir.display()
    );
    out
}

/// Max abs difference over all layers and sequences; asserts shapes.
fn max_diff(name: &str) -> f32 {
    let dir = fixture(name);
    let enc = Encoder::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    let refs = reference(&dir);
    let mut worst = 0f32;
    let seqs: Vec<Vec<u32>> = refs.iter().map(|(ids, _)| ids.clone()).collect();
    let batched = enc.encode_many(&seqs, 2).expect("batch forward");
    for ((ids, layers), batch) in refs.iter().zip(&batched) {
        let ours = enc.hidden_states(ids).expect("forward");
        assert_eq!(ours.len(), layers.len(), "{name}: number of hidden states");
        assert_eq!(ours.len(), enc.num_layers() + 1);
        assert_eq!(&ours, batch, "{name}: encode_many equals hidden_states");
        for (l, (o, r)) in ours.iter().zip(layers).enumerate() {
            assert_eq!(o.dim(), (ids.len(), enc.hidden_size()), "{name} layer {l}");
            let d = o
                .iter()
                .zip(r)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(d.is_finite());
            worst = worst.max(d);
        }
    }
    eprintln!("{name}: max abs difference {worst:e}");
    worst
}

#[test]
fn bert_matches_transformers() {
    assert!(max_diff("bert") <= TOLERANCE);
}

#[test]
fn bert_f16_sharded_with_prefix_matches_transformers() {
    assert!(max_diff("bert-sharded") <= TOLERANCE);
}

#[test]
fn roberta_matches_transformers() {
    assert!(max_diff("roberta") <= TOLERANCE);
}

#[test]
fn distilbert_matches_transformers() {
    assert!(max_diff("distilbert") <= TOLERANCE);
}

// The real-model check runs in CI through the whole pipeline:
// tests/extract.rs compares `probewatch extract` on all-MiniLM-L6-v2 with the
// shared dumps HF transformers wrote. scripts/encoder_minilm_reference.py
// remains a dev-time tool for speed comparisons with PyTorch.
