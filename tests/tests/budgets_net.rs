//! Connection and view budgets on real hosts: peers that open idle RPC
//! streams until every slot is taken do not lock new clients out or stop a
//! Raft group, and a peer that floods signed fake heartbeats does not fill
//! the cluster view or keep real hosts out of it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/native.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use support::native;
use ww::limits::{INBOUND_CONNECTIONS_MAX, INBOUND_CONNECTIONS_PER_PEER_MAX};
use ww_net::Node;
use ww_tests::raft_rom;
use ww_tests::{cpu_ns, wait_until, ww, Cluster, Host, Spawned};

const TIMEOUT: Duration = Duration::from_secs(60);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
        / 1024
}

/// The hosts `ww ls /` lists through the host at `addr`, if it answers.
fn listed(addr: &str) -> Option<BTreeSet<String>> {
    let out = ww(&["ls", "--json", "--peer", addr, "/"]);
    if out.code != Some(0) {
        return None;
    }
    let listing: serde_json::Value = serde_json::from_str(out.stdout.trim()).ok()?;
    Some(
        listing["children"]
            .as_array()?
            .iter()
            .filter_map(|child| Some(child.as_str()?.to_owned()))
            .collect(),
    )
}

/// Every host in the view of the host at `addr`, with its addresses.
fn view_of(addr: &str) -> Vec<(String, Vec<String>)> {
    let addr: libp2p::Multiaddr = addr.parse().unwrap();
    native(async {
        let (_node, host) = support::connect_host(&addr).await;
        let view = host.view_request().send().promise.await.unwrap();
        view.get()
            .unwrap()
            .get_hosts()
            .unwrap()
            .iter()
            .map(|info| {
                let peer = info.get_peer_id().unwrap().to_string().unwrap();
                let addrs = info.get_addrs().unwrap();
                let addrs = addrs
                    .iter()
                    .map(|addr| addr.unwrap().to_string().unwrap())
                    .collect();
                (peer, addrs)
            })
            .collect()
    })
}

/// Waits until the host at `addr` has taken in round `round` of `flooder`'s
/// heartbeats (its own, sent after the round's fakes and forgery, names the
/// round), or its view holds more than `bound` hosts, and returns the peers
/// in its view then. Checks that `victim`'s addresses in that same view are
/// not the round's forged ones: a host that took the forgery would show
/// them until the victim's next heartbeat, up to a second later.
fn view_after_round(
    addr: &str,
    flooder: &str,
    victim: &str,
    round: u64,
    bound: usize,
) -> BTreeSet<String> {
    let mark = format!("round-{round}.invalid");
    let view = wait_until(&format!("round {round} in the view"), TIMEOUT, || {
        let view = view_of(addr);
        let seen = view
            .iter()
            .any(|(peer, addrs)| peer == flooder && addrs.iter().any(|a| a.contains(&mark)));
        (seen || view.len() > bound).then_some(view)
    });
    let forged = format!("forged-{round}.invalid");
    for (peer, addrs) in &view {
        assert!(
            peer != victim || addrs.iter().all(|a| !a.contains(&forged)),
            "host {addr} took a forged heartbeat of {victim}: {addrs:?}"
        );
        assert!(
            addrs.iter().all(|a| !a.contains("stale-")),
            "host {addr} took a replayed heartbeat of {peer}: {addrs:?}"
        );
    }
    view.into_iter().map(|(peer, _)| peer).collect()
}

/// Whether a new RPC connection from `node` to `peer` is served (answers a
/// call); the connection is returned, to be held.
async fn served(node: &Node, peer: libp2p::PeerId) -> Option<ww_api::host::Client> {
    let host = ww_net::dial::connect_host(node, peer, || ()).await.ok()?;
    let call = host.peer_id_request().send().promise;
    match tokio::time::timeout(Duration::from_secs(10), call).await {
        Ok(Ok(_)) => Some(host),
        _ => None,
    }
}

