//! Apply throughput of the queue state machine: enqueue, lease and ack in
//! batches, through `StateMachine::apply` with encoded commands (so decoding
//! and reply encoding are included), plus snapshot and restore of the state.
//!
//! This measures the state machine alone: no Raft, no fsync, no network. It
//! is the ceiling the replicated queue cannot exceed. Prints a markdown
//! table for scripts/bench-record.sh.

// A benchmark that cannot run panics with a message; it is not host code.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use queue::limits::{IN_FLIGHT_MAX_LIMIT, TOPIC_LENGTH_MAX_LIMIT};
use queue::{
    decode_response, encode_command, Command, NewMessage, QueueMachine, Receipt, Reply, TopicConfig,
};
use raft_core::{ApplyContext, StateMachine};

/// Messages per run; large enough that per-run setup is noise.
const MESSAGES: usize = 200_000;
/// Body size of each message, in bytes.
const BODY_BYTES: usize = 100;

struct Log {
    machine: QueueMachine,
    index: u64,
    time_ms: u64,
}

impl Log {
    fn new() -> Self {
        Self {
            machine: QueueMachine::new(),
            index: 0,
            time_ms: 1_000_000,
        }
    }

    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        self.index += 1;
        // One millisecond of log time per command: leases (60 s) never
        // expire during a run, as in a busy queue.
        self.time_ms += 1;
        let ctx = ApplyContext {
            index: self.index,
            term: 1,
            time_ms: self.time_ms,
        };
        self.machine.apply(&ctx, command)
    }
}

struct Row {
    operation: &'static str,
    batch: usize,
    messages: usize,
    commands: usize,
    elapsed: Duration,
}

fn run(batch: usize) -> (Vec<Row>, Option<(usize, Duration, Duration)>) {
    let mut log = Log::new();
    let config = TopicConfig {
        length_max: TOPIC_LENGTH_MAX_LIMIT,
        in_flight_max: IN_FLIGHT_MAX_LIMIT,
        ..TopicConfig::default()
    };
    log.apply(&encode_command(&Command::CreateTopic {
        topic: "bench".into(),
        config,
    }));
    let commands = MESSAGES / batch;
    let body = vec![7u8; BODY_BYTES];

    // Commands are encoded before the clock starts: a replica receives bytes.
    let enqueues: Vec<Vec<u8>> = (0..commands)
        .map(|_| {
            encode_command(&Command::Enqueue {
                topic: "bench".into(),
                messages: vec![NewMessage::new(body.clone()); batch],
            })
        })
        .collect();
    let start = Instant::now();
    for command in &enqueues {
        black_box(log.apply(command));
    }
    let enqueue = start.elapsed();

    // Four consumers, so that none reaches the per-consumer in-flight cap.
    let leases: Vec<Vec<u8>> = (0..4)
        .map(|worker| {
            encode_command(&Command::Lease {
                topic: "bench".into(),
                consumer: format!("worker-{worker}"),
                max_messages: batch as u32,
                lease_ms: Some(60_000),
            })
        })
        .collect();
    let mut replies = Vec::with_capacity(commands);
    let start = Instant::now();
    for i in 0..commands {
        replies.push(log.apply(&leases[i % leases.len()]));
    }
    let leasing = start.elapsed();

    let snapshot = (batch == 100).then(|| {
        let start = Instant::now();
        let bytes = log.machine.snapshot();
        let taken = start.elapsed();
        let start = Instant::now();
        let mut restored = QueueMachine::new();
        restored
            .restore(&bytes)
            .expect("restore of a fresh snapshot");
        (bytes.len(), taken, start.elapsed())
    });

    let acks: Vec<Vec<u8>> = replies
        .iter()
        .map(|reply| {
            let receipts: Vec<Receipt> = match decode_response(reply) {
                Ok(Ok(Reply::Leased(deliveries))) => {
                    deliveries.iter().map(|d| d.receipt()).collect()
                }
                other => panic!("lease failed: {other:?}"),
            };
            assert_eq!(receipts.len(), batch);
            encode_command(&Command::Ack {
                topic: "bench".into(),
                receipts,
            })
        })
        .collect();
    let start = Instant::now();
    for command in &acks {
        black_box(log.apply(command));
    }
    let acking = start.elapsed();

    let row = |operation, elapsed| Row {
        operation,
        batch,
        messages: commands * batch,
        commands,
        elapsed,
    };
    (
        vec![
            row("enqueue", enqueue),
            row("lease", leasing),
            row("ack", acking),
        ],
        snapshot,
    )
}

fn per_second(count: usize, elapsed: Duration) -> String {
    let rate = count as f64 / elapsed.as_secs_f64().max(1e-9);
    if rate >= 1e6 {
        format!("{:.2} M", rate / 1e6)
    } else if rate >= 1e4 {
        format!("{:.0} k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

fn main() {
    let mut rows = Vec::new();
    let mut snapshot = None;
    for batch in [1, 10, 100, 1000] {
        let (mut batch_rows, batch_snapshot) = run(batch);
        rows.append(&mut batch_rows);
        snapshot = snapshot.or(batch_snapshot);
    }
    println!(
        "Queue state machine alone (`cargo bench -p queue --bench apply`): \
         {MESSAGES} messages of {BODY_BYTES} bytes per row through `StateMachine::apply` \
         with encoded commands, one topic, no Raft, no fsync.\n"
    );
    println!("| operation | batch | commands/s | messages/s | total |");
    println!("|---|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {} | {:.0} ms |",
            row.operation,
            row.batch,
            per_second(row.commands, row.elapsed),
            per_second(row.messages, row.elapsed),
            row.elapsed.as_secs_f64() * 1e3
        );
    }
    if let Some((bytes, taken, restored)) = snapshot {
        println!(
            "\nSnapshot of {MESSAGES} leased messages: {:.1} MiB, taken in {:.0} ms, restored in {:.0} ms.",
            bytes as f64 / (1024.0 * 1024.0),
            taken.as_secs_f64() * 1e3,
            restored.as_secs_f64() * 1e3
        );
    }
}
