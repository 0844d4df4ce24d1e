//! DirectProbe on the shared real dumps, checked by brute force: the
//! partitions of the PS-role dump at layers 0 (coinciding points of
//! different labels) and 6 satisfy DirectProbe's two guarantees, the Gram
//! and primal solvers give the same clusters, and a comparison of two
//! checkpoints of the cross-task run behaves as the data's README says.

use analysis::{AnalysisOptions, analyse_dump};
use geometry::directprobe::{LabelledPoints, cluster, verify};
use geometry::hull::{Gram, HullParams, rms_radius};
use geometry::measures::compare;
use source::dump::ActivationDump;

mod common;
use common::shared_dumps;

fn check_layer(layer: usize, want_clusters: usize) {
    let dump =
        ActivationDump::open(&shared_dumps().join("streusle-ps_role-minilm.safetensors")).unwrap();
    let task = dump.task(None).unwrap();
    let m = dump.layer(task, layer).unwrap();
    let data = m.as_slice().unwrap();
    let train = task.train_indices(dump.splits());
    let gram = Gram::new(data, task.dim);
    let params = HullParams {
        scale: Some(rms_radius(data, task.dim, &train)),
        ..HullParams::default()
    };
    let input = LabelledPoints {
        data,
        dim: task.dim,
        labels: &task.labels,
        n_labels: task.label_names.len(),
        rows: &train,
        gram: Some(&gram),
    };
    let c = cluster(input, &params);
    assert_eq!(c.clusters.len(), want_clusters);
    assert_eq!(c.stats.undetermined, 0);
    // Every train row in exactly one cluster, one label per cluster.
    let mut seen = vec![0u8; task.n];
    for cl in &c.clusters {
        for &r in &cl.members {
            seen[r] += 1;
            assert_eq!(task.labels[r], cl.label);
        }
    }
    for &r in &train {
        assert_eq!(seen[r], 1);
    }
    verify(input, &c, &params).unwrap();
    // The primal solver gives the same partition.
    let primal = cluster(
        LabelledPoints {
            gram: None,
            ..input
        },
        &params,
    );
    assert_eq!(primal.clusters, c.clusters);
}

#[test]
fn layer6_partition_is_valid() {
    check_layer(6, 40);
}

#[test]
fn layer0_partition_is_valid_despite_coinciding_points() {
    check_layer(0, 306);
}

#[test]
fn crosstask_comparison_against_baseline() {
    let opts = AnalysisOptions {
        task: Some("ps_fxn".into()),
        layers: Some(vec![3, 6]),
        keep_centroids: true,
        ..AnalysisOptions::default()
    };
    let base = ActivationDump::open(&shared_dumps().join("crosstask/step-0.safetensors")).unwrap();
    let late =
        ActivationDump::open(&shared_dumps().join("crosstask/step-150.safetensors")).unwrap();
    let b = analyse_dump(&base, &opts, &|_| {}).unwrap();
    let l = analyse_dump(&late, &opts, &|_| {}).unwrap();
    assert_eq!((b.step, l.step), (Some(0), Some(150)));
    for (rb, rl) in b.layers.iter().zip(&l.layers) {
        let c = compare(rb, rl).unwrap();
        let moves: Vec<f64> = c.centroid_movement.iter().flatten().copied().collect();
        assert_eq!(moves.len(), 36);
        let mean_move = moves.iter().sum::<f64>() / moves.len() as f64;
        // The data README: mean centroid movement by step 150 is 11.499 at
        // layer 6 and 7.741 at layer 3 (from the same F16 values).
        let want = if rb.layer == 6 { 11.499 } else { 7.741 };
        assert!(
            (mean_move - want).abs() < 2e-3,
            "layer {}: {mean_move}",
            rb.layer
        );
        assert_eq!(c.grew + c.shrank, 36);
        let s = c.similarity.unwrap();
        assert!(s > 0.0 && s < 1.0, "{s}");
        // Against itself: no movement, similarity 1.
        let same = compare(rb, rb).unwrap();
        assert_eq!(same.similarity, Some(1.0));
        assert_eq!(same.grew + same.shrank, 0);
    }
}

