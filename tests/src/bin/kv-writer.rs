//! One native client process for the end-to-end tests: connects to a group
//! through a host, says how many replicas it reaches directly, then puts
//! `COUNT` keys `PREFIX-n` one after another and prints each outcome.
//!
//! Usage: `kv-writer ADDR VERSION PREFIX COUNT`. Prints `direct N`, then one
//! line per put: `acked KEY` or `unknown KEY` (the put failed: it may or
//! may not have applied). Each value is `value of KEY`.

use std::io::Write;

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, version, prefix, count] = args.as_slice() else {
        anyhow::bail!("usage: kv-writer ADDR VERSION PREFIX COUNT");
    };
    let addr: libp2p::Multiaddr = addr.parse().context("ADDR")?;
    let count: usize = count.parse().context("COUNT")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let group = raft_client::native::connect(std::slice::from_ref(&addr), version).await?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "direct {}", group.direct_replicas())?;
        let session = group.session();
        let client = queue::Client::new(&session);
        for n in 0..count {
            let key = format!("{prefix}-{n:05}");
            let value = format!("value of {key}");
            let outcome = match client.put(key.as_bytes(), value.as_bytes()).await {
                Ok(_) => "acked",
                Err(err) => {
                    eprintln!("put {key}: {err}");
                    "unknown"
                }
            };
            writeln!(out, "{outcome} {key}")?;
            out.flush()?;
        }
        Ok(())
    })
}
