//! The wire format: commands (through the Raft log), queries (through
//! ReadIndex reads) and responses.
//!
//! Each encoding is one [`FORMAT_VERSION`] byte followed by the postcard
//! encoding of the value. Decoding is total: any bytes decode to a value or to
//! a [`QueueError`], never a panic, because the same malformed command is
//! applied by every replica at the same log index.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::crawl::{
    workers::WorkerStatus, Completed, Completion, CrawlConfig, CrawlControl, CrawlState,
    CrawlStatus, DeadUrl, Link, Offered, UrlLease,
};
use crate::limits::{COMMAND_BYTES_MAX, FORMAT_VERSION};
use crate::types::{
    AckOutcome, Delivery, Enqueued, Nack, NewMessage, PeekedMessage, Receipt, TopicConfig,
    TopicStats, TopicSummary, Versioned,
};
use crate::QueueError;

/// A request that changes state, so it goes through the Raft log.
///
/// Leasing is a command, not a query: it changes who holds a message.
///
/// New variants go at the end: postcard numbers variants by position, so
/// that keeps every existing encoding valid. Each crawl command's doc
/// starts with its access verb ("Verb: admin", "enqueue/offer", "consume"),
/// which the replica checks per caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Creates a topic and its dead-letter topic. Creating an existing topic
    /// with the same config succeeds and changes nothing.
    CreateTopic {
        /// The topic name.
        topic: String,
        /// Its settings.
        config: TopicConfig,
    },
    /// Replaces an existing topic's settings. Messages already over a
    /// lowered length cap stay; new enqueues are refused until it drains.
    ConfigureTopic {
        /// The topic name.
        topic: String,
        /// Its new settings.
        config: TopicConfig,
    },
    /// Deletes a topic, its dead-letter topic and all their messages.
    DeleteTopic {
        /// The topic name (not a `.dlq`).
        topic: String,
    },
    /// Adds messages, all or none. Creates the topic with default settings
    /// if it does not exist (unless the name ends in `.dlq`).
    Enqueue {
        /// The topic name.
        topic: String,
        /// The messages, at most [`crate::limits::BATCH_MESSAGES_MAX`].
        messages: Vec<NewMessage>,
    },
    /// Leases up to `max_messages` ready messages, oldest id first.
    Lease {
        /// The topic name.
        topic: String,
        /// Who leases; the per-consumer in-flight cap applies to this id.
        consumer: String,
        /// The most messages to return (also capped by the in-flight cap and
        /// by [`crate::limits::BATCH_BYTES_MAX`] body bytes).
        max_messages: u32,
        /// The lease length; `None` takes the topic's default.
        lease_ms: Option<u64>,
    },
    /// Acks (removes) leased messages. One result per receipt.
    Ack {
        /// The topic name.
        topic: String,
        /// The receipts.
        receipts: Vec<Receipt>,
    },
    /// Gives leased messages back. One result per receipt.
    Nack {
        /// The topic name.
        topic: String,
        /// The receipts.
        receipts: Vec<Receipt>,
        /// What to do with them.
        nack: Nack,
    },
    /// Renews leases to end `lease_ms` from now. One result per receipt.
    Extend {
        /// The topic name.
        topic: String,
        /// The receipts.
        receipts: Vec<Receipt>,
        /// The new lease length from now; `None` takes the topic's default.
        lease_ms: Option<u64>,
    },
    /// Removes every ready and delayed message; leased messages stay, so
    /// their consumers can still settle them.
    Purge {
        /// The topic name.
        topic: String,
    },
    /// Sets a key.
    Put {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Removes a key.
    Delete {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Sets (or, with `value: None`, removes) a key only if its version is
    /// `expected_version` (0 = the key is absent).
    Cas {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The version the caller read.
        expected_version: u64,
        /// The new value; `None` deletes.
        #[serde(with = "serde_bytes")]
        value: Option<Vec<u8>>,
    },
    /// Does nothing but advance log time, so that expired leases and ended
    /// delays take effect when no other command arrives.
    Tick,
    /// Verb: admin. Creates a crawl frontier. Creating an existing crawl
    /// with the same config succeeds and changes nothing.
    CreateCrawl {
        /// The crawl name.
        crawl: String,
        /// Its scope and politeness settings.
        config: CrawlConfig,
    },
    /// Verb: admin. Replaces a crawl's settings; URLs already accepted stay.
    ConfigureCrawl {
        /// The crawl name.
        crawl: String,
        /// Its new settings.
        config: CrawlConfig,
    },
    /// Verb: admin. Pauses, resumes or stops a crawl.
    ControlCrawl {
        /// The crawl name.
        crawl: String,
        /// What to do.
        control: CrawlControl,
    },
    /// Verb: admin. Deletes a crawl and all its state.
    DeleteCrawl {
        /// The crawl name.
        crawl: String,
    },
    /// Verb: enqueue/offer. Offers links, atomically: each is
    /// canonicalized, checked against scope, depth and budget, and enqueued
    /// if never seen. One result per link, in order.
    Offer {
        /// The crawl name.
        crawl: String,
        /// The links, at most [`crate::limits::BATCH_MESSAGES_MAX`].
        links: Vec<Link>,
    },
    /// Verb: consume. Leases up to `max_urls` URLs whose origins are
    /// outside their crawl-delay and under their concurrency cap.
    LeaseUrls {
        /// The crawl name.
        crawl: String,
        /// The worker's id.
        worker: String,
        /// The most URLs to return.
        max_urls: u32,
        /// The lease length; `None` takes the crawl's default.
        lease_ms: Option<u64>,
    },
    /// Verb: consume. Reports how fetches ended. One result per completion.
    CompleteUrls {
        /// The crawl name.
        crawl: String,
        /// The completions.
        completions: Vec<Completion>,
    },
    /// Verb: consume. Renews URL leases. One new deadline per receipt.
    ExtendUrls {
        /// The crawl name.
        crawl: String,
        /// The receipts.
        receipts: Vec<Receipt>,
        /// The new lease length from now; `None` takes the crawl's default.
        lease_ms: Option<u64>,
    },
    /// Verb: consume (workers learn crawl-delays from robots.txt they
    /// fetch). Sets or clears an origin's delay between fetch starts.
    SetOriginDelay {
        /// The crawl name.
        crawl: String,
        /// The origin, or any URL on it (canonicalized to its origin).
        origin: String,
        /// The delay in ms; `None` returns to the crawl's default.
        delay_ms: Option<u64>,
    },
}

/// A read, answered after a ReadIndex confirms the replica is current.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// Reads a key.
    Get {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Shows messages without leasing them, in id order.
    Peek {
        /// The topic name.
        topic: String,
        /// Start after this id (`None`: from the first).
        after: Option<u64>,
        /// The most messages to show.
        max_messages: u32,
    },
    /// Counts and counters of a topic.
    Stats {
        /// The topic name.
        topic: String,
    },
    /// Lists every topic.
    Topics,
    /// Verb: read. A crawl's counts, counters and settings.
    CrawlStatus {
        /// The crawl name.
        crawl: String,
    },
    /// Verb: read. A crawl's dead and permanently failed URLs, in the order
    /// they died, after the record of URL id `after`.
    DeadUrls {
        /// The crawl name.
        crawl: String,
        /// Start after this URL id's record (`None`: from the oldest).
        after: Option<u64>,
        /// The most records to return.
        max_urls: u32,
    },
    /// Verb: read. What each worker of a crawl did, and holds now.
    CrawlWorkers {
        /// The crawl name.
        crawl: String,
    },
}

/// What a successful command or query returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// From [`Command::CreateTopic`]: false when it already existed.
    TopicCreated {
        /// Whether this command created it.
        created: bool,
    },
    /// From [`Command::ConfigureTopic`].
    TopicConfigured,
    /// From [`Command::DeleteTopic`]: messages removed (dead-letter topic included).
    TopicDeleted {
        /// Messages removed.
        messages: u64,
    },
    /// From [`Command::Enqueue`], one entry per message in order.
    Enqueued(Vec<Enqueued>),
    /// From [`Command::Lease`]; empty when nothing is ready or the topic is paused.
    Leased(Vec<Delivery>),
    /// From [`Command::Ack`], one result per receipt.
    Acked(Vec<Result<AckOutcome, QueueError>>),
    /// From [`Command::Nack`], one result per receipt.
    Nacked(Vec<Result<(), QueueError>>),
    /// From [`Command::Extend`], one new deadline (ms) per receipt.
    Extended(Vec<Result<u64, QueueError>>),
    /// From [`Command::Purge`]: messages removed.
    Purged {
        /// Messages removed.
        messages: u64,
    },
    /// From [`Command::Put`] and a successful [`Command::Cas`]: the new
    /// version (0 after a delete by cas).
    Written {
        /// The new version.
        version: u64,
    },
    /// From [`Command::Delete`]: the version removed (0 if absent).
    Deleted {
        /// The version the key had.
        version: u64,
    },
    /// From [`Command::Tick`]: the log time now.
    Ticked {
        /// The log time, ms since the Unix epoch.
        now_ms: u64,
    },
    /// From [`Query::Get`].
    Value(Option<Versioned>),
    /// From [`Query::Peek`].
    Peeked(Vec<PeekedMessage>),
    /// From [`Query::Stats`].
    Stats(TopicStats),
    /// From [`Query::Topics`].
    Topics(Vec<TopicSummary>),
    /// From [`Command::CreateCrawl`]: false when it already existed.
    CrawlCreated {
        /// Whether this command created it.
        created: bool,
    },
    /// From [`Command::ConfigureCrawl`].
    CrawlConfigured,
    /// From [`Command::ControlCrawl`]: the state now.
    CrawlControlled(CrawlState),
    /// From [`Command::DeleteCrawl`]: URLs that were in its frontier.
    CrawlDeleted {
        /// URLs removed.
        urls: u64,
    },
    /// From [`Command::Offer`], one entry per link in order.
    Offered(Vec<Offered>),
    /// From [`Command::LeaseUrls`]; empty when no origin may be fetched now.
    UrlsLeased(Vec<UrlLease>),
    /// From [`Command::CompleteUrls`].
    UrlsCompleted {
        /// The log time the completions applied at.
        now_ms: u64,
        /// One result per completion.
        results: Vec<Result<Completed, QueueError>>,
    },
    /// From [`Command::SetOriginDelay`]: the origin as the crawl keys it.
    OriginDelaySet {
        /// The canonical origin.
        origin: String,
    },
    /// From [`Query::CrawlStatus`].
    CrawlStatus(CrawlStatus),
    /// From [`Query::DeadUrls`].
    DeadUrls(Vec<DeadUrl>),
    /// From [`Query::CrawlWorkers`], by worker name.
    CrawlWorkers(Vec<WorkerStatus>),
}

