//! Finding complete checkpoints in a run folder (DESIGN §3.1, §3.2).
//!
//! A [`Scanner`] lists the run folder on every call to [`Scanner::scan`] and
//! remembers, per candidate path, what it saw last time: the size and mtime
//! of every file that matters, how many consecutive scans they stayed
//! unchanged, the cached result of the cheap content checks for that version
//! (see `header`), and what it already reported. From that it says, once per
//! version, when a checkpoint became complete ([`ScanItem::Complete`]), when
//! it is broken for good ([`ScanItem::Invalid`]), and when it disappeared
//! ([`ScanItem::Removed`]). Two layouts ([`Layout`]): activation dumps
//! (`*.safetensors` directly in the folder) and HuggingFace checkpoint
//! directories (`checkpoint-<step>/`). [`watch_folder`] turns filesystem
//! events (notify) into [`Hint`]s that tell the daemon to scan early; the
//! periodic scan stays the source of truth, because network file systems
//! deliver no events and event queues overflow.
//!
//! Completeness. A dump is complete when the safetensors length check passes
//! (8 + header length + end of the data = file size) and its size and mtime
//! stayed unchanged for `stable_scans` scans, or it was renamed into place;
//! its step is metadata `step`, else the name's `-<step>` suffix, else it is
//! invalid ("no step"). A `checkpoint-<N>/` directory is complete when it has
//! no `checkpoint-is-incomplete.txt`, every weight file (`model.safetensors`,
//! else every shard `model.safetensors.index.json` lists) passes the length
//! check, and either `trainer_state.json` parses with `global_step` = N (a
//! Trainer writes it last, so one scan suffices) or, with no
//! `trainer_state.json` and none of the files only a Trainer writes
//! (`training_args.bin`, `optimizer.pt`, `scheduler.pt`, `rng_state.pth`:
//! then a Trainer is still at work), the weight files are stable or were
//! renamed into place. A check that keeps failing on files that stopped
//! changing makes the candidate invalid; so does a `global_step` other than
//! N, and a symlink when symlinks are not followed. A dump, or a
//! checkpoint's `trainer_state.json` or weight file, that exists but cannot
//! be opened (permission denied) is [`ScanItem::Unreadable`], not invalid: nothing is cached about it and every scan tries again, since a
//! `chmod` that fixes it changes neither size nor mtime.
//!
//! What this module deliberately does not do: it never opens pickle files
//! (`*.bin`, `*.pt`, `*.pth`: only their existence is tested), never reads
//! tensor data (only safetensors headers and two small JSON files), does not
//! decide what to analyse or in which order beyond sorting by step, does not
//! log (except the hint callback's warning on watcher errors), and keeps no
//! state on
//! disk (a restarted daemon rescans; the store knows what was analysed). A
//! scan costs one directory listing plus one `stat` per candidate (dump file
//! or checkpoint's few known files); names that cannot be candidates are never
//! stat'ed, and headers are re-read only when a file's size or mtime changed.

pub mod header;
mod hints;

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub use hints::{Hint, Hints, watch_folder};
use source::st::{checkpoint_step, step_from_name};

use header::SafetensorsInfo;

/// Marker a Trainer leaves in a checkpoint it has not finished writing.
const INCOMPLETE_MARKER: &str = "checkpoint-is-incomplete.txt";
/// The Trainer's state file, written last.
const TRAINER_STATE: &str = "trainer_state.json";
/// Weights of an unsharded model.
const SINGLE_WEIGHTS: &str = "model.safetensors";
/// Index of a sharded model's weight files.
const SHARD_INDEX: &str = "model.safetensors.index.json";
/// Files a Trainer writes into a checkpoint after the weights and before
/// `trainer_state.json` (DESIGN §3.2): their presence without
/// `trainer_state.json` means a Trainer is still writing.
const TRAINER_SIDE_FILES: [&str; 4] = [
    "training_args.bin",
    "optimizer.pt",
    "scheduler.pt",
    "rng_state.pth",
];
/// Reason given for a symlinked candidate when symlinks are not followed.
const SYMLINK_REASON: &str = "symlink, not followed";

