//! The daemon as users run it: the real `probewatch watch` binary over real
//! folders, its `/metrics` scraped over HTTP and parsed by an independent
//! parser, its SQLite store opened afterwards. Checkpoints are written the
//! way training jobs write them (renamed into place, or slowly in pieces);
//! bad files, late checkpoints, SIGKILL and restart, SIGTERM, config errors
//! and the demo are each one scenario. Waits poll with generous deadlines;
//! nothing asserts on timing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use store::{CheckpointStatus, Store};

#[path = "common/daemon.rs"]
mod harness;
use harness::{
    Daemon, DumpSpec, Event, Scrape, exe, folder, is, probe_json, run_table, small_dump,
    synthetic_dump, tempdir, write_config, write_renamed,
};

const DEBUG: [(&str, &str); 1] = [("RUST_LOG", "probewatch=debug")];

/// The bigger dump whose analysis takes a few seconds (2,000 points × 32
/// dimensions, 6 labels in confusable pairs, 2 layers).
fn slow_dump(step: u64) -> DumpSpec {
    synthetic_dump(2000, 32, 6, 2, step)
}

/// Every checkpoint row of `run` in the store at `db`, after checking the
/// store's integrity. The daemon must be stopped.
fn stored_rows(db: &Path, run: &str) -> Vec<store::CheckpointRow> {
    let store = Store::open(db).expect("the store opens");
    store
        .check_integrity()
        .expect("the store passes its integrity check");
    let id = store
        .run_id(run)
        .expect("store readable")
        .unwrap_or_else(|| panic!("run {run} is in the store"));
    store.checkpoints(id).expect("checkpoints readable")
}

/// Appends `bytes` to the file at `path`.
fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("reopening");
    f.write_all(bytes).expect("writing the rest");
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) + 1e-12
}

