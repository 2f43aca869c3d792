//! The worker loop: lease, fetch, extract, offer, record, complete.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context};
use std::future::Future;

use futures::future::{join_all, select, Either};
use queue::crawl::{Completion, CrawlState, FetchOutcome, Link, UrlLease};
use queue::{ClientError, NewMessage, QueueError, Receipt};
use raft_client::{Directory, Group, GuestRuntime};
use ww_guest::ww_api::{ops, ww_capnp::http};

use crate::fetch::{self, outcome_of_status};
use crate::record::{self, ResultRecord};
use crate::report::Report;
use crate::{Extracted, Page};

/// URLs leased at once, by default.
const BATCH_URLS_DEFAULT: u32 = 16;
/// The lease, by default. A live worker extends it while it fetches (every
/// third of it), so it bounds only how long a dead worker's URLs wait
/// before they are leased again, not how long a fetch may take.
const LEASE_MS_DEFAULT: u64 = 20_000;
/// The shortest lease: extensions go every third of it, and each is a Raft
/// write that must land before the lease ends.
pub const LEASE_MS_MIN: u64 = 1_500;
/// The most links one offer carries (the frontier applies a batch whole).
const OFFER_LINKS_MAX: usize = 1_000;
/// The most record bytes one enqueue carries (the queue refuses batches
/// over 4 MiB).
const ENQUEUE_BYTES_MAX: usize = 3 * 1024 * 1024;
/// How long an idle worker waits before leasing again, at most.
const IDLE_WAIT_MS_MAX: u64 = 250;

/// A worker's arguments.
#[derive(Clone, Debug)]
pub struct Config {
    /// The crawl's name.
    pub crawl: String,
    /// The results topic.
    pub results: String,
    /// This worker's name (in leases and records).
    pub name: String,
    /// URLs leased at once.
    pub batch_urls: u32,
    /// Lease length, ms.
    pub lease_ms: u64,
    /// Body bytes kept in a record.
    pub record_body_bytes_max: usize,
}

impl Config {
    /// Parses `CRAWL RESULTS_TOPIC WORKER_NAME [--batch N] [--lease-ms MS]
    /// [--record-body-bytes-max N]`.
    ///
    /// # Errors
    ///
    /// A missing positional argument, an unknown option or a bad number.
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut positional = Vec::new();
        let mut config = Self {
            crawl: String::new(),
            results: String::new(),
            name: String::new(),
            batch_urls: BATCH_URLS_DEFAULT,
            lease_ms: LEASE_MS_DEFAULT,
            record_body_bytes_max: record::RECORD_BODY_BYTES_MAX,
        };
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let mut value = || {
                iter.next()
                    .with_context(|| format!("{arg} needs a value"))
                    .cloned()
            };
            match arg.as_str() {
                "--batch" => config.batch_urls = value()?.parse().context("--batch")?,
                "--lease-ms" => config.lease_ms = value()?.parse().context("--lease-ms")?,
                "--record-body-bytes-max" => {
                    config.record_body_bytes_max =
                        value()?.parse().context("--record-body-bytes-max")?;
                }
                other if other.starts_with("--") => bail!("unknown option {other:?}"),
                _ => positional.push(arg.clone()),
            }
        }
        let [crawl, results, name] = <[String; 3]>::try_from(positional).map_err(|_| {
            anyhow::anyhow!("usage: worker.wasm CRAWL RESULTS_TOPIC WORKER_NAME [--batch N] [--lease-ms MS] [--record-body-bytes-max N]")
        })?;
        if config.batch_urls == 0 {
            bail!("--batch must be at least 1");
        }
        if config.lease_ms < LEASE_MS_MIN {
            bail!("--lease-ms must be at least {LEASE_MS_MIN}");
        }
        config.crawl = crawl;
        config.results = results;
        config.name = name;
        Ok(config)
    }
}

