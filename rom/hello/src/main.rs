//! The hello ROM.
//!
//! - `ww run hello.wasm` publishes `Hello, World` to the topic `test`
//!   through the host it runs against.
//! - `ww run hello.wasm deploy [--host PEER]` spawns the inner hello ROM
//!   (embedded below) on another host of the cluster, supervised, anchored
//!   at `/<peer id>/hello`; it greets `test` every second from there.

use anyhow::{bail, Context};
use ww_guest::ww_api::{host, ops, ww_capnp::RestartPolicy};

/// The inner ROM, built before this one (`make build`).
const INNER: &[u8] = include_bytes!(env!("HELLO_INNER_WASM"));

const USAGE: &str = "usage: ww run hello.wasm [deploy [--host PEER]]
  (no command)          publish `Hello, World` to the topic `test`
  deploy [--host PEER]  run the inner hello ROM on another host, supervised;
                        prints {\"deployed\",\"peer_id\",\"process\"} as JSON";

fn main() {
    ww_guest::run(|env| async move {
        if ww_guest::wants_help(&env.args) {
            println!("{USAGE}");
            return Ok(());
        }
        match env.args.first().map(String::as_str) {
            None => greet(&env.host).await,
            Some("deploy") => deploy(&env.host, &env.args[1..]).await,
            Some(other) => bail!("unknown command {other:?}\n{USAGE}"),
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

async fn deploy(host: &host::Client, args: &[String]) -> anyhow::Result<()> {
    let target = match args {
        [] => None,
        [flag, peer] if flag == "--host" => Some(peer.clone()),
        _ => bail!("usage: hello deploy [--host PEER]"),
    };
    let peer = match target {
        Some(peer) => peer,
        None => {
            // Any other host of the cluster; this one if it is alone.
            let here = ops::peer_id(host).await?;
            let peers = ops::hosts(host).await?;
            peers
                .iter()
                .find(|peer| **peer != here)
                .or(peers.first())
                .cloned()
                .context("the cluster view is empty")?
        }
    };
    let (_, id) = ops::spawn_on(host, &peer, |mut spec| {
        spec.reborrow().init_rom().set_bytes(INNER);
        spec.set_restart(RestartPolicy::OnFailure);
        spec.set_anchor("hello");
        spec.set_name("hello");
        // The inner ROM publishes: it needs the host's pubsub.
        spec.set_host(true);
    })
    .await
    .with_context(|| format!("spawning hello on {peer}"))?;
    // People read the sentence on stderr; scripts read the JSON result on
    // stdout (`| jq`).
    eprintln!("deployed hello on {peer} as process {id}, anchored at /{peer}/hello");
    println!(r#"{{"deployed":"hello","peer_id":"{peer}","process":{id}}}"#);
    Ok(())
}
