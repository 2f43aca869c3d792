//! The write-ahead log: numbered segment files of checksummed frames.
//!
//! A frame holds the records of one Ready: an optional snapshot marker, the
//! new entries, and the hard state. Replaying the frames in order rebuilds
//! the log: an entry at index `i` replaces any entry at `i` or above (a
//! follower's conflicting suffix), and a snapshot marker replaces the whole
//! log (a snapshot installed from the leader).
//!
//! Segments are named `wal-<16 hex digits>.log`, numbered without gaps.
//! Every segment starts with a header record and a copy of the hard state,
//! so deleting old segments (compaction) never loses the hard state. A new
//! segment is written and synced under [`TEMP_NAME`] and only then renamed,
//! so a segment under its final name always starts with a whole header.
//!
//! Recovery copies the valid frames of the last segment into a fresh file
//! and syncs that before anything else happens. After a failed `sync_data`
//! the kernel may keep serving the unsynced bytes from its page cache while
//! they never reach the disk, and a second `sync_data` of the same file
//! may succeed without writing them (the PostgreSQL "fsyncgate" lesson).
//! Only bytes written to a new file and synced are known to be durable, so
//! the copy makes everything the replica is about to rely on durable,
//! whatever the previous process managed to sync.

use prost::Message as _;
use raft::eraftpb::{Entry, HardState};

use crate::error::Error;
use crate::storage::dir::Dir;
use crate::storage::frame::{encode_frame, scan_frames};

/// Version of the segment format, in every segment header.
const WAL_FORMAT_VERSION: u32 = 1;

/// Where a segment is written before it is renamed to its final name, both
/// when a segment starts and when recovery rewrites the last one. Not a
/// segment name (no 16-digit number), so a leftover is never replayed.
const TEMP_NAME: &str = "wal-tmp.log";

const RECORD_HEADER: u8 = 0;
const RECORD_ENTRY: u8 = 1;
const RECORD_HARD_STATE: u8 = 2;
const RECORD_SNAPSHOT: u8 = 3;

/// One segment file, as far as the log needs to know.
#[derive(Clone, Debug)]
struct Segment {
    seq: u64,
    len_bytes: u64,
    /// The highest entry index written to this segment (0 if none): the
    /// segment may be deleted once the log is compacted past it.
    max_entry_index: u64,
    /// Bytes were appended since the last sync (a commit-only hard state
    /// may be written unsynced).
    unsynced: bool,
}

pub(crate) fn segment_name(seq: u64) -> String {
    format!("wal-{seq:016x}.log")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// What replaying the segments produced.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    /// Contiguous entries, in index order.
    pub(crate) entries: Vec<Entry>,
    /// The last snapshot marker, `(index, term)`: the log was replaced by a
    /// snapshot there, so `entries` start above it.
    pub(crate) snapshot_marker: Option<(u64, u64)>,
    /// The last hard state written.
    pub(crate) hard_state: HardState,
    /// Bytes cut from the end of the last segment (a torn write).
    pub(crate) torn_bytes: u64,
}

/// Builds the payload of one frame.
#[derive(Default)]
pub(crate) struct FrameBuilder {
    payload: Vec<u8>,
    entry_count: u64,
    max_entry_index: u64,
}

impl FrameBuilder {
    fn record(&mut self, tag: u8, body: &[u8]) {
        self.payload.push(tag);
        self.payload
            .extend_from_slice(&(body.len() as u32).to_le_bytes());
        self.payload.extend_from_slice(body);
    }

    pub(crate) fn snapshot_marker(&mut self, index: u64, term: u64) {
        let mut body = [0u8; 16];
        body[..8].copy_from_slice(&index.to_le_bytes());
        body[8..].copy_from_slice(&term.to_le_bytes());
        self.record(RECORD_SNAPSHOT, &body);
    }

    pub(crate) fn entry(&mut self, entry: &Entry) {
        self.record(RECORD_ENTRY, &entry.encode_to_vec());
        self.entry_count += 1;
        self.max_entry_index = self.max_entry_index.max(entry.index);
    }

    pub(crate) fn hard_state(&mut self, hard_state: &HardState) {
        self.record(RECORD_HARD_STATE, &hard_state.encode_to_vec());
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }

    pub(crate) fn entry_count(&self) -> u64 {
        self.entry_count
    }
}

/// The segment files of one replica.
#[derive(Debug)]
pub(crate) struct Wal {
    /// Oldest first; the last one is the active segment.
    segments: Vec<Segment>,
    segment_max_bytes: u64,
}

fn header_record(seq: u64) -> [u8; 12] {
    let mut body = [0u8; 12];
    body[..4].copy_from_slice(&WAL_FORMAT_VERSION.to_le_bytes());
    body[4..].copy_from_slice(&seq.to_le_bytes());
    body
}

impl Wal {
    /// Creates the first segment of a new replica, durably.
    pub(crate) fn create(
        dir: &mut impl Dir,
        segment_max_bytes: u64,
        hard_state: &HardState,
    ) -> Result<Self, Error> {
        let mut wal = Wal {
            segments: Vec::new(),
            segment_max_bytes,
        };
        wal.start_segment(dir, 1, hard_state)?;
        Ok(wal)
    }

    /// Writes a new segment holding only its header and `hard_state`, then
    /// makes both the file and its directory entry durable. The file gets
    /// its final name only once synced: a failed write (ENOSPC, EIO) leaves
    /// at most a temporary file, which recovery removes.
    fn start_segment(
        &mut self,
        dir: &mut impl Dir,
        seq: u64,
        hard_state: &HardState,
    ) -> Result<(), Error> {
        let name = segment_name(seq);
        let mut frame = FrameBuilder::default();
        frame.record(RECORD_HEADER, &header_record(seq));
        frame.hard_state(hard_state);
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, &frame.payload);
        replace_durably(dir, &name, &bytes)?;
        self.segments.push(Segment {
            seq,
            len_bytes: bytes.len() as u64,
            max_entry_index: 0,
            unsynced: false,
        });
        Ok(())
    }

    /// Reads every segment and rebuilds the log. Cuts a torn tail off the
    /// last segment, and rewrites the last segment durably into a fresh
    /// file (see the module docs) before anything is appended after it.
    ///
    /// Returns `None` when the directory holds no segment at all.
    pub(crate) fn open(
        dir: &mut impl Dir,
        segment_max_bytes: u64,
    ) -> Result<Option<(Self, Replayed)>, Error> {
        let names = dir.list().map_err(|e| Error::io("list directory", e))?;
        if names.iter().any(|n| n == TEMP_NAME) {
            // A segment start or a rewrite that never got its final name.
            dir.remove(TEMP_NAME)
                .map_err(|e| Error::io(format!("remove {TEMP_NAME}"), e))?;
        }
        let mut seqs: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
        if seqs.is_empty() {
            return Ok(None);
        }
        seqs.sort_unstable();
        for pair in seqs.windows(2) {
            if pair[1] != pair[0] + 1 {
                return Err(Error::corrupt(
                    &segment_name(pair[0] + 1),
                    0,
                    "log segment missing between two existing segments",
                ));
            }
        }
        let mut last_seq = seqs[seqs.len() - 1];
        if seqs.len() > 1 && Self::holds_no_frame(dir, last_seq)? {
            // Left by a segment start that failed before its header was
            // written (older versions wrote it under its final name). It
            // holds nothing: drop it, the previous segment is whole.
            let name = segment_name(last_seq);
            dir.remove(&name)
                .map_err(|e| Error::io(format!("remove empty {name}"), e))?;
            dir.sync_dir()
                .map_err(|e| Error::io("sync directory after removing a segment", e))?;
            seqs.pop();
            last_seq -= 1;
        }
        let mut wal = Wal {
            segments: Vec::new(),
            segment_max_bytes,
        };
        let mut replay = Replay::default();
        let mut last_bytes = Vec::new();
        for seq in seqs {
            let name = segment_name(seq);
            let bytes = dir
                .read(&name)
                .map_err(|e| Error::io(format!("read {name}"), e))?;
            let is_last = seq == last_seq;
            let scan = scan_frames(&bytes, is_last)
                .map_err(|c| Error::corrupt(&name, c.offset as u64, c.reason))?;
            let mut segment = Segment {
                seq,
                len_bytes: scan.valid_len_bytes as u64,
                max_entry_index: 0,
                unsynced: false,
            };
            for (frame_number, (payload, offset)) in
                scan.payloads.iter().zip(&scan.offsets).enumerate()
            {
                replay
                    .frame(
                        payload,
                        seq,
                        frame_number == 0,
                        &mut segment.max_entry_index,
                    )
                    .map_err(|reason| Error::corrupt(&name, *offset as u64, reason))?;
            }
            if scan.payloads.is_empty() {
                return Err(Error::corrupt(
                    &name,
                    0,
                    "log segment without a single whole frame (no header, no hard state)",
                ));
            }
            let valid_len = scan.valid_len_bytes;
            replay.out.torn_bytes = (bytes.len() - valid_len) as u64;
            if is_last {
                last_bytes = bytes;
                last_bytes.truncate(valid_len);
            }
            wal.segments.push(segment);
        }
        // The torn tail is not copied: later frames never follow garbage.
        replace_durably(dir, &segment_name(last_seq), &last_bytes)?;
        Ok(Some((wal, replay.out)))
    }

    /// Whether segment `seq` holds no whole frame (only for the last one,
    /// where a torn tail is allowed).
    fn holds_no_frame(dir: &mut impl Dir, seq: u64) -> Result<bool, Error> {
        let name = segment_name(seq);
        let bytes = dir
            .read(&name)
            .map_err(|e| Error::io(format!("read {name}"), e))?;
        let scan = scan_frames(&bytes, true)
            .map_err(|c| Error::corrupt(&name, c.offset as u64, c.reason))?;
        Ok(scan.payloads.is_empty())
    }

    /// Appends one frame to the active segment, starting a new segment
    /// first if the active one is full. Syncs when `sync` is set.
    ///
    /// Returns the fsyncs done and the bytes written.
    pub(crate) fn write(
        &mut self,
        dir: &mut impl Dir,
        frame: FrameBuilder,
        sync: bool,
        hard_state: &HardState,
    ) -> Result<(u64, u64), Error> {
        let mut syncs = 0;
        let active = self
            .segments
            .last()
            .ok_or_else(|| Error::Failed("no log segment".into()))?;
        if active.len_bytes >= self.segment_max_bytes {
            let next = active.seq + 1;
            if active.unsynced {
                // Only the last segment may end in a torn frame: sync the
                // old one before a new one follows it.
                let name = segment_name(active.seq);
                dir.sync_data(&name)
                    .map_err(|e| Error::io(format!("sync {name}"), e))?;
                syncs += 1;
            }
            self.start_segment(dir, next, hard_state)?;
            syncs += 2;
        }
        let mut bytes = Vec::with_capacity(frame.payload.len() + 16);
        encode_frame(&mut bytes, &frame.payload);
        let active = self
            .segments
            .last_mut()
            .ok_or_else(|| Error::Failed("no log segment".into()))?;
        let name = segment_name(active.seq);
        dir.append(&name, &bytes)
            .map_err(|e| Error::io(format!("append to {name}"), e))?;
        active.len_bytes += bytes.len() as u64;
        active.max_entry_index = active.max_entry_index.max(frame.max_entry_index);
        if sync {
            dir.sync_data(&name)
                .map_err(|e| Error::io(format!("sync {name}"), e))?;
            syncs += 1;
            active.unsynced = false;
        } else {
            active.unsynced = true;
        }
        Ok((syncs, bytes.len() as u64))
    }

    /// Deletes the segments, other than the active one, whose entries all
    /// lie at or below `compact_index`. Oldest first, so the remaining
    /// segments stay numbered without gaps even if a crash interrupts.
    /// Removes up to `segments_max_count` of the oldest segments holding
    /// nothing above `compact_index` (never the last one); returns how many
    /// it removed.
    pub(crate) fn compact(
        &mut self,
        dir: &mut impl Dir,
        compact_index: u64,
        segments_max_count: usize,
    ) -> Result<usize, Error> {
        let mut removed_count = 0;
        while removed_count < segments_max_count
            && self.segments.len() > 1
            && self.segments[0].max_entry_index <= compact_index
        {
            let name = segment_name(self.segments[0].seq);
            dir.remove(&name)
                .map_err(|e| Error::io(format!("remove {name}"), e))?;
            self.segments.remove(0);
            removed_count += 1;
        }
        Ok(removed_count)
    }

    pub(crate) fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