/// After three checkpoints the exported values are the ones
/// `probewatch probe --json` computes for the newest file, and the
/// baseline series are those of the first file; a restarted daemon serves
/// the same values from its store.
#[test]
fn exported_values_equal_probe_json() {
    let dir = tempdir();
    let run = folder(dir.path(), "run");
    let cfg = write_config(dir.path(), &run_table("values", &run, ""));
    let d = Daemon::watch(&cfg, &[]);
    for step in [0, 100, 200] {
        daemon::demo::write_checkpoint(&run, step).expect("writing a demo checkpoint");
    }
    let r = [("run", "values")];
    let s = d.wait_metrics("step 200 after 3 analyses", |s| {
        s.get("probewatch_checkpoint_step", &r) == Some(200.0)
            && s.counter("probewatch_checkpoints_analyzed_total", &r) == 3.0
    });
    assert!(
        s.failures("values").is_empty(),
        "{:?}",
        s.failures("values")
    );
    let now = probe_json(&run.join("step-200.safetensors"));
    let base = probe_json(&run.join("step-0.safetensors"));
    assert_eq!(now["step"], 200);
    let task = now["task"].as_str().expect("task name");
    let labels: Vec<&str> = now["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .map(|l| l.as_str().expect("label name"))
        .collect();
    let layers = now["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), daemon::demo::LAYERS);
    let mut compared = 0;
    for (l, b) in layers
        .iter()
        .zip(base["layers"].as_array().expect("layers"))
    {
        let layer = l["layer"].to_string();
        let at = [("run", "values"), ("task", task), ("layer", layer.as_str())];
        assert_eq!(
            s.value("probewatch_clusters", &at),
            l["clusters"].as_f64().unwrap(),
            "clusters, layer {layer}"
        );
        assert_eq!(
            s.value("probewatch_labels", &at),
            l["labels_present"].as_f64().unwrap()
        );
        assert!(close(
            s.value("probewatch_layer_scale", &at),
            l["scale"].as_f64().unwrap(),
            1e-12
        ));
        let acc = [&at[..], &[("split", "test")]].concat();
        assert_eq!(
            s.value("probewatch_probe_accuracy", &acc),
            l["accuracy"]["test"].as_f64().unwrap(),
            "test accuracy, layer {layer}"
        );
        for (k, name) in labels.iter().enumerate() {
            let al = [&at[..], &[("label", *name)]].concat();
            let what = format!("layer {layer} label {name}");
            assert_eq!(
                s.value("probewatch_label_clusters", &al),
                l["clusters_per_label"][k].as_f64().unwrap(),
                "{what}"
            );
            let (Some(d), Some(dn)) = (
                l["min_label_distance"][k].as_f64(),
                l["min_label_distance_normalized"][k].as_f64(),
            ) else {
                assert_eq!(s.get("probewatch_label_min_distance", &al), None, "{what}");
                continue;
            };
            let md = s.value("probewatch_label_min_distance", &al);
            let mdn = s.value("probewatch_label_min_distance_normalized", &al);
            assert!(close(md, d, 2e-4), "{what}: {md} vs {d}");
            assert!(close(mdn, dn, 2e-4), "{what}: {mdn} vs {dn}");
            let bd = b["min_label_distance"][k]
                .as_f64()
                .expect("baseline distance");
            let bdn = b["min_label_distance_normalized"][k]
                .as_f64()
                .expect("baseline distance");
            let mb = s.value("probewatch_label_min_distance_baseline", &al);
            assert!(close(mb, bd, 2e-4), "{what}: baseline {mb} vs {bd}");
            let ratio = s.value("probewatch_label_min_distance_change_ratio", &al);
            let want = dn / bdn - 1.0;
            assert!(
                (ratio - want).abs() <= 5e-4 * (dn / bdn),
                "{what}: change ratio {ratio} vs {want}"
            );
            compared += 1;
        }
    }
    assert!(compared >= labels.len() * layers.len() / 2, "{compared}");
    // The top layer's NOUN shrinks towards PROPN in the demo run.
    let noun = [("run", "values"), ("layer", "3"), ("label", "NOUN")];
    assert!(s.value("probewatch_label_min_distance_change_ratio", &noun) < 0.0);

    // A restart serves the same values from the store before analysing
    // anything (centroids are stored as f32, so the centroid movement is
    // recomputed to within f32 rounding).
    let before = s.checkpoint_series("values");
    assert!(before.len() > 100, "{before:?}");
    d.signal("TERM");
    assert!(d.wait_exit().success());
    let d = Daemon::watch(&cfg, &[]);
    let after = d.scrape().checkpoint_series("values");
    let only_before: Vec<_> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let only_after: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(
        only_before.is_empty() && only_after.is_empty(),
        "the restarted daemon serves other series: before only {only_before:?}, after only {only_after:?}"
    );
    for (k, v) in &before {
        let w = after[k];
        if k.starts_with("probewatch_centroid_movement") {
            assert!((v - w).abs() <= 1e-4 * v.abs() + 1e-5, "{k}: {v} then {w}");
        } else {
            assert_eq!(*v, w, "{k}");
        }
    }
}

/// A dump written slowly in pieces is analysed once, only when
/// complete; one written to a hidden temporary name and renamed is
/// analysed; a writer pausing longer than the stability window looks like a
/// truncated file until it finishes.
#[test]
fn checkpoints_written_like_a_job_does() {
    let dir = tempdir();
    let patient = folder(dir.path(), "patient");
    let hasty = folder(dir.path(), "hasty");
    let cfg = write_config(
        dir.path(),
        &[
            run_table("patient", &patient, "stable_scans = 15"),
            run_table("hasty", &hasty, "stable_scans = 2"),
        ]
        .concat(),
    );
    let d = Daemon::watch(&cfg, &DEBUG);

    // Half a file, a pause of four scans (shorter than the 15-scan window),
    // the rest: the partial file is never queued, the complete one once.
    let bytes = small_dump(100).bytes();
    let slow = patient.join("slow-100.safetensors");
    let half = bytes.len() / 2;
    std::fs::write(&slow, &bytes[..half]).expect("writing half");
    let mark = d.lines().len();
    std::thread::sleep(Duration::from_millis(800));
    append(&slow, &bytes[half..]);
    let events_during_pause: Vec<Event> = d
        .events()
        .iter()
        .filter(|e| e.field("path") == slow.display().to_string())
        .cloned()
        .collect();
    assert!(
        events_during_pause.is_empty(),
        "the partial file was acted on: {events_during_pause:?}"
    );
    d.wait_event(
        mark,
        "the slow file analysed",
        is("checkpoint analysed", &slow),
    );

    // Hidden temporary name, then a rename.
    let renamed = write_renamed(
        &patient,
        "renamed-200.safetensors",
        &small_dump(200).bytes(),
    );
    d.wait_event(
        mark,
        "the renamed file analysed",
        is("checkpoint analysed", &renamed),
    );

    // A pause longer than stable_scans × interval: the partial file is
    // stable and fails the length check, so it is reported invalid once
    // (kind "format"); once complete it is analysed, once.
    let stalled = hasty.join("stalled-100.safetensors");
    std::fs::write(&stalled, &bytes[..half]).expect("writing half");
    d.wait_event(
        mark,
        "the stalled file reported",
        is("invalid checkpoint", &stalled),
    );
    append(&stalled, &bytes[half..]);
    d.wait_event(
        mark,
        "the stalled file analysed",
        is("checkpoint analysed", &stalled),
    );

    let p = [("run", "patient")];
    let s = d.wait_metrics("patient's two analyses", |s| {
        s.counter("probewatch_checkpoints_analyzed_total", &p) == 2.0
    });
    assert_eq!(s.value("probewatch_checkpoint_step", &p), 200.0);
    assert!(
        s.failures("patient").is_empty(),
        "{:?}",
        s.failures("patient")
    );
    let h = [("run", "hasty")];
    assert_eq!(s.value("probewatch_checkpoints_analyzed_total", &h), 1.0);
    assert_eq!(
        s.failures("hasty"),
        [("format".to_owned(), 1.0)].into_iter().collect()
    );
    let analysed = |path: &Path| {
        d.events()
            .iter()
            .filter(|e| is("analysing", path)(e))
            .count()
    };
    assert_eq!(analysed(&slow), 1);
    assert_eq!(analysed(&renamed), 1);
    assert_eq!(analysed(&stalled), 1);
    // Nothing about the hidden temporary name.
    assert!(
        !d.lines().iter().any(|l| l.contains(".tmp-renamed")),
        "the temporary file was looked at"
    );
    d.signal("TERM");
    assert!(d.wait_exit().success());
    let rows = stored_rows(&dir.path().join("store.sqlite"), "patient");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.status == CheckpointStatus::Done));
}

