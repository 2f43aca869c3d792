//! Raft messages to peers: raft-core's `Transport`, over the peers' inbox
//! channels, resolved by path through this replica's own host.
//!
//! Each peer has a queue of encoded envelopes. At most one channel message
//! is in flight per peer; envelopes queued meanwhile travel together in the
//! next one ([`raft_client::proto::frame_envelopes`]). A queue over
//! [`QUEUED_BYTES_MAX`] drops its oldest envelopes: Raft resends what is
//! lost, and a dead peer must not make this replica hoard memory.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use raft_client::access::GroupKey;
use raft_core::{SendError, Transport};
use ww_guest::ww_api::{anchor, ops, sender};

/// Most bytes queued for one peer.
pub const QUEUED_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Most bytes in one inbox message (a snapshot envelope travels alone).
const MESSAGE_BYTES_SOFT_MAX: usize = 4 * 1024 * 1024;

/// How long to wait before resolving a peer's inbox again after a failure.
const RESOLVE_RETRY_MS: u64 = 500;

/// Longest a send or an inbox lookup may take. With one message in flight
/// per peer, a call that never answers (a wedged connection, a peer that
/// stopped draining its inbox) would otherwise silence this replica towards
/// that peer for good. Past the deadline the call counts as failed: the
/// inbox is looked up again and Raft resends what was lost. A send normally
/// takes well under a millisecond (docs/benchmarks.md), so this only cuts
/// off calls that are stuck.
const CALL_TIMEOUT_MS: u64 = 3_000;

#[derive(Default)]
struct Peer {
    /// The host of the peer, from the membership.
    peer_id: String,
    queued: VecDeque<Vec<u8>>,
    queued_bytes: usize,
    sender: Option<sender::Client>,
    busy: bool,
    /// The last failure to reach it, logged once (empty: none).
    last_problem: String,
    retry_after_ms: u64,
    dropped_count: u64,
}

/// The transport.
#[derive(Clone)]
pub struct Outbox {
    root: anchor::Client,
    version: String,
    /// Seals every message: peers step only what carries the group's MAC.
    key: GroupKey,
    peers: Rc<RefCell<HashMap<u64, Peer>>>,
}

impl Outbox {
    /// Sends through `root` (this replica's host's cluster root), sealing
    /// with `key`.
    pub fn new(root: anchor::Client, version: String, key: GroupKey) -> Self {
        Self {
            root,
            version,
            key,
            peers: Rc::new(RefCell::new(HashMap::new())),
        }
    }

    /// Records where raft id `id` lives. Called whenever the membership
    /// changes; a moved peer is resolved again.
    pub fn set_peer(&self, id: u64, peer_id: &str) {
        let mut peers = self.peers.borrow_mut();
        let peer = peers.entry(id).or_default();
        if peer.peer_id != peer_id {
            peer.peer_id = peer_id.to_owned();
            peer.sender = None;
        }
    }

    /// Records where raft id `id` lives if nothing is known of it yet: the
    /// authenticated origin of a message it sent.
    pub fn learn(&self, id: u64, peer_id: &str) {
        let mut peers = self.peers.borrow_mut();
        let peer = peers.entry(id).or_default();
        if peer.peer_id.is_empty() {
            peer.peer_id = peer_id.to_owned();
        }
    }

    /// Forgets raft ids that are no longer members.
    pub fn retain(&self, ids: &[u64]) {
        self.peers.borrow_mut().retain(|id, _| ids.contains(id));
    }

    /// Envelopes dropped because a peer's queue was full.
    pub fn dropped_count(&self) -> u64 {
        self.peers
            .borrow()
            .values()
            .map(|peer| peer.dropped_count)
            .sum()
    }

    /// Starts sending what is queued, for every peer that is idle.
    pub fn flush(&self, now_ms: u64) {
        let ids: Vec<u64> = self.peers.borrow().keys().copied().collect();
        for id in ids {
            self.flush_peer(id, now_ms);
        }
    }

