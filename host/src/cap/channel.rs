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
//!   through whose connection its sender was obtained (see [`restamp`]);
//! - a message queued by `call` also carries a one-shot `Reply`: the call
//!   returns what the receiver answers through it, and fails if the
//!   message or its `Reply` is dropped unanswered, or after
//!   [`CALL_REPLY_TIMEOUT_MS`]. Across hosts that is one message each way
//!   where a request and an answering send are two calls and two returns.
//!
//! # Budget
//!
//! All channels of a host together hold at most [`CHANNEL_HOST_BYTES_MAX`]
//! bytes and [`CHANNELS_MAX`] channels, and one writer at most
//! [`CHANNEL_WRITER_BYTES_MAX`] and [`WRITER_CHANNELS_MAX`] of them, so a
//! flooder is refused while everybody else still has room. Shares alone
//! would let four flooding processes (a process needs no grant to make
//! channels) take the whole host budget, and then the Raft messages other
//! hosts send a replica's inbox would be refused too. So the budget has two
//! sides, this host's processes and callers from elsewhere, and neither
//! side together may take the last [`CHANNEL_RESERVED_BYTES`] and
//! [`CHANNELS_RESERVED`]: those are always the other side's. A send is
//! charged from the moment it arrives (a send waiting for room holds its
//! copy too) until its message is received or its channel is dropped; a
//! channel is charged to whoever created it until it is dropped. The
//! writer is the local process making the call; a call from outside the
//! host's processes is charged to the peer its sender was handed to (see
//! [`restamp`]: each remote host's replicas keep their own share), or, for
//! a sender made by `newChannel`, to all such callers together. A call over
//! a budget fails at once with an "overloaded" error naming the budget.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::rc::Rc;

use capnp::capability::Rc as CapRc;
use capnp_rpc::CapabilityServerSet;
use libp2p::PeerId;
use tokio::sync::oneshot;
use tokio::sync::Notify;
use ww_api::limits::CHANNEL_CAPACITY_MAX;
use ww_api::{receiver, reply, sender};

use super::invalid;
use crate::limits::{
    CALL_REPLY_TIMEOUT_MS, CAPS_PER_MESSAGE_MAX, CHANNELS_MAX, CHANNELS_RESERVED,
    CHANNEL_BYTES_MAX, CHANNEL_HOST_BYTES_MAX, CHANNEL_RESERVED_BYTES, CHANNEL_WRITER_BYTES_MAX,
    MESSAGE_OVERHEAD_BYTES, RECV_BATCH_MAX, WRITER_CHANNELS_MAX,
};

/// Who a channel or a send is charged to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Writer {
    /// A local process, by id.
    Process(u64),
    /// A remote host (or client) through whose connection the sender was
    /// obtained, by peer id.
    Peer(String),
    /// Every other caller: CLI clients and other hosts calling `newChannel`
    /// and using the sender it returned.
    Others,
}

impl Writer {
    /// Whether the writer is one of this host's processes (one side of the
    /// budget), not a caller from elsewhere (the other).
    fn is_local(&self) -> bool {
        matches!(self, Self::Process(_))
    }
}

impl fmt::Display for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Process(pid) => write!(f, "process {pid}"),
            Self::Peer(peer) => write!(f, "senders handed to peer {peer}"),
            Self::Others => f.write_str("callers that are not processes of this host"),
        }
    }
}

/// What one writer, or the whole host, holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of messages, queued or waiting for room, with their overhead.
    pub bytes: usize,
    /// Live channels.
    pub channels: usize,
}

/// The host's channel budget: what is held in all, by this host's
/// processes together, and per writer.
#[derive(Default)]
struct Budget {
    total: Cell<Usage>,
    /// The part of `total` held by local processes; the rest is held by
    /// callers from elsewhere.
    local: Cell<Usage>,
    writers: RefCell<HashMap<Writer, Usage>>,
}

