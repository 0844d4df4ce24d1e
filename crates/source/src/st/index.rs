//! `model.safetensors.index.json`, the index of a sharded model's weight
//! files: which shard files its `weight_map` names. Read by the watcher (to
//! know which files must be complete) and by the encoder (to know where the
//! tensors are), with the same rules.
//!
//! A shard must be a plain file name beside the index: not empty, not
//! hidden (no leading `.`, which also refuses `..`), no `/` or `\`. What
//! this module does not do: read the file (callers bound its size and
//! report their own I/O errors), look at the shards, or use the tensor
//! names the `weight_map` lists (each shard's own header is the truth).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use super::SafetensorsError;

/// The part of the index that is read.
#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

/// The distinct shard file names listed in the `weight_map` of the index
/// text `bytes`, sorted. `path` names the index in errors.
pub fn parse_shard_index(path: &Path, bytes: &[u8]) -> Result<Vec<String>, SafetensorsError> {
    let bad = |detail: String| SafetensorsError::BadShardIndex {
        path: path.to_path_buf(),
        detail,
    };
    let index: ShardIndex = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("not a shard index with a weight_map object: {e}")))?;
    let shards: BTreeSet<String> = index.weight_map.into_values().collect();
    if shards.is_empty() {
        return Err(bad("weight_map lists no shard files".to_string()));
    }
    for shard in &shards {
        let plain = !shard.is_empty()
            && !shard.starts_with('.')
            && !shard.contains('/')
            && !shard.contains('\\');
        if !plain {
            return Err(bad(format!(
                "weight_map names shard {shard:?}, which is not a plain file name beside the index"
            )));
        }
    }
    Ok(shards.into_iter().collect())
}
