//! The crawler ROM: `ww run crawler.wasm SUBCOMMAND`.
//!
//! It drives a crawl whose frontier lives in a Raft queue group (deployed
//! with `raft.wasm deploy`): `seed` creates or extends the crawl, `workers`
//! runs a supervised fleet of worker ROMs (the embedded `worker.wasm`)
//! spread over the cluster, `status` reports progress, and `results`
//! exports what was fetched. Results go to stdout, progress and errors to
//! stderr.

mod control;
mod results;
mod seed;
mod workers;

use raft_client::{Group, GuestRuntime};
use ww_guest::args::Args;

const USAGE: &str = "usage: ww run crawler.wasm [--version V] [--crawl NAME] SUBCOMMAND
  seed URL... [--allow DOMAIN]... [--allow-private] [--max-depth N] [--max-pages N]
       [--delay-ms N] [--concurrency-per-origin N] [--max-attempts N]
                         create the crawl (or extend it) and offer the seed URLs;
                         without --allow the seeds' hosts are the crawl's domains
  workers N [--fetch-timeout-ms MS] [--user-agent UA] [--batch N]
                         run N supervised workers spread over the cluster's hosts,
                         each granted only the crawl and its results; 0 stops them
  status [--json] [--watch]  frontier counts, counters, results and workers
  results --jsonl - | --warc - [--after ID] [--follow]
                         every fetched URL once, as JSON Lines or WARC on stdout
                         (repeatable: the results are read, not consumed;
                         --follow prints them as they come, until the crawl ends)
  pause | resume | stop  control the crawl
  worker-tokens [--json] the access tokens workers are granted (hex), for audits

The crawl defaults to `crawl`, its results topic is `<crawl>-results`, the Raft
group to `v1`. Each subcommand takes --help.";

/// The crawl's names: the crawl and its results topic.
#[derive(Clone, Debug)]
pub struct Names {
    /// The crawl.
    pub crawl: String,
    /// Its results topic.
    pub results: String,
    /// The Raft group version.
    pub version: String,
}

fn main() {
    ww_guest::run(|env| async move {
        if ww_guest::wants_help(&env.args) {
            println!("{USAGE}");
            return Ok(());
        }
        let mut args = Args::new(env.args.clone());
        let version = args.option("--version").unwrap_or_else(|| "v1".to_owned());
        let crawl = args.option("--crawl").unwrap_or_else(|| "crawl".to_owned());
        let names = Names {
            results: format!("{crawl}-results"),
            crawl,
            version,
        };
        let Some(command) = args.next() else {
            anyhow::bail!("{USAGE}");
        };
        if args.flag("--help") || args.flag("-h") {
            println!("{}", help(&command).unwrap_or(USAGE));
            return Ok(());
        }
        let group = Group::connect(env.host.clone(), &names.version, GuestRuntime).await?;
        if group.replicas().is_empty() {
            anyhow::bail!(
                "no replica of Raft group {} is anchored in the cluster; run `ww run raft.wasm deploy` first",
                names.version
            );
        }
        let result = match command.as_str() {
            "seed" => seed::seed(&group, &names, &mut args).await,
            "workers" => workers::workers(&env.host, &group, &names, &mut args).await,
            "worker-tokens" => workers::tokens(&group, &names, &mut args).await,
            "status" => control::status(&env.host, &group, &names, &mut args).await,
            "results" => results::export(&group, &names, &mut args).await,
            "pause" | "resume" | "stop" => control::control(&group, &names, &command).await,
            other => anyhow::bail!("unknown subcommand {other:?}\n{USAGE}"),
        };
        ww_guest::exit_if_not_permitted(result)
    })
}

fn help(command: &str) -> Option<&'static str> {
    Some(match command {
        "seed" => seed::USAGE,
        "workers" => workers::USAGE,
        "worker-tokens" => workers::TOKENS_USAGE,
        "status" => control::STATUS_USAGE,
        "results" => results::USAGE,
        "pause" | "resume" | "stop" => control::CONTROL_USAGE,
        _ => return None,
    })
}
