//! A harness for driving the real `probewatch` binary as a daemon: spawn it
//! with a config, keep every stderr line (JSON logs) for later assertions,
//! learn the port from the "serving metrics" log line, scrape `/metrics`
//! over real HTTP and parse it with the independent `prometheus-parse`, and
//! write activation dumps the way a training job does. A [`Daemon`] is
//! killed when dropped, and prints its log when the test is failing.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use safetensors::tensor::{Dtype, TensorView};
use serde_json::Value;

/// How long any wait in these tests may take before it fails: generous, so
/// a loaded machine only makes tests slower, never red.
pub const DEADLINE: Duration = Duration::from_secs(300);

/// The binary under test.
pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_probewatch")
}

/// Lines the child wrote to stderr, shared with the reader thread.
#[derive(Default)]
struct Log {
    lines: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

/// A running `probewatch` process whose stderr is collected.
pub struct Daemon {
    child: Mutex<Child>,
    pid: u32,
    log: Arc<Log>,
    reader: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Where it serves HTTP (from its "serving metrics" log line), once known.
    pub addr: Option<SocketAddr>,
    status: Mutex<Option<ExitStatus>>,
}

/// One JSON log line's event: its message and string fields.
#[derive(Debug, Clone)]
pub struct Event {
    /// `INFO`, `WARN`, ...
    pub level: String,
    /// The message.
    pub message: String,
    /// Every field (besides the message) as text.
    pub fields: HashMap<String, String>,
    /// The raw line.
    pub raw: String,
}

impl Event {
    /// The field `name`, or "".
    pub fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

/// Parses one tracing-subscriber JSON line; `None` for other lines.
pub fn parse_event(line: &str) -> Option<Event> {
    let v: Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields")?.as_object()?;
    let mut map = HashMap::new();
    for (k, v) in fields {
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        map.insert(k.clone(), text);
    }
    Some(Event {
        level: v.get("level")?.as_str()?.to_owned(),
        message: map.remove("message").unwrap_or_default(),
        fields: map,
        raw: line.to_owned(),
    })
}

impl Daemon {
    /// Spawns `probewatch ARGS` with `env` set, JSON logs expected on stderr.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn_as(args, env, None)
    }

