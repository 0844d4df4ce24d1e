//! The metric families probewatch exposes: every name, kind and help text,
//! in one table ([`Fam`] and its spec), and the buckets of the duration
//! histograms. This is the only place in the workspace that spells a metric
//! name.
//!
//! Deliberately not here: label sets and values (the snapshots and the
//! [`crate::Metrics`] handles carry those), and anything about the stages or
//! outcomes of an analysis: their names reach the crate as label values, so
//! this crate does not depend on the analysis crate.

use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the `probewatch_analysis_duration_seconds`
/// buckets: from 50 ms (a small dump) to 30 minutes (a large model on many
/// layers), roughly ×2–2.5 apart.
pub const ANALYSIS_DURATION_BUCKETS: [f64; 15] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
];

/// Kind of a metric family as exposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Gauge,
    Counter,
    Histogram,
}

/// Every metric family probewatch exposes. The first [`SNAPSHOT_FAMILIES`]
/// come from snapshots (collector), the rest are registered families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fam {
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

/// The number of families: one past the last variant of [`Fam`].
const FAMILIES: usize = Fam::LatePending as usize + 1;

/// The families the collector writes, in exposition order; `Fam as usize` is
/// the index (tested).
pub(crate) const SNAPSHOT_FAMILIES: [Fam; 26] = [
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

/// How one family is exposed.
struct Spec {
    /// The family this row describes (its index in [`SPECS`]).
    fam: Fam,
    /// Exposed name; for counters the sample name, with `_total`.
    name: &'static str,
    kind: Kind,
    /// One sentence ending in a full stop.
    help: &'static str,
}

/// Name, kind and help text of every family, in [`Fam`] order (checked
/// when the crate is built).
const SPECS: [Spec; FAMILIES] = {
    use Kind::{Counter, Gauge, Histogram};
    [
        Spec {
            fam: Fam::CheckpointStep,
            name: "probewatch_checkpoint_step",
            kind: Gauge,
            help: "Training step of the run's newest checkpoint whose core stage is published, in steps.",
        },
        Spec {
            fam: Fam::CheckpointTimestamp,
            name: "probewatch_checkpoint_timestamp_seconds",
            kind: Gauge,
            help: "Modification time of the run's newest checkpoint whose core stage is published, in seconds since the Unix epoch.",
        },
        Spec {
            fam: Fam::Clusters,
            name: "probewatch_clusters",
            kind: Gauge,
            help: "Number of DirectProbe clusters of the layer's train split at the newest checkpoint whose clusters stage is done (probewatch_stage_step).",
        },
        Spec {
            fam: Fam::Labels,
            name: "probewatch_labels",
            kind: Gauge,
            help: "Number of labels present in the layer's train split at the newest checkpoint.",
        },
        Spec {
            fam: Fam::ClustersBaseline,
            name: "probewatch_clusters_baseline",
            kind: Gauge,
            help: "Number of DirectProbe clusters of the layer's train split at the baseline checkpoint.",
        },
        Spec {
            fam: Fam::LayerScale,
            name: "probewatch_layer_scale",
            kind: Gauge,
            help: "RMS distance of the layer's train points to their mean at the newest checkpoint, in representation units.",
        },
        Spec {
            fam: Fam::LabelMinDistance,
            name: "probewatch_label_min_distance",
            kind: Gauge,
            help: "Smallest label distance from this label to any other label at the newest checkpoint whose clusters stage is done, in representation units.",
        },
        Spec {
            fam: Fam::LabelMinDistanceNormalized,
            name: "probewatch_label_min_distance_normalized",
            kind: Gauge,
            help: "Smallest label distance from this label to any other label divided by the layer scale, dimensionless.",
        },
        Spec {
            fam: Fam::LabelMinDistanceNormalizedBest,
            name: "probewatch_label_min_distance_normalized_best",
            kind: Gauge,
            help: "Largest normalized smallest label distance of this label over the run's analysed checkpoints up to the newest, dimensionless.",
        },
        Spec {
            fam: Fam::LabelMinDistanceBaseline,
            name: "probewatch_label_min_distance_baseline",
            kind: Gauge,
            help: "Smallest label distance from this label to any other label at the baseline checkpoint, in representation units.",
        },
        Spec {
            fam: Fam::LabelMinDistanceChangeRatio,
            name: "probewatch_label_min_distance_change_ratio",
            kind: Gauge,
            help: "Normalized smallest label distance now divided by its value at the baseline checkpoint minus 1, as a ratio (-0.3 means it shrank by 30 percent).",
        },
        Spec {
            fam: Fam::LabelClusters,
            name: "probewatch_label_clusters",
            kind: Gauge,
            help: "Number of DirectProbe clusters of this label in the layer's train split at the newest checkpoint whose clusters stage is done.",
        },
        Spec {
            fam: Fam::CentroidMovement,
            name: "probewatch_centroid_movement",
            kind: Gauge,
            help: "Euclidean distance between this label's train centroid now and at the baseline checkpoint, in representation units.",
        },
        Spec {
            fam: Fam::SpatialSimilarity,
            name: "probewatch_spatial_similarity",
            kind: Gauge,
            help: "Pearson correlation between the layer's label-distance vector and the reference's (baseline checkpoint, previous checkpoint, or this checkpoint's test split), from -1 to 1.",
        },
        Spec {
            fam: Fam::ProbeAccuracy,
            name: "probewatch_probe_accuracy",
            kind: Gauge,
            help: "Nearest-cluster accuracy of the split's points against the layer's train clusters, as a fraction from 0 to 1.",
        },
        Spec {
            fam: Fam::ClassifierAccuracy,
            name: "probewatch_classifier_accuracy",
            kind: Gauge,
            help: "Mean over seeds of the accuracy on the split's points of the MLP classifier probe fitted on the layer's train (or subtrain) split, as a fraction from 0 to 1.",
        },
        Spec {
            fam: Fam::ClassifierAccuracyStd,
            name: "probewatch_classifier_accuracy_std",
            kind: Gauge,
            help: "Standard deviation over seeds of the MLP classifier probe's accuracy on the split's points, as a fraction from 0 to 1.",
        },
        Spec {
            fam: Fam::LabelsIncreased,
            name: "probewatch_labels_min_distance_increased",
            kind: Gauge,
            help: "Number of labels whose smallest label distance is larger than at the baseline checkpoint.",
        },
        Spec {
            fam: Fam::LabelsDecreased,
            name: "probewatch_labels_min_distance_decreased",
            kind: Gauge,
            help: "Number of labels whose smallest label distance is smaller than at the baseline checkpoint.",
        },
        Spec {
            fam: Fam::LabelPairDistance,
            name: "probewatch_label_pair_distance",
            kind: Gauge,
            help: "Label distance between label_a and label_b at the newest checkpoint whose clusters stage is done, in representation units.",
        },
        Spec {
            fam: Fam::LabelHullMinDistance,
            name: "probewatch_label_hull_min_distance",
            kind: Gauge,
            help: "Smallest distance between the convex hull of all of this label's train points and that of another label's at the newest checkpoint (0 when they intersect), in representation units.",
        },
        Spec {
            fam: Fam::LabelHullMinDistanceNormalized,
            name: "probewatch_label_hull_min_distance_normalized",
            kind: Gauge,
            help: "Smallest label-hull distance from this label to any other divided by the layer scale at the newest checkpoint, dimensionless.",
        },
        Spec {
            fam: Fam::LabelHullMinDistanceNormalizedBaseline,
            name: "probewatch_label_hull_min_distance_normalized_baseline",
            kind: Gauge,
            help: "Smallest label-hull distance from this label to any other divided by the layer scale at the baseline checkpoint, dimensionless.",
        },
        Spec {
            fam: Fam::HullSimilarity,
            name: "probewatch_hull_similarity",
            kind: Gauge,
            help: "Pearson correlation between the layer's label-hull-distance vector and the reference's (baseline checkpoint, previous checkpoint, or this checkpoint's test split), from -1 to 1.",
        },
        Spec {
            fam: Fam::StageStep,
            name: "probewatch_stage_step",
            kind: Gauge,
            help: "Training step of the checkpoint whose values of this late analysis stage the layer's series show, in steps.",
        },
        Spec {
            fam: Fam::BuildInfo,
            name: "probewatch_build_info",
            kind: Gauge,
            help: "Always 1; the version label is the running probewatch version.",
        },
        Spec {
            fam: Fam::Analyzed,
            name: "probewatch_checkpoints_analyzed_total",
            kind: Counter,
            help: "Number of checkpoints of the run analysed since the process started.",
        },
        Spec {
            fam: Fam::Failed,
            name: "probewatch_checkpoints_failed_total",
            kind: Counter,
            help: "Number of checkpoints of the run whose analysis failed since the process started, by kind of failure.",
        },
        Spec {
            fam: Fam::Skipped,
            name: "probewatch_checkpoints_skipped_total",
            kind: Counter,
            help: "Number of checkpoints of the run seen but not analysed since the process started.",
        },
        Spec {
            fam: Fam::Duration,
            name: "probewatch_analysis_duration_seconds",
            kind: Histogram,
            help: "Wall-clock time to analyse one checkpoint of the run, in seconds.",
        },
        Spec {
            fam: Fam::QueueDepth,
            name: "probewatch_queue_depth",
            kind: Gauge,
            help: "Number of checkpoints of the run waiting to be analysed.",
        },
        Spec {
            fam: Fam::ShardInfo,
            name: "probewatch_shard_info",
            kind: Gauge,
            help: "Always 1; the labels give this process's shard number and the number of shards the (task, layer) pairs are split over (0 and 1 when not sharded).",
        },
        Spec {
            fam: Fam::ConfigReloadSuccessful,
            name: "probewatch_config_last_reload_successful",
            kind: Gauge,
            help: "1 when the last configuration load (start or SIGHUP reload) succeeded, 0 when a reload failed and the previous configuration keeps running.",
        },
        Spec {
            fam: Fam::ConfigReloadTimestamp,
            name: "probewatch_config_last_reload_success_timestamp_seconds",
            kind: Gauge,
            help: "Time of the last successful configuration load (start or SIGHUP reload), in seconds since the Unix epoch.",
        },
        Spec {
            fam: Fam::ConfigReloads,
            name: "probewatch_config_reloads_total",
            kind: Counter,
            help: "Configuration reloads asked for with SIGHUP, by result (success or failure).",
        },
        Spec {
            fam: Fam::StageDuration,
            name: "probewatch_stage_duration_seconds",
            kind: Histogram,
            help: "Wall-clock time one analysis stage of one checkpoint of the run took, pauses for newer checkpoints' core stage excluded, in seconds.",
        },
        Spec {
            fam: Fam::StageOutcomes,
            name: "probewatch_stage_outcomes_total",
            kind: Counter,
            help: "Analysis stages of the run's checkpoints by stage and outcome (done, abandoned when the late-stage budget ran out, skipped for a newer checkpoint, deferred by a shutdown, failed) since the process started.",
        },
        Spec {
            fam: Fam::AnalysisStep,
            name: "probewatch_analysis_step",
            kind: Gauge,
            help: "Training step of the checkpoint whose analysis stage is running now, in steps (present only while it runs).",
        },
        Spec {
            fam: Fam::AnalysisStarted,
            name: "probewatch_analysis_started_timestamp_seconds",
            kind: Gauge,
            help: "Start time of the analysis stage running now, in seconds since the Unix epoch (present only while it runs).",
        },
        Spec {
            fam: Fam::AnalysisLayersDone,
            name: "probewatch_analysis_layers_done",
            kind: Gauge,
            help: "Layers of the running analysis stage finished so far (present only while it runs).",
        },
        Spec {
            fam: Fam::AnalysisLayers,
            name: "probewatch_analysis_layers",
            kind: Gauge,
            help: "Layers the running analysis stage works on (present only while it runs).",
        },
        Spec {
            fam: Fam::LatePending,
            name: "probewatch_late_stages_pending",
            kind: Gauge,
            help: "Number of the run's checkpoints whose late analysis stages are running or waiting to run (0 when every late value is up to date).",
        },
    ]
};

// A row out of place would give a family another's name: refuse to build.
const _: () = {
    let mut i = 0;
    while i < FAMILIES {
        assert!(SPECS[i].fam as usize == i, "SPECS must be in Fam order");
        i += 1;
    }
};

impl Fam {
    /// Exposed name (for counters: the sample name, with `_total`), kind and
    /// help text (one sentence ending in a full stop).
    pub(crate) const fn spec(self) -> (&'static str, Kind, &'static str) {
        let spec = &SPECS[self as usize];
        (spec.name, spec.kind, spec.help)
    }

    /// Registers `metric` under this family's name and help as
    /// `prometheus-client` expects them: without the `_total` it appends to
    /// counters and without the full stop it appends to help texts.
    pub(crate) fn register<M>(self, registry: &mut Registry, metric: M)
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
