//! The daemon's wiring: for every configured run, watch → queue → analyse →
//! store → metrics, one direction, one event loop per run.
//!
//! Each run has an async loop (`select!` over shutdown, the running job,
//! filesystem hints and the scan timer). Scans and analyses run on blocking
//! threads; the numeric work runs on one bounded rayon pool shared by all
//! runs (`workers` threads), so the HTTP server on the async runtime keeps
//! answering. Checkpoints of one run are analysed one at a time, lowest
//! step first (a pending baseline before everything), each warm-started from
//! the previous analysis ([`crate::analysis::analyse_dump_with`]). Every
//! outcome, success or failure, is written to the store in one transaction
//! before metrics change; at start the latest stored values are published
//! again and stored checkpoints are never analysed twice.
//!
//! This module owns no format, SQL, metric name or geometry: it calls
//! [`crate::watch`], [`crate::source`], [`crate::analysis`], [`crate::store`]
//! and [`crate::metrics`].

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch as tokio_watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::analysis::{AnalysisOptions, Report, TaskMemory, analyse_dump_with};
use crate::config::{Baseline, Config, Layout, Mode, QueuePolicy, RunConfig};
use crate::geometry::measures::{LayerComparison, LayerReport, MeasureParams, Partition, compare};
use crate::metrics::{LabelSnapshot, LayerSnapshot, Metrics, RunSnapshot};
use crate::server::{ReadyFlags, ReportSource, ServerState};
use crate::source::dump::{ActivationDump, DumpError};
use crate::store::{CheckpointRow, CheckpointStatus, LayerRecord, NewCheckpoint, RunId, Store};
use crate::watch::{self, Candidate, Hint, ScanItem, Scanner};

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The store could not be opened or written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: std::net::SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The worker pool could not be built.
    #[error("cannot start {workers} analysis threads: {detail}")]
    Pool {
        /// Threads asked for.
        workers: usize,
        /// Cause.
        detail: String,
    },
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Server(std::io::Error),
}

/// Seconds between reloads of a watched run's `/report` page.
const REPORT_REFRESH_SECONDS: u32 = 30;

/// What the daemon shares between its run loops.
struct Shared {
    store: Mutex<Store>,
    metrics: Arc<Metrics>,
    pool: rayon::ThreadPool,
}

/// Runs the daemon until `shutdown` turns true; then finishes the
/// checkpoint being analysed (or abandons it after `grace`, leaving nothing
/// half-written), closes the store and returns. `on_listening` receives the
/// bound address (the config may ask for port 0). Every run's stored values
/// are published before the listener opens, so no scrape sees a restarted
/// daemon without them.
pub async fn run(
    config: Config,
    mut shutdown: tokio_watch::Receiver<bool>,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), DaemonError> {
    let store = Store::open(&config.store)?;
    info!(store = %config.store.display(), "store open");
    let metrics = Arc::new(Metrics::new());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.workers)
        .thread_name(|i| format!("probewatch-analysis-{i}"))
        .build()
        .map_err(|e| DaemonError::Pool {
            workers: config.workers,
            detail: e.to_string(),
        })?;
    let shared = Arc::new(Shared {
        store: Mutex::new(store),
        metrics: metrics.clone(),
        pool,
    });
    let ready = Arc::new(ReadyFlags::default());
    ready.set_store_open(true);
    // Restore every run before serving, so that the first scrape already
    // shows the stored values.
    let mut restored = Vec::new();
    for run in &config.runs {
        // Store reads: on a blocking thread, not the async runtime.
        let (sh, cfg) = (shared.clone(), run.clone());
        match tokio::task::spawn_blocking(move || restore(&sh, &cfg)).await {
            Ok(Ok(state)) => restored.push(state),
            Ok(Err(e)) => error!(run = %run.name, error = %e, "run stopped"),
            Err(e) => error!(run = %run.name, error = %e, "restoring the run failed"),
        }
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(DaemonError::Server)?;
    info!(url = %format!("http://{addr}/metrics"), "serving metrics");
    on_listening(addr);
    let mut server_shutdown = shutdown.clone();
    let server = tokio::spawn(crate::server::serve(
        listener,
        ServerState {
            metrics: metrics.clone(),
            ready: ready.clone(),
            reports: Some(ReportSource {
                store: config.store.clone(),
                watched: config.runs.iter().map(|r| r.name.clone()).collect(),
                refresh_seconds: REPORT_REFRESH_SECONDS,
            }),
        },
        async move {
            stopped(&mut server_shutdown).await;
        },
    ));

    let mut loops = tokio::task::JoinSet::new();
    for state in restored {
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        loops.spawn(async move {
            let name = state.cfg.name.clone();
            if let Err(e) = run_loop(shared, state, shutdown).await {
                error!(run = %name, error = %e, "run stopped");
            }
        });
    }
    ready.set_watchers_running(true);
    stopped(&mut shutdown).await;
    info!("shutting down");
    ready.set_watchers_running(false);
    while loops.join_next().await.is_some() {}
    match server.await {
        Ok(r) => r.map_err(DaemonError::Server)?,
        Err(e) => warn!(error = %e, "server task ended abnormally"),
    }
    // The store closes when the last reference drops (WAL checkpointed by
    // SQLite on close).
    drop(shared);
    info!("stopped");
    Ok(())
}

