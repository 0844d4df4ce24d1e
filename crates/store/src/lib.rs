//! The daemon's history: one SQLite file holding the runs it watches, every
//! checkpoint it analysed (or failed to analyse), the per-(task, layer)
//! reports of each checkpoint, and each run's baseline. This is the only
//! module that knows SQL.
//!
//! The connection runs in WAL mode (`journal_mode=WAL`, `synchronous=NORMAL`:
//! readers such as `probewatch report` never block the daemon, and a power
//! cut loses at most the last commits, never consistency), with
//! `foreign_keys=ON` and a busy timeout. The schema is versioned with
//! `PRAGMA user_version` and an ordered list of migrations ([`MIGRATIONS`];
//! migration 1 creates the tables below). Opening migrates an older file in
//! one transaction and refuses a file whose version is newer than this code
//! knows ([`StoreError::NewerSchema`]).
//!
//! Tables: `run` (name, folder, config), `checkpoint` (one row per analysed
//! file version, keyed by run and path; status `done` or `failed`), `layer`
//! (one row per checkpoint, task and layer: the report JSON, the comparison
//! JSON and the label centroids as a little-endian `f32` BLOB) and `baseline`
//! (one row per run). Deleting a checkpoint row deletes its layer rows and
//! clears the baseline that pointed to it (foreign keys with `ON DELETE
//! CASCADE`).
//!
//! Indexes, so that the start-up reads are index searches, never table scans
//! (a test checks the query plans): `checkpoint(run, path)` (unique: one
//! version per path; [`Store::is_recorded`]), `checkpoint(run, step)`
//! ([`Store::checkpoints`], [`Store::counts`], [`Store::failed_counts_by_kind`])
//! and the partial unique `checkpoint(run, step) WHERE status = 'done'` (at
//! most one `done` row per step; [`Store::latest_done`],
//! [`Store::previous_done`]), `layer(checkpoint, task, layer)` (the primary
//! key; [`Store::layers`]), `baseline(run)` (the primary key).
//!
//! [`Store::record_checkpoint`] writes a checkpoint and all its layer rows in
//! one transaction: a failure anywhere (a constraint, a full disk, an I/O
//! error) rolls everything back and leaves the file as it was. Paths are
//! stored as TEXT when they are UTF-8 and as a BLOB of their bytes otherwise,
//! so any Unix path round-trips exactly.
//!
//! What this module deliberately does not do: it knows nothing about geometry
//! types (reports arrive and leave as JSON strings, centroids as `f32`
//! slices), does not parse or validate the JSON it stores, decides nothing
//! about which checkpoint should be the baseline or be analysed again, and
//! does no locking beyond SQLite's own (a [`Store`] is one connection; share
//! it behind a mutex or open one per thread).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, ToSql, TransactionBehavior, params};

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Name used in error messages for an in-memory database.
const IN_MEMORY: &str = ":memory:";

/// Label under which [`Store::failed_counts_by_kind`] counts failures recorded
/// without an error kind.
pub const UNKNOWN_ERROR_KIND: &str = "unknown";

/// The schema migrations, in order: migration `i` (1-based) brings a file
/// from `user_version = i - 1` to `user_version = i`. Append only; never edit
/// a migration that has shipped.
pub const MIGRATIONS: &[&str] = &[MIGRATION_1, MIGRATION_2];

/// Migration 2: what each analysis stage did to each checkpoint (the
/// core stage is the checkpoint row itself; late stages may finish later,
/// be abandoned when their budget runs out, skipped for a newer
/// checkpoint, or deferred by a shutdown and resumed after a restart).
const MIGRATION_2: &str = "
CREATE TABLE stage_run (
    checkpoint    INTEGER NOT NULL REFERENCES checkpoint (id) ON DELETE CASCADE,
    stage         TEXT NOT NULL,
    outcome       TEXT NOT NULL CHECK (outcome IN ('done', 'abandoned', 'skipped', 'deferred', 'failed')),
    seconds       REAL NOT NULL,
    layers_done   INTEGER NOT NULL CHECK (layers_done >= 0),
    layers        INTEGER NOT NULL CHECK (layers >= 0),
    finished_unix REAL NOT NULL,
    detail        TEXT,
    PRIMARY KEY (checkpoint, stage)
);
";

