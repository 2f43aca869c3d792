//! The `kv` workload: put, get and compare-and-set on a few keys, checked
//! per key for linearizability.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rng::Rng;
use crate::sim::checker::{self, Model, Operation, Verdict};
use crate::sim::workload::{Request, Workload};
use crate::state_machine::{ApplyContext, StateMachine};

/// Keys the clients use: few, so that operations contend.
const KEY_COUNT: u8 = 4;

/// A KV command or query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        key: u8,
        /// The value.
        value: u64,
    },
    /// Sets `key` to `new` if it holds `expected`; answers whether it did.
    Cas {
        /// The key.
        key: u8,
        /// The value it must hold (`None`: absent).
        expected: Option<u64>,
        /// The value to set.
        new: u64,
    },
    /// Reads `key`.
    Get {
        /// The key.
        key: u8,
    },
}

/// A KV result.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvResult {
    /// A put applied.
    Done,
    /// Whether a compare-and-set applied.
    Swapped(bool),
    /// A read's value.
    Value(Option<u64>),
    /// The command did not decode.
    Invalid,
}

impl KvOp {
    fn key(&self) -> u8 {
        match self {
            KvOp::Put { key, .. } | KvOp::Cas { key, .. } | KvOp::Get { key } => *key,
        }
    }

    fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }
}

fn encode_result(result: &KvResult) -> Vec<u8> {
    postcard::to_allocvec(result).unwrap_or_default()
}

/// The replicated map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvMachine {
    map: BTreeMap<u8, u64>,
}

impl KvMachine {
    fn run(&mut self, op: &KvOp) -> KvResult {
        match op {
            KvOp::Put { key, value } => {
                self.map.insert(*key, *value);
                KvResult::Done
            }
            KvOp::Cas { key, expected, new } => {
                if self.map.get(key).copied() == *expected {
                    self.map.insert(*key, *new);
                    KvResult::Swapped(true)
                } else {
                    KvResult::Swapped(false)
                }
            }
            KvOp::Get { key } => KvResult::Value(self.map.get(key).copied()),
        }
    }
}

impl StateMachine for KvMachine {
    fn apply(&mut self, _ctx: &ApplyContext, command: &[u8]) -> Vec<u8> {
        let result = match postcard::from_bytes::<KvOp>(command) {
            Ok(KvOp::Get { .. }) | Err(_) => KvResult::Invalid,
            Ok(op) => self.run(&op),
        };
        encode_result(&result)
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        let result = match postcard::from_bytes::<KvOp>(query) {
            Ok(KvOp::Get { key }) => KvResult::Value(self.map.get(&key).copied()),
            _ => KvResult::Invalid,
        };
        encode_result(&result)
    }

