//! The one geometric primitive: the Euclidean distance between the convex
//! hulls of two finite point sets, with a certificate.
//!
//! `dist(A, B) = min ‖Aα − Bβ‖` over α, β in probability simplices. It is the
//! width (2 × margin) of the hard-margin linear SVM separating A from B and is
//! 0 exactly when the hulls intersect (DESIGN §2; DirectProbe, Zhou & Srikumar
//! 2021, §3). Equivalently it is the norm of the minimum-norm point of the
//! Minkowski difference `conv(A) − conv(B) = conv{aᵢ − bⱼ}`.
//!
//! **Algorithm: Wolfe's minimum-norm-point method** (Wolfe 1976, with the
//! numerically careful minor cycle of Chakrabarty, Jain & Kothari 2014) run on
//! the Minkowski difference, whose linear-minimisation oracle is cheap:
//! `argmin_z ⟨x, z⟩` over `z = aᵢ − bⱼ` is the pair `(argminᵢ ⟨x, aᵢ⟩,
//! argmaxⱼ ⟨x, bⱼ⟩)`, one pass over the points. The active set ("corral") holds
//! affinely independent difference vertices, never more than `d + 1`; the
//! affine minimiser over the corral comes from an incrementally updated
//! Cholesky factor of its lifted Gram matrix `G + c²·11ᵀ` (O(m²) per vertex
//! added or removed). Why Wolfe and not Gilbert / MDM / pairwise Frank–Wolfe:
//! those converge linearly at best and crawl on the ill-conditioned, nearly
//! degenerate pairs DirectProbe produces, while Wolfe's method is finite — it
//! stops at the exact optimum of the right corral, so the certified gap
//! usually collapses from ~10⁻¹ to ~10⁻¹² in a single step — and it needs
//! only the m×m Gram of the corral (m ≤ d + 1), so the primal solver's memory
//! stays O(n·d + m·d + m²). When a layer's n×n [`Gram`] matrix fits the
//! caller's budget, the same iteration runs on Gram lookups instead
//! (`O(n·m)` per iteration, no d-dimensional work in the loop).
//!
//! **Certificate.** Every iterate `x = Aα − Bβ` is a feasible pair of hull
//! points, so `‖x‖` is an upper bound. The same `x` is a direction, and
//! `(minᵢ⟨x, aᵢ⟩ − maxⱼ⟨x, bⱼ⟩)/‖x‖` is a lower bound (the width of the slab
//! between the two supporting hyperplanes). The best lower bound seen, with its
//! direction, is returned next to the upper bound.
//!
//! **Stopping.** A distance query stops when `upper − lower ≤ rel_gap·upper`
//! (default 10⁻⁴). Hulls are declared intersecting when the upper bound falls
//! to `intersect_rel_tol × scale` or below (default 10⁻⁶ × scale, where
//! `scale` is given by the caller — DirectProbe passes the layer's RMS radius
//! so every query of a layer uses the same absolute tolerance and verdicts stay
//! monotone under set inclusion — or else the largest distance of a point of
//! A ∪ B to the first point of A). Rationale: f32 activations carry ~7
//! significant digits, so in a few hundred dimensions a distance below 10⁻⁶ of
//! the data's extent is below the precision of the input itself. A
//! separability query stops as soon as the lower bound exceeds that tolerance
//! (separated) or the upper bound falls under it (intersecting). All dot
//! products accumulate in `f64`.
//!
//! What this module does not do: choose which pairs to query (that is
//! [`super::directprobe`]), run queries in parallel (callers do; only
//! building a [`Gram`] matrix uses rayon, row by row), or any I/O.

use std::fmt;

/// A set of points: rows of a row-major `f32` matrix, all of them or a subset.
///
/// Borrowed, never copied: DirectProbe clusters are index lists into the
/// layer's matrix.
#[derive(Clone, Copy)]
pub struct PointSet<'a> {
    data: &'a [f32],
    dim: usize,
    rows: Option<&'a [usize]>,
    gram: Option<&'a Gram>,
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

/// What a query asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Query {
    /// The distance, to `rel_gap`.
    Distance,
    /// Only whether the hulls are separated (distance above the tolerance):
    /// stops as soon as either is certified.
    Separability,
    /// The distance if it is at most the given value; stops as soon as the
    /// lower bound exceeds it (nearest-cluster search).
    DistanceUpTo(f64),
}

