//! `cargo xtask soak`: a soak and load run of the real daemon,
//! to show that it neither leaks nor loses anything when pushed for a long
//! time.
//!
//! It starts `probewatch watch` as a child process with the harness's
//! driver ([`harness::Launch`]; so the memory and file descriptors measured
//! are the daemon's alone; its JSON log in `daemon.log`) on a temporary run
//! folder with queue policy `all`, and for a fixed time:
//! - a writer thread saves a demo activation dump
//!   ([`daemon::demo::cyclic_dump_bytes`], every one different) every
//!   `--interval-ms`, the way a training job does (hidden file, rename), and
//!   like a Trainer's `save_total_limit` deletes the oldest dumps beyond
//!   `--keep` once the store has recorded them;
//! - `--clients` HTTP clients (ureq; half keep their connection alive, half
//!   open a new one per request) GET `/metrics`, `/report` and
//!   `/report/soak` in turn, each request with a timeout, pausing
//!   `--pause-ms` between requests, and every latency is kept;
//! - a sampler reads the daemon's `VmRSS`, `VmHWM` and thread count from
//!   `/proc/<pid>/status` and counts `/proc/<pid>/fd` every second
//!   ([`harness::ProcStatus`], [`harness::open_fds`]).
//!
//! Then the writer and clients stop, the daemon is given `--drain-timeout`
//! to analyse what is left, its counters are read from `/metrics` and the
//! store, and it is stopped with SIGTERM. The run fails (exit code 1) when a
//! checkpoint was lost (written − analysed − skipped ≠ 0, from the store and
//! from `probewatch_checkpoints_analyzed_total`), a checkpoint failed, the
//! resident memory at the end exceeds the start by more than
//! `--rss-tolerance-mib`, the open descriptors grew by more than
//! `--fd-tolerance`, a request failed, the store fails its integrity check
//! or the daemon does not exit cleanly. Start and end figures are medians
//! (RSS) or minima (descriptors) over a window of samples, after a warm-up,
//! so one request in flight does not decide the verdict.
//!
//! These are correctness checks (leaks, loss), not speed assertions: the
//! latencies are reported, never judged. What it does not do: it measures
//! one process on this machine with the demo's small dumps (4 layers, 360
//! points); it does not fault the daemon (see the fault-injection tests) and
//! it does not restart it.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use daemon::demo::{STEP_EVERY, cyclic_dump_bytes, write_dump};
use harness::{Client, Daemon, Launch, ProcStatus, median, open_fds, quantile};
use store::{CheckpointStatus, Store};

/// The run's name in the daemon's configuration (and its `run` label).
const RUN: &str = "soak";

/// Options of `cargo xtask soak`.
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// How long checkpoints are written and endpoints scraped (`600`,
    /// `60s`, `10m`, `1h`).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    duration: Duration,
    /// Milliseconds between two checkpoints written.
    #[arg(long, default_value_t = 150)]
    interval_ms: u64,
    /// Concurrent HTTP clients (half keep-alive, half a new connection per
    /// request).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Endpoints the clients request, in turn (`metrics`, `report`,
    /// `report-run`); /metrics comes twice in each turn when it is listed
    /// with a report.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "metrics,report-run,report"
    )]
    endpoints: Vec<EndpointArg>,
    /// Milliseconds each client waits between two requests.
    #[arg(long, default_value_t = 100)]
    pause_ms: u64,
    /// Timeout of one request (connect to last byte), seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout_seconds: f64,
    /// Stop the run after this many requests in total (default: no cap
    /// beyond the duration).
    #[arg(long)]
    max_requests: Option<u64>,
    /// Samples before this are warm-up: the start figures are taken after
    /// it (`15s`).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    warmup: Duration,
    /// Length of the windows the start and end figures are taken over.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    window: Duration,
    /// Keep at most this many dumps on disk (older ones are deleted once
    /// recorded, like a Trainer's save_total_limit); 0 keeps all.
    #[arg(long, default_value_t = 50)]
    keep: usize,
    /// How long the daemon may take to analyse the backlog after the load
    /// stops.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Analysis threads of the daemon (`workers`).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Allowed growth of the daemon's resident memory, start to end (MiB).
    #[arg(long, default_value_t = DEFAULT_RSS_TOLERANCE_MIB)]
    rss_tolerance_mib: f64,
    /// Further allowed growth of the daemon's resident memory per
    /// checkpoint stored during the load (KiB): the report page's share.
    #[arg(long, default_value_t = DEFAULT_RSS_PER_CHECKPOINT_KIB)]
    rss_per_checkpoint_kib: f64,
    /// Allowed growth of the daemon's open file descriptors, start to end.
    #[arg(long, default_value_t = DEFAULT_FD_TOLERANCE)]
    fd_tolerance: i64,
    /// Folder for the run, the store and the daemon's log (default: a new
    /// temporary one, removed when the run passes).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also write the figures, the verdict and every sample as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Default `--rss-tolerance-mib` (docs/reliability.md, "Soak and load": chosen from the
/// measured runs).
pub const DEFAULT_RSS_TOLERANCE_MIB: f64 = 16.0;
/// Default `--rss-per-checkpoint-kib` (docs/reliability.md, "Soak and load").
pub const DEFAULT_RSS_PER_CHECKPOINT_KIB: f64 = 48.0;
/// Default `--fd-tolerance`.
pub const DEFAULT_FD_TOLERANCE: i64 = 2;

