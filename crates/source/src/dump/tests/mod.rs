//! The dump reader's tests: fixtures written with the safetensors crate,
//! the happy paths (single and multi-task, F16/BF16, steps) and the real
//! dumps of the shared data folder; one test per error variant is in
//! `errors`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use ndarray::Array2;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::checks::layer_index;
use super::{ActivationDump, DumpError, LayerDtype};
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

mod errors;

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
