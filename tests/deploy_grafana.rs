//! The shipped Grafana dashboard, checked offline (Grafana itself cannot be
//! installed here): it parses, its uids and panel ids are unique, it has a
//! datasource variable that every panel and query uses, every panel has
//! queries, every variable a query uses is defined, and every metric a
//! query names exists in probewatch's exposition. `tests/prometheus_live.rs`
//! runs the same queries against a real Prometheus.

#[allow(dead_code)] // shared with tests/prometheus_live.rs
#[path = "common/grafana.rs"]
mod grafana;

use std::collections::{BTreeSet, HashSet};

use metrics::{LabelSnapshot, LayerSnapshot, Metrics, RunSnapshot};

/// Every name a query may select from the exposition when every family has
/// a series: gauges by name, counters with `_total`, histograms as
/// `_bucket`, `_sum`, `_count`.
fn exposed_names() -> BTreeSet<String> {
    let label = |name: &str| LabelSnapshot {
        label: name.to_owned(),
        min_distance: Some(1.0),
        min_distance_normalized: Some(0.5),
        min_distance_normalized_best: Some(0.6),
        min_distance_baseline: Some(2.0),
        change_ratio: Some(-0.1),
        clusters: Some(1),
        centroid_movement: Some(0.1),
        hull_min_distance: Some(1.0),
        hull_min_distance_normalized: Some(0.5),
        hull_min_distance_normalized_baseline: Some(0.5),
    };
    let m = Metrics::new();
    m.publish(RunSnapshot {
        run: "r".to_owned(),
        step: 1,
        timestamp_seconds: 1.7e9,
        layers: vec![LayerSnapshot {
            task: "t".to_owned(),
            layer: 1,
            clusters: Some(2),
            labels: 2,
            clusters_baseline: Some(2),
            scale: 1.0,
            label_stats: vec![label("A"), label("B")],
            similarity_baseline: Some(1.0),
            similarity_previous: Some(1.0),
            similarity_test: Some(1.0),
            accuracy: vec![("test".to_owned(), 1.0)],
            classifier_accuracy: vec![("test".to_owned(), 0.9, 0.01)],
            labels_increased: Some(0),
            labels_decreased: Some(0),
            label_pairs: Some(vec![("A".to_owned(), "B".to_owned(), 1.0)]),
            hull_similarity_baseline: Some(1.0),
            hull_similarity_previous: Some(1.0),
            hull_similarity_test: Some(1.0),
            stage_steps: vec![("clusters".to_owned(), 1)],
        }],
    });
    m.checkpoint_analyzed("r", 1.0);
    m.checkpoint_failed("r", "io");
    m.stage_outcome("r", "clusters", "done", Some(1.0));
    m.set_late_pending("r", 0);
    let text = m.encode().expect("encodes");
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("TYPE line");
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

#[test]
fn dashboard_ids_are_unique_and_it_has_a_datasource_variable() {
    let d = grafana::dashboard();
    let uid = d["uid"].as_str().expect("the dashboard has a uid");
    assert!(!uid.is_empty() && uid.len() <= 40, "uid {uid:?}");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    let mut ids = HashSet::new();
    for p in grafana::panels(&d) {
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel without id: {p}"));
        assert!(ids.insert(id), "panel id {id} used twice");
        assert!(
            p["title"].as_str().is_some_and(|t| !t.is_empty()),
            "panel {id} has no title"
        );
        let grid = &p["gridPos"];
        for k in ["x", "y", "w", "h"] {
            assert!(grid[k].is_u64(), "panel {id}: gridPos.{k}");
        }
        if let Some(pid) = p["uid"].as_str() {
            assert_ne!(pid, uid, "panel {id} reuses the dashboard's uid");
        }
    }
    let vars = grafana::variables(&d);
    let names: Vec<&str> = vars.iter().map(|(n, _, _)| n.as_str()).collect();
    let unique: HashSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "variables {names:?}");
    let ds = vars
        .iter()
        .find(|(_, kind, _)| kind == "datasource")
        .expect("a datasource variable");
    assert_eq!(ds.2, "prometheus", "the datasource variable's type");
    for needed in ["run", "task", "layer"] {
        let v = vars
            .iter()
            .find(|(n, _, _)| n == needed)
            .unwrap_or_else(|| panic!("no `{needed}` variable"));
        assert_eq!(v.1, "query", "{needed}");
        assert!(v.2.starts_with("label_values("), "{needed}: {}", v.2);
    }
    // Every panel and query reads from the datasource variable, so one
    // dashboard serves any Prometheus.
    let ds_ref = format!("${{{}}}", ds.0);
    let var_ds = |v: &serde_json::Value| v["datasource"]["uid"] == ds_ref.as_str();
    for p in grafana::panels(&d) {
        if p["type"] == "row" {
            continue;
        }
        assert!(
            var_ds(p),
            "panel {}: datasource {}",
            p["title"],
            p["datasource"]
        );
        for t in p["targets"].as_array().into_iter().flatten() {
            assert!(var_ds(t), "panel {}: a query's datasource", p["title"]);
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            assert!(var_ds(v), "variable {}: datasource", v["name"]);
        }
    }
}

