//! Binary side: the `report-large-run` benchmark. It writes a synthetic
//! large run into an on-disk history store the way the daemon does (one
//! transaction per checkpoint, each layer's row made by the daemon's own
//! codec, `view::record::encode`: the report JSON without centroids, the
//! centroids as an `f32` blob, the comparison with the baseline), then times
//! what `/report/<run>` does: open the store read-only, load the history,
//! compute the figures and write the page. Building the store is not timed.

use std::time::Instant;

use anyhow::{Context, Result};

use geometry::measures::{ClusterDistanceSummary, LayerReport};
use geometry::synth::Rng;
use report::{ReportOptions, load, render_page};
use store::{CheckpointStatus, LayerRecord, NewCheckpoint, Store};

/// The size the issue names: labels, layers (hidden states, BERT-large),
/// checkpoints; centroid width of BERT-large.
const LABELS: usize = 50;
const LAYERS: usize = 25;
const CHECKPOINTS: usize = 200;
const DIM: usize = 1024;

/// One layer at one step: plausible numbers (label centroids drifting apart
/// more in higher layers, two labels drifting together), and its stored row
/// (compared with `baseline`, the layer at the first step).
fn layer_record(
    layer: usize,
    t: f64,
    base: &[Vec<f64>],
    drift: &[Vec<f64>],
    names: &[String],
    baseline: Option<&LayerReport>,
) -> (LayerRecord, LayerReport) {
    let depth = layer as f64 / (LAYERS - 1) as f64;
    let k = base.len();
    let centroids: Vec<Vec<f64>> = (0..k)
        .map(|l| {
            let pull = if l < 2 { -0.8 * t * depth } else { 0.0 };
            base[l]
                .iter()
                .zip(&drift[l])
                .zip(&base[1 - l.min(1)])
                .map(|((b, d), other)| b + t * (0.2 + depth) * d + pull * (b - other) / 2.0)
                .collect()
        })
        .collect();
    let dist = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let mut label_distance = Vec::with_capacity(k * (k - 1) / 2);
    let mut min = vec![f64::INFINITY; k];
    for a in 0..k {
        for b in a + 1..k {
            // A hull distance is below the centroid distance.
            let d = 0.4 * dist(&centroids[a], &centroids[b]);
            label_distance.push((a as u32, b as u32, d));
            min[a] = min[a].min(d);
            min[b] = min[b].min(d);
        }
    }
    let scale = 10.0 + depth;
    let report = LayerReport {
        clustered: true,
        label_counts: vec![10; k],
        label_hull_distance: label_distance.clone(),
        label_hull_distance_normalized: label_distance
            .iter()
            .map(|&(a, b, d)| (a, b, d / scale))
            .collect(),
        min_label_hull_distance: min.iter().map(|&m| Some(m)).collect(),
        min_label_hull_distance_normalized: min.iter().map(|&m| Some(m / scale)).collect(),
        classifier_accuracy: None,
        classifier: None,
        layer,
        frozen_partition: false,
        clusters: k + (4.0 * t * depth) as usize,
        labels_present: k,
        clusters_per_label: vec![1; k],
        label_distance_normalized: label_distance
            .iter()
            .map(|&(a, b, d)| (a, b, d / scale))
            .collect(),
        label_distance,
        min_label_distance: min.iter().map(|&m| Some(m)).collect(),
        min_label_distance_normalized: min.iter().map(|&m| Some(m / scale)).collect(),
        scale,
        cluster_distance: ClusterDistanceSummary {
            pairs: k * (k - 1) / 2,
            zero_pairs: 0,
            min: min.iter().copied().reduce(f64::min),
            mean: Some(1.0),
            max: Some(2.0),
            normalized: Some([0.1, 0.2, 0.3]),
        },
        accuracy: [("test".to_owned(), 0.9 - 0.1 * t * depth)].into(),
        similarity: [("train_test".to_owned(), Some(0.95 - 0.05 * t))].into(),
        test_clusters: Some(k),
        split_sizes: [("train".to_owned(), 20 * k), ("test".to_owned(), 5 * k)].into(),
        cluster_stats: Default::default(),
        centroids: centroids.iter().cloned().map(Some).collect(),
        train_clusters: Vec::new(),
        label_names: names.to_vec(),
        seconds: 0.1,
    };
    let comparison =
        baseline.map(|b| geometry::measures::compare(b, &report).expect("same labels and width"));
    (
        view::record::encode("ud", &report, comparison.as_ref(), None),
        report,
    )
}

