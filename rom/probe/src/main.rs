//! A ROM that exercises anchors, channels and the executor from inside a
//! guest. Every command reports its results on stdout.
//!
//! - `set PATH VALUE`, `get PATH`: anchor values, through this ROM's host.
//! - `make-channel PEER NAME CAPACITY`: a channel hosted by PEER, anchored
//!   at `/PEER/NAME/tx` (sender) and `/PEER/NAME/rx` (receiver).
//! - `send PATH COUNT [SIZE]`: sends COUNT numbered messages to the sender
//!   at PATH, one at a time, printing `sent N` after each.
//! - `recv PATH COUNT`: receives COUNT messages from the receiver at PATH,
//!   checks they arrive numbered in order, prints `received N from ORIGIN`.
//! - `close-and-send`: a send after close must fail.
//! - `spawn-garbage`: spawning bytes that are not a ROM must fail.
//! - `dead-cap`: a capability of a process that ended fails fast, and the
//!   process's anchor is cleared.
//! - `child [OPTIONS] -- ARGS...`: spawns the misbehave ROM with grants, a
//!   volume, and so on; see [`grants`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod grants;

use std::time::Duration;

use anyhow::{bail, Context};
use ww_guest::ww_api::ww_capnp::{value, RestartPolicy};
use ww_guest::ww_api::{anchor, host, ops, receiver, sender};

pub(crate) const MISBEHAVE: &[u8] = include_bytes!(env!("MISBEHAVE_WASM"));

const USAGE: &str = "usage: ww run probe.wasm COMMAND
  set PATH VALUE | get PATH | make-channel PEER NAME CAPACITY
  send PATH COUNT [SIZE] | recv PATH COUNT
  close-and-send | spawn-garbage | dead-cap   (see rom/probe/src/main.rs)";

fn main() {
    ww_guest::run(|env| async move {
        if ww_guest::wants_help(&env.args) {
            println!("{USAGE}");
            return Ok(());
        }
        let args: Vec<&str> = env.args.iter().map(String::as_str).collect();
        match args.as_slice() {
            ["set", path, value] => set(&env.host, path, value).await,
            ["get", path] => get(&env.host, path).await,
            ["make-channel", peer, name, capacity] => {
                make_channel(&env.host, peer, name, capacity.parse()?).await
            }
            ["send", path, count] => send(&env.host, path, count.parse()?, 8).await,
            ["send", path, count, size] => {
                send(&env.host, path, count.parse()?, size.parse()?).await
            }
            ["recv", path, count] => recv(&env.host, path, count.parse()?).await,
            ["close-and-send"] => close_and_send(&env.host).await,
            ["spawn-garbage"] => spawn_garbage(&env.host).await,
            ["dead-cap"] => dead_cap(&env.host).await,
            ["child", rest @ ..] => grants::child(&env.host, rest).await,
            _ => bail!("unknown command {:?}\n{USAGE}", env.args),
        }
    })
}

fn walk(host: &host::Client, path: &str) -> anchor::Client {
    ops::walk(&host.root_request().send().pipeline.get_anchor(), path)
}

async fn get_cap<C: capnp::capability::FromClientHook>(
    host: &host::Client,
    path: &str,
) -> anyhow::Result<C> {
    let root = host.root_request().send().pipeline.get_anchor();
    ops::get_cap(&root, path)
        .await?
        .with_context(|| format!("{path} holds no capability"))
}

async fn set(host: &host::Client, path: &str, value: &str) -> anyhow::Result<()> {
    let mut request = walk(host, path).set_request();
    request.get().init_value().set_data(value.as_bytes());
    request.send().promise.await?;
    println!("set {path}");
    Ok(())
}

async fn get(host: &host::Client, path: &str) -> anyhow::Result<()> {
    let response = walk(host, path).get_request().send().promise.await?;
    match response.get()?.get_value()?.which()? {
        value::Which::Data(data) => println!("value: {}", String::from_utf8_lossy(data?)),
        value::Which::Cap(_) => println!("value: (capability)"),
        value::Which::None(()) => println!("value: (none)"),
    }
    Ok(())
}

async fn make_channel(
    host: &host::Client,
    peer: &str,
    name: &str,
    capacity: u32,
) -> anyhow::Result<()> {
    let mut dial = host.dial_request();
    dial.get().set_peer_id(peer);
    let remote = dial.send().pipeline.get_host();
    let mut request = remote.new_channel_request();
    request.get().set_capacity(capacity);
    let channel = request
        .send()
        .promise
        .await
        .context("creating the channel")?;
    let channel = channel.get()?;
    let mut set_tx = walk(host, &format!("/{peer}/{name}/tx")).set_request();
    set_tx
        .get()
        .init_value()
        .init_cap()
        .set_as_capability(channel.get_sender()?.client.hook);
    let mut set_rx = walk(host, &format!("/{peer}/{name}/rx")).set_request();
    set_rx
        .get()
        .init_value()
        .init_cap()
        .set_as_capability(channel.get_receiver()?.client.hook);
    set_tx.send().promise.await?;
    set_rx.send().promise.await?;
    println!("channel /{peer}/{name} ready");
    Ok(())
}

