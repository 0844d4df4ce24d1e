//! Task definitions over real files in a temporary folder.

use super::*;

const LEX_DEV: &str = "# sent_id = d-1\n\
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_\t_\tPRON\tI\t_\t_\t_\t_\t_\tO-PRON\n\
2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\t_\n\
2\tca\tcan\tAUX\tMD\t_\t3\taux\t_\t_\t_\tAUX\tcan\t_\t_\t_\t_\t_\tO-AUX\n\
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_\t1:1\tV.VPC.full\tgo out\tv.motion\t_\t_\t_\t_\tB-V.VPC.full-v.motion\n\
4\tout\tout\tADP\tRP\t_\t3\tcompound:prt\t_\t_\t1:2\t_\t_\t_\t_\t_\t_\t_\tI_\n\
5\tin_front\tin\tADP\tIN\t_\t7\tcase\t_\t_\t2:1\tP\tin front of\tp.Locus\tp.Locus\t_\t_\t_\tB-P-p.Locus\n\
6\tof\tof\tADP\tIN\t_\t5\tfixed\t_\t_\t2:2\t_\t_\t_\t_\t_\t_\t_\tI_\n\
7\tmy\tmy\tPRON\tPRP$\t_\t3\tnmod:poss\t_\t_\t_\tPRON.POSS\tmy\tp.SocialRel\tp.Gestalt\t_\t_\t_\tO-PRON.POSS-p.SocialRel|p.Gestalt\n\
\n\
# sent_id = d-2\n\
1\tWow\twow\tINTJ\tUH\t_\t0\troot\t_\t_\t_\tINTJ\twow\t_\t_\t_\t_\t_\tO-INTJ\n\
\n\
# sent_id = d-3\n\
1\tfor\tfor\tADP\tIN\t_\t2\tcase\t_\t_\t_\tP\tfor\tp.Beneficiary\tp.Beneficiary\t_\t_\t_\tO-P-p.Beneficiary\n\
2\tyou\tyou\tPRON\tPRP\t_\t0\troot\t_\t_\t_\tPRON\tyou\t_\t_\t_\t_\t_\tO-PRON\n";

const LEX_TEST: &str = "# sent_id = t-1\n\
1\tat\tat\tADP\tIN\t_\t2\tcase\t_\t_\t_\tP\tat\tp.Time\tp.Time\t_\t_\t_\tO-P-p.Time\n\
2\tnoon\tnoon\tNOUN\tNN\t_\t0\troot\t_\t_\t_\tN\tnoon\tn.TIME\t_\t_\t_\t_\tO-N-n.TIME\n";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write fixture");
    path
}

fn sources(pairs: &[(&Path, Option<&str>)]) -> Vec<ProbeSetSource> {
    pairs
        .iter()
        .map(|(p, s)| ProbeSetSource {
            path: p.to_path_buf(),
            split: s.map(str::to_owned),
        })
        .collect()
}

fn task(name: &str) -> TaskSpec {
    name.parse().expect("known task")
}

#[test]
fn ps_role_and_fxn_take_p_items_in_file_order_with_sorted_labels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = write(dir.path(), "dev.conllulex", LEX_DEV);
    let test = write(dir.path(), "test.conllulex", LEX_TEST);
    let srcs = sources(&[(&dev, Some("train")), (&test, Some("test"))]);

    let role = ProbeSet::load(&task("ps_role"), &srcs).expect("loads");
    assert_eq!(role.splits, ["train", "test"]);
    assert_eq!(
        role.label_names,
        ["p.Beneficiary", "p.Locus", "p.SocialRel", "p.Time"]
    );
    // d-2 has no item and is not kept.
    let ids: Vec<_> = role.sentences.iter().map(|s| s.id.as_deref()).collect();
    assert_eq!(ids, [Some("d-1"), Some("d-3"), Some("t-1")]);
    let items: Vec<_> = role
        .items
        .iter()
        .map(|i| {
            (
                i.sentence,
                i.target,
                role.label_names[i.label as usize].as_str(),
                i.split,
            )
        })
        .collect();
    assert_eq!(
        items,
        [
            (0, Target::Word(4), "p.Locus", 0),
            (0, Target::Word(6), "p.SocialRel", 0),
            (1, Target::Word(0), "p.Beneficiary", 0),
            (2, Target::Word(0), "p.Time", 1),
        ]
    );
    assert_eq!(
        role.words(&role.items[0]).expect("words"),
        ["I", "ca", "go", "out", "in_front", "of", "my"]
    );
    assert_eq!(role.sentences[1].line, 14);

    let fxn = ProbeSet::load(&task("ps_fxn"), &srcs).expect("loads");
    assert_eq!(
        fxn.label_names,
        ["p.Beneficiary", "p.Gestalt", "p.Locus", "p.Time"]
    );
    assert_eq!(fxn.items.len(), 4);
    assert_eq!(fxn.items[1].target, Target::Word(6));
}

