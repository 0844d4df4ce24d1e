//! The solver on small instances with closed-form answers, in every space.

use super::*;

fn d(a: &[f32], b: &[f32], dim: usize) -> HullResult {
    hull_distance(
        PointSet::all(a, dim),
        PointSet::all(b, dim),
        Query::Distance,
        &HullParams::default(),
        None,
    )
}

fn close(x: f64, y: f64) -> bool {
    (x - y).abs() <= 1e-9 * (1.0 + y.abs())
}

#[test]
fn two_points() {
    let r = d(&[0.0, 0.0, 0.0], &[3.0, 4.0, 12.0], 3);
    assert_eq!(r.verdict, Verdict::Separated);
    assert!(close(r.distance(), 13.0), "{r:?}");
    assert!(r.lower <= r.upper);
}

#[test]
fn point_and_segment() {
    // Segment (0,0)-(4,0), point (1,3): distance 3. Point (6,3): √(4+9).
    let seg = [0.0, 0.0, 4.0, 0.0];
    let r = point_distance(
        PointSet::all(&seg, 2),
        &[1.0, 3.0],
        Query::Distance,
        &HullParams::default(),
    );
    assert!(close(r.distance(), 3.0), "{r:?}");
    let r = point_distance(
        PointSet::all(&seg, 2),
        &[6.0, 3.0],
        Query::Distance,
        &HullParams::default(),
    );
    assert!(close(r.distance(), 13f64.sqrt()), "{r:?}");
}

#[test]
fn parallel_segments() {
    // y = 0 and y = 2.5, overlapping in x: distance 2.5.
    let r = d(&[0.0, 0.0, 5.0, 0.0], &[3.0, 2.5, 9.0, 2.5], 2);
    assert!(close(r.distance(), 2.5), "{r:?}");
    // Not overlapping in x: corner to corner.
    let r = d(&[0.0, 0.0, 1.0, 0.0], &[4.0, 4.0, 9.0, 4.0], 2);
    assert!(close(r.distance(), 5.0), "{r:?}");
}

#[test]
fn point_inside_simplex() {
    let tri = [0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 4.0];
    let r = point_distance(
        PointSet::all(&tri, 3),
        &[0.5, 0.5, 0.5],
        Query::Distance,
        &HullParams::default(),
    );
    assert_eq!(r.verdict, Verdict::Intersecting, "{r:?}");
    assert_eq!(r.distance(), 0.0);
    // Outside, beyond the face x+y+z = 4: distance (6-4)/√3.
    let r = point_distance(
        PointSet::all(&tri, 3),
        &[2.0, 2.0, 2.0],
        Query::Distance,
        &HullParams::default(),
    );
    assert!(close(r.distance(), 2.0 / 3f64.sqrt()), "{r:?}");
}

#[test]
fn coinciding_points_intersect() {
    let r = d(&[1.0, 2.0, 5.0, 5.0], &[1.0, 2.0, -3.0, 0.0], 2);
    assert_eq!(r.verdict, Verdict::Intersecting);
    assert_eq!(r.distance(), 0.0);
}

#[test]
fn crossing_segments_intersect() {
    let r = d(&[-1.0, 0.0, 1.0, 0.0], &[0.0, -1.0, 0.0, 1.0], 2);
    assert_eq!(r.verdict, Verdict::Intersecting, "{r:?}");
}

#[test]
fn separability_stops_early_and_agrees() {
    let a = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0];
    let b = [3.0, 3.0, 4.0, 3.0, 3.0, 4.0];
    let r = hull_distance(
        PointSet::all(&a, 2),
        PointSet::all(&b, 2),
        Query::Separability,
        &HullParams::default(),
        None,
    );
    assert_eq!(r.verdict, Verdict::Separated);
    assert!(r.lower > 0.0);
}

