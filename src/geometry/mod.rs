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
pub mod working_set;

pub use hull::{HullParams, HullResult, PointSet, Verdict};
