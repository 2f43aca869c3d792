//! Scenario tests of the driver on real files: each opens with its goal,
//! drives a small group, and checks the outcome.

// Test code: a failed expectation fails the test, with its message.
#![allow(clippy::expect_used)]

mod common;

use common::{decode, encode, Group, GROUP_ID};
use raft::eraftpb::{Message, MessageType};
use raft_core::sim::kv::{KvMachine, KvOp, KvResult};
use raft_core::{
    Bootstrap, DropReason, Envelope, Error, Event, FsDir, Node, Options, Output, RequestError,
};

#[test]
fn a_write_commits_and_a_read_sees_it() {
    let mut group = Group::bootstrap(3);
    let leader = group.elect();
    let client = group.register(leader);
    let put = KvOp::Put { key: 1, value: 42 };
    assert_eq!(
        decode(&group.write(leader, client, 1, &put).expect("put")),
        KvResult::Done
    );

    let read_id = group
        .node(leader)
        .read_index(encode(&KvOp::Get { key: 1 }))
        .expect("read");
    let mut answer = None;
    group.run_until(200, "the read", |g| {
        let outputs = &g.outputs[(leader - 1) as usize];
        answer = outputs.iter().find_map(|o| match o {
            Output::Read { read_id: r, result } if *r == read_id => Some(result.clone()),
            _ => None,
        });
        answer.is_some()
    });
    assert_eq!(
        decode(&answer.expect("answer").expect("ok")),
        KvResult::Value(Some(42))
    );
}

#[test]
fn followers_refuse_requests_and_name_the_leader() {
    let mut group = Group::bootstrap(3);
    let leader = group.elect();
    group.run_until(100, "followers know the leader", |g| {
        g.nodes
            .iter()
            .flatten()
            .all(|n| n.leader_id() == Some(leader))
    });
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let error = group
        .node(follower)
        .propose(1, 1, 0, vec![])
        .expect_err("not the leader");
    assert_eq!(
        error,
        RequestError::NotLeader {
            leader_id: Some(leader)
        }
    );
    assert!(error.is_retryable());
    assert!(group.node(follower).read_index(vec![]).is_err());
}

#[test]
fn a_retried_command_applies_once_even_after_restarts() {
    // Goal: (client_id, seq) deduplication survives restarts (the session
    // table is replicated and rebuilt from snapshot and log). Method: put,
    // CAS, restart every replica, retry the CAS with the same seq.
    let mut group = Group::bootstrap(3);
    let leader = group.elect();
    let client = group.register(leader);
    group
        .write(leader, client, 1, &KvOp::Put { key: 0, value: 1 })
        .expect("put");
    let cas = KvOp::Cas {
        key: 0,
        expected: Some(1),
        new: 2,
    };
    assert_eq!(
        decode(&group.write(leader, client, 2, &cas).expect("cas")),
        KvResult::Swapped(true)
    );
    for id in 1..=3 {
        group.restart(id);
    }
    let leader = group.elect();
    // Applying it again would answer Swapped(false): the value is 2 now.
    assert_eq!(
        decode(&group.write(leader, client, 2, &cas).expect("retry")),
        KvResult::Swapped(true)
    );
    let stale = group
        .write(leader, client, 1, &KvOp::Put { key: 0, value: 5 })
        .expect_err("stale");
    assert_eq!(
        stale,
        RequestError::StaleSequence {
            client_id: client,
            seq: 1,
            last_seq: 2
        }
    );
    assert!(!stale.is_retryable());
}

