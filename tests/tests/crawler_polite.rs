//! A 2,000-page crawl, politely: 3 workers on 3 hosts fetch every page of
//! the local site with a per-origin delay of 10 ms and one request in
//! flight per origin. Checked from the site's own request log: no two page
//! requests came closer than the delay (to the millisecond the log's clock
//! rounds), and nothing under the robots.txt
//! `Disallow` was requested. Checked from the export: every page exactly
//! once. The hanging URL ends dead; the page budget holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use crawl_site::{Config, Site};
use ww_tests::crawler_rom::{exported_once, finished, run as crawler, Seed};
use ww_tests::{raft_rom, rom};

const PAGES: u32 = 2_000;
const DELAY_MS: u64 = 10;
const MAX_PAGES: u32 = 2_100;
const CRAWL_TIMEOUT: Duration = Duration::from_secs(600);

#[test]
fn a_two_thousand_page_crawl_keeps_its_delay_and_fetches_each_page_once() {
    for name in ["raft", "crawler"] {
        assert!(rom(name).exists(), "{name}.wasm is missing: make build");
    }
    let (_, site) = Site::start(Config {
        pages: PAGES,
        seed: 5,
        ..Config::default()
    })
    .unwrap();
    let cluster = raft_rom::deployed(4, Duration::from_secs(120));
    let client = cluster.hosts[0].addr.clone();
    Seed {
        delay_ms: DELAY_MS,
        concurrency_per_origin: 1,
        max_attempts: 2,
        max_pages: MAX_PAGES,
    }
    .run(&client, "crawl", &site.url("/page/0"));
    crawler(
        &client,
        &["workers", "3", "--fetch-timeout-ms", "2000", "--batch", "8"],
    )
    .assert_ok();
    let last = finished(&client, "crawl", CRAWL_TIMEOUT);
    eprintln!("done: {last}");
    let counters = &last["counters"];
    assert!(
        counters["seen"].as_u64().unwrap() <= u64::from(MAX_PAGES),
        "over budget: {last}"
    );
    assert!(
        counters["dead"].as_u64().unwrap() >= 1,
        "the hanging URL ended dead: {last}"
    );

    // Every page exactly once; the hanging URL was never recorded.
    let pages: Vec<String> = (0..PAGES)
        .map(|page| site.url(&format!("/page/{page}")))
        .collect();
    let records = exported_once(&client, "crawl", &pages);
    assert!(records
        .iter()
        .all(|r| r["url"] != site.url("/hang").as_str()));

    // Politeness, from the site's log. A redirect's hops and a retry's
    // second try are requests of one fetch or a later lease; the first
    // request of each page is one leased fetch, so consecutive ones must be
    // at least the delay apart (the next lease of the origin waits `delay`
    // after the previous fetch completed).
    let requests = site.requests();
    assert!(
        requests.iter().all(|r| !r.path.starts_with("/private/")),
        "a disallowed path was requested"
    );
    let mut first_seen = BTreeSet::new();
    let mut page_times: Vec<std::time::Instant> = requests
        .iter()
        .filter(|r| r.path.starts_with("/page/") && first_seen.insert(r.path.clone()))
        .map(|r| r.at)
        .collect();
    page_times.sort();
    assert_eq!(page_times.len(), PAGES as usize);
    let closest = page_times
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .min()
        .unwrap();
    let span = *page_times.last().unwrap() - page_times[0];
    eprintln!(
        "{PAGES} pages in {span:?} ({:.1} pages/s); closest two page requests {closest:?} apart",
        f64::from(PAGES) / span.as_secs_f64()
    );
    // The frontier counts the delay in log time, whole milliseconds stamped
    // by the leader, and the site's clock is this process's: allow the
    // millisecond the log's clock rounds away.
    assert!(
        closest >= Duration::from_millis(DELAY_MS - 1),
        "two page requests {closest:?} apart, under the {DELAY_MS} ms delay"
    );
}
