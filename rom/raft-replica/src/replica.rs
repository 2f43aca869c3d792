//! The replica: setup, the event loop, and request and output handling.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use futures::channel::mpsc;
use futures::future::{select, Either};
use futures::StreamExt;
use queue::QueueMachine;
use raft_client::access::{GroupKey, Scope};
use raft_client::proto::{self, Activity, Member, ReplicaStatus, Request, RequestBatch, Response};
use raft_core::{
    Bootstrap, ChangeId, Config, Error as RaftError, Event, FsDir, Join, Node, Options, Output,
    ReadId, RequestError, Role,
};
use ww_guest::ww_api::{anchor, host, ops, receiver, reply, topic};
use ww_guest::Env;

use crate::outbox::Outbox;
use crate::replies::{Replies, Slot};

/// One Raft tick. Heartbeats every 2 ticks, elections after 10-20
/// (raft-core's defaults): 200 ms and 1-2 s.
const TICK_MS: u64 = 100;

/// The longest a loop round waits for input while raft-core has work left
/// (a snapshot in progress).
const BUSY_WAIT_MS: u64 = 1;

/// Ticks caught up at most per loop round after a stall: a replica paused
/// for a minute must not fire hundreds of ticks at once.
const CATCH_UP_TICKS_MAX: u64 = 10;

/// The leader proposes a queue `Tick` this often, so lease expiry and
/// delays advance without client traffic.
const QUEUE_TICK_MS: u64 = 1_000;

/// A status event goes out at least this often, and on every change.
const STATUS_EVERY_MS: u64 = 5_000;

/// raft-core's client id for commands outside any session: the leader's
/// own queue ticks, which are never retried (a lost tick is replaced by the
/// next one). Clients may not use it: they register a session.
const NO_SESSION_CLIENT_ID: u64 = 0;

/// Capacity of the request and inbox channels.
const CHANNEL_CAPACITY: u32 = 1024;

/// Messages taken per `recvBatch`.
const RECV_BATCH: u32 = 1024;

/// The log directory inside the granted volume.
const LOG_DIR: &str = "/data/raft";

/// Session table bound of a new group: far more clients than are ever
/// active at once.
const SESSIONS_MAX: u64 = 100_000;

/// Log time after which an idle client session of a new group expires:
/// far longer than a client retries one command (30 s) or waits out a
/// failover, short enough that the sessions of finished `ww run` processes
/// do not pile up. A client idle for longer registers again, transparently
/// when the command it was about to send never left (raft-client).
const SESSION_TIMEOUT_MS: u64 = 10 * 60 * 1_000;