/// The same query in the primal and in the Gram space, over one matrix
/// holding A's rows then B's.
fn both_spaces(a: &[f32], b: &[f32], dim: usize) -> (HullResult, HullResult) {
    let mut all = a.to_vec();
    all.extend_from_slice(b);
    let na = a.len() / dim;
    let nb = b.len() / dim;
    let ra: Vec<usize> = (0..na).collect();
    let rb: Vec<usize> = (na..na + nb).collect();
    let g = Gram::new(&all, dim);
    let p = hull_distance(
        PointSet::subset(&all, dim, &ra),
        PointSet::subset(&all, dim, &rb),
        Query::Distance,
        &HullParams::default(),
        None,
    );
    let q = hull_distance(
        PointSet::subset(&all, dim, &ra).with_gram(&g),
        PointSet::subset(&all, dim, &rb).with_gram(&g),
        Query::Distance,
        &HullParams::default(),
        None,
    );
    (p, q)
}

#[test]
fn gram_space_agrees_with_primal() {
    let cases: Vec<(Vec<f32>, Vec<f32>, usize, f64)> = vec![
        (vec![0.0, 0.0, 0.0], vec![3.0, 4.0, 12.0], 3, 13.0),
        (vec![0.0, 0.0, 5.0, 0.0], vec![3.0, 2.5, 9.0, 2.5], 2, 2.5),
        (vec![0.0, 0.0, 1.0, 0.0], vec![4.0, 4.0, 9.0, 4.0], 2, 5.0),
        (
            vec![0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 4.0],
            vec![2.0, 2.0, 2.0],
            3,
            2.0 / 3f64.sqrt(),
        ),
        (
            vec![0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 4.0],
            vec![0.5, 0.5, 0.5],
            3,
            0.0,
        ),
        (vec![-1.0, 0.0, 1.0, 0.0], vec![0.0, -1.0, 0.0, 1.0], 2, 0.0),
        (vec![1.0, 2.0, 5.0, 5.0], vec![1.0, 2.0, -3.0, 0.0], 2, 0.0),
    ];
    for (a, b, dim, want) in cases {
        let (p, q) = both_spaces(&a, &b, dim);
        assert_eq!(p.verdict, q.verdict, "{p:?} {q:?}");
        assert!(close(p.distance(), want), "{p:?}");
        assert!(close(q.distance(), want), "{q:?}");
        assert!(q.lower <= q.upper);
    }
}

#[test]
fn point_queries_with_a_cluster_gram() {
    let tri = [0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 4.0];
    let set = PointSet::all(&tri, 3);
    let cg = ClusterGram::new(set);
    for (p, want) in [
        ([2.0f32, 2.0, 2.0], 2.0 / 3f64.sqrt()),
        ([0.5, 0.5, 0.5], 0.0),
        ([-3.0, 0.0, 0.0], 3.0),
        ([0.0, 0.0, 4.0], 0.0),
    ] {
        let r = point_distance_with(set, &cg, &p, Query::Distance, &HullParams::default());
        let q = point_distance(set, &p, Query::Distance, &HullParams::default());
        assert!(close(r.distance(), want), "{p:?} {r:?}");
        assert_eq!(r.verdict, q.verdict);
        assert!(r.lower <= r.upper);
    }
}

#[test]
fn gram_fits_budget() {
    assert!(Gram::fits(1000, 8_000_000));
    assert!(!Gram::fits(1001, 8_000_000));
    assert!(!Gram::fits(usize::MAX, usize::MAX));
}

#[test]
fn warm_start_reproduces() {
    let a = [0.0, 0.0, 1.0, 0.2, 0.3, 1.0, 0.9, 0.8];
    let b = [3.0, 3.0, 4.0, 3.1, 2.9, 4.0, 2.5, 2.6];
    let cold = d(&a, &b, 2);
    let warm = hull_distance(
        PointSet::all(&a, 2),
        PointSet::all(&b, 2),
        Query::Distance,
        &HullParams::default(),
        Some(&cold.warm_start()),
    );
    assert!(close(cold.distance(), warm.distance()));
    assert!(warm.iterations <= cold.iterations);
}

#[test]
fn compact_warm_round_trip() {
    let w = CompactWarm {
        direction: vec![1.0, -2.5],
        pairs: vec![(0, 3), (2, 1)],
    };
    let ws = w.to_warm();
    assert_eq!(ws.direction, vec![1.0, -2.5]);
    assert_eq!(ws.pairs, vec![(0, 3), (2, 1)]);
    assert_eq!(w.bytes(), 2 * 4 + 2 * 8);
}
