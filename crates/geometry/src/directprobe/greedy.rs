//! DirectProbe's greedy loop (steps 1–4 of [`super`]) over the points of
//! the labels the label shortcut did not resolve: the candidate heap, the
//! sphere pre-filter, the overlap cache on the merge forest, blocker
//! hints, and the warm starts of the blocking checks. It is handed the
//! label-pair table and returns the clusters; the caller sorts them.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use rayon::prelude::*;

use super::{Cluster, ClusterStats, centroid_radius, members_key};
use crate::hull::{
    CompactWarm, Gram, HullParams, PointSet, Query, Verdict, dist2_ff, hull_distance,
};
use crate::input::{Interrupted, KeepGoing};

/// Largest greedy-loop warm-start memory kept per run (bytes); beyond it
/// further blocking checks are not remembered (they run cold next time).
const BLOCK_MEMORY_BUDGET: usize = 64 << 20;

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

/// The greedy loop over the unresolved labels' points.
pub(super) struct Greedy<'a> {
    pub(super) data: &'a [f32],
    pub(super) dim: usize,
    pub(super) gram: Option<&'a Gram>,
    pub(super) labels: &'a [u32],
    pub(super) n_labels: usize,
    pub(super) label_separated: &'a [Vec<Option<bool>>],
    pub(super) params: &'a HullParams,
    pub(super) memory: Option<&'a HashMap<(u64, u64), CompactWarm>>,
}

/// The greedy loop's state: every cluster made so far (alive or absorbed),
/// the merge forest, the alive cluster ids per label, the candidate heap,
/// and the bytes of warm starts remembered.
struct State {
    work: Vec<Work>,
    forest: Forest,
    alive_by_label: Vec<Vec<u32>>,
    heap: BinaryHeap<Cand>,
    remembered_bytes: usize,
}

/// The union of two clusters of one label, before it is checked.
struct Union {
    label: u32,
    members: Vec<usize>,
    sum: Vec<f64>,
    centroid: Vec<f64>,
    radius: f64,
}

impl Greedy<'_> {
    pub(super) fn run(
        &self,
        rows: &[usize],
        stats: &mut ClusterStats,
        remember: &mut HashMap<(u64, u64), CompactWarm>,
        keep_going: KeepGoing<'_>,
    ) -> Result<Vec<Cluster>, Interrupted> {
        let mut st = self.start(rows);
        while let Some(Cand { i, j, .. }) = st.heap.pop() {
            if !st.work[i as usize].alive || !st.work[j as usize].alive {
                continue;
            }
            stats.pairs_considered += 1;
            if st.cached(i, j) {
                stats.cache_rejections += 1;
                continue;
            }
            let union = st.union(self.data, self.dim, i, j);
            let order = self.candidate_blockers(&mut st, i, j, union.label);
            match self.first_blocker(&mut st, &union, &order, stats, remember, keep_going)? {
                Some((c, certified)) => st.reject(i, j, c, certified),
                None => {
                    stats.merges += 1;
                    st.accept(i, j, union);
                }
            }
        }
        Ok(st
            .work
            .into_iter()
            .filter(|w| w.alive)
            .map(|w| Cluster {
                label: w.label,
                members: w.members,
            })
            .collect())
    }

    /// Every point its own cluster, and all same-label singleton pairs as
    /// candidates.
    fn start(&self, rows: &[usize]) -> State {
        let (data, dim) = (self.data, self.dim);
        let work: Vec<Work> = rows
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
        let forest = Forest {
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
        State {
            work,
            forest,
            alive_by_label,
            heap,
            remembered_bytes: 0,
        }
    }

    /// Clusters that could block the union of `i` and `j` (of `label`):
    /// those of other labels whose whole hull is not separated from this
    /// label's, the blocker hints of `i` and `j` first.
    fn candidate_blockers(&self, st: &mut State, i: u32, j: u32, label: u32) -> Vec<u32> {
        let mut order: Vec<u32> = Vec::new();
        for hint in [st.work[i as usize].blocker, st.work[j as usize].blocker]
            .into_iter()
            .flatten()
        {
            let h = st.forest.find(hint);
            if st.work[h as usize].alive && !order.contains(&h) {
                order.push(h);
            }
        }
        let hints = order.len();
        for (b, ids) in st.alive_by_label.iter().enumerate() {
            if b == label as usize || self.label_separated[label as usize][b] != Some(false) {
                continue;
            }
            for &id in ids {
                if !order[..hints].contains(&id) {
                    order.push(id);
                }
            }
        }
        order
    }

    /// The first cluster of `order` whose hull the union's is not certified
    /// separated from, with whether the overlap is certified (`false`: the
    /// solve ended undetermined); `None` when none blocks. Bounding spheres
    /// that do not touch skip the solve.
    fn first_blocker(
        &self,
        st: &mut State,
        u: &Union,
        order: &[u32],
        stats: &mut ClusterStats,
        remember: &mut HashMap<(u64, u64), CompactWarm>,
        keep_going: KeepGoing<'_>,
    ) -> Result<Option<(u32, bool)>, Interrupted> {
        let (data, dim, gram) = (self.data, self.dim, self.gram);
        let union = PointSet::subset_with(data, dim, &u.members, gram);
        let union_key = members_key(u.label, &u.members);
        for &c in order {
            let wc = &st.work[c as usize];
            let gap = d2_xx(&u.centroid, &wc.centroid).sqrt() - u.radius - wc.radius;
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
            if st.remembered_bytes < BLOCK_MEMORY_BUDGET {
                let w = CompactWarm::from_result(&r, true);
                st.remembered_bytes += w.bytes() + 24;
                remember.insert(key, w);
            }
            match r.verdict {
                Verdict::Separated => {}
                Verdict::Undetermined => {
                    stats.undetermined += 1;
                    return Ok(Some((c, false)));
                }
                Verdict::Intersecting => return Ok(Some((c, true))),
            }
        }
        Ok(None)
    }
}

