//! The daemon's configuration: the TOML file `probewatch watch --config FILE`
//! reads, checked into a [`Config`] the rest of the daemon can trust.
//!
//! [`load`] reads, parses and validates in one step; [`parse`] does the same
//! on text already in memory. The schema is serde with
//! `deny_unknown_fields`, so a misspelt option is an error, not a silent
//! default; every error — syntax, unknown key, wrong type, and the semantic
//! checks done after parsing (duplicate run names, zero intervals, empty
//! lists, …) — names the file, the line and column of the offending key or
//! value, and the reason. Relative paths (`store`, a run's `folder`) resolve
//! against the config file's directory, a relative baseline `path` against
//! its run's folder, so the result holds absolute paths only.
//! [`Config::describe`] renders what `probewatch check-config` prints.
//!
//! This file holds the checked types, their defaults and the two entry
//! points. The rest, one concern each: `schema` (the file as serde reads
//! it), `check` (validation into a [`Config`]), `position` (byte spans to
//! line and column, the toml crate's messages reworded), `error`
//! ([`ConfigError`] and [`Problem`]), `limits` (the `[limits]` table) and
//! `describe` (the `check-config` text).
//!
//! Deliberately not here: whether folders exist (a run folder may appear
//! after the daemon starts; [`Config::describe`] only reports it), reading
//! environment variables or command-line overrides, and applying a reloaded
//! file (the daemon calls [`load`] again on SIGHUP, see
//! [`crate::supervisor::run_with_reload`]). The defaults live in one place ([`RunConfig::new`] and the
//! `DEFAULT_*` constants) and docs/configuration.md lists them.

mod check;
mod describe;
mod error;
mod limits;
mod position;
mod schema;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use geometry::measures::LabelDistance;
use source::probeset::tokens::{SentencePooling, WordPooling};
use source::probeset::{ProbeSetSource, TaskSpec};

pub use error::{ConfigError, Problem};
pub use limits::{
    DEFAULT_MAX_CONCURRENT_REQUESTS, DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_ITEMS_PER_TASK,
    DEFAULT_MAX_LABELS, DEFAULT_MAX_LAYERS, DEFAULT_MAX_REQUEST_BYTES, Exceeded, Limits,
};

/// Default port of the HTTP listener (`/metrics`, …), on loopback. It is
/// not in Prometheus' "Default port allocations" list (see the README).
pub const DEFAULT_PORT: u16 = 19464;

/// Default file name of the SQLite history, next to the config file.
pub const DEFAULT_STORE: &str = "probewatch.sqlite";

/// Default `scan_interval_seconds`.
pub const DEFAULT_SCAN_INTERVAL: Duration = Duration::from_secs(10);

/// Default `stable_scans`.
pub const DEFAULT_STABLE_SCANS: u32 = 2;

/// Default `late_stage_budget_seconds`: 10 minutes per checkpoint.
pub const DEFAULT_LATE_STAGE_BUDGET: Duration = Duration::from_secs(600);

/// Default `queue_capacity`.
pub const DEFAULT_QUEUE_CAPACITY: usize = 64;

/// The checked configuration of the daemon.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file it came from, as given to [`load`] or [`parse`].
    pub file: PathBuf,
    /// Address of the HTTP listener; default `127.0.0.1:`[`DEFAULT_PORT`].
    pub listen: SocketAddr,
    /// The SQLite history file (absolute); default [`DEFAULT_STORE`] next to
    /// the config file.
    pub store: PathBuf,
    /// Analysis threads (at least 1); default the machine's available
    /// parallelism.
    pub workers: usize,
    /// Log output format.
    pub log_format: LogFormat,
    /// The runs to watch: at least one, names unique.
    pub runs: Vec<RunConfig>,
    /// The exporter-toolkit web config file (TLS, basic auth) of the
    /// listener, absolute (`web_config`; `--web.config.file` overrides it).
    /// Read and checked by [`crate::web_config::load`] at start.
    pub web_config: Option<PathBuf>,
    /// This replica's share of every run's (task, layer) pairs; never set
    /// by the file (`--shard`, `PROBEWATCH_SHARD` or the host name's
    /// ordinal, see [`crate::shard`]). `None`: every pair.
    pub shard: Option<crate::shard::Shard>,
    /// Caps on input sizes and on the HTTP server (`[limits]`).
    pub limits: Limits,
}

