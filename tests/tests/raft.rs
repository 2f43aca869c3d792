//! The Raft ROM end to end: real hosts on loopback, the client attached to
//! a host without a replica, replicas in WASM processes talking over
//! anchored channels.
//!
//! - deploy 3 replicas, put/get;
//! - kill -9 the leader's host during a stream of writes: a new leader
//!   takes over, every acknowledged write reads back, unacknowledged writes
//!   are present or absent but never corrupted; the restarted host's
//!   replica respawns from its volume and catches up;
//! - add-replica and remove-replica under load;
//! - queues across hosts, with a lease that expires when its consumer dies,
//!   and a lease of more than one batch;
//! - a forged Raft message and a garbage request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/native.rs"]
mod support;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use raft_client::native::{connect, TokioRuntime};
use raft_client::proto::{self, Response};
use raft_client::Group;
use serde_json::Value;
use support::{cap_at, connect_host, native};
use ww_tests::raft_rom::{self, json_of};
use ww_tests::{rom, wait_until, ww, ww_with_timeout, Cluster, Output};

const TIMEOUT: Duration = Duration::from_secs(60);

const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

fn raft(addr: &str, args: &[&str]) -> Output {
    raft_rom::run(addr, args, CLIENT_TIMEOUT)
}

fn status(addr: &str) -> Vec<Value> {
    raft_rom::status(addr, CLIENT_TIMEOUT)
}

fn leader_peer(addr: &str) -> Option<String> {
    status(addr)
        .iter()
        .find(|replica| replica["role"] == "leader")
        .map(|replica| replica["peer_id"].as_str().unwrap().to_owned())
}

fn deployed(hosts: usize) -> Cluster {
    raft_rom::deployed(hosts, TIMEOUT)
}

#[test]
fn deploy_three_replicas_then_put_and_get() {
    let cluster = deployed(4);
    let client = &cluster.hosts[0].addr;
    let replicas = status(client);
    assert_eq!(replicas.len(), 3);
    assert_eq!(
        replicas.iter().filter(|r| r["role"] == "leader").count(),
        1,
        "{replicas:?}"
    );
    for replica in &replicas {
        assert_ne!(
            replica["peer_id"],
            cluster.hosts[0].peer_id.as_str(),
            "no replica on the client's host"
        );
        assert_eq!(replica["members"].as_array().unwrap().len(), 3);
    }

    raft(client, &["put", "greeting", "hello raft"]).assert_ok();
    let got = raft(client, &["get", "greeting"]);
    got.assert_ok();
    // The harness joins stdout's lines; the shell check below sees the bytes.
    assert_eq!(
        got.stdout, "hello raft",
        "get prints the bare value: {got:#?}"
    );
    // As a shell sees it: stdout is exactly the value, and `--json`
    // output pipes into jq.
    let rom_path = rom("raft");
    let shell = |script: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("WW", ww_tests::ww_bin())
            .env("ROM", &rom_path)
            .env("ADDR", client)
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        shell(r#""$WW" run --peer "$ADDR" "$ROM" get greeting"#),
        "hello raft\n",
        "stdout is the value and one newline"
    );
    assert_eq!(
        shell(r#""$WW" run --peer "$ADDR" "$ROM" status --json | jq -e '.replicas | length'"#)
            .trim(),
        "3"
    );

    let missing = raft(client, &["get", "nothing-here"]);
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("nothing-here not found"),
        "{missing:#?}"
    );

    raft(client, &["cas", "greeting", "hello raft", "hello again"]).assert_ok();
    let refused = raft(client, &["cas", "greeting", "hello raft", "lost update"]);
    assert_eq!(refused.code, Some(1));
    assert!(refused.stderr.contains("cas refused"), "{refused:#?}");
    raft(client, &["delete", "greeting"]).assert_ok();
    assert_eq!(raft(client, &["get", "greeting"]).code, Some(1));

    // Every subcommand found the group by its anchors.
    for host in &cluster.hosts[1..] {
        let listing = ww(&[
            "ls",
            "--peer",
            client,
            &format!("/{}/raft/v1", host.peer_id),
        ]);
        assert_eq!(
            listing.stdout.trim().lines().collect::<Vec<_>>(),
            vec!["admin", "inbox", "request", "response"]
        );
    }
}

