//! DirectProbe clustering (Zhou & Srikumar, NAACL 2021), exactly as DESIGN §2.
//!
//! Supervised clustering of the train points of one layer into single-label
//! clusters whose convex hulls never intersect across labels:
//! 1. every point starts as its own cluster;
//! 2. candidate pairs are all same-label cluster pairs, ordered by the
//!    Euclidean distance of their centroids, ties broken by the smaller pair
//!    of cluster ids (singletons get ids in row order, merged clusters the
//!    next free id), so the result is deterministic;
//! 3. the closest pair is popped; its union replaces it only if the union's
//!    hull intersects no hull of a cluster of another label, else the pair is
//!    discarded for good;
//! 4. an accepted union is paired with every other cluster of its label.
//!
//! Exact accelerations (none changes the result, given one absolute
//! intersection tolerance for the whole run, which [`cluster`] enforces):
//! - **Label shortcut.** If the hull of all train points of label `a`
//!   intersects no hull of all points of another label, `a` ends as exactly
//!   one cluster and never blocks a merge; the greedy loop only runs over the
//!   unresolved labels, in the same global order.
//! - **Label-pair separability.** Two labels whose whole hulls are separated
//!   never block each other's merges (a separated pair stays separated for
//!   subsets).
//! - **Sphere pre-filter.** Bounding spheres (centroid + largest radius) that
//!   do not touch cannot hold intersecting hulls.
//! - **Overlap cache.** A pair `(i, j)` rejected by a certified overlap
//!   rejects every later pair
//!   `(P, Q)` with `i ⊆ P`, `j ⊆ Q` (an overlap stays an overlap for
//!   supersets: `P ∪ Q ⊇ i ∪ j` and the blocking cluster only grows), found
//!   through the merge forest with a union–find, no hull solve needed.
//! - **Blocker first.** The cluster that blocked a cluster's last rejected
//!   union is checked first next time.
//!
//! Hull queries that end `Undetermined` count as intersecting (the merge is
//! refused), so the output never holds two intersecting clusters of
//! different labels; their number is reported.
//!
//! [`cluster_interruptible`] asks its caller before every hull solve whether
//! to go on (the daemon's late-stage budget and its pause while a newer
//! checkpoint's core stage runs); the answer only decides when work stops.
//!
//! The warm starts of one run ([`ClusteringMemory`], keyed by label pair and
//! by [`members_key`]) are returned for the next checkpoint; keeping them is
//! the caller's ([`crate::memory`]).
//!
//! This module does not compute distances between the final clusters or any
//! measure (see [`crate::measures`]), looks at no clock and does no I/O.

use std::collections::HashMap;
use std::sync::atomic::{self, AtomicBool};

use rayon::prelude::*;

use self::greedy::Greedy;
use crate::hull::{
    CompactWarm, Gram, HullParams, PointSet, Query, Verdict, hull_distance, rms_radius,
};
use crate::input::{Interrupted, KeepGoing, never_stop};

mod greedy;

/// One final cluster: a label and the rows (sorted) of the layer matrix.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cluster {
    /// Label index.
    pub label: u32,
    /// Row indices into the layer matrix, ascending.
    pub members: Vec<usize>,
}

/// Counters describing the work done.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterStats {
    /// Labels resolved by the shortcut (one cluster, never blocking).
    pub resolved_labels: usize,
    /// Labels that went through the greedy loop.
    pub unresolved_labels: usize,
    /// Candidate pairs popped with both clusters alive.
    pub pairs_considered: usize,
    /// Unions accepted.
    pub merges: usize,
    /// Unions rejected by the overlap cache without a solve.
    pub cache_rejections: usize,
    /// Hull queries skipped by the sphere pre-filter.
    pub sphere_skips: usize,
    /// Hull queries solved.
    pub hull_queries: usize,
    /// Hull queries that ended undetermined (treated as intersecting).
    pub undetermined: usize,
}

/// The result of DirectProbe on one point set.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Clustering {
    /// Clusters ordered by (label, first member).
    pub clusters: Vec<Cluster>,
    /// Per label index: whether the label was resolved by the shortcut.
    pub resolved: Vec<bool>,
    /// Per label pair `(a, b)`, `a < b`, both present: whether the whole
    /// label hulls are separated (row-major upper triangle over label
    /// indices; `None` when a label is absent).
    #[serde(skip)]
    pub label_separated: Vec<Vec<Option<bool>>>,
    /// Work counters.
    pub stats: ClusterStats,
}

impl Clustering {
    /// Number of clusters per label index (`n_labels` entries).
    pub fn clusters_per_label(&self, n_labels: usize) -> Vec<usize> {
        let mut c = vec![0; n_labels];
        for cl in &self.clusters {
            c[cl.label as usize] += 1;
        }
        c
    }
}

/// A 64-bit key of a labelled member list, in the given order (FNV-1a;
/// a collision only costs a cold solve).
pub fn members_key(label: u32, members: &[usize]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |v: u64| {
        for b in v.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(u64::from(label));
    eat(members.len() as u64);
    for &m in members {
        eat(m as u64);
    }
    h
}

/// Warm starts of one DirectProbe run (one split), for the same run on the
/// next checkpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusteringMemory {
    /// Label-pair separability solves, by `(a, b)`, `a < b`.
    pub label_pairs: HashMap<(u32, u32), CompactWarm>,
    /// Greedy-loop blocking checks, by (union key, blocker key).
    pub blocks: HashMap<(u64, u64), CompactWarm>,
}

