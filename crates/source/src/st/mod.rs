//! The one safetensors reader of the workspace: the activation-dump reader
//! ([`crate::dump`]), the encoder's weights ([`crate::encoder`]) and the
//! daemon's watcher (its "is this file finished?" check) all read headers,
//! tensor data, checkpoint step names and shard indexes through here.
//!
//! - [`Header`] reads the 8-byte length and the JSON header (at most
//!   [`HEADER_LIMIT`] bytes) and checks offsets, dtypes, shapes and the file
//!   size against each other; it gives the tensor table ([`TensorEntry`],
//!   absolute offsets) and `__metadata__`, and never reads tensor data.
//! - [`Header::read_bytes`] and [`Header::read_f32`] read one tensor's data
//!   with positioned reads ([`ReadAt`]); [`extend_f32`] is the one widening
//!   of F16/BF16 (and F32, F64) to `f32`.
//! - [`step_from_name`], [`checkpoint_step`] and [`step_from_path`] read a
//!   training step from `acts-<step>` / `checkpoint-<step>` names.
//! - [`parse_shard_index`] lists the shards of a
//!   `model.safetensors.index.json`.
//!
//! Every failure is a [`SafetensorsError`] naming the file. What this module
//! does not do: know what a tensor or metadata key means (labels, layers,
//! BERT weights: the callers' business), open files or decide how large a
//! file may be before it is read (callers stat and open), or write
//! safetensors (the `safetensors` crate does, in `extract`). Positioned
//! reads use `std::os::unix::fs::FileExt`, so it builds on Unix only.

mod error;
mod header;
mod index;
mod step;
mod values;

#[cfg(test)]
mod tests;

pub use error::{IoStep, OffsetError, Problem, SafetensorsError};
pub use header::{Header, ReadAt, TensorEntry};
pub use index::parse_shard_index;
pub use step::{checkpoint_step, step_from_name, step_from_path};
pub use values::{CHUNK_BYTES, extend_f32, float_width};

/// Largest JSON header accepted, in bytes (the limit the safetensors crate
/// uses).
pub const HEADER_LIMIT: u64 = 100_000_000;