/// `90`, `90s`, `500ms`, `10m`, `1h` as a duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{s}': expected a number with an optional unit ms, s, m or h"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("'{s}': unknown unit '{other}' (ms, s, m or h)")),
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("'{s}': must be positive"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// One reading of the daemon process.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub t: f64,
    /// Resident memory, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident memory so far, KiB (`VmHWM`).
    pub hwm_kib: u64,
    /// Resident anonymous memory (heap, stacks), KiB (`RssAnon`).
    pub anon_kib: u64,
    /// Resident file-backed memory (binary, libraries, mapped files), KiB
    /// (`RssFile`).
    pub file_kib: u64,
    /// Resident shared memory (SQLite's WAL index), KiB (`RssShmem`).
    pub shmem_kib: u64,
    /// Threads.
    pub threads: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Checkpoints written so far.
    pub written: u64,
    /// Checkpoints recorded in the store so far (done + failed).
    pub recorded: u64,
    /// Whether the load (writer and clients) was running.
    pub load: bool,
}

/// An endpoint on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EndpointArg {
    /// `/metrics`.
    Metrics,
    /// `/report` (the index).
    Report,
    /// `/report/soak` (the run's page).
    ReportRun,
}

/// The order a client cycles through the endpoints: each report once, and
/// `/metrics` before each report (as often as both reports together).
fn rotation(chosen: &[EndpointArg]) -> Vec<Endpoint> {
    let has = |e| chosen.contains(&e);
    let reports: Vec<Endpoint> = [
        (EndpointArg::ReportRun, Endpoint::ReportRun),
        (EndpointArg::Report, Endpoint::ReportIndex),
    ]
    .into_iter()
    .filter(|(a, _)| has(*a))
    .map(|(_, e)| e)
    .collect();
    if reports.is_empty() {
        return vec![Endpoint::Metrics];
    }
    if !has(EndpointArg::Metrics) {
        return reports;
    }
    reports
        .into_iter()
        .flat_map(|r| [Endpoint::Metrics, r])
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Metrics,
    ReportIndex,
    ReportRun,
}

impl Endpoint {
    const ALL: [Endpoint; 3] = [
        Endpoint::Metrics,
        Endpoint::ReportIndex,
        Endpoint::ReportRun,
    ];

    fn path(self) -> String {
        match self {
            Endpoint::Metrics => "/metrics".into(),
            Endpoint::ReportIndex => "/report".into(),
            Endpoint::ReportRun => format!("/report/{RUN}"),
        }
    }

    /// What a good answer's body must show: a whole exposition, the index
    /// linking the run, a whole page.
    fn body_ok(self, body: &str) -> bool {
        match self {
            Endpoint::Metrics => body.ends_with("# EOF\n"),
            Endpoint::ReportIndex => body.contains(&format!("/report/{RUN}")),
            Endpoint::ReportRun => body.trim_end().ends_with("</html>"),
        }
    }
}

/// One request's outcome.
#[derive(Clone, Debug)]
struct Request {
    endpoint: Endpoint,
    seconds: f64,
    error: Option<String>,
}

/// Latency figures of one endpoint.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EndpointFigures {
    /// The path.
    pub path: String,
    /// Requests made.
    pub requests: u64,
    /// Requests that failed (status, body, timeout, connection).
    pub errors: u64,
    /// Median latency, ms (successful requests).
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
}

/// Least-squares slope of `y` over `x` (per unit of `x`); 0 with fewer than
/// two distinct `x`.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx > 0.0 { sxy / sxx } else { 0.0 }
}

/// What the samples say about the daemon's memory and descriptors.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcessFigures {
    /// Median RSS over the window after the warm-up, MiB.
    pub rss_start_mib: f64,
    /// Median RSS over the last window of the load, MiB.
    pub rss_end_mib: f64,
    /// Largest RSS sampled, MiB.
    pub rss_max_mib: f64,
    /// Peak RSS the kernel saw (`VmHWM` at the end), MiB.
    pub rss_hwm_mib: f64,
    /// Least-squares trend of RSS after the warm-up, MiB per hour.
    pub rss_slope_mib_per_hour: f64,
    /// Fewest descriptors open in the window after the warm-up.
    pub fds_start: u64,
    /// Fewest descriptors open in the last window of the load (requests
    /// in flight hold a socket and, for a report, the store's three files).
    pub fds_end: u64,
    /// Descriptors open once the load stopped and the backlog was analysed:
    /// what the verdict compares with `fds_start`.
    pub fds_after_drain: Option<u64>,
    /// Checkpoints stored from the start window to the end of the load:
    /// what the report's share of the RSS allowance is counted on.
    pub checkpoints_between_windows: u64,
    /// Most descriptors sampled.
    pub fds_max: u64,
    /// Threads at the start and end windows (fewest), and most.
    pub threads_start: u64,
    /// See `threads_start`.
    pub threads_end: u64,
    /// See `threads_start`.
    pub threads_max: u64,
}

