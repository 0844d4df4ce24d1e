//! Where results become stored rows, view updates and metric values, in
//! that order (the store first: a scrape never sees what the store does
//! not hold). The jobs call the store writers on their blocking threads
//! ([`store_core`], [`store_stage`], [`record_not_run`]); the run loop
//! takes what they return ([`finish`], [`apply_late`]): the run's
//! `RunView` folds the checkpoint or the late layers in and its snapshot
//! is published.
//!
//! What it does not do: compute snapshots (the `view` crate's `RunView`
//! does), analyse, or schedule (`run_loop.rs` decides what runs next; the
//! late stages' slots are `late_jobs.rs`'s).

use std::collections::BTreeMap;
use std::sync::Arc;

use analysis::Stage;
use geometry::measures::{LayerReport, compare};
use store::{
    CheckpointStatus, LayerRecord, NewCheckpoint, RunId, StageOutcome, StageRecord, Store,
};
use tracing::{debug, info, warn};
use view::Reference;

use super::core_job::{Analysed, CoreResult, Outcome};
use super::failure::{Failure, FailureKind};
use super::late_jobs::{LateEvent, LateInput};
use super::options::{needs, stage_applies};
use super::run_loop::RunState;
use super::{Shared, mtime_ns, unix_now};
use crate::config::RunConfig;
use crate::watch::Candidate;

/// One checkpoint's analysis, as the store records it.
pub(super) struct CheckpointAnalysis<'a> {
    /// The run's id.
    pub(super) run: RunId,
    /// The run's name (for the log).
    pub(super) run_name: &'a str,
    /// The checkpoint.
    pub(super) candidate: &'a Candidate,
    /// Whether it becomes the run's baseline.
    pub(super) is_baseline: bool,
    /// When the analysis started, seconds since the Unix epoch.
    pub(super) started_unix: f64,
    /// When it finished.
    pub(super) finished_unix: f64,
    /// How long it took.
    pub(super) seconds: f64,
}

/// Writes a core stage's outcome to the store: the checkpoint and its
/// layers, or the failure. A result the store cannot take is a `store`
/// failure (the checkpoint is queued again).
pub(super) fn store_core(
    store: &mut Store,
    a: &CheckpointAnalysis<'_>,
    result: Result<CoreResult, Failure>,
) -> Result<Analysed, Failure> {
    match result {
        Ok(r) => store_done(store, a, r),
        Err(f) => {
            let rec = NewCheckpoint {
                step: a.candidate.step,
                path: &a.candidate.path,
                size: a.candidate.size,
                mtime_ns: mtime_ns(a.candidate.mtime),
                status: CheckpointStatus::Failed,
                error_kind: Some(f.kind.as_str()),
                error: Some(&f.message),
                started_unix: a.started_unix,
                finished_unix: a.finished_unix,
                seconds: a.seconds,
                task_meta_json: None,
                layers: &[],
                baseline: false,
            };
            if let Err(e) = store.record_checkpoint(a.run, &rec) {
                warn!(run = %a.run_name, error = %e, "cannot record the failure");
            }
            Err(f)
        }
    }
}

/// Writes an analysed checkpoint: its layer rows (compared with the
/// references) and per-task metadata.
fn store_done(
    store: &mut Store,
    a: &CheckpointAnalysis<'_>,
    r: CoreResult,
) -> Result<Analysed, Failure> {
    let CoreResult { core, source } = r;
    let mut layers = core.layers;
    // The store keeps centroids as f32: the reference kept in memory holds
    // the same values, so a restarted daemon (which reads them back)
    // exports what an uninterrupted one does.
    for l in layers.values_mut() {
        for v in l.centroids.iter_mut().flatten().flatten() {
            *v = f64::from(*v as f32);
        }
    }
    let records: Vec<LayerRecord> = layers
        .iter()
        .map(|(key, l)| {
            view::record::encode(
                &key.0,
                l,
                core.baseline_cmp.get(key),
                core.previous_cmp.get(key),
            )
        })
        .collect();
    let meta: BTreeMap<&str, serde_json::Value> = core
        .reports
        .iter()
        .map(|r| {
            (
                r.task.as_str(),
                serde_json::json!({ "labels": r.labels, "splits": r.splits, "dim": r.dim, "file": r.file }),
            )
        })
        .collect();
    let meta = serde_json::to_string(&meta).unwrap_or_default();
    let rec = NewCheckpoint {
        step: a.candidate.step,
        path: &a.candidate.path,
        size: a.candidate.size,
        mtime_ns: mtime_ns(a.candidate.mtime),
        status: CheckpointStatus::Done,
        error_kind: None,
        error: None,
        started_unix: a.started_unix,
        finished_unix: a.finished_unix,
        seconds: a.seconds,
        task_meta_json: Some(&meta),
        layers: &records,
        baseline: a.is_baseline,
    };
    match store.record_checkpoint(a.run, &rec) {
        Ok(id) => Ok(Analysed {
            layers: Arc::new(layers),
            source: Some(Arc::new(source)),
            baseline_cmp: core.baseline_cmp,
            previous_cmp: core.previous_cmp,
            checkpoint_id: id,
            is_baseline: a.is_baseline,
        }),
        Err(e) => Err(Failure::new(FailureKind::Store, e.to_string())),
    }
}

