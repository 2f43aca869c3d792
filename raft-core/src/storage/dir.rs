//! The directory a replica keeps its files in.
//!
//! Storage reaches the disk only through [`Dir`], so the same code runs on
//! `std::fs` (natively and in a WASI preopened directory) and on the
//! simulator's disk, which keeps written bytes apart from synced bytes.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// A flat directory of named files, with explicit durability points.
///
/// # Durability contract
///
/// - Bytes written by [`Dir::append`] or [`Dir::write_new`] survive a crash
///   only after [`Dir::sync_data`] on that file returned.
/// - Creating, renaming or removing a file survives a crash only after
///   [`Dir::sync_dir`] returned.
/// - A crash may keep any prefix of the unsynced bytes of a file, possibly
///   with the last bytes garbled (a torn write). Storage must cope. It
///   relies on the prefix: a frame whose last bytes landed intact is taken
///   as written whole, so a device that persists the end of a write before
///   its middle makes recovery refuse to start after a crash (never lose
///   data).
///
/// Names are plain file names, without separators.
pub trait Dir {
    /// The names of the files in the directory, in any order.
    ///
    /// # Errors
    ///
    /// Any I/O error from the directory listing.
    fn list(&self) -> io::Result<Vec<String>>;

    /// The whole content of a file.
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no such file, or any I/O error.
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;

    /// Creates `name` (truncating any existing file) with `data`, unsynced.
    ///
    /// # Errors
    ///
    /// Any I/O error.
    fn write_new(&mut self, name: &str, data: &[u8]) -> io::Result<()>;

    /// Appends `data` to the end of an existing file, unsynced, in a single
    /// write call.
    ///
    /// # Errors
    ///
    /// Any I/O error; the file may then hold any prefix of `data`.
    fn append(&mut self, name: &str, data: &[u8]) -> io::Result<()>;

    /// Makes the file's content durable (`fdatasync`).
    ///
    /// # Errors
    ///
    /// Any I/O error. After a failed sync the file's durable content is
    /// unknown, and its unsynced bytes may stay readable without ever
    /// reaching the disk, even after a later sync reports success
    /// (fsyncgate). Storage stops; recovery copies what it keeps into a new
    /// file and syncs that.
    fn sync_data(&mut self, name: &str) -> io::Result<()>;

    /// Shortens a file to `len_bytes`, unsynced.
    ///
    /// # Errors
    ///
    /// Any I/O error.
    fn truncate(&mut self, name: &str, len_bytes: u64) -> io::Result<()>;

    /// Atomically replaces `to` with `from`.
    ///
    /// # Errors
    ///
    /// Any I/O error.
    fn rename(&mut self, from: &str, to: &str) -> io::Result<()>;

    /// Removes a file; removing a missing file is not an error.
    ///
    /// # Errors
    ///
    /// Any other I/O error.
    fn remove(&mut self, name: &str) -> io::Result<()>;

    /// Makes creations, renames and removals durable (fsync of the
    /// directory).
    ///
    /// # Errors
    ///
    /// Any I/O error.
    fn sync_dir(&mut self) -> io::Result<()>;
}

/// A [`Dir`] on the real file system through `std::fs`.
///
/// Works natively and inside a `wasm32-wasip2` guest, where the path is in a
/// directory the host preopened (there, `sync_data` and the directory sync
/// both reach the host as an `fsync`). Appended files stay open between
/// calls, so a Ready costs one `write` and one `fdatasync`, not an open.
#[derive(Debug)]
pub struct FsDir {
    path: PathBuf,
    /// Files kept open for appending, by name. Bounded: storage appends to
    /// one active segment at a time, and entries are dropped on rename and
    /// remove.
    open_files: BTreeMap<String, File>,
}

/// Files kept open at most; older handles are closed first.
const OPEN_FILES_MAX_COUNT: usize = 4;

impl FsDir {
    /// Uses the directory at `path`, creating it if needed.
    ///
    /// # Errors
    ///
    /// Any I/O error from creating the directory.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        fs::create_dir_all(&path)?;
        Ok(Self {
            path,
            open_files: BTreeMap::new(),
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&mut self, name: &str) -> io::Result<&mut File> {
        if !self.open_files.contains_key(name) {
            if self.open_files.len() >= OPEN_FILES_MAX_COUNT {
                // Closing without a sync loses nothing: durability comes
                // from `sync_data`, which reopens the file if needed.
                self.open_files.pop_first();
            }
            let file = OpenOptions::new().append(true).open(self.path.join(name))?;
            self.open_files.insert(name.to_owned(), file);
        }
        self.open_files
            .get_mut(name)
            .ok_or_else(|| io::Error::other("open file vanished"))
    }
}

impl Dir for FsDir {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.path)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
        }
        Ok(names)
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        File::open(self.path.join(name))?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn write_new(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        self.open_files.remove(name);
        let mut file = File::create(self.path.join(name))?;
        file.write_all(data)?;
        Ok(())
    }

    fn append(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        self.file(name)?.write_all(data)
    }

    fn sync_data(&mut self, name: &str) -> io::Result<()> {
        self.file(name)?.sync_data()
    }

    fn truncate(&mut self, name: &str, len_bytes: u64) -> io::Result<()> {
        self.open_files.remove(name);
        OpenOptions::new()
            .write(true)
            .open(self.path.join(name))?
            .set_len(len_bytes)
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        self.open_files.remove(from);
        self.open_files.remove(to);
        fs::rename(self.path.join(from), self.path.join(to))
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.open_files.remove(name);
        match fs::remove_file(self.path.join(name)) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        File::open(&self.path)?.sync_all()
    }
}