/// How checkpoints appear in the run folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Activation dump files `*.safetensors` directly in the folder (§3.1).
    Dumps,
    /// HuggingFace `checkpoint-<step>/` directories (§3.2).
    HfCheckpoints,
}

/// What went wrong watching or scanning a run folder. Each message names the
/// folder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The run folder exists but cannot be listed.
    #[error("cannot list run folder {path}: {source}")]
    ReadFolder {
        /// The run folder.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The run folder's path names something that is not a directory.
    #[error("run folder {path} is not a directory")]
    NotADirectory {
        /// The run folder.
        path: PathBuf,
    },
    /// The filesystem-event watcher could not be created or attached (no
    /// inotify instances or watches left, missing folder, ...). The daemon
    /// then relies on periodic scans alone.
    #[error("cannot watch {path} for filesystem events: {source}")]
    Watch {
        /// The run folder.
        path: PathBuf,
        /// The underlying notify error.
        source: notify::Error,
    },
}

/// A checkpoint that is complete: safe to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Training step: from the dump's metadata or name, or the
    /// `checkpoint-<step>` directory name.
    pub step: u64,
    /// The dump file, or the checkpoint directory.
    pub path: PathBuf,
    /// Total bytes of the weight files (the dump file itself for dumps).
    pub size: u64,
    /// Latest modification time among those files.
    pub mtime: SystemTime,
}

/// One thing a scan found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanItem {
    /// A checkpoint became complete (reported again when its weight files
    /// change later: that is a new version).
    Complete(Candidate),
    /// A candidate that will not become complete as it is (reported once per
    /// version): no step, a stable but truncated file, a `global_step` that
    /// contradicts the directory name, a symlink that is not followed, ...
    Invalid {
        /// The dump file or checkpoint directory.
        path: PathBuf,
        /// What is wrong, in words.
        reason: String,
    },
    /// A dump file, or a checkpoint directory one of whose files, exists but
    /// cannot be opened now (permission denied,
    /// an I/O error): reported once per reason and version, once it is
    /// settled. Unlike [`ScanItem::Invalid`] it is re-checked on every scan,
    /// because fixing it (`chmod`) changes neither size nor mtime: once it
    /// opens, it is judged as usual and reported [`ScanItem::Complete`].
    Unreadable {
        /// The dump file.
        path: PathBuf,
        /// The error, in words.
        reason: String,
    },
    /// A candidate seen by an earlier scan (pending, complete or invalid) is
    /// gone.
    Removed {
        /// The dump file or checkpoint directory.
        path: PathBuf,
    },
}

/// Size and modification time of a file: what "unchanged" compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    size: u64,
    mtime: SystemTime,
}

/// One file as seen over consecutive scans, with the cached result of its
/// content check for the current version.
#[derive(Debug)]
struct Observed<T> {
    version: Version,
    /// Consecutive scans (this one included) that saw `version`.
    unchanged: u32,
    /// A filesystem event said this version was renamed into place.
    renamed: bool,
    /// Content check of `version`, computed at most once.
    parsed: Option<T>,
}

impl<T> Observed<T> {
    fn new(version: Version, renamed: bool) -> Self {
        Observed {
            version,
            unchanged: 1,
            renamed,
            parsed: None,
        }
    }

    /// Records this scan's sighting.
    fn see(&mut self, version: Version, renamed_now: bool) {
        if self.version == version {
            self.unchanged = self.unchanged.saturating_add(1);
            self.renamed |= renamed_now;
        } else {
            *self = Observed::new(version, renamed_now);
        }
    }

    /// Unchanged for `stable_scans` scans: enough to call a broken file
    /// broken for good.
    fn stable(&self, stable_scans: u32) -> bool {
        self.unchanged >= stable_scans
    }

