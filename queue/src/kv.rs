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
}

impl Kv {
    /// Bytes held in keys and values.
    pub(crate) fn stored_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|(key, entry)| (key.len() + entry.value.len()) as u64)
            .sum()
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
        self.entries.insert(key, Versioned { value, version });
        version
    }

    /// Removes `key`; returns the version it had (0 if absent).
    pub(crate) fn delete(&mut self, key: &[u8]) -> u64 {
        self.entries.remove(key).map_or(0, |entry| entry.version)
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
