//! A client session: a client id the group hands out, sequence numbers,
//! retries.

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
///
/// The client id is not chosen here: the first command registers the
/// session through the group's log, and the id is the log index of that
/// registration, unique by construction. (Ids derived from the clock,
/// addresses or counters collided between fresh WASM instances started in
/// the same millisecond, and a collision answers one client's command with
/// another's result.)
pub struct Session<R: Runtime> {
    group: Group<R>,
    client_id: Cell<Option<u64>>,
    seq: Cell<u64>,
    deadline: Duration,
}

impl<R: Runtime> Session<R> {
    pub(crate) fn new(group: Group<R>) -> Self {
        Self {
            group,
            client_id: Cell::new(None),
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

    /// This session's client id, registering the session first if it has
    /// none yet.
    ///
    /// # Errors
    ///
    /// When no leader registered it before the deadline.
    pub async fn client_id(&self) -> Result<u64, GroupError> {
        if let Some(id) = self.client_id.get() {
            return Ok(id);
        }
        let response = self
            .group
            .leader_call(Request::Register, self.deadline)
            .await?;
        match response {
            Response::Registered { client_id } if client_id != 0 => {
                self.client_id.set(Some(client_id));
                Ok(client_id)
            }
            other => Err(GroupError::Protocol {
                what: "the group's leader".to_owned(),
                reason: format!("unexpected answer to register: {other:?}"),
            }),
        }
    }
}

fn transport_error(err: GroupError, sent: bool) -> TransportError {
    if sent {
        TransportError::Unknown(err.to_string())
    } else {
        TransportError::Unavailable(err.to_string())
    }
}

fn unexpected(other: &Response) -> TransportError {
    TransportError::Refused(format!("unexpected answer: {other:?}"))
}

impl<R: Runtime> queue::Transport for Session<R> {
    async fn submit(&self, command: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        // Whether an attempt of this command may have reached a leader: then
        // its outcome is unknown unless an answer says otherwise.
        let maybe_delivered = Cell::new(false);
        loop {
            let client_id = self
                .client_id()
                .await
                .map_err(|err| transport_error(err, maybe_delivered.get()))?;
            let request = Request::Command {
                client_id,
                seq,
                command: command.clone(),
            };
            let answer = self
                .group
                .leader_call_tracked(request, self.deadline, &maybe_delivered)
                .await;
            match answer {
                Ok(Response::Applied(bytes)) => return Ok(bytes),
                Ok(Response::SessionExpired { message }) => {
                    // The session is gone (idle past the group's timeout, or
                    // evicted): the next command registers a new one.
                    self.client_id.set(None);
                    if maybe_delivered.get() {
                        // An earlier attempt may have applied before the
                        // session went: retrying under a new id could apply
                        // it twice.
                        return Err(TransportError::Unknown(format!(
                            "{message}; an earlier attempt may have applied"
                        )));
                    }
                    // This command never reached a state machine under the
                    // old session: sending it under a new one is safe.
                }
                Ok(Response::Error { message, .. }) => {
                    return Err(TransportError::Refused(message))
                }
                Ok(other) => return Err(unexpected(&other)),
                // The command may have been proposed before the answer was lost.
                Err(err) => return Err(transport_error(err, true)),
            }
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
            Ok(other) => Err(unexpected(&other)),
            Err(err) => Err(transport_error(err, false)),
        }
    }
}
