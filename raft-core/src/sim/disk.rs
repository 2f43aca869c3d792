//! A simulated disk that keeps written bytes apart from synced bytes.
//!
//! Each replica gets a [`SimDisk`]; the simulator keeps another handle to
//! the same state to crash it. A crash keeps, for every file, its synced
//! content plus a random prefix of what was written after the last sync,
//! sometimes with the last bytes garbled (a torn write); and it forgets
//! creations, renames and removals not made durable by a directory sync.

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
                    let extra = if unsynced == 0 || rng.chance(1, 3) {
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
            file.durable = Durable::Prefix(kept.len());
            file.data = kept;
        }
    }

    /// Flips one random bit in a synced part of a random file whose name
    /// starts with `prefix`, for corruption tests. Returns the file name.
    pub fn flip_durable_bit(&self, prefix: &str, rng: &mut Rng) -> Option<String> {
        let mut state = self.state.borrow_mut();
        let candidates: Vec<(String, u64)> = state
            .names
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, inode)| (name.clone(), *inode))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (name, inode) = rng.pick(&candidates).clone();
        let file = state.files.get_mut(&inode)?;
        if file.data.is_empty() {
            return None;
        }
        let at = rng.below(file.data.len() as u64) as usize;
        file.data[at] ^= 1 << rng.below(8);
        if let Durable::Bytes(bytes) = &mut file.durable {
            if at < bytes.len() {
                bytes[at] ^= 1;
            }
        }
        Some(name)
    }
}

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
        let inode = state.next_inode;
        state.next_inode += 1;
        state.files.insert(
            inode,
            SimFile {
                data: data.to_vec(),
                durable: Durable::Prefix(0),
            },
        );
        state.names.insert(name.to_owned(), inode);
        Ok(())
    }

    fn append(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        let inode = *state.names.get(name).ok_or_else(|| not_found(name))?;
        if let Some(file) = state.files.get_mut(&inode) {
            file.data.extend_from_slice(data);
        }
        Ok(())
    }

    fn sync_data(&mut self, name: &str) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        let inode = *state.names.get(name).ok_or_else(|| not_found(name))?;
        if state.faults.ignore_log_sync && name.starts_with("wal-") {
            return Ok(());
        }
        state.sync_count += 1;
        if let Some(file) = state.files.get_mut(&inode) {
            file.durable = Durable::Prefix(file.data.len());
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
}
