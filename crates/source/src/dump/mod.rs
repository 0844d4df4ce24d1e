//! Reading activation dumps: one safetensors file per checkpoint holding, for
//! one or several probing tasks, the per-layer activation matrices `[N, D]`,
//! the items' labels and their split (DESIGN §3.1).
//!
//! [`ActivationDump::open`] reads only the 8-byte length prefix and the JSON
//! header, and checks everything that can be checked without the layer data:
//! header offsets, dtypes and shapes against the file size (a truncated or
//! overlong file is an error; the workspace's one safetensors reader,
//! [`crate::st`], does this part), the metadata (`label_names`, `splits`,
//! `tasks`, `step`), every task's labels and split (these small tensors are
//! read and range-checked), and the dtype and shape of every layer a task
//! uses. Layer matrices are read later, one at a time, by
//! [`ActivationDump::layer`], with positioned reads at the header's offsets,
//! so a multi-gigabyte dump never sits in memory whole; F16 and BF16 are
//! widened to `f32` and non-finite values are rejected there.
//! [`ActivationDump::from_bytes`] runs the same checks on a dump held in
//! memory (the fuzz target `dump` uses it).
//!
//! The module is split by concern: this file holds the public types (the
//! error, the layer dtype, a task's description); `reading` opens a dump and
//! reads its layers; `checks` validates metadata and tasks; `tests` covers
//! one test per error variant and the real dumps of the shared data folder.
//!
//! What this module does not do: it does not write dumps (`extract` does),
//! compute anything about the geometry, decide which layers or tasks to
//! analyse, or interpret other metadata keys (they are passed through by
//! [`ActivationDump::metadata`]). Tensors that belong to no task (for example
//! a prefix that is not listed in `tasks`) are ignored. Positioned reads use
//! `std::os::unix::fs::FileExt`, so the module builds on Unix only.

mod checks;
mod reading;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::PathBuf;

use safetensors::Dtype;

pub use crate::st::SafetensorsError;
pub use reading::ActivationDump;

/// Task name of a single-task dump without a `task` metadata entry.
const DEFAULT_TASK: &str = "default";
/// Name of the split that must exist and be non-empty for every task.
const TRAIN: &str = "train";

