//! The classifier probe: a small multilayer perceptron per layer, trained on
//! the fit split (`train`, or `subtrain` in the memorisation setting) and
//! scored on every other split, next to DirectProbe's nearest-cluster
//! accuracy (the study's second view of a representation).
//!
//! The network is ReLU hidden layers (two by default) and a softmax output,
//! trained on the softmax cross-entropy with an L2 penalty on the weights
//! (not the biases) by mini-batch Adam, as scikit-learn's `MLPClassifier`
//! does it: Glorot-uniform initialisation of weights and biases, batches of
//! 200 rows shuffled each epoch, learning rate 1e-3, β = (0.9, 0.999),
//! ε = 1e-8, the penalty `l2 / (2 · batch) · ‖W‖²` added to each batch's
//! mean loss. Early stopping: a fixed 10 % of the fit split (stratified by
//! label, fixed seed) is held out; training stops when the held-out
//! cross-entropy has not improved by `tol` for `patience` epochs, and the
//! weights of the best held-out loss are kept (scikit-learn stops on
//! held-out accuracy instead; the loss is smooth and does not stall on a
//! plateau of equal accuracies).
//!
//! The search ([`probe`]): every configuration of [`ClassifierParams::configs`]
//! (hidden sizes and L2 weight) is trained with the first seed and scored on
//! the held-out part; the best (ties: the earlier configuration) is trained
//! with every seed, and each split's accuracy is reported as the mean and
//! the standard deviation (population, ddof = 0) over the seeds.
//!
//! Numerics are `f32`; matrix products go through `faer` with `Par::Seq`
//! (the kernel the encoder uses), so one model is one sequential
//! computation. Models (configurations, seeds) run in parallel on the
//! current rayon pool and are combined in a fixed order: the same seed
//! gives the same bits for any thread count. The random numbers come from
//! our own SplitMix64 stream. No I/O, no timing, no logging.

use std::collections::BTreeMap;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::measures::{Interrupted, KeepGoing, LayerInput};

/// One network configuration: hidden layer sizes and the L2 weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Width of each hidden layer (empty: a linear softmax classifier).
    pub hidden: Vec<usize>,
    /// L2 penalty weight (scikit-learn's `alpha`).
    pub l2: f64,
}

impl MlpConfig {
    /// Two hidden layers of `h1` and `h2` units with L2 weight `l2`.
    pub fn two_layer(h1: usize, h2: usize, l2: f64) -> MlpConfig {
        MlpConfig {
            hidden: vec![h1, h2],
            l2,
        }
    }
}

/// The study's grid: hidden sizes from {32, 64, 128, 256}² and the L2
/// weight from 1e-7 to 1 in decades (128 configurations).
pub fn full_grid() -> Vec<MlpConfig> {
    let sizes = [32, 64, 128, 256];
    let mut out = Vec::new();
    for &h1 in &sizes {
        for &h2 in &sizes {
            for e in -7..=0 {
                out.push(MlpConfig::two_layer(h1, h2, 10f64.powi(e)));
            }
        }
    }
    out
}

/// The default search: four configurations of the study's grid spanning
/// its range (small/large networks, weak/strong L2).
pub fn default_configs() -> Vec<MlpConfig> {
    vec![
        MlpConfig::two_layer(256, 256, 1e-4),
        MlpConfig::two_layer(128, 128, 1e-2),
        MlpConfig::two_layer(64, 64, 1e-6),
        MlpConfig::two_layer(256, 128, 1.0),
    ]
}

/// The first `budget` configurations of a fixed order: the
/// [`default_configs`] first, then the rest of the [`full_grid`] in a fixed
/// pseudo-random order (seed 7). `budget` 4 is the default search; 128 the
/// whole grid.
pub fn search_configs(budget: usize) -> Vec<MlpConfig> {
    let mut out = default_configs();
    let mut rest: Vec<MlpConfig> = full_grid()
        .into_iter()
        .filter(|c| !out.contains(c))
        .collect();
    let mut rng = SplitMix64::new(7);
    rng.shuffle(&mut rest);
    out.extend(rest);
    out.truncate(budget);
    out
}