pub(crate) enum Input {
    /// Request messages: data, reply capability, origin peer id.
    Requests(Vec<(Vec<u8>, Option<capnp::capability::Client>, String)>),
    /// Inbox messages: data, origin peer id, and for a peer's call, where
    /// to answer it.
    Envelopes(Vec<(Vec<u8>, String, Option<reply::Client>)>),
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

fn config() -> Config {
    Config {
        // A snapshot travels in one channel message, capped at 64 MiB.
        max_snapshot_bytes: 48 * 1024 * 1024,
        // raft-core captures a snapshot in O(1) (the queue's KV map is
        // copy-on-write) and serializes, writes and syncs it a chunk per
        // round (docs/raft-core.md, "Snapshots"), so the interval no longer
        // trades against stalls; etcd's default is 100,000 too. The price:
        // a restart replays up to this many entries, and the log holds
        // them (~30 MiB of 256-byte writes).
        snapshot_interval_entries: 100_000,
        // A 256 KiB chunk took ~2 ms of the guest's time to serialize and
        // checksum, and its write made the round's WAL fsyncs wait for it:
        // rounds of 10 ms for the whole snapshot. 64 KiB fits between two
        // rounds (docs/raft-rom.md).
        snapshot_chunk_bytes_max: 64 * 1024,
        // Each channel message costs ~150 µs and a loop round on both
        // sides: a commit broadcast after every write doubled the messages
        // per write at low load (docs/raft-rom.md).
        broadcast_commit: false,
        // Heartbeats every 200 ms; a follower that hears none for 0.7-1.4 s
        // starts a (pre-)vote. raft-core's 1-2 s made the outage after a
        // leader's host died 1.5-2.5 s (make chaos); with check_quorum and
        // pre-vote a slow leader costs at most a needless election, never
        // safety.
        election_ticks_min: 7,
        election_ticks_max: 14,
        ..Config::default()
    }
}

fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    for (index, byte) in wall_ms().to_le_bytes().iter().enumerate() {
        bytes[index] = *byte;
    }
    let entropy = ww_guest::now_ms().rotate_left(17) ^ u64::from_le_bytes(bytes);
    entropy.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

struct Replica {
    peer_id: String,
    key: GroupKey,
    version: String,
    node: Option<Node<QueueMachine, FsDir>>,
    outbox: Outbox,
    replies: Replies,
    proposals: HashMap<(u64, u64), Vec<Slot>>,
    /// Registrations by this replica's own nonce (clients' nonces could
    /// collide; these cannot).
    registrations: HashMap<u64, Slot>,
    next_registration_nonce: u64,
    reads: HashMap<ReadId, Slot>,
    changes: HashMap<ChangeId, Slot>,
    events: topic::Client,
    publishing: std::rc::Rc<std::cell::Cell<bool>>,
    /// What the last published status said of role, term and leader, and
    /// which membership it listed (see [`StatusKey`]).
    last_status: Option<StatusKey>,
    last_status_ms: u64,
    /// Counts the memberships this replica has pointed its outbox at: a
    /// new one means a status to publish.
    membership_generation: u64,
    queue_tick_seq: u64,
    last_queue_tick_ms: u64,
    dropped_messages: u64,
    last_drop: String,
    destroy_after_flush: bool,
    activity: Activity,
    metrics: crate::metrics::Reporter,
}

async fn anchor_cap(
    root: &anchor::Client,
    path: &str,
    cap: capnp::capability::Client,
) -> anyhow::Result<()> {
    ops::set_cap(root, path, cap)
        .await
        .with_context(|| format!("anchoring {path}"))
}

async fn new_channel(
    host: &host::Client,
) -> anyhow::Result<(ww_guest::ww_api::sender::Client, receiver::Client)> {
    let mut request = host.new_channel_request();
    request.get().set_capacity(CHANNEL_CAPACITY);
    let response = request.send().promise.await?;
    let response = response.get()?;
    Ok((response.get_sender()?, response.get_receiver()?))
}

/// Runs the replica until it is destroyed or fails.
pub async fn run(env: Env) -> anyhow::Result<()> {
    let version = env
        .args
        .first()
        .cloned()
        .context("usage: raft-replica VERSION")?;
    let host = env.host.clone();
    let peer_id = ops::peer_id(&host).await?;
    let root = host.root_request().send().pipeline.get_anchor();
    let base = format!("/{peer_id}/raft/{version}");
    let key = crate::access::granted_key(&host).await?;

    let (request_tx, request_rx) = new_channel(&host).await?;
    let (inbox_tx, inbox_rx) = new_channel(&host).await?;
    let pubsub = host.pubsub_request().send().pipeline.get_pubsub();
    let mut join = pubsub.join_request();
    join.get().set_topic(format!("ww/raft/{version}"));
    let events = join.send().pipeline.get_topic();
    anchor_cap(&root, &format!("{base}/inbox"), inbox_tx.client.clone()).await?;
    anchor_cap(&root, &format!("{base}/response"), events.client.clone()).await?;
    // Only holders of the cluster root can read anchors; a process spawned
    // with grants only reaches `request` through a narrower view.
    ops::set_data(&root, &format!("{base}/admin"), &key.mint(&Scope::admin()))
        .await
        .with_context(|| format!("anchoring {base}/admin"))?;
    // Last: a client that finds `request` finds a replica ready to answer.
    anchor_cap(&root, &format!("{base}/request"), request_tx.client.clone()).await?;
    env.export(request_tx.clone());

    let (inputs, mut input_rx) = mpsc::unbounded();
    let node = match Node::open(
        FsDir::open(LOG_DIR)?,
        config(),
        QueueMachine::new(),
        Options::with_seed(seed()),
    ) {
        Ok(node) => {
            eprintln!(
                "raft-replica: reopened raft id {} of group {:032x}",
                node.id(),
                node.group_id()
            );
            Some(node)
        }
        Err(RaftError::NotInitialized) => {
            eprintln!("raft-replica: {base} waits for init or join");
            None
        }
        Err(err) => bail!("cannot open the Raft log in {LOG_DIR}: {err}"),
    };

    ww_guest::spawn(pump_requests(request_rx, inputs.clone()));
    ww_guest::spawn(pump_envelopes(inbox_rx, inputs.clone()));

    let mut replica = Replica {
        peer_id,
        version: version.clone(),
        node,
        outbox: Outbox::new(root, version, key.clone(), inputs),
        key,
        replies: Replies::default(),
        proposals: HashMap::new(),
        registrations: HashMap::new(),
        next_registration_nonce: 1,
        reads: HashMap::new(),
        changes: HashMap::new(),
        events,
        publishing: std::rc::Rc::new(std::cell::Cell::new(false)),
        last_status: None,
        last_status_ms: 0,
        membership_generation: 0,
        queue_tick_seq: wall_ms(),
        last_queue_tick_ms: 0,
        dropped_messages: 0,
        last_drop: String::new(),
        destroy_after_flush: false,
        activity: Activity::default(),
        metrics: crate::metrics::Reporter::new(&host),
    };
    replica.sync_peers();

    let mut next_tick_ms = ww_guest::now_ms() + TICK_MS;
    loop {
        // Work is left (a snapshot is written a chunk per round): the next
        // round comes within a millisecond, not at the next input or tick.
        // Not at once: the guest reads from the host only while every task
        // waits (the executor polls the host's streams when it stalls), so
        // a round must wait on a timer for inputs to come in and replies to
        // leave; a ready timer or a bare yield would hold them until the
        // whole snapshot is written.
        let wait_ms = if replica.node.as_ref().is_some_and(|node| node.has_ready()) {
            BUSY_WAIT_MS
        } else {
            next_tick_ms.saturating_sub(ww_guest::now_ms())
        };
        let mut batch = Vec::new();
        match select(
            input_rx.next(),
            ww_guest::sleep(Duration::from_millis(wait_ms)),
        )
        .await
        {
            Either::Left((Some(input), _)) => batch.push(input),
            Either::Left((None, _)) => bail!("the host closed this replica's channels"),
            Either::Right(_) => {}
        }
        // Everything that arrived together is handled together: one Ready,
        // one fsync (group commit).
        while let Ok(input) = input_rx.try_recv() {
            batch.push(input);
        }
        let now = ww_guest::now_ms();
        let mut ticks = 0;
        while now >= next_tick_ms {
            next_tick_ms += TICK_MS;
            ticks += 1;
        }
        if let Some(node) = replica.node.as_mut() {
            for _ in 0..ticks.min(CATCH_UP_TICKS_MAX) {
                node.tick();
            }
        }
        for input in batch {
            match input {
                Input::Envelopes(envelopes) => replica.step(envelopes),
                Input::Requests(requests) => replica.handle_requests(requests),
            }
        }
        replica.maybe_tick_queue();
        // A leader's appends leave before its own fsync: they are queued on
        // the host connection, and the yield lets the connection's task
        // write them to the host, which sends them on while this guest
        // waits for its fsync (a blocking host call that frees the host's
        // thread). Nothing steps the node during the yield: inputs wait in
        // `input_rx` until the next round.
        if replica.send_early()? > 0 {
            replica.outbox.flush(ww_guest::now_ms());
            ww_guest::yield_now().await;
        }
        replica.process()?;
        // What this round owes the peers that called: their answers carry
        // the messages it queued for them.
        replica.outbox.answer_held();
        replica.replies.flush();
        replica.outbox.flush(ww_guest::now_ms());
        // Snapshot work only once this round's acknowledgements, appends
        // and answers are on their way: a chunk written before them held
        // every round of a snapshot back by its serialization and write
        // (docs/raft-rom.md).
        replica.background_step()?;
        replica.publish_status();
        if replica.metrics.due(ww_guest::now_ms()) {
            let status = replica.status();
            let topics = replica.topic_stats(crate::metrics::TOPICS_REPORTED_MAX);
            replica.metrics.report(&status, &topics, ww_guest::now_ms());
        }
        if replica.destroy_after_flush {
            // Give the replies a moment to leave, then end with success so
            // the supervisor does not restart this replica.
            ww_guest::sleep(Duration::from_millis(200)).await;
            // Close the log's files before deleting them.
            replica.node = None;
            std::fs::remove_dir_all(LOG_DIR).with_context(|| format!("deleting {LOG_DIR}"))?;
            eprintln!("raft-replica: destroyed {}", replica.version);
            return Ok(());
        }
    }
}

async fn pump_requests(receiver: receiver::Client, inputs: mpsc::UnboundedSender<Input>) {
    ww_guest::ww_api::ops::recv_batches(&receiver, RECV_BATCH, |messages| {
        let mut batch = Vec::with_capacity(messages.len() as usize);
        for item in messages.iter() {
            let Ok(message) = item.get_message() else {
                continue;
            };
            let data = message.get_data().map(<[u8]>::to_vec).unwrap_or_default();
            let reply = message.get_caps().ok().and_then(|caps| {
                (!caps.is_empty())
                    .then(|| caps.get(0).get_cap().get_as_capability().ok())
                    .flatten()
            });
            let origin = item
                .get_origin()
                .ok()
                .and_then(|origin| origin.to_string().ok())
                .unwrap_or_default();
            batch.push((data, reply, origin));
        }
        inputs.unbounded_send(Input::Requests(batch)).is_ok()
    })
    .await;
}

async fn pump_envelopes(receiver: receiver::Client, inputs: mpsc::UnboundedSender<Input>) {
    ww_guest::ww_api::ops::recv_batches(&receiver, RECV_BATCH, |messages| {
        let mut batch = Vec::with_capacity(messages.len() as usize);
        for item in messages.iter() {
            let data = item
                .get_message()
                .and_then(|message| message.get_data())
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            let origin = item
                .get_origin()
                .ok()
                .and_then(|origin| origin.to_string().ok())
                .unwrap_or_default();
            let reply = item.has_reply().then(|| item.get_reply().ok()).flatten();
            batch.push((data, origin, reply));
        }
        inputs.unbounded_send(Input::Envelopes(batch)).is_ok()
    })
    .await;
}

/// What a published status says that watchers act on: role, term and
/// leader, and the membership (by the generation that
/// [`Replica::sync_peers`] counts, bumped on every change).
#[derive(PartialEq)]
struct StatusKey {
    raft: Option<((Role, u64), Option<u64>)>,
    membership_generation: u64,
}

/// Whether `output` answers a request with an error.
fn failed(output: &Output) -> bool {
    match output {
        Output::Proposal { result, .. } => result.is_err(),
        Output::Registered { result, .. } => result.is_err(),
        Output::Read { result, .. } => result.is_err(),
        Output::MembershipChange { result, .. } => result.is_err(),
        Output::Event(_) => false,
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::PreCandidate => "pre-candidate",
    }
}

fn error_response(err: &RequestError, leader: Option<Member>) -> Response {
    match err {
        RequestError::NotLeader { .. } => Response::NotLeader { leader },
        RequestError::SessionExpired { .. } => Response::SessionExpired {
            message: err.to_string(),
        },
        other => Response::Error {
            retryable: other.is_retryable(),
            message: other.to_string(),
        },
    }
}

fn refused(message: impl Into<String>) -> Response {
    Response::Error {
        retryable: false,
        message: message.into(),
    }
}

/// Every member of `node`'s group, as applied (none before it is open).
fn members_of(node: Option<&Node<QueueMachine, FsDir>>) -> Vec<Member> {
    let Some(node) = node else {
        return Vec::new();
    };
    let membership = node.members();
    membership
        .ids()
        .into_iter()
        .map(|id| member(id, membership.metadata_of(id), membership.is_voter(id)))
        .collect()
}

/// Member `id`, its peer id read from the metadata it was added with.
fn member(id: u64, metadata: Option<&[u8]>, voter: bool) -> Member {
    Member {
        id,
        peer_id: metadata
            .map(|meta| String::from_utf8_lossy(meta).into_owned())
            .unwrap_or_default(),
        voter,
    }
}

impl Replica {
    fn members(&self) -> Vec<Member> {
        members_of(self.node.as_ref())
    }

