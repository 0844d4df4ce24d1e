//! A run's waiting checkpoints ([`CheckpointQueue`]) and the order they
//! are analysed in: a pending baseline before everything, then the lowest
//! step (queue policy `all`) or only the newest (policy `newest`, the older
//! ones skipped; with no baseline yet under `baseline = "first"`, the first
//! checkpoint is the baseline and goes first).
//!
//! Pure bookkeeping over [`Candidate`]s. What it does not do: log or count
//! (it returns how many it skipped; the run loop logs and counts them),
//! read the store, or decide whether a checkpoint is complete (the scanner
//! does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::same_path;
use crate::config::{Baseline, QueuePolicy};
use crate::watch::Candidate;

/// The checkpoints of one run waiting for their core stage, by (step,
/// path).
#[derive(Default)]
pub(super) struct CheckpointQueue {
    items: BTreeMap<(u64, PathBuf), Candidate>,
}

/// What [`CheckpointQueue::next`] took.
#[derive(Debug, PartialEq)]
pub(super) struct Next {
    /// The checkpoint to analyse now.
    pub(super) candidate: Option<Candidate>,
    /// Older checkpoints dropped by the policy `newest`.
    pub(super) skipped: u64,
}

/// Whether `c` is the run's baseline: under `baseline = "first"` the first
/// checkpoint analysed (so any, while there is none), else the configured
/// step or path.
pub(super) fn is_baseline(baseline: &Baseline, have_baseline: bool, c: &Candidate) -> bool {
    match baseline {
        Baseline::First => !have_baseline,
        Baseline::Step(s) => c.step == *s,
        Baseline::Path(p) => same_path(&c.path, p),
    }
}

impl CheckpointQueue {
    /// Checkpoints waiting.
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// Queues `c` (replacing a waiting one of the same step and path).
    pub(super) fn insert(&mut self, c: Candidate) {
        self.items.insert((c.step, c.path.clone()), c);
    }

    /// Queues `c` unless one of the same step and path waits already.
    pub(super) fn insert_if_absent(&mut self, c: Candidate) {
        self.items.entry((c.step, c.path.clone())).or_insert(c);
    }

    /// Drops the lowest steps beyond `capacity`; returns how many.
    pub(super) fn trim_to(&mut self, capacity: usize) -> u64 {
        let mut dropped = 0;
        while self.items.len() > capacity {
            self.items.pop_first();
            dropped += 1;
        }
        dropped
    }

    /// Drops every waiting checkpoint at `path`; returns how many.
    pub(super) fn remove_path(&mut self, path: &Path) -> usize {
        let before = self.items.len();
        self.items.retain(|_, c| c.path != path);
        before - self.items.len()
    }