/// Migration 1: the initial schema.
const MIGRATION_1: &str = "
CREATE TABLE run (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    folder      TEXT NOT NULL,
    config_json TEXT NOT NULL
);
CREATE TABLE checkpoint (
    id             INTEGER PRIMARY KEY,
    run            INTEGER NOT NULL REFERENCES run (id) ON DELETE CASCADE,
    step           INTEGER NOT NULL CHECK (step >= 0),
    path           TEXT NOT NULL,
    size           INTEGER NOT NULL CHECK (size >= 0),
    mtime_ns       INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    error_kind     TEXT,
    error          TEXT,
    started_unix   REAL NOT NULL,
    finished_unix  REAL NOT NULL,
    seconds        REAL NOT NULL,
    task_meta_json TEXT,
    UNIQUE (run, path)
);
CREATE INDEX checkpoint_run_step ON checkpoint (run, step);
CREATE UNIQUE INDEX checkpoint_run_done_step ON checkpoint (run, step) WHERE status = 'done';
CREATE TABLE layer (
    checkpoint      INTEGER NOT NULL REFERENCES checkpoint (id) ON DELETE CASCADE,
    task            TEXT NOT NULL,
    layer           INTEGER NOT NULL CHECK (layer >= 0),
    report_json     TEXT NOT NULL,
    comparison_json TEXT,
    centroids       BLOB NOT NULL,
    centroid_dim    INTEGER NOT NULL CHECK (centroid_dim >= 0),
    PRIMARY KEY (checkpoint, task, layer),
    CHECK (typeof(centroids) = 'blob' AND length(centroids) % 4 = 0),
    CHECK (CASE WHEN centroid_dim = 0 THEN length(centroids) = 0
                ELSE length(centroids) % (4 * centroid_dim) = 0 END)
);
CREATE TABLE baseline (
    run        INTEGER PRIMARY KEY REFERENCES run (id) ON DELETE CASCADE,
    checkpoint INTEGER NOT NULL UNIQUE REFERENCES checkpoint (id) ON DELETE CASCADE
);
";

/// The columns of a [`CheckpointRow`], in the order [`checkpoint_row`] reads
/// them, for a `checkpoint` table aliased `c`.
macro_rules! checkpoint_columns {
    () => {
        "c.id, c.run, c.step, c.path, c.size, c.mtime_ns, c.status, c.error_kind, c.error, \
         c.started_unix, c.finished_unix, c.seconds, c.task_meta_json"
    };
}

const SELECT_CHECKPOINTS: &str = concat!(
    "SELECT ",
    checkpoint_columns!(),
    " FROM checkpoint c WHERE c.run = ?1 ORDER BY c.step, c.id"
);
const SELECT_LATEST_DONE: &str = concat!(
    "SELECT ",
    checkpoint_columns!(),
    " FROM checkpoint c WHERE c.run = ?1 AND c.status = 'done' ORDER BY c.step DESC LIMIT 1"
);
const SELECT_PREVIOUS_DONE: &str = concat!(
    "SELECT ",
    checkpoint_columns!(),
    " FROM checkpoint c WHERE c.run = ?1 AND c.status = 'done' AND c.step < ?2 \
     ORDER BY c.step DESC LIMIT 1"
);
const SELECT_BASELINE: &str = concat!(
    "SELECT ",
    checkpoint_columns!(),
    " FROM baseline b JOIN checkpoint c ON c.id = b.checkpoint WHERE b.run = ?1"
);
const SELECT_LAYERS: &str = "SELECT task, layer, report_json, comparison_json, centroids, \
     centroid_dim FROM layer WHERE checkpoint = ?1 ORDER BY task, layer";
