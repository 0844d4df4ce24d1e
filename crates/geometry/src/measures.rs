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
//! vectors over the label pairs present in both). [`compare`] gives centroid
//! movement, the Pearson similarity of distance vectors, and how many labels'
//! min distance grew or shrank.
//!
//! Deterministic: parallel loops (rayon) collect in a fixed order and every
//! reduction runs sequentially in that order, so 1 and N threads give the
//! same bits. No I/O, no timing: callers add the layer number and seconds.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use serde::Serialize;

use super::classifier::{ClassifierReport, MeanStd};
use super::directprobe::{self, Cluster, ClusterStats, Clustering, LabelledPoints};
use super::hull::{
    ClusterGram, Gram, HullParams, PointSet, Query, Verdict, hull_distance, point_distance_with,
    rms_radius,
};
use super::memory::{ClusteringMemory, CompactWarm, LayerMemory, cluster_key};
use super::working_set::hull_distance_ws;
pub use super::{Interrupted, KeepGoing, never_stop};

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

/// One layer's points with labels and splits.
#[derive(Clone, Copy, Debug)]
pub struct LayerInput<'a> {
    /// Row-major `f32` matrix, `n × dim`.
    pub data: &'a [f32],
    /// Number of columns.
    pub dim: usize,
    /// Label index per row.
    pub labels: &'a [u32],
    /// Number of label names.
    pub n_labels: usize,
    /// Split index per row.
    pub split: &'a [u8],
    /// Split names (index → name).
    pub split_names: &'a [String],
    /// The split clustered (and the classifier fitted on): [`TRAIN`], or
    /// `subtrain` in the memorisation setting. Every other split is
    /// evaluated against its clusters.
    pub fit_split: &'a str,
}

/// The name of the split fitted on by default.
pub const TRAIN: &str = "train";

/// Summary of the cluster distances of a layer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ClusterDistanceSummary {
    /// Pairs of clusters of different labels measured.
    pub pairs: usize,
    /// Pairs at distance 0 (intersecting).
    pub zero_pairs: usize,
    /// Smallest cluster distance.
    pub min: Option<f64>,
    /// Mean cluster distance.
    pub mean: Option<f64>,
    /// Largest cluster distance.
    pub max: Option<f64>,
    /// `min`, `mean`, `max` divided by the layer's scale.
    pub normalized: Option<[f64; 3]>,
}

/// Everything measured on one layer.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct LayerReport {
    /// Layer index (0 = embedding output); set by the caller.
    pub layer: usize,
    /// Whether the `clusters` stage is in this report: DirectProbe's
    /// partition and everything measured on it (`clusters`,
    /// `clusters_per_label`, `label_distance*`, `min_label_distance*`,
    /// `cluster_distance`, `accuracy`, `cluster_stats`). A core-only report
    /// ([`measure_core`]) has those fields empty. Reports stored before
    /// stages existed hold everything (the default).
    #[serde(default = "yes")]
    pub clustered: bool,
    /// Fit-split points per label index (the core stage; empty in reports
    /// stored before it existed).
    #[serde(default)]
    pub label_counts: Vec<usize>,
    /// `[a, b, h(a, b)]` for every pair of labels present in the fit split,
    /// `a < b`: the distance between the convex hull of *all* fit-split
    /// points of `a` and that of `b` (0 when they intersect). Exact and
    /// cheap (one solve per pair, no clustering); equal to `label_distance`
    /// when every label is one cluster, never larger otherwise.
    #[serde(default)]
    pub label_hull_distance: Vec<(u32, u32, f64)>,
    /// `label_hull_distance` divided by `scale`.
    #[serde(default)]
    pub label_hull_distance_normalized: Vec<(u32, u32, f64)>,
    /// Per label: min over other labels of `h(a, b)`; `None` when absent.
    #[serde(default)]
    pub min_label_hull_distance: Vec<Option<f64>>,
    /// `min_label_hull_distance` divided by `scale`.
    #[serde(default)]
    pub min_label_hull_distance_normalized: Vec<Option<f64>>,
    /// Whether the partition was frozen (re-used from the baseline) rather
    /// than clustered on this checkpoint.
    pub frozen_partition: bool,
    /// Number of DirectProbe clusters on the train split.
    pub clusters: usize,
    /// Labels present in the train split.
    pub labels_present: usize,
    /// Clusters per label index (0 for labels absent from train).
    pub clusters_per_label: Vec<usize>,
    /// `[a, b, d(a, b)]` for every pair of labels present in train, `a < b`.
    pub label_distance: Vec<(u32, u32, f64)>,
    /// `label_distance` divided by `scale`.
    pub label_distance_normalized: Vec<(u32, u32, f64)>,
    /// Per label: min over other labels of `d(a, b)`; `None` when absent.
    pub min_label_distance: Vec<Option<f64>>,
    /// `min_label_distance` divided by `scale`.
    pub min_label_distance_normalized: Vec<Option<f64>>,
    /// RMS distance of the train points to their mean.
    pub scale: f64,
    /// Cluster distances (clusters of different labels).
    pub cluster_distance: ClusterDistanceSummary,
    /// Nearest-cluster accuracy per non-train split with points.
    pub accuracy: BTreeMap<String, f64>,
    /// Spatial similarities: `train_test` is the Pearson correlation of the
    /// train and test label-distance vectors (DirectProbe on both splits;
    /// the `test_clusters` stage), `train_test_hull` that of the train and
    /// test label-hull-distance vectors (the core stage).
    pub similarity: BTreeMap<String, Option<f64>>,
    /// Number of DirectProbe clusters on the test split (when run).
    pub test_clusters: Option<usize>,
    /// Points per split name.
    pub split_sizes: BTreeMap<String, usize>,
    /// Labels resolved by the exact shortcut, work counters.
    pub cluster_stats: ClusterStats,
    /// Per label: the centroid of its train points (`None` when absent).
    /// Not serialised by default (large); [`compare`] needs it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub centroids: Vec<Option<Vec<f64>>>,
    /// The train clusters (not serialised; for warm starts and reports).
    #[serde(skip)]
    pub train_clusters: Vec<Cluster>,
    /// Label names (index → name) when the caller adds them (the daemon
    /// stores them with each layer); empty from [`measure_layer`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_names: Vec<String>,
    /// Classifier-probe accuracy per split other than the fit split (mean
    /// and standard deviation over seeds); set by the caller when asked
    /// for ([`super::classifier::probe`]), absent from the JSON otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier_accuracy: Option<BTreeMap<String, MeanStd>>,
    /// The classifier probe's search and chosen configuration (its
    /// accuracies are in `classifier_accuracy`); absent when not computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier: Option<ClassifierReport>,
    /// Wall-clock seconds; set by the caller (0 here: the core does not
    /// time itself).
    pub seconds: f64,
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

