//! The crawler worker SDK: everything a crawler worker ROM does except
//! deciding what to keep from a page.
//!
//! A worker implements one function from a fetched [`Page`] to
//! [`Extracted`] (fields for the result record, links to follow) and hands
//! it to [`run`]:
//!
//! ```no_run
//! // A worker ROM's whole `main`:
//! worker_sdk::run(|page| worker_sdk::Extracted {
//!     fields: Default::default(),
//!     outlinks: page.links(),
//! })
//! ```
//!
//! [`run`] leases batches of URLs from the crawl frontier, fetches them
//! through the `Http` grant, calls the function on every response, offers
//! the outlinks (depth + 1), appends one [`ResultRecord`] per response to
//! the results topic, and only then completes the URLs. A worker that dies
//! before completing loses nothing: its leases expire and the URLs are
//! fetched again (so the results topic may hold a URL twice; the export
//! dedupes on the canonical URL).
//!
//! A worker is spawned by `crawler.wasm workers` with grants only:
//! [`GRANT_REPLICAS`] (a view of the Raft replicas), [`GRANT_CRAWL_TOKEN`]
//! (enqueue and consume on the crawl), [`GRANT_RESULTS_TOKEN`] (enqueue
//! on the results topic) and [`GRANT_HTTP`] (fetches scoped to the crawl).
//! Its arguments: `CRAWL RESULTS_TOPIC WORKER_NAME [--batch N]
//! [--lease-ms MS] [--record-body-bytes-max N]`.

pub mod fetch;
pub mod links;
pub mod record;
mod report;
pub mod warc;
mod worker;

pub use record::ResultRecord;
pub use serde_json::{json, Map, Value};
pub use worker::{run, Config, LEASE_MS_MIN};

/// The grant through which a worker reaches the replicas (a `readPath`).
pub const GRANT_REPLICAS: &str = raft_client::access::REPLICAS_GRANT;
/// The grant holding the token for the crawl frontier (enqueue, consume).
pub const GRANT_CRAWL_TOKEN: &str = raft_client::access::TOKEN_GRANT;
/// The grant holding the token for the results topic (enqueue only).
pub const GRANT_RESULTS_TOKEN: &str = "results-token";
/// The `Http` grant.
pub const GRANT_HTTP: &str = "http";

/// A fetched page, as the extract function sees it.
#[derive(Clone, Copy, Debug)]
pub struct Page<'a> {
    /// The canonical URL the frontier leased.
    pub url: &'a str,
    /// The URL after redirects (links resolve against it).
    pub final_url: &'a str,
    /// HTTP status.
    pub status: u16,
    /// Media type, lower case, without parameters.
    pub content_type: &'a str,
    /// Response headers.
    pub headers: &'a [(String, String)],
    /// The body (cut at the grant's cap).
    pub body: &'a [u8],
    /// Link depth of the URL.
    pub depth: u32,
}

impl Page<'_> {
    /// Whether the page is HTML.
    #[must_use]
    pub fn is_html(&self) -> bool {
        self.content_type == "text/html" || self.content_type == "application/xhtml+xml"
    }

    /// The followable links of an HTML page (see [`links::links`]); none
    /// for other types or error statuses.
    #[must_use]
    pub fn links(&self) -> Vec<String> {
        if self.is_html() && self.status < 400 {
            links::links(self.final_url, self.body)
        } else {
            Vec::new()
        }
    }

    /// The collapsed text of the first element matching a CSS selector.
    #[must_use]
    pub fn text(&self, selector: &str) -> Option<String> {
        self.is_html()
            .then(|| links::first_text(self.body, selector))
            .flatten()
    }

    /// An attribute of the first element matching a CSS selector.
    #[must_use]
    pub fn attr(&self, selector: &str, attr: &str) -> Option<String> {
        self.is_html()
            .then(|| links::first_attr(self.body, selector, attr))
            .flatten()
    }
}

/// What a worker keeps from a page.
#[derive(Clone, Debug, Default)]
pub struct Extracted {
    /// Added to the result record as `fields`.
    pub fields: Map<String, Value>,
    /// Absolute URLs to offer to the frontier (it checks scope, depth and
    /// budget, and dedupes).
    pub outlinks: Vec<String>,
}

/// The default worker's function: no fields, every followable link.
#[must_use]
pub fn follow_links(page: &Page<'_>) -> Extracted {
    Extracted {
        fields: Map::new(),
        outlinks: page.links(),
    }
}
