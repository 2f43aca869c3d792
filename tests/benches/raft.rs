//! `make bench-raft`: a Raft group on real `ww start` hosts (release build)
//! on loopback, driven by closed-loop clients through the native client.
//!
//! Each run starts 4 hosts, deploys 3 replicas from a client attached to
//! host 0 (`ww run --peer <host 0> target/rom/raft.wasm deploy`; host 0 gets
//! no replica), connects the native client to host 0, runs one workload and
//! stops the hosts. Every client is a `Session` of one shared `Group` (one
//! command in flight per session); the group batches concurrent requests to
//! the same replica into one channel message.
//!
//! Workloads (the same as for etcd, NATS and RabbitMQ):
//!
//! - `write`: `put` of 256-byte values to random keys among 100,000; a
//!   warmup (2 s), then `--duration` seconds measured.
//! - `read`: linearizable `get` of 1,000 preloaded keys (256-byte values);
//!   warmup, then measured.
//! - `queue`: 20,000 messages of 256 bytes enqueued by `--clients`
//!   producers (one message per enqueue) while `--clients` consumers lease
//!   up to 16 at a time and ack each lease's messages in one `ack`. It
//!   ends when every message is acked.
//!
//! Usage (`cargo bench -p ww-tests --bench raft -- ARGS`):
//!
//! ```text
//! --workload write|read|queue --clients N [--duration S] [--warmup S] [--out FILE.json]
//! matrix [--runs R] [--duration S]      # write and read at 1, 16, 128 clients, and queue
//! scale [--groups "1 2 4 8"] [--replicas "3 5 9"] [--clients N] [--duration S]
//! ```
//!
//! A single run prints its JSON on stdout and writes it to `--out`
//! (default `target/bench/<workload>-<clients>.json`). `matrix` writes each
//! run's JSON to `target/bench/raft/` and prints a markdown summary (medians
//! over runs) for `scripts/bench-record.sh`. Progress goes to stderr.
//! Nothing here asserts a figure.
//!
//! `RAFT_BENCH_ROM=path/to/raft.wasm` deploys another build of the Raft ROM
//! (to compare before and after a change).
//!
//! fsyncs and entries per fsync are deltas of the replicas' own counters
//! (`Group::status_all`) over the measured window; CPU is
//! `/proc/<pid>/task/*/schedstat` of each host (its guests included) and of
//! this driver.

// A benchmark that cannot run panics with a message; it is not host code.
#![allow(clippy::expect_used)]

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use raft_client::native::TokioRuntime;
use raft_client::proto::ReplicaStatus;
use raft_client::Group;
use serde_json::{json, Value};
use ww_tests::cluster::workspace_root;
use ww_tests::{cpu_ns, rom, Host};

#[path = "raft/rom_client.rs"]
mod rom_client;
#[path = "raft/scale.rs"]
mod scale;

const VALUE_BYTES: usize = 256;
const WRITE_KEYS: u64 = 100_000;
const READ_KEYS: u64 = 1_000;
const QUEUE_MESSAGES: u64 = 20_000;
const QUEUE_TOPIC: &str = "bench";
/// Most messages one consumer leases at once (its prefetch).
const LEASE_BATCH: u32 = 16;
/// Enqueues each producer keeps in flight by default (its publisher-confirm
/// window), each on its own session.
const DEFAULT_WINDOW: usize = 8;
/// How long an empty-handed consumer waits before leasing again.
const EMPTY_LEASE_PAUSE: Duration = Duration::from_millis(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Write,
    Read,
    Queue,
}

impl Workload {
    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "write" => Self::Write,
            "read" => Self::Read,
            "queue" => Self::Queue,
            other => bail!("unknown workload {other:?}: write, read or queue"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Write => "write",
            Self::Read => "read",
            Self::Queue => "queue",
        }
    }
}