impl Budget {
    /// Charges `writer` for `bytes` and `channels`, or says which budget
    /// refuses them.
    fn charge(
        self: &Rc<Self>,
        writer: Writer,
        bytes: usize,
        channels: usize,
    ) -> Result<Charge, capnp::Error> {
        let total = self.total.get();
        let held = self.usage(&writer);
        let local = self.local.get();
        let side = if writer.is_local() {
            local
        } else {
            Usage {
                bytes: total.bytes - local.bytes,
                channels: total.channels - local.channels,
            }
        };
        let other_side = if writer.is_local() {
            "callers from other hosts"
        } else {
            "this host's processes"
        };
        let refusal = if total.bytes + bytes > CHANNEL_HOST_BYTES_MAX {
            Some(format!(
                "this host's channels hold {} bytes and their budget is \
                 {CHANNEL_HOST_BYTES_MAX} (CHANNEL_HOST_BYTES_MAX)",
                total.bytes
            ))
        } else if held.bytes + bytes > CHANNEL_WRITER_BYTES_MAX {
            Some(format!(
                "{writer} hold {} bytes in this host's channels and a writer's \
                 share is {CHANNEL_WRITER_BYTES_MAX} (CHANNEL_WRITER_BYTES_MAX)",
                held.bytes
            ))
        } else if side.bytes + bytes > CHANNEL_HOST_BYTES_MAX - CHANNEL_RESERVED_BYTES {
            Some(format!(
                "{writer} and the writers on its side hold {} bytes in this host's \
                 channels; the last {CHANNEL_RESERVED_BYTES} of the host's budget are \
                 kept for {other_side} (CHANNEL_RESERVED_BYTES)",
                side.bytes
            ))
        } else if total.channels + channels > CHANNELS_MAX {
            Some(format!(
                "this host has {} live channels, its most (CHANNELS_MAX)",
                total.channels
            ))
        } else if side.channels + channels > CHANNELS_MAX - CHANNELS_RESERVED {
            Some(format!(
                "{writer} and the writers on its side have {} live channels on this \
                 host; the last {CHANNELS_RESERVED} are kept for {other_side} \
                 (CHANNELS_RESERVED)",
                side.channels
            ))
        } else if held.channels + channels > WRITER_CHANNELS_MAX {
            Some(format!(
                "{writer} created {} live channels, a writer's most \
                 (WRITER_CHANNELS_MAX)",
                held.channels
            ))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return Err(capnp::Error::overloaded(format!(
                "{refusal}; receive from or drop some channels first"
            )));
        }
        self.total.set(Usage {
            bytes: total.bytes + bytes,
            channels: total.channels + channels,
        });
        if writer.is_local() {
            self.local.set(Usage {
                bytes: local.bytes + bytes,
                channels: local.channels + channels,
            });
        }
        // Every send passes here: update in place rather than clone the
        // writer (a peer id) into a fresh key.
        let updated = Usage {
            bytes: held.bytes + bytes,
            channels: held.channels + channels,
        };
        let mut writers = self.writers.borrow_mut();
        match writers.get_mut(&writer) {
            Some(usage) => *usage = updated,
            None => {
                writers.insert(writer.clone(), updated);
            }
        }
        drop(writers);
        Ok(Charge {
            budget: self.clone(),
            writer,
            bytes,
            channels,
        })
    }

    fn usage(&self, writer: &Writer) -> Usage {
        self.writers
            .borrow()
            .get(writer)
            .copied()
            .unwrap_or_default()
    }

    fn release(&self, charge: &Charge) {
        let mut writers = self.writers.borrow_mut();
        // Paired with `charge`: an invariant of the counters, not input.
        let Some(held) = writers.get_mut(&charge.writer) else {
            panic!("a writer is charged until its charges are released");
        };
        let total = self.total.get();
        let local = self.local.get();
        assert!(
            held.bytes >= charge.bytes
                && held.channels >= charge.channels
                && total.bytes >= charge.bytes
                && total.channels >= charge.channels
        );
        if charge.writer.is_local() {
            assert!(local.bytes >= charge.bytes && local.channels >= charge.channels);
            self.local.set(Usage {
                bytes: local.bytes - charge.bytes,
                channels: local.channels - charge.channels,
            });
        }
        held.bytes -= charge.bytes;
        held.channels -= charge.channels;
        if *held == Usage::default() {
            writers.remove(&charge.writer);
        }
        self.total.set(Usage {
            bytes: total.bytes - charge.bytes,
            channels: total.channels - charge.channels,
        });
    }
}

/// A charge against the budget, given back when dropped: with its message
/// (received, or dropped with its channel), with a send that fails or is
/// cancelled while it waits, with its channel.
struct Charge {
    budget: Rc<Budget>,
    writer: Writer,
    bytes: usize,
    channels: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self);
    }
}

