//! The `[limits]` table: caps on what the daemon accepts (checkpoint size,
//! items, labels and layers of a task, HTTP concurrency and request heads),
//! their defaults, and [`Limits::exceeded`], the one test of a task against
//! them.
//!
//! Deliberately not here: reading the table from the file (that is the
//! `check` module's, with the other options) and acting on a cap (the
//! watcher refuses a checkpoint, the supervisor a probe set, the server a
//! request).

/// Default [`Limits::max_file_bytes`]: 64 GiB (a BERT-large checkpoint is
/// 1.3 GB; an activation dump of 100,000 items × 25 layers × 1,024 f32 is
/// 10 GB).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 30;

/// Default [`Limits::max_items_per_task`].
pub const DEFAULT_MAX_ITEMS_PER_TASK: usize = 1_000_000;

/// Default [`Limits::max_labels`].
pub const DEFAULT_MAX_LABELS: usize = 10_000;

/// Default [`Limits::max_layers`].
pub const DEFAULT_MAX_LAYERS: usize = 1_024;

/// Default [`Limits::max_concurrent_requests`].
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 16;

/// Default [`Limits::max_request_bytes`].
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 16 << 10;

/// Caps on what the daemon accepts (the `[limits]` table). A checkpoint
/// beyond an analysis cap fails with kind `limit` and a message naming the
/// file, the cap and the value; a probe set beyond one stops the start.
/// The waiting-queue cap is per run: `queue_capacity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest checkpoint (dump file, or sum of a checkpoint's weight
    /// files), bytes.
    pub max_file_bytes: u64,
    /// Most items (words, spans, sentences) of one task.
    pub max_items_per_task: usize,
    /// Most distinct labels of one task.
    pub max_labels: usize,
    /// Most layers of one task (hidden states of a model).
    pub max_layers: usize,
    /// HTTP requests served at once; more get 503.
    pub max_concurrent_requests: usize,
    /// Largest HTTP request head (request line and headers), bytes; larger
    /// get 431. Bodies are refused anyway.
    pub max_request_bytes: usize,
}

/// A cap a task goes beyond ([`Limits::exceeded`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exceeded {
    /// `items`, `labels` or `layers`.
    pub what: &'static str,
    /// The `[limits]` key: `max_items_per_task`, `max_labels`, `max_layers`.
    pub key: &'static str,
    /// The task's count.
    pub value: usize,
    /// The cap.
    pub limit: usize,
}

impl Limits {
    /// The first per-task cap that a task of `items` items, `labels`
    /// labels and (when known) `layers` layers goes beyond; `None` when it
    /// fits.
    pub fn exceeded(&self, items: usize, labels: usize, layers: Option<usize>) -> Option<Exceeded> {
        let checks = [
            (
                "items",
                "max_items_per_task",
                Some(items),
                self.max_items_per_task,
            ),
            ("labels", "max_labels", Some(labels), self.max_labels),
            ("layers", "max_layers", layers, self.max_layers),
        ];
        checks.into_iter().find_map(|(what, key, value, limit)| {
            value.filter(|&v| v > limit).map(|value| Exceeded {
                what,
                key,
                value,
                limit,
            })
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_items_per_task: DEFAULT_MAX_ITEMS_PER_TASK,
            max_labels: DEFAULT_MAX_LABELS,
            max_layers: DEFAULT_MAX_LAYERS,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }
}
