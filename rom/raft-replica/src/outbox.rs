//! Raft messages to peers: raft-core's `Transport`, over the peers' inbox
//! channels, resolved by path through this replica's own host.
//!
//! The queues are the group's one outbox ([`raft_client::outbox`]): at most
//! one channel message in flight per peer, envelopes queued meanwhile
//! travelling together in the next one
//! ([`raft_client::proto::frame_envelopes`]). A queue over
//! [`QUEUED_BYTES_MAX`] drops its oldest envelopes: Raft resends what is
//! lost, and a dead peer must not make this replica hoard memory.
//!
//! Every message goes by `Sender.call`, and the peer answers it at the end
//! of the loop round that stepped it, with what it has queued for this
//! replica by then ([`Outbox::answer_held`]): a follower's acknowledgement
//! of an append rides the append's return. So an append and its
//! acknowledgement cross the hosts' connection once each way, where two
//! sends cost two calls and two returns (docs/raft-rom.md). Answers can
//! overtake messages in flight the other way; Raft takes messages in any
//! order.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use futures::channel::mpsc;
use raft_client::access::GroupKey;
use raft_client::outbox::{self, send_within, Limits};
use raft_client::GuestRuntime;
use raft_core::{SendError, Transport};
use ww_guest::ww_api::{anchor, ops, reply, sender};

use crate::replica::Input;

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
    /// Calls from peers stepped this round, to answer at its end.
    held: Vec<(u64, reply::Client)>,
}

/// The transport.
#[derive(Clone)]
pub struct Outbox {
    root: anchor::Client,
    version: String,
    /// Seals every message: peers step only what carries the group's MAC.
    key: GroupKey,
    /// Where the answers to this replica's calls go: its loop's inputs.
    inputs: mpsc::UnboundedSender<Input>,
    state: Rc<RefCell<State>>,
}

impl Outbox {
    /// Sends through `root` (this replica's host's cluster root), sealing
    /// with `key`; answers to its calls go to `inputs`.
    pub fn new(
        root: anchor::Client,
        version: String,
        key: GroupKey,
        inputs: mpsc::UnboundedSender<Input>,
    ) -> Self {
        let queues = outbox::Outbox::new(Limits {
            message_items_max: MESSAGE_ENVELOPES_MAX,
            queued_bytes_max: QUEUED_BYTES_MAX,
        });
        Self {
            root,
            version,
            key,
            inputs,
            state: Rc::new(RefCell::new(State {
                peers: HashMap::new(),
                queues,
                held: Vec::new(),
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

    /// Holds the answer to a call from raft id `from` until
    /// [`Outbox::answer_held`].
    pub fn hold(&self, from: u64, reply: reply::Client) {
        self.state.borrow_mut().held.push((from, reply));
    }

    /// Answers every call held this round: each with what is queued for
    /// its caller (nothing, if nothing is). Call once a round, after
    /// `process`: a caller's next message waits for its answer.
    pub fn answer_held(&self) {
        let held = std::mem::take(&mut self.state.borrow_mut().held);
        for (from, reply) in held {
            let envelopes = self.state.borrow_mut().queues.take_answer(&from);
            let data = if envelopes.is_empty() {
                Vec::new()
            } else {
                self.seal(&envelopes)
            };
            answer(&reply, &data);
        }
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
        let State { peers, queues, .. } = &mut *state;
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
        // The answer comes from the host this call goes to: its origin.
        let origin = peer.peer_id.clone();
        drop(state);
        let data = self.seal(&envelopes);
        let mut request = sender.call_request();
        request.get().init_message().set_data(&data);
        let promise = request.send().promise;
        let this = self.clone();
        ww_guest::spawn(async move {
            let problem = match send_within(&GuestRuntime, promise).await {
                Ok(response) => {
                    this.take_answer(&response, &origin);
                    None
                }
                Err(err) => Some(format!("a send to raft node {id} failed: {err}")),
            };
            this.settle(id, None, problem);
        });
    }

    /// One message of `envelopes`, framed and sealed with the group's MAC.
    fn seal(&self, envelopes: &[Vec<u8>]) -> Vec<u8> {
        self.key.seal(raft_client::proto::frame_envelopes(
            envelopes.iter().map(Vec::as_slice),
        ))
    }

    /// Hands a call's answer to the loop, as a message from `origin`.
    fn take_answer(
        &self,
        response: &capnp::capability::Response<sender::call_results::Owned>,
        origin: &str,
    ) {
        let data = match response.get().and_then(|results| results.get_reply()) {
            Ok(data) if !data.is_empty() => data.to_vec(),
            // Nothing to say, or an answer that does not decode (stepping
            // checks what does).
            _ => return,
        };
        // A closed loop is ending this replica: nothing to deliver to.
        let _ = self
            .inputs
            .unbounded_send(Input::Envelopes(vec![(data, origin.to_owned(), None)]));
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

/// Answers a call with `data`, without waiting: a caller that is gone
/// needs nothing, and the caller's own deadline covers one that is stuck.
pub fn answer(reply: &reply::Client, data: &[u8]) {
    let mut request = reply.send_request();
    request.get().set_data(data);
    let promise = request.send().promise;
    ww_guest::spawn(async move {
        let _ = promise.await;
    });
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
