//! The `Host` capability.

use std::rc::Rc;
use std::time::Instant;

use capnp::capability::Rc as CapRc;
use libp2p::PeerId;
use ww_api::host;

use crate::net::Node;

/// Everything a host's capabilities share.
pub struct HostContext {
    /// The libp2p node.
    pub node: Node,
}

/// `Host`, as served to one caller.
pub struct HostServer {
    ctx: Rc<HostContext>,
    /// The authenticated peer whose connection this capability was handed
    /// to (this host's own id for local processes).
    #[allow(dead_code)]
    origin: PeerId,
}

impl HostServer {
    /// A `Host` capability for a caller that arrived from `origin`.
    pub fn client(ctx: Rc<HostContext>, origin: PeerId) -> host::Client {
        capnp_rpc::new_client(Self { ctx, origin })
    }
}

impl host::Server for HostServer {
    async fn peer_id(
        self: CapRc<Self>,
        _: host::PeerIdParams,
        mut results: host::PeerIdResults,
    ) -> Result<(), capnp::Error> {
        results
            .get()
            .set_peer_id(self.ctx.node.peer_id().to_base58());
        Ok(())
    }

    async fn view(
        self: CapRc<Self>,
        _: host::ViewParams,
        mut results: host::ViewResults,
    ) -> Result<(), capnp::Error> {
        let now = Instant::now();
        let hosts = self.ctx.node.view().hosts();
        let mut list = results
            .get()
            .init_hosts(u32::try_from(hosts.len()).unwrap_or(u32::MAX));
        for (index, (peer, entry)) in hosts.iter().enumerate() {
            let Ok(index) = u32::try_from(index) else {
                break;
            };
            let mut info = list.reborrow().get(index);
            info.set_peer_id(peer.to_base58());
            info.set_ttl_ms(u32::try_from(entry.ttl.as_millis()).unwrap_or(u32::MAX));
            info.set_age_ms(
                u32::try_from(now.saturating_duration_since(entry.last_seen).as_millis())
                    .unwrap_or(u32::MAX),
            );
            let mut addrs = info.init_addrs(u32::try_from(entry.addrs.len()).unwrap_or(0));
            for (slot, addr) in entry.addrs.iter().enumerate() {
                let Ok(slot) = u32::try_from(slot) else { break };
                addrs.set(slot, addr.to_string());
            }
        }
        Ok(())
    }

    async fn pubsub(
        self: CapRc<Self>,
        _: host::PubsubParams,
        mut results: host::PubsubResults,
    ) -> Result<(), capnp::Error> {
        results
            .get()
            .set_pubsub(super::pubsub::PubSubServer::client(self.ctx.node.clone()));
        Ok(())
    }
}
