//! The benchmark harness behind `cargo xtask bench` (it uses
//! `anyhow`, spawns processes and times things): fixed cases on the
//! shared real dump and on synthetic layers, each run in a child process of
//! the same binary so its wall time and peak resident memory (`VmHWM`) are
//! its own.
//!
//! Speed targets are checked here, never by timed assertions in tests. The
//! harness measures; it does not judge, retry or average (run it again for a
//! second sample).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use analysis::{AnalysisOptions, TaskMemory, analyse_dump, analyse_dump_with};
use geometry::classifier::{self, ClassifierParams};
use geometry::hull::{Gram, HullParams, PointSet, Query, hull_distance, rms_radius};
use geometry::measures::LayerInput;
use geometry::measures::Partition;
use geometry::measures::{MeasureParams, measure_layer};
use geometry::synth::{Variant, generate};
use source::dump::ActivationDump;

/// Names of the cases, in the order they run by default.
pub const CASES: &[&str] = &[
    "psrole-all-layers",
    "crosstask-incremental",
    "partial-finetuning-incremental",
    "daemon-time-to-metrics",
    "daemon-scrape-latency",
    "daemon-scrape-secured",
    "report-large-run",
    "psrole-l6-label-distances",
    "peer-scipy-nnls-l6",
    "extract-minilm",
    "peer-torch-extract-minilm",
    "extract-bert-base-random",
    "peer-torch-extract-bert-base-random",
    "synthetic-separable",
    "synthetic-separable-isotropic",
    "synthetic-overlapping",
    "classifier-psrole-all-layers",
    "classifier-synthetic",
    "live-hf-run",
];

const PSROLE: &str = "streusle-ps_role-minilm.safetensors";

/// One measured case.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseResult {
    /// Case name.
    pub case: String,
    /// Wall-clock seconds of the measured part (input loading excluded,
    /// except for `psrole-all-layers`, which includes reading the dump);
    /// `None` when the case did not run to the end.
    pub seconds: Option<f64>,
    /// Peak resident set size of the process, MiB.
    pub peak_rss_mib: Option<f64>,
    /// What was computed (sizes, clusters, accuracy).
    pub detail: String,
}

/// The 1-minute load average (`/proc/loadavg`), for the record: the machine
/// is shared.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

/// CPU seconds (user + system) of this process so far, from
/// `/proc/self/stat` (clock ticks of 1/100 s on Linux): on a shared machine
/// the wall time depends on the load, the CPU time much less.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Peak resident memory of this process so far, MiB.
fn peak_rss_mib() -> Option<f64> {
    harness::peak_rss_mib(std::process::id())
}

/// The 780 label-pair hull distances of the PS-role dump's layer 6 (labels
/// in index order, pairs `a < b`), and the seconds they took.
fn l6_label_distances(data: &Path) -> Result<(f64, Vec<f64>)> {
    use rayon::prelude::*;
    let path = data.join(PSROLE);
    let dump = ActivationDump::open(&path)
        .with_context(|| format!("the shared dumps are needed: {}", path.display()))?;
    let task = dump.task(None)?;
    let m = dump.layer(task, 6)?;
    let x = m.as_slice().context("layout")?;
    let train = task.train_indices(dump.splits());
    let mut by_label: Vec<Vec<usize>> = vec![Vec::new(); task.label_names.len()];
    for &r in &train {
        by_label[task.labels[r] as usize].push(r);
    }
    let present: Vec<&Vec<usize>> = by_label.iter().filter(|v| !v.is_empty()).collect();
    let pairs: Vec<(usize, usize)> = (0..present.len())
        .flat_map(|a| (a + 1..present.len()).map(move |b| (a, b)))
        .collect();
    // As `probe` does it: the layer's scale for the tolerance, and the Gram
    // matrix (its computation timed) when it fits the budget.
    let scale = rms_radius(x, task.dim, &train);
    let params = HullParams {
        scale: Some(scale),
        ..HullParams::default()
    };
    let t = Instant::now();
    let gram = Gram::fits(task.n, Gram::DEFAULT_BUDGET_BYTES).then(|| Gram::new(x, task.dim));
    let ds: Vec<f64> = pairs
        .par_iter()
        .map(|&(a, b)| {
            hull_distance(
                PointSet::subset_with(x, task.dim, present[a], gram.as_ref()),
                PointSet::subset_with(x, task.dim, present[b], gram.as_ref()),
                Query::Distance,
                &params,
                None,
            )
            .distance()
        })
        .collect();
    Ok((t.elapsed().as_secs_f64(), ds))
}

