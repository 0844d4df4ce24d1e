//! Filesystem events as hints: [`watch_folder`] attaches a notify watcher to
//! a run folder and turns the events that can mean "a checkpoint changed"
//! into [`Hint`]s on a tokio channel, so the daemon scans at once instead of
//! at the next tick.
//!
//! Hints are only hints: the callback runs on notify's own thread and never
//! blocks it (`try_send`; a full channel drops the hint and sends
//! [`Hint::Rescan`] with the next event that fits), events for names that can
//! never be candidates (hidden temporaries, other files, DeepSpeed
//! sub-directories) are dropped, and overflowed event queues and watcher
//! errors become [`Hint::Rescan`]. This module does not scan, debounce or
//! decide anything: the periodic [`Scanner::scan`](super::Scanner::scan)
//! stays the source of truth. Symlinks are not followed by the watcher.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc::Sender;
use tokio::sync::mpsc::error::TrySendError;

use super::{Layout, WatchError, checkpoint_dir_step, is_dump_name};

/// Something a filesystem event suggests: scan soon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// A relevant path was created, finished writing (closed after writing),
    /// removed or moved away.
    Changed(PathBuf),
    /// A relevant path was renamed or moved into place: pass it to the next
    /// [`Scanner::scan`](super::Scanner::scan) in `renamed`.
    Renamed(PathBuf),
    /// Events were lost (queue overflow, full channel, watcher error):
    /// rescan everything.
    Rescan,
}

/// Keeps a folder's filesystem watcher alive; dropping it stops the hints.
pub struct Hints {
    _watcher: RecommendedWatcher,
    folder: PathBuf,
}

impl fmt::Debug for Hints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hints")
            .field("folder", &self.folder)
            .finish_non_exhaustive()
    }
}

/// Watches `folder` (recursively for [`Layout::HfCheckpoints`], only the
/// folder itself for [`Layout::Dumps`]) and sends [`Hint`]s into `tx`.
///
/// Fails when the watcher cannot be created or attached: no inotify
/// instances or watches left, or a missing folder. The daemon then relies on
/// scanning. A watcher on a folder that is later deleted stops delivering
/// events (it sends [`Hint::Rescan`] when that happens); watching it again is
/// the caller's business.
pub fn watch_folder(folder: &Path, layout: Layout, tx: Sender<Hint>) -> Result<Hints, WatchError> {
    let watch_err = |source: notify::Error| WatchError::Watch {
        path: folder.to_path_buf(),
        source,
    };
    let sink = HintSink {
        tx,
        folder: folder.to_path_buf(),
        layout,
        rescan_pending: false,
    };
    let config = notify::Config::default().with_follow_symlinks(false);
    let mut watcher = RecommendedWatcher::new(sink, config).map_err(watch_err)?;
    let mode = match layout {
        Layout::Dumps => RecursiveMode::NonRecursive,
        Layout::HfCheckpoints => RecursiveMode::Recursive,
    };
    watcher.watch(folder, mode).map_err(watch_err)?;
    Ok(Hints {
        _watcher: watcher,
        folder: folder.to_path_buf(),
    })
}

/// The notify event handler: maps events to hints and sends them without
/// blocking.
struct HintSink {
    tx: Sender<Hint>,
    folder: PathBuf,
    layout: Layout,
    /// A hint was dropped because the channel was full: a
    /// [`Hint::Rescan`] is owed.
    rescan_pending: bool,
}

impl notify::EventHandler for HintSink {
    fn handle_event(&mut self, event: notify::Result<Event>) {
        match event {
            Ok(event) => {
                for hint in self.hints_for(&event) {
                    self.send(hint);
                }
            }
            Err(error) => {
                tracing::warn!(
                    folder = %self.folder.display(),
                    %error,
                    "filesystem watcher error; asking for a rescan"
                );
                self.send(Hint::Rescan);
            }
        }
    }
}

impl HintSink {
    /// Sends a hint, or records that a rescan is owed when the channel is
    /// full. A closed channel (the daemon stopped listening) drops silently.
    fn send(&mut self, hint: Hint) {
        if self.rescan_pending {
            match self.tx.try_send(Hint::Rescan) {
                Ok(()) => self.rescan_pending = false,
                Err(TrySendError::Full(_)) => return,
                Err(TrySendError::Closed(_)) => return,
            }
            if hint == Hint::Rescan {
                return;
            }
        }
        if let Err(TrySendError::Full(_)) = self.tx.try_send(hint) {
            self.rescan_pending = true;
        }
    }

