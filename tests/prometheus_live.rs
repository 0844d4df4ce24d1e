//! The shipped Prometheus files against the real servers: the real
//! `probewatch` binary watches two runs (one whose labels `NOUN` and `PROPN`
//! drift together — the demo's simulated run — and one whose geometry stays
//! put), the real `prometheus` (Debian's package) scrapes it every second
//! with `deploy/prometheus/prometheus.yml` and evaluates
//! `deploy/prometheus/rules/probewatch.rules.yml`, and the test reads
//! Prometheus' HTTP API with a real client: the series arrive with the
//! values the daemon serves, the shrink alert fires for the drifting run
//! only, and every query of the Grafana dashboard answers. A second test
//! backfills a stored history with `probewatch export-openmetrics` and
//! `promtool tsdb create-blocks-from openmetrics` and queries it back.
//!
//! The test copies of the files differ from the shipped ones only where a
//! test needs it, and every rewrite is checked to have matched: scrape and
//! evaluation intervals of 1 s, the target rewritten to the daemon's port,
//! and every `for:` of the rules shortened to 1 s.
//!
//! Without `prometheus`/`promtool` on the PATH the tests fail and say to
//! install Debian's `prometheus` package; they never pass silently.

#[path = "common/daemon.rs"]
mod daemon;
#[allow(dead_code)] // shared with tests/deploy_grafana.rs
#[path = "common/grafana.rs"]
mod grafana;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use daemon::{DEADLINE, Daemon, Scrape, run_table, write_config, write_renamed};
use serde_json::Value;

/// A program of Debian's `prometheus` package, from the PATH; panics with
/// what to install when it is missing.
fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed: install Debian's prometheus package \
             (`apt-get install -y prometheus`); this test needs the real server"
        )
    })
}

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `text` with `from` replaced by `to`; panics when `from` is absent, so a
/// change to the shipped file cannot make the test copy silently differ.
fn rewrite(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the shipped file no longer contains {from:?}"
    );
    text.replace(from, to)
}

/// A TCP port free at the time of asking.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free port")
        .port()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// A running `prometheus`; killed when dropped (its log printed when the
/// test is failing).
struct Prometheus {
    child: Child,
    base: String,
    log: PathBuf,
    agent: ureq::Agent,
}

