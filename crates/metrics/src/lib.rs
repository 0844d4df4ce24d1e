//! Prometheus exposition: every metric name, type and help text of probewatch
//! lives in this crate, and nowhere else.
//!
//! Two kinds of metrics. The geometry of a run's newest checkpoint is a
//! [`RunSnapshot`] of plain data that the daemon fills and hands to
//! [`Metrics::publish`]; each run's snapshot is an immutable `Arc` swapped in
//! whole under a write lock, and a custom collector encodes the current
//! snapshots at scrape time. A scrape clones the `Arc`s under a short read
//! lock and encodes outside it, so it never mixes two checkpoints of one run
//! and never waits for the analysis. Process-lifetime numbers (checkpoints
//! analysed, failed, skipped, analysis durations, queue depth) are ordinary
//! registered `prometheus-client` families.
//!
//! The exposition is OpenMetrics text as `prometheus-client` writes it
//! (counters' samples end in `_total`, the document ends with `# EOF`).
//! Series whose value is `None` or not finite are left out rather than
//! exported as NaN; a family without any series is left out entirely.
//!
//! The modules: `families` (names, kinds, help texts: the only place a
//! metric name is spelt), `snapshot` (what the daemon publishes, and its
//! duplicate check), `collector` (snapshots to series at scrape time),
//! `history` ([`encode_history`], the backfill document) and this file, the
//! [`Metrics`] handle the daemon calls.
//!
//! This crate deliberately does not compute anything (the daemon turns
//! analysis reports into snapshots), does no I/O and knows nothing of HTTP:
//! the daemon's server serves [`Metrics::encode`]. Stage, outcome, split and
//! failure-kind names come in as data, so it does not depend on the
//! analysis crate.

mod collector;
mod families;
mod history;
mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use collector::{SnapshotCollector, Snapshots};
use families::Fam;

pub use families::ANALYSIS_DURATION_BUCKETS;
pub use history::encode_history;
pub use snapshot::{LabelSnapshot, LayerSnapshot, MetricsError, RunSnapshot};

/// Label set `{run}` of the registered families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    run: String,
}

/// Label set `{shard, of}` of `probewatch_shard_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabels {
    shard: String,
    of: String,
}

/// Label set `{result}` of `probewatch_config_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: String,
}

/// Label set `{run, stage}` of the per-stage families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    run: String,
    stage: String,
}

/// Label set `{run, stage, outcome}` of `probewatch_stage_outcomes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    run: String,
    stage: String,
    outcome: String,
}

/// Label set `{run, kind}` of `probewatch_checkpoints_failed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    run: String,
    kind: String,
}

/// One analysis stage running now (the `/status` page).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunningStage {
    /// The run.
    pub run: String,
    /// The stage (`core`, `test_hulls`, `clusters`, …).
    pub stage: String,
    /// The checkpoint's step.
    pub step: u64,
    /// When it started, seconds since the Unix epoch.
    pub started_unix: f64,
    /// Layers finished so far.
    pub layers_done: usize,
    /// Layers it works on (0 when not known yet).
    pub layers: usize,
}

