//! Serde for `Vec<u8>` fields as byte strings rather than sequences of
//! `u8`, for `#[serde(with = "crate::bytes")]`.
//!
//! Why: serde hands a `Vec<u8>` to the serializer one byte at a time.
//! Postcard writes both forms identically (a varint length, then the
//! bytes), so snapshots and replies keep their format, but the byte-string
//! form is one copy: a snapshot of 100,000 256-byte values took 55 ms
//! natively as sequences (docs/raft-core.md, "Snapshots").

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};

/// Serializes `bytes` as one byte string.
///
/// # Errors
///
/// Whatever the serializer returns.
pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

/// Deserializes a byte string, or a sequence of bytes from formats that
/// write byte strings that way (JSON).
///
/// # Errors
///
/// Whatever the deserializer returns for anything else.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    deserializer.deserialize_byte_buf(BytesVisitor)
}

struct BytesVisitor;

/// Bytes reserved up front for a sequence at most: its length hint comes
/// from the input, which may lie.
const SEQ_PREALLOC_BYTES_MAX: usize = 4096;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
        Ok(bytes.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(bytes)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let hint = seq.size_hint().unwrap_or(0).min(SEQ_PREALLOC_BYTES_MAX);
        let mut out = Vec::with_capacity(hint);
        while let Some(byte) = seq.next_element::<u8>()? {
            out.push(byte);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AsSeq {
        a: Vec<u8>,
        b: u64,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AsBytes {
        #[serde(with = "crate::bytes")]
        a: Vec<u8>,
        b: u64,
    }

    #[test]
    fn postcard_bytes_are_the_same_either_way() {
        // Goal: switching a field to byte strings keeps every stored
        // snapshot readable. Method: both encodings, several lengths
        // (the varint length crosses one and two bytes).
        for len in [0usize, 1, 127, 128, 300, 20_000] {
            let a: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let seq = postcard::to_allocvec(&AsSeq { a: a.clone(), b: 9 }).unwrap();
            let bytes = postcard::to_allocvec(&AsBytes { a: a.clone(), b: 9 }).unwrap();
            assert_eq!(seq, bytes, "length {len}");
            let back: AsBytes = postcard::from_bytes(&seq).unwrap();
            assert_eq!(back, AsBytes { a, b: 9 });
        }
    }
}
