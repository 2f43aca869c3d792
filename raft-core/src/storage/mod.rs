//! Durable Raft log storage: the log in memory for raft-rs, backed by
//! segment files, snapshot files and the hard state on a [`Dir`].
//!
//! [`LogStore`] implements [`raft::Storage`]. The driver writes each Ready
//! through `LogStore::persist_ready`: one frame, one write, one
//! `sync_data`. Recovery (`LogStore::open`) reads the newest snapshot
//! file, replays the segments, cuts a torn tail, rewrites the last segment
//! into a fresh synced file (so bytes a failed sync left in the page cache
//! are never taken for durable), and refuses to start on damage a crash
//! cannot explain, including a bit flip in a frame that was written whole.

pub mod dir;
mod frame;
mod snapfile;
mod wal;

use std::cell::Cell;
use std::collections::VecDeque;

use prost::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::error::Error;
use dir::Dir;
use wal::{FrameBuilder, Wal};

/// Counters of what storage did, for benchmarks and status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageCounters {
    /// `sync_data` and directory syncs issued.
    pub fsync_count: u64,
    /// Frames (Readies) written to the log.
    pub frame_count: u64,
    /// Log entries written.
    pub entries_persisted_count: u64,
    /// Bytes written to log segments.
    pub log_bytes_written: u64,
    /// Snapshot files written (own snapshots and installed ones).
    pub snapshot_write_count: u64,
    /// Bytes written to own snapshot files (chunk by chunk).
    pub snapshot_bytes_written: u64,
    /// Own snapshots abandoned in progress because a snapshot from the
    /// leader replaced the log.
    pub snapshots_abandoned_count: u64,
    /// Log entries dropped from memory by compaction.
    pub entries_compacted_count: u64,
    /// Bytes cut off a torn tail when this replica last opened.
    pub torn_tail_bytes: u64,
}

/// The Raft log of one replica. See the module docs.
pub struct LogStore<D: Dir> {
    dir: D,
    wal: Wal,
    /// Entries from `first_index` to the last index, contiguous.
    entries: VecDeque<Entry>,
    first_index: u64,
    /// Term of the entry at `first_index - 1` (compacted or snapshot).
    compacted_term: u64,
    /// The latest hard state, including commit updates not yet written.
    hard_state: HardState,
    /// The hard state last written to the log.
    written_hard_state: HardState,
    /// The newest snapshot (index 0: none yet).
    snapshot: Snapshot,
    /// Set when raft-rs asked for a snapshot that the newest one cannot
    /// serve (too old, or made before the peer joined). The driver then
    /// takes a fresh snapshot.
    snapshot_wanted: Cell<bool>,
    /// An own snapshot being written, a chunk per `own_snapshot_step`; the
    /// newest snapshot stays in `snapshot` until it is durable.
    job: Option<SnapshotJob>,
    /// Compaction still to do: entries and segments up to this index go,
    /// a bounded amount per `compaction_step` (0: none).
    compact_target: u64,
    counters: StorageCounters,
}

/// An own snapshot in progress: the state captured at one applied index,
/// its bytes produced by the driver a chunk per round into `snapshot.data`
/// and written as they come.
#[derive(Debug)]
struct SnapshotJob {
    snapshot: Snapshot,
    /// Where compaction may go once the snapshot is durable.
    compact_index: u64,
    /// The data is whole.
    complete: bool,
    writer: snapfile::ChunkedWriter,
}

/// What one [`LogStore::own_snapshot_step`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SnapshotStep {
    /// The snapshot became durable and the newest at this index.
    pub(crate) installed_index: Option<u64>,
}

/// Log segments removed per compaction step at most: removing a 16 MiB
/// segment took up to 18 ms (docs/raft-core.md, "Snapshots").
const COMPACT_SEGMENTS_PER_STEP_MAX_COUNT: usize = 1;

impl<D: Dir> LogStore<D> {
    /// Creates the files of a new replica: `snapshot` (the bootstrap state,
    /// or none for a replica that will join) and the first segment.
    pub(crate) fn create(
        mut dir: D,
        segment_max_bytes: u64,
        snapshot: Option<Snapshot>,
        hard_state: HardState,
    ) -> Result<Self, Error> {
        let mut counters = StorageCounters::default();
        let (first_index, compacted_term, snapshot) = match snapshot {
            Some(snapshot) => {
                counters.fsync_count += snapfile::write_snapshot_file(&mut dir, &snapshot)?;
                counters.snapshot_write_count += 1;
                let meta = snapshot.get_metadata();
                (meta.index + 1, meta.term, snapshot)
            }
            None => (1, 0, Snapshot::default()),
        };
        let wal = Wal::create(&mut dir, segment_max_bytes, &hard_state)?;
        counters.fsync_count += 2;
        Ok(Self {
            dir,
            wal,
            entries: VecDeque::new(),
            first_index,
            compacted_term,
            written_hard_state: hard_state.clone(),
            hard_state,
            snapshot,
            snapshot_wanted: Cell::new(false),
            job: None,
            compact_target: 0,
            counters,
        })
    }