/// One watched fine-tuning run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    /// Unique name, `[A-Za-z0-9_.-]+`: a Prometheus label value and a SQL key.
    pub name: String,
    /// The run's folder, absolute.
    pub folder: PathBuf,
    /// What the folder holds.
    pub layout: Layout,
    /// The checkpoint every other one is compared with.
    pub baseline: Baseline,
    /// Tasks to analyse; `None` = every task in the dump.
    pub tasks: Option<Vec<String>>,
    /// Layers to analyse; `None` = every layer.
    pub layers: Option<Vec<usize>>,
    /// Time between two scans of the folder (`scan_interval_seconds`), > 0.
    pub scan_interval: Duration,
    /// A file whose size and mtime stay unchanged across this many scans is
    /// complete (>= 1).
    pub stable_scans: u32,
    /// How each checkpoint is clustered.
    pub mode: Mode,
    /// Label distance from cluster distances: mean (the study's) or min.
    pub label_distance: LabelDistance,
    /// Drop clusters of at most this many points before measuring; 0 keeps all.
    pub drop_clusters_up_to: usize,
    /// Also cluster the test split, for the train/test similarity.
    pub train_test_similarity: bool,
    /// Which waiting checkpoints get analysed.
    pub queue: QueuePolicy,
    /// Checkpoints that may wait for analysis (>= 1).
    pub queue_capacity: usize,
    /// Working time the late stages (test-split hulls, clusters, test
    /// clusters, classifier) may spend on one checkpoint
    /// (`late_stage_budget_seconds`; pauses for newer checkpoints' core
    /// stage excluded); what is left when it runs out is abandoned. Zero
    /// turns the late stages off.
    pub late_stage_budget: Duration,
    /// Export one series per label pair (opt-in: K(K−1)/2 per layer).
    pub export_label_pairs: bool,
    /// Follow symbolic links inside the run folder.
    pub follow_symlinks: bool,
    /// The classifier probe trained on every layer (`classifier`).
    pub classifier: Classifier,
    /// Configurations the classifier search tries (`classifier_configurations`,
    /// 1 to 128; the first of a fixed order, see
    /// [`geometry::classifier::search_configs`]).
    pub classifier_configurations: usize,
    /// The memorisation setting (`memorisation_splits`): carve `subtrain`
    /// and `subtest` 80:20 out of `train` and fit on `subtrain`.
    pub memorisation_splits: bool,
    /// With [`Layout::HfCheckpoints`]: the probe sets the encoder runs over,
    /// one per task (`[[run.probe]]`); empty for dumps.
    pub probes: Vec<ProbeConfig>,
    /// With [`Layout::HfCheckpoints`]: the `tokenizer.json` to use; `None`:
    /// the checkpoint's own, else the run folder's.
    pub tokenizer: Option<PathBuf>,
    /// With [`Layout::HfCheckpoints`]: how a word's subwords make its vector.
    pub word_pooling: WordPooling,
    /// With [`Layout::HfCheckpoints`]: how a sentence item is represented.
    pub sentence_pooling: SentencePooling,
}

/// One task of a run that computes its own activations: a probe set and
/// the task it defines (`[[run.probe]]`).
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeConfig {
    /// The task; its `name` is the task name in reports and metrics.
    pub task: TaskSpec,
    /// The files, each with its split (`FILE` or `FILE:split`), absolute.
    pub files: Vec<ProbeSetSource>,
}

/// The classifier probe of a run (`classifier`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Classifier {
    /// None (`"none"`).
    #[default]
    None,
    /// The two-hidden-layer MLP probe (`"mlp"`).
    Mlp,
}

/// Default `classifier_configurations`.
pub const DEFAULT_CLASSIFIER_CONFIGURATIONS: usize = 4;

impl RunConfig {
    /// A run with every setting but `name` and `folder` at its default, the
    /// same defaults a `[[run]]` table gets. No validation: [`parse`] is
    /// where names and paths are checked.
    pub fn new(name: impl Into<String>, folder: impl Into<PathBuf>) -> RunConfig {
        RunConfig {
            name: name.into(),
            folder: folder.into(),
            layout: Layout::Dumps,
            baseline: Baseline::First,
            tasks: None,
            layers: None,
            scan_interval: DEFAULT_SCAN_INTERVAL,
            stable_scans: DEFAULT_STABLE_SCANS,
            mode: Mode::Exact,
            label_distance: LabelDistance::Mean,
            drop_clusters_up_to: 0,
            train_test_similarity: true,
            queue: QueuePolicy::All,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            late_stage_budget: DEFAULT_LATE_STAGE_BUDGET,
            export_label_pairs: false,
            follow_symlinks: false,
            probes: Vec::new(),
            tokenizer: None,
            word_pooling: WordPooling::First,
            sentence_pooling: SentencePooling::Cls,
            classifier: Classifier::None,
            classifier_configurations: DEFAULT_CLASSIFIER_CONFIGURATIONS,
            memorisation_splits: false,
        }
    }
}

/// Log output format (`log_format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines (`"human"`).
    #[default]
    Human,
    /// One JSON object per line (`"json"`).
    Json,
}

/// What a run folder holds (`layout`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// Activation dumps, one `*.safetensors` per checkpoint (`"dumps"`).
    #[default]
    Dumps,
    /// HuggingFace `checkpoint-<step>/` folders (`"hf-checkpoints"`): the
    /// encoder runs over the run's probe sets.
    HfCheckpoints,
}

/// The reference checkpoint of a run (`baseline`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Baseline {
    /// The first checkpoint analysed (`"first"`).
    #[default]
    First,
    /// The checkpoint of this step (`{ step = N }`).
    Step(u64),
    /// This checkpoint file or folder (`{ path = "…" }`), absolute.
    Path(PathBuf),
}

/// How checkpoints are clustered (`mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Re-run DirectProbe on every checkpoint, incrementally (`"exact"`).
    #[default]
    Exact,
    /// Keep the baseline's partition, re-check overlaps and recompute
    /// distances only, as the study did (`"frozen-partition"`).
    FrozenPartition,
}

/// Which waiting checkpoints get analysed (`queue`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueuePolicy {
    /// Every checkpoint, in order (`"all"`).
    #[default]
    All,
    /// Only the newest; older waiting ones are skipped (`"newest"`).
    Newest,
}

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses and validates config `text` as if read from `path`: `path` names
/// the file in messages and anchors relative paths (it need not exist).
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let ctx = position::Ctx { text, file: path };
    let raw: schema::RawConfig =
        toml::from_str(text).map_err(|e| position::toml_error(text, path, &e))?;
    let absolute = std::path::absolute(path).map_err(|source| ConfigError::Resolve {
        file: path.to_path_buf(),
        source,
    })?;
    let dir = absolute.parent().unwrap_or(Path::new("/")).to_path_buf();
    let config = raw.check(&ctx, &dir)?;
    Ok(config)
}
