//! Finding and reading a checkpoint's weights: `model.safetensors`, or the
//! shards listed in `model.safetensors.index.json`, converted once to `f32`.
//!
//! Reading happens in two passes. First only the JSON headers are read, to
//! learn which tensor lives in which file (so the name prefix — `bert.`,
//! `roberta.`, `distilbert.` or none — can be resolved before any data is
//! touched). Then each file that holds a needed tensor is read whole with a
//! plain `read` (the crate denies unsafe code, so there is no memory map),
//! checked by the `safetensors` crate, and the needed tensors are widened from
//! F32/F16/BF16/F64 to `f32`; the file's bytes are dropped before the next
//! shard is read, so peak memory is the converted weights plus one shard.
//! What this module does not do: it never loads pickle files (`*.bin`,
//! `*.pt`), does not know what a tensor means (the caller asks by name and
//! shape) and keeps no tensor it was not asked for.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use super::EncoderError;

/// Largest safetensors JSON header accepted, in bytes.
const HEADER_LIMIT: u64 = 100_000_000;

/// One tensor widened to `f32`, row-major.
#[derive(Debug, Clone)]
pub(crate) struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Values in row-major order.
    pub data: Vec<f32>,
}

/// Where every tensor of a checkpoint lives, learned from the headers.
#[derive(Debug)]
pub(crate) struct WeightFiles {
    /// The checkpoint folder (for messages).
    pub dir: PathBuf,
    /// Tensor name → file holding it.
    locations: HashMap<String, PathBuf>,
}

impl WeightFiles {
    /// Lists the tensors of the checkpoint in `dir`: the shards named by
    /// `model.safetensors.index.json` when it exists, else `model.safetensors`.
    pub fn open(dir: &Path) -> Result<WeightFiles, EncoderError> {
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let mut locations = HashMap::new();
        if index.is_file() {
            let files = shard_files(&index)?;
            for file in files.into_values() {
                for name in header_names(&file)? {
                    locations.insert(name, file.clone());
                }
            }
        } else if single.is_file() {
            for name in header_names(&single)? {
                locations.insert(name, single.clone());
            }
        } else {
            return Err(EncoderError::NoWeights {
                dir: dir.to_path_buf(),
            });
        }
        Ok(WeightFiles {
            dir: dir.to_path_buf(),
            locations,
        })
    }

    /// Whether a tensor of that name exists in any file.
    pub fn contains(&self, name: &str) -> bool {
        self.locations.contains_key(name)
    }

    /// Reads the named tensors, each file once. Every name must exist
    /// (else [`EncoderError::MissingTensor`]).
    pub fn read(&self, names: &[String]) -> Result<HashMap<String, Tensor>, EncoderError> {
        let mut by_file: BTreeMap<&Path, Vec<&str>> = BTreeMap::new();
        for name in names {
            let file = self
                .locations
                .get(name)
                .ok_or_else(|| EncoderError::MissingTensor {
                    tensor: name.clone(),
                    dir: self.dir.clone(),
                })?;
            by_file.entry(file.as_path()).or_default().push(name);
        }
        let mut out = HashMap::with_capacity(names.len());
        for (file, wanted) in by_file {
            let bytes = std::fs::read(file).map_err(|source| EncoderError::Io {
                path: file.to_path_buf(),
                action: "reading the weights".into(),
                source,
            })?;
            let st = SafeTensors::deserialize(&bytes).map_err(|e| EncoderError::Weights {
                path: file.to_path_buf(),
                detail: e.to_string(),
            })?;
            for name in wanted {
                let view = st.tensor(name).map_err(|_| EncoderError::MissingTensor {
                    tensor: name.to_string(),
                    dir: file.to_path_buf(),
                })?;
                let data =
                    to_f32(view.dtype(), view.data()).ok_or_else(|| EncoderError::Weights {
                        path: file.to_path_buf(),
                        detail: format!(
                            "tensor '{name}' has dtype {:?}; only F32, F16, BF16 and F64 \
                             weights are supported",
                            view.dtype()
                        ),
                    })?;
                out.insert(
                    name.to_string(),
                    Tensor {
                        shape: view.shape().to_vec(),
                        data,
                    },
                );
            }
        }
        Ok(out)
    }

    /// The file that holds `name`, for messages (the folder when unknown).
    pub fn file_of(&self, name: &str) -> PathBuf {
        self.locations
            .get(name)
            .cloned()
            .unwrap_or_else(|| self.dir.clone())
    }
}

/// The distinct shard files named by a `model.safetensors.index.json`,
/// resolved against its folder.
fn shard_files(index: &Path) -> Result<BTreeMap<String, PathBuf>, EncoderError> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|source| EncoderError::Io {
        path: index.to_path_buf(),
        action: "reading the shard index".into(),
        source,
    })?;
    let parsed: Index = serde_json::from_str(&text).map_err(|e| EncoderError::Weights {
        path: index.to_path_buf(),
        detail: format!("not a valid shard index: {e}"),
    })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files = BTreeMap::new();
    for file in parsed.weight_map.into_values() {
        // Shards are plain file names next to the index; refuse paths.
        if file.contains('/') || file.contains('\\') || file == ".." {
            return Err(EncoderError::Weights {
                path: index.to_path_buf(),
                detail: format!("shard '{file}' is not a plain file name"),
            });
        }
        let path = dir.join(&file);
        files.insert(file, path);
    }
    Ok(files)
}

/// Tensor names in a safetensors file, from its JSON header only.
fn header_names(path: &Path) -> Result<Vec<String>, EncoderError> {
    let io = |source| EncoderError::Io {
        path: path.to_path_buf(),
        action: "reading the safetensors header".into(),
        source,
    };
    let bad = |detail: String| EncoderError::Weights {
        path: path.to_path_buf(),
        detail,
    };
    let mut file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix).map_err(|_| {
        bad(format!(
            "file is {size} bytes, too short for a safetensors header"
        ))
    })?;
    let len = u64::from_le_bytes(prefix);
    if len > HEADER_LIMIT || len > size.saturating_sub(8) {
        return Err(bad(format!(
            "header length {len} does not fit the file ({size} bytes)"
        )));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("the header is not a JSON object: {e}")))?;
    Ok(map
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k != "__metadata__")
        .collect())
}

/// Little-endian tensor bytes widened to `f32`; `None` for other dtypes.
fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        _ => return None,
    })
}