/// The references a late stage's layers are compared with.
pub(super) struct Compared<'a> {
    /// The run's baseline (`None` for the baseline itself).
    pub(super) baseline: Option<&'a Reference>,
    /// The stored checkpoint before this one.
    pub(super) previous: Option<&'a Reference>,
}

/// Writes a late stage's finished layers (compared with the references)
/// and its outcome, in one transaction; `Ok(false)` when the stored row is
/// no longer the version the stage analysed (nothing written).
pub(super) fn store_stage(
    shared: &Shared,
    input: &LateInput,
    refs: &Compared<'_>,
    done: &[((String, usize), LayerReport)],
    rec: &StageRecord<'_>,
) -> Result<bool, store::StoreError> {
    let step = input.candidate.step;
    let records: Vec<LayerRecord> = done
        .iter()
        .map(|((task, _), l)| {
            let key = (task.clone(), l.layer);
            let b = refs
                .baseline
                .filter(|b| b.step != step)
                .and_then(|b| b.layers.get(&key))
                .and_then(|b| compare(b, l).ok());
            let p = refs
                .previous
                .and_then(|p| p.layers.get(&key))
                .and_then(|p| compare(p, l).ok());
            view::record::encode(task, l, b.as_ref(), p.as_ref())
        })
        .collect();
    let mut store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
    store.record_stage(input.checkpoint_id, &records, rec)
}

/// Records `outcome` for every late stage of `input` that applies and is
/// not done (a checkpoint skipped for a newer one, or one that cannot be
/// read again), counts it and logs it.
pub(super) fn record_not_run(
    shared: &Shared,
    cfg: &RunConfig,
    input: &LateInput,
    outcome: StageOutcome,
    detail: &str,
) {
    let mut store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
    for stage in Stage::LATE {
        if !stage_applies(cfg, stage) || !input.reports.values().any(|r| needs(stage, r)) {
            continue;
        }
        shared
            .metrics
            .stage_outcome(&cfg.name, stage.as_str(), outcome.as_str(), None);
        info!(run = %cfg.name, step = input.candidate.step, stage = stage.as_str(), outcome = outcome.as_str(), seconds = 0.0, layers_done = 0, reason = detail, "stage finished");
        let rec = StageRecord {
            stage: stage.as_str(),
            outcome,
            seconds: 0.0,
            layers_done: 0,
            layers: input.reports.len(),
            finished_unix: unix_now(),
            detail: Some(detail),
            version: input.version(),
        };
        match store.record_stage(input.checkpoint_id, &[], &rec) {
            Ok(true) => {}
            Ok(false) => {
                debug!(run = %cfg.name, step = input.candidate.step, "stage outcome not recorded: the stored row is a newer version");
            }
            Err(e) => warn!(run = %cfg.name, error = %e, "cannot record a stage outcome"),
        }
    }
}

/// Records an older checkpoint's late stages as skipped (a newer one
/// waits).
pub(super) fn skip_late(shared: &Shared, cfg: &RunConfig, old: LateInput) {
    info!(run = %cfg.name, step = old.candidate.step, "late stages skipped: a newer checkpoint waits");
    record_not_run(
        shared,
        cfg,
        &old,
        StageOutcome::Skipped,
        "a newer checkpoint was waiting",
    );
}

