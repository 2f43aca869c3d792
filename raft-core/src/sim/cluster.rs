//! The simulated world: replicas on simulated disks, the network, the
//! clients, the nemesis, and the invariant checks.

use std::collections::{BTreeMap, VecDeque};

use prost::Message as _;
use raft::eraftpb::{Message, MessageType};

use crate::config::Config;
use crate::envelope::Envelope;
use crate::error::{Error, RequestError};
use crate::node::{Bootstrap, Join, Node, Options};
use crate::output::{ChangeId, Event, Output, ReadId, Role};
use crate::rng::Rng;
use crate::sim::disk::{IoFault, SimDisk};
use crate::sim::network::{Network, NetworkFaults, SimTransport};
use crate::sim::recorder::{Recorder, SharedAppliedLog};
use crate::sim::workload::{Request, Workload};
use crate::sim::{SimFailure, SimOptions, SimReport};
use crate::state_machine::StateMachine;

/// Client ids start here (0 opts out of sessions).
/// Log time after which an idle session expires: longer than any run, so
/// a client's session never expires under it (expiry has its own tests).
const SESSION_TIMEOUT_MS: u64 = 24 * 3_600_000;
/// A client gives up on a node after this long and retries elsewhere.
const ATTEMPT_TIMEOUT_MS: u64 = 1_000;
/// Events kept for failure reports.
const TRACE_TAIL_MAX_COUNT: usize = 60;
/// Packets held for a paused node at most (a bounded inbox).
const HELD_PACKETS_MAX_COUNT: usize = 10_000;
/// Membership replacements per run at most.
const REPLACEMENTS_MAX_COUNT: u64 = 2;
/// Bit flips in synced data per run at most. Each costs a replica (it must
/// refuse to start and be replaced), so more would mostly measure how long
/// replacements take.
const BITFLIPS_MAX_COUNT: u64 = 1;
/// Wall-clock epoch of virtual time 0, so that stamped times look real.
const EPOCH_MS: u64 = 1_700_000_000_000;

type SimNodeHandle<W> = Node<Recorder<<W as Workload>::Machine>, SimDisk>;

struct SimNode<W: Workload> {
    raft_id: u64,
    disk: SimDisk,
    node: Option<SimNodeHandle<W>>,
    /// Bumped at every crash, so stale client attempts are recognized.
    incarnation: u64,
    restart_at_ms: Option<u64>,
    paused_until_ms: Option<u64>,
    held: Vec<Vec<u8>>,
    next_tick_ms: u64,
    tick_period_ms: u64,
    clock_skew_ms: u64,
    /// Removed from the group for good.
    retired: bool,
    /// A bit of its synced data was flipped since it last started: which
    /// file, at which byte.
    bit_flipped: Option<(String, usize)>,
    /// Refused to start on that flipped bit: dead until replaced.
    corrupt: bool,
    /// Has input since its last `process`.
    dirty: bool,
    /// After `send_early`: when `process` finishes the staged Ready.
    /// Until then nothing may step, tick or propose on the node; packets
    /// for it are held.
    staged_until_ms: Option<u64>,
}

impl<W: Workload> SimNode<W> {
    fn is_up(&self) -> bool {
        self.node.is_some() && self.paused_until_ms.is_none()
    }

    /// The node, when it may be stepped, ticked or asked to propose: not
    /// while a Ready is staged (raft-core's obligation after `send_early`).
    fn steppable(&mut self) -> Option<&mut Node<Recorder<W::Machine>, SimDisk>> {
        if self.staged_until_ms.is_some() {
            return None;
        }
        self.node.as_mut()
    }
}

struct Attempt {
    node: usize,
    incarnation: u64,
    read_id: Option<ReadId>,
    deadline_ms: u64,
}

struct PendingRequest {
    request: Request,
    seq: u64,
    invoked_ms: u64,
    attempt: Option<Attempt>,
    retry_at_ms: u64,
}

/// A registration in flight: the node asked, and until when.
struct Registration {
    node: usize,
    deadline_ms: u64,
}

struct Client {
    /// From the group, once registered: requests wait until then.
    client_id: Option<u64>,
    registration: Option<Registration>,
    register_at_ms: u64,
    seq: u64,
    pending: Option<PendingRequest>,
    idle_until_ms: u64,
    target: usize,
    /// Completed a request since faults healed, or had none to make.
    completed_in_liveness: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Safety,
    Liveness,
    /// No new requests: wait for the outstanding ones and convergence.
    Drain,
}

/// The replacement of a voter by a fresh node, in steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Replacement {
    Idle,
    Removing { victim: usize },
    Adding { joiner: usize },
    Promoting { joiner: usize },
}

struct MembershipDriver {
    step: Replacement,
    /// Replacements started in this run.
    started_count: u64,
    /// The change in flight: on which node (and incarnation), which id.
    change: Option<(usize, u64, ChangeId)>,
    retry_at_ms: u64,
}

/// One simulation run. See the module docs of [`crate::sim`].
pub struct Simulation<W: Workload> {
    options: SimOptions,
    now_ms: u64,
    phase: Phase,
    liveness_start_ms: u64,
    /// Some request completed since faults healed.
    served_since_heal: bool,
    rng_nemesis: Rng,
    rng_clients: Rng,
    rng_disk: Rng,
    rng_nodes: Rng,
    /// Draws which rounds are split by `send_early` and for how long.
    rng_stage: Rng,
    network: Network,
    group_id: u128,
    config: Config,
    nodes: Vec<SimNode<W>>,
    index_of: BTreeMap<u64, usize>,
    next_raft_id: u64,
    clients: Vec<Client>,
    workload: W,
    applied_log: SharedAppliedLog,
    leaders_by_term: BTreeMap<u64, u64>,
    heal_at_ms: Option<u64>,
    membership: MembershipDriver,
    trace_tail: VecDeque<String>,
    report: SimReport,
}

