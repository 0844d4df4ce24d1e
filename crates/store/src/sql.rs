//! Conversions between Rust values and SQLite columns: paths (TEXT when
//! UTF-8, else a BLOB of their bytes), non-negative integers, a
//! [`CheckpointRow`], centroid BLOBs (little-endian `f32`), and the error
//! mapper every statement uses.
//!
//! What it does not do: run statements of its own (beyond the one-row
//! `run_exists` look-up) or know which table a value goes to.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, ToSql};

use crate::{CheckpointRow, RunId, StoreError};

/// A path as an SQL value: TEXT when it is UTF-8, else a BLOB of its bytes.
pub(crate) struct SqlPath<'a>(pub(crate) &'a Path);

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
pub(crate) fn path_column(row: &Row<'_>, idx: usize) -> rusqlite::Result<PathBuf> {
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
pub(crate) fn u64_column(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(idx)?;
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, value))
}

/// Reads a row selected with the `checkpoint_columns!` of `schema.rs`.
pub(crate) fn checkpoint_row(row: &Row<'_>) -> rusqlite::Result<CheckpointRow> {
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
pub(crate) fn encode_centroids(values: &[f32]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes
}

/// Decodes a centroid BLOB of `dim`-wide rows; `None` when it is not whole rows.
pub(crate) fn decode_centroids(bytes: &[u8], dim: u32) -> Option<Vec<f32>> {
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
pub(crate) fn sql_err(
    db: &Path,
    context: impl Into<String>,
) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let db = db.to_path_buf();
    let context = context.into();
    move |source| StoreError::Sqlite {
        db,
        context,
        source,
    }
}
/// Whether a run with this id exists.
pub(crate) fn run_exists(conn: &Connection, run: RunId) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM run WHERE id = ?1")?
        .query_row([run], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
}
