//! `make bench WORKLOAD=crawl [WORKERS="1 2 4 8"] [PAGES=N]`: the crawler on
//! real `ww start` hosts (release build) on loopback, crawling the local
//! site (`crawler/site`, in this process) with politeness lifted: no
//! per-origin delay, and none of the site's special pages (the hanging, slow,
//! 429 and failing ones, whose timeouts and `Retry-After` would stall the
//! one origin by design; the e2e tests cover them).
//!
//! Each run starts 4 hosts, deploys 3 replicas (hosts 1-3; host 0 is the
//! client's), seeds a crawl of an N-page site at `/page/0` with no
//! per-origin delay and a per-origin concurrency of 64 (the most a crawl
//! allows), starts W workers (`crawler.wasm workers W`, spread round-robin
//! over the 4 hosts), and
//! polls `status --json` every 250 ms until every page of the link graph
//! has been fetched. The window runs from the workers' start to that poll.
//!
//! Reported per run: pages/s; CPU per page (the 4 hosts, their guests
//! included: replicas and workers); log bytes written per page, summed
//! over the 3 replicas (what replication costs on disk); fsyncs per page
//! and entries per fsync (all replicas, over the window). The markdown
//! table goes to stdout for `scripts/bench-record.sh`; progress to stderr.
//! Nothing here asserts a figure.

// A benchmark that cannot run panics with a message; it is not host code.
#![allow(clippy::expect_used)]

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crawl_site::{Config, Site};
use serde_json::{json, Value};
use ww_tests::{cpu_ns, crawler_rom, raft_rom, rom};

/// How often the driver reads the crawl's status.
const POLL_MS: u64 = 250;
/// The longest a run may take before it counts as failed.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);
/// Per-origin concurrency: the site is one origin, and politeness is lifted.
const CONCURRENCY_PER_ORIGIN: u32 = 64;

struct Args {
    workers: Vec<usize>,
    pages: u32,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        workers: vec![1, 2, 4, 8],
        pages: 10_000,
    };
    let mut items = std::env::args().skip(1);
    while let Some(item) = items.next() {
        match item.as_str() {
            "--workers" => {
                let list = items.next().context("--workers LIST")?;
                args.workers = list
                    .split([',', ' '])
                    .filter(|part| !part.is_empty())
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .context("--workers: numbers, e.g. 1,2,4,8")?;
            }
            "--pages" => {
                args.pages = items
                    .next()
                    .context("--pages N")?
                    .parse()
                    .context("--pages N")?;
            }
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            other => bail!("unknown argument {other:?}; use --workers LIST --pages N"),
        }
    }
    if args.workers.is_empty() || args.workers.iter().any(|&w| w == 0 || w > 64) {
        bail!("--workers: 1 to 64 each");
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("{err:#}");
            std::process::exit(2);
        }
    };
    let mut reports = Vec::new();
    for &workers in &args.workers {
        eprintln!("crawl bench: {workers} workers, {} pages", args.pages);
        match run(workers, args.pages) {
            Ok(report) => {
                eprintln!("{report}");
                reports.push(report);
            }
            Err(err) => {
                eprintln!("crawl bench with {workers} workers failed: {err:#}");
                std::process::exit(1);
            }
        }
    }
    print_table(args.pages, &reports);
}

/// The replicas' status lines (`raft.wasm status --json`).
fn replicas(client: &str) -> Vec<Value> {
    raft_rom::status(client, Duration::from_secs(60))
}

fn sum_of(replicas: &[Value], key: &str) -> u64 {
    replicas
        .iter()
        .map(|replica| replica[key].as_u64().unwrap_or(0))
        .sum()
}

