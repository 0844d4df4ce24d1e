//! Synthetic labelled layers for benchmarks and tests: Gaussian label blobs
//! from a fixed seed, in a separable and an overlapping variant.
//!
//! The random numbers are the crate's own [`Rng`] (xoshiro256** seeded
//! through SplitMix64, Box–Muller normals; see [`crate::rng`]), so the same
//! seed gives the same bits on every platform and crate version. Label
//! frequencies are skewed like a POS tag set (weight ∝ 1/(k+1)^0.8). It
//! produces data only; it measures nothing.

use crate::input::{LayerInput, TRAIN};
pub use crate::rng::Rng;

/// Which kind of layer to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Label means far apart relative to the noise: every pair of labels is
    /// linearly separable, DirectProbe ends with one cluster per label.
    Separable,
    /// Labels in confusable pairs whose hulls intersect: DirectProbe's greedy
    /// loop has to split them into many clusters.
    Overlapping,
    /// Like `Separable` but with isotropic noise (every coordinate variance
    /// 1): the worst case for hull solvers, since nearly every point is a
    /// support point in high dimension.
    SeparableIsotropic,
}

/// A generated layer: row-major points, labels, splits (0 = train,
/// 1 = test).
#[derive(Clone, Debug)]
pub struct SyntheticLayer {
    /// `n × dim` row-major.
    pub data: Vec<f32>,
    /// Columns.
    pub dim: usize,
    /// Label per row.
    pub labels: Vec<u32>,
    /// Number of labels.
    pub n_labels: usize,
    /// Split per row (0 train, 1 test).
    pub split: Vec<u8>,
}

impl SyntheticLayer {
    /// The layer as the measures' input, with `split_names` (index 0 must be
    /// `train`, 1 `test`).
    pub fn input<'a>(&'a self, split_names: &'a [String]) -> LayerInput<'a> {
        LayerInput {
            data: &self.data,
            dim: self.dim,
            labels: &self.labels,
            n_labels: self.n_labels,
            split: &self.split,
            split_names,
            fit_split: TRAIN,
        }
    }
}

/// Generates `n_train + n_test` points in `dim` dimensions with `n_labels`
/// labels.
///
/// Like real activations the data is anisotropic: coordinate `k` has noise
/// standard deviation `σ_k ∝ (k+1)^-0.6` (variance falling as a power law,
/// effective dimension ≈ 10 of 768), scaled so the mean per-coordinate
/// variance is 1. Label means are drawn from the same spectrum, scaled by 4,
/// so labels are far apart in the directions that carry the variance
/// (separable). In the overlapping variant labels come in confusable pairs
/// (0 with 1, 2 with 3, …, like NOUN/PROPN): the second label of a pair has
/// the first one's mean plus a tiny offset (0.02 of the spectrum), so the
/// two hulls intersect while pairs stay apart.
pub fn generate(
    n_train: usize,
    n_test: usize,
    dim: usize,
    n_labels: usize,
    variant: Variant,
    seed: u64,
) -> SyntheticLayer {
    let mut rng = Rng::new(seed);
    let raw: Vec<f64> = (0..dim)
        .map(|k| match variant {
            Variant::SeparableIsotropic => 1.0,
            _ => ((k + 1) as f64).powf(-0.6),
        })
        .collect();
    let norm = (dim as f64 / raw.iter().map(|s| s * s).sum::<f64>()).sqrt();
    let sigma: Vec<f64> = raw.iter().map(|s| s * norm).collect();
    // Isotropic: means at norm ≈ 12 (blobs ~17 apart, noise radius ~28).
    let alpha = match variant {
        Variant::SeparableIsotropic => 12.0 / (dim as f64).sqrt(),
        _ => 4.0,
    };
    let mut means: Vec<Vec<f64>> = (0..n_labels)
        .map(|_| sigma.iter().map(|s| alpha * s * rng.normal()).collect())
        .collect();
    if variant == Variant::Overlapping {
        for l in (1..n_labels).step_by(2) {
            let base = means[l - 1].clone();
            means[l] = base
                .iter()
                .zip(&sigma)
                .map(|(m, s)| m + 0.02 * s * rng.normal())
                .collect();
        }
    }
    let weights: Vec<f64> = (0..n_labels)
        .map(|k| 1.0 / ((k + 1) as f64).powf(0.8))
        .collect();
    let total: f64 = weights.iter().sum();
    let n = n_train + n_test;
    let mut data = Vec::with_capacity(n * dim);
    let mut labels = Vec::with_capacity(n);
    let mut split = Vec::with_capacity(n);
    for i in 0..n {
        let mut u = rng.uniform() * total;
        let mut l = n_labels - 1;
        for (k, w) in weights.iter().enumerate() {
            if u < *w {
                l = k;
                break;
            }
            u -= w;
        }
        for (m, sd) in means[l].iter().zip(&sigma) {
            data.push((m + sd * rng.normal()) as f32);
        }
        labels.push(l as u32);
        split.push(u8::from(i >= n_train));
    }
    SyntheticLayer {
        data,
        dim,
        labels,
        n_labels,
        split,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shaped() {
        let a = generate(50, 10, 8, 3, Variant::Separable, 7);
        let b = generate(50, 10, 8, 3, Variant::Separable, 7);
        assert_eq!(a.data, b.data);
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.data.len(), 60 * 8);
        assert_eq!(a.split.iter().filter(|&&s| s == 1).count(), 10);
        let c = generate(50, 10, 8, 3, Variant::Separable, 8);
        assert_ne!(a.data, c.data);
    }
}
