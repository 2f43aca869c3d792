//! Serving `Host` over capnp-rpc on libp2p streams on [`RPC_PROTOCOL`](crate::net::RPC_PROTOCOL).
//! Dialling a host is [`crate::net::dial`]'s.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use anyhow::Result;
use capnp_rpc::rpc_twoparty_capnp::Side;
use futures::AsyncReadExt;
use libp2p::PeerId;
use tracing::{debug, warn};

use crate::cap::context::{HostContext, RpcConnections};
use crate::cap::host::HostServer;
use crate::net::dial::is_disconnect;

/// Most inbound RPC connections served at once. Past it, new streams are
/// refused (dropped) until others close.
pub const INBOUND_CONNECTIONS_MAX: usize = 1024;

/// Most inbound RPC connections from one peer. A host, a CLI or a native
/// client needs one or a few; the cap keeps one peer from holding every
/// slot of [`INBOUND_CONNECTIONS_MAX`] and locking the others out.
pub const INBOUND_CONNECTIONS_PER_PEER_MAX: usize = 64;

/// Serves `Host` to every peer that opens an [`RPC_PROTOCOL`](crate::net::RPC_PROTOCOL) stream, until
/// the node stops.
///
/// # Errors
///
/// When the protocol is already being served.
pub fn serve(ctx: Rc<HostContext>) -> Result<()> {
    let mut incoming = ctx.node.accept_rpc()?;
    let per_peer: Rc<RefCell<HashMap<PeerId, usize>>> = Rc::default();
    tokio::task::spawn_local(async move {
        // This loop only hands streams off, so a crowd of clients arriving
        // at once waits in the queue for moments, not for each other.
        while let Some((peer, stream)) = incoming.recv().await {
            let connections = &ctx.rpc_connections;
            if connections.live.get() >= INBOUND_CONNECTIONS_MAX {
                RpcConnections::count(&connections.refused);
                warn!(%peer, "refusing an RPC connection: {INBOUND_CONNECTIONS_MAX} already open");
                continue;
            }
            let from_peer = per_peer.borrow().get(&peer).copied().unwrap_or(0);
            if from_peer >= INBOUND_CONNECTIONS_PER_PEER_MAX {
                RpcConnections::count(&connections.refused);
                warn!(%peer, "refusing an RPC connection: this peer has {INBOUND_CONNECTIONS_PER_PEER_MAX} open (INBOUND_CONNECTIONS_PER_PEER_MAX)");
                continue;
            }
            connections.live.set(connections.live.get() + 1);
            RpcConnections::count(&connections.accepted);
            *per_peer.borrow_mut().entry(peer).or_default() += 1;
            let ctx_for_driver = ctx.clone();
            let per_peer = per_peer.clone();
            let host = HostServer::client(ctx.clone(), peer);
            let (reader, writer) = stream.split();
            ww_api::vat::connect_metered::<capnp::capability::Client, _, _, _>(
                reader,
                writer,
                Side::Server,
                Some(host.client),
                ctx.rpc_meter.clone(),
                move |driver| {
                    tokio::task::spawn_local(async move {
                        let connections = &ctx_for_driver.rpc_connections;
                        // A malformed or oversized message ends only this
                        // connection; the host keeps serving everyone else.
                        match driver.await {
                            Ok(()) => debug!(%peer, "RPC connection closed"),
                            Err(err) if is_disconnect(&err) => {
                                debug!(%peer, "RPC connection closed: {err}")
                            }
                            Err(err) => {
                                RpcConnections::count(&connections.failed);
                                warn!(%peer, "RPC connection failed: {err}")
                            }
                        }
                        connections.live.set(connections.live.get() - 1);
                        let mut per_peer = per_peer.borrow_mut();
                        if let Some(count) = per_peer.get_mut(&peer) {
                            *count -= 1;
                            if *count == 0 {
                                per_peer.remove(&peer);
                            }
                        }
                    });
                },
            );
        }
    });
    Ok(())
}
