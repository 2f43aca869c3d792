//! The protocol between clients and replicas, and between replicas.
//!
//! Every encoding is one [`PROTOCOL_VERSION`] byte followed by postcard.
//! Decoding is total: bytes from the network decode to a value or to a
//! [`ProtoError`], never a panic.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The version byte that starts every encoding.
pub const PROTOCOL_VERSION: u8 = 2;

/// Largest request or response batch, in bytes. A raft-core command is at
/// most 512 KiB; a batch carries many.
pub const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Most requests in one batch.
pub const BATCH_REQUESTS_MAX: usize = 1024;

/// A decoding failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// Too big to be a batch.
    #[error("message of {0} bytes exceeds the {BATCH_BYTES_MAX}-byte limit")]
    TooLarge(usize),
    /// Another protocol version.
    #[error("protocol version {0}; this build speaks {PROTOCOL_VERSION}")]
    Version(u8),
    /// Not a message of this protocol.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Encodes `value` with the version byte.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let bytes = vec![PROTOCOL_VERSION];
    // Serializing owned data structures into a Vec cannot fail.
    postcard::to_extend(value, bytes).unwrap_or_else(|_| vec![PROTOCOL_VERSION])
}

/// Decodes bytes made by [`encode`].
///
/// # Errors
///
/// [`ProtoError`] for anything else.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtoError> {
    if bytes.len() > BATCH_BYTES_MAX {
        return Err(ProtoError::TooLarge(bytes.len()));
    }
    let Some((&version, body)) = bytes.split_first() else {
        return Err(ProtoError::Malformed("empty".to_owned()));
    };
    if version != PROTOCOL_VERSION {
        return Err(ProtoError::Version(version));
    }
    postcard::from_bytes(body).map_err(|err| ProtoError::Malformed(err.to_string()))
}

/// Requests sent together, answered on the capability the message carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestBatch {
    /// The access token every request of the batch is checked against
    /// (see [`crate::access`]).
    #[serde(with = "serde_bytes")]
    pub token: Vec<u8>,
    /// Each request with the id its response will carry.
    pub requests: Vec<(u64, Request)>,
}

/// Responses sent together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseBatch {
    /// Each response with its request's id.
    pub responses: Vec<(u64, Response)>,
}

/// What a client can ask a replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A state-machine command (an encoded `queue::Command`), applied once
    /// per `(client_id, seq)`. Leader only.
    Command {
        /// The client's session id.
        client_id: u64,
        /// The client's sequence number; one command in flight per client.
        seq: u64,
        /// The encoded command.
        #[serde(with = "serde_bytes")]
        command: Vec<u8>,
    },
    /// A linearizable read (an encoded `queue::Query`). Leader only.
    Query {
        /// The encoded query.
        #[serde(with = "serde_bytes")]
        query: Vec<u8>,
    },
    /// This replica's status. Any replica.
    Status,
    /// Makes an uninitialised replica one of a new group's first voters.
    Init {
        /// The group's id.
        group_id: u128,
        /// This replica's raft id.
        id: u64,
        /// Every first voter: raft id and peer id.
        voters: Vec<(u64, String)>,
    },
    /// Makes an uninitialised replica ready to be added as `id`.
    Join {
        /// The group's id.
        group_id: u128,
        /// The raft id it will be added as.
        id: u64,
    },
    /// Adds replica `id` on host `peer_id` as a learner. Leader only.
    AddLearner {
        /// Its raft id.
        id: u64,
        /// Its host.
        peer_id: String,
    },
    /// Makes learner `id` a voter. Leader only.
    Promote {
        /// Its raft id.
        id: u64,
    },
    /// Removes replica `id`. Leader only.
    Remove {
        /// Its raft id.
        id: u64,
    },
    /// Hands leadership to `id`. Leader only.
    TransferLeader {
        /// The new leader's raft id.
        id: u64,
    },
    /// Deletes this replica's data and ends it. Refused while it is a
    /// member of a group (remove it first), unless `force`.
    Destroy {
        /// Destroy even if it is still a member.
        force: bool,
    },
    /// Opens a client session through the log; answered with
    /// [`Response::Registered`]. Leader only. Retrying after a lost answer
    /// is safe: it opens another session, and the unused one expires.
    Register,
    /// A new token for `scope`, answered with [`Response::Token`]. Any
    /// replica. Refused unless the batch's token allows all of `scope`: a
    /// holder can narrow its authority, never widen it.
    Mint {
        /// What the new token allows.
        scope: crate::access::Scope,
    },
    /// The group key, answered with [`Response::Key`], to grant to a new
    /// replica (`add-replica`). Any replica; needs admin authority.
    GroupKey,
}

/// A replica's answer to one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The state machine's encoded reply (`queue::Response`).
    Applied(#[serde(with = "serde_bytes")] Vec<u8>),
    /// This replica's status.
    Status(Box<ReplicaStatus>),
    /// The membership after a change.
    Members(Vec<Member>),
    /// Done (init, join, transfer, destroy).
    Done,
    /// Ask the leader instead.
    NotLeader {
        /// The leader, if this replica knows one.
        leader: Option<Member>,
    },
    /// The request failed.
    Error {
        /// Whether sending it again (same client id and seq) may succeed.
        retryable: bool,
        /// Why, and what to do.
        message: String,
    },
    /// A new session's client id (the log index of its registration).
    Registered {
        /// Use it in every `Command`.
        client_id: u64,
    },
    /// A token made by [`Request::Mint`].
    Token(Vec<u8>),
    /// The group key, from [`Request::GroupKey`].
    Key(Vec<u8>),
    /// The command's session is unknown: never registered, expired or
    /// evicted. It did not apply now; register a new session.
    SessionExpired {
        /// Why.
        message: String,
    },
}

