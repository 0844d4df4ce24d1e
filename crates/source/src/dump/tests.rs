//! The dump reader's tests: fixtures written with the safetensors crate,
//! the happy paths (single and multi-task, F16/BF16, steps), one test per
//! error variant (asserting that the message names the file and says what is
//! wrong), and the real dumps of the shared data folder.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::checks::layer_index;
use super::{ActivationDump, DumpError, LayerDtype, SafetensorsError};
use crate::st::step_from_path;

/// A dump under construction: tensors and metadata, written with the
/// safetensors crate.
#[derive(Clone, Default)]
struct Fixture {
    tensors: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>,
    meta: HashMap<String, String>,
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Layer values `base + 0.5 * i` for element `i`.
fn ramp(n: usize, d: usize, base: f32) -> Vec<f32> {
    (0..n * d).map(|i| base + 0.5 * i as f32).collect()
}

impl Fixture {
    fn raw(mut self, name: &str, dtype: Dtype, shape: &[usize], data: Vec<u8>) -> Self {
        self.tensors
            .insert(name.to_string(), (dtype, shape.to_vec(), data));
        self
    }
    fn f32(self, name: &str, n: usize, d: usize, values: &[f32]) -> Self {
        self.raw(name, Dtype::F32, &[n, d], f32_bytes(values))
    }
    fn i64s(self, name: &str, values: &[i64]) -> Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.raw(name, Dtype::I64, &[values.len()], data)
    }
    fn i32s(self, name: &str, values: &[i32]) -> Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.raw(name, Dtype::I32, &[values.len()], data)
    }
    fn u8s(self, name: &str, values: &[u8]) -> Self {
        self.raw(name, Dtype::U8, &[values.len()], values.to_vec())
    }
    fn without(mut self, name: &str) -> Self {
        self.tensors.remove(name);
        self
    }
    fn meta(mut self, key: &str, value: &str) -> Self {
        self.meta.insert(key.to_string(), value.to_string());
        self
    }
    fn unmeta(mut self, key: &str) -> Self {
        self.meta.remove(key);
        self
    }
    fn write(&self, path: &Path) -> PathBuf {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        let views: Vec<(String, TensorView<'_>)> = self
            .tensors
            .iter()
            .map(|(name, (dtype, shape, data))| {
                (
                    name.clone(),
                    TensorView::new(*dtype, shape.clone(), data).unwrap(),
                )
            })
            .collect();
        safetensors::serialize_to_file(views, Some(self.meta.clone()), path).unwrap();
        path.to_path_buf()
    }

    /// Single task: 4 items, 3 label names, split [0, 1, 0, 1], layers
    /// 0 and 1 of [4, 2] F32.
    fn single() -> Self {
        Fixture::default()
            .meta("label_names", r#"["a", "b", "c"]"#)
            .i64s("labels", &[0, 2, 1, 2])
            .u8s("split", &[0, 1, 0, 1])
            .f32("layer.0", 4, 2, &ramp(4, 2, 0.0))
            .f32("layer.1", 4, 2, &ramp(4, 2, 100.0))
    }

    /// Two tasks over the same 3 items sharing `layer.0` and `layer.1`;
    /// task `x` overrides layer 1 and has its own split, `y` uses the
    /// shared split.
    fn multi() -> Self {
        Fixture::default()
            .meta("tasks", r#"["x", "y"]"#)
            .meta("x/label_names", r#"["p", "q"]"#)
            .meta("y/label_names", r#"["r", "s", "t"]"#)
            .i64s("x/labels", &[0, 1, 1])
            .i64s("y/labels", &[2, 0, 1])
            .u8s("x/split", &[0, 0, 1])
            .u8s("split", &[1, 0, 0])
            .f32("layer.0", 3, 2, &ramp(3, 2, 0.0))
            .f32("layer.1", 3, 2, &ramp(3, 2, 10.0))
            .f32("x/layer.1", 3, 2, &ramp(3, 2, -10.0))
    }
}

fn open_err(path: &Path) -> DumpError {
    match ActivationDump::open(path) {
        Ok(_) => panic!("{} opened but should not have", path.display()),
        Err(e) => e,
    }
}

/// Asserts that the message names the file and contains every fragment.
fn check_message(err: &DumpError, path: &Path, fragments: &[&str]) {
    let msg = err.to_string();
    let file = path.file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(file), "message lacks file name {file}: {msg}");
    for f in fragments {
        assert!(msg.contains(f), "message lacks {f:?}: {msg}");
    }
}

#[test]
fn single_task_f32_with_split() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::single()
        .meta("task", "upos")
        .meta("model", "m")
        .write(&dir.path().join("acts.safetensors"));
    let dump = ActivationDump::open(&path).unwrap();
    assert_eq!(dump.path(), path);
    assert_eq!(dump.splits(), ["train", "test"]);
    assert_eq!(dump.train_split(), 0);
    assert_eq!(dump.split_index("test"), Some(1));
    assert_eq!(dump.metadata().get("model").map(String::as_str), Some("m"));
    assert_eq!(dump.tasks().len(), 1);
    let task = dump.task(None).unwrap();
    assert_eq!(task, dump.task(Some("upos")).unwrap());
    assert_eq!(task.name, "upos");
    assert_eq!(task.label_names, ["a", "b", "c"]);
    assert_eq!(task.labels, [0, 2, 1, 2]);
    assert_eq!(task.split, [0, 1, 0, 1]);
    assert_eq!(task.layers, [0, 1]);
    assert_eq!((task.n, task.dim), (4, 2));
    assert_eq!(task.split_indices(0), [0, 2]);
    assert_eq!(task.split_indices(1), [1, 3]);
    assert_eq!(task.train_index(dump.splits()), Some(0));
    assert_eq!(task.train_indices(dump.splits()), [0, 2]);
    assert_eq!(
        task.split_indices_by_name(dump.splits(), "test"),
        Some(vec![1, 3])
    );
    assert_eq!(task.split_indices_by_name(dump.splits(), "dev"), None);
    assert_eq!(dump.layer_dtype(task, 1), Some(LayerDtype::F32));
    let l1 = dump.layer(task, 1).unwrap();
    assert_eq!(l1.dim(), (4, 2));
    assert_eq!(l1.iter().copied().collect::<Vec<_>>(), ramp(4, 2, 100.0));
    assert_eq!(l1[[2, 1]], 100.0 + 0.5 * 5.0);
}

#[test]
fn defaults_without_split_task_or_splits() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::single()
        .without("split")
        .meta("splits", r#"["test", "train"]"#)
        .write(&dir.path().join("d.safetensors"));
    let dump = ActivationDump::open(&path).unwrap();
    let task = dump.task(None).unwrap();
    assert_eq!(task.name, "default");
    // No split tensor: every item is in "train", here split number 1.
    assert_eq!(dump.train_split(), 1);
    assert_eq!(task.split, [1, 1, 1, 1]);
    assert_eq!(task.train_indices(dump.splits()), [0, 1, 2, 3]);
    assert_eq!(dump.step(), None);
}

#[test]
fn multi_task_with_shared_layers() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::multi()
        .meta("step", "7")
        .write(&dir.path().join("multi.safetensors"));
    let dump = ActivationDump::open(&path).unwrap();
    assert_eq!(dump.step(), Some(7));
    let names: Vec<&str> = dump.tasks().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["x", "y"]);
    let x = dump.task(Some("x")).unwrap();
    let y = dump.task(Some("y")).unwrap();
    assert_eq!(x.label_names, ["p", "q"]);
    assert_eq!(y.label_names, ["r", "s", "t"]);
    assert_eq!(x.labels, [0, 1, 1]);
    assert_eq!(y.labels, [2, 0, 1]);
    assert_eq!(x.split, [0, 0, 1], "x has its own split");
    assert_eq!(y.split, [1, 0, 0], "y falls back to the shared split");
    assert_eq!(x.layers, [0, 1]);
    assert_eq!(y.layers, [0, 1]);
    let flat = |a: Array2<f32>| a.iter().copied().collect::<Vec<_>>();
    assert_eq!(flat(dump.layer(x, 0).unwrap()), ramp(3, 2, 0.0));
    assert_eq!(flat(dump.layer(y, 0).unwrap()), ramp(3, 2, 0.0));
    assert_eq!(flat(dump.layer(x, 1).unwrap()), ramp(3, 2, -10.0));
    assert_eq!(flat(dump.layer(y, 1).unwrap()), ramp(3, 2, 10.0));
}

