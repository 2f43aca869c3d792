//! The Raft ROM: `ww run raft.wasm SUBCOMMAND`.
//!
//! It embeds the replica ROM, deploys groups of it onto the cluster, and
//! talks to a group through its anchors (`/<peer id>/raft/<version>/...`),
//! so the user never types a peer id except to choose a host. Results go to
//! stdout (`get`: the bare value; `--json`: one JSON object), progress and
//! errors to stderr.

mod deploy;
mod kv;
mod load;
mod membership;
mod queues;

use raft_client::{Group, GuestRuntime};
use ww_guest::args::Args;

const USAGE: &str = "usage: ww run raft.wasm [--version V] [--relayed] SUBCOMMAND
  deploy [--replicas N]            spawn N replicas on N hosts (not this one) and elect a leader
  status [--json]                  every replica: role, term, commit, applied, lag
  put K V | get K | delete K | cas K OLD NEW
  load [--writers N] [--duration-ms MS] [--json]   closed-loop puts of keys load/W/N from here: writes/s, latency, route
  enqueue TOPIC MSG...             | lease TOPIC [--n N] [--lease-ms MS] [--consumer C] [--json]
  ack TOPIC RECEIPT...             | nack TOPIC RECEIPT... [--delay-ms MS] | extend TOPIC RECEIPT... [--lease-ms MS]
  stats [TOPIC] | peek TOPIC [--n N] | purge TOPIC
  add-replica [--host PEER] | remove-replica PEER | destroy
  grant --verbs V[,V...] [--topic T]... [--json]  mint a narrower access token (hex); verbs: enqueue, consume,
                                   read, kv-read, kv-write, topic-admin, admin, all

After its first 16 requests a client reaches the replicas' hosts over its own
connections (`Host.connect`); --relayed keeps every request on the host it dialed.
A process spawned with grants only (a `raft` path view and a `raft-token`) reaches the group through them.";

/// `grant`: mints a token within this client's own scope; prints it in hex.
async fn grant(group: &Group<GuestRuntime>, args: &mut Args) -> anyhow::Result<()> {
    let verbs = args
        .option("--verbs")
        .ok_or_else(|| anyhow::anyhow!("grant needs --verbs"))?;
    let verbs = raft_client::access::Verbs::parse(&verbs).map_err(anyhow::Error::msg)?;
    let mut topics = Vec::new();
    while let Some(topic) = args.option("--topic") {
        topics.push(topic);
    }
    let scope = raft_client::access::Scope {
        verbs,
        topics: (!topics.is_empty()).then_some(topics),
    };
    let token = group.mint(scope).await.map_err(anyhow::Error::msg)?;
    let hex: String = token.iter().map(|byte| format!("{byte:02x}")).collect();
    if args.flag("--json") {
        println!("{}", serde_json::json!({ "token": hex }));
    } else {
        println!("{hex}");
    }
    Ok(())
}

/// Requests after which a client moves to direct routes
/// ([`Group::dial_replicas_after`]): a one-shot command sends one or two,
/// and a connection to every replica's host would cost it more than the
/// relay does.
const DIRECT_AFTER_REQUESTS: u64 = 16;

fn main() {
    ww_guest::run(|env| async move {
        if ww_guest::wants_help(&env.args) {
            println!("{USAGE}");
            return Ok(());
        }
        let mut args = Args::new(env.args.clone());
        let version = args.option("--version").unwrap_or_else(|| "v1".to_owned());
        let relayed = args.flag("--relayed");
        let Some(command) = args.next() else {
            anyhow::bail!("{USAGE}");
        };
        let group = match Group::connect_granted(env.host.clone(), GuestRuntime).await? {
            Some(group) => group,
            None if relayed => Group::connect(env.host.clone(), &version, GuestRuntime).await?,
            None => {
                let group = Group::connect(env.host.clone(), &version, GuestRuntime).await?;
                // Under `ww run`, `connect` is the `ww run` process's own: a
                // client that makes more than a few requests then reaches
                // the replicas' hosts directly.
                group.dial_replicas_after(
                    raft_client::direct::through(env.host.clone()),
                    DIRECT_AFTER_REQUESTS,
                );
                group
            }
        };
        let result = match command.as_str() {
            "deploy" => deploy::deploy(&env.host, &group, &mut args).await,
            "status" => deploy::status(&group, &mut args).await,
            "destroy" => deploy::destroy(&group).await,
            "add-replica" => membership::add(&env.host, &group, &mut args).await,
            "remove-replica" => membership::remove(&group, &mut args).await,
            "put" | "get" | "delete" | "cas" => kv::run(&group, &command, &mut args).await,
            "load" => load::run(&group, &mut args).await,
            "enqueue" | "lease" | "ack" | "nack" | "extend" | "stats" | "peek" | "purge" => {
                queues::run(&group, &command, &mut args).await
            }
            "grant" => grant(&group, &mut args).await,
            other => anyhow::bail!("unknown subcommand {other:?}\n{USAGE}"),
        };
        ww_guest::exit_if_not_permitted(result)
    })
}
