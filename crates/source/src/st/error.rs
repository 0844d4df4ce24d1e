//! The one error type of the safetensors reader, [`SafetensorsError`]: every
//! variant names the file, and its message says what is wrong. The message
//! is "`<file>: <problem>`"; [`SafetensorsError::problem`] gives the part
//! after the file, for callers that name the file themselves (the watcher's
//! reasons, the encoder's "invalid weights").
//!
//! The variants are structured (byte counts, offsets, the tensor) so a
//! caller can decide what a failure means without parsing text. This module
//! only describes failures; it detects none.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use safetensors::Dtype;

/// Everything that can be wrong with a safetensors file, its header or a
/// shard index, as found by this module's readers. Every variant names the
/// file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SafetensorsError {
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// What was being read.
        step: IoStep,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is too short to hold the 8-byte header length.
    TooShort {
        /// The file.
        path: PathBuf,
        /// Size of the file in bytes.
        size: u64,
    },
    /// The header length in the first 8 bytes runs past the end of the file.
    HeaderBeyondFile {
        /// The file.
        path: PathBuf,
        /// Header length read from the first 8 bytes.
        header_len: u64,
        /// Bytes after the length prefix.
        available: u64,
        /// Size of the file in bytes.
        file_size: u64,
    },
    /// The header length is larger than the accepted limit.
    HeaderTooLarge {
        /// The file.
        path: PathBuf,
        /// Header length read from the first 8 bytes.
        header_len: u64,
        /// Largest accepted header length ([`super::HEADER_LIMIT`]).
        limit: u64,
    },
    /// The header is not valid UTF-8 JSON.
    HeaderNotJson {
        /// The file.
        path: PathBuf,
        /// The JSON parser's message.
        detail: String,
    },
    /// The header is JSON but not a safetensors header (not an object, a
    /// malformed tensor entry, an unknown dtype, non-string metadata, ...).
    InvalidHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A tensor's data offsets are inconsistent (gap, overlap, reversed, or
    /// not matching its dtype and shape).
    BadOffsets {
        /// The file.
        path: PathBuf,
        /// The tensor whose offsets are wrong.
        tensor: String,
        /// What is wrong.
        detail: OffsetError,
    },
    /// The file size differs from what the header says: truncated file or
    /// trailing bytes.
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// Size implied by the header.
        expected: u64,
        /// Actual size of the file.
        actual: u64,
        /// Length of the JSON header.
        header_len: u64,
        /// Length of the data section according to the header.
        data_len: u64,
    },
    /// Metadata `step` is not a non-negative integer.
    BadStep {
        /// The file.
        path: PathBuf,
        /// The value found.
        value: String,
    },
    /// A tensor is larger than the memory that can be set aside to read it
    /// (a header claiming terabytes in a sparse file): refused before any
    /// of it is read, instead of the process aborting on the allocation.
    TensorTooLarge {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Bytes the tensor needs in memory.
        bytes: u64,
    },
    /// A tensor asked for by name is not in the header.
    NoSuchTensor {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
    },
    /// A tensor read as floats has a dtype that is not one.
    NotFloat {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its dtype.
        dtype: Dtype,
    },
    /// A `model.safetensors.index.json` is malformed or names shards that
    /// are not plain file names beside it.
    BadShardIndex {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// What was being read when an I/O error happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoStep {
    /// The 8-byte header length prefix.
    LengthPrefix,
    /// The JSON header of `len` bytes.
    Header {
        /// Its length in bytes.
        len: u64,
    },
    /// A tensor's data.
    Tensor {
        /// The tensor.
        tensor: String,
        /// Its length in bytes.
        len: u64,
        /// Its absolute file offset.
        start: u64,
    },
}

impl fmt::Display for IoStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoStep::LengthPrefix => f.write_str("reading the header length"),
            IoStep::Header { .. } => f.write_str("reading the header"),
            IoStep::Tensor { tensor, len, start } => {
                write!(
                    f,
                    "reading tensor '{tensor}' ({len} bytes at offset {start})"
                )
            }
        }
    }
}