const SELECT_LAYER_SERIES: &str = "SELECT c.step, l.task, l.layer, l.report_json, \
     l.comparison_json, l.centroids, l.centroid_dim, c.id FROM checkpoint c \
     JOIN layer l ON l.checkpoint = c.id AND l.task = ?2 AND l.layer = ?3 \
     WHERE c.run = ?1 AND c.status = 'done' ORDER BY c.step";
const SELECT_COMPARISON_SERIES: &str = "SELECT c.step, l.layer, l.comparison_json \
     FROM checkpoint c JOIN layer l ON l.checkpoint = c.id AND l.task = ?2 \
     WHERE c.run = ?1 AND c.status = 'done' ORDER BY c.step, l.layer";
const SELECT_IS_RECORDED: &str = "SELECT 1 FROM checkpoint \
     WHERE run = ?1 AND path = ?2 AND size = ?3 AND mtime_ns = ?4";
const SELECT_COUNTS: &str = "SELECT coalesce(sum(status = 'done'), 0), \
     coalesce(sum(status = 'failed'), 0) FROM checkpoint WHERE run = ?1";
const SELECT_FAILED_BY_KIND: &str = "SELECT coalesce(error_kind, ?2), count(*) FROM checkpoint \
     WHERE run = ?1 AND status = 'failed' GROUP BY 1 ORDER BY 1";
const INSERT_CHECKPOINT: &str = "INSERT INTO checkpoint (run, step, path, size, mtime_ns, \
     status, error_kind, error, started_unix, finished_unix, seconds, task_meta_json) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
const INSERT_LAYER: &str = "INSERT INTO layer (checkpoint, task, layer, report_json, \
     comparison_json, centroids, centroid_dim) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Everything that can go wrong with the history database. Every variant
/// names the database file (`:memory:` for an in-memory store).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file could not be opened as an SQLite database (missing parent
    /// directory, no permission, not a database, ...).
    #[error("{db}: cannot open the history database: {source}")]
    Open {
        /// The database file.
        db: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// An SQLite statement failed (I/O error, full disk, constraint, lock
    /// timeout, undecodable value, ...). The transaction it belonged to was
    /// rolled back.
    #[error("{db}: {context}: {source}")]
    Sqlite {
        /// The database file.
        db: PathBuf,
        /// What was being done.
        context: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file was written by a newer probewatch whose schema this code
    /// does not know; it is left untouched.
    #[error(
        "{db}: the database has schema version {found}, newer than version {supported} that \
         this probewatch knows; use a newer probewatch or another database file"
    )]
    NewerSchema {
        /// The database file.
        db: PathBuf,
        /// `user_version` found in the file.
        found: u32,
        /// Highest version this code can migrate to.
        supported: u32,
    },
    /// A reader ([`Store::open_reader`]) found a file written by an older
    /// probewatch; readers never migrate.
    #[error(
        "{db}: the database has schema version {found}, older than version {supported} of this \
         probewatch; run `probewatch watch` on it once to migrate it, then read it again"
    )]
    OlderSchema {
        /// The database file.
        db: PathBuf,
        /// `user_version` found in the file.
        found: u32,
        /// The version this code reads.
        supported: u32,
    },
    /// This exact file version (run, path, size, mtime) is already recorded.
    #[error(
        "{db}: checkpoint {path} (size {size} bytes, mtime {mtime_ns} ns) is already recorded \
         for run {run}"
    )]
    AlreadyRecorded {
        /// The database file.
        db: PathBuf,
        /// The run.
        run: RunId,
        /// The checkpoint's path.
        path: PathBuf,
        /// The checkpoint's size in bytes.
        size: u64,
        /// The checkpoint's modification time, nanoseconds since the epoch.
        mtime_ns: i64,
    },
    /// No run has this id.
    #[error("{db}: no run with id {run}")]
    UnknownRun {
        /// The database file.
        db: PathBuf,
        /// The id asked for.
        run: RunId,
    },
    /// No checkpoint has this id.
    #[error("{db}: no checkpoint with id {checkpoint}")]
    UnknownCheckpoint {
        /// The database file.
        db: PathBuf,
        /// The id asked for.
        checkpoint: i64,
    },
    /// The checkpoint cannot be the run's baseline.
    #[error("{db}: checkpoint {checkpoint} cannot be the baseline of run {run}: {reason}")]
    BadBaseline {
        /// The database file.
        db: PathBuf,
        /// The run.
        run: RunId,
        /// The checkpoint id.
        checkpoint: i64,
        /// Why not (another run's checkpoint, a failed one).
        reason: String,
    },
    /// A checkpoint to record has a value the database cannot hold (an
    /// integer beyond `i64`, a non-finite time, centroids that are not whole
    /// rows); nothing was written.
    #[error("{db}: cannot record checkpoint {path}: {detail}")]
    InvalidCheckpoint {
        /// The database file.
        db: PathBuf,
        /// The checkpoint's path.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A stored centroid BLOB is not a whole number of `centroid_dim`-wide
    /// little-endian `f32` rows.
    #[error(
        "{db}: checkpoint {checkpoint}, task '{task}', layer {layer}: the centroid blob of \
         {len} bytes is not a whole number of {dim}-dimensional f32 rows"
    )]
    CorruptBlob {
        /// The database file.
        db: PathBuf,
        /// The checkpoint id.
        checkpoint: i64,
        /// The task.
        task: String,
        /// The layer.
        layer: u32,
        /// Length of the blob in bytes.
        len: usize,
        /// The stored `centroid_dim`.
        dim: u32,
    },
    /// `PRAGMA integrity_check` or `PRAGMA foreign_key_check` found problems.
    #[error("{db}: integrity check failed: {}", problems.join("; "))]
    Integrity {
        /// The database file.
        db: PathBuf,
        /// SQLite's messages, one per problem.
        problems: Vec<String>,
    },
}

