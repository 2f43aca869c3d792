//! The wire format of Raft message batches between replicas.
//!
//! One envelope carries the messages of one Ready from one replica to one
//! peer. Layout (integers little-endian):
//!
//! ```text
//! version u8 (= 1) | kind u8 | group_id u128 | from u64 | to u64 |
//! count u32 | count x (len u32 | prost-encoded eraftpb::Message)
//! ```
//!
//! `kind` is [`EnvelopeKind::Messages`] or [`EnvelopeKind::Snapshot`]. It
//! comes first so that a transport can refuse an oversized frame from
//! [`peek_header`] alone, before decoding anything: a `Messages` envelope is
//! at most `max_envelope_bytes` (about `max_append_bytes` plus 64 KiB), a
//! `Snapshot` envelope, which holds exactly one `MsgSnapshot` with the whole
//! state machine, at most `max_snapshot_bytes`.
//!
//! Decoding is total: any byte string gives an envelope or a
//! [`DropReason`], never a panic, and never allocates more than the input
//! size allows.

use prost::Message as _;
use raft::eraftpb::{Message, MessageType};

use crate::error::DropReason;

/// The envelope format version this build writes and reads.
pub const ENVELOPE_VERSION: u8 = 1;
/// Bytes of the fixed header, before the messages.
pub const ENVELOPE_HEADER_BYTES: usize = 1 + 1 + 16 + 8 + 8 + 4;

/// The `data` of a `MsgSnapshot` of group `group_id` around `state`, the
/// state machine's bytes, with no sessions, metadata or removed ids.
/// Replicas never call it (their snapshots are raft-core's own); it exists
/// so that adversarial tests can build what a faulty member could send: a
/// snapshot whose driver part is well formed and whose state is poison,
/// which a replica must refuse before it persists anything.
pub fn snapshot_data(group_id: u128, state: Vec<u8>) -> Vec<u8> {
    crate::command::SnapshotData {
        group_id,
        max_sessions_count: 0,
        session_timeout_ms: 0,
        last_time_ms: 0,
        metadata: Vec::new(),
        removed_ids: Vec::new(),
        sessions: Vec::new(),
        state,
    }
    .encode()
}

/// What an envelope carries, which decides its size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeKind {
    /// Ordinary messages (appends, heartbeats, votes, responses).
    Messages,
    /// One `MsgSnapshot`.
    Snapshot,
}

impl EnvelopeKind {
    fn to_byte(self) -> u8 {
        match self {
            EnvelopeKind::Messages => 0,
            EnvelopeKind::Snapshot => 1,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(EnvelopeKind::Messages),
            1 => Some(EnvelopeKind::Snapshot),
            _ => None,
        }
    }
}

/// The fixed header of an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// What it carries.
    pub kind: EnvelopeKind,
    /// The Raft group.
    pub group_id: u128,
    /// The sending replica's raft id.
    pub from: u64,
    /// The receiving replica's raft id.
    pub to: u64,
    /// Number of messages.
    pub count: u32,
}

/// Size limits for decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvelopeLimits {
    /// Largest `Messages` envelope.
    pub max_envelope_bytes: usize,
    /// Largest `Snapshot` envelope.
    pub max_snapshot_bytes: usize,
    /// Most messages in one envelope.
    pub max_messages_count: usize,
}

impl EnvelopeLimits {
    /// The limit for envelopes of `kind`.
    pub fn max_bytes(&self, kind: EnvelopeKind) -> usize {
        match kind {
            EnvelopeKind::Messages => self.max_envelope_bytes,
            EnvelopeKind::Snapshot => self.max_snapshot_bytes,
        }
    }
}

/// A decoded batch of Raft messages.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// The Raft group.
    pub group_id: u128,
    /// The sending replica's raft id.
    pub from: u64,
    /// The receiving replica's raft id.
    pub to: u64,
    /// The messages, in the order the sender produced them.
    pub msgs: Vec<Message>,
}

fn read_array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

/// Reads and checks the fixed header: version, kind, and the size limit of
/// that kind. Use it to refuse a frame before decoding it.
///
/// # Errors
///
/// [`DropReason::Malformed`], [`DropReason::UnsupportedVersion`] or
/// [`DropReason::Oversized`].
pub fn peek_header(bytes: &[u8], limits: &EnvelopeLimits) -> Result<EnvelopeHeader, DropReason> {
    if bytes.len() < ENVELOPE_HEADER_BYTES {
        return Err(DropReason::Malformed(format!(
            "{} bytes is shorter than the header",
            bytes.len()
        )));
    }
    if bytes[0] != ENVELOPE_VERSION {
        return Err(DropReason::UnsupportedVersion(bytes[0]));
    }
    let kind = EnvelopeKind::from_byte(bytes[1])
        .ok_or_else(|| DropReason::Malformed(format!("unknown envelope kind {}", bytes[1])))?;
    let max_bytes = limits.max_bytes(kind);
    if bytes.len() > max_bytes {
        return Err(DropReason::Oversized {
            bytes: bytes.len(),
            max_bytes,
        });
    }
    Ok(EnvelopeHeader {
        kind,
        group_id: u128::from_le_bytes(read_array(bytes, 2)),
        from: u64::from_le_bytes(read_array(bytes, 18)),
        to: u64::from_le_bytes(read_array(bytes, 26)),
        count: u32::from_le_bytes(read_array(bytes, 34)),
    })
}

