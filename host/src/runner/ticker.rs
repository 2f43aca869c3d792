//! The epoch ticker: a thread that advances wasmtime's epoch every
//! [`EPOCH_TICK_MS`], so a computing guest yields to the event loop and
//! the busy limit can see how long it ran.
//!
//! Ticks matter only while a guest runs (a guest runs only inside a poll of
//! its task, `cpu.rs`'s `Metered`). A host whose guests all wait, which is
//! most of the time for an idle cluster, would still wake this thread a
//! thousand times a second for nothing; so after [`IDLE_TICKS_BEFORE_PARK`]
//! ticks with no guest polled, the thread parks, and the next poll wakes
//! it. Under load polls come far more often than that and it never parks,
//! so a poll pays one atomic add and one load.
//!
//! A guest that starts while the ticker is parked runs until the first tick
//! after the wake: one tick, as when it starts between two ticks.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use super::EPOCH_TICK_MS;

/// Ticks with no guest polled before the ticker parks.
const IDLE_TICKS_BEFORE_PARK: u32 = 20;

/// Longest park between checks that the runtime still exists.
const PARK_MAX_MS: u64 = 1_000;

/// Ticks since the engine started (the busy limit compares against them;
/// wasmtime does not expose its own epoch), and what the ticker and the
/// polls share to park and wake it.
#[derive(Default)]
pub(crate) struct Ticks {
    count: AtomicU64,
    /// Guest polls in progress.
    running: AtomicUsize,
    parked: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
}

impl Ticks {
    /// Ticks so far.
    pub(crate) fn now(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// A guest poll starts: the ticker must run until it ends.
    pub(crate) fn enter(&self) {
        // SeqCst on both sides: either this sees `parked` and wakes the
        // ticker, or the ticker sees this poll and does not park.
        self.running.fetch_add(1, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
    }

    /// The poll that [`Ticks::enter`] announced ended.
    pub(crate) fn exit(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts the ticker of `engine`. It stops once the engine or the returned
/// ticks are dropped.
pub(crate) fn start(engine: wasmtime::EngineWeak) -> Arc<Ticks> {
    let ticks = Arc::new(Ticks::default());
    let weak = Arc::downgrade(&ticks);
    match std::thread::Builder::new()
        .name("ww-epoch".to_owned())
        .spawn(move || run(&engine, &weak))
    {
        Ok(handle) => {
            let _ = ticks.thread.set(handle.thread().clone());
        }
        Err(err) => tracing::error!("cannot start the epoch ticker: {err}"),
    }
    ticks
}

fn run(engine: &wasmtime::EngineWeak, ticks: &Weak<Ticks>) {
    let mut idle_ticks = 0u32;
    loop {
        std::thread::sleep(Duration::from_millis(EPOCH_TICK_MS));
        let (Some(engine), Some(ticks)) = (engine.upgrade(), ticks.upgrade()) else {
            return;
        };
        ticks.count.fetch_add(1, Ordering::Relaxed);
        engine.increment_epoch();
        if ticks.running.load(Ordering::SeqCst) > 0 {
            idle_ticks = 0;
            continue;
        }
        idle_ticks += 1;
        if idle_ticks < IDLE_TICKS_BEFORE_PARK {
            continue;
        }
        ticks.parked.store(true, Ordering::SeqCst);
        if ticks.running.load(Ordering::SeqCst) == 0 {
            // Not holding the runtime while parked: it may be dropped.
            let ticks = Arc::downgrade(&ticks);
            drop(engine);
            std::thread::park_timeout(Duration::from_millis(PARK_MAX_MS));
            let Some(ticks) = ticks.upgrade() else { return };
            ticks.parked.store(false, Ordering::SeqCst);
        } else {
            ticks.parked.store(false, Ordering::SeqCst);
        }
        idle_ticks = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn an_idle_ticker_parks_and_a_poll_wakes_it_and_keeps_it_ticking() {
        let engine = wasmtime::Engine::default();
        let ticks = start(engine.weak());
        wait_for("the ticker to park", || ticks.parked.load(Ordering::SeqCst));
        let parked_at = ticks.now();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ticks.now(), parked_at, "a parked ticker ticked");

        ticks.enter();
        wait_for("ticks after the wake", || ticks.now() >= parked_at + 40);
        assert!(!ticks.parked.load(Ordering::SeqCst), "parked during a poll");
        ticks.exit();
        wait_for("the ticker to park again", || {
            ticks.parked.load(Ordering::SeqCst)
        });
    }
}
