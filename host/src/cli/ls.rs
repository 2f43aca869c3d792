//! `ww ls [PATH]`, `ww get PATH`, `ww set PATH VALUE`: anchors from the shell.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;

use super::connect::PeerArgs;

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    peers: PeerArgs,
    /// Print `{"path": ..., "children": [...]}`.
    #[arg(long)]
    json: bool,
    /// The path: `/`, `/<peer id>`, `/<peer id>/a/b`.
    #[arg(default_value = "/")]
    path: String,
}

#[derive(ClapArgs, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    peers: PeerArgs,
    /// Print `{"path": ..., "kind": "none"|"data"|"capability", "data": ...}`.
    #[arg(long)]
    json: bool,
    /// The path, `/<peer id>/...`.
    path: String,
}

#[derive(ClapArgs, Debug)]
pub struct SetArgs {
    #[command(flatten)]
    peers: PeerArgs,
    /// The path, `/<peer id>/...`.
    path: String,
    /// The bytes to store (UTF-8).
    value: String,
}

fn walk(session: &super::connect::Session, path: &str) -> ww_api::anchor::Client {
    let root = session.host.root_request().send().pipeline.get_anchor();
    let mut walk = root.walk_request();
    walk.get().set_path(path);
    walk.send().pipeline.get_anchor()
}

pub async fn get(args: GetArgs) -> Result<ExitCode> {
    use ww_api::ww_capnp::value::Which;
    let session = args.peers.connect().await?;
    let anchor = walk(&session, &args.path);
    let response = anchor
        .get_request()
        .send()
        .promise
        .await
        .with_context(|| format!("reading {}", args.path))?;
    let (kind, data) = match response.get()?.get_value()?.which()? {
        Which::None(()) => ("none", None),
        Which::Data(data) => ("data", Some(String::from_utf8_lossy(data?).into_owned())),
        Which::Cap(_) => ("capability", None),
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "path": args.path, "kind": kind, "data": data })
        );
    } else {
        match data {
            Some(data) => println!("{data}"),
            None => println!("({kind})"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn set(args: SetArgs) -> Result<ExitCode> {
    let session = args.peers.connect().await?;
    let anchor = walk(&session, &args.path);
    let mut request = anchor.set_request();
    request.get().init_value().set_data(args.value.as_bytes());
    request
        .send()
        .promise
        .await
        .with_context(|| format!("setting {}", args.path))?;
    Ok(ExitCode::SUCCESS)
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let session = args.peers.connect().await?;
    let anchor = walk(&session, &args.path);
    let response = anchor
        .ls_request()
        .send()
        .promise
        .await
        .with_context(|| format!("listing {}", args.path))?;
    let children: Vec<String> = response
        .get()?
        .get_children()?
        .iter()
        .map(|child| Ok(child?.to_string()?))
        .collect::<Result<_>>()?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "path": args.path, "children": children })
        );
    } else {
        for child in children {
            println!("{child}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
