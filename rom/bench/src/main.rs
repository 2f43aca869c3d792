//! The runtime benchmark ROM: the guest side of `make bench-runtime`
//! (`tests/benches/runtime.rs` drives it; docs/benchmarks.md has the
//! figures). Every measurement is taken inside the guest, on the WASI
//! monotonic clock, so it is what a ROM sees.
//!
//! Arguments:
//!
//! - `serve`: exports a `Sender`, the *inbox*, and waits. Each message sent
//!   to the inbox is a command (UTF-8 words in `data`); the send returns
//!   once the command has run, and the command's result (one line,
//!   `ok key=value ...` or `error ...`) is sent to the reply `Sender` the
//!   message carries as its first capability, if any.
//! - `exit`: exits at once (for timing `ww run` end to end).
//! - `peer-id`: one `Host.peerId` call, then exits.
//!
//! Commands:
//!
//! - `noop`: nothing (the first call a freshly spawned process answers).
//! - `host-rpc COUNT INFLIGHT`: `Host.peerId` on this process's host.
//! - `remote-rpc PEER COUNT INFLIGHT`: `Host.peerId` on host PEER, reached
//!   through this process's host (`Host.dial`).
//! - `spawn HASH COUNT [PEER]`: spawns this ROM (by its blake3 HASH, hex,
//!   which the host must have) with `serve`, on this host or on PEER, and
//!   times spawn → `Process.bootstrap` → a `noop` answered by the child
//!   (pipelined: one round trip);
//!   then kills the child and waits for its end (timed apart).
//! - `chan-send PATH COUNT SIZE INFLIGHT`: resolves the `Sender` anchored at
//!   PATH through this process's host and sends COUNT messages of SIZE
//!   bytes (the first 8 bytes number them), INFLIGHT at a time.
//! - `chan-recv PATH COUNT INFLIGHT`: receives COUNT messages from the
//!   `Receiver` anchored at PATH, INFLIGHT `recv` calls at a time; times
//!   the first to the last arrival and counts messages out of order.
//! - `chan-recv-batch PATH COUNT MAX`: the same with `recvBatch(MAX)`, one
//!   call at a time (as Raft replicas drain their inboxes).
//! - `ping TX RX COUNT SIZE`: sends to TX, waits for the answer on RX, and
//!   times each round trip. `pong RX TX COUNT` is the other end.
//!
//! Reports go to the reply sender.

use std::future::Future;

use anyhow::{anyhow, bail, Context};
use capnp::capability::{FromClientHook, Rc as CapRc};
use futures::stream::{FuturesUnordered, StreamExt};
use ww_guest::ww_api::ww_capnp::{value, RestartPolicy};
use ww_guest::ww_api::{anchor, executor, host, process, receiver, sender};

/// Untimed calls before a timed RPC loop (connections, caches, allocator).
const WARMUP_CALLS: u64 = 500;

const USAGE: &str = "usage: ww run bench.wasm serve | exit | peer-id
  the guest side of `make bench-runtime` (see rom/bench/src/main.rs)";

fn main() {
    ww_guest::run(|env| async move {
        if ww_guest::wants_help(&env.args) {
            println!("{USAGE}");
            return Ok(());
        }
        match env.args.first().map(String::as_str) {
            Some("serve") => {
                env.export(capnp_rpc::new_client::<sender::Client, _>(Inbox {
                    host: env.host.clone(),
                }));
                // Serve until killed or until the host goes away.
                futures::future::pending::<()>().await;
                Ok(())
            }
            Some("exit") => Ok(()),
            Some("peer-id") => {
                let response = env.host.peer_id_request().send().promise.await?;
                response.get()?.get_peer_id()?;
                Ok(())
            }
            _ => bail!("unknown command {:?}\n{USAGE}", env.args),
        }
    })
}

fn now_ns() -> u64 {
    wasip2::clocks::monotonic_clock::now()
}

/// The inbox: runs commands.
struct Inbox {
    host: host::Client,
}

impl sender::Server for Inbox {
    async fn send(
        self: CapRc<Self>,
        params: sender::SendParams,
        _: sender::SendResults,
    ) -> Result<(), capnp::Error> {
        let (command, reply) = {
            let message = params.get()?.get_message()?;
            let command = String::from_utf8_lossy(message.get_data()?).into_owned();
            let reply: Option<sender::Client> = match message.get_caps()?.iter().next() {
                Some(entry) => Some(entry.get_cap().get_as_capability()?),
                None => None,
            };
            (command, reply)
        };
        let line = match run_command(&self.host, &command).await {
            Ok(line) => format!("ok {line}"),
            Err(err) => format!("error {command}: {err:#}"),
        };
        if let Some(reply) = reply {
            let mut request = reply.send_request();
            request.get().init_message().set_data(line.as_bytes());
            request.send().promise.await?;
        }
        Ok(())
    }

