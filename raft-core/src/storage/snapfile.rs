//! Snapshot files: one checksummed frame holding an encoded raft-rs
//! `Snapshot` (metadata and data).
//!
//! Written to a temporary name, synced, renamed into place and the
//! directory synced, so a file with a final name is always complete. Named
//! `snap-<index 16 hex>-<term 16 hex>.snap`, so the newest sorts last.

use prost::Message as _;
use raft::eraftpb::Snapshot;

use crate::error::Error;
use crate::storage::dir::Dir;
use crate::storage::frame::{encode_frame, scan_frames};

const TEMP_NAME: &str = "snap.tmp";

pub(crate) fn snapshot_name(index: u64, term: u64) -> String {
    format!("snap-{index:016x}-{term:016x}.snap")
}

fn parse_snapshot_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    let (index, term) = rest.split_once('-')?;
    if index.len() != 16 || term.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(index, 16).ok()?,
        u64::from_str_radix(term, 16).ok()?,
    ))
}

/// Writes `snapshot` durably under its final name and removes older
/// snapshot files. Returns the number of fsyncs done.
pub(crate) fn write_snapshot_file(dir: &mut impl Dir, snapshot: &Snapshot) -> Result<u64, Error> {
    let meta = snapshot.get_metadata();
    let name = snapshot_name(meta.index, meta.term);
    let mut bytes = Vec::with_capacity(snapshot.data.len() + 256);
    encode_frame(&mut bytes, &snapshot.encode_to_vec());
    dir.write_new(TEMP_NAME, &bytes)
        .map_err(|e| Error::io("write snapshot", e))?;
    dir.sync_data(TEMP_NAME)
        .map_err(|e| Error::io("sync snapshot", e))?;
    dir.rename(TEMP_NAME, &name)
        .map_err(|e| Error::io(format!("rename snapshot to {name}"), e))?;
    dir.sync_dir()
        .map_err(|e| Error::io("sync directory after a snapshot", e))?;
    // Older snapshots are only garbage now. Their removal need not be
    // durable: recovery always takes the newest file.
    let names = dir.list().map_err(|e| Error::io("list directory", e))?;
    for old in names {
        if let Some((index, term)) = parse_snapshot_name(&old) {
            if (index, term) < (meta.index, meta.term) {
                dir.remove(&old)
                    .map_err(|e| Error::io(format!("remove {old}"), e))?;
            }
        }
    }
    Ok(2)
}

/// Reads the newest snapshot file, if any, and removes a leftover
/// temporary file.
///
/// # Errors
///
/// [`Error::Corruption`] if the newest snapshot file does not check out:
/// falling back to an older one could lose committed state whose log was
/// already compacted.
pub(crate) fn read_newest_snapshot(dir: &mut impl Dir) -> Result<Option<Snapshot>, Error> {
    let names = dir.list().map_err(|e| Error::io("list directory", e))?;
    if names.iter().any(|n| n == TEMP_NAME) {
        // A crash interrupted a snapshot before its rename: never used.
        dir.remove(TEMP_NAME)
            .map_err(|e| Error::io("remove snapshot temp file", e))?;
    }
    let Some((index, term, name)) = names
        .iter()
        .filter_map(|n| parse_snapshot_name(n).map(|(i, t)| (i, t, n.clone())))
        .max()
    else {
        return Ok(None);
    };
    let bytes = dir
        .read(&name)
        .map_err(|e| Error::io(format!("read {name}"), e))?;
    let scan =
        scan_frames(&bytes, false).map_err(|c| Error::corrupt(&name, c.offset as u64, c.reason))?;
    if scan.payloads.len() != 1 {
        return Err(Error::corrupt(
            &name,
            0,
            "a snapshot file must hold exactly one frame",
        ));
    }
    let snapshot = Snapshot::decode(scan.payloads[0])
        .map_err(|e| Error::corrupt(&name, 0, format!("undecodable snapshot: {e}")))?;
    let meta = snapshot.get_metadata();
    if (meta.index, meta.term) != (index, term) {
        return Err(Error::corrupt(
            &name,
            0,
            "snapshot metadata does not match its file name",
        ));
    }
    Ok(Some(snapshot))
}
