//! The numeric core: convex-hull distances ([`hull`]), DirectProbe clustering
//! ([`directprobe`]), the measures the fine-tuning study tracks
//! ([`measures`]) and the classifier probe ([`classifier`]).
//!
//! Everything here is synchronous, deterministic and free of I/O: it takes
//! matrices of points (rows, `f32`, accumulated in `f64`) with labels and
//! returns plain data. It knows nothing about files, HTTP, Prometheus, clocks,
//! logging or the configuration file; callers hand it checked parameters.
//!
//! The modules depend on each other in one direction only: each imports
//! only modules above it in this table (checked by `tests/module_layers.rs`).
//!
//! ```text
//! module        imports                          holds
//! input         -                                LayerInput, split names, KeepGoing, Interrupted
//! rng           -                                Rng (xoshiro256**), SplitMix64
//! hull          -                                certified hull distances (points, corral, solver)
//! working_set   hull                             hull distances of large sets
//! directprobe   hull, input                      DirectProbe and its warm starts
//! classifier    input, rng                       the MLP probe
//! layer_report  directprobe, classifier          what one layer's analysis reports
//! memory        hull, directprobe, layer_report  what an analysis leaves for the next checkpoint
//! measures      input, hull, working_set,        the study's measures, stage by stage
//!               directprobe, layer_report, memory
//! synth         input, rng                       synthetic labelled layers
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
