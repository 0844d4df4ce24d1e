//! [`StoreError`]: everything that can go wrong with the history database,
//! each variant naming the database file.
//!
//! What it does not do: decide what a caller does about an error (the
//! daemon retries a checkpoint whose write failed; that is its policy).

use std::path::PathBuf;

use crate::RunId;

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
    /// A reader ([`Store::open_reader`](crate::Store::open_reader)) found a file written by an older
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
