//! The replicated key-value map: put, get, delete, and compare-and-set on a
//! version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::limits::{KEY_BYTES_MAX, KV_ENTRIES_MAX, VALUE_BYTES_MAX};
use crate::types::Versioned;
use crate::QueueError;

/// Keys to versioned values. Versions come from one counter bumped by every
/// write, so a key that is deleted and written again never gets an old
/// version back (no ABA for compare-and-set).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Kv {
    entries: BTreeMap<Vec<u8>, Versioned>,
    /// The version of the last write; 0 means "absent" and is never issued.
    revision: u64,
    /// Bytes held in keys and values, kept as entries change (every write
    /// checks the store limit; summing the map each time cost O(keys) per
    /// write). Not part of the snapshot: [`Kv::recount`] rebuilds it.
    #[serde(skip)]
    bytes: u64,
}

impl Kv {
    /// Bytes held in keys and values.
    pub(crate) fn stored_bytes(&self) -> u64 {
        self.bytes
    }

    /// Recomputes [`Kv::stored_bytes`] (after decoding a snapshot).
    pub(crate) fn recount(&mut self) {
        self.bytes = self
            .entries
            .iter()
            .map(|(key, entry)| (key.len() + entry.value.len()) as u64)
            .sum();
    }

    /// Keys held.
    pub(crate) fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<&Versioned> {
        self.entries.get(key)
    }

    /// The version of `key`, 0 if absent.
    pub(crate) fn version(&self, key: &[u8]) -> u64 {
        self.entries.get(key).map_or(0, |entry| entry.version)
    }

    /// Bytes a write of `value` to `key` adds (negative deltas count as 0).
    pub(crate) fn growth(&self, key: &[u8], value: &[u8]) -> u64 {
        let old = self
            .entries
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
        if !self.entries.contains_key(key) && self.entries.len() >= KV_ENTRIES_MAX {
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
        match self.entries.insert(key, Versioned { value, version }) {
            Some(old) => self.bytes -= old.value.len() as u64,
            None => self.bytes += key_bytes,
        }
        version
    }

    /// Removes `key`; returns the version it had (0 if absent).
    pub(crate) fn delete(&mut self, key: &[u8]) -> u64 {
        match self.entries.remove_entry(key) {
            Some((key, entry)) => {
                self.bytes -= (key.len() + entry.value.len()) as u64;
                entry.version
            }
            None => 0,
        }
    }

    /// Rebuild check after a restore: every version was issued.
    pub(crate) fn is_consistent(&self) -> bool {
        self.entries.iter().all(|(key, entry)| {
            entry.version > 0
                && entry.version <= self.revision
                && !key.is_empty()
                && key.len() <= KEY_BYTES_MAX
        }) && self.entries.len() <= KV_ENTRIES_MAX
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
