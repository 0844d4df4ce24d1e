//! The data behind every figure and the table of the report, computed from a
//! run's [`History`]: which labels to highlight, principal-component
//! projections, box statistics, table cells and whether they got worse.
//!
//! Pure and deterministic: plain data in, plain data out, no I/O, no SVG or
//! HTML (that is [`super::svg`] and the page). Ties are broken by label or
//! layer index; the PCA starts from fixed vectors, so the same history gives
//! the same bits.

/// One layer's stored values at one checkpoint (baseline or latest), as the
/// report needs them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerSummary {
    /// Layer index (0 = embedding output).
    pub layer: usize,
    /// DirectProbe clusters on the train split.
    pub clusters: usize,
    /// Labels present in the train split.
    pub labels_present: usize,
    /// Nearest-cluster accuracy of the `test` split, when measured.
    pub test_accuracy: Option<f64>,
    /// The MLP classifier probe's `test` accuracy (mean and standard
    /// deviation over its seeds), when the run trains it.
    pub classifier_test_accuracy: Option<(f64, f64)>,
    /// Train/test spatial similarity, when measured.
    pub train_test_similarity: Option<f64>,
    /// Per label: min label distance (`None` when absent).
    pub min_label_distance: Vec<Option<f64>>,
    /// `(a, b, d(a, b))` for label pairs, `a < b`.
    pub label_distance: Vec<(u32, u32, f64)>,
    /// Per label: centroid of its train points (`None` when absent or not
    /// stored).
    pub centroids: Vec<Option<Vec<f64>>>,
    /// The stored comparison with the baseline (`None` at the baseline).
    pub vs_baseline: Option<Comparison>,
}

/// The parts of a stored layer comparison the report uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    /// Per label: centroid movement (`None` when absent).
    pub centroid_movement: Vec<Option<f64>>,
    /// Pearson similarity of the label-distance vectors.
    pub similarity: Option<f64>,
    /// Labels whose min distance grew.
    pub grew: usize,
    /// Labels whose min distance shrank.
    pub shrank: usize,
    /// Mean change of the min label distance.
    pub mean_change: Option<f64>,
}

/// One layer's centroids over the run's checkpoints.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CentroidSeries {
    /// Layer index.
    pub layer: usize,
    /// Steps, ascending.
    pub steps: Vec<u64>,
    /// Per step, per label: the centroid (`None` when absent).
    pub centroids: Vec<Vec<Option<Vec<f64>>>>,
}

/// What the report knows about one task of one run: everything the figures
/// are computed from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// Run name.
    pub run: String,
    /// Task shown.
    pub task: String,
    /// Every task of the run's latest checkpoint.
    pub tasks: Vec<String>,
    /// Label names (index → name).
    pub labels: Vec<String>,
    /// Steps of the analysed (`done`) checkpoints, ascending.
    pub steps: Vec<u64>,
    /// Failed checkpoints of the run.
    pub failed: usize,
    /// The baseline's step, when one is set.
    pub baseline_step: Option<u64>,
    /// Per layer of the task, ascending: similarity to the baseline at each
    /// of `steps` (`None` where not stored).
    pub similarity: Vec<(usize, Vec<Option<f64>>)>,
    /// The layer of the min-distance figure.
    pub focus_layer: usize,
    /// Per step (aligned with `steps`), per label: min label distance in the
    /// focus layer (`None` when absent or when the step lacks the layer).
    pub focus_min_distance: Vec<Vec<Option<f64>>>,
    /// Centroids over the steps of the first and the last layer (one entry
    /// when they are the same layer).
    pub paths: Vec<CentroidSeries>,
    /// Every layer at the baseline (empty without a baseline).
    pub baseline: Vec<LayerSummary>,
    /// Every layer at the latest checkpoint.
    pub latest: Vec<LayerSummary>,
}

impl History {
    /// The latest step, if any checkpoint was analysed.
    pub fn latest_step(&self) -> Option<u64> {
        self.steps.last().copied()
    }

    /// Name of label `i` (`#i` when the names are unknown).
    pub fn label(&self, i: usize) -> String {
        self.labels
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("#{i}"))
    }
}

/// How a line of the min-distance figure is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emphasis {
    /// Among the labels whose min distance grew most (rank 0 = most).
    GrewMost(usize),
    /// Among the labels whose min distance grew least, i.e. shrank most
    /// (rank 0 = least).
    GrewLeast(usize),
    /// Every other label: drawn faint.
    Faint,
}

/// One label's min distance over the steps.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelLine {
    /// Label index.
    pub label: usize,
    /// `(step, min distance)` where known.
    pub points: Vec<(u64, f64)>,
    /// Latest minus baseline value (`None` when either is missing).
    pub change: Option<f64>,
    /// How to draw it.
    pub emphasis: Emphasis,
}

/// The data of the study's Figure 2.
#[derive(Clone, Debug, PartialEq)]
pub struct MinDistanceFigure {
    /// Layer shown.
    pub layer: usize,
    /// Faint lines first, then the highlighted ones (drawn on top).
    pub lines: Vec<LabelLine>,
}

/// Highlighted labels per side: three, or fewer when there are fewer than six
/// labels with a change (so the two groups never overlap).
pub fn highlight_count(with_change: usize) -> usize {
    (with_change / 2).min(3)
}

