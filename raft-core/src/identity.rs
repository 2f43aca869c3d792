//! The identity file: which group this directory belongs to and which
//! replica it is. Written last at bootstrap or join, so its presence means
//! the replica's other files are complete.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::storage::dir::Dir;

pub(crate) const IDENTITY_NAME: &str = "identity";
const IDENTITY_TEMP_NAME: &str = "identity.tmp";
const IDENTITY_FORMAT: u8 = 1;

/// Who this replica is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub(crate) group_id: u128,
    pub(crate) id: u64,
}

/// Writes the identity durably (temporary file, sync, rename, dir sync).
pub(crate) fn write_identity(dir: &mut impl Dir, identity: Identity) -> Result<(), Error> {
    let mut payload = vec![IDENTITY_FORMAT];
    payload.extend_from_slice(&identity.group_id.to_le_bytes());
    payload.extend_from_slice(&identity.id.to_le_bytes());
    let mut bytes = Vec::new();
    crate::storage::encode_frame_public(&mut bytes, &payload);
    dir.write_new(IDENTITY_TEMP_NAME, &bytes)
        .map_err(|e| Error::io("write identity", e))?;
    dir.sync_data(IDENTITY_TEMP_NAME)
        .map_err(|e| Error::io("sync identity", e))?;
    dir.rename(IDENTITY_TEMP_NAME, IDENTITY_NAME)
        .map_err(|e| Error::io("rename identity", e))?;
    dir.sync_dir()
        .map_err(|e| Error::io("sync directory after identity", e))
}

/// Reads the identity; `None` if the directory holds no replica.
pub(crate) fn read_identity(dir: &impl Dir) -> Result<Option<Identity>, Error> {
    let bytes = match dir.read(IDENTITY_NAME) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read identity", e)),
    };
    let payload = crate::storage::single_frame(&bytes)
        .map_err(|reason| Error::corrupt(IDENTITY_NAME, 0, reason))?;
    if payload.len() != 1 + 16 + 8 || payload[0] != IDENTITY_FORMAT {
        return Err(Error::corrupt(IDENTITY_NAME, 0, "unknown identity format"));
    }
    let mut group = [0u8; 16];
    group.copy_from_slice(&payload[1..17]);
    let mut id = [0u8; 8];
    id.copy_from_slice(&payload[17..25]);
    Ok(Some(Identity {
        group_id: u128::from_le_bytes(group),
        id: u64::from_le_bytes(id),
    }))
}

/// Whether a file name belongs to raft-core (so a failed bootstrap's
/// leftovers can be cleared without touching anything else).
pub(crate) fn is_own_file(name: &str) -> bool {
    name == IDENTITY_NAME
        || name == IDENTITY_TEMP_NAME
        || (name.starts_with("wal-") && name.ends_with(".log"))
        || (name.starts_with("snap") && (name.ends_with(".snap") || name.ends_with(".tmp")))
}
