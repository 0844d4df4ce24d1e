//! The point sets a hull query runs on, and the inner products it needs:
//! [`PointSet`] (borrowed rows of a layer matrix, optionally with the
//! layer's [`Gram`] matrix), [`Gram`] (the centred inner products of a
//! layer's rows), [`ClusterGram`] (the same for one cluster, for many
//! point queries against it), the layer's scale ([`rms_radius`]), and the
//! dot products every pass over the rows uses, accumulated in `f64` in a
//! fixed order. Data and kernels only: no solving here (that is
//! `solver`), and no I/O.

use std::fmt;

/// A set of points: rows of a row-major `f32` matrix, all of them or a subset.
///
/// Borrowed, never copied: DirectProbe clusters are index lists into the
/// layer's matrix.
#[derive(Clone, Copy)]
pub struct PointSet<'a> {
    pub(super) data: &'a [f32],
    dim: usize,
    pub(super) rows: Option<&'a [usize]>,
    pub(super) gram: Option<&'a Gram>,
}

impl fmt::Debug for PointSet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PointSet")
            .field("len", &self.len())
            .field("dim", &self.dim)
            .finish()
    }
}

impl<'a> PointSet<'a> {
    /// All rows of a row-major matrix with `dim` columns.
    ///
    /// # Panics
    /// If `data.len()` is not a multiple of `dim` or `dim` is 0.
    pub fn all(data: &'a [f32], dim: usize) -> Self {
        assert!(dim > 0 && data.len() % dim == 0, "matrix shape mismatch");
        PointSet {
            data,
            dim,
            rows: None,
            gram: None,
        }
    }

    /// The rows `rows` of a row-major matrix with `dim` columns.
    ///
    /// # Panics
    /// If the shape is inconsistent or a row index is out of range.
    pub fn subset(data: &'a [f32], dim: usize, rows: &'a [usize]) -> Self {
        assert!(dim > 0 && data.len() % dim == 0, "matrix shape mismatch");
        let n = data.len() / dim;
        assert!(rows.iter().all(|&r| r < n), "row index out of range");
        PointSet {
            data,
            dim,
            rows: Some(rows),
            gram: None,
        }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        match self.rows {
            Some(r) => r.len(),
            None => self.data.len() / self.dim,
        }
    }

    /// Whether the set has no point.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Dimension of the points.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The rows `rows`, with the Gram matrix when there is one.
    pub fn subset_with(
        data: &'a [f32],
        dim: usize,
        rows: &'a [usize],
        gram: Option<&'a Gram>,
    ) -> Self {
        let s = PointSet::subset(data, dim, rows);
        match gram {
            Some(g) => s.with_gram(g),
            None => s,
        }
    }

    /// The same set, with the Gram matrix of all rows of its matrix: hull
    /// queries between two sets carrying the same Gram matrix (over the same
    /// matrix) run in the Gram space.
    ///
    /// # Panics
    /// If the Gram matrix is not over this matrix's rows.
    pub fn with_gram(self, gram: &'a Gram) -> Self {
        assert_eq!(gram.len(), self.data.len() / self.dim, "Gram matrix size");
        PointSet {
            gram: Some(gram),
            ..self
        }
    }

    /// The row of the matrix holding the `k`-th point.
    #[inline(always)]
    pub fn row_index(&self, k: usize) -> usize {
        match self.rows {
            Some(rows) => rows[k],
            None => k,
        }
    }

    /// The `k`-th point of the set.
    #[inline(always)]
    pub fn point(&self, k: usize) -> &'a [f32] {
        let r = self.row_index(k);
        &self.data[r * self.dim..(r + 1) * self.dim]
    }
}