/// Ranks labels by `change` (descending; ties by label index) and returns
/// `(grew most, grew least)`, each in rank order.
pub fn top_bottom(changes: &[(usize, f64)]) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<(usize, f64)> = changes.to_vec();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let h = highlight_count(order.len());
    let most = order.iter().take(h).map(|c| c.0).collect();
    let mut least: Vec<(usize, f64)> = order.iter().rev().take(h).copied().collect();
    least.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    (most, least.into_iter().map(|c| c.0).collect())
}

/// Figure 2: every label's min distance in the focus layer against the step,
/// the three labels that grew most and the three that grew least (baseline →
/// latest) highlighted. `None` with fewer than two steps.
pub fn min_distance_figure(h: &History) -> Option<MinDistanceFigure> {
    if h.steps.len() < 2 || h.focus_min_distance.len() != h.steps.len() {
        return None;
    }
    let k = h.labels.len();
    let base_idx = h
        .baseline_step
        .and_then(|b| h.steps.iter().position(|&s| s == b))
        .unwrap_or(0);
    let last_idx = h.steps.len() - 1;
    let value = |i: usize, l: usize| h.focus_min_distance[i].get(l).copied().flatten();
    let mut lines: Vec<LabelLine> = (0..k)
        .map(|l| LabelLine {
            label: l,
            points: h
                .steps
                .iter()
                .enumerate()
                .filter_map(|(i, &s)| value(i, l).map(|v| (s, v)))
                .collect(),
            change: match (value(base_idx, l), value(last_idx, l)) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            },
            emphasis: Emphasis::Faint,
        })
        .filter(|line| !line.points.is_empty())
        .collect();
    let changes: Vec<(usize, f64)> = lines
        .iter()
        .filter_map(|l| l.change.map(|c| (l.label, c)))
        .collect();
    let (most, least) = top_bottom(&changes);
    for line in &mut lines {
        if let Some(r) = most.iter().position(|&m| m == line.label) {
            line.emphasis = Emphasis::GrewMost(r);
        } else if let Some(r) = least.iter().position(|&m| m == line.label) {
            line.emphasis = Emphasis::GrewLeast(r);
        }
    }
    // Faint lines underneath; highlighted ones on top in rank order.
    let key = |e: Emphasis| match e {
        Emphasis::Faint => (0, 0),
        Emphasis::GrewLeast(r) => (1, 3 - r.min(3)),
        Emphasis::GrewMost(r) => (2, 3 - r.min(3)),
    };
    lines.sort_by_key(|l| (key(l.emphasis), l.label));
    Some(MinDistanceFigure {
        layer: h.focus_layer,
        lines,
    })
}

/// A two-component principal-component projection.
#[derive(Clone, Debug, PartialEq)]
pub struct Pca2 {
    /// The mean that was subtracted (zeros when not centred).
    pub mean: Vec<f64>,
    /// The two unit axes (zero vectors where the data has no variance).
    pub axes: [Vec<f64>; 2],
    /// Share of the total (centred or not) sum of squares along each axis.
    pub explained: [f64; 2],
    /// Each point's coordinates on the axes.
    pub coords: Vec<[f64; 2]>,
}

/// Iterations of [`pca2`] at most: a figure needs a few digits; with two
/// nearly equal variances the plane is found and the axes inside it may
/// keep turning (any of them shows the data as well).
const PCA_MAX_ITERATIONS: usize = 500;

/// Steps the centroid-path PCA is fitted on at most (evenly spaced, first
/// and last included); every step is then projected.
pub const PATH_FIT_STEPS: usize = 40;

/// The two leading principal axes of `points` (all of one width), centred on
/// their mean or, with `center = false`, about the origin (so the origin
/// keeps its meaning, e.g. "did not move").
///
/// Orthogonal iteration with a 2×2 Rayleigh–Ritz step on `XᵀX` applied as
/// `Xᵀ(Xv)` (never a d×d matrix), from fixed start vectors; signs are fixed
/// so each axis's largest-magnitude component is positive. Deterministic.
pub fn pca2(points: &[Vec<f64>], center: bool) -> Pca2 {
    let d = points.first().map_or(0, Vec::len);
    let n = points.len();
    let mut mean = vec![0.0; d];
    if center && n > 0 {
        for p in points {
            for (m, v) in mean.iter_mut().zip(p) {
                *m += v;
            }
        }
        for m in &mut mean {
            *m /= n as f64;
        }
    }
    let x: Vec<Vec<f64>> = points
        .iter()
        .map(|p| p.iter().zip(&mean).map(|(v, m)| v - m).collect())
        .collect();
    let total: f64 = x.iter().flatten().map(|v| v * v).sum();
    let zero = || Pca2 {
        mean: mean.clone(),
        axes: [vec![0.0; d], vec![0.0; d]],
        explained: [0.0, 0.0],
        coords: vec![[0.0, 0.0]; n],
    };
    if d == 0 || n == 0 || total <= 0.0 || !total.is_finite() || x.iter().any(|r| r.len() != d) {
        return zero();
    }
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    // The leading eigenpairs of XᵀX (d×d) equal those of XXᵀ (n×n) mapped
    // through Xᵀ: iterate on the smaller one, never forming a d×d matrix.
    let (mut axes, lambda) = if n < d {
        let g: Vec<Vec<f64>> = (0..n)
            .map(|i| (0..n).map(|j| dot(&x[i], &x[j])).collect())
            .collect();
        let (u, lambda) = top2(n, &|v: &[f64]| g.iter().map(|row| dot(row, v)).collect());
        let lift = |u: &[f64]| -> Vec<f64> {
            let mut a = vec![0.0; d];
            for (row, &w) in x.iter().zip(u) {
                for (o, r) in a.iter_mut().zip(row) {
                    *o += w * r;
                }
            }
            let norm = dot(&a, &a).sqrt();
            if norm > 0.0 {
                a.iter_mut().for_each(|v| *v /= norm);
            }
            a
        };
        ([lift(&u[0]), lift(&u[1])], lambda)
    } else {
        let apply = |v: &[f64]| -> Vec<f64> {
            let mut out = vec![0.0; d];
            for row in &x {
                let s = dot(row, v);
                if s != 0.0 {
                    for (o, a) in out.iter_mut().zip(row) {
                        *o += s * a;
                    }
                }
            }
            out
        };
        top2(d, &apply)
    };
    let mut lambda = lambda;
    if lambda[0] <= 0.0 {
        return zero();
    }
    if lambda[1] <= 1e-12 * lambda[0] {
        axes[1] = vec![0.0; d];
        lambda[1] = 0.0;
    }
    for v in &mut axes {
        let big = v
            .iter()
            .copied()
            .fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
        if big < 0.0 {
            v.iter_mut().for_each(|x| *x = -*x);
        }
    }
    let coords = x
        .iter()
        .map(|r| [dot(r, &axes[0]), dot(r, &axes[1])])
        .collect();
    Pca2 {
        mean,
        explained: [lambda[0] / total, lambda[1] / total],
        axes,
        coords,
    }
}

