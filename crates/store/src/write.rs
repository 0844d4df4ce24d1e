//! Every write to the history, each one transaction: a run
//! ([`Store::upsert_run`]), a checkpoint with its layer rows
//! ([`Store::record_checkpoint`]), a late stage's layers with its outcome
//! ([`Store::record_stage`]) and a run's baseline ([`Store::set_baseline`]).
//!
//! What it does not do: decide what to write (which checkpoint is the
//! baseline, whether a stage's results still belong to the stored version:
//! the caller names the version and the store only compares it), or read
//! anything back beyond what a write must check.

use std::path::Path;

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use crate::schema::{INSERT_CHECKPOINT, INSERT_LAYER};
use crate::sql::{SqlPath, encode_centroids, run_exists, sql_err};
use crate::{CheckpointStatus, LayerRecord, NewCheckpoint, RunId, StageRecord, Store, StoreError};

impl Store {
    /// Creates the run `name`, or updates its folder and configuration when
    /// it exists; the same name always gets the same id.
    pub fn upsert_run(
        &self,
        name: &str,
        folder: &Path,
        config_json: &str,
    ) -> Result<RunId, StoreError> {
        self.conn
            .query_row(
                "INSERT INTO run (name, folder, config_json) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE \
                 SET folder = excluded.folder, config_json = excluded.config_json \
                 RETURNING id",
                params![name, SqlPath(folder), config_json],
                |row| row.get(0),
            )
            .map_err(sql_err(&self.db, format!("recording run '{name}'")))
    }

    /// Records one analysed (or failed) checkpoint and its layer rows
    /// atomically; returns the checkpoint's id.
    ///
    /// The key is (run, path, size, mtime_ns): recording the same key again
    /// is [`StoreError::AlreadyRecorded`], never a duplicate. A new version
    /// of the same path (different size or mtime) replaces the old rows for
    /// that path, and a `Done` checkpoint replaces a `Done` row of the same
    /// step from a different path (the newest analysis of a step wins;
    /// failed rows of other paths are kept as history). Replaced rows go with
    /// their layer rows, and a baseline that pointed at a replaced row is
    /// cleared ([`Store::baseline`] returns `None` until it is set again).
    /// All of it happens in one transaction: on any error nothing changes.
    pub fn record_checkpoint(&mut self, run: RunId, c: &NewCheckpoint) -> Result<i64, StoreError> {
        let (step, size) = self.checked_keys(c)?;
        let db = self.db.as_path();
        let what = |action: &str| {
            format!(
                "recording checkpoint {} of run {run}: {action}",
                c.path.display()
            )
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(db, what("starting the transaction")))?;
        if !run_exists(&tx, run).map_err(sql_err(db, what("looking up the run")))? {
            return Err(StoreError::UnknownRun {
                db: db.to_path_buf(),
                run,
            });
        }
        let replaced = Self::rows_to_replace(&tx, db, run, c, (step, size), &what)?;
        for id in &replaced {
            tx.execute("DELETE FROM checkpoint WHERE id = ?1", [id])
                .map_err(sql_err(db, what(&format!("replacing checkpoint {id}"))))?;
        }
        tx.execute(
            INSERT_CHECKPOINT,
            params![
                run,
                step,
                SqlPath(c.path),
                size,
                c.mtime_ns,
                c.status,
                c.error_kind,
                c.error,
                c.started_unix,
                c.finished_unix,
                c.seconds,
                c.task_meta_json,
            ],
        )
        .map_err(sql_err(db, what("inserting the checkpoint row")))?;
        let id = tx.last_insert_rowid();
        Self::insert_layers(&tx, db, id, c.layers, &what)?;
        if c.baseline && c.status == CheckpointStatus::Done {
            tx.execute(
                "INSERT INTO baseline (run, checkpoint) VALUES (?1, ?2) \
                 ON CONFLICT (run) DO UPDATE SET checkpoint = excluded.checkpoint",
                [run, id],
            )
            .map_err(sql_err(db, what("marking the baseline")))?;
        }
        tx.commit().map_err(sql_err(db, what("committing")))?;
        if !replaced.is_empty() {
            tracing::info!(
                db = %db.display(),
                path = %c.path.display(),
                step = c.step,
                ?replaced,
                id,
                "replaced earlier checkpoint rows"
            );
        }
        Ok(id)
    }