#[test]
fn apply_time_never_goes_backwards() {
    // Goal: ApplyContext::time_ms is max(previous, stamped). Method: a
    // state machine that records it; propose with a clock that jumps back.
    struct Clocked(Vec<u64>);
    impl raft_core::StateMachine for Clocked {
        fn apply(&mut self, ctx: &raft_core::ApplyContext, _: &[u8]) -> Vec<u8> {
            self.0.push(ctx.time_ms);
            vec![]
        }
        fn query(&self, _: &[u8]) -> Vec<u8> {
            vec![]
        }
        fn snapshot(&self) -> Vec<u8> {
            vec![]
        }
        fn restore(&mut self, _: &[u8]) -> Result<(), String> {
            Ok(())
        }
        fn validate_snapshot(&self, _: &[u8]) -> Result<(), String> {
            Ok(())
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let bootstrap = Bootstrap {
        group_id: 1,
        id: 1,
        voters: vec![(1, vec![])],
        max_sessions_count: 10,
        session_timeout_ms: common::SESSION_TIMEOUT_MS,
    };
    let mut node = Node::bootstrap(
        FsDir::open(dir.path()).expect("dir"),
        common::config(),
        Clocked(Vec::new()),
        bootstrap,
        Options::with_seed(1),
    )
    .expect("bootstrap");
    let mut wire = common::Wire::default();
    for _ in 0..50 {
        node.tick();
        node.process(&mut wire).expect("process");
        if node.is_leader() {
            break;
        }
    }
    assert!(node.is_leader(), "a single voter elects itself");
    for (seq, time_ms) in [(1, 5_000), (2, 3_000), (3, 7_000)] {
        // Client 0: no session (these are never retried).
        node.propose(0, seq, time_ms, vec![]).expect("propose");
        node.process(&mut wire).expect("process");
    }
    assert_eq!(node.state_machine().0, vec![5_000, 5_000, 7_000]);
}

fn envelope(from: u64, to: u64, msg: Message) -> Vec<u8> {
    Envelope {
        group_id: GROUP_ID,
        from,
        to,
        msgs: vec![msg],
    }
    .encode()
}

#[test]
fn forged_and_garbage_messages_are_dropped_without_panic() {
    // Goal: nothing a peer can send crashes a replica. raft-rs aborts on a
    // heartbeat whose commit lies beyond the log; the driver drops it.
    let mut group = Group::bootstrap(3);
    let leader = group.elect();
    let client = group.register(leader);
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let term = group.node(follower).status().term;

    let heartbeat = Message {
        msg_type: MessageType::MsgHeartbeat as i32,
        from: leader,
        to: follower,
        term,
        commit: 1 << 40,
        ..Default::default()
    };
    let report = group
        .node(follower)
        .step(&envelope(leader, follower, heartbeat.clone()));
    assert_eq!(report.accepted_count, 0);
    assert!(
        matches!(report.first_drop, Some(DropReason::CommitBeyondLog { .. })),
        "{report:?}"
    );

    let wrong_group = Envelope {
        group_id: GROUP_ID + 1,
        from: leader,
        to: follower,
        msgs: vec![heartbeat.clone()],
    };
    let report = group.node(follower).step(&wrong_group.encode());
    assert_eq!(report.first_drop, Some(DropReason::WrongGroup));

    let report = group
        .node(follower)
        .step(&envelope(leader, follower + 10, heartbeat.clone()));
    assert!(matches!(
        report.first_drop,
        Some(DropReason::WrongRecipient { .. })
    ));

    let hup = Message {
        msg_type: MessageType::MsgHup as i32,
        from: leader,
        to: follower,
        ..Default::default()
    };
    let report = group.node(follower).step(&envelope(leader, follower, hup));
    assert!(matches!(
        report.first_drop,
        Some(DropReason::ForbiddenType(_))
    ));

    let unknown = Message {
        msg_type: 999,
        from: leader,
        to: follower,
        ..Default::default()
    };
    let report = group
        .node(follower)
        .step(&envelope(leader, follower, unknown));
    assert_eq!(
        report.first_drop,
        Some(DropReason::UnknownEnum("message type"))
    );

    let mut bad_append = Message {
        msg_type: MessageType::MsgAppend as i32,
        from: leader,
        to: follower,
        term,
        index: 3,
        ..Default::default()
    };
    bad_append.entries.push(raft::eraftpb::Entry {
        index: 9,
        term,
        ..Default::default()
    });
    let report = group
        .node(follower)
        .step(&envelope(leader, follower, bad_append));
    assert!(matches!(
        report.first_drop,
        Some(DropReason::MalformedAppend(_))
    ));

    for length in [0usize, 1, 37, 38, 500] {
        let garbage: Vec<u8> = (0..length).map(|i| (i * 31 + 7) as u8).collect();
        assert_eq!(group.node(follower).step(&garbage).accepted_count, 0);
    }
    // The group still works.
    group
        .write(leader, client, 1, &KvOp::Put { key: 2, value: 3 })
        .expect("the group still serves");
    assert!(group.node(follower).counters().messages_dropped_count >= 7);
}

#[test]
fn a_learner_joins_with_metadata_is_promoted_and_a_voter_is_removed() {
    // Goal: the membership cycle of a replacement, with metadata that every
    // replica agrees on. Method: add replica 4 as a learner (it needs a
    // snapshot: the log starts at 2), promote it, remove replica 1 or 2.
    let mut group = Group::bootstrap(3);
    let leader = group.elect();
    let client = group.register(leader);
    group
        .write(leader, client, 1, &KvOp::Put { key: 0, value: 10 })
        .expect("put");

    group.add_joiner(4);

    let change = group
        .node(leader)
        .add_learner(4, b"12D3KooWjoiner".to_vec())
        .expect("add learner");
    let again = group.node(leader).add_learner(5, vec![]);
    assert_eq!(
        again.expect_err("one change at a time"),
        RequestError::MembershipChangeIgnored
    );
    group.run_until(300, "learner added and caught up", |g| {
        let status = g.node(4).status();
        status.applied > 0 && status.membership.learners == vec![4]
    });
    let applied = group.outputs[(leader - 1) as usize].iter().any(|o| {
        matches!(o, Output::MembershipChange { change_id, result: Ok(m) } if *change_id == change && m.learners == vec![4])
    });
    assert!(applied, "the leader reports the change");
    for id in 1..=4 {
        let membership = group.node(id).members();
        assert_eq!(
            membership.metadata_of(4),
            Some(&b"12D3KooWjoiner"[..]),
            "replica {id}"
        );
        assert_eq!(membership.metadata_of(1), Some(&b"peer-1"[..]));
        // The per-message shortcuts agree with the whole membership.
        for member in 1..=5 {
            assert_eq!(
                group.node(id).is_member(member),
                membership.contains(member)
            );
            assert_eq!(
                group.node(id).metadata_of(member),
                membership.metadata_of(member)
            );
        }
    }
    assert!(group.node(4).counters().snapshots_installed_count >= 1);
    assert_eq!(
        decode(&raft_core::StateMachine::query(
            group.node(4).state_machine(),
            &encode(&KvOp::Get { key: 0 })
        )),
        KvResult::Value(Some(10))
    );

    group.node(leader).promote_learner(4).expect("promote");
    group.run_until(300, "promoted", |g| {
        g.node(leader).members().voters == vec![1, 2, 3, 4]
    });

    let victim = (1..=3)
        .find(|id| *id != leader)
        .expect("a non-leader voter");
    group.node(leader).remove_node(victim).expect("remove");
    group.run_until(300, "removed", |g| {
        !g.node(leader).members().contains(victim)
    });
    assert!(!group.node(leader).is_member(victim));
    group.run_until(300, "the victim learns it", |g| {
        g.outputs[(victim - 1) as usize]
            .iter()
            .any(|o| matches!(o, Output::Event(Event::Removed)))
    });
    let error = group
        .node(leader)
        .add_learner(victim, vec![])
        .expect_err("ids are not reused");
    assert!(matches!(error, RequestError::InvalidMembershipChange(_)));
    // Messages from the removed replica are refused from now on.
    let term = group.node(leader).status().term;
    let from_victim = Message {
        msg_type: MessageType::MsgHeartbeatResponse as i32,
        from: victim,
        to: leader,
        term,
        ..Default::default()
    };
    let report = group
        .node(leader)
        .step(&envelope(victim, leader, from_victim));
    assert_eq!(
        report.first_drop,
        Some(DropReason::RemovedSender { from: victim })
    );
    group
        .write(leader, client, 2, &KvOp::Put { key: 0, value: 11 })
        .expect("still serves");
}

#[test]
fn leadership_transfers_on_request() {
    let mut group = Group::bootstrap(3);
    let leader = group.elect();
    let client = group.register(leader);
    group
        .write(leader, client, 1, &KvOp::Put { key: 0, value: 1 })
        .expect("put");
    let target = (1..=3).find(|id| *id != leader).expect("another voter");
    group
        .node(leader)
        .transfer_leader(target)
        .expect("transfer");
    group.run_until(300, "the new leader", |g| g.leader() == Some(target));
}

#[test]
fn a_minority_cannot_commit_and_the_request_is_retryable() {
    // Goal: an isolated leader's proposal never succeeds; its client gets
    // a retryable outcome (superseded or timed out), never a false Ok.
    let mut group = Group::bootstrap(3);
    let leader = group.elect();
    let client = group.register(leader);
    group.isolated[(leader - 1) as usize] = true;
    group
        .node(leader)
        .propose(client, 1, 0, encode(&KvOp::Put { key: 3, value: 3 }))
        .expect("accepted locally");
    let mut outcome = None;
    group.run_until(500, "an outcome", |g| {
        outcome = g.take_proposal(leader, client, 1);
        outcome.is_some()
    });
    let error = outcome
        .expect("outcome")
        .expect_err("a minority cannot commit");
    assert!(error.is_retryable(), "{error}");
    group.isolated[(leader - 1) as usize] = false;
    let new_leader = group.elect();
    group
        .write(new_leader, client, 1, &KvOp::Put { key: 3, value: 3 })
        .expect("the retry succeeds");
}

#[test]
fn opening_refuses_empty_corrupt_and_reused_directories() {
    let empty = tempfile::tempdir().expect("tempdir");
    let opened = Node::open(
        FsDir::open(empty.path()).expect("dir"),
        common::config(),
        KvMachine::default(),
        Options::with_seed(1),
    );
    assert!(matches!(opened, Err(Error::NotInitialized)));

    let mut group = Group::bootstrap(3);
    let leader = group.elect();
    let client = group.register(leader);
    for seq in 1..=20 {
        group
            .write(leader, client, seq, &KvOp::Put { key: 0, value: seq })
            .expect("put");
    }
    let bootstrap = Bootstrap {
        group_id: GROUP_ID,
        id: 1,
        voters: vec![(1, vec![])],
        max_sessions_count: 10,
        session_timeout_ms: common::SESSION_TIMEOUT_MS,
    };
    let again = Node::bootstrap(
        FsDir::open(group.dirs[0].path()).expect("dir"),
        common::config(),
        KvMachine::default(),
        bootstrap,
        Options::with_seed(1),
    );
    assert!(matches!(again, Err(Error::AlreadyInitialized)));

    // Flip a bit in the middle of the oldest segment of replica 1.
    group.nodes[0] = None;
    let mut segments: Vec<_> = std::fs::read_dir(group.dirs[0].path())
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("wal-"))
        })
        .collect();
    segments.sort();
    let mut bytes = std::fs::read(&segments[0]).expect("read");
    let at = bytes.len() / 3;
    bytes[at] ^= 0x04;
    std::fs::write(&segments[0], bytes).expect("write");
    let opened = Node::open(
        FsDir::open(group.dirs[0].path()).expect("dir"),
        common::config(),
        KvMachine::default(),
        Options::with_seed(1),
    );
    match opened {
        Err(error @ Error::Corruption { .. }) => {
            assert!(error.to_string().contains("refusing to start"), "{error}");
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("a corrupt log was accepted"),
    }
}

