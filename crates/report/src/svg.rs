//! Hand-written SVG for the report's figures: axes with rounded ticks,
//! lines, paths, boxes and labelled points, from the data of
//! [`super::figures`]. Pure string building (no I/O, no layout engine); the
//! page puts the result inline.
//!
//! Styling lives in classes (`faint`, `grew`, `shrank`, …) that the page's
//! CSS colours, with explicit `stroke`/`fill` attributes where a colour
//! carries meaning (a label's or a layer's colour), so an SVG copied out of
//! the page still reads. Every mark has a `<title>` (a hover tooltip in any
//! browser, no JavaScript). Numbers are written with 2 decimals of a pixel.
//! It does not decide what is shown (that is the figures' data).

use std::fmt::Write as _;

use super::figures::{BoxStats, DiffPanel, Emphasis, LayerLine, MinDistanceFigure, PathPanel};

/// Colours for categorical marks (Okabe–Ito, colour-blind safe, then two
/// extra).
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#7a5195", "#444444",
];
/// Highlight colours: labels whose min distance grew most (blues).
const GREW: [&str; 3] = ["#08519c", "#3182bd", "#6baed6"];
/// Highlight colours: labels whose min distance grew least (reds).
const SHRANK: [&str; 3] = ["#a50f15", "#de2d26", "#fb6a4a"];

