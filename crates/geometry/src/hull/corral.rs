//! Wolfe's corral: the active set of difference vertices `aᵢ − bⱼ`, their
//! weights, their Gram matrix and the incrementally updated Cholesky factor
//! of the lifted Gram matrix `G + c²·11ᵀ` (O(m²) per vertex added or
//! removed), and the minor cycle that moves the weights to the corral's
//! affine minimiser (Wolfe 1976; Chakrabarty, Jain & Kothari 2014). It
//! never sees a point: the solver hands it inner products.

use super::points::dot_xx;

/// One vertex of the corral: the difference `a[ia] − b[ib]`, kept
/// explicitly in the primal space.
pub(super) struct Vertex {
    pub(super) ia: usize,
    pub(super) ib: usize,
    pub(super) z: Option<Vec<f64>>,
}

/// Wolfe's corral: vertices, weights, their Gram matrix and the Cholesky
/// factor of the lifted Gram matrix `G + c²·11ᵀ`.
pub(super) struct Corral {
    pub(super) verts: Vec<Vertex>,
    pub(super) lambda: Vec<f64>,
    /// `G[i][j] = ⟨z_i, z_j⟩`, full rows.
    g: Vec<Vec<f64>>,
    /// Row `i` holds `L[i][0..=i]`.
    chol: Vec<Vec<f64>>,
    lift: f64,
}

/// Relative pivot below which a new vertex counts as affinely dependent.
const PIVOT_REL: f64 = 1e-13;

impl Corral {
    pub(super) fn new(lift: f64) -> Self {
        Corral {
            verts: Vec::new(),
            lambda: Vec::new(),
            g: Vec::new(),
            chol: Vec::new(),
            lift,
        }
    }

    pub(super) fn contains(&self, ia: usize, ib: usize) -> bool {
        self.verts.iter().any(|v| v.ia == ia && v.ib == ib)
    }

    /// Adds a vertex with weight 0 given its inner products with the corral
    /// (`dots`) and itself (`self_dot`); false if it is (numerically)
    /// affinely dependent on the corral.
    #[inline(always)]
    pub(super) fn push(&mut self, v: Vertex, dots: Vec<f64>, self_dot: f64) -> bool {
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
    pub(super) fn norm2(&self) -> f64 {
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
    pub(super) fn minor_cycle(&mut self) {
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
