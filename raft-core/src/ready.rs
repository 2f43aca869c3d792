//! Handling a raft-rs Ready: persist, send, apply, in the order Raft's
//! safety needs (raft-rs `src/lib.rs`, and the Raft thesis):
//!
//! 1. A leader's messages may leave before its own write (Raft thesis
//!    10.2.1: the leader appends in parallel with its followers).
//! 2. A snapshot from the leader, new entries and the hard state are written
//!    as one frame and synced.
//! 3. Only then do the "persisted" messages leave (votes, append responses):
//!    an acknowledgement must never outrun the data it acknowledges.
//! 4. Committed entries are applied. They come from the log persisted by an
//!    earlier Ready, and the state machine's applied index is durable only
//!    through snapshots, whose index never exceeds a persisted commit.
//! 5. `advance_append`, then the LightReady: commit index, messages and
//!    more committed entries, then `advance_apply_to`.

use std::collections::BTreeMap;

use prost::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeTransition, ConfChangeType, ConfChangeV2, Entry, EntryType, Message,
    Snapshot, SnapshotMetadata,
};
use raft::{SnapshotStatus, StateRole};

use crate::command::{
    patch_state_len, ChangeContext, CommandEntry, RegisterEntry, SnapshotData,
    STATE_LEN_PLACEHOLDER_BYTES,
};
use crate::envelope::{pack, EnvelopeKind};
use crate::error::{Error, RequestError};
use crate::node::{Node, ReadBatch};
use crate::output::{Event, Output, Role};
use crate::session::{command_digest, SessionCheck, Sessions};
use crate::state_machine::{ApplyContext, StateMachine};
use crate::storage::dir::Dir;
use crate::transport::Transport;

/// Readies handled per [`Node::process`] call at most; work left over is
/// picked up by the next call (each Ready is bounded by raft-rs limits).
const READY_ROUNDS_MAX_COUNT: usize = 16;

/// What to tell raft-rs about sends, once the Ready is advanced (raft-rs
/// must not be stepped between `ready()` and `advance`).
pub(crate) enum SendReport {
    Unreachable(u64),
    Snapshot(u64, SnapshotStatus),
}

/// A Ready taken from raft-rs whose early messages were sent; the rest of
/// it (persist, acknowledge, apply) waits for [`Node::process`].
pub(crate) struct Staged {
    ready: raft::Ready,
    reports: Vec<SendReport>,
}

impl<S: StateMachine, D: Dir> Node<S, D> {
    /// The first half of a round, for a caller whose sends leave only when
    /// it yields to its event loop (the guest's capnp transport): takes the
    /// next Ready, sends the messages that may leave before this node's own
    /// write (a leader's appends to its followers), and stops there. The
    /// caller lets those sends leave, then calls [`Node::process`], which
    /// persists the staged Ready and goes on as usual. The followers then
    /// write the entries while the leader writes them: a commit costs one
    /// fsync and one round trip, not two fsyncs in series.
    ///
    /// Returns how many envelopes went out early (0: nothing gains from a
    /// yield; call `process` at once). Calling it again before `process`
    /// does nothing.
    ///
    /// Until the next `process`, the caller must not call [`Node::tick`],
    /// [`Node::step`], [`Node::propose`], [`Node::register`], a membership
    /// change or [`Node::transfer_leader`] (they panic): raft-rs must not
    /// be stepped between taking a Ready and advancing it. Dropping the
    /// node meanwhile (a crash) is safe: nothing of the staged Ready has
    /// been acknowledged by this node.
    ///
    /// # Errors
    ///
    /// As [`Node::process`]: the node is then failed.
    pub fn send_early(&mut self, transport: &mut impl Transport) -> Result<usize, Error> {
        if let Some(reason) = &self.failed {
            return Err(Error::Failed(reason.clone()));
        }
        if self.staged.is_some() {
            return Ok(0);
        }
        self.issue_reads();
        if !self.raw.has_ready() {
            return Ok(0);
        }
        let sent_before = self.counters.envelopes_sent_count;
        let staged = self.stage_ready(transport);
        self.staged = Some(staged);
        let sent = self.counters.envelopes_sent_count - sent_before;
        self.counters.envelopes_sent_early_count += sent;
        Ok(usize::try_from(sent).unwrap_or(usize::MAX))
    }

