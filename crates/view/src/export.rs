//! Backfill: the history a store holds, as the OpenMetrics document
//! `probewatch export-openmetrics` prints for `promtool tsdb
//! create-blocks-from openmetrics`.
//!
//! For every `done` checkpoint of a run (or of every run) it rebuilds the
//! snapshot the daemon would have published when that checkpoint was the
//! newest: the same comparisons with the run's baseline and with the
//! previous checkpoint by step, the best-so-far distances over the
//! checkpoints up to it (in step order), through the daemon's own snapshot
//! code, so the backfilled series have the live exposition's names, labels
//! and values. Each checkpoint's samples carry its own time: the
//! checkpoint file's modification time (what
//! `probewatch_checkpoint_timestamp_seconds` shows), or when its analysis
//! finished ([`Timestamps`]).
//!
//! It reads through the store's API only and writes nothing; the
//! text format lives in [`metrics::encode_history`]. Failed
//! checkpoints and the process counters are not exported (they describe a
//! daemon process, not the history).

use std::path::{Path, PathBuf};

use crate::{RunView, load_reference};
use metrics::{RunSnapshot, encode_history};
use store::{CheckpointStatus, Store, StoreError};

/// Which time each checkpoint's samples carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Timestamps {
    /// The checkpoint file's modification time (the training job's clock;
    /// what the live `probewatch_checkpoint_timestamp_seconds` reports).
    #[default]
    Checkpoint,
    /// When probewatch finished analysing it (when a live scrape would first
    /// have seen its values).
    Analysis,
}

/// What to export.
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// Only this run (by name); every run when `None`.
    pub run: Option<String>,
    /// Include the per-label-pair distances (K(K−1)/2 series per layer).
    pub label_pairs: bool,
    /// Which time the samples carry.
    pub timestamps: Timestamps,
}

/// What an export wrote.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exported {
    /// The OpenMetrics document (ends with `# EOF`).
    pub text: String,
    /// Runs exported, with the number of checkpoints each.
    pub runs: Vec<(String, usize)>,
    /// Earliest and latest sample time, seconds since the Unix epoch
    /// (`None` when nothing was exported).
    pub span: Option<(f64, f64)>,
}

/// Errors of an export.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The store file does not exist (it is not created).
    #[error("{0}: no such history database")]
    NoStore(PathBuf),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `--run` names a run the store does not hold.
    #[error("{db}: no run named '{run}' (runs: {known})")]
    UnknownRun {
        /// The store.
        db: PathBuf,
        /// The name asked for.
        run: String,
        /// The runs it holds, comma-separated.
        known: String,
    },
    /// A stored checkpoint could not be read back.
    #[error("{db}: run '{run}', checkpoint at step {step}: {detail}")]
    Checkpoint {
        /// The store.
        db: PathBuf,
        /// The run.
        run: String,
        /// The checkpoint's step.
        step: u64,
        /// What went wrong.
        detail: String,
    },
}

/// Opens the store at `db` (which must exist) and exports it.
pub fn export_store(db: &Path, options: &ExportOptions) -> Result<Exported, ExportError> {
    if !db.is_file() {
        return Err(ExportError::NoStore(db.to_path_buf()));
    }
    let store = Store::open(db)?;
    export(&store, db, options)
}

/// Exports the history held by `store` (`db` names it in errors).
pub fn export(store: &Store, db: &Path, options: &ExportOptions) -> Result<Exported, ExportError> {
    let runs = store.runs()?;
    if let Some(name) = &options.run
        && !runs.iter().any(|(_, n, _)| n == name)
    {
        let known: Vec<&str> = runs.iter().map(|(_, n, _)| n.as_str()).collect();
        return Err(ExportError::UnknownRun {
            db: db.to_path_buf(),
            run: name.clone(),
            known: if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            },
        });
    }
    let mut points: Vec<(f64, RunSnapshot)> = Vec::new();
    let mut exported = Vec::new();
    for (id, name, _) in runs {
        if options.run.as_ref().is_some_and(|r| *r != name) {
            continue;
        }
        let bad = |step: u64, e: StoreError| ExportError::Checkpoint {
            db: db.to_path_buf(),
            run: name.clone(),
            step,
            detail: e.to_string(),
        };
        let mut view = RunView::new(&name, options.label_pairs);
        if let Some(row) = store.baseline(id)? {
            view.set_baseline(load_reference(store, &name, &row).map_err(|e| bad(row.step, e))?);
        }
        // `checkpoints` is by ascending step: the previous checkpoint and
        // the best-so-far values follow step order, as in the daemon.
        let rows: Vec<_> = store
            .checkpoints(id)?
            .into_iter()
            .filter(|r| r.status == CheckpointStatus::Done)
            .collect();
        for row in &rows {
            let now = load_reference(store, &name, row).map_err(|e| bad(row.step, e))?;
            view.take_checkpoint(now, row.mtime_ns);
            let time = match options.timestamps {
                Timestamps::Checkpoint => row.mtime_ns as f64 / 1e9,
                Timestamps::Analysis => row.finished_unix,
            };
            if let Some(snap) = view.snapshot() {
                points.push((time, snap));
            }
        }
        exported.push((name.clone(), rows.len()));
    }
    let span = points
        .iter()
        .map(|(t, _)| *t)
        .fold(None, |acc, t| match acc {
            None => Some((t, t)),
            Some((lo, hi)) => Some((f64::min(lo, t), f64::max(hi, t))),
        });
    Ok(Exported {
        text: encode_history(&points),
        runs: exported,
        span,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_run_names_the_runs_the_store_holds() {
        let store = Store::open_in_memory().unwrap();
        let db = Path::new("history.sqlite");
        let options = ExportOptions {
            run: Some("nope".to_owned()),
            ..ExportOptions::default()
        };
        let err = export(&store, db, &options).unwrap_err().to_string();
        assert_eq!(err, "history.sqlite: no run named 'nope' (runs: none)");
        store.upsert_run("a", Path::new("/runs/a"), "{}").unwrap();
        store.upsert_run("b", Path::new("/runs/b"), "{}").unwrap();
        let err = export(&store, db, &options).unwrap_err().to_string();
        assert!(err.ends_with("(runs: a, b)"), "{err}");
    }

    #[test]
    fn a_run_without_checkpoints_exports_an_empty_document() {
        let store = Store::open_in_memory().unwrap();
        store.upsert_run("a", Path::new("/runs/a"), "{}").unwrap();
        let out = export(&store, Path::new("h"), &ExportOptions::default()).unwrap();
        assert_eq!(out.text, "# EOF\n");
        assert_eq!(out.runs, [("a".to_owned(), 0)]);
        assert_eq!(out.span, None);
    }

    #[test]
    fn a_missing_store_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("missing.sqlite");
        let err = export_store(&db, &ExportOptions::default()).unwrap_err();
        assert!(matches!(err, ExportError::NoStore(_)), "{err}");
        assert!(
            err.to_string()
                .ends_with("missing.sqlite: no such history database")
        );
        assert!(!db.exists());
    }
}