/// A member of the group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its raft id.
    pub id: u64,
    /// Its host.
    pub peer_id: String,
    /// Whether it votes (false: learner).
    pub voter: bool,
}

/// What a replica reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// Its host.
    pub peer_id: String,
    /// The group version it serves.
    pub version: String,
    /// Whether it has joined a group yet.
    pub initialized: bool,
    /// The group id, hex (empty before init).
    pub group_id: String,
    /// Its raft id (0 before init).
    pub raft_id: u64,
    /// leader, follower, candidate, pre-candidate, or uninitialized.
    pub role: String,
    /// The current term.
    pub term: u64,
    /// The leader's raft id (0: none known).
    pub leader_id: u64,
    /// The commit index.
    pub commit: u64,
    /// The applied index.
    pub applied: u64,
    /// The last log index.
    pub last_index: u64,
    /// The members, as this replica knows them.
    pub members: Vec<Member>,
    /// fsyncs of the log since the replica started.
    pub fsyncs: u64,
    /// Log entries persisted since the replica started.
    pub entries_persisted: u64,
    /// Bytes written to the log's segments since the replica started.
    pub log_bytes_written: u64,
    /// Raft messages dropped before `step` (forged, garbled, unknown group).
    pub dropped_messages: u64,
    /// The last reason a message was dropped.
    pub last_drop: String,
    /// Outgoing Raft envelopes dropped because a peer's queue was full.
    pub outbound_dropped: u64,
    /// Raft envelopes handed to the transport since the replica started.
    pub envelopes_sent: u64,
    /// Of those, envelopes sent ahead of this replica's own fsync (a
    /// leader's appends, `Node::send_early`).
    pub envelopes_sent_early: u64,
    /// Raft messages stepped since the replica started.
    pub messages_stepped: u64,
    /// On the leader: each follower's raft id, matched index and state.
    pub progress: Vec<(u64, u64, String)>,
    /// Where this replica's time goes, since it started.
    pub activity: Activity,
}

/// A replica's event-loop counters, since it started (for benchmarks and
/// diagnosis: take deltas).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// Loop rounds that ran raft-core's `process` (at most one fsync each).
    pub rounds: u64,
    /// Time spent in `send_early` and `process` (persist, send, apply), in
    /// µs.
    pub process_us: u64,
    /// Rounds whose `process` took over 10 ms.
    pub slow_rounds_10ms: u64,
    /// Rounds whose `process` took over 100 ms.
    pub slow_rounds_100ms: u64,
    /// Request channel messages received (each a batch of requests).
    pub request_messages: u64,
    /// Client requests received.
    pub requests: u64,
    /// Reply messages sent (one per reply capability per round).
    pub reply_messages: u64,
    /// Snapshots this replica took of its own state.
    pub snapshots_taken: u64,
    /// Commands applied to the state machine.
    pub commands_applied: u64,
}

/// Frames several encoded raft-core envelopes into one inbox message:
/// each is a little-endian `u32` length, then the envelope.
pub fn frame_envelopes<'a>(envelopes: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for envelope in envelopes {
        let len = u32::try_from(envelope.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(envelope);
    }
    out
}

/// Splits a message made by [`frame_envelopes`].
///
/// # Errors
///
/// When a length runs past the end: the whole message is refused.
pub fn unframe_envelopes(bytes: &[u8]) -> Result<Vec<&[u8]>, ProtoError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(ProtoError::Malformed(
                "truncated envelope length".to_owned(),
            ));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > tail.len() {
            return Err(ProtoError::Malformed(format!(
                "envelope of {len} bytes runs past the message's {} bytes",
                tail.len()
            )));
        }
        let (envelope, next) = tail.split_at(len);
        out.push(envelope);
        rest = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_garbage_is_an_error() {
        let batch = RequestBatch {
            token: vec![3; 40],
            requests: vec![
                (7, Request::Status),
                (8, Request::Query { query: vec![1, 2] }),
            ],
        };
        assert_eq!(decode::<RequestBatch>(&encode(&batch)).unwrap(), batch);
        assert!(matches!(
            decode::<RequestBatch>(&[]),
            Err(ProtoError::Malformed(_))
        ));
        assert!(matches!(
            decode::<RequestBatch>(&[9, 1, 2]),
            Err(ProtoError::Version(9))
        ));
        assert!(matches!(
            decode::<RequestBatch>(&[PROTOCOL_VERSION, 0xff, 0xff, 0xff]),
            Err(ProtoError::Malformed(_))
        ));
        for seed in 0u32..2000 {
            let garbage: Vec<u8> = (0..(seed % 64))
                .map(|n| (n.wrapping_mul(seed).wrapping_add(seed >> 3)) as u8)
                .collect();
            let mut framed = vec![PROTOCOL_VERSION];
            framed.extend(garbage);
            let _ = decode::<RequestBatch>(&framed);
            let _ = decode::<ResponseBatch>(&framed);
        }
    }

    #[test]
    fn envelopes_frame_and_unframe() {
        let framed = frame_envelopes([&b"one"[..], &b""[..], &b"three"[..]]);
        assert_eq!(
            unframe_envelopes(&framed).unwrap(),
            vec![&b"one"[..], &b""[..], &b"three"[..]]
        );
        assert!(unframe_envelopes(&framed[..framed.len() - 1]).is_err());
        assert!(unframe_envelopes(&[1, 2]).is_err());
    }
}
