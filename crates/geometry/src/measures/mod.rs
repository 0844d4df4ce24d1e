//! The measures of the fine-tuning study for one layer (DESIGN §2), and the
//! comparison of two layer reports (baseline or predecessor → now).
//!
//! [`measure_layer`] clusters the train split with DirectProbe and derives:
//! clusters per label; the cluster distance of every pair of clusters of
//! different labels; label distances (mean over cluster pairs, as the study's
//! analysis code does, or `min`); each label's min distance to the others;
//! label centroids; the layer's scale (RMS distance of the train points to
//! their mean) and every distance divided by it; nearest-cluster accuracy for
//! every non-train split; and the train/test spatial similarity (DirectProbe
//! run again on the test split, Pearson correlation of the two label-distance
//! vectors over the label pairs present in both). [`compare()`] gives centroid
//! movement, the Pearson similarity of distance vectors, and how many labels'
//! min distance grew or shrank.
//!
//! Deterministic: parallel loops (rayon) collect in a fixed order and every
//! reduction runs sequentially in that order, so 1 and N threads give the
//! same bits. No I/O, no timing: callers add the layer number and seconds.
//!
//! The stages, in the order [`measure_layer_with`] runs them, are
//! [`measure_core`] and [`measure_test_hulls`] (exact label hulls;
//! `core_stage`), then [`measure_clusters`] and [`measure_test_clusters`]
//! (DirectProbe; `cluster_stages`); [`compare()`] and the Pearson helpers
//! are in `compare`. The report's types are [`crate::layer_report`]'s, the
//! memory's [`crate::memory`]'s, the input types [`crate::input`]'s; the
//! report and input types are re-exported here. This module does not train
//! the classifier probe (the caller adds its report) and does not keep
//! memories between checkpoints (the caller does).

use serde::Serialize;

use crate::hull::{Gram, HullParams};
use crate::memory::{LayerMemory, cluster_key};

mod cluster_stages;
mod compare;
mod core_stage;
#[cfg(test)]
mod tests;

pub use self::cluster_stages::{measure_clusters, measure_test_clusters};
pub use self::compare::{CompareError, LayerComparison, compare, distance_similarity, pearson};
pub use self::core_stage::{core_part, measure_core, measure_test_hulls};
pub use crate::input::{Interrupted, KeepGoing, LayerInput, TRAIN, never_stop};
pub use crate::layer_report::{ClusterDistanceSummary, LayerReport, TRAIN_TEST, TRAIN_TEST_HULL};

/// How the distance between two labels is formed from their cluster
/// distances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelDistance {
    /// Mean over all (cluster of a, cluster of b) pairs: the study's choice.
    #[default]
    Mean,
    /// Minimum over those pairs.
    Min,
}

/// Parameters of the measures, checked by [`MeasureParams::check`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeasureParams {
    /// Hull solver parameters (the scale is set per layer).
    pub hull: HullParams,
    /// Label distance from cluster distances.
    pub label_distance: LabelDistance,
    /// Drop clusters with at most this many points before measuring (the
    /// study's analysis used 5); 0 keeps all.
    pub drop_clusters_up_to: usize,
    /// Also run DirectProbe on the test split for the train/test similarity.
    pub train_test_similarity: bool,
    /// Largest Gram matrix (bytes) to precompute per layer; layers whose
    /// n² · 8 bytes exceed it use the primal solver. 0 disables it.
    pub gram_budget_bytes: usize,
    /// On layers without a whole-layer Gram matrix: bytes of per-cluster
    /// Gram matrices for the nearest-cluster search (largest clusters
    /// first). 0 disables them.
    pub cluster_gram_budget_bytes: usize,
}

impl Default for MeasureParams {
    fn default() -> Self {
        MeasureParams {
            hull: HullParams::default(),
            label_distance: LabelDistance::Mean,
            drop_clusters_up_to: 0,
            train_test_similarity: true,
            gram_budget_bytes: Gram::DEFAULT_BUDGET_BYTES,
            cluster_gram_budget_bytes: 512 << 20,
        }
    }
}

