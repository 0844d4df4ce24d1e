//! Prometheus exposition: every metric name, type and help text of probewatch
//! lives here, and nowhere else.
//!
//! Two kinds of metrics. The geometry of a run's newest checkpoint is a
//! [`RunSnapshot`] of plain data that the daemon fills and hands to
//! [`Metrics::publish`]; each run's snapshot is an immutable `Arc` swapped in
//! whole under a write lock, and a custom [`Collector`] encodes the current
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
//! This module deliberately does not compute anything (the daemon turns
//! analysis reports into snapshots), does no I/O and knows nothing of HTTP:
//! the daemon's server serves [`Metrics::encode`].

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the `probewatch_analysis_duration_seconds`
/// buckets: from 50 ms (a small dump) to 30 minutes (a large model on many
/// layers), roughly ×2–2.5 apart.
pub const ANALYSIS_DURATION_BUCKETS: [f64; 15] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
];

/// The analysis of a run's newest checkpoint, as exported: one value per
/// series, all from the same checkpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunSnapshot {
    /// Run name (label `run`).
    pub run: String,
    /// Training step of the checkpoint.
    pub step: u64,
    /// Modification time of the checkpoint file, seconds since the Unix
    /// epoch.
    pub timestamp_seconds: f64,
    /// One entry per (task, layer) analysed.
    pub layers: Vec<LayerSnapshot>,
}

/// One layer of one task at one checkpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerSnapshot {
    /// Task name (label `task`).
    pub task: String,
    /// Layer index, 0 = embedding output (label `layer`).
    pub layer: u32,
    /// Number of DirectProbe clusters of the train split (`None` until the
    /// `clusters` stage of some checkpoint is done for this layer).
    pub clusters: Option<u64>,
    /// Number of labels present in the train split.
    pub labels: u64,
    /// Number of DirectProbe clusters of the train split at the baseline
    /// checkpoint (`None` before a baseline exists).
    pub clusters_baseline: Option<u64>,
    /// RMS distance of the train points to their mean.
    pub scale: f64,
    /// One entry per label.
    pub label_stats: Vec<LabelSnapshot>,
    /// Pearson similarity of the label-distance vector to the baseline
    /// checkpoint's (`None` without a baseline or for the baseline itself).
    pub similarity_baseline: Option<f64>,
    /// Pearson similarity to the previous analysed checkpoint's.
    pub similarity_previous: Option<f64>,
    /// Pearson similarity between the train and test splits' label-distance
    /// vectors of this checkpoint.
    pub similarity_test: Option<f64>,
    /// Nearest-cluster accuracy per split, a fraction in [0, 1].
    pub accuracy: Vec<(String, f64)>,
    /// MLP classifier-probe accuracy per split: `(split, mean, std)` over
    /// seeds (empty when the run has no classifier).
    pub classifier_accuracy: Vec<(String, f64, f64)>,
    /// Labels whose min distance grew against the baseline (`None` for the
    /// baseline itself).
    pub labels_increased: Option<u64>,
    /// Labels whose min distance shrank against the baseline (`None` for the
    /// baseline itself).
    pub labels_decreased: Option<u64>,
    /// Distance of every label pair `(label_a, label_b, distance)`; only when
    /// the run opts in (K(K−1)/2 series per layer).
    pub label_pairs: Option<Vec<(String, String, f64)>>,
    /// Pearson similarity of the label-hull-distance vector to the
    /// baseline checkpoint's (core stage).
    pub hull_similarity_baseline: Option<f64>,
    /// Pearson similarity of the label-hull-distance vector to the previous
    /// checkpoint's (core stage).
    pub hull_similarity_previous: Option<f64>,
    /// Pearson similarity of the train and test label-hull-distance vectors
    /// (the `test_hulls` stage).
    pub hull_similarity_test: Option<f64>,
    /// Per late stage shown: `(stage, step)`, the checkpoint whose values of
    /// that stage this layer's series carry.
    pub stage_steps: Vec<(String, u64)>,
}

/// One label of one layer at one checkpoint. `None` leaves the series out
/// (label absent from the train split, no baseline yet, baseline distance 0,
/// …).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSnapshot {
    /// Label name (label `label`).
    pub label: String,
    /// Minimum label distance to any other label (representation units).
    pub min_distance: Option<f64>,
    /// `min_distance` divided by the layer's scale.
    pub min_distance_normalized: Option<f64>,
    /// Largest `min_distance_normalized` of the label over every analysed
    /// checkpoint of the run up to this one, this one included.
    pub min_distance_normalized_best: Option<f64>,
    /// `min_distance` of the label at the baseline checkpoint
    /// (representation units).
    pub min_distance_baseline: Option<f64>,
    /// Normalized min distance now / normalized min distance at the baseline
    /// − 1 (−0.3: shrank by 30 %).
    pub change_ratio: Option<f64>,
    /// Number of DirectProbe clusters of the label (`None` before the
    /// `clusters` stage).
    pub clusters: Option<u64>,
    /// Smallest label-hull distance from this label to any other
    /// (representation units; the core stage).
    pub hull_min_distance: Option<f64>,
    /// `hull_min_distance` divided by the layer's scale.
    pub hull_min_distance_normalized: Option<f64>,
    /// `hull_min_distance_normalized` at the baseline checkpoint.
    pub hull_min_distance_normalized_baseline: Option<f64>,
    /// Euclidean distance between the label's train centroid now and at the
    /// baseline (representation units).
    pub centroid_movement: Option<f64>,
}

/// Errors of this module.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum MetricsError {
    /// A snapshot holds the same series twice.
    #[error("snapshot of run {run:?}: {what} {key} appears more than once")]
    Duplicate {
        /// The run whose snapshot is at fault.
        run: String,
        /// What is duplicated (`layer`, `label`, `split`, `label pair`).
        what: &'static str,
        /// The duplicated key.
        key: String,
    },
}