#[test]
fn upos_xpos_deprel_and_dep_pairs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = write(dir.path(), "dev.conllulex", LEX_DEV);
    let srcs = sources(&[(&dev, None)]);

    let upos = ProbeSet::load(&task("pos"), &srcs).expect("loads");
    assert_eq!(upos.task.kind, TaskKind::Upos);
    assert_eq!(upos.items.len(), 10);
    assert_eq!(upos.splits, ["train"]);
    assert_eq!(upos.label_names, ["ADP", "AUX", "INTJ", "PRON", "VERB"]);

    let xpos = ProbeSet::load(&task("xpos"), &srcs).expect("loads");
    assert!(xpos.label_names.contains(&"PRP$".to_owned()));

    let deprel = ProbeSet::load(&task("deprel"), &srcs).expect("loads");
    assert_eq!(
        deprel.label_names,
        ["aux", "case", "compound", "fixed", "nmod", "nsubj", "root"]
    );
    let full = ProbeSet::load(&task("deprel+subtypes"), &srcs).expect("loads");
    assert!(full.label_names.contains(&"nmod:poss".to_owned()));
    assert!(full.label_names.contains(&"compound:prt".to_owned()));

    let dep = ProbeSet::load(&task("dep"), &srcs).expect("loads");
    // Roots (HEAD 0) are not items: 10 words, 3 roots.
    assert_eq!(dep.items.len(), 7);
    assert!(!dep.label_names.contains(&"root".to_owned()));
    assert_eq!(
        dep.items[0].target,
        Target::Pair {
            dependent: 0,
            head: 2
        }
    );
    assert_eq!(dep.label_names[dep.items[0].label as usize], "nsubj");
    // `my` (ID 7) depends on `go` (ID 3).
    assert_eq!(
        dep.items[5].target,
        Target::Pair {
            dependent: 6,
            head: 2
        }
    );
    assert_eq!(dep.label_names[dep.items[5].label as usize], "nmod");
}

#[test]
fn jsonl_spans_sentences_and_split_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "set.jsonl",
        concat!(
            r#"{"words": ["The", "big", "cat"], "spans": [{"start": 0, "end": 3, "label": "NP"}, {"start": 2, "end": 3, "label": "N"}]}"#,
            "\n",
            r#"{"text": "Great food!", "label": "pos", "split": "test", "id": "r9"}"#,
            "\n",
            r#"{"words": ["x"], "spans": []}"#,
            "\n"
        ),
    );
    let set = ProbeSet::load(&task("labels"), &sources(&[(&file, Some("train"))])).expect("loads");
    assert_eq!(set.splits, ["train", "test"]);
    assert_eq!(set.label_names, ["N", "NP", "pos"]);
    assert_eq!(set.sentences.len(), 2);
    assert_eq!(set.items[0].target, Target::Span { start: 0, end: 3 });
    assert_eq!(set.items[1].target, Target::Word(2));
    assert_eq!(set.items[2].target, Target::Sentence);
    assert_eq!(set.items[2].split, 1);
    assert_eq!(set.sentences[1].id.as_deref(), Some("r9"));
    assert_eq!(
        set.sentences[1].input,
        SentenceInput::Text("Great food!".into())
    );
    assert_eq!(set.words(&set.items[2]), None);
}

#[test]
fn mismatches_are_errors_naming_file_and_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = write(
        dir.path(),
        "plain.conllu",
        "1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n",
    );
    let e = ProbeSet::load(&task("ps_role"), &sources(&[(&plain, None)]))
        .expect_err("no SS column")
        .to_string();
    assert!(e.contains("plain.conllu") && e.contains("SS (14)"), "{e}");

    let e = ProbeSet::load(&task("labels"), &sources(&[(&plain, None)]))
        .expect_err("not jsonl")
        .to_string();
    assert!(e.contains("plain.conllu") && e.contains("labels"), "{e}");

    let e = ProbeSet::load(&task("upos"), &sources(&[(&plain, Some("test"))]))
        .expect_err("no train")
        .to_string();
    assert!(
        e.contains("no item in split \"train\"") && e.contains("plain.conllu:test"),
        "{e}"
    );

    assert!(matches!(
        "nope".parse::<TaskSpec>(),
        Err(ProbeSetError::UnknownTask { .. })
    ));
    assert!(matches!(
        ProbeSet::load(&task("upos"), &[]),
        Err(ProbeSetError::NoFiles { .. })
    ));
}

#[test]
fn source_arguments() {
    let s: ProbeSetSource = "data/dev.conllulex:train".parse().expect("parses");
    assert_eq!(s.path, Path::new("data/dev.conllulex"));
    assert_eq!(s.split.as_deref(), Some("train"));
    let s: ProbeSetSource = "dev.conllu".parse().expect("parses");
    assert_eq!(s.split, None);
    let s: ProbeSetSource = "a:b/dev.conllu".parse().expect("parses");
    assert_eq!(s.path, Path::new("a:b/dev.conllu"));
    assert_eq!(s.split, None);
    assert!("dev.conllu:".parse::<ProbeSetSource>().is_err());
    assert!(":test".parse::<ProbeSetSource>().is_err());
    assert_eq!(s.to_string(), "a:b/dev.conllu");
    assert_eq!(strip_subtype("nmod:poss"), "nmod");
    assert_eq!(strip_subtype("obj"), "obj");
}
