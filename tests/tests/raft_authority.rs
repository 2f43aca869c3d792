//! Least authority around a Raft group, end to end on real hosts:
//!
//! - a worker ROM spawned with grants only (a view of the replicas'
//!   `request` anchors and a consume-only token on `urls`) can lease from
//!   `urls` and nothing else: every other verb, another topic, the KV,
//!   minting a wider token, lifecycle and membership are refused with
//!   "not permitted" (exit code 77), and nothing changes;
//! - a token with every verb but admin cannot destroy the group, remove a
//!   replica or add one;
//! - Raft messages that do not carry the group's MAC are not stepped,
//!   whatever their content (a higher term from an unknown id, a commit
//!   past the follower's log) and whichever host they came through (here
//!   the leader's, so the origin check alone would pass);
//! - a poisoned snapshot (well framed, sealed with the group's own key and
//!   sent from the leader's host, as a faulty member could) is refused
//!   before it is persisted: the follower keeps its log, and after a
//!   kill -9 and restart of its host it comes back and catches up rather
//!   than crash-looping on a snapshot it cannot restore; and a grant-only
//!   process on that host still reaches the group through its readPath
//!   view.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/native.rs"]
mod support;

use std::time::Duration;

use serde_json::Value;
use support::{cap_at, connect_host, native, raft_as_worker, spawn_and_wait, Grant};
use ww_tests::raft_rom::{self, json_of};
use ww_tests::{rom, wait_until, Output};

const TIMEOUT: Duration = Duration::from_secs(60);

/// The exit code of a refused operation in `raft.wasm`.
const NOT_PERMITTED: i32 = 77;

fn raft(addr: &str, args: &[&str]) -> Output {
    raft_rom::run(addr, args, Duration::from_secs(120))
}

fn token(addr: &str, verbs: &str, topics: &[&str]) -> Vec<u8> {
    let mut args = vec!["grant", "--json", "--verbs", verbs];
    for topic in topics {
        args.extend(["--topic", topic]);
    }
    let out = raft(addr, &args);
    out.assert_ok();
    let hex = json_of(&out)["token"].as_str().unwrap().to_owned();
    (0..hex.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&hex[index..index + 2], 16).unwrap())
        .collect()
}

/// Runs `raft.wasm ARGS` as a process of host `addr` holding only a view
/// of the replicas and `token`; returns its exit code.
fn as_worker(addr: &str, token: &[u8], runs: &[&[&str]]) -> Vec<i32> {
    raft_as_worker(addr, &rom("raft"), token, runs, TIMEOUT)
}

fn stats(addr: &str, topic: &str) -> Value {
    let out = raft(addr, &["stats", topic]);
    out.assert_ok();
    json_of(&out)
}

/// The leader's and a follower's `status` entries, and the address of the
/// leader's host.
fn leader_and_follower(cluster: &ww_tests::Cluster, client: &str) -> (Value, Value, String) {
    let replicas = raft_rom::status(client, TIMEOUT);
    let find = |role: &str| {
        replicas
            .iter()
            .find(|r| r["role"] == role)
            .unwrap_or_else(|| panic!("no {role} in {replicas:?}"))
            .clone()
    };
    let (leader, follower) = (find("leader"), find("follower"));
    let leader_addr = cluster
        .hosts
        .iter()
        .find(|host| host.peer_id == leader["peer_id"].as_str().unwrap())
        .unwrap()
        .addr
        .clone();
    (leader, follower, leader_addr)
}