/// Bad files are counted by kind and logged by name, a checkpoint
/// deleted while it waits is dropped, and the daemon keeps analysing good
/// checkpoints and answering.
#[test]
fn bad_files_are_counted_and_the_daemon_keeps_going() {
    let dir = tempdir();
    let bad = folder(dir.path(), "bad");
    let gone = folder(dir.path(), "gone");
    let cfg = write_config(
        dir.path(),
        &[run_table("bad", &bad, ""), run_table("gone", &gone, "")].concat(),
    );
    let d = Daemon::watch(&cfg, &DEBUG);

    // Stable but truncated.
    let good = small_dump(10).bytes();
    let truncated = bad.join("truncated-10.safetensors");
    std::fs::write(&truncated, &good[..good.len() * 3 / 5]).expect("writing");
    // Garbage: the first eight bytes claim a huge header.
    let garbage = bad.join("garbage-20.safetensors");
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&garbage, &noise).expect("writing");
    // A layer of NaN.
    let mut nan = small_dump(30);
    nan.layers[1].iter_mut().for_each(|v| *v = f32::NAN);
    let nan = write_renamed(&bad, "nan-30.safetensors", &nan.bytes());
    // A label index beyond the label names.
    let mut unknown = small_dump(40);
    unknown.labels[7] = unknown.label_names.len() as i64;
    let unknown = write_renamed(&bad, "unknown-label-40.safetensors", &unknown.bytes());

    let b = [("run", "bad")];
    let want: BTreeMap<String, f64> = [("format", 2.0), ("non_finite", 1.0), ("labels", 1.0)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    d.wait_metrics("four failures of run bad", |s| {
        s.failures("bad").into_iter().collect::<BTreeMap<_, _>>() == want
    });
    for (path, message) in [
        (&truncated, "invalid checkpoint"),
        (&garbage, "invalid checkpoint"),
        (&nan, "checkpoint failed"),
        (&unknown, "checkpoint failed"),
    ] {
        let name = path.file_name().unwrap().to_str().unwrap();
        let events = d.events();
        let e = events
            .iter()
            .find(|e| is(message, path)(e))
            .unwrap_or_else(|| panic!("no '{message}' line naming {name}"));
        assert_eq!(e.level, "WARN", "{}", e.raw);
        let why = format!("{} {}", e.field("reason"), e.field("error"));
        assert!(!why.trim().is_empty(), "{}", e.raw);
        if message == "checkpoint failed" {
            // The error message itself names the file too.
            assert!(why.contains(name), "{}", e.raw);
        }
    }
    let kind_of = |path: &Path| {
        d.events()
            .into_iter()
            .find(|e| is("checkpoint failed", path)(e))
            .map(|e| e.field("kind").to_owned())
    };
    assert_eq!(kind_of(&nan).as_deref(), Some("non_finite"));
    assert_eq!(kind_of(&unknown).as_deref(), Some("labels"));

    // Deleted while queued behind a long analysis: dropped from the queue
    // (counted as skipped, not failed), never analysed. Should the long
    // analysis end first on a fast machine, the victim's analysis fails to
    // open it (kind "io") instead.
    let busy = write_renamed(&gone, "busy-0.safetensors", &slow_dump(0).bytes());
    let (i, _) = d.wait_event(0, "the busy checkpoint analysing", is("analysing", &busy));
    let victim = write_renamed(&gone, "victim-100.safetensors", &slow_dump(100).bytes());
    d.wait_event(
        i,
        "the victim queued",
        is("checkpoint complete; queued", &victim),
    );
    std::fs::remove_file(&victim).expect("deleting the victim");
    let (_, outcome) = d.wait_event(i, "the victim dropped or failed", |e| {
        is("queued checkpoint removed before analysis", &victim)(e)
            || is("checkpoint failed", &victim)(e)
    });
    let dropped = outcome.message.starts_with("queued");
    if !dropped {
        assert_eq!(outcome.field("kind"), "io", "{}", outcome.raw);
    }
    let (i, _) = d.wait_event(i, "the busy one analysed", is("checkpoint analysed", &busy));

    // Deleted as its analysis starts: the dump reader holds the file open,
    // so it is either analysed (opened first) or fails with kind "io".
    let doomed = write_renamed(&gone, "doomed-200.safetensors", &slow_dump(200).bytes());
    d.wait_event(i, "the doomed one analysing", is("analysing", &doomed));
    std::fs::remove_file(&doomed).expect("deleting");
    let (_, fate) = d.wait_event(i, "the doomed one's outcome", |e| {
        is("checkpoint analysed", &doomed)(e) || is("checkpoint failed", &doomed)(e)
    });
    let doomed_done = fate.message == "checkpoint analysed";
    if !doomed_done {
        assert_eq!(fate.field("kind"), "io", "{}", fate.raw);
    }

    eprintln!("victim dropped from the queue: {dropped}; doomed analysed: {doomed_done}");

    // A good checkpoint afterwards is analysed and exported.
    let fine = write_renamed(&bad, "fine-100.safetensors", &small_dump(100).bytes());
    d.wait_event(
        0,
        "the good file analysed",
        is("checkpoint analysed", &fine),
    );
    let s = d.wait_metrics("the good file's late values", |s| {
        s.get("probewatch_checkpoint_step", &b) == Some(100.0)
    });
    assert_eq!(s.value("probewatch_checkpoint_step", &b), 100.0);
    assert_eq!(s.value("probewatch_checkpoints_analyzed_total", &b), 1.0);
    let at = [("run", "bad"), ("task", "small"), ("layer", "2")];
    assert!(s.get("probewatch_clusters", &at).is_some(), "{}", s.text);
    assert!(
        s.get(
            "probewatch_label_min_distance",
            &[&at[..], &[("label", "C")]].concat()
        )
        .is_some()
    );
    let g = [("run", "gone")];
    let (analysed, step) = if doomed_done {
        (2.0, 200.0)
    } else {
        (1.0, 0.0)
    };
    assert_eq!(
        s.value("probewatch_checkpoints_analyzed_total", &g),
        analysed
    );
    assert_eq!(s.value("probewatch_checkpoint_step", &g), step);
    let mut io = 0.0;
    if dropped {
        assert_eq!(s.value("probewatch_checkpoints_skipped_total", &g), 1.0);
    } else {
        io += 1.0;
    }
    if !doomed_done {
        io += 1.0;
    }
    let want_gone: BTreeMap<String, f64> = (io > 0.0)
        .then(|| ("io".to_owned(), io))
        .into_iter()
        .collect();
    assert_eq!(
        s.failures("gone").into_iter().collect::<BTreeMap<_, _>>(),
        want_gone
    );
    assert!(
        !d.events().iter().any(|e| is("analysing", &victim)(e)) || !dropped,
        "the deleted checkpoint was analysed"
    );

    assert!(d.is_running(), "the daemon died");
    assert_eq!(d.get("/healthz").0, 200);
    assert_eq!(d.get("/readyz").0, 200);
    d.signal("TERM");
    assert!(d.wait_exit().success());
    // Analysis failures are history; invalid files were never analysed.
    let rows = stored_rows(&dir.path().join("store.sqlite"), "bad");
    let by_path: BTreeMap<PathBuf, (CheckpointStatus, Option<String>)> = rows
        .into_iter()
        .map(|r| (r.path, (r.status, r.error_kind)))
        .collect();
    assert_eq!(by_path.len(), 3, "{by_path:?}");
    assert_eq!(by_path[&fine].0, CheckpointStatus::Done);
    assert_eq!(by_path[&nan].1.as_deref(), Some("non_finite"));
    assert_eq!(by_path[&unknown].1.as_deref(), Some("labels"));
}