impl RunSnapshot {
    /// Checks that no series appears twice: (task, layer) pairs, labels of a
    /// layer, accuracy splits of a layer and label pairs of a layer are
    /// unique.
    pub fn check(&self) -> Result<(), MetricsError> {
        let mut copy = self.clone();
        match copy.dedup().into_iter().next() {
            None => Ok(()),
            Some((what, key)) => Err(MetricsError::Duplicate {
                run: self.run.clone(),
                what,
                key,
            }),
        }
    }

    /// Removes duplicated series, keeping the first; returns what was removed.
    fn dedup(&mut self) -> Vec<(&'static str, String)> {
        let mut removed = Vec::new();
        let mut seen = HashSet::new();
        self.layers.retain(|l| {
            let new = seen.insert((l.task.clone(), l.layer));
            if !new {
                removed.push(("layer", format!("{}/{}", l.task, l.layer)));
            }
            new
        });
        for l in &mut self.layers {
            let at = |key: &str| format!("{key} (task {}, layer {})", l.task, l.layer);
            let mut seen = HashSet::new();
            l.label_stats.retain(|s| {
                let new = seen.insert(s.label.clone());
                if !new {
                    removed.push(("label", at(&s.label)));
                }
                new
            });
            let mut seen = HashSet::new();
            l.accuracy.retain(|(split, _)| {
                let new = seen.insert(split.clone());
                if !new {
                    removed.push(("split", at(split)));
                }
                new
            });
            let mut seen = HashSet::new();
            l.classifier_accuracy.retain(|(split, _, _)| {
                let new = seen.insert(split.clone());
                if !new {
                    removed.push(("classifier split", at(split)));
                }
                new
            });
            if let Some(pairs) = &mut l.label_pairs {
                let mut seen = HashSet::new();
                pairs.retain(|(a, b, _)| {
                    let new = seen.insert((a.clone(), b.clone()));
                    if !new {
                        removed.push(("label pair", at(&format!("{a}/{b}"))));
                    }
                    new
                });
            }
        }
        removed
    }
}

/// Kind of a metric family as exposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
    Histogram,
}

/// Every metric family probewatch exposes. The first [`SNAPSHOT_FAMILIES`]
/// come from snapshots (collector), the rest are registered families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fam {
    CheckpointStep,
    CheckpointTimestamp,
    Clusters,
    Labels,
    ClustersBaseline,
    LayerScale,
    LabelMinDistance,
    LabelMinDistanceNormalized,
    LabelMinDistanceNormalizedBest,
    LabelMinDistanceBaseline,
    LabelMinDistanceChangeRatio,
    LabelClusters,
    CentroidMovement,
    SpatialSimilarity,
    ProbeAccuracy,
    ClassifierAccuracy,
    ClassifierAccuracyStd,
    LabelsIncreased,
    LabelsDecreased,
    LabelPairDistance,
    LabelHullMinDistance,
    LabelHullMinDistanceNormalized,
    LabelHullMinDistanceNormalizedBaseline,
    HullSimilarity,
    StageStep,
    BuildInfo,
    Analyzed,
    Failed,
    Skipped,
    Duration,
    QueueDepth,
    ShardInfo,
    ConfigReloadSuccessful,
    ConfigReloadTimestamp,
    ConfigReloads,
    StageDuration,
    StageOutcomes,
    AnalysisStep,
    AnalysisStarted,
    AnalysisLayersDone,
    AnalysisLayers,
    LatePending,
}

/// The families the collector writes, in exposition order; `Fam as usize` is
/// the index (tested).
const SNAPSHOT_FAMILIES: [Fam; 26] = [
    Fam::CheckpointStep,
    Fam::CheckpointTimestamp,
    Fam::Clusters,
    Fam::Labels,
    Fam::ClustersBaseline,
    Fam::LayerScale,
    Fam::LabelMinDistance,
    Fam::LabelMinDistanceNormalized,
    Fam::LabelMinDistanceNormalizedBest,
    Fam::LabelMinDistanceBaseline,
    Fam::LabelMinDistanceChangeRatio,
    Fam::LabelClusters,
    Fam::CentroidMovement,
    Fam::SpatialSimilarity,
    Fam::ProbeAccuracy,
    Fam::ClassifierAccuracy,
    Fam::ClassifierAccuracyStd,
    Fam::LabelsIncreased,
    Fam::LabelsDecreased,
    Fam::LabelPairDistance,
    Fam::LabelHullMinDistance,
    Fam::LabelHullMinDistanceNormalized,
    Fam::LabelHullMinDistanceNormalizedBaseline,
    Fam::HullSimilarity,
    Fam::StageStep,
    Fam::BuildInfo,
];