/// Training hyper-parameters (the same for every configuration).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainParams {
    /// Adam step size.
    pub learning_rate: f32,
    /// Rows per mini-batch (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// Most epochs (passes over the fit rows).
    pub max_epochs: usize,
    /// Epochs without an improvement larger than `tol` before stopping.
    pub patience: usize,
    /// Smallest improvement of the held-out loss that counts.
    pub tol: f64,
    /// Fraction of the fit split held out for early stopping (0: none; then
    /// the epoch's training loss decides when to stop and the last weights
    /// are kept).
    pub validation_fraction: f64,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            learning_rate: 1e-3,
            batch_size: 200,
            max_epochs: 200,
            patience: 10,
            tol: 1e-4,
            validation_fraction: 0.1,
        }
    }
}

/// Parameters of the classifier probe, checked by [`ClassifierParams::check`].
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifierParams {
    /// Configurations searched, in order.
    pub configs: Vec<MlpConfig>,
    /// Seeds the best configuration is trained with.
    pub seeds: usize,
    /// Base seed: model `k` uses a stream derived from `seed` and `k`; the
    /// held-out part uses one derived from `seed` alone.
    pub seed: u64,
    /// Training hyper-parameters.
    pub train: TrainParams,
}

impl Default for ClassifierParams {
    fn default() -> Self {
        ClassifierParams {
            configs: default_configs(),
            seeds: 5,
            seed: 0,
            train: TrainParams::default(),
        }
    }
}

/// A classifier parameter out of range.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum ClassifierError {
    /// No configuration to search.
    #[error("the classifier search needs at least one configuration")]
    NoConfig,
    /// A hidden layer of width 0, or an L2 weight that is negative or not finite.
    #[error(
        "invalid classifier configuration {0:?}: hidden sizes must be ≥ 1 and l2 finite and ≥ 0"
    )]
    Config(MlpConfig),
    /// Fewer than one seed.
    #[error("the classifier needs at least one seed")]
    Seeds,
    /// A training parameter out of range.
    #[error("invalid classifier training parameter: {0}")]
    Train(String),
}

impl ClassifierParams {
    /// Checks the parameters.
    pub fn check(self) -> Result<Self, ClassifierError> {
        if self.configs.is_empty() {
            return Err(ClassifierError::NoConfig);
        }
        if let Some(c) = self
            .configs
            .iter()
            .find(|c| c.hidden.contains(&0) || !(c.l2.is_finite() && c.l2 >= 0.0))
        {
            return Err(ClassifierError::Config(c.clone()));
        }
        if self.seeds == 0 {
            return Err(ClassifierError::Seeds);
        }
        let t = &self.train;
        let bad = |s: &str| Err(ClassifierError::Train(s.to_string()));
        if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
            return bad("learning_rate must be > 0");
        }
        if t.batch_size == 0 || t.max_epochs == 0 || t.patience == 0 {
            return bad("batch_size, max_epochs and patience must be ≥ 1");
        }
        if !(t.tol.is_finite() && t.tol >= 0.0) {
            return bad("tol must be ≥ 0");
        }
        if !(0.0..0.5).contains(&t.validation_fraction) {
            return bad("validation_fraction must be in [0, 0.5)");
        }
        Ok(self)
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, well-mixed generator,
/// the same bits on every platform.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A stream from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 24 bits.
    fn unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2⁻³²
    /// for the sizes used here).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// The seed of a stream: `seed` mixed with a stream number.
fn stream(seed: u64, k: u64) -> u64 {
    let mut r = SplitMix64::new(seed ^ k.wrapping_mul(0xd1b5_4a32_d192_ed03));
    r.next_u64()
}

/// Splits `rows` into (fit, held out): per label, a fixed shuffle and the
/// first `round(fraction · count)` rows held out (at most `count − 1`, so
/// every label keeps a fit row). Both lists ascending.
pub fn hold_out(
    labels: &[u32],
    rows: &[usize],
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut by_label: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for &r in rows {
        by_label.entry(labels[r]).or_default().push(r);
    }
    let mut rng = SplitMix64::new(stream(seed, u64::MAX));
    let (mut fit, mut held) = (Vec::new(), Vec::new());
    for (_, mut rs) in by_label {
        rng.shuffle(&mut rs);
        let k = ((fraction * rs.len() as f64).round() as usize).min(rs.len() - 1);
        held.extend_from_slice(&rs[..k]);
        fit.extend_from_slice(&rs[k..]);
    }
    fit.sort_unstable();
    held.sort_unstable();
    (fit, held)
}

/// Splits `rows` into (first, second) with `first_fraction` of each
/// label's rows (rounded, at least one row: a label with a single row keeps
/// it in the first part) by a fixed shuffle from `seed`: how the
/// memorisation setting carves `subtrain`/`subtest` out of `train`. Both
/// ascending.
pub fn carve(
    labels: &[u32],
    rows: &[usize],
    first_fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut by_label: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for &r in rows {
        by_label.entry(labels[r]).or_default().push(r);
    }
    let mut rng = SplitMix64::new(stream(seed, u64::MAX - 1));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (_, mut rs) in by_label {
        rng.shuffle(&mut rs);
        let k = ((first_fraction * rs.len() as f64).round() as usize)
            .max(1)
            .min(rs.len());
        a.extend_from_slice(&rs[..k]);
        b.extend_from_slice(&rs[k..]);
    }
    a.sort_unstable();
    b.sort_unstable();
    (a, b)
}

/// A trained network: weights row-major `[in, out]` per layer, biases, and
/// the label of each output unit.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// Layer widths: input, hidden…, outputs.
    pub widths: Vec<usize>,
    /// Per layer, `widths[l] × widths[l + 1]` row-major.
    pub weights: Vec<Vec<f32>>,
    /// Per layer, `widths[l + 1]`.
    pub biases: Vec<Vec<f32>>,
    /// Label of each output unit, ascending.
    pub classes: Vec<u32>,
}

