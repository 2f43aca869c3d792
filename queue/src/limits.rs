//! Every bound the state machine enforces, with its unit in its name.
//!
//! A replicated state machine must bound everything a client can make it
//! hold: every replica holds the same state, so one unbounded topic fills
//! every node's memory at once. A request over a limit gets a
//! [`QueueError`](crate::QueueError) that names the limit; nothing is
//! truncated silently.

/// The wire format version. A replica refuses requests of any other version
/// instead of misreading them. New commands are added as new enum variants
/// at the end, which keeps every older encoding valid under this version.
pub const FORMAT_VERSION: u8 = 1;

/// The snapshot format version. 2 added the crawl frontiers, 3 each crawl's
/// per-worker counts (appended after the format 2 body); a replica still
/// reads versions 1 and 2 and refuses any other.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 3;

/// The suffix of a topic's dead-letter topic: `urls` dead-letters into `urls.dlq`.
pub const DLQ_SUFFIX: &str = ".dlq";

/// The longest topic name, dead-letter suffix included, in bytes.
pub const TOPIC_NAME_BYTES_MAX: usize = 128;

/// The longest name a client may give a topic: room is kept for [`DLQ_SUFFIX`].
pub const USER_TOPIC_NAME_BYTES_MAX: usize = TOPIC_NAME_BYTES_MAX - DLQ_SUFFIX.len();

/// The most topics, dead-letter topics included. Each topic created by a
/// client takes two slots: itself and its `.dlq`.
pub const TOPICS_MAX: usize = 1024;

/// The largest message body, in bytes.
pub const MESSAGE_BYTES_MAX: usize = 1024 * 1024;

/// The most messages in one enqueue batch, lease, ack, nack or extend.
pub const BATCH_MESSAGES_MAX: usize = 1024;

/// The most body bytes in one enqueue batch, and in one lease or peek reply
/// (a reply stops early rather than exceed it, but always carries at least one
/// message, so a single [`MESSAGE_BYTES_MAX`] message can always be leased).
pub const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The largest encoded command or query a replica will try to decode, in
/// bytes: a full batch plus room for ids and headers.
pub const COMMAND_BYTES_MAX: usize = BATCH_BYTES_MAX + 256 * 1024;

/// The longest producer or consumer id, in bytes.
pub const CLIENT_ID_BYTES_MAX: usize = 128;

/// The longest KV key, in bytes.
pub const KEY_BYTES_MAX: usize = 1024;

/// The largest KV value, in bytes.
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;

/// The most KV entries.
pub const KV_ENTRIES_MAX: usize = 1_000_000;

/// The most bytes of message bodies, KV keys and KV values the state machine
/// holds at once. Every replica holds all of it in memory and copies it into
/// each snapshot.
pub const STORED_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// The default length cap of a topic: ready, leased and delayed messages.
pub const DEFAULT_TOPIC_LENGTH_MAX: u64 = 100_000;

/// The highest length cap a topic may be configured with.
pub const TOPIC_LENGTH_MAX_LIMIT: u64 = 10_000_000;

/// How many failed deliveries a message gets before it is dead-lettered
/// (RabbitMQ 4's quorum-queue default).
pub const DEFAULT_MAX_DELIVERIES: u32 = 20;

/// The highest `max_deliveries` a topic may be configured with. Zero means
/// unlimited and is what dead-letter topics use.
pub const MAX_DELIVERIES_LIMIT: u32 = 10_000;

/// The default lease (visibility timeout) when a lease names none, in ms.
pub const DEFAULT_LEASE_MS: u64 = 30_000;

/// The shortest lease, in ms.
pub const LEASE_MS_MIN: u64 = 1;

/// The longest lease or lease extension, in ms (12 hours, as in SQS).
pub const LEASE_MS_MAX: u64 = 12 * 60 * 60 * 1000;

/// The longest delay of an enqueue or a nack, in ms (one day).
pub const DELAY_MS_MAX: u64 = 24 * 60 * 60 * 1000;

/// The default cap on messages leased to one consumer and not yet settled
/// (NATS' MaxAckPending default).
pub const DEFAULT_IN_FLIGHT_MAX: u32 = 1000;

/// The highest per-consumer in-flight cap a topic may be configured with.
pub const IN_FLIGHT_MAX_LIMIT: u32 = 100_000;

