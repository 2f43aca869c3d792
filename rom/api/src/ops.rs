//! Common calls on the ROM API, shared by ROMs, native clients and tests:
//! walking anchors, storing capabilities, listing hosts, spawning.
//!
//! Runtime-agnostic: these only build capnp requests and await them.

use capnp::capability::FromClientHook;

use crate::ww_capnp::{received, spawn_spec, value};
use crate::{anchor, host, process, receiver};

/// UTF-8 text from a capnp reader, owned.
///
/// # Errors
///
/// When the text is not UTF-8 (or the read fails).
pub fn text(reader: capnp::Result<capnp::text::Reader<'_>>) -> capnp::Result<String> {
    reader?
        .to_string()
        .map_err(|_| capnp::Error::failed("text is not UTF-8".to_owned()))
}

/// Drains `receiver` for as long as it lives: one `recvBatch` of up to
/// `max` messages at a time (a call waits while the channel is empty), each
/// batch handed to `each`. Returns when the channel is closed and drained,
/// when a call fails (the channel's host is gone), or when `each` returns
/// `false` (its consumer is gone). The one receive loop of the replica's
/// request and Raft inboxes and the client's replies.
pub async fn recv_batches(
    receiver: &receiver::Client,
    max: u32,
    mut each: impl FnMut(capnp::struct_list::Reader<'_, received::Owned>) -> bool,
) {
    loop {
        let mut request = receiver.recv_batch_request();
        request.get().set_max(max);
        let Ok(response) = request.send().promise.await else {
            return;
        };
        let Ok(response) = response.get() else { return };
        let Ok(messages) = response.get_messages() else {
            return;
        };
        // A closed channel still hands over what it held.
        if !messages.is_empty() && !each(messages) {
            return;
        }
        if response.get_closed() {
            return;
        }
    }
}

/// The anchor at `path` below `root` (pipelined: no round trip until used).
pub fn walk(root: &anchor::Client, path: &str) -> anchor::Client {
    let mut request = root.walk_request();
    request.get().set_path(path);
    request.send().pipeline.get_anchor()
}

/// The capability stored at `path`, if one is.
///
/// # Errors
///
/// When the walk or the read fails.
pub async fn get_cap<C: FromClientHook>(
    root: &anchor::Client,
    path: &str,
) -> capnp::Result<Option<C>> {
    let response = walk(root, path).get_request().send().promise.await?;
    match response.get()?.get_value()?.which()? {
        value::Which::Cap(cap) => Ok(Some(cap.get_as_capability()?)),
        _ => Ok(None),
    }
}

/// Stores `cap` at `path`.
///
/// # Errors
///
/// When the walk or the write fails.
pub async fn set_cap(
    root: &anchor::Client,
    path: &str,
    cap: capnp::capability::Client,
) -> capnp::Result<()> {
    let mut request = walk(root, path).set_request();
    request
        .get()
        .init_value()
        .init_cap()
        .set_as_capability(cap.hook);
    request.send().promise.await?;
    Ok(())
}

/// The bytes stored at `path`, if bytes are.
///
/// # Errors
///
/// When the walk or the read fails.
pub async fn get_data(root: &anchor::Client, path: &str) -> capnp::Result<Option<Vec<u8>>> {
    let response = walk(root, path).get_request().send().promise.await?;
    match response.get()?.get_value()?.which()? {
        value::Which::Data(data) => Ok(Some(data?.to_vec())),
        _ => Ok(None),
    }
}

/// Stores `data` at `path`.
///
/// # Errors
///
/// When the walk or the write fails.
pub async fn set_data(root: &anchor::Client, path: &str, data: &[u8]) -> capnp::Result<()> {
    let mut request = walk(root, path).set_request();
    request.get().init_value().set_data(data);
    request.send().promise.await?;
    Ok(())
}

/// The names of `anchor`'s children.
///
/// # Errors
///
/// When the call fails.
pub async fn ls(anchor: &anchor::Client) -> capnp::Result<Vec<String>> {
    let response = anchor.ls_request().send().promise.await?;
    response.get()?.get_children()?.iter().map(text).collect()
}

/// The peer id of `host`.
///
/// # Errors
///
/// When the call fails.
pub async fn peer_id(host: &host::Client) -> capnp::Result<String> {
    text(
        host.peer_id_request()
            .send()
            .promise
            .await?
            .get()?
            .get_peer_id(),
    )
}

/// The peer ids of the hosts in `host`'s view, sorted.
///
/// # Errors
///
/// When the call fails.
pub async fn hosts(host: &host::Client) -> capnp::Result<Vec<String>> {
    let view = host.view_request().send().promise.await?;
    let mut peers = view
        .get()?
        .get_hosts()?
        .iter()
        .map(|info| text(info.get_peer_id()))
        .collect::<capnp::Result<Vec<_>>>()?;
    peers.sort();
    Ok(peers)
}

/// Spawns a process on host `peer`, reached through `host`; `fill` writes
/// the spec (ROM, args, volume, restart, anchor, grants...). Returns the
/// process and its id. The process holds only its grants unless `fill`
/// sets `host`.
///
/// # Errors
///
/// When the host cannot be reached or refuses the spawn.
pub async fn spawn_on(
    host: &host::Client,
    peer: &str,
    fill: impl FnOnce(spawn_spec::Builder<'_>),
) -> capnp::Result<(process::Client, u64)> {
    let mut dial = host.dial_request();
    dial.get().set_peer_id(peer);
    let executor = dial
        .send()
        .pipeline
        .get_host()
        .executor_request()
        .send()
        .pipeline
        .get_executor();
    let mut spawn = executor.spawn_request();
    fill(spawn.get().init_spec());
    let process = spawn.send().promise.await?.get()?.get_process()?;
    let id = process.id_request().send().promise.await?.get()?.get_id();
    Ok((process, id))
}

/// A grant a process was spawned with (see `Grant` in the schema).
pub struct Grant {
    /// Its name.
    pub name: String,
    /// What it holds.
    pub value: GrantValue,
}

/// What a grant holds.
pub enum GrantValue {
    /// Bytes.
    Data(Vec<u8>),
    /// A capability.
    Cap(capnp::capability::Client),
    /// A read-only path below every host; [`grant_anchor`] gives its view.
    ReadPath(String),
}

/// The grants this process was spawned with.
///
/// # Errors
///
/// When the call fails.
pub async fn grants(host: &host::Client) -> capnp::Result<Vec<Grant>> {
    use crate::ww_capnp::grant::Which;
    let response = host.grants_request().send().promise.await?;
    let mut out = Vec::new();
    for grant in response.get()?.get_grants()?.iter() {
        let value = match grant.which()? {
            Which::Data(data) => GrantValue::Data(data?.to_vec()),
            Which::Cap(cap) => GrantValue::Cap(cap.get_as_capability()?),
            Which::ReadPath(path) => GrantValue::ReadPath(text(path)?),
            // A host answers an `http` grant as the `cap` that serves it;
            // only a spawn spec carries the scope itself.
            Which::Http(_) => continue,
        };
        out.push(Grant {
            name: text(grant.get_name())?,
            value,
        });
    }
    Ok(out)
}

/// The bytes of the `data` grant `name`, if this process holds one.
///
/// # Errors
///
/// When the call fails.
pub async fn grant_data(host: &host::Client, name: &str) -> capnp::Result<Option<Vec<u8>>> {
    Ok(grants(host)
        .await?
        .into_iter()
        .find(|grant| grant.name == name)
        .and_then(|grant| match grant.value {
            GrantValue::Data(data) => Some(data),
            _ => None,
        }))
}

/// The capability of the `cap` grant `name`, if this process holds one.
///
/// # Errors
///
/// When the call fails.
pub async fn grant_cap<C: FromClientHook>(
    host: &host::Client,
    name: &str,
) -> capnp::Result<Option<C>> {
    Ok(grants(host)
        .await?
        .into_iter()
        .find(|grant| grant.name == name)
        .and_then(|grant| match grant.value {
            GrantValue::Cap(cap) => Some(C::new(cap.hook)),
            _ => None,
        }))
}

/// The read-only view of the `readPath` grant `name`, if this process
/// holds one: `ls` lists the hosts, `walk("<peer id>")` gives the anchor at
/// `/<peer id>/<path>`, on which `get` and `path` work.
///
/// # Errors
///
/// When the call fails.
pub async fn grant_anchor(
    host: &host::Client,
    name: &str,
) -> capnp::Result<Option<anchor::Client>> {
    let held = grants(host)
        .await?
        .into_iter()
        .any(|grant| grant.name == name && matches!(grant.value, GrantValue::ReadPath(_)));
    if !held {
        return Ok(None);
    }
    let mut request = host.grant_anchor_request();
    request.get().set_name(name);
    Ok(Some(request.send().promise.await?.get()?.get_anchor()?))
}