fn yes() -> bool {
    true
}

/// Key of the core stage's train/test similarity in
/// [`LayerReport::similarity`].
pub const TRAIN_TEST_HULL: &str = "train_test_hull";
/// Key of the `test_clusters` stage's train/test similarity.
pub const TRAIN_TEST: &str = "train_test";

fn rows_of(split: &[u8], s: u8) -> Vec<usize> {
    split
        .iter()
        .enumerate()
        .filter(|&(_, &x)| x == s)
        .map(|(i, _)| i)
        .collect()
}

/// The layer's scale (RMS distance of `rows` to their mean) and the
/// per-label centroids of `rows`.
fn scale_and_centroids(
    data: &[f32],
    dim: usize,
    labels: &[u32],
    n_labels: usize,
    rows: &[usize],
) -> (f64, Vec<Option<Vec<f64>>>) {
    let mut sums = vec![vec![0.0f64; dim]; n_labels];
    let mut counts = vec![0usize; n_labels];
    for &r in rows {
        let l = labels[r] as usize;
        counts[l] += 1;
        for (s, &v) in sums[l].iter_mut().zip(&data[r * dim..(r + 1) * dim]) {
            *s += v as f64;
        }
    }
    let centroids = sums
        .into_iter()
        .zip(&counts)
        .map(|(s, &c)| (c > 0).then(|| s.into_iter().map(|v| v / c as f64).collect()))
        .collect();
    (rms_radius(data, dim, rows), centroids)
}

/// Label distances from the clusters: `(a, b, d)` for `a < b`, both with at
/// least one (kept) cluster, plus the cluster-distance summary.
#[allow(clippy::too_many_arguments)] // the layer, the clusters, the mode, warm starts in and out
fn label_distances(
    data: &[f32],
    dim: usize,
    gram: Option<&Gram>,
    clusters: &[&Cluster],
    mode: LabelDistance,
    hull: &HullParams,
    warm: Option<&HashMap<(u64, u64), CompactWarm>>,
    remember: &mut HashMap<(u64, u64), CompactWarm>,
    keep_going: KeepGoing<'_>,
) -> Result<LabelDistances, Interrupted> {
    let pairs: Vec<(usize, usize)> = (0..clusters.len())
        .flat_map(|x| (x + 1..clusters.len()).map(move |y| (x, y)))
        .filter(|&(x, y)| clusters[x].label != clusters[y].label)
        .collect();
    let keys: Vec<u64> = clusters.iter().map(|c| cluster_key(c)).collect();
    let solved: Option<Vec<(f64, CompactWarm)>> = pairs
        .par_iter()
        .map(|&(x, y)| {
            if !keep_going() {
                return None;
            }
            let w = warm
                .and_then(|m| m.get(&(keys[x], keys[y])))
                .map(CompactWarm::to_warm);
            let r = hull_distance(
                PointSet::subset_with(data, dim, &clusters[x].members, gram),
                PointSet::subset_with(data, dim, &clusters[y].members, gram),
                Query::Distance,
                hull,
                w.as_ref(),
            );
            Some((r.distance(), CompactWarm::from_result(&r, false)))
        })
        .collect();
    let solved = solved.ok_or(Interrupted)?;
    let mut dists = Vec::with_capacity(solved.len());
    for (&(x, y), (d, w)) in pairs.iter().zip(solved) {
        dists.push(d);
        remember.insert((keys[x], keys[y]), w);
    }
    let mut summary = ClusterDistanceSummary {
        pairs: dists.len(),
        ..Default::default()
    };
    if !dists.is_empty() {
        summary.zero_pairs = dists.iter().filter(|&&d| d == 0.0).count();
        summary.min = dists.iter().copied().reduce(f64::min);
        summary.max = dists.iter().copied().reduce(f64::max);
        summary.mean = Some(dists.iter().sum::<f64>() / dists.len() as f64);
    }
    // Aggregate per label pair, in a fixed order.
    let mut agg: BTreeMap<(u32, u32), (f64, usize, f64)> = BTreeMap::new();
    for (&(x, y), &d) in pairs.iter().zip(&dists) {
        let (a, b) = (clusters[x].label, clusters[y].label);
        let key = (a.min(b), a.max(b));
        let e = agg.entry(key).or_insert((0.0, 0, f64::INFINITY));
        e.0 += d;
        e.1 += 1;
        e.2 = e.2.min(d);
    }
    let out = agg
        .into_iter()
        .map(|((a, b), (s, n, m))| {
            let d = match mode {
                LabelDistance::Mean => s / n as f64,
                LabelDistance::Min => m,
            };
            (a, b, d)
        })
        .collect();
    Ok((out, summary))
}

