//! Recovery scenarios on real files: each test writes through `LogStore`,
//! damages or reopens the directory, and checks what comes back.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::rc::Rc;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::Storage;

use super::dir::{Dir, FsDir};
use super::LogStore;
use crate::error::Error;

const SEGMENT_BYTES: u64 = 4096;

fn entry(index: u64, term: u64, bytes: usize) -> Entry {
    Entry {
        index,
        term,
        data: vec![index as u8; bytes],
        ..Default::default()
    }
}

fn bootstrap_snapshot() -> Snapshot {
    Snapshot {
        data: b"state".to_vec(),
        metadata: Some(SnapshotMetadata {
            conf_state: Some(ConfState {
                voters: vec![1, 2, 3],
                ..Default::default()
            }),
            index: 1,
            term: 1,
        }),
    }
}

fn create(dir: &tempfile::TempDir) -> LogStore<FsDir> {
    let fs = FsDir::open(dir.path()).expect("dir");
    LogStore::create(
        fs,
        SEGMENT_BYTES,
        Some(bootstrap_snapshot()),
        HardState {
            term: 1,
            vote: 0,
            commit: 1,
        },
    )
    .expect("create")
}

fn reopen(dir: &tempfile::TempDir) -> Result<LogStore<FsDir>, Error> {
    let fs = FsDir::open(dir.path()).expect("dir");
    LogStore::open(fs, SEGMENT_BYTES).map(|store| store.expect("a log exists"))
}

fn terms<D: Dir>(store: &LogStore<D>) -> Vec<(u64, u64)> {
    let (first, last) = (
        store.first_index().expect("first"),
        store.last_index().expect("last"),
    );
    store
        .entries(first, last + 1, None, raft::GetEntriesContext::empty(false))
        .expect("entries")
        .iter()
        .map(|e| (e.index, e.term))
        .collect()
}

fn segment_names(dir: &tempfile::TempDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("wal-"))
        .collect();
    names.sort();
    names
}

#[test]
fn entries_and_hard_state_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = create(&dir);
    let entries: Vec<Entry> = (2..=6).map(|i| entry(i, 2, 10)).collect();
    let hard_state = HardState {
        term: 2,
        vote: 3,
        commit: 4,
    };
    store
        .persist_ready(None, &entries, Some(&hard_state), true)
        .expect("persist");
    let fsyncs = store.counters().fsync_count;
    drop(store);

    let store = reopen(&dir).expect("reopen");
    assert_eq!(terms(&store), (2..=6).map(|i| (i, 2)).collect::<Vec<_>>());
    assert_eq!(store.initial_state().expect("state").hard_state, hard_state);
    assert_eq!(store.term(1).expect("snapshot term"), 1);
    assert!(fsyncs >= 1);
}

#[test]
fn a_conflicting_suffix_is_replaced() {
    // Goal: a follower's overwritten suffix stays overwritten after replay.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = create(&dir);
    let first: Vec<Entry> = (2..=6).map(|i| entry(i, 2, 10)).collect();
    store
        .persist_ready(None, &first, None, true)
        .expect("persist");
    let second = vec![entry(4, 3, 10), entry(5, 3, 10)];
    store
        .persist_ready(
            None,
            &second,
            Some(&HardState {
                term: 3,
                vote: 2,
                commit: 3,
            }),
            true,
        )
        .expect("persist");
    assert_eq!(terms(&store), vec![(2, 2), (3, 2), (4, 3), (5, 3)]);
    drop(store);
    assert_eq!(
        terms(&reopen(&dir).expect("reopen")),
        vec![(2, 2), (3, 2), (4, 3), (5, 3)]
    );
}