    /// The leader, if known and a member. Built alone, not found in
    /// [`Replica::members`]: error answers ask for it, per request.
    fn leader(&self) -> Option<Member> {
        let node = self.node.as_ref()?;
        let id = node.leader_id()?;
        // Only voters are elected.
        node.is_member(id)
            .then(|| member(id, node.metadata_of(id), true))
    }

    /// Points the outbox at the current members.
    fn sync_peers(&mut self) {
        self.membership_generation += 1;
        let Some(node) = &self.node else { return };
        let members = self.members();
        if members.is_empty() {
            // Joined, membership not applied yet: keep what was learned.
            return;
        }
        for member in &members {
            if member.id != node.id() {
                self.outbox.set_peer(member.id, &member.peer_id);
            }
        }
        self.outbox
            .retain(&members.iter().map(|member| member.id).collect::<Vec<_>>());
    }

    /// The counts of the first `max` topics by name, as this replica has
    /// applied them (a follower's may lag the leader's).
    fn topic_stats(&self, max: usize) -> Vec<queue::TopicStats> {
        let Some(node) = &self.node else {
            return Vec::new();
        };
        let machine = node.state_machine();
        let Ok(queue::Reply::Topics(topics)) = machine.run_query(&queue::Query::Topics) else {
            return Vec::new();
        };
        topics
            .iter()
            .take(max)
            .filter_map(|topic| {
                match machine.run_query(&queue::Query::Stats {
                    topic: topic.name.clone(),
                }) {
                    Ok(queue::Reply::Stats(stats)) => Some(stats),
                    _ => None,
                }
            })
            .collect()
    }