    /// Does all pending work: issues queued reads, handles Readies (persist
    /// with one write and one `sync_data` each, send one batch per peer,
    /// apply), does one bounded piece of background work
    /// ([`Node::background_step`]: a snapshot spreads over many calls), and
    /// returns the outputs produced since the last call (including
    /// [`Node::tick`] timeouts). It is [`Node::process_messages`] and then
    /// [`Node::background_step`].
    ///
    /// Call it after every batch of inputs (ticks, steps, proposals, reads).
    /// Everything proposed since the last call goes into the same Ready, so
    /// it shares one fsync: that is the group commit.
    ///
    /// # Errors
    ///
    /// A storage failure ([`Error::Io`]), an unrestorable snapshot
    /// ([`Error::Restore`]), or a raft-rs error. The node is then failed:
    /// every later call returns [`Error::Failed`] or
    /// [`RequestError::Stopped`]; drop it and reopen the directory (what
    /// was acknowledged is durable, what was not may be lost, as Raft
    /// allows).
    pub fn process(&mut self, transport: &mut impl Transport) -> Result<Vec<Output>, Error> {
        let outputs = self.process_messages(transport)?;
        self.background_step()?;
        Ok(outputs)
    }

    /// [`Node::process`] without its background work: issues queued reads
    /// and handles Readies (persist, send, apply), and returns the outputs.
    /// A caller whose sends leave only once it yields (an async transport)
    /// calls it, lets the sends leave, and only then calls
    /// [`Node::background_step`], so that a snapshot chunk never delays the
    /// acknowledgements, appends and answers of the same round.
    ///
    /// # Errors
    ///
    /// As [`Node::process`].
    pub fn process_messages(
        &mut self,
        transport: &mut impl Transport,
    ) -> Result<Vec<Output>, Error> {
        if let Some(reason) = &self.failed {
            return Err(Error::Failed(reason.clone()));
        }
        if let Err(error) = self.process_inner(transport) {
            self.failed = Some(error.to_string());
            return Err(error);
        }
        Ok(self.outputs.drain(..).collect())
    }

    /// One bounded piece of background work: capturing a snapshot when one
    /// is due, writing the next chunk of about
    /// `Config::snapshot_chunk_bytes_max` of the one in progress or
    /// installing it once durable, and a piece of compaction below it.
    /// [`Node::has_ready`] stays true while any is left, so a caller that
    /// calls [`Node::process_messages`] must call this too, after every
    /// `process_messages` or at least while `has_ready` is true.
    ///
    /// # Errors
    ///
    /// As [`Node::process`]; the node is then failed.
    ///
    /// # Panics
    ///
    /// Between [`Node::send_early`] and `process_messages`, like
    /// [`Node::step`] (a bug in the caller's loop).
    pub fn background_step(&mut self) -> Result<(), Error> {
        self.assert_not_staged("background_step");
        if let Some(reason) = &self.failed {
            return Err(Error::Failed(reason.clone()));
        }
        if let Err(error) = self.snapshot_step() {
            self.failed = Some(error.to_string());
            return Err(error);
        }
        Ok(())
    }

    fn process_inner(&mut self, transport: &mut impl Transport) -> Result<(), Error> {
        if let Some(staged) = self.staged.take() {
            self.finish_ready(staged, transport)?;
        }
        self.issue_reads();
        for _ in 0..READY_ROUNDS_MAX_COUNT {
            if !self.raw.has_ready() {
                break;
            }
            self.handle_ready(transport)?;
        }
        Ok(())
    }

