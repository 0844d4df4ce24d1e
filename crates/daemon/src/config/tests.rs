//! Unit tests of the configuration: the example files load and document
//! every option, each mistake is reported at its line with its reason, and
//! `describe` says what the daemon will do.

use super::position::line_column;
use super::*;

const FILE: &str = "conf/test.toml";

fn run_table(extra: &str) -> String {
    format!("[[run]]\nname = \"r\"\nfolder = \"/data/r\"\n{extra}")
}

/// The error of `text`, its message checked to name the file and line.
fn error(text: &str, line: usize) -> (ConfigError, String) {
    let err = match parse(text, Path::new(FILE)) {
        Ok(config) => panic!("expected an error on line {line}, got {config:?}"),
        Err(err) => err,
    };
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("{FILE}:{line}:")),
        "expected {FILE}:{line}: in {message:?}"
    );
    assert_eq!(err.line(), Some(line), "{message}");
    (err, message)
}

fn problem(err: &ConfigError) -> &Problem {
    match err {
        ConfigError::Invalid { problem, .. } => problem,
        other => panic!("expected a semantic error, got {other:?}"),
    }
}

#[test]
fn example_files_load() {
    let root = &Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example =
        load(&root.join("config/probewatch.example.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(example.runs.len() >= 2);
    let minimal = load(&root.join("config/minimal.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(minimal.runs.len(), 1);
    assert_eq!(minimal.runs[0].folder, root.join("config/runs/my-run"));
    // The same text through include_str!, so a moved file fails to build.
    let text = include_str!("../../../../config/probewatch.example.toml");
    let again = parse(text, &root.join("config/probewatch.example.toml"));
    assert_eq!(again.ok().as_ref(), Some(&example));
}

#[test]
fn limits_are_read_and_checked() {
    let dir = Path::new("/etc/probewatch");
    let text = format!(
        "[limits]\nmax_file_bytes = 1000\nmax_labels = 7\n\n{}",
        run_table("")
    );
    let cfg = parse(&text, &dir.join("c.toml")).unwrap();
    assert_eq!(cfg.limits.max_file_bytes, 1000);
    assert_eq!(cfg.limits.max_labels, 7);
    assert_eq!(cfg.limits.max_layers, DEFAULT_MAX_LAYERS);
    assert_eq!(
        cfg.limits.max_concurrent_requests,
        DEFAULT_MAX_CONCURRENT_REQUESTS
    );
    let defaults = parse(&run_table(""), &dir.join("c.toml")).unwrap();
    assert_eq!(defaults.limits, Limits::default());

    let (err, msg) = error(&format!("[limits]\nmax_layers = 0\n{}", run_table("")), 2);
    assert!(
        matches!(
            problem(&err),
            Problem::NotPositive {
                key: "max_layers",
                ..
            }
        ),
        "{msg}"
    );
    let (err, msg) = error(
        &format!("[limits]\nmax_request_bytes = 100\n{}", run_table("")),
        2,
    );
    assert!(msg.contains("at least 256"), "{msg}");
    assert!(matches!(problem(&err), Problem::OutOfRange { .. }));
    let (_, msg) = error(&format!("[limits]\nmax_lables = 3\n{}", run_table("")), 2);
    assert!(msg.contains("max_lables"), "{msg}");
    let (_, msg) = error(&format!("[limits]\nmax_labels = -3\n{}", run_table("")), 2);
    assert!(msg.contains("non-negative"), "{msg}");
}

#[test]
fn example_shows_every_option() {
    let text = include_str!("../../../../config/probewatch.example.toml");
    for key in [
        "listen",
        "store",
        "workers",
        "log_format",
        "name",
        "folder",
        "layout",
        "baseline",
        "tasks",
        "layers",
        "scan_interval_seconds",
        "stable_scans",
        "mode",
        "label_distance",
        "drop_clusters_up_to",
        "train_test_similarity",
        "queue",
        "queue_capacity",
        "late_stage_budget_seconds",
        "export_label_pairs",
        "follow_symlinks",
        "tokenizer",
        "word_pooling",
        "sentence_pooling",
        "task",
        "files",
        "classifier",
        "classifier_configurations",
        "memorisation_splits",
        "max_file_bytes",
        "max_items_per_task",
        "max_labels",
        "max_layers",
        "max_concurrent_requests",
        "max_request_bytes",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{key} = "))),
            "example lacks an uncommented `{key} = …` line"
        );
    }
    let readme = include_str!("../../../../docs/configuration.md");
    let settings = text.lines().filter(|l| !l.trim_start().starts_with('#'));
    for line in settings.filter_map(|l| l.split_once(" = ")) {
        assert!(
            readme.contains(&format!("`{}`", line.0)),
            "README's Configuration section lacks `{}`",
            line.0
        );
    }
}

#[test]
fn example_values_are_the_ones_written() {
    let root = &Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let config =
        load(&root.join("config/probewatch.example.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.listen.port(), DEFAULT_PORT);
    assert!(config.listen.ip().is_loopback());
    let run = &config.runs[0];
    assert_eq!(run.name, "minilm-upos");
    assert_eq!(run.tasks.as_deref(), Some(&["ps_role".to_owned()][..]));
    assert_eq!(run.layers.as_deref(), Some(&[0, 6][..]));
}

#[test]
fn web_config_resolves_against_the_config_folder() {
    let text = format!("web_config = \"tls/web.yml\"\n{}", run_table(""));
    let config =
        parse(&text, Path::new("/etc/pw/probewatch.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.web_config.as_deref(),
        Some(Path::new("/etc/pw/tls/web.yml"))
    );
    assert_eq!(config.shard, None);
    assert!(config.describe().contains("web config /etc/pw/tls/web.yml"));
    let (_, message) = error(&format!("web_config = \"\"\n{}", run_table("")), 1);
    assert!(message.contains("`web_config` is empty"), "{message}");
    let mut config = config;
    config.shard = Some(crate::shard::Shard::new(1, 3).unwrap());
    assert!(config.describe().contains("shard 1/3"));
}

#[test]
fn defaults_are_applied() {
    let config = parse(&run_table(""), Path::new("/etc/pw/probewatch.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.file, Path::new("/etc/pw/probewatch.toml"));
    assert_eq!(
        config.listen,
        SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT))
    );
    assert_eq!(config.store, Path::new("/etc/pw/probewatch.sqlite"));
    let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(config.workers, parallelism);
    assert_eq!(config.log_format, LogFormat::Human);
    assert_eq!(config.runs, vec![RunConfig::new("r", "/data/r")]);
    let run = &config.runs[0];
    assert_eq!(run.layout, Layout::Dumps);
    assert_eq!(run.baseline, Baseline::First);
    assert_eq!((run.tasks.as_ref(), run.layers.as_ref()), (None, None));
    assert_eq!(run.scan_interval, Duration::from_secs(10));
    assert_eq!(run.stable_scans, 2);
    assert_eq!(run.mode, Mode::Exact);
    assert_eq!(run.label_distance, LabelDistance::Mean);
    assert_eq!(run.drop_clusters_up_to, 0);
    assert!(run.train_test_similarity);
    assert_eq!(run.queue, QueuePolicy::All);
    assert_eq!(run.queue_capacity, 64);
    assert!(!run.export_label_pairs);
    assert!(!run.follow_symlinks);
    assert_eq!(run.classifier, Classifier::None);
    assert_eq!(run.classifier_configurations, 4);
    assert!(!run.memorisation_splits);
}

#[test]
fn classifier_options_are_checked() {
    let (err, message) = error(&run_table("classifier_configurations = 0\n"), 4);
    assert!(
        matches!(
            problem(&err),
            Problem::NotPositive {
                key: "classifier_configurations",
                ..
            }
        ),
        "{message}"
    );
    let (err, message) = error(&run_table("classifier_configurations = 129\n"), 4);
    assert!(
        matches!(
            problem(&err),
            Problem::OutOfRange {
                key: "classifier_configurations",
                ..
            }
        ),
        "{message}"
    );
    assert!(message.contains("128"), "{message}");
    let (_, message) = error(&run_table("classifier = \"svm\"\n"), 4);
    assert!(message.contains("mlp"), "{message}");
}

#[test]
fn every_option_is_read() {
    let text = r#"
listen = "[::1]:9999"
store = "/var/lib/pw/h.sqlite"
workers = 3
log_format = "json"
[[run]]
name = "a.b_c-1"
folder = "/data/a"
baseline = { step = 500 }
tasks = ["upos", "deprel"]
layers = [6, 0]
scan_interval_seconds = 0.5
stable_scans = 4
mode = "frozen-partition"
label_distance = "min"
drop_clusters_up_to = 5
train_test_similarity = false
queue = "newest"
queue_capacity = 1
export_label_pairs = true
follow_symlinks = true
classifier = "mlp"
classifier_configurations = 8
memorisation_splits = true
[[run]]
name = "b"
folder = "/data/b"
baseline = { path = "checkpoint-0.safetensors" }
"#;
    let config = parse(text, Path::new("/x/c.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.listen,
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 9999))
    );
    assert_eq!(config.store, Path::new("/var/lib/pw/h.sqlite"));
    assert_eq!(config.workers, 3);
    assert_eq!(config.log_format, LogFormat::Json);
    let a = &config.runs[0];
    let expected = RunConfig {
        name: "a.b_c-1".into(),
        folder: "/data/a".into(),
        layout: Layout::Dumps,
        baseline: Baseline::Step(500),
        tasks: Some(vec!["upos".into(), "deprel".into()]),
        layers: Some(vec![6, 0]),
        scan_interval: Duration::from_millis(500),
        stable_scans: 4,
        mode: Mode::FrozenPartition,
        label_distance: LabelDistance::Min,
        drop_clusters_up_to: 5,
        train_test_similarity: false,
        queue: QueuePolicy::Newest,
        queue_capacity: 1,
        late_stage_budget: Duration::from_secs(600),
        export_label_pairs: true,
        follow_symlinks: true,
        probes: Vec::new(),
        tokenizer: None,
        word_pooling: WordPooling::First,
        sentence_pooling: SentencePooling::Cls,
        classifier: Classifier::Mlp,
        classifier_configurations: 8,
        memorisation_splits: true,
    };
    assert_eq!(a, &expected);
    assert_eq!(
        config.runs[1].baseline,
        Baseline::Path("/data/b/checkpoint-0.safetensors".into())
    );
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let conf_dir = dir.path().join("etc");
    std::fs::create_dir(&conf_dir).unwrap_or_else(|e| panic!("{e}"));
    let file = conf_dir.join("pw.toml");
    let text = "store = \"db/h.sqlite\"\n[[run]]\nname = \"r\"\nfolder = \"../runs/r\"\n\
                baseline = { path = \"ckpt-0\" }\n";
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
    let config = load(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.store, conf_dir.join("db/h.sqlite"));
    let run = &config.runs[0];
    assert!(run.folder.is_absolute());
    assert_eq!(run.folder, conf_dir.join("../runs/r"));
    assert_eq!(
        run.baseline,
        Baseline::Path(conf_dir.join("../runs/r/ckpt-0"))
    );

    // A relative config path anchors at the current directory.
    let config = parse(text, Path::new("rel/pw.toml")).unwrap_or_else(|e| panic!("{e}"));
    let cwd = std::env::current_dir().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.runs[0].folder, cwd.join("rel/../runs/r"));
    assert_eq!(config.file, Path::new("rel/pw.toml"));
}

#[test]
fn unreadable_file_names_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("missing.toml");
    let err = load(&file).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn unknown_key_in_a_run_reports_its_line() {
    let text = run_table("scan_interval_seconds = 5\nscan_intervall = 10\n");
    let (err, message) = error(&text, 5);
    assert!(
        matches!(err, ConfigError::Toml { column: 1, .. }),
        "{err:?}"
    );
    assert!(
        message.contains("unknown field `scan_intervall`"),
        "{message}"
    );
    assert!(message.contains("scan_interval_seconds"), "{message}");
}

#[test]
fn unknown_top_level_key_reports_its_line() {
    let text = format!("workers = 2\nlisten_port = 1\n{}", run_table(""));
    let (_, message) = error(&text, 2);
    assert!(message.contains("unknown field `listen_port`"), "{message}");
}

#[test]
fn syntax_and_type_errors_report_their_line() {
    let (_, message) = error(&format!("{}queue = newest\n", run_table("")), 4);
    assert!(message.contains("strings need quotes"), "{message}");
    let (_, message) = error("[run]\nname = \"r\"\nfolder = \"/d\"\n", 1);
    assert!(message.contains("write [[run]]"), "{message}");
    let (_, message) = error(&run_table("name = \"q\"\n"), 4);
    assert!(message.contains("duplicate key `name`"), "{message}");
    let (_, message) = error(&run_table("queue_capacity = 1.5\n"), 4);
    assert!(message.contains("non-negative integer"), "{message}");
    let (_, message) = error(&run_table("layout = \"hf\"\n"), 4);
    assert!(message.contains("hf-checkpoints"), "{message}");
    let (_, message) = error(&run_table("stable_scans = -1\n"), 4);
    assert!(message.contains("-1"), "{message}");
    assert!(!message.contains("u32"), "{message}");
    let (_, message) = error(&run_table("scan_interval_seconds = \"10\"\n"), 4);
    assert!(message.contains("expected a number"), "{message}");
    let (_, message) = error(&format!("workers = \"2\"\n{}", run_table("")), 1);
    assert!(message.contains("string"), "{message}");
    let (_, message) = error(&run_table("mode = \"frozen\"\n"), 4);
    assert!(message.contains("frozen-partition"), "{message}");
    let (_, message) = error(&run_table("label_distance = \"max\"\n"), 4);
    assert!(message.contains("mean"), "{message}");
}

#[test]
fn missing_folder_is_reported() {
    let (_, message) = error("workers = 1\n[[run]]\nname = \"r\"\n", 2);
    assert!(message.contains("folder"), "{message}");
}

#[test]
fn no_runs() {
    let (err, message) = error("workers = 1\n", 1);
    assert_eq!(problem(&err), &Problem::NoRuns);
    assert!(message.contains("[[run]]"), "{message}");
    let (err, _) = error("workers = 1\nrun = []\n", 2);
    assert_eq!(problem(&err), &Problem::NoRuns);
    error("", 1);
}

#[test]
fn duplicate_run_name() {
    let text = format!(
        "{}\n[[run]]\nname = \"other\"\nfolder = \"/o\"\n\n[[run]]\nname = \"r\"\nfolder = \"/x\"\n",
        run_table("")
    );
    let (err, message) = error(&text, 10);
    assert_eq!(
        problem(&err),
        &Problem::DuplicateRunName {
            name: "r".into(),
            first_line: 2
        }
    );
    assert!(message.contains("already used"), "{message}");
}

#[test]
fn bad_run_names() {
    for name in ["", "a b", "ütf", "a/b", "x\"y"] {
        let text = format!(
            "workers = 1\n[[run]]\nfolder = \"/f\"\nname = {}\n",
            toml::Value::String(name.into())
        );
        let (err, message) = error(&text, 4);
        assert_eq!(problem(&err), &Problem::BadRunName(name.into()));
        assert!(message.contains("A-Z a-z 0-9"), "{message}");
    }
}

#[test]
fn zero_counts_and_intervals() {
    for (key, value) in [
        ("scan_interval_seconds", "0"),
        ("scan_interval_seconds", "-2.5"),
        ("scan_interval_seconds", "0.0"),
        ("stable_scans", "0"),
        ("queue_capacity", "0"),
    ] {
        let (err, message) = error(&run_table(&format!("\n{key} = {value}\n")), 5);
        assert!(
            matches!(problem(&err), Problem::NotPositive { key: k, .. } if *k == key),
            "{err:?}"
        );
        assert!(message.contains("greater than 0"), "{message}");
    }
    let (err, _) = error(&format!("workers = 0\n{}", run_table("")), 1);
    assert!(matches!(
        problem(&err),
        Problem::NotPositive { key: "workers", .. }
    ));
    for value in ["nan", "inf", "1e300"] {
        let (err, message) = error(&run_table(&format!("scan_interval_seconds = {value}\n")), 4);
        assert!(
            matches!(problem(&err), Problem::OutOfRange { .. }),
            "{value}: {err:?}"
        );
        assert!(message.contains("scan_interval_seconds"), "{message}");
    }
}

#[test]
fn baseline_forms() {
    let step = |s: &str| {
        parse(
            &run_table(&format!("baseline = {s}\n")),
            Path::new("/c/x.toml"),
        )
        .map(|c| c.runs[0].baseline.clone())
    };
    assert_eq!(step("\"first\"").ok(), Some(Baseline::First));
    assert_eq!(step("{ step = 0 }").ok(), Some(Baseline::Step(0)));
    assert_eq!(
        step("{ path = \"/abs/ck\" }").ok(),
        Some(Baseline::Path("/abs/ck".into()))
    );
    for (value, reason) in [
        (
            "{ step = \"100\" }",
            "step must be an integer, got string \"100\"",
        ),
        ("{ step = 1.5 }", "step must be an integer"),
        ("{ step = -1 }", "must not be negative"),
        ("\"last\"", "unknown string \"last\""),
        ("{ steps = 3 }", "unknown key `steps`"),
        ("{ step = 1, path = \"x\" }", "exactly one key"),
        ("{}", "empty table"),
        ("{ path = \"\" }", "path is empty"),
        ("{ path = 3 }", "path must be a string"),
        ("5", "is integer 5"),
    ] {
        let (err, message) = error(&run_table(&format!("\nbaseline = {value}\n")), 5);
        assert!(
            matches!(problem(&err), Problem::BadBaseline { .. }),
            "{err:?}"
        );
        assert!(message.contains(reason), "{value}: {message}");
        assert!(message.contains("step = <integer>"), "{message}");
    }
}

#[test]
fn empty_and_repeated_lists() {
    let (err, message) = error(&run_table("layers = []\n"), 4);
    assert_eq!(
        problem(&err),
        &Problem::EmptyList {
            key: "layers",
            what: "layer"
        }
    );
    assert!(message.contains("leave `layers` out"), "{message}");
    let (err, _) = error(&run_table("tasks = []\n"), 4);
    assert!(matches!(
        problem(&err),
        Problem::EmptyList { key: "tasks", .. }
    ));
    let (err, message) = error(&run_table("layers = [0, 3, 0]\n"), 4);
    assert!(matches!(
        problem(&err),
        Problem::DuplicateItem { key: "layers", .. }
    ));
    assert!(message.contains("lists 0 twice"), "{message}");
    let (err, _) = error(&run_table("tasks = [\"upos\", \"\"]\n"), 4);
    assert_eq!(problem(&err), &Problem::Empty { key: "tasks" });
}

#[test]
fn empty_paths_and_bad_listen() {
    let (err, _) = error("[[run]]\nname = \"r\"\nfolder = \"\"\n", 3);
    assert_eq!(problem(&err), &Problem::Empty { key: "folder" });
    let (err, _) = error(&format!("store = \"\"\n{}", run_table("")), 1);
    assert_eq!(problem(&err), &Problem::Empty { key: "store" });
    for listen in ["localhost:9000", "127.0.0.1", "1.2.3.4:99999", ""] {
        let text = format!("workers = 1\nlisten = \"{listen}\"\n{}", run_table(""));
        let (err, message) = error(&text, 2);
        assert!(
            matches!(problem(&err), Problem::BadListen { .. }),
            "{err:?}"
        );
        assert!(message.contains("no host names"), "{message}");
    }
    // Port 0 (a free port picked at start) is allowed, for tests.
    let text = format!("listen = \"127.0.0.1:0\"\n{}", run_table(""));
    let config = parse(&text, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.listen.port(), 0);
    assert!(config.describe().contains("free port"));
}

#[test]
fn hf_checkpoints_need_probe_sets_that_exist() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("dev.conllu"), "").unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("probewatch.toml");
    let parse_here = |text: &str| parse(text, &file);
    let hf = |extra: &str| format!("{}layout = \"hf-checkpoints\"\n{extra}", run_table(""));
    // Valid: relative files resolve against the config's folder.
    let config = parse_here(&hf(
        "word_pooling = \"mean\"\n[[run.probe]]\ntask = \"upos\"\nfiles = [\"dev.conllu:test\", \"dev.conllu\"]\n\
         [[run.probe]]\nname = \"rel\"\ntask = \"dep+subtypes\"\nfiles = [\"dev.conllu\"]\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let run = &config.runs[0];
    assert_eq!(run.word_pooling, WordPooling::Mean);
    assert_eq!(run.probes.len(), 2);
    assert_eq!(run.probes[0].task.name, "upos");
    assert_eq!(run.probes[0].files[0].path, dir.path().join("dev.conllu"));
    assert_eq!(run.probes[0].files[0].split.as_deref(), Some("test"));
    assert_eq!(run.probes[1].task.name, "rel");
    assert!(config.describe().contains("rel: "));
    // Each mistake: the line at fault and what is wrong.
    let line_of = |text: &str| match parse_here(text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => (e.line(), e.to_string()),
    };
    let (line, msg) = line_of(&hf(""));
    assert_eq!(line, Some(4), "{msg}");
    assert!(msg.contains("needs at least one probe set"), "{msg}");
    let (line, msg) = line_of(&hf(
        "[[run.probe]]\ntask = \"pos-tags\"\nfiles = [\"dev.conllu\"]\n",
    ));
    assert_eq!(line, Some(6), "{msg}");
    assert!(msg.contains("unknown task \"pos-tags\""), "{msg}");
    let (line, msg) = line_of(&hf(
        "[[run.probe]]\ntask = \"upos\"\nfiles = [\"gone.conllu\"]\n",
    ));
    assert_eq!(line, Some(7), "{msg}");
    assert!(msg.contains("gone.conllu does not exist"), "{msg}");
    let (line, msg) = line_of(&hf("[[run.probe]]\ntask = \"upos\"\nfiles = []\n"));
    assert_eq!(line, Some(7), "{msg}");
    assert!(msg.contains("`files` is empty"), "{msg}");
    let (line, msg) = line_of(&hf(
        "[[run.probe]]\ntask = \"upos\"\nfiles = [\"dev.conllu\"]\n[[run.probe]]\ntask = \"pos\"\nname = \"upos\"\nfiles = [\"dev.conllu\"]\n",
    ));
    assert_eq!(line, Some(10), "{msg}");
    assert!(msg.contains("used by two"), "{msg}");
    let (line, msg) = line_of(&format!(
        "{}tasks = [\"upos\"]\n[[run.probe]]\ntask = \"upos\"\nfiles = [\"dev.conllu\"]\n",
        hf("")
    ));
    assert_eq!(line, Some(5), "{msg}");
    assert!(msg.contains("[[run.probe]] tables are the tasks"), "{msg}");
    // Encoder settings and probe sets on a dumps run are mistakes too.
    let (line, msg) = line_of(&run_table("word_pooling = \"mean\"\n"));
    assert_eq!(line, Some(4), "{msg}");
    assert!(msg.contains("only applies to layout"), "{msg}");
    let (line, msg) = line_of(&run_table(
        "[[run.probe]]\ntask = \"upos\"\nfiles = [\"dev.conllu\"]\n",
    ));
    assert_eq!(line, Some(4), "{msg}");
    assert!(msg.contains("only applies to layout"), "{msg}");
}

#[test]
fn columns_count_characters() {
    assert_eq!(line_column("ab\ncdé\nf", 0), (1, 1));
    assert_eq!(line_column("ab\ncdé\nf", 3), (2, 1));
    assert_eq!(line_column("ab\ncdé\nf", 8), (3, 1));
    assert_eq!(line_column("ab\ncdé\nf", 7), (2, 4));
    assert_eq!(line_column("ab\ncdé\nf", 6), (2, 3));
    assert_eq!(line_column("ab", 99), (1, 3));
    assert_eq!(line_column("é", 1), (1, 1), "inside a character");
    // A column after a multi-byte character counts it once.
    let text = run_table("baseline = { path = \"é\", steps = nope }\n");
    let (err, _) = error(&text, 4);
    assert!(matches!(err, ConfigError::Toml { column: 34, .. }), "{err}");
}

#[test]
fn describe_mentions_each_run_and_its_folder() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(dir.path().join("present")).unwrap_or_else(|e| panic!("{e}"));
    let text = "workers = 2\n\
                [[run]]\nname = \"here\"\nfolder = \"present\"\ntasks = [\"upos\"]\nlayers = [0, 6]\n\
                [[run]]\nname = \"there\"\nfolder = \"absent\"\nbaseline = { step = 100 }\n\
                queue = \"newest\"\nscan_interval_seconds = 2.5\n";
    let config = parse(text, &dir.path().join("pw.toml")).unwrap_or_else(|e| panic!("{e}"));
    let out = config.describe();
    let present = dir.path().join("present").display().to_string();
    let absent = dir.path().join("absent").display().to_string();
    assert!(
        out.contains(&format!("listen on http://127.0.0.1:{DEFAULT_PORT}/")),
        "{out}"
    );
    assert!(out.contains("workers 2 analysis threads"), "{out}");
    assert!(
        out.contains(&format!(
            "store {}",
            dir.path().join(DEFAULT_STORE).display()
        )),
        "{out}"
    );
    assert!(out.contains("will be created"), "{out}");
    assert!(out.contains("run here"), "{out}");
    assert!(out.contains("run there"), "{out}");
    assert!(out.contains(&format!("folder {present} (exists)")), "{out}");
    assert!(
        out.contains(&format!("folder {absent} (does not exist yet")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "watch {present} for activation dumps *.safetensors every 10 s"
        )),
        "{out}"
    );
    assert!(out.contains("every 2.5 s"), "{out}");
    assert!(out.contains("baseline = first checkpoint"), "{out}");
    assert!(out.contains("baseline = checkpoint of step 100"), "{out}");
    assert!(out.contains("tasks: upos"), "{out}");
    assert!(out.contains("layers: 0, 6"), "{out}");
    assert!(out.contains("tasks: every task"), "{out}");
    assert!(out.contains("only the newest"), "{out}");
}