/// What a writer saw: keys acknowledged, and keys whose outcome is unknown.
#[derive(Clone, Default)]
struct Written {
    acked: BTreeMap<String, String>,
    unknown: BTreeMap<String, String>,
}

async fn write_stream(
    group: Group<TokioRuntime>,
    prefix: &'static str,
    count: usize,
    written: Rc<RefCell<Written>>,
) {
    let session = group.session();
    let client = queue::Client::new(&session);
    for n in 0..count {
        let key = format!("{prefix}-{n:05}");
        let value = format!("value of {key}");
        match client.put(key.as_bytes(), value.as_bytes()).await {
            Ok(_) => {
                written.borrow_mut().acked.insert(key, value);
            }
            Err(err) => {
                eprintln!("put {key}: {err}");
                written.borrow_mut().unknown.insert(key, value);
            }
        }
    }
}

async fn check_written(group: &Group<TokioRuntime>, written: &Written) {
    let session = group.session();
    let client = queue::Client::new(&session);
    for (key, value) in &written.acked {
        let found = client
            .get(key.as_bytes())
            .await
            .unwrap_or_else(|err| panic!("reading {key}: {err}"));
        let found = found.unwrap_or_else(|| panic!("acknowledged write {key} is lost"));
        assert_eq!(
            found.value,
            value.as_bytes(),
            "acknowledged write {key} is corrupted"
        );
    }
    for (key, value) in &written.unknown {
        if let Some(found) = client.get(key.as_bytes()).await.unwrap() {
            assert_eq!(
                found.value,
                value.as_bytes(),
                "unacknowledged write {key} is corrupted"
            );
        }
    }
}