/// XML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Rounded tick positions covering `[lo, hi]` with at most about `target`
/// ticks, at steps of 1, 2 or 5 × 10^k; returns the ticks inside the range
/// and the step. A degenerate range is widened around its value.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, f64) {
    let (mut lo, mut hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    if !(lo.is_finite() && hi.is_finite()) {
        return (vec![0.0, 1.0], 1.0);
    }
    if hi - lo <= f64::EPSILON * lo.abs().max(1.0) {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        lo -= pad;
        hi += pad;
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    let ticks = (first..=last)
        .map(|i| {
            let v = i as f64 * step;
            if v.abs() < step * 1e-9 { 0.0 } else { v }
        })
        .collect();
    (ticks, step)
}

/// A tick label with as many decimals as the tick step needs.
pub fn fmt_tick(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    if v.abs() >= 1e5 || (v != 0.0 && v.abs() < 1e-4) {
        return format!("{v:.1e}");
    }
    format!("{v:.decimals$}")
}

/// A linear map from data to pixels.
#[derive(Clone, Copy, Debug)]
struct Scale {
    d0: f64,
    d1: f64,
    r0: f64,
    r1: f64,
}

impl Scale {
    fn map(&self, v: f64) -> f64 {
        if self.d1 == self.d0 {
            return (self.r0 + self.r1) / 2.0;
        }
        self.r0 + (v - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
    }
}

/// A plot area inside an SVG: scales, ticks and axis titles.
struct Frame {
    x: Scale,
    y: Scale,
    xticks: (Vec<f64>, f64),
    yticks: (Vec<f64>, f64),
    /// Names for the x ticks (a category axis); numbers when empty.
    xnames: Vec<String>,
}

/// Pixel geometry of one plot area.
#[derive(Clone, Copy)]
struct Area {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

impl Frame {
    /// A frame whose y range is widened to whole tick steps, so the top
    /// and bottom of the plot carry a tick (not for equal-aspect plots).
    fn snapped_y(area: Area, x: (f64, f64), y: (f64, f64)) -> Frame {
        let (_, step) = nice_ticks(y.0, y.1, (area.height / 45.0).max(2.0) as usize);
        let lo = (y.0 / step + 1e-9).floor() * step;
        let hi = (y.1 / step - 1e-9).ceil() * step;
        Frame::new(area, x, (lo, hi))
    }

    fn new(area: Area, x: (f64, f64), y: (f64, f64)) -> Frame {
        let xticks = nice_ticks(x.0, x.1, (area.width / 75.0).max(2.0) as usize);
        let yticks = nice_ticks(y.0, y.1, (area.height / 45.0).max(2.0) as usize);
        Frame {
            x: Scale {
                d0: x.0,
                d1: x.1,
                r0: area.left,
                r1: area.left + area.width,
            },
            y: Scale {
                d0: y.0,
                d1: y.1,
                r0: area.top + area.height,
                r1: area.top,
            },
            xticks,
            yticks,
            xnames: Vec::new(),
        }
    }

    /// Grid, axes, tick labels and the two axis titles.
    fn draw(&self, out: &mut String, xlabel: &str, ylabel: &str) {
        let (x0, x1) = (self.x.r0, self.x.r1);
        let (y0, y1) = (self.y.r0, self.y.r1);
        out.push_str("<g class=\"grid\">");
        for &t in &self.yticks.0 {
            let y = self.y.map(t);
            let _ = write!(
                out,
                "<line x1=\"{x0:.2}\" x2=\"{x1:.2}\" y1=\"{y:.2}\" y2=\"{y:.2}\"/>"
            );
        }
        for &t in &self.xticks.0 {
            let x = self.x.map(t);
            let _ = write!(
                out,
                "<line x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{y0:.2}\" y2=\"{y1:.2}\"/>"
            );
        }
        out.push_str("</g>");
        let _ = write!(
            out,
            "<g class=\"axis\"><line x1=\"{x0:.2}\" x2=\"{x1:.2}\" y1=\"{y0:.2}\" y2=\"{y0:.2}\"/>\
             <line x1=\"{x0:.2}\" x2=\"{x0:.2}\" y1=\"{y0:.2}\" y2=\"{y1:.2}\"/>"
        );
        for (i, &t) in self.xticks.0.iter().enumerate() {
            let x = self.x.map(t);
            let name = match self.xnames.get(i) {
                Some(n) => esc(n),
                None => fmt_tick(t, self.xticks.1),
            };
            let _ = write!(
                out,
                "<text class=\"tick\" x=\"{x:.2}\" y=\"{:.2}\" text-anchor=\"middle\">{name}</text>",
                y0 + 15.0,
            );
        }
        for &t in &self.yticks.0 {
            let y = self.y.map(t);
            let _ = write!(
                out,
                "<text class=\"tick\" x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\">{}</text>",
                x0 - 5.0,
                y + 4.0,
                fmt_tick(t, self.yticks.1)
            );
        }
        let _ = write!(
            out,
            "<text class=\"label\" x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"middle\">{}</text>\
             <text class=\"label\" transform=\"translate({:.2} {:.2}) rotate(-90)\" text-anchor=\"middle\">{}</text></g>",
            (x0 + x1) / 2.0,
            y0 + 34.0,
            esc(xlabel),
            x0 - 44.0,
            (y0 + y1) / 2.0,
            esc(ylabel)
        );
    }

    fn point(&self, x: f64, y: f64) -> (f64, f64) {
        (self.x.map(x), self.y.map(y))
    }
}

fn open_svg(out: &mut String, width: f64, height: f64, title: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"figure\" viewBox=\"0 0 {width} {height}\" \
         width=\"{width}\" height=\"{height}\" role=\"img\"><title>{}</title>",
        esc(title)
    );
}

/// `M x y L x y …` of pixel points.
fn path_d(points: impl IntoIterator<Item = (f64, f64)>) -> String {
    let mut d = String::new();
    for (i, (x, y)) in points.into_iter().enumerate() {
        let _ = write!(d, "{}{x:.2} {y:.2}", if i == 0 { "M" } else { " L" });
    }
    d
}

/// Spreads label positions (sorted by wanted y) so that neighbours are at
/// least `gap` apart, staying inside `[lo, hi]`; returns the placed y per
/// input index.
pub fn spread_labels(wanted: &[f64], gap: f64, lo: f64, hi: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..wanted.len()).collect();
    order.sort_by(|&a, &b| wanted[a].total_cmp(&wanted[b]).then(a.cmp(&b)));
    let mut placed: Vec<f64> = order.iter().map(|&i| wanted[i].clamp(lo, hi)).collect();
    for i in 1..placed.len() {
        if placed[i] < placed[i - 1] + gap {
            placed[i] = placed[i - 1] + gap;
        }
    }
    // Pushed past the bottom: shift back up, keeping the gaps.
    if let Some(&last) = placed.last() {
        if last > hi {
            let shift = last - hi;
            for p in &mut placed {
                *p -= shift;
            }
            for i in (0..placed.len().saturating_sub(1)).rev() {
                if placed[i] > placed[i + 1] - gap {
                    placed[i] = placed[i + 1] - gap;
                }
            }
        }
    }
    let mut out = vec![0.0; wanted.len()];
    for (k, &i) in order.iter().enumerate() {
        out[i] = placed[k];
    }
    out
}

fn data_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// Figure 2: min label distance against the step; faint lines for most
/// labels, the highlighted ones coloured and named at their right end.
pub fn min_distance_svg(
    fig: &MinDistanceFigure,
    label: &dyn Fn(usize) -> String,
    baseline_step: Option<u64>,
) -> String {
    let (w, h) = (820.0, 400.0);
    let area = Area {
        left: 64.0,
        top: 30.0,
        width: 620.0,
        height: 310.0,
    };
    let pts = fig.lines.iter().flat_map(|l| &l.points);
    let xr = data_range(pts.clone().map(|p| p.0 as f64)).unwrap_or((0.0, 1.0));
    let yr = data_range(pts.map(|p| p.1)).unwrap_or((0.0, 1.0));
    let f = Frame::snapped_y(area, xr, (yr.0.min(0.0), yr.1));
    let mut out = String::new();
    open_svg(
        &mut out,
        w,
        h,
        &format!("Min label distance vs training step, layer {}", fig.layer),
    );
    f.draw(&mut out, "training step", "min distance to another label");
    if let Some(b) = baseline_step {
        let (x, _) = f.point(b as f64, 0.0);
        let _ = write!(
            out,
            "<line class=\"marker\" x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{:.2}\" y2=\"{:.2}\"/>\
             <text class=\"note\" x=\"{:.2}\" y=\"{:.2}\">baseline</text>",
            area.top + area.height,
            area.top,
            x + 3.0,
            area.top + 10.0
        );
    }
    let mut ends = Vec::new();
    for line in &fig.lines {
        let (class, colour) = match line.emphasis {
            Emphasis::Faint => ("faint", None),
            Emphasis::GrewMost(r) => ("grew", Some(GREW[r.min(2)])),
            Emphasis::GrewLeast(r) => ("shrank", Some(SHRANK[r.min(2)])),
        };
        let d = path_d(line.points.iter().map(|p| f.point(p.0 as f64, p.1)));
        let change = line
            .change
            .map_or("no change known".to_owned(), |c| format!("change {c:+.3}"));
        let stroke = colour.map_or(String::new(), |c| format!(" stroke=\"{c}\""));
        let _ = write!(
            out,
            "<path class=\"line {class}\"{stroke} d=\"{d}\"><title>{}: {change}</title></path>",
            esc(&label(line.label))
        );
        if let (Some(c), Some(last)) = (colour, line.points.last()) {
            ends.push((f.point(last.0 as f64, last.1), c, line));
        }
    }
    let wanted: Vec<f64> = ends.iter().map(|e| e.0.1).collect();
    let ys = spread_labels(&wanted, 13.0, area.top + 4.0, area.top + area.height);
    for ((p, colour, line), y) in ends.iter().zip(ys) {
        let _ = write!(
            out,
            "<text class=\"end\" x=\"{:.2}\" y=\"{:.2}\" fill=\"{colour}\">{} {}</text>",
            p.0 + 6.0,
            y + 4.0,
            esc(&label(line.label)),
            line.change.map_or(String::new(), |c| format!("({c:+.2})"))
        );
    }
    // Legend.
    let _ = write!(
        out,
        "<g class=\"legend\"><line x1=\"{l}\" x2=\"{l2}\" y1=\"14\" y2=\"14\" stroke=\"{}\" stroke-width=\"2.5\"/>\
         <text x=\"{t}\" y=\"18\">grew most</text>\
         <line x1=\"{l3}\" x2=\"{l4}\" y1=\"14\" y2=\"14\" stroke=\"{}\" stroke-width=\"2.5\"/>\
         <text x=\"{t2}\" y=\"18\">grew least (shrank most)</text>\
         <line class=\"faint\" x1=\"{l5}\" x2=\"{l6}\" y1=\"14\" y2=\"14\"/>\
         <text x=\"{t3}\" y=\"18\">other labels</text></g>",
        GREW[0],
        SHRANK[0],
        l = area.left,
        l2 = area.left + 22.0,
        t = area.left + 27.0,
        l3 = area.left + 110.0,
        l4 = area.left + 132.0,
        t2 = area.left + 137.0,
        l5 = area.left + 300.0,
        l6 = area.left + 322.0,
        t3 = area.left + 327.0,
    );
    out.push_str("</svg>");
    out
}

/// A square data range around `points` (equal units on both axes).
fn square_range(points: impl Iterator<Item = (f64, f64)>, pad: f64) -> ((f64, f64), (f64, f64)) {
    let pts: Vec<(f64, f64)> = points.collect();
    let xr = data_range(pts.iter().map(|p| p.0)).unwrap_or((-1.0, 1.0));
    let yr = data_range(pts.iter().map(|p| p.1)).unwrap_or((-1.0, 1.0));
    let half = ((xr.1 - xr.0).max(yr.1 - yr.0) / 2.0 * (1.0 + pad)).max(1e-12);
    let (cx, cy) = ((xr.0 + xr.1) / 2.0, (yr.0 + yr.1) / 2.0);
    ((cx - half, cx + half), (cy - half, cy + half))
}

/// Figure 3: centroid paths in each panel's PCA plane, side by side; an
/// open circle at the first step, a filled one and the label's name at the
/// last.
pub fn paths_svg(panels: &[PathPanel], label: &dyn Fn(usize) -> String) -> String {
    let side = 330.0;
    let (w, h) = (40.0 + panels.len() as f64 * (side + 90.0), side + 90.0);
    let mut out = String::new();
    open_svg(&mut out, w, h, "PCA paths of label centroids over training");
    // One colour per label, the same in every panel.
    let mut order: Vec<usize> = panels
        .iter()
        .flat_map(|p| p.paths.iter().map(|q| q.label))
        .collect();
    order.dedup();
    let mut seen = Vec::new();
    for l in order {
        if !seen.contains(&l) {
            seen.push(l);
        }
    }
    let colour = |l: usize| PALETTE[seen.iter().position(|&x| x == l).unwrap_or(0) % PALETTE.len()];
    for (i, panel) in panels.iter().enumerate() {
        let area = Area {
            left: 70.0 + i as f64 * (side + 90.0),
            top: 34.0,
            width: side,
            height: side,
        };
        let (xr, yr) = square_range(
            panel
                .paths
                .iter()
                .flat_map(|p| p.points.iter().map(|q| (q.1, q.2))),
            0.12,
        );
        let f = Frame::new(area, xr, yr);
        let _ = write!(
            out,
            "<g class=\"panel\"><text class=\"panel-title\" x=\"{:.2}\" y=\"20\" text-anchor=\"middle\">layer {}</text>",
            area.left + side / 2.0,
            panel.layer
        );
        f.draw(
            &mut out,
            &format!("PC1 ({:.0} % of variance)", 100.0 * panel.explained[0]),
            &format!("PC2 ({:.0} %)", 100.0 * panel.explained[1]),
        );
        let mut ends = Vec::new();
        for p in &panel.paths {
            let c = colour(p.label);
            let d = path_d(p.points.iter().map(|q| f.point(q.1, q.2)));
            let name = esc(&label(p.label));
            let (Some(first), Some(last)) = (p.points.first(), p.points.last()) else {
                continue;
            };
            let _ = write!(
                out,
                "<path class=\"trail\" stroke=\"{c}\" d=\"{d}\"><title>{name}: steps {} to {}</title></path>",
                first.0, last.0
            );
            let (sx, sy) = f.point(first.1, first.2);
            let (ex, ey) = f.point(last.1, last.2);
            let _ = write!(
                out,
                "<circle class=\"start\" cx=\"{sx:.2}\" cy=\"{sy:.2}\" r=\"4\" stroke=\"{c}\"><title>{name} at step {}</title></circle>\
                 <circle class=\"end\" cx=\"{ex:.2}\" cy=\"{ey:.2}\" r=\"4.5\" fill=\"{c}\"><title>{name} at step {}</title></circle>",
                first.0, last.0
            );
            // Name on the side the path arrives from, so it does not cover the path.
            let leftwards = ex < sx - 1.0;
            ends.push((ex, ey, c, name, leftwards));
        }
        let wanted: Vec<f64> = ends.iter().map(|e| e.1).collect();
        let ys = spread_labels(&wanted, 13.0, area.top + 6.0, area.top + side - 4.0);
        for ((x, _, c, name, leftwards), y) in ends.iter().zip(ys) {
            let near_right = *x > area.left + side * 0.8;
            let near_left = *x < area.left + side * 0.2;
            let (anchor, dx) = if near_right || (*leftwards && !near_left) {
                ("end", -7.0)
            } else {
                ("start", 7.0)
            };
            let _ = write!(
                out,
                "<text class=\"end\" x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"{anchor}\" fill=\"{c}\">{name}</text>",
                x + dx,
                y + 4.0
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

/// The layer-behaviour figure: centroid movement (baseline → latest) per
/// layer as a box (quartiles), whiskers (min to max) and a median bar.
pub fn movement_svg(boxes: &[BoxStats], label: &dyn Fn(usize) -> String) -> String {
    let (w, h) = (820.0, 360.0);
    let area = Area {
        left: 64.0,
        top: 16.0,
        width: 730.0,
        height: 290.0,
    };
    let yr = data_range(boxes.iter().flat_map(|b| [b.min, b.max])).unwrap_or((0.0, 1.0));
    let n = boxes.len().max(1) as f64;
    let mut f = Frame::snapped_y(area, (-0.5, n - 0.5), (0.0, yr.1));
    // Category axis: one tick per layer (thinned when crowded).
    let every = (boxes.len() as f64 / 26.0).ceil().max(1.0) as usize;
    f.xticks = (
        (0..boxes.len()).step_by(every).map(|i| i as f64).collect(),
        1.0,
    );
    let mut out = String::new();
    open_svg(&mut out, w, h, "Centroid movement by layer");
    f.xnames = boxes
        .iter()
        .step_by(every)
        .map(|b| b.layer.to_string())
        .collect();
    f.draw(&mut out, "layer", "centroid movement (baseline → latest)");
    let bw = (area.width / n * 0.55).min(34.0);
    for (i, b) in boxes.iter().enumerate() {
        let x = f.x.map(i as f64);
        let y = |v: f64| f.y.map(v);
        let _ = write!(
            out,
            "<g class=\"box\"><title>layer {}: {} labels, min {:.3}, quartiles {:.3} / {:.3} / {:.3}, max {:.3} ({})</title>\
             <line class=\"whisker\" x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{:.2}\" y2=\"{:.2}\"/>\
             <line class=\"whisker\" x1=\"{:.2}\" x2=\"{:.2}\" y1=\"{:.2}\" y2=\"{:.2}\"/>\
             <line class=\"whisker\" x1=\"{:.2}\" x2=\"{:.2}\" y1=\"{:.2}\" y2=\"{:.2}\"/>\
             <rect x=\"{:.2}\" y=\"{:.2}\" width=\"{bw:.2}\" height=\"{:.2}\"/>\
             <line class=\"median\" x1=\"{:.2}\" x2=\"{:.2}\" y1=\"{:.2}\" y2=\"{:.2}\"/></g>",
            b.layer,
            b.n,
            b.min,
            b.q1,
            b.median,
            b.q3,
            b.max,
            esc(&label(b.argmax)),
            y(b.min),
            y(b.max),
            x - bw / 4.0,
            x + bw / 4.0,
            y(b.min),
            y(b.min),
            x - bw / 4.0,
            x + bw / 4.0,
            y(b.max),
            y(b.max),
            x - bw / 2.0,
            y(b.q3),
            (y(b.q1) - y(b.q3)).max(0.5),
            x - bw / 2.0,
            x + bw / 2.0,
            y(b.median),
            y(b.median),
        );
    }
    out.push_str("</svg>");
    out
}

/// A colour for position `t` in `[0, 1]` on a viridis-like ramp (dark
/// purple → teal → yellow), for layers by depth.
pub fn ramp(t: f64) -> String {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (220.0, 200.0, 30.0),
    ];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let u = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + u * (y - x)).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

/// The similarity-dynamics figure: similarity to the baseline against the
/// step, one line per layer coloured by depth, with a colour key.
pub fn similarity_svg(lines: &[LayerLine], baseline_step: Option<u64>) -> String {
    let (w, h) = (820.0, 380.0);
    let area = Area {
        left: 64.0,
        top: 16.0,
        width: 640.0,
        height: 300.0,
    };
    let pts = lines.iter().flat_map(|l| &l.points);
    let xr = data_range(pts.clone().map(|p| p.0 as f64)).unwrap_or((0.0, 1.0));
    let yr = data_range(pts.map(|p| p.1)).unwrap_or((0.0, 1.0));
    let f = Frame::snapped_y(area, xr, (yr.0, yr.1.max(1.0)));
    let mut out = String::new();
    open_svg(
        &mut out,
        w,
        h,
        "Spatial similarity to the baseline vs training step",
    );
    f.draw(
        &mut out,
        "training step",
        "similarity to the baseline (Pearson r)",
    );
    if let Some(b) = baseline_step {
        let (x, _) = f.point(b as f64, 0.0);
        let _ = write!(
            out,
            "<line class=\"marker\" x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{:.2}\" y2=\"{:.2}\"/>",
            area.top + area.height,
            area.top
        );
    }
    let (lo, hi) = (
        lines.iter().map(|l| l.layer).min().unwrap_or(0),
        lines.iter().map(|l| l.layer).max().unwrap_or(0),
    );
    let depth = |l: usize| {
        if hi > lo {
            (l - lo) as f64 / (hi - lo) as f64
        } else {
            1.0
        }
    };
    for line in lines {
        let c = ramp(depth(line.layer));
        let d = path_d(line.points.iter().map(|p| f.point(p.0 as f64, p.1)));
        let last = line.points.last().map_or(f64::NAN, |p| p.1);
        let _ = write!(
            out,
            "<path class=\"line layer\" stroke=\"{c}\" d=\"{d}\"><title>layer {}: {last:.3} at the latest step</title></path>",
            line.layer
        );
    }
    // Colour key: a vertical ramp from the first to the last layer.
    let (kx, ky, kh) = (area.left + area.width + 40.0, area.top + 20.0, 200.0);
    let _ = write!(
        out,
        "<g class=\"key\"><text x=\"{kx:.2}\" y=\"{:.2}\">layer</text>",
        ky - 8.0
    );
    let steps = 20;
    for s in 0..steps {
        let t = s as f64 / (steps - 1) as f64;
        let _ = write!(
            out,
            "<rect x=\"{kx:.2}\" y=\"{:.2}\" width=\"14\" height=\"{:.2}\" fill=\"{}\"/>",
            ky + kh * s as f64 / steps as f64,
            kh / steps as f64 + 0.5,
            ramp(t)
        );
    }
    let _ = write!(
        out,
        "<text x=\"{:.2}\" y=\"{:.2}\">{lo}</text><text x=\"{:.2}\" y=\"{:.2}\">{hi}</text></g>",
        kx + 20.0,
        ky + 10.0,
        kx + 20.0,
        ky + kh
    );
    out.push_str("</svg>");
    out
}

/// The difference-vector figure: per panel every label's centroid
/// difference (baseline → latest) on the layer's two leading axes, both
/// panels on the same square range `[-half, half]`, origin marked. Names are
/// written next to the `named` points farthest from the origin (all when
/// fewer); every point has a tooltip.
pub fn diff_svg(
    panels: &[DiffPanel],
    half: f64,
    label: &dyn Fn(usize) -> String,
    named: usize,
) -> String {
    let side = 330.0;
    let (w, h) = (40.0 + panels.len() as f64 * (side + 90.0), side + 90.0);
    let mut out = String::new();
    open_svg(
        &mut out,
        w,
        h,
        "PCA of centroid difference vectors, low and high layer",
    );
    let r = (half * 1.15).max(1e-12);
    for (i, panel) in panels.iter().enumerate() {
        let area = Area {
            left: 70.0 + i as f64 * (side + 90.0),
            top: 34.0,
            width: side,
            height: side,
        };
        let f = Frame::new(area, (-r, r), (-r, r));
        let _ = write!(
            out,
            "<g class=\"panel\"><text class=\"panel-title\" x=\"{:.2}\" y=\"20\" text-anchor=\"middle\">layer {}</text>",
            area.left + side / 2.0,
            panel.layer
        );
        f.draw(
            &mut out,
            &format!(
                "axis 1 ({:.0} % of squared movement)",
                100.0 * panel.explained[0]
            ),
            &format!("axis 2 ({:.0} %)", 100.0 * panel.explained[1]),
        );
        let (ox, oy) = f.point(0.0, 0.0);
        let _ = write!(
            out,
            "<path class=\"origin\" d=\"M{:.2} {oy:.2} L{:.2} {oy:.2} M{ox:.2} {:.2} L{ox:.2} {:.2}\"><title>origin: did not move</title></path>",
            ox - 7.0,
            ox + 7.0,
            oy - 7.0,
            oy + 7.0
        );
        let mut far: Vec<(usize, f64)> = panel
            .points
            .iter()
            .enumerate()
            .map(|(k, p)| (k, p.x.hypot(p.y)))
            .collect();
        far.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let pixels: Vec<(f64, f64)> = panel.points.iter().map(|p| f.point(p.x, p.y)).collect();
        for (p, &(x, y)) in panel.points.iter().zip(&pixels) {
            let _ = write!(
                out,
                "<circle class=\"dot\" cx=\"{x:.2}\" cy=\"{y:.2}\" r=\"3.5\"><title>{}: moved {:.3} in this plane</title></circle>",
                esc(&label(p.label)),
                p.x.hypot(p.y)
            );
        }
        // Names of the farthest points first, each where it overlaps no
        // name already placed (or not at all: the tooltip still has it).
        let mut taken: Vec<[f64; 4]> = Vec::new();
        for &(k, _) in far.iter().take(named) {
            let text = label(panel.points[k].label);
            if let Some((x, y, anchor)) = place_name(pixels[k], &text, &taken, area) {
                let w = name_width(&text);
                let x0 = if anchor == "end" { x - w } else { x };
                taken.push([x0, y - 10.0, x0 + w, y + 2.0]);
                let _ = write!(
                    out,
                    "<text class=\"name\" x=\"{x:.2}\" y=\"{y:.2}\" text-anchor=\"{anchor}\">{}</text>",
                    esc(&text)
                );
            }
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

/// Approximate width in pixels of a point label (10.5 px sans-serif).
fn name_width(text: &str) -> f64 {
    6.2 * text.chars().count() as f64
}

/// A position for a point's name: right, left, above or below the point,
/// the first whose box stays inside `area` and overlaps no box in `taken`;
/// returns the text's anchor point and `text-anchor`.
fn place_name(
    (px, py): (f64, f64),
    text: &str,
    taken: &[[f64; 4]],
    area: Area,
) -> Option<(f64, f64, &'static str)> {
    let w = name_width(text);
    let candidates = [
        (px + 6.0, py + 4.0, "start"),
        (px - 6.0, py + 4.0, "end"),
        (px - w / 2.0, py - 7.0, "start"),
        (px - w / 2.0, py + 15.0, "start"),
    ];
    candidates.into_iter().find(|&(x, y, anchor)| {
        let x0 = if anchor == "end" { x - w } else { x };
        let b = [x0, y - 10.0, x0 + w, y + 2.0];
        let inside = b[0] >= area.left
            && b[2] <= area.left + area.width
            && b[1] >= area.top
            && b[3] <= area.top + area.height;
        inside
            && taken
                .iter()
                .all(|t| b[2] <= t[0] || b[0] >= t[2] || b[3] <= t[1] || b[1] >= t[3])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::{CentroidPath, DiffPoint, LabelLine};

    /// The element structure of an SVG: `tag.class` per element in document
    /// order, consecutive repeats collapsed to `×n`; coordinates ignored.
    pub(crate) fn structure(svg: &str) -> String {
        let mut items: Vec<String> = Vec::new();
        for part in svg.split('<').skip(1) {
            if part.starts_with('/') {
                continue;
            }
            let head = part.split('>').next().unwrap_or("");
            let tag = head
                .split(|c: char| c.is_whitespace() || c == '/')
                .next()
                .unwrap_or("");
            let class = head
                .split("class=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .map(|c| format!(".{}", c.replace(' ', ".")))
                .unwrap_or_default();
            items.push(format!("{tag}{class}"));
        }
        let mut out: Vec<String> = Vec::new();
        let mut i = 0;
        while i < items.len() {
            let mut j = i;
            while j < items.len() && items[j] == items[i] {
                j += 1;
            }
            out.push(if j - i > 1 {
                format!("{}×{}", items[i], j - i)
            } else {
                items[i].clone()
            });
            i = j;
        }
        out.join(" ")
    }

    fn name(i: usize) -> String {
        ["A", "B<", "C", "D"][i].to_owned()
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            nice_ticks(0.0, 2000.0, 7),
            (vec![0.0, 500.0, 1000.0, 1500.0, 2000.0], 500.0)
        );
        let (t, s) = nice_ticks(0.93, 1.0, 5);
        assert_eq!(s, 0.02);
        assert_eq!(t.len(), 4); // 0.94, 0.96, 0.98, 1.00
        assert_eq!(fmt_tick(0.96, s), "0.96");
        let (t, _) = nice_ticks(-3.2, 3.2, 6);
        assert!(t.contains(&0.0) && t.iter().all(|v| (-3.2..=3.2).contains(v)));
        assert_eq!(nice_ticks(5.0, 5.0, 4).0, vec![4.5, 5.0, 5.5]);
    }

    #[test]
    fn labels_are_spread_apart_within_bounds() {
        let ys = spread_labels(&[100.0, 101.0, 50.0, 299.0], 10.0, 0.0, 300.0);
        assert_eq!(ys[2], 50.0);
        assert_eq!(ys[0], 100.0);
        assert_eq!(ys[1], 110.0);
        assert_eq!(ys[3], 299.0);
        let ys = spread_labels(&[300.0, 300.0, 300.0], 10.0, 0.0, 300.0);
        assert_eq!(ys, vec![280.0, 290.0, 300.0]);
    }

    #[test]
    fn min_distance_svg_structure() {
        let line = |label, emphasis| LabelLine {
            label,
            points: vec![(0, 1.0), (100, 1.5), (200, 0.5 + label as f64)],
            change: Some(label as f64 - 0.5),
            emphasis,
        };
        let fig = MinDistanceFigure {
            layer: 3,
            lines: vec![
                line(3, Emphasis::Faint),
                line(1, Emphasis::GrewLeast(0)),
                line(2, Emphasis::GrewMost(0)),
            ],
        };
        let svg = min_distance_svg(&fig, &name, Some(0));
        assert_eq!(
            structure(&svg),
            "svg.figure title g.grid line×10 g.axis line×2 text.tick×10 text.label×2 \
             line.marker text.note path.line.faint title path.line.shrank title \
             path.line.grew title text.end×2 g.legend line text line text line.faint text"
        );
        assert!(svg.contains("B&lt;"), "label names are escaped");
        assert!(svg.contains("stroke=\"#a50f15\"") && svg.contains("stroke=\"#08519c\""));
    }

    #[test]
    fn panel_figures_structure() {
        let panel = |layer| PathPanel {
            layer,
            explained: [0.9, 0.1],
            paths: vec![CentroidPath {
                label: 0,
                points: vec![(0, 0.0, 0.0), (10, 1.0, 0.5)],
            }],
        };
        let svg = paths_svg(&[panel(0), panel(6)], &name);
        let s = structure(&svg);
        assert_eq!(s.matches("g.panel").count(), 2);
        assert_eq!(s.matches("path.trail").count(), 2);
        assert_eq!(s.matches("circle.start").count(), 2);
        assert_eq!(s.matches("circle.end").count(), 2);
        assert!(svg.contains(">layer 6<") && svg.contains("PC1 (90 % of variance)"));

        let dp = |layer, x| DiffPanel {
            layer,
            explained: [1.0, 0.0],
            points: vec![
                DiffPoint {
                    label: 0,
                    x,
                    y: 0.0,
                },
                DiffPoint {
                    label: 1,
                    x: -x,
                    y: 0.0,
                },
            ],
        };
        let svg = diff_svg(&[dp(0, 0.5), dp(6, 2.0)], 2.0, &name, 1);
        let s = structure(&svg);
        assert_eq!(s.matches("path.origin").count(), 2);
        assert_eq!(s.matches("circle.dot").count(), 4);
        assert_eq!(s.matches("text.name").count(), 2, "{s}");
    }

    #[test]
    fn box_and_similarity_structure() {
        let b = |layer| BoxStats {
            layer,
            min: 0.1,
            q1: 0.2,
            median: 0.3,
            q3: 0.4,
            max: 0.9,
            n: 8,
            argmax: 2,
        };
        let svg = movement_svg(&[b(0), b(1), b(12)], &name);
        assert_eq!(structure(&svg).matches("g.box").count(), 3);
        assert!(svg.contains(">12</text>"), "layer numbers label the boxes");
        let line = |layer| LayerLine {
            layer,
            points: vec![(0, 1.0), (10, 0.95)],
        };
        let svg = similarity_svg(&[line(0), line(5)], Some(0));
        let s = structure(&svg);
        assert_eq!(s.matches("path.line.layer").count(), 2);
        assert!(s.contains("g.key text rect×20 text×2"), "{s}");
        assert_eq!(ramp(0.0), "#440154");
        assert_eq!(ramp(1.0), "#dcc81e");
    }
}