/// Writes `bytes` under `name` durably and atomically: to [`TEMP_NAME`],
/// synced, renamed, directory synced. The data lands in a new file, so it
/// is durable even if an earlier sync of `name` failed (see the module
/// docs). Two fsyncs.
fn replace_durably(dir: &mut impl Dir, name: &str, bytes: &[u8]) -> Result<(), Error> {
    dir.write_new(TEMP_NAME, bytes)
        .map_err(|e| Error::io(format!("write {name} (as {TEMP_NAME})"), e))?;
    dir.sync_data(TEMP_NAME)
        .map_err(|e| Error::io(format!("sync {name} (as {TEMP_NAME})"), e))?;
    dir.rename(TEMP_NAME, name)
        .map_err(|e| Error::io(format!("rename {TEMP_NAME} to {name}"), e))?;
    dir.sync_dir()
        .map_err(|e| Error::io(format!("sync directory after writing {name}"), e))
}

/// Replay state across all frames of all segments.
#[derive(Default)]
struct Replay {
    out: Replayed,
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

impl Replay {
    fn frame(
        &mut self,
        payload: &[u8],
        seq: u64,
        first_frame: bool,
        max_entry_index: &mut u64,
    ) -> Result<(), String> {
        let mut at = 0;
        let mut first_record = true;
        while at < payload.len() {
            if payload.len() - at < 5 {
                return Err("truncated record header inside a checksummed frame".into());
            }
            let tag = payload[at];
            let len = u32::from_le_bytes([
                payload[at + 1],
                payload[at + 2],
                payload[at + 3],
                payload[at + 4],
            ]) as usize;
            at += 5;
            if len > payload.len() - at {
                return Err("record runs past its frame".into());
            }
            let body = &payload[at..at + len];
            at += len;
            if first_frame && first_record && tag != RECORD_HEADER {
                return Err("segment does not start with a header".into());
            }
            first_record = false;
            match tag {
                RECORD_HEADER => {
                    if body.len() != 12 {
                        return Err("bad segment header length".into());
                    }
                    let version = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
                    if version != WAL_FORMAT_VERSION {
                        return Err(format!("unsupported segment format version {version}"));
                    }
                    if read_u64(&body[4..]) != seq {
                        return Err("segment header names another segment".into());
                    }
                }
                RECORD_ENTRY => {
                    let entry =
                        Entry::decode(body).map_err(|e| format!("undecodable entry: {e}"))?;
                    *max_entry_index = (*max_entry_index).max(entry.index);
                    self.entry(entry)?;
                }
                RECORD_HARD_STATE => {
                    self.out.hard_state = HardState::decode(body)
                        .map_err(|e| format!("undecodable hard state: {e}"))?;
                }
                RECORD_SNAPSHOT => {
                    if body.len() != 16 {
                        return Err("bad snapshot marker length".into());
                    }
                    let (index, term) = (read_u64(body), read_u64(&body[8..]));
                    self.out.entries.clear();
                    self.out.snapshot_marker = Some((index, term));
                }
                other => return Err(format!("unknown record type {other}")),
            }
        }
        Ok(())
    }

    fn entry(&mut self, entry: Entry) -> Result<(), String> {
        let entries = &mut self.out.entries;
        if let Some(first) = entries.first() {
            let first_index = first.index;
            let last_index = first_index + entries.len() as u64 - 1;
            if entry.index > last_index + 1 {
                return Err(format!(
                    "gap in the log: entry {} after {last_index}",
                    entry.index
                ));
            }
            if entry.index < first_index {
                // Overwrites below everything replayed so far: the older
                // entries were in deleted segments. Start over from here.
                entries.clear();
            } else {
                entries.truncate((entry.index - first_index) as usize);
            }
        } else if let Some((marker_index, _)) = self.out.snapshot_marker {
            if entry.index != marker_index + 1 {
                return Err(format!(
                    "entry {} does not follow the snapshot marker at {marker_index}",
                    entry.index
                ));
            }
        }
        entries.push(entry);
        Ok(())
    }
}
