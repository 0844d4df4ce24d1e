//! The tests' side of the harness (`crates/harness`, shared with `cargo
//! xtask`): the binary under test bound into [`Daemon`] and
//! [`probe_json`], a panicking [`write_renamed`], and the harness's other
//! helpers re-exported. A [`Daemon`] derefs to the harness's driver: it
//! collects the JSON log, learns the port from the "serving metrics" line,
//! scrapes `/metrics` over real HTTP, is killed when dropped and prints its
//! log when the test is failing.

// Included by several test binaries; each uses a part.
#![allow(dead_code, unused_imports)]

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

pub use ::harness::{
    DEADLINE, DumpSpec, Event, Scrape, folder, http_get, is, parse_event, run_table, small_dump,
    synthetic_dump, synthetic_dump_of, tempdir, write_config,
};

/// The binary under test.
pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_probewatch")
}

/// A running `probewatch` under test (the harness's [`::harness::Daemon`]).
pub struct Daemon(::harness::Daemon);

impl Deref for Daemon {
    type Target = ::harness::Daemon;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Daemon {
    /// Spawns `probewatch ARGS` with `env` set, JSON logs expected on stderr.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn_as(args, env, None)
    }

    /// [`Daemon::spawn`] as the user and group `uid_gid` when given (the
    /// test must be root to switch).
    pub fn spawn_as(args: &[&str], env: &[(&str, &str)], uid_gid: Option<(u32, u32)>) -> Daemon {
        let mut launch = ::harness::Launch::new(exe())
            .args(args)
            .envs(env.iter().copied());
        if let Some((uid, gid)) = uid_gid {
            launch = launch.user(uid, gid);
        }
        Daemon(
            launch
                .spawn()
                .unwrap_or_else(|e| panic!("spawning probewatch: {e:#}")),
        )
    }

    /// `probewatch watch --config CONFIG --log-format json`, waiting until
    /// it serves metrics.
    pub fn watch(config: &Path, env: &[(&str, &str)]) -> Daemon {
        let c = config.to_str().expect("UTF-8 temp path");
        let mut d = Daemon::spawn(&["watch", "--config", c, "--log-format", "json"], env);
        d.wait_serving();
        d
    }
}

/// [`::harness::write_renamed`] (hidden temporary file, synced, renamed
/// into place), panicking.
pub fn write_renamed(folder: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    ::harness::write_renamed(folder, name, bytes).unwrap_or_else(|e| panic!("{e:#}"))
}

/// `probewatch probe FILE --json`, parsed.
pub fn probe_json(file: &Path) -> serde_json::Value {
    ::harness::probe_json(exe(), file)
}