/// How long a (producer id, sequence) pair is remembered, by default, in ms
/// (NATS' duplicate window).
pub const DEFAULT_DEDUPE_WINDOW_MS: u64 = 2 * 60 * 1000;

/// The longest dedupe window a topic may be configured with, in ms.
pub const DEDUPE_WINDOW_MS_MAX: u64 = 24 * 60 * 60 * 1000;

/// The most (producer id, sequence) pairs remembered per topic. Past it the
/// oldest pair is forgotten early, which narrows the window; `stats` reports
/// how often that happened.
pub const DEDUPE_ENTRIES_MAX: usize = 100_000;

/// How long an ack is remembered so that a repeated ack with the same token
/// succeeds, in ms.
pub const ACK_MEMORY_MS: u64 = 5 * 60 * 1000;

/// The most acks remembered per topic for [`ACK_MEMORY_MS`].
pub const ACK_MEMORY_ENTRIES_MAX: usize = 100_000;

/// Lease tokens are `log index * LEASE_TOKENS_PER_INDEX + slot`, so one lease
/// command can hand out this many distinct tokens.
pub const LEASE_TOKENS_PER_INDEX: u64 = 1 << 11;

// The crawl frontier (crate::crawl).

/// The most crawls held at once (stopped ones included, until deleted).
pub const CRAWLS_MAX: usize = 64;

/// The longest canonical URL the frontier accepts, in bytes (longer links
/// are refused as invalid and counted).
pub const URL_BYTES_MAX: usize = 2048;

/// The bytes one entry of a crawl's seen set takes: a 128-bit hash of the
/// canonical URL, so the seen set costs the same for long and short URLs.
pub const SEEN_ENTRY_BYTES: usize = 16;

/// The highest page budget (`max_pages`: URLs accepted into the seen set)
/// one crawl may be configured with.
pub const CRAWL_PAGES_MAX_LIMIT: u64 = 1_000_000;

/// The most pages all crawls together may budget: bounds every replica's
/// seen sets to `CRAWL_PAGES_TOTAL_MAX * SEEN_ENTRY_BYTES` bytes of hashes.
pub const CRAWL_PAGES_TOTAL_MAX: u64 = 4_000_000;

/// The seen-set bytes all crawls may hold, in hash bytes.
pub const CRAWL_SEEN_BYTES_MAX: u64 = CRAWL_PAGES_TOTAL_MAX * SEEN_ENTRY_BYTES as u64;

/// The default page budget of a crawl.
pub const DEFAULT_CRAWL_PAGES_MAX: u64 = 10_000;

/// The most origins (scheme, host, port) one crawl tracks; a link to a new
/// origin past it is refused and counted.
pub const CRAWL_ORIGINS_MAX: usize = 10_000;

/// The deepest link depth a crawl may be configured with (seeds are depth 0).
pub const CRAWL_DEPTH_MAX_LIMIT: u32 = 1_000;

/// The most allowed domains in a crawl's scope.
pub const CRAWL_DOMAINS_MAX: usize = 256;

/// The longest allowed domain, in bytes (the DNS limit).
pub const CRAWL_DOMAIN_BYTES_MAX: usize = 253;

/// The default per-origin concurrency: one fetch at a time per site.
pub const DEFAULT_CRAWL_CONCURRENCY_PER_ORIGIN: u32 = 1;

/// The highest per-origin concurrency a crawl may be configured with.
pub const CRAWL_CONCURRENCY_PER_ORIGIN_MAX: u32 = 64;

/// The highest `max_attempts` (failed fetches before a URL is dead) a
/// crawl may be configured with.
pub const CRAWL_ATTEMPTS_MAX_LIMIT: u32 = 100;

/// The longest per-origin delay between fetch starts, configured or set
/// from robots.txt, in ms (one hour).
pub const CRAWL_DELAY_MS_MAX: u64 = 60 * 60 * 1000;

/// The default delay between fetch starts on one origin, in ms.
pub const DEFAULT_CRAWL_DELAY_MS: u64 = 1_000;

/// The default first retry backoff, in ms (doubled per failed attempt).
pub const DEFAULT_CRAWL_BACKOFF_MS: u64 = 1_000;

/// The default longest retry backoff, in ms (ten minutes).
pub const DEFAULT_CRAWL_BACKOFF_MAX_MS: u64 = 10 * 60 * 1000;

