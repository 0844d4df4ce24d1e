//! Scanner tests on real temporary folders and real safetensors files.

use super::header::tests::safetensors_bytes;
use super::*;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::time::Duration;

/// Two scans of unchanged size and mtime make a file stable.
const STABLE: u32 = 2;

fn scanner(dir: &Path, layout: Layout) -> Scanner {
    Scanner::new(dir.to_path_buf(), layout, STABLE, false)
}

fn scan(scanner: &mut Scanner) -> Vec<ScanItem> {
    scanner.scan(&HashSet::new()).unwrap()
}

fn scan_renamed(scanner: &mut Scanner, renamed: &[&Path]) -> Vec<ScanItem> {
    let renamed: HashSet<PathBuf> = renamed.iter().map(|p| p.to_path_buf()).collect();
    scanner.scan(&renamed).unwrap()
}

/// A valid dump's bytes; `floats` varies the size.
fn dump(floats: usize) -> Vec<u8> {
    safetensors_bytes(&[("label_names", "[\"a\"]")], floats)
}

fn version_of(path: &Path) -> Version {
    let meta = fs::metadata(path).unwrap();
    Version {
        size: meta.len(),
        mtime: meta.modified().unwrap(),
    }
}

/// The candidate a complete dump file should produce.
fn dump_candidate(step: u64, path: &Path) -> ScanItem {
    let v = version_of(path);
    ScanItem::Complete(Candidate {
        step,
        path: path.to_path_buf(),
        size: v.size,
        mtime: v.mtime,
    })
}

/// The candidate a complete checkpoint directory should produce.
fn dir_candidate(step: u64, dir: &Path, weights: &[&str]) -> ScanItem {
    let versions: Vec<Version> = weights.iter().map(|w| version_of(&dir.join(w))).collect();
    ScanItem::Complete(Candidate {
        step,
        path: dir.to_path_buf(),
        size: versions.iter().map(|v| v.size).sum(),
        mtime: versions.iter().map(|v| v.mtime).max().unwrap(),
    })
}

fn invalid_reason(items: &[ScanItem], path: &Path) -> String {
    match items {
        [ScanItem::Invalid { path: p, reason }] if p == path => reason.clone(),
        other => panic!("expected one Invalid for {}, got {other:?}", path.display()),
    }
}

fn steps(items: &[ScanItem]) -> Vec<u64> {
    items
        .iter()
        .map(|item| match item {
            ScanItem::Complete(c) => c.step,
            other => panic!("expected only Complete items, got {other:?}"),
        })
        .collect()
}

