//! The "Metrics" table of docs/metrics.md is the contract: it must list exactly the
//! families `Metrics::encode()` exposes once every optional field is filled,
//! with the same type, labels and help text.

use std::collections::{BTreeMap, BTreeSet};

use metrics::{LabelSnapshot, LayerSnapshot, Metrics, RunSnapshot};

/// One documented or exposed family.
#[derive(Debug, PartialEq)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
    help: String,
}

/// The rows of the table under `## Metrics` in docs/metrics.md, by metric name.
fn readme_table() -> BTreeMap<String, Family> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
    let readme = std::fs::read_to_string(path).expect("docs/metrics.md is readable");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Metrics\n"))
        .expect("docs/metrics.md has a `## Metrics` section");
    let mut table = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 4, "row with {} cells: {line}", cells.len());
        let unquote = |s: &str| s.trim().trim_matches('`').to_owned();
        let name = unquote(cells[0]);
        let family = Family {
            kind: cells[1].to_owned(),
            // `—`: a family without labels.
            labels: cells[2]
                .split(',')
                .map(unquote)
                .filter(|l| !l.is_empty() && l != "—")
                .collect(),
            help: cells[3].to_owned(),
        };
        assert!(
            table.insert(name.clone(), family).is_none(),
            "{name} listed twice"
        );
    }
    assert!(!table.is_empty(), "no rows in the Metrics table");
    table
}

/// A registry in which every family has at least one series.
fn everything() -> Metrics {
    let label = |name: &str| LabelSnapshot {
        label: name.to_owned(),
        min_distance: Some(1.5),
        min_distance_normalized: Some(0.5),
        min_distance_normalized_best: Some(0.6),
        min_distance_baseline: Some(2.0),
        change_ratio: Some(-0.25),
        clusters: Some(1),
        centroid_movement: Some(0.1),
        hull_min_distance: Some(1.2),
        hull_min_distance_normalized: Some(0.4),
        hull_min_distance_normalized_baseline: Some(0.45),
    };
    let m = Metrics::new();
    m.publish(RunSnapshot {
        run: "run".to_owned(),
        step: 100,
        timestamp_seconds: 1.7e9,
        layers: vec![LayerSnapshot {
            task: "upos".to_owned(),
            layer: 6,
            clusters: Some(2),
            labels: 2,
            clusters_baseline: Some(2),
            scale: 3.0,
            label_stats: vec![label("NOUN"), label("VERB")],
            similarity_baseline: Some(0.9),
            similarity_previous: Some(0.99),
            similarity_test: Some(0.8),
            accuracy: vec![("test".to_owned(), 0.7)],
            classifier_accuracy: vec![("test".to_owned(), 0.8, 0.01)],
            labels_increased: Some(1),
            labels_decreased: Some(1),
            label_pairs: Some(vec![("NOUN".to_owned(), "VERB".to_owned(), 1.5)]),
            hull_similarity_baseline: Some(0.8),
            hull_similarity_previous: Some(0.98),
            hull_similarity_test: Some(0.7),
            stage_steps: vec![("clusters".to_owned(), 100)],
        }],
    });
    m.checkpoint_analyzed("run", 2.0);
    m.checkpoint_failed("run", "corrupt");
    m.checkpoint_skipped("run", 1);
    m.set_queue_depth("run", 1);
    m.set_late_pending("run", 1);
    m.stage_started("run", "clusters", 100, 7, 1.7e9);
    m.stage_outcome("run", "core", "done", Some(3.0));
    m
}

/// The families of the exposition, by the name a query uses (counters with
/// their `_total`): help from the independent parser, type from `# TYPE`,
/// label names from the samples.
fn exposed(text: &str) -> BTreeMap<String, Family> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("the exposition parses");
    let mut families = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (family, kind) = rest.split_once(' ').expect("TYPE line has a type");
        let help = scrape
            .docs
            .get(family)
            .unwrap_or_else(|| panic!("{family} has no HELP"))
            .clone();
        let name = match kind {
            "counter" => format!("{family}_total"),
            _ => family.to_owned(),
        };
        // prometheus-parse reports a histogram under its family name, its
        // `le` label folded into the buckets.
        let samples: Vec<_> = scrape.samples.iter().filter(|s| s.metric == name).collect();
        assert!(!samples.is_empty(), "{name}: no samples");
        let labels: BTreeSet<String> = samples
            .iter()
            .flat_map(|s| s.labels.keys().cloned())
            .collect();
        let family = Family {
            kind: kind.to_owned(),
            labels,
            help,
        };
        assert!(
            families.insert(name.clone(), family).is_none(),
            "{name} twice"
        );
    }
    families
}

#[test]
fn readme_metrics_table_matches_the_exposition_exactly() {
    let text = everything().encode().expect("encodes");
    let exposed = exposed(&text);
    let documented = readme_table();
    let only_exposed: Vec<_> = exposed
        .keys()
        .filter(|k| !documented.contains_key(*k))
        .collect();
    let only_documented: Vec<_> = documented
        .keys()
        .filter(|k| !exposed.contains_key(*k))
        .collect();
    assert!(
        only_exposed.is_empty() && only_documented.is_empty(),
        "not in docs/metrics.md: {only_exposed:?}; not exposed: {only_documented:?}"
    );
    for (name, doc) in &documented {
        assert_eq!(Some(doc), exposed.get(name), "{name}");
    }
}

#[test]
fn every_help_text_is_one_sentence_with_the_metric_prefix() {
    for (name, doc) in readme_table() {
        assert!(name.starts_with("probewatch_"), "{name}");
        assert!(doc.help.ends_with('.'), "{name}: {}", doc.help);
        assert_eq!(doc.help.matches(". ").count(), 0, "{name}: {}", doc.help);
    }
}
