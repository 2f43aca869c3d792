//! Finding a group's replicas by their anchors, and talking to them.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{select, Either};
use ww_api::ops::{get_cap, get_data, ls, walk};
use ww_api::{anchor, host, receiver, sender};

use crate::outbox::{send_within, Limits, Outbox};
use crate::proto::{
    self, Member, ReplicaStatus, Request, RequestBatch, Response, ResponseBatch, BATCH_REQUESTS_MAX,
};
use crate::{Runtime, Session};

/// How long one request to one replica may take before it is given up on
/// (and retried elsewhere, when that is safe).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long [`Group::leader_call`] waits for one attempt at the leader
/// before it tries again, at whichever replica leads then. Short, because
/// a paused or dead leader answers nothing and its successor is elected
/// within 1-2 s; retries are safe (sessions), and a retry that reaches a
/// leader still working on the first attempt joins it there. Several
/// times the p99.9 of a write under load (docs/benchmarks.md).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1_000);

/// How long [`Group::leader_call`] keeps retrying by default: a leader
/// election takes 1-2 s; a host restart a few more.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// Capacity of the channel replicas answer on.
const REPLY_CHANNEL_CAPACITY: u32 = 4096;

/// Longest a sent batch keeps the next one to the same replica waiting for
/// its answers (see [`send_queued`]). A batch is usually answered in one
/// commit, a few milliseconds (docs/benchmarks.md); past this the next
/// batch leaves anyway, so a slow or lost answer costs the requests queued
/// behind it at most this much.
const BATCH_ANSWER_WAIT_MS: u64 = 10;

/// Most bytes of requests queued for one replica while a message to it is
/// in flight. Past it the oldest calls fail with a retryable error: a
/// replica that stopped answering must not make the client hoard memory.
pub const QUEUED_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// No replica of the version was found.
    #[error("no replica of raft group {version:?} is anchored in the cluster; deploy one with `ww run raft.wasm deploy --version {version}`")]
    NoReplicas {
        /// The version looked for.
        version: String,
    },
    /// A host or replica could not be reached.
    #[error("cannot reach {what}: {reason}")]
    Unreachable {
        /// Who.
        what: String,
        /// Why.
        reason: String,
    },
    /// No answer in time.
    #[error("no answer from {what} within {timeout_ms} ms")]
    TimedOut {
        /// Who.
        what: String,
        /// The timeout.
        timeout_ms: u64,
    },
    /// The answer could not be decoded.
    #[error("bad answer from {what}: {reason}")]
    Protocol {
        /// Who.
        what: String,
        /// Why.
        reason: String,
    },
}

/// Where a client finds the replicas' `request` anchors.
#[derive(Clone)]
pub enum Directory {
    /// Through the cluster root (a holder of a full `Host`): replicas are
    /// at `/<peer>/raft/<version>/request`, and the group's admin token,
    /// which the replicas anchor at `/<peer>/raft/<version>/admin`, is
    /// read from there.
    Root,
    /// Through a read-only view granted to a process: `ls` lists hosts and
    /// `<peer>` holds that host's replica `request` sender. The token
    /// comes with the grant.
    View(anchor::Client),
}

/// One replica, found at `/<peer_id>/raft/<version>`.
#[derive(Clone)]
pub struct Replica {
    /// Its host.
    pub peer_id: String,
    request: sender::Client,
    /// Where it answers: a channel on its own host when the client reached
    /// that host directly ([`crate::direct`]), else the group's channel.
    reply: Option<sender::Client>,
}

struct Inner<R: Runtime> {
    host: host::Client,
    version: String,
    directory: Directory,
    /// The access token sent with every request batch.
    token: RefCell<Vec<u8>>,
    runtime: R,
    replicas: RefCell<BTreeMap<String, Replica>>,
    leader: RefCell<Option<String>>,
    cursor: Cell<usize>,
    reply: sender::Client,
    pending: RefCell<HashMap<u64, oneshot::Sender<Response>>>,
    next_request: Cell<u64>,
    /// Requests queued per replica (by host), one message in flight each.
    outbox: RefCell<Outbox<String, (u64, Request)>>,
    /// Per replica, the request ids of the batch whose answers its
    /// outbox's claim waits for.
    answering: RefCell<HashMap<String, Vec<u64>>>,
    /// The highest term a replica reported leading in (status events).
    leader_term: Cell<u64>,
    /// Woken when status events name a new leader, so that calls waiting
    /// on the old one move at once.
    leader_waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// Whatever the connection to the host depends on (a native client's
    /// libp2p node), dropped with the last clone of the group.
    keepalive: RefCell<Vec<Box<dyn std::any::Any>>>,
    /// Routes to replicas over the client's own connections to their hosts.
    direct: crate::direct::Direct,
    /// A dialer to start using once this many more requests were sent
    /// ([`Group::dial_replicas_after`]).
    dial_later: RefCell<Option<(crate::direct::Dial, u64)>>,
}

