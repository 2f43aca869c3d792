//! The crawl frontier: per named crawl, the URLs still to fetch, the set of
//! URLs ever accepted, and per-origin politeness, all in log time.
//!
//! # Why not a topic
//!
//! A crawl is not built on the topics (`queue/src/topic.rs`): a topic leases
//! the oldest ready message, while a frontier must pick by origin (an
//! origin inside its crawl-delay or at its concurrency cap is skipped, with
//! its URLs kept in order for later). A topic's dedupe is a time window of
//! producer keys; a frontier's is a permanent, bounded set of URL hashes. And
//! a fetch ends in more ways than ack or nack (permanent failure, retry with
//! exponential backoff, 429 that holds back the whole origin). Sharing the
//! topic code would have meant per-origin topics (thousands of them, each
//! with a dead-letter topic) and the politeness rules outside the state
//! machine, where replicas could not enforce them for the whole fleet. What
//! is shared: lease tokens (one counter for both), receipts, the store byte
//! limit and the expiry-on-advance rule.
//!
//! A URL is READY (in its origin's queue), LEASED(worker, token, deadline)
//! or DELAYED(until) by a retry backoff. Fetched and permanently failed URLs
//! leave the frontier; the latter, and URLs out of attempts, leave a
//! [`DeadUrl`] record.

mod canon;
mod ops;
mod types;
pub mod workers;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

pub use canon::{canonicalize, CanonicalUrl};
pub(crate) use ops::{check_config, check_crawl_name, check_detail};
pub use types::{
    Completed, Completion, CrawlConfig, CrawlControl, CrawlCounters, CrawlState, CrawlStatus,
    DeadUrl, DeadUrlReason, FetchOutcome, Link, Offered, PermanentFailure, RetryableFailure,
    UrlLease,
};

use crate::limits::{CRAWL_DEAD_RECORDS_MAX, CRAWL_ORIGINS_MAX};

/// A URL in the frontier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    url: String,
    origin: String,
    depth: u32,
    parent: Option<u64>,
    failed: u32,
    state: UrlState,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum UrlState {
    Ready,
    Leased {
        worker: String,
        token: u64,
        leased_at_ms: u64,
        deadline_ms: u64,
    },
    Delayed {
        until_ms: u64,
    },
}

/// Politeness state of one origin. Kept for the crawl's life (bounded by
/// [`CRAWL_ORIGINS_MAX`]) so a crawl-delay from robots.txt is not forgotten.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Origin {
    /// No lease of this origin before this log time.
    next_allowed_ms: u64,
    /// The crawl-delay override (robots.txt), in ms.
    delay_ms: Option<u64>,
}

/// Lookups derived from `urls`, rebuilt on restore (never serialized).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Index {
    /// Ready ids per origin; origins with none are absent.
    ready: BTreeMap<String, BTreeSet<u64>>,
    /// Leased count per origin; origins with none are absent.
    leased: BTreeMap<String, u32>,
    /// `(deadline_ms, id)` of leased URLs.
    leases: BTreeSet<(u64, u64)>,
    /// `(until_ms, id)` of delayed URLs.
    delayed: BTreeSet<(u64, u64)>,
    /// URL bytes held in `urls` and `records`.
    url_bytes: u64,
}

/// One crawl.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Crawl {
    name: String,
    pub(crate) config: CrawlConfig,
    pub(crate) state: CrawlState,
    next_id: u64,
    /// Hashes of every canonical URL ever accepted.
    seen: BTreeSet<[u8; 16]>,
    urls: BTreeMap<u64, Entry>,
    origins: BTreeMap<String, Origin>,
    /// Dead and permanently failed URLs, oldest first.
    records: VecDeque<DeadUrl>,
    /// Leasing resumes after this origin, so origins take turns.
    cursor: String,
    pub(crate) counters: CrawlCounters,
    #[serde(skip)]
    index: Index,
    /// Per-worker counts. Replicated, but kept out of this struct's
    /// encoding: snapshots carry them after the format 2 body (format 3),
    /// so format 2 snapshots still decode.
    #[serde(skip)]
    pub(crate) workers: workers::Workers,
}

