//! `seed`: create (or extend) a crawl and offer its seed URLs.

use anyhow::{bail, Context};
use queue::crawl::{Link, Offered};
use queue::{ClientError, QueueError, TopicConfig};
use raft_client::{Group, GuestRuntime};
use serde_json::json;

use crate::Names;
use ww_guest::args::Args;

pub const USAGE: &str = "usage: ww run crawler.wasm [--crawl NAME] seed URL... [OPTIONS]
  --allow DOMAIN             a domain the crawl may visit (and its subdomains); repeatable.
                             Default: the seed URLs' hosts
  --allow-private            allow loopback and private addresses (local sites)
  --max-depth N              deepest link depth (seeds are 0)
  --max-pages N              the page budget
  --delay-ms N               least time between fetch starts on one origin
  --concurrency-per-origin N most URLs of one origin fetched at once
  --max-attempts N           failed fetches before a URL is dead
Creates the crawl and its results topic if they do not exist, else applies the
options given to the existing crawl; then offers the URLs. Prints one JSON line
per URL: {\"url\", \"offered\"}.";

/// The results topic holds at most this many records.
const RESULTS_LENGTH_MAX: u64 = 1_000_000;

pub async fn seed(
    group: &Group<GuestRuntime>,
    names: &Names,
    args: &mut Args,
) -> anyhow::Result<()> {
    let mut allowed = Vec::new();
    while let Some(domain) = args.option("--allow") {
        allowed.push(domain.to_ascii_lowercase());
    }
    let allow_private = args.flag("--allow-private");
    let max_depth: Option<u32> = args.parsed("--max-depth")?;
    let max_pages: Option<u64> = args.parsed("--max-pages")?;
    let delay_ms: Option<u64> = args.parsed("--delay-ms")?;
    let concurrency: Option<u32> = args.parsed("--concurrency-per-origin")?;
    let max_attempts: Option<u32> = args.parsed("--max-attempts")?;
    let urls = args.rest();
    if let Some(unknown) = urls.iter().find(|url| url.starts_with("--")) {
        bail!("unknown option {unknown:?}\n{USAGE}");
    }
    if urls.is_empty() {
        bail!("seed needs at least one URL\n{USAGE}");
    }
    let mut seed_hosts = Vec::new();
    for text in &urls {
        let url = url::Url::parse(text).with_context(|| format!("seed {text:?} is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("seed {text:?} is not an http(s) URL");
        }
        let host = url
            .host_str()
            .with_context(|| format!("seed {text:?} has no host"))?;
        // An IPv6 literal keeps its brackets in host_str; scopes want it bare.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if !seed_hosts.contains(&host) {
            seed_hosts.push(host);
        }
    }
    let session = group.session();
    let client = queue::Client::new(&session);
    let crawl = &names.crawl;
    let existing = match client.crawl_status(crawl).await {
        Ok(status) => Some(status.config),
        Err(ClientError::Queue(QueueError::NoSuchCrawl { .. })) => None,
        Err(err) => return Err(err.into()),
    };
    let mut config = existing.clone().unwrap_or_default();
    if !allowed.is_empty() {
        config.allowed_domains = allowed;
    } else if existing.is_none() {
        config.allowed_domains = seed_hosts;
    }
    config.allow_private |= allow_private;
    apply(&mut config.max_depth, max_depth);
    apply(&mut config.max_pages, max_pages);
    apply(&mut config.default_delay_ms, delay_ms);
    apply(&mut config.concurrency_per_origin, concurrency);
    apply(&mut config.max_attempts, max_attempts);
    match existing {
        None => {
            client.create_crawl(crawl, config.clone()).await?;
            eprintln!("created crawl {crawl}: {config:?}");
        }
        Some(old) if old != config => {
            client.configure_crawl(crawl, config.clone()).await?;
            eprintln!("reconfigured crawl {crawl}: {config:?}");
        }
        Some(_) => {}
    }
    let topic = TopicConfig {
        // Records are never leased: the export reads them with peek.
        max_deliveries: 0,
        length_max: RESULTS_LENGTH_MAX,
        ..TopicConfig::default()
    };
    match client.create_topic(&names.results, topic).await {
        Ok(true) => eprintln!("created results topic {}", names.results),
        // Created by an earlier seed (perhaps reconfigured since): keep it.
        Ok(false) | Err(ClientError::Queue(QueueError::TopicExists { .. })) => {}
        Err(err) => return Err(err.into()),
    }
    let links: Vec<Link> = urls.iter().map(Link::seed).collect();
    let offered = client.offer(crawl, &links).await?;
    for (url, offered) in urls.iter().zip(offered) {
        let what = match offered {
            Offered::Enqueued { id, url } => json!({ "enqueued": { "id": id, "url": url } }),
            other => json!(format!("{other:?}")),
        };
        println!("{}", json!({ "url": url, "offered": what }));
    }
    Ok(())
}

fn apply<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}
