//! Driving `crawler.wasm` from the end-to-end tests.

use std::time::Duration;

use serde_json::Value;

use crate::cluster::{rom, ww_with_timeout, Output};
use crate::raft_rom::json_of;

/// Runs `ww run --peer ADDR crawler.wasm ARGS...`, killed after 120 s.
pub fn run(addr: &str, args: &[&str]) -> Output {
    let rom = rom("crawler");
    let mut all = vec!["run", "--peer", addr, rom.to_str().expect("UTF-8 path")];
    all.extend_from_slice(args);
    ww_with_timeout(&all, Duration::from_secs(120))
}

/// `status --json` of crawl `crawl`.
///
/// # Panics
///
/// When the command fails or prints no JSON.
pub fn status_of(addr: &str, crawl: &str) -> Value {
    let out = run(addr, &["--crawl", crawl, "status", "--json"]);
    out.assert_ok();
    json_of(&out)
}

/// The exported records (`results --jsonl -`) of crawl `crawl`.
///
/// # Panics
///
/// When the command fails or a line is not JSON.
pub fn export(addr: &str, crawl: &str) -> (Output, Vec<Value>) {
    let out = run(addr, &["--crawl", crawl, "results", "--jsonl", "-"]);
    out.assert_ok();
    let records = out
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect();
    (out, records)
}

/// `seed URL --allow-private --max-depth 1000` with the frontier's knobs:
/// a per-origin delay, a per-origin concurrency, attempts per URL, and the
/// page budget.
#[derive(Clone, Copy, Debug)]
pub struct Seed {
    pub delay_ms: u64,
    pub concurrency_per_origin: u32,
    pub max_attempts: u32,
    pub max_pages: u32,
}

impl Seed {
    /// Seeds crawl `crawl` at `url` through the host at `addr`.
    ///
    /// # Panics
    ///
    /// When the command fails.
    pub fn run(self, addr: &str, crawl: &str, url: &str) -> Output {
        let (delay, concurrency, attempts, pages) = (
            self.delay_ms.to_string(),
            self.concurrency_per_origin.to_string(),
            self.max_attempts.to_string(),
            self.max_pages.to_string(),
        );
        let out = run(
            addr,
            &[
                "--crawl",
                crawl,
                "seed",
                url,
                "--allow-private",
                "--max-depth",
                "1000",
                "--max-pages",
                &pages,
                "--delay-ms",
                &delay,
                "--concurrency-per-origin",
                &concurrency,
                "--max-attempts",
                &attempts,
            ],
        );
        assert_eq!(out.code, Some(0), "seed failed: {out:#?}");
        out
    }
}

/// Waits until crawl `crawl` is done and returns its last status; checks
/// that every accepted URL ended (fetched, failed or dead).
///
/// # Panics
///
/// When the crawl is not done within `timeout`, or a URL is unaccounted.
pub fn finished(addr: &str, crawl: &str, timeout: Duration) -> Value {
    let last = crate::wait_until("the crawl to finish", timeout, || {
        let status = status_of(addr, crawl);
        status["done"].as_bool()?.then_some(status)
    });
    let counters = &last["counters"];
    let count = |name: &str| counters[name].as_u64().unwrap_or(0);
    assert_eq!(
        count("seen"),
        count("fetched") + count("failed") + count("dead"),
        "every accepted URL ended: {last}"
    );
    last
}

/// The exported URLs of crawl `crawl`, each checked to appear once; panics
/// naming any of `expected` that is missing.
///
/// # Panics
///
/// When a URL appears twice or an expected one is missing.
pub fn exported_once(addr: &str, crawl: &str, expected: &[String]) -> Vec<Value> {
    let (_, records) = export(addr, crawl);
    let mut by_url: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for record in &records {
        *by_url
            .entry(record["url"].as_str().unwrap_or_default())
            .or_default() += 1;
    }
    let twice: Vec<&&str> = by_url
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(u, _)| u)
        .collect();
    assert!(twice.is_empty(), "exported more than once: {twice:?}");
    let lost: Vec<&String> = expected
        .iter()
        .filter(|url| !by_url.contains_key(url.as_str()))
        .collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    records
}
