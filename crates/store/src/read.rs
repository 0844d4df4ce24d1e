//! Every read of the history: runs, checkpoint rows (all of a run, the
//! baseline, the newest and previous `done` ones), layer rows, stage
//! outcomes, counts, and the per-layer series the report and the backfill
//! walk one row at a time. An unknown run or checkpoint is an error, never
//! an empty answer.
//!
//! What it does not do: write, or decode the JSON it hands out.

use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, ToSql, params};

use crate::schema::{
    SELECT_BASELINE, SELECT_CHECKPOINTS, SELECT_COMPARISON_SERIES, SELECT_COUNTS,
    SELECT_FAILED_BY_KIND, SELECT_IS_RECORDED, SELECT_LATEST_DONE, SELECT_LAYER_SERIES,
    SELECT_LAYERS, SELECT_PREVIOUS_DONE,
};
use crate::sql::{
    SqlPath, checkpoint_row, decode_centroids, path_column, run_exists, sql_err, u64_column,
};
use crate::{CheckpointRow, LayerRecord, RunId, StageOutcome, Store, StoreError};

/// Label under which [`Store::failed_counts_by_kind`] counts failures recorded
/// without an error kind.
pub const UNKNOWN_ERROR_KIND: &str = "unknown";

impl Store {
    /// Every run: id, name, folder; by id.
    pub fn runs(&self) -> Result<Vec<(RunId, String, PathBuf)>, StoreError> {
        let err = || sql_err(&self.db, "listing the runs");
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, name, folder FROM run ORDER BY id")
            .map_err(err())?;
        stmt.query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, path_column(row, 2)?))
        })
        .and_then(|rows| rows.collect())
        .map_err(err())
    }

    /// The id of the run called `name`, if any.
    pub fn run_id(&self, name: &str) -> Result<Option<RunId>, StoreError> {
        self.conn
            .prepare_cached("SELECT id FROM run WHERE name = ?1")
            .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)).optional())
            .map_err(sql_err(&self.db, format!("looking up run '{name}'")))
    }

    /// Whether this exact file version (run, path, size, mtime) is recorded.
    pub fn is_recorded(
        &self,
        run: RunId,
        path: &Path,
        size: u64,
        mtime_ns: i64,
    ) -> Result<bool, StoreError> {
        // A size beyond i64 can never have been recorded.
        let Ok(size) = i64::try_from(size) else {
            return Ok(false);
        };
        self.conn
            .prepare_cached(SELECT_IS_RECORDED)
            .and_then(|mut stmt| {
                stmt.query_row(params![run, SqlPath(path), size, mtime_ns], |_| Ok(()))
                    .optional()
            })
            .map(|found| found.is_some())
            .map_err(sql_err(
                &self.db,
                format!("looking up checkpoint {}", path.display()),
            ))
    }

    /// Every checkpoint row of a run, by ascending step, then id.
    pub fn checkpoints(&self, run: RunId) -> Result<Vec<CheckpointRow>, StoreError> {
        let err = || sql_err(&self.db, format!("reading the checkpoints of run {run}"));
        let rows: Vec<CheckpointRow> = self
            .conn
            .prepare_cached(SELECT_CHECKPOINTS)
            .and_then(|mut stmt| stmt.query_map([run], checkpoint_row)?.collect())
            .map_err(err())?;
        if rows.is_empty() {
            self.require_run(run)?;
        }
        Ok(rows)
    }

    /// The layer rows of a checkpoint, by ascending (task, layer).
    pub fn layers(&self, checkpoint_id: i64) -> Result<Vec<LayerRecord>, StoreError> {
        let err = || {
            sql_err(
                &self.db,
                format!("reading the layers of checkpoint {checkpoint_id}"),
            )
        };
        let mut stmt = self.conn.prepare_cached(SELECT_LAYERS).map_err(err())?;
        let mut rows = stmt.query([checkpoint_id]).map_err(err())?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(err())? {
            let task: String = row.get(0).map_err(err())?;
            let layer: u32 = row.get(1).map_err(err())?;
            let dim: u32 = row.get(5).map_err(err())?;
            let blob = row
                .get_ref(4)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(err())?;
            let Some(centroids) = decode_centroids(blob, dim) else {
                return Err(StoreError::CorruptBlob {
                    db: self.db.clone(),
                    checkpoint: checkpoint_id,
                    task,
                    layer,
                    len: blob.len(),
                    dim,
                });
            };
            out.push(LayerRecord {
                task,
                layer,
                report_json: row.get(2).map_err(err())?,
                comparison_json: row.get(3).map_err(err())?,
                centroids,
                centroid_dim: dim,
            });
        }
        if out.is_empty() {
            let exists = self
                .conn
                .prepare_cached("SELECT 1 FROM checkpoint WHERE id = ?1")
                .and_then(|mut stmt| stmt.query_row([checkpoint_id], |_| Ok(())).optional())
                .map_err(err())?;
            if exists.is_none() {
                return Err(StoreError::UnknownCheckpoint {
                    db: self.db.clone(),
                    checkpoint: checkpoint_id,
                });
            }
        }
        Ok(out)
    }

    /// The late-stage outcomes recorded for a checkpoint, by stage name:
    /// `(stage, outcome)`.
    pub fn stage_outcomes(
        &self,
        checkpoint_id: i64,
    ) -> Result<Vec<(String, StageOutcome)>, StoreError> {
        let what = || format!("reading the stages of checkpoint {checkpoint_id}");
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT stage, outcome FROM stage_run WHERE checkpoint = ?1 ORDER BY stage",
            )
            .map_err(sql_err(&self.db, what()))?;
        let rows = stmt
            .query_map([checkpoint_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql_err(&self.db, what()))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql_err(&self.db, what()))
    }

    /// [`Store::stage_outcomes`] with each outcome as its stored text
    /// ([`StageOutcome::as_str`]), for callers that compare text.
    pub fn stage_runs(&self, checkpoint_id: i64) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .stage_outcomes(checkpoint_id)?
            .into_iter()
            .map(|(stage, outcome)| (stage, outcome.as_str().to_owned()))
            .collect())
    }

    /// The run's baseline checkpoint, if one is set.
    pub fn baseline(&self, run: RunId) -> Result<Option<CheckpointRow>, StoreError> {
        self.one_checkpoint(
            run,
            SELECT_BASELINE,
            &[&run],
            format!("reading the baseline of run {run}"),
        )
    }

    /// The run's `Done` checkpoint with the highest step.
    pub fn latest_done(&self, run: RunId) -> Result<Option<CheckpointRow>, StoreError> {
        self.one_checkpoint(
            run,
            SELECT_LATEST_DONE,
            &[&run],
            format!("reading the latest done checkpoint of run {run}"),
        )
    }

    /// The run's `Done` checkpoint with the highest step below `step`.
    pub fn previous_done(
        &self,
        run: RunId,
        step: u64,
    ) -> Result<Option<CheckpointRow>, StoreError> {
        // Every stored step is below a step beyond i64.
        let Ok(bound) = i64::try_from(step) else {
            return self.latest_done(run);
        };
        self.one_checkpoint(
            run,
            SELECT_PREVIOUS_DONE,
            &[&run, &bound],
            format!("reading the done checkpoint of run {run} before step {step}"),
        )
    }

    /// Numbers of `Done` and `Failed` checkpoint rows of a run.
    pub fn counts(&self, run: RunId) -> Result<(u64, u64), StoreError> {
        let (done, failed): (u64, u64) = self
            .conn
            .prepare_cached(SELECT_COUNTS)
            .and_then(|mut stmt| {
                stmt.query_row([run], |row| Ok((u64_column(row, 0)?, u64_column(row, 1)?)))
            })
            .map_err(sql_err(
                &self.db,
                format!("counting the checkpoints of run {run}"),
            ))?;
        if done == 0 && failed == 0 {
            self.require_run(run)?;
        }
        Ok((done, failed))
    }

    /// Failed checkpoint rows of a run per error kind, by kind; failures
    /// without a kind count under [`UNKNOWN_ERROR_KIND`].
    pub fn failed_counts_by_kind(&self, run: RunId) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, u64)> = self
            .conn
            .prepare_cached(SELECT_FAILED_BY_KIND)
            .and_then(|mut stmt| {
                stmt.query_map(params![run, UNKNOWN_ERROR_KIND], |row| {
                    Ok((row.get(0)?, u64_column(row, 1)?))
                })?
                .collect()
            })
            .map_err(sql_err(
                &self.db,
                format!("counting the failures of run {run}"),
            ))?;
        if rows.is_empty() {
            self.require_run(run)?;
        }
        Ok(rows)
    }

    /// One (task, layer) over a run's `Done` checkpoints, by ascending step:
    /// `(step, checkpoint id, record)`. Checkpoints without that layer are
    /// left out.
    pub fn layer_series(
        &self,
        run: RunId,
        task: &str,
        layer: u32,
    ) -> Result<Vec<(u64, i64, LayerRecord)>, StoreError> {
        let mut out = Vec::new();
        self.visit_layer_series(run, task, layer, |step, id, rec| {
            out.push((step, id, rec));
            Ok::<(), StoreError>(())
        })?;
        Ok(out)
    }

    /// [`Store::layer_series`] one row at a time: `visit` gets each
    /// `(step, checkpoint id, record)` as it is read, so a caller that keeps
    /// only part of each record never holds every record at once (the
    /// report of a long run). Stops at `visit`'s first error.
    pub fn visit_layer_series<E: From<StoreError>>(
        &self,
        run: RunId,
        task: &str,
        layer: u32,
        mut visit: impl FnMut(u64, i64, LayerRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        let err = || {
            sql_err(
                &self.db,
                format!("reading task '{task}' layer {layer} of run {run}"),
            )
        };
        let mut stmt = self
            .conn
            .prepare_cached(SELECT_LAYER_SERIES)
            .map_err(err())?;
        let mut rows = stmt.query(params![run, task, layer]).map_err(err())?;
        let mut seen = false;
        while let Some(row) = rows.next().map_err(err())? {
            seen = true;
            let step = u64_column(row, 0).map_err(err())?;
            let checkpoint: i64 = row.get(7).map_err(err())?;
            let dim: u32 = row.get(6).map_err(err())?;
            let blob = row
                .get_ref(5)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(err())?;
            let Some(centroids) = decode_centroids(blob, dim) else {
                return Err(StoreError::CorruptBlob {
                    db: self.db.clone(),
                    checkpoint,
                    task: task.to_owned(),
                    layer,
                    len: blob.len(),
                    dim,
                }
                .into());
            };
            visit(
                step,
                checkpoint,
                LayerRecord {
                    task: row.get(1).map_err(err())?,
                    layer: row.get(2).map_err(err())?,
                    report_json: row.get(3).map_err(err())?,
                    comparison_json: row.get(4).map_err(err())?,
                    centroids,
                    centroid_dim: dim,
                },
            )?;
        }
        if !seen {
            self.require_run(run)?;
        }
        Ok(())
    }

    /// The comparison JSON of every layer of `task` over a run's `Done`
    /// checkpoints: `(step, layer, comparison)`, by step then layer.
    pub fn comparison_series(
        &self,
        run: RunId,
        task: &str,
    ) -> Result<Vec<(u64, u32, Option<String>)>, StoreError> {
        let mut out = Vec::new();
        self.visit_comparison_series(run, task, |step, layer, json| {
            out.push((step, layer, json));
            Ok::<(), StoreError>(())
        })?;
        Ok(out)
    }

    /// [`Store::comparison_series`] one row at a time (see
    /// [`Store::visit_layer_series`]).
    pub fn visit_comparison_series<E: From<StoreError>>(
        &self,
        run: RunId,
        task: &str,
        mut visit: impl FnMut(u64, u32, Option<String>) -> Result<(), E>,
    ) -> Result<(), E> {
        let err = || {
            sql_err(
                &self.db,
                format!("reading the comparisons of task '{task}' of run {run}"),
            )
        };
        let mut stmt = self
            .conn
            .prepare_cached(SELECT_COMPARISON_SERIES)
            .map_err(err())?;
        let mut rows = stmt.query(params![run, task]).map_err(err())?;
        let mut seen = false;
        while let Some(row) = rows.next().map_err(err())? {
            seen = true;
            let step = u64_column(row, 0).map_err(err())?;
            visit(step, row.get(1).map_err(err())?, row.get(2).map_err(err())?)?;
        }
        if !seen {
            self.require_run(run)?;
        }
        Ok(())
    }

    /// At most one checkpoint row from `sql`; an unknown run is an error.
    fn one_checkpoint(
        &self,
        run: RunId,
        sql: &str,
        args: &[&dyn ToSql],
        context: String,
    ) -> Result<Option<CheckpointRow>, StoreError> {
        let row = self
            .conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.query_row(args, checkpoint_row).optional())
            .map_err(sql_err(&self.db, context))?;
        if row.is_none() {
            self.require_run(run)?;
        }
        Ok(row)
    }

    /// [`StoreError::UnknownRun`] unless the run exists.
    fn require_run(&self, run: RunId) -> Result<(), StoreError> {
        if run_exists(&self.conn, run)
            .map_err(sql_err(&self.db, format!("looking up run {run}")))?
        {
            Ok(())
        } else {
            Err(StoreError::UnknownRun {
                db: self.db.clone(),
                run,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use rusqlite::ErrorCode;
    use tempfile::TempDir;

    use super::*;
    use crate::test_util::*;
    use crate::{CheckpointStatus, NewCheckpoint};

    #[test]
    fn round_trip_of_every_field() {
        let dir = TempDir::new().unwrap();
        let (mut store, _) = file_store(&dir);
        let run = run(&store);
        let mut layers = two_tasks(3, true);
        layers.push(LayerRecord {
            task: "upos".into(),
            layer: 7,
            report_json: "{}".into(),
            comparison_json: None,
            centroids: Vec::new(),
            centroid_dim: 0,
        });
        let path = dir.path().join("checkpoint-500");
        let c = NewCheckpoint {
            step: 500,
            path: &path,
            size: u64::try_from(i64::MAX).unwrap(),
            mtime_ns: -5, // before the epoch: still a valid key
            status: CheckpointStatus::Done,
            error_kind: None,
            error: None,
            started_unix: 1_700_000_000.0 + 1.0 / 3.0,
            finished_unix: 1_700_000_042.0 + 2.0 / 7.0,
            seconds: 42.864_197_532,
            task_meta_json: Some(r#"{"upos":{"labels":["NOUN","VERB"],"dim":4}}"#),
            layers: &layers,
            baseline: false,
        };
        let id = store.record_checkpoint(run, &c).unwrap();
        let fpath = dir.path().join("checkpoint-600");
        let f = failed(600, &fpath, 77, Some("incomplete"));
        let fid = store.record_checkpoint(run, &f).unwrap();

        let rows = store.checkpoints(run).unwrap();
        assert_eq!(
            rows,
            vec![
                CheckpointRow {
                    id,
                    run,
                    step: 500,
                    path: path.clone(),
                    size: c.size,
                    mtime_ns: -5,
                    status: CheckpointStatus::Done,
                    error_kind: None,
                    error: None,
                    started_unix: c.started_unix,
                    finished_unix: c.finished_unix,
                    seconds: c.seconds,
                    task_meta_json: c.task_meta_json.map(str::to_owned),
                },
                CheckpointRow {
                    id: fid,
                    run,
                    step: 600,
                    path: fpath.clone(),
                    size: f.size,
                    mtime_ns: 77,
                    status: CheckpointStatus::Failed,
                    error_kind: Some("incomplete".into()),
                    error: Some("model.safetensors: truncated".into()),
                    started_unix: f.started_unix,
                    finished_unix: f.finished_unix,
                    seconds: f.seconds,
                    task_meta_json: None,
                },
            ]
        );
        // Layers come back sorted by (task, layer): deprel before upos.
        let mut want = layers.clone();
        want.sort_by(|a, b| (&a.task, a.layer).cmp(&(&b.task, b.layer)));
        assert_same_layers(&store.layers(id).unwrap(), &want);
        assert!(store.layers(fid).unwrap().is_empty());
        // The blob is little-endian f32, 4 bytes per value.
        let blob: Vec<u8> = store
            .conn
            .query_row(
                "SELECT centroids FROM layer WHERE checkpoint = ?1 AND task = 'upos' AND layer = 1",
                [id],
                |row| row.get(0),
            )
            .unwrap();
        let upos1 = layers
            .iter()
            .find(|l| l.task == "upos" && l.layer == 1)
            .unwrap();
        assert_eq!(blob.len(), 4 * 12);
        assert_eq!(blob[..4], upos1.centroids[0].to_le_bytes());
        assert!(store.is_recorded(run, &path, c.size, -5).unwrap());
        assert!(!store.is_recorded(run, &path, c.size, -4).unwrap());
        assert!(!store.is_recorded(run, &path, u64::MAX, -5).unwrap());
        store.check_integrity().unwrap();
    }

    #[test]
    fn runs_are_upserted_by_name() {
        let store = Store::open_in_memory().unwrap();
        assert!(store.runs().unwrap().is_empty());
        assert_eq!(store.run_id("a").unwrap(), None);
        let a = store.upsert_run("a", Path::new("/x/a"), "{}").unwrap();
        let b = store.upsert_run("b", Path::new("/x/b"), "{}").unwrap();
        let a_again = store
            .upsert_run("a", Path::new("/y/a"), r#"{"v":2}"#)
            .unwrap();
        assert_eq!(a, a_again);
        assert_ne!(a, b);
        assert_eq!(
            store.runs().unwrap(),
            vec![
                (a, "a".to_owned(), PathBuf::from("/y/a")),
                (b, "b".to_owned(), PathBuf::from("/x/b")),
            ]
        );
        let config: String = store
            .conn
            .query_row("SELECT config_json FROM run WHERE id = ?1", [a], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(config, r#"{"v":2}"#);
        assert_eq!(store.run_id("b").unwrap(), Some(b));
    }

    #[test]
    fn a_corrupt_blob_is_reported() {
        let mut store = Store::open_in_memory().unwrap();
        let run = run(&store);
        let layers = [layer("upos", 2, 2, 3, false)];
        let id = store
            .record_checkpoint(run, &done(1, Path::new("/r/c-1"), 1, &layers))
            .unwrap();
        // The schema refuses a ragged blob ...
        let refused = store.conn.execute(
            "UPDATE layer SET centroids = x'0000803f00' WHERE checkpoint = ?1",
            [id],
        );
        assert_eq!(
            refused.unwrap_err().sqlite_error_code(),
            Some(ErrorCode::ConstraintViolation)
        );
        // ... so corrupt it behind the schema's back.
        store
            .conn
            .pragma_update(None, "ignore_check_constraints", true)
            .unwrap();
        store
            .conn
            .execute(
                "UPDATE layer SET centroids = x'0000803f0000803f' WHERE checkpoint = ?1",
                [id],
            )
            .unwrap();
        let err = store.layers(id).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::CorruptBlob {
                    len: 8,
                    dim: 3,
                    layer: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("'upos', layer 2"), "{err}");
    }

    #[test]
    fn latest_and_previous_done_follow_steps_not_insertion_order() {
        let mut store = Store::open_in_memory().unwrap();
        let run = run(&store);
        assert_eq!(store.latest_done(run).unwrap(), None);
        assert_eq!(store.previous_done(run, 100).unwrap(), None);
        for (step, ok) in [
            (100, true),
            (300, true),
            (400, false),
            (200, true),
            (50, false),
        ] {
            let path = PathBuf::from(format!("/r/checkpoint-{step}"));
            let c = if ok {
                done(step, &path, 1, &[])
            } else {
                failed(step, &path, 1, Some("io"))
            };
            store.record_checkpoint(run, &c).unwrap();
        }
        assert_eq!(
            steps(&store.checkpoints(run).unwrap()),
            [50, 100, 200, 300, 400]
        );
        let step = |row: Option<CheckpointRow>| row.map(|r| r.step);
        assert_eq!(step(store.latest_done(run).unwrap()), Some(300));
        assert_eq!(step(store.previous_done(run, 300).unwrap()), Some(200));
        assert_eq!(step(store.previous_done(run, 250).unwrap()), Some(200));
        assert_eq!(step(store.previous_done(run, 200).unwrap()), Some(100));
        assert_eq!(step(store.previous_done(run, 100).unwrap()), None);
        assert_eq!(step(store.previous_done(run, 400).unwrap()), Some(300));
        assert_eq!(step(store.previous_done(run, u64::MAX).unwrap()), Some(300));
        assert!(matches!(
            store.latest_done(run + 1).unwrap_err(),
            StoreError::UnknownRun { .. }
        ));
    }

    #[test]
    fn counts_by_status_and_failure_kind() {
        let mut store = Store::open_in_memory().unwrap();
        let run = run(&store);
        let other = store.upsert_run("other", Path::new("/o"), "{}").unwrap();
        assert_eq!(store.counts(run).unwrap(), (0, 0));
        assert!(store.failed_counts_by_kind(run).unwrap().is_empty());
        let kinds = [
            Some("truncated"),
            Some("io"),
            Some("truncated"),
            None,
            Some("io"),
            Some("io"),
        ];
        for (i, kind) in kinds.into_iter().enumerate() {
            let path = PathBuf::from(format!("/r/bad-{i}"));
            store
                .record_checkpoint(run, &failed(i as u64, &path, 1, kind))
                .unwrap();
        }
        for i in 0..3 {
            let path = PathBuf::from(format!("/r/good-{i}"));
            store
                .record_checkpoint(run, &done(10 + i, &path, 1, &[]))
                .unwrap();
        }
        store
            .record_checkpoint(other, &failed(1, Path::new("/o/x"), 1, Some("io")))
            .unwrap();
        assert_eq!(store.counts(run).unwrap(), (3, 6));
        assert_eq!(
            store.failed_counts_by_kind(run).unwrap(),
            vec![
                ("io".to_owned(), 3),
                ("truncated".to_owned(), 2),
                (UNKNOWN_ERROR_KIND.to_owned(), 1)
            ]
        );
        assert_eq!(store.counts(other).unwrap(), (0, 1));
        assert!(matches!(
            store.counts(-1).unwrap_err(),
            StoreError::UnknownRun { .. }
        ));
        assert!(matches!(
            store.failed_counts_by_kind(-1).unwrap_err(),
            StoreError::UnknownRun { .. }
        ));
        assert!(matches!(
            store.checkpoints(-1).unwrap_err(),
            StoreError::UnknownRun { .. }
        ));
    }

    #[test]
    fn start_up_reads_use_indexes() {
        let store = Store::open_in_memory().unwrap();
        let queries: [(&str, usize); 10] = [
            (SELECT_LAYER_SERIES, 3),
            (SELECT_COMPARISON_SERIES, 2),
            (SELECT_CHECKPOINTS, 1),
            (SELECT_LATEST_DONE, 1),
            (SELECT_PREVIOUS_DONE, 2),
            (SELECT_BASELINE, 1),
            (SELECT_LAYERS, 1),
            (SELECT_IS_RECORDED, 4),
            (SELECT_COUNTS, 1),
            (SELECT_FAILED_BY_KIND, 2),
        ];
        for (sql, n) in queries {
            let mut stmt = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let args: Vec<i64> = vec![1; n];
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(args), |row| row.get(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert!(!plan.is_empty(), "{sql}");
            for line in &plan {
                assert!(
                    line.starts_with("SEARCH") || line.starts_with("USE TEMP B-TREE FOR GROUP BY"),
                    "{sql}\n{plan:#?}"
                );
                assert!(!line.contains("ORDER BY"), "{sql}\n{plan:#?}");
            }
        }
    }

    #[test]
    fn series_read_one_layer_and_the_comparisons_over_done_steps() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("h.sqlite");
        let mut store = Store::open(&db).unwrap();
        let run = store.upsert_run("r", Path::new("/runs/r"), "{}").unwrap();
        let layers = two_tasks(3, true);
        let paths: Vec<PathBuf> = (0..3)
            .map(|i| PathBuf::from(format!("/runs/r/s{i}")))
            .collect();
        // Recorded out of order, one failed in between.
        for (i, step) in [(2usize, 200u64), (0, 0), (1, 100)] {
            store
                .record_checkpoint(run, &done(step, &paths[i], 7, &layers))
                .unwrap();
        }
        let failed_path = PathBuf::from("/runs/r/bad");
        let mut failed = done(150, &failed_path, 7, &[]);
        failed.status = CheckpointStatus::Failed;
        store.record_checkpoint(run, &failed).unwrap();
        drop(store);

        let reader = Store::open_reader(&db).unwrap();
        let series = reader.layer_series(run, "upos", 2).unwrap();
        let steps: Vec<u64> = series.iter().map(|s| s.0).collect();
        assert_eq!(steps, [0, 100, 200]);
        assert_eq!(series[0].2, layer("upos", 2, 3, 4, true));
        assert!(reader.layer_series(run, "upos", 9).unwrap().is_empty());
        let cmp = reader.comparison_series(run, "deprel").unwrap();
        assert_eq!(cmp.len(), 9);
        assert_eq!(cmp[4], (100, 1, Some(r#"{"similarity":0.1}"#.to_owned())));
        assert!(matches!(
            reader.layer_series(run + 5, "upos", 0),
            Err(StoreError::UnknownRun { .. })
        ));
    }
}
