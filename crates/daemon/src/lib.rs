//! The daemon around the numeric core: the configuration ([`config`]), the
//! watcher that finds complete checkpoints in a folder ([`watch`]), the
//! supervisor that queues, analyses, stores and publishes them
//! ([`supervisor`]), the HTTP server of `/metrics`, `/report` and `/status`
//! ([`server`], secured by [`web_config`]), sharding of (task, layer) pairs
//! over processes ([`shard`]) and a simulated training run ([`demo`]).
//!
//! It computes nothing itself: analysis is the `analysis` crate's, the
//! history is the `store` crate's, metric names are the `metrics` crate's
//! and what a run publishes is the `view` crate's.

pub mod config;
pub mod demo;
pub mod server;
pub mod shard;
pub mod supervisor;
pub mod watch;
pub mod web_config;

pub use supervisor::{DaemonError, Reload, ReloadFn, check_probe_set_limits, run, run_with_reload};