/// Runs a worker with `extract`: never returns (the process exits 0 when
/// the crawl is stopped or deleted, non-zero on a fatal error, so its
/// supervisor restarts it).
pub fn run(extract: fn(&Page<'_>) -> Extracted) -> ! {
    ww_guest::run(move |env| async move {
        let config = Config::parse(&env.args)?;
        let crawl_group = Group::connect_granted(env.host.clone(), GuestRuntime)
            .await?
            .context("this worker holds no `raft` grant: spawn it with `crawler.wasm workers`")?;
        let view = ops::grant_anchor(&env.host, crate::GRANT_REPLICAS)
            .await?
            .context("no replicas grant")?;
        let results_token = ops::grant_data(&env.host, crate::GRANT_RESULTS_TOKEN)
            .await?
            .context("no results-token grant")?;
        let results_group = Group::connect_via(
            env.host.clone(),
            "granted",
            GuestRuntime,
            Directory::View(view),
            results_token,
        )
        .await?;
        let http: http::Client = ops::grant_cap(&env.host, crate::GRANT_HTTP)
            .await?
            .context("no http grant")?;
        let mut worker = Worker {
            report: Report::new(&env.host, &config.crawl, &config.name),
            config,
            extract,
            http,
            origin_delays: HashMap::new(),
        };
        worker.run(&crawl_group, &results_group).await
    })
}

struct Worker {
    config: Config,
    extract: fn(&Page<'_>) -> Extracted,
    http: http::Client,
    /// The crawl-delay last reported to the frontier, per origin.
    origin_delays: HashMap<String, u32>,
    report: Report,
}

/// One leased URL after its fetch.
struct Done {
    lease: UrlLease,
    outcome: FetchOutcome,
    record: Option<ResultRecord>,
    outlinks: Vec<String>,
    crawl_delay_ms: u32,
    /// The grant's error kind, when the fetch got no response.
    error: Option<&'static str>,
}

fn is_gone(err: &ClientError) -> bool {
    matches!(err, ClientError::Queue(QueueError::NoSuchCrawl { .. }))
}

impl Worker {
    async fn run(
        &mut self,
        crawl_group: &Group<GuestRuntime>,
        results_group: &Group<GuestRuntime>,
    ) -> anyhow::Result<()> {
        let crawl_session = crawl_group.session();
        let frontier = queue::Client::new(&crawl_session);
        let results_session = results_group.session();
        let results = queue::Client::new(&results_session);
        let mut idle_ms = 0;
        loop {
            // Every round, idle ones too, so pages/s falls to 0 when idle.
            self.report.send_if_due();
            if idle_ms > 0 {
                // Idle: ask first (a query is not a log entry; a lease is),
                // so an idle fleet does not grow the Raft log.
                match frontier.crawl_status(&self.config.crawl).await {
                    Ok(status) if status.state == CrawlState::Stopped => {
                        eprintln!("crawl {} is stopped; exiting", self.config.crawl);
                        return Ok(());
                    }
                    Ok(status) if status.ready == 0 => {
                        idle_ms = (idle_ms * 2).clamp(20, IDLE_WAIT_MS_MAX);
                        ww_guest::sleep(Duration::from_millis(idle_ms)).await;
                        continue;
                    }
                    Err(err) if is_gone(&err) => {
                        eprintln!("crawl {} is gone; exiting", self.config.crawl);
                        return Ok(());
                    }
                    _ => {}
                }
            }
            let leases = match frontier
                .lease_urls(
                    &self.config.crawl,
                    &self.config.name,
                    self.config.batch_urls,
                    Some(self.config.lease_ms),
                )
                .await
            {
                Ok(leases) => leases,
                Err(err) if is_gone(&err) => {
                    eprintln!("crawl {} is gone; exiting", self.config.crawl);
                    return Ok(());
                }
                Err(err) => {
                    // The group may be electing a leader: try again.
                    eprintln!("lease failed: {err}");
                    ww_guest::sleep(Duration::from_millis(IDLE_WAIT_MS_MAX)).await;
                    continue;
                }
            };
            if leases.is_empty() {
                idle_ms = (idle_ms * 2).clamp(20, IDLE_WAIT_MS_MAX);
                ww_guest::sleep(Duration::from_millis(idle_ms)).await;
                continue;
            }
            idle_ms = 0;
            self.report.leased(leases.len());
            let receipts: Vec<Receipt> = leases.iter().map(UrlLease::receipt).collect();
            let fetches = join_all(leases.into_iter().map(|lease| self.fetch_one(lease)));
            let done = self.keep_leased(&frontier, &receipts, fetches).await;
            let counts: Vec<(Option<u64>, Option<&'static str>)> = done
                .iter()
                .map(|item| (item.record.as_ref().map(|r| r.length), item.error))
                .collect();
            match self.commit(&frontier, &results, done).await {
                Ok(()) => {
                    // Counted once committed, as the results topic has them.
                    for (length, error) in counts {
                        if let Some(length) = length {
                            self.report.page(length);
                        }
                        if let Some(kind) = error {
                            self.report.error(kind);
                        }
                    }
                }
                // Nothing was completed: the leases expire and the URLs are
                // fetched again.
                Err(err) => eprintln!("commit failed, the batch will be fetched again: {err:#}"),
            }
        }
    }

    /// Runs `work` while extending the leases of `receipts` every third of
    /// the lease, so a fetch slower than the lease (a slow origin, a wait
    /// for the origin's next slot) does not hand its URL to another worker.
    async fn keep_leased<T: queue::Transport, F: Future>(
        &self,
        frontier: &queue::Client<T>,
        receipts: &[Receipt],
        work: F,
    ) -> F::Output {
        let every = Duration::from_millis(self.config.lease_ms / 3);
        let extend = async {
            loop {
                ww_guest::sleep(every).await;
                match frontier
                    .extend_urls(&self.config.crawl, receipts, Some(self.config.lease_ms))
                    .await
                {
                    Ok(outcomes) => {
                        let refused = outcomes.iter().filter(|o| o.is_err()).count();
                        if refused > 0 {
                            // Expired already, or the crawl stopped: the
                            // completion will say so too.
                            eprintln!("{refused} of {} leases not extended", receipts.len());
                        }
                    }
                    Err(err) => eprintln!("extending leases failed: {err}"),
                }
            }
        };
        futures::pin_mut!(work, extend);
        match select(work, extend).await {
            Either::Left((output, _)) => output,
            Either::Right(((), work)) => work.await,
        }
    }

    async fn fetch_one(&self, lease: UrlLease) -> Done {
        let started = ww_guest::now_ms();
        let fetched = fetch::fetch(&self.http, &lease.url).await;
        let elapsed_ms = ww_guest::now_ms().saturating_sub(started);
        match fetched {
            Ok(Ok(response)) => {
                let page = Page {
                    url: &lease.url,
                    final_url: &response.final_url,
                    status: response.status,
                    content_type: &response.content_type,
                    headers: &response.headers,
                    body: &response.body,
                    depth: lease.depth,
                };
                let extracted = (self.extract)(&page);
                let outcome = outcome_of_status(response.status);
                // A retried status is not a result yet; its last attempt is
                // in the frontier's dead list.
                let keep = !matches!(outcome, FetchOutcome::Retryable(_));
                let outlinks = if keep { extracted.outlinks } else { Vec::new() };
                let record = keep.then(|| ResultRecord {
                    url: lease.url.clone(),
                    final_url: response.final_url.clone(),
                    status: response.status,
                    headers: response.headers.clone(),
                    content_type: response.content_type.clone(),
                    length: response.body.len() as u64,
                    truncated: response.truncated,
                    digest: record::digest(&response.body),
                    fetched_at: ww_guest::unix_time_ms(),
                    depth: lease.depth,
                    id: lease.id,
                    parent: lease.parent,
                    worker: self.config.name.clone(),
                    attempt: lease.failed + 1,
                    elapsed_ms,
                    outlinks: outlinks.len() as u32,
                    fields: extracted.fields,
                    body: if record::is_textual(&response.content_type) {
                        record::body_text(&response.body, self.config.record_body_bytes_max)
                    } else {
                        String::new()
                    },
                });
                Done {
                    lease,
                    outcome,
                    record,
                    outlinks,
                    crawl_delay_ms: response.crawl_delay_ms,
                    error: None,
                }
            }
            Ok(Err(failure)) => {
                eprintln!("{}: {} ({})", lease.url, failure.kind, failure.message);
                Done {
                    lease,
                    outcome: failure.outcome,
                    record: None,
                    outlinks: Vec::new(),
                    crawl_delay_ms: failure.crawl_delay_ms,
                    error: Some(failure.kind),
                }
            }
            Err(err) => {
                // The grant itself failed: give the URL back unharmed.
                eprintln!("{}: the http grant failed: {err}", lease.url);
                Done {
                    lease,
                    outcome: FetchOutcome::Released,
                    record: None,
                    outlinks: Vec::new(),
                    crawl_delay_ms: 0,
                    error: Some("grant"),
                }
            }
        }
    }

    /// Offers the outlinks and appends the records, then completes the
    /// URLs: a URL leaves the frontier only once what it produced is
    /// committed.
    async fn commit<T: queue::Transport>(
        &mut self,
        frontier: &queue::Client<T>,
        results: &queue::Client<T>,
        done: Vec<Done>,
    ) -> anyhow::Result<()> {
        let crawl = &self.config.crawl;
        let links: Vec<Link> = done
            .iter()
            .flat_map(|item| {
                item.outlinks.iter().map(|url| Link {
                    url: url.clone(),
                    depth: item.lease.depth + 1,
                    parent: Some(item.lease.id),
                })
            })
            .collect();
        for chunk in links.chunks(OFFER_LINKS_MAX) {
            frontier.offer(crawl, chunk).await.context("offer")?;
        }
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        for record in done.iter().filter_map(|item| item.record.as_ref()) {
            let body = serde_json::to_vec(record)?;
            if batch_bytes + body.len() > ENQUEUE_BYTES_MAX && !batch.is_empty() {
                results
                    .enqueue_batch(&self.config.results, std::mem::take(&mut batch))
                    .await
                    .context("append results")?;
                batch_bytes = 0;
            }
            batch_bytes += body.len();
            batch.push(NewMessage::new(body));
        }
        if !batch.is_empty() {
            results
                .enqueue_batch(&self.config.results, batch)
                .await
                .context("append results")?;
        }
        for item in &done {
            let origin = &item.lease.origin;
            if item.crawl_delay_ms > 0
                && self.origin_delays.get(origin) != Some(&item.crawl_delay_ms)
            {
                // The robots.txt crawl-delay the grant found: the frontier
                // spaces the whole fleet's leases by it.
                frontier
                    .set_origin_delay(crawl, origin, Some(u64::from(item.crawl_delay_ms)))
                    .await
                    .context("set origin delay")?;
                self.origin_delays
                    .insert(origin.clone(), item.crawl_delay_ms);
            }
        }
        let completions: Vec<Completion> = done
            .iter()
            .map(|item| Completion {
                receipt: item.lease.receipt(),
                outcome: item.outcome.clone(),
            })
            .collect();
        let (_, outcomes) = frontier
            .complete_urls(crawl, &completions)
            .await
            .context("complete")?;
        for (item, outcome) in done.iter().zip(outcomes) {
            if let Err(err) = outcome {
                eprintln!("{}: completion refused: {err}", item.lease.url);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn parses_positionals_and_options() {
        let config = Config::parse(&args(&["c", "c-results", "w0", "--batch", "4"])).unwrap();
        assert_eq!(
            (
                config.crawl.as_str(),
                config.results.as_str(),
                config.name.as_str()
            ),
            ("c", "c-results", "w0")
        );
        assert_eq!(config.batch_urls, 4);
        assert_eq!(config.lease_ms, LEASE_MS_DEFAULT);
        assert!(Config::parse(&args(&["c", "r"])).is_err());
        assert!(Config::parse(&args(&["c", "r", "w", "--batch", "0"])).is_err());
        assert!(Config::parse(&args(&["c", "r", "w", "--frob"])).is_err());
        assert!(Config::parse(&args(&["c", "r", "w", "--batch"])).is_err());
    }
}
