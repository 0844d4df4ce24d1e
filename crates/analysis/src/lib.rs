//! One activation dump → one report: for one task, every requested layer is
//! read, measured ([`geometry::measures::measure_layer`]), optionally
//! probed with the MLP classifier ([`geometry::classifier::probe`])
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

use geometry::classifier::{self, ClassifierError, ClassifierParams};
use geometry::measures::{
    Interrupted, KeepGoing, LayerInput, LayerReport, MeasureParams, Partition, TRAIN, layer_gram,
    measure_clusters, measure_core, measure_layer_with, measure_test_clusters, measure_test_hulls,
    reusable,
};
use geometry::memory::LayerMemory;
use source::dump::{ActivationDump, DumpError};
use source::{Activations, DumpTask};

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
    /// Only the core stage ([`measure_core`]): the fit split's label-hull
    /// distances, centroids, scale; no test split, no clustering, no
    /// classifier.
    pub core_only: bool,
}

/// The stages of one checkpoint's analysis, in the order they run: the
/// cheap exact `core` first, then the late ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// [`measure_core`]: the fit split's label-hull distances and their
    /// minima, centroids, scale.
    Core,
    /// [`measure_test_hulls`]: the test split's label-hull distances and the
    /// train/test similarity of label-hull distances.
    TestHulls,
    /// [`measure_clusters`]: DirectProbe on the fit split, cluster and label
    /// distances, nearest-cluster accuracy.
    Clusters,
    /// [`measure_test_clusters`]: DirectProbe on the test split, the
    /// train/test similarity of label distances.
    TestClusters,
    /// The MLP classifier probe ([`classifier::probe`]).
    Classifier,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 5] = [
        Stage::Core,
        Stage::TestHulls,
        Stage::Clusters,
        Stage::TestClusters,
        Stage::Classifier,
    ];
    /// The late stages, in order.
    pub const LATE: [Stage; 4] = [
        Stage::TestHulls,
        Stage::Clusters,
        Stage::TestClusters,
        Stage::Classifier,
    ];

    /// The name used in logs, metrics and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Core => "core",
            Stage::TestHulls => "test_hulls",
            Stage::Clusters => "clusters",
            Stage::TestClusters => "test_clusters",
            Stage::Classifier => "classifier",
        }
    }

    /// The stage named `s`.
    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|x| x.as_str() == s)
    }
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
    Params(#[from] geometry::measures::ParamError),
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
            if opts.core_only {
                let (mut r, mem) = measure_core(input, &params, memory.get(&l));
                r.layer = l;
                r.seconds = t.elapsed().as_secs_f64();
                if !opts.keep_centroids {
                    r.centroids.clear();
                }
                on_layer_done(l);
                return Ok((r, mem));
            }
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

/// The layers [`analyse_with`] analyses for `opts` (sorted, checked).
fn chosen_layers(
    source: &dyn Activations,
    opts: &AnalysisOptions,
) -> Result<Vec<usize>, AnalysisError> {
    let task = source.info();
    match &opts.layers {
        None => Ok(task.layers.clone()),
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
            Ok(ls)
        }
    }
}

/// What one late stage did to one layer.
#[derive(Clone, Debug)]
pub enum LayerStage {
    /// The stage ran (or its result was re-used for an unchanged input):
    /// the layer's report with the stage's fields filled in.
    Done(Box<LayerReport>),
    /// The stage was stopped by `keep_going` before it finished this layer.
    Interrupted,
    /// The stage does not apply (no test split, train/test similarity or
    /// the classifier off, or its prerequisite stage is missing).
    NotApplicable,
}

