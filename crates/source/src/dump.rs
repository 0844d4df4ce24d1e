//! Reading activation dumps: one safetensors file per checkpoint holding, for
//! one or several probing tasks, the per-layer activation matrices `[N, D]`,
//! the items' labels and their split (DESIGN §3.1).
//!
//! [`ActivationDump::open`] reads only the 8-byte length prefix and the JSON
//! header, and checks everything that can be checked without the layer data:
//! header offsets against the file size (a truncated or overlong file is an
//! error), the metadata (`label_names`, `splits`, `tasks`, `step`), every
//! task's labels and split (these small tensors are read and range-checked),
//! and the dtype and shape of every layer a task uses. Layer matrices are read
//! later, one at a time, by [`ActivationDump::layer`], with positioned reads at
//! the header's offsets, so a multi-gigabyte dump never sits in memory whole;
//! F16 and BF16 are widened to `f32` and non-finite values are rejected there.
//! [`ActivationDump::from_bytes`] runs the same checks on a dump held in
//! memory (the fuzz target `dump` uses it).
//!
//! What this module does not do: it does not write dumps, compute anything
//! about the geometry, decide which layers or tasks to analyse, or interpret
//! other metadata keys (they are passed through by
//! [`ActivationDump::metadata`]). Tensors that belong to no task (for example
//! a prefix that is not listed in `tasks`) are ignored. Positioned reads use
//! `std::os::unix::fs::FileExt`, so the module builds on Unix only.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use safetensors::Dtype;
use serde::Deserialize;

/// Largest JSON header accepted, in bytes (the limit the safetensors crate uses).
const HEADER_LIMIT: u64 = 100_000_000;
/// Task name of a single-task dump without a `task` metadata entry.
const DEFAULT_TASK: &str = "default";
/// Name of the split that must exist and be non-empty for every task.
const TRAIN: &str = "train";
/// Bytes read per positioned read when loading a layer (a multiple of 4).
const CHUNK_BYTES: usize = 1 << 22;

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
    /// The file is too short to hold the 8-byte header length.
    #[error("{path}: file is {size} bytes, too short for the 8-byte header length prefix")]
    TooShort {
        /// The dump file.
        path: PathBuf,
        /// Size of the file in bytes.
        size: u64,
    },
    /// The header length in the first 8 bytes runs past the end of the file.
    #[error(
        "{path}: the header length prefix says {header_len} bytes, but only {available} bytes \
         follow it (file size {file_size})"
    )]
    HeaderBeyondFile {
        /// The dump file.
        path: PathBuf,
        /// Header length read from the first 8 bytes.
        header_len: u64,
        /// Bytes after the length prefix.
        available: u64,
        /// Size of the file in bytes.
        file_size: u64,
    },
    /// The header length is larger than the accepted limit.
    #[error(
        "{path}: the header length prefix says {header_len} bytes, more than the limit of {limit}"
    )]
    HeaderTooLarge {
        /// The dump file.
        path: PathBuf,
        /// Header length read from the first 8 bytes.
        header_len: u64,
        /// Largest accepted header length.
        limit: u64,
    },
    /// A tensor is larger than the memory that can be set aside to read it
    /// (a header claiming terabytes in a sparse file): refused before any
    /// of it is read, instead of the process aborting on the allocation.
    #[error("{path}: tensor '{tensor}' needs {bytes} bytes of memory, more than can be allocated")]
    TensorTooLarge {
        /// The dump file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Bytes the tensor needs in memory.
        bytes: u64,
    },
    /// The header is not valid UTF-8 JSON.
    #[error("{path}: the header is not valid JSON: {detail}")]
    HeaderNotJson {
        /// The dump file.
        path: PathBuf,
        /// The JSON parser's message.
        detail: String,
    },
    /// The header is JSON but not a safetensors header (not an object, a
    /// malformed tensor entry, an unknown dtype, non-string metadata, ...).
    #[error("{path}: invalid safetensors header: {detail}")]
    InvalidHeader {
        /// The dump file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A tensor's data offsets are inconsistent (gap, overlap, reversed, or
    /// not matching its dtype and shape).
    #[error("{path}: tensor '{tensor}' has inconsistent data offsets: {detail}")]
    BadOffsets {
        /// The dump file.
        path: PathBuf,
        /// The tensor whose offsets are wrong.
        tensor: String,
        /// What is wrong.
        detail: String,
    },
    /// The file size differs from what the header says: truncated file or
    /// trailing bytes.
    #[error(
        "{path}: file is {actual} bytes but its header describes {expected} bytes \
         (8 + header {header_len} + data {data_len}): {}",
        size_problem(*.expected, *.actual)
    )]
    SizeMismatch {
        /// The dump file.
        path: PathBuf,
        /// Size implied by the header.
        expected: u64,
        /// Actual size of the file.
        actual: u64,
        /// Length of the JSON header.
        header_len: u64,
        /// Length of the data section according to the header.
        data_len: u64,
    },
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
    /// Metadata `step` is not a non-negative integer.
    #[error("{path}: metadata 'step' is {value:?}, not a non-negative integer")]
    BadStep {
        /// The dump file.
        path: PathBuf,
        /// The value found.
        value: String,
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

fn size_problem(expected: u64, actual: u64) -> String {
    if actual < expected {
        format!("truncated, {} bytes missing", expected - actual)
    } else {
        format!("{} trailing bytes", actual - expected)
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

    fn bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
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

/// A tensor of the file: its type, shape and where its bytes are.
#[derive(Debug, Clone)]
struct TensorEntry {
    dtype: Dtype,
    shape: Vec<usize>,
    /// Absolute file offset of the first byte.
    start: u64,
    /// Length in bytes.
    len: u64,
}

/// The tensors of a file by name.
type Tensors = BTreeMap<String, TensorEntry>;

/// A tensor entry as written in the JSON header.
#[derive(Deserialize)]
struct RawTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

/// Where a dump's bytes are: an open file (positioned reads) or memory.
#[derive(Debug)]
enum Backing {
    File(File),
    Memory(Vec<u8>),
}

impl Backing {
    /// Fills `buf` with the bytes at `offset`; a read past the end is an
    /// `UnexpectedEof` error, as for a file.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Backing::File(file) => file.read_exact_at(buf, offset),
            Backing::Memory(bytes) => {
                let range = usize::try_from(offset)
                    .ok()
                    .and_then(|start| Some(start..start.checked_add(buf.len())?))
                    .filter(|range| range.end <= bytes.len())
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end")
                    })?;
                buf.copy_from_slice(&bytes[range]);
                Ok(())
            }
        }
    }
}

/// An opened, validated activation dump (DESIGN §3.1). Holds the file open
/// (or the bytes, from [`ActivationDump::from_bytes`]); layer data is read on
/// demand.
#[derive(Debug)]
pub struct ActivationDump {
    path: PathBuf,
    file: Backing,
    file_size: u64,
    tensors: Tensors,
    metadata: BTreeMap<String, String>,
    splits: Vec<String>,
    step: Option<u64>,
    tasks: Vec<TaskInfo>,
    /// Per task (parallel to `tasks`): layer index -> tensor name.
    layer_tensors: Vec<BTreeMap<usize, String>>,
}

impl ActivationDump {
    /// Opens and validates a dump: header, metadata, and every task's labels,
    /// split and layer shapes. Does not read layer data.
    pub fn open(path: &Path) -> Result<Self, DumpError> {
        let file = File::open(path).map_err(|source| DumpError::Io {
            path: path.to_path_buf(),
            action: "opening the file".to_string(),
            source,
        })?;
        Self::open_file(path, file)
    }

