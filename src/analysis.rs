//! One activation dump → one report: for one task, every requested layer is
//! read, measured ([`crate::geometry::measures::measure_layer`]), optionally
//! probed with the MLP classifier ([`crate::geometry::classifier::probe`])
//! and timed. In the memorisation setting ([`SubSplits`]) the train split is
//! first carved into `subtrain` and `subtest` (a fixed, label-stratified
//! 80:20 shuffle): clusters and classifier are fitted on `subtrain` and every
//! other split is scored.
//!
//! Layers run in parallel on the current rayon pool; each layer's numbers
//! depend only on its own data, so the report is identical (apart from the
//! `seconds` fields) for any thread count. This module reads layers through
//! [`Activations`] (a dump's task, or activations extracted in memory) and
//! measures wall-clock time; it writes nothing and knows nothing about the
//! CLI, the daemon or exporters.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::geometry::classifier::{self, ClassifierError, ClassifierParams};
use crate::geometry::measures::{
    LayerInput, LayerReport, MeasureParams, Partition, TRAIN, measure_layer_with,
};
use crate::geometry::memory::LayerMemory;
use crate::source::dump::{ActivationDump, DumpError};
use crate::source::{Activations, DumpTask};

/// What to analyse and how.
#[derive(Clone, Debug, Default)]
pub struct AnalysisOptions {
    /// Task name; `None`: the dump's only task.
    pub task: Option<String>,
    /// Layers; `None`: all layers of the task.
    pub layers: Option<Vec<usize>>,
    /// Measure parameters (checked).
    pub measure: MeasureParams,
    /// Keep per-label centroids in the report (needed to compare reports;
    /// large in JSON).
    pub keep_centroids: bool,
    /// Also run the classifier probe on every layer (`classifier_accuracy`).
    pub classifier: Option<ClassifierParams>,
    /// The memorisation setting: fit on `subtrain` carved out of `train`.
    pub subsplits: Option<SubSplits>,
}

/// Name of the memorisation setting's fit split.
pub const SUBTRAIN: &str = "subtrain";
/// Name of the memorisation setting's held-back part of `train`.
pub const SUBTEST: &str = "subtest";

/// The memorisation setting: `train` is carved into [`SUBTRAIN`] (the fit
/// split) and [`SUBTEST`] (seen in fine-tuning, not by the probes), so
/// accuracy on `subtest` next to `test` (never seen) shows memorisation.
/// A dump that already has a `subtrain` split is used as it is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SubSplits {
    /// Fraction of each label's train items in `subtrain`.
    pub fraction: f64,
    /// Seed of the fixed shuffle.
    pub seed: u64,
}

impl Default for SubSplits {
    fn default() -> Self {
        SubSplits {
            fraction: 0.8,
            seed: 0,
        }
    }
}

/// The report of one task of one dump: the JSON document of
/// `probewatch probe --json`, and what the daemon stores.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The file analysed.
    pub file: PathBuf,
    /// Task name.
    pub task: String,
    /// Training step, when known.
    pub step: Option<u64>,
    /// Label names (index → name).
    pub labels: Vec<String>,
    /// Items per split name.
    pub splits: BTreeMap<String, usize>,
    /// The split clustered and fitted on: `train`, or `subtrain` in the
    /// memorisation setting (only then in the JSON).
    #[serde(skip_serializing_if = "is_train")]
    pub fit_split: String,
    /// Representation dimension.
    pub dim: usize,
    /// One entry per analysed layer, ascending.
    pub layers: Vec<LayerReport>,
    /// Wall-clock seconds for the whole analysis.
    pub seconds: f64,
}

fn is_train(s: &str) -> bool {
    s == TRAIN
}

