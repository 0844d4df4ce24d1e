//! Test data and set-up for the integration tests: activation dumps
//! (DESIGN §3.1) built in memory ([`DumpSpec`], small and synthetic ones), a
//! daemon config listening on a free port with JSON logs, run folders,
//! temporary directories and `probewatch probe --json`. These are test
//! helpers: they panic with a clear message instead of returning errors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::tensor::{Dtype, TensorView};
use serde_json::Value;

/// A config file in `dir` listening on a free port, storing in
/// `dir/store.sqlite`, JSON logs, one worker; `runs` is TOML `[[run]]`
/// tables appended as they are.
pub fn write_config(dir: &Path, runs: &str) -> PathBuf {
    let path = dir.join("probewatch.toml");
    let text = format!(
        "listen = \"127.0.0.1:0\"\nstore = \"store.sqlite\"\nworkers = 1\nlog_format = \"json\"\n\n{runs}"
    );
    std::fs::write(&path, text).expect("writing the config");
    path
}

/// A `[[run]]` table scanning every 0.2 s.
pub fn run_table(name: &str, folder: &Path, extra: &str) -> String {
    format!(
        "[[run]]\nname = \"{name}\"\nfolder = \"{}\"\nscan_interval_seconds = 0.2\n{extra}\n",
        folder.display()
    )
}

/// A temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// `dir/name`, created.
pub fn folder(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(&p).expect("creating a run folder");
    p
}

/// `EXE probe FILE --json`, parsed.
pub fn probe_json(exe: impl AsRef<Path>, file: &Path) -> Value {
    let out = Command::new(exe.as_ref())
        .args(["probe", file.to_str().expect("UTF-8 path"), "--json"])
        .output()
        .expect("running probewatch probe");
    assert!(
        out.status.success(),
        "probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("probe --json prints JSON")
}

/// What to put in an activation dump (DESIGN §3.1), one task.
pub struct DumpSpec {
    /// Rows per layer, `n × dim` row-major.
    pub layers: Vec<Vec<f32>>,
    /// Columns.
    pub dim: usize,
    /// Label index per row.
    pub labels: Vec<i64>,
    /// Split per row (0 train, 1 test).
    pub split: Vec<u8>,
    /// Label names.
    pub label_names: Vec<String>,
    /// Task name.
    pub task: String,
    /// Training step.
    pub step: u64,
}

impl DumpSpec {
    /// The safetensors bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let n = self.labels.len();
        let layer_bytes: Vec<Vec<u8>> = self
            .layers
            .iter()
            .map(|l| {
                assert_eq!(l.len(), n * self.dim, "layer shape");
                l.iter().flat_map(|v| v.to_le_bytes()).collect()
            })
            .collect();
        let label_bytes: Vec<u8> = self.labels.iter().flat_map(|v| v.to_le_bytes()).collect();
        let names: Vec<String> = (0..self.layers.len())
            .map(|l| format!("layer.{l}"))
            .collect();
        let mut tensors: Vec<(String, TensorView<'_>)> = names
            .iter()
            .zip(&layer_bytes)
            .map(|(name, b)| {
                let view = TensorView::new(Dtype::F32, vec![n, self.dim], b).expect("shape");
                (name.clone(), view)
            })
            .collect();
        tensors.push((
            "labels".into(),
            TensorView::new(Dtype::I64, vec![n], &label_bytes).expect("shape"),
        ));
        tensors.push((
            "split".into(),
            TensorView::new(Dtype::U8, vec![n], &self.split).expect("shape"),
        ));
        let metadata: HashMap<String, String> = [
            (
                "label_names".to_owned(),
                serde_json::to_string(&self.label_names).expect("strings"),
            ),
            ("splits".to_owned(), r#"["train","test"]"#.to_owned()),
            ("task".to_owned(), self.task.clone()),
            ("step".to_owned(), self.step.to_string()),
        ]
        .into_iter()
        .collect();
        safetensors::serialize(tensors, Some(metadata)).expect("valid tensors serialise")
    }
}

/// A synthetic dump big enough that its analysis takes a while: `n` points
/// (a fifth of them test) in `dim` dimensions with `k` overlapping labels
/// (`geometry::synth`), `layers` layers (each a scaled, differently
/// perturbed copy), moved a little per `step` so checkpoints differ.
pub fn synthetic_dump(n: usize, dim: usize, k: usize, layers: usize, step: u64) -> DumpSpec {
    synthetic_dump_of(
        geometry::synth::Variant::Overlapping,
        n,
        dim,
        k,
        layers,
        step,
    )
}

/// [`synthetic_dump`] of another [`geometry::synth::Variant`].
pub fn synthetic_dump_of(
    variant: geometry::synth::Variant,
    n: usize,
    dim: usize,
    k: usize,
    layers: usize,
    step: u64,
) -> DumpSpec {
    use geometry::synth::{Rng, generate};
    let n_test = n / 5;
    let base = generate(n - n_test, n_test, dim, k, variant, 0x5eed);
    let layers = (0..layers)
        .map(|l| {
            let mut rng = Rng::new(1000 * step + l as u64 + 1);
            let scale = 1.0 + 0.25 * l as f64;
            base.data
                .iter()
                .map(|&x| (f64::from(x) * scale + 0.05 * rng.normal()) as f32)
                .collect()
        })
        .collect();
    DumpSpec {
        layers,
        dim,
        labels: base.labels.iter().map(|&l| i64::from(l)).collect(),
        split: base.split.clone(),
        label_names: (0..k).map(|i| format!("L{i}")).collect(),
        task: "synth".to_owned(),
        step,
    }
}

/// A small, fast dump: 300 points, 16 dimensions, 5 separable labels, 3
/// layers, task `small`; moved a little per step.
pub fn small_dump(step: u64) -> DumpSpec {
    use geometry::synth::{Rng, Variant, generate};
    let base = generate(240, 60, 16, 5, Variant::Separable, 7);
    let layers = (0..3)
        .map(|l| {
            let mut rng = Rng::new(step * 10 + l + 1);
            base.data
                .iter()
                .map(|&x| (f64::from(x) * (1.0 + 0.5 * l as f64) + 0.1 * rng.normal()) as f32)
                .collect()
        })
        .collect();
    DumpSpec {
        layers,
        dim: 16,
        labels: base.labels.iter().map(|&l| i64::from(l)).collect(),
        split: base.split,
        label_names: ["A", "B", "C", "D", "E"].map(String::from).to_vec(),
        task: "small".to_owned(),
        step,
    }
}
