//! `Anchor`: the cluster root, and nodes of this host's tree.
//!
//! `/` lists the hosts in the view. `/<peer id>/a/b` is walked on that
//! peer: if the peer is this host, locally; otherwise this host dials the
//! peer (reusing its connection) and walks the whole path there, so the
//! resulting anchor is served by the peer and reached through this host,
//! never through the caller's own process.
//!
//! # Owners
//!
//! A value set by a local process is owned by that process (see
//! [`super::tree`]). The owner is the original caller: only calls made
//! through a process's own `Host` carry its identity. A call forwarded by
//! another host arrives on that host's shared connection, which does not say
//! which of its processes (or CLI clients) made it, so here it is treated like
//! a CLI client: it may set unowned values, which stay unowned, and is refused
//! on owned ones, even when the owner itself made the call through another
//! host. Refusing is the safe side: no caller can pose as a process by
//! routing its call through a host.
//!
//! Walking never creates nodes: only `set` does, so walks, reads and lists
//! cannot fill the tree.

use std::rc::Rc;

use capnp::capability::Rc as CapRc;
use libp2p::PeerId;
use ww_api::anchor;

use super::context::HostContext;
use super::tree::{Owner, Stored};
use super::{invalid, path, text};

/// Who is calling: where their connection comes from, and which local
/// process (if any) owns what they set.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    /// The peer id of the host whose connection the call came through
    /// (this host's own id for local processes and for calls it forwards).
    pub origin: PeerId,
    /// The local process the caller is, if it is one; `None` for CLI
    /// clients and for calls other hosts forward, whose original caller is
    /// unknown here.
    pub owner: Option<Owner>,
}

/// The cluster root.
pub struct RootServer {
    ctx: Rc<HostContext>,
    caller: Caller,
}

impl RootServer {
    /// The root anchor, for `caller`.
    pub fn client(ctx: Rc<HostContext>, caller: Caller) -> anchor::Client {
        capnp_rpc::new_client(Self { ctx, caller })
    }
}

/// A node of this host's tree.
pub struct LocalServer {
    ctx: Rc<HostContext>,
    caller: Caller,
    /// Components below `/<this host>`.
    path: Vec<String>,
}

/// Resolves `components` (a path from the cluster root) to an anchor.
pub(crate) async fn walk_from_root(
    ctx: Rc<HostContext>,
    caller: Caller,
    components: Vec<String>,
) -> Result<anchor::Client, capnp::Error> {
    let Some(first) = components.first() else {
        return Ok(RootServer::client(ctx, caller));
    };
    let peer: PeerId = first.parse().map_err(|err| {
        invalid(format!(
            "the first component of a path from the root must be a host's peer id; {first:?} is not ({err}); `ww ls /` lists the hosts"
        ))
    })?;
    if peer == ctx.node.peer_id() {
        return Ok(capnp_rpc::new_client(LocalServer {
            ctx,
            caller,
            path: components[1..].to_vec(),
        }));
    }
    // Not `view().get(..)` inline: a `Ref` must not live across an await.
    let in_view = ctx.node.view().get(&peer).is_some();
    if !in_view && !ctx.node.is_connected(peer).await {
        return Err(capnp::Error::failed(format!(
            "host {peer} is not in the cluster view: it is unknown here, or it stopped more than a TTL ago; `ww ls /` lists the hosts"
        )));
    }
    let remote = ctx.peers.host(peer).await?;
    let root = remote.root_request().send().pipeline.get_anchor();
    let mut request = root.walk_request();
    request.get().set_path(path::join(&components));
    let response = request.send().promise.await?;
    response.get()?.get_anchor()
}

/// Lists the hosts of the cluster view, the children of the cluster root.
pub(crate) fn list_hosts(ctx: &HostContext, results: &mut anchor::LsResults) {
    let hosts = ctx.node.view().hosts();
    let mut list = results
        .get()
        .init_children(u32::try_from(hosts.len()).unwrap_or(0));
    for (index, (peer, _)) in hosts.iter().enumerate() {
        let Ok(index) = u32::try_from(index) else {
            break;
        };
        list.set(index, peer.to_base58());
    }
}

fn walk_path(params: &anchor::WalkParams) -> Result<Vec<String>, capnp::Error> {
    let raw = text(params.get()?.get_path(), "path")?;
    path::parse(&raw).map_err(invalid)
}

