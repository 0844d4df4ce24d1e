//! Every input with which a fuzz target found a bug, kept under
//! `fuzz/regressions/<target>/`, fed through the same library entry point as
//! that target (`fuzz/fuzz_targets/<target>.rs`) on the stable toolchain: each
//! must now give the clear error the fixed code returns. `scripts/fuzz.sh`
//! also replays these folders before fuzzing.
//!
//! A folder with no file is a target that has found nothing so far; the
//! folder names must be fuzz targets (a typo would silently skip a file).

use std::path::{Path, PathBuf};

use daemon::watch::header::{check_safetensors_from, parse_shard_index, parse_trainer_state};
use daemon::{config, web_config};
use source::dump::ActivationDump;
use source::encoder::EncoderConfig;
use source::probeset::conllu;
use source::probeset::jsonl;
use source::probeset::tokens::{ProbeTokenizer, TokenizeOptions};
use source::probeset::{ProbeSet, ProbeSetSource, TaskSpec};

/// The fuzz targets (`fuzz/Cargo.toml`).
const TARGETS: [&str; 11] = [
    "basic_auth",
    "config_toml",
    "conllu",
    "dump",
    "encoder_config",
    "encoder_weights",
    "jsonl",
    "safetensors_check",
    "tokenizer_json",
    "trainer_state",
    "web_config",
];

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions")
}

/// The kept inputs of `target`, sorted by name.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = regressions().join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

fn assert_names(message: &str, path: &Path) {
    let shown = path.display().to_string();
    assert!(
        message.contains(&shown),
        "the error does not name {shown}: {message}"
    );
}

#[test]
fn regression_folders_are_fuzz_targets() {
    let Ok(entries) = std::fs::read_dir(regressions()) else {
        panic!("{} is missing", regressions().display());
    };
    for entry in entries {
        let name = entry.unwrap_or_else(|e| panic!("{e}")).file_name();
        let name = name.to_string_lossy();
        assert!(
            TARGETS.contains(&name.as_ref()),
            "fuzz/regressions/{name} is not a fuzz target ({TARGETS:?})"
        );
    }
}

/// `tokenizer.json` files on which the tokenizers crate panics, when loading
/// or when encoding: refused with an error (naming the tokenizer file, or
/// the sentence being encoded), never a panic.
#[test]
fn tokenizer_json() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let items = dir.path().join("items.jsonl");
    std::fs::write(
        &items,
        "{\"words\": [\"The\", \"cat\", \"sat\"], \"spans\": [{\"start\": 0, \"end\": 2, \"label\": \"NP\"}]}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let task: TaskSpec = "labels".parse().unwrap_or_else(|e| panic!("{e}"));
    let set = ProbeSet::load(
        &task,
        &[ProbeSetSource {
            path: items.clone(),
            split: None,
        }],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let found = inputs("tokenizer_json");
    assert!(found.len() >= 2, "the two kept tokenizer.json crashers");
    for (file, _) in found {
        let message = match ProbeTokenizer::from_file(&file, TokenizeOptions::new(512)) {
            Err(e) => {
                let message = e.to_string();
                assert_names(&message, &file);
                message
            }
            Ok(tokenizer) => match tokenizer.plan(&set) {
                Ok(_) => panic!("{}: a malformed tokenizer.json was used", file.display()),
                Err(e) => {
                    let message = e.to_string();
                    assert_names(&message, &items);
                    message
                }
            },
        };
        assert!(
            message.contains("malformed tokenizer.json"),
            "{}: {message}",
            file.display()
        );
    }
}

#[test]
fn dump() {
    for (file, bytes) in inputs("dump") {
        match ActivationDump::from_bytes(&file, bytes) {
            Err(e) => assert_names(&e.to_string(), &file),
            Ok(dump) => {
                for task in dump.tasks() {
                    for &layer in &task.layers {
                        if let Err(e) = dump.layer(task, layer) {
                            assert_names(&e.to_string(), &file);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn safetensors_check_and_trainer_files() {
    for (_, bytes) in inputs("safetensors_check") {
        let _ = check_safetensors_from(bytes.as_slice(), bytes.len() as u64);
    }
    for (_, bytes) in inputs("trainer_state") {
        let _ = parse_trainer_state(&bytes);
        let _ = parse_shard_index(&bytes);
    }
}

#[test]
fn probe_sets_and_model_config() {
    for (file, bytes) in inputs("conllu") {
        if let Err(e) = conllu::parse(&file, &String::from_utf8_lossy(&bytes)) {
            assert_names(&e.to_string(), &file);
        }
    }
    for (file, bytes) in inputs("jsonl") {
        if let Err(e) = jsonl::parse(&file, &String::from_utf8_lossy(&bytes)) {
            assert_names(&e.to_string(), &file);
        }
    }
    for (file, bytes) in inputs("encoder_config") {
        if let Err(e) = EncoderConfig::from_json(&String::from_utf8_lossy(&bytes), &file) {
            assert_names(&e.to_string(), &file);
        }
    }
}

#[test]
fn configs() {
    for (file, bytes) in inputs("config_toml") {
        if let Err(e) = config::parse(&String::from_utf8_lossy(&bytes), &file) {
            assert_names(&e.to_string(), &file);
        }
    }
    for (file, bytes) in inputs("web_config") {
        if let Err(e) = web_config::parse(&String::from_utf8_lossy(&bytes), &file) {
            assert_names(&e.to_string(), &file);
        }
    }
    for (_, bytes) in inputs("basic_auth") {
        let _ = web_config::parse_basic(&String::from_utf8_lossy(&bytes));
    }
}