/// Reference layers (with centroids) of one checkpoint, by (task, layer).
type Layers = BTreeMap<(String, usize), LayerReport>;

/// A checkpoint's reference data held in memory.
#[derive(Clone)]
struct Reference {
    step: u64,
    layers: Arc<Layers>,
}

/// One job's result.
struct Outcome {
    candidate: Candidate,
    result: Result<Analysed, Failure>,
    memory: BTreeMap<String, TaskMemory>,
    seconds: f64,
}

struct Analysed {
    layers: Arc<Layers>,
    baseline_cmp: BTreeMap<(String, usize), LayerComparison>,
    previous_cmp: BTreeMap<(String, usize), LayerComparison>,
    checkpoint_id: i64,
    is_baseline: bool,
}

struct Failure {
    kind: &'static str,
    message: String,
}

/// The failure kind of a dump error (the `kind` label of
/// `checkpoints_failed_total`).
fn dump_error_kind(e: &DumpError) -> &'static str {
    match e {
        DumpError::Io { .. } => "io",
        DumpError::NonFinite { .. } => "non_finite",
        DumpError::LabelOutOfRange { .. }
        | DumpError::BadLabels { .. }
        | DumpError::MissingLabels { .. }
        | DumpError::MissingLabelNames { .. }
        | DumpError::BadLabelNames { .. } => "labels",
        DumpError::UnknownTask { .. }
        | DumpError::AmbiguousTask { .. }
        | DumpError::NoSuchLayer { .. } => "config_mismatch",
        _ => "format",
    }
}

fn mtime_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Per-run state owned by its loop.
struct RunState {
    cfg: RunConfig,
    id: RunId,
    baseline: Option<Reference>,
    latest: Option<Reference>,
    memory: BTreeMap<String, TaskMemory>,
    queue: BTreeMap<(u64, PathBuf), Candidate>,
}

impl RunState {
    fn is_baseline_candidate(&self, c: &Candidate) -> bool {
        match &self.cfg.baseline {
            Baseline::First => self.baseline.is_none(),
            Baseline::Step(s) => c.step == *s,
            Baseline::Path(p) => same_path(&c.path, p),
        }
    }

    /// Next job: a pending baseline first, else the lowest step (policy
    /// `all`) or the newest (policy `newest`, the older ones skipped).
    fn next_job(&mut self, metrics: &Metrics) -> Option<Candidate> {
        let baseline_key = self
            .queue
            .iter()
            .find(|(_, c)| {
                !matches!(self.cfg.baseline, Baseline::First) && self.is_baseline_candidate(c)
            })
            .map(|(k, _)| k.clone());
        if let Some(k) = baseline_key {
            return self.queue.remove(&k);
        }
        match self.cfg.queue {
            QueuePolicy::All => self.queue.pop_first().map(|(_, c)| c),
            QueuePolicy::Newest => {
                // With no baseline yet, the first checkpoint is it.
                if self.baseline.is_none() && matches!(self.cfg.baseline, Baseline::First) {
                    return self.queue.pop_first().map(|(_, c)| c);
                }
                let newest = self.queue.pop_last().map(|(_, c)| c);
                let skipped = self.queue.len() as u64;
                if skipped > 0 {
                    info!(run = %self.cfg.name, skipped, "queue policy newest: skipping older checkpoints");
                    metrics.checkpoint_skipped(&self.cfg.name, skipped);
                    self.queue.clear();
                }
                newest
            }
        }
    }
}