/// Id of a watched run (a row of the `run` table).
pub type RunId = i64;

/// Outcome of a checkpoint's analysis. Stored as the text `done` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckpointStatus {
    /// Analysed; its layer rows hold the reports.
    Done,
    /// The analysis failed; `error_kind` and `error` say why.
    Failed,
}

impl CheckpointStatus {
    /// The text stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointStatus::Done => "done",
            CheckpointStatus::Failed => "failed",
        }
    }
}

impl ToSql for CheckpointStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(
            self.as_str().as_bytes(),
        )))
    }
}

impl FromSql for CheckpointStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_str()? {
            "done" => Ok(CheckpointStatus::Done),
            "failed" => Ok(CheckpointStatus::Failed),
            other => Err(FromSqlError::Other(
                format!("unknown checkpoint status '{other}'").into(),
            )),
        }
    }
}

/// One (task, layer) of one checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRecord {
    /// The probing task.
    pub task: String,
    /// The layer index (0 = embedding output).
    pub layer: u32,
    /// The layer's report as JSON (what `probewatch probe --json` prints per
    /// layer).
    pub report_json: String,
    /// Comparison with the baseline/previous checkpoint as JSON; `None` for
    /// the baseline itself.
    pub comparison_json: Option<String>,
    /// `K × D` row-major label centroids (may be empty); stored as a
    /// little-endian `f32` BLOB, bit for bit.
    pub centroids: Vec<f32>,
    /// `D`, the width of a centroid row (0 when `centroids` is empty).
    pub centroid_dim: u32,
}

/// One late stage's outcome for [`Store::record_stage`].
#[derive(Debug, Clone, Copy)]
pub struct StageRecord<'a> {
    /// Stage name (`test_hulls`, `clusters`, …).
    pub stage: &'a str,
    /// `done`, `abandoned`, `skipped`, `deferred` or `failed`.
    pub outcome: &'a str,
    /// Working seconds (pauses excluded).
    pub seconds: f64,
    /// Layers the stage finished.
    pub layers_done: usize,
    /// Layers it was to work on.
    pub layers: usize,
    /// When it ended, seconds since the Unix epoch.
    pub finished_unix: f64,
    /// Why it was not done, when it was not.
    pub detail: Option<&'a str>,
    /// Size and mtime (ns) of the checkpoint version the stage analysed:
    /// nothing is written when the stored row is no longer that version.
    pub version: (u64, i64),
}

