//! The core job: one checkpoint's core stage, on a blocking thread with
//! its numeric work on the shared analysis pool and the gate closed
//! ([`analyse_job`]). It checks the `[limits]` caps before any layer is
//! read, reads the activations ([`CheckpointSource`]), analyses every task
//! (`core_only`: label hulls, centroids, scale; warm-started from the
//! previous checkpoint's memory; only this replica's layers when sharded),
//! compares each layer with the baseline and the previous checkpoint, and
//! writes the outcome to the store before returning it. A dump is read
//! through one handle whose size and mtime are compared with the scan's
//! before and after: a dump that changed stores nothing (kind `changed`).
//!
//! What it does not do: change the run's state or publish anything. It
//! returns an [`Outcome`]; the run loop takes it (`publish::finish`).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use analysis::{Report, Stage, TaskMemory, analyse_with};
use geometry::measures::{LayerComparison, LayerReport, compare};
use source::Activations;
use store::RunId;
use tracing::info;
use view::{Layers, Reference};

use super::activations::{CheckpointSource, file_version};
use super::failure::{Failure, FailureKind};
use super::options::{analysis_options, partition_of};
use super::probes::ProbeRun;
use super::publish::{self, CheckpointAnalysis};
use super::{Shared, unix_now};
use crate::config::{Layout, Limits, RunConfig};
use crate::shard::Shard;
use crate::watch::Candidate;

/// Per (task, layer): a layer's comparison with a reference checkpoint.
pub(super) type Comparisons = BTreeMap<(String, usize), LayerComparison>;

/// One analysis to run: the checkpoint, the warm memory and the references.
pub(super) struct Job {
    /// The checkpoint.
    pub(super) candidate: Candidate,
    /// The previous analysis' memory, per task.
    pub(super) memory: BTreeMap<String, TaskMemory>,
    /// The run's baseline (`None` for the baseline itself).
    pub(super) baseline: Option<Reference>,
    /// The stored checkpoint before this one.
    pub(super) previous: Option<Reference>,
    /// Whether this checkpoint becomes the baseline.
    pub(super) is_baseline: bool,
}

/// One job's result.
pub(super) struct Outcome {
    /// The checkpoint.
    pub(super) candidate: Candidate,
    /// What was stored, or why nothing was.
    pub(super) result: Result<Analysed, Failure>,
    /// The memory for the next checkpoint.
    pub(super) memory: BTreeMap<String, TaskMemory>,
    /// How long the analysis took.
    pub(super) seconds: f64,
}

/// A checkpoint whose core stage is stored.
pub(super) struct Analysed {
    /// The core reports (late-stage fields empty).
    pub(super) layers: Arc<Layers>,
    /// The activations, for the late stages.
    pub(super) source: Option<Arc<CheckpointSource>>,
    /// Comparisons with the baseline.
    pub(super) baseline_cmp: Comparisons,
    /// Comparisons with the previous checkpoint.
    pub(super) previous_cmp: Comparisons,
    /// Its row in the store.
    pub(super) checkpoint_id: i64,
    /// Whether it is the run's baseline.
    pub(super) is_baseline: bool,
}

/// The core stage of every task of a checkpoint, before it is stored.
#[derive(Default)]
pub(super) struct CoreReports {
    /// One report per task.
    pub(super) reports: Vec<Report>,
    /// Every (task, layer) analysed, with its label names.
    pub(super) layers: Layers,
    /// Comparisons with the baseline.
    pub(super) baseline_cmp: Comparisons,
    /// Comparisons with the previous checkpoint.
    pub(super) previous_cmp: Comparisons,
}

/// The core stage's result and the activations it read.
pub(super) struct CoreResult {
    /// The reports.
    pub(super) core: CoreReports,
    /// The activations, kept for the late stages.
    pub(super) source: CheckpointSource,
}

/// What the core stage of one checkpoint reads.
struct CoreInput<'a> {
    candidate: &'a Candidate,
    /// The dump's handle, checked before and after.
    held: Option<&'a File>,
    memory: &'a BTreeMap<String, TaskMemory>,
    baseline: Option<&'a Reference>,
    previous: Option<&'a Reference>,
}

/// The run's settings the core stage works with (read once per job).
struct CoreSettings<'a> {
    cfg: &'a RunConfig,
    limits: Limits,
    probe: Option<&'a ProbeRun>,
    threads: usize,
    shard: Option<Shard>,
}