impl<W: Workload> Simulation<W> {
    /// Builds the world for `options.seed`: configuration, disks, nodes,
    /// clients. Nothing runs until [`Simulation::run`].
    pub fn new(options: SimOptions) -> Self {
        let mut rng = Rng::new(options.seed);
        let mut rng_config = rng.fork(1);
        let rng_nemesis = rng.fork(2);
        let mut rng_clients = rng.fork(3);
        let rng_disk = rng.fork(4);
        let rng_nodes = rng.fork(5);
        let network = Network::new(rng.fork(6));
        let rng_stage = rng.fork(7);
        let config = Config {
            heartbeat_ticks: 2,
            election_ticks_min: 10,
            election_ticks_max: 20,
            // Small intervals so that snapshots, compaction and snapshot
            // installs happen many times per run.
            snapshot_interval_entries: rng_config.range(10, 200),
            catch_up_entries: rng_config.range(0, 50),
            segment_max_bytes: rng_config.range(4096, 64 * 1024),
            request_timeout_ticks: 50,
            ..Config::default()
        };
        let workload = W::new(options.client_count, &mut rng_clients);
        let clients = (0..options.client_count)
            .map(|_| Client {
                client_id: None,
                registration: None,
                register_at_ms: 0,
                seq: 0,
                pending: None,
                idle_until_ms: 0,
                target: rng_clients.below(options.node_count as u64) as usize,
                completed_in_liveness: false,
            })
            .collect();
        let mut group_bytes = [0u8; 16];
        rng_config.fill(&mut group_bytes);
        // Drawn last, so the draws above are what they were before it.
        let config = Config {
            broadcast_commit: rng_config.below(2) == 0,
            ..config
        };
        // Tiny chunks, so that a snapshot of the simulator's small states
        // spreads over many rounds and crashes land in the middle of one.
        let config = Config {
            snapshot_chunk_bytes_max: rng_config.range(2, 64) as usize,
            snapshot_unsynced_bytes_max: rng_config.range(0, 4096),
            compact_entries_per_process_max_count: rng_config.range(1, 64),
            ..config
        };
        let mut simulation = Self {
            now_ms: 0,
            phase: Phase::Safety,
            liveness_start_ms: 0,
            served_since_heal: false,
            rng_nemesis,
            rng_clients,
            rng_disk,
            rng_nodes,
            rng_stage,
            network,
            group_id: u128::from_le_bytes(group_bytes),
            config,
            nodes: Vec::new(),
            index_of: BTreeMap::new(),
            next_raft_id: 1,
            clients,
            workload,
            applied_log: SharedAppliedLog::default(),
            leaders_by_term: BTreeMap::new(),
            heal_at_ms: None,
            membership: MembershipDriver {
                step: Replacement::Idle,
                started_count: 0,
                change: None,
                retry_at_ms: 0,
            },
            trace_tail: VecDeque::new(),
            report: SimReport {
                seed: options.seed,
                ..SimReport::default()
            },
            options,
        };
        for _ in 0..simulation.options.node_count {
            simulation.add_slot();
        }
        simulation
    }

    /// Adds a node slot with a fresh disk and a new raft id; returns its
    /// index.
    fn add_slot(&mut self) -> usize {
        let raft_id = self.next_raft_id;
        self.next_raft_id += 1;
        let index = self.nodes.len();
        let tick_period_ms = self.rng_nodes.range(9, 12);
        self.nodes.push(SimNode {
            raft_id,
            disk: SimDisk::new(self.options.disk_faults),
            node: None,
            incarnation: 0,
            restart_at_ms: None,
            paused_until_ms: None,
            staged_until_ms: None,
            held: Vec::new(),
            next_tick_ms: self.rng_nodes.range(0, tick_period_ms),
            tick_period_ms,
            clock_skew_ms: self.rng_nodes.range(0, 1_000),
            retired: false,
            bit_flipped: None,
            corrupt: false,
            dirty: false,
        });
        self.index_of.insert(raft_id, index);
        index
    }

    fn machine(&self, index: usize) -> Recorder<W::Machine> {
        Recorder::new(
            self.workload.state_machine(),
            index,
            self.applied_log.clone(),
        )
    }

    fn trace(&mut self, line: String) {
        let line = format!("[{} ms] {line}", self.now_ms);
        if self.options.trace {
            eprintln!("{line}");
        }
        if self.trace_tail.len() == TRACE_TAIL_MAX_COUNT {
            self.trace_tail.pop_front();
        }
        self.trace_tail.push_back(line);
    }

    fn fail(&self, reason: String) -> SimFailure {
        SimFailure {
            seed: self.options.seed,
            at_ms: self.now_ms,
            reason,
            trace_tail: self.trace_tail.iter().cloned().collect(),
            reproduce: self.options.reproduce_command(),
        }
    }

    /// Runs both phases and the final checks.
    ///
    /// # Errors
    ///
    /// The first violated invariant, liveness bound, or checker verdict.
    pub fn run(&mut self) -> Result<SimReport, SimFailure> {
        self.bootstrap()?;
        let end_ms = self.options.safety_ms + self.options.liveness_ms;
        loop {
            self.now_ms += 1;
            if self.phase == Phase::Safety && self.now_ms >= self.options.safety_ms {
                self.start_liveness()?;
            }
            if self.phase == Phase::Safety {
                self.nemesis()?;
            }
            self.scheduled()?;
            self.deliver()?;
            self.tick_nodes();
            self.drive_membership()?;
            self.drive_clients()?;
            self.process_nodes()?;
            if self.phase == Phase::Liveness
                && self.served_since_heal
                && self.clients.iter().all(|c| c.completed_in_liveness)
                && self.workload.is_done()
            {
                self.trace("every client served again; draining".into());
                self.phase = Phase::Drain;
            }
            if self.phase == Phase::Drain && self.converged() {
                break;
            }
            if self.now_ms > end_ms {
                return Err(self.fail(format!(
                    "liveness: the group did not serve every client and converge within {} ms after healing ({} ticks); {}",
                    self.options.liveness_ms,
                    self.options.liveness_ms / 10,
                    self.describe_nodes()
                )));
            }
        }
        self.final_checks()?;
        self.report.elapsed_ms = self.now_ms;
        for slot in &self.nodes {
            if let Some(node) = slot.node.as_ref() {
                self.report.snapshots_taken_count += node.counters().snapshots_taken_count;
            }
        }
        Ok(self.report.clone())
    }

    fn bootstrap(&mut self) -> Result<(), SimFailure> {
        let voters: Vec<(u64, Vec<u8>)> = self
            .nodes
            .iter()
            .map(|n| (n.raft_id, format!("node-{}", n.raft_id).into_bytes()))
            .collect();
        for index in 0..self.nodes.len() {
            let bootstrap = Bootstrap {
                group_id: self.group_id,
                id: self.nodes[index].raft_id,
                voters: voters.clone(),
                max_sessions_count: 1_000,
                session_timeout_ms: SESSION_TIMEOUT_MS,
            };
            let machine = self.machine(index);
            let options = Options::with_seed(self.rng_nodes.next_u64());
            let node = Node::bootstrap(
                self.nodes[index].disk.clone(),
                self.config.clone(),
                machine,
                bootstrap,
                options,
            )
            .map_err(|e| self.fail(format!("bootstrap of node {index} failed: {e}")))?;
            self.nodes[index].node = Some(node);
        }
        Ok(())
    }

    fn describe_nodes(&self) -> String {
        let mut parts = Vec::new();
        for (index, slot) in self.nodes.iter().enumerate() {
            let text = match &slot.node {
                None if slot.retired => "retired".to_owned(),
                None => "down".to_owned(),
                Some(node) => {
                    let s = node.status();
                    format!(
                        "{:?} term {} commit {} applied {} first {} last {} snapshot {} (writing {:?}) voters {:?} progress {:?}",
                        s.role,
                        s.term,
                        s.commit,
                        s.applied,
                        s.first_index,
                        s.last_index,
                        s.snapshot_index,
                        node.snapshot_in_progress(),
                        s.membership.voters,
                        s.progress
                    )
                }
            };
            parts.push(format!("node {index} (id {}): {text}", slot.raft_id));
        }
        for (c, client) in self.clients.iter().enumerate() {
            if let Some(p) = &client.pending {
                let kind = if matches!(p.request, Request::Write(_)) {
                    "write"
                } else {
                    "read"
                };
                let attempt = p
                    .attempt
                    .as_ref()
                    .map(|a| (a.node, a.read_id, a.deadline_ms));
                parts.push(format!(
                    "client {c}: {kind} seq {} since {} ms, attempt {attempt:?}, retry at {}",
                    p.seq, p.invoked_ms, p.retry_at_ms
                ));
            }
        }
        format!(
            "{}; membership step {:?}; phase {:?}",
            parts.join("; "),
            self.membership.step,
            self.phase
        )
    }

