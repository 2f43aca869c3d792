//! How long a replica's loop round takes while it snapshots a large KV:
//! one voter on a real directory, 100,000 keys of 256-byte values, and
//! rounds of 128 puts (what 128 closed-loop clients give a leader).
//!
//! Writes ~60 MB and takes seconds: `make bench-queue` runs it (`cargo
//! bench -p queue --bench snapshot_stall`) and records the markdown table it
//! prints in docs/benchmarks.md.

// A benchmark that cannot run panics with a message; it is not host code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use queue::{encode_command, Command, QueueMachine};
use raft_core::{Bootstrap, Config, FsDir, Node, Options, SendError, Transport};

struct NoPeers;

impl Transport for NoPeers {
    fn send(&mut self, _to: u64, _bytes: Vec<u8>) -> Result<(), SendError> {
        Ok(())
    }
}

const KEYS_COUNT: u64 = 100_000;
const VALUE_BYTES: usize = 256;
const ROUND_PUTS_COUNT: u64 = 128;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        snapshot_interval_entries: KEYS_COUNT,
        ..Config::default()
    };
    let mut node = Node::bootstrap(
        FsDir::open(dir.path()).unwrap(),
        config,
        QueueMachine::new(),
        Bootstrap {
            group_id: 7,
            id: 1,
            voters: vec![(1, Vec::new())],
            max_sessions_count: 1_000,
            session_timeout_ms: 600_000,
        },
        Options::with_seed(1),
    )
    .unwrap();
    let mut transport = NoPeers;
    while !node.is_leader() {
        node.tick();
        node.process(&mut transport).unwrap();
    }
    let mut rounds: Vec<(Duration, u64)> = Vec::new();
    let mut seq = 0u64;
    // Two snapshots' worth of puts, keys in a scrambled order.
    let puts_count = 2 * KEYS_COUNT + KEYS_COUNT / 2;
    while seq < puts_count {
        for _ in 0..ROUND_PUTS_COUNT {
            seq += 1;
            let key = (seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7) % KEYS_COUNT;
            let command = Command::Put {
                key: format!("key-{key:08}").into_bytes(),
                value: vec![(seq % 251) as u8; VALUE_BYTES],
            };
            node.propose(0, seq, 1_000 + seq, encode_command(&command))
                .unwrap();
        }
        // One `process` per round, as the replica ROM's loop does: work
        // left over (a snapshot in progress) waits for the next round.
        let started = Instant::now();
        node.process(&mut transport).unwrap();
        rounds.push((started.elapsed(), node.counters().snapshots_taken_count));
    }
    let mut times: Vec<Duration> = rounds.iter().map(|(t, _)| *t).collect();
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let snapshots = node.counters().snapshots_taken_count;
    let over_5ms = rounds
        .iter()
        .filter(|(t, _)| *t > Duration::from_millis(5))
        .count();
    assert!(snapshots >= 2, "only {snapshots} snapshots");
    println!(
        "One voter on a real directory (release build, native), a KV of {KEYS_COUNT} keys of \
         {VALUE_BYTES}-byte values written in a scrambled order, {ROUND_PUTS_COUNT} puts per round \
         and one `process` per round, as the replica ROM's loop does; snapshots every \
         {KEYS_COUNT} entries, each spread over rounds (docs/raft-core.md, \"Snapshots\").\n"
    );
    println!("| rounds | snapshots | p50 | p99 | p99.9 | max | rounds over 5 ms |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {snapshots} | {:.2?} | {:.2?} | {:.2?} | {:.2?} | {over_5ms} |",
        times.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        times[times.len() - 1]
    );
}
