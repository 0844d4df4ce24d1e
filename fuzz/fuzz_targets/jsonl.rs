//! The JSON Lines probe-set reader: `jsonl::parse`, then `ProbeSet::load`
//! for the `labels` task. Accepted spans lie inside their sentence, items
//! index real labels and splits, and every error names the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use source::probeset::jsonl::{self, JsonlInput, JsonlTarget};
use source::probeset::{ProbeSet, ProbeSetSource, SentenceInput, Target, TaskSpec};
use probewatch_fuzz::{assert_names, write_scratch};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let name = Path::new("/fuzz/probe/items.jsonl");
    match jsonl::parse(name, text) {
        Ok(records) => {
            for record in &records {
                if let (JsonlInput::Words(words), JsonlTarget::Spans(spans)) =
                    (&record.input, &record.target)
                {
                    for span in spans {
                        assert!(span.start < span.end && span.end <= words.len());
                    }
                }
            }
        }
        Err(e) => assert_names(&e.to_string(), name),
    }
    let path = write_scratch("items.jsonl", data);
    let sources = [ProbeSetSource {
        path: path.clone(),
        split: None,
    }];
    let task: TaskSpec = "labels".parse().expect("a known task");
    match ProbeSet::load(&task, &sources) {
        Ok(set) => {
            assert!(set.splits.iter().any(|s| s == "train"));
            assert!(set.splits.len() <= 256);
            for item in &set.items {
                assert!((item.label as usize) < set.label_names.len());
                assert!((item.split as usize) < set.splits.len());
                match (&set.sentences[item.sentence].input, item.target) {
                    (SentenceInput::Words(w), Target::Word(i)) => assert!(i < w.len()),
                    (SentenceInput::Words(w), Target::Span { start, end }) => {
                        assert!(start < end && end <= w.len());
                    }
                    (_, Target::Sentence) => {}
                    (input, target) => panic!("item {target:?} over {input:?}"),
                }
            }
        }
        Err(e) => assert_names(&e.to_string(), &path),
    }
});
