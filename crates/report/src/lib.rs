//! The HTML report of a run: the study's figures (min label distance over
//! the steps, PCA paths of label centroids, centroid movement by layer,
//! similarity dynamics, PCA of centroid difference vectors) and a per-layer
//! table, as one self-contained page (inline SVG and CSS, no script, no
//! network), served at `/report/<run>` and written by `probewatch report`.
//!
//! Data flows one way: [`load`] reads a run's stored history through
//! [`store::Store`] (the only I/O here) into a plain
//! [`figures::History`]; [`figures`] computes each figure's data (pure);
//! [`svg`] draws it (pure); `page` assembles the HTML (pure). Rendering is
//! synchronous: the server calls it on a blocking thread.
//!
//! It does not analyse anything (it reads what the daemon stored), keeps no
//! state between calls, and shows one task per page (links or `--task` pick
//! another).

pub mod figures;
mod page;
pub mod svg;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use figures::{CentroidSeries, Comparison, History, LayerSummary};
use store::{CheckpointStatus, LayerRecord, RunId, Store, StoreError};

pub use page::{index_page, render_page};

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No run of that name in the store.
    #[error("{db}: no run named '{run}' (runs in this store: {})", list(available))]
    NoRun {
        /// The database.
        db: PathBuf,
        /// The name asked for.
        run: String,
        /// Runs present.
        available: Vec<String>,
    },
    /// The run has no such task.
    #[error("{db}: run '{run}' has no task '{task}' (tasks: {})", list(available))]
    NoTask {
        /// The database.
        db: PathBuf,
        /// Run.
        run: String,
        /// Task asked for.
        task: String,
        /// Tasks present.
        available: Vec<String>,
    },
    /// The task has no such layer.
    #[error("{db}: run '{run}', task '{task}' has no layer {layer} (layers: {available:?})")]
    NoLayer {
        /// The database.
        db: PathBuf,
        /// Run.
        run: String,
        /// Task.
        task: String,
        /// Layer asked for.
        layer: usize,
        /// Layers present.
        available: Vec<usize>,
    },
    /// A stored report or comparison is not the JSON this code expects.
    #[error(
        "{db}: run '{run}', step {step}, task '{task}', layer {layer}: stored {what} is unreadable: {detail}"
    )]
    BadRecord {
        /// The database.
        db: PathBuf,
        /// Run.
        run: String,
        /// Step.
        step: u64,
        /// Task.
        task: String,
        /// Layer.
        layer: u32,
        /// `report` or `comparison`.
        what: &'static str,
        /// The parser's message.
        detail: String,
    },
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// What to show and how.
#[derive(Clone, Debug, Default)]
pub struct ReportOptions {
    /// Task (default: the first in name order).
    pub task: Option<String>,
    /// Layer of the min-distance figure (default: the last layer).
    pub layer: Option<usize>,
    /// Refresh the page every this many seconds (a run still training).
    pub refresh_seconds: Option<u32>,
    /// Link other tasks and layers as `?task=…&layer=…` (served pages);
    /// a file names them instead.
    pub links: bool,
}

/// The fields of a stored layer report the report reads (unknown fields,
/// e.g. measures added later, are ignored).
#[derive(Deserialize, Default)]
#[serde(default)]
struct StoredLayer {
    clusters: usize,
    labels_present: usize,
    clusters_per_label: Vec<usize>,
    /// Train points per label (the core stage; empty in older reports).
    label_counts: Vec<usize>,
    label_distance: Vec<(u32, u32, f64)>,
    min_label_distance: Vec<Option<f64>>,
    accuracy: std::collections::BTreeMap<String, f64>,
    classifier_accuracy: Option<std::collections::BTreeMap<String, StoredMeanStd>>,
    similarity: std::collections::BTreeMap<String, Option<f64>>,
    label_names: Vec<String>,
}

/// Which labels have centroids in a record: those with train points (the
/// core stage's counts), or in reports stored before stages existed those
/// with clusters.
fn present_of<'a>(label_counts: &'a [usize], clusters_per_label: &'a [usize]) -> &'a [usize] {
    if label_counts.is_empty() {
        clusters_per_label
    } else {
        label_counts
    }
}

/// A classifier accuracy as stored (mean and standard deviation).
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct StoredMeanStd {
    mean: f64,
    std: f64,
}

/// The per-step part of a stored layer report (skips the distance lists).
#[derive(Deserialize, Default)]
#[serde(default)]
struct StoredSeriesLayer {
    clusters_per_label: Vec<usize>,
    label_counts: Vec<usize>,
    min_label_distance: Vec<Option<f64>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StoredComparison {
    centroid_movement: Vec<Option<f64>>,
    similarity: Option<f64>,
    grew: usize,
    shrank: usize,
    mean_change: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StoredComparisons {
    baseline: Option<StoredComparison>,
}

/// Reads one run's history of one task from the store.
pub struct Loader<'a> {
    store: &'a Store,
    db: &'a Path,
    run: &'a str,
}

impl<'a> Loader<'a> {
    fn bad(
        &self,
        step: u64,
        rec: &LayerRecord,
        what: &'static str,
        e: serde_json::Error,
    ) -> ReportError {
        ReportError::BadRecord {
            db: self.db.to_path_buf(),
            run: self.run.to_owned(),
            step,
            task: rec.task.clone(),
            layer: rec.layer,
            what,
            detail: e.to_string(),
        }
    }

