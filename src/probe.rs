//! `probewatch probe`: one-shot analysis of an activation dump, printed as
//! a table or as JSON. It formats; the analysis is the `analysis` crate's.

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use analysis::{AnalysisOptions, Report, SubSplits, analyse_dump};
use geometry::classifier::{ClassifierParams, search_configs};
use geometry::measures::{LabelDistance, MeasureParams};
use source::dump::ActivationDump;

use crate::cli::{LabelDistanceArg, ProbeArgs};

/// Analyses `args.file` and prints the report.
pub(crate) fn run(args: &ProbeArgs) -> Result<()> {
    let dump = ActivationDump::open(&args.file)?;
    let opts = options(args);
    let n_layers = match &opts.layers {
        Some(l) => {
            let mut l = l.clone();
            l.sort_unstable();
            l.dedup();
            l.len()
        }
        None => dump.task(opts.task.as_deref())?.layers.len(),
    };
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(n_layers as u64);
        b.set_style(
            ProgressStyle::with_template("{spinner} layers {pos}/{len} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let report = analyse_dump(&dump, &opts, &|_| bar.inc(1))
        .with_context(|| format!("analysing {}", args.file.display()))?;
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &report)?;
    }
    Ok(())
}

/// The analysis the options ask for.
fn options(args: &ProbeArgs) -> AnalysisOptions {
    AnalysisOptions {
        task: args.task.clone(),
        layers: args.layers.clone(),
        measure: MeasureParams {
            label_distance: match args.label_distance {
                LabelDistanceArg::Mean => LabelDistance::Mean,
                LabelDistanceArg::Min => LabelDistance::Min,
            },
            drop_clusters_up_to: args.drop_clusters_up_to,
            train_test_similarity: !args.no_train_test,
            ..MeasureParams::default()
        },
        keep_centroids: args.centroids,
        classifier: args.classifier.then(|| ClassifierParams {
            configs: search_configs(args.classifier_configurations as usize),
            ..ClassifierParams::default()
        }),
        subsplits: args.memorisation_splits.then(SubSplits::default),
        core_only: args.core_only,
    }
}

fn fmt_opt(x: Option<f64>, prec: usize) -> String {
    match x {
        Some(v) => format!("{v:.prec$}"),
        None => "-".to_string(),
    }
}

fn write_table(out: &mut impl Write, r: &Report) -> Result<()> {
    writeln!(
        out,
        "{}  task {}  step {}  labels {}  splits {}",
        r.file.display(),
        r.task,
        r.step.map_or("-".to_string(), |s| s.to_string()),
        r.labels.len(),
        r.splits
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    )?;
    // One nearest-cluster accuracy column per scored split (every split
    // but the fit split, with points), then the classifier's when computed.
    let scored: Vec<&String> = r
        .splits
        .iter()
        .filter(|&(name, &n)| *name != r.fit_split && n > 0)
        .map(|(name, _)| name)
        .collect();
    let with_classifier = r.layers.iter().any(|l| l.classifier_accuracy.is_some());
    // A core-only report has no clusters: its distance columns are the
    // label-hull distances (all points of one label against another's).
    let core_only = r.layers.iter().all(|l| !l.clustered);
    let (min_head, mean_head) = if core_only {
        ("hull min", "hull mean")
    } else {
        ("min dist", "mean dist")
    };
    let mut head = format!(
        "{:>5}  {:>15}  {:>9}  {:>9}  {:>9}",
        "layer", "clusters/labels", min_head, mean_head, "scale"
    );
    for name in &scored {
        head += &format!("  {:>8}", format!("acc {name}"));
    }
    if with_classifier {
        for name in &scored {
            head += &format!("  {:>13}", format!("mlp {name}"));
        }
    }
    head += &format!("  {:>14}  {:>7}", "train/test sim", "seconds");
    writeln!(out, "{head}")?;
    for l in &r.layers {
        let source = if core_only {
            &l.label_hull_distance
        } else {
            &l.label_distance
        };
        let ds: Vec<f64> = source.iter().map(|t| t.2).collect();
        let min = ds.iter().copied().reduce(f64::min);
        let mean = (!ds.is_empty()).then(|| ds.iter().sum::<f64>() / ds.len() as f64);
        let clusters = if l.clustered {
            l.clusters.to_string()
        } else {
            "-".to_string()
        };
        let mut row = format!(
            "{:>5}  {:>15}  {:>9}  {:>9}  {:>9.3}",
            l.layer,
            format!("{clusters}/{}", l.labels_present),
            fmt_opt(min, 3),
            fmt_opt(mean, 3),
            l.scale,
        );
        for name in &scored {
            let a = l.accuracy.get(*name);
            let width = 8.max(name.len() + 4);
            row += &format!(
                "  {:>width$}",
                a.map_or("-".to_string(), |a| format!("{:.2}%", a * 100.0))
            );
        }
        if with_classifier {
            for name in &scored {
                let a = l.classifier_accuracy.as_ref().and_then(|c| c.get(*name));
                let width = 13.max(name.len() + 4);
                row += &format!(
                    "  {:>width$}",
                    a.map_or("-".to_string(), |a| format!(
                        "{:.2}±{:.2}%",
                        a.mean * 100.0,
                        a.std * 100.0
                    ))
                );
            }
        }
        row += &format!(
            "  {:>14}  {:>7.2}",
            fmt_opt(l.similarity.get("train_test").copied().flatten(), 3),
            l.seconds
        );
        writeln!(out, "{row}")?;
    }
    writeln!(out, "total {:.2} s", r.seconds)?;
    Ok(())
}