    fn status(&self) -> ReplicaStatus {
        let mut status = ReplicaStatus {
            peer_id: self.peer_id.clone(),
            version: self.version.clone(),
            role: "uninitialized".to_owned(),
            dropped_messages: self.dropped_messages,
            outbound_dropped: self.outbox.dropped_count(),
            last_drop: self.last_drop.clone(),
            activity: Activity {
                reply_messages: self.replies.sent_count(),
                ..self.activity.clone()
            },
            ..ReplicaStatus::default()
        };
        if let Some(node) = &self.node {
            let raft = node.status();
            status.initialized = true;
            status.group_id = format!("{:032x}", raft.group_id);
            status.raft_id = raft.id;
            status.role = role_name(raft.role).to_owned();
            status.term = raft.term;
            status.leader_id = raft.leader_id.unwrap_or(0);
            status.commit = raft.commit;
            status.applied = raft.applied;
            status.last_index = raft.last_index;
            status.members = self.members();
            status.fsyncs = raft.counters.storage.fsync_count;
            status.entries_persisted = raft.counters.storage.entries_persisted_count;
            status.log_bytes_written = raft.counters.storage.log_bytes_written;
            status.dropped_messages += raft.counters.messages_dropped_count;
            status.envelopes_sent = raft.counters.envelopes_sent_count;
            status.envelopes_sent_early = raft.counters.envelopes_sent_early_count;
            status.messages_stepped = raft.counters.messages_stepped_count;
            status.activity.snapshots_taken = raft.counters.snapshots_taken_count;
            status.activity.commands_applied = raft.counters.commands_applied_count;
            status.progress = raft
                .progress
                .iter()
                .map(|peer| (peer.id, peer.matched, peer.state.to_owned()))
                .collect();
        }
        status
    }

