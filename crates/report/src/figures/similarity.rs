//! The similarity-dynamics figure: each layer's stored spatial similarity
//! to the baseline over the steps, one line per layer.
//!
//! Collects stored values (the baseline counts as 1); it computes no
//! similarity and draws nothing.

use super::History;

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