    // ---- faults -------------------------------------------------------

    fn nemesis(&mut self) -> Result<(), SimFailure> {
        // About one action every 300 ms: storms and calm both happen.
        if !self.rng_nemesis.chance(1, 300) {
            return Ok(());
        }
        match self.rng_nemesis.below(100) {
            0..=19 => {
                let mut up: Vec<usize> = self.live_indexes();
                // Crashes aim at nodes writing a snapshot, when there are
                // any (three in four): a snapshot spans a few rounds only,
                // and a crash inside one is what its chunked write must
                // survive.
                let snapshotting: Vec<usize> = up
                    .iter()
                    .copied()
                    .filter(|i| {
                        self.nodes[*i]
                            .node
                            .as_ref()
                            .is_some_and(|n| n.snapshot_in_progress().is_some())
                    })
                    .collect();
                if !snapshotting.is_empty() && self.rng_nemesis.chance(3, 4) {
                    up = snapshotting;
                }
                if let Some(&victim) =
                    up.get(self.rng_nemesis.below(up.len().max(1) as u64) as usize)
                {
                    let down_ms = self.rng_nemesis.range(20, 1_500);
                    self.crash(victim);
                    self.nodes[victim].restart_at_ms = Some(self.now_ms + down_ms);
                }
            }
            20..=34 => {
                let up: Vec<usize> = self.live_indexes();
                if let Some(&index) =
                    up.get(self.rng_nemesis.below(up.len().max(1) as u64) as usize)
                {
                    if self.nodes[index].paused_until_ms.is_none() {
                        let pause_ms = self.rng_nemesis.range(20, 1_500);
                        self.nodes[index].paused_until_ms = Some(self.now_ms + pause_ms);
                        self.trace(format!("pause node {index} for {pause_ms} ms"));
                    }
                }
            }
            35..=54 => {
                if self.heal_at_ms.is_none() {
                    self.partition();
                }
            }
            55..=69 => {
                let faults = NetworkFaults::random(&mut self.rng_nemesis);
                self.trace(format!("network faults {faults:?}"));
                self.network.set_faults(faults);
            }
            70..=81 => self.inject_forged()?,
            82..=87 => self.transfer_leadership(),
            88..=92 => self.start_replacement(),
            _ => self.inject_disk_fault(),
        }
        Ok(())
    }

