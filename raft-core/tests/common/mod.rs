//! A small in-process group on real files for scenario tests: replicas in
//! temporary directories, a queue of envelopes instead of a network, and
//! a `run` that delivers and ticks until a condition holds (bounded).

#![allow(dead_code)]

use std::collections::VecDeque;

use raft_core::sim::kv::{KvMachine, KvOp, KvResult};
use raft_core::{Bootstrap, Config, FsDir, Join, Node, Options, Output, SendError, Transport};

pub type TestNode = Node<KvMachine, FsDir>;

/// Envelopes in flight: `(to, bytes)`.
#[derive(Default)]
pub struct Wire {
    pub queue: VecDeque<(u64, Vec<u8>)>,
}

impl Transport for Wire {
    fn send(&mut self, to: u64, envelope: Vec<u8>) -> Result<(), SendError> {
        self.queue.push_back((to, envelope));
        Ok(())
    }
}

pub const GROUP_ID: u128 = 0x5eed_0000_0000_0000_0000_0000_0000_0001;

/// Long enough that no test's session expires unless it means to.
pub const SESSION_TIMEOUT_MS: u64 = 3_600_000;

pub fn config() -> Config {
    Config {
        snapshot_interval_entries: 50,
        catch_up_entries: 10,
        segment_max_bytes: 8192,
        ..Config::default()
    }
}

pub struct Group {
    pub dirs: Vec<tempfile::TempDir>,
    /// `None` while a replica is stopped.
    pub nodes: Vec<Option<TestNode>>,
    pub wire: Wire,
    /// Every output, by replica index.
    pub outputs: Vec<Vec<Output>>,
    /// Replicas whose messages are dropped (a crude partition).
    pub isolated: Vec<bool>,
}

impl Group {
    /// Bootstraps `count` voters with ids 1..=count.
    pub fn bootstrap(count: u64) -> Self {
        let voters: Vec<(u64, Vec<u8>)> = (1..=count)
            .map(|id| (id, format!("peer-{id}").into_bytes()))
            .collect();
        let mut dirs = Vec::new();
        let mut nodes = Vec::new();
        for id in 1..=count {
            let dir = tempfile::tempdir().expect("tempdir");
            let bootstrap = Bootstrap {
                group_id: GROUP_ID,
                id,
                voters: voters.clone(),
                max_sessions_count: 100,
                session_timeout_ms: SESSION_TIMEOUT_MS,
            };
            let node = Node::bootstrap(
                FsDir::open(dir.path()).expect("dir"),
                config(),
                KvMachine::default(),
                bootstrap,
                Options::with_seed(id),
            )
            .expect("bootstrap");
            dirs.push(dir);
            nodes.push(Some(node));
        }
        let count = count as usize;
        Self {
            dirs,
            nodes,
            wire: Wire::default(),
            outputs: vec![Vec::new(); count],
            isolated: vec![false; count],
        }
    }

    pub fn node(&mut self, id: u64) -> &mut TestNode {
        self.nodes[(id - 1) as usize].as_mut().expect("running")
    }

    /// One round: deliver every queued envelope, tick everyone once,
    /// process everyone.
    pub fn round(&mut self) {
        let queued: Vec<(u64, Vec<u8>)> = self.wire.queue.drain(..).collect();
        for (to, bytes) in queued {
            let index = (to - 1) as usize;
            if index >= self.nodes.len() || self.isolated[index] {
                continue;
            }
            if let Some(node) = self.nodes[index].as_mut() {
                node.step(&bytes);
            }
        }
        for index in 0..self.nodes.len() {
            if let Some(node) = self.nodes[index].as_mut() {
                node.tick();
                let mut wire = Wire::default();
                let outputs = node.process(&mut wire).expect("process");
                if !self.isolated[index] {
                    self.wire.queue.extend(wire.queue);
                }
                self.outputs[index].extend(outputs);
            }
        }
    }

    /// Runs rounds until `done` holds; panics after `max_rounds`.
    pub fn run_until(
        &mut self,
        max_rounds: usize,
        what: &str,
        mut done: impl FnMut(&mut Group) -> bool,
    ) {
        for _ in 0..max_rounds {
            if done(self) {
                return;
            }
            self.round();
        }
        panic!("{what}: not reached within {max_rounds} rounds");
    }

