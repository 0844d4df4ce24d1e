//! The late stages (`test_hulls`, `clusters`, `test_clusters`,
//! `classifier`): which checkpoint's run next ([`LateQueue`]: the
//! baseline's first, else the newest waiting one, an older one skipped when
//! a newer one arrives), and the late job itself ([`late_job`]): each stage
//! in order on the late pool, pausing at the gate while any core stage
//! runs, within the run's budget of working time. Each stage's finished
//! layers are stored with its outcome (one transaction) and only then sent
//! to the run loop as a [`LateEvent`]; a stage the budget or a stop cuts
//! short keeps the layers it finished (`abandoned` or `deferred`). How a
//! stage ended is decided by one pure function ([`verdict`]).
//!
//! What it does not do: touch the run's state (the run loop applies the
//! events, `publish::apply_late`), or run the core stage.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use analysis::{LayerStage, Stage, TaskMemory, analyse_stage};
use geometry::measures::LayerReport;
use store::{RunId, StageOutcome, StageRecord};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use view::{Layers, Reference};

use super::activations::CheckpointSource;
use super::failure::{Failure, FailureKind};
use super::gate::WorkClock;
use super::options::{analysis_options, needs, partition_of, stage_applies};
use super::publish::{self, Compared, record_not_run};
use super::restore::previous_reference;
use super::{Shared, mtime_ns, unix_now};
use crate::config::RunConfig;
use crate::watch::Candidate;

/// The detail stored when a checkpoint changed while its late stages read
/// it.
const CHANGED_NOTE: &str = "the checkpoint changed while being read (overwritten in place or truncated); its new version is analysed once complete";

/// A checkpoint whose late stages are to run.
pub(super) struct LateInput {
    /// The checkpoint.
    pub(super) candidate: Candidate,
    /// Its row in the store.
    pub(super) checkpoint_id: i64,
    /// The activations kept from the core stage; `None` (after a restart):
    /// read again.
    pub(super) source: Option<Arc<CheckpointSource>>,
    /// Its layer reports so far.
    pub(super) reports: Arc<Layers>,
    /// Whether it is the run's baseline.
    pub(super) is_baseline: bool,
    /// The run's id.
    pub(super) run: RunId,
}

impl LateInput {
    /// Size and mtime (ns) of the version analysed, as stored.
    pub(super) fn version(&self) -> (u64, i64) {
        (self.candidate.size, mtime_ns(self.candidate.mtime))
    }
}

/// The checkpoints of one run whose late stages wait: the baseline's, and
/// the newest other one's.
#[derive(Default)]
pub(super) struct LateQueue {
    baseline: Option<LateInput>,
    pending: Option<LateInput>,
}

impl LateQueue {
    /// The slots as restored from the store.
    pub(super) fn new(baseline: Option<LateInput>, pending: Option<LateInput>) -> LateQueue {
        LateQueue { baseline, pending }
    }

    /// Checkpoints whose late stages wait (not counting a running job).
    pub(super) fn waiting(&self) -> i64 {
        i64::from(self.baseline.is_some()) + i64::from(self.pending.is_some())
    }

    /// The next checkpoint to run: the baseline's first.
    pub(super) fn take_next(&mut self) -> Option<LateInput> {
        self.baseline.take().or_else(|| self.pending.take())
    }

    /// A newly stored checkpoint's late stages: the baseline's always wait;
    /// another's wait unless a newer one does. Returns the input whose late
    /// stages are skipped (the older of the two), if any.
    pub(super) fn offer(&mut self, input: LateInput) -> Option<LateInput> {
        if input.is_baseline {
            self.baseline = Some(input);
            None
        } else if self
            .pending
            .as_ref()
            .is_none_or(|p| p.candidate.step <= input.candidate.step)
        {
            self.pending.replace(input)
        } else {
            Some(input)
        }
    }
}

