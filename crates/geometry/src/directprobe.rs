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
//! This module does not compute distances between the final clusters or any
//! measure (see [`super::measures`]), looks at no clock and does no I/O.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{self, AtomicBool};

use rayon::prelude::*;

use super::hull::{
    Gram, HullParams, PointSet, Query, Verdict, dist2_ff, hull_distance, rms_radius,
};
use super::memory::{ClusteringMemory, CompactWarm, members_key};
use super::{Interrupted, KeepGoing, never_stop};

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

#[derive(Clone, Copy, PartialEq)]
struct Cand {
    d2: f64,
    i: u32,
    j: u32,
}
impl Eq for Cand {}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap, we pop the smallest.
        o.d2.total_cmp(&self.d2)
            .then_with(|| o.i.cmp(&self.i))
            .then_with(|| o.j.cmp(&self.j))
    }
}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

struct Work {
    label: u32,
    members: Vec<usize>,
    sum: Vec<f64>,
    centroid: Vec<f64>,
    radius: f64,
    alive: bool,
    /// Clusters this one was part of a rejected union with.
    rejected: Vec<u32>,
    blocker: Option<u32>,
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

fn d2_xx(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let t = x - y;
            t * t
        })
        .sum()
}

/// Union–find over cluster ids, pointing each id at the cluster that
/// absorbed it.
struct Forest {
    parent: Vec<u32>,
}
impl Forest {
    fn find(&mut self, mut x: u32) -> u32 {
        let mut root = x;
        while self.parent[root as usize] != root {
            root = self.parent[root as usize];
        }
        while self.parent[x as usize] != root {
            let next = self.parent[x as usize];
            self.parent[x as usize] = root;
            x = next;
        }
        root
    }
}

/// Runs DirectProbe on `input`. Every hull query uses the absolute
/// tolerance `intersect_rel_tol × scale`; when `params.scale` is `None` the
/// scale is the RMS distance of the input rows to their mean.
pub fn cluster(input: LabelledPoints<'_>, params: &HullParams) -> Clustering {
    cluster_with(input, params, None).0
}

/// Largest greedy-loop warm-start memory kept per run (bytes); beyond it
/// further blocking checks are not remembered (they run cold next time).
const BLOCK_MEMORY_BUDGET: usize = 64 << 20;

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

    // Label-pair separability (the exact shortcut), in parallel, collected in
    // a fixed order.
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
    let mut next = ClusteringMemory::default();
    let mut stats = ClusterStats::default();
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

struct Greedy<'a> {
    data: &'a [f32],
    dim: usize,
    gram: Option<&'a Gram>,
    labels: &'a [u32],
    n_labels: usize,
    label_separated: &'a [Vec<Option<bool>>],
    params: &'a HullParams,
    memory: Option<&'a HashMap<(u64, u64), CompactWarm>>,
}

