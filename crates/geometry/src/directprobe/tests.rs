//! DirectProbe on small instances with known partitions (two triangles,
//! XOR), every result checked by [`verify`], and its interruption.

use super::*;

fn run(points: &[f32], labels: &[u32], n_labels: usize) -> Clustering {
    let rows: Vec<usize> = (0..labels.len()).collect();
    let input = LabelledPoints {
        data: points,
        dim: 2,
        labels,
        n_labels,
        rows: &rows,
        gram: None,
    };
    let params = HullParams {
        scale: Some(1.0),
        ..HullParams::default()
    };
    let c = cluster(input, &params);
    verify(input, &c, &params).unwrap();
    c
}

/// XOR made of four square blobs (half-width 0.6 around (±1, ±1)):
/// the union of two same-label blobs always cuts through the other
/// label's blobs, so each label needs two clusters.
fn xor_blobs() -> (Vec<f32>, Vec<u32>) {
    let mut pts = Vec::new();
    let mut labels = Vec::new();
    for (cx, cy, l) in [
        (1.0f32, 1.0f32, 0u32),
        (-1.0, -1.0, 0),
        (1.0, -1.0, 1),
        (-1.0, 1.0, 1),
    ] {
        for (dx, dy) in [
            (-0.6f32, -0.6f32),
            (0.6, -0.6),
            (0.6, 0.6),
            (-0.6, 0.6),
            (0.0, 0.0),
        ] {
            pts.extend([cx + dx, cy + dy]);
            labels.push(l);
        }
    }
    (pts, labels)
}

#[test]
fn xor_gives_four_clusters() {
    let (pts, labels) = xor_blobs();
    let c = run(&pts, &labels, 2);
    assert_eq!(c.clusters.len(), 4);
    assert_eq!(c.clusters_per_label(2), vec![2, 2]);
    assert_eq!(c.stats.resolved_labels, 0);
    for cl in &c.clusters {
        assert_eq!(cl.members.len(), 5);
    }
}

/// Four single points in XOR: both diagonals are at the same centroid
/// distance; the tie goes to the smaller ids (label 0's pair), whose
/// diagonal then blocks label 1's: 3 clusters, not 4.
#[test]
fn an_interruption_stops_it_and_an_uninterrupted_run_is_unchanged() {
    use std::sync::atomic::AtomicUsize;
    let (pts, labels) = xor_blobs();
    let rows: Vec<usize> = (0..labels.len()).collect();
    let input = LabelledPoints {
        data: &pts,
        dim: 2,
        labels: &labels,
        n_labels: 2,
        rows: &rows,
        gram: None,
    };
    let params = HullParams {
        scale: Some(1.0),
        ..HullParams::default()
    };
    let want = cluster(input, &params);
    // Counting the questions without ever stopping: the same result.
    let asked = AtomicUsize::new(0);
    let count = || {
        asked.fetch_add(1, atomic::Ordering::Relaxed);
        true
    };
    let (got, _) = cluster_interruptible(input, &params, None, &count).unwrap();
    assert_eq!(got.clusters, want.clusters);
    let n = asked.load(atomic::Ordering::Relaxed);
    assert!(n > 1, "asked {n} times");
    // Stopping at every question in turn: always `Interrupted`.
    for stop_at in 0..n {
        let k = AtomicUsize::new(0);
        let stop = || k.fetch_add(1, atomic::Ordering::Relaxed) < stop_at;
        assert_eq!(
            cluster_interruptible(input, &params, None, &stop).err(),
            Some(Interrupted),
            "stopped at question {stop_at} of {n}"
        );
    }
}

#[test]
fn xor_four_points_tie_break() {
    let pts = [0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0];
    let c = run(&pts, &[0, 0, 1, 1], 2);
    assert_eq!(c.clusters_per_label(2), vec![1, 2]);
    // Swapping the label order swaps the outcome.
    let c = run(&pts, &[1, 1, 0, 0], 2);
    assert_eq!(c.clusters_per_label(2), vec![2, 1]);
}

#[test]
fn two_triangles_are_two_clusters() {
    let pts = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 5.0, 5.0, 6.0, 5.0, 5.0, 6.0];
    let c = run(&pts, &[0, 0, 0, 1, 1, 1], 2);
    assert_eq!(c.clusters.len(), 2);
    assert_eq!(c.stats.resolved_labels, 2);
    assert_eq!(c.clusters[0].members, vec![0, 1, 2]);
}

#[test]
fn coinciding_points_of_different_labels() {
    // Same point with two labels, plus separable extras.
    let pts = [0.0, 0.0, 0.0, 0.0, 3.0, 0.0, -3.0, 0.0];
    let c = run(&pts, &[0, 1, 0, 1], 2);
    // Point 0 and 1 coincide: no union containing both 0 and a label-1
    // cluster containing 1 can be formed.
    assert_eq!(c.clusters.len(), 4);
}

#[test]
fn xor_with_extra_label_resolved() {
    let (mut pts, mut labels) = xor_blobs();
    pts.extend([10.0, 10.0, 11.0, 10.0]);
    labels.extend([2, 2]);
    let c = run(&pts, &labels, 3);
    assert_eq!(c.clusters_per_label(3), vec![2, 2, 1]);
    assert!(c.resolved[2] && !c.resolved[0]);
}