struct Args {
    matrix: bool,
    scale: bool,
    /// A ROM client's route, relayed against direct.
    rom_client: bool,
    /// For `scale`: group counts to measure on four hosts.
    groups: Vec<usize>,
    /// For `scale`: sizes of one group to measure.
    replicas: Vec<usize>,
    workload: Option<Workload>,
    clients: usize,
    duration: Duration,
    warmup: Duration,
    out: Option<PathBuf>,
    runs: usize,
    window: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        matrix: false,
        scale: false,
        rom_client: false,
        groups: vec![1, 2, 4, 8],
        replicas: vec![3, 5, 9],
        workload: None,
        clients: 16,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        out: None,
        runs: 2,
        window: DEFAULT_WINDOW,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| {
            iter.next()
                .filter(|value| !value.is_empty())
                .with_context(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "matrix" => args.matrix = true,
            "scale" => args.scale = true,
            "rom-client" => args.rom_client = true,
            "--groups" => args.groups = counts(&value("--groups")?)?,
            "--replicas" => args.replicas = counts(&value("--replicas")?)?,
            "--workload" => args.workload = Some(Workload::parse(&value("--workload")?)?),
            "--clients" => args.clients = value("--clients")?.parse()?,
            "--duration" => args.duration = Duration::from_secs_f64(value("--duration")?.parse()?),
            "--warmup" => args.warmup = Duration::from_secs_f64(value("--warmup")?.parse()?),
            "--out" => args.out = Some(PathBuf::from(value("--out")?)),
            "--runs" => args.runs = value("--runs")?.parse::<usize>()?.max(1),
            "--window" => args.window = value("--window")?.parse::<usize>()?.max(1),
            // `cargo bench` passes --bench.
            "--bench" => {}
            other => bail!("unknown argument {other:?}"),
        }
    }
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if !args.matrix && !args.scale && !args.rom_client && args.workload.is_none() {
        bail!("give --workload write|read|queue, `matrix`, `scale` or `rom-client`");
    }
    Ok(args)
}

/// A space-separated list of counts ("1 2 4 8"); empty is none.
fn counts(list: &str) -> Result<Vec<usize>> {
    list.split_whitespace()
        .map(|count| {
            count
                .parse::<usize>()
                .with_context(|| format!("{count:?} is not a count"))
        })
        .collect()
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("raft bench: {err:#}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&runtime, async {
        if args.matrix {
            matrix(&args).await
        } else if args.scale {
            scale::scale(&args).await
        } else if args.rom_client {
            rom_client::rom_client(&args).await
        } else {
            single(&args).await
        }
    });
    if let Err(err) = result {
        eprintln!("raft bench failed: {err:#}");
        std::process::exit(1);
    }
}

async fn single(args: &Args) -> Result<()> {
    let workload = args.workload.context("no workload")?;
    let report = run(
        workload,
        args.clients,
        args.duration,
        args.warmup,
        args.window,
    )
    .await?;
    // `cargo bench` runs this in tests/: a relative path is taken from the
    // repository root.
    let out = workspace_root().join(args.out.clone().unwrap_or_else(|| {
        PathBuf::from("target/bench").join(format!("{}-{}.json", workload.name(), args.clients))
    }));
    write_json(&out, &report)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!("wrote {}", out.display());
    Ok(())
}

fn write_json(path: &Path, report: &Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_string_pretty(report)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

// ---------------------------------------------------------------------------
// The cluster

/// Four hosts with a deployed group; stopped (killed) on drop.
struct Cluster {
    hosts: Vec<Host>,
    _dir: tempfile::TempDir,
}

fn start_cluster() -> Result<Cluster> {
    // `RAFT_BENCH_ROM` measures another build of the Raft ROM (for
    // before/after comparisons).
    let raft_rom = std::env::var_os("RAFT_BENCH_ROM").map_or_else(|| rom("raft"), PathBuf::from);
    let (hosts, dir) =
        ww_tests::raft_rom::deployed_for_bench(&raft_rom).map_err(anyhow::Error::msg)?;
    Ok(Cluster { hosts, _dir: dir })
}

/// CPU of host 0 .. host 3 and of this driver, in ns.
fn cpu_sample(cluster: &Cluster) -> Vec<u64> {
    let mut sample: Vec<u64> = cluster
        .hosts
        .iter()
        .map(|host| cpu_ns(host.pid()))
        .collect();
    sample.push(cpu_ns(std::process::id()));
    sample
}

// ---------------------------------------------------------------------------
// Measurements

/// Latencies (µs) and counts of operations completed while `on`.
#[derive(Default)]
struct Recorder {
    on: Cell<bool>,
    latencies_us: RefCell<Vec<u64>>,
    errors: Cell<u64>,
    last_error: RefCell<String>,
}

impl Recorder {
    fn record<T, E: std::fmt::Display>(&self, started: Instant, result: &Result<T, E>) {
        if !self.on.get() {
            return;
        }
        match result {
            Ok(_) => self
                .latencies_us
                .borrow_mut()
                .push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)),
            Err(err) => {
                self.errors.set(self.errors.get() + 1);
                *self.last_error.borrow_mut() = err.to_string();
            }
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn latency_json(latencies: &[u64]) -> Value {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    json!({
        "p50_us": percentile(&sorted, 50.0),
        "p99_us": percentile(&sorted, 99.0),
        "p999_us": percentile(&sorted, 99.9),
        "max_us": sorted.last().copied().unwrap_or(0),
    })
}

/// A deterministic generator per client.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    fn value(&mut self) -> Vec<u8> {
        let mut value = Vec::with_capacity(VALUE_BYTES);
        while value.len() < VALUE_BYTES {
            value.extend_from_slice(&self.next().to_le_bytes());
        }
        value.truncate(VALUE_BYTES);
        value
    }
}