    /// Steps Raft messages whose authenticated origin is the host the
    /// membership maps their sender to. raft-core checks everything else.
    fn step(&mut self, envelopes: Vec<(Vec<u8>, String, Option<reply::Client>)>) {
        let Some(node) = self.node.as_mut() else {
            self.dropped_messages += envelopes.len() as u64;
            self.last_drop = "not initialized yet".to_owned();
            for (_, _, reply) in envelopes {
                if let Some(reply) = reply {
                    crate::outbox::answer(&reply, &[]);
                }
            }
            return;
        };
        let limits = node.envelope_limits();
        for (data, origin, reply) in envelopes {
            // A call is answered at the end of the round, to the raft id
            // its last stepped envelope came from; at once, empty, if it
            // opened but nothing in it was stepped. One that does not open
            // is not answered: its `Reply` is dropped and the call fails.
            let mut caller = None;
            let data = match self.key.open(&data) {
                Ok(data) => data,
                Err(reason) => {
                    self.dropped_messages += 1;
                    self.last_drop = format!("inbox message from {origin} refused: {reason}");
                    continue;
                }
            };
            let frames = match raft_client::proto::unframe_envelopes(data) {
                Ok(frames) => frames,
                Err(err) => {
                    self.dropped_messages += 1;
                    self.last_drop = format!("garbled inbox message from {origin}: {err}");
                    continue;
                }
            };
            for frame in frames {
                let header = match raft_core::peek_header(frame, &limits) {
                    Ok(header) => header,
                    Err(reason) => {
                        self.dropped_messages += 1;
                        self.last_drop = format!("envelope from {origin}: {reason}");
                        continue;
                    }
                };
                match node.metadata_of(header.from) {
                    // A sender this replica does not know yet (it joined and
                    // has not applied the membership): answer it at the
                    // host its message came through.
                    None => self.outbox.learn(header.from, &origin),
                    Some(expected) if expected != origin.as_bytes() => {
                        self.dropped_messages += 1;
                        self.last_drop = format!(
                            "forged envelope: claims raft id {} (host {}) but came through {origin}",
                            header.from,
                            String::from_utf8_lossy(expected)
                        );
                        continue;
                    }
                    Some(_) => {}
                }
                let report = node.step(frame);
                if let Some(reason) = report.first_drop {
                    self.last_drop = format!("envelope from {origin}: {reason}");
                }
                caller = Some(header.from);
            }
            match (reply, caller) {
                (Some(reply), Some(from)) => self.outbox.hold(from, reply),
                (Some(reply), None) => crate::outbox::answer(&reply, &[]),
                (None, _) => {}
            }
        }
    }

