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
//! usually collapses from ~10⁻¹ to ~10⁻¹² in a single step — and it never
//! needs the n×n Gram matrix of the points, only the m×m Gram of the corral
//! (m ≤ d + 1), so memory stays O(n·d + m·d + m²).
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
//! [`super::directprobe`]), parallelise (callers do), or any I/O.

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

    /// The `k`-th point of the set.
    #[inline]
    pub fn point(&self, k: usize) -> &'a [f32] {
        let r = match self.rows {
            Some(rows) => rows[k],
            None => k,
        };
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
}

impl Default for HullParams {
    fn default() -> Self {
        HullParams {
            rel_gap: 1e-4,
            intersect_rel_tol: 1e-6,
            scale: None,
            max_iterations: None,
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

/// One vertex of the corral: the difference `a[ia] − b[ib]`.
struct Vertex {
    ia: usize,
    ib: usize,
    z: Vec<f64>,
}

/// Wolfe's corral with the Cholesky factor of its lifted Gram matrix.
struct Corral {
    verts: Vec<Vertex>,
    lambda: Vec<f64>,
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
            chol: Vec::new(),
            lift,
        }
    }

    fn contains(&self, ia: usize, ib: usize) -> bool {
        self.verts.iter().any(|v| v.ia == ia && v.ib == ib)
    }

    /// Adds a vertex with weight 0; false if it is (numerically) affinely
    /// dependent on the corral.
    #[inline(always)]
    fn push(&mut self, ia: usize, ib: usize, z: Vec<f64>) -> bool {
        let m = self.verts.len();
        let gnn = dot_xx(&z, &z) + self.lift;
        let mut r = Vec::with_capacity(m + 1);
        for i in 0..m {
            let g = dot_xx(&self.verts[i].z, &z) + self.lift;
            let li = &self.chol[i];
            let mut s = g;
            for (k, rk) in r.iter().enumerate() {
                s -= li[k] * rk;
            }
            r.push(s / li[i]);
        }
        let piv2 = gnn - dot_xx(&r, &r);
        if !(piv2 > PIVOT_REL * gnn) {
            return false;
        }
        r.push(piv2.sqrt());
        self.chol.push(r);
        self.verts.push(Vertex { ia, ib, z });
        self.lambda.push(0.0);
        true
    }

    /// Removes vertex `k`, re-triangularising the factor with Givens
    /// rotations.
    #[inline(always)]
    fn remove(&mut self, k: usize) {
        self.verts.remove(k);
        self.lambda.remove(k);
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
            for k in i + 1..m {
                s -= self.chol[k][i] * v[k];
            }
            v[i] = s / self.chol[i][i];
        }
        let sum: f64 = v.iter().sum();
        v.iter_mut().for_each(|x| *x /= sum);
        v
    }

    #[inline(always)]
    fn point(&self, dim: usize) -> Vec<f64> {
        let mut x = vec![0.0; dim];
        for (v, &l) in self.verts.iter().zip(&self.lambda) {
            if l != 0.0 {
                for (xi, zi) in x.iter_mut().zip(&v.z) {
                    *xi += l * zi;
                }
            }
        }
        x
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
                    let t = l / (l - u);
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
#[allow(unsafe_code)] // the AVX2 dispatch below
pub fn hull_distance(
    a: PointSet<'_>,
    b: PointSet<'_>,
    query: Query,
    params: &HullParams,
    warm: Option<&WarmStart>,
) -> HullResult {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: `solve_avx2` only requires the `avx2` target feature,
            // which was just detected on this CPU. This is the only unsafe
            // code in the crate: the LMO's dot products are 56% of a probe
            // run, and the AVX2 build makes the whole `probe` 1.9× faster
            // (README, Benchmarks).
            return unsafe { solve_avx2(a, b, query, params, warm) };
        }
    }
    solve(a, b, query, params, warm)
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
) -> HullResult {
    solve(a, b, query, params, warm)
}

#[inline(always)]
fn solve(
    a: PointSet<'_>,
    b: PointSet<'_>,
    query: Query,
    params: &HullParams,
    warm: Option<&WarmStart>,
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

    let mut best_lower = 0.0f64;
    let mut best_dir: Vec<f64> = Vec::new();
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
    let mut corral = Corral::new(lift);

    // Initial corral: the warm start's supports (spanning their affine hull
    // through the pairs (sₐ, t₀) and (s₀, tⱼ)), else the LMO vertex of the
    // warm direction or of the centroid difference.
    if let Some(w) = warm {
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
                if !corral.contains(i, j) {
                    corral.push(i, j, diff(a.point(i), b.point(j)));
                }
            }
        }
    }
    if corral.verts.is_empty() {
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
        let (ia, _, ib, _) = lmo(&a, &b, &dir);
        let z = diff(a.point(ia), b.point(ib));
        if !corral.push(ia, ib, z.clone()) {
            // z = 0 (coinciding points): intersecting, certified by the pair.
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
            };
        }
    }
    let m0 = corral.verts.len() as f64;
    corral.lambda.iter_mut().for_each(|l| *l = 1.0 / m0);
    corral.minor_cycle();

    let mut x = corral.point(dim);
    let mut upper = dot_xx(&x, &x).sqrt();
    let mut converged = false;
    let verdict;
    loop {
        if upper <= tol {
            verdict = Verdict::Intersecting;
            converged = true;
            break;
        }
        let (ia, amin, ib, bmax) = lmo(&a, &b, &x);
        let lb = (amin - bmax) / upper;
        if lb > best_lower {
            best_lower = lb;
            best_dir.clone_from(&x);
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
        if iterations >= max_iter || corral.contains(ia, ib) {
            verdict = stalled_verdict(best_lower, upper, tol);
            break;
        }
        let z = diff(a.point(ia), b.point(ib));
        if !corral.push(ia, ib, z) {
            verdict = stalled_verdict(best_lower, upper, tol);
            break;
        }
        iterations += 1;
        corral.minor_cycle();
        let xn = corral.point(dim);
        let un = dot_xx(&xn, &xn).sqrt();
        if !(un < upper) {
            // No progress: the numerical floor. Report the corral's own
            // point so the upper bound matches the returned supports.
            upper = un;
            verdict = stalled_verdict(best_lower, upper, tol);
            break;
        }
        x = xn;
        upper = un;
    }

    let mut support_a: Vec<(usize, f64)> = Vec::new();
    let mut support_b: Vec<(usize, f64)> = Vec::new();
    for (v, &l) in corral.verts.iter().zip(&corral.lambda) {
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