    /// The hints one event gives, relevant paths only.
    fn hints_for(&self, event: &Event) -> Vec<Hint> {
        if event.need_rescan() {
            return vec![Hint::Rescan];
        }
        let mut hints = Vec::new();
        let mut push = |hint: fn(PathBuf) -> Hint, path: &PathBuf| {
            if *path == self.folder {
                // The folder itself was removed or moved: everything changed.
                hints.push(Hint::Rescan);
            } else if self.relevant(path) {
                hints.push(hint(path.clone()));
            }
        };
        match &event.kind {
            EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                for path in &event.paths {
                    push(Hint::Renamed, path);
                }
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                // paths = [from, to].
                if let [from, to] = event.paths.as_slice() {
                    push(Hint::Changed, from);
                    push(Hint::Renamed, to);
                }
            }
            EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                for path in &event.paths {
                    push(Hint::Changed, path);
                }
            }
            _ => {}
        }
        hints.dedup();
        hints
    }

    /// Whether `path` can matter to a scan of this layout: a visible
    /// `*.safetensors` directly in the folder, or a `checkpoint-<N>`
    /// directory or a visible file directly inside one. Paths outside the
    /// folder (should not happen) count as relevant.
    fn relevant(&self, path: &Path) -> bool {
        let Ok(relative) = path.strip_prefix(&self.folder) else {
            return true;
        };
        let names: Vec<&[u8]> = relative
            .components()
            .map(|c| match c {
                Component::Normal(name) => name.as_encoded_bytes(),
                _ => b"..",
            })
            .collect();
        match (self.layout, names.as_slice()) {
            (Layout::Dumps, [name]) => is_dump_name(name),
            (Layout::HfCheckpoints, [dir]) => checkpoint_dir_step(dir).is_some(),
            (Layout::HfCheckpoints, [dir, name]) => {
                checkpoint_dir_step(dir).is_some() && !name.starts_with(b".")
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::EventHandler;
    use notify::event::{CreateKind, DataChange, Flag, RemoveKind};
    use std::time::{Duration, Instant};
    use tokio::sync::mpsc;

    fn sink(layout: Layout, capacity: usize) -> (HintSink, mpsc::Receiver<Hint>) {
        let (tx, rx) = mpsc::channel(capacity);
        let sink = HintSink {
            tx,
            folder: PathBuf::from("/run"),
            layout,
            rescan_pending: false,
        };
        (sink, rx)
    }

    fn event(kind: EventKind, paths: &[&str]) -> Event {
        paths
            .iter()
            .fold(Event::new(kind), |e, p| e.add_path(PathBuf::from(p)))
    }

    #[test]
    fn events_map_to_hints_for_relevant_paths_only() {
        let (dumps, _rx) = sink(Layout::Dumps, 8);
        let close = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert_eq!(
            dumps.hints_for(&event(close, &["/run/a-1.safetensors"])),
            vec![Hint::Changed(PathBuf::from("/run/a-1.safetensors"))]
        );
        assert!(
            dumps
                .hints_for(&event(close, &["/run/.tmp-a-1.safetensors"]))
                .is_empty()
        );
        assert!(
            dumps
                .hints_for(&event(close, &["/run/notes.txt"]))
                .is_empty()
        );
        let both = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert_eq!(
            dumps.hints_for(&event(
                both,
                &["/run/.tmp-a-1.safetensors", "/run/a-1.safetensors"]
            )),
            vec![Hint::Renamed(PathBuf::from("/run/a-1.safetensors"))]
        );
        // Writes in progress are not hints; only the close is.
        let data = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert!(
            dumps
                .hints_for(&event(data, &["/run/a-1.safetensors"]))
                .is_empty()
        );
        let overflow = Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert_eq!(dumps.hints_for(&overflow), vec![Hint::Rescan]);
        let gone = EventKind::Remove(RemoveKind::Folder);
        assert_eq!(dumps.hints_for(&event(gone, &["/run"])), vec![Hint::Rescan]);

        let (hf, _rx) = sink(Layout::HfCheckpoints, 8);
        let to = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert_eq!(
            hf.hints_for(&event(to, &["/run/checkpoint-5/model.safetensors"])),
            vec![Hint::Renamed(PathBuf::from(
                "/run/checkpoint-5/model.safetensors"
            ))]
        );
        let create = EventKind::Create(CreateKind::Folder);
        assert_eq!(
            hf.hints_for(&event(create, &["/run/checkpoint-5"])),
            vec![Hint::Changed(PathBuf::from("/run/checkpoint-5"))]
        );
        for ignored in [
            "/run/tmp-checkpoint-5",
            "/run/tmp-checkpoint-5/model.safetensors",
            "/run/checkpoint-5/.tmpab12",
            "/run/checkpoint-5/global_step5/mp_rank_00_model_states.pt",
            "/run/model.safetensors",
        ] {
            assert!(
                hf.hints_for(&event(create, &[ignored])).is_empty(),
                "{ignored}"
            );
        }
    }

    #[test]
    fn a_full_channel_drops_hints_and_owes_a_rescan() {
        let (mut sink, mut rx) = sink(Layout::Dumps, 1);
        let create = EventKind::Create(CreateKind::File);
        sink.handle_event(Ok(event(create, &["/run/a-1.safetensors"])));
        sink.handle_event(Ok(event(create, &["/run/a-2.safetensors"])));
        assert!(sink.rescan_pending);
        assert_eq!(
            rx.try_recv(),
            Ok(Hint::Changed(PathBuf::from("/run/a-1.safetensors")))
        );
        assert!(rx.try_recv().is_err());
        // The next event delivers the owed rescan first (its own hint does
        // not fit and is owed as a rescan again).
        sink.handle_event(Ok(event(create, &["/run/a-3.safetensors"])));
        assert_eq!(rx.try_recv(), Ok(Hint::Rescan));
        assert!(sink.rescan_pending);
        // A watcher error owes a rescan too; one rescan pays both.
        sink.handle_event(Err(notify::Error::generic("queue overflow")));
        assert_eq!(rx.try_recv(), Ok(Hint::Rescan));
        assert!(rx.try_recv().is_err());
        assert!(!sink.rescan_pending);
    }

    #[test]
    fn a_missing_folder_cannot_be_watched() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let (tx, _rx) = mpsc::channel(4);
        let err = watch_folder(&missing, Layout::Dumps, tx).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    /// Polls `rx` until `wanted` arrives or 10 s pass, running `poke` before
    /// every wait (events are hints: a write may race the watch being set up).
    fn await_hint(
        rx: &mut mpsc::Receiver<Hint>,
        wanted: &Hint,
        mut poke: impl FnMut(),
    ) -> Vec<Hint> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            poke();
            let round = Instant::now() + Duration::from_millis(300);
            while Instant::now() < round {
                match rx.try_recv() {
                    Ok(hint) => {
                        let done = hint == *wanted;
                        seen.push(hint);
                        if done {
                            return seen;
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
        seen
    }

    #[test]
    fn creating_a_dump_sends_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let _hints = watch_folder(dir.path(), Layout::Dumps, tx).unwrap();
        let path = dir.path().join("acts-1.safetensors");
        let wanted = Hint::Changed(path.clone());
        let mut n = 0u8;
        let seen = await_hint(&mut rx, &wanted, || {
            n = n.wrapping_add(1);
            std::fs::write(&path, [n]).unwrap();
        });
        assert!(seen.contains(&wanted), "hints seen: {seen:?}");
    }

    #[test]
    fn a_rename_inside_a_new_checkpoint_sends_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let _hints = watch_folder(dir.path(), Layout::HfCheckpoints, tx).unwrap();
        let ckpt = dir.path().join("checkpoint-5");
        std::fs::create_dir(&ckpt).unwrap();
        let target = ckpt.join("model.safetensors");
        let wanted = Hint::Renamed(target.clone());
        let seen = await_hint(&mut rx, &wanted, || {
            let tmp = ckpt.join(".tmp1234");
            std::fs::write(&tmp, b"weights").unwrap();
            std::fs::rename(&tmp, &target).unwrap();
        });
        assert!(seen.contains(&wanted), "hints seen: {seen:?}");
        assert!(
            !seen
                .iter()
                .any(|h| matches!(h, Hint::Changed(p) if p.ends_with(".tmp1234"))),
            "hidden temporaries are not hints: {seen:?}"
        );
    }
}