/// One late stage over the layers of one task's checkpoint: `reports` are
/// that checkpoint's layer reports so far (the core stage's, or with earlier
/// late stages filled in), by layer; each layer present in `reports` gets
/// the stage, warm-started from `memory` (the previous late analysis of the
/// run's task) and adding to `next` (this checkpoint's late memory, carried
/// from stage to stage). Layers run in parallel; `keep_going` is asked
/// between solves, and a layer it stops is [`LayerStage::Interrupted`]
/// (its memory is not kept). Deterministic like [`analyse_with`].
#[allow(clippy::too_many_arguments)] // the source, options, stage, reports, memories in and out, the brake, progress
pub fn analyse_stage(
    source: &dyn Activations,
    opts: &AnalysisOptions,
    stage: Stage,
    reports: &BTreeMap<usize, LayerReport>,
    memory: &TaskMemory,
    next: &mut TaskMemory,
    partition: Partition,
    keep_going: KeepGoing<'_>,
    on_layer_done: &(dyn Fn(usize, &LayerStage) + Sync),
) -> Result<BTreeMap<usize, LayerStage>, AnalysisError> {
    let params = opts.measure.check()?;
    let classifier_params = opts.classifier.clone().map(|c| c.check()).transpose()?;
    let task = source.info();
    let (split, split_names, fit_split) = fit_splits(source, opts.subsplits.as_ref())?;
    let splits = &split_names[..];
    let layers: Vec<usize> = chosen_layers(source, opts)?
        .into_iter()
        .filter(|l| reports.contains_key(l))
        .collect();
    let mut carried: Vec<(usize, LayerMemory)> = layers
        .iter()
        .map(|&l| (l, next.remove(&l).unwrap_or_default()))
        .collect();
    let results: Vec<Result<(usize, LayerStage, LayerMemory), AnalysisError>> = carried
        .par_iter_mut()
        .map(|(l, mem)| {
            let l = *l;
            let t = Instant::now();
            let mut mem = std::mem::take(mem);
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
            let mut r = reports[&l].clone();
            let previous = memory.get(&l);
            let outcome = match stage {
                Stage::Core => LayerStage::NotApplicable,
                Stage::TestHulls => {
                    let test = splits.iter().position(|s| s == "test");
                    let has_test =
                        test.is_some_and(|t| splits[t] != fit_split && split.contains(&(t as u8)));
                    if !params.train_test_similarity || !has_test {
                        LayerStage::NotApplicable
                    } else {
                        match measure_test_hulls(
                            input, &params, previous, &mut r, &mut mem, keep_going,
                        ) {
                            Ok(()) => LayerStage::Done(Box::new(r)),
                            Err(Interrupted) => LayerStage::Interrupted,
                        }
                    }
                }
                Stage::Clusters => {
                    if let Some(kept) = reusable(&input, &params, previous, partition) {
                        // An unchanged layer: the previous late report, with
                        // this checkpoint's own core fields.
                        let mut again = kept.clone();
                        again.layer = l;
                        again.label_names = r.label_names.clone();
                        let mut m = previous.cloned().unwrap_or_default();
                        m.reused = true;
                        mem = m;
                        LayerStage::Done(Box::new(again))
                    } else {
                        let gram = layer_gram(&input, &params);
                        match measure_clusters(
                            input,
                            &params,
                            gram.as_ref(),
                            previous,
                            partition,
                            &mut r,
                            &mut mem,
                            keep_going,
                        ) {
                            Ok(()) => LayerStage::Done(Box::new(r)),
                            Err(Interrupted) => LayerStage::Interrupted,
                        }
                    }
                }
                Stage::TestClusters => {
                    let test = splits.iter().position(|s| s == "test");
                    let has_test = test.is_some_and(|t| split.contains(&(t as u8)));
                    if !params.train_test_similarity || !r.clustered || !has_test {
                        LayerStage::NotApplicable
                    } else if mem.reused && r.test_clusters.is_some() {
                        LayerStage::Done(Box::new(r))
                    } else {
                        let gram = layer_gram(&input, &params);
                        match measure_test_clusters(
                            input,
                            &params,
                            gram.as_ref(),
                            previous,
                            partition,
                            &mut r,
                            &mut mem,
                            keep_going,
                        ) {
                            Ok(()) => LayerStage::Done(Box::new(r)),
                            Err(Interrupted) => LayerStage::Interrupted,
                        }
                    }
                }
                Stage::Classifier => match &classifier_params {
                    None => LayerStage::NotApplicable,
                    Some(_) if mem.reused && r.classifier_accuracy.is_some() => {
                        LayerStage::Done(Box::new(r))
                    }
                    Some(cp) => match classifier::probe_interruptible(input, cp, keep_going) {
                        Err(Interrupted) => LayerStage::Interrupted,
                        Ok(found) => {
                            if let Some(mut c) = found {
                                r.classifier_accuracy = Some(std::mem::take(&mut c.accuracy));
                                r.classifier = Some(c);
                            }
                            LayerStage::Done(Box::new(r))
                        }
                    },
                },
            };
            if let LayerStage::Done(rep) = &outcome {
                // The memory's report is the newest full one: the next
                // checkpoint re-uses it when its input is unchanged.
                if !mem.reused {
                    mem.input_key =
                        geometry::measures::fingerprint(&input, &params, partition, previous);
                }
                let mut kept = rep.clone();
                kept.seconds = 0.0;
                mem.report = Some(kept);
                mem.rows = task.labels.len();
            }
            let _ = t;
            on_layer_done(l, &outcome);
            Ok((l, outcome, mem))
        })
        .collect();
    let mut out = BTreeMap::new();
    for res in results {
        let (l, outcome, mem) = res?;
        if !matches!(outcome, LayerStage::Interrupted) {
            next.insert(l, mem);
        }
        out.insert(l, outcome);
    }
    Ok(out)
}
