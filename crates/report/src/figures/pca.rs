//! Two-component principal-component analysis for the centroid-path and
//! difference-vector figures: [`pca2`], centred or about the origin.
//!
//! Deterministic (fixed start vectors, fixed signs), so the same points give
//! the same bits; never forms a d×d matrix. It chooses no points and draws
//! nothing: the figures that use it do.

/// A two-component principal-component projection.
#[derive(Clone, Debug, PartialEq)]
pub struct Pca2 {
    /// The mean that was subtracted (zeros when not centred).
    pub mean: Vec<f64>,
    /// The two unit axes (zero vectors where the data has no variance).
    pub axes: [Vec<f64>; 2],
    /// Share of the total (centred or not) sum of squares along each axis.
    pub explained: [f64; 2],
    /// Each point's coordinates on the axes.
    pub coords: Vec<[f64; 2]>,
}

/// Iterations of [`pca2`] at most: a figure needs a few digits; with two
/// nearly equal variances the plane is found and the axes inside it may
/// keep turning (any of them shows the data as well).
const PCA_MAX_ITERATIONS: usize = 500;

/// The two leading principal axes of `points` (all of one width), centred on
/// their mean or, with `center = false`, about the origin (so the origin
/// keeps its meaning, e.g. "did not move").
///
/// Orthogonal iteration with a 2×2 Rayleigh–Ritz step on `XᵀX` applied as
/// `Xᵀ(Xv)` (never a d×d matrix), from fixed start vectors; signs are fixed
/// so each axis's largest-magnitude component is positive. Deterministic.
pub fn pca2(points: &[Vec<f64>], center: bool) -> Pca2 {
    let d = points.first().map_or(0, Vec::len);
    let n = points.len();
    let mut mean = vec![0.0; d];
    if center && n > 0 {
        for p in points {
            for (m, v) in mean.iter_mut().zip(p) {
                *m += v;
            }
        }
        for m in &mut mean {
            *m /= n as f64;
        }
    }
    let x: Vec<Vec<f64>> = points
        .iter()
        .map(|p| p.iter().zip(&mean).map(|(v, m)| v - m).collect())
        .collect();
    let total: f64 = x.iter().flatten().map(|v| v * v).sum();
    let zero = || Pca2 {
        mean: mean.clone(),
        axes: [vec![0.0; d], vec![0.0; d]],
        explained: [0.0, 0.0],
        coords: vec![[0.0, 0.0]; n],
    };
    if d == 0 || n == 0 || total <= 0.0 || !total.is_finite() || x.iter().any(|r| r.len() != d) {
        return zero();
    }
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    // The leading eigenpairs of XᵀX (d×d) equal those of XXᵀ (n×n) mapped
    // through Xᵀ: iterate on the smaller one, never forming a d×d matrix.
    let (mut axes, lambda) = if n < d {
        let g: Vec<Vec<f64>> = (0..n)
            .map(|i| (0..n).map(|j| dot(&x[i], &x[j])).collect())
            .collect();
        let (u, lambda) = top2(n, &|v: &[f64]| g.iter().map(|row| dot(row, v)).collect());
        let lift = |u: &[f64]| -> Vec<f64> {
            let mut a = vec![0.0; d];
            for (row, &w) in x.iter().zip(u) {
                for (o, r) in a.iter_mut().zip(row) {
                    *o += w * r;
                }
            }
            let norm = dot(&a, &a).sqrt();
            if norm > 0.0 {
                a.iter_mut().for_each(|v| *v /= norm);
            }
            a
        };
        ([lift(&u[0]), lift(&u[1])], lambda)
    } else {
        let apply = |v: &[f64]| -> Vec<f64> {
            let mut out = vec![0.0; d];
            for row in &x {
                let s = dot(row, v);
                if s != 0.0 {
                    for (o, a) in out.iter_mut().zip(row) {
                        *o += s * a;
                    }
                }
            }
            out
        };
        top2(d, &apply)
    };
    let mut lambda = lambda;
    if lambda[0] <= 0.0 {
        return zero();
    }
    if lambda[1] <= 1e-12 * lambda[0] {
        axes[1] = vec![0.0; d];
        lambda[1] = 0.0;
    }
    for v in &mut axes {
        let big = v
            .iter()
            .copied()
            .fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
        if big < 0.0 {
            v.iter_mut().for_each(|x| *x = -*x);
        }
    }
    let coords = x
        .iter()
        .map(|r| [dot(r, &axes[0]), dot(r, &axes[1])])
        .collect();
    Pca2 {
        mean,
        explained: [lambda[0] / total, lambda[1] / total],
        axes,
        coords,
    }
}

