//! Volume keys: a volume belongs to whoever holds its key.
//!
//! Creating a volume (a name with no directory yet) gives it a random
//! 32-byte key, kept in `volume-keys/<name>` (0600) beside `volumes/`. The
//! spawner learns it from `Process.volumeKey` and must pass it to spawn
//! another process on the same volume, so a killed process's data (a Raft
//! replica's log) cannot be read by the next process that names its volume.
//! The supervision record keeps the key, so restarts need nobody to pass it.
//!
//! Migration: a volume made by an older version has a directory but no key.
//! A supervision record naming it adopts it at respawn (a key is made and
//! written into the record); any other spawn naming it is refused until the
//! directory is removed by hand.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ww_api::limits::VOLUME_KEY_BYTES;

/// A volume's key. Never printed: `Debug` redacts it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VolumeKey(pub [u8; VOLUME_KEY_BYTES]);

impl VolumeKey {
    fn random() -> Self {
        Self(rand::random())
    }

    /// A key from bytes a caller passed.
    ///
    /// # Errors
    ///
    /// When `bytes` is not [`VOLUME_KEY_BYTES`] long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, String> {
        bytes.try_into().map(Self).map_err(|_| {
            format!(
                "a volume key is {VOLUME_KEY_BYTES} bytes (from Process.volumeKey); got {}",
                bytes.len()
            )
        })
    }

    /// Compares hashes, not bytes, so the time taken says nothing about
    /// how much of a guess was right.
    fn matches(&self, other: &Self) -> bool {
        blake3::hash(&self.0) == blake3::hash(&other.0)
    }
}

impl fmt::Debug for VolumeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VolumeKey(..)")
    }
}

// Hex in records: `blake3::Hash` is just a 32-byte hex codec here.
impl Serialize for VolumeKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(blake3::Hash::from_bytes(self.0).to_hex().as_str())
    }
}

impl<'de> Deserialize<'de> for VolumeKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        blake3::Hash::from_hex(text)
            .map(|hash| Self(*hash.as_bytes()))
            .map_err(serde::de::Error::custom)
    }
}

/// The directory of volume `name`.
pub fn dir(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("volumes").join(name)
}

/// What the volume at `dir` holds on disk: bytes in allocated blocks, and
/// entries (files and directories, `dir` not counted). The walk stops past
/// `entries_max`, so its cost is bounded whatever the guest made.
///
/// # Errors
///
/// When `dir` cannot be read.
pub fn usage(dir: &Path, entries_max: u64) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let listing = match std::fs::read_dir(&next) {
            Ok(listing) => listing,
            // Removed meanwhile by the guest: nothing to count.
            Err(_) if next != dir => continue,
            Err(err) => return Err(err).with_context(|| format!("reading {}", dir.display())),
        };
        for entry in listing.flatten() {
            entries += 1;
            if entries > entries_max {
                return Ok((bytes, entries));
            }
            // Not followed: a symlink costs its own blocks only.
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            bytes = bytes.saturating_add(meta.blocks().saturating_mul(512));
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok((bytes, entries))
}

fn key_path(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("volume-keys").join(name)
}

fn read_key(data_dir: &Path, name: &str) -> Result<Option<VolumeKey>> {
    let path = key_path(data_dir, name);
    match std::fs::read(&path) {
        Ok(bytes) => VolumeKey::from_slice(&bytes)
            .map(Some)
            .map_err(|err| anyhow::anyhow!("{}: {err}", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_key(data_dir: &Path, name: &str, key: VolumeKey) -> Result<()> {
    Ok(crate::private::write_atomic(
        &key_path(data_dir, name),
        &key.0,
    )?)
}

/// The key under which a new spawn may use volume `name`: its existing key
/// if `given` matches it, or a new key (`given`, or a random one) if the
/// volume does not exist yet.
///
/// # Errors
///
/// When the volume exists and `given` is not its key, when it exists
/// without a key (an older version's, see the module docs), or when the
/// key cannot be stored.
pub fn claim(data_dir: &Path, name: &str, given: Option<VolumeKey>) -> Result<VolumeKey> {
    match (read_key(data_dir, name)?, given) {
        (Some(key), Some(given)) if key.matches(&given) => Ok(key),
        (Some(_), Some(_)) => bail!(
            "volume {name:?} exists and belongs to another process; the key passed is not its key"
        ),
        (Some(_), None) => bail!(
            "volume {name:?} exists and belongs to another process; pass its key (SpawnSpec.volumeKey, from Process.volumeKey of the process that created it)"
        ),
        (None, given) => {
            let dir = dir(data_dir, name);
            if dir.exists() {
                bail!(
                    "volume {name:?} exists without a key (made by an older version of ww) and no supervision record claims it; remove {} to reuse the name",
                    dir.display()
                );
            }
            let key = given.unwrap_or_else(VolumeKey::random);
            write_key(data_dir, name, key)?;
            Ok(key)
        }
    }
}

/// A key for volume `name` of a supervision record written by an older
/// version (which kept no key): the record owns the volume.
///
/// # Errors
///
/// When the volume already has a key (someone else made it) or the key
/// cannot be stored.
pub fn adopt(data_dir: &Path, name: &str) -> Result<VolumeKey> {
    if read_key(data_dir, name)?.is_some() {
        bail!("volume {name:?} has a key this record does not hold");
    }
    let key = VolumeKey::random();
    write_key(data_dir, name, key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_blocks_not_sizes_and_stops_past_its_entries() {
        let volume = tempfile::tempdir().expect("tempdir");
        let nested = volume.path().join("a").join("b");
        std::fs::create_dir_all(&nested).expect("dirs");
        std::fs::write(nested.join("real"), vec![1u8; 1 << 20]).expect("write");
        // A sparse file of 1 TiB holds no data blocks.
        std::fs::File::create(volume.path().join("sparse"))
            .and_then(|file| file.set_len(1 << 40))
            .expect("sparse");
        let (bytes, entries) = usage(volume.path(), 100).expect("usage");
        assert_eq!(entries, 4, "a, a/b, a/b/real, sparse");
        assert!((1 << 20..1 << 21).contains(&bytes), "{bytes} bytes");
        // The walk stops one past its bound.
        let (_, entries) = usage(volume.path(), 2).expect("usage");
        assert_eq!(entries, 3);
    }

    #[test]
    fn a_volume_belongs_to_its_key() {
        let data = tempfile::tempdir().expect("tempdir");
        let key = claim(data.path(), "v", None).expect("new volume");
        std::fs::create_dir_all(dir(data.path(), "v")).expect("dir");
        let err = claim(data.path(), "v", None).unwrap_err().to_string();
        assert!(
            err.contains("belongs to another process; pass its key"),
            "{err}"
        );
        let wrong = VolumeKey([7; VOLUME_KEY_BYTES]);
        assert!(claim(data.path(), "v", Some(wrong)).is_err());
        assert_eq!(
            claim(data.path(), "v", Some(key)).expect("with its key"),
            key
        );
        assert!(format!("{key:?}").contains(".."));
    }

    #[test]
    fn an_old_volume_is_adopted_by_its_record_only() {
        let data = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir(data.path(), "old")).expect("dir");
        let err = claim(data.path(), "old", None).unwrap_err().to_string();
        assert!(err.contains("without a key"), "{err}");
        let key = adopt(data.path(), "old").expect("adopt");
        assert!(adopt(data.path(), "old").is_err());
        assert_eq!(claim(data.path(), "old", Some(key)).expect("with key"), key);
    }
}
