//! `ww ps` (every process of the cluster) and `ww kill PEER/PID`.

use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::Args as ClapArgs;
use serde::Serialize;
use ww_api::host;

use super::connect::PeerArgs;

#[derive(ClapArgs, Debug)]
pub struct PsArgs {
    #[command(flatten)]
    peers: PeerArgs,
    /// Print `{"processes": [...], "unreachable": [...]}`.
    #[arg(long)]
    json: bool,
}

#[derive(ClapArgs, Debug)]
pub struct KillArgs {
    #[command(flatten)]
    peers: PeerArgs,
    /// Print `{"killed": "PEER/PID"}`.
    #[arg(long)]
    json: bool,
    /// The process, as `ww ps` names it: `<peer id>/<pid>`.
    target: String,
}

#[derive(Serialize)]
struct ProcessRow {
    peer_id: String,
    id: u64,
    name: String,
    rom_hash: String,
    args: Vec<String>,
    state: String,
    uptime_ms: u64,
    restarts: u32,
    anchor: String,
    exit: Option<String>,
}

async fn dial(host: &host::Client, peer: &str) -> Result<host::Client> {
    let mut request = host.dial_request();
    request.get().set_peer_id(peer);
    Ok(request.send().promise.await?.get()?.get_host()?)
}

async fn processes_of(host: host::Client, peer: &str) -> Result<Vec<ProcessRow>> {
    let executor = host.executor_request().send().pipeline.get_executor();
    let response = executor.ps_request().send().promise.await?;
    let mut rows = Vec::new();
    for info in response.get()?.get_processes()? {
        let exit = info.get_exit()?;
        let message = exit.get_message()?.to_string()?;
        rows.push(ProcessRow {
            peer_id: peer.to_owned(),
            id: info.get_id(),
            name: info.get_name()?.to_string()?,
            rom_hash: info.get_rom_hash()?.to_string()?,
            args: info
                .get_args()?
                .iter()
                .map(|arg| Ok(arg?.to_string()?))
                .collect::<Result<_>>()?,
            state: info.get_state()?.to_string()?,
            uptime_ms: info.get_uptime_ms(),
            restarts: info.get_restarts(),
            anchor: info.get_anchor()?.to_string()?,
            exit: (!message.is_empty()).then_some(message),
        });
    }
    Ok(rows)
}

pub async fn ps(args: PsArgs) -> Result<ExitCode> {
    let session = args.peers.connect().await?;
    let view = session
        .host
        .view_request()
        .send()
        .promise
        .await
        .context("reading the cluster view")?;
    let peers: Vec<String> = view
        .get()?
        .get_hosts()?
        .iter()
        .map(|info| Ok(info.get_peer_id()?.to_string()?))
        .collect::<Result<_>>()?;
    let mut rows = Vec::new();
    let mut unreachable = Vec::new();
    for peer in &peers {
        let result = async { processes_of(dial(&session.host, peer).await?, peer).await }.await;
        match result {
            Ok(mut found) => rows.append(&mut found),
            Err(err) => unreachable
                .push(serde_json::json!({ "peer_id": peer, "error": format!("{err:#}") })),
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "processes": rows, "unreachable": unreachable })
        );
    } else {
        println!(
            "{:<60} {:<12} {:<10} {:>9} {:>8}  {:<12} ARGS",
            "PROCESS", "NAME", "STATE", "UPTIME_S", "RESTARTS", "ROM"
        );
        for row in &rows {
            println!(
                "{:<60} {:<12} {:<10} {:>9} {:>8}  {:<12} {}",
                format!("{}/{}", row.peer_id, row.id),
                row.name,
                row.state,
                row.uptime_ms / 1000,
                row.restarts,
                &row.rom_hash[..row.rom_hash.len().min(12)],
                row.args.join(" ")
            );
        }
        for host in &unreachable {
            eprintln!(
                "ww: host {} did not answer: {}",
                host["peer_id"], host["error"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn kill(args: KillArgs) -> Result<ExitCode> {
    let (peer, pid) = args
        .target
        .split_once('/')
        .ok_or_else(|| anyhow!("name the process as <peer id>/<pid>, as `ww ps` prints it"))?;
    let pid: u64 = pid
        .parse()
        .map_err(|_| anyhow!("{pid:?} is not a process id; `ww ps` lists them"))?;
    let session = args.peers.connect().await?;
    let host = dial(&session.host, peer)
        .await
        .with_context(|| format!("reaching host {peer}"))?;
    let executor = host.executor_request().send().pipeline.get_executor();
    let mut request = executor.kill_request();
    request.get().set_id(pid);
    request
        .send()
        .promise
        .await
        .with_context(|| format!("killing {}", args.target))?;
    if args.json {
        println!("{}", serde_json::json!({ "killed": args.target }));
    }
    Ok(ExitCode::SUCCESS)
}
