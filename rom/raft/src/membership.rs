//! `add-replica` and `remove-replica`: learner first, then voter.

use std::time::Duration;

use anyhow::{bail, Context};
use raft_client::proto::{Request, Response};
use raft_client::{Group, GuestRuntime};

use crate::deploy::{spawn_replica, wait_for_replicas};
use ww_guest::args::Args;
use ww_guest::progress::{self, Progress};
use ww_guest::ww_api::ops;

/// How long a new learner may take to catch up before it is promoted.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

async fn leader(group: &Group<GuestRuntime>, request: Request) -> anyhow::Result<Response> {
    Ok(group
        .leader_call(request, raft_client::group::DEFAULT_DEADLINE)
        .await?)
}

pub async fn add(
    host: &ww_guest::ww_api::host::Client,
    group: &Group<GuestRuntime>,
    args: &mut Args,
) -> anyhow::Result<()> {
    let version = group.version().to_owned();
    let members = group.members().await.context("finding the group")?;
    let here = ops::peer_id(host).await?;
    let peer = match args.option("--host") {
        Some(peer) => peer,
        None => ops::hosts(host)
            .await?
            .into_iter()
            .find(|peer| *peer != here && !members.iter().any(|member| member.peer_id == *peer) && !group.replicas().contains(peer))
            .context("every host already runs a replica of this group; start another host or pass --host")?,
    };
    if members.iter().any(|member| member.peer_id == peer) {
        bail!("{peer} already runs a replica of group {version}");
    }
    let status = group
        .status_all()
        .await
        .into_iter()
        .find_map(|(_, status)| status.ok().filter(|status| status.initialized))
        .context("no initialized replica answered")?;
    let group_id = u128::from_str_radix(&status.group_id, 16).context("the group id")?;

    if !group.replicas().contains(&peer) {
        // The new replica must hold the group key to check tokens and
        // exchange Raft messages; only an admin can read it.
        let key = group.group_key().await.map_err(anyhow::Error::msg)?;
        let pid = spawn_replica(host, &peer, &version, &key).await?;
        eprintln!("spawned replica on {peer} (process {pid})");
        wait_for_replicas(group, std::slice::from_ref(&peer)).await?;
    }
    // Raft ids of removed replicas are never reused, and this client cannot
    // see which were removed: draw the new id at random, above the first
    // voters' 1..N.
    let id = 1_000 + crate::deploy::random_u64() % 1_000_000_000;
    match group
        .call(
            &peer,
            Request::Join { group_id, id },
            raft_client::group::CALL_TIMEOUT,
        )
        .await?
    {
        Response::Done => {}
        other => bail!("the new replica refused to join: {other:?}"),
    }
    match leader(
        group,
        Request::AddLearner {
            id,
            peer_id: peer.clone(),
        },
    )
    .await?
    {
        Response::Members(_) => {}
        other => bail!("adding learner {id} on {peer} failed: {other:?}"),
    }
    eprintln!("added raft id {id} on {peer} as a learner; catching up");
    let started = ww_guest::now_ms();
    let mut progress = Progress::stderr();
    loop {
        let statuses = group.status_all().await;
        let commit = statuses
            .iter()
            .filter_map(|(_, s)| s.as_ref().ok())
            .filter(|s| s.role == "leader")
            .map(|s| s.commit)
            .max()
            .unwrap_or(0);
        let applied = statuses
            .iter()
            .find(|(p, _)| *p == peer)
            .and_then(|(_, s)| s.as_ref().ok())
            .map_or(0, |s| s.applied);
        let caught_up = commit > 0 && applied >= commit;
        let message = progress::count("learner applied", applied, commit, progress.is_live());
        if caught_up {
            progress.finish_with(&message);
            break;
        }
        progress.update(&message);
        if ww_guest::now_ms() - started > CATCH_UP_TIMEOUT.as_millis() as u64 {
            bail!("learner {id} applied {applied} of {commit} entries within {CATCH_UP_TIMEOUT:?}; it stays a learner");
        }
        ww_guest::sleep(Duration::from_millis(200)).await;
    }
    match leader(group, Request::Promote { id }).await? {
        Response::Members(members) => println!(
            "promoted raft id {id} on {peer} to voter; members: {}",
            members.len()
        ),
        other => bail!("promoting {id} failed: {other:?}"),
    }
    Ok(())
}

pub async fn remove(group: &Group<GuestRuntime>, args: &mut Args) -> anyhow::Result<()> {
    let peer = args.required("PEER")?;
    let members = group.members().await.context("finding the group")?;
    let member = members
        .iter()
        .find(|member| member.peer_id == peer)
        .with_context(|| format!("{peer} runs no member of group {}", group.version()))?;
    if members.iter().filter(|member| member.voter).count() <= 1 && member.voter {
        bail!("{peer} runs the last voter; destroy the group instead");
    }
    match leader(group, Request::Remove { id: member.id }).await? {
        Response::Members(_) => println!("removed raft id {} on {peer}", member.id),
        other => bail!("removing {} failed: {other:?}", member.id),
    }
    match group
        .call(
            &peer,
            Request::Destroy { force: false },
            raft_client::group::CALL_TIMEOUT,
        )
        .await
    {
        Ok(Response::Done) => println!("destroyed the replica on {peer}"),
        Ok(other) => eprintln!("the removed replica on {peer} did not destroy itself: {other:?}"),
        Err(err) => eprintln!("the removed replica on {peer} did not answer: {err}"),
    }
    Ok(())
}
