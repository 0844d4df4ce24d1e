//! Validation: the file as read ([`super::schema`]) checked value by value
//! into a [`Config`], with the defaults of what it leaves out and relative
//! paths made absolute. Every mistake is a [`Problem`] at the span of the
//! offending key or value, so the message names its line and column. The
//! checks run in a fixed order and stop at the first mistake.
//!
//! Deliberately not here: whether folders and the store exist (a run folder
//! may appear after the daemon starts; `describe` reports it), with one
//! exception: a probe-set file must exist, as the encoder cannot start
//! without it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use source::probeset::tokens::{SentencePooling, WordPooling};
use source::probeset::{ProbeSetSource, TaskSpec};

use super::position::{Ctx, line_column};
use super::schema::{RawConfig, RawLimits, RawProbe, RawRun, RawSentencePooling, RawWordPooling};
use super::{
    Baseline, Config, ConfigError, DEFAULT_PORT, DEFAULT_STORE, Layout, Limits, ProbeConfig,
    Problem, RunConfig,
};

impl RawConfig {
    /// The checked configuration, or the first mistake in file order
    /// (top-level options, each run, then `[limits]`). `dir` is the config
    /// file's directory, absolute.
    pub(super) fn check(self, ctx: &Ctx<'_>, dir: &Path) -> Result<Config, ConfigError> {
        let listen = match self.listen {
            None => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT),
            Some(value) => {
                let span = value.span();
                let text = value.into_inner();
                text.trim()
                    .parse::<SocketAddr>()
                    .map_err(|_| ctx.invalid(span, Problem::BadListen { value: text }))?
            }
        };
        let store = match self.store {
            None => dir.join(DEFAULT_STORE),
            Some(value) => resolve(ctx, value, "store", dir)?,
        };
        let web_config = self
            .web_config
            .map(|value| resolve(ctx, value, "web_config", dir))
            .transpose()?;
        let workers = match self.workers {
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Some(value) => positive(ctx, value, "workers")?,
        };
        let raw_runs = match self.run {
            None => return Err(ctx.invalid(0..0, Problem::NoRuns)),
            Some(runs) if runs.get_ref().is_empty() => {
                return Err(ctx.invalid(runs.span(), Problem::NoRuns));
            }
            Some(runs) => runs.into_inner(),
        };
        let mut runs = Vec::with_capacity(raw_runs.len());
        let mut names: Vec<(String, Range<usize>)> = Vec::new();
        for raw in raw_runs {
            let name_span = raw.get_ref().name.span();
            let run = raw.into_inner().check(ctx, dir)?;
            if let Some((_, first)) = names.iter().find(|(n, _)| *n == run.name) {
                let first_line = line_column(ctx.text, first.start).0;
                return Err(ctx.invalid(
                    name_span,
                    Problem::DuplicateRunName {
                        name: run.name,
                        first_line,
                    },
                ));
            }
            names.push((run.name.clone(), name_span));
            runs.push(run);
        }
        let config = Config {
            file: ctx.file.to_path_buf(),
            listen,
            store,
            workers,
            log_format: self.log_format.unwrap_or_default(),
            runs,
            web_config,
            shard: None,
            limits: match self.limits {
                Some(l) => l.check(ctx)?,
                None => Limits::default(),
            },
        };
        Ok(config)
    }
}

impl RawLimits {
    /// The caps, each at its default unless given.
    fn check(self, ctx: &Ctx<'_>) -> Result<Limits, ConfigError> {
        let mut l = Limits::default();
        if let Some(v) = self.max_file_bytes {
            l.max_file_bytes = positive(ctx, v, "max_file_bytes")?;
        }
        if let Some(v) = self.max_items_per_task {
            l.max_items_per_task = positive(ctx, v, "max_items_per_task")?;
        }
        if let Some(v) = self.max_labels {
            l.max_labels = positive(ctx, v, "max_labels")?;
        }
        if let Some(v) = self.max_layers {
            l.max_layers = positive(ctx, v, "max_layers")?;
        }
        if let Some(v) = self.max_concurrent_requests {
            l.max_concurrent_requests = positive(ctx, v, "max_concurrent_requests")?;
        }
        if let Some(v) = self.max_request_bytes {
            let span = v.span();
            let n = positive(ctx, v, "max_request_bytes")?;
            // Below this even `GET /metrics` with a Host header does not fit.
            if n < 256 {
                let value = format!("{n} (at least 256)");
                let key = "max_request_bytes";
                return Err(ctx.invalid(span, Problem::OutOfRange { key, value }));
            }
            l.max_request_bytes = n;
        }
        Ok(l)
    }
}

