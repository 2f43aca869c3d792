//! `make bench-runtime`: the runtime's own costs, measured on real `ww
//! start` hosts (the release binary) on loopback, running the bench ROM
//! (`rom/bench`, `target/rom/bench.wasm`).
//!
//! Groups (the first non-flag argument; default all three):
//!
//! - `spawn`: `Executor.spawn` until the new process answers its first
//!   capnp call (spawn → `Process.bootstrap` → a call on the exported
//!   capability), with nothing compiled, with the compiled artifact on disk
//!   only, and with the ROM compiled in memory; and `ww run` end to end.
//! - `rpc`: capnp round trips: a guest calling its own host (`Host.peerId`
//!   over the guest's `ww:rpc/transport` streams), a native client calling a host over libp2p,
//!   and a guest calling another host through its own (`Host.dial`).
//! - `channels`: a guest on host A sends to a channel hosted on host B,
//!   resolved through A's root anchor; a guest on B receives. Throughput
//!   at 64 B and 4 KiB, sequential and pipelined, and ping-pong latency
//!   through two channels (A→B, B→A). This is the path Raft messages take.
//!
//! Prints markdown on stdout (`scripts/bench-record.sh` files it) and
//! progress on stderr. `BENCH_RUNS` (default 3) repeats each measurement;
//! the tables give medians. Nothing here asserts a timing.
//!
//! The driver runs like a host: one current-thread tokio runtime with a
//! `LocalSet`, and a `ww_net::Node` for its libp2p connection.

// A benchmark that cannot run panics with a message; it is not host code.
#![allow(clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use capnp::capability::FromClientHook;
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::identity::Keypair;
use ww_api::ww_capnp::RestartPolicy;
use ww_api::{anchor, executor, host, process, sender};
use ww_net::{Node, NodeConfig};
use ww_tests::{cpu_ns, Host};

/// How long one command may take before the bench gives up.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

fn runs() -> usize {
    std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(3)
        .max(1)
}