impl Fam {
    /// Exposed name (for counters: the sample name, with `_total`), kind and
    /// help text (one sentence ending in a full stop).
    const fn spec(self) -> (&'static str, Kind, &'static str) {
        use Kind::{Counter, Gauge, Histogram};
        match self {
            Fam::CheckpointStep => (
                "probewatch_checkpoint_step",
                Gauge,
                "Training step of the run's newest checkpoint whose core stage is published, in steps.",
            ),
            Fam::CheckpointTimestamp => (
                "probewatch_checkpoint_timestamp_seconds",
                Gauge,
                "Modification time of the run's newest checkpoint whose core stage is published, in seconds since the Unix epoch.",
            ),
            Fam::Clusters => (
                "probewatch_clusters",
                Gauge,
                "Number of DirectProbe clusters of the layer's train split at the newest checkpoint whose clusters stage is done (probewatch_stage_step).",
            ),
            Fam::Labels => (
                "probewatch_labels",
                Gauge,
                "Number of labels present in the layer's train split at the newest checkpoint.",
            ),
            Fam::ClustersBaseline => (
                "probewatch_clusters_baseline",
                Gauge,
                "Number of DirectProbe clusters of the layer's train split at the baseline checkpoint.",
            ),
            Fam::LayerScale => (
                "probewatch_layer_scale",
                Gauge,
                "RMS distance of the layer's train points to their mean at the newest checkpoint, in representation units.",
            ),
            Fam::LabelMinDistance => (
                "probewatch_label_min_distance",
                Gauge,
                "Smallest label distance from this label to any other label at the newest checkpoint whose clusters stage is done, in representation units.",
            ),
            Fam::LabelMinDistanceNormalized => (
                "probewatch_label_min_distance_normalized",
                Gauge,
                "Smallest label distance from this label to any other label divided by the layer scale, dimensionless.",
            ),
            Fam::LabelMinDistanceNormalizedBest => (
                "probewatch_label_min_distance_normalized_best",
                Gauge,
                "Largest normalized smallest label distance of this label over the run's analysed checkpoints up to the newest, dimensionless.",
            ),
            Fam::LabelMinDistanceBaseline => (
                "probewatch_label_min_distance_baseline",
                Gauge,
                "Smallest label distance from this label to any other label at the baseline checkpoint, in representation units.",
            ),
            Fam::LabelMinDistanceChangeRatio => (
                "probewatch_label_min_distance_change_ratio",
                Gauge,
                "Normalized smallest label distance now divided by its value at the baseline checkpoint minus 1, as a ratio (-0.3 means it shrank by 30 percent).",
            ),
            Fam::LabelClusters => (
                "probewatch_label_clusters",
                Gauge,
                "Number of DirectProbe clusters of this label in the layer's train split at the newest checkpoint whose clusters stage is done.",
            ),
            Fam::CentroidMovement => (
                "probewatch_centroid_movement",
                Gauge,
                "Euclidean distance between this label's train centroid now and at the baseline checkpoint, in representation units.",
            ),
            Fam::SpatialSimilarity => (
                "probewatch_spatial_similarity",
                Gauge,
                "Pearson correlation between the layer's label-distance vector and the reference's (baseline checkpoint, previous checkpoint, or this checkpoint's test split), from -1 to 1.",
            ),
            Fam::ProbeAccuracy => (
                "probewatch_probe_accuracy",
                Gauge,
                "Nearest-cluster accuracy of the split's points against the layer's train clusters, as a fraction from 0 to 1.",
            ),
            Fam::ClassifierAccuracy => (
                "probewatch_classifier_accuracy",
                Gauge,
                "Mean over seeds of the accuracy on the split's points of the MLP classifier probe fitted on the layer's train (or subtrain) split, as a fraction from 0 to 1.",
            ),
            Fam::ClassifierAccuracyStd => (
                "probewatch_classifier_accuracy_std",
                Gauge,
                "Standard deviation over seeds of the MLP classifier probe's accuracy on the split's points, as a fraction from 0 to 1.",
            ),
            Fam::LabelsIncreased => (
                "probewatch_labels_min_distance_increased",
                Gauge,
                "Number of labels whose smallest label distance is larger than at the baseline checkpoint.",
            ),
            Fam::LabelsDecreased => (
                "probewatch_labels_min_distance_decreased",
                Gauge,
                "Number of labels whose smallest label distance is smaller than at the baseline checkpoint.",
            ),
            Fam::LabelPairDistance => (
                "probewatch_label_pair_distance",
                Gauge,
                "Label distance between label_a and label_b at the newest checkpoint whose clusters stage is done, in representation units.",
            ),
            Fam::LabelHullMinDistance => (
                "probewatch_label_hull_min_distance",
                Gauge,
                "Smallest distance between the convex hull of all of this label's train points and that of another label's at the newest checkpoint (0 when they intersect), in representation units.",
            ),
            Fam::LabelHullMinDistanceNormalized => (
                "probewatch_label_hull_min_distance_normalized",
                Gauge,
                "Smallest label-hull distance from this label to any other divided by the layer scale at the newest checkpoint, dimensionless.",
            ),
            Fam::LabelHullMinDistanceNormalizedBaseline => (
                "probewatch_label_hull_min_distance_normalized_baseline",
                Gauge,
                "Smallest label-hull distance from this label to any other divided by the layer scale at the baseline checkpoint, dimensionless.",
            ),
            Fam::HullSimilarity => (
                "probewatch_hull_similarity",
                Gauge,
                "Pearson correlation between the layer's label-hull-distance vector and the reference's (baseline checkpoint, previous checkpoint, or this checkpoint's test split), from -1 to 1.",
            ),
            Fam::StageStep => (
                "probewatch_stage_step",
                Gauge,
                "Training step of the checkpoint whose values of this late analysis stage the layer's series show, in steps.",
            ),
            Fam::StageDuration => (
                "probewatch_stage_duration_seconds",
                Histogram,
                "Wall-clock time one analysis stage of one checkpoint of the run took, pauses for newer checkpoints' core stage excluded, in seconds.",
            ),
            Fam::StageOutcomes => (
                "probewatch_stage_outcomes_total",
                Counter,
                "Analysis stages of the run's checkpoints by stage and outcome (done, abandoned when the late-stage budget ran out, skipped for a newer checkpoint, deferred by a shutdown, failed) since the process started.",
            ),
            Fam::AnalysisStep => (
                "probewatch_analysis_step",
                Gauge,
                "Training step of the checkpoint whose analysis stage is running now, in steps (present only while it runs).",
            ),
            Fam::AnalysisStarted => (
                "probewatch_analysis_started_timestamp_seconds",
                Gauge,
                "Start time of the analysis stage running now, in seconds since the Unix epoch (present only while it runs).",
            ),
            Fam::AnalysisLayersDone => (
                "probewatch_analysis_layers_done",
                Gauge,
                "Layers of the running analysis stage finished so far (present only while it runs).",
            ),
            Fam::AnalysisLayers => (
                "probewatch_analysis_layers",
                Gauge,
                "Layers the running analysis stage works on (present only while it runs).",
            ),
            Fam::LatePending => (
                "probewatch_late_stages_pending",
                Gauge,
                "Number of the run's checkpoints whose late analysis stages are running or waiting to run (0 when every late value is up to date).",
            ),
            Fam::BuildInfo => (
                "probewatch_build_info",
                Gauge,
                "Always 1; the version label is the running probewatch version.",
            ),
            Fam::Analyzed => (
                "probewatch_checkpoints_analyzed_total",
                Counter,
                "Number of checkpoints of the run analysed since the process started.",
            ),
            Fam::Failed => (
                "probewatch_checkpoints_failed_total",
                Counter,
                "Number of checkpoints of the run whose analysis failed since the process started, by kind of failure.",
            ),
            Fam::Skipped => (
                "probewatch_checkpoints_skipped_total",
                Counter,
                "Number of checkpoints of the run seen but not analysed since the process started.",
            ),
            Fam::Duration => (
                "probewatch_analysis_duration_seconds",
                Histogram,
                "Wall-clock time to analyse one checkpoint of the run, in seconds.",
            ),
            Fam::ShardInfo => (
                "probewatch_shard_info",
                Gauge,
                "Always 1; the labels give this process's shard number and the number of shards the (task, layer) pairs are split over (0 and 1 when not sharded).",
            ),
            Fam::ConfigReloadSuccessful => (
                "probewatch_config_last_reload_successful",
                Gauge,
                "1 when the last configuration load (start or SIGHUP reload) succeeded, 0 when a reload failed and the previous configuration keeps running.",
            ),
            Fam::ConfigReloadTimestamp => (
                "probewatch_config_last_reload_success_timestamp_seconds",
                Gauge,
                "Time of the last successful configuration load (start or SIGHUP reload), in seconds since the Unix epoch.",
            ),
            Fam::ConfigReloads => (
                "probewatch_config_reloads_total",
                Counter,
                "Configuration reloads asked for with SIGHUP, by result (success or failure).",
            ),
            Fam::QueueDepth => (
                "probewatch_queue_depth",
                Gauge,
                "Number of checkpoints of the run waiting to be analysed.",
            ),
        }
    }

