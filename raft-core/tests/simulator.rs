//! The simulator as a test: a few seeds must pass, and the simulator must
//! notice when the fsync is gone.
//!
//! The full runs are `make sim` (and `make test`: 200 seeds on 3 nodes, 50
//! on 5); these keep `cargo test -p raft-core` honest and quick.

// Test code: a failed expectation fails the test, with its message.
#![allow(clippy::expect_used)]

use raft_core::sim::{self, DiskFaults, KvWorkload, SimOptions};

#[test]
fn seeds_pass_on_three_and_five_nodes() {
    // Goal: the driver keeps its guarantees under every fault the
    // simulator injects. Method: a handful of seeds per group size.
    for (nodes, seeds) in [(3, 1..=8), (5, 1..=4)] {
        for seed in seeds {
            let options = SimOptions::new(seed, nodes, "kv");
            if let Err(failure) = sim::run::<KvWorkload>(&options) {
                panic!("{failure}");
            }
        }
    }
}

#[test]
fn a_flip_in_a_segment_the_replica_had_removed_is_not_a_loss() {
    // Goal: the checker blames a replica only for data it needed. Seed
    // 7705 (found by a run of seeds 7001-9000) stops a replica on ENOSPC
    // after compaction removed its first segment, a removal not yet
    // durable, then flips a bit in that segment; the replica's open reads
    // only the live segments and starts. The checker took the missing file
    // for a cut one until it asked whether the file was live before the
    // open. Method: run the seed; it must pass with that flip counted.
    let options = SimOptions::new(7705, 3, "kv");
    let report = match sim::run::<KvWorkload>(&options) {
        Ok(report) => report,
        Err(failure) => panic!("{failure}"),
    };
    assert_eq!(report.bitflips_in_removed_files_count, 1, "{report:?}");
}

#[test]
fn same_seed_same_run() {
    // Goal: a seed replays exactly. Method: run one seed twice, compare
    // everything the report counts.
    let options = SimOptions::new(42, 3, "kv");
    let first = sim::run::<KvWorkload>(&options).expect("seed 42 passes");
    let second = sim::run::<KvWorkload>(&options).expect("seed 42 passes");
    assert_eq!(first, second);
}

#[test]
fn a_missing_fsync_is_caught() {
    // Goal: prove the simulator can fail. Method: the disks acknowledge
    // `sync_data` on log segments without making anything durable, which
    // is exactly what deleting the fsync from the Ready path would do; then
    // crashes lose acknowledged entries and votes. Most seeds must fail,
    // each with a reason from the safety checks and a reproduce command.
    let seeds = 1..=20u64;
    let mut failures = Vec::new();
    for seed in seeds.clone() {
        let mut options = SimOptions::new(seed, 3, "kv");
        options.disk_faults = DiskFaults {
            ignore_log_sync: true,
        };
        if let Err(failure) = sim::run::<KvWorkload>(&options) {
            assert_eq!(failure.seed, seed);
            assert!(
                failure.reproduce.contains(&format!("--start {seed} "))
                    && failure.reproduce.contains("--disk-fault ignore-log-sync"),
                "{}",
                failure.reproduce
            );
            failures.push(failure);
        }
    }
    let count = failures.len();
    assert!(
        count * 2 > seeds.count(),
        "only {count} of 20 seeds caught the missing fsync"
    );
    let caught_by_safety_checks = failures.iter().any(|f| {
        f.reason.contains("lost entries it had acknowledged")
            || f.reason.contains("election safety")
            || f.reason.contains("state machine safety")
            || f.reason.contains("linearizable")
    });
    assert!(
        caught_by_safety_checks,
        "{:#?}",
        failures.iter().map(|f| &f.reason).collect::<Vec<_>>()
    );

    // The same seeds with honest disks pass: the failures come from the
    // missing fsync, not from the seeds.
    for failure in failures.iter().take(3) {
        let options = SimOptions::new(failure.seed, 3, "kv");
        if let Err(honest) = sim::run::<KvWorkload>(&options) {
            panic!("seed {} fails even with fsync: {honest}", failure.seed);
        }
    }
}

#[test]
fn rounds_split_by_send_early_meet_crashes() {
    // Goal: the leader's appends leave before its own fsync
    // (`Node::send_early`), and nothing acknowledged is lost when a node
    // dies in that window. Method: the simulator splits a quarter of the
    // rounds and holds each split open for 1-5 virtual ms, while crashes and
    // I/O faults go on; over 30 seeds some nodes must stop inside the
    // window, and every seed must pass.
    let (mut split, mut stopped) = (0, 0);
    for seed in 1..=30 {
        let options = SimOptions::new(seed, 3, "kv");
        match sim::run::<KvWorkload>(&options) {
            Ok(report) => {
                split += report.early_rounds_count;
                stopped += report.stopped_while_staged_count;
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    assert!(split >= 1_000, "only {split} split rounds");
    assert!(stopped >= 3, "only {stopped} nodes stopped while staged");
}

#[test]
fn storage_faults_are_injected_and_survived() {
    // Goal: the runs above really meet EIO, ENOSPC and bit flips, and a
    // replica whose synced data got a flipped bit refuses to start (and is
    // replaced) rather than starting with less than it acknowledged.
    // Method: sum the fault counters over 30 seeds; every seed passes.
    let (mut io_faults, mut flips, mut refusals) = (0, 0, 0);
    for seed in 1..=30 {
        let options = SimOptions::new(seed, 3, "kv");
        match sim::run::<KvWorkload>(&options) {
            Ok(report) => {
                io_faults += report.io_fault_count;
                flips += report.bitflip_count;
                refusals += report.corrupt_refusal_count;
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    assert!(io_faults >= 10, "only {io_faults} injected I/O faults");
    assert!(flips >= 3, "only {flips} bit flips");
    assert!(
        refusals >= 2 && refusals <= flips,
        "{refusals} refusals for {flips} flips"
    );
}

#[test]
fn crashes_meet_snapshots_in_progress() {
    // Goal: a snapshot is written a chunk per round, and a node that dies
    // with one half written reopens from its previous snapshot and an
    // intact log, losing nothing acknowledged. Method: the simulator's
    // chunks are 2-63 bytes, so a snapshot spans many rounds while
    // crashes (most aimed at a node writing a snapshot, if any), I/O
    // faults and restarts go on; over 200 seeds many snapshots must
    // complete, nodes must stop mid-snapshot, and every seed must pass.
    let (mut taken, mut stopped) = (0, 0);
    for seed in 1..=200 {
        let options = SimOptions::new(seed, 3, "kv");
        match sim::run::<KvWorkload>(&options) {
            Ok(report) => {
                taken += report.snapshots_taken_count;
                stopped += report.stopped_while_snapshotting_count;
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    eprintln!("{taken} snapshots completed, {stopped} nodes stopped while snapshotting");
    assert!(taken >= 1_000, "only {taken} snapshots completed");
    assert!(
        stopped >= 10,
        "only {stopped} nodes stopped while snapshotting"
    );
}
