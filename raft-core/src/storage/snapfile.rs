//! Snapshot files, in one of two layouts of checksummed frames:
//!
//! - **whole**: one frame holding an encoded raft-rs `Snapshot` (metadata
//!   and data). Snapshots received from the leader, and every snapshot of
//!   earlier versions.
//! - **chunked**: a header frame (`"RCSC"`, the encoded
//!   `SnapshotMetadata`), the state machine's bytes in frames of about
//!   `Config::snapshot_chunk_bytes_max` as they are serialized, and an end
//!   frame (`"RCSE"`, the data length, the chunk count, then the data's
//!   prefix: the driver's part, which ends with the state's length, known
//!   only at the end). The data is the prefix followed by the chunks. A
//!   replica's own snapshots, serialized and written a chunk per
//!   `Node::process` call so that the loop never stalls for a whole
//!   snapshot ([`ChunkedWriter`]).
//!
//! Either is written under a temporary name, synced, renamed into place and
//! the directory synced, so a file with a final name is always complete; a
//! temporary file left by a crash is removed on open and never read. Named
//! `snap-<index 16 hex>-<term 16 hex>.snap`, so the newest sorts last.

use prost::Message as _;
use raft::eraftpb::{Snapshot, SnapshotMetadata};

use crate::error::Error;
use crate::storage::dir::Dir;
use crate::storage::frame::{encode_frame, scan_frames, FRAME_HEADER_BYTES, FRAME_TRAILER_BYTES};

const TEMP_NAME: &str = "snap.tmp";
/// Where a replica's own snapshot is written, chunk by chunk, before its
/// rename. Distinct from [`TEMP_NAME`]: a snapshot from the leader may be
/// written (and is written whole) while an own snapshot is in progress.
pub(crate) const PART_NAME: &str = "snap-part.tmp";
/// First bytes of a chunked file's header frame.
const CHUNKED_MAGIC: &[u8; 4] = b"RCSC";
/// First bytes of a chunked file's end frame.
const END_MAGIC: &[u8; 4] = b"RCSE";

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
    remove_older(dir, meta.index, meta.term)?;
    Ok(2)
}

/// Removes snapshot files older than `(index, term)`. They are only
/// garbage once a newer one is durable; their removal need not be:
/// recovery always takes the newest file.
fn remove_older(dir: &mut impl Dir, index: u64, term: u64) -> Result<(), Error> {
    let names = dir.list().map_err(|e| Error::io("list directory", e))?;
    for old in names {
        if let Some(older) = parse_snapshot_name(&old) {
            if older < (index, term) {
                dir.remove(&old)
                    .map_err(|e| Error::io(format!("remove {old}"), e))?;
            }
        }
    }
    Ok(())
}

/// Writes a snapshot as a chunked file while its data is produced: see the
/// module docs.
#[derive(Debug)]
pub(crate) struct ChunkedWriter {
    /// Where the state begins in the data: the bytes before it go in the
    /// end frame.
    state_start: usize,
    /// Bytes of the data already in the file (from `state_start`).
    written_bytes: usize,
    /// Chunk frames written.
    chunk_count: u64,
    /// Whether the header frame is written (the file exists).
    started: bool,
    /// File bytes written since the last sync.
    unsynced_bytes: u64,
}

/// What one [`ChunkedWriter::step`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct StepDone {
    /// Bytes appended to the file.
    pub(crate) file_bytes: u64,
    /// Syncs issued (file and directory).
    pub(crate) fsync_count: u64,
    /// The file is complete, durable and under its final name.
    pub(crate) finished: bool,
}

impl ChunkedWriter {
    pub(crate) fn new(state_start: usize) -> Self {
        Self {
            state_start,
            written_bytes: state_start,
            chunk_count: 0,
            started: false,
            unsynced_bytes: 0,
        }
    }

