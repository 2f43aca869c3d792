//! Property test: the state machine against a simple reference model, over
//! random operation sequences with time jumps and snapshot/restore.
//!
//! The model keeps every message in a flat list and answers each operation
//! by scanning it, so it is easy to check by eye; the state machine must
//! give exactly the same replies and stats.

use std::collections::BTreeMap;

use proptest::prelude::*;
use queue::limits::{ACK_MEMORY_MS, LEASE_TOKENS_PER_INDEX};
use queue::{
    decode_response, encode_command, encode_query, AckOutcome, Command, Counters, DeadLetter,
    DeadReason, DedupeKey, Delivery, Enqueued, Failure, Nack, NewMessage, Query, QueueError,
    QueueMachine, Receipt, Reply, Response, TopicConfig, TopicStats,
};
use raft_core::{ApplyContext, StateMachine};

const TOPICS: [&str; 3] = ["a", "b", "a.dlq"];

fn config_a() -> TopicConfig {
    TopicConfig {
        max_deliveries: 3,
        length_max: 8,
        default_lease_ms: 100,
        in_flight_max: 4,
        dedupe_window_ms: 1000,
        paused: false,
    }
}

/// A message to enqueue: body byte, optional (producer, sequence), delay.
type MessageSpec = (u8, Option<(u8, u8)>, u64);

#[derive(Clone, Debug)]
enum Op {
    Enqueue {
        topic: usize,
        messages: Vec<MessageSpec>,
    },
    Lease {
        topic: usize,
        consumer: u8,
        max: u32,
        lease_ms: Option<u64>,
    },
    Ack {
        topic: usize,
        pick: usize,
    },
    Nack {
        topic: usize,
        pick: usize,
        nack: Nack,
    },
    Extend {
        topic: usize,
        pick: usize,
        lease_ms: u64,
    },
    Purge {
        topic: usize,
    },
    Advance {
        ms: u64,
    },
    Put {
        key: u8,
        value: u8,
    },
    Delete {
        key: u8,
    },
    Cas {
        key: u8,
        expected: u64,
        value: Option<u8>,
    },
    Restore,
}

fn op() -> impl Strategy<Value = Op> {
    let topic = 0..3usize;
    let message = (
        any::<u8>(),
        proptest::option::weighted(0.4, (0..2u8, 0..4u8)),
        prop_oneof![4 => Just(0u64), 1 => Just(50), 1 => Just(500)],
    );
    let nack = prop_oneof![
        Just(Nack::Retry { delay_ms: 0 }),
        Just(Nack::Retry { delay_ms: 100 }),
        Just(Nack::Release),
        Just(Nack::Reject),
    ];
    prop_oneof![
        4 => (0..2usize, proptest::collection::vec(message, 1..4)).prop_map(|(topic, messages)| Op::Enqueue { topic, messages }),
        4 => (topic.clone(), 0..3u8, 1..5u32, prop_oneof![Just(None), Just(Some(100)), Just(Some(1000))])
            .prop_map(|(topic, consumer, max, lease_ms)| Op::Lease { topic, consumer, max, lease_ms }),
        3 => (topic.clone(), any::<usize>()).prop_map(|(topic, pick)| Op::Ack { topic, pick }),
        2 => (topic.clone(), any::<usize>(), nack).prop_map(|(topic, pick, nack)| Op::Nack { topic, pick, nack }),
        1 => (topic.clone(), any::<usize>(), prop_oneof![Just(10u64), Just(1000)]).prop_map(|(topic, pick, lease_ms)| Op::Extend { topic, pick, lease_ms }),
        1 => topic.prop_map(|topic| Op::Purge { topic }),
        3 => prop_oneof![Just(1u64), Just(49), Just(50), Just(100), Just(1000), Just(60_000)].prop_map(|ms| Op::Advance { ms }),
        1 => (0..3u8, any::<u8>()).prop_map(|(key, value)| Op::Put { key, value }),
        1 => (0..3u8).prop_map(|key| Op::Delete { key }),
        1 => (0..3u8, 0..6u64, proptest::option::of(any::<u8>())).prop_map(|(key, expected, value)| Op::Cas { key, expected, value }),
        1 => Just(Op::Restore),
    ]
}

// ---------------------------------------------------------------- the model

