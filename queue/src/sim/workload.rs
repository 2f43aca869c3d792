//! The queue workload's clients, independent of any simulator: producers
//! enqueue unique values; consumers lease, ack, nack, release, reject,
//! extend, and sometimes crash holding leases. A driver asks each idle client
//! for its next request, delivers the outcome, and at the end runs a drain in
//! which consumers ack everything until the topic and its dead-letter topic
//! are empty. [`History`] then checks the oracles.

use std::collections::VecDeque;

use raft_core::rng::Rng;

use super::history::{History, Report};
use crate::command::{decode_response, encode_command, encode_query, Command, Query, Reply};
use crate::types::{Delivery, Nack, NewMessage, TopicConfig};
use crate::{dlq_name, QueueError};

/// The topic every client uses.
pub const TOPIC: &str = "work";

/// What a client asks the group to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Propose this encoded command.
    Submit(Vec<u8>),
    /// Run this encoded query as a linearizable read.
    Query(Vec<u8>),
}

/// What became of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The state machine's reply.
    Reply(Vec<u8>),
    /// It certainly did not apply.
    Unavailable,
    /// It may or may not have applied.
    Unknown,
}

/// Tunables, in log-time milliseconds.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Lease length the consumers ask for.
    pub lease_ms: u64,
    /// Most values a producer enqueues in one batch.
    pub batch_max: u64,
    /// The topic's `max_deliveries`.
    pub max_deliveries: u32,
    /// Values each producer enqueues before it stops.
    pub values_per_producer: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lease_ms: 2_000,
            batch_max: 4,
            max_deliveries: 4,
            values_per_producer: 40,
        }
    }
}

#[derive(Debug)]
enum Role {
    Producer {
        index: usize,
        next: u64,
        /// A batch whose outcome is unknown, resent with the same dedupe keys.
        pending: Option<Vec<u64>>,
    },
    Consumer {
        index: usize,
        generation: u64,
        holding: VecDeque<(String, Delivery)>,
        turn: u64,
    },
    /// Creates the topic, then (in the drain) watches the counts.
    Admin { created: bool },
}

/// What a client is waiting for.
#[derive(Debug)]
enum Waiting {
    Create,
    Enqueue(Vec<u64>),
    Lease {
        topic: String,
        consumer: String,
    },
    Settle {
        topic: String,
        delivery: Delivery,
        action: Action,
    },
    Stats,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Ack,
    Return,
    Extend,
}

/// The queue workload's client side.
#[derive(Debug)]
pub struct QueueWorkload {
    rng: Rng,
    settings: Settings,
    roles: Vec<Role>,
    waiting: Vec<Option<Waiting>>,
    history: History,
    draining: bool,
    /// The admin has created the topic; producers wait for it so that no
    /// enqueue creates it first with default settings.
    topic_ready: bool,
    /// The last stats said both topics are empty and no consumer holds anything.
    drained: bool,
}

impl QueueWorkload {
    /// A workload for `clients` clients: client 0 is the admin, then
    /// producers and consumers alternate (so it needs 3 to do anything).
    pub fn new(seed: u64, clients: usize, settings: Settings) -> Self {
        let roles = (0..clients)
            .map(|client| match client {
                0 => Role::Admin { created: false },
                c if c % 2 == 1 => Role::Producer {
                    index: c / 2,
                    next: 0,
                    pending: None,
                },
                c => Role::Consumer {
                    index: c / 2,
                    generation: 0,
                    holding: VecDeque::new(),
                    turn: 0,
                },
            })
            .collect();
        Self {
            rng: Rng::new(seed),
            settings,
            roles,
            waiting: (0..clients).map(|_| None).collect(),
            history: History::default(),
            draining: false,
            topic_ready: false,
            drained: false,
        }
    }

    /// Stops producing and faults in consumers: from now on consumers ack
    /// everything they lease.
    pub fn begin_drain(&mut self) {
        self.draining = true;
    }

    /// True once the drain has emptied the topic and its dead-letter topic.
    pub fn is_drained(&self) -> bool {
        self.drained
    }

    /// True once the drain has begun.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// True once every producer has had every value acknowledged.
    pub fn produced_all(&self) -> bool {
        self.roles.iter().all(|role| match role {
            Role::Producer { next, pending, .. } => {
                *next >= self.settings.values_per_producer && pending.is_none()
            }
            _ => true,
        }) && self
            .waiting
            .iter()
            .all(|w| !matches!(w, Some(Waiting::Enqueue(_))))
    }

