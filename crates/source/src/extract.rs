//! Activations from a model checkpoint: tokenize probe sets, run the
//! encoder once over every distinct input, and gather each item's vector per
//! layer — the same matrices an activation dump holds (DESIGN §3.1), and
//! [`encode_dump`] writes them as one.
//!
//! An [`ExtractionPlan`] is made once per tokenizer (tokenization does not
//! depend on the weights) and run once per checkpoint: one forward pass per
//! distinct token sequence serves every task and every layer, and of each
//! sequence's hidden states only the token positions some item needs are
//! kept. Deterministic: the encoder gives the same bits for any thread count
//! and items are gathered in item order. This module does no analysis; it
//! reads nothing but what the encoder and tokenizer load.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};

use super::Activations;
use super::dump::{DumpError, TaskInfo};
use super::encoder::{Encoder, EncoderError};
use super::probeset::ProbeSet;
use super::probeset::tokens::{ItemGather, ProbeTokenizer, TokenRef, TokenizeError};

/// Why an extraction failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// Tokenization failed.
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    /// The encoder failed.
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    /// The probe set has no `train` split.
    #[error("probe set for task '{task}' has no train split (splits: {splits:?})")]
    NoTrain {
        /// Task.
        task: String,
        /// Splits present.
        splits: Vec<String>,
    },
    /// Two probe sets of one plan have the same task name.
    #[error("two probe sets are named '{task}'; task names must be unique")]
    DuplicateTask {
        /// The name.
        task: String,
    },
    /// The plan was made for longer inputs than this encoder takes.
    #[error(
        "{model}: the probe sets were tokenized for inputs of up to {planned} tokens, \
         the model takes {max}"
    )]
    PlanTooLong {
        /// The model folder.
        model: PathBuf,
        /// The plan's window size.
        planned: usize,
        /// The model's maximum.
        max: usize,
    },
}

/// One task's activations: what an activation dump holds for it.
#[derive(Clone, Debug, PartialEq)]
pub struct ExtractedTask {
    /// Task name.
    pub name: String,
    /// Label names (index → name).
    pub label_names: Vec<String>,
    /// Label index per item.
    pub labels: Vec<i64>,
    /// Split index per item.
    pub split: Vec<u8>,
    /// Split names (index → name).
    pub splits: Vec<String>,
    /// Width of an item's vector (hidden size × parts, e.g. 2× for
    /// dependency pairs).
    pub dim: usize,
    /// Per hidden state (0 = embedding output): `items × dim`, row-major.
    pub layers: Vec<Vec<f32>>,
}

/// One task of a plan: its labels and, per item, the tokens to gather
/// (`TokenRef::input` indexes the plan's distinct inputs).
#[derive(Debug, Clone)]
struct PlannedTask {
    name: String,
    label_names: Vec<String>,
    labels: Vec<i64>,
    split: Vec<u8>,
    splits: Vec<String>,
    parts_per_item: usize,
    items: Vec<ItemGather>,
}

/// Probe sets tokenized once, ready to run on any checkpoint of a model
/// family: the distinct encoder inputs of all tasks (a sentence shared by
/// two tasks is encoded once), and the token positions each input must
/// keep.
#[derive(Debug, Clone)]
pub struct ExtractionPlan {
    inputs: Vec<Vec<u32>>,
    /// Per input: ascending positions some item reads.
    needed: Vec<Vec<usize>>,
    tasks: Vec<PlannedTask>,
    max_tokens: usize,
}

