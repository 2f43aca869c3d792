//! capnp-rpc between hosts (and between a CLI and a host) over libp2p
//! streams on [`RPC_PROTOCOL`].

use std::cell::Cell;
use std::rc::Rc;

use anyhow::{Context, Result};
use capnp_rpc::rpc_twoparty_capnp::Side;
use futures::{AsyncReadExt, StreamExt};
use libp2p::PeerId;
use tracing::{debug, warn};
use ww_api::host;

use crate::cap::host::{HostContext, HostServer};
use crate::net::{Node, RPC_PROTOCOL};

/// Most inbound RPC connections served at once. Past it, new streams are
/// refused (dropped) until others close.
pub const INBOUND_CONNECTIONS_MAX: usize = 1024;

/// Serves `Host` to every peer that opens an [`RPC_PROTOCOL`] stream, until
/// the node stops.
///
/// # Errors
///
/// When the protocol is already being served.
pub fn serve(ctx: Rc<HostContext>) -> Result<()> {
    let mut incoming = ctx.node.accept(RPC_PROTOCOL)?;
    let live = Rc::new(Cell::new(0usize));
    tokio::task::spawn_local(async move {
        // This loop only hands streams off: libp2p drops inbound streams
        // when their accept loop falls behind.
        while let Some((peer, stream)) = incoming.next().await {
            if live.get() >= INBOUND_CONNECTIONS_MAX {
                warn!(%peer, "refusing an RPC connection: {INBOUND_CONNECTIONS_MAX} already open");
                continue;
            }
            live.set(live.get() + 1);
            let live = live.clone();
            let host = HostServer::client(ctx.clone(), peer);
            let (reader, writer) = stream.split();
            ww_api::vat::connect::<capnp::capability::Client, _, _, _>(
                reader,
                writer,
                Side::Server,
                Some(host.client),
                move |driver| {
                    tokio::task::spawn_local(async move {
                        // A malformed or oversized message ends only this
                        // connection; the host keeps serving everyone else.
                        match driver.await {
                            Ok(()) => debug!(%peer, "RPC connection closed"),
                            Err(err) if is_disconnect(&err) => {
                                debug!(%peer, "RPC connection closed: {err}")
                            }
                            Err(err) => warn!(%peer, "RPC connection failed: {err}"),
                        }
                        live.set(live.get() - 1);
                    });
                },
            );
        }
    });
    Ok(())
}

/// Whether a connection error is just the peer going away. A peer that
/// disconnects can end the RpcSystem with `Failed("connection is closed")`
/// rather than `Disconnected` (notes/transport-facts.md).
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

/// Connects to the `Host` at `addr` (which need not name a peer id).
///
/// # Errors
///
/// When nothing answers at `addr` or it does not serve the RPC protocol.
pub async fn connect_addr(node: &Node, addr: libp2p::Multiaddr) -> Result<(PeerId, host::Client)> {
    let peer = node.dial(addr.clone()).await?;
    let stream = node
        .open_stream(peer, RPC_PROTOCOL)
        .await
        .with_context(|| format!("{addr} does not serve the ww RPC protocol"))?;
    Ok((peer, bootstrap(peer, stream, || ())))
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
