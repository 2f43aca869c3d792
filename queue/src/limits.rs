//! Every bound the state machine enforces, with its unit in its name.
//!
//! A replicated state machine must bound everything a client can make it
//! hold: every replica holds the same state, so one unbounded topic fills
//! every node's memory at once. A request over a limit gets a
//! [`QueueError`](crate::QueueError) that names the limit; nothing is
//! truncated silently.

/// The wire and snapshot format version. A replica refuses requests and
/// snapshots of any other version instead of misreading them.
pub const FORMAT_VERSION: u8 = 1;

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
