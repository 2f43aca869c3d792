//! `results --jsonl -`: every fetched URL once, read without consuming.

use std::collections::HashSet;
use std::io::Write;

use anyhow::bail;
use raft_client::{Group, GuestRuntime};

use crate::Names;
use ww_guest::args::Args;

pub const USAGE: &str = "usage: ww run crawler.wasm [--crawl NAME] results --jsonl - [--after ID]
Prints every result record of the crawl as one JSON line on stdout, each
canonical URL once (the first record of a URL fetched twice, e.g. after a
worker died before completing it). Records are read, not consumed, so the
export can be repeated. A ROM cannot write host files: redirect stdout
(`... results --jsonl - > results.jsonl`). --after ID resumes after the
record id printed last on stderr.";

/// Records read per peek (each is at most ~70 KiB; a reply is capped at
/// 4 MiB).
const PEEK_RECORDS: u32 = 48;

pub async fn export(
    group: &Group<GuestRuntime>,
    names: &Names,
    args: &mut Args,
) -> anyhow::Result<()> {
    match args.option("--jsonl").as_deref() {
        Some("-") => {}
        Some(file) => {
            bail!("a ROM cannot write host files; use `--jsonl -` and redirect stdout to {file}")
        }
        None => bail!("results needs --jsonl -\n{USAGE}"),
    }
    let mut after: Option<u64> = args.parsed("--after")?;
    let session = group.session();
    let client = queue::Client::new(&session);
    let mut seen = HashSet::new();
    let (mut printed, mut duplicates) = (0u64, 0u64);
    let mut out = std::io::stdout().lock();
    loop {
        let page = client.peek(&names.results, after, PEEK_RECORDS).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for message in &page {
            let record: serde_json::Value = match serde_json::from_slice(&message.body) {
                Ok(record) => record,
                Err(err) => {
                    eprintln!("record {} is not JSON ({err}); skipped", message.id);
                    continue;
                }
            };
            let url = record["url"].as_str().unwrap_or_default().to_owned();
            if !seen.insert(url) {
                duplicates += 1;
                continue;
            }
            serde_json::to_writer(&mut out, &record)?;
            out.write_all(b"\n")?;
            printed += 1;
        }
    }
    out.flush()?;
    eprintln!(
        "exported {printed} records ({duplicates} duplicates skipped); last record id {}",
        after.map_or_else(|| "none".to_owned(), |id| id.to_string())
    );
    Ok(())
}