    pub fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .flatten()
            .find(|n| n.is_leader())
            .map(|n| n.id())
    }

    pub fn elect(&mut self) -> u64 {
        self.run_until(500, "a leader", |g| g.leader().is_some());
        self.leader().expect("leader")
    }

    /// Takes the outcome of `(client_id, seq)` from replica `id`'s outputs.
    pub fn take_proposal(
        &mut self,
        id: u64,
        client_id: u64,
        seq: u64,
    ) -> Option<Result<Vec<u8>, raft_core::RequestError>> {
        let outputs = &mut self.outputs[(id - 1) as usize];
        let at = outputs.iter().position(
            |o| matches!(o, Output::Proposal { client_id: c, seq: s, .. } if *c == client_id && *s == seq),
        )?;
        match outputs.remove(at) {
            Output::Proposal { result, .. } => Some(result),
            _ => None,
        }
    }

    /// Adds replica `id` (the next one: `id == count + 1`), prepared to
    /// join as a learner; the leader still has to add it.
    pub fn add_joiner(&mut self, id: u64) {
        assert_eq!(id as usize, self.nodes.len() + 1, "joiners get the next id");
        let dir = tempfile::tempdir().expect("tempdir");
        let joiner = Node::join(
            FsDir::open(dir.path()).expect("dir"),
            config(),
            KvMachine::default(),
            Join {
                group_id: GROUP_ID,
                id,
            },
            Options::with_seed(id),
        )
        .expect("join");
        self.dirs.push(dir);
        self.nodes.push(Some(joiner));
        self.outputs.push(Vec::new());
        self.isolated.push(false);
    }

    /// Registers a client session on `id` and runs until it is open.
    pub fn register(&mut self, id: u64) -> u64 {
        self.try_register(id, 1_000).expect("register")
    }

    /// Registers a client session on `id` at log time `time_ms`.
    pub fn try_register(&mut self, id: u64, time_ms: u64) -> Result<u64, raft_core::RequestError> {
        let nonce = self.outputs.iter().map(Vec::len).sum::<usize>() as u64;
        self.node(id).register(nonce, time_ms)?;
        let mut outcome = None;
        self.run_until(500, "a registration", |g| {
            let outputs = &mut g.outputs[(id - 1) as usize];
            if let Some(at) = outputs
                .iter()
                .position(|o| matches!(o, Output::Registered { nonce: n, .. } if *n == nonce))
            {
                if let Output::Registered { result, .. } = outputs.remove(at) {
                    outcome = Some(result);
                }
            }
            outcome.is_some()
        });
        outcome.expect("outcome")
    }

    /// Proposes on `id` and runs until its outcome arrives.
    pub fn write(
        &mut self,
        id: u64,
        client_id: u64,
        seq: u64,
        op: &KvOp,
    ) -> Result<Vec<u8>, raft_core::RequestError> {
        self.write_at(id, client_id, seq, 1_000, op)
    }

    /// [`Group::write`] stamped with log time `time_ms`.
    pub fn write_at(
        &mut self,
        id: u64,
        client_id: u64,
        seq: u64,
        time_ms: u64,
        op: &KvOp,
    ) -> Result<Vec<u8>, raft_core::RequestError> {
        self.node(id).propose(client_id, seq, time_ms, encode(op))?;
        let mut outcome = None;
        self.run_until(500, "a proposal outcome", |g| {
            outcome = g.take_proposal(id, client_id, seq);
            outcome.is_some()
        });
        outcome.expect("outcome")
    }

    /// Restarts replica `id` from its directory.
    pub fn restart(&mut self, id: u64) {
        let index = (id - 1) as usize;
        self.nodes[index] = None;
        let node = Node::open(
            FsDir::open(self.dirs[index].path()).expect("dir"),
            config(),
            KvMachine::default(),
            Options::with_seed(100 + id),
        )
        .expect("reopen");
        self.nodes[index] = Some(node);
    }
}

pub fn encode(op: &KvOp) -> Vec<u8> {
    postcard::to_allocvec(op).expect("encode")
}

pub fn decode(bytes: &[u8]) -> KvResult {
    postcard::from_bytes(bytes).expect("decode")
}
