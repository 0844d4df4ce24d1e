//! The report page: a header naming the run, task and checkpoints, one
//! section per figure (title, one-line caption saying how to read it, the
//! inline SVG or a note saying what it needs), the layer table and the CSS.
//! Pure string building from a [`History`]; no script, nothing fetched.

use std::fmt::Write as _;

use super::ReportOptions;
use super::figures::{
    self, COLUMNS, History, centroid_paths, closest_labels, diff_panels, min_distance_figure,
    movement_boxes, similarity_lines, table,
};
use super::svg::{self, esc};

/// Labels followed in the centroid-path figure.
const PATH_LABELS: usize = 5;
/// Labels named in each panel of the difference-vector figure.
const NAMED_DIFFS: usize = 12;

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d2329;margin:0;background:#f6f7f9}
main{max-width:1120px;margin:0 auto;padding:18px 28px 40px}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.12rem;margin:0 0 .2rem}
code{font-size:.95em;background:#eceff3;padding:0 .25em;border-radius:3px}
.meta{color:#4a5561;margin:.3rem 0}.nav a{margin-right:.6em}
section{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:14px 18px;margin:16px 0}
.caption{color:#4a5561;margin:.1rem 0 .6rem;font-size:.93rem}
.needs{color:#8a5a00;background:#fff8e6;border:1px solid #f0dca8;padding:8px 12px;border-radius:4px}
svg.figure{max-width:100%;height:auto;display:block}
svg text{font-family:inherit;font-size:12px;fill:#1d2329}
svg .tick{font-size:11px;fill:#56606b}svg .label{font-size:12.5px}
svg .panel-title{font-size:13px;font-weight:600}svg .note{font-size:11px;fill:#777}
svg .grid line{stroke:#edf0f3}svg .axis line{stroke:#4a5561}
svg .marker{stroke:#9aa3ad;stroke-dasharray:4 3}
svg .line{fill:none;stroke-linejoin:round;stroke-linecap:round}
svg .faint{stroke:#8c96a0;stroke-opacity:.35;stroke-width:1}
svg .grew,svg .shrank{stroke-width:2.4}svg .layer{stroke-width:1.6;stroke-opacity:.9}
svg .end{font-size:11.5px;font-weight:600}
svg .trail{fill:none;stroke-width:2;stroke-opacity:.85}
svg circle.start{fill:#fff;stroke-width:2}
svg .box rect{fill:#d6e6f5;stroke:#2b5d8a}svg .whisker{stroke:#2b5d8a}
svg .median{stroke:#08306b;stroke-width:2.5}
svg .dot{fill:#0072B2;fill-opacity:.8}svg .name{font-size:10.5px;fill:#333}
svg .origin{stroke:#555;stroke-width:1.5}
table{border-collapse:collapse;font-size:.9rem;width:100%}
th,td{border-bottom:1px solid #e3e7ec;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f0f3f6;font-weight:600}th:first-child,td:first-child{text-align:left}
td.worse{background:#fde4e1;color:#8c1d13}td.worse::after{content:' ▼';font-size:.8em}
.help{color:#4a5561;font-size:.85rem;margin:.5rem 0 0;padding-left:1.2em}
footer{color:#7a838c;font-size:.8rem;text-align:center}
";

fn needs(out: &mut String, what: &str) {
    let _ = write!(out, "<p class=\"needs\">{}</p>", esc(what));
}

fn section(out: &mut String, id: &str, title: &str, caption: &str) {
    let _ = write!(
        out,
        "<section id=\"{id}\"><h2>{}</h2><p class=\"caption\">{}</p>",
        esc(title),
        esc(caption)
    );
}

fn link(task: &str, layer: Option<usize>) -> String {
    let mut q = format!("?task={}", percent(task));
    if let Some(l) = layer {
        let _ = write!(q, "&amp;layer={l}");
    }
    q
}

/// Percent-encodes a query value (task names are `[A-Za-z0-9_.-]` in
/// practice; anything else is encoded).
fn percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The whole report page for `h`.
pub fn render_page(h: &History, opts: &ReportOptions) -> String {
    let mut out = String::with_capacity(256 * 1024);
    out.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    if let Some(s) = opts.refresh_seconds {
        let _ = write!(out, "<meta http-equiv=\"refresh\" content=\"{s}\">");
    }
    let _ = write!(
        out,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>probewatch report: run {}{}</title><style>{CSS}</style></head><body><main>",
        esc(&h.run),
        if h.task.is_empty() {
            String::new()
        } else {
            format!(", task {}", esc(&h.task))
        }
    );
    let _ = write!(out, "<header><h1>Run <code>{}</code>", esc(&h.run));
    if !h.task.is_empty() {
        let _ = write!(out, " · task <code>{}</code>", esc(&h.task));
    }
    out.push_str("</h1><p class=\"meta\">");
    match (h.steps.first(), h.steps.last()) {
        (Some(a), Some(b)) => {
            let _ = write!(
                out,
                "{} analysed checkpoint{} (steps {a} to {b}), {} labels, {} layers; baseline: {}.",
                h.steps.len(),
                if h.steps.len() == 1 { "" } else { "s" },
                h.labels.len(),
                h.latest.len(),
                h.baseline_step
                    .map_or("none set".to_owned(), |s| format!("step {s}"))
            );
        }
        _ => out.push_str("No checkpoint of this run has been analysed yet."),
    }
    if h.failed > 0 {
        let _ = write!(
            out,
            " {} checkpoint{} failed (see the daemon's log and probewatch_checkpoints_failed_total).",
            h.failed,
            if h.failed == 1 { "" } else { "s" }
        );
    }
    if let Some(s) = opts.refresh_seconds {
        let _ = write!(
            out,
            " This page reloads every {s} s while the run is watched."
        );
    }
    out.push_str("</p>");
    if h.tasks.len() > 1 {
        out.push_str("<p class=\"nav\">Tasks: ");
        for t in &h.tasks {
            if *t == h.task {
                let _ = write!(out, "<strong>{}</strong> ", esc(t));
            } else if opts.links {
                let _ = write!(out, "<a href=\"{}\">{}</a> ", link(t, None), esc(t));
            } else {
                let _ = write!(out, "{} ", esc(t));
            }
        }
        if !opts.links {
            out.push_str("(another task: <code>probewatch report --task NAME</code>)");
        }
        out.push_str("</p>");
    }
    out.push_str("</header>");
    if h.steps.is_empty() {
        needs(
            &mut out,
            "The figures appear once the daemon has analysed a checkpoint of this run.",
        );
    } else {
        body(&mut out, h, opts);
    }
    let _ = writeln!(
        out,
        "<footer>probewatch {} · DirectProbe geometry (Zhou &amp; Srikumar, NAACL 2021; ACL 2022)</footer></main></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    out
}

fn body(out: &mut String, h: &History, opts: &ReportOptions) {
    let name = |i: usize| h.label(i);
    let more = "Needs at least two analysed checkpoints; this run has one so far.";
    let single = h.steps.len() < 2;

    // Figure 1: min distance vs step.
    section(
        out,
        "fig-min-distance",
        &format!("Min label distance over training, layer {}", h.focus_layer),
        "Each line is a label's distance to its nearest other label; the three labels whose distance grew most (blue) and least (red) are named with their change. Falling lines are labels that fine-tuning pushes towards another label.",
    );
    match min_distance_figure(h) {
        Some(f) => out.push_str(&svg::min_distance_svg(&f, &name, h.baseline_step)),
        None => needs(out, more),
    }
    if h.latest.len() > 1 {
        out.push_str("<p class=\"nav\">Layer: ");
        for l in &h.latest {
            if l.layer == h.focus_layer {
                let _ = write!(out, "<strong>{}</strong> ", l.layer);
            } else if opts.links {
                let _ = write!(
                    out,
                    "<a href=\"{}\">{}</a> ",
                    link(&h.task, Some(l.layer)),
                    l.layer
                );
            }
        }
        if !opts.links {
            out.push_str("(another layer: <code>probewatch report --layer N</code>)");
        }
        out.push_str("</p>");
    }
    out.push_str("</section>");

    // Figure 2: centroid paths.
    let last = h.paths.last().map(|p| p.layer);
    let chosen = h
        .baseline
        .iter()
        .find(|l| Some(l.layer) == last)
        .or_else(|| h.latest.iter().find(|l| Some(l.layer) == last))
        .map(|l| closest_labels(&l.label_distance, PATH_LABELS))
        .unwrap_or_default();
    section(
        out,
        "fig-centroid-paths",
        "PCA paths of label centroids, first and last layer",
        &format!(
            "The {} labels closest to each other at the baseline (top layer), their centroids followed from the first step (open circle) to the latest (filled), on each layer's two main axes. Paths that converge are labels fine-tuning brings together.",
            chosen.len()
        ),
    );
    let panels: Vec<figures::PathPanel> = h
        .paths
        .iter()
        .filter_map(|s| centroid_paths(s, &chosen))
        .collect();
    if single {
        needs(out, more);
    } else if panels.is_empty() {
        needs(out, "No stored centroids for these layers.");
    } else {
        out.push_str(&svg::paths_svg(&panels, &name));
    }
    out.push_str("</section>");

    // Figure 3: centroid movement by layer.
    section(
        out,
        "fig-movement",
        "Centroid movement by layer (baseline → latest)",
        "One box per layer over the labels: the box spans the middle half of the labels' centroid movement, the bar is the median, the whiskers reach the least and the most moved label. Fine-tuning typically moves higher layers more.",
    );
    let boxes = movement_boxes(&h.latest);
    if single {
        needs(out, more);
    } else if boxes.is_empty() {
        needs(
            out,
            "No comparison with the baseline is stored for the latest checkpoint.",
        );
    } else {
        out.push_str(&svg::movement_svg(&boxes, &name));
    }
    out.push_str("</section>");

    // Figure 4: similarity dynamics.
    section(
        out,
        "fig-similarity",
        "Spatial similarity to the baseline over training, one line per layer",
        "Pearson correlation between each layer's label-distance structure now and at the baseline (1 = the same arrangement of labels). Lines that drop early and far are the layers fine-tuning reshapes most; colour goes from the first layer (dark) to the last (yellow).",
    );
    match similarity_lines(h) {
        Some(lines) => out.push_str(&svg::similarity_svg(&lines, h.baseline_step)),
        None => needs(out, more),
    }
    out.push_str("</section>");

    // Figure 5: PCA of difference vectors.
    section(
        out,
        "fig-diff-pca",
        "Where label centroids moved: first and last layer, same scale",
        "Each dot is one label's centroid displacement (latest − baseline) on that layer's two main axes of displacement; the cross is no movement. Both panels share one scale, so a tight cloud means the layer moved little.",
    );
    match (single, diff_panels(&h.baseline, &h.latest)) {
        (false, Some((panels, half))) => {
            out.push_str(&svg::diff_svg(&panels, half, &name, NAMED_DIFFS))
        }
        (true, _) => needs(out, more),
        (false, None) => needs(
            out,
            "Needs stored centroids at the baseline and at the latest checkpoint.",
        ),
    }
    out.push_str("</section>");

    // The table.
    section(
        out,
        "layer-table",
        "Layers at a glance",
        if h.baseline.is_empty() || single {
            "Values at the latest checkpoint (changes need a baseline and a later checkpoint)."
        } else {
            "Baseline → latest per layer; cells that got worse since the baseline are marked ▼."
        },
    );
    out.push_str("<table><thead><tr><th>layer</th>");
    for c in COLUMNS {
        let _ = write!(out, "<th title=\"{}\">{}</th>", esc(c.help), esc(c.header));
    }
    out.push_str("</tr></thead><tbody>");
    let baseline: &[figures::LayerSummary] = if single { &[] } else { &h.baseline };
    for row in table(baseline, &h.latest) {
        let _ = write!(out, "<tr><td>{}</td>", row.layer);
        for c in &row.cells {
            let _ = write!(
                out,
                "<td{}>{}</td>",
                if c.worse { " class=\"worse\"" } else { "" },
                esc(&c.text)
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table><ul class=\"help\">");
    for c in COLUMNS {
        let _ = write!(out, "<li><b>{}</b>: {}</li>", esc(c.header), esc(c.help));
    }
    out.push_str("</ul></section>");
}

/// The `/report` index: one link per run of the store.
pub fn index_page(runs: &[String]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>probewatch reports</title>\
         <style>{CSS}</style></head><body><main><h1>probewatch reports</h1><section><ul>"
    );
    for r in runs {
        let _ = write!(
            out,
            "<li><a href=\"/report/{}\">{}</a></li>",
            percent(r),
            esc(r)
        );
    }
    if runs.is_empty() {
        out.push_str("<li>No run in the store yet.</li>");
    }
    out.push_str("</ul></section></main></body></html>\n");
    out
}
