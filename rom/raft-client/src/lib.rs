//! Reach a Raft queue group by its anchors.
//!
//! A group of version `V` is a set of replica processes, each anchored at
//! `/<peer id>/raft/<V>` with these sub-anchors:
//!
//! - `request`: a channel `Sender`. A message is one encoded
//!   [`proto::RequestBatch`], and carries one capability: the `Sender` the
//!   replica answers on with one [`proto::ResponseBatch`] per batch of
//!   completed requests.
//! - `inbox`: the channel `Sender` its peers send Raft messages to.
//! - `response`: a pubsub `Topic` on which every replica of the group
//!   publishes its [`proto::ReplicaStatus`] whenever its role, leader or
//!   membership changes (and every few seconds): subscribe to watch the
//!   group elect a leader, fail over or change membership without polling.
//!
//! - `admin`: the group's admin access token (bytes). Every request batch
//!   carries a token ([`access`]); a holder of the cluster root reads this
//!   one, a process spawned with grants only gets a narrower one.
//!
//! [`Group`] finds the replicas by listing anchors, keeps the leader, batches
//! concurrent requests to the same replica into one channel message, and
//! retries redirects and retryable errors. [`Session`] gives each logical
//! client its raft-core session (client id, sequence), so a retried command
//! applies once; it implements [`queue::Transport`], so
//! `queue::Client::new(group.session())` is a typed KV and queue client.
//!
//! The same code runs in a ROM (single-threaded guest) and natively (tokio
//! `LocalSet`): both hold a `ww_api::host::Client`. The [`Runtime`] trait
//! supplies timers and task spawning; [`native`] has a tokio one and a
//! client that dials a host over libp2p, and also dials each replica's host
//! so that requests and replies skip the relay ([`direct`]).

pub mod access;
pub mod direct;
pub mod group;
pub mod outbox;
pub mod proto;
mod runtime;
mod session;

#[cfg(feature = "native")]
pub mod native;

#[cfg(feature = "guest")]
mod guest;
#[cfg(feature = "guest")]
pub use guest::GuestRuntime;

pub use group::{Directory, Group, GroupError, Replica};
pub use runtime::Runtime;
pub use session::Session;