#[test]
fn every_panel_has_queries_over_defined_variables() {
    let d = grafana::dashboard();
    let defined: BTreeSet<String> = grafana::variables(&d)
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    for p in grafana::panels(&d) {
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        let refs: HashSet<&str> = targets.iter().filter_map(|t| t["refId"].as_str()).collect();
        assert_eq!(refs.len(), targets.len(), "panel {}: refIds", p["title"]);
    }
    let queries = grafana::panel_queries(&d);
    assert!(queries.len() >= 20, "{} queries", queries.len());
    for q in &queries {
        assert!(!q.expr.trim().is_empty(), "{} {}: empty", q.panel, q.ref_id);
        let used = grafana::used_variables(&q.expr);
        let undefined: Vec<_> = used.difference(&defined).collect();
        assert!(undefined.is_empty(), "{}: {undefined:?} undefined", q.panel);
    }
    for (name, _, query) in grafana::variables(&d) {
        let used = grafana::used_variables(&query);
        assert!(!used.contains(&name), "variable {name} uses itself");
    }
}

#[test]
fn every_query_names_only_exposed_metrics() {
    let d = grafana::dashboard();
    let exposed = exposed_names();
    let mut used = BTreeSet::new();
    let var_queries = grafana::variables(&d).into_iter().map(|(_, _, q)| q);
    let panel_queries = grafana::panel_queries(&d).into_iter().map(|q| q.expr);
    for expr in var_queries.chain(panel_queries) {
        for m in grafana::probewatch_metrics(&expr) {
            assert!(exposed.contains(&m), "{m} (in `{expr}`) is not exposed");
            used.insert(m);
        }
    }
    // What the issue asks the dashboard to show.
    for needed in [
        "probewatch_label_min_distance_normalized",
        "probewatch_checkpoint_step",
        "probewatch_clusters",
        "probewatch_labels",
        "probewatch_centroid_movement",
        "probewatch_spatial_similarity",
        "probewatch_probe_accuracy",
        "probewatch_queue_depth",
        "probewatch_checkpoints_failed_total",
        "probewatch_analysis_duration_seconds_bucket",
    ] {
        assert!(used.contains(needed), "no panel shows {needed}");
    }
}

#[test]
fn the_trend_panel_plots_distances_against_the_training_step() {
    let d = grafana::dashboard();
    let trend = grafana::panels(&d)
        .into_iter()
        .find(|p| p["type"] == "trend")
        .expect("a Trend panel");
    let x = trend["options"]["xField"].as_str().expect("xField");
    let targets = trend["targets"].as_array().unwrap();
    let step = targets
        .iter()
        .find(|t| t["legendFormat"] == x)
        .unwrap_or_else(|| panic!("no query named {x:?} for the x axis"));
    assert!(
        grafana::probewatch_metrics(step["expr"].as_str().unwrap())
            .contains("probewatch_checkpoint_step"),
        "the x axis is not probewatch_checkpoint_step"
    );
    let joined = trend["transformations"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["id"] == "joinByField" && t["options"]["byField"] == "Time");
    assert!(joined, "the step series is not joined on time");
    assert!(
        targets
            .iter()
            .any(|t| grafana::probewatch_metrics(t["expr"].as_str().unwrap())
                .contains("probewatch_label_min_distance_normalized")),
        "the Trend panel does not plot the distances"
    );
}

#[test]
fn helpers_find_variables_and_metrics() {
    let e =
        r#"rate(probewatch_x_bucket{run="$run",task=~"${task}"}[$__rate_interval]) / probewatch_y"#;
    assert_eq!(
        grafana::used_variables(e),
        ["run", "task"].map(String::from).into_iter().collect()
    );
    assert_eq!(
        grafana::probewatch_metrics(e),
        ["probewatch_x_bucket", "probewatch_y"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    assert_eq!(
        grafana::substitute(e, &[("run", "a"), ("task", "t")], "1m"),
        r#"rate(probewatch_x_bucket{run="a",task=~"t"}[1m]) / probewatch_y"#
    );
}
