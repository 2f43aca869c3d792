//! The `Host` a ROM gets under `ww run`: the host `ww run` dialed, except
//! `connect`, which the `ww run` process answers from its own libp2p node.
//!
//! Through `dial`, every call the ROM makes to another host crosses the
//! host `ww run` dialed (capnp-rpc has no three-party handoff): a Raft
//! client would reach the leader through a host that only forwards. Through
//! `connect`, the ROM gets a connection of its own to that host, as a
//! native client does; raft-client uses it for direct routes to replicas
//! (`rom/raft-client/src/direct.rs`). `dial` stays relayed because what it
//! reaches must outlive this process: a channel made through an own
//! connection and anchored through the dialed host would be proxied by this
//! process, and break when it exits. Authority is unchanged: the host
//! answers a CLI connection with the same full `Host` either way.

use std::time::Duration;

use capnp::capability::Rc as CapRc;
use libp2p::{Multiaddr, PeerId};
use ww_api::host;

use super::text;
use crate::net::Node;

/// Longest an own dial may take before the relayed `dial` is used instead.
/// A live host on the same network answers in milliseconds.
const OWN_DIAL_TIMEOUT_MS: u64 = 1_000;

/// `Host` for a `ww run` ROM.
pub struct RunHost {
    /// The host `ww run` dialed.
    remote: host::Client,
    remote_peer: PeerId,
    /// `ww run`'s own node, which the remote's connection runs on.
    node: Node,
}

impl RunHost {
    /// The capability: `remote` (served by `remote_peer`, reached over
    /// `node`) with `dial` answered from `node`.
    pub fn client(remote: host::Client, remote_peer: PeerId, node: Node) -> host::Client {
        capnp_rpc::new_client(Self {
            remote,
            remote_peer,
            node,
        })
    }

    /// `peer`'s addresses in the remote's view.
    async fn addrs_of(&self, peer: &str) -> Result<Vec<Multiaddr>, capnp::Error> {
        let response = self.remote.view_request().send().promise.await?;
        for info in response.get()?.get_hosts()?.iter() {
            if info.get_peer_id()?.to_str()? != peer {
                continue;
            }
            let addrs = info.get_addrs()?;
            return Ok(addrs
                .iter()
                .filter_map(|addr| addr.ok()?.to_str().ok()?.parse().ok())
                .collect());
        }
        Ok(Vec::new())
    }
}

impl host::Server for RunHost {
    async fn peer_id(
        self: CapRc<Self>,
        _: host::PeerIdParams,
        mut results: host::PeerIdResults,
    ) -> Result<(), capnp::Error> {
        let response = self.remote.peer_id_request().send().promise.await?;
        results.set(response.get()?)
    }

    async fn view(
        self: CapRc<Self>,
        _: host::ViewParams,
        mut results: host::ViewResults,
    ) -> Result<(), capnp::Error> {
        let response = self.remote.view_request().send().promise.await?;
        results.set(response.get()?)
    }

    async fn root(
        self: CapRc<Self>,
        _: host::RootParams,
        mut results: host::RootResults,
    ) -> Result<(), capnp::Error> {
        let response = self.remote.root_request().send().promise.await?;
        results.set(response.get()?)
    }

    async fn pubsub(
        self: CapRc<Self>,
        _: host::PubsubParams,
        mut results: host::PubsubResults,
    ) -> Result<(), capnp::Error> {
        let pubsub = self.remote.pubsub_request().send().pipeline.get_pubsub();
        results.get().set_pubsub(pubsub);
        Ok(())
    }

    async fn executor(
        self: CapRc<Self>,
        _: host::ExecutorParams,
        mut results: host::ExecutorResults,
    ) -> Result<(), capnp::Error> {
        let executor = self
            .remote
            .executor_request()
            .send()
            .pipeline
            .get_executor();
        results.get().set_executor(executor);
        Ok(())
    }

    async fn new_channel(
        self: CapRc<Self>,
        params: host::NewChannelParams,
        mut results: host::NewChannelResults,
    ) -> Result<(), capnp::Error> {
        let mut request = self.remote.new_channel_request();
        request.get().set_capacity(params.get()?.get_capacity());
        let response = request.send().promise.await?;
        results.set(response.get()?)
    }

    async fn dial(
        self: CapRc<Self>,
        params: host::DialParams,
        mut results: host::DialResults,
    ) -> Result<(), capnp::Error> {
        let mut request = self.remote.dial_request();
        request.get().set_peer_id(params.get()?.get_peer_id()?);
        let response = request.send().promise.await?;
        results.set(response.get()?)
    }

    async fn connect(
        self: CapRc<Self>,
        params: host::ConnectParams,
        mut results: host::ConnectResults,
    ) -> Result<(), capnp::Error> {
        let raw = text(params.get()?.get_peer_id(), "peer id")?;
        let peer = super::peer_id(&raw)?;
        if peer == self.remote_peer {
            results.get().set_host(self.remote.clone());
            return Ok(());
        }
        let addrs = self.addrs_of(&raw).await?;
        if !addrs.is_empty() {
            let own = crate::net::dial::connect_at(&self.node, &addrs);
            if let Ok(Ok(host)) =
                tokio::time::timeout(Duration::from_millis(OWN_DIAL_TIMEOUT_MS), own).await
            {
                results.get().set_host(host);
                return Ok(());
            }
        }
        // Not reachable from here (or not in the view): the dialed host
        // reaches it, or says why not.
        let mut request = self.remote.dial_request();
        request.get().set_peer_id(&raw);
        let response = request.send().promise.await?;
        results.get().set_host(response.get()?.get_host()?);
        Ok(())
    }

    async fn grants(
        self: CapRc<Self>,
        _: host::GrantsParams,
        mut results: host::GrantsResults,
    ) -> Result<(), capnp::Error> {
        let response = self.remote.grants_request().send().promise.await?;
        results.set(response.get()?)
    }

    async fn grant_anchor(
        self: CapRc<Self>,
        params: host::GrantAnchorParams,
        mut results: host::GrantAnchorResults,
    ) -> Result<(), capnp::Error> {
        let mut request = self.remote.grant_anchor_request();
        request.get().set_name(params.get()?.get_name()?);
        let response = request.send().promise.await?;
        results.set(response.get()?)
    }

    async fn metrics(
        self: CapRc<Self>,
        _: host::MetricsParams,
        mut results: host::MetricsResults,
    ) -> Result<(), capnp::Error> {
        let metrics = self.remote.metrics_request().send().pipeline.get_metrics();
        results.get().set_metrics(metrics);
        Ok(())
    }
}
