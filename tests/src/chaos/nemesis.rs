//! The nemesis's schedule: which fault, on which host, when, and for how
//! long, all drawn from one seed so a failing run can be replayed.
//!
//! Faults do not overlap: each one heals (the killed host restarts with
//! its data dir and port, the paused host continues) before the next
//! starts, so the gap after each fault can be attributed to it.

use raft_core::rng::Rng;

use super::history::FaultKind;

/// Which replica host a fault hits, resolved when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The host of the current leader.
    Leader,
    /// A host of a follower.
    Follower,
}

/// One planned fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// When it fires, from the start of the workload.
    pub at_ms: u64,
    /// kill -9 (then restart) or SIGSTOP (then SIGCONT).
    pub kind: FaultKind,
    /// Leader or follower host.
    pub target: Target,
    /// How long the host stays dead or paused.
    pub hold_ms: u64,
}

/// The whole plan for one run.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The seed it came from.
    pub seed: u64,
    /// Faults in time order.
    pub faults: Vec<Fault>,
}

/// The mean time between faults (the issue asks for a fault every ~8 s).
pub const FAULT_INTERVAL_MS: u64 = 8_000;
/// Faults start this long into the workload, so the clients warm up.
pub const FIRST_FAULT_MS: u64 = 3_000;
/// No fault starts this close to the end: the last one heals in the run.
const QUIET_TAIL_MS: u64 = 6_000;
/// At most this many faults (bounds a very long run's plan).
pub const FAULTS_MAX_COUNT: usize = 10_000;

impl Schedule {
    /// The plan for a run of `duration_ms`. Kills and pauses alternate
    /// (so even a short run has both); the target and the hold time are
    /// drawn, the leader twice as often as a follower.
    pub fn new(seed: u64, duration_ms: u64) -> Schedule {
        let mut rng = Rng::new(seed ^ 0x006E_656D_6573_6973);
        let mut faults = Vec::new();
        let mut at_ms = FIRST_FAULT_MS + rng.below(2_000);
        while at_ms + QUIET_TAIL_MS <= duration_ms && faults.len() < FAULTS_MAX_COUNT {
            let kind = if faults.len() % 2 == 0 {
                FaultKind::Kill
            } else {
                FaultKind::Pause
            };
            let target = if rng.chance(2, 3) {
                Target::Leader
            } else {
                Target::Follower
            };
            let hold_ms = match kind {
                FaultKind::Kill => rng.range(1_000, 3_000),
                FaultKind::Pause => rng.range(2_000, 5_000),
            };
            faults.push(Fault {
                at_ms,
                kind,
                target,
                hold_ms,
            });
            // 6-10 s apart: ~8 s on average, always after the last healed.
            at_ms += FAULT_INTERVAL_MS - 2_000 + rng.below(4_000);
        }
        Schedule { seed, faults }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_plan_and_both_kinds_early() {
        let a = Schedule::new(7, 35_000);
        let b = Schedule::new(7, 35_000);
        assert_eq!(a.faults, b.faults);
        assert!(a.faults.len() >= 2, "{a:?}");
        assert_eq!(a.faults[0].kind, FaultKind::Kill);
        assert_eq!(a.faults[1].kind, FaultKind::Pause);
        for pair in a.faults.windows(2) {
            assert!(pair[0].at_ms + pair[0].hold_ms < pair[1].at_ms, "{a:?}");
        }
        let last = a.faults.last().unwrap();
        assert!(last.at_ms + last.hold_ms < 35_000);
    }
}
