//! Window planning (pure) and tokenization with a tiny WordPiece tokenizer
//! built here and saved as a real `tokenizer.json`.

use std::path::PathBuf;

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{PaddingParams, PaddingStrategy, TruncationParams};

use super::*;
use crate::probeset::{Item, ProbeSentence, TaskKind, TaskSpec};

fn check_invariants(units: &[usize], budget: usize, plan: &WindowPlan) {
    let total: usize = units.iter().sum();
    assert_eq!(plan.owner.len(), total);
    assert_eq!(plan.windows.first().map(|w| w.start), Some(0));
    assert_eq!(plan.windows.last().map(|w| w.end), Some(total));
    for pair in plan.windows.windows(2) {
        assert!(pair[0].start < pair[1].start, "windows advance: {plan:?}");
        assert!(
            pair[1].start <= pair[0].end,
            "no gap between windows: {plan:?}"
        );
    }
    let mut start = 0;
    let mut boundaries = vec![0];
    for &len in units {
        start += len;
        boundaries.push(start);
    }
    for w in &plan.windows {
        assert!(w.len() <= budget, "window {w:?} over budget {budget}");
        assert!(
            boundaries.contains(&w.start) && boundaries.contains(&w.end),
            "{w:?} cuts a unit"
        );
    }
    for (token, &owner) in plan.owner.iter().enumerate() {
        assert!(
            plan.windows[owner].contains(&token),
            "token {token} owned by {owner}: {plan:?}"
        );
    }
    for pair in boundaries.windows(2) {
        let owners = &plan.owner[pair[0]..pair[1]];
        assert!(
            owners.iter().all(|&o| o == owners[0]),
            "unit split over windows"
        );
    }
}

#[test]
fn a_sentence_that_fits_is_one_window() {
    let plan = plan_windows(&[1, 3, 2], 6, 3).expect("plans");
    assert_eq!(plan.windows, std::iter::once(0..6).collect::<Vec<_>>());
    assert_eq!(plan.owner, [0; 6]);
    let empty = plan_windows(&[], 4, 1).expect("plans");
    assert_eq!(empty.windows, std::iter::once(0..0).collect::<Vec<_>>());
}

#[test]
fn long_sentences_get_overlapping_windows_and_central_owners() {
    let units = [1; 10];
    let plan = plan_windows(&units, 4, 2).expect("plans");
    assert_eq!(plan.windows, [0..4, 2..6, 4..8, 6..10]);
    assert_eq!(plan.owner, [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]);
    check_invariants(&units, 4, &plan);

    // Uneven words: windows end on word boundaries.
    let units = [2, 3, 1, 4, 2, 2];
    let plan = plan_windows(&units, 6, 3).expect("plans");
    // Unit 3 (4 tokens) leaves no room to overlap the last window.
    assert_eq!(plan.windows, [0..6, 5..10, 10..14]);
    check_invariants(&units, 6, &plan);

    // No overlap: windows tile the sentence.
    let plan = plan_windows(&[3, 3, 3], 4, 0).expect("plans");
    assert_eq!(plan.windows, [0..3, 3..6, 6..9]);
    assert_eq!(plan.owner, [0, 0, 0, 1, 1, 1, 2, 2, 2]);
}

#[test]
fn window_invariants_over_many_shapes() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |m: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % m
    };
    for _ in 0..500 {
        let budget = 1 + next(20) as usize;
        let overlap = next(budget as u64) as usize;
        let n = next(40) as usize;
        let units: Vec<usize> = (0..n).map(|_| 1 + next(budget as u64) as usize).collect();
        let plan = plan_windows(&units, budget, overlap).expect("plans");
        check_invariants(&units, budget, &plan);
    }
}

#[test]
fn impossible_windows_are_errors() {
    assert!(matches!(
        plan_windows(&[1, 5, 1], 4, 1),
        Err(TokenizeError::UnitTooLong {
            unit: 1,
            tokens: 5,
            budget: 4
        })
    ));
    assert!(matches!(
        plan_windows(&[1], 4, 4),
        Err(TokenizeError::Options { .. })
    ));
    assert!(matches!(
        plan_windows(&[1], 0, 0),
        Err(TokenizeError::Options { .. })
    ));
}

#[test]
fn units_group_subwords_of_a_word() {
    let ids = [
        Some(0),
        Some(0),
        Some(1),
        None,
        None,
        Some(2),
        Some(2),
        Some(2),
    ];
    assert_eq!(unit_lengths(&ids), [2, 1, 1, 1, 3]);
    assert_eq!(unit_lengths(&[]), Vec::<usize>::new());
}

const VOCAB: [&str; 15] = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "##s", "sat", "on", "mat", "un", "##believ",
    "##able", "!", ".",
];