fn main() {
    let groups: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let groups = if groups.is_empty() {
        vec!["spawn".to_owned(), "rpc".to_owned(), "channels".to_owned()]
    } else {
        groups
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let local = tokio::task::LocalSet::new();
    let result: Result<()> = local.block_on(&runtime, async {
        for group in &groups {
            let load_before = load_average();
            match group.as_str() {
                "spawn" => spawn_group().await?,
                "rpc" => rpc_group().await?,
                "channels" => channel_group().await?,
                other => bail!("unknown group {other:?}: spawn, rpc or channels"),
            }
            // The machine may be shared: say how busy it was.
            println!(
                "\nLoad average (1 min) before and after this group: {load_before} and {}.",
                load_average()
            );
        }
        Ok(())
    });
    if let Err(err) = result {
        eprintln!("bench failed: {err:#}");
        std::process::exit(1);
    }
}

/// The 1-minute load average, as /proc/loadavg gives it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

// ---------------------------------------------------------------------------
// Hosts, the driver's connection, CPU

fn cpu_of(pids: &[u32]) -> u64 {
    pids.iter().map(|pid| cpu_ns(*pid)).sum()
}

async fn driver_node() -> Result<Node> {
    Node::start(NodeConfig {
        keypair: Keypair::generate_ed25519(),
        listen: vec![],
        bootstrap: vec![],
        heartbeat: None,
        psk: None,
    })
    .await
}

async fn connect(node: &Node, addr: &str) -> Result<host::Client> {
    let (_, host) = ww_net::dial::connect_addr(node, addr.parse()?).await?;
    Ok(host)
}

fn dial(host: &host::Client, peer: &str) -> host::Client {
    let mut request = host.dial_request();
    request.get().set_peer_id(peer);
    request.send().pipeline.get_host()
}

fn executor_of(host: &host::Client) -> executor::Client {
    host.executor_request().send().pipeline.get_executor()
}

/// Waits until `host` sees `count` hosts in its view.
async fn wait_for_view(host: &host::Client, count: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = host.view_request().send().promise.await?;
        if view.get()?.get_hosts()?.len() as usize >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the view never reached {count} hosts");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn walk(host: &host::Client, path: &str) -> anchor::Client {
    let root = host.root_request().send().pipeline.get_anchor();
    let mut request = root.walk_request();
    request.get().set_path(path);
    request.send().pipeline.get_anchor()
}

async fn anchor_cap(host: &host::Client, path: &str, cap: capnp::capability::Client) -> Result<()> {
    let mut request = walk(host, path).set_request();
    request
        .get()
        .init_value()
        .init_cap()
        .set_as_capability(cap.hook);
    request
        .send()
        .promise
        .await
        .with_context(|| format!("anchoring {path}"))?;
    Ok(())
}

/// A new channel on `host`; returns (sender, receiver) as plain clients.
async fn new_channel(
    host: &host::Client,
    capacity: u32,
) -> Result<(capnp::capability::Client, capnp::capability::Client)> {
    let mut request = host.new_channel_request();
    request.get().set_capacity(capacity);
    let response = request.send().promise.await?;
    let response = response.get()?;
    Ok((
        response.get_sender()?.client,
        response.get_receiver()?.client,
    ))
}

// ---------------------------------------------------------------------------
// Bench ROM processes and their commands

enum RomRef<'a> {
    Bytes(&'a [u8]),
    Hash(&'a [u8; 32]),
}

/// A `bench serve` process.
struct Guest {
    process: process::Client,
    inbox: sender::Client,
}

type SpawnRequest =
    capnp::capability::Request<executor::spawn_params::Owned, executor::spawn_results::Owned>;

fn spawn_request(executor: &executor::Client, rom: &RomRef<'_>) -> SpawnRequest {
    let mut request = executor.spawn_request();
    {
        let mut spec = request.get().init_spec();
        match rom {
            RomRef::Bytes(bytes) => spec.reborrow().init_rom().set_bytes(bytes),
            RomRef::Hash(hash) => spec.reborrow().init_rom().set_hash(&hash[..]),
        }
        spec.reborrow().init_args(1).set(0, "serve");
        spec.set_name("bench");
        // The bench child runs commands that use the whole host.
        spec.set_host(true);
        spec.set_restart(RestartPolicy::Never);
    }
    request
}

async fn noop(inbox: &sender::Client) -> Result<()> {
    let mut request = inbox.send_request();
    request.get().init_message().set_data(b"noop");
    request.send().promise.await?;
    Ok(())
}

/// Spawns `bench serve` and waits until it answers a `noop`, all calls
/// pipelined: one round trip from here. Returns the time that took.
async fn spawn_pipelined(
    executor: &executor::Client,
    rom: &RomRef<'_>,
) -> Result<(Duration, Guest)> {
    let started = Instant::now();
    let process = spawn_request(executor, rom).send().pipeline.get_process();
    let boot = process.bootstrap_request().send();
    let inbox = sender::Client::new(boot.pipeline.get_cap().as_cap());
    noop(&inbox).await?;
    Ok((started.elapsed(), Guest { process, inbox }))
}

/// Like [`spawn_pipelined`], waiting for each answer before the next call.
async fn spawn_stepwise(
    executor: &executor::Client,
    rom: &RomRef<'_>,
) -> Result<(Duration, Guest)> {
    let started = Instant::now();
    let response = spawn_request(executor, rom).send().promise.await?;
    let process = response.get()?.get_process()?;
    let boot = process.bootstrap_request().send().promise.await?;
    let inbox: sender::Client = boot.get()?.get_cap().get_as_capability()?;
    noop(&inbox).await?;
    Ok((started.elapsed(), Guest { process, inbox }))
}

async fn spawn_any(
    executor: &executor::Client,
    rom: &RomRef<'_>,
    pipelined: bool,
) -> Result<(Duration, Guest)> {
    if pipelined {
        spawn_pipelined(executor, rom).await
    } else {
        spawn_stepwise(executor, rom).await
    }
}

/// Kills `guest` and waits until it is gone.
async fn kill(guest: &Guest) -> Result<()> {
    guest.process.kill_request().send().promise.await?;
    guest.process.wait_request().send().promise.await?;
    Ok(())
}

async fn rom_hash(guest: &Guest) -> Result<[u8; 32]> {
    let status = guest.process.status_request().send().promise.await?;
    let hex = status.get()?.get_info()?.get_rom_hash()?.to_string()?;
    let mut hash = [0u8; 32];
    for (index, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * index..2 * index + 2], 16)?;
    }
    Ok(hash)
}

fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `rom` with a custom section carrying `nonce`: the same program under a
/// new blake3 hash, so no cache of any kind has seen it.
fn with_nonce(rom: &[u8], nonce: u64) -> Vec<u8> {
    let name = b"ww-bench-nonce";
    let mut payload = vec![u8::try_from(name.len()).expect("short name")];
    payload.extend_from_slice(name);
    payload.extend_from_slice(&nonce.to_le_bytes());
    let mut out = rom.to_vec();
    out.push(0); // custom section
    out.push(u8::try_from(payload.len()).expect("a one-byte LEB128 length"));
    out.extend_from_slice(&payload);
    out
}

/// One command's `key=value` report.
type Report = HashMap<String, f64>;

/// Runs `command` in `guest`; its report comes back on a channel that
/// `reply_host` hosts.
async fn command(reply_host: &host::Client, guest: &Guest, command: &str) -> Result<Report> {
    let run = async {
        let (reply_tx, reply_rx) = new_channel(reply_host, 4).await?;
        let reply_rx = ww_api::receiver::Client { client: reply_rx };
        let mut request = guest.inbox.send_request();
        {
            let mut message = request.get().init_message();
            message.set_data(command.as_bytes());
            message
                .init_caps(1)
                .get(0)
                .init_cap()
                .set_as_capability(reply_tx.hook);
        }
        request.send().promise.await?;
        let reply = reply_rx.recv_request().send().promise.await?;
        let line = String::from_utf8_lossy(reply.get()?.get_message()?.get_data()?).into_owned();
        let Some(fields) = line.strip_prefix("ok") else {
            bail!("{line}");
        };
        let mut report = Report::new();
        for field in fields.split_whitespace() {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| anyhow!("malformed report {line:?}"))?;
            report.insert(key.to_owned(), value.parse()?);
        }
        Ok(report)
    };
    tokio::time::timeout(COMMAND_TIMEOUT, run)
        .await
        .map_err(|_| anyhow!("{command:?} took over {COMMAND_TIMEOUT:?}"))?
        .with_context(|| format!("running {command:?}"))
}

// ---------------------------------------------------------------------------
// Figures

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return f64::NAN;
    }
    values[values.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn time(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.0} µs", ns / 1e3)
    }
}

fn rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M", per_s / 1e6)
    } else if per_s >= 1e4 {
        format!("{:.1} k", per_s / 1e3)
    } else {
        format!("{per_s:.0}")
    }
}

/// Median of `key` over `reports`.
fn med(reports: &[Report], key: &str) -> f64 {
    let mut values: Vec<f64> = reports.iter().filter_map(|r| r.get(key).copied()).collect();
    median(&mut values)
}

fn spread(values: &[f64], show: impl Fn(f64) -> String) -> String {
    let mut values = values.to_vec();
    let mid = median(&mut values);
    if values.len() < 2 {
        return show(mid);
    }
    format!(
        "{} ({}–{})",
        show(mid),
        show(values[0]),
        show(values[values.len() - 1])
    )
}

/// A row of spawn samples (ns): p50, p90 and max.
fn sample_row(what: &str, samples: &[f64]) -> String {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    format!(
        "| {what} | {} | {} | {} | {} |",
        sorted.len(),
        time(percentile(&sorted, 50.0)),
        time(percentile(&sorted, 90.0)),
        time(sorted.last().copied().unwrap_or(f64::NAN)),
    )
}

// ---------------------------------------------------------------------------
// spawn

