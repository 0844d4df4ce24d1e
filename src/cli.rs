//! The command line: every subcommand and option of `probewatch`, as clap
//! types. Parsing only; what each command does is in its own module.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "probewatch",
    version,
    about = "Watch what fine-tuning does to the label geometry of a model's representations"
)]
pub(crate) struct Cli {
    /// Worker threads for numeric work (default: all cores).
    #[arg(long, global = true)]
    pub(crate) threads: Option<usize>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LabelDistanceArg {
    Mean,
    Min,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum WordPoolingArg {
    First,
    Mean,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum SentencePoolingArg {
    Cls,
    Mean,
}

#[derive(clap::Args)]
pub(crate) struct ExtractArgs {
    /// The checkpoint folder (config.json, model.safetensors or shards).
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Probe-set files, `FILE` or `FILE:split` (CoNLL-U, CoNLL-U-Lex,
    /// JSON Lines); repeat the option for several files.
    #[arg(long = "probe-set", required = true)]
    pub(crate) probe_sets: Vec<String>,
    /// Task: upos, xpos, deprel, dep, ps_role, ps_fxn, labels (JSONL).
    #[arg(long)]
    pub(crate) task: String,
    /// tokenizer.json (default: the model folder's).
    #[arg(long)]
    pub(crate) tokenizer: Option<PathBuf>,
    /// Word vector: the first subword's, or the mean of its subwords.
    #[arg(long, value_enum, default_value = "first")]
    pub(crate) word_pooling: WordPoolingArg,
    /// Sentence vector (JSON Lines sentence tasks): the first special
    /// token's ([CLS]), or the mean of the sentence's tokens.
    #[arg(long, value_enum, default_value = "cls")]
    pub(crate) sentence_pooling: SentencePoolingArg,
    /// Training step to record in the dump's metadata.
    #[arg(long)]
    pub(crate) step: Option<u64>,
    /// Output activation dump (safetensors).
    #[arg(long)]
    pub(crate) out: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormatArg {
    Human,
    Json,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// One-shot DirectProbe analysis of an activation dump.
    Probe(ProbeArgs),
    /// The daemon: watch the configured runs, analyse each new checkpoint,
    /// store the history and serve Prometheus metrics.
    Watch(WatchArgs),
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
    Demo(DemoArgs),
    /// Print the stored history as OpenMetrics, each checkpoint's samples at
    /// its own time, for `promtool tsdb create-blocks-from openmetrics`.
    ExportOpenmetrics(ExportArgs),
    /// Write a run's HTML report (figures and layer table, one
    /// self-contained file) from the daemon's history store.
    Report(ReportArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum TimestampsArg {
    Checkpoint,
    Analysis,
}

/// Options of `probewatch probe`.
#[derive(clap::Args)]
pub(crate) struct ProbeArgs {
    /// The activation dump (safetensors).
    pub(crate) file: PathBuf,
    /// Task to analyse (required when the dump holds several).
    #[arg(long)]
    pub(crate) task: Option<String>,
    /// Layers, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub(crate) layers: Option<Vec<usize>>,
    /// Print the report as one JSON document.
    #[arg(long)]
    pub(crate) json: bool,
    /// Include per-label centroids in the JSON.
    #[arg(long)]
    pub(crate) centroids: bool,
    /// Label distance from cluster distances.
    #[arg(long, value_enum, default_value = "mean")]
    pub(crate) label_distance: LabelDistanceArg,
    /// Drop clusters with at most this many points before measuring.
    #[arg(long, default_value_t = 0)]
    pub(crate) drop_clusters_up_to: usize,
    /// Skip DirectProbe on the test split (no train/test similarity).
    #[arg(long)]
    pub(crate) no_train_test: bool,
    /// Also train the MLP classifier probe on every layer
    /// (`classifier_accuracy`: mean and std over 5 seeds per split).
    #[arg(long)]
    pub(crate) classifier: bool,
    /// Configurations the classifier search tries (1 to 128; the first
    /// of a fixed order over the study's grid).
    #[arg(long, default_value_t = daemon::config::DEFAULT_CLASSIFIER_CONFIGURATIONS as u64,
          value_parser = clap::value_parser!(u64).range(1..=128))]
    pub(crate) classifier_configurations: u64,
    /// The memorisation setting: carve `subtrain`/`subtest` 80:20 out of
    /// train (fixed seed, per label), fit clusters and classifier on
    /// subtrain, score every other split.
    #[arg(long)]
    pub(crate) memorisation_splits: bool,
    /// Only the core stage (what the daemon publishes first): label-hull
    /// distances, centroids, scale, train/test hull similarity; no
    /// DirectProbe clustering and no classifier.
    #[arg(long, conflicts_with = "classifier")]
    pub(crate) core_only: bool,
}

/// Options of `probewatch watch`.
#[derive(clap::Args)]
pub(crate) struct WatchArgs {
    /// The TOML configuration (see config/probewatch.example.toml).
    #[arg(long)]
    pub(crate) config: PathBuf,
    /// Log format (overrides the config's `log_format`).
    #[arg(long, value_enum)]
    pub(crate) log_format: Option<LogFormatArg>,
    /// Exporter-toolkit web config (YAML: TLS, basic auth) for the
    /// listener; overrides the config's `web_config`.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub(crate) web_config_file: Option<PathBuf>,
    /// Analyse only shard i of n of every run's (task, layer) pairs
    /// (round-robin over the sorted pairs). Default: $PROBEWATCH_SHARD,
    /// else the host name's `-<i>` suffix when --shard-count is given.
    #[arg(long, value_name = "i/n")]
    pub(crate) shard: Option<String>,
    /// Number of shards, the index taken from the host name's `-<i>`
    /// suffix (a StatefulSet pod's ordinal).
    #[arg(long, value_name = "n")]
    pub(crate) shard_count: Option<u32>,
}

/// Options of `probewatch demo`.
#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// Address to serve on.
    #[arg(long, default_value_t = std::net::SocketAddr::from(([127, 0, 0, 1], daemon::config::DEFAULT_PORT)))]
    pub(crate) listen: std::net::SocketAddr,
    /// Seconds between two simulated checkpoints.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) interval_seconds: f64,
    /// Folder for the run and the store (default: a new temporary one).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value = "human")]
    pub(crate) log_format: LogFormatArg,
    /// Exporter-toolkit web config (YAML: TLS, basic auth) for the
    /// listener.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub(crate) web_config_file: Option<PathBuf>,
}

/// Options of `probewatch export-openmetrics`.
#[derive(clap::Args)]
pub(crate) struct ExportArgs {
    /// The history database (the `store` of the configuration).
    #[arg(long)]
    pub(crate) store: PathBuf,
    /// Only this run (default: every run in the store).
    #[arg(long)]
    pub(crate) run: Option<String>,
    /// Time of each checkpoint's samples: the checkpoint file's
    /// modification time, or when its analysis finished.
    #[arg(long, value_enum, default_value = "checkpoint")]
    pub(crate) timestamps: TimestampsArg,
    /// Include per-label-pair distances (K(K-1)/2 series per layer).
    #[arg(long)]
    pub(crate) label_pairs: bool,
    /// Write to this file instead of stdout.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

/// Options of `probewatch report`.
#[derive(clap::Args)]
pub(crate) struct ReportArgs {
    /// The daemon's SQLite history (read only; the daemon may be running).
    #[arg(long)]
    pub(crate) store: PathBuf,
    /// The run (its `name` in the daemon's config; omit to list the runs).
    #[arg(long)]
    pub(crate) run: Option<String>,
    /// Task (default: the first by name).
    #[arg(long)]
    pub(crate) task: Option<String>,
    /// Layer of the min-distance figure (default: the last).
    #[arg(long)]
    pub(crate) layer: Option<usize>,
    /// Output HTML file.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}
