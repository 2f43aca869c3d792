//! Bounded channels hosted by a host: `Sender` and `Receiver`.
//!
//! Semantics:
//! - at most `capacity` messages (and [`CHANNEL_BYTES_MAX`] bytes) wait in a
//!   channel; a send to a full channel waits for room (backpressure);
//! - messages are received in the order their sends completed;
//! - after `close` (by either side) sends fail; receivers drain what is
//!   queued, then see `closed`;
//! - a channel whose every sender is gone is closed too, and a send to a
//!   channel whose receivers are all gone fails at once: nobody waits
//!   forever on a channel that cannot move;
//! - each message carries `origin`: the authenticated peer id of the host
//!   through whose connection its sender was obtained (see [`restamp`]).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use capnp::capability::Rc as CapRc;
use capnp_rpc::CapabilityServerSet;
use libp2p::PeerId;
use tokio::sync::Notify;
use ww_api::limits::CHANNEL_CAPACITY_MAX;
use ww_api::{receiver, sender};

use super::invalid;

/// Most bytes queued in one channel. A send that would exceed it waits
/// (unless the channel is empty: one message of any accepted size fits).
pub const CHANNEL_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Most messages one `recvBatch` returns.
pub const RECV_BATCH_MAX: u32 = 4096;

/// Most capabilities carried by one message.
pub const CAPS_PER_MESSAGE_MAX: u32 = 64;

struct Message {
    data: Vec<u8>,
    caps: Vec<capnp::capability::Client>,
    origin: String,
}

struct State {
    queue: RefCell<VecDeque<Message>>,
    bytes: Cell<usize>,
    capacity: usize,
    closed: Cell<bool>,
    senders: Cell<usize>,
    receivers: Cell<usize>,
    /// Wakes senders waiting for room, and everyone on close.
    room: Notify,
    /// Wakes receivers waiting for a message, and everyone on close.
    arrival: Notify,
}

impl State {
    fn close(&self) {
        self.closed.set(true);
        self.room.notify_waiters();
        self.arrival.notify_waiters();
    }

    fn has_room(&self, bytes: usize) -> bool {
        let queue = self.queue.borrow();
        queue.is_empty()
            || (queue.len() < self.capacity && self.bytes.get() + bytes <= CHANNEL_BYTES_MAX)
    }
}

/// The set of senders this host serves, used to recognise its own channels
/// when a capability comes back through an anchor.
pub type Senders = Rc<RefCell<CapabilityServerSet<SenderServer, sender::Client>>>;

/// `Sender`.
pub struct SenderServer {
    state: Rc<State>,
    origin: String,
}

/// `Receiver`.
pub struct ReceiverServer {
    state: Rc<State>,
}

impl Drop for SenderServer {
    fn drop(&mut self) {
        self.state.senders.set(self.state.senders.get() - 1);
        if self.state.senders.get() == 0 {
            // No sender can ever send again.
            self.state.close();
        }
    }
}

impl Drop for ReceiverServer {
    fn drop(&mut self) {
        self.state.receivers.set(self.state.receivers.get() - 1);
        if self.state.receivers.get() == 0 {
            // Wake blocked senders so they fail instead of waiting forever.
            self.state.room.notify_waiters();
        }
    }
}

fn new_sender(senders: &Senders, state: Rc<State>, origin: String) -> sender::Client {
    state.senders.set(state.senders.get() + 1);
    senders
        .borrow_mut()
        .new_client(SenderServer { state, origin })
}

/// A new channel of `capacity` messages; its sender stamps messages with
/// `origin` (this host's peer id).
///
/// # Errors
///
/// When `capacity` is 0 or over [`CHANNEL_CAPACITY_MAX`].
pub fn new_channel(
    senders: &Senders,
    capacity: u32,
    origin: PeerId,
) -> Result<(sender::Client, receiver::Client), capnp::Error> {
    if capacity == 0 || capacity > CHANNEL_CAPACITY_MAX {
        return Err(invalid(format!(
            "channel capacity must be 1 to {CHANNEL_CAPACITY_MAX}; got {capacity}"
        )));
    }
    let state = Rc::new(State {
        queue: RefCell::new(VecDeque::new()),
        bytes: Cell::new(0),
        capacity: capacity as usize,
        closed: Cell::new(false),
        senders: Cell::new(0),
        receivers: Cell::new(1),
        room: Notify::new(),
        arrival: Notify::new(),
    });
    let sender = new_sender(senders, state.clone(), origin.to_base58());
    let receiver = capnp_rpc::new_client(ReceiverServer { state });
    Ok((sender, receiver))
}

/// If `cap` is a sender of this host's channels, returns a sender of the
/// same channel that stamps `origin` on its messages; otherwise `cap`
/// unchanged. Anchors call this when they hand a capability to a caller,
/// so a receiver learns which host's connection a message came through.
pub async fn restamp(
    senders: &Senders,
    cap: capnp::capability::Client,
    origin: PeerId,
) -> capnp::capability::Client {
    let typed: sender::Client = sender::Client {
        client: cap.clone(),
    };
    let local = senders.borrow().get_local_server_of_resolved(&typed);
    match local {
        Some(server) => new_sender(senders, server.state.clone(), origin.to_base58()).client,
        None => cap,
    }
}