    async fn close(
        self: CapRc<Self>,
        _: sender::CloseParams,
        _: sender::CloseResults,
    ) -> Result<(), capnp::Error> {
        Ok(())
    }
}

fn number<T: std::str::FromStr>(word: &str) -> anyhow::Result<T> {
    word.parse()
        .map_err(|_| anyhow!("{word:?} is not a number"))
}

async fn run_command(host: &host::Client, command: &str) -> anyhow::Result<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.as_slice() {
        ["noop"] => Ok(String::new()),
        ["host-rpc", count, inflight] => {
            let stats = peer_id_loop(host.clone(), number(count)?, number(inflight)?).await?;
            Ok(stats.line())
        }
        ["remote-rpc", peer, count, inflight] => {
            let remote = dial(host, peer);
            let stats = peer_id_loop(remote, number(count)?, number(inflight)?).await?;
            Ok(stats.line())
        }
        ["spawn", hash, count] => {
            spawn_loop(
                host.executor_request().send().pipeline.get_executor(),
                hash,
                number(count)?,
            )
            .await
        }
        ["spawn", hash, count, peer] => {
            let executor = dial(host, peer)
                .executor_request()
                .send()
                .pipeline
                .get_executor();
            spawn_loop(executor, hash, number(count)?).await
        }
        ["chan-send", path, count, size, inflight] => {
            let sender: sender::Client = get_cap(host, path).await?;
            chan_send(&sender, number(count)?, number(size)?, number(inflight)?).await
        }
        ["chan-recv", path, count, inflight] => {
            let receiver: receiver::Client = get_cap(host, path).await?;
            chan_recv(&receiver, number(count)?, number(inflight)?).await
        }
        ["chan-recv-batch", path, count, max] => {
            let receiver: receiver::Client = get_cap(host, path).await?;
            chan_recv_batch(&receiver, number(count)?, number(max)?).await
        }
        ["ping", tx, rx, count, size] => {
            let sender: sender::Client = get_cap(host, tx).await?;
            let receiver: receiver::Client = get_cap(host, rx).await?;
            ping(&sender, &receiver, number(count)?, number(size)?).await
        }
        ["pong", rx, tx, count] => {
            let receiver: receiver::Client = get_cap(host, rx).await?;
            let sender: sender::Client = get_cap(host, tx).await?;
            pong(&receiver, &sender, number(count)?).await
        }
        _ => bail!("unknown command; see rom/bench/src/main.rs"),
    }
}

fn dial(host: &host::Client, peer: &str) -> host::Client {
    let mut request = host.dial_request();
    request.get().set_peer_id(peer);
    request.send().pipeline.get_host()
}

async fn get_cap<C: capnp::capability::FromClientHook>(
    host: &host::Client,
    path: &str,
) -> anyhow::Result<C> {
    let root: anchor::Client = host.root_request().send().pipeline.get_anchor();
    let mut walk = root.walk_request();
    walk.get().set_path(path);
    let anchor = walk.send().pipeline.get_anchor();
    let response = anchor
        .get_request()
        .send()
        .promise
        .await
        .with_context(|| format!("resolving {path}"))?;
    match response.get()?.get_value()?.which()? {
        value::Which::Cap(cap) => Ok(cap.get_as_capability()?),
        _ => bail!("{path} holds no capability"),
    }
}

/// Latencies (ns) of one timed loop, and its wall time.
struct Stats {
    latencies: Vec<u64>,
    elapsed_ns: u64,
}

