//! The daemon on a HuggingFace Trainer's output folder (`layout =
//! "hf-checkpoints"`): the real `probewatch watch` binary runs the encoder
//! itself over JSON Lines probe sets, for checkpoints written file by file
//! the way the Trainer writes them (weights to a hidden temporary name and
//! renamed, `trainer_state.json` last). The model is the tiny random BERT of
//! the parity fixtures (its hidden states match HF transformers to 1e-5,
//! `tests/encoder_parity.rs`); "training" scales the weights of its top
//! layer a little more at every step, so the bottom hidden states stay
//! bit-identical. The exported numbers are checked against `probewatch
//! extract` + `probewatch probe` on the same checkpoint, a broken checkpoint
//! is a counted failure, and the daemon goes on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::tensor::{Dtype, TensorView};
use serde_json::{Value, json};
use store::{CheckpointStatus, Store};

#[path = "common/daemon.rs"]
mod harness;
use harness::{Daemon, exe, run_table, write_config};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/encoder/bert");

/// Five word classes of eight words each: the labels of the word task.
const CLASSES: [(&str, [&str; 8]); 5] = [
    (
        "animal",
        ["cat", "dog", "fox", "owl", "bee", "cow", "pig", "elk"],
    ),
    (
        "colour",
        [
            "red", "blue", "green", "pink", "grey", "teal", "gold", "tan",
        ],
    ),
    (
        "verb",
        [
            "runs", "sees", "eats", "hides", "jumps", "sits", "digs", "naps",
        ],
    ),
    (
        "number",
        ["one", "two", "three", "four", "five", "six", "seven", "ten"],
    ),
    (
        "place",
        [
            "barn", "lake", "hill", "road", "park", "yard", "cave", "shed",
        ],
    ),
];

/// A WordPiece `tokenizer.json` over the 40 words (ids 5..), `##s` (so
/// plural words split into two subwords) and the special tokens; BERT
/// normalisation and `[CLS] … [SEP]`, padded to 16 like the MiniLM file
/// (which probewatch must override). Every id is below the fixture's
/// vocabulary of 100.
fn tokenizer_json() -> String {
    let mut vocab = serde_json::Map::new();
    let special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    for (i, t) in special.iter().enumerate() {
        vocab.insert((*t).into(), json!(i));
    }
    for (_, words) in CLASSES {
        for w in words {
            let id = vocab.len();
            vocab.insert(w.to_string(), json!(id));
        }
    }
    let id = vocab.len();
    vocab.insert("##s".into(), json!(id));
    let added: Vec<Value> = special
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": i, "special": true, "content": t, "single_word": false,
                   "lstrip": false, "rstrip": false, "normalized": false})
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": {"max_length": 16, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": 16}, "direction": "Right", "pad_to_multiple_of": null,
                    "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                               "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    })
    .to_string()
}

/// Deterministic sentences of 4–9 words (some plural, so two subwords).
fn sentences() -> Vec<Vec<(String, &'static str)>> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    (0..80)
        .map(|_| {
            let len = 4 + next(6) as usize;
            (0..len)
                .map(|_| {
                    let (class, words) = CLASSES[next(5) as usize];
                    let mut w = words[next(8) as usize].to_string();
                    if next(4) == 0 {
                        w.push('s');
                    }
                    (w, class)
                })
                .collect()
        })
        .collect()
}

/// Writes the probe sets into `dir`: `words.jsonl` (every word labelled by
/// its class, split by a `split` field) and `train.jsonl` / `test.jsonl`
/// (each sentence as raw text, labelled by its first word's class).
fn write_probe_sets(dir: &Path) {
    let mut words = String::new();
    let (mut train, mut test) = (String::new(), String::new());
    for (i, s) in sentences().iter().enumerate() {
        let split = if i % 4 == 3 { "test" } else { "train" };
        let spans: Vec<Value> = s
            .iter()
            .enumerate()
            .map(|(k, (_, c))| json!({"start": k, "end": k + 1, "label": c}))
            .collect();
        let ws: Vec<&str> = s.iter().map(|(w, _)| w.as_str()).collect();
        words.push_str(&json!({"words": ws, "spans": spans, "split": split}).to_string());
        words.push('\n');
        let line = json!({"text": ws.join(" "), "label": s[0].1}).to_string();
        let out = if split == "test" {
            &mut test
        } else {
            &mut train
        };
        out.push_str(&line);
        out.push('\n');
    }
    std::fs::write(dir.join("words.jsonl"), words).expect("writing words.jsonl");
    std::fs::write(dir.join("train.jsonl"), train).expect("writing train.jsonl");
    std::fs::write(dir.join("test.jsonl"), test).expect("writing test.jsonl");
}

