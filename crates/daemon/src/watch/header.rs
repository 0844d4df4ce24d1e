//! The cheap content checks behind "is this file finished?": the safetensors
//! length check (8 + header length + end of the data = file size), the
//! `step` a dump's metadata names, a Trainer's `trainer_state.json`
//! `global_step`, and the shard list of a `model.safetensors.index.json`.
//!
//! The safetensors check is the workspace's one header reader
//! ([`source::st::Header`], the one the dump reader and the encoder use): it
//! reads only the 8-byte length prefix and the JSON header, never the tensor
//! data, so it costs the same for a 10 kB dump and a 10 GB model. It checks
//! that every tensor has a known dtype, a shape and `data_offsets`
//! spanning exactly dtype × shape bytes, that the tensors tile the data
//! section without gaps or overlaps, and that the file is exactly as long as
//! the header says (the size the scanner observed, not the size now). It
//! does not interpret tensor names or metadata other than `step`: that is
//! the readers' job (`source::dump`). The shard index is read with
//! [`source::st::parse_shard_index`], as the encoder reads it.
//!
//! Failures are plain `String` reasons without the path ("header claims 1234
//! bytes of data, file has 1000") because the scanner reports them as data
//! (`ScanItem::Invalid`, the path beside them), not as errors of the scan;
//! [`reason`] words the reader's errors as the scanner always has (and as
//! `docs/reliability.md` quotes them). The byte-level entry points
//! ([`check_safetensors_from`], [`parse_trainer_state`],
//! [`parse_shard_index`]) are public so the fuzz targets drive the very code
//! the scanner runs.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use serde::Deserialize;
use source::st::{Header, IoStep, OffsetError, SafetensorsError};

/// Largest `trainer_state.json` or index file read, in bytes. Both are small
/// in practice (a Trainer's log history is a few MB at most); a larger file is
/// not what it claims to be.
const JSON_FILE_LIMIT: u64 = 256 * 1024 * 1024;

/// What the length check learned about a safetensors file that passed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetensorsInfo {
    /// Metadata `step`: `None` when absent, `Some(Err(reason))` when present
    /// but not a non-negative integer.
    pub step: Option<Result<u64, String>>,
}

/// Reads the header of the safetensors file `path`, whose size was observed
/// as `size` bytes, and checks that the file is exactly as long as the header
/// says. `Err` holds a reason that does not repeat the path.
pub(crate) fn check_safetensors(path: &Path, size: u64) -> Result<SafetensorsInfo, String> {
    if size < 8 {
        // The reader refuses it before reading anything: no need to open it.
        return check(path, io::empty(), size);
    }
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    check(path, file, size)
}

/// The length check of `check_safetensors` on a reader positioned at the
/// start of a safetensors file of `size` bytes (the file, or its bytes in
/// memory). `Err` holds the reason.
pub fn check_safetensors_from(file: impl Read, size: u64) -> Result<SafetensorsInfo, String> {
    check(Path::new(""), file, size)
}

fn check(path: &Path, file: impl Read, size: u64) -> Result<SafetensorsInfo, String> {
    let header = Header::read_from(path, file, size).map_err(|e| reason(&e))?;
    let step = match header.step() {
        Ok(step) => step.map(Ok),
        Err(e) => Some(Err(reason(&e))),
    };
    Ok(SafetensorsInfo { step })
}

/// The scanner's reason for a safetensors error: what is wrong, without the
/// path, in the scanner's words where it has its own (byte counts of the
/// prefix and of the data section, offsets as "starts at data byte"), else
/// the reader's.
pub(crate) fn reason(e: &SafetensorsError) -> String {
    match e {
        SafetensorsError::Io {
            step: IoStep::LengthPrefix,
            source,
            ..
        } => format!("cannot read the header length prefix: {source}"),
        SafetensorsError::Io {
            step: IoStep::Header { len },
            source,
            ..
        } => format!("cannot read the {len}-byte header: {source}"),
        SafetensorsError::HeaderBeyondFile {
            header_len,
            available,
            ..
        } => format!(
            "header length prefix says {header_len} bytes, file has {available} bytes after the \
             prefix"
        ),
        SafetensorsError::HeaderTooLarge {
            header_len, limit, ..
        } => {
            format!("header length prefix says {header_len} bytes, more than the limit of {limit}")
        }
        SafetensorsError::HeaderNotJson { detail, .. } => {
            format!("header is not a JSON object: {detail}")
        }
        SafetensorsError::BadOffsets {
            tensor,
            detail: OffsetError::Reversed { begin, end },
            ..
        } => format!("tensor '{tensor}' has data_offsets [{begin}, {end}]: begin after end"),
        SafetensorsError::BadOffsets {
            tensor,
            detail:
                OffsetError::Gap { begin, cursor, .. } | OffsetError::Overlap { begin, cursor, .. },
            ..
        } => format!(
            "tensor '{tensor}' starts at data byte {begin}, but the tensors before it end at \
             {cursor} (gap or overlap)"
        ),
        SafetensorsError::SizeMismatch {
            actual,
            header_len,
            data_len,
            ..
        } => format!(
            "header claims {data_len} bytes of data, file has {} (file size {actual}, header \
             {header_len} bytes)",
            actual.saturating_sub(8).saturating_sub(*header_len)
        ),
        other => other.problem().to_string(),
    }
}