/// Everything that can be wrong with an activation dump. Every variant names
/// the file, and its message says precisely what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DumpError {
    /// The file could not be opened or read.
    #[error("{path}: I/O error while {action}: {source}")]
    Io {
        /// The dump file.
        path: PathBuf,
        /// What was being done, e.g. "opening the file".
        action: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The safetensors container is malformed (too short, a header too
    /// long, beyond the end of the file or not a safetensors header,
    /// inconsistent offsets, a size other than the header says, a metadata
    /// `step` that is not an integer), or a tensor is too large to read into
    /// memory. Reading it failing is [`DumpError::Io`].
    #[error(transparent)]
    Safetensors(SafetensorsError),
    /// A metadata entry other than the label names (`splits`, `tasks`) is
    /// malformed.
    #[error("{path}: metadata '{key}' {detail}")]
    BadMetadata {
        /// The dump file.
        path: PathBuf,
        /// The metadata key.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// The file's tensors are prefixed by task but metadata `tasks` is missing.
    #[error(
        "{path}: the tensors are prefixed by task ({}) but metadata 'tasks' is missing: a \
         multi-task dump must list its tasks in metadata 'tasks' (a JSON array)",
        .prefixes.join(", ")
    )]
    MissingTasks {
        /// The task prefixes found, each ending in `/`.
        prefixes: Vec<String>,
        /// The dump file.
        path: PathBuf,
    },
    /// The metadata has no label names for a task.
    #[error("{path}: task '{task}': metadata key '{key}' (the label names) is missing")]
    MissingLabelNames {
        /// The dump file.
        path: PathBuf,
        /// The task.
        task: String,
        /// The metadata key that was looked up.
        key: String,
    },
    /// The label names are not a JSON array of distinct strings.
    #[error("{path}: task '{task}': metadata '{key}' {detail}")]
    BadLabelNames {
        /// The dump file.
        path: PathBuf,
        /// The task.
        task: String,
        /// The metadata key.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// A task has no labels tensor.
    #[error("{path}: task '{task}': tensor '{tensor}' (the labels) is missing")]
    MissingLabels {
        /// The dump file.
        path: PathBuf,
        /// The task.
        task: String,
        /// The tensor name that was looked up.
        tensor: String,
    },
    /// The labels tensor has the wrong dtype or rank.
    #[error(
        "{path}: task '{task}': tensor '{tensor}' is {found}, but labels must be I64 \
         or I32 with shape [N]"
    )]
    BadLabels {
        /// The dump file.
        path: PathBuf,
        /// The task.
        task: String,
        /// The labels tensor.
        tensor: String,
        /// Its dtype and shape, e.g. `I64 [947]`.
        found: String,
    },
    /// A label is negative or not below the number of label names.
    #[error(
        "{path}: task '{task}': item {item} has label {value}, outside 0..{n_labels} \
         ({n_labels} label names)"
    )]
    LabelOutOfRange {
        /// The dump file.
        path: PathBuf,
        /// The task.
        task: String,
        /// Index of the offending item.
        item: usize,
        /// The label value found.
        value: i64,
        /// Number of label names.
        n_labels: usize,
    },
    /// The split tensor has the wrong dtype or shape.
    #[error(
        "{path}: task '{task}': tensor '{tensor}' is {found}, but the split must be \
         U8 with shape [{n}] (one entry per item)"
    )]
    BadSplit {
        /// The dump file.
        path: PathBuf,
        /// The task.
        task: String,
        /// The split tensor.
        tensor: String,
        /// Its dtype and shape, e.g. `I64 [947]`.
        found: String,
        /// Number of items (from the labels).
        n: usize,
    },
    /// A split index is not below the number of splits.
    #[error(
        "{path}: task '{task}': item {item} has split {value}, but there are only {} splits ({})",
        .splits.len(), .splits.join(", ")
    )]
    SplitOutOfRange {
        /// The dump file.
        path: PathBuf,
        /// The task.
        task: String,
        /// Index of the offending item.
        item: usize,
        /// The split value found.
        value: u8,
        /// The dump's split names.
        splits: Vec<String>,
    },
    /// A layer tensor has the wrong dtype or rank, or no columns.
    #[error(
        "{path}: task '{task}': tensor '{tensor}' is {found}, but a layer must be \
         F32, F16 or BF16 with shape [N, D], D > 0"
    )]
    BadLayer {
        /// The dump file.
        path: PathBuf,
        /// The task.
        task: String,
        /// The layer tensor.
        tensor: String,
        /// Its dtype and shape, e.g. `I64 [947]`.
        found: String,
    },
    /// A layer has a different number of rows than the task has labels.
    #[error(
        "{path}: task '{task}': tensor '{tensor}' has {rows} rows but '{labels}' has {n} items"
    )]
    LayerItemCount {
        /// The dump file.
        path: PathBuf,
        /// The task.
        task: String,
        /// The layer tensor.
        tensor: String,
        /// Its number of rows.
        rows: usize,
        /// The labels tensor.
        labels: String,
        /// Number of items (from the labels).
        n: usize,
    },
    /// Two layers of one task have different widths.
    #[error(
        "{path}: task '{task}': tensor '{tensor}' has D = {dim} but '{first_tensor}' has \
         D = {first_dim}; all layers of a task must share D"
    )]
    LayerDimMismatch {
        /// The dump file.
        path: PathBuf,
        /// The task.
        task: String,
        /// The layer tensor that disagrees.
        tensor: String,
        /// Its width.
        dim: usize,
        /// The task's first layer tensor.
        first_tensor: String,
        /// Its width.
        first_dim: usize,
    },
    /// A task has no `layer.<L>` tensor at all.
    #[error("{path}: task '{task}': no layer tensor at all (looked for {looked_for})")]
    NoLayers {
        /// The dump file.
        path: PathBuf,
        /// The task.
        task: String,
        /// The tensor name patterns that were looked for.
        looked_for: String,
    },
    /// A task listed in metadata `tasks` has no tensor with its prefix.
    #[error(
        "{path}: task '{task}' is listed in metadata 'tasks' but no tensor is named '{task}/...'"
    )]
    TaskWithoutTensors {
        /// The dump file.
        path: PathBuf,
        /// The task.
        task: String,
    },
    /// Metadata `splits` has no `train` entry.
    #[error("{path}: metadata 'splits' has no \"train\" entry (splits: [{}])", .splits.join(", "))]
    NoTrainSplit {
        /// The dump file.
        path: PathBuf,
        /// The dump's split names.
        splits: Vec<String>,
    },
    /// A task has no item in a required split (the train split).
    #[error("{path}: task '{task}': split '{split}' has no items")]
    EmptySplit {
        /// The dump file.
        path: PathBuf,
        /// The task.
        task: String,
        /// The empty split.
        split: String,
    },
    /// A layer holds NaN or infinite values.
    #[error(
        "{path}: task '{task}', layer {layer} (tensor '{tensor}'): {rows} of {n} rows contain \
         NaN or infinite values (first: row {first_row})"
    )]
    NonFinite {
        /// The dump file.
        path: PathBuf,
        /// The task.
        task: String,
        /// The layer index.
        layer: usize,
        /// The layer tensor.
        tensor: String,
        /// Number of rows with at least one non-finite value.
        rows: usize,
        /// Number of rows in the layer.
        n: usize,
        /// Index of the first such row.
        first_row: usize,
    },
    /// A task was asked for by a name the dump does not have.
    #[error("{path}: no task '{requested}' (available: {})", .available.join(", "))]
    UnknownTask {
        /// The dump file.
        path: PathBuf,
        /// The requested task name.
        requested: String,
        /// The dump's tasks.
        available: Vec<String>,
    },
    /// No task was named but the dump has several.
    #[error("{path}: the dump has several tasks, name one of: {}", .available.join(", "))]
    AmbiguousTask {
        /// The dump file.
        path: PathBuf,
        /// The dump's tasks.
        available: Vec<String>,
    },
    /// A layer was asked for that the task does not have.
    #[error("{path}: task '{task}' has no layer {layer} (available: {})", join_numbers(.available))]
    NoSuchLayer {
        /// The dump file.
        path: PathBuf,
        /// The task.
        task: String,
        /// The requested layer.
        layer: usize,
        /// The task's layers.
        available: Vec<usize>,
    },
}

