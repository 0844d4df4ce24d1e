//! Reading tensor data at the offsets a [`Header`] gives, and turning float
//! tensors into `f32`: F32 as stored, F16 and BF16 widened exactly, F64
//! rounded to nearest ([`extend_f32`], the one place this happens).
//!
//! Every buffer is reserved with `try_reserve` first, so a header claiming
//! terabytes (a sparse file) is an error naming the tensor, not an abort.
//! Float tensors are read in chunks of at most [`CHUNK_BYTES`] and widened
//! chunk by chunk, so reading one never holds its raw bytes and its `f32`
//! values at once. What this module does not do: check values (NaN,
//! ranges) or shapes against anything; that is the callers' job.

use safetensors::Dtype;

use super::{Header, IoStep, ReadAt, SafetensorsError, TensorEntry};

/// Bytes read per positioned read when loading a float tensor (a multiple
/// of 8, so no value straddles two chunks).
pub const CHUNK_BYTES: usize = 1 << 22;

/// Bytes per value of the dtypes read as `f32` (F32, F16, BF16, F64);
/// `None` for any other dtype.
pub fn float_width(dtype: Dtype) -> Option<usize> {
    match dtype {
        Dtype::F64 => Some(8),
        Dtype::F32 => Some(4),
        Dtype::F16 | Dtype::BF16 => Some(2),
        _ => None,
    }
}

/// Appends the little-endian values in `bytes`, of type `dtype`, to `out`
/// as `f32`: F32 as is, F16 and BF16 widened exactly, F64 rounded to
/// nearest. Returns `false`, appending nothing, for any other dtype. A
/// trailing partial value is ignored (callers pass whole values).
#[must_use]
pub fn extend_f32(dtype: Dtype, bytes: &[u8], out: &mut Vec<f32>) -> bool {
    match dtype {
        Dtype::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        Dtype::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        Dtype::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        Dtype::F64 => {
            out.extend(bytes.chunks_exact(8).map(|c| {
                f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
            }))
        }
        _ => return false,
    }
    true
}

impl Header {
    /// The bytes of tensor `name`, read from `src` (the file this header
    /// was read from).
    pub fn read_bytes(
        &self,
        src: &(impl ReadAt + ?Sized),
        name: &str,
    ) -> Result<Vec<u8>, SafetensorsError> {
        let entry = self.entry(name)?;
        let count = usize::try_from(entry.len).unwrap_or(usize::MAX);
        let mut buf = self.allocate::<u8>(name, count)?;
        buf.resize(count, 0);
        src.read_exact_at(&mut buf, entry.start)
            .map_err(|source| self.tensor_io(name, entry, source))?;
        Ok(buf)
    }

    /// The values of float tensor `name` as `f32` (see [`extend_f32`]),
    /// row-major, read from `src` in chunks.
    pub fn read_f32(
        &self,
        src: &(impl ReadAt + ?Sized),
        name: &str,
    ) -> Result<Vec<f32>, SafetensorsError> {
        let entry = self.entry(name)?;
        let width = float_width(entry.dtype).ok_or_else(|| SafetensorsError::NotFloat {
            path: self.path().to_path_buf(),
            tensor: name.to_string(),
            dtype: entry.dtype,
        })?;
        let total = usize::try_from(entry.len).unwrap_or(usize::MAX);
        let mut out = self.allocate::<f32>(name, total / width)?;
        let mut buf = vec![0u8; CHUNK_BYTES.min(total)];
        let mut done = 0usize;
        while done < total {
            let len = (total - done).min(buf.len());
            let chunk = &mut buf[..len];
            src.read_exact_at(chunk, entry.start + done as u64)
                .map_err(|source| self.tensor_io(name, entry, source))?;
            let widened = extend_f32(entry.dtype, chunk, &mut out);
            debug_assert!(widened, "float_width accepted the dtype");
            done += len;
        }
        Ok(out)
    }

    fn entry(&self, name: &str) -> Result<&TensorEntry, SafetensorsError> {
        self.tensor(name)
            .ok_or_else(|| SafetensorsError::NoSuchTensor {
                path: self.path().to_path_buf(),
                tensor: name.to_string(),
            })
    }

    fn tensor_io(
        &self,
        name: &str,
        entry: &TensorEntry,
        source: std::io::Error,
    ) -> SafetensorsError {
        SafetensorsError::Io {
            path: self.path().to_path_buf(),
            step: IoStep::Tensor {
                tensor: name.to_string(),
                len: entry.len,
                start: entry.start,
            },
            source,
        }
    }

    /// An empty vector with room for `count` values of `T`, or
    /// [`SafetensorsError::TensorTooLarge`] when that memory cannot be had.
    fn allocate<T>(&self, tensor: &str, count: usize) -> Result<Vec<T>, SafetensorsError> {
        let mut v = Vec::new();
        v.try_reserve_exact(count)
            .map_err(|_| SafetensorsError::TensorTooLarge {
                path: self.path().to_path_buf(),
                tensor: tensor.to_string(),
                bytes: (count as u64).saturating_mul(std::mem::size_of::<T>() as u64),
            })?;
        Ok(v)
    }
}