impl ExtractionPlan {
    /// Tokenizes every probe set with `tokenizer` and merges the encoder
    /// inputs of all of them.
    pub fn new(tokenizer: &ProbeTokenizer, sets: &[ProbeSet]) -> Result<Self, ExtractError> {
        let mut inputs: Vec<Vec<u32>> = Vec::new();
        let mut index: HashMap<Vec<u32>, usize> = HashMap::new();
        let mut tasks: Vec<PlannedTask> = Vec::with_capacity(sets.len());
        for set in sets {
            if !set.splits.iter().any(|s| s == "train") {
                return Err(ExtractError::NoTrain {
                    task: set.task.name.clone(),
                    splits: set.splits.clone(),
                });
            }
            if tasks.iter().any(|t| t.name == set.task.name) {
                return Err(ExtractError::DuplicateTask {
                    task: set.task.name.clone(),
                });
            }
            let plan = tokenizer.plan(set)?;
            // Local input number → distinct input number, first seen first.
            let global: Vec<usize> = plan
                .inputs
                .iter()
                .map(|input| {
                    *index.entry(input.ids.clone()).or_insert_with(|| {
                        inputs.push(input.ids.clone());
                        inputs.len() - 1
                    })
                })
                .collect();
            let items = plan
                .items
                .into_iter()
                .map(|g| ItemGather {
                    parts: g
                        .parts
                        .into_iter()
                        .map(|part| {
                            part.into_iter()
                                .map(|t| TokenRef {
                                    input: global[t.input],
                                    position: t.position,
                                })
                                .collect()
                        })
                        .collect(),
                })
                .collect();
            tasks.push(PlannedTask {
                name: set.task.name.clone(),
                label_names: set.label_names.clone(),
                labels: set.items.iter().map(|i| i64::from(i.label)).collect(),
                split: set.items.iter().map(|i| i.split).collect(),
                splits: set.splits.clone(),
                parts_per_item: plan.parts_per_item,
                items,
            });
        }
        let mut needed = vec![Vec::new(); inputs.len()];
        for task in &tasks {
            for item in &task.items {
                for t in item.parts.iter().flatten() {
                    needed[t.input].push(t.position);
                }
            }
        }
        for n in &mut needed {
            n.sort_unstable();
            n.dedup();
        }
        Ok(ExtractionPlan {
            inputs,
            needed,
            tasks,
            max_tokens: tokenizer.options().max_tokens,
        })
    }

    /// Distinct encoder inputs (forward passes per checkpoint).
    pub fn inputs(&self) -> usize {
        self.inputs.len()
    }

    /// Tokens over all distinct inputs, special tokens included.
    pub fn tokens(&self) -> usize {
        self.inputs.iter().map(Vec::len).sum()
    }

    /// The longest input the plan was tokenized for (the tokenizer's
    /// `max_tokens`).
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Task names, in plan order.
    pub fn task_names(&self) -> impl Iterator<Item = &str> {
        self.tasks.iter().map(|t| t.name.as_str())
    }

    /// Runs `encoder` over every distinct input on `threads` workers
    /// (0 = all) and gathers every task's items per layer, in plan order.
    pub fn run(
        &self,
        encoder: &Encoder,
        threads: usize,
    ) -> Result<Vec<ExtractedTask>, ExtractError> {
        if self.max_tokens > encoder.max_positions() {
            return Err(ExtractError::PlanTooLong {
                model: encoder.dir().to_path_buf(),
                planned: self.max_tokens,
                max: encoder.max_positions(),
            });
        }
        let h = encoder.hidden_size();
        let n_states = encoder.num_layers() + 1;
        // Per input, per hidden state: the needed rows, packed.
        let kept: Vec<Vec<Vec<f32>>> =
            encoder.encode_many_with(&self.inputs, threads, |i, states| {
                states
                    .iter()
                    .map(|s| {
                        let mut rows = Vec::with_capacity(self.needed[i].len() * h);
                        for &p in &self.needed[i] {
                            rows.extend(s.row(p).iter());
                        }
                        rows
                    })
                    .collect()
            })?;
        let row = |t: TokenRef, l: usize| -> &[f32] {
            let r = self.needed[t.input]
                .binary_search(&t.position)
                .expect("every gathered position is kept");
            &kept[t.input][l][r * h..(r + 1) * h]
        };
        let mut out = Vec::with_capacity(self.tasks.len());
        for task in &self.tasks {
            let dim = task.parts_per_item * h;
            let mut layers = Vec::with_capacity(n_states);
            for l in 0..n_states {
                let mut data = Vec::with_capacity(task.items.len() * dim);
                for g in &task.items {
                    g.gather(|t| row(t, l), &mut data);
                }
                layers.push(data);
            }
            out.push(ExtractedTask {
                name: task.name.clone(),
                label_names: task.label_names.clone(),
                labels: task.labels.clone(),
                split: task.split.clone(),
                splits: task.splits.clone(),
                dim,
                layers,
            });
        }
        Ok(out)
    }
}

/// Runs `encoder` over the probe set `set` tokenized by `tokenizer` on
/// `threads` workers (0 = all) and gathers every item's vector per layer.
pub fn extract(
    encoder: &Encoder,
    tokenizer: &ProbeTokenizer,
    set: &ProbeSet,
    threads: usize,
) -> Result<ExtractedTask, ExtractError> {
    let mut tasks =
        ExtractionPlan::new(tokenizer, std::slice::from_ref(set))?.run(encoder, threads)?;
    Ok(tasks.remove(0))
}