/// `out[b×o] = a[b×i] · w[i×o]` (+ bias per row when given).
fn affine(
    a: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    rows: usize,
    i: usize,
    o: usize,
    out: &mut [f32],
) {
    let out = &mut out[..rows * o];
    if rows > 0 && o > 0 {
        matmul(
            MatMut::from_row_major_slice_mut(out, rows, o),
            Accum::Replace,
            MatRef::from_row_major_slice(&a[..rows * i], rows, i),
            MatRef::from_row_major_slice(w, i, o),
            1.0f32,
            Par::Seq,
        );
    }
    if let Some(b) = bias {
        for row in out.chunks_exact_mut(o) {
            for (x, &bb) in row.iter_mut().zip(b) {
                *x += bb;
            }
        }
    }
}

/// Softmax of each row in place.
fn softmax_rows(z: &mut [f32], k: usize) {
    for row in z.chunks_exact_mut(k) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut s = 0f32;
        for x in row.iter_mut() {
            *x = (*x - m).exp();
            s += *x;
        }
        let inv = 1.0 / s;
        for x in row.iter_mut() {
            *x *= inv;
        }
    }
}

/// Copies `rows` of the `dim`-wide matrix `data` into `out` (contiguous).
fn gather(data: &[f32], dim: usize, rows: &[usize], out: &mut [f32]) {
    for (k, &r) in rows.iter().enumerate() {
        out[k * dim..(k + 1) * dim].copy_from_slice(&data[r * dim..(r + 1) * dim]);
    }
}

/// Rows scored per forward chunk.
const CHUNK: usize = 1024;

impl Model {
    /// Glorot-uniform initialisation (weights and biases, bound
    /// `sqrt(6 / (fan_in + fan_out))`) from `rng`.
    fn init(widths: Vec<usize>, classes: Vec<u32>, rng: &mut SplitMix64) -> Model {
        let mut weights = Vec::new();
        let mut biases = Vec::new();
        for l in 0..widths.len() - 1 {
            let (i, o) = (widths[l], widths[l + 1]);
            let bound = (6.0 / (i + o) as f32).sqrt();
            let mut u = |n: usize| -> Vec<f32> {
                (0..n)
                    .map(|_| (2.0 * rng.unit_f32() - 1.0) * bound)
                    .collect()
            };
            weights.push(u(i * o));
            biases.push(u(o));
        }
        Model {
            widths,
            weights,
            biases,
            classes,
        }
    }

    fn layers(&self) -> usize {
        self.weights.len()
    }

    /// Forward pass of `n` gathered rows `x`, filling `acts[l]` (the
    /// activations after layer `l`, ReLU for hidden layers, softmax
    /// probabilities for the last).
    fn forward(&self, x: &[f32], n: usize, acts: &mut [Vec<f32>]) {
        let last = self.layers() - 1;
        for l in 0..self.layers() {
            let (i, o) = (self.widths[l], self.widths[l + 1]);
            let (before, after) = acts.split_at_mut(l);
            let input: &[f32] = if l == 0 { x } else { &before[l - 1] };
            let out = &mut after[0];
            affine(input, &self.weights[l], Some(&self.biases[l]), n, i, o, out);
            if l < last {
                for v in out[..n * o].iter_mut() {
                    *v = v.max(0.0);
                }
            } else {
                softmax_rows(&mut out[..n * o], o);
            }
        }
    }

