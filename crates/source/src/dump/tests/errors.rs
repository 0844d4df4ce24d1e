//! One test per [`DumpError`] variant (and per safetensors problem a dump
//! can have): each asserts the variant and that the message names the file
//! and says what is wrong, with the fragments users and tests rely on.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use safetensors::Dtype;

use super::{Fixture, check_message, f32_bytes, open_err, ramp};
use crate::dump::{ActivationDump, DumpError, SafetensorsError};

#[test]
fn err_io_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.safetensors");
    let err = open_err(&path);
    assert!(matches!(err, DumpError::Io { .. }), "{err:?}");
    check_message(&err, &path, &["opening"]);
}

/// Writes `8-byte length + header + data` by hand.
fn write_raw(path: &Path, header: &str, data: &[u8]) {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn err_too_short() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.safetensors");
    std::fs::write(&path, [1, 2, 3, 4, 5]).unwrap();
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            DumpError::Safetensors(SafetensorsError::TooShort { size: 5, .. })
        ),
        "{err:?}"
    );
    check_message(&err, &path, &["5 bytes"]);
}

#[test]
fn err_header_beyond_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("beyond.safetensors");
    let mut bytes = 1000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&path, bytes).unwrap();
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            DumpError::Safetensors(SafetensorsError::HeaderBeyondFile {
                header_len: 1000,
                available: 2,
                ..
            })
        ),
        "{err:?}"
    );
    check_message(&err, &path, &["1000", "only 2 bytes"]);
}

#[test]
fn err_header_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.safetensors");
    let file = File::create(&path).unwrap();
    file.write_all_at(&150_000_000u64.to_le_bytes(), 0).unwrap();
    file.set_len(200_000_000).unwrap(); // sparse
    drop(file);
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            DumpError::Safetensors(SafetensorsError::HeaderTooLarge { .. })
        ),
        "{err:?}"
    );
    check_message(&err, &path, &["150000000", "limit"]);
}

#[test]
fn err_header_not_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notjson.safetensors");
    write_raw(&path, "{not json", &[]);
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            DumpError::Safetensors(SafetensorsError::HeaderNotJson { .. })
        ),
        "{err:?}"
    );
    check_message(&err, &path, &["not valid JSON"]);
}

#[test]
fn err_invalid_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invalid.safetensors");
    write_raw(&path, "[1, 2]", &[]);
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            DumpError::Safetensors(SafetensorsError::InvalidHeader { .. })
        ),
        "{err:?}"
    );
    check_message(&err, &path, &["array, not an object"]);

    write_raw(
        &path,
        r#"{"t": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}"#,
        &[0; 16],
    );
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            DumpError::Safetensors(SafetensorsError::InvalidHeader { .. })
        ),
        "{err:?}"
    );
    check_message(&err, &path, &["tensor 't'", "F128"]);

    write_raw(&path, r#"{"__metadata__": {"step": 3}}"#, &[]);
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            DumpError::Safetensors(SafetensorsError::InvalidHeader { .. })
        ),
        "{err:?}"
    );
    check_message(&err, &path, &["__metadata__"]);
}

#[test]
fn err_bad_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offsets.safetensors");
    let gap = r#"{"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                  "b": {"dtype": "U8", "shape": [4], "data_offsets": [6, 10]}}"#;
    write_raw(&path, gap, &[0; 10]);
    let err = open_err(&path);
    assert!(
        matches!(&err, DumpError::Safetensors(SafetensorsError::BadOffsets { tensor, .. }) if tensor == "b"),
        "{err:?}"
    );
    check_message(&err, &path, &["'b'", "gap of 2 bytes"]);

    let overlap = r#"{"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                      "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}"#;
    write_raw(&path, overlap, &[0; 6]);
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            DumpError::Safetensors(SafetensorsError::BadOffsets { .. })
        ),
        "{err:?}"
    );
    check_message(&err, &path, &["overlap"]);

    let size = r#"{"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}"#;
    write_raw(&path, size, &[0; 12]);
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            DumpError::Safetensors(SafetensorsError::BadOffsets { .. })
        ),
        "{err:?}"
    );
    check_message(&err, &path, &["needs 16 bytes", "span 12 bytes"]);

    let reversed = r#"{"a": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}}"#;
    write_raw(&path, reversed, &[]);
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            DumpError::Safetensors(SafetensorsError::BadOffsets { .. })
        ),
        "{err:?}"
    );
    check_message(&err, &path, &["end before they begin"]);
}