/// Writes the synthetic run into `db`; returns its file size in bytes.
fn build_store(db: &std::path::Path, checkpoints: usize) -> Result<u64> {
    let mut store = Store::open(db)?;
    let run = store.upsert_run("large", db.parent().unwrap_or(db), "{}")?;
    let mut rng = Rng::new(0x4e9042);
    let names: Vec<String> = (0..LABELS).map(|i| format!("label{i:02}")).collect();
    // Per layer: the labels' base centroids and their drift directions.
    type Centroids = Vec<Vec<f64>>;
    let per_layer: Vec<(Centroids, Centroids)> = (0..LAYERS)
        .map(|_| {
            let base = (0..LABELS)
                .map(|_| (0..DIM).map(|_| rng.normal()).collect())
                .collect();
            let drift = (0..LABELS)
                .map(|_| (0..DIM).map(|_| 0.3 * rng.normal()).collect())
                .collect();
            (base, drift)
        })
        .collect();
    let mut baseline: Vec<LayerReport> = Vec::new();
    for c in 0..checkpoints {
        let t = c as f64 / (checkpoints - 1).max(1) as f64;
        let step = 50 * c as u64;
        let mut records = Vec::with_capacity(LAYERS);
        for (layer, (base, drift)) in per_layer.iter().enumerate() {
            let (rec, report) = layer_record(layer, t, base, drift, &names, baseline.get(layer));
            if c == 0 {
                baseline.push(report);
            }
            records.push(rec);
        }
        let path = db.with_file_name(format!("checkpoint-{step}"));
        store.record_checkpoint(
            run,
            &NewCheckpoint {
                step,
                path: &path,
                size: 1,
                mtime_ns: 1,
                status: CheckpointStatus::Done,
                error_kind: None,
                error: None,
                started_unix: 0.0,
                finished_unix: 1.0,
                seconds: 1.0,
                task_meta_json: None,
                layers: &records,
                baseline: c == 0,
            },
        )?;
    }
    drop(store);
    Ok(std::fs::metadata(db)?.len())
}

/// The case: (seconds of open + load + figures + page, detail).
pub fn report_large_run(quick: bool) -> Result<(f64, String)> {
    let checkpoints = if quick { 20 } else { CHECKPOINTS };
    let dir = harness::scratch_dir("probewatch-bench-report")?;
    let db = dir.join("history.sqlite");
    let store_bytes = build_store(&db, checkpoints).context("building the synthetic store")?;
    let opts = ReportOptions {
        refresh_seconds: Some(30),
        links: true,
        ..ReportOptions::default()
    };
    let t = Instant::now();
    let store = Store::open_reader(&db)?;
    let history = load(&store, &db, "large", &opts)?;
    let loaded = t.elapsed().as_secs_f64();
    let page = render_page(&history, &opts);
    let total = t.elapsed().as_secs_f64();
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
    Ok((
        total,
        format!(
            "{LABELS} labels, {LAYERS} layers, {checkpoints} checkpoints, d = {DIM} (store {:.0} MiB): \
             read {:.3} s + figures and page {:.3} s; page {:.0} KiB",
            store_bytes as f64 / (1024.0 * 1024.0),
            loaded,
            total - loaded,
            page.len() as f64 / 1024.0
        ),
    ))
}
