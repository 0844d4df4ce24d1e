//! `cargo xtask soak` end to end, short: the real tool starts the real
//! daemon as its child, writes demo dumps every 100 ms and scrapes
//! `/metrics` and `/report` with two clients for 12 s, then checks its own
//! verdict. This test checks that the run passes, that its JSON carries
//! the figures the README reports (and that they add up), and that a run it
//! cannot judge fails with a clear message. The 60 s run is a CI step
//! (`.ci/run`), the 10-minute one is run by hand (docs/reliability.md).

use std::process::Command;

use serde_json::Value;

/// The xtask binary under test.
fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_xtask")
}

/// The `probewatch` binary the soak drives: the one built beside this
/// xtask (same target folder and profile; `cargo test` builds it), so the
/// test never starts a build of its own.
fn probewatch() -> std::path::PathBuf {
    let p = std::path::Path::new(exe()).with_file_name("probewatch");
    assert!(
        p.is_file(),
        "{}: no probewatch binary beside xtask; build it first (`cargo test` or `cargo build`)",
        p.display()
    );
    p
}

#[test]
fn a_short_soak_passes_and_reports_its_figures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("soak.json");
    let out = Command::new(exe())
        .arg("--probewatch")
        .arg(probewatch())
        .args([
            "soak",
            "--duration",
            "12s",
            "--warmup",
            "3s",
            "--window",
            "3s",
            "--interval-ms",
            "100",
            "--clients",
            "2",
            "--pause-ms",
            "50",
            "--keep",
            "10",
            "--workers",
            "1",
            "--dir",
        ])
        .arg(dir.path().join("run-dir"))
        .arg("--json")
        .arg(&json)
        .output()
        .expect("running probewatch soak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "soak failed:\n{stdout}\n{stderr}\n{}",
        std::fs::read_to_string(dir.path().join("run-dir/daemon.log")).unwrap_or_default()
    );
    assert!(stdout.contains("PASS"), "{stdout}");
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written")).unwrap();
    assert_eq!(r["passed"], true);
    let c = &r["checkpoints"];
    let written = c["written"].as_u64().unwrap();
    // 12 s at 100 ms: about 120 (fewer when the machine is busy).
    assert!(written >= 20, "written {written}");
    assert_eq!(c["analysed_store"].as_u64(), Some(written));
    assert_eq!(c["analysed_metric"].as_u64(), Some(written));
    assert_eq!(c["lost_store"], 0);
    assert_eq!(c["lost_metric"], 0);
    assert_eq!(c["skipped_metric"], 0);
    // --keep 10: the older dumps were deleted once recorded.
    let left = std::fs::read_dir(dir.path().join("run-dir/run"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".safetensors")
        })
        .count();
    assert!(left <= 11, "{left} dumps left on disk");
    let p = &r["process"];
    for key in [
        "rss_start_mib",
        "rss_end_mib",
        "rss_max_mib",
        "fds_start",
        "fds_end",
    ] {
        assert!(p[key].as_f64().unwrap() > 0.0, "{key}: {p}");
    }
    assert!(p["rss_max_mib"].as_f64() >= p["rss_end_mib"].as_f64());
    let endpoints = r["endpoints"].as_array().unwrap();
    let paths: Vec<&str> = endpoints
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/metrics", "/report", "/report/soak"]);
    let mut total = 0;
    for e in endpoints {
        let n = e["requests"].as_u64().unwrap();
        assert!(n > 0, "{e}");
        assert_eq!(e["errors"], 0);
        assert!(e["p50_ms"].as_f64().unwrap() <= e["p99_ms"].as_f64().unwrap());
        assert!(e["p99_ms"].as_f64().unwrap() <= e["max_ms"].as_f64().unwrap());
        total += n;
    }
    assert_eq!(r["requests"].as_u64(), Some(total));
    assert_eq!(r["daemon_exit"], 0);
    assert_eq!(r["store_integrity"], "ok");
    // One sample a second, RSS and fds read from /proc.
    let samples = r["samples"].as_array().unwrap();
    assert!(samples.len() >= 10, "{} samples", samples.len());
    assert!(samples.iter().all(|s| s["rss_kib"].as_u64().unwrap() > 0));
}

#[test]
fn a_duration_too_short_to_judge_is_refused() {
    let out = Command::new(exe())
        .arg("--probewatch")
        .arg(probewatch())
        .args([
            "soak",
            "--duration",
            "5s",
            "--warmup",
            "3s",
            "--window",
            "2s",
        ])
        .output()
        .expect("running probewatch soak");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--duration") && stderr.contains("--warmup"),
        "{stderr}"
    );
}