#[test]
fn a_consume_only_worker_can_lease_and_nothing_else() {
    let cluster = raft_rom::deployed(4, TIMEOUT);
    let admin = cluster.hosts[0].addr.clone();
    raft(&admin, &["enqueue", "urls", "a", "b"]).assert_ok();
    raft(&admin, &["enqueue", "results", "r"]).assert_ok();
    raft(&admin, &["put", "k", "v"]).assert_ok();
    let consume = token(&admin, "consume", &["urls"]);
    let members_before = raft_rom::status(&admin, TIMEOUT)[0]["members"].clone();
    let a_follower = raft_rom::status(&admin, TIMEOUT)
        .iter()
        .find(|replica| replica["role"] == "follower")
        .unwrap()["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let remove = ["remove-replica", a_follower.as_str()];
    let refused: Vec<&[&str]> = vec![
        &["enqueue", "urls", "x"],
        &["purge", "urls"],
        &["stats", "urls"],
        &["peek", "urls"],
        &["lease", "results"],
        &["get", "k"],
        &["put", "k", "stolen"],
        &["grant", "--verbs", "all"],
        &["grant", "--verbs", "consume"],
        &["destroy"],
        &remove,
        &["add-replica"],
    ];
    // Host 1 runs a replica: the worker sits next to one, as crawl workers
    // will.
    let worker_host = cluster.hosts[1].addr.clone();
    let codes = as_worker(&worker_host, &consume, &refused);
    for (args, code) in refused.iter().zip(&codes) {
        assert_eq!(*code, NOT_PERMITTED, "{args:?} was not refused");
    }
    let leased = as_worker(&worker_host, &consume, &[&["lease", "urls"]]);
    assert_eq!(leased, [0], "the granted verb must work");

    // Nothing changed but the one lease.
    let urls = stats(&admin, "urls");
    assert_eq!(
        (urls["ready"].as_u64(), urls["leased"].as_u64()),
        (Some(1), Some(1)),
        "{urls}"
    );
    let results = stats(&admin, "results");
    assert_eq!(results["ready"].as_u64(), Some(1), "{results}");
    let out = raft(&admin, &["get", "k"]);
    out.assert_ok();
    assert!(out.stdout.trim() == "v", "{out:#?}");
    let replicas = raft_rom::status(&admin, TIMEOUT);
    assert_eq!(replicas.len(), 3, "{replicas:?}");
    assert_eq!(replicas[0]["members"], members_before);
}

#[test]
fn without_admin_authority_lifecycle_and_membership_are_refused() {
    let cluster = raft_rom::deployed(4, TIMEOUT);
    let admin = cluster.hosts[0].addr.clone();
    let everything_but_admin = token(
        &admin,
        "enqueue,consume,read,kv-read,kv-write,topic-admin",
        &[],
    );
    let leader = raft_rom::status(&admin, TIMEOUT)
        .iter()
        .find(|replica| replica["role"] == "leader")
        .unwrap()["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let remove = ["remove-replica", leader.as_str()];
    let runs: Vec<&[&str]> = vec![
        &["destroy"],
        &remove,
        &["add-replica"],
        &["grant", "--verbs", "admin"],
    ];
    let codes = as_worker(&cluster.hosts[1].addr, &everything_but_admin, &runs);
    for (args, code) in runs.iter().zip(&codes) {
        assert_eq!(*code, NOT_PERMITTED, "{args:?} was not refused");
    }
    // The verbs it holds work.
    let ok = as_worker(
        &cluster.hosts[1].addr,
        &everything_but_admin,
        &[&["put", "k", "v"], &["enqueue", "t", "m"]],
    );
    assert_eq!(ok, [0, 0]);
    let replicas = raft_rom::status(&admin, TIMEOUT);
    assert_eq!(replicas.len(), 3, "{replicas:?}");
    assert!(replicas
        .iter()
        .all(|replica| replica["members"].as_array().unwrap().len() == 3));
}

#[test]
fn raft_messages_without_the_group_mac_are_not_stepped() {
    let cluster = raft_rom::deployed(4, TIMEOUT);
    let client = cluster.hosts[0].addr.clone();
    let (leader, follower, leader_addr) = leader_and_follower(&cluster, &client);
    let follower_peer = follower["peer_id"].as_str().unwrap().to_owned();
    let group_id = u128::from_str_radix(follower["group_id"].as_str().unwrap(), 16).unwrap();
    let term_before = leader["term"].as_u64().unwrap();
    let follower_id = follower["raft_id"].as_u64().unwrap();
    let dropped_before = follower["dropped_messages"].as_u64().unwrap();

    // A vote request from an id no member has, with a far higher term.
    let mut vote = raft::eraftpb::Message::default();
    vote.set_msg_type(raft::eraftpb::MessageType::MsgRequestVote);
    vote.from = 999;
    vote.to = follower_id;
    vote.term = term_before + 1000;
    vote.index = 1_000_000;
    vote.log_term = term_before + 1000;
    // An append from the leader's id whose commit lies past the log.
    let mut append = raft::eraftpb::Message::default();
    append.set_msg_type(raft::eraftpb::MessageType::MsgAppend);
    append.from = leader["raft_id"].as_u64().unwrap();
    append.to = follower_id;
    append.term = term_before;
    append.index = follower["last_index"].as_u64().unwrap();
    append.log_term = term_before;
    append.commit = 1_000_000;
    let envelopes: Vec<Vec<u8>> = [vote, append]
        .into_iter()
        .map(|msg| {
            raft_core::Envelope {
                group_id,
                from: msg.from,
                to: msg.to,
                msgs: vec![msg],
            }
            .encode()
        })
        .collect();
    // Sent through the leader's host: the origin the follower sees is a
    // member's, so only the MAC tells the forgery apart.
    let addr: libp2p::Multiaddr = leader_addr.parse().unwrap();
    native(async {
        let (_node, host) = connect_host(&addr).await;
        let root = host.root_request().send().pipeline.get_anchor();
        let inbox: ww_api::sender::Client =
            cap_at(&root, &format!("/{follower_peer}/raft/v1/inbox")).await;
        for envelope in &envelopes {
            let framed = raft_client::proto::frame_envelopes([envelope.as_slice()]);
            // Without a MAC, and with a MAC of another key.
            let forged_key = raft_client::access::GroupKey::generate(b"not the group's");
            for data in [framed.clone(), forged_key.seal(framed)] {
                let mut send = inbox.send_request();
                send.get().init_message().set_data(&data);
                send.send().promise.await.unwrap();
            }
        }
    });
    wait_until(
        "the forged messages to be reported dropped",
        TIMEOUT,
        || {
            let replicas = raft_rom::status(&client, TIMEOUT);
            let follower = replicas
                .iter()
                .find(|r| r["peer_id"] == follower_peer.as_str())?;
            (follower["dropped_messages"].as_u64()? >= dropped_before + 4
                && follower["last_drop"].as_str()?.contains("MAC"))
            .then_some(())
        },
    );
    let replicas = raft_rom::status(&client, TIMEOUT);
    assert!(
        replicas
            .iter()
            .all(|r| r["term"].as_u64().unwrap() < term_before + 1000
                && r["commit"].as_u64().unwrap() < 1_000_000),
        "a forged term or commit was adopted: {replicas:?}"
    );
    raft(&client, &["put", "still", "works"]).assert_ok();
    let out = raft(&client, &["get", "still"]);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), "works", "{out:#?}");
}

