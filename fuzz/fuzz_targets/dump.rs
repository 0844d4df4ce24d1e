//! The activation-dump reader (`ActivationDump::from_bytes`, the checks
//! `open` runs on a file): header, metadata, labels, splits, layer dtypes
//! and shapes, then every layer read. A dump that opens must be consistent
//! (labels and splits in range, every layer `[n, dim]` and finite), the
//! watcher's length check must accept it, and every error names the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use source::dump::ActivationDump;
use daemon::watch::header::check_safetensors_from;
use probewatch_fuzz::assert_names;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/fuzz/run/checkpoint-7/acts.safetensors");
    let dump = match ActivationDump::from_bytes(path, data.to_vec()) {
        Ok(dump) => dump,
        Err(e) => return assert_names(&e.to_string(), path),
    };
    // The watcher must never hold back a dump the reader accepts.
    if let Err(reason) = check_safetensors_from(data, data.len() as u64) {
        panic!("the reader accepts the dump but the watcher's length check says: {reason}");
    }
    assert!(dump.splits().iter().any(|s| s == "train"));
    assert!(!dump.tasks().is_empty());
    for task in dump.tasks() {
        assert_eq!(task.labels.len(), task.n);
        assert_eq!(task.split.len(), task.n);
        assert!(
            task.labels
                .iter()
                .all(|&l| (l as usize) < task.label_names.len())
        );
        assert!(
            task.split
                .iter()
                .all(|&s| (s as usize) < dump.splits().len())
        );
        assert!(!task.layers.is_empty());
        for &layer in &task.layers {
            match dump.layer(task, layer) {
                Ok(matrix) => {
                    assert_eq!(matrix.dim(), (task.n, task.dim));
                    assert!(matrix.iter().all(|v| v.is_finite()));
                }
                Err(e) => assert_names(&e.to_string(), path),
            }
        }
    }
});
