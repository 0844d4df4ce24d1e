//! Activations from a model checkpoint: tokenize a probe set, run the
//! encoder over every sentence, and gather each item's vector per layer —
//! the same matrices an activation dump holds (DESIGN §3.1), and
//! [`encode_dump`] writes them as one.
//!
//! One encoder pass serves every layer: all hidden states of a sentence are
//! kept only until its items' rows are gathered. Deterministic: the encoder
//! gives the same bits for any thread count and items are gathered in item
//! order. This module does no analysis; it reads nothing but what the
//! encoder and tokenizer load.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};

use super::encoder::{Encoder, EncoderError};
use super::probeset::ProbeSet;
use super::probeset::tokens::{ProbeTokenizer, TokenizeError};

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

/// Runs `encoder` over the probe set `set` tokenized by `tokenizer` on
/// `threads` workers (0 = all) and gathers every item's vector per layer.
pub fn extract(
    encoder: &Encoder,
    tokenizer: &ProbeTokenizer,
    set: &ProbeSet,
    threads: usize,
) -> Result<ExtractedTask, ExtractError> {
    if !set.splits.iter().any(|s| s == "train") {
        return Err(ExtractError::NoTrain {
            task: set.task.name.clone(),
            splits: set.splits.clone(),
        });
    }
    let plan = tokenizer.plan(set)?;
    let seqs: Vec<Vec<u32>> = plan.inputs.iter().map(|i| i.ids.clone()).collect();
    let states = encoder.encode_many(&seqs, threads)?;
    let n_states = encoder.num_layers() + 1;
    let mut layers = Vec::with_capacity(n_states);
    let mut dim = 0;
    #[allow(clippy::needless_range_loop)] // `l` picks the layer in every sentence's states
    for l in 0..n_states {
        let mut out = Vec::new();
        for g in &plan.items {
            g.gather(
                |t| {
                    states[t.input][l]
                        .row(t.position)
                        .to_slice()
                        .expect("hidden states are standard-layout")
                },
                &mut out,
            );
        }
        dim = if set.items.is_empty() {
            0
        } else {
            out.len() / set.items.len()
        };
        layers.push(out);
    }
    Ok(ExtractedTask {
        name: set.task.name.clone(),
        label_names: set.label_names.clone(),
        labels: set.items.iter().map(|i| i64::from(i.label)).collect(),
        split: set.items.iter().map(|i| i.split).collect(),
        splits: set.splits.clone(),
        dim,
        layers,
    })
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