impl Stats {
    fn percentile(sorted: &[u64], p: f64) -> u64 {
        if sorted.is_empty() {
            return 0;
        }
        // Nearest rank.
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    fn line(mut self) -> String {
        self.latencies.sort_unstable();
        let n = self.latencies.len();
        let mean = if n == 0 {
            0
        } else {
            self.latencies.iter().sum::<u64>() / n as u64
        };
        format!(
            "n={n} elapsed_ns={} p50_ns={} p99_ns={} max_ns={} mean_ns={mean}",
            self.elapsed_ns,
            Self::percentile(&self.latencies, 50.0),
            Self::percentile(&self.latencies, 99.0),
            self.latencies.last().copied().unwrap_or(0),
        )
    }
}

/// Runs `call(i)` for i in 0..count with at most `inflight` outstanding,
/// timing each from issue to completion. `call` must send its request
/// before it returns the future.
async fn timed<F, Fut>(count: u64, inflight: usize, mut call: F) -> anyhow::Result<Stats>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let inflight = inflight.max(1);
    let mut latencies = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut pending = FuturesUnordered::new();
    let start = now_ns();
    let mut next = 0;
    while next < count || !pending.is_empty() {
        while next < count && pending.len() < inflight {
            let issued = now_ns();
            let call = call(next);
            pending.push(async move { call.await.map(|()| now_ns() - issued) });
            next += 1;
        }
        if let Some(latency) = pending.next().await {
            latencies.push(latency?);
        }
    }
    Ok(Stats {
        latencies,
        elapsed_ns: now_ns() - start,
    })
}

async fn peer_id_loop(host: host::Client, count: u64, inflight: usize) -> anyhow::Result<Stats> {
    let call = |_| {
        let promise = host.peer_id_request().send().promise;
        async move {
            promise.await?.get()?.get_peer_id()?;
            Ok(())
        }
    };
    timed(WARMUP_CALLS.min(count), inflight, call).await?;
    timed(count, inflight, call).await
}

fn parse_hash(hex: &str) -> anyhow::Result<[u8; 32]> {
    if hex.len() != 64 {
        bail!("a ROM hash is 64 hex digits");
    }
    let mut hash = [0u8; 32];
    for (index, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * index..2 * index + 2], 16)
            .map_err(|_| anyhow!("{hex:?} is not hex"))?;
    }
    Ok(hash)
}

async fn spawn_loop(executor: executor::Client, hash: &str, count: u64) -> anyhow::Result<String> {
    let hash = parse_hash(hash)?;
    let mut total = Vec::new();
    let mut teardown = Vec::new();
    let start = now_ns();
    for _ in 0..count {
        let started = now_ns();
        let mut request = executor.spawn_request();
        {
            let mut spec = request.get().init_spec();
            spec.reborrow().init_rom().set_hash(&hash);
            spec.reborrow().init_args(1).set(0, "serve");
            spec.set_name("bench-child");
            spec.set_host(true);
            spec.set_restart(RestartPolicy::Never);
        }
        // Pipelined: the spawn, the bootstrap and the first call leave
        // together; the host answers the bootstrap once the child started.
        let process: process::Client = request.send().pipeline.get_process();
        let child = sender::Client::new(
            process
                .bootstrap_request()
                .send()
                .pipeline
                .get_cap()
                .as_cap(),
        );
        let mut noop = child.send_request();
        noop.get().init_message().set_data(b"noop");
        noop.send()
            .promise
            .await
            .context("the child's first call")?;
        let answered = now_ns();
        total.push(answered - started);
        // Untimed: kill, and wait until the child is gone, so the next
        // spawn starts on a quiet host.
        process.kill_request().send().promise.await?;
        process.wait_request().send().promise.await?;
        teardown.push(now_ns() - answered);
    }
    let elapsed_ns = now_ns() - start;
    teardown.sort_unstable();
    let teardown_p50 = Stats::percentile(&teardown, 50.0);
    let line = Stats {
        latencies: total,
        elapsed_ns,
    }
    .line();
    Ok(format!("{line} kill_wait_p50_ns={teardown_p50}"))
}

fn message(n: u64, size: usize) -> Vec<u8> {
    let mut data = vec![0u8; size.max(8)];
    data[..8].copy_from_slice(&n.to_le_bytes());
    data
}

async fn chan_send(
    sender: &sender::Client,
    count: u64,
    size: usize,
    inflight: usize,
) -> anyhow::Result<String> {
    let stats = timed(count, inflight, |n| {
        let mut request = sender.send_request();
        request.get().init_message().set_data(&message(n, size));
        let promise = request.send().promise;
        async move {
            promise.await.with_context(|| format!("send {n}"))?;
            Ok(())
        }
    })
    .await?;
    Ok(stats.line())
}

/// Receives one message; returns its number, or `None` once closed.
async fn recv_one(receiver: &receiver::Client) -> anyhow::Result<Option<u64>> {
    let response = receiver.recv_request().send().promise.await?;
    let response = response.get()?;
    if response.get_closed() {
        return Ok(None);
    }
    let data = response.get_message()?.get_data()?;
    let n = data
        .get(..8)
        .context("a message shorter than 8 bytes")?
        .try_into()
        .map(u64::from_le_bytes)?;
    Ok(Some(n))
}

