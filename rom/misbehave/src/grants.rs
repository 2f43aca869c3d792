//! Grants and volumes, from the child's side: what a process spawned by
//! `probe child` (see rom/probe) can and cannot do.
//!
//! - `try-everything VICTIM_PID ANCHOR_PATH`: every call beyond the grants
//!   must be refused with "not permitted"; exits 0 only if all were.
//! - `show-grants`: sends one `NAME=...` line per grant on the `reply` grant.
//! - `write-file TEXT`, `read-file`: `/data/file` of the volume; `read-file`
//!   sends `file: TEXT` on `reply`.
//! - `trap-once NAME`: fails on its first run (marked in its volume); on
//!   the next, sends `after a restart NAME=VALUE` (the data grant) on `reply`.
//! - `hold-grant NAME`: prints `grant NAME=VALUE` (the data grant) and runs
//!   until killed.
//! - `send-payload PEER`: sends the `payload` data grant, as one message, to
//!   the channel that the `target` readPath grant names on host `PEER`. A
//!   process of a member's host can reach a replica's inbox this way; the
//!   tests use it to hand a replica forged Raft traffic whose origin is a
//!   member's host.

use std::time::Duration;

use anyhow::{bail, Context};
use ww_guest::ww_api::ops::{self, GrantValue};
use ww_guest::ww_api::ww_capnp::value;
use ww_guest::ww_api::{host, sender};

async fn reply(host: &host::Client, lines: &[String]) -> anyhow::Result<()> {
    let sender: sender::Client = ops::grant_cap(host, "reply")
        .await?
        .context("no cap grant named reply")?;
    for line in lines {
        let mut request = sender.send_request();
        request.get().init_message().set_data(line.as_bytes());
        request.send().promise.await?;
    }
    sender.close_request().send().promise.await?;
    Ok(())
}

/// Records one attempt that must be refused.
fn refused<T>(failures: &mut Vec<String>, what: &str, result: Result<T, capnp::Error>) {
    match result {
        Ok(_) => failures.push(format!("{what} was allowed")),
        Err(err) if err.to_string().contains("not permitted") => {
            eprintln!("refused {what}: {err}");
        }
        Err(err) => failures.push(format!("{what} failed without 'not permitted': {err}")),
    }
}

/// Root, view, pubsub, the executor, dial and connect, each of which a grant-only
/// process must be refused; returns this host's peer id.
async fn try_host_authority(
    host: &host::Client,
    failures: &mut Vec<String>,
    victim: u64,
    anchor_path: &str,
) -> anyhow::Result<String> {
    let root = host.root_request().send().pipeline.get_anchor();
    refused(failures, "root", root.ls_request().send().promise.await);
    let mut set = ops::walk(&root, anchor_path).set_request();
    set.get().init_value().set_data(b"stolen");
    refused(failures, "root.walk.set", set.send().promise.await);
    refused(failures, "view", host.view_request().send().promise.await);
    let pubsub = host.pubsub_request().send().pipeline.get_pubsub();
    let mut join = pubsub.join_request();
    join.get().set_topic("stolen");
    refused(failures, "pubsub", join.send().promise.await);
    let executor = host.executor_request().send().pipeline.get_executor();
    refused(
        failures,
        "executor.ps",
        executor.ps_request().send().promise.await,
    );
    let mut kill = executor.kill_request();
    kill.get().set_id(victim);
    refused(failures, "executor.kill", kill.send().promise.await);
    let peer = ops::peer_id(host).await.context("peerId must work")?;
    let mut dial = host.dial_request();
    dial.get().set_peer_id(&peer);
    refused(failures, "dial", dial.send().promise.await);
    let mut connect = host.connect_request();
    connect.get().set_peer_id(&peer);
    refused(failures, "connect", connect.send().promise.await);
    Ok(peer)
}

/// As a crawler worker (`crawler.wasm workers N --rom -` spawns this ROM
/// with a worker's grants; its arguments are the worker's): tries what a
/// hostile worker ROM would, then exits 0 so its supervisor leaves it be.
/// The frontier and results tokens are tried by `raft_as_worker` in the
/// tests; this is the host side: the executor, the root, the view, pubsub,
/// dial, and writes through the replicas' read-only view.
pub async fn try_as_crawler_worker(host: &host::Client) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    let peer = try_host_authority(host, &mut failures, 1, "raft").await?;
    let mut spawn = host
        .executor_request()
        .send()
        .pipeline
        .get_executor()
        .spawn_request();
    spawn.get().init_spec().init_rom().set_bytes(b"\0asm");
    refused(&mut failures, "executor.spawn", spawn.send().promise.await);
    match ops::grant_anchor(host, "raft").await? {
        Some(view) => {
            let at_peer = ops::walk(&view, &peer);
            let mut set = at_peer.set_request();
            set.get().init_value().set_data(b"stolen");
            refused(&mut failures, "replicas view set", set.send().promise.await);
        }
        None => failures.push("no `raft` grant: not spawned as a crawler worker".to_owned()),
    }
    if !failures.is_empty() {
        bail!("not everything was refused: {failures:#?}");
    }
    eprintln!("everything refused");
    Ok(())
}