/// A parameter out of range.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum ParamError {
    /// `rel_gap` must be in (0, 1).
    #[error("rel_gap must be in (0, 1), got {0}")]
    RelGap(f64),
    /// `intersect_rel_tol` must be in [0, 1).
    #[error("intersect_rel_tol must be in [0, 1), got {0}")]
    IntersectTol(f64),
}

impl MeasureParams {
    /// Checks the numeric parameters.
    pub fn check(self) -> Result<Self, ParamError> {
        let g = self.hull.rel_gap;
        if !(g > 0.0 && g < 1.0) {
            return Err(ParamError::RelGap(g));
        }
        let t = self.hull.intersect_rel_tol;
        if !(0.0..1.0).contains(&t) {
            return Err(ParamError::IntersectTol(t));
        }
        Ok(self)
    }
}

/// Label distances `(a, b, d)` and the cluster-distance summary.
type LabelDistances = (Vec<(u32, u32, f64)>, ClusterDistanceSummary);

/// Label-hull distances `(a, b, h)` and how many solves ended undetermined.
type HullDistances = (Vec<(u32, u32, f64)>, usize);

/// The solver parameters of a layer: one absolute tolerance from the fit
/// split's scale for every query of the layer (1 for a degenerate layer).
fn layer_hull(params: &MeasureParams, scale: f64) -> HullParams {
    HullParams {
        scale: Some(if scale > 0.0 { scale } else { 1.0 }),
        ..params.hull
    }
}

fn rows_of(split: &[u8], s: u8) -> Vec<usize> {
    split
        .iter()
        .enumerate()
        .filter(|&(_, &x)| x == s)
        .map(|(i, _)| i)
        .collect()
}

fn min_distances(n_labels: usize, ld: &[(u32, u32, f64)]) -> Vec<Option<f64>> {
    let mut m: Vec<Option<f64>> = vec![None; n_labels];
    for &(a, b, d) in ld {
        for l in [a, b] {
            let e = &mut m[l as usize];
            *e = Some(e.map_or(d, |v: f64| v.min(d)));
        }
    }
    m
}

/// Measures one layer. The split clustered is `input.fit_split` (`train`
/// unless the memorisation setting fits on `subtrain`).
///
/// # Panics
/// If the input's lengths are inconsistent or there is no fit split
/// (the dump reader rejects both).
pub fn measure_layer(input: LayerInput<'_>, params: &MeasureParams) -> LayerReport {
    measure_layer_with(input, params, None, Partition::Recluster).0
}

/// How the train (and test) partition of an incremental analysis is found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Partition {
    /// DirectProbe on this checkpoint's points (exact; warm-started).
    #[default]
    Recluster,
    /// Re-use the partition in the memory (the study's analysis code: one
    /// partition clustered at the baseline for the whole run); overlaps are
    /// only re-checked (cluster pairs at distance 0 are counted in
    /// `cluster_distance.zero_pairs`) and distances recomputed. Without a
    /// memory (the baseline itself) it clusters.
    Frozen,
}

/// The whole-layer Gram matrix when it fits `params.gram_budget_bytes`.
pub fn layer_gram(input: &LayerInput<'_>, params: &MeasureParams) -> Option<Gram> {
    let n = input.labels.len();
    (params.gram_budget_bytes > 0 && Gram::fits(n, params.gram_budget_bytes))
        .then(|| Gram::new(input.data, input.dim))
}

