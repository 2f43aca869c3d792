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

/// Bytes of the state length written by [`patch_state_len`]: a varint
/// padded to five bytes. Postcard reads a padded varint like a minimal
/// one, as a `u64` and as a `usize` on 32-bit targets (at most five bytes,
/// the last below 16), so peers of every version decode it.
pub(crate) const STATE_LEN_PLACEHOLDER_BYTES: usize = 5;

/// Writes `state_len` as a varint padded to
/// [`STATE_LEN_PLACEHOLDER_BYTES`] into `out`. `None` if it does not fit
/// (4 GiB or more).
pub(crate) fn patch_state_len(out: &mut [u8], state_len: u64) -> Option<()> {
    if state_len >> 32 != 0 || out.len() != STATE_LEN_PLACEHOLDER_BYTES {
        return None;
    }
    for (at, byte) in out.iter_mut().enumerate() {
        let bits = ((state_len >> (7 * at)) & 0x7f) as u8;
        let more = if at + 1 < STATE_LEN_PLACEHOLDER_BYTES {
            0x80
        } else {
            0
        };
        *byte = bits | more;
    }
    Some(())
}

/// The fields of [`SnapshotData`] before `state`, borrowed, in the same
/// order. Postcard writes a struct as its fields in order and a `Vec<u8>`
/// as a varint length and the bytes, so `format ++ header ++ varint(len)
/// ++ state` is exactly serde's encoding of [`SnapshotData`]. Writing the
/// state as one copy instead of through serde (which hands a `Vec<u8>` over
/// one byte at a time) took the encoding of a 17 MB state from 42 ms to a
/// few (docs/raft-core.md, "Snapshots").
#[derive(Serialize)]
struct SnapshotHeaderRef<'a> {
    group_id: u128,
    max_sessions_count: u64,
    session_timeout_ms: u64,
    last_time_ms: u64,
    metadata: &'a [(u64, Vec<u8>)],
    removed_ids: &'a [u64],
    sessions: &'a [(u64, Session)],
}

/// [`SnapshotHeaderRef`], owned, for decoding.
#[derive(Deserialize)]
struct SnapshotHeader {
    group_id: u128,
    max_sessions_count: u64,
    session_timeout_ms: u64,
    last_time_ms: u64,
    metadata: Vec<(u64, Vec<u8>)>,
    removed_ids: Vec<u64>,
    sessions: Vec<(u64, Session)>,
}

impl SnapshotData {
    /// The format byte and the header: everything before the state.
    fn encode_header(&self) -> Vec<u8> {
        let header = SnapshotHeaderRef {
            group_id: self.group_id,
            max_sessions_count: self.max_sessions_count,
            session_timeout_ms: self.session_timeout_ms,
            last_time_ms: self.last_time_ms,
            metadata: &self.metadata,
            removed_ids: &self.removed_ids,
            sessions: &self.sessions,
        };
        // Plain structs of integers and byte vectors always encode; an
        // error here is a programming error.
        #[allow(clippy::expect_used)]
        postcard::to_extend(&header, vec![SNAPSHOT_FORMAT]).expect("postcard encodes plain data")
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        #[allow(clippy::expect_used)]
        let mut out = postcard::to_extend(&(self.state.len() as u64), self.encode_header())
            .expect("postcard encodes a u64");
        out.reserve_exact(self.state.len());
        out.extend_from_slice(&self.state);
        out
    }

    /// The encoding up to the state, followed by a placeholder for the
    /// state's length ([`STATE_LEN_PLACEHOLDER_BYTES`] bytes, filled in by
    /// [`patch_state_len`]): the state is appended after it as it is
    /// serialized, and its length is known only at the end.
    pub(crate) fn encode_prefix(&self) -> Vec<u8> {
        let mut out = self.encode_header();
        out.extend_from_slice(&[0; STATE_LEN_PLACEHOLDER_BYTES]);
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let (first, body) = bytes.split_first()?;
        if *first != SNAPSHOT_FORMAT {
            return None;
        }
        let (header, rest): (SnapshotHeader, _) = postcard::take_from_bytes(body).ok()?;
        let (state_len, state): (u64, _) = postcard::take_from_bytes(rest).ok()?;
        if state.len() as u64 != state_len {
            return None;
        }
        Some(Self {
            group_id: header.group_id,
            max_sessions_count: header.max_sessions_count,
            session_timeout_ms: header.session_timeout_ms,
            last_time_ms: header.last_time_ms,
            metadata: header.metadata,
            removed_ids: header.removed_ids,
            sessions: header.sessions,
            state: state.to_vec(),
        })
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
    fn snapshot_data_is_serdes_encoding() {
        // Goal: the fast snapshot codec reads and writes exactly what the
        // serde-derived one did (snapshots on disk and from older peers).
        // Method: both encodings of states whose length varint takes one,
        // two and three bytes.
        for state_len in [0usize, 5, 127, 128, 20_000] {
            let data = SnapshotData {
                group_id: 77,
                max_sessions_count: 10,
                session_timeout_ms: 60_000,
                last_time_ms: 5,
                metadata: vec![(1, vec![1, 2]), (3, vec![])],
                removed_ids: vec![7, 9],
                sessions: vec![(
                    2,
                    Session {
                        last_seq: 1,
                        last_index: 3,
                        last_time_ms: 4,
                        digest: 5,
                        result: vec![4; 3],
                    },
                )],
                state: (0..state_len).map(|i| (i % 253) as u8).collect(),
            };
            let serde_bytes = encode(SNAPSHOT_FORMAT, &data);
            assert_eq!(data.encode(), serde_bytes, "state of {state_len} bytes");
            assert_eq!(SnapshotData::decode(&serde_bytes), Some(data.clone()));
            let mut longer = serde_bytes.clone();
            longer.push(0);
            assert_eq!(SnapshotData::decode(&longer), None);
            assert_eq!(
                SnapshotData::decode(&serde_bytes[..serde_bytes.len() - 1]),
                None
            );
        }
    }

    #[test]
    fn a_padded_state_length_decodes_everywhere() {
        // Goal: a snapshot whose state was appended after a placeholder
        // (its length patched in at the end) reads as the same data, with
        // this decoder and with serde's (older peers). Method: lengths
        // whose minimal varint takes one to four bytes.
        for state_len in [0usize, 1, 127, 128, 16_384, 2_100_000] {
            let data = SnapshotData {
                group_id: 5,
                max_sessions_count: 3,
                session_timeout_ms: 1_000,
                last_time_ms: 2,
                metadata: vec![(1, vec![7])],
                removed_ids: vec![4],
                sessions: Vec::new(),
                state: (0..state_len).map(|i| (i % 249) as u8).collect(),
            };
            let mut bytes = data.encode_prefix();
            let at = bytes.len() - STATE_LEN_PLACEHOLDER_BYTES;
            bytes.extend_from_slice(&data.state);
            patch_state_len(
                &mut bytes[at..at + STATE_LEN_PLACEHOLDER_BYTES],
                state_len as u64,
            )
            .expect("fits");
            assert_eq!(SnapshotData::decode(&bytes), Some(data.clone()));
            assert_eq!(decode::<SnapshotData>(SNAPSHOT_FORMAT, &bytes), Some(data));
        }
        let mut placeholder = [0; STATE_LEN_PLACEHOLDER_BYTES];
        assert_eq!(patch_state_len(&mut placeholder, 1 << 32), None);
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