/// A connection to one Raft group (one version), through a `Host`.
///
/// Cheap to clone; every clone shares the replicas, the leader, and the
/// reply channel.
pub struct Group<R: Runtime> {
    inner: Rc<Inner<R>>,
}

impl<R: Runtime> Clone for Group<R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

fn unreachable(what: impl Into<String>, err: impl std::fmt::Display) -> GroupError {
    GroupError::Unreachable {
        what: what.into(),
        reason: err.to_string(),
    }
}

impl<R: Runtime> Group<R> {
    /// Connects to group `version` through `host`: opens the reply channel
    /// on `host` and finds the replicas.
    ///
    /// # Errors
    ///
    /// When the host cannot be used. Finding no replica is not an error here
    /// (a group being deployed has none yet); calls fail until one appears.
    pub async fn connect(
        host: host::Client,
        version: &str,
        runtime: R,
    ) -> Result<Self, GroupError> {
        Self::connect_via(host, version, runtime, Directory::Root, Vec::new()).await
    }

    /// Connects the way a process spawned with grants only does: through
    /// its `raft` view grant, presenting its `raft-token` grant. `None`
    /// when the process holds no `raft` grant.
    ///
    /// # Errors
    ///
    /// As [`Group::connect`], or when the grants cannot be read.
    pub async fn connect_granted(
        host: host::Client,
        runtime: R,
    ) -> Result<Option<Self>, GroupError> {
        let grants = |err: capnp::Error| unreachable("this process's grants", err);
        let Some(view) = ww_api::ops::grant_anchor(&host, crate::access::REPLICAS_GRANT)
            .await
            .map_err(grants)?
        else {
            return Ok(None);
        };
        let token = ww_api::ops::grant_data(&host, crate::access::TOKEN_GRANT)
            .await
            .map_err(grants)?
            .unwrap_or_default();
        Self::connect_via(host, "granted", runtime, Directory::View(view), token)
            .await
            .map(Some)
    }

    /// Connects to a group found through `directory`, presenting `token`
    /// (with [`Directory::Root`] and an empty token, the admin token the
    /// replicas anchor is used).
    ///
    /// # Errors
    ///
    /// As [`Group::connect`].
    pub async fn connect_via(
        host: host::Client,
        version: &str,
        runtime: R,
        directory: Directory,
        token: Vec<u8>,
    ) -> Result<Self, GroupError> {
        let mut request = host.new_channel_request();
        request.get().set_capacity(REPLY_CHANNEL_CAPACITY);
        let channel = request
            .send()
            .promise
            .await
            .map_err(|err| unreachable("this process's host", err))?;
        let channel = channel
            .get()
            .map_err(|err| unreachable("this process's host", err))?;
        let reply = channel
            .get_sender()
            .map_err(|err| unreachable("this process's host", err))?;
        let receiver = channel
            .get_receiver()
            .map_err(|err| unreachable("this process's host", err))?;
        let group = Self {
            inner: Rc::new(Inner {
                host,
                version: version.to_owned(),
                directory,
                token: RefCell::new(token),
                runtime: runtime.clone(),
                replicas: RefCell::new(BTreeMap::new()),
                leader: RefCell::new(None),
                cursor: Cell::new(0),
                reply,
                pending: RefCell::new(HashMap::new()),
                next_request: Cell::new(1),
                outbox: RefCell::new(Outbox::new(Limits {
                    message_items_max: BATCH_REQUESTS_MAX,
                    queued_bytes_max: QUEUED_BYTES_MAX,
                })),
                answering: RefCell::new(HashMap::new()),
                leader_term: Cell::new(0),
                leader_waiters: RefCell::new(Vec::new()),
                keepalive: RefCell::new(Vec::new()),
                direct: crate::direct::Direct::default(),
                dial_later: RefCell::new(None),
            }),
        };
        runtime.spawn(Box::pin(receive_replies(
            Rc::downgrade(&group.inner),
            receiver,
        )));
        runtime.spawn(Box::pin(watch_leaders(Rc::downgrade(&group.inner))));
        group.discover().await?;
        Ok(group)
    }

