//! A ROM that misbehaves on demand, so tests can check that the host
//! survives it and reports it clearly:
//!
//! - `trap`: executes `unreachable`.
//! - `spin`: loops forever without calling its host.
//! - `spin-clock`: loops forever reading the monotonic clock: a host call
//!   on every turn, so only the CPU share stops it from hogging the host.
//! - `hog [MIB]`: allocates memory until something stops it; with MIB,
//!   stops at MIB, prints `held MIB MiB` and keeps it, waiting forever.
//! - `fill`: writes 1 MiB files into its volume (`/data`) until something
//!   stops it.
//! - `open-flood`: opens `/data/flood` (its volume) again and again,
//!   holding every descriptor, until something stops it.
//! - `exit N`: exits with code N (0-255): even codes by returning
//!   `ww_guest::ExitCode`, odd ones by calling `ww_guest::exit`.
//! - `peer-id`: prints its host's peer id to stdout (proves RPC works).
//! - `export-then-exit MS`: exports a capability (a pubsub topic), then
//!   exits with 1 after MS milliseconds.
//! - `anchor-flood [NAME]`: sets 1 MiB values under `/<its host>/NAME/`
//!   (default `flood`) until
//!   the host refuses one, then prints how many it set and why.
//! - `channel-flood [hold]`, `subscribe-hold TOPIC`, `pubsub-flood TOPIC
//!   MIB`, `publish-flood TOPIC N KIB`, `call-flood N SECONDS`: flood the
//!   host's channel, subscription and waiting-publish budgets and its calls
//!   in flight; see [`flood`].
//! - grant commands (`try-everything`, `show-grants`, `write-file`,
//!   `read-file`, `trap-once`, `hold-grant`): see [`grants`].
//! - as a crawler worker (`crawler.wasm workers N --rom - < misbehave.wasm`,
//!   which passes a worker's arguments and grants): tries the host's
//!   authority it was not granted, see [`grants::try_as_crawler_worker`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod flood;
mod grants;

use std::hint::black_box;

const USAGE: &str = "usage: ww run misbehave.wasm COMMAND
  trap | spin | spin-clock | hog [MIB] | fill | open-flood | exit N | peer-id | export-then-exit MS | anchor-flood [NAME]
  channel-flood [hold] | subscribe-hold TOPIC | pubsub-flood TOPIC MIB
  (see rom/misbehave/src/main.rs)";

