//! Unit tests of the exposition: every value round-trips through an
//! independent parser (`prometheus-parse`), publishing is atomic per run,
//! and the backfill document keeps promtool's ordering rules.

use super::*;
use crate::families::SNAPSHOT_FAMILIES;
use prometheus_parse::{Scrape, Value as PValue};

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("exposition parses")
}

/// Value of the sample `name` whose labels include every pair of
/// `labels`; panics when there is not exactly one.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<_> = samples(scrape, name, labels);
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    match found[0].value {
        PValue::Gauge(v) | PValue::Counter(v) | PValue::Untyped(v) => v,
        ref other => panic!("{name}: unexpected value {other:?}"),
    }
}

fn samples<'s>(
    scrape: &'s Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Vec<&'s prometheus_parse::Sample> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect()
}

fn label(name: &str, d: f64) -> LabelSnapshot {
    LabelSnapshot {
        label: name.to_owned(),
        min_distance: Some(d),
        min_distance_normalized: Some(d / 2.0),
        min_distance_normalized_best: Some(d),
        min_distance_baseline: Some(d + 1.0),
        change_ratio: Some(-0.25),
        clusters: Some(2),
        centroid_movement: Some(0.5),
        hull_min_distance: Some(d / 4.0),
        hull_min_distance_normalized: Some(d / 8.0),
        hull_min_distance_normalized_baseline: Some(d / 7.0),
    }
}

fn snapshot(run: &str, step: u64, labels: &[&str]) -> RunSnapshot {
    let x = step as f64;
    RunSnapshot {
        run: run.to_owned(),
        step,
        timestamp_seconds: 1.7e9 + x,
        layers: vec![LayerSnapshot {
            task: "upos".to_owned(),
            layer: 3,
            clusters: Some(10 + step),
            labels: labels.len() as u64,
            clusters_baseline: Some(9),
            scale: 2.0 * x,
            label_stats: labels.iter().map(|l| label(l, x)).collect(),
            similarity_baseline: Some(0.9),
            similarity_previous: Some(0.95),
            similarity_test: Some(0.8),
            accuracy: vec![("test".to_owned(), 0.75), ("dev".to_owned(), 0.5)],
            classifier_accuracy: vec![("test".to_owned(), 0.875, 0.0125)],
            labels_increased: Some(1),
            labels_decreased: Some(2),
            label_pairs: Some(vec![("NOUN".to_owned(), "VERB".to_owned(), 3.5)]),
            hull_similarity_baseline: Some(0.7),
            hull_similarity_previous: Some(0.99),
            hull_similarity_test: Some(0.6),
            stage_steps: vec![("clusters".to_owned(), step)],
        }],
    }
}

#[test]
fn snapshot_families_are_indexed_by_their_variant() {
    for (i, fam) in SNAPSHOT_FAMILIES.iter().enumerate() {
        assert_eq!(*fam as usize, i, "{fam:?}");
    }
    assert_eq!(Fam::BuildInfo as usize + 1, Fam::Analyzed as usize);
}

