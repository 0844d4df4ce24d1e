//! The rows as Rust values: what [`crate::Store`] takes ([`NewCheckpoint`],
//! [`LayerRecord`], [`StageRecord`]) and gives back ([`CheckpointRow`]), and
//! the two columns with a closed set of values, [`CheckpointStatus`] and
//! [`StageOutcome`], each stored as the same text it always was (one
//! `as_str` for writing, one `parse` for reading).
//!
//! What it does not do: SQL (`sql.rs` converts columns, `read.rs` and
//! `write.rs` run statements), or any meaning beyond the text: a stage is a
//! name here (the analysis stages are the `analysis` crate's), a failure
//! kind is the daemon's.

use std::fmt;
use std::path::{Path, PathBuf};

use rusqlite::ToSql;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};

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

    /// The status stored as `text`; `None` for any other text.
    pub fn parse(text: &str) -> Option<CheckpointStatus> {
        match text {
            "done" => Some(CheckpointStatus::Done),
            "failed" => Some(CheckpointStatus::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for CheckpointStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
        let text = value.as_str()?;
        CheckpointStatus::parse(text).ok_or_else(|| {
            FromSqlError::Other(format!("unknown checkpoint status '{text}'").into())
        })
    }
}

/// What a late stage did to a checkpoint (`stage_run.outcome`). Stored as
/// the text of [`StageOutcome::as_str`], the same text the daemon's
/// `probewatch_stage_outcomes_total{outcome}` label carries.
///
/// A stage with nothing to do (no layer it applies to) is recorded as
/// [`StageOutcome::Done`] with no layer and a detail saying so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StageOutcome {
    /// Every layer it was to work on is finished (`done`).
    Done,
    /// Its budget of working time ran out; the layers it finished are
    /// stored (`abandoned`).
    Abandoned,
    /// Not run, or its results discarded: a newer checkpoint was waiting,
    /// or the file changed while it was read (`skipped`).
    Skipped,
    /// Stopped by a shutdown or a reload; resumed at the next start
    /// (`deferred`).
    Deferred,
    /// It could not run: the checkpoint could not be read again, or the
    /// analysis refused it (`failed`).
    Failed,
}

impl StageOutcome {
    /// Every outcome, in the order of the schema's `CHECK` list.
    pub const ALL: [StageOutcome; 5] = [
        StageOutcome::Done,
        StageOutcome::Abandoned,
        StageOutcome::Skipped,
        StageOutcome::Deferred,
        StageOutcome::Failed,
    ];

    /// The text stored in the database (and used as a metric label value).
    pub fn as_str(self) -> &'static str {
        match self {
            StageOutcome::Done => "done",
            StageOutcome::Abandoned => "abandoned",
            StageOutcome::Skipped => "skipped",
            StageOutcome::Deferred => "deferred",
            StageOutcome::Failed => "failed",
        }
    }

    /// The outcome stored as `text`; `None` for any other text.
    pub fn parse(text: &str) -> Option<StageOutcome> {
        StageOutcome::ALL.into_iter().find(|o| o.as_str() == text)
    }
}

impl fmt::Display for StageOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ToSql for StageOutcome {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(
            self.as_str().as_bytes(),
        )))
    }
}

impl FromSql for StageOutcome {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        StageOutcome::parse(text)
            .ok_or_else(|| FromSqlError::Other(format!("unknown stage outcome '{text}'").into()))
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

/// One late stage's outcome for [`Store::record_stage`](crate::Store::record_stage).
#[derive(Debug, Clone, Copy)]
pub struct StageRecord<'a> {
    /// Stage name (`test_hulls`, `clusters`, …): a name here, whatever the
    /// caller's stages are.
    pub stage: &'a str,
    /// What the stage did.
    pub outcome: StageOutcome,
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

/// A checkpoint to record with [`Store::record_checkpoint`](crate::Store::record_checkpoint).
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
    /// Row id (what [`Store::layers`](crate::Store::layers) and [`Store::set_baseline`](crate::Store::set_baseline) take).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_outcomes_are_stored_as_the_same_text_as_ever() {
        let texts: Vec<&str> = StageOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            texts,
            ["done", "abandoned", "skipped", "deferred", "failed"]
        );
        for o in StageOutcome::ALL {
            assert_eq!(StageOutcome::parse(o.as_str()), Some(o));
            assert_eq!(o.to_string(), o.as_str());
        }
        for other in ["", "Done", "maybe", "not_applicable", "interrupted"] {
            assert_eq!(StageOutcome::parse(other), None, "{other}");
        }
    }

    #[test]
    fn checkpoint_statuses_are_stored_as_done_or_failed() {
        assert_eq!(CheckpointStatus::Done.as_str(), "done");
        assert_eq!(CheckpointStatus::Failed.as_str(), "failed");
        for s in [CheckpointStatus::Done, CheckpointStatus::Failed] {
            assert_eq!(CheckpointStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(CheckpointStatus::parse("DONE"), None);
    }

    #[test]
    fn unknown_text_in_a_column_is_an_error_not_a_guess() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let read = |text: &str| -> rusqlite::Result<StageOutcome> {
            conn.query_row("SELECT ?1", [text], |row| row.get(0))
        };
        assert_eq!(read("deferred").unwrap(), StageOutcome::Deferred);
        let err = read("maybe").unwrap_err();
        assert!(
            err.to_string().contains("unknown stage outcome 'maybe'"),
            "{err}"
        );
        let status: rusqlite::Result<CheckpointStatus> =
            conn.query_row("SELECT 'running'", [], |row| row.get(0));
        assert!(status.is_err());
    }
}
