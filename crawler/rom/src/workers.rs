//! `workers N`: a supervised fleet of worker ROMs, each holding only its
//! grants; and `worker-tokens`, the tokens they hold.

use std::time::Duration;

use anyhow::{bail, Context};
use raft_client::access::{Scope, Verbs};
use raft_client::{Group, GuestRuntime};
use serde_json::json;
use ww_guest::ww_api::ww_capnp::RestartPolicy;
use ww_guest::ww_api::{executor, host, ops};

use crate::Names;
use ww_guest::args::Args;

/// The default worker ROM.
pub const WORKER: &[u8] = include_bytes!(env!("CRAWLER_WORKER_WASM"));

pub const USAGE: &str = "usage: ww run crawler.wasm [--crawl NAME] workers N [OPTIONS]
  --fetch-timeout-ms MS   a fetch's total timeout (default 10000, at most 30000)
  --user-agent UA         sent with every request and matched against robots.txt
  --batch N               URLs a worker leases at once (default 16)
  --lease-ms MS           a worker's URL lease (default 20000, at least 1500). A worker
                          extends its leases while it fetches; a dead worker's URLs
                          are fetched again when their lease expires
  --host PEER             place workers only on these hosts (repeatable); default: all
  --rom -                 run a custom worker ROM (built on worker-sdk) read from stdin,
                          e.g. `... workers 2 --rom - < title-worker.wasm`; default: the
                          embedded worker.wasm
Starts or stops workers until N run for the crawl, spread round-robin over the
cluster's hosts, restarted if they fail. Each worker holds only: a read-only view
of the Raft replicas, a token for enqueue, consume and read on the crawl, a token for
enqueue on its results topic, and an HTTP grant scoped to the crawl's domains
that obeys robots.txt. `workers 0` stops them all.";

pub const TOKENS_USAGE: &str = "usage: ww run crawler.wasm [--crawl NAME] worker-tokens [--json]
Mints and prints (hex) the two access tokens a worker of the crawl is granted:
`crawl` (enqueue, consume, read on the crawl) and `results` (enqueue on the results topic).";

/// The longest total fetch timeout a worker's grant gets. (A worker
/// extends its leases while it fetches, so the lease need not outlast it.)
const FETCH_TIMEOUT_MS_MAX: u32 = 30_000;
const FETCH_TIMEOUT_MS_DEFAULT: u32 = 10_000;
const CONNECT_TIMEOUT_MS: u32 = 5_000;
/// The grant waits this long at most for an origin's next slot.
const RATE_WAIT_MAX_MS: u32 = 10_000;
const BODY_BYTES_MAX: u32 = 2 * 1024 * 1024;
const REDIRECTS_MAX: u32 = 5;
const USER_AGENT_DEFAULT: &str = "ww-crawler/0.1";
/// How long a host gets to list its processes (a dead host must not
/// stall `status`).
const PS_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest custom worker ROM read from stdin.
const ROM_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Process states of a worker that is (or will be again) running.
const LIVE_STATES: &[&str] = &["starting", "running", "restarting"];