#[test]
fn a_torn_tail_is_cut_and_later_writes_follow_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = create(&dir);
    store
        .persist_ready(None, &[entry(2, 1, 10)], None, true)
        .expect("persist");
    drop(store);
    let last = segment_names(&dir).pop().expect("a segment");
    let mut file = OpenOptions::new()
        .append(true)
        .open(dir.path().join(&last))
        .expect("open");
    // Half a frame: the magic and a length, then garbage.
    file.write_all(&[0x52, 0x43, 0x57, 0x31, 200, 0, 0, 0, 1, 2, 3])
        .expect("write");
    drop(file);

    let mut store = reopen(&dir).expect("a torn tail is not corruption");
    assert_eq!(store.counters().torn_tail_bytes, 11);
    assert_eq!(terms(&store), vec![(2, 1)]);
    store
        .persist_ready(None, &[entry(3, 1, 10)], None, true)
        .expect("persist after the cut");
    drop(store);
    assert_eq!(terms(&reopen(&dir).expect("reopen")), vec![(2, 1), (3, 1)]);
}

#[test]
fn damage_before_the_tail_refuses_to_start() {
    // Goal: a flipped bit in synced data is corruption, not a torn tail:
    // the node must refuse to start rather than serve a shortened log.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = create(&dir);
    for i in 2..40 {
        store
            .persist_ready(None, &[entry(i, 1, 200)], None, true)
            .expect("persist");
    }
    drop(store);
    let names = segment_names(&dir);
    assert!(
        names.len() >= 2,
        "the test needs several segments: {names:?}"
    );
    let path = dir.path().join(&names[0]);
    let mut bytes = std::fs::read(&path).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&path, bytes).expect("write");

    match reopen(&dir) {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, names[0]),
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("a corrupt segment was accepted"),
    }
}

#[test]
fn damage_in_the_middle_of_the_last_segment_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = create(&dir);
    for i in 2..6 {
        store
            .persist_ready(None, &[entry(i, 1, 20)], None, true)
            .expect("persist");
    }
    drop(store);
    let last = segment_names(&dir).pop().expect("a segment");
    let path = dir.path().join(&last);
    let mut bytes = std::fs::read(&path).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&path, bytes).expect("write");
    assert!(matches!(reopen(&dir), Err(Error::Corruption { .. })));
}

#[test]
fn a_commit_alone_waits_for_the_next_frame_and_a_vote_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = create(&dir);
    let state = |term, vote, commit| HardState { term, vote, commit };
    store
        .persist_ready(None, &[entry(2, 1, 10)], Some(&state(1, 1, 1)), true)
        .expect("persist");
    let frames = store.counters().frame_count;
    store
        .persist_ready(None, &[], Some(&state(1, 1, 2)), false)
        .expect("commit only");
    assert_eq!(
        store.counters().frame_count,
        frames,
        "a commit alone is not written"
    );
    assert_eq!(store.initial_state().expect("state").hard_state.commit, 2);
    drop(store);
    let mut store = reopen(&dir).expect("reopen");
    assert_eq!(
        store.initial_state().expect("state").hard_state.commit,
        1,
        "the unwritten commit is lost in a crash, as allowed"
    );
    store
        .persist_ready(None, &[], Some(&state(2, 3, 2)), true)
        .expect("vote");
    assert_eq!(store.counters().frame_count, 1, "a vote is written at once");
    store
        .persist_ready(None, &[entry(3, 2, 10)], None, true)
        .expect("persist");
    drop(store);
    let store = reopen(&dir).expect("reopen");
    let hard_state = store.initial_state().expect("state").hard_state;
    assert_eq!(
        (hard_state.term, hard_state.vote, hard_state.commit),
        (2, 3, 2)
    );
    assert_eq!(store.last_index().expect("last"), 3);
}