fn key(n: u64) -> Vec<u8> {
    format!("key-{n:06}").into_bytes()
}

/// The replicas' counters, by peer id.
async fn statuses(group: &Group<TokioRuntime>) -> Vec<ReplicaStatus> {
    group
        .status_all()
        .await
        .into_iter()
        .filter_map(|(_, status)| status.ok())
        .collect()
}

/// fsync figures over a window: `before` and `after` by peer id.
fn fsync_json(before: &[ReplicaStatus], after: &[ReplicaStatus], seconds: f64) -> Value {
    let mut fsyncs = 0;
    let mut entries = 0;
    let mut leader = json!(null);
    for end in after {
        let Some(start) = before.iter().find(|s| s.peer_id == end.peer_id) else {
            continue;
        };
        let replica_fsyncs = end.fsyncs.saturating_sub(start.fsyncs);
        let replica_entries = end
            .entries_persisted
            .saturating_sub(start.entries_persisted);
        fsyncs += replica_fsyncs;
        entries += replica_entries;
        if end.role == "leader" {
            let (a, b) = (&start.activity, &end.activity);
            let rounds = b.rounds.saturating_sub(a.rounds);
            let per_round =
                |x: u64, y: u64| round2(y.saturating_sub(x) as f64 / rounds.max(1) as f64);
            let request_messages = b.request_messages.saturating_sub(a.request_messages);
            leader = json!({
                "peer_id": end.peer_id,
                "fsyncs": replica_fsyncs,
                "entries": replica_entries,
                "term_changed": end.term != start.term,
                "rounds": rounds,
                "rounds_per_s": round2(rounds as f64 / seconds),
                "process_us_per_round": per_round(a.process_us, b.process_us),
                "slow_rounds_10ms": b.slow_rounds_10ms.saturating_sub(a.slow_rounds_10ms),
                "slow_rounds_100ms": b.slow_rounds_100ms.saturating_sub(a.slow_rounds_100ms),
                "request_messages": request_messages,
                "requests_per_message": round2(
                    b.requests.saturating_sub(a.requests) as f64 / request_messages.max(1) as f64
                ),
                "requests_per_round": per_round(a.requests, b.requests),
                "reply_messages_per_round": per_round(a.reply_messages, b.reply_messages),
                "snapshots_taken": b.snapshots_taken.saturating_sub(a.snapshots_taken),
                "envelopes_sent_per_round": per_round(start.envelopes_sent, end.envelopes_sent),
                "envelopes_sent_early_per_round": per_round(start.envelopes_sent_early, end.envelopes_sent_early),
            });
        }
    }
    let ratio = |entries: u64, fsyncs: u64| {
        if fsyncs == 0 {
            0.0
        } else {
            round2(entries as f64 / fsyncs as f64)
        }
    };
    let leader_fsyncs = leader["fsyncs"].as_u64().unwrap_or(0);
    let leader_entries = leader["entries"].as_u64().unwrap_or(0);
    json!({
        "fsyncs": fsyncs,
        "fsyncs_per_s": round2(fsyncs as f64 / seconds),
        "leader_fsyncs": leader_fsyncs,
        "entries_per_fsync": ratio(leader_entries, leader_fsyncs),
        "entries_per_fsync_all": ratio(entries, fsyncs),
        "leader": leader,
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// What host `index` of the cluster is: host 0 has the client and no
/// replica.
fn role_of(index: usize, host: &Host, leader: &str) -> &'static str {
    if index == 0 {
        "client host"
    } else if host.peer_id == leader {
        "leader"
    } else {
        "follower"
    }
}

/// CPU per host over a window, in ms, naming host 0 (the client's), the
/// leader's host and the followers'.
fn cpu_json(
    cluster: &Cluster,
    before: &[u64],
    after: &[u64],
    leader: &str,
    ops: u64,
    seconds: f64,
) -> Value {
    let delta: Vec<f64> = before
        .iter()
        .zip(after)
        .map(|(b, a)| a.saturating_sub(*b) as f64 / 1e6)
        .collect();
    let mut hosts = Vec::new();
    let mut total = 0.0;
    for (index, host) in cluster.hosts.iter().enumerate() {
        let role = role_of(index, host, leader);
        total += delta[index];
        hosts.push(json!({
            "host": index,
            "role": role,
            "cpu_ms": round2(delta[index]),
            "cpu_share": round2(delta[index] / 1e3 / seconds),
        }));
    }
    let driver = delta.last().copied().unwrap_or(0.0);
    total += driver;
    json!({
        "hosts": hosts,
        "driver_cpu_ms": round2(driver),
        "driver_cpu_share": round2(driver / 1e3 / seconds),
        "total_cpu_share": round2(total / 1e3 / seconds),
        "cpu_us_per_op": if ops == 0 { 0.0 } else { round2(total * 1e3 / ops as f64) },
    })
}

// ---------------------------------------------------------------------------
// Runs

async fn run(
    workload: Workload,
    clients: usize,
    duration: Duration,
    warmup: Duration,
    window: usize,
) -> Result<Value> {
    eprintln!(
        "raft bench: {} with {clients} clients: starting 4 hosts and deploying",
        workload.name()
    );
    let cluster = start_cluster()?;
    let addr: libp2p::Multiaddr = cluster.hosts[0].addr.parse()?;
    let group = raft_client::native::connect(std::slice::from_ref(&addr), "v1").await?;
    // The deploy has elected a leader; find it.
    let leader = {
        let started = Instant::now();
        loop {
            let found = statuses(&group)
                .await
                .into_iter()
                .find(|status| status.role == "leader");
            if let Some(found) = found {
                break found.peer_id;
            }
            if started.elapsed() > Duration::from_secs(15) {
                // A ROM whose status this build cannot decode
                // (RAFT_BENCH_ROM): run without fsync and role figures.
                eprintln!("raft bench: no replica status decodes; fsync figures will be 0");
                break String::new();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    for (index, host) in cluster.hosts.iter().enumerate() {
        let role = role_of(index, host, &leader);
        eprintln!("raft bench: host {index} pid {} ({role})", host.pid());
    }
    // What the cluster costs with no clients (heartbeats, gossip, ticks).
    let idle_before = cpu_sample(&cluster);
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_after = cpu_sample(&cluster);
    let idle = cpu_json(
        &cluster,
        &idle_before,
        &idle_after,
        &leader,
        0,
        idle_started.elapsed().as_secs_f64(),
    );
    let mut report = match workload {
        Workload::Write | Workload::Read => {
            closed_loop(
                &cluster, &group, &leader, workload, clients, duration, warmup,
            )
            .await?
        }
        Workload::Queue => queue_run(&cluster, &group, &leader, clients, window).await?,
    };
    report["idle_cpu"] = idle;
    report["profile"] = json!({
        "host": "release (ww start)",
        "roms": "guest (opt-level 3, wasm32-wasip2)",
        "driver": "bench (release)",
    });
    drop(group);
    drop(cluster);
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn closed_loop(
    cluster: &Cluster,
    group: &Group<TokioRuntime>,
    leader: &str,
    workload: Workload,
    clients: usize,
    duration: Duration,
    warmup: Duration,
) -> Result<Value> {
    if workload == Workload::Read {
        preload(group).await?;
    }
    let recorder = Rc::new(Recorder::default());
    let stop = Rc::new(Cell::new(false));
    let mut tasks = Vec::new();
    for index in 0..clients {
        let session = group.session();
        let recorder = recorder.clone();
        let stop = stop.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let client = queue::Client::new(&session);
            let mut rng = Rng(index as u64 * 7919 + 1);
            while !stop.get() {
                if workload == Workload::Write {
                    let key = key(rng.next() % WRITE_KEYS);
                    let value = rng.value();
                    let started = Instant::now();
                    let result = client.put(key, value).await;
                    recorder.record(started, &result);
                } else {
                    let key = key(rng.next() % READ_KEYS);
                    let started = Instant::now();
                    let result = client.get(key).await.and_then(|found| {
                        found.map(|_| ()).ok_or_else(|| {
                            queue::ClientError::Protocol("a preloaded key is missing".to_owned())
                        })
                    });
                    recorder.record(started, &result);
                }
            }
        }));
    }
    eprintln!("raft bench: warmup {warmup:?}");
    tokio::time::sleep(warmup).await;
    let status_before = statuses(group).await;
    let cpu_before = cpu_sample(cluster);
    recorder.on.set(true);
    let started = Instant::now();
    eprintln!("raft bench: measuring {duration:?}");
    tokio::time::sleep(duration).await;
    recorder.on.set(false);
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = cpu_sample(cluster);
    stop.set(true);
    let status_after = statuses(group).await;
    for task in tasks {
        task.await?;
    }
    let latencies = recorder.latencies_us.borrow().clone();
    let ops = latencies.len() as u64;
    let mut report = json!({
        "workload": workload.name(),
        "clients": clients,
        "duration_s": round2(seconds),
        "warmup_s": warmup.as_secs_f64(),
        "ops": ops,
        "ops_per_s": round2(ops as f64 / seconds),
        "errors": recorder.errors.get(),
        "last_error": recorder.last_error.borrow().clone(),
        "value_bytes": VALUE_BYTES,
        "keys": if workload == Workload::Write { WRITE_KEYS } else { READ_KEYS },
    });
    merge(&mut report, latency_json(&latencies));
    merge(
        &mut report,
        fsync_json(&status_before, &status_after, seconds),
    );
    report["cpu"] = cpu_json(cluster, &cpu_before, &cpu_after, leader, ops, seconds);
    Ok(report)
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

/// Writes the read workload's keys, 16 writers at a time.
async fn preload(group: &Group<TokioRuntime>) -> Result<()> {
    eprintln!("raft bench: preloading {READ_KEYS} keys");
    let next = Rc::new(Cell::new(0u64));
    let writers = (0..16).map(|index| {
        let session = group.session();
        let next = next.clone();
        async move {
            let client = queue::Client::new(&session);
            let mut rng = Rng(1_000_000 + index);
            loop {
                let n = next.get();
                if n >= READ_KEYS {
                    return Ok::<(), anyhow::Error>(());
                }
                next.set(n + 1);
                client
                    .put(key(n), rng.value())
                    .await
                    .with_context(|| format!("preloading key {n}"))?;
            }
        }
    });
    for result in futures::future::join_all(writers).await {
        result?;
    }
    Ok(())
}

/// The queue workload: producers and consumers at once, until every
/// message is acked.
async fn queue_run(
    cluster: &Cluster,
    group: &Group<TokioRuntime>,
    leader: &str,
    clients: usize,
    window: usize,
) -> Result<Value> {
    {
        let session = group.session();
        queue::Client::new(&session)
            .create_topic(QUEUE_TOPIC, queue::TopicConfig::default())
            .await?;
    }
    let enqueues = Rc::new(Recorder::default());
    let leases = Rc::new(Recorder::default());
    let acks = Rc::new(Recorder::default());
    // Time from enqueue to ack, per message (µs).
    let message_latency = Rc::new(Recorder::default());
    for recorder in [&enqueues, &leases, &acks, &message_latency] {
        recorder.on.set(true);
    }
    let next = Rc::new(Cell::new(0u64));
    let acked = Rc::new(Cell::new(0u64));
    let empty_leases = Rc::new(Cell::new(0u64));
    let leased_messages = Rc::new(Cell::new(0u64));
    let redeliveries = Rc::new(Cell::new(0u64));
    let origin = Instant::now();

    let status_before = statuses(group).await;
    let cpu_before = cpu_sample(cluster);
    let started = Instant::now();
    let mut producers = Vec::new();
    for index in 0..clients * window {
        let session = group.session();
        let (next, enqueues) = (next.clone(), enqueues.clone());
        producers.push(tokio::task::spawn_local(async move {
            let client = queue::Client::new(&session);
            let mut rng = Rng(2_000_000 + index as u64);
            loop {
                let n = next.get();
                if n >= QUEUE_MESSAGES {
                    return;
                }
                next.set(n + 1);
                let mut body = rng.value();
                let at = u64::try_from(origin.elapsed().as_micros()).unwrap_or(0);
                body[..8].copy_from_slice(&at.to_le_bytes());
                let t = Instant::now();
                let result = client.enqueue(QUEUE_TOPIC, body).await;
                // A failed enqueue counts as an error; consumers stop
                // waiting for it.
                enqueues.record(t, &result);
            }
        }));
    }
    let mut consumers = Vec::new();
    for index in 0..clients {
        let session = group.session();
        let (leases, acks, message_latency) =
            (leases.clone(), acks.clone(), message_latency.clone());
        let (acked, empty_leases, leased_messages, redeliveries) = (
            acked.clone(),
            empty_leases.clone(),
            leased_messages.clone(),
            redeliveries.clone(),
        );
        let enqueue_errors = enqueues.clone();
        consumers.push(tokio::task::spawn_local(async move {
            let client = queue::Client::new(&session);
            let consumer = format!("consumer-{index}");
            while acked.get() + enqueue_errors.errors.get() < QUEUE_MESSAGES {
                let t = Instant::now();
                let result = client
                    .lease(QUEUE_TOPIC, &consumer, LEASE_BATCH, Some(60_000))
                    .await;
                leases.record(t, &result);
                let Ok(deliveries) = result else { continue };
                if deliveries.is_empty() {
                    empty_leases.set(empty_leases.get() + 1);
                    tokio::time::sleep(EMPTY_LEASE_PAUSE).await;
                    continue;
                }
                leased_messages.set(leased_messages.get() + deliveries.len() as u64);
                let receipts: Vec<queue::Receipt> =
                    deliveries.iter().map(queue::Delivery::receipt).collect();
                let t = Instant::now();
                let result = client.ack_batch(QUEUE_TOPIC, &receipts).await;
                acks.record(t, &result);
                let Ok(outcomes) = result else { continue };
                let now = u64::try_from(origin.elapsed().as_micros()).unwrap_or(0);
                for (delivery, outcome) in deliveries.iter().zip(outcomes) {
                    if delivery.acquired > 1 {
                        redeliveries.set(redeliveries.get() + 1);
                    }
                    if outcome.is_ok() {
                        acked.set(acked.get() + 1);
                        let mut at = [0u8; 8];
                        at.copy_from_slice(&delivery.body[..8]);
                        let latency = now.saturating_sub(u64::from_le_bytes(at));
                        message_latency.latencies_us.borrow_mut().push(latency);
                    }
                }
            }
        }));
    }
    let mut enqueue_seconds = 0.0;
    for producer in producers {
        producer.await?;
    }
    enqueue_seconds += started.elapsed().as_secs_f64();
    for consumer in consumers {
        consumer.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = cpu_sample(cluster);
    let status_after = statuses(group).await;

    let ops = (enqueues.latencies_us.borrow().len()
        + leases.latencies_us.borrow().len()
        + acks.latencies_us.borrow().len()) as u64;
    let mut all: Vec<u64> = Vec::new();
    for recorder in [&enqueues, &leases, &acks] {
        all.extend(recorder.latencies_us.borrow().iter());
    }
    let errors = enqueues.errors.get() + leases.errors.get() + acks.errors.get();
    let last_error = [&enqueues, &leases, &acks]
        .iter()
        .map(|recorder| recorder.last_error.borrow().clone())
        .find(|error| !error.is_empty())
        .unwrap_or_default();
    let mut report = json!({
        "workload": "queue",
        "clients": clients,
        "producers": clients,
        "producer_window": window,
        "enqueue_sessions": clients * window,
        "consumers": clients,
        "messages": QUEUE_MESSAGES,
        "message_bytes": VALUE_BYTES,
        "lease_batch": LEASE_BATCH,
        "duration_s": round2(seconds),
        "ops": ops,
        "ops_per_s": round2(ops as f64 / seconds),
        "errors": errors,
        "last_error": last_error,
        "acked": acked.get(),
        "end_to_end_msgs_per_s": round2(acked.get() as f64 / seconds),
        "enqueue_msgs_per_s": round2(enqueues.latencies_us.borrow().len() as f64 / enqueue_seconds),
        "enqueue_seconds": round2(enqueue_seconds),
        "leases": leases.latencies_us.borrow().len(),
        "empty_leases": empty_leases.get(),
        "messages_per_lease": round2(
            leased_messages.get() as f64
                / (leases.latencies_us.borrow().len() as u64 - empty_leases.get()).max(1) as f64
        ),
        "redeliveries": redeliveries.get(),
        "enqueue": latency_json(&enqueues.latencies_us.borrow()),
        "lease": latency_json(&leases.latencies_us.borrow()),
        "ack": latency_json(&acks.latencies_us.borrow()),
        "message_enqueue_to_ack": latency_json(&message_latency.latencies_us.borrow()),
    });
    merge(&mut report, latency_json(&all));
    merge(
        &mut report,
        fsync_json(&status_before, &status_after, seconds),
    );
    report["cpu"] = cpu_json(cluster, &cpu_before, &cpu_after, leader, ops, seconds);
    Ok(report)
}

// ---------------------------------------------------------------------------
// The matrix

async fn matrix(args: &Args) -> Result<()> {
    // (workload, clients, producer window)
    let configs = [
        (Workload::Write, 1, 1),
        (Workload::Write, 16, 1),
        (Workload::Write, 128, 1),
        (Workload::Read, 1, 1),
        (Workload::Read, 16, 1),
        (Workload::Read, 128, 1),
        (Workload::Queue, 16, 1),
        (Workload::Queue, 16, DEFAULT_WINDOW),
    ];
    let dir = workspace_root().join("target/bench/raft");
    let mut rows = Vec::new();
    for (workload, clients, window) in configs {
        let mut reports = Vec::new();
        for index in 0..args.runs {
            let report = run(workload, clients, args.duration, args.warmup, window).await?;
            let name = match workload {
                Workload::Queue => format!("queue-{clients}-w{window}-run{}.json", index + 1),
                _ => format!("{}-{clients}-run{}.json", workload.name(), index + 1),
            };
            write_json(&dir.join(name), &report)?;
            eprintln!(
                "raft bench: {} x{clients} run {}: {} ops/s, p50 {} µs, {} entries/fsync",
                workload.name(),
                index + 1,
                report["ops_per_s"],
                report["p50_us"],
                report["entries_per_fsync"]
            );
            reports.push(report);
        }
        rows.push((workload, clients, window, reports));
    }
    print_summary(args, &rows);
    Ok(())
}

fn median_of(reports: &[Value], field: impl Fn(&Value) -> f64) -> (f64, f64, f64) {
    let mut values: Vec<f64> = reports.iter().map(field).collect();
    values.sort_by(f64::total_cmp);
    let mid = if values.is_empty() {
        f64::NAN
    } else if values.len() % 2 == 1 {
        values[values.len() / 2]
    } else {
        (values[values.len() / 2 - 1] + values[values.len() / 2]) / 2.0
    };
    (
        mid,
        values.first().copied().unwrap_or(f64::NAN),
        values.last().copied().unwrap_or(f64::NAN),
    )
}

fn ms(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn field(key: &'static str) -> impl Fn(&Value) -> f64 {
    move |report: &Value| report[key].as_f64().unwrap_or(f64::NAN)
}

fn nested(outer: &'static str, key: &'static str) -> impl Fn(&Value) -> f64 {
    move |report: &Value| report[outer][key].as_f64().unwrap_or(f64::NAN)
}

fn print_summary(args: &Args, rows: &[(Workload, usize, usize, Vec<Value>)]) {
    println!(
        "Three replicas on three `ww start` hosts (release build) on loopback, and a fourth host that \
         the client is attached to; replicas are `raft-replica.wasm` (guest profile, opt-level 3). The \
         driver (`tests/benches/raft.rs`, bench profile) runs closed-loop clients, one `Session` each \
         (one command in flight), through one native `Group` attached to host 0. A write is acknowledged \
         once fsynced on a majority and applied. `write`: `put` of 256-byte values to random keys among \
         100,000; `read`: linearizable `get` (ReadIndex) of 1,000 preloaded keys; {}s warmup, then {}s \
         measured. Each run on a fresh cluster; medians of {} runs, and the range of ops/s. fsyncs count \
         all three replicas; entries per fsync and loop rounds are the leader's. CPU is the four hosts \
         (guests included) and the driver, per operation; the machine has 2 cores in all.\n",
        args.warmup.as_secs_f64(),
        args.duration.as_secs_f64(),
        args.runs,
    );
    println!(
        "| workload | clients | ops/s | p50 | p99 | p99.9 | fsyncs/s | entries per fsync | requests per leader round | CPU per op | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (workload, clients, _, reports) in rows {
        if *workload == Workload::Queue {
            continue;
        }
        let (ops, low, high) = median_of(reports, field("ops_per_s"));
        println!(
            "| {} | {clients} | {ops:.0} ({low:.0}–{high:.0}) | {} | {} | {} | {:.0} | {:.1} | {:.1} | {} | {:.0} |",
            workload.name(),
            ms(median_of(reports, field("p50_us")).0),
            ms(median_of(reports, field("p99_us")).0),
            ms(median_of(reports, field("p999_us")).0),
            median_of(reports, field("fsyncs_per_s")).0,
            median_of(reports, field("entries_per_fsync")).0,
            median_of(reports, nested("leader", "requests_per_round")).0,
            ms(median_of(reports, nested("cpu", "cpu_us_per_op")).0),
            median_of(reports, field("errors")).0,
        );
    }
    if !rows
        .iter()
        .any(|(workload, ..)| *workload == Workload::Queue)
    {
        return;
    }
    println!(
        "\n`queue`: {QUEUE_MESSAGES} messages of 256 bytes enqueued by 16 producers while 16 consumers lease \
         up to {LEASE_BATCH} at a time and ack each lease's messages in one command (an empty lease waits \
         2 ms); it ends when every message is acked. A producer enqueues one message per command and keeps \
         `window` enqueues in flight, each on its own session (a publisher-confirm window). End-to-end is \
         messages acked per second from the first enqueue to the last ack; operations are enqueues, leases \
         (empty ones included) and acks; latency percentiles are per operation.\n"
    );
    println!(
        "| producers × window / consumers | end-to-end msg/s | enqueue msg/s | operations/s | messages per lease | enqueue p50 / p99 | enqueue→ack p50 / p99 | fsyncs/s | entries per fsync | CPU per op | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (workload, clients, window, reports) in rows {
        if *workload != Workload::Queue {
            continue;
        }
        let (e2e, low, high) = median_of(reports, field("end_to_end_msgs_per_s"));
        println!(
            "| {clients} × {window} / {clients} | {e2e:.0} ({low:.0}–{high:.0}) | {:.0} | {:.0} | {:.1} | {} / {} | {} / {} | {:.0} | {:.1} | {} | {:.0} |",
            median_of(reports, field("enqueue_msgs_per_s")).0,
            median_of(reports, field("ops_per_s")).0,
            median_of(reports, field("messages_per_lease")).0,
            ms(median_of(reports, nested("enqueue", "p50_us")).0),
            ms(median_of(reports, nested("enqueue", "p99_us")).0),
            ms(median_of(reports, nested("message_enqueue_to_ack", "p50_us")).0),
            ms(median_of(reports, nested("message_enqueue_to_ack", "p99_us")).0),
            median_of(reports, field("fsyncs_per_s")).0,
            median_of(reports, field("entries_per_fsync")).0,
            ms(median_of(reports, nested("cpu", "cpu_us_per_op")).0),
            median_of(reports, field("errors")).0,
        );
    }
}
