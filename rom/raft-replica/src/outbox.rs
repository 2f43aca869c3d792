//! Raft messages to peers: raft-core's `Transport`, over the peers' inbox
//! channels, resolved by path through this replica's own host.
//!
//! The queues are the group's one outbox ([`raft_client::outbox`]): at most
//! one channel message in flight per peer, envelopes queued meanwhile
//! travelling together in the next one
//! ([`raft_client::proto::frame_envelopes`]). A queue over
//! [`QUEUED_BYTES_MAX`] drops its oldest envelopes: Raft resends what is
//! lost, and a dead peer must not make this replica hoard memory.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use raft_client::access::GroupKey;
use raft_client::outbox::{self, send_within, Limits};
use raft_client::GuestRuntime;
use raft_core::{SendError, Transport};
use ww_guest::ww_api::{anchor, ops, sender};

/// Most bytes queued for one peer.
pub const QUEUED_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Most envelopes in one inbox message. The byte bound
/// ([`outbox::MESSAGE_BYTES_SOFT_MAX`]) is the one that matters; this one
/// only keeps a frame's count within what a peer decodes in one go.
const MESSAGE_ENVELOPES_MAX: usize = 4_096;

/// How long to wait before resolving a peer's inbox again after a failure.
const RESOLVE_RETRY_MS: u64 = 500;

#[derive(Default)]
struct Peer {
    /// The host of the peer, from the membership.
    peer_id: String,
    sender: Option<sender::Client>,
    /// The last failure to reach it, logged once (empty: none).
    last_problem: String,
    retry_after_ms: u64,
}

struct State {
    peers: HashMap<u64, Peer>,
    queues: outbox::Outbox<u64, Vec<u8>>,
}

/// The transport.
#[derive(Clone)]
pub struct Outbox {
    root: anchor::Client,
    version: String,
    /// Seals every message: peers step only what carries the group's MAC.
    key: GroupKey,
    state: Rc<RefCell<State>>,
}

impl Outbox {
    /// Sends through `root` (this replica's host's cluster root), sealing
    /// with `key`.
    pub fn new(root: anchor::Client, version: String, key: GroupKey) -> Self {
        let queues = outbox::Outbox::new(Limits {
            message_items_max: MESSAGE_ENVELOPES_MAX,
            queued_bytes_max: QUEUED_BYTES_MAX,
        });
        Self {
            root,
            version,
            key,
            state: Rc::new(RefCell::new(State {
                peers: HashMap::new(),
                queues,
            })),
        }
    }

    /// Records where raft id `id` lives. Called whenever the membership
    /// changes; a moved peer is resolved again.
    pub fn set_peer(&self, id: u64, peer_id: &str) {
        let mut state = self.state.borrow_mut();
        let peer = state.peers.entry(id).or_default();
        if peer.peer_id != peer_id {
            peer.peer_id = peer_id.to_owned();
            peer.sender = None;
        }
    }

    /// Records where raft id `id` lives if nothing is known of it yet: the
    /// authenticated origin of a message it sent.
    pub fn learn(&self, id: u64, peer_id: &str) {
        let mut state = self.state.borrow_mut();
        let peer = state.peers.entry(id).or_default();
        if peer.peer_id.is_empty() {
            peer.peer_id = peer_id.to_owned();
        }
    }

    /// Forgets raft ids that are no longer members.
    pub fn retain(&self, ids: &[u64]) {
        let mut state = self.state.borrow_mut();
        state.peers.retain(|id, _| ids.contains(id));
        state.queues.retain(|id| ids.contains(id));
    }

    /// Envelopes dropped because a peer's queue was full.
    pub fn dropped_count(&self) -> u64 {
        self.state.borrow().queues.dropped_count()
    }

    /// Starts sending what is queued, for every peer that is idle.
    pub fn flush(&self, now_ms: u64) {
        let ready = self.state.borrow().queues.ready();
        for id in ready {
            self.flush_peer(id, now_ms);
        }
    }

    fn flush_peer(&self, id: u64, now_ms: u64) {
        let mut state = self.state.borrow_mut();
        let State { peers, queues } = &mut *state;
        let Some(peer) = peers.get(&id).filter(|peer| !peer.peer_id.is_empty()) else {
            return;
        };
        if peer.sender.is_none() && now_ms < peer.retry_after_ms {
            return;
        }
        if !queues.claim(&id) {
            return;
        }
        let Some(sender) = peer.sender.clone() else {
            let path = format!("/{}/raft/{}/inbox", peer.peer_id, self.version);
            drop(state);
            self.resolve(id, path);
            return;
        };
        let envelopes = queues.take(&id);
        drop(state);
        let data = self.key.seal(raft_client::proto::frame_envelopes(
            envelopes.iter().map(Vec::as_slice),
        ));
        let mut request = sender.send_request();
        request.get().init_message().set_data(&data);
        let promise = request.send().promise;
        let this = self.clone();
        ww_guest::spawn(async move {
            let problem = send_within(&GuestRuntime, promise)
                .await
                .err()
                .map(|err| format!("a send to raft node {id} failed: {err}"));
            this.settle(id, None, problem);
        });
    }

    fn resolve(&self, id: u64, path: String) {
        let this = self.clone();
        ww_guest::spawn(async move {
            let found = send_within(
                &GuestRuntime,
                ops::get_cap::<sender::Client>(&this.root, &path),
            )
            .await;
            let (sender, problem) = match found {
                Ok(Some(found)) => (Some(found), None),
                Ok(None) => (None, Some(format!("{path} is not anchored"))),
                Err(err) => (None, Some(format!("looking up {path} failed: {err}"))),
            };
            this.settle(id, sender, problem);
        });
    }

    /// Ends `id`'s claim after a send or a lookup, and sends again what
    /// queued meanwhile. A failure drops the inbox: it is looked up again
    /// after [`RESOLVE_RETRY_MS`] (what the failed send held is lost; Raft
    /// resends).
    fn settle(&self, id: u64, found: Option<sender::Client>, problem: Option<String>) {
        let now_ms = ww_guest::now_ms();
        {
            let mut state = self.state.borrow_mut();
            state.queues.release(&id);
            if let Some(peer) = state.peers.get_mut(&id) {
                if found.is_some() {
                    peer.sender = found;
                } else if problem.is_some() {
                    peer.sender = None;
                    peer.retry_after_ms = now_ms + RESOLVE_RETRY_MS;
                }
                peer.report(problem);
            }
        }
        self.flush_peer(id, now_ms);
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
        let bytes = envelope.len();
        // Dropped envelopes are counted by the queues; Raft resends them.
        drop(self.state.borrow_mut().queues.push(to, envelope, bytes));
        Ok(())
    }
}
