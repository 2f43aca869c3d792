//! Snapshot → restore gives the same state and the same future behaviour.

use queue::{
    decode_response, encode_command, Command, Nack, NewMessage, QueueMachine, Receipt, Reply,
    TopicConfig,
};
use raft_core::{ApplyContext, StateMachine};

/// Applies commands one index at a time.
struct Log {
    index: u64,
    acked: Option<Receipt>,
}

fn receipts(reply: &[u8]) -> Vec<Receipt> {
    match decode_response(reply) {
        Ok(Ok(Reply::Leased(deliveries))) => deliveries.iter().map(|d| d.receipt()).collect(),
        other => panic!("expected a lease reply, got {other:?}"),
    }
}

impl Log {
    fn apply(&mut self, machine: &mut QueueMachine, time_ms: u64, command: &Command) -> Vec<u8> {
        self.index += 1;
        let ctx = ApplyContext {
            index: self.index,
            term: 1,
            time_ms,
        };
        machine.apply(&ctx, &encode_command(command))
    }
}

fn lease(topic: &str, consumer: &str, n: u32, lease_ms: u64) -> Command {
    Command::Lease {
        topic: topic.into(),
        consumer: consumer.into(),
        max_messages: n,
        lease_ms: Some(lease_ms),
    }
}

/// A state with every kind of data: ready, leased, delayed and dead
/// messages, delivery counts, the dedupe table, acks remembered, KV entries.
fn busy_machine(log: &mut Log) -> QueueMachine {
    let mut machine = QueueMachine::new();
    let config = TopicConfig {
        max_deliveries: 2,
        ..TopicConfig::default()
    };
    let t = 10_000;
    log.apply(
        &mut machine,
        t,
        &Command::CreateTopic {
            topic: "jobs".into(),
            config,
        },
    );
    let messages = (0..20u8)
        .map(|i| {
            let message = NewMessage::new(vec![i; 3]).dedupe("producer", u64::from(i));
            if i % 5 == 0 {
                message.delay_ms(5_000)
            } else {
                message
            }
        })
        .collect();
    log.apply(
        &mut machine,
        t,
        &Command::Enqueue {
            topic: "jobs".into(),
            messages,
        },
    );
    log.apply(&mut machine, t + 1, &lease("jobs", "a", 4, 1_000));
    log.apply(&mut machine, t + 2, &lease("jobs", "b", 3, 60_000));
    // Let a's leases expire once, then poison one message to the DLQ.
    log.apply(&mut machine, t + 1_001, &Command::Tick);
    let reply = log.apply(&mut machine, t + 1_002, &lease("jobs", "c", 2, 60_000));
    let receipts = receipts(&reply);
    assert_eq!(receipts.len(), 2);
    log.apply(
        &mut machine,
        t + 1_003,
        &Command::Nack {
            topic: "jobs".into(),
            receipts: vec![receipts[0]],
            nack: Nack::Retry { delay_ms: 0 },
        },
    );
    log.apply(
        &mut machine,
        t + 1_004,
        &Command::Ack {
            topic: "jobs".into(),
            receipts: vec![receipts[1]],
        },
    );
    log.acked = Some(receipts[1]);
    log.apply(
        &mut machine,
        t + 1_005,
        &Command::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        },
    );
    log.apply(
        &mut machine,
        t + 1_006,
        &Command::Enqueue {
            topic: "other".into(),
            messages: vec![NewMessage::new("o")],
        },
    );
    machine
}

fn replay(machine: &mut QueueMachine, log: &mut Log) -> Vec<Vec<u8>> {
    let t = 11_010;
    let script = [
        (t, lease("jobs", "d", 10, 500)),
        (
            t,
            Command::Ack {
                topic: "jobs".into(),
                receipts: log.acked.into_iter().collect(),
            },
        ),
        (
            t + 1,
            Command::Enqueue {
                topic: "jobs".into(),
                messages: vec![NewMessage::new("dup").dedupe("producer", 4)],
            },
        ),
        (t + 4_000, Command::Tick),
        (t + 4_001, lease("jobs", "e", 20, 500)),
        (t + 70_000, lease("jobs", "f", 20, 500)),
        (t + 70_001, lease("jobs.dlq", "g", 20, 500)),
        (
            t + 70_002,
            Command::Cas {
                key: b"k".to_vec(),
                expected_version: 1,
                value: None,
            },
        ),
        (
            t + 200_000,
            Command::Enqueue {
                topic: "jobs".into(),
                messages: vec![NewMessage::new("dup").dedupe("producer", 4)],
            },
        ),
    ];
    let mut replies: Vec<Vec<u8>> = script
        .iter()
        .map(|(time, command)| log.apply(machine, *time, command))
        .collect();
    for topic in ["jobs", "jobs.dlq", "other"] {
        replies.push(machine.query(&queue::encode_query(&queue::Query::Stats {
            topic: topic.into(),
        })));
        replies.push(machine.query(&queue::encode_query(&queue::Query::Peek {
            topic: topic.into(),
            after: None,
            max_messages: 100,
        })));
    }
    replies
}