/// The input of one clustering: a row-major matrix, per-row labels and the
/// rows to cluster.
#[derive(Clone, Copy, Debug)]
pub struct LabelledPoints<'a> {
    /// Row-major `f32` matrix.
    pub data: &'a [f32],
    /// Number of columns.
    pub dim: usize,
    /// Label index of every row of `data`.
    pub labels: &'a [u32],
    /// Number of label names (label indices are below it).
    pub n_labels: usize,
    /// Rows taking part (e.g. the train split).
    pub rows: &'a [usize],
    /// Gram matrix over all rows of `data`, when it fits in memory: hull
    /// queries then run in the Gram space.
    pub gram: Option<&'a Gram>,
}

/// Bounding sphere of `members` (centroid and largest distance to it),
/// given the sum of their rows.
pub(crate) fn centroid_radius(
    data: &[f32],
    dim: usize,
    members: &[usize],
    sum: &[f64],
) -> (Vec<f64>, f64) {
    let n = members.len() as f64;
    let c: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let mut r2: f64 = 0.0;
    for &m in members {
        let p = &data[m * dim..(m + 1) * dim];
        let d2: f64 = p
            .iter()
            .zip(&c)
            .map(|(&x, &y)| {
                let t = x as f64 - y;
                t * t
            })
            .sum();
        r2 = r2.max(d2);
    }
    (c, r2.sqrt())
}

/// Runs DirectProbe on `input`. Every hull query uses the absolute
/// tolerance `intersect_rel_tol × scale`; when `params.scale` is `None` the
/// scale is the RMS distance of the input rows to their mean.
pub fn cluster(input: LabelledPoints<'_>, params: &HullParams) -> Clustering {
    cluster_with(input, params, None).0
}

/// [`cluster`] warm-started from a previous run's memory (same task and
/// layer, previous checkpoint), returning the memory for the next one. The
/// result is the same clustering as [`cluster`] gives: warm starts only
/// change how fast each certified verdict is reached.
pub fn cluster_with(
    input: LabelledPoints<'_>,
    params: &HullParams,
    memory: Option<&ClusteringMemory>,
) -> (Clustering, ClusteringMemory) {
    match cluster_interruptible(input, params, memory, &never_stop) {
        Ok(r) => r,
        Err(Interrupted) => unreachable!("never_stop never stops"),
    }
}

/// [`cluster_with`] that asks `keep_going` before every hull solve (label
/// pairs, then each blocking check of the greedy loop) and stops with
/// [`Interrupted`] when it answers `false`; `keep_going` may block, which
/// pauses the clustering. A run that is not interrupted returns exactly what
/// [`cluster_with`] returns: the question changes when work stops, never
/// what it computes.
pub fn cluster_interruptible(
    input: LabelledPoints<'_>,
    params: &HullParams,
    memory: Option<&ClusteringMemory>,
    keep_going: KeepGoing<'_>,
) -> Result<(Clustering, ClusteringMemory), Interrupted> {
    let LabelledPoints {
        data,
        dim,
        labels,
        n_labels,
        rows,
        gram,
    } = input;
    // One absolute tolerance for every query of the run keeps verdicts
    // monotone under inclusion (the caches rely on it): without a caller's
    // scale, use the RMS distance of the rows to their mean.
    let scaled;
    let params = if params.scale.is_some() {
        params
    } else {
        scaled = HullParams {
            scale: Some(rms_radius(data, dim, rows).max(f64::MIN_POSITIVE)),
            ..*params
        };
        &scaled
    };
    let mut by_label: Vec<Vec<usize>> = vec![Vec::new(); n_labels];
    for &r in rows {
        by_label[labels[r] as usize].push(r);
    }
    let present: Vec<usize> = (0..n_labels).filter(|&l| !by_label[l].is_empty()).collect();

    let mut next = ClusteringMemory::default();
    let mut stats = ClusterStats::default();
    let label_separated = label_pairs(
        input, &by_label, &present, params, memory, &mut next, &mut stats, keep_going,
    )?;
    let mut resolved = vec![false; n_labels];
    for &a in &present {
        resolved[a] = present
            .iter()
            .all(|&b| b == a || label_separated[a][b] == Some(true));
    }
    stats.resolved_labels = present.iter().filter(|&&a| resolved[a]).count();
    stats.unresolved_labels = present.len() - stats.resolved_labels;

    let mut clusters: Vec<Cluster> = present
        .iter()
        .filter(|&&a| resolved[a])
        .map(|&a| Cluster {
            label: a as u32,
            members: by_label[a].clone(),
        })
        .collect();

    let unresolved_rows: Vec<usize> = rows
        .iter()
        .copied()
        .filter(|&r| !resolved[labels[r] as usize])
        .collect();
    if !unresolved_rows.is_empty() {
        let greedy = Greedy {
            data,
            dim,
            gram,
            labels,
            n_labels,
            label_separated: &label_separated,
            params,
            memory: memory.map(|m| &m.blocks),
        };
        clusters.extend(greedy.run(&unresolved_rows, &mut stats, &mut next.blocks, keep_going)?);
    }
    for c in &mut clusters {
        c.members.sort_unstable();
    }
    clusters.sort_by(|x, y| {
        x.label
            .cmp(&y.label)
            .then_with(|| x.members[0].cmp(&y.members[0]))
    });
    Ok((
        Clustering {
            clusters,
            resolved,
            label_separated,
            stats,
        },
        next,
    ))
}