    fn flush_peer(&self, id: u64, now_ms: u64) {
        let mut peers = self.peers.borrow_mut();
        let Some(peer) = peers.get_mut(&id) else {
            return;
        };
        if peer.busy || peer.queued.is_empty() || peer.peer_id.is_empty() {
            return;
        }
        let Some(sender) = peer.sender.clone() else {
            if now_ms < peer.retry_after_ms {
                return;
            }
            peer.busy = true;
            let path = format!("/{}/raft/{}/inbox", peer.peer_id, self.version);
            drop(peers);
            self.resolve(id, path);
            return;
        };
        let mut envelopes = Vec::new();
        let mut bytes = 0;
        while let Some(envelope) = peer.queued.front() {
            if !envelopes.is_empty() && bytes + envelope.len() > MESSAGE_BYTES_SOFT_MAX {
                break;
            }
            bytes += envelope.len();
            peer.queued_bytes -= envelope.len();
            envelopes.push(peer.queued.pop_front().unwrap_or_default());
        }
        peer.busy = true;
        drop(peers);
        let data = self.key.seal(raft_client::proto::frame_envelopes(
            envelopes.iter().map(Vec::as_slice),
        ));
        let mut request = sender.send_request();
        request.get().init_message().set_data(&data);
        let promise = request.send().promise;
        let this = self.clone();
        ww_guest::spawn(async move {
            let problem = match ww_guest::timeout(Duration::from_millis(CALL_TIMEOUT_MS), promise)
                .await
            {
                Ok(Ok(_)) => None,
                Ok(Err(err)) => Some(format!("a send to raft node {id} failed: {err}")),
                Err(elapsed) => Some(format!("a send to raft node {id} got no answer: {elapsed}")),
            };
            let now_ms = ww_guest::now_ms();
            if let Some(peer) = this.peers.borrow_mut().get_mut(&id) {
                peer.busy = false;
                if problem.is_some() {
                    // The peer's replica or host is gone: resolve it again
                    // later (its envelopes are lost; Raft resends).
                    peer.sender = None;
                    peer.retry_after_ms = now_ms + RESOLVE_RETRY_MS;
                }
                peer.report(problem);
            }
            this.flush_peer(id, now_ms);
        });
    }

    fn resolve(&self, id: u64, path: String) {
        let this = self.clone();
        ww_guest::spawn(async move {
            let lookup = ops::get_cap::<sender::Client>(&this.root, &path);
            let (sender, problem) =
                match ww_guest::timeout(Duration::from_millis(CALL_TIMEOUT_MS), lookup).await {
                    Ok(Ok(Some(found))) => (Some(found), None),
                    Ok(Ok(None)) => (None, Some(format!("{path} is not anchored"))),
                    Ok(Err(err)) => (None, Some(format!("looking up {path} failed: {err}"))),
                    Err(elapsed) => (
                        None,
                        Some(format!("looking up {path} got no answer: {elapsed}")),
                    ),
                };
            let now_ms = ww_guest::now_ms();
            if let Some(peer) = this.peers.borrow_mut().get_mut(&id) {
                peer.busy = false;
                match sender {
                    Some(sender) => peer.sender = Some(sender),
                    None => peer.retry_after_ms = now_ms + RESOLVE_RETRY_MS,
                }
                peer.report(problem);
            }
            this.flush_peer(id, now_ms);
        });
    }
}

impl Peer {
    /// Logs a failure to reach the peer once, not on every retry, and when
    /// it is reached again.
    fn report(&mut self, problem: Option<String>) {
        match problem {
            Some(problem) if problem != self.last_problem => {
                eprintln!("raft-replica: {problem} (retrying every {RESOLVE_RETRY_MS} ms)");
                self.last_problem = problem;
            }
            Some(_) => {}
            None if !self.last_problem.is_empty() => {
                eprintln!("raft-replica: reached {} again", self.peer_id);
                self.last_problem.clear();
            }
            None => {}
        }
    }
}

impl Transport for Outbox {
    fn send(&mut self, to: u64, envelope: Vec<u8>) -> Result<(), SendError> {
        let mut peers = self.peers.borrow_mut();
        let peer = peers.entry(to).or_default();
        peer.queued_bytes += envelope.len();
        peer.queued.push_back(envelope);
        while peer.queued_bytes > QUEUED_BYTES_MAX && peer.queued.len() > 1 {
            if let Some(old) = peer.queued.pop_front() {
                peer.queued_bytes -= old.len();
                peer.dropped_count += 1;
            }
        }
        Ok(())
    }
}