fn append(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

fn set_mtime(path: &Path, mtime: SystemTime) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

fn trainer_state(dir: &Path, global_step: u64) {
    fs::write(
        dir.join(TRAINER_STATE),
        format!(r#"{{"global_step": {global_step}, "log_history": [], "epoch": 1.0}}"#),
    )
    .unwrap();
}

/// A finished checkpoint as a Trainer leaves it.
fn trainer_checkpoint(run: &Path, step: u64) -> PathBuf {
    let dir = run.join(format!("checkpoint-{step}"));
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("config.json"), "{}").unwrap();
    fs::write(dir.join(SINGLE_WEIGHTS), dump(8)).unwrap();
    fs::write(dir.join("optimizer.pt"), b"pickle, never opened").unwrap();
    trainer_state(&dir, step);
    dir
}

// ---------------------------------------------------------------- dumps

#[test]
fn a_dump_written_in_pieces_completes_after_stable_scans() {
    let run = tempfile::tempdir().unwrap();
    let path = run.path().join("acts-10.safetensors");
    let bytes = dump(64);
    let mut s = scanner(run.path(), Layout::Dumps);
    fs::write(&path, &bytes[..5]).unwrap();
    assert_eq!(scan(&mut s), vec![]);
    append(&path, &bytes[5..100]);
    assert_eq!(scan(&mut s), vec![]);
    append(&path, &bytes[100..]);
    assert_eq!(scan(&mut s), vec![], "first sighting of the full file");
    assert_eq!(scan(&mut s), vec![dump_candidate(10, &path)]);
    assert_eq!(scan(&mut s), vec![], "reported once");
    assert_eq!(scan(&mut s), vec![]);
}

#[test]
fn a_dump_renamed_into_place_is_complete_at_once() {
    let run = tempfile::tempdir().unwrap();
    let tmp = run.path().join(".tmp-acts-5.safetensors");
    let path = run.path().join("acts-5.safetensors");
    let mut s = scanner(run.path(), Layout::Dumps);
    fs::write(&tmp, dump(16)).unwrap();
    assert_eq!(scan(&mut s), vec![], "hidden files are ignored");
    assert_eq!(scan(&mut s), vec![]);
    fs::rename(&tmp, &path).unwrap();
    assert_eq!(
        scan_renamed(&mut s, &[&path]),
        vec![dump_candidate(5, &path)]
    );
    assert_eq!(scan(&mut s), vec![], "no Removed for the hidden temporary");
}

#[test]
fn a_renamed_dump_that_fails_the_length_check_is_not_complete() {
    let run = tempfile::tempdir().unwrap();
    let path = run.path().join("acts-5.safetensors");
    let bytes = dump(16);
    fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
    let mut s = scanner(run.path(), Layout::Dumps);
    assert_eq!(scan_renamed(&mut s, &[&path]), vec![]);
    let reason = invalid_reason(&scan(&mut s), &path);
    assert!(reason.contains("header claims"), "{reason}");
}

#[test]
fn a_truncated_dump_is_invalid_once_and_recovers_when_finished() {
    let run = tempfile::tempdir().unwrap();
    let path = run.path().join("acts-7.safetensors");
    let bytes = dump(250);
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let data_len = bytes.len() as u64 - 8 - header_len;
    fs::write(&path, &bytes[..bytes.len() - 200]).unwrap();
    let mut s = scanner(run.path(), Layout::Dumps);
    assert_eq!(scan(&mut s), vec![], "may still be growing");
    let reason = invalid_reason(&scan(&mut s), &path);
    assert!(
        reason.starts_with(&format!(
            "header claims {data_len} bytes of data, file has {}",
            data_len - 200
        )),
        "{reason}"
    );
    assert_eq!(scan(&mut s), vec![], "invalid reported once");
    assert_eq!(scan(&mut s), vec![]);
    // The writer was only slow: the finished file is a new version.
    append(&path, &bytes[bytes.len() - 200..]);
    assert_eq!(scan(&mut s), vec![]);
    assert_eq!(scan(&mut s), vec![dump_candidate(7, &path)]);
}

#[test]
fn a_deleted_dump_is_removed_once() {
    let run = tempfile::tempdir().unwrap();
    let done = run.path().join("acts-1.safetensors");
    let pending = run.path().join("acts-2.safetensors");
    fs::write(&done, dump(4)).unwrap();
    let mut s = scanner(run.path(), Layout::Dumps);
    scan(&mut s);
    assert_eq!(scan(&mut s), vec![dump_candidate(1, &done)]);
    fs::write(&pending, b"partial").unwrap();
    assert_eq!(scan(&mut s), vec![]);
    fs::remove_file(&done).unwrap();
    fs::remove_file(&pending).unwrap();
    assert_eq!(
        scan(&mut s),
        vec![
            ScanItem::Removed { path: done },
            ScanItem::Removed { path: pending }
        ]
    );
    assert_eq!(scan(&mut s), vec![]);
}

#[test]
fn a_rewritten_dump_is_complete_again() {
    let run = tempfile::tempdir().unwrap();
    let path = run.path().join("acts-3.safetensors");
    fs::write(&path, dump(4)).unwrap();
    let mut s = scanner(run.path(), Layout::Dumps);
    scan(&mut s);
    let first = scan(&mut s);
    assert_eq!(first, vec![dump_candidate(3, &path)]);
    // New content, new size.
    fs::write(&path, dump(40)).unwrap();
    assert_eq!(scan(&mut s), vec![]);
    let second = scan(&mut s);
    assert_eq!(second, vec![dump_candidate(3, &path)]);
    assert_ne!(first, second);
    // Same size, new mtime.
    let later = version_of(&path).mtime + Duration::from_secs(60);
    set_mtime(&path, later);
    assert_eq!(scan(&mut s), vec![]);
    let third = scan(&mut s);
    assert_eq!(third, vec![dump_candidate(3, &path)]);
    let ScanItem::Complete(c) = &third[0] else {
        unreachable!()
    };
    assert_eq!(c.mtime, later);
}

#[test]
fn dump_step_comes_from_metadata_else_the_name() {
    let run = tempfile::tempdir().unwrap();
    let both = run.path().join("acts-5.safetensors");
    let meta_only = run.path().join("final.safetensors");
    let name_only = run.path().join("acts-6.safetensors");
    let neither = run.path().join("acts.safetensors");
    let bad = run.path().join("acts-9.safetensors");
    fs::write(&both, safetensors_bytes(&[("step", "500")], 4)).unwrap();
    fs::write(&meta_only, safetensors_bytes(&[("step", "700")], 4)).unwrap();
    fs::write(&name_only, dump(4)).unwrap();
    fs::write(&neither, dump(4)).unwrap();
    fs::write(&bad, safetensors_bytes(&[("step", "ten")], 4)).unwrap();
    let mut s = scanner(run.path(), Layout::Dumps);
    assert_eq!(scan(&mut s), vec![]);
    let items = scan(&mut s);
    let invalid: Vec<(&Path, &str)> = items
        .iter()
        .filter_map(|i| match i {
            ScanItem::Invalid { path, reason } => Some((path.as_path(), reason.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(invalid.len(), 2, "{items:?}");
    assert_eq!(invalid[0].0, bad.as_path());
    assert!(invalid[0].1.contains("\"ten\""), "{}", invalid[0].1);
    assert_eq!(invalid[1].0, neither.as_path());
    assert!(invalid[1].1.starts_with("no step"), "{}", invalid[1].1);
    assert_eq!(
        items[2..],
        [
            dump_candidate(6, &name_only),
            dump_candidate(500, &both),
            dump_candidate(700, &meta_only)
        ]
    );
}

#[test]
fn complete_items_come_in_ascending_step_order() {
    let run = tempfile::tempdir().unwrap();
    // Lexicographic order would be 200, 30, 4.
    for step in [30, 200, 4] {
        fs::write(run.path().join(format!("acts-{step}.safetensors")), dump(2)).unwrap();
    }
    let mut s = scanner(run.path(), Layout::Dumps);
    scan(&mut s);
    assert_eq!(steps(&scan(&mut s)), vec![4, 30, 200]);

    let hf = tempfile::tempdir().unwrap();
    for step in [1000, 20, 300] {
        trainer_checkpoint(hf.path(), step);
    }
    let mut s = scanner(hf.path(), Layout::HfCheckpoints);
    assert_eq!(steps(&scan(&mut s)), vec![20, 300, 1000]);
}

#[test]
fn irrelevant_names_are_ignored() {
    let run = tempfile::tempdir().unwrap();
    fs::write(run.path().join("notes.txt"), b"x").unwrap();
    fs::write(run.path().join("acts-1.pt"), b"x").unwrap();
    fs::write(run.path().join(".safetensors"), b"x").unwrap();
    fs::create_dir(run.path().join("dir-3.safetensors")).unwrap();
    fs::create_dir(run.path().join("checkpoint-5")).unwrap();
    let mut s = scanner(run.path(), Layout::Dumps);
    for _ in 0..3 {
        assert_eq!(scan(&mut s), vec![]);
    }
    assert!(s.tracked.is_empty());
}

#[test]
fn a_missing_folder_is_flagged_and_may_come_back() {
    let parent = tempfile::tempdir().unwrap();
    let run = parent.path().join("run");
    let mut s = scanner(&run, Layout::Dumps);
    assert_eq!(scan(&mut s), vec![]);
    assert!(s.folder_missing());
    fs::create_dir(&run).unwrap();
    let path = run.join("acts-1.safetensors");
    fs::write(&path, dump(2)).unwrap();
    assert_eq!(scan(&mut s), vec![]);
    assert!(!s.folder_missing());
    assert_eq!(scan(&mut s), vec![dump_candidate(1, &path)]);
    // Gone (an unmounted share) and back unchanged: nothing to report.
    let away = parent.path().join("away");
    fs::rename(&run, &away).unwrap();
    assert_eq!(scan(&mut s), vec![]);
    assert!(s.folder_missing());
    fs::rename(&away, &run).unwrap();
    assert_eq!(scan(&mut s), vec![]);
    assert!(!s.folder_missing());
}

#[test]
fn a_file_as_folder_is_an_error_naming_it() {
    let parent = tempfile::tempdir().unwrap();
    let file = parent.path().join("run");
    fs::write(&file, b"x").unwrap();
    let mut s = scanner(&file, Layout::Dumps);
    let err = s.scan(&HashSet::new()).unwrap_err();
    assert!(matches!(err, WatchError::NotADirectory { .. }));
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn symlinks_are_followed_only_when_asked() {
    use std::os::unix::fs::symlink;
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("real-8.safetensors");
    fs::write(&target, dump(4)).unwrap();
    let run = tempfile::tempdir().unwrap();
    let link = run.path().join("acts-8.safetensors");
    symlink(&target, &link).unwrap();

    let mut s = scanner(run.path(), Layout::Dumps);
    assert_eq!(
        scan(&mut s),
        vec![ScanItem::Invalid {
            path: link.clone(),
            reason: SYMLINK_REASON.to_string()
        }]
    );
    assert_eq!(scan(&mut s), vec![], "reported once");
    let mut follow = Scanner::new(run.path().to_path_buf(), Layout::Dumps, STABLE, true);
    scan(&mut follow);
    assert_eq!(scan(&mut follow), vec![dump_candidate(8, &link)]);

    // A symlinked checkpoint directory, and a symlinked weight file.
    let real_ckpt = trainer_checkpoint(outside.path(), 40);
    let hf = tempfile::tempdir().unwrap();
    let linked_dir = hf.path().join("checkpoint-40");
    symlink(&real_ckpt, &linked_dir).unwrap();
    let inner = hf.path().join("checkpoint-50");
    fs::create_dir(&inner).unwrap();
    symlink(real_ckpt.join(SINGLE_WEIGHTS), inner.join(SINGLE_WEIGHTS)).unwrap();
    trainer_state(&inner, 50);
    let mut s = scanner(hf.path(), Layout::HfCheckpoints);
    let items = scan(&mut s);
    assert_eq!(
        items,
        vec![
            ScanItem::Invalid {
                path: linked_dir.clone(),
                reason: SYMLINK_REASON.to_string()
            },
            ScanItem::Invalid {
                path: inner.clone(),
                reason: format!("{SINGLE_WEIGHTS}: {SYMLINK_REASON}")
            }
        ]
    );
    assert_eq!(scan(&mut s), vec![]);
    let mut follow = Scanner::new(hf.path().to_path_buf(), Layout::HfCheckpoints, STABLE, true);
    assert_eq!(
        scan(&mut follow),
        vec![
            dir_candidate(40, &linked_dir, &[SINGLE_WEIGHTS]),
            dir_candidate(50, &inner, &[SINGLE_WEIGHTS])
        ]
    );
}

// ---------------------------------------------------------- checkpoints

#[test]
fn a_trainer_checkpoint_is_complete_only_after_trainer_state() {
    let run = tempfile::tempdir().unwrap();
    let dir = run.path().join("checkpoint-100");
    let mut s = scanner(run.path(), Layout::HfCheckpoints);
    fs::create_dir(&dir).unwrap();
    assert_eq!(scan(&mut s), vec![]);
    fs::write(dir.join("config.json"), "{}").unwrap();
    assert_eq!(scan(&mut s), vec![]);
    let tmp = dir.join(".tmp8f3k2");
    let weights = dump(32);
    fs::write(&tmp, &weights[..weights.len() / 2]).unwrap();
    assert_eq!(scan(&mut s), vec![]);
    append(&tmp, &weights[weights.len() / 2..]);
    assert_eq!(scan(&mut s), vec![]);
    fs::rename(&tmp, dir.join(SINGLE_WEIGHTS)).unwrap();
    assert_eq!(scan(&mut s), vec![]);
    fs::write(dir.join("training_args.bin"), b"pickle").unwrap();
    assert_eq!(scan(&mut s), vec![]);
    fs::write(dir.join("optimizer.pt"), b"pickle, large").unwrap();
    // The weights are stable by now, but a Trainer is still writing.
    for _ in 0..3 {
        assert_eq!(scan(&mut s), vec![]);
    }
    fs::write(dir.join("rng_state.pth"), b"pickle").unwrap();
    assert_eq!(scan(&mut s), vec![]);
    trainer_state(&dir, 100);
    assert_eq!(
        scan(&mut s),
        vec![dir_candidate(100, &dir, &[SINGLE_WEIGHTS])]
    );
    assert_eq!(scan(&mut s), vec![]);
    // save_total_limit deletes old checkpoints whole.
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(scan(&mut s), vec![ScanItem::Removed { path: dir }]);
}

#[test]
fn a_checkpoint_from_another_writer_completes_when_stable_or_renamed() {
    let run = tempfile::tempdir().unwrap();
    let dir = run.path().join("checkpoint-7");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join(SINGLE_WEIGHTS), dump(8)).unwrap();
    let mut s = scanner(run.path(), Layout::HfCheckpoints);
    assert_eq!(scan(&mut s), vec![]);
    assert_eq!(
        scan(&mut s),
        vec![dir_candidate(7, &dir, &[SINGLE_WEIGHTS])]
    );

    let other = run.path().join("checkpoint-8");
    fs::create_dir(&other).unwrap();
    fs::write(other.join(SINGLE_WEIGHTS), dump(8)).unwrap();
    assert_eq!(
        scan_renamed(&mut s, &[&other.join(SINGLE_WEIGHTS)]),
        vec![dir_candidate(8, &other, &[SINGLE_WEIGHTS])]
    );
}

#[test]
fn the_incomplete_marker_blocks() {
    let run = tempfile::tempdir().unwrap();
    let dir = trainer_checkpoint(run.path(), 5);
    let marker = dir.join(INCOMPLETE_MARKER);
    fs::write(&marker, b"").unwrap();
    let mut s = scanner(run.path(), Layout::HfCheckpoints);
    for _ in 0..4 {
        assert_eq!(scan(&mut s), vec![]);
    }
    fs::remove_file(&marker).unwrap();
    assert_eq!(
        scan(&mut s),
        vec![dir_candidate(5, &dir, &[SINGLE_WEIGHTS])]
    );
}

fn write_index(dir: &Path, shards: &[&str]) {
    let map: Vec<String> = shards
        .iter()
        .enumerate()
        .map(|(i, s)| format!(r#""layer.{i}.weight": "{s}""#))
        .collect();
    fs::write(
        dir.join(SHARD_INDEX),
        format!(
            r#"{{"metadata": {{"total_size": 1}}, "weight_map": {{{}}}}}"#,
            map.join(", ")
        ),
    )
    .unwrap();
}

#[test]
fn a_sharded_checkpoint_needs_every_listed_shard() {
    let run = tempfile::tempdir().unwrap();
    let shards = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    let dir = run.path().join("checkpoint-20");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join(shards[0]), dump(16)).unwrap();
    write_index(&dir, &shards);
    trainer_state(&dir, 20);
    let mut s = scanner(run.path(), Layout::HfCheckpoints);
    assert_eq!(scan(&mut s), vec![], "second shard missing, index fresh");
    let reason = invalid_reason(&scan(&mut s), &dir);
    assert!(
        reason.contains(&format!("{SHARD_INDEX} lists {}", shards[1])),
        "{reason}"
    );
    // The shard arrives truncated: pending, then invalid naming the shard.
    let full = dump(24);
    fs::write(dir.join(shards[1]), &full[..full.len() - 8]).unwrap();
    assert_eq!(scan(&mut s), vec![]);
    let reason = invalid_reason(&scan(&mut s), &dir);
    assert!(
        reason.starts_with(&format!("{}: header claims", shards[1])),
        "{reason}"
    );
    append(&dir.join(shards[1]), &full[full.len() - 8..]);
    // trainer_state.json vouches: one scan suffices once the check passes.
    assert_eq!(scan(&mut s), vec![dir_candidate(20, &dir, &shards)]);
    assert_eq!(scan(&mut s), vec![]);
}

#[test]
fn tmp_checkpoints_and_the_final_model_are_ignored() {
    let run = tempfile::tempdir().unwrap();
    let tmp = trainer_checkpoint(run.path(), 30);
    let tmp_name = run.path().join("tmp-checkpoint-30");
    fs::rename(&tmp, &tmp_name).unwrap();
    // The final model in the run folder itself.
    fs::write(run.path().join(SINGLE_WEIGHTS), dump(8)).unwrap();
    trainer_state(run.path(), 30);
    fs::write(run.path().join("all_results.json"), "{}").unwrap();
    let mut s = scanner(run.path(), Layout::HfCheckpoints);
    for _ in 0..3 {
        assert_eq!(scan(&mut s), vec![]);
    }
    // The Trainer renames the finished temporary into place.
    let dir = run.path().join("checkpoint-30");
    fs::rename(&tmp_name, &dir).unwrap();
    assert_eq!(
        scan_renamed(&mut s, &[&dir]),
        vec![dir_candidate(30, &dir, &[SINGLE_WEIGHTS])]
    );
}

#[test]
fn a_global_step_mismatch_is_invalid_once() {
    let run = tempfile::tempdir().unwrap();
    let dir = trainer_checkpoint(run.path(), 60);
    trainer_state(&dir, 59);
    let mut s = scanner(run.path(), Layout::HfCheckpoints);
    let reason = invalid_reason(&scan(&mut s), &dir);
    assert!(
        reason.contains("global_step 59") && reason.contains("step 60"),
        "{reason}"
    );
    assert_eq!(scan(&mut s), vec![]);
    // Fixed: a new version of trainer_state.json, now complete.
    trainer_state(&dir, 60);
    set_mtime(
        &dir.join(TRAINER_STATE),
        SystemTime::now() + Duration::from_secs(5),
    );
    assert_eq!(
        scan(&mut s),
        vec![dir_candidate(60, &dir, &[SINGLE_WEIGHTS])]
    );
}

#[test]
fn a_half_written_trainer_state_waits_then_is_invalid_when_stable() {
    let run = tempfile::tempdir().unwrap();
    let dir = trainer_checkpoint(run.path(), 9);
    fs::write(dir.join(TRAINER_STATE), br#"{"global_step": 9, "log_hist"#).unwrap();
    let mut s = scanner(run.path(), Layout::HfCheckpoints);
    assert_eq!(scan(&mut s), vec![]);
    let reason = invalid_reason(&scan(&mut s), &dir);
    assert!(reason.starts_with(TRAINER_STATE), "{reason}");
}

#[test]
fn pickle_only_checkpoints_are_invalid() {
    let run = tempfile::tempdir().unwrap();
    let dir = run.path().join("checkpoint-3");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("pytorch_model.bin"), b"pickle, never opened").unwrap();
    let mut s = scanner(run.path(), Layout::HfCheckpoints);
    assert_eq!(scan(&mut s), vec![], "no trainer state: could be anything");
    assert_eq!(scan(&mut s), vec![]);
    trainer_state(&dir, 3);
    assert_eq!(scan(&mut s), vec![]);
    let reason = invalid_reason(&scan(&mut s), &dir);
    assert!(reason.contains("pickle"), "{reason}");
}

#[test]
fn many_irrelevant_files_do_not_hide_candidates() {
    let run = tempfile::tempdir().unwrap();
    for i in 0..2000 {
        fs::write(run.path().join(format!("events-{i}.log")), b"").unwrap();
    }
    fs::write(run.path().join("acts-2.safetensors"), dump(2)).unwrap();
    let mut s = scanner(run.path(), Layout::Dumps);
    scan(&mut s);
    assert_eq!(steps(&scan(&mut s)), vec![2]);
    assert_eq!(s.tracked.len(), 1);
}