    fn live_indexes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].node.is_some())
            .collect()
    }

    fn current_leader(&self) -> Option<usize> {
        // The highest-term live leader (an old, partitioned one may linger).
        (0..self.nodes.len())
            .filter_map(|i| {
                self.nodes[i]
                    .node
                    .as_ref()
                    .filter(|n| n.is_leader())
                    .map(|n| (n.status().term, i))
            })
            .max()
            .map(|(_, i)| i)
    }

    fn crash(&mut self, index: usize) {
        self.take_down(index, true);
        self.report.crash_count += 1;
        self.trace(format!("crash node {index}"));
    }

    /// Stops a node. With `power_loss` its disk keeps only what a crash
    /// keeps; without, the disk stays as the kernel sees it (the node was
    /// dropped, the machine kept running).
    fn take_down(&mut self, index: usize, power_loss: bool) {
        if let Some(node) = self.nodes[index].node.as_ref() {
            self.report.snapshots_taken_count += node.counters().snapshots_taken_count;
            if let Some(at) = node.snapshot_in_progress() {
                self.report.stopped_while_snapshotting_count += 1;
                self.trace(format!(
                    "node {index} stops while writing a snapshot at {at}"
                ));
            }
        }
        let slot = &mut self.nodes[index];
        slot.node = None;
        if power_loss {
            slot.disk.crash(&mut self.rng_disk);
        }
        slot.incarnation += 1;
        slot.held.clear();
        slot.paused_until_ms = None;
        if slot.staged_until_ms.take().is_some() {
            self.report.stopped_while_staged_count += 1;
        }
        // Clients connected to it notice the connection drop and retry.
        for client in &mut self.clients {
            if let Some(pending) = &mut client.pending {
                if pending.attempt.as_ref().is_some_and(|a| a.node == index) {
                    pending.attempt = None;
                    pending.retry_at_ms = self.now_ms + 1;
                }
            }
        }
    }

    /// A node whose `process` failed on an injected I/O error: dropped and
    /// opened again soon (the caller's obligation), sometimes after a power
    /// loss too.
    fn fail_stop(&mut self, index: usize, error: &Error) {
        self.report.io_fault_count += 1;
        let power_loss = self.rng_nemesis.chance(1, 3);
        self.take_down(index, power_loss);
        let reopen_ms = self.rng_nemesis.range(1, 300);
        self.nodes[index].restart_at_ms = Some(self.now_ms + reopen_ms);
        self.trace(format!(
            "node {index} stopped on an injected fault ({error}); reopen in {reopen_ms} ms{}",
            if power_loss {
                " after a power loss"
            } else {
                ""
            }
        ));
    }

    fn restart(&mut self, index: usize) -> Result<(), SimFailure> {
        if self.nodes[index].corrupt {
            return Ok(());
        }
        let machine = self.machine(index);
        let options = Options::with_seed(self.rng_nodes.next_u64());
        let disk = self.nodes[index].disk.clone();
        // A flip can land in a file the replica had already removed when it
        // stopped (a compacted segment whose removal was not yet durable).
        // The open below cannot read such a file, so losing it is not
        // losing data.
        let flipped_file_was_live = self.nodes[index]
            .bit_flipped
            .as_ref()
            .is_some_and(|(name, _)| disk.len_bytes(name).is_some());
        let node = match Node::open(disk, self.config.clone(), machine, options) {
            Ok(node) => node,
            Err(error) => return self.refused_restart(index, &error),
        };
        if let Some((name, at)) = self.nodes[index].bit_flipped.take() {
            // Starting is fine only if the flipped byte was not needed (a
            // frame's trailer, a file no longer read). A log segment that
            // lost it was cut as if torn: synced data lost in silence.
            // (Segment names carry 16 hex digits; `wal-tmp.log` is a
            // leftover that recovery rightly deletes.)
            let is_segment = name.starts_with("wal-")
                && name.ends_with(".log")
                && name.len() == "wal-".len() + 16 + ".log".len();
            let kept = self.nodes[index]
                .disk
                .len_bytes(&name)
                .is_some_and(|len| len > at);
            if is_segment && flipped_file_was_live && !kept {
                return Err(self.fail(format!(
                    "node {index} started after a bit flip at byte {at} of {name} by cutting it: synced data lost without a word"
                )));
            }
            if !flipped_file_was_live {
                self.report.bitflips_in_removed_files_count += 1;
            }
            self.trace(format!(
                "node {index} starts: its flipped bit in {name} was not needed{}",
                if flipped_file_was_live {
                    ""
                } else {
                    " (a file it had removed)"
                }
            ));
        }
        if node.counters().storage.torn_tail_bytes > 0 {
            self.report.torn_tail_count += 1;
        }
        let slot = &mut self.nodes[index];
        slot.node = Some(node);
        slot.restart_at_ms = None;
        slot.next_tick_ms = self.now_ms + slot.tick_period_ms;
        slot.dirty = true;
        self.trace(format!("restart node {index}"));
        Ok(())
    }

    /// A node that would not open: expected after an injected fault (try
    /// again later) or a flipped bit (it must refuse; the group replaces
    /// it, as an operator would); anything else fails the run.
    fn refused_restart(&mut self, index: usize, error: &Error) -> Result<(), SimFailure> {
        if self.nodes[index].disk.take_fired() {
            self.nodes[index].restart_at_ms = Some(self.now_ms + 50);
            self.trace(format!(
                "node {index} could not reopen on an injected fault ({error}); retry in 50 ms"
            ));
            return Ok(());
        }
        if !(self.nodes[index].bit_flipped.is_some() && matches!(error, Error::Corruption { .. })) {
            return Err(self.fail(format!("node {index} refused to restart: {error}")));
        }
        if self.membership.step != Replacement::Idle {
            return Err(self.fail(format!(
                "simulator: node {index} must be replaced but replacement {:?} is under way",
                self.membership.step
            )));
        }
        let slot = &mut self.nodes[index];
        slot.corrupt = true;
        slot.restart_at_ms = None;
        self.report.corrupt_refusal_count += 1;
        self.membership.step = Replacement::Removing { victim: index };
        self.membership.change = None;
        self.trace(format!(
            "node {index} refuses to start on its flipped bit ({error}); replacing it"
        ));
        Ok(())
    }

    /// Arms an I/O fault on a live node's disk, or flips a bit in a node's
    /// synced data.
    fn inject_disk_fault(&mut self) {
        let kind = self.rng_nemesis.below(4);
        let fault = match kind {
            0 => IoFault::WriteEio,
            1 => IoFault::NoSpace,
            2 => IoFault::SyncEio,
            _ => return self.inject_bitflip(),
        };
        let up = self.live_indexes();
        if up.is_empty() {
            return;
        }
        let index = up[self.rng_nemesis.below(up.len() as u64) as usize];
        let skip_count = self.rng_nemesis.below(8) as u32;
        let fail_count = if fault == IoFault::NoSpace {
            self.rng_nemesis.range(1, 4) as u32
        } else {
            1
        };
        let seed = self.rng_nemesis.next_u64();
        self.nodes[index]
            .disk
            .arm(fault, skip_count, fail_count, seed);
        self.trace(format!(
            "arm {fault:?} on node {index}'s disk: after {skip_count} operations, {fail_count} fail"
        ));
    }

    /// Flips a bit in the synced data of a stopped node (stopping it
    /// first). It must then refuse to start, or start with its data intact
    /// (a bit in a file it no longer reads); the checks catch the rest.
    fn inject_bitflip(&mut self) {
        let pending = self
            .nodes
            .iter()
            .any(|n| !n.retired && (n.bit_flipped.is_some() || n.corrupt));
        if self.report.bitflip_count >= BITFLIPS_MAX_COUNT
            || self.membership.step != Replacement::Idle
            || pending
            || !self.membership_settled()
        {
            return;
        }
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|i| !self.nodes[*i].retired)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let index = candidates[self.rng_nemesis.below(candidates.len() as u64) as usize];
        if self.nodes[index].node.is_some() {
            self.crash(index);
        }
        if self.nodes[index].restart_at_ms.is_none() {
            let down_ms = self.rng_nemesis.range(20, 1_500);
            self.nodes[index].restart_at_ms = Some(self.now_ms + down_ms);
        }
        let prefix = if self.rng_nemesis.chance(1, 2) {
            "wal-"
        } else {
            ""
        };
        if let Some((name, at)) = self.nodes[index]
            .disk
            .flip_durable_bit(prefix, &mut self.rng_nemesis)
        {
            self.trace(format!(
                "flip a synced bit of node {index}'s {name} at byte {at}"
            ));
            self.nodes[index].bit_flipped = Some((name, at));
            self.report.bitflip_count += 1;
        }
    }

    /// Whether every running replica has applied the configuration whose
    /// voters are exactly the replicas not retired.
    ///
    /// A bit flip loses a replica for good, which the group survives only
    /// once every survivor applied the membership that counts the loss:
    /// raft-rs takes a configuration into use when it applies it, so a
    /// survivor that has the last change in its log but not yet known
    /// committed still counts the lost voter in its quorum and may never win
    /// an election (seed 1737 of the crawl workload, 3 nodes, did this).
    fn membership_settled(&self) -> bool {
        let mut expected: Vec<u64> = self
            .nodes
            .iter()
            .filter(|n| !n.retired)
            .map(|n| n.raft_id)
            .collect();
        expected.sort_unstable();
        // A replica that is down is not asked: once the others, which
        // applied the final membership, elect a leader, it learns it.
        self.nodes
            .iter()
            .filter(|n| !n.retired)
            .filter_map(|n| n.node.as_ref())
            .all(|node| {
                let members = node.members();
                members.outgoing_voters.is_empty() && members.voters == expected
            })
    }

    fn partition(&mut self) {
        let count = self.nodes.len();
        let mut order: Vec<usize> = (0..count).filter(|i| !self.nodes[*i].retired).collect();
        self.rng_nemesis.shuffle(&mut order);
        let heal_ms = self.rng_nemesis.range(50, 3_000);
        let description = match self.rng_nemesis.below(5) {
            0 => match self.current_leader() {
                Some(leader) => {
                    self.network.isolate(&[leader], count);
                    format!("isolate leader {leader}")
                }
                None => return,
            },
            1 => {
                let minority = &order[..(order.len() - 1) / 2];
                self.network.isolate(minority, count);
                format!("isolate minority {minority:?}")
            }
            2 => {
                let majority = &order[..order.len() / 2 + 1];
                self.network.isolate(majority, count);
                format!("isolate majority {majority:?} from the rest")
            }
            3 => {
                // A bridge: two halves that only one node connects.
                let bridge = order[0];
                let rest = &order[1..];
                let (left, right) = rest.split_at(rest.len() / 2);
                for a in left {
                    for b in right {
                        self.network.cut_link(*a, *b);
                    }
                }
                format!("bridge through {bridge}: {left:?} | {right:?}")
            }
            _ => {
                let (a, b) = (order[0], order[1 % order.len()]);
                self.network.cut_link(a, b);
                format!("cut link {a} - {b}")
            }
        };
        self.report.partition_count += 1;
        self.heal_at_ms = Some(self.now_ms + heal_ms);
        self.trace(format!("partition: {description} for {heal_ms} ms"));
    }

    /// Sends messages no member would send: garbage, the wrong group, a
    /// sender outside the group, the wrong recipient, local message types,
    /// unknown enum values. Every one must be dropped without a panic.
    fn inject_forged(&mut self) -> Result<(), SimFailure> {
        let up = self.live_indexes();
        if up.is_empty() {
            return Ok(());
        }
        let target = up[self.rng_nemesis.below(up.len() as u64) as usize];
        let to = self.nodes[target].raft_id;
        let member = self.nodes[(target + 1) % self.nodes.len()].raft_id;
        let heartbeat = |from: u64, to: u64, msg_type: i32| Message {
            msg_type,
            from,
            to,
            term: 1_000_000,
            commit: 1 << 40,
            ..Default::default()
        };
        let kind = self.rng_nemesis.below(6);
        let bytes = match kind {
            0 => {
                let mut bytes = vec![0u8; self.rng_nemesis.range(0, 300) as usize];
                self.rng_nemesis.fill(&mut bytes);
                bytes
            }
            1 => Envelope {
                group_id: self.group_id ^ 1,
                from: member,
                to,
                msgs: vec![heartbeat(member, to, MessageType::MsgHeartbeat as i32)],
            }
            .encode(),
            2 => Envelope {
                group_id: self.group_id,
                from: 999_999,
                to,
                msgs: vec![heartbeat(999_999, to, MessageType::MsgHeartbeat as i32)],
            }
            .encode(),
            3 => Envelope {
                group_id: self.group_id,
                from: member,
                to: to + 77,
                msgs: vec![heartbeat(member, to + 77, MessageType::MsgHeartbeat as i32)],
            }
            .encode(),
            4 => Envelope {
                group_id: self.group_id,
                from: member,
                to,
                msgs: vec![heartbeat(member, to, MessageType::MsgHup as i32)],
            }
            .encode(),
            _ => {
                let mut msg = heartbeat(member, to, 1_000);
                msg.entries.push(raft::eraftpb::Entry {
                    entry_type: 77,
                    ..Default::default()
                });
                let mut bytes = Envelope {
                    group_id: self.group_id,
                    from: member,
                    to,
                    msgs: Vec::new(),
                }
                .encode();
                // Hand-made body: one message with an unknown type.
                let body = msg.encode_to_vec();
                let count_at = bytes.len() - 4;
                bytes[count_at..].copy_from_slice(&1u32.to_le_bytes());
                bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
                bytes.extend_from_slice(&body);
                bytes
            }
        };
        self.report.forged_count += 1;
        let Some(node) = self.nodes[target].steppable() else {
            return Ok(());
        };
        let report = node.step(&bytes);
        if report.accepted_count > 0 {
            return Err(self.fail(format!(
                "node {target} accepted a forged message of kind {kind}: {report:?}"
            )));
        }
        Ok(())
    }

    fn transfer_leadership(&mut self) {
        let Some(leader) = self.current_leader() else {
            return;
        };
        let Some(node) = self.nodes[leader].steppable() else {
            return;
        };
        let voters: Vec<u64> = node
            .members()
            .voters
            .into_iter()
            .filter(|id| *id != node.id())
            .collect();
        if voters.is_empty() {
            return;
        }
        let to = voters[self.rng_nemesis.below(voters.len() as u64) as usize];
        let result = node.transfer_leader(to);
        self.nodes[leader].dirty = true;
        self.trace(format!(
            "transfer leadership {leader} -> id {to}: {result:?}"
        ));
    }

    fn start_replacement(&mut self) {
        if self.membership.step != Replacement::Idle
            || self.membership.started_count >= REPLACEMENTS_MAX_COUNT
            || self
                .nodes
                .iter()
                .any(|n| !n.retired && (n.bit_flipped.is_some() || n.corrupt))
        {
            return;
        }
        let Some(leader) = self.current_leader() else {
            return;
        };
        let Some(node) = self.nodes[leader].node.as_ref() else {
            return;
        };
        // The leader's view may be stale (an old leader that has not heard
        // of a removal yet): never pick a node that is already retired.
        let candidates: Vec<usize> = node
            .members()
            .voters
            .into_iter()
            .filter(|id| *id != node.id())
            .filter_map(|id| self.index_of.get(&id).copied())
            .filter(|index| !self.nodes[*index].retired)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let victim = candidates[self.rng_nemesis.below(candidates.len() as u64) as usize];
        let victim_id = self.nodes[victim].raft_id;
        self.membership.started_count += 1;
        self.membership.step = Replacement::Removing { victim };
        self.membership.change = None;
        self.trace(format!("replace: remove node {victim} (id {victim_id})"));
    }

    fn start_liveness(&mut self) -> Result<(), SimFailure> {
        self.trace("liveness phase: healing every fault".into());
        self.phase = Phase::Liveness;
        self.liveness_start_ms = self.now_ms;
        self.network.heal();
        self.network.set_faults(NetworkFaults::healthy());
        self.heal_at_ms = None;
        for index in 0..self.nodes.len() {
            self.nodes[index].disk.disarm();
            if self.nodes[index].retired {
                continue;
            }
            if self.nodes[index].node.is_none() {
                self.restart(index)?;
            }
            self.resume(index)?;
        }
        Ok(())
    }

    fn resume(&mut self, index: usize) -> Result<(), SimFailure> {
        let slot = &mut self.nodes[index];
        if slot.paused_until_ms.take().is_none() {
            return Ok(());
        }
        slot.next_tick_ms = self.now_ms + slot.tick_period_ms;
        slot.dirty = true;
        if slot.staged_until_ms.is_some() {
            // Stepped once the staged Ready is finished.
            return Ok(());
        }
        for bytes in std::mem::take(&mut slot.held) {
            self.step_packet(index, &bytes)?;
        }
        Ok(())
    }

    fn scheduled(&mut self) -> Result<(), SimFailure> {
        if self.heal_at_ms.is_some_and(|at| at <= self.now_ms) {
            self.heal_at_ms = None;
            self.network.heal();
            self.trace("heal partition".into());
        }
        for index in 0..self.nodes.len() {
            if self.nodes[index]
                .restart_at_ms
                .is_some_and(|at| at <= self.now_ms)
                && !self.nodes[index].retired
            {
                self.restart(index)?;
            }
            if self.nodes[index]
                .paused_until_ms
                .is_some_and(|at| at <= self.now_ms)
            {
                self.resume(index)?;
                self.trace(format!("resume node {index}"));
            }
        }
        Ok(())
    }

    // ---- the world moving ----------------------------------------------

    fn deliver(&mut self) -> Result<(), SimFailure> {
        for packet in self.network.take_due(self.now_ms) {
            let slot = &mut self.nodes[packet.to];
            if slot.node.is_none() {
                continue;
            }
            if slot.paused_until_ms.is_some() || slot.staged_until_ms.is_some() {
                if slot.held.len() < HELD_PACKETS_MAX_COUNT {
                    slot.held.push(packet.bytes);
                }
                continue;
            }
            slot.dirty = true;
            self.step_packet(packet.to, &packet.bytes)?;
        }
        Ok(())
    }

    /// Steps a packet sent by a replica. A commit index beyond the
    /// receiver's log, from a real member, means the receiver lost entries
    /// it had acknowledged.
    fn step_packet(&mut self, index: usize, bytes: &[u8]) -> Result<(), SimFailure> {
        let Some(node) = self.nodes[index].steppable() else {
            return Ok(());
        };
        let report = node.step(bytes);
        if self.options.trace {
            if let Some(reason) = &report.first_drop {
                let line = format!(
                    "node {index} dropped {} message(s): {reason}",
                    report.dropped_count
                );
                self.trace(line);
            }
        }
        let Some(node) = self.nodes[index].node.as_ref() else {
            return Ok(());
        };
        if let Some(reason @ crate::error::DropReason::CommitBeyondLog { .. }) = report.first_drop {
            let s = node.status();
            return Err(self.fail(format!(
                "node {index} (id {}) was told a commit index beyond its log ({reason}): it lost entries it had acknowledged (a lost fsync); its state: term {} commit {} applied {} first {} last {} snapshot {}",
                s.id, s.term, s.commit, s.applied, s.first_index, s.last_index, s.snapshot_index
            )));
        }
        Ok(())
    }

    fn tick_nodes(&mut self) {
        for slot in &mut self.nodes {
            if !slot.is_up() || slot.staged_until_ms.is_some() {
                // A staged node catches up on its ticks once finished.
                continue;
            }
            while slot.next_tick_ms <= self.now_ms {
                if let Some(node) = slot.node.as_mut() {
                    node.tick();
                }
                slot.next_tick_ms += slot.tick_period_ms;
                slot.dirty = true;
            }
        }
    }

    fn process_nodes(&mut self) -> Result<(), SimFailure> {
        for index in 0..self.nodes.len() {
            let slot = &mut self.nodes[index];
            if !slot.is_up() {
                continue;
            }
            if slot.staged_until_ms.is_some_and(|at| at > self.now_ms) {
                continue;
            }
            let finishing = slot.staged_until_ms.take().is_some();
            let Some(node) = slot.node.as_mut() else {
                continue;
            };
            if !slot.dirty && !node.has_ready() {
                continue;
            }
            slot.dirty = false;
            let mut transport = SimTransport {
                from: index,
                now_ms: self.now_ms,
                network: &mut self.network,
                index_of: &self.index_of,
            };
            // Some rounds split as the replica ROM runs them: the early
            // sends leave, the world moves for 1-5 ms (the peers may
            // persist and answer, this node may crash), then `process`.
            if !finishing && self.rng_stage.chance(1, 4) {
                match node.send_early(&mut transport) {
                    Ok(0) => {}
                    Ok(_) => {
                        let at_ms = self.now_ms + self.rng_stage.range(1, 6);
                        self.nodes[index].staged_until_ms = Some(at_ms);
                        self.report.early_rounds_count += 1;
                        continue;
                    }
                    Err(error) if self.nodes[index].disk.take_fired() => {
                        self.fail_stop(index, &error);
                        continue;
                    }
                    Err(error) => {
                        return Err(self.fail(format!("node {index} failed: {error}")));
                    }
                }
            }
            let Some(node) = self.nodes[index].node.as_mut() else {
                continue;
            };
            let mut transport = SimTransport {
                from: index,
                now_ms: self.now_ms,
                network: &mut self.network,
                index_of: &self.index_of,
            };
            let outputs = match node.process(&mut transport) {
                Ok(outputs) => outputs,
                Err(error) if self.nodes[index].disk.take_fired() => {
                    self.fail_stop(index, &error);
                    continue;
                }
                Err(error) => return Err(self.fail(format!("node {index} failed: {error}"))),
            };
            for output in outputs {
                self.route(index, output)?;
            }
            if let Some(violation) = self.applied_log.borrow().violation.clone() {
                return Err(self.fail(violation));
            }
            let snapshotting = self.nodes[index]
                .node
                .as_ref()
                .is_some_and(|n| n.snapshot_in_progress().is_some());
            if snapshotting && self.phase == Phase::Safety && self.rng_nemesis.chance(1, 300) {
                // A power loss between two chunks of a snapshot: the node
                // must reopen from its previous snapshot and its log. (A
                // snapshot spans a few rounds only, so the nemesis's own
                // crashes seldom land inside one.)
                let down_ms = self.rng_nemesis.range(20, 500);
                self.crash(index);
                self.nodes[index].restart_at_ms = Some(self.now_ms + down_ms);
                continue;
            }
            if finishing && self.nodes[index].is_up() {
                // What arrived while the Ready was staged; processed in the
                // next round.
                for bytes in std::mem::take(&mut self.nodes[index].held) {
                    self.step_packet(index, &bytes)?;
                }
                self.nodes[index].dirty = true;
            }
        }
        Ok(())
    }

    // ---- clients --------------------------------------------------------

    fn drive_clients(&mut self) -> Result<(), SimFailure> {
        for c in 0..self.clients.len() {
            if self.clients[c].pending.is_none() {
                if self.phase == Phase::Drain || self.now_ms < self.clients[c].idle_until_ms {
                    continue;
                }
                let Some(request) =
                    self.workload
                        .next_request(c, self.now_ms, &mut self.rng_clients)
                else {
                    let client = &mut self.clients[c];
                    client.idle_until_ms = self.now_ms + 5;
                    if self.phase == Phase::Liveness {
                        client.completed_in_liveness = true;
                    }
                    continue;
                };
                let client = &mut self.clients[c];
                if matches!(request, Request::Write(_)) {
                    client.seq += 1;
                }
                client.pending = Some(PendingRequest {
                    request,
                    seq: client.seq,
                    invoked_ms: self.now_ms,
                    attempt: None,
                    retry_at_ms: self.now_ms,
                });
            }
            let now = self.now_ms;
            if self.clients[c].client_id.is_none() {
                self.register(c);
                continue;
            }
            let Some(pending) = self.clients[c].pending.as_mut() else {
                continue;
            };
            if pending
                .attempt
                .as_ref()
                .is_some_and(|a| a.deadline_ms <= now)
            {
                pending.attempt = None;
                pending.retry_at_ms = now;
                let target = self.rng_clients.below(self.nodes.len() as u64) as usize;
                self.clients[c].target = target;
            }
            let Some(pending) = self.clients[c].pending.as_ref() else {
                continue;
            };
            if pending.attempt.is_none() && pending.retry_at_ms <= now {
                self.attempt(c)?;
            }
        }
        Ok(())
    }

    /// Registers client `c`'s session (its nonce is `c`), retrying on
    /// another node after a timeout or an error.
    fn register(&mut self, c: usize) {
        let now = self.now_ms;
        let client = &mut self.clients[c];
        if client
            .registration
            .as_ref()
            .is_some_and(|r| r.deadline_ms > now)
            || client.register_at_ms > now
        {
            return;
        }
        client.registration = None;
        let live = self.live_indexes();
        let target = if live.contains(&self.clients[c].target) {
            self.clients[c].target
        } else if live.is_empty() {
            self.clients[c].register_at_ms = now + 10;
            return;
        } else {
            live[self.rng_clients.below(live.len() as u64) as usize]
        };
        let time_ms = EPOCH_MS + now + self.nodes[target].clock_skew_ms;
        let Some(node) = self.nodes[target].steppable() else {
            return;
        };
        let result = node.register(c as u64, time_ms);
        self.nodes[target].dirty = true;
        let backoff_ms = self.rng_clients.range(5, 30);
        let client = &mut self.clients[c];
        match result {
            Ok(()) => {
                client.registration = Some(Registration {
                    node: target,
                    deadline_ms: now + ATTEMPT_TIMEOUT_MS,
                });
            }
            Err(RequestError::NotLeader {
                leader_id: Some(id),
            }) => {
                client.target = self.index_of.get(&id).copied().unwrap_or(target);
                client.register_at_ms = now + backoff_ms;
            }
            Err(_) => {
                client.target = self.rng_clients.below(self.nodes.len() as u64) as usize;
                client.register_at_ms = now + backoff_ms;
            }
        }
    }

    fn attempt(&mut self, c: usize) -> Result<(), SimFailure> {
        let mut target = self.clients[c].target;
        if target >= self.nodes.len() || self.nodes[target].node.is_none() {
            let live = self.live_indexes();
            if live.is_empty() {
                if let Some(p) = self.clients[c].pending.as_mut() {
                    p.retry_at_ms = self.now_ms + 10;
                }
                return Ok(());
            }
            target = live[self.rng_clients.below(live.len() as u64) as usize];
            self.clients[c].target = target;
        }
        let now = self.now_ms;
        let time_ms = EPOCH_MS + now + self.nodes[target].clock_skew_ms;
        let incarnation = self.nodes[target].incarnation;
        let Some(client_id) = self.clients[c].client_id else {
            return Ok(());
        };
        let Some(pending) = self.clients[c].pending.as_ref() else {
            return Ok(());
        };
        let (request, seq) = (pending.request.clone(), pending.seq);
        let Some(node) = self.nodes[target].steppable() else {
            return Ok(());
        };
        let result = match &request {
            Request::Write(command) => node
                .propose(client_id, seq, time_ms, command.clone())
                .map(|()| None),
            Request::Read(query) => node.read_index(query.clone()).map(Some),
        };
        self.nodes[target].dirty = true;
        match result {
            Ok(read_id) => {
                if let Some(p) = self.clients[c].pending.as_mut() {
                    p.attempt = Some(Attempt {
                        node: target,
                        incarnation,
                        read_id,
                        deadline_ms: now + ATTEMPT_TIMEOUT_MS,
                    });
                }
                Ok(())
            }
            Err(error) => self.retry_later(c, &error),
        }
    }

    fn retry_later(&mut self, c: usize, error: &RequestError) -> Result<(), SimFailure> {
        if !error.is_retryable() {
            return Err(self.fail(format!("client {c} got a non-retryable error: {error}")));
        }
        let backoff_ms = self.rng_clients.range(5, 30);
        let target = match error {
            RequestError::NotLeader {
                leader_id: Some(id),
            } => self.index_of.get(id).copied(),
            _ => None,
        };
        let client = &mut self.clients[c];
        client.target =
            target.unwrap_or_else(|| self.rng_clients.below(self.nodes.len() as u64) as usize);
        if let Some(pending) = client.pending.as_mut() {
            pending.attempt = None;
            pending.retry_at_ms = self.now_ms + backoff_ms;
        }
        Ok(())
    }

    fn complete(&mut self, c: usize, response: &[u8]) {
        let Some(pending) = self.clients[c].pending.take() else {
            return;
        };
        self.workload.on_complete(
            c,
            pending.invoked_ms,
            self.now_ms,
            &pending.request,
            response,
        );
        self.report.completed_count += 1;
        let client = &mut self.clients[c];
        client.idle_until_ms = self.now_ms + self.rng_clients.range(0, 20);
        if self.phase != Phase::Safety {
            client.completed_in_liveness = true;
            self.served_since_heal = true;
        }
    }

    fn route(&mut self, index: usize, output: Output) -> Result<(), SimFailure> {
        match output {
            Output::Proposal {
                client_id,
                seq,
                result,
            } => {
                let Some(c) = self
                    .clients
                    .iter()
                    .position(|cl| cl.client_id == Some(client_id))
                else {
                    return Ok(());
                };
                let Some(pending) = self.clients.get(c).and_then(|cl| cl.pending.as_ref()) else {
                    return Ok(());
                };
                if pending.seq != seq || !matches!(pending.request, Request::Write(_)) {
                    return Ok(());
                }
                let on_this_node = pending.attempt.as_ref().is_some_and(|a| a.node == index);
                match result {
                    Ok(response) => self.complete(c, &response),
                    Err(error) if on_this_node => self.retry_later(c, &error)?,
                    Err(error) if !error.is_retryable() => {
                        return Err(
                            self.fail(format!("client {c} got a non-retryable error: {error}"))
                        )
                    }
                    Err(_) => {}
                }
            }
            Output::Registered { nonce, result } => {
                let Some(client) = usize::try_from(nonce)
                    .ok()
                    .and_then(|c| self.clients.get_mut(c))
                else {
                    return Ok(());
                };
                if client.client_id.is_some() {
                    // A slower attempt's session: an orphan that expires.
                    return Ok(());
                }
                match result {
                    Ok(client_id) => {
                        if self
                            .clients
                            .iter()
                            .any(|cl| cl.client_id == Some(client_id))
                        {
                            return Err(
                                self.fail(format!("two clients were given session {client_id}"))
                            );
                        }
                        let client = &mut self.clients[nonce as usize];
                        client.client_id = Some(client_id);
                        client.registration = None;
                    }
                    Err(_)
                        if client
                            .registration
                            .as_ref()
                            .is_some_and(|r| r.node == index) =>
                    {
                        client.registration = None;
                        client.register_at_ms = self.now_ms + 10;
                    }
                    Err(_) => {}
                }
            }
            Output::Read { read_id, result } => {
                let incarnation = self.nodes[index].incarnation;
                let found = self.clients.iter().position(|cl| {
                    cl.pending
                        .as_ref()
                        .and_then(|p| p.attempt.as_ref())
                        .is_some_and(|a| {
                            a.node == index
                                && a.incarnation == incarnation
                                && a.read_id == Some(read_id)
                        })
                });
                if let Some(c) = found {
                    match result {
                        Ok(response) => self.complete(c, &response),
                        Err(error) => self.retry_later(c, &error)?,
                    }
                }
            }
            Output::MembershipChange { change_id, result } => {
                let incarnation = self.nodes[index].incarnation;
                if self.membership.change == Some((index, incarnation, change_id)) {
                    self.membership.change = None;
                    match result {
                        Ok(membership) => {
                            self.trace(format!(
                                "membership change applied: voters {:?} learners {:?}",
                                membership.voters, membership.learners
                            ));
                            self.report.membership_change_count += 1;
                        }
                        Err(error) if error.is_retryable() => {
                            self.membership.retry_at_ms = self.now_ms + 20;
                        }
                        Err(error) => self.trace(format!("membership change refused: {error}")),
                    }
                }
            }
            Output::Event(Event::LeaderChanged {
                leader_id,
                role,
                term,
            }) => {
                if role == Role::Leader {
                    let id = self.nodes[index].raft_id;
                    if let Some(previous) = self.leaders_by_term.insert(term, id) {
                        if previous != id {
                            return Err(self.fail(format!(
                                "election safety: nodes {previous} and {id} both led term {term}"
                            )));
                        }
                    }
                    self.report.max_term = self.report.max_term.max(term);
                    self.trace(format!("node {index} leads term {term}"));
                } else if self.options.trace {
                    self.trace(format!(
                        "node {index}: {role:?}, leader {leader_id:?}, term {term}"
                    ));
                }
            }
            Output::Event(Event::SnapshotInstalled { index: at }) => {
                self.report.snapshots_installed_count += 1;
                self.trace(format!("node {index} installed a snapshot at {at}"));
            }
            Output::Event(Event::Removed) => self.trace(format!("node {index} was removed")),
            Output::Event(Event::MembershipChanged(_)) => {}
        }
        Ok(())
    }

    // ---- membership ------------------------------------------------------

    fn drive_membership(&mut self) -> Result<(), SimFailure> {
        if self.membership.step == Replacement::Idle
            || self.membership.retry_at_ms > self.now_ms
            || self.phase == Phase::Safety
                && self.heal_at_ms.is_some()
                && self.membership.change.is_some()
        {
            return Ok(());
        }
        // A change in flight on a node that crashed will never report back.
        if let Some((node, incarnation, _)) = self.membership.change {
            if self.nodes[node].incarnation == incarnation && self.nodes[node].node.is_some() {
                return Ok(());
            }
            self.membership.change = None;
        }
        let Some(leader) = self.current_leader() else {
            return Ok(());
        };
        let Some(node) = self.nodes[leader].node.as_ref() else {
            return Ok(());
        };
        let members = node.members();
        let status = node.status();
        let step = self.membership.step;
        let next = match step {
            Replacement::Removing { victim } => {
                let victim_id = self.nodes[victim].raft_id;
                if !members.contains(victim_id) {
                    self.retire(victim);
                    let joiner = self.add_slot();
                    self.start_joiner(joiner)?;
                    Some(Replacement::Adding { joiner })
                } else {
                    self.propose_change(leader, |n| n.remove_node(victim_id))?;
                    None
                }
            }
            Replacement::Adding { joiner } => {
                let joiner_id = self.nodes[joiner].raft_id;
                if members.contains(joiner_id) {
                    Some(Replacement::Promoting { joiner })
                } else {
                    let metadata = format!("node-{joiner_id}").into_bytes();
                    self.propose_change(leader, |n| n.add_learner(joiner_id, metadata))?;
                    None
                }
            }
            Replacement::Promoting { joiner } => {
                let joiner_id = self.nodes[joiner].raft_id;
                if members.voters.contains(&joiner_id) {
                    self.trace(format!(
                        "replace: node {joiner} (id {joiner_id}) is a voter"
                    ));
                    Some(Replacement::Idle)
                } else {
                    let caught_up = status
                        .progress
                        .iter()
                        .any(|p| p.id == joiner_id && p.matched + 5 >= status.commit);
                    if caught_up {
                        self.propose_change(leader, |n| n.promote_learner(joiner_id))?;
                    } else {
                        self.membership.retry_at_ms = self.now_ms + 20;
                    }
                    None
                }
            }
            Replacement::Idle => None,
        };
        if let Some(next) = next {
            self.membership.step = next;
        }
        Ok(())
    }

    fn propose_change(
        &mut self,
        leader: usize,
        change: impl FnOnce(&mut SimNodeHandle<W>) -> Result<ChangeId, RequestError>,
    ) -> Result<(), SimFailure> {
        let incarnation = self.nodes[leader].incarnation;
        let Some(node) = self.nodes[leader].steppable() else {
            self.membership.retry_at_ms = self.now_ms + 1;
            return Ok(());
        };
        let result = change(node);
        self.nodes[leader].dirty = true;
        match result {
            Ok(change_id) => self.membership.change = Some((leader, incarnation, change_id)),
            Err(error) if error.is_retryable() => self.membership.retry_at_ms = self.now_ms + 20,
            Err(error) => {
                return Err(self.fail(format!(
                    "membership change refused by leader {leader}: {error}"
                )));
            }
        }
        Ok(())
    }

    fn retire(&mut self, index: usize) {
        self.trace(format!("replace: node {index} retired"));
        let slot = &mut self.nodes[index];
        slot.node = None;
        slot.staged_until_ms = None;
        slot.retired = true;
        slot.restart_at_ms = None;
        slot.paused_until_ms = None;
        slot.incarnation += 1;
        for client in &mut self.clients {
            if let Some(pending) = &mut client.pending {
                if pending.attempt.as_ref().is_some_and(|a| a.node == index) {
                    pending.attempt = None;
                    pending.retry_at_ms = self.now_ms + 1;
                }
            }
        }
    }

    fn start_joiner(&mut self, index: usize) -> Result<(), SimFailure> {
        let join = Join {
            group_id: self.group_id,
            id: self.nodes[index].raft_id,
        };
        let machine = self.machine(index);
        let options = Options::with_seed(self.rng_nodes.next_u64());
        let node = Node::join(
            self.nodes[index].disk.clone(),
            self.config.clone(),
            machine,
            join,
            options,
        )
        .map_err(|e| self.fail(format!("join of node {index} failed: {e}")))?;
        self.nodes[index].node = Some(node);
        self.trace(format!(
            "replace: node {index} (id {}) joins",
            self.nodes[index].raft_id
        ));
        Ok(())
    }

    // ---- the end -----------------------------------------------------

    /// Whether every client is idle, no membership change is under way, and
    /// every replica applied the leader's whole log.
    fn converged(&self) -> bool {
        if self.clients.iter().any(|c| c.pending.is_some())
            || self.membership.step != Replacement::Idle
        {
            return false;
        }
        let Some(leader) = self.current_leader() else {
            return false;
        };
        let Some(leader_node) = self.nodes[leader].node.as_ref() else {
            return false;
        };
        let leader_status = leader_node.status();
        if leader_status.commit != leader_status.last_index
            || leader_status.membership.voters.len() != self.options.node_count
        {
            return false;
        }
        self.nodes.iter().filter(|s| !s.retired).all(|slot| {
            slot.node
                .as_ref()
                .is_some_and(|n| n.status().applied == leader_status.commit)
        })
    }

    fn final_checks(&mut self) -> Result<(), SimFailure> {
        let mut reference: Option<(usize, Vec<u8>)> = None;
        for index in 0..self.nodes.len() {
            let Some(node) = self.nodes[index].node.as_ref() else {
                continue;
            };
            let state = node.state_machine().snapshot();
            match &reference {
                None => reference = Some((index, state)),
                Some((first, expected)) if *expected != state => {
                    return Err(self.fail(format!(
                        "replicas diverged: node {index}'s state differs from node {first}'s at the same applied index"
                    )));
                }
                Some(_) => {}
            }
        }
        match self.workload.check() {
            Ok(summary) => {
                self.report.workload_summary = summary;
                Ok(())
            }
            Err(violation) => Err(self.fail(format!("{} workload check: {violation}", W::NAME))),
        }
    }
}

impl<W: Workload> Simulation<W> {
    /// Packets still in flight (for tests of the simulator itself).
    pub fn in_flight_count(&self) -> usize {
        self.network.in_flight_count()
    }
}
