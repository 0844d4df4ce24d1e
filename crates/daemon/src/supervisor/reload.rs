//! A configuration reload (SIGHUP in `main.rs`), all or nothing: the whole
//! file is read and checked, and the probe sets of new or changed runs
//! read, before anything changes; a file that does not load changes
//! nothing (the error is logged and counted). Then the analysis limits
//! change for the next checkpoint, runs removed or changed are stopped,
//! runs added or changed are started from the store. Settings bound at
//! start (listener, store, workers, web config, log format, shard, HTTP
//! limits) keep running as started; a change to one is logged.
//!
//! What it does not do: parse the file (the [`ReloadFn`] of `main.rs`
//! does), or know what a run loop does (it stops and starts them).

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use tracing::{error, info, warn};

use super::probes::ProbeRun;
use super::run_loop::{RunHandle, start_run};
use super::{DaemonError, ReloadFn, Shared, unix_now};
use crate::config::{Config, Layout, RunConfig};

/// Reads the probe sets of every `hf-checkpoints` run of `config` on a
/// blocking thread, re-using `keep`'s for runs whose settings are unchanged
/// (their sets are checked against the new limits again).
pub(super) async fn load_probes(
    config: &Config,
    keep: &BTreeMap<String, (RunConfig, Arc<ProbeRun>)>,
) -> Result<BTreeMap<String, Arc<ProbeRun>>, DaemonError> {
    let mut probes = BTreeMap::new();
    for run in config
        .runs
        .iter()
        .filter(|r| r.layout == Layout::HfCheckpoints)
    {
        let probe = match keep.get(&run.name) {
            Some((old, probe)) if old == run => {
                probe.check_limits(run, &config.limits)?;
                probe.clone()
            }
            _ => {
                let (cfg, limits) = (run.clone(), config.limits);
                let probe = tokio::task::spawn_blocking(move || ProbeRun::load(&cfg, &limits))
                    .await
                    .map_err(|e| DaemonError::Pool {
                        workers: 1,
                        detail: e.to_string(),
                    })??;
                Arc::new(probe)
            }
        };
        probes.insert(run.name.clone(), probe);
    }
    Ok(probes)
}

/// One SIGHUP: loads the configuration and applies it (see
/// [`super::run_with_reload`]), or logs why not and keeps `current`.
pub(super) async fn apply_reload(
    shared: &Arc<Shared>,
    runs: &mut BTreeMap<String, RunHandle>,
    current: &mut Config,
    load: &ReloadFn,
) {
    let file = current.file.display().to_string();
    info!(file = %file, "reloading the configuration");
    let failed = |error: &dyn std::fmt::Display| {
        error!(file = %file, error = %error, "configuration reload failed; the running configuration is kept");
        shared.metrics.config_reload_failed();
    };
    let load = load.clone();
    let new = match tokio::task::spawn_blocking(move || load()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return failed(&e),
        Err(e) => return failed(&e),
    };
    // Probe sets of new or changed runs are read before anything changes:
    // one that cannot be read fails the whole reload.
    let keep: BTreeMap<String, (RunConfig, Arc<ProbeRun>)> = {
        let probes = shared.probes.read().unwrap_or_else(PoisonError::into_inner);
        current
            .runs
            .iter()
            .filter_map(|r| {
                probes
                    .get(&r.name)
                    .map(|p| (r.name.clone(), (r.clone(), p.clone())))
            })
            .collect()
    };
    let probes = match load_probes(&new, &keep).await {
        Ok(p) => p,
        Err(e) => return failed(&e),
    };
    for setting in restart_only_changes(current, &new) {
        warn!(
            setting,
            "changed in the configuration file; takes effect at the next restart"
        );
    }
    *shared
        .limits
        .write()
        .unwrap_or_else(PoisonError::into_inner) = new.limits;
    let plan = {
        let running: Vec<(&str, &RunConfig)> =
            runs.iter().map(|(n, h)| (n.as_str(), &h.cfg)).collect();
        RunChanges::plan(&running, &current.runs, &new.runs)
    };
    for name in &plan.stop {
        if let Some(h) = runs.remove(name) {
            h.stop().await;
        }
        if plan.removed.contains(name) {
            shared.metrics.remove_run(name);
        }
    }
    *shared
        .probes
        .write()
        .unwrap_or_else(PoisonError::into_inner) = probes;
    for run in new.runs.iter().filter(|r| plan.start.contains(&r.name)) {
        if let Some(h) = start_run(shared, run).await {
            runs.insert(run.name.clone(), h);
        }
    }
    let watched = runs.len();
    // Restart-only settings stay as they run, so the next reload compares
    // with what is in effect.
    *current = keep_restart_only(new, current);
    shared.metrics.config_loaded(true, unix_now());
    let RunChanges {
        added,
        removed,
        changed,
        ..
    } = plan;
    info!(file = %file, added = ?added, removed = ?removed, changed = ?changed, watched, "configuration reloaded");
}

/// The settings bound at start that `new` changes (they take effect at the
/// next restart).
fn restart_only_changes(current: &Config, new: &Config) -> Vec<&'static str> {
    [
        ("listen", current.listen != new.listen),
        ("store", current.store != new.store),
        ("workers", current.workers != new.workers),
        ("web_config", current.web_config != new.web_config),
        ("log_format", current.log_format != new.log_format),
        ("shard", current.shard != new.shard),
        (
            "limits.max_concurrent_requests",
            current.limits.max_concurrent_requests != new.limits.max_concurrent_requests,
        ),
        (
            "limits.max_request_bytes",
            current.limits.max_request_bytes != new.limits.max_request_bytes,
        ),
    ]
    .into_iter()
    .filter_map(|(setting, changed)| changed.then_some(setting))
    .collect()
}

