//! Clients that reach the replicas over their own connections to the
//! replicas' hosts (raft-client's direct routes):
//! - many native client processes at once, while a follower's host is
//!   stopped (SIGSTOP) and then the leader's host is killed (kill -9):
//!   every write a client saw acknowledged reads back, and the clients keep
//!   writing after the faults;
//! - several `ww run` ROM clients at once, which keep writing with the
//!   host they dialed stopped (their requests no longer pass through it),
//!   and then with the leader's host killed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ww_tests::cluster::Spawned;
use ww_tests::{raft_rom, rom, signal, wait_until};

const WRITERS: usize = 6;
const PUTS_PER_WRITER: usize = 150;
const TIMEOUT: Duration = Duration::from_secs(120);

/// `key -> acked` from a writer's stdout lines.
fn outcomes(lines: &[String]) -> BTreeMap<String, bool> {
    lines
        .iter()
        .filter_map(|line| {
            let (outcome, key) = line.split_once(' ')?;
            match outcome {
                "acked" => Some((key.to_owned(), true)),
                "unknown" => Some((key.to_owned(), false)),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn many_native_clients_keep_every_acknowledged_write_through_sigstop_and_kill() {
    let writer = Path::new(env!("CARGO_BIN_EXE_kv-writer"));
    let mut cluster = raft_rom::deployed(4, TIMEOUT);
    let client = cluster.hosts[0].addr.clone();
    let replicas = raft_rom::status(&client, TIMEOUT);
    let peer_of = |role: &str| {
        replicas
            .iter()
            .find(|replica| replica["role"] == role)
            .and_then(|replica| replica["peer_id"].as_str())
            .unwrap()
            .to_owned()
    };
    let index_of = |peer: &str| {
        cluster
            .hosts
            .iter()
            .position(|host| host.peer_id == peer)
            .unwrap()
    };
    let (leader, follower) = (index_of(&peer_of("leader")), index_of(&peer_of("follower")));

    let mut writers: Vec<Spawned> = (0..WRITERS)
        .map(|w| {
            Spawned::start_program(
                writer,
                &[
                    &client,
                    "v1",
                    &format!("w{w}"),
                    &PUTS_PER_WRITER.to_string(),
                ],
            )
        })
        .collect();
    for w in &writers {
        // Every process dialed all three replicas' hosts itself.
        w.wait_stdout_line("direct 3", TIMEOUT);
    }
    let acked_count = |writers: &[Spawned]| -> usize {
        writers
            .iter()
            .map(|w| outcomes(&w.stdout_lines()).values().filter(|a| **a).count())
            .sum()
    };
    wait_until("writes under way", TIMEOUT, || {
        (acked_count(&writers) >= WRITERS * 20).then_some(())
    });
    let pid = cluster.hosts[follower].pid();
    signal(pid, "STOP");
    let stopped_at = acked_count(&writers);
    wait_until("writes during the SIGSTOP", TIMEOUT, || {
        (acked_count(&writers) >= stopped_at + WRITERS * 10).then_some(())
    });
    signal(pid, "CONT");
    let killed_at = acked_count(&writers);
    cluster.hosts[leader].kill();
    wait_until("every writer to finish", TIMEOUT, || {
        writers.iter_mut().all(|w| !w.is_running()).then_some(())
    });
    let total = acked_count(&writers);
    assert!(
        total > killed_at + WRITERS * 10,
        "the writers kept going after the leader's host died: {killed_at} then {total}"
    );

    // Read every key back through a fresh client.
    let mut all = BTreeMap::new();
    for w in &writers {
        let lines = w.stdout_lines();
        assert_eq!(
            outcomes(&lines).len(),
            PUTS_PER_WRITER,
            "a writer ended early: {:?}",
            w.stderr()
        );
        all.extend(outcomes(&lines));
    }
    let addr: libp2p::Multiaddr = client.parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, async {
        let group = raft_client::native::connect(std::slice::from_ref(&addr), "v1")
            .await
            .unwrap();
        let session = group.session();
        let reader = queue::Client::new(&session);
        for (key, acked) in &all {
            let found = reader.get(key.as_bytes()).await.unwrap();
            match found {
                Some(found) => assert_eq!(found.value, format!("value of {key}").as_bytes()),
                None => assert!(!acked, "acknowledged write {key} is lost"),
            }
        }
    });
}

/// `(writes, direct replicas)` from the last `load: N writes, D of M
/// replicas direct` progress line.
fn load_progress(lines: &[String]) -> Option<(u64, u64)> {
    let line = lines.iter().rev().find(|line| line.starts_with("load: "))?;
    let mut words = line.split_whitespace();
    let writes = words.nth(1)?.parse().ok()?;
    let direct = words.nth(1)?.parse().ok()?;
    Some((writes, direct))
}

/// Separate `ww run raft.wasm load` processes at once.
const LOADERS: usize = 4;

/// Waits until every loader's progress shows `more` writes past `from`.
fn wait_for_writes(loaders: &[Spawned], from: &[u64], more: u64, what: &str) {
    wait_until(what, TIMEOUT, || {
        loaders
            .iter()
            .zip(from)
            .all(|(loader, from)| {
                load_progress(&loader.stderr_lines())
                    .is_some_and(|(writes, _)| writes >= from + more)
            })
            .then_some(())
    });
}

fn writes_so_far(loaders: &[Spawned]) -> Vec<u64> {
    loaders
        .iter()
        .map(|loader| load_progress(&loader.stderr_lines()).map_or(0, |(writes, _)| writes))
        .collect()
}

#[test]
fn ww_run_clients_move_to_direct_routes_and_write_on_through_a_stopped_dialed_host_and_a_killed_leader(
) {
    let mut cluster = raft_rom::deployed(4, TIMEOUT);
    // Host 0 holds no replica: the clients' only reason to cross it is
    // that they dialed it.
    let client = cluster.hosts[0].addr.clone();
    let raft = rom("raft");
    let mut loaders: Vec<Spawned> = (0..LOADERS)
        .map(|_| {
            Spawned::start(&[
                "run",
                "--peer",
                &client,
                raft.to_str().unwrap(),
                "load",
                "--writers",
                "4",
                "--duration-ms",
                "20000",
                "--json",
            ])
        })
        .collect();
    wait_until("direct routes to all three replicas", TIMEOUT, || {
        loaders
            .iter()
            .all(|loader| {
                load_progress(&loader.stderr_lines())
                    .is_some_and(|(writes, direct)| direct == 3 && writes > 50)
            })
            .then_some(())
    });

    // Their requests no longer pass through the host they dialed.
    let host0 = cluster.hosts[0].pid();
    signal(host0, "STOP");
    let stopped_at = writes_so_far(&loaders);
    wait_for_writes(&loaders, &stopped_at, 100, "writes with host 0 stopped");
    signal(host0, "CONT");

    // A killed leader's route is dropped, and they follow the new leader
    // over the routes they hold.
    let replicas = raft_rom::status(&client, TIMEOUT);
    let leader = replicas
        .iter()
        .find(|replica| replica["role"] == "leader")
        .and_then(|replica| replica["peer_id"].as_str())
        .unwrap()
        .to_owned();
    let leader = cluster
        .hosts
        .iter()
        .position(|host| host.peer_id == leader)
        .unwrap();
    let killed_at = writes_so_far(&loaders);
    cluster.hosts[leader].kill();
    wait_for_writes(
        &loaders,
        &killed_at,
        100,
        "writes after the leader's host died",
    );

    wait_until("the loads to end", TIMEOUT, || {
        loaders
            .iter_mut()
            .all(|loader| !loader.is_running())
            .then_some(())
    });
    for loader in &loaders {
        let summary: serde_json::Value = serde_json::from_str(
            loader
                .stdout_lines()
                .last()
                .unwrap_or_else(|| panic!("no summary; stderr: {}", loader.stderr())),
        )
        .unwrap();
        // Every put was acknowledged: retried across the kill under its
        // session, never failed back to the writer.
        assert_eq!(summary["errors"], 0, "{summary}");
        // What is left of the group (the killed leader's replica is gone)
        // is reached directly.
        assert_eq!(summary["direct_replicas"], summary["replicas"], "{summary}");
        assert!(summary["replicas"].as_u64().unwrap() >= 2, "{summary}");
    }
}
