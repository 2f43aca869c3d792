//! `deploy`, `status` and `destroy`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use anyhow::{bail, Context};
use raft_client::access::{self, GroupKey};
use raft_client::proto::{Member, ReplicaStatus, Request, Response};
use raft_client::{Group, GuestRuntime};
use serde_json::json;
use ww_guest::progress::{self, Progress};
use ww_guest::ww_api::ww_capnp::RestartPolicy;
use ww_guest::ww_api::{host, ops, topic};

use ww_guest::args::Args;

/// The replica ROM.
pub const REPLICA: &[u8] = include_bytes!(env!("RAFT_REPLICA_WASM"));

/// How long a deploy waits for replicas to appear and a leader to win.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(60);

/// 64 random bits from the WASI random source (std's hasher seed).
pub fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(ww_guest::now_ms());
    hasher.finish()
}

/// A new group key from the WASI random source.
pub fn new_group_key() -> GroupKey {
    let entropy: Vec<u8> = (0..4).flat_map(|_| random_u64().to_le_bytes()).collect();
    GroupKey::generate(&entropy)
}

/// Spawns a supervised replica of `version` on `peer`, granted the full
/// host (it anchors, dials its peers' inboxes and publishes status) and
/// the group key; returns its pid.
pub async fn spawn_replica(
    host: &host::Client,
    peer: &str,
    version: &str,
    key: &GroupKey,
) -> anyhow::Result<u64> {
    let (_, pid) = ops::spawn_on(host, peer, |mut spec| {
        spec.reborrow().init_rom().set_bytes(REPLICA);
        spec.reborrow().init_args(1).set(0, version);
        spec.set_host(true);
        {
            let mut grant = spec.reborrow().init_grants(1).get(0);
            grant.set_name(access::GROUP_KEY_GRANT);
            grant.set_data(key.as_bytes());
        }
        // A fresh volume per replica: a volume that exists belongs to the
        // process that created it (the host refuses it to anyone without
        // its key), so a redeploy never inherits an old log.
        spec.set_volume(format!("raft-{version}-{:016x}", random_u64()));
        spec.set_restart(RestartPolicy::OnFailure);
        spec.set_anchor(format!("raft/{version}"));
        spec.set_name(format!("raft-{version}"));
        // Replicas discover peers, subscribe and anchor: the full host.
        spec.set_host(true);
    })
    .await
    .with_context(|| format!("spawning a replica on {peer}"))?;
    Ok(pid)
}