fn run(workers: usize, pages: u32) -> Result<Value> {
    let (_, site) = Site::start(Config {
        pages,
        seed: 1,
        // Politeness lifted: no page that hangs, is slow, or answers 429
        // (whose Retry-After would hold back the one origin for 2 s).
        special_links: false,
        ..Config::default()
    })?;
    let (hosts, _dir) = raft_rom::deployed_for_bench(&rom("raft")).map_err(anyhow::Error::msg)?;
    let client = hosts[0].addr.clone();

    crawler_rom::Seed {
        delay_ms: 0,
        concurrency_per_origin: CONCURRENCY_PER_ORIGIN,
        max_attempts: 2,
        max_pages: pages * 2,
    }
    .run(&client, "crawl", &site.url("/page/0"));
    let replicas_before = replicas(&client);
    let cpu_before: Vec<u64> = hosts.iter().map(|host| cpu_ns(host.pid())).collect();
    let window = Instant::now();
    let workers_arg = workers.to_string();
    let out = crawler_rom::run(
        &client,
        &[
            "workers",
            &workers_arg,
            "--fetch-timeout-ms",
            "5000",
            "--batch",
            "16",
        ],
    );
    if out.code != Some(0) {
        bail!("workers failed: {out:#?}");
    }
    let spawned_s = window.elapsed().as_secs_f64();
    let mut first_fetch_s = None;
    let fetched = loop {
        let status = crawler_rom::status_of(&client, "crawl");
        let fetched = status["counters"]["fetched"].as_u64().unwrap_or(0);
        if fetched > 0 && first_fetch_s.is_none() {
            first_fetch_s = Some(window.elapsed().as_secs_f64());
        }
        if fetched >= u64::from(pages) {
            break fetched;
        }
        if window.elapsed() > RUN_TIMEOUT {
            bail!("{fetched} of {pages} pages fetched after {RUN_TIMEOUT:?}: {status}");
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    };
    let seconds = window.elapsed().as_secs_f64();
    eprintln!("workers spawned after {spawned_s:.2} s, first page counted after {:.2} s, all after {seconds:.2} s", first_fetch_s.unwrap_or(f64::NAN));
    let cpu_after: Vec<u64> = hosts.iter().map(|host| cpu_ns(host.pid())).collect();
    let replicas_after = replicas(&client);
    // Stop the fleet before the hosts go, so no worker is mid-write.
    let _ = crawler_rom::run(&client, &["workers", "0"]);

    let cpu_ms: f64 = cpu_before
        .iter()
        .zip(&cpu_after)
        .map(|(before, after)| after.saturating_sub(*before) as f64 / 1e6)
        .sum();
    let delta = |key: &str| {
        sum_of(&replicas_after, key).saturating_sub(sum_of(&replicas_before, key)) as f64
    };
    let fsyncs = delta("fsyncs");
    let pages_f = fetched as f64;
    Ok(json!({
        "workers": workers,
        "pages": fetched,
        "seconds": round2(seconds),
        "pages_per_s": round2(pages_f / seconds),
        "cpu_ms_per_page": round2(cpu_ms / pages_f),
        "cpu_share": round2(cpu_ms / 1e3 / seconds),
        "log_bytes_per_page": (delta("log_bytes_written") / pages_f).round(),
        "fsyncs_per_page": round2(fsyncs / pages_f),
        "entries_per_fsync": round2(delta("entries_persisted") / fsyncs.max(1.0)),
    }))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn print_table(pages: u32, reports: &[Value]) {
    println!(
        "The crawler on four `ww start` hosts (release build) on loopback: three Raft replicas \
         (hosts 1-3, fsync on) and a client host; W workers spread round-robin over the four \
         hosts, crawling the local site (`crawler/site`, {pages} pages, in the driver's process) \
         from `/page/0` with no per-origin delay and a per-origin concurrency of \
         {CONCURRENCY_PER_ORIGIN}, batches of 16. Page 0 links none of the site's special \
         pages: a hanging page costs its batch the fetch timeout, and a 429's `Retry-After` \
         holds back the one origin for 2 s, which is politeness, not throughput. The window runs from `workers W` to the first \
         `status` poll (every {POLL_MS} ms) that counts every page fetched. CPU is the four hosts, \
         their guests included (replicas and workers), per page; log bytes and fsyncs are summed \
         over the three replicas. The machine has 2 cores in all. `make bench WORKLOAD=crawl`.\n"
    );
    println!(
        "| workers | pages/s | seconds | CPU per page | CPU share | log bytes per page | fsyncs per page | entries per fsync |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for report in reports {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} ms | {:.2} | {:.0} | {:.2} | {:.1} |",
            report["workers"],
            report["pages_per_s"].as_f64().unwrap_or(f64::NAN),
            report["seconds"].as_f64().unwrap_or(f64::NAN),
            report["cpu_ms_per_page"].as_f64().unwrap_or(f64::NAN),
            report["cpu_share"].as_f64().unwrap_or(f64::NAN),
            report["log_bytes_per_page"].as_f64().unwrap_or(f64::NAN),
            report["fsyncs_per_page"].as_f64().unwrap_or(f64::NAN),
            report["entries_per_fsync"].as_f64().unwrap_or(f64::NAN),
        );
    }
}
