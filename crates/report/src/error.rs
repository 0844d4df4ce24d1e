//! Why a report cannot be made: [`ReportError`], one boxed payload per
//! variant, so every `Result` of the report stays two words wide however
//! much a failure carries (the store's error with its SQLite cause, the
//! lists of what is present).
//!
//! It only describes failures; what they mean to a user (a 404, an exit
//! code) is the caller's business.

use std::path::PathBuf;

use store::StoreError;

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The store could not be read.
    #[error(transparent)]
    Store(Box<StoreError>),
    /// No run of that name in the store.
    #[error(transparent)]
    NoRun(Box<NoRun>),
    /// The run has no such task.
    #[error(transparent)]
    NoTask(Box<NoTask>),
    /// The task has no such layer.
    #[error(transparent)]
    NoLayer(Box<NoLayer>),
    /// A stored report, comparison or centroid blob is not what the codec
    /// ([`view::record`]) reads.
    #[error(transparent)]
    BadRecord(Box<BadRecord>),
}

impl From<StoreError> for ReportError {
    fn from(e: StoreError) -> Self {
        ReportError::Store(Box::new(e))
    }
}

/// No run of that name in the store.
#[derive(Debug, thiserror::Error)]
#[error("{db}: no run named '{run}' (runs in this store: {})", list(available))]
#[non_exhaustive]
pub struct NoRun {
    /// The database.
    pub db: PathBuf,
    /// The name asked for.
    pub run: String,
    /// Runs present.
    pub available: Vec<String>,
}

/// The run has no such task.
#[derive(Debug, thiserror::Error)]
#[error("{db}: run '{run}' has no task '{task}' (tasks: {})", list(available))]
#[non_exhaustive]
pub struct NoTask {
    /// The database.
    pub db: PathBuf,
    /// Run.
    pub run: String,
    /// Task asked for.
    pub task: String,
    /// Tasks present.
    pub available: Vec<String>,
}

/// The task has no such layer.
#[derive(Debug, thiserror::Error)]
#[error("{db}: run '{run}', task '{task}' has no layer {layer} (layers: {available:?})")]
#[non_exhaustive]
pub struct NoLayer {
    /// The database.
    pub db: PathBuf,
    /// Run.
    pub run: String,
    /// Task.
    pub task: String,
    /// Layer asked for.
    pub layer: usize,
    /// Layers present.
    pub available: Vec<usize>,
}

/// A stored record the codec cannot read.
#[derive(Debug, thiserror::Error)]
#[error(
    "{db}: run '{run}', step {step}, task '{task}', layer {layer}: stored {what} is unreadable: {detail}"
)]
#[non_exhaustive]
pub struct BadRecord {
    /// The database.
    pub db: PathBuf,
    /// Run.
    pub run: String,
    /// Step.
    pub step: u64,
    /// Task.
    pub task: String,
    /// Layer.
    pub layer: u32,
    /// `report`, `comparison` or `centroids`.
    pub what: &'static str,
    /// What the codec says.
    pub detail: String,
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_is_two_words_and_reads_as_before() {
        assert!(std::mem::size_of::<ReportError>() <= 2 * std::mem::size_of::<usize>());
        let e = ReportError::NoRun(Box::new(NoRun {
            db: "h.sqlite".into(),
            run: "x".into(),
            available: vec!["a".into(), "b".into()],
        }));
        assert_eq!(
            e.to_string(),
            "h.sqlite: no run named 'x' (runs in this store: a, b)"
        );
        let e = ReportError::NoLayer(Box::new(NoLayer {
            db: "h.sqlite".into(),
            run: "r".into(),
            task: "pos".into(),
            layer: 7,
            available: vec![0, 1],
        }));
        assert_eq!(
            e.to_string(),
            "h.sqlite: run 'r', task 'pos' has no layer 7 (layers: [0, 1])"
        );
    }
}
