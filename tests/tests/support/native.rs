// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

//! Native capnp clients for end-to-end tests: a libp2p node that dials one
//! host, as `ww` CLI commands do, run on a current-thread runtime with a
//! `LocalSet` like the hosts.

use std::time::Duration;

/// Runs `future` on a current-thread runtime with a `LocalSet`.
pub fn native<T>(future: impl std::future::Future<Output = T>) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, future)
}

/// The `Host` of the host at `addr` (the full authority of a CLI client),
/// and the node the connection lives on (keep it alive).
pub async fn connect_host(addr: &libp2p::Multiaddr) -> (ww_net::Node, ww_api::host::Client) {
    let node = client_node().await;
    let (_, host) = ww_net::dial::connect_addr(&node, addr.clone())
        .await
        .unwrap();
    (node, host)
}

/// The capability anchored at `path`.
pub async fn cap_at<C: capnp::capability::FromClientHook>(
    root: &ww_api::anchor::Client,
    path: &str,
) -> C {
    ww_api::ops::get_cap(root, path)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{path} holds no capability"))
}

/// A grant for [`spawn_and_wait`].
pub enum Grant<'a> {
    /// Bytes.
    Data(&'a [u8]),
    /// A read-only path view.
    ReadPath(&'a str),
}

/// Spawns `rom` on `host` with grants only (no `Host` authority), waits
/// for it to end within `timeout`, and returns its exit code.
pub async fn spawn_and_wait(
    host: &ww_api::host::Client,
    rom: &[u8],
    args: &[&str],
    grants: &[(&str, Grant<'_>)],
    timeout: Duration,
) -> i32 {
    spawn_and_wait_for_exit(host, rom, args, grants, timeout)
        .await
        .0
}

/// [`spawn_and_wait`], returning the exit code and the host's message of
/// why the process ended.
pub async fn spawn_and_wait_for_exit(
    host: &ww_api::host::Client,
    rom: &[u8],
    args: &[&str],
    grants: &[(&str, Grant<'_>)],
    timeout: Duration,
) -> (i32, String) {
    let executor = host.executor_request().send().pipeline.get_executor();
    let mut request = executor.spawn_request();
    {
        let mut spec = request.get().init_spec();
        spec.reborrow().init_rom().set_bytes(rom);
        let mut list = spec.reborrow().init_args(args.len() as u32);
        for (index, arg) in args.iter().enumerate() {
            list.set(index as u32, arg);
        }
        spec.set_host(false);
        let mut list = spec.reborrow().init_grants(grants.len() as u32);
        for (index, (name, grant)) in grants.iter().enumerate() {
            let mut entry = list.reborrow().get(index as u32);
            entry.set_name(name);
            match grant {
                Grant::Data(bytes) => entry.set_data(bytes),
                Grant::ReadPath(path) => entry.set_read_path(path),
            }
        }
        spec.set_restart(ww_api::ww_capnp::RestartPolicy::Never);
    }
    let process = request.send().pipeline.get_process();
    let exit = tokio::time::timeout(timeout, process.wait_request().send().promise)
        .await
        .unwrap_or_else(|_| panic!("{args:?} still running after {timeout:?}"))
        .unwrap();
    let exit = exit.get().unwrap().get_exit().unwrap();
    let message = exit.get_message().unwrap().to_str().unwrap().to_owned();
    (exit.get_code(), message)
}

/// Runs `raft.wasm` (read from `raft_rom`) once per entry of `runs`, each
/// as a process of the host at `addr` holding only a worker's grants: a
/// read-only view of the group (`raft`) and `token` (`raft-token`).
/// Returns the exit codes, in order.
///
/// # Panics
///
/// When the ROM cannot be read or the host cannot be reached.
pub fn raft_as_worker(
    addr: &str,
    raft_rom: &std::path::Path,
    token: &[u8],
    runs: &[&[&str]],
    timeout: Duration,
) -> Vec<i32> {
    let bytes = std::fs::read(raft_rom).expect("the raft ROM is readable");
    let addr: libp2p::Multiaddr = addr.parse().expect("a multiaddr");
    native(async {
        let (_node, host) = connect_host(&addr).await;
        let grants = [
            ("raft", Grant::ReadPath("raft/v1/request")),
            ("raft-token", Grant::Data(token)),
        ];
        let mut codes = Vec::new();
        for args in runs {
            codes.push(spawn_and_wait(&host, &bytes, args, &grants, timeout).await);
        }
        codes
    })
}

/// A libp2p node with a fresh identity that listens nowhere: a client.
pub async fn client_node() -> ww_net::Node {
    ww_net::Node::start(ww_net::NodeConfig {
        keypair: libp2p::identity::Keypair::generate_ed25519(),
        listen: vec![],
        bootstrap: vec![],
        heartbeat: None,
        psk: None,
    })
    .await
    .unwrap()
}