/// The two leading eigenpairs of the symmetric positive semi-definite
/// operator `apply` on R^m: orthogonal iteration with a 2×2 Rayleigh–Ritz
/// step, from fixed start vectors (deterministic).
fn top2(m: usize, apply: &dyn Fn(&[f64]) -> Vec<f64>) -> ([Vec<f64>; 2], [f64; 2]) {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let normalize = |v: &mut Vec<f64>| {
        let n = dot(v, v).sqrt();
        if n > 0.0 {
            v.iter_mut().for_each(|x| *x /= n);
        }
        n
    };
    let mut rng = geometry::synth::Rng::new(0x9ca2);
    let mut v1: Vec<f64> = (0..m).map(|_| rng.normal()).collect();
    let mut v2: Vec<f64> = (0..m).map(|_| rng.normal()).collect();
    normalize(&mut v1);
    let mut lambda = [0.0f64; 2];
    for _ in 0..PCA_MAX_ITERATIONS {
        // Orthonormal basis of span(C v1, C v2) by Gram–Schmidt.
        let mut a = apply(&v1);
        let mut b = apply(&v2);
        if normalize(&mut a) == 0.0 {
            return ([vec![0.0; m], vec![0.0; m]], [0.0, 0.0]);
        }
        let p = dot(&b, &a);
        b.iter_mut().zip(&a).for_each(|(y, x)| *y -= p * x);
        if normalize(&mut b) <= 1e-300 {
            b = vec![0.0; m];
        }
        // Rayleigh–Ritz on the 2×2 projection.
        let (ca, cb) = (apply(&a), apply(&b));
        let (m11, m12, m22) = (dot(&a, &ca), dot(&a, &cb), dot(&b, &cb));
        let tr = m11 + m22;
        let det_term = ((m11 - m22) * (m11 - m22) / 4.0 + m12 * m12).sqrt();
        let (l1, l2) = (tr / 2.0 + det_term, (tr / 2.0 - det_term).max(0.0));
        // Eigenvector of the larger eigenvalue: (m12, l1 - m11) or (l1 - m22, m12).
        let (mut c, mut s) = if (l1 - m11).abs() > (l1 - m22).abs() {
            (m12, l1 - m11)
        } else {
            (l1 - m22, m12)
        };
        let r = (c * c + s * s).sqrt();
        if r > 0.0 {
            c /= r;
            s /= r;
        } else {
            (c, s) = (1.0, 0.0);
        }
        let n1: Vec<f64> = a.iter().zip(&b).map(|(x, y)| c * x + s * y).collect();
        let n2: Vec<f64> = a.iter().zip(&b).map(|(x, y)| -s * x + c * y).collect();
        let change = 1.0 - dot(&n1, &v1).abs();
        v1 = n1;
        v2 = n2;
        let done = change < 1e-11 && (lambda[0] - l1).abs() <= 1e-10 * l1.max(1e-300);
        lambda = [l1, l2];
        if done {
            break;
        }
    }
    ([v1, v2], lambda)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::close;

    #[test]
    fn pca_of_points_on_a_line_finds_the_line() {
        // Points t·(3, 4, 0) + (1, 1, 1): one direction, (0.6, 0.8, 0).
        let pts: Vec<Vec<f64>> = (0..7)
            .map(|t| {
                let t = t as f64 - 2.0;
                vec![1.0 + 3.0 * t, 1.0 + 4.0 * t, 1.0]
            })
            .collect();
        let p = pca2(&pts, true);
        assert!(close(p.axes[0][0], 0.6, 1e-9) && close(p.axes[0][1], 0.8, 1e-9));
        assert!(close(p.explained[0], 1.0, 1e-12));
        assert_eq!(p.explained[1], 0.0);
        assert_eq!(p.axes[1], vec![0.0; 3]);
        for (i, c) in p.coords.iter().enumerate() {
            let t = i as f64 - 2.0 - 1.0; // mean of t is 1
            assert!(close(c[0], 5.0 * t, 1e-9), "{c:?}");
        }
    }

    #[test]
    fn pca_of_a_rotated_ellipse_recovers_its_axes_and_variances() {
        // A 2-D ellipse with semi-axes 5 and 2, rotated by 30° and embedded in
        // the plane spanned by e1 and e3 of R^4, centred at (1, 2, 3, 4).
        let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
        let pts: Vec<Vec<f64>> = (0..12)
            .map(|i| {
                let a = i as f64 * std::f64::consts::PI / 6.0;
                let (u, v) = (5.0 * a.cos(), 2.0 * a.sin());
                let (x, z) = (c * u - s * v, s * u + c * v);
                vec![1.0 + x, 2.0, 3.0 + z, 4.0]
            })
            .collect();
        let p = pca2(&pts, true);
        // Axis 1 = ±(c, 0, s, 0), sign: largest component positive.
        assert!(
            close(p.axes[0][0], c, 1e-8) && close(p.axes[0][2], s, 1e-8),
            "{:?}",
            p.axes
        );
        assert!(close(p.axes[1][0].abs(), s, 1e-8) && close(p.axes[1][2].abs(), c, 1e-8));
        assert!(p.axes[1][2] > 0.0);
        // Variances 25/2 and 4/2 over a full turn: shares 25/29 and 4/29.
        assert!(close(p.explained[0], 25.0 / 29.0, 1e-10));
        assert!(close(p.explained[1], 4.0 / 29.0, 1e-10));
        assert!(close(p.mean[0], 1.0, 1e-12) && close(p.mean[3], 4.0, 1e-12));
        assert!(close(p.coords[0][0], 5.0, 1e-8) && close(p.coords[0][1].abs(), 0.0, 1e-8));
    }

    #[test]
    fn pca_with_fewer_points_than_dimensions_goes_through_the_gram_matrix() {
        // The same ellipse in R^40 (12 points < 40 dimensions): same axes
        // (embedded), same variance shares, same coordinates up to sign.
        let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
        let pts: Vec<Vec<f64>> = (0..12)
            .map(|i| {
                let a = i as f64 * std::f64::consts::PI / 6.0;
                let (u, v) = (5.0 * a.cos(), 2.0 * a.sin());
                let mut p = vec![0.5; 40];
                p[7] += c * u - s * v;
                p[31] += s * u + c * v;
                p
            })
            .collect();
        let p = pca2(&pts, true);
        assert!(
            close(p.axes[0][7], c, 1e-8) && close(p.axes[0][31], s, 1e-8),
            "{:?}",
            p.axes[0]
        );
        assert!(close(p.explained[0], 25.0 / 29.0, 1e-10));
        assert!(close(p.explained[1], 4.0 / 29.0, 1e-10));
        assert!(close(p.coords[0][0], 5.0, 1e-8) && close(p.coords[3][1].abs(), 2.0, 1e-8));
        let norm: f64 = p.axes[1].iter().map(|v| v * v).sum();
        assert!(close(norm, 1.0, 1e-12));
    }

    #[test]
    fn uncentred_pca_keeps_the_origin() {
        // Two points on a ray from the origin: not centred, the axis is the
        // ray and the coordinates are the distances from the origin.
        let p = pca2(&[vec![0.0, 2.0], vec![0.0, 4.0]], false);
        assert_eq!(p.mean, vec![0.0, 0.0]);
        assert!(close(p.coords[0][0], 2.0, 1e-12) && close(p.coords[1][0], 4.0, 1e-12));
        assert_eq!(
            pca2(&vec![vec![1.0, 1.0]; 3], true).coords,
            vec![[0.0, 0.0]; 3]
        );
        assert!(pca2(&[], true).coords.is_empty());
    }
}
