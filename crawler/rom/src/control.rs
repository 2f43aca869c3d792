//! `status`, and `pause`, `resume`, `stop`.

use std::collections::BTreeMap;
use std::time::Duration;

use queue::crawl::workers::WorkerStatus;
use queue::crawl::{CrawlControl, CrawlState, CrawlStatus};
use raft_client::{Group, GuestRuntime};
use serde_json::json;
use ww_guest::ww_api::host;

use crate::Names;
use ww_guest::args::Args;
use ww_guest::progress::{self, Progress};

pub const STATUS_USAGE: &str =
    "usage: ww run crawler.wasm [--crawl NAME] status [--json] [--watch [--interval-ms MS]]
The crawl's state; URLs ready, leased, delayed and dead; its counters; the
records in its results topic; the failed and dead URLs by kind of failure;
its workers, each with what it leased and how those leases ended (in JSON,
`worker_counts` also lists workers gone since). `done` is true when no URL is ready,
leased or delayed (every accepted URL was fetched, failed or died).
--watch samples every MS (default 1000) until the crawl is done or stopped:
progress (URLs ended of accepted, pages/s, workers) on stderr, live on a
terminal; with --json, one JSON object per sample on stdout (with
`pages_per_s`), otherwise the final status on stdout.";

/// Shortest and longest `--watch` interval: faster sampling would load the
/// leader for nothing, slower would hide a stall.
const WATCH_INTERVAL_MS_MIN: u64 = 100;
const WATCH_INTERVAL_MS_MAX: u64 = 60_000;
/// Dead URL records read per query when counting failures by kind.
const DEAD_URLS_PER_READ: u32 = 500;

/// One reading of a crawl.
struct Sample {
    status: CrawlStatus,
    /// Records in the results topic.
    records: u64,
    /// Workers by name, with their hosts.
    workers: Vec<(String, String)>,
    /// What every worker that ever leased did, by name (the frontier's).
    counts: Vec<WorkerStatus>,
    /// Dead and permanently failed URLs held by the frontier, by kind of
    /// failure (`None` in `--watch`'s intermediate samples: it reads every
    /// record).
    errors: Option<BTreeMap<String, u64>>,
}

impl Sample {
    async fn take(
        host: &host::Client,
        client: &queue::Client<&raft_client::Session<GuestRuntime>>,
        names: &Names,
    ) -> anyhow::Result<Self> {
        let status = client.crawl_status(&names.crawl).await?;
        let records = client.stats(&names.results).await?;
        Ok(Self {
            status,
            records: records.ready + records.leased + records.delayed,
            workers: crate::workers::census(host, names).await?,
            counts: client.crawl_workers(&names.crawl).await?,
            errors: None,
        })
    }

    /// Adds the counts of failures by kind.
    async fn with_errors(
        mut self,
        client: &queue::Client<&raft_client::Session<GuestRuntime>>,
        names: &Names,
    ) -> anyhow::Result<Self> {
        let mut errors = BTreeMap::new();
        let mut after = None;
        loop {
            let page = client
                .dead_urls(&names.crawl, after, DEAD_URLS_PER_READ)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for dead in &page {
                *errors.entry(dead.reason.kind()).or_default() += 1;
            }
        }
        self.errors = Some(errors);
        Ok(self)
    }

    fn counts_of(&self, name: &str) -> Option<&WorkerStatus> {
        self.counts.iter().find(|row| row.worker == name)
    }

    /// URLs that ended: fetched, failed or dead.
    fn ended(&self) -> u64 {
        let counters = &self.status.counters;
        counters.fetched + counters.failed + counters.dead
    }

    fn json(&self, pages_per_s: Option<f64>) -> serde_json::Value {
        let status = &self.status;
        let workers: Vec<_> = self
            .workers
            .iter()
            .map(|(name, peer)| {
                let mut worker = json!({ "name": name, "host": peer });
                if let Some(row) = self.counts_of(name) {
                    worker["leased_now"] = json!(row.leased_now);
                    worker["counts"] = json!(row.counts);
                }
                worker
            })
            .collect();
        let mut value = json!({
            "crawl": status.crawl,
            "state": format!("{:?}", status.state).to_lowercase(),
            "done": is_done(status),
            "ready": status.ready,
            "leased": status.leased,
            "delayed": status.delayed,
            "dead": status.dead,
            "origins": status.origins,
            "counters": status.counters,
            "config": status.config,
            "results": self.records,
            "workers": workers,
            "worker_counts": self.counts,
        });
        if let Some(errors) = &self.errors {
            value["errors"] = json!(errors);
        }
        if let Some(rate) = pages_per_s {
            value["pages_per_s"] = json!((rate * 10.0).round() / 10.0);
        }
        value
    }