/// Analyses one checkpoint (blocking; numeric work on the shared pool) and
/// records the outcome in the store.
pub(super) fn analyse_job(shared: &Shared, cfg: &RunConfig, run: RunId, job: Job) -> Outcome {
    let Job {
        candidate,
        memory,
        baseline,
        previous,
        is_baseline,
    } = job;
    let started = unix_now();
    let t = Instant::now();
    // A dump is read through one handle, kept here too: if it is not the
    // version the scan judged complete, or changes while it is read, the
    // result belongs to no one version and nothing is stored (the scanner
    // reports the new version when it is complete).
    let held = match cfg.layout {
        Layout::Dumps => File::open(&candidate.path).ok(),
        Layout::HfCheckpoints => None,
    };
    let changed = |when: &str| {
        let f = held.as_ref()?;
        (file_version(f) != Some((candidate.size, candidate.mtime))).then(|| {
            Failure::new(
                FailureKind::Changed,
                format!("{}: {when}", candidate.path.display()),
            )
        })
    };
    if let Some(f) = changed("changed between the scan and the analysis") {
        return Outcome {
            candidate,
            result: Err(f),
            memory,
            seconds: 0.0,
        };
    }
    let mut new_memory = BTreeMap::new();
    let input = CoreInput {
        candidate: &candidate,
        held: held.as_ref(),
        memory: &memory,
        baseline: baseline.as_ref(),
        previous: previous.as_ref(),
    };
    let result = run_core(shared, cfg, &input, started, &mut new_memory);
    let seconds = t.elapsed().as_secs_f64();
    if let Some(f) = changed("changed while it was read") {
        return Outcome {
            candidate,
            result: Err(f),
            memory: new_memory,
            seconds,
        };
    }
    let analysis = CheckpointAnalysis {
        run,
        run_name: &cfg.name,
        candidate: &candidate,
        is_baseline,
        started_unix: started,
        finished_unix: unix_now(),
        seconds,
    };
    let result = {
        let mut store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
        publish::store_core(&mut store, &analysis, result)
    };
    Outcome {
        candidate,
        result,
        memory: new_memory,
        seconds,
    }
}

/// The core stage on the analysis pool, with the gate closed and the
/// stage's in-progress metrics around it.
fn run_core(
    shared: &Shared,
    cfg: &RunConfig,
    input: &CoreInput<'_>,
    started: f64,
    new_memory: &mut BTreeMap<String, TaskMemory>,
) -> Result<CoreResult, Failure> {
    let probe = shared
        .probes
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&cfg.name)
        .cloned();
    let settings = CoreSettings {
        cfg,
        limits: *shared.limits.read().unwrap_or_else(PoisonError::into_inner),
        probe: probe.as_deref(),
        threads: shared.pool.current_num_threads(),
        shard: shared.shard,
    };
    let core = Stage::Core.as_str();
    let step = input.candidate.step;
    shared.metrics.stage_started(
        &cfg.name,
        core,
        step,
        cfg.layers.as_ref().map_or(0, Vec::len),
        started,
    );
    info!(run = %cfg.name, step, stage = core, "stage started");
    let gate = shared.gate.core_running();
    let result = shared
        .pool
        .install(|| analyse_checkpoint(&settings, input, new_memory));
    drop(gate);
    shared.metrics.stage_ended(&cfg.name, core);
    result
}

/// Checks the file size cap, reads the activations and runs the core
/// stage over them.
fn analyse_checkpoint(
    settings: &CoreSettings<'_>,
    input: &CoreInput<'_>,
    new_memory: &mut BTreeMap<String, TaskMemory>,
) -> Result<CoreResult, Failure> {
    let candidate = input.candidate;
    let limits = &settings.limits;
    if candidate.size > limits.max_file_bytes {
        return Err(Failure::new(
            FailureKind::Limit,
            format!(
                "{}: {} bytes, more than limits.max_file_bytes = {}",
                candidate.path.display(),
                candidate.size,
                limits.max_file_bytes
            ),
        ));
    }
    let source = CheckpointSource::load(
        settings.cfg,
        settings.probe,
        settings.threads,
        candidate,
        input.held,
    )?;
    let core = source.with(|sources| core_of_sources(settings, input, sources, new_memory))?;
    Ok(CoreResult { core, source })
}

/// A `limit` failure when one task of a checkpoint has more items, labels
/// or layers than `limits` allow (checked before any layer is read).
fn check_source_limits(
    path: &Path,
    info: &source::dump::TaskInfo,
    limits: &Limits,
) -> Result<(), Failure> {
    match limits.exceeded(info.n, info.label_names.len(), Some(info.layers.len())) {
        None => Ok(()),
        Some(e) => Err(Failure::new(
            FailureKind::Limit,
            format!(
                "{}: task '{}' has {} {}, more than limits.{} = {}",
                path.display(),
                info.name,
                e.value,
                e.what,
                e.key,
                e.limit
            ),
        )),
    }
}

