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
//! Deliberately not here: whether folders exist (a run folder may appear
//! after the daemon starts; [`Config::describe`] only reports it), reading
//! environment variables or command-line overrides, and applying a reloaded
//! file (the daemon calls [`load`] again on SIGHUP, see
//! [`crate::supervisor::run_with_reload`]). The defaults live in one place ([`RunConfig::new`] and the
//! `DEFAULT_*` constants) and the README's "Configuration" section lists them.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use geometry::measures::LabelDistance;
use source::probeset::tokens::{SentencePooling, WordPooling};
use source::probeset::{ProbeSetSource, TaskSpec};

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

/// Default [`Limits::max_file_bytes`]: 64 GiB (a BERT-large checkpoint is
/// 1.3 GB; an activation dump of 100,000 items × 25 layers × 1,024 f32 is
/// 10 GB).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 30;

/// Default [`Limits::max_items_per_task`].
pub const DEFAULT_MAX_ITEMS_PER_TASK: usize = 1_000_000;

/// Default [`Limits::max_labels`].
pub const DEFAULT_MAX_LABELS: usize = 10_000;

/// Default [`Limits::max_layers`].
pub const DEFAULT_MAX_LAYERS: usize = 1_024;

/// Default [`Limits::max_concurrent_requests`].
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 16;

/// Default [`Limits::max_request_bytes`].
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 16 << 10;

/// Caps on what the daemon accepts (the `[limits]` table). A checkpoint
/// beyond an analysis cap fails with kind `limit` and a message naming the
/// file, the cap and the value; a probe set beyond one stops the start.
/// The waiting-queue cap is per run: `queue_capacity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest checkpoint (dump file, or sum of a checkpoint's weight
    /// files), bytes.
    pub max_file_bytes: u64,
    /// Most items (words, spans, sentences) of one task.
    pub max_items_per_task: usize,
    /// Most distinct labels of one task.
    pub max_labels: usize,
    /// Most layers of one task (hidden states of a model).
    pub max_layers: usize,
    /// HTTP requests served at once; more get 503.
    pub max_concurrent_requests: usize,
    /// Largest HTTP request head (request line and headers), bytes; larger
    /// get 431. Bodies are refused anyway.
    pub max_request_bytes: usize,
}

/// A cap a task goes beyond ([`Limits::exceeded`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exceeded {
    /// `items`, `labels` or `layers`.
    pub what: &'static str,
    /// The `[limits]` key: `max_items_per_task`, `max_labels`, `max_layers`.
    pub key: &'static str,
    /// The task's count.
    pub value: usize,
    /// The cap.
    pub limit: usize,
}

impl Limits {
    /// The first per-task cap that a task of `items` items, `labels`
    /// labels and (when known) `layers` layers goes beyond; `None` when it
    /// fits.
    pub fn exceeded(&self, items: usize, labels: usize, layers: Option<usize>) -> Option<Exceeded> {
        let checks = [
            (
                "items",
                "max_items_per_task",
                Some(items),
                self.max_items_per_task,
            ),
            ("labels", "max_labels", Some(labels), self.max_labels),
            ("layers", "max_layers", layers, self.max_layers),
        ];
        checks.into_iter().find_map(|(what, key, value, limit)| {
            value.filter(|&v| v > limit).map(|value| Exceeded {
                what,
                key,
                value,
                limit,
            })
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_items_per_task: DEFAULT_MAX_ITEMS_PER_TASK,
            max_labels: DEFAULT_MAX_LABELS,
            max_layers: DEFAULT_MAX_LAYERS,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }
}

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

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", file.display())]
    Read {
        /// The config file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The directory of the file could not be made absolute (no current
    /// directory).
    #[error("cannot resolve the directory of config file {}: {source}", file.display())]
    Resolve {
        /// The config file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, or not the schema: syntax error, unknown key, wrong type,
    /// unknown variant, missing key.
    #[error("{}:{line}:{column}: {message}", file.display())]
    Toml {
        /// The config file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// The parser's reason.
        message: String,
    },
    /// Well-formed, but a value is not acceptable.
    #[error("{}:{line}:{column}: {problem}", file.display())]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// 1-based line of the offending key or value.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong.
        problem: Problem,
    },
}

impl ConfigError {
    /// The 1-based line the error points at, when it points at one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Toml { line, .. } | ConfigError::Invalid { line, .. } => Some(*line),
            ConfigError::Read { .. } | ConfigError::Resolve { .. } => None,
        }
    }
}

/// What is wrong with a well-formed configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// No `[[run]]` table, or `run = []`.
    #[error("no [[run]] table: add at least one run to watch")]
    NoRuns,
    /// Two runs with the same name.
    #[error("run name `{name}` is already used by the run on line {first_line}")]
    DuplicateRunName {
        /// The name.
        name: String,
        /// Line of the first run with it.
        first_line: usize,
    },
    /// A run name that is empty or has characters outside `[A-Za-z0-9_.-]`.
    #[error(
        "run name `{0}` must be non-empty and use only A-Z a-z 0-9 `_` `.` `-` \
         (it is a Prometheus label value and a database key)"
    )]
    BadRunName(String),
    /// A count or interval that must be positive is zero.
    #[error("`{key}` must be greater than 0, got {value}")]
    NotPositive {
        /// The option.
        key: &'static str,
        /// The value given.
        value: String,
    },
    /// A number too large or not finite.
    #[error("`{key}` is out of range: {value}")]
    OutOfRange {
        /// The option.
        key: &'static str,
        /// The value given.
        value: String,
    },
    /// `tasks = []` or `layers = []`.
    #[error("`{key}` is an empty list; leave `{key}` out to mean every {what}")]
    EmptyList {
        /// The option.
        key: &'static str,
        /// What leaving it out means.
        what: &'static str,
    },
    /// A list names the same item twice.
    #[error("`{key}` lists {item} twice")]
    DuplicateItem {
        /// The option.
        key: &'static str,
        /// The repeated item.
        item: String,
    },
    /// An empty string where a name or path is needed.
    #[error("`{key}` is empty")]
    Empty {
        /// The option.
        key: &'static str,
    },
    /// `baseline` is none of the accepted forms.
    #[error(
        "`baseline` {reason}; expected \"first\", {{ step = <integer> }} or {{ path = \"<file or folder>\" }}"
    )]
    BadBaseline {
        /// What is wrong with it.
        reason: String,
    },
    /// `listen` is not `IP:port`.
    #[error(
        "`listen` must be an IP address and port such as \"127.0.0.1:{DEFAULT_PORT}\" or \"[::1]:{DEFAULT_PORT}\" (no host names), got {value:?}"
    )]
    BadListen {
        /// The value given.
        value: String,
    },
    /// `layout = "hf-checkpoints"` without a `[[run.probe]]` table.
    #[error(
        "layout \"hf-checkpoints\" needs at least one probe set: add a [[run.probe]] table \
         with `task` and `files` (see config/probewatch.example.toml)"
    )]
    NoProbeSets,
    /// A setting that only applies to `layout = "hf-checkpoints"`.
    #[error("`{key}` only applies to layout = \"hf-checkpoints\"; {hint}")]
    NeedsHfLayout {
        /// The option.
        key: &'static str,
        /// What to do instead.
        hint: &'static str,
    },
    /// `tasks` with `layout = "hf-checkpoints"`.
    #[error(
        "`tasks` selects tasks of an activation dump; with layout = \"hf-checkpoints\" the \
         [[run.probe]] tables are the tasks"
    )]
    TasksWithProbes,
    /// An unknown probing task.
    #[error(
        "unknown task {0:?}; expected one of upos, xpos, deprel, deprel+subtypes, dep, \
         dep+subtypes, ps_role, ps_fxn, labels"
    )]
    UnknownTask(String),
    /// A probe-set file entry that cannot be read as `FILE` or `FILE:split`.
    #[error("probe-set file {text:?}: {message}")]
    BadProbeFile {
        /// The entry.
        text: String,
        /// What is wrong.
        message: String,
    },
    /// `files = []` in a `[[run.probe]]`.
    #[error("`files` is empty: list at least one probe-set file, \"FILE\" or \"FILE:split\"")]
    NoProbeFiles,
    /// A probe-set file that does not exist.
    #[error("probe-set file {} does not exist", .0.display())]
    MissingProbeFile(PathBuf),
    /// Two probe sets of a run with one task name.
    #[error("task name `{0}` is used by two [[run.probe]] tables of this run; set `name` on one")]
    DuplicateProbeName(String),
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
    let ctx = Ctx { text, file: path };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let (line, column) = line_column(text, span.start);
        ConfigError::Toml {
            file: path.to_path_buf(),
            line,
            column,
            message: toml_message(text, e.message(), span),
        }
    })?;
    let absolute = std::path::absolute(path).map_err(|source| ConfigError::Resolve {
        file: path.to_path_buf(),
        source,
    })?;
    let dir = absolute.parent().unwrap_or(Path::new("/")).to_path_buf();
    let config = raw.check(&ctx, &dir)?;
    Ok(config)
}

