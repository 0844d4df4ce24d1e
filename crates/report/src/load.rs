//! Reading one task of one run out of the store into a plain [`History`]:
//! the baseline's and the latest checkpoint's layers, the similarity to the
//! baseline of every layer over the steps, the focus layer's min distances
//! and the first and last layers' centroids over the steps.
//!
//! Every stored row is read through the codec ([`view::record`]); this
//! module knows which rows to read, not how a row is laid out. It computes
//! no figure and writes nothing; rows are visited one at a time so a long
//! run's stored JSON is never all in memory at once.

use std::path::Path;

use geometry::measures::{LayerComparison, LayerReport, TRAIN_TEST};
use store::{CheckpointStatus, LayerRecord, RunId, Store};
use view::record::{self, DecodeError};

use crate::ReportOptions;
use crate::error::{BadRecord, NoLayer, NoRun, NoTask, ReportError};
use crate::figures::{CentroidSeries, Comparison, History, LayerSummary};

/// Reads one run's history of one task from the store.
struct Loader<'a> {
    db: &'a Path,
    run: &'a str,
}

impl Loader<'_> {
    fn bad(&self, step: u64, task: &str, layer: u32, e: &DecodeError) -> ReportError {
        ReportError::BadRecord(Box::new(BadRecord {
            db: self.db.to_path_buf(),
            run: self.run.to_owned(),
            step,
            task: task.to_owned(),
            layer,
            what: e.part(),
            detail: e.to_string(),
        }))
    }

    /// A stored layer as a report with one centroid entry per label.
    fn decode(&self, step: u64, rec: &LayerRecord) -> Result<LayerReport, ReportError> {
        let mut r =
            record::try_decode(rec).map_err(|e| self.bad(step, &rec.task, rec.layer, &e))?;
        let k = r.min_label_distance.len();
        if r.centroids.len() != k {
            r.centroids = vec![None; k];
        }
        Ok(r)
    }

    /// One layer at one checkpoint, and the label names stored with it.
    fn summary(
        &self,
        step: u64,
        rec: &LayerRecord,
    ) -> Result<(LayerSummary, Vec<String>), ReportError> {
        let r = self.decode(step, rec)?;
        let vs_baseline = record::decode_comparisons(rec)
            .map_err(|e| self.bad(step, &rec.task, rec.layer, &e))?
            .baseline
            .map(comparison);
        Ok((
            LayerSummary {
                layer: rec.layer as usize,
                clusters: r.clusters,
                labels_present: r.labels_present,
                test_accuracy: r.accuracy.get("test").copied(),
                classifier_test_accuracy: r
                    .classifier_accuracy
                    .as_ref()
                    .and_then(|c| c.get("test"))
                    .map(|m| (m.mean, m.std)),
                train_test_similarity: r.similarity.get(TRAIN_TEST).copied().flatten(),
                centroids: r.centroids,
                min_label_distance: r.min_label_distance,
                label_distance: r.label_distance,
                vs_baseline,
            },
            r.label_names,
        ))
    }
}

/// The parts of a stored comparison the figures use.
fn comparison(c: LayerComparison) -> Comparison {
    Comparison {
        centroid_movement: c.centroid_movement,
        similarity: c.similarity,
        grew: c.grew,
        shrank: c.shrank,
        mean_change: c.mean_change,
    }
}

