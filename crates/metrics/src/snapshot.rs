//! What the daemon publishes about a run: a [`RunSnapshot`] of plain data
//! (per layer a [`LayerSnapshot`], per label a [`LabelSnapshot`]), all of it
//! from one checkpoint, and the check that no series appears twice.
//!
//! Deliberately plain: no metric names (only `families` knows those),
//! no encoding and no locking. The snapshot is filled by the daemon from
//! analysis reports; stage names (`stage_steps`) and splits arrive as
//! strings, so this crate needs nothing of the analysis crate.

use std::collections::HashSet;

/// The analysis of a run's newest checkpoint, as exported: one value per
/// series, all from the same checkpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunSnapshot {
    /// Run name (label `run`).
    pub run: String,
    /// Training step of the checkpoint.
    pub step: u64,
    /// Modification time of the checkpoint file, seconds since the Unix
    /// epoch.
    pub timestamp_seconds: f64,
    /// One entry per (task, layer) analysed.
    pub layers: Vec<LayerSnapshot>,
}

/// One layer of one task at one checkpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerSnapshot {
    /// Task name (label `task`).
    pub task: String,
    /// Layer index, 0 = embedding output (label `layer`).
    pub layer: u32,
    /// Number of DirectProbe clusters of the train split (`None` until the
    /// `clusters` stage of some checkpoint is done for this layer).
    pub clusters: Option<u64>,
    /// Number of labels present in the train split.
    pub labels: u64,
    /// Number of DirectProbe clusters of the train split at the baseline
    /// checkpoint (`None` before a baseline exists).
    pub clusters_baseline: Option<u64>,
    /// RMS distance of the train points to their mean.
    pub scale: f64,
    /// One entry per label.
    pub label_stats: Vec<LabelSnapshot>,
    /// Pearson similarity of the label-distance vector to the baseline
    /// checkpoint's (`None` without a baseline or for the baseline itself).
    pub similarity_baseline: Option<f64>,
    /// Pearson similarity to the previous analysed checkpoint's.
    pub similarity_previous: Option<f64>,
    /// Pearson similarity between the train and test splits' label-distance
    /// vectors of this checkpoint.
    pub similarity_test: Option<f64>,
    /// Nearest-cluster accuracy per split, a fraction in [0, 1].
    pub accuracy: Vec<(String, f64)>,
    /// MLP classifier-probe accuracy per split: `(split, mean, std)` over
    /// seeds (empty when the run has no classifier).
    pub classifier_accuracy: Vec<(String, f64, f64)>,
    /// Labels whose min distance grew against the baseline (`None` for the
    /// baseline itself).
    pub labels_increased: Option<u64>,
    /// Labels whose min distance shrank against the baseline (`None` for the
    /// baseline itself).
    pub labels_decreased: Option<u64>,
    /// Distance of every label pair `(label_a, label_b, distance)`; only when
    /// the run opts in (K(K−1)/2 series per layer).
    pub label_pairs: Option<Vec<(String, String, f64)>>,
    /// Pearson similarity of the label-hull-distance vector to the
    /// baseline checkpoint's (core stage).
    pub hull_similarity_baseline: Option<f64>,
    /// Pearson similarity of the label-hull-distance vector to the previous
    /// checkpoint's (core stage).
    pub hull_similarity_previous: Option<f64>,
    /// Pearson similarity of the train and test label-hull-distance vectors
    /// (the `test_hulls` stage).
    pub hull_similarity_test: Option<f64>,
    /// Per late stage shown: `(stage, step)`, the checkpoint whose values of
    /// that stage this layer's series carry.
    pub stage_steps: Vec<(String, u64)>,
}

/// One label of one layer at one checkpoint. `None` leaves the series out
/// (label absent from the train split, no baseline yet, baseline distance 0,
/// …).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSnapshot {
    /// Label name (label `label`).
    pub label: String,
    /// Minimum label distance to any other label (representation units).
    pub min_distance: Option<f64>,
    /// `min_distance` divided by the layer's scale.
    pub min_distance_normalized: Option<f64>,
    /// Largest `min_distance_normalized` of the label over every analysed
    /// checkpoint of the run up to this one, this one included.
    pub min_distance_normalized_best: Option<f64>,
    /// `min_distance` of the label at the baseline checkpoint
    /// (representation units).
    pub min_distance_baseline: Option<f64>,
    /// Normalized min distance now / normalized min distance at the baseline
    /// − 1 (−0.3: shrank by 30 %).
    pub change_ratio: Option<f64>,
    /// Number of DirectProbe clusters of the label (`None` before the
    /// `clusters` stage).
    pub clusters: Option<u64>,
    /// Smallest label-hull distance from this label to any other
    /// (representation units; the core stage).
    pub hull_min_distance: Option<f64>,
    /// `hull_min_distance` divided by the layer's scale.
    pub hull_min_distance_normalized: Option<f64>,
    /// `hull_min_distance_normalized` at the baseline checkpoint.
    pub hull_min_distance_normalized_baseline: Option<f64>,
    /// Euclidean distance between the label's train centroid now and at the
    /// baseline (representation units).
    pub centroid_movement: Option<f64>,
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum MetricsError {
    /// A snapshot holds the same series twice.
    #[error("snapshot of run {run:?}: {what} {key} appears more than once")]
    Duplicate {
        /// The run whose snapshot is at fault.
        run: String,
        /// What is duplicated (`layer`, `label`, `split`, `label pair`).
        what: &'static str,
        /// The duplicated key.
        key: String,
    },
}

impl RunSnapshot {
    /// Checks that no series appears twice: (task, layer) pairs, labels of a
    /// layer, accuracy splits of a layer and label pairs of a layer are
    /// unique.
    pub fn check(&self) -> Result<(), MetricsError> {
        let mut copy = self.clone();
        match copy.dedup().into_iter().next() {
            None => Ok(()),
            Some((what, key)) => Err(MetricsError::Duplicate {
                run: self.run.clone(),
                what,
                key,
            }),
        }
    }

    /// Removes duplicated series, keeping the first; returns what was removed.
    pub(crate) fn dedup(&mut self) -> Vec<(&'static str, String)> {
        let mut removed = Vec::new();
        let mut seen = HashSet::new();
        self.layers.retain(|l| {
            let new = seen.insert((l.task.clone(), l.layer));
            if !new {
                removed.push(("layer", format!("{}/{}", l.task, l.layer)));
            }
            new
        });
        for l in &mut self.layers {
            let at = |key: &str| format!("{key} (task {}, layer {})", l.task, l.layer);
            let mut seen = HashSet::new();
            l.label_stats.retain(|s| {
                let new = seen.insert(s.label.clone());
                if !new {
                    removed.push(("label", at(&s.label)));
                }
                new
            });
            let mut seen = HashSet::new();
            l.accuracy.retain(|(split, _)| {
                let new = seen.insert(split.clone());
                if !new {
                    removed.push(("split", at(split)));
                }
                new
            });
            let mut seen = HashSet::new();
            l.classifier_accuracy.retain(|(split, _, _)| {
                let new = seen.insert(split.clone());
                if !new {
                    removed.push(("classifier split", at(split)));
                }
                new
            });
            if let Some(pairs) = &mut l.label_pairs {
                let mut seen = HashSet::new();
                pairs.retain(|(a, b, _)| {
                    let new = seen.insert((a.clone(), b.clone()));
                    if !new {
                        removed.push(("label pair", at(&format!("{a}/{b}"))));
                    }
                    new
                });
            }
        }
        removed
    }
}
