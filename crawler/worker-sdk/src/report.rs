//! A worker's counts, reported to its host as metrics (`Host.metrics`,
//! which a grant-only process may use: it only describes the process
//! itself). The host exports them at `/metrics` labelled with the worker's
//! process id, so an operator sees each worker's pages, pages/s and
//! errors by kind without asking the Raft group.

use std::collections::BTreeMap;

use ww_guest::metrics::{Reporter, Sample};
use ww_guest::ww_api::host;

/// How often a busy worker reports, at most.
const REPORT_EVERY_MS: u64 = 1_000;

/// What one worker has done since it started.
pub(crate) struct Report {
    reporter: Reporter,
    crawl: String,
    worker: String,
    pages: u64,
    body_bytes: u64,
    urls_leased: u64,
    /// Fetches that got no response, by the grant's error kind.
    errors: BTreeMap<&'static str, u64>,
    last_ms: u64,
    pages_at_last: u64,
}

impl Report {
    /// Counts for `worker` of `crawl`, reported through `host`.
    pub(crate) fn new(host: &host::Client, crawl: &str, worker: &str) -> Self {
        Self {
            reporter: Reporter::new(host),
            crawl: crawl.to_owned(),
            worker: worker.to_owned(),
            pages: 0,
            body_bytes: 0,
            urls_leased: 0,
            errors: BTreeMap::new(),
            last_ms: ww_guest::now_ms(),
            pages_at_last: 0,
        }
    }

    pub(crate) fn leased(&mut self, count: usize) {
        self.urls_leased += count as u64;
    }

    /// A response kept as a result, of `bytes` body bytes.
    pub(crate) fn page(&mut self, bytes: u64) {
        self.pages += 1;
        self.body_bytes += bytes;
    }

    /// A fetch that failed with `kind`.
    pub(crate) fn error(&mut self, kind: &'static str) {
        *self.errors.entry(kind).or_default() += 1;
    }

    /// Sends the counts if the last report is old enough and answered;
    /// never waits for the host.
    pub(crate) fn send_if_due(&mut self) {
        let now_ms = ww_guest::now_ms();
        let elapsed_ms = now_ms.saturating_sub(self.last_ms);
        if self.reporter.busy() || elapsed_ms < REPORT_EVERY_MS {
            return;
        }
        let pages_per_second =
            (self.pages - self.pages_at_last) as f64 * 1000.0 / elapsed_ms as f64;
        self.last_ms = now_ms;
        self.pages_at_last = self.pages;
        let labelled = |sample: Sample| {
            sample
                .label("crawl", self.crawl.clone())
                .label("worker", self.worker.clone())
        };
        let mut samples = vec![
            labelled(Sample::counter("crawl_pages_fetched", self.pages as f64)),
            labelled(Sample::counter(
                "crawl_body_bytes_fetched",
                self.body_bytes as f64,
            )),
            labelled(Sample::counter(
                "crawl_urls_leased",
                self.urls_leased as f64,
            )),
            labelled(Sample::gauge("crawl_pages_per_second", pages_per_second)),
        ];
        for (kind, errors) in &self.errors {
            samples.push(
                labelled(Sample::counter("crawl_fetch_errors", *errors as f64))
                    .label("kind", *kind),
            );
        }
        self.reporter.send("worker", &samples);
    }
}