impl Greedy<'_> {
    fn run(
        &self,
        rows: &[usize],
        stats: &mut ClusterStats,
        remember: &mut HashMap<(u64, u64), CompactWarm>,
        keep_going: KeepGoing<'_>,
    ) -> Result<Vec<Cluster>, Interrupted> {
        let mut remembered_bytes = 0usize;
        let (data, dim, gram) = (self.data, self.dim, self.gram);
        let mut work: Vec<Work> = rows
            .iter()
            .map(|&r| {
                let p = &data[r * dim..(r + 1) * dim];
                let sum: Vec<f64> = p.iter().map(|&v| v as f64).collect();
                Work {
                    label: self.labels[r],
                    members: vec![r],
                    centroid: sum.clone(),
                    sum,
                    radius: 0.0,
                    alive: true,
                    rejected: Vec::new(),
                    blocker: None,
                }
            })
            .collect();
        let mut forest = Forest {
            parent: (0..work.len() as u32).collect(),
        };
        // Alive cluster ids per label.
        let mut alive_by_label: Vec<Vec<u32>> = vec![Vec::new(); self.n_labels];
        for (id, w) in work.iter().enumerate() {
            alive_by_label[w.label as usize].push(id as u32);
        }
        // Initial candidates: all same-label singleton pairs.
        let mut heap: BinaryHeap<Cand> = BinaryHeap::new();
        for ids in &alive_by_label {
            let found: Vec<Cand> = ids
                .par_iter()
                .enumerate()
                .flat_map_iter(|(k, &i)| {
                    let pi = &data[rows[i as usize] * dim..(rows[i as usize] + 1) * dim];
                    ids[k + 1..].iter().map(move |&j| {
                        let pj = &data[rows[j as usize] * dim..(rows[j as usize] + 1) * dim];
                        Cand {
                            d2: dist2_ff(pi, pj),
                            i,
                            j,
                        }
                    })
                })
                .collect();
            heap.extend(found);
        }

        while let Some(Cand { i, j, .. }) = heap.pop() {
            if !work[i as usize].alive || !work[j as usize].alive {
                continue;
            }
            stats.pairs_considered += 1;
            // Overlap cache: a rejected (x, y) with x ⊆ i, y ⊆ j (or the
            // other way round) rejects (i, j).
            let cached = {
                let (ri, rj) = (&work[i as usize].rejected, &work[j as usize].rejected);
                let (small, other) = if ri.len() <= rj.len() {
                    (ri.clone(), j)
                } else {
                    (rj.clone(), i)
                };
                small.iter().any(|&x| forest.find(x) == other)
            };
            if cached {
                stats.cache_rejections += 1;
                continue;
            }
            let label = work[i as usize].label;
            let mut members = work[i as usize].members.clone();
            members.extend_from_slice(&work[j as usize].members);
            let sum: Vec<f64> = work[i as usize]
                .sum
                .iter()
                .zip(&work[j as usize].sum)
                .map(|(a, b)| a + b)
                .collect();
            let (centroid, radius) = centroid_radius(data, dim, &members, &sum);

            // Clusters that could block: other unresolved labels whose whole
            // hull is not separated from this label; blocker hints first.
            let mut order: Vec<u32> = Vec::new();
            for hint in [work[i as usize].blocker, work[j as usize].blocker]
                .into_iter()
                .flatten()
            {
                let h = forest.find(hint);
                if work[h as usize].alive && !order.contains(&h) {
                    order.push(h);
                }
            }
            let hints = order.len();
            for (b, ids) in alive_by_label.iter().enumerate() {
                if b == label as usize || self.label_separated[label as usize][b] != Some(false) {
                    continue;
                }
                for &id in ids {
                    if !order[..hints].contains(&id) {
                        order.push(id);
                    }
                }
            }
            let mut blocked_by = None;
            let mut certified = true;
            let union = PointSet::subset_with(data, dim, &members, gram);
            let union_key = members_key(label, &members);
            for &c in &order {
                let wc = &work[c as usize];
                let gap = d2_xx(&centroid, &wc.centroid).sqrt() - radius - wc.radius;
                let tol = self.params.intersect_rel_tol * self.params.scale.unwrap_or(0.0);
                if gap > tol {
                    stats.sphere_skips += 1;
                    continue;
                }
                if !keep_going() {
                    return Err(Interrupted);
                }
                stats.hull_queries += 1;
                let key = (union_key, members_key(wc.label, &wc.members));
                let warm = self
                    .memory
                    .and_then(|m| m.get(&key))
                    .map(CompactWarm::to_warm);
                let r = hull_distance(
                    union,
                    PointSet::subset_with(data, dim, &wc.members, gram),
                    Query::Separability,
                    self.params,
                    warm.as_ref(),
                );
                if remembered_bytes < BLOCK_MEMORY_BUDGET {
                    let w = CompactWarm::from_result(&r, true);
                    remembered_bytes += w.bytes() + 24;
                    remember.insert(key, w);
                }
                match r.verdict {
                    Verdict::Separated => {}
                    Verdict::Undetermined => {
                        stats.undetermined += 1;
                        blocked_by = Some(c);
                        certified = false;
                        break;
                    }
                    Verdict::Intersecting => {
                        blocked_by = Some(c);
                        break;
                    }
                }
            }
            if let Some(c) = blocked_by {
                // Only a certified overlap is implied for supersets; an
                // undetermined one refuses this pair alone.
                if certified {
                    work[i as usize].rejected.push(j);
                    work[j as usize].rejected.push(i);
                }
                work[i as usize].blocker = Some(c);
                work[j as usize].blocker = Some(c);
                continue;
            }
            // Accept: a new cluster replaces i and j.
            stats.merges += 1;
            let id = work.len() as u32;
            let mut rejected = std::mem::take(&mut work[i as usize].rejected);
            rejected.append(&mut work[j as usize].rejected);
            let blocker = work[i as usize].blocker.or(work[j as usize].blocker);
            work[i as usize].alive = false;
            work[j as usize].alive = false;
            work[i as usize].members = Vec::new();
            work[j as usize].members = Vec::new();
            forest.parent.push(id);
            forest.parent[i as usize] = id;
            forest.parent[j as usize] = id;
            let ids = &mut alive_by_label[label as usize];
            ids.retain(|&x| x != i && x != j);
            for &o in ids.iter() {
                heap.push(Cand {
                    d2: d2_xx(&centroid, &work[o as usize].centroid),
                    i: o.min(id),
                    j: o.max(id),
                });
            }
            ids.push(id);
            work.push(Work {
                label,
                members,
                sum,
                centroid,
                radius,
                alive: true,
                rejected,
                blocker,
            });
        }
        Ok(work
            .into_iter()
            .filter(|w| w.alive)
            .map(|w| Cluster {
                label: w.label,
                members: w.members,
            })
            .collect())
    }
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
mod tests {
    use super::*;