#[test]
fn fsyncs_are_batched_per_ready() {
    // Goal: group commit. Proposals made between two `process` calls share
    // one Ready: one frame, one fsync on the leader.
    let mut group = Group::bootstrap(3);
    let leader = group.elect();
    let client = group.register(leader);
    group
        .write(leader, client, 1, &KvOp::Put { key: 0, value: 0 })
        .expect("warm up");
    let before = group.node(leader).counters().storage;
    for client in 10..110 {
        group
            .node(leader)
            .propose(
                0,
                client,
                0,
                encode(&KvOp::Put {
                    key: 1,
                    value: client,
                }),
            )
            .expect("propose");
    }
    let mut wire = common::Wire::default();
    group.node(leader).process(&mut wire).expect("process");
    let after = group.node(leader).counters().storage;
    assert_eq!(
        after.entries_persisted_count - before.entries_persisted_count,
        100
    );
    assert_eq!(
        after.fsync_count - before.fsync_count,
        1,
        "one fsync for 100 entries"
    );
    // One envelope per follower carries them.
    let mut peers: Vec<u64> = wire.queue.iter().map(|(to, _)| *to).collect();
    peers.sort_unstable();
    assert_eq!(peers.len(), 2, "{peers:?}");
}

#[test]
fn sessions_registered_at_the_same_instant_never_collide() {
    // Goal: the collision that lost acknowledged writes cannot happen.
    // Before sessions were registered through the log, a client id came
    // from the client's clock; two clients starting in the same
    // millisecond shared `(client_id, seq = 1)`, and the second put was
    // answered with the first one's result without applying. Method: two
    // clients register with the same clock, each puts its own value with
    // seq 1; then a forced collision (one id, one seq, other bytes).
    let mut group = Group::bootstrap(3);
    let leader = group.elect();
    let a = group.try_register(leader, 5_000).expect("register a");
    let b = group.try_register(leader, 5_000).expect("register b");
    assert_ne!(a, b, "ids are log indexes: unique by construction");
    for (client, key) in [(a, 1), (b, 2)] {
        let put = KvOp::Put {
            key,
            value: u64::from(key) * 10,
        };
        assert_eq!(
            decode(&group.write_at(leader, client, 1, 5_000, &put).expect("put")),
            KvResult::Done
        );
    }
    // Both applied: each key holds its own value.
    let applied = group.node(leader).counters().commands_applied_count;
    let collide = KvOp::Put { key: 1, value: 99 };
    let error = group
        .write_at(leader, b, 1, 5_000, &collide)
        .expect_err("same (client, seq), other bytes");
    assert_eq!(
        error,
        RequestError::SessionConflict {
            client_id: b,
            seq: 1
        }
    );
    assert!(!error.is_retryable());
    assert_eq!(
        group.node(leader).counters().commands_applied_count,
        applied,
        "nothing applied"
    );
    assert_eq!(group.node(leader).counters().session_conflicts_count, 1);
    // A true retry (same bytes) still gets the first result.
    let retry = KvOp::Put { key: 2, value: 20 };
    assert_eq!(
        decode(&group.write_at(leader, b, 1, 5_000, &retry).expect("retry")),
        KvResult::Done
    );
}

