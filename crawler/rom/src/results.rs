//! `results --jsonl -` or `--warc -`: every fetched URL once, read without
//! consuming.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use anyhow::bail;
use queue::crawl::CrawlState;
use raft_client::{Group, GuestRuntime};
use worker_sdk::record::ResultRecord;

use crate::Names;
use ww_guest::args::Args;

pub const USAGE: &str =
    "usage: ww run crawler.wasm [--crawl NAME] results (--jsonl - | --warc -) [--after ID] [--follow]
Prints every result record of the crawl on stdout, each canonical URL once
(the first record of a URL fetched twice, e.g. after a worker died before
completing it): --jsonl as one JSON line each; --warc as WARC/1.1, a
warcinfo record and then a request and a response record per URL (see
docs/crawler.md). Records are read, not consumed, so the export can be
repeated. A ROM cannot write host files: redirect stdout
(`... results --warc - > results.warc`). --after ID resumes after the
record id printed last on stderr. --follow keeps printing records as workers
append them, and returns once the crawl is done or stopped and every record
is out (or when interrupted: then resume with --after).";

/// The export formats.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    JsonLines,
    Warc,
}

/// Records read per peek (each is at most ~70 KiB; a reply is capped at
/// 4 MiB).
const PEEK_RECORDS: u32 = 48;
/// How long `--follow` waits before peeking again once it has caught up.
const FOLLOW_POLL_MS: u64 = 500;

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
    let follow = args.flag("--follow");
    let session = group.session();
    let client = queue::Client::new(&session);
    // 16 bytes of each URL's hash, not the URL: a 4 M-page crawl's export
    // then holds 64 MiB, not the URLs' bytes.
    let mut seen: HashSet<[u8; 16]> = HashSet::new();
    let (mut printed, mut duplicates) = (0u64, 0u64);
    let mut out = std::io::stdout().lock();
    if format == Format::Warc {
        out.write_all(&worker_sdk::warc::warcinfo(
            &names.crawl,
            ww_guest::unix_time_ms(),
        ))?;
    }
    // Following: whether the crawl was over when the last peek began. A
    // record is appended before its URL completes, so once the crawl is
    // done one more pass reads everything.
    let mut last_pass = !follow;
    loop {
        let page = client.peek(&names.results, after, PEEK_RECORDS).await?;
        let Some(last) = page.last() else {
            if last_pass {
                break;
            }
            out.flush()?;
            let status = client.crawl_status(&names.crawl).await?;
            last_pass = crate::control::is_done(&status) || status.state == CrawlState::Stopped;
            if !last_pass {
                ww_guest::sleep(Duration::from_millis(FOLLOW_POLL_MS)).await;
            }
            continue;
        };
        after = Some(last.id);
        for message in &page {
            let record: ResultRecord = match serde_json::from_slice(&message.body) {
                Ok(record) => record,
                Err(err) => {
                    eprintln!("record {} is not JSON ({err}); skipped", message.id);
                    continue;
                }
            };
            if !seen.insert(url_key(&record.url)) {
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
        if follow {
            // A reader of a pipe sees each page as it comes.
            out.flush()?;
        }
    }
    out.flush()?;
    eprintln!(
        "exported {printed} records ({duplicates} duplicates skipped); last record id {}",
        after.map_or_else(|| "none".to_owned(), |id| id.to_string())
    );
    Ok(())
}

fn url_key(url: &str) -> [u8; 16] {
    let hash = blake3::hash(url.as_bytes());
    let mut key = [0; 16];
    key.copy_from_slice(&hash.as_bytes()[..16]);
    key
}
