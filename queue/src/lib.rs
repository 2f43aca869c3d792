//! queue: the replicated multi-topic work queue and KV state machine, with a
//! typed client.
//!
//! # Parts
//!
//! - [`QueueMachine`] implements raft-core's [`StateMachine`](raft_core::StateMachine):
//!   named topics of messages (enqueue, lease, ack, nack, extend, purge, peek,
//!   stats, dead-letter topics, producer dedupe, delays) and a KV map (put,
//!   get, delete, compare-and-set).
//! - [`Command`], [`Query`] and [`Response`] are the wire format, versioned and
//!   decoded totally: bad bytes give a [`QueueError`], never a panic.
//! - [`Client`] is the typed client over any [`Transport`]; [`MemoryTransport`]
//!   runs it against a local state machine.
//! - [`limits`] holds every bound, with its unit.
//!
//! # Time
//!
//! The only clock is [`ApplyContext::time_ms`](raft_core::ApplyContext), the
//! leader's stamp on each command. Lease deadlines, delays, dedupe windows and
//! ages are all in that log time, so every replica makes the same decisions.
//! A lease with deadline `d` expires for the first command stamped at or
//! after `d`; [`Command::Tick`] moves time when nothing else does.
//!
//! See docs/queue.md for the design and the feature comparison.

mod client;
mod command;
mod error;
mod kv;
pub mod limits;
mod machine;
mod memory;
#[cfg(feature = "sim")]
pub mod sim;
mod topic;
mod types;
mod window;

pub use client::{Client, Transport};
pub use command::{
    decode_command, decode_query, decode_response, encode_command, encode_query, encode_response,
    Command, Query, Reply, Response,
};
pub use error::{ClientError, QueueError, TransportError};
pub use machine::{dlq_name, QueueMachine};
pub use memory::{poll_once, MemoryTransport};
pub use types::{
    AckOutcome, Counters, DeadLetter, DeadReason, DedupeKey, Delivery, Enqueued, Failure,
    MessageState, Nack, NewMessage, PeekedMessage, Receipt, TopicConfig, TopicStats, TopicSummary,
    Versioned,
};
