//! The HTML report end to end: the real daemon stores the demo run (dumps
//! written the way a training job writes them), `/report/<run>` is fetched
//! over HTTP, `probewatch report` exports the same page to a file, and
//! headless Chromium (Debian's `chromium`) loads both: it must parse every
//! figure (`--dump-dom`), log no console error, and take a screenshot
//! (left in `target/report-e2e/` to look at).
//!
//! Chromium is required: without it the test fails and says how to install
//! it (`.ci/run` installs it). Set `PROBEWATCH_CHROMIUM` to use another
//! binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/daemon.rs"]
mod harness;
use harness::{Daemon, exe, run_table, write_config};

/// The sections every complete report has, one per figure plus the table.
const FIGURES: [&str; 5] = [
    "fig-min-distance",
    "fig-centroid-paths",
    "fig-movement",
    "fig-similarity",
    "fig-diff-pca",
];

fn chromium() -> PathBuf {
    let path = std::env::var_os("PROBEWATCH_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "headless Chromium is needed for the report test and was not found at {} \
         (install it with `apt-get install -y chromium`, or set PROBEWATCH_CHROMIUM)",
        path.display()
    );
    path
}

/// Runs headless Chromium with the flags from the issue on `url`, plus
/// `extra`; returns (stdout, stderr). Fails after 180 s.
fn run_chromium(url: &str, extra: &[&str]) -> (String, String) {
    let profile = tempfile::tempdir().expect("a Chromium profile directory");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting chromium");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).ok();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).ok();
        s
    });
    let end = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 180 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (out.join().expect("stdout"), err.join().expect("stderr"));
    assert!(
        status.success(),
        "chromium failed on {url} ({status}):\n{err}"
    );
    (out, err)
}

/// Console messages and load failures in Chromium's log.
fn console_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            l.contains("CONSOLE")
                || l.contains("Uncaught")
                || l.contains("Failed to load resource")
                || l.contains("net::ERR_")
        })
        .collect()
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).expect("reading the screenshot");
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR",
        "{} is not a PNG",
        path.display()
    );
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    (be(16), be(20))
}

/// Checks a page as Chromium parsed it: every figure section holds an SVG
/// with drawn marks, the table has one row per layer.
fn check_dom(dom: &str, layers: usize) {
    for id in FIGURES {
        let start = dom
            .find(&format!("<section id=\"{id}\">"))
            .unwrap_or_else(|| panic!("section {id} missing from the parsed page"));
        let section = &dom[start..];
        let section = &section[..section.find("</section>").expect("section closes")];
        assert!(section.contains("<h2>"), "{id} has no title");
        assert!(section.contains("class=\"caption\""), "{id} has no caption");
        let svg = section
            .find("<svg")
            .map(|i| &section[i..])
            .unwrap_or_else(|| panic!("{id} has no figure:\n{section}"));
        assert!(
            svg.contains("</svg>"),
            "{id}: the SVG did not survive parsing"
        );
        assert!(
            svg.contains("class=\"label\""),
            "{id}: no axis labels in the figure"
        );
        let marks = [
            "<path class=\"line",
            "<path class=\"trail",
            "<g class=\"box\"",
            "<circle class=\"dot\"",
        ];
        assert!(
            marks.iter().any(|m| svg.contains(m)),
            "{id}: no marks drawn"
        );
    }
    let table = &dom[dom
        .find("<section id=\"layer-table\">")
        .expect("table section")..];
    let body = &table[..table.find("</tbody>").expect("table body")];
    assert_eq!(
        body.matches("<tr>").count(),
        layers + 1,
        "one row per layer and the header"
    );
    assert!(!dom.contains("<script"), "the page needs no script");
}