struct Message {
    data: Vec<u8>,
    caps: Vec<capnp::capability::Client>,
    origin: String,
    /// Where the answer goes, for a message queued by `call`.
    reply: Option<oneshot::Sender<Vec<u8>>>,
    /// Held until the message is received or its channel dropped.
    _charge: Charge,
}

struct State {
    /// This host's peer id: senders stamped with another are held by
    /// remote peers.
    home: String,
    /// The channel's own charge, given back when it is dropped.
    _charge: Charge,
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

/// This host's channels: the set of senders it serves, used to recognise
/// its own channels when a capability comes back through an anchor, and
/// their budget.
#[derive(Clone, Default)]
pub struct Senders {
    set: Rc<RefCell<CapabilityServerSet<SenderServer, sender::Client>>>,
    budget: Rc<Budget>,
}

impl Senders {
    /// What all channels of this host hold.
    pub fn usage(&self) -> Usage {
        self.budget.total.get()
    }

    /// What `writer` holds in this host's channels.
    pub fn usage_of(&self, writer: &Writer) -> Usage {
        self.budget.usage(writer)
    }
}

/// `Sender`.
pub struct SenderServer {
    state: Rc<State>,
    origin: String,
    budget: Rc<Budget>,
}

impl SenderServer {
    /// Who a send through this sender is charged to.
    fn writer(&self) -> Writer {
        match crate::runner::calling_process() {
            Some(pid) => Writer::Process(pid),
            None if self.origin != self.state.home => Writer::Peer(self.origin.clone()),
            None => Writer::Others,
        }
    }
}

/// `Reply`: answers one `call`.
struct ReplyServer {
    answer: RefCell<Option<oneshot::Sender<Vec<u8>>>>,
}

impl reply::Server for ReplyServer {
    async fn send(
        self: CapRc<Self>,
        params: reply::SendParams,
        _: reply::SendResults,
    ) -> Result<(), capnp::Error> {
        let data = params.get()?.get_data()?.to_vec();
        let Some(answer) = self.answer.borrow_mut().take() else {
            return Err(invalid("this call was answered already"));
        };
        // The caller may have gone (it gave up waiting): nobody to tell.
        let _ = answer.send(data);
        Ok(())
    }
}

fn reply_client(answer: oneshot::Sender<Vec<u8>>) -> reply::Client {
    capnp_rpc::new_client(ReplyServer {
        answer: RefCell::new(Some(answer)),
    })
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
            // Nobody can receive what is queued: give its bytes back now,
            // not when the last sender goes. Dropped after the borrow ends:
            // dropping a capability may run arbitrary code.
            let queued = std::mem::take(&mut *self.state.queue.borrow_mut());
            self.state.bytes.set(0);
            drop(queued);
        }
    }
}

fn new_sender(senders: &Senders, state: Rc<State>, origin: String) -> sender::Client {
    state.senders.set(state.senders.get() + 1);
    senders.set.borrow_mut().new_client(SenderServer {
        state,
        origin,
        budget: senders.budget.clone(),
    })
}

/// The writer of a call made with no sender at hand (`newChannel`).
fn calling_writer() -> Writer {
    crate::runner::calling_process().map_or(Writer::Others, Writer::Process)
}