impl State {
    /// Overlap cache: a rejected (x, y) with x ⊆ i, y ⊆ j (or the other way
    /// round) rejects (i, j).
    fn cached(&mut self, i: u32, j: u32) -> bool {
        let (ri, rj) = (
            &self.work[i as usize].rejected,
            &self.work[j as usize].rejected,
        );
        let (small, other) = if ri.len() <= rj.len() {
            (ri.clone(), j)
        } else {
            (rj.clone(), i)
        };
        small.iter().any(|&x| self.forest.find(x) == other)
    }

    /// The union of clusters `i` and `j` with its bounding sphere.
    fn union(&self, data: &[f32], dim: usize, i: u32, j: u32) -> Union {
        let (wi, wj) = (&self.work[i as usize], &self.work[j as usize]);
        let mut members = wi.members.clone();
        members.extend_from_slice(&wj.members);
        let sum: Vec<f64> = wi.sum.iter().zip(&wj.sum).map(|(a, b)| a + b).collect();
        let (centroid, radius) = centroid_radius(data, dim, &members, &sum);
        Union {
            label: wi.label,
            members,
            sum,
            centroid,
            radius,
        }
    }

    /// The union of `i` and `j` was blocked by `c`. Only a certified overlap
    /// is implied for supersets; an undetermined one refuses this pair
    /// alone.
    fn reject(&mut self, i: u32, j: u32, c: u32, certified: bool) {
        if certified {
            self.work[i as usize].rejected.push(j);
            self.work[j as usize].rejected.push(i);
        }
        self.work[i as usize].blocker = Some(c);
        self.work[j as usize].blocker = Some(c);
    }

    /// Accepts the union: a new cluster replaces `i` and `j` and is paired
    /// with every other alive cluster of its label.
    fn accept(&mut self, i: u32, j: u32, u: Union) {
        let work = &mut self.work;
        let id = work.len() as u32;
        let mut rejected = std::mem::take(&mut work[i as usize].rejected);
        rejected.append(&mut work[j as usize].rejected);
        let blocker = work[i as usize].blocker.or(work[j as usize].blocker);
        work[i as usize].alive = false;
        work[j as usize].alive = false;
        work[i as usize].members = Vec::new();
        work[j as usize].members = Vec::new();
        self.forest.parent.push(id);
        self.forest.parent[i as usize] = id;
        self.forest.parent[j as usize] = id;
        let ids = &mut self.alive_by_label[u.label as usize];
        ids.retain(|&x| x != i && x != j);
        for &o in ids.iter() {
            self.heap.push(Cand {
                d2: d2_xx(&u.centroid, &work[o as usize].centroid),
                i: o.min(id),
                j: o.max(id),
            });
        }
        ids.push(id);
        work.push(Work {
            label: u.label,
            members: u.members,
            sum: u.sum,
            centroid: u.centroid,
            radius: u.radius,
            alive: true,
            rejected,
            blocker,
        });
    }
}