impl sender::Server for SenderServer {
    async fn send(
        self: CapRc<Self>,
        params: sender::SendParams,
        _: sender::SendResults,
    ) -> Result<(), capnp::Error> {
        let message = params.get()?.get_message()?;
        let data = message.get_data()?.to_vec();
        let cap_list = message.get_caps()?;
        if cap_list.len() > CAPS_PER_MESSAGE_MAX {
            return Err(invalid(format!(
                "a message carries at most {CAPS_PER_MESSAGE_MAX} capabilities; got {}",
                cap_list.len()
            )));
        }
        let mut caps = Vec::with_capacity(cap_list.len() as usize);
        for entry in cap_list.iter() {
            caps.push(entry.get_cap().get_as_capability()?);
        }
        let state = &self.state;
        loop {
            if state.closed.get() {
                return Err(invalid("send on a closed channel"));
            }
            if state.receivers.get() == 0 {
                return Err(capnp::Error::disconnected(
                    "send on a channel whose receiver is gone (its process ended?)".to_owned(),
                ));
            }
            let room = state.room.notified();
            if state.has_room(data.len()) {
                break;
            }
            room.await;
        }
        state.bytes.set(state.bytes.get() + data.len());
        state.queue.borrow_mut().push_back(Message {
            data,
            caps,
            origin: self.origin.clone(),
        });
        assert!(state.queue.borrow().len() <= state.capacity);
        state.arrival.notify_one();
        Ok(())
    }

    async fn close(
        self: CapRc<Self>,
        _: sender::CloseParams,
        _: sender::CloseResults,
    ) -> Result<(), capnp::Error> {
        self.state.close();
        Ok(())
    }
}

impl receiver::Server for ReceiverServer {
    async fn recv(
        self: CapRc<Self>,
        _: receiver::RecvParams,
        mut results: receiver::RecvResults,
    ) -> Result<(), capnp::Error> {
        let state = &self.state;
        let message = loop {
            let arrival = state.arrival.notified();
            if let Some(message) = state.queue.borrow_mut().pop_front() {
                break Some(message);
            }
            if state.closed.get() {
                break None;
            }
            arrival.await;
        };
        let mut out = results.get();
        let Some(message) = message else {
            out.set_closed(true);
            return Ok(());
        };
        state.bytes.set(state.bytes.get() - message.data.len());
        state.room.notify_one();
        out.set_origin(&message.origin);
        let mut built = out.init_message();
        built.set_data(&message.data);
        let mut caps = built.init_caps(u32::try_from(message.caps.len()).unwrap_or(0));
        for (index, cap) in message.caps.into_iter().enumerate() {
            let Ok(index) = u32::try_from(index) else {
                break;
            };
            caps.reborrow()
                .get(index)
                .init_cap()
                .set_as_capability(cap.hook);
        }
        Ok(())
    }

    async fn close(
        self: CapRc<Self>,
        _: receiver::CloseParams,
        _: receiver::CloseResults,
    ) -> Result<(), capnp::Error> {
        self.state.close();
        Ok(())
    }

    async fn recv_batch(
        self: CapRc<Self>,
        params: receiver::RecvBatchParams,
        mut results: receiver::RecvBatchResults,
    ) -> Result<(), capnp::Error> {
        let max = params.get()?.get_max().clamp(1, RECV_BATCH_MAX) as usize;
        let state = &self.state;
        let batch: Vec<Message> = loop {
            let arrival = state.arrival.notified();
            {
                let mut queue = state.queue.borrow_mut();
                if !queue.is_empty() {
                    let take = queue.len().min(max);
                    break queue.drain(..take).collect();
                }
            }
            if state.closed.get() {
                results.get().set_closed(true);
                return Ok(());
            }
            arrival.await;
        };
        let bytes: usize = batch.iter().map(|message| message.data.len()).sum();
        state.bytes.set(state.bytes.get() - bytes);
        state.room.notify_waiters();
        let mut list = results
            .get()
            .init_messages(u32::try_from(batch.len()).unwrap_or(0));
        for (index, message) in batch.into_iter().enumerate() {
            let Ok(index) = u32::try_from(index) else {
                break;
            };
            let mut item = list.reborrow().get(index);
            item.set_origin(&message.origin);
            let mut built = item.init_message();
            built.set_data(&message.data);
            let mut caps = built.init_caps(u32::try_from(message.caps.len()).unwrap_or(0));
            for (slot, cap) in message.caps.into_iter().enumerate() {
                let Ok(slot) = u32::try_from(slot) else { break };
                caps.reborrow()
                    .get(slot)
                    .init_cap()
                    .set_as_capability(cap.hook);
            }
        }
        Ok(())
    }
}