fn same_path(a: &Path, b: &Path) -> bool {
    a == b
        || match (a.canonicalize(), b.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) => {
            error!(error = %e, "blocking task failed");
            None
        }
    }
}

/// Restores a run from the store: its id, baseline, latest checkpoint, and
/// publishes the latest values at once.
fn restore(shared: &Shared, cfg: &RunConfig) -> Result<RunState, DaemonError> {
    let mut store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
    let config_json = serde_json::json!({
        "folder": cfg.folder,
        "mode": format!("{:?}", cfg.mode),
        "tasks": cfg.tasks,
        "layers": cfg.layers,
    })
    .to_string();
    let id = store.upsert_run(&cfg.name, &cfg.folder, &config_json)?;
    let mut baseline_row = store.baseline(id)?;
    if baseline_row.is_none() {
        // A crash between storing the baseline checkpoint and marking it
        // (two transactions) leaves it unmarked: mark it now, so the
        // baseline never moves to a later checkpoint.
        let rows = store.checkpoints(id)?;
        let done = rows.iter().filter(|r| r.status == CheckpointStatus::Done);
        let found = match &cfg.baseline {
            Baseline::First => done.min_by(|a, b| {
                a.finished_unix
                    .total_cmp(&b.finished_unix)
                    .then(a.id.cmp(&b.id))
            }),
            Baseline::Step(s) => done.filter(|r| r.step == *s).min_by_key(|r| r.id),
            Baseline::Path(p) => done.filter(|r| same_path(&r.path, p)).min_by_key(|r| r.id),
        };
        if let Some(r) = found {
            warn!(run = %cfg.name, step = r.step, path = %r.path.display(), "baseline was stored but not marked; marking it");
            let r = r.clone();
            store.set_baseline(id, r.id)?;
            baseline_row = Some(r);
        }
    }
    let load = |row: &CheckpointRow| load_reference(&store, &cfg.name, row);
    let baseline = baseline_row.map(|r| load(&r)).transpose()?;
    let latest_row = store.latest_done(id)?;
    let latest = latest_row.as_ref().map(&load).transpose()?;
    let (done, failed) = store.counts(id)?;
    info!(run = %cfg.name, done, failed, baseline = ?baseline.as_ref().map(|b| b.step), latest = ?latest.as_ref().map(|l| l.step), "run restored");
    if let (Some(row), Some(l)) = (&latest_row, &latest) {
        let previous = store
            .previous_done(id, row.step)?
            .map(|r| load(&r))
            .transpose()?;
        let snap = snapshot(
            cfg,
            row.step,
            row.mtime_ns,
            l,
            baseline.as_ref(),
            previous.as_ref(),
        );
        shared.metrics.publish(snap);
    }
    Ok(RunState {
        cfg: cfg.clone(),
        id,
        baseline,
        latest,
        memory: BTreeMap::new(),
        queue: BTreeMap::new(),
    })
}

/// A stored layer record back as a report with its centroids.
fn reference_layer(rec: &LayerRecord) -> Option<LayerReport> {
    let mut r: LayerReport = serde_json::from_str(&rec.report_json).ok()?;
    let dim = rec.centroid_dim as usize;
    if dim > 0 {
        let k = r.min_label_distance.len();
        let present: Vec<usize> = (0..k)
            .filter(|&l| r.clusters_per_label.get(l).is_some_and(|&c| c > 0))
            .collect();
        if present.len() * dim != rec.centroids.len() {
            return None;
        }
        let mut cents = vec![None; k];
        for (i, &l) in present.iter().enumerate() {
            cents[l] = Some(
                rec.centroids[i * dim..(i + 1) * dim]
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect(),
            );
        }
        r.centroids = cents;
    }
    Some(r)
}

