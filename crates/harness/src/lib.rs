//! The developer harness of probewatch, shared by the integration tests
//! (`tests/`, through the thin `tests/common`) and `cargo xtask` (bench and
//! soak). It is a dev-only crate: a dev-dependency of the root package and a
//! dependency of `xtask`, never of the `probewatch` binary or of a library
//! crate under `crates/` (tests/architecture.rs checks the binary).
//!
//! What is here, once:
//! - [`child`]: the one driver of a `probewatch` child process ([`Launch`]
//!   builds it, [`Daemon`] runs it): stderr lines collected (and optionally
//!   teed to a file), the HTTP address learnt from the "serving metrics" log
//!   line, `/metrics` scraped over real HTTP, SIGTERM or SIGKILL and a wait;
//! - [`http`]: GET over real HTTP with `ureq` ([`Client`], [`http_get`]);
//! - [`scrape`]: an exposition parsed by the independent `prometheus-parse`;
//! - [`events`]: the daemon's JSON log lines as [`Event`]s;
//! - [`stats`]: the one [`quantile`] (nearest rank) and [`median`];
//! - [`procfs`]: a process's memory, threads and descriptors from `/proc`;
//! - [`files`]: dumps written the way a trainer writes them
//!   ([`write_renamed`]), the shared data folder, the MiniLM checkpoint,
//!   scratch folders;
//! - [`fixtures`]: test data (synthetic dumps, configs), panicking on
//!   failure as a test helper should.
//!
//! The binary to drive is always a parameter: tests pass
//! `env!("CARGO_BIN_EXE_probewatch")`, xtask its release build. The
//! fallible operations return [`anyhow::Result`]; the waits a test uses
//! also come in a panicking form bounded by [`DEADLINE`].

pub mod child;
pub mod events;
pub mod files;
pub mod fixtures;
pub mod http;
pub mod procfs;
pub mod scrape;
pub mod stats;

pub use child::{DEADLINE, Daemon, Launch, Stop};
pub use events::{Event, is, parse_event};
pub use files::{minilm_dir, scratch_dir, shared_dumps, workspace_root, write_renamed};
pub use fixtures::{
    DumpSpec, folder, probe_json, run_table, small_dump, synthetic_dump, synthetic_dump_of,
    tempdir, write_config,
};
pub use http::{Client, http_get, try_http_get};
pub use procfs::{ProcStatus, open_fds, peak_rss_mib};
pub use scrape::Scrape;
pub use stats::{median, quantile};
