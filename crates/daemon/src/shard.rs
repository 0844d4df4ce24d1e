//! Sharded mode: which (task, layer) pairs of a run one replica analyses.
//!
//! A run too big for one process is split over `n` replicas, each started
//! with its own shard `i/n` (`--shard i/n`, `PROBEWATCH_SHARD=i/n`, or the
//! ordinal `-<i>` that ends a StatefulSet pod's host name, with
//! `--shard-count n`). The split is round-robin over the sorted list of the
//! checkpoint's (task, layer) pairs: sort by task name, then layer number,
//! and give the pair at position `k` to shard `k mod n`. Every replica sees
//! the same dump, so the same list, so the shards are disjoint and together
//! cover every pair; neighbouring layers (similar cost) land on different
//! replicas, so the work is balanced to within one pair.
//!
//! This module only decides; it reads nothing (the daemon lists the pairs
//! from the dump and the run's `tasks`/`layers`) and knows nothing of
//! metrics (the daemon exports `probewatch_shard_info`).

use std::fmt;
use std::str::FromStr;

/// One replica's share: shard `index` of `count` (0 ≤ index < count).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// A shard specification that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// Not `i/n` with integers.
    #[error("shard {0:?} is not of the form i/n (e.g. 0/2): two non-negative integers")]
    Syntax(String),
    /// `n` is 0, or `i` ≥ `n`.
    #[error("shard {index}/{count}: need 0 <= i < n and n >= 1")]
    Range {
        /// The index given.
        index: u32,
        /// The count given.
        count: u32,
    },
    /// The host name does not end in `-<ordinal>`.
    #[error(
        "host name {0:?} does not end in -<ordinal> (as a StatefulSet pod's does); \
         pass --shard i/n instead"
    )]
    NoOrdinal(String),
}

impl Shard {
    /// Shard `index` of `count`.
    pub fn new(index: u32, count: u32) -> Result<Shard, ShardError> {
        if count == 0 || index >= count {
            return Err(ShardError::Range { index, count });
        }
        Ok(Shard { index, count })
    }

    /// The shard of a StatefulSet pod: its host name ends in `-<ordinal>`
    /// (`probewatch-2` is shard 2 of `count`).
    pub fn from_hostname(hostname: &str, count: u32) -> Result<Shard, ShardError> {
        let no = || ShardError::NoOrdinal(hostname.to_owned());
        // A FQDN's first label is the pod name.
        let name = hostname.split('.').next().unwrap_or(hostname);
        let (_, ordinal) = name.rsplit_once('-').ok_or_else(no)?;
        if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
            return Err(no());
        }
        let index = ordinal.parse().map_err(|_| no())?;
        Shard::new(index, count)
    }

    /// This replica's index, from 0.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Number of replicas.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The pairs this shard analyses, sorted; `pairs` may come in any order
    /// and with repeats.
    pub fn select(&self, pairs: &[(String, usize)]) -> Vec<(String, usize)> {
        let mut all = pairs.to_vec();
        all.sort();
        all.dedup();
        all.into_iter()
            .enumerate()
            .filter(|(k, _)| k % self.count as usize == self.index as usize)
            .map(|(_, p)| p)
            .collect()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Shard, ShardError> {
        let syntax = || ShardError::Syntax(s.to_owned());
        let (i, n) = s.trim().split_once('/').ok_or_else(syntax)?;
        let i = i.trim().parse().map_err(|_| syntax())?;
        let n = n.trim().parse().map_err(|_| syntax())?;
        Shard::new(i, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs() -> Vec<(String, usize)> {
        let mut v = Vec::new();
        for task in ["upos", "deprel"] {
            for layer in [12, 0, 3, 1, 2, 10] {
                v.push((task.to_owned(), layer));
            }
        }
        v
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!("1/3".parse::<Shard>(), Ok(Shard { index: 1, count: 3 }));
        assert_eq!(
            " 0 / 1 ".parse::<Shard>().map(|s| s.to_string()),
            Ok("0/1".to_owned())
        );
        assert!(matches!(
            "3/3".parse::<Shard>(),
            Err(ShardError::Range { .. })
        ));
        assert!(matches!(
            "0/0".parse::<Shard>(),
            Err(ShardError::Range { .. })
        ));
        assert!(matches!("1".parse::<Shard>(), Err(ShardError::Syntax(_))));
        assert!(matches!(
            "-1/2".parse::<Shard>(),
            Err(ShardError::Syntax(_))
        ));
    }

    #[test]
    fn hostname_ordinal() {
        assert_eq!(Shard::from_hostname("probewatch-2", 3), Shard::new(2, 3));
        assert_eq!(
            Shard::from_hostname("pw-shard-0.pw.ns.svc.cluster.local", 2),
            Shard::new(0, 2)
        );
        assert!(matches!(
            Shard::from_hostname("probewatch-3", 3),
            Err(ShardError::Range { .. })
        ));
        assert!(matches!(
            Shard::from_hostname("laptop", 2),
            Err(ShardError::NoOrdinal(_))
        ));
        assert!(matches!(
            Shard::from_hostname("web-abc", 2),
            Err(ShardError::NoOrdinal(_))
        ));
    }

    #[test]
    fn shards_are_disjoint_cover_everything_and_balance() {
        let all = pairs();
        for n in 1..=5u32 {
            let mut union = Vec::new();
            let mut sizes = Vec::new();
            for i in 0..n {
                let mine = Shard::new(i, n).unwrap().select(&all);
                sizes.push(mine.len());
                union.extend(mine);
            }
            let before = union.len();
            union.sort();
            union.dedup();
            assert_eq!(union.len(), before, "overlap for n = {n}");
            let mut expected = all.clone();
            expected.sort();
            assert_eq!(union, expected, "n = {n}");
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(hi - lo <= 1, "n = {n}: {sizes:?}");
        }
        // Order of the input does not matter; neighbours alternate.
        let mut reversed = all.clone();
        reversed.reverse();
        let s = Shard::new(0, 2).unwrap();
        assert_eq!(s.select(&all), s.select(&reversed));
        assert_eq!(
            s.select(&all),
            [
                ("deprel", 0),
                ("deprel", 2),
                ("deprel", 10),
                ("upos", 0),
                ("upos", 2),
                ("upos", 10)
            ]
            .map(|(t, l)| (t.to_owned(), l))
        );
    }
}