#[test]
fn an_unknown_or_expired_session_is_refused_loudly() {
    // Goal: a command from a session the group does not hold (never
    // registered, or idle past the timeout in log time) gets a clear,
    // non-retryable error and applies nothing.
    let mut group = Group::bootstrap(3);
    let leader = group.elect();
    let error = group
        .write(leader, 424_242, 1, &KvOp::Put { key: 0, value: 1 })
        .expect_err("never registered");
    assert_eq!(error, RequestError::SessionExpired { client_id: 424_242 });
    assert!(!error.is_retryable());

    let idle = group.try_register(leader, 1_000).expect("register");
    let busy = group.try_register(leader, 1_000).expect("register");
    group
        .write_at(leader, idle, 1, 1_000, &KvOp::Put { key: 0, value: 1 })
        .expect("put");
    let mid_ms = 1_000 + common::SESSION_TIMEOUT_MS / 2;
    group
        .write_at(leader, busy, 1, mid_ms, &KvOp::Put { key: 1, value: 0 })
        .expect("put");
    // Log time moves past the idle session's timeout (not the busy one's).
    let later_ms = 1_000 + common::SESSION_TIMEOUT_MS + 1;
    group
        .write_at(leader, busy, 2, later_ms, &KvOp::Put { key: 1, value: 1 })
        .expect("put");
    let applied = group.node(leader).counters().commands_applied_count;
    let error = group
        .write_at(leader, idle, 2, later_ms, &KvOp::Put { key: 0, value: 2 })
        .expect_err("expired");
    assert_eq!(error, RequestError::SessionExpired { client_id: idle });
    assert_eq!(
        group.node(leader).counters().commands_applied_count,
        applied
    );
    // Expiry is replicated state: it survives restarts like the rest.
    for id in 1..=3 {
        group.restart(id);
    }
    let leader = group.elect();
    let error = group
        .write_at(leader, idle, 2, later_ms, &KvOp::Put { key: 0, value: 2 })
        .expect_err("still expired");
    assert_eq!(error, RequestError::SessionExpired { client_id: idle });
    group
        .write_at(leader, busy, 3, later_ms, &KvOp::Put { key: 1, value: 2 })
        .expect("the busy session lives on");
}

