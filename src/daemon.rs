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
//! again and stored checkpoints are never analysed twice. A checkpoint over
//! a `[limits]` cap fails with kind `limit` before any layer is read.
//!
//! [`run_with_reload`] also re-reads the configuration on request (SIGHUP in
//! `main.rs`): all or nothing, it starts, stops or restarts run loops; a
//! file that does not load changes nothing.
//!
//! This module owns no format, SQL, metric name or geometry: it calls
//! [`crate::watch`], [`crate::source`], [`crate::analysis`], [`crate::store`]
//! and [`crate::metrics`].

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch as tokio_watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::analysis::{AnalysisOptions, Report, SubSplits, TaskMemory, analyse_with};
use crate::config::{Baseline, Classifier, Config, Layout, Limits, Mode, QueuePolicy, RunConfig};
use crate::geometry::classifier::{ClassifierParams, search_configs};
use crate::geometry::measures::{LayerComparison, LayerReport, MeasureParams, Partition, compare};
use crate::metrics::{LabelSnapshot, LayerSnapshot, Metrics, RunSnapshot};
use crate::server::{ReadyFlags, ReportSource, ServerState};
use crate::shard::Shard;
use crate::source::Activations;
use crate::source::DumpTask;
use crate::source::dump::{ActivationDump, DumpError};
use crate::source::encoder::{Encoder, EncoderError};
use crate::source::extract::{ExtractError, ExtractedActivations, ExtractionPlan};
use crate::source::probeset::tokens::{ProbeTokenizer, TokenizeError, TokenizeOptions};
use crate::source::probeset::{ProbeSet, ProbeSetError};
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
    /// A probe set of an `hf-checkpoints` run is beyond a `[limits]` cap.
    #[error(
        "run '{run}': task '{task}': the probe set has {value} {what}, more than \
         limits.{key} = {limit}"
    )]
    ProbeSetLimit {
        /// The run.
        run: String,
        /// The task.
        task: String,
        /// `items` or `labels`.
        what: &'static str,
        /// The `[limits]` key.
        key: &'static str,
        /// The probe set's count.
        value: usize,
        /// The cap.
        limit: usize,
    },
    /// A probe set of an `hf-checkpoints` run could not be read.
    #[error("run '{run}': task '{task}': {source}")]
    ProbeSet {
        /// The run.
        run: String,
        /// The task.
        task: String,
        /// Cause (names the file and line).
        source: ProbeSetError,
    },
    /// The web config file (TLS, basic auth) cannot be used.
    #[error(transparent)]
    WebConfig(#[from] crate::web_config::WebConfigError),
}

/// What an `hf-checkpoints` run computes its activations from: the probe
/// sets, read once at start, and the extraction plan of the last tokenizer
/// seen (tokenizing does not depend on the weights, so checkpoints with the
/// same `tokenizer.json` share one plan).
struct ProbeRun {
    sets: Vec<ProbeSet>,
    plan: Mutex<Option<PlanCache>>,
}

struct PlanCache {
    /// Digest of the tokenizer file's bytes.
    digest: u64,
    max_tokens: usize,
    plan: Arc<ExtractionPlan>,
}

impl ProbeRun {
    /// Reads the probe sets of `cfg` (an `hf-checkpoints` run) and checks
    /// them against `limits`.
    fn load(cfg: &RunConfig, limits: &Limits) -> Result<ProbeRun, DaemonError> {
        let mut sets = Vec::with_capacity(cfg.probes.len());
        for p in &cfg.probes {
            let set =
                ProbeSet::load(&p.task, &p.files).map_err(|source| DaemonError::ProbeSet {
                    run: cfg.name.clone(),
                    task: p.task.name.clone(),
                    source,
                })?;
            info!(run = %cfg.name, task = %p.task.name, items = set.items.len(), sentences = set.sentences.len(), labels = set.label_names.len(), "probe set read");
            sets.push(set);
        }
        let probe = ProbeRun {
            sets,
            plan: Mutex::new(None),
        };
        probe.check_limits(cfg, limits)?;
        Ok(probe)
    }

    /// Refuses probe sets with more items or labels than `limits` allow.
    fn check_limits(&self, cfg: &RunConfig, limits: &Limits) -> Result<(), DaemonError> {
        self.sets
            .iter()
            .try_for_each(|set| check_probe_set_limits(cfg, set, limits))
    }