/// The two leading eigenpairs of the symmetric positive semi-definite
/// operator `apply` on R^m: orthogonal iteration with a 2×2 Rayleigh–Ritz
/// step, from fixed start vectors (deterministic).
fn top2(m: usize, apply: &dyn Fn(&[f64]) -> Vec<f64>) -> ([Vec<f64>; 2], [f64; 2]) {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let normalize = |v: &mut Vec<f64>| {
        let n = dot(v, v).sqrt();
        if n > 0.0 {
            v.iter_mut().for_each(|x| *x /= n);
        }
        n
    };
    let mut rng = geometry::synth::Rng::new(0x9ca2);
    let mut v1: Vec<f64> = (0..m).map(|_| rng.normal()).collect();
    let mut v2: Vec<f64> = (0..m).map(|_| rng.normal()).collect();
    normalize(&mut v1);
    let mut lambda = [0.0f64; 2];
    for _ in 0..PCA_MAX_ITERATIONS {
        // Orthonormal basis of span(C v1, C v2) by Gram–Schmidt.
        let mut a = apply(&v1);
        let mut b = apply(&v2);
        if normalize(&mut a) == 0.0 {
            return ([vec![0.0; m], vec![0.0; m]], [0.0, 0.0]);
        }
        let p = dot(&b, &a);
        b.iter_mut().zip(&a).for_each(|(y, x)| *y -= p * x);
        if normalize(&mut b) <= 1e-300 {
            b = vec![0.0; m];
        }
        // Rayleigh–Ritz on the 2×2 projection.
        let (ca, cb) = (apply(&a), apply(&b));
        let (m11, m12, m22) = (dot(&a, &ca), dot(&a, &cb), dot(&b, &cb));
        let tr = m11 + m22;
        let det_term = ((m11 - m22) * (m11 - m22) / 4.0 + m12 * m12).sqrt();
        let (l1, l2) = (tr / 2.0 + det_term, (tr / 2.0 - det_term).max(0.0));
        // Eigenvector of the larger eigenvalue: (m12, l1 - m11) or (l1 - m22, m12).
        let (mut c, mut s) = if (l1 - m11).abs() > (l1 - m22).abs() {
            (m12, l1 - m11)
        } else {
            (l1 - m22, m12)
        };
        let r = (c * c + s * s).sqrt();
        if r > 0.0 {
            c /= r;
            s /= r;
        } else {
            (c, s) = (1.0, 0.0);
        }
        let n1: Vec<f64> = a.iter().zip(&b).map(|(x, y)| c * x + s * y).collect();
        let n2: Vec<f64> = a.iter().zip(&b).map(|(x, y)| -s * x + c * y).collect();
        let change = 1.0 - dot(&n1, &v1).abs();
        v1 = n1;
        v2 = n2;
        let done = change < 1e-11 && (lambda[0] - l1).abs() <= 1e-10 * l1.max(1e-300);
        lambda = [l1, l2];
        if done {
            break;
        }
    }
    ([v1, v2], lambda)
}

/// The labels the centroid-path figure follows: label pairs taken closest
/// first from `label_distance` until `k` labels are chosen (ties by index).
pub fn closest_labels(label_distance: &[(u32, u32, f64)], k: usize) -> Vec<usize> {
    let mut pairs: Vec<(u32, u32, f64)> = label_distance
        .iter()
        .copied()
        .filter(|p| p.2.is_finite())
        .collect();
    pairs.sort_by(|a, b| a.2.total_cmp(&b.2).then((a.0, a.1).cmp(&(b.0, b.1))));
    let mut out = Vec::new();
    for (a, b, _) in pairs {
        for l in [a as usize, b as usize] {
            if out.len() < k && !out.contains(&l) {
                out.push(l);
            }
        }
        if out.len() >= k {
            break;
        }
    }
    out
}

