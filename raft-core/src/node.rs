//! The driver: one replica of a Raft group, around a raft-rs `RawNode`.
//!
//! See the crate docs for the loop a caller runs. This file holds the
//! public API; `ready.rs` handles Readies (persist, send, apply) and
//! `validate.rs` checks incoming messages.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use raft::eraftpb::{
    ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState, HardState,
    Snapshot, SnapshotMetadata,
};
use raft::{RawNode, StateRole};
use slog::Logger;

use crate::command::{ChangeContext, CommandEntry, RegisterEntry, SnapshotData};
use crate::config::Config;
use crate::envelope::{Envelope, EnvelopeLimits};
use crate::error::{DropReason, Error, RequestError};
use crate::identity::{self, Identity};
use crate::membership::Membership;
use crate::output::{ChangeId, Counters, Output, PeerProgress, ReadId, Role, Status};
use crate::rng::Rng;
use crate::session::{command_digest, Sessions};
use crate::state_machine::StateMachine;
use crate::storage::dir::Dir;
use crate::storage::LogStore;

/// How to create the first replicas of a new group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bootstrap {
    /// A random id for the new group, chosen once by whoever creates it
    /// (every message carries it; replicas refuse other groups).
    pub group_id: u128,
    /// This replica's raft id (non-zero, one of `voters`).
    pub id: u64,
    /// The initial voters with their metadata (for example libp2p peer
    /// ids). Every initial replica must be given the same list.
    pub voters: Vec<(u64, Vec<u8>)>,
    /// Bound of the replicated client session table; fixed for the life of
    /// the group. Use more than the number of clients ever active at once.
    pub max_sessions_count: u64,
    /// Log time after which an idle client session expires (its next
    /// command gets [`RequestError::SessionExpired`]); fixed for the life
    /// of the group. Use more than the longest a client retries one
    /// command.
    pub session_timeout_ms: u64,
}

/// How to prepare a replica that will join an existing group as a learner
/// (the leader adds it with [`Node::add_learner`] and sends it a snapshot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Join {
    /// The group's id.
    pub group_id: u128,
    /// The raft id the group will add this replica under.
    pub id: u64,
}

/// Per-process options of a node, not persisted.
#[derive(Clone, Debug)]
pub struct Options {
    /// Seeds the randomized election timeouts. raft-core draws no other
    /// randomness: give each replica (and each restart) a different seed
    /// from a real random source, or a fixed one to replay a run.
    pub rng_seed: u64,
    /// Where raft-rs logs go; `None` discards them.
    pub logger: Option<Logger>,
}

impl Options {
    /// Options with the given seed and no logging.
    pub fn with_seed(rng_seed: u64) -> Self {
        Self {
            rng_seed,
            logger: None,
        }
    }
}

/// A proposal waiting for its entry to apply.
#[derive(Debug)]
pub(crate) struct PendingProposal {
    /// 0 for a registration, whose `seq` is the caller's nonce.
    pub(crate) client_id: u64,
    pub(crate) seq: u64,
    /// A registration ([`Node::register`]) rather than a command.
    pub(crate) register: bool,
    /// [`crate::session::command_digest`] of the command.
    pub(crate) digest: u64,
    /// The term it was appended in: the entry at its index is this
    /// proposal only if its term matches (Log Matching).
    pub(crate) term: u64,
    pub(crate) deadline_tick: u64,
}

impl PendingProposal {
    /// The output that reports `result` to this proposal's caller. A
    /// registration's `Ok` carries the new client id (8 bytes, little
    /// endian).
    pub(crate) fn outcome(&self, result: Result<Vec<u8>, RequestError>) -> Output {
        if self.register {
            let result = result.map(|bytes| {
                let id: [u8; 8] = bytes.as_slice().try_into().unwrap_or([0; 8]);
                u64::from_le_bytes(id)
            });
            debug_assert!(result != Ok(0), "a registration applies to a non-zero id");
            Output::Registered {
                nonce: self.seq,
                result,
            }
        } else {
            Output::Proposal {
                client_id: self.client_id,
                seq: self.seq,
                result,
            }
        }
    }
}

/// A membership change waiting for its entry to apply.
#[derive(Debug)]
pub(crate) struct PendingChange {
    pub(crate) change_id: ChangeId,
    pub(crate) term: u64,
    pub(crate) deadline_tick: u64,
}

/// A read waiting for its ReadIndex and then for apply.
#[derive(Debug)]
pub(crate) struct PendingRead {
    pub(crate) read_id: ReadId,
    pub(crate) query: Vec<u8>,
    pub(crate) deadline_tick: u64,
}

