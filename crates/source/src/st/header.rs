//! Reading and checking a safetensors header: the 8-byte little-endian
//! length, the JSON header (at most [`HEADER_LIMIT`] bytes), and everything
//! that can be checked without the tensor data: every entry has a known
//! dtype, a shape and `data_offsets`; the tensors tile the data section in
//! offset order without gaps or overlaps, each spanning exactly dtype ×
//! shape bytes; and the file is exactly 8 + header + data bytes long.
//! `__metadata__`, when present, must map strings to strings.
//!
//! A [`Header`] is the result: the tensor table (absolute file offsets) and
//! the metadata. Reading tensor data is `values`' job; interpreting tensor
//! names or metadata keys other than `step` is the callers' (the dump
//! reader, the encoder, the watcher). The header is read either through a
//! [`ReadAt`] (positioned reads on an open file, or bytes in memory) or
//! from a plain [`Read`] positioned at the start of the file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use serde::Deserialize;

use super::{HEADER_LIMIT, IoStep, OffsetError, SafetensorsError};

/// Bytes that can be read at an offset: an open file (positioned reads,
/// its cursor untouched) or bytes in memory.
pub trait ReadAt {
    /// Fills `buf` with the bytes at `offset`; a read past the end is an
    /// `UnexpectedEof` error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let range = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(buf.len())?))
            .filter(|range| range.end <= self.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        buf.copy_from_slice(&self[range]);
        Ok(())
    }
}

/// A tensor of the file: its type, shape and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Absolute file offset of the first byte.
    pub start: u64,
    /// Length in bytes (dtype × shape, checked).
    pub len: u64,
}

impl TensorEntry {
    /// `"<dtype> <shape>"`, e.g. `I64 [947]`, for error messages.
    pub fn describe(&self) -> String {
        format!("{} {:?}", self.dtype, self.shape)
    }
}

/// A checked safetensors header: the tensor table and the metadata of one
/// file.
#[derive(Debug, Clone)]
pub struct Header {
    path: PathBuf,
    header_len: u64,
    file_size: u64,
    tensors: BTreeMap<String, TensorEntry>,
    metadata: BTreeMap<String, String>,
}

/// A tensor entry as written in the JSON header.
#[derive(Deserialize)]
struct RawTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

impl Header {
    /// Reads and checks the header of a file of `file_size` bytes through
    /// positioned reads; `path` names it in errors.
    pub fn read_at(
        path: &Path,
        src: &(impl ReadAt + ?Sized),
        file_size: u64,
    ) -> Result<Header, SafetensorsError> {
        Self::read_with(path, file_size, |buf, offset| {
            src.read_exact_at(buf, offset)
        })
    }

    /// [`Header::read_at`] from a reader positioned at the start of the
    /// file (the file, or its bytes in memory); `file_size` is the size the
    /// caller observed, which the header must match. Reads the prefix and
    /// the header only.
    pub fn read_from(
        path: &Path,
        mut reader: impl Read,
        file_size: u64,
    ) -> Result<Header, SafetensorsError> {
        // The two reads are the prefix at 0 and the header at 8, in order.
        Self::read_with(path, file_size, |buf, _| reader.read_exact(buf))
    }

    /// [`Header::read_at`] on a whole file held in memory.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Header, SafetensorsError> {
        Self::read_at(path, bytes, bytes.len() as u64)
    }

    fn read_with(
        path: &Path,
        file_size: u64,
        mut read_exact_at: impl FnMut(&mut [u8], u64) -> io::Result<()>,
    ) -> Result<Header, SafetensorsError> {
        let io_err = |step: IoStep, source: io::Error| SafetensorsError::Io {
            path: path.to_path_buf(),
            step,
            source,
        };
        if file_size < 8 {
            return Err(SafetensorsError::TooShort {
                path: path.to_path_buf(),
                size: file_size,
            });
        }
        let mut prefix = [0u8; 8];
        read_exact_at(&mut prefix, 0).map_err(|e| io_err(IoStep::LengthPrefix, e))?;
        let header_len = u64::from_le_bytes(prefix);
        if header_len > file_size - 8 {
            return Err(SafetensorsError::HeaderBeyondFile {
                path: path.to_path_buf(),
                header_len,
                available: file_size - 8,
                file_size,
            });
        }
        if header_len > HEADER_LIMIT {
            return Err(SafetensorsError::HeaderTooLarge {
                path: path.to_path_buf(),
                header_len,
                limit: HEADER_LIMIT,
            });
        }
        // Bounded by HEADER_LIMIT, so the conversion cannot fail on any
        // platform this builds on.
        let mut header = vec![0u8; usize::try_from(header_len).unwrap_or(0)];
        read_exact_at(&mut header, 8).map_err(|e| io_err(IoStep::Header { len: header_len }, e))?;
        parse(path, &header, header_len, file_size)
    }

    /// The file, as named by the caller.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Length of the JSON header in bytes.
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// Size of the file in bytes (8 + header + data, checked).
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// The tensors by name.
    pub fn tensors(&self) -> &BTreeMap<String, TensorEntry> {
        &self.tensors
    }

    /// The tensor called `name`, if any.
    pub fn tensor(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.get(name)
    }

    /// `__metadata__` (empty when absent).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Metadata `step`: `None` when absent, an error when it is not a
    /// non-negative integer (surrounding whitespace is allowed).
    pub fn step(&self) -> Result<Option<u64>, SafetensorsError> {
        match self.metadata.get("step") {
            None => Ok(None),
            Some(value) => {
                value
                    .trim()
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| SafetensorsError::BadStep {
                        path: self.path.clone(),
                        value: value.clone(),
                    })
            }
        }
    }
}

