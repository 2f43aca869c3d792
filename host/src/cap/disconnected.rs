//! The `Host` a ROM gets under `ww run --dial=false`: every call fails with
//! a clear "not connected" error instead of hanging.

use capnp::capability::Rc as CapRc;
use ww_api::host;

/// The error every call returns.
pub const NOT_CONNECTED: &str =
    "not connected: this ROM runs with --dial=false, so it has no cluster; drop --dial=false and pass --peer ADDR to dial a host";

/// A `Host` that is not connected to any cluster.
pub struct DisconnectedHost;

impl DisconnectedHost {
    /// The capability.
    pub fn client() -> host::Client {
        capnp_rpc::new_client(Self)
    }
}

fn not_connected() -> capnp::Error {
    capnp::Error::disconnected(NOT_CONNECTED.to_owned())
}

impl host::Server for DisconnectedHost {
    async fn peer_id(
        self: CapRc<Self>,
        _: host::PeerIdParams,
        _: host::PeerIdResults,
    ) -> Result<(), capnp::Error> {
        Err(not_connected())
    }
    async fn view(
        self: CapRc<Self>,
        _: host::ViewParams,
        _: host::ViewResults,
    ) -> Result<(), capnp::Error> {
        Err(not_connected())
    }
    async fn root(
        self: CapRc<Self>,
        _: host::RootParams,
        _: host::RootResults,
    ) -> Result<(), capnp::Error> {
        Err(not_connected())
    }
    async fn pubsub(
        self: CapRc<Self>,
        _: host::PubsubParams,
        _: host::PubsubResults,
    ) -> Result<(), capnp::Error> {
        Err(not_connected())
    }
    async fn executor(
        self: CapRc<Self>,
        _: host::ExecutorParams,
        _: host::ExecutorResults,
    ) -> Result<(), capnp::Error> {
        Err(not_connected())
    }
    async fn dial(
        self: CapRc<Self>,
        _: host::DialParams,
        _: host::DialResults,
    ) -> Result<(), capnp::Error> {
        Err(not_connected())
    }
    async fn connect(
        self: CapRc<Self>,
        _: host::ConnectParams,
        _: host::ConnectResults,
    ) -> Result<(), capnp::Error> {
        Err(not_connected())
    }
    async fn new_channel(
        self: CapRc<Self>,
        _: host::NewChannelParams,
        _: host::NewChannelResults,
    ) -> Result<(), capnp::Error> {
        Err(not_connected())
    }
    async fn grants(
        self: CapRc<Self>,
        _: host::GrantsParams,
        mut results: host::GrantsResults,
    ) -> Result<(), capnp::Error> {
        // A `ww run` ROM acts with its user's authority: it has no grants.
        results.get().init_grants(0);
        Ok(())
    }
    async fn metrics(
        self: CapRc<Self>,
        _: host::MetricsParams,
        _: host::MetricsResults,
    ) -> Result<(), capnp::Error> {
        Err(not_connected())
    }
}
