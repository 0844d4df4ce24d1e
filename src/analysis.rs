//! One activation dump → one report: for one task, every requested layer is
//! read, measured ([`crate::geometry::measures::measure_layer`]) and timed.
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

use crate::geometry::measures::{
    LayerInput, LayerReport, MeasureParams, Partition, measure_layer_with,
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
    /// Representation dimension.
    pub dim: usize,
    /// One entry per analysed layer, ascending.
    pub layers: Vec<LayerReport>,
    /// Wall-clock seconds for the whole analysis.
    pub seconds: f64,
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
    let task = source.info();
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
    let splits = source.splits();
    let results: Vec<Result<(LayerReport, LayerMemory), AnalysisError>> = layers
        .par_iter()
        .map(|&l| {
            let t = Instant::now();
            let data = source.layer(l)?;
            let (mut r, mem) = measure_layer_with(
                LayerInput {
                    data: &data,
                    dim: task.dim,
                    labels: &task.labels,
                    n_labels: task.label_names.len(),
                    split: &task.split,
                    split_names: splits,
                },
                &params,
                memory.get(&l),
                partition,
            );
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
            task.split.iter().filter(|&&s| s as usize == i).count(),
        );
    }
    Ok((
        Report {
            file: source.origin().to_path_buf(),
            task: task.name.clone(),
            step: source.step(),
            labels: task.label_names.clone(),
            splits: split_sizes,
            dim: task.dim,
            layers,
            seconds: start.elapsed().as_secs_f64(),
        },
        next,
    ))
}