/// The fixture's weights with the top layer's tensors scaled by
/// `1 + step / 2000`, as safetensors bytes; `drop` leaves one tensor out.
fn weights(step: u64, drop: Option<&str>) -> Vec<u8> {
    let bytes = std::fs::read(Path::new(FIXTURE).join("model.safetensors")).expect("fixture");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("fixture parses");
    let factor = 1.0 + step as f32 / 2000.0;
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        if Some(name.as_str()) == drop {
            continue;
        }
        assert_eq!(view.dtype(), Dtype::F32, "{name}");
        let mut data = view.data().to_vec();
        if name.contains("layer.1.") && !name.contains("LayerNorm") {
            for c in data.chunks_exact_mut(4) {
                let v = f32::from_le_bytes(c.try_into().expect("4 bytes")) * factor;
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        owned.push((name, view.shape().to_vec(), data));
    }
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(n, shape, data)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, shape.clone(), data).expect("view"),
            )
        })
        .collect();
    safetensors::serialize(
        views,
        Some([("format".to_string(), "pt".to_string())].into()),
    )
    .expect("serialises")
}

/// Writes `checkpoint-<step>/` the way the Trainer does: the folder
/// appears, the config, the weights to a hidden temporary file renamed into
/// place, the tokenizer, the optimizer state, `trainer_state.json` last.
fn write_checkpoint(run: &Path, step: u64, drop: Option<&str>, with_tokenizer: bool) -> PathBuf {
    let dir = run.join(format!("checkpoint-{step}"));
    std::fs::create_dir(&dir).expect("creating the checkpoint folder");
    std::fs::copy(
        Path::new(FIXTURE).join("config.json"),
        dir.join("config.json"),
    )
    .expect("config.json");
    let tmp = dir.join(".tmp_model.safetensors");
    std::fs::write(&tmp, weights(step, drop)).expect("weights");
    std::fs::rename(&tmp, dir.join("model.safetensors")).expect("renaming the weights");
    if with_tokenizer {
        std::fs::write(dir.join("tokenizer.json"), tokenizer_json()).expect("tokenizer");
    }
    for junk in [
        "training_args.bin",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
    ] {
        std::fs::write(dir.join(junk), b"\x80\x02pickled, never loaded").expect("junk");
    }
    let state = json!({"global_step": step, "epoch": step as f64 / 100.0, "log_history": []});
    std::fs::write(dir.join("trainer_state.json"), state.to_string()).expect("trainer_state");
    dir
}

