//! [`QueueMachine`]: the topics and the KV map behind raft-core's
//! [`StateMachine`] trait.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use raft_core::{ApplyContext, SnapshotSource, StateMachine};
use serde::{Deserialize, Serialize};

use crate::command::{
    decode_command, decode_query, encode_response, Command, Query, Reply, Response,
};
use crate::crawl::Crawl;
use crate::kv::{self, display_key, Kv};
use crate::kv_key;
use crate::limits::{
    BATCH_BYTES_MAX, BATCH_MESSAGES_MAX, CLIENT_ID_BYTES_MAX, DEDUPE_WINDOW_MS_MAX, DELAY_MS_MAX,
    DLQ_SUFFIX, IN_FLIGHT_MAX_LIMIT, LEASE_MS_MAX, LEASE_MS_MIN, LEASE_TOKENS_PER_INDEX,
    MAX_DELIVERIES_LIMIT, MESSAGE_BYTES_MAX, SNAPSHOT_FORMAT_VERSION, STORED_BYTES_MAX, TOPICS_MAX,
    TOPIC_LENGTH_MAX_LIMIT, TOPIC_NAME_BYTES_MAX, USER_TOPIC_NAME_BYTES_MAX,
};
use crate::topic::{Dead, Topic};
use crate::types::{Nack, NewMessage, Receipt, TopicConfig, TopicStats, TopicSummary};
use crate::QueueError;

#[path = "machine_crawl.rs"]
mod crawl_commands;

/// The replicated queue and KV state machine.
///
/// Feed it committed commands through [`StateMachine::apply`] and
/// linearizable reads through [`StateMachine::query`]; encode them with
/// [`encode_command`](crate::encode_command) and
/// [`encode_query`](crate::encode_query), or use a [`Client`](crate::Client).
///
/// Time is `ApplyContext::time_ms` and nothing else. Every apply first
/// returns expired leases and ends finished delays up to that time, so a
/// lease with deadline `d` is valid for commands stamped before `d` and
/// expired for commands stamped at or after `d`, on every replica alike.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueMachine {
    state: Persisted,
    /// The earliest lease deadline or delay end in any topic, or earlier
    /// (a cache: an early value only costs a scan).
    next_due_ms: Option<u64>,
}

/// Everything a snapshot holds (format [`SNAPSHOT_FORMAT_VERSION`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Persisted {
    /// The log time of the last applied command.
    now_ms: u64,
    /// The last lease token issued (topic and crawl leases share the counter).
    last_token: u64,
    topics: BTreeMap<String, Topic>,
    kv: Kv,
    crawls: BTreeMap<String, Crawl>,
}

/// A format 1 snapshot: before crawls. Postcard is not self-describing, so
/// the old layout is read with its own type.
#[derive(Deserialize)]
struct PersistedV1 {
    now_ms: u64,
    last_token: u64,
    topics: BTreeMap<String, Topic>,
    kv: Kv,
}

impl QueueMachine {
    /// An empty state machine.
    pub fn new() -> Self {
        Self::default()
    }

