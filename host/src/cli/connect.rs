//! How CLI commands reach a cluster: an ephemeral client node that dials
//! one of the `--peer` addresses and bootstraps its `Host`.

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use ww_api::host;

use crate::net::{Node, NodeConfig};

/// The address `ww start` listens on by default, and CLI commands dial.
pub const DEFAULT_ADDR: &str = "/ip4/127.0.0.1/tcp/2025";

/// Where to find the cluster.
#[derive(ClapArgs, Debug, Clone)]
pub struct PeerArgs {
    /// A host's multiaddr; the first that answers is used. Repeatable, or a
    /// comma-separated list in WW_PEERS.
    #[arg(long = "peer", env = "WW_PEERS", value_delimiter = ',', default_value = DEFAULT_ADDR)]
    pub peers: Vec<Multiaddr>,
    /// The cluster's pre-shared key file, if it is a private network.
    #[arg(long = "key", env = "WW_KEY")]
    pub key: Option<std::path::PathBuf>,
}

/// A client connection to one host.
pub struct Session {
    /// The client's node. Dropping it closes the connection, so the session
    /// owns it for as long as the `host` capability is used.
    pub node: Node,
    /// The host that answered.
    pub peer: PeerId,
    /// Its `Host` capability.
    pub host: host::Client,
}

impl PeerArgs {
    /// Dials the peers in order and bootstraps the first that answers.
    ///
    /// # Errors
    ///
    /// When none answers; the error lists each failure.
    pub async fn connect(&self) -> Result<Session> {
        let node = Node::start(NodeConfig {
            keypair: Keypair::generate_ed25519(),
            listen: vec![],
            bootstrap: vec![],
            heartbeat: None,
            psk: self
                .key
                .as_deref()
                .map(crate::net::identity::load_psk)
                .transpose()?,
        })
        .await?;
        let mut failures = Vec::new();
        for addr in &self.peers {
            match crate::net::dial::connect_addr(&node, addr.clone()).await {
                Ok((peer, host)) => return Ok(Session { node, peer, host }),
                Err(err) => failures.push(format!("{addr}: {err:#}")),
            }
        }
        bail!(
            "no host answered ({}); start one with `ww start` or pass --peer ADDR",
            failures.join("; ")
        )
    }
}