/// [`measure_layer`] for one checkpoint of a sequence: warm-started from the
/// previous checkpoint's [`LayerMemory`] of the same (task, layer), and
/// returning the memory for the next one. Runs every stage in order:
/// [`measure_core`], [`measure_test_hulls`], [`measure_clusters`],
/// [`measure_test_clusters`].
///
/// With [`Partition::Recluster`] the report equals the cold
/// [`measure_layer`]'s: the same clusters and verdicts, distances within the
/// solver's relative gap, nearest-cluster predictions equal except where two
/// clusters are within that gap of a point (tested on the shared
/// fine-tuning sequence). A memory built on a layer with another row count
/// is ignored.
pub fn measure_layer_with(
    input: LayerInput<'_>,
    params: &MeasureParams,
    memory: Option<&LayerMemory>,
    partition: Partition,
) -> (LayerReport, LayerMemory) {
    let memory = memory.filter(|m| m.rows == input.labels.len());
    // A layer whose input did not change since the last checkpoint (a
    // frozen layer in partial fine-tuning) has the same report: reuse it.
    let input_key = input_fingerprint(&input, params, partition, memory);
    if let Some(m) = memory {
        if let Some(r) = m.report.as_deref() {
            if m.input_key == input_key && r.clustered {
                let mut again = m.clone();
                again.reused = true;
                return (r.clone(), again);
            }
        }
    }
    let (mut report, mut next) = measure_core(input, params, memory);
    let always: KeepGoing<'_> = &never_stop;
    measure_test_hulls(input, params, memory, &mut report, &mut next, always)
        .expect("never interrupted");
    let gram_matrix = layer_gram(&input, params);
    let gram = gram_matrix.as_ref();
    measure_clusters(
        input,
        params,
        gram,
        memory,
        partition,
        &mut report,
        &mut next,
        always,
    )
    .expect("never interrupted");
    measure_test_clusters(
        input,
        params,
        gram,
        memory,
        partition,
        &mut report,
        &mut next,
        always,
    )
    .expect("never interrupted");
    next.input_key = input_key;
    next.reused = false;
    next.report = Some(Box::new(report.clone()));
    (report, next)
}

/// The report a memory holds for exactly this input, when it has the
/// `clusters` stage (a frozen layer: nothing to recompute).
pub fn reusable<'m>(
    input: &LayerInput<'_>,
    params: &MeasureParams,
    memory: Option<&'m LayerMemory>,
    partition: Partition,
) -> Option<&'m LayerReport> {
    let m = memory.filter(|m| m.rows == input.labels.len())?;
    let r = m.report.as_deref()?;
    (r.clustered && m.input_key == input_fingerprint(input, params, partition, Some(m)))
        .then_some(r)
}

/// The fingerprint [`reusable`] compares, for a memory being built.
pub fn fingerprint(
    input: &LayerInput<'_>,
    params: &MeasureParams,
    partition: Partition,
    memory: Option<&LayerMemory>,
) -> [u64; 2] {
    input_fingerprint(input, params, partition, memory)
}

/// A 128-bit fingerprint of everything a layer's report depends on: the
/// points (bit patterns), labels, splits, parameters, and for a frozen
/// partition the partition used. Two multiply–xor lanes; equal inputs give
/// equal keys, and an accidental collision of distinct inputs has
/// probability about 2⁻¹²⁸.
fn input_fingerprint(
    input: &LayerInput<'_>,
    params: &MeasureParams,
    partition: Partition,
    memory: Option<&LayerMemory>,
) -> [u64; 2] {
    let mut h = [0x9e37_79b9_7f4a_7c15u64, 0xc2b2_ae3d_27d4_eb4fu64];
    let mut eat = |x: u64| {
        h[0] = (h[0] ^ x)
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(29);
        h[1] = (h[1] ^ x.rotate_left(17))
            .wrapping_mul(0xff51_afd7_ed55_8ccd)
            .rotate_left(31);
    };
    eat(input.dim as u64);
    eat(input.n_labels as u64);
    eat(input.data.len() as u64);
    for pair in input.data.chunks(2) {
        let lo = u64::from(pair[0].to_bits());
        let hi = pair.get(1).map_or(0, |v| u64::from(v.to_bits()));
        eat(lo | (hi << 32));
    }
    for &l in input.labels {
        eat(u64::from(l));
    }
    for &s in input.split {
        eat(u64::from(s));
    }
    for name in input.split_names {
        for b in name.bytes() {
            eat(u64::from(b));
        }
        eat(u64::MAX);
    }
    for b in input.fit_split.bytes() {
        eat(u64::from(b));
    }
    for b in format!("{params:?}").bytes() {
        eat(u64::from(b));
    }
    eat(partition as u64);
    if let (Partition::Frozen, Some(m)) = (partition, memory) {
        eat(1);
        for c in &m.train_clusters {
            eat(cluster_key(c));
        }
    }
    h
}
