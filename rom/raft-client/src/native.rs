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

/// Dials the first of `peers` that answers and connects to group `version`
/// through it, then dials each replica's host too, so that requests and
/// replies skip the relay ([`crate::direct`]). The group owns the client's
/// libp2p node.
///
/// # Errors
///
/// When no host answers, or the host cannot open the reply channel.
pub async fn connect(peers: &[Multiaddr], version: &str) -> Result<Group<TokioRuntime>> {
    connect_with(peers, version, None).await
}

/// [`connect`], to a private cluster whose pre-shared key is `psk`.
///
/// # Errors
///
/// As [`connect`].
pub async fn connect_with(
    peers: &[Multiaddr],
    version: &str,
    psk: Option<libp2p::pnet::PreSharedKey>,
) -> Result<Group<TokioRuntime>> {
    let node = ww_net::Node::start(ww_net::NodeConfig {
        keypair: Keypair::generate_ed25519(),
        listen: vec![],
        bootstrap: vec![],
        heartbeat: None,
        psk,
    })
    .await?;
    let mut failures = Vec::new();
    for addr in peers {
        match ww_net::dial::connect_addr(&node, addr.clone()).await {
            Ok((_, host)) => {
                let group = Group::connect(host, version, TokioRuntime).await?;
                group.dial_replicas_with(dialer(node.clone())).await?;
                group.keep_alive(node);
                return Ok(group);
            }
            Err(err) => failures.push(format!("{addr}: {err:#}")),
        }
    }
    bail!("no host answered: {}", failures.join("; "))
}

/// Dials a host at the first of its multiaddrs that answers, once each (no
/// retries: the relayed route is the fallback).
fn dialer(node: ww_net::Node) -> crate::direct::Dial {
    std::rc::Rc::new(move |_peer: String, addrs: Vec<String>| {
        let node = node.clone();
        Box::pin(async move {
            let addrs: Vec<Multiaddr> = addrs.iter().filter_map(|addr| addr.parse().ok()).collect();
            ww_net::dial::connect_at(&node, &addrs).await.ok()
        })
    })
}