    /// Keeps `value` alive as long as the group (for example the libp2p
    /// node its host connection runs on).
    pub fn keep_alive(&self, value: impl std::any::Any) {
        self.inner.keepalive.borrow_mut().push(Box::new(value));
    }

    /// Reaches replicas found from now on over the client's own connection
    /// to their hosts, opened with `dial` ([`crate::direct`]), and looks
    /// the replicas up again.
    ///
    /// # Errors
    ///
    /// As [`Group::discover`].
    pub async fn dial_replicas_with(&self, dial: crate::direct::Dial) -> Result<usize, GroupError> {
        self.inner.direct.set_dial(dial);
        self.discover().await
    }

    /// [`Group::dial_replicas_with`], in the background, once the client
    /// has sent `requests` more requests: a one-shot command (one or two
    /// requests) keeps the relayed route it already has rather than pay for
    /// a connection to every replica's host, while a long-lived client
    /// moves to direct routes. Calls go on meanwhile, relayed.
    pub fn dial_replicas_after(&self, dial: crate::direct::Dial, requests: u64) {
        *self.inner.dial_later.borrow_mut() = Some((dial, requests));
    }

    /// Starts the dialer set by [`Group::dial_replicas_after`] when its
    /// count of requests runs out.
    fn count_request(&self) {
        let due = {
            let mut later = self.inner.dial_later.borrow_mut();
            match later.as_mut() {
                Some((_, left)) if *left > 1 => {
                    *left -= 1;
                    None
                }
                Some(_) => later.take(),
                None => None,
            }
        };
        if let Some((dial, _)) = due {
            let group = self.clone();
            self.inner.runtime.spawn(Box::pin(async move {
                // A failed lookup keeps the relayed routes; a later one
                // (after a send fails) dials again.
                drop(group.dial_replicas_with(dial).await);
            }));
        }
    }

    /// How many replicas are reached over the client's own connection to
    /// their hosts (the rest through the host it dialed).
    pub fn direct_replicas(&self) -> usize {
        self.inner
            .replicas
            .borrow()
            .values()
            .filter(|replica| replica.reply.is_some())
            .count()
    }

    /// The version of the group.
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// The host this client goes through.
    pub fn host(&self) -> &host::Client {
        &self.inner.host
    }

    /// The runtime.
    pub fn runtime(&self) -> &R {
        &self.inner.runtime
    }

    /// Lists the hosts and finds every replica of the version; returns how
    /// many. Only existing anchors are listed, so looking creates nothing.
    /// A host that does not answer within [`ATTEMPT_TIMEOUT`] (paused, or
    /// dead but still in the view) is left out: waiting for it would hold
    /// every new client until it came back.
    ///
    /// # Errors
    ///
    /// When the cluster root cannot be listed.
    pub async fn discover(&self) -> Result<usize, GroupError> {
        let (found, admin_token) = match &self.inner.directory {
            Directory::Root => self.discover_at_root().await?,
            Directory::View(view) => (self.discover_in_view(view).await?, None),
        };
        if let Some(token) = admin_token {
            if self.inner.token.borrow().is_empty() {
                *self.inner.token.borrow_mut() = token;
            }
        }
        let count = found.len();
        let mut replicas = self.inner.replicas.borrow_mut();
        replicas.clear();
        for replica in found {
            replicas.insert(replica.peer_id.clone(), replica);
        }
        Ok(count)
    }

