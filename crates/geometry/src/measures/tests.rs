//! The measures on small layers with known answers (three squares) and on
//! synthetic layers: solver spaces agree, unchanged layers reuse their
//! report, reports round-trip through JSON.

use super::*;

/// The three ways to search the nearest cluster (whole-layer Gram,
/// per-cluster Gram, primal) give the same accuracy and the same
/// report otherwise.
#[test]
fn solver_spaces_agree_on_a_synthetic_layer() {
    let l = crate::synth::generate(300, 60, 24, 5, crate::synth::Variant::Overlapping, 3);
    let names = vec!["train".to_string(), "test".to_string()];
    let input = l.input(&names);
    let gram = measure_layer(input, &MeasureParams::default());
    let cluster_grams = measure_layer(
        input,
        &MeasureParams {
            gram_budget_bytes: 0,
            ..MeasureParams::default()
        },
    );
    let primal = measure_layer(
        input,
        &MeasureParams {
            gram_budget_bytes: 0,
            cluster_gram_budget_bytes: 0,
            ..MeasureParams::default()
        },
    );
    for other in [&cluster_grams, &primal] {
        assert_eq!(gram.accuracy, other.accuracy);
        assert_eq!(gram.clusters, other.clusters);
        assert_eq!(gram.train_clusters, other.train_clusters);
        for (x, y) in gram.label_distance.iter().zip(&other.label_distance) {
            assert!((x.2 - y.2).abs() <= 1e-4 * x.2.max(1e-9), "{x:?} {y:?}");
        }
    }
}

#[test]
fn an_unchanged_layer_reuses_its_report() {
    let layer = crate::synth::generate(300, 60, 16, 5, crate::synth::Variant::Separable, 3);
    let names = vec!["train".to_string(), "test".to_string()];
    let input = layer.input(&names);
    let params = MeasureParams::default();
    let (r1, m1) = measure_layer_with(input, &params, None, Partition::Recluster);
    assert!(!m1.reused);
    let (r2, m2) = measure_layer_with(input, &params, Some(&m1), Partition::Recluster);
    assert!(m2.reused);
    assert_eq!(r1, r2);
    // One coordinate changed: computed again, and equal to a cold run.
    let mut data = layer.data.clone();
    data[7] += 0.5;
    let changed = LayerInput {
        data: &data,
        ..input
    };
    let (r3, m3) = measure_layer_with(changed, &params, Some(&m2), Partition::Recluster);
    assert!(!m3.reused);
    assert_eq!(
        r3.train_clusters,
        measure_layer(changed, &params).train_clusters
    );
    // Other parameters: computed again.
    let min = MeasureParams {
        label_distance: LabelDistance::Min,
        ..params
    };
    let (_, m4) = measure_layer_with(input, &min, Some(&m1), Partition::Recluster);
    assert!(!m4.reused);
}

#[test]
fn pearson_known() {
    assert_eq!(pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]), Some(1.0));
    assert_eq!(pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
    assert_eq!(pearson(&[1.0, 1.0], &[1.0, 2.0]), None);
    assert_eq!(pearson(&[1.0], &[1.0]), None);
}

fn two_squares() -> (Vec<f32>, Vec<u32>, Vec<u8>) {
    // Label 0 around (0,0), label 1 around (10,0), label 2 at (0,10).
    let mut d = Vec::new();
    let mut l = Vec::new();
    let mut s = Vec::new();
    for (lab, (cx, cy)) in [(0u32, (0.0f32, 0.0f32)), (1, (10.0, 0.0)), (2, (0.0, 10.0))] {
        for (dx, dy) in [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)] {
            d.extend([cx + dx, cy + dy]);
            l.push(lab);
            s.push(0);
        }
        d.extend([cx + 0.5, cy]);
        l.push(lab);
        s.push(1);
    }
    (d, l, s)
}

#[test]
fn squares_known_answers() {
    let (d, l, s) = two_squares();
    let names = vec!["train".to_string(), "test".to_string()];
    let r = measure_layer(
        LayerInput {
            data: &d,
            dim: 2,
            labels: &l,
            n_labels: 3,
            split: &s,
            split_names: &names,
            fit_split: TRAIN,
        },
        &MeasureParams::default(),
    );
    assert_eq!(r.clusters, 3);
    assert_eq!(r.clusters_per_label, vec![1, 1, 1]);
    // Squares of side 2 at distance 10: gap 8 along an axis.
    let d01 = r.label_distance[0];
    assert_eq!((d01.0, d01.1), (0, 1));
    assert!((d01.2 - 8.0).abs() < 1e-6, "{d01:?}");
    assert!((r.min_label_distance[0].unwrap() - 8.0).abs() < 1e-6);
    assert_eq!(r.accuracy["test"], 1.0);
    assert_eq!(r.split_sizes["train"], 12);
    // Test split: single points per label; distances 9.x vs train 8.
    assert!(r.similarity["train_test"].unwrap() > 0.99);
    // Comparing with itself.
    let c = compare(&r, &r).unwrap();
    assert_eq!(c.grew + c.shrank, 0);
    assert_eq!(c.similarity, Some(1.0));
    assert!(c.centroid_movement.iter().all(|m| *m == Some(0.0)));
    let mut bare = r.clone();
    bare.centroids.clear();
    assert_eq!(compare(&bare, &r), Err(CompareError::NoCentroids));
}

/// A report serialised without centroids (as `probe --json` prints it
/// and the daemon stores it) reads back, equal apart from the
/// unserialised train clusters.
#[test]
fn a_report_without_centroids_round_trips_through_json() {
    let (d, l, s) = two_squares();
    let names = vec!["train".to_string(), "test".to_string()];
    let mut r = measure_layer(
        LayerInput {
            data: &d,
            dim: 2,
            labels: &l,
            n_labels: 3,
            split: &s,
            split_names: &names,
            fit_split: TRAIN,
        },
        &MeasureParams::default(),
    );
    r.centroids.clear();
    r.train_clusters.clear();
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains("centroids"), "{json}");
    let back: LayerReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
}