impl RawRun {
    /// The checked run, every option not given at its default
    /// ([`RunConfig::new`]); `dir` anchors relative paths.
    fn check(self, ctx: &Ctx<'_>, dir: &Path) -> Result<RunConfig, ConfigError> {
        let name = run_name(ctx, self.name)?;
        let folder = resolve(ctx, self.folder, "folder", dir)?;
        let mut run = RunConfig::new(name, folder);

        let mut layout_span = None;
        if let Some(layout) = self.layout {
            layout_span = Some(layout.span());
            run.layout = layout.into_inner();
        }
        if let Some(baseline) = self.baseline {
            run.baseline = baseline_from(ctx, baseline, &run.folder)?;
        }
        if let Some(tasks) = self.tasks {
            run.tasks = Some(task_list(ctx, tasks, run.layout)?);
        }
        if let Some(layers) = self.layers {
            let span = layers.span();
            run.layers = Some(nonempty_unique(
                ctx,
                span,
                layers.into_inner(),
                "layers",
                "layer",
            )?);
        }
        if let Some(seconds) = self.scan_interval_seconds {
            run.scan_interval = scan_interval(ctx, seconds)?;
        }
        if let Some(seconds) = self.late_stage_budget_seconds {
            run.late_stage_budget = late_stage_budget(ctx, seconds)?;
        }
        if let Some(scans) = self.stable_scans {
            run.stable_scans = positive(ctx, scans, "stable_scans")?;
        }
        if let Some(capacity) = self.queue_capacity {
            run.queue_capacity = positive(ctx, capacity, "queue_capacity")?;
        }
        run.mode = self.mode.unwrap_or(run.mode);
        run.label_distance = self.label_distance.unwrap_or(run.label_distance);
        run.drop_clusters_up_to = self.drop_clusters_up_to.unwrap_or(run.drop_clusters_up_to);
        run.train_test_similarity = self
            .train_test_similarity
            .unwrap_or(run.train_test_similarity);
        run.queue = self.queue.unwrap_or(run.queue);
        run.export_label_pairs = self.export_label_pairs.unwrap_or(run.export_label_pairs);
        run.follow_symlinks = self.follow_symlinks.unwrap_or(run.follow_symlinks);
        run.classifier = self.classifier.unwrap_or(run.classifier);
        if let Some(n) = self.classifier_configurations {
            run.classifier_configurations = classifier_configurations(ctx, n)?;
        }
        run.memorisation_splits = self.memorisation_splits.unwrap_or(run.memorisation_splits);
        let encoder = Encoder {
            tokenizer: self.tokenizer,
            word_pooling: self.word_pooling,
            sentence_pooling: self.sentence_pooling,
        };
        encoder.check(ctx, dir, &mut run)?;
        run.probes = probe_sets(ctx, dir, self.probe, run.layout, layout_span)?;
        Ok(run)
    }
}

/// A run name: non-empty, `[A-Za-z0-9_.-]+` (a Prometheus label value and a
/// SQL key).
fn run_name(ctx: &Ctx<'_>, name: Spanned<String>) -> Result<String, ConfigError> {
    let span = name.span();
    let name = name.into_inner();
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(ctx.invalid(span, Problem::BadRunName(name)));
    }
    Ok(name)
}

/// `tasks`: a dump's tasks, named, each once; not with
/// `layout = "hf-checkpoints"`, whose probe sets are the tasks.
fn task_list(
    ctx: &Ctx<'_>,
    tasks: Spanned<Vec<String>>,
    layout: Layout,
) -> Result<Vec<String>, ConfigError> {
    let span = tasks.span();
    if layout == Layout::HfCheckpoints {
        return Err(ctx.invalid(span, Problem::TasksWithProbes));
    }
    let tasks = tasks.into_inner();
    if tasks.iter().any(String::is_empty) {
        return Err(ctx.invalid(span, Problem::Empty { key: "tasks" }));
    }
    nonempty_unique(ctx, span, tasks, "tasks", "task")
}

/// `scan_interval_seconds`: positive and finite.
fn scan_interval(ctx: &Ctx<'_>, seconds: Spanned<f64>) -> Result<Duration, ConfigError> {
    let span = seconds.span();
    let value = *seconds.get_ref();
    let key = "scan_interval_seconds";
    if value.is_finite() && value <= 0.0 {
        let value = value.to_string();
        return Err(ctx.invalid(span, Problem::NotPositive { key, value }));
    }
    Duration::try_from_secs_f64(value).map_err(|_| {
        let value = value.to_string();
        ctx.invalid(span, Problem::OutOfRange { key, value })
    })
}