    /// Registers `metric` under this family's name and help as
    /// `prometheus-client` expects them: without the `_total` it appends to
    /// counters and without the full stop it appends to help texts.
    fn register<M>(self, registry: &mut Registry, metric: M)
    where
        M: prometheus_client::registry::Metric,
    {
        let (name, kind, help) = self.spec();
        let name = match kind {
            Kind::Counter => name.strip_suffix("_total").unwrap_or(name),
            Kind::Gauge | Kind::Histogram => name,
        };
        registry.register(name, help.strip_suffix('.').unwrap_or(help), metric);
    }
}

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

/// The current snapshot of every run.
type Snapshots = Arc<RwLock<BTreeMap<String, Arc<RunSnapshot>>>>;

/// Encodes the published snapshots at scrape time.
#[derive(Debug)]
struct SnapshotCollector {
    snapshots: Snapshots,
}

/// A sample value: counts stay integers in the exposition.
#[derive(Clone, Copy, Debug)]
enum Value {
    Count(u64),
    Real(f64),
}

/// One series of a collector family.
struct Sample<'a> {
    labels: Vec<(&'static str, Cow<'a, str>)>,
    value: Value,
}

/// Gathers the series of every snapshot family from `runs`, indexed by
/// `Fam as usize`. Non-finite values are left out like `None`.
fn gather<'a>(runs: &'a [Arc<RunSnapshot>]) -> Vec<Vec<Sample<'a>>> {
    let mut out: Vec<Vec<Sample<'a>>> = SNAPSHOT_FAMILIES.iter().map(|_| Vec::new()).collect();
    let mut push = |fam: Fam, labels: Vec<(&'static str, Cow<'a, str>)>, value: Value| {
        if let Value::Real(v) = value
            && !v.is_finite()
        {
            return;
        }
        out[fam as usize].push(Sample { labels, value });
    };
    for r in runs {
        let run = || ("run", Cow::Borrowed(r.run.as_str()));
        push(Fam::CheckpointStep, vec![run()], Value::Count(r.step));
        push(
            Fam::CheckpointTimestamp,
            vec![run()],
            Value::Real(r.timestamp_seconds),
        );
        for l in &r.layers {
            let layer = l.layer.to_string();
            let base = || {
                vec![
                    run(),
                    ("task", Cow::Borrowed(l.task.as_str())),
                    ("layer", Cow::Owned(layer.clone())),
                ]
            };
            let with = |key: &'static str, value: &'_ str| {
                let mut labels = base();
                labels.push((key, Cow::Owned(value.to_owned())));
                labels
            };
            if let Some(n) = l.clusters {
                push(Fam::Clusters, base(), Value::Count(n));
            }
            push(Fam::Labels, base(), Value::Count(l.labels));
            if let Some(n) = l.clusters_baseline {
                push(Fam::ClustersBaseline, base(), Value::Count(n));
            }
            push(Fam::LayerScale, base(), Value::Real(l.scale));
            for s in &l.label_stats {
                let per_label = [
                    (Fam::LabelMinDistance, s.min_distance),
                    (Fam::LabelMinDistanceNormalized, s.min_distance_normalized),
                    (
                        Fam::LabelMinDistanceNormalizedBest,
                        s.min_distance_normalized_best,
                    ),
                    (Fam::LabelMinDistanceBaseline, s.min_distance_baseline),
                    (Fam::LabelMinDistanceChangeRatio, s.change_ratio),
                    (Fam::CentroidMovement, s.centroid_movement),
                    (Fam::LabelHullMinDistance, s.hull_min_distance),
                    (
                        Fam::LabelHullMinDistanceNormalized,
                        s.hull_min_distance_normalized,
                    ),
                    (
                        Fam::LabelHullMinDistanceNormalizedBaseline,
                        s.hull_min_distance_normalized_baseline,
                    ),
                ];
                for (fam, v) in per_label {
                    if let Some(v) = v {
                        push(fam, with("label", &s.label), Value::Real(v));
                    }
                }
                if let Some(n) = s.clusters {
                    push(Fam::LabelClusters, with("label", &s.label), Value::Count(n));
                }
            }
            let similarities = [
                ("baseline", l.similarity_baseline),
                ("previous", l.similarity_previous),
                ("test", l.similarity_test),
            ];
            for (reference, v) in similarities {
                if let Some(v) = v {
                    push(
                        Fam::SpatialSimilarity,
                        with("reference", reference),
                        Value::Real(v),
                    );
                }
            }
            let hull_similarities = [
                ("baseline", l.hull_similarity_baseline),
                ("previous", l.hull_similarity_previous),
                ("test", l.hull_similarity_test),
            ];
            for (reference, v) in hull_similarities {
                if let Some(v) = v {
                    push(
                        Fam::HullSimilarity,
                        with("reference", reference),
                        Value::Real(v),
                    );
                }
            }
            for (stage, step) in &l.stage_steps {
                push(Fam::StageStep, with("stage", stage), Value::Count(*step));
            }
            for (split, v) in &l.accuracy {
                push(Fam::ProbeAccuracy, with("split", split), Value::Real(*v));
            }
            for (split, mean, std) in &l.classifier_accuracy {
                push(
                    Fam::ClassifierAccuracy,
                    with("split", split),
                    Value::Real(*mean),
                );
                push(
                    Fam::ClassifierAccuracyStd,
                    with("split", split),
                    Value::Real(*std),
                );
            }
            if let Some(n) = l.labels_increased {
                push(Fam::LabelsIncreased, base(), Value::Count(n));
            }
            if let Some(n) = l.labels_decreased {
                push(Fam::LabelsDecreased, base(), Value::Count(n));
            }
            for (a, b, d) in l.label_pairs.iter().flatten() {
                let mut labels = with("label_a", a);
                labels.push(("label_b", Cow::Borrowed(b.as_str())));
                push(Fam::LabelPairDistance, labels, Value::Real(*d));
            }
        }
    }
    push(
        Fam::BuildInfo,
        vec![("version", Cow::Borrowed(env!("CARGO_PKG_VERSION")))],
        Value::Count(1),
    );
    out
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        // Only the Arcs are cloned under the lock; encoding runs outside it.
        let runs: Vec<Arc<RunSnapshot>> = self
            .snapshots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for (fam, samples) in SNAPSHOT_FAMILIES.iter().zip(gather(&runs)) {
            if samples.is_empty() {
                continue;
            }
            let (name, _, help) = fam.spec();
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for s in &samples {
                let mut metric = family.encode_family(&s.labels)?;
                match s.value {
                    Value::Count(v) => metric.encode_gauge(&v)?,
                    Value::Real(v) => metric.encode_gauge(&v)?,
                }
            }
        }
        Ok(())
    }
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
    reload_time: Gauge<f64, std::sync::atomic::AtomicU64>,
    reloads: Family<ReloadLabels, Counter>,
    stage_duration: Family<StageLabels, Histogram, fn() -> Histogram>,
    stage_outcomes: Family<OutcomeLabels, Counter>,
    running_step: Family<StageLabels, Gauge>,
    running_started: Family<StageLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    running_done: Family<StageLabels, Gauge>,
    running_layers: Family<StageLabels, Gauge>,
    late_pending: Family<RunLabels, Gauge>,
    /// What runs now, for the status page: by (run, stage).
    running: std::sync::Mutex<BTreeMap<(String, String), RunningStage>>,
    /// The (run, stage, outcome) triples of `stage_outcomes`.
    stage_keys: std::sync::Mutex<std::collections::BTreeSet<(String, String, String)>>,
    /// The (run, kind) pairs of `failed`, for [`Metrics::remove_run`].
    failure_kinds: std::sync::Mutex<std::collections::BTreeSet<(String, String)>>,
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
        let reload_time = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
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
        let mut stages: std::collections::BTreeSet<String> = self
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

    /// Records that this process is shard `index` of `count` (see
    /// [`crate::shard`]); a new registry says 0 of 1.
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