/// A layer report as a store record: the report's JSON without centroids,
/// the centroids of the labels present as an `f32` blob, the comparisons.
fn layer_record(
    task: &str,
    l: &LayerReport,
    baseline: Option<&LayerComparison>,
    previous: Option<&LayerComparison>,
) -> LayerRecord {
    let mut bare = l.clone();
    bare.centroids = Vec::new();
    let dim = l
        .centroids
        .iter()
        .flatten()
        .map(Vec::len)
        .next()
        .unwrap_or(0);
    let centroids: Vec<f32> = l
        .centroids
        .iter()
        .flatten()
        .flat_map(|c| c.iter().map(|&v| v as f32))
        .collect();
    let comparison = (baseline.is_some() || previous.is_some())
        .then(|| serde_json::json!({ "baseline": baseline, "previous": previous }).to_string());
    LayerRecord {
        task: task.to_string(),
        layer: l.layer as u32,
        report_json: serde_json::to_string(&bare).unwrap_or_else(|_| "{}".into()),
        comparison_json: comparison,
        centroids,
        centroid_dim: dim as u32,
    }
}

/// The metrics snapshot of one checkpoint.
fn snapshot(
    cfg: &RunConfig,
    step: u64,
    mtime_ns: i64,
    now: &Reference,
    baseline: Option<&Reference>,
    previous: Option<&Reference>,
) -> RunSnapshot {
    let mut layers = Vec::new();
    for ((task, layer), r) in now.layers.iter() {
        let base = baseline
            .filter(|b| b.step != step)
            .and_then(|b| b.layers.get(&(task.clone(), *layer)));
        let prev = previous.and_then(|p| p.layers.get(&(task.clone(), *layer)));
        let cmp_base = base.and_then(|b| compare(b, r).ok());
        let cmp_prev = prev.and_then(|p| compare(p, r).ok());
        let names = label_names(r);
        let mut label_stats = Vec::new();
        for (l, name) in names.iter().enumerate() {
            let Some(d) = r.min_label_distance.get(l).copied().flatten() else {
                continue;
            };
            let dn = r.min_label_distance_normalized.get(l).copied().flatten();
            let b = base.and_then(|b| b.min_label_distance.get(l).copied().flatten());
            let bn = base.and_then(|b| b.min_label_distance_normalized.get(l).copied().flatten());
            let change_ratio = match (dn, bn) {
                (Some(x), Some(y)) if y > 0.0 => Some(x / y - 1.0),
                _ => None,
            };
            label_stats.push(LabelSnapshot {
                label: name.clone(),
                min_distance: Some(d),
                min_distance_normalized: dn,
                min_distance_baseline: if baseline.is_some_and(|b| b.step == step) {
                    Some(d)
                } else {
                    b
                },
                change_ratio: if baseline.is_some_and(|b| b.step == step) {
                    Some(0.0)
                } else {
                    change_ratio
                },
                clusters: r.clusters_per_label.get(l).copied().unwrap_or(0) as u64,
                centroid_movement: if baseline.is_some_and(|b| b.step == step) {
                    Some(0.0)
                } else {
                    cmp_base
                        .as_ref()
                        .and_then(|c| c.centroid_movement.get(l).copied().flatten())
                },
            });
        }
        let label_pairs = cfg.export_label_pairs.then(|| {
            r.label_distance
                .iter()
                .map(|&(a, b, d)| (names[a as usize].clone(), names[b as usize].clone(), d))
                .collect()
        });
        layers.push(LayerSnapshot {
            task: task.clone(),
            layer: *layer as u32,
            clusters: r.clusters as u64,
            labels: r.labels_present as u64,
            scale: r.scale,
            label_stats,
            similarity_baseline: if baseline.is_some_and(|b| b.step == step) {
                Some(1.0)
            } else {
                cmp_base.as_ref().and_then(|c| c.similarity)
            },
            similarity_previous: cmp_prev.as_ref().and_then(|c| c.similarity),
            similarity_test: r.similarity.get("train_test").copied().flatten(),
            accuracy: r.accuracy.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            labels_increased: cmp_base.as_ref().map(|c| c.grew as u64),
            labels_decreased: cmp_base.as_ref().map(|c| c.shrank as u64),
            label_pairs,
        });
    }
    RunSnapshot {
        run: cfg.name.clone(),
        step,
        timestamp_seconds: mtime_ns as f64 / 1e9,
        layers,
    }
}

