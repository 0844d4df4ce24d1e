//! The per-run event loop ([`run_loop`]) and the run's state
//! ([`RunState`]). One loop per run: it scans the run folder (on a
//! blocking thread, at the scan interval and after filesystem hints),
//! queues complete checkpoints that are not stored yet, starts the core job
//! of the next one and the late job of the next waiting checkpoint, and
//! waits for one closed set of [`Event`]s (`select!`, biased towards
//! shutdown). Only this loop changes a run's state: jobs return values
//! (an `Outcome`, a `LateEvent`, the late memory) and the loop takes them
//! (`publish.rs`).
//!
//! Also the run handles the daemon starts and stops ([`RunHandle`],
//! [`start_run`], [`spawn_run`]).
//!
//! What it does not do: analyse (`core_job.rs`, `late_jobs.rs`), turn
//! results into rows or metrics (`publish.rs`), or pick the order of
//! waiting checkpoints (`queue.rs`, `late_jobs::LateQueue`).

use std::collections::{BTreeMap, HashSet};
use std::mem;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use analysis::TaskMemory;
use metrics::Metrics;
use store::RunId;
use tokio::sync::{mpsc, watch as tokio_watch};
use tokio::task::{JoinError, JoinHandle};
use tracing::{debug, error, info, warn};
use view::RunView;

use super::core_job::{Job, Outcome, analyse_job};
use super::failure::FailureKind;
use super::late_jobs::{LateEvent, LateQueue, LateWork, RunningLate, late_job};
use super::publish::{apply_late, finish};
use super::queue::{CheckpointQueue, is_baseline};
use super::restore::{previous_reference, restore};
use super::{DaemonError, Shared, blocking, mtime_ns, stopped};
use crate::config::{Layout, QueuePolicy, RunConfig};
use crate::watch::{self, Candidate, Hint, ScanItem, Scanner};

/// How long a stopping loop waits for its running jobs.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Per-run state owned by its loop.
pub(super) struct RunState {
    /// The run's configuration.
    pub(super) cfg: RunConfig,
    /// Its id in the store.
    pub(super) id: RunId,
    /// What the run publishes: baseline, newest checkpoint, best-so-far
    /// distances, newest late-stage values.
    pub(super) view: RunView,
    /// Warm starts of the core stage (threaded from job to job).
    pub(super) memory: BTreeMap<String, TaskMemory>,
    /// Checkpoints waiting for their core stage.
    pub(super) queue: CheckpointQueue,
    /// Checkpoints whose outcome could not be stored (disk full, ...):
    /// queued again after the next scan while their file is unchanged.
    pub(super) retry: Vec<Candidate>,
    /// Warm starts of the late stages (threaded from late job to late job).
    pub(super) late_memory: BTreeMap<String, TaskMemory>,
    /// Checkpoints whose late stages wait.
    pub(super) late: LateQueue,
}

impl RunState {
    fn is_baseline_candidate(&self, c: &Candidate) -> bool {
        is_baseline(&self.cfg.baseline, self.view.baseline().is_some(), c)
    }

    /// Next job (see [`CheckpointQueue::next`]); checkpoints the policy
    /// `newest` skips are logged and counted.
    fn next_job(&mut self, metrics: &Metrics) -> Option<Candidate> {
        let have_baseline = self.view.baseline().is_some();
        let next = self
            .queue
            .next(self.cfg.queue, &self.cfg.baseline, have_baseline);
        if next.skipped > 0 {
            info!(run = %self.cfg.name, skipped = next.skipped, "queue policy newest: skipping older checkpoints");
            metrics.checkpoint_skipped(&self.cfg.name, next.skipped);
        }
        next.candidate
    }
}

/// A run loop started by the daemon.
pub(super) struct RunHandle {
    /// The configuration it runs with.
    pub(super) cfg: RunConfig,
    /// Asks it to stop.
    pub(super) stop: tokio_watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunHandle {
    /// Asks the loop to stop (it finishes the checkpoint being analysed or
    /// abandons it after its grace time) and waits for it.
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            warn!(run = %self.cfg.name, error = %e, "run loop ended abnormally");
        }
    }
}

