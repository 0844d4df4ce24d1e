//! The data behind every figure and the table of the report, computed from a
//! run's [`History`]: which labels to highlight, principal-component
//! projections, box statistics, table cells and whether they got worse. This
//! module holds the history the figures read; one submodule per figure
//! group computes that figure's data.
//!
//! Pure and deterministic: plain data in, plain data out, no I/O, no SVG or
//! HTML (that is [`super::svg`] and the page). Ties are broken by label or
//! layer index; the PCA starts from fixed vectors, so the same history gives
//! the same bits.

mod diff;
mod min_distance;
mod movement;
mod paths;
mod pca;
mod similarity;
mod table;

pub use diff::{DiffPanel, DiffPoint, diff_panels};
pub use min_distance::{
    Emphasis, LabelLine, MinDistanceFigure, highlight_count, min_distance_figure, top_bottom,
};
pub use movement::{BoxStats, movement_boxes, quantile};
pub use paths::{CentroidPath, PATH_FIT_STEPS, PathPanel, centroid_paths, closest_labels};
pub use pca::{Pca2, pca2};
pub use similarity::{LayerLine, similarity_lines};
pub use table::{COLUMNS, Cell, Column, TableRow, table};

/// One layer's stored values at one checkpoint (baseline or latest), as the
/// report needs them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerSummary {
    /// Layer index (0 = embedding output).
    pub layer: usize,
    /// DirectProbe clusters on the train split.
    pub clusters: usize,
    /// Labels present in the train split.
    pub labels_present: usize,
    /// Nearest-cluster accuracy of the `test` split, when measured.
    pub test_accuracy: Option<f64>,
    /// The MLP classifier probe's `test` accuracy (mean and standard
    /// deviation over its seeds), when the run trains it.
    pub classifier_test_accuracy: Option<(f64, f64)>,
    /// Train/test spatial similarity, when measured.
    pub train_test_similarity: Option<f64>,
    /// Per label: min label distance (`None` when absent).
    pub min_label_distance: Vec<Option<f64>>,
    /// `(a, b, d(a, b))` for label pairs, `a < b`.
    pub label_distance: Vec<(u32, u32, f64)>,
    /// Per label: centroid of its train points (`None` when absent or not
    /// stored).
    pub centroids: Vec<Option<Vec<f64>>>,
    /// The stored comparison with the baseline (`None` at the baseline).
    pub vs_baseline: Option<Comparison>,
}

/// The parts of a stored layer comparison the report uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    /// Per label: centroid movement (`None` when absent).
    pub centroid_movement: Vec<Option<f64>>,
    /// Pearson similarity of the label-distance vectors.
    pub similarity: Option<f64>,
    /// Labels whose min distance grew.
    pub grew: usize,
    /// Labels whose min distance shrank.
    pub shrank: usize,
    /// Mean change of the min label distance.
    pub mean_change: Option<f64>,
}

/// One layer's centroids over the run's checkpoints.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CentroidSeries {
    /// Layer index.
    pub layer: usize,
    /// Steps, ascending.
    pub steps: Vec<u64>,
    /// Per step, per label: the centroid (`None` when absent).
    pub centroids: Vec<Vec<Option<Vec<f64>>>>,
}

/// What the report knows about one task of one run: everything the figures
/// are computed from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// Run name.
    pub run: String,
    /// Task shown.
    pub task: String,
    /// Every task of the run's latest checkpoint.
    pub tasks: Vec<String>,
    /// Label names (index → name).
    pub labels: Vec<String>,
    /// Steps of the analysed (`done`) checkpoints, ascending.
    pub steps: Vec<u64>,
    /// Failed checkpoints of the run.
    pub failed: usize,
    /// The baseline's step, when one is set.
    pub baseline_step: Option<u64>,
    /// Per layer of the task, ascending: similarity to the baseline at each
    /// of `steps` (`None` where not stored).
    pub similarity: Vec<(usize, Vec<Option<f64>>)>,
    /// The layer of the min-distance figure.
    pub focus_layer: usize,
    /// Per step (aligned with `steps`), per label: min label distance in the
    /// focus layer (`None` when absent or when the step lacks the layer).
    pub focus_min_distance: Vec<Vec<Option<f64>>>,
    /// Centroids over the steps of the first and the last layer (one entry
    /// when they are the same layer).
    pub paths: Vec<CentroidSeries>,
    /// Every layer at the baseline (empty without a baseline).
    pub baseline: Vec<LayerSummary>,
    /// Every layer at the latest checkpoint.
    pub latest: Vec<LayerSummary>,
}

impl History {
    /// The latest step, if any checkpoint was analysed.
    pub fn latest_step(&self) -> Option<u64> {
        self.steps.last().copied()
    }

    /// Name of label `i` (`#i` when the names are unknown).
    pub fn label(&self, i: usize) -> String {
        self.labels
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("#{i}"))
    }
}

#[cfg(test)]
fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// A layer of four labels whose centroids moved by `moves` since the
/// baseline.
#[cfg(test)]
fn summary(layer: usize, moves: &[f64]) -> LayerSummary {
    LayerSummary {
        layer,
        clusters: 4,
        labels_present: 4,
        vs_baseline: Some(Comparison {
            centroid_movement: moves.iter().map(|&m| Some(m)).collect(),
            ..Comparison::default()
        }),
        ..LayerSummary::default()
    }
}