#[test]
fn compaction_deletes_old_segments_and_keeps_a_catch_up_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = create(&dir);
    for i in 2..=60 {
        let hard_state = HardState {
            term: 1,
            vote: 1,
            commit: i,
        };
        store
            .persist_ready(None, &[entry(i, 1, 200)], Some(&hard_state), true)
            .expect("persist");
    }
    let before = segment_names(&dir).len();
    let snapshot = Snapshot {
        data: b"at 50".to_vec(),
        metadata: Some(SnapshotMetadata {
            conf_state: Some(ConfState {
                voters: vec![1, 2, 3],
                ..Default::default()
            }),
            index: 50,
            term: 1,
        }),
    };
    store.save_own_snapshot(snapshot, 40).expect("snapshot");
    assert_eq!(
        store.first_index().expect("first"),
        41,
        "entries 41..=60 stay as a catch-up window"
    );
    assert_eq!(store.term(40).expect("term before the window"), 1);
    assert!(matches!(
        store.term(30),
        Err(raft::Error::Store(raft::StorageError::Compacted))
    ));
    let after = segment_names(&dir).len();
    assert!(after < before, "segments {before} -> {after}");
    drop(store);

    let store = reopen(&dir).expect("reopen");
    assert_eq!(store.newest_snapshot().get_metadata().index, 50);
    assert_eq!(store.last_index().expect("last"), 60);
    assert!(store.first_index().expect("first") <= 51);
    assert_eq!(store.initial_state().expect("state").hard_state.commit, 60);
}

#[test]
fn an_installed_snapshot_replaces_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = create(&dir);
    store
        .persist_ready(None, &[entry(2, 1, 10), entry(3, 1, 10)], None, true)
        .expect("persist");
    let snapshot = Snapshot {
        data: b"from the leader".to_vec(),
        metadata: Some(SnapshotMetadata {
            conf_state: Some(ConfState {
                voters: vec![1, 2, 3],
                ..Default::default()
            }),
            index: 100,
            term: 4,
        }),
    };
    store
        .persist_ready(
            Some(&snapshot),
            &[],
            Some(&HardState {
                term: 4,
                vote: 0,
                commit: 100,
            }),
            true,
        )
        .expect("install");
    assert_eq!(
        (
            store.first_index().expect("first"),
            store.last_index().expect("last")
        ),
        (101, 100)
    );
    drop(store);
    let store = reopen(&dir).expect("reopen");
    assert_eq!(
        (
            store.first_index().expect("first"),
            store.last_index().expect("last")
        ),
        (101, 100)
    );
    assert_eq!(store.term(100).expect("term"), 4);
    assert_eq!(store.newest_snapshot().data, b"from the leader");
}

// ---- I/O faults on real files ---------------------------------------------

/// What a [`FaultyDir`] does next, shared by every handle on one directory
/// (a reopened store sees the same plan, like a process that keeps running
/// on the same kernel).
#[derive(Default)]
struct Plan {
    /// Fail the next `write_new` with this error kind after writing this
    /// many bytes of its data (a short write, then the error).
    fail_write_new: Option<(io::ErrorKind, usize)>,
    /// The same for the next `append`.
    fail_append: Option<(io::ErrorKind, usize)>,
    /// Fail the next `sync_data` with EIO.
    fail_sync: bool,
    /// Content by name as a power loss would leave it: what the last sync
    /// that really reached the disk saw.
    durable: BTreeMap<String, Vec<u8>>,
    /// Files whose sync failed. Like Linux after EIO, their later syncs
    /// report success without writing what the failed one lost.
    poisoned: BTreeSet<String>,
}

/// An [`FsDir`] that fails on demand and models what a power loss keeps.
struct FaultyDir {
    inner: FsDir,
    plan: Rc<RefCell<Plan>>,
}

fn eio() -> io::Error {
    io::Error::other("EIO (injected)")
}

fn injected(kind: io::ErrorKind) -> io::Error {
    io::Error::new(kind, format!("{kind} (injected)"))
}