impl anchor::Server for RootServer {
    async fn ls(
        self: CapRc<Self>,
        _: anchor::LsParams,
        mut results: anchor::LsResults,
    ) -> Result<(), capnp::Error> {
        list_hosts(&self.ctx, &mut results);
        Ok(())
    }

    async fn walk(
        self: CapRc<Self>,
        params: anchor::WalkParams,
        mut results: anchor::WalkResults,
    ) -> Result<(), capnp::Error> {
        let components = walk_path(&params)?;
        let anchor = walk_from_root(self.ctx.clone(), self.caller, components).await?;
        results.get().set_anchor(anchor);
        Ok(())
    }

    async fn set(
        self: CapRc<Self>,
        _: anchor::SetParams,
        _: anchor::SetResults,
    ) -> Result<(), capnp::Error> {
        Err(invalid(
            "the cluster root holds no value; walk to /<peer id>/... first",
        ))
    }

    async fn get(
        self: CapRc<Self>,
        _: anchor::GetParams,
        mut results: anchor::GetResults,
    ) -> Result<(), capnp::Error> {
        results.get().init_value().set_none(());
        Ok(())
    }

    async fn remove(
        self: CapRc<Self>,
        _: anchor::RemoveParams,
        _: anchor::RemoveResults,
    ) -> Result<(), capnp::Error> {
        Err(invalid(
            "hosts cannot be removed from the cluster root; stop the host instead",
        ))
    }

    async fn path(
        self: CapRc<Self>,
        _: anchor::PathParams,
        mut results: anchor::PathResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_path("/");
        Ok(())
    }
}

impl anchor::Server for LocalServer {
    async fn ls(
        self: CapRc<Self>,
        _: anchor::LsParams,
        mut results: anchor::LsResults,
    ) -> Result<(), capnp::Error> {
        let children = self.ctx.tree.ls(&self.path);
        let mut list = results
            .get()
            .init_children(u32::try_from(children.len()).unwrap_or(0));
        for (index, name) in children.iter().enumerate() {
            let Ok(index) = u32::try_from(index) else {
                break;
            };
            list.set(index, name);
        }
        Ok(())
    }

    async fn walk(
        self: CapRc<Self>,
        params: anchor::WalkParams,
        mut results: anchor::WalkResults,
    ) -> Result<(), capnp::Error> {
        let mut components = self.path.clone();
        components.extend(walk_path(&params)?);
        results.get().set_anchor(capnp_rpc::new_client(LocalServer {
            ctx: self.ctx.clone(),
            caller: self.caller,
            path: components,
        }));
        Ok(())
    }

    async fn set(
        self: CapRc<Self>,
        params: anchor::SetParams,
        _: anchor::SetResults,
    ) -> Result<(), capnp::Error> {
        use ww_api::ww_capnp::value::Which;
        let value = match params.get()?.get_value()?.which()? {
            Which::None(()) => Stored::None,
            Which::Data(data) => Stored::Data(data?.to_vec()),
            Which::Cap(cap) => Stored::Cap(cap.get_as_capability()?),
        };
        self.ctx
            .tree
            .set(&self.path, value, self.caller.owner)
            .map_err(invalid)
    }

    async fn get(
        self: CapRc<Self>,
        _: anchor::GetParams,
        mut results: anchor::GetResults,
    ) -> Result<(), capnp::Error> {
        let stored = self.ctx.tree.get(&self.path);
        let mut value = results.get().init_value();
        match stored {
            Stored::None => value.set_none(()),
            Stored::Data(data) => value.set_data(&data),
            Stored::Cap(cap) => {
                let cap = super::channel::restamp(&self.ctx.senders, cap, self.caller.origin).await;
                value.init_cap().set_as_capability(cap.hook);
            }
        }
        Ok(())
    }

    async fn remove(
        self: CapRc<Self>,
        params: anchor::RemoveParams,
        mut results: anchor::RemoveResults,
    ) -> Result<(), capnp::Error> {
        let name = text(params.get()?.get_name(), "name")?;
        path::validate_name(&name).map_err(invalid)?;
        let removed = self
            .ctx
            .tree
            .remove(&self.path, &name, self.caller.owner)
            .map_err(invalid)?;
        results.get().set_removed(removed);
        Ok(())
    }

    async fn path(
        self: CapRc<Self>,
        _: anchor::PathParams,
        mut results: anchor::PathResults,
    ) -> Result<(), capnp::Error> {
        let mut components = vec![self.ctx.node.peer_id().to_base58()];
        components.extend(self.path.iter().cloned());
        results.get().set_path(path::join(&components));
        Ok(())
    }
}