    /// Stable, or renamed into place (a rename is atomic): enough to call a
    /// file that passes its check finished.
    fn settled(&self, stable_scans: u32) -> bool {
        self.renamed || self.stable(stable_scans)
    }

    /// The cached content check, computing it on first use.
    fn parsed_with(&mut self, check: impl FnOnce() -> T) -> &T {
        self.parsed.get_or_insert_with(check)
    }
}

/// Records a sighting in an optional slot and returns the observation.
fn observe<T>(slot: &mut Option<Observed<T>>, version: Version, renamed: bool) -> &mut Observed<T> {
    match slot {
        Some(seen) => {
            seen.see(version, renamed);
            seen
        }
        None => slot.insert(Observed::new(version, renamed)),
    }
}

/// Result of stat'ing one file.
enum Stat {
    Absent,
    File(Version),
    /// Present but unusable: a symlink not followed, not a regular file, an
    /// I/O error other than "not found".
    Problem(String),
}

fn stat_file(path: &Path, follow_symlinks: bool) -> Stat {
    let meta = if follow_symlinks {
        fs::metadata(path)
    } else {
        fs::symlink_metadata(path)
    };
    match meta {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Stat::Absent,
        Err(e) => Stat::Problem(format!("cannot stat: {e}")),
        Ok(m) if m.file_type().is_symlink() => Stat::Problem(SYMLINK_REASON.to_string()),
        Ok(m) if !m.is_file() => Stat::Problem("not a regular file".to_string()),
        Ok(m) => Stat::File(Version {
            size: m.len(),
            mtime: m.modified().unwrap_or(UNIX_EPOCH),
        }),
    }
}

/// What a name in the run folder can be, decided from the name alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dump,
    Checkpoint(u64),
}

/// A visible `*.safetensors` name (hidden files are writers' temporaries).
fn is_dump_name(name: &[u8]) -> bool {
    !name.starts_with(b".") && name.ends_with(b".safetensors") && name.len() > 12
}

/// The step of a `checkpoint-<digits>` name (ASCII, so a name that is not
/// UTF-8 has none).
fn checkpoint_dir_step(name: &[u8]) -> Option<u64> {
    std::str::from_utf8(name).ok().and_then(checkpoint_step)
}

fn classify(layout: Layout, name: &OsStr) -> Option<Kind> {
    let bytes = name.as_encoded_bytes();
    match layout {
        Layout::Dumps => is_dump_name(bytes).then_some(Kind::Dump),
        Layout::HfCheckpoints => checkpoint_dir_step(bytes).map(Kind::Checkpoint),
    }
}

/// What was last reported for a path; a new report is made only when this
/// changes. A completed checkpoint is keyed by its weight files' versions, an
/// invalid one by the reason and every file it was judged on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reported {
    Complete(Vec<(String, Version)>),
    Invalid(String, Vec<(String, Version)>),
}

/// The verdict of one scan on one candidate.
enum Verdict {
    /// Not (yet) complete; keep watching.
    Pending,
    /// The path is gone (vanished between listing and stat).
    Gone,
    Complete(Candidate, Vec<(String, Version)>),
    Invalid(String, Vec<(String, Version)>),
    /// Present and settled but cannot be opened; not cached.
    Unreadable(String, Vec<(String, Version)>),
}

/// Per-checkpoint-directory observations.
#[derive(Debug, Default)]
struct CheckpointState {
    trainer: Option<Observed<Result<u64, String>>>,
    index: Option<Observed<Result<Vec<String>, String>>>,
    weights: BTreeMap<String, Observed<Result<SafetensorsInfo, String>>>,
}

#[derive(Debug)]
enum EntryState {
    Dump(Option<Observed<Result<SafetensorsInfo, String>>>),
    Checkpoint(CheckpointState),
    Symlink,
}

/// Everything remembered about one candidate path.
#[derive(Debug)]
struct Tracked {
    /// Number of the last scan that saw the path.
    seen: u64,
    reported: Option<Reported>,
    state: EntryState,
}