    fn buffers(&self, n: usize) -> Vec<Vec<f32>> {
        self.widths[1..]
            .iter()
            .map(|&w| vec![0f32; n * w])
            .collect()
    }

    /// Predicted label of each of `rows` of `data` (`dim` columns).
    pub fn predict(&self, data: &[f32], dim: usize, rows: &[usize]) -> Vec<u32> {
        let k = *self.widths.last().unwrap_or(&0);
        let mut x = vec![0f32; CHUNK.min(rows.len()) * dim];
        let mut acts = self.buffers(CHUNK.min(rows.len()));
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(CHUNK) {
            gather(data, dim, chunk, &mut x);
            self.forward(&x, chunk.len(), &mut acts);
            let p = &acts[acts.len() - 1];
            for row in p[..chunk.len() * k].chunks_exact(k) {
                let mut best = 0;
                for (j, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = j;
                    }
                }
                out.push(self.classes[best]);
            }
        }
        out
    }

    /// Mean cross-entropy (f64 sum) and accuracy on `rows`.
    fn score(&self, data: &[f32], dim: usize, labels: &[u32], rows: &[usize]) -> (f64, f64) {
        if rows.is_empty() {
            return (0.0, 0.0);
        }
        let k = *self.widths.last().unwrap_or(&0);
        let mut x = vec![0f32; CHUNK.min(rows.len()) * dim];
        let mut acts = self.buffers(CHUNK.min(rows.len()));
        let (mut loss, mut correct) = (0f64, 0usize);
        for chunk in rows.chunks(CHUNK) {
            gather(data, dim, chunk, &mut x);
            self.forward(&x, chunk.len(), &mut acts);
            let p = &acts[acts.len() - 1];
            for (row, &r) in p[..chunk.len() * k].chunks_exact(k).zip(chunk) {
                let mut best = 0;
                for (j, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = j;
                    }
                }
                correct += usize::from(self.classes[best] == labels[r]);
                let t = self.classes.binary_search(&labels[r]).ok();
                let pt = t.map_or(0.0, |t| row[t]);
                loss -= f64::from(pt.max(1e-10)).ln();
            }
        }
        (loss / rows.len() as f64, correct as f64 / rows.len() as f64)
    }
}