/// A checkpoint older than the newest one is analysed and stored
/// but does not move the exported step or values.
#[test]
fn a_late_checkpoint_does_not_move_the_latest_values() {
    let dir = tempdir();
    let run = folder(dir.path(), "run");
    let cfg = write_config(dir.path(), &run_table("late", &run, ""));
    let d = Daemon::watch(&cfg, &[]);
    let r = [("run", "late")];
    daemon::demo::write_checkpoint(&run, 0).expect("writing");
    daemon::demo::write_checkpoint(&run, 200).expect("writing");
    let before = d.wait_metrics("step 200 after two analyses", |s| {
        s.get("probewatch_checkpoint_step", &r) == Some(200.0)
            && s.counter("probewatch_checkpoints_analyzed_total", &r) == 2.0
    });
    let late = daemon::demo::write_checkpoint(&run, 100).expect("writing");
    let after = d.wait_metrics("the late checkpoint analysed", |s| {
        s.counter("probewatch_checkpoints_analyzed_total", &r) == 3.0
    });
    assert_eq!(after.value("probewatch_checkpoint_step", &r), 200.0);
    let noun = [("run", "late"), ("layer", "3"), ("label", "NOUN")];
    for name in [
        "probewatch_label_min_distance",
        "probewatch_label_min_distance_change_ratio",
        "probewatch_checkpoint_timestamp_seconds",
    ] {
        let at: &[(&str, &str)] = if name.contains("timestamp") {
            &r
        } else {
            &noun
        };
        assert_eq!(before.value(name, at), after.value(name, at), "{name}");
    }
    d.wait_event(0, "the late-checkpoint line", |e| {
        e.message.starts_with("late checkpoint") && e.field("step") == "100"
    });
    d.signal("TERM");
    assert!(d.wait_exit().success());
    let rows = stored_rows(&dir.path().join("store.sqlite"), "late");
    let steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
    assert_eq!(steps, [0, 100, 200]);
    assert!(rows.iter().any(|r| r.path == late));
}

/// When to SIGKILL the daemon in one round of the kill test.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// When it starts analysing, after it analysed one checkpoint.
    SecondAnalysisStarts,
    /// This long after it starts analysing.
    IntoTheFirstAnalysis(Duration),
    /// Right after its first "checkpoint analysed" line.
    FirstAnalysed,
}

/// SIGKILL at several moments and restart: the stored values are
/// served at once, and in the end every checkpoint was analysed exactly
/// once and the store is intact.
#[test]
fn kill_9_and_restart() {
    let dir = tempdir();
    let run = folder(dir.path(), "run");
    let cfg = write_config(dir.path(), &run_table("crash", &run, ""));
    let db = dir.path().join("store.sqlite");
    let steps = [0u64, 100, 200, 300];
    let paths: Vec<PathBuf> = steps
        .iter()
        .map(|&s| {
            write_renamed(
                &run,
                &format!("ckpt-{s}.safetensors"),
                &slow_dump(s).bytes(),
            )
        })
        .collect();
    let r = [("run", "crash")];
    let rounds = [
        KillAt::SecondAnalysisStarts,
        KillAt::IntoTheFirstAnalysis(Duration::from_millis(700)),
        KillAt::FirstAnalysed,
        KillAt::IntoTheFirstAnalysis(Duration::from_millis(50)),
    ];
    let mut latest_stored: Option<u64> = None;
    let mut last: Option<Daemon> = None;
    for (round, at) in rounds.iter().enumerate() {
        let d = Daemon::watch(&cfg, &DEBUG);
        // (a) The stored values are back before any new analysis finished.
        let first = d.scrape();
        assert_eq!(
            first.counter("probewatch_checkpoints_analyzed_total", &r),
            0.0,
            "round {round}: an analysis finished before the first scrape"
        );
        assert_eq!(
            first.get("probewatch_checkpoint_step", &r),
            latest_stored.map(|s| s as f64),
            "round {round}: first scrape after a restart\n{}",
            first.text
        );
        if latest_stored.is_some() {
            // Its per-layer values too, not only the step (the core ones:
            // the late stages of the newest stored checkpoint may have been
            // cut short by the kill).
            assert_eq!(
                first.samples("probewatch_layer_scale", &r).len(),
                2,
                "round {round}: no per-layer values after a restart\n{}",
                first.text
            );
        }
        if latest_stored == Some(steps[steps.len() - 1]) {
            last = Some(d);
            break;
        }
        match at {
            KillAt::SecondAnalysisStarts => {
                let (i, _) = d.wait_event(0, "a checkpoint analysed", |e| {
                    e.message == "checkpoint analysed"
                });
                d.wait_event(i, "the next analysis", |e| e.message == "analysing");
            }
            KillAt::IntoTheFirstAnalysis(t) => {
                d.wait_event(0, "an analysis", |e| e.message == "analysing");
                std::thread::sleep(*t);
            }
            KillAt::FirstAnalysed => {
                d.wait_event(0, "a checkpoint analysed", |e| {
                    e.message == "checkpoint analysed"
                });
            }
        }
        d.kill9();
        let rows = stored_rows(&db, "crash");
        latest_stored = rows
            .iter()
            .filter(|r| r.status == CheckpointStatus::Done)
            .map(|r| r.step)
            .max();
        if round == 0 {
            assert!(latest_stored.is_some(), "round 0 ends after one analysis");
        }
    }
    // (b) A last start finishes the rest; then a clean stop.
    let d = last.unwrap_or_else(|| Daemon::watch(&cfg, &DEBUG));
    d.wait_metrics("the newest checkpoint", |s| {
        s.get("probewatch_checkpoint_step", &r) == Some(300.0)
    });
    d.signal("TERM");
    assert!(d.wait_exit().success());
    let rows = stored_rows(&db, "crash");
    for p in &paths {
        let mine: Vec<_> = rows.iter().filter(|r| &r.path == p).collect();
        assert_eq!(mine.len(), 1, "{}: {mine:?}", p.display());
        assert_eq!(mine[0].status, CheckpointStatus::Done, "{mine:?}");
    }
    assert_eq!(rows.len(), paths.len());
    let store = Store::open(&db).expect("store");
    let id = store.run_id("crash").unwrap().unwrap();
    assert_eq!(store.baseline(id).unwrap().map(|b| b.step), Some(0));
    for row in &rows {
        assert_eq!(store.layers(row.id).unwrap().len(), 2, "step {}", row.step);
    }
}

