//! kill -9 of a worker's host mid-crawl loses no URL: the dead worker's
//! leases expire and another worker fetches its URLs again. 5 real hosts
//! (3 Raft replicas on three of hosts 1-4); one worker on the fourth,
//! killed while it holds leases (slow URLs are seeded so it does), then one
//! on host 0. The kill takes no replica, so the crawl loses only a worker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crawl_site::{Config, Site};
use ww_tests::crawler_rom::{exported_once, finished, run as crawler, status_of};
use ww_tests::{raft_rom, rom, wait_until};

const PAGES: u32 = 150;
const CRAWL_TIMEOUT: Duration = Duration::from_secs(240);

#[test]
fn a_worker_host_killed_mid_crawl_loses_no_url() {
    assert!(
        rom("crawler").exists(),
        "crawler.wasm is missing: make build"
    );
    let (_, site) = Site::start(Config {
        pages: PAGES,
        seed: 11,
        ..Config::default()
    })
    .unwrap();
    let mut cluster = raft_rom::deployed(5, Duration::from_secs(120));
    let client = cluster.hosts[0].addr.clone();
    let spare = raft_rom::spare_host(&cluster, Duration::from_secs(60));
    let victim = cluster.hosts[spare].peer_id.clone();
    let survivor = cluster.hosts[0].peer_id.clone();

    let seed = site.url("/page/0");
    // Slow URLs (4 s each) keep leases held long enough to kill their
    // worker while it holds them: with a per-origin delay a lease gives one
    // URL, so after page 0 the worker spends ~16 s on them, one by one,
    // each leased the whole time.
    let slow: Vec<String> = (4000..4004)
        .map(|ms| site.url(&format!("/slow-head/{ms}")))
        .collect();
    let mut args = vec![
        "seed",
        &seed,
        "--allow-private",
        "--max-depth",
        "1000",
        "--delay-ms",
        "20",
        "--concurrency-per-origin",
        "8",
        "--max-attempts",
        "3",
    ];
    args.extend(slow.iter().map(String::as_str));
    crawler(&client, &args).assert_ok();
    let workers = |peer: &str| {
        let out = crawler(
            &client,
            &[
                "workers",
                "1",
                "--host",
                peer,
                "--fetch-timeout-ms",
                "8000",
                "--lease-ms",
                "20000",
                "--batch",
                "8",
            ],
        );
        out.assert_ok();
        assert!(out.stdout.contains(peer), "{out:#?}");
    };
    workers(&victim);
    wait_until("the victim to hold leases mid-crawl", CRAWL_TIMEOUT, || {
        let status = status_of(&client, "crawl");
        (status["counters"]["fetched"].as_u64()? >= 1 && status["leased"].as_u64()? >= 1)
            .then_some(())
    });
    cluster.hosts[spare].kill();
    let before = status_of(&client, "crawl");
    assert_eq!(before["done"], false, "killed too late: {before}");
    // The victim's host no longer answers `ps`: its worker counts as gone.
    workers(&survivor);

    let last = finished(&client, "crawl", CRAWL_TIMEOUT);
    eprintln!("after the kill: {last}");
    let counters = &last["counters"];
    assert!(
        counters["expired"].as_u64().unwrap() >= 1,
        "the victim's leases expired: {last}"
    );

    let expected: Vec<String> = (0..PAGES)
        .map(|page| site.url(&format!("/page/{page}")))
        .chain(slow.iter().cloned())
        .collect();
    exported_once(&client, "crawl", &expected);
}