#[test]
fn err_size_mismatch_truncated_or_trailing() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::single().write(&dir.path().join("cut.safetensors"));
    let size = std::fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(size - 3)
        .unwrap();
    let err = open_err(&path);
    assert!(
        matches!(err, DumpError::Safetensors(SafetensorsError::SizeMismatch { expected, actual, .. })
            if expected == size && actual == size - 3),
        "{err:?}"
    );
    check_message(
        &err,
        &path,
        &[
            &format!("{}", size - 3),
            &format!("{size}"),
            "truncated, 3 bytes missing",
        ],
    );

    let path = Fixture::single().write(&dir.path().join("long.safetensors"));
    OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"xy")
        .unwrap();
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            DumpError::Safetensors(SafetensorsError::SizeMismatch { .. })
        ),
        "{err:?}"
    );
    check_message(&err, &path, &["2 trailing bytes"]);
}

#[test]
fn err_bad_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.safetensors");
    Fixture::single().meta("splits", "train,test").write(&path);
    let err = open_err(&path);
    assert!(
        matches!(&err, DumpError::BadMetadata { key, .. } if key == "splits"),
        "{err:?}"
    );
    check_message(&err, &path, &["'splits'", "not a JSON array of strings"]);

    Fixture::multi().meta("tasks", "[]").write(&path);
    let err = open_err(&path);
    assert!(
        matches!(&err, DumpError::BadMetadata { key, .. } if key == "tasks"),
        "{err:?}"
    );
    check_message(&err, &path, &["'tasks'", "empty"]);

    Fixture::multi().meta("tasks", r#"["x", "x"]"#).write(&path);
    let err = open_err(&path);
    assert!(matches!(err, DumpError::BadMetadata { .. }), "{err:?}");
    check_message(&err, &path, &["twice"]);
}

#[test]
fn err_missing_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::multi()
        .unmeta("tasks")
        .write(&dir.path().join("notasks.safetensors"));
    let err = open_err(&path);
    assert!(matches!(err, DumpError::MissingTasks { .. }), "{err:?}");
    check_message(&err, &path, &["x/, y/", "'tasks'"]);
}

#[test]
fn err_missing_label_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::single()
        .unmeta("label_names")
        .write(&dir.path().join("nonames.safetensors"));
    let err = open_err(&path);
    assert!(
        matches!(&err, DumpError::MissingLabelNames { key, .. } if key == "label_names"),
        "{err:?}"
    );
    check_message(&err, &path, &["'label_names'"]);

    let path = Fixture::multi()
        .unmeta("y/label_names")
        .write(&dir.path().join("nonames2.safetensors"));
    let err = open_err(&path);
    assert!(
        matches!(&err, DumpError::MissingLabelNames { key, .. } if key == "y/label_names"),
        "{err:?}"
    );
    check_message(&err, &path, &["'y/label_names'", "task 'y'"]);
}

#[test]
fn err_bad_label_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("badnames.safetensors");
    Fixture::single()
        .meta("label_names", "[1, 2, 3]")
        .write(&path);
    let err = open_err(&path);
    assert!(matches!(err, DumpError::BadLabelNames { .. }), "{err:?}");
    check_message(
        &err,
        &path,
        &["'label_names'", "not a JSON array of strings"],
    );

    Fixture::single()
        .meta("label_names", r#"["a", "b", "a"]"#)
        .write(&path);
    let err = open_err(&path);
    assert!(matches!(err, DumpError::BadLabelNames { .. }), "{err:?}");
    check_message(&err, &path, &["\"a\" twice"]);
}

#[test]
fn err_missing_labels() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::single()
        .without("labels")
        .write(&dir.path().join("nolabels.safetensors"));
    let err = open_err(&path);
    assert!(matches!(err, DumpError::MissingLabels { .. }), "{err:?}");
    check_message(&err, &path, &["'labels'", "missing"]);
}

