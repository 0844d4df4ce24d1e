//! The benchmark harness behind `probewatch bench`: fixed cases on the
//! shared real dump and on synthetic layers, each run in a child process of
//! the same binary so its wall time and peak resident memory (`VmHWM`) are
//! its own.
//!
//! Speed targets are checked here, never by timed assertions in tests. The
//! harness measures; it does not judge, retry or average (run it again for a
//! second sample).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::analysis::{AnalysisOptions, analyse_dump};
use crate::geometry::hull::{HullParams, PointSet, Query, hull_distance};
use crate::geometry::measures::{LayerInput, MeasureParams, measure_layer};
use crate::source::dump::ActivationDump;
use crate::synth::{Variant, generate};

/// Names of the cases, in the order they run by default.
pub const CASES: &[&str] = &[
    "psrole-all-layers",
    "psrole-l6-label-distances",
    "synthetic-separable",
    "synthetic-separable-isotropic",
    "synthetic-overlapping",
];

const PSROLE: &str = "streusle-ps_role-minilm.safetensors";

/// One measured case.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseResult {
    /// Case name.
    pub case: String,
    /// Wall-clock seconds of the measured part (input loading excluded,
    /// except for `psrole-all-layers`, which includes reading the dump).
    pub seconds: f64,
    /// Peak resident set size of the process, MiB.
    pub peak_rss_mib: f64,
    /// What was computed (sizes, clusters, accuracy).
    pub detail: String,
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Runs one case in this process.
pub fn run_case(name: &str, quick: bool, data: &Path, points: Option<usize>) -> Result<CaseResult> {
    let (seconds, detail) = match name {
        "psrole-all-layers" => {
            let path = data.join(PSROLE);
            let t = Instant::now();
            let dump = ActivationDump::open(&path)
                .with_context(|| format!("the shared dumps are needed: {}", path.display()))?;
            let r = analyse_dump(&dump, &AnalysisOptions::default(), &|_| {})?;
            let s = t.elapsed().as_secs_f64();
            let d = r
                .layers
                .iter()
                .map(|l| {
                    format!(
                        "L{}:{}cl/{:.1}%",
                        l.layer,
                        l.clusters,
                        100.0 * l.accuracy.get("test").copied().unwrap_or(f64::NAN)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ");
            (s, d)
        }
        "psrole-l6-label-distances" => {
            let path = data.join(PSROLE);
            let dump = ActivationDump::open(&path)
                .with_context(|| format!("the shared dumps are needed: {}", path.display()))?;
            let task = dump.task(None)?;
            let m = dump.layer(task, 6)?;
            let x = m.as_slice().context("layout")?;
            let train = task.train_indices(dump.splits());
            let mut by_label: Vec<Vec<usize>> = vec![Vec::new(); task.label_names.len()];
            for &r in &train {
                by_label[task.labels[r] as usize].push(r);
            }
            let present: Vec<&Vec<usize>> = by_label.iter().filter(|v| !v.is_empty()).collect();
            let pairs: Vec<(usize, usize)> = (0..present.len())
                .flat_map(|a| (a + 1..present.len()).map(move |b| (a, b)))
                .collect();
            let params = HullParams::default();
            let t = Instant::now();
            use rayon::prelude::*;
            let ds: Vec<f64> = pairs
                .par_iter()
                .map(|&(a, b)| {
                    hull_distance(
                        PointSet::subset(x, task.dim, present[a]),
                        PointSet::subset(x, task.dim, present[b]),
                        Query::Distance,
                        &params,
                        None,
                    )
                    .distance()
                })
                .collect();
            let s = t.elapsed().as_secs_f64();
            let mean = ds.iter().sum::<f64>() / ds.len() as f64;
            let min = ds.iter().copied().fold(f64::INFINITY, f64::min);
            (
                s,
                format!("{} label pairs, min {:.4} mean {:.4}", ds.len(), min, mean),
            )
        }
        "synthetic-separable" | "synthetic-separable-isotropic" | "synthetic-overlapping" => {
            let variant = match name {
                "synthetic-separable" => Variant::Separable,
                "synthetic-separable-isotropic" => Variant::SeparableIsotropic,
                _ => Variant::Overlapping,
            };
            let n = points.unwrap_or(if quick { 2_000 } else { 20_000 });
            let test = 0;
            let layer = generate(n, test, 768, 17, variant, 20_261_126);
            let names = vec!["train".to_string(), "test".to_string()];
            let t = Instant::now();
            let r = measure_layer(
                LayerInput {
                    data: &layer.data,
                    dim: layer.dim,
                    labels: &layer.labels,
                    n_labels: layer.n_labels,
                    split: &layer.split,
                    split_names: &names,
                },
                &MeasureParams::default(),
            );
            let s = t.elapsed().as_secs_f64();
            (
                s,
                format!(
                    "{n} train{} points, d=768, 17 labels: {} clusters ({} labels resolved by the shortcut), {} merges, {} hull queries{}",
                    if test > 0 {
                        format!(" + {test} test")
                    } else {
                        String::new()
                    },
                    r.clusters,
                    r.cluster_stats.resolved_labels,
                    r.cluster_stats.merges,
                    r.cluster_stats.hull_queries,
                    r.accuracy
                        .get("test")
                        .map_or(String::new(), |a| format!(", test acc {:.1}%", 100.0 * a)),
                ),
            )
        }
        other => bail!("unknown case '{other}' (cases: {})", CASES.join(", ")),
    };
    Ok(CaseResult {
        case: name.to_string(),
        seconds,
        peak_rss_mib: peak_rss_mib(),
        detail,
    })
}

/// Runs one case in a child process of `exe` and parses its result line.
pub fn run_in_child(
    exe: &Path,
    name: &str,
    quick: bool,
    data: &Path,
    threads: Option<usize>,
    points: Option<usize>,
    timeout: std::time::Duration,
) -> Result<CaseResult> {
    let mut cmd = Command::new(exe);
    if let Some(t) = threads {
        cmd.arg("--threads").arg(t.to_string());
    }
    cmd.arg("bench")
        .arg("--case")
        .arg(name)
        .arg("--data")
        .arg(data);
    if quick {
        cmd.arg("--quick");
    }
    if let Some(p) = points {
        cmd.arg("--points").arg(p.to_string());
    }
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().context("spawning the benchmark child")?;
    let start = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if start.elapsed() >= timeout {
            child.kill().ok();
            child.wait().ok();
            return Ok(CaseResult {
                case: name.to_string(),
                seconds: f64::NAN,
                peak_rss_mib: f64::NAN,
                detail: format!("did not finish within {} s (killed)", timeout.as_secs()),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "child failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).context("parsing the child's result")
}

/// Prints the table header with the machine facts.
pub fn print_header(out: &mut impl Write, quick: bool, threads: Option<usize>) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    writeln!(
        out,
        "probewatch {} bench{}: {} cores available, threads {}",
        env!("CARGO_PKG_VERSION"),
        if quick { " --quick" } else { "" },
        cores,
        threads.map_or("all".to_string(), |t| t.to_string())
    )?;
    writeln!(
        out,
        "| case | seconds | peak RSS (MiB) | what |\n|---|---:|---:|---|"
    )?;
    Ok(())
}

/// Prints one table row.
pub fn print_row(out: &mut impl Write, r: &CaseResult) -> Result<()> {
    writeln!(
        out,
        "| {} | {:.3} | {:.0} | {} |",
        r.case, r.seconds, r.peak_rss_mib, r.detail
    )?;
    out.flush()?;
    Ok(())
}