/// A running late job and its stop flag.
pub(super) struct RunningLate {
    /// The job; it returns the late memory for the next checkpoint.
    pub(super) handle: JoinHandle<BTreeMap<String, TaskMemory>>,
    /// Asks it to stop at its next step.
    pub(super) stop: Arc<AtomicBool>,
}

/// What a late job reports to its run loop after each stage.
pub(super) struct LateEvent {
    /// The checkpoint's step.
    pub(super) step: u64,
    /// The layers the stage finished (stored already).
    pub(super) layers: Vec<((String, usize), LayerReport)>,
}

/// One late job's work: the checkpoint, the late memory (threaded from job
/// to job) and the baseline to compare with.
pub(super) struct LateWork {
    /// The checkpoint.
    pub(super) input: LateInput,
    /// Warm starts from the previous late job.
    pub(super) memory: BTreeMap<String, TaskMemory>,
    /// The run's baseline (`None` for the baseline itself).
    pub(super) baseline: Option<Reference>,
}

/// What one late stage did, before it is judged.
#[derive(Default)]
struct StageRun {
    /// The layers it finished.
    done: Vec<((String, usize), LayerReport)>,
    /// Layers it was stopped on.
    interrupted: usize,
    /// Why it could not run.
    failure: Option<String>,
}

/// How a late stage ended: its outcome, whether it had nothing to do (then
/// stored as `done` with no layer, neither counted nor logged), and the
/// stored detail.
#[derive(Debug, PartialEq)]
pub(super) struct Verdict {
    /// The stored and counted outcome.
    pub(super) outcome: StageOutcome,
    /// No layer needed it (e.g. no test split).
    pub(super) not_applicable: bool,
    /// Why it was not done, when it was not.
    pub(super) detail: Option<String>,
}

/// How a late stage ended, from what it did: the file changed (`skipped`,
/// its results discarded), it failed, finished every layer (`done`), or
/// was stopped on some by a stop (`deferred`) or by the `budget`
/// (`abandoned`).
pub(super) fn verdict(
    changed: bool,
    failure: Option<&str>,
    (done, interrupted): (usize, usize),
    stopped: bool,
    budget: Duration,
) -> Verdict {
    let failure = failure.filter(|_| !changed);
    let interrupted = if changed { 0 } else { interrupted };
    let outcome = if changed {
        StageOutcome::Skipped
    } else if failure.is_some() {
        StageOutcome::Failed
    } else if interrupted == 0 {
        StageOutcome::Done
    } else if stopped {
        StageOutcome::Deferred
    } else {
        StageOutcome::Abandoned
    };
    // Nothing applied (e.g. no test split): recorded as done with no layer,
    // so a restart does not look for it again.
    let not_applicable = done == 0 && interrupted == 0 && failure.is_none() && !changed;
    let detail = match (failure, outcome) {
        _ if changed => Some(CHANGED_NOTE.to_owned()),
        (Some(m), _) => Some(m.to_owned()),
        (None, StageOutcome::Abandoned) => Some(format!(
            "late-stage budget of {} s ran out",
            budget.as_secs_f64()
        )),
        (None, StageOutcome::Deferred) => {
            Some("stopped (shutdown or reload); resumed at the next start".to_owned())
        }
        _ if not_applicable => Some("not applicable to these layers".to_owned()),
        _ => None,
    };
    Verdict {
        outcome,
        not_applicable,
        detail,
    }
}

/// The log's name for what a stage did to one layer.
fn layer_outcome(o: &LayerStage) -> &'static str {
    match o {
        LayerStage::Done(_) => "done",
        LayerStage::Interrupted => "interrupted",
        LayerStage::NotApplicable => "not_applicable",
    }
}

