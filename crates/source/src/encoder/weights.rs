//! Finding and reading a checkpoint's weights: `model.safetensors`, or the
//! shards listed in `model.safetensors.index.json`, converted once to `f32`.
//!
//! Reading happens in two passes. First every file's header is read and
//! checked by the shared safetensors reader ([`crate::st::Header`]: offsets,
//! dtypes, shapes, file size), to learn which tensor lives in which file (so
//! the name prefix — `bert.`, `roberta.`, `distilbert.` or none — can be
//! resolved before any data is touched). Then each needed tensor is read
//! with positioned reads at its offsets (the crate denies unsafe code, so
//! there is no memory map) and widened from F32/F16/BF16/F64 to `f32`
//! ([`crate::st::extend_f32`]), so peak memory is the converted weights
//! plus one chunk of raw bytes. What this module does not do: it never
//! loads pickle files (`*.bin`, `*.pt`), does not know what a tensor means
//! (the caller asks by name and shape) and keeps no tensor it was not asked
//! for.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use super::EncoderError;
use crate::st::{Header, SafetensorsError, float_width, parse_shard_index};

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
    /// The checked header of every weight file.
    headers: Vec<Header>,
    /// Tensor name → index in `headers` of the file holding it.
    locations: HashMap<String, usize>,
}

impl WeightFiles {
    /// Lists the tensors of the checkpoint in `dir`: the shards named by
    /// `model.safetensors.index.json` when it exists, else `model.safetensors`.
    pub fn open(dir: &Path) -> Result<WeightFiles, EncoderError> {
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let files = if index.is_file() {
            shard_files(&index)?
        } else if single.is_file() {
            vec![single]
        } else {
            return Err(EncoderError::NoWeights {
                dir: dir.to_path_buf(),
            });
        };
        let mut headers = Vec::with_capacity(files.len());
        let mut locations = HashMap::new();
        for file in files {
            let header = read_header(&file)?;
            for name in header.tensors().keys() {
                locations.insert(name.clone(), headers.len());
            }
            headers.push(header);
        }
        Ok(WeightFiles {
            dir: dir.to_path_buf(),
            headers,
            locations,
        })
    }

    /// Whether a tensor of that name exists in any file.
    pub fn contains(&self, name: &str) -> bool {
        self.locations.contains_key(name)
    }

    /// Reads the named tensors, each file opened once. Every name must exist
    /// (else [`EncoderError::MissingTensor`]).
    pub fn read(&self, names: &[String]) -> Result<HashMap<String, Tensor>, EncoderError> {
        let mut by_file: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
        for name in names {
            let file = self
                .locations
                .get(name)
                .ok_or_else(|| EncoderError::MissingTensor {
                    tensor: name.clone(),
                    dir: self.dir.clone(),
                })?;
            by_file.entry(*file).or_default().push(name);
        }
        let mut out = HashMap::with_capacity(names.len());
        for (file, wanted) in by_file {
            let header = &self.headers[file];
            let path = header.path();
            let opened = File::open(path).map_err(|source| EncoderError::Io {
                path: path.to_path_buf(),
                action: "reading the weights".into(),
                source,
            })?;
            for name in wanted {
                let shape = match header.tensor(name) {
                    Some(entry) if float_width(entry.dtype).is_some() => entry.shape.clone(),
                    Some(entry) => {
                        return Err(EncoderError::Weights {
                            path: path.to_path_buf(),
                            detail: format!(
                                "tensor '{name}' has dtype {:?}; only F32, F16, BF16 and F64 \
                                 weights are supported",
                                entry.dtype
                            ),
                        });
                    }
                    None => {
                        return Err(EncoderError::MissingTensor {
                            tensor: name.to_string(),
                            dir: path.to_path_buf(),
                        });
                    }
                };
                let data = header.read_f32(&opened, name).map_err(weights_error)?;
                out.insert(name.to_string(), Tensor { shape, data });
            }
        }
        Ok(out)
    }

    /// The file that holds `name`, for messages (the folder when unknown).
    pub fn file_of(&self, name: &str) -> PathBuf {
        self.locations
            .get(name)
            .map(|&file| self.headers[file].path().to_path_buf())
            .unwrap_or_else(|| self.dir.clone())
    }
}

/// The distinct shard files named by a `model.safetensors.index.json`,
/// sorted by name and resolved against its folder.
fn shard_files(index: &Path) -> Result<Vec<PathBuf>, EncoderError> {
    let text = std::fs::read(index).map_err(|source| EncoderError::Io {
        path: index.to_path_buf(),
        action: "reading the shard index".into(),
        source,
    })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let shards = parse_shard_index(index, &text).map_err(weights_error)?;
    Ok(shards.into_iter().map(|file| dir.join(file)).collect())
}

/// The checked header of the safetensors file `path`.
fn read_header(path: &Path) -> Result<Header, EncoderError> {
    let io = |source| EncoderError::Io {
        path: path.to_path_buf(),
        action: "reading the safetensors header".into(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    Header::read_at(path, &file, size).map_err(weights_error)
}

/// A failure of the safetensors reader as an encoder error: I/O stays I/O
/// (with the reader's "reading ..." action), anything else is
/// [`EncoderError::Weights`] naming the file.
fn weights_error(e: SafetensorsError) -> EncoderError {
    match e {
        SafetensorsError::Io { path, step, source } => EncoderError::Io {
            path,
            action: step.to_string(),
            source,
        },
        other => EncoderError::Weights {
            path: other.path().to_path_buf(),
            detail: other.problem().to_string(),
        },
    }
}