    /// The step and size of `c` as SQLite integers, once every value of `c`
    /// is one the database can hold ([`StoreError::InvalidCheckpoint`]
    /// otherwise; checked before anything is written).
    fn checked_keys(&self, c: &NewCheckpoint) -> Result<(i64, i64), StoreError> {
        let invalid = |detail: String| StoreError::InvalidCheckpoint {
            db: self.db.clone(),
            path: c.path.to_path_buf(),
            detail,
        };
        let step = i64::try_from(c.step)
            .map_err(|_| invalid(format!("step {} does not fit an SQLite integer", c.step)))?;
        let size = i64::try_from(c.size)
            .map_err(|_| invalid(format!("size {} does not fit an SQLite integer", c.size)))?;
        for (field, value) in [
            ("started_unix", c.started_unix),
            ("finished_unix", c.finished_unix),
            ("seconds", c.seconds),
        ] {
            if !value.is_finite() {
                return Err(invalid(format!("{field} is {value}, not a finite number")));
            }
        }
        for l in c.layers {
            let dim = l.centroid_dim as usize;
            let whole = if dim == 0 {
                l.centroids.is_empty()
            } else {
                l.centroids.len() % dim == 0
            };
            if !whole {
                return Err(invalid(format!(
                    "task '{}', layer {}: {} centroid values are not whole rows of {}",
                    l.task,
                    l.layer,
                    l.centroids.len(),
                    l.centroid_dim
                )));
            }
        }
        Ok((step, size))
    }