    /// Opens an existing replica's log. `Ok(None)` if there is none.
    ///
    /// # Errors
    ///
    /// [`Error::Corruption`] for damage a crash cannot explain (a bad frame
    /// before the end of the last segment, a bad last frame that was
    /// written whole, a missing segment, a log that does not connect to the
    /// snapshot); [`Error::Io`] for I/O failures, including no room for the
    /// copy of the last segment that recovery writes.
    pub(crate) fn open(mut dir: D, segment_max_bytes: u64) -> Result<Option<Self>, Error> {
        let snapshot = snapfile::read_newest_snapshot(&mut dir)?;
        let Some((wal, replayed)) = Wal::open(&mut dir, segment_max_bytes)? else {
            if let Some(snapshot) = snapshot {
                let meta = snapshot.get_metadata();
                return Err(Error::corrupt(
                    &snapfile::snapshot_name(meta.index, meta.term),
                    0,
                    "a snapshot exists but no log segment does",
                ));
            }
            return Ok(None);
        };
        let snapshot = snapshot.unwrap_or_default();
        let (snap_index, snap_term) = (snapshot.get_metadata().index, snapshot.get_metadata().term);
        let snap_name = snapfile::snapshot_name(snap_index, snap_term);
        if let Some((marker_index, _)) = replayed.snapshot_marker {
            if marker_index > snap_index {
                return Err(Error::corrupt(
                    &snap_name,
                    0,
                    format!("the log installed a snapshot at {marker_index} but the newest snapshot file is at {snap_index}"),
                ));
            }
        }
        let replayed_something = !replayed.entries.is_empty() || replayed.snapshot_marker.is_some();
        let replayed_marker = replayed.snapshot_marker;
        let mut entries: VecDeque<Entry> = replayed.entries.into();
        let (mut first_index, mut compacted_term) = (snap_index + 1, snap_term);
        if let (Some(first), Some(last)) = (entries.front(), entries.back()) {
            let (first, last) = (first.index, last.index);
            if first > snap_index + 1 {
                return Err(Error::corrupt(
                    &wal::segment_name(1),
                    0,
                    format!("the log starts at {first}, but the snapshot only covers up to {snap_index}"),
                ));
            }
            if last < snap_index {
                // The snapshot covers the whole log.
                entries.clear();
            } else if first <= snap_index && snap_index > 0 {
                let at = (snap_index - first) as usize;
                if entries[at].term != snap_term {
                    // A snapshot from the leader was durable but the crash
                    // came before its marker: it replaces the log, as
                    // raft-rs's restore would have.
                    entries.clear();
                } else {
                    // Keep the entries below the snapshot as a catch-up
                    // window; the first one only gives the term before.
                    let dropped = entries.pop_front().map(|e| e.term).unwrap_or(snap_term);
                    first_index = first + 1;
                    compacted_term = dropped;
                }
            }
        }
        let last_index = first_index + entries.len() as u64 - 1;
        let mut hard_state = replayed.hard_state;
        hard_state.commit = hard_state.commit.max(snap_index);
        if hard_state.commit > last_index {
            return Err(Error::corrupt(
                &wal::segment_name(1),
                0,
                format!(
                    "the hard state commits {} but the log ends at {last_index}",
                    hard_state.commit
                ),
            ));
        }
        let counters = StorageCounters {
            torn_tail_bytes: replayed.torn_bytes,
            // The rewrite of the last segment (`Wal::open`).
            fsync_count: 2,
            ..Default::default()
        };
        let mut store = Self {
            dir,
            wal,
            entries,
            first_index,
            compacted_term,
            written_hard_state: hard_state.clone(),
            hard_state,
            snapshot,
            snapshot_wanted: Cell::new(false),
            job: None,
            compact_target: 0,
            counters,
        };
        let marker_missing = replayed_marker != Some((snap_index, snap_term));
        if store.entries.is_empty() && snap_index > 0 && marker_missing && replayed_something {
            // The newest snapshot replaced the log, but its marker never
            // reached the log (a crash or an I/O error between the snapshot
            // file and the frame). Write it now: otherwise the next entries
            // would follow the old log in the segments, and the next replay
            // would find a gap and refuse to start.
            let mut frame = FrameBuilder::default();
            frame.snapshot_marker(snap_index, snap_term);
            frame.hard_state(&store.hard_state);
            let written = store.written_hard_state.clone();
            let (syncs, bytes) = store.wal.write(&mut store.dir, frame, true, &written)?;
            store.counters.fsync_count += syncs;
            store.counters.log_bytes_written += bytes;
            store.counters.frame_count += 1;
        }
        Ok(Some(store))
    }