async fn spawn_group() -> Result<()> {
    let runs = runs();
    let rom = std::fs::read(ww_tests::rom("bench"))?;
    let dir = tempfile::tempdir()?;
    let (data_a, cache_a) = (dir.path().join("a"), dir.path().join("a-cache"));
    let node = driver_node().await?;
    let cold_count = 2 * runs + 1;

    // Nothing compiled anywhere: each ROM is new (a nonce section).
    eprintln!("spawn: cold ({cold_count} ROMs, each compiled)");
    let mut cold = Vec::new();
    let pipelined_ok;
    {
        let a = Host::start_cached(&data_a, &cache_a, &[]);
        let host = connect(&node, &a.addr).await?;
        let executor = executor_of(&host);
        // Untimed: the host's first compile, and whether it answers a
        // `Process.bootstrap` pipelined on the spawn (the schema says it
        // waits until the process has started).
        let bytes = with_nonce(&rom, u64::MAX);
        pipelined_ok = match spawn_pipelined(&executor, &RomRef::Bytes(&bytes)).await {
            Ok((_, guest)) => {
                kill(&guest).await?;
                true
            }
            Err(err) => {
                eprintln!(
                    "spawn: pipelined spawn → bootstrap failed ({err:#}); timing step by step"
                );
                false
            }
        };
        for nonce in 0..cold_count {
            let bytes = with_nonce(&rom, nonce as u64);
            let (took, guest) = spawn_any(&executor, &RomRef::Bytes(&bytes), pipelined_ok).await?;
            cold.push(took.as_nanos() as f64);
            kill(&guest).await?;
        }
    }

    // A restarted host: nothing in memory, every artifact on disk.
    eprintln!("spawn: compiled artifact on disk only");
    let a = Host::start_cached(&data_a, &cache_a, &[]);
    let host = connect(&node, &a.addr).await?;
    let executor = executor_of(&host);
    let mut disk = Vec::new();
    for nonce in 0..cold_count {
        let bytes = with_nonce(&rom, nonce as u64);
        let (took, guest) = spawn_any(&executor, &RomRef::Bytes(&bytes), pipelined_ok).await?;
        disk.push(took.as_nanos() as f64);
        kill(&guest).await?;
    }

    // Compiled in memory. The first spawn of the plain ROM compiles it.
    eprintln!("spawn: compiled in memory, from a native client");
    let (_, first) = spawn_any(&executor, &RomRef::Bytes(&rom), pipelined_ok).await?;
    let hash = rom_hash(&first).await?;
    kill(&first).await?;
    let mut by_bytes = Vec::new();
    let mut by_hash = Vec::new();
    for _ in 0..10 * runs {
        let (took, guest) = spawn_any(&executor, &RomRef::Bytes(&rom), pipelined_ok).await?;
        by_bytes.push(took.as_nanos() as f64);
        kill(&guest).await?;
        let (took, guest) = spawn_any(&executor, &RomRef::Hash(&hash), pipelined_ok).await?;
        by_hash.push(took.as_nanos() as f64);
        kill(&guest).await?;
    }

    // From a guest on the same host, and on another host.
    eprintln!("spawn: from a guest (host A is pid {})", a.pid());
    let b = Host::start_cached(
        &dir.path().join("b"),
        &dir.path().join("b-cache"),
        &[a.addr.as_str()],
    );
    wait_for_view(&host, 2).await?;
    let host_b = dial(&host, &b.peer_id);
    let (_, guest) = spawn_any(&executor, &RomRef::Hash(&hash), pipelined_ok).await?;
    // Host B learns the ROM (and compiles it) from one spawn by bytes.
    let (_, on_b) = spawn_stepwise(&executor_of(&host_b), &RomRef::Bytes(&rom)).await?;
    kill(&on_b).await?;
    let count = 200;
    let mut local = Vec::new();
    let mut remote = Vec::new();
    let mut local_cpu = Vec::new();
    for _ in 0..runs {
        let before = cpu_of(&[a.pid()]);
        let report = command(&host, &guest, &format!("spawn {} {count}", hex(&hash))).await?;
        local_cpu.push((cpu_of(&[a.pid()]) - before) as f64 / count as f64);
        local.push(report);
        let report = command(
            &host,
            &guest,
            &format!("spawn {} {count} {}", hex(&hash), b.peer_id),
        )
        .await?;
        remote.push(report);
    }
    kill(&guest).await?;

    // `ww run`, end to end, as a shell sees it.
    eprintln!("spawn: ww run");
    let ww = ww_tests::ww_bin();
    let rom_path = ww_tests::rom("bench");
    let run_cache = dir.path().join("run-cache");
    let ww_run = |cache: &Path, args: &[&str]| -> Result<f64> {
        let started = Instant::now();
        let out = std::process::Command::new(&ww)
            .arg("run")
            .arg("--cache-dir")
            .arg(cache)
            .args(args)
            .env_remove("WW_PEERS")
            .output()?;
        let took = started.elapsed().as_nanos() as f64;
        if !out.status.success() {
            bail!(
                "ww run {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(took)
    };
    let rom_arg = rom_path.to_str().context("a UTF-8 path")?;
    let mut run_cold = Vec::new();
    for attempt in 0..runs {
        let fresh = dir.path().join(format!("run-cold-{attempt}"));
        run_cold.push(ww_run(&fresh, &["--dial=false", rom_arg, "exit"])?);
    }
    ww_run(&run_cache, &["--dial=false", rom_arg, "exit"])?;
    let mut run_warm = Vec::new();
    let mut run_dial = Vec::new();
    for _ in 0..10 * runs {
        run_warm.push(ww_run(&run_cache, &["--dial=false", rom_arg, "exit"])?);
        run_dial.push(ww_run(
            &run_cache,
            &["--peer", a.addr.as_str(), rom_arg, "peer-id"],
        )?);
    }

    println!(
        "Time from `Executor.spawn` until the new process answers its first capnp call: \
         spawn → `Process.bootstrap` → a call on the capability the process exports, \
         pipelined{}. Real `ww start` hosts (release build) on loopback; the ROM is \
         `bench.wasm` ({} KiB, guest profile). Rows from a native client include one \
         libp2p round trip (see runtime-rpc), and by bytes, the ROM crossing libp2p and \
         being hashed; rows from a guest include one round trip over its `ww:rpc` transport. Each \
         child is killed, and gone, before the next spawn.\n",
        if pipelined_ok {
            " (one round trip)"
        } else {
            " where the host allows (it did not: from the native client, bootstrap was \
             awaited separately)"
        },
        rom.len() / 1024,
    );
    println!("| spawn | samples | p50 | p90 | max |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "{}",
        sample_row(
            "cold: ROM never seen (Cranelift compile, artifact written to disk), native client, by bytes",
            &cold
        )
    );
    println!(
        "{}",
        sample_row(
            "warm on disk: host restarted, artifact in its cache dir, native client, by bytes",
            &disk
        )
    );
    println!(
        "{}",
        sample_row("warm in memory, native client, by bytes", &by_bytes)
    );
    println!(
        "{}",
        sample_row("warm in memory, native client, by hash", &by_hash)
    );
    let guest_row = |what: &str, reports: &[Report]| {
        format!(
            "| {what} | {}×{} | {} | p99 {} | {} |",
            reports.len(),
            count,
            time(med(reports, "p50_ns")),
            time(med(reports, "p99_ns")),
            time(med(reports, "max_ns")),
        )
    };
    println!(
        "{}",
        guest_row("warm in memory, a guest on the same host, by hash", &local)
    );
    println!(
        "{}",
        guest_row(
            "warm in memory, a guest on host A spawning on host B (`Host.dial`), by hash",
            &remote
        )
    );
    println!("\n`ww run` end to end (process start to exit, measured by the caller):\n");
    println!("| `ww run` | samples | p50 | p90 | max |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "{}",
        sample_row("`--dial=false bench.wasm exit`, empty cache dir", &run_cold)
    );
    println!(
        "{}",
        sample_row(
            "`--dial=false bench.wasm exit`, artifact in cache dir",
            &run_warm
        )
    );
    println!(
        "{}",
        sample_row(
            "`--peer A bench.wasm peer-id` (dial, Noise, one call), artifact in cache dir",
            &run_dial
        )
    );
    println!(
        "\nHost CPU per warm local spawn (spawn, first call, kill; host and guests): {} \
         (median of {runs} runs). Killing a process and waiting for its end (untimed \
         above) takes {} (p50).",
        time(median(&mut local_cpu)),
        time(med(&local, "kill_wait_p50_ns")),
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// rpc

/// `Host.peerId` on `host`, `count` times with `inflight` outstanding, from
/// this process; same report as the bench ROM's loops.
async fn native_peer_id_loop(host: &host::Client, count: u64, inflight: usize) -> Result<Report> {
    let mut latencies = Vec::with_capacity(count as usize);
    let mut pending = FuturesUnordered::new();
    let started = Instant::now();
    let mut issued = 0;
    while issued < count || !pending.is_empty() {
        while issued < count && pending.len() < inflight {
            let at = Instant::now();
            let promise = host.peer_id_request().send().promise;
            pending.push(async move {
                promise.await?.get()?.get_peer_id()?;
                anyhow::Ok(at.elapsed().as_nanos() as f64)
            });
            issued += 1;
        }
        if let Some(latency) = pending.next().await {
            latencies.push(latency?);
        }
    }
    let elapsed = started.elapsed().as_nanos() as f64;
    latencies.sort_by(f64::total_cmp);
    let mut report = Report::new();
    report.insert("n".to_owned(), count as f64);
    report.insert("elapsed_ns".to_owned(), elapsed);
    report.insert("p50_ns".to_owned(), percentile(&latencies, 50.0));
    report.insert("p99_ns".to_owned(), percentile(&latencies, 99.0));
    Ok(report)
}

async fn rpc_group() -> Result<()> {
    let runs = runs();
    let rom = std::fs::read(ww_tests::rom("bench"))?;
    let dir = tempfile::tempdir()?;
    let a = Host::start_cached(&dir.path().join("a"), &dir.path().join("a-cache"), &[]);
    let b = Host::start_cached(
        &dir.path().join("b"),
        &dir.path().join("b-cache"),
        &[a.addr.as_str()],
    );
    eprintln!("rpc: host A is pid {}, host B is pid {}", a.pid(), b.pid());
    let node = driver_node().await?;
    let host = connect(&node, &a.addr).await?;
    wait_for_view(&host, 2).await?;
    let (_, guest) = spawn_stepwise(&executor_of(&host), &RomRef::Bytes(&rom)).await?;
    let me = std::process::id();

    struct Row {
        what: &'static str,
        inflight: usize,
        reports: Vec<Report>,
        cpu_per_call: Vec<f64>,
    }
    let mut rows = Vec::new();
    let configs: [(&str, usize, u64); 6] = [
        ("guest → its own host (transport)", 1, 20_000),
        ("guest → its own host (transport)", 64, 100_000),
        ("native client → host (libp2p)", 1, 5_000),
        ("native client → host (libp2p)", 64, 50_000),
        ("guest on A → host B (transport, then A→B libp2p)", 1, 5_000),
        (
            "guest on A → host B (transport, then A→B libp2p)",
            64,
            50_000,
        ),
    ];
    for (index, (what, inflight, count)) in configs.into_iter().enumerate() {
        eprintln!("rpc: {what}, {inflight} in flight");
        let mut row = Row {
            what,
            inflight,
            reports: Vec::new(),
            cpu_per_call: Vec::new(),
        };
        if index / 2 == 1 {
            // Warm the connection up first.
            native_peer_id_loop(&host, 500, inflight).await?;
        }
        for _ in 0..runs {
            let pids = [a.pid(), b.pid(), me];
            let before = cpu_of(&pids);
            let report = match index / 2 {
                0 => command(&host, &guest, &format!("host-rpc {count} {inflight}")).await?,
                1 => native_peer_id_loop(&host, count, inflight).await?,
                _ => {
                    command(
                        &host,
                        &guest,
                        &format!("remote-rpc {} {count} {inflight}", b.peer_id),
                    )
                    .await?
                }
            };
            let calls = count + if index / 2 == 1 { 0 } else { 500 };
            row.cpu_per_call
                .push(cpu_of(&pids).saturating_sub(before) as f64 / calls as f64);
            row.reports.push(report);
        }
        rows.push(row);
    }
    kill(&guest).await?;

    println!(
        "capnp round trips of `Host.peerId` (a 52-byte answer). Real `ww start` hosts \
         (release build) on loopback; guests are `bench.wasm` processes spawned on host A. \
         Latency is per call, from issue to answer; calls/s is calls over the loop's wall \
         time; CPU is the sum over host A, host B and the native client per call \
         (/proc schedstat), so it includes the guest. Medians of {runs} runs; calls/s \
         shows the range.\n"
    );
    println!("| path | in flight | calls | p50 | p99 | calls/s | CPU per call |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in &mut rows {
        let per_s: Vec<f64> = row
            .reports
            .iter()
            .map(|r| r["n"] / (r["elapsed_ns"] / 1e9))
            .collect();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.what,
            row.inflight,
            row.reports[0]["n"],
            time(med(&row.reports, "p50_ns")),
            time(med(&row.reports, "p99_ns")),
            spread(&per_s, rate),
            time(median(&mut row.cpu_per_call)),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// channels

/// Capacity of the throughput channels.
const CHANNEL_CAPACITY: u32 = 1024;

/// `max` of each `recvBatch`.
const RECV_BATCH_MAX: u32 = 256;

fn size_name(size: usize) -> String {
    if size >= 1024 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn receiver_name(recv_inflight: usize) -> String {
    match recv_inflight {
        0 => format!("`recvBatch({RECV_BATCH_MAX})`, 1 call at a time"),
        1 => "`recv`, 1 call at a time".to_owned(),
        n => format!("`recv`, {n} calls in flight"),
    }
}

async fn channel_group() -> Result<()> {
    let runs = runs();
    let rom = std::fs::read(ww_tests::rom("bench"))?;
    let dir = tempfile::tempdir()?;
    let a = Host::start_cached(&dir.path().join("a"), &dir.path().join("a-cache"), &[]);
    let b = Host::start_cached(
        &dir.path().join("b"),
        &dir.path().join("b-cache"),
        &[a.addr.as_str()],
    );
    let node = driver_node().await?;
    let host = connect(&node, &a.addr).await?;
    wait_for_view(&host, 2).await?;
    eprintln!(
        "channels: host A is pid {}, host B is pid {}",
        a.pid(),
        b.pid()
    );
    let host_b = dial(&host, &b.peer_id);
    let (_, on_a) = spawn_stepwise(&executor_of(&host), &RomRef::Bytes(&rom)).await?;
    let (_, on_b) = spawn_stepwise(&executor_of(&host_b), &RomRef::Bytes(&rom)).await?;
    let pids = [a.pid(), b.pid()];
    let mut serial = 0;

    // Throughput: sender on A → channel on B → receiver on B.
    struct Row {
        size: usize,
        send_inflight: usize,
        /// `recv` calls in flight, or 0 for `recvBatch` one call at a time.
        recv_inflight: usize,
        count: u64,
        sends: Vec<Report>,
        recvs: Vec<Report>,
        cpu_per_message: Vec<f64>,
    }
    let configs: [(usize, usize, usize, u64); 8] = [
        (64, 1, 1, 5_000),
        (64, 1, 0, 5_000),
        (64, 64, 64, 50_000),
        (64, 64, 0, 50_000),
        (4096, 1, 1, 5_000),
        (4096, 1, 0, 5_000),
        (4096, 64, 64, 50_000),
        (4096, 64, 0, 50_000),
    ];
    let mut rows = Vec::new();
    for (size, send_inflight, recv_inflight, count) in configs {
        eprintln!(
            "channels: {size} B, {send_inflight} sends in flight, {}",
            receiver_name(recv_inflight)
        );
        let mut row = Row {
            size,
            send_inflight,
            recv_inflight,
            count,
            sends: Vec::new(),
            recvs: Vec::new(),
            cpu_per_message: Vec::new(),
        };
        for _ in 0..runs {
            serial += 1;
            let base = format!("/{}/bench/c{serial}", b.peer_id);
            let (tx, rx) = new_channel(&host_b, CHANNEL_CAPACITY).await?;
            anchor_cap(&host, &format!("{base}/tx"), tx).await?;
            anchor_cap(&host, &format!("{base}/rx"), rx).await?;
            let before = cpu_of(&pids);
            let send = format!("chan-send {base}/tx {count} {size} {send_inflight}");
            let recv = if recv_inflight == 0 {
                format!("chan-recv-batch {base}/rx {count} {RECV_BATCH_MAX}")
            } else {
                format!("chan-recv {base}/rx {count} {recv_inflight}")
            };
            let send = command(&host, &on_a, &send);
            let recv = command(&host, &on_b, &recv);
            let (send, recv) = futures::future::join(send, recv).await;
            row.cpu_per_message
                .push(cpu_of(&pids).saturating_sub(before) as f64 / count as f64);
            row.sends.push(send?);
            row.recvs.push(recv?);
            let mut remove = walk(&host, &format!("/{}", b.peer_id)).remove_request();
            remove.get().set_name("bench");
            remove.send().promise.await?;
        }
        rows.push(row);
    }

    // Latency: ping on A → channel on B → pong on B → channel on A → A.
    let mut pings = Vec::new();
    for size in [64usize, 4096] {
        eprintln!("channels: ping-pong, {size} B");
        let count = 3_000;
        let mut reports = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..runs {
            serial += 1;
            let there = format!("/{}/bench/p{serial}", b.peer_id);
            let back = format!("/{}/bench/p{serial}", a.peer_id);
            let (tx, rx) = new_channel(&host_b, 16).await?;
            anchor_cap(&host, &format!("{there}/tx"), tx).await?;
            anchor_cap(&host, &format!("{there}/rx"), rx).await?;
            let (tx, rx) = new_channel(&host, 16).await?;
            anchor_cap(&host, &format!("{back}/tx"), tx).await?;
            anchor_cap(&host, &format!("{back}/rx"), rx).await?;
            let before = cpu_of(&pids);
            let ping = format!("ping {there}/tx {back}/rx {count} {size}");
            let pong = format!("pong {there}/rx {back}/tx {count}");
            let ping = command(&host, &on_a, &ping);
            let pong = command(&host, &on_b, &pong);
            let (ping, pong) = futures::future::join(ping, pong).await;
            pong?;
            cpu.push(cpu_of(&pids).saturating_sub(before) as f64 / count as f64);
            reports.push(ping?);
            for peer in [&a.peer_id, &b.peer_id] {
                let mut remove = walk(&host, &format!("/{peer}")).remove_request();
                remove.get().set_name("bench");
                remove.send().promise.await?;
            }
        }
        pings.push((size, reports, cpu));
    }
    kill(&on_a).await?;
    kill(&on_b).await?;

    println!(
        "A guest on host A sends to a channel hosted on host B, whose `Sender` it resolved \
         through its own host's root anchor (`/<B>/bench/../tx`: calls go guest → A over \
         its transport → B over libp2p); a guest on host B receives from the `Receiver` anchored \
         beside it. This is the path Raft messages take. Real `ww start` hosts (release \
         build) on loopback, channel capacity {CHANNEL_CAPACITY}. Messages/s is measured by \
         the receiver (first to last arrival); send latency is per `send` call, issue to return; CPU is \
         hosts A + B (guests included) per message. Medians of {runs} runs; messages/s \
         shows the range.\n"
    );
    println!(
        "| size | sends in flight | receiver | messages | messages/s | MB/s | send p50 | send p99 | messages per receive call | CPU per message | out of order |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &mut rows {
        let per_s: Vec<f64> = row
            .recvs
            .iter()
            .map(|r| r["rate_n"] / (r["elapsed_ns"] / 1e9))
            .collect();
        let mut per_s_sorted = per_s.clone();
        let mb_s = median(&mut per_s_sorted) * row.size as f64 / 1e6;
        let per_call: Vec<f64> = row.recvs.iter().map(|r| r["n"] / r["calls"]).collect();
        println!(
            "| {} | {} | {} | {} | {} | {:.1} | {} | {} | {:.1} | {} | {} |",
            size_name(row.size),
            row.send_inflight,
            receiver_name(row.recv_inflight),
            row.count,
            spread(&per_s, rate),
            mb_s,
            time(med(&row.sends, "p50_ns")),
            time(med(&row.sends, "p99_ns")),
            median(&mut per_call.clone()),
            time(median(&mut row.cpu_per_message)),
            med(&row.recvs, "out_of_order"),
        );
    }
    println!(
        "\nRound trip through two channels: a guest on A sends to a channel on B and waits \
         for the answer on a channel on A; a guest on B receives and sends it back (each \
         resolved its remote channel through its own host). One message in flight.\n"
    );
    println!("| size | round trips | p50 | p99 | max | round trips/s | CPU per round trip |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (size, reports, mut cpu) in pings {
        let per_s: Vec<f64> = reports
            .iter()
            .map(|r| r["n"] / (r["elapsed_ns"] / 1e9))
            .collect();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            size_name(size),
            reports[0]["n"],
            time(med(&reports, "p50_ns")),
            time(med(&reports, "p99_ns")),
            time(med(&reports, "max_ns")),
            spread(&per_s, rate),
            time(median(&mut cpu)),
        );
    }
    Ok(())
}
