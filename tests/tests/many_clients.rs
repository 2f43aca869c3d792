//! A host serves a crowd, and a restarted host is reachable at once.
//!
//! - 64 `ww run raft.wasm put` processes started at the same moment against
//!   one host all succeed, and every value reads back (through 64 `get`
//!   processes, also started at once);
//! - a follower's host killed with SIGKILL and restarted on the same port
//!   and data dir is reached again within a deadline: the other follower
//!   dies as it restarts, so a write commits only once the leader and the
//!   restarted replica reach each other.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use ww_tests::raft_rom;
use ww_tests::{wait_until, ww, Cluster, Output};

const TIMEOUT: Duration = Duration::from_secs(60);

/// How many `ww run` processes start at once against one host.
const CLIENTS: usize = 64;

/// How long one of them may take. Generous: 64 debug-build processes share
/// 2 cores with the hosts (each loads and instantiates the ROM).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(240);

/// How soon after a restarted host printed its address a write that needs
/// its replica must commit (including one `ww run` start). The target is
/// 2 s; the slack is for a loaded CI machine.
const REACHABLE_AFTER_RESTART: Duration = Duration::from_secs(5);

/// The two tests run one at a time: each loads the machine's 2 cores, and
/// the restart test measures a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn raft(addr: &str, args: &[&str]) -> Output {
    raft_rom::run(addr, args, CLIENT_TIMEOUT)
}

/// Runs `raft(addr, args_of(i))` for every i in 0..n, all released at the
/// same moment; returns the outputs in order.
fn all_at_once(addr: &str, n: usize, args_of: impl Fn(usize) -> Vec<String> + Sync) -> Vec<Output> {
    let start = Barrier::new(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|index| {
                let start = &start;
                let args = args_of(index);
                scope.spawn(move || {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    start.wait();
                    raft(addr, &args)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn status(addr: &str) -> Vec<Value> {
    raft_rom::status(addr, CLIENT_TIMEOUT)
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

#[test]
fn sixty_four_simultaneous_puts_against_one_host_all_succeed_and_read_back() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut cluster = deployed(4);
    // Host 1 holds a replica: the crowd lands on a host that also serves
    // Raft traffic.
    let addr = cluster.hosts[1].addr.clone();

    let started = Instant::now();
    let puts = all_at_once(&addr, CLIENTS, |index| {
        vec!["put".into(), format!("k{index}"), format!("v{index}")]
    });
    let puts_took = started.elapsed();
    let failed: Vec<(usize, &Output)> = puts
        .iter()
        .enumerate()
        .filter(|(_, out)| out.code != Some(0))
        .collect();
    eprintln!(
        "{CLIENTS} simultaneous puts: {} failed, all done in {puts_took:?}",
        failed.len()
    );
    assert!(failed.is_empty(), "puts failed: {failed:#?}");

    let started = Instant::now();
    let gets = all_at_once(&addr, CLIENTS, |index| {
        vec!["get".into(), format!("k{index}")]
    });
    eprintln!(
        "{CLIENTS} simultaneous gets: all done in {:?}",
        started.elapsed()
    );
    for (index, out) in gets.iter().enumerate() {
        let expected = format!("v{index}");
        assert!(
            out.code == Some(0) && out.stdout.lines().any(|line| line == expected),
            "k{index} does not read back as {expected}: {out:#?}"
        );
    }
    cluster.assert_all_running();
}

#[test]
fn a_restarted_host_is_reached_by_its_peers_within_seconds() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut cluster = deployed(4);
    let client = cluster.hosts[0].addr.clone();
    // The two followers' hosts: one restarts, then the other dies, so the
    // group can only commit once the leader and the restarted replica reach
    // each other (both directions, through their hosts' anchors).
    let replicas = status(&client);
    let leader = replicas
        .iter()
        .find(|r| r["role"] == "leader")
        .and_then(|r| r["peer_id"].as_str())
        .expect("a leader")
        .to_owned();
    let followers: Vec<usize> = (1..cluster.hosts.len())
        .filter(|&index| cluster.hosts[index].peer_id != leader)
        .collect();
    let (restarted, other) = (followers[0], followers[1]);
    let peer_id = cluster.hosts[restarted].peer_id.clone();
    raft(&client, &["put", "before", "the restart"]).assert_ok();

    cluster.hosts[restarted].kill();
    // A write lands while the host is down (the group keeps a majority), so
    // the restarted replica has something to catch up on.
    raft(&client, &["put", "during", "the outage"]).assert_ok();

    cluster.hosts[restarted].restart();
    let restarted_at = Instant::now();
    cluster.hosts[other].kill();
    let put = raft(&client, &["put", "after", "the restart"]);
    let committed = restarted_at.elapsed();
    put.assert_ok();
    let anchors = format!("/{peer_id}/raft/v1");
    let listing = ww(&["ls", "--peer", &client, &anchors]);
    assert!(
        listing.stdout.lines().any(|line| line == "inbox"),
        "host 0 reaches the restarted replica's anchors: {listing:#?}"
    );
    eprintln!(
        "restarted host: a write needing its replica committed {committed:?} after it started"
    );
    assert!(
        committed <= REACHABLE_AFTER_RESTART,
        "the restarted replica and the leader reached each other only after {committed:?} (limit {REACHABLE_AFTER_RESTART:?})"
    );
    for (key, value) in [("before", "the restart"), ("during", "the outage")] {
        let got = raft(&client, &["get", key]);
        assert!(
            got.code == Some(0) && got.stdout.lines().any(|line| line == value),
            "{key}: {got:#?}"
        );
    }
    cluster.hosts[other].restart();
    cluster.assert_all_running();
}
