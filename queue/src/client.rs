//! The typed client: [`Client`] over any [`Transport`] that reaches the group.
//!
//! The client builds commands and queries and maps replies to typed results.
//! The transport owns everything about delivery: finding the leader,
//! attaching the raft-core client session (client id, sequence) so a resent
//! command applies once, and retrying what is safe to retry. No async runtime
//! is assumed: the futures are whatever the transport's are (a WASM guest's
//! single-threaded executor, or tokio natively).

use crate::command::{decode_response, encode_command, encode_query, Command, Query, Reply};
use crate::types::{
    AckOutcome, Delivery, Enqueued, Nack, NewMessage, PeekedMessage, Receipt, TopicConfig,
    TopicStats, TopicSummary, Versioned,
};
use crate::{ClientError, QueueError, TransportError};

// The crawl frontier's operations, in their own file.
#[path = "client_crawl.rs"]
mod crawl;

/// How requests reach the replica group.
///
/// `submit` carries a command through the Raft log (`StateMachine::apply` on
/// commit) and returns its encoded result; `query` carries a read through
/// a ReadIndex read (`StateMachine::query`). Both return the state machine's
/// bytes untouched.
///
/// The futures need not be `Send`: a WASM guest is single-threaded.
#[allow(async_fn_in_trait)] // Send-ness is left to each transport on purpose.
pub trait Transport {
    /// Proposes an encoded [`Command`] and waits for its result.
    ///
    /// # Errors
    ///
    /// A [`TransportError`] when the command did not apply, or when the
    /// transport cannot tell.
    async fn submit(&self, command: Vec<u8>) -> Result<Vec<u8>, TransportError>;

    /// Runs an encoded [`Query`] as a linearizable read.
    ///
    /// # Errors
    ///
    /// A [`TransportError`] when no replica answered.
    async fn query(&self, query: Vec<u8>) -> Result<Vec<u8>, TransportError>;
}

impl<T: Transport + ?Sized> Transport for &T {
    async fn submit(&self, command: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        (**self).submit(command).await
    }

    async fn query(&self, query: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        (**self).query(query).await
    }
}

/// A typed queue and KV client.
///
/// Every method is one request. Every method's errors are a
/// [`ClientError`]: [`ClientError::Transport`] when the group was not
/// reached, [`ClientError::Queue`] when it refused (each
/// [`QueueError`] says what to do), [`ClientError::Protocol`] when the reply
/// does not fit the request.
#[derive(Clone, Debug)]
pub struct Client<T> {
    transport: T,
}