/// Start/end/max figures from the samples: the start window begins at
/// `warmup`, the end window is the last `window` seconds with the load
/// running. `None` when either window holds no sample.
pub fn process_figures(samples: &[Sample], warmup: f64, window: f64) -> Option<ProcessFigures> {
    let loaded: Vec<&Sample> = samples.iter().filter(|s| s.load).collect();
    let last = loaded.last()?.t;
    let start: Vec<&Sample> = loaded
        .iter()
        .copied()
        .filter(|s| s.t >= warmup && s.t < warmup + window)
        .collect();
    let end: Vec<&Sample> = loaded
        .iter()
        .copied()
        .filter(|s| s.t > last - window && s.t >= warmup)
        .collect();
    if start.is_empty() || end.is_empty() {
        return None;
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    let rss_median = |w: &[&Sample]| median(&w.iter().map(|s| mib(s.rss_kib)).collect::<Vec<_>>());
    let fewest = |w: &[&Sample], f: fn(&Sample) -> u64| w.iter().map(|s| f(s)).min().unwrap_or(0);
    let trend: Vec<(f64, f64)> = loaded
        .iter()
        .filter(|s| s.t >= warmup)
        .map(|s| (s.t / 3600.0, mib(s.rss_kib)))
        .collect();
    Some(ProcessFigures {
        rss_start_mib: rss_median(&start),
        rss_end_mib: rss_median(&end),
        rss_max_mib: samples.iter().map(|s| mib(s.rss_kib)).fold(0.0, f64::max),
        rss_hwm_mib: samples.iter().map(|s| mib(s.hwm_kib)).fold(0.0, f64::max),
        rss_slope_mib_per_hour: slope(&trend),
        fds_start: fewest(&start, |s| s.fds),
        fds_end: fewest(&end, |s| s.fds),
        fds_after_drain: None,
        checkpoints_between_windows: end
            .last()
            .map_or(0, |e| e.recorded.saturating_sub(start[0].recorded)),
        fds_max: samples.iter().map(|s| s.fds).max().unwrap_or(0),
        threads_start: fewest(&start, |s| s.threads),
        threads_end: fewest(&end, |s| s.threads),
        threads_max: samples.iter().map(|s| s.threads).max().unwrap_or(0),
    })
}

/// Checkpoint accounting at the end of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CheckpointFigures {
    /// Dumps the writer renamed into place.
    pub written: u64,
    /// `Done` rows of the run in the store.
    pub analysed_store: u64,
    /// `Failed` rows of the run in the store.
    pub failed_store: u64,
    /// `probewatch_checkpoints_analyzed_total{run}`.
    pub analysed_metric: u64,
    /// `probewatch_checkpoints_failed_total{run}`, every kind.
    pub failed_metric: u64,
    /// `probewatch_checkpoints_skipped_total{run}` (0 with queue `all`).
    pub skipped_metric: u64,
    /// written − (done + failed in the store) − skipped.
    pub lost_store: i64,
    /// written − (analysed + failed counters) − skipped.
    pub lost_metric: i64,
    /// Seconds from the end of the load until the store had every
    /// checkpoint (the backlog's drain).
    pub drain_seconds: f64,
    /// Store file plus its WAL at the end, bytes (grows with checkpoints).
    pub store_bytes: u64,
}

impl CheckpointFigures {
    /// Fills in the two `lost` counts from the others.
    pub fn account(mut self) -> CheckpointFigures {
        let w = self.written as i64;
        self.lost_store =
            w - self.analysed_store as i64 - self.failed_store as i64 - self.skipped_metric as i64;
        self.lost_metric = w
            - self.analysed_metric as i64
            - self.failed_metric as i64
            - self.skipped_metric as i64;
        self
    }
}

/// Tolerances of the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Tolerances {
    /// Allowed RSS growth, start to end, MiB, whatever the history.
    pub rss_mib: f64,
    /// Further allowed RSS growth per checkpoint stored meanwhile, KiB: the
    /// `/report/<run>` page is rendered from the whole stored history, so
    /// its working set grows with it (docs/reliability.md, "Soak and load").
    pub rss_per_checkpoint_kib: f64,
    /// Allowed growth of open descriptors, start to end.
    pub fds: i64,
}

/// Every reason the run failed; empty when it passed. `exit` is the
/// daemon's exit status after SIGTERM (`None`: it had to be killed),
/// `integrity` the store's integrity check.
pub fn verdict(
    c: &CheckpointFigures,
    p: Option<&ProcessFigures>,
    endpoints: &[EndpointFigures],
    tol: Tolerances,
    exit: Option<i32>,
    integrity: &Result<(), String>,
) -> Vec<String> {
    let mut out = Vec::new();
    if c.lost_store != 0 || c.lost_metric != 0 {
        out.push(format!(
            "checkpoints lost: written {} − analysed/failed {}+{} (store), {}+{} (metrics) − skipped {}: lost {} (store), {} (metrics)",
            c.written,
            c.analysed_store,
            c.failed_store,
            c.analysed_metric,
            c.failed_metric,
            c.skipped_metric,
            c.lost_store,
            c.lost_metric
        ));
    }
    if c.failed_store > 0 || c.failed_metric > 0 {
        out.push(format!(
            "checkpoints failed: {} in the store, {} counted (every dump is valid)",
            c.failed_store, c.failed_metric
        ));
    }
    if c.written == 0 {
        out.push("no checkpoint was written".into());
    }
    match p {
        None => out.push(
            "too few samples for the start and end windows (is the duration longer than the warm-up and two windows?)"
                .into(),
        ),
        Some(p) => {
            let grew = p.rss_end_mib - p.rss_start_mib;
            let allowed = rss_allowance_mib(p, tol);
            if grew > allowed {
                out.push(format!(
                    "resident memory grew {grew:.1} MiB ({:.1} → {:.1} MiB), more than the {allowed:.1} MiB allowed ({:.1} MiB + {:.0} KiB × {} checkpoints stored meanwhile)",
                    p.rss_start_mib, p.rss_end_mib, tol.rss_mib, tol.rss_per_checkpoint_kib, p.checkpoints_between_windows
                ));
            }
            let end = p.fds_after_drain.unwrap_or(p.fds_end);
            let fds = end as i64 - p.fds_start as i64;
            if fds > tol.fds {
                out.push(format!(
                    "open file descriptors grew by {fds} ({} under load at the start → {end} after the load), more than the {} allowed",
                    p.fds_start, tol.fds
                ));
            }
        }
    }
    let requests: u64 = endpoints.iter().map(|e| e.requests).sum();
    let errors: u64 = endpoints.iter().map(|e| e.errors).sum();
    if errors > 0 {
        out.push(format!("{errors} of {requests} requests failed"));
    }
    if requests == 0 {
        out.push("no request was made".into());
    }
    match exit {
        Some(0) => {}
        Some(code) => out.push(format!(
            "the daemon exited with status {code} after SIGTERM"
        )),
        None => out.push("the daemon did not exit after SIGTERM (killed)".into()),
    }
    if let Err(e) = integrity {
        out.push(format!("store integrity: {e}"));
    }
    out
}