#[test]
fn f16_and_bf16_are_widened_exactly() {
    let values: Vec<f32> = vec![
        0.0,
        -0.0,
        1.0,
        -2.5,
        0.333_333_3,
        65504.0,
        6.0e-8,
        1.0e-3,
        1.234_567,
        -1.0e4,
    ];
    let n = values.len() / 2;
    let f16s: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
    let bf16s: Vec<half::bf16> = values.iter().map(|&v| half::bf16::from_f32(v)).collect();
    let f16_bytes = f16s.iter().flat_map(|v| v.to_le_bytes()).collect();
    let bf16_bytes = bf16s.iter().flat_map(|v| v.to_le_bytes()).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::single()
        .without("split")
        .i64s("labels", &vec![0; n])
        .raw("layer.0", Dtype::F16, &[n, 2], f16_bytes)
        .raw("layer.1", Dtype::BF16, &[n, 2], bf16_bytes)
        .write(&dir.path().join("half.safetensors"));
    let dump = ActivationDump::open(&path).unwrap();
    let task = dump.task(None).unwrap();
    assert_eq!(dump.layer_dtype(task, 0), Some(LayerDtype::F16));
    assert_eq!(dump.layer_dtype(task, 1), Some(LayerDtype::BF16));
    let l0 = dump.layer(task, 0).unwrap();
    let l1 = dump.layer(task, 1).unwrap();
    for (i, ((&got16, &gotb), (h, b))) in l0
        .iter()
        .zip(l1.iter())
        .zip(f16s.iter().zip(&bf16s))
        .enumerate()
    {
        assert_eq!(got16.to_bits(), h.to_f32().to_bits(), "f16 element {i}");
        assert_eq!(gotb.to_bits(), b.to_f32().to_bits(), "bf16 element {i}");
    }
    // Values exactly representable in both formats come back unchanged.
    assert_eq!(l0[[1, 0]], 1.0);
    assert_eq!(l1[[1, 1]], -2.5);
    assert_eq!(l0[[2, 1]], 65504.0);
    assert!(l0[[0, 1]].is_sign_negative());
}

