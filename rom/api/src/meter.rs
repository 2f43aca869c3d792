//! Counting what crosses a capnp connection: the calls it received, the
//! calls it answered with an exception, the calls still unanswered, and
//! its bytes each way.
//!
//! The count is taken below the `RpcSystem`, where every message passes
//! once: a wrapper around the two-party network looks at each message's
//! kind as it goes by (a few pointer reads, no copy). Counting in the
//! capability servers instead would mean a line in every method of every
//! server, and a method added later would be missed.
//!
//! A [`Meter`] is shared (`Rc`) by every connection it should sum, for
//! example all the inbound connections of a host. An [`Activity`] belongs
//! to one connection: when it last moved a byte, and whether calls are
//! waiting on it, so a host can tell an idle connection from a busy one.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use capnp::capability::Promise;
use capnp::message::{Builder, HeapAllocator};
use capnp::Error;
use capnp_rpc::rpc_capnp::{message, return_};
use capnp_rpc::{Connection, FlowController, IncomingMessage, OutgoingMessage, VatNetwork};
use futures::io::{AsyncRead, AsyncWrite};
use futures::TryFutureExt;

use crate::limits::CALLS_IN_FLIGHT_PER_CONNECTION_MAX;

/// Sums of what crossed the metered connections, since the meter was made.
#[derive(Debug, Default)]
pub struct Meter {
    calls_received: Cell<u64>,
    calls_sent: Cell<u64>,
    calls_in_flight: Cell<u64>,
    exceptions_sent: Cell<u64>,
    bytes_received: Cell<u64>,
    bytes_sent: Cell<u64>,
    calls_refused: Cell<u64>,
}

/// A reading of a [`Meter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeterReading {
    /// Calls the peers made on this side's capabilities.
    pub calls_received: u64,
    /// Calls this side made on the peers' capabilities.
    pub calls_sent: u64,
    /// Received calls answered with an exception: refused, failed, or
    /// cancelled by the connection's end.
    pub exceptions_sent: u64,
    /// Received calls not answered yet.
    pub calls_in_flight: u64,
    /// Bytes read from the connections' streams.
    pub bytes_received: u64,
    /// Bytes written to the connections' streams.
    pub bytes_sent: u64,
    /// Calls refused ("overloaded") because their connection had
    /// [`CALLS_IN_FLIGHT_PER_CONNECTION_MAX`] calls unanswered.
    pub calls_refused: u64,
}

fn add(cell: &Cell<u64>, count: u64) {
    cell.set(cell.get().saturating_add(count));
}

impl Meter {
    /// What the meter has counted so far.
    #[must_use]
    pub fn reading(&self) -> MeterReading {
        MeterReading {
            calls_received: self.calls_received.get(),
            calls_sent: self.calls_sent.get(),
            exceptions_sent: self.exceptions_sent.get(),
            calls_in_flight: self.calls_in_flight.get(),
            bytes_received: self.bytes_received.get(),
            bytes_sent: self.bytes_sent.get(),
            calls_refused: self.calls_refused.get(),
        }
    }
}

/// One connection's activity: when a byte last crossed it either way, and
/// the calls waiting on it: received and not answered, or sent and not
/// returned (their question ids). A connection with a call waiting is busy
/// however long it has been quiet: a `wait` on a process, for one, is
/// answered only when the process ends.
#[derive(Debug)]
pub struct Activity {
    last_byte: Cell<Instant>,
    /// Calls received and not answered. A return also answers bootstrap
    /// requests, which are not calls, so it counts only when its id is here.
    unanswered: RefCell<HashSet<u32>>,
    /// Calls sent with no return yet.
    awaited: RefCell<HashSet<u32>>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            last_byte: Cell::new(Instant::now()),
            unanswered: RefCell::default(),
            awaited: RefCell::default(),
        }
    }
}

impl Activity {
    /// How long the connection has been idle at `now`: no call waiting
    /// and no byte either way. `None` while a call waits.
    #[must_use]
    pub fn idle_for(&self, now: Instant) -> Option<Duration> {
        (self.unanswered.borrow().is_empty() && self.awaited.borrow().is_empty())
            .then(|| now.saturating_duration_since(self.last_byte.get()))
    }

    fn moved(&self) {
        self.last_byte.set(Instant::now());
    }
}

/// What to do with a received message.
enum Admit {
    /// Hand it to the RpcSystem.
    Pass,
    /// Answer call `question_id` with "overloaded" here, and drop it.
    Refuse(u32),
}

