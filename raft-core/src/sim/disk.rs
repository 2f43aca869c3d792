//! A simulated disk that keeps written bytes apart from synced bytes.
//!
//! Each replica gets a [`SimDisk`]; the simulator keeps another handle to
//! the same state to crash it. A crash keeps, for every file, its synced
//! content plus a random prefix of what was written after the last sync,
//! sometimes with the last bytes garbled (a torn write); and it forgets
//! creations, renames and removals not made durable by a directory sync.
//!
//! The simulator also arms I/O faults ([`IoFault`]): a write that fails
//! with EIO or ENOSPC after writing a prefix of its data, and a
//! `sync_data` that fails with EIO. A failed sync behaves like Linux: the
//! bytes it failed to write stay readable (the page cache) but are never
//! written, not even by a later sync of the same file that succeeds
//! ("fsyncgate"); only a crash shows the hole. And it flips bits in synced
//! data ([`SimDisk::flip_durable_bit`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;

use crate::rng::Rng;
use crate::storage::dir::Dir;

/// Faults the disk injects on purpose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskFaults {
    /// `sync_data` on log segments returns success without making anything
    /// durable: the same as deleting the fsync from the Ready path. Used to
    /// prove that the simulator catches a missing fsync.
    pub ignore_log_sync: bool,
}

/// An I/O failure armed on a disk by the simulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoFault {
    /// `write_new` or `append` writes a prefix of its data, then fails
    /// with EIO.
    WriteEio,
    /// `write_new` or `append` writes a prefix of its data, then fails
    /// with ENOSPC (`StorageFull`).
    NoSpace,
    /// `sync_data` fails with EIO; what it did not write is lost for good.
    SyncEio,
}

impl IoFault {
    fn is_write(self) -> bool {
        matches!(self, IoFault::WriteEio | IoFault::NoSpace)
    }
}

/// A fault waiting for its operation.
#[derive(Clone, Debug)]
struct Armed {
    fault: IoFault,
    /// Matching operations that still succeed first.
    skip_count: u32,
    /// Matching operations that fail, then the fault is gone.
    fail_count: u32,
    /// Draws how much of a failing write lands.
    rng: Rng,
}

/// What survives a crash of one file.
#[derive(Clone, Debug)]
enum Durable {
    /// The first `len` bytes of the current data (the common, append-only
    /// case, which needs no copy).
    Prefix(usize),
    /// Exactly these bytes (the file was truncated or rewritten since).
    Bytes(Vec<u8>),
}

#[derive(Clone, Debug)]
struct SimFile {
    data: Vec<u8>,
    durable: Durable,
    /// Byte ranges a failed sync lost: readable in `data`, never written
    /// to the disk, whatever later syncs of this file report.
    lost: Vec<(usize, usize)>,
    /// Bytes a `sync_data` made durable. Unlike `durable`, not grown by a
    /// crash that happens to keep unsynced bytes (a torn tail is on the
    /// disk, but nobody synced it).
    synced_len: usize,
}

impl SimFile {
    fn durable_len(&self) -> usize {
        match &self.durable {
            Durable::Prefix(len) => (*len).min(self.data.len()),
            Durable::Bytes(bytes) => bytes.len(),
        }
    }
}

#[derive(Debug, Default)]
struct DiskState {
    /// Files by inode number.
    files: BTreeMap<u64, SimFile>,
    /// The directory as the running process sees it.
    names: BTreeMap<String, u64>,
    /// The directory as of the last `sync_dir`.
    durable_names: BTreeMap<String, u64>,
    next_inode: u64,
    faults: DiskFaults,
    sync_count: u64,
    armed: Option<Armed>,
    /// I/O faults that fired since the last [`SimDisk::take_fired`].
    fired_count: u64,
}