    /// [`Daemon::spawn`] as the user and group `uid_gid` when given (the
    /// test must be root to switch).
    pub fn spawn_as(args: &[&str], env: &[(&str, &str)], uid_gid: Option<(u32, u32)>) -> Daemon {
        let mut cmd = Command::new(exe());
        if let Some((uid, gid)) = uid_gid {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning probewatch");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Log::default());
        let l2 = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut g = l2.lines.lock().unwrap();
                g.0.push(line);
                l2.changed.notify_all();
            }
            let mut g = l2.lines.lock().unwrap();
            g.1 = true;
            l2.changed.notify_all();
        });
        Daemon {
            pid: child.id(),
            child: Mutex::new(child),
            log,
            reader: Mutex::new(Some(reader)),
            addr: None,
            status: Mutex::new(None),
        }
    }

    /// `probewatch watch --config CONFIG --log-format json`, waiting until
    /// it serves metrics.
    pub fn watch(config: &Path, env: &[(&str, &str)]) -> Daemon {
        let c = config.to_str().expect("UTF-8 temp path");
        let mut d = Daemon::spawn(&["watch", "--config", c, "--log-format", "json"], env);
        d.wait_serving();
        d
    }

    /// Waits for the "serving metrics" line and records the address.
    pub fn wait_serving(&mut self) -> usize {
        let (i, e) = self.wait_event(0, "the 'serving metrics' log line", |e| {
            e.message == "serving metrics"
        });
        let url = e.field("url");
        let addr = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .and_then(|s| s.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("unexpected url field {url:?}"));
        self.addr = Some(addr.parse().expect("socket address in the url"));
        i
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Every stderr line so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.lines.lock().unwrap().0.clone()
    }

    /// Every parsed log event so far.
    pub fn events(&self) -> Vec<Event> {
        self.lines().iter().filter_map(|l| parse_event(l)).collect()
    }

    /// Waits for the first line at index ≥ `from` that `pred` accepts;
    /// returns its index and the line. Panics (with the log) at the deadline
    /// or when the process closes stderr first.
    pub fn wait_line(
        &self,
        from: usize,
        what: &str,
        mut pred: impl FnMut(&str) -> bool,
    ) -> (usize, String) {
        let end = Instant::now() + DEADLINE;
        let mut g = self.log.lines.lock().unwrap();
        let mut next = from;
        loop {
            while next < g.0.len() {
                if pred(&g.0[next]) {
                    return (next, g.0[next].clone());
                }
                next += 1;
            }
            if g.1 {
                drop(g);
                panic!("probewatch ended its log before {what}");
            }
            let now = Instant::now();
            if now >= end {
                drop(g);
                panic!("no {what} within {DEADLINE:?}");
            }
            g = self.log.changed.wait_timeout(g, end - now).unwrap().0;
        }
    }

    /// Like [`Daemon::wait_line`] for parsed JSON events.
    pub fn wait_event(
        &self,
        from: usize,
        what: &str,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> (usize, Event) {
        let (i, line) = self.wait_line(from, what, |l| parse_event(l).is_some_and(|e| pred(&e)));
        (i, parse_event(&line).expect("parsed before"))
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr.expect("daemon is serving"))
    }

    /// GET `path`: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&format!("{}{path}", self.base()))
    }

    /// Scrapes `/metrics` and parses it.
    pub fn scrape(&self) -> Scrape {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        Scrape::parse(&body)
    }

    /// Scrapes until `pred` holds and no run has late analysis stages
    /// running or waiting (`probewatch_late_stages_pending` 0 everywhere:
    /// every late value is the newest checkpoint's, or was abandoned);
    /// returns that scrape. [`Daemon::wait_metrics_now`] does not wait for
    /// the late stages.
    pub fn wait_metrics(&self, what: &str, mut pred: impl FnMut(&Scrape) -> bool) -> Scrape {
        self.wait_metrics_now(what, |s| pred(s) && s.late_settled())
    }

    /// Scrapes until `pred` holds; returns that scrape.
    pub fn wait_metrics_now(&self, what: &str, mut pred: impl FnMut(&Scrape) -> bool) -> Scrape {
        let end = Instant::now() + DEADLINE;
        loop {
            let s = self.scrape();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < end,
                "metrics never showed {what} within {DEADLINE:?}; last scrape:\n{}",
                s.text
            );
            assert!(
                self.is_running(),
                "probewatch exited while waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> bool {
        let mut status = self.status.lock().unwrap();
        if status.is_some() {
            return false;
        }
        match self.child.lock().unwrap().try_wait() {
            Ok(Some(s)) => {
                *status = Some(s);
                false
            }
            Ok(None) => true,
            Err(e) => panic!("waiting for probewatch: {e}"),
        }
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("running kill")
            .success();
        assert!(ok, "kill -{signal} {} failed", self.pid());
    }

    /// SIGKILL and reap.
    pub fn kill9(&self) {
        if self.is_running() {
            self.child.lock().unwrap().kill().expect("SIGKILL");
        }
        self.wait_exit();
    }

    /// Waits for the process to exit (panics at the deadline) and for its
    /// log to be fully read.
    pub fn wait_exit(&self) -> ExitStatus {
        let end = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(s) = *self.status.lock().unwrap() {
                break s;
            }
            if !self.is_running() {
                continue;
            }
            assert!(
                Instant::now() < end,
                "probewatch did not exit within {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.lock().unwrap().take() {
            let _ = r.join();
        }
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.is_running() {
            let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let lines = self.lines();
            let skip = lines.len().saturating_sub(150);
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

/// GET `url` with a real HTTP client: (status, body).
pub fn http_get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let body = resp
        .body_mut()
        .read_to_string()
        .unwrap_or_else(|e| panic!("GET {url}: body: {e}"));
    (resp.status().as_u16(), body)
}

/// A parsed exposition.
pub struct Scrape {
    /// The text as served.
    pub text: String,
    parsed: prometheus_parse::Scrape,
}

impl Scrape {
    /// Parses OpenMetrics text with `prometheus-parse`.
    pub fn parse(text: &str) -> Scrape {
        assert!(text.ends_with("# EOF\n"), "exposition without # EOF");
        let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("the exposition parses");
        Scrape {
            text: text.to_owned(),
            parsed,
        }
    }

    /// Samples named `name` whose labels include every pair of `labels`.
    pub fn samples(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&prometheus_parse::Sample> {
        self.parsed
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .collect()
    }

    /// The value of the one sample matching; `None` when there is none;
    /// panics when there are several.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = self.samples(name, labels);
        assert!(found.len() <= 1, "{name} {labels:?}: {found:?}");
        found.first().map(|s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: unexpected value {other:?}"),
        })
    }

    /// Like [`Scrape::get`] but the sample must exist.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in:\n{}", self.text))
    }

    /// A counter's value, 0 when the series does not exist yet.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// Every sample of `run` that describes its newest checkpoint (not the
    /// process counters, the duration histogram or the queue depth), keyed
    /// by metric name and sorted labels.
    /// Whether no run has late stages running or waiting.
    pub fn late_settled(&self) -> bool {
        self.parsed
            .samples
            .iter()
            .filter(|s| s.metric == "probewatch_late_stages_pending")
            .all(|s| matches!(s.value, prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) if v == 0.0))
    }

    pub fn checkpoint_series(&self, run: &str) -> BTreeMap<String, f64> {
        const PROCESS: [&str; 10] = [
            "probewatch_checkpoints_analyzed_total",
            "probewatch_checkpoints_failed_total",
            "probewatch_checkpoints_skipped_total",
            "probewatch_analysis_",
            "probewatch_queue_depth",
            "probewatch_stage_duration_seconds",
            "probewatch_stage_outcomes_total",
            "probewatch_late_stages_pending",
            "probewatch_analysis_step",
            "probewatch_analysis_started_timestamp_seconds",
        ];
        self.parsed
            .samples
            .iter()
            .filter(|s| {
                s.labels.get("run") == Some(run) && !PROCESS.iter().any(|p| s.metric.starts_with(p))
            })
            .map(|s| {
                let labels: BTreeMap<&String, &String> = s.labels.iter().collect();
                let v = match s.value {
                    prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                    ref other => panic!("{}: unexpected value {other:?}", s.metric),
                };
                (format!("{}{labels:?}", s.metric), v)
            })
            .collect()
    }

    /// `probewatch_checkpoints_failed_total` of `run` by kind.
    pub fn failures(&self, run: &str) -> HashMap<String, f64> {
        self.samples("probewatch_checkpoints_failed_total", &[("run", run)])
            .into_iter()
            .map(|s| {
                let v = match s.value {
                    prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                    ref other => panic!("failed_total: unexpected value {other:?}"),
                };
                (s.labels.get("kind").unwrap_or_default().to_owned(), v)
            })
            .filter(|(_, v)| *v > 0.0)
            .collect()
    }
}

