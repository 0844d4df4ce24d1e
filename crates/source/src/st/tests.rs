//! Unit tests of the safetensors reader on files written by the
//! `safetensors` crate and on hand-made headers. The dump reader's and the
//! watcher's tests cover every error message as their callers show it.

use std::collections::HashMap;
use std::path::Path;

use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::*;

/// A file with the given tensors and metadata, written by the safetensors
/// crate.
fn file(tensors: &[(&str, Dtype, &[usize], Vec<u8>)], meta: &[(&str, &str)]) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            (
                name.to_string(),
                TensorView::new(*dtype, shape.to_vec(), data).unwrap(),
            )
        })
        .collect();
    let meta: HashMap<String, String> = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    safetensors::serialize(views, (!meta.is_empty()).then_some(meta)).unwrap()
}

/// `8-byte length + header + data`, by hand.
fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

const PATH: &str = "/data/run/acts-3.safetensors";

#[test]
fn table_metadata_and_data() {
    let bytes = file(
        &[
            ("b", Dtype::F32, &[2, 2], f32_bytes(&[1.0, 2.0, 3.0, 4.0])),
            ("a", Dtype::U8, &[3], vec![7, 8, 9]),
        ],
        &[("step", " 12 "), ("note", "x")],
    );
    let path = Path::new(PATH);
    let header = Header::from_bytes(path, &bytes).unwrap();
    assert_eq!(header.path(), path);
    assert_eq!(header.file_size(), bytes.len() as u64);
    assert_eq!(header.step().unwrap(), Some(12));
    assert_eq!(header.metadata()["note"], "x");
    let names: Vec<&str> = header.tensors().keys().map(String::as_str).collect();
    assert_eq!(names, ["a", "b"]);
    let b = header.tensor("b").unwrap();
    assert_eq!(
        (b.dtype, b.shape.as_slice(), b.len),
        (Dtype::F32, &[2, 2][..], 16)
    );
    assert_eq!(b.describe(), "F32 [2, 2]");
    let data_start = 8 + header.header_len();
    // The safetensors crate orders the data by dtype alignment: F32 first.
    assert_eq!(b.start, data_start);
    assert_eq!(header.tensor("a").unwrap().start, data_start + 16);
    assert_eq!(
        header.read_f32(bytes.as_slice(), "b").unwrap(),
        [1.0, 2.0, 3.0, 4.0]
    );
    assert_eq!(header.read_bytes(bytes.as_slice(), "a").unwrap(), [7, 8, 9]);

    // A sequential reader gives the same header.
    let again = Header::read_from(path, bytes.as_slice(), bytes.len() as u64).unwrap();
    assert_eq!(again.tensors(), header.tensors());
    assert_eq!(again.metadata(), header.metadata());

    // Non-float tensors and unknown names are errors naming the file.
    let err = header.read_f32(bytes.as_slice(), "a").unwrap_err();
    assert!(matches!(err, SafetensorsError::NotFloat { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("{PATH}: tensor 'a' has dtype U8"))
    );
    let err = header.read_bytes(bytes.as_slice(), "c").unwrap_err();
    assert!(
        matches!(err, SafetensorsError::NoSuchTensor { .. }),
        "{err:?}"
    );
}

#[test]
fn messages_name_the_file_and_problem_omits_it() {
    let path = Path::new(PATH);
    let err = Header::from_bytes(path, &[1, 2, 3]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{PATH}: file is 3 bytes, too short for the 8-byte header length prefix")
    );
    assert_eq!(
        err.problem().to_string(),
        "file is 3 bytes, too short for the 8-byte header length prefix"
    );
    assert_eq!(err.path(), path);

    let bytes = raw(
        r#"{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#,
        &[0; 6],
    );
    let err = Header::from_bytes(path, &bytes).unwrap_err();
    assert!(
        matches!(err, SafetensorsError::SizeMismatch { data_len: 8, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().ends_with("truncated, 2 bytes missing"),
        "{err}"
    );

    // The reader stops at what the claimed size allows.
    let bytes = raw("{}", &[]);
    let err = Header::read_from(path, bytes.as_slice(), bytes.len() as u64 + 1).unwrap_err();
    assert!(
        matches!(err, SafetensorsError::SizeMismatch { .. }),
        "{err:?}"
    );
    let err = Header::read_from(path, &bytes[..9], bytes.len() as u64).unwrap_err();
    assert!(
        matches!(
            &err,
            SafetensorsError::Io {
                step: IoStep::Header { len: 2 },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("I/O error while reading the header"),
        "{err}"
    );
}

#[test]
fn offsets_are_checked_in_offset_order() {
    let path = Path::new(PATH);
    let header = r#"{"b": {"dtype": "U8", "shape": [2], "data_offsets": [3, 5]},
                     "a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}"#;
    let err = Header::from_bytes(path, &raw(header, &[0; 5])).unwrap_err();
    match &err {
        SafetensorsError::BadOffsets { tensor, detail, .. } => {
            assert_eq!(tensor, "b");
            assert_eq!(
                *detail,
                OffsetError::Gap {
                    begin: 3,
                    end: 5,
                    cursor: 2
                }
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("gap of 1 bytes after byte 2"),
        "{err}"
    );

    // A sub-byte dtype must fill whole bytes.
    let header = r#"{"q": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}"#;
    let err = Header::from_bytes(path, &raw(header, &[0; 2])).unwrap_err();
    assert!(
        matches!(
            &err,
            SafetensorsError::BadOffsets {
                detail: OffsetError::PartialBytes { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn widening_is_exact_for_halves_and_rounds_f64() {
    let values = [
        0.0f32,
        -0.0,
        1.0,
        -2.5,
        0.333_333_3,
        65504.0,
        6.0e-8,
        -1.0e4,
    ];
    let f16: Vec<u8> = values
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let bf16: Vec<u8> = values
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect();
    let f64s: Vec<u8> = [0.1f64, -1e300, 3.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let mut out = Vec::new();
    assert!(extend_f32(Dtype::F16, &f16, &mut out));
    for (got, &v) in out.iter().zip(&values) {
        assert_eq!(got.to_bits(), half::f16::from_f32(v).to_f32().to_bits());
    }
    out.clear();
    assert!(extend_f32(Dtype::BF16, &bf16, &mut out));
    for (got, &v) in out.iter().zip(&values) {
        assert_eq!(got.to_bits(), half::bf16::from_f32(v).to_f32().to_bits());
    }
    out.clear();
    assert!(extend_f32(Dtype::F64, &f64s, &mut out));
    assert_eq!(out, [0.1f32, f32::NEG_INFINITY, 3.0]);
    assert!(!extend_f32(Dtype::I32, &[0; 4], &mut out));
    assert_eq!(out.len(), 3, "nothing appended for a non-float dtype");
    assert_eq!(float_width(Dtype::BF16), Some(2));
    assert_eq!(float_width(Dtype::U8), None);
}

#[test]
fn float_tensors_larger_than_a_chunk_are_read_whole() {
    let n = CHUNK_BYTES / 4 + 1000;
    let values: Vec<f32> = (0..n).map(|i| i as f32 * 0.25).collect();
    let bytes = file(&[("big", Dtype::F32, &[n], f32_bytes(&values))], &[]);
    let header = Header::from_bytes(Path::new(PATH), &bytes).unwrap();
    assert_eq!(header.read_f32(bytes.as_slice(), "big").unwrap(), values);
}

#[test]
fn bad_step_metadata() {
    let bytes = file(&[("a", Dtype::U8, &[1], vec![0])], &[("step", "1.5e3")]);
    let header = Header::from_bytes(Path::new(PATH), &bytes).unwrap();
    let err = header.step().unwrap_err();
    assert_eq!(
        err.problem().to_string(),
        "metadata 'step' is \"1.5e3\", not a non-negative integer"
    );
}

#[test]
fn steps_from_names() {
    assert_eq!(step_from_name("acts-150"), Some(150));
    assert_eq!(step_from_name("checkpoint-0042"), Some(42));
    assert_eq!(step_from_name("acts"), None);
    assert_eq!(step_from_name("acts-"), None);
    assert_eq!(step_from_name("acts-1x"), None);
    assert_eq!(step_from_name("acts-+1"), None);
    assert_eq!(step_from_name("acts-99999999999999999999999"), None);
    assert_eq!(checkpoint_step("checkpoint-5"), Some(5));
    assert_eq!(checkpoint_step("tmp-checkpoint-5"), None);
    assert_eq!(checkpoint_step("checkpoint-"), None);
    assert_eq!(checkpoint_step("checkpoint-5a"), None);
    assert_eq!(step_from_path(Path::new("a-3/b-x.safetensors")), Some(3));
    assert_eq!(step_from_path(Path::new("a/b-7.safetensors")), Some(7));
    assert_eq!(step_from_path(Path::new("a/b-.safetensors")), None);
}

#[test]
fn shard_index() {
    let path = Path::new("/m/model.safetensors.index.json");
    let shards = parse_shard_index(
        path,
        br#"{"metadata": {}, "weight_map": {"a": "m-2.safetensors", "b": "m-1.safetensors", "c": "m-1.safetensors"}}"#,
    )
    .unwrap();
    assert_eq!(shards, ["m-1.safetensors", "m-2.safetensors"]);
    for (text, fragment) in [
        (
            &br#"{"weight_map": {"a": "../x.safetensors"}}"#[..],
            "not a plain file name",
        ),
        (
            br#"{"weight_map": {"a": "sub/x.safetensors"}}"#,
            "not a plain file name",
        ),
        (br#"{"weight_map": {}}"#, "lists no shard files"),
        (
            br#"{"weights": {}}"#,
            "not a shard index with a weight_map object",
        ),
    ] {
        let err = parse_shard_index(path, text).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("/m/model.safetensors.index.json: "),
            "{message}"
        );
        assert!(message.contains(fragment), "{message}");
    }
}