#[test]
fn report_of_a_stored_demo_run_renders_in_headless_chromium() {
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-e2e");
    std::fs::create_dir_all(&out_dir).expect("creating the output folder");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).expect("creating the run folder");
    let cfg = write_config(dir.path(), &run_table("demo", &run, ""));
    let d = Daemon::watch(&cfg, &[]);

    // One checkpoint: the page says what needs more.
    daemon::demo::write_checkpoint(&run, 0).expect("writing a demo checkpoint");
    let r = [("run", "demo")];
    d.wait_metrics("the first checkpoint", |s| {
        s.counter("probewatch_checkpoints_analyzed_total", &r) == 1.0
    });
    let (status, single) = d.get("/report/demo");
    assert_eq!(status, 200, "{single}");
    assert!(
        single.contains("Needs at least two analysed checkpoints"),
        "{single}"
    );
    assert!(single.contains("<section id=\"layer-table\">"));

    // The whole simulated run.
    let steps: Vec<u64> = (0..daemon::demo::CHECKPOINTS)
        .map(|k| k * daemon::demo::STEP_EVERY)
        .collect();
    for &step in &steps[1..] {
        daemon::demo::write_checkpoint(&run, step).expect("writing a demo checkpoint");
    }
    let n = steps.len() as f64;
    d.wait_metrics("every demo checkpoint", |s| {
        s.counter("probewatch_checkpoints_analyzed_total", &r) == n
    });
    let (status, served) = d.get("/report/demo");
    assert_eq!(status, 200, "{served}");
    assert!(
        served.contains("<meta http-equiv=\"refresh\""),
        "a watched run's page reloads"
    );
    assert!(!served.contains("Needs at least two"), "{served}");
    let (status, index) = d.get("/report");
    assert_eq!(status, 200);
    assert!(index.contains("href=\"/report/demo\""), "{index}");

    // The same page as a file, from the store the daemon is still writing.
    let file = out_dir.join("demo-report.html");
    let store = dir.path().join("store.sqlite");
    let export = Command::new(exe())
        .args(["report", "--store"])
        .arg(&store)
        .args(["--run", "demo", "--out"])
        .arg(&file)
        .output()
        .expect("running probewatch report");
    assert!(
        export.status.success(),
        "probewatch report failed: {}",
        String::from_utf8_lossy(&export.stderr)
    );
    let html = std::fs::read_to_string(&file).expect("reading the report");
    assert!(
        !html.contains("http-equiv=\"refresh\""),
        "a file does not reload"
    );
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "nothing fetched"
    );
    // The figures are the same as served (only the header's reload note and
    // the links differ).
    let figures = |page: &str| {
        let a = page
            .find("<section id=\"fig-min-distance\">")
            .expect("first figure");
        let b = page.find("<p class=\"nav\">Layer:").expect("layer links");
        page[a..b].to_owned()
    };
    assert_eq!(figures(&html), figures(&served));

    // The console check sees errors when there are some.
    let bad = out_dir.join("console-error.html");
    std::fs::write(
        &bad,
        "<!doctype html><script>console.error('boom')</script>",
    )
    .expect("writing a page");
    let (_, log) = run_chromium(&format!("file://{}", bad.display()), &["--dump-dom"]);
    assert!(
        !console_errors(&log).is_empty(),
        "the console check is blind:\n{log}"
    );

    // Chromium: the file, parsed; the served page, parsed and photographed.
    let file_url = format!("file://{}", file.display());
    let (dom, log) = run_chromium(&file_url, &["--dump-dom"]);
    check_dom(&dom, daemon::demo::LAYERS);
    assert!(console_errors(&log).is_empty(), "console errors:\n{log}");

    let url = format!("http://{}/report/demo", d.addr.expect("serving"));
    let (dom, log) = run_chromium(&url, &["--dump-dom"]);
    check_dom(&dom, daemon::demo::LAYERS);
    assert!(console_errors(&log).is_empty(), "console errors:\n{log}");

    let shot = out_dir.join("demo-report.png");
    let _ = std::fs::remove_file(&shot);
    let (_, log) = run_chromium(
        &url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,4300",
        ],
    );
    assert!(console_errors(&log).is_empty(), "console errors:\n{log}");
    assert_eq!(png_size(&shot), (1200, 4300));
    let size = std::fs::metadata(&shot).expect("screenshot").len();
    assert!(
        size > 50_000,
        "a {size}-byte screenshot is too plain to hold the figures"
    );

    // Bad requests name what is wrong and leave the daemon serving.
    let (status, body) = d.get("/report/demo?task=nope");
    assert_eq!(status, 404);
    assert!(
        body.contains("no task 'nope'") && body.contains("pos"),
        "{body}"
    );
    let (status, _) = d.get("/metrics");
    assert_eq!(status, 200);
}

#[test]
fn report_cli_names_the_file_and_the_run_on_bad_input() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("missing.sqlite");
    let out = Command::new(exe())
        .args(["report", "--store"])
        .arg(&missing)
        .args(["--run", "x", "--out"])
        .arg(dir.path().join("r.html"))
        .output()
        .expect("running probewatch report");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.sqlite"), "{err}");
    assert!(!missing.exists(), "a reader never creates the store");

    let db = dir.path().join("h.sqlite");
    let store = store::Store::open(&db).expect("creating a store");
    store
        .upsert_run("alpha", dir.path(), "{}")
        .expect("adding a run");
    drop(store);
    let out = Command::new(exe())
        .args(["report", "--store"])
        .arg(&db)
        .args(["--run", "beta", "--out"])
        .arg(dir.path().join("r.html"))
        .output()
        .expect("running probewatch report");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no run named 'beta'") && err.contains("alpha"),
        "{err}"
    );
    // A run with no analysed checkpoint yet still gives a page that says so.
    let page = dir.path().join("alpha.html");
    let out = Command::new(exe())
        .args(["report", "--store"])
        .arg(&db)
        .args(["--run", "alpha", "--out"])
        .arg(&page)
        .output()
        .expect("running probewatch report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).expect("reading the page");
    assert!(
        html.contains("No checkpoint of this run has been analysed yet"),
        "{html}"
    );
}