/// A checkpoint to record with [`Store::record_checkpoint`].
#[derive(Debug, Clone, Copy)]
pub struct NewCheckpoint<'a> {
    /// Training step.
    pub step: u64,
    /// The checkpoint's path (file or folder), as the watcher saw it.
    pub path: &'a Path,
    /// Its size in bytes (with `mtime_ns`, identifies the version).
    pub size: u64,
    /// Its modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Done or failed.
    pub status: CheckpointStatus,
    /// For failures: a short machine-readable kind (a metric label).
    pub error_kind: Option<&'a str>,
    /// For failures: the full message.
    pub error: Option<&'a str>,
    /// When the analysis started, seconds since the Unix epoch.
    pub started_unix: f64,
    /// When it finished, seconds since the Unix epoch.
    pub finished_unix: f64,
    /// How long it took, in seconds.
    pub seconds: f64,
    /// Per task: label names, split sizes, dimension (JSON); `None` for
    /// failures.
    pub task_meta_json: Option<&'a str>,
    /// The per-(task, layer) rows, written in the same transaction.
    pub layers: &'a [LayerRecord],
    /// Make this (Done) checkpoint the run's baseline, in the same
    /// transaction (ignored for failures).
    pub baseline: bool,
}

/// A recorded checkpoint, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRow {
    /// Row id (what [`Store::layers`] and [`Store::set_baseline`] take).
    pub id: i64,
    /// The run it belongs to.
    pub run: RunId,
    /// Training step.
    pub step: u64,
    /// The checkpoint's path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Done or failed.
    pub status: CheckpointStatus,
    /// For failures: the kind.
    pub error_kind: Option<String>,
    /// For failures: the message.
    pub error: Option<String>,
    /// When the analysis started, seconds since the Unix epoch.
    pub started_unix: f64,
    /// When it finished, seconds since the Unix epoch.
    pub finished_unix: f64,
    /// How long it took, in seconds.
    pub seconds: f64,
    /// Per-task metadata JSON.
    pub task_meta_json: Option<String>,
}

/// The history database: one SQLite connection.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    db: PathBuf,
}

/// A path as an SQL value: TEXT when it is UTF-8, else a BLOB of its bytes.
struct SqlPath<'a>(&'a Path);

impl ToSql for SqlPath<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let bytes = self.0.as_os_str().as_bytes();
        Ok(ToSqlOutput::Borrowed(match self.0.to_str() {
            Some(_) => ValueRef::Text(bytes),
            None => ValueRef::Blob(bytes),
        }))
    }
}

/// Reads a path stored by [`SqlPath`].
fn path_column(row: &Row<'_>, idx: usize) -> rusqlite::Result<PathBuf> {
    match row.get_ref(idx)? {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
            Ok(PathBuf::from(OsStr::from_bytes(bytes)))
        }
        other => Err(rusqlite::Error::InvalidColumnType(
            idx,
            "path".to_owned(),
            other.data_type(),
        )),
    }
}

/// Reads a non-negative integer column.
fn u64_column(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(idx)?;
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, value))
}

/// Reads a row selected with [`checkpoint_columns!`].
fn checkpoint_row(row: &Row<'_>) -> rusqlite::Result<CheckpointRow> {
    Ok(CheckpointRow {
        id: row.get(0)?,
        run: row.get(1)?,
        step: u64_column(row, 2)?,
        path: path_column(row, 3)?,
        size: u64_column(row, 4)?,
        mtime_ns: row.get(5)?,
        status: row.get(6)?,
        error_kind: row.get(7)?,
        error: row.get(8)?,
        started_unix: row.get(9)?,
        finished_unix: row.get(10)?,
        seconds: row.get(11)?,
        task_meta_json: row.get(12)?,
    })
}