#[test]
fn the_leaders_host_dies_mid_stream_and_nothing_acknowledged_is_lost() {
    let mut cluster = deployed(4);
    let client = cluster.hosts[0].addr.clone();
    let leader = leader_peer(&client).expect("a leader");
    let leader_index = cluster
        .hosts
        .iter()
        .position(|host| host.peer_id == leader)
        .unwrap();
    let addr: libp2p::Multiaddr = client.parse().unwrap();

    let written = Rc::new(RefCell::new(Written::default()));
    let killed_at = native(async {
        let group = connect(std::slice::from_ref(&addr), "v1").await.unwrap();
        // The native client dialed every replica's host itself: requests
        // and replies skip host 0, and the kill below cuts its own route.
        assert_eq!(group.direct_replicas(), 3, "{:?}", group.replicas());
        let writer =
            tokio::task::spawn_local(write_stream(group.clone(), "w", 300, written.clone()));
        // Kill the leader's host once a stream of writes is under way.
        let deadline = Instant::now() + TIMEOUT;
        while written.borrow().acked.len() < 60 {
            assert!(
                !writer.is_finished() && Instant::now() < deadline,
                "writes did not get under way: {} unknown",
                written.borrow().unknown.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cluster.hosts[leader_index].kill();
        let killed_at = written.borrow().acked.len();
        writer.await.unwrap();
        let written = written.borrow().clone();
        check_written(&group, &written).await;
        killed_at
    });
    let written = written.borrow();
    assert!(
        written.acked.len() >= 250,
        "the group kept serving after the failover: {} of 300 acked, {} unknown",
        written.acked.len(),
        written.unknown.len()
    );
    assert!(written.acked.len() > killed_at);
    let new_leader = leader_peer(&client).expect("a new leader");
    assert_ne!(new_leader, leader);

    // The killed host comes back with its data dir: its supervised replica
    // respawns from its volume, rejoins and catches up.
    cluster.hosts[leader_index].restart();
    wait_until("the restarted replica to catch up", TIMEOUT, || {
        let replicas = status(&client);
        let restarted = replicas.iter().find(|r| r["peer_id"] == leader.as_str())?;
        let commit = replicas.iter().filter_map(|r| r["commit"].as_u64()).max()?;
        (restarted["applied"].as_u64()? >= commit && restarted["error"].is_null()).then_some(())
    });
    native(async {
        let group = connect(std::slice::from_ref(&addr), "v1").await.unwrap();
        check_written(&group, &written).await;
    });
    cluster.assert_all_running();
}

#[test]
fn add_and_remove_replicas_under_load() {
    let cluster = deployed(5);
    let client = cluster.hosts[0].addr.clone();
    let replicas: Vec<String> = status(&client)
        .iter()
        .map(|r| r["peer_id"].as_str().unwrap().to_owned())
        .collect();
    let spare = cluster.hosts[raft_rom::spare_host(&cluster, TIMEOUT)]
        .peer_id
        .clone();
    let addr: libp2p::Multiaddr = client.parse().unwrap();
    let written = Rc::new(RefCell::new(Written::default()));
    let raft_rom = rom("raft");
    native(async {
        let group = connect(std::slice::from_ref(&addr), "v1").await.unwrap();
        let writer =
            tokio::task::spawn_local(write_stream(group.clone(), "m", 400, written.clone()));
        // Change the membership while writes stream in (blocking calls on a
        // helper thread keep the writer's runtime free).
        let (client2, spare2, victim, rom_path) = (
            client.clone(),
            spare.clone(),
            replicas[0].clone(),
            raft_rom.clone(),
        );
        let changes = tokio::task::spawn_blocking(move || {
            let rom = rom_path.to_str().unwrap();
            let added = ww_with_timeout(
                &[
                    "run",
                    "--peer",
                    &client2,
                    rom,
                    "add-replica",
                    "--host",
                    &spare2,
                ],
                Duration::from_secs(120),
            );
            let removed = ww_with_timeout(
                &["run", "--peer", &client2, rom, "remove-replica", &victim],
                Duration::from_secs(120),
            );
            (added, removed)
        });
        let (added, removed) = changes.await.unwrap();
        added.assert_ok();
        assert!(added.stdout.contains("promoted raft id"), "{added:#?}");
        removed.assert_ok();
        assert!(removed.stdout.contains("removed raft id"), "{removed:#?}");
        writer.await.unwrap();
        let written = written.borrow().clone();
        check_written(&group, &written).await;
    });
    assert_eq!(
        written.borrow().unknown.len(),
        0,
        "no write failed during the membership changes"
    );
    let members = status(&client);
    let leader = members
        .iter()
        .find(|r| r["role"] == "leader")
        .expect("a leader");
    let ids: Vec<&str> = leader["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["peer_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&spare.as_str()), "{members:?}");
    assert!(!ids.contains(&replicas[0].as_str()), "{members:?}");
    assert_eq!(ids.len(), 3);
}

#[test]
fn a_dead_consumers_lease_expires_and_the_message_is_redelivered() {
    let cluster = deployed(4);
    let client = cluster.hosts[0].addr.clone();
    // Producer and consumers attach to different hosts.
    let producer = cluster.hosts[1].addr.clone();
    let consumer = cluster.hosts[2].addr.clone();
    raft(&producer, &["enqueue", "jobs", "job-1", "job-2"]).assert_ok();

    // A consumer leases job-1 and dies (its process exits without acking).
    let first = raft(
        &consumer,
        &["lease", "jobs", "--n", "1", "--lease-ms", "1000", "--json"],
    );
    first.assert_ok();
    let first = json_of(&first);
    assert_eq!(first["messages"][0]["body"], "job-1");
    assert_eq!(first["messages"][0]["delivery_count"], 1);

    // Another consumer gets job-2 now, and job-1 again once the lease expired.
    let started = Instant::now();
    let redelivered = wait_until("job-1 to be redelivered", TIMEOUT, || {
        let out = raft(&client, &["lease", "jobs", "--n", "2", "--json"]);
        let leased = json_of(&out);
        let messages = leased["messages"].as_array().unwrap().clone();
        messages.into_iter().find(|m| m["body"] == "job-1")
    });
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "redelivered before the lease could expire"
    );
    assert_eq!(redelivered["delivery_count"], 2, "{redelivered}");
    let receipt = redelivered["receipt"].as_str().unwrap();
    raft(&client, &["ack", "jobs", receipt]).assert_ok();
    // A stale receipt (the dead consumer's) is refused.
    let stale = first["messages"][0]["receipt"].as_str().unwrap();
    let refused = raft(&client, &["ack", "jobs", stale]);
    assert_eq!(refused.code, Some(1), "{refused:#?}");
    let stats = raft(&client, &["stats", "jobs"]);
    let stats = json_of(&stats);
    assert_eq!(
        stats["ready"].as_u64().unwrap() + stats["leased"].as_u64().unwrap(),
        1,
        "job-2 remains: {stats}"
    );

    // A lease of more than one batch takes several, with progress on
    // stderr: plain lines here, since stderr is a pipe.
    let bodies: Vec<String> = (0..1100).map(|i| format!("bulk-{i}")).collect();
    for half in bodies.chunks(550) {
        let mut args = vec!["enqueue", "bulk"];
        args.extend(half.iter().map(String::as_str));
        raft(&producer, &args).assert_ok();
    }
    // It stops at the consumer's in-flight limit (1000 by default), below
    // the 1024 one lease may take, and keeps what it leased.
    let bulk = raft(&consumer, &["lease", "bulk", "--n", "2000"]);
    bulk.assert_ok();
    assert_eq!(bulk.stdout.lines().count(), 1000, "{}", bulk.stderr);
    assert!(bulk.stderr.contains("in-flight limit (1000"), "{bulk:#?}");
    let progress: Vec<&str> = bulk
        .stderr
        .lines()
        .filter(|line| line.starts_with("leased "))
        .collect();
    assert_eq!(progress, ["leased 0/2000", "leased 1000/2000"], "{bulk:#?}");
    assert!(!bulk.stderr.contains('\r'), "{bulk:#?}");
}