async fn send(host: &host::Client, path: &str, count: u64, size: usize) -> anyhow::Result<()> {
    let sender: sender::Client = get_cap(host, path).await?;
    for n in 0..count {
        let mut data = n.to_le_bytes().to_vec();
        data.resize(size.max(8), 0);
        let mut request = sender.send_request();
        request.get().init_message().set_data(&data);
        request
            .send()
            .promise
            .await
            .with_context(|| format!("sending message {n}"))?;
        println!("sent {}", n + 1);
    }
    Ok(())
}

async fn recv(host: &host::Client, path: &str, count: u64) -> anyhow::Result<()> {
    let receiver: receiver::Client = get_cap(host, path).await?;
    for expected in 0..count {
        let response = receiver.recv_request().send().promise.await?;
        let response = response.get()?;
        if response.get_closed() {
            bail!("the channel closed after {expected} messages");
        }
        let data = response.get_message()?.get_data()?;
        let n = u64::from_le_bytes(data[..8].try_into()?);
        if n != expected {
            bail!("out of order: received message {n}, expected {expected}");
        }
        println!(
            "received {} from {}",
            n + 1,
            response.get_origin()?.to_str()?
        );
    }
    println!("recv ok {count}");
    Ok(())
}

async fn close_and_send(host: &host::Client) -> anyhow::Result<()> {
    let mut request = host.new_channel_request();
    request.get().set_capacity(4);
    let channel = request.send().promise.await?;
    let sender = channel.get()?.get_sender()?;
    let receiver = channel.get()?.get_receiver()?;
    let mut first = sender.send_request();
    first.get().init_message().set_data(b"before close");
    first.send().promise.await?;
    sender.close_request().send().promise.await?;
    let mut late = sender.send_request();
    late.get().init_message().set_data(b"after close");
    match late.send().promise.await {
        Ok(_) => bail!("a send after close succeeded"),
        Err(err) => println!("send after close failed: {err}"),
    }
    // The receiver drains what was queued, then sees `closed`.
    let drained = receiver.recv_request().send().promise.await?;
    assert_eq!(drained.get()?.get_message()?.get_data()?, b"before close");
    let closed = receiver.recv_request().send().promise.await?;
    if !closed.get()?.get_closed() {
        bail!("recv after draining a closed channel did not report closed");
    }
    println!("recv after drain reports closed");
    Ok(())
}

async fn spawn_garbage(host: &host::Client) -> anyhow::Result<()> {
    let executor = host.executor_request().send().pipeline.get_executor();
    let mut spawn = executor.spawn_request();
    spawn
        .get()
        .init_spec()
        .init_rom()
        .set_bytes(b"definitely not a component");
    match spawn.send().promise.await {
        Ok(_) => bail!("spawning garbage succeeded"),
        Err(err) => println!("spawn failed: {err}"),
    }
    Ok(())
}

async fn dead_cap(host: &host::Client) -> anyhow::Result<()> {
    let executor = host.executor_request().send().pipeline.get_executor();
    let mut spawn = executor.spawn_request();
    {
        let mut spec = spawn.get().init_spec();
        spec.reborrow().init_rom().set_bytes(MISBEHAVE);
        let mut args = spec.reborrow().init_args(2);
        args.set(0, "export-then-exit");
        args.set(1, "1000");
        spec.set_anchor("doomed");
        spec.set_restart(RestartPolicy::Never);
        // The child exports a pubsub topic: it needs the full host.
        spec.set_host(true);
    }
    let process = spawn.send().promise.await?.get()?.get_process()?;
    let peer = host.peer_id_request().send().promise.await?;
    let path = format!("/{}/doomed", peer.get()?.get_peer_id()?.to_str()?);
    let exported = process.bootstrap_request().send().promise.await?;
    let topic: ww_guest::ww_api::topic::Client = exported.get()?.get_cap().get_as_capability()?;
    let name = topic
        .name_request()
        .send()
        .promise
        .await
        .context("calling the live capability")?;
    println!(
        "live capability answered: {}",
        name.get()?.get_name()?.to_str()?
    );
    let anchored: ww_guest::ww_api::topic::Client = get_cap(host, &path)
        .await
        .context("the anchor while alive")?;
    anchored
        .name_request()
        .send()
        .promise
        .await
        .context("calling the anchored capability")?;

    let exit = process.wait_request().send().promise.await?;
    println!(
        "process ended: {}",
        exit.get()?.get_exit()?.get_message()?.to_str()?
    );
    let started = ww_guest::now_ms();
    let call = ww_guest::timeout(Duration::from_secs(5), topic.name_request().send().promise).await;
    match call {
        Err(elapsed) => bail!("a call on a dead process's capability hung: {elapsed}"),
        Ok(Ok(_)) => bail!("a call on a dead process's capability succeeded"),
        Ok(Err(err)) => println!(
            "dead capability failed fast in {} ms: {err}",
            ww_guest::now_ms() - started
        ),
    }
    let value = walk(host, &path).get_request().send().promise.await?;
    if !matches!(value.get()?.get_value()?.which()?, value::Which::None(())) {
        bail!("the anchor of a dead process was not cleared");
    }
    println!("anchor {path} cleared");
    Ok(())
}
