//! Anchors have owners: a replica's `inbox` and `request` cannot be taken
//! over from the shell, and the group keeps serving.
//!
//! - `ww set` on a replica's `/<peer>/raft/v1/inbox` and `.../request`
//!   fails with an error naming the replica's process, whether the shell is
//!   attached to the replica's own host or to another one (which forwards
//!   the call);
//! - a ROM holding its host's full authority (`ww run probe.wasm set`) is
//!   refused the same way: a process is no more an owner than the shell;
//! - the anchors still hold capabilities, and a put and a get still work;
//! - listing and reading paths that do not exist create no nodes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use ww_tests::raft_rom;
use ww_tests::{rom, wait_until, ww, Cluster, Output};

const TIMEOUT: Duration = Duration::from_secs(60);

/// How long one `ww run raft.wasm` may take on a loaded 2-core machine.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

fn raft(addr: &str, args: &[&str]) -> Output {
    raft_rom::run(addr, args, CLIENT_TIMEOUT)
}

/// Starts `hosts` hosts and deploys 3 replicas from a client attached to
/// host 0 (which gets no replica).
fn deployed(hosts: usize) -> Cluster {
    let cluster = Cluster::start(hosts);
    let client = cluster.hosts[0].addr.clone();
    wait_until("every host in host 0's view", TIMEOUT, || {
        let out = ww(&["ls", "--json", "--peer", &client, "/"]);
        let listing: Value = serde_json::from_str(out.stdout.trim()).ok()?;
        (listing["children"].as_array()?.len() == hosts).then_some(())
    });
    raft(&client, &["deploy"]).assert_ok();
    cluster
}

fn ls(addr: &str, path: &str) -> Vec<String> {
    let out = ww(&["ls", "--peer", addr, path]);
    out.assert_ok();
    out.stdout.lines().map(str::to_owned).collect()
}

fn kind_at(addr: &str, path: &str) -> String {
    let out = ww(&["get", "--json", "--peer", addr, path]);
    out.assert_ok();
    let value: Value =
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|err| panic!("{err}: {out:#?}"));
    value["kind"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn ww_set_cannot_take_over_a_replicas_anchors_and_the_group_keeps_serving() {
    let mut cluster = deployed(4);
    let client = cluster.hosts[0].addr.clone();
    raft(&client, &["put", "before", "the attempt"]).assert_ok();

    let ps = ww(&["ps", "--json", "--peer", &client]);
    ps.assert_ok();
    let ps: Value = serde_json::from_str(ps.stdout.trim()).unwrap();
    let replicas: Vec<(String, u64)> = ps["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "raft-v1" && p["state"] == "running")
        .map(|p| {
            (
                p["peer_id"].as_str().unwrap().to_owned(),
                p["id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(replicas.len(), 3, "{ps:#}");

    for (peer, pid) in &replicas {
        let own_host = cluster
            .hosts
            .iter()
            .find(|host| &host.peer_id == peer)
            .unwrap()
            .addr
            .clone();
        // Through the replica's own host (a local CLI client), and through
        // host 0, which forwards the call.
        for via in [&own_host, &client] {
            for anchor in ["inbox", "request"] {
                let path = format!("/{peer}/raft/v1/{anchor}");
                let out = ww(&["set", "--peer", via, &path, "hijacked"]);
                assert_eq!(out.code, Some(1), "{path} via {via}: {out:#?}");
                let owner = format!("{path} is owned by process {pid} on host {peer}");
                assert!(out.stderr.contains(&owner), "{path} via {via}: {out:#?}");
                assert!(
                    out.stderr.contains(&format!("ww kill {peer}/{pid}")),
                    "{out:#?}"
                );
                assert_eq!(kind_at(&client, &path), "capability", "{path}");
                eprintln!("refused as expected: {}", out.stderr.trim());
            }
        }
    }

    // A process with its host's full authority is not an owner either.
    let probe = rom("probe");
    for (peer, pid) in &replicas {
        let path = format!("/{peer}/raft/v1/inbox");
        let out = ww(&[
            "run",
            "--peer",
            &client,
            probe.to_str().unwrap(),
            "set",
            &path,
            "hijacked",
        ]);
        assert_ne!(out.code, Some(0), "{path} from a ROM: {out:#?}");
        assert!(!out.stdout.contains(&format!("set {path}")), "{out:#?}");
        let owner = format!("{path} is owned by process {pid} on host {peer}");
        assert!(out.stderr.contains(&owner), "{path} from a ROM: {out:#?}");
        assert_eq!(kind_at(&client, &path), "capability", "{path}");
    }

    // The group still serves, through a host with a replica and without.
    raft(&client, &["put", "after", "the attempt"]).assert_ok();
    for addr in [&client, &cluster.hosts[1].addr] {
        for (key, value) in [("before", "the attempt"), ("after", "the attempt")] {
            let got = raft(addr, &["get", key]);
            assert!(
                got.code == Some(0) && got.stdout.lines().any(|line| line == value),
                "{key}: {got:#?}"
            );
        }
    }

    // An unowned value (set from the shell) stays writable by anyone.
    let (peer, _) = &replicas[0];
    let note = format!("/{peer}/note");
    ww(&["set", "--peer", &client, &note, "one"]).assert_ok();
    ww(&["set", "--peer", &client, &note, "two"]).assert_ok();
    let got = ww(&["get", "--peer", &client, &note]);
    assert_eq!(got.stdout.trim(), "two", "{got:#?}");

    // Walking, listing and reading absent paths create no nodes.
    let before = ls(&client, &format!("/{peer}"));
    let absent = format!("/{peer}/absent/deeper");
    assert!(ls(&client, &absent).is_empty());
    assert_eq!(kind_at(&client, &absent), "none");
    assert_eq!(ls(&client, &format!("/{peer}")), before);
    assert!(!before.iter().any(|name| name == "absent"), "{before:?}");
    cluster.assert_all_running();
}
