//! Clients that run each operation as its own `ww run raft.wasm ...`
//! process. Invocation is recorded before the spawn and completion after
//! the exit; the exit code, stdout (results) and stderr (errors) give the
//! outcome.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use queue::{AckOutcome, Delivery};
use raft_core::rng::Rng;
use ww_tests::chaos::{KvInput, KvOutput, Outcome};
use ww_tests::ww_bin;

use crate::driver::{last_json, Shared, KEYS, TOPICS};

/// Longer than the ROM's own retry deadline (30 s), so a client that
/// gives up reports it rather than being cut off.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(40);
/// The lease time consumers ask for.
pub const LEASE_MS: u64 = 3_000;
/// How often a finished process is looked for.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// What one process did.
pub enum Exit {
    /// It exited with this code, stdout and stderr.
    Done {
        code: Option<i32>,
        stdout: String,
        stderr: String,
    },
    /// It ran past [`PROCESS_TIMEOUT`] and was killed.
    TimedOut,
}

/// The compiled-ROM cache the other tests use (target/<profile>/ww-test-cache).
fn cache_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .unwrap()
        .join("ww-test-cache")
}

fn drain(mut stream: impl Read) -> String {
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

/// Runs `ww run --peer A --peer B raft.wasm ARGS`, killing it by pid past
/// the timeout.
pub fn raft(rom: &Path, peers: &[&str], args: &[String]) -> Exit {
    let mut command = Command::new(ww_bin());
    command
        .env("WW_CACHE_DIR", cache_dir())
        .env_remove("WW_PEERS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .arg("run");
    for peer in peers {
        command.arg("--peer").arg(peer);
    }
    command.arg(rom).args(args);
    let mut child: Child = command.spawn().expect("starting ww run");
    // Read both on threads so a chatty process never blocks on a full
    // pipe.
    let stdout = child.stdout.take().unwrap();
    let stdout_reader = std::thread::spawn(move || drain(stdout));
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || drain(stderr));
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for ww run") {
            let stdout = stdout_reader.join().unwrap_or_default();
            let stderr = reader.join().unwrap_or_default();
            return Exit::Done {
                code: status.code(),
                stdout,
                stderr,
            };
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = stdout_reader.join();
            let _ = reader.join();
            return Exit::TimedOut;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// The outcome of a command that failed, from its message: only errors
/// that prove nothing applied count as failed.
fn failure(stderr: &str) -> Outcome {
    if stderr.contains("no host answered")
        || stderr.contains("queue group unavailable")
        || stderr.contains("no topic")
    {
        Outcome::Failed
    } else {
        Outcome::Unknown
    }
}

struct Client<'a> {
    shared: &'a Shared,
    name: String,
    rng: Rng,
    next_value: u64,
    /// The last value this client saw or wrote per key (a cas's OLD).
    known: BTreeMap<&'static str, String>,
}

impl Client<'_> {
    /// A healthy host first, host 0 as the fallback (it takes no faults).
    fn peers(&mut self) -> Vec<String> {
        let healthy: Vec<usize> = {
            let healthy = self.shared.healthy.lock().unwrap();
            (0..healthy.len()).filter(|index| healthy[*index]).collect()
        };
        let first = *self.rng.pick(&healthy);
        let mut peers = vec![self.shared.addrs[first].clone()];
        if first != 0 {
            peers.push(self.shared.addrs[0].clone());
        }
        peers
    }

    fn value(&mut self) -> String {
        self.next_value += 1;
        format!("{}-{}", self.name, self.next_value)
    }

    fn run(&mut self, args: &[String]) -> (u64, u64, Exit) {
        let peers = self.peers();
        let peers: Vec<&str> = peers.iter().map(String::as_str).collect();
        let call_ms = self.shared.now_ms();
        let exit = raft(&self.shared.rom, &peers, args);
        (call_ms, self.shared.now_ms(), exit)
    }

    fn kv(&mut self) {
        let key = *self.rng.pick(&KEYS);
        let roll = self.rng.below(10);
        let input = if roll < 4 {
            KvInput::Put(self.value())
        } else if roll < 8 || !self.known.contains_key(key) {
            KvInput::Get
        } else {
            KvInput::Cas {
                old: self.known[key].clone(),
                new: self.value(),
            }
        };
        let args: Vec<String> = match &input {
            KvInput::Put(value) => vec!["put".into(), key.into(), value.clone()],
            KvInput::Get => vec!["get".into(), key.into()],
            KvInput::Cas { old, new } => vec!["cas".into(), key.into(), old.clone(), new.clone()],
        };
        let (call_ms, return_ms, exit) = self.run(&args);
        let (outcome, output, detail) = match exit {
            Exit::TimedOut => (Outcome::Unknown, None, "timed out".to_owned()),
            Exit::Done {
                code: Some(0),
                stdout,
                ..
            } => {
                let output = match &input {
                    // `get` prints the bare value and a newline.
                    KvInput::Get => KvOutput::Value(Some(
                        stdout.strip_suffix('\n').unwrap_or(&stdout).to_owned(),
                    )),
                    _ => KvOutput::Written,
                };
                (Outcome::Ok, Some(output), String::new())
            }
            Exit::Done { stderr, .. } => {
                let detail = stderr.lines().last().unwrap_or_default().to_owned();
                match &input {
                    KvInput::Get if stderr.contains(&format!("{key} not found")) => {
                        (Outcome::Ok, Some(KvOutput::Value(None)), String::new())
                    }
                    KvInput::Cas { .. }
                        if stderr.contains("cas refused")
                            || stderr.contains("version mismatch")
                            || stderr.contains("no such key") =>
                    {
                        (Outcome::Ok, Some(KvOutput::Refused), detail)
                    }
                    _ => (failure(&stderr), None, detail),
                }
            }
        };
        match (&input, &output) {
            (KvInput::Put(value) | KvInput::Cas { new: value, .. }, Some(KvOutput::Written)) => {
                self.known.insert(key, value.clone());
            }
            (KvInput::Get, Some(KvOutput::Value(Some(value)))) => {
                self.known.insert(key, value.clone());
            }
            _ => {}
        }
        self.shared.recorder().kv(
            &self.name, key, input, call_ms, return_ms, outcome, output, &detail,
        );
    }

    fn enqueue(&mut self, topic: &str) {
        let body = format!("q-{}", self.value());
        self.shared.recorder().enqueue_attempted(body.as_bytes());
        let args = vec![
            "enqueue".into(),
            "--json".into(),
            topic.into(),
            body.clone(),
        ];
        let (call_ms, return_ms, exit) = self.run(&args);
        let (outcome, detail) = match exit {
            Exit::TimedOut => (Outcome::Unknown, "timed out".to_owned()),
            Exit::Done {
                code: Some(0),
                stdout,
                ..
            } => {
                let id = last_json(&stdout).and_then(|json| json["ids"][0].as_u64());
                match id {
                    Some(id) => {
                        self.shared
                            .recorder()
                            .enqueue_acknowledged(topic, body.as_bytes(), id);
                        (Outcome::Ok, format!("id {id}"))
                    }
                    None => (Outcome::Unknown, format!("unparsed: {stdout}")),
                }
            }
            Exit::Done { stderr, .. } => (
                failure(&stderr),
                stderr.lines().last().unwrap_or_default().to_owned(),
            ),
        };
        self.shared.recorder().queue_op(
            &self.name,
            "enqueue",
            format!("enqueue {topic} {body}"),
            call_ms,
            return_ms,
            outcome,
            &detail,
        );
    }

    /// Leases one message and acks it (nine times in ten; otherwise lets
    /// the lease expire, so redelivery is exercised).
    fn consume(&mut self, topic: &str) {
        let args = vec![
            "lease".into(),
            topic.into(),
            "--json".into(),
            "--n".into(),
            "1".into(),
            "--lease-ms".into(),
            LEASE_MS.to_string(),
            "--consumer".into(),
            self.name.clone(),
        ];
        let (call_ms, return_ms, exit) = self.run(&args);
        let mut leased = Vec::new();
        let (outcome, detail) = match exit {
            Exit::TimedOut => (Outcome::Unknown, "timed out".to_owned()),
            Exit::Done {
                code: Some(0),
                stdout,
                ..
            } => match last_json(&stdout).and_then(|json| deliveries(&json)) {
                Some(deliveries) => {
                    self.shared
                        .recorder()
                        .leased(topic, &self.name, &deliveries);
                    let detail = leased_detail(&deliveries);
                    leased = deliveries;
                    (Outcome::Ok, detail)
                }
                None => (Outcome::Unknown, format!("unparsed: {stdout}")),
            },
            Exit::Done { stderr, .. } => (
                failure(&stderr),
                stderr.lines().last().unwrap_or_default().to_owned(),
            ),
        };
        self.shared.recorder().queue_op(
            &self.name,
            "lease",
            format!("lease {topic}"),
            call_ms,
            return_ms,
            outcome,
            &detail,
        );
        for delivery in leased {
            if self.rng.chance(1, 10) {
                continue;
            }
            self.ack(topic, &delivery);
        }
    }

    fn ack(&mut self, topic: &str, delivery: &Delivery) {
        let receipt = delivery.receipt();
        let args = vec![
            "ack".into(),
            topic.into(),
            format!("{}:{}", receipt.id, receipt.token),
        ];
        let (call_ms, return_ms, exit) = self.run(&args);
        let (outcome, detail) = match exit {
            Exit::TimedOut => (Outcome::Unknown, "timed out".to_owned()),
            Exit::Done {
                code: Some(0),
                stdout,
                ..
            } => {
                let outcome = if stdout.contains("AlreadyAcked") {
                    AckOutcome::AlreadyAcked
                } else {
                    AckOutcome::Acked
                };
                (Outcome::Ok, format!("{outcome:?}"))
            }
            Exit::Done { stderr, .. } => {
                let detail = stderr.lines().last().unwrap_or_default().to_owned();
                if stderr.contains("ack refused") {
                    (Outcome::Failed, detail)
                } else {
                    (failure(&stderr), detail)
                }
            }
        };
        let mut recorder = self.shared.recorder();
        match outcome {
            Outcome::Ok => {
                let acked = if detail == "AlreadyAcked" {
                    AckOutcome::AlreadyAcked
                } else {
                    AckOutcome::Acked
                };
                recorder.acked(topic, receipt, &delivery.body, acked);
            }
            Outcome::Unknown => recorder.ack_unknown(&delivery.body),
            Outcome::Failed => {}
        }
        recorder.queue_op(
            &self.name,
            "ack",
            format!(
                "ack {topic} {}:{} {}",
                receipt.id,
                receipt.token,
                String::from_utf8_lossy(&delivery.body)
            ),
            call_ms,
            return_ms,
            outcome,
            &detail,
        );
    }
}

