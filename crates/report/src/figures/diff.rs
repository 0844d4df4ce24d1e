//! The difference-vector figure: every label's centroid displacement
//! (latest − baseline) on a low and a high layer, projected on each layer's
//! two leading axes of displacement about the origin, on one shared scale.
//!
//! Pure projection of stored centroids; it does not draw the panels.

use super::LayerSummary;
use super::pca::pca2;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::close;

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
}
