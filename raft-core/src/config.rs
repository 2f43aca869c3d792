//! Driver configuration, with every limit explicit and validated.

use std::fmt;

/// How a [`crate::Node`] runs: timing, batching, limits and compaction.
///
/// Every field has a unit in its name (`_ticks`, `_bytes`, `_entries`,
/// `_count`). A tick is one call to [`crate::Node::tick`]; the caller picks
/// its period (100 ms is a good default for a LAN: heartbeats every 200 ms,
/// elections after 1-2 s).
///
/// Configuration is local to one replica. Values that must agree across
/// replicas (the session table bound) are fixed at bootstrap and
/// replicated, never read from here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// A leader sends heartbeats every this many ticks.
    pub heartbeat_ticks: usize,
    /// A follower that hears no leader for a random number of ticks in
    /// `election_ticks_min..election_ticks_max` starts an election.
    pub election_ticks_min: usize,
    /// Exclusive upper bound of the randomized election timeout.
    pub election_ticks_max: usize,
    /// Upper bound of entry bytes in one append message (raft-rs
    /// `max_size_per_msg`; at least one entry is always sent).
    pub max_append_bytes: u64,
    /// Appends in flight to one follower before the leader waits (raft-rs
    /// `max_inflight_msgs`).
    pub max_inflight_appends_count: usize,
    /// Bytes proposed but not yet committed before new proposals are
    /// refused (raft-rs `max_uncommitted_size`).
    pub max_uncommitted_bytes: u64,
    /// Committed entry bytes handed to the state machine per Ready
    /// (raft-rs `max_committed_size_per_ready`).
    pub max_apply_bytes_per_ready: u64,
    /// Largest command accepted by [`crate::Node::propose`].
    pub max_command_bytes: usize,
    /// Largest query accepted by [`crate::Node::read_index`].
    pub max_query_bytes: usize,
    /// Largest encoded message envelope accepted or produced, snapshots
    /// excepted. Must exceed `max_append_bytes` plus framing.
    pub max_envelope_bytes: usize,
    /// Largest encoded snapshot envelope (one `MsgSnapshot` carrying the
    /// whole state machine) accepted or produced.
    pub max_snapshot_bytes: usize,
    /// Raft messages in one envelope.
    pub max_messages_per_envelope_count: usize,
    /// Take a snapshot after this many entries were applied since the last.
    pub snapshot_interval_entries: u64,
    /// Entries kept in the log below a snapshot, so that a follower that is
    /// slightly behind catches up from the log instead of a snapshot.
    pub catch_up_entries: u64,
    /// A log segment file is closed and a new one started past this size.
    pub segment_max_bytes: u64,
    /// Snapshot bytes written per [`crate::Node::process`] call at most. An
    /// own snapshot is captured at once (the state machine's bytes) and
    /// then written, checksummed and synced a chunk per call, so that no
    /// loop round stalls for a whole snapshot.
    pub snapshot_chunk_bytes_max: usize,
    /// Snapshot bytes written before the snapshot file is synced: syncing
    /// as it goes keeps the final sync small.
    pub snapshot_unsynced_bytes_max: u64,
    /// Log entries dropped from memory per [`crate::Node::process`] call at
    /// most once a snapshot is durable (and one log segment removed).
    pub compact_entries_per_process_max_count: u64,
    /// Proposals waiting for their outcome on this node.
    pub max_pending_proposals_count: usize,
    /// Reads waiting for a ReadIndex confirmation or for apply.
    pub max_pending_reads_count: usize,
    /// A proposal, read or membership change without an outcome after this
    /// many ticks completes with [`crate::RequestError::TimedOut`].
    pub request_timeout_ticks: usize,
    /// Whether the leader sends every follower an append as soon as the
    /// commit index moves (raft-rs `!skip_bcast_commit`). Off, followers
    /// learn it from the next append or heartbeat (at most
    /// `heartbeat_ticks` later); membership changes are still broadcast.
    /// Off halves the messages per write at low load, where each
    /// message is expensive (the Raft ROM); nothing waits on a follower's
    /// commit index, since reads go through the leader.
    pub broadcast_commit: bool,
}

