//! What a run publishes: the in-memory references of its baseline and
//! newest checkpoint, the best-so-far distances, the newest late-stage
//! results per layer, and the [`RunSnapshot`] built from them.
//!
//! [`RunView`] is the one path from reports to a snapshot. The daemon feeds
//! it fresh reports as they are analysed, restore and the backfill feed it
//! stored checkpoints in step order, so live, restored and backfilled values
//! are equal by construction. It does no I/O but [`load_reference`], which
//! reads a checkpoint's layer rows through the store's API.

use std::collections::BTreeMap;
use std::sync::Arc;

use analysis::Stage;
use geometry::measures::{LayerReport, TRAIN_TEST, TRAIN_TEST_HULL, compare, distance_similarity};
use metrics::{LabelSnapshot, LayerSnapshot, RunSnapshot};
use store::{CheckpointRow, Store, StoreError};
use tracing::warn;

use crate::record::{self, has_clusters, has_test_hulls, label_names};

/// Reference layers (with centroids) of one checkpoint, by (task, layer).
pub type Layers = BTreeMap<(String, usize), LayerReport>;

/// A checkpoint's reference data held in memory.
#[derive(Clone)]
pub struct Reference {
    /// Training step of the checkpoint.
    pub step: u64,
    /// Its layers, shared with the jobs that read them.
    pub layers: Arc<Layers>,
}

/// Each label's largest normalized min distance over the checkpoints folded
/// in so far, by (task, layer, label name): the `…_normalized_best` gauge.
#[derive(Clone, Debug, Default)]
pub struct Best(BTreeMap<(String, usize, String), f64>);

impl Best {
    /// Takes one checkpoint's normalized min distances into account.
    pub fn fold(&mut self, reference: &Reference) {
        for ((task, layer), r) in reference.layers.iter() {
            for (l, name) in label_names(r).into_iter().enumerate() {
                let Some(d) = r.min_label_distance_normalized.get(l).copied().flatten() else {
                    continue;
                };
                if !d.is_finite() {
                    continue;
                }
                let best = self.0.entry((task.clone(), *layer, name)).or_insert(d);
                *best = best.max(d);
            }
        }
    }

    fn get(&self, task: &str, layer: usize, label: &str) -> Option<f64> {
        self.0
            .get(&(task.to_owned(), layer, label.to_owned()))
            .copied()
    }
}

/// The newest late-stage results of one (task, layer): each stage's
/// values come from the newest checkpoint that completed that stage for
/// the layer (the core values always from the newest checkpoint).
#[derive(Clone, Debug, Default)]
struct LateEntry {
    /// `(step, train/test hull similarity)` of the newest `test_hulls`.
    test_hulls: Option<(u64, Option<f64>)>,
    /// `(step, report)` of the newest `clusters` (with its `test_clusters`
    /// and `classifier` fields when those ran on it).
    clusters: Option<(u64, LayerReport)>,
    /// The `clusters` report it replaced (the previous-checkpoint
    /// similarity of label distances).
    clusters_previous: Option<LayerReport>,
}

/// [`LateEntry`] per (task, layer) of a run.
#[derive(Clone, Debug, Default)]
pub struct LateView(BTreeMap<(String, usize), LateEntry>);

impl LateView {
    /// Takes the late-stage fields of one checkpoint's layer report.
    pub fn update(&mut self, step: u64, key: &(String, usize), r: &LayerReport) {
        let e = self.0.entry(key.clone()).or_default();
        if has_test_hulls(r) && e.test_hulls.is_none_or(|(s, _)| s <= step) {
            e.test_hulls = Some((step, r.similarity.get(TRAIN_TEST_HULL).copied().flatten()));
        }
        if has_clusters(r) {
            match &e.clusters {
                Some((s, _)) if *s > step => {}
                Some((s, _)) if *s == step => e.clusters = Some((step, r.clone())),
                _ => {
                    let old = e.clusters.replace((step, r.clone()));
                    if let Some((_, o)) = old {
                        e.clusters_previous = Some(o);
                    }
                }
            }
        }
    }

    /// Takes every layer of `reference`.
    pub fn update_all(&mut self, reference: &Reference) {
        for (key, r) in reference.layers.iter() {
            self.update(reference.step, key, r);
        }
    }
}