    /// Whether there is work for [`Node::process`] (a Ready, staged or not,
    /// or reads to issue). A caller may skip `process` when this is false.
    pub fn has_ready(&self) -> bool {
        self.staged.is_some()
            || self.raw.has_ready()
            || !self.reads_queued.is_empty()
            || !self.outputs.is_empty()
            || self.raw.store().background_work_pending()
    }

    /// The index of the snapshot this node is writing, if one is in
    /// progress (it spreads over [`Node::process`] calls; the previous
    /// snapshot serves until it is durable).
    pub fn snapshot_in_progress(&self) -> Option<u64> {
        self.raw.store().own_snapshot_in_progress()
    }

    fn handle_ready(&mut self, transport: &mut impl Transport) -> Result<(), Error> {
        let staged = self.stage_ready(transport);
        self.finish_ready(staged, transport)
    }

    /// Takes a Ready and sends what may leave before the node's own write.
    fn stage_ready(&mut self, transport: &mut impl Transport) -> Staged {
        let mut reports = Vec::new();
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.ss() {
            let (leader_id, role) = (ss.leader_id, ss.raft_state);
            self.on_soft_state(leader_id, role);
        }
        // 1. A leader's appends go out before its own fsync.
        self.send(transport, rd.take_messages(), &mut reports);
        Staged { ready: rd, reports }
    }