impl Crawl {
    pub(crate) fn new(name: String, config: CrawlConfig) -> Self {
        Self {
            name,
            config,
            state: CrawlState::Running,
            next_id: 1,
            seen: BTreeSet::new(),
            urls: BTreeMap::new(),
            origins: BTreeMap::new(),
            records: VecDeque::new(),
            cursor: String::new(),
            counters: CrawlCounters::default(),
            index: Index::default(),
            workers: workers::Workers::default(),
        }
    }

    /// URL bytes held (frontier and records), for the store limit.
    pub(crate) fn url_bytes(&self) -> u64 {
        self.index.url_bytes
    }

    /// URLs in the frontier (ready, leased, delayed).
    pub(crate) fn len(&self) -> u64 {
        self.urls.len() as u64
    }

    /// The earliest lease deadline or backoff end, if any.
    pub(crate) fn next_due_ms(&self) -> Option<u64> {
        let lease = self.index.leases.first().map(|(at, _)| *at);
        let delay = self.index.delayed.first().map(|(at, _)| *at);
        match (lease, delay) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The delay between fetch starts on `origin`.
    fn delay_ms(&self, origin: &str) -> u64 {
        self.origins
            .get(origin)
            .and_then(|o| o.delay_ms)
            .unwrap_or(self.config.default_delay_ms)
    }

    fn record(&mut self, record: DeadUrl) {
        if self.records.len() >= CRAWL_DEAD_RECORDS_MAX {
            if let Some(old) = self.records.pop_front() {
                self.index.url_bytes -= old.url.len() as u64;
                self.counters.records_dropped += 1;
            }
        }
        self.index.url_bytes += record.url.len() as u64;
        self.records.push_back(record);
    }

    /// Up to `max` records after id `after`, in the order they died.
    pub(crate) fn dead_urls(&self, after: Option<u64>, max: usize) -> Vec<DeadUrl> {
        let skip = match after {
            None => 0,
            Some(id) => self
                .records
                .iter()
                .position(|r| r.id == id)
                .map_or(0, |p| p + 1),
        };
        self.records.iter().skip(skip).take(max).cloned().collect()
    }

    pub(crate) fn status(&self, now_ms: u64) -> CrawlStatus {
        CrawlStatus {
            crawl: self.name.clone(),
            now_ms,
            state: self.state,
            ready: self.index.ready.values().map(|s| s.len() as u64).sum(),
            leased: self.index.leases.len() as u64,
            delayed: self.index.delayed.len() as u64,
            dead: self.records.len() as u64,
            origins: self.origins.len() as u64,
            counters: self.counters.clone(),
            config: self.config.clone(),
        }
    }

    /// Every worker's counts, and how many URLs each holds now.
    pub(crate) fn worker_status(&self) -> Vec<workers::WorkerStatus> {
        let mut leased_now: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, id) in &self.index.leases {
            if let Some(Entry {
                state: UrlState::Leased { worker, .. },
                ..
            }) = self.urls.get(id)
            {
                *leased_now.entry(worker.as_str()).or_default() += 1;
            }
        }
        let mut rows: Vec<workers::WorkerStatus> = self
            .workers
            .rows()
            .map(|(worker, counts)| workers::WorkerStatus {
                worker: worker.clone(),
                leased_now: leased_now.remove(worker.as_str()).unwrap_or(0),
                counts: counts.clone(),
            })
            .collect();
        // Holders past the table's rows count under the shared row.
        let others: u64 = leased_now.values().sum();
        if others > 0 {
            if let Some(row) = rows
                .iter_mut()
                .find(|row| row.worker == workers::OTHER_WORKERS)
            {
                row.leased_now += others;
            }
        }
        rows
    }

    /// Can a new origin be tracked?
    fn origin_room(&self, adding: usize) -> bool {
        self.origins.len() + adding <= CRAWL_ORIGINS_MAX
    }

    // The only functions that touch `urls` and the index together.