/// One label's centroid path in a PCA plane.
#[derive(Clone, Debug, PartialEq)]
pub struct CentroidPath {
    /// Label index.
    pub label: usize,
    /// `(step, x, y)` in step order.
    pub points: Vec<(u64, f64, f64)>,
}

/// One panel of the centroid-path figure.
#[derive(Clone, Debug, PartialEq)]
pub struct PathPanel {
    /// Layer shown.
    pub layer: usize,
    /// Share of the variance on the two axes.
    pub explained: [f64; 2],
    /// One path per chosen label.
    pub paths: Vec<CentroidPath>,
}

/// Figure 3: the chosen labels' centroids over the steps projected on the
/// two leading principal axes of all those centroids (per layer). `None` with
/// fewer than two steps or no labels.
pub fn centroid_paths(series: &CentroidSeries, labels: &[usize]) -> Option<PathPanel> {
    if series.steps.len() < 2 || labels.is_empty() {
        return None;
    }
    let mut points = Vec::new();
    let mut owner = Vec::new();
    for (i, &step) in series.steps.iter().enumerate() {
        for &l in labels {
            if let Some(Some(c)) = series.centroids.get(i).and_then(|cs| cs.get(l)) {
                points.push(c.clone());
                owner.push((l, step));
            }
        }
    }
    let width = points.first().map_or(0, Vec::len);
    if points.is_empty() || points.iter().any(|p| p.len() != width) {
        return None;
    }
    // Fit on at most PATH_FIT_STEPS steps, project all.
    let n_steps = series.steps.len();
    let fit_steps: Vec<u64> = if n_steps <= PATH_FIT_STEPS {
        series.steps.clone()
    } else {
        (0..PATH_FIT_STEPS)
            .map(|i| series.steps[i * (n_steps - 1) / (PATH_FIT_STEPS - 1)])
            .collect()
    };
    let fit: Vec<Vec<f64>> = points
        .iter()
        .zip(&owner)
        .filter(|(_, (_, s))| fit_steps.binary_search(s).is_ok())
        .map(|(p, _)| p.clone())
        .collect();
    let mut pca = pca2(&fit, true);
    pca.coords = points
        .iter()
        .map(|p| {
            let c: Vec<f64> = p.iter().zip(&pca.mean).map(|(x, m)| x - m).collect();
            let dot = |a: &[f64]| c.iter().zip(a).map(|(x, y)| x * y).sum::<f64>();
            [dot(&pca.axes[0]), dot(&pca.axes[1])]
        })
        .collect();
    let paths = labels
        .iter()
        .map(|&l| CentroidPath {
            label: l,
            points: owner
                .iter()
                .zip(&pca.coords)
                .filter(|((o, _), _)| *o == l)
                .map(|((_, s), c)| (*s, c[0], c[1]))
                .collect(),
        })
        .filter(|p| !p.points.is_empty())
        .collect();
    Some(PathPanel {
        layer: series.layer,
        explained: pca.explained,
        paths,
    })
}

/// Five-number summary of one layer's values.
#[derive(Clone, Debug, PartialEq)]
pub struct BoxStats {
    /// Layer index.
    pub layer: usize,
    /// Smallest value.
    pub min: f64,
    /// First quartile.
    pub q1: f64,
    /// Median.
    pub median: f64,
    /// Third quartile.
    pub q3: f64,
    /// Largest value.
    pub max: f64,
    /// Number of values.
    pub n: usize,
    /// Label with the largest value.
    pub argmax: usize,
}

/// Quantile `q` of sorted values by linear interpolation between order
/// statistics (the common "type 7" definition).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (pos - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Centroid movement (baseline → latest) per layer as box statistics over
/// the labels. Layers without a comparison are left out.
pub fn movement_boxes(latest: &[LayerSummary]) -> Vec<BoxStats> {
    latest
        .iter()
        .filter_map(|l| {
            let c = l.vs_baseline.as_ref()?;
            let vals: Vec<(usize, f64)> = c
                .centroid_movement
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.filter(|x| x.is_finite()).map(|x| (i, x)))
                .collect();
            if vals.is_empty() {
                return None;
            }
            let mut sorted: Vec<f64> = vals.iter().map(|v| v.1).collect();
            sorted.sort_by(f64::total_cmp);
            let argmax = vals
                .iter()
                .fold(vals[0], |m, v| if v.1 > m.1 { *v } else { m })
                .0;
            Some(BoxStats {
                layer: l.layer,
                min: sorted[0],
                q1: quantile(&sorted, 0.25),
                median: quantile(&sorted, 0.5),
                q3: quantile(&sorted, 0.75),
                max: sorted[sorted.len() - 1],
                n: sorted.len(),
                argmax,
            })
        })
        .collect()
}

/// One layer's similarity to the baseline over the steps.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerLine {
    /// Layer index.
    pub layer: usize,
    /// `(step, similarity)` where stored.
    pub points: Vec<(u64, f64)>,
}