/// Scans a run folder and reports checkpoints as they become complete. See
/// the module documentation for the rules.
#[derive(Debug)]
pub struct Scanner {
    folder: PathBuf,
    layout: Layout,
    stable_scans: u32,
    follow_symlinks: bool,
    folder_missing: bool,
    /// Number of the current scan (starts at 1).
    generation: u64,
    tracked: HashMap<PathBuf, Tracked>,
}

impl Scanner {
    /// A scanner for `folder`. A file must keep the same size and mtime for
    /// `stable_scans` consecutive scans (the first sighting counts as one; 0
    /// is taken as 1) before it counts as finished, unless it was renamed
    /// into place or, for a Trainer checkpoint, `trainer_state.json` vouches
    /// for it. Symlinked candidates and files are followed only with
    /// `follow_symlinks`.
    pub fn new(
        folder: PathBuf,
        layout: Layout,
        stable_scans: u32,
        follow_symlinks: bool,
    ) -> Scanner {
        Scanner {
            folder,
            layout,
            stable_scans: stable_scans.max(1),
            follow_symlinks,
            folder_missing: false,
            generation: 0,
            tracked: HashMap::new(),
        }
    }

    /// The run folder this scanner lists.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// One scan. `renamed`: paths a filesystem event reported as renamed or
    /// moved into place (a rename is atomic, so such a file is complete at
    /// once if its length check passes); they are compared with
    /// `folder.join(name)` as [`watch_folder`] reports them.
    ///
    /// Returns [`ScanItem::Removed`] items first, then [`ScanItem::Invalid`]
    /// (each sorted by path), then [`ScanItem::Complete`] sorted by ascending
    /// step (ties by path). Each checkpoint is reported complete once per
    /// version, invalid ones once per version.
    ///
    /// A missing folder is not an error: the scan returns nothing, sets
    /// [`Scanner::folder_missing`] and keeps what it knew, so a folder that
    /// comes back unchanged (a remounted network share) reports nothing new.
    /// Fails only when the folder exists but cannot be listed.
    pub fn scan(&mut self, renamed: &HashSet<PathBuf>) -> Result<Vec<ScanItem>, WatchError> {
        let read_err = |source: io::Error| WatchError::ReadFolder {
            path: self.folder.clone(),
            source,
        };
        let entries = match fs::read_dir(&self.folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.folder_missing = true;
                return Ok(Vec::new());
            }
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(WatchError::NotADirectory {
                    path: self.folder.clone(),
                });
            }
            Err(e) => return Err(read_err(e)),
        };
        let mut listed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(read_err)?;
            let Some(kind) = classify(self.layout, &entry.file_name()) else {
                continue;
            };
            // `file_type` does not follow symlinks and, on Linux, needs no
            // stat; an error means the entry vanished meanwhile.
            if let Ok(file_type) = entry.file_type() {
                listed.push((entry.path(), kind, file_type));
            }
        }
        self.folder_missing = false;
        self.generation += 1;

        let mut invalid = Vec::new();
        let mut complete = Vec::new();
        for (path, kind, file_type) in listed {
            let verdict = self.judge(&path, kind, file_type, renamed);
            let Some(tracked) = self.tracked.get_mut(&path) else {
                continue;
            };
            let report = match verdict {
                Verdict::Pending | Verdict::Gone => continue,
                Verdict::Complete(candidate, key) => {
                    (Reported::Complete(key), ScanItem::Complete(candidate))
                }
                Verdict::Invalid(reason, key) => (
                    Reported::Invalid(reason.clone(), key),
                    ScanItem::Invalid { path, reason },
                ),
                Verdict::Unreadable(reason, key) => (
                    Reported::Invalid(reason.clone(), key),
                    ScanItem::Unreadable { path, reason },
                ),
            };
            if tracked.reported.as_ref() != Some(&report.0) {
                tracked.reported = Some(report.0);
                match report.1 {
                    item @ ScanItem::Complete(_) => complete.push(item),
                    item => invalid.push(item),
                }
            }
        }

        let generation = self.generation;
        let mut removed = Vec::new();
        self.tracked.retain(|path, tracked| {
            let keep = tracked.seen == generation;
            // `seen == 0`: inserted this scan but gone before it was judged.
            if !keep && tracked.seen > 0 {
                removed.push(ScanItem::Removed { path: path.clone() });
            }
            keep
        });
        removed.sort_by(|a, b| item_path(a).cmp(item_path(b)));
        invalid.sort_by(|a, b| item_path(a).cmp(item_path(b)));
        complete.sort_by(|a, b| match (a, b) {
            (ScanItem::Complete(a), ScanItem::Complete(b)) => {
                (a.step, &a.path).cmp(&(b.step, &b.path))
            }
            _ => std::cmp::Ordering::Equal,
        });
        removed.extend(invalid);
        removed.extend(complete);
        Ok(removed)
    }

    /// Whether the last scan found the run folder missing.
    pub fn folder_missing(&self) -> bool {
        self.folder_missing
    }

    /// Judges one listed candidate, updating its tracked state (and marking
    /// it seen unless it is gone).
    fn judge(
        &mut self,
        path: &Path,
        kind: Kind,
        file_type: fs::FileType,
        renamed: &HashSet<PathBuf>,
    ) -> Verdict {
        let follow = self.follow_symlinks;
        let stable = self.stable_scans;
        // What the entry is, following a symlink only when allowed.
        let is_symlink = file_type.is_symlink();
        let wanted = match kind {
            Kind::Dump => EntryKind::Dump,
            Kind::Checkpoint(_) => EntryKind::Checkpoint,
        };
        let actual = if is_symlink && !follow {
            EntryKind::Symlink
        } else if is_symlink {
            match fs::metadata(path) {
                Ok(m) if m.is_dir() => EntryKind::Checkpoint,
                Ok(_) => EntryKind::Dump,
                Err(_) => return Verdict::Gone,
            }
        } else if file_type.is_dir() {
            EntryKind::Checkpoint
        } else {
            EntryKind::Dump
        };
        if actual != EntryKind::Symlink && actual != wanted {
            // A directory named like a dump, a file named like a checkpoint.
            return Verdict::Gone;
        }
        let tracked = self
            .tracked
            .entry(path.to_path_buf())
            .or_insert_with(|| Tracked {
                seen: 0,
                reported: None,
                state: EntryState::Symlink,
            });
        let state_matches = matches!(
            (&tracked.state, actual),
            (EntryState::Dump(_), EntryKind::Dump)
                | (EntryState::Checkpoint(_), EntryKind::Checkpoint)
                | (EntryState::Symlink, EntryKind::Symlink)
        );
        if !state_matches {
            tracked.state = match actual {
                EntryKind::Dump => EntryState::Dump(None),
                EntryKind::Checkpoint => EntryState::Checkpoint(CheckpointState::default()),
                EntryKind::Symlink => EntryState::Symlink,
            };
        }
        let verdict = match (&mut tracked.state, kind) {
            (EntryState::Symlink, _) => Verdict::Invalid(SYMLINK_REASON.to_string(), Vec::new()),
            (EntryState::Dump(slot), _) => {
                judge_dump(slot, path, renamed.contains(path), stable, follow)
            }
            (EntryState::Checkpoint(state), Kind::Checkpoint(step)) => {
                judge_checkpoint(state, path, step, renamed, stable, follow)
            }
            (EntryState::Checkpoint(_), Kind::Dump) => Verdict::Gone,
        };
        if !matches!(verdict, Verdict::Gone) {
            tracked.seen = self.generation;
        }
        verdict
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    Dump,
    Checkpoint,
    Symlink,
}

