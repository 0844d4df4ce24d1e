//! The centroid-path figure (the study's Figure 3): which labels to follow
//! (the closest pairs) and their centroids over the steps projected on each
//! layer's two leading principal axes.
//!
//! It fits the projection on at most [`PATH_FIT_STEPS`] steps and projects
//! every step; it does not draw the paths ([`crate::svg`]).

use super::CentroidSeries;
use super::pca::pca2;

/// Steps the centroid-path PCA is fitted on at most (evenly spaced, first
/// and last included); every step is then projected.
pub const PATH_FIT_STEPS: usize = 40;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
