//! Dialling a host: a capnp-rpc `Host` client over a libp2p stream on
//! [`RPC_PROTOCOL`], with retries for a host that is busy or still starting.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use capnp_rpc::rpc_twoparty_capnp::Side;
use futures::AsyncReadExt;
use libp2p::PeerId;
use tracing::debug;
use ww_api::host;

use crate::{Node, RPC_PROTOCOL};

/// How long [`connect_addr`] keeps retrying a host that does not answer
/// yet: one busy accepting a crowd of clients, or one whose connection
/// closes while connecting. A dial that fails outright (nothing listens, a
/// failed handshake) is not retried.
pub const CONNECT_DEADLINE_MS: u64 = 20_000;

/// Longest wait for the first answer on a new connection. Past it the
/// attempt counts as failed and is retried (within the deadline).
const CONNECT_PROBE_TIMEOUT_MS: u64 = 5_000;

/// First and longest pause between connection attempts (doubling, with
/// jitter so a crowd of clients does not retry in step).
const CONNECT_RETRY_FIRST_MS: u64 = 50;
const CONNECT_RETRY_MAX_MS: u64 = 1_000;

/// Whether a connection error is just the peer going away. A peer that
/// disconnects can end the RpcSystem with `Failed("connection is closed")`
/// rather than `Disconnected`.
pub fn is_disconnect(err: &capnp::Error) -> bool {
    err.kind == capnp::ErrorKind::Disconnected || err.extra.contains("connection is closed")
}

/// Connects to the `Host` served by `peer`, dialing it if needed.
/// `on_close` runs when the connection ends.
///
/// # Errors
///
/// When the peer cannot be reached or does not serve the RPC protocol.
pub async fn connect_host(
    node: &Node,
    peer: PeerId,
    on_close: impl FnOnce() + 'static,
) -> Result<host::Client> {
    node.connect(peer).await?;
    let stream = node.open_stream(peer, RPC_PROTOCOL).await?;
    Ok(bootstrap(peer, stream, on_close))
}

/// Connects to the `Host` of a host known by its `addrs` (from another
/// host's view): the first address that answers, once each, no retries.
/// For a client that reaches hosts itself rather than through the host it
/// dialed; the caller keeps that relayed route as its fallback.
///
/// # Errors
///
/// When no address answers; the last failure is named.
pub async fn connect_at(node: &Node, addrs: &[libp2p::Multiaddr]) -> Result<host::Client> {
    let mut last = anyhow!("no address to dial");
    for addr in addrs {
        let connected = match node.dial(addr.clone()).await {
            Ok(peer) => connect_host(node, peer, || ()).await,
            Err(err) => Err(err),
        };
        match connected {
            Ok(host) => return Ok(host),
            Err(err) => last = err,
        }
    }
    Err(last)
}

/// Connects to the `Host` at `addr` (which need not name a peer id), and
/// checks that it answers. Retries for up to [`CONNECT_DEADLINE_MS`] while
/// the failure may pass: a connection or stream closed while connecting
/// ("Peer disconnected"), a dial or first call that times out. Gives up at
/// once when the dial fails otherwise (nothing listens at `addr`, another
/// cluster key) or the host does not serve the RPC protocol.
///
/// # Errors
///
/// When nothing answers at `addr`, it does not serve the RPC protocol, or
/// no attempt succeeded within the deadline (the last failure is named).
pub async fn connect_addr(node: &Node, addr: libp2p::Multiaddr) -> Result<(PeerId, host::Client)> {
    let deadline = Instant::now() + Duration::from_millis(CONNECT_DEADLINE_MS);
    let mut pause_ms = CONNECT_RETRY_FIRST_MS;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let failure = match connect_addr_once(node, &addr).await {
            Ok(connected) => return Ok(connected),
            Err(failure) => failure,
        };
        let now = Instant::now();
        if !failure.transient || now >= deadline {
            let err = failure.error;
            return Err(if attempts > 1 {
                err.context(format!("{attempts} attempts to connect to {addr} failed"))
            } else {
                err
            });
        }
        debug!(%addr, "connecting failed, retrying: {:#}", failure.error);
        let jitter_ms = rand::random::<u64>() % pause_ms.max(1);
        let wait = Duration::from_millis(pause_ms / 2 + jitter_ms).min(deadline - now);
        tokio::time::sleep(wait).await;
        pause_ms = (pause_ms * 2).min(CONNECT_RETRY_MAX_MS);
    }
}

struct ConnectFailure {
    error: anyhow::Error,
    /// Whether another attempt may succeed.
    transient: bool,
}

async fn connect_addr_once(
    node: &Node,
    addr: &libp2p::Multiaddr,
) -> Result<(PeerId, host::Client), ConnectFailure> {
    let peer = node.dial(addr.clone()).await.map_err(|error| {
        // Only a dial that timed out may pass (a host busy with a crowd of
        // handshakes). A refused connection (nothing listens) or a failed
        // handshake (another cluster key) will not: say so now rather than
        // after the whole deadline.
        let message = format!("{error:#}").to_lowercase();
        let transient = message.contains("timed out") || message.contains("timeout");
        ConnectFailure { error, transient }
    })?;
    let stream = node
        .open_stream(peer, RPC_PROTOCOL)
        .await
        .map_err(|error| {
            let unsupported = format!("{error:#}").contains("does not support");
            ConnectFailure {
                error: if unsupported {
                    error.context(format!("{addr} does not serve the ww RPC protocol"))
                } else {
                    error
                },
                transient: !unsupported,
            }
        })?;
    let host = bootstrap(peer, stream, || ());
    // The first call proves the host took the stream: one that was reset
    // while connecting fails here, not in the ROM's first call.
    let probe = host.peer_id_request().send().promise;
    match tokio::time::timeout(Duration::from_millis(CONNECT_PROBE_TIMEOUT_MS), probe).await {
        Ok(Ok(_)) => Ok((peer, host)),
        Ok(Err(err)) => Err(ConnectFailure {
            transient: err.kind == capnp::ErrorKind::Disconnected
                || err.kind == capnp::ErrorKind::Overloaded
                || is_disconnect(&err),
            error: anyhow!("the first call to {addr} failed: {err}"),
        }),
        Err(_) => Err(ConnectFailure {
            error: anyhow!("{addr} did not answer within {CONNECT_PROBE_TIMEOUT_MS} ms"),
            transient: true,
        }),
    }
}

fn bootstrap(
    peer: PeerId,
    stream: libp2p::Stream,
    on_close: impl FnOnce() + 'static,
) -> host::Client {
    let (reader, writer) = stream.split();
    let connection = ww_api::vat::connect::<host::Client, _, _, _>(
        reader,
        writer,
        Side::Client,
        None,
        |driver| {
            tokio::task::spawn_local(async move {
                if let Err(err) = driver.await {
                    if !is_disconnect(&err) {
                        debug!(%peer, "RPC connection failed: {err}");
                    }
                }
                on_close();
            });
        },
    );
    connection.client
}
