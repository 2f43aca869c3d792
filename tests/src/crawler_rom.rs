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