    /// [`ActivationDump::open`] on a file the caller already opened (`path`
    /// names it in errors). Every later read goes through this handle, so a
    /// caller that keeps another handle to the same file (`try_clone`) can
    /// tell afterwards, from its size and mtime, whether the file changed
    /// while it was read.
    pub fn open_file(path: &Path, file: File) -> Result<Self, DumpError> {
        let io_err = |action: &str, source: io::Error| DumpError::Io {
            path: path.to_path_buf(),
            action: action.to_string(),
            source,
        };
        let meta = file
            .metadata()
            .map_err(|e| io_err("reading the file's size", e))?;
        if !meta.is_file() {
            return Err(io_err(
                "opening the file",
                io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            ));
        }
        Self::validate(path, Backing::File(file), meta.len())
    }

    /// Validates a dump held in memory, exactly as [`ActivationDump::open`]
    /// validates a file; `path` only names the dump in errors and supplies
    /// the step when the metadata has none. Layers are then read from
    /// `bytes`.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, DumpError> {
        let size = bytes.len() as u64;
        Self::validate(path, Backing::Memory(bytes), size)
    }

    /// The checks of [`ActivationDump::open`] on the dump's bytes, whatever
    /// holds them.
    fn validate(path: &Path, file: Backing, file_size: u64) -> Result<Self, DumpError> {
        let io_err = |action: &str, source: io::Error| DumpError::Io {
            path: path.to_path_buf(),
            action: action.to_string(),
            source,
        };
        if file_size < 8 {
            return Err(DumpError::TooShort {
                path: path.to_path_buf(),
                size: file_size,
            });
        }
        let mut prefix = [0u8; 8];
        file.read_exact_at(&mut prefix, 0)
            .map_err(|e| io_err("reading the header length", e))?;
        let header_len = u64::from_le_bytes(prefix);
        if header_len > file_size - 8 {
            return Err(DumpError::HeaderBeyondFile {
                path: path.to_path_buf(),
                header_len,
                available: file_size - 8,
                file_size,
            });
        }
        if header_len > HEADER_LIMIT {
            return Err(DumpError::HeaderTooLarge {
                path: path.to_path_buf(),
                header_len,
                limit: HEADER_LIMIT,
            });
        }
        // Bounded by HEADER_LIMIT, so the conversion cannot fail.
        let mut header = vec![0u8; usize::try_from(header_len).unwrap_or(0)];
        file.read_exact_at(&mut header, 8)
            .map_err(|e| io_err("reading the header", e))?;
        let (tensors, metadata) = parse_header(path, &header, header_len, file_size)?;

        let mut dump = ActivationDump {
            path: path.to_path_buf(),
            file,
            file_size,
            tensors,
            metadata,
            splits: Vec::new(),
            step: None,
            tasks: Vec::new(),
            layer_tensors: Vec::new(),
        };
        dump.step = dump.read_step()?;
        dump.splits = dump.read_splits()?;
        let train = split_position(&dump.splits, TRAIN).ok_or_else(|| DumpError::NoTrainSplit {
            path: dump.path.clone(),
            splits: dump.splits.clone(),
        })?;
        match dump.read_task_list()? {
            Some(names) => {
                for name in names {
                    let prefix = format!("{name}/");
                    if !dump.tensors.keys().any(|k| k.starts_with(&prefix)) {
                        return Err(DumpError::TaskWithoutTensors {
                            path: dump.path.clone(),
                            task: name,
                        });
                    }
                    let (task, layers) = dump.load_task(name, &prefix, train)?;
                    dump.tasks.push(task);
                    dump.layer_tensors.push(layers);
                }
            }
            None => {
                if !dump.tensors.contains_key("labels") {
                    let prefixes: BTreeSet<String> = dump
                        .tensors
                        .keys()
                        .filter_map(|k| k.strip_suffix("labels"))
                        .filter(|p| p.ends_with('/'))
                        .map(str::to_string)
                        .collect();
                    if !prefixes.is_empty() {
                        return Err(DumpError::MissingTasks {
                            prefixes: prefixes.into_iter().collect(),
                            path: dump.path.clone(),
                        });
                    }
                }
                let name = dump
                    .metadata
                    .get("task")
                    .cloned()
                    .unwrap_or_else(|| DEFAULT_TASK.to_string());
                let (task, layers) = dump.load_task(name, "", train)?;
                dump.tasks.push(task);
                dump.layer_tensors.push(layers);
            }
        }
        Ok(dump)
    }

    /// The file this dump was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the file in bytes.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// Training step of the checkpoint: metadata `step`, else the number after
    /// the last `-` of the file stem (`step-150.safetensors`) or, failing
    /// that, of the parent directory's name (`checkpoint-150/acts.safetensors`).
    pub fn step(&self) -> Option<u64> {
        self.step
    }

    /// Split names (metadata `splits`, default `["train", "test"]`); a task's
    /// `split` values index into them. Always contains `"train"`.
    pub fn splits(&self) -> &[String] {
        &self.splits
    }

    /// Number of the split called `name`, if any.
    pub fn split_index(&self, name: &str) -> Option<u8> {
        split_position(&self.splits, name)
    }

    /// Number of the `"train"` split (always present in an opened dump).
    pub fn train_split(&self) -> u8 {
        split_position(&self.splits, TRAIN).unwrap_or(0)
    }

    /// The tasks, in the order of metadata `tasks`, or the single task of a
    /// single-task dump.
    pub fn tasks(&self) -> &[TaskInfo] {
        &self.tasks
    }

    /// The task called `name`; with `None`, the only task (an error if the
    /// dump has several).
    pub fn task(&self, name: Option<&str>) -> Result<&TaskInfo, DumpError> {
        match name {
            Some(name) => self
                .tasks
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| self.unknown_task(name)),
            None => match self.tasks.as_slice() {
                [only] => Ok(only),
                _ => Err(DumpError::AmbiguousTask {
                    path: self.path.clone(),
                    available: self.task_names(),
                }),
            },
        }
    }

    /// Storage type of layer `layer` of `task`, if the task has that layer.
    pub fn layer_dtype(&self, task: &TaskInfo, layer: usize) -> Option<LayerDtype> {
        let index = self.tasks.iter().position(|t| t.name == task.name)?;
        let name = self.layer_tensors[index].get(&layer)?;
        LayerDtype::from_dtype(self.tensors[name].dtype)
    }

    /// Reads layer `layer` of `task` as an `[n, dim]` matrix of `f32`
    /// (F16/BF16 widened exactly). `task` is looked up by name in this dump.
    /// Fails on I/O errors, unknown task or layer, and NaN or infinite values.
    pub fn layer(&self, task: &TaskInfo, layer: usize) -> Result<Array2<f32>, DumpError> {
        let index = self
            .tasks
            .iter()
            .position(|t| t.name == task.name)
            .ok_or_else(|| self.unknown_task(&task.name))?;
        let own = &self.tasks[index];
        let Some(tensor) = self.layer_tensors[index].get(&layer) else {
            return Err(DumpError::NoSuchLayer {
                path: self.path.clone(),
                task: own.name.clone(),
                layer,
                available: own.layers.clone(),
            });
        };
        let entry = &self.tensors[tensor];
        let dtype = LayerDtype::from_dtype(entry.dtype).unwrap_or(LayerDtype::F32);
        let values = self.read_floats(tensor, entry, dtype, own.n * own.dim)?;

        let mut bad_rows = 0;
        let mut first_row = None;
        for (row, chunk) in values.chunks_exact(own.dim).enumerate() {
            if chunk.iter().any(|v| !v.is_finite()) {
                bad_rows += 1;
                first_row.get_or_insert(row);
            }
        }
        if let Some(first_row) = first_row {
            return Err(DumpError::NonFinite {
                path: self.path.clone(),
                task: own.name.clone(),
                layer,
                tensor: tensor.clone(),
                rows: bad_rows,
                n: own.n,
                first_row,
            });
        }
        Ok(Array2::from_shape_vec((own.n, own.dim), values)
            .expect("a layer's length is n * dim, checked when the dump was opened"))
    }

    /// The raw metadata (all string values), including keys this module does
    /// not interpret.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    fn task_names(&self) -> Vec<String> {
        self.tasks.iter().map(|t| t.name.clone()).collect()
    }

    fn unknown_task(&self, name: &str) -> DumpError {
        DumpError::UnknownTask {
            path: self.path.clone(),
            requested: name.to_string(),
            available: self.task_names(),
        }
    }

    fn read_step(&self) -> Result<Option<u64>, DumpError> {
        match self.metadata.get("step") {
            Some(value) => value
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| DumpError::BadStep {
                    path: self.path.clone(),
                    value: value.clone(),
                }),
            None => Ok(step_from_path(&self.path)),
        }
    }

    fn read_splits(&self) -> Result<Vec<String>, DumpError> {
        let bad = |detail: String| DumpError::BadMetadata {
            path: self.path.clone(),
            key: "splits".to_string(),
            detail,
        };
        let Some(raw) = self.metadata.get("splits") else {
            return Ok(vec![TRAIN.to_string(), "test".to_string()]);
        };
        let splits = json_strings(raw).map_err(bad)?;
        if let Some(detail) = duplicate(&splits) {
            return Err(bad(detail));
        }
        if splits.len() > 256 {
            return Err(bad(format!(
                "has {} entries, but split indices are U8 (at most 256 splits)",
                splits.len()
            )));
        }
        Ok(splits)
    }

    fn read_task_list(&self) -> Result<Option<Vec<String>>, DumpError> {
        let bad = |detail: String| DumpError::BadMetadata {
            path: self.path.clone(),
            key: "tasks".to_string(),
            detail,
        };
        let Some(raw) = self.metadata.get("tasks") else {
            return Ok(None);
        };
        let tasks = json_strings(raw).map_err(bad)?;
        if tasks.is_empty() {
            return Err(bad(
                "is an empty list: a multi-task dump needs at least one task".into(),
            ));
        }
        if let Some(detail) = duplicate(&tasks) {
            return Err(bad(detail));
        }
        if let Some(t) = tasks.iter().find(|t| t.is_empty() || t.contains('/')) {
            return Err(bad(format!(
                "contains the task name {t:?}; task names must be non-empty and contain no '/'"
            )));
        }
        Ok(Some(tasks))
    }

    /// Validates one task. `prefix` is `"<task>/"` in the multi-task form and
    /// empty in the single-task form.
    fn load_task(
        &self,
        name: String,
        prefix: &str,
        train: u8,
    ) -> Result<(TaskInfo, BTreeMap<usize, String>), DumpError> {
        let path = || self.path.clone();
        let multi = !prefix.is_empty();

        // Label names.
        let key = format!("{prefix}label_names");
        let raw = self
            .metadata
            .get(&key)
            .ok_or_else(|| DumpError::MissingLabelNames {
                path: path(),
                task: name.clone(),
                key: key.clone(),
            })?;
        let bad_names = |detail: String| DumpError::BadLabelNames {
            path: path(),
            task: name.clone(),
            key: key.clone(),
            detail,
        };
        let label_names = json_strings(raw).map_err(bad_names)?;
        if let Some(detail) = duplicate(&label_names) {
            return Err(bad_names(detail));
        }

        // Labels.
        let labels_name = format!("{prefix}labels");
        let entry = self
            .tensors
            .get(&labels_name)
            .ok_or_else(|| DumpError::MissingLabels {
                path: path(),
                task: name.clone(),
                tensor: labels_name.clone(),
            })?;
        let width = match entry.dtype {
            Dtype::I64 => 8,
            Dtype::I32 => 4,
            _ => 0,
        };
        if width == 0 || entry.shape.len() != 1 {
            return Err(DumpError::BadLabels {
                path: path(),
                task: name.clone(),
                tensor: labels_name.clone(),
                found: describe(entry),
            });
        }
        let n = entry.shape[0];
        let bytes = self.read_bytes(&labels_name, entry.start, entry.len)?;
        let mut labels = Vec::with_capacity(n);
        for (item, chunk) in bytes.chunks_exact(width).enumerate() {
            let value = if width == 8 {
                let mut b = [0u8; 8];
                b.copy_from_slice(chunk);
                i64::from_le_bytes(b)
            } else {
                i64::from(i32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
            };
            match u32::try_from(value) {
                Ok(v) if (v as usize) < label_names.len() => labels.push(v),
                _ => {
                    return Err(DumpError::LabelOutOfRange {
                        path: path(),
                        task: name.clone(),
                        item,
                        value,
                        n_labels: label_names.len(),
                    });
                }
            }
        }

        // Split.
        let own_split = format!("{prefix}split");
        let split_name = if multi && self.tensors.contains_key(&own_split) {
            Some(own_split)
        } else if self.tensors.contains_key("split") {
            Some("split".to_string())
        } else {
            None
        };
        let split = match split_name {
            None => vec![train; n],
            Some(split_name) => {
                let entry = &self.tensors[&split_name];
                if entry.dtype != Dtype::U8 || entry.shape != [n] {
                    return Err(DumpError::BadSplit {
                        path: path(),
                        task: name.clone(),
                        tensor: split_name,
                        found: describe(entry),
                        n,
                    });
                }
                let split = self.read_bytes(&split_name, entry.start, entry.len)?;
                if let Some((item, &value)) = split
                    .iter()
                    .enumerate()
                    .find(|&(_, &s)| usize::from(s) >= self.splits.len())
                {
                    return Err(DumpError::SplitOutOfRange {
                        path: path(),
                        task: name.clone(),
                        item,
                        value,
                        splits: self.splits.clone(),
                    });
                }
                split
            }
        };

        // Layers: the task's own `<task>/layer.<L>` override shared `layer.<L>`.
        let mut layer_tensors: BTreeMap<usize, String> = BTreeMap::new();
        for tensor in self.tensors.keys() {
            if let Some(l) = layer_index(tensor, "") {
                layer_tensors.insert(l, tensor.clone());
            }
        }
        if multi {
            for tensor in self.tensors.keys() {
                if let Some(l) = layer_index(tensor, prefix) {
                    layer_tensors.insert(l, tensor.clone());
                }
            }
        }
        let mut first: Option<(&str, usize)> = None;
        for tensor in layer_tensors.values() {
            let entry = &self.tensors[tensor];
            if LayerDtype::from_dtype(entry.dtype).is_none()
                || entry.shape.len() != 2
                || entry.shape[1] == 0
            {
                return Err(DumpError::BadLayer {
                    path: path(),
                    task: name.clone(),
                    tensor: tensor.clone(),
                    found: describe(entry),
                });
            }
            let (rows, dim) = (entry.shape[0], entry.shape[1]);
            if rows != n {
                return Err(DumpError::LayerItemCount {
                    path: path(),
                    task: name.clone(),
                    tensor: tensor.clone(),
                    rows,
                    labels: labels_name.clone(),
                    n,
                });
            }
            match first {
                None => first = Some((tensor, dim)),
                Some((first_tensor, first_dim)) if first_dim != dim => {
                    return Err(DumpError::LayerDimMismatch {
                        path: path(),
                        task: name.clone(),
                        tensor: tensor.clone(),
                        dim,
                        first_tensor: first_tensor.to_string(),
                        first_dim,
                    });
                }
                Some(_) => {}
            }
        }
        let Some((_, dim)) = first else {
            let looked_for = if multi {
                format!("'{prefix}layer.<L>' and 'layer.<L>'")
            } else {
                "'layer.<L>'".to_string()
            };
            return Err(DumpError::NoLayers {
                path: path(),
                task: name,
                looked_for,
            });
        };

        if !split.contains(&train) {
            return Err(DumpError::EmptySplit {
                path: path(),
                task: name,
                split: TRAIN.to_string(),
            });
        }

        let task = TaskInfo {
            name,
            label_names,
            labels,
            split,
            layers: layer_tensors.keys().copied().collect(),
            n,
            dim,
        };
        Ok((task, layer_tensors))
    }

    /// An empty vector with room for `count` values of `T`, or
    /// [`DumpError::TensorTooLarge`] when that memory cannot be had.
    fn allocate<T>(&self, tensor: &str, count: usize) -> Result<Vec<T>, DumpError> {
        let mut v = Vec::new();
        v.try_reserve_exact(count)
            .map_err(|_| DumpError::TensorTooLarge {
                path: self.path.clone(),
                tensor: tensor.to_string(),
                bytes: (count as u64).saturating_mul(std::mem::size_of::<T>() as u64),
            })?;
        Ok(v)
    }

    fn read_bytes(&self, tensor: &str, start: u64, len: u64) -> Result<Vec<u8>, DumpError> {
        let count = usize::try_from(len).unwrap_or(usize::MAX);
        let mut buf = self.allocate::<u8>(tensor, count)?;
        buf.resize(count, 0);
        self.file
            .read_exact_at(&mut buf, start)
            .map_err(|source| DumpError::Io {
                path: self.path.clone(),
                action: format!("reading tensor '{tensor}' ({len} bytes at offset {start})"),
                source,
            })?;
        Ok(buf)
    }

    /// Reads `count` values of a layer tensor in chunks, widening to `f32`.
    fn read_floats(
        &self,
        tensor: &str,
        entry: &TensorEntry,
        dtype: LayerDtype,
        count: usize,
    ) -> Result<Vec<f32>, DumpError> {
        let width = dtype.bytes();
        let mut out = self.allocate::<f32>(tensor, count)?;
        let mut buf = vec![0u8; CHUNK_BYTES.min(count * width)];
        let total = count * width;
        let mut done = 0usize;
        while done < total {
            let len = (total - done).min(buf.len());
            let chunk = &mut buf[..len];
            self.file
                .read_exact_at(chunk, entry.start + done as u64)
                .map_err(|source| DumpError::Io {
                    path: self.path.clone(),
                    action: format!(
                        "reading tensor '{tensor}' ({} bytes at offset {})",
                        entry.len, entry.start
                    ),
                    source,
                })?;
            match dtype {
                LayerDtype::F32 => out.extend(
                    chunk
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                ),
                LayerDtype::F16 => out.extend(
                    chunk
                        .chunks_exact(2)
                        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
                ),
                LayerDtype::BF16 => out.extend(
                    chunk
                        .chunks_exact(2)
                        .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
                ),
            }
            done += len;
        }
        Ok(out)
    }
}