/// Label-pair separability (the exact shortcut): one separability solve
/// per pair of `present` labels on their whole hulls, in parallel,
/// collected in a fixed order. Returns the `n_labels × n_labels` table
/// (`None` when a label is absent); the warm starts go to `next`, the
/// solves to `stats`.
#[allow(clippy::too_many_arguments)] // the input by label, memories in and out, the brake
fn label_pairs(
    input: LabelledPoints<'_>,
    by_label: &[Vec<usize>],
    present: &[usize],
    params: &HullParams,
    memory: Option<&ClusteringMemory>,
    next: &mut ClusteringMemory,
    stats: &mut ClusterStats,
    keep_going: KeepGoing<'_>,
) -> Result<Vec<Vec<Option<bool>>>, Interrupted> {
    let (data, dim, gram, n_labels) = (input.data, input.dim, input.gram, input.n_labels);
    let pairs: Vec<(usize, usize)> = present
        .iter()
        .enumerate()
        .flat_map(|(k, &a)| present[k + 1..].iter().map(move |&b| (a, b)))
        .collect();
    let stopped = AtomicBool::new(false);
    let verdicts: Vec<Option<(Verdict, usize, CompactWarm)>> = pairs
        .par_iter()
        .map(|&(a, b)| {
            if stopped.load(atomic::Ordering::Relaxed) || !keep_going() {
                stopped.store(true, atomic::Ordering::Relaxed);
                return None;
            }
            let warm = memory
                .and_then(|m| m.label_pairs.get(&(a as u32, b as u32)))
                .map(CompactWarm::to_warm);
            let r = hull_distance(
                PointSet::subset_with(data, dim, &by_label[a], gram),
                PointSet::subset_with(data, dim, &by_label[b], gram),
                Query::Separability,
                params,
                warm.as_ref(),
            );
            Some((r.verdict, 1, CompactWarm::from_result(&r, true)))
        })
        .collect();
    let verdicts: Vec<(Verdict, usize, CompactWarm)> = verdicts
        .into_iter()
        .collect::<Option<_>>()
        .ok_or(Interrupted)?;
    let mut label_separated = vec![vec![None; n_labels]; n_labels];
    for (&(a, b), (v, q, w)) in pairs.iter().zip(verdicts) {
        next.label_pairs.insert((a as u32, b as u32), w);
        stats.hull_queries += q;
        if v == Verdict::Undetermined {
            stats.undetermined += 1;
        }
        let sep = v == Verdict::Separated;
        label_separated[a][b] = Some(sep);
        label_separated[b][a] = Some(sep);
    }
    Ok(label_separated)
}

/// Checks the two properties DirectProbe guarantees, by brute force: no two
/// clusters of different labels intersect (except two single points that
/// coincide, which no clustering can separate), and no two clusters of the
/// same label could still merge (their union intersects some cluster of
/// another label). Returns the first violation. Quadratic in the number of clusters;
/// meant for tests and `--verify`.
pub fn verify(
    input: LabelledPoints<'_>,
    clustering: &Clustering,
    params: &HullParams,
) -> Result<(), String> {
    let (data, dim, gram) = (input.data, input.dim, input.gram);
    let cl = &clustering.clusters;
    for (x, cx) in cl.iter().enumerate() {
        for (y, cy) in cl.iter().enumerate().skip(x + 1) {
            let (mx, my) = (&cx.members, &cy.members);
            if cx.label != cy.label {
                let r = hull_distance(
                    PointSet::subset_with(data, dim, mx, gram),
                    PointSet::subset_with(data, dim, my, gram),
                    Query::Separability,
                    params,
                    None,
                );
                let both_single = cx.members.len() == 1 && cy.members.len() == 1;
                if r.verdict != Verdict::Separated && !both_single {
                    return Err(format!(
                        "clusters {x} (label {}) and {y} (label {}) intersect: {:?}",
                        cx.label, cy.label, r.verdict
                    ));
                }
            } else {
                let mut u = mx.clone();
                u.extend_from_slice(my);
                let blocked = cl.iter().filter(|c| c.label != cx.label).any(|c| {
                    hull_distance(
                        PointSet::subset_with(data, dim, &u, gram),
                        PointSet::subset_with(data, dim, &c.members, gram),
                        Query::Separability,
                        params,
                        None,
                    )
                    .verdict
                        != Verdict::Separated
                });
                if !blocked {
                    return Err(format!(
                        "clusters {x} and {y} (label {}) could still merge",
                        cx.label
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
