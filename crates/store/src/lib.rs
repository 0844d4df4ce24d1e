//! The daemon's history: one SQLite file holding the runs it watches, every
//! checkpoint it analysed (or failed to analyse), the per-(task, layer)
//! reports of each checkpoint, what each late stage did to each checkpoint,
//! and each run's baseline. This is the only crate that knows SQL.
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
//! file version, keyed by run and path; status `done` or `failed`,
//! [`CheckpointStatus`]), `layer` (one row per checkpoint, task and layer:
//! the report JSON, the comparison JSON and the label centroids as a
//! little-endian `f32` BLOB), `stage_run` (one row per checkpoint and late
//! stage: its [`StageOutcome`]) and `baseline` (one row per run). Deleting a
//! checkpoint row deletes its layer and stage rows and clears the baseline
//! that pointed to it (foreign keys with `ON DELETE CASCADE`).
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
//! Code map: `schema.rs` (the migrations and every SQL statement that is a
//! constant), `records.rs` (the rows as Rust values, and the typed columns
//! [`CheckpointStatus`] and [`StageOutcome`]), `error.rs` ([`StoreError`]),
//! `sql.rs` (column conversions), `open.rs` (opening, migrating, the
//! integrity check), `write.rs` (every write, one transaction each) and
//! `read.rs` (every query).
//!
//! What this crate deliberately does not do: it knows nothing about geometry
//! types (reports arrive and leave as JSON strings, centroids as `f32`
//! slices) nor the analysis stages (a stage is a name), does not parse or
//! validate the JSON it stores, decides nothing about which checkpoint
//! should be the baseline or be analysed again, and does no locking beyond
//! SQLite's own (a [`Store`] is one connection; share it behind a mutex or
//! open one per thread).

use std::path::PathBuf;

use rusqlite::Connection;

mod error;
mod open;
mod read;
mod records;
mod schema;
mod sql;
mod write;

#[cfg(test)]
mod test_util;

pub use error::StoreError;
pub use read::UNKNOWN_ERROR_KIND;
pub use records::{
    CheckpointRow, CheckpointStatus, LayerRecord, NewCheckpoint, RunId, StageOutcome, StageRecord,
};
pub use schema::MIGRATIONS;

/// The history database: one SQLite connection.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    db: PathBuf,
}
