//! The daemon's wiring: for every configured run, watch → queue → analyse →
//! store → metrics, one direction, one event loop per run.
//!
//! Each run has an async loop (`select!` over shutdown, the running jobs,
//! filesystem hints and the scan timer). Scans and analyses run on blocking
//! threads; the numeric work runs on one bounded rayon pool shared by all
//! runs (`workers` threads), so the HTTP server on the async runtime keeps
//! answering. Checkpoints of one run are analysed one at a time, lowest
//! step first (a pending baseline before everything), each warm-started from
//! the previous analysis. The core stage is published first; the late
//! stages run on a second pool that waits at a gate while any core stage
//! runs. Every outcome, success or failure, is written to the store in one
//! transaction before metrics change; at start the latest stored values are
//! published again and stored checkpoints are never analysed twice. A
//! checkpoint over a `[limits]` cap fails with kind `limit` before any layer
//! is read.
//!
//! [`run_with_reload`] also re-reads the configuration on request (SIGHUP in
//! `main.rs`): all or nothing, it starts, stops or restarts run loops; a
//! file that does not load changes nothing.
//!
//! The parts, each in its module: `run_loop` (the per-run event loop and
//! the run's state: the only code that changes it), `queue` (which waiting
//! checkpoint goes next), `core_job` (one checkpoint's core stage),
//! `late_jobs` (the late stages and which checkpoint's run next), `gate`
//! (core stages pause late ones), `activations` (reading a checkpoint),
//! `probes` (the probe sets of `hf-checkpoints` runs), `options` (the
//! configuration as analysis options), `publish` (outcomes into store rows,
//! the run's view and metrics), `restore` (a run from the store), `reload`
//! (SIGHUP) and `failure` (why an analysis failed, as a closed set).
//!
//! This module owns no format, SQL, metric name or geometry: it calls
//! [`crate::watch`], the `source`, `analysis`, `store`, `view` and
//! `metrics` crates.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use metrics::Metrics;
use source::probeset::ProbeSetError;
use store::Store;
use tokio::sync::{mpsc, watch as tokio_watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::{Config, Limits};
use crate::server::{ReadyFlags, ReportSource, ServerState};
use crate::shard::Shard;
use crate::web_config::WebConfig;

mod activations;
mod core_job;
mod failure;
mod gate;
mod late_jobs;
mod options;
mod probes;
mod publish;
mod queue;
mod reload;
mod restore;
mod run_loop;

pub use probes::check_probe_set_limits;

use gate::Gate;
use probes::ProbeRun;
use reload::{apply_reload, load_probes};
use run_loop::{RunHandle, RunState, restore_run, spawn_run};

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
        addr: SocketAddr,
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

/// Runs the daemon until `shutdown` turns true; then finishes the
/// checkpoint being analysed (or abandons it after `grace`, leaving nothing
/// half-written), closes the store and returns. `on_listening` receives the
/// bound address (the config may ask for port 0). Every run's stored values
/// are published before the listener opens, so no scrape sees a restarted
/// daemon without them.
pub async fn run(
    config: Config,
    shutdown: tokio_watch::Receiver<bool>,
    on_listening: impl FnOnce(SocketAddr),
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
    on_listening: impl FnOnce(SocketAddr),
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
    // Probe sets first: a run whose probe set cannot be read is a
    // configuration error, refused before anything starts.
    let probes = load_probes(&config, &BTreeMap::new()).await?;
    let shared = Arc::new(open_shared(&config, probes)?);
    let ready = Arc::new(ReadyFlags::default());
    ready.set_store_open(true);
    // Restore every run before serving, so that the first scrape already
    // shows the stored values.
    let mut restored: Vec<RunState> = Vec::new();
    for run in &config.runs {
        restored.extend(restore_run(&shared, run).await);
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(DaemonError::Server)?;
    let scheme = web.as_ref().map_or("http", |w| w.scheme());
    info!(url = %format!("{scheme}://{addr}/metrics"), "serving metrics");
    on_listening(addr);
    let watched = Arc::new(RwLock::new(run_names(&config)));
    let server = spawn_server(listener, &config, &shared, &ready, &watched, web, &shutdown);

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
                            run_names(&current);
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

/// Opens the store, the metrics and the two analysis pools.
fn open_shared(
    config: &Config,
    probes: BTreeMap<String, Arc<ProbeRun>>,
) -> Result<Shared, DaemonError> {
    let store = Store::open(&config.store)?;
    info!(store = %config.store.display(), "store open");
    let metrics = Arc::new(Metrics::new());
    metrics.config_loaded(false, unix_now());
    if let Some(shard) = config.shard {
        metrics.set_shard(shard.index(), shard.count());
        info!(%shard, "sharded: analysing this replica's share of the (task, layer) pairs");
    }
    let pool = thread_pool(config.workers, "probewatch-analysis")?;
    let late_pool = thread_pool(config.workers, "probewatch-late")?;
    Ok(Shared {
        store: Mutex::new(store),
        probes: RwLock::new(probes),
        metrics,
        pool,
        late_pool,
        gate: Gate::default(),
        shard: config.shard,
        limits: RwLock::new(config.limits),
    })
}

/// A rayon pool of `workers` threads named `<name>-<i>`.
fn thread_pool(workers: usize, name: &'static str) -> Result<rayon::ThreadPool, DaemonError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .thread_name(move |i| format!("{name}-{i}"))
        .build()
        .map_err(|e| DaemonError::Pool {
            workers,
            detail: e.to_string(),
        })
}

/// The names of the configured runs (the `/report` index).
fn run_names(config: &Config) -> Vec<String> {
    config.runs.iter().map(|r| r.name.clone()).collect()
}

/// Starts the HTTP server on `listener` until `shutdown`.
fn spawn_server(
    listener: tokio::net::TcpListener,
    config: &Config,
    shared: &Shared,
    ready: &Arc<ReadyFlags>,
    watched: &Arc<RwLock<Vec<String>>>,
    web: Option<Arc<WebConfig>>,
    shutdown: &tokio_watch::Receiver<bool>,
) -> JoinHandle<std::io::Result<()>> {
    let mut server_shutdown = shutdown.clone();
    tokio::spawn(crate::server::serve_with(
        listener,
        ServerState {
            metrics: shared.metrics.clone(),
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
    ))
}

/// Resolves when the shutdown flag is (or turns) true, or its sender is gone.
async fn stopped(rx: &mut tokio_watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Runs `f` on a blocking thread; `None` (logged) when it panicked.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) => {
            error!(error = %e, "blocking task failed");
            None
        }
    }
}

/// Nanoseconds since the Unix epoch (negative before it), as the store
/// keeps modification times.
fn mtime_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Whether two paths name the same file (equal, or equal once resolved).
fn same_path(a: &Path, b: &Path) -> bool {
    a == b
        || match (a.canonicalize(), b.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn modification_times_are_signed_nanoseconds() {
        assert_eq!(mtime_ns(UNIX_EPOCH), 0);
        assert_eq!(mtime_ns(UNIX_EPOCH + Duration::new(2, 5)), 2_000_000_005);
        assert_eq!(mtime_ns(UNIX_EPOCH - Duration::from_nanos(7)), -7);
    }

    #[test]
    fn paths_are_the_same_when_equal_or_resolving_to_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("step-1.safetensors");
        std::fs::write(&file, b"x").unwrap();
        let indirect = dir.path().join(".").join("step-1.safetensors");
        assert!(same_path(&file, &file));
        assert!(same_path(&file, &indirect));
        assert!(!same_path(&file, &dir.path().join("step-2.safetensors")));
        let missing = Path::new("/nonexistent/a");
        assert!(same_path(missing, missing));
    }
}