    /// The checker's report.
    pub fn check(&self) -> Report {
        self.history.check()
    }

    /// The next request of idle `client`, or `None` if it has nothing to do now.
    pub fn next_request(&mut self, client: usize) -> Option<Request> {
        debug_assert!(self.waiting[client].is_none(), "client {client} is busy");
        let (waiting, request) = match &mut self.roles[client] {
            Role::Admin { created: false } => {
                let config = TopicConfig {
                    max_deliveries: self.settings.max_deliveries,
                    in_flight_max: 64,
                    ..TopicConfig::default()
                };
                let command = Command::CreateTopic {
                    topic: TOPIC.to_owned(),
                    config,
                };
                (Waiting::Create, Request::Submit(encode_command(&command)))
            }
            Role::Admin { created: true } => return None,
            Role::Producer {
                index,
                next,
                pending,
            } => {
                if !self.topic_ready {
                    return None;
                }
                let sequences = match pending.take() {
                    Some(sequences) => sequences,
                    None if self.draining || *next >= self.settings.values_per_producer => {
                        return None
                    }
                    None => {
                        let count = self.rng.range(1, self.settings.batch_max + 1);
                        let count = count.min(self.settings.values_per_producer - *next);
                        let sequences: Vec<u64> = (*next..*next + count).collect();
                        *next += count;
                        sequences
                    }
                };
                let producer = format!("p{index}");
                let messages = sequences
                    .iter()
                    .map(|&sequence| {
                        let value = value(&producer, sequence);
                        self.history.enqueue_attempted(&value);
                        NewMessage::new(value).dedupe(producer.clone(), sequence)
                    })
                    .collect();
                let command = Command::Enqueue {
                    topic: TOPIC.to_owned(),
                    messages,
                };
                (
                    Waiting::Enqueue(sequences),
                    Request::Submit(encode_command(&command)),
                )
            }
            Role::Consumer {
                index,
                generation,
                holding,
                turn,
            } => {
                // A crash forgets every lease held; a new generation is a new
                // consumer id, as after a process restart.
                if !self.draining && !holding.is_empty() && self.rng.chance(1, 12) {
                    holding.clear();
                    *generation += 1;
                }
                let consumer = format!("c{index}.{generation}");
                *turn += 1;
                match holding.pop_front() {
                    // Draining consumers also watch the counts, so the drain
                    // ends once the queue is empty.
                    None if self.draining && *turn % 3 == 0 => stats_request(),
                    None => {
                        let dlq = if self.draining {
                            *turn % 3 == 1
                        } else {
                            self.rng.chance(1, 5)
                        };
                        let topic = if dlq {
                            dlq_name(TOPIC)
                        } else {
                            TOPIC.to_owned()
                        };
                        let command = Command::Lease {
                            topic: topic.clone(),
                            consumer: consumer.clone(),
                            max_messages: self.rng.range(1, 5) as u32,
                            lease_ms: Some(self.settings.lease_ms),
                        };
                        (
                            Waiting::Lease { topic, consumer },
                            Request::Submit(encode_command(&command)),
                        )
                    }
                    Some((topic, delivery)) => {
                        let receipts = vec![delivery.receipt()];
                        let roll = if self.draining {
                            0
                        } else {
                            self.rng.below(100)
                        };
                        let (action, command) = match roll {
                            0..75 => (
                                Action::Ack,
                                Command::Ack {
                                    topic: topic.clone(),
                                    receipts,
                                },
                            ),
                            75..85 => (
                                Action::Extend,
                                Command::Extend {
                                    topic: topic.clone(),
                                    receipts,
                                    lease_ms: Some(self.settings.lease_ms),
                                },
                            ),
                            85..93 => (
                                Action::Return,
                                Command::Nack {
                                    topic: topic.clone(),
                                    receipts,
                                    nack: Nack::Retry {
                                        delay_ms: self.rng.below(self.settings.lease_ms),
                                    },
                                },
                            ),
                            93..97 => (
                                Action::Return,
                                Command::Nack {
                                    topic: topic.clone(),
                                    receipts,
                                    nack: Nack::Release,
                                },
                            ),
                            _ if topic.ends_with(crate::limits::DLQ_SUFFIX) => (
                                Action::Ack,
                                Command::Ack {
                                    topic: topic.clone(),
                                    receipts,
                                },
                            ),
                            _ => (
                                Action::Return,
                                Command::Nack {
                                    topic: topic.clone(),
                                    receipts,
                                    nack: Nack::Reject,
                                },
                            ),
                        };
                        if action == Action::Return {
                            self.history.returned(&topic, delivery.receipt());
                        }
                        (
                            Waiting::Settle {
                                topic,
                                delivery,
                                action,
                            },
                            Request::Submit(encode_command(&command)),
                        )
                    }
                }
            }
        };
        self.waiting[client] = Some(waiting);
        Some(request)
    }

