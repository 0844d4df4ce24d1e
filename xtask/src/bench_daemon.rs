//! Daemon benchmarks behind `cargo xtask bench`: the real
//! `probewatch watch` process on a temporary run folder, driven over real
//! files and real HTTP.
//!
//! - `daemon-time-to-metrics`: from the rename that completes a checkpoint
//!   to its step on `/metrics` (filesystem event → scan → analysis → store →
//!   snapshot), over a sequence of demo checkpoints;
//! - `daemon-scrape-latency`: `/metrics` scraped in a loop while a
//!   20,000-point, 768-d layer is being analysed; the latency distribution.
//! - `daemon-scrape-secured`: `/metrics` over TLS 1.3 with basic auth (a
//!   bcrypt cost-10 hash, certificate made with the `openssl` command), a
//!   new connection (full handshake) per scrape, against plain HTTP on an
//!   otherwise identical daemon: the price of the web config.
//!
//! The daemons are started with the harness's driver ([`harness::Launch`]:
//! a config on `127.0.0.1:0`, the port read from the "serving metrics" log
//! line) and scraped over plain HTTP with its client, a new connection per
//! request; the TLS client is this file's own.
//!
//! It measures and reports; it asserts nothing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use daemon::demo::{self, write_dump};
use geometry::synth::{Variant, generate};
use harness::{Client, Daemon, Launch, quantile, scratch_dir};
use source::extract::{ExtractedTask, encode_dump};

/// The run's name in the config and its `run` label.
const RUN: &str = "bench";

/// How long a daemon may take to start serving.
const START: Duration = Duration::from_secs(30);

/// Starts `probewatch watch` (the harness's driver, on a free port) on
/// `dir/run` with a store in `dir`, with the web config `web` when given.
fn start(dir: &Path, scan_interval: f64, web: Option<&Path>) -> Result<Daemon> {
    let run = dir.join("run");
    std::fs::create_dir_all(&run)?;
    let cfg = dir.join("probewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\nstore = \"store.sqlite\"\n\n[[run]]\nname = \"{RUN}\"\nfolder = \"run\"\nscan_interval_seconds = {scan_interval}\n"
        ),
    )?;
    let mut launch = Launch::watch(crate::probewatch_exe()?, &cfg);
    if let Some(web) = web {
        launch = launch.arg("--web.config.file").arg(web);
    }
    launch.start(START)
}

/// The HTTP client of the cases: a new connection per request.
fn client() -> Client {
    Client::new(Duration::from_secs(10), false)
}

/// Rename → step on `/metrics`, for `n` demo checkpoints.
pub fn time_to_metrics(n: u64) -> Result<(f64, String)> {
    let dir = scratch_dir("probewatch-bench")?;
    // A long scan interval: the filesystem event drives the pick-up.
    let d = start(&dir, 5.0, None)?;
    let run = dir.join("run");
    let mut lat = Vec::new();
    for k in 0..n {
        let step = k * demo::STEP_EVERY;
        let bytes = demo::dump_bytes(step);
        let t = Instant::now();
        write_dump(&run, step, &bytes)?;
        d.poll_metrics(
            &format!("step {step}"),
            Duration::from_secs(60),
            Duration::from_millis(2),
            |s| s.get("probewatch_checkpoint_step", &[("run", RUN)]) == Some(step as f64),
        )
        .with_context(|| format!("the daemon's log ends:\n{}", d.log_tail(20)))?;
        lat.push(t.elapsed().as_secs_f64());
    }
    let rss = d.peak_rss_mib().unwrap_or(f64::NAN);
    drop(d);
    std::fs::remove_dir_all(&dir).ok();
    let mean = lat.iter().sum::<f64>() / lat.len() as f64;
    Ok((
        mean,
        format!(
            "{n} demo checkpoints (360 items, 4 layers, d=24) renamed into place, scan interval 5 s (events drive it): rename → step on /metrics mean {:.0} ms, median {:.0} ms, max {:.0} ms; daemon peak RSS {rss:.0} MiB",
            1e3 * mean,
            1e3 * quantile(&lat, 0.5),
            1e3 * quantile(&lat, 1.0)
        ),
    ))
}