#[test]
fn i32_labels() {
    let dir = tempfile::tempdir().unwrap();
    let path = Fixture::single()
        .i32s("labels", &[2, 1, 0, 0])
        .write(&dir.path().join("i32.safetensors"));
    let dump = ActivationDump::open(&path).unwrap();
    assert_eq!(dump.task(None).unwrap().labels, [2, 1, 0, 0]);
}

#[test]
fn step_from_metadata_file_name_or_parent_dir() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Fixture::single();
    let from_meta = fx
        .clone()
        .meta("step", "42")
        .write(&dir.path().join("step-150.safetensors"));
    assert_eq!(ActivationDump::open(&from_meta).unwrap().step(), Some(42));
    let from_name = fx.write(&dir.path().join("step-150.safetensors"));
    assert_eq!(ActivationDump::open(&from_name).unwrap().step(), Some(150));
    let from_dir = fx.write(&dir.path().join("checkpoint-25/acts.safetensors"));
    assert_eq!(ActivationDump::open(&from_dir).unwrap().step(), Some(25));
    let none = fx.write(&dir.path().join("run-x/acts.safetensors"));
    assert_eq!(ActivationDump::open(&none).unwrap().step(), None);
    assert_eq!(step_from_path(Path::new("a-3/b-x.safetensors")), Some(3));
    assert_eq!(step_from_path(Path::new("a/b-.safetensors")), None);
}

