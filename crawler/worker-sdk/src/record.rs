//! The result record a worker appends to the results topic, one JSON
//! object per fetched URL.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Bytes of the body kept in a record by default (the grant may have read
/// more; `length` and `digest` are of everything it read).
pub const RECORD_BODY_BYTES_MAX: usize = 64 * 1024;

/// One fetched URL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    /// The canonical URL the frontier leased (the export dedupes on it).
    pub url: String,
    /// The URL after redirects.
    pub final_url: String,
    /// HTTP status.
    pub status: u16,
    /// Response headers, in order.
    pub headers: Vec<(String, String)>,
    /// Media type, lower case, without parameters.
    pub content_type: String,
    /// Body bytes the grant read.
    pub length: u64,
    /// Whether the grant cut the body at its cap.
    pub truncated: bool,
    /// `blake3:<hex>` of the body bytes read.
    pub digest: String,
    /// When the fetch ended, ms since the Unix epoch (the worker's wall
    /// clock, `ww_guest::unix_time_ms`).
    pub fetched_at: u64,
    /// Link depth (seeds are 0).
    pub depth: u32,
    /// The frontier id of the URL.
    pub id: u64,
    /// The frontier id of the page it was found on: that page's record has
    /// it as `id`. `null` for a seed.
    pub parent: Option<u64>,
    /// The worker that fetched it.
    pub worker: String,
    /// 1 for a first fetch; more after failures or expired leases.
    pub attempt: u32,
    /// The fetch's duration, ms.
    pub elapsed_ms: u64,
    /// Outlinks offered to the frontier.
    pub outlinks: u32,
    /// What the worker's extract function returned.
    pub fields: Map<String, Value>,
    /// The head of the body as text (lossy UTF-8), for textual types only;
    /// at most the worker's record cap.
    pub body: String,
}

/// Whether a media type is text worth keeping in a record.
#[must_use]
pub fn is_textual(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || content_type.ends_with("+xml")
        || content_type.ends_with("/xml")
        || content_type.ends_with("/json")
}

/// `blake3:<hex>` of `bytes`.
#[must_use]
pub fn digest(bytes: &[u8]) -> String {
    format!("blake3:{}", blake3::hash(bytes).to_hex())
}

/// The first `max` bytes of `body` as text, cut at a character boundary.
#[must_use]
pub fn body_text(body: &[u8], max: usize) -> String {
    let head = &body[..body.len().min(max)];
    let text = String::from_utf8_lossy(head);
    text.into_owned()
}