/// A config file in `dir` listening on a free port, storing in
/// `dir/store.sqlite`, JSON logs, one worker; `runs` is TOML `[[run]]`
/// tables appended as they are.
pub fn write_config(dir: &Path, runs: &str) -> PathBuf {
    let path = dir.join("probewatch.toml");
    let text = format!(
        "listen = \"127.0.0.1:0\"\nstore = \"store.sqlite\"\nworkers = 1\nlog_format = \"json\"\n\n{runs}"
    );
    std::fs::write(&path, text).expect("writing the config");
    path
}

/// A `[[run]]` table scanning every 0.2 s.
pub fn run_table(name: &str, folder: &Path, extra: &str) -> String {
    format!(
        "[[run]]\nname = \"{name}\"\nfolder = \"{}\"\nscan_interval_seconds = 0.2\n{extra}\n",
        folder.display()
    )
}

/// Writes `bytes` to `folder/name` the way a training job does: into a
/// hidden temporary file, synced, then renamed into place.
pub fn write_renamed(folder: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let tmp = folder.join(format!(".tmp-{name}"));
    let done = folder.join(name);
    let mut f = std::fs::File::create(&tmp).expect("creating the temporary file");
    f.write_all(bytes).expect("writing");
    f.sync_all().expect("syncing");
    drop(f);
    std::fs::rename(&tmp, &done).expect("renaming into place");
    done
}

/// What to put in an activation dump (DESIGN §3.1), one task.
pub struct DumpSpec {
    /// Rows per layer, `n × dim` row-major.
    pub layers: Vec<Vec<f32>>,
    /// Columns.
    pub dim: usize,
    /// Label index per row.
    pub labels: Vec<i64>,
    /// Split per row (0 train, 1 test).
    pub split: Vec<u8>,
    /// Label names.
    pub label_names: Vec<String>,
    /// Task name.
    pub task: String,
    /// Training step.
    pub step: u64,
}

