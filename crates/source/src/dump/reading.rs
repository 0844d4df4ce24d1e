//! Opening an activation dump and reading its layers: [`ActivationDump`]
//! and where its bytes are (an open file, read with positioned reads, or
//! bytes in memory).
//!
//! Opening reads the header through the shared reader ([`Header`]), then
//! runs the metadata and task checks of `checks` and keeps the results;
//! [`ActivationDump::layer`] reads one layer at a time and rejects NaN and
//! infinite values. What this file does not do: parse the header itself,
//! widen F16/BF16 (both in [`crate::st`]) or validate metadata and tasks
//! (`checks`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::path::Path;

use ndarray::Array2;

use super::{DEFAULT_TASK, DumpError, LayerDtype, TRAIN, TaskInfo, split_position};
use crate::st::{Header, ReadAt};

/// Where a dump's bytes are: an open file (positioned reads) or memory.
#[derive(Debug)]
pub(super) enum Backing {
    File(File),
    Memory(Vec<u8>),
}

impl ReadAt for Backing {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Backing::File(file) => file.read_exact_at(buf, offset),
            Backing::Memory(bytes) => bytes.as_slice().read_exact_at(buf, offset),
        }
    }
}

/// An opened, validated activation dump (DESIGN §3.1). Holds the file open
/// (or the bytes, from [`ActivationDump::from_bytes`]); layer data is read on
/// demand.
#[derive(Debug)]
pub struct ActivationDump {
    pub(super) file: Backing,
    /// The checked header: path, size, tensor table, metadata.
    pub(super) header: Header,
    pub(super) splits: Vec<String>,
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
        let header = Header::read_at(path, &file, file_size)?;
        let mut dump = ActivationDump {
            file,
            header,
            splits: Vec::new(),
            step: None,
            tasks: Vec::new(),
            layer_tensors: Vec::new(),
        };
        dump.step = dump.read_step()?;
        dump.splits = dump.read_splits()?;
        let train = split_position(&dump.splits, TRAIN).ok_or_else(|| DumpError::NoTrainSplit {
            path: dump.path().to_path_buf(),
            splits: dump.splits.clone(),
        })?;
        match dump.read_task_list()? {
            Some(names) => {
                for name in names {
                    let prefix = format!("{name}/");
                    if !dump.header.tensors().keys().any(|k| k.starts_with(&prefix)) {
                        return Err(DumpError::TaskWithoutTensors {
                            path: dump.path().to_path_buf(),
                            task: name,
                        });
                    }
                    let (task, layers) = dump.load_task(name, &prefix, train)?;
                    dump.tasks.push(task);
                    dump.layer_tensors.push(layers);
                }
            }
            None => {
                if dump.header.tensor("labels").is_none() {
                    let prefixes: BTreeSet<String> = dump
                        .header
                        .tensors()
                        .keys()
                        .filter_map(|k| k.strip_suffix("labels"))
                        .filter(|p| p.ends_with('/'))
                        .map(str::to_string)
                        .collect();
                    if !prefixes.is_empty() {
                        return Err(DumpError::MissingTasks {
                            prefixes: prefixes.into_iter().collect(),
                            path: dump.path().to_path_buf(),
                        });
                    }
                }
                let name = dump
                    .header
                    .metadata()
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
        self.header.path()
    }

    /// Size of the file in bytes.
    pub fn file_size(&self) -> u64 {
        self.header.file_size()
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
                    path: self.path().to_path_buf(),
                    available: self.task_names(),
                }),
            },
        }
    }

    /// Storage type of layer `layer` of `task`, if the task has that layer.
    pub fn layer_dtype(&self, task: &TaskInfo, layer: usize) -> Option<LayerDtype> {
        let index = self.tasks.iter().position(|t| t.name == task.name)?;
        let name = self.layer_tensors[index].get(&layer)?;
        LayerDtype::from_dtype(self.header.tensors()[name].dtype)
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
                path: self.path().to_path_buf(),
                task: own.name.clone(),
                layer,
                available: own.layers.clone(),
            });
        };
        // The dtype and the shape [n, dim] were checked when the dump was
        // opened.
        let values = self.header.read_f32(&self.file, tensor)?;

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
                path: self.path().to_path_buf(),
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
        self.header.metadata()
    }

    pub(super) fn task_names(&self) -> Vec<String> {
        self.tasks.iter().map(|t| t.name.clone()).collect()
    }

    pub(super) fn unknown_task(&self, name: &str) -> DumpError {
        DumpError::UnknownTask {
            path: self.path().to_path_buf(),
            requested: name.to_string(),
            available: self.task_names(),
        }
    }
}
