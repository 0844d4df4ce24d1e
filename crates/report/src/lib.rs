//! The HTML report of a run: the study's figures (min label distance over
//! the steps, PCA paths of label centroids, centroid movement by layer,
//! similarity dynamics, PCA of centroid difference vectors) and a per-layer
//! table, as one self-contained page (inline SVG and CSS, no script, no
//! network), served at `/report/<run>` and written by `probewatch report`.
//!
//! Data flows one way: [`load`] reads a run's stored history through
//! [`store::Store`] (the only I/O here) and the codec of a stored layer,
//! [`view::record`], into a plain [`figures::History`]; [`figures`] computes
//! each figure's data (pure); [`svg`] draws it (pure); `page` assembles the
//! HTML (pure). Rendering is synchronous: the server calls it on a blocking
//! thread.
//!
//! It does not analyse anything (it reads what the daemon stored), does not
//! know how a stored row is laid out (the codec does), keeps no state
//! between calls, and shows one task per page (links or `--task` pick
//! another).

mod error;
pub mod figures;
mod load;
mod page;
pub mod svg;

use std::path::Path;

use store::Store;

pub use error::{BadRecord, NoLayer, NoRun, NoTask, ReportError};
pub use load::load;
pub use page::{index_page, render_page};

/// What to show and how.
#[derive(Clone, Debug, Default)]
pub struct ReportOptions {
    /// Task (default: the first in name order).
    pub task: Option<String>,
    /// Layer of the min-distance figure (default: the last layer).
    pub layer: Option<usize>,
    /// Refresh the page every this many seconds (a run still training).
    pub refresh_seconds: Option<u32>,
    /// Link other tasks and layers as `?task=…&layer=…` (served pages);
    /// a file names them instead.
    pub links: bool,
}

/// The report page of one run, read from the store at `db` (opened for
/// reading only).
pub fn render_from_store(
    db: &Path,
    run: &str,
    opts: &ReportOptions,
) -> Result<String, ReportError> {
    let store = Store::open_reader(db)?;
    let h = load(&store, db, run, opts)?;
    Ok(render_page(&h, opts))
}

/// The runs of the store at `db`, by name.
pub fn run_names(db: &Path) -> Result<Vec<String>, ReportError> {
    let store = Store::open_reader(db)?;
    let mut names: Vec<String> = store.runs()?.into_iter().map(|r| r.1).collect();
    names.sort();
    Ok(names)
}