impl Envelope {
    /// The kind this envelope is encoded as: `Snapshot` if it holds a
    /// `MsgSnapshot`.
    pub fn kind(&self) -> EnvelopeKind {
        if self
            .msgs
            .iter()
            .any(|m| m.msg_type == MessageType::MsgSnapshot as i32)
        {
            EnvelopeKind::Snapshot
        } else {
            EnvelopeKind::Messages
        }
    }

    /// Encodes the envelope.
    pub fn encode(&self) -> Vec<u8> {
        let body_bytes: usize = self.msgs.iter().map(|m| 4 + m.encoded_len()).sum();
        let mut out = Vec::with_capacity(ENVELOPE_HEADER_BYTES + body_bytes);
        out.push(ENVELOPE_VERSION);
        out.push(self.kind().to_byte());
        out.extend_from_slice(&self.group_id.to_le_bytes());
        out.extend_from_slice(&self.from.to_le_bytes());
        out.extend_from_slice(&self.to.to_le_bytes());
        out.extend_from_slice(&(self.msgs.len() as u32).to_le_bytes());
        for msg in &self.msgs {
            out.extend_from_slice(&(msg.encoded_len() as u32).to_le_bytes());
            msg.encode(&mut out)
                .unwrap_or_else(|_| unreachable!("a Vec grows as needed"));
        }
        out
    }

    /// Decodes an envelope, checking its size against `limits`.
    ///
    /// Only the framing is checked here; whether the messages may reach
    /// raft-rs is decided by [`crate::Node::step`].
    ///
    /// # Errors
    ///
    /// A [`DropReason`] saying what is wrong.
    pub fn decode(bytes: &[u8], limits: &EnvelopeLimits) -> Result<Envelope, DropReason> {
        let header = peek_header(bytes, limits)?;
        let count = header.count as usize;
        if count > limits.max_messages_count {
            return Err(DropReason::Malformed(format!(
                "{count} messages exceed the limit of {}",
                limits.max_messages_count
            )));
        }
        if header.kind == EnvelopeKind::Snapshot && count != 1 {
            return Err(DropReason::Malformed(
                "a snapshot envelope holds exactly one message".into(),
            ));
        }
        let mut msgs = Vec::with_capacity(count.min(bytes.len() / 4));
        let mut at = ENVELOPE_HEADER_BYTES;
        for _ in 0..count {
            if bytes.len() - at < 4 {
                return Err(DropReason::Malformed("truncated message length".into()));
            }
            let len = u32::from_le_bytes(read_array(bytes, at)) as usize;
            at += 4;
            if len > bytes.len() - at {
                return Err(DropReason::Malformed(
                    "message runs past the envelope".into(),
                ));
            }
            let msg = Message::decode(&bytes[at..at + len])
                .map_err(|e| DropReason::Malformed(format!("undecodable message: {e}")))?;
            at += len;
            let is_snapshot = msg.msg_type == MessageType::MsgSnapshot as i32;
            if is_snapshot != (header.kind == EnvelopeKind::Snapshot) {
                return Err(DropReason::Malformed(
                    "envelope kind does not match its messages".into(),
                ));
            }
            msgs.push(msg);
        }
        if at != bytes.len() {
            return Err(DropReason::Malformed(format!(
                "{} trailing bytes",
                bytes.len() - at
            )));
        }
        Ok(Envelope {
            group_id: header.group_id,
            from: header.from,
            to: header.to,
            msgs,
        })
    }
}