/// Writes a tiny uncased WordPiece `tokenizer.json` (BERT normalizer,
/// pre-tokenizer and `[CLS] … [SEP]`) that pads to 16 and truncates to 6, as
/// the MiniLM file does with 128, and returns its path.
fn tiny_tokenizer(dir: &Path) -> PathBuf {
    let vocab = dir.join("vocab.txt");
    std::fs::write(&vocab, VOCAB.join("\n")).expect("vocab");
    let model = WordPiece::from_file(&vocab.display().to_string())
        .unk_token("[UNK]".into())
        .build()
        .expect("wordpiece");
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(true, true, None, true)))
        .expect("normalizer");
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), 3),
        ("[CLS]".into(), 2),
    )));
    tokenizer.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::Fixed(16),
        ..PaddingParams::default()
    }));
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: 6,
            ..TruncationParams::default()
        }))
        .expect("truncation");
    let path = dir.join("tokenizer.json");
    tokenizer.save(&path, false).expect("save");
    path
}

fn words(text: &str) -> Vec<String> {
    text.split(' ').map(str::to_owned).collect()
}

fn set_of(sentences: Vec<SentenceInput>, items: Vec<Item>) -> ProbeSet {
    ProbeSet {
        task: TaskSpec {
            name: "t".into(),
            kind: TaskKind::Labels,
        },
        sentences: sentences
            .into_iter()
            .enumerate()
            .map(|(i, input)| ProbeSentence {
                path: "set.jsonl".into(),
                line: i + 1,
                id: None,
                input,
            })
            .collect(),
        items,
        label_names: vec!["x".into()],
        splits: vec!["train".into()],
    }
}

fn item(sentence: usize, target: Target) -> Item {
    Item {
        sentence,
        target,
        label: 0,
        split: 0,
    }
}

fn at(input: usize, position: usize) -> TokenRef {
    TokenRef { input, position }
}

#[test]
fn encodes_pretokenized_words_without_the_files_padding_or_truncation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = ProbeTokenizer::from_file(&tiny_tokenizer(dir.path()), TokenizeOptions::new(512))
        .expect("loads");
    let input = SentenceInput::Words(words("The cats sat on the mat unbelievable !"));
    let e = tok.encode(&input, Path::new("s"), 1).expect("encodes");
    assert_eq!(e.prefix_ids, [2]);
    assert_eq!(e.suffix_ids, [3]);
    // the cat ##s sat on the mat un ##believ ##able !
    assert_eq!(e.ids, [4, 5, 6, 7, 8, 4, 9, 10, 11, 12, 13]);
    assert_eq!(e.type_ids, [0; 11]);
    let w: Vec<Option<u32>> = [0, 1, 1, 2, 3, 4, 5, 6, 6, 6, 7]
        .iter()
        .map(|&i| Some(i))
        .collect();
    assert_eq!(e.word_ids, w);
}

#[test]
fn plans_words_pairs_spans_and_sentences() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_tokenizer(dir.path());
    let sentences = vec![
        SentenceInput::Words(words("The cats sat on the mat")),
        SentenceInput::Text("Unbelievable cats!".into()),
    ];
    let items = vec![
        item(0, Target::Word(1)),
        item(
            0,
            Target::Pair {
                dependent: 1,
                head: 2,
            },
        ),
        item(0, Target::Span { start: 0, end: 2 }),
        item(1, Target::Sentence),
    ];
    let set = set_of(sentences, items);

    let tok = ProbeTokenizer::from_file(&path, TokenizeOptions::new(512)).expect("loads");
    let plan = tok.plan(&set).expect("plans");
    assert_eq!(plan.inputs.len(), 2);
    assert_eq!(plan.inputs[0].ids, [2, 4, 5, 6, 7, 8, 4, 9, 3]);
    assert_eq!(plan.inputs[1].ids, [2, 10, 11, 12, 5, 6, 13, 3]);
    assert_eq!(plan.sentence_inputs, [0..1, 1..2]);
    assert_eq!(plan.parts_per_item, 1);
    assert_eq!(plan.items[0].parts, [vec![at(0, 2)]]);
    assert_eq!(plan.items[1].parts, [vec![at(0, 2)], vec![at(0, 4)]]);
    assert_eq!(plan.items[2].parts, [vec![at(0, 1), at(0, 2)]]);
    assert_eq!(plan.items[3].parts, [vec![at(1, 0)]]);

    let mut options = TokenizeOptions::new(512);
    options.word_pooling = WordPooling::Mean;
    options.sentence_pooling = SentencePooling::Mean;
    let tok = ProbeTokenizer::from_file(&path, options).expect("loads");
    let plan = tok.plan(&set).expect("plans");
    assert_eq!(plan.items[0].parts, [vec![at(0, 2), at(0, 3)]]);
    assert_eq!(plan.items[2].parts, [vec![at(0, 1), at(0, 2), at(0, 3)]]);
    let mean: Vec<TokenRef> = (1..7).map(|p| at(1, p)).collect();
    assert_eq!(plan.items[3].parts, [mean]);
}

