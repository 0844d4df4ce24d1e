//! A model's weights (`model.safetensors`): `Encoder::load` on a checkpoint
//! folder holding the fuzzed weights next to the tiny BERT fixture's
//! `config.json`. Accepted weights give an encoder whose sizes are the
//! config's, and that encodes a short sentence into finite hidden states
//! (or refuses with a named error); every error names the folder or file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use source::encoder::Encoder;
use probewatch_fuzz::{assert_names, project_root, scratch, write_scratch};

fuzz_target!(|data: &[u8]| {
    let dir = scratch().join("w-checkpoint");
    let config = dir.join("config.json");
    if !config.exists() {
        std::fs::create_dir_all(&dir).expect("scratch checkpoint folder");
        std::fs::copy(
            project_root().join("tests/fixtures/encoder/bert/config.json"),
            &config,
        )
        .expect("copying the fixture config");
    }
    write_scratch("w-checkpoint/model.safetensors", data);
    let encoder = match Encoder::load(&dir) {
        Ok(encoder) => encoder,
        Err(e) => return assert_names(&e.to_string(), &dir),
    };
    let ids: Vec<u32> = (0..5u32).map(|i| i % encoder.vocab_size() as u32).collect();
    match encoder.hidden_states(&ids) {
        Ok(states) => {
            assert_eq!(states.len(), encoder.num_layers() + 1);
            for state in &states {
                assert_eq!(state.dim(), (ids.len(), encoder.hidden_size()));
            }
        }
        Err(e) => assert_names(&e.to_string(), &dir),
    }
});
