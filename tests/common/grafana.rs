//! Reading the shipped Grafana dashboard (`deploy/grafana/dashboards/
//! probewatch.json`) the way Grafana would use it: its variables, every
//! panel's queries, and the queries with the variables substituted, so a
//! test can run them against a real Prometheus.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

/// The dashboard file.
pub fn dashboard_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/dashboards/probewatch.json"
    ))
}

/// The dashboard, parsed.
pub fn dashboard() -> Value {
    let path = dashboard_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel, rows' nested panels included.
pub fn panels(d: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            if let Some(inner) = p.get("panels") {
                walk(inner, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    out
}

/// One query of one panel.
#[allow(dead_code)] // not every test binary reads every field
#[derive(Debug, Clone)]
pub struct PanelQuery {
    /// The panel's title.
    pub panel: String,
    /// The query's refId.
    pub ref_id: String,
    /// The PromQL expression, as written (with `$variables`).
    pub expr: String,
    /// Whether Grafana runs it as an instant query.
    pub instant: bool,
}

/// The queries of every panel that is not a row.
pub fn panel_queries(d: &Value) -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for p in panels(d) {
        if p["type"] == "row" {
            continue;
        }
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(PanelQuery {
                panel: p["title"].as_str().unwrap_or_default().to_owned(),
                ref_id: t["refId"].as_str().unwrap_or_default().to_owned(),
                expr: t["expr"].as_str().unwrap_or_default().to_owned(),
                instant: t["instant"].as_bool().unwrap_or(false),
            });
        }
    }
    out
}

/// The dashboard's variables: (name, type, query text).
pub fn variables(d: &Value) -> Vec<(String, String, String)> {
    d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let query = match &v["query"] {
                Value::String(s) => s.clone(),
                q => q["query"].as_str().unwrap_or_default().to_owned(),
            };
            (
                v["name"].as_str().unwrap_or_default().to_owned(),
                v["type"].as_str().unwrap_or_default().to_owned(),
                query,
            )
        })
        .collect()
}

/// `expr` with Grafana's variables replaced: `$name` / `${name}` from
/// `vars`, and the built-in intervals (`$__rate_interval`, `$__interval`,
/// `$__range`) by `interval`.
pub fn substitute(expr: &str, vars: &[(&str, &str)], interval: &str) -> String {
    let mut out = expr.to_owned();
    for builtin in ["$__rate_interval", "$__interval", "$__range"] {
        out = out.replace(builtin, interval);
    }
    // Longest names first, so `$run` does not eat `$runs`.
    let mut vars = vars.to_vec();
    vars.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    for (name, value) in vars {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    out
}

/// The `$variables` an expression uses (built-ins excluded).
pub fn used_variables(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let mut j = i + 1;
            let braced = j < b.len() && b[j] == b'{';
            if braced {
                j += 1;
            }
            let start = j;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            let name = &expr[start..j];
            if !name.is_empty() && !name.starts_with("__") {
                out.insert(name.to_owned());
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// Metric names of probewatch an expression selects (identifiers starting
/// with `probewatch_` outside quoted strings).
pub fn probewatch_metrics(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_string = false;
    let mut word = String::new();
    let mut flush = |w: &mut String| {
        if w.starts_with("probewatch_") {
            out.insert(std::mem::take(w));
        } else {
            w.clear();
        }
    };
    for c in expr.chars() {
        if c == '"' {
            in_string = !in_string;
            flush(&mut word);
            continue;
        }
        if !in_string && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            word.push(c);
        } else {
            flush(&mut word);
        }
    }
    flush(&mut word);
    out
}