    /// The plan for `tokenizer` (a file) and `encoder`'s input length:
    /// cached while the tokenizer file's bytes stay the same.
    fn plan(
        &self,
        cfg: &RunConfig,
        tokenizer: &Path,
        encoder: &Encoder,
    ) -> Result<Arc<ExtractionPlan>, Failure> {
        let bytes = std::fs::read(tokenizer).map_err(|e| Failure {
            kind: "io",
            message: format!("{}: cannot read the tokenizer: {e}", tokenizer.display()),
        })?;
        let digest = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            h.finish()
        };
        let max_tokens = encoder.max_positions();
        let mut cache = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.as_ref()
            && c.digest == digest
            && c.max_tokens == max_tokens
        {
            return Ok(c.plan.clone());
        }
        let mut opts = TokenizeOptions::new(max_tokens);
        opts.word_pooling = cfg.word_pooling;
        opts.sentence_pooling = cfg.sentence_pooling;
        let tok = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| Failure {
            kind: "format",
            message: format!("{}: cannot load the tokenizer: {e}", tokenizer.display()),
        })?;
        let tok = ProbeTokenizer::new(tok, opts).map_err(|e| tokenize_failure(&e))?;
        let plan = ExtractionPlan::new(&tok, &self.sets).map_err(|e| extract_failure(&e))?;
        info!(run = %cfg.name, tokenizer = %tokenizer.display(), inputs = plan.inputs(), tokens = plan.tokens(), "probe sets tokenized");
        let plan = Arc::new(plan);
        *cache = Some(PlanCache {
            digest,
            max_tokens,
            plan: plan.clone(),
        });
        Ok(plan)
    }
}

/// Refuses a probe set of run `cfg` with more items or labels than `limits`
/// allow (the daemon at start and on reload, and `check-config`).
pub fn check_probe_set_limits(
    cfg: &RunConfig,
    set: &ProbeSet,
    limits: &Limits,
) -> Result<(), DaemonError> {
    match limits.exceeded(set.items.len(), set.label_names.len(), None) {
        None => Ok(()),
        Some(e) => Err(DaemonError::ProbeSetLimit {
            run: cfg.name.clone(),
            task: set.task.name.clone(),
            what: e.what,
            key: e.key,
            value: e.value,
            limit: e.limit,
        }),
    }
}

/// The failure of an encoder error: unreadable files are `io`, broken or
/// inconsistent weights `format`, an architecture we do not run
/// `unsupported`, a tokenizer that does not fit the model `config_mismatch`.
fn encoder_failure(e: &EncoderError) -> Failure {
    let kind = match e {
        EncoderError::Io { .. } | EncoderError::ThreadPool { .. } => "io",
        EncoderError::UnknownArchitecture { .. } => "unsupported",
        EncoderError::TokenOutOfVocab { .. } | EncoderError::SequenceTooLong { .. } => {
            "config_mismatch"
        }
        _ => "format",
    };
    Failure {
        kind,
        message: e.to_string(),
    }
}

fn tokenize_failure(e: &TokenizeError) -> Failure {
    let kind = match e {
        TokenizeError::Load { .. } | TokenizeError::Configure { .. } => "format",
        _ => "config_mismatch",
    };
    Failure {
        kind,
        message: e.to_string(),
    }
}

fn extract_failure(e: &ExtractError) -> Failure {
    match e {
        ExtractError::Encoder(e) => encoder_failure(e),
        ExtractError::Tokenize(e) => tokenize_failure(e),
        other => Failure {
            kind: "config_mismatch",
            message: other.to_string(),
        },
    }
}