/// Reads issued together as one raft-rs ReadIndex request.
#[derive(Debug)]
pub(crate) struct ReadBatch {
    pub(crate) reads: Vec<PendingRead>,
    /// The confirmed read index, once the leader heard from a quorum.
    pub(crate) index: Option<u64>,
}

/// One replica of a Raft group: a durable, sans-IO raft-rs driver.
///
/// Generic over the [`StateMachine`] it replicates and the [`Dir`] it
/// stores files in ([`crate::FsDir`] for real files). Single-threaded:
/// drive it from one thread (it is `!Sync` through raft-rs internals).
///
/// See the crate documentation for the loop to run and the caller's
/// obligations.
pub struct Node<S: StateMachine, D: Dir> {
    pub(crate) raw: RawNode<LogStore<D>>,
    pub(crate) config: Config,
    pub(crate) limits: EnvelopeLimits,
    pub(crate) group_id: u128,
    pub(crate) id: u64,
    pub(crate) state_machine: S,
    pub(crate) sessions: Sessions,
    pub(crate) metadata: BTreeMap<u64, Vec<u8>>,
    /// Raft ids removed from the group (replicated): their messages are
    /// dropped, so a removed node cannot disrupt the group.
    pub(crate) removed_ids: BTreeSet<u64>,
    pub(crate) last_time_ms: u64,
    /// Highest index applied to the state machine (and sessions, metadata).
    pub(crate) applied: u64,
    pub(crate) last_snapshot_index: u64,
    pub(crate) rng: Rng,
    /// Logical clock: ticks since open.
    pub(crate) ticks: u64,
    pub(crate) leader_id: Option<u64>,
    pub(crate) role: Role,
    pub(crate) proposals: BTreeMap<u64, PendingProposal>,
    /// `(client_id, seq)` to the index of its pending proposal.
    pub(crate) proposals_by_key: BTreeMap<(u64, u64), u64>,
    pub(crate) changes: BTreeMap<u64, PendingChange>,
    pub(crate) reads_queued: Vec<PendingRead>,
    pub(crate) read_batches: BTreeMap<u64, ReadBatch>,
    pub(crate) next_read_id: u64,
    pub(crate) next_change_id: u64,
    pub(crate) next_read_batch: u64,
    pub(crate) outputs: VecDeque<Output>,
    pub(crate) counters: Counters,
    pub(crate) removed: bool,
    pub(crate) failed: Option<String>,
    /// A Ready whose early messages left ([`Node::send_early`]) and that
    /// [`Node::process`] persists next. While set, raft-rs must not be
    /// stepped.
    pub(crate) staged: Option<crate::ready::Staged>,
    /// The state machine's side of the own snapshot in progress: it
    /// serializes a chunk per [`Node::process`] into the snapshot's data.
    pub(crate) snapshot_source: Option<Box<dyn crate::state_machine::SnapshotSource>>,
    /// Where the state begins in that data (after the driver's part and
    /// the state length placeholder).
    pub(crate) snapshot_state_start: usize,
}

fn discard_logger() -> Logger {
    Logger::root(slog::Discard, slog::o!())
}

/// Removes raft-core files left by a bootstrap or join that crashed before
/// writing the identity, and refuses a directory that holds a replica.
fn prepare_empty_dir(dir: &mut impl Dir) -> Result<(), Error> {
    if identity::read_identity(dir)?.is_some() {
        return Err(Error::AlreadyInitialized);
    }
    let names = dir.list().map_err(|e| Error::io("list directory", e))?;
    for name in names.iter().filter(|n| identity::is_own_file(n)) {
        dir.remove(name)
            .map_err(|e| Error::io(format!("remove leftover {name}"), e))?;
    }
    dir.sync_dir().map_err(|e| Error::io("sync directory", e))
}

