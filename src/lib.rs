//! probewatch: watch what fine-tuning does to the geometry of a model's
//! representations.
//!
//! The library is a pure numeric core ([`geometry`]: hull distances,
//! DirectProbe clustering, the study's measures) fed by sources of activations
//! ([`source`]: activation dumps) and glued together by [`analysis`] (one dump
//! → one report). The binary in `src/main.rs` only parses the command line and
//! calls into this crate. Nothing here does network I/O.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod analysis;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod geometry;
pub mod metrics;
pub mod server;
pub mod source;
pub mod store;
pub mod synth;
pub mod watch;