impl DiskState {
    /// The error a write must return now, if an armed fault fires, and how
    /// many of its `len` bytes land first.
    fn write_fault(&mut self, len: usize) -> Option<(io::Error, usize)> {
        let armed = self.armed.as_mut().filter(|a| a.fault.is_write())?;
        if armed.skip_count > 0 {
            armed.skip_count -= 1;
            return None;
        }
        let kept = armed.rng.below(len as u64 + 1) as usize;
        let error = match armed.fault {
            IoFault::NoSpace => io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (injected)",
            ),
            _ => io::Error::other("input/output error on write (injected)"),
        };
        self.fire();
        Some((error, kept))
    }

    fn sync_fault(&mut self) -> Option<io::Error> {
        let armed = self
            .armed
            .as_mut()
            .filter(|a| a.fault == IoFault::SyncEio)?;
        if armed.skip_count > 0 {
            armed.skip_count -= 1;
            return None;
        }
        self.fire();
        Some(io::Error::other("input/output error on fsync (injected)"))
    }

    fn fire(&mut self) {
        self.fired_count += 1;
        if let Some(armed) = self.armed.as_mut() {
            armed.fail_count = armed.fail_count.saturating_sub(1);
            if armed.fail_count == 0 {
                self.armed = None;
            }
        }
    }
}

/// A handle to one replica's simulated disk. Clones share the disk.
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    state: Rc<RefCell<DiskState>>,
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file {name}"))
}

impl SimDisk {
    /// An empty disk.
    pub fn new(faults: DiskFaults) -> Self {
        let disk = Self::default();
        disk.state.borrow_mut().faults = faults;
        disk
    }

    /// Syncs issued so far (file and directory).
    pub fn sync_count(&self) -> u64 {
        self.state.borrow().sync_count
    }

    /// Simulates power loss: keeps what was durable, plus a random prefix
    /// of each file's unsynced tail, sometimes garbled at its end.
    pub fn crash(&self, rng: &mut Rng) {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        state.names = state.durable_names.clone();
        let live: Vec<u64> = state.names.values().copied().collect();
        state.files.retain(|inode, _| live.contains(inode));
        for file in state.files.values_mut() {
            let kept = match &file.durable {
                Durable::Prefix(len) => {
                    let len = (*len).min(file.data.len());
                    let unsynced = file.data.len() - len;
                    // Pages a failed sync lost were marked clean: nothing
                    // past them reaches the disk in order either.
                    let extra = if unsynced == 0 || !file.lost.is_empty() || rng.chance(1, 3) {
                        0
                    } else {
                        rng.below(unsynced as u64 + 1) as usize
                    };
                    let mut kept = file.data[..len + extra].to_vec();
                    if extra > 0 && rng.chance(1, 2) {
                        // A torn write: the last bytes that reached the
                        // platter are garbage.
                        let garbled = 1 + rng.below(extra.min(16) as u64) as usize;
                        let end = kept.len();
                        rng.fill(&mut kept[end - garbled..]);
                    }
                    kept
                }
                Durable::Bytes(bytes) => bytes.clone(),
            };
            file.synced_len = file.durable_len().min(kept.len());
            file.durable = Durable::Prefix(kept.len());
            file.data = kept;
            file.lost.clear();
        }
    }

    /// Arms `fault`: the next `skip_count` matching operations succeed,
    /// then `fail_count` fail. `seed` draws how much of a failing write
    /// lands. Replaces any fault still armed.
    pub fn arm(&self, fault: IoFault, skip_count: u32, fail_count: u32, seed: u64) {
        self.state.borrow_mut().armed = Some(Armed {
            fault,
            skip_count,
            fail_count: fail_count.max(1),
            rng: Rng::new(seed),
        });
    }

    /// Disarms any fault that has not fired yet.
    pub fn disarm(&self) {
        self.state.borrow_mut().armed = None;
    }

    /// Whether an armed fault fired since the last call: an error from the
    /// node is then expected.
    pub fn take_fired(&self) -> bool {
        std::mem::take(&mut self.state.borrow_mut().fired_count) > 0
    }