/// Label names travel in the report's `label_names` (added by the daemon to
/// each stored layer); fall back to indices.
fn label_names(r: &LayerReport) -> Vec<String> {
    if r.label_names.len() == r.min_label_distance.len() {
        r.label_names.clone()
    } else {
        (0..r.min_label_distance.len())
            .map(|i| i.to_string())
            .collect()
    }
}

/// Analyses one checkpoint (blocking; numeric work on the shared pool) and
/// records the outcome in the store.
/// One analysis to run: the checkpoint, the warm memory and the references.
struct Job {
    candidate: Candidate,
    memory: BTreeMap<String, TaskMemory>,
    baseline: Option<Reference>,
    previous: Option<Reference>,
    is_baseline: bool,
}

fn analyse_job(shared: &Shared, cfg: &RunConfig, run: RunId, job: Job) -> Outcome {
    let Job {
        candidate,
        memory,
        baseline,
        previous,
        is_baseline,
    } = job;
    let started = unix_now();
    let t = Instant::now();
    let mut new_memory = BTreeMap::new();
    let result = shared.pool.install(|| {
        analyse_checkpoint(
            cfg,
            &candidate,
            &memory,
            &mut new_memory,
            baseline.as_ref(),
            previous.as_ref(),
        )
    });
    let seconds = t.elapsed().as_secs_f64();
    let finished = unix_now();
    let mut store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
    let result = match result {
        Ok((reports, layers, baseline_cmp, previous_cmp)) => {
            let mut records = Vec::new();
            for ((task, layer), l) in layers.iter() {
                let key = (task.clone(), *layer);
                records.push(layer_record(
                    task,
                    l,
                    baseline_cmp.get(&key),
                    previous_cmp.get(&key),
                ));
            }
            let meta: BTreeMap<&str, serde_json::Value> = reports
                .iter()
                .map(|r| {
                    (
                        r.task.as_str(),
                        serde_json::json!({ "labels": r.labels, "splits": r.splits, "dim": r.dim, "file": r.file }),
                    )
                })
                .collect();
            let meta = serde_json::to_string(&meta).unwrap_or_default();
            let rec = NewCheckpoint {
                step: candidate.step,
                path: &candidate.path,
                size: candidate.size,
                mtime_ns: mtime_ns(candidate.mtime),
                status: CheckpointStatus::Done,
                error_kind: None,
                error: None,
                started_unix: started,
                finished_unix: finished,
                seconds,
                task_meta_json: Some(&meta),
                layers: &records,
                baseline: is_baseline,
            };
            match store.record_checkpoint(run, &rec) {
                Ok(id) => Ok(Analysed {
                    layers: Arc::new(layers),
                    baseline_cmp,
                    previous_cmp,
                    checkpoint_id: id,
                    is_baseline,
                }),
                Err(e) => Err(Failure {
                    kind: "store",
                    message: e.to_string(),
                }),
            }
        }
        Err(f) => {
            let rec = NewCheckpoint {
                step: candidate.step,
                path: &candidate.path,
                size: candidate.size,
                mtime_ns: mtime_ns(candidate.mtime),
                status: CheckpointStatus::Failed,
                error_kind: Some(f.kind),
                error: Some(&f.message),
                started_unix: started,
                finished_unix: finished,
                seconds,
                task_meta_json: None,
                layers: &[],
                baseline: false,
            };
            if let Err(e) = store.record_checkpoint(run, &rec) {
                warn!(run = %cfg.name, error = %e, "cannot record the failure");
            }
            Err(f)
        }
    };
    Outcome {
        candidate,
        result,
        memory: new_memory,
        seconds,
    }
}

