//! What a run's configuration means to the analysis: the per-task
//! [`AnalysisOptions`] of the core stage and of the late ones, the
//! partition mode, which late stages apply to the run at all
//! ([`stage_applies`]) and which layers still lack one ([`needs`]).
//!
//! Pure functions of the configuration and the reports. What it does not
//! do: run anything, or decide when a stage runs (`late_jobs.rs`) or
//! whether a stored one is finished (`restore.rs`).

use analysis::{AnalysisOptions, Stage, SubSplits};
use geometry::classifier::{ClassifierParams, search_configs};
use geometry::measures::{LayerReport, MeasureParams, Partition};
use view::record::has_test_hulls;

use crate::config::{Classifier, Mode, RunConfig};

/// The analysis options of one task of `cfg` (`core_only` for the core
/// stage).
pub(super) fn analysis_options(
    cfg: &RunConfig,
    task: &str,
    layers: Option<Vec<usize>>,
    core_only: bool,
) -> AnalysisOptions {
    AnalysisOptions {
        task: Some(task.to_owned()),
        layers,
        measure: MeasureParams {
            label_distance: cfg.label_distance,
            drop_clusters_up_to: cfg.drop_clusters_up_to,
            train_test_similarity: cfg.train_test_similarity,
            ..MeasureParams::default()
        },
        keep_centroids: true,
        classifier: match cfg.classifier {
            Classifier::None => None,
            Classifier::Mlp => Some(ClassifierParams {
                configs: search_configs(cfg.classifier_configurations),
                ..ClassifierParams::default()
            }),
        },
        subsplits: cfg.memorisation_splits.then(SubSplits::default),
        core_only,
    }
}

/// How the run's checkpoints are partitioned (`mode`).
pub(super) fn partition_of(cfg: &RunConfig) -> Partition {
    match cfg.mode {
        Mode::Exact => Partition::Recluster,
        Mode::FrozenPartition => Partition::Frozen,
    }
}

/// Whether `stage` applies to this run at all.
pub(super) fn stage_applies(cfg: &RunConfig, stage: Stage) -> bool {
    match stage {
        Stage::Core | Stage::Clusters => true,
        Stage::TestHulls | Stage::TestClusters => cfg.train_test_similarity,
        Stage::Classifier => cfg.classifier != Classifier::None,
    }
}

/// Whether a layer report still lacks `stage`.
pub(super) fn needs(stage: Stage, r: &LayerReport) -> bool {
    match stage {
        Stage::Core => false,
        Stage::TestHulls => !has_test_hulls(r),
        Stage::Clusters => !r.clustered,
        Stage::TestClusters => r.test_clusters.is_none(),
        Stage::Classifier => r.classifier_accuracy.is_none(),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeMap;

    use geometry::measures::{LayerInput, measure_core};

    use super::*;

    /// The core report of a small layer: two labels, train and test
    /// points, late-stage fields empty.
    pub(in crate::supervisor) fn core_report() -> LayerReport {
        let data = [
            0.0f32, 0.0, 1.0, 0.0, 0.0, 5.0, 1.0, 5.0, 0.5, 0.1, 0.5, 4.9,
        ];
        let labels = [0u32, 0, 1, 1, 0, 1];
        let split = [0u8, 0, 0, 0, 1, 1];
        let split_names = ["train".to_owned(), "test".to_owned()];
        let input = LayerInput {
            data: &data,
            dim: 2,
            labels: &labels,
            n_labels: 2,
            split: &split,
            split_names: &split_names,
            fit_split: "train",
        };
        let params = MeasureParams {
            train_test_similarity: true,
            ..MeasureParams::default()
        };
        measure_core(input, &params, None).0
    }

    #[test]
    fn late_stages_apply_as_the_run_is_configured() {
        let mut cfg = RunConfig::new("r", "/runs/r");
        cfg.train_test_similarity = false;
        cfg.classifier = Classifier::None;
        let applies = |cfg: &RunConfig| -> Vec<&str> {
            Stage::LATE
                .into_iter()
                .filter(|&s| stage_applies(cfg, s))
                .map(Stage::as_str)
                .collect()
        };
        assert_eq!(applies(&cfg), ["clusters"]);
        cfg.train_test_similarity = true;
        assert_eq!(applies(&cfg), ["test_hulls", "clusters", "test_clusters"]);
        cfg.classifier = Classifier::Mlp;
        assert_eq!(
            applies(&cfg),
            ["test_hulls", "clusters", "test_clusters", "classifier"]
        );
        assert!(stage_applies(&cfg, Stage::Core));
    }

    #[test]
    fn a_core_report_needs_the_late_stages_until_their_fields_are_filled() {
        let mut r = core_report();
        assert!(!needs(Stage::Core, &r));
        for stage in Stage::LATE {
            assert!(needs(stage, &r), "{}", stage.as_str());
        }
        r.similarity.insert("train_test_hull".to_owned(), Some(0.5));
        r.clustered = true;
        assert!(!needs(Stage::TestHulls, &r));
        assert!(!needs(Stage::Clusters, &r));
        assert!(needs(Stage::TestClusters, &r));
        r.test_clusters = Some(2);
        r.classifier_accuracy = Some(BTreeMap::new());
        for stage in Stage::ALL {
            assert!(!needs(stage, &r), "{}", stage.as_str());
        }
    }

    #[test]
    fn options_follow_the_run_and_the_stage() {
        let mut cfg = RunConfig::new("r", "/runs/r");
        cfg.classifier = Classifier::None;
        cfg.mode = Mode::FrozenPartition;
        let core = analysis_options(&cfg, "upos", Some(vec![0, 6]), true);
        assert_eq!(core.task.as_deref(), Some("upos"));
        assert_eq!(core.layers, Some(vec![0, 6]));
        assert!(core.core_only && core.keep_centroids);
        assert!(core.classifier.is_none());
        cfg.classifier = Classifier::Mlp;
        let late = analysis_options(&cfg, "upos", None, false);
        assert!(!late.core_only);
        assert!(late.classifier.is_some());
        assert_eq!(partition_of(&cfg), Partition::Frozen);
        cfg.mode = Mode::Exact;
        assert_eq!(partition_of(&cfg), Partition::Recluster);
    }
}