/// Opens RPC connections to every host of `targets` from as many peers as
/// it takes, each up to its per-peer cap, until each host refuses one (its
/// table is full); then leaves them idle and holds them until `stop`.
/// Sends, per host, how many it served.
fn flood_idle(
    targets: Vec<(libp2p::Multiaddr, libp2p::PeerId)>,
    report: std::sync::mpsc::Sender<Vec<usize>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    native(async move {
        let mut nodes = Vec::new();
        let mut held = Vec::new();
        let mut served_per_host = Vec::new();
        for (addr, peer) in &targets {
            let mut count = 0;
            let mut full = false;
            let mut index = 0;
            while !full {
                if index == nodes.len() {
                    nodes.push(support::client_node().await);
                }
                let node = &nodes[index];
                node.dial(addr.clone()).await.unwrap();
                for _ in 0..INBOUND_CONNECTIONS_PER_PEER_MAX {
                    match served(node, *peer).await {
                        Some(host) => {
                            held.push(host);
                            count += 1;
                        }
                        None => {
                            full = true;
                            break;
                        }
                    }
                }
                index += 1;
                assert!(
                    index <= INBOUND_CONNECTIONS_MAX / INBOUND_CONNECTIONS_PER_PEER_MAX + 2,
                    "{addr} served {count} connections from {index} peers and refused none"
                );
            }
            served_per_host.push(count);
        }
        report.send(served_per_host).unwrap();
        let _ = stop.await;
        drop(held);
    });
}

#[test]
fn idle_rpc_streams_give_way_to_new_clients_and_the_raft_group_keeps_writing() {
    let mut cluster = raft_rom::deployed(4, TIMEOUT);
    let client = cluster.hosts[0].addr.clone();
    raft_rom::run(&client, &["put", "before", "the flood"], CLIENT_TIMEOUT).assert_ok();

    // Host 0 (every client's) and host 1 (a replica's, whose inbound
    // connections include the other replicas' hosts).
    let targets: Vec<_> = cluster.hosts[..2]
        .iter()
        .map(|host| (host.addr.parse().unwrap(), host.peer_id.parse().unwrap()))
        .collect();
    let rss_before: Vec<u64> = cluster.hosts[..2]
        .iter()
        .map(|h| rss_mib(h.pid()))
        .collect();
    let (report, reported) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let flood = std::thread::spawn(move || flood_idle(targets, report, stopped));
    let served = reported
        .recv_timeout(CLIENT_TIMEOUT)
        .expect("the flood reports");
    let flooded = Instant::now();
    let rss_flooded: Vec<u64> = cluster.hosts[..2]
        .iter()
        .map(|h| rss_mib(h.pid()))
        .collect();
    eprintln!(
        "idle flood: connections served before a refusal, per host: {served:?}; \
         RSS {rss_before:?} MiB before, {rss_flooded:?} MiB with the table full"
    );
    for (index, count) in served.iter().enumerate() {
        // The table was full: the flood took (nearly) every slot, the few
        // others being the other hosts' and clients'.
        assert!(
            *count + 16 >= INBOUND_CONNECTIONS_MAX,
            "host {index} refused the flood after {count} connections"
        );
        // The refusal is logged by the host as it happens; its log file
        // may show it a moment later.
        wait_until(
            &format!("host {index}'s log to name the limit"),
            TIMEOUT,
            || {
                cluster.hosts[index]
                    .log()
                    .contains("(INBOUND_CONNECTIONS_MAX) and none idle")
                    .then_some(())
            },
        );
    }

    // A fresh CLI call gets in once the flood's connections have been idle
    // long enough, though they are all still held.
    wait_until("a fresh ww ls to be served", CLIENT_TIMEOUT, || {
        listed(&client)
    });
    eprintln!(
        "idle flood: a fresh `ww ls` served {:?} after the table filled",
        flooded.elapsed()
    );
    // Writes keep succeeding, each through a new `ww run` on host 0 and
    // the group's host-to-host connections.
    for n in 0..5 {
        let key = format!("during-{n}");
        let out = raft_rom::run(&client, &["put", &key, "the flood"], CLIENT_TIMEOUT);
        out.assert_ok();
    }
    let got = raft_rom::run(&client, &["get", "during-4"], CLIENT_TIMEOUT);
    got.assert_ok();
    assert!(got.stdout.contains("the flood"), "{got:#?}");
    let replicas = raft_rom::status(&client, CLIENT_TIMEOUT);
    assert_eq!(replicas.len(), 3, "{replicas:?}");
    assert!(
        cluster.hosts[0]
            .log()
            .contains("closing an idle RPC connection to admit a new one"),
        "{}",
        cluster.hosts[0].log()
    );
    cluster.assert_all_running();
    let _ = stop.send(());
    flood.join().unwrap();
}