/// A SIGKILL between recording the baseline checkpoint and marking it as
/// the baseline (two transactions) leaves a store with the checkpoint but
/// no baseline: the restarted daemon adopts the configured one again
/// instead of making the next checkpoint the baseline. The crash's state is
/// made by deleting the mark (the window is too short to hit with a kill).
#[test]
fn an_unmarked_baseline_is_adopted_after_a_crash() {
    let dir = tempdir();
    let run = folder(dir.path(), "run");
    let cfg = write_config(dir.path(), &run_table("base", &run, ""));
    let db = dir.path().join("store.sqlite");
    let r = [("run", "base")];
    let at = [("run", "base"), ("layer", "2"), ("label", "B")];
    let d = Daemon::watch(&cfg, &[]);
    write_renamed(&run, "ckpt-0.safetensors", &small_dump(0).bytes());
    let first = d.wait_metrics("step 0", |s| {
        s.get("probewatch_checkpoint_step", &r) == Some(0.0)
    });
    let base = first.value("probewatch_label_min_distance", &at);
    d.signal("TERM");
    assert!(d.wait_exit().success());
    let conn = rusqlite::Connection::open(&db).expect("the store opens");
    assert_eq!(conn.execute("DELETE FROM baseline", []).expect("delete"), 1);
    drop(conn);

    let d = Daemon::watch(&cfg, &[]);
    write_renamed(&run, "ckpt-100.safetensors", &small_dump(100).bytes());
    let s = d.wait_metrics("step 100", |s| {
        s.get("probewatch_checkpoint_step", &r) == Some(100.0)
    });
    assert_eq!(s.value("probewatch_label_min_distance_baseline", &at), base);
    assert_ne!(s.value("probewatch_label_min_distance", &at), base);
    d.signal("TERM");
    assert!(d.wait_exit().success());
    let store = Store::open(&db).expect("the store opens");
    let id = store.run_id("base").unwrap().unwrap();
    assert_eq!(store.baseline(id).unwrap().map(|b| b.step), Some(0));
}

/// SIGTERM while a checkpoint is analysed: the daemon finishes it,
/// exits with status 0, and leaves an intact store.
#[test]
fn sigterm_finishes_the_analysis_and_exits_cleanly() {
    let dir = tempdir();
    let run = folder(dir.path(), "run");
    let cfg = write_config(dir.path(), &run_table("term", &run, ""));
    let d = Daemon::watch(&cfg, &DEBUG);
    let first = write_renamed(&run, "ckpt-0.safetensors", &slow_dump(0).bytes());
    let second = write_renamed(&run, "ckpt-100.safetensors", &slow_dump(100).bytes());
    let (i, _) = d.wait_event(0, "the first analysed", is("checkpoint analysed", &first));
    d.wait_event(i, "the second analysing", is("analysing", &second));
    d.signal("TERM");
    let status = d.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    let events = d.events();
    let said = |m: &str| events.iter().any(|e| e.message == m);
    assert!(said("SIGTERM received"));
    assert!(said("finishing the checkpoint being analysed"));
    assert!(said("stopped"));
    let rows = stored_rows(&dir.path().join("store.sqlite"), "term");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.status == CheckpointStatus::Done));
}

/// An unknown key stops the daemon with the file and line named;
/// `check-config` accepts the example and lists its runs.
#[test]
fn config_errors_name_the_file_and_line() {
    let dir = tempdir();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "listen = \"127.0.0.1:0\"\n\n[[run]]\nname = \"x\"\nfolder = \"runs/x\"\ncolour = \"blue\"\n",
    )
    .expect("writing");
    let out = Command::new(exe())
        .args(["watch", "--config", bad.to_str().unwrap()])
        .output()
        .expect("running probewatch");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:6:", bad.display())), "{err}");
    assert!(err.contains("colour"), "{err}");
    assert!(!dir.path().join("probewatch.sqlite").exists());

    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/probewatch.example.toml");
    let out = Command::new(exe())
        .args(["check-config", example.to_str().unwrap()])
        .output()
        .expect("running probewatch");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml: toml::Table = std::fs::read_to_string(&example)
        .expect("example readable")
        .parse()
        .expect("example is TOML");
    let runs = toml["run"].as_array().expect("[[run]] tables");
    assert!(!runs.is_empty());
    for run in runs {
        let name = run["name"].as_str().expect("run name");
        assert!(
            text.contains(name),
            "check-config does not mention {name}:\n{text}"
        );
    }
}