/// Starts the loop of a restored run.
pub(super) fn spawn_run(shared: &Arc<Shared>, state: RunState) -> RunHandle {
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
/// the async runtime); `None` (logged) if it cannot be restored.
pub(super) async fn restore_run(shared: &Arc<Shared>, cfg: &RunConfig) -> Option<RunState> {
    let (sh, c) = (shared.clone(), cfg.clone());
    match tokio::task::spawn_blocking(move || restore(&sh, &c)).await {
        Ok(Ok(state)) => Some(state),
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

/// Restores a run and starts its loop; `None` (logged) if it cannot be
/// restored.
pub(super) async fn start_run(shared: &Arc<Shared>, cfg: &RunConfig) -> Option<RunHandle> {
    restore_run(shared, cfg)
        .await
        .map(|state| spawn_run(shared, state))
}

/// What the loop of a run waits for.
enum Event {
    /// The daemon stops (or the run is stopped by a reload).
    Shutdown,
    /// A late stage's stored layers (`None`: no sender left).
    Late(Option<LateEvent>),
    /// The late job ended with the late memory (or panicked).
    LateEnded(Result<BTreeMap<String, TaskMemory>, JoinError>),
    /// The core job ended (or panicked).
    CoreEnded(Result<Outcome, JoinError>),
    /// A filesystem hint.
    Hint(Option<Hint>),
    /// The scan interval passed.
    Tick,
}

/// The loop of one run: its state and everything the loop holds between
/// events.
struct RunLoop {
    shared: Arc<Shared>,
    state: RunState,
    layout: watch::Layout,
    hint_tx: mpsc::Sender<Hint>,
    hint_rx: mpsc::Receiver<Hint>,
    /// The filesystem watch, while there is one.
    hints: Option<watch::Hints>,
    /// Try to set up filesystem events (at start and whenever the folder
    /// comes back); without them the periodic scan does everything.
    want_hints: bool,
    /// The scanner, between scans (it runs on a blocking thread).
    scanner: Option<Scanner>,
    tick: tokio::time::Interval,
    /// Paths renamed into place since the last scan.
    renamed: HashSet<PathBuf>,
    scan_now: bool,
    missing_logged: bool,
    job: Option<JoinHandle<Outcome>>,
    late_tx: mpsc::UnboundedSender<LateEvent>,
    late_rx: mpsc::UnboundedReceiver<LateEvent>,
    late_job: Option<RunningLate>,
}

/// The loop of one run.
pub(super) async fn run_loop(
    shared: Arc<Shared>,
    state: RunState,
    mut shutdown: tokio_watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let mut l = RunLoop::new(shared, state);
    info!(run = %l.state.cfg.name, folder = %l.state.cfg.folder.display(), "watching");
    loop {
        l.ensure_hints();
        if l.scan_now {
            l.scan_now = false;
            if (l.state.queue.len() < l.state.cfg.queue_capacity
                || l.state.cfg.queue == QueuePolicy::Newest)
                && !l.scan().await
            {
                return Ok(());
            }
            if !l.state.retry.is_empty() {
                requeue(&l.shared, &mut l.state).await;
            }
        }
        l.start_core_job().await;
        l.start_late_job();
        l.publish_depths();
        let event = l.next_event(&mut shutdown).await;
        if !l.handle(event).await {
            return Ok(());
        }
    }
}

impl RunLoop {
    fn new(shared: Arc<Shared>, state: RunState) -> RunLoop {
        let cfg = &state.cfg;
        let layout = match cfg.layout {
            Layout::Dumps => watch::Layout::Dumps,
            Layout::HfCheckpoints => watch::Layout::HfCheckpoints,
        };
        let (hint_tx, hint_rx) = mpsc::channel::<Hint>(1024);
        let scanner = Scanner::new(
            cfg.folder.clone(),
            layout,
            cfg.stable_scans,
            cfg.follow_symlinks,
        );
        let mut tick = tokio::time::interval(cfg.scan_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (late_tx, late_rx) = mpsc::unbounded_channel::<LateEvent>();
        RunLoop {
            shared,
            state,
            layout,
            hint_tx,
            hint_rx,
            hints: None,
            want_hints: true,
            scanner: Some(scanner),
            tick,
            renamed: HashSet::new(),
            scan_now: true,
            missing_logged: false,
            job: None,
            late_tx,
            late_rx,
            late_job: None,
        }
    }

    /// Sets up filesystem events when wanted and the folder exists.
    fn ensure_hints(&mut self) {
        let cfg = &self.state.cfg;
        if self.want_hints && self.hints.is_none() && cfg.folder.is_dir() {
            self.want_hints = false;
            match watch::watch_folder(&cfg.folder, self.layout, self.hint_tx.clone()) {
                Ok(h) => self.hints = Some(h),
                Err(e) => {
                    warn!(run = %cfg.name, error = %e, "no filesystem events; relying on the periodic scan")
                }
            }
        }
    }

    /// Scans the run folder on a blocking thread and queues what it found;
    /// `false` when the blocking task failed (the loop ends).
    async fn scan(&mut self) -> bool {
        let mut sc = self.scanner.take().expect("scanner present between scans");
        let ren = mem::take(&mut self.renamed);
        let res = blocking(move || {
            let t = Instant::now();
            let r = sc.scan(&ren);
            (sc, r, t.elapsed().as_secs_f64())
        })
        .await;
        let Some((sc, r, seconds)) = res else {
            return false;
        };
        let cfg = &self.state.cfg;
        tracing::trace!(run = %cfg.name, seconds, "scanned");
        let missing = sc.folder_missing();
        self.scanner = Some(sc);
        if missing && !self.missing_logged {
            warn!(run = %cfg.name, folder = %cfg.folder.display(), "run folder missing; waiting for it");
            self.hints = None;
        }
        if !missing && self.missing_logged {
            info!(run = %cfg.name, folder = %cfg.folder.display(), "run folder is back");
            self.want_hints = true;
        }
        self.missing_logged = missing;
        match r {
            Ok(items) => handle_scan(&self.shared, &mut self.state, items).await,
            Err(e) => warn!(run = %self.state.cfg.name, error = %e, "scan failed"),
        }
        true
    }

    /// Starts the core job of the next waiting checkpoint, unless one runs.
    /// After a failed store write nothing else starts before it is retried
    /// (a later checkpoint must not become the baseline).
    async fn start_core_job(&mut self) {
        if self.job.is_some() || !self.state.retry.is_empty() {
            return;
        }
        let Some(c) = self.state.next_job(&self.shared.metrics) else {
            return;
        };
        let state = &mut self.state;
        let is_baseline = state.is_baseline_candidate(&c);
        let previous = match state.view.latest() {
            Some(l) if l.step < c.step => Some(l.clone()),
            _ => {
                let sh = self.shared.clone();
                let (name, id, step) = (state.cfg.name.clone(), state.id, c.step);
                blocking(move || previous_reference(&sh, &name, id, step))
                    .await
                    .flatten()
            }
        };
        let baseline = if is_baseline {
            None
        } else {
            state.view.baseline().cloned()
        };
        let memory = mem::take(&mut state.memory);
        debug!(run = %state.cfg.name, step = c.step, path = %c.path.display(), "analysing");
        let job = Job {
            candidate: c,
            memory,
            baseline,
            previous,
            is_baseline,
        };
        let (sh, cfg, id) = (self.shared.clone(), state.cfg.clone(), state.id);
        self.job = Some(tokio::task::spawn_blocking(move || {
            analyse_job(&sh, &cfg, id, job)
        }));
    }

    /// Starts the late job of the next waiting checkpoint (the baseline's
    /// first), unless one runs: one late job per run at a time.
    fn start_late_job(&mut self) {
        if self.late_job.is_some() {
            return;
        }
        let Some(input) = self.state.late.take_next() else {
            return;
        };
        let state = &mut self.state;
        let stop = Arc::new(AtomicBool::new(false));
        let memory = mem::take(&mut state.late_memory);
        let baseline = if input.is_baseline {
            None
        } else {
            state.view.baseline().cloned()
        };
        debug!(run = %state.cfg.name, step = input.candidate.step, "late stages starting");
        let work = LateWork {
            input,
            memory,
            baseline,
        };
        let (sh, cfg, tx, st) = (
            self.shared.clone(),
            state.cfg.clone(),
            self.late_tx.clone(),
            stop.clone(),
        );
        let handle = tokio::task::spawn_blocking(move || late_job(&sh, &cfg, work, &st, &tx));
        self.late_job = Some(RunningLate { handle, stop });
    }

    /// The queue depth and the waiting late stages, on `/metrics`.
    fn publish_depths(&self) {
        let (metrics, name) = (&self.shared.metrics, &self.state.cfg.name);
        metrics.set_queue_depth(name, self.state.queue.len() as i64);
        metrics.set_late_pending(
            name,
            self.state.late.waiting() + i64::from(self.late_job.is_some()),
        );
    }

    /// Waits for the next event (shutdown first).
    async fn next_event(&mut self, shutdown: &mut tokio_watch::Receiver<bool>) -> Event {
        let (job, late_job) = (&mut self.job, &mut self.late_job);
        let (late_rx, hint_rx, tick) = (&mut self.late_rx, &mut self.hint_rx, &mut self.tick);
        tokio::select! {
            biased;
            _ = stopped(shutdown) => Event::Shutdown,
            ev = late_rx.recv() => Event::Late(ev),
            m = async { (&mut late_job.as_mut().expect("guarded").handle).await }, if late_job.is_some() => {
                Event::LateEnded(m)
            }
            o = async { job.as_mut().expect("guarded").await }, if job.is_some() => Event::CoreEnded(o),
            h = hint_rx.recv() => Event::Hint(h),
            _ = tick.tick() => Event::Tick,
        }
    }

    /// Takes one event; `false` after a shutdown (the loop ends).
    async fn handle(&mut self, event: Event) -> bool {
        let name = self.state.cfg.name.clone();
        match event {
            Event::Shutdown => {
                self.shut_down().await;
                return false;
            }
            Event::Late(ev) => {
                if let Some(ev) = ev {
                    apply_late(&self.shared, &mut self.state, ev);
                }
            }
            Event::LateEnded(m) => {
                self.late_job = None;
                // Events sent before the job ended are applied first.
                while let Ok(ev) = self.late_rx.try_recv() {
                    apply_late(&self.shared, &mut self.state, ev);
                }
                match m {
                    Ok(m) => self.state.late_memory = m,
                    Err(e) => error!(run = %name, error = %e, "late stages panicked"),
                }
            }
            Event::CoreEnded(o) => {
                self.job = None;
                match o {
                    Ok(o) => finish(&self.shared, &mut self.state, o),
                    Err(e) => error!(run = %name, error = %e, "analysis task panicked"),
                }
            }
            Event::Hint(h) => {
                if let Some(Hint::Renamed(p)) = h {
                    self.renamed.insert(p);
                }
                // Coalesce a burst of events into one scan.
                tokio::time::sleep(Duration::from_millis(25)).await;
                while let Ok(h) = self.hint_rx.try_recv() {
                    if let Hint::Renamed(p) = h {
                        self.renamed.insert(p);
                    }
                }
                self.scan_now = true;
            }
            Event::Tick => self.scan_now = true,
        }
        true
    }

    /// Stops the run: the late stages at their next step (what they
    /// finished is stored; the rest is deferred to the next start), the
    /// checkpoint being analysed finished within the grace time or
    /// abandoned.
    async fn shut_down(&mut self) {
        let name = self.state.cfg.name.clone();
        if let Some(late) = &self.late_job {
            late.stop.store(true, Ordering::Relaxed);
        }
        if let Some(j) = self.job.take() {
            info!(run = %name, "finishing the checkpoint being analysed");
            match tokio::time::timeout(STOP_GRACE, j).await {
                Ok(Ok(o)) => finish(&self.shared, &mut self.state, o),
                _ => {
                    warn!(run = %name, "abandoned the checkpoint being analysed (nothing of it was stored)")
                }
            }
        }
        if let Some(late) = self.late_job.take() {
            if tokio::time::timeout(STOP_GRACE, late.handle).await.is_err() {
                warn!(run = %name, "late stages did not stop within 30 s; what they finished is stored");
            }
        }
    }
}

/// Queues the complete checkpoints of a scan that are not stored yet, and
/// counts the invalid, unreadable and removed ones.
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
                        state.queue.insert(c);
                        if state.cfg.queue == QueuePolicy::Newest {
                            let dropped = state.queue.trim_to(state.cfg.queue_capacity);
                            if dropped > 0 {
                                shared.metrics.checkpoint_skipped(&name, dropped);
                            }
                        }
                    }
                    Some(Err(e)) => error!(run = %name, error = %e, "store read failed"),
                    None => {}
                }
            }
            ScanItem::Invalid { path, reason } => {
                warn!(run = %name, path = %path.display(), reason = %reason, "invalid checkpoint");
                shared
                    .metrics
                    .checkpoint_failed(&name, FailureKind::Format.as_str());
            }
            ScanItem::Unreadable { path, reason } => {
                warn!(run = %name, path = %path.display(), reason = %reason, "unreadable checkpoint; retried at every scan");
                shared
                    .metrics
                    .checkpoint_failed(&name, FailureKind::Io.as_str());
            }
            ScanItem::Removed { path } => {
                let dropped = state.queue.remove_path(&path);
                if dropped > 0 {
                    warn!(run = %name, path = %path.display(), "queued checkpoint removed before analysis");
                    shared.metrics.checkpoint_skipped(&name, dropped as u64);
                }
            }
        }
    }
}

/// Queues the checkpoints whose store write failed again, unless their file
/// changed (the scanner reports the new version) or they are stored by now.
async fn requeue(shared: &Arc<Shared>, state: &mut RunState) {
    let retry = mem::take(&mut state.retry);
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
        state.queue.insert_if_absent(c);
    }
}