/// The shared fine-tuning sequence (`crosstask/step-{0,50,100,150}`), both
/// tasks, all layers: each checkpoint after the first analysed cold and
/// warm-started from its predecessor, in the same process. Seconds = the
/// warm analyses of steps 50–150; the detail gives the cold time, the
/// speed-up and how far the two reports are apart.
fn crosstask_incremental(data: &Path) -> Result<(f64, String)> {
    let dir = data.join("crosstask");
    let steps = [0u64, 50, 100, 150];
    let (mut cold_s, mut warm_s, mut frozen_s) = (0.0, 0.0, 0.0);
    let (mut max_rel, mut cluster_diff, mut acc_diff) = (0.0f64, 0usize, 0.0f64);
    for task in ["ps_fxn", "ps_role"] {
        let opts = AnalysisOptions {
            task: Some(task.to_string()),
            ..Default::default()
        };
        let mut memory = TaskMemory::new();
        let mut frozen_memory = TaskMemory::new();
        for (k, step) in steps.iter().enumerate() {
            let path = dir.join(format!("step-{step}.safetensors"));
            let dump = ActivationDump::open(&path)
                .with_context(|| format!("the shared dumps are needed: {}", path.display()))?;
            let t = Instant::now();
            let (warm, next) =
                analyse_dump_with(&dump, &opts, &memory, Partition::Recluster, &|_| {})?;
            let tw = t.elapsed().as_secs_f64();
            memory = next;
            let t = Instant::now();
            let (_, fnext) =
                analyse_dump_with(&dump, &opts, &frozen_memory, Partition::Frozen, &|_| {})?;
            let tf = t.elapsed().as_secs_f64();
            frozen_memory = fnext;
            if k == 0 {
                continue;
            }
            frozen_s += tf;
            warm_s += tw;
            let t = Instant::now();
            let cold = analyse_dump(&dump, &opts, &|_| {})?;
            cold_s += t.elapsed().as_secs_f64();
            for (c, w) in cold.layers.iter().zip(&warm.layers) {
                cluster_diff += usize::from(c.train_clusters != w.train_clusters);
                for ((_, _, a), (_, _, b)) in c.label_distance.iter().zip(&w.label_distance) {
                    max_rel = max_rel.max((a - b).abs() / a.abs().max(1e-12));
                }
                for (split, a) in &c.accuracy {
                    let b = w.accuracy.get(split).copied().unwrap_or(f64::NAN);
                    acc_diff = acc_diff.max((a - b).abs());
                }
            }
        }
    }
    Ok((
        warm_s,
        format!(
            "6 checkpoint analyses (2 tasks x steps 50,100,150, 7 layers): warm {warm_s:.2} s, cold {cold_s:.2} s, speed-up {:.2}x; layers with different clusters {cluster_diff}, largest relative label-distance difference {max_rel:.1e}, largest accuracy difference {acc_diff:.4}; frozen-partition mode {frozen_s:.2} s ({:.2}x)",
            cold_s / warm_s,
            cold_s / frozen_s
        ),
    ))
}