/// The newest checkpoint a run publishes, with what its snapshot compares
/// it to.
#[derive(Clone)]
struct Newest {
    reference: Reference,
    mtime_ns: i64,
    previous: Option<Reference>,
}

/// Everything a run's published snapshot is made of: the baseline, the
/// newest checkpoint (and the one before it), the best-so-far distances and
/// the newest late-stage values per layer.
///
/// Checkpoints go in through [`RunView::take_checkpoint`] (a checkpoint's
/// core values, or a stored checkpoint with all it has) and
/// [`RunView::take_late`] (late-stage layers of a checkpoint taken earlier);
/// [`RunView::snapshot`] is the newest checkpoint's exported view.
#[derive(Clone)]
pub struct RunView {
    run: String,
    label_pairs: bool,
    baseline: Option<Reference>,
    newest: Option<Newest>,
    best: Best,
    late: LateView,
}

impl RunView {
    /// An empty view of run `run`; `label_pairs` adds the label-pair series.
    pub fn new(run: &str, label_pairs: bool) -> RunView {
        RunView {
            run: run.to_owned(),
            label_pairs,
            baseline: None,
            newest: None,
            best: Best::default(),
            late: LateView::default(),
        }
    }

    /// Marks `reference` as the run's baseline (also take it as a
    /// checkpoint with [`RunView::take_checkpoint`]).
    pub fn set_baseline(&mut self, reference: Reference) {
        self.baseline = Some(reference);
    }

    /// The baseline, once known.
    pub fn baseline(&self) -> Option<&Reference> {
        self.baseline.as_ref()
    }

    /// The newest checkpoint taken so far.
    pub fn latest(&self) -> Option<&Reference> {
        self.newest.as_ref().map(|n| &n.reference)
    }

    /// Takes one checkpoint (modified at `mtime_ns`): its distances count
    /// towards the best-so-far values and its late-stage values (if any)
    /// towards the late view. Returns whether it is now the newest
    /// checkpoint (a lower step than the newest is folded in but not
    /// published).
    pub fn take_checkpoint(&mut self, reference: Reference, mtime_ns: i64) -> bool {
        self.best.fold(&reference);
        self.late.update_all(&reference);
        if self
            .newest
            .as_ref()
            .is_some_and(|n| n.reference.step > reference.step)
        {
            return false;
        }
        let previous = self
            .newest
            .take()
            .map(|n| n.reference)
            .filter(|p| p.step < reference.step);
        self.newest = Some(Newest {
            reference,
            mtime_ns,
            previous,
        });
        true
    }

    /// Takes late-stage layers of the checkpoint at `step` (taken earlier):
    /// the late view, the baseline and newest references of that step, and
    /// the best-so-far values.
    pub fn take_late(&mut self, step: u64, layers: Layers) {
        if layers.is_empty() {
            return;
        }
        for (key, r) in &layers {
            self.late.update(step, key, r);
        }
        let merge = |reference: &mut Reference| {
            if reference.step == step {
                let mut l = (*reference.layers).clone();
                for (k, v) in &layers {
                    l.insert(k.clone(), v.clone());
                }
                reference.layers = Arc::new(l);
            }
        };
        if let Some(b) = self.baseline.as_mut() {
            merge(b);
        }
        if let Some(n) = self.newest.as_mut() {
            merge(&mut n.reference);
        }
        self.best.fold(&Reference {
            step,
            layers: Arc::new(layers),
        });
    }

    /// The newest checkpoint's snapshot, compared with the baseline and the
    /// checkpoint before it; `None` before any checkpoint was taken.
    pub fn snapshot(&self) -> Option<RunSnapshot> {
        let n = self.newest.as_ref()?;
        Some(snapshot(
            &self.run,
            self.label_pairs,
            n.reference.step,
            n.mtime_ns,
            &n.reference,
            self.baseline.as_ref(),
            n.previous.as_ref(),
            &self.late,
            &self.best,
        ))
    }
}

