//! The operator view of `ww start --http`: `/metrics` parsed by a real
//! Prometheus parser, and the status page in real headless Chromium
//! following a Raft group through the loss of its leader's host.

// Test code: a failed expectation fails the test, with its message.
#![allow(clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use ww_tests::cluster::workspace_root;
use ww_tests::metrics::{find as labelled, scrape, value};
use ww_tests::raft_rom::{deployed_with, status};
use ww_tests::web::{get, Browser};
use ww_tests::{wait_until, ww};

const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn metrics_and_status_page_follow_a_raft_group() {
    let mut cluster = deployed_with(4, TIMEOUT, &["--http", "127.0.0.1:0"]);
    let client = cluster.hosts[0].addr.clone();
    let replicas = status(&client, TIMEOUT);
    let leader_peer = wait_until("a leader in the status", TIMEOUT, || {
        status(&client, TIMEOUT)
            .iter()
            .find(|r| r["role"] == "leader")
            .and_then(|r| r["peer_id"].as_str().map(str::to_owned))
    });
    // The page is served by a follower's host, which stays up.
    let follower = cluster
        .hosts
        .iter()
        .position(|h| {
            h.peer_id != leader_peer
                && replicas
                    .iter()
                    .any(|r| r["peer_id"].as_str() == Some(h.peer_id.as_str()))
        })
        .expect("a follower's host");
    let http = cluster.hosts[follower]
        .http
        .clone()
        .expect("--http address");

    // Host metrics and the replica's series, through a real parser.
    let samples = wait_until("the replica's raft_term in /metrics", TIMEOUT, || {
        let samples = scrape(&http);
        samples
            .iter()
            .any(|s| s.metric == "raft_term" && value(s) >= 1.0)
            .then_some(samples)
    });
    let find = |name: &str| samples.iter().find(|s| s.metric == name);
    assert!(find("ww_hosts_in_view").is_some_and(|s| value(s) == 4.0));
    assert!(find("ww_anchors").is_some_and(|s| value(s) >= 1.0));
    assert!(find("ww_rom_compiles_total").is_some_and(|s| value(s) >= 1.0));
    assert!(find("ww_host_cpu_seconds_total").is_some_and(|s| value(s) > 0.0));
    let running = samples
        .iter()
        .find(|s| s.metric == "ww_processes" && s.labels.get("state") == Some("running"))
        .expect("ww_processes{state=running}");
    assert_eq!(value(running), 1.0);
    let term = find("raft_term").expect("raft_term");
    assert_eq!(term.labels.get("anchor"), Some("/raft/v1"), "{term:?}");
    assert!(term.labels.get("pid").is_some(), "{term:?}");
    assert!(find("raft_fsyncs_total").is_some_and(|s| value(s) >= 1.0));
    assert!(find("raft_process_seconds_total").is_some_and(|s| value(s) > 0.0));
    let members = samples.iter().filter(|s| s.metric == "raft_member").count();
    assert_eq!(members, 3);

    // Connections, calls and bytes; CPU per process; the memory budgets.
    for from in ["peer", "process"] {
        let calls = labelled(&samples, "ww_rpc_calls_total", &[("from", from)]);
        assert!(calls.is_some_and(|v| v >= 1.0), "{from}: {calls:?}");
        let bytes = labelled(
            &samples,
            "ww_rpc_bytes_total",
            &[("from", from), ("direction", "in")],
        );
        assert!(bytes.is_some_and(|v| v > 0.0), "{from}: {bytes:?}");
    }
    assert!(find("ww_rpc_connections").is_some_and(|s| value(s) >= 1.0));
    let replica_pid = term.labels.get("pid").unwrap().to_owned();
    let cpu = labelled(
        &samples,
        "ww_process_cpu_seconds_total",
        &[("pid", &replica_pid)],
    );
    assert!(cpu.is_some_and(|v| v > 0.0), "{cpu:?}");
    for budget in ["channels", "subscriptions", "anchor_data"] {
        let limit = labelled(&samples, "ww_budget_limit_bytes", &[("budget", budget)]);
        assert!(
            limit.is_some_and(|v| v >= 1024.0 * 1024.0),
            "{budget}: {limit:?}"
        );
        let used = labelled(&samples, "ww_budget_used_bytes", &[("budget", budget)]);
        assert!(used.is_some_and(|v| v >= 0.0), "{budget}: {used:?}");
    }
    // Each replica reports its topics' depths.
    ww_tests::raft_rom::run(&client, &["enqueue", "jobs", "a", "b"], TIMEOUT).assert_ok();
    wait_until("queue_ready{topic=jobs} = 2 in /metrics", TIMEOUT, || {
        let ready = labelled(&scrape(&http), "queue_ready", &[("topic", "jobs")])?;
        (ready == 2.0).then_some(())
    });

    // A refused call shows as an error of the calls from peers.
    let errors_before =
        labelled(&samples, "ww_rpc_errors_total", &[("from", "peer")]).expect("ww_rpc_errors");
    let follower_host = &cluster.hosts[follower];
    let inbox = format!("/{}/raft/v1/inbox", follower_host.peer_id);
    let refused = ww(&["set", "--peer", &follower_host.addr, &inbox, "hijacked"]);
    assert_eq!(refused.code, Some(1), "{refused:#?}");
    wait_until("the refused set in ww_rpc_errors_total", TIMEOUT, || {
        let errors = labelled(&scrape(&http), "ww_rpc_errors_total", &[("from", "peer")])?;
        (errors > errors_before).then_some(())
    });

    // The page, in headless Chromium.
    let browser = Browser::start();
    browser.open(&format!("http://{http}/"));
    let leader_on_page = |browser: &Browser| -> Option<String> {
        let peer = browser.eval(
            "const e = document.getElementById('leader-/raft/v1'); return e ? e.dataset.peer : null;",
        );
        peer.as_str().filter(|p| !p.is_empty()).map(str::to_owned)
    };
    let shown = wait_until("the group and its leader on the page", TIMEOUT, || {
        leader_on_page(&browser)
    });
    assert_eq!(shown, leader_peer);
    // The topic enqueued to above, with its depth, in the group's box.
    wait_until("topic jobs with 2 ready on the page", TIMEOUT, || {
        let ready = browser.eval(
            "const e = document.querySelector('tr.topic[data-topic=\"jobs\"] td[data-count=\"ready\"]'); return e ? e.textContent : null;",
        );
        (ready.as_str() == Some("2")).then_some(())
    });

    let leader_index = cluster
        .hosts
        .iter()
        .position(|h| h.peer_id == leader_peer)
        .expect("the leader's host");
    cluster.hosts[leader_index].kill();
    let hosts_shown = |browser: &Browser| -> Vec<String> {
        let hosts = browser.eval(
            "return Array.from(document.querySelectorAll('code.host')).map(e => e.textContent);",
        );
        hosts
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let new_leader = wait_until(
        "a new leader on the page and the dead host gone from it",
        TIMEOUT,
        || {
            let leader = leader_on_page(&browser)?;
            (leader != leader_peer && !hosts_shown(&browser).contains(&leader_peer))
                .then_some(leader)
        },
    );
    assert_ne!(new_leader, leader_peer);
    let down = browser.eval("return document.body.innerText.includes('host not in view');");
    assert_eq!(down, Value::Bool(true), "the dead member is not marked");

    let shot: PathBuf = workspace_root().join("target").join("status_page.png");
    browser.screenshot(&shot);
    println!("screenshot: {}", shot.display());
}

#[test]
fn the_operator_view_is_loopback_only_and_get_only() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().join("exposed");
    let data = data.to_str().expect("UTF-8 path");
    let out = ww_tests::ww(&[
        "start",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--data-dir",
        data,
        "--http",
        "0.0.0.0:0",
    ]);
    assert_ne!(out.code, Some(0), "{out:#?}");
    assert!(
        out.stderr.contains("refusing to serve the operator view"),
        "{out:#?}"
    );

    let host = ww_tests::Host::start_with(
        &dir.path().join("host"),
        "/ip4/127.0.0.1/tcp/0",
        &[],
        &["--http", "127.0.0.1:0"],
    );
    let http = host.http.clone().expect("--http address");
    let status: Value = serde_json::from_str(&get(&http, "/status.json")).expect("JSON");
    assert_eq!(status["peer_id"].as_str(), Some(host.peer_id.as_str()));
    let (code, _) = ww_tests::web::request(&http, "GET", "/nope", None).expect("a reply");
    assert_eq!(code, 404);
    let (code, _) = ww_tests::web::request(&http, "POST", "/metrics", None).expect("a reply");
    assert_eq!(code, 405);
}