/// Solver parameters. Build with [`HullParams::default`] and adjust.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HullParams {
    /// Stop when `upper − lower ≤ rel_gap × upper`.
    pub rel_gap: f64,
    /// Hulls whose distance is at most `intersect_rel_tol × scale` count as
    /// intersecting.
    pub intersect_rel_tol: f64,
    /// The data's scale for the tolerance; `None`: the largest distance of a
    /// point of A ∪ B to the first point of A.
    pub scale: Option<f64>,
    /// Upper limit on major iterations; `None`: `10·(|A| + |B|) + 1000`.
    pub max_iterations: Option<usize>,
    /// In the Gram spaces, recompute both bounds and the direction from the
    /// rows at the end (a few `O(n·d)` passes), so the certificate does not
    /// rest on Gram-space rounding (~ε·scale²/‖x‖). Turned off only where
    /// the answer decides an argmin and is not reported (nearest-cluster
    /// search).
    pub explicit_certificate: bool,
}

impl Default for HullParams {
    fn default() -> Self {
        HullParams {
            rel_gap: 1e-4,
            intersect_rel_tol: 1e-6,
            scale: None,
            max_iterations: None,
            explicit_certificate: true,
        }
    }
}

/// The answer's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Certified: the lower bound exceeds the intersection tolerance.
    Separated,
    /// Certified: a pair of hull points closer than the tolerance exists.
    Intersecting,
    /// The solver stalled or hit its iteration limit with the tolerance
    /// inside `[lower, upper]` (never seen on real data; callers treat it as
    /// intersecting, the conservative choice for DirectProbe).
    Undetermined,
}

/// A certified answer.
#[derive(Clone, Debug)]
pub struct HullResult {
    /// Verdict against the intersection tolerance.
    pub verdict: Verdict,
    /// Certified lower bound on the distance (≥ 0).
    pub lower: f64,
    /// Certified upper bound: the distance of a feasible pair of hull points.
    pub upper: f64,
    /// The absolute intersection tolerance used.
    pub tolerance: f64,
    /// Whether the relative-gap target was met (or the verdict is
    /// `Intersecting`); false when stopped early by the query or a limit.
    pub converged: bool,
    /// Major iterations (vertices added).
    pub iterations: usize,
    /// The direction that gave the lower bound (points from B towards A),
    /// unnormalised; empty if none was found. Reusable as a warm start.
    pub direction: Vec<f64>,
    /// Positions in A and weights of the final hull point of A.
    pub support_a: Vec<(usize, f64)>,
    /// Positions in B and weights of the final hull point of B.
    pub support_b: Vec<(usize, f64)>,
    /// The final active set: vertex pairs `(position in A, position in B)`.
    pub vertices: Vec<(usize, usize)>,
}

impl HullResult {
    /// The distance: 0 when intersecting, else the upper bound.
    pub fn distance(&self) -> f64 {
        match self.verdict {
            Verdict::Intersecting => 0.0,
            _ => self.upper,
        }
    }

    /// Whether the hulls are certified separated.
    pub fn separated(&self) -> bool {
        self.verdict == Verdict::Separated
    }

    /// A warm start for the same query on similar data.
    pub fn warm_start(&self) -> WarmStart {
        WarmStart {
            direction: self.direction.clone(),
            support_a: self.support_a.iter().map(|&(i, _)| i).collect(),
            support_b: self.support_b.iter().map(|&(j, _)| j).collect(),
            pairs: self.vertices.clone(),
        }
    }
}