/// Takes a core job's outcome (in the run loop): the memory, and a stored
/// checkpoint into the view and its late stages into the waiting slots,
/// then publishes; a failure is counted, and one the store could not take
/// is queued again.
pub(super) fn finish(shared: &Shared, state: &mut RunState, o: Outcome) {
    let name = state.cfg.name.clone();
    state.memory = o.memory;
    match o.result {
        Ok(a) => take_analysed(shared, state, o.candidate, o.seconds, a),
        Err(f) if f.kind == FailureKind::Changed => {
            info!(run = %name, path = %o.candidate.path.display(), reason = %f.message, "checkpoint changed while being read; nothing stored, its new version is analysed once complete");
        }
        Err(f) if f.kind == FailureKind::Store => {
            warn!(run = %name, path = %o.candidate.path.display(), kind = f.kind.as_str(), error = %f.message, "checkpoint failed");
            shared.metrics.checkpoint_failed(&name, f.kind.as_str());
            info!(run = %name, path = %o.candidate.path.display(), "checkpoint not stored; queued again after the next scan");
            state.retry.push(o.candidate);
        }
        Err(f) => {
            // A failed analysis leaves the warm memory usable (it only
            // speeds up solves).
            warn!(run = %name, path = %o.candidate.path.display(), kind = f.kind.as_str(), error = %f.message, "checkpoint failed");
            shared.metrics.checkpoint_failed(&name, f.kind.as_str());
        }
    }
}

/// A stored checkpoint: its late stages wait (an older waiting one is
/// skipped), the view takes it and the snapshot is published.
fn take_analysed(
    shared: &Shared,
    state: &mut RunState,
    candidate: Candidate,
    seconds: f64,
    a: Analysed,
) {
    let name = state.cfg.name.clone();
    shared.metrics.checkpoint_analyzed(&name, seconds);
    let reference = Reference {
        step: candidate.step,
        layers: a.layers.clone(),
    };
    if a.is_baseline {
        state.view.set_baseline(reference.clone());
    }
    if !state.cfg.late_stage_budget.is_zero() {
        let input = LateInput {
            candidate: candidate.clone(),
            checkpoint_id: a.checkpoint_id,
            source: a.source.clone(),
            reports: a.layers.clone(),
            is_baseline: a.is_baseline,
            run: state.id,
        };
        if let Some(old) = state.late.offer(input) {
            skip_late(shared, &state.cfg, old);
        }
        // Counted before the core values are published, so a scrape never
        // sees them with nothing pending (a job may also be running: the
        // loop sets the exact count next).
        shared
            .metrics
            .set_late_pending(&name, state.late.waiting() + 1);
    }
    if state
        .view
        .take_checkpoint(reference, mtime_ns(candidate.mtime))
    {
        if let Some(snap) = state.view.snapshot() {
            shared.metrics.publish(snap);
        }
    } else {
        info!(run = %name, step = candidate.step, "late checkpoint stored in its place; latest values unchanged");
    }
    // Logged once its values are on /metrics, so that whoever reads the
    // log and then scrapes sees them.
    info!(
        run = %name,
        step = candidate.step,
        path = %candidate.path.display(),
        seconds = format!("{:.3}", seconds),
        checkpoint = a.checkpoint_id,
        compared_to_baseline = a.baseline_cmp.len(),
        compared_to_previous = a.previous_cmp.len(),
        "checkpoint analysed"
    );
    let (core, done) = (Stage::Core.as_str(), StageOutcome::Done.as_str());
    shared
        .metrics
        .stage_outcome(&name, core, done, Some(seconds));
    info!(run = %name, step = candidate.step, stage = core, outcome = done, seconds = format!("{:.3}", seconds), layers_done = a.layers.len(), layers = a.layers.len(), "stage finished");
}

/// Takes a late job's finished layers (in the run loop): the late view,
/// the baseline and latest references, best-so-far values, and publishes
/// the newest checkpoint again with them.
pub(super) fn apply_late(shared: &Shared, state: &mut RunState, ev: LateEvent) {
    if ev.layers.is_empty() {
        return;
    }
    state
        .view
        .take_late(ev.step, ev.layers.into_iter().collect());
    if let Some(snap) = state.view.snapshot() {
        shared.metrics.publish(snap);
    }
}
