//! The daemon's commands: `probewatch watch` (the configured runs),
//! `probewatch demo` (a simulated run) and `probewatch check-config`: logging,
//! the async runtime, signals (SIGINT/SIGTERM stop, SIGHUP reloads) and
//! sharding from the command line. The daemon itself is the `daemon` crate's.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::cli::{DemoArgs, LogFormatArg, WatchArgs};

/// `probewatch watch`: runs the daemon until SIGINT or SIGTERM.
pub(crate) fn watch(args: WatchArgs) -> Result<()> {
    let WatchArgs {
        config,
        log_format,
        web_config_file,
        shard,
        shard_count,
    } = args;
    // The file plus the command line's overrides: at start, and
    // again on every SIGHUP.
    let web_override = web_config_file.map(|f| absolute(&f)).transpose()?;
    let shard = resolve_shard(shard, shard_count)?;
    let load = move || -> Result<daemon::config::Config> {
        let mut cfg = daemon::config::load(&config)?;
        if let Some(file) = &web_override {
            cfg.web_config = Some(file.clone());
        }
        cfg.shard = shard;
        Ok(cfg)
    };
    let cfg = load()?;
    let scheme = check_web_config(cfg.web_config.as_deref())?;
    let json = match log_format {
        Some(f) => matches!(f, LogFormatArg::Json),
        None => cfg.log_format == daemon::config::LogFormat::Json,
    };
    init_logging(json);
    let reload: daemon::ReloadFn =
        std::sync::Arc::new(move || load().map_err(|e| format!("{e:#}")));
    serve(cfg, Some(reload), move |addr| {
        tracing::info!("metrics at {scheme}://{addr}/metrics");
    })
}

/// `probewatch check-config`: loads the file (and its web config and probe
/// sets) and prints what the daemon would do.
pub(crate) fn check_config(file: &std::path::Path) -> Result<()> {
    let cfg = daemon::config::load(file)?;
    print!("{}", cfg.describe());
    if let Some(web) = &cfg.web_config {
        println!("{}", daemon::web_config::load(web)?.describe());
    }
    check_probe_sets(&cfg)
}

/// `probewatch demo`.
pub(crate) fn demo(args: DemoArgs) -> Result<()> {
    init_logging(matches!(args.log_format, LogFormatArg::Json));
    let web_config = args.web_config_file.map(|f| absolute(&f)).transpose()?;
    demo_run(args.listen, args.interval_seconds, args.dir, web_config)
}

/// Logs through `tracing`: human-readable lines by default, one JSON object
/// per line with `json`; the level from `RUST_LOG` (default `info`); ANSI
/// colours only when stderr is a terminal.
fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a terminal (and never with NO_COLOR): a log
    // file or journal gets plain text.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Runs the daemon on a fresh runtime until SIGINT or SIGTERM; with
/// `reload`, SIGHUP reads the configuration again and applies it.
fn serve(
    cfg: daemon::config::Config,
    reload: Option<daemon::ReloadFn>,
    on_listening: impl FnOnce(std::net::SocketAddr) + Send + 'static,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("probewatch-io")
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = tx.send(true);
        });
        let reload = match reload {
            None => None,
            Some(load) => Some(daemon::Reload {
                requests: forward_sighup()?,
                load,
            }),
        };
        daemon::run_with_reload(cfg, rx, reload, on_listening).await?;
        anyhow::Ok(())
    });
    // An abandoned analysis may still be running on a blocking thread: do
    // not wait for it (its store write is one transaction, all or nothing).
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result?;
    Ok(())
}

/// A channel that receives one message per SIGHUP.
fn forward_sighup() -> Result<tokio::sync::mpsc::Receiver<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received");
            // A reload already waiting covers this one too.
            let _ = tx.try_send(());
        }
    });
    Ok(rx)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}

