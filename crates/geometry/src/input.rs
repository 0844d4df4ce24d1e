//! What every stage of the numeric core takes in and how a caller stops it:
//! one layer's points with labels and splits ([`LayerInput`]), the split
//! names the stages look for ([`TRAIN`], [`TEST`]), and the interruption protocol
//! ([`KeepGoing`], [`Interrupted`], [`never_stop`]).
//!
//! The lowest module of the crate: it imports nothing from the others, so
//! the measures, DirectProbe and the classifier probe can all share these
//! types without depending on each other. It holds types only; it computes
//! nothing and looks at no clock.

/// One layer's points with labels and splits.
#[derive(Clone, Copy, Debug)]
pub struct LayerInput<'a> {
    /// Row-major `f32` matrix, `n × dim`.
    pub data: &'a [f32],
    /// Number of columns.
    pub dim: usize,
    /// Label index per row.
    pub labels: &'a [u32],
    /// Number of label names.
    pub n_labels: usize,
    /// Split index per row.
    pub split: &'a [u8],
    /// Split names (index → name).
    pub split_names: &'a [String],
    /// The split clustered (and the classifier fitted on): [`TRAIN`], or
    /// `subtrain` in the memorisation setting. Every other split is
    /// evaluated against its clusters.
    pub fit_split: &'a str,
}

/// The name of the split fitted on by default.
pub const TRAIN: &str = "train";

/// The name of the split the train/test similarities compare against.
pub const TEST: &str = "test";

/// The caller stopped a stage before it finished: its `keep_going` answered
/// false. Nothing of the stage is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by the caller")]
pub struct Interrupted;

/// Asked between steps of a long stage; `false` stops it with
/// [`Interrupted`]. It may block (the caller pauses the work inside it). The
/// core never looks at a clock: budgets and pauses are the caller's.
pub type KeepGoing<'a> = &'a (dyn Fn() -> bool + Sync);

/// A [`KeepGoing`] that never stops.
pub fn never_stop() -> bool {
    true
}
