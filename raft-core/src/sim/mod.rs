//! A deterministic simulator for raft-core groups, in the style of
//! TigerBeetle's VOPR and raft-rs's test harness.
//!
//! One `u64` seed drives everything: the group's configuration, the
//! clients' requests, and every fault. The simulation is single-threaded
//! and runs on a virtual clock (one step is one millisecond), so a seed
//! always replays the same run.
//!
//! A run has two phases:
//!
//! 1. **Safety**: clients issue requests while the nemesis injects faults:
//!    message drop, duplication, delay and reordering; partitions
//!    (isolating the leader, a minority, a majority, a bridge); crashes
//!    that lose unsynced bytes and may tear the last write; restarts;
//!    pauses; forged and garbage messages; leader transfers; membership
//!    changes that replace a voter with a fresh node; EIO on writes and
//!    syncs and ENOSPC (the node fails, is dropped and reopened); bit
//!    flips in synced data (the replica must refuse to start, and is then
//!    replaced).
//! 2. **Liveness**: every fault heals. Within a bounded number of ticks the
//!    group must serve every client again and all replicas must converge
//!    to the same state.
//!
//! Throughout, the simulator checks election safety (one leader per term),
//! state machine safety (replicas apply the same command at each index),
//! that no replica loses an acknowledged entry, and that time never goes
//! backwards; at the end, the workload checks what clients observed (the
//! `kv` workload: per-key linearizability).
//!
//! Every failure names its seed and the command that reproduces it.

pub mod checker;
mod cluster;
pub mod disk;
pub mod kv;
pub mod network;
pub mod recorder;
pub mod workload;

use std::fmt;

pub use cluster::Simulation;
pub use disk::{DiskFaults, IoFault, SimDisk};
pub use kv::KvWorkload;
pub use workload::{Request, Workload};

/// What to simulate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimOptions {
    /// The seed that drives everything.
    pub seed: u64,
    /// Voters in the group (3 or 5 are typical).
    pub node_count: usize,
    /// Concurrent clients, each with one request outstanding.
    pub client_count: usize,
    /// Virtual duration of the safety phase.
    pub safety_ms: u64,
    /// Bound on the liveness phase: the group must serve and converge
    /// within it.
    pub liveness_ms: u64,
    /// Faults the disks inject on purpose (for proving the simulator).
    pub disk_faults: DiskFaults,
    /// Print the nemesis's actions as they happen.
    pub trace: bool,
    /// The workload's name, for the reproduce command.
    pub workload_name: String,
}

impl SimOptions {
    /// The standard run for `seed` with `node_count` voters.
    pub fn new(seed: u64, node_count: usize, workload_name: &str) -> Self {
        Self {
            seed,
            node_count,
            client_count: 6,
            safety_ms: 6_000,
            liveness_ms: 10_000,
            disk_faults: DiskFaults::default(),
            trace: false,
            workload_name: workload_name.to_owned(),
        }
    }

    /// The exact command that replays this run.
    pub fn reproduce_command(&self) -> String {
        let fault = if self.disk_faults.ignore_log_sync {
            " --disk-fault ignore-log-sync"
        } else {
            ""
        };
        let make = if fault.is_empty() {
            format!(
                "make sim START={} SEEDS=1 NODES={} WORKLOAD={}  (or: ",
                self.seed, self.node_count, self.workload_name
            )
        } else {
            "(".to_owned()
        };
        format!(
            "{make}cargo run -p ww-tests --bin sim -- --start {} --seeds 1 --nodes {} --workload {}{fault} --trace)",
            self.seed, self.node_count, self.workload_name
        )
    }
}

/// What a passing run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Virtual milliseconds simulated.
    pub elapsed_ms: u64,
    /// Requests that completed.
    pub completed_count: u64,
    /// Crashes injected.
    pub crash_count: u64,
    /// Partitions injected.
    pub partition_count: u64,
    /// Membership changes applied.
    pub membership_change_count: u64,
    /// Snapshots installed on followers.
    pub snapshots_installed_count: u64,
    /// Torn tails cut at recovery.
    pub torn_tail_count: u64,
    /// Nodes stopped by an injected I/O error (EIO, ENOSPC) and reopened.
    pub io_fault_count: u64,
    /// Bits flipped in synced data.
    pub bitflip_count: u64,
    /// Of those, flips in a file the replica had already removed when it
    /// stopped (a compacted segment whose removal was not yet durable): the
    /// next open does not read it, so it must start.
    pub bitflips_in_removed_files_count: u64,
    /// Replicas that refused to start on a flipped bit and were replaced.
    pub corrupt_refusal_count: u64,
    /// Forged or garbage messages injected (all dropped).
    pub forged_count: u64,
    /// Rounds split by `Node::send_early`: appends sent, and held in
    /// flight for a few milliseconds, before the sender's own fsync.
    pub early_rounds_count: u64,
    /// Nodes crashed or stopped between `send_early` and `process`: their
    /// appends were out, their own write was not.
    pub stopped_while_staged_count: u64,
    /// Nodes crashed or stopped while writing a snapshot (chunks partly
    /// written, not yet durable): they must reopen from the previous
    /// snapshot and an intact log.
    pub stopped_while_snapshotting_count: u64,
    /// Own snapshots completed (written chunk by chunk over several rounds)
    /// on all nodes, counted when nodes stop and at the end of the run.
    pub snapshots_taken_count: u64,
    /// Highest term reached.
    pub max_term: u64,
    /// The workload's summary.
    pub workload_summary: String,
}

/// A failed run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimFailure {
    /// The seed.
    pub seed: u64,
    /// Virtual time of the failure.
    pub at_ms: u64,
    /// What went wrong.
    pub reason: String,
    /// The last nemesis actions and events before the failure.
    pub trace_tail: Vec<String>,
    /// The command that replays the run.
    pub reproduce: String,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "FAILED seed={} at {} ms: {}",
            self.seed, self.at_ms, self.reason
        )?;
        if !self.trace_tail.is_empty() {
            writeln!(f, "last events:")?;
            for line in &self.trace_tail {
                writeln!(f, "  {line}")?;
            }
        }
        write!(f, "reproduce: {}", self.reproduce)
    }
}

/// Runs one seed with workload `W`. A panic anywhere (raft-rs aborts on
/// broken invariants) is caught and reported as a failure of this seed.
///
/// # Errors
///
/// The [`SimFailure`], with the seed and the reproduce command.
pub fn run<W: Workload>(options: &SimOptions) -> Result<SimReport, SimFailure> {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut simulation = Simulation::<W>::new(options.clone());
        simulation.run()
    }));
    match outcome {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(SimFailure {
                seed: options.seed,
                at_ms: 0,
                reason: format!("panic: {message}"),
                trace_tail: Vec::new(),
                reproduce: options.reproduce_command(),
            })
        }
    }
}
