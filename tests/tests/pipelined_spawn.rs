//! `Process.bootstrap` pipelined on `Executor.spawn` waits until the
//! process has started (as the schema says), so a client can spawn a ROM
//! and call the capability it exports in one round trip. Before the fix,
//! the pipelined call arrived while the process was still `starting` and
//! failed with "process N is not running".

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use capnp::capability::FromClientHook;
use libp2p::identity::Keypair;
use ww_api::sender;
use ww_api::ww_capnp::RestartPolicy;
use ww_net::{Node, NodeConfig};
use ww_tests::{rom, Cluster};

#[test]
fn bootstrap_pipelined_on_spawn_reaches_the_new_process() {
    let cluster = Cluster::start(1);
    let addr = cluster.hosts[0].addr.clone();
    let bytes = std::fs::read(rom("bench")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let node = Node::start(NodeConfig {
            keypair: Keypair::generate_ed25519(),
            listen: vec![],
            bootstrap: vec![],
            heartbeat: None,
            psk: None,
        })
        .await
        .unwrap();
        let (_, host) = ww_net::dial::connect_addr(&node, addr.parse().unwrap())
            .await
            .unwrap();
        let executor = host.executor_request().send().pipeline.get_executor();
        // Once by bytes (compiles), then by hash (already in memory: the
        // spawn answers at once, so the race is at its widest).
        let mut hash: Option<Vec<u8>> = None;
        for round in 0..2 {
            let mut request = executor.spawn_request();
            {
                let mut spec = request.get().init_spec();
                match &hash {
                    None => spec.reborrow().init_rom().set_bytes(&bytes),
                    Some(hash) => spec.reborrow().init_rom().set_hash(hash),
                }
                spec.reborrow().init_args(1).set(0, "serve");
                spec.set_restart(RestartPolicy::Never);
                spec.set_host(true);
            }
            let process = request.send().pipeline.get_process();
            let exported = process.bootstrap_request().send();
            let inbox = sender::Client::new(exported.pipeline.get_cap().as_cap());
            let mut noop = inbox.send_request();
            noop.get().init_message().set_data(b"noop");
            tokio::time::timeout(Duration::from_secs(60), noop.send().promise)
                .await
                .expect("the pipelined call answers")
                .unwrap_or_else(|err| panic!("round {round}: {err}"));
            let status = process.status_request().send().promise.await.unwrap();
            let info = status.get().unwrap().get_info().unwrap();
            assert_eq!(info.get_state().unwrap().to_str().unwrap(), "running");
            let hex = info.get_rom_hash().unwrap().to_str().unwrap().to_owned();
            hash = Some(
                (0..32)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                    .collect::<Vec<u8>>(),
            );
            process.kill_request().send().promise.await.unwrap();
        }
    });
}
