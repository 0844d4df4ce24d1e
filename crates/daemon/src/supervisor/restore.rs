//! Restoring a run from the store at start (and when a reload starts or
//! restarts it): its id, its baseline (marking one a crash left unmarked),
//! the view rebuilt from every stored checkpoint in step order, the late
//! stages a stop cut short (or that never started) for the baseline and the
//! newest checkpoint, and the stored values published at once. Also the
//! one read of a reference checkpoint the jobs need
//! ([`previous_reference`]).
//!
//! What it does not do: analyse, or start the run's loop (`run_loop.rs`
//! does, with the [`RunState`] returned here).

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use analysis::Stage;
use store::{CheckpointRow, CheckpointStatus, RunId, StageOutcome, Store};
use tracing::{info, warn};
use view::{Layers, Reference, RunView, load_reference};

use super::late_jobs::{LateInput, LateQueue};
use super::options::{needs, stage_applies};
use super::run_loop::RunState;
use super::{DaemonError, Shared, same_path};
use crate::config::{Baseline, RunConfig};
use crate::watch::Candidate;

/// Restores a run from the store: its id, baseline, latest checkpoint, and
/// publishes the latest values at once.
pub(super) fn restore(shared: &Shared, cfg: &RunConfig) -> Result<RunState, DaemonError> {
    let mut store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
    let config_json = serde_json::json!({
        "folder": cfg.folder,
        "mode": format!("{:?}", cfg.mode),
        "tasks": cfg.tasks,
        "layers": cfg.layers,
        "shard": shared.shard.map(|s| s.to_string()),
    })
    .to_string();
    let id = store.upsert_run(&cfg.name, &cfg.folder, &config_json)?;
    let baseline_row = match store.baseline(id)? {
        Some(row) => Some(row),
        None => mark_unmarked_baseline(&mut store, cfg, id)?,
    };
    let load = |row: &CheckpointRow| load_reference(&store, &cfg.name, row);
    let mut view = RunView::new(&cfg.name, cfg.export_label_pairs);
    let (done, failed) = store.counts(id)?;
    // Every stored checkpoint, in step order, as the daemon took them: the
    // best-so-far distances, the late view, the newest and the one before.
    // Each is read once; the baseline is one of them (only the newest
    // snapshot is published, so it needs the baseline by the end only).
    let mut latest_row = None;
    for row in store.checkpoints(id)? {
        if row.status == CheckpointStatus::Done {
            let reference = load(&row)?;
            if baseline_row.as_ref().is_some_and(|b| b.id == row.id) {
                view.set_baseline(reference.clone());
            }
            view.take_checkpoint(reference, row.mtime_ns);
            if view.latest().is_some_and(|l| l.step == row.step) {
                latest_row = Some(row);
            }
        }
    }
    let baseline = view.baseline().cloned();
    let latest = view.latest().cloned();
    // Late stages a stop cut short (or that never started) are resumed:
    // the baseline's, and the newest checkpoint's.
    let pending = |row: &CheckpointRow, r: &Reference, is_baseline: bool| {
        resumed_late(&store, cfg, id, row, r, is_baseline)
    };
    let late_baseline = match (&baseline, store.baseline(id)?) {
        (Some(b), Some(row)) => pending(&row, b, true),
        _ => None,
    };
    let late_pending = match (&latest, &latest_row) {
        (Some(l), Some(row))
            if late_baseline
                .as_ref()
                .is_none_or(|b| b.checkpoint_id != row.id) =>
        {
            pending(row, l, false)
        }
        _ => None,
    };
    for p in [&late_baseline, &late_pending].into_iter().flatten() {
        info!(run = %cfg.name, step = p.candidate.step, "late stages not finished before the last stop; resuming them");
    }
    info!(run = %cfg.name, done, failed, baseline = ?baseline.as_ref().map(|b| b.step), latest = ?latest.as_ref().map(|l| l.step), "run restored");
    let late = LateQueue::new(late_baseline, late_pending);
    // Before the restored values are published: a scrape never sees them
    // with the resumed late stages unaccounted for.
    shared.metrics.set_late_pending(&cfg.name, late.waiting());
    if let Some(snap) = view.snapshot() {
        shared.metrics.publish(snap);
    }
    Ok(RunState {
        cfg: cfg.clone(),
        id,
        view,
        memory: BTreeMap::new(),
        queue: Default::default(),
        retry: Vec::new(),
        late_memory: BTreeMap::new(),
        late,
    })
}

/// A crash between storing the baseline checkpoint and marking it (two
/// transactions) leaves it unmarked: finds it and marks it now, so the
/// baseline never moves to a later checkpoint.
fn mark_unmarked_baseline(
    store: &mut Store,
    cfg: &RunConfig,
    id: RunId,
) -> Result<Option<CheckpointRow>, DaemonError> {
    let rows = store.checkpoints(id)?;
    let done = rows.iter().filter(|r| r.status == CheckpointStatus::Done);
    let found = match &cfg.baseline {
        Baseline::First => done.min_by(|a, b| {
            a.finished_unix
                .total_cmp(&b.finished_unix)
                .then(a.id.cmp(&b.id))
        }),
        Baseline::Step(s) => done.filter(|r| r.step == *s).min_by_key(|r| r.id),
        Baseline::Path(p) => done.filter(|r| same_path(&r.path, p)).min_by_key(|r| r.id),
    };
    let Some(r) = found else {
        return Ok(None);
    };
    warn!(run = %cfg.name, step = r.step, path = %r.path.display(), "baseline was stored but not marked; marking it");
    let r = r.clone();
    store.set_baseline(id, r.id)?;
    Ok(Some(r))
}