#[test]
fn a_poisoned_snapshot_is_dropped_before_it_is_persisted() {
    // Goal: a snapshot whose state the state machine cannot restore never
    // reaches the disk. Persisted, it would make the replica fail at every
    // open: a crash loop from one message. Method: a learner joins (it
    // needs a snapshot); the leader's snapshot is stepped first with its
    // state's last byte spoiled, then the real one.
    let mut group = Group::bootstrap(3);
    let leader = group.elect();
    let client = group.register(leader);
    group
        .write(leader, client, 1, &KvOp::Put { key: 0, value: 10 })
        .expect("put");
    group.add_joiner(4);
    group
        .node(leader)
        .add_learner(4, b"joiner".to_vec())
        .expect("add learner");
    let limits = group.node(4).envelope_limits();
    let mut poisoned = None;
    group.run_until(300, "a snapshot for the learner", |g| {
        poisoned = g.wire.queue.iter().find_map(|(to, bytes)| {
            let mut envelope = Envelope::decode(bytes, &limits).ok()?;
            let snapshot = envelope.msgs.first_mut()?.snapshot.as_mut()?;
            // The state machine's bytes end the snapshot data.
            let last = snapshot.data.last_mut()?;
            *last = 0xFF;
            (*to == 4).then(|| envelope.encode())
        });
        poisoned.is_some()
    });
    let report = group.node(4).step(&poisoned.expect("a snapshot"));
    assert!(
        matches!(&report.first_drop, Some(DropReason::BadSnapshot(reason)) if reason.contains("state machine")),
        "{:?}",
        report.first_drop
    );
    let mut wire = common::Wire::default();
    group
        .node(4)
        .process(&mut wire)
        .expect("nothing was persisted to fail on");
    assert_eq!(group.node(4).status().applied, 0);
    group.restart(4);
    group.run_until(300, "the learner caught up from the real snapshot", |g| {
        g.node(4).status().applied > 0
    });
}

