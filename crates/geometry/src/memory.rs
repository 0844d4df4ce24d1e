//! What one analysis of a (task, layer) leaves behind for the next checkpoint
//! of the same run: warm starts for every hull solve, the previous nearest
//! cluster of every evaluated point, and the partitions (for the
//! frozen-partition mode).
//!
//! Warm starts change how fast a solve converges, never what it certifies:
//! a separability verdict is the same certified fact whatever the starting
//! point, and a distance lands in the same certified interval (relative gap
//! `rel_gap`). So an incremental analysis gives the cold analysis's clusters
//! and verdicts, and its distances within the solver tolerance (tested in
//! `measures`). Solves are keyed by *what* they solve (the label pair, or the
//! member sets of the two clusters), not by position, so a memory built on a
//! different item set is harmless: unmatched keys are cold solves and
//! out-of-range positions are ignored by the solver. It also keeps the last
//! report with a fingerprint of its input: a layer whose input did not
//! change (frozen during fine-tuning) gets that report again, bit for bit.
//! This module holds data only; it does no solving and no I/O. Its parts
//! live with their users and are re-exported here: the compact warm start
//! is the solver's ([`CompactWarm`], [`crate::hull`]), a DirectProbe run's
//! warm starts and member-list keys are DirectProbe's
//! ([`ClusteringMemory`], [`members_key`]), and the report kept is
//! [`crate::layer_report`]'s.

use std::collections::HashMap;

use crate::directprobe::Cluster;
pub use crate::directprobe::{ClusteringMemory, members_key};
pub use crate::hull::CompactWarm;
use crate::layer_report::LayerReport;

/// A 64-bit key of a cluster: its label and its member rows (sorted, as
/// final clusters hold them).
pub fn cluster_key(c: &Cluster) -> u64 {
    members_key(c.label, &c.members)
}

/// Everything kept from one (task, layer) analysis.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerMemory {
    /// Rows of the layer it was built on (a sanity check for callers).
    pub rows: usize,
    /// Train-split clustering warm starts.
    pub train: ClusteringMemory,
    /// Test-split clustering warm starts (train/test similarity).
    pub test: ClusteringMemory,
    /// Cluster-distance solves, by the two clusters' keys (smaller first).
    pub distances: HashMap<(u64, u64), CompactWarm>,
    /// Per row: the key of its nearest cluster last time (0 = none).
    pub nearest: HashMap<usize, u64>,
    /// The train partition.
    pub train_clusters: Vec<Cluster>,
    /// The test partition, when the train/test similarity ran.
    pub test_clusters: Option<Vec<Cluster>>,
    /// Core-stage label-hull solves on the fit split, by label pair.
    pub core_train: HashMap<(u32, u32), CompactWarm>,
    /// Core-stage label-hull solves on the test split, by label pair.
    pub core_test: HashMap<(u32, u32), CompactWarm>,
    /// Fingerprint of the input the core stage of the report below was
    /// computed from.
    pub core_key: [u64; 2],
    /// Fingerprint of the input the report below was computed from (all
    /// stages; zero when only the core stage ran).
    pub input_key: [u64; 2],
    /// The report computed from that input (re-used when the next input is
    /// the same, e.g. a layer frozen during fine-tuning).
    pub report: Option<Box<LayerReport>>,
    /// Whether this memory's report was re-used rather than computed.
    pub reused: bool,
}

impl LayerMemory {
    /// Approximate heap bytes held (for logs and limits).
    pub fn bytes(&self) -> usize {
        let cw = |m: &HashMap<_, CompactWarm>| m.values().map(|w| w.bytes() + 24).sum::<usize>();
        let cm = |c: &ClusteringMemory| {
            c.label_pairs
                .values()
                .map(|w| w.bytes() + 16)
                .sum::<usize>()
                + cw(&c.blocks)
        };
        let parts = |cs: &[Cluster]| cs.iter().map(|c| c.members.len() * 8 + 32).sum::<usize>();
        let lp = |m: &HashMap<(u32, u32), CompactWarm>| {
            m.values().map(|w| w.bytes() + 16).sum::<usize>()
        };
        cm(&self.train)
            + cm(&self.test)
            + lp(&self.core_train)
            + lp(&self.core_test)
            + cw(&self.distances)
            + self.nearest.len() * 16
            + parts(&self.train_clusters)
            + self.test_clusters.as_deref().map_or(0, parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_key_depends_on_label_and_members() {
        let a = Cluster {
            label: 1,
            members: vec![1, 2, 3],
        };
        let b = Cluster {
            label: 2,
            members: vec![1, 2, 3],
        };
        let c = Cluster {
            label: 1,
            members: vec![1, 2, 4],
        };
        assert_ne!(cluster_key(&a), cluster_key(&b));
        assert_ne!(cluster_key(&a), cluster_key(&c));
        assert_eq!(cluster_key(&a), cluster_key(&a.clone()));
    }
}
