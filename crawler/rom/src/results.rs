//! `results --jsonl -` or `--warc -`: every fetched URL once, read without
//! consuming.

use std::collections::HashSet;
use std::io::Write;

use anyhow::bail;
use raft_client::{Group, GuestRuntime};
use worker_sdk::record::ResultRecord;

use crate::Names;
use ww_guest::args::Args;

pub const USAGE: &str =
    "usage: ww run crawler.wasm [--crawl NAME] results (--jsonl - | --warc -) [--after ID]
Prints every result record of the crawl on stdout, each canonical URL once
(the first record of a URL fetched twice, e.g. after a worker died before
completing it): --jsonl as one JSON line each; --warc as WARC/1.1, a
warcinfo record and then a request and a response record per URL (see
docs/crawler.md). Records are read, not consumed, so the export can be
repeated. A ROM cannot write host files: redirect stdout
(`... results --warc - > results.warc`). --after ID resumes after the
record id printed last on stderr.";

/// The export formats.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    JsonLines,
    Warc,
}

/// Records read per peek (each is at most ~70 KiB; a reply is capped at
/// 4 MiB).
const PEEK_RECORDS: u32 = 48;

pub async fn export(
    group: &Group<GuestRuntime>,
    names: &Names,
    args: &mut Args,
) -> anyhow::Result<()> {
    let format = match (args.option("--jsonl"), args.option("--warc")) {
        (Some(_), Some(_)) => bail!("results takes one of --jsonl - and --warc -\n{USAGE}"),
        (Some(target), None) => (Format::JsonLines, target),
        (None, Some(target)) => (Format::Warc, target),
        (None, None) => bail!("results needs --jsonl - or --warc -\n{USAGE}"),
    };
    let format = match format {
        (format, target) if target == "-" => format,
        (format, file) => {
            let flag = if format == Format::Warc {
                "--warc"
            } else {
                "--jsonl"
            };
            bail!("a ROM cannot write host files; use `{flag} -` and redirect stdout to {file}")
        }
    };
    let mut after: Option<u64> = args.parsed("--after")?;
    let session = group.session();
    let client = queue::Client::new(&session);
    let mut seen = HashSet::new();
    let (mut printed, mut duplicates) = (0u64, 0u64);
    let mut out = std::io::stdout().lock();
    if format == Format::Warc {
        out.write_all(&worker_sdk::warc::warcinfo(
            &names.crawl,
            ww_guest::unix_time_ms(),
        ))?;
    }
    loop {
        let page = client.peek(&names.results, after, PEEK_RECORDS).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for message in &page {
            let record: ResultRecord = match serde_json::from_slice(&message.body) {
                Ok(record) => record,
                Err(err) => {
                    eprintln!("record {} is not JSON ({err}); skipped", message.id);
                    continue;
                }
            };
            if !seen.insert(record.url.clone()) {
                duplicates += 1;
                continue;
            }
            match format {
                Format::JsonLines => {
                    serde_json::to_writer(&mut out, &record)?;
                    out.write_all(b"\n")?;
                }
                Format::Warc => out.write_all(&worker_sdk::warc::exchange(&record))?,
            }
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