/// Parses and checks the JSON header: tensor entries, contiguous offsets that
/// match dtype and shape, and the total size against the file size.
fn parse_header(
    path: &Path,
    header: &[u8],
    header_len: u64,
    file_size: u64,
) -> Result<(Tensors, BTreeMap<String, String>), DumpError> {
    let invalid = |detail: String| DumpError::InvalidHeader {
        path: path.to_path_buf(),
        detail,
    };
    let value: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| DumpError::HeaderNotJson {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    let serde_json::Value::Object(map) = value else {
        return Err(invalid(format!(
            "the header is a JSON {}, not an object",
            json_kind(&value)
        )));
    };
    let mut metadata = BTreeMap::new();
    let mut raw = Vec::new();
    for (name, value) in map {
        if name == "__metadata__" {
            metadata = serde_json::from_value::<BTreeMap<String, String>>(value)
                .map_err(|e| invalid(format!("'__metadata__' must map strings to strings: {e}")))?;
        } else {
            let tensor = serde_json::from_value::<RawTensor>(value)
                .map_err(|e| invalid(format!("the entry for tensor '{name}' is invalid: {e}")))?;
            raw.push((name, tensor));
        }
    }

    raw.sort_by_key(|(_, t)| t.data_offsets);
    let data_start = 8 + header_len;
    let mut cursor = 0u64;
    let mut tensors = BTreeMap::new();
    for (name, t) in raw {
        let bad = |detail: String| DumpError::BadOffsets {
            path: path.to_path_buf(),
            tensor: name.clone(),
            detail,
        };
        let (begin, end) = t.data_offsets;
        if end < begin {
            return Err(bad(format!(
                "data_offsets [{begin}, {end}] end before they begin"
            )));
        }
        if begin > cursor {
            return Err(bad(format!(
                "data_offsets [{begin}, {end}] leave a gap of {} bytes after byte {cursor} of \
                 the data section (where the previous tensor ends)",
                begin - cursor
            )));
        }
        if begin < cursor {
            return Err(bad(format!(
                "data_offsets [{begin}, {end}] overlap the previous tensor, which ends at byte \
                 {cursor} of the data section"
            )));
        }
        let bits = t
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            .and_then(|count| count.checked_mul(t.dtype.bitsize() as u64))
            .ok_or_else(|| {
                bad(format!(
                    "{} {:?} overflows when computing its size",
                    t.dtype, t.shape
                ))
            })?;
        if bits % 8 != 0 {
            return Err(bad(format!(
                "{} {:?} is not a whole number of bytes",
                t.dtype, t.shape
            )));
        }
        if end - begin != bits / 8 {
            return Err(bad(format!(
                "{} {:?} needs {} bytes but data_offsets [{begin}, {end}] span {} bytes",
                t.dtype,
                t.shape,
                bits / 8,
                end - begin
            )));
        }
        cursor = end;
        let start = data_start.checked_add(begin).ok_or_else(|| {
            bad(format!(
                "data_offsets [{begin}, {end}] overflow the file offsets"
            ))
        })?;
        tensors.insert(
            name,
            TensorEntry {
                dtype: t.dtype,
                shape: t.shape,
                start,
                len: end - begin,
            },
        );
    }
    let expected = data_start.checked_add(cursor);
    if expected != Some(file_size) {
        return Err(DumpError::SizeMismatch {
            path: path.to_path_buf(),
            expected: expected.unwrap_or(u64::MAX),
            actual: file_size,
            header_len,
            data_len: cursor,
        });
    }
    Ok((tensors, metadata))
}

/// `"<dtype> <shape>"`, e.g. `I64 [947]`, for error messages.
fn describe(entry: &TensorEntry) -> String {
    format!("{} {:?}", entry.dtype, entry.shape)
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Parses a metadata value that must be a JSON array of strings; the error
/// is a phrase completing "metadata '<key>' ...".
fn json_strings(raw: &str) -> Result<Vec<String>, String> {
    serde_json::from_str::<Vec<String>>(raw).map_err(|e| {
        let shown: String = raw.chars().take(60).collect();
        let ellipsis = if raw.chars().count() > 60 { "..." } else { "" };
        format!("is not a JSON array of strings ({e}): {shown:?}{ellipsis}")
    })
}

/// A phrase describing the first repeated entry, if any.
fn duplicate(values: &[String]) -> Option<String> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, v) in values.iter().enumerate() {
        if let Some(first) = seen.insert(v, i) {
            return Some(format!(
                "lists {v:?} twice (entries {first} and {i}); entries must be distinct"
            ));
        }
    }
    None
}