/// The default link depth limit of a crawl.
pub const DEFAULT_CRAWL_DEPTH_MAX: u32 = 3;

/// The default failed fetches before a URL is dead.
pub const DEFAULT_CRAWL_ATTEMPTS_MAX: u32 = 4;

/// The longest retry backoff or `Retry-After`, in ms (one day, as delays).
pub const CRAWL_BACKOFF_MS_MAX: u64 = DELAY_MS_MAX;

/// The most dead and permanently failed URL records a crawl keeps; past it
/// the oldest is dropped and counted.
pub const CRAWL_DEAD_RECORDS_MAX: usize = 10_000;

/// The most worker names a crawl counts on their own rows; later names
/// share one row (`crawl::workers`).
pub const CRAWL_WORKERS_TRACKED_MAX: usize = 1_024;

/// The longest free-text failure detail a worker may record, in bytes.
pub const CRAWL_DETAIL_BYTES_MAX: usize = 256;

// Relations between the limits, checked when the crate compiles.
const _: () = assert!(USER_TOPIC_NAME_BYTES_MAX > 0);
const _: () = assert!(MESSAGE_BYTES_MAX <= BATCH_BYTES_MAX);
const _: () = assert!(BATCH_BYTES_MAX < COMMAND_BYTES_MAX);
const _: () = assert!(BATCH_MESSAGES_MAX as u64 <= LEASE_TOKENS_PER_INDEX);
const _: () = assert!(TOPICS_MAX.is_multiple_of(2));
const _: () = assert!(DEFAULT_TOPIC_LENGTH_MAX <= TOPIC_LENGTH_MAX_LIMIT);
const _: () = assert!(DEFAULT_MAX_DELIVERIES <= MAX_DELIVERIES_LIMIT);
const _: () = assert!(DEFAULT_LEASE_MS <= LEASE_MS_MAX && DEFAULT_LEASE_MS >= LEASE_MS_MIN);
const _: () = assert!(DEFAULT_IN_FLIGHT_MAX <= IN_FLIGHT_MAX_LIMIT);
const _: () = assert!(DEFAULT_DEDUPE_WINDOW_MS <= DEDUPE_WINDOW_MS_MAX);
const _: () = assert!(VALUE_BYTES_MAX as u64 <= STORED_BYTES_MAX);
const _: () = assert!(DEFAULT_CRAWL_PAGES_MAX <= CRAWL_PAGES_MAX_LIMIT);
const _: () = assert!(CRAWL_PAGES_MAX_LIMIT <= CRAWL_PAGES_TOTAL_MAX);
const _: () = assert!(CRAWL_ORIGINS_MAX as u64 <= CRAWL_PAGES_MAX_LIMIT);
const _: () = assert!(DEFAULT_CRAWL_DELAY_MS <= CRAWL_DELAY_MS_MAX);
const _: () = assert!(DEFAULT_CRAWL_BACKOFF_MS <= CRAWL_BACKOFF_MS_MAX);
const _: () = assert!(URL_BYTES_MAX <= MESSAGE_BYTES_MAX);
const _: () = assert!(BATCH_MESSAGES_MAX * URL_BYTES_MAX <= BATCH_BYTES_MAX);
const _: () = assert!(CRAWL_DETAIL_BYTES_MAX < URL_BYTES_MAX);
const _: () = assert!(CRAWL_SEEN_BYTES_MAX <= STORED_BYTES_MAX);
const _: () = assert!(DEFAULT_CRAWL_BACKOFF_MS <= DEFAULT_CRAWL_BACKOFF_MAX_MS);
const _: () = assert!(DEFAULT_CRAWL_BACKOFF_MAX_MS <= CRAWL_BACKOFF_MS_MAX);
const _: () = assert!(DEFAULT_CRAWL_DEPTH_MAX <= CRAWL_DEPTH_MAX_LIMIT);
const _: () = assert!(
    DEFAULT_CRAWL_ATTEMPTS_MAX >= 1 && DEFAULT_CRAWL_ATTEMPTS_MAX <= CRAWL_ATTEMPTS_MAX_LIMIT
);
const _: () = assert!(
    DEFAULT_CRAWL_CONCURRENCY_PER_ORIGIN >= 1
        && DEFAULT_CRAWL_CONCURRENCY_PER_ORIGIN <= CRAWL_CONCURRENCY_PER_ORIGIN_MAX
);