#[test]
fn published_values_and_labels_round_trip_through_an_independent_parser() {
    let m = Metrics::new();
    m.publish(snapshot("run-a", 4, &["NOUN", "VERB"]));
    let text = m.encode().unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    let s = parse(&text);
    let run = ("run", "run-a");
    let layer = [run, ("task", "upos"), ("layer", "3")];
    assert_eq!(value(&s, "probewatch_checkpoint_step", &[run]), 4.0);
    assert_eq!(
        value(&s, "probewatch_checkpoint_timestamp_seconds", &[run]),
        1.7e9 + 4.0
    );
    assert_eq!(value(&s, "probewatch_clusters", &layer), 14.0);
    assert_eq!(value(&s, "probewatch_labels", &layer), 2.0);
    assert_eq!(value(&s, "probewatch_clusters_baseline", &layer), 9.0);
    assert_eq!(value(&s, "probewatch_layer_scale", &layer), 8.0);
    let noun = [run, ("task", "upos"), ("layer", "3"), ("label", "NOUN")];
    assert_eq!(value(&s, "probewatch_label_min_distance", &noun), 4.0);
    assert_eq!(
        value(&s, "probewatch_label_min_distance_normalized", &noun),
        2.0
    );
    assert_eq!(
        value(&s, "probewatch_label_min_distance_normalized_best", &noun),
        4.0
    );
    assert_eq!(
        value(&s, "probewatch_label_min_distance_baseline", &noun),
        5.0
    );
    assert_eq!(
        value(&s, "probewatch_label_min_distance_change_ratio", &noun),
        -0.25
    );
    assert_eq!(value(&s, "probewatch_label_clusters", &noun), 2.0);
    assert_eq!(value(&s, "probewatch_centroid_movement", &noun), 0.5);
    for (reference, v) in [("baseline", 0.9), ("previous", 0.95), ("test", 0.8)] {
        let labels = [run, ("layer", "3"), ("reference", reference)];
        assert_eq!(value(&s, "probewatch_spatial_similarity", &labels), v);
    }
    let test = [run, ("layer", "3"), ("split", "test")];
    assert_eq!(value(&s, "probewatch_probe_accuracy", &test), 0.75);
    let dev = [run, ("layer", "3"), ("split", "dev")];
    assert_eq!(value(&s, "probewatch_probe_accuracy", &dev), 0.5);
    assert_eq!(value(&s, "probewatch_classifier_accuracy", &test), 0.875);
    assert_eq!(
        value(&s, "probewatch_classifier_accuracy_std", &test),
        0.0125
    );
    assert!(samples(&s, "probewatch_classifier_accuracy", &dev).is_empty());
    assert_eq!(
        value(&s, "probewatch_labels_min_distance_increased", &layer),
        1.0
    );
    assert_eq!(
        value(&s, "probewatch_labels_min_distance_decreased", &layer),
        2.0
    );
    let pair = [run, ("label_a", "NOUN"), ("label_b", "VERB")];
    assert_eq!(value(&s, "probewatch_label_pair_distance", &pair), 3.5);
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(value(&s, "probewatch_build_info", &version), 1.0);
    // Exactly the labels listed, no more: run, task, layer, label.
    let one = samples(&s, "probewatch_label_min_distance", &noun)[0];
    let mut keys: Vec<_> = one.labels.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["label", "layer", "run", "task"]);
}

#[test]
fn a_second_publish_replaces_the_whole_snapshot() {
    let m = Metrics::new();
    m.publish(snapshot("run-a", 1, &["NOUN", "VERB", "ADJ"]));
    m.publish(snapshot("run-b", 7, &["X"]));
    m.publish(snapshot("run-a", 2, &["NOUN", "VERB"]));
    let s = parse(&m.encode().unwrap());
    let run = ("run", "run-a");
    assert_eq!(value(&s, "probewatch_checkpoint_step", &[run]), 2.0);
    assert_eq!(value(&s, "probewatch_layer_scale", &[run]), 4.0);
    // Every per-label value of run-a is the second checkpoint's.
    let per_label = samples(&s, "probewatch_label_min_distance", &[run]);
    assert_eq!(per_label.len(), 2);
    for sample in per_label {
        assert_eq!(sample.value, PValue::Gauge(2.0), "{sample:?}");
    }
    // The label that disappeared is gone from every family.
    assert!(
        s.samples
            .iter()
            .all(|x| x.labels.get("label") != Some("ADJ")),
        "ADJ still exported"
    );
    // The other run is untouched.
    let b = ("run", "run-b");
    assert_eq!(value(&s, "probewatch_checkpoint_step", &[b]), 7.0);
}

#[test]
fn concurrent_scrapes_never_mix_two_checkpoints() {
    let m = Arc::new(Metrics::new());
    m.publish(snapshot("run-a", 1, &["NOUN", "VERB"]));
    let writer = {
        let m = Arc::clone(&m);
        std::thread::spawn(move || {
            for i in 0..400u64 {
                let step = 1 + i % 2;
                let labels: &[&str] = if step == 1 {
                    &["NOUN", "VERB"]
                } else {
                    &["NOUN", "VERB", "ADJ"]
                };
                m.publish(snapshot("run-a", step, labels));
            }
        })
    };
    for _ in 0..200 {
        let s = parse(&m.encode().unwrap());
        let step = value(&s, "probewatch_checkpoint_step", &[("run", "run-a")]);
        let distances = samples(&s, "probewatch_label_min_distance", &[]);
        let labels = if step == 1.0 { 2 } else { 3 };
        assert_eq!(distances.len(), labels, "step {step}");
        for d in distances {
            assert_eq!(d.value, PValue::Gauge(step), "step {step}: {d:?}");
        }
        assert_eq!(value(&s, "probewatch_layer_scale", &[]), 2.0 * step);
    }
    writer.join().unwrap();
}