    /// Delivers the outcome of `client`'s request.
    ///
    /// # Panics
    ///
    /// If `client` had no request outstanding (a driver bug).
    pub fn complete(&mut self, client: usize, outcome: Outcome) {
        let waiting = self.waiting[client]
            .take()
            .unwrap_or_else(|| panic!("client {client} completed with no request outstanding"));
        let unknown = outcome == Outcome::Unknown;
        let reply = match outcome {
            Outcome::Reply(bytes) => match decode_response(&bytes) {
                Ok(reply) => Some(reply),
                Err(error) => panic!("undecodable reply to client {client}: {error}"),
            },
            Outcome::Unavailable | Outcome::Unknown => None,
        };
        match (waiting, &mut self.roles[client]) {
            (Waiting::Create, Role::Admin { created }) => {
                *created = matches!(reply, Some(Ok(Reply::TopicCreated { .. })));
                self.topic_ready = *created;
            }
            (Waiting::Stats, _) => {
                if let Some(Ok(Reply::Stats(stats))) = reply {
                    let idle = self.roles.iter().all(|role| match role {
                        Role::Consumer { holding, .. } => holding.is_empty(),
                        _ => true,
                    });
                    let busy = self
                        .waiting
                        .iter()
                        .any(|w| matches!(w, Some(Waiting::Settle { .. })));
                    self.drained = stats.ready + stats.leased + stats.delayed + stats.dead == 0
                        && idle
                        && !busy;
                }
            }
            (Waiting::Enqueue(sequences), Role::Producer { index, pending, .. }) => match reply {
                Some(Ok(Reply::Enqueued(results))) => {
                    let producer = format!("p{index}");
                    for (sequence, result) in sequences.iter().zip(results) {
                        self.history
                            .enqueue_acknowledged(&value(&producer, *sequence), result.id);
                    }
                }
                // Retry the same values with the same dedupe keys: a lost
                // reply may hide an applied enqueue.
                Some(Err(QueueError::TopicFull { .. })) | None => *pending = Some(sequences),
                Some(other) => panic!("enqueue failed unexpectedly: {other:?}"),
            },
            (
                Waiting::Lease { topic, consumer },
                Role::Consumer {
                    holding,
                    generation,
                    index,
                    ..
                },
            ) => {
                if let Some(Ok(Reply::Leased(deliveries))) = reply {
                    self.history.leased(&topic, &consumer, &deliveries);
                    // Leases of a crashed generation are forgotten.
                    if consumer == format!("c{index}.{generation}") {
                        holding.extend(deliveries.into_iter().map(|d| (topic.clone(), d)));
                    }
                }
            }
            (
                Waiting::Settle {
                    topic,
                    delivery,
                    action,
                },
                Role::Consumer { holding, .. },
            ) => {
                let receipt = delivery.receipt();
                match (action, reply) {
                    (Action::Ack, Some(Ok(Reply::Acked(results)))) => {
                        if let Some(Ok(outcome)) = results.first() {
                            self.history
                                .acked(&topic, receipt, &delivery.body, *outcome);
                        }
                    }
                    // A lost ack reply: try again, the ack is idempotent.
                    (Action::Ack, None) => {
                        if unknown {
                            self.history.ack_unknown(&delivery.body);
                        }
                        holding.push_front((topic, delivery));
                    }
                    (Action::Extend, Some(Ok(Reply::Extended(results)))) => {
                        if let Some(Ok(deadline_ms)) = results.first() {
                            self.history.extended(&topic, receipt, *deadline_ms);
                            holding.push_back((topic, delivery));
                        }
                    }
                    _ => {}
                }
            }
            (waiting, _) => panic!("client {client}: reply to {waiting:?} for the wrong role"),
        }
    }
}

/// A stats read of the topic (its `dead` count covers the dead-letter topic).
fn stats_request() -> (Waiting, Request) {
    let query = Query::Stats {
        topic: TOPIC.to_owned(),
    };
    (Waiting::Stats, Request::Query(encode_query(&query)))
}

/// The value producer `producer` enqueues as its `sequence`th.
fn value(producer: &str, sequence: u64) -> Vec<u8> {
    format!("{producer}-{sequence}").into_bytes()
}