    /// Centroids per label from a record (the blob holds the labels with
    /// clusters, in label order).
    fn centroids(
        rec: &LayerRecord,
        clusters_per_label: &[usize],
        k: usize,
    ) -> Vec<Option<Vec<f64>>> {
        let dim = rec.centroid_dim as usize;
        let present: Vec<usize> = (0..k)
            .filter(|&l| clusters_per_label.get(l).is_some_and(|&c| c > 0))
            .collect();
        let mut out = vec![None; k];
        if dim == 0 || present.len() * dim != rec.centroids.len() {
            return out;
        }
        for (i, &l) in present.iter().enumerate() {
            out[l] = Some(
                rec.centroids[i * dim..(i + 1) * dim]
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect(),
            );
        }
        out
    }

    fn summary(
        &self,
        step: u64,
        rec: &LayerRecord,
    ) -> Result<(LayerSummary, Vec<String>), ReportError> {
        let r: StoredLayer =
            serde_json::from_str(&rec.report_json).map_err(|e| self.bad(step, rec, "report", e))?;
        let vs_baseline = match &rec.comparison_json {
            Some(j) => serde_json::from_str::<StoredComparisons>(j)
                .map_err(|e| self.bad(step, rec, "comparison", e))?
                .baseline
                .map(comparison),
            None => None,
        };
        let k = r.min_label_distance.len();
        Ok((
            LayerSummary {
                layer: rec.layer as usize,
                clusters: r.clusters,
                labels_present: r.labels_present,
                test_accuracy: r.accuracy.get("test").copied(),
                classifier_test_accuracy: r
                    .classifier_accuracy
                    .as_ref()
                    .and_then(|c| c.get("test"))
                    .map(|m| (m.mean, m.std)),
                train_test_similarity: r.similarity.get("train_test").copied().flatten(),
                centroids: Self::centroids(
                    rec,
                    present_of(&r.label_counts, &r.clusters_per_label),
                    k,
                ),
                min_label_distance: r.min_label_distance,
                label_distance: r.label_distance,
                vs_baseline,
            },
            r.label_names,
        ))
    }