/// The toml crate's `message` about `span` of `text`, with Rust type names
/// replaced by TOML words and a hint for the two commonest slips: an
/// unquoted string, and `[run]` for `[[run]]`.
fn toml_message(text: &str, message: &str, span: Range<usize>) -> String {
    let mut out = message
        .trim_end()
        .replace("expected usize", "expected a non-negative integer")
        .replace("expected u32", "expected a non-negative integer below 2^32")
        .replace("expected f64", "expected a number")
        .replace("expected u64", "expected a non-negative integer");
    let start = char_floor(text, span.start);
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let before = text[line_start..start].trim_end();
    let rest = text.get(start..).unwrap_or("");
    if out == "duplicate key" {
        if let Some(key) = text.get(span.clone()).filter(|k| !k.contains('\n')) {
            out = format!("duplicate key `{key}`");
        }
    } else if before.ends_with('=') && rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.push_str("; strings need quotes, e.g. key = \"value\"");
    } else if line.trim_start().starts_with("[run]") {
        out.push_str("; write [[run]] (one table per run), not [run]");
    }
    out
}

/// The file being checked, for error positions.
struct Ctx<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Ctx<'_> {
    fn invalid(&self, span: Range<usize>, problem: Problem) -> ConfigError {
        let (line, column) = line_column(self.text, span.start);
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line,
            column,
            problem,
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..char_floor(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The largest char boundary of `text` at or before byte `offset`.
fn char_floor(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    store: Option<Spanned<PathBuf>>,
    workers: Option<Spanned<usize>>,
    log_format: Option<LogFormat>,
    web_config: Option<Spanned<PathBuf>>,
    limits: Option<RawLimits>,
    run: Option<Spanned<Vec<Spanned<RawRun>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_file_bytes: Option<Spanned<u64>>,
    max_items_per_task: Option<Spanned<usize>>,
    max_labels: Option<Spanned<usize>>,
    max_layers: Option<Spanned<usize>>,
    max_concurrent_requests: Option<Spanned<usize>>,
    max_request_bytes: Option<Spanned<usize>>,
}

impl RawLimits {
    fn check(self, ctx: &Ctx<'_>) -> Result<Limits, ConfigError> {
        let mut l = Limits::default();
        if let Some(v) = self.max_file_bytes {
            l.max_file_bytes = positive(ctx, v, "max_file_bytes")?;
        }
        if let Some(v) = self.max_items_per_task {
            l.max_items_per_task = positive(ctx, v, "max_items_per_task")?;
        }
        if let Some(v) = self.max_labels {
            l.max_labels = positive(ctx, v, "max_labels")?;
        }
        if let Some(v) = self.max_layers {
            l.max_layers = positive(ctx, v, "max_layers")?;
        }
        if let Some(v) = self.max_concurrent_requests {
            l.max_concurrent_requests = positive(ctx, v, "max_concurrent_requests")?;
        }
        if let Some(v) = self.max_request_bytes {
            let span = v.span();
            let n = positive(ctx, v, "max_request_bytes")?;
            // Below this even `GET /metrics` with a Host header does not fit.
            if n < 256 {
                let value = format!("{n} (at least 256)");
                let key = "max_request_bytes";
                return Err(ctx.invalid(span, Problem::OutOfRange { key, value }));
            }
            l.max_request_bytes = n;
        }
        Ok(l)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    name: Spanned<String>,
    folder: Spanned<PathBuf>,
    layout: Option<Spanned<Layout>>,
    baseline: Option<Spanned<toml::Value>>,
    tasks: Option<Spanned<Vec<String>>>,
    layers: Option<Spanned<Vec<usize>>>,
    scan_interval_seconds: Option<Spanned<f64>>,
    stable_scans: Option<Spanned<u32>>,
    mode: Option<Mode>,
    label_distance: Option<LabelDistance>,
    drop_clusters_up_to: Option<usize>,
    train_test_similarity: Option<bool>,
    queue: Option<QueuePolicy>,
    queue_capacity: Option<Spanned<usize>>,
    late_stage_budget_seconds: Option<Spanned<f64>>,
    export_label_pairs: Option<bool>,
    follow_symlinks: Option<bool>,
    classifier: Option<Classifier>,
    classifier_configurations: Option<Spanned<usize>>,
    memorisation_splits: Option<bool>,
    probe: Option<Vec<Spanned<RawProbe>>>,
    tokenizer: Option<Spanned<PathBuf>>,
    word_pooling: Option<Spanned<RawWordPooling>>,
    sentence_pooling: Option<Spanned<RawSentencePooling>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    task: Spanned<String>,
    name: Option<Spanned<String>>,
    files: Spanned<Vec<Spanned<String>>>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawWordPooling {
    First,
    Mean,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawSentencePooling {
    Cls,
    Mean,
}

impl RawConfig {
    fn check(self, ctx: &Ctx<'_>, dir: &Path) -> Result<Config, ConfigError> {
        let listen = match self.listen {
            None => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT),
            Some(value) => {
                let span = value.span();
                let text = value.into_inner();
                text.trim()
                    .parse::<SocketAddr>()
                    .map_err(|_| ctx.invalid(span, Problem::BadListen { value: text }))?
            }
        };
        let store = match self.store {
            None => dir.join(DEFAULT_STORE),
            Some(value) => resolve(ctx, value, "store", dir)?,
        };
        let web_config = self
            .web_config
            .map(|value| resolve(ctx, value, "web_config", dir))
            .transpose()?;
        let workers = match self.workers {
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Some(value) => positive(ctx, value, "workers")?,
        };
        let raw_runs = match self.run {
            None => return Err(ctx.invalid(0..0, Problem::NoRuns)),
            Some(runs) if runs.get_ref().is_empty() => {
                return Err(ctx.invalid(runs.span(), Problem::NoRuns));
            }
            Some(runs) => runs.into_inner(),
        };
        let mut runs = Vec::with_capacity(raw_runs.len());
        let mut names: Vec<(String, Range<usize>)> = Vec::new();
        for raw in raw_runs {
            let name_span = raw.get_ref().name.span();
            let run = raw.into_inner().check(ctx, dir)?;
            if let Some((_, first)) = names.iter().find(|(n, _)| *n == run.name) {
                let first_line = line_column(ctx.text, first.start).0;
                return Err(ctx.invalid(
                    name_span,
                    Problem::DuplicateRunName {
                        name: run.name,
                        first_line,
                    },
                ));
            }
            names.push((run.name.clone(), name_span));
            runs.push(run);
        }
        let config = Config {
            file: ctx.file.to_path_buf(),
            listen,
            store,
            workers,
            log_format: self.log_format.unwrap_or_default(),
            runs,
            web_config,
            shard: None,
            limits: match self.limits {
                Some(l) => l.check(ctx)?,
                None => Limits::default(),
            },
        };
        Ok(config)
    }
}

impl RawRun {
    fn check(self, ctx: &Ctx<'_>, dir: &Path) -> Result<RunConfig, ConfigError> {
        let name_span = self.name.span();
        let name = self.name.into_inner();
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !name_ok {
            return Err(ctx.invalid(name_span, Problem::BadRunName(name)));
        }
        let folder = resolve(ctx, self.folder, "folder", dir)?;
        let mut run = RunConfig::new(name, folder);

        let mut layout_span = None;
        if let Some(layout) = self.layout {
            layout_span = Some(layout.span());
            run.layout = layout.into_inner();
        }
        if let Some(baseline) = self.baseline {
            run.baseline = baseline_from(ctx, baseline, &run.folder)?;
        }
        if let Some(tasks) = self.tasks {
            let span = tasks.span();
            if run.layout == Layout::HfCheckpoints {
                return Err(ctx.invalid(span, Problem::TasksWithProbes));
            }
            let tasks = tasks.into_inner();
            if tasks.iter().any(String::is_empty) {
                return Err(ctx.invalid(span, Problem::Empty { key: "tasks" }));
            }
            run.tasks = Some(nonempty_unique(ctx, span, tasks, "tasks", "task")?);
        }
        if let Some(layers) = self.layers {
            let span = layers.span();
            run.layers = Some(nonempty_unique(
                ctx,
                span,
                layers.into_inner(),
                "layers",
                "layer",
            )?);
        }
        if let Some(seconds) = self.scan_interval_seconds {
            let span = seconds.span();
            let value = *seconds.get_ref();
            let key = "scan_interval_seconds";
            if value.is_finite() && value <= 0.0 {
                let value = value.to_string();
                return Err(ctx.invalid(span, Problem::NotPositive { key, value }));
            }
            run.scan_interval = Duration::try_from_secs_f64(value).map_err(|_| {
                let value = value.to_string();
                ctx.invalid(span, Problem::OutOfRange { key, value })
            })?;
        }
        if let Some(seconds) = self.late_stage_budget_seconds {
            let span = seconds.span();
            let value = *seconds.get_ref();
            let key = "late_stage_budget_seconds";
            if value.is_nan() || value < 0.0 {
                let value = value.to_string();
                return Err(ctx.invalid(span, Problem::OutOfRange { key, value }));
            }
            run.late_stage_budget = Duration::try_from_secs_f64(value).map_err(|_| {
                let value = value.to_string();
                ctx.invalid(span, Problem::OutOfRange { key, value })
            })?;
        }
        if let Some(scans) = self.stable_scans {
            run.stable_scans = positive(ctx, scans, "stable_scans")?;
        }
        if let Some(capacity) = self.queue_capacity {
            run.queue_capacity = positive(ctx, capacity, "queue_capacity")?;
        }
        run.mode = self.mode.unwrap_or(run.mode);
        run.label_distance = self.label_distance.unwrap_or(run.label_distance);
        run.drop_clusters_up_to = self.drop_clusters_up_to.unwrap_or(run.drop_clusters_up_to);
        run.train_test_similarity = self
            .train_test_similarity
            .unwrap_or(run.train_test_similarity);
        run.queue = self.queue.unwrap_or(run.queue);
        run.export_label_pairs = self.export_label_pairs.unwrap_or(run.export_label_pairs);
        run.follow_symlinks = self.follow_symlinks.unwrap_or(run.follow_symlinks);
        run.classifier = self.classifier.unwrap_or(run.classifier);
        if let Some(n) = self.classifier_configurations {
            let key = "classifier_configurations";
            let count = positive(ctx, n.clone(), key)?;
            let grid = geometry::classifier::full_grid().len();
            if count > grid {
                let value = format!("{count} (the grid has {grid} configurations)");
                return Err(ctx.invalid(n.span(), Problem::OutOfRange { key, value }));
            }
            run.classifier_configurations = count;
        }
        run.memorisation_splits = self.memorisation_splits.unwrap_or(run.memorisation_splits);
        let hf = run.layout == Layout::HfCheckpoints;
        let not_hf = |key: &'static str, span: Range<usize>, hint: &'static str| {
            ctx.invalid(span, Problem::NeedsHfLayout { key, hint })
        };
        const DUMP_HINT: &str = "activation dumps carry their own vectors";
        if let Some(t) = self.tokenizer {
            if !hf {
                return Err(not_hf("tokenizer", t.span(), DUMP_HINT));
            }
            run.tokenizer = Some(resolve(ctx, t, "tokenizer", dir)?);
        }
        if let Some(p) = self.word_pooling {
            if !hf {
                return Err(not_hf("word_pooling", p.span(), DUMP_HINT));
            }
            run.word_pooling = match p.into_inner() {
                RawWordPooling::First => WordPooling::First,
                RawWordPooling::Mean => WordPooling::Mean,
            };
        }
        if let Some(p) = self.sentence_pooling {
            if !hf {
                return Err(not_hf("sentence_pooling", p.span(), DUMP_HINT));
            }
            run.sentence_pooling = match p.into_inner() {
                RawSentencePooling::Cls => SentencePooling::Cls,
                RawSentencePooling::Mean => SentencePooling::Mean,
            };
        }
        match self.probe {
            Some(probes) if !hf => {
                let span = probes.first().map_or(0..0, |p| p.span());
                return Err(not_hf(
                    "[[run.probe]]",
                    span,
                    "with dumps, `tasks` selects the tasks a dump holds",
                ));
            }
            None if hf => {
                return Err(ctx.invalid(layout_span.unwrap_or(0..0), Problem::NoProbeSets));
            }
            None => {}
            Some(probes) => {
                for probe in probes {
                    let p = probe.into_inner().check(ctx, dir)?;
                    if run.probes.iter().any(|q| q.task.name == p.0.task.name) {
                        return Err(ctx.invalid(p.1, Problem::DuplicateProbeName(p.0.task.name)));
                    }
                    run.probes.push(p.0);
                }
            }
        }
        Ok(run)
    }
}

impl RawProbe {
    /// The probe and the span of its task name (for duplicate names).
    fn check(self, ctx: &Ctx<'_>, dir: &Path) -> Result<(ProbeConfig, Range<usize>), ConfigError> {
        let task_span = self.task.span();
        let kind = self.task.into_inner();
        let mut task: TaskSpec = kind
            .parse()
            .map_err(|_| ctx.invalid(task_span.clone(), Problem::UnknownTask(kind)))?;
        let mut name_span = task_span;
        if let Some(name) = self.name {
            let span = name.span();
            let name = name.into_inner();
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '+'));
            if !ok {
                return Err(ctx.invalid(
                    span,
                    Problem::BadProbeFile {
                        text: name,
                        message: "a task name is made of letters, digits, `_`, `.`, `-`, `+`"
                            .into(),
                    },
                ));
            }
            task.name = name;
            name_span = span;
        }
        let files_span = self.files.span();
        let raw_files = self.files.into_inner();
        if raw_files.is_empty() {
            return Err(ctx.invalid(files_span, Problem::NoProbeFiles));
        }
        let mut files = Vec::with_capacity(raw_files.len());
        for f in raw_files {
            let span = f.span();
            let text = f.into_inner();
            let mut source: ProbeSetSource = text.parse().map_err(|e| {
                let message = match e {
                    source::probeset::ProbeSetError::BadSource { message, .. } => message,
                    other => other.to_string(),
                };
                ctx.invalid(
                    span.clone(),
                    Problem::BadProbeFile {
                        text: text.clone(),
                        message,
                    },
                )
            })?;
            source.path = dir.join(&source.path);
            if !source.path.is_file() {
                return Err(ctx.invalid(span, Problem::MissingProbeFile(source.path)));
            }
            files.push(source);
        }
        Ok((ProbeConfig { task, files }, name_span))
    }
}

/// A non-empty path, made absolute against `dir`.
fn resolve(
    ctx: &Ctx<'_>,
    value: Spanned<PathBuf>,
    key: &'static str,
    dir: &Path,
) -> Result<PathBuf, ConfigError> {
    if value.get_ref().as_os_str().is_empty() {
        return Err(ctx.invalid(value.span(), Problem::Empty { key }));
    }
    Ok(dir.join(value.into_inner()))
}

/// A count that must be at least 1.
fn positive<T>(ctx: &Ctx<'_>, value: Spanned<T>, key: &'static str) -> Result<T, ConfigError>
where
    T: Default + PartialEq + ToString,
{
    if *value.get_ref() == T::default() {
        let problem = Problem::NotPositive {
            key,
            value: value.get_ref().to_string(),
        };
        return Err(ctx.invalid(value.span(), problem));
    }
    Ok(value.into_inner())
}

/// A list that is neither empty nor repeats an item.
fn nonempty_unique<T: PartialEq + ToString>(
    ctx: &Ctx<'_>,
    span: Range<usize>,
    items: Vec<T>,
    key: &'static str,
    what: &'static str,
) -> Result<Vec<T>, ConfigError> {
    if items.is_empty() {
        return Err(ctx.invalid(span, Problem::EmptyList { key, what }));
    }
    for (i, item) in items.iter().enumerate() {
        if items[..i].contains(item) {
            let item = item.to_string();
            return Err(ctx.invalid(span, Problem::DuplicateItem { key, item }));
        }
    }
    Ok(items)
}

/// `"first"`, `{ step = N }` or `{ path = "…" }` (relative to the run folder).
fn baseline_from(
    ctx: &Ctx<'_>,
    value: Spanned<toml::Value>,
    folder: &Path,
) -> Result<Baseline, ConfigError> {
    let span = value.span();
    let bad = |reason: String| ctx.invalid(span.clone(), Problem::BadBaseline { reason });
    match value.into_inner() {
        toml::Value::String(s) if s == "first" => Ok(Baseline::First),
        toml::Value::String(s) => Err(bad(format!("is the unknown string {s:?}"))),
        toml::Value::Table(table) => {
            let mut entries = table.into_iter();
            match (entries.next(), entries.next()) {
                (Some((key, value)), None) => match (key.as_str(), value) {
                    ("step", toml::Value::Integer(step)) => u64::try_from(step)
                        .map(Baseline::Step)
                        .map_err(|_| bad(format!("step must not be negative, got {step}"))),
                    ("step", other) => Err(bad(format!(
                        "step must be an integer, got {}",
                        describe_value(&other)
                    ))),
                    ("path", toml::Value::String(path)) if path.is_empty() => {
                        Err(bad("path is empty".to_owned()))
                    }
                    ("path", toml::Value::String(path)) => Ok(Baseline::Path(folder.join(path))),
                    ("path", other) => Err(bad(format!(
                        "path must be a string, got {}",
                        describe_value(&other)
                    ))),
                    (other, _) => Err(bad(format!("has the unknown key `{other}`"))),
                },
                (None, _) => Err(bad("is an empty table".to_owned())),
                (Some(_), Some(_)) => Err(bad("must have exactly one key".to_owned())),
            }
        }
        other => Err(bad(format!("is {}", describe_value(&other)))),
    }
}

/// A short rendering of a TOML value for messages: its type and value.
fn describe_value(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(_) => "a table".to_owned(),
        toml::Value::Array(_) => "an array".to_owned(),
        other => format!("{} {other}", other.type_str()),
    }
}

impl Config {
    /// What `probewatch check-config FILE` prints: the listener, store,
    /// workers, and for each run every resolved setting, whether its folder
    /// exists, and what the daemon would do with it.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_description(&mut out);
        out
    }

    fn write_description(&self, out: &mut String) -> std::fmt::Result {
        writeln!(out, "config {}", self.file.display())?;
        if self.listen.port() == 0 {
            writeln!(
                out,
                "listen on {} with a free port picked at start (/metrics, /healthz, /readyz, /report)",
                self.listen.ip()
            )?;
        } else {
            writeln!(
                out,
                "listen on http://{}/ (/metrics, /healthz, /readyz, /report)",
                self.listen
            )?;
        }
        if !self.listen.ip().is_loopback() {
            writeln!(
                out,
                "  note: {} is reachable from other machines",
                self.listen.ip()
            )?;
        }
        let store_state = if self.store.is_file() {
            "exists, history is resumed"
        } else if self.store.exists() {
            "EXISTS BUT IS NOT A FILE"
        } else {
            "will be created"
        };
        writeln!(out, "store {} ({store_state})", self.store.display())?;
        match &self.web_config {
            None => writeln!(out, "web config none: plain HTTP, no authentication")?,
            Some(web) => writeln!(out, "web config {}", web.display())?,
        }
        if let Some(shard) = self.shard {
            writeln!(
                out,
                "shard {shard}: analyses every {}th (task, layer) pair of each checkpoint, from position {}",
                shard.count(),
                shard.index()
            )?;
        }
        writeln!(out, "workers {} analysis threads", self.workers)?;
        let log = match self.log_format {
            LogFormat::Human => "human-readable lines",
            LogFormat::Json => "JSON lines",
        };
        writeln!(out, "log format {log}")?;
        let l = &self.limits;
        writeln!(
            out,
            "limits checkpoints up to {} bytes; per task up to {} items, {} labels, {} layers; \
             HTTP up to {} requests at once, request heads up to {} bytes",
            l.max_file_bytes,
            l.max_items_per_task,
            l.max_labels,
            l.max_layers,
            l.max_concurrent_requests,
            l.max_request_bytes
        )?;
        writeln!(out, "{} run(s):", self.runs.len())?;
        for run in &self.runs {
            run.write_description(out)?;
        }
        Ok(())
    }
}