#[test]
fn a_fake_heartbeat_flood_leaves_the_view_to_real_hosts() {
    // More fakes than the view holds (HOSTS_MAX).
    const FAKES: usize = 5000;
    // Four hosts and a Raft group on hosts 1 to 3; the flood targets host
    // 0, through which the group's clients reach it.
    let mut cluster = raft_rom::deployed(4, TIMEOUT);
    let real: BTreeSet<String> = cluster.hosts.iter().map(|h| h.peer_id.clone()).collect();
    let addr0 = cluster.hosts[0].addr.clone();
    wait_until("every host in host 0's view", TIMEOUT, || {
        (listed(&addr0)? == real).then_some(())
    });

    // The flooder also forges host 1's heartbeats.
    let victim = cluster.hosts[1].peer_id.clone();
    let (pid0, rss_before) = (cluster.hosts[0].pid(), rss_mib(cluster.hosts[0].pid()));
    let (cpu_before, started) = (cpu_ns(pid0), Instant::now());
    let flooder = Spawned::start_program(
        Path::new(env!("CARGO_BIN_EXE_heartbeat-flood")),
        &[&addr0, &FAKES.to_string(), &victim],
    );
    let flooder_id = wait_until("the flooder's peer id", TIMEOUT, || {
        flooder
            .stdout_lines()
            .first()?
            .strip_prefix("peer ")
            .map(str::to_owned)
    });
    // The flooder is connected and signs its own heartbeat, sent after
    // each round of fakes on the same stream: once host 0 shows round 1's,
    // it has been through every fake of that round.
    let mut expected = real.clone();
    expected.insert(flooder_id.clone());
    let after_flood = view_after_round(&addr0, &flooder_id, &victim, 1, expected.len());
    assert_eq!(
        after_flood.len(),
        expected.len(),
        "host 0's view took in fakes: {} hosts",
        after_flood.len()
    );
    assert_eq!(after_flood, expected);

    // A real host that starts during the flood still joins every view.
    let bootstrap = vec![cluster.hosts[1].addr.clone()];
    let newcomer = Host::start(
        &cluster.dir().join("host4"),
        "/ip4/127.0.0.1/tcp/0",
        &bootstrap,
    );
    let mut real = real;
    real.insert(newcomer.peer_id.clone());
    let mut expected = real.clone();
    expected.insert(flooder_id.clone());
    wait_until("host 0 to list the newcomer and no fake", TIMEOUT, || {
        (listed(&addr0)? == expected).then_some(())
    });
    // The other hosts had the fakes relayed by host 0, and admit none.
    for host in &cluster.hosts[1..] {
        let addr = host.addr.clone();
        wait_until("every real host, and no fake, in the view", TIMEOUT, || {
            let hosts = listed(&addr)?;
            (hosts.is_superset(&real) && hosts.len() <= expected.len()).then_some(())
        });
    }
    // Later rounds (the fakes again, with new sequence numbers) change
    // nothing either, and `ww ls /` lists the real hosts.
    assert_eq!(
        view_after_round(&addr0, &flooder_id, &victim, 3, expected.len()),
        expected
    );
    assert_eq!(listed(&addr0), Some(expected.clone()));
    // The group keeps writing while the flood goes on.
    for n in 0..3 {
        let key = format!("fakes-{n}");
        raft_rom::run(&addr0, &["put", &key, "the fakes"], CLIENT_TIMEOUT).assert_ok();
    }
    let got = raft_rom::run(&addr0, &["get", "fakes-2"], CLIENT_TIMEOUT);
    got.assert_ok();
    assert!(got.stdout.contains("the fakes"), "{got:#?}");
    let cpu_share = (cpu_ns(pid0) - cpu_before) as f64 / started.elapsed().as_nanos() as f64;
    let rss_after = rss_mib(pid0);
    eprintln!(
        "fake heartbeats: host 0 used {:.0}% of a core during {:?} of flood ({FAKES} a round); \
         RSS {rss_before} MiB before, {rss_after} MiB after",
        cpu_share * 100.0,
        started.elapsed(),
    );
    // The view holds the real hosts; what the fakes cost is the relay
    // candidates' bound and gossipsub's caches, not 5,000 hosts a round.
    assert!(
        rss_after < rss_before + 64,
        "host 0 grew from {rss_before} to {rss_after} MiB"
    );
    // Each round also carried a heartbeat of host 1 under host 1's name,
    // signed by the flooder's key, naming another address: host 0 rejected
    // every one, and its view keeps host 1's own addresses.
    // (`view_after_round` checked the addresses after rounds 1 and 3.)
    assert!(
        cluster.hosts[0]
            .log()
            .contains(&format!("a pubsub envelope not signed by {victim}")),
        "{}",
        cluster.hosts[0].log()
    );
    // Each round ended with the flooder's own heartbeat, correctly signed
    // but sealed two minutes before: a recording replayed after gossipsub
    // forgot it. Host 0 refused every one by its seal time.
    let log = cluster.hosts[0].log();
    let sealed_by_flooder = format!("a pubsub envelope of {flooder_id} sealed ");
    assert!(
        log.lines().any(|line| line.contains(&sealed_by_flooder)
            && line.contains("ms ago, past PUBSUB_ENVELOPE_SKEW_MS_MAX")),
        "{log}"
    );
    // Host 0 names the budget that refused the fakes.
    let log = cluster.hosts[0].log();
    assert!(
        log.contains("VIEW_CANDIDATES_PER_RELAY_MAX reached"),
        "{log}"
    );
    cluster.assert_all_running();
}