#[test]
fn restore_gives_identical_state_and_future() {
    let mut log = Log {
        index: 0,
        acked: None,
    };
    let mut original = busy_machine(&mut log);
    let snapshot = original.snapshot();
    let mut restored = QueueMachine::new();
    restored.restore(&snapshot).unwrap();
    assert_eq!(
        restored.snapshot(),
        snapshot,
        "snapshot bytes are canonical"
    );
    assert_eq!(restored.now_ms(), original.now_ms());

    let mut log_copy = Log {
        index: log.index,
        acked: log.acked,
    };
    let expected = replay(&mut original, &mut log);
    let actual = replay(&mut restored, &mut log_copy);
    assert_eq!(actual, expected);
    assert_eq!(restored.snapshot(), original.snapshot());
}

#[test]
fn corrupt_snapshots_are_refused_and_change_nothing() {
    let mut log = Log {
        index: 0,
        acked: None,
    };
    let original = busy_machine(&mut log);
    let snapshot = original.snapshot();
    let mut target = QueueMachine::new();
    log.apply(
        &mut target,
        1,
        &Command::Put {
            key: b"keep".to_vec(),
            value: b"me".to_vec(),
        },
    );
    let before = target.snapshot();
    assert!(target.restore(&[]).is_err());
    assert!(target.restore(&[9]).is_err());
    assert!(target.restore(&snapshot[..snapshot.len() / 2]).is_err());
    let mut trailing = snapshot.clone();
    trailing.push(0);
    assert!(target.restore(&trailing).is_err());
    // Flip bytes one at a time: each result is an error or some valid state,
    // never a panic.
    for i in 1..snapshot.len().min(400) {
        let mut flipped = snapshot.clone();
        flipped[i] ^= 0x5a;
        let mut scratch = QueueMachine::new();
        let _ = scratch.restore(&flipped);
    }
    assert_eq!(target.snapshot(), before);
}

#[test]
fn a_snapshot_in_pieces_is_the_state_at_its_capture() {
    // Goal: `begin_snapshot` captures the state at one index, however the
    // machine changes while its pieces are serialized, and the pieces are
    // exactly `snapshot()` at the capture; writes made meanwhile (puts,
    // overwrites, deletes) land, and survive the next capture. Method: a
    // busy machine plus KV entries, a capture, writes between small
    // pieces, then compare; twice, so the second capture meets a partly
    // merged overlay.
    let mut log = Log {
        index: 0,
        acked: None,
    };
    let mut machine = busy_machine(&mut log);
    let put = |key: u32, value: u8| Command::Put {
        key: format!("key-{key:05}").into_bytes(),
        value: vec![value; 40],
    };
    for key in 0..500 {
        log.apply(&mut machine, 20_000, &put(key, 1));
    }
    for round in 0..2u8 {
        let expected = machine.snapshot();
        let mut source = machine.begin_snapshot();
        let mut pieces = Vec::new();
        let mut key = 0u32;
        while !source.next_chunk(&mut pieces, 97) {
            // Overwrite, add and delete keys between pieces.
            log.apply(&mut machine, 20_001, &put(key % 700, 2 + round));
            log.apply(
                &mut machine,
                20_001,
                &Command::Delete {
                    key: format!("key-{:05}", (key * 7) % 500).into_bytes(),
                },
            );
            key += 1;
        }
        assert!(key > 100, "the snapshot took only {key} pieces");
        assert_eq!(pieces, expected, "round {round}");
        let mut restored = QueueMachine::new();
        restored.restore(&pieces).expect("restores");
        // The live machine went on: its own snapshot restores to itself.
        let mut again = QueueMachine::new();
        again.restore(&machine.snapshot()).expect("restores");
        assert_eq!(again, machine, "round {round}");
        assert_ne!(restored, machine, "writes after the capture are not in it");
    }
}