/// The similarity-dynamics figure: one line per layer; the baseline itself
/// counts as similarity 1. `None` with fewer than two steps.
pub fn similarity_lines(h: &History) -> Option<Vec<LayerLine>> {
    if h.steps.len() < 2 {
        return None;
    }
    let lines: Vec<LayerLine> = h
        .similarity
        .iter()
        .map(|(layer, vals)| LayerLine {
            layer: *layer,
            points: h
                .steps
                .iter()
                .zip(vals)
                .filter_map(|(&s, v)| match v {
                    Some(v) if v.is_finite() => Some((s, *v)),
                    _ if Some(s) == h.baseline_step => Some((s, 1.0)),
                    _ => None,
                })
                .collect(),
        })
        .filter(|l| !l.points.is_empty())
        .collect();
    (!lines.is_empty()).then_some(lines)
}

/// One label's centroid difference vector (baseline → latest) projected.
#[derive(Clone, Debug, PartialEq)]
pub struct DiffPoint {
    /// Label index.
    pub label: usize,
    /// Coordinates on the layer's two leading axes.
    pub x: f64,
    /// See `x`.
    pub y: f64,
}

/// One panel of the difference-vector figure.
#[derive(Clone, Debug, PartialEq)]
pub struct DiffPanel {
    /// Layer shown.
    pub layer: usize,
    /// Share of the sum of squares on the two axes.
    pub explained: [f64; 2],
    /// One point per label present in both checkpoints.
    pub points: Vec<DiffPoint>,
}

/// The difference-vector figure: for a low and a high layer, every label's
/// centroid difference (latest − baseline) projected on the two leading
/// axes of those differences, not centred, so the origin is "did not move"
/// and both panels share one scale. Returns the panels and the half-width of
/// the shared square axis range. `None` without both checkpoints' centroids.
pub fn diff_panels(
    baseline: &[LayerSummary],
    latest: &[LayerSummary],
) -> Option<(Vec<DiffPanel>, f64)> {
    let first = latest.first()?.layer;
    let last = latest.last()?.layer;
    let layers: Vec<usize> = if first == last {
        vec![first]
    } else {
        vec![first, last]
    };
    let mut panels = Vec::new();
    for layer in layers {
        let b = baseline.iter().find(|l| l.layer == layer)?;
        let n = latest.iter().find(|l| l.layer == layer)?;
        let mut diffs = Vec::new();
        let mut owners = Vec::new();
        for (i, (cb, cn)) in b.centroids.iter().zip(&n.centroids).enumerate() {
            if let (Some(cb), Some(cn)) = (cb, cn) {
                if cb.len() == cn.len() && !cb.is_empty() {
                    diffs.push(cn.iter().zip(cb).map(|(x, y)| x - y).collect::<Vec<f64>>());
                    owners.push(i);
                }
            }
        }
        if diffs.is_empty() {
            return None;
        }
        let pca = pca2(&diffs, false);
        panels.push(DiffPanel {
            layer,
            explained: pca.explained,
            points: owners
                .iter()
                .zip(&pca.coords)
                .map(|(&label, c)| DiffPoint {
                    label,
                    x: c[0],
                    y: c[1],
                })
                .collect(),
        });
    }
    let half = panels
        .iter()
        .flat_map(|p| &p.points)
        .map(|p| p.x.abs().max(p.y.abs()))
        .fold(0.0f64, f64::max);
    Some((panels, half))
}

/// One cell of the layer table.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// Text shown.
    pub text: String,
    /// Whether the value got worse than at the baseline.
    pub worse: bool,
}

impl Cell {
    fn plain(text: String) -> Cell {
        Cell { text, worse: false }
    }
}

/// A column of the layer table: its header, a one-line explanation, and how
/// a cell is made from the layer at the baseline (when there is one) and at
/// the latest checkpoint. Adding a measure to the table is adding one entry
/// to [`COLUMNS`].
pub struct Column {
    /// Header text.
    pub header: &'static str,
    /// Shown as the header's tooltip and under the table.
    pub help: &'static str,
    /// The cell.
    pub cell: fn(Option<&LayerSummary>, &LayerSummary) -> Cell,
}

fn fmt_opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".to_owned(), f)
}

fn pct(v: f64) -> String {
    format!("{:.1} %", 100.0 * v)
}

/// `before → after` text, and whether `after` is worse (`lower_is_worse`
/// says which direction is worse); tolerant of rounding to the shown digits.
fn before_after(
    before: Option<f64>,
    after: Option<f64>,
    f: impl Fn(f64) -> String,
    lower_is_worse: bool,
) -> Cell {
    match (before, after) {
        (Some(b), Some(a)) => {
            let (tb, ta) = (f(b), f(a));
            let worse = tb != ta && if lower_is_worse { a < b } else { a > b };
            Cell {
                text: format!("{tb} → {ta}"),
                worse,
            }
        }
        (None, a) => Cell::plain(fmt_opt(a, f)),
        (Some(b), None) => Cell::plain(format!("{} → –", f(b))),
    }
}

