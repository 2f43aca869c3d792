//! Connection budgets on a real host: one peer cannot hold every inbound
//! RPC slot. A native client opens connections until the host refuses one
//! (at `INBOUND_CONNECTIONS_PER_PEER_MAX`); another peer still connects;
//! and once the first peer's connections close, the same peer identity is
//! served again (the host gave its slots back).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/native.rs"]
mod support;

use std::time::Duration;

use support::{connect_host, native};
use ww::limits::INBOUND_CONNECTIONS_PER_PEER_MAX;
use ww_net::{Node, NodeConfig};
use ww_tests::Cluster;

/// Whether a fresh RPC connection from `node` to `peer` answers a call.
async fn answers(node: &ww_net::Node, peer: libp2p::PeerId) -> Option<ww_api::host::Client> {
    let host = ww_net::dial::connect_host(node, peer, || ()).await.ok()?;
    let call = host.peer_id_request().send().promise;
    match tokio::time::timeout(Duration::from_secs(10), call).await {
        Ok(Ok(_)) => Some(host),
        _ => None,
    }
}

#[test]
fn one_peer_cannot_take_every_rpc_slot() {
    let cluster = Cluster::start(1);
    let addr: libp2p::Multiaddr = cluster.hosts[0].addr.parse().unwrap();
    let peer: libp2p::PeerId = cluster.hosts[0].peer_id.parse().unwrap();
    let keypair = libp2p::identity::Keypair::generate_ed25519();
    let start = |keypair: libp2p::identity::Keypair| async {
        Node::start(NodeConfig {
            keypair,
            listen: vec![],
            bootstrap: vec![],
            heartbeat: None,
            psk: None,
        })
        .await
        .unwrap()
    };
    native(async {
        let node = start(keypair.clone()).await;
        let (_, first) = ww_net::dial::connect_addr(&node, addr.clone())
            .await
            .unwrap();
        let mut held = vec![first];
        while held.len() < INBOUND_CONNECTIONS_PER_PEER_MAX {
            let host = answers(&node, peer)
                .await
                .unwrap_or_else(|| panic!("connection {} was refused", held.len() + 1));
            held.push(host);
        }
        assert!(
            answers(&node, peer).await.is_none(),
            "a connection past INBOUND_CONNECTIONS_PER_PEER_MAX was served"
        );
        // Another peer is served meanwhile.
        let (_other_node, other) = connect_host(&addr).await;
        other.peer_id_request().send().promise.await.unwrap();
        // The same identity, once its connections are gone (the node and
        // its libp2p connection closed), is served again: the host noticed
        // the closes and gave the slots back.
        drop(held);
        drop(node);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let again = start(keypair.clone()).await;
            if let Ok((_, host)) = ww_net::dial::connect_addr(&again, addr.clone()).await {
                host.peer_id_request().send().promise.await.unwrap();
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the peer's slots did not come back after its connections closed"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}
