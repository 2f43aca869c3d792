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
//! - [`crawl`]: per named crawl, a URL frontier (canonical-URL dedupe,
//!   scope and budget, per-origin politeness in log time, retries with
//!   backoff, dead URLs), driven by the crawl commands ([`Command::Offer`],
//!   [`Command::LeaseUrls`], [`Command::CompleteUrls`], ...).
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
//! # Example
//!
//! A producer and a consumer on a local state machine (a real program
//! uses a transport that reaches the Raft group instead):
//!
//! ```
//! use queue::{poll_once, Client, MemoryTransport};
//!
//! // Each call is a future; the memory transport's are ready at once.
//! fn run<F: std::future::Future>(future: F) -> F::Output {
//!     poll_once(future).expect("memory transport futures are ready")
//! }
//!
//! # fn main() -> Result<(), queue::ClientError> {
//! let client = Client::new(MemoryTransport::new(1_700_000_000_000));
//! run(client.enqueue("urls", "https://example.org/"))?;
//!
//! let leased = run(client.lease("urls", "worker-1", 10, Some(30_000)))?;
//! assert_eq!(leased[0].body, b"https://example.org/");
//!
//! // Not acked in time: the lease expires and the message comes back.
//! client.transport().advance(30_000);
//! let again = run(client.lease("urls", "worker-2", 10, None))?;
//! assert_eq!((again[0].acquired, again[0].failed), (2, 1));
//! run(client.ack("urls", again[0].receipt()))?;
//! assert_eq!(run(client.stats("urls"))?.counters.acked, 1);
//! # Ok(())
//! # }
//! ```
//!
//! See docs/queue.md for the design and the feature comparison.

mod bytes;
mod client;
mod command;
pub mod crawl;
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