    /// The rows `c` replaces: the earlier version of its path, and for a
    /// `Done` checkpoint the `Done` row of its step; the same version again
    /// is [`StoreError::AlreadyRecorded`].
    fn rows_to_replace(
        tx: &Transaction<'_>,
        db: &Path,
        run: RunId,
        c: &NewCheckpoint,
        (step, size): (i64, i64),
        what: &dyn Fn(&str) -> String,
    ) -> Result<Vec<i64>, StoreError> {
        let mut replaced = Vec::new();
        let previous: Option<(i64, i64, i64)> = tx
            .query_row(
                "SELECT id, size, mtime_ns FROM checkpoint WHERE run = ?1 AND path = ?2",
                params![run, SqlPath(c.path)],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .map_err(sql_err(db, what("looking up earlier versions")))?;
        if let Some((id, old_size, old_mtime)) = previous {
            if old_size == size && old_mtime == c.mtime_ns {
                return Err(StoreError::AlreadyRecorded {
                    db: db.to_path_buf(),
                    run,
                    path: c.path.to_path_buf(),
                    size: c.size,
                    mtime_ns: c.mtime_ns,
                });
            }
            replaced.push(id);
        }
        if c.status == CheckpointStatus::Done {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id FROM checkpoint WHERE run = ?1 AND step = ?2 AND status = 'done'",
                )
                .map_err(sql_err(db, what("looking up the step's done row")))?;
            let ids = stmt
                .query_map(params![run, step], |row| row.get::<_, i64>(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(sql_err(db, what("looking up the step's done row")))?;
            for id in ids {
                if !replaced.contains(&id) {
                    replaced.push(id);
                }
            }
        }
        Ok(replaced)
    }

    /// Inserts the layer rows of checkpoint `id`.
    fn insert_layers(
        tx: &Transaction<'_>,
        db: &Path,
        id: i64,
        layers: &[LayerRecord],
        what: &dyn Fn(&str) -> String,
    ) -> Result<(), StoreError> {
        let mut stmt = tx
            .prepare_cached(INSERT_LAYER)
            .map_err(sql_err(db, what("preparing the layer insert")))?;
        for l in layers {
            stmt.execute(params![
                id,
                l.task,
                l.layer,
                l.report_json,
                l.comparison_json,
                encode_centroids(&l.centroids),
                l.centroid_dim,
            ])
            .map_err(sql_err(
                db,
                what(&format!("inserting task '{}' layer {}", l.task, l.layer)),
            ))?;
        }
        Ok(())
    }

    /// Replaces the reports (and comparisons) of layers of a stored
    /// checkpoint with the ones a late stage completed, and records the
    /// stage's outcome, in one transaction. Only existing (task, layer) rows
    /// are updated; centroids are the core stage's and stay.
    ///
    /// Returns `false`, writing nothing, when the row `checkpoint_id` is gone
    /// or no longer the version `stage.version` names (a new version of the
    /// file replaced it while the stage ran; row ids can be reused).
    pub fn record_stage(
        &mut self,
        checkpoint_id: i64,
        layers: &[LayerRecord],
        stage: &StageRecord<'_>,
    ) -> Result<bool, StoreError> {
        let db = self.db.as_path();
        let what = || {
            format!(
                "recording stage {} of checkpoint {checkpoint_id}",
                stage.stage
            )
        };
        if !stage.seconds.is_finite() || !stage.finished_unix.is_finite() {
            return Err(StoreError::Sqlite {
                db: db.to_path_buf(),
                context: what(),
                source: rusqlite::Error::InvalidQuery,
            });
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(db, what()))?;
        let version: Option<(i64, i64)> = tx
            .query_row(
                "SELECT size, mtime_ns FROM checkpoint WHERE id = ?1",
                [checkpoint_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql_err(db, what()))?;
        let (size, mtime_ns) = stage.version;
        if version != Some((size as i64, mtime_ns)) {
            return Ok(false);
        }
        {
            let mut up = tx
                .prepare_cached(
                    "UPDATE layer SET report_json = ?4, comparison_json = ?5 \
                     WHERE checkpoint = ?1 AND task = ?2 AND layer = ?3",
                )
                .map_err(sql_err(db, what()))?;
            for l in layers {
                up.execute(rusqlite::params![
                    checkpoint_id,
                    l.task,
                    l.layer,
                    l.report_json,
                    l.comparison_json
                ])
                .map_err(sql_err(db, what()))?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO stage_run \
                 (checkpoint, stage, outcome, seconds, layers_done, layers, finished_unix, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                rusqlite::params![
                    checkpoint_id,
                    stage.stage,
                    stage.outcome,
                    stage.seconds,
                    stage.layers_done as i64,
                    stage.layers as i64,
                    stage.finished_unix,
                    stage.detail
                ],
            )
            .map_err(sql_err(db, what()))?;
        }
        tx.commit().map_err(sql_err(db, what()))?;
        Ok(true)
    }

    /// Makes a `Done` checkpoint of `run` its baseline (replacing any other).
    pub fn set_baseline(&mut self, run: RunId, checkpoint_id: i64) -> Result<(), StoreError> {
        let db = self.db.as_path();
        let what = || format!("setting checkpoint {checkpoint_id} as the baseline of run {run}");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(db, what()))?;
        let found: Option<(RunId, CheckpointStatus)> = tx
            .query_row(
                "SELECT run, status FROM checkpoint WHERE id = ?1",
                [checkpoint_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(sql_err(db, what()))?;
        let bad = |reason: String| StoreError::BadBaseline {
            db: db.to_path_buf(),
            run,
            checkpoint: checkpoint_id,
            reason,
        };
        match found {
            None => {
                return Err(StoreError::UnknownCheckpoint {
                    db: db.to_path_buf(),
                    checkpoint: checkpoint_id,
                });
            }
            Some((owner, _)) if owner != run => {
                return Err(bad(format!("it belongs to run {owner}")));
            }
            Some((_, CheckpointStatus::Failed)) => {
                return Err(bad("its analysis failed".to_owned()));
            }
            Some((_, CheckpointStatus::Done)) => {}
        }
        tx.execute(
            "INSERT INTO baseline (run, checkpoint) VALUES (?1, ?2) \
             ON CONFLICT (run) DO UPDATE SET checkpoint = excluded.checkpoint",
            [run, checkpoint_id],
        )
        .map_err(sql_err(db, what()))?;
        tx.commit().map_err(sql_err(db, what()))
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};

    use rusqlite::ErrorCode;
    use tempfile::TempDir;

    use super::*;
    use crate::StageOutcome;
    use crate::test_util::*;

    #[test]
    fn a_checkpoint_can_become_the_baseline_in_its_own_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("b.sqlite")).unwrap();
        let run = store.upsert_run("r", dir.path(), "{}").unwrap();
        let p0 = dir.path().join("step-0.safetensors");
        let c = NewCheckpoint {
            baseline: true,
            ..done(0, &p0, 1, &[])
        };
        let id = store.record_checkpoint(run, &c).unwrap();
        assert_eq!(store.baseline(run).unwrap().map(|r| r.id), Some(id));
        // A failure never becomes the baseline.
        let p1 = dir.path().join("step-1.safetensors");
        let f = NewCheckpoint {
            baseline: true,
            ..failed(1, &p1, 2, Some("format"))
        };
        store.record_checkpoint(run, &f).unwrap();
        assert_eq!(store.baseline(run).unwrap().map(|r| r.id), Some(id));
    }

    #[test]
    fn a_late_stage_updates_its_layers_and_records_its_outcome() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("history.sqlite");
        let cpath = dir.path().join("checkpoint-10");
        let layers = two_tasks(2, false);
        let mut store = Store::open(&path).unwrap();
        let run = run(&store);
        let id = store
            .record_checkpoint(run, &done(10, &cpath, 5, &layers))
            .unwrap();
        let mut late = layers[0].clone();
        late.report_json = "{\"late\":true}".to_owned();
        late.comparison_json = Some("{}".to_owned());
        let rec = StageRecord {
            stage: "clusters",
            outcome: StageOutcome::Abandoned,
            seconds: 1.5,
            layers_done: 1,
            layers: 2,
            finished_unix: 1.7e9,
            detail: Some("budget"),
            version: (1010, 5),
        };
        assert!(store.record_stage(id, &[late.clone()], &rec).unwrap());
        let back = store.layers(id).unwrap();
        let row = back
            .iter()
            .find(|l| l.task == late.task && l.layer == late.layer)
            .unwrap();
        assert_eq!(row.report_json, late.report_json);
        // Centroids are the core stage's and stay.
        assert_eq!(row.centroids, layers[0].centroids);
        assert_eq!(back.len(), layers.len());
        assert_eq!(
            store.stage_outcomes(id).unwrap(),
            vec![("clusters".to_owned(), StageOutcome::Abandoned)]
        );
        // The same rows as text, as they are stored.
        assert_eq!(
            store.stage_runs(id).unwrap(),
            vec![("clusters".to_owned(), "abandoned".to_owned())]
        );
        // Recorded again (resumed): the newer outcome replaces it.
        let again = StageRecord {
            outcome: StageOutcome::Done,
            ..rec
        };
        assert!(store.record_stage(id, &[], &again).unwrap());
        assert_eq!(
            store.stage_runs(id).unwrap(),
            vec![("clusters".to_owned(), "done".to_owned())]
        );
        // Text outside the outcomes is refused by the schema itself.
        let bad = store.conn.execute(
            "UPDATE stage_run SET outcome = 'maybe' WHERE checkpoint = ?1",
            [id],
        );
        assert_eq!(
            bad.unwrap_err().sqlite_error_code(),
            Some(ErrorCode::ConstraintViolation)
        );
        // A new version of the file replaces the row (its id may be the
        // same): the old version's stage writes nothing.
        let id2 = store
            .record_checkpoint(run, &done(10, &cpath, 6, &layers))
            .unwrap();
        let stale = StageRecord {
            outcome: StageOutcome::Done,
            ..rec
        };
        assert!(!store.record_stage(id2, &[late.clone()], &stale).unwrap());
        assert_same_layers(&store.layers(id2).unwrap(), &layers);
        assert!(store.stage_runs(id2).unwrap().is_empty());
        // Its own version is written.
        let fresh = StageRecord {
            version: (1010, 6),
            ..stale
        };
        assert!(store.record_stage(id2, &[late], &fresh).unwrap());
        // A row that is gone: nothing written, no error.
        assert!(!store.record_stage(id2 + 100, &[], &fresh).unwrap());
    }

    #[test]
    fn non_utf8_paths_round_trip() {
        let mut store = Store::open_in_memory().unwrap();
        let folder = PathBuf::from(OsStr::from_bytes(b"/runs/caf\xe9"));
        let cpath = folder.join(OsStr::from_bytes(b"checkpoint-\xff1"));
        let run = store.upsert_run("latin1", &folder, "{}").unwrap();
        assert_eq!(store.runs().unwrap()[0].2, folder);
        store
            .record_checkpoint(run, &done(1, &cpath, 9, &[]))
            .unwrap();
        assert_eq!(store.checkpoints(run).unwrap()[0].path, cpath);
        assert!(store.is_recorded(run, &cpath, 1001, 9).unwrap());
        let err = store
            .record_checkpoint(run, &done(1, &cpath, 9, &[]))
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyRecorded { .. }), "{err:?}");
    }