fn run_json(args: &[&str]) -> Value {
    let out = Command::new(exe())
        .args(args)
        .output()
        .expect("running probewatch");
    assert!(
        out.status.success(),
        "probewatch {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn trainer_checkpoints_are_encoded_and_analysed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("trainer-output");
    std::fs::create_dir(&run).expect("run folder");
    write_probe_sets(dir.path());
    let words = dir.path().join("words.jsonl");
    let extra = format!(
        "layout = \"hf-checkpoints\"\n\
         [[run.probe]]\nname = \"word_class\"\ntask = \"labels\"\nfiles = [\"{}\"]\n\
         [[run.probe]]\nname = \"sentence_class\"\ntask = \"labels\"\n\
         files = [\"{}:train\", \"{}:test\"]\n",
        words.display(),
        dir.path().join("train.jsonl").display(),
        dir.path().join("test.jsonl").display(),
    );
    let cfg = write_config(dir.path(), &run_table("hf", &run, &extra));
    // The run folder's tokenizer serves checkpoints that carry none.
    std::fs::write(run.join("tokenizer.json"), tokenizer_json()).expect("tokenizer");

    // check-config reads the probe sets and says what the daemon will do.
    let out = Command::new(exe())
        .args(["check-config", cfg.to_str().expect("UTF-8")])
        .output()
        .expect("check-config");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("one encoder pass per checkpoint serves all 2"),
        "{text}"
    );
    assert!(text.contains("word_class"), "{text}");

    let d = Daemon::watch(&cfg, &[("RUST_LOG", "probewatch=debug")]);
    write_checkpoint(&run, 0, None, true);
    write_checkpoint(&run, 100, None, false);
    let r = [("run", "hf")];
    d.wait_metrics("step 100", |s| {
        s.get("probewatch_checkpoint_step", &r) == Some(100.0)
    });
    // A checkpoint missing a tensor: a `format` failure naming the tensor,
    // then the next one is analysed as usual.
    write_checkpoint(&run, 200, Some("encoder.layer.1.output.dense.weight"), true);
    write_checkpoint(&run, 300, None, true);
    let s = d.wait_metrics("step 300 and one failure", |s| {
        s.get("probewatch_checkpoint_step", &r) == Some(300.0)
            && s.counter("probewatch_checkpoints_analyzed_total", &r) == 3.0
    });
    assert_eq!(
        s.failures("hf"),
        [("format".to_string(), 1.0)].into_iter().collect()
    );
    let failed = d
        .events()
        .into_iter()
        .find(|e| e.field("kind") == "format")
        .map(|e| e.raw)
        .unwrap_or_default();
    assert!(
        failed.contains("checkpoint-200") && failed.contains("encoder.layer.1.output.dense.weight"),
        "the failure names the checkpoint and the tensor: {failed}"
    );
    // Two tasks share one tokenization: the word items' sentences and the
    // sentence items' texts give the same token ids.
    let tokenized = d
        .lines()
        .into_iter()
        .find(|l| l.contains("probe sets tokenized"))
        .expect("the plan is logged");
    assert!(tokenized.contains("\"inputs\":80"), "{tokenized}");
    assert_eq!(
        d.lines()
            .iter()
            .filter(|l| l.contains("probe sets tokenized"))
            .count(),
        1,
        "one plan for every checkpoint with the same tokenizer"
    );

    // The exported values are what `extract` + `probe` give for the same
    // checkpoint.
    let ck = run.join("checkpoint-300");
    let dump = dir.path().join("ck300.safetensors");
    run_json(&[
        "extract",
        "--model",
        ck.to_str().expect("UTF-8"),
        "--probe-set",
        words.to_str().expect("UTF-8"),
        "--task",
        "labels",
        "--step",
        "300",
        "--out",
        dump.to_str().expect("UTF-8"),
    ]);
    let probe = run_json(&["probe", dump.to_str().expect("UTF-8"), "--json"]);
    let labels: Vec<&str> = probe["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .map(|v| v.as_str().expect("name"))
        .collect();
    assert_eq!(labels, ["animal", "colour", "number", "place", "verb"]);
    let layers = probe["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 3, "embeddings + 2 layers");
    let mut compared = 0;
    for l in layers {
        let layer = l["layer"].to_string();
        let at = [
            ("run", "hf"),
            ("task", "word_class"),
            ("layer", layer.as_str()),
        ];
        assert_eq!(
            s.value("probewatch_clusters", &at),
            l["clusters"].as_f64().unwrap()
        );
        let acc = [&at[..], &[("split", "test")]].concat();
        assert_eq!(
            s.value("probewatch_probe_accuracy", &acc),
            l["accuracy"]["test"].as_f64().unwrap()
        );
        for (k, name) in labels.iter().enumerate() {
            let Some(want) = l["min_label_distance"][k].as_f64() else {
                continue;
            };
            let al = [&at[..], &[("label", *name)]].concat();
            let got = s.value("probewatch_label_min_distance", &al);
            assert!(
                close(got, want, 2e-4),
                "layer {layer} {name}: {got} vs {want}"
            );
            compared += 1;
        }
    }
    assert!(compared >= 10, "{compared}");
    // The sentence task through `extract` too, mean-pooled.
    let sdump = dir.path().join("sentences.safetensors");
    let train = dir.path().join("train.jsonl");
    let test = dir.path().join("test.jsonl");
    run_json(&[
        "extract",
        "--model",
        ck.to_str().expect("UTF-8"),
        "--probe-set",
        &format!("{}:train", train.display()),
        "--probe-set",
        &format!("{}:test", test.display()),
        "--task",
        "labels",
        "--sentence-pooling",
        "mean",
        "--out",
        sdump.to_str().expect("UTF-8"),
    ]);
    let sprobe = run_json(&["probe", sdump.to_str().expect("UTF-8"), "--json"]);
    assert_eq!(sprobe["splits"]["train"], 60);
    assert_eq!(sprobe["splits"]["test"], 20);
    assert_eq!(sprobe["dim"], 32);
    // The sentence task is exported too, per hidden state.
    for layer in ["0", "1", "2"] {
        let at = [("run", "hf"), ("task", "sentence_class"), ("layer", layer)];
        assert!(s.value("probewatch_clusters", &at) >= 1.0);
    }
    // Only the top layer's weights changed: hidden states 0 and 1 are the
    // baseline's, bit for bit, so their centroids did not move.
    for (layer, moved) in [("0", false), ("1", false), ("2", true)] {
        let at = [("run", "hf"), ("task", "word_class"), ("layer", layer)];
        let m = s
            .samples("probewatch_centroid_movement", &at)
            .iter()
            .map(|x| match x.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .fold(0.0_f64, f64::max);
        assert_eq!(m > 1e-6, moved, "layer {layer}: centroid movement {m}");
    }

    d.signal("TERM");
    assert!(d.wait_exit().success());
    let store = Store::open(&dir.path().join("store.sqlite")).expect("store");
    let id = store.run_id("hf").expect("query").expect("run stored");
    let rows = store.checkpoints(id).expect("rows");
    let by_step: BTreeMap<u64, CheckpointStatus> =
        rows.iter().map(|r| (r.step, r.status)).collect();
    assert_eq!(
        by_step,
        [
            (0, CheckpointStatus::Done),
            (100, CheckpointStatus::Done),
            (200, CheckpointStatus::Failed),
            (300, CheckpointStatus::Done)
        ]
        .into_iter()
        .collect()
    );
}

/// Runs `probewatch watch --config CFG`, which must fail at start; its
/// stderr.
fn refused(cfg: &Path) -> String {
    let out = Command::new(exe())
        .args(["watch", "--config", cfg.to_str().expect("UTF-8")])
        .output()
        .expect("watch");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_missing_probe_set_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    std::fs::create_dir(&run).expect("run folder");
    let extra = "layout = \"hf-checkpoints\"\n[[run.probe]]\ntask = \"upos\"\nfiles = [\"nowhere.conllu\"]\n";
    let cfg = write_config(dir.path(), &run_table("hf", &run, extra));
    let err = refused(&cfg);
    assert!(
        err.contains("probewatch.toml:13:")
            && err.contains("nowhere.conllu")
            && err.contains("does not exist"),
        "{err}"
    );
    // A probe set with a malformed line: the daemon names file and line.
    std::fs::write(
        dir.path().join("bad.jsonl"),
        "{\"words\": [\"a\"], \"label\": \"x\"}\n{oops\n",
    )
    .expect("writing");
    let extra =
        "layout = \"hf-checkpoints\"\n[[run.probe]]\ntask = \"labels\"\nfiles = [\"bad.jsonl\"]\n";
    let cfg = write_config(dir.path(), &run_table("hf", &run, extra));
    let err = refused(&cfg);
    assert!(err.contains("bad.jsonl:2"), "{err}");
    // A probe set over `[limits]`: three items where two are allowed.
    std::fs::write(
        dir.path().join("three.jsonl"),
        "{\"words\": [\"a\"], \"label\": \"x\"}\n\
         {\"words\": [\"b\"], \"label\": \"y\"}\n\
         {\"words\": [\"c\"], \"label\": \"x\"}\n",
    )
    .expect("writing");
    let extra = "layout = \"hf-checkpoints\"\n[[run.probe]]\ntask = \"labels\"\nfiles = [\"three.jsonl\"]\n";
    let cfg = write_config(
        dir.path(),
        &format!(
            "[limits]\nmax_items_per_task = 2\n\n{}",
            run_table("hf", &run, extra)
        ),
    );
    let err = refused(&cfg);
    assert!(
        err.contains("run 'hf': task 'labels': the probe set has 3 items, more than limits.max_items_per_task = 2"),
        "{err}"
    );
}