fn item_path(item: &ScanItem) -> &Path {
    match item {
        ScanItem::Complete(c) => &c.path,
        ScanItem::Invalid { path, .. }
        | ScanItem::Unreadable { path, .. }
        | ScanItem::Removed { path } => path,
    }
}

/// Why `path`, present and settled, cannot be opened (permission denied,
/// …): `None` when it opens or is gone. Only asked before a file's content
/// was first read, so a settled verdict costs no extra `open`.
fn unopenable(path: &Path) -> Option<String> {
    match fs::File::open(path) {
        Ok(_) => None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => Some(format!("cannot open: {e}")),
    }
}

/// The dump rule: length check passes and the file is settled (stable for
/// `stable` scans or renamed into place); a failing check that stays stable
/// is invalid; a complete file needs a step.
fn judge_dump(
    slot: &mut Option<Observed<Result<SafetensorsInfo, String>>>,
    path: &Path,
    renamed_now: bool,
    stable: u32,
    follow: bool,
) -> Verdict {
    let version = match stat_file(path, follow) {
        Stat::Absent => return Verdict::Gone,
        Stat::Problem(reason) => return Verdict::Invalid(reason, Vec::new()),
        Stat::File(version) => version,
    };
    let key = vec![(String::new(), version)];
    let seen = observe(slot, version, renamed_now);
    let settled = seen.settled(stable);
    let is_stable = seen.stable(stable);
    // A file we may not open (mode 000, another user's): not a verdict on
    // its content, so nothing is cached and the next scan tries again.
    if seen.parsed.is_none()
        && let Err(e) = fs::File::open(path)
    {
        return match e.kind() {
            io::ErrorKind::NotFound => Verdict::Gone,
            _ if settled => Verdict::Unreadable(format!("cannot open: {e}"), key),
            _ => Verdict::Pending,
        };
    }
    match seen.parsed_with(|| header::check_safetensors(path, version.size)) {
        Err(reason) if is_stable => Verdict::Invalid(reason.clone(), key),
        Err(_) => Verdict::Pending,
        Ok(_) if !settled => Verdict::Pending,
        Ok(info) => {
            let step = match &info.step {
                Some(Ok(step)) => *step,
                Some(Err(reason)) => return Verdict::Invalid(reason.clone(), key),
                None => match path
                    .file_stem()
                    .and_then(OsStr::to_str)
                    .and_then(step_from_name)
                {
                    Some(step) => step,
                    None => {
                        return Verdict::Invalid(
                            "no step: no metadata 'step' and the file name does not end in \
                             '-<step>.safetensors'"
                                .to_string(),
                            key,
                        );
                    }
                },
            };
            let candidate = Candidate {
                step,
                path: path.to_path_buf(),
                size: version.size,
                mtime: version.mtime,
            };
            Verdict::Complete(candidate, key)
        }
    }
}

