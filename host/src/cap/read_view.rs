//! The read-only anchors that serve a `readPath` grant: `/<any host>/<path>`
//! and below, where only `get`, `ls` and `path` are answered.

use std::rc::Rc;

use capnp::capability::Rc as CapRc;
use libp2p::PeerId;
use ww_api::anchor;

use super::anchor::{list_hosts, walk_from_root, Caller};
use super::context::HostContext;
use super::{invalid, path, text};

/// The top of a `readPath` view: the hosts of the cluster.
pub struct ReadRootServer {
    ctx: Rc<HostContext>,
    caller: Caller,
    path: Rc<[String]>,
}

impl ReadRootServer {
    /// The view of `/<any host>/<path>`, for `caller`.
    pub fn client(ctx: Rc<HostContext>, caller: Caller, path: Vec<String>) -> anchor::Client {
        capnp_rpc::new_client(Self {
            ctx,
            caller,
            path: path.into(),
        })
    }
}

/// `/<peer>/<path>`, read-only.
struct ReadPeerServer {
    ctx: Rc<HostContext>,
    caller: Caller,
    peer: PeerId,
    path: Rc<[String]>,
}

fn refused(what: &str, path: &str) -> capnp::Error {
    capnp::Error::failed(format!(
        "not permitted: {what} on {path}, a read-only grant (only get and path are)"
    ))
}

impl ReadRootServer {
    fn shown(&self) -> String {
        format!("/*{}", path::join(&self.path))
    }
}

impl anchor::Server for ReadRootServer {
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
        let raw = text(params.get()?.get_path(), "path")?;
        let components = path::parse(&raw).map_err(invalid)?;
        let [peer] = components.as_slice() else {
            return Err(refused(
                &format!("walk({raw:?}) (only a host's peer id may be walked)"),
                &self.shown(),
            ));
        };
        let peer: PeerId = peer.parse().map_err(|err| {
            invalid(format!(
                "{peer:?} is not a peer id ({err}); `ls` lists the hosts"
            ))
        })?;
        results
            .get()
            .set_anchor(capnp_rpc::new_client(ReadPeerServer {
                ctx: self.ctx.clone(),
                caller: self.caller,
                peer,
                path: self.path.clone(),
            }));
        Ok(())
    }

    async fn set(
        self: CapRc<Self>,
        _: anchor::SetParams,
        _: anchor::SetResults,
    ) -> Result<(), capnp::Error> {
        Err(refused("set", &self.shown()))
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
        Err(refused("remove", &self.shown()))
    }

    async fn path(
        self: CapRc<Self>,
        _: anchor::PathParams,
        mut results: anchor::PathResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_path(self.shown());
        Ok(())
    }
}

impl ReadPeerServer {
    fn components(&self) -> Vec<String> {
        let mut components = vec![self.peer.to_base58()];
        components.extend(self.path.iter().cloned());
        components
    }
}

impl anchor::Server for ReadPeerServer {
    async fn ls(
        self: CapRc<Self>,
        _: anchor::LsParams,
        _: anchor::LsResults,
    ) -> Result<(), capnp::Error> {
        Err(refused("ls", &path::join(&self.components())))
    }

    async fn walk(
        self: CapRc<Self>,
        _: anchor::WalkParams,
        _: anchor::WalkResults,
    ) -> Result<(), capnp::Error> {
        Err(refused("walk", &path::join(&self.components())))
    }

    async fn set(
        self: CapRc<Self>,
        _: anchor::SetParams,
        _: anchor::SetResults,
    ) -> Result<(), capnp::Error> {
        Err(refused("set", &path::join(&self.components())))
    }

    async fn get(
        self: CapRc<Self>,
        _: anchor::GetParams,
        mut results: anchor::GetResults,
    ) -> Result<(), capnp::Error> {
        use ww_api::ww_capnp::value::Which;
        // Resolved again on every call, through the cluster root: the value
        // follows whatever currently sits at the path (a restarted replica).
        let target = walk_from_root(self.ctx.clone(), self.caller, self.components()).await?;
        let response = target.get_request().send().promise.await?;
        let mut value = results.get().init_value();
        match response.get()?.get_value()?.which()? {
            Which::None(()) => value.set_none(()),
            Which::Data(data) => value.set_data(data?),
            Which::Cap(cap) => value
                .init_cap()
                .set_as_capability(cap.get_as_capability::<capnp::capability::Client>()?.hook),
        }
        Ok(())
    }

    async fn remove(
        self: CapRc<Self>,
        _: anchor::RemoveParams,
        _: anchor::RemoveResults,
    ) -> Result<(), capnp::Error> {
        Err(refused("remove", &path::join(&self.components())))
    }

    async fn path(
        self: CapRc<Self>,
        _: anchor::PathParams,
        mut results: anchor::PathResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_path(path::join(&self.components()));
        Ok(())
    }
}
