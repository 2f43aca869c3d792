//! The replicated key-value map: put, get, delete, and compare-and-set on a
//! version.
//!
//! Copy-on-write for snapshots: [`Kv::freeze`] shares the map with a
//! snapshot being written (an `Arc`, O(1)), and writes meanwhile go to an
//! overlay; once the snapshot lets go, the overlay is merged back a few
//! entries per write. Serializing 100,000 entries took 35-45 ms natively
//! (memory-bound: every key and value is its own allocation), too long for
//! one loop round (docs/raft-core.md, "Snapshots").

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::iter::Peekable;
use std::sync::Arc;

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};

use crate::kv_key::Key;
use crate::limits::{KEY_BYTES_MAX, KV_ENTRIES_MAX, VALUE_BYTES_MAX};
use crate::types::Versioned;
use crate::QueueError;

/// The map as stored: keys to versioned values.
pub(crate) type Entries = BTreeMap<Key, Versioned>;

/// Overlay entries merged back into the map per write at most, once no
/// snapshot shares it: the merge never stalls one apply.
const MERGE_PER_WRITE_MAX_COUNT: usize = 16;

/// Keys to versioned values. Versions come from one counter bumped by every
/// write, so a key that is deleted and written again never gets an old
/// version back (no ABA for compare-and-set).
#[derive(Clone, Debug, Default)]
pub(crate) struct Kv {
    /// The entries, shared with a snapshot in progress while one is (then
    /// read-only here: see `overlay`).
    base: Arc<Entries>,
    /// Writes not yet in `base`: made while a snapshot shared it, merged
    /// back once it no longer does. `None` is a delete.
    overlay: BTreeMap<Key, Option<Versioned>>,
    /// Live keys (base and overlay together).
    len: u64,
    /// The version of the last write; 0 means "absent" and is never issued.
    revision: u64,
    /// Bytes held in keys and values, kept as entries change (every write
    /// checks the store limit; summing the map each time cost O(keys) per
    /// write). Not part of the snapshot: [`Kv::recount`] rebuilds it.
    bytes: u64,
}

/// The snapshot layout of [`Kv`] (what `#[derive]` wrote before the
/// overlay existed), for decoding.
#[derive(Deserialize)]
struct KvWire {
    entries: Entries,
    revision: u64,
}

impl<'de> Deserialize<'de> for Kv {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = KvWire::deserialize(deserializer)?;
        Ok(Self {
            len: wire.entries.len() as u64,
            base: Arc::new(wire.entries),
            overlay: BTreeMap::new(),
            revision: wire.revision,
            bytes: 0,
        })
    }
}

impl Serialize for Kv {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut kv = serializer.serialize_struct("Kv", 2)?;
        kv.serialize_field("entries", &MergedMap(self))?;
        kv.serialize_field("revision", &self.revision)?;
        kv.end()
    }
}

/// Serializes the live entries of a [`Kv`] as one map.
struct MergedMap<'a>(&'a Kv);

impl Serialize for MergedMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = usize::try_from(self.0.len).ok();
        let mut map = serializer.serialize_map(len)?;
        for (key, value) in self.0.iter() {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl PartialEq for Kv {
    /// The same live entries and revision, however they are split between
    /// the map and the overlay.
    fn eq(&self, other: &Self) -> bool {
        self.revision == other.revision && self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for Kv {}

/// The live entries of a map and its overlay, in key order.
struct Merged<'a> {
    base: Peekable<std::collections::btree_map::Iter<'a, Key, Versioned>>,
    overlay: Peekable<std::collections::btree_map::Iter<'a, Key, Option<Versioned>>>,
}

impl<'a> Iterator for Merged<'a> {
    type Item = (&'a Key, &'a Versioned);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.base.peek(), self.overlay.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((b, _)), Some((o, _))) => b.cmp(o),
            };
            match order {
                Ordering::Less => return self.base.next(),
                Ordering::Equal | Ordering::Greater => {
                    if order == Ordering::Equal {
                        // The overlay's write replaces the map's entry.
                        self.base.next();
                    }
                    if let Some((key, Some(value))) = self.overlay.next() {
                        return Some((key, value));
                    }
                    // A delete: nothing to yield for this key.
                }
            }
        }
    }
}

impl Kv {
    /// Bytes held in keys and values.
    pub(crate) fn stored_bytes(&self) -> u64 {
        self.bytes
    }

    /// Recomputes [`Kv::stored_bytes`] (after decoding a snapshot).
    pub(crate) fn recount(&mut self) {
        self.bytes = self
            .iter()
            .map(|(key, entry)| (key.len() + entry.value.len()) as u64)
            .sum();
    }

