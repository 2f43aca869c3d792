//! How long a replica's loop round takes while it snapshots a large KV:
//! one voter on a real directory, 100,000 keys of 256-byte values, and
//! rounds of 128 puts (what 128 closed-loop clients give a leader).
//!
//! Ignored by default (it writes ~60 MB and takes seconds); run it with
//! `cargo test --release -p queue --test all snapshot_stall -- --ignored --nocapture`.

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

#[test]
#[ignore = "a measurement: writes ~60 MB; run with --release --ignored --nocapture"]
fn snapshot_stall() {
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
    println!(
        "rounds {} snapshots {snapshots}: p50 {:?} p99 {:?} p99.9 {:?} max {:?}",
        times.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        times[times.len() - 1]
    );
    let slow: Vec<_> = rounds
        .iter()
        .enumerate()
        .filter(|(_, (t, _))| *t > Duration::from_millis(5))
        .map(|(i, (t, s))| format!("round {i}: {t:?} (snapshots {s})"))
        .collect();
    println!("rounds over 5 ms: {slow:#?}");
    assert!(snapshots >= 2, "only {snapshots} snapshots");
}