impl RunConfig {
    fn write_description(&self, out: &mut String) -> std::fmt::Result {
        writeln!(out)?;
        writeln!(out, "run {}", self.name)?;
        let folder_state = if self.folder.is_dir() {
            "exists"
        } else if self.folder.exists() {
            "EXISTS BUT IS NOT A FOLDER"
        } else {
            "does not exist yet; watched until it appears"
        };
        writeln!(out, "  folder {} ({folder_state})", self.folder.display())?;
        let what = match self.layout {
            Layout::Dumps => "activation dumps *.safetensors",
            Layout::HfCheckpoints => "HuggingFace checkpoint-<step>/ folders",
        };
        writeln!(
            out,
            "  watch {} for {what} every {}; a file is complete once its size and mtime are unchanged for {} scan(s)",
            self.folder.display(),
            seconds(self.scan_interval),
            self.stable_scans
        )?;
        let symlinks = if self.follow_symlinks {
            "followed"
        } else {
            "not followed"
        };
        writeln!(out, "  symbolic links {symlinks}")?;
        match &self.baseline {
            Baseline::First => writeln!(out, "  baseline = first checkpoint")?,
            Baseline::Step(step) => writeln!(out, "  baseline = checkpoint of step {step}")?,
            Baseline::Path(path) => {
                let state = if path.exists() {
                    "exists"
                } else {
                    "does not exist yet"
                };
                writeln!(out, "  baseline = {} ({state})", path.display())?;
            }
        }
        if self.layout == Layout::HfCheckpoints {
            match &self.tokenizer {
                Some(t) => {
                    let state = if t.is_file() {
                        "exists"
                    } else {
                        "DOES NOT EXIST"
                    };
                    writeln!(out, "  tokenizer {} ({state})", t.display())?;
                }
                None => writeln!(
                    out,
                    "  tokenizer: each checkpoint's tokenizer.json, else the run folder's"
                )?,
            }
            let word = match self.word_pooling {
                WordPooling::First => "first subword",
                WordPooling::Mean => "mean of subwords",
            };
            let sentence = match self.sentence_pooling {
                SentencePooling::Cls => "first special token ([CLS])",
                SentencePooling::Mean => "mean of tokens",
            };
            writeln!(out, "  word vector: {word}; sentence vector: {sentence}")?;
            writeln!(
                out,
                "  tasks (one encoder pass per checkpoint serves all {}):",
                self.probes.len()
            )?;
            for p in &self.probes {
                let files: Vec<String> = p.files.iter().map(ToString::to_string).collect();
                writeln!(out, "    {}: {}", p.task.name, files.join(", "))?;
            }
        } else {
            match &self.tasks {
                None => writeln!(out, "  tasks: every task in each dump")?,
                Some(tasks) => writeln!(out, "  tasks: {}", tasks.join(", "))?,
            }
        }
        match &self.layers {
            None => writeln!(out, "  layers: every layer")?,
            Some(layers) => {
                let list: Vec<String> = layers.iter().map(ToString::to_string).collect();
                writeln!(out, "  layers: {}", list.join(", "))?;
            }
        }
        let mode = match self.mode {
            Mode::Exact => "exact (DirectProbe re-run on every checkpoint, incrementally)",
            Mode::FrozenPartition => {
                "frozen partition (the baseline's clusters re-checked, distances recomputed)"
            }
        };
        writeln!(out, "  mode: {mode}")?;
        let distance = match self.label_distance {
            LabelDistance::Mean => "mean over cluster pairs",
            LabelDistance::Min => "min over cluster pairs",
        };
        writeln!(out, "  label distance: {distance}")?;
        if self.drop_clusters_up_to == 0 {
            writeln!(out, "  small clusters: kept")?;
        } else {
            writeln!(
                out,
                "  small clusters: clusters of up to {} points dropped before measuring",
                self.drop_clusters_up_to
            )?;
        }
        let on_off = |b: bool| if b { "on" } else { "off" };
        writeln!(
            out,
            "  train/test similarity: {}",
            on_off(self.train_test_similarity)
        )?;
        let queue = match self.queue {
            QueuePolicy::All => "every checkpoint, in order",
            QueuePolicy::Newest => "only the newest waiting checkpoint",
        };
        writeln!(
            out,
            "  queue: {queue}, up to {} waiting",
            self.queue_capacity
        )?;
        if self.late_stage_budget.is_zero() {
            writeln!(out, "  late stages: off (core stage only)")?;
        } else {
            writeln!(
                out,
                "  late stages: up to {} s of work per checkpoint",
                self.late_stage_budget.as_secs_f64()
            )?;
        }
        writeln!(
            out,
            "  per-label-pair series: {}",
            on_off(self.export_label_pairs)
        )?;
        match self.classifier {
            Classifier::None => writeln!(out, "  classifier probe: off")?,
            Classifier::Mlp => writeln!(
                out,
                "  classifier probe: MLP, best of {} configurations, 5 seeds",
                self.classifier_configurations
            )?,
        }
        if self.memorisation_splits {
            writeln!(
                out,
                "  memorisation splits: subtrain/subtest carved 80:20 out of train; fitted on subtrain"
            )
        } else {
            writeln!(out, "  memorisation splits: off")
        }
    }
}