/// Whether `dir` holds files only a Trainer writes (after the weights, before
/// `trainer_state.json`). They are only tested for existence, never opened.
fn trainer_side_files(dir: &Path) -> bool {
    TRAINER_SIDE_FILES
        .iter()
        .any(|name| match fs::symlink_metadata(dir.join(name)) {
            Ok(_) => true,
            Err(e) => e.kind() != io::ErrorKind::NotFound,
        })
}

/// State of `trainer_state.json` in one scan.
enum TrainerView {
    Absent,
    Valid { global_step: u64, stable: bool },
    Broken { reason: String, stable: bool },
}

/// The HuggingFace checkpoint rule (DESIGN §3.2).
fn judge_checkpoint(
    state: &mut CheckpointState,
    dir: &Path,
    step: u64,
    renamed: &HashSet<PathBuf>,
    stable: u32,
    follow: bool,
) -> Verdict {
    let dir_renamed = renamed.contains(dir);
    let renamed_now = |path: &Path| dir_renamed || renamed.contains(path);
    // Every file the verdict rests on, for the Invalid key.
    let mut key: Vec<(String, Version)> = Vec::new();
    // The first file that is present but unusable (symlink, not a file, I/O).
    let mut problem: Option<String> = None;
    let mut note_problem = |name: &str, reason: String| {
        problem.get_or_insert_with(|| format!("{name}: {reason}"));
    };
    // The first settled file that cannot be opened (permission denied): not
    // a verdict on the content, so nothing is parsed or cached for it and the
    // next scan asks again (a `chmod` changes neither size nor mtime).
    // With whether that file is settled (else the verdict is pending).
    let mut unreadable: Option<(String, bool)> = None;

    let marker = match fs::symlink_metadata(dir.join(INCOMPLETE_MARKER)) {
        Ok(_) => true,
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    };

    let trainer_path = dir.join(TRAINER_STATE);
    let trainer = match stat_file(&trainer_path, follow) {
        Stat::Absent => {
            state.trainer = None;
            TrainerView::Absent
        }
        Stat::Problem(reason) => {
            state.trainer = None;
            note_problem(TRAINER_STATE, reason);
            TrainerView::Absent
        }
        Stat::File(version) => {
            key.push((TRAINER_STATE.to_string(), version));
            let seen = observe(&mut state.trainer, version, renamed_now(&trainer_path));
            let is_stable = seen.stable(stable);
            let cannot = if seen.parsed.is_none() {
                unopenable(&trainer_path)
            } else {
                None
            };
            if let Some(reason) = cannot {
                let settled = seen.settled(stable);
                unreadable.get_or_insert_with(|| (format!("{TRAINER_STATE}: {reason}"), settled));
                TrainerView::Absent
            } else {
                match seen.parsed_with(|| header::trainer_global_step(&trainer_path, version.size))
                {
                    Ok(global_step) => TrainerView::Valid {
                        global_step: *global_step,
                        stable: is_stable,
                    },
                    Err(reason) => TrainerView::Broken {
                        reason: reason.clone(),
                        stable: is_stable,
                    },
                }
            }
        }
    };

    // The weight files: model.safetensors (preferred, as transformers loads
    // it first), else the shards the index lists.
    let mut weights: Vec<(String, Version)> = Vec::new();
    // The index's check result and whether the index is settled.
    let mut index_view: Option<(Result<(), String>, bool)> = None;
    let mut missing_shard: Option<String> = None;
    match stat_file(&dir.join(SINGLE_WEIGHTS), follow) {
        Stat::File(version) => {
            state.index = None;
            weights.push((SINGLE_WEIGHTS.to_string(), version));
        }
        Stat::Problem(reason) => {
            state.index = None;
            note_problem(SINGLE_WEIGHTS, reason);
        }
        Stat::Absent => {
            let index_path = dir.join(SHARD_INDEX);
            match stat_file(&index_path, follow) {
                Stat::Absent => state.index = None,
                Stat::Problem(reason) => {
                    state.index = None;
                    note_problem(SHARD_INDEX, reason);
                }
                Stat::File(version) => {
                    key.push((SHARD_INDEX.to_string(), version));
                    let seen = observe(&mut state.index, version, renamed_now(&index_path));
                    let settled = seen.settled(stable);
                    let is_stable = seen.stable(stable);
                    match seen.parsed_with(|| header::index_shards(&index_path, version.size)) {
                        Ok(shards) => {
                            for shard in shards {
                                match stat_file(&dir.join(shard), follow) {
                                    Stat::File(version) => weights.push((shard.clone(), version)),
                                    Stat::Absent => {
                                        missing_shard.get_or_insert_with(|| shard.clone());
                                    }
                                    Stat::Problem(reason) => note_problem(shard, reason),
                                }
                            }
                            index_view = Some((Ok(()), settled));
                        }
                        Err(reason) => index_view = Some((Err(reason.clone()), is_stable)),
                    }
                }
            }
        }
    }
    let index_stable = state.index.as_ref().is_some_and(|i| i.stable(stable));

    // Observe and check every weight file; forget files no longer listed.
    state
        .weights
        .retain(|name, _| weights.iter().any(|(n, _)| n == name));
    let mut all_settled = true;
    let mut failure: Option<(String, bool)> = None;
    for (name, version) in &weights {
        let path = dir.join(name);
        let renamed = renamed_now(&path);
        let seen = match state.weights.entry(name.clone()) {
            Entry::Occupied(entry) => {
                let seen = entry.into_mut();
                seen.see(*version, renamed);
                seen
            }
            Entry::Vacant(entry) => entry.insert(Observed::new(*version, renamed)),
        };
        all_settled &= seen.settled(stable);
        let is_stable = seen.stable(stable);
        if seen.parsed.is_none()
            && let Some(reason) = unopenable(&path)
        {
            let settled = seen.settled(stable);
            unreadable.get_or_insert_with(|| (format!("{name}: {reason}"), settled));
            continue;
        }
        if let Err(reason) = seen.parsed_with(|| header::check_safetensors(&path, version.size)) {
            failure.get_or_insert_with(|| (format!("{name}: {reason}"), is_stable));
        }
    }
    key.extend(weights.iter().cloned());

    if let Some(reason) = problem {
        return Verdict::Invalid(reason, key);
    }
    if marker {
        return Verdict::Pending;
    }
    match unreadable {
        Some((reason, true)) => return Verdict::Unreadable(reason, key),
        Some((_, false)) => return Verdict::Pending,
        None => {}
    }
    match &trainer {
        TrainerView::Valid { global_step, .. } if *global_step != step => {
            return Verdict::Invalid(
                format!(
                    "{TRAINER_STATE} says global_step {global_step}, but the directory name \
                     says step {step}"
                ),
                key,
            );
        }
        TrainerView::Broken { reason, stable } => {
            return if *stable {
                Verdict::Invalid(format!("{TRAINER_STATE}: {reason}"), key)
            } else {
                Verdict::Pending
            };
        }
        _ => {}
    }
    if let Some((checked, index_settled)) = &index_view {
        match checked {
            Err(reason) if *index_settled => {
                return Verdict::Invalid(format!("{SHARD_INDEX}: {reason}"), key);
            }
            Err(_) => return Verdict::Pending,
            Ok(()) => all_settled &= *index_settled,
        }
        if let Some(shard) = missing_shard {
            return if index_stable {
                Verdict::Invalid(
                    format!("{SHARD_INDEX} lists {shard}, which is missing"),
                    key,
                )
            } else {
                Verdict::Pending
            };
        }
    }
    if weights.is_empty() {
        return match trainer {
            TrainerView::Valid { stable: true, .. } => Verdict::Invalid(
                format!(
                    "no {SINGLE_WEIGHTS} or {SHARD_INDEX} (pickle weights such as \
                     pytorch_model.bin are never loaded)"
                ),
                key,
            ),
            _ => Verdict::Pending,
        };
    }
    if let Some((reason, is_stable)) = failure {
        return if is_stable {
            Verdict::Invalid(reason, key)
        } else {
            Verdict::Pending
        };
    }
    match trainer {
        // A Trainer writes trainer_state.json last: it vouches for the rest.
        TrainerView::Valid { .. } => {}
        // A Trainer that has not written trainer_state.json yet: wait for it.
        _ if trainer_side_files(dir) => return Verdict::Pending,
        // Another writer: weights that stopped changing (or were renamed
        // into place) are finished.
        _ if !all_settled => return Verdict::Pending,
        _ => {}
    }
    let candidate = Candidate {
        step,
        path: dir.to_path_buf(),
        size: weights.iter().map(|(_, v)| v.size).sum(),
        mtime: weights
            .iter()
            .map(|(_, v)| v.mtime)
            .max()
            .unwrap_or(UNIX_EPOCH),
    };
    Verdict::Complete(candidate, weights)
}

#[cfg(test)]
mod tests;
