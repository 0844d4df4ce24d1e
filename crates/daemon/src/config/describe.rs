//! What `probewatch check-config` prints: [`Config::describe`] renders every
//! resolved setting in words, with what the daemon would do with it and
//! whether the folders and files named exist now.
//!
//! Deliberately read-only and lenient: a missing folder is reported, not an
//! error (the daemon watches until it appears), and nothing here changes a
//! setting or checks one again (the `check` module did).

use std::fmt::Write as _;
use std::time::Duration;

use geometry::measures::LabelDistance;
use source::probeset::tokens::{SentencePooling, WordPooling};

use super::{Baseline, Classifier, Config, Layout, LogFormat, Mode, QueuePolicy, RunConfig};

impl Config {
    /// What `probewatch check-config FILE` prints: the listener, store,
    /// workers, and for each run every resolved setting, whether its folder
    /// exists, and what the daemon would do with it.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_description(&mut out);
        out
    }

    /// The daemon-wide settings, then each run's.
    fn write_description(&self, out: &mut String) -> std::fmt::Result {
        writeln!(out, "config {}", self.file.display())?;
        if self.listen.port() == 0 {
            writeln!(
                out,
                "listen on {} with a free port picked at start (/metrics, /healthz, /readyz, /report)",
                self.listen.ip()
            )?;
        } else {
            writeln!(
                out,
                "listen on http://{}/ (/metrics, /healthz, /readyz, /report)",
                self.listen
            )?;
        }
        if !self.listen.ip().is_loopback() {
            writeln!(
                out,
                "  note: {} is reachable from other machines",
                self.listen.ip()
            )?;
        }
        let store_state = if self.store.is_file() {
            "exists, history is resumed"
        } else if self.store.exists() {
            "EXISTS BUT IS NOT A FILE"
        } else {
            "will be created"
        };
        writeln!(out, "store {} ({store_state})", self.store.display())?;
        match &self.web_config {
            None => writeln!(out, "web config none: plain HTTP, no authentication")?,
            Some(web) => writeln!(out, "web config {}", web.display())?,
        }
        if let Some(shard) = self.shard {
            writeln!(
                out,
                "shard {shard}: analyses every {}th (task, layer) pair of each checkpoint, from position {}",
                shard.count(),
                shard.index()
            )?;
        }
        writeln!(out, "workers {} analysis threads", self.workers)?;
        let log = match self.log_format {
            LogFormat::Human => "human-readable lines",
            LogFormat::Json => "JSON lines",
        };
        writeln!(out, "log format {log}")?;
        let l = &self.limits;
        writeln!(
            out,
            "limits checkpoints up to {} bytes; per task up to {} items, {} labels, {} layers; \
             HTTP up to {} requests at once, request heads up to {} bytes",
            l.max_file_bytes,
            l.max_items_per_task,
            l.max_labels,
            l.max_layers,
            l.max_concurrent_requests,
            l.max_request_bytes
        )?;
        writeln!(out, "{} run(s):", self.runs.len())?;
        for run in &self.runs {
            run.write_description(out)?;
        }
        Ok(())
    }
}

impl RunConfig {
    /// A blank line, the run's name, then every setting of the run.
    fn write_description(&self, out: &mut String) -> std::fmt::Result {
        writeln!(out)?;
        writeln!(out, "run {}", self.name)?;
        self.write_watching(out)?;
        self.write_inputs(out)?;
        self.write_analysis(out)
    }

    /// The folder, how it is watched, and the baseline.
    fn write_watching(&self, out: &mut String) -> std::fmt::Result {
        let folder_state = if self.folder.is_dir() {
            "exists"
        } else if self.folder.exists() {
            "EXISTS BUT IS NOT A FOLDER"
        } else {
            "does not exist yet; watched until it appears"
        };
        writeln!(out, "  folder {} ({folder_state})", self.folder.display())?;
        let what = match self.layout {
            Layout::Dumps => "activation dumps *.safetensors",
            Layout::HfCheckpoints => "HuggingFace checkpoint-<step>/ folders",
        };
        writeln!(
            out,
            "  watch {} for {what} every {}; a file is complete once its size and mtime are unchanged for {} scan(s)",
            self.folder.display(),
            seconds(self.scan_interval),
            self.stable_scans
        )?;
        let symlinks = if self.follow_symlinks {
            "followed"
        } else {
            "not followed"
        };
        writeln!(out, "  symbolic links {symlinks}")?;
        match &self.baseline {
            Baseline::First => writeln!(out, "  baseline = first checkpoint"),
            Baseline::Step(step) => writeln!(out, "  baseline = checkpoint of step {step}"),
            Baseline::Path(path) => {
                let state = if path.exists() {
                    "exists"
                } else {
                    "does not exist yet"
                };
                writeln!(out, "  baseline = {} ({state})", path.display())
            }
        }
    }