    fn run(points: &[f32], labels: &[u32], n_labels: usize) -> Clustering {
        let rows: Vec<usize> = (0..labels.len()).collect();
        let input = LabelledPoints {
            data: points,
            dim: 2,
            labels,
            n_labels,
            rows: &rows,
            gram: None,
        };
        let params = HullParams {
            scale: Some(1.0),
            ..HullParams::default()
        };
        let c = cluster(input, &params);
        verify(input, &c, &params).unwrap();
        c
    }

    /// XOR made of four square blobs (half-width 0.6 around (±1, ±1)):
    /// the union of two same-label blobs always cuts through the other
    /// label's blobs, so each label needs two clusters.
    fn xor_blobs() -> (Vec<f32>, Vec<u32>) {
        let mut pts = Vec::new();
        let mut labels = Vec::new();
        for (cx, cy, l) in [
            (1.0f32, 1.0f32, 0u32),
            (-1.0, -1.0, 0),
            (1.0, -1.0, 1),
            (-1.0, 1.0, 1),
        ] {
            for (dx, dy) in [
                (-0.6f32, -0.6f32),
                (0.6, -0.6),
                (0.6, 0.6),
                (-0.6, 0.6),
                (0.0, 0.0),
            ] {
                pts.extend([cx + dx, cy + dy]);
                labels.push(l);
            }
        }
        (pts, labels)
    }

    #[test]
    fn xor_gives_four_clusters() {
        let (pts, labels) = xor_blobs();
        let c = run(&pts, &labels, 2);
        assert_eq!(c.clusters.len(), 4);
        assert_eq!(c.clusters_per_label(2), vec![2, 2]);
        assert_eq!(c.stats.resolved_labels, 0);
        for cl in &c.clusters {
            assert_eq!(cl.members.len(), 5);
        }
    }

    /// Four single points in XOR: both diagonals are at the same centroid
    /// distance; the tie goes to the smaller ids (label 0's pair), whose
    /// diagonal then blocks label 1's: 3 clusters, not 4.
    #[test]
    fn an_interruption_stops_it_and_an_uninterrupted_run_is_unchanged() {
        use std::sync::atomic::AtomicUsize;
        let (pts, labels) = xor_blobs();
        let rows: Vec<usize> = (0..labels.len()).collect();
        let input = LabelledPoints {
            data: &pts,
            dim: 2,
            labels: &labels,
            n_labels: 2,
            rows: &rows,
            gram: None,
        };
        let params = HullParams {
            scale: Some(1.0),
            ..HullParams::default()
        };
        let want = cluster(input, &params);
        // Counting the questions without ever stopping: the same result.
        let asked = AtomicUsize::new(0);
        let count = || {
            asked.fetch_add(1, atomic::Ordering::Relaxed);
            true
        };
        let (got, _) = cluster_interruptible(input, &params, None, &count).unwrap();
        assert_eq!(got.clusters, want.clusters);
        let n = asked.load(atomic::Ordering::Relaxed);
        assert!(n > 1, "asked {n} times");
        // Stopping at every question in turn: always `Interrupted`.
        for stop_at in 0..n {
            let k = AtomicUsize::new(0);
            let stop = || k.fetch_add(1, atomic::Ordering::Relaxed) < stop_at;
            assert_eq!(
                cluster_interruptible(input, &params, None, &stop).err(),
                Some(Interrupted),
                "stopped at question {stop_at} of {n}"
            );
        }
    }

    #[test]
    fn xor_four_points_tie_break() {
        let pts = [0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0];
        let c = run(&pts, &[0, 0, 1, 1], 2);
        assert_eq!(c.clusters_per_label(2), vec![1, 2]);
        // Swapping the label order swaps the outcome.
        let c = run(&pts, &[1, 1, 0, 0], 2);
        assert_eq!(c.clusters_per_label(2), vec![2, 1]);
    }

    #[test]
    fn two_triangles_are_two_clusters() {
        let pts = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 5.0, 5.0, 6.0, 5.0, 5.0, 6.0];
        let c = run(&pts, &[0, 0, 0, 1, 1, 1], 2);
        assert_eq!(c.clusters.len(), 2);
        assert_eq!(c.stats.resolved_labels, 2);
        assert_eq!(c.clusters[0].members, vec![0, 1, 2]);
    }

    #[test]
    fn coinciding_points_of_different_labels() {
        // Same point with two labels, plus separable extras.
        let pts = [0.0, 0.0, 0.0, 0.0, 3.0, 0.0, -3.0, 0.0];
        let c = run(&pts, &[0, 1, 0, 1], 2);
        // Point 0 and 1 coincide: no union containing both 0 and a label-1
        // cluster containing 1 can be formed.
        assert_eq!(c.clusters.len(), 4);
    }

    #[test]
    fn xor_with_extra_label_resolved() {
        let (mut pts, mut labels) = xor_blobs();
        pts.extend([10.0, 10.0, 11.0, 10.0]);
        labels.extend([2, 2]);
        let c = run(&pts, &labels, 3);
        assert_eq!(c.clusters_per_label(3), vec![2, 2, 1]);
        assert!(c.resolved[2] && !c.resolved[0]);
    }
}
