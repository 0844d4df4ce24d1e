//! Temporary: prints exact (Debug) results of the public API to $DIGEST_OUT,
//! to diff before and after a refactor.
#![allow(missing_docs)]
use std::fmt::Write as _;

use probewatch_geometry::classifier::{self, ClassifierParams, MlpConfig, TrainParams};
use probewatch_geometry::directprobe::{self, LabelledPoints};
use probewatch_geometry::hull::{
    ClusterGram, Gram, HullParams, PointSet, Query, hull_distance, point_distance,
    point_distance_with, rms_radius,
};
use probewatch_geometry::measures::{
    self, LabelDistance, LayerInput, MeasureParams, Partition, compare, measure_layer,
    measure_layer_with,
};
use probewatch_geometry::synth::{Rng, Variant, generate};
use probewatch_geometry::working_set::hull_distance_ws;

fn bits(xs: &[f32]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for x in xs {
        for b in x.to_bits().to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[test]
fn digest() {
    let Ok(path) = std::env::var("DIGEST_OUT") else {
        return;
    };
    let mut out = String::new();
    // synth and rng
    for v in [
        Variant::Separable,
        Variant::Overlapping,
        Variant::SeparableIsotropic,
    ] {
        let l = generate(200, 50, 12, 6, v, 11);
        writeln!(
            out,
            "synth {v:?} {:x} {:?} {:?}",
            bits(&l.data),
            l.labels,
            l.split
        )
        .unwrap();
    }
    let mut r = Rng::new(5);
    let xs: Vec<(u64, f64, f64)> = (0..5)
        .map(|_| (r.next_u64(), r.uniform(), r.normal()))
        .collect();
    writeln!(out, "rng {xs:?}").unwrap();
    let mut s = classifier::SplitMix64::new(9);
    let mut v: Vec<u32> = (0..20).collect();
    s.shuffle(&mut v);
    writeln!(out, "splitmix {} {v:?}", s.next_u64()).unwrap();

    // hull
    let l = generate(400, 0, 10, 4, Variant::Overlapping, 3);
    let dim = l.dim;
    let by: Vec<Vec<usize>> = (0..4)
        .map(|k| {
            (0..l.labels.len())
                .filter(|&r| l.labels[r] == k as u32)
                .collect()
        })
        .collect();
    let g = Gram::new(&l.data, dim);
    writeln!(out, "rms {:?}", rms_radius(&l.data, dim, &by[0])).unwrap();
    for (x, y) in [(0, 1), (0, 2), (1, 3), (2, 3)] {
        for q in [
            Query::Distance,
            Query::Separability,
            Query::DistanceUpTo(0.5),
        ] {
            for gram in [None, Some(&g)] {
                let p = HullParams {
                    scale: Some(1.3),
                    ..HullParams::default()
                };
                let a = PointSet::subset_with(&l.data, dim, &by[x], gram);
                let b = PointSet::subset_with(&l.data, dim, &by[y], gram);
                let res = hull_distance(a, b, q, &p, None);
                writeln!(out, "hull {x}{y} {q:?} {} {res:?}", gram.is_some()).unwrap();
                let w = res.warm_start();
                let res2 = hull_distance(a, b, q, &HullParams::default(), Some(&w));
                writeln!(out, "hullwarm {res2:?}").unwrap();
            }
        }
    }
    let cg = ClusterGram::new(PointSet::subset(&l.data, dim, &by[2]));
    for row in [0usize, 5, 17, 101] {
        let p = &l.data[row * dim..(row + 1) * dim];
        let set = PointSet::subset(&l.data, dim, &by[2]);
        let a = point_distance_with(set, &cg, p, Query::Distance, &HullParams::default());
        let b = point_distance(set, p, Query::Distance, &HullParams::default());
        writeln!(out, "point {row} {a:?} {b:?}").unwrap();
    }
    // working set
    let big = generate(3400, 0, 16, 2, Variant::SeparableIsotropic, 4);
    let bb: Vec<Vec<usize>> = (0..2)
        .map(|k| {
            (0..big.labels.len())
                .filter(|&r| big.labels[r] == k as u32)
                .collect()
        })
        .collect();
    let sc = rms_radius(&big.data, 16, &(0..3400).collect::<Vec<_>>());
    for q in [Query::Distance, Query::Separability] {
        let p = HullParams {
            scale: Some(sc),
            ..HullParams::default()
        };
        let res = hull_distance_ws(
            PointSet::subset(&big.data, 16, &bb[0]),
            PointSet::subset(&big.data, 16, &bb[1]),
            q,
            &p,
            None,
        );
        writeln!(out, "ws {q:?} {res:?}").unwrap();
    }
    // directprobe
    let l = generate(300, 0, 12, 6, Variant::Overlapping, 8);
    let rows: Vec<usize> = (0..300).collect();
    let g = Gram::new(&l.data, 12);
    for gram in [None, Some(&g)] {
        let lp = LabelledPoints {
            data: &l.data,
            dim: 12,
            labels: &l.labels,
            n_labels: 6,
            rows: &rows,
            gram,
        };
        let (c, m) = directprobe::cluster_with(lp, &HullParams::default(), None);
        writeln!(out, "dp {c:?}").unwrap();
        let (c2, _) = directprobe::cluster_with(lp, &HullParams::default(), Some(&m));
        writeln!(out, "dp2 {:?}", c2.clusters == c.clusters).unwrap();
    }
    // measures
    let names = vec!["train".to_string(), "test".to_string()];
    for (v, seed) in [(Variant::Overlapping, 3u64), (Variant::Separable, 5)] {
        let layer = generate(300, 80, 16, 6, v, seed);
        let input = layer.input(&names);
        for params in [
            MeasureParams::default(),
            MeasureParams {
                label_distance: LabelDistance::Min,
                drop_clusters_up_to: 2,
                ..MeasureParams::default()
            },
            MeasureParams {
                gram_budget_bytes: 0,
                ..MeasureParams::default()
            },
            MeasureParams {
                gram_budget_bytes: 0,
                cluster_gram_budget_bytes: 0,
                ..MeasureParams::default()
            },
        ] {
            let r = measure_layer(input, &params);
            writeln!(out, "ml {r:?}").unwrap();
        }
        for part in [Partition::Recluster, Partition::Frozen] {
            let mut mem = None;
            let mut prev: Option<measures::LayerReport> = None;
            for step in 0..3 {
                let mut data = layer.data.clone();
                let mut rr = Rng::new(step);
                for x in data.iter_mut() {
                    *x += (0.05 * step as f64 * rr.normal()) as f32;
                }
                let inp = LayerInput {
                    data: &data,
                    ..input
                };
                let fp = measures::fingerprint(&inp, &MeasureParams::default(), part, mem.as_ref());
                let (r, m) = measure_layer_with(inp, &MeasureParams::default(), mem.as_ref(), part);
                writeln!(out, "seq {part:?} {step} {fp:?} {r:?} {}", m.bytes()).unwrap();
                writeln!(out, "core {:?}", measures::core_part(&r)).unwrap();
                if let Some(p) = &prev {
                    writeln!(out, "cmp {:?}", compare(p, &r)).unwrap();
                }
                prev = Some(r);
                mem = Some(m);
            }
        }
    }
    // classifier
    let layer = generate(400, 100, 8, 3, Variant::Overlapping, 2);
    let input = layer.input(&names);
    let params = ClassifierParams {
        configs: vec![
            MlpConfig::two_layer(16, 8, 1e-3),
            MlpConfig::two_layer(8, 8, 1e-1),
            MlpConfig {
                hidden: vec![],
                l2: 1e-4,
            },
        ],
        seeds: 3,
        train: TrainParams {
            max_epochs: 25,
            ..TrainParams::default()
        },
        ..ClassifierParams::default()
    };
    writeln!(out, "probe {:?}", classifier::probe(input, &params)).unwrap();
    let rows: Vec<usize> = (0..400).collect();
    let (fit, held) = classifier::hold_out(&layer.labels, &rows, 0.1, 3);
    writeln!(out, "holdout {fit:?} {held:?}").unwrap();
    writeln!(
        out,
        "carve {:?}",
        classifier::carve(&layer.labels, &rows, 0.7, 3)
    )
    .unwrap();
    writeln!(out, "search {:?}", classifier::search_configs(128)).unwrap();
    let t = classifier::train(
        &layer.data,
        8,
        &layer.labels,
        &fit,
        &held,
        &[0, 1, 2],
        &params.configs[0],
        &params.train,
        77,
    );
    let w: Vec<f32> = t.model.weights.iter().flatten().copied().collect();
    writeln!(
        out,
        "train {} {:?} {:?} {:x}",
        t.epochs,
        t.validation_loss,
        t.validation_accuracy,
        bits(&w)
    )
    .unwrap();
    let t = classifier::train(
        &layer.data,
        8,
        &layer.labels,
        &fit,
        &[],
        &[0, 1, 2],
        &params.configs[0],
        &TrainParams {
            validation_fraction: 0.0,
            max_epochs: 15,
            ..TrainParams::default()
        },
        78,
    );
    let w: Vec<f32> = t.model.weights.iter().flatten().copied().collect();
    writeln!(
        out,
        "train0 {} {:x} {:?}",
        t.epochs,
        bits(&w),
        t.model
            .predict(&layer.data, 8, &(400..500).collect::<Vec<_>>())
    )
    .unwrap();
    std::fs::write(path, out).unwrap();
}