/// The core stage of every task of one checkpoint, compared with the
/// baseline and the previous checkpoint.
fn core_of_sources(
    settings: &CoreSettings<'_>,
    input: &CoreInput<'_>,
    sources: &[&dyn Activations],
    new_memory: &mut BTreeMap<String, TaskMemory>,
) -> Result<CoreReports, Failure> {
    let (cfg, path) = (settings.cfg, &input.candidate.path);
    for source in sources {
        check_source_limits(path, source.info(), &settings.limits)?;
    }
    let partition = partition_of(cfg);
    // Sharded: the layers of each task this replica owns (a task with none
    // is skipped). The pair list comes from the run's `layers` when given,
    // so a layer missing from the dump fails on the replica that owns it.
    let owned = settings
        .shard
        .map(|shard| owned_layers(shard, &layer_pairs(cfg.layers.as_deref(), sources)));
    let mut out = CoreReports::default();
    for &source in sources {
        let task = source.info().name.clone();
        let task_layers = match &owned {
            None => cfg.layers.clone(),
            Some(owned) => match owned.get(&task) {
                Some(l) => Some(l.clone()),
                None => continue,
            },
        };
        let opts = analysis_options(cfg, &task, task_layers, true);
        let empty = TaskMemory::new();
        let mem = input.memory.get(&task).unwrap_or(&empty);
        let (report, next) =
            analyse_with(source, &opts, mem, partition, &|_| {}).map_err(|e| match e {
                analysis::AnalysisError::Dump(d) => Failure::from(d),
                other => Failure::new(
                    FailureKind::ConfigMismatch,
                    format!("{}: {other}", path.display()),
                ),
            })?;
        new_memory.insert(task.clone(), next);
        for l in &report.layers {
            let key = (task.clone(), l.layer);
            let mut l = l.clone();
            l.label_names = report.labels.clone();
            for (reference, cmp) in [
                (input.baseline, &mut out.baseline_cmp),
                (input.previous, &mut out.previous_cmp),
            ] {
                if let Some(c) = compare_with(reference, &key, &l, path)? {
                    cmp.insert(key.clone(), c);
                }
            }
            out.layers.insert(key, l);
        }
        out.reports.push(report);
    }
    Ok(out)
}

/// Layer `l` (of `key`) compared with the same layer of `reference`;
/// `None` when the reference lacks it, a `labels` failure when the two
/// cannot be compared.
fn compare_with(
    reference: Option<&Reference>,
    key: &(String, usize),
    l: &LayerReport,
    path: &Path,
) -> Result<Option<LayerComparison>, Failure> {
    let Some((step, r)) = reference.and_then(|r| r.layers.get(key).map(|l| (r.step, l))) else {
        return Ok(None);
    };
    compare(r, l).map(Some).map_err(|e| {
        Failure::new(
            FailureKind::Labels,
            format!(
                "{}: task '{}' layer {}: cannot compare with step {}: {e}",
                path.display(),
                key.0,
                l.layer,
                step
            ),
        )
    })
}

/// Every (task, layer) pair of a checkpoint: the run's `layers` when given,
/// else each task's own.
fn layer_pairs(layers: Option<&[usize]>, sources: &[&dyn Activations]) -> Vec<(String, usize)> {
    let mut pairs = Vec::new();
    for source in sources {
        let info = source.info();
        let task_layers = layers.map_or_else(|| info.layers.clone(), <[usize]>::to_vec);
        pairs.extend(task_layers.into_iter().map(|l| (info.name.clone(), l)));
    }
    pairs
}

/// The layers of each task that `shard` owns among `pairs`; a task it owns
/// none of is absent.
fn owned_layers(shard: Shard, pairs: &[(String, usize)]) -> BTreeMap<String, Vec<usize>> {
    let mut by_task: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (task, layer) in shard.select(pairs) {
        by_task.entry(task).or_default().push(layer);
    }
    by_task
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_own_disjoint_layers_that_cover_every_pair() {
        let pairs: Vec<(String, usize)> = ["deprel", "upos"]
            .into_iter()
            .flat_map(|t| (0..5).map(move |l| (t.to_owned(), l)))
            .collect();
        let a = owned_layers(Shard::new(0, 2).unwrap(), &pairs);
        let b = owned_layers(Shard::new(1, 2).unwrap(), &pairs);
        let mut union: Vec<(String, usize)> = a
            .iter()
            .chain(&b)
            .flat_map(|(t, ls)| ls.iter().map(move |&l| (t.clone(), l)))
            .collect();
        let total = union.len();
        union.sort();
        union.dedup();
        assert_eq!(union.len(), total, "a pair owned twice: {a:?} {b:?}");
        assert_eq!(union, pairs);
        // One shard of one: everything, in order.
        let all = owned_layers(Shard::new(0, 1).unwrap(), &pairs);
        assert_eq!(all["upos"], [0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_task_over_a_limit_fails_with_kind_limit_naming_the_cap() {
        let info = source::dump::TaskInfo {
            name: "upos".into(),
            label_names: vec!["NOUN".into(), "VERB".into()],
            labels: Vec::new(),
            split: Vec::new(),
            layers: vec![0, 1, 2],
            n: 500,
            dim: 8,
        };
        let mut limits = Limits::default();
        assert!(check_source_limits(Path::new("/r/s.safetensors"), &info, &limits).is_ok());
        limits.max_items_per_task = 100;
        let f = check_source_limits(Path::new("/r/s.safetensors"), &info, &limits).unwrap_err();
        assert_eq!(f.kind, FailureKind::Limit);
        assert!(
            f.message
                .starts_with("/r/s.safetensors: task 'upos' has 500 items"),
            "{}",
            f.message
        );
        assert!(
            f.message.ends_with("limits.max_items_per_task = 100"),
            "{}",
            f.message
        );
    }
}