#[test]
fn one_peer_holds_at_most_its_share_of_connections() {
    use futures::StreamExt as _;
    use libp2p::swarm::{dial_opts::DialOpts, SwarmEvent};
    use ww_net::limits::CONNECTIONS_PER_PEER_MAX;

    let cluster = Cluster::start(1);
    let addr: libp2p::Multiaddr = cluster.hosts[0].addr.parse().unwrap();
    let extra = 4;
    let attempts = CONNECTIONS_PER_PEER_MAX + extra;
    native(async {
        // A peer with no limits of its own: whatever it keeps, the host
        // allowed.
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default(),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .with_swarm_config(|config| {
                config.with_idle_connection_timeout(Duration::from_secs(3600))
            })
            .build();
        for _ in 0..attempts {
            let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
            swarm.dial(opts).unwrap();
        }
        let (mut established, mut closed, mut failed) = (0u32, 0u32, 0u32);
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        // Every dial has ended one way or the other, and the host has closed
        // (or failed) as many as it is over its share.
        while established + failed < attempts || closed + failed < extra {
            let held = established - closed;
            let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
                .await
                .unwrap_or_else(|_| {
                    panic!("after {TIMEOUT:?}, {held} connections to one host are held ({established} established, {closed} closed, {failed} failed)")
                });
            match event {
                SwarmEvent::ConnectionEstablished { .. } => established += 1,
                SwarmEvent::ConnectionClosed { .. } => closed += 1,
                SwarmEvent::OutgoingConnectionError { .. } => failed += 1,
                _ => {}
            }
        }
        assert_eq!(
            established - closed,
            CONNECTIONS_PER_PEER_MAX,
            "{established} established, {closed} closed, {failed} failed"
        );
    });
    // The host is still there for everyone else.
    assert!(listed(&cluster.hosts[0].addr).is_some());
}