/// Encodes centroids as a little-endian `f32` BLOB.
fn encode_centroids(values: &[f32]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes
}

/// Decodes a centroid BLOB of `dim`-wide rows; `None` when it is not whole rows.
fn decode_centroids(bytes: &[u8], dim: u32) -> Option<Vec<f32>> {
    let row_bytes = 4 * usize::try_from(dim).ok()?;
    let whole = if row_bytes == 0 {
        bytes.is_empty()
    } else {
        bytes.len() % row_bytes == 0
    };
    whole.then(|| {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    })
}

/// An error mapper for SQLite failures with a context.
fn sql_err(db: &Path, context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let db = db.to_path_buf();
    let context = context.into();
    move |source| StoreError::Sqlite {
        db,
        context,
        source,
    }
}

/// Reads `PRAGMA user_version`.
fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Highest schema version this code knows.
fn supported_version() -> u32 {
    // MIGRATIONS is a short constant list.
    MIGRATIONS.len() as u32
}

/// Whether a run with this id exists.
fn run_exists(conn: &Connection, run: RunId) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM run WHERE id = ?1")?
        .query_row([run], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
}

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
        let db = self.db.as_path();
        let invalid = |detail: String| StoreError::InvalidCheckpoint {
            db: db.to_path_buf(),
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
        {
            let mut stmt = tx
                .prepare_cached(INSERT_LAYER)
                .map_err(sql_err(db, what("preparing the layer insert")))?;
            for l in c.layers {
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
        }
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

    /// The stage outcomes recorded for a checkpoint: `(stage, outcome)`.
    pub fn stage_runs(&self, checkpoint_id: i64) -> Result<Vec<(String, String)>, StoreError> {
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
    use super::*;
    use rusqlite::ErrorCode;
    use tempfile::TempDir;

    /// A layer row with `k` centroids of width `dim`, values derived from
    /// the arguments (awkward floats included).
    fn layer(task: &str, layer: u32, k: usize, dim: u32, comparison: bool) -> LayerRecord {
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

    fn two_tasks(layers: u32, comparison: bool) -> Vec<LayerRecord> {
        let mut out = Vec::new();
        for task in ["deprel", "upos"] {
            for l in 0..layers {
                out.push(layer(task, l, 3, 4, comparison));
            }
        }
        out
    }

    fn done<'a>(
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

    fn failed<'a>(
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

    fn count(store: &Store, table: &str) -> i64 {
        store
            .conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .expect("count rows")
    }

    fn file_store(dir: &TempDir) -> (Store, PathBuf) {
        let path = dir.path().join("history.sqlite");
        (Store::open(&path).expect("open store"), path)
    }

    fn run(store: &Store) -> RunId {
        store
            .upsert_run("bert-upos", Path::new("/runs/bert"), r#"{"a":1}"#)
            .expect("upsert run")
    }

    fn steps(rows: &[CheckpointRow]) -> Vec<u64> {
        rows.iter().map(|r| r.step).collect()
    }

    fn assert_same_layers(got: &[LayerRecord], want: &[LayerRecord]) {
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
            outcome: "abandoned",
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
            store.stage_runs(id).unwrap(),
            vec![("clusters".to_owned(), "abandoned".to_owned())]
        );
        // Recorded again (resumed): the newer outcome replaces it.
        let again = StageRecord {
            outcome: "done",
            ..rec
        };
        assert!(store.record_stage(id, &[], &again).unwrap());
        assert_eq!(
            store.stage_runs(id).unwrap(),
            vec![("clusters".to_owned(), "done".to_owned())]
        );
        let bad = StageRecord {
            outcome: "maybe",
            ..rec
        };
        assert!(store.record_stage(id, &[], &bad).is_err());
        // A new version of the file replaces the row (its id may be the
        // same): the old version's stage writes nothing.
        let id2 = store
            .record_checkpoint(run, &done(10, &cpath, 6, &layers))
            .unwrap();
        let stale = StageRecord {
            outcome: "done",
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
