//! A `/metrics` exposition parsed with the independent `prometheus-parse`
//! (not the daemon's own code), and the lookups the tests and benchmarks
//! make: one sample, a counter that may not exist yet, a sum over a family,
//! a run's per-checkpoint series, the failures by kind.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result, ensure};

/// A parsed exposition.
pub struct Scrape {
    /// The text as served.
    pub text: String,
    parsed: prometheus_parse::Scrape,
}

/// A sample's value when it is a single number.
fn number(v: &prometheus_parse::Value) -> Option<f64> {
    match *v {
        prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Untyped(v) => Some(v),
        _ => None,
    }
}

impl Scrape {
    /// Parses OpenMetrics text with `prometheus-parse`; an error when it
    /// does not end with `# EOF` or does not parse.
    pub fn try_parse(text: &str) -> Result<Scrape> {
        ensure!(text.ends_with("# EOF\n"), "exposition without # EOF");
        let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .context("the exposition parses")?;
        Ok(Scrape {
            text: text.to_owned(),
            parsed,
        })
    }

    /// [`Scrape::try_parse`] for tests: panics on a bad exposition.
    pub fn parse(text: &str) -> Scrape {
        Scrape::try_parse(text).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Samples named `name` whose labels include every pair of `labels`.
    pub fn samples(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&prometheus_parse::Sample> {
        self.parsed
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .collect()
    }

    /// The value of the one sample matching; `None` when there is none;
    /// panics when there are several.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = self.samples(name, labels);
        assert!(found.len() <= 1, "{name} {labels:?}: {found:?}");
        found.first().map(|s| {
            number(&s.value).unwrap_or_else(|| panic!("{name}: unexpected value {:?}", s.value))
        })
    }

    /// Like [`Scrape::get`] but the sample must exist.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in:\n{}", self.text))
    }

    /// A counter's value, 0 when the series does not exist yet.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// The sum of every numeric sample matching (0 when there is none):
    /// a family over one of its labels, e.g. failures of every kind.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples(name, labels)
            .iter()
            .filter_map(|s| number(&s.value))
            .sum()
    }

    /// Whether no run has late stages running or waiting.
    pub fn late_settled(&self) -> bool {
        self.parsed
            .samples
            .iter()
            .filter(|s| s.metric == "probewatch_late_stages_pending")
            .all(|s| matches!(s.value, prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) if v == 0.0))
    }

    /// Every sample of `run` that describes its newest checkpoint (not the
    /// process counters, the duration histogram or the queue depth), keyed
    /// by metric name and sorted labels.
    pub fn checkpoint_series(&self, run: &str) -> BTreeMap<String, f64> {
        const PROCESS: [&str; 10] = [
            "probewatch_checkpoints_analyzed_total",
            "probewatch_checkpoints_failed_total",
            "probewatch_checkpoints_skipped_total",
            "probewatch_analysis_",
            "probewatch_queue_depth",
            "probewatch_stage_duration_seconds",
            "probewatch_stage_outcomes_total",
            "probewatch_late_stages_pending",
            "probewatch_analysis_step",
            "probewatch_analysis_started_timestamp_seconds",
        ];
        self.parsed
            .samples
            .iter()
            .filter(|s| {
                s.labels.get("run") == Some(run) && !PROCESS.iter().any(|p| s.metric.starts_with(p))
            })
            .map(|s| {
                let labels: BTreeMap<&String, &String> = s.labels.iter().collect();
                let v = match s.value {
                    prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                    ref other => panic!("{}: unexpected value {other:?}", s.metric),
                };
                (format!("{}{labels:?}", s.metric), v)
            })
            .collect()
    }

    /// `probewatch_checkpoints_failed_total` of `run` by kind.
    pub fn failures(&self, run: &str) -> HashMap<String, f64> {
        self.samples("probewatch_checkpoints_failed_total", &[("run", run)])
            .into_iter()
            .map(|s| {
                let v = match s.value {
                    prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                    ref other => panic!("failed_total: unexpected value {other:?}"),
                };
                (s.labels.get("kind").unwrap_or_default().to_owned(), v)
            })
            .filter(|(_, v)| *v > 0.0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let s = Scrape::parse(
            "# TYPE probewatch_checkpoints_failed counter\n\
             probewatch_checkpoints_failed_total{run=\"a\",kind=\"format\"} 2\n\
             probewatch_checkpoints_failed_total{run=\"a\",kind=\"io\"} 1\n\
             probewatch_checkpoints_failed_total{run=\"b\",kind=\"io\"} 7\n\
             # TYPE probewatch_checkpoint_step gauge\n\
             probewatch_checkpoint_step{run=\"a\"} 40\n\
             # EOF\n",
        );
        assert_eq!(
            s.sum("probewatch_checkpoints_failed_total", &[("run", "a")]),
            3.0
        );
        assert_eq!(s.value("probewatch_checkpoint_step", &[("run", "a")]), 40.0);
        assert_eq!(
            s.counter("probewatch_checkpoint_step", &[("run", "b")]),
            0.0
        );
        assert_eq!(s.failures("b")["io"], 7.0);
        assert!(Scrape::try_parse("a 1\n").is_err());
    }
}
