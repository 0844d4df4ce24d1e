//! The one driver of a `probewatch` child process, for the tests and for
//! `cargo xtask` alike. [`Launch`] says how to start it (the binary is a
//! parameter; `watch --config … --log-format json` is the usual command),
//! [`Daemon`] is the running process: a thread collects every stderr line
//! (optionally teeing them to a file and keeping only the newest in
//! memory), [`Daemon::try_wait_serving`] learns the HTTP address from the
//! "serving metrics" log line (so a config listens on `127.0.0.1:0` and no
//! port is guessed), `/metrics` is scraped over real HTTP and parsed with
//! `prometheus-parse`, and [`Daemon::stop`] sends SIGTERM and waits, killing
//! it after a grace period. A [`Daemon`] is killed when dropped, and prints
//! the end of its log when the thread is panicking (a failing test).
//!
//! The fallible operations return [`anyhow::Result`] (what xtask wants);
//! the waits a test makes also come in a panicking form bounded by
//! [`DEADLINE`] (`wait_serving`, `wait_line`, `wait_metrics`, …).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::events::{Event, parse_event};
use crate::http::try_http_get;
use crate::scrape::Scrape;

/// How long any wait of the panicking forms may take before it fails:
/// generous, so a loaded machine only makes tests slower, never red.
pub const DEADLINE: Duration = Duration::from_secs(300);

/// Lines printed from the log when a test panics with a [`Daemon`] alive.
const TAIL_ON_PANIC: usize = 150;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How to start a `probewatch` child process.
#[derive(Clone, Debug)]
pub struct Launch {
    exe: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    user: Option<(u32, u32)>,
    log_file: Option<PathBuf>,
    keep_lines: Option<usize>,
}

impl Launch {
    /// The binary `exe` with no arguments; `RUST_LOG` is removed from its
    /// environment unless [`Launch::env`] sets it.
    pub fn new(exe: impl AsRef<Path>) -> Launch {
        Launch {
            exe: exe.as_ref().to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            user: None,
            log_file: None,
            keep_lines: None,
        }
    }

    /// `EXE watch --config CONFIG --log-format json`: the daemon, with the
    /// JSON log lines [`Daemon::try_wait_serving`] reads.
    pub fn watch(exe: impl AsRef<Path>, config: &Path) -> Launch {
        Launch::new(exe)
            .args(["watch", "--config"])
            .arg(config)
            .args(["--log-format", "json"])
    }

    /// One more argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Launch {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// More arguments.
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Launch {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// An environment variable of the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Launch {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Several environment variables.
    pub fn envs<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Launch {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// Runs the child as user `uid`, group `gid` (this process must be
    /// root to switch).
    pub fn user(mut self, uid: u32, gid: u32) -> Launch {
        self.user = Some((uid, gid));
        self
    }

    /// Also writes every stderr line to `path` (created or truncated), for
    /// a post-mortem after this process is gone.
    pub fn log_file(mut self, path: impl AsRef<Path>) -> Launch {
        self.log_file = Some(path.as_ref().to_path_buf());
        self
    }

    /// Keeps only the newest `n` stderr lines in memory (default: all), for
    /// long runs; line indices stay those of the whole log.
    pub fn keep_lines(mut self, n: usize) -> Launch {
        self.keep_lines = Some(n.max(1));
        self
    }

    /// Starts the child: stdin and stdout null, stderr collected.
    pub fn spawn(self) -> Result<Daemon> {
        let mut file = match &self.log_file {
            Some(p) => Some(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            ),
            None => None,
        };
        let mut cmd = Command::new(&self.exe);
        if let Some((uid, gid)) = self.user {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.exe.display()))?;
        let stderr = child.stderr.take().context("stderr is piped")?;
        let log = Arc::new(Log {
            lines: Mutex::new(Lines {
                keep: self.keep_lines,
                ..Lines::default()
            }),
            changed: Condvar::new(),
        });
        let l2 = log.clone();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                }
                let line = String::from_utf8_lossy(&buf).into_owned();
                if let Some(f) = &mut file {
                    // A full disk must not stop the collection.
                    let _ = writeln!(f, "{line}");
                }
                lock(&l2.lines).push(line);
                l2.changed.notify_all();
            }
            lock(&l2.lines).ended = true;
            l2.changed.notify_all();
        });
        Ok(Daemon {
            pid: child.id(),
            child: Mutex::new(child),
            log,
            reader: Mutex::new(Some(reader)),
            addr: None,
            status: Mutex::new(None),
        })
    }

    /// [`Launch::spawn`], then [`Daemon::try_wait_serving`] up to
    /// `timeout`; the error carries the end of the log.
    pub fn start(self, timeout: Duration) -> Result<Daemon> {
        let mut d = self.spawn()?;
        match d.try_wait_serving(timeout) {
            Ok(_) => Ok(d),
            Err(e) => Err(e.context(format!(
                "probewatch did not start serving; the end of its log:\n{}",
                d.log_tail(30)
            ))),
        }
    }
}