    fn handle_requests(
        &mut self,
        requests: Vec<(Vec<u8>, Option<capnp::capability::Client>, String)>,
    ) {
        for (data, reply, origin) in requests {
            self.activity.request_messages += 1;
            let Some(reply) = reply else { continue };
            let reply = ww_guest::ww_api::sender::Client { client: reply };
            let batch = match proto::decode::<RequestBatch>(&data) {
                Ok(batch) if (1..=proto::BATCH_REQUESTS_MAX).contains(&batch.requests.len()) => {
                    batch
                }
                Ok(batch) => {
                    // An empty batch would hold a reply slot that no answer
                    // ever closes.
                    let id = self.replies.open(reply, 1, &origin);
                    self.replies.answer(
                        Replies::slot(id, 0),
                        refused(format!(
                            "a batch carries 1 to {} requests, not {}",
                            proto::BATCH_REQUESTS_MAX,
                            batch.requests.len()
                        )),
                    );
                    continue;
                }
                Err(err) => {
                    // Unreadable: answer on request id 0 so the sender
                    // learns why, then move on.
                    let id = self.replies.open(reply, 1, &origin);
                    self.replies.answer(
                        Replies::slot(id, 0),
                        refused(format!("garbage request: {err}")),
                    );
                    continue;
                }
            };
            if let Err(message) = self.replies.admit(&origin) {
                let id = self.replies.open(reply, batch.requests.len(), &origin);
                for (request_id, _) in batch.requests {
                    self.replies.answer(
                        Replies::slot(id, request_id),
                        Response::Error {
                            retryable: true,
                            message: message.clone(),
                        },
                    );
                }
                continue;
            }
            self.activity.requests += batch.requests.len() as u64;
            let id = self.replies.open(reply, batch.requests.len(), &origin);
            let scope = self.key.verify(&batch.token);
            for (request_id, request) in batch.requests {
                let slot = Replies::slot(id, request_id);
                let checked = match &scope {
                    Ok(scope) => crate::access::check(scope, &self.key, &request),
                    Err(err) => Ok(Some(crate::access::refusal(err))),
                };
                let answered = match checked {
                    Ok(answered) => answered,
                    Err(message) => Some(refused(message)),
                };
                if let Some(response) = answered {
                    self.replies.answer(slot, response);
                    continue;
                }
                if let Some(response) = self.handle(slot, request) {
                    self.replies.answer(slot, response);
                }
            }
        }
    }

    /// Handles one request; returns its response now, or `None` when it
    /// will come from an output.
    fn handle(&mut self, slot: Slot, request: Request) -> Option<Response> {
        match request {
            Request::Status => Some(Response::Status(Box::new(self.status()))),
            Request::Init {
                group_id,
                id,
                voters,
            } => Some(self.init(group_id, id, voters)),
            Request::Join { group_id, id } => Some(self.join(group_id, id)),
            Request::Destroy { force } => {
                let member = self
                    .node
                    .as_ref()
                    .is_some_and(|node| node.members().contains(node.id()));
                if member && !force {
                    return Some(refused("this replica is still a member of its group; remove it first (remove-replica)"));
                }
                self.destroy_after_flush = true;
                Some(Response::Done)
            }
            other => {
                let Some(node) = self.node.as_mut() else {
                    return Some(Response::Error {
                        retryable: true,
                        message: "this replica is not initialized yet".to_owned(),
                    });
                };
                let result = match other {
                    Request::Command {
                        client_id,
                        seq,
                        command,
                    } => {
                        if client_id == NO_SESSION_CLIENT_ID {
                            return Some(refused(
                                "client id 0 has no session; register one first (Register)",
                            ));
                        }
                        node.propose(client_id, seq, wall_ms(), command).map(|()| {
                            self.proposals
                                .entry((client_id, seq))
                                .or_default()
                                .push(slot);
                        })
                    }
                    Request::Register => {
                        let nonce = self.next_registration_nonce;
                        self.next_registration_nonce += 1;
                        node.register(nonce, wall_ms()).map(|()| {
                            self.registrations.insert(nonce, slot);
                        })
                    }
                    Request::Query { query } => node.read_index(query).map(|read_id| {
                        self.reads.insert(read_id, slot);
                    }),
                    Request::AddLearner { id, peer_id } => {
                        node.add_learner(id, peer_id.into_bytes()).map(|change| {
                            self.changes.insert(change, slot);
                        })
                    }
                    Request::Promote { id } => node.promote_learner(id).map(|change| {
                        self.changes.insert(change, slot);
                    }),
                    Request::Remove { id } => node.remove_node(id).map(|change| {
                        self.changes.insert(change, slot);
                    }),
                    Request::TransferLeader { id } => {
                        let result = node.transfer_leader(id);
                        return Some(match result {
                            Ok(()) => Response::Done,
                            Err(err) => error_response(&err, self.leader()),
                        });
                    }
                    Request::Status
                    | Request::Init { .. }
                    | Request::Join { .. }
                    | Request::Destroy { .. }
                    | Request::Mint { .. }
                    | Request::GroupKey => return Some(refused("unreachable request kind")),
                };
                result.err().map(|err| error_response(&err, self.leader()))
            }
        }
    }

