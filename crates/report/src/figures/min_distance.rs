//! The min-distance figure (the study's Figure 2): every label's min
//! distance in the focus layer over the steps, the labels whose distance
//! grew most and least since the baseline highlighted.
//!
//! Chooses and ranks the lines; it does not draw them ([`crate::svg`]).

use super::History;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::close;

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
}
