//! Errors: fatal node errors, request outcomes, and dropped messages.

use std::io;

use crate::config::ConfigError;

/// A failure that stops a [`crate::Node`]: it could not open, or its
/// storage failed. After a storage failure the node refuses every further
/// call with [`Error::Failed`]; drop it and reopen the directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file operation failed.
    #[error("raft-core storage: {context}: {source}")]
    Io {
        /// What was being done, with the file name.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Stored data is damaged somewhere a crash cannot explain. The node
    /// refuses to start rather than serve wrong data: restore the replica
    /// from its peers (remove it from the group and add a fresh one).
    #[error("raft-core storage is corrupt: {file} at byte {offset}: {reason}; refusing to start (replace this replica: remove it from the group and add a fresh learner)")]
    Corruption {
        /// The damaged file.
        file: String,
        /// Byte offset of the damage in the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// [`crate::Node::open`] on a directory that holds no replica.
    #[error("no raft-core replica in this directory: bootstrap a new group or join an existing one first")]
    NotInitialized,
    /// Bootstrap or join on a directory that already holds files.
    #[error("the directory already holds a raft-core replica (or other files): open it instead, or use an empty directory")]
    AlreadyInitialized,
    /// Bootstrap arguments that cannot form a group.
    #[error("invalid bootstrap: {0}")]
    InvalidBootstrap(String),
    /// raft-rs refused an operation that raft-core relies on.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The state machine refused a snapshot that passed every check.
    #[error("the state machine cannot restore a snapshot at index {index}: {reason}")]
    Restore {
        /// The snapshot's log index.
        index: u64,
        /// The state machine's message.
        reason: String,
    },
    /// An earlier error left the node unusable; reopen it from disk.
    #[error("the node failed earlier ({0}); drop it and reopen the directory")]
    Failed(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn corrupt(file: &str, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption {
            file: file.to_owned(),
            offset,
            reason: reason.into(),
        }
    }
}

/// Why a proposal, read or membership change did not (or may not) succeed.
///
/// [`RequestError::is_retryable`] says whether sending the same request
/// again, to this node or to the leader, may succeed. Proposals are safe to
/// retry with the same `(client_id, seq)`: the session table applies a
/// command at most once and answers a retry with the first result.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// This node is not the leader. `leader_id` is the leader this node
    /// knows of, if any: retry there.
    #[error("not the leader (leader: {leader_id:?})")]
    NotLeader {
        /// The current leader's raft id, if known.
        leader_id: Option<u64>,
    },
    /// raft-rs dropped the proposal: a leader transfer is in progress, or
    /// the uncommitted bytes limit is reached. Retry shortly.
    #[error("proposal dropped by raft (leader transfer or too many uncommitted bytes)")]
    Dropped,
    /// Too many requests are waiting on this node. Retry later.
    #[error("overloaded: {pending_count} requests already pending")]
    Overloaded {
        /// Requests of this kind already waiting.
        pending_count: usize,
    },
    /// The request is larger than the configured limit. Not retryable.
    #[error("request of {bytes} bytes exceeds the {max_bytes}-byte limit")]
    TooLarge {
        /// Size of the refused request.
        bytes: usize,
        /// The configured limit.
        max_bytes: usize,
    },
    /// Another entry was committed where the proposal had been appended
    /// (the leader changed). It did not apply; retry.
    #[error("superseded: another entry committed at index {index}")]
    Superseded {
        /// The log index the proposal had been appended at.
        index: u64,
    },
    /// No outcome within `request_timeout_ticks`. The proposal may still
    /// commit later: retry with the same `(client_id, seq)` to learn its
    /// result without applying it twice.
    #[error("timed out after {ticks} ticks; the outcome is unknown")]
    TimedOut {
        /// The configured timeout.
        ticks: usize,
    },
    /// Leadership changed before the read was confirmed. Retry.
    #[error("leadership lost before the read was confirmed")]
    LeadershipLost,
    /// A sequence number below the client's last applied one: that command
    /// already applied and its result is no longer cached. Not retryable.
    #[error("stale sequence {seq}: client {client_id} already applied {last_seq}")]
    StaleSequence {
        /// The client.
        client_id: u64,
        /// The refused sequence number.
        seq: u64,
        /// The client's last applied sequence number.
        last_seq: u64,
    },
    /// The client's session does not exist: it was never registered, or
    /// it expired (idle past the group's session timeout) or was evicted
    /// (more clients than the table holds). The command did not apply
    /// now; an earlier attempt of it may have. Not retryable as is:
    /// register a new session.
    #[error("client session {client_id} is unknown or expired; register a new session")]
    SessionExpired {
        /// The client.
        client_id: u64,
    },
    /// The client's last applied command had this `seq` and other bytes:
    /// two commands share one `(client_id, seq)`. Not retryable: it is a
    /// client bug (or two clients share an id), and answering with the
    /// other command's result would be a silent wrong answer.
    #[error("client {client_id} reused sequence {seq} for a different command")]
    SessionConflict {
        /// The client.
        client_id: u64,
        /// The reused sequence number.
        seq: u64,
    },
    /// A membership change that cannot apply to the current configuration
    /// (unknown node, already a member, last voter). Not retryable as is.
    #[error("membership change refused: {0}")]
    InvalidMembershipChange(String),
    /// raft-rs ignored the change because another one was still pending; it
    /// committed as an empty entry. Retry once the other change applied.
    #[error("membership change ignored: another change was still pending")]
    MembershipChangeIgnored,
    /// This node has failed or was removed from the group: retry at another
    /// replica.
    #[error("the node is stopped: {0}")]
    Stopped(String),
}

impl RequestError {
    /// Whether the same request may succeed if sent again.
    pub fn is_retryable(&self) -> bool {
        match self {
            RequestError::NotLeader { .. }
            | RequestError::Dropped
            | RequestError::Overloaded { .. }
            | RequestError::Superseded { .. }
            | RequestError::TimedOut { .. }
            | RequestError::LeadershipLost
            | RequestError::MembershipChangeIgnored
            | RequestError::Stopped(_) => true,
            RequestError::TooLarge { .. }
            | RequestError::StaleSequence { .. }
            | RequestError::SessionExpired { .. }
            | RequestError::SessionConflict { .. }
            | RequestError::InvalidMembershipChange(_) => false,
        }
    }
}

/// Why an incoming message (or a whole envelope) was dropped before raft-rs
/// saw it. Dropping is always safe: Raft tolerates lost messages.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// The envelope is larger than the limit for its kind.
    #[error("envelope of {bytes} bytes exceeds the {max_bytes}-byte limit")]
    Oversized {
        /// Envelope size.
        bytes: usize,
        /// Limit for its kind.
        max_bytes: usize,
    },
    /// The bytes do not decode as an envelope.
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// An envelope version this build does not speak.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// The envelope belongs to another Raft group.
    #[error("wrong group id")]
    WrongGroup,
    /// Addressed to another replica.
    #[error("addressed to {to}, not to this replica")]
    WrongRecipient {
        /// The addressee.
        to: u64,
    },
    /// The sender was removed from the group (or is id 0, or this
    /// replica's own id).
    #[error("sender {from} was removed from the group or is not a valid peer id")]
    RemovedSender {
        /// The claimed sender.
        from: u64,
    },
    /// A message's `from` differs from its envelope's.
    #[error("message from {from} inside an envelope from {envelope_from}")]
    SenderMismatch {
        /// The message's sender.
        from: u64,
        /// The envelope's sender.
        envelope_from: u64,
    },
    /// A message type that must never arrive from the network (local
    /// messages, or requests this driver never forwards).
    #[error("message type {0} is not accepted from peers")]
    ForbiddenType(i32),
    /// A field holds an enum value raft-rs does not know (raft-rs would
    /// panic on it).
    #[error("unknown enum value in {0}")]
    UnknownEnum(&'static str),
    /// A commit index beyond this replica's log. Either forged, or this
    /// replica lost entries it had acknowledged (a lost fsync): raft-rs
    /// would abort on it.
    #[error("commit {commit} beyond the last log index {last_index}")]
    CommitBeyondLog {
        /// The message's commit index.
        commit: u64,
        /// This replica's last log index.
        last_index: u64,
    },
    /// An append that would overwrite a committed entry with another one.
    #[error("append conflicts with committed entry {index}")]
    ConflictsWithCommitted {
        /// The conflicting index.
        index: u64,
    },
    /// Appended entries that are not contiguous or not in term order.
    #[error("malformed append: {0}")]
    MalformedAppend(&'static str),
    /// A snapshot whose metadata or data does not check out.
    #[error("bad snapshot: {0}")]
    BadSnapshot(String),
    /// The node has failed; it accepts nothing.
    #[error("the node is stopped")]
    Stopped,
}