/// The log line of a late stage that ran: INFO when done, else WARN with
/// the reason.
fn log_finished(run: &str, step: u64, rec: &StageRecord<'_>) {
    let (stage, outcome) = (rec.stage, rec.outcome.as_str());
    let seconds = format!("{:.3}", rec.seconds);
    if rec.outcome == StageOutcome::Done {
        info!(
            run,
            step,
            stage,
            outcome,
            seconds,
            layers_done = rec.layers_done,
            layers = rec.layers,
            "stage finished"
        );
    } else {
        warn!(
            run,
            step,
            stage,
            outcome,
            seconds,
            layers_done = rec.layers_done,
            layers = rec.layers,
            reason = rec.detail.unwrap_or(""),
            "stage finished"
        );
    }
}

/// Whether the late job goes on after a stage.
#[derive(PartialEq)]
enum Flow {
    Continue,
    /// The file changed or its row was replaced: later stages would read
    /// the same changed file or write to a row that is not theirs.
    Stop,
}

/// One late job: the run, the checkpoint and what it is compared with.
struct LateRun<'a> {
    shared: &'a Shared,
    cfg: &'a RunConfig,
    input: &'a LateInput,
    stop: &'a AtomicBool,
    /// The job's working time, against `cfg.late_stage_budget`.
    clock: WorkClock,
    /// Warm starts from the previous late job.
    memory: &'a BTreeMap<String, TaskMemory>,
    refs: Compared<'a>,
}

/// Runs the late stages of one checkpoint in order (blocking; numeric work
/// on the late pool, paused whenever a core stage runs). Returns the late
/// memory for the next checkpoint.
pub(super) fn late_job(
    shared: &Shared,
    cfg: &RunConfig,
    work: LateWork,
    stop: &AtomicBool,
    tx: &mpsc::UnboundedSender<LateEvent>,
) -> BTreeMap<String, TaskMemory> {
    let LateWork {
        input,
        memory,
        baseline,
    } = work;
    let clock = shared.gate.clock();
    let previous = previous_reference(shared, &cfg.name, input.run, input.candidate.step);
    let job = LateRun {
        shared,
        cfg,
        input: &input,
        stop,
        clock,
        memory: &memory,
        refs: Compared {
            baseline: baseline.as_ref(),
            previous: previous.as_ref(),
        },
    };
    let loaded;
    let source: &CheckpointSource = match &input.source {
        Some(s) => s,
        None => match job.read_again() {
            Some(s) => {
                loaded = s;
                &loaded
            }
            None => return memory,
        },
    };
    if source.changed() {
        info!(run = %cfg.name, step = input.candidate.step, path = %input.candidate.path.display(), "checkpoint changed while being read; late stages not run, its new version is analysed once complete");
        record_not_run(shared, cfg, &input, StageOutcome::Skipped, CHANGED_NOTE);
        return memory;
    }
    let mut reports: Layers = (*input.reports).clone();
    let mut next: BTreeMap<String, TaskMemory> = BTreeMap::new();
    for stage in Stage::LATE {
        if !stage_applies(cfg, stage) {
            continue;
        }
        let wanted: Vec<(String, usize)> = reports
            .iter()
            .filter(|(_, r)| needs(stage, r))
            .map(|(k, _)| k.clone())
            .collect();
        if wanted.is_empty() {
            continue;
        }
        if job.stage(stage, &wanted, source, &mut reports, &mut next, tx) == Flow::Stop {
            // The warm memory of this job may come from changed bytes and
            // is dropped.
            return memory;
        }
    }
    let mut memory = memory;
    for (task, layers) in next {
        let m = memory.entry(task).or_default();
        for (l, lm) in layers {
            m.insert(l, lm);
        }
    }
    memory
}