impl From<SafetensorsError> for DumpError {
    /// I/O errors of the safetensors reader are [`DumpError::Io`] (with the
    /// same "reading ..." action), every other one
    /// [`DumpError::Safetensors`].
    fn from(e: SafetensorsError) -> Self {
        match e {
            SafetensorsError::Io { path, step, source } => DumpError::Io {
                path,
                action: step.to_string(),
                source,
            },
            other => DumpError::Safetensors(other),
        }
    }
}

fn join_numbers(values: &[usize]) -> String {
    let parts: Vec<String> = values.iter().map(usize::to_string).collect();
    parts.join(", ")
}

/// Storage type of a layer tensor; every one is widened to `f32` on reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerDtype {
    /// 32-bit float.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
}

impl LayerDtype {
    fn from_dtype(dtype: Dtype) -> Option<Self> {
        match dtype {
            Dtype::F32 => Some(Self::F32),
            Dtype::F16 => Some(Self::F16),
            Dtype::BF16 => Some(Self::BF16),
            _ => None,
        }
    }
}

impl fmt::Display for LayerDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
        })
    }
}

/// One task of a dump: its labels, split and layers (the layer data itself is
/// read by [`ActivationDump::layer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// Task name: metadata `task` for the single-task form (default
    /// `"default"`), or the name listed in metadata `tasks`.
    pub name: String,
    /// Label names; `labels` index into them.
    pub label_names: Vec<String>,
    /// Label of each item, an index into `label_names`.
    pub labels: Vec<u32>,
    /// Split of each item, an index into the dump's [`ActivationDump::splits`]
    /// (all the `train` index when the dump has no split tensor).
    pub split: Vec<u8>,
    /// Available layer indices, ascending.
    pub layers: Vec<usize>,
    /// Number of items.
    pub n: usize,
    /// Width D of every layer of the task.
    pub dim: usize,
}

impl TaskInfo {
    /// Indices of the items in split number `split`, ascending.
    pub fn split_indices(&self, split: u8) -> Vec<usize> {
        self.split
            .iter()
            .enumerate()
            .filter(|&(_, &s)| s == split)
            .map(|(i, _)| i)
            .collect()
    }

    /// Number of the split named `"train"` in `splits` (the dump's
    /// [`ActivationDump::splits`]), if there is one. Always `Some` for a dump
    /// that [`ActivationDump::open`] accepted.
    pub fn train_index(&self, splits: &[String]) -> Option<u8> {
        split_position(splits, TRAIN)
    }

    /// Indices of the items in the split named `name` (looked up in `splits`,
    /// the dump's [`ActivationDump::splits`]); `None` if there is no such split.
    pub fn split_indices_by_name(&self, splits: &[String], name: &str) -> Option<Vec<usize>> {
        split_position(splits, name).map(|s| self.split_indices(s))
    }

    /// Indices of the train items (empty if `splits` has no `"train"`, which
    /// [`ActivationDump::open`] never accepts).
    pub fn train_indices(&self, splits: &[String]) -> Vec<usize> {
        self.split_indices_by_name(splits, TRAIN)
            .unwrap_or_default()
    }
}

fn split_position(splits: &[String], name: &str) -> Option<u8> {
    splits
        .iter()
        .position(|s| s == name)
        .and_then(|i| u8::try_from(i).ok())
}