    /// Persists one Ready: an installed snapshot (its own file first), new
    /// entries (replacing any conflicting suffix) and the hard state, as
    /// one frame with one write. Syncs it when `must_sync` is set or when
    /// there are entries or a snapshot.
    ///
    /// # Errors
    ///
    /// Any I/O error; the node must then stop (the durable state of the
    /// file is unknown after a failed sync).
    pub(crate) fn persist_ready(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        must_sync: bool,
    ) -> Result<(), Error> {
        let mut frame = FrameBuilder::default();
        if let Some(snapshot) = snapshot {
            if self.job.take().is_some() {
                // The leader's snapshot replaces the log and is newer than
                // anything this replica applied: its own is moot.
                snapfile::remove_part(&mut self.dir)?;
                self.counters.snapshots_abandoned_count += 1;
            }
            self.counters.fsync_count += snapfile::write_snapshot_file(&mut self.dir, snapshot)?;
            self.counters.snapshot_write_count += 1;
            let meta = snapshot.get_metadata();
            frame.snapshot_marker(meta.index, meta.term);
            self.entries.clear();
            self.first_index = meta.index + 1;
            self.compacted_term = meta.term;
            self.hard_state.commit = self.hard_state.commit.max(meta.index);
            self.snapshot = snapshot.clone();
        }
        if let Some(first) = entries.first() {
            let last_index = self.last_index_inner();
            if first.index < self.first_index || first.index > last_index + 1 {
                return Err(Error::Failed(format!(
                    "raft-rs appended entry {} to a log holding {}..={last_index}",
                    first.index, self.first_index
                )));
            }
            self.entries
                .truncate((first.index - self.first_index) as usize);
            for entry in entries {
                frame.entry(entry);
                self.entries.push_back(entry.clone());
            }
        }
        if let Some(hard_state) = hard_state {
            let commit = self.hard_state.commit.max(hard_state.commit);
            self.hard_state = hard_state.clone();
            self.hard_state.commit = commit;
        }
        let hard_state_moved = self.hard_state.term != self.written_hard_state.term
            || self.hard_state.vote != self.written_hard_state.vote;
        // A frame that would only move the commit index is not written: it
        // waits for the next frame, as a LightReady's commit does
        // (`set_commit`). On a leader that frame came after every commit,
        // a file write on the path of every reply; losing it in a crash is
        // harmless, since the open takes the commit up to the snapshot and
        // the leader sends it again.
        if self.hard_state != self.written_hard_state
            && (snapshot.is_some() || !entries.is_empty() || hard_state_moved)
        {
            frame.hard_state(&self.hard_state);
        }
        if frame.is_empty() {
            return Ok(());
        }
        let sync = must_sync || snapshot.is_some() || !entries.is_empty();
        self.counters.entries_persisted_count += frame.entry_count();
        self.counters.frame_count += 1;
        // The hard state given to a new segment's header is the one already
        // written: the new one may commit entries of this very frame.
        let written = self.written_hard_state.clone();
        let (syncs, bytes) = self.wal.write(&mut self.dir, frame, sync, &written)?;
        self.counters.fsync_count += syncs;
        self.counters.log_bytes_written += bytes;
        self.written_hard_state = self.hard_state.clone();
        Ok(())
    }

