//! The work directory: what a transfer has finished, so `--resume` can
//! finish the rest, and a lock so two runs never write the same target.
//!
//! Every path lives in [`Paths`]. The journal is JSON, rewritten whole
//! (with [`crate::fsutil::write_atomic`], mode 0600) after each step that
//! finishes, so a crash leaves either the old or the new version. It holds
//! names, counts and dump ids — never a password: the source and target
//! are recorded as `user@host:port/dbname`.
//!
//! What is recorded, in order of the run: the schema archive written, the
//! pre-data restored, per table whether its rows are in (and for a table
//! copied in slices, which slices committed and which transaction was
//! committing one when the run stopped), each post-data entry run,
//! sequences set, large objects copied, and the run finished.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;

/// The journal format; a different version is not resumed. Version 2 keys
/// tables by their quoted name (version 1 used `schema.name` unquoted, so
/// `"a.b"."c"` and `"a"."b.c"` shared one entry).
const VERSION: u32 = 2;

/// The subdirectory of the work directory the transfer keeps its state in.
const STATE_DIR: &str = "transfer";

/// Every file of the transfer's work directory.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    /// `<work-dir>/transfer`.
    pub(crate) dir: PathBuf,
    /// The journal, `journal.json`.
    pub(crate) journal: PathBuf,
    /// The lock file, held with `flock` for the whole run.
    pub(crate) lock: PathBuf,
    /// The schema archive (`pg_dump --format=custom`).
    pub(crate) archive: PathBuf,
    /// The list `pg_restore --use-list` restores pre-data from.
    pub(crate) pre_data_list: PathBuf,
    /// The list the post-data SQL is generated from.
    pub(crate) post_data_list: PathBuf,
}

impl Paths {
    pub(crate) fn new(work_dir: &Path) -> Self {
        let dir = work_dir.join(STATE_DIR);
        Paths {
            journal: dir.join("journal.json"),
            lock: dir.join("lock"),
            archive: dir.join("schema.dump"),
            pre_data_list: dir.join("pre-data.list"),
            post_data_list: dir.join("post-data.list"),
            dir,
        }
    }

    /// Creates the directory and any missing parent, mode 0700 (it holds
    /// the schema). The directory is herokurds' own: an existing one is
    /// made 0700 too; parents that exist keep their mode.
    pub(crate) fn create(&self) -> io::Result<()> {
        fsutil::make_own_dir(&self.dir)
    }
}

/// One table's progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct TableState {
    /// All rows are in (committed on the target).
    pub(crate) done: bool,
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
    pub(crate) seconds: f64,
    /// For a table copied in slices: emptied before the first slice.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) truncated: bool,
    /// For a table copied in slices: the inner block boundaries, kept so
    /// a resumed run cuts the table the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) slice_bounds: Option<Vec<i64>>,
    /// Slices committed.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub(crate) slices_done: BTreeSet<u32>,
    /// Slices whose COMMIT was sent with this target transaction id: after
    /// a crash, `pg_xact_status` says whether it happened.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) committing: BTreeMap<u32, i64>,
}

/// What a transfer has finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Journal {
    pub(crate) version: u32,
    /// `user@host:port/dbname` of the source.
    pub(crate) source: String,
    /// `user@host:port/dbname` of the target.
    pub(crate) target: String,
    pub(crate) started_at: chrono::DateTime<chrono::Utc>,
    pub(crate) updated_at: chrono::DateTime<chrono::Utc>,
    /// Runs (first plus resumes) that used this journal.
    pub(crate) runs: u32,
    pub(crate) schema_dumped: bool,
    pub(crate) pre_data_done: bool,
    /// Tables by quoted name, `"schema"."name"`
    /// ([`TableInfo::qualified_name`](crate::pg::catalog::TableInfo::qualified_name)):
    /// unquoted names can collide.
    pub(crate) tables: BTreeMap<String, TableState>,
    /// Post-data TOC entries run, by dump id.
    pub(crate) post_data_done: BTreeSet<i32>,
    pub(crate) sequences_done: bool,
    pub(crate) large_objects_done: bool,
    pub(crate) finished: bool,
}

impl Journal {
    pub(crate) fn new(source: String, target: String) -> Self {
        let now = chrono::Utc::now();
        Journal {
            version: VERSION,
            source,
            target,
            started_at: now,
            updated_at: now,
            runs: 0,
            schema_dumped: false,
            pre_data_done: false,
            tables: BTreeMap::new(),
            post_data_done: BTreeSet::new(),
            sequences_done: false,
            large_objects_done: false,
            finished: false,
        }
    }