/// `try-everything VICTIM_PID ANCHOR_PATH`.
pub async fn try_everything(
    host: &host::Client,
    victim: u64,
    anchor_path: &str,
) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    let peer = try_host_authority(host, &mut failures, victim, anchor_path).await?;

    // What the grants do allow.
    let token = ops::grant_data(host, "token").await?;
    eprintln!(
        "grant token: {:?}",
        token.as_deref().map(String::from_utf8_lossy)
    );
    if let Some(view) = ops::grant_anchor(host, "shared").await? {
        let hosts = ops::ls(&view).await.context("ls on a readPath view")?;
        if !hosts.contains(&peer) {
            failures.push(format!("the readPath view lists {hosts:?}, not {peer}"));
        }
        let at_peer = ops::walk(&view, &peer);
        let value = at_peer.get_request().send().promise.await?;
        match value.get()?.get_value()?.which()? {
            value::Which::Data(data) => {
                eprintln!("readPath get: {}", String::from_utf8_lossy(data?));
            }
            _ => failures.push("the readPath anchor holds no data".to_owned()),
        }
        let mut set = at_peer.set_request();
        set.get().init_value().set_data(b"stolen");
        refused(&mut failures, "readPath set", set.send().promise.await);
        let mut remove = at_peer.remove_request();
        remove.get().set_name("x");
        refused(
            &mut failures,
            "readPath remove",
            remove.send().promise.await,
        );
        let below = ops::walk(&at_peer, "x");
        refused(
            &mut failures,
            "readPath walk",
            below.get_request().send().promise.await,
        );
        refused(
            &mut failures,
            "readPath ls",
            at_peer.ls_request().send().promise.await,
        );
        let deeper = ops::walk(&view, &format!("{peer}/x"));
        refused(
            &mut failures,
            "readPath walk past the peer",
            deeper.get_request().send().promise.await,
        );
    }
    if !failures.is_empty() {
        bail!("not everything was refused: {failures:#?}");
    }
    eprintln!("everything refused");
    Ok(())
}

/// `show-grants`.
pub async fn show_grants(host: &host::Client) -> anyhow::Result<()> {
    let lines: Vec<String> = ops::grants(host)
        .await?
        .into_iter()
        .map(|grant| match grant.value {
            GrantValue::Data(data) => {
                format!("{}=data:{}", grant.name, String::from_utf8_lossy(&data))
            }
            GrantValue::Cap(_) => format!("{}=cap", grant.name),
            GrantValue::ReadPath(path) => format!("{}=readPath:{path}", grant.name),
        })
        .collect();
    reply(host, &lines).await
}

/// `write-file TEXT`.
pub fn write_file(text: &str) -> anyhow::Result<()> {
    std::fs::write("/data/file", text).context("writing /data/file")?;
    eprintln!("wrote /data/file");
    Ok(())
}

/// `read-file`.
pub async fn read_file(host: &host::Client) -> anyhow::Result<()> {
    let text = std::fs::read_to_string("/data/file").context("reading /data/file")?;
    reply(host, &[format!("file: {text}")]).await
}

async fn data(host: &host::Client, name: &str) -> anyhow::Result<String> {
    let data = ops::grant_data(host, name)
        .await?
        .with_context(|| format!("no data grant named {name}"))?;
    Ok(String::from_utf8_lossy(&data).into_owned())
}

/// `trap-once NAME`.
pub async fn trap_once(host: &host::Client, name: &str) -> anyhow::Result<()> {
    let marker = std::path::Path::new("/data/trapped");
    if !marker.exists() {
        std::fs::write(marker, b"1").context("writing the marker")?;
        bail!("failing on purpose, once");
    }
    let value = data(host, name).await?;
    reply(host, &[format!("after a restart {name}={value}")]).await
}

/// `hold-grant NAME`.
pub async fn hold_grant(host: &host::Client, name: &str) -> anyhow::Result<()> {
    let value = data(host, name).await?;
    eprintln!("grant {name}={value}");
    loop {
        ww_guest::sleep(Duration::from_secs(3600)).await;
    }
}

/// `send-payload PEER`.
pub async fn send_payload(host: &host::Client, peer: &str) -> anyhow::Result<()> {
    let payload = ops::grant_data(host, "payload")
        .await?
        .context("no data grant named payload")?;
    let view = ops::grant_anchor(host, "target")
        .await?
        .context("no readPath grant named target")?;
    let sender: sender::Client = ops::get_cap(&view, peer)
        .await?
        .with_context(|| format!("no channel at the target path on {peer}"))?;
    let mut request = sender.send_request();
    request.get().init_message().set_data(&payload);
    request.send().promise.await?;
    println!("sent {} bytes", payload.len());
    Ok(())
}