    /// Flips one random bit in the synced part of a file whose name starts
    /// with `prefix` (damage to stored data, as a bad sector or a firmware
    /// bug would do). Half the time the file is the last such name (the
    /// newest log segment for `"wal-"`) and the bit is among its last
    /// [`FLIP_TAIL_BYTES`] synced bytes, where a flip is hardest to tell
    /// from a torn write. Returns the file name and the byte's offset, or
    /// `None` if no such file has synced bytes.
    pub fn flip_durable_bit(&self, prefix: &str, rng: &mut Rng) -> Option<(String, usize)> {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let candidates: Vec<(String, u64)> = state
            .durable_names
            .iter()
            .filter(|(name, inode)| {
                name.starts_with(prefix) && state.files.get(inode).is_some_and(|f| f.synced_len > 0)
            })
            .map(|(name, inode)| (name.clone(), *inode))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let near_end = rng.chance(1, 2);
        let (name, inode) = if near_end {
            candidates[candidates.len() - 1].clone()
        } else {
            rng.pick(&candidates).clone()
        };
        let file = state.files.get_mut(&inode)?;
        let len = file.synced_len.min(file.durable_len());
        let at = if near_end {
            len - 1 - rng.below(len.min(FLIP_TAIL_BYTES) as u64) as usize
        } else {
            rng.below(len as u64) as usize
        };
        let mask = 1u8 << rng.below(8);
        // The running process reads the flipped bit too (a cached page may
        // hide it, but the next start reads from the disk).
        if let Some(byte) = file.data.get_mut(at) {
            *byte ^= mask;
        }
        if let Durable::Bytes(bytes) = &mut file.durable {
            bytes[at] ^= mask;
        }
        Some((name, at))
    }

    /// The length of a file as the running process sees it, if it exists.
    pub fn len_bytes(&self, name: &str) -> Option<usize> {
        let state = self.state.borrow();
        let inode = state.names.get(name)?;
        state.files.get(inode).map(|f| f.data.len())
    }
}

/// How close to the end of a file the aimed bit flips land.
pub const FLIP_TAIL_BYTES: usize = 64;

