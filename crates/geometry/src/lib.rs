//! The numeric core: convex-hull distances ([`hull`]), DirectProbe clustering
//! ([`directprobe`]) and the measures the fine-tuning study tracks
//! ([`measures`]).
//!
//! Everything here is synchronous, deterministic and free of I/O: it takes
//! matrices of points (rows, `f32`, accumulated in `f64`) with labels and
//! returns plain data. It knows nothing about files, HTTP, Prometheus or the
//! configuration file; callers hand it checked parameters.

pub mod classifier;
pub mod directprobe;
pub mod hull;
pub mod measures;
pub mod memory;
pub mod synth;
pub mod working_set;

pub use hull::{HullParams, HullResult, PointSet, Verdict};

/// The caller stopped a stage before it finished: its `keep_going` answered
/// false. Nothing of the stage is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by the caller")]
pub struct Interrupted;

/// Asked between steps of a long stage; `false` stops it with
/// [`Interrupted`]. It may block (the caller pauses the work inside it). The
/// core never looks at a clock: budgets and pauses are the caller's.
pub type KeepGoing<'a> = &'a (dyn Fn() -> bool + Sync);

/// A [`KeepGoing`] that never stops.
pub fn never_stop() -> bool {
    true
}