/// The layer table's columns, in order.
pub const COLUMNS: &[Column] = &[
    Column {
        header: "clusters / labels",
        help: "DirectProbe clusters vs labels on train, baseline → latest; more clusters than labels means some label needs several linear pieces (less linear)",
        cell: |b, l| {
            let now = format!("{}/{}", l.clusters, l.labels_present);
            match b {
                Some(b) => {
                    let before = format!("{}/{}", b.clusters, b.labels_present);
                    let ratio =
                        |x: &LayerSummary| x.clusters as f64 / x.labels_present.max(1) as f64;
                    Cell {
                        worse: ratio(l) > ratio(b),
                        text: format!("{before} → {now}"),
                    }
                }
                None => Cell::plain(now),
            }
        },
    },
    Column {
        header: "test accuracy",
        help: "nearest-cluster accuracy of the test split, baseline → latest",
        cell: |b, l| before_after(b.and_then(|b| b.test_accuracy), l.test_accuracy, pct, true),
    },
    Column {
        header: "classifier test accuracy",
        help: "the two-layer MLP probe's test accuracy (mean ± std over 5 seeds), baseline → latest; – when the run does not train it (`classifier = \"mlp\"`)",
        cell: |b, l| {
            let mean = |s: &LayerSummary| s.classifier_test_accuracy.map(|(m, _)| m);
            let mut cell = before_after(b.and_then(mean), mean(l), pct, true);
            if let Some((_, sd)) = l.classifier_test_accuracy {
                cell.text.push_str(&format!(" ± {:.1}", 100.0 * sd));
            }
            cell
        },
    },
    Column {
        header: "train/test similarity",
        help: "Pearson correlation of the label-distance vectors of train and test, baseline → latest",
        cell: |b, l| {
            before_after(
                b.and_then(|b| b.train_test_similarity),
                l.train_test_similarity,
                |v| format!("{v:.3}"),
                true,
            )
        },
    },
    Column {
        header: "min distance grew / shrank",
        help: "labels whose min distance to the other labels grew / shrank since the baseline",
        cell: |_, l| match &l.vs_baseline {
            Some(c) => Cell {
                text: format!("{} / {}", c.grew, c.shrank),
                worse: c.shrank > c.grew,
            },
            None => Cell::plain("–".to_owned()),
        },
    },
    Column {
        header: "mean change",
        help: "mean change of the labels' min distance since the baseline (negative: labels moved closer)",
        cell: |_, l| match l.vs_baseline.as_ref().and_then(|c| c.mean_change) {
            Some(m) => Cell {
                text: format!("{m:+.3}"),
                worse: m < 0.0,
            },
            None => Cell::plain("–".to_owned()),
        },
    },
];

/// One row of the layer table.
#[derive(Clone, Debug, PartialEq)]
pub struct TableRow {
    /// Layer index.
    pub layer: usize,
    /// One cell per [`COLUMNS`] entry.
    pub cells: Vec<Cell>,
}