    /// Records a commit index learned after a Ready (raft-rs LightReady).
    /// It is written with the next frame; losing it in a crash is harmless
    /// (the leader sends it again).
    pub(crate) fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = self.hard_state.commit.max(commit);
    }

    /// Starts writing a snapshot of this replica's own state machine. Its
    /// data holds the first `state_start` bytes (the driver's part); the
    /// driver appends the rest through [`LogStore::own_snapshot_data_mut`]
    /// and then calls [`LogStore::complete_own_snapshot`]. Later
    /// [`LogStore::own_snapshot_step`] calls write it as it grows; once it
    /// is whole and durable it becomes the newest snapshot and the log is
    /// compacted up to `compact_index` (at most the snapshot's index),
    /// keeping the entries above it as a catch-up window. Until then the
    /// previous snapshot stays the newest, and a crash leaves only a
    /// temporary file that the next open removes.
    pub(crate) fn begin_own_snapshot(
        &mut self,
        snapshot: Snapshot,
        state_start: usize,
        compact_index: u64,
    ) {
        let snap_index = snapshot.get_metadata().index;
        assert!(compact_index <= snap_index, "compaction past the snapshot");
        assert!(
            snap_index <= self.hard_state.commit,
            "snapshot of uncommitted state"
        );
        assert!(self.job.is_none(), "one own snapshot at a time");
        assert!(
            state_start <= snapshot.data.len(),
            "the prefix is in the data"
        );
        self.job = Some(SnapshotJob {
            snapshot,
            compact_index,
            complete: false,
            writer: snapfile::ChunkedWriter::new(state_start),
        });
    }

    /// The data of the own snapshot in progress, while it is produced.
    pub(crate) fn own_snapshot_data_mut(&mut self) -> Option<&mut Vec<u8>> {
        self.job
            .as_mut()
            .filter(|job| !job.complete)
            .map(|job| &mut job.snapshot.data)
    }

    /// Marks the own snapshot's data whole: the next step finishes it.
    pub(crate) fn complete_own_snapshot(&mut self) {
        if let Some(job) = self.job.as_mut() {
            job.complete = true;
        }
    }

    /// The index of the own snapshot being written, if any.
    pub(crate) fn own_snapshot_in_progress(&self) -> Option<u64> {
        self.job
            .as_ref()
            .map(|job| job.snapshot.get_metadata().index)
    }

    /// Writes what the own snapshot in progress gained since the last call
    /// (a sync once `unsynced_bytes_max` are unsynced); once it is whole,
    /// makes it durable and the newest, and schedules compaction.
    ///
    /// # Errors
    ///
    /// Any I/O error; the node must then stop (its previous snapshot and
    /// log are intact).
    pub(crate) fn own_snapshot_step(
        &mut self,
        unsynced_bytes_max: u64,
    ) -> Result<SnapshotStep, Error> {
        let Some(job) = self.job.as_mut() else {
            return Ok(SnapshotStep::default());
        };
        let done = job.writer.step(
            &mut self.dir,
            &job.snapshot,
            job.complete,
            unsynced_bytes_max,
        )?;
        self.counters.fsync_count += done.fsync_count;
        self.counters.snapshot_bytes_written += done.file_bytes;
        if !done.finished {
            return Ok(SnapshotStep::default());
        }
        let Some(job) = self.job.take() else {
            return Ok(SnapshotStep::default());
        };
        let index = job.snapshot.get_metadata().index;
        debug_assert!(
            index >= self.snapshot.get_metadata().index,
            "an own snapshot never goes back (a newer one from the leader abandons it)"
        );
        self.counters.snapshot_write_count += 1;
        self.snapshot = job.snapshot;
        self.snapshot_wanted.set(false);
        self.compact_target = self.compact_target.max(job.compact_index);
        Ok(SnapshotStep {
            installed_index: Some(index),
        })
    }

    /// Does a bounded piece of the compaction scheduled by a durable own
    /// snapshot: drops at most `entries_max_count` entries from memory, and
    /// removes at most one log segment wholly at or below the target.
    ///
    /// # Errors
    ///
    /// Any I/O error from removing a segment.
    pub(crate) fn compaction_step(&mut self, entries_max_count: u64) -> Result<(), Error> {
        if self.compact_target == 0 {
            return Ok(());
        }
        let target = self.compact_target;
        if target >= self.first_index {
            let upto = target
                .min(self.last_index_inner())
                .min(self.first_index.saturating_add(entries_max_count.max(1)) - 1);
            let term = self
                .term_inner(upto)
                .map_err(|e| Error::Failed(format!("compact: {e}")))?;
            let drop_count = (upto + 1 - self.first_index) as usize;
            self.entries.drain(..drop_count);
            self.first_index = upto + 1;
            self.compacted_term = term;
            self.counters.entries_compacted_count += drop_count as u64;
        }
        let removed_count =
            self.wal
                .compact(&mut self.dir, target, COMPACT_SEGMENTS_PER_STEP_MAX_COUNT)?;
        if target < self.first_index && removed_count < COMPACT_SEGMENTS_PER_STEP_MAX_COUNT {
            // Memory is done and no segment was left to remove.
            self.compact_target = 0;
        }
        Ok(())
    }

    /// Whether an own snapshot or a compaction is still in progress: the
    /// caller should call `process` again soon.
    pub(crate) fn background_work_pending(&self) -> bool {
        self.job.is_some() || self.compact_target != 0
    }

    /// Stores a snapshot of this replica's own state machine and compacts
    /// the log up to `compact_index`, all at once (tests).
    ///
    /// # Errors
    ///
    /// Any I/O error.
    #[cfg(test)]
    pub(crate) fn save_own_snapshot(
        &mut self,
        snapshot: Snapshot,
        compact_index: u64,
    ) -> Result<(), Error> {
        let state_start = snapshot.data.len();
        self.begin_own_snapshot(snapshot, state_start, compact_index);
        self.complete_own_snapshot();
        while self.job.is_some() {
            self.own_snapshot_step(u64::MAX)?;
        }
        while self.background_work_pending() {
            self.compaction_step(u64::MAX)?;
        }
        Ok(())
    }

    /// Whether raft-rs asked for a snapshot the newest one cannot serve.
    pub(crate) fn snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.get()
    }

    /// The newest snapshot (index 0 when there is none).
    pub(crate) fn newest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The directory, for the driver's own small files.
    pub(crate) fn dir_mut(&mut self) -> &mut D {
        &mut self.dir
    }

    /// What storage did so far.
    pub(crate) fn counters(&self) -> StorageCounters {
        self.counters
    }

    /// Index of the first entry still in the log.
    pub(crate) fn first_index_inner(&self) -> u64 {
        self.first_index
    }

    /// Index of the last entry (or of the snapshot if the log is empty).
    pub(crate) fn last_index_inner(&self) -> u64 {
        self.first_index + self.entries.len() as u64 - 1
    }

    /// Log segment files in use.
    pub(crate) fn segment_count(&self) -> usize {
        self.wal.segment_count()
    }

    /// The entry at `index`, if it is in the log.
    pub(crate) fn entry(&self, index: u64) -> Option<&Entry> {
        index
            .checked_sub(self.first_index)
            .and_then(|at| self.entries.get(at as usize))
    }

    fn term_inner(&self, index: u64) -> raft::Result<u64> {
        if index + 1 == self.first_index {
            return Ok(self.compacted_term);
        }
        if index < self.first_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        match self.entry(index) {
            Some(entry) => Ok(entry.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }
}

/// Encodes one checksummed frame (for small files such as the identity).
pub(crate) fn encode_frame_public(out: &mut Vec<u8>, payload: &[u8]) {
    frame::encode_frame(out, payload);
}

/// The payload of a file that must hold exactly one valid frame.
pub(crate) fn single_frame(bytes: &[u8]) -> Result<&[u8], String> {
    let scan = frame::scan_frames(bytes, false).map_err(|c| c.reason)?;
    match scan.payloads.as_slice() {
        [payload] => Ok(payload),
        _ => Err(format!("expected one frame, found {}", scan.payloads.len())),
    }
}

fn conf_state_has(conf: &ConfState, id: u64) -> bool {
    conf.voters.contains(&id)
        || conf.learners.contains(&id)
        || conf.voters_outgoing.contains(&id)
        || conf.learners_next.contains(&id)
}

impl<D: Dir> raft::Storage for LogStore<D> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        // The conf state as of the snapshot: the driver restarts its state
        // machine from the snapshot (Config.applied is its index), so every
        // later conf change is applied again from the log.
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.snapshot.get_metadata().get_conf_state().clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index_inner() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_bytes = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut total_bytes = 0u64;
        for index in low..high {
            let Some(entry) = self.entry(index) else {
                break;
            };
            total_bytes += entry.encoded_len() as u64;
            // At least one entry, even over the limit (raft-rs contract).
            if !out.is_empty() && total_bytes > max_bytes {
                break;
            }
            out.push(entry.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.term_inner(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first_index)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index_inner())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let meta = self.snapshot.get_metadata();
        // A snapshot taken before `to` joined would be refused by it (it is
        // not in the snapshot's configuration), and one below the request
        // is useless: ask the driver for a fresh one; raft-rs retries.
        if meta.index == 0
            || meta.index < request_index
            || !conf_state_has(meta.get_conf_state(), to)
        {
            self.snapshot_wanted.set(true);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests;
