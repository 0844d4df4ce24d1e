//! Temporary: dumps exposition bytes for a before/after comparison.
use probewatch_metrics::*;

#[test]
fn dump() {
    let label = |name: &str, d: f64| LabelSnapshot {
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
    };
    let snap = |run: &str, step: u64, labels: &[&str]| {
        let x = step as f64;
        let layer = |n: u32| LayerSnapshot {
            task: "upos".to_owned(),
            layer: n,
            clusters: Some(10 + step),
            labels: labels.len() as u64,
            clusters_baseline: Some(9),
            scale: 2.0 * x,
            label_stats: labels.iter().map(|l| label(l, x)).collect(),
            similarity_baseline: Some(0.9),
            similarity_previous: Some(0.95),
            similarity_test: Some(f64::NAN),
            accuracy: vec![("test".to_owned(), 0.75), ("dev".to_owned(), 0.5)],
            classifier_accuracy: vec![("test".to_owned(), 0.875, 0.0125)],
            labels_increased: Some(1),
            labels_decreased: None,
            label_pairs: Some(vec![("NOUN".to_owned(), "VERB".to_owned(), 3.5)]),
            hull_similarity_baseline: Some(0.7),
            hull_similarity_previous: None,
            hull_similarity_test: Some(0.6),
            stage_steps: vec![("clusters".to_owned(), step), ("test_hulls".to_owned(), step + 1)],
        };
        RunSnapshot {
            run: run.to_owned(),
            step,
            timestamp_seconds: 1.7e9 + x,
            layers: vec![layer(3), layer(1), layer(3)],
        }
    };
    let m = Metrics::new();
    m.publish(snap("b\"x", 4, &["NOUN", "VERB", "NOUN"]));
    m.publish(snap("a", 2, &["X\ny"]));
    m.checkpoint_analyzed("a", 0.3);
    m.checkpoint_failed("a", "io");
    m.checkpoint_skipped("b\"x", 2);
    m.stage_started("a", "clusters", 2, 5, 1.7e9);
    m.stage_layer_done("a", "clusters");
    m.stage_outcome("a", "core", "done", Some(1.5));
    m.set_late_pending("a", 1);
    m.set_queue_depth("a", 3);
    m.set_shard(1, 3);
    m.config_loaded(true, 1.7e9);
    m.config_reload_failed();
    let mut out = m.encode().unwrap();
    out.push_str("=====\n");
    out.push_str(&format!("{:?}\n", m.running()));
    m.remove_run("a");
    out.push_str(&m.encode().unwrap());
    out.push_str("=====\n");
    out.push_str(&encode_history(&[(1.7e9 + 60.0, snap("r", 2, &["N"])), (1.7e9, snap("r", 1, &["N", "V"])), (-0.5, snap("q", 1, &["N"]))]));
    out.push_str(&format!("{:?}\n", snap("r", 1, &["N", "N"]).check()));
    std::fs::write(std::env::var("GOLDEN_OUT").unwrap(), out).unwrap();
}