/// A new channel of `capacity` messages; its sender stamps messages with
/// `origin` (this host's peer id). It is charged to the calling process
/// (see the module's budget).
///
/// # Errors
///
/// When `capacity` is 0 or over [`CHANNEL_CAPACITY_MAX`], or the host or
/// the caller has too many live channels ([`CHANNELS_MAX`],
/// [`WRITER_CHANNELS_MAX`]).
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
    let charge = senders.budget.charge(calling_writer(), 0, 1)?;
    let state = Rc::new(State {
        home: origin.to_base58(),
        _charge: charge,
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
    let local = senders.set.borrow().get_local_server_of_resolved(&typed);
    match local {
        Some(server) => new_sender(senders, server.state.clone(), origin.to_base58()).client,
        None => cap,
    }
}

impl SenderServer {
    /// Copies `message` out of its request and charges its writer.
    fn take(
        &self,
        message: ww_api::ww_capnp::message::Reader<'_>,
    ) -> Result<(Vec<u8>, Vec<capnp::capability::Client>, Charge), capnp::Error> {
        let data = message.get_data()?;
        let cap_list = message.get_caps()?;
        if cap_list.len() > CAPS_PER_MESSAGE_MAX {
            return Err(invalid(format!(
                "a message carries at most {CAPS_PER_MESSAGE_MAX} capabilities; got {}",
                cap_list.len()
            )));
        }
        // Charged before it waits: a send blocked on a full channel holds
        // its copy as surely as a queued one.
        let charge = self
            .budget
            .charge(self.writer(), data.len() + MESSAGE_OVERHEAD_BYTES, 0)?;
        let mut caps = Vec::with_capacity(cap_list.len() as usize);
        for entry in cap_list.iter() {
            caps.push(entry.get_cap().get_as_capability()?);
        }
        Ok((data.to_vec(), caps, charge))
    }

    /// Waits for room, then queues.
    async fn queue(
        &self,
        (data, caps, charge): (Vec<u8>, Vec<capnp::capability::Client>, Charge),
        reply: Option<oneshot::Sender<Vec<u8>>>,
    ) -> Result<(), capnp::Error> {
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
            reply,
            _charge: charge,
        });
        assert!(state.queue.borrow().len() <= state.capacity);
        state.arrival.notify_one();
        Ok(())
    }
}

impl sender::Server for SenderServer {
    async fn send(
        self: CapRc<Self>,
        params: sender::SendParams,
        _: sender::SendResults,
    ) -> Result<(), capnp::Error> {
        let message = self.take(params.get()?.get_message()?)?;
        // The request's own message would be a second, uncharged copy held
        // while the send waits.
        drop(params);
        self.queue(message, None).await
    }