/// Warm-started analyses along the shared fine-tuning sequence give the cold
/// analyses' results: same partitions, same test clusters and accuracies,
/// label distances within the solver's relative gap (1e-4 each way).
#[test]
fn incremental_equals_cold_on_the_crosstask_sequence() {
    use analysis::{TaskMemory, analyse_dump_with};
    use geometry::measures::Partition;
    let dir = shared_dumps().join("crosstask");
    let opts = AnalysisOptions {
        task: Some("ps_role".into()),
        ..Default::default()
    };
    let mut memory = TaskMemory::new();
    for step in [0, 50, 100, 150] {
        let dump = ActivationDump::open(&dir.join(format!("step-{step}.safetensors"))).unwrap();
        let (warm, next) =
            analyse_dump_with(&dump, &opts, &memory, Partition::Recluster, &|_| {}).unwrap();
        let cold = analyse_dump(&dump, &opts, &|_| {}).unwrap();
        assert_eq!(warm.layers.len(), 7);
        for (c, w) in cold.layers.iter().zip(&warm.layers) {
            assert_eq!(
                c.train_clusters, w.train_clusters,
                "step {step} layer {}",
                c.layer
            );
            assert_eq!(c.test_clusters, w.test_clusters);
            assert_eq!(c.accuracy, w.accuracy, "step {step} layer {}", c.layer);
            assert_eq!(c.label_distance.len(), w.label_distance.len());
            for (&(a, b, x), &(a2, b2, y)) in c.label_distance.iter().zip(&w.label_distance) {
                assert_eq!((a, b), (a2, b2));
                assert!(
                    (x - y).abs() <= 2e-4 * x.max(y) + 1e-9,
                    "step {step} layer {} pair ({a},{b}): cold {x}, warm {y}",
                    c.layer
                );
            }
            assert!(!w.frozen_partition);
        }
        if step > 0 {
            // The memory was used: label-pair solves were warm-started.
            assert!(memory.values().all(|m| !m.train.label_pairs.is_empty()));
        }
        memory = next;
    }
}

/// The frozen-partition mode keeps the baseline's partition: applied to the
/// baseline itself it reproduces the exact analysis; on a later checkpoint
/// it reports the baseline's clusters and counts overlaps as zero-distance
/// pairs.
#[test]
fn frozen_partition_keeps_the_baseline_partition() {
    use analysis::{TaskMemory, analyse_dump_with};
    use geometry::measures::Partition;
    let dir = shared_dumps().join("crosstask");
    let opts = AnalysisOptions {
        task: Some("ps_fxn".into()),
        layers: Some(vec![0, 6]),
        ..Default::default()
    };
    let base = ActivationDump::open(&dir.join("step-0.safetensors")).unwrap();
    let (cold, memory) =
        analyse_dump_with(&base, &opts, &TaskMemory::new(), Partition::Frozen, &|_| {}).unwrap();
    assert!(cold.layers.iter().all(|l| !l.frozen_partition));
    let (again, _) = analyse_dump_with(&base, &opts, &memory, Partition::Frozen, &|_| {}).unwrap();
    for (c, f) in cold.layers.iter().zip(&again.layers) {
        assert!(f.frozen_partition);
        assert_eq!(c.train_clusters, f.train_clusters);
        assert_eq!(c.clusters, f.clusters);
        assert_eq!(c.accuracy, f.accuracy);
        assert_eq!(f.cluster_distance.zero_pairs, c.cluster_distance.zero_pairs);
        for (&(_, _, x), &(_, _, y)) in c.label_distance.iter().zip(&f.label_distance) {
            assert!((x - y).abs() <= 2e-4 * x.max(y) + 1e-9);
        }
    }
    let later = ActivationDump::open(&dir.join("step-150.safetensors")).unwrap();
    let (frozen, _) =
        analyse_dump_with(&later, &opts, &memory, Partition::Frozen, &|_| {}).unwrap();
    let exact = analyse_dump(&later, &opts, &|_| {}).unwrap();
    for ((b, f), e) in cold.layers.iter().zip(&frozen.layers).zip(&exact.layers) {
        assert_eq!(b.train_clusters, f.train_clusters);
        assert_eq!(f.cluster_stats.hull_queries, 0);
        // Same points, a partition that is not DirectProbe's for them: the
        // distances are generally not the exact analysis's.
        assert_eq!(f.split_sizes, e.split_sizes);
    }
}