    fn init(&mut self, group_id: u128, id: u64, voters: Vec<(u64, String)>) -> Response {
        if let Some(node) = &self.node {
            return if node.group_id() == group_id && node.id() == id {
                Response::Done
            } else {
                refused(format!(
                    "already raft id {} of group {:032x}; destroy it first",
                    node.id(),
                    node.group_id()
                ))
            };
        }
        let bootstrap = Bootstrap {
            group_id,
            id,
            voters: voters
                .into_iter()
                .map(|(id, peer)| (id, peer.into_bytes()))
                .collect(),
            max_sessions_count: SESSIONS_MAX,
            session_timeout_ms: SESSION_TIMEOUT_MS,
        };
        let opened = FsDir::open(LOG_DIR)
            .map_err(|err| err.to_string())
            .and_then(|dir| {
                Node::bootstrap(
                    dir,
                    config(),
                    QueueMachine::new(),
                    bootstrap,
                    Options::with_seed(seed()),
                )
                .map_err(|err| err.to_string())
            });
        match opened {
            Ok(node) => {
                self.node = Some(node);
                self.sync_peers();
                eprintln!("raft-replica: initialized as raft id {id} of group {group_id:032x}");
                Response::Done
            }
            Err(err) => refused(format!("cannot initialize: {err}")),
        }
    }

    fn join(&mut self, group_id: u128, id: u64) -> Response {
        if let Some(node) = &self.node {
            return if node.group_id() == group_id && node.id() == id {
                Response::Done
            } else {
                refused(format!(
                    "already raft id {} of group {:032x}",
                    node.id(),
                    node.group_id()
                ))
            };
        }
        let opened = FsDir::open(LOG_DIR)
            .map_err(|err| err.to_string())
            .and_then(|dir| {
                Node::join(
                    dir,
                    config(),
                    QueueMachine::new(),
                    Join { group_id, id },
                    Options::with_seed(seed()),
                )
                .map_err(|err| err.to_string())
            });
        match opened {
            Ok(node) => {
                self.node = Some(node);
                eprintln!("raft-replica: ready to join group {group_id:032x} as raft id {id}");
                Response::Done
            }
            Err(err) => refused(format!("cannot join: {err}")),
        }
    }

    /// The leader advances log time once a second (lease expiry, delays).
    fn maybe_tick_queue(&mut self) {
        let Some(node) = self.node.as_mut() else {
            return;
        };
        let now = wall_ms();
        if !node.is_leader() || now < self.last_queue_tick_ms + QUEUE_TICK_MS {
            return;
        }
        self.last_queue_tick_ms = now;
        self.queue_tick_seq = self.queue_tick_seq.max(now) + 1;
        let _ = node.propose(
            NO_SESSION_CLIENT_ID,
            self.queue_tick_seq,
            now,
            queue::encode_command(&queue::Command::Tick),
        );
    }

    /// Runs one call into raft-core, its time added to `process_us`.
    /// `None` when the replica has no node yet. raft-core's rule: after an
    /// error, reopen. Failing the loop does that: the supervisor restarts
    /// this replica from its volume.
    fn with_node<T>(
        &mut self,
        call: impl FnOnce(&mut Node<QueueMachine, FsDir>, &mut Outbox) -> Result<T, raft_core::Error>,
    ) -> anyhow::Result<Option<(T, Duration)>> {
        let Some(node) = self.node.as_mut() else {
            return Ok(None);
        };
        let started = Instant::now();
        let result = call(node, &mut self.outbox);
        let took = started.elapsed();
        self.activity.process_us += u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        match result {
            Ok(value) => Ok(Some((value, took))),
            Err(err) => bail!("raft failed, restarting from the log: {err}"),
        }
    }