/// `probewatch demo` serves a run whose step increases and whose
/// NOUN distance shrinks at the top layer; SIGINT stops it cleanly.
#[test]
fn demo_smoke() {
    let dir = tempdir();
    let mut d = Daemon::spawn(
        &[
            "demo",
            "--dir",
            dir.path().to_str().unwrap(),
            "--interval-seconds",
            "0.3",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ],
        &[],
    );
    d.wait_serving();
    let r = [("run", "demo")];
    let noun = [("run", "demo"), ("layer", "3"), ("label", "NOUN")];
    let mut seen = Vec::new();
    let s: Scrape = d.wait_metrics("NOUN shrinking after a few checkpoints", |s| {
        if let Some(step) = s.get("probewatch_checkpoint_step", &r) {
            if seen.last() != Some(&step) {
                seen.push(step);
            }
        }
        seen.len() >= 3
            && s.get("probewatch_label_min_distance_change_ratio", &noun)
                .is_some_and(|x| x < 0.0)
    });
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "steps {seen:?}");
    assert!(s.value("probewatch_checkpoint_step", &r) >= 200.0);
    d.signal("INT");
    let status = d.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    assert!(dir.path().join("run/step-0.safetensors").exists());
}

/// `queue = "newest"`: while one slow analysis runs, several checkpoints
/// arrive; after it only the newest waiting one is analysed, the others are
/// counted as skipped, and the exported step is the newest.
#[test]
fn queue_newest_skips_the_older_waiting_checkpoints() {
    let dir = tempdir();
    let run = folder(dir.path(), "run");
    let cfg = write_config(dir.path(), &run_table("newest", &run, "queue = \"newest\""));
    let d = Daemon::watch(&cfg, &DEBUG);
    let r = [("run", "newest")];
    let first = write_renamed(&run, "step-0.safetensors", &slow_dump(0).bytes());
    d.wait_event(0, "the first analysis starts", is("analysing", &first));
    for step in [10, 20, 30, 40] {
        write_renamed(
            &run,
            &format!("step-{step}.safetensors"),
            &slow_dump(step).bytes(),
        );
    }
    let s = d.wait_metrics("step 40 exported", |s| {
        s.get("probewatch_checkpoint_step", &r) == Some(40.0)
    });
    let analysed = s.counter("probewatch_checkpoints_analyzed_total", &r);
    let skipped = s.counter("probewatch_checkpoints_skipped_total", &r);
    assert_eq!(
        analysed + skipped,
        5.0,
        "every checkpoint analysed or counted"
    );
    assert!(
        skipped >= 1.0,
        "older waiting checkpoints skipped: {skipped}"
    );
    d.signal("TERM");
    assert!(d.wait_exit().success());
    let rows = stored_rows(&dir.path().join("store.sqlite"), "newest");
    assert_eq!(rows.len() as f64, analysed);
    assert_eq!(
        rows.first().map(|r| r.step),
        Some(0),
        "the baseline is analysed"
    );
    assert_eq!(rows.last().map(|r| r.step), Some(40));
}

/// `mode = "frozen-partition"`: the baseline's clusters are kept for later
/// checkpoints (the cluster count stays that of the baseline) and the stored
/// reports say so.
#[test]
fn frozen_partition_mode_keeps_the_baseline_clusters() {
    let dir = tempdir();
    let run = folder(dir.path(), "run");
    let cfg = write_config(
        dir.path(),
        &run_table("frozen", &run, "mode = \"frozen-partition\""),
    );
    let d = Daemon::watch(&cfg, &[]);
    let r = [("run", "frozen")];
    daemon::demo::write_checkpoint(&run, 0).expect("writing");
    let base = d.wait_metrics("the baseline", |s| {
        s.get("probewatch_checkpoint_step", &r) == Some(0.0)
    });
    // At the last demo step NOUN and PROPN overlap in the top layer: exact
    // re-clustering would split them; the frozen partition keeps 8 clusters.
    daemon::demo::write_checkpoint(&run, 2000).expect("writing");
    let last = d.wait_metrics("the last step", |s| {
        s.get("probewatch_checkpoint_step", &r) == Some(2000.0)
    });
    let top = [("run", "frozen"), ("task", "pos"), ("layer", "3")];
    assert_eq!(
        base.value("probewatch_clusters", &top),
        last.value("probewatch_clusters", &top)
    );
    d.signal("TERM");
    assert!(d.wait_exit().success());
    let store = Store::open(&dir.path().join("store.sqlite")).expect("store");
    let id = store.run_id("frozen").unwrap().unwrap();
    let rows = store.checkpoints(id).unwrap();
    let last_layers = store.layers(rows[1].id).unwrap();
    assert!(
        last_layers
            .iter()
            .all(|l| l.report_json.contains("\"frozen_partition\":true"))
    );
    let exact = probe_json(&run.join("step-2000.safetensors"));
    let exact_top = exact["layers"][3]["clusters"].as_f64().unwrap();
    assert!(
        exact_top > last.value("probewatch_clusters", &top),
        "exact re-clustering splits the overlapping pair ({exact_top} clusters)"
    );
}

