//! Serving `Host` over capnp-rpc on libp2p streams on [`RPC_PROTOCOL`](crate::net::RPC_PROTOCOL).
//! Dialling a host is [`crate::net::dial`]'s.

use std::cell::Cell;
use std::rc::Rc;

use anyhow::Result;
use capnp_rpc::rpc_twoparty_capnp::Side;
use futures::AsyncReadExt;
use tracing::{debug, warn};

use crate::cap::context::HostContext;
use crate::cap::host::HostServer;
use crate::net::dial::is_disconnect;

/// Most inbound RPC connections served at once. Past it, new streams are
/// refused (dropped) until others close.
pub const INBOUND_CONNECTIONS_MAX: usize = 1024;

/// Serves `Host` to every peer that opens an [`RPC_PROTOCOL`](crate::net::RPC_PROTOCOL) stream, until
/// the node stops.
///
/// # Errors
///
/// When the protocol is already being served.
pub fn serve(ctx: Rc<HostContext>) -> Result<()> {
    let mut incoming = ctx.node.accept_rpc()?;
    let live = Rc::new(Cell::new(0usize));
    tokio::task::spawn_local(async move {
        // This loop only hands streams off, so a crowd of clients arriving
        // at once waits in the queue for moments, not for each other.
        while let Some((peer, stream)) = incoming.recv().await {
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
