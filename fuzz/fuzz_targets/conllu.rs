//! The CoNLL-U / CoNLL-U-Lex reader and the probe sets built from a file:
//! `conllu::parse`, then `ProbeSet::load` (the daemon's and `extract`'s
//! entry point) for word, dependency-pair and supersense tasks. A parsed
//! document has word IDs 1..n and heads inside the sentence; a probe set's
//! items index real words, labels and splits; every error names the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use source::probeset::conllu;
use source::probeset::{ProbeSet, ProbeSetSource, SentenceInput, Target, TaskSpec};
use probewatch_fuzz::{assert_names, write_scratch};

const TASKS: [&str; 5] = ["upos", "deprel", "dep+subtypes", "ps_role", "ps_fxn"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let name = Path::new("/fuzz/probe/dev.conllulex");
    match conllu::parse(name, text) {
        Ok(doc) => {
            for sentence in &doc.sentences {
                let n = sentence.words.len();
                assert!(n > 0);
                for (i, word) in sentence.words.iter().enumerate() {
                    assert_eq!(word.id as usize, i + 1);
                    assert!(word.head as usize <= n);
                    assert!(!word.form().is_empty());
                }
            }
        }
        Err(e) => assert_names(&e.to_string(), name),
    }
    let path = write_scratch("dev.conllulex", data);
    let sources = [ProbeSetSource {
        path: path.clone(),
        split: None,
    }];
    for task in TASKS {
        let task: TaskSpec = task.parse().expect("a known task");
        match ProbeSet::load(&task, &sources) {
            Ok(set) => check_set(&set),
            Err(e) => {
                let message = e.to_string();
                // "no train items" names the task and the file list.
                assert_names(&message, &path);
            }
        }
    }
});

fn check_set(set: &ProbeSet) {
    assert!(set.splits.iter().any(|s| s == "train"));
    for item in &set.items {
        assert!((item.label as usize) < set.label_names.len());
        assert!((item.split as usize) < set.splits.len());
        let sentence = &set.sentences[item.sentence];
        let SentenceInput::Words(words) = &sentence.input else {
            panic!("a CoNLL-U sentence is words");
        };
        match item.target {
            Target::Word(w) => assert!(w < words.len()),
            Target::Pair { dependent, head } => {
                assert!(dependent < words.len() && head < words.len());
            }
            Target::Span { start, end } => assert!(start < end && end <= words.len()),
            Target::Sentence => {}
        }
    }
}