/// The layer table: one row per layer of the latest checkpoint.
pub fn table(baseline: &[LayerSummary], latest: &[LayerSummary]) -> Vec<TableRow> {
    latest
        .iter()
        .map(|l| {
            let b = baseline.iter().find(|b| b.layer == l.layer);
            TableRow {
                layer: l.layer,
                cells: COLUMNS.iter().map(|c| (c.cell)(b, l)).collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn pca_of_points_on_a_line_finds_the_line() {
        // Points t·(3, 4, 0) + (1, 1, 1): one direction, (0.6, 0.8, 0).
        let pts: Vec<Vec<f64>> = (0..7)
            .map(|t| {
                let t = t as f64 - 2.0;
                vec![1.0 + 3.0 * t, 1.0 + 4.0 * t, 1.0]
            })
            .collect();
        let p = pca2(&pts, true);
        assert!(close(p.axes[0][0], 0.6, 1e-9) && close(p.axes[0][1], 0.8, 1e-9));
        assert!(close(p.explained[0], 1.0, 1e-12));
        assert_eq!(p.explained[1], 0.0);
        assert_eq!(p.axes[1], vec![0.0; 3]);
        for (i, c) in p.coords.iter().enumerate() {
            let t = i as f64 - 2.0 - 1.0; // mean of t is 1
            assert!(close(c[0], 5.0 * t, 1e-9), "{c:?}");
        }
    }

    #[test]
    fn pca_of_a_rotated_ellipse_recovers_its_axes_and_variances() {
        // A 2-D ellipse with semi-axes 5 and 2, rotated by 30° and embedded in
        // the plane spanned by e1 and e3 of R^4, centred at (1, 2, 3, 4).
        let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
        let pts: Vec<Vec<f64>> = (0..12)
            .map(|i| {
                let a = i as f64 * std::f64::consts::PI / 6.0;
                let (u, v) = (5.0 * a.cos(), 2.0 * a.sin());
                let (x, z) = (c * u - s * v, s * u + c * v);
                vec![1.0 + x, 2.0, 3.0 + z, 4.0]
            })
            .collect();
        let p = pca2(&pts, true);
        // Axis 1 = ±(c, 0, s, 0), sign: largest component positive.
        assert!(
            close(p.axes[0][0], c, 1e-8) && close(p.axes[0][2], s, 1e-8),
            "{:?}",
            p.axes
        );
        assert!(close(p.axes[1][0].abs(), s, 1e-8) && close(p.axes[1][2].abs(), c, 1e-8));
        assert!(p.axes[1][2] > 0.0);
        // Variances 25/2 and 4/2 over a full turn: shares 25/29 and 4/29.
        assert!(close(p.explained[0], 25.0 / 29.0, 1e-10));
        assert!(close(p.explained[1], 4.0 / 29.0, 1e-10));
        assert!(close(p.mean[0], 1.0, 1e-12) && close(p.mean[3], 4.0, 1e-12));
        assert!(close(p.coords[0][0], 5.0, 1e-8) && close(p.coords[0][1].abs(), 0.0, 1e-8));
    }

    #[test]
    fn pca_with_fewer_points_than_dimensions_goes_through_the_gram_matrix() {
        // The same ellipse in R^40 (12 points < 40 dimensions): same axes
        // (embedded), same variance shares, same coordinates up to sign.
        let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
        let pts: Vec<Vec<f64>> = (0..12)
            .map(|i| {
                let a = i as f64 * std::f64::consts::PI / 6.0;
                let (u, v) = (5.0 * a.cos(), 2.0 * a.sin());
                let mut p = vec![0.5; 40];
                p[7] += c * u - s * v;
                p[31] += s * u + c * v;
                p
            })
            .collect();
        let p = pca2(&pts, true);
        assert!(
            close(p.axes[0][7], c, 1e-8) && close(p.axes[0][31], s, 1e-8),
            "{:?}",
            p.axes[0]
        );
        assert!(close(p.explained[0], 25.0 / 29.0, 1e-10));
        assert!(close(p.explained[1], 4.0 / 29.0, 1e-10));
        assert!(close(p.coords[0][0], 5.0, 1e-8) && close(p.coords[3][1].abs(), 2.0, 1e-8));
        let norm: f64 = p.axes[1].iter().map(|v| v * v).sum();
        assert!(close(norm, 1.0, 1e-12));
    }

    #[test]
    fn uncentred_pca_keeps_the_origin() {
        // Two points on a ray from the origin: not centred, the axis is the
        // ray and the coordinates are the distances from the origin.
        let p = pca2(&[vec![0.0, 2.0], vec![0.0, 4.0]], false);
        assert_eq!(p.mean, vec![0.0, 0.0]);
        assert!(close(p.coords[0][0], 2.0, 1e-12) && close(p.coords[1][0], 4.0, 1e-12));
        assert_eq!(
            pca2(&vec![vec![1.0, 1.0]; 3], true).coords,
            vec![[0.0, 0.0]; 3]
        );
        assert!(pca2(&[], true).coords.is_empty());
    }

    #[test]
    fn top_and_bottom_three_are_ranked_and_never_overlap() {
        let changes: Vec<(usize, f64)> = [0.5, -1.0, 2.0, 0.0, 0.5, -3.0, 1.0, 0.2]
            .into_iter()
            .enumerate()
            .collect();
        let (most, least) = top_bottom(&changes);
        assert_eq!(most, [2, 6, 0]); // 2.0, 1.0, then 0.5 by the smaller index
        assert_eq!(least, [5, 1, 3]); // -3.0, -1.0, 0.0
        let (most, least) = top_bottom(&changes[..5]);
        assert_eq!((most, least), (vec![2, 0], vec![1, 3]));
        assert_eq!(top_bottom(&changes[..1]), (vec![], vec![]));
        assert_eq!(highlight_count(50), 3);
    }

    fn history(values: &[[f64; 4]]) -> History {
        History {
            run: "r".into(),
            task: "t".into(),
            labels: ["A", "B", "C", "D"].map(String::from).to_vec(),
            steps: (0..values.len() as u64).map(|s| s * 10).collect(),
            baseline_step: Some(0),
            focus_layer: 3,
            focus_min_distance: values
                .iter()
                .map(|v| v.iter().map(|&x| Some(x)).collect())
                .collect(),
            ..History::default()
        }
    }

    #[test]
    fn min_distance_figure_highlights_by_change_from_the_baseline() {
        let h = history(&[
            [1.0, 1.0, 1.0, 1.0],
            [9.0, 0.0, 1.0, 1.0],
            [1.5, 0.2, 3.0, 1.0],
        ]);
        let f = min_distance_figure(&h).unwrap();
        assert_eq!(f.layer, 3);
        let by_label = |l: usize| f.lines.iter().find(|x| x.label == l).unwrap();
        // Changes: A +0.5, B -0.8, C +2.0, D 0 → two per side with 4 labels.
        assert_eq!(by_label(2).emphasis, Emphasis::GrewMost(0));
        assert_eq!(by_label(0).emphasis, Emphasis::GrewMost(1));
        assert_eq!(by_label(1).emphasis, Emphasis::GrewLeast(0));
        assert_eq!(by_label(3).emphasis, Emphasis::GrewLeast(1));
        assert!(close(by_label(1).change.unwrap(), -0.8, 1e-12));
        assert_eq!(by_label(2).points, vec![(0, 1.0), (10, 1.0), (20, 3.0)]);
        // Highlighted lines are drawn last, the largest rank first.
        assert_eq!(f.lines.last().unwrap().label, 2);
        assert!(min_distance_figure(&history(&[[1.0; 4]])).is_none());
    }

    #[test]
    fn closest_labels_follow_the_closest_pairs() {
        let d = [
            (0, 1, 3.0),
            (0, 2, 1.0),
            (1, 2, 2.0),
            (2, 3, 1.0),
            (1, 3, 5.0),
        ];
        assert_eq!(closest_labels(&d, 3), [0, 2, 3]);
        assert_eq!(closest_labels(&d, 9), [0, 2, 3, 1]);
        assert!(closest_labels(&[], 3).is_empty());
    }

    #[test]
    fn centroid_paths_project_each_label_in_step_order() {
        let series = CentroidSeries {
            layer: 2,
            steps: vec![0, 5, 9],
            centroids: (0..3)
                .map(|i| {
                    let t = i as f64;
                    vec![Some(vec![t, 0.0, 0.0]), None, Some(vec![-t, 0.0, 0.1 * t])]
                })
                .collect(),
        };
        let p = centroid_paths(&series, &[0, 1, 2]).unwrap();
        assert_eq!(p.layer, 2);
        assert_eq!(p.paths.len(), 2, "label 1 has no centroid and no path");
        assert_eq!(p.paths[0].label, 0);
        let steps: Vec<u64> = p.paths[1].points.iter().map(|q| q.0).collect();
        assert_eq!(steps, [0, 5, 9]);
        // Label 0 and 2 move in opposite directions along the first axis.
        let dx = |k: usize| p.paths[k].points[2].1 - p.paths[k].points[0].1;
        assert!(dx(0) * dx(1) < 0.0);
        assert!(
            centroid_paths(
                &CentroidSeries {
                    steps: vec![1],
                    ..series
                },
                &[0]
            )
            .is_none()
        );
    }

    fn summary(layer: usize, moves: &[f64]) -> LayerSummary {
        LayerSummary {
            layer,
            clusters: 4,
            labels_present: 4,
            vs_baseline: Some(Comparison {
                centroid_movement: moves.iter().map(|&m| Some(m)).collect(),
                ..Comparison::default()
            }),
            ..LayerSummary::default()
        }
    }

    #[test]
    fn box_statistics_use_interpolated_quartiles() {
        let b = &movement_boxes(&[summary(1, &[4.0, 1.0, 3.0, 2.0, 5.0])])[0];
        assert_eq!(
            (b.min, b.q1, b.median, b.q3, b.max, b.n, b.argmax),
            (1.0, 2.0, 3.0, 4.0, 5.0, 5, 4)
        );
        assert!(close(quantile(&[1.0, 2.0], 0.25), 1.25, 1e-15));
        let mut none = summary(0, &[]);
        none.vs_baseline = None;
        assert!(movement_boxes(&[none]).is_empty());
    }

    #[test]
    fn diff_panels_share_one_scale_about_the_origin() {
        let with = |layer: usize, c: Vec<Vec<f64>>| LayerSummary {
            layer,
            centroids: c.into_iter().map(Some).collect(),
            ..LayerSummary::default()
        };
        let base = [
            with(0, vec![vec![0.0, 0.0], vec![1.0, 1.0]]),
            with(6, vec![vec![0.0, 0.0], vec![1.0, 1.0]]),
        ];
        let now = [
            with(0, vec![vec![0.1, 0.0], vec![1.0, 1.2]]),
            with(6, vec![vec![3.0, 0.0], vec![1.0, -3.0]]),
        ];
        let (panels, half) = diff_panels(&base, &now).unwrap();
        assert_eq!(panels.iter().map(|p| p.layer).collect::<Vec<_>>(), [0, 6]);
        assert!(close(half, 4.0, 1e-9), "{half}");
        let r = |p: &DiffPoint| p.x.hypot(p.y);
        assert!(close(r(&panels[0].points[1]), 0.2, 1e-9));
        assert!(close(r(&panels[1].points[0]), 3.0, 1e-9));
        assert!(diff_panels(&[], &now).is_none());
    }

    #[test]
    fn table_cells_mark_what_got_worse() {
        let mut b = summary(5, &[]);
        b.vs_baseline = None;
        b.test_accuracy = Some(0.8);
        b.train_test_similarity = Some(0.9);
        b.classifier_test_accuracy = Some((0.9, 0.01));
        let mut l = summary(5, &[]);
        l.clusters = 6;
        l.test_accuracy = Some(0.75);
        l.classifier_test_accuracy = Some((0.85, 0.02));
        l.train_test_similarity = Some(0.95);
        l.vs_baseline = Some(Comparison {
            grew: 1,
            shrank: 3,
            mean_change: Some(-0.25),
            ..Comparison::default()
        });
        let rows = table(std::slice::from_ref(&b), std::slice::from_ref(&l));
        let cells: Vec<(&str, bool)> = rows[0]
            .cells
            .iter()
            .map(|c| (c.text.as_str(), c.worse))
            .collect();
        assert_eq!(
            cells,
            [
                ("4/4 → 6/4", true),
                ("80.0 % → 75.0 %", true),
                ("90.0 % → 85.0 % ± 2.0", true),
                ("0.900 → 0.950", false),
                ("1 / 3", true),
                ("-0.250", true),
            ]
        );
        assert_eq!(rows[0].cells.len(), COLUMNS.len());
        // At the baseline itself: values only, nothing marked.
        let rows = table(&[], std::slice::from_ref(&b));
        assert!(rows[0].cells.iter().all(|c| !c.worse));
        assert_eq!(rows[0].cells[1].text, "80.0 %");
        assert_eq!(rows[0].cells[2].text, "90.0 % ± 1.0");
        // A run without the classifier shows a dash.
        b.classifier_test_accuracy = None;
        let rows = table(&[], std::slice::from_ref(&b));
        assert_eq!(rows[0].cells[2].text, "–");
        // Equal after rounding is not worse.
        let c = before_after(Some(0.80001), Some(0.8), pct, true);
        assert!(!c.worse);
    }
}