impl Dir for FaultyDir {
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        self.inner.read(name)
    }

    fn write_new(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let mut plan = self.plan.borrow_mut();
        // A new file: nothing of it is durable yet, and it is not poisoned.
        plan.durable.remove(name);
        plan.poisoned.remove(name);
        if let Some((kind, kept)) = plan.fail_write_new.take() {
            self.inner.write_new(name, &data[..kept.min(data.len())])?;
            return Err(injected(kind));
        }
        self.inner.write_new(name, data)
    }

    fn append(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        if let Some((kind, kept)) = self.plan.borrow_mut().fail_append.take() {
            self.inner.append(name, &data[..kept.min(data.len())])?;
            return Err(injected(kind));
        }
        self.inner.append(name, data)
    }

    fn sync_data(&mut self, name: &str) -> io::Result<()> {
        let mut plan = self.plan.borrow_mut();
        if std::mem::take(&mut plan.fail_sync) {
            plan.poisoned.insert(name.to_owned());
            return Err(eio());
        }
        self.inner.sync_data(name)?;
        if !plan.poisoned.contains(name) {
            let content = self.inner.read(name)?;
            plan.durable.insert(name.to_owned(), content);
        }
        Ok(())
    }

    fn truncate(&mut self, name: &str, len_bytes: u64) -> io::Result<()> {
        self.inner.truncate(name, len_bytes)
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to)?;
        let mut plan = self.plan.borrow_mut();
        plan.durable.remove(to);
        if let Some(content) = plan.durable.remove(from) {
            plan.durable.insert(to.to_owned(), content);
        }
        plan.poisoned.remove(to);
        if plan.poisoned.remove(from) {
            plan.poisoned.insert(to.to_owned());
        }
        Ok(())
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.inner.remove(name)?;
        let mut plan = self.plan.borrow_mut();
        plan.durable.remove(name);
        plan.poisoned.remove(name);
        Ok(())
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        self.inner.sync_dir()
    }
}

fn faulty(dir: &tempfile::TempDir, plan: &Rc<RefCell<Plan>>) -> FaultyDir {
    FaultyDir {
        inner: FsDir::open(dir.path()).expect("dir"),
        plan: plan.clone(),
    }
}

fn create_faulty(dir: &tempfile::TempDir, plan: &Rc<RefCell<Plan>>) -> LogStore<FaultyDir> {
    LogStore::create(
        faulty(dir, plan),
        SEGMENT_BYTES,
        Some(bootstrap_snapshot()),
        HardState {
            term: 1,
            vote: 0,
            commit: 1,
        },
    )
    .expect("create")
}

fn reopen_faulty(
    dir: &tempfile::TempDir,
    plan: &Rc<RefCell<Plan>>,
) -> Result<LogStore<FaultyDir>, Error> {
    LogStore::open(faulty(dir, plan), SEGMENT_BYTES).map(|store| store.expect("a log exists"))
}

/// Power loss: every file goes back to what its last real sync saw; files
/// never synced vanish. The page cache (and its poisoned pages) is gone.
fn power_loss(dir: &tempfile::TempDir, plan: &Rc<RefCell<Plan>>) {
    let mut plan = plan.borrow_mut();
    for entry in std::fs::read_dir(dir.path()).expect("list") {
        let entry = entry.expect("entry");
        let name = entry.file_name().into_string().expect("utf-8 name");
        match plan.durable.get(&name) {
            Some(content) => std::fs::write(entry.path(), content).expect("restore"),
            None => std::fs::remove_file(entry.path()).expect("remove"),
        }
    }
    plan.poisoned.clear();
}