#[derive(Clone, Debug)]
enum St {
    Ready,
    Leased {
        consumer: String,
        token: u64,
        deadline: u64,
    },
    Delayed {
        until: u64,
    },
}

#[derive(Clone, Debug)]
struct Msg {
    id: u64,
    body: Vec<u8>,
    enqueued_at: u64,
    acquired: u32,
    failed: u32,
    state: St,
    dead: Option<DeadLetter>,
}

#[derive(Clone, Debug)]
struct MTopic {
    name: String,
    config: TopicConfig,
    next_id: u64,
    msgs: Vec<Msg>,
    dedupe: Vec<(u64, DedupeKey, u64)>,
    acks: Vec<(u64, u64, u64)>,
    counters: Counters,
}

impl MTopic {
    fn new(name: &str, config: TopicConfig) -> Self {
        Self {
            name: name.into(),
            config,
            next_id: 1,
            msgs: vec![],
            dedupe: vec![],
            acks: vec![],
            counters: Counters::default(),
        }
    }
    fn find(&self, id: u64) -> Option<usize> {
        self.msgs.iter().position(|m| m.id == id)
    }
    fn stale(&self, id: u64) -> QueueError {
        QueueError::StaleLease {
            topic: self.name.clone(),
            id,
        }
    }
    fn acked_token(&self, id: u64, now: u64) -> Option<u64> {
        self.acks
            .iter()
            .rev()
            .find(|(t, i, _)| *i == id && now - t < ACK_MEMORY_MS)
            .map(|(_, _, token)| *token)
    }
    fn holds(&self, r: Receipt, now: u64) -> Result<usize, QueueError> {
        match self.find(r.id) {
            Some(i) => match &self.msgs[i].state {
                St::Leased { token, .. } if *token == r.token => Ok(i),
                _ => Err(self.stale(r.id)),
            },
            None if self.acked_token(r.id, now).is_some() => Err(self.stale(r.id)),
            None => Err(QueueError::NoSuchMessage {
                topic: self.name.clone(),
                id: r.id,
            }),
        }
    }
    fn is_dlq(&self) -> bool {
        self.name.ends_with(".dlq")
    }
    /// A failed delivery; returns the message when it dies.
    fn fail(
        &mut self,
        i: usize,
        failure: Failure,
        delay: u64,
        now: u64,
    ) -> Option<(Msg, DeadLetter)> {
        self.msgs[i].failed += 1;
        let limit = self.config.max_deliveries;
        if limit > 0 && self.msgs[i].failed >= limit && !self.is_dlq() {
            return Some(self.kill(i, DeadReason::DeliveryLimit(failure), now));
        }
        self.msgs[i].state = if delay == 0 {
            St::Ready
        } else {
            St::Delayed { until: now + delay }
        };
        None
    }
    fn kill(&mut self, i: usize, reason: DeadReason, now: u64) -> (Msg, DeadLetter) {
        let m = self.msgs.remove(i);
        self.counters.dead_lettered += 1;
        let letter = DeadLetter {
            topic: self.name.clone(),
            id: m.id,
            reason,
            acquired: m.acquired,
            failed: m.failed,
            dead_at_ms: now,
        };
        (m, letter)
    }
    fn accept_dead(&mut self, m: Msg, letter: DeadLetter) {
        if self.msgs.len() as u64 >= self.config.length_max {
            self.counters.dead_dropped += 1;
            match self.msgs.iter().position(|m| matches!(m.state, St::Ready)) {
                Some(i) => {
                    self.msgs.remove(i);
                }
                None => return,
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.msgs.push(Msg {
            id,
            body: m.body,
            enqueued_at: m.enqueued_at,
            acquired: 0,
            failed: 0,
            state: St::Ready,
            dead: Some(letter),
        });
        self.counters.enqueued += 1;
    }
}

#[derive(Debug)]
struct Model {
    now: u64,
    index: u64,
    last_token: u64,
    topics: BTreeMap<String, MTopic>,
    kv: BTreeMap<Vec<u8>, (Vec<u8>, u64)>,
    revision: u64,
}

impl Model {
    fn new() -> Self {
        let mut topics = BTreeMap::new();
        topics.insert("a".to_owned(), MTopic::new("a", config_a()));
        topics.insert(
            "a.dlq".to_owned(),
            MTopic::new(
                "a.dlq",
                TopicConfig {
                    max_deliveries: 0,
                    ..config_a()
                },
            ),
        );
        Self {
            now: 0,
            index: 1,
            last_token: 0,
            topics,
            kv: BTreeMap::new(),
            revision: 0,
        }
    }

    fn advance(&mut self, time: u64) {
        self.now = self.now.max(time);
        let now = self.now;
        let mut dead = vec![];
        for topic in self.topics.values_mut() {
            for m in &mut topic.msgs {
                if matches!(m.state, St::Delayed { until } if until <= now) {
                    m.state = St::Ready;
                }
            }
            let mut due: Vec<(u64, u64)> = topic
                .msgs
                .iter()
                .filter_map(|m| match m.state {
                    St::Leased { deadline, .. } if deadline <= now => Some((deadline, m.id)),
                    _ => None,
                })
                .collect();
            due.sort();
            for (_, id) in due {
                let Some(i) = topic.find(id) else { continue };
                topic.counters.expired += 1;
                if let Some(d) = topic.fail(i, Failure::LeaseExpired, 0, now) {
                    dead.push((format!("{}.dlq", topic.name), d));
                }
            }
        }
        for (dlq, (m, letter)) in dead {
            self.topics.get_mut(&dlq).unwrap().accept_dead(m, letter);
        }
    }

    fn topic(&mut self, name: &str) -> Result<&mut MTopic, QueueError> {
        self.topics
            .get_mut(name)
            .ok_or(QueueError::NoSuchTopic { topic: name.into() })
    }

    fn apply(&mut self, time: u64, command: &Command) -> Response {
        self.index += 1;
        self.advance(time);
        let now = self.now;
        let index = self.index;
        match command {
            Command::Enqueue { topic, messages } => {
                if !self.topics.contains_key(topic) {
                    self.topics
                        .insert(topic.clone(), MTopic::new(topic, TopicConfig::default()));
                    self.topics.insert(
                        format!("{topic}.dlq"),
                        MTopic::new(
                            &format!("{topic}.dlq"),
                            TopicConfig {
                                max_deliveries: 0,
                                ..TopicConfig::default()
                            },
                        ),
                    );
                }
                let t = self.topic(topic)?;
                let window = t.config.dedupe_window_ms;
                let lookup = |t: &MTopic, key: &DedupeKey| {
                    t.dedupe
                        .iter()
                        .rev()
                        .find(|(at, k, _)| k == key && now - at < window)
                        .map(|(_, _, id)| *id)
                };
                // Plan: how many are new.
                let mut seen: Vec<&DedupeKey> = vec![];
                let mut adding = 0;
                for m in messages {
                    if let Some(key) = &m.dedupe {
                        if lookup(t, key).is_some() || seen.contains(&key) {
                            continue;
                        }
                        seen.push(key);
                    }
                    adding += 1;
                }
                if adding > 0 && t.msgs.len() as u64 + adding > t.config.length_max {
                    return Err(QueueError::TopicFull {
                        topic: topic.clone(),
                        length: t.msgs.len() as u64,
                        adding,
                        max: t.config.length_max,
                    });
                }
                let mut out = vec![];
                for m in messages {
                    if let Some(key) = &m.dedupe {
                        if let Some(id) = lookup(t, key) {
                            t.counters.deduplicated += 1;
                            out.push(Enqueued {
                                id,
                                duplicate: true,
                            });
                            continue;
                        }
                    }
                    let id = t.next_id;
                    t.next_id += 1;
                    if let Some(key) = &m.dedupe {
                        t.dedupe.push((now, key.clone(), id));
                    }
                    let state = if m.delay_ms == 0 {
                        St::Ready
                    } else {
                        St::Delayed {
                            until: now + m.delay_ms,
                        }
                    };
                    t.msgs.push(Msg {
                        id,
                        body: m.body.clone(),
                        enqueued_at: now,
                        acquired: 0,
                        failed: 0,
                        state,
                        dead: None,
                    });
                    t.counters.enqueued += 1;
                    out.push(Enqueued {
                        id,
                        duplicate: false,
                    });
                }
                Ok(Reply::Enqueued(out))
            }
            Command::Lease {
                topic,
                consumer,
                max_messages,
                lease_ms,
            } => {
                let token_base = (index * LEASE_TOKENS_PER_INDEX).max(self.last_token + 1);
                let t = self.topic(topic)?;
                let lease_ms = lease_ms.unwrap_or(t.config.default_lease_ms);
                let in_flight = t
                    .msgs
                    .iter()
                    .filter(|m| matches!(&m.state, St::Leased { consumer: c, .. } if c == consumer))
                    .count() as u32;
                if in_flight >= t.config.in_flight_max {
                    return Err(QueueError::InFlightLimit {
                        topic: topic.clone(),
                        consumer: consumer.clone(),
                        in_flight,
                        max: t.config.in_flight_max,
                    });
                }
                let n = (*max_messages).min(t.config.in_flight_max - in_flight) as usize;
                let mut ready: Vec<usize> = (0..t.msgs.len())
                    .filter(|&i| matches!(t.msgs[i].state, St::Ready))
                    .collect();
                ready.sort_by_key(|&i| t.msgs[i].id);
                let mut out = vec![];
                for (slot, i) in ready.into_iter().take(n).enumerate() {
                    let token = token_base + slot as u64;
                    let m = &mut t.msgs[i];
                    if m.acquired > 0 {
                        t.counters.redelivered += 1;
                    }
                    m.acquired += 1;
                    t.counters.leased += 1;
                    m.state = St::Leased {
                        consumer: consumer.clone(),
                        token,
                        deadline: now + lease_ms,
                    };
                    out.push(Delivery {
                        id: m.id,
                        token,
                        leased_at_ms: now,
                        deadline_ms: now + lease_ms,
                        acquired: m.acquired,
                        failed: m.failed,
                        enqueued_at_ms: m.enqueued_at,
                        body: m.body.clone(),
                        dead_letter: m.dead.clone(),
                    });
                }
                if let Some(last) = out.last() {
                    self.last_token = last.token;
                }
                Ok(Reply::Leased(out))
            }
            Command::Ack { topic, receipts } => {
                let t = self.topic(topic)?;
                let results = receipts
                    .iter()
                    .map(|&r| {
                        if t.find(r.id).is_none() && t.acked_token(r.id, now) == Some(r.token) {
                            return Ok(AckOutcome::AlreadyAcked);
                        }
                        let i = t.holds(r, now)?;
                        t.msgs.remove(i);
                        t.acks.push((now, r.id, r.token));
                        t.counters.acked += 1;
                        Ok(AckOutcome::Acked)
                    })
                    .collect();
                Ok(Reply::Acked(results))
            }
            Command::Nack {
                topic,
                receipts,
                nack,
            } => {
                let t = self.topic(topic)?;
                let mut dead = vec![];
                let results = receipts
                    .iter()
                    .map(|&r| {
                        let i = t.holds(r, now)?;
                        match *nack {
                            Nack::Release => {
                                t.counters.released += 1;
                                t.msgs[i].state = St::Ready;
                            }
                            Nack::Retry { delay_ms } => {
                                t.counters.nacked += 1;
                                dead.extend(t.fail(i, Failure::Nacked, delay_ms, now));
                            }
                            Nack::Reject => {
                                if t.is_dlq() {
                                    return Err(QueueError::invalid("nack", ""));
                                }
                                dead.push(t.kill(i, DeadReason::Rejected, now));
                            }
                        }
                        Ok(())
                    })
                    .collect();
                for (m, letter) in dead {
                    self.topics
                        .get_mut(&format!("{topic}.dlq"))
                        .unwrap()
                        .accept_dead(m, letter);
                }
                Ok(Reply::Nacked(results))
            }
            Command::Extend {
                topic,
                receipts,
                lease_ms,
            } => {
                let t = self.topic(topic)?;
                let lease_ms = lease_ms.unwrap_or(t.config.default_lease_ms);
                let results = receipts
                    .iter()
                    .map(|&r| {
                        let i = t.holds(r, now)?;
                        if let St::Leased { deadline, .. } = &mut t.msgs[i].state {
                            *deadline = now + lease_ms;
                        }
                        Ok(now + lease_ms)
                    })
                    .collect();
                Ok(Reply::Extended(results))
            }
            Command::Purge { topic } => {
                let t = self.topic(topic)?;
                let before = t.msgs.len();
                t.msgs.retain(|m| matches!(m.state, St::Leased { .. }));
                let purged = (before - t.msgs.len()) as u64;
                t.counters.purged += purged;
                Ok(Reply::Purged { messages: purged })
            }
            Command::Put { key, value } => {
                self.revision += 1;
                self.kv.insert(key.clone(), (value.clone(), self.revision));
                Ok(Reply::Written {
                    version: self.revision,
                })
            }
            Command::Delete { key } => Ok(Reply::Deleted {
                version: self.kv.remove(key).map_or(0, |(_, v)| v),
            }),
            Command::Cas {
                key,
                expected_version,
                value,
            } => {
                let current = self.kv.get(key).map_or(0, |(_, v)| *v);
                if current != *expected_version {
                    return Err(QueueError::VersionMismatch {
                        key: String::from_utf8_lossy(key).into_owned(),
                        expected: *expected_version,
                        current,
                    });
                }
                match value {
                    Some(value) => {
                        self.revision += 1;
                        self.kv.insert(key.clone(), (value.clone(), self.revision));
                        Ok(Reply::Written {
                            version: self.revision,
                        })
                    }
                    None => {
                        self.kv.remove(key);
                        Ok(Reply::Written { version: 0 })
                    }
                }
            }
            Command::Tick => Ok(Reply::Ticked { now_ms: now }),
            other => unreachable!("the model does not generate {other:?}"),
        }
    }

    fn stats(&self, name: &str) -> Option<TopicStats> {
        let t = self.topics.get(name)?;
        let count = |f: fn(&St) -> bool| t.msgs.iter().filter(|m| f(&m.state)).count() as u64;
        let oldest = t
            .msgs
            .iter()
            .filter(|m| matches!(m.state, St::Ready))
            .min_by_key(|m| m.id)
            .map(|m| self.now - m.enqueued_at);
        let mut consumers: Vec<&str> = t
            .msgs
            .iter()
            .filter_map(|m| match &m.state {
                St::Leased { consumer, .. } => Some(consumer.as_str()),
                _ => None,
            })
            .collect();
        consumers.sort();
        consumers.dedup();
        let dead = if t.is_dlq() {
            0
        } else {
            self.topics
                .get(&format!("{name}.dlq"))
                .map_or(0, |d| d.msgs.len() as u64)
        };
        Some(TopicStats {
            topic: name.into(),
            now_ms: self.now,
            ready: count(|s| matches!(s, St::Ready)),
            leased: count(|s| matches!(s, St::Leased { .. })),
            delayed: count(|s| matches!(s, St::Delayed { .. })),
            dead,
            oldest_ready_age_ms: oldest,
            consumers: consumers.len() as u64,
            counters: t.counters.clone(),
            config: t.config.clone(),
        })
    }
}

// ---------------------------------------------------------------- the test

/// Invalid errors are compared by field only: the model does not copy texts.
fn normalize(response: Response) -> Response {
    fn error(e: QueueError) -> QueueError {
        match e {
            QueueError::Invalid { field, .. } => QueueError::Invalid {
                field,
                detail: String::new(),
            },
            other => other,
        }
    }
    match response {
        Err(e) => Err(error(e)),
        Ok(Reply::Acked(r)) => Ok(Reply::Acked(
            r.into_iter().map(|x| x.map_err(error)).collect(),
        )),
        Ok(Reply::Nacked(r)) => Ok(Reply::Nacked(
            r.into_iter().map(|x| x.map_err(error)).collect(),
        )),
        Ok(Reply::Extended(r)) => Ok(Reply::Extended(
            r.into_iter().map(|x| x.map_err(error)).collect(),
        )),
        other => other,
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut machine = QueueMachine::new();
    let mut model = Model::new();
    let mut time = 1_000u64;
    let mut receipts: Vec<(usize, Receipt)> = vec![];
    let create = Command::CreateTopic {
        topic: "a".into(),
        config: config_a(),
    };
    machine.apply(
        &ApplyContext {
            index: 1,
            term: 1,
            time_ms: time,
        },
        &encode_command(&create),
    );
    for op in ops {
        let command = match op {
            Op::Advance { ms } => {
                time += ms;
                Command::Tick
            }
            Op::Restore => {
                let snapshot = machine.snapshot();
                machine = QueueMachine::new();
                machine.restore(&snapshot).map_err(TestCaseError::fail)?;
                continue;
            }
            Op::Enqueue { topic, messages } => Command::Enqueue {
                topic: TOPICS[topic].into(),
                messages: messages
                    .into_iter()
                    .map(|(body, dedupe, delay)| {
                        let m = NewMessage::new(vec![body]).delay_ms(delay);
                        match dedupe {
                            Some((p, s)) => m.dedupe(format!("p{p}"), u64::from(s)),
                            None => m,
                        }
                    })
                    .collect(),
            },
            Op::Lease {
                topic,
                consumer,
                max,
                lease_ms,
            } => Command::Lease {
                topic: TOPICS[topic].into(),
                consumer: format!("c{consumer}"),
                max_messages: max,
                lease_ms,
            },
            Op::Ack { topic, pick }
            | Op::Nack { topic, pick, .. }
            | Op::Extend { topic, pick, .. }
                if receipts.is_empty() =>
            {
                let _ = (topic, pick);
                Command::Tick
            }
            Op::Ack { topic, pick } => Command::Ack {
                topic: TOPICS[topic].into(),
                receipts: vec![pick_receipt(&receipts, topic, pick)],
            },
            Op::Nack { topic, pick, nack } => Command::Nack {
                topic: TOPICS[topic].into(),
                receipts: vec![pick_receipt(&receipts, topic, pick)],
                nack,
            },
            Op::Extend {
                topic,
                pick,
                lease_ms,
            } => Command::Extend {
                topic: TOPICS[topic].into(),
                receipts: vec![pick_receipt(&receipts, topic, pick)],
                lease_ms: Some(lease_ms),
            },
            Op::Purge { topic } => Command::Purge {
                topic: TOPICS[topic].into(),
            },
            Op::Put { key, value } => Command::Put {
                key: vec![key],
                value: vec![value],
            },
            Op::Delete { key } => Command::Delete { key: vec![key] },
            Op::Cas {
                key,
                expected,
                value,
            } => Command::Cas {
                key: vec![key],
                expected_version: expected,
                value: value.map(|v| vec![v]),
            },
        };
        let expected = normalize(model.apply(time, &command));
        let ctx = ApplyContext {
            index: model.index,
            term: 1,
            time_ms: time,
        };
        let actual = normalize(
            decode_response(&machine.apply(&ctx, &encode_command(&command)))
                .map_err(|e| TestCaseError::fail(e.to_string()))?,
        );
        prop_assert_eq!(&actual, &expected, "command {:?}", command);
        if let (Ok(Reply::Leased(deliveries)), Command::Lease { topic, .. }) = (&actual, &command) {
            let topic = TOPICS.iter().position(|t| t == topic).unwrap_or(0);
            receipts.extend(deliveries.iter().map(|d| (topic, d.receipt())));
        }
        for name in ["a", "a.dlq", "b", "b.dlq"] {
            let reply = machine.query(&encode_query(&Query::Stats { topic: name.into() }));
            let actual = decode_response(&reply).map_err(|e| TestCaseError::fail(e.to_string()))?;
            match model.stats(name) {
                Some(stats) => prop_assert_eq!(actual, Ok(Reply::Stats(stats))),
                None => {
                    let missing = matches!(actual, Err(QueueError::NoSuchTopic { .. }));
                    prop_assert!(missing, "topic {} should not exist", name);
                }
            }
        }
    }
    Ok(())
}

/// Mostly a receipt from the same topic; sometimes one from another, or a
/// forged one, to exercise stale and unknown receipts.
fn pick_receipt(receipts: &[(usize, Receipt)], topic: usize, pick: usize) -> Receipt {
    let same: Vec<Receipt> = receipts
        .iter()
        .filter(|(t, _)| *t == topic)
        .map(|(_, r)| *r)
        .collect();
    match pick % 8 {
        0 => Receipt {
            id: (pick % 5) as u64,
            token: pick as u64 % 50_000,
        },
        _ if !same.is_empty() => same[pick % same.len()],
        _ => receipts[pick % receipts.len()].1,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn machine_matches_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops)?;
    }
}