/// One connection's part of a [`Meter`]. When the connection ends, the
/// calls it never answered leave the meter's in-flight count.
struct Share {
    meter: Rc<Meter>,
    activity: Rc<Activity>,
}

impl Share {
    /// Counts a received message, and decides whether the RpcSystem gets
    /// it. Past [`CALLS_IN_FLIGHT_PER_CONNECTION_MAX`] unanswered calls, a
    /// new call is refused here, before the RpcSystem allocates anything
    /// for it. The connection goes on reading, so its end is still noticed
    /// (a connection that stopped reading would never see its peer leave).
    /// A call pipelined on a refused call's answer reaches the RpcSystem,
    /// which answers it with an error of its own: it never saw the question.
    fn received(&self, message: &dyn IncomingMessage) -> Admit {
        let Ok(body) = message.get_body() else {
            return Admit::Pass;
        };
        let Ok(message) = body.get_as::<message::Reader<'_>>() else {
            return Admit::Pass;
        };
        match message.which() {
            Ok(message::Call(Ok(call))) => {
                add(&self.meter.calls_received, 1);
                let question_id = call.get_question_id();
                let mut unanswered = self.activity.unanswered.borrow_mut();
                if unanswered.len() >= CALLS_IN_FLIGHT_PER_CONNECTION_MAX {
                    add(&self.meter.calls_refused, 1);
                    add(&self.meter.exceptions_sent, 1);
                    return Admit::Refuse(question_id);
                }
                if unanswered.insert(question_id) {
                    add(&self.meter.calls_in_flight, 1);
                }
            }
            Ok(message::Return(Ok(answer))) => {
                self.activity
                    .awaited
                    .borrow_mut()
                    .remove(&answer.get_answer_id());
            }
            _ => {}
        }
        Admit::Pass
    }

    fn sending(&self, message: &dyn OutgoingMessage) {
        let Ok(body) = message.get_body_as_reader() else {
            return;
        };
        let Ok(message) = body.get_as::<message::Reader<'_>>() else {
            return;
        };
        match message.which() {
            Ok(message::Call(call)) => {
                add(&self.meter.calls_sent, 1);
                if let Ok(call) = call {
                    self.activity
                        .awaited
                        .borrow_mut()
                        .insert(call.get_question_id());
                }
            }
            Ok(message::Return(Ok(answer))) => {
                if !self
                    .activity
                    .unanswered
                    .borrow_mut()
                    .remove(&answer.get_answer_id())
                {
                    return;
                }
                let in_flight = &self.meter.calls_in_flight;
                in_flight.set(in_flight.get().saturating_sub(1));
                if let Ok(return_::Exception(_)) = answer.which() {
                    add(&self.meter.exceptions_sent, 1);
                }
            }
            _ => {}
        }
    }
}

/// Answers call `question_id` with an "overloaded" exception, releasing
/// its parameters' capabilities (they were never imported).
fn refuse<V>(connection: &mut dyn Connection<V>, question_id: u32) {
    let mut outgoing = connection.new_outgoing_message(32);
    let built = outgoing.get_body().map(|body| {
        let mut answer = body.init_as::<message::Builder<'_>>().init_return();
        answer.set_answer_id(question_id);
        answer.set_release_param_caps(true);
        let mut exception = answer.init_exception();
        exception.set_type(capnp_rpc::rpc_capnp::exception::Type::Overloaded);
        exception.set_reason(format!(
            "overloaded: this connection has {CALLS_IN_FLIGHT_PER_CONNECTION_MAX} calls unanswered (CALLS_IN_FLIGHT_PER_CONNECTION_MAX); wait for some"
        ));
    });
    if built.is_ok() {
        // Dropping the promise does not cancel the send.
        let _ = outgoing.send();
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut unanswered = self.activity.unanswered.borrow_mut();
        let in_flight = &self.meter.calls_in_flight;
        in_flight.set(in_flight.get().saturating_sub(unanswered.len() as u64));
        unanswered.clear();
        self.activity.awaited.borrow_mut().clear();
    }
}

/// A [`VatNetwork`] whose connections count into a [`Meter`].
pub(crate) struct MeteredNetwork<N> {
    inner: N,
    meter: Rc<Meter>,
    activity: Rc<Activity>,
}

impl<N> MeteredNetwork<N> {
    pub(crate) fn new(inner: N, meter: Rc<Meter>, activity: Rc<Activity>) -> Self {
        Self {
            inner,
            meter,
            activity,
        }
    }
}

