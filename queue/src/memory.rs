//! [`MemoryTransport`]: a [`Transport`] over a bare [`QueueMachine`] in this
//! process, with time fed explicitly. For tests, examples and benchmarks.

use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use raft_core::{ApplyContext, StateMachine};

use crate::client::Transport;
use crate::machine::QueueMachine;
use crate::TransportError;

/// One state machine, applied to directly: each `submit` is the next log
/// index at the transport's current time. No replication, no failures.
///
/// Its futures are ready at once; drive them with [`poll_once`].
#[derive(Debug, Default)]
pub struct MemoryTransport {
    inner: RefCell<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    machine: QueueMachine,
    index: u64,
    time_ms: u64,
}

impl MemoryTransport {
    /// A fresh state machine whose log time starts at `time_ms`.
    pub fn new(time_ms: u64) -> Self {
        Self {
            inner: RefCell::new(Inner {
                machine: QueueMachine::new(),
                index: 0,
                time_ms,
            }),
        }
    }

    /// The time the next command is stamped with, in ms.
    pub fn time_ms(&self) -> u64 {
        self.inner.borrow().time_ms
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: u64) {
        let mut inner = self.inner.borrow_mut();
        inner.time_ms = inner.time_ms.saturating_add(ms);
    }

    /// The index of the last applied command.
    pub fn index(&self) -> u64 {
        self.inner.borrow().index
    }

    /// Runs `f` on the state machine (e.g. to snapshot it).
    pub fn with_machine<R>(&self, f: impl FnOnce(&mut QueueMachine) -> R) -> R {
        f(&mut self.inner.borrow_mut().machine)
    }
}

impl Transport for MemoryTransport {
    async fn submit(&self, command: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        let mut inner = self.inner.borrow_mut();
        inner.index += 1;
        let ctx = ApplyContext {
            index: inner.index,
            term: 1,
            time_ms: inner.time_ms,
        };
        Ok(inner.machine.apply(&ctx, &command))
    }

    async fn query(&self, query: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        Ok(self.inner.borrow().machine.query(&query))
    }
}

/// Polls `future` once; `Some` with its output if it was ready. Futures of a
/// [`MemoryTransport`] client always are, so tests need no async runtime.
pub fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let future = pin!(future);
    match future.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}
