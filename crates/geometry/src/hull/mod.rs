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
//! The module is split by concern: `points` holds the point sets
//! ([`PointSet`]), the Gram matrices ([`Gram`], [`ClusterGram`]) and the
//! `f64`-accumulated dot products; `corral` Wolfe's active set with its
//! Cholesky factor; `solver` the iteration, its certificate and the AVX2
//! dispatch ([`hull_distance`]). This file holds the types of a query and
//! its answer ([`Query`], [`HullParams`], [`HullResult`]) and the warm
//! starts ([`WarmStart`], [`CompactWarm`]).
//!
//! What this module does not do: choose which pairs to query (that is
//! [`crate::directprobe`]), run queries in parallel (callers do; only
//! building a [`Gram`] matrix uses rayon, row by row), keep warm starts
//! between checkpoints (that is [`crate::memory`]), or any I/O.

mod corral;
mod points;
mod solver;
#[cfg(test)]
mod tests;

pub use points::{ClusterGram, Gram, PointSet, rms_radius};
pub(crate) use points::{dist2_ff, dot_fx, dot_xx};
pub use solver::{hull_distance, point_distance, point_distance_with};

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

/// A compact warm start, as memories keep them between checkpoints: the
/// separating direction in `f32` (enough to re-certify a separation in one
/// pass; an empty vector when not kept) and the final active set's vertex
/// pairs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompactWarm {
    direction: Vec<f32>,
    pairs: Vec<(u32, u32)>,
}

impl CompactWarm {
    /// Keeps the vertex pairs of `r`, and its direction when `direction`.
    pub fn from_result(r: &HullResult, direction: bool) -> CompactWarm {
        CompactWarm {
            direction: if direction {
                r.direction.iter().map(|&v| v as f32).collect()
            } else {
                Vec::new()
            },
            pairs: r
                .vertices
                .iter()
                .map(|&(i, j)| (i as u32, j as u32))
                .collect(),
        }
    }

    /// The solver's warm start.
    pub fn to_warm(&self) -> WarmStart {
        WarmStart {
            direction: self.direction.iter().map(|&v| v as f64).collect(),
            support_a: Vec::new(),
            support_b: Vec::new(),
            pairs: self
                .pairs
                .iter()
                .map(|&(i, j)| (i as usize, j as usize))
                .collect(),
        }
    }

    /// Heap bytes held.
    pub fn bytes(&self) -> usize {
        self.direction.len() * 4 + self.pairs.len() * 8
    }
}
