//! The gate between the core and the late stages ([`Gate`]): process-wide,
//! since the cores are shared, it pauses the late stages whenever any core
//! stage runs and keeps the total time core stages ran, so that a late
//! job's budget ([`WorkClock`]) counts its own working time only.
//!
//! What it does not do: schedule anything. The late job asks the gate
//! (`wait_idle`) at each step of its `keep_going` callback; the core job
//! holds it closed ([`Gate::core_running`]) while it analyses.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Pauses the late stages whenever a core stage runs, and tells how long
/// core stages have run in all.
#[derive(Default)]
pub(super) struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    /// Core stages running now.
    running: usize,
    /// Since when some core stage runs (`None` when none does).
    busy_since: Option<Instant>,
    /// Time some core stage ran, up to `busy_since`.
    busy: Duration,
}

/// Holds the gate closed while a core stage runs.
pub(super) struct CoreRunning<'a>(&'a Gate);

impl Drop for CoreRunning<'_> {
    fn drop(&mut self) {
        let mut g = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        g.running = g.running.saturating_sub(1);
        if g.running == 0 {
            if let Some(t) = g.busy_since.take() {
                g.busy += t.elapsed();
            }
        }
        self.0.changed.notify_all();
    }
}

impl Gate {
    /// Closes the gate until the returned guard drops.
    pub(super) fn core_running(&self) -> CoreRunning<'_> {
        let mut g = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if g.running == 0 {
            g.busy_since = Some(Instant::now());
        }
        g.running += 1;
        CoreRunning(self)
    }

    /// Total time some core stage was running.
    pub(super) fn busy(&self) -> Duration {
        let g = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        g.busy + g.busy_since.map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// Blocks while a core stage runs (or until `stop`).
    pub(super) fn wait_idle(&self, stop: &AtomicBool) {
        let mut g = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while g.running > 0 && !stop.load(Ordering::Relaxed) {
            g = self
                .changed
                .wait_timeout(g, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// A clock of late-stage working time started now.
    pub(super) fn clock(&self) -> WorkClock {
        WorkClock {
            started: Instant::now(),
            busy0: self.busy(),
        }
    }
}

/// Working time of a late job or stage: wall time since it started, less
/// the time core stages ran meanwhile (while the late one waited at the
/// gate).
pub(super) struct WorkClock {
    started: Instant,
    busy0: Duration,
}

impl WorkClock {
    /// Working time so far.
    pub(super) fn working(&self, gate: &Gate) -> Duration {
        self.started
            .elapsed()
            .saturating_sub(gate.busy().saturating_sub(self.busy0))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn the_gate_counts_core_time_once_however_many_cores_run() {
        let gate = Gate::default();
        assert_eq!(gate.busy(), Duration::ZERO);
        let a = gate.core_running();
        let b = gate.core_running();
        std::thread::sleep(Duration::from_millis(30));
        drop(a);
        std::thread::sleep(Duration::from_millis(30));
        drop(b);
        let busy = gate.busy();
        assert!(busy >= Duration::from_millis(60), "{busy:?}");
        // Closed no more: the total stays.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(gate.busy(), busy);
    }

    #[test]
    fn a_late_stage_waits_while_a_core_stage_runs_and_the_clock_excludes_it() {
        let gate = Arc::new(Gate::default());
        let clock = gate.clock();
        let core = gate.core_running();
        let (g2, stop) = (gate.clone(), Arc::new(AtomicBool::new(false)));
        let s2 = stop.clone();
        let waiter = std::thread::spawn(move || {
            let t = Instant::now();
            g2.wait_idle(&s2);
            t.elapsed()
        });
        std::thread::sleep(Duration::from_millis(150));
        drop(core);
        let waited = waiter.join().unwrap();
        assert!(waited >= Duration::from_millis(140), "{waited:?}");
        // The 150 ms the core ran are not the late stage's working time.
        let working = clock.working(&gate);
        assert!(working < Duration::from_millis(75), "{working:?}");
        assert!(!stop.load(Ordering::Relaxed));
    }

    #[test]
    fn stop_releases_a_waiting_late_stage() {
        let gate = Gate::default();
        let _core = gate.core_running();
        let stop = AtomicBool::new(true);
        let t = Instant::now();
        gate.wait_idle(&stop);
        assert!(t.elapsed() < Duration::from_millis(50));
    }
}