    /// Replicas below the cluster root, and the admin token one of them
    /// anchors.
    async fn discover_at_root(&self) -> Result<(Vec<Replica>, Option<Vec<u8>>), GroupError> {
        let root = self.inner.host.root_request().send().pipeline.get_anchor();
        let hosts = ls(&root)
            .await
            .map_err(|err| unreachable("the cluster root", err))?;
        let lookups = hosts.into_iter().map(|peer| {
            let root = root.clone();
            let version = self.inner.version.clone();
            async move {
                if !ls(&walk(&root, &peer))
                    .await?
                    .iter()
                    .any(|name| name == "raft")
                {
                    return Ok(None);
                }
                if !ls(&walk(&root, &format!("{peer}/raft")))
                    .await?
                    .contains(&version)
                {
                    return Ok(None);
                }
                let base = format!("{peer}/raft/{version}");
                let request = get_cap::<sender::Client>(&root, &format!("{base}/request")).await?;
                let admin = get_data(&root, &format!("{base}/admin")).await?;
                Ok::<_, capnp::Error>(request.map(|request| {
                    (
                        Replica {
                            peer_id: peer.clone(),
                            request,
                            reply: None,
                        },
                        admin,
                    )
                }))
            }
        });
        let found = self.bounded_lookups(lookups).await;
        let admin = found.iter().find_map(|(_, admin)| admin.clone());
        let mut replicas: Vec<Replica> = found.into_iter().map(|(replica, _)| replica).collect();
        if self.inner.direct.enabled() {
            let peers: Vec<String> = replicas.iter().map(|r| r.peer_id.clone()).collect();
            let weak = Rc::downgrade(&self.inner);
            let runtime = self.inner.runtime.clone();
            let routes = self
                .inner
                .direct
                .routes(
                    &self.inner.runtime,
                    &self.inner.host,
                    &self.inner.version,
                    &peers,
                    REPLY_CHANNEL_CAPACITY,
                    |receiver| runtime.spawn(Box::pin(receive_replies(weak.clone(), receiver))),
                )
                .await;
            for replica in &mut replicas {
                if let Some(route) = routes.get(&replica.peer_id) {
                    replica.request = route.request.clone();
                    replica.reply = Some(route.reply.clone());
                }
            }
        }
        Ok((replicas, admin))
    }

    /// Replicas in a granted view: `<peer>` holds that host's `request`.
    async fn discover_in_view(&self, view: &anchor::Client) -> Result<Vec<Replica>, GroupError> {
        let hosts = ls(view)
            .await
            .map_err(|err| unreachable("the granted replica view", err))?;
        let lookups = hosts.into_iter().map(|peer| {
            let view = view.clone();
            async move {
                let request = get_cap::<sender::Client>(&view, &peer).await?;
                Ok::<_, capnp::Error>(request.map(|request| Replica {
                    peer_id: peer.clone(),
                    request,
                    reply: None,
                }))
            }
        });
        Ok(self.bounded_lookups(lookups).await)
    }

