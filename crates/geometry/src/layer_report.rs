//! What the analysis of one layer reports: [`LayerReport`] (every measure
//! of every stage, serialised as the daemon stores it and `probe --json`
//! prints it) and its parts, and the keys of its similarity map.
//!
//! Plain data, below [`crate::memory`] (which keeps the last report) and
//! [`crate::measures`] (which computes it); it computes nothing itself.
//! Reports stored before a field existed still read back: new fields have
//! serde defaults.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::classifier::{ClassifierReport, MeanStd};
use crate::directprobe::{Cluster, ClusterStats};

/// Summary of the cluster distances of a layer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ClusterDistanceSummary {
    /// Pairs of clusters of different labels measured.
    pub pairs: usize,
    /// Pairs at distance 0 (intersecting).
    pub zero_pairs: usize,
    /// Smallest cluster distance.
    pub min: Option<f64>,
    /// Mean cluster distance.
    pub mean: Option<f64>,
    /// Largest cluster distance.
    pub max: Option<f64>,
    /// `min`, `mean`, `max` divided by the layer's scale.
    pub normalized: Option<[f64; 3]>,
}

/// Everything measured on one layer.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct LayerReport {
    /// Layer index (0 = embedding output); set by the caller.
    pub layer: usize,
    /// Whether the `clusters` stage is in this report: DirectProbe's
    /// partition and everything measured on it (`clusters`,
    /// `clusters_per_label`, `label_distance*`, `min_label_distance*`,
    /// `cluster_distance`, `accuracy`, `cluster_stats`). A core-only report
    /// ([`measure_core`](crate::measures::measure_core)) has those fields
    /// empty. Reports stored before stages existed hold everything (the
    /// default).
    #[serde(default = "yes")]
    pub clustered: bool,
    /// Fit-split points per label index (the core stage; empty in reports
    /// stored before it existed).
    #[serde(default)]
    pub label_counts: Vec<usize>,
    /// `[a, b, h(a, b)]` for every pair of labels present in the fit split,
    /// `a < b`: the distance between the convex hull of *all* fit-split
    /// points of `a` and that of `b` (0 when they intersect). Exact and
    /// cheap (one solve per pair, no clustering); equal to `label_distance`
    /// when every label is one cluster, never larger otherwise.
    #[serde(default)]
    pub label_hull_distance: Vec<(u32, u32, f64)>,
    /// `label_hull_distance` divided by `scale`.
    #[serde(default)]
    pub label_hull_distance_normalized: Vec<(u32, u32, f64)>,
    /// Per label: min over other labels of `h(a, b)`; `None` when absent.
    #[serde(default)]
    pub min_label_hull_distance: Vec<Option<f64>>,
    /// `min_label_hull_distance` divided by `scale`.
    #[serde(default)]
    pub min_label_hull_distance_normalized: Vec<Option<f64>>,
    /// Whether the partition was frozen (re-used from the baseline) rather
    /// than clustered on this checkpoint.
    pub frozen_partition: bool,
    /// Number of DirectProbe clusters on the train split.
    pub clusters: usize,
    /// Labels present in the train split.
    pub labels_present: usize,
    /// Clusters per label index (0 for labels absent from train).
    pub clusters_per_label: Vec<usize>,
    /// `[a, b, d(a, b)]` for every pair of labels present in train, `a < b`.
    pub label_distance: Vec<(u32, u32, f64)>,
    /// `label_distance` divided by `scale`.
    pub label_distance_normalized: Vec<(u32, u32, f64)>,
    /// Per label: min over other labels of `d(a, b)`; `None` when absent.
    pub min_label_distance: Vec<Option<f64>>,
    /// `min_label_distance` divided by `scale`.
    pub min_label_distance_normalized: Vec<Option<f64>>,
    /// RMS distance of the train points to their mean.
    pub scale: f64,
    /// Cluster distances (clusters of different labels).
    pub cluster_distance: ClusterDistanceSummary,
    /// Nearest-cluster accuracy per non-train split with points.
    pub accuracy: BTreeMap<String, f64>,
    /// Spatial similarities: `train_test` is the Pearson correlation of the
    /// train and test label-distance vectors (DirectProbe on both splits;
    /// the `test_clusters` stage), `train_test_hull` that of the train and
    /// test label-hull-distance vectors (the core stage).
    pub similarity: BTreeMap<String, Option<f64>>,
    /// Number of DirectProbe clusters on the test split (when run).
    pub test_clusters: Option<usize>,
    /// Points per split name.
    pub split_sizes: BTreeMap<String, usize>,
    /// Labels resolved by the exact shortcut, work counters.
    pub cluster_stats: ClusterStats,
    /// Per label: the centroid of its train points (`None` when absent).
    /// Not serialised by default (large); [`compare`](crate::measures::compare) needs it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub centroids: Vec<Option<Vec<f64>>>,
    /// The train clusters (not serialised; for warm starts and reports).
    #[serde(skip)]
    pub train_clusters: Vec<Cluster>,
    /// Label names (index → name) when the caller adds them (the daemon
    /// stores them with each layer); empty from
    /// [`measure_layer`](crate::measures::measure_layer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_names: Vec<String>,
    /// Classifier-probe accuracy per split other than the fit split (mean
    /// and standard deviation over seeds); set by the caller when asked
    /// for ([`crate::classifier::probe`]), absent from the JSON otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier_accuracy: Option<BTreeMap<String, MeanStd>>,
    /// The classifier probe's search and chosen configuration (its
    /// accuracies are in `classifier_accuracy`); absent when not computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier: Option<ClassifierReport>,
    /// Wall-clock seconds; set by the caller (0 here: the core does not
    /// time itself).
    pub seconds: f64,
}

fn yes() -> bool {
    true
}

/// Key of the core stage's train/test similarity in
/// [`LayerReport::similarity`].
pub const TRAIN_TEST_HULL: &str = "train_test_hull";

/// Key of the `test_clusters` stage's train/test similarity.
pub const TRAIN_TEST: &str = "train_test";