/// How a tensor's `data_offsets` are wrong. Offsets count from the start of
/// the data section (after the header).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OffsetError {
    /// `end < begin`.
    Reversed {
        /// First byte.
        begin: u64,
        /// One past the last byte.
        end: u64,
    },
    /// The tensor starts after the previous one ends.
    Gap {
        /// First byte.
        begin: u64,
        /// One past the last byte.
        end: u64,
        /// Where the previous tensor ends.
        cursor: u64,
    },
    /// The tensor starts before the previous one ends.
    Overlap {
        /// First byte.
        begin: u64,
        /// One past the last byte.
        end: u64,
        /// Where the previous tensor ends.
        cursor: u64,
    },
    /// The size of dtype × shape does not fit in 64 bits.
    SizeOverflow {
        /// The tensor's dtype.
        dtype: Dtype,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// dtype × shape is not a whole number of bytes (sub-byte dtypes).
    PartialBytes {
        /// The tensor's dtype.
        dtype: Dtype,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// The offsets span a different number of bytes than dtype × shape.
    SpanMismatch {
        /// The tensor's dtype.
        dtype: Dtype,
        /// Its shape.
        shape: Vec<usize>,
        /// Bytes dtype × shape needs.
        needs: u64,
        /// First byte.
        begin: u64,
        /// One past the last byte.
        end: u64,
    },
    /// The absolute file offset does not fit in 64 bits.
    FileOffsetOverflow {
        /// First byte.
        begin: u64,
        /// One past the last byte.
        end: u64,
    },
}

impl fmt::Display for OffsetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OffsetError::Reversed { begin, end } => {
                write!(f, "data_offsets [{begin}, {end}] end before they begin")
            }
            OffsetError::Gap { begin, end, cursor } => write!(
                f,
                "data_offsets [{begin}, {end}] leave a gap of {} bytes after byte {cursor} of \
                 the data section (where the previous tensor ends)",
                begin - cursor
            ),
            OffsetError::Overlap { begin, end, cursor } => write!(
                f,
                "data_offsets [{begin}, {end}] overlap the previous tensor, which ends at byte \
                 {cursor} of the data section"
            ),
            OffsetError::SizeOverflow { dtype, shape } => {
                write!(f, "{dtype} {shape:?} overflows when computing its size")
            }
            OffsetError::PartialBytes { dtype, shape } => {
                write!(f, "{dtype} {shape:?} is not a whole number of bytes")
            }
            OffsetError::SpanMismatch {
                dtype,
                shape,
                needs,
                begin,
                end,
            } => write!(
                f,
                "{dtype} {shape:?} needs {needs} bytes but data_offsets [{begin}, {end}] span {} \
                 bytes",
                end - begin
            ),
            OffsetError::FileOffsetOverflow { begin, end } => {
                write!(f, "data_offsets [{begin}, {end}] overflow the file offsets")
            }
        }
    }
}

impl SafetensorsError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            SafetensorsError::Io { path, .. }
            | SafetensorsError::TooShort { path, .. }
            | SafetensorsError::HeaderBeyondFile { path, .. }
            | SafetensorsError::HeaderTooLarge { path, .. }
            | SafetensorsError::HeaderNotJson { path, .. }
            | SafetensorsError::InvalidHeader { path, .. }
            | SafetensorsError::BadOffsets { path, .. }
            | SafetensorsError::SizeMismatch { path, .. }
            | SafetensorsError::BadStep { path, .. }
            | SafetensorsError::TensorTooLarge { path, .. }
            | SafetensorsError::NoSuchTensor { path, .. }
            | SafetensorsError::NotFloat { path, .. }
            | SafetensorsError::BadShardIndex { path, .. } => path,
        }
    }

    /// What is wrong, without the file name: the message after "`<file>: `".
    pub fn problem(&self) -> Problem<'_> {
        Problem(self)
    }
}

impl fmt::Display for SafetensorsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path().display(), self.problem())
    }
}

/// The message of a [`SafetensorsError`] without the file name (see
/// [`SafetensorsError::problem`]).
#[derive(Debug, Clone, Copy)]
pub struct Problem<'a>(&'a SafetensorsError);

impl fmt::Display for Problem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SafetensorsError::Io { step, source, .. } => {
                write!(f, "I/O error while {step}: {source}")
            }
            SafetensorsError::TooShort { size, .. } => write!(
                f,
                "file is {size} bytes, too short for the 8-byte header length prefix"
            ),
            SafetensorsError::HeaderBeyondFile {
                header_len,
                available,
                file_size,
                ..
            } => write!(
                f,
                "the header length prefix says {header_len} bytes, but only {available} bytes \
                 follow it (file size {file_size})"
            ),
            SafetensorsError::HeaderTooLarge {
                header_len, limit, ..
            } => write!(
                f,
                "the header length prefix says {header_len} bytes, more than the limit of {limit}"
            ),
            SafetensorsError::HeaderNotJson { detail, .. } => {
                write!(f, "the header is not valid JSON: {detail}")
            }
            SafetensorsError::InvalidHeader { detail, .. } => {
                write!(f, "invalid safetensors header: {detail}")
            }
            SafetensorsError::BadOffsets { tensor, detail, .. } => {
                write!(
                    f,
                    "tensor '{tensor}' has inconsistent data offsets: {detail}"
                )
            }
            SafetensorsError::SizeMismatch {
                expected,
                actual,
                header_len,
                data_len,
                ..
            } => {
                write!(
                    f,
                    "file is {actual} bytes but its header describes {expected} bytes \
                     (8 + header {header_len} + data {data_len}): "
                )?;
                if actual < expected {
                    write!(f, "truncated, {} bytes missing", expected - actual)
                } else {
                    write!(f, "{} trailing bytes", actual - expected)
                }
            }
            SafetensorsError::BadStep { value, .. } => {
                write!(
                    f,
                    "metadata 'step' is {value:?}, not a non-negative integer"
                )
            }
            SafetensorsError::TensorTooLarge { tensor, bytes, .. } => write!(
                f,
                "tensor '{tensor}' needs {bytes} bytes of memory, more than can be allocated"
            ),
            SafetensorsError::NoSuchTensor { tensor, .. } => {
                write!(f, "no tensor '{tensor}' in the header")
            }
            SafetensorsError::NotFloat { tensor, dtype, .. } => write!(
                f,
                "tensor '{tensor}' has dtype {dtype}, not a float dtype (F32, F16, BF16 or F64)"
            ),
            SafetensorsError::BadShardIndex { detail, .. } => f.write_str(detail),
        }
    }
}