type Checked = (
    Vec<Report>,
    Layers,
    BTreeMap<(String, usize), LayerComparison>,
    BTreeMap<(String, usize), LayerComparison>,
);

fn analyse_checkpoint(
    cfg: &RunConfig,
    candidate: &Candidate,
    memory: &BTreeMap<String, TaskMemory>,
    new_memory: &mut BTreeMap<String, TaskMemory>,
    baseline: Option<&Reference>,
    previous: Option<&Reference>,
) -> Result<Checked, Failure> {
    let from_dump = |e: DumpError| Failure {
        kind: dump_error_kind(&e),
        message: e.to_string(),
    };
    if cfg.layout != Layout::Dumps {
        return Err(Failure {
            kind: "unsupported",
            message: format!(
                "{}: layout hf-checkpoints needs the encoder, not built yet",
                candidate.path.display()
            ),
        });
    }
    let dump = ActivationDump::open(&candidate.path).map_err(from_dump)?;
    let tasks: Vec<String> = match &cfg.tasks {
        Some(t) => t.clone(),
        None => dump.tasks().iter().map(|t| t.name.clone()).collect(),
    };
    let measure = MeasureParams {
        label_distance: cfg.label_distance,
        drop_clusters_up_to: cfg.drop_clusters_up_to,
        train_test_similarity: cfg.train_test_similarity,
        ..MeasureParams::default()
    };
    let partition = match cfg.mode {
        Mode::Exact => Partition::Recluster,
        Mode::FrozenPartition => Partition::Frozen,
    };
    let mut reports = Vec::new();
    let mut layers = Layers::new();
    let (mut bcmp, mut pcmp) = (BTreeMap::new(), BTreeMap::new());
    for task in tasks {
        let opts = AnalysisOptions {
            task: Some(task.clone()),
            layers: cfg.layers.clone(),
            measure,
            keep_centroids: true,
        };
        let empty = TaskMemory::new();
        let mem = memory.get(&task).unwrap_or(&empty);
        let (report, next) =
            analyse_dump_with(&dump, &opts, mem, partition, &|_| {}).map_err(|e| match e {
                crate::analysis::AnalysisError::Dump(d) => from_dump(d),
                other => Failure {
                    kind: "config_mismatch",
                    message: format!("{}: {other}", candidate.path.display()),
                },
            })?;
        new_memory.insert(task.clone(), next);
        for l in &report.layers {
            let key = (task.clone(), l.layer);
            let mut l = l.clone();
            l.label_names = report.labels.clone();
            for (reference, out) in [(baseline, &mut bcmp), (previous, &mut pcmp)] {
                if let Some((step, r)) =
                    reference.and_then(|r| r.layers.get(&key).map(|l| (r.step, l)))
                {
                    match compare(r, &l) {
                        Ok(c) => {
                            out.insert(key.clone(), c);
                        }
                        Err(e) => {
                            return Err(Failure {
                                kind: "labels",
                                message: format!(
                                    "{}: task '{task}' layer {}: cannot compare with step {}: {e}",
                                    candidate.path.display(),
                                    l.layer,
                                    step
                                ),
                            });
                        }
                    }
                }
            }
            layers.insert(key, l);
        }
        reports.push(report);
    }
    Ok((reports, layers, bcmp, pcmp))
}