/// Parses and checks the JSON header `header` of the file `path`: tensor
/// entries, contiguous offsets that match dtype and shape, and the total size
/// against the file size.
fn parse(
    path: &Path,
    header: &[u8],
    header_len: u64,
    file_size: u64,
) -> Result<Header, SafetensorsError> {
    let invalid = |detail: String| SafetensorsError::InvalidHeader {
        path: path.to_path_buf(),
        detail,
    };
    let value: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| SafetensorsError::HeaderNotJson {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    let serde_json::Value::Object(map) = value else {
        return Err(invalid(format!(
            "the header is a JSON {}, not an object",
            json_kind(&value)
        )));
    };
    let mut metadata = BTreeMap::new();
    let mut raw = Vec::new();
    for (name, value) in map {
        if name == "__metadata__" {
            metadata = serde_json::from_value::<BTreeMap<String, String>>(value)
                .map_err(|e| invalid(format!("'__metadata__' must map strings to strings: {e}")))?;
        } else {
            let tensor = serde_json::from_value::<RawTensor>(value)
                .map_err(|e| invalid(format!("the entry for tensor '{name}' is invalid: {e}")))?;
            raw.push((name, tensor));
        }
    }

    // Stable: tensors with equal offsets stay in name order.
    raw.sort_by_key(|(_, t)| t.data_offsets);
    let data_start = 8 + header_len;
    let mut cursor = 0u64;
    let mut tensors = BTreeMap::new();
    for (name, t) in raw {
        let bad = |detail: OffsetError| SafetensorsError::BadOffsets {
            path: path.to_path_buf(),
            tensor: name.clone(),
            detail,
        };
        let (begin, end) = t.data_offsets;
        if end < begin {
            return Err(bad(OffsetError::Reversed { begin, end }));
        }
        if begin > cursor {
            return Err(bad(OffsetError::Gap { begin, end, cursor }));
        }
        if begin < cursor {
            return Err(bad(OffsetError::Overlap { begin, end, cursor }));
        }
        let bits = t
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            .and_then(|count| count.checked_mul(t.dtype.bitsize() as u64))
            .ok_or_else(|| {
                bad(OffsetError::SizeOverflow {
                    dtype: t.dtype,
                    shape: t.shape.clone(),
                })
            })?;
        if bits % 8 != 0 {
            return Err(bad(OffsetError::PartialBytes {
                dtype: t.dtype,
                shape: t.shape,
            }));
        }
        if end - begin != bits / 8 {
            return Err(bad(OffsetError::SpanMismatch {
                dtype: t.dtype,
                shape: t.shape,
                needs: bits / 8,
                begin,
                end,
            }));
        }
        cursor = end;
        let start = data_start
            .checked_add(begin)
            .ok_or_else(|| bad(OffsetError::FileOffsetOverflow { begin, end }))?;
        tensors.insert(
            name,
            TensorEntry {
                dtype: t.dtype,
                shape: t.shape,
                start,
                len: end - begin,
            },
        );
    }
    let expected = data_start.checked_add(cursor);
    if expected != Some(file_size) {
        return Err(SafetensorsError::SizeMismatch {
            path: path.to_path_buf(),
            expected: expected.unwrap_or(u64::MAX),
            actual: file_size,
            header_len,
            data_len: cursor,
        });
    }
    Ok(Header {
        path: path.to_path_buf(),
        header_len,
        file_size,
        tensors,
        metadata,
    })
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}