impl<T: Transport> Client<T> {
    /// A client that sends through `transport`.
    pub fn new(transport: T) -> Self {
        Self { transport }
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Creates `topic` (and `<topic>.dlq`) with `config`; returns false when it
    /// already existed with the same config.
    ///
    /// # Errors
    ///
    /// [`QueueError::TopicExists`] when it exists with another config.
    pub async fn create_topic(
        &self,
        topic: &str,
        config: TopicConfig,
    ) -> Result<bool, ClientError> {
        let command = Command::CreateTopic {
            topic: topic.to_owned(),
            config,
        };
        match self.submit(&command).await? {
            Reply::TopicCreated { created } => Ok(created),
            other => Err(unexpected("create_topic", &other)),
        }
    }

    /// Replaces a topic's settings.
    ///
    /// # Errors
    ///
    /// [`QueueError::NoSuchTopic`], [`QueueError::Invalid`].
    pub async fn configure_topic(
        &self,
        topic: &str,
        config: TopicConfig,
    ) -> Result<(), ClientError> {
        let command = Command::ConfigureTopic {
            topic: topic.to_owned(),
            config,
        };
        match self.submit(&command).await? {
            Reply::TopicConfigured => Ok(()),
            other => Err(unexpected("configure_topic", &other)),
        }
    }

    /// Deletes a topic and its dead-letter topic; returns the messages removed.
    ///
    /// # Errors
    ///
    /// [`QueueError::NoSuchTopic`].
    pub async fn delete_topic(&self, topic: &str) -> Result<u64, ClientError> {
        let command = Command::DeleteTopic {
            topic: topic.to_owned(),
        };
        match self.submit(&command).await? {
            Reply::TopicDeleted { messages } => Ok(messages),
            other => Err(unexpected("delete_topic", &other)),
        }
    }

    /// Enqueues one message body, creating the topic on first use.
    ///
    /// # Errors
    ///
    /// [`QueueError::TopicFull`], [`QueueError::StoreFull`], [`QueueError::Invalid`].
    pub async fn enqueue(
        &self,
        topic: &str,
        body: impl Into<Vec<u8>>,
    ) -> Result<Enqueued, ClientError> {
        self.enqueue_message(topic, NewMessage::new(body)).await
    }

    /// Enqueues one message with options (dedupe key, delay).
    ///
    /// # Errors
    ///
    /// As [`Client::enqueue`].
    pub async fn enqueue_message(
        &self,
        topic: &str,
        message: NewMessage,
    ) -> Result<Enqueued, ClientError> {
        single(self.enqueue_batch(topic, vec![message]).await?, "enqueue")
    }

    /// Enqueues messages, all or none; one result per message.
    ///
    /// # Errors
    ///
    /// As [`Client::enqueue`]; nothing is enqueued on error.
    pub async fn enqueue_batch(
        &self,
        topic: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Enqueued>, ClientError> {
        let command = Command::Enqueue {
            topic: topic.to_owned(),
            messages,
        };
        match self.submit(&command).await? {
            Reply::Enqueued(results) => Ok(results),
            other => Err(unexpected("enqueue", &other)),
        }
    }

    /// Leases up to `max_messages` ready messages for `lease_ms` (`None`: the
    /// topic's default). An empty result means nothing is ready (or the topic
    /// is paused).
    ///
    /// # Errors
    ///
    /// [`QueueError::InFlightLimit`], [`QueueError::NoSuchTopic`], [`QueueError::Invalid`].
    pub async fn lease(
        &self,
        topic: &str,
        consumer: &str,
        max_messages: u32,
        lease_ms: Option<u64>,
    ) -> Result<Vec<Delivery>, ClientError> {
        let command = Command::Lease {
            topic: topic.to_owned(),
            consumer: consumer.to_owned(),
            max_messages,
            lease_ms,
        };
        match self.submit(&command).await? {
            Reply::Leased(deliveries) => Ok(deliveries),
            other => Err(unexpected("lease", &other)),
        }
    }

    /// Acks one leased message. Acking again with the same receipt succeeds
    /// with [`AckOutcome::AlreadyAcked`].
    ///
    /// # Errors
    ///
    /// [`QueueError::StaleLease`] when the lease expired or was settled.
    pub async fn ack(&self, topic: &str, receipt: Receipt) -> Result<AckOutcome, ClientError> {
        single(self.ack_batch(topic, &[receipt]).await?, "ack")?.map_err(ClientError::Queue)
    }

    /// Acks many leased messages; one result per receipt.
    ///
    /// # Errors
    ///
    /// Errors of the whole request only ([`QueueError::NoSuchTopic`]).
    pub async fn ack_batch(
        &self,
        topic: &str,
        receipts: &[Receipt],
    ) -> Result<Vec<Result<AckOutcome, QueueError>>, ClientError> {
        let command = Command::Ack {
            topic: topic.to_owned(),
            receipts: receipts.to_vec(),
        };
        match self.submit(&command).await? {
            Reply::Acked(results) => Ok(results),
            other => Err(unexpected("ack", &other)),
        }
    }

    /// Reports a failed delivery; the message is redelivered after
    /// `delay_ms`, or dead-lettered at the topic's delivery limit.
    ///
    /// # Errors
    ///
    /// [`QueueError::StaleLease`] when the lease expired or was settled.
    pub async fn nack(
        &self,
        topic: &str,
        receipt: Receipt,
        delay_ms: u64,
    ) -> Result<(), ClientError> {
        self.nack_one(topic, receipt, Nack::Retry { delay_ms })
            .await
    }

    /// Gives a message back unprocessed, without counting a failure.
    ///
    /// # Errors
    ///
    /// As [`Client::nack`].
    pub async fn release(&self, topic: &str, receipt: Receipt) -> Result<(), ClientError> {
        self.nack_one(topic, receipt, Nack::Release).await
    }

    /// Moves a message to the dead-letter topic now.
    ///
    /// # Errors
    ///
    /// As [`Client::nack`].
    pub async fn reject(&self, topic: &str, receipt: Receipt) -> Result<(), ClientError> {
        self.nack_one(topic, receipt, Nack::Reject).await
    }

    /// Gives many leased messages back; one result per receipt.
    ///
    /// # Errors
    ///
    /// Errors of the whole request only.
    pub async fn nack_batch(
        &self,
        topic: &str,
        receipts: &[Receipt],
        nack: Nack,
    ) -> Result<Vec<Result<(), QueueError>>, ClientError> {
        let command = Command::Nack {
            topic: topic.to_owned(),
            receipts: receipts.to_vec(),
            nack,
        };
        match self.submit(&command).await? {
            Reply::Nacked(results) => Ok(results),
            other => Err(unexpected("nack", &other)),
        }
    }

    /// Renews a lease to end `lease_ms` from now (`None`: the topic's
    /// default); returns the new deadline in ms.
    ///
    /// # Errors
    ///
    /// [`QueueError::StaleLease`] when the lease already expired or was settled.
    pub async fn extend(
        &self,
        topic: &str,
        receipt: Receipt,
        lease_ms: Option<u64>,
    ) -> Result<u64, ClientError> {
        let results = self.extend_batch(topic, &[receipt], lease_ms).await?;
        single(results, "extend")?.map_err(ClientError::Queue)
    }

    /// Renews many leases; one new deadline per receipt.
    ///
    /// # Errors
    ///
    /// Errors of the whole request only.
    pub async fn extend_batch(
        &self,
        topic: &str,
        receipts: &[Receipt],
        lease_ms: Option<u64>,
    ) -> Result<Vec<Result<u64, QueueError>>, ClientError> {
        let command = Command::Extend {
            topic: topic.to_owned(),
            receipts: receipts.to_vec(),
            lease_ms,
        };
        match self.submit(&command).await? {
            Reply::Extended(results) => Ok(results),
            other => Err(unexpected("extend", &other)),
        }
    }

    /// Removes every ready and delayed message; returns how many.
    ///
    /// # Errors
    ///
    /// [`QueueError::NoSuchTopic`].
    pub async fn purge(&self, topic: &str) -> Result<u64, ClientError> {
        let command = Command::Purge {
            topic: topic.to_owned(),
        };
        match self.submit(&command).await? {
            Reply::Purged { messages } => Ok(messages),
            other => Err(unexpected("purge", &other)),
        }
    }

    /// Shows up to `max_messages` messages after id `after`, without leasing them.
    ///
    /// # Errors
    ///
    /// [`QueueError::NoSuchTopic`], [`QueueError::Invalid`].
    pub async fn peek(
        &self,
        topic: &str,
        after: Option<u64>,
        max_messages: u32,
    ) -> Result<Vec<PeekedMessage>, ClientError> {
        let query = Query::Peek {
            topic: topic.to_owned(),
            after,
            max_messages,
        };
        match self.query(&query).await? {
            Reply::Peeked(messages) => Ok(messages),
            other => Err(unexpected("peek", &other)),
        }
    }

    /// Counts and counters of a topic.
    ///
    /// # Errors
    ///
    /// [`QueueError::NoSuchTopic`].
    pub async fn stats(&self, topic: &str) -> Result<TopicStats, ClientError> {
        let query = Query::Stats {
            topic: topic.to_owned(),
        };
        match self.query(&query).await? {
            Reply::Stats(stats) => Ok(stats),
            other => Err(unexpected("stats", &other)),
        }
    }

    /// Every topic with its length and settings.
    ///
    /// # Errors
    ///
    /// Transport errors only.
    pub async fn topics(&self) -> Result<Vec<TopicSummary>, ClientError> {
        match self.query(&Query::Topics).await? {
            Reply::Topics(topics) => Ok(topics),
            other => Err(unexpected("topics", &other)),
        }
    }

    /// Sets `key`; returns its new version.
    ///
    /// # Errors
    ///
    /// [`QueueError::Invalid`], [`QueueError::TooManyKeys`], [`QueueError::StoreFull`].
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<u64, ClientError> {
        let command = Command::Put {
            key: key.into(),
            value: value.into(),
        };
        match self.submit(&command).await? {
            Reply::Written { version } => Ok(version),
            other => Err(unexpected("put", &other)),
        }
    }

    /// Reads `key` (linearizable).
    ///
    /// # Errors
    ///
    /// [`QueueError::Invalid`] for a bad key.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<Versioned>, ClientError> {
        match self.query(&Query::Get { key: key.into() }).await? {
            Reply::Value(value) => Ok(value),
            other => Err(unexpected("get", &other)),
        }
    }

    /// Removes `key`; returns the version it had (0 if absent).
    ///
    /// # Errors
    ///
    /// [`QueueError::Invalid`] for a bad key.
    pub async fn delete(&self, key: impl Into<Vec<u8>>) -> Result<u64, ClientError> {
        match self.submit(&Command::Delete { key: key.into() }).await? {
            Reply::Deleted { version } => Ok(version),
            other => Err(unexpected("delete", &other)),
        }
    }

    /// Sets `key` to `value` (or deletes it, for `None`) only if its version
    /// is `expected_version` (0 = absent); returns the new version (0 after a
    /// delete).
    ///
    /// # Errors
    ///
    /// [`QueueError::VersionMismatch`] when another write came first.
    pub async fn cas(
        &self,
        key: impl Into<Vec<u8>>,
        expected_version: u64,
        value: Option<Vec<u8>>,
    ) -> Result<u64, ClientError> {
        let command = Command::Cas {
            key: key.into(),
            expected_version,
            value,
        };
        match self.submit(&command).await? {
            Reply::Written { version } => Ok(version),
            other => Err(unexpected("cas", &other)),
        }
    }

    /// Advances log time without changing anything else (expired leases
    /// return); returns the log time.
    ///
    /// # Errors
    ///
    /// Transport errors only.
    pub async fn tick(&self) -> Result<u64, ClientError> {
        match self.submit(&Command::Tick).await? {
            Reply::Ticked { now_ms } => Ok(now_ms),
            other => Err(unexpected("tick", &other)),
        }
    }

    async fn nack_one(&self, topic: &str, receipt: Receipt, nack: Nack) -> Result<(), ClientError> {
        let results = self.nack_batch(topic, &[receipt], nack).await?;
        single(results, "nack")?.map_err(ClientError::Queue)
    }

    async fn submit(&self, command: &Command) -> Result<Reply, ClientError> {
        let bytes = self.transport.submit(encode_command(command)).await?;
        Ok(decode_response(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))??)
    }

    async fn query(&self, query: &Query) -> Result<Reply, ClientError> {
        let bytes = self.transport.query(encode_query(query)).await?;
        Ok(decode_response(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))??)
    }
}

fn single<X>(results: Vec<X>, request: &str) -> Result<X, ClientError> {
    let count = results.len();
    let mut results = results.into_iter();
    match (results.next(), results.next()) {
        (Some(result), None) => Ok(result),
        _ => Err(ClientError::Protocol(format!(
            "{request} of one item returned {count} results"
        ))),
    }
}

fn unexpected(request: &str, reply: &Reply) -> ClientError {
    let name = format!("{reply:?}");
    let name = name
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_owned();
    ClientError::Protocol(format!("{request} got a {name} reply"))
}