    fn insert(&mut self, id: u64, entry: Entry) {
        assert!(!self.urls.contains_key(&id), "url id {id} reused");
        self.index.url_bytes += entry.url.len() as u64;
        self.index_add(id, &entry.origin, &entry.state);
        self.urls.insert(id, entry);
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.urls.remove(&id)?;
        self.index.url_bytes -= entry.url.len() as u64;
        self.index_remove(id, &entry.origin, &entry.state);
        Some(entry)
    }

    fn set_state(&mut self, id: u64, state: UrlState) {
        let Some(entry) = self.urls.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut entry.state, state.clone());
        let origin = entry.origin.clone();
        self.index_remove(id, &origin, &old);
        self.index_add(id, &origin, &state);
    }

    fn index_add(&mut self, id: u64, origin: &str, state: &UrlState) {
        let added = match state {
            UrlState::Ready => self
                .index
                .ready
                .entry(origin.to_owned())
                .or_default()
                .insert(id),
            UrlState::Delayed { until_ms } => self.index.delayed.insert((*until_ms, id)),
            UrlState::Leased { deadline_ms, .. } => {
                *self.index.leased.entry(origin.to_owned()).or_default() += 1;
                self.index.leases.insert((*deadline_ms, id))
            }
        };
        assert!(added, "url {id} indexed twice");
    }

    fn index_remove(&mut self, id: u64, origin: &str, state: &UrlState) {
        let removed = match state {
            UrlState::Ready => match self.index.ready.get_mut(origin) {
                Some(ids) => {
                    let removed = ids.remove(&id);
                    if ids.is_empty() {
                        self.index.ready.remove(origin);
                    }
                    removed
                }
                None => false,
            },
            UrlState::Delayed { until_ms } => self.index.delayed.remove(&(*until_ms, id)),
            UrlState::Leased { deadline_ms, .. } => {
                if let Some(count) = self.index.leased.get_mut(origin) {
                    *count -= 1;
                    if *count == 0 {
                        self.index.leased.remove(origin);
                    }
                }
                self.index.leases.remove(&(*deadline_ms, id))
            }
        };
        assert!(removed, "url {id} missing from the index");
    }

    /// Rebuilds the index after a restore and checks what a snapshot could
    /// get wrong.
    ///
    /// # Errors
    ///
    /// A readable message naming the first inconsistency.
    pub(crate) fn rebuild(&mut self, name: &str) -> Result<(), String> {
        let fail = |what: &str| Err(format!("crawl {name:?}: {what}"));
        if self.name != name {
            return fail("stored under another name");
        }
        check_config(&self.config).or_else(|e| fail(&e.to_string()))?;
        if self.seen.len() as u64 != self.counters.seen {
            return fail("seen set and counter disagree");
        }
        if self.origins.len() > CRAWL_ORIGINS_MAX || self.records.len() > CRAWL_DEAD_RECORDS_MAX {
            return fail("too many origins or records");
        }
        if self.urls.len() > self.seen.len() {
            return fail("more URLs than seen URLs");
        }
        if let Some((&last, _)) = self.urls.last_key_value() {
            if last >= self.next_id {
                return fail("URL id >= next id");
            }
        }
        for entry in self.urls.values() {
            if !self.origins.contains_key(&entry.origin) {
                return fail("URL of an unknown origin");
            }
            if !self.seen.contains(&canon::url_key(&entry.url)) {
                return fail("URL missing from the seen set");
            }
        }
        self.index = Index {
            url_bytes: self.records.iter().map(|r| r.url.len() as u64).sum(),
            ..Index::default()
        };
        let entries: Vec<(u64, String, UrlState, usize)> = self
            .urls
            .iter()
            .map(|(id, e)| (*id, e.origin.clone(), e.state.clone(), e.url.len()))
            .collect();
        for (id, origin, state, size) in entries {
            // Distinct ids, each state indexed once: the asserts cannot fire.
            self.index.url_bytes += size as u64;
            self.index_add(id, &origin, &state);
        }
        Ok(())
    }
}
