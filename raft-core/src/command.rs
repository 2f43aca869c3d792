//! The driver's own encodings inside log entries and snapshots.
//!
//! Every encoding starts with a format byte so that a later version can
//! change it, and decodes totally: bytes from the log or the network that
//! do not check out give `None`, never a panic.

use serde::{Deserialize, Serialize};

use crate::session::Session;

const COMMAND_FORMAT: u8 = 1;
/// Distinct from [`COMMAND_FORMAT`]: both are normal entries, told apart by
/// their first byte.
const REGISTER_FORMAT: u8 = 2;
const CHANGE_FORMAT: u8 = 1;
/// 2: sessions carry their log time and command digest, and the snapshot
/// the session timeout.
const SNAPSHOT_FORMAT: u8 = 2;

/// A normal entry proposed through [`crate::Node::propose`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CommandEntry {
    pub(crate) client_id: u64,
    pub(crate) seq: u64,
    /// Stamped by the proposer; see [`crate::ApplyContext::time_ms`].
    pub(crate) time_ms: u64,
    /// As bytes, not a sequence of `u8`: postcard writes both the same way
    /// (a length, then the bytes), so entries logged before read the same,
    /// but decoding bytes is one copy where a sequence is a push per byte.
    #[serde(with = "serde_bytes")]
    pub(crate) command: Vec<u8>,
}

/// A normal entry proposed through [`crate::Node::register`]: opens a
/// client session whose id is this entry's log index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RegisterEntry {
    /// Stamped by the proposer; the session's first activity.
    pub(crate) time_ms: u64,
}

/// The context of a membership change entry: what the change carries
/// beyond raft-rs's ids.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChangeContext {
    /// Metadata of the nodes added by the change (for example a libp2p
    /// peer id), replicated so that every replica maps ids the same way.
    pub(crate) metadata: Vec<(u64, Vec<u8>)>,
}

/// The driver's part of a snapshot, around the state machine's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotData {
    /// The group the snapshot belongs to; a replica refuses any other.
    pub(crate) group_id: u128,
    /// The session table bound, fixed at bootstrap.
    pub(crate) max_sessions_count: u64,
    /// Log time after which an idle session expires, fixed at bootstrap.
    pub(crate) session_timeout_ms: u64,
    /// The last `ApplyContext::time_ms` applied.
    pub(crate) last_time_ms: u64,
    /// Node metadata by raft id.
    pub(crate) metadata: Vec<(u64, Vec<u8>)>,
    /// Raft ids removed from the group, whose messages are refused.
    pub(crate) removed_ids: Vec<u64>,
    pub(crate) sessions: Vec<(u64, Session)>,
    /// [`crate::StateMachine::snapshot`] output.
    pub(crate) state: Vec<u8>,
}

fn encode<T: Serialize>(format: u8, value: &T) -> Vec<u8> {
    let mut out = vec![format];
    // Serializing plain structs of integers and byte vectors into a Vec
    // cannot fail; an error here is a programming error.
    #[allow(clippy::expect_used)]
    let body = postcard::to_allocvec(value).expect("postcard encodes plain data");
    out.extend_from_slice(&body);
    out
}

fn decode<'a, T: Deserialize<'a>>(format: u8, bytes: &'a [u8]) -> Option<T> {
    let (first, body) = bytes.split_first()?;
    if *first != format {
        return None;
    }
    let (value, rest) = postcard::take_from_bytes(body).ok()?;
    rest.is_empty().then_some(value)
}

impl CommandEntry {
    pub(crate) fn encode(&self) -> Vec<u8> {
        encode(COMMAND_FORMAT, self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        decode(COMMAND_FORMAT, bytes)
    }
}

impl RegisterEntry {
    pub(crate) fn encode(&self) -> Vec<u8> {
        encode(REGISTER_FORMAT, self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        decode(REGISTER_FORMAT, bytes)
    }
}

impl ChangeContext {
    pub(crate) fn encode(&self) -> Vec<u8> {
        encode(CHANGE_FORMAT, self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        decode(CHANGE_FORMAT, bytes)
    }
}

impl SnapshotData {
    pub(crate) fn encode(&self) -> Vec<u8> {
        encode(SNAPSHOT_FORMAT, self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        decode(SNAPSHOT_FORMAT, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_bytes_field_encodes_like_a_u8_sequence() {
        // Entries, snapshots and messages written before the byte fields
        // were marked `serde_bytes` must decode the same, and the other way.
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Sequence {
            before: u64,
            data: Vec<u8>,
        }
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Bytes {
            before: u64,
            #[serde(with = "serde_bytes")]
            data: Vec<u8>,
        }
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let old = postcard::to_allocvec(&Sequence {
                before: 9,
                data: data.clone(),
            })
            .expect("encode");
            let new = postcard::to_allocvec(&Bytes {
                before: 9,
                data: data.clone(),
            })
            .expect("encode");
            assert_eq!(old, new, "len {len}");
            let read: Bytes = postcard::from_bytes(&old).expect("decode");
            assert_eq!(read.data, data);
        }
    }

    #[test]
    fn round_trips() {
        let command = CommandEntry {
            client_id: 3,
            seq: 9,
            time_ms: 1_700_000_000_000,
            command: b"put".to_vec(),
        };
        assert_eq!(CommandEntry::decode(&command.encode()), Some(command));
        let context = ChangeContext {
            metadata: vec![(4, b"12D3KooW".to_vec())],
        };
        assert_eq!(ChangeContext::decode(&context.encode()), Some(context));
        let register = RegisterEntry { time_ms: 77 };
        assert_eq!(
            RegisterEntry::decode(&register.encode()),
            Some(register.clone())
        );
        assert_eq!(
            CommandEntry::decode(&register.encode()),
            None,
            "a register entry is never read as a command"
        );
        let data = SnapshotData {
            group_id: u128::MAX - 5,
            max_sessions_count: 10,
            session_timeout_ms: 60_000,
            last_time_ms: 5,
            metadata: vec![(1, vec![1])],
            removed_ids: vec![7],
            sessions: vec![(
                2,
                Session {
                    last_seq: 1,
                    last_index: 3,
                    last_time_ms: 4,
                    digest: 5,
                    result: vec![4],
                },
            )],
            state: vec![9; 100],
        };
        assert_eq!(SnapshotData::decode(&data.encode()), Some(data));
    }

    #[test]
    fn trailing_bytes_and_wrong_format_are_refused() {
        let mut bytes = CommandEntry {
            client_id: 1,
            seq: 1,
            time_ms: 1,
            command: vec![],
        }
        .encode();
        bytes.push(0);
        assert_eq!(CommandEntry::decode(&bytes), None);
        assert_eq!(CommandEntry::decode(&[]), None);
        assert_eq!(CommandEntry::decode(&[2, 0, 0, 0, 0]), None);
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = CommandEntry::decode(&bytes);
            let _ = ChangeContext::decode(&bytes);
            let _ = RegisterEntry::decode(&bytes);
            let _ = SnapshotData::decode(&bytes);
        }
    }
}