impl LateRun<'_> {
    /// The job's working time so far.
    fn active(&self) -> Duration {
        self.clock.working(&self.shared.gate)
    }

    /// Reads the checkpoint again (after a restart); a checkpoint that
    /// cannot be read records its stages as `failed`.
    fn read_again(&self) -> Option<CheckpointSource> {
        let (shared, cfg, input) = (self.shared, self.cfg, self.input);
        let (run, step) = (cfg.name.as_str(), input.candidate.step);
        info!(run, step, path = %input.candidate.path.display(), "reading the checkpoint again for its late stages");
        let threads = shared.late_pool.current_num_threads();
        let probe = shared
            .probes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&cfg.name)
            .cloned();
        shared.gate.wait_idle(self.stop);
        let loaded = shared.late_pool.install(|| {
            CheckpointSource::load(cfg, probe.as_deref(), threads, &input.candidate, None)
        });
        match loaded {
            Ok(s) => Some(s),
            Err(f) => {
                warn!(run, step, path = %input.candidate.path.display(), kind = f.kind.as_str(), error = %f.message, "late stages cannot read the checkpoint");
                record_not_run(shared, cfg, input, StageOutcome::Failed, &f.message);
                None
            }
        }
    }

    /// Runs one stage on the `wanted` layers, stores what it finished with
    /// its outcome, sends the stored layers to the run loop and logs how it
    /// ended.
    fn stage(
        &self,
        stage: Stage,
        wanted: &[(String, usize)],
        source: &CheckpointSource,
        reports: &mut Layers,
        next: &mut BTreeMap<String, TaskMemory>,
        tx: &mpsc::UnboundedSender<LateEvent>,
    ) -> Flow {
        let (shared, name) = (self.shared, stage.as_str());
        let (run, step) = (self.cfg.name.as_str(), self.input.candidate.step);
        let budget = self.cfg.late_stage_budget;
        let clock = shared.gate.clock();
        let mut ran = if self.stop.load(Ordering::Relaxed) || self.active() >= budget {
            StageRun {
                interrupted: wanted.len(),
                ..StageRun::default()
            }
        } else {
            shared
                .metrics
                .stage_started(run, name, step, wanted.len(), unix_now());
            info!(
                run,
                step,
                stage = name,
                layers = wanted.len(),
                "stage started"
            );
            self.analyse(stage, &clock, wanted, reports, next, source)
        };
        let seconds = clock.working(&shared.gate).as_secs_f64();
        // The bytes read must be the version the core stage stored: a dump
        // overwritten in place or truncated meanwhile gives values that
        // belong to no one version, and nothing of them is stored.
        let changed = source.changed();
        if changed {
            info!(run, step, stage = name, path = %self.input.candidate.path.display(), "checkpoint changed while being read; stage results discarded, its new version is analysed once complete");
            ran = StageRun::default();
        }
        let v = verdict(
            changed,
            ran.failure.as_deref(),
            (ran.done.len(), ran.interrupted),
            self.stop.load(Ordering::Relaxed),
            budget,
        );
        // Store first, then tell the loop (which publishes).
        let rec = StageRecord {
            stage: name,
            outcome: v.outcome,
            seconds,
            layers_done: ran.done.len(),
            layers: wanted.len(),
            finished_unix: unix_now(),
            detail: v.detail.as_deref(),
            version: self.input.version(),
        };
        let stored = publish::store_stage(shared, self.input, &self.refs, &ran.done, &rec);
        shared.metrics.stage_ended(run, name);
        if v.not_applicable {
            if let Err(e) = stored {
                warn!(run, step, stage = name, error = %e, "cannot record a stage outcome");
            }
            return Flow::Continue;
        }
        shared
            .metrics
            .stage_outcome(run, name, v.outcome.as_str(), Some(seconds));
        // The row is gone or a newer version of the file (row ids can be
        // reused): these results belong to no stored checkpoint.
        let replaced = matches!(stored, Ok(false));
        match stored {
            Ok(true) => {
                for (key, r) in &ran.done {
                    reports.insert(key.clone(), r.clone());
                }
                let _ = tx.send(LateEvent {
                    step,
                    layers: ran.done,
                });
            }
            Ok(false) => {
                info!(run, step, stage = name, path = %self.input.candidate.path.display(), "stage results not stored: the checkpoint's stored row is now a newer version of the file");
            }
            Err(e) => {
                warn!(run, step, stage = name, error = %e, "stage results not stored; not published");
            }
        }
        log_finished(run, step, &rec);
        if changed || replaced {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    /// The analysis of one stage over the `wanted` layers of every task,
    /// on the late pool; asks the gate, the stop flag and the budget before
    /// every step, and logs each layer as it finishes.
    fn analyse(
        &self,
        stage: Stage,
        clock: &WorkClock,
        wanted: &[(String, usize)],
        reports: &Layers,
        next: &mut BTreeMap<String, TaskMemory>,
        source: &CheckpointSource,
    ) -> StageRun {
        let (shared, cfg, name) = (self.shared, self.cfg, stage.as_str());
        let (run, step) = (cfg.name.as_str(), self.input.candidate.step);
        let keep_going = || {
            shared.gate.wait_idle(self.stop);
            !self.stop.load(Ordering::Relaxed) && self.active() < cfg.late_stage_budget
        };
        let on_layer = |layer: usize, o: &LayerStage| {
            shared.metrics.stage_layer_done(run, name);
            info!(
                run,
                step,
                stage = name,
                layer,
                outcome = layer_outcome(o),
                working_seconds = format!("{:.3}", clock.working(&shared.gate).as_secs_f64()),
                "layer finished"
            );
        };
        let partition = partition_of(cfg);
        let res = source.with(|sources| {
            let mut out = Vec::new();
            for &src in sources {
                let task = src.info().name.clone();
                let task_reports: BTreeMap<usize, LayerReport> = wanted
                    .iter()
                    .filter(|(t, _)| *t == task)
                    .map(|(_, l)| (*l, reports[&(task.clone(), *l)].clone()))
                    .collect();
                if task_reports.is_empty() {
                    continue;
                }
                let opts = analysis_options(
                    cfg,
                    &task,
                    Some(task_reports.keys().copied().collect()),
                    false,
                );
                let empty = TaskMemory::new();
                let prev_mem = self.memory.get(&task).unwrap_or(&empty);
                let carried = next.entry(task.clone()).or_default();
                let r = shared.late_pool.install(|| {
                    analyse_stage(
                        src,
                        &opts,
                        stage,
                        &task_reports,
                        prev_mem,
                        carried,
                        partition,
                        &keep_going,
                        &on_layer,
                    )
                });
                match r {
                    Ok(m) => out.extend(m.into_iter().map(|(l, o)| ((task.clone(), l), o))),
                    Err(e) => {
                        return Err(Failure::new(
                            FailureKind::ConfigMismatch,
                            format!("{}: {e}", self.input.candidate.path.display()),
                        ));
                    }
                }
            }
            Ok(out)
        });
        let mut ran = StageRun::default();
        match res {
            Ok(results) => {
                for (key, o) in results {
                    match o {
                        LayerStage::Done(mut r) => {
                            r.label_names = reports[&key].label_names.clone();
                            r.layer = key.1;
                            ran.done.push((key, *r));
                        }
                        LayerStage::Interrupted => ran.interrupted += 1,
                        LayerStage::NotApplicable => {}
                    }
                }
            }
            Err(f) => ran.failure = Some(f.message),
        }
        ran
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::UNIX_EPOCH;

    use super::*;

    fn input(step: u64, is_baseline: bool) -> LateInput {
        LateInput {
            candidate: Candidate {
                step,
                path: PathBuf::from(format!("/runs/r/step-{step}.safetensors")),
                size: 10,
                mtime: UNIX_EPOCH + Duration::from_nanos(1_500),
            },
            checkpoint_id: step as i64,
            source: None,
            reports: Arc::new(Layers::new()),
            is_baseline,
            run: 1,
        }
    }

    fn step(i: Option<LateInput>) -> Option<u64> {
        i.map(|i| i.candidate.step)
    }

    #[test]
    fn the_baseline_runs_first_then_the_newest_waiting_checkpoint() {
        let mut q = LateQueue::default();
        assert_eq!(q.waiting(), 0);
        assert_eq!(step(q.offer(input(100, false))), None);
        assert_eq!(step(q.offer(input(0, true))), None);
        assert_eq!(q.waiting(), 2);
        assert_eq!(step(q.take_next()), Some(0));
        assert_eq!(step(q.take_next()), Some(100));
        assert_eq!(step(q.take_next()), None);
        assert_eq!(q.waiting(), 0);
    }

    #[test]
    fn a_newer_checkpoint_replaces_the_waiting_one_and_an_older_is_skipped() {
        let mut q = LateQueue::new(None, Some(input(200, false)));
        // Newer: the waiting one is skipped.
        assert_eq!(step(q.offer(input(300, false))), Some(200));
        // Older (a late checkpoint stored in its place): itself skipped.
        assert_eq!(step(q.offer(input(250, false))), Some(250));
        // The same step again (a new version of it) replaces it.
        assert_eq!(step(q.offer(input(300, false))), Some(300));
        assert_eq!(q.waiting(), 1);
        assert_eq!(step(q.take_next()), Some(300));
    }

    #[test]
    fn the_stored_version_is_size_and_mtime_in_nanoseconds() {
        assert_eq!(input(5, false).version(), (10, 1_500));
    }

    const BUDGET: Duration = Duration::from_millis(2500);

    fn judge(
        changed: bool,
        failure: Option<&str>,
        done: usize,
        interrupted: usize,
        stopped: bool,
    ) -> Verdict {
        verdict(changed, failure, (done, interrupted), stopped, BUDGET)
    }

    #[test]
    fn a_stage_that_finished_every_layer_is_done_without_detail() {
        assert_eq!(
            judge(false, None, 3, 0, false),
            Verdict {
                outcome: StageOutcome::Done,
                not_applicable: false,
                detail: None
            }
        );
        // A stop after the last layer changes nothing.
        assert_eq!(judge(false, None, 3, 0, true).outcome, StageOutcome::Done);
    }

    #[test]
    fn a_stage_cut_short_is_deferred_by_a_stop_and_abandoned_by_the_budget() {
        let v = judge(false, None, 1, 2, true);
        assert_eq!(v.outcome, StageOutcome::Deferred);
        assert_eq!(
            v.detail.as_deref(),
            Some("stopped (shutdown or reload); resumed at the next start")
        );
        let v = judge(false, None, 1, 2, false);
        assert_eq!(v.outcome, StageOutcome::Abandoned);
        assert_eq!(
            v.detail.as_deref(),
            Some("late-stage budget of 2.5 s ran out")
        );
        assert!(!v.not_applicable);
    }

    #[test]
    fn a_failure_is_failed_with_its_message() {
        let v = judge(false, Some("/r/s: no layer 9"), 0, 1, true);
        assert_eq!(v.outcome, StageOutcome::Failed);
        assert_eq!(v.detail.as_deref(), Some("/r/s: no layer 9"));
        assert!(!v.not_applicable);
    }

    #[test]
    fn a_changed_file_skips_the_stage_whatever_it_did() {
        for (failure, done, interrupted) in [(None, 2, 0), (Some("x"), 0, 0), (None, 0, 3)] {
            let v = judge(true, failure, done, interrupted, true);
            assert_eq!(v.outcome, StageOutcome::Skipped);
            assert_eq!(v.detail.as_deref(), Some(CHANGED_NOTE));
            assert!(!v.not_applicable);
        }
    }

    #[test]
    fn a_stage_with_nothing_to_do_is_done_and_not_applicable() {
        let v = judge(false, None, 0, 0, false);
        assert_eq!(v.outcome, StageOutcome::Done);
        assert!(v.not_applicable);
        assert_eq!(v.detail.as_deref(), Some("not applicable to these layers"));
    }
}
