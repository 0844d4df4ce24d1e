//! The probe sets of an `hf-checkpoints` run ([`ProbeRun`]): read once at
//! start (or by a reload that adds or changes the run), checked against the
//! `[limits]` caps, and tokenized into an extraction plan that is cached
//! while the tokenizer file's bytes stay the same; and which tokenizer a
//! checkpoint uses ([`tokenizer_for`]).
//!
//! What it does not do: run the encoder (`activations.rs` does, with the
//! plan from here), or read dumps.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::info;

use super::DaemonError;
use super::failure::{Failure, FailureKind};
use crate::config::{Limits, RunConfig};
use source::encoder::Encoder;
use source::extract::ExtractionPlan;
use source::probeset::ProbeSet;
use source::probeset::tokens::{ProbeTokenizer, TokenizeOptions};

/// What an `hf-checkpoints` run computes its activations from: the probe
/// sets, read once at start, and the extraction plan of the last tokenizer
/// seen (tokenizing does not depend on the weights, so checkpoints with the
/// same `tokenizer.json` share one plan).
pub(super) struct ProbeRun {
    sets: Vec<ProbeSet>,
    plan: Mutex<Option<PlanCache>>,
}

/// The extraction plan of one tokenizer file.
struct PlanCache {
    /// Digest of the tokenizer file's bytes.
    digest: u64,
    max_tokens: usize,
    plan: Arc<ExtractionPlan>,
}

impl ProbeRun {
    /// Reads the probe sets of `cfg` (an `hf-checkpoints` run) and checks
    /// them against `limits`.
    pub(super) fn load(cfg: &RunConfig, limits: &Limits) -> Result<ProbeRun, DaemonError> {
        let mut sets = Vec::with_capacity(cfg.probes.len());
        for p in &cfg.probes {
            let set =
                ProbeSet::load(&p.task, &p.files).map_err(|source| DaemonError::ProbeSet {
                    run: cfg.name.clone(),
                    task: p.task.name.clone(),
                    source,
                })?;
            info!(run = %cfg.name, task = %p.task.name, items = set.items.len(), sentences = set.sentences.len(), labels = set.label_names.len(), "probe set read");
            sets.push(set);
        }
        let probe = ProbeRun {
            sets,
            plan: Mutex::new(None),
        };
        probe.check_limits(cfg, limits)?;
        Ok(probe)
    }

    /// Refuses probe sets with more items or labels than `limits` allow.
    pub(super) fn check_limits(&self, cfg: &RunConfig, limits: &Limits) -> Result<(), DaemonError> {
        self.sets
            .iter()
            .try_for_each(|set| check_probe_set_limits(cfg, set, limits))
    }

    /// The plan for `tokenizer` (a file) and `encoder`'s input length:
    /// cached while the tokenizer file's bytes stay the same.
    pub(super) fn plan(
        &self,
        cfg: &RunConfig,
        tokenizer: &Path,
        encoder: &Encoder,
    ) -> Result<Arc<ExtractionPlan>, Failure> {
        let bytes = std::fs::read(tokenizer).map_err(|e| {
            Failure::new(
                FailureKind::Io,
                format!("{}: cannot read the tokenizer: {e}", tokenizer.display()),
            )
        })?;
        let digest = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            h.finish()
        };
        let max_tokens = encoder.max_positions();
        let mut cache = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.as_ref()
            && c.digest == digest
            && c.max_tokens == max_tokens
        {
            return Ok(c.plan.clone());
        }
        let mut opts = TokenizeOptions::new(max_tokens);
        opts.word_pooling = cfg.word_pooling;
        opts.sentence_pooling = cfg.sentence_pooling;
        let tok = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| {
            Failure::new(
                FailureKind::Format,
                format!("{}: cannot load the tokenizer: {e}", tokenizer.display()),
            )
        })?;
        let tok = ProbeTokenizer::new(tok, opts).map_err(|e| Failure::tokenize(&e))?;
        let plan = ExtractionPlan::new(&tok, &self.sets).map_err(|e| Failure::extract(&e))?;
        info!(run = %cfg.name, tokenizer = %tokenizer.display(), inputs = plan.inputs(), tokens = plan.tokens(), "probe sets tokenized");
        let plan = Arc::new(plan);
        *cache = Some(PlanCache {
            digest,
            max_tokens,
            plan: plan.clone(),
        });
        Ok(plan)
    }
}

/// Refuses a probe set of run `cfg` with more items or labels than `limits`
/// allow (the daemon at start and on reload, and `check-config`).
pub fn check_probe_set_limits(
    cfg: &RunConfig,
    set: &ProbeSet,
    limits: &Limits,
) -> Result<(), DaemonError> {
    match limits.exceeded(set.items.len(), set.label_names.len(), None) {
        None => Ok(()),
        Some(e) => Err(DaemonError::ProbeSetLimit {
            run: cfg.name.clone(),
            task: set.task.name.clone(),
            what: e.what,
            key: e.key,
            value: e.value,
            limit: e.limit,
        }),
    }
}

/// The tokenizer of an `hf-checkpoints` run for checkpoint `dir`: the
/// configured file, else the checkpoint's `tokenizer.json`, else the run
/// folder's.
pub(super) fn tokenizer_for(cfg: &RunConfig, dir: &Path) -> Result<PathBuf, Failure> {
    if let Some(t) = &cfg.tokenizer {
        return Ok(t.clone());
    }
    [
        dir.join("tokenizer.json"),
        cfg.folder.join("tokenizer.json"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .ok_or_else(|| {
        Failure::new(
            FailureKind::ConfigMismatch,
            format!(
                "{}: no tokenizer.json in the checkpoint or the run folder {}; set `tokenizer` in \
                 the run's config",
                dir.display(),
                cfg.folder.display()
            ),
        )
    })
}