#[test]
fn a_failed_sync_is_not_trusted_after_reopen() {
    // Goal: after `sync_data` fails, the next open must not treat what the
    // page cache still shows as durable (fsyncgate). Method: entry 3's
    // sync fails with EIO and its file is poisoned (later syncs of it lie);
    // reopen, note the log the replica would now act on, lose power, and
    // reopen: that log must still be there.
    for (must_sync_first, entries) in [(true, 2..=2), (true, 2..=6), (false, 2..=4)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let plan = Rc::new(RefCell::new(Plan::default()));
        let mut store = create_faulty(&dir, &plan);
        for i in entries.clone() {
            store
                .persist_ready(None, &[entry(i, 1, 50)], None, must_sync_first)
                .expect("persist");
        }
        let next = entries.end() + 1;
        plan.borrow_mut().fail_sync = true;
        let error = store
            .persist_ready(None, &[entry(next, 1, 50)], None, true)
            .expect_err("the sync fails");
        assert!(matches!(error, Error::Io { .. }), "{error}");
        drop(store);

        let store = reopen_faulty(&dir, &plan).expect("reopen after EIO");
        let seen = terms(&store);
        assert_eq!(
            seen.last(),
            Some(&(next, 1)),
            "the page cache still holds it"
        );
        drop(store);
        power_loss(&dir, &plan);
        let store = reopen_faulty(&dir, &plan).expect("reopen after power loss");
        assert_eq!(
            terms(&store),
            seen,
            "the replica acted on entries that were not durable"
        );
    }
}

#[test]
fn enospc_when_starting_a_segment_does_not_brick_the_replica() {
    // Goal: running out of space while starting a segment leaves a replica
    // that opens again (once there is room) with every synced entry.
    // Method: fail the new segment's write with ENOSPC after 0 and after
    // 10 bytes; reopen; write on through a rotation; reopen again.
    for kept in [0, 10] {
        let dir = tempfile::tempdir().expect("tempdir");
        let plan = Rc::new(RefCell::new(Plan::default()));
        let mut store = create_faulty(&dir, &plan);
        plan.borrow_mut().fail_write_new = Some((io::ErrorKind::StorageFull, kept));
        let mut index = 2;
        let acked = loop {
            match store.persist_ready(None, &[entry(index, 1, 300)], None, true) {
                Ok(()) => index += 1,
                Err(error) => {
                    assert!(error.to_string().contains("injected"), "{error}");
                    break index - 1;
                }
            }
            assert!(index < 100, "no segment start within 100 entries");
        };
        drop(store);

        let mut store = reopen_faulty(&dir, &plan).expect("reopen after ENOSPC");
        assert_eq!(store.last_index().expect("last"), acked);
        for i in acked + 1..acked + 20 {
            store
                .persist_ready(None, &[entry(i, 1, 300)], None, true)
                .expect("persist after ENOSPC");
        }
        assert!(store.segment_count() >= 2);
        drop(store);
        let store = reopen_faulty(&dir, &plan).expect("reopen after rotation");
        assert_eq!(
            terms(&store),
            (2..acked + 20).map(|i| (i, 1)).collect::<Vec<_>>()
        );
    }
}

#[test]
fn an_empty_last_segment_left_by_an_older_version_is_dropped() {
    // Goal: a directory where a segment start failed under the old code
    // (a zero-byte segment under its final name) still opens.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = create(&dir);
    store
        .persist_ready(None, &[entry(2, 1, 10)], None, true)
        .expect("persist");
    drop(store);
    std::fs::write(dir.path().join(super::wal::segment_name(2)), b"").expect("empty segment");
    let mut store = reopen(&dir).expect("reopen with an empty last segment");
    store
        .persist_ready(None, &[entry(3, 1, 10)], None, true)
        .expect("persist");
    drop(store);
    assert_eq!(terms(&reopen(&dir).expect("reopen")), vec![(2, 1), (3, 1)]);
}

#[test]
fn a_failed_append_leaves_a_torn_tail_that_is_cut() {
    // Goal: EIO in the middle of a write (a short write) costs the frame
    // that failed and nothing else.
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = Rc::new(RefCell::new(Plan::default()));
    let mut store = create_faulty(&dir, &plan);
    store
        .persist_ready(None, &[entry(2, 1, 40)], None, true)
        .expect("persist");
    plan.borrow_mut().fail_append = Some((io::ErrorKind::Other, 30));
    store
        .persist_ready(None, &[entry(3, 1, 40)], None, true)
        .expect_err("the write fails");
    drop(store);
    let mut store = reopen_faulty(&dir, &plan).expect("reopen");
    assert_eq!(store.counters().torn_tail_bytes, 30);
    assert_eq!(terms(&store), vec![(2, 1)]);
    store
        .persist_ready(None, &[entry(3, 1, 40)], None, true)
        .expect("persist");
    drop(store);
    power_loss(&dir, &plan);
    assert_eq!(
        terms(&reopen_faulty(&dir, &plan).expect("reopen")),
        vec![(2, 1), (3, 1)]
    );
}

