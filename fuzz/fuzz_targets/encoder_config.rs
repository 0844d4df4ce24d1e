//! A model's `config.json`: `EncoderConfig::from_json`, then
//! `Encoder::load` on a checkpoint folder holding the fuzzed config next to
//! the tiny BERT fixture's weights (the shape checks between config and
//! weights). An accepted config has non-zero sizes and heads dividing the
//! hidden size; every error names the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use source::encoder::{Encoder, EncoderConfig};
use probewatch_fuzz::{assert_names, project_root, scratch, write_scratch};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let name = Path::new("/fuzz/checkpoint-1/config.json");
    match EncoderConfig::from_json(text, name) {
        Ok(config) => {
            assert!(config.hidden_size > 0 && config.num_heads > 0 && config.num_layers > 0);
            assert_eq!(config.hidden_size % config.num_heads, 0);
            assert!(config.layer_norm_eps.is_finite() && config.layer_norm_eps >= 0.0);
        }
        Err(e) => return assert_names(&e.to_string(), name),
    }
    let dir = scratch().join("cfg-checkpoint");
    let weights = dir.join("model.safetensors");
    if !weights.exists() {
        std::fs::create_dir_all(&dir).expect("scratch checkpoint folder");
        std::fs::copy(
            project_root().join("tests/fixtures/encoder/bert/model.safetensors"),
            &weights,
        )
        .expect("copying the fixture weights");
    }
    write_scratch("cfg-checkpoint/config.json", data);
    if let Err(e) = Encoder::load(&dir) {
        assert_names(&e.to_string(), &dir);
    }
});