/// `⟨a, x⟩` with an `f32` row and an `f64` vector, accumulated in `f64`.
///
/// Eight independent accumulators over `chunks_exact` so the compiler
/// vectorises it (no bounds checks in the loop); the summation order is
/// fixed, so results do not depend on anything but the inputs.
#[inline(always)]
pub(crate) fn dot_fx(a: &[f32], x: &[f64]) -> f64 {
    let n = a.len().min(x.len());
    let (a, x) = (&a[..n], &x[..n]);
    let mut s = [0.0f64; 8];
    let ac = a.chunks_exact(8);
    let xc = x.chunks_exact(8);
    let (ar, xr) = (ac.remainder(), xc.remainder());
    for (ca, cx) in ac.zip(xc) {
        for k in 0..8 {
            s[k] += ca[k] as f64 * cx[k];
        }
    }
    let mut t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (&u, &v) in ar.iter().zip(xr) {
        t += u as f64 * v;
    }
    t
}

/// `⟨x, y⟩` in `f64`, same scheme as [`dot_fx`].
#[inline(always)]
pub(crate) fn dot_xx(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let mut s = [0.0f64; 8];
    let xc = x.chunks_exact(8);
    let yc = y.chunks_exact(8);
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (cx, cy) in xc.zip(yc) {
        for k in 0..8 {
            s[k] += cx[k] * cy[k];
        }
    }
    let mut t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (&u, &v) in xr.iter().zip(yr) {
        t += u * v;
    }
    t
}

/// Squared Euclidean distance of two `f32` rows, in `f64`.
#[inline(always)]
pub(crate) fn dist2_ff(a: &[f32], b: &[f32]) -> f64 {
    let mut s = [0.0f64; 4];
    let n = a.len().min(b.len());
    let chunks = n / 4;
    for c in 0..chunks {
        let i = c * 4;
        for k in 0..4 {
            let d = a[i + k] as f64 - b[i + k] as f64;
            s[k] += d * d;
        }
    }
    let mut t = (s[0] + s[1]) + (s[2] + s[3]);
    for i in chunks * 4..n {
        let d = a[i] as f64 - b[i] as f64;
        t += d * d;
    }
    t
}

/// Inner products of the rows of a layer matrix, centred at their mean,
/// for the Gram-space solver.
///
/// With it, a hull query costs `O(n·m)` per iteration (n points, m corral
/// vertices) instead of `O(n·d)`, and nothing in the loop touches the
/// d-dimensional rows. Built once per layer when `n² · 8` bytes fit the
/// caller's budget ([`Gram::fits`]); larger layers use the primal solver,
/// which never holds an n×n matrix. Centring keeps the entries at the scale
/// of the data's spread rather than its distance from the origin, which
/// limits cancellation in `‖x‖² = λᵀGλ`.
#[derive(Clone)]
pub struct Gram {
    n: usize,
    k: Vec<f64>,
}

impl fmt::Debug for Gram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gram").field("n", &self.n).finish()
    }
}

impl Gram {
    /// Default memory budget for a layer's Gram matrix: 256 MiB
    /// (n ≤ 5,792 rows).
    pub const DEFAULT_BUDGET_BYTES: usize = 256 << 20;

    /// Whether the Gram matrix of `n` rows fits in `budget` bytes.
    pub fn fits(n: usize, budget: usize) -> bool {
        n.checked_mul(n)
            .and_then(|m| m.checked_mul(8))
            .is_some_and(|b| b <= budget)
    }

    /// Computes the Gram matrix of all rows of `data` (`dim` columns),
    /// centred at their mean, in `f64`: fixed strips of 64 rows in parallel,
    /// each strip one sequential blocked matrix product (faer), so the
    /// result is the same for any thread count. The lower triangle is
    /// computed and mirrored, so the matrix is exactly symmetric.
    pub fn new(data: &[f32], dim: usize) -> Gram {
        Gram::with_mean(data, dim).0
    }