    /// Runs the lookups together; a host that does not answer within
    /// [`ATTEMPT_TIMEOUT`] is left out.
    async fn bounded_lookups<T, F>(&self, lookups: impl Iterator<Item = F>) -> Vec<T>
    where
        F: std::future::Future<Output = Result<Option<T>, capnp::Error>>,
    {
        let runtime = &self.inner.runtime;
        let bounded = lookups.map(|lookup| async move {
            match select(Box::pin(lookup), runtime.sleep(ATTEMPT_TIMEOUT)).await {
                Either::Left((found, _)) => found.ok().flatten(),
                Either::Right(_) => None,
            }
        });
        futures::future::join_all(bounded)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The access token this client presents.
    pub fn token(&self) -> Vec<u8> {
        self.inner.token.borrow().clone()
    }

    /// Presents `token` from now on.
    pub fn set_token(&self, token: Vec<u8>) {
        *self.inner.token.borrow_mut() = token;
    }

    /// A new token for `scope`, which must lie within this client's.
    ///
    /// # Errors
    ///
    /// When no replica answers, or the replica refuses (a scope wider than
    /// this client's token, or over the limits).
    pub async fn mint(&self, scope: crate::access::Scope) -> Result<Vec<u8>, String> {
        match self
            .leader_call(Request::Mint { scope }, DEFAULT_DEADLINE)
            .await
        {
            Ok(Response::Token(token)) => Ok(token),
            Ok(Response::Error { message, .. }) => Err(message),
            Ok(other) => Err(format!("unexpected answer to mint: {other:?}")),
            Err(err) => Err(err.to_string()),
        }
    }

    /// The group key, to grant to a new replica. Needs admin authority.
    ///
    /// # Errors
    ///
    /// When no replica answers, or the token is not an admin's.
    pub async fn group_key(&self) -> Result<crate::access::GroupKey, String> {
        match self.leader_call(Request::GroupKey, DEFAULT_DEADLINE).await {
            Ok(Response::Key(key)) => crate::access::GroupKey::from_bytes(&key),
            Ok(Response::Error { message, .. }) => Err(message),
            Ok(other) => Err(format!("unexpected answer to group-key: {other:?}")),
            Err(err) => Err(err.to_string()),
        }
    }

    /// The hosts of the replicas found so far.
    pub fn replicas(&self) -> Vec<String> {
        self.inner.replicas.borrow().keys().cloned().collect()
    }

    /// The leader's host, if known.
    pub fn leader(&self) -> Option<String> {
        self.inner.leader.borrow().clone()
    }

    /// A new client session (its own client id and sequence numbers).
    pub fn session(&self) -> Session<R> {
        Session::new(self.clone())
    }

    /// Sends `request` to the replica on `peer` and waits for its response.
    ///
    /// Requests to the same replica made while a message to it is in flight
    /// travel together in the next message.
    ///
    /// # Errors
    ///
    /// When the replica is unknown, unreachable, or silent past `timeout`.
    pub async fn call(
        &self,
        peer: &str,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, GroupError> {
        if !self.inner.replicas.borrow().contains_key(peer) {
            return Err(unreachable(
                format!("replica on {peer}"),
                "no replica of this group is anchored there",
            ));
        }
        self.count_request();
        let id = self.inner.next_request.get();
        self.inner.next_request.set(id + 1);
        let (done, answer) = oneshot::channel();
        self.inner.pending.borrow_mut().insert(id, done);
        let bytes = request_size(&request);
        let dropped = self
            .inner
            .outbox
            .borrow_mut()
            .push(peer.to_owned(), (id, request), bytes);
        if !dropped.is_empty() {
            fail(
                &self.inner,
                dropped.into_iter().map(|(id, _)| id),
                &format!("overloaded: over {QUEUED_BYTES_MAX} bytes queued for the replica on {peer} (QUEUED_BYTES_MAX)"),
            );
        }
        flush(&self.inner, peer);
        let timer = self.inner.runtime.sleep(timeout);
        match select(answer, timer).await {
            Either::Left((Ok(response), _)) => Ok(response),
            Either::Left((Err(_), _)) => Err(unreachable(
                format!("replica on {peer}"),
                "the request was dropped",
            )),
            Either::Right(_) => {
                self.inner.pending.borrow_mut().remove(&id);
                Err(GroupError::TimedOut {
                    what: format!("replica on {peer}"),
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                })
            }
        }
    }

    /// Sends `request` to the leader, following redirects and retrying what
    /// is safe to retry until `deadline` passes. Returns the last response
    /// (which may be an error response) or the last failure.
    ///
    /// # Errors
    ///
    /// When no leader answered before the deadline.
    pub async fn leader_call(
        &self,
        request: Request,
        deadline: Duration,
    ) -> Result<Response, GroupError> {
        self.leader_call_tracked(request, deadline, &Cell::new(false))
            .await
    }

    /// [`Group::leader_call`], setting `maybe_delivered` when an attempt
    /// may have reached a leader without its answer coming back (timed
    /// out, abandoned for a new leader, or a retryable error): then the
    /// request may have taken effect even if a later attempt is refused.
    ///
    /// Each attempt waits at most [`ATTEMPT_TIMEOUT`], and less when the
    /// group's status events name a new leader meanwhile: the attempt is
    /// abandoned and the request goes to the new leader at once.
    ///
    /// # Errors
    ///
    /// When no leader answered before the deadline.
    pub async fn leader_call_tracked(
        &self,
        request: Request,
        deadline: Duration,
        maybe_delivered: &Cell<bool>,
    ) -> Result<Response, GroupError> {
        let give_up_ms =
            self.inner.runtime.now_ms() + u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        // Sessions make commands, reads and registrations safe to resend;
        // a membership change resent while the first one applies would be
        // refused as already made, so those wait longer.
        let per_attempt = match request {
            Request::Command { .. }
            | Request::Query { .. }
            | Request::Register
            | Request::Mint { .. }
            | Request::GroupKey => ATTEMPT_TIMEOUT,
            _ => CALL_TIMEOUT,
        };
        let mut backoff = Duration::from_millis(20);
        let mut last_error = GroupError::NoReplicas {
            version: self.inner.version.clone(),
        };
        while self.inner.runtime.now_ms() < give_up_ms {
            if self.inner.replicas.borrow().is_empty() {
                let _ = self.discover().await;
            }
            let Some(target) = self.pick() else {
                self.inner.runtime.sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            };
            let timeout = per_attempt
                .min(Duration::from_millis(
                    give_up_ms.saturating_sub(self.inner.runtime.now_ms()),
                ))
                .max(Duration::from_millis(1));
            let (moved, leader_moved) = oneshot::channel();
            {
                // Waiters of finished attempts are dropped here, so the
                // list holds at most one per call in flight.
                let mut waiters = self.inner.leader_waiters.borrow_mut();
                waiters.retain(|waiter| !waiter.is_canceled());
                waiters.push(moved);
            }
            let attempt = self.call(&target, request.clone(), timeout);
            let answer = match select(Box::pin(attempt), leader_moved).await {
                Either::Left((answer, _)) => answer,
                Either::Right(_) => {
                    // Status events name another leader: go there now. The
                    // abandoned attempt may still apply; the session makes
                    // the retry safe.
                    maybe_delivered.set(true);
                    let known = self
                        .leader()
                        .is_some_and(|leader| self.inner.replicas.borrow().contains_key(&leader));
                    if !known {
                        let _ = self.discover().await;
                    }
                    backoff = Duration::from_millis(20);
                    continue;
                }
            };
            match answer {
                Ok(Response::NotLeader {
                    leader: Some(leader),
                }) if leader.peer_id != target => {
                    if !self.inner.replicas.borrow().contains_key(&leader.peer_id) {
                        let _ = self.discover().await;
                    }
                    *self.inner.leader.borrow_mut() = Some(leader.peer_id);
                }
                Ok(Response::NotLeader { .. }) => {
                    // No leader known (an election is under way): try
                    // another replica after a pause.
                    self.forget_leader(&target);
                    last_error = unreachable("the group's leader", "no leader elected yet");
                    self.inner.runtime.sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Ok(Response::Error {
                    retryable: true,
                    message,
                }) => {
                    maybe_delivered.set(true);
                    last_error = unreachable("the group's leader", message);
                    self.inner.runtime.sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Ok(response) => {
                    *self.inner.leader.borrow_mut() = Some(target);
                    return Ok(response);
                }
                Err(err) => {
                    maybe_delivered.set(true);
                    self.forget_leader(&target);
                    if matches!(err, GroupError::Unreachable { .. }) {
                        self.inner.replicas.borrow_mut().remove(&target);
                    }
                    last_error = err;
                    self.inner.runtime.sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        Err(last_error)
    }

    /// Every replica's status (discovering first).
    pub async fn status_all(&self) -> Vec<(String, Result<ReplicaStatus, GroupError>)> {
        let _ = self.discover().await;
        let calls = self.replicas().into_iter().map(|peer| async move {
            let result = match self.call(&peer, Request::Status, CALL_TIMEOUT).await {
                Ok(Response::Status(status)) => Ok(*status),
                Ok(other) => Err(GroupError::Protocol {
                    what: format!("replica on {peer}"),
                    reason: format!("unexpected answer to status: {other:?}"),
                }),
                Err(err) => Err(err),
            };
            (peer, result)
        });
        futures::future::join_all(calls).await
    }

    /// The members as the leader reports them.
    ///
    /// # Errors
    ///
    /// When no replica answers.
    pub async fn members(&self) -> Result<Vec<Member>, GroupError> {
        for (_, status) in self.status_all().await {
            if let Ok(status) = status {
                if status.initialized && !status.members.is_empty() {
                    return Ok(status.members);
                }
            }
        }
        Err(GroupError::NoReplicas {
            version: self.inner.version.clone(),
        })
    }

    fn pick(&self) -> Option<String> {
        if let Some(leader) = self.inner.leader.borrow().clone() {
            if self.inner.replicas.borrow().contains_key(&leader) {
                return Some(leader);
            }
        }
        let replicas = self.inner.replicas.borrow();
        if replicas.is_empty() {
            return None;
        }
        let index = self.inner.cursor.get() % replicas.len();
        self.inner.cursor.set(index + 1);
        replicas.keys().nth(index).cloned()
    }

    fn forget_leader(&self, peer: &str) {
        let mut leader = self.inner.leader.borrow_mut();
        if leader.as_deref() == Some(peer) {
            *leader = None;
        }
    }
}

/// Starts sending the queued requests for `peer` unless a message to it is
/// in flight. The send waits for one turn of the executor first: callers
/// woken together (by one reply batch) then all queue their next request
/// before the message leaves, instead of the first leaving alone and the
/// rest waiting a round trip for the next one.
fn flush<R: Runtime>(inner: &Rc<Inner<R>>, peer: &str) {
    if !inner.outbox.borrow_mut().claim(peer) {
        return;
    }
    let weak = Rc::downgrade(inner);
    let peer = peer.to_owned();
    inner.runtime.spawn(Box::pin(async move {
        yield_once().await;
        if let Some(inner) = weak.upgrade() {
            send_queued(&inner, peer);
        }
    }));
}

/// Returns `Pending` once (waking itself), so every other task that is
/// ready runs before the caller continues.
async fn yield_once() {
    let mut yielded = false;
    futures::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}

/// Sends what is queued for claimed `peer` as one message. The claim is
/// released, and what queued meanwhile flushed, when the batch's answers
/// have all come ([`receive_replies`]), when its send failed, or after
/// [`BATCH_ANSWER_WAIT_MS`], whichever is first.
///
/// Why wait for the answers, not only for the send: requests that queue
/// while a batch is being committed then reach the leader together, as one
/// batch for one of its rounds. Released at the send's return, they went
/// in a batch of their own, which the leader proposed in a round of its
/// own and could not replicate before the first batch's append was
/// answered; closed-loop callers then settled into two cohorts, each
/// paying whole rounds on every replica for half the writes
/// (docs/benchmarks.md).
fn send_queued<R: Runtime>(inner: &Rc<Inner<R>>, peer: String) {
    let batch = inner.outbox.borrow_mut().take(&peer);
    let replica = inner.replicas.borrow().get(&peer).cloned();
    let Some(replica) = replica else {
        // Nothing would send what waits behind this batch either: fail it
        // all now, not at each caller's timeout.
        let rest = inner.outbox.borrow_mut().drain(&peer);
        fail(
            inner,
            batch.into_iter().chain(rest).map(|(id, _)| id),
            "the replica is no longer anchored",
        );
        inner.outbox.borrow_mut().release(&peer);
        return;
    };
    if batch.is_empty() {
        inner.outbox.borrow_mut().release(&peer);
        return;
    }
    // The ids stay for failing the batch's calls; the requests go into the
    // message without a copy.
    let ids: Vec<u64> = batch.iter().map(|(id, _)| *id).collect();
    let bytes = proto::encode(&RequestBatch {
        token: inner.token.borrow().clone(),
        requests: batch,
    });
    let mut request = replica.request.send_request();
    {
        let mut message = request.get().init_message();
        message.set_data(&bytes);
        message.init_caps(1).get(0).init_cap().set_as_capability(
            replica
                .reply
                .as_ref()
                .unwrap_or(&inner.reply)
                .client
                .hook
                .add_ref(),
        );
    }
    let promise = request.send().promise;
    let weak = Rc::downgrade(inner);
    let runtime = inner.runtime.clone();
    inner.runtime.spawn(Box::pin(async move {
        // A send that never answers would hold back every later request to
        // the replica: past the outbox's deadline it counts as failed (the
        // waiters get a retryable error and the replica is looked up again).
        let result = send_within(&runtime, promise).await;
        let Some(inner) = weak.upgrade() else { return };
        if let Err(err) = result {
            fail(
                &inner,
                ids,
                &format!("sending to the replica on {peer} failed: {err}"),
            );
            inner.replicas.borrow_mut().remove(&peer);
            inner.direct.forget(&peer);
            release(&inner, &peer);
            return;
        }
        if answered(&inner, &ids) {
            release(&inner, &peer);
            return;
        }
        // Request ids are never reused: the first names this batch.
        let first = ids[0];
        inner.answering.borrow_mut().insert(peer.clone(), ids);
        drop(inner);
        runtime
            .sleep(Duration::from_millis(BATCH_ANSWER_WAIT_MS))
            .await;
        let Some(inner) = weak.upgrade() else { return };
        let waiting =
            matches!(inner.answering.borrow().get(&peer), Some(ids) if ids.first() == Some(&first));
        if waiting {
            inner.answering.borrow_mut().remove(&peer);
            release(&inner, &peer);
        }
    }));
}

/// Whether none of `ids` waits for an answer any more.
fn answered<R: Runtime>(inner: &Inner<R>, ids: &[u64]) -> bool {
    let pending = inner.pending.borrow();
    ids.iter().all(|id| !pending.contains_key(id))
}

/// Ends `peer`'s claim and sends what queued meanwhile.
fn release<R: Runtime>(inner: &Rc<Inner<R>>, peer: &str) {
    inner.outbox.borrow_mut().release(peer);
    flush(inner, peer);
}

fn request_size(request: &Request) -> usize {
    match request {
        Request::Command { command, .. } => command.len() + 32,
        Request::Query { query } => query.len() + 16,
        _ => 64,
    }
}

/// Answers `batch`'s waiters with a retryable error: none of it was
/// delivered.
fn fail<R: Runtime>(inner: &Rc<Inner<R>>, ids: impl IntoIterator<Item = u64>, reason: &str) {
    let mut pending = inner.pending.borrow_mut();
    for id in ids {
        if let Some(done) = pending.remove(&id) {
            let _ = done.send(Response::Error {
                retryable: true,
                message: reason.to_owned(),
            });
        }
    }
}

/// Follows the group's status events (the `response` topic, `ww/raft/V`,
/// joined through this client's own host so that it outlives any one
/// replica's host): when a replica reports leading in a term at least as
/// new as any seen, it becomes the leader, and waiting calls move to it.
/// Best effort, like pubsub: without events, calls still find the leader
/// by timeouts and redirects.
async fn watch_leaders<R: Runtime>(weak: std::rc::Weak<Inner<R>>) {
    let subscription = {
        let Some(inner) = weak.upgrade() else { return };
        let pubsub = inner.host.pubsub_request().send().pipeline.get_pubsub();
        let mut join = pubsub.join_request();
        join.get().set_topic(format!("ww/raft/{}", inner.version));
        let topic = join.send().pipeline.get_topic();
        let mut subscribe = topic.subscribe_request();
        subscribe.get().set_buffer(64);
        let Ok(response) = subscribe.send().promise.await else {
            return;
        };
        let Ok(subscription) = response.get().and_then(|r| r.get_subscription()) else {
            return;
        };
        subscription
    };
    loop {
        let Ok(message) = subscription.next_request().send().promise.await else {
            return;
        };
        let Some(inner) = weak.upgrade() else { return };
        let Ok(data) = message
            .get()
            .and_then(|m| m.get_message())
            .and_then(|m| m.get_data())
        else {
            continue;
        };
        let Ok(status) = proto::decode::<ReplicaStatus>(data) else {
            continue;
        };
        if status.role != "leader" || status.term < inner.leader_term.get() {
            continue;
        }
        inner.leader_term.set(status.term);
        let changed = inner.leader.borrow().as_deref() != Some(status.peer_id.as_str());
        if changed {
            *inner.leader.borrow_mut() = Some(status.peer_id);
            for waiter in inner.leader_waiters.borrow_mut().drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

async fn receive_replies<R: Runtime>(inner: std::rc::Weak<Inner<R>>, receiver: receiver::Client) {
    ww_api::ops::recv_batches(&receiver, 256, |messages| {
        let Some(inner) = inner.upgrade() else {
            return false;
        };
        let mut pending = inner.pending.borrow_mut();
        for item in messages.iter() {
            let Ok(data) = item.get_message().and_then(|message| message.get_data()) else {
                continue;
            };
            let Ok(batch) = proto::decode::<ResponseBatch>(data) else {
                continue;
            };
            for (id, response) in batch.responses {
                if let Some(done) = pending.remove(&id) {
                    let _ = done.send(response);
                }
            }
        }
        drop(pending);
        // Replicas whose batch in flight is now answered take the next.
        let done: Vec<String> = inner
            .answering
            .borrow()
            .iter()
            .filter(|(_, ids)| answered(&inner, ids))
            .map(|(peer, _)| peer.clone())
            .collect();
        for peer in done {
            inner.answering.borrow_mut().remove(&peer);
            release(&inner, &peer);
        }
        true
    })
    .await;
}