#[test]
fn a_leaders_appends_leave_before_its_own_fsync() {
    // Goal: `send_early` sends the leader's appends with nothing written
    // yet, so the followers persist while the leader does; `process` then
    // writes the staged Ready (one fsync) and the write commits. And the
    // caller's obligation is enforced: stepping a staged node panics.
    let mut group = Group::bootstrap(3);
    let leader = group.elect();
    let client = group.register(leader);
    group
        .write(leader, client, 1, &KvOp::Put { key: 0, value: 0 })
        .expect("warm up");
    group
        .node(leader)
        .propose(client, 2, 0, encode(&KvOp::Put { key: 1, value: 7 }))
        .expect("propose");
    let before = group.node(leader).counters();
    let mut early = common::Wire::default();
    let sent = group
        .node(leader)
        .send_early(&mut early)
        .expect("send_early");
    let staged = group.node(leader).counters();
    assert_eq!(sent, 2, "one envelope per follower");
    assert_eq!(early.queue.len(), 2);
    assert_eq!(
        staged.storage.fsync_count, before.storage.fsync_count,
        "nothing written before the appends left"
    );
    assert_eq!(
        staged.envelopes_sent_early_count - before.envelopes_sent_early_count,
        2
    );
    // The followers persist and answer before the leader's own write.
    group.wire.queue.extend(early.queue);
    let mut wire = common::Wire::default();
    group.node(leader).process(&mut wire).expect("process");
    assert_eq!(
        group.node(leader).counters().storage.fsync_count,
        before.storage.fsync_count + 1
    );
    group.wire.queue.extend(wire.queue);
    let mut outcome = None;
    group.run_until(100, "the write", |g| {
        outcome = g.take_proposal(leader, client, 2);
        outcome.is_some()
    });
    assert_eq!(
        decode(&outcome.expect("outcome").expect("applied")),
        KvResult::Done
    );

    let mut early = common::Wire::default();
    group
        .node(leader)
        .propose(client, 3, 0, encode(&KvOp::Put { key: 2, value: 8 }))
        .expect("propose");
    assert!(
        group
            .node(leader)
            .send_early(&mut early)
            .expect("send_early")
            > 0
    );
    let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        group.node(leader).tick();
    }));
    assert!(
        stepped.is_err(),
        "a tick between send_early and process must panic"
    );
}

