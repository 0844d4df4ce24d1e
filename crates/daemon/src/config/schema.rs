//! The file exactly as serde reads it: one `Raw*` type per table, every
//! option optional where the file may leave it out, with
//! `deny_unknown_fields` so that a misspelt option is an error, and
//! `Spanned` wherever a later check must point at the value's line.
//!
//! Deliberately no checks and no defaults: the `check` module turns these
//! into a [`super::Config`].

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use geometry::measures::LabelDistance;

use super::{Classifier, Layout, LogFormat, Mode, QueuePolicy};

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) store: Option<Spanned<PathBuf>>,
    pub(super) workers: Option<Spanned<usize>>,
    pub(super) log_format: Option<LogFormat>,
    pub(super) web_config: Option<Spanned<PathBuf>>,
    pub(super) limits: Option<RawLimits>,
    pub(super) run: Option<Spanned<Vec<Spanned<RawRun>>>>,
}

/// The `[limits]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_file_bytes: Option<Spanned<u64>>,
    pub(super) max_items_per_task: Option<Spanned<usize>>,
    pub(super) max_labels: Option<Spanned<usize>>,
    pub(super) max_layers: Option<Spanned<usize>>,
    pub(super) max_concurrent_requests: Option<Spanned<usize>>,
    pub(super) max_request_bytes: Option<Spanned<usize>>,
}

/// One `[[run]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRun {
    pub(super) name: Spanned<String>,
    pub(super) folder: Spanned<PathBuf>,
    pub(super) layout: Option<Spanned<Layout>>,
    pub(super) baseline: Option<Spanned<toml::Value>>,
    pub(super) tasks: Option<Spanned<Vec<String>>>,
    pub(super) layers: Option<Spanned<Vec<usize>>>,
    pub(super) scan_interval_seconds: Option<Spanned<f64>>,
    pub(super) stable_scans: Option<Spanned<u32>>,
    pub(super) mode: Option<Mode>,
    pub(super) label_distance: Option<LabelDistance>,
    pub(super) drop_clusters_up_to: Option<usize>,
    pub(super) train_test_similarity: Option<bool>,
    pub(super) queue: Option<QueuePolicy>,
    pub(super) queue_capacity: Option<Spanned<usize>>,
    pub(super) late_stage_budget_seconds: Option<Spanned<f64>>,
    pub(super) export_label_pairs: Option<bool>,
    pub(super) follow_symlinks: Option<bool>,
    pub(super) classifier: Option<Classifier>,
    pub(super) classifier_configurations: Option<Spanned<usize>>,
    pub(super) memorisation_splits: Option<bool>,
    pub(super) probe: Option<Vec<Spanned<RawProbe>>>,
    pub(super) tokenizer: Option<Spanned<PathBuf>>,
    pub(super) word_pooling: Option<Spanned<RawWordPooling>>,
    pub(super) sentence_pooling: Option<Spanned<RawSentencePooling>>,
}

/// One `[[run.probe]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {
    pub(super) task: Spanned<String>,
    pub(super) name: Option<Spanned<String>>,
    pub(super) files: Spanned<Vec<Spanned<String>>>,
}

/// `word_pooling`, spelt as in the file.
#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RawWordPooling {
    First,
    Mean,
}

/// `sentence_pooling`, spelt as in the file.
#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RawSentencePooling {
    Cls,
    Mean,
}