#[test]
fn none_and_non_finite_values_are_left_out() {
    let m = Metrics::new();
    let mut snap = snapshot("r", 3, &["NOUN", "VERB"]);
    let layer = &mut snap.layers[0];
    layer.similarity_baseline = None;
    layer.similarity_test = Some(f64::NAN);
    layer.labels_increased = None;
    layer.labels_decreased = None;
    layer.label_pairs = None;
    layer.label_stats[1].change_ratio = None;
    layer.label_stats[1].min_distance_baseline = None;
    layer.label_stats[1].min_distance_normalized_best = None;
    layer.clusters_baseline = None;
    layer.label_stats[1].centroid_movement = Some(f64::INFINITY);
    m.publish(snap);
    let text = m.encode().unwrap();
    let s = parse(&text);
    let sims = samples(&s, "probewatch_spatial_similarity", &[]);
    assert_eq!(sims.len(), 1);
    assert_eq!(sims[0].labels.get("reference"), Some("previous"));
    for gone in [
        "probewatch_labels_min_distance_increased",
        "probewatch_labels_min_distance_decreased",
        "probewatch_label_pair_distance",
        "probewatch_clusters_baseline",
    ] {
        assert!(!text.contains(gone), "{gone} exported:\n{text}");
    }
    for (name, n) in [
        ("probewatch_label_min_distance_change_ratio", 1),
        ("probewatch_label_min_distance_baseline", 1),
        ("probewatch_label_min_distance_normalized_best", 1),
        ("probewatch_centroid_movement", 1),
        ("probewatch_label_min_distance", 2),
    ] {
        assert_eq!(samples(&s, name, &[]).len(), n, "{name}");
    }
    assert!(!text.to_lowercase().contains("nan"), "{text}");
    assert!(!text.contains("inf\n"), "{text}");
}

#[test]
fn counters_and_histogram_are_exposed_per_run() {
    let m = Metrics::new();
    m.checkpoint_analyzed("r", 0.07);
    m.checkpoint_analyzed("r", 700.0);
    m.checkpoint_analyzed("r", f64::NAN);
    m.checkpoint_failed("r", "corrupt");
    m.checkpoint_failed("r", "corrupt");
    m.checkpoint_failed("r", "io");
    m.checkpoint_skipped("r", 5);
    m.set_queue_depth("r", 3);
    m.set_queue_depth("other", 0);
    let text = m.encode().unwrap();
    assert!(text.contains("# TYPE probewatch_checkpoints_analyzed counter\n"));
    assert!(text.contains("# TYPE probewatch_analysis_duration_seconds histogram\n"));
    let s = parse(&text);
    let r = [("run", "r")];
    assert_eq!(value(&s, "probewatch_checkpoints_analyzed_total", &r), 3.0);
    let corrupt = [("run", "r"), ("kind", "corrupt")];
    assert_eq!(
        value(&s, "probewatch_checkpoints_failed_total", &corrupt),
        2.0
    );
    let io = [("run", "r"), ("kind", "io")];
    assert_eq!(value(&s, "probewatch_checkpoints_failed_total", &io), 1.0);
    assert_eq!(value(&s, "probewatch_checkpoints_skipped_total", &r), 5.0);
    assert_eq!(value(&s, "probewatch_queue_depth", &r), 3.0);
    // A run only announced has its counters at zero.
    let other = [("run", "other")];
    assert_eq!(
        value(&s, "probewatch_checkpoints_analyzed_total", &other),
        0.0
    );
    assert_eq!(
        value(&s, "probewatch_checkpoints_skipped_total", &other),
        0.0
    );
    assert_eq!(value(&s, "probewatch_queue_depth", &other), 0.0);
    // The histogram: 3 observations (NaN recorded as 0), sum 700.07.
    assert_eq!(
        value(&s, "probewatch_analysis_duration_seconds_count", &r),
        3.0
    );
    let sum = value(&s, "probewatch_analysis_duration_seconds_sum", &r);
    assert!((sum - 700.07).abs() < 1e-9, "{sum}");
    let hist = samples(&s, "probewatch_analysis_duration_seconds", &r);
    assert_eq!(hist.len(), 1);
    let PValue::Histogram(buckets) = &hist[0].value else {
        panic!("not a histogram: {:?}", hist[0]);
    };
    let count_le = |le: f64| {
        buckets
            .iter()
            .find(|b| b.less_than == le)
            .map(|b| b.count)
            .unwrap_or_else(|| panic!("no bucket le={le}"))
    };
    assert_eq!(count_le(0.05), 1.0);
    assert_eq!(count_le(0.1), 2.0);
    assert_eq!(count_le(600.0), 2.0);
    assert_eq!(count_le(1200.0), 3.0);
    assert_eq!(count_le(1800.0), 3.0);
    assert_eq!(count_le(f64::INFINITY), 3.0);
}

