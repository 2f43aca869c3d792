//! One topic: its messages, their per-message state machine, and the indexes
//! that make leasing and expiry cheap.
//!
//! A message is READY, LEASED(consumer, token, deadline) or DELAYED(until).
//! Ack removes it; a nack, a release or an expired lease makes it READY (or
//! DELAYED) again; too many failed deliveries, or a reject, take it out of the
//! topic so the caller can move it to the dead-letter topic.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::limits::{
    ACK_MEMORY_ENTRIES_MAX, ACK_MEMORY_MS, BATCH_BYTES_MAX, DEDUPE_ENTRIES_MAX, DLQ_SUFFIX,
};
use crate::types::{
    AckOutcome, Counters, DeadLetter, DeadReason, DedupeKey, Delivery, Enqueued, Failure,
    MessageState, Nack, NewMessage, PeekedMessage, Receipt, TopicConfig,
};
use crate::window::Window;
use crate::QueueError;

/// A stored message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Message {
    #[serde(with = "crate::bytes")]
    pub(crate) body: Vec<u8>,
    pub(crate) enqueued_at_ms: u64,
    pub(crate) acquired: u32,
    pub(crate) failed: u32,
    pub(crate) state: State,
    pub(crate) dead_letter: Option<DeadLetter>,
}

/// Where a stored message is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum State {
    Ready,
    Leased {
        consumer: String,
        token: u64,
        leased_at_ms: u64,
        deadline_ms: u64,
    },
    Delayed {
        until_ms: u64,
    },
}

/// A message taken out of its topic to be dead-lettered.
#[derive(Debug)]
pub(crate) struct Dead {
    pub(crate) body: Vec<u8>,
    pub(crate) enqueued_at_ms: u64,
    pub(crate) dead_letter: DeadLetter,
}

/// Derived lookups, rebuilt from `messages` on restore (never serialized, so
/// a snapshot cannot carry an index that disagrees with its messages).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Index {
    ready: BTreeSet<u64>,
    /// `(deadline_ms, id)` of leased messages.
    leases: BTreeSet<(u64, u64)>,
    /// `(until_ms, id)` of delayed messages.
    delayed: BTreeSet<(u64, u64)>,
    /// Unsettled leases per consumer; consumers with none are absent.
    in_flight: BTreeMap<String, u32>,
    body_bytes: u64,
}

/// A topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Topic {
    name: String,
    pub(crate) config: TopicConfig,
    next_id: u64,
    messages: BTreeMap<u64, Message>,
    dedupe: Window<DedupeKey, u64>,
    /// Recently acked `id → token`, so a repeated ack succeeds.
    acks: Window<u64, u64>,
    pub(crate) counters: Counters,
    #[serde(skip)]
    index: Index,
}