impl Prometheus {
    /// Starts `prometheus` on a free loopback port with `config`, storing in
    /// `tsdb`, and waits until it is ready.
    fn start(config: &Path, tsdb: &Path, log: &Path) -> Prometheus {
        let port = free_port();
        let log_file = std::fs::File::create(log).expect("creating the log file");
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("starting prometheus");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut p = Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: log.to_path_buf(),
            agent,
        };
        let end = Instant::now() + DEADLINE;
        loop {
            if let Ok(mut r) = p.agent.get(format!("{}/-/ready", p.base)).call()
                && r.status() == 200
            {
                let _ = r.body_mut().read_to_string();
                break;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited ({status}) before it was ready");
            }
            assert!(Instant::now() < end, "prometheus not ready in {DEADLINE:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// GET an API path with query parameters; returns `data`.
    fn api(&self, path: &str, params: &[(&str, String)]) -> Value {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        for (k, v) in params {
            req = req.query(*k, v);
        }
        let mut resp = req.call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().expect("body");
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert!(
            status == 200 && v["status"] == "success",
            "GET {path} {params:?}: {status} {body}"
        );
        v["data"].clone()
    }

    /// Instant query (at `time`, or now): the result vector.
    fn query(&self, expr: &str, time: Option<f64>) -> Vec<Value> {
        let mut params = vec![("query", expr.to_owned())];
        if let Some(t) = time {
            params.push(("time", format!("{t:.3}")));
        }
        let data = self.api("/api/v1/query", &params);
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Range query: the result matrix.
    fn query_range(&self, expr: &str, start: f64, end: f64, step: f64) -> Vec<Value> {
        let params = [
            ("query", expr.to_owned()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{step}")),
        ];
        let data = self.api("/api/v1/query_range", &params);
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Every pending or firing alert.
    fn alerts(&self) -> Vec<Value> {
        self.api("/api/v1/alerts", &[])["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls `f` until it returns `Some`.
    fn wait<T>(&self, what: &str, mut f: impl FnMut(&Prometheus) -> Option<T>) -> T {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(Instant::now() < end, "prometheus never showed {what}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let skip = lines.len().saturating_sub(60);
            eprintln!("---- prometheus log, last lines ----");
            for l in &lines[skip..] {
                eprintln!("{l}");
            }
        }
    }
}

/// A sample's value (instant vectors: `value`, a `[time, "text"]` pair).
fn sample_value(sample: &Value) -> f64 {
    let text = sample["value"][1].as_str().expect("value text");
    text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// A result's series key in the form `Scrape::checkpoint_series` uses: the
/// metric name and its labels without Prometheus' own `job` and `instance`.
fn series_key(sample: &Value) -> String {
    let metric = sample["metric"].as_object().expect("metric labels");
    let name = metric["__name__"].as_str().expect("__name__");
    let labels: BTreeMap<String, String> = metric
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "__name__" | "job" | "instance"))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    format!("{name}{labels:?}")
}

/// `a` and `b` agree within `rel` relative.
fn close(a: f64, b: f64, rel: f64) -> bool {
    a == b || (a - b).abs() <= rel * a.abs().max(b.abs())
}

/// The demo's dump at step 0, labelled as `step`: a run whose geometry
/// never changes.
fn stable_dump(step: u64) -> Vec<u8> {
    let bytes = ::daemon::demo::dump_bytes(0);
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("demo dump header");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("demo dump");
    let mut metadata = meta.metadata().clone().unwrap_or_default();
    metadata.insert("step".to_owned(), step.to_string());
    safetensors::serialize(st.tensors(), Some(metadata)).expect("re-serialising")
}

/// The test copy of the rules: every `for:` shortened to 1 s.
fn test_rules(dir: &Path) -> PathBuf {
    let shipped = manifest().join("deploy/prometheus/rules/probewatch.rules.yml");
    let text = std::fs::read_to_string(&shipped).expect("reading the rules");
    let mut out = String::new();
    let mut rewritten = 0;
    for line in text.lines() {
        match line.trim_start().strip_prefix("for: ") {
            Some(_) => {
                let indent = &line[..line.len() - line.trim_start().len()];
                out.push_str(&format!("{indent}for: 1s\n"));
                rewritten += 1;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    assert!(
        rewritten >= 8,
        "only {rewritten} `for:` clauses in the rules"
    );
    let path = dir.join("probewatch.rules.yml");
    std::fs::write(&path, out).expect("writing the test rules");
    path
}

/// The test copy of the scrape config: 1 s intervals, the daemon's address,
/// the test copy of the rules.
fn test_config(dir: &Path, target: &str, rules: &Path) -> PathBuf {
    let shipped = manifest().join("deploy/prometheus/prometheus.yml");
    let text = std::fs::read_to_string(&shipped).expect("reading prometheus.yml");
    let text = rewrite(&text, "scrape_interval: 15s", "scrape_interval: 1s");
    let text = rewrite(&text, "evaluation_interval: 15s", "evaluation_interval: 1s");
    let text = rewrite(&text, "scrape_timeout: 10s", "scrape_timeout: 1s");
    let text = rewrite(&text, "\"127.0.0.1:19464\"", &format!("\"{target}\""));
    let text = rewrite(
        &text,
        "- rules/probewatch.rules.yml",
        &format!("- {}", rules.display()),
    );
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, text).expect("writing the test config");
    path
}

#[test]
fn prometheus_scrapes_alerts_on_the_drifting_run_and_answers_every_dashboard_query() {
    tool("prometheus");
    let dir = tempfile::tempdir().expect("temp dir");
    let drift = dir.path().join("drift");
    let stable = dir.path().join("stable");
    for f in [&drift, &stable] {
        std::fs::create_dir(f).expect("run folder");
    }
    let runs = run_table("drift", &drift, "") + &run_table("stable", &stable, "");
    let config = write_config(dir.path(), &runs);
    let daemon = Daemon::watch(&config, &[]);
    let target = daemon.addr.expect("serving").to_string();
    let rules = test_rules(dir.path());
    let prom_config = test_config(dir.path(), &target, &rules);
    let started = unix_now();
    let prom = Prometheus::start(
        &prom_config,
        &dir.path().join("tsdb"),
        &dir.path().join("prometheus.log"),
    );

    // A file that stays invalid: counted as a failure of the drifting run
    // (the dashboard's failure panel and the failing alert need one).
    write_renamed(&drift, "step-99999.safetensors", b"not a safetensors file");

    // The checkpoints, one step of both runs at a time; each stays the
    // newest for at least one scrape.
    let last = (::daemon::demo::CHECKPOINTS - 1) * ::daemon::demo::STEP_EVERY;
    for step in (0..=last).step_by(::daemon::demo::STEP_EVERY as usize) {
        ::daemon::demo::write_checkpoint(&drift, step).expect("writing a drift checkpoint");
        write_renamed(
            &stable,
            &format!("step-{step}.safetensors"),
            &stable_dump(step),
        );
        daemon.wait_metrics(&format!("step {step} of both runs"), |s| {
            [[("run", "drift")], [("run", "stable")]]
                .iter()
                .all(|r| s.get("probewatch_checkpoint_step", r) == Some(step as f64))
        });
        std::thread::sleep(Duration::from_millis(1100));
    }

    // The series arrive with the daemon's values: once Prometheus has the
    // last step of both runs, wait two more scrapes, then every checkpoint
    // series of each run must equal what /metrics says.
    for run in ["drift", "stable"] {
        let expr = format!("probewatch_checkpoint_step{{run=\"{run}\"}}");
        prom.wait(&format!("step {last} of {run}"), |p| {
            let r = p.query(&expr, None);
            (r.len() == 1 && sample_value(&r[0]) == last as f64).then_some(())
        });
    }
    std::thread::sleep(Duration::from_millis(2500));
    let scrape: Scrape = daemon.scrape();
    for run in ["drift", "stable"] {
        let expected = scrape.checkpoint_series(run);
        assert!(expected.len() > 100, "{run}: {} series", expected.len());
        let got: BTreeMap<String, f64> = prom
            .query(
                &format!("{{__name__=~\"probewatch_.+\",run=\"{run}\"}}"),
                None,
            )
            .iter()
            .map(|s| (series_key(s), sample_value(s)))
            .collect();
        for (key, v) in &expected {
            let g = got
                .get(key)
                .unwrap_or_else(|| panic!("{key} is not in Prometheus"));
            assert!(close(*g, *v, 0.0), "{key}: Prometheus {g}, /metrics {v}");
        }
    }
    let noun =
        "probewatch_label_min_distance_change_ratio{run=\"drift\",layer=\"3\",label=\"NOUN\"}";
    let ratio = sample_value(&prom.query(noun, None)[0]);
    assert!(ratio < -0.3, "the demo's NOUN shrank by only {ratio}");

    // The shrink alert fires for the drifting run, never for the stable one.
    let shrink = "ProbewatchLabelDistanceShrankVsBaseline";
    let firing = prom.wait("the shrink alert firing for run drift", |p| {
        let alerts = p.alerts();
        alerts
            .iter()
            .any(|a| {
                a["labels"]["alertname"] == shrink
                    && a["labels"]["run"] == "drift"
                    && a["state"] == "firing"
            })
            .then_some(alerts)
    });
    let drift_labels: Vec<&str> = firing
        .iter()
        .filter(|a| a["labels"]["alertname"] == shrink && a["labels"]["run"] == "drift")
        .filter_map(|a| a["labels"]["label"].as_str())
        .collect();
    assert!(drift_labels.contains(&"NOUN"), "{drift_labels:?}");
    for a in &firing {
        let name = a["labels"]["alertname"].as_str().unwrap_or_default();
        assert!(
            !((name.starts_with("ProbewatchLabelDistanceShrank")
                || name.starts_with("ProbewatchLabelHullDistanceShrank"))
                && a["labels"]["run"] == "stable"),
            "shrink alert for the stable run: {a}"
        );
    }
    // The state over the whole test: ALERTS never held a shrink alert of
    // the stable run.
    let stable_alerts = prom.query_range(
        "ALERTS{alertname=~\"ProbewatchLabel(Hull)?DistanceShrank.*\",run=\"stable\"}",
        started,
        unix_now(),
        1.0,
    );
    assert!(stable_alerts.is_empty(), "{stable_alerts:?}");
    // The invalid file made the failing alert fire for run drift.
    prom.wait("ProbewatchAnalysesFailing for run drift", |p| {
        p.alerts()
            .iter()
            .any(|a| {
                a["labels"]["alertname"] == "ProbewatchAnalysesFailing"
                    && a["labels"]["run"] == "drift"
                    && a["labels"]["kind"] == "format"
            })
            .then_some(())
    });

    // Every query of the Grafana dashboard, variables substituted, answers
    // with at least one series: the variables' label_values() selectors,
    // then each panel's queries (instant or range, as Grafana runs them).
    let d = grafana::dashboard();
    let vars = [
        ("run", "drift"),
        ("task", "pos"),
        ("layer", "3"),
        ("datasource", "unused"),
    ];
    for (name, _, query) in grafana::variables(&d) {
        let Some(inner) = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
        else {
            continue;
        };
        let (selector, label) = inner
            .rsplit_once(',')
            .expect("label_values(selector, label)");
        let expr = grafana::substitute(selector.trim(), &vars, "1m");
        let found = prom.query(&expr, None);
        let values: Vec<&str> = found
            .iter()
            .filter_map(|s| s["metric"][label.trim()].as_str())
            .collect();
        assert!(
            !values.is_empty(),
            "variable {name}: `{expr}` has no {label}"
        );
    }
    let end = unix_now();
    let mut checked = 0;
    for q in grafana::panel_queries(&d) {
        let expr = grafana::substitute(&q.expr, &vars, "1m");
        let result = if q.instant {
            prom.query(&expr, None)
        } else {
            prom.query_range(&expr, started, end, 1.0)
        };
        assert!(
            !result.is_empty(),
            "panel {:?} query {}: `{expr}` returned nothing",
            q.panel,
            q.ref_id
        );
        checked += 1;
    }
    assert!(checked >= 20, "{checked} panel queries");
}

/// Writes `bytes` as `folder/name` like a training job (temporary file,
/// synced, renamed), with the modification time `mtime`.
fn write_at(folder: &Path, name: &str, bytes: &[u8], mtime: SystemTime) {
    let tmp = folder.join(format!(".tmp-{name}"));
    let mut f = std::fs::File::create(&tmp).expect("creating");
    f.write_all(bytes).expect("writing");
    f.sync_all().expect("syncing");
    f.set_modified(mtime).expect("setting the mtime");
    drop(f);
    std::fs::rename(&tmp, folder.join(name)).expect("renaming into place");
}

#[test]
fn a_backfilled_history_is_queried_back_at_each_checkpoints_time() {
    let promtool = tool("promtool");
    let dir = tempfile::tempdir().expect("temp dir");
    let folder = dir.path().join("history");
    std::fs::create_dir(&folder).expect("run folder");
    let config = write_config(dir.path(), &run_table("history", &folder, ""));
    let daemon = Daemon::watch(&config, &[]);

    // Six checkpoints written 20 minutes apart, three hours ago (whole
    // seconds, so the times compare exactly).
    let now = unix_now().floor();
    let steps: Vec<u64> = (0..6).map(|i| i * 100).collect();
    let times: Vec<f64> = (0..6)
        .map(|i| now - 3.0 * 3600.0 + i as f64 * 1200.0)
        .collect();
    for (step, t) in steps.iter().zip(&times) {
        let mtime = UNIX_EPOCH + Duration::from_secs_f64(*t);
        let bytes = ::daemon::demo::dump_bytes(*step);
        write_at(&folder, &format!("step-{step}.safetensors"), &bytes, mtime);
    }
    let last = *steps.last().unwrap() as f64;
    let live = daemon.wait_metrics("the last step", |s| {
        s.get("probewatch_checkpoint_step", &[("run", "history")]) == Some(last)
    });
    let expected = live.checkpoint_series("history");
    daemon.signal("TERM");
    assert!(
        daemon.wait_exit().success(),
        "probewatch did not exit cleanly"
    );

    let om = dir.path().join("history.om");
    let out = Command::new(daemon::exe())
        .args(["export-openmetrics", "--run", "history", "--store"])
        .arg(dir.path().join("store.sqlite"))
        .arg("--out")
        .arg(&om)
        .output()
        .expect("running export-openmetrics");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&om).expect("the export");
    assert!(text.ends_with("# EOF\n"), "no # EOF");

    // With `--timestamps analysis` the same samples carry the time their
    // analysis finished: during this test, not three hours ago.
    let out = Command::new(daemon::exe())
        .args(["export-openmetrics", "--timestamps", "analysis", "--store"])
        .arg(dir.path().join("store.sqlite"))
        .output()
        .expect("running export-openmetrics");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let analysed = String::from_utf8(out.stdout).expect("UTF-8");
    let step_times: Vec<f64> = analysed
        .lines()
        .filter(|l| l.starts_with("probewatch_checkpoint_step{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().expect("a timestamp"))
        .collect();
    assert_eq!(step_times.len(), steps.len(), "{analysed}");
    for t in &step_times {
        assert!(
            *t >= now - 1.0 && *t <= unix_now(),
            "analysis time {t}, test began {now}"
        );
    }

    let tsdb = dir.path().join("tsdb");
    let out = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&tsdb)
        .output()
        .expect("running promtool");
    assert!(
        out.status.success(),
        "promtool refused the export: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A Prometheus that scrapes nothing, on the backfilled blocks.
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 1m\n").expect("config");
    let prom = Prometheus::start(&cfg, &tsdb, &dir.path().join("prometheus.log"));
    let step_of = |t: f64| prom.query("probewatch_checkpoint_step{run=\"history\"}", Some(t));
    for (step, t) in steps.iter().zip(&times) {
        // At the checkpoint's time, and a minute later (the value holds
        // until the next one), its step and its own timestamp.
        for at in [*t, t + 60.0] {
            let r = step_of(at);
            assert_eq!(r.len(), 1, "at {at}: {r:?}");
            assert_eq!(sample_value(&r[0]), *step as f64, "step at {at}");
        }
        let ts = prom.query(
            "probewatch_checkpoint_timestamp_seconds{run=\"history\"}",
            Some(*t),
        );
        assert_eq!(sample_value(&ts[0]), *t, "timestamp gauge at {t}");
    }
    // Nothing before the first checkpoint.
    assert!(step_of(times[0] - 60.0).is_empty());
    // At the last checkpoint's time every series equals what the daemon
    // served live for it.
    let got: BTreeMap<String, f64> = prom
        .query(
            "{__name__=~\"probewatch_.+\",run=\"history\"}",
            Some(times[5]),
        )
        .iter()
        .map(|s| (series_key(s), sample_value(s)))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "backfilled series differ from the live ones"
    );
    // The store keeps centroids as f32 (ARCHITECTURE.md), so centroid
    // movements rebuilt from it differ from the live ones in the 7th digit;
    // every other value is stored exactly.
    for (key, v) in &expected {
        let rel = if key.starts_with("probewatch_centroid_movement") {
            1e-5
        } else {
            1e-12
        };
        assert!(
            close(got[key], *v, rel),
            "{key}: backfilled {}, live {v}",
            got[key]
        );
    }
}