#[test]
fn duplicated_series_are_reported_and_published_once() {
    let mut snap = snapshot("r", 1, &["NOUN", "NOUN"]);
    snap.layers[0].accuracy.push(("test".to_owned(), 0.1));
    let err = snap.check().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("\"r\"") && msg.contains("NOUN"), "{msg}");
    assert!(snapshot("r", 1, &["NOUN", "VERB"]).check().is_ok());
    let m = Metrics::new();
    m.publish(snap);
    let s = parse(&m.encode().unwrap());
    assert_eq!(samples(&s, "probewatch_label_min_distance", &[]).len(), 1);
    let test = [("split", "test")];
    assert_eq!(value(&s, "probewatch_probe_accuracy", &test), 0.75);
}

#[test]
fn history_groups_families_orders_samples_by_time_and_ends_with_eof() {
    let mut late = snapshot("r", 2, &["NOUN"]);
    late.layers[0].label_stats[0].min_distance = Some(0.25);
    let mut early = snapshot("r", 1, &["NOUN"]);
    early.layers[0].label_stats[0].min_distance = Some(0.5);
    // Out of order, and a third snapshot at the same millisecond.
    let mut same = snapshot("r", 3, &["NOUN"]);
    same.layers[0].label_stats[0].min_distance = Some(0.125);
    let text = encode_history(&[(1.7e9 + 60.0, late), (1.7e9, early), (1.7e9 + 60.0, same)]);
    assert!(text.ends_with("\n# EOF\n"), "{text}");
    assert!(!text.contains("probewatch_build_info"), "{text}");
    let name = "probewatch_label_min_distance{";
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(name)).collect();
    let labels = r#"run="r",task="upos",layer="3",label="NOUN""#;
    assert_eq!(
        lines,
        [
            format!("probewatch_label_min_distance{{{labels}}} 0.5 1700000000.000"),
            format!("probewatch_label_min_distance{{{labels}}} 0.25 1700000060.000"),
            format!("probewatch_label_min_distance{{{labels}}} 0.125 1700000060.001"),
        ]
    );
    // Each family once, with its live type and help.
    assert_eq!(
        text.matches("# TYPE probewatch_label_min_distance gauge\n")
            .count(),
        1
    );
    assert!(text.contains(
        "# HELP probewatch_checkpoint_step Training step of the run's newest checkpoint whose core stage is published, in steps.\n"
    ));
    assert!(text.contains("probewatch_checkpoint_step{run=\"r\"} 1 1700000000.000\n"));
    let escaped = encode_history(&[(0.0, snapshot("a\"b\\c\nd", 1, &["X"]))]);
    assert!(escaped.contains(r#"run="a\"b\\c\nd""#), "{escaped}");
}

#[test]
fn label_values_are_escaped() {
    let m = Metrics::new();
    m.publish(snapshot("we\"ird\\run", 1, &["a\nb"]));
    let text = m.encode().unwrap();
    assert!(
        text.contains("run=\"we\\\"ird\\\\run\"") && text.contains("label=\"a\\nb\""),
        "{text}"
    );
}