/// `L` if `name` is `<prefix>layer.<L>` with `L` in canonical decimal form.
fn layer_index(name: &str, prefix: &str) -> Option<usize> {
    let digits = name.strip_prefix(prefix)?.strip_prefix("layer.")?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if canonical { digits.parse().ok() } else { None }
}

/// The number after the last `-` of the file stem, else of the parent
/// directory's name.
fn step_from_path(path: &Path) -> Option<u64> {
    fn trailing(name: &str) -> Option<u64> {
        let (_, digits) = name.rsplit_once('-')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(trailing)
        .or_else(|| {
            path.parent()
                .and_then(Path::file_name)
                .and_then(|s| s.to_str())
                .and_then(trailing)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;
    use std::collections::HashMap;
    use std::fs::OpenOptions;
    use std::io::Write;

    /// A dump under construction: tensors and metadata, written with the
    /// safetensors crate.
    #[derive(Clone, Default)]
    struct Fixture {
        tensors: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>,
        meta: HashMap<String, String>,
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// Layer values `base + 0.5 * i` for element `i`.
    fn ramp(n: usize, d: usize, base: f32) -> Vec<f32> {
        (0..n * d).map(|i| base + 0.5 * i as f32).collect()
    }

    impl Fixture {
        fn raw(mut self, name: &str, dtype: Dtype, shape: &[usize], data: Vec<u8>) -> Self {
            self.tensors
                .insert(name.to_string(), (dtype, shape.to_vec(), data));
            self
        }
        fn f32(self, name: &str, n: usize, d: usize, values: &[f32]) -> Self {
            self.raw(name, Dtype::F32, &[n, d], f32_bytes(values))
        }
        fn i64s(self, name: &str, values: &[i64]) -> Self {
            let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.raw(name, Dtype::I64, &[values.len()], data)
        }
        fn i32s(self, name: &str, values: &[i32]) -> Self {
            let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.raw(name, Dtype::I32, &[values.len()], data)
        }
        fn u8s(self, name: &str, values: &[u8]) -> Self {
            self.raw(name, Dtype::U8, &[values.len()], values.to_vec())
        }
        fn without(mut self, name: &str) -> Self {
            self.tensors.remove(name);
            self
        }
        fn meta(mut self, key: &str, value: &str) -> Self {
            self.meta.insert(key.to_string(), value.to_string());
            self
        }
        fn unmeta(mut self, key: &str) -> Self {
            self.meta.remove(key);
            self
        }
        fn write(&self, path: &Path) -> PathBuf {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            let views: Vec<(String, TensorView<'_>)> = self
                .tensors
                .iter()
                .map(|(name, (dtype, shape, data))| {
                    (
                        name.clone(),
                        TensorView::new(*dtype, shape.clone(), data).unwrap(),
                    )
                })
                .collect();
            safetensors::serialize_to_file(views, Some(self.meta.clone()), path).unwrap();
            path.to_path_buf()
        }

        /// Single task: 4 items, 3 label names, split [0, 1, 0, 1], layers
        /// 0 and 1 of [4, 2] F32.
        fn single() -> Self {
            Fixture::default()
                .meta("label_names", r#"["a", "b", "c"]"#)
                .i64s("labels", &[0, 2, 1, 2])
                .u8s("split", &[0, 1, 0, 1])
                .f32("layer.0", 4, 2, &ramp(4, 2, 0.0))
                .f32("layer.1", 4, 2, &ramp(4, 2, 100.0))
        }

        /// Two tasks over the same 3 items sharing `layer.0` and `layer.1`;
        /// task `x` overrides layer 1 and has its own split, `y` uses the
        /// shared split.
        fn multi() -> Self {
            Fixture::default()
                .meta("tasks", r#"["x", "y"]"#)
                .meta("x/label_names", r#"["p", "q"]"#)
                .meta("y/label_names", r#"["r", "s", "t"]"#)
                .i64s("x/labels", &[0, 1, 1])
                .i64s("y/labels", &[2, 0, 1])
                .u8s("x/split", &[0, 0, 1])
                .u8s("split", &[1, 0, 0])
                .f32("layer.0", 3, 2, &ramp(3, 2, 0.0))
                .f32("layer.1", 3, 2, &ramp(3, 2, 10.0))
                .f32("x/layer.1", 3, 2, &ramp(3, 2, -10.0))
        }
    }

    fn open_err(path: &Path) -> DumpError {
        match ActivationDump::open(path) {
            Ok(_) => panic!("{} opened but should not have", path.display()),
            Err(e) => e,
        }
    }

    /// Asserts that the message names the file and contains every fragment.
    fn check_message(err: &DumpError, path: &Path, fragments: &[&str]) {
        let msg = err.to_string();
        let file = path.file_name().unwrap().to_str().unwrap();
        assert!(msg.contains(file), "message lacks file name {file}: {msg}");
        for f in fragments {
            assert!(msg.contains(f), "message lacks {f:?}: {msg}");
        }
    }

    #[test]
    fn single_task_f32_with_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = Fixture::single()
            .meta("task", "upos")
            .meta("model", "m")
            .write(&dir.path().join("acts.safetensors"));
        let dump = ActivationDump::open(&path).unwrap();
        assert_eq!(dump.path(), path);
        assert_eq!(dump.splits(), ["train", "test"]);
        assert_eq!(dump.train_split(), 0);
        assert_eq!(dump.split_index("test"), Some(1));
        assert_eq!(dump.metadata().get("model").map(String::as_str), Some("m"));
        assert_eq!(dump.tasks().len(), 1);
        let task = dump.task(None).unwrap();
        assert_eq!(task, dump.task(Some("upos")).unwrap());
        assert_eq!(task.name, "upos");
        assert_eq!(task.label_names, ["a", "b", "c"]);
        assert_eq!(task.labels, [0, 2, 1, 2]);
        assert_eq!(task.split, [0, 1, 0, 1]);
        assert_eq!(task.layers, [0, 1]);
        assert_eq!((task.n, task.dim), (4, 2));
        assert_eq!(task.split_indices(0), [0, 2]);
        assert_eq!(task.split_indices(1), [1, 3]);
        assert_eq!(task.train_index(dump.splits()), Some(0));
        assert_eq!(task.train_indices(dump.splits()), [0, 2]);
        assert_eq!(
            task.split_indices_by_name(dump.splits(), "test"),
            Some(vec![1, 3])
        );
        assert_eq!(task.split_indices_by_name(dump.splits(), "dev"), None);
        assert_eq!(dump.layer_dtype(task, 1), Some(LayerDtype::F32));
        let l1 = dump.layer(task, 1).unwrap();
        assert_eq!(l1.dim(), (4, 2));
        assert_eq!(l1.iter().copied().collect::<Vec<_>>(), ramp(4, 2, 100.0));
        assert_eq!(l1[[2, 1]], 100.0 + 0.5 * 5.0);
    }

    #[test]
    fn defaults_without_split_task_or_splits() {
        let dir = tempfile::tempdir().unwrap();
        let path = Fixture::single()
            .without("split")
            .meta("splits", r#"["test", "train"]"#)
            .write(&dir.path().join("d.safetensors"));
        let dump = ActivationDump::open(&path).unwrap();
        let task = dump.task(None).unwrap();
        assert_eq!(task.name, "default");
        // No split tensor: every item is in "train", here split number 1.
        assert_eq!(dump.train_split(), 1);
        assert_eq!(task.split, [1, 1, 1, 1]);
        assert_eq!(task.train_indices(dump.splits()), [0, 1, 2, 3]);
        assert_eq!(dump.step(), None);
    }

    #[test]
    fn multi_task_with_shared_layers() {
        let dir = tempfile::tempdir().unwrap();
        let path = Fixture::multi()
            .meta("step", "7")
            .write(&dir.path().join("multi.safetensors"));
        let dump = ActivationDump::open(&path).unwrap();
        assert_eq!(dump.step(), Some(7));
        let names: Vec<&str> = dump.tasks().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["x", "y"]);
        let x = dump.task(Some("x")).unwrap();
        let y = dump.task(Some("y")).unwrap();
        assert_eq!(x.label_names, ["p", "q"]);
        assert_eq!(y.label_names, ["r", "s", "t"]);
        assert_eq!(x.labels, [0, 1, 1]);
        assert_eq!(y.labels, [2, 0, 1]);
        assert_eq!(x.split, [0, 0, 1], "x has its own split");
        assert_eq!(y.split, [1, 0, 0], "y falls back to the shared split");
        assert_eq!(x.layers, [0, 1]);
        assert_eq!(y.layers, [0, 1]);
        let flat = |a: Array2<f32>| a.iter().copied().collect::<Vec<_>>();
        assert_eq!(flat(dump.layer(x, 0).unwrap()), ramp(3, 2, 0.0));
        assert_eq!(flat(dump.layer(y, 0).unwrap()), ramp(3, 2, 0.0));
        assert_eq!(flat(dump.layer(x, 1).unwrap()), ramp(3, 2, -10.0));
        assert_eq!(flat(dump.layer(y, 1).unwrap()), ramp(3, 2, 10.0));
    }

    #[test]
    fn f16_and_bf16_are_widened_exactly() {
        let values: Vec<f32> = vec![
            0.0,
            -0.0,
            1.0,
            -2.5,
            0.333_333_3,
            65504.0,
            6.0e-8,
            1.0e-3,
            1.234_567,
            -1.0e4,
        ];
        let n = values.len() / 2;
        let f16s: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
        let bf16s: Vec<half::bf16> = values.iter().map(|&v| half::bf16::from_f32(v)).collect();
        let f16_bytes = f16s.iter().flat_map(|v| v.to_le_bytes()).collect();
        let bf16_bytes = bf16s.iter().flat_map(|v| v.to_le_bytes()).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = Fixture::single()
            .without("split")
            .i64s("labels", &vec![0; n])
            .raw("layer.0", Dtype::F16, &[n, 2], f16_bytes)
            .raw("layer.1", Dtype::BF16, &[n, 2], bf16_bytes)
            .write(&dir.path().join("half.safetensors"));
        let dump = ActivationDump::open(&path).unwrap();
        let task = dump.task(None).unwrap();
        assert_eq!(dump.layer_dtype(task, 0), Some(LayerDtype::F16));
        assert_eq!(dump.layer_dtype(task, 1), Some(LayerDtype::BF16));
        let l0 = dump.layer(task, 0).unwrap();
        let l1 = dump.layer(task, 1).unwrap();
        for (i, ((&got16, &gotb), (h, b))) in l0
            .iter()
            .zip(l1.iter())
            .zip(f16s.iter().zip(&bf16s))
            .enumerate()
        {
            assert_eq!(got16.to_bits(), h.to_f32().to_bits(), "f16 element {i}");
            assert_eq!(gotb.to_bits(), b.to_f32().to_bits(), "bf16 element {i}");
        }
        // Values exactly representable in both formats come back unchanged.
        assert_eq!(l0[[1, 0]], 1.0);
        assert_eq!(l1[[1, 1]], -2.5);
        assert_eq!(l0[[2, 1]], 65504.0);
        assert!(l0[[0, 1]].is_sign_negative());
    }

    #[test]
    fn i32_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = Fixture::single()
            .i32s("labels", &[2, 1, 0, 0])
            .write(&dir.path().join("i32.safetensors"));
        let dump = ActivationDump::open(&path).unwrap();
        assert_eq!(dump.task(None).unwrap().labels, [2, 1, 0, 0]);
    }

    #[test]
    fn step_from_metadata_file_name_or_parent_dir() {
        let dir = tempfile::tempdir().unwrap();
        let fx = Fixture::single();
        let from_meta = fx
            .clone()
            .meta("step", "42")
            .write(&dir.path().join("step-150.safetensors"));
        assert_eq!(ActivationDump::open(&from_meta).unwrap().step(), Some(42));
        let from_name = fx.write(&dir.path().join("step-150.safetensors"));
        assert_eq!(ActivationDump::open(&from_name).unwrap().step(), Some(150));
        let from_dir = fx.write(&dir.path().join("checkpoint-25/acts.safetensors"));
        assert_eq!(ActivationDump::open(&from_dir).unwrap().step(), Some(25));
        let none = fx.write(&dir.path().join("run-x/acts.safetensors"));
        assert_eq!(ActivationDump::open(&none).unwrap().step(), None);
        assert_eq!(step_from_path(Path::new("a-3/b-x.safetensors")), Some(3));
        assert_eq!(step_from_path(Path::new("a/b-.safetensors")), None);
    }

    #[test]
    fn layer_names_are_canonical() {
        assert_eq!(layer_index("layer.0", ""), Some(0));
        assert_eq!(layer_index("layer.12", ""), Some(12));
        assert_eq!(layer_index("x/layer.3", "x/"), Some(3));
        assert_eq!(layer_index("x/layer.3", ""), None);
        assert_eq!(layer_index("layer.03", ""), None);
        assert_eq!(layer_index("layer.", ""), None);
        assert_eq!(layer_index("layer.1.attn", ""), None);
    }

    // ---- one test per error variant ----

    #[test]
    fn err_io_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.safetensors");
        let err = open_err(&path);
        assert!(matches!(err, DumpError::Io { .. }), "{err:?}");
        check_message(&err, &path, &["opening"]);
    }

    /// Writes `8-byte length + header + data` by hand.
    fn write_raw(path: &Path, header: &str, data: &[u8]) {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn err_too_short() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short.safetensors");
        std::fs::write(&path, [1, 2, 3, 4, 5]).unwrap();
        let err = open_err(&path);
        assert!(
            matches!(err, DumpError::TooShort { size: 5, .. }),
            "{err:?}"
        );
        check_message(&err, &path, &["5 bytes"]);
    }

    #[test]
    fn err_header_beyond_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("beyond.safetensors");
        let mut bytes = 1000u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        std::fs::write(&path, bytes).unwrap();
        let err = open_err(&path);
        assert!(
            matches!(
                err,
                DumpError::HeaderBeyondFile {
                    header_len: 1000,
                    available: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        check_message(&err, &path, &["1000", "only 2 bytes"]);
    }

    #[test]
    fn err_header_too_large() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.safetensors");
        let file = File::create(&path).unwrap();
        file.write_all_at(&150_000_000u64.to_le_bytes(), 0).unwrap();
        file.set_len(200_000_000).unwrap(); // sparse
        drop(file);
        let err = open_err(&path);
        assert!(matches!(err, DumpError::HeaderTooLarge { .. }), "{err:?}");
        check_message(&err, &path, &["150000000", "limit"]);
    }

    #[test]
    fn err_header_not_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notjson.safetensors");
        write_raw(&path, "{not json", &[]);
        let err = open_err(&path);
        assert!(matches!(err, DumpError::HeaderNotJson { .. }), "{err:?}");
        check_message(&err, &path, &["not valid JSON"]);
    }

    #[test]
    fn err_invalid_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("invalid.safetensors");
        write_raw(&path, "[1, 2]", &[]);
        let err = open_err(&path);
        assert!(matches!(err, DumpError::InvalidHeader { .. }), "{err:?}");
        check_message(&err, &path, &["array, not an object"]);

        write_raw(
            &path,
            r#"{"t": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}"#,
            &[0; 16],
        );
        let err = open_err(&path);
        assert!(matches!(err, DumpError::InvalidHeader { .. }), "{err:?}");
        check_message(&err, &path, &["tensor 't'", "F128"]);

        write_raw(&path, r#"{"__metadata__": {"step": 3}}"#, &[]);
        let err = open_err(&path);
        assert!(matches!(err, DumpError::InvalidHeader { .. }), "{err:?}");
        check_message(&err, &path, &["__metadata__"]);
    }

    #[test]
    fn err_bad_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets.safetensors");
        let gap = r#"{"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                      "b": {"dtype": "U8", "shape": [4], "data_offsets": [6, 10]}}"#;
        write_raw(&path, gap, &[0; 10]);
        let err = open_err(&path);
        assert!(
            matches!(&err, DumpError::BadOffsets { tensor, .. } if tensor == "b"),
            "{err:?}"
        );
        check_message(&err, &path, &["'b'", "gap of 2 bytes"]);

        let overlap = r#"{"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                          "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}"#;
        write_raw(&path, overlap, &[0; 6]);
        let err = open_err(&path);
        assert!(matches!(err, DumpError::BadOffsets { .. }), "{err:?}");
        check_message(&err, &path, &["overlap"]);

        let size = r#"{"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}"#;
        write_raw(&path, size, &[0; 12]);
        let err = open_err(&path);
        assert!(matches!(err, DumpError::BadOffsets { .. }), "{err:?}");
        check_message(&err, &path, &["needs 16 bytes", "span 12 bytes"]);

        let reversed = r#"{"a": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}}"#;
        write_raw(&path, reversed, &[]);
        let err = open_err(&path);
        assert!(matches!(err, DumpError::BadOffsets { .. }), "{err:?}");
        check_message(&err, &path, &["end before they begin"]);
    }

    #[test]
    fn err_size_mismatch_truncated_or_trailing() {
        let dir = tempfile::tempdir().unwrap();
        let path = Fixture::single().write(&dir.path().join("cut.safetensors"));
        let size = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(size - 3)
            .unwrap();
        let err = open_err(&path);
        assert!(
            matches!(err, DumpError::SizeMismatch { expected, actual, .. }
                if expected == size && actual == size - 3),
            "{err:?}"
        );
        check_message(
            &err,
            &path,
            &[
                &format!("{}", size - 3),
                &format!("{size}"),
                "truncated, 3 bytes missing",
            ],
        );

        let path = Fixture::single().write(&dir.path().join("long.safetensors"));
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"xy")
            .unwrap();
        let err = open_err(&path);
        assert!(matches!(err, DumpError::SizeMismatch { .. }), "{err:?}");
        check_message(&err, &path, &["2 trailing bytes"]);
    }

    #[test]
    fn err_bad_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.safetensors");
        Fixture::single().meta("splits", "train,test").write(&path);
        let err = open_err(&path);
        assert!(
            matches!(&err, DumpError::BadMetadata { key, .. } if key == "splits"),
            "{err:?}"
        );
        check_message(&err, &path, &["'splits'", "not a JSON array of strings"]);

        Fixture::multi().meta("tasks", "[]").write(&path);
        let err = open_err(&path);
        assert!(
            matches!(&err, DumpError::BadMetadata { key, .. } if key == "tasks"),
            "{err:?}"
        );
        check_message(&err, &path, &["'tasks'", "empty"]);

        Fixture::multi().meta("tasks", r#"["x", "x"]"#).write(&path);
        let err = open_err(&path);
        assert!(matches!(err, DumpError::BadMetadata { .. }), "{err:?}");
        check_message(&err, &path, &["twice"]);
    }

    #[test]
    fn err_missing_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let path = Fixture::multi()
            .unmeta("tasks")
            .write(&dir.path().join("notasks.safetensors"));
        let err = open_err(&path);
        assert!(matches!(err, DumpError::MissingTasks { .. }), "{err:?}");
        check_message(&err, &path, &["x/, y/", "'tasks'"]);
    }

    #[test]
    fn err_missing_label_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = Fixture::single()
            .unmeta("label_names")
            .write(&dir.path().join("nonames.safetensors"));
        let err = open_err(&path);
        assert!(
            matches!(&err, DumpError::MissingLabelNames { key, .. } if key == "label_names"),
            "{err:?}"
        );
        check_message(&err, &path, &["'label_names'"]);

        let path = Fixture::multi()
            .unmeta("y/label_names")
            .write(&dir.path().join("nonames2.safetensors"));
        let err = open_err(&path);
        assert!(
            matches!(&err, DumpError::MissingLabelNames { key, .. } if key == "y/label_names"),
            "{err:?}"
        );
        check_message(&err, &path, &["'y/label_names'", "task 'y'"]);
    }

    #[test]
    fn err_bad_label_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("badnames.safetensors");
        Fixture::single()
            .meta("label_names", "[1, 2, 3]")
            .write(&path);
        let err = open_err(&path);
        assert!(matches!(err, DumpError::BadLabelNames { .. }), "{err:?}");
        check_message(
            &err,
            &path,
            &["'label_names'", "not a JSON array of strings"],
        );

        Fixture::single()
            .meta("label_names", r#"["a", "b", "a"]"#)
            .write(&path);
        let err = open_err(&path);
        assert!(matches!(err, DumpError::BadLabelNames { .. }), "{err:?}");
        check_message(&err, &path, &["\"a\" twice"]);
    }

    #[test]
    fn err_missing_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = Fixture::single()
            .without("labels")
            .write(&dir.path().join("nolabels.safetensors"));
        let err = open_err(&path);
        assert!(matches!(err, DumpError::MissingLabels { .. }), "{err:?}");
        check_message(&err, &path, &["'labels'", "missing"]);
    }

    #[test]
    fn err_bad_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("badlabels.safetensors");
        Fixture::single()
            .f32("labels", 4, 1, &[0.0; 4])
            .write(&path);
        let err = open_err(&path);
        assert!(matches!(err, DumpError::BadLabels { .. }), "{err:?}");
        check_message(&err, &path, &["F32 [4, 1]", "I64 or I32"]);

        let data = [0i64; 4].iter().flat_map(|v| v.to_le_bytes()).collect();
        Fixture::single()
            .raw("labels", Dtype::I64, &[4, 1], data)
            .write(&path);
        let err = open_err(&path);
        assert!(matches!(err, DumpError::BadLabels { .. }), "{err:?}");
        check_message(&err, &path, &["I64 [4, 1]"]);
    }

    #[test]
    fn err_label_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("range.safetensors");
        Fixture::single().i64s("labels", &[0, 1, 3, 0]).write(&path);
        let err = open_err(&path);
        assert!(
            matches!(
                err,
                DumpError::LabelOutOfRange {
                    item: 2,
                    value: 3,
                    n_labels: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        check_message(&err, &path, &["item 2", "label 3", "3 label names"]);

        Fixture::single()
            .i32s("labels", &[0, -1, 0, 0])
            .write(&path);
        let err = open_err(&path);
        assert!(
            matches!(
                err,
                DumpError::LabelOutOfRange {
                    item: 1,
                    value: -1,
                    ..
                }
            ),
            "{err:?}"
        );
        check_message(&err, &path, &["item 1", "label -1"]);
    }

    #[test]
    fn err_bad_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("badsplit.safetensors");
        Fixture::single().i64s("split", &[0, 1, 0, 1]).write(&path);
        let err = open_err(&path);
        assert!(matches!(err, DumpError::BadSplit { .. }), "{err:?}");
        check_message(&err, &path, &["'split'", "I64 [4]", "U8"]);

        Fixture::single().u8s("split", &[0, 1, 0]).write(&path);
        let err = open_err(&path);
        assert!(matches!(err, DumpError::BadSplit { n: 4, .. }), "{err:?}");
        check_message(&err, &path, &["U8 [3]", "[4]"]);
    }

    #[test]
    fn err_split_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = Fixture::single()
            .u8s("split", &[0, 1, 2, 0])
            .write(&dir.path().join("splitrange.safetensors"));
        let err = open_err(&path);
        assert!(
            matches!(
                err,
                DumpError::SplitOutOfRange {
                    item: 2,
                    value: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        check_message(&err, &path, &["item 2", "split 2", "only 2 splits"]);
    }

    #[test]
    fn err_layer_item_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = Fixture::single()
            .f32("layer.1", 3, 2, &ramp(3, 2, 0.0))
            .write(&dir.path().join("rows.safetensors"));
        let err = open_err(&path);
        assert!(
            matches!(&err, DumpError::LayerItemCount { tensor, rows: 3, n: 4, .. }
                if tensor == "layer.1"),
            "{err:?}"
        );
        check_message(
            &err,
            &path,
            &["'layer.1' has 3 rows", "'labels' has 4 items"],
        );
    }

    #[test]
    fn err_bad_layer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("badlayer.safetensors");
        let data = vec![0u8; 4 * 2 * 4];
        Fixture::single()
            .raw("layer.1", Dtype::I32, &[4, 2], data)
            .write(&path);
        let err = open_err(&path);
        assert!(matches!(err, DumpError::BadLayer { .. }), "{err:?}");
        check_message(&err, &path, &["'layer.1'", "I32 [4, 2]"]);

        Fixture::single()
            .raw("layer.0", Dtype::F32, &[4, 1, 2], f32_bytes(&[0.0; 8]))
            .write(&path);
        let err = open_err(&path);
        assert!(matches!(err, DumpError::BadLayer { .. }), "{err:?}");
        check_message(&err, &path, &["F32 [4, 1, 2]"]);
    }

    #[test]
    fn err_layer_dim_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let path = Fixture::single()
            .f32("layer.1", 4, 3, &ramp(4, 3, 0.0))
            .write(&dir.path().join("dims.safetensors"));
        let err = open_err(&path);
        assert!(
            matches!(
                err,
                DumpError::LayerDimMismatch {
                    dim: 3,
                    first_dim: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        check_message(&err, &path, &["'layer.1' has D = 3", "'layer.0' has D = 2"]);
    }

    #[test]
    fn err_no_layers() {
        let dir = tempfile::tempdir().unwrap();
        let path = Fixture::single()
            .without("layer.0")
            .without("layer.1")
            .f32("layers.0", 4, 2, &ramp(4, 2, 0.0))
            .write(&dir.path().join("nolayers.safetensors"));
        let err = open_err(&path);
        assert!(matches!(err, DumpError::NoLayers { .. }), "{err:?}");
        check_message(&err, &path, &["no layer tensor", "layer.<L>"]);
    }

    #[test]
    fn err_task_without_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let path = Fixture::multi()
            .meta("tasks", r#"["x", "y", "z"]"#)
            .write(&dir.path().join("ghost.safetensors"));
        let err = open_err(&path);
        assert!(
            matches!(&err, DumpError::TaskWithoutTensors { task, .. } if task == "z"),
            "{err:?}"
        );
        check_message(&err, &path, &["'z'", "z/..."]);
    }

    #[test]
    fn err_no_train_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = Fixture::single()
            .meta("splits", r#"["dev", "test"]"#)
            .write(&dir.path().join("notrain.safetensors"));
        let err = open_err(&path);
        assert!(matches!(err, DumpError::NoTrainSplit { .. }), "{err:?}");
        check_message(&err, &path, &["\"train\"", "dev, test"]);
    }

    #[test]
    fn err_empty_train_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = Fixture::multi()
            .u8s("split", &[1, 1, 1])
            .write(&dir.path().join("emptytrain.safetensors"));
        let err = open_err(&path);
        assert!(
            matches!(&err, DumpError::EmptySplit { task, split, .. }
                if task == "y" && split == "train"),
            "{err:?}"
        );
        check_message(&err, &path, &["task 'y'", "split 'train' has no items"]);
    }

    #[test]
    fn err_non_finite() {
        let dir = tempfile::tempdir().unwrap();
        let mut values = ramp(4, 2, 0.0);
        values[3] = f32::NAN; // row 1
        values[6] = f32::INFINITY; // row 3
        let path = Fixture::single()
            .f32("layer.1", 4, 2, &values)
            .write(&dir.path().join("nan.safetensors"));
        let dump = ActivationDump::open(&path).unwrap();
        let task = dump.task(None).unwrap();
        assert!(dump.layer(task, 0).is_ok());
        let err = dump.layer(task, 1).unwrap_err();
        assert!(
            matches!(
                err,
                DumpError::NonFinite {
                    layer: 1,
                    rows: 2,
                    n: 4,
                    first_row: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        check_message(
            &err,
            &path,
            &["task 'default'", "layer 1", "2 of 4 rows", "first: row 1"],
        );
    }

    #[test]
    fn err_bad_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = Fixture::single()
            .meta("step", "1.5e3")
            .write(&dir.path().join("step-3.safetensors"));
        let err = open_err(&path);
        assert!(matches!(err, DumpError::BadStep { .. }), "{err:?}");
        check_message(&err, &path, &["\"1.5e3\"", "not a non-negative integer"]);
    }

    #[test]
    fn err_unknown_and_ambiguous_task() {
        let dir = tempfile::tempdir().unwrap();
        let path = Fixture::multi().write(&dir.path().join("tasks.safetensors"));
        let dump = ActivationDump::open(&path).unwrap();
        let err = dump.task(Some("upos")).unwrap_err();
        assert!(matches!(err, DumpError::UnknownTask { .. }), "{err:?}");
        check_message(&err, &path, &["'upos'", "available: x, y"]);

        let err = dump.task(None).unwrap_err();
        assert!(matches!(err, DumpError::AmbiguousTask { .. }), "{err:?}");
        check_message(&err, &path, &["several tasks", "x, y"]);

        // A task of another dump is looked up by name.
        let mut stranger = dump.task(Some("x")).unwrap().clone();
        stranger.name = "w".to_string();
        let err = dump.layer(&stranger, 0).unwrap_err();
        assert!(matches!(err, DumpError::UnknownTask { .. }), "{err:?}");
    }

    #[test]
    fn err_no_such_layer() {
        let dir = tempfile::tempdir().unwrap();
        let path = Fixture::single().write(&dir.path().join("layers.safetensors"));
        let dump = ActivationDump::open(&path).unwrap();
        let err = dump.layer(dump.task(None).unwrap(), 5).unwrap_err();
        assert!(
            matches!(err, DumpError::NoSuchLayer { layer: 5, .. }),
            "{err:?}"
        );
        check_message(&err, &path, &["no layer 5", "available: 0, 1"]);
    }

    // ---- the real dumps in the shared data folder ----

    fn shared_dumps() -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/dumps");
        assert!(
            dir.is_dir(),
            "the shared data folder is required for this test but {} does not exist",
            dir.display()
        );
        dir
    }

    #[test]
    fn real_single_task_dump() {
        let path = shared_dumps().join("streusle-ps_role-minilm.safetensors");
        let dump = ActivationDump::open(&path).unwrap();
        let task = dump.task(None).unwrap();
        assert_eq!(task.name, "ps_role");
        assert_eq!(task.n, 947);
        assert_eq!(task.label_names.len(), 41);
        assert_eq!(task.dim, 384);
        assert_eq!(task.layers, (0..=6).collect::<Vec<_>>());
        assert_eq!(dump.splits(), ["train", "test"]);
        assert_eq!(task.train_indices(dump.splits()).len(), 462);
        assert_eq!(task.split_indices(1).len(), 485);
        assert_eq!(dump.layer_dtype(task, 6), Some(LayerDtype::F32));
        let l6 = dump.layer(task, 6).unwrap();
        assert_eq!(l6.dim(), (947, 384));
    }

    #[test]
    fn real_multi_task_dump() {
        let dir = shared_dumps().join("crosstask");
        let dump = ActivationDump::open(&dir.join("step-50.safetensors")).unwrap();
        assert_eq!(dump.step(), Some(50));
        let names: Vec<&str> = dump.tasks().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["ps_fxn", "ps_role"]);
        let fxn = dump.task(Some("ps_fxn")).unwrap();
        let role = dump.task(Some("ps_role")).unwrap();
        assert_eq!(fxn.label_names.len(), 36);
        assert_eq!(role.label_names.len(), 41);
        for t in [fxn, role] {
            assert_eq!((t.n, t.dim), (947, 384));
            assert_eq!(t.layers, (0..=6).collect::<Vec<_>>());
            assert_eq!(t.train_indices(dump.splits()).len(), 462);
            assert_eq!(dump.layer_dtype(t, 3), Some(LayerDtype::F16));
        }
        // Both tasks hold the same vectors.
        assert_eq!(dump.layer(fxn, 3).unwrap(), dump.layer(role, 3).unwrap());

        // Step 0 is the pre-trained model: the F32 single-task layers rounded
        // to F16, bit for bit.
        let step0 = ActivationDump::open(&dir.join("step-0.safetensors")).unwrap();
        let single =
            ActivationDump::open(&shared_dumps().join("streusle-ps_role-minilm.safetensors"))
                .unwrap();
        let rounded = step0
            .layer(step0.task(Some("ps_role")).unwrap(), 4)
            .unwrap();
        let full = single.layer(single.task(None).unwrap(), 4).unwrap();
        assert!(
            rounded
                .iter()
                .zip(full.iter())
                .all(|(&r, &f)| r.to_bits() == half::f16::from_f32(f).to_f32().to_bits())
        );
    }
}