#[test]
fn err_bad_labels() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("badlabels.safetensors");
    Fixture::single()
        .f32("labels", 4, 1, &[0.0; 4])
        .write(&path);
    let err = open_err(&path);
    assert!(matches!(err, DumpError::BadLabels { .. }), "{err:?}");
    check_message(&err, &path, &["F32 [4, 1]", "I64 or I32"]);

    let data = [0i64; 4].iter().flat_map(|v| v.to_le_bytes()).collect();
    Fixture::single()
        .raw("labels", Dtype::I64, &[4, 1], data)
        .write(&path);
    let err = open_err(&path);
    assert!(matches!(err, DumpError::BadLabels { .. }), "{err:?}");
    check_message(&err, &path, &["I64 [4, 1]"]);
}

#[test]
fn err_label_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("range.safetensors");
    Fixture::single().i64s("labels", &[0, 1, 3, 0]).write(&path);
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            DumpError::LabelOutOfRange {
                item: 2,
                value: 3,
                n_labels: 3,
                ..
            }
        ),
        "{err:?}"
    );
    check_message(&err, &path, &["item 2", "label 3", "3 label names"]);

    Fixture::single()
        .i32s("labels", &[0, -1, 0, 0])
        .write(&path);
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            DumpError::LabelOutOfRange {
                item: 1,
                value: -1,
                ..
            }
        ),
        "{err:?}"
    );
    check_message(&err, &path, &["item 1", "label -1"]);
}

#[test]
fn err_bad_split() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("badsplit.safetensors");
    Fixture::single().i64s("split", &[0, 1, 0, 1]).write(&path);
    let err = open_err(&path);
    assert!(matches!(err, DumpError::BadSplit { .. }), "{err:?}");
    check_message(&err, &path, &["'split'", "I64 [4]", "U8"]);

    Fixture::single().u8s("split", &[0, 1, 0]).write(&path);
    let err = open_err(&path);
    assert!(matches!(err, DumpError::BadSplit { n: 4, .. }), "{err:?}");
    check_message(&err, &path, &["U8 [3]", "[4]"]);
}

#[test]
fn err_split_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::single()
        .u8s("split", &[0, 1, 2, 0])
        .write(&dir.path().join("splitrange.safetensors"));
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            DumpError::SplitOutOfRange {
                item: 2,
                value: 2,
                ..
            }
        ),
        "{err:?}"
    );
    check_message(&err, &path, &["item 2", "split 2", "only 2 splits"]);
}

#[test]
fn err_layer_item_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::single()
        .f32("layer.1", 3, 2, &ramp(3, 2, 0.0))
        .write(&dir.path().join("rows.safetensors"));
    let err = open_err(&path);
    assert!(
        matches!(&err, DumpError::LayerItemCount { tensor, rows: 3, n: 4, .. }
            if tensor == "layer.1"),
        "{err:?}"
    );
    check_message(
        &err,
        &path,
        &["'layer.1' has 3 rows", "'labels' has 4 items"],
    );
}

#[test]
fn err_bad_layer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("badlayer.safetensors");
    let data = vec![0u8; 4 * 2 * 4];
    Fixture::single()
        .raw("layer.1", Dtype::I32, &[4, 2], data)
        .write(&path);
    let err = open_err(&path);
    assert!(matches!(err, DumpError::BadLayer { .. }), "{err:?}");
    check_message(&err, &path, &["'layer.1'", "I32 [4, 2]"]);

    Fixture::single()
        .raw("layer.0", Dtype::F32, &[4, 1, 2], f32_bytes(&[0.0; 8]))
        .write(&path);
    let err = open_err(&path);
    assert!(matches!(err, DumpError::BadLayer { .. }), "{err:?}");
    check_message(&err, &path, &["F32 [4, 1, 2]"]);
}

#[test]
fn err_layer_dim_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::single()
        .f32("layer.1", 4, 3, &ramp(4, 3, 0.0))
        .write(&dir.path().join("dims.safetensors"));
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            DumpError::LayerDimMismatch {
                dim: 3,
                first_dim: 2,
                ..
            }
        ),
        "{err:?}"
    );
    check_message(&err, &path, &["'layer.1' has D = 3", "'layer.0' has D = 2"]);
}