#[test]
fn layer_names_are_canonical() {
    assert_eq!(layer_index("layer.0", ""), Some(0));
    assert_eq!(layer_index("layer.12", ""), Some(12));
    assert_eq!(layer_index("x/layer.3", "x/"), Some(3));
    assert_eq!(layer_index("x/layer.3", ""), None);
    assert_eq!(layer_index("layer.03", ""), None);
    assert_eq!(layer_index("layer.", ""), None);
    assert_eq!(layer_index("layer.1.attn", ""), None);
}

// ---- one test per error variant ----

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

// ---- the real dumps in the shared data folder ----

fn shared_dumps() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/dumps");
    assert!(
        dir.is_dir(),
        "the shared data folder is required for this test but {} does not exist",
        dir.display()
    );
    dir
}

#[test]
fn real_single_task_dump() {
    let path = shared_dumps().join("streusle-ps_role-minilm.safetensors");
    let dump = ActivationDump::open(&path).unwrap();
    let task = dump.task(None).unwrap();
    assert_eq!(task.name, "ps_role");
    assert_eq!(task.n, 947);
    assert_eq!(task.label_names.len(), 41);
    assert_eq!(task.dim, 384);
    assert_eq!(task.layers, (0..=6).collect::<Vec<_>>());
    assert_eq!(dump.splits(), ["train", "test"]);
    assert_eq!(task.train_indices(dump.splits()).len(), 462);
    assert_eq!(task.split_indices(1).len(), 485);
    assert_eq!(dump.layer_dtype(task, 6), Some(LayerDtype::F32));
    let l6 = dump.layer(task, 6).unwrap();
    assert_eq!(l6.dim(), (947, 384));
}

#[test]
fn real_multi_task_dump() {
    let dir = shared_dumps().join("crosstask");
    let dump = ActivationDump::open(&dir.join("step-50.safetensors")).unwrap();
    assert_eq!(dump.step(), Some(50));
    let names: Vec<&str> = dump.tasks().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["ps_fxn", "ps_role"]);
    let fxn = dump.task(Some("ps_fxn")).unwrap();
    let role = dump.task(Some("ps_role")).unwrap();
    assert_eq!(fxn.label_names.len(), 36);
    assert_eq!(role.label_names.len(), 41);
    for t in [fxn, role] {
        assert_eq!((t.n, t.dim), (947, 384));
        assert_eq!(t.layers, (0..=6).collect::<Vec<_>>());
        assert_eq!(t.train_indices(dump.splits()).len(), 462);
        assert_eq!(dump.layer_dtype(t, 3), Some(LayerDtype::F16));
    }
    // Both tasks hold the same vectors.
    assert_eq!(dump.layer(fxn, 3).unwrap(), dump.layer(role, 3).unwrap());

    // Step 0 is the pre-trained model: the F32 single-task layers rounded
    // to F16, bit for bit.
    let step0 = ActivationDump::open(&dir.join("step-0.safetensors")).unwrap();
    let single =
        ActivationDump::open(&shared_dumps().join("streusle-ps_role-minilm.safetensors")).unwrap();
    let rounded = step0
        .layer(step0.task(Some("ps_role")).unwrap(), 4)
        .unwrap();
    let full = single.layer(single.task(None).unwrap(), 4).unwrap();
    assert!(
        rounded
            .iter()
            .zip(full.iter())
            .all(|(&r, &f)| r.to_bits() == half::f16::from_f32(f).to_f32().to_bits())
    );
}
