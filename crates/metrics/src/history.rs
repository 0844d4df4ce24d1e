//! The stored history of runs as one OpenMetrics document for backfilling
//! Prometheus ([`encode_history`], for `promtool tsdb
//! create-blocks-from openmetrics`): the same families, names, help texts
//! and labels as the live exposition, each sample with its time.
//!
//! Deliberately not here: reading the history (the caller turns stored
//! checkpoints into snapshots) and the process counters, which describe a
//! process rather than the stored history.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::collector::{Value, gather};
use crate::families::{Fam, SNAPSHOT_FAMILIES};
use crate::snapshot::RunSnapshot;

/// The history of runs as an OpenMetrics document for backfilling
/// (`promtool tsdb create-blocks-from openmetrics`): every snapshot family
/// of the live exposition except `probewatch_build_info`, with the same
/// names, help texts and labels, each sample carrying the time given with
/// its snapshot (seconds since the Unix epoch, kept to the millisecond).
///
/// Families come once each, every series' samples in increasing time
/// order (as promtool requires); two snapshots of a run at the same
/// millisecond would give a series two samples at one time, so a later one
/// is moved 1 ms past the one before. Process counters, the duration
/// histogram and the queue depth are left out: they describe a process,
/// not the stored history. Ends with `# EOF`.
pub fn encode_history(points: &[(f64, RunSnapshot)]) -> String {
    use std::fmt::Write as _;
    // Per family: series (rendered label set) → (time in ms, value text).
    let mut families: Vec<BTreeMap<String, Vec<(i64, String)>>> =
        SNAPSHOT_FAMILIES.iter().map(|_| BTreeMap::new()).collect();
    for (seconds, snapshot) in points {
        let ms = (seconds * 1000.0).round() as i64;
        let one = [Arc::new(snapshot.clone())];
        for (i, samples) in gather(&one).into_iter().enumerate() {
            if SNAPSHOT_FAMILIES[i] == Fam::BuildInfo {
                continue;
            }
            for s in samples {
                let mut labels = String::new();
                for (k, v) in &s.labels {
                    let sep = if labels.is_empty() { "" } else { "," };
                    let _ = write!(labels, "{sep}{k}=\"{}\"", escape_label_value(v));
                }
                let value = match s.value {
                    Value::Count(v) => v.to_string(),
                    Value::Real(v) => format!("{v:?}"),
                };
                families[i].entry(labels).or_default().push((ms, value));
            }
        }
    }
    let mut out = String::new();
    for (fam, series) in SNAPSHOT_FAMILIES.iter().zip(families) {
        if series.is_empty() {
            continue;
        }
        let (name, _, help) = fam.spec();
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(out, "# HELP {name} {help}");
        for (labels, mut points) in series {
            points.sort_by_key(|(ms, _)| *ms);
            let mut last: Option<i64> = None;
            for (ms, value) in points {
                let ms = match last {
                    Some(l) if ms <= l => l + 1,
                    _ => ms,
                };
                last = Some(ms);
                let sign = if ms < 0 { "-" } else { "" };
                let abs = ms.unsigned_abs();
                let _ = writeln!(
                    out,
                    "{name}{{{labels}}} {value} {sign}{}.{:03}",
                    abs / 1000,
                    abs % 1000
                );
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// A label value escaped as the exposition formats require (`\\`, `\"`,
/// `\n`).
fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}