    /// Reads the journal, `None` when there is none.
    pub(crate) fn load(paths: &Paths) -> io::Result<Option<Journal>> {
        match fs::read(&paths.journal) {
            Ok(bytes) => {
                let j: Journal = serde_json::from_slice(&bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if j.version != VERSION {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "journal format version {} (this herokurds reads version {VERSION} \
                             only): finish that transfer with the herokurds that wrote it, or \
                             move {} aside to start over",
                            j.version,
                            paths.dir.display()
                        ),
                    ));
                }
                Ok(Some(j))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the journal atomically, mode 0600 ([`fsutil::write_atomic`]),
    /// off the async runtime's worker ([`fsutil::blocking_io`]).
    pub(crate) fn save(&mut self, paths: &Paths) -> io::Result<()> {
        let bytes = self.stamped_bytes()?;
        fsutil::blocking_io(|| Self::write(paths, &bytes))
    }

    /// Stamps `updated_at` and serialises the journal, for [`write`](Self::write).
    pub(crate) fn stamped_bytes(&mut self) -> io::Result<Vec<u8>> {
        self.updated_at = chrono::Utc::now();
        serde_json::to_vec_pretty(self).map_err(io::Error::other)
    }

    /// Writes serialised journal bytes atomically, mode 0600 (blocking:
    /// async callers wrap it in [`fsutil::blocking_io`]).
    pub(crate) fn write(paths: &Paths, bytes: &[u8]) -> io::Result<()> {
        fsutil::write_atomic(&paths.journal, bytes, fsutil::PRIVATE_FILE)
    }

    /// Deletes the journal and everything derived from the archive.
    pub(crate) fn remove(paths: &Paths) -> io::Result<()> {
        for p in [
            &paths.journal,
            &paths.archive,
            &paths.pre_data_list,
            &paths.post_data_list,
        ] {
            match fs::remove_file(p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// The state of the table whose quoted name is `key`.
    pub(crate) fn table(&mut self, key: &str) -> &mut TableState {
        self.tables.entry(key.to_string()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_existing_state_directory_is_made_private_and_the_work_dir_keeps_its_mode() {
        let work = tempfile::tempdir().unwrap();
        fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let paths = Paths::new(work.path());
        fs::create_dir(&paths.dir).unwrap();
        fs::set_permissions(&paths.dir, fs::Permissions::from_mode(0o755)).unwrap();
        paths.create().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&paths.dir), 0o700);
        assert_eq!(mode(work.path()), 0o755);
    }

    #[test]
    fn journal_round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        paths.create().unwrap();
        assert!(Journal::load(&paths).unwrap().is_none());
        let mut j = Journal::new("u@h:5432/src".into(), "v@h:5432/tgt".into());
        j.table(r#""public"."t""#).done = true;
        let s = j.table(r#""public"."big""#);
        s.slice_bounds = Some(vec![10, 20, 30]);
        s.slices_done.insert(2);
        s.committing.insert(3, 778);
        j.post_data_done.insert(3210);
        j.save(&paths).unwrap();
        let back = Journal::load(&paths).unwrap().unwrap();
        assert_eq!(back, j);
        let names: Vec<_> = fs::read_dir(&paths.dir).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file stays: {names:?}");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&paths.dir), 0o700);
        assert_eq!(mode(&paths.journal), 0o600);
        Journal::remove(&paths).unwrap();
        assert!(Journal::load(&paths).unwrap().is_none());
    }

    #[test]
    fn a_journal_of_another_format_version_is_refused_naming_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        paths.create().unwrap();
        let mut j = Journal::new("u@h:5432/src".into(), "v@h:5432/tgt".into());
        j.version = 1;
        j.save(&paths).unwrap();
        let e = Journal::load(&paths).unwrap_err().to_string();
        assert!(
            e.contains("version 1") && e.contains("reads version 2") && e.contains("aside"),
            "{e}"
        );
    }

    #[test]
    fn the_runbook_transfer_state_lands_once_under_the_app_dir_not_in_transfer_transfer() {
        let dir = crate::runbook::WorkDir::new("/srv/state");
        let paths = Paths::new(&dir.transfer_work_dir("app-one"));
        assert_eq!(paths.dir, dir.transfer("app-one"));
        assert_eq!(paths.dir, Path::new("/srv/state/app-one/transfer"));
        assert_eq!(
            paths.journal,
            Path::new("/srv/state/app-one/transfer/journal.json")
        );
        assert_eq!(
            dir.report("app-one", "md"),
            Path::new("/srv/state/app-one/report.md")
        );
        assert_eq!(
            dir.journal("app-one"),
            Path::new("/srv/state/app-one.journal.json")
        );
    }

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        paths.create().unwrap();
        let first = fsutil::FileLock::acquire(&paths.lock).unwrap();
        let e = fsutil::FileLock::acquire(&paths.lock).unwrap_err();
        assert_eq!(e.pid(), Some(std::process::id()), "{e}");
        drop(first);
        fsutil::FileLock::acquire(&paths.lock).unwrap();
    }
}
