//! Checks on incoming messages before raft-rs sees them.
//!
//! raft-rs trusts its input: it takes `from` at its word, and several
//! fields reach `fatal!` (a panic) when implausible: a heartbeat whose
//! commit lies beyond the log, an append conflicting with a committed
//! entry, an unknown enum value. Messages arrive from the network, so every
//! such path is checked here first and the message is dropped instead.
//! Dropping is always safe in Raft; panicking is a remote kill switch.

use raft::eraftpb::{EntryType, Message, MessageType};

use crate::command::SnapshotData;
use crate::envelope::Envelope;
use crate::error::DropReason;
use crate::node::Node;
use crate::state_machine::StateMachine;
use crate::storage::dir::Dir;

/// Message types a peer may send. Everything else is local to raft-rs
/// (`MsgHup`, `MsgBeat`, ...) or a request this driver never forwards
/// between replicas (proposals, reads and transfers go to the leader's
/// API, never over the wire).
fn accepted_from_peers(msg_type: MessageType) -> bool {
    matches!(
        msg_type,
        MessageType::MsgAppend
            | MessageType::MsgAppendResponse
            | MessageType::MsgRequestVote
            | MessageType::MsgRequestVoteResponse
            | MessageType::MsgRequestPreVote
            | MessageType::MsgRequestPreVoteResponse
            | MessageType::MsgSnapshot
            | MessageType::MsgHeartbeat
            | MessageType::MsgHeartbeatResponse
            | MessageType::MsgTimeoutNow
    )
}

impl<S: StateMachine, D: Dir> Node<S, D> {
    pub(crate) fn check_envelope(&self, envelope: &Envelope) -> Result<(), DropReason> {
        if envelope.group_id != self.group_id {
            return Err(DropReason::WrongGroup);
        }
        if envelope.to != self.id {
            return Err(DropReason::WrongRecipient { to: envelope.to });
        }
        let from = envelope.from;
        if from == 0 || from == self.id || self.removed_ids.contains(&from) {
            return Err(DropReason::RemovedSender { from });
        }
        // A sender missing from this replica's configuration is still
        // accepted: a replica that lags behind a membership change does not
        // know the new members yet, and refusing the new leader would leave
        // it behind forever (found by the simulator with 5 nodes). Only ids
        // removed from the group are refused. Who may use an id is the
        // transport's check (see `Transport`); raft-rs itself drops
        // responses from peers it does not track.
        Ok(())
    }

    pub(crate) fn check_message(
        &self,
        envelope_from: u64,
        msg: &Message,
    ) -> Result<(), DropReason> {
        if msg.from != envelope_from {
            return Err(DropReason::SenderMismatch {
                from: msg.from,
                envelope_from,
            });
        }
        if msg.to != self.id {
            return Err(DropReason::WrongRecipient { to: msg.to });
        }
        let msg_type =
            MessageType::from_i32(msg.msg_type).ok_or(DropReason::UnknownEnum("message type"))?;
        if !accepted_from_peers(msg_type) {
            return Err(DropReason::ForbiddenType(msg.msg_type));
        }
        if msg
            .entries
            .iter()
            .any(|e| EntryType::from_i32(e.entry_type).is_none())
        {
            return Err(DropReason::UnknownEnum("entry type"));
        }
        let log = &self.raw.raft.raft_log;
        let last_index = log.last_index();
        match msg_type {
            MessageType::MsgHeartbeat if msg.commit > last_index => {
                Err(DropReason::CommitBeyondLog {
                    commit: msg.commit,
                    last_index,
                })
            }
            MessageType::MsgAppend => self.check_append(msg),
            MessageType::MsgAppendResponse if !msg.reject && msg.index > last_index => Err(
                DropReason::MalformedAppend("acknowledges entries beyond the leader's log"),
            ),
            MessageType::MsgSnapshot => self.check_snapshot(msg),
            _ => Ok(()),
        }
    }

    fn check_append(&self, msg: &Message) -> Result<(), DropReason> {
        for (offset, entry) in msg.entries.iter().enumerate() {
            if entry.index != msg.index + 1 + offset as u64 {
                return Err(DropReason::MalformedAppend(
                    "entries are not contiguous after the message index",
                ));
            }
            if entry.term > msg.term {
                return Err(DropReason::MalformedAppend(
                    "an entry's term exceeds the message term",
                ));
            }
        }
        if msg.entries.windows(2).any(|w| w[0].term > w[1].term)
            || msg.entries.first().is_some_and(|e| e.term < msg.log_term)
        {
            return Err(DropReason::MalformedAppend("entry terms decrease"));
        }
        if msg.log_term > msg.term {
            return Err(DropReason::MalformedAppend(
                "log term exceeds the message term",
            ));
        }
        let log = &self.raw.raft.raft_log;
        let committed = log.committed;
        if msg.index < committed {
            // raft-rs answers these with its commit index and looks no
            // further.
            return Ok(());
        }
        // Terms only grow along a log, so a leader whose entry at
        // `msg.index >= committed` has a lower term than ours at `committed`
        // is impossible; raft-rs's conflict search would run below the
        // compacted log and abort.
        let committed_term = log.term(committed).unwrap_or(0);
        if msg.log_term < committed_term {
            return Err(DropReason::ConflictsWithCommitted { index: committed });
        }
        // Entries start above `msg.index >= committed`, so raft-rs's other
        // abort (an append overwriting a committed entry) cannot trigger.
        Ok(())
    }

    fn check_snapshot(&self, msg: &Message) -> Result<(), DropReason> {
        let snapshot = msg
            .snapshot
            .as_ref()
            .ok_or_else(|| DropReason::BadSnapshot("no snapshot".into()))?;
        let meta = snapshot
            .metadata
            .as_ref()
            .ok_or_else(|| DropReason::BadSnapshot("no metadata".into()))?;
        if meta.index == 0 || meta.term == 0 || meta.term > msg.term {
            return Err(DropReason::BadSnapshot(format!(
                "implausible index {} / term {}",
                meta.index, meta.term
            )));
        }
        let conf = meta
            .conf_state
            .as_ref()
            .ok_or_else(|| DropReason::BadSnapshot("no configuration".into()))?;
        if conf.voters.is_empty() {
            return Err(DropReason::BadSnapshot(
                "configuration without voters".into(),
            ));
        }
        let data = SnapshotData::decode(&snapshot.data)
            .ok_or_else(|| DropReason::BadSnapshot("undecodable snapshot data".into()))?;
        if data.group_id != self.group_id {
            return Err(DropReason::BadSnapshot("snapshot of another group".into()));
        }
        self.state_machine
            .validate_snapshot(&data.state)
            .map_err(|reason| DropReason::BadSnapshot(format!("state machine: {reason}")))
    }
}