    fn finish_ready(
        &mut self,
        staged: Staged,
        transport: &mut impl Transport,
    ) -> Result<(), Error> {
        let Staged {
            ready: mut rd,
            mut reports,
        } = staged;
        // 2. Persist snapshot, entries and hard state: one frame, one sync.
        let snapshot = (!rd.snapshot().is_empty()).then(|| rd.snapshot().clone());
        self.raw.mut_store().persist_ready(
            snapshot.as_ref(),
            rd.entries(),
            rd.hs(),
            rd.must_sync(),
        )?;
        if let Some(snapshot) = snapshot {
            self.install_snapshot(&snapshot)?;
        }
        // 3. Acknowledgements only once durable.
        self.send(transport, rd.take_persisted_messages(), &mut reports);
        for read_state in rd.take_read_states() {
            self.on_read_state(&read_state.request_ctx, read_state.index);
        }
        let committed = rd.take_committed_entries();
        // 4. Tell raft-rs the Ready is persisted before applying: applying a
        // change that removes the leader itself would otherwise leave
        // raft-rs without the leader's own progress when it records the
        // leader's persisted entries (an unwrap in raft-rs 0.7).
        let mut light = self.raw.advance_append(rd);
        // 5. Apply what committed (already durable in the log), then the
        // LightReady.
        self.apply_entries(committed)?;
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
        }
        self.send(transport, light.take_messages(), &mut reports);
        self.apply_entries(light.take_committed_entries())?;
        self.raw.advance_apply_to(self.applied);
        self.serve_reads();
        for report in reports {
            match report {
                SendReport::Unreachable(to) => self.raw.report_unreachable(to),
                SendReport::Snapshot(to, status) => self.raw.report_snapshot(to, status),
            }
        }
        self.randomize_election_timeout();
        Ok(())
    }

    fn on_soft_state(&mut self, leader_id: u64, role: StateRole) {
        let was_leader = self.role == Role::Leader;
        self.leader_id = (leader_id != 0).then_some(leader_id);
        self.role = role.into();
        if was_leader && self.role != Role::Leader {
            // raft-rs forgets unconfirmed ReadIndex requests when it steps
            // down; reads already confirmed stay valid and are still served.
            let lost = RequestError::LeadershipLost;
            for read in self.reads_queued.drain(..) {
                self.outputs.push_back(Output::Read {
                    read_id: read.read_id,
                    result: Err(lost.clone()),
                });
            }
            let unconfirmed: Vec<u64> = self
                .read_batches
                .iter()
                .filter(|(_, b)| b.index.is_none())
                .map(|(id, _)| *id)
                .collect();
            for id in unconfirmed {
                if let Some(batch) = self.read_batches.remove(&id) {
                    for read in batch.reads {
                        self.outputs.push_back(Output::Read {
                            read_id: read.read_id,
                            result: Err(lost.clone()),
                        });
                    }
                }
            }
        }
        self.outputs.push_back(Output::Event(Event::LeaderChanged {
            leader_id: self.leader_id,
            role: self.role,
            term: self.raw.raft.term,
        }));
    }

    /// Sends `msgs` as one envelope per peer (more only when a snapshot or
    /// the size limit forces a split), in the order raft-rs produced them.
    fn send(
        &mut self,
        transport: &mut impl Transport,
        msgs: Vec<Message>,
        reports: &mut Vec<SendReport>,
    ) {
        if msgs.is_empty() {
            return;
        }
        let mut by_peer: BTreeMap<u64, Vec<Message>> = BTreeMap::new();
        for msg in msgs {
            by_peer.entry(msg.to).or_default().push(msg);
        }
        for (to, msgs) in by_peer {
            for envelope in pack(self.group_id, self.id, to, msgs, &self.limits) {
                let kind = envelope.kind();
                let msg_count = envelope.msgs.len() as u64;
                let bytes = envelope.encode();
                let is_snapshot = kind == EnvelopeKind::Snapshot;
                if bytes.len() > self.limits.max_bytes(kind) {
                    // A state machine larger than max_snapshot_bytes cannot
                    // be shipped; the follower stays behind until it is.
                    self.counters.send_failures_count += 1;
                    if is_snapshot {
                        reports.push(SendReport::Snapshot(to, SnapshotStatus::Failure));
                    }
                    continue;
                }
                match transport.send(to, bytes) {
                    Ok(()) => {
                        self.counters.envelopes_sent_count += 1;
                        self.counters.messages_sent_count += msg_count;
                        if is_snapshot {
                            // The transport took it; raft-rs then probes the
                            // follower and sends the snapshot again if it
                            // never arrived, instead of waiting forever.
                            self.counters.snapshots_sent_count += 1;
                            reports.push(SendReport::Snapshot(to, SnapshotStatus::Finish));
                        }
                    }
                    Err(_) => {
                        self.counters.send_failures_count += 1;
                        reports.push(SendReport::Unreachable(to));
                        if is_snapshot {
                            reports.push(SendReport::Snapshot(to, SnapshotStatus::Failure));
                        }
                    }
                }
            }
        }
    }

    /// Replaces the state machine, sessions and metadata with a snapshot
    /// received from the leader (already durable).
    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), Error> {
        let index = snapshot.get_metadata().index;
        let data = SnapshotData::decode(&snapshot.data).ok_or_else(|| Error::Restore {
            index,
            reason: "undecodable driver snapshot data".into(),
        })?;
        self.state_machine
            .restore(&data.state)
            .map_err(|reason| Error::Restore { index, reason })?;
        self.sessions = Sessions::from_entries(
            data.max_sessions_count,
            data.session_timeout_ms,
            data.sessions,
        );
        self.metadata = data.metadata.into_iter().collect();
        self.removed_ids = data.removed_ids.into_iter().collect();
        self.last_time_ms = data.last_time_ms;
        self.applied = index;
        self.last_snapshot_index = index;
        self.counters.snapshots_installed_count += 1;
        // Requests appended at or below the snapshot may or may not be in
        // it; their outcome is unknown here. A retry of a proposal with the
        // same (client_id, seq) finds its result in the session table.
        let covered: Vec<u64> = self.proposals.range(..=index).map(|(i, _)| *i).collect();
        for i in covered {
            if let Some(p) = self.proposals.remove(&i) {
                self.proposals_by_key.remove(&(p.client_id, p.seq));
                let ticks = self.config.request_timeout_ticks;
                self.outputs
                    .push_back(p.outcome(Err(RequestError::TimedOut { ticks })));
            }
        }
        let covered: Vec<u64> = self.changes.range(..=index).map(|(i, _)| *i).collect();
        for i in covered {
            if let Some(c) = self.changes.remove(&i) {
                let ticks = self.config.request_timeout_ticks;
                self.outputs.push_back(Output::MembershipChange {
                    change_id: c.change_id,
                    result: Err(RequestError::TimedOut { ticks }),
                });
            }
        }
        self.outputs
            .push_back(Output::Event(Event::SnapshotInstalled { index }));
        let membership = self.members();
        if !membership.contains(self.id) {
            self.removed = true;
            self.outputs.push_back(Output::Event(Event::Removed));
        }
        self.outputs
            .push_back(Output::Event(Event::MembershipChanged(membership)));
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), Error> {
        for entry in entries {
            if entry.index <= self.applied {
                continue;
            }
            assert_eq!(
                entry.index,
                self.applied + 1,
                "raft-rs hands committed entries in order, without gaps"
            );
            match EntryType::from_i32(entry.entry_type) {
                Some(EntryType::EntryNormal) => self.apply_normal(&entry),
                Some(EntryType::EntryConfChange) => {
                    // raft-core proposes only V2 changes; a V1 entry from
                    // another implementation is applied through its V2 form.
                    let change = ConfChange::decode(entry.data.as_slice()).ok().map(|c| {
                        let v2 = raft::eraftpb::ConfChangeSingle {
                            change_type: c.change_type,
                            node_id: c.node_id,
                        };
                        ConfChangeV2 {
                            changes: vec![v2],
                            context: c.context,
                            ..Default::default()
                        }
                    });
                    self.apply_change(&entry, change)?;
                }
                Some(EntryType::EntryConfChangeV2) => {
                    let change = ConfChangeV2::decode(entry.data.as_slice()).ok();
                    self.apply_change(&entry, change)?;
                }
                None => {
                    self.counters.undecodable_entries_count += 1;
                    self.supersede_at(&entry);
                }
            }
            self.applied = entry.index;
        }
        Ok(())
    }

    /// Fails the requests pending at `entry`'s index, whose slot another
    /// entry took (or that raft-rs emptied).
    fn supersede_at(&mut self, entry: &Entry) {
        if let Some(p) = self.proposals.remove(&entry.index) {
            self.proposals_by_key.remove(&(p.client_id, p.seq));
            self.outputs
                .push_back(p.outcome(Err(RequestError::Superseded { index: entry.index })));
        }
        if let Some(c) = self.changes.remove(&entry.index) {
            let error = if c.term == entry.term {
                // Same slot, same term: raft-rs itself emptied our change
                // because another one was still pending.
                RequestError::MembershipChangeIgnored
            } else {
                RequestError::Superseded { index: entry.index }
            };
            self.outputs.push_back(Output::MembershipChange {
                change_id: c.change_id,
                result: Err(error),
            });
        }
    }

    fn apply_normal(&mut self, entry: &Entry) {
        if entry.data.is_empty() {
            // A new leader's empty entry, or a change raft-rs emptied.
            self.supersede_at(entry);
            return;
        }
        let Some(command) = CommandEntry::decode(&entry.data) else {
            if let Some(register) = RegisterEntry::decode(&entry.data) {
                self.apply_register(entry, &register);
                return;
            }
            // Deterministic on every replica: all skip the same entry.
            self.counters.undecodable_entries_count += 1;
            self.supersede_at(entry);
            return;
        };
        let time_ms = self.advance_log_time(command.time_ms);
        let digest = command_digest(&command.command);
        let result = match self.sessions.check(command.client_id, command.seq, digest) {
            SessionCheck::Apply => {
                let ctx = ApplyContext {
                    index: entry.index,
                    term: entry.term,
                    time_ms,
                };
                let result = self.state_machine.apply(&ctx, &command.command);
                self.counters.commands_applied_count += 1;
                self.sessions.record(
                    command.client_id,
                    command.seq,
                    entry.index,
                    time_ms,
                    digest,
                    result.clone(),
                );
                Ok(result)
            }
            SessionCheck::Duplicate(result) => {
                self.counters.commands_deduplicated_count += 1;
                Ok(result)
            }
            SessionCheck::Stale { last_seq } => Err(RequestError::StaleSequence {
                client_id: command.client_id,
                seq: command.seq,
                last_seq,
            }),
            SessionCheck::Conflict => {
                self.counters.session_conflicts_count += 1;
                Err(RequestError::SessionConflict {
                    client_id: command.client_id,
                    seq: command.seq,
                })
            }
            SessionCheck::Expired => Err(RequestError::SessionExpired {
                client_id: command.client_id,
            }),
        };
        let ours = self.proposals.get(&entry.index).is_some_and(|p| {
            p.term == entry.term && p.client_id == command.client_id && p.seq == command.seq
        });
        if !ours {
            self.supersede_at(entry);
        }
        // The outcome goes to whoever waits for this (client_id, seq) here,
        // even if it was proposed at another index (a retry that raced).
        let key = (command.client_id, command.seq);
        if command.client_id != 0 || ours {
            let index = if ours {
                Some(entry.index)
            } else {
                self.proposals_by_key.get(&key).copied()
            };
            if let Some(index) = index {
                if let Some(p) = self.proposals.remove(&index) {
                    self.proposals_by_key.remove(&(p.client_id, p.seq));
                    self.outputs.push_back(p.outcome(result));
                }
            }
        }
    }

    /// Log time at an entry stamped `time_ms`: never decreases along the
    /// log. Sessions idle past their timeout at that time expire first.
    fn advance_log_time(&mut self, time_ms: u64) -> u64 {
        let time_ms = self.last_time_ms.max(time_ms);
        self.last_time_ms = time_ms;
        self.sessions.expire(time_ms);
        time_ms
    }

    fn apply_register(&mut self, entry: &Entry, register: &RegisterEntry) {
        let time_ms = self.advance_log_time(register.time_ms);
        let client_id = self.sessions.register(entry.index, time_ms);
        self.counters.sessions_registered_count += 1;
        let ours = self
            .proposals
            .get(&entry.index)
            .is_some_and(|p| p.term == entry.term && p.register);
        if !ours {
            self.supersede_at(entry);
            return;
        }
        if let Some(p) = self.proposals.remove(&entry.index) {
            self.outputs
                .push_back(p.outcome(Ok(client_id.to_le_bytes().to_vec())));
        }
    }

    fn apply_change(&mut self, entry: &Entry, change: Option<ConfChangeV2>) -> Result<(), Error> {
        let pending = self
            .changes
            .get(&entry.index)
            .filter(|c| c.term == entry.term)
            .map(|c| c.change_id);
        let members_before = self.members().ids();
        let outcome = match change.filter(valid_change) {
            None => Err(RequestError::InvalidMembershipChange(
                "undecodable membership change entry".into(),
            )),
            Some(change) => match self.raw.apply_conf_change(&change) {
                Ok(_) => {
                    if let Some(context) = ChangeContext::decode(&change.context) {
                        for (id, metadata) in context.metadata {
                            self.metadata.insert(id, metadata);
                        }
                    }
                    // Metadata lives as long as its node is a member; a
                    // node that left is refused from now on.
                    let member_ids = self.members().ids();
                    self.metadata.retain(|id, _| member_ids.contains(id));
                    for id in members_before.iter().filter(|id| !member_ids.contains(id)) {
                        self.removed_ids.insert(*id);
                    }
                    let membership = self.members();
                    self.outputs
                        .push_back(Output::Event(Event::MembershipChanged(membership.clone())));
                    if !membership.is_voter(self.id) && self.raw.raft.state == StateRole::Leader {
                        // raft-rs 0.7 keeps a removed leader leading with no
                        // progress of its own, and aborts the next time it
                        // persists an entry. Step down: the remaining voters
                        // elect a leader after an election timeout.
                        let term = self.raw.raft.term;
                        self.raw.raft.become_follower(term, raft::INVALID_ID);
                    }
                    if !membership.contains(self.id) && !self.removed {
                        self.removed = true;
                        self.outputs.push_back(Output::Event(Event::Removed));
                    }
                    Ok(membership)
                }
                // Deterministic on every replica (same configuration, same
                // change): all refuse it alike.
                Err(error) => Err(RequestError::InvalidMembershipChange(error.to_string())),
            },
        };
        match pending {
            Some(change_id) => {
                self.changes.remove(&entry.index);
                self.outputs.push_back(Output::MembershipChange {
                    change_id,
                    result: outcome,
                });
            }
            None => self.supersede_at(entry),
        }
        Ok(())
    }

    /// Issues the reads queued since the last call as one ReadIndex
    /// request, once this leader has committed an entry in its term
    /// (raft-rs drops ReadIndex requests silently before that).
    fn issue_reads(&mut self) {
        if self.reads_queued.is_empty() {
            return;
        }
        if self.raw.raft.state != StateRole::Leader {
            let leader_id = self.leader_id;
            for read in self.reads_queued.drain(..) {
                self.outputs.push_back(Output::Read {
                    read_id: read.read_id,
                    result: Err(RequestError::NotLeader { leader_id }),
                });
            }
            return;
        }
        if !self.raw.raft.commit_to_current_term() {
            return;
        }
        let batch_id = self.next_read_batch;
        self.next_read_batch += 1;
        let reads = std::mem::take(&mut self.reads_queued);
        self.read_batches
            .insert(batch_id, ReadBatch { reads, index: None });
        self.raw.read_index(batch_id.to_le_bytes().to_vec());
    }

    fn on_read_state(&mut self, ctx: &[u8], index: u64) {
        let Ok(bytes) = <[u8; 8]>::try_from(ctx) else {
            return;
        };
        if let Some(batch) = self.read_batches.get_mut(&u64::from_le_bytes(bytes)) {
            batch.index = Some(index);
        }
    }

    /// Answers the confirmed reads whose index is applied.
    fn serve_reads(&mut self) {
        let ready: Vec<u64> = self
            .read_batches
            .iter()
            .filter(|(_, b)| b.index.is_some_and(|i| i <= self.applied))
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            if let Some(batch) = self.read_batches.remove(&id) {
                for read in batch.reads {
                    let result = Ok(self.state_machine.query(&read.query));
                    self.outputs.push_back(Output::Read {
                        read_id: read.read_id,
                        result,
                    });
                }
            }
        }
    }

    /// One bounded piece of snapshot work: starts a snapshot when enough
    /// entries applied since the last one or when a follower needs a newer
    /// one, writes the next chunk of the one in progress (installing it once
    /// durable), and compacts a bounded part of the log below it.
    fn snapshot_step(&mut self) -> Result<(), Error> {
        if self.raw.store().own_snapshot_in_progress().is_none() {
            // Finished, or abandoned because a snapshot from the leader
            // replaced the log.
            self.snapshot_source = None;
            self.maybe_begin_snapshot()?;
        }
        if let Some(source) = self.snapshot_source.as_mut() {
            if let Some(data) = self.raw.mut_store().own_snapshot_data_mut() {
                if source.next_chunk(data, self.config.snapshot_chunk_bytes_max) {
                    let at = self.snapshot_state_start - STATE_LEN_PLACEHOLDER_BYTES;
                    let state_len = (data.len() - self.snapshot_state_start) as u64;
                    patch_state_len(&mut data[at..self.snapshot_state_start], state_len)
                        .ok_or_else(|| {
                            Error::Failed(format!("a state of {state_len} bytes is too large"))
                        })?;
                    self.raw.mut_store().complete_own_snapshot();
                    self.snapshot_source = None;
                }
            }
        }
        let step = self
            .raw
            .mut_store()
            .own_snapshot_step(self.config.snapshot_unsynced_bytes_max)?;
        if let Some(index) = step.installed_index {
            self.last_snapshot_index = self.last_snapshot_index.max(index);
            self.counters.snapshots_taken_count += 1;
        }
        self.raw
            .mut_store()
            .compaction_step(self.config.compact_entries_per_process_max_count)
    }

    /// Whether the applied index has crossed one of this node's snapshot
    /// points since its last snapshot. The points are every
    /// `snapshot_interval_entries`, shifted by the node's rank among the
    /// voters times the interval over their count, so that the replicas of
    /// a group take their snapshots one after the other, not all at once:
    /// a quorum then always has members that are not writing one, and
    /// replicas that share a disk do not write theirs together (three at
    /// once made every round of the snapshot five times longer,
    /// docs/raft-core.md).
    fn snapshot_due(&self) -> bool {
        let interval = self.config.snapshot_interval_entries;
        if self.applied < self.last_snapshot_index.saturating_add(interval / 2) {
            // At least half an interval between two: the first point after
            // a snapshot from the leader, or after the bootstrap's, may be
            // just past it. (And no voters to rank on most calls.)
            return false;
        }
        let conf = self.raw.raft.prs().conf();
        let voters = conf.voters().ids();
        let count = voters.len() as u64;
        let rank = voters.iter().filter(|id| *id < self.id).count() as u64;
        let phase = if count == 0 {
            0
        } else {
            // Below `interval`, so it fits.
            u64::try_from(
                u128::from(interval) * u128::from(rank.min(count - 1)) / u128::from(count),
            )
            .unwrap_or(0)
        };
        // Point k is at 1 + k * interval + phase (a group's log starts after
        // its first snapshot, at index 1); `slot` counts the points at or
        // below an index (phase < interval, so no underflow).
        let slot = |index: u64| {
            (u128::from(index.saturating_sub(1)) + u128::from(interval - phase))
                / u128::from(interval)
        };
        slot(self.applied) > slot(self.last_snapshot_index)
    }

    /// Captures the state at the applied index when a snapshot is due: the
    /// state machine's bytes and the driver's part (sessions, metadata,
    /// removed ids, log time), all at once so that they agree. Writing them
    /// to disk is left to later [`Node::snapshot_step`]s.
    fn maybe_begin_snapshot(&mut self) -> Result<(), Error> {
        let due = self.snapshot_due();
        let wanted = self.raw.store().snapshot_wanted();
        if !(due || wanted) || self.applied <= self.last_snapshot_index {
            return Ok(());
        }
        let index = self.applied;
        let term = self.raw.store().entry(index).map(|e| e.term).or_else(|| {
            let snapshot = self.raw.store().newest_snapshot().get_metadata();
            (snapshot.index == index).then_some(snapshot.term)
        });
        let Some(term) = term else {
            return Err(Error::Failed(format!("no term for applied index {index}")));
        };
        let data = SnapshotData {
            group_id: self.group_id,
            max_sessions_count: self.sessions.max_sessions_count(),
            session_timeout_ms: self.sessions.session_timeout_ms(),
            last_time_ms: self.last_time_ms,
            metadata: self
                .metadata
                .iter()
                .map(|(id, m)| (*id, m.clone()))
                .collect(),
            removed_ids: self.removed_ids.iter().copied().collect(),
            sessions: self.sessions.to_entries(),
            state: Vec::new(),
        };
        // The configuration as of the applied index: conf changes are
        // applied to raft-rs as their entries apply.
        let conf_state = self.raw.raft.prs().conf().to_conf_state();
        let snapshot = Snapshot {
            data: data.encode_prefix(),
            metadata: Some(SnapshotMetadata {
                conf_state: Some(conf_state),
                index,
                term,
            }),
        };
        self.snapshot_state_start = snapshot.data.len();
        self.snapshot_source = Some(self.state_machine.begin_snapshot());
        let compact_index = index.saturating_sub(self.config.catch_up_entries);
        self.raw
            .mut_store()
            .begin_own_snapshot(snapshot, self.snapshot_state_start, compact_index);
        Ok(())
    }
}

/// Whether every enum in a change is one raft-rs knows (it panics on
/// unknown values).
fn valid_change(change: &ConfChangeV2) -> bool {
    ConfChangeTransition::from_i32(change.transition).is_some()
        && change
            .changes
            .iter()
            .all(|c| ConfChangeType::from_i32(c.change_type).is_some())
}
