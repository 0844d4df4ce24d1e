//! The stored record of one layer: the one codec between a
//! [`LayerReport`] and the store's [`LayerRecord`] (the report's JSON without
//! centroids, the centroids of the labels present as an `f32` blob, the
//! comparisons with the baseline and the previous checkpoint as JSON).
//!
//! The daemon writes rows with [`encode`]; restore, the backfill, the report
//! and the benchmarks read them with [`decode`] (or [`try_decode`], which
//! says what is wrong) and [`decode_comparisons`]. Nothing else in the
//! workspace knows the row's layout. It does no I/O: the store moves rows.

use geometry::measures::{LayerComparison, LayerReport, TRAIN_TEST_HULL};
use serde::Deserialize;
use store::LayerRecord;

/// Why a stored layer record cannot be read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The report's JSON is not a layer report.
    #[error("{0}")]
    Report(serde_json::Error),
    /// The comparisons' JSON is not the comparisons [`encode`] writes.
    #[error("{0}")]
    Comparison(serde_json::Error),
    /// The centroid blob does not hold one centroid per label present.
    #[error("{values} values of width {dim} for {labels} labels with train points")]
    Centroids {
        /// Values in the blob.
        values: usize,
        /// The stored centroid width.
        dim: usize,
        /// Labels with train points in the report.
        labels: usize,
    },
}

impl DecodeError {
    /// The part of the record that is unreadable: `report`, `comparison`
    /// or `centroids`.
    pub fn part(&self) -> &'static str {
        match self {
            DecodeError::Report(_) => "report",
            DecodeError::Comparison(_) => "comparison",
            DecodeError::Centroids { .. } => "centroids",
        }
    }
}

/// A stored layer record back as a report with its centroids (`None` when
/// [`try_decode`] finds it unreadable).
pub fn decode(rec: &LayerRecord) -> Option<LayerReport> {
    try_decode(rec).ok()
}

/// A stored layer record back as a report with its centroids, or what is
/// wrong with it. Without a centroid blob (`centroid_dim` 0) the centroids
/// are those of the JSON (none for rows [`encode`] wrote).
pub fn try_decode(rec: &LayerRecord) -> Result<LayerReport, DecodeError> {
    let mut r: LayerReport = serde_json::from_str(&rec.report_json).map_err(DecodeError::Report)?;
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
            return Err(DecodeError::Centroids {
                values: rec.centroids.len(),
                dim,
                labels: present.len(),
            });
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
    Ok(r)
}

/// The comparisons stored with a layer (see [`encode`]).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Comparisons {
    /// Against the run's baseline (`None` at the baseline or without one).
    #[serde(default)]
    pub baseline: Option<LayerComparison>,
    /// Against the run's previous checkpoint (`None` at its first).
    #[serde(default)]
    pub previous: Option<LayerComparison>,
}

/// The comparisons of a stored layer record (both `None` when it has none).
pub fn decode_comparisons(rec: &LayerRecord) -> Result<Comparisons, DecodeError> {
    decode_comparison_json(rec.comparison_json.as_deref())
}

/// The comparisons from a record's `comparison_json` column alone (for
/// readers that select only that column).
pub fn decode_comparison_json(json: Option<&str>) -> Result<Comparisons, DecodeError> {
    json.map_or(Ok(Comparisons::default()), |j| {
        serde_json::from_str(j).map_err(DecodeError::Comparison)
    })
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

#[cfg(test)]
mod tests {
    use geometry::measures::{MeasureParams, compare, measure_layer};
    use geometry::synth::{Variant, generate};

    use super::*;

    /// A measured layer of four labels in five dimensions (seeded).
    fn report(seed: u64) -> LayerReport {
        let layer = generate(60, 20, 5, 4, Variant::Separable, seed);
        let splits = ["train".to_owned(), "test".to_owned()];
        let mut r = measure_layer(layer.input(&splits), &MeasureParams::default());
        r.layer = 3;
        r.label_names = ["A", "B", "C", "D"].map(String::from).to_vec();
        r
    }

    #[test]
    fn decode_gives_back_what_encode_stored() {
        let (base, now) = (report(1), report(2));
        let vs_base = compare(&base, &now).unwrap();
        let rec = encode("pos", &now, Some(&vs_base), None);
        assert_eq!(
            (rec.task.as_str(), rec.layer, rec.centroid_dim),
            ("pos", 3, 5)
        );
        assert!(
            !rec.report_json.contains("centroids\":"),
            "centroids travel in the blob"
        );
        let back = try_decode(&rec).unwrap();
        // The report through its JSON (where serde_json may move a float by
        // an ulp) with the centroids as stored (`f32`); clusters are never
        // stored.
        let mut want: LayerReport =
            serde_json::from_str(&serde_json::to_string(&now).unwrap()).unwrap();
        want.centroids = now
            .centroids
            .iter()
            .map(|c| {
                c.as_ref()
                    .map(|c| c.iter().map(|&v| f64::from(v as f32)).collect())
            })
            .collect();
        assert_eq!(back, want);
        assert_eq!(decode(&rec), Some(want));
        let cmp = decode_comparisons(&rec).unwrap();
        let vs_base: LayerComparison =
            serde_json::from_str(&serde_json::to_string(&vs_base).unwrap()).unwrap();
        assert_eq!(cmp.baseline, Some(vs_base));
        assert_eq!(cmp.previous, None);
        let bare = encode("pos", &base, None, None);
        assert_eq!(decode_comparisons(&bare).unwrap(), Comparisons::default());
    }

    #[test]
    fn unreadable_records_say_which_part() {
        let mut rec = encode("pos", &report(1), None, None);
        rec.centroids.pop();
        let err = try_decode(&rec).unwrap_err();
        assert_eq!(err.part(), "centroids");
        assert_eq!(
            err.to_string(),
            "19 values of width 5 for 4 labels with train points"
        );
        assert_eq!(decode(&rec), None);
        rec.report_json = "{\"clusters\": 1}".into();
        assert_eq!(try_decode(&rec).unwrap_err().part(), "report");
        let err = decode_comparison_json(Some("[1]")).unwrap_err();
        assert_eq!(err.part(), "comparison");
        assert_eq!(
            decode_comparison_json(Some("{}")).unwrap(),
            Comparisons::default()
        );
    }
}