/// Waits until replicas are anchored on every host of `peers`.
pub async fn wait_for_replicas(
    group: &Group<GuestRuntime>,
    peers: &[String],
) -> anyhow::Result<()> {
    let started = ww_guest::now_ms();
    let mut progress = Progress::stderr();
    loop {
        group.discover().await?;
        let found = group.replicas();
        let ready = peers.iter().filter(|peer| found.contains(peer)).count();
        let total = peers.len() as u64;
        let message = progress::count(
            "replicas anchored:",
            ready as u64,
            total,
            progress.is_live(),
        );
        progress.update(&message);
        if ready == peers.len() {
            progress.finish_with(&format!("replicas anchored: {ready}/{total}"));
            return Ok(());
        }
        if ww_guest::now_ms() - started > DEPLOY_TIMEOUT.as_millis() as u64 {
            bail!(
                "only {ready} of {} replicas anchored within {DEPLOY_TIMEOUT:?}",
                peers.len()
            );
        }
        ww_guest::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn deploy(
    host: &host::Client,
    group: &Group<GuestRuntime>,
    args: &mut Args,
) -> anyhow::Result<()> {
    let replicas: usize = args.parsed("--replicas")?.unwrap_or(3);
    let version = group.version().to_owned();
    if replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    if !group.replicas().is_empty() {
        bail!(
            "group {version} is already deployed on {:?}; use `status`, or `destroy` it first",
            group.replicas()
        );
    }
    let here = ops::peer_id(host).await?;
    let candidates: Vec<String> = ops::hosts(host)
        .await?
        .into_iter()
        .filter(|peer| *peer != here)
        .collect();
    if candidates.len() < replicas {
        bail!(
            "{replicas} replicas need {replicas} hosts besides the one this client is attached to ({here}); the view has {}",
            candidates.len()
        );
    }
    let chosen: Vec<String> = candidates.into_iter().take(replicas).collect();
    let key = new_group_key();
    let mut progress = Progress::stderr();
    for (index, peer) in chosen.iter().enumerate() {
        let done = index as u64;
        let message = progress::count(
            "spawning replicas",
            done,
            replicas as u64,
            progress.is_live(),
        );
        let pid = progress
            .spin_until(&message, spawn_replica(host, peer, &version, &key))
            .await?;
        progress.println(&format!("spawned replica on {peer} (process {pid})"));
    }
    progress.finish();
    wait_for_replicas(group, &chosen).await?;

    let group_id = (u128::from(random_u64()) << 64) | u128::from(random_u64());
    let voters: Vec<(u64, String)> = chosen
        .iter()
        .enumerate()
        .map(|(index, peer)| (index as u64 + 1, peer.clone()))
        .collect();
    for (id, peer) in &voters {
        let request = Request::Init {
            group_id,
            id: *id,
            voters: voters.clone(),
        };
        match group
            .call(peer, request, raft_client::group::CALL_TIMEOUT)
            .await?
        {
            Response::Done => {}
            other => bail!("replica on {peer} refused init: {other:?}"),
        }
    }
    eprintln!("group {group_id:032x} initialized; waiting for a leader");
    let leader = wait_for_leader(group, &chosen[0]).await?;
    println!(
        "leader elected: raft id {} on {}",
        leader.raft_id, leader.peer_id
    );
    print_group(group, false).await
}

/// Watches the group's `response` topic (status events) for a leader,
/// printing what the replicas report; polls status too, in case an event
/// is lost (pubsub is best effort).
async fn wait_for_leader(
    group: &Group<GuestRuntime>,
    any_peer: &str,
) -> anyhow::Result<ReplicaStatus> {
    let events = subscribe_events(group, any_peer).await;
    let started = ww_guest::now_ms();
    let mut progress = Progress::stderr();
    loop {
        progress.spin("waiting for a leader");
        if let Some(subscription) = &events {
            let next = subscription.next_request().send().promise;
            if let Ok(Ok(message)) = ww_guest::timeout(Duration::from_millis(500), next).await {
                let data = message.get()?.get_message()?.get_data()?.to_vec();
                if let Ok(status) = raft_client::proto::decode::<ReplicaStatus>(&data) {
                    progress.println(&format!(
                        "  {}: raft id {} {} term {}",
                        status.peer_id, status.raft_id, status.role, status.term
                    ));
                    if status.role == "leader" {
                        return Ok(status);
                    }
                }
            }
        } else {
            ww_guest::sleep(Duration::from_millis(300)).await;
        }
        for (_, status) in group.status_all().await {
            if let Ok(status) = status {
                if status.role == "leader" {
                    return Ok(status);
                }
            }
        }
        if ww_guest::now_ms() - started > DEPLOY_TIMEOUT.as_millis() as u64 {
            bail!("no leader elected within {DEPLOY_TIMEOUT:?}; check `status`");
        }
    }
}

async fn subscribe_events(
    group: &Group<GuestRuntime>,
    peer: &str,
) -> Option<ww_guest::ww_api::subscription::Client> {
    let root = group.host().root_request().send().pipeline.get_anchor();
    let path = format!("/{peer}/raft/{}/response", group.version());
    let topic: topic::Client = ops::get_cap(&root, &path).await.ok()??;
    let mut subscribe = topic.subscribe_request();
    subscribe.get().set_buffer(64);
    let response = subscribe.send().promise.await.ok()?;
    response.get().ok()?.get_subscription().ok()
}

fn member_list(members: &[Member]) -> String {
    members
        .iter()
        .map(|member| {
            format!(
                "{}{}@{}",
                member.id,
                if member.voter { "" } else { "(learner)" },
                member.peer_id
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn print_group(group: &Group<GuestRuntime>, as_json: bool) -> anyhow::Result<()> {
    let statuses = group.status_all().await;
    let commit_max = statuses
        .iter()
        .filter_map(|(_, status)| status.as_ref().ok())
        .map(|status| status.commit)
        .max()
        .unwrap_or(0);
    if as_json {
        let replicas: Vec<_> = statuses
            .iter()
            .map(|(peer, status)| match status {
                Ok(status) => json!({
                    "peer_id": peer,
                    "raft_id": status.raft_id,
                    "role": status.role,
                    "term": status.term,
                    "commit": status.commit,
                    "applied": status.applied,
                    "lag": commit_max.saturating_sub(status.applied),
                    "last_index": status.last_index,
                    "leader_id": status.leader_id,
                    "group_id": status.group_id,
                    "members": status.members.iter().map(|m| json!({"id": m.id, "peer_id": m.peer_id, "voter": m.voter})).collect::<Vec<_>>(),
                    "fsyncs": status.fsyncs,
                    "entries_persisted": status.entries_persisted,
                    "log_bytes_written": status.log_bytes_written,
                    "dropped_messages": status.dropped_messages,
                    "last_drop": status.last_drop,
                    "envelopes_sent": status.envelopes_sent,
                    "envelopes_sent_early": status.envelopes_sent_early,
                    "messages_stepped": status.messages_stepped,
                    "outbound_dropped": status.outbound_dropped,
                    "progress": status.progress,
                }),
                Err(err) => json!({ "peer_id": peer, "error": err.to_string() }),
            })
            .collect();
        println!(
            "{}",
            json!({ "version": group.version(), "replicas": replicas })
        );
        return Ok(());
    }
    println!("group {}:", group.version());
    for (peer, status) in statuses {
        match status {
            Ok(status) => println!(
                "  {peer}  raft id {}  {}  term {}  commit {}  applied {}  lag {}  members [{}]",
                status.raft_id,
                status.role,
                status.term,
                status.commit,
                status.applied,
                commit_max.saturating_sub(status.applied),
                member_list(&status.members)
            ),
            Err(err) => println!("  {peer}  unreachable: {err}"),
        }
    }
    Ok(())
}

pub async fn status(group: &Group<GuestRuntime>, args: &mut Args) -> anyhow::Result<()> {
    let as_json = args.flag("--json");
    if group.replicas().is_empty() {
        bail!(
            "no replica of group {} is anchored in the cluster; deploy it first",
            group.version()
        );
    }
    print_group(group, as_json).await
}

pub async fn destroy(group: &Group<GuestRuntime>) -> anyhow::Result<()> {
    let peers = group.replicas();
    if peers.is_empty() {
        bail!(
            "no replica of group {} is anchored in the cluster",
            group.version()
        );
    }
    for peer in &peers {
        match group
            .call(
                peer,
                Request::Destroy { force: true },
                raft_client::group::CALL_TIMEOUT,
            )
            .await
        {
            Ok(Response::Done) => println!("destroyed the replica on {peer}"),
            Ok(Response::Error { message, .. }) if message.starts_with("not permitted") => {
                bail!("the replica on {peer} refused: {message}")
            }
            Ok(other) => eprintln!("the replica on {peer} refused: {other:?}"),
            Err(err) => eprintln!("the replica on {peer} did not answer: {err}"),
        }
    }
    // Destroyed replicas exit; their hosts clear their anchors.
    let started = ww_guest::now_ms();
    while ww_guest::now_ms() - started < 10_000 {
        group.discover().await?;
        if group.replicas().is_empty() {
            println!("group {} destroyed", group.version());
            return Ok(());
        }
        ww_guest::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "replicas still anchored after destroy: {:?}",
        group.replicas()
    )
}
