//! Native clients: sessions of raft-client's native client in this
//! process (through host 0, which takes no faults), and the final drain.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use queue::{ClientError, Delivery, QueueError, TransportError};
use raft_client::native::{connect, TokioRuntime};
use raft_client::proto::ReplicaStatus;
use raft_client::{Group, Session};
use raft_core::rng::Rng;
use ww_tests::chaos::{KvInput, KvOutput, Outcome};

use crate::cli::LEASE_MS;
use crate::driver::{Shared, KEYS, TOPICS};

/// A native call gives up after this long (and is then unknown).
const SESSION_DEADLINE: Duration = Duration::from_secs(10);
/// How long connecting to host 0 may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the final drain may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause between one session's operations, so native sessions do not
/// drown the CLI clients' share of the history.
const PACE: Duration = Duration::from_millis(10);
/// Most messages a drain lease takes.
const DRAIN_BATCH: u32 = 16;

type Client<'a> = queue::Client<&'a Session<TokioRuntime>>;

/// Runs `future` on a current-thread runtime with a `LocalSet`.
fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, future)
}

async fn group(shared: &Shared) -> Result<Group<TokioRuntime>, String> {
    let addr: Multiaddr = shared.addrs[0].parse().unwrap();
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        match connect(std::slice::from_ref(&addr), "v1").await {
            Ok(group) => return Ok(group),
            Err(err) if Instant::now() >= deadline => {
                return Err(format!("cannot connect to host 0: {err:#}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Only refusals by the group and "unavailable" (never sent) prove that
/// nothing applied.
fn outcome_of(err: &ClientError) -> Outcome {
    match err {
        ClientError::Queue(_) | ClientError::Transport(TransportError::Unavailable(_)) => {
            Outcome::Failed
        }
        _ => Outcome::Unknown,
    }
}

struct Native<'a> {
    shared: &'a Shared,
    name: String,
    rng: Rng,
    next_value: u64,
    known: BTreeMap<&'static str, String>,
}

impl Native<'_> {
    fn value(&mut self) -> String {
        self.next_value += 1;
        format!("{}-{}", self.name, self.next_value)
    }

    async fn kv(&mut self, client: &Client<'_>) {
        let key = *self.rng.pick(&KEYS);
        let roll = self.rng.below(10);
        let call_ms = self.shared.now_ms();
        let (input, result) = if roll < 4 {
            let value = self.value();
            let result = match client.put(key, value.as_bytes()).await {
                Ok(_) => Ok(KvOutput::Written),
                Err(err) => Err(err),
            };
            (KvInput::Put(value), result)
        } else if roll < 8 || !self.known.contains_key(key) {
            let result = match client.get(key).await {
                Ok(found) => {
                    Ok(KvOutput::Value(found.map(|found| {
                        String::from_utf8_lossy(&found.value).into_owned()
                    })))
                }
                Err(err) => Err(err),
            };
            (KvInput::Get, result)
        } else {
            let old = self.known[key].clone();
            let new = self.value();
            // As the CLI does it: read the version, then cas on it. With
            // unique values a changed version means a changed value.
            let result = match client.get(key).await {
                Ok(Some(found)) if found.value == old.as_bytes() => {
                    match client
                        .cas(key, found.version, Some(new.clone().into_bytes()))
                        .await
                    {
                        Ok(_) => Ok(KvOutput::Written),
                        Err(ClientError::Queue(QueueError::VersionMismatch { .. })) => {
                            Ok(KvOutput::Refused)
                        }
                        Err(err) => Err(err),
                    }
                }
                Ok(_) => Ok(KvOutput::Refused),
                // Nothing was written: the cas was never sent.
                Err(_) => Err(ClientError::Transport(TransportError::Unavailable(
                    "the cas's read failed".into(),
                ))),
            };
            (KvInput::Cas { old, new }, result)
        };
        let return_ms = self.shared.now_ms();
        let (outcome, output, detail) = match result {
            Ok(output) => (Outcome::Ok, Some(output), String::new()),
            Err(err) => (outcome_of(&err), None, err.to_string()),
        };
        match (&input, &output) {
            (KvInput::Put(value) | KvInput::Cas { new: value, .. }, Some(KvOutput::Written))
            | (KvInput::Get, Some(KvOutput::Value(Some(value)))) => {
                self.known.insert(key, value.clone());
            }
            _ => {}
        }
        self.shared.recorder().kv(
            &self.name, key, input, call_ms, return_ms, outcome, output, &detail,
        );
    }

    async fn enqueue(&mut self, client: &Client<'_>, topic: &str) {
        let body = format!("q-{}", self.value());
        self.shared.recorder().enqueue_attempted(body.as_bytes());
        let call_ms = self.shared.now_ms();
        let result = client.enqueue(topic, body.as_bytes()).await;
        let return_ms = self.shared.now_ms();
        let mut recorder = self.shared.recorder();
        let (outcome, detail) = match result {
            Ok(enqueued) => {
                recorder.enqueue_acknowledged(topic, body.as_bytes(), enqueued.id);
                (Outcome::Ok, format!("id {}", enqueued.id))
            }
            Err(err) => (outcome_of(&err), err.to_string()),
        };
        recorder.queue_op(
            &self.name,
            "enqueue",
            format!("enqueue {topic} {body}"),
            call_ms,
            return_ms,
            outcome,
            &detail,
        );
    }

    async fn consume(&mut self, client: &Client<'_>, topic: &str) {
        let call_ms = self.shared.now_ms();
        let result = client.lease(topic, &self.name, 2, Some(LEASE_MS)).await;
        let return_ms = self.shared.now_ms();
        let deliveries = {
            let mut recorder = self.shared.recorder();
            let (outcome, detail, deliveries) = match result {
                Ok(deliveries) => {
                    recorder.leased(topic, &self.name, &deliveries);
                    (
                        Outcome::Ok,
                        crate::cli::leased_detail(&deliveries),
                        deliveries,
                    )
                }
                Err(err) => (outcome_of(&err), err.to_string(), Vec::new()),
            };
            recorder.queue_op(
                &self.name,
                "lease",
                format!("lease {topic}"),
                call_ms,
                return_ms,
                outcome,
                &detail,
            );
            deliveries
        };
        if deliveries.is_empty() {
            tokio::time::sleep(PACE * 5).await;
            return;
        }
        // Nine times in ten ack; otherwise let the leases expire.
        if self.rng.chance(1, 10) {
            return;
        }
        ack(self.shared, &self.name, client, topic, &deliveries).await;
    }
}

/// Acks `deliveries` in one request and records what came back.
async fn ack(
    shared: &Shared,
    name: &str,
    client: &Client<'_>,
    topic: &str,
    deliveries: &[Delivery],
) {
    let receipts: Vec<_> = deliveries.iter().map(Delivery::receipt).collect();
    let call_ms = shared.now_ms();
    let result = client.ack_batch(topic, &receipts).await;
    let return_ms = shared.now_ms();
    let mut recorder = shared.recorder();
    let (outcome, detail) = match result {
        Ok(outcomes) => {
            let mut detail = Vec::new();
            for (delivery, outcome) in deliveries.iter().zip(outcomes) {
                match outcome {
                    Ok(acked) => {
                        recorder.acked(topic, delivery.receipt(), &delivery.body, acked);
                        detail.push(format!("{acked:?}"));
                    }
                    Err(err) => detail.push(err.to_string()),
                }
            }
            (Outcome::Ok, detail.join("; "))
        }
        Err(err) => {
            let outcome = outcome_of(&err);
            if outcome == Outcome::Unknown {
                for delivery in deliveries {
                    recorder.ack_unknown(&delivery.body);
                }
            }
            (outcome, err.to_string())
        }
    };
    let what: Vec<String> = deliveries
        .iter()
        .map(|delivery| {
            format!(
                "{}:{} {}",
                delivery.id,
                delivery.token,
                String::from_utf8_lossy(&delivery.body)
            )
        })
        .collect();
    recorder.queue_op(
        name,
        "ack",
        format!("ack {topic} {}", what.join(" ")),
        call_ms,
        return_ms,
        outcome,
        &detail,
    );
}

async fn session_loop(group: &Group<TokioRuntime>, shared: &Shared, index: usize, seed: u64) {
    let session = group.session().with_deadline(SESSION_DEADLINE);
    let client = queue::Client::new(&session);
    let mut native = Native {
        shared,
        name: format!("n{index}"),
        rng: Rng::new(seed ^ (index as u64 + 1).wrapping_mul(0x0A71_7E00_0001)),
        next_value: 0,
        known: BTreeMap::new(),
    };
    while !shared.stopped() {
        if native.rng.chance(11, 20) {
            native.kv(&client).await;
        } else {
            let topic = *native.rng.pick(&TOPICS);
            if native.rng.chance(1, 2) {
                native.enqueue(&client, topic).await;
            } else {
                native.consume(&client, topic).await;
            }
        }
        tokio::time::sleep(PACE).await;
    }
}

/// Runs `count` native sessions until the workload stops.
///
/// # Panics
///
/// When host 0 cannot be reached at all.
pub fn clients(shared: &Shared, count: usize, seed: u64) {
    if count == 0 {
        return;
    }
    block_on(async {
        let group = group(shared).await.unwrap();
        let loops = (0..count).map(|index| session_loop(&group, shared, index, seed));
        futures::future::join(
            futures::future::join_all(loops),
            watch_leaders(&group, shared),
        )
        .await;
    });
}

/// Records each new leader the group announces on its status topic, as
/// clients see it (through host 0), until the workload stops: the
/// summary measures how soon operations complete after a new leader.
async fn watch_leaders(group: &Group<TokioRuntime>, shared: &Shared) {
    let pubsub = group.host().pubsub_request().send().pipeline.get_pubsub();
    let mut join = pubsub.join_request();
    join.get().set_topic(format!("ww/raft/{}", group.version()));
    let topic = join.send().pipeline.get_topic();
    let mut subscribe = topic.subscribe_request();
    subscribe.get().set_buffer(64);
    let Ok(response) = subscribe.send().promise.await else {
        return;
    };
    let Ok(subscription) = response.get().and_then(|r| r.get_subscription()) else {
        return;
    };
    let mut term = 0;
    // One `next` stays in flight across the stop checks: dropping it could
    // lose the message it was about to deliver.
    let mut next = subscription.next_request().send().promise;
    while !shared.stopped() {
        let Ok(result) = tokio::time::timeout(Duration::from_millis(500), &mut next).await else {
            continue;
        };
        let Ok(message) = result else {
            return;
        };
        next = subscription.next_request().send().promise;
        let Ok(data) = message
            .get()
            .and_then(|m| m.get_message())
            .and_then(|m| m.get_data())
        else {
            continue;
        };
        let Ok(status) = raft_client::proto::decode::<ReplicaStatus>(data) else {
            continue;
        };
        if status.role == "leader" && status.term > term {
            term = status.term;
            shared.recorder().leader_elected(shared.now_ms(), term);
        }
    }
}

/// After the faults: leases and acks everything left on every topic (and
/// its dead-letter topic) until nothing is ready, leased or delayed, then
/// reads every key once more.
///
/// # Errors
///
/// When the drain does not finish within its deadline.
pub fn drain_and_read(shared: &Shared) -> Result<(), String> {
    block_on(async {
        let group = group(shared).await?;
        let session = group.session().with_deadline(SESSION_DEADLINE);
        let client = queue::Client::new(&session);
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        let mut topics: Vec<String> = TOPICS.iter().map(|topic| (*topic).to_owned()).collect();
        topics.extend(TOPICS.iter().map(|topic| queue::dlq_name(topic)));
        loop {
            let mut left = 0;
            for topic in &topics {
                match client
                    .lease(topic, "drain", DRAIN_BATCH, Some(LEASE_MS))
                    .await
                {
                    Ok(deliveries) if !deliveries.is_empty() => {
                        shared.recorder().leased(topic, "drain", &deliveries);
                        ack(shared, "drain", &client, topic, &deliveries).await;
                        left += 1;
                        continue;
                    }
                    Ok(_) | Err(ClientError::Queue(QueueError::NoSuchTopic { .. })) => {}
                    Err(_) => {
                        left += 1;
                        continue;
                    }
                }
                match client.stats(topic).await {
                    Ok(stats) => {
                        left += stats.ready + stats.leased + stats.delayed;
                    }
                    Err(ClientError::Queue(QueueError::NoSuchTopic { .. })) => {}
                    Err(_) => left += 1,
                }
            }
            if left == 0 {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the drain did not empty the topics within {DRAIN_TIMEOUT:?} ({left} left)"
                ));
            }
            // Leases held by stopped clients expire within LEASE_MS.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for key in KEYS {
            let call_ms = shared.now_ms();
            let result = client.get(key).await;
            let return_ms = shared.now_ms();
            let (outcome, output, detail) = match result {
                Ok(found) => (
                    Outcome::Ok,
                    Some(KvOutput::Value(found.map(|found| {
                        String::from_utf8_lossy(&found.value).into_owned()
                    }))),
                    String::new(),
                ),
                Err(err) => (Outcome::Unknown, None, err.to_string()),
            };
            shared.recorder().kv(
                "final",
                key,
                KvInput::Get,
                call_ms,
                return_ms,
                outcome,
                output,
                &detail,
            );
        }
        Ok(())
    })
}
