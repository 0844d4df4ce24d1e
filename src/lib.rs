//! probewatch: watch what fine-tuning does to the geometry of a model's
//! representations.
//!
//! The library is a pure numeric core ([`geometry`]: hull distances,
//! DirectProbe clustering, the study's measures, warm-start memory) fed by
//! sources of activations ([`source`]: activation dumps) and glued together
//! by [`analysis`] (one dump → one report). Around it, the daemon's parts:
//! [`config`], [`watch`] (complete checkpoints in a folder), [`store`]
//! (SQLite history), [`metrics`] and [`server`] (Prometheus exposition over
//! HTTP), wired by [`daemon`]; [`demo`] simulates a run. The binary in
//! `src/main.rs` parses the command line and calls into this crate.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod analysis;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod export;
pub mod geometry;
pub mod metrics;
pub mod report;
pub mod server;
pub mod shard;
pub mod source;
pub mod store;
pub mod synth;
pub mod watch;
pub mod web_config;
