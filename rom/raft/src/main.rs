//! The Raft ROM: `ww run raft.wasm SUBCOMMAND`.
//!
//! It embeds the replica ROM, deploys groups of it onto the cluster, and
//! talks to a group through its anchors (`/<peer id>/raft/<version>/...`),
//! so the user never types a peer id except to choose a host. Results go to
//! stdout (`get`: the bare value; `--json`: one JSON object), progress and
//! errors to stderr.

mod args;
mod deploy;
mod kv;
mod membership;
mod queues;

use args::Args;
use raft_client::{Group, GuestRuntime};

const USAGE: &str = "usage: ww run raft.wasm [--version V] SUBCOMMAND
  deploy [--replicas N]            spawn N replicas on N hosts (not this one) and elect a leader
  status [--json]                  every replica: role, term, commit, applied, lag
  put K V | get K | delete K | cas K OLD NEW
  enqueue TOPIC MSG...             | lease TOPIC [--n N] [--lease-ms MS] [--consumer C] [--json]
  ack TOPIC RECEIPT...             | nack TOPIC RECEIPT... [--delay-ms MS] | extend TOPIC RECEIPT... [--lease-ms MS]
  stats [TOPIC] | peek TOPIC [--n N] | purge TOPIC
  add-replica [--host PEER] | remove-replica PEER | destroy";

fn main() {
    ww_guest::run(|env| async move {
        if ww_guest::wants_help(&env.args) {
            println!("{USAGE}");
            return Ok(());
        }
        let mut args = Args::new(env.args.clone());
        let version = args.option("--version").unwrap_or_else(|| "v1".to_owned());
        let Some(command) = args.next() else {
            anyhow::bail!("{USAGE}");
        };
        let group = Group::connect(env.host.clone(), &version, GuestRuntime).await?;
        match command.as_str() {
            "deploy" => deploy::deploy(&env.host, &group, &mut args).await,
            "status" => deploy::status(&group, &mut args).await,
            "destroy" => deploy::destroy(&group).await,
            "add-replica" => membership::add(&env.host, &group, &mut args).await,
            "remove-replica" => membership::remove(&group, &mut args).await,
            "put" | "get" | "delete" | "cas" => kv::run(&group, &command, &mut args).await,
            "enqueue" | "lease" | "ack" | "nack" | "extend" | "stats" | "peek" | "purge" => {
                queues::run(&group, &command, &mut args).await
            }
            other => anyhow::bail!("unknown subcommand {other:?}\n{USAGE}"),
        }
    })
}
