//! Cluster-wide anchors, channels and the executor, on real hosts:
//!
//! - hello deployed from host 1 onto host 2, heard on host 3, listed by
//!   `ww ls` and `ww ps`;
//! - an anchor value set on host 2 through host 1, read through host 3;
//! - a channel on host 2 between a sender on host 1 and a receiver on host
//!   3: order, backpressure, the sender's origin;
//! - kill -9 of host 2: it leaves the view within the TTL; restarted with
//!   the same data dir it has the same peer id and its supervised hello;
//! - bad input: invalid paths, unknown peers, garbage ROMs, sends on closed
//!   channels, capabilities of dead processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use ww_tests::{rom, wait_until, ww, Cluster, Spawned};

const TIMEOUT: Duration = Duration::from_secs(30);

fn probe(addr: &str, args: &[&str]) -> ww_tests::Output {
    let probe = rom("probe");
    let mut all = vec!["run", "--peer", addr, probe.to_str().unwrap()];
    all.extend_from_slice(args);
    ww(&all)
}

fn ls(addr: &str, path: &str) -> Vec<String> {
    let out = ww(&["ls", "--json", "--peer", addr, path]);
    out.assert_ok();
    let listing: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    listing["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|child| child.as_str().unwrap().to_owned())
        .collect()
}

/// Waits until every host lists all `peers` at `/`.
fn wait_for_full_view(cluster: &Cluster) {
    let mut expected: Vec<String> = cluster
        .hosts
        .iter()
        .map(|host| host.peer_id.clone())
        .collect();
    expected.sort();
    for host in &cluster.hosts {
        wait_until("every host in the view", TIMEOUT, || {
            (ls(&host.addr, "/") == expected).then_some(())
        });
    }
}

#[test]
fn hello_deploys_onto_another_host() {
    let cluster = Cluster::start(3);
    wait_for_full_view(&cluster);
    let (h1, h2, h3) = (&cluster.hosts[0], &cluster.hosts[1], &cluster.hosts[2]);
    let subscriber = Spawned::start(&["sub", "--peer", &h3.addr, "test", "--count", "1"]);
    subscriber.wait_stderr("subscribed to test", TIMEOUT);

    let hello = rom("hello");
    let out = ww(&[
        "run",
        "--peer",
        &h1.addr,
        hello.to_str().unwrap(),
        "deploy",
        "--host",
        &h2.peer_id,
    ]);
    out.assert_ok();
    assert!(
        out.stderr
            .contains(&format!("anchored at /{}/hello", h2.peer_id)),
        "{out:#?}"
    );

    subscriber.wait_stdout_line(&format!("Hello, World from {}", h2.peer_id), TIMEOUT);
    // hello's result is JSON on stdout; the inner ROM's stderr lands in
    // host 2's log, tagged with its process id and the stream.
    let deployed: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let pid = deployed["process"].as_u64().unwrap();
    wait_until("host 2 logging the inner ROM's stderr", TIMEOUT, || {
        plain(&h2.log())
            .lines()
            .any(|line| {
                line.contains(&format!("pid={pid}"))
                    && line.contains(r#"stream="stderr""#)
                    && line.contains("hello: greeting every")
            })
            .then_some(())
    });
    assert_eq!(ls(&h3.addr, &format!("/{}", h2.peer_id)), vec!["hello"]);
    let get = ww(&[
        "get",
        "--json",
        "--peer",
        &h3.addr,
        &format!("/{}/hello", h2.peer_id),
    ]);
    assert!(get.stdout.contains(r#""kind":"capability""#), "{get:#?}");

    let ps = ww(&["ps", "--json", "--peer", &h3.addr]);
    ps.assert_ok();
    let ps: serde_json::Value = serde_json::from_str(ps.stdout.trim()).unwrap();
    let processes = ps["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 1, "{ps}");
    let hello = &processes[0];
    assert_eq!(hello["peer_id"], h2.peer_id.as_str());
    assert_eq!(hello["name"], "hello");
    assert_eq!(hello["state"], "running");
    assert_eq!(hello["anchor"], "/hello");
    assert_eq!(hello["rom_hash"].as_str().unwrap().len(), 64);
    assert!(ps["unreachable"].as_array().unwrap().is_empty(), "{ps}");

    // Killing it clears its anchor, and it stays dead (no restart).
    let target = format!("{}/{}", h2.peer_id, hello["id"]);
    ww(&["kill", "--peer", &h1.addr, &target]).assert_ok();
    wait_until("the killed hello's anchor cleared", TIMEOUT, || {
        let get = ww(&[
            "get",
            "--json",
            "--peer",
            &h3.addr,
            &format!("/{}/hello", h2.peer_id),
        ]);
        get.stdout.contains(r#""kind":"none""#).then_some(())
    });
    let ps = ww(&["ps", "--json", "--peer", &h3.addr]);
    assert!(ps.stdout.contains(r#""state":"killed""#), "{ps:#?}");
}

#[test]
fn a_value_set_on_host_2_through_host_1_reads_back_through_host_3() {
    let cluster = Cluster::start(3);
    wait_for_full_view(&cluster);
    let (h1, h2, h3) = (&cluster.hosts[0], &cluster.hosts[1], &cluster.hosts[2]);
    let path = format!("/{}/x", h2.peer_id);
    probe(&h1.addr, &["set", &path, "from host 1"]).assert_ok();
    let read = probe(&h3.addr, &["get", &path]);
    read.assert_ok();
    assert!(read.stdout.contains("value: from host 1"), "{read:#?}");
    // The shell sees the same tree.
    let shell = ww(&["get", "--peer", &h3.addr, &path]);
    assert_eq!(shell.stdout.trim(), "from host 1", "{shell:#?}");
}

#[test]
fn a_channel_on_host_2_carries_messages_from_host_1_to_host_3_in_order_with_backpressure() {
    let cluster = Cluster::start(3);
    wait_for_full_view(&cluster);
    let (h1, h2, h3) = (&cluster.hosts[0], &cluster.hosts[1], &cluster.hosts[2]);
    probe(&h1.addr, &["make-channel", &h2.peer_id, "chan", "4"]).assert_ok();

    let probe_rom = rom("probe");
    let tx = format!("/{}/chan/tx", h2.peer_id);
    let rx = format!("/{}/chan/rx", h2.peer_id);
    let sender = Spawned::start(&[
        "run",
        "--peer",
        &h1.addr,
        probe_rom.to_str().unwrap(),
        "send",
        &tx,
        "50",
    ]);
    // Four messages fit; the fifth send waits for the receiver.
    sender.wait_stdout_line("sent 4", TIMEOUT);
    // Observe that the sender stays blocked while nobody receives. (A
    // window for an absence; no condition could stand in for it.)
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        !sender.stdout_lines().iter().any(|line| line == "sent 5"),
        "a full channel must block its sender:\n{}",
        sender.stdout()
    );

    let received = probe(&h3.addr, &["recv", &rx, "50"]);
    received.assert_ok();
    assert!(received.stdout.contains("recv ok 50"), "{received:#?}");
    // The sender's messages arrive stamped with host 1, whose connection
    // its sender capability came through.
    assert!(
        received
            .stdout
            .contains(&format!("received 1 from {}", h1.peer_id)),
        "{received:#?}"
    );
    sender.wait_stdout_line("sent 50", TIMEOUT);
}

#[test]
fn a_killed_host_leaves_the_view_and_comes_back_with_its_supervised_hello() {
    let mut cluster = Cluster::start(3);
    wait_for_full_view(&cluster);
    let h2_peer = cluster.hosts[1].peer_id.clone();
    let (h1, h3) = (cluster.hosts[0].addr.clone(), cluster.hosts[2].addr.clone());
    let hello = rom("hello");
    ww(&[
        "run",
        "--peer",
        &h1,
        hello.to_str().unwrap(),
        "deploy",
        "--host",
        &h2_peer,
    ])
    .assert_ok();
    assert_eq!(ls(&h3, &format!("/{h2_peer}")), vec!["hello"]);

    cluster.hosts[1].kill();
    let killed_at = Instant::now();
    wait_until("host 2 to leave the view", Duration::from_secs(15), || {
        (!ls(&h3, "/").contains(&h2_peer)).then_some(())
    });
    // TTL 6 s, heartbeats every 1 s, a sweep every 100 ms.
    assert!(
        killed_at.elapsed() < Duration::from_secs(10),
        "left after {:?}",
        killed_at.elapsed()
    );

    cluster.hosts[1].restart();
    assert_eq!(
        cluster.hosts[1].peer_id, h2_peer,
        "the identity key lives in the data dir"
    );
    wait_until("host 2 back in the view", TIMEOUT, || {
        ls(&h3, "/").contains(&h2_peer).then_some(())
    });
    wait_until("the supervised hello re-anchored", TIMEOUT, || {
        let get = ww(&["get", "--json", "--peer", &h3, &format!("/{h2_peer}/hello")]);
        get.stdout.contains(r#""kind":"capability""#).then_some(())
    });
    let subscriber = Spawned::start(&["sub", "--peer", &h3, "test", "--count", "1"]);
    subscriber.wait_stdout_line(&format!("Hello, World from {h2_peer}"), TIMEOUT);
    cluster.assert_all_running();
}

#[test]
fn bad_input_gets_clear_errors_fast() {
    let mut cluster = Cluster::start(2);
    wait_for_full_view(&cluster);
    let (h1, h2) = (
        cluster.hosts[0].addr.clone(),
        cluster.hosts[1].peer_id.clone(),
    );

    // Invalid paths.
    for (path, reason) in [
        (format!("/{h2}/a//b"), "empty component"),
        (format!("/{h2}/../x"), "only its descendants"),
        ("/not-a-peer/x".to_owned(), "must be a host's peer id"),
    ] {
        let out = ww(&["ls", "--peer", &h1, &path]);
        assert_eq!(out.code, Some(1), "{out:#?}");
        assert!(out.stderr.contains(reason), "{path}: {out:#?}");
    }

    // An unknown (well-formed) peer fails fast, without dialing anything.
    let unknown = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq";
    let started = Instant::now();
    let out = ww(&["ls", "--peer", &h1, &format!("/{unknown}/x")]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("not in the cluster view"), "{out:#?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    let garbage = probe(&h1, &["spawn-garbage"]);
    garbage.assert_ok();
    assert!(
        garbage.stdout.contains("not a WebAssembly component"),
        "{garbage:#?}"
    );

    let closed = probe(&h1, &["close-and-send"]);
    closed.assert_ok();
    assert!(
        closed.stdout.contains("send on a closed channel"),
        "{closed:#?}"
    );
    assert!(
        closed.stdout.contains("recv after drain reports closed"),
        "{closed:#?}"
    );

    let dead = probe(&h1, &["dead-cap"]);
    dead.assert_ok();
    assert!(
        dead.stdout.contains("dead capability failed fast"),
        "{dead:#?}"
    );
    assert!(dead.stdout.contains("cleared"), "{dead:#?}");

    cluster.assert_all_running();
}

/// `text` without ANSI colour sequences (the host colours its log fields).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the end of the sequence: `ESC [ ... m`.
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
