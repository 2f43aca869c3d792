//! A worker's counts, reported to its host as metrics (`Host.metrics`,
//! which a grant-only process may use: it only describes the process
//! itself). The host exports them at `/metrics` labelled with the worker's
//! process id, so an operator sees each worker's pages, pages/s and
//! errors by kind without asking the Raft group.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

use ww_guest::ww_api::{host, metrics};

/// How often a busy worker reports, at most.
const REPORT_EVERY_MS: u64 = 1_000;

/// What one worker has done since it started.
pub(crate) struct Report {
    metrics: metrics::Client,
    labels: [(&'static str, String); 2],
    pages: u64,
    body_bytes: u64,
    urls_leased: u64,
    /// Fetches that got no response, by the grant's error kind.
    errors: BTreeMap<&'static str, u64>,
    last_ms: u64,
    pages_at_last: u64,
    in_flight: Rc<Cell<bool>>,
}

impl Report {
    /// Counts for `worker` of `crawl`, reported through `host`.
    pub(crate) fn new(host: &host::Client, crawl: &str, worker: &str) -> Self {
        Self {
            metrics: host.metrics_request().send().pipeline.get_metrics(),
            labels: [("crawl", crawl.to_owned()), ("worker", worker.to_owned())],
            pages: 0,
            body_bytes: 0,
            urls_leased: 0,
            errors: BTreeMap::new(),
            last_ms: ww_guest::now_ms(),
            pages_at_last: 0,
            in_flight: Rc::new(Cell::new(false)),
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
        if self.in_flight.get() || elapsed_ms < REPORT_EVERY_MS {
            return;
        }
        let pages_per_second =
            (self.pages - self.pages_at_last) as f64 * 1000.0 / elapsed_ms as f64;
        self.last_ms = now_ms;
        self.pages_at_last = self.pages;
        let plain: [(&str, f64, bool); 4] = [
            ("crawl_pages_fetched", self.pages as f64, true),
            ("crawl_body_bytes_fetched", self.body_bytes as f64, true),
            ("crawl_urls_leased", self.urls_leased as f64, true),
            ("crawl_pages_per_second", pages_per_second, false),
        ];
        let mut request = self.metrics.set_request();
        let count = plain.len() + self.errors.len();
        let mut list = request
            .get()
            .init_samples(u32::try_from(count).unwrap_or(0));
        let base: Vec<(&str, &str)> = self
            .labels
            .iter()
            .map(|(label, text)| (*label, text.as_str()))
            .collect();
        let mut index = 0u32;
        for (name, value, counter) in plain {
            fill(list.reborrow().get(index), name, value, counter, &base);
            index += 1;
        }
        for (kind, errors) in &self.errors {
            let mut labels = base.clone();
            labels.push(("kind", kind));
            let sample = list.reborrow().get(index);
            fill(sample, "crawl_fetch_errors", *errors as f64, true, &labels);
            index += 1;
        }
        let promise = request.send().promise;
        let in_flight = self.in_flight.clone();
        in_flight.set(true);
        ww_guest::spawn(async move {
            if let Err(err) = promise.await {
                eprintln!("reporting metrics: {err}");
            }
            in_flight.set(false);
        });
    }
}

fn fill(
    mut sample: ww_guest::ww_api::ww_capnp::metric_sample::Builder<'_>,
    name: &str,
    value: f64,
    counter: bool,
    labels: &[(&str, &str)],
) {
    sample.set_name(name);
    sample.set_value(value);
    sample.set_counter(counter);
    let mut list = sample.init_labels(labels.len() as u32);
    for (at, (label, text)) in labels.iter().enumerate() {
        let mut entry = list.reborrow().get(at as u32);
        entry.set_name(label);
        entry.set_value(text);
    }
}