/// Why an analysis failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalysisError {
    /// The dump is unreadable or invalid.
    #[error(transparent)]
    Dump(#[from] DumpError),
    /// A requested layer is not in the dump.
    #[error("{path}: task '{task}' has no layer {layer} (available: {available:?})")]
    NoSuchLayer {
        /// The dump.
        path: PathBuf,
        /// Task.
        task: String,
        /// The missing layer.
        layer: usize,
        /// Layers present.
        available: Vec<usize>,
    },
    /// Measure parameters out of range.
    #[error("invalid parameters: {0}")]
    Params(#[from] crate::geometry::measures::ParamError),
    /// Classifier parameters out of range.
    #[error("invalid classifier parameters: {0}")]
    Classifier(#[from] ClassifierError),
    /// The memorisation setting cannot be applied to this dump.
    #[error("{path}: task '{task}': {reason}")]
    SubSplits {
        /// The dump.
        path: PathBuf,
        /// Task.
        task: String,
        /// What is wrong.
        reason: String,
    },
}

/// The split per item, the split names and the fit split of one task, after
/// the memorisation setting (when asked for).
fn fit_splits(
    source: &dyn Activations,
    sub: Option<&SubSplits>,
) -> Result<(Vec<u8>, Vec<String>, &'static str), AnalysisError> {
    let task = source.info();
    let names = source.splits().to_vec();
    let Some(sub) = sub else {
        return Ok((task.split.clone(), names, TRAIN));
    };
    let err = |reason: String| AnalysisError::SubSplits {
        path: source.origin().to_path_buf(),
        task: task.name.clone(),
        reason,
    };
    if !(sub.fraction > 0.0 && sub.fraction < 1.0) {
        return Err(err(format!(
            "the subtrain fraction must be in (0, 1), got {}",
            sub.fraction
        )));
    }
    if let Some(s) = names.iter().position(|n| n == SUBTRAIN) {
        if !task.split.contains(&(s as u8)) {
            return Err(err("the dump's 'subtrain' split has no items".to_string()));
        }
        return Ok((task.split.clone(), names, SUBTRAIN));
    }
    if names.iter().any(|n| n == SUBTEST) {
        return Err(err(
            "the dump has a 'subtest' split but no 'subtrain' split".to_string(),
        ));
    }
    if names.len() + 2 > 256 {
        return Err(err(
            "too many splits to add subtrain and subtest".to_string()
        ));
    }
    let train = task.train_indices(&names);
    let (a, b) = classifier::carve(&task.labels, &train, sub.fraction, sub.seed);
    let mut split = task.split.clone();
    let (ia, ib) = (names.len() as u8, names.len() as u8 + 1);
    for r in a {
        split[r] = ia;
    }
    for r in b {
        split[r] = ib;
    }
    let mut names = names;
    names.push(SUBTRAIN.to_string());
    names.push(SUBTEST.to_string());
    Ok((split, names, SUBTRAIN))
}

/// Analyses one task of `dump`. `on_layer_done` is called (from worker
/// threads) after each layer, e.g. to advance a progress bar.
pub fn analyse_dump(
    dump: &ActivationDump,
    opts: &AnalysisOptions,
    on_layer_done: &(dyn Fn(usize) + Sync),
) -> Result<Report, AnalysisError> {
    analyse_dump_with(
        dump,
        opts,
        &TaskMemory::new(),
        Partition::Recluster,
        on_layer_done,
    )
    .map(|(r, _)| r)
}

/// Per layer: what the previous checkpoint's analysis of one task left
/// behind ([`LayerMemory`]).
pub type TaskMemory = BTreeMap<usize, LayerMemory>;

/// [`analyse_dump`] for one checkpoint of a sequence: each layer is
/// warm-started from `memory` (the previous checkpoint's, same task; empty
/// for the first) and the new memory is returned with the report. With
/// [`Partition::Recluster`] the report is the cold one's (see
/// [`measure_layer_with`]); with [`Partition::Frozen`] layers found in
/// `memory` keep its partition.
pub fn analyse_dump_with(
    dump: &ActivationDump,
    opts: &AnalysisOptions,
    memory: &TaskMemory,
    partition: Partition,
    on_layer_done: &(dyn Fn(usize) + Sync),
) -> Result<(Report, TaskMemory), AnalysisError> {
    let task = DumpTask::new(dump, opts.task.as_deref())?;
    analyse_with(&task, opts, memory, partition, on_layer_done)
}

/// [`analyse_dump_with`] for one task's activations from any source (a
/// dump's task, or activations extracted in memory); `opts.task` is not
/// used.
pub fn analyse_with(
    source: &dyn Activations,
    opts: &AnalysisOptions,
    memory: &TaskMemory,
    partition: Partition,
    on_layer_done: &(dyn Fn(usize) + Sync),
) -> Result<(Report, TaskMemory), AnalysisError> {
    let start = Instant::now();
    let params = opts.measure.check()?;
    let classifier_params = opts.classifier.clone().map(|c| c.check()).transpose()?;
    let task = source.info();
    let (split, split_names, fit_split) = fit_splits(source, opts.subsplits.as_ref())?;
    let splits = &split_names[..];
    let layers: Vec<usize> = match &opts.layers {
        None => task.layers.clone(),
        Some(ls) => {
            for &l in ls {
                if !task.layers.contains(&l) {
                    return Err(AnalysisError::NoSuchLayer {
                        path: source.origin().to_path_buf(),
                        task: task.name.clone(),
                        layer: l,
                        available: task.layers.clone(),
                    });
                }
            }
            let mut ls = ls.clone();
            ls.sort_unstable();
            ls.dedup();
            ls
        }
    };
    let results: Vec<Result<(LayerReport, LayerMemory), AnalysisError>> = layers
        .par_iter()
        .map(|&l| {
            let t = Instant::now();
            let owned_data = source.layer(l)?;
            let data: &[f32] = &owned_data;
            let input = LayerInput {
                data,
                dim: task.dim,
                labels: &task.labels,
                n_labels: task.label_names.len(),
                split: &split,
                split_names: splits,
                fit_split,
            };
            let (mut r, mut mem) = measure_layer_with(input, &params, memory.get(&l), partition);
            // A layer whose report was re-used (unchanged input) keeps its
            // classifier result too.
            if let Some(cp) = &classifier_params {
                if !(mem.reused && r.classifier_accuracy.is_some()) {
                    let found = classifier::probe(input, cp);
                    if let Some(mut c) = found {
                        r.classifier_accuracy = Some(std::mem::take(&mut c.accuracy));
                        r.classifier = Some(c);
                    }
                    if let Some(kept) = mem.report.as_mut() {
                        kept.classifier_accuracy = r.classifier_accuracy.clone();
                        kept.classifier = r.classifier.clone();
                    }
                }
            }
            r.layer = l;
            r.seconds = t.elapsed().as_secs_f64();
            if !opts.keep_centroids {
                r.centroids.clear();
            }
            on_layer_done(l);
            Ok((r, mem))
        })
        .collect();
    let mut reports = Vec::with_capacity(results.len());
    let mut next = TaskMemory::new();
    for res in results {
        let (r, mem) = res?;
        next.insert(r.layer, mem);
        reports.push(r);
    }
    let layers = reports;
    let mut split_sizes = BTreeMap::new();
    for (i, name) in splits.iter().enumerate() {
        split_sizes.insert(
            name.clone(),
            split.iter().filter(|&&s| s as usize == i).count(),
        );
    }
    Ok((
        Report {
            file: source.origin().to_path_buf(),
            task: task.name.clone(),
            step: source.step(),
            labels: task.label_names.clone(),
            splits: split_sizes,
            fit_split: fit_split.to_string(),
            dim: task.dim,
            layers,
            seconds: start.elapsed().as_secs_f64(),
        },
        next,
    ))
}