    #[test]
    fn the_same_key_is_already_recorded() {
        let dir = TempDir::new().unwrap();
        let (mut store, _) = file_store(&dir);
        let run = run(&store);
        let path = dir.path().join("checkpoint-100");
        let layers = two_tasks(2, true);
        let id = store
            .record_checkpoint(run, &done(100, &path, 1, &layers))
            .unwrap();
        let err = store
            .record_checkpoint(run, &done(100, &path, 1, &layers))
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyRecorded { .. }), "{err:?}");
        assert!(err.to_string().contains("checkpoint-100"), "{err}");
        // Also when the second attempt is a failure of the same version.
        let err = store
            .record_checkpoint(run, &failed(100, &path, 1, Some("io")))
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyRecorded { .. }), "{err:?}");
        assert_eq!(count(&store, "checkpoint"), 1);
        assert_eq!(count(&store, "layer"), 4);
        assert_eq!(store.checkpoints(run).unwrap()[0].id, id);
        // The same path in another run is another key.
        let other = store.upsert_run("other", dir.path(), "{}").unwrap();
        store
            .record_checkpoint(other, &done(100, &path, 1, &layers))
            .unwrap();
        assert_eq!(count(&store, "checkpoint"), 2);
    }

    #[test]
    fn a_new_version_of_a_path_replaces_its_rows() {
        let dir = TempDir::new().unwrap();
        let (mut store, _) = file_store(&dir);
        let run = run(&store);
        let path = dir.path().join("checkpoint-200");
        let three = two_tasks(3, true);
        let old = store
            .record_checkpoint(run, &done(200, &path, 1, &three))
            .unwrap();
        store.set_baseline(run, old).unwrap();
        let keep_path = dir.path().join("checkpoint-300");
        let keep = store
            .record_checkpoint(run, &done(300, &keep_path, 1, &three))
            .unwrap();
        assert_eq!(count(&store, "layer"), 12);

        let one = two_tasks(1, false);
        let new = store
            .record_checkpoint(run, &done(200, &path, 2, &one))
            .unwrap();
        assert_ne!(new, old);
        let rows = store.checkpoints(run).unwrap();
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [new, keep]);
        assert_eq!(rows[0].mtime_ns, 2);
        assert_eq!(count(&store, "layer"), 6 + 2, "no orphan layer rows");
        assert_same_layers(&store.layers(new).unwrap(), &one);
        let err = store.layers(old).unwrap_err();
        assert!(
            matches!(err, StoreError::UnknownCheckpoint { checkpoint, .. } if checkpoint == old)
        );
        // The baseline pointed at the replaced row: it is cleared.
        assert_eq!(store.baseline(run).unwrap(), None);
        assert!(!store.is_recorded(run, &path, 1200, 1).unwrap());
        assert!(store.is_recorded(run, &path, 1200, 2).unwrap());

        // A failed new version replaces a done one too.
        let failed_id = store
            .record_checkpoint(run, &failed(200, &path, 3, Some("truncated")))
            .unwrap();
        assert_eq!(store.checkpoints(run).unwrap()[0].id, failed_id);
        assert_eq!(count(&store, "layer"), 6);
        assert_eq!(store.counts(run).unwrap(), (1, 1));
        store.check_integrity().unwrap();
    }

    #[test]
    fn a_done_step_from_another_path_replaces_the_done_row() {
        let mut store = Store::open_in_memory().unwrap();
        let run = run(&store);
        let layers = two_tasks(2, false);
        let (a, b, c) = (
            Path::new("/r/checkpoint-40"),
            Path::new("/r/dumps/step-40.safetensors"),
            Path::new("/r/other-40"),
        );
        let first = store
            .record_checkpoint(run, &done(40, a, 1, &layers))
            .unwrap();
        // A failure at the same step from another path is kept beside it.
        let fail = store
            .record_checkpoint(run, &failed(40, c, 1, None))
            .unwrap();
        assert_eq!(store.counts(run).unwrap(), (1, 1));
        let second = store
            .record_checkpoint(run, &done(40, b, 1, &layers))
            .unwrap();
        let rows = store.checkpoints(run).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.id).collect::<Vec<_>>(),
            [fail, second]
        );
        assert!(!rows.iter().any(|r| r.id == first));
        assert_eq!(count(&store, "layer"), 4);
        assert_eq!(
            store.latest_done(run).unwrap().map(|r| r.path),
            Some(b.to_path_buf())
        );
        // The replaced path is no longer recorded: seeing it again re-analyses it.
        assert!(!store.is_recorded(run, a, 1040, 1).unwrap());
    }

    #[test]
    fn a_failure_mid_checkpoint_writes_nothing() {
        let dir = TempDir::new().unwrap();
        let (mut store, _) = file_store(&dir);
        let run = run(&store);
        let path = dir.path().join("checkpoint-7");
        let good = two_tasks(2, false);
        let old = store
            .record_checkpoint(run, &done(7, &path, 1, &good))
            .unwrap();
        store.set_baseline(run, old).unwrap();

        // The second row duplicates the first (task, layer): the insert fails
        // after the old version was deleted and the new checkpoint row and
        // first layer row were written.
        let mut bad = two_tasks(2, false);
        bad.insert(1, bad[0].clone());
        let err = store
            .record_checkpoint(run, &done(7, &path, 2, &bad))
            .unwrap_err();
        let StoreError::Sqlite {
            ref context,
            ref source,
            ..
        } = err
        else {
            panic!("{err:?}");
        };
        assert_eq!(
            source.sqlite_error_code(),
            Some(ErrorCode::ConstraintViolation)
        );
        assert!(context.contains("checkpoint-7"), "{context}");
        assert!(context.contains("task 'deprel' layer 0"), "{context}");
        assert!(err.to_string().contains("history.sqlite"), "{err}");

        // The old version is intact, nothing of the new one exists.
        let rows = store.checkpoints(run).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].id, rows[0].mtime_ns), (old, 1));
        assert_eq!(count(&store, "layer"), 4);
        assert_same_layers(&store.layers(old).unwrap(), &good);
        assert_eq!(store.baseline(run).unwrap().map(|r| r.id), Some(old));
        assert!(!store.is_recorded(run, &path, 1007, 2).unwrap());

        // A fresh path failing the same way leaves no checkpoint row either.
        let fresh = dir.path().join("checkpoint-8");
        store
            .record_checkpoint(run, &done(8, &fresh, 1, &bad))
            .unwrap_err();
        assert_eq!(count(&store, "checkpoint"), 1);
        assert_eq!(count(&store, "layer"), 4);
        // And the connection is usable afterwards.
        store
            .record_checkpoint(run, &done(8, &fresh, 1, &good))
            .unwrap();
        store.check_integrity().unwrap();
    }

    #[test]
    fn a_full_disk_is_an_error_and_changes_nothing() {
        let dir = TempDir::new().unwrap();
        let (mut store, path) = file_store(&dir);
        let run = run(&store);
        let small = two_tasks(2, true);
        let first_path = dir.path().join("checkpoint-1");
        store
            .record_checkpoint(run, &done(1, &first_path, 1, &small))
            .unwrap();
        // Cap the database at its current size: the next big write hits
        // SQLITE_FULL, as on a full disk.
        let pages: i64 = store
            .conn
            .pragma_query_value(None, "page_count", |row| row.get(0))
            .unwrap();
        store
            .conn
            .pragma_update(None, "max_page_count", pages)
            .unwrap();
        let big: Vec<LayerRecord> = (0..4).map(|l| layer("upos", l, 64, 256, true)).collect();
        let big_path = dir.path().join("checkpoint-2");
        let err = store
            .record_checkpoint(run, &done(2, &big_path, 1, &big))
            .unwrap_err();
        let StoreError::Sqlite { ref source, .. } = err else {
            panic!("{err:?}");
        };
        assert_eq!(
            source.sqlite_error_code(),
            Some(ErrorCode::DiskFull),
            "{err}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(steps(&store.checkpoints(run).unwrap()), [1]);
        assert_eq!(count(&store, "layer"), 4);
        store.check_integrity().unwrap();
        // Room again: the same checkpoint records fine.
        store
            .conn
            .pragma_update(None, "max_page_count", 1_000_000)
            .unwrap();
        let id = store
            .record_checkpoint(run, &done(2, &big_path, 1, &big))
            .unwrap();
        assert_same_layers(&store.layers(id).unwrap(), &big);
    }

    #[test]
    fn invalid_checkpoints_are_refused_before_writing() {
        let mut store = Store::open_in_memory().unwrap();
        let run = run(&store);
        let path = Path::new("/r/checkpoint-1");
        let mut ragged = layer("upos", 0, 2, 3, false);
        ragged.centroids.pop();
        let mut no_dim = layer("upos", 1, 2, 3, false);
        no_dim.centroid_dim = 0;
        let cases = [
            (
                done(1, path, 1, std::slice::from_ref(&ragged)),
                "whole rows of 3",
            ),
            (
                done(1, path, 1, std::slice::from_ref(&no_dim)),
                "whole rows of 0",
            ),
            (
                NewCheckpoint {
                    seconds: f64::NAN,
                    ..done(1, path, 1, &[])
                },
                "seconds is NaN",
            ),
            (
                NewCheckpoint {
                    started_unix: f64::INFINITY,
                    ..done(1, path, 1, &[])
                },
                "started_unix is inf",
            ),
            (
                NewCheckpoint {
                    step: u64::MAX,
                    ..done(1, path, 1, &[])
                },
                "step 18446744073709551615",
            ),
            (
                NewCheckpoint {
                    size: u64::MAX,
                    ..done(1, path, 1, &[])
                },
                "size 18446744073709551615",
            ),
        ];
        for (c, needle) in cases {
            let err = store.record_checkpoint(run, &c).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidCheckpoint { .. }),
                "{err:?}"
            );
            let message = err.to_string();
            assert!(
                message.contains(needle) && message.contains("checkpoint-1"),
                "{message}"
            );
        }
        assert_eq!(count(&store, "checkpoint"), 0);
        let err = store
            .record_checkpoint(run + 100, &done(1, path, 1, &[]))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::UnknownRun { run: r, .. } if r == run + 100),
            "{err:?}"
        );
    }

    #[test]
    fn the_baseline_is_set_replaced_and_checked() {
        let mut store = Store::open_in_memory().unwrap();
        let run = run(&store);
        let other = store.upsert_run("other", Path::new("/o"), "{}").unwrap();
        assert_eq!(store.baseline(run).unwrap(), None);
        let a = store
            .record_checkpoint(run, &done(0, Path::new("/r/c-0"), 1, &[]))
            .unwrap();
        let b = store
            .record_checkpoint(run, &done(5, Path::new("/r/c-5"), 1, &[]))
            .unwrap();
        let f = store
            .record_checkpoint(run, &failed(9, Path::new("/r/c-9"), 1, Some("x")))
            .unwrap();
        let o = store
            .record_checkpoint(other, &done(0, Path::new("/o/c-0"), 1, &[]))
            .unwrap();
        store.set_baseline(run, a).unwrap();
        assert_eq!(
            store.baseline(run).unwrap().map(|r| (r.id, r.step)),
            Some((a, 0))
        );
        store.set_baseline(run, b).unwrap();
        assert_eq!(store.baseline(run).unwrap().map(|r| r.id), Some(b));
        assert_eq!(count(&store, "baseline"), 1);
        assert_eq!(store.baseline(other).unwrap(), None);

        let err = store.set_baseline(run, f).unwrap_err();
        assert!(matches!(err, StoreError::BadBaseline { .. }), "{err:?}");
        assert!(err.to_string().contains("failed"), "{err}");
        let err = store.set_baseline(run, o).unwrap_err();
        assert!(
            err.to_string().contains(&format!("belongs to run {other}")),
            "{err}"
        );
        let err = store.set_baseline(run, 12345).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::UnknownCheckpoint {
                    checkpoint: 12345,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(store.baseline(run).unwrap().map(|r| r.id), Some(b));
        let err = store.baseline(999).unwrap_err();
        assert!(
            matches!(err, StoreError::UnknownRun { run: 999, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn every_stage_outcome_is_stored_and_read_back_as_its_text() {
        let mut store = Store::open_in_memory().unwrap();
        let run = run(&store);
        let id = store
            .record_checkpoint(run, &done(1, Path::new("/r/c-1"), 1, &[]))
            .unwrap();
        let stages = ["a", "b", "c", "d", "e"];
        for (stage, outcome) in stages.into_iter().zip(StageOutcome::ALL) {
            let rec = StageRecord {
                stage,
                outcome,
                seconds: 0.0,
                layers_done: 0,
                layers: 0,
                finished_unix: 1.0,
                detail: None,
                version: (1001, 1),
            };
            assert!(store.record_stage(id, &[], &rec).unwrap(), "{outcome}");
        }
        let typed = store.stage_outcomes(id).unwrap();
        assert_eq!(
            typed,
            stages
                .iter()
                .map(|s| s.to_string())
                .zip(StageOutcome::ALL)
                .collect::<Vec<_>>()
        );
        let text: Vec<String> = store
            .conn
            .prepare("SELECT outcome FROM stage_run ORDER BY stage")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(text, ["done", "abandoned", "skipped", "deferred", "failed"]);
    }
}