/// Index of the cluster whose hull is nearest to `p` (ties: lowest index).
#[allow(clippy::too_many_arguments)]
fn nearest_cluster(
    data: &[f32],
    dim: usize,
    gram: Option<&Gram>,
    cluster_grams: &[Option<ClusterGram>],
    clusters: &[&Cluster],
    spheres: &[(Vec<f64>, f64)],
    row: usize,
    hull: &HullParams,
    hint: Option<usize>,
) -> Option<usize> {
    let p = &data[row * dim..(row + 1) * dim];
    let prow = [row];
    // Only the argmin is used: skip the explicit end-of-solve certificate.
    let hull = &HullParams {
        explicit_certificate: false,
        ..*hull
    };
    let mut order: Vec<(f64, usize)> = spheres
        .iter()
        .enumerate()
        .map(|(k, (c, r))| {
            let d: f64 = c
                .iter()
                .zip(p)
                .map(|(x, &y)| (x - y as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            ((d - r).max(0.0), k)
        })
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    // Last checkpoint's nearest cluster first: its distance is a tight
    // bound that prunes the rest. The search stays exhaustive (every
    // cluster whose sphere bound is below the best is solved), so the
    // answer does not depend on the hint beyond solver tolerance.
    if let Some(h) = hint {
        if let Some(pos) = order.iter().position(|&(_, k)| k == h) {
            let e = order.remove(pos);
            order.insert(0, e);
        }
    }
    let mut best: Option<(f64, usize)> = None;
    for (lb, k) in order {
        if let Some((bd, _)) = best {
            // A sphere bound and a solver distance round differently: keep
            // a few ulps of slack so a tie is always decided by the solver
            // (and then by the lower cluster index), never by the pruning.
            // (The order is ascending apart from the hint at the front.)
            if lb > bd * (1.0 + 4.0 * f64::EPSILON) {
                break;
            }
        }
        let query = match best {
            Some((bd, _)) => Query::DistanceUpTo(bd),
            None => Query::Distance,
        };
        let members = PointSet::subset_with(data, dim, &clusters[k].members, gram);
        let r = match (gram, cluster_grams.get(k).and_then(|g| g.as_ref())) {
            (None, Some(cg)) => point_distance_with(members, cg, p, query, hull),
            _ => hull_distance(
                members,
                PointSet::subset_with(data, dim, &prow, gram),
                query,
                hull,
                None,
            ),
        };
        if let Some((bd, _)) = best {
            if r.lower > bd {
                continue;
            }
        }
        let d = r.distance();
        best = match best {
            Some((bd, bk)) if bd < d || (bd == d && bk < k) => Some((bd, bk)),
            _ => Some((d, k)),
        };
    }
    best.map(|(_, k)| k)
}

/// Bounding sphere of a cluster (the pre-filter of the nearest-cluster
/// search).
fn sphere(data: &[f32], dim: usize, members: &[usize]) -> (Vec<f64>, f64) {
    let mut sum = vec![0.0f64; dim];
    for &m in members {
        for (s, &v) in sum.iter_mut().zip(&data[m * dim..(m + 1) * dim]) {
            *s += v as f64;
        }
    }
    directprobe::centroid_radius(data, dim, members, &sum)
}

/// Pearson correlation of two equally long vectors; `None` when shorter
/// than 2 or either has zero variance.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len().min(y.len());
    if n < 2 {
        return None;
    }
    let mx = x[..n].iter().sum::<f64>() / n as f64;
    let my = y[..n].iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for k in 0..n {
        let (a, b) = (x[k] - mx, y[k] - my);
        sxy += a * b;
        sxx += a * a;
        syy += b * b;
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some((sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// Pearson correlation of two label-distance lists over the label pairs
/// present in both.
pub fn distance_similarity(x: &[(u32, u32, f64)], y: &[(u32, u32, f64)]) -> Option<f64> {
    let ym: BTreeMap<(u32, u32), f64> = y.iter().map(|&(a, b, d)| ((a, b), d)).collect();
    let (mut u, mut v) = (Vec::new(), Vec::new());
    for &(a, b, d) in x {
        if let Some(&e) = ym.get(&(a, b)) {
            u.push(d);
            v.push(e);
        }
    }
    pearson(&u, &v)
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

/// Label-hull distances of `rows`: for every pair of labels present among
/// them, the certified distance between the hulls of their points (one
/// solve per pair, warm-started from `warm` by label pair; the new warm
/// starts go to `remember`). The rows are copied into one compact matrix
/// so its Gram matrix fits the budget more often than the layer's would.
#[allow(clippy::too_many_arguments)] // the layer, the rows, the solver, warm starts in and out
fn label_hull_distances(
    data: &[f32],
    dim: usize,
    labels: &[u32],
    n_labels: usize,
    rows: &[usize],
    hull: &HullParams,
    gram_budget_bytes: usize,
    warm: Option<&HashMap<(u32, u32), CompactWarm>>,
    remember: &mut HashMap<(u32, u32), CompactWarm>,
    keep_going: KeepGoing<'_>,
) -> Result<HullDistances, Interrupted> {
    let mut compact = Vec::with_capacity(rows.len() * dim);
    let mut by_label: Vec<Vec<usize>> = vec![Vec::new(); n_labels];
    for (pos, &r) in rows.iter().enumerate() {
        compact.extend_from_slice(&data[r * dim..(r + 1) * dim]);
        by_label[labels[r] as usize].push(pos);
    }
    let gram_matrix = (gram_budget_bytes > 0 && Gram::fits(rows.len(), gram_budget_bytes))
        .then(|| Gram::new(&compact, dim));
    let gram = gram_matrix.as_ref();
    let present: Vec<usize> = (0..n_labels).filter(|&l| !by_label[l].is_empty()).collect();
    let pairs: Vec<(usize, usize)> = present
        .iter()
        .enumerate()
        .flat_map(|(k, &a)| present[k + 1..].iter().map(move |&b| (a, b)))
        .collect();
    let solved: Option<Vec<(f64, bool, CompactWarm)>> = pairs
        .par_iter()
        .map(|&(a, b)| {
            if !keep_going() {
                return None;
            }
            let w = warm
                .and_then(|m| m.get(&(a as u32, b as u32)))
                .map(CompactWarm::to_warm);
            let r = hull_distance_ws(
                PointSet::subset_with(&compact, dim, &by_label[a], gram),
                PointSet::subset_with(&compact, dim, &by_label[b], gram),
                Query::Distance,
                hull,
                w.as_ref(),
            );
            Some((
                r.distance(),
                r.verdict == Verdict::Undetermined,
                CompactWarm::from_result(&r, true),
            ))
        })
        .collect();
    let solved = solved.ok_or(Interrupted)?;
    let mut out = Vec::with_capacity(pairs.len());
    let mut undetermined = 0;
    for (&(a, b), (d, u, w)) in pairs.iter().zip(solved) {
        out.push((a as u32, b as u32, d));
        undetermined += usize::from(u);
        remember.insert((a as u32, b as u32), w);
    }
    Ok((out, undetermined))
}

/// The core stage of one layer: cheap, exact, no clustering. The fit
/// split's scale and label centroids, the label-hull distance of every
/// label pair (the hull of all fit-split points of one label against
/// another's: one certified solve per pair) with each label's minimum and
/// their normalized forms. The test split's label hulls are the
/// `test_hulls` stage ([`measure_test_hulls`]): on a large test split they
/// cost many times the fit split's.
///
/// The report's cluster fields are empty and `clustered` is false; the
/// memory holds the label-pair warm starts and, with the report, the
/// input's fingerprint (an unchanged layer gets the same report again).
pub fn measure_core(
    input: LayerInput<'_>,
    params: &MeasureParams,
    memory: Option<&LayerMemory>,
) -> (LayerReport, LayerMemory) {
    let memory = memory.filter(|m| m.rows == input.labels.len());
    let input_key = input_fingerprint(&input, params, Partition::Recluster, None);
    if let Some(m) = memory {
        if let Some(r) = m.report.as_deref() {
            if m.core_key == input_key && !r.label_counts.is_empty() {
                let mut again = m.clone();
                again.reused = true;
                return (core_part(r), again);
            }
        }
    }
    let LayerInput {
        data,
        dim,
        labels,
        n_labels,
        split,
        split_names,
        fit_split,
    } = input;
    assert_eq!(data.len(), labels.len() * dim);
    assert_eq!(split.len(), labels.len());
    let train_id = split_names
        .iter()
        .position(|s| s == fit_split)
        .expect("the fit split") as u8;
    let train = rows_of(split, train_id);
    let (scale, centroids) = scale_and_centroids(data, dim, labels, n_labels, &train);
    let mut label_counts = vec![0usize; n_labels];
    for &r in &train {
        label_counts[labels[r] as usize] += 1;
    }
    let hull = layer_hull(params, scale);
    let mut next = LayerMemory {
        rows: labels.len(),
        ..Default::default()
    };
    let (label_hull_distance, undetermined) = label_hull_distances(
        data,
        dim,
        labels,
        n_labels,
        &train,
        &hull,
        params.gram_budget_bytes,
        memory.map(|m| &m.core_train),
        &mut next.core_train,
        &never_stop,
    )
    .expect("never interrupted");
    let norm = |v: f64| if scale > 0.0 { v / scale } else { 0.0 };
    let min_label_hull_distance = min_distances(n_labels, &label_hull_distance);
    let similarity = BTreeMap::new();
    let mut split_sizes = BTreeMap::new();
    for (s, name) in split_names.iter().enumerate() {
        split_sizes.insert(
            name.clone(),
            split.iter().filter(|&&x| x == s as u8).count(),
        );
    }
    let report = LayerReport {
        layer: 0,
        clustered: false,
        label_counts,
        label_hull_distance_normalized: label_hull_distance
            .iter()
            .map(|&(a, b, d)| (a, b, norm(d)))
            .collect(),
        label_hull_distance,
        min_label_hull_distance_normalized: min_label_hull_distance
            .iter()
            .map(|d| d.map(norm))
            .collect(),
        min_label_hull_distance,
        frozen_partition: false,
        clusters: 0,
        labels_present: centroids.iter().filter(|c| c.is_some()).count(),
        clusters_per_label: vec![0; n_labels],
        label_distance: Vec::new(),
        label_distance_normalized: Vec::new(),
        min_label_distance: vec![None; n_labels],
        min_label_distance_normalized: vec![None; n_labels],
        scale,
        cluster_distance: ClusterDistanceSummary::default(),
        accuracy: BTreeMap::new(),
        similarity,
        test_clusters: None,
        split_sizes,
        cluster_stats: ClusterStats {
            undetermined,
            ..ClusterStats::default()
        },
        centroids,
        train_clusters: Vec::new(),
        label_names: Vec::new(),
        classifier_accuracy: None,
        classifier: None,
        seconds: 0.0,
    };
    next.core_key = input_key;
    next.report = Some(Box::new(report.clone()));
    (report, next)
}

/// The `test_hulls` stage: the label-hull distances of the `test` split
/// and their Pearson similarity with the fit split's
/// (`similarity["train_test_hull"]`); exact, no clustering. Needs the core
/// stage's `report`; does nothing without a `test` split (other than the
/// fit split) or with `params.train_test_similarity` off. `keep_going` is
/// asked between label pairs.
pub fn measure_test_hulls(
    input: LayerInput<'_>,
    params: &MeasureParams,
    memory: Option<&LayerMemory>,
    report: &mut LayerReport,
    next: &mut LayerMemory,
    keep_going: KeepGoing<'_>,
) -> Result<(), Interrupted> {
    let memory = memory.filter(|m| m.rows == input.labels.len());
    if !params.train_test_similarity {
        return Ok(());
    }
    let Some(test_id) = input.split_names.iter().position(|s| s == "test") else {
        return Ok(());
    };
    if input.split_names[test_id] == input.fit_split {
        return Ok(());
    }
    let test = rows_of(input.split, test_id as u8);
    if test.is_empty() {
        return Ok(());
    }
    let scale = report.scale;
    let hull = layer_hull(params, scale);
    let (test_hd, u) = label_hull_distances(
        input.data,
        input.dim,
        input.labels,
        input.n_labels,
        &test,
        &hull,
        params.gram_budget_bytes,
        memory.map(|m| &m.core_test),
        &mut next.core_test,
        keep_going,
    )?;
    report.cluster_stats.undetermined += u;
    report.similarity.insert(
        TRAIN_TEST_HULL.to_string(),
        distance_similarity(&report.label_hull_distance, &test_hd),
    );
    Ok(())
}

/// The core stage's part of a report (the late stages' fields emptied).
pub fn core_part(r: &LayerReport) -> LayerReport {
    let k = r.min_label_distance.len().max(r.label_counts.len());
    let mut similarity = BTreeMap::new();
    if let Some(v) = r.similarity.get(TRAIN_TEST_HULL) {
        similarity.insert(TRAIN_TEST_HULL.to_string(), *v);
    }
    LayerReport {
        clustered: false,
        frozen_partition: false,
        clusters: 0,
        clusters_per_label: vec![0; k],
        label_distance: Vec::new(),
        label_distance_normalized: Vec::new(),
        min_label_distance: vec![None; k],
        min_label_distance_normalized: vec![None; k],
        cluster_distance: ClusterDistanceSummary::default(),
        accuracy: BTreeMap::new(),
        similarity,
        test_clusters: None,
        cluster_stats: ClusterStats {
            undetermined: 0,
            ..ClusterStats::default()
        },
        train_clusters: Vec::new(),
        classifier_accuracy: None,
        classifier: None,
        ..r.clone()
    }
}

/// One split's partition and the label distances of its kept clusters, for
/// the `clusters` and `test_clusters` stages: `frozen` when given (no
/// clustering, no new DirectProbe memory), else DirectProbe warm-started
/// from `warm`, whose memory for the next checkpoint is returned. Distance
/// warm starts come from `memory` and go to `next`.
#[allow(clippy::too_many_arguments)] // the split, the parameters, the partition source and the memories in and out
fn partition_and_distances(
    lp: LabelledPoints<'_>,
    params: &MeasureParams,
    hull: &HullParams,
    frozen: Option<&[Cluster]>,
    warm: Option<&ClusteringMemory>,
    memory: Option<&LayerMemory>,
    next: &mut LayerMemory,
    keep_going: KeepGoing<'_>,
) -> Result<(Clustering, Option<ClusteringMemory>, LabelDistances), Interrupted> {
    if !keep_going() {
        return Err(Interrupted);
    }
    let (clustering, cm) = match frozen {
        Some(f) => (frozen_clustering(f, lp.labels, lp.n_labels), None),
        None => {
            let (c, cm) = directprobe::cluster_interruptible(lp, hull, warm, keep_going)?;
            (c, Some(cm))
        }
    };
    if !keep_going() {
        return Err(Interrupted);
    }
    let kept: Vec<&Cluster> = clustering
        .clusters
        .iter()
        .filter(|c| c.members.len() > params.drop_clusters_up_to)
        .collect();
    let distances = label_distances(
        lp.data,
        lp.dim,
        lp.gram,
        &kept,
        params.label_distance,
        hull,
        memory.map(|m| &m.distances),
        &mut next.distances,
        keep_going,
    )?;
    Ok((clustering, cm, distances))
}

/// The `clusters` stage: DirectProbe on the fit split (or, with
/// [`Partition::Frozen`] and a memory, the memory's partition), the
/// distance of every pair of clusters of different labels, label distances
/// and each label's minimum, and nearest-cluster accuracy for every other
/// split with points. Fills those fields of `report` (a [`measure_core`]
/// report of the same input, whose scale sets the solver's tolerance) and
/// sets `clustered`; warm starts come from `memory` and go to `next`.
///
/// `keep_going` is asked between solves; when it answers false the stage
/// stops with [`Interrupted`] and `report` is left as it was.
#[allow(clippy::too_many_arguments)] // the layer, the parameters, memories in and out, the report, the caller's brake
pub fn measure_clusters(
    input: LayerInput<'_>,
    params: &MeasureParams,
    gram: Option<&Gram>,
    memory: Option<&LayerMemory>,
    partition: Partition,
    report: &mut LayerReport,
    next: &mut LayerMemory,
    keep_going: KeepGoing<'_>,
) -> Result<(), Interrupted> {
    let memory = memory.filter(|m| m.rows == input.labels.len());
    let LayerInput {
        data,
        dim,
        labels,
        n_labels,
        split,
        split_names,
        fit_split,
    } = input;
    let train_id = split_names
        .iter()
        .position(|s| s == fit_split)
        .expect("the fit split") as u8;
    let train = rows_of(split, train_id);
    let scale = report.scale;
    let hull = layer_hull(params, scale);
    let lp = LabelledPoints {
        data,
        dim,
        labels,
        n_labels,
        rows: &train,
        gram,
    };
    next.rows = labels.len();
    let frozen = match (partition, memory) {
        (Partition::Frozen, Some(m)) if !m.train_clusters.is_empty() => Some(m),
        _ => None,
    };
    let (clustering, cm, (label_distance, cluster_distance)) = partition_and_distances(
        lp,
        params,
        &hull,
        frozen.map(|m| m.train_clusters.as_slice()),
        memory.map(|m| &m.train),
        memory,
        next,
        keep_going,
    )?;
    if let Some(cm) = cm {
        next.train = cm;
    }
    let kept: Vec<&Cluster> = clustering
        .clusters
        .iter()
        .filter(|c| c.members.len() > params.drop_clusters_up_to)
        .collect();
    let min_label_distance = min_distances(n_labels, &label_distance);
    let norm = |v: f64| if scale > 0.0 { v / scale } else { 0.0 };
    let label_distance_normalized = label_distance
        .iter()
        .map(|&(a, b, d)| (a, b, norm(d)))
        .collect();
    let mut cluster_distance = cluster_distance;
    if let (Some(lo), Some(me), Some(hi)) = (
        cluster_distance.min,
        cluster_distance.mean,
        cluster_distance.max,
    ) {
        cluster_distance.normalized = Some([norm(lo), norm(me), norm(hi)]);
    }
    let min_label_distance_normalized = min_label_distance.iter().map(|d| d.map(norm)).collect();

    let mut accuracy = BTreeMap::new();
    // Without a whole-layer Gram matrix, give the largest clusters their
    // own (within budget) for the many point queries against them.
    let has_eval = split_names
        .iter()
        .enumerate()
        .any(|(s, _)| s as u8 != train_id && split.contains(&(s as u8)));
    let mut cluster_grams: Vec<Option<ClusterGram>> = vec![None; kept.len()];
    if gram.is_none() && has_eval && params.cluster_gram_budget_bytes > 0 {
        let mut order: Vec<usize> = (0..kept.len()).collect();
        order.sort_by(|&x, &y| {
            kept[y]
                .members
                .len()
                .cmp(&kept[x].members.len())
                .then(x.cmp(&y))
        });
        let mut left = params.cluster_gram_budget_bytes;
        let mut chosen = Vec::new();
        for k in order {
            let b = ClusterGram::bytes(kept[k].members.len());
            if kept[k].members.len() > 1 && b <= left {
                left -= b;
                chosen.push(k);
            }
        }
        let built: Vec<(usize, ClusterGram)> = chosen
            .par_iter()
            .map(|&k| {
                (
                    k,
                    ClusterGram::new(PointSet::subset(data, dim, &kept[k].members)),
                )
            })
            .collect();
        for (k, g) in built {
            cluster_grams[k] = Some(g);
        }
    }
    let spheres: Vec<(Vec<f64>, f64)> =
        kept.iter().map(|c| sphere(data, dim, &c.members)).collect();
    let kept_keys: Vec<u64> = kept.iter().map(|c| cluster_key(c)).collect();
    for (s, name) in split_names.iter().enumerate() {
        let rows = rows_of(split, s as u8);
        if s as u8 == train_id || rows.is_empty() || kept.is_empty() {
            continue;
        }
        let found: Option<Vec<Option<usize>>> = rows
            .par_iter()
            .map(|&r| {
                if !keep_going() {
                    return None;
                }
                let hint = memory
                    .and_then(|m| m.nearest.get(&r))
                    .and_then(|key| kept_keys.iter().position(|k| k == key));
                Some(nearest_cluster(
                    data,
                    dim,
                    gram,
                    &cluster_grams,
                    &kept,
                    &spheres,
                    r,
                    &hull,
                    hint,
                ))
            })
            .collect();
        let found = found.ok_or(Interrupted)?;
        let mut correct = 0usize;
        for (&r, k) in rows.iter().zip(found) {
            if let Some(k) = k {
                correct += usize::from(kept[k].label == labels[r]);
                next.nearest.insert(r, kept_keys[k]);
            }
        }
        accuracy.insert(name.clone(), correct as f64 / rows.len() as f64);
    }
    report.clustered = true;
    report.frozen_partition = frozen.is_some();
    report.clusters = clustering.clusters.len();
    report.clusters_per_label = clustering.clusters_per_label(n_labels);
    report.label_distance = label_distance;
    report.label_distance_normalized = label_distance_normalized;
    report.min_label_distance = min_label_distance;
    report.min_label_distance_normalized = min_label_distance_normalized;
    report.cluster_distance = cluster_distance;
    report.accuracy = accuracy;
    let core_undetermined = report.cluster_stats.undetermined;
    report.cluster_stats = clustering.stats.clone();
    report.cluster_stats.undetermined += core_undetermined;
    next.train_clusters = clustering.clusters.clone();
    report.train_clusters = clustering.clusters;
    Ok(())
}

/// The `test_clusters` stage: DirectProbe on the `test` split (or the
/// memory's test partition when frozen) and the Pearson similarity of its
/// label-distance vector with the train one (`similarity["train_test"]`,
/// `test_clusters`). Needs `report` from [`measure_clusters`]; does nothing
/// without a `test` split or with `params.train_test_similarity` off.
#[allow(clippy::too_many_arguments)] // as measure_clusters
pub fn measure_test_clusters(
    input: LayerInput<'_>,
    params: &MeasureParams,
    gram: Option<&Gram>,
    memory: Option<&LayerMemory>,
    partition: Partition,
    report: &mut LayerReport,
    next: &mut LayerMemory,
    keep_going: KeepGoing<'_>,
) -> Result<(), Interrupted> {
    let memory = memory.filter(|m| m.rows == input.labels.len());
    if !params.train_test_similarity || !report.clustered {
        return Ok(());
    }
    let LayerInput {
        data,
        dim,
        labels,
        n_labels,
        split,
        split_names,
        ..
    } = input;
    let Some(test_id) = split_names.iter().position(|s| s == "test") else {
        return Ok(());
    };
    let test = rows_of(split, test_id as u8);
    if test.is_empty() {
        return Ok(());
    }
    let hull = layer_hull(params, report.scale);
    let frozen = match (partition, memory) {
        (Partition::Frozen, Some(m)) => m.test_clusters.as_deref(),
        _ => None,
    };
    let lp = LabelledPoints {
        data,
        dim,
        labels,
        n_labels,
        rows: &test,
        gram,
    };
    let (c, cm, (tld, _)) = partition_and_distances(
        lp,
        params,
        &hull,
        frozen,
        memory.map(|m| &m.test),
        memory,
        next,
        keep_going,
    )?;
    if let Some(cm) = cm {
        next.test = cm;
    }
    let tc = c.clusters;
    report.test_clusters = Some(tc.len());
    next.test_clusters = Some(tc);
    report.similarity.insert(
        TRAIN_TEST.to_string(),
        distance_similarity(&report.label_distance, &tld),
    );
    Ok(())
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

/// A frozen partition as a clustering of this checkpoint (no solves; the
/// work counters stay zero).
fn frozen_clustering(clusters: &[Cluster], labels: &[u32], n_labels: usize) -> Clustering {
    debug_assert!(
        clusters
            .iter()
            .all(|c| c.members.iter().all(|&m| labels[m] == c.label))
    );
    Clustering {
        clusters: clusters.to_vec(),
        resolved: vec![false; n_labels],
        label_separated: Vec::new(),
        stats: ClusterStats::default(),
    }
}

/// One layer now against a reference (the baseline or the predecessor).
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct LayerComparison {
    /// Per label: Euclidean distance between its centroids (`None` when
    /// absent from either).
    pub centroid_movement: Vec<Option<f64>>,
    /// `centroid_movement` divided by the reference's scale.
    pub centroid_movement_normalized: Vec<Option<f64>>,
    /// Pearson correlation of the label-distance vectors (common pairs).
    pub similarity: Option<f64>,
    /// Labels whose min distance grew.
    pub grew: usize,
    /// Labels whose min distance shrank.
    pub shrank: usize,
    /// Labels whose normalized min distance grew.
    pub grew_normalized: usize,
    /// Labels whose normalized min distance shrank.
    pub shrank_normalized: usize,
    /// Mean change of the min label distance over labels present in both.
    pub mean_change: Option<f64>,
    /// Mean change of the normalized min label distance.
    pub mean_change_normalized: Option<f64>,
}

/// Why two layer reports cannot be compared.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum CompareError {
    /// The reports have different label sets.
    #[error("label count differs: {reference} in the reference, {current} now")]
    Labels {
        /// Labels in the reference.
        reference: usize,
        /// Labels now.
        current: usize,
    },
    /// The representations have different widths.
    #[error("dimension differs: {reference} in the reference, {current} now")]
    Dim {
        /// Width of the reference.
        reference: usize,
        /// Width now.
        current: usize,
    },
    /// A report was made without centroids (`keep_centroids`).
    #[error("a report has no centroids (analyse with centroids kept)")]
    NoCentroids,
}

/// Compares `current` against `reference` (same task and layer).
pub fn compare(
    reference: &LayerReport,
    current: &LayerReport,
) -> Result<LayerComparison, CompareError> {
    let (nr, nc) = (
        reference.min_label_distance.len(),
        current.min_label_distance.len(),
    );
    if nr != nc {
        return Err(CompareError::Labels {
            reference: nr,
            current: nc,
        });
    }
    if reference.centroids.len() != nr || current.centroids.len() != nc {
        return Err(CompareError::NoCentroids);
    }
    let dim = |r: &LayerReport| r.centroids.iter().flatten().map(Vec::len).next();
    if let (Some(dr), Some(dc)) = (dim(reference), dim(current)) {
        if dr != dc {
            return Err(CompareError::Dim {
                reference: dr,
                current: dc,
            });
        }
    }
    let centroid_movement: Vec<Option<f64>> = reference
        .centroids
        .iter()
        .zip(&current.centroids)
        .map(|(a, b)| match (a, b) {
            (Some(a), Some(b)) => Some(
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).powi(2))
                    .sum::<f64>()
                    .sqrt(),
            ),
            _ => None,
        })
        .collect();
    let centroid_movement_normalized = centroid_movement
        .iter()
        .map(|m| {
            m.map(|v| {
                if reference.scale > 0.0 {
                    v / reference.scale
                } else {
                    0.0
                }
            })
        })
        .collect();
    let similarity = distance_similarity(&reference.label_distance, &current.label_distance);
    let (mut grew, mut shrank, mut grew_n, mut shrank_n) = (0, 0, 0, 0);
    let (mut sum, mut sumn, mut n) = (0.0, 0.0, 0usize);
    let pairs = reference
        .min_label_distance
        .iter()
        .zip(&current.min_label_distance)
        .zip(
            reference
                .min_label_distance_normalized
                .iter()
                .zip(&current.min_label_distance_normalized),
        );
    for ((a, b), (an, bn)) in pairs {
        if let (Some(a), Some(b), Some(an), Some(bn)) = (a, b, an, bn) {
            grew += usize::from(b > a);
            shrank += usize::from(b < a);
            grew_n += usize::from(bn > an);
            shrank_n += usize::from(bn < an);
            sum += b - a;
            sumn += bn - an;
            n += 1;
        }
    }
    Ok(LayerComparison {
        centroid_movement,
        centroid_movement_normalized,
        similarity,
        grew,
        shrank,
        grew_normalized: grew_n,
        shrank_normalized: shrank_n,
        mean_change: (n > 0).then(|| sum / n as f64),
        mean_change_normalized: (n > 0).then(|| sumn / n as f64),
    })
}

#[cfg(test)]
mod tests {
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
}
