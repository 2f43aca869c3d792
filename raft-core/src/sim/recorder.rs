//! A state machine wrapper that checks Raft's State Machine Safety across
//! replicas: no two replicas apply different commands at the same index,
//! and `time_ms` never decreases on a replica.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::state_machine::{ApplyContext, StateMachine};

/// What every replica applied, by log index: `(term, command hash)`.
#[derive(Debug, Default)]
pub struct AppliedLog {
    by_index: BTreeMap<u64, (u64, u64)>,
    /// The first violation seen, if any.
    pub violation: Option<String>,
}

/// Shared between the replicas of one simulation.
pub type SharedAppliedLog = Rc<RefCell<AppliedLog>>;

fn hash(bytes: &[u8]) -> u64 {
    // FNV-1a: stable and good enough to tell commands apart.
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Wraps a replica's state machine. See the module docs.
pub struct Recorder<M> {
    inner: M,
    node: usize,
    log: SharedAppliedLog,
    last_time_ms: u64,
}

impl<M: StateMachine> Recorder<M> {
    /// Wraps `inner`, the state machine of simulated node `node`.
    pub fn new(inner: M, node: usize, log: SharedAppliedLog) -> Self {
        Self {
            inner,
            node,
            log,
            last_time_ms: 0,
        }
    }

    /// The wrapped state machine.
    pub fn inner(&self) -> &M {
        &self.inner
    }
}

impl<M: StateMachine> StateMachine for Recorder<M> {
    fn apply(&mut self, ctx: &ApplyContext, command: &[u8]) -> Vec<u8> {
        let mut log = self.log.borrow_mut();
        let entry = (ctx.term, hash(command));
        match log.by_index.get(&ctx.index) {
            Some(seen) if *seen != entry && log.violation.is_none() => {
                log.violation = Some(format!(
                    "state machine safety: node {} applied (term {}, hash {:x}) at index {}, another replica applied (term {}, hash {:x})",
                    self.node, entry.0, entry.1, ctx.index, seen.0, seen.1
                ));
            }
            Some(_) => {}
            None => {
                log.by_index.insert(ctx.index, entry);
            }
        }
        if ctx.time_ms < self.last_time_ms && log.violation.is_none() {
            log.violation = Some(format!(
                "time went backwards on node {} at index {}: {} after {}",
                self.node, ctx.index, ctx.time_ms, self.last_time_ms
            ));
        }
        self.last_time_ms = ctx.time_ms;
        drop(log);
        self.inner.apply(ctx, command)
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        self.inner.query(query)
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut out = self.last_time_ms.to_le_bytes().to_vec();
        out.extend_from_slice(&self.inner.snapshot());
        out
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        if snapshot.len() < 8 {
            return Err("recorder snapshot too short".into());
        }
        let mut time = [0u8; 8];
        time.copy_from_slice(&snapshot[..8]);
        self.inner.restore(&snapshot[8..])?;
        self.last_time_ms = u64::from_le_bytes(time);
        Ok(())
    }

    fn validate_snapshot(&self, snapshot: &[u8]) -> Result<(), String> {
        let state = snapshot
            .get(8..)
            .ok_or_else(|| "recorder snapshot too short".to_owned())?;
        self.inner.validate_snapshot(state)
    }
}