    /// One layer over the steps, a record at a time: `visit` gets each
    /// step's per-step fields and record (read and dropped one by one, so a
    /// long run's stored JSON is never all in memory at once).
    fn series(
        &self,
        run: RunId,
        task: &str,
        layer: usize,
        mut visit: impl FnMut(u64, StoredSeriesLayer, &LayerRecord),
    ) -> Result<(), ReportError> {
        self.store
            .visit_layer_series(run, task, layer as u32, |step, _, rec| {
                let r: StoredSeriesLayer = serde_json::from_str(&rec.report_json)
                    .map_err(|e| self.bad(step, &rec, "report", e))?;
                visit(step, r, &rec);
                Ok(())
            })
    }
}

fn comparison(c: StoredComparison) -> Comparison {
    Comparison {
        centroid_movement: c.centroid_movement,
        similarity: c.similarity,
        grew: c.grew,
        shrank: c.shrank,
        mean_change: c.mean_change,
    }
}

/// Reads the history of one task of run `run` from `store` (`db` names the
/// file in errors). A run without an analysed checkpoint gives an empty
/// history (the page says so), not an error.
pub fn load(
    store: &Store,
    db: &Path,
    run: &str,
    opts: &ReportOptions,
) -> Result<History, ReportError> {
    let loader = Loader { store, db, run };
    let Some(run_id) = store.run_id(run)? else {
        return Err(ReportError::NoRun {
            db: db.to_path_buf(),
            run: run.to_owned(),
            available: store.runs()?.into_iter().map(|r| r.1).collect(),
        });
    };
    let rows = store.checkpoints(run_id)?;
    let mut h = History {
        run: run.to_owned(),
        failed: rows
            .iter()
            .filter(|r| r.status == CheckpointStatus::Failed)
            .count(),
        ..History::default()
    };
    let Some(latest) = store.latest_done(run_id)? else {
        return Ok(h);
    };
    let latest_layers = store.layers(latest.id)?;
    let mut tasks: Vec<String> = latest_layers.iter().map(|l| l.task.clone()).collect();
    tasks.dedup();
    let task = match &opts.task {
        Some(t) if tasks.contains(t) => t.clone(),
        Some(t) => {
            return Err(ReportError::NoTask {
                db: db.to_path_buf(),
                run: run.to_owned(),
                task: t.clone(),
                available: tasks,
            });
        }
        None => match tasks.first() {
            Some(t) => t.clone(),
            None => return Ok(h),
        },
    };
    let mut names = Vec::new();
    for rec in latest_layers.iter().filter(|l| l.task == task) {
        let (s, n) = loader.summary(latest.step, rec)?;
        if names.is_empty() {
            names = n;
        }
        h.latest.push(s);
    }
    h.tasks = tasks;
    h.task = task.clone();
    let layers: Vec<usize> = h.latest.iter().map(|l| l.layer).collect();
    let k = h.latest.first().map_or(0, |l| l.min_label_distance.len());
    if names.len() != k {
        names = label_names_from_meta(latest.task_meta_json.as_deref(), &task)
            .filter(|n| n.len() == k)
            .unwrap_or_else(|| (0..k).map(|i| format!("#{i}")).collect());
    }
    h.labels = names;
    if let Some(b) = store.baseline(run_id)? {
        h.baseline_step = Some(b.step);
        for rec in store.layers(b.id)?.iter().filter(|l| l.task == task) {
            h.baseline.push(loader.summary(b.step, rec)?.0);
        }
    }
    h.steps = rows
        .iter()
        .filter(|r| r.status == CheckpointStatus::Done)
        .map(|r| r.step)
        .collect();
    let index = |step: u64| h.steps.binary_search(&step).ok();
    // Similarity to the baseline, per layer and step.
    let mut sim: Vec<(usize, Vec<Option<f64>>)> = layers
        .iter()
        .map(|&l| (l, vec![None; h.steps.len()]))
        .collect();
    // Read a row at a time: a long run's comparisons are never all in
    // memory at once.
    store.visit_comparison_series(run_id, &task, |step, layer, json| {
        let (Some(i), Some(j)) = (index(step), sim.iter().position(|s| s.0 == layer as usize))
        else {
            return Ok(());
        };
        if let Some(json) = json {
            let c: StoredComparisons = serde_json::from_str(&json).map_err(|e| {
                loader.bad(
                    step,
                    &LayerRecord {
                        task: task.clone(),
                        layer,
                        report_json: String::new(),
                        comparison_json: None,
                        centroids: Vec::new(),
                        centroid_dim: 0,
                    },
                    "comparison",
                    e,
                )
            })?;
            sim[j].1[i] = c.baseline.and_then(|b| b.similarity);
        }
        Ok::<(), ReportError>(())
    })?;
    h.similarity = sim;
    // The focus layer's min distances, and the first and last layers'
    // centroids, over the steps.
    let focus = match opts.layer {
        Some(l) if layers.contains(&l) => l,
        Some(l) => {
            return Err(ReportError::NoLayer {
                db: db.to_path_buf(),
                run: run.to_owned(),
                task,
                layer: l,
                available: layers,
            });
        }
        None => *layers.last().unwrap_or(&0),
    };
    h.focus_layer = focus;
    h.focus_min_distance = vec![Vec::new(); h.steps.len()];
    let (first, last) = (*layers.first().unwrap_or(&0), *layers.last().unwrap_or(&0));
    let mut wanted = vec![first, last, focus];
    wanted.sort_unstable();
    wanted.dedup();
    for layer in wanted {
        let mut cs = CentroidSeries {
            layer,
            ..CentroidSeries::default()
        };
        let paths = layer == first || layer == last;
        let focus_distances = &mut h.focus_min_distance;
        let steps = &h.steps;
        loader.series(run_id, &task, layer, |step, r, rec| {
            if paths {
                cs.steps.push(step);
                cs.centroids.push(Loader::centroids(
                    rec,
                    present_of(&r.label_counts, &r.clusters_per_label),
                    k,
                ));
            }
            if layer == focus
                && let Ok(i) = steps.binary_search(&step)
            {
                focus_distances[i] = r.min_label_distance;
            }
        })?;
        if paths {
            h.paths.push(cs);
        }
    }
    Ok(h)
}

fn label_names_from_meta(meta: Option<&str>, task: &str) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(meta?).ok()?;
    serde_json::from_value(v.get(task)?.get("labels")?.clone()).ok()
}

/// The report page of one run, read from the store at `db` (opened for
/// reading only).
pub fn render_from_store(
    db: &Path,
    run: &str,
    opts: &ReportOptions,
) -> Result<String, ReportError> {
    let store = Store::open_reader(db)?;
    let h = load(&store, db, run, opts)?;
    Ok(render_page(&h, opts))
}

/// The runs of the store at `db`, by name.
pub fn run_names(db: &Path) -> Result<Vec<String>, ReportError> {
    let store = Store::open_reader(db)?;
    let mut names: Vec<String> = store.runs()?.into_iter().map(|r| r.1).collect();
    names.sort();
    Ok(names)
}
