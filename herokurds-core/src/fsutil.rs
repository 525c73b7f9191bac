//! Files and directories herokurds writes: private and atomic, in one place.
//!
//! Journals, reports, env snippets and the emulator's state describe
//! infrastructure (some hold a password), so each is written to a new
//! temporary file beside its destination, created with its final mode from
//! the first byte (no window with wider permissions), fsynced, renamed over
//! the destination and the directory fsynced: a crash leaves the old file
//! or the new one, never half of one. Directories herokurds creates are
//! 0700; a directory that already exists keeps its mode (it may be the
//! operator's project directory), except herokurds' own directories
//! ([`make_own_dir`]), which are made 0700 whatever they were.
//!
//! [`FileLock`] is the one lock against two runs writing the same state.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Owner read and write only: the mode of every file herokurds writes.
pub const PRIVATE_FILE: u32 = 0o600;

/// Owner only: the mode of every directory herokurds creates.
pub const PRIVATE_DIR: u32 = 0o700;

/// Replaces `path` with `contents` atomically, the new file having `mode`
/// (e.g. [`PRIVATE_FILE`]): a temporary file in the same directory
/// (created with `mode`, never wider), fsync, rename, fsync of the
/// directory. On failure the temporary file is removed and `path` is
/// unchanged. The parent directory must exist.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(contents)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    // Make the rename durable; a failure here leaves a correct file behind.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Creates `dir` and any missing parents with mode [`PRIVATE_DIR`];
/// directories that already exist are left as they are (their mode is
/// not changed).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)
}

/// Creates `dir` like [`create_private_dir`], then makes `dir` itself mode
/// [`PRIVATE_DIR`] even when it already existed: for directories that are
/// herokurds' own (an app's journal directory, a transfer's state), never
/// for the operator's. Parents that exist keep their mode.
pub fn make_own_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    create_private_dir(dir)?;
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is not a directory", dir.display()),
        ));
    }
    if meta.permissions().mode() & 0o7777 != PRIVATE_DIR {
        fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR))?;
    }
    Ok(())
}

/// Runs `io`, a blocking file operation (a write with its fsyncs), from
/// async code without stalling the runtime: on a multi-threaded runtime
/// through [`tokio::task::block_in_place`], so the worker's other tasks
/// move to another thread while the disk answers; elsewhere (no runtime,
/// a current-thread runtime) directly. For synchronous callers inside
/// tasks that cannot `.await` a `spawn_blocking`.
pub(crate) fn blocking_io<T>(io: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(io)
        }
        _ => io(),
    }
}

/// An exclusive `flock` on a lock file (mode 0600), held until dropped.
/// The kernel releases it when the process dies, whatever the cause, so a
/// lock is never stale. The holder writes `pid N since TIME` into the file,
/// which a refused process quotes.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

/// Why a [`FileLock`] could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another live process holds the lock.
    #[error("{path} is held by another process ({holder})")]
    Held {
        /// The lock file.
        path: PathBuf,
        /// What the holder wrote into it (`pid N since TIME`).
        holder: String,
    },
    /// The lock file could not be opened, locked or written.
    #[error("{action} lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl LockError {
    /// The holder's pid, when the lock is held and the holder wrote it.
    pub fn pid(&self) -> Option<u32> {
        match self {
            LockError::Held { holder, .. } => holder
                .strip_prefix("pid ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok(),
            LockError::Io { .. } => None,
        }
    }
}

impl FileLock {
    /// Takes the lock on `path` (creating the file, mode 0600), or fails at
    /// once: [`LockError::Held`] only when another process holds it
    /// (`EWOULDBLOCK`), [`LockError::Io`] for any other failure.
    pub fn acquire(path: &Path) -> Result<FileLock, LockError> {
        let io = |action| {
            move |source| LockError::Io {
                path: path.to_path_buf(),
                action,
                source,
            }
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE_FILE)
            .open(path)
            .map_err(io("opening"))?;
        // SAFETY: flock takes a descriptor and flags only; `file` owns the
        // descriptor and outlives the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let holder = fs::read_to_string(path).unwrap_or_default();
                return Err(LockError::Held {
                    path: path.to_path_buf(),
                    holder: holder.trim().to_string(),
                });
            }
            return Err(io("locking")(err));
        }
        file.set_len(0).map_err(io("writing"))?;
        writeln!(
            file,
            "pid {} since {}",
            std::process::id(),
            chrono::Utc::now().to_rfc3339()
        )
        .map_err(io("writing"))?;
        Ok(FileLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_replaced_file_gets_the_new_mode_and_no_temporary_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("report.md");
        fs::write(&file, "old").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&file, b"new", PRIVATE_FILE).unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "new");
        assert_eq!(mode(&file), 0o600);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("journal.json");
        // A directory in the way: the rename fails.
        fs::create_dir(&target).unwrap();
        assert!(write_atomic(&target, b"x", PRIVATE_FILE).is_err());
        assert!(target.is_dir());
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn created_directories_are_private_and_existing_ones_keep_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("project");
        fs::create_dir(&existing).unwrap();
        fs::set_permissions(&existing, fs::Permissions::from_mode(0o755)).unwrap();
        let nested = existing.join("a").join("b");
        create_private_dir(&nested).unwrap();
        create_private_dir(&existing).unwrap();
        assert_eq!(mode(&existing), 0o755);
        assert_eq!(mode(&existing.join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
    }

    #[test]
    fn an_own_directory_is_made_private_and_its_existing_parent_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("project");
        let own = project.join("app");
        fs::create_dir_all(&own).unwrap();
        for d in [&project, &own] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        make_own_dir(&own).unwrap();
        assert_eq!(mode(&own), 0o700);
        assert_eq!(mode(&project), 0o755);
        let fresh = project.join("new").join("transfer");
        make_own_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        let file = project.join("file");
        fs::write(&file, "x").unwrap();
        assert!(make_own_dir(&file).is_err());
    }

    #[test]
    fn a_held_lock_is_refused_naming_the_holders_pid_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = FileLock::acquire(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        let e = FileLock::acquire(&path).unwrap_err();
        assert_eq!(e.pid(), Some(std::process::id()));
        assert!(
            e.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        drop(first);
        FileLock::acquire(&path).unwrap();
    }

    #[test]
    fn a_lock_that_cannot_be_opened_is_an_io_error_not_held() {
        let dir = tempfile::tempdir().unwrap();
        let e = FileLock::acquire(&dir.path().join("missing").join("lock")).unwrap_err();
        assert!(
            matches!(e, LockError::Io { .. }) && e.pid().is_none(),
            "{e}"
        );
    }
}