/// A previous solution to start from: its direction (checked first, so a pair
/// still separated by the old hyperplane is certified with one pass over the
/// points) and its support points (positions in A and B; out-of-range
/// positions are ignored).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WarmStart {
    /// Previous separating direction (B → A), any length.
    pub direction: Vec<f64>,
    /// Positions in A of the previous support points.
    pub support_a: Vec<usize>,
    /// Positions in B of the previous support points.
    pub support_b: Vec<usize>,
    /// The previous active set's vertices `(position in A, position in B)`;
    /// when given (and in range) the corral restarts from exactly these, so a
    /// warm solve of unchanged data ends where the cold one did.
    pub pairs: Vec<(usize, usize)>,
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
    fn with_mean(data: &[f32], dim: usize) -> (Gram, Vec<f64>) {
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
    fn row(&self, i: usize) -> &[f64] {
        &self.k[i * self.n..(i + 1) * self.n]
    }

    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f64 {
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

/// One vertex of the corral: the difference `a[ia] − b[ib]`, kept
/// explicitly in the primal space.
struct Vertex {
    ia: usize,
    ib: usize,
    z: Option<Vec<f64>>,
}

/// Wolfe's corral: vertices, weights, their Gram matrix and the Cholesky
/// factor of the lifted Gram matrix `G + c²·11ᵀ`.
struct Corral {
    verts: Vec<Vertex>,
    lambda: Vec<f64>,
    /// `G[i][j] = ⟨z_i, z_j⟩`, full rows.
    g: Vec<Vec<f64>>,
    /// Row `i` holds `L[i][0..=i]`.
    chol: Vec<Vec<f64>>,
    lift: f64,
}

/// Relative pivot below which a new vertex counts as affinely dependent.
const PIVOT_REL: f64 = 1e-13;

impl Corral {
    fn new(lift: f64) -> Self {
        Corral {
            verts: Vec::new(),
            lambda: Vec::new(),
            g: Vec::new(),
            chol: Vec::new(),
            lift,
        }
    }

    fn contains(&self, ia: usize, ib: usize) -> bool {
        self.verts.iter().any(|v| v.ia == ia && v.ib == ib)
    }

    /// Adds a vertex with weight 0 given its inner products with the corral
    /// (`dots`) and itself (`self_dot`); false if it is (numerically)
    /// affinely dependent on the corral.
    #[inline(always)]
    fn push(&mut self, v: Vertex, dots: Vec<f64>, self_dot: f64) -> bool {
        let m = self.verts.len();
        let gnn = self_dot + self.lift;
        let mut r = Vec::with_capacity(m + 1);
        for (i, &d) in dots.iter().enumerate() {
            let li = &self.chol[i];
            let mut s = d + self.lift;
            for (k, rk) in r.iter().enumerate() {
                s -= li[k] * rk;
            }
            r.push(s / li[i]);
        }
        let piv2 = gnn - dot_xx(&r, &r);
        // NaN-safe: a NaN pivot counts as dependent.
        if piv2.partial_cmp(&(PIVOT_REL * gnn)) != Some(std::cmp::Ordering::Greater) {
            return false;
        }
        r.push(piv2.sqrt());
        self.chol.push(r);
        for (row, &d) in self.g.iter_mut().zip(&dots) {
            row.push(d);
        }
        let mut row = dots;
        row.push(self_dot);
        self.g.push(row);
        debug_assert_eq!(self.g.len(), m + 1);
        self.verts.push(v);
        self.lambda.push(0.0);
        true
    }

    /// Removes vertex `k`, re-triangularising the factor with Givens
    /// rotations.
    #[inline(always)]
    fn remove(&mut self, k: usize) {
        self.verts.remove(k);
        self.lambda.remove(k);
        self.g.remove(k);
        for row in &mut self.g {
            row.remove(k);
        }
        self.chol.remove(k);
        let m = self.chol.len();
        for j in k..m {
            // Row j now has j + 2 entries; zero entry (j, j+1).
            let a = self.chol[j][j];
            let b = self.chol[j][j + 1];
            let r = a.hypot(b);
            let (c, s) = if r > 0.0 { (a / r, b / r) } else { (1.0, 0.0) };
            for i in j..m {
                let row = &mut self.chol[i];
                let (u, v) = (row[j], row[j + 1]);
                row[j] = c * u + s * v;
                row[j + 1] = -s * u + c * v;
            }
            self.chol[j].pop();
        }
    }

    /// Affine minimiser coefficients `μ` (sum 1) of the corral.
    #[inline(always)]
    fn affine_min(&self) -> Vec<f64> {
        let m = self.verts.len();
        // Solve L y = 1, then Lᵀ v = y.
        let mut y = vec![0.0; m];
        for i in 0..m {
            let li = &self.chol[i];
            let mut s = 1.0;
            for k in 0..i {
                s -= li[k] * y[k];
            }
            y[i] = s / li[i];
        }
        let mut v = y;
        for i in (0..m).rev() {
            let mut s = v[i];
            for (row, vk) in self.chol[i + 1..m].iter().zip(&v[i + 1..m]) {
                s -= row[i] * vk;
            }
            v[i] = s / self.chol[i][i];
        }
        let sum: f64 = v.iter().sum();
        v.iter_mut().for_each(|x| *x /= sum);
        v
    }

    /// `‖x‖²` from the corral's Gram matrix.
    #[inline(always)]
    fn norm2(&self) -> f64 {
        let mut s = 0.0;
        for (row, &li) in self.g.iter().zip(&self.lambda) {
            if li != 0.0 {
                s += li * dot_xx(row, &self.lambda);
            }
        }
        s.max(0.0)
    }

    /// Wolfe's minor cycle: moves λ to the affine minimiser of the corral,
    /// dropping vertices whose weight reaches 0 on the way.
    #[inline(always)]
    fn minor_cycle(&mut self) {
        loop {
            let mu = self.affine_min();
            if mu.iter().all(|&u| u > 0.0) || !mu.iter().all(|u| u.is_finite()) {
                if mu.iter().all(|u| u.is_finite()) {
                    self.lambda = mu;
                }
                return;
            }
            let mut theta = f64::INFINITY;
            let mut drop = 0;
            for (k, (&l, &u)) in self.lambda.iter().zip(&mu).enumerate() {
                if u <= 0.0 {
                    // A vertex just added has λ = 0; with μ = 0 too the ratio
                    // would be 0/0. It blocks at θ = 0.
                    let t = if l <= 0.0 { 0.0 } else { l / (l - u) };
                    if t < theta {
                        theta = t;
                        drop = k;
                    }
                }
            }
            let theta = theta.clamp(0.0, 1.0);
            for (l, &u) in self.lambda.iter_mut().zip(&mu) {
                *l = (1.0 - theta) * *l + theta * u;
            }
            self.lambda[drop] = 0.0;
            // Drop the blocking vertex and any other that hit 0.
            let mut k = self.verts.len();
            while k > 0 {
                k -= 1;
                if k == drop || self.lambda[k] <= 0.0 {
                    self.remove(k);
                }
            }
            let s: f64 = self.lambda.iter().sum();
            if s > 0.0 {
                self.lambda.iter_mut().for_each(|l| *l /= s);
            }
            if self.verts.len() <= 1 {
                if let Some(l) = self.lambda.first_mut() {
                    *l = 1.0;
                }
                return;
            }
        }
    }
}

/// Where the solver computes inner products.
#[derive(Clone, Copy)]
enum Space<'g> {
    /// Explicit `f64` vectors: `O(n·d)` per oracle call, no n×n matrix.
    Primal,
    /// Lookups in a precomputed Gram matrix over the rows of one layer.
    Gram(&'g Gram),
    /// A point against a cluster with its own Gram matrix (indexed by
    /// position in A) and the point's inner products with it.
    Point(&'g PointKernel<'g>),
}

/// A point's inner products with a cluster that has a [`ClusterGram`]
/// (both centred at the cluster's mean).
struct PointKernel<'g> {
    k: &'g Gram,
    kp: Vec<f64>,
    kpp: f64,
}

/// The Gram matrix of one cluster (its rows centred at their mean), for
/// many point-to-hull queries against it ([`point_distance_with`]): each
/// then costs one `O(n·d)` pass for the point's inner products and
/// `O(n·m)` per iteration, instead of `O(n·d)` per iteration. Used for
/// nearest-cluster search on layers too large for a whole-layer [`Gram`].
#[derive(Clone, Debug)]
pub struct ClusterGram {
    gram: Gram,
    mean: Vec<f64>,
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

/// Distance from the point `p` to the hull of `a`, in the space of `a`'s
/// [`ClusterGram`] (which must have been built from the same `a`).
pub fn point_distance_with(
    a: PointSet<'_>,
    cg: &ClusterGram,
    p: &[f32],
    query: Query,
    params: &HullParams,
) -> HullResult {
    assert_eq!(cg.gram.len(), a.len(), "ClusterGram built for another set");
    let pc: Vec<f64> = p.iter().zip(&cg.mean).map(|(&v, m)| v as f64 - m).collect();
    let kp: Vec<f64> = (0..a.len())
        .map(|t| {
            a.point(t)
                .iter()
                .zip(&cg.mean)
                .zip(&pc)
                .map(|((&v, m), q)| (v as f64 - m) * q)
                .sum()
        })
        .collect();
    let kpp = dot_xx(&pc, &pc);
    let pk = PointKernel {
        k: &cg.gram,
        kp,
        kpp,
    };
    dispatch(a, PointSet::all(p, p.len()), query, params, None, Some(&pk))
}

/// The solver's state for one query.
struct Solver<'a, 'g> {
    a: PointSet<'a>,
    b: PointSet<'a>,
    space: Space<'g>,
    corral: Corral,
    dim: usize,
}

impl Solver<'_, '_> {
    /// The current point `x = Σ λ_k z_k`, explicitly (`m·d`).
    #[inline(always)]
    fn point(&self) -> Vec<f64> {
        let mut x = vec![0.0; self.dim];
        for (v, &l) in self.corral.verts.iter().zip(&self.corral.lambda) {
            if l == 0.0 {
                continue;
            }
            match &v.z {
                Some(z) => {
                    for (xi, zi) in x.iter_mut().zip(z) {
                        *xi += l * zi;
                    }
                }
                None => {
                    let (pa, pb) = (self.a.point(v.ia), self.b.point(v.ib));
                    for ((xi, &u), &w) in x.iter_mut().zip(pa).zip(pb) {
                        *xi += l * (u as f64 - w as f64);
                    }
                }
            }
        }
        x
    }

    /// Adds vertex `(ia, ib)`; false when affinely dependent.
    #[inline(always)]
    fn push(&mut self, ia: usize, ib: usize) -> bool {
        match self.space {
            Space::Primal => {
                let z = diff(self.a.point(ia), self.b.point(ib));
                let dots: Vec<f64> = self
                    .corral
                    .verts
                    .iter()
                    .map(|v| dot_xx(v.z.as_deref().unwrap_or(&[]), &z))
                    .collect();
                let zz = dot_xx(&z, &z);
                self.corral.push(Vertex { ia, ib, z: Some(z) }, dots, zz)
            }
            Space::Gram(k) => {
                let (ra, rb) = (self.a.row_index(ia), self.b.row_index(ib));
                let (ka, kb) = (k.row(ra), k.row(rb));
                let dots: Vec<f64> = self
                    .corral
                    .verts
                    .iter()
                    .map(|v| {
                        let (sa, sb) = (self.a.row_index(v.ia), self.b.row_index(v.ib));
                        (ka[sa] - ka[sb]) - (kb[sa] - kb[sb])
                    })
                    .collect();
                let zz = (k.at(ra, ra) - k.at(ra, rb)) - (k.at(rb, ra) - k.at(rb, rb));
                self.corral.push(Vertex { ia, ib, z: None }, dots, zz)
            }
            Space::Point(pk) => {
                // ⟨a_i − p, a_j − p⟩ = K[i,j] − kp[i] − kp[j] + kpp.
                let ki = pk.k.row(ia);
                let dots: Vec<f64> = self
                    .corral
                    .verts
                    .iter()
                    .map(|v| (ki[v.ia] - pk.kp[ia]) - (pk.kp[v.ia] - pk.kpp))
                    .collect();
                let zz = (ki[ia] - pk.kp[ia]) - (pk.kp[ia] - pk.kpp);
                self.corral.push(Vertex { ia, ib, z: None }, dots, zz)
            }
        }
    }

    /// LMO for the current point: `(ia, minᵢ⟨x,aᵢ⟩, ib, maxⱼ⟨x,bⱼ⟩)`
    /// (in the Gram space the values are shifted by a common `⟨x, mean⟩`,
    /// which cancels in every difference the solver uses).
    #[inline(always)]
    fn lmo_current(&self, x: Option<&[f64]>) -> (usize, f64, usize, f64) {
        match (self.space, x) {
            (Space::Primal, Some(x)) => lmo(&self.a, &self.b, x),
            (Space::Gram(k), _) => {
                // x = Σ c_r · row_r over the distinct rows of the corral's
                // vertices (supports repeat across vertices: merged).
                let mut coef: Vec<(usize, f64)> = Vec::with_capacity(2 * self.corral.verts.len());
                for (v, &l) in self.corral.verts.iter().zip(&self.corral.lambda) {
                    if l == 0.0 {
                        continue;
                    }
                    coef.push((self.a.row_index(v.ia), l));
                    coef.push((self.b.row_index(v.ib), -l));
                }
                coef.sort_unstable_by_key(|e| e.0);
                let mut merged: Vec<(usize, f64)> = Vec::with_capacity(coef.len());
                for (r, c) in coef {
                    match merged.last_mut() {
                        Some(last) if last.0 == r => last.1 += c,
                        _ => merged.push((r, c)),
                    }
                }
                // Row-wise accumulation: each Gram row is read contiguously.
                let eval = |set: &PointSet<'_>, minimise: bool| -> (usize, f64) {
                    let mut g = vec![0.0f64; set.len()];
                    for &(row, c) in &merged {
                        let kr = k.row(row);
                        match set.rows {
                            Some(rows) => {
                                for (gt, &r) in g.iter_mut().zip(rows) {
                                    *gt += c * kr[r];
                                }
                            }
                            None => {
                                for (gt, &kv) in g.iter_mut().zip(kr) {
                                    *gt += c * kv;
                                }
                            }
                        }
                    }
                    let mut best = (0, g[0]);
                    for (t, &v) in g.iter().enumerate().skip(1) {
                        if (minimise && v < best.1) || (!minimise && v > best.1) {
                            best = (t, v);
                        }
                    }
                    best
                };
                let (ia, amin) = eval(&self.a, true);
                let (ib, bmax) = eval(&self.b, false);
                (ia, amin, ib, bmax)
            }
            (Space::Point(pk), _) => {
                let mut coef: Vec<(usize, f64)> = self
                    .corral
                    .verts
                    .iter()
                    .zip(&self.corral.lambda)
                    .filter(|&(_, &l)| l != 0.0)
                    .map(|(v, &l)| (v.ia, l))
                    .collect();
                coef.sort_unstable_by_key(|e| e.0);
                let mut g: Vec<f64> = pk.kp.iter().map(|v| -v).collect();
                let mut bval = -pk.kpp;
                for &(ia, c) in &coef {
                    for (gt, &kv) in g.iter_mut().zip(pk.k.row(ia)) {
                        *gt += c * kv;
                    }
                    bval += c * pk.kp[ia];
                }
                let mut best = (0, g[0]);
                for (t, &v) in g.iter().enumerate().skip(1) {
                    if v < best.1 {
                        best = (t, v);
                    }
                }
                (best.0, best.1, 0, bval)
            }
            (Space::Primal, None) => unreachable!("primal LMO needs x"),
        }
    }
}

/// Linear-minimisation oracle over `conv(A) − conv(B)` for direction `x`:
/// `(argminᵢ ⟨x,aᵢ⟩, min, argmaxⱼ ⟨x,bⱼ⟩, max)`, first index on ties.
#[inline(always)]
fn lmo(a: &PointSet<'_>, b: &PointSet<'_>, x: &[f64]) -> (usize, f64, usize, f64) {
    let (mut ia, mut amin) = (0, f64::INFINITY);
    for k in 0..a.len() {
        let v = dot_fx(a.point(k), x);
        if v < amin {
            amin = v;
            ia = k;
        }
    }
    let (mut ib, mut bmax) = (0, f64::NEG_INFINITY);
    for k in 0..b.len() {
        let v = dot_fx(b.point(k), x);
        if v > bmax {
            bmax = v;
            ib = k;
        }
    }
    (ia, amin, ib, bmax)
}

#[inline(always)]
fn diff(a: &[f32], b: &[f32]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(&u, &v)| u as f64 - v as f64)
        .collect()
}

