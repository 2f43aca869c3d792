//! raft-core: a durable, sans-IO raft-rs driver with no knowledge of hosts
//! or transports. It runs natively and inside a `wasm32-wasip2` guest.
//!
//! # Core concepts
//!
//! - [`Node`] is one replica of a Raft group. It owns a raft-rs `RawNode`,
//!   the durable log ([`storage`]), the replicated [`StateMachine`], the
//!   client session table, and the requests waiting for an outcome.
//! - [`Dir`] is where the replica keeps its files: [`FsDir`] on the real
//!   file system (a WASI preopened directory in the guest), or the
//!   simulator's disk.
//! - [`Transport`] takes encoded [`Envelope`]s, one batch of messages per
//!   peer per Ready.
//! - Nothing here reads a clock or draws hidden randomness: time is
//!   [`Node::tick`] calls, the proposer stamps each command with its
//!   `time_ms`, and election timeouts come from [`Options::rng_seed`].
//!
//! # The loop
//!
//! A replica is driven by one thread (in the guest: its single thread):
//!
//! ```text
//! let mut node = Node::open(FsDir::open("/data/raft")?, config, machine, options)?;
//! loop {
//!     wait for: the tick timer, an envelope from a peer, a client request;
//!     for each elapsed tick:   node.tick();
//!     for each envelope:       node.step(&bytes);          // validated; garbage is dropped
//!     for each client write:   node.propose(client_id, seq, now_ms, command)?;  // leader only
//!     for each client read:    node.read_index(query)?;    // leader only
//!     for output in node.process(&mut transport)? {        // persist, send, apply
//!         deliver Output::Proposal / Output::Read / Output::MembershipChange to the
//!         waiting client; react to Output::Event (leader changed, removed, ...)
//!     }
//! }
//! ```
//!
//! Obligations of the caller:
//!
//! 1. Call [`Node::process`] after every batch of inputs. Batch inputs: all
//!    proposals made between two `process` calls share one fsync (group
//!    commit), and all reads share one ReadIndex round.
//! 2. Tick at a steady period. Heartbeats, elections and request timeouts
//!    are counted in ticks ([`Config`]).
//! 3. Retry retryable errors ([`RequestError::is_retryable`]) with the same
//!    `(client_id, seq)`: a retried command applies at most once. Send
//!    requests to [`Node::leader_id`] when told `NotLeader`.
//! 4. Authenticate peers in the transport: a frame is stepped only if its
//!    authenticated sender is the node that [`Node::members`] metadata
//!    maps `from` to. raft-core checks the group id, the recipient, that
//!    the sender is a member, size limits, and every field raft-rs would
//!    panic on; it cannot know who really sent the bytes.
//! 5. After an `Err` from `process`, drop the node and [`Node::open`] the
//!    directory again.
//! 6. Optionally, when sends leave only once the caller yields (an async
//!    transport), call [`Node::send_early`] first, let its sends leave, then
//!    call `process`; in between, nothing may step, tick or propose (those
//!    methods panic): raft-rs must not change state between taking a Ready
//!    and advancing it.
//! 7. Optionally, call [`Node::process_messages`] instead of `process`,
//!    let its sends leave, then call [`Node::background_step`] (snapshot
//!    and compaction work): a snapshot chunk then never delays the
//!    acknowledgements and answers of the round. Call it whenever
//!    [`Node::has_ready`] is true, or the snapshot never finishes and the
//!    log is never compacted.
//!
//! # Durability
//!
//! Each Ready is written as one checksummed frame with one write and one
//! `sync_data` before any acknowledgement leaves. Recovery cuts a torn last
//! frame, refuses to start on damage anywhere else, including a bit flip in
//! a last frame that was written whole ([`Error::Corruption`]), and copies
//! the last segment into a fresh synced file so that bytes a failed sync
//! left in the page cache are never taken for durable. A snapshot is
//! captured in one call ([`StateMachine::begin_snapshot`]), serialized and
//! written a bounded chunk per [`Node::process`] (or
//! [`Node::background_step`]) call, and relied on (the
//! log compacted below it) only once it is synced and renamed into place;
//! a crash before that leaves the previous snapshot and the log. See
//! `docs/raft-core.md` for the file formats and for what an operator does
//! when a replica refuses to start.
//!
//! # Determinism and the simulator
//!
//! With the `sim` feature, [`sim`] runs whole groups in one thread from one
//! seed, with network, disk and node faults, and checks linearizability.

#![deny(missing_docs)]

mod command;
pub mod config;
pub mod envelope;
pub mod error;
mod identity;
pub mod membership;
mod node;
pub mod output;
mod ready;
pub mod rng;
mod session;
pub mod state_machine;
pub mod storage;
pub mod transport;
mod validate;

#[cfg(feature = "sim")]
pub mod sim;

pub use config::{Config, ConfigError};
pub use envelope::{peek_header, Envelope, EnvelopeHeader, EnvelopeKind, EnvelopeLimits};
pub use error::{DropReason, Error, RequestError};
pub use membership::Membership;
pub use node::{Bootstrap, Join, Node, Options, StepReport};
pub use output::{ChangeId, Counters, Event, Output, PeerProgress, ReadId, Role, Status};
pub use state_machine::{ApplyContext, SnapshotSource, StateMachine};
pub use storage::dir::{Dir, FsDir};
pub use storage::StorageCounters;
pub use transport::{SendError, Transport};

/// raft-rs's logger type, for [`Options::logger`].
pub use slog::Logger;
