//! The values crawl commands carry in and replies carry out.

use serde::{Deserialize, Serialize};

use crate::limits;

/// A crawl's scope and politeness settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrawlConfig {
    /// Hosts the crawl may visit: each entry allows itself and its
    /// subdomains (`example.org` allows `www.example.org`). Lower-case
    /// ASCII (punycode for international names). Empty allows every host.
    pub allowed_domains: Vec<String>,
    /// The deepest link depth accepted; seeds are depth 0.
    pub max_depth: u32,
    /// The page budget: the most URLs the crawl ever accepts (its seen set's
    /// cap). Links past it are refused and counted.
    pub max_pages: u64,
    /// The least time between two fetch starts on one origin, in ms, unless
    /// the origin has a crawl-delay of its own (from robots.txt).
    pub default_delay_ms: u64,
    /// The most URLs of one origin leased at once, over all workers.
    pub concurrency_per_origin: u32,
    /// Failed fetches (retryable failures and lease expiries) before a URL
    /// is dead.
    pub max_attempts: u32,
    /// The first retry backoff in ms; each further failure doubles it, up to
    /// `backoff_max_ms`.
    pub backoff_ms: u64,
    /// The longest retry backoff, in ms.
    pub backoff_max_ms: u64,
    /// The lease a [`Command::LeaseUrls`](crate::Command::LeaseUrls) gets when it names none, in ms.
    pub default_lease_ms: u64,
    /// Whether links to private, loopback and link-local addresses (and
    /// `localhost`) are accepted. Also meant for the HTTP capability the
    /// workers are granted, which must refuse such addresses when false.
    pub allow_private: bool,
}

impl Default for CrawlConfig {
    fn default() -> Self {
        Self {
            allowed_domains: Vec::new(),
            max_depth: limits::DEFAULT_CRAWL_DEPTH_MAX,
            max_pages: limits::DEFAULT_CRAWL_PAGES_MAX,
            default_delay_ms: limits::DEFAULT_CRAWL_DELAY_MS,
            concurrency_per_origin: limits::DEFAULT_CRAWL_CONCURRENCY_PER_ORIGIN,
            max_attempts: limits::DEFAULT_CRAWL_ATTEMPTS_MAX,
            backoff_ms: limits::DEFAULT_CRAWL_BACKOFF_MS,
            backoff_max_ms: limits::DEFAULT_CRAWL_BACKOFF_MAX_MS,
            default_lease_ms: limits::DEFAULT_LEASE_MS,
            allow_private: false,
        }
    }
}

/// A link offered to the frontier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The absolute URL (canonicalized by the frontier).
    pub url: String,
    /// Its depth: 0 for a seed, the parent's depth + 1 for an outlink.
    pub depth: u32,
    /// The frontier id of the page the link was found on, if any.
    pub parent: Option<u64>,
}

impl Link {
    /// A seed (depth 0, no parent).
    pub fn seed(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            depth: 0,
            parent: None,
        }
    }
}

/// What the frontier did with one offered link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Offered {
    /// New: enqueued under this id.
    Enqueued {
        /// The URL's id in the crawl.
        id: u64,
        /// Its canonical form.
        url: String,
    },
    /// Already seen (enqueued earlier, in this batch or before).
    Seen,
    /// Not an absolute http(s) URL, or too long.
    Invalid {
        /// Why.
        reason: String,
    },
    /// Its host is outside the allowed domains.
    OutOfScope,
    /// A private or loopback address, and the crawl does not allow those.
    Private,
    /// Deeper than the crawl's `max_depth`.
    TooDeep,
    /// The page budget is spent.
    OverBudget,
    /// The crawl tracks as many origins as it may.
    TooManyOrigins,
}

/// A leased URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlLease {
    /// The URL's id in the crawl.
    pub id: u64,
    /// The lease token: unique to this lease.
    pub token: u64,
    /// The canonical URL.
    pub url: String,
    /// Its origin.
    pub origin: String,
    /// Its depth.
    pub depth: u32,
    /// The id of the URL whose page linked it (`None` for a seed).
    pub parent: Option<u64>,
    /// Failed fetches so far.
    pub failed: u32,
    /// The log time of the lease, ms since the Unix epoch.
    pub leased_at_ms: u64,
    /// The log time at which it expires.
    pub deadline_ms: u64,
}

impl UrlLease {
    /// The receipt to complete or extend this lease with.
    pub fn receipt(&self) -> crate::Receipt {
        crate::Receipt {
            id: self.id,
            token: self.token,
        }
    }
}

/// How a fetch ended, as the worker reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchOutcome {
    /// Fetched; its outlinks were offered before this.
    Fetched,
    /// Never retry: recorded with the reason.
    Permanent(PermanentFailure),
    /// Retry after a backoff, or dead-letter at `max_attempts`.
    Retryable(RetryableFailure),
    /// Not fetched and no failure (e.g. the worker shuts down): ready again
    /// at once, no attempt counted.
    Released,
}

/// A failure that retrying will not fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PermanentFailure {
    /// An HTTP status such as 404 or 410.
    Status(u16),
    /// Redirected out of scope, or found out of scope after fetching.
    OutOfScope,
    /// robots.txt disallows it.
    Robots,
    /// Anything else, described in at most
    /// [`limits::CRAWL_DETAIL_BYTES_MAX`] bytes.
    Other(String),
}

