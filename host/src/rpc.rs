//! Serving `Host` over capnp-rpc on libp2p streams on [`RPC_PROTOCOL`](crate::net::RPC_PROTOCOL).
//! Dialling a host is [`crate::net::dial`]'s.
//!
//! The inbound connections are a bounded table. When it is full, a new
//! connection takes the slot of the one that has been idle longest (no
//! byte either way and no call waiting for [`INBOUND_CONNECTION_IDLE_MIN_MS`]);
//! when none is that idle, it is refused. A peer that opens streams and
//! leaves them silent therefore holds slots only until someone needs
//! them, while a connection in use is never closed for a newcomer: a
//! host-to-host connection carries live capabilities (a replica's inbox,
//! a subscription), and closing it would break them for the sake of a
//! connection that may be an attacker's.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Result;
use capnp_rpc::rpc_twoparty_capnp::Side;
use futures::AsyncReadExt;
use libp2p::PeerId;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};
use ww_api::meter::Activity;

use crate::cap::context::{HostContext, RpcConnections};
use crate::cap::host::HostServer;
use crate::limits::{
    INBOUND_CONNECTIONS_MAX, INBOUND_CONNECTIONS_PER_PEER_MAX, INBOUND_CONNECTION_IDLE_MIN_MS,
};
use crate::net::dial::is_disconnect;

/// One served connection.
struct Slot {
    peer: PeerId,
    activity: Rc<Activity>,
    /// Ends the connection when sent to (or dropped).
    close: oneshot::Sender<()>,
}

/// The served connections, by an id of their own.
#[derive(Default)]
struct Table {
    slots: HashMap<u64, Slot>,
    per_peer: HashMap<PeerId, usize>,
    next_id: u64,
}

impl Table {
    fn held_by(&self, peer: &PeerId) -> usize {
        self.per_peer.get(peer).copied().unwrap_or(0)
    }

    /// The slot to give up for a newcomer, among those `eligible`: idle
    /// for at least [`INBOUND_CONNECTION_IDLE_MIN_MS`], preferring the
    /// peer that holds the most connections (a flooder before a host with
    /// its one), then the longest idle.
    fn victim(&self, now: Instant, eligible: impl Fn(&Slot) -> bool) -> Option<(u64, Duration)> {
        let idle_min = Duration::from_millis(INBOUND_CONNECTION_IDLE_MIN_MS);
        self.slots
            .iter()
            .filter(|(_, slot)| eligible(slot))
            .filter_map(|(id, slot)| {
                let idle = slot
                    .activity
                    .idle_for(now)
                    .filter(|idle| *idle >= idle_min)?;
                Some(((self.held_by(&slot.peer), idle), *id))
            })
            .max()
            .map(|((_, idle), id)| (id, idle))
    }

    fn insert(&mut self, slot: Slot) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        *self.per_peer.entry(slot.peer).or_default() += 1;
        self.slots.insert(id, slot);
        id
    }

    fn remove(&mut self, id: u64) -> Option<Slot> {
        let slot = self.slots.remove(&id)?;
        if let Some(count) = self.per_peer.get_mut(&slot.peer) {
            *count -= 1;
            if *count == 0 {
                self.per_peer.remove(&slot.peer);
            }
        }
        Some(slot)
    }
}

/// Makes room in `table` for a connection from `peer`: closes an idle one
/// if a limit is reached. Returns why it is refused, if it is.
fn make_room(table: &mut Table, peer: PeerId, connections: &RpcConnections) -> Option<String> {
    let now = Instant::now();
    let (victim, limit) = if table.held_by(&peer) >= INBOUND_CONNECTIONS_PER_PEER_MAX {
        (
            table.victim(now, |slot| slot.peer == peer),
            format!("this peer has {INBOUND_CONNECTIONS_PER_PEER_MAX} open (INBOUND_CONNECTIONS_PER_PEER_MAX)"),
        )
    } else if table.slots.len() >= INBOUND_CONNECTIONS_MAX {
        (
            table.victim(now, |_| true),
            format!("{INBOUND_CONNECTIONS_MAX} open (INBOUND_CONNECTIONS_MAX)"),
        )
    } else {
        return None;
    };
    let Some((id, idle)) = victim else {
        return Some(format!(
            "{limit} and none idle for {INBOUND_CONNECTION_IDLE_MIN_MS} ms (INBOUND_CONNECTION_IDLE_MIN_MS)"
        ));
    };
    if let Some(slot) = table.remove(id) {
        RpcConnections::count(&connections.evicted);
        info!(%peer, idle_peer = %slot.peer, idle_ms = idle.as_millis() as u64, "closing an idle RPC connection to admit a new one: {limit}");
        let _ = slot.close.send(());
    }
    None
}

/// Serves `Host` to every peer that opens an [`RPC_PROTOCOL`](crate::net::RPC_PROTOCOL) stream, until
/// the node stops.
///
/// # Errors
///
/// When the protocol is already being served.
pub fn serve(ctx: Rc<HostContext>) -> Result<()> {
    let mut incoming = ctx.node.accept_rpc()?;
    let table: Rc<RefCell<Table>> = Rc::default();
    tokio::task::spawn_local(async move {
        // This loop only hands streams off, so a crowd of clients arriving
        // at once waits in the queue for moments, not for each other.
        while let Some((peer, stream)) = incoming.recv().await {
            let connections = &ctx.rpc_connections;
            let activity = Rc::new(Activity::default());
            let (close, closed) = oneshot::channel();
            let id = {
                let mut table = table.borrow_mut();
                if let Some(reason) = make_room(&mut table, peer, connections) {
                    RpcConnections::count(&connections.refused);
                    warn!(%peer, "refusing an RPC connection: {reason}");
                    continue;
                }
                let id = table.insert(Slot {
                    peer,
                    activity: activity.clone(),
                    close,
                });
                connections.live.set(table.slots.len());
                id
            };
            RpcConnections::count(&connections.accepted);
            let ctx_for_driver = ctx.clone();
            let table = table.clone();
            let host = HostServer::client(ctx.clone(), peer);
            let (reader, writer) = stream.split();
            ww_api::vat::connect_metered::<capnp::capability::Client, _, _, _>(
                reader,
                writer,
                Side::Server,
                Some(host.client),
                ctx.rpc_meter.clone(),
                Some(activity),
                move |driver| {
                    tokio::task::spawn_local(async move {
                        let connections = &ctx_for_driver.rpc_connections;
                        // A malformed or oversized message ends only this
                        // connection; the host keeps serving everyone else.
                        // Closing drops the driver, and with it the stream.
                        let ended = tokio::select! {
                            ended = driver => Some(ended),
                            _ = closed => None,
                        };
                        match ended {
                            None => debug!(%peer, "RPC connection closed for a newcomer"),
                            Some(Ok(())) => debug!(%peer, "RPC connection closed"),
                            Some(Err(err)) if is_disconnect(&err) => {
                                debug!(%peer, "RPC connection closed: {err}")
                            }
                            Some(Err(err)) => {
                                RpcConnections::count(&connections.failed);
                                warn!(%peer, "RPC connection failed: {err}")
                            }
                        }
                        let mut table = table.borrow_mut();
                        table.remove(id);
                        connections.live.set(table.slots.len());
                    });
                },
            );
        }
    });
    Ok(())
}
