//! The values that commands carry in and replies carry out.

use serde::{Deserialize, Serialize};

use crate::limits;

/// A topic's settings. [`TopicConfig::default`] is what a topic gets when
/// the first enqueue creates it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// Failed deliveries (nacks and lease expiries) before a message moves to
    /// `<topic>.dlq`. Zero means unlimited. Releases do not count.
    pub max_deliveries: u32,
    /// The most messages (ready, leased and delayed) the topic holds; an
    /// enqueue past it is refused whole with [`QueueError::TopicFull`](crate::QueueError::TopicFull).
    pub length_max: u64,
    /// The lease a [`Command::Lease`](crate::Command::Lease) gets when it names none, in ms.
    pub default_lease_ms: u64,
    /// The most unsettled leases one consumer may hold on this topic.
    pub in_flight_max: u32,
    /// How long a (producer id, sequence) pair deduplicates enqueues, in ms.
    pub dedupe_window_ms: u64,
    /// When set, leases return no messages; everything else works.
    pub paused: bool,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            max_deliveries: limits::DEFAULT_MAX_DELIVERIES,
            length_max: limits::DEFAULT_TOPIC_LENGTH_MAX,
            default_lease_ms: limits::DEFAULT_LEASE_MS,
            in_flight_max: limits::DEFAULT_IN_FLIGHT_MAX,
            dedupe_window_ms: limits::DEFAULT_DEDUPE_WINDOW_MS,
            paused: false,
        }
    }
}

/// A message to enqueue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    /// The payload, at most [`limits::MESSAGE_BYTES_MAX`] bytes.
    pub body: Vec<u8>,
    /// When set, a second enqueue of the same (producer, sequence) within
    /// the topic's dedupe window returns the first message's id instead of
    /// adding a copy.
    pub dedupe: Option<DedupeKey>,
    /// Milliseconds before the message becomes ready; zero for at once.
    pub delay_ms: u64,
}

impl NewMessage {
    /// A message with no dedupe key and no delay.
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        Self {
            body: body.into(),
            dedupe: None,
            delay_ms: 0,
        }
    }

    /// Sets the dedupe key.
    #[must_use]
    pub fn dedupe(mut self, producer: impl Into<String>, sequence: u64) -> Self {
        self.dedupe = Some(DedupeKey {
            producer: producer.into(),
            sequence,
        });
        self
    }

    /// Sets the delay before delivery.
    #[must_use]
    pub fn delay_ms(mut self, delay_ms: u64) -> Self {
        self.delay_ms = delay_ms;
        self
    }
}

/// A producer's idempotency key (like NATS `Nats-Msg-Id` or SQS's dedupe id).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DedupeKey {
    /// The producer's id, at most [`limits::CLIENT_ID_BYTES_MAX`] bytes.
    pub producer: String,
    /// The producer's number for this message.
    pub sequence: u64,
}

/// The result of enqueueing one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    /// The message id, unique within its topic and increasing.
    pub id: u64,
    /// True when the dedupe key matched an earlier enqueue, whose id this is.
    pub duplicate: bool,
}

/// What a consumer holds while it works on a leased message. Pass it to
/// ack, nack and extend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Receipt {
    /// The message id.
    pub id: u64,
    /// The lease token: unique to this lease of this message.
    pub token: u64,
}

/// A leased message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The message id.
    pub id: u64,
    /// The lease token. A settled or expired token is refused.
    pub token: u64,
    /// The log time the lease was granted, in ms since the Unix epoch.
    pub leased_at_ms: u64,
    /// The log time at which the lease expires, in ms since the Unix epoch.
    pub deadline_ms: u64,
    /// How many times the message was leased, this lease included.
    pub acquired: u32,
    /// How many earlier deliveries failed (nack or lease expiry).
    pub failed: u32,
    /// The log time of the enqueue, in ms since the Unix epoch.
    pub enqueued_at_ms: u64,
    /// The payload.
    pub body: Vec<u8>,
    /// Set on messages in a dead-letter topic: where and why they died.
    pub dead_letter: Option<DeadLetter>,
}

impl Delivery {
    /// The receipt to ack, nack or extend this delivery with.
    pub fn receipt(&self) -> Receipt {
        Receipt {
            id: self.id,
            token: self.token,
        }
    }
}