/// A failure that may pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetryableFailure {
    /// A server error such as 500 or 503.
    Status(u16),
    /// The fetch timed out.
    Timeout,
    /// 429: also holds back the whole origin for `retry_after_ms` (or the
    /// backoff when the server gave none).
    TooManyRequests {
        /// The server's Retry-After, in ms.
        retry_after_ms: Option<u64>,
    },
    /// Connection refused or reset, DNS failure and the like.
    Network,
}

/// One completion of a leased URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// The lease.
    pub receipt: crate::Receipt,
    /// How the fetch ended.
    pub outcome: FetchOutcome,
}

/// What a completion did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Completed {
    /// Fetched or permanently failed: the URL left the frontier.
    Done,
    /// Ready again at once (a release).
    Ready,
    /// Ready again at this log time (a retry backoff).
    RetryAt {
        /// When, ms since the Unix epoch.
        until_ms: u64,
    },
    /// Out of attempts: dead, with its last failure recorded.
    Dead,
}

/// Why a URL left the frontier without a fetch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeadUrlReason {
    /// A worker reported a permanent failure.
    Permanent(PermanentFailure),
    /// Its retryable failures reached `max_attempts`; the last is given.
    Attempts(RetryableFailure),
    /// Its leases expired `max_attempts` times (the workers crashed or hung).
    LeaseExpired,
}

impl DeadUrlReason {
    /// A short name of the kind of failure, for counts by kind: `404`,
    /// `out of scope`, `robots`, `other`, `500 after retries`, `timeout`,
    /// `429`, `network`, `lease expired`.
    pub fn kind(&self) -> String {
        match self {
            Self::Permanent(PermanentFailure::Status(code)) => code.to_string(),
            Self::Permanent(PermanentFailure::OutOfScope) => "out of scope".to_owned(),
            Self::Permanent(PermanentFailure::Robots) => "robots".to_owned(),
            Self::Permanent(PermanentFailure::Other(_)) => "other".to_owned(),
            Self::Attempts(RetryableFailure::Status(code)) => format!("{code} after retries"),
            Self::Attempts(RetryableFailure::Timeout) => "timeout".to_owned(),
            Self::Attempts(RetryableFailure::TooManyRequests { .. }) => "429".to_owned(),
            Self::Attempts(RetryableFailure::Network) => "network".to_owned(),
            Self::LeaseExpired => "lease expired".to_owned(),
        }
    }
}

/// A URL that failed permanently or ran out of attempts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadUrl {
    /// Its id in the crawl.
    pub id: u64,
    /// The canonical URL.
    pub url: String,
    /// Its depth.
    pub depth: u32,
    /// Why.
    pub reason: DeadUrlReason,
    /// Failed fetches.
    pub failed: u32,
    /// The log time it died.
    pub dead_at_ms: u64,
}

/// A crawl's run state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CrawlState {
    /// Leasing and accepting offers.
    #[default]
    Running,
    /// Leases return nothing; offers and completions still work.
    Paused,
    /// Finished: offers are refused, leases return nothing, the ready and
    /// delayed URLs are dropped; leased ones can still complete (and are
    /// dropped if they come back unfetched).
    Stopped,
}

/// Pause, resume or stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CrawlControl {
    /// Stop leasing until resumed.
    Pause,
    /// Lease again (not after a stop).
    Resume,
    /// End the crawl for good.
    Stop,
}

/// Lifetime counters of a crawl.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrawlCounters {
    /// Links offered.
    pub offered: u64,
    /// URLs accepted (the seen set's size).
    pub seen: u64,
    /// Links already seen.
    pub duplicate: u64,
    /// Links refused: not an http(s) URL or too long.
    pub refused_invalid: u64,
    /// Links refused: outside the allowed domains.
    pub refused_out_of_scope: u64,
    /// Links refused: private addresses not allowed.
    pub refused_private: u64,
    /// Links refused: deeper than `max_depth`.
    pub refused_too_deep: u64,
    /// Links refused: the page budget was spent.
    pub refused_over_budget: u64,
    /// Links refused: too many origins.
    pub refused_too_many_origins: u64,
    /// Leases granted.
    pub leased: u64,
    /// URLs fetched.
    pub fetched: u64,
    /// URLs failed permanently.
    pub failed: u64,
    /// Retryable failures (each one, not each URL).
    pub retried: u64,
    /// Releases.
    pub released: u64,
    /// Leases that expired.
    pub expired: u64,
    /// URLs that ran out of attempts.
    pub dead: u64,
    /// Dead or failed records dropped because the record list was full.
    pub records_dropped: u64,
    /// URLs dropped by a stop: ready and delayed ones at once, leased ones
    /// when they come back unfetched.
    pub dropped_by_stop: u64,
}

/// A crawl's counts, counters and settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrawlStatus {
    /// The crawl name.
    pub crawl: String,
    /// The log time the status is as of.
    pub now_ms: u64,
    /// Running, paused or stopped.
    pub state: CrawlState,
    /// URLs ready to lease (some may wait for their origin's delay).
    pub ready: u64,
    /// URLs leased.
    pub leased: u64,
    /// URLs waiting out a retry backoff.
    pub delayed: u64,
    /// Dead and permanently failed records held.
    pub dead: u64,
    /// Origins tracked.
    pub origins: u64,
    /// Lifetime counters.
    pub counters: CrawlCounters,
    /// The settings.
    pub config: CrawlConfig,
}
