//! The `Host` capability: the top of the capability servers. It hands out
//! the others (anchors, the executor, grants, the read view), which depend
//! only on [`super::context`] and never on this module.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use capnp::capability::Rc as CapRc;
use libp2p::PeerId;
use ww_api::host;

use super::anchor::{Caller, RootServer};
use super::channel;
use super::context::HostContext;
use super::executor::{ExecutorServer, Proc};
use super::grants::{self, Grant, GrantValue};
use super::read_view::ReadRootServer;
use super::tree::Owner;
use super::{invalid, text};
use crate::net::Node;

/// `Host`, as served to one caller.
pub struct HostServer {
    ctx: Rc<HostContext>,
    caller: Caller,
    /// False for a process spawned without `host`: it may use only its
    /// grants, `peerId` and `newChannel`.
    full: bool,
    grants: Rc<[Grant]>,
}

impl HostServer {
    /// A `Host` for a peer (or CLI client) whose connection comes from
    /// `origin`.
    pub fn client(ctx: Rc<HostContext>, origin: PeerId) -> host::Client {
        capnp_rpc::new_client(Self {
            ctx,
            caller: Caller {
                origin,
                owner: None,
            },
            full: true,
            grants: Rc::from(Vec::new()),
        })
    }

    /// The shared state of a host with `node`, keeping its files in
    /// `data_dir`, whose processes get their `Host` from
    /// [`Self::for_process`].
    pub fn context(
        node: Node,
        data_dir: PathBuf,
        runtime: Rc<crate::runner::Runtime>,
    ) -> Rc<HostContext> {
        HostContext::new(node, data_dir, runtime, Self::for_process)
    }

    /// The `Host` of one incarnation of local process `proc`: what it
    /// anchors is cleared when it ends. A process spawned with `host` gets
    /// this host's whole authority; any other holds its grants only. Every
    /// incarnation gets the same grants, caps included.
    pub fn for_process(ctx: Rc<HostContext>, proc: &Proc) -> host::Client {
        let origin = ctx.node.peer_id();
        capnp_rpc::new_client(Self {
            ctx,
            caller: Caller {
                origin,
                owner: Some(Owner {
                    host: origin,
                    pid: proc.id(),
                }),
            },
            full: proc.holds_host(),
            grants: Rc::from(proc.grants()),
        })
    }

    /// The `Host` of the peer `peer_id` names, reached over this host's
    /// connection: `dial` and `connect` (named by `what`). A process's
    /// connections are its host's, so the two differ only in the name a
    /// grant-only process is refused.
    async fn reach(
        &self,
        what: &str,
        peer_id: capnp::Result<capnp::text::Reader<'_>>,
    ) -> Result<host::Client, capnp::Error> {
        self.permit(what)?;
        let raw = text(peer_id, "peer id")?;
        let peer = super::peer_id(&raw)?;
        if peer == self.ctx.node.peer_id() {
            return Ok(capnp_rpc::new_client(HostServer {
                ctx: self.ctx.clone(),
                caller: self.caller,
                full: self.full,
                grants: self.grants.clone(),
            }));
        }
        let in_view = self.ctx.node.view().get(&peer).is_some();
        if !in_view && !self.ctx.node.is_connected(peer).await {
            return Err(capnp::Error::failed(format!(
                "host {peer} is not in the cluster view: it is unknown here, or it stopped more than a TTL ago; `ww ls /` lists the hosts"
            )));
        }
        self.ctx.peers.host(peer).await
    }

    /// Refuses `what` to a grant-only process.
    fn permit(&self, what: &str) -> Result<(), capnp::Error> {
        if self.full {
            return Ok(());
        }
        let pid = self.caller.owner.map_or(0, |owner| owner.pid);
        Err(grants::not_permitted(pid, what, &self.grants))
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
        self.permit("view")?;
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

    async fn root(
        self: CapRc<Self>,
        _: host::RootParams,
        mut results: host::RootResults,
    ) -> Result<(), capnp::Error> {
        self.permit("root")?;
        results
            .get()
            .set_anchor(RootServer::client(self.ctx.clone(), self.caller));
        Ok(())
    }

    async fn pubsub(
        self: CapRc<Self>,
        _: host::PubsubParams,
        mut results: host::PubsubResults,
    ) -> Result<(), capnp::Error> {
        self.permit("pubsub")?;
        results
            .get()
            .set_pubsub(super::pubsub::PubSubServer::client(
                self.ctx.node.clone(),
                self.ctx.subscriptions.clone(),
            ));
        Ok(())
    }

    async fn executor(
        self: CapRc<Self>,
        _: host::ExecutorParams,
        mut results: host::ExecutorResults,
    ) -> Result<(), capnp::Error> {
        self.permit("executor")?;
        results
            .get()
            .set_executor(ExecutorServer::client(self.ctx.clone()));
        Ok(())
    }

    async fn new_channel(
        self: CapRc<Self>,
        params: host::NewChannelParams,
        mut results: host::NewChannelResults,
    ) -> Result<(), capnp::Error> {
        let capacity = params.get()?.get_capacity();
        let (sender, receiver) =
            channel::new_channel(&self.ctx.senders, capacity, self.ctx.node.peer_id())?;
        let mut out = results.get();
        out.set_sender(sender);
        out.set_receiver(receiver);
        Ok(())
    }

    async fn dial(
        self: CapRc<Self>,
        params: host::DialParams,
        mut results: host::DialResults,
    ) -> Result<(), capnp::Error> {
        let host = self.reach("dial", params.get()?.get_peer_id()).await?;
        results.get().set_host(host);
        Ok(())
    }

    async fn connect(
        self: CapRc<Self>,
        params: host::ConnectParams,
        mut results: host::ConnectResults,
    ) -> Result<(), capnp::Error> {
        let host = self.reach("connect", params.get()?.get_peer_id()).await?;
        results.get().set_host(host);
        Ok(())
    }

    async fn grants(
        self: CapRc<Self>,
        _: host::GrantsParams,
        results: host::GrantsResults,
    ) -> Result<(), capnp::Error> {
        grants::fill(&self.grants, results);
        Ok(())
    }

    async fn grant_anchor(
        self: CapRc<Self>,
        params: host::GrantAnchorParams,
        mut results: host::GrantAnchorResults,
    ) -> Result<(), capnp::Error> {
        let name = text(params.get()?.get_name(), "grant name")?;
        let grant = self.grants.iter().find(|grant| grant.name == name);
        let Some(GrantValue::ReadPath(components)) = grant.map(|grant| &grant.value) else {
            return Err(invalid(format!(
                "no readPath grant named {name:?}; this process holds: {}",
                grants::names(&self.grants)
            )));
        };
        results.get().set_anchor(ReadRootServer::client(
            self.ctx.clone(),
            self.caller,
            components.clone(),
        ));
        Ok(())
    }

    async fn metrics(
        self: CapRc<Self>,
        _: host::MetricsParams,
        mut results: host::MetricsResults,
    ) -> Result<(), capnp::Error> {
        let Some(owner) = self.caller.owner else {
            return Err(invalid(
                "only a process of this host reports metrics through it",
            ));
        };
        results.get().set_metrics(crate::ops::MetricsServer::client(
            self.ctx.reported.clone(),
            owner.pid,
        ));
        Ok(())
    }
}