    /// [`raft_core::Node::send_early`]: how many envelopes left ahead of
    /// this replica's fsync.
    fn send_early(&mut self) -> anyhow::Result<usize> {
        let sent = self.with_node(|node, outbox| node.send_early(outbox))?;
        Ok(sent.map_or(0, |(sent, _)| sent))
    }

    /// Snapshot and compaction work, a bounded piece (raft-core's
    /// `Node::background_step`). A slow one counts as a slow round: the
    /// loop stalled for it just the same.
    fn background_step(&mut self) -> anyhow::Result<()> {
        if let Some(((), took)) = self.with_node(|node, _| node.background_step())? {
            self.count_slow(took);
        }
        Ok(())
    }

    fn count_slow(&mut self, took: Duration) {
        if took > Duration::from_millis(10) {
            self.activity.slow_rounds_10ms += 1;
        }
        if took > Duration::from_millis(100) {
            self.activity.slow_rounds_100ms += 1;
        }
    }

    fn process(&mut self) -> anyhow::Result<()> {
        let Some((outputs, took)) = self.with_node(|node, outbox| node.process_messages(outbox))?
        else {
            return Ok(());
        };
        self.activity.rounds += 1;
        self.count_slow(took);
        // Error answers name the leader; most rounds have none.
        let leader = if outputs.iter().any(failed) {
            self.leader()
        } else {
            None
        };
        let mut membership_changed = false;
        for output in outputs {
            match output {
                Output::Proposal {
                    client_id,
                    seq,
                    result,
                } => {
                    let Some(slots) = self.proposals.remove(&(client_id, seq)) else {
                        continue;
                    };
                    let response = match result {
                        Ok(bytes) => Response::Applied(bytes),
                        Err(err) => error_response(&err, leader.clone()),
                    };
                    for slot in slots {
                        self.replies.answer(slot, response.clone());
                    }
                }
                Output::Registered { nonce, result } => {
                    if let Some(slot) = self.registrations.remove(&nonce) {
                        let response = match result {
                            Ok(client_id) => Response::Registered { client_id },
                            Err(err) => error_response(&err, leader.clone()),
                        };
                        self.replies.answer(slot, response);
                    }
                }
                Output::Read { read_id, result } => {
                    if let Some(slot) = self.reads.remove(&read_id) {
                        let response = match result {
                            Ok(bytes) => Response::Applied(bytes),
                            Err(err) => error_response(&err, leader.clone()),
                        };
                        self.replies.answer(slot, response);
                    }
                }
                Output::MembershipChange { change_id, result } => {
                    membership_changed = true;
                    if let Some(slot) = self.changes.remove(&change_id) {
                        let response = match result {
                            Ok(_) => Response::Members(Vec::new()),
                            Err(err) => error_response(&err, leader.clone()),
                        };
                        self.replies.answer(slot, response);
                    }
                }
                // A snapshot may carry another membership than the log
                // held.
                Output::Event(Event::MembershipChanged(_) | Event::SnapshotInstalled { .. }) => {
                    membership_changed = true;
                }
                Output::Event(Event::Removed) => eprintln!("raft-replica: removed from the group"),
                Output::Event(_) => {}
            }
        }
        if membership_changed {
            self.sync_peers();
        }
        // Members answers carry the membership as applied.
        let mut members = None;
        for batch_response in self.replies.pending_members() {
            let members = members.get_or_insert_with(|| members_of(self.node.as_ref()));
            *batch_response = Response::Members(members.clone());
        }
        Ok(())
    }

    /// Publishes this replica's status on the `response` topic when it
    /// changed, or every [`STATUS_EVERY_MS`]. One publish in flight at most.
    fn publish_status(&mut self) {
        if self.publishing.get() {
            return;
        }
        // Checked every round, so without building the status: its
        // strings and membership cost more than the rest of an idle round.
        let key = StatusKey {
            raft: self
                .node
                .as_ref()
                .map(|node| (node.role_and_term(), node.leader_id())),
            membership_generation: self.membership_generation,
        };
        let now = ww_guest::now_ms();
        if self.last_status.as_ref() == Some(&key) && now < self.last_status_ms + STATUS_EVERY_MS {
            return;
        }
        self.last_status = Some(key);
        self.last_status_ms = now;
        let status = self.status();
        let mut request = self.events.publish_request();
        request.get().set_data(&proto::encode(&status));
        let promise = request.send().promise;
        let publishing = self.publishing.clone();
        publishing.set(true);
        ww_guest::spawn(async move {
            // Nobody listening is fine: events are for whoever watches.
            let _ = promise.await;
            publishing.set(false);
        });
    }
}