/// The lines the child wrote to stderr, shared with the reader thread.
#[derive(Default)]
struct Lines {
    /// The newest lines (all of them unless `keep`).
    kept: VecDeque<String>,
    /// Lines dropped from the front: the index of `kept[0]`.
    dropped: usize,
    /// Whether the child closed stderr.
    ended: bool,
    keep: Option<usize>,
}

impl Lines {
    fn push(&mut self, line: String) {
        self.kept.push_back(line);
        if let Some(n) = self.keep {
            while self.kept.len() > n {
                self.kept.pop_front();
                self.dropped += 1;
            }
        }
    }

    /// One past the last line's index.
    fn end(&self) -> usize {
        self.dropped + self.kept.len()
    }

    fn get(&self, i: usize) -> Option<&String> {
        self.kept.get(i.checked_sub(self.dropped)?)
    }
}

struct Log {
    lines: Mutex<Lines>,
    changed: Condvar,
}

/// How [`Daemon::stop`] ended the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// It had exited before SIGTERM was sent.
    AlreadyExited(ExitStatus),
    /// It exited after SIGTERM, this long after.
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// Time from SIGTERM to the exit.
        after: Duration,
    },
    /// It was still running after the grace period and was killed.
    Killed {
        /// The grace period it was given.
        grace: Duration,
    },
}

impl Stop {
    /// The exit code; `None` when it was killed (by us, or by a signal).
    pub fn code(&self) -> Option<i32> {
        match self {
            Stop::AlreadyExited(s) | Stop::Exited { status: s, .. } => s.code(),
            Stop::Killed { .. } => None,
        }
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::AlreadyExited(s) => write!(f, "had already exited ({s})"),
            Stop::Exited { status, after } => write!(
                f,
                "exited after SIGTERM in {:.1} s ({status})",
                after.as_secs_f64()
            ),
            Stop::Killed { grace } => write!(
                f,
                "did not exit within {} s of SIGTERM; killed",
                grace.as_secs()
            ),
        }
    }
}

/// A running `probewatch` process whose stderr is collected.
pub struct Daemon {
    child: Mutex<Child>,
    pid: u32,
    log: Arc<Log>,
    reader: Mutex<Option<JoinHandle<()>>>,
    /// Where it serves HTTP (from its "serving metrics" log line), once known.
    pub addr: Option<SocketAddr>,
    status: Mutex<Option<ExitStatus>>,
}

