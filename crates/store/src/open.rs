//! Opening the history database: the connection's pragmas (WAL, foreign
//! keys, busy timeout), the schema migrations in one transaction, the
//! read-only opening of the report, and the integrity check.
//!
//! What it does not do: read or write rows (`read.rs`, `write.rs`); the
//! migrations themselves are `schema.rs`'s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use crate::schema::{MIGRATIONS, supported_version, user_version};
use crate::sql::sql_err;
use crate::{Store, StoreError};

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Name used in error messages for an in-memory database.
const IN_MEMORY: &str = ":memory:";

impl Store {
    /// Opens (creating the file, not its parent directory) the history
    /// database at `path` and migrates it to the current schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_counting(path).map(|(store, _)| store)
    }

    /// Opens an existing history database to read it (`probewatch report`,
    /// the server's `/report`): never creates the file, never migrates, and
    /// refuses writes (`PRAGMA query_only`). WAL mode lets it read while the
    /// daemon writes. A file of another schema version is an error
    /// ([`StoreError::OlderSchema`], [`StoreError::NewerSchema`]).
    pub fn open_reader(path: &Path) -> Result<Store, StoreError> {
        use rusqlite::OpenFlags;
        let db = path.to_path_buf();
        let open_err = |source| StoreError::Open {
            db: db.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        let found = user_version(&conn).map_err(open_err)?;
        let supported = supported_version();
        if found > supported {
            return Err(StoreError::NewerSchema {
                db,
                found,
                supported,
            });
        }
        if found < supported {
            return Err(StoreError::OlderSchema {
                db,
                found,
                supported,
            });
        }
        conn.pragma_update(None, "query_only", true)
            .map_err(open_err)?;
        Ok(Store { conn, db })
    }

    /// An in-memory database with the current schema (for tests).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let db = PathBuf::from(IN_MEMORY);
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            db: db.clone(),
            source,
        })?;
        Self::configure(conn, db).map(|(store, _)| store)
    }

    /// [`Store::open`], also returning how many migrations were applied.
    fn open_counting(path: &Path) -> Result<(Store, u32), StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            db: path.to_path_buf(),
            source,
        })?;
        Self::configure(conn, path.to_path_buf())
    }

    /// Sets the connection's pragmas and migrates. Refuses a newer schema
    /// before changing anything in the file.
    fn configure(mut conn: Connection, db: PathBuf) -> Result<(Store, u32), StoreError> {
        let open_err = |source| StoreError::Open {
            db: db.clone(),
            source,
        };
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // The first read of the file: fails here when it is not a database.
        let found = user_version(&conn).map_err(open_err)?;
        if found > supported_version() {
            return Err(StoreError::NewerSchema {
                db,
                found,
                supported: supported_version(),
            });
        }
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open_err)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") && db != Path::new(IN_MEMORY) {
            tracing::warn!(
                db = %db.display(),
                journal_mode = %mode,
                "SQLite refused WAL mode (a network file system?); readers may block the daemon"
            );
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        let applied = Self::migrate(&mut conn, &db)?;
        if applied > 0 {
            tracing::info!(db = %db.display(), applied, version = supported_version(), "migrated the history database");
        }
        Ok((Store { conn, db }, applied))
    }

    /// Applies the missing migrations in one transaction; returns how many.
    fn migrate(conn: &mut Connection, db: &Path) -> Result<u32, StoreError> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(db, "starting the schema migration"))?;
        // Read again under the write lock: another process may have migrated.
        let found = user_version(&tx).map_err(sql_err(db, "reading the schema version"))?;
        let supported = supported_version();
        if found > supported {
            return Err(StoreError::NewerSchema {
                db: db.to_path_buf(),
                found,
                supported,
            });
        }
        for version in found + 1..=supported {
            let sql = MIGRATIONS[version as usize - 1];
            tx.execute_batch(sql)
                .map_err(sql_err(db, format!("applying schema migration {version}")))?;
            tx.pragma_update(None, "user_version", version)
                .map_err(sql_err(
                    db,
                    format!("setting the schema version to {version}"),
                ))?;
        }
        tx.commit()
            .map_err(sql_err(db, "committing the schema migration"))?;
        Ok(supported - found)
    }

    /// The schema version of the open file (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        user_version(&self.conn).map_err(sql_err(&self.db, "reading the schema version"))
    }
    /// Runs `PRAGMA integrity_check` and `PRAGMA foreign_key_check`; any
    /// finding is [`StoreError::Integrity`].
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        let mut problems = Vec::new();
        self.conn
            .pragma_query(None, "integrity_check", |row| {
                let line: String = row.get(0)?;
                if line != "ok" {
                    problems.push(line);
                }
                Ok(())
            })
            .map_err(sql_err(&self.db, "running the integrity check"))?;
        self.conn
            .pragma_query(None, "foreign_key_check", |row| {
                let table: String = row.get(0)?;
                let rowid: Option<i64> = row.get(1)?;
                let parent: String = row.get(2)?;
                let rowid = rowid.map_or_else(|| "?".to_owned(), |r| r.to_string());
                problems.push(format!(
                    "{table} row {rowid} refers to a missing {parent} row"
                ));
                Ok(())
            })
            .map_err(sql_err(&self.db, "running the foreign key check"))?;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Integrity {
                db: self.db.clone(),
                problems,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;
    use rusqlite::types::ValueRef;
    use tempfile::TempDir;

    #[test]
    fn file_database_runs_in_wal_mode_with_foreign_keys() {
        let dir = TempDir::new().unwrap();
        let (store, path) = file_store(&dir);
        let pragma = |name: &str| -> String {
            store
                .conn
                .pragma_query_value(None, name, |row| {
                    Ok(match row.get_ref(0)? {
                        ValueRef::Integer(i) => i.to_string(),
                        other => other.as_str()?.to_owned(),
                    })
                })
                .unwrap()
        };
        assert_eq!(pragma("journal_mode"), "wal");
        assert_eq!(pragma("synchronous"), "1"); // NORMAL
        assert_eq!(pragma("foreign_keys"), "1");
        assert_eq!(pragma("busy_timeout"), "5000");
        // WAL is a property of the file: a plain connection sees it too.
        let other = Connection::open(&path).unwrap();
        let mode: String = other
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn reopening_keeps_data_and_migrates_nothing() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("history.sqlite");
        let cpath = dir.path().join("checkpoint-10");
        let layers = two_tasks(2, false);
        let (id, run) = {
            let (mut store, applied) = Store::open_counting(&path).unwrap();
            assert_eq!(applied, MIGRATIONS.len() as u32);
            assert_eq!(store.schema_version().unwrap(), supported_version());
            let run = run(&store);
            let id = store
                .record_checkpoint(run, &done(10, &cpath, 5, &layers))
                .unwrap();
            store.set_baseline(run, id).unwrap();
            (id, run)
        };
        let (store, applied) = Store::open_counting(&path).unwrap();
        assert_eq!(applied, 0);
        assert_eq!(store.schema_version().unwrap(), supported_version());
        assert_eq!(store.run_id("bert-upos").unwrap(), Some(run));
        assert_eq!(steps(&store.checkpoints(run).unwrap()), [10]);
        assert_eq!(store.baseline(run).unwrap().map(|r| r.id), Some(id));
        assert_same_layers(&store.layers(id).unwrap(), &layers);
        assert!(store.is_recorded(run, &cpath, 1010, 5).unwrap());
        // A second connection while the first is open reads the same data.
        let second = Store::open(&path).unwrap();
        assert_eq!(second.counts(run).unwrap(), (1, 0));
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_alone() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("future.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 99;")
                .unwrap();
        }
        let err = Store::open(&path).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::NewerSchema {
                    found: 99,
                    supported: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("99"), "{message}");
        let conn = Connection::open(&path).unwrap();
        let (version, mode): (u32, String) = (
            user_version(&conn).unwrap(),
            conn.pragma_query_value(None, "journal_mode", |row| row.get(0))
                .unwrap(),
        );
        assert_eq!((version, mode.as_str()), (99, "delete"));
    }

    #[test]
    fn open_errors_name_the_file() {
        let dir = TempDir::new().unwrap();
        let garbage = dir.path().join("notes.txt");
        let text = "this is not an SQLite database, it is a text file of some length\n".repeat(20);
        std::fs::write(&garbage, &text).unwrap();
        let err = Store::open(&garbage).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        assert!(err.to_string().contains("notes.txt"), "{err}");
        assert_eq!(std::fs::read_to_string(&garbage).unwrap(), text);

        let orphan = dir.path().join("missing-dir").join("history.sqlite");
        let err = Store::open(&orphan).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        assert!(err.to_string().contains("missing-dir"), "{err}");
        assert!(!orphan.parent().unwrap().exists());
    }

    #[test]
    fn integrity_holds_after_many_inserts_and_replacements() {
        let dir = TempDir::new().unwrap();
        let (mut store, path) = file_store(&dir);
        let run = run(&store);
        let layers = two_tasks(25, true);
        let mut expected = std::collections::BTreeMap::new();
        for round in 0..3i64 {
            for step in (0..200u64).step_by(if round == 0 { 1 } else { 7 }) {
                let cpath = dir.path().join(format!("checkpoint-{step}"));
                let c = if step % 13 == 5 {
                    failed(step, &cpath, round, Some("io"))
                } else {
                    done(step, &cpath, round, &layers[..(step as usize % 50) + 1])
                };
                let id = store.record_checkpoint(run, &c).unwrap();
                if step == 0 {
                    store.set_baseline(run, id).unwrap();
                }
                expected.insert(step, (id, c.layers.len() as i64));
            }
        }
        store.check_integrity().unwrap();
        let rows = store.checkpoints(run).unwrap();
        assert_eq!(rows.len(), 200);
        assert_eq!(
            rows.iter().map(|r| (r.step, r.id)).collect::<Vec<_>>(),
            expected
                .iter()
                .map(|(s, (id, _))| (*s, *id))
                .collect::<Vec<_>>()
        );
        let total: i64 = expected.values().map(|(_, n)| n).sum();
        assert_eq!(count(&store, "layer"), total);
        assert_eq!(
            store.baseline(run).unwrap().map(|r| r.id),
            Some(expected[&0].0)
        );
        drop(store);
        let store = Store::open(&path).unwrap();
        store.check_integrity().unwrap();
        assert_eq!(count(&store, "layer"), total);
    }

    #[test]
    fn the_integrity_check_finds_orphans() {
        let store = Store::open_in_memory().unwrap();
        store
            .conn
            .pragma_update(None, "foreign_keys", false)
            .unwrap();
        store
            .conn
            .execute(
                "INSERT INTO layer (checkpoint, task, layer, report_json, centroids, centroid_dim) \
                 VALUES (42, 't', 0, '{}', x'', 0)",
                [],
            )
            .unwrap();
        let err = store.check_integrity().unwrap_err();
        let StoreError::Integrity { ref problems, .. } = err else {
            panic!("{err:?}");
        };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(err.to_string().contains("layer row"), "{err}");
    }

    #[test]
    fn a_reader_never_creates_migrates_or_writes() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.sqlite");
        let err = Store::open_reader(&missing).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.sqlite"), "{err}");
        assert!(!missing.exists());

        let old = dir.path().join("old.sqlite");
        Connection::open(&old)
            .unwrap()
            .execute_batch("CREATE TABLE x (y);")
            .unwrap();
        let err = Store::open_reader(&old).unwrap_err();
        assert!(
            matches!(err, StoreError::OlderSchema { found: 0, .. }),
            "{err:?}"
        );

        let db = dir.path().join("h.sqlite");
        drop(Store::open(&db).unwrap());
        let reader = Store::open_reader(&db).unwrap();
        assert!(reader.runs().unwrap().is_empty());
        let wrote = reader.conn.execute_batch("CREATE TABLE z (w);");
        assert!(wrote.is_err(), "a reader must not write");
    }
}