fn main() {
    ww_guest::run(|env| async move {
        if ww_guest::wants_help(&env.args) {
            println!("{USAGE}");
            return Ok(());
        }
        let command = env.args.first().map(String::as_str).unwrap_or("");
        match command {
            "trap" => {
                #[cfg(target_arch = "wasm32")]
                core::arch::wasm32::unreachable();
                #[cfg(not(target_arch = "wasm32"))]
                unreachable!();
            }
            "spin" => {
                let mut counter: u64 = 0;
                loop {
                    counter = black_box(counter.wrapping_add(1));
                }
            }
            "spin-clock" => {
                let started = std::time::Instant::now();
                loop {
                    black_box(started.elapsed());
                }
            }
            "hog" => {
                let hold_mib: Option<usize> = env.args.get(1).and_then(|mib| mib.parse().ok());
                let mut chunks: Vec<Vec<u8>> = Vec::new();
                loop {
                    if hold_mib.is_some_and(|mib| chunks.len() * 16 >= mib) {
                        eprintln!("held {} MiB", chunks.len() * 16);
                        loop {
                            std::thread::sleep(std::time::Duration::from_secs(3600));
                        }
                    }
                    // Touch every page so the memory is really used.
                    chunks.push(black_box(vec![1u8; 16 * 1024 * 1024]));
                    eprintln!("holding {} MiB", chunks.len() * 16);
                }
            }
            "fill" => {
                let chunk = vec![7u8; 1024 * 1024];
                for number in 0u64.. {
                    std::fs::write(format!("/data/fill-{number}"), &chunk)?;
                    if number % 16 == 15 {
                        eprintln!("wrote {} MiB", number + 1);
                    }
                }
                Ok(())
            }
            "open-flood" => {
                std::fs::write("/data/flood", b"1")?;
                let mut files = Vec::new();
                loop {
                    files.push(std::fs::File::open("/data/flood")?);
                    if files.len().is_multiple_of(256) {
                        eprintln!("holding {} open files", files.len());
                    }
                }
            }
            "exit" => {
                let code: u8 = env
                    .args
                    .get(1)
                    .and_then(|code| code.parse().ok())
                    .unwrap_or(3);
                // Half the codes return `ExitCode`, half call `exit`: both
                // paths must carry the whole code to `ww run`.
                if code.is_multiple_of(2) {
                    return Err(ww_guest::ExitCode(code).into());
                }
                ww_guest::exit(code);
            }
            "peer-id" => {
                let response = env.host.peer_id_request().send().promise.await?;
                println!("peer id: {}", response.get()?.get_peer_id()?.to_str()?);
                Ok(())
            }
            "anchor-flood" => {
                let peer = ww_guest::ww_api::ops::peer_id(&env.host).await?;
                let root = env.host.root_request().send().pipeline.get_anchor();
                let name = env.args.get(1).map_or("flood", String::as_str);
                let value = vec![7u8; 1024 * 1024];
                // Four times the host's whole tree budget: a host without
                // one would take it all.
                for mib in 0..1024 {
                    let at = format!("/{peer}/{name}/{mib}");
                    if let Err(err) = ww_guest::ww_api::ops::set_data(&root, &at, &value).await {
                        println!("refused after {mib} MiB: {err}");
                        return Ok(());
                    }
                }
                anyhow::bail!("anchored 1024 MiB and was never refused")
            }
            "call-flood" => {
                let calls = env.args.get(1).and_then(|n| n.parse().ok()).unwrap_or(20_000);
                let secs = env.args.get(2).and_then(|s| s.parse().ok()).unwrap_or(30);
                flood::call_flood(&env.host, calls, std::time::Duration::from_secs(secs)).await
            }
            "channel-flood" => {
                let hold = env.args.get(1).is_some_and(|arg| arg == "hold");
                flood::channel_flood(&env.host, hold).await
            }
            "subscribe-hold" | "pubsub-flood" => {
                let Some(topic) = env.args.get(1) else {
                    anyhow::bail!("{command} needs a TOPIC");
                };
                if command == "subscribe-hold" {
                    flood::subscribe_hold(&env.host, topic).await
                } else {
                    let mib = env.args.get(2).and_then(|mib| mib.parse().ok()).unwrap_or(256);
                    flood::pubsub_flood(&env.host, topic, mib).await
                }
            }
            "publish-flood" => {
                let Some(topic) = env.args.get(1) else {
                    anyhow::bail!("{command} needs a TOPIC");
                };
                let count = env.args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1_000);
                let kib = env.args.get(3).and_then(|n| n.parse().ok()).unwrap_or(256);
                flood::publish_flood(&env.host, topic, count, kib).await
            }
            "export-then-exit" => {
                let ms: u64 = env.args.get(1).and_then(|ms| ms.parse().ok()).unwrap_or(500);
                let pubsub = env.host.pubsub_request().send().pipeline.get_pubsub();
                let mut join = pubsub.join_request();
                join.get().set_topic("doomed");
                env.export(join.send().pipeline.get_topic());
                ww_guest::sleep(std::time::Duration::from_millis(ms)).await;
                anyhow::bail!("exiting on purpose after {ms} ms")
            }
            "try-everything" => {
                let victim = env.args.get(1).and_then(|pid| pid.parse().ok()).unwrap_or(0);
                let path = env.args.get(2).map_or("victim", String::as_str);
                grants::try_everything(&env.host, victim, path).await
            }
            "show-grants" => grants::show_grants(&env.host).await,
            "send-payload" => {
                let Some(peer) = env.args.get(1) else {
                    anyhow::bail!("send-payload needs the PEER whose target channel to send to");
                };
                grants::send_payload(&env.host, peer).await
            }
            "write-file" => grants::write_file(env.args.get(1).map_or("", String::as_str)),
            "read-file" => grants::read_file(&env.host).await,
            "trap-once" | "hold-grant" => {
                let Some(name) = env.args.get(1) else {
                    anyhow::bail!("{command} needs the NAME of a data grant");
                };
                if command == "trap-once" {
                    grants::trap_once(&env.host, name).await
                } else {
                    grants::hold_grant(&env.host, name).await
                }
            }
            // Spawned by `crawler.wasm workers --rom -`: the arguments are
            // a worker's (CRAWL RESULTS NAME ...), and it holds a worker's
            // grants.
            _ if ww_guest::ww_api::ops::grant_data(&env.host, "results-token")
                .await?
                .is_some() =>
            {
                grants::try_as_crawler_worker(&env.host).await
            }
            other => anyhow::bail!(
                "unknown command {other:?}; use trap, spin, hog, exit N, peer-id, export-then-exit MS, anchor-flood, channel-flood, subscribe-hold, pubsub-flood, or a grant command (rom/misbehave/src/grants.rs)"
            ),
        }
    })
}