#[test]
fn a_forged_raft_message_is_dropped_and_garbage_and_empty_batch_floods_get_clear_errors() {
    let cluster = deployed(4);
    let client = cluster.hosts[0].addr.clone();
    let replicas = status(&client);
    let leader = replicas
        .iter()
        .find(|r| r["role"] == "leader")
        .unwrap()
        .clone();
    let follower = replicas
        .iter()
        .find(|r| r["role"] == "follower")
        .unwrap()
        .clone();
    let follower_peer = follower["peer_id"].as_str().unwrap().to_owned();
    let leader_peer = leader["peer_id"].as_str().unwrap().to_owned();
    // More than the replica's 4,096 reply slots (`BATCHES_MAX`).
    const EMPTY_BATCHES: usize = 5_000;
    let group_id = u128::from_str_radix(follower["group_id"].as_str().unwrap(), 16).unwrap();
    let term_before = leader["term"].as_u64().unwrap();

    // A heartbeat claiming to be the leader, with a huge term and commit:
    // accepted, it would depose the leader and crash the follower.
    let mut heartbeat = raft::eraftpb::Message::default();
    heartbeat.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeat);
    heartbeat.from = leader["raft_id"].as_u64().unwrap();
    heartbeat.to = follower["raft_id"].as_u64().unwrap();
    heartbeat.term = term_before + 1000;
    heartbeat.commit = 1_000_000;
    let envelope = raft_core::Envelope {
        group_id,
        from: heartbeat.from,
        to: heartbeat.to,
        msgs: vec![heartbeat],
    }
    .encode();
    let addr: libp2p::Multiaddr = client.parse().unwrap();
    let garbage_answer = native(async {
        let (_node, host) = connect_host(&addr).await;
        let root = host.root_request().send().pipeline.get_anchor();
        // Sent from host 0, which runs no member, and without the group's
        // MAC: refused before its content is looked at.
        let inbox: ww_api::sender::Client =
            cap_at(&root, &format!("/{follower_peer}/raft/v1/inbox")).await;
        let mut send = inbox.send_request();
        send.get()
            .init_message()
            .set_data(&proto::frame_envelopes([envelope.as_slice()]));
        send.send().promise.await.unwrap();
        // Bytes that are not a request batch, with a reply channel.
        let request: ww_api::sender::Client =
            cap_at(&root, &format!("/{follower_peer}/raft/v1/request")).await;
        let mut channel = host.new_channel_request();
        channel.get().set_capacity(4);
        let channel = channel.send().promise.await.unwrap();
        let (reply, replies) = (
            channel.get().unwrap().get_sender().unwrap(),
            channel.get().unwrap().get_receiver().unwrap(),
        );
        let mut send = request.send_request();
        {
            let mut message = send.get().init_message();
            message.set_data(b"\x01 this is not a request batch");
            message
                .init_caps(1)
                .get(0)
                .init_cap()
                .set_as_capability(reply.client.hook);
        }
        send.send().promise.await.unwrap();
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            replies.recv_request().send().promise,
        )
        .await
        .unwrap()
        .unwrap();
        let data = answer
            .get()
            .unwrap()
            .get_message()
            .unwrap()
            .get_data()
            .unwrap()
            .to_vec();
        let garbage = proto::decode::<proto::ResponseBatch>(&data).unwrap();

        // The empty-batch flood: more empty request batches than the
        // leader has reply slots, pipelined. Each must be refused (an empty
        // batch no answer would ever close held its slot, until the
        // replica answered "overloaded" to everybody, forever).
        let leader_request: ww_api::sender::Client =
            cap_at(&root, &format!("/{leader_peer}/raft/v1/request")).await;
        let mut channel = host.new_channel_request();
        channel.get().set_capacity(EMPTY_BATCHES as u32);
        let channel = channel.send().promise.await.unwrap();
        let (reply, replies) = (
            channel.get().unwrap().get_sender().unwrap(),
            channel.get().unwrap().get_receiver().unwrap(),
        );
        let empty = proto::encode(&proto::RequestBatch {
            token: Vec::new(),
            requests: Vec::new(),
        });
        // Pipelined 1,000 at a time: the host's connection admits 4,096
        // calls in flight. A leaked slot was never given back, so 5,000 in
        // all is past the slots whatever the answers overlap.
        for _ in 0..EMPTY_BATCHES / 1_000 {
            let sends: Vec<_> = (0..1_000)
                .map(|_| {
                    let mut send = leader_request.send_request();
                    let mut message = send.get().init_message();
                    message.set_data(&empty);
                    message
                        .init_caps(1)
                        .get(0)
                        .init_cap()
                        .set_as_capability(reply.client.hook.add_ref());
                    send.send().promise
                })
                .collect();
            for send in sends {
                send.await.unwrap();
            }
        }
        let mut refusals = 0;
        while refusals < EMPTY_BATCHES {
            let mut recv = replies.recv_batch_request();
            recv.get().set_max(4096);
            let batch = tokio::time::timeout(TIMEOUT, recv.send().promise)
                .await
                .expect("the empty batches' answers")
                .unwrap();
            for item in batch.get().unwrap().get_messages().unwrap().iter() {
                let data = item.get_message().unwrap().get_data().unwrap();
                let answer = proto::decode::<proto::ResponseBatch>(data).unwrap();
                match &answer.responses[..] {
                    [(
                        0,
                        Response::Error {
                            retryable: false,
                            message,
                        },
                    )] if message.contains("a batch carries 1 to") => refusals += 1,
                    other => panic!("an empty batch answered {other:?}"),
                }
            }
        }
        (garbage, refusals)
    });
    let (garbage_answer, refusals) = garbage_answer;
    assert_eq!(refusals, EMPTY_BATCHES, "every empty batch refused");
    match &garbage_answer.responses[..] {
        [(
            _,
            Response::Error {
                retryable: false,
                message,
            },
        )] => assert!(message.contains("garbage request"), "{message}"),
        other => panic!("expected one clear error, got {other:?}"),
    }

    wait_until("the forged message to be reported dropped", TIMEOUT, || {
        let replicas = status(&client);
        let follower = replicas
            .iter()
            .find(|r| r["peer_id"] == follower_peer.as_str())?;
        follower["last_drop"]
            .as_str()?
            .contains("MAC")
            .then_some(())
    });
    let replicas = status(&client);
    assert!(
        replicas
            .iter()
            .all(|r| r["term"].as_u64().unwrap() < term_before + 1000),
        "the forged term was not adopted: {replicas:?}"
    );
    raft(&client, &["put", "still", "works"]).assert_ok();
}