/// Reads the history of one task of run `run` from `store` (`db` names the
/// file in errors). A run without an analysed checkpoint gives an empty
/// history (the page says so), not an error.
pub fn load(
    store: &Store,
    db: &Path,
    run: &str,
    opts: &ReportOptions,
) -> Result<History, ReportError> {
    let loader = Loader { db, run };
    let Some(run_id) = store.run_id(run)? else {
        return Err(ReportError::NoRun(Box::new(NoRun {
            db: db.to_path_buf(),
            run: run.to_owned(),
            available: store.runs()?.into_iter().map(|r| r.1).collect(),
        })));
    };
    let rows = store.checkpoints(run_id)?;
    let mut h = History {
        run: run.to_owned(),
        failed: rows
            .iter()
            .filter(|r| r.status == CheckpointStatus::Failed)
            .count(),
        ..History::default()
    };
    let Some(latest) = store.latest_done(run_id)? else {
        return Ok(h);
    };
    let latest_layers = store.layers(latest.id)?;
    let mut tasks: Vec<String> = latest_layers.iter().map(|l| l.task.clone()).collect();
    tasks.dedup();
    let task = match &opts.task {
        Some(t) if tasks.contains(t) => t.clone(),
        Some(t) => {
            return Err(ReportError::NoTask(Box::new(NoTask {
                db: db.to_path_buf(),
                run: run.to_owned(),
                task: t.clone(),
                available: tasks,
            })));
        }
        None => match tasks.first() {
            Some(t) => t.clone(),
            None => return Ok(h),
        },
    };
    let mut names = Vec::new();
    for rec in latest_layers.iter().filter(|l| l.task == task) {
        let (s, n) = loader.summary(latest.step, rec)?;
        if names.is_empty() {
            names = n;
        }
        h.latest.push(s);
    }
    h.tasks = tasks;
    h.task = task.clone();
    let layers: Vec<usize> = h.latest.iter().map(|l| l.layer).collect();
    let k = h.latest.first().map_or(0, |l| l.min_label_distance.len());
    if names.len() != k {
        names = label_names_from_meta(latest.task_meta_json.as_deref(), &task)
            .filter(|n| n.len() == k)
            .unwrap_or_else(|| (0..k).map(|i| format!("#{i}")).collect());
    }
    h.labels = names;
    if let Some(b) = store.baseline(run_id)? {
        h.baseline_step = Some(b.step);
        for rec in store.layers(b.id)?.iter().filter(|l| l.task == task) {
            h.baseline.push(loader.summary(b.step, rec)?.0);
        }
    }
    h.steps = rows
        .iter()
        .filter(|r| r.status == CheckpointStatus::Done)
        .map(|r| r.step)
        .collect();
    h.similarity = similarity(store, &loader, run_id, &task, &h.steps, &layers)?;
    // The focus layer's min distances, and the first and last layers'
    // centroids, over the steps.
    let focus = match opts.layer {
        Some(l) if layers.contains(&l) => l,
        Some(l) => {
            return Err(ReportError::NoLayer(Box::new(NoLayer {
                db: db.to_path_buf(),
                run: run.to_owned(),
                task,
                layer: l,
                available: layers,
            })));
        }
        None => *layers.last().unwrap_or(&0),
    };
    h.focus_layer = focus;
    h.focus_min_distance = vec![Vec::new(); h.steps.len()];
    let (first, last) = (*layers.first().unwrap_or(&0), *layers.last().unwrap_or(&0));
    let mut wanted = vec![first, last, focus];
    wanted.sort_unstable();
    wanted.dedup();
    for layer in wanted {
        let mut cs = CentroidSeries {
            layer,
            ..CentroidSeries::default()
        };
        let paths = layer == first || layer == last;
        let focus_distances = &mut h.focus_min_distance;
        let steps = &h.steps;
        series(store, &loader, run_id, &task, layer, |step, r| {
            if layer == focus
                && let Ok(i) = steps.binary_search(&step)
            {
                focus_distances[i] = r.min_label_distance;
            }
            if paths {
                cs.steps.push(step);
                cs.centroids.push(r.centroids);
            }
        })?;
        if paths {
            h.paths.push(cs);
        }
    }
    Ok(h)
}

/// A layer and its similarity to the baseline at each step.
type LayerSimilarity = (usize, Vec<Option<f64>>);

