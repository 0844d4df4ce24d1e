//! The stored record of one layer: the one codec between a
//! [`LayerReport`] and the store's [`LayerRecord`] (the report's JSON without
//! centroids, the centroids of the labels present as an `f32` blob, the
//! comparisons with the baseline and the previous checkpoint as JSON).
//!
//! The daemon writes rows with [`encode`]; restore, the backfill, the report
//! and the benchmarks read them with [`decode`]. Nothing else in the
//! workspace knows the row's layout. It does no I/O: the store moves rows.

use geometry::measures::{LayerComparison, LayerReport, TRAIN_TEST_HULL};
use store::LayerRecord;

/// A stored layer record back as a report with its centroids.
pub fn decode(rec: &LayerRecord) -> Option<LayerReport> {
    let mut r: LayerReport = serde_json::from_str(&rec.report_json).ok()?;
    let dim = rec.centroid_dim as usize;
    if dim > 0 {
        let k = r.min_label_distance.len();
        // Labels with train points: the core stage's counts (reports stored
        // before stages existed have only their cluster counts).
        let present: Vec<usize> = (0..k)
            .filter(|&l| {
                if r.label_counts.is_empty() {
                    r.clusters_per_label.get(l).is_some_and(|&c| c > 0)
                } else {
                    r.label_counts.get(l).is_some_and(|&c| c > 0)
                }
            })
            .collect();
        if present.len() * dim != rec.centroids.len() {
            return None;
        }
        let mut cents = vec![None; k];
        for (i, &l) in present.iter().enumerate() {
            cents[l] = Some(
                rec.centroids[i * dim..(i + 1) * dim]
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect(),
            );
        }
        r.centroids = cents;
    }
    Some(r)
}

/// A layer report as a store record: the report's JSON without centroids,
/// the centroids of the labels present as an `f32` blob, the comparisons.
pub fn encode(
    task: &str,
    l: &LayerReport,
    baseline: Option<&LayerComparison>,
    previous: Option<&LayerComparison>,
) -> LayerRecord {
    let mut bare = l.clone();
    bare.centroids = Vec::new();
    let dim = l
        .centroids
        .iter()
        .flatten()
        .map(Vec::len)
        .next()
        .unwrap_or(0);
    let centroids: Vec<f32> = l
        .centroids
        .iter()
        .flatten()
        .flat_map(|c| c.iter().map(|&v| v as f32))
        .collect();
    let comparison = (baseline.is_some() || previous.is_some())
        .then(|| serde_json::json!({ "baseline": baseline, "previous": previous }).to_string());
    LayerRecord {
        task: task.to_string(),
        layer: l.layer as u32,
        report_json: serde_json::to_string(&bare).unwrap_or_else(|_| "{}".into()),
        comparison_json: comparison,
        centroids,
        centroid_dim: dim as u32,
    }
}

/// Whether a stored layer report holds the `clusters` stage.
pub fn has_clusters(r: &LayerReport) -> bool {
    r.clustered
}

/// Whether a layer report holds the `test_hulls` stage.
pub fn has_test_hulls(r: &LayerReport) -> bool {
    r.similarity.contains_key(TRAIN_TEST_HULL)
}

/// Label names travel in the report's `label_names` (added by the daemon to
/// each stored layer); fall back to indices.
pub fn label_names(r: &LayerReport) -> Vec<String> {
    if r.label_names.len() == r.min_label_distance.len() {
        r.label_names.clone()
    } else {
        (0..r.min_label_distance.len())
            .map(|i| i.to_string())
            .collect()
    }
}
