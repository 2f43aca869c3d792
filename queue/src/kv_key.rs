//! A KV key that keeps short keys inside the map's nodes.
//!
//! A `BTreeMap<Vec<u8>, _>` stores pointers in its nodes, so each
//! comparison on the way down loads the key from somewhere else on the
//! heap: with 100,000 keys a lookup is dozens of cache misses, and applying
//! a put was a quarter of a replica's CPU in a write benchmark
//! (docs/benchmarks.md, the per-hop table). Keys of up to
//! [`INLINE_KEY_BYTES_MAX`] bytes live in the node itself instead, in the
//! same 24 bytes a `Vec` header takes. Order, equality and the encoding are
//! those of the bytes, so the map iterates and serializes exactly as with
//! `Vec<u8>` keys (snapshots written before read the same).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest key kept inline; longer ones go to the heap.
pub(crate) const INLINE_KEY_BYTES_MAX: usize = 22;

/// A key's bytes, inline when short.
#[derive(Clone)]
pub(crate) enum Key {
    Inline {
        len: u8,
        bytes: [u8; INLINE_KEY_BYTES_MAX],
    },
    Heap(Box<[u8]>),
}

impl Key {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(bytes) => bytes,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
}

impl From<Vec<u8>> for Key {
    fn from(key: Vec<u8>) -> Self {
        match u8::try_from(key.len()) {
            Ok(len) if key.len() <= INLINE_KEY_BYTES_MAX => {
                let mut bytes = [0; INLINE_KEY_BYTES_MAX];
                bytes[..key.len()].copy_from_slice(&key);
                Self::Inline { len, bytes }
            }
            _ => Self::Heap(key.into_boxed_slice()),
        }
    }
}

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_slice(), f)
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.as_slice())
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
        Ok(Self::from(bytes.into_vec()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_key_is_no_bigger_than_a_vec() {
        assert_eq!(std::mem::size_of::<Key>(), std::mem::size_of::<Vec<u8>>());
    }

    #[test]
    fn maps_order_and_encode_as_with_vec_keys() {
        let keys: Vec<Vec<u8>> = [
            &b""[..],
            b"a",
            b"ab",
            b"key-000001",
            b"key-000010",
            &[0xff; 22],
            &[0xff; 23],
            &[7; 300],
            b"key-00001",
        ]
        .iter()
        .map(|key| key.to_vec())
        .collect();
        let old: BTreeMap<Vec<u8>, u64> = keys.iter().cloned().zip(0..).collect();
        let new: BTreeMap<Key, u64> = keys.iter().cloned().map(Key::from).zip(0..).collect();
        let old_order: Vec<&[u8]> = old.keys().map(Vec::as_slice).collect();
        let new_order: Vec<&[u8]> = new.keys().map(Key::as_slice).collect();
        assert_eq!(old_order, new_order);
        let old_bytes = postcard::to_allocvec(&old).expect("encode");
        assert_eq!(old_bytes, postcard::to_allocvec(&new).expect("encode"));
        let read: BTreeMap<Key, u64> = postcard::from_bytes(&old_bytes).expect("decode");
        assert_eq!(read, new);
        for key in &keys {
            assert_eq!(new.get(key.as_slice()), old.get(key));
        }
        assert!(matches!(
            Key::from(vec![1; 22]),
            Key::Inline { len: 22, .. }
        ));
        assert!(matches!(Key::from(vec![1; 23]), Key::Heap(_)));
    }
}