/// The loop of one run.
async fn run_loop(
    shared: Arc<Shared>,
    mut state: RunState,
    mut shutdown: tokio_watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let cfg = state.cfg.clone();
    let name = cfg.name.clone();
    let layout = match cfg.layout {
        Layout::Dumps => watch::Layout::Dumps,
        Layout::HfCheckpoints => watch::Layout::HfCheckpoints,
    };
    let (htx, mut hrx) = mpsc::channel::<Hint>(1024);
    let mut hints = None;
    let mut scanner = Some(Scanner::new(
        cfg.folder.clone(),
        layout,
        cfg.stable_scans,
        cfg.follow_symlinks,
    ));
    let mut tick = tokio::time::interval(cfg.scan_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renamed: HashSet<PathBuf> = HashSet::new();
    let mut job: Option<JoinHandle<Outcome>> = None;
    let mut scan_now = true;
    let mut missing_logged = false;
    info!(run = %name, folder = %cfg.folder.display(), "watching");
    // Try to set up filesystem events at start and whenever the folder
    // comes back; without them the periodic scan does everything.
    let mut want_hints = true;
    loop {
        if want_hints && hints.is_none() && cfg.folder.is_dir() {
            want_hints = false;
            match watch::watch_folder(&cfg.folder, layout, htx.clone()) {
                Ok(h) => hints = Some(h),
                Err(e) => {
                    warn!(run = %name, error = %e, "no filesystem events; relying on the periodic scan")
                }
            }
        }
        if scan_now {
            scan_now = false;
            if state.queue.len() < cfg.queue_capacity || cfg.queue == QueuePolicy::Newest {
                let mut sc = scanner.take().expect("scanner present between scans");
                let ren = std::mem::take(&mut renamed);
                let res = blocking(move || {
                    let r = sc.scan(&ren);
                    (sc, r)
                })
                .await;
                let Some((sc, r)) = res else { return Ok(()) };
                let missing = sc.folder_missing();
                scanner = Some(sc);
                if missing && !missing_logged {
                    warn!(run = %name, folder = %cfg.folder.display(), "run folder missing; waiting for it");
                    hints = None;
                }
                if !missing && missing_logged {
                    info!(run = %name, folder = %cfg.folder.display(), "run folder is back");
                    want_hints = true;
                }
                missing_logged = missing;
                match r {
                    Ok(items) => handle_scan(&shared, &mut state, items).await,
                    Err(e) => warn!(run = %name, error = %e, "scan failed"),
                }
            }
        }
        if job.is_none() {
            if let Some(c) = state.next_job(&shared.metrics) {
                let is_baseline = state.is_baseline_candidate(&c);
                let previous = match &state.latest {
                    Some(l) if l.step < c.step => Some(l.clone()),
                    _ => {
                        let sh = shared.clone();
                        let (id, step, c2) = (state.id, c.step, cfg.clone());
                        blocking(move || load_previous(&sh, &c2, id, step))
                            .await
                            .flatten()
                    }
                };
                let baseline = if is_baseline {
                    None
                } else {
                    state.baseline.clone()
                };
                let memory = std::mem::take(&mut state.memory);
                let sh = shared.clone();
                let c2 = cfg.clone();
                let id = state.id;
                debug!(run = %name, step = c.step, path = %c.path.display(), "analysing");
                let j = Job {
                    candidate: c,
                    memory,
                    baseline,
                    previous,
                    is_baseline,
                };
                job = Some(tokio::task::spawn_blocking(move || {
                    analyse_job(&sh, &c2, id, j)
                }));
            }
        }
        shared
            .metrics
            .set_queue_depth(&name, state.queue.len() as i64);
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => {
                if let Some(j) = job.take() {
                    info!(run = %name, "finishing the checkpoint being analysed");
                    match tokio::time::timeout(std::time::Duration::from_secs(30), j).await {
                        Ok(Ok(o)) => finish(&shared, &mut state, o),
                        _ => warn!(run = %name, "abandoned the checkpoint being analysed (nothing of it was stored)"),
                    }
                }
                return Ok(());
            }
            o = async { job.as_mut().expect("guarded").await }, if job.is_some() => {
                job = None;
                match o {
                    Ok(o) => finish(&shared, &mut state, o),
                    Err(e) => error!(run = %name, error = %e, "analysis task panicked"),
                }
            }
            h = hrx.recv() => {
                match h {
                    Some(Hint::Renamed(p)) => { renamed.insert(p); }
                    Some(_) => {}
                    None => {}
                }
                // Coalesce a burst of events into one scan.
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                while let Ok(h) = hrx.try_recv() {
                    if let Hint::Renamed(p) = h { renamed.insert(p); }
                }
                scan_now = true;
            }
            _ = tick.tick() => { scan_now = true; }
        }
    }
}

fn load_previous(shared: &Shared, cfg: &RunConfig, run: RunId, step: u64) -> Option<Reference> {
    let store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
    let row = store.previous_done(run, step).ok()??;
    load_reference(&store, &cfg.name, &row).ok()
}