/// `new` with the settings bound at start as `current` runs them.
fn keep_restart_only(new: Config, current: &Config) -> Config {
    let mut next = new;
    next.listen = current.listen;
    next.store = current.store.clone();
    next.workers = current.workers;
    next.web_config = current.web_config.clone();
    next.log_format = current.log_format;
    next.shard = current.shard;
    next.limits.max_concurrent_requests = current.limits.max_concurrent_requests;
    next.limits.max_request_bytes = current.limits.max_request_bytes;
    next
}

/// How a reload changes the running runs.
#[derive(Debug, Default, PartialEq)]
struct RunChanges {
    /// Running runs to stop (removed, or their settings changed), by name.
    stop: Vec<String>,
    /// Runs to start, in the file's order (added, changed, or not running).
    start: Vec<String>,
    /// Runs no longer in the file.
    removed: Vec<String>,
    /// Runs new to the file.
    added: Vec<String>,
    /// Runs in both files that start again.
    changed: Vec<String>,
}

impl RunChanges {
    /// From the running runs (name and settings, by name), the current
    /// file's runs and the new file's runs.
    fn plan(
        running: &[(&str, &RunConfig)],
        current: &[RunConfig],
        new: &[RunConfig],
    ) -> RunChanges {
        let mut changes = RunChanges::default();
        let mut kept = Vec::new();
        for &(name, cfg) in running {
            match new.iter().find(|r| r.name == name) {
                Some(r) if r == cfg => kept.push(name),
                Some(_) => changes.stop.push(name.to_owned()),
                None => {
                    changes.stop.push(name.to_owned());
                    changes.removed.push(name.to_owned());
                }
            }
        }
        for run in new {
            if kept.contains(&run.name.as_str()) {
                continue;
            }
            if current.iter().any(|r| r.name == run.name) {
                changes.changed.push(run.name.clone());
            } else {
                changes.added.push(run.name.clone());
            }
            changes.start.push(run.name.clone());
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{Limits, LogFormat};

    fn config(runs: Vec<RunConfig>) -> Config {
        Config {
            file: PathBuf::from("/etc/pw/probewatch.toml"),
            listen: "127.0.0.1:9184".parse().unwrap(),
            store: PathBuf::from("/var/lib/pw/store.sqlite"),
            workers: 2,
            log_format: LogFormat::Human,
            runs,
            web_config: None,
            shard: None,
            limits: Limits::default(),
        }
    }

    fn run(name: &str) -> RunConfig {
        RunConfig::new(name, format!("/runs/{name}"))
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn settings_bound_at_start_are_reported_and_kept() {
        let current = config(vec![run("a")]);
        let mut new = config(vec![run("a"), run("b")]);
        assert!(restart_only_changes(&current, &new).is_empty());
        new.workers = 8;
        new.log_format = LogFormat::Json;
        new.limits.max_request_bytes += 1;
        new.limits.max_file_bytes += 1;
        assert_eq!(
            restart_only_changes(&current, &new),
            ["workers", "log_format", "limits.max_request_bytes"]
        );
        let next = keep_restart_only(new.clone(), &current);
        assert_eq!(next.workers, 2);
        assert_eq!(next.log_format, LogFormat::Human);
        assert_eq!(
            next.limits.max_request_bytes,
            current.limits.max_request_bytes
        );
        // What a reload may change, changes.
        assert_eq!(next.limits.max_file_bytes, new.limits.max_file_bytes);
        assert_eq!(next.runs, new.runs);
        assert!(restart_only_changes(&next, &new).len() == 3);
        assert!(restart_only_changes(&current, &next).is_empty());
    }

    #[test]
    fn a_reload_stops_removed_and_changed_runs_and_starts_new_ones() {
        let (a, b, c) = (run("a"), run("b"), run("c"));
        let mut b2 = run("b");
        b2.scan_interval *= 2;
        let current = vec![a.clone(), b.clone(), c.clone()];
        let running = [("a", &a), ("b", &b), ("c", &c)];
        let new = vec![run("d"), b2, a.clone()];
        let plan = RunChanges::plan(&running, &current, &new);
        assert_eq!(
            plan,
            RunChanges {
                stop: names(&["b", "c"]),
                start: names(&["d", "b"]),
                removed: names(&["c"]),
                added: names(&["d"]),
                changed: names(&["b"]),
            }
        );
    }

    #[test]
    fn a_run_that_did_not_start_is_started_again_and_an_unchanged_file_changes_nothing() {
        let (a, b) = (run("a"), run("b"));
        let current = vec![a.clone(), b.clone()];
        // `b` could not be restored last time: it is not running.
        let plan = RunChanges::plan(&[("a", &a)], &current, &current);
        assert_eq!(plan.start, names(&["b"]));
        assert_eq!(plan.changed, names(&["b"]));
        assert!(plan.stop.is_empty() && plan.added.is_empty());
        let plan = RunChanges::plan(&[("a", &a), ("b", &b)], &current, &current);
        assert_eq!(plan, RunChanges::default());
    }
}
