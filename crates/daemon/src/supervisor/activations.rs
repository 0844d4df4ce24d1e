//! A checkpoint's activations ([`CheckpointSource`]): an opened dump (its
//! tasks, layers read on demand) or the encoder run over the run's probe
//! sets (one forward pass serves every task), read once by the core job
//! and kept for the late stages, with a second handle to a dump's file
//! that tells whether its bytes are still the analysed version.
//!
//! What it does not do: analyse (`core_job.rs`, `late_jobs.rs`), or decide
//! what a changed file means (the jobs record it as `changed` / `skipped`).

use std::fs::File;
use std::time::{SystemTime, UNIX_EPOCH};

use source::Activations;
use source::DumpTask;
use source::dump::{ActivationDump, DumpError};
use source::encoder::Encoder;
use source::extract::ExtractedActivations;

use super::failure::{Failure, FailureKind};
use super::probes::{ProbeRun, tokenizer_for};
use crate::config::{Layout, RunConfig};
use crate::watch::Candidate;

/// A checkpoint's activations, kept from its core stage for its late ones
/// (the dump stays open, so a checkpoint deleted meanwhile is still read;
/// extracted activations stay in memory).
pub(super) enum CheckpointSource {
    /// An activation dump.
    Dump {
        /// The open dump.
        dump: Box<ActivationDump>,
        /// The tasks analysed.
        tasks: Vec<String>,
        /// Another handle to the file `dump` reads.
        watch: File,
        /// Size and mtime of the version the scan judged complete.
        version: (u64, SystemTime),
    },
    /// Activations the encoder computed, one per task.
    Extracted(Vec<ExtractedActivations>),
}

impl CheckpointSource {
    /// Reads a checkpoint's activations: an opened dump (`held`, the handle
    /// the core job checks, when given), or the encoder run now over the
    /// run's probe sets on `threads` threads.
    pub(super) fn load(
        cfg: &RunConfig,
        probe: Option<&ProbeRun>,
        threads: usize,
        candidate: &Candidate,
        held: Option<&File>,
    ) -> Result<CheckpointSource, Failure> {
        match (cfg.layout, probe) {
            (Layout::Dumps, _) => Self::open_dump(cfg, candidate, held),
            (Layout::HfCheckpoints, Some(probe)) => {
                let encoder = Encoder::load(&candidate.path).map_err(|e| Failure::encoder(&e))?;
                let tokenizer = tokenizer_for(cfg, &candidate.path)?;
                let plan = probe.plan(cfg, &tokenizer, &encoder)?;
                let tasks = plan
                    .run(&encoder, threads)
                    .map_err(|e| Failure::extract(&e))?;
                Ok(CheckpointSource::Extracted(
                    tasks
                        .into_iter()
                        .map(|t| {
                            ExtractedActivations::new(&candidate.path, Some(candidate.step), t)
                        })
                        .collect(),
                ))
            }
            (Layout::HfCheckpoints, None) => Err(Failure::new(
                FailureKind::ConfigMismatch,
                format!("run '{}': probe sets not loaded", cfg.name),
            )),
        }
    }

    /// Opens a dump through `held` (or the path) and a second handle to
    /// the same open file.
    fn open_dump(
        cfg: &RunConfig,
        candidate: &Candidate,
        held: Option<&File>,
    ) -> Result<CheckpointSource, Failure> {
        let opened = match held {
            Some(f) => f.try_clone(),
            None => File::open(&candidate.path),
        };
        let file = opened.map_err(|e| {
            Failure::new(
                FailureKind::Io,
                format!("{}: opening the file: {e}", candidate.path.display()),
            )
        })?;
        // A second handle to the same open file: its size and mtime tell
        // whether the bytes the late stages read are still this version.
        let watch = file.try_clone().map_err(|e| {
            Failure::new(
                FailureKind::Io,
                format!("{}: duplicating the handle: {e}", candidate.path.display()),
            )
        })?;
        let dump = ActivationDump::open_file(&candidate.path, file)?;
        let tasks: Vec<String> = match &cfg.tasks {
            Some(t) => t.clone(),
            None => dump.tasks().iter().map(|t| t.name.clone()).collect(),
        };
        Ok(CheckpointSource::Dump {
            dump: Box::new(dump),
            tasks,
            watch,
            version: (candidate.size, candidate.mtime),
        })
    }

    /// Whether the bytes read may no longer be the analysed version: the
    /// dump was overwritten in place or truncated since the scan (a rename
    /// or a delete leaves the open file as it was). Extracted activations
    /// are in memory and never change.
    pub(super) fn changed(&self) -> bool {
        match self {
            CheckpointSource::Dump { watch, version, .. } => file_version(watch) != Some(*version),
            CheckpointSource::Extracted(_) => false,
        }
    }

    /// Calls `f` with every task's activations.
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&[&dyn Activations]) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        match self {
            CheckpointSource::Dump { dump, tasks, .. } => {
                let ts: Vec<DumpTask<'_>> = tasks
                    .iter()
                    .map(|n| DumpTask::new(dump.as_ref(), Some(n)))
                    .collect::<Result<_, DumpError>>()?;
                let refs: Vec<&dyn Activations> =
                    ts.iter().map(|t| t as &dyn Activations).collect();
                f(&refs)
            }
            CheckpointSource::Extracted(v) => {
                let refs: Vec<&dyn Activations> = v.iter().map(|t| t as &dyn Activations).collect();
                f(&refs)
            }
        }
    }
}

/// Size and mtime of an open file now; `None` when they cannot be read.
pub(super) fn file_version(f: &File) -> Option<(u64, SystemTime)> {
    f.metadata()
        .ok()
        .map(|m| (m.len(), m.modified().unwrap_or(UNIX_EPOCH)))
}