#[test]
fn long_sentences_are_windowed_not_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_tokenizer(dir.path());
    let text = "the cats sat on the mat the cat sat on unbelievable mats !";
    let forms = words(text);
    let n = forms.len();
    let set = set_of(
        vec![SentenceInput::Words(forms.clone())],
        (0..n).map(|w| item(0, Target::Word(w))).collect(),
    );
    // 17 content tokens; 8 tokens per input = [CLS] + 6 + [SEP].
    let tok = ProbeTokenizer::from_file(&path, TokenizeOptions::new(8)).expect("loads");
    let full = tok
        .encode(&set.sentences[0].input, Path::new("s"), 1)
        .expect("encodes");
    assert_eq!(full.ids.len(), 17);
    let plan = tok.plan(&set).expect("plans");
    assert!(plan.inputs.len() > 2, "{:?}", plan.inputs);
    assert_eq!(plan.sentence_inputs.len(), 1);
    assert_eq!(plan.sentence_inputs[0], 0..plan.inputs.len());
    for input in &plan.inputs {
        assert!(input.ids.len() <= 8);
        assert_eq!(input.ids.first(), Some(&2));
        assert_eq!(input.ids.last(), Some(&3));
        assert_eq!(input.type_ids.len(), input.ids.len());
    }
    // Every word points at its own first subword, in some window.
    let first_subword: Vec<u32> = (0..n as u32)
        .map(|w| {
            full.ids[full
                .word_ids
                .iter()
                .position(|&x| x == Some(w))
                .expect("word")]
        })
        .collect();
    for (w, gather) in plan.items.iter().enumerate() {
        let t = gather.parts[0][0];
        assert_eq!(
            plan.inputs[t.input].ids[t.position], first_subword[w],
            "word {w}"
        );
    }
    // Mean pooling keeps a word's subwords in one window.
    let mut options = TokenizeOptions::new(8);
    options.word_pooling = WordPooling::Mean;
    let plan = ProbeTokenizer::from_file(&path, options)
        .expect("loads")
        .plan(&set)
        .expect("plans");
    let unbelievable = &plan.items[10].parts[0];
    assert_eq!(unbelievable.len(), 3);
    assert!(
        unbelievable
            .iter()
            .all(|t| t.input == unbelievable[0].input)
    );
    let ids: Vec<u32> = unbelievable
        .iter()
        .map(|t| plan.inputs[t.input].ids[t.position])
        .collect();
    assert_eq!(ids, [10, 11, 12]);

    // Too small for the specials, or for one word: errors, not cuts.
    let e = ProbeTokenizer::from_file(&path, TokenizeOptions::new(2))
        .expect("loads")
        .plan(&set);
    assert!(matches!(e, Err(TokenizeError::Options { .. })));
    let e = ProbeTokenizer::from_file(&path, TokenizeOptions::new(4))
        .expect("loads")
        .plan(&set);
    assert!(matches!(
        e,
        Err(TokenizeError::WordTooLong {
            tokens: 3,
            line: 1,
            ..
        })
    ));
}

#[test]
fn words_without_tokens_and_bad_files_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_tokenizer(dir.path());
    let tok = ProbeTokenizer::from_file(&path, TokenizeOptions::new(512)).expect("loads");
    // A control character is removed by the normalizer: no token.
    let set = set_of(
        vec![SentenceInput::Words(vec!["cat".into(), "\u{7}".into()])],
        vec![item(0, Target::Word(0)), item(0, Target::Word(1))],
    );
    let e = tok.plan(&set).expect_err("empty word").to_string();
    assert!(e.contains("set.jsonl:1") && e.contains("word 1"), "{e}");

    let bad = dir.path().join("broken.json");
    std::fs::write(&bad, "{not json").expect("write");
    let e = ProbeTokenizer::from_file(&bad, TokenizeOptions::new(512)).expect_err("broken");
    assert!(e.to_string().contains("broken.json"), "{e}");
}

#[test]
fn gather_concatenates_parts_of_means() {
    let hidden = [[1.0_f32, 2.0], [3.0, 6.0], [10.0, 20.0]];
    let gather = ItemGather {
        parts: vec![vec![at(0, 0), at(0, 1)], vec![at(0, 2)]],
    };
    let mut out = vec![-1.0];
    gather.gather(|t| &hidden[t.position], &mut out);
    assert_eq!(out, [-1.0, 2.0, 4.0, 10.0, 20.0]);
}