/// `late_stage_budget_seconds`: zero (late stages off) or positive, finite.
fn late_stage_budget(ctx: &Ctx<'_>, seconds: Spanned<f64>) -> Result<Duration, ConfigError> {
    let span = seconds.span();
    let value = *seconds.get_ref();
    let key = "late_stage_budget_seconds";
    if value.is_nan() || value < 0.0 {
        let value = value.to_string();
        return Err(ctx.invalid(span, Problem::OutOfRange { key, value }));
    }
    Duration::try_from_secs_f64(value).map_err(|_| {
        let value = value.to_string();
        ctx.invalid(span, Problem::OutOfRange { key, value })
    })
}

/// `classifier_configurations`: from 1 to the size of the search grid.
fn classifier_configurations(ctx: &Ctx<'_>, n: Spanned<usize>) -> Result<usize, ConfigError> {
    let key = "classifier_configurations";
    let count = positive(ctx, n.clone(), key)?;
    let grid = geometry::classifier::full_grid().len();
    if count > grid {
        let value = format!("{count} (the grid has {grid} configurations)");
        return Err(ctx.invalid(n.span(), Problem::OutOfRange { key, value }));
    }
    Ok(count)
}

/// The settings of the encoder a run with `layout = "hf-checkpoints"` runs,
/// as written; with dumps, each is a mistake.
struct Encoder {
    tokenizer: Option<Spanned<PathBuf>>,
    word_pooling: Option<Spanned<RawWordPooling>>,
    sentence_pooling: Option<Spanned<RawSentencePooling>>,
}

impl Encoder {
    /// Sets the given settings on `run`, in file order of the checks:
    /// tokenizer, word pooling, sentence pooling.
    fn check(self, ctx: &Ctx<'_>, dir: &Path, run: &mut RunConfig) -> Result<(), ConfigError> {
        let hf = run.layout == Layout::HfCheckpoints;
        let not_hf = |key: &'static str, span: Range<usize>| {
            let hint = "activation dumps carry their own vectors";
            ctx.invalid(span, Problem::NeedsHfLayout { key, hint })
        };
        if let Some(t) = self.tokenizer {
            if !hf {
                return Err(not_hf("tokenizer", t.span()));
            }
            run.tokenizer = Some(resolve(ctx, t, "tokenizer", dir)?);
        }
        if let Some(p) = self.word_pooling {
            if !hf {
                return Err(not_hf("word_pooling", p.span()));
            }
            run.word_pooling = match p.into_inner() {
                RawWordPooling::First => WordPooling::First,
                RawWordPooling::Mean => WordPooling::Mean,
            };
        }
        if let Some(p) = self.sentence_pooling {
            if !hf {
                return Err(not_hf("sentence_pooling", p.span()));
            }
            run.sentence_pooling = match p.into_inner() {
                RawSentencePooling::Cls => SentencePooling::Cls,
                RawSentencePooling::Mean => SentencePooling::Mean,
            };
        }
        Ok(())
    }
}

/// The `[[run.probe]]` tables of a run: at least one with
/// `layout = "hf-checkpoints"` (the error points at `layout`), none with
/// dumps, task names unique within the run.
fn probe_sets(
    ctx: &Ctx<'_>,
    dir: &Path,
    probes: Option<Vec<Spanned<RawProbe>>>,
    layout: Layout,
    layout_span: Option<Range<usize>>,
) -> Result<Vec<ProbeConfig>, ConfigError> {
    let hf = layout == Layout::HfCheckpoints;
    let probes = match probes {
        Some(probes) if !hf => {
            let span = probes.first().map_or(0..0, |p| p.span());
            let (key, hint) = (
                "[[run.probe]]",
                "with dumps, `tasks` selects the tasks a dump holds",
            );
            return Err(ctx.invalid(span, Problem::NeedsHfLayout { key, hint }));
        }
        None if hf => {
            return Err(ctx.invalid(layout_span.unwrap_or(0..0), Problem::NoProbeSets));
        }
        None => return Ok(Vec::new()),
        Some(probes) => probes,
    };
    let mut out: Vec<ProbeConfig> = Vec::with_capacity(probes.len());
    for probe in probes {
        let (p, name_span) = probe.into_inner().check(ctx, dir)?;
        if out.iter().any(|q| q.task.name == p.task.name) {
            return Err(ctx.invalid(name_span, Problem::DuplicateProbeName(p.task.name)));
        }
        out.push(p);
    }
    Ok(out)
}

