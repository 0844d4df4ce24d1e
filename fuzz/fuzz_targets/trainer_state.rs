//! The two small JSON files the watcher reads in a Trainer checkpoint:
//! `trainer_state.json` (`global_step`) and `model.safetensors.index.json`
//! (the shard list). An accepted index lists only plain file names beside
//! it, sorted and distinct.
#![no_main]

use libfuzzer_sys::fuzz_target;
use daemon::watch::header::{parse_shard_index, parse_trainer_state};

fuzz_target!(|data: &[u8]| {
    if let Ok(step) = parse_trainer_state(data) {
        // Deterministic.
        assert_eq!(parse_trainer_state(data), Ok(step));
    }
    if let Ok(shards) = parse_shard_index(data) {
        assert!(!shards.is_empty());
        assert!(shards.windows(2).all(|w| w[0] < w[1]));
        for shard in &shards {
            assert!(!shard.is_empty() && !shard.starts_with('.'));
            assert!(!shard.contains('/') && !shard.contains('\\'));
        }
    }
});
