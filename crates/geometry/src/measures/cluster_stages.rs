//! The DirectProbe stages: `clusters` ([`measure_clusters`]: the fit
//! split's partition, cluster and label distances, nearest-cluster
//! accuracy of every other split) and `test_clusters`
//! ([`measure_test_clusters`]: the test split's partition and the
//! train/test similarity of label distances). The partition is DirectProbe
//! warm-started from the memory, or the memory's frozen partition. The
//! exact label-hull stages are in `core_stage`.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;

use super::compare::distance_similarity;
use super::{
    LabelDistance, LabelDistances, MeasureParams, Partition, layer_hull, min_distances, rows_of,
};
use crate::directprobe::{
    self, Cluster, ClusterStats, Clustering, ClusteringMemory, LabelledPoints,
};
use crate::hull::{
    ClusterGram, CompactWarm, Gram, HullParams, PointSet, Query, hull_distance, point_distance_with,
};
use crate::input::{Interrupted, KeepGoing, LayerInput, TEST};
use crate::layer_report::{ClusterDistanceSummary, LayerReport, TRAIN_TEST};
use crate::memory::{LayerMemory, cluster_key};

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
///
/// [`measure_core`]: super::measure_core
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
    let nearest = NearestSearch {
        input: &input,
        gram,
        kept: &kept,
        hull: &hull,
    };
    let accuracy = nearest.accuracy(
        train_id,
        params.cluster_gram_budget_bytes,
        memory,
        next,
        keep_going,
    )?;
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

/// The nearest-cluster search of one layer: every point of a split other
/// than the fit split against the kept clusters of the fit split.
struct NearestSearch<'a> {
    input: &'a LayerInput<'a>,
    gram: Option<&'a Gram>,
    kept: &'a [&'a Cluster],
    hull: &'a HullParams,
}

impl NearestSearch<'_> {
    /// Nearest-cluster accuracy per split other than the fit split
    /// (`train_id`) with points. Without a whole-layer Gram matrix the
    /// largest clusters get their own (within `cluster_gram_budget_bytes`).
    /// Each point starts from its nearest cluster in `memory`; the new ones
    /// go to `next`.
    fn accuracy(
        &self,
        train_id: u8,
        cluster_gram_budget_bytes: usize,
        memory: Option<&LayerMemory>,
        next: &mut LayerMemory,
        keep_going: KeepGoing<'_>,
    ) -> Result<BTreeMap<String, f64>, Interrupted> {
        let LayerInput {
            data,
            dim,
            labels,
            split,
            split_names,
            ..
        } = *self.input;
        let kept = self.kept;
        let mut accuracy = BTreeMap::new();
        let has_eval = split_names
            .iter()
            .enumerate()
            .any(|(s, _)| s as u8 != train_id && split.contains(&(s as u8)));
        let cluster_grams = if self.gram.is_none() && has_eval && cluster_gram_budget_bytes > 0 {
            cluster_grams(data, dim, kept, cluster_gram_budget_bytes)
        } else {
            vec![None; kept.len()]
        };
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
                        self.gram,
                        &cluster_grams,
                        kept,
                        &spheres,
                        r,
                        self.hull,
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
        Ok(accuracy)
    }
}

/// Per-cluster Gram matrices for the nearest-cluster search on a layer
/// without a whole-layer one: the largest clusters first (ties: lower
/// index), as many as fit `budget` bytes; `None` for the others and for
/// single points.
fn cluster_grams(
    data: &[f32],
    dim: usize,
    kept: &[&Cluster],
    budget: usize,
) -> Vec<Option<ClusterGram>> {
    let mut cluster_grams: Vec<Option<ClusterGram>> = vec![None; kept.len()];
    let mut order: Vec<usize> = (0..kept.len()).collect();
    order.sort_by(|&x, &y| {
        kept[y]
            .members
            .len()
            .cmp(&kept[x].members.len())
            .then(x.cmp(&y))
    });
    let mut left = budget;
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
    cluster_grams
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
    let Some(test_id) = split_names.iter().position(|s| s == TEST) else {
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
