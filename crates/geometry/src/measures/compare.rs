//! Comparisons of layer reports: one layer now against a reference (the
//! baseline or the predecessor) — centroid movement, the Pearson similarity
//! of the label-distance vectors, how many labels' min distance grew or
//! shrank — and the Pearson helpers the train/test similarities use too.
//! Pure functions of two reports; no solving.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::layer_report::LayerReport;

/// Pearson correlation of two equally long vectors; `None` when shorter
/// than 2 or either has zero variance.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len().min(y.len());
    if n < 2 {
        return None;
    }
    let mx = x[..n].iter().sum::<f64>() / n as f64;
    let my = y[..n].iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for k in 0..n {
        let (a, b) = (x[k] - mx, y[k] - my);
        sxy += a * b;
        sxx += a * a;
        syy += b * b;
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some((sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// Pearson correlation of two label-distance lists over the label pairs
/// present in both.
pub fn distance_similarity(x: &[(u32, u32, f64)], y: &[(u32, u32, f64)]) -> Option<f64> {
    let ym: BTreeMap<(u32, u32), f64> = y.iter().map(|&(a, b, d)| ((a, b), d)).collect();
    let (mut u, mut v) = (Vec::new(), Vec::new());
    for &(a, b, d) in x {
        if let Some(&e) = ym.get(&(a, b)) {
            u.push(d);
            v.push(e);
        }
    }
    pearson(&u, &v)
}

/// One layer now against a reference (the baseline or the predecessor).
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct LayerComparison {
    /// Per label: Euclidean distance between its centroids (`None` when
    /// absent from either).
    pub centroid_movement: Vec<Option<f64>>,
    /// `centroid_movement` divided by the reference's scale.
    pub centroid_movement_normalized: Vec<Option<f64>>,
    /// Pearson correlation of the label-distance vectors (common pairs).
    pub similarity: Option<f64>,
    /// Labels whose min distance grew.
    pub grew: usize,
    /// Labels whose min distance shrank.
    pub shrank: usize,
    /// Labels whose normalized min distance grew.
    pub grew_normalized: usize,
    /// Labels whose normalized min distance shrank.
    pub shrank_normalized: usize,
    /// Mean change of the min label distance over labels present in both.
    pub mean_change: Option<f64>,
    /// Mean change of the normalized min label distance.
    pub mean_change_normalized: Option<f64>,
}

/// Why two layer reports cannot be compared.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum CompareError {
    /// The reports have different label sets.
    #[error("label count differs: {reference} in the reference, {current} now")]
    Labels {
        /// Labels in the reference.
        reference: usize,
        /// Labels now.
        current: usize,
    },
    /// The representations have different widths.
    #[error("dimension differs: {reference} in the reference, {current} now")]
    Dim {
        /// Width of the reference.
        reference: usize,
        /// Width now.
        current: usize,
    },
    /// A report was made without centroids (`keep_centroids`).
    #[error("a report has no centroids (analyse with centroids kept)")]
    NoCentroids,
}

/// Compares `current` against `reference` (same task and layer).
pub fn compare(
    reference: &LayerReport,
    current: &LayerReport,
) -> Result<LayerComparison, CompareError> {
    let (nr, nc) = (
        reference.min_label_distance.len(),
        current.min_label_distance.len(),
    );
    if nr != nc {
        return Err(CompareError::Labels {
            reference: nr,
            current: nc,
        });
    }
    if reference.centroids.len() != nr || current.centroids.len() != nc {
        return Err(CompareError::NoCentroids);
    }
    let dim = |r: &LayerReport| r.centroids.iter().flatten().map(Vec::len).next();
    if let (Some(dr), Some(dc)) = (dim(reference), dim(current)) {
        if dr != dc {
            return Err(CompareError::Dim {
                reference: dr,
                current: dc,
            });
        }
    }
    let centroid_movement: Vec<Option<f64>> = reference
        .centroids
        .iter()
        .zip(&current.centroids)
        .map(|(a, b)| match (a, b) {
            (Some(a), Some(b)) => Some(
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).powi(2))
                    .sum::<f64>()
                    .sqrt(),
            ),
            _ => None,
        })
        .collect();
    let centroid_movement_normalized = centroid_movement
        .iter()
        .map(|m| {
            m.map(|v| {
                if reference.scale > 0.0 {
                    v / reference.scale
                } else {
                    0.0
                }
            })
        })
        .collect();
    let similarity = distance_similarity(&reference.label_distance, &current.label_distance);
    let (mut grew, mut shrank, mut grew_n, mut shrank_n) = (0, 0, 0, 0);
    let (mut sum, mut sumn, mut n) = (0.0, 0.0, 0usize);
    let pairs = reference
        .min_label_distance
        .iter()
        .zip(&current.min_label_distance)
        .zip(
            reference
                .min_label_distance_normalized
                .iter()
                .zip(&current.min_label_distance_normalized),
        );
    for ((a, b), (an, bn)) in pairs {
        if let (Some(a), Some(b), Some(an), Some(bn)) = (a, b, an, bn) {
            grew += usize::from(b > a);
            shrank += usize::from(b < a);
            grew_n += usize::from(bn > an);
            shrank_n += usize::from(bn < an);
            sum += b - a;
            sumn += bn - an;
            n += 1;
        }
    }
    Ok(LayerComparison {
        centroid_movement,
        centroid_movement_normalized,
        similarity,
        grew,
        shrank,
        grew_normalized: grew_n,
        shrank_normalized: shrank_n,
        mean_change: (n > 0).then(|| sum / n as f64),
        mean_change_normalized: (n > 0).then(|| sumn / n as f64),
    })
}