impl Daemon {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Every stderr line kept so far (all of them unless
    /// [`Launch::keep_lines`]).
    pub fn lines(&self) -> Vec<String> {
        lock(&self.log.lines).kept.iter().cloned().collect()
    }

    /// Every parsed log event so far.
    pub fn events(&self) -> Vec<Event> {
        self.lines().iter().filter_map(|l| parse_event(l)).collect()
    }

    /// The last `n` stderr lines, one per line.
    pub fn log_tail(&self, n: usize) -> String {
        let g = lock(&self.log.lines);
        let skip = g.kept.len().saturating_sub(n);
        g.kept
            .iter()
            .skip(skip)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits up to `timeout` for the first line at index ≥ `from` that
    /// `pred` accepts; returns its index and the line. An error at the
    /// timeout or when the process closes stderr first.
    pub fn try_wait_line(
        &self,
        from: usize,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Result<(usize, String)> {
        let end = Instant::now() + timeout;
        let mut g = lock(&self.log.lines);
        let mut next = from;
        loop {
            next = next.max(g.dropped);
            while next < g.end() {
                let line = g.get(next).expect("in range");
                if pred(line) {
                    return Ok((next, line.clone()));
                }
                next += 1;
            }
            if g.ended {
                bail!("probewatch ended its log before {what}");
            }
            let now = Instant::now();
            if now >= end {
                bail!("no {what} within {timeout:?}");
            }
            g = self
                .log
                .changed
                .wait_timeout(g, end - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// [`Daemon::try_wait_line`] up to [`DEADLINE`]; panics instead of an
    /// error (the log is printed as the daemon is dropped).
    pub fn wait_line(
        &self,
        from: usize,
        what: &str,
        pred: impl FnMut(&str) -> bool,
    ) -> (usize, String) {
        self.try_wait_line(from, what, DEADLINE, pred)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Like [`Daemon::try_wait_line`] for parsed JSON events.
    pub fn try_wait_event(
        &self,
        from: usize,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Result<(usize, Event)> {
        let (i, line) = self.try_wait_line(from, what, timeout, |l| {
            parse_event(l).is_some_and(|e| pred(&e))
        })?;
        Ok((i, parse_event(&line).expect("parsed before")))
    }

    /// Like [`Daemon::wait_line`] for parsed JSON events.
    pub fn wait_event(
        &self,
        from: usize,
        what: &str,
        pred: impl FnMut(&Event) -> bool,
    ) -> (usize, Event) {
        self.try_wait_event(from, what, DEADLINE, pred)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Waits up to `timeout` for the "serving metrics" line (JSON logs),
    /// records the address in [`Daemon::addr`] and returns the line's index.
    pub fn try_wait_serving(&mut self, timeout: Duration) -> Result<usize> {
        let (i, e) = self.try_wait_event(0, "the 'serving metrics' log line", timeout, |e| {
            e.message == "serving metrics"
        })?;
        let url = e.field("url");
        let addr = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .and_then(|s| s.strip_suffix("/metrics"))
            .with_context(|| format!("unexpected url field {url:?}"))?;
        self.addr = Some(addr.parse().context("socket address in the url")?);
        Ok(i)
    }

    /// [`Daemon::try_wait_serving`] up to [`DEADLINE`], panicking.
    pub fn wait_serving(&mut self) -> usize {
        self.try_wait_serving(DEADLINE)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// `http://ADDR/PATH`; an error before the address is known.
    pub fn url(&self, path: &str) -> Result<String> {
        let addr = self.addr.context("the daemon is not serving yet")?;
        Ok(format!("http://{addr}{path}"))
    }

    /// GET `path` over a new connection: (status, body).
    pub fn try_get(&self, path: &str) -> Result<(u16, String)> {
        try_http_get(&self.url(path)?)
    }

    /// [`Daemon::try_get`], panicking on a transport error.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.try_get(path).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Scrapes `/metrics` and parses it; a status other than 200 is an
    /// error.
    pub fn try_scrape(&self) -> Result<Scrape> {
        let (status, body) = self.try_get("/metrics")?;
        ensure!(status == 200, "GET /metrics: {body}");
        Scrape::try_parse(&body)
    }

    /// [`Daemon::try_scrape`], panicking.
    pub fn scrape(&self) -> Scrape {
        self.try_scrape().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Scrapes every `every` until `pred` holds and returns that scrape; an
    /// error when a scrape fails, the process exits or `timeout` passes.
    pub fn poll_metrics(
        &self,
        what: &str,
        timeout: Duration,
        every: Duration,
        mut pred: impl FnMut(&Scrape) -> bool,
    ) -> Result<Scrape> {
        let end = Instant::now() + timeout;
        loop {
            let s = self.try_scrape()?;
            if pred(&s) {
                return Ok(s);
            }
            ensure!(
                Instant::now() < end,
                "metrics never showed {what} within {timeout:?}; last scrape:\n{}",
                s.text
            );
            ensure!(
                self.is_running(),
                "probewatch exited while waiting for {what}"
            );
            std::thread::sleep(every);
        }
    }

    /// Scrapes until `pred` holds and no run has late analysis stages
    /// running or waiting (`probewatch_late_stages_pending` 0 everywhere:
    /// every late value is the newest checkpoint's, or was abandoned);
    /// returns that scrape. [`Daemon::wait_metrics_now`] does not wait for
    /// the late stages. Panics at the [`DEADLINE`].
    pub fn wait_metrics(&self, what: &str, mut pred: impl FnMut(&Scrape) -> bool) -> Scrape {
        self.wait_metrics_now(what, |s| pred(s) && s.late_settled())
    }

    /// Scrapes every 100 ms until `pred` holds; returns that scrape. Panics
    /// at the [`DEADLINE`].
    pub fn wait_metrics_now(&self, what: &str, pred: impl FnMut(&Scrape) -> bool) -> Scrape {
        self.poll_metrics(what, DEADLINE, Duration::from_millis(100), pred)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Whether the process is still running (reaps it when it is not).
    pub fn is_running(&self) -> bool {
        let mut status = lock(&self.status);
        if status.is_some() {
            return false;
        }
        match lock(&self.child).try_wait() {
            Ok(Some(s)) => {
                *status = Some(s);
                false
            }
            Ok(None) => true,
            Err(e) => panic!("waiting for probewatch: {e}"),
        }
    }

    /// Its exit status once it has exited; `None` while it runs.
    pub fn exited(&self) -> Option<ExitStatus> {
        if self.is_running() {
            None
        } else {
            *lock(&self.status)
        }
    }

    /// Sends `signal` (`TERM`, `INT`, `HUP`, `KILL`) with kill(1).
    pub fn try_signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .context("running kill")?;
        ensure!(status.success(), "kill -{signal} {} failed", self.pid);
        Ok(())
    }

    /// [`Daemon::try_signal`], panicking.
    pub fn signal(&self, signal: &str) {
        self.try_signal(signal).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// SIGKILL and reap.
    pub fn kill9(&self) {
        if self.is_running() {
            lock(&self.child).kill().expect("SIGKILL");
        }
        self.wait_exit();
    }

    /// Waits up to `timeout` for the process to exit, then for its log to be
    /// fully read; its exit status.
    pub fn try_wait_exit(&self, timeout: Duration) -> Result<ExitStatus> {
        let end = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = *lock(&self.status) {
                break s;
            }
            if !self.is_running() {
                continue;
            }
            ensure!(
                Instant::now() < end,
                "probewatch did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = lock(&self.reader).take() {
            let _ = r.join();
        }
        Ok(status)
    }

    /// [`Daemon::try_wait_exit`] up to [`DEADLINE`], panicking.
    pub fn wait_exit(&self) -> ExitStatus {
        self.try_wait_exit(DEADLINE)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// SIGTERM, then up to `grace` for the exit; SIGKILL after that. The
    /// log is complete when it returns. An error (after killing it) when
    /// SIGTERM cannot be sent.
    pub fn stop(&self, grace: Duration) -> Result<Stop> {
        if let Some(s) = self.exited() {
            self.try_wait_exit(grace)?;
            return Ok(Stop::AlreadyExited(s));
        }
        let t = Instant::now();
        if let Err(e) = self.try_signal("TERM") {
            self.kill9();
            return Err(e);
        }
        match self.try_wait_exit(grace) {
            Ok(status) => Ok(Stop::Exited {
                status,
                after: t.elapsed(),
            }),
            Err(_) => {
                self.kill9();
                Ok(Stop::Killed { grace })
            }
        }
    }

    /// Peak resident memory of the process so far (`VmHWM`), MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        crate::procfs::peak_rss_mib(self.pid)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let running =
            lock(&self.status).is_none() && matches!(lock(&self.child).try_wait(), Ok(None));
        if running {
            let mut child = lock(&self.child);
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let lines = self.lines();
            let skip = lines.len().saturating_sub(TAIL_ON_PANIC);
            eprintln!(
                "---- probewatch (pid {}) log, last {} lines ----",
                self.pid,
                lines.len() - skip
            );
            for l in &lines[skip..] {
                eprintln!("{l}");
            }
        }
    }
}
