//! How a driver hands outgoing message batches to the network.

/// Delivers encoded envelopes to peers. Implemented by the replica ROM over
/// its Cap'n Proto channels, and by the simulator's network.
///
/// # Obligations
///
/// - **Never block** on the network: queue the bytes and return. The driver
///   calls `send` in the middle of handling a Ready.
/// - Keep the order of envelopes sent to the same peer where possible
///   (Raft tolerates reordering, but it costs retransmissions).
/// - Authenticate on the receiving side: before calling
///   [`crate::Node::step`], check that the frame came from the peer that
///   the group's membership metadata maps `from` to (see
///   [`crate::peek_header`] to read `from` and the kind without decoding),
///   and refuse frames over the size limit of their kind.
pub trait Transport {
    /// Queues one encoded envelope (see [`crate::Envelope`]) for replica
    /// `to`.
    ///
    /// # Errors
    ///
    /// [`SendError`] when the peer is unknown or its queue is full. The
    /// driver then tells raft-rs the peer is unreachable, which slows
    /// replication to it down to probing until it answers again.
    fn send(&mut self, to: u64, envelope: Vec<u8>) -> Result<(), SendError>;
}

/// The transport could not queue an envelope.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot send to raft node {to}: {reason}")]
pub struct SendError {
    /// The peer.
    pub to: u64,
    /// Why, for logs.
    pub reason: String,
}
