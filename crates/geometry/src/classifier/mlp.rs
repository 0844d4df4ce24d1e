//! One network of the classifier probe: the ReLU multilayer perceptron
//! ([`Model`]: Glorot initialisation, forward pass, prediction, held-out
//! score) and its training by mini-batch Adam with early stopping
//! ([`train`]), as the [module documentation](super) describes. One call is
//! one sequential computation (`faer` with `Par::Seq`); the search over
//! configurations and seeds, and its parallelism, are the parent's.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

use super::{MlpConfig, TrainParams};
use crate::rng::SplitMix64;

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
    let target: Vec<usize> = labels
        .iter()
        .map(|l| classes.binary_search(l).unwrap_or(usize::MAX))
        .collect();
    let bs = params.batch_size.min(fit.len());
    let mut trainer = Trainer::new(&model, bs, config.l2 as f32, params.learning_rate);
    let mut order = fit.to_vec();
    let mut best: Option<(f64, f64, Model)> = None;
    let mut best_loss = f64::INFINITY;
    let mut stale = 0usize;
    let mut epochs = 0usize;
    for _ in 0..params.max_epochs {
        epochs += 1;
        rng.shuffle(&mut order);
        let mut epoch_loss = 0f64;
        for batch in order.chunks(bs) {
            let rows = Batch {
                data,
                dim,
                labels,
                target: &target,
                rows: batch,
            };
            trainer.step(&mut model, rows, &mut epoch_loss);
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

/// One mini-batch: rows of the layer matrix with their labels and output
/// units (`target`, indexed by row).
#[derive(Clone, Copy)]
struct Batch<'a> {
    data: &'a [f32],
    dim: usize,
    labels: &'a [u32],
    target: &'a [usize],
    rows: &'a [usize],
}

/// The buffers of one training run: the gathered batch, activations and
/// deltas per layer, gradients, Adam's moments and its step count.
struct Trainer {
    x: Vec<f32>,
    acts: Vec<Vec<f32>>,
    deltas: Vec<Vec<f32>>,
    gw: Vec<Vec<f32>>,
    gb: Vec<Vec<f32>>,
    mw: Vec<Moments>,
    mb: Vec<Moments>,
    l2: f32,
    learning_rate: f32,
    t: i32,
}

impl Trainer {
    /// Buffers for batches of up to `bs` rows of `model`.
    fn new(model: &Model, bs: usize, l2: f32, learning_rate: f32) -> Trainer {
        Trainer {
            x: vec![0f32; bs * model.widths[0]],
            acts: model.buffers(bs),
            deltas: model.buffers(bs),
            gw: model.weights.iter().map(|w| vec![0.0; w.len()]).collect(),
            gb: model.biases.iter().map(|b| vec![0.0; b.len()]).collect(),
            mw: model
                .weights
                .iter()
                .map(|w| Moments::new(w.len()))
                .collect(),
            mb: model.biases.iter().map(|b| Moments::new(b.len())).collect(),
            l2,
            learning_rate,
            t: 0,
        }
    }

    /// One Adam step on `batch`; each row's cross-entropy is subtracted
    /// from `loss` (its log-probability added), in row order.
    fn step(&mut self, model: &mut Model, batch: Batch<'_>, loss: &mut f64) {
        let n = batch.rows.len();
        gather(batch.data, batch.dim, batch.rows, &mut self.x);
        model.forward(&self.x, n, &mut self.acts);
        self.output_delta(model, batch, loss);
        self.backward(model, n);
        self.t += 1;
        let t = self.t;
        let lr_t = self.learning_rate * (1.0 - 0.999f32.powi(t)).sqrt() / (1.0 - 0.9f32.powi(t));
        for l in 0..model.layers() {
            self.mw[l].step(&mut model.weights[l], &self.gw[l], lr_t);
            self.mb[l].step(&mut model.biases[l], &self.gb[l], lr_t);
        }
    }

    /// The output delta `(p − onehot) / n` and the batch's cross-entropy.
    fn output_delta(&mut self, model: &Model, batch: Batch<'_>, loss: &mut f64) {
        let nl = model.layers();
        let k = model.classes.len();
        let inv = 1.0 / batch.rows.len() as f32;
        let p = &self.acts[nl - 1];
        let d = &mut self.deltas[nl - 1];
        for (j, &r) in batch.rows.iter().enumerate() {
            let t = batch.target[r];
            assert!(t < k, "row {r}: label {} is not a class", batch.labels[r]);
            *loss -= f64::from(p[j * k + t].max(1e-10)).ln();
            for c in 0..k {
                d[j * k + c] = p[j * k + c] * inv;
            }
            d[j * k + t] -= inv;
        }
    }

    /// Back-propagation of the output delta through every layer: weight
    /// gradients (with the L2 term), bias gradients, and the hidden
    /// deltas through the ReLUs.
    fn backward(&mut self, model: &Model, n: usize) {
        let inv = 1.0 / n as f32;
        for l in (0..model.layers()).rev() {
            let (i, o) = (model.widths[l], model.widths[l + 1]);
            let input: &[f32] = if l == 0 { &self.x } else { &self.acts[l - 1] };
            // gw = inputᵀ · delta + (l2 / n) · w
            matmul(
                MatMut::from_row_major_slice_mut(&mut self.gw[l], i, o),
                Accum::Replace,
                MatRef::from_row_major_slice(&input[..n * i], n, i).transpose(),
                MatRef::from_row_major_slice(&self.deltas[l][..n * o], n, o),
                1.0f32,
                Par::Seq,
            );
            if self.l2 > 0.0 {
                let c = self.l2 * inv;
                for (g, &w) in self.gw[l].iter_mut().zip(&model.weights[l]) {
                    *g += c * w;
                }
            }
            let b = &mut self.gb[l];
            b.fill(0.0);
            for row in self.deltas[l][..n * o].chunks_exact(o) {
                for (g, &d) in b.iter_mut().zip(row) {
                    *g += d;
                }
            }
            if l > 0 {
                // delta[l−1] = (delta[l] · wᵀ) ⊙ relu'(act[l−1])
                let (lo, hi) = self.deltas.split_at_mut(l);
                let prev = &mut lo[l - 1][..n * i];
                matmul(
                    MatMut::from_row_major_slice_mut(prev, n, i),
                    Accum::Replace,
                    MatRef::from_row_major_slice(&hi[0][..n * o], n, o),
                    MatRef::from_row_major_slice(&model.weights[l], i, o).transpose(),
                    1.0f32,
                    Par::Seq,
                );
                for (d, &a) in prev.iter_mut().zip(&self.acts[l - 1][..n * i]) {
                    if a <= 0.0 {
                        *d = 0.0;
                    }
                }
            }
        }
    }
}