/// Reads a small JSON file whole, refusing files over [`JSON_FILE_LIMIT`].
fn read_json_file(path: &Path, size: u64) -> Result<Vec<u8>, String> {
    if size > JSON_FILE_LIMIT {
        return Err(format!(
            "file is {size} bytes, more than the limit of {JSON_FILE_LIMIT} for a JSON file"
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read: {e}"))
}

/// The part of `trainer_state.json` the completeness rule needs.
#[derive(Deserialize)]
struct TrainerState {
    global_step: u64,
}

/// `global_step` of a Trainer's `trainer_state.json` of observed size `size`.
pub(crate) fn trainer_global_step(path: &Path, size: u64) -> Result<u64, String> {
    parse_trainer_state(&read_json_file(path, size)?)
}

/// `global_step` of the text of a `trainer_state.json`.
pub fn parse_trainer_state(bytes: &[u8]) -> Result<u64, String> {
    serde_json::from_slice::<TrainerState>(bytes)
        .map(|state| state.global_step)
        .map_err(|e| format!("not a trainer state with an integer global_step: {e}"))
}

/// The distinct shard file names listed in the `weight_map` of a sharded
/// model's index of observed size `size`, sorted. A name that is not a plain
/// file name (a path, `..`, hidden) is an error: shards live beside the index.
pub(crate) fn index_shards(path: &Path, size: u64) -> Result<Vec<String>, String> {
    parse_shard_index(&read_json_file(path, size)?)
}

/// The shard file names of the text of a `model.safetensors.index.json`, as
/// `index_shards` returns them.
pub fn parse_shard_index(bytes: &[u8]) -> Result<Vec<String>, String> {
    source::st::parse_shard_index(Path::new(""), bytes).map_err(|e| e.problem().to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use safetensors::Dtype;
    use safetensors::tensor::TensorView;
    use std::collections::HashMap;
    use std::path::PathBuf;

    /// Writes a small valid safetensors file (two F32 tensors) with the
    /// given metadata, using the safetensors crate, and returns its bytes.
    pub(crate) fn safetensors_bytes(meta: &[(&str, &str)], floats: usize) -> Vec<u8> {
        let a: Vec<u8> = (0..floats).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let b: Vec<u8> = [1.5f32, 2.5].iter().flat_map(|v| v.to_le_bytes()).collect();
        let views = vec![
            (
                "layer.0".to_string(),
                TensorView::new(Dtype::F32, vec![floats], &a).unwrap(),
            ),
            (
                "labels".to_string(),
                TensorView::new(Dtype::F32, vec![2], &b).unwrap(),
            ),
        ];
        let meta: HashMap<String, String> = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let info = if meta.is_empty() { None } else { Some(meta) };
        safetensors::serialize(views, info).unwrap()
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> (PathBuf, u64) {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        (path, bytes.len() as u64)
    }

    #[test]
    fn valid_file_passes_and_reports_metadata_step() {
        let dir = tempfile::tempdir().unwrap();
        let (path, size) = write(dir.path(), "a.safetensors", &safetensors_bytes(&[], 10));
        assert_eq!(
            check_safetensors(&path, size),
            Ok(SafetensorsInfo { step: None })
        );
        let bytes = safetensors_bytes(&[("step", "250"), ("label_names", "[]")], 3);
        let (path, size) = write(dir.path(), "b.safetensors", &bytes);
        assert_eq!(check_safetensors(&path, size).unwrap().step, Some(Ok(250)));
        let (path, size) = write(
            dir.path(),
            "c.safetensors",
            &safetensors_bytes(&[("step", "soon")], 3),
        );
        let step = check_safetensors(&path, size).unwrap().step.unwrap();
        assert!(step.unwrap_err().contains("\"soon\""));
    }

    #[test]
    fn truncated_and_overlong_files_fail_with_byte_counts() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = safetensors_bytes(&[], 100);
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        let data_len = bytes.len() as u64 - 8 - header_len;
        let cut = &bytes[..bytes.len() - 60];
        let (path, size) = write(dir.path(), "t.safetensors", cut);
        let reason = check_safetensors(&path, size).unwrap_err();
        assert!(
            reason.starts_with(&format!(
                "header claims {data_len} bytes of data, file has {}",
                data_len - 60
            )),
            "{reason}"
        );
        let mut long = bytes.clone();
        long.extend_from_slice(&[0; 4]);
        let (path, size) = write(dir.path(), "l.safetensors", &long);
        let reason = check_safetensors(&path, size).unwrap_err();
        assert!(
            reason.contains(&format!("file has {}", data_len + 4)),
            "{reason}"
        );
    }

    #[test]
    fn short_files_and_garbage_headers_fail() {
        let dir = tempfile::tempdir().unwrap();
        let (path, size) = write(dir.path(), "e.safetensors", b"");
        assert!(
            check_safetensors(&path, size)
                .unwrap_err()
                .contains("0 bytes")
        );
        // The header itself is cut off: prefix says 200 bytes, 10 present.
        let mut partial = 200u64.to_le_bytes().to_vec();
        partial.extend_from_slice(b"{\"a\":{\"dt");
        let (path, size) = write(dir.path(), "p.safetensors", &partial);
        let reason = check_safetensors(&path, size).unwrap_err();
        assert!(reason.contains("says 200 bytes"), "{reason}");
        // Preallocated zeros: header length 0, not JSON.
        let (path, size) = write(dir.path(), "z.safetensors", &[0; 64]);
        let reason = check_safetensors(&path, size).unwrap_err();
        assert!(reason.contains("not a JSON object"), "{reason}");
    }

    #[test]
    fn gaps_between_tensors_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let header = br#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0; 5]);
        let (path, size) = write(dir.path(), "g.safetensors", &bytes);
        let reason = check_safetensors(&path, size).unwrap_err();
        assert!(
            reason.contains("tensor 'b' starts at data byte 3"),
            "{reason}"
        );
    }

    #[test]
    fn offsets_must_match_dtype_and_shape() {
        // The reader's full header check: the watcher never holds back a
        // file the dump reader accepts, and never passes one it refuses
        // for its header.
        let dir = tempfile::tempdir().unwrap();
        let header = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0; 4]);
        let (path, size) = write(dir.path(), "s.safetensors", &bytes);
        let reason = check_safetensors(&path, size).unwrap_err();
        assert!(
            reason.contains("tensor 'a' has inconsistent data offsets: F32 [2] needs 8 bytes"),
            "{reason}"
        );
        assert!(!reason.contains(&*path.to_string_lossy()), "{reason}");
    }

    #[test]
    fn trainer_state_and_index_parse() {
        let dir = tempfile::tempdir().unwrap();
        let (path, size) = write(
            dir.path(),
            "trainer_state.json",
            br#"{"global_step": 30, "log_history": [{"loss": 1.0}]}"#,
        );
        assert_eq!(trainer_global_step(&path, size), Ok(30));
        let (path, size) = write(dir.path(), "half.json", br#"{"global_st"#);
        assert!(trainer_global_step(&path, size).is_err());
        let (path, size) = write(
            dir.path(),
            "index.json",
            br#"{"metadata": {}, "weight_map": {"a": "model-00002-of-00002.safetensors", "b": "model-00001-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}}"#,
        );
        assert_eq!(
            index_shards(&path, size).unwrap(),
            vec![
                "model-00001-of-00002.safetensors".to_string(),
                "model-00002-of-00002.safetensors".to_string()
            ]
        );
        let (path, size) = write(
            dir.path(),
            "evil.json",
            br#"{"weight_map": {"a": "../../outside.safetensors"}}"#,
        );
        assert!(
            index_shards(&path, size)
                .unwrap_err()
                .contains("not a plain file name")
        );
    }
}
