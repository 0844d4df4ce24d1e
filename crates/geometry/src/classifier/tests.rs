//! The probe on XOR (an MLP learns it, a linear probe cannot), on
//! separable blobs, its determinism across thread counts, the held-out
//! splits and the search order.

use super::*;

/// XOR in 2-D: four Gaussian blobs at (±1, ±1), label = sign(x·y);
/// `n` rows, the first 80 % train and the rest test.
fn xor(n: usize, seed: u64) -> (Vec<f32>, Vec<u32>, Vec<u8>) {
    let mut rng = crate::rng::Rng::new(seed);
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
    let mut rng = crate::rng::Rng::new(3);
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
