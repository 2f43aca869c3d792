//! Grants and volumes, from the spawner's side (run by `ww run`, with the
//! full host); the child side is in the misbehave ROM.
//!
//! - `child [OPTIONS] -- ARGS...`: spawns the misbehave ROM on this host with ARGS
//!   and prints `child pid N` (and `volume key HEX` if it has a volume).
//!   Options: `--host` (full host), `--data NAME=VALUE`, `--path NAME=PATH`
//!   (a readPath grant), `--reply NAME` (a cap grant: the sender of a
//!   channel whose messages are printed as `reply: TEXT` once the child
//!   closes it), `--volume V`, `--key HEX`, `--restart on-failure`,
//!   `--name N`, `--detach` (do not wait for the child). Without `--detach`
//!   it waits and fails unless the child exits 0.

use std::time::Duration;

use anyhow::{bail, Context};
use ww_guest::ww_api::ww_capnp::RestartPolicy;
use ww_guest::ww_api::{host, receiver};

/// How long the spawner waits for a child's replies after it ended.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> anyhow::Result<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        bail!("odd-length hex {text:?}");
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).context("not hex"))
        .collect()
}

fn split_pair(pair: &str) -> anyhow::Result<(&str, &str)> {
    pair.split_once('=')
        .with_context(|| format!("expected NAME=VALUE, got {pair:?}"))
}

/// `child [OPTIONS] -- ARGS...`.
pub async fn child(host: &host::Client, args: &[&str]) -> anyhow::Result<()> {
    let split = args
        .iter()
        .position(|arg| *arg == "--")
        .context("child needs `--` before the child's arguments")?;
    let (options, child_args) = (&args[..split], &args[split + 1..]);
    let mut full = false;
    let mut detach = false;
    let mut data: Vec<(&str, &str)> = Vec::new();
    let mut paths: Vec<(&str, &str)> = Vec::new();
    let mut reply_name: Option<&str> = None;
    let mut volume: Option<&str> = None;
    let mut key: Option<Vec<u8>> = None;
    let mut restart = RestartPolicy::Never;
    let mut name = "probe-child";
    let mut iter = options.iter();
    while let Some(option) = iter.next() {
        let mut value = || {
            iter.next()
                .copied()
                .with_context(|| format!("{option} needs a value"))
        };
        match *option {
            "--host" => full = true,
            "--detach" => detach = true,
            "--data" => data.push(split_pair(value()?)?),
            "--path" => paths.push(split_pair(value()?)?),
            "--reply" => reply_name = Some(value()?),
            "--volume" => volume = Some(value()?),
            "--key" => key = Some(unhex(value()?)?),
            "--restart" => match value()? {
                "on-failure" => restart = RestartPolicy::OnFailure,
                other => bail!("unknown restart policy {other:?}"),
            },
            "--name" => name = value()?,
            other => bail!("unknown option {other:?}"),
        }
    }
    let channel = match reply_name {
        Some(_) => {
            let mut request = host.new_channel_request();
            request.get().set_capacity(16);
            let response = request.send().promise.await?;
            let response = response.get()?;
            Some((response.get_sender()?, response.get_receiver()?))
        }
        None => None,
    };
    let executor = host.executor_request().send().pipeline.get_executor();
    let mut spawn = executor.spawn_request();
    {
        let mut spec = spawn.get().init_spec();
        spec.reborrow().init_rom().set_bytes(crate::MISBEHAVE);
        let mut list = spec.reborrow().init_args(child_args.len() as u32);
        for (index, arg) in child_args.iter().enumerate() {
            list.set(index as u32, arg);
        }
        spec.set_host(full);
        spec.set_restart(restart);
        spec.set_name(name);
        if let Some(volume) = volume {
            spec.set_volume(volume);
        }
        if let Some(key) = &key {
            spec.set_volume_key(key);
        }
        let count = data.len() + paths.len() + usize::from(channel.is_some());
        let mut grants = spec.init_grants(count as u32);
        let mut index = 0;
        for (grant_name, bytes) in &data {
            let mut grant = grants.reborrow().get(index);
            grant.set_name(grant_name);
            grant.set_data(bytes.as_bytes());
            index += 1;
        }
        for (grant_name, path) in &paths {
            let mut grant = grants.reborrow().get(index);
            grant.set_name(grant_name);
            grant.set_read_path(path);
            index += 1;
        }
        if let (Some(reply_name), Some((sender, _))) = (reply_name, &channel) {
            let mut grant = grants.reborrow().get(index);
            grant.set_name(reply_name);
            grant
                .init_cap()
                .set_as_capability(sender.client.hook.add_ref());
        }
    }
    let process = spawn
        .send()
        .promise
        .await
        .context("spawning the child")?
        .get()?
        .get_process()?;
    let pid = process.id_request().send().promise.await?.get()?.get_id();
    println!("child pid {pid}");
    if volume.is_some() {
        let response = process.volume_key_request().send().promise.await?;
        println!("volume key {}", hex(response.get()?.get_key()?));
    }
    if detach {
        return Ok(());
    }
    let exit = process.wait_request().send().promise.await?;
    let exit = exit.get()?.get_exit()?;
    let (code, message) = (exit.get_code(), exit.get_message()?.to_str()?.to_owned());
    println!("child exit {code}: {message}");
    if let Some((_, receiver)) = channel {
        print_replies(&receiver).await?;
    }
    if code != 0 {
        bail!("the child failed: {message}");
    }
    Ok(())
}

async fn print_replies(receiver: &receiver::Client) -> anyhow::Result<()> {
    loop {
        let recv = receiver.recv_request().send().promise;
        let response = ww_guest::timeout(REPLY_TIMEOUT, recv)
            .await
            .context("the child ended without closing its reply channel")??;
        let response = response.get()?;
        if response.get_closed() {
            return Ok(());
        }
        let data = response.get_message()?.get_data()?;
        println!("reply: {}", String::from_utf8_lossy(data));
    }
}