/// The scopes of a worker's two tokens: the frontier (offer outlinks,
/// lease, complete; read its status, so an idle worker polls with queries
/// rather than log entries) and the results topic (append only).
pub fn scopes(names: &Names) -> (Scope, Scope) {
    (
        Scope {
            verbs: Verbs::ENQUEUE
                .union(Verbs::CONSUME)
                .union(Verbs::READ_TOPIC),
            topics: Some(vec![names.crawl.clone()]),
        },
        Scope {
            verbs: Verbs::ENQUEUE,
            topics: Some(vec![names.results.clone()]),
        },
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub async fn tokens(
    group: &Group<GuestRuntime>,
    names: &Names,
    args: &mut Args,
) -> anyhow::Result<()> {
    let (crawl_scope, results_scope) = scopes(names);
    let crawl = group.mint(crawl_scope).await.map_err(anyhow::Error::msg)?;
    let results = group
        .mint(results_scope)
        .await
        .map_err(anyhow::Error::msg)?;
    if args.flag("--json") {
        println!(
            "{}",
            json!({ "crawl": hex(&crawl), "results": hex(&results) })
        );
    } else {
        println!("crawl {}\nresults {}", hex(&crawl), hex(&results));
    }
    Ok(())
}

/// A worker process found on some host.
struct Running {
    peer: String,
    id: u64,
    name: String,
}

/// A worker ROM from stdin (ROM stdio is the user's under `ww run`).
fn read_rom() -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(ROM_BYTES_MAX as u64 + 1)
        .read_to_end(&mut bytes)
        .context("reading the worker ROM from stdin")?;
    if bytes.len() > ROM_BYTES_MAX {
        bail!("the worker ROM on stdin is over {ROM_BYTES_MAX} bytes");
    }
    if !bytes.starts_with(b"\0asm") {
        bail!("stdin is not a WebAssembly component (no \\0asm header)");
    }
    Ok(bytes)
}

fn executor_of(host: &host::Client, peer: &str) -> executor::Client {
    let mut dial = host.dial_request();
    dial.get().set_peer_id(peer);
    dial.send()
        .pipeline
        .get_host()
        .executor_request()
        .send()
        .pipeline
        .get_executor()
}

/// The crawl's workers alive on the cluster's hosts (a host that does not
/// answer is reported on stderr and skipped).
async fn running(host: &host::Client, names: &Names) -> anyhow::Result<Vec<Running>> {
    let prefix = worker_prefix(names);
    let mut found = Vec::new();
    for peer in ops::hosts(host).await? {
        let listed = executor_of(host, &peer).ps_request().send().promise;
        let listed = match ww_guest::timeout(PS_TIMEOUT, listed).await {
            Ok(Ok(listed)) => listed,
            Ok(Err(err)) => {
                eprintln!("host {peer} did not list its processes: {err}");
                continue;
            }
            Err(_) => {
                eprintln!("host {peer} did not list its processes within {PS_TIMEOUT:?}");
                continue;
            }
        };
        for info in listed.get()?.get_processes()?.iter() {
            let name = ops::text(info.get_name())?;
            let state = ops::text(info.get_state())?;
            if name.starts_with(&prefix) && LIVE_STATES.contains(&state.as_str()) {
                found.push(Running {
                    peer: peer.clone(),
                    id: info.get_id(),
                    name,
                });
            }
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

fn worker_prefix(names: &Names) -> String {
    format!("crawler-{}-worker-", names.crawl)
}

/// The crawl's workers, per host, for `status`.
pub async fn census(host: &host::Client, names: &Names) -> anyhow::Result<Vec<(String, String)>> {
    Ok(running(host, names)
        .await?
        .into_iter()
        .map(|worker| (worker.name, worker.peer))
        .collect())
}

pub async fn workers(
    host: &host::Client,
    group: &Group<GuestRuntime>,
    names: &Names,
    args: &mut Args,
) -> anyhow::Result<()> {
    let fetch_timeout_ms: u32 = args
        .parsed("--fetch-timeout-ms")?
        .unwrap_or(FETCH_TIMEOUT_MS_DEFAULT);
    if fetch_timeout_ms == 0 || fetch_timeout_ms > FETCH_TIMEOUT_MS_MAX {
        bail!("--fetch-timeout-ms must be 1 to {FETCH_TIMEOUT_MS_MAX}");
    }
    let user_agent = args
        .option("--user-agent")
        .unwrap_or_else(|| USER_AGENT_DEFAULT.to_owned());
    let batch: Option<u32> = args.parsed("--batch")?;
    let lease_ms: Option<u64> = args.parsed("--lease-ms")?;
    if let Some(lease_ms) = lease_ms {
        if lease_ms < worker_sdk::LEASE_MS_MIN {
            bail!(
                "--lease-ms must be at least {} (workers extend leases every third of it)",
                worker_sdk::LEASE_MS_MIN
            );
        }
    }
    let mut placement = Vec::new();
    while let Some(peer) = args.option("--host") {
        placement.push(peer);
    }
    let custom = match args.option("--rom").as_deref() {
        None => None,
        Some("-") => Some(read_rom()?),
        Some(file) => {
            bail!("a ROM cannot read host files; pass the worker on stdin: `--rom - < {file}`")
        }
    };
    let rom: &[u8] = custom.as_deref().unwrap_or(WORKER);
    let wanted: usize = args
        .required("N")?
        .parse()
        .context("N must be a number of workers")?;
    if let Some(extra) = args.next() {
        bail!("unexpected argument {extra:?}\n{USAGE}");
    }
    let mut alive = running(host, names).await?;
    while alive.len() > wanted {
        let Some(worker) = alive.pop() else { break };
        let mut kill = executor_of(host, &worker.peer).kill_request();
        kill.get().set_id(worker.id);
        kill.send()
            .promise
            .await
            .with_context(|| format!("stopping {} on {}", worker.name, worker.peer))?;
        println!(
            "{}",
            json!({ "stopped": worker.name, "host": worker.peer, "pid": worker.id })
        );
    }
    if alive.len() == wanted {
        eprintln!("{wanted} workers running");
        return Ok(());
    }
    let session = group.session();
    let client = queue::Client::new(&session);
    let config = client
        .crawl_status(&names.crawl)
        .await
        .with_context(|| format!("crawl {} (seed it first)", names.crawl))?
        .config;
    let (crawl_scope, results_scope) = scopes(names);
    let crawl_token = group.mint(crawl_scope).await.map_err(anyhow::Error::msg)?;
    let results_token = group
        .mint(results_scope)
        .await
        .map_err(anyhow::Error::msg)?;
    let mut peers = ops::hosts(host).await?;
    peers.sort();
    if !placement.is_empty() {
        if let Some(unknown) = placement.iter().find(|peer| !peers.contains(peer)) {
            bail!("--host {unknown} is not in the cluster view");
        }
        peers = placement;
    }
    if peers.is_empty() {
        bail!("the cluster view lists no host");
    }
    let prefix = worker_prefix(names);
    let taken: Vec<String> = alive.iter().map(|worker| worker.name.clone()).collect();
    let mut index = 0usize;
    let mut spawned = 0usize;
    while alive.len() + spawned < wanted {
        let name = format!("{prefix}{index}");
        index += 1;
        if taken.contains(&name) {
            continue;
        }
        // Spread: worker i goes to host i mod hosts.
        let peer = &peers[(index - 1) % peers.len()];
        let mut worker_args = vec![names.crawl.clone(), names.results.clone(), name.clone()];
        if let Some(batch) = batch {
            worker_args.extend(["--batch".to_owned(), batch.to_string()]);
        }
        if let Some(lease_ms) = lease_ms {
            worker_args.extend(["--lease-ms".to_owned(), lease_ms.to_string()]);
        }
        let (_, pid) = ops::spawn_on(host, peer, |mut spec| {
            spec.reborrow().init_rom().set_bytes(rom);
            {
                let mut list = spec.reborrow().init_args(worker_args.len() as u32);
                for (at, arg) in worker_args.iter().enumerate() {
                    list.set(at as u32, arg);
                }
            }
            spec.set_name(&name);
            spec.set_restart(RestartPolicy::OnFailure);
            // Grants only: no root, no executor, no pubsub, no dial.
            spec.set_host(false);
            let mut grants = spec.init_grants(4);
            {
                let mut grant = grants.reborrow().get(0);
                grant.set_name(worker_sdk::GRANT_REPLICAS);
                grant.set_read_path(format!("raft/{}/request", names.version));
            }
            {
                let mut grant = grants.reborrow().get(1);
                grant.set_name(worker_sdk::GRANT_CRAWL_TOKEN);
                grant.set_data(&crawl_token);
            }
            {
                let mut grant = grants.reborrow().get(2);
                grant.set_name(worker_sdk::GRANT_RESULTS_TOKEN);
                grant.set_data(&results_token);
            }
            let mut grant = grants.get(3);
            grant.set_name(worker_sdk::GRANT_HTTP);
            let mut scope = grant.init_http();
            {
                let mut schemes = scope.reborrow().init_schemes(2);
                schemes.set(0, "http");
                schemes.set(1, "https");
            }
            {
                let mut domains = scope
                    .reborrow()
                    .init_domains(config.allowed_domains.len() as u32);
                for (at, domain) in config.allowed_domains.iter().enumerate() {
                    domains.set(at as u32, domain);
                }
            }
            scope.set_allow_private(config.allow_private);
            scope.set_connect_timeout_ms(CONNECT_TIMEOUT_MS.min(fetch_timeout_ms));
            scope.set_first_byte_timeout_ms(fetch_timeout_ms);
            scope.set_total_timeout_ms(fetch_timeout_ms);
            scope.set_body_bytes_max(BODY_BYTES_MAX);
            scope.set_redirects_max(REDIRECTS_MAX);
            scope.set_user_agent(&user_agent);
            scope.set_obey_robots(true);
            scope.set_rate_wait_max_ms(RATE_WAIT_MAX_MS);
        })
        .await
        .with_context(|| format!("spawning {name} on {peer}"))?;
        println!("{}", json!({ "started": name, "host": peer, "pid": pid }));
        spawned += 1;
    }
    eprintln!("{wanted} workers running");
    Ok(())
}