/// A stored checkpoint's layers as an in-memory reference (unreadable
/// layer reports are logged and left out).
fn load_reference(store: &Store, run: &str, row: &CheckpointRow) -> Result<Reference, DaemonError> {
    let mut layers = Layers::new();
    for rec in store.layers(row.id)? {
        match reference_layer(&rec) {
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

async fn handle_scan(shared: &Arc<Shared>, state: &mut RunState, items: Vec<ScanItem>) {
    let name = state.cfg.name.clone();
    for item in items {
        match item {
            ScanItem::Complete(c) => {
                let sh = shared.clone();
                let (id, path, size, mt) = (state.id, c.path.clone(), c.size, mtime_ns(c.mtime));
                let recorded = blocking(move || {
                    let store = sh.store.lock().unwrap_or_else(|p| p.into_inner());
                    store.is_recorded(id, &path, size, mt)
                })
                .await;
                match recorded {
                    Some(Ok(true)) => {
                        debug!(run = %name, step = c.step, path = %c.path.display(), "already stored");
                    }
                    Some(Ok(false)) => {
                        info!(run = %name, step = c.step, path = %c.path.display(), "checkpoint complete; queued");
                        state.queue.insert((c.step, c.path.clone()), c);
                        if state.cfg.queue == QueuePolicy::Newest {
                            while state.queue.len() > state.cfg.queue_capacity {
                                state.queue.pop_first();
                                shared.metrics.checkpoint_skipped(&name, 1);
                            }
                        }
                    }
                    Some(Err(e)) => error!(run = %name, error = %e, "store read failed"),
                    None => {}
                }
            }
            ScanItem::Invalid { path, reason } => {
                warn!(run = %name, path = %path.display(), reason = %reason, "invalid checkpoint");
                shared.metrics.checkpoint_failed(&name, "format");
            }
            ScanItem::Removed { path } => {
                let before = state.queue.len();
                state.queue.retain(|_, c| c.path != path);
                let dropped = before - state.queue.len();
                if dropped > 0 {
                    warn!(run = %name, path = %path.display(), "queued checkpoint removed before analysis");
                    shared.metrics.checkpoint_skipped(&name, dropped as u64);
                }
            }
        }
    }
}

fn finish(shared: &Shared, state: &mut RunState, o: Outcome) {
    let name = state.cfg.name.clone();
    state.memory = o.memory;
    match o.result {
        Ok(a) => {
            shared.metrics.checkpoint_analyzed(&name, o.seconds);
            let reference = Reference {
                step: o.candidate.step,
                layers: a.layers.clone(),
            };
            if a.is_baseline {
                state.baseline = Some(reference.clone());
            }
            info!(
                run = %name,
                step = o.candidate.step,
                path = %o.candidate.path.display(),
                seconds = format!("{:.3}", o.seconds),
                checkpoint = a.checkpoint_id,
                compared_to_baseline = a.baseline_cmp.len(),
                compared_to_previous = a.previous_cmp.len(),
                "checkpoint analysed"
            );
            let newer = state
                .latest
                .as_ref()
                .is_none_or(|l| l.step <= o.candidate.step);
            if newer {
                let previous = state.latest.replace(reference.clone());
                let previous = previous.filter(|p| p.step < reference.step);
                let snap = snapshot(
                    &state.cfg,
                    o.candidate.step,
                    mtime_ns(o.candidate.mtime),
                    &reference,
                    state.baseline.as_ref(),
                    previous.as_ref(),
                );
                shared.metrics.publish(snap);
            } else {
                info!(run = %name, step = o.candidate.step, "late checkpoint stored in its place; latest values unchanged");
            }
        }
        Err(f) => {
            // A failed analysis leaves the warm memory usable (it only
            // speeds up solves).
            warn!(run = %name, path = %o.candidate.path.display(), kind = f.kind, error = %f.message, "checkpoint failed");
            shared.metrics.checkpoint_failed(&name, f.kind);
        }
    }
}

/// Resolves when the shutdown flag is (or turns) true, or its sender is gone.
async fn stopped(rx: &mut tokio_watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