/// The tokenizer of an `hf-checkpoints` run for checkpoint `dir`: the
/// configured file, else the checkpoint's `tokenizer.json`, else the run
/// folder's.
fn tokenizer_for(cfg: &RunConfig, dir: &Path) -> Result<PathBuf, Failure> {
    if let Some(t) = &cfg.tokenizer {
        return Ok(t.clone());
    }
    [
        dir.join("tokenizer.json"),
        cfg.folder.join("tokenizer.json"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .ok_or_else(|| Failure {
        kind: "config_mismatch",
        message: format!(
            "{}: no tokenizer.json in the checkpoint or the run folder {}; set `tokenizer` in \
                 the run's config",
            dir.display(),
            cfg.folder.display()
        ),
    })
}

/// Seconds between reloads of a watched run's `/report` page.
const REPORT_REFRESH_SECONDS: u32 = 30;

/// What the daemon shares between its run loops.
struct Shared {
    store: Mutex<Store>,
    /// Per `hf-checkpoints` run (by name): its probe sets and plan. Replaced
    /// by a reload that adds or changes the run.
    probes: RwLock<BTreeMap<String, Arc<ProbeRun>>>,
    metrics: Arc<Metrics>,
    pool: rayon::ThreadPool,
    /// This replica's share of the (task, layer) pairs; `None`: all.
    shard: Option<Shard>,
    /// The analysis caps; a reload replaces them for the next checkpoint.
    limits: RwLock<Limits>,
}

/// Reads the configuration again: the file plus the command line's
/// overrides. Its error is shown as it is (it names the file and line).
pub type ReloadFn = Arc<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// How the daemon re-reads its configuration while it runs (SIGHUP).
pub struct Reload {
    /// Each message asks for one reload.
    pub requests: mpsc::Receiver<()>,
    /// Reads the configuration.
    pub load: ReloadFn,
}

/// A run loop started by the daemon.
struct RunHandle {
    cfg: RunConfig,
    stop: tokio_watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunHandle {
    /// Asks the loop to stop (it finishes the checkpoint being analysed or
    /// abandons it after its grace time) and waits for it.
    async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            warn!(run = %self.cfg.name, error = %e, "run loop ended abnormally");
        }
    }
}

/// Starts the loop of a restored run.
fn spawn_run(shared: &Arc<Shared>, state: RunState) -> RunHandle {
    let (stop, rx) = tokio_watch::channel(false);
    let cfg = state.cfg.clone();
    let shared = shared.clone();
    let task = tokio::spawn(async move {
        let name = state.cfg.name.clone();
        if let Err(e) = run_loop(shared, state, rx).await {
            error!(run = %name, error = %e, "run stopped");
        }
    });
    RunHandle { cfg, stop, task }
}

/// Restores a run from the store on a blocking thread (store reads stay off
/// the async runtime) and starts its loop; `None` (logged) if it cannot be
/// restored.
async fn start_run(shared: &Arc<Shared>, cfg: &RunConfig) -> Option<RunHandle> {
    let (sh, c) = (shared.clone(), cfg.clone());
    match tokio::task::spawn_blocking(move || restore(&sh, &c)).await {
        Ok(Ok(state)) => Some(spawn_run(shared, state)),
        Ok(Err(e)) => {
            error!(run = %cfg.name, error = %e, "run stopped");
            None
        }
        Err(e) => {
            error!(run = %cfg.name, error = %e, "restoring the run failed");
            None
        }
    }
}

/// Reads the probe sets of every `hf-checkpoints` run of `config` on a
/// blocking thread, re-using `keep`'s for runs whose settings are unchanged
/// (their sets are checked against the new limits again).
async fn load_probes(
    config: &Config,
    keep: &BTreeMap<String, (RunConfig, Arc<ProbeRun>)>,
) -> Result<BTreeMap<String, Arc<ProbeRun>>, DaemonError> {
    let mut probes = BTreeMap::new();
    for run in config
        .runs
        .iter()
        .filter(|r| r.layout == Layout::HfCheckpoints)
    {
        let probe = match keep.get(&run.name) {
            Some((old, probe)) if old == run => {
                probe.check_limits(run, &config.limits)?;
                probe.clone()
            }
            _ => {
                let (cfg, limits) = (run.clone(), config.limits);
                let probe = tokio::task::spawn_blocking(move || ProbeRun::load(&cfg, &limits))
                    .await
                    .map_err(|e| DaemonError::Pool {
                        workers: 1,
                        detail: e.to_string(),
                    })??;
                Arc::new(probe)
            }
        };
        probes.insert(run.name.clone(), probe);
    }
    Ok(probes)
}

/// Runs the daemon until `shutdown` turns true; then finishes the
/// checkpoint being analysed (or abandons it after `grace`, leaving nothing
/// half-written), closes the store and returns. `on_listening` receives the
/// bound address (the config may ask for port 0). Every run's stored values
/// are published before the listener opens, so no scrape sees a restarted
/// daemon without them.
pub async fn run(
    config: Config,
    shutdown: tokio_watch::Receiver<bool>,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), DaemonError> {
    run_with_reload(config, shutdown, None, on_listening).await
}

/// [`run`], and on each request of `reload` the configuration is read again
/// and applied without a restart: runs added are started, runs removed are
/// stopped (their series leave `/metrics`, their history stays in the
/// store), runs whose settings changed are stopped and started again from
/// the store, and the analysis limits change for the next checkpoint. A
/// file that does not load (syntax, a check, a probe set) changes nothing:
/// the error is logged with its line and the previous configuration keeps
/// running. The listener, store, workers, web config, shard and HTTP limits
/// take effect at the next restart (logged when changed).
pub async fn run_with_reload(
    config: Config,
    mut shutdown: tokio_watch::Receiver<bool>,
    mut reload: Option<Reload>,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), DaemonError> {
    // A bad web config stops the start before anything else happens.
    let web = match &config.web_config {
        None => None,
        Some(path) => {
            let web = crate::web_config::load(path)?;
            info!("{}", web.describe());
            Some(Arc::new(web))
        }
    };
    let scheme = web.as_ref().map_or("http", |w| w.scheme());
    // Probe sets first: a run whose probe set cannot be read is a
    // configuration error, refused before anything starts.
    let probes = load_probes(&config, &BTreeMap::new()).await?;
    let store = Store::open(&config.store)?;
    info!(store = %config.store.display(), "store open");
    let metrics = Arc::new(Metrics::new());
    metrics.config_loaded(false, unix_now());
    if let Some(shard) = config.shard {
        metrics.set_shard(shard.index(), shard.count());
        info!(%shard, "sharded: analysing this replica's share of the (task, layer) pairs");
    }
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
        probes: RwLock::new(probes),
        metrics: metrics.clone(),
        pool,
        shard: config.shard,
        limits: RwLock::new(config.limits),
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
    info!(url = %format!("{scheme}://{addr}/metrics"), "serving metrics");
    on_listening(addr);
    let watched = Arc::new(RwLock::new(
        config
            .runs
            .iter()
            .map(|r| r.name.clone())
            .collect::<Vec<_>>(),
    ));
    let mut server_shutdown = shutdown.clone();
    let server = tokio::spawn(crate::server::serve_with(
        listener,
        ServerState {
            metrics: metrics.clone(),
            ready: ready.clone(),
            reports: Some(ReportSource {
                store: config.store.clone(),
                watched: watched.clone(),
                refresh_seconds: REPORT_REFRESH_SECONDS,
            }),
            limits: crate::server::HttpLimits::from(&config.limits),
        },
        web,
        async move {
            stopped(&mut server_shutdown).await;
        },
    ));

    let mut runs: BTreeMap<String, RunHandle> = BTreeMap::new();
    for state in restored {
        runs.insert(state.cfg.name.clone(), spawn_run(&shared, state));
    }
    ready.set_watchers_running(true);
    let mut current = config;
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            asked = async {
                match reload.as_mut() {
                    Some(r) => r.requests.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                match (asked, reload.as_ref()) {
                    (Some(()), Some(r)) => {
                        apply_reload(&shared, &mut runs, &mut current, &r.load).await;
                        *watched.write().unwrap_or_else(PoisonError::into_inner) =
                            current.runs.iter().map(|r| r.name.clone()).collect();
                    }
                    // The sender is gone: no more reloads.
                    _ => reload = None,
                }
            }
        }
    }
    info!("shutting down");
    ready.set_watchers_running(false);
    for h in runs.values() {
        let _ = h.stop.send(true);
    }
    for (_, h) in runs {
        h.stop().await;
    }
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

/// One SIGHUP: loads the configuration and applies it (see
/// [`run_with_reload`]), or logs why not and keeps `current`.
async fn apply_reload(
    shared: &Arc<Shared>,
    runs: &mut BTreeMap<String, RunHandle>,
    current: &mut Config,
    load: &ReloadFn,
) {
    let file = current.file.display().to_string();
    info!(file = %file, "reloading the configuration");
    let failed = |error: &dyn std::fmt::Display| {
        error!(file = %file, error = %error, "configuration reload failed; the running configuration is kept");
        shared.metrics.config_reload_failed();
    };
    let load = load.clone();
    let new = match tokio::task::spawn_blocking(move || load()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return failed(&e),
        Err(e) => return failed(&e),
    };
    // Probe sets of new or changed runs are read before anything changes:
    // one that cannot be read fails the whole reload.
    let keep: BTreeMap<String, (RunConfig, Arc<ProbeRun>)> = {
        let probes = shared.probes.read().unwrap_or_else(PoisonError::into_inner);
        current
            .runs
            .iter()
            .filter_map(|r| {
                probes
                    .get(&r.name)
                    .map(|p| (r.name.clone(), (r.clone(), p.clone())))
            })
            .collect()
    };
    let probes = match load_probes(&new, &keep).await {
        Ok(p) => p,
        Err(e) => return failed(&e),
    };
    let restart_only = [
        ("listen", current.listen != new.listen),
        ("store", current.store != new.store),
        ("workers", current.workers != new.workers),
        ("web_config", current.web_config != new.web_config),
        ("log_format", current.log_format != new.log_format),
        ("shard", current.shard != new.shard),
        (
            "limits.max_concurrent_requests",
            current.limits.max_concurrent_requests != new.limits.max_concurrent_requests,
        ),
        (
            "limits.max_request_bytes",
            current.limits.max_request_bytes != new.limits.max_request_bytes,
        ),
    ];
    for (setting, _) in restart_only.iter().filter(|(_, changed)| *changed) {
        warn!(
            setting,
            "changed in the configuration file; takes effect at the next restart"
        );
    }
    *shared
        .limits
        .write()
        .unwrap_or_else(PoisonError::into_inner) = new.limits;
    let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    let names: Vec<String> = runs.keys().cloned().collect();
    for name in names {
        let next = new.runs.iter().find(|r| r.name == name);
        if next.is_some_and(|r| runs.get(&name).is_some_and(|h| h.cfg == *r)) {
            continue;
        }
        if let Some(h) = runs.remove(&name) {
            h.stop().await;
        }
        if next.is_none() {
            shared.metrics.remove_run(&name);
            removed.push(name);
        }
    }
    *shared
        .probes
        .write()
        .unwrap_or_else(PoisonError::into_inner) = probes;
    for run in &new.runs {
        if runs.contains_key(&run.name) {
            continue;
        }
        if current.runs.iter().any(|r| r.name == run.name) {
            changed.push(run.name.clone());
        } else {
            added.push(run.name.clone());
        }
        if let Some(h) = start_run(shared, run).await {
            runs.insert(run.name.clone(), h);
        }
    }
    let watched = runs.len();
    // Restart-only settings stay as they run, so the next reload compares
    // with what is in effect.
    let mut next = new;
    next.listen = current.listen;
    next.store = current.store.clone();
    next.workers = current.workers;
    next.web_config = current.web_config.clone();
    next.log_format = current.log_format;
    next.shard = current.shard;
    next.limits.max_concurrent_requests = current.limits.max_concurrent_requests;
    next.limits.max_request_bytes = current.limits.max_request_bytes;
    *current = next;
    shared.metrics.config_loaded(true, unix_now());
    info!(file = %file, added = ?added, removed = ?removed, changed = ?changed, watched, "configuration reloaded");
}

/// Reference layers (with centroids) of one checkpoint, by (task, layer).
pub(crate) type Layers = BTreeMap<(String, usize), LayerReport>;

/// A checkpoint's reference data held in memory.
#[derive(Clone)]
pub(crate) struct Reference {
    pub(crate) step: u64,
    pub(crate) layers: Arc<Layers>,
}

/// Each label's largest normalized min distance over the checkpoints folded
/// in so far, by (task, layer, label name): the `…_normalized_best` gauge.
#[derive(Clone, Debug, Default)]
pub(crate) struct Best(BTreeMap<(String, usize, String), f64>);

impl Best {
    /// Takes one checkpoint's normalized min distances into account.
    pub(crate) fn fold(&mut self, reference: &Reference) {
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

/// A `limit` failure when one task of a checkpoint has more items, labels
/// or layers than `limits` allow (checked before any layer is read).
fn check_source_limits(
    path: &Path,
    info: &crate::source::dump::TaskInfo,
    limits: &Limits,
) -> Result<(), Failure> {
    match limits.exceeded(info.n, info.label_names.len(), Some(info.layers.len())) {
        None => Ok(()),
        Some(e) => Err(Failure {
            kind: "limit",
            message: format!(
                "{}: task '{}' has {} {}, more than limits.{} = {}",
                path.display(),
                info.name,
                e.value,
                e.what,
                e.key,
                e.limit
            ),
        }),
    }
}

/// Failure kind of a store write that did not happen (disk full, ...): the
/// checkpoint is queued again.
const STORE: &str = "store";
/// Not a failure: the dump changed while it was read, nothing is stored.
const CHANGED: &str = "changed";

/// Queues the checkpoints whose store write failed again, unless their file
/// changed (the scanner reports the new version) or they are stored by now.
async fn requeue(shared: &Arc<Shared>, state: &mut RunState) {
    let retry = std::mem::take(&mut state.retry);
    let (sh, id) = (shared.clone(), state.id);
    let Some(still) = blocking(move || {
        let store = sh.store.lock().unwrap_or_else(|p| p.into_inner());
        retry
            .into_iter()
            .filter(|c| {
                // A dump must be the same version; a checkpoint folder,
                // whose files the scanner re-checks, must still exist.
                let same = std::fs::metadata(&c.path).is_ok_and(|m| {
                    m.is_dir()
                        || (m.len() == c.size && m.modified().unwrap_or(UNIX_EPOCH) == c.mtime)
                });
                same && matches!(
                    store.is_recorded(id, &c.path, c.size, mtime_ns(c.mtime)),
                    Ok(false)
                )
            })
            .collect::<Vec<_>>()
    })
    .await
    else {
        return;
    };
    for c in still {
        state.queue.entry((c.step, c.path.clone())).or_insert(c);
    }
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
    /// Best-so-far normalized min distances over every analysed checkpoint.
    best: Best,
    memory: BTreeMap<String, TaskMemory>,
    queue: BTreeMap<(u64, PathBuf), Candidate>,
    /// Checkpoints whose outcome could not be stored (disk full, ...):
    /// queued again after the next scan while their file is unchanged.
    retry: Vec<Candidate>,
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
        "shard": shared.shard.map(|s| s.to_string()),
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
    // Every stored checkpoint counts towards the best-so-far distances.
    let mut best = Best::default();
    if latest_row.is_some() {
        for row in store.checkpoints(id)? {
            if row.status == CheckpointStatus::Done {
                best.fold(&load(&row)?);
            }
        }
    }
    info!(run = %cfg.name, done, failed, baseline = ?baseline.as_ref().map(|b| b.step), latest = ?latest.as_ref().map(|l| l.step), "run restored");
    if let (Some(row), Some(l)) = (&latest_row, &latest) {
        let previous = store
            .previous_done(id, row.step)?
            .map(|r| load(&r))
            .transpose()?;
        let snap = snapshot(
            &cfg.name,
            cfg.export_label_pairs,
            row.step,
            row.mtime_ns,
            l,
            baseline.as_ref(),
            previous.as_ref(),
            &best,
        );
        shared.metrics.publish(snap);
    }
    Ok(RunState {
        cfg: cfg.clone(),
        id,
        baseline,
        latest,
        best,
        memory: BTreeMap::new(),
        queue: BTreeMap::new(),
        retry: Vec::new(),
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

/// The metrics snapshot of one checkpoint of `run` (with label-pair series
/// when `label_pairs`); `best` must already hold `now`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn snapshot(
    run: &str,
    label_pairs: bool,
    step: u64,
    mtime_ns: i64,
    now: &Reference,
    baseline: Option<&Reference>,
    previous: Option<&Reference>,
    best: &Best,
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
                min_distance_normalized_best: best.get(task, *layer, name).or(dn),
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
        let label_pairs = label_pairs.then(|| {
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
            clusters_baseline: baseline
                .and_then(|b| b.layers.get(&(task.clone(), *layer)))
                .map(|b| b.clusters as u64),
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
            classifier_accuracy: r
                .classifier_accuracy
                .iter()
                .flatten()
                .map(|(k, a)| (k.clone(), a.mean, a.std))
                .collect(),
            labels_increased: cmp_base.as_ref().map(|c| c.grew as u64),
            labels_decreased: cmp_base.as_ref().map(|c| c.shrank as u64),
            label_pairs,
        });
    }
    RunSnapshot {
        run: run.to_owned(),
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
    // A dump is read through one handle, kept here too: if it is not the
    // version the scan judged complete, or changes while it is read, the
    // result belongs to no one version and nothing is stored (the scanner
    // reports the new version when it is complete).
    let held = match cfg.layout {
        Layout::Dumps => std::fs::File::open(&candidate.path).ok(),
        Layout::HfCheckpoints => None,
    };
    let changed = |when: &str| {
        let f = held.as_ref()?;
        let now = f
            .metadata()
            .ok()
            .map(|m| (m.len(), m.modified().unwrap_or(UNIX_EPOCH)));
        (now != Some((candidate.size, candidate.mtime))).then(|| Failure {
            kind: CHANGED,
            message: format!("{}: {when}", candidate.path.display()),
        })
    };
    if let Some(f) = changed("changed between the scan and the analysis") {
        return Outcome {
            candidate,
            result: Err(f),
            memory,
            seconds: 0.0,
        };
    }
    let mut new_memory = BTreeMap::new();
    let probe = shared
        .probes
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&cfg.name)
        .cloned();
    let limits = *shared.limits.read().unwrap_or_else(PoisonError::into_inner);
    let threads = shared.pool.current_num_threads();
    let result = shared.pool.install(|| {
        analyse_checkpoint(
            cfg,
            &limits,
            probe.as_deref(),
            threads,
            shared.shard,
            &candidate,
            held.as_ref(),
            &memory,
            &mut new_memory,
            baseline.as_ref(),
            previous.as_ref(),
        )
    });
    let seconds = t.elapsed().as_secs_f64();
    if let Some(f) = changed("changed while it was read") {
        return Outcome {
            candidate,
            result: Err(f),
            memory: new_memory,
            seconds,
        };
    }
    let finished = unix_now();
    let mut store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
    let result = match result {
        Ok((reports, mut layers, baseline_cmp, previous_cmp)) => {
            // The store keeps centroids as f32: the reference kept in
            // memory holds the same values, so a restarted daemon (which
            // reads them back) exports what an uninterrupted one does.
            for l in layers.values_mut() {
                for v in l.centroids.iter_mut().flatten().flatten() {
                    *v = f64::from(*v as f32);
                }
            }
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
                    kind: STORE,
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

#[allow(clippy::too_many_arguments)] // one call site, every argument a different role
fn analyse_checkpoint(
    cfg: &RunConfig,
    limits: &Limits,
    probe: Option<&ProbeRun>,
    threads: usize,
    shard: Option<Shard>,
    candidate: &Candidate,
    held: Option<&std::fs::File>,
    memory: &BTreeMap<String, TaskMemory>,
    new_memory: &mut BTreeMap<String, TaskMemory>,
    baseline: Option<&Reference>,
    previous: Option<&Reference>,
) -> Result<Checked, Failure> {
    let from_dump = |e: DumpError| Failure {
        kind: dump_error_kind(&e),
        message: e.to_string(),
    };
    if candidate.size > limits.max_file_bytes {
        return Err(Failure {
            kind: "limit",
            message: format!(
                "{}: {} bytes, more than limits.max_file_bytes = {}",
                candidate.path.display(),
                candidate.size,
                limits.max_file_bytes
            ),
        });
    }
    // Either an opened dump's tasks, or activations the encoder computes
    // now: one forward pass over the probe sets serves every task.
    let dump;
    let extracted: Vec<ExtractedActivations>;
    let mut sources: Vec<&dyn Activations> = Vec::new();
    let dump_tasks: Vec<DumpTask<'_>>;
    match (cfg.layout, probe) {
        (Layout::Dumps, _) => {
            dump = match held.map(std::fs::File::try_clone) {
                Some(Ok(file)) => ActivationDump::open_file(&candidate.path, file),
                _ => ActivationDump::open(&candidate.path),
            }
            .map_err(from_dump)?;
            let names: Vec<String> = match &cfg.tasks {
                Some(t) => t.clone(),
                None => dump.tasks().iter().map(|t| t.name.clone()).collect(),
            };
            dump_tasks = names
                .iter()
                .map(|n| DumpTask::new(&dump, Some(n)))
                .collect::<Result<_, _>>()
                .map_err(from_dump)?;
            sources.extend(dump_tasks.iter().map(|t| t as &dyn Activations));
        }
        (Layout::HfCheckpoints, Some(probe)) => {
            let encoder = Encoder::load(&candidate.path).map_err(|e| encoder_failure(&e))?;
            let tokenizer = tokenizer_for(cfg, &candidate.path)?;
            let plan = probe.plan(cfg, &tokenizer, &encoder)?;
            let tasks = plan
                .run(&encoder, threads)
                .map_err(|e| extract_failure(&e))?;
            extracted = tasks
                .into_iter()
                .map(|t| ExtractedActivations::new(&candidate.path, Some(candidate.step), t))
                .collect();
            sources.extend(extracted.iter().map(|t| t as &dyn Activations));
        }
        (Layout::HfCheckpoints, None) => {
            return Err(Failure {
                kind: "config_mismatch",
                message: format!("run '{}': probe sets not loaded", cfg.name),
            });
        }
    }
    for source in &sources {
        check_source_limits(&candidate.path, source.info(), limits)?;
    }
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
    // Sharded: the layers of each task this replica owns (a task with none
    // is skipped). The pair list comes from the run's `layers` when given,
    // so a layer missing from the dump fails on the replica that owns it.
    let owned: Option<BTreeMap<String, Vec<usize>>> = shard.map(|shard| {
        let mut pairs = Vec::new();
        for source in &sources {
            let info = source.info();
            let task_layers = cfg.layers.clone().unwrap_or_else(|| info.layers.clone());
            pairs.extend(task_layers.into_iter().map(|l| (info.name.clone(), l)));
        }
        let mut by_task: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (task, layer) in shard.select(&pairs) {
            by_task.entry(task).or_default().push(layer);
        }
        by_task
    });
    let mut reports = Vec::new();
    let mut layers = Layers::new();
    let (mut bcmp, mut pcmp) = (BTreeMap::new(), BTreeMap::new());
    for source in sources {
        let task = source.info().name.clone();
        let task_layers = match &owned {
            None => cfg.layers.clone(),
            Some(owned) => match owned.get(&task) {
                Some(l) => Some(l.clone()),
                None => continue,
            },
        };
        let opts = AnalysisOptions {
            task: Some(task.clone()),
            layers: task_layers,
            measure,
            keep_centroids: true,
            classifier: match cfg.classifier {
                Classifier::None => None,
                Classifier::Mlp => Some(ClassifierParams {
                    configs: search_configs(cfg.classifier_configurations),
                    ..ClassifierParams::default()
                }),
            },
            subsplits: cfg.memorisation_splits.then(SubSplits::default),
        };
        let empty = TaskMemory::new();
        let mem = memory.get(&task).unwrap_or(&empty);
        let (report, next) =
            analyse_with(source, &opts, mem, partition, &|_| {}).map_err(|e| match e {
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
                    let t = Instant::now();
                    let r = sc.scan(&ren);
                    (sc, r, t.elapsed().as_secs_f64())
                })
                .await;
                let Some((sc, r, seconds)) = res else {
                    return Ok(());
                };
                tracing::trace!(run = %name, seconds, "scanned");
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
            if !state.retry.is_empty() {
                requeue(&shared, &mut state).await;
            }
        }
        // After a failed store write nothing else starts before it is
        // retried (a later checkpoint must not become the baseline).
        if job.is_none() && state.retry.is_empty() {
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
pub(crate) fn load_reference(
    store: &Store,
    run: &str,
    row: &CheckpointRow,
) -> Result<Reference, DaemonError> {
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
            ScanItem::Unreadable { path, reason } => {
                warn!(run = %name, path = %path.display(), reason = %reason, "unreadable checkpoint; retried at every scan");
                shared.metrics.checkpoint_failed(&name, "io");
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
            state.best.fold(&reference);
            let newer = state
                .latest
                .as_ref()
                .is_none_or(|l| l.step <= o.candidate.step);
            if newer {
                let previous = state.latest.replace(reference.clone());
                let previous = previous.filter(|p| p.step < reference.step);
                let snap = snapshot(
                    &state.cfg.name,
                    state.cfg.export_label_pairs,
                    o.candidate.step,
                    mtime_ns(o.candidate.mtime),
                    &reference,
                    state.baseline.as_ref(),
                    previous.as_ref(),
                    &state.best,
                );
                shared.metrics.publish(snap);
            } else {
                info!(run = %name, step = o.candidate.step, "late checkpoint stored in its place; latest values unchanged");
            }
            // Logged once its values are on /metrics, so that whoever
            // reads the log and then scrapes sees them.
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
        }
        Err(f) if f.kind == CHANGED => {
            info!(run = %name, path = %o.candidate.path.display(), reason = %f.message, "checkpoint changed while being read; nothing stored, its new version is analysed once complete");
        }
        Err(f) if f.kind == STORE => {
            warn!(run = %name, path = %o.candidate.path.display(), kind = f.kind, error = %f.message, "checkpoint failed");
            shared.metrics.checkpoint_failed(&name, f.kind);
            info!(run = %name, path = %o.candidate.path.display(), "checkpoint not stored; queued again after the next scan");
            state.retry.push(o.candidate);
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