    fn snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(&self.map.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>())
            .unwrap_or_default()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let pairs: Vec<(u8, u64)> = postcard::from_bytes(snapshot).map_err(|e| e.to_string())?;
        self.map = pairs.into_iter().collect();
        Ok(())
    }

    fn validate_snapshot(&self, snapshot: &[u8]) -> Result<(), String> {
        postcard::from_bytes::<Vec<(u8, u64)>>(snapshot)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// One key's register, for the checker.
struct Register;

impl Model for Register {
    type State = Option<u64>;
    type Input = KvOp;
    type Output = KvResult;

    fn init(&self) -> Option<u64> {
        None
    }

    fn step(&self, state: &Option<u64>, input: &KvOp) -> (Option<u64>, KvResult) {
        let mut machine = KvMachine::default();
        if let Some(value) = state {
            machine.map.insert(input.key(), *value);
        }
        let result = machine.run(input);
        (machine.map.get(&input.key()).copied(), result)
    }
}

/// The `kv` workload.
pub struct KvWorkload {
    /// Per key, every operation observed.
    history: BTreeMap<u8, Vec<Operation<KvOp, KvResult>>>,
    /// Per client, the next value to write (unique across the run).
    next_value: Vec<u64>,
    /// Per client, the last value it saw per key (to make CAS succeed
    /// sometimes).
    seen: Vec<BTreeMap<u8, Option<u64>>>,
    completed_count: u64,
    abandoned_count: u64,
}

impl Workload for KvWorkload {
    type Machine = KvMachine;

    const NAME: &'static str = "kv";

    fn new(client_count: usize, _rng: &mut Rng) -> Self {
        Self {
            history: BTreeMap::new(),
            next_value: (0..client_count as u64).map(|c| (c + 1) << 32).collect(),
            seen: vec![BTreeMap::new(); client_count],
            completed_count: 0,
            abandoned_count: 0,
        }
    }

    fn state_machine(&self) -> KvMachine {
        KvMachine::default()
    }

    fn next_request(&mut self, client: usize, _now_ms: u64, rng: &mut Rng) -> Option<Request> {
        let key = rng.below(u64::from(KEY_COUNT)) as u8;
        let roll = rng.below(100);
        if roll < 40 {
            return Some(Request::Read(KvOp::Get { key }.encode()));
        }
        self.next_value[client] += 1;
        let value = self.next_value[client];
        let op = if roll < 75 {
            KvOp::Put { key, value }
        } else {
            let expected = self.seen[client].get(&key).copied().flatten();
            KvOp::Cas {
                key,
                expected,
                new: value,
            }
        };
        Some(Request::Write(op.encode()))
    }

    fn on_complete(
        &mut self,
        client: usize,
        invoked_ms: u64,
        completed_ms: u64,
        request: &Request,
        response: &[u8],
    ) {
        let (Request::Write(bytes) | Request::Read(bytes)) = request;
        let Ok(op) = postcard::from_bytes::<KvOp>(bytes) else {
            return;
        };
        let result = postcard::from_bytes::<KvResult>(response).unwrap_or(KvResult::Invalid);
        if let KvResult::Value(value) = result {
            self.seen[client].insert(op.key(), value);
        }
        self.completed_count += 1;
        self.history.entry(op.key()).or_default().push(Operation {
            call_ms: invoked_ms,
            completion: Some((completed_ms, result)),
            input: op,
        });
    }

    fn on_abandon(&mut self, _client: usize, invoked_ms: u64, request: &Request) {
        // An abandoned read has no effect; an abandoned write may have one.
        if let Request::Write(bytes) = request {
            if let Ok(op) = postcard::from_bytes::<KvOp>(bytes) {
                self.abandoned_count += 1;
                self.history.entry(op.key()).or_default().push(Operation {
                    call_ms: invoked_ms,
                    completion: None,
                    input: op,
                });
            }
        }
    }

    fn check(&self) -> Result<String, String> {
        for (key, history) in &self.history {
            if history
                .iter()
                .any(|op| matches!(op.completion, Some((_, KvResult::Invalid))))
            {
                return Err(format!("key {key}: a request was answered Invalid"));
            }
            match checker::check(&Register, history) {
                Verdict::Linearizable => {}
                Verdict::NotLinearizable => {
                    return Err(format!(
                        "key {key}: history of {} operations is not linearizable:\n{}",
                        history.len(),
                        describe(history)
                    ))
                }
                Verdict::Undecided => {
                    return Err(format!(
                        "key {key}: linearizability search of {} operations exceeded its bound",
                        history.len()
                    ))
                }
            }
        }
        Ok(format!(
            "{} ops linearizable ({} indeterminate)",
            self.completed_count, self.abandoned_count
        ))
    }
}

/// The tail of a history, readable, for failure reports.
fn describe(history: &[Operation<KvOp, KvResult>]) -> String {
    let mut ops: Vec<&Operation<KvOp, KvResult>> = history.iter().collect();
    ops.sort_by_key(|op| op.call_ms);
    let skip = ops.len().saturating_sub(40);
    ops.iter()
        .skip(skip)
        .map(|op| match &op.completion {
            Some((at, result)) => {
                format!("  [{}..{}] {:?} -> {:?}", op.call_ms, at, op.input, result)
            }
            None => format!("  [{}..] {:?} -> (no answer)", op.call_ms, op.input),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