    async fn call(
        self: CapRc<Self>,
        params: sender::CallParams,
        mut results: sender::CallResults,
    ) -> Result<(), capnp::Error> {
        let message = self.take(params.get()?.get_message()?)?;
        drop(params);
        let (answer, answered) = oneshot::channel();
        self.queue(message, Some(answer)).await?;
        let timeout = std::time::Duration::from_millis(CALL_REPLY_TIMEOUT_MS);
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(data)) => {
                results.get().set_reply(&data);
                Ok(())
            }
            Ok(Err(_)) => Err(capnp::Error::failed(
                "the receiver dropped the message without answering it".to_owned(),
            )),
            Err(_) => Err(capnp::Error::failed(format!(
                "no answer within {CALL_REPLY_TIMEOUT_MS} ms (CALL_REPLY_TIMEOUT_MS)"
            ))),
        }
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
        if let Some(answer) = message.reply {
            out.set_reply(reply_client(answer));
        }
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
            if let Some(answer) = message.reply {
                item.set_reply(reply_client(answer));
            }
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

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll};

    use futures::task::noop_waker_ref;

    use super::*;
    use crate::runner::as_process;

    const MIB: usize = 1024 * 1024;

    fn channel(senders: &Senders, home: PeerId) -> (sender::Client, receiver::Client) {
        new_channel(senders, CHANNEL_CAPACITY_MAX, home).unwrap()
    }

    async fn send(sender: &sender::Client, bytes: usize) -> Result<(), capnp::Error> {
        let mut request = sender.send_request();
        request.get().init_message().set_data(&vec![7; bytes]);
        request.send().promise.await.map(drop)
    }

    /// Sends `bytes`-byte messages until refused; returns how many went
    /// and the refusal.
    async fn flood(sender: &sender::Client, bytes: usize) -> (usize, String) {
        let mut sent = 0;
        loop {
            if let Err(err) = send(sender, bytes).await {
                return (sent, err.to_string());
            }
            sent += 1;
        }
    }

    async fn drain(receiver: &receiver::Client) -> usize {
        let mut request = receiver.recv_batch_request();
        request.get().set_max(RECV_BATCH_MAX);
        let response = request.send().promise.await.unwrap();
        response.get().unwrap().get_messages().unwrap().len() as usize
    }

    #[tokio::test]
    async fn channel_bytes_are_budgeted_per_writer_and_in_all() {
        let home = PeerId::random();
        let senders = Senders::default();
        let cost = MIB + MESSAGE_OVERHEAD_BYTES;
        let share = CHANNEL_WRITER_BYTES_MAX / cost;
        let mut channels = Vec::new();
        for pid in 1..=3 {
            let (sender, receiver) = as_process(pid, async { channel(&senders, home) }).await;
            let (sent, err) = as_process(pid, flood(&sender, MIB)).await;
            assert_eq!(sent, share, "{err}");
            assert!(err.contains("CHANNEL_WRITER_BYTES_MAX"), "{err}");
            assert_eq!(
                senders.usage_of(&Writer::Process(pid)),
                Usage {
                    bytes: share * cost,
                    channels: 1
                }
            );
            channels.push((sender, receiver));
        }
        // A fourth process gets what the local side has left: the rest of
        // the host's budget is kept for callers from elsewhere.
        let (sender, receiver) = as_process(4, async { channel(&senders, home) }).await;
        let (fourth, err) = as_process(4, flood(&sender, MIB)).await;
        let local_max = CHANNEL_HOST_BYTES_MAX - CHANNEL_RESERVED_BYTES;
        assert_eq!(fourth, (local_max - 3 * share * cost) / cost);
        assert!(err.contains("CHANNEL_RESERVED_BYTES"), "{err}");
        assert_eq!(senders.usage_of(&Writer::Process(4)).bytes, fourth * cost);
        channels.push((sender, receiver));
        // A caller from elsewhere still gets its whole share.
        let (sender, receiver) = channel(&senders, home);
        let (sent, err) = flood(&sender, MIB).await;
        assert_eq!(sent, share, "{err}");
        assert!(err.contains("CHANNEL_WRITER_BYTES_MAX"), "{err}");
        let full = senders.usage();
        assert_eq!(full.bytes, (4 * share + fourth) * cost);
        assert_eq!(full.channels, 5);
        assert!(full.bytes <= CHANNEL_HOST_BYTES_MAX);
        channels.push((sender, receiver));

        // Receiving gives a writer's bytes back, and lets it send again.
        let (sender, receiver) = &channels[0];
        assert_eq!(drain(receiver).await, share);
        assert_eq!(senders.usage_of(&Writer::Process(1)).bytes, 0);
        assert_eq!(senders.usage().bytes, full.bytes - share * cost);
        as_process(1, send(sender, MIB)).await.unwrap();
        assert_eq!(drain(receiver).await, 1);
        // Dropping a receiver gives back what its channel held, though its
        // sender lives on; dropping both gives back the channel.
        let (sender, receiver) = channels.remove(1);
        drop(receiver);
        assert_eq!(
            senders.usage_of(&Writer::Process(2)),
            Usage {
                bytes: 0,
                channels: 1
            }
        );
        drop(sender);
        assert_eq!(senders.usage_of(&Writer::Process(2)), Usage::default());
        drop(channels);
        assert_eq!(senders.usage(), Usage::default());
    }

    /// A sender of a new channel on `senders` as handed to a random remote
    /// peer (what an anchor lookup from another host gets), and that peer.
    async fn handed_to_a_peer(
        senders: &Senders,
        home: PeerId,
    ) -> (sender::Client, receiver::Client, Writer) {
        let (sender, receiver) = channel(senders, home);
        let remote = PeerId::random();
        let handed = restamp(senders, sender.client.clone(), remote).await;
        (
            sender::Client { client: handed },
            receiver,
            Writer::Peer(remote.to_base58()),
        )
    }

    #[tokio::test]
    async fn flooding_processes_leave_other_hosts_their_reserve_and_back() {
        // A replica's inbox takes Raft messages from other hosts: however
        // many local processes flood, those still get in; and however many
        // remote callers flood, a local process still can send.
        let home = PeerId::random();
        let cost = MIB + MESSAGE_OVERHEAD_BYTES;
        let share = CHANNEL_WRITER_BYTES_MAX / cost;

        let senders = Senders::default();
        let mut held = Vec::new();
        for pid in 1..=8 {
            let (sender, receiver) = as_process(pid, async { channel(&senders, home) }).await;
            as_process(pid, flood(&sender, MIB)).await;
            held.push((sender, receiver));
        }
        let local = senders.usage().bytes;
        assert!(local <= CHANNEL_HOST_BYTES_MAX - CHANNEL_RESERVED_BYTES);
        let (sender, _receiver, peer) = handed_to_a_peer(&senders, home).await;
        let (sent, err) = flood(&sender, MIB).await;
        assert_eq!(sent, share, "a peer gets its whole share: {err}");
        assert_eq!(senders.usage_of(&peer).bytes, share * cost);
        // A ninth process is refused, and its refusal holds nothing.
        let (sender, _receiver) = as_process(9, async { channel(&senders, home) }).await;
        let err = as_process(9, send(&sender, MIB))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("CHANNEL_RESERVED_BYTES"), "{err}");
        assert_eq!(senders.usage_of(&Writer::Process(9)).bytes, 0);
        drop(held);

        let senders = Senders::default();
        let mut held = Vec::new();
        for _ in 0..8 {
            let (sender, receiver, _) = handed_to_a_peer(&senders, home).await;
            flood(&sender, MIB).await;
            held.push((sender, receiver));
        }
        assert!(senders.usage().bytes <= CHANNEL_HOST_BYTES_MAX - CHANNEL_RESERVED_BYTES);
        let (sender, _receiver) = as_process(1, async { channel(&senders, home) }).await;
        let (sent, err) = as_process(1, flood(&sender, MIB)).await;
        assert_eq!(sent, share, "a process gets its whole share: {err}");
        drop(held);
    }

    #[tokio::test]
    async fn a_waiting_send_is_charged_until_it_is_queued_or_cancelled() {
        let home = PeerId::random();
        let senders = Senders::default();
        let (sender, receiver) = new_channel(&senders, 1, home).unwrap();
        send(&sender, 100).await.unwrap();
        let one = senders.usage().bytes;
        assert_eq!(one, 100 + MESSAGE_OVERHEAD_BYTES);
        // The channel is full: this send waits, holding its copy.
        let mut waiting = pin!(send(&sender, 100));
        let mut context = Context::from_waker(noop_waker_ref());
        assert!(waiting.as_mut().poll(&mut context).is_pending());
        assert_eq!(senders.usage().bytes, 2 * one);
        // Received: the waiting send is queued, still charged once.
        assert_eq!(drain(&receiver).await, 1);
        assert!(matches!(
            waiting.as_mut().poll(&mut context),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(senders.usage().bytes, one);
        // A waiting send that is cancelled gives its copy back.
        let mut cancelled = Box::pin(send(&sender, 100));
        assert!(cancelled.as_mut().poll(&mut context).is_pending());
        assert_eq!(senders.usage().bytes, 2 * one);
        drop(cancelled);
        assert_eq!(senders.usage().bytes, one);
    }

    #[tokio::test]
    async fn live_channels_are_counted_per_writer_and_in_all() {
        let home = PeerId::random();
        let senders = Senders::default();
        let mut held = Vec::new();
        for _ in 0..WRITER_CHANNELS_MAX {
            held.push(new_channel(&senders, 1, home).unwrap());
        }
        let err = new_channel(&senders, 1, home).err().unwrap().to_string();
        assert!(err.contains("WRITER_CHANNELS_MAX"), "{err}");
        for pid in 1..=3 {
            for _ in 0..WRITER_CHANNELS_MAX {
                held.push(
                    as_process(pid, async { new_channel(&senders, 1, home) })
                        .await
                        .unwrap(),
                );
            }
        }
        assert_eq!(senders.usage().channels, CHANNELS_MAX);
        let err = as_process(4, async { new_channel(&senders, 1, home) })
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("CHANNELS_MAX"), "{err}");
        // A dropped channel frees its slot.
        held.truncate(held.len() - 1);
        assert_eq!(senders.usage().channels, CHANNELS_MAX - 1);
        held.push(
            as_process(4, async { new_channel(&senders, 1, home) })
                .await
                .unwrap(),
        );
        // The local side now holds 3 * WRITER_CHANNELS_MAX channels, its
        // most (CHANNELS_MAX - CHANNELS_RESERVED): once a remote caller's
        // channel is dropped the host has room, and another process is
        // still refused.
        drop(held.remove(0));
        assert_eq!(senders.usage().channels, CHANNELS_MAX - 1);
        let err = as_process(5, async { new_channel(&senders, 1, home) })
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("CHANNELS_RESERVED"), "{err}");
        drop(held);
        assert_eq!(senders.usage(), Usage::default());
    }

    #[tokio::test]
    async fn a_send_through_a_restamped_sender_is_charged_to_its_peer() {
        let home = PeerId::random();
        let remote = PeerId::random();
        let senders = Senders::default();
        let (sender, _receiver) = new_channel(&senders, 4, home).unwrap();
        let handed = restamp(&senders, sender.client.clone(), remote).await;
        let handed = sender::Client { client: handed };
        send(&handed, 10).await.unwrap();
        send(&sender, 20).await.unwrap();
        let peer = Writer::Peer(remote.to_base58());
        assert_eq!(senders.usage_of(&peer).bytes, 10 + MESSAGE_OVERHEAD_BYTES);
        assert_eq!(
            senders.usage_of(&Writer::Others).bytes,
            20 + MESSAGE_OVERHEAD_BYTES
        );
    }

    async fn call(sender: &sender::Client, data: &[u8]) -> Result<Vec<u8>, capnp::Error> {
        let mut request = sender.call_request();
        request.get().init_message().set_data(data);
        let response = request.send().promise.await?;
        Ok(response.get()?.get_reply()?.to_vec())
    }

    /// Receives one batch: each message's data and its `Reply`, if any.
    async fn receive(receiver: &receiver::Client) -> Vec<(Vec<u8>, Option<reply::Client>)> {
        let mut request = receiver.recv_batch_request();
        request.get().set_max(RECV_BATCH_MAX);
        let response = request.send().promise.await.unwrap();
        let messages = response.get().unwrap().get_messages().unwrap();
        messages
            .iter()
            .map(|item| {
                let data = item.get_message().unwrap().get_data().unwrap().to_vec();
                let reply = item.has_reply().then(|| item.get_reply().unwrap());
                (data, reply)
            })
            .collect()
    }

    async fn answer(reply: &reply::Client, data: &[u8]) -> Result<(), capnp::Error> {
        let mut request = reply.send_request();
        request.get().set_data(data);
        request.send().promise.await.map(drop)
    }

    #[tokio::test]
    async fn a_call_returns_what_its_receiver_answers_once() {
        let senders = Senders::default();
        let (sender, receiver) = new_channel(&senders, 4, PeerId::random()).unwrap();
        send(&sender, 3).await.unwrap();
        let receive_and_answer = async {
            let mut got = receive(&receiver).await;
            if got.len() < 2 {
                got.extend(receive(&receiver).await);
            }
            assert_eq!(got.len(), 2);
            assert!(got[0].1.is_none(), "a plain send carries no reply");
            assert_eq!(got[1].0, b"question");
            let reply = got[1].1.take().expect("a call carries a reply");
            answer(&reply, b"answer").await.unwrap();
            let again = answer(&reply, b"again").await.unwrap_err().to_string();
            assert!(again.contains("answered already"), "{again}");
        };
        let (answered, ()) = futures::join!(call(&sender, b"question"), receive_and_answer);
        assert_eq!(answered.unwrap(), b"answer");
        assert_eq!(senders.usage().bytes, 0, "a received call holds no bytes");
    }

    #[tokio::test]
    async fn a_call_fails_when_its_reply_or_its_receiver_is_dropped_unanswered() {
        let senders = Senders::default();
        let (sender, receiver) = new_channel(&senders, 4, PeerId::random()).unwrap();
        let drop_reply = async {
            let got = receive(&receiver).await;
            assert_eq!(got.len(), 1);
            drop(got);
        };
        let (answered, ()) = futures::join!(call(&sender, b"q"), drop_reply);
        let err = answered.unwrap_err().to_string();
        assert!(err.contains("without answering"), "{err}");

        // Queued, then the receiver goes: the queue is dropped with it.
        let drop_receiver = async {
            // Not before the call is queued: then it would fail for
            // another reason (no receiver to queue for).
            while senders.usage().bytes == 0 {
                tokio::task::yield_now().await;
            }
            drop(receiver);
        };
        let (answered, ()) = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            futures::join!(call(&sender, b"q"), drop_receiver)
        })
        .await
        .expect("the call was never queued, or never failed");
        let err = answered.unwrap_err().to_string();
        assert!(err.contains("without answering"), "{err}");
        assert_eq!(senders.usage().bytes, 0);
        // And a later call fails at once.
        let err = call(&sender, b"q").await.unwrap_err().to_string();
        assert!(err.contains("receiver is gone"), "{err}");
    }
}
