//! `make bench-raft-core`: three replicas in one process, each on its own
//! thread with its own directory of real files and real fsyncs, connected
//! by channels. Closed-loop clients (1, 16, 128) propose 256-byte values to
//! the leader: each client sends its next command when the previous one
//! committed and applied. Prints a markdown table: throughput, latency,
//! fsyncs and entries per fsync (the figure that shows group commit).

// A benchmark that cannot run panics with a message; it is not host code.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use raft_core::{
    ApplyContext, Bootstrap, Config, Counters, FsDir, Node, Options, Output, SendError,
    StateMachine, Transport,
};

const REPLICA_COUNT: u64 = 3;
const VALUE_BYTES: usize = 256;
const TICK: Duration = Duration::from_millis(10);
const WARMUP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(4);
const CLIENT_LEVELS: [usize; 3] = [1, 16, 128];
/// Inputs a replica takes before it processes a Ready: bounds a Ready.
const INPUTS_PER_READY_MAX_COUNT: usize = 4_096;

/// Keeps the last value per key, like a small KV store.
#[derive(Default)]
struct Store {
    values: BTreeMap<u64, Vec<u8>>,
}

impl StateMachine for Store {
    fn apply(&mut self, _ctx: &ApplyContext, command: &[u8]) -> Vec<u8> {
        if command.len() >= 8 {
            let mut key = [0u8; 8];
            key.copy_from_slice(&command[..8]);
            self.values
                .insert(u64::from_le_bytes(key), command[8..].to_vec());
        }
        Vec::new()
    }
    fn query(&self, _query: &[u8]) -> Vec<u8> {
        Vec::new()
    }
    fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (key, value) in &self.values {
            out.extend_from_slice(&key.to_le_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
        out
    }
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let mut values = BTreeMap::new();
        let mut at = 0;
        while at + 12 <= snapshot.len() {
            let mut key = [0u8; 8];
            key.copy_from_slice(&snapshot[at..at + 8]);
            let mut len = [0u8; 4];
            len.copy_from_slice(&snapshot[at + 8..at + 12]);
            let len = u32::from_le_bytes(len) as usize;
            at += 12;
            let value = snapshot.get(at..at + len).ok_or("truncated snapshot")?;
            values.insert(u64::from_le_bytes(key), value.to_vec());
            at += len;
        }
        self.values = values;
        Ok(())
    }
    fn validate_snapshot(&self, snapshot: &[u8]) -> Result<(), String> {
        Store::default().restore(snapshot)
    }
}

enum Input {
    Envelope(Vec<u8>),
    Propose {
        client_id: u64,
        seq: u64,
        command: Vec<u8>,
    },
    Register {
        nonce: u64,
    },
    Counters(Sender<Counters>),
    Stop,
}

struct Channels {
    peers: Vec<Sender<Input>>,
}

impl Transport for Channels {
    fn send(&mut self, to: u64, envelope: Vec<u8>) -> Result<(), SendError> {
        let peer = self.peers.get((to - 1) as usize).ok_or_else(|| SendError {
            to,
            reason: "unknown".into(),
        })?;
        peer.send(Input::Envelope(envelope)).map_err(|_| SendError {
            to,
            reason: "stopped".into(),
        })
    }
}

/// A proposal's outcome, sent to the client driver.
struct Done {
    /// The proposer, or a registration's nonce.
    client_id: u64,
    /// A registration's new session id.
    registered: Option<u64>,
    ok: bool,
    error: Option<raft_core::RequestError>,
}