/// Adam's first and second moments of one parameter vector.
struct Moments {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Moments {
    fn new(n: usize) -> Self {
        Moments {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    /// One Adam step (scikit-learn's form: the bias correction folded into
    /// the step size).
    fn step(&mut self, p: &mut [f32], g: &[f32], lr_t: f32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        const EPS: f32 = 1e-8;
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(&mut self.m).zip(&mut self.v) {
            *m = B1 * *m + (1.0 - B1) * g;
            *v = B2 * *v + (1.0 - B2) * g * g;
            *p -= lr_t * *m / (v.sqrt() + EPS);
        }
    }
}

/// The outcome of training one model.
#[derive(Clone, Debug, PartialEq)]
pub struct Trained {
    /// The network (the weights of the best held-out loss).
    pub model: Model,
    /// Epochs run.
    pub epochs: usize,
    /// Held-out cross-entropy of the kept weights (`None` without held-out rows).
    pub validation_loss: Option<f64>,
    /// Held-out accuracy of the kept weights (`None` without held-out rows).
    pub validation_accuracy: Option<f64>,
}

/// Trains one network of `config` on `fit` rows (early stopping on
/// `held_out` rows) of `data` (`dim` columns, row-major), with output units
/// for `classes` (ascending; every label of `fit` must be among them), from
/// the random stream `seed`. Sequential: one call is one computation.
///
/// # Panics
/// If `fit` is empty or a fit row's label is not in `classes`.
#[allow(clippy::too_many_arguments)]
pub fn train(
    data: &[f32],
    dim: usize,
    labels: &[u32],
    fit: &[usize],
    held_out: &[usize],
    classes: &[u32],
    config: &MlpConfig,
    params: &TrainParams,
    seed: u64,
) -> Trained {
    assert!(!fit.is_empty(), "training needs rows");
    let mut rng = SplitMix64::new(seed);
    let mut widths = vec![dim];
    widths.extend_from_slice(&config.hidden);
    widths.push(classes.len());
    let mut model = Model::init(widths, classes.to_vec(), &mut rng);
    let nl = model.layers();
    let k = classes.len();
    let target: Vec<usize> = labels
        .iter()
        .map(|l| classes.binary_search(l).unwrap_or(usize::MAX))
        .collect();
    let bs = params.batch_size.min(fit.len());
    let mut x = vec![0f32; bs * dim];
    let mut acts = model.buffers(bs);
    let mut deltas = model.buffers(bs);
    let mut gw: Vec<Vec<f32>> = model.weights.iter().map(|w| vec![0.0; w.len()]).collect();
    let mut gb: Vec<Vec<f32>> = model.biases.iter().map(|b| vec![0.0; b.len()]).collect();
    let mut mw: Vec<Moments> = model
        .weights
        .iter()
        .map(|w| Moments::new(w.len()))
        .collect();
    let mut mb: Vec<Moments> = model.biases.iter().map(|b| Moments::new(b.len())).collect();
    let mut order = fit.to_vec();
    let l2 = config.l2 as f32;
    let mut t = 0i32;
    let mut best: Option<(f64, f64, Model)> = None;
    let mut best_loss = f64::INFINITY;
    let mut stale = 0usize;
    let mut epochs = 0usize;
    for _ in 0..params.max_epochs {
        epochs += 1;
        rng.shuffle(&mut order);
        let mut epoch_loss = 0f64;
        for batch in order.chunks(bs) {
            let n = batch.len();
            gather(data, dim, batch, &mut x);
            model.forward(&x, n, &mut acts);
            // Output delta: (p − onehot) / n.
            let inv = 1.0 / n as f32;
            {
                let p = &acts[nl - 1];
                let d = &mut deltas[nl - 1];
                for (j, &r) in batch.iter().enumerate() {
                    let t = target[r];
                    assert!(t < k, "row {r}: label {} is not a class", labels[r]);
                    epoch_loss -= f64::from(p[j * k + t].max(1e-10)).ln();
                    for c in 0..k {
                        d[j * k + c] = p[j * k + c] * inv;
                    }
                    d[j * k + t] -= inv;
                }
            }
            for l in (0..nl).rev() {
                let (i, o) = (model.widths[l], model.widths[l + 1]);
                let input: &[f32] = if l == 0 { &x } else { &acts[l - 1] };
                // gw = inputᵀ · delta + (l2 / n) · w
                matmul(
                    MatMut::from_row_major_slice_mut(&mut gw[l], i, o),
                    Accum::Replace,
                    MatRef::from_row_major_slice(&input[..n * i], n, i).transpose(),
                    MatRef::from_row_major_slice(&deltas[l][..n * o], n, o),
                    1.0f32,
                    Par::Seq,
                );
                if l2 > 0.0 {
                    let c = l2 * inv;
                    for (g, &w) in gw[l].iter_mut().zip(&model.weights[l]) {
                        *g += c * w;
                    }
                }
                let b = &mut gb[l];
                b.fill(0.0);
                for row in deltas[l][..n * o].chunks_exact(o) {
                    for (g, &d) in b.iter_mut().zip(row) {
                        *g += d;
                    }
                }
                if l > 0 {
                    // delta[l−1] = (delta[l] · wᵀ) ⊙ relu'(act[l−1])
                    let (lo, hi) = deltas.split_at_mut(l);
                    let prev = &mut lo[l - 1][..n * i];
                    matmul(
                        MatMut::from_row_major_slice_mut(prev, n, i),
                        Accum::Replace,
                        MatRef::from_row_major_slice(&hi[0][..n * o], n, o),
                        MatRef::from_row_major_slice(&model.weights[l], i, o).transpose(),
                        1.0f32,
                        Par::Seq,
                    );
                    for (d, &a) in prev.iter_mut().zip(&acts[l - 1][..n * i]) {
                        if a <= 0.0 {
                            *d = 0.0;
                        }
                    }
                }
            }
            t += 1;
            let lr_t =
                params.learning_rate * (1.0 - 0.999f32.powi(t)).sqrt() / (1.0 - 0.9f32.powi(t));
            for l in 0..nl {
                mw[l].step(&mut model.weights[l], &gw[l], lr_t);
                mb[l].step(&mut model.biases[l], &gb[l], lr_t);
            }
        }
        let criterion = if held_out.is_empty() {
            epoch_loss / fit.len() as f64
        } else {
            let (loss, acc) = model.score(data, dim, labels, held_out);
            if best.as_ref().is_none_or(|b| loss < b.0) {
                best = Some((loss, acc, model.clone()));
            }
            loss
        };
        if !criterion.is_finite() {
            break;
        }
        if criterion > best_loss - params.tol {
            stale += 1;
        } else {
            stale = 0;
        }
        best_loss = best_loss.min(criterion);
        if stale >= params.patience {
            break;
        }
    }
    match best {
        Some((loss, acc, m)) => Trained {
            model: m,
            epochs,
            validation_loss: Some(loss),
            validation_accuracy: Some(acc),
        },
        None => Trained {
            model,
            epochs,
            validation_loss: None,
            validation_accuracy: None,
        },
    }
}

/// Mean and standard deviation (population, ddof = 0) over seeds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    /// Mean.
    pub mean: f64,
    /// Standard deviation (ddof = 0).
    pub std: f64,
}

impl MeanStd {
    /// Of `xs` (non-empty), summed in order.
    pub fn of(xs: &[f64]) -> MeanStd {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        MeanStd {
            mean,
            std: var.sqrt(),
        }
    }
}

/// One searched configuration and its held-out accuracy (first seed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchEntry {
    /// The configuration.
    pub config: MlpConfig,
    /// Held-out accuracy (`None` without held-out rows).
    pub validation_accuracy: Option<f64>,
    /// Held-out cross-entropy (`None` without held-out rows).
    pub validation_loss: Option<f64>,
    /// Epochs run.
    pub epochs: usize,
}

/// What the classifier probe found on one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifierReport {
    /// The split it was fitted on.
    pub fit_split: String,
    /// The chosen configuration.
    pub config: MlpConfig,
    /// Seeds it was trained with.
    pub seeds: usize,
    /// Epochs run per seed.
    pub epochs: Vec<usize>,
    /// Every searched configuration, in search order.
    pub search: Vec<SearchEntry>,
    /// Per split other than the fit split, with points: accuracy over the
    /// seeds (moved to the layer report's `classifier_accuracy` there).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub accuracy: BTreeMap<String, MeanStd>,
}

