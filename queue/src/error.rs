//! Errors: what the state machine refuses, what a transport reports, and what
//! the client returns. Each message says what to do next.

use serde::{Deserialize, Serialize};

/// Why the state machine refused a command or a query.
///
/// It travels inside [`Response`](crate::Response), so every replica returns
/// the same error for the same command. A refused command changes nothing
/// except the log time (expired leases are still returned).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum QueueError {
    /// The bytes are not a command or query of this format version.
    #[error("malformed request: {detail}; the client and the replicas must run the same queue format version")]
    Malformed {
        /// What the decoder found.
        detail: String,
    },
    /// The request carries a format version this replica does not speak.
    #[error("unsupported format version {got} (this replica speaks {supported}); upgrade the older side")]
    UnsupportedVersion {
        /// The version in the request.
        got: u8,
        /// The version this replica speaks.
        supported: u8,
    },
    /// A field is out of range or badly formed.
    #[error("invalid {field}: {detail}")]
    Invalid {
        /// The argument's name.
        field: String,
        /// What is wrong with it and what is allowed.
        detail: String,
    },
    /// The named topic does not exist.
    #[error("no topic {topic:?}; enqueue to it or create it first (dead-letter topics exist only with their topic)")]
    NoSuchTopic {
        /// The topic name.
        topic: String,
    },
    /// `create_topic` named an existing topic with a different configuration.
    #[error("topic {topic:?} already exists with another configuration; use configure_topic to change it")]
    TopicExists {
        /// The topic name.
        topic: String,
    },
    /// The topic limit is reached.
    #[error("too many topics (limit {max}, dead-letter topics included); delete unused topics")]
    TooManyTopics {
        /// The limit.
        max: usize,
    },
    /// The topic is at its length cap; the enqueue was refused whole.
    #[error("topic {topic:?} is full ({length} of {max} messages, {adding} more refused); retry after consumers ack, or raise its length cap")]
    TopicFull {
        /// The topic name.
        topic: String,
        /// Messages in the topic now.
        length: u64,
        /// Messages the refused request would have added.
        adding: u64,
        /// The topic's length cap.
        max: u64,
    },
    /// The state machine holds as many bytes as it may.
    #[error("the queue store is full ({bytes} of {max} bytes, {adding} more refused); retry after consumers ack, or purge or delete data")]
    StoreFull {
        /// Bytes held now.
        bytes: u64,
        /// Bytes the refused request would have added.
        adding: u64,
        /// The limit.
        max: u64,
    },
    /// The KV map holds as many entries as it may.
    #[error("the KV map is full ({max} entries); delete keys first")]
    TooManyKeys {
        /// The limit.
        max: usize,
    },
    /// The consumer holds as many leases on this topic as the topic allows.
    #[error("consumer {consumer:?} already holds {in_flight} leases on topic {topic:?} (limit {max}); ack or nack some first")]
    InFlightLimit {
        /// The topic name.
        topic: String,
        /// The consumer id.
        consumer: String,
        /// Leases held now.
        in_flight: u32,
        /// The topic's per-consumer cap.
        max: u32,
    },
    /// The lease token no longer holds the message: the lease expired, was
    /// settled, or the message was leased again.
    #[error("stale lease on message {id} of topic {topic:?}: the lease expired or was settled, so the message is or was redelivered; do not retry")]
    StaleLease {
        /// The topic name.
        topic: String,
        /// The message id.
        id: u64,
    },
    /// No message with this id is in the topic, and no recent ack of it is remembered.
    #[error("no message {id} in topic {topic:?} (acked long ago, purged, dead-lettered, or never enqueued); do not retry")]
    NoSuchMessage {
        /// The topic name.
        topic: String,
        /// The message id.
        id: u64,
    },
    /// A compare-and-set found another version.
    #[error("version mismatch on key {key:?}: expected {expected}, found {current} (0 = absent); read it again and retry")]
    VersionMismatch {
        /// The key, lossily decoded as UTF-8 for display.
        key: String,
        /// The version the caller expected.
        expected: u64,
        /// The version found.
        current: u64,
    },
    /// The named crawl does not exist.
    #[error("no crawl {crawl:?}; create it first")]
    NoSuchCrawl {
        /// The crawl name.
        crawl: String,
    },
    /// `create_crawl` named an existing crawl with a different configuration.
    #[error("crawl {crawl:?} already exists with another configuration; use configure_crawl to change it")]
    CrawlExists {
        /// The crawl name.
        crawl: String,
    },
    /// The crawl limit, or the page budget of all crawls, is reached.
    #[error("crawl limit reached: {detail}; delete finished crawls")]
    CrawlLimit {
        /// Which limit.
        detail: String,
    },
    /// The crawl was stopped: it takes no more offers and cannot resume.
    #[error("crawl {crawl:?} is stopped; create a new crawl to crawl again")]
    CrawlStopped {
        /// The crawl name.
        crawl: String,
    },
    /// The lease token no longer holds the URL: the lease expired or was
    /// settled, so the URL is or was leased again.
    #[error("stale lease on URL {id} of crawl {crawl:?}: it expired or was settled; drop the result, do not retry")]
    StaleUrlLease {
        /// The crawl name.
        crawl: String,
        /// The URL id.
        id: u64,
    },
}

impl QueueError {
    /// An [`QueueError::Invalid`] for `field`.
    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            detail: detail.into(),
        }
    }
}

/// Why a request did not get an answer from the replica group.
///
/// A transport owns retries: it resends [`TransportError::Unavailable`]
/// requests itself (raft-core dedupes a retried command by client session),
/// and returns an error only when it gives up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The request certainly did not apply (no leader, not sent, refused
    /// before proposing). Safe to send again.
    #[error("queue group unavailable: {0}; retry later")]
    Unavailable(String),
    /// The request may or may not have applied (timeout after sending).
    /// Retrying an enqueue may duplicate it unless it carries a producer id.
    #[error("outcome unknown: {0}; the request may have applied")]
    Unknown(String),
    /// The transport refused the request itself (too large, closed).
    #[error("transport refused the request: {0}")]
    Refused(String),
}

/// What a [`Client`](crate::Client) call returns on failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The request did not reach the group, or its outcome is unknown.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The group refused the request.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The reply was not the one the request asks for: client and replicas
    /// disagree on the protocol.
    #[error("unexpected reply from the queue group: {0}; the client and the replicas must run the same queue format version")]
    Protocol(String),
}