/// What a lease got, for the history: `id:token body (delivery n)` each.
pub fn leased_detail(deliveries: &[Delivery]) -> String {
    let leased: Vec<String> = deliveries
        .iter()
        .map(|delivery| {
            format!(
                "{}:{} {} (delivery {})",
                delivery.id,
                delivery.token,
                String::from_utf8_lossy(&delivery.body),
                delivery.acquired
            )
        })
        .collect();
    format!("leased [{}]", leased.join(", "))
}

/// The deliveries in `lease --json` output. The lease began `LEASE_MS`
/// before its deadline (both in the leader's log time).
fn deliveries(json: &serde_json::Value) -> Option<Vec<Delivery>> {
    json["messages"]
        .as_array()?
        .iter()
        .map(|message| {
            let (id, token) = message["receipt"].as_str()?.split_once(':')?;
            let deadline_ms = message["deadline_ms"].as_u64()?;
            Some(Delivery {
                id: id.parse().ok()?,
                token: token.parse().ok()?,
                leased_at_ms: deadline_ms.saturating_sub(LEASE_MS),
                deadline_ms,
                acquired: u32::try_from(message["delivery_count"].as_u64()?).ok()?,
                failed: u32::try_from(message["failed"].as_u64()?).ok()?,
                enqueued_at_ms: 0,
                body: message["body"].as_str()?.as_bytes().to_vec(),
                dead_letter: None,
            })
        })
        .collect()
}

/// One CLI client: operations back to back until the workload stops.
pub fn client_loop(shared: &Shared, index: usize, seed: u64) {
    let mut client = Client {
        shared,
        name: format!("c{index}"),
        rng: Rng::new(seed ^ (index as u64 + 1).wrapping_mul(0xC11E_0000_0001)),
        next_value: 0,
        known: BTreeMap::new(),
    };
    while !shared.stopped() {
        if client.rng.chance(11, 20) {
            client.kv();
        } else {
            let topic = *client.rng.pick(&TOPICS);
            if client.rng.chance(1, 2) {
                client.enqueue(topic);
            } else {
                client.consume(topic);
            }
        }
    }
}