/// The registry and every metric handle of the process. Share it as
/// `Arc<Metrics>`; every method takes `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    snapshots: Snapshots,
    analyzed: Family<RunLabels, Counter>,
    failed: Family<FailureLabels, Counter>,
    skipped: Family<RunLabels, Counter>,
    duration: Family<RunLabels, Histogram, fn() -> Histogram>,
    queue_depth: Family<RunLabels, Gauge>,
    shard_info: Family<ShardLabels, Gauge>,
    reload_ok: Gauge,
    reload_time: Gauge<f64, AtomicU64>,
    reloads: Family<ReloadLabels, Counter>,
    stage_duration: Family<StageLabels, Histogram, fn() -> Histogram>,
    stage_outcomes: Family<OutcomeLabels, Counter>,
    running_step: Family<StageLabels, Gauge>,
    running_started: Family<StageLabels, Gauge<f64, AtomicU64>>,
    running_done: Family<StageLabels, Gauge>,
    running_layers: Family<StageLabels, Gauge>,
    late_pending: Family<RunLabels, Gauge>,
    /// What runs now, for the status page: by (run, stage).
    running: Mutex<BTreeMap<(String, String), RunningStage>>,
    /// The (run, stage, outcome) triples of `stage_outcomes`.
    stage_keys: Mutex<BTreeSet<(String, String, String)>>,
    /// The (run, kind) pairs of `failed`, for [`Metrics::remove_run`].
    failure_kinds: Mutex<BTreeSet<(String, String)>>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(ANALYSIS_DURATION_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family registered (including
    /// `probewatch_build_info`) and no run yet.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let snapshots = Snapshots::default();
        let analyzed = Family::default();
        let failed = Family::default();
        let skipped = Family::default();
        let duration: Family<RunLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        let queue_depth = Family::default();
        Fam::Analyzed.register(&mut registry, analyzed.clone());
        Fam::Failed.register(&mut registry, failed.clone());
        Fam::Skipped.register(&mut registry, skipped.clone());
        Fam::Duration.register(&mut registry, duration.clone());
        Fam::QueueDepth.register(&mut registry, queue_depth.clone());
        let shard_info = Family::default();
        Fam::ShardInfo.register(&mut registry, shard_info.clone());
        let reload_ok = Gauge::default();
        let reload_time = Gauge::<f64, AtomicU64>::default();
        let reloads = Family::default();
        Fam::ConfigReloadSuccessful.register(&mut registry, reload_ok.clone());
        Fam::ConfigReloadTimestamp.register(&mut registry, reload_time.clone());
        Fam::ConfigReloads.register(&mut registry, reloads.clone());
        let stage_duration: Family<StageLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        let stage_outcomes = Family::default();
        let running_step = Family::default();
        let running_started = Family::default();
        let running_done = Family::default();
        let running_layers = Family::default();
        Fam::StageDuration.register(&mut registry, stage_duration.clone());
        Fam::StageOutcomes.register(&mut registry, stage_outcomes.clone());
        Fam::AnalysisStep.register(&mut registry, running_step.clone());
        Fam::AnalysisStarted.register(&mut registry, running_started.clone());
        Fam::AnalysisLayersDone.register(&mut registry, running_done.clone());
        Fam::AnalysisLayers.register(&mut registry, running_layers.clone());
        let late_pending = Family::default();
        Fam::LatePending.register(&mut registry, late_pending.clone());
        registry.register_collector(Box::new(SnapshotCollector {
            snapshots: Arc::clone(&snapshots),
        }));
        let metrics = Metrics {
            registry,
            snapshots,
            analyzed,
            failed,
            skipped,
            duration,
            queue_depth,
            shard_info,
            reload_ok,
            reload_time,
            reloads,
            stage_duration,
            stage_outcomes,
            running_step,
            running_started,
            running_done,
            running_layers,
            late_pending,
            stage_keys: Default::default(),
            running: Default::default(),
            failure_kinds: Default::default(),
        };
        metrics.set_shard(0, 1);
        for result in ["success", "failure"] {
            drop(metrics.reloads.get_or_create(&ReloadLabels {
                result: result.to_owned(),
            }));
        }
        metrics
    }

    /// Replaces the run's snapshot as a whole: the next scrape shows every
    /// value of this snapshot and none of the previous one (series that are
    /// not in it disappear). A snapshot with duplicated series
    /// ([`RunSnapshot::check`]) is logged and published with the first of
    /// each duplicate only.
    pub fn publish(&self, mut snapshot: RunSnapshot) {
        let removed = snapshot.dedup();
        if let Some((what, key)) = removed.first() {
            let error = MetricsError::Duplicate {
                run: snapshot.run.clone(),
                what,
                key: key.clone(),
            };
            tracing::warn!(
                %error,
                duplicates = removed.len(),
                "publishing the first of each duplicated series only"
            );
        }
        self.touch_run(&snapshot.run);
        let run = snapshot.run.clone();
        let snapshot = Arc::new(snapshot);
        self.snapshots
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(run, snapshot);
    }

    /// Records a successful configuration load at `unix_seconds`: at start
    /// (`reload` false) or on a SIGHUP reload (counted).
    pub fn config_loaded(&self, reload: bool, unix_seconds: f64) {
        self.reload_ok.set(1);
        self.reload_time.set(unix_seconds);
        if reload {
            self.count_reload("success");
        }
    }

    /// Records a reload that failed: the previous configuration runs on.
    pub fn config_reload_failed(&self) {
        self.reload_ok.set(0);
        self.count_reload("failure");
    }

    fn count_reload(&self, result: &str) {
        self.reloads
            .get_or_create(&ReloadLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Removes every series of `run` (a run taken out of the configuration
    /// by a reload): its snapshot and its counters.
    pub fn remove_run(&self, run: &str) {
        self.snapshots
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(run);
        let labels = run_labels(run);
        self.analyzed.remove(&labels);
        self.skipped.remove(&labels);
        self.duration.remove(&labels);
        self.queue_depth.remove(&labels);
        self.late_pending.remove(&labels);
        // The stages this run reported (their names are the caller's data):
        // those with an outcome and those running now.
        let mut stages: BTreeSet<String> = self
            .stage_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(r, _, _)| r == run)
            .map(|(_, stage, _)| stage.clone())
            .collect();
        stages.extend(
            self.running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .keys()
                .filter(|(r, _)| r == run)
                .map(|(_, stage)| stage.clone()),
        );
        for stage in &stages {
            self.stage_duration.remove(&stage_labels(run, stage));
            self.stage_ended(run, stage);
        }
        self.stage_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(r, stage, outcome)| {
                if r != run {
                    return true;
                }
                self.stage_outcomes.remove(&OutcomeLabels {
                    run: run.to_owned(),
                    stage: stage.clone(),
                    outcome: outcome.clone(),
                });
                false
            });
        // Failure counters are keyed by (run, kind): drop this run's.
        let mut kinds = self
            .failure_kinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        kinds.retain(|(r, kind)| {
            if r != run {
                return true;
            }
            self.failed.remove(&FailureLabels {
                run: run.to_owned(),
                kind: kind.clone(),
            });
            false
        });
    }

    /// Counts one analysed checkpoint of `run` and records how long its
    /// analysis took (negative or non-finite durations are recorded as 0).
    pub fn checkpoint_analyzed(&self, run: &str, seconds: f64) {
        self.touch_run(run);
        let labels = run_labels(run);
        self.analyzed.get_or_create(&labels).inc();
        let seconds = if seconds.is_finite() && seconds > 0.0 {
            seconds
        } else {
            0.0
        };
        self.duration.get_or_create(&labels).observe(seconds);
    }

    /// Counts one checkpoint of `run` whose analysis failed; `kind` is a
    /// short, low-cardinality word (`corrupt`, `incomplete`, `io`, …).
    pub fn checkpoint_failed(&self, run: &str, kind: &str) {
        self.touch_run(run);
        self.failure_kinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((run.to_owned(), kind.to_owned()));
        self.failed
            .get_or_create(&FailureLabels {
                run: run.to_owned(),
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Counts `n` checkpoints of `run` seen but not analysed.
    pub fn checkpoint_skipped(&self, run: &str, n: u64) {
        self.touch_run(run);
        self.skipped.get_or_create(&run_labels(run)).inc_by(n);
    }

    /// A stage of `run` started on the checkpoint of `step` over `layers`
    /// layers at `unix_seconds`: the in-progress gauges appear.
    pub fn stage_started(
        &self,
        run: &str,
        stage: &str,
        step: u64,
        layers: usize,
        unix_seconds: f64,
    ) {
        let l = stage_labels(run, stage);
        self.running_step
            .get_or_create(&l)
            .set(i64::try_from(step).unwrap_or(i64::MAX));
        self.running_started.get_or_create(&l).set(unix_seconds);
        self.running_done.get_or_create(&l).set(0);
        self.running_layers
            .get_or_create(&l)
            .set(i64::try_from(layers).unwrap_or(i64::MAX));
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                (run.to_owned(), stage.to_owned()),
                RunningStage {
                    run: run.to_owned(),
                    stage: stage.to_owned(),
                    step,
                    started_unix: unix_seconds,
                    layers_done: 0,
                    layers,
                },
            );
    }

    /// The stages running now, by run and stage.
    pub fn running(&self) -> Vec<RunningStage> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// One more layer of the running stage is finished.
    pub fn stage_layer_done(&self, run: &str, stage: &str) {
        self.running_done
            .get_or_create(&stage_labels(run, stage))
            .inc();
        if let Some(r) = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&(run.to_owned(), stage.to_owned()))
        {
            r.layers_done += 1;
        }
    }

    /// The running stage ended: the in-progress gauges go.
    pub fn stage_ended(&self, run: &str, stage: &str) {
        let l = stage_labels(run, stage);
        self.running_step.remove(&l);
        self.running_started.remove(&l);
        self.running_done.remove(&l);
        self.running_layers.remove(&l);
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(run.to_owned(), stage.to_owned()));
    }

    /// Counts one stage of one checkpoint of `run` with its `outcome`
    /// (`done`, `abandoned`, `skipped`, `deferred`, `failed`); a finished
    /// stage (`seconds` given) is recorded in the duration histogram.
    pub fn stage_outcome(&self, run: &str, stage: &str, outcome: &str, seconds: Option<f64>) {
        self.stage_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((run.to_owned(), stage.to_owned(), outcome.to_owned()));
        self.stage_outcomes
            .get_or_create(&OutcomeLabels {
                run: run.to_owned(),
                stage: stage.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        if let Some(s) = seconds {
            let s = if s.is_finite() && s > 0.0 { s } else { 0.0 };
            self.stage_duration
                .get_or_create(&stage_labels(run, stage))
                .observe(s);
        }
    }

    /// Sets the number of checkpoints of `run` whose late stages run or wait.
    pub fn set_late_pending(&self, run: &str, n: i64) {
        self.late_pending.get_or_create(&run_labels(run)).set(n);
    }

    /// Sets the number of checkpoints of `run` waiting for analysis.
    pub fn set_queue_depth(&self, run: &str, depth: i64) {
        self.touch_run(run);
        self.queue_depth.get_or_create(&run_labels(run)).set(depth);
    }

    /// Records that this process is shard `index` of `count` (the daemon's
    /// sharding of (task, layer) pairs); a new registry says 0 of 1.
    pub fn set_shard(&self, index: u32, count: u32) {
        self.shard_info.clear();
        self.shard_info
            .get_or_create(&ShardLabels {
                shard: index.to_string(),
                of: count.to_string(),
            })
            .set(1);
    }

    /// The whole exposition, OpenMetrics text as `prometheus-client` writes
    /// it (ends with `# EOF`).
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Creates the run's counters, histogram and queue gauge at zero, so
    /// `rate()` and `increase()` see the first event of a run.
    fn touch_run(&self, run: &str) {
        let labels = run_labels(run);
        if self.analyzed.get(&labels).is_some() {
            return;
        }
        drop(self.analyzed.get_or_create(&labels));
        drop(self.skipped.get_or_create(&labels));
        drop(self.duration.get_or_create(&labels));
        drop(self.queue_depth.get_or_create(&labels));
    }
}

fn stage_labels(run: &str, stage: &str) -> StageLabels {
    StageLabels {
        run: run.to_owned(),
        stage: stage.to_owned(),
    }
}

fn run_labels(run: &str) -> RunLabels {
    RunLabels {
        run: run.to_owned(),
    }
}
