//! The operator view of `ww start --http`: `/metrics` parsed by a real
//! Prometheus parser, and the status page in real headless Chromium
//! following a Raft group through the loss of its leader's host.

// Test code: a failed expectation fails the test, with its message.
#![allow(clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use ww_tests::cluster::workspace_root;
use ww_tests::raft_rom::{deployed_with, status};
use ww_tests::wait_until;
use ww_tests::web::{get, Browser};

const TIMEOUT: Duration = Duration::from_secs(60);

/// The parsed samples of `/metrics` on `addr`.
fn scrape(addr: &str) -> Vec<prometheus_parse::Sample> {
    let text = get(addr, "/metrics");
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    prometheus_parse::Scrape::parse(lines)
        .unwrap_or_else(|err| panic!("/metrics does not parse: {err}\n{text}"))
        .samples
}

fn value(sample: &prometheus_parse::Sample) -> f64 {
    match sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
    }
}

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
    let members = samples.iter().filter(|s| s.metric == "raft_member").count();
    assert_eq!(members, 3);

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
