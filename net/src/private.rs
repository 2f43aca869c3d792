//! Files and directories only the host's own user may open.
//!
//! A host's data dir holds its identity key (whoever reads it can be this
//! peer), its processes' volumes (a Raft replica's log) and compiled ROMs
//! (native code the host will run). None of it is for other local users:
//! directories are created 0700 and files 0600, whatever the umask.

use std::fs;
use std::io;
use std::path::Path;

/// Creates `path` and any missing parents, each new one 0700. An existing
/// directory is left as it is (except the data dir; see [`tighten`]).
///
/// # Errors
///
/// The I/O error of the first component that could not be created.
pub fn create_dir(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Makes an existing directory 0700: a data dir made by an older version,
/// or by hand, would otherwise stay readable by everyone.
///
/// # Errors
///
/// When the permissions cannot be changed.
pub fn tighten(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Options that create a file 0600.
pub fn file_options() -> fs::OpenOptions {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Makes a rename or a new file in `dir` durable: without it a crash can
/// forget the name even though the file's bytes were synced.
///
/// # Errors
///
/// When the directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` (0600) atomically and durably: into a
/// temporary file beside it, synced, renamed over `path`, and the directory
/// synced, so a crash leaves the old file or the new one, never a torn or
/// forgotten one. Concurrent writers of one path each use their own
/// temporary file; the last rename wins.
///
/// # Errors
///
/// When `path` has no parent, or any step fails (the step is named).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let named = |step: &str, err: io::Error| io::Error::new(err.kind(), format!("{step}: {err}"));
    let dir = path.parent().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no parent directory", path.display()),
        )
    })?;
    create_dir(dir).map_err(|err| named(&format!("creating {}", dir.display()), err))?;
    let tmp = path.with_extension(format!("tmp.{:016x}", rand::random::<u64>()));
    let mut file = file_options()
        .open(&tmp)
        .map_err(|err| named(&format!("creating {}", tmp.display()), err))?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(err) = written {
        let _ = fs::remove_file(&tmp);
        return Err(named(&format!("writing {}", tmp.display()), err));
    }
    fs::rename(&tmp, path)
        .map_err(|err| named(&format!("renaming {} into place", tmp.display()), err))?;
    sync_dir(dir).map_err(|err| named(&format!("syncing {}", dir.display()), err))
}

#[cfg(all(test, unix))]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn directories_are_0700_and_files_0600_whatever_the_umask() {
        let root = tempfile::tempdir().expect("tempdir");
        let nested = root.path().join("a/b/c");
        create_dir(&nested).expect("create");
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        let file = nested.join("f");
        file_options()
            .open(&file)
            .and_then(|mut f| f.write_all(b"x"))
            .expect("write");
        assert_eq!(mode(&file), 0o600);
        let open = root.path().join("open");
        fs::create_dir(&open).expect("create");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).expect("chmod");
        tighten(&open).expect("tighten");
        assert_eq!(mode(&open), 0o700);
        sync_dir(&nested).expect("sync");
    }
}
