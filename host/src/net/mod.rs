//! Networking: the libp2p node, the cluster view built from heartbeats, and
//! local pubsub subscriptions.

pub mod identity;
pub mod inbound;
pub mod node;
pub mod pubsub;
pub mod view;

pub use node::{HeartbeatConfig, IncomingStreams, Node, NodeConfig, RPC_PROTOCOL};
