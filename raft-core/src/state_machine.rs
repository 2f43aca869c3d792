//! The replicated state machine interface.
//!
//! This trait is the contract between raft-core and the state machines built
//! on it (the `queue` crate). Change it only additively.

/// What raft-core tells a state machine about a committed command.
///
/// Every replica sees exactly the same `ApplyContext` for the same log index:
/// nothing in it comes from the applying replica's clock or environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyContext {
    /// The log index of the entry being applied.
    pub index: u64,
    /// The term of the entry being applied.
    pub term: u64,
    /// Milliseconds since the Unix epoch, stamped by the proposing leader.
    ///
    /// raft-core guarantees that this never decreases from one applied
    /// command to the next, even across leader changes (it applies
    /// `max(previous, stamped)`), so lease deadlines computed from it are
    /// monotonic. It is the only clock a state machine may read.
    pub time_ms: u64,
}

/// A deterministic state machine replicated by Raft.
///
/// # Obligations
///
/// - **Deterministic**: the same sequence of `apply` calls from the same
///   state gives the same state and the same results on every replica. Never
///   read the clock, randomness, or the environment.
/// - **Total**: `apply`, `query` and `restore` must accept any bytes. A
///   malformed command yields an error *result*, never a panic: a panic in
///   `apply` would crash every replica at the same log index.
pub trait StateMachine {
    /// Applies one committed command and returns its encoded result, which
    /// raft-core hands back to the proposer.
    fn apply(&mut self, ctx: &ApplyContext, command: &[u8]) -> Vec<u8>;

    /// Answers a read-only query against the applied state. raft-core calls
    /// it only once a ReadIndex confirms that the state is linearizable.
    fn query(&self, query: &[u8]) -> Vec<u8>;

    /// Serializes the whole state, for a Raft snapshot.
    fn snapshot(&self) -> Vec<u8>;

    /// Captures the state for a snapshot that raft-core then serializes a
    /// piece per loop round ([`SnapshotSource::next_chunk`]), so that a
    /// large state never stalls the loop for its whole serialization. The
    /// pieces, concatenated, must be exactly what [`Self::snapshot`] returns
    /// now, whatever is applied after this call.
    ///
    /// The default serializes the whole state here, with
    /// [`Self::snapshot`]; a state machine whose state is large should
    /// capture it cheaply instead (copy-on-write).
    fn begin_snapshot(&mut self) -> Box<dyn SnapshotSource> {
        Box::new(WholeSnapshot {
            bytes: self.snapshot(),
            sent_bytes: 0,
        })
    }

    /// Replaces the whole state with a snapshot made by [`Self::snapshot`].
    ///
    /// # Errors
    ///
    /// Returns a readable message when the bytes are not a valid snapshot;
    /// the state is then left unchanged.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;

    /// Checks, without changing anything, that [`Self::restore`] would
    /// accept `snapshot`. raft-core calls it on a snapshot from a peer
    /// before the snapshot is persisted: one that cannot be restored must
    /// never reach the disk, or the replica would fail every time it opens
    /// (a crash loop on one poisoned message).
    ///
    /// # Errors
    ///
    /// As [`Self::restore`].
    fn validate_snapshot(&self, snapshot: &[u8]) -> Result<(), String>;
}

/// A snapshot being serialized piece by piece, from a state captured by
/// [`StateMachine::begin_snapshot`]. `Send`, so that a node stays `Send`
/// (a native replica may run on its own thread).
pub trait SnapshotSource: Send {
    /// Appends the next piece of the snapshot to `out`: at least one byte
    /// while any are left, and about `max_bytes` (a record may run over).
    /// Returns `true` once the last piece is appended.
    fn next_chunk(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> bool;
}

/// A snapshot serialized whole up front, handed out in pieces.
struct WholeSnapshot {
    bytes: Vec<u8>,
    sent_bytes: usize,
}

impl SnapshotSource for WholeSnapshot {
    fn next_chunk(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> bool {
        let end = self
            .bytes
            .len()
            .min(self.sent_bytes.saturating_add(max_bytes.max(1)));
        out.extend_from_slice(&self.bytes[self.sent_bytes..end]);
        self.sent_bytes = end;
        self.sent_bytes == self.bytes.len()
    }
}