/// Partial fine-tuning (lower layers frozen, a common set-up with adapters
/// or layer freezing): checkpoint A = `crosstask/step-50` (PS-role), B =
/// its layers 0–3 with layers 4–6 of `step-100`. B analysed warm after A
/// (the four unchanged layers re-use their reports) and cold.
fn partial_finetuning(data: &Path) -> Result<(f64, String)> {
    use source::extract::{ExtractedTask, encode_dump};
    let dir = data.join("crosstask");
    let open = |s: u64| {
        let p = dir.join(format!("step-{s}.safetensors"));
        ActivationDump::open(&p)
            .with_context(|| format!("the shared dumps are needed: {}", p.display()))
    };
    let (d50, d100) = (open(50)?, open(100)?);
    let (t50, t100) = (d50.task(Some("ps_role"))?, d100.task(Some("ps_role"))?);
    let mut a_layers = Vec::new();
    let mut b_layers = Vec::new();
    for l in 0..7 {
        let la = d50.layer(t50, l)?;
        let values: Vec<f32> = la.iter().copied().collect();
        let lb = if l < 4 { la } else { d100.layer(t100, l)? };
        b_layers.push(lb.iter().copied().collect::<Vec<f32>>());
        a_layers.push(values);
    }
    let labels: Vec<i64> = t50.labels.iter().map(|&l| i64::from(l)).collect();
    let tmp = harness::scratch_dir("probewatch-bench-partial")?;
    let write = |name: &str, layers: Vec<Vec<f32>>, step: u64| -> Result<std::path::PathBuf> {
        let task = ExtractedTask {
            name: "ps_role".into(),
            label_names: t50.label_names.clone(),
            labels: labels.clone(),
            split: t50.split.clone(),
            splits: d50.splits().to_vec(),
            dim: t50.dim,
            layers,
        };
        let bytes = encode_dump(&[task], Some(step), &[]);
        let p = tmp.join(name);
        std::fs::write(&p, bytes)?;
        Ok(p)
    };
    let (pa, pb) = (
        write("a.safetensors", a_layers, 50)?,
        write("b.safetensors", b_layers, 100)?,
    );
    let (da, db) = (ActivationDump::open(&pa)?, ActivationDump::open(&pb)?);
    let opts = AnalysisOptions::default();
    let (_, memory) = analyse_dump_with(
        &da,
        &opts,
        &TaskMemory::new(),
        Partition::Recluster,
        &|_| {},
    )?;
    let t = Instant::now();
    let (warm, next) = analyse_dump_with(&db, &opts, &memory, Partition::Recluster, &|_| {})?;
    let tw = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let cold = analyse_dump(&db, &opts, &|_| {})?;
    let tc = t.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&tmp).ok();
    let reused = next.values().filter(|m| m.reused).count();
    let same = cold
        .layers
        .iter()
        .zip(&warm.layers)
        .all(|(c, w)| c.train_clusters == w.train_clusters && c.accuracy == w.accuracy);
    Ok((
        tw,
        format!(
            "PS-role, 7 layers, layers 0-3 unchanged: warm {tw:.3} s, cold {tc:.3} s, speed-up {:.2}x; {reused} layer reports re-used; clusters and accuracies equal to cold: {same}",
            tc / tw
        ),
    ))
}