/// Distance between the convex hulls of `a` and `b`, certified.
///
/// Runs the AVX2 build of the solver when the CPU has it (detected once at
/// run time), else the baseline build. Both builds execute the same
/// operations in the same order (Rust never contracts `a*b + c` into an FMA
/// on its own), so they return the same bits.
///
/// # Panics
/// If either set is empty or their dimensions differ.
pub fn hull_distance(
    a: PointSet<'_>,
    b: PointSet<'_>,
    query: Query,
    params: &HullParams,
    warm: Option<&WarmStart>,
) -> HullResult {
    dispatch(a, b, query, params, warm, None)
}

#[allow(unsafe_code)] // the AVX2 dispatch below
fn dispatch(
    a: PointSet<'_>,
    b: PointSet<'_>,
    query: Query,
    params: &HullParams,
    warm: Option<&WarmStart>,
    point: Option<&PointKernel<'_>>,
) -> HullResult {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: `solve_avx2` only requires the `avx2` target feature,
            // which was just detected on this CPU. The crate's one unsafe
            // call: the LMO's dot products were 56% of a probe run, and the
            // AVX2 build cut its CPU time by 20–25% (`--threads 1`).
            return unsafe { solve_avx2(a, b, query, params, warm, point) };
        }
    }
    solve(a, b, query, params, warm, point)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(unsafe_code)]
