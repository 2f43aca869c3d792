//! A ww host's networking, without its runtime: the libp2p node,
//! heartbeats and the cluster view, local pubsub subscriptions, and
//! dialling a host's `Host` capability.
//!
//! Native clients (the Raft queue client, benchmarks, tests) depend on this
//! crate alone, so they build without wasmtime and Cranelift.
//!
//! Everything here runs on one current-thread tokio runtime inside a
//! `LocalSet`: capnp objects are `!Send`, and the host's design keeps the
//! swarm, every `RpcSystem` and every guest on one thread (see the `ww`
//! crate's documentation).

pub mod dial;
pub mod identity;
pub mod inbound;
pub mod limits;
pub mod node;
pub mod private;
pub mod pubsub;
pub mod signed;
pub mod view;

pub use node::{HeartbeatConfig, IncomingStreams, Node, NodeConfig, RPC_PROTOCOL};