/// An [`ExtractedTask`] as the analysis reads it: labels, splits and layers
/// in memory, with the checkpoint it came from. Layers are checked for NaN
/// and infinite values when read, as a dump's are.
#[derive(Debug)]
pub struct ExtractedActivations {
    origin: PathBuf,
    step: Option<u64>,
    info: TaskInfo,
    splits: Vec<String>,
    layers: Vec<Vec<f32>>,
}

impl ExtractedActivations {
    /// Wraps `task`, extracted from the checkpoint at `origin` (named in
    /// messages and reports) of training step `step`.
    pub fn new(origin: &Path, step: Option<u64>, task: ExtractedTask) -> Self {
        let n = task.labels.len();
        ExtractedActivations {
            origin: origin.to_path_buf(),
            step,
            info: TaskInfo {
                name: task.name,
                label_names: task.label_names,
                labels: task.labels.iter().map(|&l| l as u32).collect(),
                split: task.split,
                layers: (0..task.layers.len()).collect(),
                n,
                dim: task.dim,
            },
            splits: task.splits,
            layers: task.layers,
        }
    }
}

impl Activations for ExtractedActivations {
    fn origin(&self) -> &Path {
        &self.origin
    }

    fn step(&self) -> Option<u64> {
        self.step
    }

    fn info(&self) -> &TaskInfo {
        &self.info
    }

    fn splits(&self) -> &[String] {
        &self.splits
    }

    fn layer(&self, layer: usize) -> Result<Cow<'_, [f32]>, DumpError> {
        let Some(data) = self.layers.get(layer) else {
            return Err(DumpError::NoSuchLayer {
                path: self.origin.clone(),
                task: self.info.name.clone(),
                layer,
                available: self.info.layers.clone(),
            });
        };
        let dim = self.info.dim.max(1);
        let mut bad = data
            .chunks_exact(dim)
            .enumerate()
            .filter(|(_, r)| r.iter().any(|v| !v.is_finite()));
        if let Some((first_row, _)) = bad.next() {
            return Err(DumpError::NonFinite {
                path: self.origin.clone(),
                task: self.info.name.clone(),
                layer,
                tensor: format!("hidden state {layer}"),
                rows: 1 + bad.count(),
                n: self.info.n,
                first_row,
            });
        }
        Ok(Cow::Borrowed(data))
    }
}

/// An activation dump (DESIGN §3.1) of one or more tasks as safetensors
/// bytes: one task is written in the single-task form (`layer.<L>`,
/// `labels`, `split`), several in the prefixed multi-task form. All tasks
/// must share the split names. `metadata` adds string entries (e.g.
/// `model`).
///
/// # Panics
/// If a task's buffers do not match its shape, or the tasks' split names
/// differ.
pub fn encode_dump(
    tasks: &[ExtractedTask],
    step: Option<u64>,
    metadata: &[(&str, &str)],
) -> Vec<u8> {
    let multi = tasks.len() > 1;
    let prefix = |t: &ExtractedTask| {
        if multi {
            format!("{}/", t.name)
        } else {
            String::new()
        }
    };
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut meta: HashMap<String, String> = HashMap::new();
    for t in tasks {
        let n = t.labels.len();
        assert_eq!(t.split.len(), n, "split length");
        assert_eq!(t.splits, tasks[0].splits, "tasks share the split names");
        let p = prefix(t);
        for (l, data) in t.layers.iter().enumerate() {
            assert_eq!(data.len(), n * t.dim, "layer shape");
            owned.push((
                format!("{p}layer.{l}"),
                Dtype::F32,
                vec![n, t.dim],
                data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ));
        }
        owned.push((
            format!("{p}labels"),
            Dtype::I64,
            vec![n],
            t.labels.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
        owned.push((format!("{p}split"), Dtype::U8, vec![n], t.split.clone()));
        meta.insert(
            format!("{p}label_names"),
            serde_json::to_string(&t.label_names).expect("strings serialise"),
        );
    }
    if let Some(first) = tasks.first() {
        meta.insert(
            "splits".into(),
            serde_json::to_string(&first.splits).expect("strings serialise"),
        );
    }
    if multi {
        let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
        meta.insert(
            "tasks".into(),
            serde_json::to_string(&names).expect("strings serialise"),
        );
    } else if let Some(t) = tasks.first() {
        meta.insert("task".into(), t.name.clone());
    }
    if let Some(s) = step {
        meta.insert("step".into(), s.to_string());
    }
    for (k, v) in metadata {
        meta.insert((*k).to_string(), (*v).to_string());
    }
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            (
                name.clone(),
                TensorView::new(*dtype, shape.clone(), bytes).expect("consistent shape"),
            )
        })
        .collect();
    safetensors::serialize(views, Some(meta)).expect("valid tensors serialise")
}