#[test]
fn a_poisoned_snapshot_is_refused_before_it_is_persisted() {
    let mut cluster = raft_rom::deployed(4, TIMEOUT);
    let client = cluster.hosts[0].addr.clone();
    raft(&client, &["put", "before", "1"]).assert_ok();
    let (leader, follower, leader_addr) = leader_and_follower(&cluster, &client);
    let follower_peer = follower["peer_id"].as_str().unwrap().to_owned();
    let group_id = u128::from_str_radix(follower["group_id"].as_str().unwrap(), 16).unwrap();
    let term = leader["term"].as_u64().unwrap();
    let forged_index = follower["last_index"].as_u64().unwrap() + 100;
    let dropped_before = follower["dropped_messages"].as_u64().unwrap();
    let voters: Vec<u64> = leader["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member| member["id"].as_u64().unwrap())
        .collect();
    assert_eq!(voters.len(), 3, "{leader:#?}");

    // The deployer (a root holder of host 0) holds the admin token and so
    // may read the group key: what a faulty member holds too.
    let key = native(async {
        let group = raft_client::native::connect(&[client.parse().unwrap()], "v1")
            .await
            .unwrap();
        group.group_key().await.unwrap()
    });
    let snapshot = |data: Vec<u8>| {
        let mut msg = raft::eraftpb::Message::default();
        msg.set_msg_type(raft::eraftpb::MessageType::MsgSnapshot);
        msg.from = leader["raft_id"].as_u64().unwrap();
        msg.to = follower["raft_id"].as_u64().unwrap();
        msg.term = term;
        let mut snap = raft::eraftpb::Snapshot::default();
        let meta = snap.metadata.get_or_insert_with(Default::default);
        meta.index = forged_index;
        meta.term = term;
        meta.conf_state
            .get_or_insert_with(Default::default)
            .voters
            .clone_from(&voters);
        snap.data = data;
        msg.snapshot = Some(snap);
        let envelope = raft_core::Envelope {
            group_id,
            from: msg.from,
            to: msg.to,
            msgs: vec![msg],
        }
        .encode();
        key.seal(raft_client::proto::frame_envelopes([envelope.as_slice()]))
    };
    // Driver bytes that do not decode, then a well-formed driver part
    // around a state the queue machine cannot restore.
    let payloads = [
        snapshot(b"not a snapshot at all".to_vec()),
        snapshot(raft_core::envelope::snapshot_data(
            group_id,
            b"poison: not a queue state".to_vec(),
        )),
    ];
    // Sent by a process of the leader's host, so the origin check passes
    // and the MAC is the group's: only the snapshot check stands between
    // the payload and the follower's disk.
    let misbehave = std::fs::read(rom("misbehave")).unwrap();
    let addr: libp2p::Multiaddr = leader_addr.parse().unwrap();
    native(async {
        let (_node, host) = connect_host(&addr).await;
        for payload in &payloads {
            let grants = [
                ("target", Grant::ReadPath("raft/v1/inbox")),
                ("payload", Grant::Data(payload)),
            ];
            let code = spawn_and_wait(
                &host,
                &misbehave,
                &["send-payload", &follower_peer],
                &grants,
                TIMEOUT,
            )
            .await;
            assert_eq!(code, 0, "send-payload exited {code}");
        }
    });
    wait_until("both snapshots to be reported dropped", TIMEOUT, || {
        let replicas = raft_rom::status(&client, TIMEOUT);
        let follower = replicas
            .iter()
            .find(|r| r["peer_id"] == follower_peer.as_str())?;
        (follower["dropped_messages"].as_u64()? >= dropped_before + 2
            && follower["last_drop"].as_str()?.contains("state machine"))
        .then_some(())
    });
    let follower_now = raft_rom::status(&client, TIMEOUT)
        .into_iter()
        .find(|r| r["peer_id"] == follower_peer.as_str())
        .unwrap();
    assert!(
        follower_now["applied"].as_u64().unwrap() < forged_index
            && follower_now["last_index"].as_u64().unwrap() < forged_index,
        "the poisoned snapshot was taken: {follower_now:#?}"
    );

    // Nothing poisoned reached the follower's disk: kill -9 its host and
    // restart it; the replica comes back, catches up and serves.
    raft(&client, &["put", "during", "2"]).assert_ok();
    let follower_host = cluster
        .hosts
        .iter_mut()
        .find(|host| host.peer_id == follower_peer)
        .unwrap();
    follower_host.kill();
    follower_host.restart();
    raft(&client, &["put", "after", "3"]).assert_ok();
    wait_until(
        "the restarted follower to apply every write",
        TIMEOUT,
        || {
            let replicas = raft_rom::status(&client, TIMEOUT);
            let leader = replicas.iter().find(|r| r["role"] == "leader")?;
            let follower = replicas
                .iter()
                .find(|r| r["peer_id"] == follower_peer.as_str())?;
            (follower["role"] == "follower"
                && follower["applied"].as_u64()? >= leader["commit"].as_u64()?)
            .then_some(())
        },
    );
    for (key, value) in [("before", "1"), ("during", "2"), ("after", "3")] {
        let out = raft(&client, &["get", key]);
        out.assert_ok();
        assert_eq!(out.stdout.trim(), value, "{out:#?}");
    }
    // A grant-only process still finds the group through its readPath view
    // after the replica's host restarted, and its token still verifies.
    let read = token(&client, "kv-read", &[]);
    let restarted_addr = cluster
        .hosts
        .iter()
        .find(|host| host.peer_id == follower_peer)
        .unwrap()
        .addr
        .clone();
    assert_eq!(
        as_worker(
            &restarted_addr,
            &read,
            &[&["get", "after"], &["put", "x", "y"]]
        ),
        [0, NOT_PERMITTED]
    );
}
