//! Temporary: every public path of the crate before the refactor (compile check).
#![allow(unused_imports, missing_docs)]
use probewatch_geometry::classifier::{
    ClassifierError, ClassifierParams, ClassifierReport, MeanStd, MlpConfig, Model, SearchEntry,
    SplitMix64, TrainParams, Trained, carve, default_configs, full_grid, hold_out, probe,
    probe_interruptible, search_configs, train,
};
use probewatch_geometry::directprobe::{
    Cluster, ClusterStats, Clustering, LabelledPoints, cluster, cluster_interruptible,
    cluster_with, verify,
};
use probewatch_geometry::hull::{
    ClusterGram, Gram, HullParams, HullResult, PointSet, Query, Verdict, WarmStart, hull_distance,
    point_distance, point_distance_with, rms_radius,
};
use probewatch_geometry::measures::{
    ClusterDistanceSummary, CompareError, Interrupted, KeepGoing, LabelDistance, LayerComparison,
    LayerInput, LayerReport, MeasureParams, ParamError, Partition, TRAIN, TRAIN_TEST,
    TRAIN_TEST_HULL, compare, core_part, distance_similarity, fingerprint, layer_gram,
    measure_clusters, measure_core, measure_layer, measure_layer_with, measure_test_clusters,
    measure_test_hulls, never_stop, pearson, reusable,
};
use probewatch_geometry::memory::{
    ClusteringMemory, CompactWarm, LayerMemory, cluster_key, members_key,
};
use probewatch_geometry::synth::{Rng, SyntheticLayer, Variant, generate};
use probewatch_geometry::working_set::{DIRECT_UP_TO, hull_distance_ws};
use probewatch_geometry::{
    HullParams as H2, HullResult as H3, Interrupted as I2, KeepGoing as K2, PointSet as P2,
    Verdict as V2, never_stop as n2,
};

#[test]
fn paths_resolve() {
    let _ = Gram::DEFAULT_BUDGET_BYTES;
    let mut r = SplitMix64::new(1);
    let _ = r.next_u64();
    let mut v = [1, 2, 3];
    r.shuffle(&mut v);
    let mut x = Rng::new(1);
    let _ = (x.next_u64(), x.uniform(), x.normal());
    let c = CompactWarm::default();
    let _ = (c.bytes(), c.to_warm());
    let _ = LayerMemory::default().bytes();
}
