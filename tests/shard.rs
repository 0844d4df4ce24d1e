//! Sharded mode as a user runs it: two real `probewatch watch` processes
//! over the same run folder, each with its own port and store, one told its
//! shard by `PROBEWATCH_SHARD=0/2`, the other by its host name's ordinal
//! (`HOSTNAME=probewatch-1` with `--shard-count 2`, as in a StatefulSet),
//! and one unsharded process beside them. Their per-layer series are
//! disjoint and together equal the unsharded process's, value for value;
//! each store holds only its own layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use store::Store;

#[path = "common/daemon.rs"]
mod harness;
use harness::{Daemon, Scrape, exe, run_table, synthetic_dump, write_config, write_renamed};

const LAYERS: usize = 5;
const STEPS: [u64; 2] = [0, 100];

/// Per-layer series (those with a `layer` label) of the run, by name and
/// labels.
fn layer_series(s: &Scrape) -> BTreeMap<String, f64> {
    s.checkpoint_series("sharded")
        .into_iter()
        .filter(|(k, _)| k.contains("\"layer\""))
        .collect()
}

/// The layers present in a series map.
fn layers_of(series: &BTreeMap<String, f64>) -> BTreeSet<usize> {
    series
        .keys()
        .filter_map(|k| {
            let rest = &k[k.find("\"layer\": \"")? + 10..];
            rest[..rest.find('"')?].parse().ok()
        })
        .collect()
}

fn start(dir: &Path, run: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
    std::fs::create_dir_all(dir).expect("process folder");
    let cfg = write_config(dir, &run_table("sharded", run, ""));
    let mut all = vec![
        "watch",
        "--config",
        cfg.to_str().expect("UTF-8"),
        "--log-format",
        "json",
    ];
    all.extend_from_slice(args);
    let mut d = Daemon::spawn(&all, env);
    d.wait_serving();
    d
}

/// Waits until every checkpoint is analysed, then returns the scrape.
fn settled(d: &Daemon) -> Scrape {
    let r = [("run", "sharded")];
    let s = d.wait_metrics("every checkpoint analysed", |s| {
        s.counter("probewatch_checkpoints_analyzed_total", &r) == STEPS.len() as f64
            && s.get("probewatch_checkpoint_step", &r) == Some(100.0)
    });
    assert!(
        s.failures("sharded").is_empty(),
        "{:?}",
        s.failures("sharded")
    );
    s
}

/// Layers stored for the newest checkpoint in the store at `db`.
fn stored_layers(db: &Path) -> BTreeSet<usize> {
    let store = Store::open(db).expect("store opens");
    let id = store
        .run_id("sharded")
        .expect("readable")
        .expect("run stored");
    let rows = store.checkpoints(id).expect("checkpoints");
    let newest = rows.iter().max_by_key(|r| r.step).expect("a checkpoint");
    store
        .layers(newest.id)
        .expect("layers")
        .iter()
        .map(|l| l.layer as usize)
        .collect()
}

#[test]
fn two_shards_split_the_layers_of_one_process() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).expect("run folder");
    let whole = start(&dir.path().join("whole"), &run, &[], &[]);
    let zero = start(
        &dir.path().join("zero"),
        &run,
        &[],
        &[("PROBEWATCH_SHARD", "0/2")],
    );
    let one = start(
        &dir.path().join("one"),
        &run,
        &["--shard-count", "2"],
        &[("HOSTNAME", "probewatch-1")],
    );
    for step in STEPS {
        let dump = synthetic_dump(400, 12, 5, LAYERS, step);
        write_renamed(&run, &format!("step-{step}.safetensors"), &dump.bytes());
    }
    let (sw, s0, s1) = (settled(&whole), settled(&zero), settled(&one));
    let info = |s: &Scrape, shard: &str, of: &str| {
        s.get("probewatch_shard_info", &[("shard", shard), ("of", of)])
    };
    assert_eq!(info(&sw, "0", "1"), Some(1.0));
    assert_eq!(info(&s0, "0", "2"), Some(1.0));
    assert_eq!(info(&s1, "1", "2"), Some(1.0));

    let (all, a, b) = (layer_series(&sw), layer_series(&s0), layer_series(&s1));
    assert_eq!(layers_of(&all), (0..LAYERS).collect());
    // Round-robin over the sorted (task, layer) pairs of the one task.
    assert_eq!(layers_of(&a), BTreeSet::from([0, 2, 4]));
    assert_eq!(layers_of(&b), BTreeSet::from([1, 3]));
    let shared: Vec<_> = a.keys().filter(|k| b.contains_key(*k)).collect();
    assert!(
        shared.is_empty(),
        "series exported by both shards: {shared:?}"
    );
    let mut union = a.clone();
    union.extend(b.clone());
    assert_eq!(
        union.keys().collect::<Vec<_>>(),
        all.keys().collect::<Vec<_>>(),
        "the shards' series together are not the unsharded process's"
    );
    for (k, v) in &all {
        assert_eq!(union[k], *v, "{k}: sharded value differs");
    }
    // Run-level series are every replica's own.
    for s in [&s0, &s1] {
        assert_eq!(
            s.value("probewatch_checkpoint_step", &[("run", "sharded")]),
            100.0
        );
    }

    drop((whole, zero, one));
    assert_eq!(
        stored_layers(&dir.path().join("whole/store.sqlite")),
        (0..LAYERS).collect()
    );
    assert_eq!(
        stored_layers(&dir.path().join("zero/store.sqlite")),
        BTreeSet::from([0, 2, 4])
    );
    assert_eq!(
        stored_layers(&dir.path().join("one/store.sqlite")),
        BTreeSet::from([1, 3])
    );
}

/// Arguments, environment, expected message.
type Case = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn bad_shard_specifications_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).expect("run folder");
    let cfg = write_config(dir.path(), &run_table("sharded", &run, ""));
    let c = cfg.to_str().expect("UTF-8");
    let cases: [Case; 4] = [
        (&["--shard", "2/2"], &[], "need 0 <= i < n"),
        (&["--shard", "half"], &[], "not of the form i/n"),
        (
            &["--shard-count", "2"],
            &[("HOSTNAME", "laptop")],
            "does not end in -<ordinal>",
        ),
        (
            &["--shard", "0/3", "--shard-count", "2"],
            &[],
            "disagrees with --shard-count 2",
        ),
    ];
    for (args, env, expected) in cases {
        let mut cmd = std::process::Command::new(exe());
        cmd.args(["watch", "--config", c])
            .args(args)
            .env_remove("PROBEWATCH_SHARD");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("probewatch runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