/// Per layer of `layers`: the similarity to the baseline at each of `steps`
/// (`None` where no comparison is stored). Read a row at a time: a long
/// run's comparisons are never all in memory at once.
fn similarity(
    store: &Store,
    loader: &Loader<'_>,
    run: RunId,
    task: &str,
    steps: &[u64],
    layers: &[usize],
) -> Result<Vec<LayerSimilarity>, ReportError> {
    let mut sim: Vec<LayerSimilarity> = layers
        .iter()
        .map(|&l| (l, vec![None; steps.len()]))
        .collect();
    store.visit_comparison_series(run, task, |step, layer, json| {
        let (Ok(i), Some(j)) = (
            steps.binary_search(&step),
            sim.iter().position(|s| s.0 == layer as usize),
        ) else {
            return Ok(());
        };
        if json.is_some() {
            let c = record::decode_comparison_json(json.as_deref())
                .map_err(|e| loader.bad(step, task, layer, &e))?;
            sim[j].1[i] = c.baseline.and_then(|b| b.similarity);
        }
        Ok::<(), ReportError>(())
    })?;
    Ok(sim)
}

/// One layer over the steps, a record at a time: `visit` gets each step and
/// its decoded report (one centroid entry per label).
fn series(
    store: &Store,
    loader: &Loader<'_>,
    run: RunId,
    task: &str,
    layer: usize,
    mut visit: impl FnMut(u64, LayerReport),
) -> Result<(), ReportError> {
    store.visit_layer_series(run, task, layer as u32, |step, _, rec| {
        visit(step, loader.decode(step, &rec)?);
        Ok(())
    })
}

