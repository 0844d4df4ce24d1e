//! The numeric core: convex-hull distances ([`hull`]), DirectProbe clustering
//! ([`directprobe`]), the measures the fine-tuning study tracks
//! ([`measures`]) and the classifier probe ([`classifier`]).
//!
//! Everything here is synchronous, deterministic and free of I/O: it takes
//! matrices of points (rows, `f32`, accumulated in `f64`) with labels and
//! returns plain data. It knows nothing about files, HTTP, Prometheus, clocks,
//! logging or the configuration file; callers hand it checked parameters.
//!
//! The modules depend on each other in one direction only (a module imports
//! only those listed before it):
//!
//! ```text
//! input, rng              shared input and interruption types; seeded generators
//! hull                    the certified hull-distance solver (points, Gram, corral, solver)
//! working_set             hull distances of large sets through a working set   → hull
//! directprobe             DirectProbe clustering and its warm-start memory     → hull, input
//! classifier              the MLP probe                                         → input, rng
//! layer_report            what one layer's analysis reports                     → directprobe, classifier
//! memory                  what one analysis leaves for the next checkpoint      → hull, directprobe, layer_report
//! measures                the study's measures, stage by stage                  → all of the above
//! synth                   synthetic labelled layers                             → input, rng
//! ```

pub mod classifier;
pub mod directprobe;
pub mod hull;
pub mod input;
pub mod layer_report;
pub mod measures;
pub mod memory;
pub mod rng;
pub mod synth;
pub mod working_set;

pub use hull::{HullParams, HullResult, PointSet, Verdict};
pub use input::{Interrupted, KeepGoing, LayerInput, TRAIN, never_stop};
