//! The core stage ([`measure_core`]: the fit split's scale, centroids and
//! label-hull distances) and the `test_hulls` stage
//! ([`measure_test_hulls`]): exact, one certified solve per label pair, no
//! clustering. The DirectProbe stages are in `cluster_stages`.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;

use super::compare::distance_similarity;
use super::{
    HullDistances, MeasureParams, Partition, input_fingerprint, layer_hull, min_distances, rows_of,
};
use crate::directprobe::ClusterStats;
use crate::hull::{CompactWarm, Gram, HullParams, PointSet, Query, Verdict, rms_radius};
use crate::input::{Interrupted, KeepGoing, LayerInput, TEST, never_stop};
use crate::layer_report::{ClusterDistanceSummary, LayerReport, TRAIN_TEST_HULL};
use crate::memory::LayerMemory;
use crate::working_set::hull_distance_ws;

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
    let Some(test_id) = input.split_names.iter().position(|s| s == TEST) else {
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
