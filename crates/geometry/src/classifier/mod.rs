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
//! the crate's SplitMix64 stream ([`crate::rng::SplitMix64`]).
//!
//! This file holds the parameters, the search and the held-out splits; the
//! network and its training are `mlp`. No I/O, no timing, no logging.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::input::{Interrupted, KeepGoing, LayerInput, never_stop};

mod mlp;
#[cfg(test)]
mod tests;

pub use self::mlp::{Model, Trained, train};
pub use crate::rng::SplitMix64;

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
    let mut rng = SplitMix64::new(SplitMix64::stream_seed(seed, u64::MAX));
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
    let mut rng = SplitMix64::new(SplitMix64::stream_seed(seed, u64::MAX - 1));
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
    probe_interruptible(input, params, &never_stop).expect("never interrupted")
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
    let model_seed = |k: usize| SplitMix64::stream_seed(params.seed, k as u64);
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
    let best = best_config(&searched);
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
    let mut models = others.ok_or(Interrupted)?;
    models.insert(0, first);
    let accuracy = split_accuracies(&models, &input, fit_id);
    Ok(Some(ClassifierReport {
        fit_split: fit_split.to_string(),
        config,
        seeds: params.seeds,
        epochs: models.iter().map(|t| t.epochs).collect(),
        search,
        accuracy,
    }))
}

/// The searched configuration with the best held-out accuracy (ties: the
/// earlier one; without held-out rows, the first).
fn best_config(searched: &[Trained]) -> usize {
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
    best
}

/// Each split other than the fit split (`fit_id`) with points: the
/// accuracy of every model, as mean and standard deviation over the models
/// (summed in model order).
fn split_accuracies(
    models: &[Trained],
    input: &LayerInput<'_>,
    fit_id: u8,
) -> BTreeMap<String, MeanStd> {
    let LayerInput {
        data,
        dim,
        labels,
        split,
        split_names,
        ..
    } = *input;
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
    let scores: Vec<Vec<f64>> = models
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
    eval.iter()
        .enumerate()
        .map(|(j, (name, _))| {
            let xs: Vec<f64> = scores.iter().map(|s| s[j]).collect();
            (name.clone(), MeanStd::of(&xs))
        })
        .collect()
}
