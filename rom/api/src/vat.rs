//! The one way to start a Cap'n Proto `RpcSystem` in this project.
//!
//! A capnp client whose `RpcSystem` is not being polled never gets an answer:
//! its calls sit in a queue that nothing drains. This is the classic capnp
//! deadlock (wetware/ww #450: a 30-second hang misdiagnosed for weeks). It
//! happens when code bootstraps a client and awaits a call on it *before*
//! spawning the driver, or when the driver is dropped.
//!
//! [`connect`] makes that impossible: it builds the `RpcSystem`, hands it to
//! the caller's spawner *first*, and only then returns the remote bootstrap
//! client. There is no way to get the client without the driver running.
//!
//! No `when_resolved` handshake is done: it is unreliable in capnp-rpc, and
//! the first call on the client is the liveness check.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use capnp::capability::FromClientHook;
use capnp::message::ReaderOptions;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, Disconnector, RpcSystem, VatNetwork};
use futures::io::{AsyncRead, AsyncWrite, BufReader, BufWriter};

use crate::limits::{NESTING_DEPTH_MAX, TRAVERSAL_WORDS_MAX};
use crate::meter::{Activity, Counted, Meter, MeteredNetwork};

/// The future that drives an `RpcSystem` until the connection ends.
///
/// `Ok(())` means the peer went away; an error means the connection broke
/// (e.g. a malformed or oversized message). Either way the connection is
/// over, and calls on its clients fail.
pub type Driver = Pin<Box<dyn Future<Output = Result<(), capnp::Error>>>>;

/// Buffer size for each direction. capnp-futures writes the segment table
/// and each segment separately; unbuffered, each becomes its own syscall,
/// WASI call or yamux frame (2-2.6x the CPU per call, measured).
const IO_BUFFER_BYTES: usize = 64 * 1024;

/// Reader options for every connection: refuse messages over
/// [`crate::limits::MESSAGE_BYTES_MAX`] before allocating for them.
#[must_use]
pub fn reader_options() -> ReaderOptions {
    let mut options = ReaderOptions::new();
    options
        .traversal_limit_in_words(Some(TRAVERSAL_WORDS_MAX))
        .nesting_limit(NESTING_DEPTH_MAX);
    options
}

/// A started connection: the remote side's bootstrap capability, and a
/// handle to end the connection.
pub struct Connection<C> {
    /// The peer's bootstrap capability.
    pub client: C,
    /// Ends the connection when awaited.
    pub disconnector: Disconnector<Side>,
}

/// Starts a two-party capnp connection over `reader`/`writer`.
///
/// `local` is the capability this side offers as its bootstrap (or `None`).
/// `spawn` receives the connection's driver and must run it to completion
/// on the current thread (capnp objects are `!Send`), e.g.
/// `tokio::task::spawn_local`. It is called before this function returns
/// the client, which is the whole point of this helper.
pub fn connect<C, R, W, S>(
    reader: R,
    writer: W,
    side: Side,
    local: Option<capnp::capability::Client>,
    spawn: S,
) -> Connection<C>
where
    C: FromClientHook,
    R: AsyncRead + Unpin + 'static,
    W: AsyncWrite + Unpin + 'static,
    S: FnOnce(Driver),
{
    start(network(reader, writer, side), side, local, spawn)
}

/// [`connect`], counting the connection's calls and bytes into `meter`
/// and capping its calls in flight (see [`crate::meter`]). With
/// `activity`, it also stamps when a byte last crossed it, so its owner can
/// tell whether it is idle.
pub fn connect_metered<C, R, W, S>(
    reader: R,
    writer: W,
    side: Side,
    local: Option<capnp::capability::Client>,
    meter: Rc<Meter>,
    activity: Option<Rc<Activity>>,
    spawn: S,
) -> Connection<C>
where
    C: FromClientHook,
    R: AsyncRead + Unpin + 'static,
    W: AsyncWrite + Unpin + 'static,
    S: FnOnce(Driver),
{
    // Byte times are stamped only for a connection someone watches; the
    // calls waiting are kept for every metered one (the cap needs them).
    let reader = Counted::new(reader, meter.clone(), activity.clone());
    let writer = Counted::new(writer, meter.clone(), activity.clone());
    let network = MeteredNetwork::new(
        network(reader, writer, side),
        meter,
        activity.unwrap_or_default(),
    );
    start(network, side, local, spawn)
}

fn network<R, W>(reader: R, writer: W, side: Side) -> twoparty::VatNetwork<BufReader<R>>
where
    R: AsyncRead + Unpin + 'static,
    W: AsyncWrite + Unpin + 'static,
{
    twoparty::VatNetwork::new(
        BufReader::with_capacity(IO_BUFFER_BYTES, reader),
        BufWriter::with_capacity(IO_BUFFER_BYTES, writer),
        side,
        reader_options(),
    )
}

fn start<C, N, S>(
    network: N,
    side: Side,
    local: Option<capnp::capability::Client>,
    spawn: S,
) -> Connection<C>
where
    C: FromClientHook,
    N: VatNetwork<Side> + 'static,
    S: FnOnce(Driver),
{
    let mut system = RpcSystem::new(Box::new(network), local);
    let remote = match side {
        Side::Client => Side::Server,
        Side::Server => Side::Client,
    };
    let client: C = system.bootstrap(remote);
    let disconnector = system.get_disconnector();
    spawn(Box::pin(system));
    Connection {
        client,
        disconnector,
    }
}