#[test]
fn a_bit_flip_in_the_synced_last_frame_refuses_to_start() {
    // Goal: the last frame of the log, synced (so its vote or entries may
    // have been acknowledged), is never cut as a torn write when a bit of
    // it flips; while a torn unsynced frame after it still is.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = create(&dir);
    for i in 2..6 {
        store
            .persist_ready(None, &[entry(i, 1, 64)], None, true)
            .expect("persist");
    }
    drop(store);
    let last = segment_names(&dir).pop().expect("a segment");
    let path = dir.path().join(&last);
    let pristine = std::fs::read(&path).expect("read");

    // A torn unsynced write after the synced frames: cut, and it starts.
    let mut torn = pristine.clone();
    let mut frame = Vec::new();
    super::frame::encode_frame(&mut frame, &[7; 40]);
    let kept = frame.len() - 5;
    torn.extend_from_slice(&frame[..kept]);
    let end = torn.len();
    torn[end - 3..].copy_from_slice(&[0xde, 0xad, 0xbe]);
    std::fs::write(&path, &torn).expect("write");
    let store = reopen(&dir).expect("a torn unsynced tail is cut");
    assert_eq!(store.counters().torn_tail_bytes, kept as u64);
    assert_eq!(store.last_index().expect("last"), 5);
    drop(store);

    // A flipped bit inside the last synced frame: corruption, loudly.
    let mut flipped = pristine;
    let at = flipped.len() - 20;
    flipped[at] ^= 0x04;
    std::fs::write(&path, &flipped).expect("write");
    match reopen(&dir) {
        Err(error @ Error::Corruption { .. }) => {
            let text = error.to_string();
            assert!(text.contains(&last), "{text}");
            assert!(text.contains("written whole"), "{text}");
            assert!(text.contains("replace this replica"), "{text}");
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("a flipped bit in a synced frame was cut as a torn write"),
    }
}

#[test]
fn a_snapshot_whose_marker_failed_to_reach_the_log_still_reopens() {
    // Goal: an I/O error after an installed snapshot's file is durable but
    // before its marker frame is written does not brick the replica.
    // Method: fail the marker's append; reopen; append after the
    // snapshot; reopen again (the replay must find the marker).
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = Rc::new(RefCell::new(Plan::default()));
    let mut store = create_faulty(&dir, &plan);
    store
        .persist_ready(None, &[entry(2, 1, 10), entry(3, 1, 10)], None, true)
        .expect("persist");
    let snapshot = Snapshot {
        data: b"from the leader".to_vec(),
        metadata: Some(SnapshotMetadata {
            conf_state: Some(ConfState {
                voters: vec![1, 2, 3],
                ..Default::default()
            }),
            index: 100,
            term: 4,
        }),
    };
    let hard_state = HardState {
        term: 4,
        vote: 0,
        commit: 100,
    };
    plan.borrow_mut().fail_append = Some((io::ErrorKind::Other, 7));
    store
        .persist_ready(Some(&snapshot), &[], Some(&hard_state), true)
        .expect_err("the marker's write fails");
    drop(store);

    let mut store = reopen_faulty(&dir, &plan).expect("reopen");
    assert_eq!(store.first_index().expect("first"), 101);
    store
        .persist_ready(None, &[entry(101, 4, 10)], None, true)
        .expect("append after the snapshot");
    drop(store);
    power_loss(&dir, &plan);
    let store = reopen_faulty(&dir, &plan).expect("reopen after the append");
    assert_eq!(terms(&store), vec![(101, 4)]);
    assert_eq!(store.term(100).expect("snapshot term"), 4);
}