/// `probewatch demo`: a simulated run written by a background thread, and
/// the daemon watching it.
fn demo_run(
    listen: std::net::SocketAddr,
    interval: f64,
    dir: Option<PathBuf>,
    web_config: Option<PathBuf>,
) -> Result<()> {
    use daemon::config::{Config, LogFormat, RunConfig};
    use daemon::demo::{CHECKPOINTS, STEP_EVERY, write_checkpoint};
    anyhow::ensure!(
        interval.is_finite() && interval > 0.0,
        "--interval-seconds must be positive"
    );
    let scheme = check_web_config(web_config.as_deref())?;
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("probewatch-demo-{}", std::process::id())),
    };
    let run_dir = dir.join("run");
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let mut run = RunConfig::new("demo", &run_dir);
    run.scan_interval = std::time::Duration::from_secs_f64((interval / 2.0).clamp(0.2, 5.0));
    let cfg = Config {
        file: PathBuf::from("(demo)"),
        listen,
        store: dir.join("probewatch.sqlite"),
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        log_format: LogFormat::Human,
        runs: vec![run],
        web_config,
        shard: None,
        limits: daemon::config::Limits::default(),
    };
    let writer_dir = run_dir.clone();
    std::thread::spawn(move || {
        for k in 0..CHECKPOINTS {
            let step = k * STEP_EVERY;
            if writer_dir.join(format!("step-{step}.safetensors")).exists() {
                continue;
            }
            match write_checkpoint(&writer_dir, step) {
                Ok(p) => {
                    tracing::info!(path = %p.display(), step, "simulated training wrote a checkpoint")
                }
                Err(e) => {
                    tracing::error!(error = %e, "simulated training cannot write");
                    return;
                }
            }
            std::thread::sleep(std::time::Duration::from_secs_f64(interval));
        }
        tracing::info!("simulated training finished; the daemon keeps serving until Ctrl-C");
    });
    let folder = dir.display().to_string();
    serve(cfg, None, move |addr| {
        eprintln!(
            "\nprobewatch demo: a simulated fine-tuning run writes a checkpoint every {interval} s into\n  {folder}/run\n\
             Metrics:  {scheme}://{addr}/metrics\n\
             Report:   {scheme}://{addr}/report/demo (figures over the steps; reloads every 30 s)\n\
             Look at:  probewatch_label_min_distance_normalized{{label=\"NOUN\"}} (NOUN and PROPN drift together: it shrinks)\n\
             \x20         probewatch_label_min_distance_change_ratio, probewatch_centroid_movement, probewatch_spatial_similarity\n\
             Stop with Ctrl-C.\n"
        );
    })
}

/// `path` made absolute against the current directory.
fn absolute(path: &std::path::Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// Loads the web config once before the daemon starts, so that a bad one
/// stops the start with the file and the reason; returns the URL scheme.
fn check_web_config(file: Option<&std::path::Path>) -> Result<&'static str> {
    match file {
        None => Ok("http"),
        Some(f) => Ok(daemon::web_config::load(f)?.scheme()),
    }
}

/// This replica's shard: `--shard`, else `$PROBEWATCH_SHARD`, else the host
/// name's ordinal with `--shard-count`; `None` when none is given.
fn resolve_shard(
    shard: Option<String>,
    count: Option<u32>,
) -> Result<Option<daemon::shard::Shard>> {
    use daemon::shard::Shard;
    let env = std::env::var("PROBEWATCH_SHARD")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let given = match (shard, env) {
        (Some(s), _) => Some(("--shard", s)),
        (None, Some(s)) => Some(("PROBEWATCH_SHARD", s)),
        (None, None) => None,
    };
    let shard = match (given, count) {
        (Some((source, text)), count) => {
            let shard: Shard = text.parse().with_context(|| format!("{source} {text}"))?;
            if let Some(n) = count {
                anyhow::ensure!(
                    n == shard.count(),
                    "{source} {shard} disagrees with --shard-count {n}"
                );
            }
            shard
        }
        (None, Some(n)) => {
            let host = hostname().context("--shard-count needs the host name")?;
            Shard::from_hostname(&host, n).with_context(|| format!("--shard-count {n}"))?
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(shard))
}

/// `$HOSTNAME`, else the kernel's host name.
fn hostname() -> Result<String> {
    if let Ok(h) = std::env::var("HOSTNAME") {
        if !h.trim().is_empty() {
            return Ok(h.trim().to_owned());
        }
    }
    let path = "/proc/sys/kernel/hostname";
    let h = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    Ok(h.trim().to_owned())
}

/// Reads the probe sets of every `hf-checkpoints` run, as the daemon does
/// at start, and prints what they hold.
fn check_probe_sets(cfg: &daemon::config::Config) -> Result<()> {
    use source::probeset::ProbeSet;
    for run in &cfg.runs {
        if run.probes.is_empty() {
            continue;
        }
        println!("\nprobe sets of run {}:", run.name);
        for p in &run.probes {
            let set = ProbeSet::load(&p.task, &p.files)
                .with_context(|| format!("run '{}': task '{}'", run.name, p.task.name))?;
            daemon::check_probe_set_limits(run, &set, &cfg.limits)?;
            let mut per_split = vec![0usize; set.splits.len()];
            for item in &set.items {
                per_split[usize::from(item.split)] += 1;
            }
            let splits: Vec<String> = set
                .splits
                .iter()
                .zip(&per_split)
                .map(|(s, n)| format!("{s} {n}"))
                .collect();
            println!(
                "  {}: {} items ({}) over {} sentences, {} labels",
                p.task.name,
                set.items.len(),
                splits.join(", "),
                set.sentences.len(),
                set.label_names.len()
            );
        }
    }
    Ok(())
}
