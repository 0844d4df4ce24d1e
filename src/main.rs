//! The `probewatch` binary: command-line parsing and output formatting only;
//! all work happens in the library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

mod bench;
mod bench_daemon;
mod bench_report;

use probewatch::analysis::{AnalysisOptions, Report, analyse_dump};
use probewatch::geometry::measures::{LabelDistance, MeasureParams};
use probewatch::source::dump::ActivationDump;

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
    },
    /// Write an activation dump from a model checkpoint: tokenize the probe
    /// set, run the encoder, keep each item's vector at every layer.
    Extract {
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
        /// Training step to record in the dump's metadata.
        #[arg(long)]
        step: Option<u64>,
        /// Output activation dump (safetensors).
        #[arg(long)]
        out: PathBuf,
    },
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
        #[arg(long, default_value_t = std::net::SocketAddr::from(([127, 0, 0, 1], probewatch::config::DEFAULT_PORT)))]
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
    },
    /// Benchmarks: the shared PS-role dump and synthetic layers, each case in
    /// its own process so peak memory is its own.
    Bench {
        /// Which cases (default: all).
        #[arg(long, value_delimiter = ',')]
        cases: Option<Vec<String>>,
        /// Smaller synthetic layers (2,000 points) for a quick look.
        #[arg(long)]
        quick: bool,
        /// Points of the synthetic layers (default 20,000; 2,000 with --quick).
        #[arg(long)]
        points: Option<usize>,
        /// Kill a case that runs longer than this (seconds).
        #[arg(long, default_value_t = 600)]
        case_timeout: u64,
        /// Run one case in this process and print its JSON line (internal).
        #[arg(long, hide = true)]
        case: Option<String>,
        /// Folder holding the shared dumps.
        #[arg(long, default_value = "../shared/data/dumps")]
        data: PathBuf,
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
        Command::Watch { config, log_format } => {
            let cfg = probewatch::config::load(&config)?;
            let json = match log_format {
                Some(f) => matches!(f, LogFormatArg::Json),
                None => cfg.log_format == probewatch::config::LogFormat::Json,
            };
            init_logging(json);
            serve(cfg, |addr| {
                tracing::info!("metrics at http://{addr}/metrics");
            })
        }
        Command::Extract {
            model,
            probe_sets,
            task,
            tokenizer,
            word_pooling,
            step,
            out,
        } => extract(
            &model,
            &probe_sets,
            &task,
            tokenizer,
            word_pooling,
            step,
            &out,
            cli.threads.unwrap_or(0),
        ),
        Command::CheckConfig { file } => {
            let cfg = probewatch::config::load(&file)?;
            print!("{}", cfg.describe());
            Ok(())
        }
        Command::Demo {
            listen,
            interval_seconds,
            dir,
            log_format,
        } => {
            init_logging(matches!(log_format, LogFormatArg::Json));
            demo(listen, interval_seconds, dir)
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
        Command::Bench {
            cases,
            quick,
            points,
            case_timeout,
            case,
            data,
        } => {
            if let Some(c) = case {
                let line = bench::run_case(&c, quick, &data, points)?;
                println!("{}", serde_json::to_string(&line)?);
                return Ok(());
            }
            let exe = std::env::current_exe().context("locating the probewatch binary")?;
            let names: Vec<String> =
                cases.unwrap_or_else(|| bench::CASES.iter().map(|s| s.to_string()).collect());
            let mut out = std::io::stdout().lock();
            bench::print_header(&mut out, quick, cli.threads)?;
            for name in &names {
                let r = bench::run_in_child(
                    &exe,
                    name,
                    quick,
                    &data,
                    cli.threads,
                    points,
                    std::time::Duration::from_secs(case_timeout),
                )
                .with_context(|| format!("benchmark case {name}"))?;
                bench::print_row(&mut out, &r)?;
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
    writeln!(
        out,
        "{:>5}  {:>15}  {:>9}  {:>9}  {:>9}  {:>8}  {:>14}  {:>7}",
        "layer",
        "clusters/labels",
        "min dist",
        "mean dist",
        "scale",
        "acc test",
        "train/test sim",
        "seconds"
    )?;
    for l in &r.layers {
        let ds: Vec<f64> = l.label_distance.iter().map(|t| t.2).collect();
        let min = ds.iter().copied().reduce(f64::min);
        let mean = (!ds.is_empty()).then(|| ds.iter().sum::<f64>() / ds.len() as f64);
        writeln!(
            out,
            "{:>5}  {:>15}  {:>9}  {:>9}  {:>9.3}  {:>8}  {:>14}  {:>7.2}",
            l.layer,
            format!("{}/{}", l.clusters, l.labels_present),
            fmt_opt(min, 3),
            fmt_opt(mean, 3),
            l.scale,
            l.accuracy
                .get("test")
                .map_or("-".to_string(), |a| format!("{:.2}%", a * 100.0)),
            fmt_opt(l.similarity.get("train_test").copied().flatten(), 3),
            l.seconds
        )?;
    }
    writeln!(out, "total {:.2} s", r.seconds)?;
    Ok(())
}

/// Logs through `tracing`: human-readable lines by default, one JSON object
/// per line with `json`; the level from `RUST_LOG` (default `info`).
fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Runs the daemon on a fresh runtime until SIGINT or SIGTERM.
fn serve(
    cfg: probewatch::config::Config,
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
        probewatch::daemon::run(cfg, rx, on_listening).await
    });
    // An abandoned analysis may still be running on a blocking thread: do
    // not wait for it (its store write is one transaction, all or nothing).
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result?;
    Ok(())
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
fn demo(listen: std::net::SocketAddr, interval: f64, dir: Option<PathBuf>) -> Result<()> {
    use probewatch::config::{Config, LogFormat, RunConfig};
    use probewatch::demo::{CHECKPOINTS, STEP_EVERY, write_checkpoint};
    anyhow::ensure!(
        interval.is_finite() && interval > 0.0,
        "--interval-seconds must be positive"
    );
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
    serve(cfg, move |addr| {
        eprintln!(
            "\nprobewatch demo: a simulated fine-tuning run writes a checkpoint every {interval} s into\n  {folder}/run\n\
             Metrics:  http://{addr}/metrics\n\
             Report:   http://{addr}/report/demo (figures over the steps; reloads every 30 s)\n\
             Look at:  probewatch_label_min_distance_normalized{{label=\"NOUN\"}} (NOUN and PROPN drift together: it shrinks)\n\
             \x20         probewatch_label_min_distance_change_ratio, probewatch_centroid_movement, probewatch_spatial_similarity\n\
             Stop with Ctrl-C.\n"
        );
    })
}

/// `probewatch extract`: probe set + checkpoint → activation dump.
#[allow(clippy::too_many_arguments)] // the subcommand's options, one each
fn extract(
    model: &std::path::Path,
    probe_sets: &[String],
    task: &str,
    tokenizer: Option<PathBuf>,
    word_pooling: WordPoolingArg,
    step: Option<u64>,
    out: &std::path::Path,
    threads: usize,
) -> Result<()> {
    use probewatch::source::encoder::Encoder;
    use probewatch::source::extract::{encode_dump, extract};
    use probewatch::source::probeset::tokens::{ProbeTokenizer, TokenizeOptions, WordPooling};
    use probewatch::source::probeset::{ProbeSet, ProbeSetSource, TaskSpec};
    let t = std::time::Instant::now();
    let spec: TaskSpec = task.parse()?;
    let sources = probe_sets
        .iter()
        .map(|s| s.parse::<ProbeSetSource>())
        .collect::<Result<Vec<_>, _>>()?;
    let set = ProbeSet::load(&spec, &sources)?;
    let encoder = Encoder::load(model)?;
    let tok_path = tokenizer.unwrap_or_else(|| model.join("tokenizer.json"));
    let mut opts = TokenizeOptions::new(encoder.max_positions());
    opts.word_pooling = match word_pooling {
        WordPoolingArg::First => WordPooling::First,
        WordPoolingArg::Mean => WordPooling::Mean,
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
    use probewatch::report::{ReportOptions, render_from_store, run_names};
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