/// Runs one case in this process.
pub fn run_case(name: &str, quick: bool, data: &Path, points: Option<usize>) -> Result<CaseResult> {
    // The peer's own peak RSS (the Python process), not ours.
    let mut peer_rss = None;
    let (seconds, detail) = match name {
        "psrole-all-layers" => {
            let path = data.join(PSROLE);
            let t = Instant::now();
            let dump = ActivationDump::open(&path)
                .with_context(|| format!("the shared dumps are needed: {}", path.display()))?;
            let r = analyse_dump(&dump, &AnalysisOptions::default(), &|_| {})?;
            let s = t.elapsed().as_secs_f64();
            let d = r
                .layers
                .iter()
                .map(|l| {
                    format!(
                        "L{}:{}cl/{:.1}%",
                        l.layer,
                        l.clusters,
                        100.0 * l.accuracy.get("test").copied().unwrap_or(f64::NAN)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ");
            (s, d)
        }
        "crosstask-incremental" => crosstask_incremental(data)?,
        "partial-finetuning-incremental" => partial_finetuning(data)?,
        "daemon-time-to-metrics" => {
            crate::bench_daemon::time_to_metrics(if quick { 5 } else { 20 })?
        }
        "daemon-scrape-latency" => {
            crate::bench_daemon::scrape_latency(points.unwrap_or(if quick {
                2_000
            } else {
                20_000
            }))?
        }
        "daemon-scrape-secured" => {
            crate::bench_daemon::scrape_secured(if quick { 50 } else { 500 })?
        }
        "report-large-run" => crate::bench_report::report_large_run(quick)?,
        "live-hf-run" => crate::bench_live::live_hf_run(data, quick)?,
        "psrole-l6-label-distances" => {
            let (s, ds) = l6_label_distances(data)?;
            let mean = ds.iter().sum::<f64>() / ds.len() as f64;
            let min = ds.iter().copied().fold(f64::INFINITY, f64::min);
            (
                s,
                format!("{} label pairs, min {:.4} mean {:.4}", ds.len(), min, mean),
            )
        }
        "peer-scipy-nnls-l6" => {
            // The same 780 distances by scipy's NNLS, side by side with
            // ours; skipped (not failed) where numpy/scipy are missing.
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/peer_nnls.py");
            let path = data.join(PSROLE);
            let out = Command::new("python3")
                .arg(&script)
                .arg(&path)
                .arg("6")
                .output();
            match out {
                Ok(o) if o.status.success() => {
                    let v: serde_json::Value =
                        serde_json::from_slice(&o.stdout).context("parsing the peer's output")?;
                    let theirs: Vec<f64> = v["distances"]
                        .as_array()
                        .context("peer distances")?
                        .iter()
                        .filter_map(|d| d.as_f64())
                        .collect();
                    peer_rss = v["peak_rss_kib"].as_f64().map(|k| k / 1024.0);
                    let ours = l6_label_distances(data)?.1;
                    let max_rel = ours
                        .iter()
                        .zip(&theirs)
                        .map(|(a, b)| (a - b).abs() / b.abs().max(1e-12))
                        .fold(0.0f64, f64::max);
                    (
                        v["seconds"].as_f64().unwrap_or(f64::NAN),
                        format!(
                            "scipy NNLS, {} label pairs, mean {:.4}; largest relative difference to ours {:.1e}",
                            theirs.len(),
                            v["mean"].as_f64().unwrap_or(f64::NAN),
                            max_rel
                        ),
                    )
                }
                Ok(o) => (
                    f64::NAN,
                    format!(
                        "skipped: peer unavailable ({})",
                        String::from_utf8_lossy(&o.stderr)
                            .lines()
                            .last()
                            .unwrap_or("python3 failed")
                    ),
                ),
                Err(e) => (f64::NAN, format!("skipped: python3 not found ({e})")),
            }
        }
        "extract-minilm" | "extract-bert-base-random" => {
            let model = if name == "extract-minilm" {
                harness::minilm_dir()?
            } else {
                bert_base_random_dir()?
            };
            extract_streusle(&model, &streusle_files(data, quick)?)?
        }
        "peer-torch-extract-minilm" | "peer-torch-extract-bert-base-random" => {
            let model = if name == "peer-torch-extract-minilm" {
                harness::minilm_dir()?
            } else {
                bert_base_random_dir()?
            };
            let (s, d, rss) = peer_torch_extract(&model, &streusle_files(data, quick)?)?;
            peer_rss = rss;
            (s, d)
        }
        "synthetic-separable" | "synthetic-separable-isotropic" | "synthetic-overlapping" => {
            let variant = match name {
                "synthetic-separable" => Variant::Separable,
                "synthetic-separable-isotropic" => Variant::SeparableIsotropic,
                _ => Variant::Overlapping,
            };
            let n = points.unwrap_or(if quick { 2_000 } else { 20_000 });
            let test = n / 10;
            let layer = generate(n, test, 768, 17, variant, 20_261_126);
            let names = vec!["train".to_string(), "test".to_string()];
            let t = Instant::now();
            let r = measure_layer(layer.input(&names), &MeasureParams::default());
            let s = t.elapsed().as_secs_f64();
            (
                s,
                format!(
                    "{n} train{} points, d=768, 17 labels: {} clusters ({} labels resolved by the shortcut), {} merges, {} hull queries{}",
                    if test > 0 {
                        format!(" + {test} test")
                    } else {
                        String::new()
                    },
                    r.clusters,
                    r.cluster_stats.resolved_labels,
                    r.cluster_stats.merges,
                    r.cluster_stats.hull_queries,
                    r.accuracy
                        .get("test")
                        .map_or(String::new(), |a| format!(", test acc {:.1}%", 100.0 * a)),
                ),
            )
        }
        "classifier-psrole-all-layers" => {
            // The classifier probe alone (default search + 5 seeds) on the
            // 7 layers of the PS-role dump, layers in parallel.
            let path = data.join(PSROLE);
            let dump = ActivationDump::open(&path)
                .with_context(|| format!("the shared dumps are needed: {}", path.display()))?;
            let task = dump.task(None)?;
            let layers: Vec<Vec<f32>> = task
                .layers
                .iter()
                .map(|&l| Ok(dump.layer(task, l)?.iter().copied().collect()))
                .collect::<Result<_>>()?;
            let params = ClassifierParams::default();
            let load = loadavg();
            let cpu = cpu_seconds();
            let t = Instant::now();
            use rayon::prelude::*;
            let rs: Vec<_> = layers
                .par_iter()
                .map(|x| {
                    classifier::probe(
                        LayerInput {
                            data: x,
                            dim: task.dim,
                            labels: &task.labels,
                            n_labels: task.label_names.len(),
                            split: &task.split,
                            split_names: dump.splits(),
                            fit_split: "train",
                        },
                        &params,
                    )
                })
                .collect();
            let s = t.elapsed().as_secs_f64();
            let d = rs
                .iter()
                .zip(&task.layers)
                .map(
                    |(r, l)| match r.as_ref().and_then(|r| r.accuracy.get("test")) {
                        Some(a) => format!("L{l}:{:.1}±{:.1}%", 100.0 * a.mean, 100.0 * a.std),
                        None => format!("L{l}:-"),
                    },
                )
                .collect::<Vec<_>>()
                .join(" ");
            let cpu = cpu_seconds().zip(cpu).map_or(f64::NAN, |(b, a)| b - a);
            (
                s,
                format!("{d}; {cpu:.1} CPU s; load average before: {load}"),
            )
        }
        "classifier-synthetic" => {
            // The default search + 5 seeds on one synthetic layer of
            // 20,000 train + 2,000 test points in 768 dimensions (labels in
            // confusable pairs, so the network has something to learn).
            let n = points.unwrap_or(if quick { 2_000 } else { 20_000 });
            let test = n / 10;
            let layer = generate(n, test, 768, 17, Variant::Overlapping, 20_261_126);
            let names = vec!["train".to_string(), "test".to_string()];
            let params = ClassifierParams::default();
            let load = loadavg();
            let cpu = cpu_seconds();
            let t = Instant::now();
            let r = classifier::probe(layer.input(&names), &params).context("no train rows")?;
            let s = t.elapsed().as_secs_f64();
            let cpu = cpu_seconds().zip(cpu).map_or(f64::NAN, |(b, a)| b - a);
            let a = r.accuracy["test"];
            let search = r
                .search
                .iter()
                .map(|e| {
                    format!(
                        "{:?}/{:e}: {} epochs, held-out {:.1}%",
                        e.config.hidden,
                        e.config.l2,
                        e.epochs,
                        100.0 * e.validation_accuracy.unwrap_or(f64::NAN)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            (
                s,
                format!(
                    "{n} train + {test} test, d=768, 17 labels: chose {:?}/{:e}, test acc {:.2}±{:.2}% over 5 seeds (epochs {:?}); search: {search}; {cpu:.1} CPU s; load average before: {load}",
                    r.config.hidden,
                    r.config.l2,
                    100.0 * a.mean,
                    100.0 * a.std,
                    r.epochs
                ),
            )
        }
        other => bail!("unknown case '{other}' (cases: {})", CASES.join(", ")),
    };
    Ok(CaseResult {
        case: name.to_string(),
        seconds: seconds.is_finite().then_some(seconds),
        peak_rss_mib: peer_rss.or_else(peak_rss_mib),
        detail,
    })
}

/// STREUSLE dev (and test unless `quick`), beside the shared dumps.
fn streusle_files(data: &Path, quick: bool) -> Result<Vec<PathBuf>> {
    let dir = data
        .parent()
        .context("the data folder has no parent")?
        .join("streusle");
    let mut files = vec![dir.join("streusle.ud_dev.conllulex")];
    if !quick {
        files.push(dir.join("streusle.ud_test.conllulex"));
    }
    for f in &files {
        if !f.is_file() {
            bail!("the STREUSLE corpus is needed: {}", f.display());
        }
    }
    Ok(files)
}

/// A BERT-base-sized model (12 layers, hidden 768, 12 heads, FFN 3072,
/// vocabulary 30,522, uncased WordPiece from MiniLM's tokenizer) with
/// weights drawn from N(0, 0.02²) by a fixed seed, written once under
/// `target/bench-models/`.
fn bert_base_random_dir() -> Result<PathBuf> {
    use safetensors::tensor::{Dtype, TensorView};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-models/bert-base-random");
    if dir.join("model.safetensors").is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::copy(
        harness::minilm_dir()?.join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .context("copying MiniLM's tokenizer")?;
    let (h, ff, vocab, layers) = (768usize, 3072usize, 30_522usize, 12usize);
    let config = serde_json::json!({
        "architectures": ["BertModel"], "model_type": "bert", "hidden_size": h,
        "num_attention_heads": 12, "num_hidden_layers": layers, "intermediate_size": ff,
        "hidden_act": "gelu", "max_position_embeddings": 512, "type_vocab_size": 2,
        "vocab_size": vocab, "layer_norm_eps": 1e-12, "pad_token_id": 0
    });
    std::fs::write(dir.join("config.json"), config.to_string())?;
    let mut rng = geometry::synth::Rng::new(20_261_126);
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut normal = |name: &str, shape: Vec<usize>| {
        let n: usize = shape.iter().product();
        let bytes = (0..n)
            .flat_map(|_| ((0.02 * rng.normal()) as f32).to_le_bytes())
            .collect();
        tensors.push((name.to_string(), shape, bytes));
    };
    normal("embeddings.word_embeddings.weight", vec![vocab, h]);
    normal("embeddings.position_embeddings.weight", vec![512, h]);
    normal("embeddings.token_type_embeddings.weight", vec![2, h]);
    for l in 0..layers {
        let p = format!("encoder.layer.{l}.");
        for m in [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ] {
            normal(&format!("{p}{m}.weight"), vec![h, h]);
            normal(&format!("{p}{m}.bias"), vec![h]);
        }
        normal(&format!("{p}intermediate.dense.weight"), vec![ff, h]);
        normal(&format!("{p}intermediate.dense.bias"), vec![ff]);
        normal(&format!("{p}output.dense.weight"), vec![h, ff]);
        normal(&format!("{p}output.dense.bias"), vec![h]);
    }
    let ones: Vec<u8> = (0..h).flat_map(|_| 1f32.to_le_bytes()).collect();
    let zeros = vec![0u8; 4 * h];
    let mut norms = vec!["embeddings.LayerNorm".to_string()];
    for l in 0..layers {
        norms.push(format!("encoder.layer.{l}.attention.output.LayerNorm"));
        norms.push(format!("encoder.layer.{l}.output.LayerNorm"));
    }
    for n in norms {
        tensors.push((format!("{n}.weight"), vec![h], ones.clone()));
        tensors.push((format!("{n}.bias"), vec![h], zeros.clone()));
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, shape, b)| Ok((n.clone(), TensorView::new(Dtype::F32, shape.clone(), b)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let tmp = dir.join(".model.safetensors.tmp");
    safetensors::serialize_to_file(views, None, &tmp)?;
    std::fs::rename(&tmp, dir.join("model.safetensors"))?;
    Ok(dir)
}

/// Every hidden state of `model` over every sentence of `files` (each word
/// an item, first subword), on the current pool's threads: our side of the
/// side-by-side extraction benchmark. Seconds = the encoder pass and the
/// gathering; tokenizing is reported apart.
fn extract_streusle(model: &Path, files: &[PathBuf]) -> Result<(f64, String)> {
    use source::encoder::Encoder;
    use source::extract::ExtractionPlan;
    use source::probeset::tokens::{ProbeTokenizer, TokenizeOptions};
    use source::probeset::{ProbeSet, ProbeSetSource};
    let spec = "upos".parse()?;
    let sources: Vec<ProbeSetSource> = files
        .iter()
        .map(|f| ProbeSetSource {
            path: f.clone(),
            split: None,
        })
        .collect();
    let set = ProbeSet::load(&spec, &sources)?;
    let encoder = Encoder::load(model)?;
    let threads = rayon::current_num_threads();
    let t = Instant::now();
    let tok = ProbeTokenizer::from_file(
        &model.join("tokenizer.json"),
        TokenizeOptions::new(encoder.max_positions()),
    )?;
    let plan = ExtractionPlan::new(&tok, std::slice::from_ref(&set))?;
    let tokenize = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let tasks = plan.run(&encoder, threads)?;
    let s = t.elapsed().as_secs_f64();
    let tokens = plan.tokens();
    Ok((
        s,
        format!(
            "{} sentences, {} words, {} tokens, {} hidden states of width {}: {:.0} tokens/s on {threads} threads (tokenizing {:.2} s apart)",
            set.sentences.len(),
            set.items.len(),
            tokens,
            tasks[0].layers.len(),
            tasks[0].dim,
            tokens as f64 / s,
            tokenize
        ),
    ))
}

/// HF transformers + PyTorch on the same model and sentences
/// (`scripts/peer_torch_extract.py`, run by `PROBEWATCH_TORCH_PYTHON` or
/// `python3`), on as many threads as ours; skipped, not failed, where torch
/// is missing.
fn peer_torch_extract(model: &Path, files: &[PathBuf]) -> Result<(f64, String, Option<f64>)> {
    let python = std::env::var("PROBEWATCH_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/peer_torch_extract.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(model)
        .arg(rayon::current_num_threads().to_string())
        .args(files)
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let v: serde_json::Value =
                serde_json::from_slice(&o.stdout).context("parsing the peer's output")?;
            Ok((
                v["seconds"].as_f64().unwrap_or(f64::NAN),
                format!(
                    "PyTorch {} + transformers {}, batch 32 sorted by length: {} sentences, {} tokens: {:.0} tokens/s on {} threads (tokenizing {:.2} s apart)",
                    v["torch"].as_str().unwrap_or("?"),
                    v["transformers"].as_str().unwrap_or("?"),
                    v["sentences"],
                    v["tokens"],
                    v["tokens_per_second"].as_f64().unwrap_or(f64::NAN),
                    v["threads"],
                    v["tokenize_seconds"].as_f64().unwrap_or(f64::NAN),
                ),
                v["peak_rss_kib"].as_f64().map(|k| k / 1024.0),
            ))
        }
        Ok(o) => Ok((
            f64::NAN,
            format!(
                "skipped: peer unavailable with {python} ({})",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("failed")
            ),
            None,
        )),
        Err(e) => Ok((f64::NAN, format!("skipped: {python} not found ({e})"), None)),
    }
}

/// Runs one case in a child process of `exe` and parses its result line.
pub fn run_in_child(
    exe: &Path,
    name: &str,
    quick: bool,
    data: &Path,
    threads: Option<usize>,
    points: Option<usize>,
    timeout: std::time::Duration,
) -> Result<CaseResult> {
    let mut cmd = Command::new(exe);
    // The case drives the binary this run chose (`--probewatch`), never a
    // build of its own.
    if let Some(p) = crate::chosen_probewatch() {
        cmd.env("PROBEWATCH_BIN", p);
    }
    if let Some(t) = threads {
        cmd.arg("--threads").arg(t.to_string());
    }
    cmd.arg("bench")
        .arg("--case")
        .arg(name)
        .arg("--data")
        .arg(data);
    if quick {
        cmd.arg("--quick");
    }
    if let Some(p) = points {
        cmd.arg("--points").arg(p.to_string());
    }
    // stderr goes straight to ours: a long panic message can never fill a
    // pipe nobody reads while we poll.
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    let mut child = cmd.spawn().context("spawning the benchmark child")?;
    let start = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if start.elapsed() >= timeout {
            child.kill().ok();
            child.wait().ok();
            return Ok(CaseResult {
                case: name.to_string(),
                seconds: None,
                peak_rss_mib: None,
                detail: format!("did not finish within {} s (killed)", timeout.as_secs()),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Ok(CaseResult {
            case: name.to_string(),
            seconds: None,
            peak_rss_mib: None,
            detail: format!("failed ({}); its error is printed above", out.status),
        });
    }
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).context("parsing the child's result")
}

/// Prints the table header with the machine facts.
pub fn print_header(out: &mut impl Write, quick: bool, threads: Option<usize>) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    writeln!(
        out,
        "probewatch {} bench{}: {} cores available, threads {}",
        env!("CARGO_PKG_VERSION"),
        if quick { " --quick" } else { "" },
        cores,
        threads.map_or("all".to_string(), |t| t.to_string())
    )?;
    writeln!(
        out,
        "| case | seconds | peak RSS (MiB) | what |\n|---|---:|---:|---|"
    )?;
    Ok(())
}

/// Prints one table row.
pub fn print_row(out: &mut impl Write, r: &CaseResult) -> Result<()> {
    writeln!(
        out,
        "| {} | {} | {} | {} |",
        r.case,
        r.seconds.map_or("—".to_string(), |s| format!("{s:.3}")),
        r.peak_rss_mib
            .map_or("—".to_string(), |m| format!("{m:.0}")),
        r.detail
    )?;
    out.flush()?;
    Ok(())
}