/// Searches the configurations, trains the best with every seed and scores
/// every other split (see the module documentation). `None` when the fit
/// split has no rows.
///
/// # Panics
/// If the input's lengths are inconsistent.
pub fn probe(input: LayerInput<'_>, params: &ClassifierParams) -> Option<ClassifierReport> {
    probe_interruptible(input, params, &super::measures::never_stop).expect("never interrupted")
}

/// [`probe`] that asks `keep_going` before each model it trains (the
/// search's configurations and the re-training seeds) and stops with
/// [`Interrupted`] when it answers false. Each model is one sequential
/// computation, so that is how long a stop may take.
pub fn probe_interruptible(
    input: LayerInput<'_>,
    params: &ClassifierParams,
    keep_going: KeepGoing<'_>,
) -> Result<Option<ClassifierReport>, Interrupted> {
    let LayerInput {
        data,
        dim,
        labels,
        split,
        split_names,
        fit_split,
        ..
    } = input;
    assert_eq!(data.len(), labels.len() * dim);
    assert_eq!(split.len(), labels.len());
    let Some(fit_id) = split_names.iter().position(|s| s == fit_split) else {
        return Ok(None);
    };
    let fit_id = fit_id as u8;
    let rows: Vec<usize> = (0..labels.len()).filter(|&r| split[r] == fit_id).collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let mut classes: Vec<u32> = rows.iter().map(|&r| labels[r]).collect();
    classes.sort_unstable();
    classes.dedup();
    let (fit, held) = hold_out(labels, &rows, params.train.validation_fraction, params.seed);
    let model_seed = |k: usize| stream(params.seed, k as u64);
    let run = |config: &MlpConfig, k: usize| {
        train(
            data,
            dim,
            labels,
            &fit,
            &held,
            &classes,
            config,
            &params.train,
            model_seed(k),
        )
    };
    let searched: Option<Vec<Trained>> = params
        .configs
        .par_iter()
        .map(|c| keep_going().then(|| run(c, 0)))
        .collect();
    let searched = searched.ok_or(Interrupted)?;
    let mut best = 0;
    for (i, t) in searched.iter().enumerate() {
        let better = match (t.validation_accuracy, searched[best].validation_accuracy) {
            (Some(a), Some(b)) => a > b,
            _ => false,
        };
        if better {
            best = i;
        }
    }
    let search: Vec<SearchEntry> = params
        .configs
        .iter()
        .zip(&searched)
        .map(|(c, t)| SearchEntry {
            config: c.clone(),
            validation_accuracy: t.validation_accuracy,
            validation_loss: t.validation_loss,
            epochs: t.epochs,
        })
        .collect();
    let config = params.configs[best].clone();
    let first = searched.into_iter().nth(best).expect("best is an index");
    let others: Option<Vec<Trained>> = (1..params.seeds)
        .into_par_iter()
        .map(|k| keep_going().then(|| run(&config, k)))
        .collect();
    let mut others = others.ok_or(Interrupted)?;
    others.insert(0, first);
    let eval: Vec<(String, Vec<usize>)> = split_names
        .iter()
        .enumerate()
        .filter(|&(s, _)| s as u8 != fit_id)
        .map(|(s, name)| {
            let rs: Vec<usize> = (0..labels.len()).filter(|&r| split[r] == s as u8).collect();
            (name.clone(), rs)
        })
        .filter(|(_, rs)| !rs.is_empty())
        .collect();
    let scores: Vec<Vec<f64>> = others
        .par_iter()
        .map(|t| {
            eval.iter()
                .map(|(_, rs)| {
                    let pred = t.model.predict(data, dim, rs);
                    let ok = pred
                        .iter()
                        .zip(rs)
                        .filter(|&(&p, &r)| p == labels[r])
                        .count();
                    ok as f64 / rs.len() as f64
                })
                .collect()
        })
        .collect();
    let accuracy = eval
        .iter()
        .enumerate()
        .map(|(j, (name, _))| {
            let xs: Vec<f64> = scores.iter().map(|s| s[j]).collect();
            (name.clone(), MeanStd::of(&xs))
        })
        .collect();
    Ok(Some(ClassifierReport {
        fit_split: fit_split.to_string(),
        config,
        seeds: params.seeds,
        epochs: others.iter().map(|t| t.epochs).collect(),
        search,
        accuracy,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XOR in 2-D: four Gaussian blobs at (±1, ±1), label = sign(x·y);
    /// `n` rows, the first 80 % train and the rest test.
    fn xor(n: usize, seed: u64) -> (Vec<f32>, Vec<u32>, Vec<u8>) {
        let mut rng = crate::synth::Rng::new(seed);
        let (mut data, mut labels, mut split) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let sx = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
            let sy = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
            data.push((sx + 0.15 * rng.normal()) as f32);
            data.push((sy + 0.15 * rng.normal()) as f32);
            labels.push(u32::from(sx * sy > 0.0));
            split.push(u8::from(i >= n * 4 / 5));
        }
        (data, labels, split)
    }

    fn names() -> Vec<String> {
        vec!["train".to_string(), "test".to_string()]
    }

    fn input<'a>(
        data: &'a [f32],
        dim: usize,
        labels: &'a [u32],
        split: &'a [u8],
        names: &'a [String],
    ) -> LayerInput<'a> {
        LayerInput {
            data,
            dim,
            labels,
            n_labels: labels.iter().max().map_or(0, |&l| l as usize + 1),
            split,
            split_names: names,
            fit_split: "train",
        }
    }

    #[test]
    fn xor_is_learnt_and_a_linear_probe_cannot() {
        let (data, labels, split) = xor(2000, 1);
        let names = names();
        let mlp = probe(
            input(&data, 2, &labels, &split, &names),
            &ClassifierParams::default(),
        )
        .expect("a train split");
        let acc = mlp.accuracy["test"];
        assert_eq!(acc.mean, 1.0, "{mlp:?}");
        assert_eq!(acc.std, 0.0);
        assert_eq!(mlp.epochs.len(), 5);
        assert_eq!(mlp.search.len(), 4);

        let linear = ClassifierParams {
            configs: vec![MlpConfig {
                hidden: vec![],
                l2: 1e-4,
            }],
            ..ClassifierParams::default()
        };
        let lin = probe(input(&data, 2, &labels, &split, &names), &linear).expect("train");
        // The best linear rule on XOR gets 3 of 4 quadrants right at most.
        assert!(lin.accuracy["test"].mean < 0.8, "{lin:?}");
    }

    #[test]
    fn linearly_separable_reaches_100_percent() {
        // 5 labels, Gaussian blobs in 20-D with means 4 apart along
        // distinct axes, noise 0.3.
        let mut rng = crate::synth::Rng::new(3);
        let (n, dim) = (1000, 20);
        let (mut data, mut labels, mut split) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let l = (rng.next_u64() % 5) as u32;
            for j in 0..dim {
                let mean = if j == l as usize { 4.0 } else { 0.0 };
                data.push((mean + 0.3 * rng.normal()) as f32);
            }
            labels.push(l);
            split.push(u8::from(i % 4 == 0));
        }
        let names = names();
        let params = ClassifierParams {
            configs: vec![MlpConfig::two_layer(32, 32, 1e-4)],
            seeds: 2,
            ..ClassifierParams::default()
        };
        let r = probe(input(&data, dim, &labels, &split, &names), &params).expect("train");
        assert_eq!(r.accuracy["test"].mean, 1.0, "{r:?}");
        assert_eq!(r.accuracy.len(), 1, "the fit split is not scored");
    }

    #[test]
    fn same_seed_same_bits_for_1_and_2_threads() {
        let (data, labels, split) = xor(600, 9);
        let names = names();
        let params = ClassifierParams {
            configs: vec![
                MlpConfig::two_layer(16, 8, 1e-3),
                MlpConfig::two_layer(8, 8, 1e-1),
                MlpConfig::two_layer(32, 16, 1e-5),
            ],
            seeds: 3,
            train: TrainParams {
                max_epochs: 30,
                ..TrainParams::default()
            },
            ..ClassifierParams::default()
        };
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool")
                .install(|| probe(input(&data, 2, &labels, &split, &names), &params))
        };
        let one = run(1).expect("train");
        let two = run(2).expect("train");
        assert_eq!(one, two);
        // Also the trained weights, not only the summary.
        let (fit, held) = hold_out(&labels, &(0..480).collect::<Vec<_>>(), 0.1, 0);
        let t = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool")
                .install(|| {
                    train(
                        &data,
                        2,
                        &labels,
                        &fit,
                        &held,
                        &[0, 1],
                        &params.configs[0],
                        &params.train,
                        42,
                    )
                })
        };
        assert_eq!(t(1), t(2));
        // A different seed gives a different model.
        let other = ClassifierParams {
            seed: 1,
            ..params.clone()
        };
        let three = probe(input(&data, 2, &labels, &split, &names), &other).expect("train");
        assert_ne!(one.search, three.search);
    }

    #[test]
    fn hold_out_and_carve_are_stratified_and_fixed() {
        let labels: Vec<u32> = (0..100).map(|i| (i % 4) as u32).collect();
        let rows: Vec<usize> = (0..100).collect();
        let (fit, held) = hold_out(&labels, &rows, 0.1, 5);
        assert_eq!(fit.len() + held.len(), 100);
        // round(0.1 · 25) = 3 per label (half away from zero).
        assert_eq!(held.len(), 12);
        for l in 0..4 {
            assert_eq!(held.iter().filter(|&&r| labels[r] == l).count(), 3);
        }
        assert_eq!(hold_out(&labels, &rows, 0.1, 5), (fit, held));
        let (a, b) = carve(&labels, &rows, 0.8, 5);
        assert_eq!((a.len(), b.len()), (80, 20));
        for l in 0..4 {
            assert_eq!(b.iter().filter(|&&r| labels[r] == l).count(), 5);
        }
        assert_eq!(carve(&labels, &rows, 0.8, 5), (a.clone(), b.clone()));
        assert_ne!(carve(&labels, &rows, 0.8, 6).1, b);
    }

    #[test]
    fn search_order_and_checks() {
        assert_eq!(full_grid().len(), 128);
        assert_eq!(search_configs(4), default_configs());
        let all = search_configs(1000);
        assert_eq!(all.len(), 128);
        for (i, c) in all.iter().enumerate() {
            assert!(!all[i + 1..].contains(c), "{c:?} twice");
        }
        assert!(ClassifierParams::default().check().is_ok());
        let bad = ClassifierParams {
            configs: vec![],
            ..ClassifierParams::default()
        };
        assert_eq!(bad.check(), Err(ClassifierError::NoConfig));
        let bad = ClassifierParams {
            seeds: 0,
            ..ClassifierParams::default()
        };
        assert_eq!(bad.check(), Err(ClassifierError::Seeds));
    }
}