impl<S: StateMachine, D: Dir> Node<S, D> {
    /// Creates a replica of a new group in an empty directory, then opens
    /// it. Run it on every initial voter with the same `bootstrap.voters`
    /// and `group_id`. `state_machine` must be empty; its snapshot becomes
    /// the group's initial state (log index 1).
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyInitialized`] if the directory holds a replica,
    /// [`Error::InvalidBootstrap`] for an unusable voter list,
    /// [`Error::Config`], or I/O errors.
    pub fn bootstrap(
        mut dir: D,
        config: Config,
        state_machine: S,
        bootstrap: Bootstrap,
        options: Options,
    ) -> Result<Self, Error> {
        config.validate()?;
        let mut ids: Vec<u64> = bootstrap.voters.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() || ids.len() != bootstrap.voters.len() || ids.contains(&0) {
            return Err(Error::InvalidBootstrap(
                "voters must be non-empty, unique and non-zero".into(),
            ));
        }
        if !ids.contains(&bootstrap.id) {
            return Err(Error::InvalidBootstrap(format!(
                "id {} is not one of the voters",
                bootstrap.id
            )));
        }
        if bootstrap.max_sessions_count == 0 {
            return Err(Error::InvalidBootstrap(
                "max_sessions_count must be at least 1".into(),
            ));
        }
        if bootstrap.session_timeout_ms == 0 {
            return Err(Error::InvalidBootstrap(
                "session_timeout_ms must be at least 1".into(),
            ));
        }
        prepare_empty_dir(&mut dir)?;
        let data = SnapshotData {
            group_id: bootstrap.group_id,
            max_sessions_count: bootstrap.max_sessions_count,
            session_timeout_ms: bootstrap.session_timeout_ms,
            last_time_ms: 0,
            metadata: bootstrap.voters.clone(),
            removed_ids: Vec::new(),
            sessions: Vec::new(),
            state: state_machine.snapshot(),
        };
        let conf_state = ConfState {
            voters: ids,
            ..Default::default()
        };
        // Index 1, term 1: every initial replica starts from the same
        // snapshot, and a replica that joins later always needs a snapshot
        // (the log starts at 2), which carries the membership metadata.
        let snapshot = Snapshot {
            data: data.encode(),
            metadata: Some(SnapshotMetadata {
                conf_state: Some(conf_state),
                index: 1,
                term: 1,
            }),
        };
        let hard_state = HardState {
            term: 1,
            vote: 0,
            commit: 1,
        };
        let mut store =
            LogStore::create(dir, config.segment_max_bytes, Some(snapshot), hard_state)?;
        identity::write_identity(
            store.dir_mut(),
            Identity {
                group_id: bootstrap.group_id,
                id: bootstrap.id,
            },
        )?;
        Self::start(
            store,
            Identity {
                group_id: bootstrap.group_id,
                id: bootstrap.id,
            },
            config,
            state_machine,
            options,
        )
    }

    /// Prepares an empty directory for a replica that will join an existing
    /// group, then opens it. The replica stays passive until the leader,
    /// after [`Node::add_learner`], sends it a snapshot.
    ///
    /// Until that first snapshot arrives the replica knows no membership,
    /// so it accepts messages of its group from any sender id: the
    /// transport's authentication is then the only check.
    ///
    /// # Errors
    ///
    /// As for [`Node::bootstrap`].
    pub fn join(
        mut dir: D,
        config: Config,
        state_machine: S,
        join: Join,
        options: Options,
    ) -> Result<Self, Error> {
        config.validate()?;
        if join.id == 0 {
            return Err(Error::InvalidBootstrap("raft id 0 is reserved".into()));
        }
        prepare_empty_dir(&mut dir)?;
        let mut store =
            LogStore::create(dir, config.segment_max_bytes, None, HardState::default())?;
        let identity = Identity {
            group_id: join.group_id,
            id: join.id,
        };
        identity::write_identity(store.dir_mut(), identity)?;
        Self::start(store, identity, config, state_machine, options)
    }

    /// Opens an existing replica: reads its identity, recovers its log
    /// (cutting a torn tail) and restores `state_machine` from the newest
    /// snapshot. Committed entries after the snapshot are applied again by
    /// the following [`Node::process`] calls. `state_machine` must be
    /// empty.
    ///
    /// # Errors
    ///
    /// [`Error::NotInitialized`] for a directory without a replica,
    /// [`Error::Corruption`] for damaged files (the replica must then be
    /// replaced), [`Error::Config`], or I/O errors.
    pub fn open(dir: D, config: Config, state_machine: S, options: Options) -> Result<Self, Error> {
        config.validate()?;
        let identity = identity::read_identity(&dir)?.ok_or(Error::NotInitialized)?;
        let store = LogStore::open(dir, config.segment_max_bytes)?.ok_or_else(|| {
            Error::corrupt(
                identity::IDENTITY_NAME,
                0,
                "the identity exists but the log does not",
            )
        })?;
        Self::start(store, identity, config, state_machine, options)
    }

    fn start(
        store: LogStore<D>,
        identity: Identity,
        config: Config,
        mut state_machine: S,
        options: Options,
    ) -> Result<Self, Error> {
        let snapshot = store.newest_snapshot().clone();
        let snap_index = snapshot.get_metadata().index;
        let (sessions, metadata, removed_ids, last_time_ms) = if snap_index > 0 {
            let data = SnapshotData::decode(&snapshot.data)
                .ok_or_else(|| Error::corrupt("snapshot", 0, "undecodable driver snapshot data"))?;
            if data.group_id != identity.group_id {
                return Err(Error::corrupt("snapshot", 0, "snapshot of another group"));
            }
            state_machine
                .restore(&data.state)
                .map_err(|reason| Error::Restore {
                    index: snap_index,
                    reason,
                })?;
            (
                Sessions::from_entries(
                    data.max_sessions_count,
                    data.session_timeout_ms,
                    data.sessions,
                ),
                data.metadata.into_iter().collect(),
                data.removed_ids.into_iter().collect(),
                data.last_time_ms,
            )
        } else {
            (Sessions::new(1, 1), BTreeMap::new(), BTreeSet::new(), 0)
        };
        let logger = options.logger.unwrap_or_else(discard_logger);
        // The state machine is rebuilt from the snapshot, so its durable
        // applied index is the snapshot's (never the hard state's commit).
        let raft_config = config.to_raft(identity.id, snap_index);
        let raw = RawNode::new(&raft_config, store, &logger)?;
        let limits = EnvelopeLimits {
            max_envelope_bytes: config.max_envelope_bytes,
            max_snapshot_bytes: config.max_snapshot_bytes,
            max_messages_count: config.max_messages_per_envelope_count,
        };
        let mut node = Node {
            raw,
            config,
            limits,
            group_id: identity.group_id,
            id: identity.id,
            state_machine,
            sessions,
            metadata,
            removed_ids,
            last_time_ms,
            applied: snap_index,
            last_snapshot_index: snap_index,
            rng: Rng::new(options.rng_seed),
            ticks: 0,
            leader_id: None,
            role: Role::Follower,
            proposals: BTreeMap::new(),
            proposals_by_key: BTreeMap::new(),
            changes: BTreeMap::new(),
            reads_queued: Vec::new(),
            read_batches: BTreeMap::new(),
            next_read_id: 1,
            next_change_id: 1,
            next_read_batch: 1,
            outputs: VecDeque::new(),
            counters: Counters::default(),
            removed: false,
            failed: None,
            staged: None,
            snapshot_source: None,
            snapshot_state_start: 0,
        };
        node.randomize_election_timeout();
        Ok(node)
    }

    /// raft-rs 0.7 draws election timeouts from `rand::thread_rng`, which
    /// cannot be seeded. Whenever raft-rs has just reset its election timer
    /// (it always sets `election_elapsed` to 0 then), the driver overrides
    /// the drawn timeout with one from its own seeded generator, in the same
    /// `election_ticks_min..election_ticks_max` range. The thread_rng value
    /// is thus never used, and a seed replays the same elections.
    pub(crate) fn randomize_election_timeout(&mut self) {
        if self.raw.raft.election_elapsed == 0 {
            let min = self.config.election_ticks_min as u64;
            let max = self.config.election_ticks_max as u64;
            let timeout = self.rng.range(min, max) as usize;
            self.raw.raft.set_randomized_election_timeout(timeout);
        }
    }

    fn check_usable(&self) -> Result<(), RequestError> {
        if let Some(reason) = &self.failed {
            return Err(RequestError::Stopped(reason.clone()));
        }
        if self.removed {
            return Err(RequestError::Stopped("removed from the group".into()));
        }
        Ok(())
    }

    fn require_leader(&self) -> Result<(), RequestError> {
        self.check_usable()?;
        if self.raw.raft.state != StateRole::Leader {
            return Err(RequestError::NotLeader {
                leader_id: self.leader_id,
            });
        }
        Ok(())
    }

    /// The caller's obligation after [`Node::send_early`]: raft-rs must not
    /// change state between taking a Ready and advancing it, so nothing may
    /// step, tick or propose until [`Node::process`] has persisted the
    /// staged Ready. A violation is a bug in the caller's loop, never the
    /// effect of input from a peer or client, hence a panic.
    pub(crate) fn assert_not_staged(&self, what: &str) {
        assert!(
            self.staged.is_none(),
            "raft-core: {what} between send_early and process (see the crate docs)"
        );
    }

    /// Advances the logical clock by one tick: heartbeats, elections, and
    /// request timeouts all count ticks. Call it at a fixed period (for
    /// example every 100 ms), then [`Node::process`].
    pub fn tick(&mut self) {
        if self.failed.is_some() {
            return;
        }
        self.assert_not_staged("tick");
        self.ticks += 1;
        self.raw.tick();
        self.randomize_election_timeout();
        self.expire_requests();
    }

    /// Validates and steps one received envelope (see
    /// [`crate::Envelope`]). Messages that fail a check are dropped with a
    /// reason (Raft tolerates lost messages); nothing here panics on any
    /// input. Call [`Node::process`] afterwards.
    pub fn step(&mut self, envelope_bytes: &[u8]) -> StepReport {
        match Envelope::decode(envelope_bytes, &self.limits) {
            Ok(envelope) => self.step_envelope(envelope),
            Err(reason) => {
                self.counters.messages_dropped_count += 1;
                StepReport {
                    accepted_count: 0,
                    dropped_count: 1,
                    first_drop: Some(reason),
                }
            }
        }
    }

    /// Like [`Node::step`], for an envelope decoded already.
    pub fn step_envelope(&mut self, envelope: Envelope) -> StepReport {
        let mut report = StepReport::default();
        if self.failed.is_some() {
            report.drop(DropReason::Stopped, envelope.msgs.len());
            return report;
        }
        self.assert_not_staged("step");
        if let Err(reason) = self.check_envelope(&envelope) {
            self.counters.messages_dropped_count += envelope.msgs.len() as u64;
            report.drop(reason, envelope.msgs.len());
            return report;
        }
        for msg in envelope.msgs {
            if let Err(reason) = self.check_message(envelope.from, &msg) {
                self.counters.messages_dropped_count += 1;
                if matches!(reason, DropReason::CommitBeyondLog { .. }) {
                    self.counters.commit_beyond_log_count += 1;
                }
                report.drop(reason, 1);
                continue;
            }
            // The checks above rule out every input on which raft-rs would
            // return an error for a peer message; an error left is one raft-rs
            // reports without changing state, so dropping is right.
            match self.raw.step(msg) {
                Ok(()) => {
                    self.counters.messages_stepped_count += 1;
                    report.accepted_count += 1;
                }
                Err(error) => {
                    self.counters.messages_dropped_count += 1;
                    report.drop(
                        DropReason::Malformed(format!("raft-rs refused it: {error}")),
                        1,
                    );
                }
            }
            self.randomize_election_timeout();
        }
        report
    }

    /// Proposes a command for the state machine, on the leader.
    ///
    /// `(client_id, seq)` identifies the command: `client_id` comes from
    /// [`Node::register`]; a client numbers its commands with increasing
    /// `seq` and has at most one outstanding; a retry with the same pair and
    /// the same bytes applies at most once and gets the first result, and
    /// the same pair with other bytes gets [`RequestError::SessionConflict`]
    /// (client id 0 opts out of all this: for commands never retried, such
    /// as a replica's own clock ticks). `time_ms` is the proposer's
    /// clock (milliseconds since the Unix epoch): the state machine sees
    /// `max(previous, time_ms)` as [`crate::ApplyContext::time_ms`].
    ///
    /// The outcome comes later as [`Output::Proposal`]: the result once
    /// applied, or a retryable error (superseded by a leader change, timed
    /// out). Proposing a pair already pending here adds nothing; its one
    /// outcome answers both.
    ///
    /// # Errors
    ///
    /// Immediately, without proposing: [`RequestError::NotLeader`],
    /// [`RequestError::TooLarge`], [`RequestError::Overloaded`],
    /// [`RequestError::Dropped`] (raft-rs refused it),
    /// [`RequestError::SessionConflict`] (the pair is pending here with
    /// other bytes), or [`RequestError::Stopped`].
    pub fn propose(
        &mut self,
        client_id: u64,
        seq: u64,
        time_ms: u64,
        command: Vec<u8>,
    ) -> Result<(), RequestError> {
        self.require_leader()?;
        if command.len() > self.config.max_command_bytes {
            return Err(RequestError::TooLarge {
                bytes: command.len(),
                max_bytes: self.config.max_command_bytes,
            });
        }
        let digest = command_digest(&command);
        if client_id != 0 {
            if let Some(index) = self.proposals_by_key.get(&(client_id, seq)) {
                let same = self
                    .proposals
                    .get(index)
                    .is_some_and(|p| p.digest == digest);
                return if same {
                    Ok(())
                } else {
                    Err(RequestError::SessionConflict { client_id, seq })
                };
            }
        }
        let data = CommandEntry {
            client_id,
            seq,
            time_ms,
            command,
        }
        .encode();
        self.append_proposal(client_id, seq, false, digest, data)
    }

    /// Registers a new client session, on the leader (Raft dissertation,
    /// section 6.3). The session's client id is the log index of the
    /// register entry: unique by construction. `nonce` is the caller's own
    /// label for the outcome; `time_ms` as in [`Node::propose`].
    ///
    /// The outcome comes later as [`Output::Registered`] with the new client
    /// id, or a retryable error. A registration whose answer was lost may
    /// still have applied; registering again just opens another session,
    /// and the orphan expires.
    ///
    /// # Errors
    ///
    /// Immediately, as [`Node::propose`].
    pub fn register(&mut self, nonce: u64, time_ms: u64) -> Result<(), RequestError> {
        self.require_leader()?;
        let data = RegisterEntry { time_ms }.encode();
        self.append_proposal(0, nonce, true, command_digest(&[]), data)
    }

    fn append_proposal(
        &mut self,
        client_id: u64,
        seq: u64,
        register: bool,
        digest: u64,
        data: Vec<u8>,
    ) -> Result<(), RequestError> {
        if self.proposals.len() >= self.config.max_pending_proposals_count {
            return Err(RequestError::Overloaded {
                pending_count: self.proposals.len(),
            });
        }
        self.assert_not_staged("propose");
        let before = self.raw.raft.raft_log.last_index();
        self.raw
            .propose(Vec::new(), data)
            .map_err(|_| RequestError::Dropped)?;
        let index = self.raw.raft.raft_log.last_index();
        debug_assert_eq!(
            index,
            before + 1,
            "a leader appends a proposal at the end of its log"
        );
        let term = self.raw.raft.term;
        // A proposal pending at the same index from an earlier term lost its
        // slot: the log was truncated under it when leadership changed.
        let pending = PendingProposal {
            client_id,
            seq,
            register,
            digest,
            term,
            deadline_tick: self.deadline(),
        };
        if let Some(old) = self.proposals.insert(index, pending) {
            self.proposals_by_key.remove(&(old.client_id, old.seq));
            self.outputs
                .push_back(old.outcome(Err(RequestError::Superseded { index })));
        }
        if client_id != 0 {
            self.proposals_by_key.insert((client_id, seq), index);
        }
        Ok(())
    }

    /// Starts a linearizable read of `query` (answered by
    /// [`StateMachine::query`]), on the leader.
    ///
    /// Reads queued between two [`Node::process`] calls share one ReadIndex
    /// round: the leader confirms with a quorum that it still leads, then
    /// answers each read once its state machine has applied up to the
    /// confirmed commit index. A new leader answers reads only after it
    /// committed an entry in its term; until then they wait (up to the
    /// request timeout). The outcome comes later as [`Output::Read`].
    ///
    /// # Errors
    ///
    /// Immediately: [`RequestError::NotLeader`],
    /// [`RequestError::TooLarge`], [`RequestError::Overloaded`], or
    /// [`RequestError::Stopped`].
    pub fn read_index(&mut self, query: Vec<u8>) -> Result<ReadId, RequestError> {
        self.require_leader()?;
        if query.len() > self.config.max_query_bytes {
            return Err(RequestError::TooLarge {
                bytes: query.len(),
                max_bytes: self.config.max_query_bytes,
            });
        }
        let pending_count = self.pending_reads_count();
        if pending_count >= self.config.max_pending_reads_count {
            return Err(RequestError::Overloaded { pending_count });
        }
        let read_id = ReadId(self.next_read_id);
        self.next_read_id += 1;
        self.reads_queued.push(PendingRead {
            read_id,
            query,
            deadline_tick: self.deadline(),
        });
        Ok(read_id)
    }

    /// Proposes adding `id` as a learner (a non-voting member that receives
    /// the log), with opaque `metadata` that every replica will report in
    /// [`Node::members`] (for example the node's libp2p peer id). Then
    /// wait until it caught up (see [`Node::status`] progress) and
    /// [`Node::promote_learner`].
    ///
    /// The outcome comes as [`Output::MembershipChange`] once the change
    /// applied (or was ignored because another change was pending).
    ///
    /// # Errors
    ///
    /// Immediately: [`RequestError::NotLeader`],
    /// [`RequestError::InvalidMembershipChange`] (id 0, already a member,
    /// or removed earlier: ids are never reused),
    /// [`RequestError::MembershipChangeIgnored`] (another change pending),
    /// [`RequestError::Dropped`], [`RequestError::Stopped`].
    pub fn add_learner(&mut self, id: u64, metadata: Vec<u8>) -> Result<ChangeId, RequestError> {
        self.require_leader()?;
        let members = self.members();
        if id == 0 || members.contains(id) {
            return Err(RequestError::InvalidMembershipChange(format!(
                "{id} is reserved or already a member"
            )));
        }
        if self.removed_ids.contains(&id) {
            return Err(RequestError::InvalidMembershipChange(format!(
                "{id} was removed from the group; raft ids are never reused"
            )));
        }
        let context = ChangeContext {
            metadata: vec![(id, metadata)],
        };
        self.propose_change(ConfChangeType::AddLearnerNode, id, context)
    }

    /// Proposes promoting learner `id` to voter.
    ///
    /// # Errors
    ///
    /// As [`Node::add_learner`]; `InvalidMembershipChange` if `id` is not a
    /// learner.
    pub fn promote_learner(&mut self, id: u64) -> Result<ChangeId, RequestError> {
        self.require_leader()?;
        if !self.members().learners.contains(&id) {
            return Err(RequestError::InvalidMembershipChange(format!(
                "{id} is not a learner"
            )));
        }
        self.propose_change(ConfChangeType::AddNode, id, ChangeContext::default())
    }

    /// Proposes removing voter or learner `id` (possibly this node; it then
    /// reports [`crate::Event::Removed`] once the change applied).
    ///
    /// # Errors
    ///
    /// As [`Node::add_learner`]; `InvalidMembershipChange` if `id` is not a
    /// member or is the last voter.
    pub fn remove_node(&mut self, id: u64) -> Result<ChangeId, RequestError> {
        self.require_leader()?;
        let members = self.members();
        if !members.contains(id) {
            return Err(RequestError::InvalidMembershipChange(format!(
                "{id} is not a member"
            )));
        }
        if members.voters == [id] {
            return Err(RequestError::InvalidMembershipChange(format!(
                "{id} is the last voter"
            )));
        }
        self.propose_change(ConfChangeType::RemoveNode, id, ChangeContext::default())
    }

    fn propose_change(
        &mut self,
        change_type: ConfChangeType,
        id: u64,
        context: ChangeContext,
    ) -> Result<ChangeId, RequestError> {
        // raft-rs accepts one unapplied change at a time and silently turns
        // any other into an empty entry; refuse early when that is certain.
        if self.raw.raft.pending_conf_index > self.applied || self.members().is_joint() {
            return Err(RequestError::MembershipChangeIgnored);
        }
        self.assert_not_staged("a membership change");
        let change = ConfChangeV2 {
            transition: ConfChangeTransition::Auto as i32,
            changes: vec![ConfChangeSingle {
                change_type: change_type as i32,
                node_id: id,
            }],
            context: context.encode(),
        };
        self.raw
            .propose_conf_change(Vec::new(), change)
            .map_err(|_| RequestError::Dropped)?;
        let index = self.raw.raft.raft_log.last_index();
        let change_id = ChangeId(self.next_change_id);
        self.next_change_id += 1;
        let term = self.raw.raft.term;
        let pending = PendingChange {
            change_id,
            term,
            deadline_tick: self.deadline(),
        };
        if let Some(old) = self.changes.insert(index, pending) {
            self.outputs.push_back(Output::MembershipChange {
                change_id: old.change_id,
                result: Err(RequestError::Superseded { index }),
            });
        }
        Ok(change_id)
    }

    /// Asks the leader to hand leadership to voter `to` (it first brings
    /// `to` up to date). Proposals are refused ([`RequestError::Dropped`])
    /// during the transfer. Watch [`crate::Event::LeaderChanged`].
    ///
    /// # Errors
    ///
    /// [`RequestError::NotLeader`], [`RequestError::Stopped`], or
    /// `InvalidMembershipChange` if `to` is not another voter.
    pub fn transfer_leader(&mut self, to: u64) -> Result<(), RequestError> {
        self.require_leader()?;
        if to == self.id || !self.members().voters.contains(&to) {
            return Err(RequestError::InvalidMembershipChange(format!(
                "{to} is not another voter"
            )));
        }
        self.assert_not_staged("transfer_leader");
        self.raw.transfer_leader(to);
        Ok(())
    }

    /// The membership as of the last applied configuration change.
    pub fn members(&self) -> Membership {
        Membership::from_conf_state(&self.raw.raft.prs().conf().to_conf_state(), &self.metadata)
    }

    /// Whether `id` is a voter or learner now, as [`Node::members`] would
    /// say, without building the membership (a replica asks per message).
    pub fn is_member(&self, id: u64) -> bool {
        self.raw.raft.prs().get(id).is_some()
    }

    /// The metadata `id` was added with, as [`Node::members`] would report
    /// it, without copying the membership.
    pub fn metadata_of(&self, id: u64) -> Option<&[u8]> {
        self.metadata.get(&id).map(Vec::as_slice)
    }

    /// This replica's raft id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The group's id.
    pub fn group_id(&self) -> u128 {
        self.group_id
    }

    /// The leader this replica knows of.
    pub fn leader_id(&self) -> Option<u64> {
        self.leader_id
    }

    /// This replica's role and term, as [`Node::status`] reports them,
    /// without building the rest of it (a replica asks every round).
    pub fn role_and_term(&self) -> (Role, u64) {
        (self.raw.raft.state.into(), self.raw.raft.term)
    }

    /// Whether this replica is the leader.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The replicated state machine (read-only; it changes only through the
    /// log).
    pub fn state_machine(&self) -> &S {
        &self.state_machine
    }

    /// Size limits for envelopes this node accepts, for transports that
    /// refuse frames before decoding (see [`crate::peek_header`]).
    pub fn envelope_limits(&self) -> EnvelopeLimits {
        self.limits
    }

    /// A point-in-time view: role, indexes, membership, progress, counters.
    pub fn status(&self) -> Status {
        let raft = &self.raw.raft;
        let store = self.raw.store();
        let mut progress = Vec::new();
        if raft.state == StateRole::Leader {
            for (id, pr) in raft.prs().iter() {
                let state = match pr.state {
                    raft::ProgressState::Probe => "probe",
                    raft::ProgressState::Replicate => "replicate",
                    raft::ProgressState::Snapshot => "snapshot",
                };
                progress.push(PeerProgress {
                    id: *id,
                    matched: pr.matched,
                    next_index: pr.next_idx,
                    state,
                });
            }
            progress.sort_by_key(|p| p.id);
        }
        let mut counters = self.counters;
        counters.storage = store.counters();
        Status {
            id: self.id,
            group_id: self.group_id,
            role: raft.state.into(),
            term: raft.term,
            leader_id: self.leader_id,
            commit: raft.raft_log.committed,
            applied: self.applied,
            first_index: store.first_index_inner(),
            last_index: raft.raft_log.last_index(),
            snapshot_index: store.newest_snapshot().get_metadata().index,
            membership: self.members(),
            progress,
            pending_proposals_count: self.proposals.len(),
            pending_reads_count: self.pending_reads_count(),
            sessions_count: self.sessions.len(),
            segment_count: store.segment_count(),
            counters,
        }
    }

    /// Counters since open (fsyncs, entries persisted, messages, ...).
    pub fn counters(&self) -> Counters {
        let mut counters = self.counters;
        counters.storage = self.raw.store().counters();
        counters
    }

    pub(crate) fn pending_reads_count(&self) -> usize {
        self.reads_queued.len()
            + self
                .read_batches
                .values()
                .map(|b| b.reads.len())
                .sum::<usize>()
    }

    pub(crate) fn deadline(&self) -> u64 {
        self.ticks + self.config.request_timeout_ticks as u64
    }

    /// Times out requests whose deadline passed.
    fn expire_requests(&mut self) {
        let now = self.ticks;
        let timed_out = RequestError::TimedOut {
            ticks: self.config.request_timeout_ticks,
        };
        let expired: Vec<u64> = self
            .proposals
            .iter()
            .filter(|(_, p)| p.deadline_tick <= now)
            .map(|(index, _)| *index)
            .collect();
        for index in expired {
            if let Some(p) = self.proposals.remove(&index) {
                self.proposals_by_key.remove(&(p.client_id, p.seq));
                self.outputs.push_back(p.outcome(Err(timed_out.clone())));
            }
        }
        let expired: Vec<u64> = self
            .changes
            .iter()
            .filter(|(_, c)| c.deadline_tick <= now)
            .map(|(index, _)| *index)
            .collect();
        for index in expired {
            if let Some(c) = self.changes.remove(&index) {
                self.outputs.push_back(Output::MembershipChange {
                    change_id: c.change_id,
                    result: Err(timed_out.clone()),
                });
            }
        }
        let mut kept = Vec::new();
        for read in self.reads_queued.drain(..) {
            if read.deadline_tick <= now {
                self.outputs.push_back(Output::Read {
                    read_id: read.read_id,
                    result: Err(timed_out.clone()),
                });
            } else {
                kept.push(read);
            }
        }
        self.reads_queued = kept;
        for batch in self.read_batches.values_mut() {
            let (expired, kept): (Vec<_>, Vec<_>) =
                batch.reads.drain(..).partition(|r| r.deadline_tick <= now);
            batch.reads = kept;
            for read in expired {
                self.outputs.push_back(Output::Read {
                    read_id: read.read_id,
                    result: Err(timed_out.clone()),
                });
            }
        }
        self.read_batches.retain(|_, b| !b.reads.is_empty());
    }

    /// Takes the outputs produced by [`Node::tick`] since the last
    /// [`Node::process`] (timeouts). `process` returns them too.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        self.outputs.drain(..).collect()
    }
}

/// What [`Node::step`] did with an envelope.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Messages stepped into raft-rs.
    pub accepted_count: usize,
    /// Messages dropped.
    pub dropped_count: usize,
    /// Why the first dropped message was dropped.
    pub first_drop: Option<DropReason>,
}

impl StepReport {
    fn drop(&mut self, reason: DropReason, count: usize) {
        self.dropped_count += count.max(1);
        if self.first_drop.is_none() {
            self.first_drop = Some(reason);
        }
    }
}