impl Topic {
    pub(crate) fn new(name: String, config: TopicConfig) -> Self {
        Self {
            name,
            config,
            next_id: 1,
            messages: BTreeMap::new(),
            dedupe: Window::default(),
            acks: Window::default(),
            counters: Counters::default(),
            index: Index::default(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn is_dlq(&self) -> bool {
        self.name.ends_with(DLQ_SUFFIX)
    }

    /// Messages held: ready, leased and delayed.
    pub(crate) fn len(&self) -> u64 {
        self.messages.len() as u64
    }

    pub(crate) fn body_bytes(&self) -> u64 {
        self.index.body_bytes
    }

    /// The earliest lease deadline or delay end, if any.
    pub(crate) fn next_due_ms(&self) -> Option<u64> {
        let lease = self.index.leases.first().map(|(at, _)| *at);
        let delay = self.index.delayed.first().map(|(at, _)| *at);
        match (lease, delay) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How many of `messages` an enqueue at `now_ms` would add (the others
    /// are duplicates), and their body bytes.
    pub(crate) fn plan_enqueue(&self, messages: &[NewMessage], now_ms: u64) -> (u64, u64) {
        let mut seen = BTreeSet::new();
        let mut count = 0;
        let mut bytes = 0;
        for message in messages {
            if let Some(key) = &message.dedupe {
                if self.find_duplicate(key, now_ms).is_some() || !seen.insert(key) {
                    continue;
                }
            }
            count += 1;
            bytes += message.body.len() as u64;
        }
        (count, bytes)
    }

    /// # Errors
    ///
    /// [`QueueError::TopicFull`] when `adding` more messages would pass the cap.
    pub(crate) fn check_room(&self, adding: u64) -> Result<(), QueueError> {
        if adding > 0 && self.len() + adding > self.config.length_max {
            return Err(QueueError::TopicFull {
                topic: self.name.clone(),
                length: self.len(),
                adding,
                max: self.config.length_max,
            });
        }
        Ok(())
    }

    fn find_duplicate(&self, key: &DedupeKey, now_ms: u64) -> Option<u64> {
        self.dedupe
            .get(key, now_ms, self.config.dedupe_window_ms)
            .copied()
    }

    /// Adds validated messages; call [`Topic::check_room`] first.
    pub(crate) fn enqueue(&mut self, messages: Vec<NewMessage>, now_ms: u64) -> Vec<Enqueued> {
        let mut results = Vec::with_capacity(messages.len());
        for message in messages {
            if let Some(key) = &message.dedupe {
                if let Some(id) = self.find_duplicate(key, now_ms) {
                    self.counters.deduplicated += 1;
                    results.push(Enqueued {
                        id,
                        duplicate: true,
                    });
                    continue;
                }
            }
            let id = self.next_id;
            self.next_id += 1;
            if let Some(key) = message.dedupe {
                // A zero window turns deduplication off; remembering the key
                // would only cost memory.
                if self.config.dedupe_window_ms > 0 {
                    self.counters.dedupe_evicted += self.dedupe.insert(
                        key,
                        id,
                        now_ms,
                        self.config.dedupe_window_ms,
                        DEDUPE_ENTRIES_MAX,
                    );
                }
            }
            let state = if message.delay_ms == 0 {
                State::Ready
            } else {
                State::Delayed {
                    until_ms: now_ms.saturating_add(message.delay_ms),
                }
            };
            self.insert(
                id,
                Message {
                    body: message.body,
                    enqueued_at_ms: now_ms,
                    acquired: 0,
                    failed: 0,
                    state,
                    dead_letter: None,
                },
            );
            self.counters.enqueued += 1;
            results.push(Enqueued {
                id,
                duplicate: false,
            });
        }
        self.dedupe.prune(now_ms, self.config.dedupe_window_ms);
        results
    }

    /// Takes a dead message in (this is a dead-letter topic). When the topic
    /// is full, the oldest ready message is dropped to make room, or the new
    /// one when none is ready; either way `dead_dropped` counts it.
    pub(crate) fn accept_dead(&mut self, dead: Dead) {
        if self.len() >= self.config.length_max {
            self.counters.dead_dropped += 1;
            let Some(oldest) = self.index.ready.first().copied() else {
                return;
            };
            self.remove(oldest);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.insert(
            id,
            Message {
                body: dead.body,
                enqueued_at_ms: dead.enqueued_at_ms,
                acquired: 0,
                failed: 0,
                state: State::Ready,
                dead_letter: Some(dead.dead_letter),
            },
        );
        self.counters.enqueued += 1;
    }

    /// Leases up to `max_messages` ready messages to `consumer`, oldest id
    /// first; tokens are `token_base + slot`.
    ///
    /// # Errors
    ///
    /// [`QueueError::InFlightLimit`] when the consumer already holds its cap.
    pub(crate) fn lease(
        &mut self,
        consumer: &str,
        max_messages: u32,
        lease_ms: u64,
        now_ms: u64,
        token_base: u64,
    ) -> Result<Vec<Delivery>, QueueError> {
        if self.config.paused {
            return Ok(Vec::new());
        }
        let in_flight = self.index.in_flight.get(consumer).copied().unwrap_or(0);
        if in_flight >= self.config.in_flight_max {
            return Err(QueueError::InFlightLimit {
                topic: self.name.clone(),
                consumer: consumer.to_owned(),
                in_flight,
                max: self.config.in_flight_max,
            });
        }
        let count_max = max_messages.min(self.config.in_flight_max - in_flight) as usize;
        let mut chosen = Vec::new();
        let mut bytes = 0;
        for &id in &self.index.ready {
            if chosen.len() >= count_max {
                break;
            }
            let size = self.messages.get(&id).map_or(0, |m| m.body.len());
            if !chosen.is_empty() && bytes + size > BATCH_BYTES_MAX {
                break;
            }
            bytes += size;
            chosen.push(id);
        }
        let deadline_ms = now_ms.saturating_add(lease_ms);
        let mut deliveries = Vec::with_capacity(chosen.len());
        for (slot, id) in chosen.into_iter().enumerate() {
            let token = token_base.saturating_add(slot as u64);
            let state = State::Leased {
                consumer: consumer.to_owned(),
                token,
                leased_at_ms: now_ms,
                deadline_ms,
            };
            self.set_state(id, state);
            let Some(message) = self.messages.get_mut(&id) else {
                continue;
            };
            if message.acquired > 0 {
                self.counters.redelivered += 1;
            }
            message.acquired = message.acquired.saturating_add(1);
            self.counters.leased += 1;
            deliveries.push(Delivery {
                id,
                token,
                leased_at_ms: now_ms,
                deadline_ms,
                acquired: message.acquired,
                failed: message.failed,
                enqueued_at_ms: message.enqueued_at_ms,
                body: message.body.clone(),
                dead_letter: message.dead_letter.clone(),
            });
        }
        Ok(deliveries)
    }

    /// Acks one receipt.
    ///
    /// # Errors
    ///
    /// [`QueueError::StaleLease`] when the token does not hold the message,
    /// [`QueueError::NoSuchMessage`] when it is gone and no ack is remembered.
    pub(crate) fn ack(&mut self, receipt: Receipt, now_ms: u64) -> Result<AckOutcome, QueueError> {
        if !self.messages.contains_key(&receipt.id)
            && self.acks.get(&receipt.id, now_ms, ACK_MEMORY_MS) == Some(&receipt.token)
        {
            return Ok(AckOutcome::AlreadyAcked);
        }
        self.holds(receipt, now_ms)?;
        self.remove(receipt.id);
        self.acks.insert(
            receipt.id,
            receipt.token,
            now_ms,
            ACK_MEMORY_MS,
            ACK_MEMORY_ENTRIES_MAX,
        );
        self.counters.acked += 1;
        Ok(AckOutcome::Acked)
    }

    /// Gives one leased message back. Returns the message when it must move
    /// to the dead-letter topic.
    ///
    /// # Errors
    ///
    /// As [`Topic::ack`], and [`QueueError::Invalid`] for a reject in a
    /// dead-letter topic.
    pub(crate) fn nack(
        &mut self,
        receipt: Receipt,
        nack: Nack,
        now_ms: u64,
    ) -> Result<Option<Dead>, QueueError> {
        self.holds(receipt, now_ms)?;
        match nack {
            Nack::Release => {
                self.counters.released += 1;
                self.set_state(receipt.id, State::Ready);
                Ok(None)
            }
            Nack::Retry { delay_ms } => {
                self.counters.nacked += 1;
                Ok(self.fail(receipt.id, Failure::Nacked, delay_ms, now_ms))
            }
            Nack::Reject => {
                if self.is_dlq() {
                    return Err(QueueError::invalid(
                        "nack",
                        "a dead-letter topic has no dead-letter topic; ack the message to discard it",
                    ));
                }
                Ok(self.take_dead(receipt.id, DeadReason::Rejected, now_ms))
            }
        }
    }

    /// Renews one lease to end `lease_ms` after `now_ms`; returns the new deadline.
    ///
    /// # Errors
    ///
    /// As [`Topic::ack`].
    pub(crate) fn extend(
        &mut self,
        receipt: Receipt,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<u64, QueueError> {
        self.holds(receipt, now_ms)?;
        let Some(Message {
            state:
                State::Leased {
                    consumer,
                    leased_at_ms,
                    ..
                },
            ..
        }) = self.messages.get(&receipt.id)
        else {
            return Err(self.stale(receipt.id));
        };
        let deadline_ms = now_ms.saturating_add(lease_ms);
        let state = State::Leased {
            consumer: consumer.clone(),
            token: receipt.token,
            leased_at_ms: *leased_at_ms,
            deadline_ms,
        };
        self.set_state(receipt.id, state);
        Ok(deadline_ms)
    }

    /// Removes every ready and delayed message; returns how many.
    pub(crate) fn purge(&mut self) -> u64 {
        let ids: Vec<u64> = self
            .index
            .ready
            .iter()
            .copied()
            .chain(self.index.delayed.iter().map(|(_, id)| *id))
            .collect();
        for &id in &ids {
            self.remove(id);
        }
        self.counters.purged += ids.len() as u64;
        ids.len() as u64
    }

    /// Applies every lease deadline and delay end at or before `now_ms`.
    /// Returns the messages that must move to the dead-letter topic.
    pub(crate) fn expire(&mut self, now_ms: u64) -> Vec<Dead> {
        let mut dead = Vec::new();
        while let Some(&(until_ms, id)) = self.index.delayed.first() {
            if until_ms > now_ms {
                break;
            }
            self.set_state(id, State::Ready);
        }
        while let Some(&(deadline_ms, id)) = self.index.leases.first() {
            if deadline_ms > now_ms {
                break;
            }
            self.counters.expired += 1;
            dead.extend(self.fail(id, Failure::LeaseExpired, 0, now_ms));
        }
        dead
    }

    /// Shows up to `max_messages` messages after `after`, in id order.
    pub(crate) fn peek(&self, after: Option<u64>, max_messages: u32) -> Vec<PeekedMessage> {
        let start = after.map_or(0, |id| id.saturating_add(1));
        let mut shown = Vec::new();
        let mut bytes = 0;
        for (&id, message) in self.messages.range(start..) {
            if shown.len() >= max_messages as usize
                || (!shown.is_empty() && bytes + message.body.len() > BATCH_BYTES_MAX)
            {
                break;
            }
            bytes += message.body.len();
            let state = match &message.state {
                State::Ready => MessageState::Ready,
                State::Leased {
                    consumer,
                    deadline_ms,
                    ..
                } => MessageState::Leased {
                    consumer: consumer.clone(),
                    deadline_ms: *deadline_ms,
                },
                State::Delayed { until_ms } => MessageState::Delayed {
                    until_ms: *until_ms,
                },
            };
            shown.push(PeekedMessage {
                id,
                state,
                acquired: message.acquired,
                failed: message.failed,
                enqueued_at_ms: message.enqueued_at_ms,
                body: message.body.clone(),
                dead_letter: message.dead_letter.clone(),
            });
        }
        shown
    }

    /// `(ready, leased, delayed, consumers, oldest ready enqueue time)`.
    pub(crate) fn counts(&self) -> (u64, u64, u64, u64, Option<u64>) {
        let oldest = self
            .index
            .ready
            .first()
            .and_then(|id| self.messages.get(id))
            .map(|message| message.enqueued_at_ms);
        (
            self.index.ready.len() as u64,
            self.index.leases.len() as u64,
            self.index.delayed.len() as u64,
            self.index.in_flight.len() as u64,
            oldest,
        )
    }

    /// Counts a failed delivery of `id`; redelivers it after `delay_ms`, or
    /// takes it out for dead-lettering at the delivery limit.
    fn fail(&mut self, id: u64, failure: Failure, delay_ms: u64, now_ms: u64) -> Option<Dead> {
        let limit = self.config.max_deliveries;
        let is_dlq = self.is_dlq();
        let message = self.messages.get_mut(&id)?;
        message.failed = message.failed.saturating_add(1);
        if limit > 0 && message.failed >= limit && !is_dlq {
            return self.take_dead(id, DeadReason::DeliveryLimit(failure), now_ms);
        }
        let state = if delay_ms == 0 {
            State::Ready
        } else {
            State::Delayed {
                until_ms: now_ms.saturating_add(delay_ms),
            }
        };
        self.set_state(id, state);
        None
    }

    fn take_dead(&mut self, id: u64, reason: DeadReason, now_ms: u64) -> Option<Dead> {
        let message = self.remove(id)?;
        self.counters.dead_lettered += 1;
        Some(Dead {
            body: message.body,
            enqueued_at_ms: message.enqueued_at_ms,
            dead_letter: DeadLetter {
                topic: self.name.clone(),
                id,
                reason,
                acquired: message.acquired,
                failed: message.failed,
                dead_at_ms: now_ms,
            },
        })
    }

    /// `Ok` when `receipt` is the current lease of its message.
    fn holds(&self, receipt: Receipt, now_ms: u64) -> Result<(), QueueError> {
        match self.messages.get(&receipt.id) {
            Some(Message {
                state: State::Leased { token, .. },
                ..
            }) if *token == receipt.token => Ok(()),
            Some(_) => Err(self.stale(receipt.id)),
            None if self.acks.get(&receipt.id, now_ms, ACK_MEMORY_MS).is_some() => {
                Err(self.stale(receipt.id))
            }
            None => Err(QueueError::NoSuchMessage {
                topic: self.name.clone(),
                id: receipt.id,
            }),
        }
    }

    fn stale(&self, id: u64) -> QueueError {
        QueueError::StaleLease {
            topic: self.name.clone(),
            id,
        }
    }

    // The only three functions that touch `messages` and the index together,
    // so the index cannot drift from the messages.

    fn insert(&mut self, id: u64, message: Message) {
        assert!(!self.messages.contains_key(&id), "message id {id} reused");
        self.index.body_bytes += message.body.len() as u64;
        self.index_add(id, &message.state);
        self.messages.insert(id, message);
    }

    fn remove(&mut self, id: u64) -> Option<Message> {
        let message = self.messages.remove(&id)?;
        self.index.body_bytes -= message.body.len() as u64;
        self.index_remove(id, &message.state);
        Some(message)
    }

    fn set_state(&mut self, id: u64, state: State) {
        let Some(message) = self.messages.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut message.state, state.clone());
        self.index_remove(id, &old);
        self.index_add(id, &state);
    }

    fn index_add(&mut self, id: u64, state: &State) {
        let added = match state {
            State::Ready => self.index.ready.insert(id),
            State::Delayed { until_ms } => self.index.delayed.insert((*until_ms, id)),
            State::Leased {
                consumer,
                deadline_ms,
                ..
            } => {
                *self.index.in_flight.entry(consumer.clone()).or_default() += 1;
                self.index.leases.insert((*deadline_ms, id))
            }
        };
        assert!(added, "message {id} indexed twice");
    }

    fn index_remove(&mut self, id: u64, state: &State) {
        let removed = match state {
            State::Ready => self.index.ready.remove(&id),
            State::Delayed { until_ms } => self.index.delayed.remove(&(*until_ms, id)),
            State::Leased {
                consumer,
                deadline_ms,
                ..
            } => {
                if let Some(count) = self.index.in_flight.get_mut(consumer) {
                    *count -= 1;
                    if *count == 0 {
                        self.index.in_flight.remove(consumer);
                    }
                }
                self.index.leases.remove(&(*deadline_ms, id))
            }
        };
        assert!(removed, "message {id} missing from the index");
    }

    /// Rebuilds the index after a restore and checks what a snapshot could
    /// get wrong.
    ///
    /// # Errors
    ///
    /// A readable message naming the first inconsistency.
    pub(crate) fn rebuild(&mut self, name: &str) -> Result<(), String> {
        if self.name != name {
            return Err(format!("topic {name:?} stored under name {:?}", self.name));
        }
        if !self.dedupe.is_consistent() || !self.acks.is_consistent() {
            return Err(format!("topic {name:?}: dedupe or ack memory is corrupt"));
        }
        if let Some((&last, _)) = self.messages.last_key_value() {
            if last >= self.next_id {
                return Err(format!("topic {name:?}: message id {last} >= next id"));
            }
        }
        self.index = Index::default();
        let states: Vec<(u64, State, usize)> = self
            .messages
            .iter()
            .map(|(id, m)| (*id, m.state.clone(), m.body.len()))
            .collect();
        for (id, state, size) in states {
            // Each id is distinct and each state is indexed once, so the
            // asserts in `index_add` cannot fire here.
            self.index.body_bytes += size as u64;
            self.index_add(id, &state);
        }
        Ok(())
    }
}