impl Dir for SimDisk {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.state.borrow().names.keys().cloned().collect())
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let state = self.state.borrow();
        let inode = state.names.get(name).ok_or_else(|| not_found(name))?;
        Ok(state
            .files
            .get(inode)
            .map(|f| f.data.clone())
            .unwrap_or_default())
    }

    fn write_new(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        let fault = state.write_fault(data.len());
        let kept = fault.as_ref().map_or(data.len(), |(_, kept)| *kept);
        let inode = state.next_inode;
        state.next_inode += 1;
        state.files.insert(
            inode,
            SimFile {
                data: data[..kept].to_vec(),
                durable: Durable::Prefix(0),
                lost: Vec::new(),
                synced_len: 0,
            },
        );
        state.names.insert(name.to_owned(), inode);
        match fault {
            Some((error, _)) => Err(error),
            None => Ok(()),
        }
    }

    fn append(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        let inode = *state.names.get(name).ok_or_else(|| not_found(name))?;
        let fault = state.write_fault(data.len());
        let kept = fault.as_ref().map_or(data.len(), |(_, kept)| *kept);
        if let Some(file) = state.files.get_mut(&inode) {
            file.data.extend_from_slice(&data[..kept]);
        }
        match fault {
            Some((error, _)) => Err(error),
            None => Ok(()),
        }
    }

    fn sync_data(&mut self, name: &str) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        let inode = *state.names.get(name).ok_or_else(|| not_found(name))?;
        if state.faults.ignore_log_sync && name.starts_with("wal-") {
            return Ok(());
        }
        if let Some(error) = state.sync_fault() {
            if let Some(file) = state.files.get_mut(&inode) {
                let from = file.durable_len();
                if from < file.data.len() {
                    file.lost.push((from, file.data.len()));
                }
            }
            return Err(error);
        }
        state.sync_count += 1;
        if let Some(file) = state.files.get_mut(&inode) {
            file.synced_len = file.data.len();
            file.durable = if file.lost.is_empty() {
                Durable::Prefix(file.data.len())
            } else {
                // The disk got everything but what the failed sync lost.
                let mut bytes = file.data.clone();
                for &(from, to) in &file.lost {
                    let to = to.min(bytes.len());
                    if from < to {
                        bytes[from..to].fill(0);
                    }
                }
                Durable::Bytes(bytes)
            };
        }
        Ok(())
    }

    fn truncate(&mut self, name: &str, len_bytes: u64) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        let inode = *state.names.get(name).ok_or_else(|| not_found(name))?;
        if let Some(file) = state.files.get_mut(&inode) {
            let len = (len_bytes as usize).min(file.data.len());
            if let Durable::Prefix(durable_len) = file.durable {
                if len < durable_len {
                    file.durable = Durable::Bytes(file.data[..durable_len].to_vec());
                }
            }
            file.data.truncate(len);
            file.lost.retain(|&(from, _)| from < len);
            file.synced_len = file.synced_len.min(len);
        }
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        let inode = state.names.remove(from).ok_or_else(|| not_found(from))?;
        state.names.insert(to.to_owned(), inode);
        Ok(())
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.state.borrow_mut().names.remove(name);
        Ok(())
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        state.sync_count += 1;
        state.durable_names = state.names.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_keeps_synced_bytes_and_forgets_unsynced_names() {
        // Goal: the disk model's durability rules. Method: write, sync some,
        // crash many times with different seeds, check what survives.
        for seed in 0..50 {
            let mut disk = SimDisk::new(DiskFaults::default());
            disk.write_new("a", b"synced").expect("write");
            disk.sync_data("a").expect("sync");
            disk.sync_dir().expect("sync dir");
            disk.append("a", b"-unsynced").expect("append");
            disk.write_new("b", b"never named durably").expect("write");
            disk.sync_data("b").expect("sync");
            disk.crash(&mut Rng::new(seed));
            let a = disk.read("a").expect("a survives");
            assert!(a.starts_with(b"synced"), "{a:?}");
            assert!(a.len() <= b"synced-unsynced".len());
            assert!(disk.read("b").is_err(), "b's name was never synced");
        }
    }

    #[test]
    fn truncation_is_not_durable_until_synced() {
        let mut disk = SimDisk::new(DiskFaults::default());
        disk.write_new("a", b"0123456789").expect("write");
        disk.sync_data("a").expect("sync");
        disk.sync_dir().expect("sync dir");
        disk.truncate("a", 4).expect("truncate");
        disk.crash(&mut Rng::new(1));
        assert_eq!(disk.read("a").expect("a"), b"0123456789");
    }

    #[test]
    fn a_failed_sync_loses_its_bytes_for_good() {
        // Goal: the fsyncgate model. Method: fail a sync, sync again
        // (success), crash: the bytes the failed sync covered are a hole
        // of zeros, while the running process could read them all along.
        let mut disk = SimDisk::new(DiskFaults::default());
        disk.write_new("a", b"synced|").expect("write");
        disk.sync_data("a").expect("sync");
        disk.sync_dir().expect("sync dir");
        disk.append("a", b"lost|").expect("append");
        disk.arm(IoFault::SyncEio, 0, 1, 7);
        assert!(disk.sync_data("a").is_err());
        assert!(disk.take_fired());
        assert!(!disk.take_fired());
        assert_eq!(disk.read("a").expect("a"), b"synced|lost|");
        disk.append("a", b"later").expect("append");
        disk.sync_data("a").expect("a later sync reports success");
        disk.crash(&mut Rng::new(3));
        assert_eq!(disk.read("a").expect("a"), b"synced|\0\0\0\0\0later");
    }

    #[test]
    fn a_failed_write_lands_a_prefix() {
        let mut disk = SimDisk::new(DiskFaults::default());
        disk.arm(IoFault::NoSpace, 1, 1, 9);
        disk.write_new("a", b"first").expect("skipped");
        let error = disk.append("a", b"0123456789").expect_err("ENOSPC");
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
        let a = disk.read("a").expect("a");
        assert!(a.starts_with(b"first") && a.len() <= 15, "{a:?}");
        disk.append("a", b"!").expect("the fault is gone");
    }

    #[test]
    fn a_flipped_bit_is_in_synced_data() {
        for seed in 0..20 {
            let mut disk = SimDisk::new(DiskFaults::default());
            disk.write_new("wal-a", b"synced").expect("write");
            disk.sync_data("wal-a").expect("sync");
            disk.sync_dir().expect("sync dir");
            disk.append("wal-a", b"unsynced").expect("append");
            let mut rng = Rng::new(seed);
            let (name, at) = disk.flip_durable_bit("wal-", &mut rng).expect("a flip");
            assert_eq!((name.as_str(), at < 6), ("wal-a", true));
            let a = disk.read("wal-a").expect("a");
            assert_ne!(&a[..6], b"synced");
            assert_eq!(&a[6..], b"unsynced");
        }
    }
}
