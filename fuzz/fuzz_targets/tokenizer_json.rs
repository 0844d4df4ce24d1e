//! `tokenizer.json`: `ProbeTokenizer::from_file` (the HF `tokenizers` crate
//! loads it; probewatch switches padding and truncation off), then the
//! gather plan of a fixed probe set (words, spans, raw text, dependency
//! pairs) with a 512-token and an 8-token window. A plan that succeeds has
//! one gather per item, every token reference inside its encoder input, and
//! no input longer than the window.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use source::probeset::tokens::{
    GatherPlan, ProbeTokenizer, SentencePooling, TokenizeOptions, WordPooling,
};
use source::probeset::{ProbeSet, ProbeSetSource, TaskSpec};
use probewatch_fuzz::{assert_names, write_scratch};

const JSONL: &str = r#"{"words": ["The", "cat", "sat", "on", "the", "mat", "."], "spans": [{"start": 0, "end": 2, "label": "NP"}, {"start": 2, "end": 3, "label": "V"}, {"start": 3, "end": 6, "label": "PP"}]}
{"text": "Prices rose 3.5% in Zürich — naïvely, 東京 too.", "label": "news", "split": "test"}
{"words": ["ünïcödé", "x", "", "y"], "label": "odd"}
{"words": ["a"], "label": "short"}
"#;

const CONLLU: &str = "# sent_id = s1\n\
1\tI\tI\tPRON\tPRP\t_\t2\tnsubj\t_\t_\n\
2\tcan't\tcan\tAUX\tMD\t_\t0\troot\t_\t_\n\
3\tgo\tgo\tVERB\tVB\t_\t2\txcomp\t_\t_\n\
\n";

fn sets() -> &'static [ProbeSet] {
    static SETS: OnceLock<Vec<ProbeSet>> = OnceLock::new();
    SETS.get_or_init(|| {
        // The third line has an empty word: drop it (the reader refuses it).
        let jsonl: String = JSONL
            .lines()
            .filter(|l| !l.contains("\"\""))
            .map(|l| format!("{l}\n"))
            .collect();
        let items = write_scratch("tok/items.jsonl", jsonl.as_bytes());
        let dep = write_scratch("tok/dev.conllu", CONLLU.as_bytes());
        let load = |task: &str, path| {
            let task: TaskSpec = task.parse().expect("a known task");
            ProbeSet::load(&task, &[ProbeSetSource { path, split: None }])
                .expect("the fixed probe set loads")
        };
        vec![load("labels", items), load("dep", dep)]
    })
}

fn check(plan: &GatherPlan, set: &ProbeSet, max_tokens: usize) {
    assert_eq!(plan.items.len(), set.items.len());
    assert_eq!(plan.sentence_inputs.len(), set.sentences.len());
    for input in &plan.inputs {
        assert!(input.ids.len() <= max_tokens);
        assert_eq!(input.ids.len(), input.type_ids.len());
    }
    for item in &plan.items {
        assert_eq!(item.parts.len(), plan.parts_per_item);
        for part in &item.parts {
            assert!(!part.is_empty());
            for token in part {
                assert!(token.position < plan.inputs[token.input].ids.len());
            }
        }
    }
}

/// libfuzzer-sys aborts on any panic from its hook; `ProbeTokenizer`
/// catches the tokenizers crate's panics on malformed files and returns an
/// error, so the default hook is put back, quiet for those panics only. A
/// panic that escapes the target still aborts: it cannot unwind out of
/// libFuzzer's callback.
fn quiet_tokenizers_panics() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_tokenizers = info
                .location()
                .is_some_and(|l| l.file().contains("/tokenizers-"));
            if !in_tokenizers {
                default(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    quiet_tokenizers_panics();
    let sets = sets();
    let path = write_scratch("tok/tokenizer.json", data);
    let options = [
        TokenizeOptions::new(512),
        TokenizeOptions {
            max_tokens: 8,
            overlap: Some(3),
            word_pooling: WordPooling::Mean,
            sentence_pooling: SentencePooling::Mean,
        },
    ];
    for options in options {
        let tokenizer = match ProbeTokenizer::from_file(&path, options) {
            Ok(t) => t,
            Err(e) => return assert_names(&e.to_string(), &path),
        };
        for set in sets {
            if let Ok(plan) = tokenizer.plan(set) {
                check(&plan, set, options.max_tokens);
            }
        }
    }
});