impl DumpSpec {
    /// The safetensors bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let n = self.labels.len();
        let layer_bytes: Vec<Vec<u8>> = self
            .layers
            .iter()
            .map(|l| {
                assert_eq!(l.len(), n * self.dim, "layer shape");
                l.iter().flat_map(|v| v.to_le_bytes()).collect()
            })
            .collect();
        let label_bytes: Vec<u8> = self.labels.iter().flat_map(|v| v.to_le_bytes()).collect();
        let names: Vec<String> = (0..self.layers.len())
            .map(|l| format!("layer.{l}"))
            .collect();
        let mut tensors: Vec<(String, TensorView<'_>)> = names
            .iter()
            .zip(&layer_bytes)
            .map(|(name, b)| {
                let view = TensorView::new(Dtype::F32, vec![n, self.dim], b).expect("shape");
                (name.clone(), view)
            })
            .collect();
        tensors.push((
            "labels".into(),
            TensorView::new(Dtype::I64, vec![n], &label_bytes).expect("shape"),
        ));
        tensors.push((
            "split".into(),
            TensorView::new(Dtype::U8, vec![n], &self.split).expect("shape"),
        ));
        let metadata: HashMap<String, String> = [
            (
                "label_names".to_owned(),
                serde_json::to_string(&self.label_names).expect("strings"),
            ),
            ("splits".to_owned(), r#"["train","test"]"#.to_owned()),
            ("task".to_owned(), self.task.clone()),
            ("step".to_owned(), self.step.to_string()),
        ]
        .into_iter()
        .collect();
        safetensors::serialize(tensors, Some(metadata)).expect("valid tensors serialise")
    }
}

/// A synthetic dump big enough that its analysis takes a while: `n` points
/// (a fifth of them test) in `dim` dimensions with `k` overlapping labels
/// (`geometry::synth`), `layers` layers (each a scaled, differently
/// perturbed copy), moved a little per `step` so checkpoints differ.
pub fn synthetic_dump(n: usize, dim: usize, k: usize, layers: usize, step: u64) -> DumpSpec {
    synthetic_dump_of(
        geometry::synth::Variant::Overlapping,
        n,
        dim,
        k,
        layers,
        step,
    )
}

/// [`synthetic_dump`] of another [`geometry::synth::Variant`].
pub fn synthetic_dump_of(
    variant: geometry::synth::Variant,
    n: usize,
    dim: usize,
    k: usize,
    layers: usize,
    step: u64,
) -> DumpSpec {
    use geometry::synth::{Rng, generate};
    let n_test = n / 5;
    let base = generate(n - n_test, n_test, dim, k, variant, 0x5eed);
    let layers = (0..layers)
        .map(|l| {
            let mut rng = Rng::new(1000 * step + l as u64 + 1);
            let scale = 1.0 + 0.25 * l as f64;
            base.data
                .iter()
                .map(|&x| (f64::from(x) * scale + 0.05 * rng.normal()) as f32)
                .collect()
        })
        .collect();
    DumpSpec {
        layers,
        dim,
        labels: base.labels.iter().map(|&l| i64::from(l)).collect(),
        split: base.split.clone(),
        label_names: (0..k).map(|i| format!("L{i}")).collect(),
        task: "synth".to_owned(),
        step,
    }
}

/// A temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// `dir/name`, created.
pub fn folder(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(&p).expect("creating a run folder");
    p
}

/// `probewatch probe FILE --json`, parsed.
pub fn probe_json(file: &Path) -> Value {
    let out = Command::new(exe())
        .args(["probe", file.to_str().expect("UTF-8 path"), "--json"])
        .output()
        .expect("running probewatch probe");
    assert!(
        out.status.success(),
        "probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("probe --json prints JSON")
}

/// A small, fast dump: 300 points, 16 dimensions, 5 separable labels, 3
/// layers, task `small`; moved a little per step.
pub fn small_dump(step: u64) -> DumpSpec {
    use geometry::synth::{Rng, Variant, generate};
    let base = generate(240, 60, 16, 5, Variant::Separable, 7);
    let layers = (0..3)
        .map(|l| {
            let mut rng = Rng::new(step * 10 + l + 1);
            base.data
                .iter()
                .map(|&x| (f64::from(x) * (1.0 + 0.5 * l as f64) + 0.1 * rng.normal()) as f32)
                .collect()
        })
        .collect();
    DumpSpec {
        layers,
        dim: 16,
        labels: base.labels.iter().map(|&l| i64::from(l)).collect(),
        split: base.split,
        label_names: ["A", "B", "C", "D", "E"].map(String::from).to_vec(),
        task: "small".to_owned(),
        step,
    }
}

/// Matches the log event `msg` about the file `path`.
pub fn is(msg: &'static str, path: &Path) -> impl Fn(&Event) -> bool {
    let path = path.display().to_string();
    move |e| e.message == msg && e.field("path") == path
}
