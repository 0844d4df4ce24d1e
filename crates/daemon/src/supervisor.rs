//! The daemon's wiring: for every configured run, watch → queue → analyse →
//! store → metrics, one direction, one event loop per run.
//!
//! Each run has an async loop (`select!` over shutdown, the running job,
//! filesystem hints and the scan timer). Scans and analyses run on blocking
//! threads; the numeric work runs on one bounded rayon pool shared by all
//! runs (`workers` threads), so the HTTP server on the async runtime keeps
//! answering. Checkpoints of one run are analysed one at a time, lowest
//! step first (a pending baseline before everything), each warm-started from
//! the previous analysis ([`analysis::analyse_dump_with`]). Every
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch as tokio_watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::{Baseline, Classifier, Config, Layout, Limits, Mode, QueuePolicy, RunConfig};
use crate::server::{ReadyFlags, ReportSource, ServerState};
use crate::shard::Shard;
use crate::watch::{self, Candidate, Hint, ScanItem, Scanner};
use analysis::{AnalysisOptions, Report, SubSplits, TaskMemory, analyse_with};
use analysis::{LayerStage, Stage, analyse_stage};
use geometry::classifier::{ClassifierParams, search_configs};
use geometry::measures::{LayerComparison, LayerReport, MeasureParams, Partition, compare};
use metrics::Metrics;
use source::Activations;
use source::DumpTask;
use source::dump::{ActivationDump, DumpError};
use source::encoder::{Encoder, EncoderError};
use source::extract::{ExtractError, ExtractedActivations, ExtractionPlan};
use source::probeset::tokens::{ProbeTokenizer, TokenizeError, TokenizeOptions};
use source::probeset::{ProbeSet, ProbeSetError};
use store::{
    CheckpointRow, CheckpointStatus, LayerRecord, NewCheckpoint, RunId, StageRecord, Store,
};
use view::record::has_test_hulls;
use view::{Layers, Reference, RunView, load_reference};

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The store could not be opened or written.
    #[error(transparent)]
    Store(#[from] store::StoreError),
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
    /// The late stages' own threads (as many as `pool`'s): they wait at the
    /// gate while a core stage runs, so core stages always have the cores.
    late_pool: rayon::ThreadPool,
    gate: Gate,
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
    let late_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.workers)
        .thread_name(|i| format!("probewatch-late-{i}"))
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
        late_pool,
        gate: Gate::default(),
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

/// One job's result.
struct Outcome {
    candidate: Candidate,
    result: Result<Analysed, Failure>,
    memory: BTreeMap<String, TaskMemory>,
    seconds: f64,
}

struct Analysed {
    /// The core reports (late-stage fields empty).
    layers: Arc<Layers>,
    /// The activations, for the late stages.
    source: Option<Arc<LateSource>>,
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
    info: &source::dump::TaskInfo,
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
    /// What the run publishes: baseline, newest checkpoint, best-so-far
    /// distances, newest late-stage values.
    view: RunView,
    memory: BTreeMap<String, TaskMemory>,
    queue: BTreeMap<(u64, PathBuf), Candidate>,
    /// Checkpoints whose outcome could not be stored (disk full, ...):
    /// queued again after the next scan while their file is unchanged.
    retry: Vec<Candidate>,
    /// Warm starts of the late stages (threaded from late job to late job).
    late_memory: BTreeMap<String, TaskMemory>,
    /// The baseline's late stages, waiting (run before anything else).
    late_baseline: Option<LateInput>,
    /// The newest checkpoint whose late stages wait (an older one waiting
    /// is skipped when a newer one arrives).
    late_pending: Option<LateInput>,
}

impl RunState {
    /// Checkpoints whose late stages wait (not counting a running job).
    fn late_waiting(&self) -> i64 {
        i64::from(self.late_baseline.is_some()) + i64::from(self.late_pending.is_some())
    }

