//! The layer table: one row per layer, one cell per entry of [`COLUMNS`]
//! (baseline → latest, marked when it got worse).
//!
//! Formats stored values as text; the page writes the HTML.

use super::LayerSummary;

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
    use crate::figures::{Comparison, summary};

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