fn label_names_from_meta(meta: Option<&str>, task: &str) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(meta?).ok()?;
    serde_json::from_value(v.get(task)?.get("labels")?.clone()).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use geometry::classifier::MeanStd;
    use geometry::measures::{MeasureParams, compare, measure_layer};
    use geometry::synth::{Variant, generate};
    use store::NewCheckpoint;

    use super::*;
    use crate::render_page;

    const STEPS: [u64; 3] = [0, 50, 100];
    const LAYERS: usize = 3;
    const TASKS: [&str; 2] = ["ner", "pos"];

    /// Layer `layer` of `task` at checkpoint `c`: four named labels in six
    /// dimensions, measured for real (a seed per task, layer and
    /// checkpoint), with a classifier accuracy as the daemon adds it.
    fn measured(task: usize, layer: usize, c: usize) -> LayerReport {
        let seed = 1 + 100 * task + 10 * layer + c;
        let points = generate(60, 20, 6, 4, Variant::Separable, seed as u64);
        let splits = ["train".to_owned(), "test".to_owned()];
        let mut r = measure_layer(points.input(&splits), &MeasureParams::default());
        r.layer = layer;
        r.label_names = ["DET", "NOUN", "VERB", "ADJ"].map(String::from).to_vec();
        let acc = MeanStd {
            mean: 0.5 + 0.1 * c as f64,
            std: 0.01 * (layer + 1) as f64,
        };
        r.classifier_accuracy = Some(BTreeMap::from([("test".to_owned(), acc)]));
        r
    }

    /// Per task, checkpoint and layer: what was measured.
    type Run = Vec<Vec<Vec<LayerReport>>>;

    /// A checkpoint row: analysed (the one at step 0 the baseline) or
    /// failed.
    fn checkpoint<'a>(
        path: &'a Path,
        step: u64,
        layers: &'a [LayerRecord],
        failed: bool,
    ) -> NewCheckpoint<'a> {
        NewCheckpoint {
            step,
            path,
            size: step,
            mtime_ns: step as i64,
            status: if failed {
                CheckpointStatus::Failed
            } else {
                CheckpointStatus::Done
            },
            error_kind: failed.then_some("dump"),
            error: failed.then_some("truncated"),
            started_unix: 0.0,
            finished_unix: 1.0,
            seconds: 1.0,
            task_meta_json: None,
            layers,
            baseline: step == 0,
        }
    }

    /// A store the way the daemon fills it, every row through
    /// [`record::encode`]: run `r` with three analysed checkpoints of two
    /// tasks (the first the baseline; comparisons with the baseline and the
    /// previous checkpoint) and a failed one; run `bad` whose only row's
    /// centroid blob lacks a label.
    fn store(dir: &Path) -> (PathBuf, Run) {
        let db = dir.join("h.sqlite");
        let mut store = Store::open(&db).unwrap();
        let run = store.upsert_run("r", dir, "{}").unwrap();
        let reports: Run = (0..TASKS.len())
            .map(|t| {
                (0..STEPS.len())
                    .map(|c| (0..LAYERS).map(|l| measured(t, l, c)).collect())
                    .collect()
            })
            .collect();
        for (c, &step) in STEPS.iter().enumerate() {
            let mut rows = Vec::new();
            for (t, task) in TASKS.iter().enumerate() {
                for (l, now) in reports[t][c].iter().enumerate() {
                    let vs = |i: usize| (c > 0).then(|| compare(&reports[t][i][l], now).unwrap());
                    let (base, prev) = (vs(0), vs(c.saturating_sub(1)));
                    rows.push(record::encode(task, now, base.as_ref(), prev.as_ref()));
                }
            }
            store
                .record_checkpoint(
                    run,
                    &checkpoint(&dir.join(format!("step-{step}")), step, &rows, false),
                )
                .unwrap();
        }
        store
            .record_checkpoint(run, &checkpoint(&dir.join("step-75"), 75, &[], true))
            .unwrap();
        let bad = store.upsert_run("bad", dir, "{}").unwrap();
        let mut rec = record::encode("pos", &reports[0][0][0], None, None);
        rec.centroids
            .truncate(rec.centroids.len() - rec.centroid_dim as usize);
        store
            .record_checkpoint(bad, &checkpoint(&dir.join("bad-0"), 0, &[rec], false))
            .unwrap();
        (db, reports)
    }

    /// A report as the store holds it: through its JSON (which may move a
    /// float by an ulp), the centroids as `f32`.
    fn stored(r: &LayerReport) -> LayerReport {
        let mut back: LayerReport =
            serde_json::from_str(&serde_json::to_string(r).unwrap()).unwrap();
        back.centroids = r
            .centroids
            .iter()
            .map(|c| {
                c.as_ref()
                    .map(|c| c.iter().map(|&v| f64::from(v as f32)).collect())
            })
            .collect();
        back
    }

    /// The comparison of `now` with `base` as the store holds it.
    fn stored_comparison(base: &LayerReport, now: &LayerReport) -> LayerComparison {
        let c = compare(base, now).unwrap();
        serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap()
    }

    #[test]
    fn the_history_is_what_the_daemon_encoded() {
        let dir = tempfile::tempdir().unwrap();
        let (db, reports) = store(dir.path());
        let store = Store::open_reader(&db).unwrap();
        let h = load(&store, &db, "r", &ReportOptions::default()).unwrap();
        let runs = &reports[0]; // `ner`, the first task by name
        assert_eq!((h.run.as_str(), h.task.as_str()), ("r", "ner"));
        assert_eq!(h.tasks, TASKS);
        assert_eq!(h.steps, STEPS);
        assert_eq!((h.failed, h.baseline_step), (1, Some(0)));
        assert_eq!(h.labels, ["DET", "NOUN", "VERB", "ADJ"]);
        assert_eq!(h.focus_layer, LAYERS - 1);
        for (at, c) in [(&h.baseline, 0), (&h.latest, STEPS.len() - 1)] {
            assert_eq!(at.len(), LAYERS);
            for (s, orig) in at.iter().zip(&runs[c]) {
                let r = &stored(orig);
                assert_eq!(s.layer, r.layer);
                assert_eq!(
                    (s.clusters, s.labels_present),
                    (r.clusters, r.labels_present)
                );
                assert_eq!(s.min_label_distance, r.min_label_distance);
                assert_eq!(s.label_distance, r.label_distance);
                assert_eq!(s.test_accuracy, Some(r.accuracy["test"]));
                assert_eq!(s.train_test_similarity, r.similarity[TRAIN_TEST]);
                let acc = r.classifier_accuracy.as_ref().unwrap()["test"];
                assert_eq!(s.classifier_test_accuracy, Some((acc.mean, acc.std)));
                assert_eq!(s.centroids, r.centroids);
                assert!(s.centroids.iter().all(Option::is_some));
                let want = (c > 0).then(|| comparison(stored_comparison(&runs[0][s.layer], orig)));
                assert_eq!(s.vs_baseline, want);
            }
        }
        // Similarity to the baseline per layer and step (none is stored at
        // the baseline itself).
        assert_eq!(h.similarity.len(), LAYERS);
        for (layer, sim) in &h.similarity {
            let want: Vec<Option<f64>> = (0..STEPS.len())
                .map(|c| {
                    (c > 0)
                        .then(|| stored_comparison(&runs[0][*layer], &runs[c][*layer]).similarity)
                        .flatten()
                })
                .collect();
            assert_eq!(sim, &want, "layer {layer}");
        }
        for (c, d) in h.focus_min_distance.iter().enumerate() {
            assert_eq!(d, &stored(&runs[c][LAYERS - 1]).min_label_distance);
        }
        assert_eq!(
            h.paths.iter().map(|p| p.layer).collect::<Vec<_>>(),
            [0, LAYERS - 1]
        );
        for p in &h.paths {
            assert_eq!(p.steps, STEPS);
            for (c, cents) in p.centroids.iter().enumerate() {
                assert_eq!(cents, &stored(&runs[c][p.layer]).centroids);
            }
        }

        // The page shows them.
        let page = render_page(&h, &ReportOptions::default());
        assert!(
            page.contains(
                "3 analysed checkpoints (steps 0 to 100), 4 labels, 3 layers; baseline: step 0."
            ),
            "{page}"
        );
        assert!(page.contains(" 1 checkpoint failed"));
        assert_eq!(page.matches("<svg").count(), 5, "five figures");
        assert!(!page.contains("class=\"needs\""), "nothing missing");
        for (b, l) in h.baseline.iter().zip(&h.latest) {
            let pct = |v: f64| format!("{:.1} %", 100.0 * v);
            let (tb, tl) = (b.test_accuracy.unwrap(), l.test_accuracy.unwrap());
            assert!(page.contains(&format!("{} → {}", pct(tb), pct(tl))));
            let c = l.vs_baseline.as_ref().unwrap();
            assert!(page.contains(&format!("{} / {}", c.grew, c.shrank)));
            assert!(page.contains(&format!("{:+.3}", c.mean_change.unwrap())));
        }
        assert!(
            page.contains("50.0 % → 70.0 % ± 3.0"),
            "the classifier column"
        );

        // Another task and focus layer.
        let opts = ReportOptions {
            task: Some("pos".into()),
            layer: Some(0),
            ..ReportOptions::default()
        };
        let h = load(&store, &db, "r", &opts).unwrap();
        assert_eq!((h.task.as_str(), h.focus_layer), ("pos", 0));
        for (c, d) in h.focus_min_distance.iter().enumerate() {
            assert_eq!(d, &stored(&reports[1][c][0]).min_label_distance);
        }
        assert!(render_page(&h, &opts).contains("Min label distance over training, layer 0"));
    }

    #[test]
    fn what_cannot_be_shown_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = store(dir.path());
        let store = Store::open_reader(&db).unwrap();
        let load = |run: &str, task: Option<&str>, layer: Option<usize>| {
            let opts = ReportOptions {
                task: task.map(String::from),
                layer,
                ..ReportOptions::default()
            };
            load(&store, &db, run, &opts).unwrap_err()
        };
        let e = load("nope", None, None);
        assert!(matches!(e, ReportError::NoRun(_)), "{e:?}");
        assert!(
            e.to_string()
                .ends_with("no run named 'nope' (runs in this store: r, bad)")
        );
        let e = load("r", Some("ud"), None);
        assert!(matches!(e, ReportError::NoTask(_)), "{e:?}");
        assert!(
            e.to_string()
                .ends_with("run 'r' has no task 'ud' (tasks: ner, pos)")
        );
        let e = load("r", None, Some(7));
        assert!(matches!(e, ReportError::NoLayer(_)), "{e:?}");
        assert!(e.to_string().ends_with("no layer 7 (layers: [0, 1, 2])"));
        let e = load("bad", None, None);
        let ReportError::BadRecord(b) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (b.step, b.task.as_str(), b.layer, b.what),
            (0, "pos", 0, "centroids")
        );
        assert!(
            e.to_string()
                .contains("stored centroids is unreadable: 18 values of width 6"),
            "{e}"
        );
    }
}