/// The metrics snapshot of one checkpoint of `run` (with label-pair series
/// when `label_pairs`): the core values of `now`, the late-stage values
/// of `late` (each with the step it comes from), compared with the
/// baseline and the previous checkpoint; `best` must already hold every
/// late value of `late`.
#[allow(clippy::too_many_arguments)]
fn snapshot(
    run: &str,
    label_pairs: bool,
    step: u64,
    mtime_ns: i64,
    now: &Reference,
    baseline: Option<&Reference>,
    previous: Option<&Reference>,
    late: &LateView,
    best: &Best,
) -> RunSnapshot {
    let mut layers = Vec::new();
    let at_baseline = baseline.is_some_and(|b| b.step == step);
    for (key, r) in now.layers.iter() {
        let (task, layer) = key;
        let base = baseline
            .filter(|b| b.step != step)
            .and_then(|b| b.layers.get(key));
        let prev = previous.and_then(|p| p.layers.get(key));
        let cmp_base = base.and_then(|b| compare(b, r).ok());
        let hull_sim = |o: &LayerReport| {
            (!o.label_hull_distance.is_empty() && !r.label_hull_distance.is_empty())
                .then(|| distance_similarity(&o.label_hull_distance, &r.label_hull_distance))
                .flatten()
        };
        let entry = late.0.get(key);
        // The late values: this checkpoint's own when it has them, else the
        // newest checkpoint's that does.
        let clusters: Option<(u64, &LayerReport)> = if has_clusters(r) {
            Some((step, r))
        } else {
            entry.and_then(|e| e.clusters.as_ref().map(|(s, l)| (*s, l)))
        };
        let test_hulls: Option<(u64, Option<f64>)> = if has_test_hulls(r) {
            Some((step, r.similarity.get(TRAIN_TEST_HULL).copied().flatten()))
        } else {
            entry.and_then(|e| e.test_hulls)
        };
        let lr = clusters.map(|(_, l)| l);
        let clusters_step = clusters.map(|(s, _)| s);
        let lr_at_baseline =
            clusters_step.is_some() && baseline.is_some_and(|b| Some(b.step) == clusters_step);
        let base_late = baseline
            .filter(|b| Some(b.step) != clusters_step)
            .and_then(|b| b.layers.get(key))
            .filter(|b| has_clusters(b));
        let cmp_late = match (base_late, lr) {
            (Some(b), Some(l)) => compare(b, l).ok(),
            _ => None,
        };
        // The late report before the one shown: what the late view keeps
        // (the same after a restart, which rebuilds it in step order).
        let late_previous = match entry.and_then(|e| e.clusters.as_ref()) {
            Some((s, _)) if Some(*s) == clusters_step => {
                entry.and_then(|e| e.clusters_previous.as_ref())
            }
            Some((s, l)) if clusters_step.is_some_and(|c| *s < c) => Some(l),
            _ => None,
        };
        let names = label_names(r);
        let mut label_stats = Vec::new();
        for (l, name) in names.iter().enumerate() {
            let hd = r.min_label_hull_distance.get(l).copied().flatten();
            let d = lr.and_then(|x| x.min_label_distance.get(l).copied().flatten());
            let present = r.label_counts.get(l).is_some_and(|&c| c > 0)
                || r.centroids.get(l).is_some_and(Option::is_some);
            if hd.is_none() && d.is_none() && !present {
                continue;
            }
            let dn = lr.and_then(|x| x.min_label_distance_normalized.get(l).copied().flatten());
            let b = base_late.and_then(|b| b.min_label_distance.get(l).copied().flatten());
            let bn =
                base_late.and_then(|b| b.min_label_distance_normalized.get(l).copied().flatten());
            let change_ratio = match (dn, bn) {
                (Some(x), Some(y)) if y > 0.0 => Some(x / y - 1.0),
                _ => None,
            };
            let hbn = if at_baseline {
                r.min_label_hull_distance_normalized
                    .get(l)
                    .copied()
                    .flatten()
            } else {
                base.and_then(|b| {
                    b.min_label_hull_distance_normalized
                        .get(l)
                        .copied()
                        .flatten()
                })
            };
            label_stats.push(LabelSnapshot {
                label: name.clone(),
                min_distance: d,
                min_distance_normalized: dn,
                min_distance_normalized_best: dn.and(best.get(task, *layer, name).or(dn)),
                min_distance_baseline: if lr_at_baseline { d } else { b },
                change_ratio: if lr_at_baseline && d.is_some() {
                    Some(0.0)
                } else {
                    change_ratio
                },
                clusters: lr.map(|x| x.clusters_per_label.get(l).copied().unwrap_or(0) as u64),
                centroid_movement: if at_baseline {
                    Some(0.0)
                } else {
                    cmp_base
                        .as_ref()
                        .and_then(|c| c.centroid_movement.get(l).copied().flatten())
                },
                hull_min_distance: hd,
                hull_min_distance_normalized: r
                    .min_label_hull_distance_normalized
                    .get(l)
                    .copied()
                    .flatten(),
                hull_min_distance_normalized_baseline: hbn,
            });
        }
        let label_pairs = label_pairs
            .then(|| {
                lr.map(|x| {
                    x.label_distance
                        .iter()
                        .map(|&(a, b, d)| (names[a as usize].clone(), names[b as usize].clone(), d))
                        .collect()
                })
            })
            .flatten();
        let mut stage_steps = Vec::new();
        if let Some((s, _)) = test_hulls {
            stage_steps.push((Stage::TestHulls.as_str().to_owned(), s));
        }
        if let (Some(s), Some(x)) = (clusters_step, lr) {
            stage_steps.push((Stage::Clusters.as_str().to_owned(), s));
            if x.test_clusters.is_some() {
                stage_steps.push((Stage::TestClusters.as_str().to_owned(), s));
            }
            if x.classifier_accuracy.is_some() {
                stage_steps.push((Stage::Classifier.as_str().to_owned(), s));
            }
        }
        layers.push(LayerSnapshot {
            task: task.clone(),
            layer: *layer as u32,
            clusters: lr.map(|x| x.clusters as u64),
            labels: r.labels_present as u64,
            clusters_baseline: baseline
                .and_then(|b| b.layers.get(key))
                .filter(|b| has_clusters(b))
                .map(|b| b.clusters as u64),
            scale: r.scale,
            label_stats,
            similarity_baseline: if lr_at_baseline {
                Some(1.0)
            } else {
                cmp_late.as_ref().and_then(|c| c.similarity)
            },
            similarity_previous: match (late_previous, lr) {
                (Some(p), Some(l)) => distance_similarity(&p.label_distance, &l.label_distance),
                _ => None,
            },
            similarity_test: lr.and_then(|x| x.similarity.get(TRAIN_TEST).copied().flatten()),
            accuracy: lr
                .map(|x| x.accuracy.iter().map(|(k, v)| (k.clone(), *v)).collect())
                .unwrap_or_default(),
            classifier_accuracy: lr
                .and_then(|x| x.classifier_accuracy.as_ref())
                .iter()
                .flat_map(|m| m.iter())
                .map(|(k, a)| (k.clone(), a.mean, a.std))
                .collect(),
            labels_increased: cmp_late.as_ref().map(|c| c.grew as u64),
            labels_decreased: cmp_late.as_ref().map(|c| c.shrank as u64),
            label_pairs,
            hull_similarity_baseline: if at_baseline {
                Some(1.0)
            } else {
                base.and_then(hull_sim)
            },
            hull_similarity_previous: prev.and_then(hull_sim),
            hull_similarity_test: test_hulls.and_then(|(_, v)| v),
            stage_steps,
        });
    }
    RunSnapshot {
        run: run.to_owned(),
        step,
        timestamp_seconds: mtime_ns as f64 / 1e9,
        layers,
    }
}

/// A stored checkpoint's layers as an in-memory reference (unreadable
/// layer reports are logged and left out).
pub fn load_reference(
    store: &Store,
    run: &str,
    row: &CheckpointRow,
) -> Result<Reference, StoreError> {
    let mut layers = Layers::new();
    for rec in store.layers(row.id)? {
        match record::decode(&rec) {
            Some(l) => {
                layers.insert((rec.task.clone(), rec.layer as usize), l);
            }
            None => {
                warn!(run = %run, step = row.step, task = %rec.task, layer = rec.layer, "stored report unreadable; ignored")
            }
        }
    }
    Ok(Reference {
        step: row.step,
        layers: Arc::new(layers),
    })
}