/// Splits one peer's messages of a Ready into envelopes that respect the
/// limits, keeping their order: a snapshot travels alone, and other
/// messages are packed up to `max_envelope_bytes`. Usually this yields a
/// single envelope.
pub(crate) fn pack(
    group_id: u128,
    from: u64,
    to: u64,
    msgs: Vec<Message>,
    limits: &EnvelopeLimits,
) -> Vec<Envelope> {
    let mut out = Vec::new();
    let mut current = Envelope {
        group_id,
        from,
        to,
        msgs: Vec::new(),
    };
    let mut current_bytes = ENVELOPE_HEADER_BYTES;
    for msg in msgs {
        let msg_bytes = 4 + msg.encoded_len();
        let is_snapshot = msg.msg_type == MessageType::MsgSnapshot as i32;
        let full = current_bytes + msg_bytes > limits.max_envelope_bytes
            || current.msgs.len() >= limits.max_messages_count;
        if !current.msgs.is_empty() && (is_snapshot || full) {
            out.push(std::mem::replace(
                &mut current,
                Envelope {
                    group_id,
                    from,
                    to,
                    msgs: Vec::new(),
                },
            ));
            current_bytes = ENVELOPE_HEADER_BYTES;
        }
        if is_snapshot {
            out.push(Envelope {
                group_id,
                from,
                to,
                msgs: vec![msg],
            });
        } else {
            current.msgs.push(msg);
            current_bytes += msg_bytes;
        }
    }
    if !current.msgs.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use raft::eraftpb::{Entry, Snapshot};

    const LIMITS: EnvelopeLimits = EnvelopeLimits {
        max_envelope_bytes: 4096,
        max_snapshot_bytes: 1 << 20,
        max_messages_count: 64,
    };

    fn append(index: u64, bytes: usize) -> Message {
        Message {
            msg_type: MessageType::MsgAppend as i32,
            from: 1,
            to: 2,
            term: 3,
            index,
            entries: vec![Entry {
                index: index + 1,
                term: 3,
                data: vec![7; bytes],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn snapshot_msg() -> Message {
        let mut msg = Message {
            msg_type: MessageType::MsgSnapshot as i32,
            from: 1,
            to: 2,
            ..Default::default()
        };
        msg.snapshot = Some(Snapshot {
            data: vec![1; 10_000],
            ..Default::default()
        });
        msg
    }

    #[test]
    fn round_trip_and_header() {
        let envelope = Envelope {
            group_id: 99 << 70,
            from: 1,
            to: 2,
            msgs: vec![append(5, 10), append(6, 0)],
        };
        let bytes = envelope.encode();
        let header = peek_header(&bytes, &LIMITS).expect("header");
        assert_eq!(
            (
                header.kind,
                header.group_id,
                header.from,
                header.to,
                header.count
            ),
            (EnvelopeKind::Messages, 99 << 70, 1, 2, 2)
        );
        assert_eq!(Envelope::decode(&bytes, &LIMITS).expect("decode"), envelope);
    }

    #[test]
    fn size_limits_depend_on_kind() {
        let big = Envelope {
            group_id: 1,
            from: 1,
            to: 2,
            msgs: vec![append(1, 5000)],
        }
        .encode();
        assert!(matches!(
            Envelope::decode(&big, &LIMITS),
            Err(DropReason::Oversized { .. })
        ));
        let snapshot = Envelope {
            group_id: 1,
            from: 1,
            to: 2,
            msgs: vec![snapshot_msg()],
        }
        .encode();
        assert!(snapshot.len() > LIMITS.max_envelope_bytes);
        assert_eq!(
            Envelope::decode(&snapshot, &LIMITS)
                .expect("snapshot fits its limit")
                .msgs
                .len(),
            1
        );
        // A forged kind byte cannot sneak ordinary messages in under the
        // snapshot limit.
        let mut forged = big.clone();
        forged[1] = 1;
        assert!(matches!(
            Envelope::decode(&forged, &LIMITS),
            Err(DropReason::Malformed(_))
        ));
    }

    #[test]
    fn pack_keeps_order_and_isolates_snapshots() {
        let msgs = vec![
            append(1, 1500),
            append(2, 1500),
            append(3, 1500),
            snapshot_msg(),
            append(4, 10),
        ];
        let envelopes = pack(1, 1, 2, msgs, &LIMITS);
        let shape: Vec<Vec<u64>> = envelopes
            .iter()
            .map(|e| e.msgs.iter().map(|m| m.index).collect())
            .collect();
        assert_eq!(shape, vec![vec![1, 2], vec![3], vec![0], vec![4]]);
        for envelope in envelopes {
            Envelope::decode(&envelope.encode(), &LIMITS).expect("every packed envelope decodes");
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Envelope::decode(&bytes, &LIMITS);
        }

        #[test]
        fn mutated_envelopes_never_panic(flip_at in 0usize..200, bit in 0u8..8) {
            let mut bytes = Envelope { group_id: 1, from: 1, to: 2, msgs: vec![append(5, 50), append(6, 50)] }.encode();
            let at = flip_at % bytes.len();
            bytes[at] ^= 1 << bit;
            let _ = Envelope::decode(&bytes, &LIMITS);
        }
    }
}