/// The history of runs as an OpenMetrics document for backfilling
/// (`promtool tsdb create-blocks-from openmetrics`): every snapshot family
/// of the live exposition except `probewatch_build_info`, with the same
/// names, help texts and labels, each sample carrying the time given with
/// its snapshot (seconds since the Unix epoch, kept to the millisecond).
///
/// Families come once each, every series' samples in increasing time
/// order (as promtool requires); two snapshots of a run at the same
/// millisecond would give a series two samples at one time, so a later one
/// is moved 1 ms past the one before. Process counters, the duration
/// histogram and the queue depth are left out: they describe a process,
/// not the stored history. Ends with `# EOF`.
pub fn encode_history(points: &[(f64, RunSnapshot)]) -> String {
    use std::fmt::Write as _;
    // Per family: series (rendered label set) → (time in ms, value text).
    let mut families: Vec<BTreeMap<String, Vec<(i64, String)>>> =
        SNAPSHOT_FAMILIES.iter().map(|_| BTreeMap::new()).collect();
    for (seconds, snapshot) in points {
        let ms = (seconds * 1000.0).round() as i64;
        let one = [Arc::new(snapshot.clone())];
        for (i, samples) in gather(&one).into_iter().enumerate() {
            if SNAPSHOT_FAMILIES[i] == Fam::BuildInfo {
                continue;
            }
            for s in samples {
                let mut labels = String::new();
                for (k, v) in &s.labels {
                    let sep = if labels.is_empty() { "" } else { "," };
                    let _ = write!(labels, "{sep}{k}=\"{}\"", escape_label_value(v));
                }
                let value = match s.value {
                    Value::Count(v) => v.to_string(),
                    Value::Real(v) => format!("{v:?}"),
                };
                families[i].entry(labels).or_default().push((ms, value));
            }
        }
    }
    let mut out = String::new();
    for (fam, series) in SNAPSHOT_FAMILIES.iter().zip(families) {
        if series.is_empty() {
            continue;
        }
        let (name, _, help) = fam.spec();
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(out, "# HELP {name} {help}");
        for (labels, mut points) in series {
            points.sort_by_key(|(ms, _)| *ms);
            let mut last: Option<i64> = None;
            for (ms, value) in points {
                let ms = match last {
                    Some(l) if ms <= l => l + 1,
                    _ => ms,
                };
                last = Some(ms);
                let sign = if ms < 0 { "-" } else { "" };
                let abs = ms.unsigned_abs();
                let _ = writeln!(
                    out,
                    "{name}{{{labels}}} {value} {sign}{}.{:03}",
                    abs / 1000,
                    abs % 1000
                );
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// A label value escaped as the exposition formats require (`\\`, `\"`,
/// `\n`).
fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_parse::{Scrape, Value as PValue};

    fn parse(text: &str) -> Scrape {
        Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("exposition parses")
    }

    /// Value of the sample `name` whose labels include every pair of
    /// `labels`; panics when there is not exactly one.
    fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<_> = samples(scrape, name, labels);
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
        match found[0].value {
            PValue::Gauge(v) | PValue::Counter(v) | PValue::Untyped(v) => v,
            ref other => panic!("{name}: unexpected value {other:?}"),
        }
    }

    fn samples<'s>(
        scrape: &'s Scrape,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Vec<&'s prometheus_parse::Sample> {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .collect()
    }

    fn label(name: &str, d: f64) -> LabelSnapshot {
        LabelSnapshot {
            label: name.to_owned(),
            min_distance: Some(d),
            min_distance_normalized: Some(d / 2.0),
            min_distance_normalized_best: Some(d),
            min_distance_baseline: Some(d + 1.0),
            change_ratio: Some(-0.25),
            clusters: Some(2),
            centroid_movement: Some(0.5),
            hull_min_distance: Some(d / 4.0),
            hull_min_distance_normalized: Some(d / 8.0),
            hull_min_distance_normalized_baseline: Some(d / 7.0),
        }
    }

    fn snapshot(run: &str, step: u64, labels: &[&str]) -> RunSnapshot {
        let x = step as f64;
        RunSnapshot {
            run: run.to_owned(),
            step,
            timestamp_seconds: 1.7e9 + x,
            layers: vec![LayerSnapshot {
                task: "upos".to_owned(),
                layer: 3,
                clusters: Some(10 + step),
                labels: labels.len() as u64,
                clusters_baseline: Some(9),
                scale: 2.0 * x,
                label_stats: labels.iter().map(|l| label(l, x)).collect(),
                similarity_baseline: Some(0.9),
                similarity_previous: Some(0.95),
                similarity_test: Some(0.8),
                accuracy: vec![("test".to_owned(), 0.75), ("dev".to_owned(), 0.5)],
                classifier_accuracy: vec![("test".to_owned(), 0.875, 0.0125)],
                labels_increased: Some(1),
                labels_decreased: Some(2),
                label_pairs: Some(vec![("NOUN".to_owned(), "VERB".to_owned(), 3.5)]),
                hull_similarity_baseline: Some(0.7),
                hull_similarity_previous: Some(0.99),
                hull_similarity_test: Some(0.6),
                stage_steps: vec![("clusters".to_owned(), step)],
            }],
        }
    }

    #[test]
    fn snapshot_families_are_indexed_by_their_variant() {
        for (i, fam) in SNAPSHOT_FAMILIES.iter().enumerate() {
            assert_eq!(*fam as usize, i, "{fam:?}");
        }
        assert_eq!(Fam::BuildInfo as usize + 1, Fam::Analyzed as usize);
    }

    #[test]
    fn published_values_and_labels_round_trip_through_an_independent_parser() {
        let m = Metrics::new();
        m.publish(snapshot("run-a", 4, &["NOUN", "VERB"]));
        let text = m.encode().unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        let s = parse(&text);
        let run = ("run", "run-a");
        let layer = [run, ("task", "upos"), ("layer", "3")];
        assert_eq!(value(&s, "probewatch_checkpoint_step", &[run]), 4.0);
        assert_eq!(
            value(&s, "probewatch_checkpoint_timestamp_seconds", &[run]),
            1.7e9 + 4.0
        );
        assert_eq!(value(&s, "probewatch_clusters", &layer), 14.0);
        assert_eq!(value(&s, "probewatch_labels", &layer), 2.0);
        assert_eq!(value(&s, "probewatch_clusters_baseline", &layer), 9.0);
        assert_eq!(value(&s, "probewatch_layer_scale", &layer), 8.0);
        let noun = [run, ("task", "upos"), ("layer", "3"), ("label", "NOUN")];
        assert_eq!(value(&s, "probewatch_label_min_distance", &noun), 4.0);
        assert_eq!(
            value(&s, "probewatch_label_min_distance_normalized", &noun),
            2.0
        );
        assert_eq!(
            value(&s, "probewatch_label_min_distance_normalized_best", &noun),
            4.0
        );
        assert_eq!(
            value(&s, "probewatch_label_min_distance_baseline", &noun),
            5.0
        );
        assert_eq!(
            value(&s, "probewatch_label_min_distance_change_ratio", &noun),
            -0.25
        );
        assert_eq!(value(&s, "probewatch_label_clusters", &noun), 2.0);
        assert_eq!(value(&s, "probewatch_centroid_movement", &noun), 0.5);
        for (reference, v) in [("baseline", 0.9), ("previous", 0.95), ("test", 0.8)] {
            let labels = [run, ("layer", "3"), ("reference", reference)];
            assert_eq!(value(&s, "probewatch_spatial_similarity", &labels), v);
        }
        let test = [run, ("layer", "3"), ("split", "test")];
        assert_eq!(value(&s, "probewatch_probe_accuracy", &test), 0.75);
        let dev = [run, ("layer", "3"), ("split", "dev")];
        assert_eq!(value(&s, "probewatch_probe_accuracy", &dev), 0.5);
        assert_eq!(value(&s, "probewatch_classifier_accuracy", &test), 0.875);
        assert_eq!(
            value(&s, "probewatch_classifier_accuracy_std", &test),
            0.0125
        );
        assert!(samples(&s, "probewatch_classifier_accuracy", &dev).is_empty());
        assert_eq!(
            value(&s, "probewatch_labels_min_distance_increased", &layer),
            1.0
        );
        assert_eq!(
            value(&s, "probewatch_labels_min_distance_decreased", &layer),
            2.0
        );
        let pair = [run, ("label_a", "NOUN"), ("label_b", "VERB")];
        assert_eq!(value(&s, "probewatch_label_pair_distance", &pair), 3.5);
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        assert_eq!(value(&s, "probewatch_build_info", &version), 1.0);
        // Exactly the labels listed, no more: run, task, layer, label.
        let one = samples(&s, "probewatch_label_min_distance", &noun)[0];
        let mut keys: Vec<_> = one.labels.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["label", "layer", "run", "task"]);
    }

    #[test]
    fn a_second_publish_replaces_the_whole_snapshot() {
        let m = Metrics::new();
        m.publish(snapshot("run-a", 1, &["NOUN", "VERB", "ADJ"]));
        m.publish(snapshot("run-b", 7, &["X"]));
        m.publish(snapshot("run-a", 2, &["NOUN", "VERB"]));
        let s = parse(&m.encode().unwrap());
        let run = ("run", "run-a");
        assert_eq!(value(&s, "probewatch_checkpoint_step", &[run]), 2.0);
        assert_eq!(value(&s, "probewatch_layer_scale", &[run]), 4.0);
        // Every per-label value of run-a is the second checkpoint's.
        let per_label = samples(&s, "probewatch_label_min_distance", &[run]);
        assert_eq!(per_label.len(), 2);
        for sample in per_label {
            assert_eq!(sample.value, PValue::Gauge(2.0), "{sample:?}");
        }
        // The label that disappeared is gone from every family.
        assert!(
            s.samples
                .iter()
                .all(|x| x.labels.get("label") != Some("ADJ")),
            "ADJ still exported"
        );
        // The other run is untouched.
        let b = ("run", "run-b");
        assert_eq!(value(&s, "probewatch_checkpoint_step", &[b]), 7.0);
    }

    #[test]
    fn concurrent_scrapes_never_mix_two_checkpoints() {
        let m = Arc::new(Metrics::new());
        m.publish(snapshot("run-a", 1, &["NOUN", "VERB"]));
        let writer = {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                for i in 0..400u64 {
                    let step = 1 + i % 2;
                    let labels: &[&str] = if step == 1 {
                        &["NOUN", "VERB"]
                    } else {
                        &["NOUN", "VERB", "ADJ"]
                    };
                    m.publish(snapshot("run-a", step, labels));
                }
            })
        };
        for _ in 0..200 {
            let s = parse(&m.encode().unwrap());
            let step = value(&s, "probewatch_checkpoint_step", &[("run", "run-a")]);
            let distances = samples(&s, "probewatch_label_min_distance", &[]);
            let labels = if step == 1.0 { 2 } else { 3 };
            assert_eq!(distances.len(), labels, "step {step}");
            for d in distances {
                assert_eq!(d.value, PValue::Gauge(step), "step {step}: {d:?}");
            }
            assert_eq!(value(&s, "probewatch_layer_scale", &[]), 2.0 * step);
        }
        writer.join().unwrap();
    }

    #[test]
    fn none_and_non_finite_values_are_left_out() {
        let m = Metrics::new();
        let mut snap = snapshot("r", 3, &["NOUN", "VERB"]);
        let layer = &mut snap.layers[0];
        layer.similarity_baseline = None;
        layer.similarity_test = Some(f64::NAN);
        layer.labels_increased = None;
        layer.labels_decreased = None;
        layer.label_pairs = None;
        layer.label_stats[1].change_ratio = None;
        layer.label_stats[1].min_distance_baseline = None;
        layer.label_stats[1].min_distance_normalized_best = None;
        layer.clusters_baseline = None;
        layer.label_stats[1].centroid_movement = Some(f64::INFINITY);
        m.publish(snap);
        let text = m.encode().unwrap();
        let s = parse(&text);
        let sims = samples(&s, "probewatch_spatial_similarity", &[]);
        assert_eq!(sims.len(), 1);
        assert_eq!(sims[0].labels.get("reference"), Some("previous"));
        for gone in [
            "probewatch_labels_min_distance_increased",
            "probewatch_labels_min_distance_decreased",
            "probewatch_label_pair_distance",
            "probewatch_clusters_baseline",
        ] {
            assert!(!text.contains(gone), "{gone} exported:\n{text}");
        }
        for (name, n) in [
            ("probewatch_label_min_distance_change_ratio", 1),
            ("probewatch_label_min_distance_baseline", 1),
            ("probewatch_label_min_distance_normalized_best", 1),
            ("probewatch_centroid_movement", 1),
            ("probewatch_label_min_distance", 2),
        ] {
            assert_eq!(samples(&s, name, &[]).len(), n, "{name}");
        }
        assert!(!text.to_lowercase().contains("nan"), "{text}");
        assert!(!text.contains("inf\n"), "{text}");
    }

    #[test]
    fn counters_and_histogram_are_exposed_per_run() {
        let m = Metrics::new();
        m.checkpoint_analyzed("r", 0.07);
        m.checkpoint_analyzed("r", 700.0);
        m.checkpoint_analyzed("r", f64::NAN);
        m.checkpoint_failed("r", "corrupt");
        m.checkpoint_failed("r", "corrupt");
        m.checkpoint_failed("r", "io");
        m.checkpoint_skipped("r", 5);
        m.set_queue_depth("r", 3);
        m.set_queue_depth("other", 0);
        let text = m.encode().unwrap();
        assert!(text.contains("# TYPE probewatch_checkpoints_analyzed counter\n"));
        assert!(text.contains("# TYPE probewatch_analysis_duration_seconds histogram\n"));
        let s = parse(&text);
        let r = [("run", "r")];
        assert_eq!(value(&s, "probewatch_checkpoints_analyzed_total", &r), 3.0);
        let corrupt = [("run", "r"), ("kind", "corrupt")];
        assert_eq!(
            value(&s, "probewatch_checkpoints_failed_total", &corrupt),
            2.0
        );
        let io = [("run", "r"), ("kind", "io")];
        assert_eq!(value(&s, "probewatch_checkpoints_failed_total", &io), 1.0);
        assert_eq!(value(&s, "probewatch_checkpoints_skipped_total", &r), 5.0);
        assert_eq!(value(&s, "probewatch_queue_depth", &r), 3.0);
        // A run only announced has its counters at zero.
        let other = [("run", "other")];
        assert_eq!(
            value(&s, "probewatch_checkpoints_analyzed_total", &other),
            0.0
        );
        assert_eq!(
            value(&s, "probewatch_checkpoints_skipped_total", &other),
            0.0
        );
        assert_eq!(value(&s, "probewatch_queue_depth", &other), 0.0);
        // The histogram: 3 observations (NaN recorded as 0), sum 700.07.
        assert_eq!(
            value(&s, "probewatch_analysis_duration_seconds_count", &r),
            3.0
        );
        let sum = value(&s, "probewatch_analysis_duration_seconds_sum", &r);
        assert!((sum - 700.07).abs() < 1e-9, "{sum}");
        let hist = samples(&s, "probewatch_analysis_duration_seconds", &r);
        assert_eq!(hist.len(), 1);
        let PValue::Histogram(buckets) = &hist[0].value else {
            panic!("not a histogram: {:?}", hist[0]);
        };
        let count_le = |le: f64| {
            buckets
                .iter()
                .find(|b| b.less_than == le)
                .map(|b| b.count)
                .unwrap_or_else(|| panic!("no bucket le={le}"))
        };
        assert_eq!(count_le(0.05), 1.0);
        assert_eq!(count_le(0.1), 2.0);
        assert_eq!(count_le(600.0), 2.0);
        assert_eq!(count_le(1200.0), 3.0);
        assert_eq!(count_le(1800.0), 3.0);
        assert_eq!(count_le(f64::INFINITY), 3.0);
    }

    #[test]
    fn duplicated_series_are_reported_and_published_once() {
        let mut snap = snapshot("r", 1, &["NOUN", "NOUN"]);
        snap.layers[0].accuracy.push(("test".to_owned(), 0.1));
        let err = snap.check().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"r\"") && msg.contains("NOUN"), "{msg}");
        assert!(snapshot("r", 1, &["NOUN", "VERB"]).check().is_ok());
        let m = Metrics::new();
        m.publish(snap);
        let s = parse(&m.encode().unwrap());
        assert_eq!(samples(&s, "probewatch_label_min_distance", &[]).len(), 1);
        let test = [("split", "test")];
        assert_eq!(value(&s, "probewatch_probe_accuracy", &test), 0.75);
    }

    #[test]
    fn history_groups_families_orders_samples_by_time_and_ends_with_eof() {
        let mut late = snapshot("r", 2, &["NOUN"]);
        late.layers[0].label_stats[0].min_distance = Some(0.25);
        let mut early = snapshot("r", 1, &["NOUN"]);
        early.layers[0].label_stats[0].min_distance = Some(0.5);
        // Out of order, and a third snapshot at the same millisecond.
        let mut same = snapshot("r", 3, &["NOUN"]);
        same.layers[0].label_stats[0].min_distance = Some(0.125);
        let text = encode_history(&[(1.7e9 + 60.0, late), (1.7e9, early), (1.7e9 + 60.0, same)]);
        assert!(text.ends_with("\n# EOF\n"), "{text}");
        assert!(!text.contains("probewatch_build_info"), "{text}");
        let name = "probewatch_label_min_distance{";
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(name)).collect();
        let labels = r#"run="r",task="upos",layer="3",label="NOUN""#;
        assert_eq!(
            lines,
            [
                format!("probewatch_label_min_distance{{{labels}}} 0.5 1700000000.000"),
                format!("probewatch_label_min_distance{{{labels}}} 0.25 1700000060.000"),
                format!("probewatch_label_min_distance{{{labels}}} 0.125 1700000060.001"),
            ]
        );
        // Each family once, with its live type and help.
        assert_eq!(
            text.matches("# TYPE probewatch_label_min_distance gauge\n")
                .count(),
            1
        );
        assert!(text.contains(
            "# HELP probewatch_checkpoint_step Training step of the run's newest checkpoint whose core stage is published, in steps.\n"
        ));
        assert!(text.contains("probewatch_checkpoint_step{run=\"r\"} 1 1700000000.000\n"));
        let escaped = encode_history(&[(0.0, snapshot("a\"b\\c\nd", 1, &["X"]))]);
        assert!(escaped.contains(r#"run="a\"b\\c\nd""#), "{escaped}");
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.publish(snapshot("we\"ird\\run", 1, &["a\nb"]));
        let text = m.encode().unwrap();
        assert!(
            text.contains("run=\"we\\\"ird\\\\run\"") && text.contains("label=\"a\\nb\""),
            "{text}"
        );
    }
}
