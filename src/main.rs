//! The `probewatch` binary: command-line parsing and output formatting only;
//! all work happens in the library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use analysis::{AnalysisOptions, Report, SubSplits, analyse_dump};
use geometry::classifier::{ClassifierParams, search_configs};
use geometry::measures::{LabelDistance, MeasureParams};
use source::dump::ActivationDump;

#[derive(Parser)]
#[command(
    name = "probewatch",
    version,
    about = "Watch what fine-tuning does to the label geometry of a model's representations"
)]
struct Cli {
    /// Worker threads for numeric work (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LabelDistanceArg {
    Mean,
    Min,
}

#[derive(Clone, Copy, ValueEnum)]
enum WordPoolingArg {
    First,
    Mean,
}

#[derive(Clone, Copy, ValueEnum)]
enum SentencePoolingArg {
    Cls,
    Mean,
}

#[derive(clap::Args)]
struct ExtractArgs {
    /// The checkpoint folder (config.json, model.safetensors or shards).
    #[arg(long)]
    model: PathBuf,
    /// Probe-set files, `FILE` or `FILE:split` (CoNLL-U, CoNLL-U-Lex,
    /// JSON Lines); repeat the option for several files.
    #[arg(long = "probe-set", required = true)]
    probe_sets: Vec<String>,
    /// Task: upos, xpos, deprel, dep, ps_role, ps_fxn, labels (JSONL).
    #[arg(long)]
    task: String,
    /// tokenizer.json (default: the model folder's).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Word vector: the first subword's, or the mean of its subwords.
    #[arg(long, value_enum, default_value = "first")]
    word_pooling: WordPoolingArg,
    /// Sentence vector (JSON Lines sentence tasks): the first special
    /// token's ([CLS]), or the mean of the sentence's tokens.
    #[arg(long, value_enum, default_value = "cls")]
    sentence_pooling: SentencePoolingArg,
    /// Training step to record in the dump's metadata.
    #[arg(long)]
    step: Option<u64>,
    /// Output activation dump (safetensors).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// One-shot DirectProbe analysis of an activation dump.
    Probe {
        /// The activation dump (safetensors).
        file: PathBuf,
        /// Task to analyse (required when the dump holds several).
        #[arg(long)]
        task: Option<String>,
        /// Layers, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        layers: Option<Vec<usize>>,
        /// Print the report as one JSON document.
        #[arg(long)]
        json: bool,
        /// Include per-label centroids in the JSON.
        #[arg(long)]
        centroids: bool,
        /// Label distance from cluster distances.
        #[arg(long, value_enum, default_value = "mean")]
        label_distance: LabelDistanceArg,
        /// Drop clusters with at most this many points before measuring.
        #[arg(long, default_value_t = 0)]
        drop_clusters_up_to: usize,
        /// Skip DirectProbe on the test split (no train/test similarity).
        #[arg(long)]
        no_train_test: bool,
        /// Also train the MLP classifier probe on every layer
        /// (`classifier_accuracy`: mean and std over 5 seeds per split).
        #[arg(long)]
        classifier: bool,
        /// Configurations the classifier search tries (1 to 128; the first
        /// of a fixed order over the study's grid).
        #[arg(long, default_value_t = daemon::config::DEFAULT_CLASSIFIER_CONFIGURATIONS as u64,
              value_parser = clap::value_parser!(u64).range(1..=128))]
        classifier_configurations: u64,
        /// The memorisation setting: carve `subtrain`/`subtest` 80:20 out of
        /// train (fixed seed, per label), fit clusters and classifier on
        /// subtrain, score every other split.
        #[arg(long)]
        memorisation_splits: bool,
        /// Only the core stage (what the daemon publishes first): label-hull
        /// distances, centroids, scale, train/test hull similarity; no
        /// DirectProbe clustering and no classifier.
        #[arg(long, conflicts_with = "classifier")]
        core_only: bool,
    },
    /// The daemon: watch the configured runs, analyse each new checkpoint,
    /// store the history and serve Prometheus metrics.
    Watch {
        /// The TOML configuration (see config/probewatch.example.toml).
        #[arg(long)]
        config: PathBuf,
        /// Log format (overrides the config's `log_format`).
        #[arg(long, value_enum)]
        log_format: Option<LogFormatArg>,
        /// Exporter-toolkit web config (YAML: TLS, basic auth) for the
        /// listener; overrides the config's `web_config`.
        #[arg(long = "web.config.file", value_name = "FILE")]
        web_config_file: Option<PathBuf>,
        /// Analyse only shard i of n of every run's (task, layer) pairs
        /// (round-robin over the sorted pairs). Default: $PROBEWATCH_SHARD,
        /// else the host name's `-<i>` suffix when --shard-count is given.
        #[arg(long, value_name = "i/n")]
        shard: Option<String>,
        /// Number of shards, the index taken from the host name's `-<i>`
        /// suffix (a StatefulSet pod's ordinal).
        #[arg(long, value_name = "n")]
        shard_count: Option<u32>,
    },
    /// Write an activation dump from a model checkpoint: tokenize the probe
    /// set, run the encoder, keep each item's vector at every layer.
    Extract(ExtractArgs),
    /// Check a configuration file and print what the daemon would do.
    CheckConfig {
        /// The TOML configuration.
        file: PathBuf,
    },
    /// The daemon over a simulated fine-tuning run (no set-up): writes an
    /// activation dump every few seconds to a temporary folder and serves
    /// the metrics; runs until Ctrl-C.
    Demo {
        /// Address to serve on.
        #[arg(long, default_value_t = std::net::SocketAddr::from(([127, 0, 0, 1], daemon::config::DEFAULT_PORT)))]
        listen: std::net::SocketAddr,
        /// Seconds between two simulated checkpoints.
        #[arg(long, default_value_t = 3.0)]
        interval_seconds: f64,
        /// Folder for the run and the store (default: a new temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Log format.
        #[arg(long, value_enum, default_value = "human")]
        log_format: LogFormatArg,
        /// Exporter-toolkit web config (YAML: TLS, basic auth) for the
        /// listener.
        #[arg(long = "web.config.file", value_name = "FILE")]
        web_config_file: Option<PathBuf>,
    },
    /// Print the stored history as OpenMetrics, each checkpoint's samples at
    /// its own time, for `promtool tsdb create-blocks-from openmetrics`.
    ExportOpenmetrics {
        /// The history database (the `store` of the configuration).
        #[arg(long)]
        store: PathBuf,
        /// Only this run (default: every run in the store).
        #[arg(long)]
        run: Option<String>,
        /// Time of each checkpoint's samples: the checkpoint file's
        /// modification time, or when its analysis finished.
        #[arg(long, value_enum, default_value = "checkpoint")]
        timestamps: TimestampsArg,
        /// Include per-label-pair distances (K(K-1)/2 series per layer).
        #[arg(long)]
        label_pairs: bool,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a run's HTML report (figures and layer table, one
    /// self-contained file) from the daemon's history store.
    Report {
        /// The daemon's SQLite history (read only; the daemon may be running).
        #[arg(long)]
        store: PathBuf,
        /// The run (its `name` in the daemon's config; omit to list the runs).
        #[arg(long)]
        run: Option<String>,
        /// Task (default: the first by name).
        #[arg(long)]
        task: Option<String>,
        /// Layer of the min-distance figure (default: the last).
        #[arg(long)]
        layer: Option<usize>,
        /// Output HTML file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum TimestampsArg {
    Checkpoint,
    Analysis,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed stdout (`probewatch probe … | head`) is not an error.
            let broken_pipe = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) || e.chain().any(|c| {
                c.downcast_ref::<serde_json::Error>()
                    .is_some_and(|j| j.is_io())
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            eprintln!("probewatch: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .context("configuring the thread pool")?;
    }
    match cli.command {
        Command::Watch {
            config,
            log_format,
            web_config_file,
            shard,
            shard_count,
        } => {
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
        Command::Extract(args) => extract(&args, cli.threads.unwrap_or(0)),
        Command::CheckConfig { file } => {
            let cfg = daemon::config::load(&file)?;
            print!("{}", cfg.describe());
            if let Some(web) = &cfg.web_config {
                println!("{}", daemon::web_config::load(web)?.describe());
            }
            check_probe_sets(&cfg)
        }
        Command::Demo {
            listen,
            interval_seconds,
            dir,
            log_format,
            web_config_file,
        } => {
            init_logging(matches!(log_format, LogFormatArg::Json));
            let web_config = web_config_file.map(|f| absolute(&f)).transpose()?;
            demo(listen, interval_seconds, dir, web_config)
        }
        Command::Probe {
            file,
            task,
            layers,
            json,
            centroids,
            label_distance,
            drop_clusters_up_to,
            no_train_test,
            classifier,
            classifier_configurations,
            memorisation_splits,
            core_only,
        } => {
            let dump = ActivationDump::open(&file)?;
            let opts = AnalysisOptions {
                task,
                layers,
                measure: MeasureParams {
                    label_distance: match label_distance {
                        LabelDistanceArg::Mean => LabelDistance::Mean,
                        LabelDistanceArg::Min => LabelDistance::Min,
                    },
                    drop_clusters_up_to,
                    train_test_similarity: !no_train_test,
                    ..MeasureParams::default()
                },
                keep_centroids: centroids,
                classifier: classifier.then(|| ClassifierParams {
                    configs: search_configs(classifier_configurations as usize),
                    ..ClassifierParams::default()
                }),
                subsplits: memorisation_splits.then(SubSplits::default),
                core_only,
            };
            let n_layers = match &opts.layers {
                Some(l) => {
                    let mut l = l.clone();
                    l.sort_unstable();
                    l.dedup();
                    l.len()
                }
                None => dump.task(opts.task.as_deref())?.layers.len(),
            };
            let bar = if std::io::stderr().is_terminal() {
                let b = ProgressBar::new(n_layers as u64);
                b.set_style(
                    ProgressStyle::with_template("{spinner} layers {pos}/{len} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b
            } else {
                ProgressBar::hidden()
            };
            let report = analyse_dump(&dump, &opts, &|_| bar.inc(1))
                .with_context(|| format!("analysing {}", file.display()))?;
            bar.finish_and_clear();
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &report)?;
                writeln!(out)?;
            } else {
                write_table(&mut out, &report)?;
            }
            Ok(())
        }
        Command::Report {
            store,
            run,
            task,
            layer,
            out,
        } => report(&store, run, task, layer, out),
        Command::ExportOpenmetrics {
            store,
            run,
            timestamps,
            label_pairs,
            out,
        } => {
            let options = view::export::ExportOptions {
                run,
                label_pairs,
                timestamps: match timestamps {
                    TimestampsArg::Checkpoint => view::export::Timestamps::Checkpoint,
                    TimestampsArg::Analysis => view::export::Timestamps::Analysis,
                },
            };
            let exported = view::export::export_store(&store, &options)?;
            match &out {
                Some(path) => std::fs::write(path, &exported.text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => std::io::stdout()
                    .lock()
                    .write_all(exported.text.as_bytes())
                    .context("writing to stdout")?,
            }
            for (run, n) in &exported.runs {
                eprintln!("probewatch: exported run {run}: {n} checkpoints");
            }
            Ok(())
        }
    }
}

fn fmt_opt(x: Option<f64>, prec: usize) -> String {
    match x {
        Some(v) => format!("{v:.prec$}"),
        None => "-".to_string(),
    }
}

fn write_table(out: &mut impl Write, r: &Report) -> Result<()> {
    writeln!(
        out,
        "{}  task {}  step {}  labels {}  splits {}",
        r.file.display(),
        r.task,
        r.step.map_or("-".to_string(), |s| s.to_string()),
        r.labels.len(),
        r.splits
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    )?;
    // One nearest-cluster accuracy column per scored split (every split
    // but the fit split, with points), then the classifier's when computed.
    let scored: Vec<&String> = r
        .splits
        .iter()
        .filter(|&(name, &n)| *name != r.fit_split && n > 0)
        .map(|(name, _)| name)
        .collect();
    let with_classifier = r.layers.iter().any(|l| l.classifier_accuracy.is_some());
    // A core-only report has no clusters: its distance columns are the
    // label-hull distances (all points of one label against another's).
    let core_only = r.layers.iter().all(|l| !l.clustered);
    let (min_head, mean_head) = if core_only {
        ("hull min", "hull mean")
    } else {
        ("min dist", "mean dist")
    };
    let mut head = format!(
        "{:>5}  {:>15}  {:>9}  {:>9}  {:>9}",
        "layer", "clusters/labels", min_head, mean_head, "scale"
    );
    for name in &scored {
        head += &format!("  {:>8}", format!("acc {name}"));
    }
    if with_classifier {
        for name in &scored {
            head += &format!("  {:>13}", format!("mlp {name}"));
        }
    }
    head += &format!("  {:>14}  {:>7}", "train/test sim", "seconds");
    writeln!(out, "{head}")?;
    for l in &r.layers {
        let source = if core_only {
            &l.label_hull_distance
        } else {
            &l.label_distance
        };
        let ds: Vec<f64> = source.iter().map(|t| t.2).collect();
        let min = ds.iter().copied().reduce(f64::min);
        let mean = (!ds.is_empty()).then(|| ds.iter().sum::<f64>() / ds.len() as f64);
        let clusters = if l.clustered {
            l.clusters.to_string()
        } else {
            "-".to_string()
        };
        let mut row = format!(
            "{:>5}  {:>15}  {:>9}  {:>9}  {:>9.3}",
            l.layer,
            format!("{clusters}/{}", l.labels_present),
            fmt_opt(min, 3),
            fmt_opt(mean, 3),
            l.scale,
        );
        for name in &scored {
            let a = l.accuracy.get(*name);
            let width = 8.max(name.len() + 4);
            row += &format!(
                "  {:>width$}",
                a.map_or("-".to_string(), |a| format!("{:.2}%", a * 100.0))
            );
        }
        if with_classifier {
            for name in &scored {
                let a = l.classifier_accuracy.as_ref().and_then(|c| c.get(*name));
                let width = 13.max(name.len() + 4);
                row += &format!(
                    "  {:>width$}",
                    a.map_or("-".to_string(), |a| format!(
                        "{:.2}±{:.2}%",
                        a.mean * 100.0,
                        a.std * 100.0
                    ))
                );
            }
        }
        row += &format!(
            "  {:>14}  {:>7.2}",
            fmt_opt(l.similarity.get("train_test").copied().flatten(), 3),
            l.seconds
        );
        writeln!(out, "{row}")?;
    }
    writeln!(out, "total {:.2} s", r.seconds)?;
    Ok(())
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
fn demo(
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

/// `probewatch extract`: probe set + checkpoint → activation dump.
#[allow(clippy::too_many_arguments)] // the subcommand's options, one each
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

fn extract(args: &ExtractArgs, threads: usize) -> Result<()> {
    use source::encoder::Encoder;
    use source::extract::{encode_dump, extract};
    use source::probeset::tokens::{ProbeTokenizer, SentencePooling, TokenizeOptions, WordPooling};
    use source::probeset::{ProbeSet, ProbeSetSource, TaskSpec};
    let ExtractArgs {
        model,
        probe_sets,
        task,
        tokenizer,
        word_pooling,
        sentence_pooling,
        step,
        out,
    } = args;
    let (model, out, step) = (model.as_path(), out.as_path(), *step);
    let t = std::time::Instant::now();
    let spec: TaskSpec = task.parse()?;
    let sources = probe_sets
        .iter()
        .map(|s| s.parse::<ProbeSetSource>())
        .collect::<Result<Vec<_>, _>>()?;
    let set = ProbeSet::load(&spec, &sources)?;
    let encoder = Encoder::load(model)?;
    let tok_path = tokenizer
        .clone()
        .unwrap_or_else(|| model.join("tokenizer.json"));
    let mut opts = TokenizeOptions::new(encoder.max_positions());
    opts.word_pooling = match word_pooling {
        WordPoolingArg::First => WordPooling::First,
        WordPoolingArg::Mean => WordPooling::Mean,
    };
    opts.sentence_pooling = match sentence_pooling {
        SentencePoolingArg::Cls => SentencePooling::Cls,
        SentencePoolingArg::Mean => SentencePooling::Mean,
    };
    let tok = ProbeTokenizer::from_file(&tok_path, opts)?;
    let task = extract(&encoder, &tok, &set, threads)?;
    let model_name = model.display().to_string();
    let bytes = encode_dump(std::slice::from_ref(&task), step, &[("model", &model_name)]);
    let tmp = out.with_extension("safetensors.tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("renaming into {}", out.display()))?;
    eprintln!(
        "wrote {}: task {}, {} items ({} labels), {} layers of width {}, in {:.1} s",
        out.display(),
        task.name,
        task.labels.len(),
        task.label_names.len(),
        task.layers.len(),
        task.dim,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `probewatch report`: the run's page into a file, or the list of runs.
fn report(
    store: &std::path::Path,
    run: Option<String>,
    task: Option<String>,
    layer: Option<usize>,
    out: Option<PathBuf>,
) -> Result<()> {
    use report::{ReportOptions, render_from_store, run_names};
    let (Some(run), Some(out)) = (run, out) else {
        let names = run_names(store)?;
        anyhow::ensure!(
            !names.is_empty(),
            "{}: the store holds no run yet",
            store.display()
        );
        println!("runs in {}:", store.display());
        for n in names {
            println!("  {n}");
        }
        anyhow::bail!("name a run with --run and an output file with --out");
    };
    let opts = ReportOptions {
        task,
        layer,
        refresh_seconds: None,
        links: false,
    };
    let t = std::time::Instant::now();
    let html = render_from_store(store, &run, &opts)?;
    let tmp = out.with_extension("html.tmp");
    std::fs::write(&tmp, &html).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &out).with_context(|| format!("renaming into {}", out.display()))?;
    eprintln!(
        "wrote {}: run {run}, {} KiB, in {:.2} s",
        out.display(),
        html.len().div_ceil(1024),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