/// Where the replicas' directories go: `RAFT_BENCH_DIR`, or the system
/// temporary directory. It must be on a real disk: on a tmpfs, fsync costs
/// nothing and the figures mean nothing.
fn bench_dir() -> std::path::PathBuf {
    std::env::var_os("RAFT_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn replica(
    mut node: Node<Store, FsDir>,
    inbox: Receiver<Input>,
    mut transport: Channels,
    done: Sender<Done>,
    leader: Arc<AtomicU64>,
) {
    let mut next_tick = Instant::now() + TICK;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        let first = match inbox.recv_timeout(wait) {
            Ok(input) => Some(input),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Group commit: everything that arrived while the last fsync ran
        // goes into this Ready.
        let mut inputs: Vec<Input> = first.into_iter().collect();
        while inputs.len() < INPUTS_PER_READY_MAX_COUNT {
            match inbox.try_recv() {
                Ok(input) => inputs.push(input),
                Err(_) => break,
            }
        }
        for input in inputs {
            match input {
                Input::Envelope(bytes) => {
                    node.step(&bytes);
                }
                Input::Propose {
                    client_id,
                    seq,
                    command,
                } => {
                    if let Err(error) = node.propose(client_id, seq, now_ms(), command) {
                        let _ = done.send(Done {
                            client_id,
                            registered: None,
                            ok: false,
                            error: Some(error),
                        });
                    }
                }
                Input::Register { nonce } => {
                    if let Err(error) = node.register(nonce, now_ms()) {
                        let _ = done.send(Done {
                            client_id: nonce,
                            registered: None,
                            ok: false,
                            error: Some(error),
                        });
                    }
                }
                Input::Counters(reply) => {
                    let _ = reply.send(node.counters());
                }
                Input::Stop => return,
            }
        }
        while Instant::now() >= next_tick {
            node.tick();
            next_tick += TICK;
        }
        let outputs = match node.process(&mut transport) {
            Ok(outputs) => outputs,
            Err(error) => {
                eprintln!("replica {} failed: {error}", node.id());
                return;
            }
        };
        for output in outputs {
            match output {
                Output::Proposal {
                    client_id, result, ..
                } => {
                    let _ = done.send(Done {
                        client_id,
                        registered: None,
                        ok: result.is_ok(),
                        error: result.err(),
                    });
                }
                Output::Registered { nonce, result } => {
                    let _ = done.send(Done {
                        client_id: nonce,
                        registered: result.as_ref().ok().copied(),
                        ok: result.is_ok(),
                        error: result.err(),
                    });
                }
                Output::Event(raft_core::Event::LeaderChanged {
                    leader_id: Some(id),
                    ..
                }) if id == node.id() => {
                    leader.store(id, Ordering::SeqCst);
                }
                _ => {}
            }
        }
    }
}

struct Cluster {
    inboxes: Vec<Sender<Input>>,
    threads: Vec<JoinHandle<()>>,
    done: Receiver<Done>,
    leader: Arc<AtomicU64>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    fn start() -> Cluster {
        // Production-like timing on a 10 ms tick: heartbeats every 100 ms,
        // elections after 1-2 s, so a slow fsync does not depose the leader.
        let config = Config {
            heartbeat_ticks: 10,
            election_ticks_min: 100,
            election_ticks_max: 200,
            request_timeout_ticks: 300,
            snapshot_interval_entries: 20_000,
            catch_up_entries: 5_000,
            ..Config::default()
        };
        let voters: Vec<(u64, Vec<u8>)> = (1..=REPLICA_COUNT).map(|id| (id, Vec::new())).collect();
        let (done_tx, done) = mpsc::channel();
        let leader = Arc::new(AtomicU64::new(0));
        let channels: Vec<(Sender<Input>, Receiver<Input>)> =
            (0..REPLICA_COUNT).map(|_| mpsc::channel()).collect();
        let inboxes: Vec<Sender<Input>> = channels.iter().map(|(tx, _)| tx.clone()).collect();
        let mut dirs = Vec::new();
        let mut threads = Vec::new();
        for (index, (_, inbox)) in channels.into_iter().enumerate() {
            let id = index as u64 + 1;
            let dir = tempfile::tempdir_in(bench_dir()).expect("tempdir");
            let bootstrap = Bootstrap {
                group_id: 7,
                id,
                voters: voters.clone(),
                max_sessions_count: 10_000,
                session_timeout_ms: 3_600_000,
            };
            let node = Node::bootstrap(
                FsDir::open(dir.path()).expect("dir"),
                config.clone(),
                Store::default(),
                bootstrap,
                Options::with_seed(id),
            )
            .expect("bootstrap");
            dirs.push(dir);
            let transport = Channels {
                peers: inboxes.clone(),
            };
            let (done_tx, leader) = (done_tx.clone(), leader.clone());
            threads.push(std::thread::spawn(move || {
                replica(node, inbox, transport, done_tx, leader)
            }));
        }
        Cluster {
            inboxes,
            threads,
            done,
            leader,
            _dirs: dirs,
        }
    }

    fn wait_for_leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let id = self.leader.load(Ordering::SeqCst);
            if id != 0 {
                return id;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no leader within 10 s");
    }

    fn counters(&self) -> Vec<Counters> {
        self.inboxes
            .iter()
            .map(|inbox| {
                let (tx, rx) = mpsc::channel();
                inbox.send(Input::Counters(tx)).expect("replica alive");
                rx.recv().expect("counters")
            })
            .collect()
    }

    fn stop(self) {
        for inbox in &self.inboxes {
            let _ = inbox.send(Input::Stop);
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

struct Row {
    clients: usize,
    ops_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    fsyncs_per_s: f64,
    fsync_count: u64,
    leader_entries_per_fsync: f64,
    all_entries_per_fsync: f64,
    errors: u64,
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 * fraction) as usize).min(sorted.len() - 1);
    sorted[at].as_secs_f64() * 1000.0
}

/// Registers one session per client (nonces `client_base + c`); returns
/// their ids by client.
fn register(cluster: &Cluster, clients: usize, client_base: u64) -> Vec<u64> {
    let mut ids = vec![0u64; clients];
    let mut missing = clients;
    let deadline = Instant::now() + Duration::from_secs(30);
    while missing > 0 {
        assert!(Instant::now() < deadline, "registration did not finish");
        let leader = cluster.leader.load(Ordering::SeqCst).max(1);
        for (c, id) in ids.iter().enumerate() {
            if *id == 0 {
                let nonce = client_base + c as u64;
                let _ = cluster.inboxes[(leader - 1) as usize].send(Input::Register { nonce });
            }
        }
        while let Ok(done) = cluster.done.recv_timeout(Duration::from_millis(500)) {
            let Some(c) = done
                .client_id
                .checked_sub(client_base)
                .map(|c| c as usize)
                .filter(|c| *c < clients)
            else {
                continue;
            };
            if let (Some(id), 0) = (done.registered, ids[c]) {
                ids[c] = id;
                missing -= 1;
            }
            if missing == 0 {
                break;
            }
        }
    }
    ids
}

fn run_level(cluster: &Cluster, clients: usize, client_base: u64) -> Row {
    let ids = register(cluster, clients, client_base);
    let by_id: std::collections::HashMap<u64, usize> =
        ids.iter().enumerate().map(|(c, id)| (*id, c)).collect();
    let mut seq = vec![0u64; clients];
    let mut sent_at = vec![Instant::now(); clients];
    let value = vec![0xA5u8; VALUE_BYTES];
    // A retry (after an error) sends the same seq again, to whichever
    // replica leads now; latency counts from the first attempt.
    let propose = |c: usize, retry: bool, seq: &mut Vec<u64>, sent_at: &mut Vec<Instant>| {
        if !retry {
            seq[c] += 1;
            sent_at[c] = Instant::now();
        }
        let leader = cluster.leader.load(Ordering::SeqCst).max(1);
        let inbox = &cluster.inboxes[(leader - 1) as usize];
        let mut command = (c as u64).to_le_bytes().to_vec();
        command.extend_from_slice(&value);
        let client_id = ids[c];
        inbox
            .send(Input::Propose {
                client_id,
                seq: seq[c],
                command,
            })
            .expect("leader alive");
    };
    for c in 0..clients {
        propose(c, false, &mut seq, &mut sent_at);
    }
    let started = Instant::now();
    let mut measuring_since = None;
    let mut before = Vec::new();
    let mut latencies = Vec::new();
    let mut completed = 0u64;
    let mut errors = 0u64;
    loop {
        let elapsed = started.elapsed();
        if measuring_since.is_none() && elapsed >= WARMUP {
            before = cluster.counters();
            measuring_since = Some(Instant::now());
        }
        if measuring_since.is_some_and(|since| since.elapsed() >= MEASURE) {
            break;
        }
        let Ok(done) = cluster.done.recv_timeout(Duration::from_secs(5)) else {
            panic!("no progress for 5 s with {clients} clients");
        };
        let Some(&c) = by_id
            .get(&done.client_id)
            .filter(|_| done.registered.is_none())
        else {
            continue; // a late outcome from the previous level
        };
        if done.ok {
            if measuring_since.is_some() {
                latencies.push(sent_at[c].elapsed());
                completed += 1;
            }
            propose(c, false, &mut seq, &mut sent_at);
        } else {
            errors += 1;
            if errors <= 3 {
                eprintln!("{clients} clients: {:?}", done.error);
            }
            // Back off before retrying, e.g. while a new leader is elected.
            std::thread::sleep(Duration::from_millis(1));
            propose(c, true, &mut seq, &mut sent_at);
        }
    }
    let measured = measuring_since.map_or(MEASURE, |since| since.elapsed());
    let after = cluster.counters();
    // Let the in-flight proposals finish before the next level.
    let mut outstanding = clients;
    while outstanding > 0 {
        match cluster.done.recv_timeout(Duration::from_secs(5)) {
            Ok(_) => outstanding -= 1,
            Err(_) => break,
        }
    }
    latencies.sort_unstable();
    let delta =
        |pick: fn(&Counters) -> u64, index: usize| pick(&after[index]) - pick(&before[index]);
    let fsyncs: u64 = (0..after.len())
        .map(|i| delta(|c| c.storage.fsync_count, i))
        .sum();
    let entries: u64 = (0..after.len())
        .map(|i| delta(|c| c.storage.entries_persisted_count, i))
        .sum();
    let leader_index = (cluster.leader.load(Ordering::SeqCst).max(1) - 1) as usize;
    let leader_fsyncs = delta(|c| c.storage.fsync_count, leader_index).max(1);
    let leader_entries = delta(|c| c.storage.entries_persisted_count, leader_index);
    Row {
        clients,
        ops_per_s: completed as f64 / measured.as_secs_f64(),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        fsyncs_per_s: fsyncs as f64 / measured.as_secs_f64(),
        fsync_count: fsyncs,
        leader_entries_per_fsync: leader_entries as f64 / leader_fsyncs as f64,
        all_entries_per_fsync: entries as f64 / fsyncs.max(1) as f64,
        errors,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we do
    // not support, so ignore them all.
    let cluster = Cluster::start();
    cluster.wait_for_leader();
    let mut rows = Vec::new();
    for (level, clients) in CLIENT_LEVELS.into_iter().enumerate() {
        rows.push(run_level(&cluster, clients, 1_000_000 * (level as u64 + 1)));
    }
    cluster.stop();

    println!("Three replicas in one process, one thread each, real files and `fdatasync` in");
    println!(
        "`{}` (set `RAFT_BENCH_DIR` to change it); closed-loop clients propose",
        bench_dir().display()
    );
    println!(
        "{VALUE_BYTES}-byte values to the leader; a request completes when its entry is committed"
    );
    println!(
        "(fsynced on a majority) and applied. {} s per level after a {} ms warm-up.",
        MEASURE.as_secs(),
        WARMUP.as_millis()
    );
    println!("This VM's `fdatasync` swings between a fast phase (~0.1-0.3 ms) and a throttled");
    println!("one (~4 ms), minute to minute: ops/s and latency move with it, entries per fsync");
    println!("(group commit) is the stable figure. fsyncs count all three replicas.");
    println!();
    println!("| clients | ops/s | p50 latency | p99 latency | fsyncs | fsyncs/s | entries per fsync (leader) | entries per fsync (all) | errors |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.0} | {:.1} | {:.1} | {} |",
            row.clients,
            row.ops_per_s,
            row.p50_ms,
            row.p99_ms,
            row.fsync_count,
            row.fsyncs_per_s,
            row.leader_entries_per_fsync,
            row.all_entries_per_fsync,
            row.errors
        );
    }
}