/// `classifier = "mlp"` with `memorisation_splits = true`: the daemon fits
/// clusters and the MLP probe on `subtrain`, exports
/// `probewatch_classifier_accuracy{,_std}` and the nearest-cluster accuracy
/// for `subtest` and `test`, equal to `probe --classifier
/// --memorisation-splits --json` on the same file (the classifier is
/// deterministic), stores them, and serves them again after a restart.
#[test]
fn classifier_and_memorisation_splits() {
    let dir = tempdir();
    let run = folder(dir.path(), "run");
    let cfg = write_config(
        dir.path(),
        &run_table(
            "mlp",
            &run,
            "classifier = \"mlp\"\nclassifier_configurations = 2\nmemorisation_splits = true",
        ),
    );
    let file = write_renamed(&run, "step-0.safetensors", &small_dump(0).bytes());
    let d = Daemon::watch(&cfg, &[]);
    let r = [("run", "mlp")];
    let s = d.wait_metrics("the checkpoint", |s| {
        s.get("probewatch_checkpoint_step", &r) == Some(0.0)
    });
    let out = Command::new(exe())
        .args(["probe", file.to_str().expect("UTF-8 path")])
        .args(["--json", "--classifier", "--classifier-configurations", "2"])
        .arg("--memorisation-splits")
        .output()
        .expect("running probewatch probe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(want["fit_split"], "subtrain");
    assert_eq!(want["splits"]["train"], 0);
    let (sub_a, sub_b) = (
        want["splits"]["subtrain"].as_u64().expect("subtrain"),
        want["splits"]["subtest"].as_u64().expect("subtest"),
    );
    assert_eq!(sub_a + sub_b, 240, "train is carved whole");
    assert!((44..=52).contains(&sub_b), "about 20 % of train: {sub_b}");
    for layer in want["layers"].as_array().expect("layers") {
        let l = layer["layer"].to_string();
        for split in ["subtest", "test"] {
            let labels = [
                ("run", "mlp"),
                ("task", "small"),
                ("layer", &l),
                ("split", split),
            ];
            let c = &layer["classifier_accuracy"][split];
            assert_eq!(
                s.value("probewatch_classifier_accuracy", &labels),
                c["mean"].as_f64().expect("mean"),
                "layer {l} split {split}"
            );
            assert_eq!(
                s.value("probewatch_classifier_accuracy_std", &labels),
                c["std"].as_f64().expect("std")
            );
            assert_eq!(
                s.value("probewatch_probe_accuracy", &labels),
                layer["accuracy"][split].as_f64().expect("accuracy")
            );
        }
        // Separable blobs: the classifier gets every test point right.
        assert_eq!(layer["classifier_accuracy"]["test"]["mean"], 1.0);
        assert!(layer["classifier_accuracy"].get("subtrain").is_none());
    }
    d.signal("TERM");
    assert!(d.wait_exit().success());
    let rows = stored_rows(&dir.path().join("store.sqlite"), "mlp");
    let store = Store::open(&dir.path().join("store.sqlite")).expect("store");
    let layers = store.layers(rows[0].id).expect("layers");
    assert!(
        layers
            .iter()
            .all(|l| l.report_json.contains("\"classifier_accuracy\""))
    );
    // Restarted: the stored values are served again.
    let d = Daemon::watch(&cfg, &[]);
    let again = d.wait_metrics("the restored checkpoint", |s| {
        s.get("probewatch_checkpoint_step", &r) == Some(0.0)
    });
    let top = [
        ("run", "mlp"),
        ("task", "small"),
        ("layer", "2"),
        ("split", "test"),
    ];
    assert_eq!(
        again.value("probewatch_classifier_accuracy", &top),
        s.value("probewatch_classifier_accuracy", &top)
    );
    d.signal("TERM");
    assert!(d.wait_exit().success());
}

/// Waits until `run` has `n` analysed checkpoints.
fn wait_analysed(d: &Daemon, run: &'static str, n: f64) -> Scrape {
    d.wait_metrics(&format!("{n} checkpoints of {run} analysed"), move |s| {
        s.get("probewatch_checkpoints_analyzed_total", &[("run", run)]) == Some(n)
    })
}

/// SIGHUP re-reads the config: a run added is watched, a run removed leaves
/// `/metrics` (its history stays stored), and a file with an error changes
/// nothing — the error names the file and line, the old runs keep being
/// analysed, and the reload metrics say so.
#[test]
fn sighup_reloads_the_config_and_an_invalid_file_keeps_the_old_one() {
    let dir = tempdir();
    let a = folder(dir.path(), "a");
    let b = folder(dir.path(), "b");
    let cfg = write_config(dir.path(), &run_table("a", &a, ""));
    let d = Daemon::watch(&cfg, &[]);
    write_renamed(&a, "step-0.safetensors", &small_dump(0).bytes());
    wait_analysed(&d, "a", 1.0);
    let s = d.scrape();
    assert_eq!(
        s.value("probewatch_config_last_reload_successful", &[]),
        1.0
    );
    assert!(
        s.value(
            "probewatch_config_last_reload_success_timestamp_seconds",
            &[]
        ) > 1.7e9
    );

    // Add run b.
    write_config(
        dir.path(),
        &[run_table("a", &a, ""), run_table("b", &b, "")].concat(),
    );
    write_renamed(&b, "step-0.safetensors", &small_dump(0).bytes());
    let from = d.lines().len();
    d.signal("HUP");
    let (_, e) = d.wait_event(from, "the reload line", |e| {
        e.message == "configuration reloaded"
    });
    assert!(e.field("added").contains('b'), "{}", e.raw);
    let s = wait_analysed(&d, "b", 1.0);
    assert_eq!(
        s.counter("probewatch_config_reloads_total", &[("result", "success")]),
        1.0
    );
    // The added run is watched: its report page reloads itself.
    let (status, page) = d.get("/report/b");
    assert_eq!(status, 200);
    assert!(page.contains("This page reloads every"), "{page}");

    // A broken file: line 7 has a string where a number belongs.
    let broken = format!(
        "listen = \"127.0.0.1:0\"\nstore = \"store.sqlite\"\nworkers = 1\nlog_format = \"json\"\n\n\
         {}scan_interval_seconds = \"fast\"\n",
        run_table("a", &a, "").replace("scan_interval_seconds = 0.2\n", "")
    );
    let bad_line = broken
        .lines()
        .position(|l| l.contains("\"fast\""))
        .expect("the bad line")
        + 1;
    std::fs::write(&cfg, &broken).expect("writing the broken config");
    let from = d.lines().len();
    d.signal("HUP");
    let (_, e) = d.wait_event(from, "the failed reload line", |e| {
        e.message.starts_with("configuration reload failed")
    });
    assert_eq!(e.level, "ERROR", "{}", e.raw);
    let want = format!("{}:{bad_line}:", cfg.display());
    assert!(
        e.field("error").contains(&want),
        "expected {want} in {}",
        e.raw
    );
    let s = d.wait_metrics("the failed reload counted", |s| {
        s.counter("probewatch_config_reloads_total", &[("result", "failure")]) == 1.0
    });
    assert_eq!(
        s.value("probewatch_config_last_reload_successful", &[]),
        0.0
    );
    // Both runs of the old config keep going.
    write_renamed(&a, "step-10.safetensors", &small_dump(10).bytes());
    write_renamed(&b, "step-10.safetensors", &small_dump(10).bytes());
    wait_analysed(&d, "a", 2.0);
    wait_analysed(&d, "b", 2.0);

    // A valid file without run b: b leaves /metrics, a goes on.
    write_config(dir.path(), &run_table("a", &a, ""));
    let from = d.lines().len();
    d.signal("HUP");
    let (_, e) = d.wait_event(from, "the second reload line", |e| {
        e.message == "configuration reloaded"
    });
    assert!(e.field("removed").contains('b'), "{}", e.raw);
    let s = d.wait_metrics("run b gone", |s| {
        s.get("probewatch_checkpoint_step", &[("run", "b")])
            .is_none()
            && s.get("probewatch_checkpoints_analyzed_total", &[("run", "b")])
                .is_none()
    });
    assert_eq!(
        s.value("probewatch_config_last_reload_successful", &[]),
        1.0
    );
    // Its history is still reported, as a run no longer watched.
    let (status, page) = d.get("/report/b");
    assert_eq!(status, 200);
    assert!(!page.contains("This page reloads every"), "{page}");
    write_renamed(&a, "step-20.safetensors", &small_dump(20).bytes());
    wait_analysed(&d, "a", 3.0);
    d.signal("TERM");
    assert!(d.wait_exit().success());
    // Nothing stored was lost: b's history is still there.
    let db = dir.path().join("store.sqlite");
    assert_eq!(stored_rows(&db, "a").len(), 3);
    assert_eq!(stored_rows(&db, "b").len(), 2);
}

/// `[limits]`: a checkpoint over a cap fails with kind `limit` and an error
/// naming the file, the cap and the value; the daemon goes on, and a reload
/// raising the cap applies to the next checkpoint.
#[test]
fn limits_refuse_checkpoints_with_a_clear_error() {
    let dir = tempdir();
    let r = folder(dir.path(), "r");
    let limits = "[limits]\nmax_labels = 4\nmax_file_bytes = 100000\n\n";
    let cfg = write_config(dir.path(), &format!("{limits}{}", run_table("r", &r, "")));
    let d = Daemon::watch(&cfg, &[]);
    // 5 labels, about 60 KB: over max_labels.
    let labels = write_renamed(&r, "step-0.safetensors", &small_dump(0).bytes());
    // 2,000 × 32 × 2 layers of f32, about 520 KB: over max_file_bytes.
    let big = write_renamed(&r, "step-10.safetensors", &slow_dump(10).bytes());
    d.wait_metrics("two limit failures", |s| {
        s.failures("r").get("limit") == Some(&2.0)
    });
    let failed = |path: &Path| {
        d.events()
            .into_iter()
            .find(|e| is("checkpoint failed", path)(e))
            .unwrap_or_else(|| panic!("no failure line naming {}", path.display()))
    };
    let e = failed(&labels);
    assert_eq!(e.field("kind"), "limit", "{}", e.raw);
    let msg = e.field("error");
    assert!(msg.contains(&labels.display().to_string()), "{msg}");
    assert!(
        msg.contains("5 labels, more than limits.max_labels = 4"),
        "{msg}"
    );
    let msg = failed(&big).field("error").to_owned();
    assert!(
        msg.contains("more than limits.max_file_bytes = 100000"),
        "{msg}"
    );

    // Raise the label cap: the next checkpoint is analysed.
    let raised = "[limits]\nmax_labels = 10\nmax_file_bytes = 100000\n\n";
    write_config(dir.path(), &format!("{raised}{}", run_table("r", &r, "")));
    let from = d.lines().len();
    d.signal("HUP");
    d.wait_event(from, "the reload line", |e| {
        e.message == "configuration reloaded"
    });
    write_renamed(&r, "step-20.safetensors", &small_dump(20).bytes());
    wait_analysed(&d, "r", 1.0);
    d.signal("TERM");
    assert!(d.wait_exit().success());
    let rows = stored_rows(&dir.path().join("store.sqlite"), "r");
    let kinds: Vec<_> = rows
        .iter()
        .map(|r| (r.step, r.error_kind.clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (0, Some("limit".to_owned())),
            (10, Some("limit".to_owned())),
            (20, None)
        ]
    );
}
