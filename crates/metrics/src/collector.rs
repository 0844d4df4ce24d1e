//! Scrape-time encoding of the published snapshots: [`gather`] turns
//! snapshots into the series of every snapshot family, and the
//! [`SnapshotCollector`] registered with the registry writes them as gauges
//! whenever the exposition is encoded.
//!
//! A scrape clones the snapshots' `Arc`s under a short read lock and encodes
//! outside it, so it never mixes two checkpoints of one run and never waits
//! for the analysis. Series whose value is `None` or not finite are left out;
//! a family without any series is left out entirely.
//!
//! Deliberately not here: publishing and removing snapshots (that is
//! [`crate::Metrics`]), the registered process counters, and the text format
//! itself (`prometheus-client` writes the live exposition; the backfill
//! document is `history`'s).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use crate::families::{Fam, SNAPSHOT_FAMILIES};
use crate::snapshot::{LabelSnapshot, LayerSnapshot, RunSnapshot};

/// The current snapshot of every run.
pub(crate) type Snapshots = Arc<RwLock<BTreeMap<String, Arc<RunSnapshot>>>>;

/// Encodes the published snapshots at scrape time.
#[derive(Debug)]
pub(crate) struct SnapshotCollector {
    pub(crate) snapshots: Snapshots,
}

/// A sample value: counts stay integers in the exposition.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Value {
    Count(u64),
    Real(f64),
}

/// The label pairs of one series, in exposition order.
pub(crate) type Labels<'a> = Vec<(&'static str, Cow<'a, str>)>;

/// One series of a collector family.
pub(crate) struct Sample<'a> {
    pub(crate) labels: Labels<'a>,
    pub(crate) value: Value,
}

/// Gathers the series of every snapshot family from `runs`, indexed by
/// `Fam as usize`. Non-finite values are left out like `None`.
pub(crate) fn gather<'a>(runs: &'a [Arc<RunSnapshot>]) -> Vec<Vec<Sample<'a>>> {
    let mut out = Gathered {
        families: SNAPSHOT_FAMILIES.iter().map(|_| Vec::new()).collect(),
    };
    for r in runs {
        out.run(r);
    }
    out.push(
        Fam::BuildInfo,
        vec![("version", Cow::Borrowed(env!("CARGO_PKG_VERSION")))],
        Value::Count(1),
    );
    out.families
}

/// The series [`gather`] has collected so far, per snapshot family.
struct Gathered<'a> {
    families: Vec<Vec<Sample<'a>>>,
}

impl<'a> Gathered<'a> {
    /// Adds one series of `fam`, unless its value is not finite.
    fn push(&mut self, fam: Fam, labels: Labels<'a>, value: Value) {
        if let Value::Real(v) = value
            && !v.is_finite()
        {
            return;
        }
        self.families[fam as usize].push(Sample { labels, value });
    }

    /// The series of one run: its checkpoint's, then each layer's.
    fn run(&mut self, r: &'a RunSnapshot) {
        let run = || vec![("run", Cow::Borrowed(r.run.as_str()))];
        self.push(Fam::CheckpointStep, run(), Value::Count(r.step));
        self.push(
            Fam::CheckpointTimestamp,
            run(),
            Value::Real(r.timestamp_seconds),
        );
        for l in &r.layers {
            self.layer(&r.run, l);
        }
    }

    /// The series of one layer, labelled `{run, task, layer}` and, where the
    /// family has one, a further label (`label`, `reference`, `stage`,
    /// `split`, `label_a` and `label_b`).
    fn layer(&mut self, run: &'a str, l: &'a LayerSnapshot) {
        let base: Labels<'a> = vec![
            ("run", Cow::Borrowed(run)),
            ("task", Cow::Borrowed(l.task.as_str())),
            ("layer", Cow::Owned(l.layer.to_string())),
        ];
        let with = |key: &'static str, value: &str| {
            let mut labels = base.clone();
            labels.push((key, Cow::Owned(value.to_owned())));
            labels
        };
        if let Some(n) = l.clusters {
            self.push(Fam::Clusters, base.clone(), Value::Count(n));
        }
        self.push(Fam::Labels, base.clone(), Value::Count(l.labels));
        if let Some(n) = l.clusters_baseline {
            self.push(Fam::ClustersBaseline, base.clone(), Value::Count(n));
        }
        self.push(Fam::LayerScale, base.clone(), Value::Real(l.scale));
        for s in &l.label_stats {
            self.label(&with("label", &s.label), s);
        }
        let references = [
            (Fam::SpatialSimilarity, "baseline", l.similarity_baseline),
            (Fam::SpatialSimilarity, "previous", l.similarity_previous),
            (Fam::SpatialSimilarity, "test", l.similarity_test),
            (Fam::HullSimilarity, "baseline", l.hull_similarity_baseline),
            (Fam::HullSimilarity, "previous", l.hull_similarity_previous),
            (Fam::HullSimilarity, "test", l.hull_similarity_test),
        ];
        for (fam, reference, v) in references {
            if let Some(v) = v {
                self.push(fam, with("reference", reference), Value::Real(v));
            }
        }
        for (stage, step) in &l.stage_steps {
            self.push(Fam::StageStep, with("stage", stage), Value::Count(*step));
        }
        for (split, v) in &l.accuracy {
            self.push(Fam::ProbeAccuracy, with("split", split), Value::Real(*v));
        }
        for (split, mean, std) in &l.classifier_accuracy {
            let labels = with("split", split);
            self.push(Fam::ClassifierAccuracy, labels.clone(), Value::Real(*mean));
            self.push(Fam::ClassifierAccuracyStd, labels, Value::Real(*std));
        }
        if let Some(n) = l.labels_increased {
            self.push(Fam::LabelsIncreased, base.clone(), Value::Count(n));
        }
        if let Some(n) = l.labels_decreased {
            self.push(Fam::LabelsDecreased, base.clone(), Value::Count(n));
        }
        for (a, b, d) in l.label_pairs.iter().flatten() {
            let mut labels = with("label_a", a);
            labels.push(("label_b", Cow::Borrowed(b.as_str())));
            self.push(Fam::LabelPairDistance, labels, Value::Real(*d));
        }
    }

    /// The series of one label of a layer, all labelled `labels`.
    fn label(&mut self, labels: &Labels<'a>, s: &LabelSnapshot) {
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
                self.push(fam, labels.clone(), Value::Real(v));
            }
        }
        if let Some(n) = s.clusters {
            self.push(Fam::LabelClusters, labels.clone(), Value::Count(n));
        }
    }
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
