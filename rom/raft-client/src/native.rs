//! The native client: dials a host over libp2p and reaches a group through
//! it, with the same API a ROM uses. Run it on a tokio current-thread
//! runtime inside a `LocalSet` (capnp objects are `!Send`).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use libp2p::identity::Keypair;
use libp2p::Multiaddr;

use crate::{Group, Runtime};

/// Timers and tasks from tokio (`spawn_local`: run inside a `LocalSet`).
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioRuntime;

impl Runtime for TokioRuntime {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(tokio::time::sleep(duration))
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()>>>) {
        tokio::task::spawn_local(future);
    }

    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
            })
    }
}

/// A group reached from a native program. Keep it alive while using the
/// group: it owns the libp2p node the connection runs on.
pub struct NativeGroup {
    /// The group.
    pub group: Group<TokioRuntime>,
    _node: ww::net::Node,
}

/// Dials the first of `peers` that answers and connects to group `version`
/// through it.
///
/// # Errors
///
/// When no host answers, or the host cannot open the reply channel.
pub async fn connect(peers: &[Multiaddr], version: &str) -> Result<NativeGroup> {
    let node = ww::net::Node::start(ww::net::NodeConfig {
        keypair: Keypair::generate_ed25519(),
        listen: vec![],
        bootstrap: vec![],
        heartbeat: None,
    })
    .await?;
    let mut failures = Vec::new();
    for addr in peers {
        match ww::rpc::connect_addr(&node, addr.clone()).await {
            Ok((_, host)) => {
                let group = Group::connect(host, version, TokioRuntime).await?;
                return Ok(NativeGroup { group, _node: node });
            }
            Err(err) => failures.push(format!("{addr}: {err:#}")),
        }
    }
    bail!("no host answered: {}", failures.join("; "))
}
