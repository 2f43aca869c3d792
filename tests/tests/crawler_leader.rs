//! kill -9 of the Raft leader's host mid-crawl loses no URL. 5 real hosts:
//! the replicas on three of hosts 1-4 (deploy skips the client's host 0 and
//! picks from the rest), workers on host 0 and the one host without a
//! replica, so the kill takes the leader and nothing else. The two
//! surviving replicas elect a leader; the workers' and the driver's clients
//! fail over to it; every page of the site is exported exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crawl_site::{Config, Site};
use ww_tests::crawler_rom::{exported_once, finished, run as crawler, status_of, Seed};
use ww_tests::{raft_rom, rom, wait_until};

const PAGES: u32 = 300;
const TIMEOUT: Duration = Duration::from_secs(60);
const CRAWL_TIMEOUT: Duration = Duration::from_secs(240);

#[test]
fn the_leaders_host_killed_mid_crawl_loses_no_url() {
    for name in ["raft", "crawler"] {
        assert!(rom(name).exists(), "{name}.wasm is missing: make build");
    }
    let (_, site) = Site::start(Config {
        pages: PAGES,
        seed: 13,
        ..Config::default()
    })
    .unwrap();
    let mut cluster = raft_rom::deployed(5, Duration::from_secs(120));
    let client = cluster.hosts[0].addr.clone();

    Seed {
        delay_ms: 0,
        concurrency_per_origin: 4,
        max_attempts: 3,
        max_pages: 2_000,
    }
    .run(&client, "crawl", &site.url("/page/0"));
    // The workers go where no replica is, so killing the leader's host
    // kills no worker.
    let spare = raft_rom::spare_host(&cluster, TIMEOUT);
    let (first, second) = (
        cluster.hosts[0].peer_id.clone(),
        cluster.hosts[spare].peer_id.clone(),
    );
    let out = crawler(
        &client,
        &[
            "workers",
            "2",
            "--host",
            &first,
            "--host",
            &second,
            "--fetch-timeout-ms",
            "2000",
            "--lease-ms",
            "15000",
            "--batch",
            "4",
        ],
    );
    out.assert_ok();
    assert!(
        out.stdout.contains(&first) && out.stdout.contains(&second),
        "{out:#?}"
    );
    wait_until("the crawl to be under way", CRAWL_TIMEOUT, || {
        let status = status_of(&client, "crawl");
        (status["counters"]["fetched"].as_u64()? >= 20).then_some(())
    });

    let replicas = raft_rom::status(&client, TIMEOUT);
    let leader = replicas
        .iter()
        .find(|replica| replica["role"] == "leader")
        .unwrap();
    let leader_peer = leader["peer_id"].as_str().unwrap().to_owned();
    let term_before = leader["term"].as_u64().unwrap();
    let victim = cluster
        .hosts
        .iter()
        .position(|host| host.peer_id == leader_peer)
        .unwrap();
    assert!(
        victim != 0 && victim != spare,
        "the leader runs on a replica host, not a worker's: {replicas:?}"
    );
    cluster.hosts[victim].kill();
    let during = status_of(&client, "crawl");
    assert_eq!(during["done"], false, "killed too late: {during}");

    let last = finished(&client, "crawl", CRAWL_TIMEOUT);
    eprintln!("after the kill: {last}");
    let replicas = raft_rom::status(&client, TIMEOUT);
    let new_leader = replicas
        .iter()
        .find(|replica| replica["role"] == "leader")
        .unwrap();
    assert_ne!(new_leader["peer_id"], leader_peer.as_str(), "{replicas:?}");
    assert!(
        new_leader["term"].as_u64().unwrap() > term_before,
        "{replicas:?}"
    );
    let pages: Vec<String> = (0..PAGES)
        .map(|page| site.url(&format!("/page/{page}")))
        .collect();
    exported_once(&client, "crawl", &pages);
}