impl Default for Config {
    fn default() -> Self {
        const MIB: u64 = 1024 * 1024;
        Self {
            heartbeat_ticks: 2,
            election_ticks_min: 10,
            election_ticks_max: 20,
            max_append_bytes: MIB,
            max_inflight_appends_count: 256,
            max_uncommitted_bytes: 64 * MIB,
            max_apply_bytes_per_ready: 16 * MIB,
            max_command_bytes: 512 * 1024,
            max_query_bytes: 64 * 1024,
            max_envelope_bytes: 2 * MIB as usize,
            max_snapshot_bytes: 256 * MIB as usize,
            max_messages_per_envelope_count: 4096,
            snapshot_interval_entries: 10_000,
            catch_up_entries: 5_000,
            segment_max_bytes: 16 * MIB,
            // ~0.3-1 ms of checksum, copy and write natively per call.
            snapshot_chunk_bytes_max: 256 * 1024,
            snapshot_unsynced_bytes_max: MIB,
            // Dropping ~95,000 entries took 7-13 ms natively.
            compact_entries_per_process_max_count: 8_192,
            max_pending_proposals_count: 10_000,
            max_pending_reads_count: 10_000,
            request_timeout_ticks: 50,
            broadcast_commit: true,
        }
    }
}

/// Largest `snapshot_chunk_bytes_max`: a chunk is one frame, and frames
/// are bounded well below this.
pub const SNAPSHOT_CHUNK_BYTES_LIMIT: usize = 64 * 1024 * 1024;

/// Framing bytes an envelope adds around its messages, on top of
/// `max_append_bytes` (entry headers, the envelope header, heartbeats and
/// responses batched with the append).
pub const ENVELOPE_MARGIN_BYTES: usize = 64 * 1024;

/// A configuration value that cannot work, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// Why it is refused, in a sentence.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid raft-core config: {}: {}",
            self.field, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

fn refuse(field: &'static str, reason: String) -> Result<(), ConfigError> {
    Err(ConfigError { field, reason })
}