    /// Keys held.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The version of the last write.
    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    /// The live entries in key order.
    fn iter(&self) -> Merged<'_> {
        Merged {
            base: self.base.iter().peekable(),
            overlay: self.overlay.iter().peekable(),
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<&Versioned> {
        match self.overlay.get(key) {
            Some(written) => written.as_ref(),
            None => self.base.get(key),
        }
    }

    /// The version of `key`, 0 if absent.
    pub(crate) fn version(&self, key: &[u8]) -> u64 {
        self.get(key).map_or(0, |entry| entry.version)
    }

    /// Bytes a write of `value` to `key` adds (negative deltas count as 0).
    pub(crate) fn growth(&self, key: &[u8], value: &[u8]) -> u64 {
        let old = self
            .get(key)
            .map_or(0, |entry| key.len() + entry.value.len());
        ((key.len() + value.len()).saturating_sub(old)) as u64
    }

    /// Checks a key and value against the limits.
    ///
    /// # Errors
    ///
    /// [`QueueError::Invalid`] for an empty or oversized key or an oversized
    /// value; [`QueueError::TooManyKeys`] when a new key would pass the cap.
    pub(crate) fn check_put(&self, key: &[u8], value: &[u8]) -> Result<(), QueueError> {
        check_key(key)?;
        if value.len() > VALUE_BYTES_MAX {
            return Err(QueueError::invalid(
                "value",
                format!("{} bytes; at most {VALUE_BYTES_MAX}", value.len()),
            ));
        }
        if self.get(key).is_none() && self.len >= KV_ENTRIES_MAX as u64 {
            return Err(QueueError::TooManyKeys {
                max: KV_ENTRIES_MAX,
            });
        }
        Ok(())
    }

    /// Writes `key`; call [`Kv::check_put`] first. Returns the new version.
    pub(crate) fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> u64 {
        self.revision += 1;
        let version = self.revision;
        let (key_bytes, value_bytes) = (key.len() as u64, value.len() as u64);
        self.bytes += value_bytes;
        match self.get(&key).map(|old| old.value.len() as u64) {
            Some(old_value_bytes) => self.bytes -= old_value_bytes,
            None => {
                self.bytes += key_bytes;
                self.len += 1;
            }
        }
        self.write(key, Some(Versioned { value, version }));
        version
    }

    /// Removes `key`; returns the version it had (0 if absent).
    pub(crate) fn delete(&mut self, key: &[u8]) -> u64 {
        let Some((old_bytes, version)) = self
            .get(key)
            .map(|old| ((key.len() + old.value.len()) as u64, old.version))
        else {
            return 0;
        };
        self.bytes -= old_bytes;
        self.len -= 1;
        self.write(key.to_vec(), None);
        version
    }

    /// Stores a write: in the map when no snapshot shares it (merging a
    /// bounded part of the overlay first), else in the overlay.
    fn write(&mut self, key: Vec<u8>, value: Option<Versioned>) {
        let key = Key::from(key);
        let Some(base) = Arc::get_mut(&mut self.base) else {
            self.overlay.insert(key, value);
            return;
        };
        for _ in 0..MERGE_PER_WRITE_MAX_COUNT {
            let Some((merged_key, merged)) = self.overlay.pop_first() else {
                break;
            };
            apply(base, merged_key, merged);
        }
        // An older overlay write to this key must not shadow this one.
        self.overlay.remove(key.as_slice());
        apply(base, key, value);
    }

    /// Shares the entries with a snapshot: an O(1) capture once the
    /// overlay of the previous one is merged (finished here if it is not:
    /// it holds at most the writes made during that snapshot).
    pub(crate) fn freeze(&mut self) -> Arc<Entries> {
        if !self.overlay.is_empty() {
            let base = Arc::make_mut(&mut self.base);
            for (key, value) in std::mem::take(&mut self.overlay) {
                apply(base, key, value);
            }
        }
        debug_assert_eq!(self.base.len() as u64, self.len, "live keys counted");
        Arc::clone(&self.base)
    }

    /// Rebuild check after a restore: every version was issued.
    pub(crate) fn is_consistent(&self) -> bool {
        self.iter().all(|(key, entry)| {
            entry.version > 0
                && entry.version <= self.revision
                && !key.is_empty()
                && key.len() <= KEY_BYTES_MAX
        }) && self.len <= KV_ENTRIES_MAX as u64
    }
}

fn apply(base: &mut Entries, key: Key, value: Option<Versioned>) {
    match value {
        Some(value) => {
            base.insert(key, value);
        }
        None => {
            base.remove(key.as_slice());
        }
    }
}

/// # Errors
///
/// [`QueueError::Invalid`] for an empty key or one over [`KEY_BYTES_MAX`].
pub(crate) fn check_key(key: &[u8]) -> Result<(), QueueError> {
    if key.is_empty() || key.len() > KEY_BYTES_MAX {
        return Err(QueueError::invalid(
            "key",
            format!("{} bytes; must be 1 to {KEY_BYTES_MAX}", key.len()),
        ));
    }
    Ok(())
}

/// The key as text for error messages: lossy UTF-8, shortened.
pub(crate) fn display_key(key: &[u8]) -> String {
    let shown = &key[..key.len().min(64)];
    let mut text = String::from_utf8_lossy(shown).into_owned();
    if key.len() > shown.len() {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(kv: &Kv) -> u64 {
        let mut copy = kv.clone();
        copy.recount();
        copy.bytes
    }

    #[test]
    fn stored_bytes_follow_puts_overwrites_and_deletes() {
        let mut kv = Kv::default();
        kv.put(b"a".to_vec(), vec![0; 10]);
        kv.put(b"bb".to_vec(), vec![0; 5]);
        assert_eq!(kv.stored_bytes(), 1 + 10 + 2 + 5);
        kv.put(b"a".to_vec(), vec![0; 3]);
        assert_eq!(kv.stored_bytes(), 1 + 3 + 2 + 5);
        kv.put(b"bb".to_vec(), vec![0; 50]);
        assert_eq!(kv.stored_bytes(), counted(&kv));
        assert_eq!(kv.delete(b"zz"), 0);
        assert!(kv.delete(b"a") > 0);
        assert_eq!(kv.stored_bytes(), 2 + 50);
        assert_eq!(kv.stored_bytes(), counted(&kv));
        kv.delete(b"bb");
        assert_eq!(kv.stored_bytes(), 0);
    }
}
