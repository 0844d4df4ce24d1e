//! The checks of an activation dump beyond its safetensors header: the
//! metadata the dump format defines (`step`, `splits`, `tasks`, each task's
//! `label_names`) and every task's tensors (labels in range, split in range,
//! layers `[N, D]` of a float dtype with one D per task, a non-empty train
//! split). Runs once, when a dump is opened; the labels and split tensors
//! are read here, layer data is not.
//!
//! What this file does not do: check the container (offsets, sizes, the
//! header's JSON: [`crate::st::Header`]) or read layers (`reading`).

use std::collections::BTreeMap;

use safetensors::Dtype;

use super::{ActivationDump, DumpError, LayerDtype, TRAIN, TaskInfo};
use crate::st::step_from_path;

impl ActivationDump {
    /// Metadata `step`, else the step in the file or folder name.
    pub(super) fn read_step(&self) -> Result<Option<u64>, DumpError> {
        Ok(self.header.step()?.or_else(|| step_from_path(self.path())))
    }

    /// Metadata `splits` (default `["train", "test"]`): distinct, at most 256.
    pub(super) fn read_splits(&self) -> Result<Vec<String>, DumpError> {
        let bad = |detail: String| DumpError::BadMetadata {
            path: self.path().to_path_buf(),
            key: "splits".to_string(),
            detail,
        };
        let Some(raw) = self.header.metadata().get("splits") else {
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

    /// Metadata `tasks`, if present: distinct non-empty names without `/`.
    pub(super) fn read_task_list(&self) -> Result<Option<Vec<String>>, DumpError> {
        let bad = |detail: String| DumpError::BadMetadata {
            path: self.path().to_path_buf(),
            key: "tasks".to_string(),
            detail,
        };
        let Some(raw) = self.header.metadata().get("tasks") else {
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
    pub(super) fn load_task(
        &self,
        name: String,
        prefix: &str,
        train: u8,
    ) -> Result<(TaskInfo, BTreeMap<usize, String>), DumpError> {
        let path = || self.path().to_path_buf();
        let multi = !prefix.is_empty();

        // Label names.
        let key = format!("{prefix}label_names");
        let raw = self
            .header
            .metadata()
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
            .header
            .tensor(&labels_name)
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
                found: entry.describe(),
            });
        }
        let n = entry.shape[0];
        let bytes = self.header.read_bytes(&self.file, &labels_name)?;
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
        let split_name = if multi && self.header.tensors().contains_key(&own_split) {
            Some(own_split)
        } else if self.header.tensors().contains_key("split") {
            Some("split".to_string())
        } else {
            None
        };
        let split = match split_name {
            None => vec![train; n],
            Some(split_name) => {
                let entry = &self.header.tensors()[&split_name];
                if entry.dtype != Dtype::U8 || entry.shape != [n] {
                    return Err(DumpError::BadSplit {
                        path: path(),
                        task: name.clone(),
                        tensor: split_name,
                        found: entry.describe(),
                        n,
                    });
                }
                let split = self.header.read_bytes(&self.file, &split_name)?;
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
        for tensor in self.header.tensors().keys() {
            if let Some(l) = layer_index(tensor, "") {
                layer_tensors.insert(l, tensor.clone());
            }
        }
        if multi {
            for tensor in self.header.tensors().keys() {
                if let Some(l) = layer_index(tensor, prefix) {
                    layer_tensors.insert(l, tensor.clone());
                }
            }
        }
        let mut first: Option<(&str, usize)> = None;
        for tensor in layer_tensors.values() {
            let entry = &self.header.tensors()[tensor];
            if LayerDtype::from_dtype(entry.dtype).is_none()
                || entry.shape.len() != 2
                || entry.shape[1] == 0
            {
                return Err(DumpError::BadLayer {
                    path: path(),
                    task: name.clone(),
                    tensor: tensor.clone(),
                    found: entry.describe(),
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
pub(super) fn layer_index(name: &str, prefix: &str) -> Option<usize> {
    let digits = name.strip_prefix(prefix)?.strip_prefix("layer.")?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if canonical { digits.parse().ok() } else { None }
}