/// The RSS growth the verdict allows, MiB.
pub fn rss_allowance_mib(p: &ProcessFigures, tol: Tolerances) -> f64 {
    tol.rss_mib + tol.rss_per_checkpoint_kib * p.checkpoints_between_windows as f64 / 1024.0
}

/// Per-endpoint latency figures (successful requests only; failures are
/// counted).
fn endpoint_figures(requests: &[Request]) -> Vec<EndpointFigures> {
    Endpoint::ALL
        .iter()
        .map(|&e| {
            let mine: Vec<&Request> = requests.iter().filter(|r| r.endpoint == e).collect();
            let mut ms: Vec<f64> = mine
                .iter()
                .filter(|r| r.error.is_none())
                .map(|r| r.seconds * 1000.0)
                .collect();
            ms.sort_by(f64::total_cmp);
            EndpointFigures {
                path: e.path(),
                requests: mine.len() as u64,
                errors: mine.iter().filter(|r| r.error.is_some()).count() as u64,
                p50_ms: quantile(&ms, 0.5),
                p99_ms: quantile(&ms, 0.99),
                max_ms: ms.last().copied().unwrap_or(f64::NAN),
            }
        })
        .collect()
}

/// Everything `--json` writes.
#[derive(Debug, Serialize)]
struct SoakReport {
    duration_seconds: f64,
    warmup_seconds: f64,
    window_seconds: f64,
    interval_ms: u64,
    clients: usize,
    pause_ms: u64,
    keep: usize,
    workers: usize,
    checkpoints: CheckpointFigures,
    process: Option<ProcessFigures>,
    fds_after_drain: Option<u64>,
    endpoints: Vec<EndpointFigures>,
    requests: u64,
    errors: u64,
    error_examples: Vec<String>,
    tolerances: Tolerances,
    daemon_exit: Option<i32>,
    store_integrity: String,
    failures: Vec<String>,
    passed: bool,
    samples: Vec<Sample>,
}

/// Stderr lines of the daemon kept in memory (all of them go to
/// `daemon.log`).
const LOG_LINES: usize = 1000;

/// One GET: `Ok(body)` for a 200, else the status or transport error.
fn get(client: &Client, url: &str) -> Result<String, String> {
    client.get_ok(url).map_err(|e| format!("{e:#}"))
}

/// Starts `probewatch watch` on `dir/run` (queue `all`, a free port, its
/// log in `dir/daemon.log`) and waits until it serves.
fn start_daemon(dir: &Path, workers: usize) -> Result<Daemon> {
    let cfg = dir.join("probewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "# written by probewatch soak\nlisten = \"127.0.0.1:0\"\nstore = \"probewatch.sqlite\"\nworkers = {workers}\n\n\
             [[run]]\nname = \"{RUN}\"\nfolder = \"run\"\nscan_interval_seconds = 1\nqueue = \"all\"\n"
        ),
    )
    .with_context(|| format!("writing {}", cfg.display()))?;
    Launch::watch(crate::probewatch_exe()?, &cfg)
        .log_file(dir.join("daemon.log"))
        .keep_lines(LOG_LINES)
        .start(Duration::from_secs(60))
        .context("starting the daemon")
}

/// The daemon's memory and threads, and its open descriptors.
fn read_proc(pid: u32) -> Result<(ProcStatus, u64)> {
    Ok((ProcStatus::read(pid)?, open_fds(pid)?))
}