    /// [`Gram::new`], also returning the mean the rows were centred at.
    pub(super) fn with_mean(data: &[f32], dim: usize) -> (Gram, Vec<f64>) {
        use rayon::prelude::*;
        assert!(dim > 0 && data.len() % dim == 0, "matrix shape mismatch");
        let n = data.len() / dim;
        let mut mean = vec![0.0f64; dim];
        for r in data.chunks_exact(dim) {
            for (m, &v) in mean.iter_mut().zip(r) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
        let centred = faer::Mat::<f64>::from_fn(n, dim, |i, j| data[i * dim + j] as f64 - mean[j]);
        // Row strips of the lower triangle, each one sequential matrix
        // product (faer's blocked kernel): the strips are fixed by `n`, not
        // by the thread count, so the result is too.
        const STRIP: usize = 64;
        let starts: Vec<usize> = (0..n).step_by(STRIP).collect();
        let strips: Vec<faer::Mat<f64>> = starts
            .par_iter()
            .map(|&r0| {
                let rows = STRIP.min(n - r0);
                let cols = r0 + rows;
                let mut out = faer::Mat::<f64>::zeros(rows, cols);
                faer::linalg::matmul::matmul(
                    out.as_mut(),
                    faer::Accum::Replace,
                    centred.as_ref().subrows(r0, rows),
                    centred.as_ref().subrows(0, cols).transpose(),
                    1.0,
                    faer::Par::Seq,
                );
                out
            })
            .collect();
        let mut k = vec![0.0f64; n * n];
        for (&r0, strip) in starts.iter().zip(&strips) {
            for i in 0..strip.nrows() {
                let row = r0 + i;
                for j in 0..=row {
                    k[row * n + j] = strip[(i, j)];
                }
            }
        }
        // Mirror the lower triangle.
        for i in 0..n {
            for j in i + 1..n {
                k[i * n + j] = k[j * n + i];
            }
        }
        (Gram { n, k }, mean)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether it has no row.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    #[inline(always)]
    pub(super) fn row(&self, i: usize) -> &[f64] {
        &self.k[i * self.n..(i + 1) * self.n]
    }

    #[inline(always)]
    pub(super) fn at(&self, i: usize, j: usize) -> f64 {
        self.k[i * self.n + j]
    }
}

/// The RMS distance of `rows` of a row-major matrix to their mean: the
/// "scale" of a layer (DESIGN §2) that tolerances and normalised distances
/// are relative to. 0 for no rows.
pub fn rms_radius(data: &[f32], dim: usize, rows: &[usize]) -> f64 {
    if rows.is_empty() {
        return 0.0;
    }
    let mut mean = vec![0.0f64; dim];
    for &r in rows {
        for (m, &v) in mean.iter_mut().zip(&data[r * dim..(r + 1) * dim]) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= rows.len() as f64);
    let ss: f64 = rows
        .iter()
        .map(|&r| {
            data[r * dim..(r + 1) * dim]
                .iter()
                .zip(&mean)
                .map(|(&v, m)| {
                    let t = v as f64 - m;
                    t * t
                })
                .sum::<f64>()
        })
        .sum();
    (ss / rows.len() as f64).sqrt()
}

/// The Gram matrix of one cluster (its rows centred at their mean), for
/// many point-to-hull queries against it
/// ([`point_distance_with`](super::point_distance_with)): each then costs
/// one `O(n·d)` pass for the point's inner products and `O(n·m)` per
/// iteration, instead of `O(n·d)` per iteration. Used for nearest-cluster
/// search on layers too large for a whole-layer [`Gram`].
#[derive(Clone, Debug)]
pub struct ClusterGram {
    pub(super) gram: Gram,
    pub(super) mean: Vec<f64>,
}

impl ClusterGram {
    /// Computes the Gram matrix of the points of `set`.
    pub fn new(set: PointSet<'_>) -> ClusterGram {
        let dim = set.dim();
        let rows: Vec<f32> = (0..set.len())
            .flat_map(|t| set.point(t).iter().copied())
            .collect();
        let (gram, mean) = Gram::with_mean(&rows, dim);
        ClusterGram { gram, mean }
    }

    /// Bytes held for a cluster of `n` points.
    pub fn bytes(n: usize) -> usize {
        n.saturating_mul(n).saturating_mul(8)
    }
}