/// The answer to a command or a query.
pub type Response = Result<Reply, QueueError>;

/// Encodes a command for [`raft_core::StateMachine::apply`].
pub fn encode_command(command: &Command) -> Vec<u8> {
    encode(command)
}

/// Encodes a query for [`raft_core::StateMachine::query`].
pub fn encode_query(query: &Query) -> Vec<u8> {
    encode(query)
}

/// Encodes a response.
pub fn encode_response(response: &Response) -> Vec<u8> {
    encode(response)
}

/// Decodes a command.
///
/// # Errors
///
/// [`QueueError::UnsupportedVersion`] for another format version,
/// [`QueueError::Malformed`] for anything else that is not a command.
pub fn decode_command(bytes: &[u8]) -> Result<Command, QueueError> {
    decode(bytes, COMMAND_BYTES_MAX)
}

/// Decodes a query.
///
/// # Errors
///
/// As [`decode_command`].
pub fn decode_query(bytes: &[u8]) -> Result<Query, QueueError> {
    decode(bytes, COMMAND_BYTES_MAX)
}

/// Decodes a response.
///
/// # Errors
///
/// As [`decode_command`]. A response has no size limit here: the
/// transport that carried it bounds it.
pub fn decode_response(bytes: &[u8]) -> Result<Response, QueueError> {
    decode(bytes, usize::MAX)
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let bytes = vec![FORMAT_VERSION];
    // Serializing these types into a Vec cannot fail: they hold only
    // integers, strings, byte vectors, options, enums and sequences of known
    // length.
    match postcard::to_extend(value, bytes) {
        Ok(encoded) => encoded,
        Err(error) => unreachable!("postcard encoding of a queue type failed: {error}"),
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8], bytes_max: usize) -> Result<T, QueueError> {
    if bytes.len() > bytes_max {
        return Err(QueueError::Malformed {
            detail: format!(
                "{} bytes is more than the {bytes_max} a request may take",
                bytes.len()
            ),
        });
    }
    let Some((&version, body)) = bytes.split_first() else {
        return Err(QueueError::Malformed {
            detail: "empty request".to_owned(),
        });
    };
    if version != FORMAT_VERSION {
        return Err(QueueError::UnsupportedVersion {
            got: version,
            supported: FORMAT_VERSION,
        });
    }
    match postcard::take_from_bytes::<T>(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(QueueError::Malformed {
            detail: format!("{} trailing bytes", rest.len()),
        }),
        Err(error) => Err(QueueError::Malformed {
            detail: error.to_string(),
        }),
    }
}
