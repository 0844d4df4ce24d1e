//! What can be wrong with a config file: [`ConfigError`] (unreadable, not
//! TOML or not the schema, or a value that cannot be used) and the
//! [`Problem`] with a well-formed file. Every message of a file's content
//! starts with `FILE:LINE:COLUMN:`.
//!
//! Deliberately only the words: finding the line and column is the
//! `position` module's, deciding that a value is wrong the `check`
//! module's.

use std::path::PathBuf;

use super::DEFAULT_PORT;

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
