//! Recovery scenarios on real files: each test writes through `LogStore`,
//! damages or reopens the directory, and checks what comes back.

use std::fs::OpenOptions;
use std::io::Write;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::Storage;

use super::dir::FsDir;
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

fn terms(store: &LogStore<FsDir>) -> Vec<(u64, u64)> {
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