    fn print_text(&self) {
        let status = &self.status;
        let counters = &status.counters;
        println!(
            "crawl {} ({:?}{}): fetched {}  failed {}  dead {}  of {} accepted",
            status.crawl,
            status.state,
            if is_done(status) { ", done" } else { "" },
            counters.fetched,
            counters.failed,
            counters.dead,
            counters.seen
        );
        println!(
            "  frontier: ready {}  leased {}  delayed {}  origins {}",
            status.ready, status.leased, status.delayed, status.origins
        );
        println!(
            "  links: offered {}  duplicate {}  out of scope {}  too deep {}  over budget {}",
            counters.offered,
            counters.duplicate,
            counters.refused_out_of_scope,
            counters.refused_too_deep,
            counters.refused_over_budget
        );
        println!(
            "  retries {}  expired leases {}  results {}",
            counters.retried, counters.expired, self.records
        );
        if let Some(errors) = self.errors.as_ref().filter(|errors| !errors.is_empty()) {
            let kinds: Vec<String> = errors
                .iter()
                .map(|(kind, count)| format!("{kind} {count}"))
                .collect();
            println!("  failed or dead by kind: {}", kinds.join("  "));
        }
        println!("  workers: {}", self.workers.len());
        for (name, peer) in &self.workers {
            match self.counts_of(name) {
                Some(row) => println!(
                    "    {name} on {peer}: fetched {}  failed {}  retried {}  expired {}  holding {}",
                    row.counts.fetched,
                    row.counts.failed,
                    row.counts.retried,
                    row.counts.expired,
                    row.leased_now
                ),
                None => println!("    {name} on {peer}: no lease yet"),
            }
        }
    }
}

pub const CONTROL_USAGE: &str = "usage: ww run crawler.wasm [--crawl NAME] pause | resume | stop
pause: leases return nothing until resume. stop: ends the crawl for good
(ready and delayed URLs are dropped; leased ones may still complete).";

/// Whether a crawl has nothing left to fetch.
pub fn is_done(status: &CrawlStatus) -> bool {
    status.ready == 0 && status.leased == 0 && status.delayed == 0
}

pub async fn status(
    host: &host::Client,
    group: &Group<GuestRuntime>,
    names: &Names,
    args: &mut Args,
) -> anyhow::Result<()> {
    let as_json = args.flag("--json");
    let watch = args.flag("--watch");
    let interval_ms = args.parsed::<u64>("--interval-ms")?.unwrap_or(1_000);
    if !(WATCH_INTERVAL_MS_MIN..=WATCH_INTERVAL_MS_MAX).contains(&interval_ms) {
        anyhow::bail!(
            "--interval-ms is {WATCH_INTERVAL_MS_MIN} to {WATCH_INTERVAL_MS_MAX}, not {interval_ms}"
        );
    }
    let session = group.session();
    let client = queue::Client::new(&session);
    if !watch {
        let sample = Sample::take(host, &client, names)
            .await?
            .with_errors(&client, names)
            .await?;
        if as_json {
            println!("{}", sample.json(None));
        } else {
            sample.print_text();
        }
        return Ok(());
    }
    let mut progress = Progress::stderr();
    let live = progress.is_live();
    let mut previous: Option<(u64, u64)> = None;
    loop {
        let sample = Sample::take(host, &client, names).await?;
        let now_ms = ww_guest::now_ms();
        let ended = sample.ended();
        // Pages per second over the last interval: what the crawl does now,
        // not its average since the seed.
        let pages_per_s = previous.map(|(at_ms, ended_before)| {
            let elapsed_ms = now_ms.saturating_sub(at_ms).max(1);
            ended.saturating_sub(ended_before) as f64 * 1000.0 / elapsed_ms as f64
        });
        previous = Some((now_ms, ended));
        if as_json {
            println!("{}", sample.json(Some(pages_per_s.unwrap_or(0.0))));
        }
        let line = format!(
            "{}  ready {}  leased {}  {:.1} pages/s  {} workers",
            progress::count("ended", ended, sample.status.counters.seen, live),
            sample.status.ready,
            sample.status.leased,
            pages_per_s.unwrap_or(0.0),
            sample.workers.len()
        );
        let finished = is_done(&sample.status) || sample.status.state == CrawlState::Stopped;
        if finished {
            let sample = sample.with_errors(&client, names).await?;
            progress.finish_with(&line);
            if !as_json {
                sample.print_text();
            }
            return Ok(());
        }
        progress.update(&line);
        ww_guest::sleep(Duration::from_millis(interval_ms)).await;
    }
}

pub async fn control(
    group: &Group<GuestRuntime>,
    names: &Names,
    command: &str,
) -> anyhow::Result<()> {
    let control = match command {
        "pause" => CrawlControl::Pause,
        "resume" => CrawlControl::Resume,
        _ => CrawlControl::Stop,
    };
    let session = group.session();
    let client = queue::Client::new(&session);
    let state = client.control_crawl(&names.crawl, control).await?;
    println!(
        "{}",
        json!({ "crawl": names.crawl, "state": format!("{state:?}").to_lowercase() })
    );
    Ok(())
}