    /// What the vectors are made from (the encoder and its probe sets, or
    /// a dump's tasks) and which layers are analysed.
    fn write_inputs(&self, out: &mut String) -> std::fmt::Result {
        if self.layout == Layout::HfCheckpoints {
            self.write_encoder(out)?;
        } else {
            match &self.tasks {
                None => writeln!(out, "  tasks: every task in each dump")?,
                Some(tasks) => writeln!(out, "  tasks: {}", tasks.join(", "))?,
            }
        }
        match &self.layers {
            None => writeln!(out, "  layers: every layer"),
            Some(layers) => {
                let list: Vec<String> = layers.iter().map(ToString::to_string).collect();
                writeln!(out, "  layers: {}", list.join(", "))
            }
        }
    }

    /// The tokenizer, the pooling and the probe sets of an
    /// `hf-checkpoints` run.
    fn write_encoder(&self, out: &mut String) -> std::fmt::Result {
        match &self.tokenizer {
            Some(t) => {
                let state = if t.is_file() {
                    "exists"
                } else {
                    "DOES NOT EXIST"
                };
                writeln!(out, "  tokenizer {} ({state})", t.display())?;
            }
            None => writeln!(
                out,
                "  tokenizer: each checkpoint's tokenizer.json, else the run folder's"
            )?,
        }
        let word = match self.word_pooling {
            WordPooling::First => "first subword",
            WordPooling::Mean => "mean of subwords",
        };
        let sentence = match self.sentence_pooling {
            SentencePooling::Cls => "first special token ([CLS])",
            SentencePooling::Mean => "mean of tokens",
        };
        writeln!(out, "  word vector: {word}; sentence vector: {sentence}")?;
        writeln!(
            out,
            "  tasks (one encoder pass per checkpoint serves all {}):",
            self.probes.len()
        )?;
        for p in &self.probes {
            let files: Vec<String> = p.files.iter().map(ToString::to_string).collect();
            writeln!(out, "    {}: {}", p.task.name, files.join(", "))?;
        }
        Ok(())
    }

    /// How each checkpoint is analysed, queued and exported.
    fn write_analysis(&self, out: &mut String) -> std::fmt::Result {
        let mode = match self.mode {
            Mode::Exact => "exact (DirectProbe re-run on every checkpoint, incrementally)",
            Mode::FrozenPartition => {
                "frozen partition (the baseline's clusters re-checked, distances recomputed)"
            }
        };
        writeln!(out, "  mode: {mode}")?;
        let distance = match self.label_distance {
            LabelDistance::Mean => "mean over cluster pairs",
            LabelDistance::Min => "min over cluster pairs",
        };
        writeln!(out, "  label distance: {distance}")?;
        if self.drop_clusters_up_to == 0 {
            writeln!(out, "  small clusters: kept")?;
        } else {
            writeln!(
                out,
                "  small clusters: clusters of up to {} points dropped before measuring",
                self.drop_clusters_up_to
            )?;
        }
        let on_off = |b: bool| if b { "on" } else { "off" };
        writeln!(
            out,
            "  train/test similarity: {}",
            on_off(self.train_test_similarity)
        )?;
        let queue = match self.queue {
            QueuePolicy::All => "every checkpoint, in order",
            QueuePolicy::Newest => "only the newest waiting checkpoint",
        };
        writeln!(
            out,
            "  queue: {queue}, up to {} waiting",
            self.queue_capacity
        )?;
        if self.late_stage_budget.is_zero() {
            writeln!(out, "  late stages: off (core stage only)")?;
        } else {
            writeln!(
                out,
                "  late stages: up to {} s of work per checkpoint",
                self.late_stage_budget.as_secs_f64()
            )?;
        }
        writeln!(
            out,
            "  per-label-pair series: {}",
            on_off(self.export_label_pairs)
        )?;
        match self.classifier {
            Classifier::None => writeln!(out, "  classifier probe: off")?,
            Classifier::Mlp => writeln!(
                out,
                "  classifier probe: MLP, best of {} configurations, 5 seeds",
                self.classifier_configurations
            )?,
        }
        if self.memorisation_splits {
            writeln!(
                out,
                "  memorisation splits: subtrain/subtest carved 80:20 out of train; fitted on subtrain"
            )
        } else {
            writeln!(out, "  memorisation splits: off")
        }
    }
}

/// `10 s`, `0.5 s`.
fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}