/// Why and from where a message was dead-lettered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The topic the message died in.
    pub topic: String,
    /// Its id in that topic.
    pub id: u64,
    /// Why it died.
    pub reason: DeadReason,
    /// How many times it was leased there.
    pub acquired: u32,
    /// How many of those deliveries failed.
    pub failed: u32,
    /// The log time it was moved, in ms since the Unix epoch.
    pub dead_at_ms: u64,
}

/// Why a message was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeadReason {
    /// Its failed deliveries reached the topic's `max_deliveries`; the last
    /// failure is given.
    DeliveryLimit(Failure),
    /// A consumer rejected it ([`Nack::Reject`]).
    Rejected,
}

/// A failed delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// The consumer nacked it.
    Nacked,
    /// The lease expired before a settlement.
    LeaseExpired,
}

/// How a consumer gives a leased message back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Nack {
    /// Processing failed: count a failed delivery and redeliver after
    /// `delay_ms` (dead-letter instead at the delivery limit).
    Retry {
        /// Milliseconds before redelivery.
        delay_ms: u64,
    },
    /// Give it back unprocessed (e.g. shutting down): ready at once, and no
    /// failed delivery is counted.
    Release,
    /// Never redeliver: move it to the dead-letter topic now.
    Reject,
}

/// The result of acking one receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckOutcome {
    /// The message was removed.
    Acked,
    /// This token had already acked the message (within [`limits::ACK_MEMORY_MS`]).
    AlreadyAcked,
}

/// A KV value with its version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    /// The value.
    #[serde(with = "crate::bytes")]
    pub value: Vec<u8>,
    /// The log index of the write that set it; never reused, so a
    /// compare-and-set cannot confuse a deleted and re-created key.
    pub version: u64,
}

/// Where a message is, as `peek` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageState {
    /// Waiting for a consumer.
    Ready,
    /// Leased to `consumer` until `deadline_ms`.
    Leased {
        /// The consumer holding it.
        consumer: String,
        /// When the lease expires.
        deadline_ms: u64,
    },
    /// Not deliverable before `until_ms`.
    Delayed {
        /// When it becomes ready.
        until_ms: u64,
    },
}

/// A message as `peek` shows it: everything but the lease token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeekedMessage {
    /// The message id.
    pub id: u64,
    /// Where it is.
    pub state: MessageState,
    /// How many times it was leased.
    pub acquired: u32,
    /// How many deliveries failed.
    pub failed: u32,
    /// The log time of the enqueue.
    pub enqueued_at_ms: u64,
    /// The payload.
    pub body: Vec<u8>,
    /// Set on dead-lettered messages.
    pub dead_letter: Option<DeadLetter>,
}

/// Counts and counters of one topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicStats {
    /// The topic name.
    pub topic: String,
    /// The log time the counts are as of (the last applied command).
    pub now_ms: u64,
    /// Messages waiting for a consumer.
    pub ready: u64,
    /// Messages leased and not settled.
    pub leased: u64,
    /// Messages waiting out a delay.
    pub delayed: u64,
    /// Messages in the topic's dead-letter topic (zero for a dead-letter topic).
    pub dead: u64,
    /// How long the oldest ready message has waited since its enqueue, in ms.
    pub oldest_ready_age_ms: Option<u64>,
    /// Consumers holding at least one lease.
    pub consumers: u64,
    /// Lifetime counters.
    pub counters: Counters,
    /// The topic's settings.
    pub config: TopicConfig,
}

/// Lifetime counters of a topic (reset only by deleting it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Messages added (duplicates not counted).
    pub enqueued: u64,
    /// Enqueues answered with an earlier id.
    pub deduplicated: u64,
    /// Dedupe pairs forgotten before their window ended because the table was full.
    pub dedupe_evicted: u64,
    /// Leases granted.
    pub leased: u64,
    /// Leases granted to a message that had been leased before.
    pub redelivered: u64,
    /// Messages acked.
    pub acked: u64,
    /// Failed deliveries by nack.
    pub nacked: u64,
    /// Releases (returned without failure).
    pub released: u64,
    /// Failed deliveries by lease expiry.
    pub expired: u64,
    /// Messages moved to the dead-letter topic.
    pub dead_lettered: u64,
    /// Messages dropped because the dead-letter topic was full (counted on
    /// the dead-letter topic).
    pub dead_dropped: u64,
    /// Messages removed by purge.
    pub purged: u64,
}

/// A topic and its settings, as `topics` lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSummary {
    /// The topic name.
    pub name: String,
    /// Messages in it.
    pub length: u64,
    /// Its settings.
    pub config: TopicConfig,
}