impl Config {
    /// Checks the values against each other and against raft-rs's own rules.
    ///
    /// # Errors
    ///
    /// Returns the first field that cannot work, with a readable reason.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_ticks == 0 {
            return refuse("heartbeat_ticks", "must be at least 1".into());
        }
        if self.election_ticks_min <= self.heartbeat_ticks {
            return refuse(
                "election_ticks_min",
                format!(
                    "{} must exceed heartbeat_ticks ({}), or followers time out between heartbeats",
                    self.election_ticks_min, self.heartbeat_ticks
                ),
            );
        }
        if self.election_ticks_max <= self.election_ticks_min {
            return refuse(
                "election_ticks_max",
                format!(
                    "{} must exceed election_ticks_min ({}): it is the exclusive end of the randomized timeout",
                    self.election_ticks_max, self.election_ticks_min
                ),
            );
        }
        if self.max_append_bytes == 0 {
            return refuse(
                "max_append_bytes",
                "0 means one entry per append in raft-rs; use about 1 MiB".into(),
            );
        }
        if self.max_inflight_appends_count == 0 {
            return refuse("max_inflight_appends_count", "must be at least 1".into());
        }
        if self.max_uncommitted_bytes < self.max_append_bytes {
            return refuse(
                "max_uncommitted_bytes",
                format!(
                    "{} must be at least max_append_bytes ({})",
                    self.max_uncommitted_bytes, self.max_append_bytes
                ),
            );
        }
        if self.max_apply_bytes_per_ready == 0 {
            return refuse("max_apply_bytes_per_ready", "must be positive".into());
        }
        if self.max_command_bytes == 0 || self.max_command_bytes as u64 > self.max_append_bytes {
            return refuse(
                "max_command_bytes",
                format!(
                    "{} must be positive and at most max_append_bytes ({}), so one entry fits one append",
                    self.max_command_bytes, self.max_append_bytes
                ),
            );
        }
        if self.max_query_bytes == 0 {
            return refuse("max_query_bytes", "must be positive".into());
        }
        let envelope_needed_bytes = self.max_append_bytes as usize + ENVELOPE_MARGIN_BYTES;
        if self.max_envelope_bytes < envelope_needed_bytes {
            return refuse(
                "max_envelope_bytes",
                format!(
                    "{} must be at least max_append_bytes + {} ({}), or full appends are refused",
                    self.max_envelope_bytes, ENVELOPE_MARGIN_BYTES, envelope_needed_bytes
                ),
            );
        }
        if self.max_snapshot_bytes < self.max_envelope_bytes {
            return refuse(
                "max_snapshot_bytes",
                format!(
                    "{} must be at least max_envelope_bytes ({})",
                    self.max_snapshot_bytes, self.max_envelope_bytes
                ),
            );
        }
        if self.max_messages_per_envelope_count == 0 {
            return refuse(
                "max_messages_per_envelope_count",
                "must be at least 1".into(),
            );
        }
        if self.snapshot_interval_entries == 0 {
            return refuse("snapshot_interval_entries", "must be at least 1".into());
        }
        if self.snapshot_chunk_bytes_max == 0
            || self.snapshot_chunk_bytes_max > SNAPSHOT_CHUNK_BYTES_LIMIT
        {
            return refuse(
                "snapshot_chunk_bytes_max",
                format!(
                    "{} must be 1 to {SNAPSHOT_CHUNK_BYTES_LIMIT}",
                    self.snapshot_chunk_bytes_max
                ),
            );
        }
        if self.compact_entries_per_process_max_count == 0 {
            return refuse(
                "compact_entries_per_process_max_count",
                "must be at least 1".into(),
            );
        }
        if self.segment_max_bytes < 4096 {
            return refuse(
                "segment_max_bytes",
                format!("{} is below the 4096-byte minimum", self.segment_max_bytes),
            );
        }
        if self.max_pending_proposals_count == 0 {
            return refuse("max_pending_proposals_count", "must be at least 1".into());
        }
        if self.max_pending_reads_count == 0 {
            return refuse("max_pending_reads_count", "must be at least 1".into());
        }
        if self.request_timeout_ticks < self.election_ticks_max {
            return refuse(
                "request_timeout_ticks",
                format!(
                    "{} must be at least election_ticks_max ({}), or requests time out during every election",
                    self.request_timeout_ticks, self.election_ticks_max
                ),
            );
        }
        Ok(())
    }

    /// The raft-rs configuration for replica `id`, whose state machine has
    /// durably applied up to `applied`.
    pub(crate) fn to_raft(&self, id: u64, applied: u64) -> raft::Config {
        raft::Config {
            id,
            election_tick: self.election_ticks_min,
            heartbeat_tick: self.heartbeat_ticks,
            applied,
            max_size_per_msg: self.max_append_bytes,
            max_inflight_msgs: self.max_inflight_appends_count,
            // A minority leader steps down, and followers that hear from a
            // leader ignore vote requests (Raft thesis 9.6).
            check_quorum: true,
            // A partitioned node that rejoins cannot bump everyone's term.
            pre_vote: true,
            min_election_tick: self.election_ticks_min,
            max_election_tick: self.election_ticks_max,
            // ReadIndex with a heartbeat round: no reliance on clocks.
            read_only_option: raft::ReadOnlyOption::Safe,
            skip_bcast_commit: !self.broadcast_commit,
            // Off: raft-rs 0.7 can merge new entries into an earlier empty
            // append whose index does not precede them, producing a
            // non-contiguous append (caught by the simulator: validation
            // drops it, and the follower never catches up). The driver
            // batches all of a Ready's messages to a peer into one
            // envelope anyway.
            batch_append: false,
            priority: 0,
            max_uncommitted_size: self.max_uncommitted_bytes,
            max_committed_size_per_ready: self.max_apply_bytes_per_ready,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_raft_accepts_it() {
        let config = Config::default();
        config.validate().expect("default config");
        config.to_raft(1, 0).validate().expect("raft-rs accepts it");
    }

    #[test]
    fn refusals_name_the_field() {
        let cases: Vec<(&str, Config)> = vec![
            (
                "heartbeat_ticks",
                Config {
                    heartbeat_ticks: 0,
                    ..Config::default()
                },
            ),
            (
                "election_ticks_min",
                Config {
                    election_ticks_min: 2,
                    ..Config::default()
                },
            ),
            (
                "election_ticks_max",
                Config {
                    election_ticks_max: 10,
                    ..Config::default()
                },
            ),
            (
                "max_append_bytes",
                Config {
                    max_append_bytes: 0,
                    ..Config::default()
                },
            ),
            (
                "max_uncommitted_bytes",
                Config {
                    max_uncommitted_bytes: 1,
                    ..Config::default()
                },
            ),
            (
                "max_command_bytes",
                Config {
                    max_command_bytes: 2 << 20,
                    ..Config::default()
                },
            ),
            (
                "max_envelope_bytes",
                Config {
                    max_envelope_bytes: 1 << 20,
                    ..Config::default()
                },
            ),
            (
                "request_timeout_ticks",
                Config {
                    request_timeout_ticks: 5,
                    ..Config::default()
                },
            ),
            (
                "segment_max_bytes",
                Config {
                    segment_max_bytes: 100,
                    ..Config::default()
                },
            ),
        ];
        for (field, config) in cases {
            let error = config.validate().expect_err(field);
            assert_eq!(error.field, field);
            assert!(error.to_string().contains(field), "{error}");
        }
    }
}