impl<V: 'static, N: VatNetwork<V>> VatNetwork<V> for MeteredNetwork<N> {
    fn connect(&mut self, host_id: V) -> Option<Box<dyn Connection<V>>> {
        let meter = self.meter.clone();
        let activity = self.activity.clone();
        self.inner
            .connect(host_id)
            .map(|inner| MeteredConnection::boxed(inner, meter, activity))
    }

    fn accept(&mut self) -> Promise<Box<dyn Connection<V>>, Error> {
        let meter = self.meter.clone();
        let activity = self.activity.clone();
        Promise::from_future(
            self.inner
                .accept()
                .map_ok(move |inner| MeteredConnection::boxed(inner, meter, activity)),
        )
    }

    fn drive_until_shutdown(&mut self) -> Promise<(), Error> {
        self.inner.drive_until_shutdown()
    }
}

struct MeteredConnection<V> {
    /// Shared with the read in progress, which may answer a refused call
    /// itself; borrowed only between awaits.
    inner: Rc<RefCell<Box<dyn Connection<V>>>>,
    share: Rc<Share>,
}

impl<V: 'static> MeteredConnection<V> {
    fn boxed(
        inner: Box<dyn Connection<V>>,
        meter: Rc<Meter>,
        activity: Rc<Activity>,
    ) -> Box<dyn Connection<V>> {
        let share = Rc::new(Share { meter, activity });
        Box::new(Self {
            inner: Rc::new(RefCell::new(inner)),
            share,
        })
    }
}

impl<V: 'static> Connection<V> for MeteredConnection<V> {
    fn get_peer_vat_id(&self) -> V {
        self.inner.borrow().get_peer_vat_id()
    }

    fn new_outgoing_message(&mut self, first_segment_word_size: u32) -> Box<dyn OutgoingMessage> {
        Box::new(MeteredOutgoing {
            inner: self
                .inner
                .borrow_mut()
                .new_outgoing_message(first_segment_word_size),
            share: self.share.clone(),
        })
    }

    fn receive_incoming_message(&mut self) -> Promise<Option<Box<dyn IncomingMessage>>, Error> {
        let share = self.share.clone();
        let inner = self.inner.clone();
        Promise::from_future(async move {
            loop {
                let next = inner.borrow_mut().receive_incoming_message();
                let Some(message) = next.await? else {
                    return Ok(None);
                };
                match share.received(message.as_ref()) {
                    Admit::Pass => return Ok(Some(message)),
                    Admit::Refuse(question_id) => refuse(&mut **inner.borrow_mut(), question_id),
                }
            }
        })
    }

    fn new_stream(&mut self) -> (Box<dyn FlowController>, Promise<(), Error>) {
        self.inner.borrow_mut().new_stream()
    }

    fn shutdown(&mut self, result: capnp::Result<()>) -> Promise<(), Error> {
        self.inner.borrow_mut().shutdown(result)
    }
}

struct MeteredOutgoing {
    inner: Box<dyn OutgoingMessage>,
    share: Rc<Share>,
}

impl OutgoingMessage for MeteredOutgoing {
    fn get_body(&mut self) -> capnp::Result<capnp::any_pointer::Builder<'_>> {
        self.inner.get_body()
    }

    fn get_body_as_reader(&self) -> capnp::Result<capnp::any_pointer::Reader<'_>> {
        self.inner.get_body_as_reader()
    }

    fn send(self: Box<Self>) -> (Promise<(), Error>, Rc<Builder<HeapAllocator>>) {
        // The body is complete by now: the RpcSystem fills it, then sends.
        self.share.sending(self.inner.as_ref());
        self.inner.send()
    }

    fn take(self: Box<Self>) -> Builder<HeapAllocator> {
        self.inner.take()
    }

    fn size_in_words(&self) -> usize {
        self.inner.size_in_words()
    }
}

/// A stream that counts the bytes read from and written to it.
pub(crate) struct Counted<S> {
    inner: S,
    meter: Rc<Meter>,
    activity: Option<Rc<Activity>>,
}

impl<S> Counted<S> {
    pub(crate) fn new(inner: S, meter: Rc<Meter>, activity: Option<Rc<Activity>>) -> Self {
        Self {
            inner,
            meter,
            activity,
        }
    }

    fn moved(&self, bytes: usize) {
        if bytes > 0 {
            if let Some(activity) = &self.activity {
                activity.moved();
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(read)) = &polled {
            add(&self.meter.bytes_received, *read as u64);
            self.moved(*read);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = &polled {
            add(&self.meter.bytes_sent, *written as u64);
            self.moved(*written);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
