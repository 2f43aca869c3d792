//! A client session: one raft-core client id, sequence numbers, retries.

use std::cell::Cell;
use std::time::Duration;

use queue::TransportError;

use crate::group::{Group, GroupError, DEFAULT_DEADLINE};
use crate::proto::{Request, Response};
use crate::Runtime;

/// One logical client of a group. raft-core applies a command at most once
/// per `(client id, seq)`, and lets each client id have one command in
/// flight: use one session per concurrent caller. A session retries a
/// command with the same `(client id, seq)` until it has an answer or its
/// deadline passes, so a retry after a lost answer never applies twice.
pub struct Session<R: Runtime> {
    group: Group<R>,
    client_id: u64,
    seq: Cell<u64>,
    deadline: Duration,
}

impl<R: Runtime> Session<R> {
    pub(crate) fn new(group: Group<R>) -> Self {
        // A random id: sessions of different processes must not collide.
        // (The seed mixes the clock and the allocator's address space.)
        let marker = Box::new(0u8);
        let address = std::ptr::from_ref::<u8>(&marker) as u64;
        let client_id = splitmix(group.runtime().now_ms() ^ address.rotate_left(29) ^ next_local());
        Self {
            group,
            client_id: client_id | 1,
            seq: Cell::new(0),
            deadline: DEFAULT_DEADLINE,
        }
    }

    /// The same session with another retry deadline.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The group.
    pub fn group(&self) -> &Group<R> {
        &self.group
    }

    /// This session's client id.
    pub fn client_id(&self) -> u64 {
        self.client_id
    }
}

thread_local! {
    static COUNTER: Cell<u64> = const { Cell::new(0) };
}

fn next_local() -> u64 {
    COUNTER.with(|counter| {
        counter.set(counter.get() + 1);
        counter.get().wrapping_mul(0x9E37_79B9_7F4A_7C15)
    })
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn transport_error(err: GroupError, sent: bool) -> TransportError {
    if sent {
        TransportError::Unknown(err.to_string())
    } else {
        TransportError::Unavailable(err.to_string())
    }
}

impl<R: Runtime> queue::Transport for Session<R> {
    async fn submit(&self, command: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        let request = Request::Command {
            client_id: self.client_id,
            seq,
            command,
        };
        match self.group.leader_call(request, self.deadline).await {
            Ok(Response::Applied(bytes)) => Ok(bytes),
            Ok(Response::Error { message, .. }) => Err(TransportError::Refused(message)),
            Ok(other) => Err(TransportError::Refused(format!(
                "unexpected answer: {other:?}"
            ))),
            // The command may have been proposed before the answer was lost.
            Err(err) => Err(transport_error(err, true)),
        }
    }

    async fn query(&self, query: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        match self
            .group
            .leader_call(Request::Query { query }, self.deadline)
            .await
        {
            Ok(Response::Applied(bytes)) => Ok(bytes),
            Ok(Response::Error { message, .. }) => Err(TransportError::Refused(message)),
            Ok(other) => Err(TransportError::Refused(format!(
                "unexpected answer: {other:?}"
            ))),
            Err(err) => Err(transport_error(err, false)),
        }
    }
}
