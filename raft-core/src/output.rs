//! What a driver reports back: request outcomes, events and status.

use crate::error::RequestError;
use crate::membership::Membership;
use crate::storage::StorageCounters;

/// Identifies a read started with [`crate::Node::read_index`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadId(pub u64);

/// Identifies a membership change started on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangeId(pub u64);

/// One result of [`crate::Node::process`] (or of a tick's timeouts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// The outcome of a proposal made on this node. A command applies at
    /// most once per `(client_id, seq)`; `Ok` carries the state machine's
    /// result (the first one, for a retried command).
    Proposal {
        /// The proposing client.
        client_id: u64,
        /// The client's sequence number.
        seq: u64,
        /// The state machine's result, or why there is none.
        result: Result<Vec<u8>, RequestError>,
    },
    /// The outcome of a session registration made on this node with
    /// [`crate::Node::register`].
    Registered {
        /// The caller's nonce.
        nonce: u64,
        /// The new session's client id, or why there is none.
        result: Result<u64, RequestError>,
    },
    /// The outcome of a linearizable read.
    Read {
        /// The read.
        read_id: ReadId,
        /// [`crate::StateMachine::query`]'s answer, or why there is none.
        result: Result<Vec<u8>, RequestError>,
    },
    /// The outcome of a membership change proposed on this node.
    MembershipChange {
        /// The change.
        change_id: ChangeId,
        /// The membership once the change applied, or why it did not.
        result: Result<Membership, RequestError>,
    },
    /// Something that happened to the group.
    Event(Event),
}

/// A change in the group, reported by every replica that sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// This replica's view of the leader or of its own role changed.
    LeaderChanged {
        /// The leader, if one is known.
        leader_id: Option<u64>,
        /// This replica's role now.
        role: Role,
        /// The current term.
        term: u64,
    },
    /// A configuration change applied (on every replica).
    MembershipChanged(Membership),
    /// This replica is no longer a member; it may be stopped and its
    /// directory deleted.
    Removed,
    /// A snapshot from the leader replaced this replica's state.
    SnapshotInstalled {
        /// The snapshot's log index.
        index: u64,
    },
}

/// A replica's role in Raft.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Checking with a pre-vote whether it could win an election.
    PreCandidate,
    /// Running an election.
    Candidate,
    /// The leader.
    Leader,
}

impl From<raft::StateRole> for Role {
    fn from(role: raft::StateRole) -> Self {
        match role {
            raft::StateRole::Follower => Role::Follower,
            raft::StateRole::PreCandidate => Role::PreCandidate,
            raft::StateRole::Candidate => Role::Candidate,
            raft::StateRole::Leader => Role::Leader,
        }
    }
}

/// Replication progress of one peer, as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    /// The peer.
    pub id: u64,
    /// Highest log index known to be on the peer.
    pub matched: u64,
    /// Next log index to send it.
    pub next_index: u64,
    /// `probe`, `replicate` or `snapshot`.
    pub state: &'static str,
}

/// Counters of what the driver did since it opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// What storage did (fsyncs, entries persisted, ...).
    pub storage: StorageCounters,
    /// Envelopes handed to the transport.
    pub envelopes_sent_count: u64,
    /// Of those, envelopes sent by [`crate::Node::send_early`], ahead of
    /// this node's own fsync.
    pub envelopes_sent_early_count: u64,
    /// Raft messages in them.
    pub messages_sent_count: u64,
    /// Envelopes the transport refused.
    pub send_failures_count: u64,
    /// Raft messages stepped into raft-rs.
    pub messages_stepped_count: u64,
    /// Raft messages (or whole envelopes) dropped by validation.
    pub messages_dropped_count: u64,
    /// Heartbeats or appends dropped because their commit index lies beyond
    /// this replica's log: forged, or evidence that this replica lost
    /// entries it had acknowledged.
    pub commit_beyond_log_count: u64,
    /// Commands applied to the state machine.
    pub commands_applied_count: u64,
    /// Retried commands answered from the session table.
    pub commands_deduplicated_count: u64,
    /// Client sessions registered (on every replica, as they apply).
    pub sessions_registered_count: u64,
    /// Commands refused because their `(client_id, seq)` had applied with
    /// other bytes: each one is a client bug made loud.
    pub session_conflicts_count: u64,
    /// Normal entries whose payload did not decode (applied as no-ops).
    pub undecodable_entries_count: u64,
    /// Snapshots this replica took of its own state.
    pub snapshots_taken_count: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed_count: u64,
    /// Snapshot envelopes sent to followers.
    pub snapshots_sent_count: u64,
}

/// A point-in-time view of one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This replica's raft id.
    pub id: u64,
    /// The group.
    pub group_id: u128,
    /// Its role.
    pub role: Role,
    /// The current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader_id: Option<u64>,
    /// Highest committed log index it knows.
    pub commit: u64,
    /// Highest log index applied to the state machine.
    pub applied: u64,
    /// First log index still held (older ones are compacted).
    pub first_index: u64,
    /// Last log index held.
    pub last_index: u64,
    /// Index of the newest snapshot.
    pub snapshot_index: u64,
    /// The applied membership.
    pub membership: Membership,
    /// Per-peer replication progress (leader only; empty otherwise).
    pub progress: Vec<PeerProgress>,
    /// Proposals waiting for an outcome.
    pub pending_proposals_count: usize,
    /// Reads waiting for an outcome.
    pub pending_reads_count: usize,
    /// Client sessions in the replicated table.
    pub sessions_count: usize,
    /// Log segment files in use.
    pub segment_count: usize,
    /// Counters since open.
    pub counters: Counters,
}
