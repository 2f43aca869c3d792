//! `status`, and `pause`, `resume`, `stop`.

use queue::crawl::{CrawlControl, CrawlStatus};
use raft_client::{Group, GuestRuntime};
use serde_json::json;
use ww_guest::ww_api::host;

use crate::Names;
use ww_guest::args::Args;

pub const STATUS_USAGE: &str = "usage: ww run crawler.wasm [--crawl NAME] status [--json]
The crawl's state; URLs ready, leased, delayed and dead; its counters; the
records in its results topic; its workers. `done` is true when no URL is ready,
leased or delayed (every accepted URL was fetched, failed or died).";

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
    let session = group.session();
    let client = queue::Client::new(&session);
    let status = client.crawl_status(&names.crawl).await?;
    let records = client.stats(&names.results).await?;
    let records = records.ready + records.leased + records.delayed;
    let workers = crate::workers::census(host, names).await?;
    let done = is_done(&status);
    if as_json {
        let workers: Vec<_> = workers
            .iter()
            .map(|(name, peer)| json!({ "name": name, "host": peer }))
            .collect();
        println!(
            "{}",
            json!({
                "crawl": status.crawl,
                "state": format!("{:?}", status.state).to_lowercase(),
                "done": done,
                "ready": status.ready,
                "leased": status.leased,
                "delayed": status.delayed,
                "dead": status.dead,
                "origins": status.origins,
                "counters": status.counters,
                "config": status.config,
                "results": records,
                "workers": workers,
            })
        );
        return Ok(());
    }
    let counters = &status.counters;
    println!(
        "crawl {} ({:?}{}): fetched {}  failed {}  dead {}  of {} accepted",
        status.crawl,
        status.state,
        if done { ", done" } else { "" },
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
        counters.retried, counters.expired, records
    );
    println!("  workers: {}", workers.len());
    for (name, peer) in workers {
        println!("    {name} on {peer}");
    }
    Ok(())
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