/// `/metrics` latency while a 20,000-point layer is analysed.
pub fn scrape_latency(points: usize) -> Result<(f64, String)> {
    let dir = scratch_dir("probewatch-bench")?;
    let d = start(&dir, 0.5, None)?;
    let run = dir.join("run");
    let layer = generate(points, points / 10, 768, 8, Variant::Separable, 7);
    let task = ExtractedTask {
        name: "pos".into(),
        label_names: demo::LABELS.iter().map(|s| s.to_string()).collect(),
        labels: layer.labels.iter().map(|&l| i64::from(l)).collect(),
        split: layer.split,
        splits: vec!["train".into(), "test".into()],
        dim: 768,
        layers: vec![layer.data],
    };
    let big = encode_dump(&[task], Some(0), &[]);
    write_dump(&run, 0, &big)?;
    drop(big);
    let (client, url) = (client(), d.url("/metrics")?);
    let start = Instant::now();
    let mut lat = Vec::new();
    loop {
        let t = Instant::now();
        let body = client.get_ok(&url)?;
        lat.push(t.elapsed().as_secs_f64());
        let s = harness::Scrape::try_parse(&body)?;
        let run = [("run", RUN)];
        let analysed = s.counter("probewatch_checkpoints_analyzed_total", &run)
            + s.sum("probewatch_checkpoints_failed_total", &run);
        if analysed >= 1.0 {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("the big checkpoint was not analysed within 600 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let busy = start.elapsed().as_secs_f64();
    let rss = d.peak_rss_mib().unwrap_or(f64::NAN);
    drop(d);
    std::fs::remove_dir_all(&dir).ok();
    let p99 = quantile(&lat, 0.99);
    Ok((
        p99,
        format!(
            "{} scrapes of /metrics (new connection each) during the {:.1} s analysis of a {points}+{} point, d=768 layer: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (seconds column = p99); daemon peak RSS {rss:.0} MiB",
            lat.len(),
            busy,
            points / 10,
            1e3 * quantile(&lat, 0.5),
            1e3 * p99,
            1e3 * quantile(&lat, 1.0)
        ),
    ))
}

/// A TLS client trusting the certificate in `ca_pem` (rustls, ring).
fn tls_client(ca_pem: &Path) -> Result<std::sync::Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem)? {
        roots.add(cert?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

/// One HTTPS GET over a new connection and a full handshake, with basic
/// auth; the status code.
fn get_tls(
    config: &std::sync::Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    path: &str,
    authorization: &str,
) -> Result<u16> {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(config.clone(), name)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // One write, one TLS record.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes())?;
    let mut buf = Vec::new();
    match tls.read_to_end(&mut buf) {
        Ok(_) => {}
        // A peer closing without close_notify, after the whole response.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
        Err(e) => return Err(e.into()),
    }
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {:?}", text.lines().next()))?;
    if status == 200 && !text.ends_with("# EOF\n") {
        bail!("incomplete /metrics body");
    }
    Ok(status)
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `/metrics` over TLS with basic auth against plain HTTP, `n` scrapes
/// each, a new connection per scrape, on idle daemons.
pub fn scrape_secured(n: usize) -> Result<(f64, String)> {
    let dir = scratch_dir("probewatch-bench")?;
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=probewatch-bench"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("this case makes its certificate with the `openssl` command: install openssl")?;
    if !status.success() {
        bail!("openssl req failed ({status})");
    }
    let hash = bcrypt::hash("bench-password", 10)?;
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             basic_auth_users:\n  bench: '{hash}'\n"
        ),
    )?;
    let secured_dir = dir.join("secured");
    let plain_dir = dir.join("plain");
    std::fs::create_dir_all(&secured_dir)?;
    std::fs::create_dir_all(&plain_dir)?;
    let secured = start(&secured_dir, 5.0, Some(&web))?;
    let plain = start(&plain_dir, 5.0, None)?;
    let secured_addr = secured.addr.context("the secured daemon's address")?;
    let (plain_client, plain_url) = (client(), plain.url("/metrics")?);
    let client = tls_client(&cert)?;
    let good = format!("Basic {}", base64(b"bench:bench-password"));
    let wrong = format!("Basic {}", base64(b"bench:wrong"));
    let timed = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let t = Instant::now();
        f()?;
        Ok(t.elapsed().as_secs_f64())
    };
    let expect = |got: u16, want: u16| {
        if got == want {
            Ok(())
        } else {
            Err(anyhow::anyhow!("status {got}, expected {want}"))
        }
    };
    // The first good scrape pays the bcrypt check; later ones hit the cache.
    let first = timed(&mut || expect(get_tls(&client, secured_addr, "/metrics", &good)?, 200))?;
    let mut tls_lat = Vec::with_capacity(n);
    let mut plain_lat = Vec::with_capacity(n);
    for _ in 0..n {
        tls_lat.push(timed(&mut || {
            expect(get_tls(&client, secured_addr, "/metrics", &good)?, 200)
        })?);
        plain_lat.push(timed(&mut || plain_client.get_ok(&plain_url).map(|_| ()))?);
    }
    let mut wrong_lat = Vec::new();
    for _ in 0..5 {
        wrong_lat.push(timed(&mut || {
            expect(get_tls(&client, secured_addr, "/metrics", &wrong)?, 401)
        })?);
    }
    drop((secured, plain));
    std::fs::remove_dir_all(&dir).ok();
    let p50 = quantile(&tls_lat, 0.5);
    Ok((
        p50,
        format!(
            "{n} scrapes each of an idle daemon, new connection per scrape: TLS 1.3 + basic auth p50 {:.2} ms, p99 {:.2} ms; plain HTTP p50 {:.2} ms, p99 {:.2} ms; first authenticated scrape (bcrypt cost 10, then cached) {:.1} ms; wrong password (bcrypt every time) median {:.1} ms (seconds column = TLS p50)",
            1e3 * p50,
            1e3 * quantile(&tls_lat, 0.99),
            1e3 * quantile(&plain_lat, 0.5),
            1e3 * quantile(&plain_lat, 0.99),
            1e3 * first,
            1e3 * quantile(&wrong_lat, 0.5),
        ),
    ))
}
