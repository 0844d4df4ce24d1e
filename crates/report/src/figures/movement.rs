//! The centroid-movement figure: per layer, box statistics of how far the
//! labels' centroids moved between the baseline and the latest checkpoint
//! (the stored comparison's `centroid_movement`).
//!
//! Summarises stored movements; it measures none and draws nothing.

use super::LayerSummary;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::{close, summary};

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
}