    /// Writes what `snapshot.data` gained since the last step as one chunk
    /// (the header first, on the first step), and syncs once
    /// `unsynced_bytes_max` are unsynced. Once `complete` (the data is
    /// whole): the end frame, a sync, the rename and a directory sync, then
    /// removes older snapshot files.
    ///
    /// # Errors
    ///
    /// Any I/O error; the temporary file is then garbage (removed at the
    /// next open) and the previous snapshot stays the newest.
    pub(crate) fn step(
        &mut self,
        dir: &mut impl Dir,
        snapshot: &Snapshot,
        complete: bool,
        unsynced_bytes_max: u64,
    ) -> Result<StepDone, Error> {
        let meta = snapshot.get_metadata();
        let data = &snapshot.data;
        let mut done = StepDone::default();
        let mut bytes = Vec::new();
        if !self.started {
            let mut payload = CHUNKED_MAGIC.to_vec();
            meta.encode(&mut payload)
                .map_err(|e| Error::Failed(format!("encode snapshot metadata: {e}")))?;
            encode_frame(&mut bytes, &payload);
            dir.write_new(PART_NAME, &bytes)
                .map_err(|e| Error::io("write snapshot header", e))?;
            self.started = true;
            self.record(&mut done, bytes.len());
            bytes.clear();
        }
        if self.written_bytes < data.len() {
            let chunk = &data[self.written_bytes..];
            bytes.reserve(chunk.len() + FRAME_HEADER_BYTES + FRAME_TRAILER_BYTES);
            encode_frame(&mut bytes, chunk);
            dir.append(PART_NAME, &bytes)
                .map_err(|e| Error::io("write snapshot chunk", e))?;
            self.written_bytes = data.len();
            self.chunk_count += 1;
            self.record(&mut done, bytes.len());
            bytes.clear();
        }
        if !complete {
            if self.unsynced_bytes >= unsynced_bytes_max {
                // Syncing as we go bounds the last sync, which would
                // otherwise write the whole file in one round.
                dir.sync_data(PART_NAME)
                    .map_err(|e| Error::io("sync snapshot chunks", e))?;
                self.unsynced_bytes = 0;
                done.fsync_count += 1;
            }
            return Ok(done);
        }
        let prefix = data.get(..self.state_start).unwrap_or_default();
        let mut payload = END_MAGIC.to_vec();
        payload.extend_from_slice(&(data.len() as u64).to_le_bytes());
        payload.extend_from_slice(&self.chunk_count.to_le_bytes());
        payload.extend_from_slice(prefix);
        encode_frame(&mut bytes, &payload);
        dir.append(PART_NAME, &bytes)
            .map_err(|e| Error::io("write snapshot end", e))?;
        self.record(&mut done, bytes.len());
        let name = snapshot_name(meta.index, meta.term);
        dir.sync_data(PART_NAME)
            .map_err(|e| Error::io("sync snapshot", e))?;
        dir.rename(PART_NAME, &name)
            .map_err(|e| Error::io(format!("rename snapshot to {name}"), e))?;
        dir.sync_dir()
            .map_err(|e| Error::io("sync directory after a snapshot", e))?;
        done.fsync_count += 2;
        remove_older(dir, meta.index, meta.term)?;
        done.finished = true;
        Ok(done)
    }

    fn record(&mut self, done: &mut StepDone, file_bytes: usize) {
        done.file_bytes += file_bytes as u64;
        self.unsynced_bytes += file_bytes as u64;
    }
}

/// Removes the file of an own snapshot abandoned in progress.
///
/// # Errors
///
/// Any I/O error but a missing file.
pub(crate) fn remove_part(dir: &mut impl Dir) -> Result<(), Error> {
    dir.remove(PART_NAME)
        .map_err(|e| Error::io("remove abandoned snapshot chunks", e))
}

/// Reads a chunked file's frames back into a `Snapshot`.
fn read_chunked(name: &str, payloads: &[&[u8]]) -> Result<Snapshot, Error> {
    let corrupt = |reason: &str| Error::corrupt(name, 0, reason);
    let (Some(header), Some(end)) = (payloads.first(), payloads.last()) else {
        return Err(corrupt("a chunked snapshot needs a header and an end"));
    };
    let chunks = &payloads[1..payloads.len() - 1];
    let metadata = header
        .strip_prefix(CHUNKED_MAGIC)
        .ok_or_else(|| corrupt("no chunked snapshot header"))?;
    let end = end
        .strip_prefix(END_MAGIC)
        .ok_or_else(|| corrupt("no chunked snapshot end"))?;
    let (Some(data_len), Some(chunk_count), Some(prefix)) =
        (read_u64(end, 0), read_u64(end, 8), end.get(16..))
    else {
        return Err(corrupt("short chunked snapshot end"));
    };
    let metadata = SnapshotMetadata::decode(metadata)
        .map_err(|e| corrupt(&format!("undecodable snapshot metadata: {e}")))?;
    let total = prefix.len() as u64 + chunks.iter().map(|c| c.len() as u64).sum::<u64>();
    if chunk_count != chunks.len() as u64 || total != data_len {
        return Err(corrupt("chunked snapshot length or chunk count mismatch"));
    }
    let mut data = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    data.extend_from_slice(prefix);
    for chunk in chunks {
        data.extend_from_slice(chunk);
    }
    Ok(Snapshot {
        data,
        metadata: Some(metadata),
    })
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let word: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(word))
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
    for temp in [TEMP_NAME, PART_NAME] {
        if names.iter().any(|n| n == temp) {
            // A crash interrupted a snapshot before its rename: never used.
            dir.remove(temp)
                .map_err(|e| Error::io("remove snapshot temp file", e))?;
        }
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
    let snapshot = match scan.payloads.as_slice() {
        [] => return Err(Error::corrupt(&name, 0, "an empty snapshot file")),
        [whole] => Snapshot::decode(*whole)
            .map_err(|e| Error::corrupt(&name, 0, format!("undecodable snapshot: {e}")))?,
        chunked => read_chunked(&name, chunked)?,
    };
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
