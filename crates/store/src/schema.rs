//! The schema: the ordered list of migrations ([`MIGRATIONS`], applied by
//! `open.rs`) and the SQL of the statements the start-up and report reads
//! use, as constants so that a test can check their query plans.
//!
//! What it does not do: run anything. Opening and migrating are `open.rs`'s,
//! statements are executed by `read.rs` and `write.rs`.

use rusqlite::Connection;

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

/// The columns of a [`crate::CheckpointRow`], in the order
/// `sql::checkpoint_row` reads them, for a `checkpoint` table aliased `c`.
macro_rules! checkpoint_columns {
    () => {
        "c.id, c.run, c.step, c.path, c.size, c.mtime_ns, c.status, c.error_kind, c.error, \
         c.started_unix, c.finished_unix, c.seconds, c.task_meta_json"
    };
}

pub(crate) const SELECT_CHECKPOINTS: &str = concat!(
    "SELECT ",
    checkpoint_columns!(),
    " FROM checkpoint c WHERE c.run = ?1 ORDER BY c.step, c.id"
);
pub(crate) const SELECT_LATEST_DONE: &str = concat!(
    "SELECT ",
    checkpoint_columns!(),
    " FROM checkpoint c WHERE c.run = ?1 AND c.status = 'done' ORDER BY c.step DESC LIMIT 1"
);
pub(crate) const SELECT_PREVIOUS_DONE: &str = concat!(
    "SELECT ",
    checkpoint_columns!(),
    " FROM checkpoint c WHERE c.run = ?1 AND c.status = 'done' AND c.step < ?2 \
     ORDER BY c.step DESC LIMIT 1"
);
pub(crate) const SELECT_BASELINE: &str = concat!(
    "SELECT ",
    checkpoint_columns!(),
    " FROM baseline b JOIN checkpoint c ON c.id = b.checkpoint WHERE b.run = ?1"
);
pub(crate) const SELECT_LAYERS: &str = "SELECT task, layer, report_json, comparison_json, centroids, \
     centroid_dim FROM layer WHERE checkpoint = ?1 ORDER BY task, layer";
pub(crate) const SELECT_LAYER_SERIES: &str = "SELECT c.step, l.task, l.layer, l.report_json, \
     l.comparison_json, l.centroids, l.centroid_dim, c.id FROM checkpoint c \
     JOIN layer l ON l.checkpoint = c.id AND l.task = ?2 AND l.layer = ?3 \
     WHERE c.run = ?1 AND c.status = 'done' ORDER BY c.step";
pub(crate) const SELECT_COMPARISON_SERIES: &str = "SELECT c.step, l.layer, l.comparison_json \
     FROM checkpoint c JOIN layer l ON l.checkpoint = c.id AND l.task = ?2 \
     WHERE c.run = ?1 AND c.status = 'done' ORDER BY c.step, l.layer";
pub(crate) const SELECT_IS_RECORDED: &str = "SELECT 1 FROM checkpoint \
     WHERE run = ?1 AND path = ?2 AND size = ?3 AND mtime_ns = ?4";
pub(crate) const SELECT_COUNTS: &str = "SELECT coalesce(sum(status = 'done'), 0), \
     coalesce(sum(status = 'failed'), 0) FROM checkpoint WHERE run = ?1";
pub(crate) const SELECT_FAILED_BY_KIND: &str = "SELECT coalesce(error_kind, ?2), count(*) FROM checkpoint \
     WHERE run = ?1 AND status = 'failed' GROUP BY 1 ORDER BY 1";
pub(crate) const INSERT_CHECKPOINT: &str = "INSERT INTO checkpoint (run, step, path, size, mtime_ns, \
     status, error_kind, error, started_unix, finished_unix, seconds, task_meta_json) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
pub(crate) const INSERT_LAYER: &str = "INSERT INTO layer (checkpoint, task, layer, report_json, \
     comparison_json, centroids, centroid_dim) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Reads `PRAGMA user_version`.
pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Highest schema version this code knows.
pub(crate) fn supported_version() -> u32 {
    // MIGRATIONS is a short constant list.
    MIGRATIONS.len() as u32
}