/// The sum of a counter family's samples of run `soak` in an exposition.
fn counter(exposition: &str, name: &str) -> u64 {
    let label = format!("run=\"{RUN}\"");
    exposition
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{'))
                && l.contains(&label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Done and failed rows of the run; `None` while the store or run is not
/// there yet.
fn store_counts(store: &Store) -> Option<(u64, u64)> {
    let id = store.run_id(RUN).ok()??;
    store.counts(id).ok()
}

/// What the writer thread shares with the others.
struct Shared {
    stop_load: AtomicBool,
    stop_sampler: AtomicBool,
    written: AtomicU64,
    requests: AtomicU64,
    /// Dumps on disk, oldest first (for `--keep`).
    on_disk: Mutex<VecDeque<PathBuf>>,
}

/// `cargo xtask soak`: runs it and prints the figures; an error when the
/// verdict fails.
pub fn run(args: &SoakArgs) -> Result<()> {
    anyhow::ensure!(args.clients >= 1, "--clients must be at least 1");
    anyhow::ensure!(!args.endpoints.is_empty(), "--endpoints must name one");
    anyhow::ensure!(args.interval_ms >= 1, "--interval-ms must be at least 1");
    anyhow::ensure!(args.workers >= 1, "--workers must be at least 1");
    anyhow::ensure!(
        args.timeout_seconds.is_finite() && args.timeout_seconds > 0.0,
        "--timeout-seconds must be positive"
    );
    anyhow::ensure!(
        args.duration > args.warmup + 2 * args.window,
        "--duration ({:?}) must exceed --warmup ({:?}) plus two --window ({:?})",
        args.duration,
        args.warmup,
        args.window
    );
    let (dir, temporary) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("probewatch-soak-{}", std::process::id())),
            true,
        ),
    };
    let run_dir = dir.join("run");
    if run_dir.exists() || dir.join("probewatch.sqlite").exists() {
        bail!(
            "{} already holds a run or a store: give an empty or new --dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    eprintln!(
        "probewatch soak: {:.0} s, a checkpoint every {} ms, {} clients pausing {} ms, in {}",
        args.duration.as_secs_f64(),
        args.interval_ms,
        args.clients,
        args.pause_ms,
        dir.display()
    );
    let daemon = start_daemon(&dir, args.workers)?;
    let base = daemon.url("")?;
    let store_path = dir.join("probewatch.sqlite");
    let shared = Arc::new(Shared {
        stop_load: AtomicBool::new(false),
        stop_sampler: AtomicBool::new(false),
        written: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        on_disk: Mutex::new(VecDeque::new()),
    });
    let t0 = Instant::now();
    let deadline = t0 + args.duration;

    // The writer: one dump every interval, on a fixed schedule.
    let writer = {
        let shared = shared.clone();
        let run_dir = run_dir.clone();
        let interval = Duration::from_millis(args.interval_ms);
        std::thread::spawn(move || -> Result<()> {
            let mut next = Instant::now();
            let mut k = 0u64;
            while !shared.stop_load.load(Ordering::Acquire) && Instant::now() < deadline {
                let step = k * STEP_EVERY;
                let path = write_dump(&run_dir, step, &cyclic_dump_bytes(step))
                    .with_context(|| format!("writing step {step} into {}", run_dir.display()))?;
                shared.written.fetch_add(1, Ordering::AcqRel);
                shared
                    .on_disk
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_back(path);
                k += 1;
                next += interval;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    // Behind schedule (a slow disk): do not burst.
                    next = now;
                }
            }
            Ok(())
        })
    };

    // The clients.
    let timeout = Duration::from_secs_f64(args.timeout_seconds);
    let rotation = rotation(&args.endpoints);
    let clients: Vec<_> = (0..args.clients)
        .map(|i| {
            let shared = shared.clone();
            let base = base.clone();
            let pause = Duration::from_millis(args.pause_ms);
            let max = args.max_requests;
            let rotation = rotation.clone();
            std::thread::spawn(move || {
                let client = Client::new(timeout, i % 2 == 0);
                let mut done = Vec::new();
                let mut k = i;
                while !shared.stop_load.load(Ordering::Acquire) && Instant::now() < deadline {
                    if let Some(max) = max
                        && shared.requests.fetch_add(1, Ordering::AcqRel) >= max
                    {
                        shared.stop_load.store(true, Ordering::Release);
                        break;
                    }
                    let endpoint = rotation[k % rotation.len()];
                    k += 1;
                    let t = Instant::now();
                    let result = get(&client, &format!("{base}{}", endpoint.path()));
                    let seconds = t.elapsed().as_secs_f64();
                    let error = match result {
                        Ok(body) if endpoint.body_ok(&body) => None,
                        Ok(body) => Some(format!(
                            "{}: incomplete body ({} bytes)",
                            endpoint.path(),
                            body.len()
                        )),
                        Err(e) => Some(e),
                    };
                    done.push(Request {
                        endpoint,
                        seconds,
                        error,
                    });
                    std::thread::sleep(pause);
                }
                done
            })
        })
        .collect();

    // The sampler (this thread's helper): every second, and the deletions
    // of `--keep`.
    let sampler = {
        let shared = shared.clone();
        let store_path = store_path.clone();
        let keep = args.keep;
        let pid = daemon.pid();
        std::thread::spawn(move || -> (Vec<Sample>, Option<String>) {
            let mut samples = Vec::new();
            let mut store: Option<Store> = None;
            let mut next = Instant::now();
            let mut last_progress = Instant::now();
            while !shared.stop_sampler.load(Ordering::Acquire) {
                if store.is_none() {
                    store = Store::open_reader(&store_path).ok();
                }
                let recorded = store
                    .as_ref()
                    .and_then(store_counts)
                    .map_or(0, |(d, f)| d + f);
                let (p, fds) = match read_proc(pid) {
                    Ok(v) => v,
                    Err(e) => return (samples, Some(format!("{e:#}"))),
                };
                let load = !shared.stop_load.load(Ordering::Acquire) && Instant::now() < deadline;
                let s = Sample {
                    t: t0.elapsed().as_secs_f64(),
                    rss_kib: p.rss_kib,
                    hwm_kib: p.hwm_kib,
                    anon_kib: p.anon_kib,
                    file_kib: p.file_kib,
                    shmem_kib: p.shmem_kib,
                    threads: p.threads,
                    fds,
                    written: shared.written.load(Ordering::Acquire),
                    recorded,
                    load,
                };
                samples.push(s);
                if last_progress.elapsed() >= Duration::from_secs(30) {
                    last_progress = Instant::now();
                    eprintln!(
                        "  {:>5.0} s: written {}, recorded {}, RSS {:.1} MiB, fds {}, threads {}",
                        s.t,
                        s.written,
                        s.recorded,
                        p.rss_kib as f64 / 1024.0,
                        fds,
                        p.threads
                    );
                }
                if keep > 0
                    && let Some(store) = &store
                {
                    delete_recorded(store, &shared.on_disk, keep);
                }
                next += Duration::from_secs(1);
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
            (samples, None)
        })
    };

    // The load phase.
    let mut requests = Vec::new();
    for c in clients {
        requests.extend(c.join().unwrap_or_default());
    }
    shared.stop_load.store(true, Ordering::Release);
    let load_seconds = t0.elapsed().as_secs_f64();
    let writer_result = writer
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the writer panicked")));
    let written = shared.written.load(Ordering::Acquire);
    eprintln!(
        "probewatch soak: load over after {load_seconds:.0} s ({written} checkpoints written, {} requests); draining",
        requests.len()
    );

    // Drain: wait until the store holds every checkpoint written.
    let drain_start = Instant::now();
    let reader = Store::open_reader(&store_path)
        .with_context(|| format!("opening {}", store_path.display()))?;
    let mut counts = (0, 0);
    while drain_start.elapsed() < args.drain_timeout {
        counts = store_counts(&reader).unwrap_or((0, 0));
        if counts.0 + counts.1 >= written || daemon.exited().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let drain_seconds = drain_start.elapsed().as_secs_f64();
    // The counters once the backlog is gone (the metrics change just after
    // the store: wait up to 10 s for them to catch up).
    let final_client = Client::new(timeout, false);
    let metrics_url = daemon.url("/metrics")?;
    let caught_up = Instant::now();
    let exposition = loop {
        let e = get(&final_client, &metrics_url);
        let counted = e.as_ref().map_or(0, |text| {
            [
                "probewatch_checkpoints_analyzed_total",
                "probewatch_checkpoints_failed_total",
                "probewatch_checkpoints_skipped_total",
            ]
            .iter()
            .map(|name| counter(text, name))
            .sum()
        });
        if counted >= written || caught_up.elapsed() > Duration::from_secs(10) {
            break e;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Descriptors once idle: give the server a moment to close the last
    // connections.
    std::thread::sleep(Duration::from_millis(500));
    let fds_after_drain = open_fds(daemon.pid()).ok();
    shared.stop_sampler.store(true, Ordering::Release);
    let (samples, sampler_error) = sampler.join().unwrap_or_default();
    let daemon_alive = daemon.exited().is_none();
    let exit = daemon
        .stop(Duration::from_secs(40))
        .ok()
        .and_then(|s| s.code());
    let integrity = reader
        .check_integrity()
        .map_err(|e| e.to_string())
        .and_then(|()| {
            let id = reader
                .run_id(RUN)
                .map_err(|e| e.to_string())?
                .ok_or("the run is not in the store")?;
            let rows = reader.checkpoints(id).map_err(|e| e.to_string())?;
            let steps: std::collections::BTreeSet<u64> = rows.iter().map(|r| r.step).collect();
            if steps.len() != rows.len() {
                return Err(format!(
                    "{} checkpoint rows for {} steps: a checkpoint was recorded twice",
                    rows.len(),
                    steps.len()
                ));
            }
            if rows.iter().any(|r| r.status != CheckpointStatus::Done) {
                return Err("a checkpoint is stored as failed".into());
            }
            Ok(())
        });
    counts = store_counts(&reader).unwrap_or(counts);
    drop(reader);

    let exposition = exposition.unwrap_or_default();
    let checkpoints = CheckpointFigures {
        written,
        analysed_store: counts.0,
        failed_store: counts.1,
        analysed_metric: counter(&exposition, "probewatch_checkpoints_analyzed_total"),
        failed_metric: counter(&exposition, "probewatch_checkpoints_failed_total"),
        skipped_metric: counter(&exposition, "probewatch_checkpoints_skipped_total"),
        lost_store: 0,
        lost_metric: 0,
        drain_seconds,
        store_bytes: ["", "-wal"]
            .iter()
            .filter_map(|s| {
                std::fs::metadata(format!("{}{s}", store_path.display()))
                    .ok()
                    .map(|m| m.len())
            })
            .sum(),
    }
    .account();
    let process = process_figures(
        &samples,
        args.warmup.as_secs_f64(),
        args.window.as_secs_f64(),
    )
    .map(|p| ProcessFigures {
        fds_after_drain,
        ..p
    });
    let endpoints = endpoint_figures(&requests);
    let tolerances = Tolerances {
        rss_mib: args.rss_tolerance_mib,
        rss_per_checkpoint_kib: args.rss_per_checkpoint_kib,
        fds: args.fd_tolerance,
    };
    let mut failures = verdict(
        &checkpoints,
        process.as_ref(),
        &endpoints,
        tolerances,
        exit,
        &integrity,
    );
    if let Err(e) = &writer_result {
        failures.push(format!("writer: {e:#}"));
    }
    if let Some(e) = sampler_error {
        failures.push(format!("sampler: {e}"));
    }
    if !daemon_alive {
        failures.push(format!(
            "the daemon died during the run:\n{}",
            daemon.log_tail(30)
        ));
    }
    let mut error_examples: Vec<String> = Vec::new();
    for e in requests.iter().filter_map(|r| r.error.as_ref()) {
        if error_examples.len() < 10 && !error_examples.contains(e) {
            error_examples.push(e.clone());
        }
    }
    let report = SoakReport {
        duration_seconds: load_seconds,
        warmup_seconds: args.warmup.as_secs_f64(),
        window_seconds: args.window.as_secs_f64(),
        interval_ms: args.interval_ms,
        clients: args.clients,
        pause_ms: args.pause_ms,
        keep: args.keep,
        workers: args.workers,
        checkpoints,
        process,
        fds_after_drain,
        requests: requests.len() as u64,
        errors: requests.iter().filter(|r| r.error.is_some()).count() as u64,
        error_examples,
        endpoints,
        tolerances,
        daemon_exit: exit,
        store_integrity: match &integrity {
            Ok(()) => "ok".into(),
            Err(e) => e.clone(),
        },
        passed: failures.is_empty(),
        failures,
        samples,
    };
    print_report(&mut std::io::stdout().lock(), &report)?;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if report.passed {
        if temporary {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(())
    } else {
        bail!(
            "soak failed ({} problem{}; the run, store and daemon.log are in {})",
            report.failures.len(),
            if report.failures.len() == 1 { "" } else { "s" },
            dir.display()
        )
    }
}

/// Deletes the oldest dumps beyond `keep` that the store has recorded (a
/// dump not yet recorded stays, so deletion never loses a checkpoint).
fn delete_recorded(store: &Store, on_disk: &Mutex<VecDeque<PathBuf>>, keep: usize) {
    let excess = {
        let q = on_disk.lock().unwrap_or_else(|p| p.into_inner());
        q.len().saturating_sub(keep)
    };
    if excess == 0 {
        return;
    }
    let Some(id) = store.run_id(RUN).ok().flatten() else {
        return;
    };
    let Ok(rows) = store.checkpoints(id) else {
        return;
    };
    let recorded: std::collections::HashSet<PathBuf> = rows.into_iter().map(|r| r.path).collect();
    let mut q = on_disk.lock().unwrap_or_else(|p| p.into_inner());
    while q.len() > keep {
        let Some(front) = q.front() else { break };
        if !recorded.contains(front) {
            break;
        }
        let _ = std::fs::remove_file(front);
        q.pop_front();
    }
}

fn ms(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.1}")
    } else {
        "-".into()
    }
}

fn print_report(out: &mut impl Write, r: &SoakReport) -> Result<()> {
    let c = &r.checkpoints;
    writeln!(
        out,
        "soak: {:.0} s of load, a checkpoint every {} ms, {} clients (pause {} ms), {} workers",
        r.duration_seconds, r.interval_ms, r.clients, r.pause_ms, r.workers
    )?;
    writeln!(
        out,
        "checkpoints: written {}, analysed {} (store) / {} (metric), failed {}/{}, skipped {}, lost {} (store) / {} (metric); backlog drained in {:.1} s; store {:.1} MiB",
        c.written,
        c.analysed_store,
        c.analysed_metric,
        c.failed_store,
        c.failed_metric,
        c.skipped_metric,
        c.lost_store,
        c.lost_metric,
        c.drain_seconds,
        c.store_bytes as f64 / (1024.0 * 1024.0)
    )?;
    match &r.process {
        Some(p) => {
            writeln!(
                out,
                "daemon RSS: start {:.1} MiB, end {:.1} MiB, max {:.1} MiB (trend {:+.1} MiB/h); fds: start {}, end {}, max {}{}; threads {} → {} (max {})",
                p.rss_start_mib,
                p.rss_end_mib,
                p.rss_max_mib,
                p.rss_slope_mib_per_hour,
                p.fds_start,
                p.fds_end,
                p.fds_max,
                r.fds_after_drain
                    .map_or(String::new(), |f| format!(", {f} after the drain")),
                p.threads_start,
                p.threads_end,
                p.threads_max
            )?;
        }
        None => writeln!(out, "daemon RSS and fds: too few samples")?,
    }
    writeln!(out, "requests: {} done, {} failed", r.requests, r.errors)?;
    writeln!(
        out,
        "{:<14} {:>9} {:>7} {:>9} {:>9} {:>9}",
        "endpoint", "requests", "errors", "p50 ms", "p99 ms", "max ms"
    )?;
    for e in &r.endpoints {
        writeln!(
            out,
            "{:<14} {:>9} {:>7} {:>9} {:>9} {:>9}",
            e.path,
            e.requests,
            e.errors,
            ms(e.p50_ms),
            ms(e.p99_ms),
            ms(e.max_ms)
        )?;
    }
    for e in &r.error_examples {
        writeln!(out, "  error: {e}")?;
    }
    if r.passed {
        writeln!(
            out,
            "PASS: nothing lost, RSS growth within {:.1} MiB, fds within {}, every request answered, clean exit",
            r.process
                .as_ref()
                .map_or(0.0, |p| rss_allowance_mib(p, r.tolerances)),
            r.tolerances.fds
        )?;
    } else {
        for f in &r.failures {
            writeln!(out, "FAIL: {f}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn slope_of_a_line() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 + 2.0 * i as f64)).collect();
        assert!((slope(&pts) - 2.0).abs() < 1e-12);
        assert_eq!(slope(&[(1.0, 5.0)]), 0.0);
    }

    fn sample(t: f64, rss_mib: f64, fds: u64, load: bool) -> Sample {
        Sample {
            t,
            rss_kib: (rss_mib * 1024.0) as u64,
            hwm_kib: (rss_mib * 1024.0) as u64 + 100,
            anon_kib: 0,
            file_kib: 0,
            shmem_kib: 0,
            threads: 10,
            fds,
            written: 0,
            recorded: 0,
            load,
        }
    }

    #[test]
    fn windows_skip_the_warmup_and_the_drain() {
        // Warm-up climbs to 30 MiB; then flat with one spike; the drain
        // (load off) is ignored for the end window.
        let mut s: Vec<Sample> = (0..5)
            .map(|i| sample(i as f64, 10.0 + 5.0 * i as f64, 9, true))
            .collect();
        s.extend((5..30).map(|i| {
            let spike = if i == 12 { 20.0 } else { 0.0 };
            // A request in flight now and then holds 3 more descriptors.
            let fds = if i % 4 == 0 { 15 } else { 12 };
            sample(i as f64, 30.0 + spike, fds, true)
        }));
        s.extend((30..35).map(|i| sample(i as f64, 80.0, 40, false)));
        let p = process_figures(&s, 5.0, 10.0).unwrap();
        assert_eq!(p.rss_start_mib, 30.0);
        assert_eq!(p.rss_end_mib, 30.0);
        assert_eq!(p.rss_max_mib, 80.0);
        assert_eq!((p.fds_start, p.fds_end, p.fds_max), (12, 12, 40));
        assert_eq!(p.fds_after_drain, None);
        assert!(p.rss_slope_mib_per_hour.abs() < 3600.0);
        // No sample after the warm-up: no figures.
        assert!(process_figures(&s[..5], 5.0, 10.0).is_none());
    }

    fn passing() -> (CheckpointFigures, ProcessFigures, Vec<EndpointFigures>) {
        let c = CheckpointFigures {
            written: 100,
            analysed_store: 100,
            analysed_metric: 100,
            ..CheckpointFigures::default()
        }
        .account();
        let p = ProcessFigures {
            rss_start_mib: 30.0,
            rss_end_mib: 31.0,
            rss_max_mib: 40.0,
            rss_hwm_mib: 41.0,
            rss_slope_mib_per_hour: 1.0,
            fds_start: 12,
            fds_end: 13,
            fds_after_drain: Some(13),
            checkpoints_between_windows: 64,
            fds_max: 20,
            threads_start: 8,
            threads_end: 8,
            threads_max: 12,
        };
        let e = vec![EndpointFigures {
            path: "/metrics".into(),
            requests: 50,
            errors: 0,
            p50_ms: 1.0,
            p99_ms: 2.0,
            max_ms: 3.0,
        }];
        (c, p, e)
    }

    const TOL: Tolerances = Tolerances {
        rss_mib: 16.0,
        rss_per_checkpoint_kib: 16.0,
        fds: 2,
    };

    #[test]
    fn a_clean_run_passes() {
        let (c, p, e) = passing();
        assert_eq!(
            verdict(&c, Some(&p), &e, TOL, Some(0), &Ok(())),
            Vec::<String>::new()
        );
    }

    #[test]
    fn each_problem_fails_the_run() {
        let (c, p, e) = passing();
        let fails =
            |c: &CheckpointFigures,
             p: &ProcessFigures,
             e: &[EndpointFigures],
             exit: Option<i32>,
             integ: Result<(), String>| { verdict(c, Some(p), e, TOL, exit, &integ) };
        // One checkpoint never analysed.
        let lost = CheckpointFigures {
            analysed_store: 99,
            analysed_metric: 99,
            ..c.clone()
        }
        .account();
        let f = fails(&lost, &p, &e, Some(0), Ok(()));
        assert_eq!(f.len(), 1);
        assert!(f[0].contains("lost 1 (store), 1 (metrics)"), "{f:?}");
        // Skipped checkpoints are not lost; counted twice is.
        let skipped = CheckpointFigures {
            analysed_store: 98,
            analysed_metric: 98,
            skipped_metric: 2,
            ..c.clone()
        }
        .account();
        assert!(fails(&skipped, &p, &e, Some(0), Ok(())).is_empty());
        let twice = CheckpointFigures {
            analysed_metric: 101,
            ..c.clone()
        }
        .account();
        assert!(fails(&twice, &p, &e, Some(0), Ok(()))[0].contains("lost 0 (store), -1"));
        // A failed checkpoint.
        let failed = CheckpointFigures {
            analysed_store: 99,
            failed_store: 1,
            analysed_metric: 99,
            failed_metric: 1,
            ..c.clone()
        }
        .account();
        assert!(fails(&failed, &p, &e, Some(0), Ok(()))[0].contains("failed"));
        // Memory and descriptors beyond the tolerances.
        // 16 MiB + 16 KiB × 64 checkpoints = 17 MiB allowed.
        assert_eq!(rss_allowance_mib(&p, TOL), 17.0);
        let within = ProcessFigures {
            rss_end_mib: 47.0,
            fds_end: 15,
            ..p.clone()
        };
        assert!(fails(&c, &within, &e, Some(0), Ok(())).is_empty());
        let leaky = ProcessFigures {
            rss_end_mib: 48.5,
            fds_after_drain: Some(15),
            ..p.clone()
        };
        let f = fails(&c, &leaky, &e, Some(0), Ok(()));
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[0].contains("grew 18.5 MiB"), "{f:?}");
        assert!(f[0].contains("17.0 MiB allowed"), "{f:?}");
        assert!(
            f[1].contains("grew by 3 (12 under load at the start → 15 after"),
            "{f:?}"
        );
        // A failed request, a bad exit, a corrupt store.
        let mut bad = e.clone();
        bad[0].errors = 1;
        assert!(fails(&c, &p, &bad, Some(0), Ok(()))[0].contains("1 of 50 requests failed"));
        assert!(fails(&c, &p, &e, Some(1), Ok(()))[0].contains("status 1"));
        assert!(fails(&c, &p, &e, None, Ok(()))[0].contains("killed"));
        assert!(fails(&c, &p, &e, Some(0), Err("page 3".into()))[0].contains("page 3"));
        // No figures at all.
        assert_eq!(verdict(&c, None, &e, TOL, Some(0), &Ok(())).len(), 1);
    }

    #[test]
    fn counters_of_the_run_are_summed() {
        let text = "# TYPE probewatch_checkpoints_failed counter\n\
            probewatch_checkpoints_failed_total{run=\"soak\",kind=\"format\"} 2\n\
            probewatch_checkpoints_failed_total{run=\"soak\",kind=\"io\"} 1\n\
            probewatch_checkpoints_failed_total{run=\"other\",kind=\"io\"} 7\n\
            probewatch_checkpoints_analyzed_total{run=\"soak\"} 41\n\
            probewatch_checkpoints_analyzed_total_extra{run=\"soak\"} 5\n\
            # EOF\n";
        assert_eq!(counter(text, "probewatch_checkpoints_failed_total"), 3);
        assert_eq!(counter(text, "probewatch_checkpoints_analyzed_total"), 41);
        assert_eq!(counter(text, "probewatch_checkpoints_skipped_total"), 0);
    }

    #[test]
    fn rotations() {
        use Endpoint as E;
        use EndpointArg as A;
        assert_eq!(
            rotation(&[A::Metrics, A::ReportRun, A::Report]),
            [E::Metrics, E::ReportRun, E::Metrics, E::ReportIndex]
        );
        assert_eq!(rotation(&[A::Metrics]), [E::Metrics]);
        assert_eq!(
            rotation(&[A::Report, A::Metrics]),
            [E::Metrics, E::ReportIndex]
        );
        assert_eq!(rotation(&[A::ReportRun]), [E::ReportRun]);
    }

    #[test]
    fn bodies_are_checked_whole() {
        assert!(Endpoint::Metrics.body_ok("a 1\n# EOF\n"));
        assert!(!Endpoint::Metrics.body_ok("a 1\n"));
        assert!(Endpoint::ReportRun.body_ok("<html>…</html>\n"));
        assert!(!Endpoint::ReportRun.body_ok("<html>…"));
        assert!(Endpoint::ReportIndex.body_ok("<a href=\"/report/soak\">"));
    }
}
