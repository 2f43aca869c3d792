//! raft-core: a durable raft-rs driver with no knowledge of hosts or transports.

pub mod state_machine;

pub use state_machine::{ApplyContext, StateMachine};