    fn is_baseline_candidate(&self, c: &Candidate) -> bool {
        match &self.cfg.baseline {
            Baseline::First => self.view.baseline().is_none(),
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
                if self.view.baseline().is_none() && matches!(self.cfg.baseline, Baseline::First) {
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
    let mut view = RunView::new(&cfg.name, cfg.export_label_pairs);
    if let Some(row) = &baseline_row {
        view.set_baseline(load(row)?);
    }
    let (done, failed) = store.counts(id)?;
    // Every stored checkpoint, in step order, as the daemon took them: the
    // best-so-far distances, the late view, the newest and the one before.
    let mut latest_row = None;
    for row in store.checkpoints(id)? {
        if row.status == CheckpointStatus::Done {
            view.take_checkpoint(load(&row)?, row.mtime_ns);
            if view.latest().is_some_and(|l| l.step == row.step) {
                latest_row = Some(row);
            }
        }
    }
    let baseline = view.baseline().cloned();
    let latest = view.latest().cloned();
    // Late stages a stop cut short (or that never started) are resumed:
    // the baseline's, and the newest checkpoint's.
    let pending = |row: &CheckpointRow, r: &Reference, is_baseline: bool| -> Option<LateInput> {
        if cfg.late_stage_budget.is_zero() {
            return None;
        }
        let stages = store.stage_runs(row.id).ok()?;
        let finished = |st: Stage| {
            stages
                .iter()
                .any(|(s, o)| s == st.as_str() && o != "deferred")
        };
        let open = Stage::LATE.into_iter().any(|st| {
            stage_applies(cfg, st)
                && !finished(st)
                && r.layers.values().any(|l| needs(st, l))
                && (!stages.is_empty() || r.layers.values().any(|l| !l.clustered))
        });
        open.then(|| LateInput {
            candidate: Candidate {
                step: row.step,
                path: row.path.clone(),
                size: row.size,
                mtime: UNIX_EPOCH + Duration::from_nanos(row.mtime_ns.max(0) as u64),
            },
            checkpoint_id: row.id,
            source: None,
            reports: r.layers.clone(),
            is_baseline,
            run: id,
        })
    };
    let late_baseline = match (&baseline, store.baseline(id)?) {
        (Some(b), Some(row)) => pending(&row, b, true),
        _ => None,
    };
    let late_pending = match (&latest, &latest_row) {
        (Some(l), Some(row))
            if late_baseline
                .as_ref()
                .is_none_or(|b| b.checkpoint_id != row.id) =>
        {
            pending(row, l, false)
        }
        _ => None,
    };
    for p in [&late_baseline, &late_pending].into_iter().flatten() {
        info!(run = %cfg.name, step = p.candidate.step, "late stages not finished before the last stop; resuming them");
    }
    info!(run = %cfg.name, done, failed, baseline = ?baseline.as_ref().map(|b| b.step), latest = ?latest.as_ref().map(|l| l.step), "run restored");
    // Before the restored values are published: a scrape never sees them
    // with the resumed late stages unaccounted for.
    shared.metrics.set_late_pending(
        &cfg.name,
        i64::from(late_baseline.is_some()) + i64::from(late_pending.is_some()),
    );
    if let Some(snap) = view.snapshot() {
        shared.metrics.publish(snap);
    }
    Ok(RunState {
        cfg: cfg.clone(),
        id,
        view,
        memory: BTreeMap::new(),
        queue: BTreeMap::new(),
        retry: Vec::new(),
        late_memory: BTreeMap::new(),
        late_baseline,
        late_pending,
    })
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
    let core = Stage::Core.as_str();
    shared.metrics.stage_started(
        &cfg.name,
        core,
        candidate.step,
        cfg.layers.as_ref().map_or(0, Vec::len),
        started,
    );
    info!(run = %cfg.name, step = candidate.step, stage = core, "stage started");
    let gate = shared.gate.core_running();
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
    drop(gate);
    shared.metrics.stage_ended(&cfg.name, core);
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
        Ok(((reports, mut layers, baseline_cmp, previous_cmp), source)) => {
            let source = Some(Arc::new(source));
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
                records.push(view::record::encode(
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
                    source,
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
) -> Result<(Checked, LateSource), Failure> {
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
    let late_source = load_source(cfg, probe, threads, candidate, held)?;
    let checked = late_source.with(|sources| {
        core_of_sources(
            cfg, limits, shard, candidate, sources, memory, new_memory, baseline, previous,
        )
    })?;
    Ok((checked, late_source))
}

/// Reads a checkpoint's activations: an opened dump (its tasks, layers read
/// on demand), or the encoder run now over the run's probe sets (one forward
/// pass serves every task).
fn load_source(
    cfg: &RunConfig,
    probe: Option<&ProbeRun>,
    threads: usize,
    candidate: &Candidate,
    held: Option<&std::fs::File>,
) -> Result<LateSource, Failure> {
    match (cfg.layout, probe) {
        (Layout::Dumps, _) => {
            let opened = match held {
                Some(f) => f.try_clone(),
                None => std::fs::File::open(&candidate.path),
            };
            let file = opened.map_err(|e| Failure {
                kind: "io",
                message: format!("{}: opening the file: {e}", candidate.path.display()),
            })?;
            // A second handle to the same open file: its size and mtime tell
            // whether the bytes the late stages read are still this version.
            let watch = file.try_clone().map_err(|e| Failure {
                kind: "io",
                message: format!("{}: duplicating the handle: {e}", candidate.path.display()),
            })?;
            let dump = ActivationDump::open_file(&candidate.path, file).map_err(from_dump)?;
            let tasks: Vec<String> = match &cfg.tasks {
                Some(t) => t.clone(),
                None => dump.tasks().iter().map(|t| t.name.clone()).collect(),
            };
            Ok(LateSource::Dump {
                dump: Box::new(dump),
                tasks,
                watch,
                version: (candidate.size, candidate.mtime),
            })
        }
        (Layout::HfCheckpoints, Some(probe)) => {
            let encoder = Encoder::load(&candidate.path).map_err(|e| encoder_failure(&e))?;
            let tokenizer = tokenizer_for(cfg, &candidate.path)?;
            let plan = probe.plan(cfg, &tokenizer, &encoder)?;
            let tasks = plan
                .run(&encoder, threads)
                .map_err(|e| extract_failure(&e))?;
            Ok(LateSource::Extracted(
                tasks
                    .into_iter()
                    .map(|t| ExtractedActivations::new(&candidate.path, Some(candidate.step), t))
                    .collect(),
            ))
        }
        (Layout::HfCheckpoints, None) => Err(Failure {
            kind: "config_mismatch",
            message: format!("run '{}': probe sets not loaded", cfg.name),
        }),
    }
}

fn from_dump(e: DumpError) -> Failure {
    Failure {
        kind: dump_error_kind(&e),
        message: e.to_string(),
    }
}

/// A checkpoint's activations, kept from its core stage for its late ones
/// (the dump stays open, so a checkpoint deleted meanwhile is still read;
/// extracted activations stay in memory).
enum LateSource {
    Dump {
        dump: Box<ActivationDump>,
        tasks: Vec<String>,
        /// Another handle to the file `dump` reads.
        watch: std::fs::File,
        /// Size and mtime of the version the scan judged complete.
        version: (u64, SystemTime),
    },
    Extracted(Vec<ExtractedActivations>),
}

impl LateSource {
    /// Whether the bytes read may no longer be the analysed version: the
    /// dump was overwritten in place or truncated since the scan (a rename
    /// or a delete leaves the open file as it was). Extracted activations
    /// are in memory and never change.
    fn changed(&self) -> bool {
        match self {
            LateSource::Dump { watch, version, .. } => {
                let now = watch
                    .metadata()
                    .ok()
                    .map(|m| (m.len(), m.modified().unwrap_or(UNIX_EPOCH)));
                now != Some(*version)
            }
            LateSource::Extracted(_) => false,
        }
    }

    /// Calls `f` with every task's activations.
    fn with<T>(
        &self,
        f: impl FnOnce(&[&dyn Activations]) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        match self {
            LateSource::Dump { dump, tasks, .. } => {
                let ts: Vec<DumpTask<'_>> = tasks
                    .iter()
                    .map(|n| DumpTask::new(dump.as_ref(), Some(n)))
                    .collect::<Result<_, _>>()
                    .map_err(from_dump)?;
                let refs: Vec<&dyn Activations> =
                    ts.iter().map(|t| t as &dyn Activations).collect();
                f(&refs)
            }
            LateSource::Extracted(v) => {
                let refs: Vec<&dyn Activations> = v.iter().map(|t| t as &dyn Activations).collect();
                f(&refs)
            }
        }
    }
}

/// The analysis options of one task of `cfg` (`core_only` for the core
/// stage).
fn analysis_options(
    cfg: &RunConfig,
    task: &str,
    layers: Option<Vec<usize>>,
    core_only: bool,
) -> AnalysisOptions {
    AnalysisOptions {
        task: Some(task.to_owned()),
        layers,
        measure: MeasureParams {
            label_distance: cfg.label_distance,
            drop_clusters_up_to: cfg.drop_clusters_up_to,
            train_test_similarity: cfg.train_test_similarity,
            ..MeasureParams::default()
        },
        keep_centroids: true,
        classifier: match cfg.classifier {
            Classifier::None => None,
            Classifier::Mlp => Some(ClassifierParams {
                configs: search_configs(cfg.classifier_configurations),
                ..ClassifierParams::default()
            }),
        },
        subsplits: cfg.memorisation_splits.then(SubSplits::default),
        core_only,
    }
}

fn partition_of(cfg: &RunConfig) -> Partition {
    match cfg.mode {
        Mode::Exact => Partition::Recluster,
        Mode::FrozenPartition => Partition::Frozen,
    }
}

/// The core stage of every task of one checkpoint, compared with the
/// baseline and the previous checkpoint.
#[allow(clippy::too_many_arguments)] // one call site, every argument a different role
fn core_of_sources(
    cfg: &RunConfig,
    limits: &Limits,
    shard: Option<Shard>,
    candidate: &Candidate,
    sources: &[&dyn Activations],
    memory: &BTreeMap<String, TaskMemory>,
    new_memory: &mut BTreeMap<String, TaskMemory>,
    baseline: Option<&Reference>,
    previous: Option<&Reference>,
) -> Result<Checked, Failure> {
    for source in sources {
        check_source_limits(&candidate.path, source.info(), limits)?;
    }
    let partition = partition_of(cfg);
    // Sharded: the layers of each task this replica owns (a task with none
    // is skipped). The pair list comes from the run's `layers` when given,
    // so a layer missing from the dump fails on the replica that owns it.
    let owned: Option<BTreeMap<String, Vec<usize>>> = shard.map(|shard| {
        let mut pairs = Vec::new();
        for source in sources {
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
    for &source in sources {
        let task = source.info().name.clone();
        let task_layers = match &owned {
            None => cfg.layers.clone(),
            Some(owned) => match owned.get(&task) {
                Some(l) => Some(l.clone()),
                None => continue,
            },
        };
        let opts = analysis_options(cfg, &task, task_layers, true);
        let empty = TaskMemory::new();
        let mem = memory.get(&task).unwrap_or(&empty);
        let (report, next) =
            analyse_with(source, &opts, mem, partition, &|_| {}).map_err(|e| match e {
                analysis::AnalysisError::Dump(d) => from_dump(d),
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

/// Pauses the late stages whenever a core stage runs (process-wide: the
/// cores are shared), and tells how long core stages have run in all, so
/// the late stages' budget counts their own working time only.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    running: usize,
    busy_since: Option<Instant>,
    busy: Duration,
}

/// Holds the gate closed while a core stage runs.
struct CoreRunning<'a>(&'a Gate);

impl Drop for CoreRunning<'_> {
    fn drop(&mut self) {
        let mut g = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        g.running = g.running.saturating_sub(1);
        if g.running == 0 {
            if let Some(t) = g.busy_since.take() {
                g.busy += t.elapsed();
            }
        }
        self.0.changed.notify_all();
    }
}

impl Gate {
    fn core_running(&self) -> CoreRunning<'_> {
        let mut g = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if g.running == 0 {
            g.busy_since = Some(Instant::now());
        }
        g.running += 1;
        CoreRunning(self)
    }

    /// Total time some core stage was running.
    fn busy(&self) -> Duration {
        let g = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        g.busy + g.busy_since.map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// Blocks while a core stage runs (or until `stop`).
    fn wait_idle(&self, stop: &AtomicBool) {
        let mut g = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while g.running > 0 && !stop.load(Ordering::Relaxed) {
            g = self
                .changed
                .wait_timeout(g, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// A checkpoint whose late stages are to run.
struct LateInput {
    candidate: Candidate,
    checkpoint_id: i64,
    /// The activations kept from the core stage; `None` (after a restart):
    /// read again.
    source: Option<Arc<LateSource>>,
    /// Its layer reports so far.
    reports: Arc<Layers>,
    is_baseline: bool,
    run: RunId,
}

impl LateInput {
    /// Size and mtime (ns) of the version analysed, as stored.
    fn version(&self) -> (u64, i64) {
        (self.candidate.size, mtime_ns(self.candidate.mtime))
    }
}

/// A running late job and its stop flag.
type LateJob = (JoinHandle<BTreeMap<String, TaskMemory>>, Arc<AtomicBool>);

/// What a late job reports to its run loop after each stage.
struct LateEvent {
    step: u64,
    layers: Vec<((String, usize), LayerReport)>,
}

/// Whether `stage` applies to this run at all.
fn stage_applies(cfg: &RunConfig, stage: Stage) -> bool {
    match stage {
        Stage::Core | Stage::Clusters => true,
        Stage::TestHulls | Stage::TestClusters => cfg.train_test_similarity,
        Stage::Classifier => cfg.classifier != Classifier::None,
    }
}

/// Whether a layer report still lacks `stage`.
fn needs(stage: Stage, r: &LayerReport) -> bool {
    match stage {
        Stage::Core => false,
        Stage::TestHulls => !has_test_hulls(r),
        Stage::Clusters => !r.clustered,
        Stage::TestClusters => r.test_clusters.is_none(),
        Stage::Classifier => r.classifier_accuracy.is_none(),
    }
}

/// Records `outcome` for every late stage of `input` that applies and is
/// not done (a checkpoint skipped for a newer one).
fn record_not_run(
    shared: &Shared,
    cfg: &RunConfig,
    input: &LateInput,
    outcome: &str,
    detail: &str,
) {
    let mut store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
    for stage in Stage::LATE {
        if !stage_applies(cfg, stage) || !input.reports.values().any(|r| needs(stage, r)) {
            continue;
        }
        shared
            .metrics
            .stage_outcome(&cfg.name, stage.as_str(), outcome, None);
        info!(run = %cfg.name, step = input.candidate.step, stage = stage.as_str(), outcome, seconds = 0.0, layers_done = 0, reason = detail, "stage finished");
        let rec = StageRecord {
            stage: stage.as_str(),
            outcome,
            seconds: 0.0,
            layers_done: 0,
            layers: input.reports.len(),
            finished_unix: unix_now(),
            detail: Some(detail),
            version: input.version(),
        };
        match store.record_stage(input.checkpoint_id, &[], &rec) {
            Ok(true) => {}
            Ok(false) => {
                debug!(run = %cfg.name, step = input.candidate.step, "stage outcome not recorded: the stored row is a newer version");
            }
            Err(e) => warn!(run = %cfg.name, error = %e, "cannot record a stage outcome"),
        }
    }
}

/// Runs the late stages of one checkpoint in order (blocking; numeric work
/// on the late pool, paused whenever a core stage runs). Each stage's
/// finished layers are stored (one transaction with the stage's outcome)
/// and then sent to the run loop; a stage the budget or `stop` cuts short
/// keeps the layers it finished (`abandoned` or `deferred`). Returns the
/// late memory for the next checkpoint.
#[allow(clippy::too_many_arguments)] // one call site
fn late_job_fn(
    shared: &Shared,
    cfg: &RunConfig,
    input: LateInput,
    memory: BTreeMap<String, TaskMemory>,
    baseline: Option<Reference>,
    stop: &AtomicBool,
    tx: &mpsc::UnboundedSender<LateEvent>,
) -> BTreeMap<String, TaskMemory> {
    let run = cfg.name.as_str();
    let step = input.candidate.step;
    let started = Instant::now();
    let busy0 = shared.gate.busy();
    let active = || {
        started
            .elapsed()
            .saturating_sub(shared.gate.busy().saturating_sub(busy0))
    };
    let budget = cfg.late_stage_budget;
    let keep_going = || {
        shared.gate.wait_idle(stop);
        !stop.load(Ordering::Relaxed) && active() < budget
    };
    let previous = {
        let store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
        store
            .previous_done(input.run, step)
            .ok()
            .flatten()
            .and_then(|row| load_reference(&store, run, &row).ok())
    };
    let threads = shared.late_pool.current_num_threads();
    let loaded;
    let source: &LateSource = match &input.source {
        Some(s) => s,
        None => {
            info!(run, step, path = %input.candidate.path.display(), "reading the checkpoint again for its late stages");
            let probe = shared
                .probes
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&cfg.name)
                .cloned();
            shared.gate.wait_idle(stop);
            match shared
                .late_pool
                .install(|| load_source(cfg, probe.as_deref(), threads, &input.candidate, None))
            {
                Ok(s) => {
                    loaded = s;
                    &loaded
                }
                Err(f) => {
                    warn!(run, step, path = %input.candidate.path.display(), kind = f.kind, error = %f.message, "late stages cannot read the checkpoint");
                    record_not_run(shared, cfg, &input, "failed", &f.message);
                    return memory;
                }
            }
        }
    };
    let changed_note = "the checkpoint changed while being read (overwritten in place or truncated); its new version is analysed once complete";
    if source.changed() {
        info!(run, step, path = %input.candidate.path.display(), "checkpoint changed while being read; late stages not run, its new version is analysed once complete");
        record_not_run(shared, cfg, &input, "skipped", changed_note);
        return memory;
    }
    let partition = partition_of(cfg);
    let mut reports: Layers = (*input.reports).clone();
    let mut next: BTreeMap<String, TaskMemory> = BTreeMap::new();
    for stage in Stage::LATE {
        if !stage_applies(cfg, stage) {
            continue;
        }
        let wanted: Vec<(String, usize)> = reports
            .iter()
            .filter(|(_, r)| needs(stage, r))
            .map(|(k, _)| k.clone())
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let name = stage.as_str();
        let stage_busy0 = shared.gate.busy();
        let t0 = Instant::now();
        let working = || {
            t0.elapsed()
                .saturating_sub(shared.gate.busy().saturating_sub(stage_busy0))
        };
        let mut done: Vec<((String, usize), LayerReport)> = Vec::new();
        let mut interrupted = 0usize;
        let mut failure: Option<String> = None;
        if stop.load(Ordering::Relaxed) || active() >= budget {
            interrupted = wanted.len();
        } else {
            shared
                .metrics
                .stage_started(run, name, step, wanted.len(), unix_now());
            info!(
                run,
                step,
                stage = name,
                layers = wanted.len(),
                "stage started"
            );
            let on_layer = |layer: usize, o: &LayerStage| {
                shared.metrics.stage_layer_done(run, name);
                let outcome = match o {
                    LayerStage::Done(_) => "done",
                    LayerStage::Interrupted => "interrupted",
                    LayerStage::NotApplicable => "not_applicable",
                };
                info!(
                    run,
                    step,
                    stage = name,
                    layer,
                    outcome,
                    working_seconds = format!("{:.3}", working().as_secs_f64()),
                    "layer finished"
                );
            };
            let res = source.with(|sources| {
                let mut out = Vec::new();
                for &src in sources {
                    let task = src.info().name.clone();
                    let task_reports: BTreeMap<usize, LayerReport> = wanted
                        .iter()
                        .filter(|(t, _)| *t == task)
                        .map(|(_, l)| (*l, reports[&(task.clone(), *l)].clone()))
                        .collect();
                    if task_reports.is_empty() {
                        continue;
                    }
                    let opts = analysis_options(
                        cfg,
                        &task,
                        Some(task_reports.keys().copied().collect()),
                        false,
                    );
                    let empty = TaskMemory::new();
                    let prev_mem = memory.get(&task).unwrap_or(&empty);
                    let carried = next.entry(task.clone()).or_default();
                    let r = shared.late_pool.install(|| {
                        analyse_stage(
                            src,
                            &opts,
                            stage,
                            &task_reports,
                            prev_mem,
                            carried,
                            partition,
                            &keep_going,
                            &on_layer,
                        )
                    });
                    match r {
                        Ok(m) => out.extend(m.into_iter().map(|(l, o)| ((task.clone(), l), o))),
                        Err(e) => {
                            return Err(Failure {
                                kind: "config_mismatch",
                                message: format!("{}: {e}", input.candidate.path.display()),
                            });
                        }
                    }
                }
                Ok(out)
            });
            match res {
                Ok(results) => {
                    for (key, o) in results {
                        match o {
                            LayerStage::Done(mut r) => {
                                r.label_names = reports[&key].label_names.clone();
                                r.layer = key.1;
                                done.push((key, *r));
                            }
                            LayerStage::Interrupted => interrupted += 1,
                            LayerStage::NotApplicable => {}
                        }
                    }
                }
                Err(f) => failure = Some(f.message),
            }
        }
        let seconds = working().as_secs_f64();
        // The bytes read must be the version the core stage stored: a dump
        // overwritten in place or truncated meanwhile gives values that
        // belong to no one version, and nothing of them is stored.
        let changed = source.changed();
        if changed {
            info!(run, step, stage = name, path = %input.candidate.path.display(), "checkpoint changed while being read; stage results discarded, its new version is analysed once complete");
            done.clear();
            interrupted = 0;
            failure = None;
        }
        let outcome = if changed {
            "skipped"
        } else if failure.is_some() {
            "failed"
        } else if interrupted == 0 {
            "done"
        } else if stop.load(Ordering::Relaxed) {
            "deferred"
        } else {
            "abandoned"
        };
        // Nothing applied (e.g. no test split): recorded as done with no
        // layer, so a restart does not look for it again.
        let not_applicable = done.is_empty() && interrupted == 0 && failure.is_none() && !changed;
        // Store first, then tell the loop (which publishes).
        let records: Vec<LayerRecord> = done
            .iter()
            .map(|((task, _), l)| {
                let key = (task.clone(), l.layer);
                let b = baseline
                    .as_ref()
                    .filter(|b| b.step != step)
                    .and_then(|b| b.layers.get(&key))
                    .and_then(|b| compare(b, l).ok());
                let p = previous
                    .as_ref()
                    .and_then(|p| p.layers.get(&key))
                    .and_then(|p| compare(p, l).ok());
                view::record::encode(task, l, b.as_ref(), p.as_ref())
            })
            .collect();
        let detail = match (&failure, outcome) {
            _ if changed => Some(changed_note.to_owned()),
            (Some(m), _) => Some(m.clone()),
            (None, "abandoned") => Some(format!(
                "late-stage budget of {} s ran out",
                budget.as_secs_f64()
            )),
            (None, "deferred") => {
                Some("stopped (shutdown or reload); resumed at the next start".to_owned())
            }
            _ if not_applicable => Some("not applicable to these layers".to_owned()),
            _ => None,
        };
        let rec = StageRecord {
            stage: name,
            outcome,
            seconds,
            layers_done: done.len(),
            layers: wanted.len(),
            finished_unix: unix_now(),
            detail: detail.as_deref(),
            version: input.version(),
        };
        let stored = {
            let mut store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
            store.record_stage(input.checkpoint_id, &records, &rec)
        };
        shared.metrics.stage_ended(run, name);
        if not_applicable {
            if let Err(e) = stored {
                warn!(run, step, stage = name, error = %e, "cannot record a stage outcome");
            }
            continue;
        }
        shared
            .metrics
            .stage_outcome(run, name, outcome, Some(seconds));
        // The row is gone or a newer version of the file (row ids can be
        // reused): these results belong to no stored checkpoint.
        let replaced = matches!(stored, Ok(false));
        match stored {
            Ok(true) => {
                for (key, r) in &done {
                    reports.insert(key.clone(), r.clone());
                }
                let _ = tx.send(LateEvent { step, layers: done });
            }
            Ok(false) => {
                info!(run, step, stage = name, path = %input.candidate.path.display(), "stage results not stored: the checkpoint's stored row is now a newer version of the file");
            }
            Err(e) => {
                warn!(run, step, stage = name, error = %e, "stage results not stored; not published");
            }
        }
        if outcome == "done" {
            info!(
                run,
                step,
                stage = name,
                outcome,
                seconds = format!("{seconds:.3}"),
                layers_done = rec.layers_done,
                layers = rec.layers,
                "stage finished"
            );
        } else {
            warn!(
                run,
                step,
                stage = name,
                outcome,
                seconds = format!("{seconds:.3}"),
                layers_done = rec.layers_done,
                layers = rec.layers,
                reason = detail.as_deref().unwrap_or(""),
                "stage finished"
            );
        }
        if changed || replaced {
            // Later stages would read the same changed file or write to a
            // row that is not theirs; the warm memory of this job may come
            // from changed bytes and is dropped.
            return memory;
        }
    }
    let mut memory = memory;
    for (task, layers) in next {
        let m = memory.entry(task).or_default();
        for (l, lm) in layers {
            m.insert(l, lm);
        }
    }
    memory
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
    let (ltx, mut lrx) = mpsc::unbounded_channel::<LateEvent>();
    let mut late_job: Option<LateJob> = None;
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
                let previous = match state.view.latest() {
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
                    state.view.baseline().cloned()
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
        // The late stages: the baseline's first, else the newest waiting
        // checkpoint's; one job per run at a time.
        if late_job.is_none() {
            let next = state
                .late_baseline
                .take()
                .or_else(|| state.late_pending.take());
            if let Some(input) = next {
                let stop = Arc::new(AtomicBool::new(false));
                let (sh, c2, tx, st) = (shared.clone(), cfg.clone(), ltx.clone(), stop.clone());
                let memory = std::mem::take(&mut state.late_memory);
                let baseline = if input.is_baseline {
                    None
                } else {
                    state.view.baseline().cloned()
                };
                debug!(run = %name, step = input.candidate.step, "late stages starting");
                late_job = Some((
                    tokio::task::spawn_blocking(move || {
                        late_job_fn(&sh, &c2, input, memory, baseline, &st, &tx)
                    }),
                    stop,
                ));
            }
        }
        shared
            .metrics
            .set_queue_depth(&name, state.queue.len() as i64);
        shared
            .metrics
            .set_late_pending(&name, state.late_waiting() + i64::from(late_job.is_some()));
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => {
                // Late stages stop at their next step (what they finished
                // is stored; the rest is deferred to the next start).
                if let Some((_, stop)) = &late_job {
                    stop.store(true, Ordering::Relaxed);
                }
                if let Some(j) = job.take() {
                    info!(run = %name, "finishing the checkpoint being analysed");
                    match tokio::time::timeout(std::time::Duration::from_secs(30), j).await {
                        Ok(Ok(o)) => finish(&shared, &mut state, o),
                        _ => warn!(run = %name, "abandoned the checkpoint being analysed (nothing of it was stored)"),
                    }
                }
                if let Some((j, _)) = late_job.take() {
                    if tokio::time::timeout(std::time::Duration::from_secs(30), j).await.is_err() {
                        warn!(run = %name, "late stages did not stop within 30 s; what they finished is stored");
                    }
                }
                return Ok(());
            }
            ev = lrx.recv() => {
                if let Some(ev) = ev {
                    apply_late(&shared, &mut state, ev);
                }
            }
            m = async { (&mut late_job.as_mut().expect("guarded").0).await }, if late_job.is_some() => {
                late_job = None;
                // Events sent before the job ended are applied first.
                while let Ok(ev) = lrx.try_recv() {
                    apply_late(&shared, &mut state, ev);
                }
                match m {
                    Ok(m) => state.late_memory = m,
                    Err(e) => error!(run = %name, error = %e, "late stages panicked"),
                }
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
                state.view.set_baseline(reference.clone());
            }
            if !state.cfg.late_stage_budget.is_zero() {
                let input = LateInput {
                    candidate: o.candidate.clone(),
                    checkpoint_id: a.checkpoint_id,
                    source: a.source.clone(),
                    reports: a.layers.clone(),
                    is_baseline: a.is_baseline,
                    run: state.id,
                };
                if a.is_baseline {
                    state.late_baseline = Some(input);
                } else if state
                    .late_pending
                    .as_ref()
                    .is_none_or(|p| p.candidate.step <= input.candidate.step)
                {
                    if let Some(old) = state.late_pending.replace(input) {
                        skip_late(shared, &state.cfg, old);
                    }
                } else {
                    skip_late(shared, &state.cfg, input);
                }
            }
            if !state.cfg.late_stage_budget.is_zero() {
                // Counted before the core values are published, so a
                // scrape never sees them with nothing pending (a job may
                // also be running: the loop sets the exact count next).
                shared
                    .metrics
                    .set_late_pending(&name, state.late_waiting() + 1);
            }
            if state
                .view
                .take_checkpoint(reference, mtime_ns(o.candidate.mtime))
            {
                if let Some(snap) = state.view.snapshot() {
                    shared.metrics.publish(snap);
                }
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
            shared
                .metrics
                .stage_outcome(&name, Stage::Core.as_str(), "done", Some(o.seconds));
            info!(run = %name, step = o.candidate.step, stage = Stage::Core.as_str(), outcome = "done", seconds = format!("{:.3}", o.seconds), layers_done = a.layers.len(), layers = a.layers.len(), "stage finished");
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

/// Records an older checkpoint's late stages as skipped (a newer one waits),
/// on a blocking thread.
fn skip_late(shared: &Shared, cfg: &RunConfig, old: LateInput) {
    info!(run = %cfg.name, step = old.candidate.step, "late stages skipped: a newer checkpoint waits");
    record_not_run(
        shared,
        cfg,
        &old,
        "skipped",
        "a newer checkpoint was waiting",
    );
}

/// Takes a late job's finished layers: the late view, the baseline and
/// latest references, best-so-far values, and publishes the newest
/// checkpoint again with them.
fn apply_late(shared: &Shared, state: &mut RunState, ev: LateEvent) {
    if ev.layers.is_empty() {
        return;
    }
    state
        .view
        .take_late(ev.step, ev.layers.into_iter().collect());
    if let Some(snap) = state.view.snapshot() {
        shared.metrics.publish(snap);
    }
}

/// Resolves when the shutdown flag is (or turns) true, or its sender is gone.
async fn stopped(rx: &mut tokio_watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
