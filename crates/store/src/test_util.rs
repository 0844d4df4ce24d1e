//! Fixtures shared by the unit tests of the store's modules.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::{CheckpointRow, CheckpointStatus, LayerRecord, NewCheckpoint, RunId, Store};

/// A layer row with `k` centroids of width `dim`, values derived from
/// the arguments (awkward floats included).
pub(crate) fn layer(task: &str, layer: u32, k: usize, dim: u32, comparison: bool) -> LayerRecord {
    let specials = [
        0.0f32,
        -0.0,
        f32::MIN_POSITIVE,
        f32::MIN_POSITIVE / 8.0, // subnormal
        f32::MAX,
        -f32::MAX,
        1.0 / 3.0,
        -1.0e-30,
    ];
    let centroids = (0..k * dim as usize)
        .map(|i| specials[i % specials.len()] + (layer as f32) * 0.1 + (i as f32) * 1.0e-3)
        .collect();
    LayerRecord {
        task: task.to_owned(),
        layer,
        report_json: format!(r#"{{"task":"{task}","layer":{layer},"clusters":{k}}}"#),
        comparison_json: comparison.then(|| format!(r#"{{"similarity":0.{layer}}}"#)),
        centroids,
        centroid_dim: dim,
    }
}

pub(crate) fn two_tasks(layers: u32, comparison: bool) -> Vec<LayerRecord> {
    let mut out = Vec::new();
    for task in ["deprel", "upos"] {
        for l in 0..layers {
            out.push(layer(task, l, 3, 4, comparison));
        }
    }
    out
}

pub(crate) fn done<'a>(
    step: u64,
    path: &'a Path,
    mtime_ns: i64,
    layers: &'a [LayerRecord],
) -> NewCheckpoint<'a> {
    NewCheckpoint {
        step,
        path,
        size: 1000 + step,
        mtime_ns,
        status: CheckpointStatus::Done,
        error_kind: None,
        error: None,
        started_unix: 1_700_000_000.25 + step as f64,
        finished_unix: 1_700_000_003.5 + step as f64,
        seconds: 3.25,
        task_meta_json: Some(r#"{"upos":{"labels":["NOUN","VERB"]}}"#),
        layers,
        baseline: false,
    }
}

pub(crate) fn failed<'a>(
    step: u64,
    path: &'a Path,
    mtime_ns: i64,
    kind: Option<&'a str>,
) -> NewCheckpoint<'a> {
    NewCheckpoint {
        status: CheckpointStatus::Failed,
        error_kind: kind,
        error: Some("model.safetensors: truncated"),
        task_meta_json: None,
        layers: &[],
        baseline: false,
        ..done(step, path, mtime_ns, &[])
    }
}

pub(crate) fn count(store: &Store, table: &str) -> i64 {
    store
        .conn
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .expect("count rows")
}

pub(crate) fn file_store(dir: &TempDir) -> (Store, PathBuf) {
    let path = dir.path().join("history.sqlite");
    (Store::open(&path).expect("open store"), path)
}

pub(crate) fn run(store: &Store) -> RunId {
    store
        .upsert_run("bert-upos", Path::new("/runs/bert"), r#"{"a":1}"#)
        .expect("upsert run")
}

pub(crate) fn steps(rows: &[CheckpointRow]) -> Vec<u64> {
    rows.iter().map(|r| r.step).collect()
}

pub(crate) fn assert_same_layers(got: &[LayerRecord], want: &[LayerRecord]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(
            (
                &g.task,
                g.layer,
                &g.report_json,
                &g.comparison_json,
                g.centroid_dim
            ),
            (
                &w.task,
                w.layer,
                &w.report_json,
                &w.comparison_json,
                w.centroid_dim
            )
        );
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&g.centroids),
            bits(&w.centroids),
            "{} {}",
            g.task,
            g.layer
        );
    }
}