/// `10 s`, `0.5 s`.
fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "conf/test.toml";

    fn run_table(extra: &str) -> String {
        format!("[[run]]\nname = \"r\"\nfolder = \"/data/r\"\n{extra}")
    }

    /// The error of `text`, its message checked to name the file and line.
    fn error(text: &str, line: usize) -> (ConfigError, String) {
        let err = match parse(text, Path::new(FILE)) {
            Ok(config) => panic!("expected an error on line {line}, got {config:?}"),
            Err(err) => err,
        };
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("{FILE}:{line}:")),
            "expected {FILE}:{line}: in {message:?}"
        );
        assert_eq!(err.line(), Some(line), "{message}");
        (err, message)
    }

    fn problem(err: &ConfigError) -> &Problem {
        match err {
            ConfigError::Invalid { problem, .. } => problem,
            other => panic!("expected a semantic error, got {other:?}"),
        }
    }

    #[test]
    fn example_files_load() {
        let root = &Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let example =
            load(&root.join("config/probewatch.example.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert!(example.runs.len() >= 2);
        let minimal = load(&root.join("config/minimal.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(minimal.runs.len(), 1);
        assert_eq!(minimal.runs[0].folder, root.join("config/runs/my-run"));
        // The same text through include_str!, so a moved file fails to build.
        let text = include_str!("../../../config/probewatch.example.toml");
        let again = parse(text, &root.join("config/probewatch.example.toml"));
        assert_eq!(again.ok().as_ref(), Some(&example));
    }

    #[test]
    fn limits_are_read_and_checked() {
        let dir = Path::new("/etc/probewatch");
        let text = format!(
            "[limits]\nmax_file_bytes = 1000\nmax_labels = 7\n\n{}",
            run_table("")
        );
        let cfg = parse(&text, &dir.join("c.toml")).unwrap();
        assert_eq!(cfg.limits.max_file_bytes, 1000);
        assert_eq!(cfg.limits.max_labels, 7);
        assert_eq!(cfg.limits.max_layers, DEFAULT_MAX_LAYERS);
        assert_eq!(
            cfg.limits.max_concurrent_requests,
            DEFAULT_MAX_CONCURRENT_REQUESTS
        );
        let defaults = parse(&run_table(""), &dir.join("c.toml")).unwrap();
        assert_eq!(defaults.limits, Limits::default());

        let (err, msg) = error(&format!("[limits]\nmax_layers = 0\n{}", run_table("")), 2);
        assert!(
            matches!(
                problem(&err),
                Problem::NotPositive {
                    key: "max_layers",
                    ..
                }
            ),
            "{msg}"
        );
        let (err, msg) = error(
            &format!("[limits]\nmax_request_bytes = 100\n{}", run_table("")),
            2,
        );
        assert!(msg.contains("at least 256"), "{msg}");
        assert!(matches!(problem(&err), Problem::OutOfRange { .. }));
        let (_, msg) = error(&format!("[limits]\nmax_lables = 3\n{}", run_table("")), 2);
        assert!(msg.contains("max_lables"), "{msg}");
        let (_, msg) = error(&format!("[limits]\nmax_labels = -3\n{}", run_table("")), 2);
        assert!(msg.contains("non-negative"), "{msg}");
    }

    #[test]
    fn example_shows_every_option() {
        let text = include_str!("../../../config/probewatch.example.toml");
        for key in [
            "listen",
            "store",
            "workers",
            "log_format",
            "name",
            "folder",
            "layout",
            "baseline",
            "tasks",
            "layers",
            "scan_interval_seconds",
            "stable_scans",
            "mode",
            "label_distance",
            "drop_clusters_up_to",
            "train_test_similarity",
            "queue",
            "queue_capacity",
            "late_stage_budget_seconds",
            "export_label_pairs",
            "follow_symlinks",
            "tokenizer",
            "word_pooling",
            "sentence_pooling",
            "task",
            "files",
            "classifier",
            "classifier_configurations",
            "memorisation_splits",
            "max_file_bytes",
            "max_items_per_task",
            "max_labels",
            "max_layers",
            "max_concurrent_requests",
            "max_request_bytes",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{key} = "))),
                "example lacks an uncommented `{key} = …` line"
            );
        }
        let readme = include_str!("../../../docs/configuration.md");
        let settings = text.lines().filter(|l| !l.trim_start().starts_with('#'));
        for line in settings.filter_map(|l| l.split_once(" = ")) {
            assert!(
                readme.contains(&format!("`{}`", line.0)),
                "README's Configuration section lacks `{}`",
                line.0
            );
        }
    }

    #[test]
    fn example_values_are_the_ones_written() {
        let root = &Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let config =
            load(&root.join("config/probewatch.example.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.listen.port(), DEFAULT_PORT);
        assert!(config.listen.ip().is_loopback());
        let run = &config.runs[0];
        assert_eq!(run.name, "minilm-upos");
        assert_eq!(run.tasks.as_deref(), Some(&["ps_role".to_owned()][..]));
        assert_eq!(run.layers.as_deref(), Some(&[0, 6][..]));
    }

    #[test]
    fn web_config_resolves_against_the_config_folder() {
        let text = format!("web_config = \"tls/web.yml\"\n{}", run_table(""));
        let config =
            parse(&text, Path::new("/etc/pw/probewatch.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.web_config.as_deref(),
            Some(Path::new("/etc/pw/tls/web.yml"))
        );
        assert_eq!(config.shard, None);
        assert!(config.describe().contains("web config /etc/pw/tls/web.yml"));
        let (_, message) = error(&format!("web_config = \"\"\n{}", run_table("")), 1);
        assert!(message.contains("`web_config` is empty"), "{message}");
        let mut config = config;
        config.shard = Some(crate::shard::Shard::new(1, 3).unwrap());
        assert!(config.describe().contains("shard 1/3"));
    }

    #[test]
    fn defaults_are_applied() {
        let config = parse(&run_table(""), Path::new("/etc/pw/probewatch.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.file, Path::new("/etc/pw/probewatch.toml"));
        assert_eq!(
            config.listen,
            SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT))
        );
        assert_eq!(config.store, Path::new("/etc/pw/probewatch.sqlite"));
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(config.workers, parallelism);
        assert_eq!(config.log_format, LogFormat::Human);
        assert_eq!(config.runs, vec![RunConfig::new("r", "/data/r")]);
        let run = &config.runs[0];
        assert_eq!(run.layout, Layout::Dumps);
        assert_eq!(run.baseline, Baseline::First);
        assert_eq!((run.tasks.as_ref(), run.layers.as_ref()), (None, None));
        assert_eq!(run.scan_interval, Duration::from_secs(10));
        assert_eq!(run.stable_scans, 2);
        assert_eq!(run.mode, Mode::Exact);
        assert_eq!(run.label_distance, LabelDistance::Mean);
        assert_eq!(run.drop_clusters_up_to, 0);
        assert!(run.train_test_similarity);
        assert_eq!(run.queue, QueuePolicy::All);
        assert_eq!(run.queue_capacity, 64);
        assert!(!run.export_label_pairs);
        assert!(!run.follow_symlinks);
        assert_eq!(run.classifier, Classifier::None);
        assert_eq!(run.classifier_configurations, 4);
        assert!(!run.memorisation_splits);
    }

    #[test]
    fn classifier_options_are_checked() {
        let (err, message) = error(&run_table("classifier_configurations = 0\n"), 4);
        assert!(
            matches!(
                problem(&err),
                Problem::NotPositive {
                    key: "classifier_configurations",
                    ..
                }
            ),
            "{message}"
        );
        let (err, message) = error(&run_table("classifier_configurations = 129\n"), 4);
        assert!(
            matches!(
                problem(&err),
                Problem::OutOfRange {
                    key: "classifier_configurations",
                    ..
                }
            ),
            "{message}"
        );
        assert!(message.contains("128"), "{message}");
        let (_, message) = error(&run_table("classifier = \"svm\"\n"), 4);
        assert!(message.contains("mlp"), "{message}");
    }

    #[test]
    fn every_option_is_read() {
        let text = r#"
listen = "[::1]:9999"
store = "/var/lib/pw/h.sqlite"
workers = 3
log_format = "json"
[[run]]
name = "a.b_c-1"
folder = "/data/a"
baseline = { step = 500 }
tasks = ["upos", "deprel"]
layers = [6, 0]
scan_interval_seconds = 0.5
stable_scans = 4
mode = "frozen-partition"
label_distance = "min"
drop_clusters_up_to = 5
train_test_similarity = false
queue = "newest"
queue_capacity = 1
export_label_pairs = true
follow_symlinks = true
classifier = "mlp"
classifier_configurations = 8
memorisation_splits = true
[[run]]
name = "b"
folder = "/data/b"
baseline = { path = "checkpoint-0.safetensors" }
"#;
        let config = parse(text, Path::new("/x/c.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.listen,
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 9999))
        );
        assert_eq!(config.store, Path::new("/var/lib/pw/h.sqlite"));
        assert_eq!(config.workers, 3);
        assert_eq!(config.log_format, LogFormat::Json);
        let a = &config.runs[0];
        let expected = RunConfig {
            name: "a.b_c-1".into(),
            folder: "/data/a".into(),
            layout: Layout::Dumps,
            baseline: Baseline::Step(500),
            tasks: Some(vec!["upos".into(), "deprel".into()]),
            layers: Some(vec![6, 0]),
            scan_interval: Duration::from_millis(500),
            stable_scans: 4,
            mode: Mode::FrozenPartition,
            label_distance: LabelDistance::Min,
            drop_clusters_up_to: 5,
            train_test_similarity: false,
            queue: QueuePolicy::Newest,
            queue_capacity: 1,
            late_stage_budget: Duration::from_secs(600),
            export_label_pairs: true,
            follow_symlinks: true,
            probes: Vec::new(),
            tokenizer: None,
            word_pooling: WordPooling::First,
            sentence_pooling: SentencePooling::Cls,
            classifier: Classifier::Mlp,
            classifier_configurations: 8,
            memorisation_splits: true,
        };
        assert_eq!(a, &expected);
        assert_eq!(
            config.runs[1].baseline,
            Baseline::Path("/data/b/checkpoint-0.safetensors".into())
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let conf_dir = dir.path().join("etc");
        std::fs::create_dir(&conf_dir).unwrap_or_else(|e| panic!("{e}"));
        let file = conf_dir.join("pw.toml");
        let text = "store = \"db/h.sqlite\"\n[[run]]\nname = \"r\"\nfolder = \"../runs/r\"\n\
                    baseline = { path = \"ckpt-0\" }\n";
        std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
        let config = load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.store, conf_dir.join("db/h.sqlite"));
        let run = &config.runs[0];
        assert!(run.folder.is_absolute());
        assert_eq!(run.folder, conf_dir.join("../runs/r"));
        assert_eq!(
            run.baseline,
            Baseline::Path(conf_dir.join("../runs/r/ckpt-0"))
        );

        // A relative config path anchors at the current directory.
        let config = parse(text, Path::new("rel/pw.toml")).unwrap_or_else(|e| panic!("{e}"));
        let cwd = std::env::current_dir().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.runs[0].folder, cwd.join("rel/../runs/r"));
        assert_eq!(config.file, Path::new("rel/pw.toml"));
    }

    #[test]
    fn unreadable_file_names_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("missing.toml");
        let err = load(&file).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains("cannot read"), "{err}");
    }

    #[test]
    fn unknown_key_in_a_run_reports_its_line() {
        let text = run_table("scan_interval_seconds = 5\nscan_intervall = 10\n");
        let (err, message) = error(&text, 5);
        assert!(
            matches!(err, ConfigError::Toml { column: 1, .. }),
            "{err:?}"
        );
        assert!(
            message.contains("unknown field `scan_intervall`"),
            "{message}"
        );
        assert!(message.contains("scan_interval_seconds"), "{message}");
    }

    #[test]
    fn unknown_top_level_key_reports_its_line() {
        let text = format!("workers = 2\nlisten_port = 1\n{}", run_table(""));
        let (_, message) = error(&text, 2);
        assert!(message.contains("unknown field `listen_port`"), "{message}");
    }

    #[test]
    fn syntax_and_type_errors_report_their_line() {
        let (_, message) = error(&format!("{}queue = newest\n", run_table("")), 4);
        assert!(message.contains("strings need quotes"), "{message}");
        let (_, message) = error("[run]\nname = \"r\"\nfolder = \"/d\"\n", 1);
        assert!(message.contains("write [[run]]"), "{message}");
        let (_, message) = error(&run_table("name = \"q\"\n"), 4);
        assert!(message.contains("duplicate key `name`"), "{message}");
        let (_, message) = error(&run_table("queue_capacity = 1.5\n"), 4);
        assert!(message.contains("non-negative integer"), "{message}");
        let (_, message) = error(&run_table("layout = \"hf\"\n"), 4);
        assert!(message.contains("hf-checkpoints"), "{message}");
        let (_, message) = error(&run_table("stable_scans = -1\n"), 4);
        assert!(message.contains("-1"), "{message}");
        assert!(!message.contains("u32"), "{message}");
        let (_, message) = error(&run_table("scan_interval_seconds = \"10\"\n"), 4);
        assert!(message.contains("expected a number"), "{message}");
        let (_, message) = error(&format!("workers = \"2\"\n{}", run_table("")), 1);
        assert!(message.contains("string"), "{message}");
        let (_, message) = error(&run_table("mode = \"frozen\"\n"), 4);
        assert!(message.contains("frozen-partition"), "{message}");
        let (_, message) = error(&run_table("label_distance = \"max\"\n"), 4);
        assert!(message.contains("mean"), "{message}");
    }

    #[test]
    fn missing_folder_is_reported() {
        let (_, message) = error("workers = 1\n[[run]]\nname = \"r\"\n", 2);
        assert!(message.contains("folder"), "{message}");
    }

    #[test]
    fn no_runs() {
        let (err, message) = error("workers = 1\n", 1);
        assert_eq!(problem(&err), &Problem::NoRuns);
        assert!(message.contains("[[run]]"), "{message}");
        let (err, _) = error("workers = 1\nrun = []\n", 2);
        assert_eq!(problem(&err), &Problem::NoRuns);
        error("", 1);
    }

    #[test]
    fn duplicate_run_name() {
        let text = format!(
            "{}\n[[run]]\nname = \"other\"\nfolder = \"/o\"\n\n[[run]]\nname = \"r\"\nfolder = \"/x\"\n",
            run_table("")
        );
        let (err, message) = error(&text, 10);
        assert_eq!(
            problem(&err),
            &Problem::DuplicateRunName {
                name: "r".into(),
                first_line: 2
            }
        );
        assert!(message.contains("already used"), "{message}");
    }

    #[test]
    fn bad_run_names() {
        for name in ["", "a b", "ütf", "a/b", "x\"y"] {
            let text = format!(
                "workers = 1\n[[run]]\nfolder = \"/f\"\nname = {}\n",
                toml::Value::String(name.into())
            );
            let (err, message) = error(&text, 4);
            assert_eq!(problem(&err), &Problem::BadRunName(name.into()));
            assert!(message.contains("A-Z a-z 0-9"), "{message}");
        }
    }

    #[test]
    fn zero_counts_and_intervals() {
        for (key, value) in [
            ("scan_interval_seconds", "0"),
            ("scan_interval_seconds", "-2.5"),
            ("scan_interval_seconds", "0.0"),
            ("stable_scans", "0"),
            ("queue_capacity", "0"),
        ] {
            let (err, message) = error(&run_table(&format!("\n{key} = {value}\n")), 5);
            assert!(
                matches!(problem(&err), Problem::NotPositive { key: k, .. } if *k == key),
                "{err:?}"
            );
            assert!(message.contains("greater than 0"), "{message}");
        }
        let (err, _) = error(&format!("workers = 0\n{}", run_table("")), 1);
        assert!(matches!(
            problem(&err),
            Problem::NotPositive { key: "workers", .. }
        ));
        for value in ["nan", "inf", "1e300"] {
            let (err, message) =
                error(&run_table(&format!("scan_interval_seconds = {value}\n")), 4);
            assert!(
                matches!(problem(&err), Problem::OutOfRange { .. }),
                "{value}: {err:?}"
            );
            assert!(message.contains("scan_interval_seconds"), "{message}");
        }
    }

    #[test]
    fn baseline_forms() {
        let step = |s: &str| {
            parse(
                &run_table(&format!("baseline = {s}\n")),
                Path::new("/c/x.toml"),
            )
            .map(|c| c.runs[0].baseline.clone())
        };
        assert_eq!(step("\"first\"").ok(), Some(Baseline::First));
        assert_eq!(step("{ step = 0 }").ok(), Some(Baseline::Step(0)));
        assert_eq!(
            step("{ path = \"/abs/ck\" }").ok(),
            Some(Baseline::Path("/abs/ck".into()))
        );
        for (value, reason) in [
            (
                "{ step = \"100\" }",
                "step must be an integer, got string \"100\"",
            ),
            ("{ step = 1.5 }", "step must be an integer"),
            ("{ step = -1 }", "must not be negative"),
            ("\"last\"", "unknown string \"last\""),
            ("{ steps = 3 }", "unknown key `steps`"),
            ("{ step = 1, path = \"x\" }", "exactly one key"),
            ("{}", "empty table"),
            ("{ path = \"\" }", "path is empty"),
            ("{ path = 3 }", "path must be a string"),
            ("5", "is integer 5"),
        ] {
            let (err, message) = error(&run_table(&format!("\nbaseline = {value}\n")), 5);
            assert!(
                matches!(problem(&err), Problem::BadBaseline { .. }),
                "{err:?}"
            );
            assert!(message.contains(reason), "{value}: {message}");
            assert!(message.contains("step = <integer>"), "{message}");
        }
    }

    #[test]
    fn empty_and_repeated_lists() {
        let (err, message) = error(&run_table("layers = []\n"), 4);
        assert_eq!(
            problem(&err),
            &Problem::EmptyList {
                key: "layers",
                what: "layer"
            }
        );
        assert!(message.contains("leave `layers` out"), "{message}");
        let (err, _) = error(&run_table("tasks = []\n"), 4);
        assert!(matches!(
            problem(&err),
            Problem::EmptyList { key: "tasks", .. }
        ));
        let (err, message) = error(&run_table("layers = [0, 3, 0]\n"), 4);
        assert!(matches!(
            problem(&err),
            Problem::DuplicateItem { key: "layers", .. }
        ));
        assert!(message.contains("lists 0 twice"), "{message}");
        let (err, _) = error(&run_table("tasks = [\"upos\", \"\"]\n"), 4);
        assert_eq!(problem(&err), &Problem::Empty { key: "tasks" });
    }

    #[test]
    fn empty_paths_and_bad_listen() {
        let (err, _) = error("[[run]]\nname = \"r\"\nfolder = \"\"\n", 3);
        assert_eq!(problem(&err), &Problem::Empty { key: "folder" });
        let (err, _) = error(&format!("store = \"\"\n{}", run_table("")), 1);
        assert_eq!(problem(&err), &Problem::Empty { key: "store" });
        for listen in ["localhost:9000", "127.0.0.1", "1.2.3.4:99999", ""] {
            let text = format!("workers = 1\nlisten = \"{listen}\"\n{}", run_table(""));
            let (err, message) = error(&text, 2);
            assert!(
                matches!(problem(&err), Problem::BadListen { .. }),
                "{err:?}"
            );
            assert!(message.contains("no host names"), "{message}");
        }
        // Port 0 (a free port picked at start) is allowed, for tests.
        let text = format!("listen = \"127.0.0.1:0\"\n{}", run_table(""));
        let config = parse(&text, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.listen.port(), 0);
        assert!(config.describe().contains("free port"));
    }

    #[test]
    fn hf_checkpoints_need_probe_sets_that_exist() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("dev.conllu"), "").unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("probewatch.toml");
        let parse_here = |text: &str| parse(text, &file);
        let hf = |extra: &str| format!("{}layout = \"hf-checkpoints\"\n{extra}", run_table(""));
        // Valid: relative files resolve against the config's folder.
        let config = parse_here(&hf(
            "word_pooling = \"mean\"\n[[run.probe]]\ntask = \"upos\"\nfiles = [\"dev.conllu:test\", \"dev.conllu\"]\n\
             [[run.probe]]\nname = \"rel\"\ntask = \"dep+subtypes\"\nfiles = [\"dev.conllu\"]\n",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let run = &config.runs[0];
        assert_eq!(run.word_pooling, WordPooling::Mean);
        assert_eq!(run.probes.len(), 2);
        assert_eq!(run.probes[0].task.name, "upos");
        assert_eq!(run.probes[0].files[0].path, dir.path().join("dev.conllu"));
        assert_eq!(run.probes[0].files[0].split.as_deref(), Some("test"));
        assert_eq!(run.probes[1].task.name, "rel");
        assert!(config.describe().contains("rel: "));
        // Each mistake: the line at fault and what is wrong.
        let line_of = |text: &str| match parse_here(text) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => (e.line(), e.to_string()),
        };
        let (line, msg) = line_of(&hf(""));
        assert_eq!(line, Some(4), "{msg}");
        assert!(msg.contains("needs at least one probe set"), "{msg}");
        let (line, msg) = line_of(&hf(
            "[[run.probe]]\ntask = \"pos-tags\"\nfiles = [\"dev.conllu\"]\n",
        ));
        assert_eq!(line, Some(6), "{msg}");
        assert!(msg.contains("unknown task \"pos-tags\""), "{msg}");
        let (line, msg) = line_of(&hf(
            "[[run.probe]]\ntask = \"upos\"\nfiles = [\"gone.conllu\"]\n",
        ));
        assert_eq!(line, Some(7), "{msg}");
        assert!(msg.contains("gone.conllu does not exist"), "{msg}");
        let (line, msg) = line_of(&hf("[[run.probe]]\ntask = \"upos\"\nfiles = []\n"));
        assert_eq!(line, Some(7), "{msg}");
        assert!(msg.contains("`files` is empty"), "{msg}");
        let (line, msg) = line_of(&hf(
            "[[run.probe]]\ntask = \"upos\"\nfiles = [\"dev.conllu\"]\n[[run.probe]]\ntask = \"pos\"\nname = \"upos\"\nfiles = [\"dev.conllu\"]\n",
        ));
        assert_eq!(line, Some(10), "{msg}");
        assert!(msg.contains("used by two"), "{msg}");
        let (line, msg) = line_of(&format!(
            "{}tasks = [\"upos\"]\n[[run.probe]]\ntask = \"upos\"\nfiles = [\"dev.conllu\"]\n",
            hf("")
        ));
        assert_eq!(line, Some(5), "{msg}");
        assert!(msg.contains("[[run.probe]] tables are the tasks"), "{msg}");
        // Encoder settings and probe sets on a dumps run are mistakes too.
        let (line, msg) = line_of(&run_table("word_pooling = \"mean\"\n"));
        assert_eq!(line, Some(4), "{msg}");
        assert!(msg.contains("only applies to layout"), "{msg}");
        let (line, msg) = line_of(&run_table(
            "[[run.probe]]\ntask = \"upos\"\nfiles = [\"dev.conllu\"]\n",
        ));
        assert_eq!(line, Some(4), "{msg}");
        assert!(msg.contains("only applies to layout"), "{msg}");
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(line_column("ab\ncdé\nf", 0), (1, 1));
        assert_eq!(line_column("ab\ncdé\nf", 3), (2, 1));
        assert_eq!(line_column("ab\ncdé\nf", 8), (3, 1));
        assert_eq!(line_column("ab\ncdé\nf", 7), (2, 4));
        assert_eq!(line_column("ab\ncdé\nf", 6), (2, 3));
        assert_eq!(line_column("ab", 99), (1, 3));
        assert_eq!(line_column("é", 1), (1, 1), "inside a character");
        // A column after a multi-byte character counts it once.
        let text = run_table("baseline = { path = \"é\", steps = nope }\n");
        let (err, _) = error(&text, 4);
        assert!(matches!(err, ConfigError::Toml { column: 34, .. }), "{err}");
    }

    #[test]
    fn describe_mentions_each_run_and_its_folder() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(dir.path().join("present")).unwrap_or_else(|e| panic!("{e}"));
        let text = "workers = 2\n\
                    [[run]]\nname = \"here\"\nfolder = \"present\"\ntasks = [\"upos\"]\nlayers = [0, 6]\n\
                    [[run]]\nname = \"there\"\nfolder = \"absent\"\nbaseline = { step = 100 }\n\
                    queue = \"newest\"\nscan_interval_seconds = 2.5\n";
        let config = parse(text, &dir.path().join("pw.toml")).unwrap_or_else(|e| panic!("{e}"));
        let out = config.describe();
        let present = dir.path().join("present").display().to_string();
        let absent = dir.path().join("absent").display().to_string();
        assert!(
            out.contains(&format!("listen on http://127.0.0.1:{DEFAULT_PORT}/")),
            "{out}"
        );
        assert!(out.contains("workers 2 analysis threads"), "{out}");
        assert!(
            out.contains(&format!(
                "store {}",
                dir.path().join(DEFAULT_STORE).display()
            )),
            "{out}"
        );
        assert!(out.contains("will be created"), "{out}");
        assert!(out.contains("run here"), "{out}");
        assert!(out.contains("run there"), "{out}");
        assert!(out.contains(&format!("folder {present} (exists)")), "{out}");
        assert!(
            out.contains(&format!("folder {absent} (does not exist yet")),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "watch {present} for activation dumps *.safetensors every 10 s"
            )),
            "{out}"
        );
        assert!(out.contains("every 2.5 s"), "{out}");
        assert!(out.contains("baseline = first checkpoint"), "{out}");
        assert!(out.contains("baseline = checkpoint of step 100"), "{out}");
        assert!(out.contains("tasks: upos"), "{out}");
        assert!(out.contains("layers: 0, 6"), "{out}");
        assert!(out.contains("tasks: every task"), "{out}");
        assert!(out.contains("only the newest"), "{out}");
    }
}
