//! Every limit of the HTTP grant, in one place. Times in milliseconds,
//! sizes in bytes.

/// A scope may set no timeout longer than this.
pub const TIMEOUT_MS_MAX: u32 = 300_000;
/// A scope's body cap may be at most this (capnp messages carry the body).
pub const BODY_BYTES_MAX: u32 = 16 * 1024 * 1024;
/// A scope may follow at most this many redirect hops.
pub const REDIRECTS_MAX: u32 = 20;
/// Entries per scope list (schemes, domains, prefixes, content types).
pub const SCOPE_ENTRIES_MAX: usize = 1024;
/// Bytes per scope list entry.
pub const SCOPE_ENTRY_BYTES_MAX: usize = 2048;
/// Accepted media types per scope.
pub const CONTENT_TYPES_MAX: usize = 64;
/// Bytes of a user agent.
pub const USER_AGENT_BYTES_MAX: usize = 256;
/// The longest crawl-delay honoured; a robots.txt asking for more gets this
/// (a longer one would park the origin for good).
pub const CRAWL_DELAY_MS_MAX: u32 = 60_000;

/// Bytes of a request URL.
pub const URL_BYTES_MAX: usize = 8 * 1024;
/// Extra headers per request.
pub const REQUEST_HEADERS_MAX: usize = 32;
/// Bytes of one request header (name plus value).
pub const REQUEST_HEADER_BYTES_MAX: usize = 8 * 1024;
/// Response headers returned; the rest are dropped.
pub const RESPONSE_HEADERS_MAX: usize = 64;
/// Bytes of one returned response header value; longer ones are dropped.
pub const RESPONSE_HEADER_BYTES_MAX: usize = 8 * 1024;

/// robots.txt bytes read (RFC 9309 asks parsers to read at least 500 KiB).
pub const ROBOTS_BYTES_MAX: usize = 512 * 1024;
/// Redirect hops followed to fetch a robots.txt (RFC 9309: at least five).
pub const ROBOTS_REDIRECTS_MAX: u32 = 5;
/// How long a fetched robots.txt is trusted.
pub const ROBOTS_TTL_MS: u64 = 60 * 60 * 1000;
/// How long an unreachable robots.txt (5xx, timeout) disallows its origin
/// before it is tried again.
pub const ROBOTS_UNREACHABLE_TTL_MS: u64 = 60 * 1000;
/// Origins remembered per grant (robots rules and crawl-delay slots).
pub const ORIGINS_MAX: usize = 10_000;
/// Addresses kept per resolved name.
pub const RESOLVED_ADDRS_MAX: usize = 16;
/// Wait asked of the caller after a 429 without a usable Retry-After.
pub const RETRY_AFTER_DEFAULT_MS: u32 = 1_000;
/// The longest Retry-After honoured.
pub const RETRY_AFTER_MS_MAX: u32 = 3_600_000;
/// Idle pooled connections kept per origin.
pub const POOL_IDLE_PER_HOST_MAX: usize = 4;
/// How long an idle pooled connection is kept.
pub const POOL_IDLE_TIMEOUT_MS: u64 = 30_000;

/// The values [`super::HttpScope::default`] starts from.
pub mod defaults {
    pub const CONNECT_TIMEOUT_MS: u32 = 5_000;
    pub const FIRST_BYTE_TIMEOUT_MS: u32 = 15_000;
    pub const TOTAL_TIMEOUT_MS: u32 = 30_000;
    pub const BODY_BYTES: u32 = 2 * 1024 * 1024;
    pub const REDIRECTS: u32 = 5;
    pub const RATE_WAIT_MAX_MS: u32 = 10_000;
    pub const USER_AGENT: &str = "ww-http/0.1";
}