    /// The log time of the last applied command, in ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.state.now_ms
    }

    /// Applies a decoded command at `ctx`, the typed form of
    /// [`StateMachine::apply`].
    pub fn apply_command(&mut self, ctx: &ApplyContext, command: Command) -> Response {
        self.advance(ctx.time_ms);
        self.execute(ctx.index, command)
    }

    /// Answers a decoded query, the typed form of [`StateMachine::query`].
    pub fn run_query(&self, query: &Query) -> Response {
        match query {
            Query::Get { key } => {
                kv::check_key(key)?;
                Ok(Reply::Value(self.state.kv.get(key).cloned()))
            }
            Query::Peek {
                topic,
                after,
                max_messages,
            } => {
                check_count("max_messages", *max_messages as usize)?;
                let topic = self.topic(topic)?;
                Ok(Reply::Peeked(topic.peek(*after, *max_messages)))
            }
            Query::Stats { topic } => Ok(Reply::Stats(self.stats(topic)?)),
            Query::CrawlStatus { .. } | Query::DeadUrls { .. } | Query::CrawlWorkers { .. } => {
                self.crawl_query(query)
            }
            Query::Topics => Ok(Reply::Topics(
                self.state
                    .topics
                    .values()
                    .map(|topic| TopicSummary {
                        name: topic.name().to_owned(),
                        length: topic.len(),
                        config: topic.config.clone(),
                    })
                    .collect(),
            )),
        }
    }

    /// Moves log time to `time_ms` (never back) and applies every lease
    /// expiry and delay end due by then.
    fn advance(&mut self, time_ms: u64) {
        let now_ms = self.state.now_ms.max(time_ms);
        self.state.now_ms = now_ms;
        if self.next_due_ms.is_none_or(|due| due > now_ms) {
            return;
        }
        let mut dead: Vec<(String, Dead)> = Vec::new();
        for topic in self.state.topics.values_mut() {
            if topic.next_due_ms().is_some_and(|due| due <= now_ms) {
                let name = dlq_name(topic.name());
                dead.extend(topic.expire(now_ms).into_iter().map(|d| (name.clone(), d)));
            }
        }
        for (dlq, message) in dead {
            self.dead_letter(&dlq, message);
        }
        for crawl in self.state.crawls.values_mut() {
            if crawl.next_due_ms().is_some_and(|due| due <= now_ms) {
                crawl.expire(now_ms);
            }
        }
        self.next_due_ms = self.state.earliest_due_ms();
        debug_assert!(self.next_due_ms.is_none_or(|due| due > now_ms));
    }

    fn execute(&mut self, index: u64, command: Command) -> Response {
        let now_ms = self.state.now_ms;
        match command {
            Command::CreateTopic { topic, config } => self.create_topic(topic, config),
            Command::ConfigureTopic { topic, config } => {
                check_config(&topic, &config)?;
                let entry = self.topic_mut(&topic)?;
                entry.config = config;
                Ok(Reply::TopicConfigured)
            }
            Command::DeleteTopic { topic } => {
                check_user_topic_name(&topic)?;
                let removed = self.topic(&topic)?.len();
                let dlq = self.state.topics.remove(&dlq_name(&topic));
                self.state.topics.remove(&topic);
                Ok(Reply::TopicDeleted {
                    messages: removed + dlq.map_or(0, |t| t.len()),
                })
            }
            Command::Enqueue { topic, messages } => self.enqueue(topic, messages),
            Command::Lease {
                topic,
                consumer,
                max_messages,
                lease_ms,
            } => {
                check_client_id("consumer", &consumer)?;
                check_count("max_messages", max_messages as usize)?;
                let token_base = self.next_token_base(index);
                let entry = self.topic_mut(&topic)?;
                let lease_ms = check_lease_ms(lease_ms.unwrap_or(entry.config.default_lease_ms))?;
                let deliveries =
                    entry.lease(&consumer, max_messages, lease_ms, now_ms, token_base)?;
                if let Some(last) = deliveries.last() {
                    self.state.last_token = last.token;
                }
                self.note_due(&topic);
                Ok(Reply::Leased(deliveries))
            }
            Command::Ack { topic, receipts } => {
                check_count_or_zero("receipts", receipts.len())?;
                let entry = self.topic_mut(&topic)?;
                let results = receipts.into_iter().map(|r| entry.ack(r, now_ms)).collect();
                Ok(Reply::Acked(results))
            }
            Command::Nack {
                topic,
                receipts,
                nack,
            } => self.nack(&topic, &receipts, nack),
            Command::Extend {
                topic,
                receipts,
                lease_ms,
            } => {
                check_count_or_zero("receipts", receipts.len())?;
                let entry = self.topic_mut(&topic)?;
                let lease_ms = check_lease_ms(lease_ms.unwrap_or(entry.config.default_lease_ms))?;
                let results = receipts
                    .into_iter()
                    .map(|r| entry.extend(r, lease_ms, now_ms))
                    .collect();
                self.note_due(&topic);
                Ok(Reply::Extended(results))
            }
            Command::Purge { topic } => Ok(Reply::Purged {
                messages: self.topic_mut(&topic)?.purge(),
            }),
            Command::Put { key, value } => {
                self.check_kv_write(&key, &value)?;
                Ok(Reply::Written {
                    version: self.state.kv.put(key, value),
                })
            }
            Command::Delete { key } => {
                kv::check_key(&key)?;
                Ok(Reply::Deleted {
                    version: self.state.kv.delete(&key),
                })
            }
            Command::Cas {
                key,
                expected_version,
                value,
            } => {
                kv::check_key(&key)?;
                let current = self.state.kv.version(&key);
                if current != expected_version {
                    return Err(QueueError::VersionMismatch {
                        key: display_key(&key),
                        expected: expected_version,
                        current,
                    });
                }
                match value {
                    Some(value) => {
                        self.check_kv_write(&key, &value)?;
                        Ok(Reply::Written {
                            version: self.state.kv.put(key, value),
                        })
                    }
                    None => {
                        self.state.kv.delete(&key);
                        Ok(Reply::Written { version: 0 })
                    }
                }
            }
            Command::Tick => Ok(Reply::Ticked { now_ms }),
            command @ (Command::CreateCrawl { .. }
            | Command::ConfigureCrawl { .. }
            | Command::ControlCrawl { .. }
            | Command::DeleteCrawl { .. }
            | Command::Offer { .. }
            | Command::LeaseUrls { .. }
            | Command::CompleteUrls { .. }
            | Command::ExtendUrls { .. }
            | Command::SetOriginDelay { .. }) => self.crawl_command(index, command),
        }
    }

    fn create_topic(&mut self, topic: String, config: TopicConfig) -> Response {
        check_user_topic_name(&topic)?;
        check_config(&topic, &config)?;
        if let Some(existing) = self.state.topics.get(&topic) {
            if existing.config == config {
                return Ok(Reply::TopicCreated { created: false });
            }
            return Err(QueueError::TopicExists { topic });
        }
        self.insert_topic(topic, config)?;
        Ok(Reply::TopicCreated { created: true })
    }

    /// Adds a topic and its dead-letter topic.
    fn insert_topic(&mut self, topic: String, config: TopicConfig) -> Result<(), QueueError> {
        if self.state.topics.len() + 2 > TOPICS_MAX {
            return Err(QueueError::TooManyTopics { max: TOPICS_MAX });
        }
        let dlq = dlq_name(&topic);
        let dlq_config = TopicConfig {
            max_deliveries: 0,
            paused: false,
            ..config.clone()
        };
        self.state
            .topics
            .insert(dlq.clone(), Topic::new(dlq, dlq_config));
        self.state
            .topics
            .insert(topic.clone(), Topic::new(topic, config));
        Ok(())
    }

    fn enqueue(&mut self, topic: String, messages: Vec<NewMessage>) -> Response {
        check_topic_name(&topic)?;
        check_count("messages", messages.len())?;
        let mut batch_bytes = 0;
        for message in &messages {
            if message.body.len() > MESSAGE_BYTES_MAX {
                return Err(QueueError::invalid(
                    "body",
                    format!(
                        "{} bytes; a message holds at most {MESSAGE_BYTES_MAX}",
                        message.body.len()
                    ),
                ));
            }
            batch_bytes += message.body.len();
            check_delay_ms(message.delay_ms)?;
            if let Some(key) = &message.dedupe {
                check_client_id("producer", &key.producer)?;
            }
        }
        if batch_bytes > BATCH_BYTES_MAX {
            return Err(QueueError::invalid(
                "messages",
                format!("{batch_bytes} body bytes; a batch holds at most {BATCH_BYTES_MAX}"),
            ));
        }
        if !self.state.topics.contains_key(&topic) {
            if topic.ends_with(DLQ_SUFFIX) {
                return Err(QueueError::NoSuchTopic { topic });
            }
            check_user_topic_name(&topic)?;
            // A topic is only created if the enqueue can succeed, so a refused
            // enqueue leaves no empty topic behind.
            let (_, adding) = Topic::new(topic.clone(), TopicConfig::default())
                .plan_enqueue(&messages, self.state.now_ms);
            self.check_store(adding)?;
            Topic::new(topic.clone(), TopicConfig::default()).check_room(messages.len() as u64)?;
            self.insert_topic(topic.clone(), TopicConfig::default())?;
        }
        let now_ms = self.state.now_ms;
        let entry = self.topic(&topic)?;
        let (count, bytes) = entry.plan_enqueue(&messages, now_ms);
        entry.check_room(count)?;
        self.check_store(bytes)?;
        let entry = self.topic_mut(&topic)?;
        let results = entry.enqueue(messages, now_ms);
        self.note_due(&topic);
        Ok(Reply::Enqueued(results))
    }

    fn nack(&mut self, topic: &str, receipts: &[Receipt], nack: Nack) -> Response {
        check_count_or_zero("receipts", receipts.len())?;
        if let Nack::Retry { delay_ms } = nack {
            check_delay_ms(delay_ms)?;
        }
        let now_ms = self.state.now_ms;
        let entry = self.topic_mut(topic)?;
        let mut dead = Vec::new();
        let results = receipts
            .iter()
            .map(|&receipt| {
                let message = entry.nack(receipt, nack, now_ms)?;
                dead.extend(message);
                Ok(())
            })
            .collect();
        let dlq = dlq_name(topic);
        for message in dead {
            self.dead_letter(&dlq, message);
        }
        self.note_due(topic);
        Ok(Reply::Nacked(results))
    }

    /// Moves a dead message into `dlq`. The dead-letter topic exists as long
    /// as its topic does, and messages die only in a topic that exists.
    fn dead_letter(&mut self, dlq: &str, message: Dead) {
        match self.state.topics.get_mut(dlq) {
            Some(topic) => topic.accept_dead(message),
            None => debug_assert!(false, "dead-letter topic {dlq} missing"),
        }
    }

    fn stats(&self, name: &str) -> Result<TopicStats, QueueError> {
        let topic = self.topic(name)?;
        let (ready, leased, delayed, consumers, oldest) = topic.counts();
        let dead = if topic.is_dlq() {
            0
        } else {
            self.state
                .topics
                .get(&dlq_name(name))
                .map_or(0, |dlq| dlq.len())
        };
        Ok(TopicStats {
            topic: name.to_owned(),
            now_ms: self.state.now_ms,
            ready,
            leased,
            delayed,
            dead,
            oldest_ready_age_ms: oldest.map(|at| self.state.now_ms.saturating_sub(at)),
            consumers,
            counters: topic.counters.clone(),
            config: topic.config.clone(),
        })
    }

    fn topic(&self, name: &str) -> Result<&Topic, QueueError> {
        check_topic_name(name)?;
        self.state
            .topics
            .get(name)
            .ok_or_else(|| QueueError::NoSuchTopic {
                topic: name.to_owned(),
            })
    }

    fn topic_mut(&mut self, name: &str) -> Result<&mut Topic, QueueError> {
        check_topic_name(name)?;
        self.state
            .topics
            .get_mut(name)
            .ok_or_else(|| QueueError::NoSuchTopic {
                topic: name.to_owned(),
            })
    }

    /// Records that `topic` may have a new earliest timer.
    fn note_due(&mut self, topic: &str) {
        let due = self.state.topics.get(topic).and_then(Topic::next_due_ms);
        self.next_due_ms = match (self.next_due_ms, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// Lease tokens are derived from the log index, so every replica issues
    /// the same tokens and no two leases share one. The max with the last
    /// token keeps them unique even if a caller repeats an index.
    fn next_token_base(&self, index: u64) -> u64 {
        index
            .saturating_mul(LEASE_TOKENS_PER_INDEX)
            .max(self.state.last_token.saturating_add(1))
    }

    fn stored_bytes(&self) -> u64 {
        self.state.kv.stored_bytes()
            + self
                .state
                .crawls
                .values()
                .map(Crawl::url_bytes)
                .sum::<u64>()
            + self
                .state
                .topics
                .values()
                .map(Topic::body_bytes)
                .sum::<u64>()
    }

    /// About the size of [`StateMachine::snapshot`]'s output, a little
    /// over for small states: stored bytes plus a per-record allowance for
    /// lengths, versions and counters.
    fn snapshot_bytes_estimate(&self) -> usize {
        /// Encoded bytes per KV entry or message beyond its stored bytes.
        const RECORD_OVERHEAD_BYTES: u64 = 24;
        let records = self.state.kv.len()
            + self.state.topics.values().map(Topic::len).sum::<u64>()
            + self.state.crawls.values().map(Crawl::len).sum::<u64>();
        let bytes = self
            .stored_bytes()
            .saturating_add(records.saturating_mul(RECORD_OVERHEAD_BYTES))
            .saturating_add(1024);
        usize::try_from(bytes).unwrap_or(usize::MAX)
    }

    fn check_store(&self, adding: u64) -> Result<(), QueueError> {
        let bytes = self.stored_bytes();
        if adding > 0 && bytes + adding > STORED_BYTES_MAX {
            return Err(QueueError::StoreFull {
                bytes,
                adding,
                max: STORED_BYTES_MAX,
            });
        }
        Ok(())
    }

    fn check_kv_write(&self, key: &[u8], value: &[u8]) -> Result<(), QueueError> {
        self.state.kv.check_put(key, value)?;
        self.check_store(self.state.kv.growth(key, value))
    }

    fn restore_from(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let Some((&version, body)) = snapshot.split_first() else {
            return Err("empty queue snapshot".to_owned());
        };
        let mut state = match version {
            1 => {
                let old: PersistedV1 = decode_snapshot(body)?;
                Persisted {
                    now_ms: old.now_ms,
                    last_token: old.last_token,
                    topics: old.topics,
                    kv: old.kv,
                    crawls: BTreeMap::new(),
                }
            }
            2 => decode_snapshot(body)?,
            SNAPSHOT_FORMAT_VERSION => {
                let (mut state, rest): (Persisted, &[u8]) = postcard::take_from_bytes(body)
                    .map_err(|error| format!("queue snapshot is corrupt: {error}"))?;
                let workers: BTreeMap<String, crate::crawl::workers::Workers> =
                    decode_snapshot(rest)?;
                for (name, workers) in workers {
                    workers.check()?;
                    let Some(crawl) = state.crawls.get_mut(&name) else {
                        return Err(format!("queue snapshot counts workers of no crawl {name:?}"));
                    };
                    crawl.workers = workers;
                }
                state
            }
            _ => {
                return Err(format!(
                    "queue snapshot format {version}, this replica reads 1 to {SNAPSHOT_FORMAT_VERSION}; upgrade it"
                ))
            }
        };
        if state.topics.len() > TOPICS_MAX {
            return Err(format!("queue snapshot has {} topics", state.topics.len()));
        }
        for (name, topic) in &mut state.topics {
            topic.rebuild(name)?;
        }
        state.kv.recount();
        if !state.kv.is_consistent() {
            return Err("queue snapshot has a corrupt KV map".to_owned());
        }
        crate::machine::crawl_commands::check_crawls(&mut state.crawls)?;
        let next_due_ms = state.earliest_due_ms();
        *self = Self { state, next_due_ms };
        Ok(())
    }
}

impl StateMachine for QueueMachine {
    fn apply(&mut self, ctx: &ApplyContext, command: &[u8]) -> Vec<u8> {
        // Time advances even for a malformed command: every replica sees the
        // same bytes at the same index, so they all expire the same leases.
        self.advance(ctx.time_ms);
        let response = match decode_command(command) {
            Ok(command) => self.execute(ctx.index, command),
            Err(error) => Err(error),
        };
        encode_response(&response)
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        let response = match decode_query(query) {
            Ok(query) => self.run_query(&query),
            Err(error) => Err(error),
        };
        encode_response(&response)
    }

    fn snapshot(&self) -> Vec<u8> {
        // Sized up front: growing a buffer of tens of MB by doubling copied
        // it again at every step (docs/raft-core.md, "Snapshots").
        let mut bytes = Vec::with_capacity(self.snapshot_bytes_estimate());
        bytes.push(SNAPSHOT_FORMAT_VERSION);
        let bytes = encode_into(bytes, &self.state);
        encode_into(bytes, &self.state.crawl_workers())
    }

    /// Serializes everything but the KV map now (topics and crawls are
    /// bounded by their limits), and freezes the KV map (O(1),
    /// copy-on-write): its entries are serialized a chunk per call.
    fn begin_snapshot(&mut self) -> Box<dyn SnapshotSource> {
        let state = &self.state;
        let entries = self.state.kv.len();
        // Persisted's fields in order, split around the KV map's entries:
        // postcard writes a struct as its fields in order and a map as a
        // varint length and its pairs.
        let head = (state.now_ms, state.last_token, &state.topics, entries);
        let prefix = encode_into(vec![SNAPSHOT_FORMAT_VERSION], &head);
        let suffix = encode_into(Vec::new(), &(state.kv.revision(), &state.crawls));
        let suffix = encode_into(suffix, &state.crawl_workers());
        let frozen = self.state.kv.freeze();
        Box::new(QueueSnapshot {
            prefix: Some(prefix),
            frozen,
            after: None,
            entries_left: entries,
            suffix: Some(suffix),
        })
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.restore_from(snapshot)
    }

    /// Restores into a scratch machine: every check `restore` makes, on a
    /// copy (snapshots from peers are rare; memory is held only meanwhile).
    fn validate_snapshot(&self, snapshot: &[u8]) -> Result<(), String> {
        Self::new().restore_from(snapshot)
    }
}

/// A snapshot of a [`QueueMachine`] in progress: see
/// [`StateMachine::begin_snapshot`].
struct QueueSnapshot {
    /// Format, log time, token counter, topics and the KV length; taken
    /// by the first chunk.
    prefix: Option<Vec<u8>>,
    /// The KV entries at the capture, shared copy-on-write.
    frozen: Arc<kv::Entries>,
    /// The last key serialized.
    after: Option<kv_key::Key>,
    entries_left: u64,
    /// The KV revision, the crawls and their per-worker counts; taken by
    /// the last chunk.
    suffix: Option<Vec<u8>>,
}

impl SnapshotSource for QueueSnapshot {
    fn next_chunk(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> bool {
        let start_len = out.len();
        if let Some(prefix) = self.prefix.take() {
            out.extend_from_slice(&prefix);
        }
        let range = match &self.after {
            Some(key) => self
                .frozen
                .range::<kv_key::Key, _>((Bound::Excluded(key), Bound::Unbounded)),
            None => self.frozen.range::<kv_key::Key, _>(..),
        };
        let mut last = None;
        for (key, value) in range {
            if out.len() - start_len >= max_bytes {
                break;
            }
            let taken = std::mem::take(out);
            *out = encode_into(taken, &(key, value));
            self.entries_left = self.entries_left.saturating_sub(1);
            last = Some(key);
        }
        if let Some(key) = last {
            self.after = Some(key.clone());
        }
        if self.entries_left > 0 {
            return false;
        }
        if let Some(suffix) = self.suffix.take() {
            out.extend_from_slice(&suffix);
        }
        true
    }
}

/// Appends `value`'s postcard encoding to `out`.
fn encode_into<T: Serialize + ?Sized>(out: Vec<u8>, value: &T) -> Vec<u8> {
    match postcard::to_extend(value, out) {
        Ok(bytes) => bytes,
        Err(error) => unreachable!("postcard encoding of queue state failed: {error}"),
    }
}

impl Persisted {
    /// Each crawl's per-worker counts, which format 3 appends after the
    /// format 2 body (see `Crawl::workers`).
    fn crawl_workers(&self) -> BTreeMap<&str, &crate::crawl::workers::Workers> {
        self.crawls
            .iter()
            .map(|(name, crawl)| (name.as_str(), &crawl.workers))
            .collect()
    }

    /// The earliest lease deadline or delay end in any topic or crawl.
    fn earliest_due_ms(&self) -> Option<u64> {
        let topics = self.topics.values().filter_map(Topic::next_due_ms);
        let crawls = self.crawls.values().filter_map(Crawl::next_due_ms);
        topics.chain(crawls).min()
    }
}

fn decode_snapshot<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    match postcard::take_from_bytes(body) {
        Ok((state, [])) => Ok(state),
        Ok((_, rest)) => Err(format!("queue snapshot has {} trailing bytes", rest.len())),
        Err(error) => Err(format!("queue snapshot is corrupt: {error}")),
    }
}

/// The dead-letter topic of `topic`.
pub fn dlq_name(topic: &str) -> String {
    format!("{topic}{DLQ_SUFFIX}")
}

/// Any topic name, as looked up: bounded length and a safe alphabet.
fn check_topic_name(name: &str) -> Result<(), QueueError> {
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(QueueError::invalid(
            "topic",
            format!(
                "name is {} bytes; must be 1 to {TOPIC_NAME_BYTES_MAX}",
                name.len()
            ),
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !name.chars().all(allowed) || name.starts_with('.') {
        return Err(QueueError::invalid(
            "topic",
            format!("{name:?}: use ASCII letters, digits, '.', '_' and '-', not starting with '.'"),
        ));
    }
    Ok(())
}

/// A name a client may create: also short enough for its `.dlq`, and not a
/// `.dlq` itself.
fn check_user_topic_name(name: &str) -> Result<(), QueueError> {
    check_topic_name(name)?;
    if name.len() > USER_TOPIC_NAME_BYTES_MAX {
        return Err(QueueError::invalid(
            "topic",
            format!(
                "name is {} bytes; a topic name is at most {USER_TOPIC_NAME_BYTES_MAX} so that its {DLQ_SUFFIX} fits",
                name.len()
            ),
        ));
    }
    if name.ends_with(DLQ_SUFFIX) {
        return Err(QueueError::invalid(
            "topic",
            format!("{name:?}: names ending in {DLQ_SUFFIX} are dead-letter topics, created with their topic"),
        ));
    }
    Ok(())
}

fn check_config(topic: &str, config: &TopicConfig) -> Result<(), QueueError> {
    if config.max_deliveries > MAX_DELIVERIES_LIMIT {
        return Err(QueueError::invalid(
            "max_deliveries",
            format!(
                "{}; at most {MAX_DELIVERIES_LIMIT} (0 = unlimited)",
                config.max_deliveries
            ),
        ));
    }
    if topic.ends_with(DLQ_SUFFIX) && config.max_deliveries != 0 {
        return Err(QueueError::invalid(
            "max_deliveries",
            "a dead-letter topic has no dead-letter topic; use 0 (unlimited)",
        ));
    }
    if config.length_max == 0 || config.length_max > TOPIC_LENGTH_MAX_LIMIT {
        return Err(QueueError::invalid(
            "length_max",
            format!(
                "{}; must be 1 to {TOPIC_LENGTH_MAX_LIMIT}",
                config.length_max
            ),
        ));
    }
    check_lease_ms(config.default_lease_ms)?;
    if config.in_flight_max == 0 || config.in_flight_max > IN_FLIGHT_MAX_LIMIT {
        return Err(QueueError::invalid(
            "in_flight_max",
            format!(
                "{}; must be 1 to {IN_FLIGHT_MAX_LIMIT}",
                config.in_flight_max
            ),
        ));
    }
    if config.dedupe_window_ms > DEDUPE_WINDOW_MS_MAX {
        return Err(QueueError::invalid(
            "dedupe_window_ms",
            format!(
                "{}; at most {DEDUPE_WINDOW_MS_MAX}",
                config.dedupe_window_ms
            ),
        ));
    }
    Ok(())
}

fn check_lease_ms(lease_ms: u64) -> Result<u64, QueueError> {
    if !(LEASE_MS_MIN..=LEASE_MS_MAX).contains(&lease_ms) {
        return Err(QueueError::invalid(
            "lease_ms",
            format!("{lease_ms}; must be {LEASE_MS_MIN} to {LEASE_MS_MAX}"),
        ));
    }
    Ok(lease_ms)
}

fn check_delay_ms(delay_ms: u64) -> Result<(), QueueError> {
    if delay_ms > DELAY_MS_MAX {
        return Err(QueueError::invalid(
            "delay_ms",
            format!("{delay_ms}; at most {DELAY_MS_MAX}"),
        ));
    }
    Ok(())
}

fn check_client_id(field: &str, id: &str) -> Result<(), QueueError> {
    if id.is_empty() || id.len() > CLIENT_ID_BYTES_MAX {
        return Err(QueueError::invalid(
            field,
            format!("{} bytes; must be 1 to {CLIENT_ID_BYTES_MAX}", id.len()),
        ));
    }
    Ok(())
}

fn check_count(field: &str, count: usize) -> Result<(), QueueError> {
    if count == 0 || count > BATCH_MESSAGES_MAX {
        return Err(QueueError::invalid(
            field,
            format!("{count}; must be 1 to {BATCH_MESSAGES_MAX}"),
        ));
    }
    Ok(())
}

fn check_count_or_zero(field: &str, count: usize) -> Result<(), QueueError> {
    if count > BATCH_MESSAGES_MAX {
        return Err(QueueError::invalid(
            field,
            format!("{count}; at most {BATCH_MESSAGES_MAX}"),
        ));
    }
    Ok(())
}