unsafe fn solve_avx2(
    a: PointSet<'_>,
    b: PointSet<'_>,
    query: Query,
    params: &HullParams,
    warm: Option<&WarmStart>,
    point: Option<&PointKernel<'_>>,
) -> HullResult {
    solve(a, b, query, params, warm, point)
}

#[inline(always)]
fn solve(
    a: PointSet<'_>,
    b: PointSet<'_>,
    query: Query,
    params: &HullParams,
    warm: Option<&WarmStart>,
    point: Option<&PointKernel<'_>>,
) -> HullResult {
    assert!(!a.is_empty() && !b.is_empty(), "empty point set");
    assert_eq!(a.dim(), b.dim(), "dimension mismatch");
    let dim = a.dim();
    let scale = params.scale.unwrap_or_else(|| {
        let a0 = a.point(0);
        let mut m: f64 = 0.0;
        for k in 0..a.len() {
            m = m.max(dist2_ff(a.point(k), a0));
        }
        for k in 0..b.len() {
            m = m.max(dist2_ff(b.point(k), a0));
        }
        m.sqrt()
    });
    let tol = params.intersect_rel_tol * scale;
    let max_iter = params
        .max_iterations
        .unwrap_or(10 * (a.len() + b.len()) + 1000);
    let stop_above = match query {
        Query::Distance => f64::INFINITY,
        Query::Separability => tol,
        Query::DistanceUpTo(c) => c.max(tol),
    };
    let space = match (point, a.gram, b.gram) {
        (Some(pk), _, _) => Space::Point(pk),
        (None, Some(ga), Some(gb)) if std::ptr::eq(ga, gb) && std::ptr::eq(a.data, b.data) => {
            Space::Gram(ga)
        }
        _ => Space::Primal,
    };

    let mut best_lower = 0.0f64;
    let mut best_dir: Vec<f64> = Vec::new();
    // In the Gram space the best direction is kept as corral weights and
    // made explicit once at the end.
    let mut best_weights: Vec<(usize, usize, f64)> = Vec::new();
    let mut iterations = 0;

    // A previous direction may certify separation with one pass.
    if let Some(w) = warm.filter(|w| w.direction.len() == dim) {
        let n = dot_xx(&w.direction, &w.direction).sqrt();
        if n > 0.0 {
            let (_, amin, _, bmax) = lmo(&a, &b, &w.direction);
            let lb = (amin - bmax) / n;
            if lb > best_lower {
                best_lower = lb;
                best_dir = w.direction.clone();
            }
        }
    }

    // Corral lift: the squared scale of the difference vectors.
    let lift = (scale * scale).max(f64::MIN_POSITIVE);
    let mut sv = Solver {
        a,
        b,
        space,
        corral: Corral::new(lift),
        dim,
    };

    // Initial corral: the warm start's supports (spanning their affine hull
    // through the pairs (sᵢ, t₀) and (s₀, tⱼ)), else one vertex: the LMO
    // vertex of the warm direction or of the centroid difference (primal),
    // or the first pair (Gram space, where a centroid pass would cost more
    // than the iterations it saves).
    let warm_pairs: Vec<(usize, usize)> = warm
        .map(|w| {
            w.pairs
                .iter()
                .copied()
                .filter(|&(i, j)| i < a.len() && j < b.len())
                .collect()
        })
        .unwrap_or_default();
    for &(i, j) in &warm_pairs {
        if !sv.corral.contains(i, j) {
            sv.push(i, j);
        }
    }
    if let Some(w) = warm.filter(|_| warm_pairs.is_empty()) {
        let sa: Vec<usize> = w
            .support_a
            .iter()
            .copied()
            .filter(|&i| i < a.len())
            .collect();
        let sb: Vec<usize> = w
            .support_b
            .iter()
            .copied()
            .filter(|&j| j < b.len())
            .collect();
        if let (Some(&a0), Some(&b0)) = (sa.first(), sb.first()) {
            let pairs = sa
                .iter()
                .map(|&i| (i, b0))
                .chain(sb.iter().skip(1).map(|&j| (a0, j)));
            for (i, j) in pairs {
                if !sv.corral.contains(i, j) {
                    sv.push(i, j);
                }
            }
        }
    }
    if sv.corral.verts.is_empty() {
        let (ia, ib) = match (space, best_dir.is_empty()) {
            (Space::Gram(_) | Space::Point(_), true) => (0, 0),
            _ => {
                let dir: Vec<f64> = if best_dir.is_empty() {
                    let mut ca = vec![0.0; dim];
                    let mut cb = vec![0.0; dim];
                    for k in 0..a.len() {
                        for (c, &v) in ca.iter_mut().zip(a.point(k)) {
                            *c += v as f64;
                        }
                    }
                    for k in 0..b.len() {
                        for (c, &v) in cb.iter_mut().zip(b.point(k)) {
                            *c += v as f64;
                        }
                    }
                    let (na, nb) = (a.len() as f64, b.len() as f64);
                    ca.iter().zip(&cb).map(|(x, y)| x / na - y / nb).collect()
                } else {
                    best_dir.clone()
                };
                let (ia, amin, ib, bmax) = lmo(&a, &b, &dir);
                // The centroid direction is itself a certificate candidate:
                // for well-separated sets it proves separation at once.
                let dn = dot_xx(&dir, &dir).sqrt();
                if dn > 0.0 && (amin - bmax) / dn > best_lower {
                    best_lower = (amin - bmax) / dn;
                    best_dir = dir;
                }
                (ia, ib)
            }
        };
        if !sv.push(ia, ib) {
            // Defensive: the first vertex of an empty corral is always
            // accepted (the lift makes its pivot positive), so this only
            // runs if that ever changes. Coinciding points exit through
            // `upper ≤ tol` in the loop below.
            let z = diff(a.point(ia), b.point(ib));
            return HullResult {
                verdict: Verdict::Intersecting,
                lower: 0.0,
                upper: dot_xx(&z, &z).sqrt(),
                tolerance: tol,
                converged: true,
                iterations: 0,
                direction: best_dir,
                support_a: vec![(ia, 1.0)],
                support_b: vec![(ib, 1.0)],
                vertices: vec![(ia, ib)],
            };
        }
    }
    let m0 = sv.corral.verts.len() as f64;
    sv.corral.lambda.iter_mut().for_each(|l| *l = 1.0 / m0);
    sv.corral.minor_cycle();

    let norm = |sv: &Solver<'_, '_>, x: &Option<Vec<f64>>| -> f64 {
        match x {
            Some(x) => dot_xx(x, x).sqrt(),
            None => sv.corral.norm2().sqrt(),
        }
    };
    let explicit = matches!(space, Space::Primal);
    // Bounds found so far came from explicit directions (warm start,
    // centroids): keep them for the Gram-space certificate below.
    let (pre_lower, pre_dir) = (best_lower, best_dir.clone());
    let mut x = explicit.then(|| sv.point());
    let mut upper = norm(&sv, &x);
    let mut converged = false;
    let mut verdict;
    loop {
        if upper <= tol {
            // In the Gram space, confirm with the explicit point.
            let xe = sv.point();
            let ue = dot_xx(&xe, &xe).sqrt();
            if ue <= tol || explicit {
                upper = ue;
                verdict = Verdict::Intersecting;
                converged = true;
                break;
            }
            upper = ue;
        }
        let (ia, amin, ib, bmax) = sv.lmo_current(x.as_deref());
        let lb = (amin - bmax) / upper;
        if lb > best_lower {
            best_lower = lb;
            match &x {
                Some(x) => best_dir.clone_from(x),
                None => {
                    best_dir.clear();
                    best_weights = sv
                        .corral
                        .verts
                        .iter()
                        .zip(&sv.corral.lambda)
                        .map(|(v, &l)| (v.ia, v.ib, l))
                        .collect();
                }
            }
        }
        if best_lower > stop_above {
            verdict = Verdict::Separated;
            converged = upper - best_lower <= params.rel_gap * upper;
            break;
        }
        if upper - best_lower <= params.rel_gap * upper && best_lower > tol {
            verdict = Verdict::Separated;
            converged = true;
            break;
        }
        if iterations >= max_iter || sv.corral.contains(ia, ib) {
            verdict = stalled_verdict(best_lower, upper, tol);
            break;
        }
        if !sv.push(ia, ib) {
            verdict = stalled_verdict(best_lower, upper, tol);
            break;
        }
        iterations += 1;
        sv.corral.minor_cycle();
        let xn = explicit.then(|| sv.point());
        let un = norm(&sv, &xn);
        if un.partial_cmp(&upper) != Some(std::cmp::Ordering::Less) {
            // No progress: the numerical floor. Report the corral's own
            // point so the upper bound matches the returned supports.
            upper = un;
            verdict = stalled_verdict(best_lower, upper, tol);
            break;
        }
        x = xn;
        upper = un;
    }

    if !explicit && params.explicit_certificate {
        // Make the certificate explicit: the final point's norm and the best
        // direction, computed from the rows themselves.
        let xe = sv.point();
        if verdict != Verdict::Intersecting {
            upper = dot_xx(&xe, &xe).sqrt();
        }
        // The lower bound from explicit directions only: the best of the
        // pre-loop ones and the Gram-space best direction made explicit
        // (one primal pass), so the certificate never rests on Gram-space
        // rounding.
        let (mut lower, mut dir) = (pre_lower, pre_dir);
        if !best_weights.is_empty() {
            let mut d = vec![0.0; dim];
            for &(ia, ib, l) in &best_weights {
                for ((di, &u), &w) in d.iter_mut().zip(a.point(ia)).zip(b.point(ib)) {
                    *di += l * (u as f64 - w as f64);
                }
            }
            let n = dot_xx(&d, &d).sqrt();
            if n > 0.0 {
                let (_, amin, _, bmax) = lmo(&a, &b, &d);
                let exact = (amin - bmax) / n;
                if exact > lower {
                    lower = exact;
                    dir = d;
                }
            }
        }
        best_lower = lower;
        best_dir = dir;
        if verdict == Verdict::Separated {
            converged = upper - best_lower <= params.rel_gap * upper;
        }
        if verdict == Verdict::Separated && best_lower <= tol {
            verdict = stalled_verdict(best_lower, upper, tol);
        }
    }

    let mut support_a: Vec<(usize, f64)> = Vec::new();
    let mut support_b: Vec<(usize, f64)> = Vec::new();
    for (v, &l) in sv.corral.verts.iter().zip(&sv.corral.lambda) {
        if l > 0.0 {
            match support_a.iter_mut().find(|(i, _)| *i == v.ia) {
                Some(e) => e.1 += l,
                None => support_a.push((v.ia, l)),
            }
            match support_b.iter_mut().find(|(j, _)| *j == v.ib) {
                Some(e) => e.1 += l,
                None => support_b.push((v.ib, l)),
            }
        }
    }
    support_a.sort_by_key(|e| e.0);
    support_b.sort_by_key(|e| e.0);
    HullResult {
        verdict,
        lower: best_lower.max(0.0).min(upper),
        upper,
        tolerance: tol,
        converged,
        iterations,
        direction: best_dir,
        support_a,
        support_b,
        vertices: sv.corral.verts.iter().map(|v| (v.ia, v.ib)).collect(),
    }
}

fn stalled_verdict(lower: f64, upper: f64, tol: f64) -> Verdict {
    if upper <= tol {
        Verdict::Intersecting
    } else if lower > tol {
        Verdict::Separated
    } else {
        Verdict::Undetermined
    }
}

/// Distance from the point `p` to the convex hull of `a`.
pub fn point_distance(a: PointSet<'_>, p: &[f32], query: Query, params: &HullParams) -> HullResult {
    hull_distance(a, PointSet::all(p, p.len()), query, params, None)
}

#[cfg(test)]
mod tests {
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
}