/// A state machine whose state is every command's bytes, appended: its
/// snapshot is as large as the commands applied.
#[derive(Default)]
struct Blob(Vec<u8>);

impl raft_core::StateMachine for Blob {
    fn apply(&mut self, _: &raft_core::ApplyContext, command: &[u8]) -> Vec<u8> {
        self.0.extend_from_slice(command);
        vec![]
    }
    fn query(&self, _: &[u8]) -> Vec<u8> {
        (self.0.len() as u64).to_le_bytes().to_vec()
    }
    fn snapshot(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.0 = snapshot.to_vec();
        Ok(())
    }
    fn validate_snapshot(&self, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

fn blob_node(dir: &std::path::Path, config: raft_core::Config) -> Node<Blob, FsDir> {
    let bootstrap = Bootstrap {
        group_id: 1,
        id: 1,
        voters: vec![(1, vec![])],
        max_sessions_count: 10,
        session_timeout_ms: common::SESSION_TIMEOUT_MS,
    };
    Node::bootstrap(
        FsDir::open(dir).expect("dir"),
        config,
        Blob::default(),
        bootstrap,
        Options::with_seed(1),
    )
    .expect("bootstrap")
}

#[test]
fn a_snapshot_spreads_over_bounded_rounds_and_survives_a_crash_midway() {
    // Goal: a snapshot never stalls one `process` call: it is written a
    // bounded chunk per call while the node keeps committing, compaction
    // too; and a crash in the middle leaves the previous snapshot and the
    // log to reopen from. Method: one voter, a 256 KiB state, 4 KiB
    // chunks; count the calls and the bytes each wrote; drop the node
    // midway through a second snapshot and reopen.
    const CHUNK_BYTES: usize = 4096;
    const COMMAND_BYTES: usize = 4096;
    const COMPACT_ENTRIES: u64 = 8;
    let config = raft_core::Config {
        snapshot_interval_entries: 64,
        catch_up_entries: 0,
        segment_max_bytes: 64 * 1024,
        snapshot_chunk_bytes_max: CHUNK_BYTES,
        snapshot_unsynced_bytes_max: 4 * CHUNK_BYTES as u64,
        compact_entries_per_process_max_count: COMPACT_ENTRIES,
        ..common::config()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = blob_node(dir.path(), config.clone());
    let mut wire = common::Wire::default();
    for _ in 0..50 {
        node.tick();
        node.process(&mut wire).expect("process");
        if node.is_leader() {
            break;
        }
    }
    assert!(node.is_leader(), "a single voter elects itself");
    let mut seq = 0;
    let mut propose = |node: &mut Node<Blob, FsDir>, bytes: usize| {
        seq += 1;
        node.propose(0, seq, 1_000, vec![seq as u8; bytes])
            .expect("propose");
    };
    // Fill the state up to the first snapshot.
    while node.snapshot_in_progress().is_none() {
        propose(&mut node, COMMAND_BYTES);
        node.process(&mut wire).expect("process");
    }
    let first_snapshot_index = node.status().snapshot_index;
    let state_bytes = node.state_machine().0.len();
    // Captured at the first snapshot point, 64 entries after the
    // bootstrap's snapshot at index 1, once that entry applied: all of them
    // but the leader's first entries are commands.
    assert!(state_bytes >= 62 * COMMAND_BYTES, "{state_bytes} bytes");
    // One small proposal per call while the snapshot is written, then
    // compacted: every call writes at most a chunk (plus the frames around
    // it) and drops a bounded number of entries, and Raft keeps committing
    // meanwhile.
    let (mut calls, mut snapshot_calls, mut committed) = (0, 0, 0);
    let frame_overhead_bytes = 256;
    while node.snapshot_in_progress().is_some() || node.has_ready() {
        let before = node.counters().storage;
        if before.snapshot_write_count == 1 {
            // Until the snapshot is durable (the bootstrap wrote the first).
            propose(&mut node, 16);
            snapshot_calls += 1;
        }
        for output in node.process(&mut wire).expect("process") {
            if matches!(output, Output::Proposal { result: Ok(_), .. }) {
                committed += 1;
            }
        }
        let after = node.counters().storage;
        let written = after.snapshot_bytes_written - before.snapshot_bytes_written;
        assert!(
            written <= (CHUNK_BYTES + frame_overhead_bytes) as u64,
            "one call wrote {written} snapshot bytes"
        );
        let compacted = after.entries_compacted_count - before.entries_compacted_count;
        assert!(
            compacted <= COMPACT_ENTRIES,
            "one call compacted {compacted} entries"
        );
        calls += 1;
        assert!(calls < 10_000, "the snapshot never finished");
    }
    assert!(
        // The call that began it wrote the first chunk.
        snapshot_calls + 1 >= (state_bytes - COMMAND_BYTES) / CHUNK_BYTES,
        "a {state_bytes}-byte snapshot took only {snapshot_calls} calls"
    );
    assert!(
        committed >= snapshot_calls,
        "only {committed} commits in {snapshot_calls} calls"
    );
    assert!(calls > snapshot_calls, "compaction took calls of its own");
    let status = node.status();
    assert!(status.snapshot_index > first_snapshot_index, "{status:?}");
    assert!(node.counters().snapshots_taken_count >= 1);
    assert!(node.counters().storage.entries_compacted_count >= 64);

    // A second snapshot, dropped halfway (a crash: files as written).
    while node.snapshot_in_progress().is_none() {
        propose(&mut node, COMMAND_BYTES);
        node.process(&mut wire).expect("process");
    }
    for _ in 0..10 {
        node.process(&mut wire).expect("process");
    }
    assert!(node.snapshot_in_progress().is_some(), "still writing");
    let snapshot_index = node.status().snapshot_index;
    let applied = node.status().applied;
    let state = node.state_machine().0.clone();
    drop(node);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "snap-part.tmp"), "{names:?}");
    let mut node = Node::open(
        FsDir::open(dir.path()).expect("dir"),
        config,
        Blob::default(),
        Options::with_seed(2),
    )
    .expect("reopens from the previous snapshot and the log");
    assert_eq!(node.status().snapshot_index, snapshot_index);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    for _ in 0..50 {
        node.tick();
        node.process(&mut wire).expect("process");
        if node.status().applied >= applied {
            break;
        }
    }
    assert_eq!(
        node.state_machine().0,
        state,
        "the log replays what applied"
    );
}

#[test]
fn the_replicas_of_a_group_take_their_snapshots_at_different_indexes() {
    // Goal: replicas do not snapshot together (a quorum always has members
    // not writing one; replicas sharing a disk do not write theirs at
    // once). Method: three voters, snapshots every 50 entries, 200 writes
    // one at a time; record each replica's snapshot indexes and check
    // they sit about a third of the interval apart.
    let mut group = Group::bootstrap(3);
    let leader = group.elect();
    let client = group.register(leader);
    let interval = common::config().snapshot_interval_entries;
    let mut taken: Vec<std::collections::BTreeSet<u64>> = vec![Default::default(); 3];
    for seq in 1..=200u8 {
        let put = KvOp::Put {
            key: seq,
            value: u64::from(seq),
        };
        group
            .write(leader, client, u64::from(seq), &put)
            .expect("put");
        for id in 1..=3 {
            let index = group.node(id).status().snapshot_index;
            taken[(id - 1) as usize].insert(index);
        }
    }
    for (replica, indexes) in taken.iter_mut().enumerate() {
        // Not the bootstrap's snapshot (index 1), nor the first after it:
        // that comes at the first point at least half an interval later,
        // which for some replicas is off their points. From the second on,
        // each is on its own points.
        indexes.remove(&1);
        let first = indexes.pop_first();
        assert!(
            first.is_some() && indexes.len() >= 2,
            "replica {replica}: {indexes:?}"
        );
    }
    for a in 0..3 {
        for b in (a + 1)..3 {
            for x in &taken[a] {
                for y in &taken[b] {
                    assert!(
                        x.abs_diff(*y) >= interval / 4,
                        "replicas {a} and {b} snapshotted at {x} and {y}: {taken:?}"
                    );
                }
            }
        }
    }
}
