//! The hello ROM.
//!
//! - `ww run hello.wasm` publishes `Hello, World` to the topic `test`
//!   through the host it runs against.
//! - `ww run hello.wasm deploy [--host PEER]` spawns the inner hello ROM
//!   (embedded below) on another host of the cluster, supervised, anchored
//!   at `/<peer id>/hello`; it greets `test` every second from there.

use anyhow::{bail, Context};
use ww_guest::ww_api::{host, ww_capnp::RestartPolicy};

/// The inner ROM, built before this one (`make build`).
const INNER: &[u8] = include_bytes!(env!("HELLO_INNER_WASM"));

fn main() {
    ww_guest::run(|env| async move {
        match env.args.first().map(String::as_str) {
            None => greet(&env.host).await,
            Some("deploy") => deploy(&env.host, &env.args[1..]).await,
            Some(other) => bail!("unknown command {other:?}; usage: hello [deploy [--host PEER]]"),
        }
    })
}

async fn greet(host: &host::Client) -> anyhow::Result<()> {
    let pubsub = host.pubsub_request().send().pipeline.get_pubsub();
    let mut join = pubsub.join_request();
    join.get().set_topic("test");
    // Pipelined: join and publish go out together, one round trip.
    let topic = join.send().pipeline.get_topic();
    let mut publish = topic.publish_request();
    publish.get().set_data(b"Hello, World");
    publish.send().promise.await?;
    Ok(())
}

async fn text(reader: capnp::Result<capnp::text::Reader<'_>>) -> anyhow::Result<String> {
    Ok(reader?.to_string()?)
}

async fn deploy(host: &host::Client, args: &[String]) -> anyhow::Result<()> {
    let target = match args {
        [] => None,
        [flag, peer] if flag == "--host" => Some(peer.clone()),
        _ => bail!("usage: hello deploy [--host PEER]"),
    };
    let here = text(
        host.peer_id_request()
            .send()
            .promise
            .await?
            .get()?
            .get_peer_id(),
    )
    .await?;
    let peer = match target {
        Some(peer) => peer,
        None => {
            // Any other host of the cluster; this one if it is alone.
            let view = host.view_request().send().promise.await?;
            let mut peers = Vec::new();
            for info in view.get()?.get_hosts()? {
                peers.push(text(info.get_peer_id()).await?);
            }
            peers
                .iter()
                .find(|peer| **peer != here)
                .or(peers.first())
                .cloned()
                .context("the cluster view is empty")?
        }
    };
    let mut dial = host.dial_request();
    dial.get().set_peer_id(&peer);
    let executor = dial
        .send()
        .pipeline
        .get_host()
        .executor_request()
        .send()
        .pipeline
        .get_executor();
    let mut spawn = executor.spawn_request();
    {
        let mut spec = spawn.get().init_spec();
        spec.reborrow().init_rom().set_bytes(INNER);
        spec.set_restart(RestartPolicy::OnFailure);
        spec.set_anchor("hello");
        spec.set_name("hello");
    }
    let process = spawn
        .send()
        .promise
        .await
        .with_context(|| format!("spawning hello on {peer}"))?;
    let id = process
        .get()?
        .get_process()?
        .id_request()
        .send()
        .promise
        .await?
        .get()?
        .get_id();
    eprintln!("deployed hello on {peer} as process {id}, anchored at /{peer}/hello");
    println_stdout_free(&peer, id);
    Ok(())
}

/// ROMs must not print to stdout (it carries capnp), so the machine-readable
/// result goes to stderr too, as one JSON line.
fn println_stdout_free(peer: &str, id: u64) {
    eprintln!(r#"{{"deployed":"hello","peer_id":"{peer}","process":{id}}}"#);
}