#[test]
fn err_no_layers() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::single()
        .without("layer.0")
        .without("layer.1")
        .f32("layers.0", 4, 2, &ramp(4, 2, 0.0))
        .write(&dir.path().join("nolayers.safetensors"));
    let err = open_err(&path);
    assert!(matches!(err, DumpError::NoLayers { .. }), "{err:?}");
    check_message(&err, &path, &["no layer tensor", "layer.<L>"]);
}

#[test]
fn err_task_without_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::multi()
        .meta("tasks", r#"["x", "y", "z"]"#)
        .write(&dir.path().join("ghost.safetensors"));
    let err = open_err(&path);
    assert!(
        matches!(&err, DumpError::TaskWithoutTensors { task, .. } if task == "z"),
        "{err:?}"
    );
    check_message(&err, &path, &["'z'", "z/..."]);
}

#[test]
fn err_no_train_split() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::single()
        .meta("splits", r#"["dev", "test"]"#)
        .write(&dir.path().join("notrain.safetensors"));
    let err = open_err(&path);
    assert!(matches!(err, DumpError::NoTrainSplit { .. }), "{err:?}");
    check_message(&err, &path, &["\"train\"", "dev, test"]);
}

#[test]
fn err_empty_train_split() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::multi()
        .u8s("split", &[1, 1, 1])
        .write(&dir.path().join("emptytrain.safetensors"));
    let err = open_err(&path);
    assert!(
        matches!(&err, DumpError::EmptySplit { task, split, .. }
            if task == "y" && split == "train"),
        "{err:?}"
    );
    check_message(&err, &path, &["task 'y'", "split 'train' has no items"]);
}

#[test]
fn err_non_finite() {
    let dir = tempfile::tempdir().unwrap();
    let mut values = ramp(4, 2, 0.0);
    values[3] = f32::NAN; // row 1
    values[6] = f32::INFINITY; // row 3
    let path = Fixture::single()
        .f32("layer.1", 4, 2, &values)
        .write(&dir.path().join("nan.safetensors"));
    let dump = ActivationDump::open(&path).unwrap();
    let task = dump.task(None).unwrap();
    assert!(dump.layer(task, 0).is_ok());
    let err = dump.layer(task, 1).unwrap_err();
    assert!(
        matches!(
            err,
            DumpError::NonFinite {
                layer: 1,
                rows: 2,
                n: 4,
                first_row: 1,
                ..
            }
        ),
        "{err:?}"
    );
    check_message(
        &err,
        &path,
        &["task 'default'", "layer 1", "2 of 4 rows", "first: row 1"],
    );
}

#[test]
fn err_bad_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::single()
        .meta("step", "1.5e3")
        .write(&dir.path().join("step-3.safetensors"));
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            DumpError::Safetensors(SafetensorsError::BadStep { .. })
        ),
        "{err:?}"
    );
    check_message(&err, &path, &["\"1.5e3\"", "not a non-negative integer"]);
}

#[test]
fn err_unknown_and_ambiguous_task() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::multi().write(&dir.path().join("tasks.safetensors"));
    let dump = ActivationDump::open(&path).unwrap();
    let err = dump.task(Some("upos")).unwrap_err();
    assert!(matches!(err, DumpError::UnknownTask { .. }), "{err:?}");
    check_message(&err, &path, &["'upos'", "available: x, y"]);

    let err = dump.task(None).unwrap_err();
    assert!(matches!(err, DumpError::AmbiguousTask { .. }), "{err:?}");
    check_message(&err, &path, &["several tasks", "x, y"]);

    // A task of another dump is looked up by name.
    let mut stranger = dump.task(Some("x")).unwrap().clone();
    stranger.name = "w".to_string();
    let err = dump.layer(&stranger, 0).unwrap_err();
    assert!(matches!(err, DumpError::UnknownTask { .. }), "{err:?}");
}

#[test]
fn err_no_such_layer() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::single().write(&dir.path().join("layers.safetensors"));
    let dump = ActivationDump::open(&path).unwrap();
    let err = dump.layer(dump.task(None).unwrap(), 5).unwrap_err();
    assert!(
        matches!(err, DumpError::NoSuchLayer { layer: 5, .. }),
        "{err:?}"
    );
    check_message(&err, &path, &["no layer 5", "available: 0, 1"]);
}