impl RawProbe {
    /// The probe and the span of its task name (for duplicate names).
    fn check(self, ctx: &Ctx<'_>, dir: &Path) -> Result<(ProbeConfig, Range<usize>), ConfigError> {
        let task_span = self.task.span();
        let kind = self.task.into_inner();
        let mut task: TaskSpec = kind
            .parse()
            .map_err(|_| ctx.invalid(task_span.clone(), Problem::UnknownTask(kind)))?;
        let mut name_span = task_span;
        if let Some(name) = self.name {
            let span = name.span();
            let name = name.into_inner();
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '+'));
            if !ok {
                return Err(ctx.invalid(
                    span,
                    Problem::BadProbeFile {
                        text: name,
                        message: "a task name is made of letters, digits, `_`, `.`, `-`, `+`"
                            .into(),
                    },
                ));
            }
            task.name = name;
            name_span = span;
        }
        let files_span = self.files.span();
        let raw_files = self.files.into_inner();
        if raw_files.is_empty() {
            return Err(ctx.invalid(files_span, Problem::NoProbeFiles));
        }
        let mut files = Vec::with_capacity(raw_files.len());
        for f in raw_files {
            let span = f.span();
            let text = f.into_inner();
            let mut source: ProbeSetSource = text.parse().map_err(|e| {
                let message = match e {
                    source::probeset::ProbeSetError::BadSource { message, .. } => message,
                    other => other.to_string(),
                };
                ctx.invalid(
                    span.clone(),
                    Problem::BadProbeFile {
                        text: text.clone(),
                        message,
                    },
                )
            })?;
            source.path = dir.join(&source.path);
            if !source.path.is_file() {
                return Err(ctx.invalid(span, Problem::MissingProbeFile(source.path)));
            }
            files.push(source);
        }
        Ok((ProbeConfig { task, files }, name_span))
    }
}

/// A non-empty path, made absolute against `dir`.
fn resolve(
    ctx: &Ctx<'_>,
    value: Spanned<PathBuf>,
    key: &'static str,
    dir: &Path,
) -> Result<PathBuf, ConfigError> {
    if value.get_ref().as_os_str().is_empty() {
        return Err(ctx.invalid(value.span(), Problem::Empty { key }));
    }
    Ok(dir.join(value.into_inner()))
}

/// A count that must be at least 1.
fn positive<T>(ctx: &Ctx<'_>, value: Spanned<T>, key: &'static str) -> Result<T, ConfigError>
where
    T: Default + PartialEq + ToString,
{
    if *value.get_ref() == T::default() {
        let problem = Problem::NotPositive {
            key,
            value: value.get_ref().to_string(),
        };
        return Err(ctx.invalid(value.span(), problem));
    }
    Ok(value.into_inner())
}

/// A list that is neither empty nor repeats an item.
fn nonempty_unique<T: PartialEq + ToString>(
    ctx: &Ctx<'_>,
    span: Range<usize>,
    items: Vec<T>,
    key: &'static str,
    what: &'static str,
) -> Result<Vec<T>, ConfigError> {
    if items.is_empty() {
        return Err(ctx.invalid(span, Problem::EmptyList { key, what }));
    }
    for (i, item) in items.iter().enumerate() {
        if items[..i].contains(item) {
            let item = item.to_string();
            return Err(ctx.invalid(span, Problem::DuplicateItem { key, item }));
        }
    }
    Ok(items)
}

/// `"first"`, `{ step = N }` or `{ path = "…" }` (relative to the run folder).
fn baseline_from(
    ctx: &Ctx<'_>,
    value: Spanned<toml::Value>,
    folder: &Path,
) -> Result<Baseline, ConfigError> {
    let span = value.span();
    let bad = |reason: String| ctx.invalid(span.clone(), Problem::BadBaseline { reason });
    match value.into_inner() {
        toml::Value::String(s) if s == "first" => Ok(Baseline::First),
        toml::Value::String(s) => Err(bad(format!("is the unknown string {s:?}"))),
        toml::Value::Table(table) => {
            let mut entries = table.into_iter();
            match (entries.next(), entries.next()) {
                (Some((key, value)), None) => match (key.as_str(), value) {
                    ("step", toml::Value::Integer(step)) => u64::try_from(step)
                        .map(Baseline::Step)
                        .map_err(|_| bad(format!("step must not be negative, got {step}"))),
                    ("step", other) => Err(bad(format!(
                        "step must be an integer, got {}",
                        describe_value(&other)
                    ))),
                    ("path", toml::Value::String(path)) if path.is_empty() => {
                        Err(bad("path is empty".to_owned()))
                    }
                    ("path", toml::Value::String(path)) => Ok(Baseline::Path(folder.join(path))),
                    ("path", other) => Err(bad(format!(
                        "path must be a string, got {}",
                        describe_value(&other)
                    ))),
                    (other, _) => Err(bad(format!("has the unknown key `{other}`"))),
                },
                (None, _) => Err(bad("is an empty table".to_owned())),
                (Some(_), Some(_)) => Err(bad("must have exactly one key".to_owned())),
            }
        }
        other => Err(bad(format!("is {}", describe_value(&other)))),
    }
}

/// A short rendering of a TOML value for messages: its type and value.
fn describe_value(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(_) => "a table".to_owned(),
        toml::Value::Array(_) => "an array".to_owned(),
        other => format!("{} {other}", other.type_str()),
    }
}