    /// The next checkpoint to analyse: a pending configured baseline first,
    /// else the lowest step (`all`) or the newest (`newest`, the others
    /// dropped and counted in [`Next::skipped`]).
    pub(super) fn next(
        &mut self,
        policy: QueuePolicy,
        baseline: &Baseline,
        have_baseline: bool,
    ) -> Next {
        let none_skipped = |candidate| Next {
            candidate,
            skipped: 0,
        };
        if !matches!(baseline, Baseline::First) {
            let key = self
                .items
                .iter()
                .find(|(_, c)| is_baseline(baseline, have_baseline, c))
                .map(|(k, _)| k.clone());
            if let Some(k) = key {
                return none_skipped(self.items.remove(&k));
            }
        }
        match policy {
            QueuePolicy::All => none_skipped(self.items.pop_first().map(|(_, c)| c)),
            QueuePolicy::Newest => {
                // With no baseline yet, the first checkpoint is it.
                if !have_baseline && matches!(baseline, Baseline::First) {
                    return none_skipped(self.items.pop_first().map(|(_, c)| c));
                }
                let candidate = self.items.pop_last().map(|(_, c)| c);
                let skipped = self.items.len() as u64;
                self.items.clear();
                Next { candidate, skipped }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn c(step: u64) -> Candidate {
        Candidate {
            step,
            path: PathBuf::from(format!("/runs/r/step-{step}.safetensors")),
            size: 100 + step,
            mtime: UNIX_EPOCH,
        }
    }

    fn queue(steps: &[u64]) -> CheckpointQueue {
        let mut q = CheckpointQueue::default();
        for &s in steps {
            q.insert(c(s));
        }
        q
    }

    fn drain(q: &mut CheckpointQueue, policy: QueuePolicy, baseline: &Baseline) -> Vec<u64> {
        let mut have = false;
        let mut out = Vec::new();
        while let Next {
            candidate: Some(x), ..
        } = q.next(policy, baseline, have)
        {
            have |= is_baseline(baseline, have, &x);
            out.push(x.step);
        }
        out
    }

    #[test]
    fn policy_all_takes_every_checkpoint_lowest_step_first() {
        let mut q = queue(&[300, 100, 200]);
        assert_eq!(
            drain(&mut q, QueuePolicy::All, &Baseline::First),
            [100, 200, 300]
        );
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_configured_baseline_goes_before_lower_steps() {
        let mut q = queue(&[100, 200, 300]);
        assert_eq!(
            drain(&mut q, QueuePolicy::All, &Baseline::Step(200)),
            [200, 100, 300]
        );
        let mut q = queue(&[100, 200, 300]);
        let by_path = Baseline::Path(c(300).path);
        assert_eq!(drain(&mut q, QueuePolicy::All, &by_path), [300, 100, 200]);
        // Also under `newest`, and without skipping anything for it.
        let mut q = queue(&[100, 200, 300]);
        let next = q.next(QueuePolicy::Newest, &Baseline::Step(100), false);
        assert_eq!(
            next,
            Next {
                candidate: Some(c(100)),
                skipped: 0
            }
        );
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn policy_newest_takes_the_newest_and_skips_the_rest() {
        let mut q = queue(&[100, 200, 300, 400]);
        let next = q.next(QueuePolicy::Newest, &Baseline::First, true);
        assert_eq!(
            next,
            Next {
                candidate: Some(c(400)),
                skipped: 3
            }
        );
        assert_eq!(q.len(), 0);
        let next = q.next(QueuePolicy::Newest, &Baseline::First, true);
        assert_eq!(
            next,
            Next {
                candidate: None,
                skipped: 0
            }
        );
    }

    #[test]
    fn policy_newest_takes_the_first_checkpoint_as_the_baseline() {
        let mut q = queue(&[100, 200, 300]);
        // No baseline yet: the lowest step is it, nothing skipped.
        let next = q.next(QueuePolicy::Newest, &Baseline::First, false);
        assert_eq!(next.candidate, Some(c(100)));
        assert_eq!(next.skipped, 0);
        // Then the newest, the one in between skipped.
        let next = q.next(QueuePolicy::Newest, &Baseline::First, true);
        assert_eq!(next.candidate, Some(c(300)));
        assert_eq!(next.skipped, 1);
    }

    #[test]
    fn the_baseline_is_the_configured_one_or_the_first() {
        assert!(is_baseline(&Baseline::First, false, &c(7)));
        assert!(!is_baseline(&Baseline::First, true, &c(7)));
        assert!(is_baseline(&Baseline::Step(7), true, &c(7)));
        assert!(!is_baseline(&Baseline::Step(8), false, &c(7)));
        assert!(is_baseline(&Baseline::Path(c(7).path), true, &c(7)));
        assert!(!is_baseline(&Baseline::Path(c(8).path), false, &c(7)));
    }

    #[test]
    fn trimming_drops_the_lowest_steps_and_removal_goes_by_path() {
        let mut q = queue(&[100, 200, 300, 400]);
        assert_eq!(q.trim_to(2), 2);
        assert_eq!(q.trim_to(2), 0);
        assert_eq!(q.remove_path(&c(300).path), 1);
        assert_eq!(q.remove_path(&c(300).path), 0);
        assert_eq!(drain(&mut q, QueuePolicy::All, &Baseline::First), [400]);
    }

    #[test]
    fn a_requeued_checkpoint_does_not_replace_a_waiting_one() {
        let mut q = CheckpointQueue::default();
        q.insert(c(100));
        let mut older = c(100);
        older.size = 1;
        q.insert_if_absent(older.clone());
        let next = q.next(QueuePolicy::All, &Baseline::First, true);
        assert_eq!(next.candidate.map(|x| x.size), Some(200));
        q.insert_if_absent(older);
        let next = q.next(QueuePolicy::All, &Baseline::First, true);
        assert_eq!(next.candidate.map(|x| x.size), Some(1));
    }
}