async fn chan_recv(
    receiver: &receiver::Client,
    count: u64,
    inflight: usize,
) -> anyhow::Result<String> {
    let inflight = inflight.max(1);
    let mut pending = FuturesUnordered::new();
    // By recv call: which message it got.
    let mut got = vec![u64::MAX; usize::try_from(count)?];
    let mut issued = 0u64;
    let mut done = 0u64;
    let mut first = None;
    while done < count {
        while issued < count && pending.len() < inflight {
            let index = issued;
            let call = receiver.recv_request().send().promise;
            pending.push(async move {
                let response = call.await?;
                let response = response.get()?;
                if response.get_closed() {
                    bail!("the channel closed after {index} recv calls");
                }
                let data = response.get_message()?.get_data()?;
                let n = data
                    .get(..8)
                    .context("a message shorter than 8 bytes")?
                    .try_into()
                    .map(u64::from_le_bytes)?;
                anyhow::Ok((index, n))
            });
            issued += 1;
        }
        if let Some(result) = pending.next().await {
            let (index, n) = result?;
            first.get_or_insert_with(now_ns);
            got[usize::try_from(index)?] = n;
            done += 1;
        }
    }
    let elapsed_ns = now_ns() - first.unwrap_or_else(now_ns);
    let out_of_order = got.windows(2).filter(|pair| pair[1] < pair[0]).count();
    // The rate counts the messages that arrived after the first one.
    let rate_n = count.saturating_sub(1);
    Ok(format!(
        "n={count} rate_n={rate_n} elapsed_ns={elapsed_ns} out_of_order={out_of_order} calls={count}"
    ))
}

async fn chan_recv_batch(
    receiver: &receiver::Client,
    count: u64,
    max: u32,
) -> anyhow::Result<String> {
    let mut received = 0u64;
    let mut calls = 0u64;
    let mut out_of_order = 0u64;
    let mut previous = None;
    let mut first: Option<(u64, u64)> = None;
    while received < count {
        let mut request = receiver.recv_batch_request();
        request.get().set_max(max);
        let response = request.send().promise.await?;
        let response = response.get()?;
        if response.get_closed() {
            bail!("the channel closed after {received} messages");
        }
        let messages = response.get_messages()?;
        for item in messages.iter() {
            let data = item.get_message()?.get_data()?;
            let n = data
                .get(..8)
                .context("a message shorter than 8 bytes")?
                .try_into()
                .map(u64::from_le_bytes)?;
            if previous.is_some_and(|previous| n < previous) {
                out_of_order += 1;
            }
            previous = Some(n);
        }
        received += u64::from(messages.len());
        calls += 1;
        first.get_or_insert((now_ns(), received));
    }
    let (started, first_batch) = first.unwrap_or((now_ns(), 0));
    let elapsed_ns = now_ns() - started;
    let rate_n = received - first_batch;
    Ok(format!(
        "n={received} rate_n={rate_n} elapsed_ns={elapsed_ns} out_of_order={out_of_order} calls={calls}"
    ))
}

async fn ping(
    sender: &sender::Client,
    receiver: &receiver::Client,
    count: u64,
    size: usize,
) -> anyhow::Result<String> {
    let round = |n: u64| {
        let mut request = sender.send_request();
        request.get().init_message().set_data(&message(n, size));
        let sent = request.send().promise;
        async move {
            sent.await?;
            match recv_one(receiver).await? {
                Some(m) if m == n => Ok(()),
                Some(m) => bail!("pong {m} for ping {n}"),
                None => bail!("the pong channel closed"),
            }
        }
    };
    let warmup = WARMUP_CALLS.min(count / 2);
    timed(warmup, 1, round).await?;
    let stats = timed(count - warmup, 1, |n| round(n + warmup)).await?;
    Ok(stats.line())
}

async fn pong(
    receiver: &receiver::Client,
    sender: &sender::Client,
    count: u64,
) -> anyhow::Result<String> {
    for _ in 0..count {
        let response = receiver.recv_request().send().promise.await?;
        let data = {
            let response = response.get()?;
            if response.get_closed() {
                bail!("the ping channel closed");
            }
            response.get_message()?.get_data()?.to_vec()
        };
        let mut request = sender.send_request();
        request.get().init_message().set_data(&data);
        request.send().promise.await?;
    }
    Ok(format!("n={count}"))
}