/// The late stages of stored checkpoint `row` (reference `r`) to resume,
/// if any stage is open; `None` without late stages, or when the store
/// cannot say.
fn resumed_late(
    store: &Store,
    cfg: &RunConfig,
    run: RunId,
    row: &CheckpointRow,
    r: &Reference,
    is_baseline: bool,
) -> Option<LateInput> {
    if cfg.late_stage_budget.is_zero() {
        return None;
    }
    let stored: Vec<(Option<Stage>, StageOutcome)> = store
        .stage_outcomes(row.id)
        .ok()?
        .into_iter()
        .map(|(stage, outcome)| (Stage::parse(&stage), outcome))
        .collect();
    late_stages_open(cfg, &stored, &r.layers).then(|| LateInput {
        candidate: Candidate {
            step: row.step,
            path: row.path.clone(),
            size: row.size,
            mtime: UNIX_EPOCH + Duration::from_nanos(row.mtime_ns.max(0) as u64),
        },
        checkpoint_id: row.id,
        source: None,
        reports: r.layers.clone(),
        is_baseline,
        run,
    })
}

/// Whether a stored checkpoint with `layers` still has a late stage to
/// run: one that applies to the run, is not finished (no stored outcome
/// but `deferred`) and some layer lacks. A checkpoint with no stored stage
/// at all counts only when some layer is not clustered (reports stored
/// before stages existed hold everything).
fn late_stages_open(
    cfg: &RunConfig,
    stored: &[(Option<Stage>, StageOutcome)],
    layers: &Layers,
) -> bool {
    let finished = |st: Stage| {
        stored
            .iter()
            .any(|&(s, o)| s == Some(st) && o != StageOutcome::Deferred)
    };
    Stage::LATE.into_iter().any(|st| {
        stage_applies(cfg, st)
            && !finished(st)
            && layers.values().any(|l| needs(st, l))
            && (!stored.is_empty() || layers.values().any(|l| !l.clustered))
    })
}

/// The stored `done` checkpoint before `step`, as a reference; `None`
/// when there is none or it cannot be read.
pub(super) fn previous_reference(
    shared: &Shared,
    run_name: &str,
    run: RunId,
    step: u64,
) -> Option<Reference> {
    let store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
    let row = store.previous_done(run, step).ok()??;
    load_reference(&store, run_name, &row).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Classifier;
    use crate::supervisor::options::tests::core_report;

    fn layers(clustered: bool) -> Layers {
        let mut r = core_report();
        r.clustered = clustered;
        [(("upos".to_owned(), 0), r)].into_iter().collect()
    }

    fn cfg() -> RunConfig {
        let mut cfg = RunConfig::new("r", "/runs/r");
        cfg.train_test_similarity = false;
        cfg.classifier = Classifier::None;
        cfg
    }

    #[test]
    fn a_core_only_checkpoint_without_stage_rows_has_its_late_stages_open() {
        assert!(late_stages_open(&cfg(), &[], &layers(false)));
        // Stored before stages existed: everything is in the report.
        assert!(!late_stages_open(&cfg(), &[], &layers(true)));
    }

    #[test]
    fn a_deferred_stage_is_open_and_any_other_outcome_finishes_it() {
        let clusters = Some(Stage::Clusters);
        let open = |o| late_stages_open(&cfg(), &[(clusters, o)], &layers(false));
        assert!(open(StageOutcome::Deferred));
        for o in [
            StageOutcome::Done,
            StageOutcome::Abandoned,
            StageOutcome::Skipped,
            StageOutcome::Failed,
        ] {
            assert!(!open(o), "{o}");
        }
    }

    #[test]
    fn only_stages_that_apply_and_that_a_layer_lacks_are_open() {
        let mut cfg = cfg();
        let done = [(Some(Stage::Clusters), StageOutcome::Done)];
        assert!(!late_stages_open(&cfg, &done, &layers(false)));
        // The classifier applies now and no layer has its accuracy.
        cfg.classifier = Classifier::Mlp;
        assert!(late_stages_open(&cfg, &done, &layers(false)));
        // A stage name this daemon does not know finishes nothing.
        let unknown = [(None, StageOutcome::Done)];
        assert!(late_stages_open(&cfg, &unknown, &layers(false)));
        // Clustered layers: `clusters` is not lacking, but the classifier is.
        assert!(late_stages_open(&cfg, &unknown, &layers(true)));
        cfg.classifier = Classifier::None;
        assert!(!late_stages_open(&cfg, &unknown, &layers(true)));
    }
}
