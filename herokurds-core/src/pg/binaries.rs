//! Where PostgreSQL's programs are: one search for every caller.
//!
//! The transfer needs `pg_dump` and `pg_restore`; the test kit needs
//! `initdb`, `postgres` and `psql`. Both look in the same places, in the
//! same order: a directory the caller names (a flag, an environment
//! variable) and nothing else when given; else where each program found on
//! `PATH` really lives (symlinks resolved; Debian's `pg_wrapper`, which
//! picks a version by itself, skipped); then `/usr/lib/postgresql/*/bin`,
//! newest major version first (where Debian's packages put several
//! versions side by side). A directory counts only if it holds every
//! program asked for.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Where Debian installs each PostgreSQL major version (`<root>/<N>/bin`).
pub const VERSIONS_ROOT: &str = "/usr/lib/postgresql";

/// Why no directory holds the programs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BinariesError {
    /// The directory the caller named lacks a program; nothing else was
    /// searched.
    #[error("{program} not found in {}", dir.display())]
    NotInDir {
        /// The first program missing.
        program: String,
        /// The directory named.
        dir: PathBuf,
    },
    /// Neither `PATH` nor `<versions_root>/*/bin` holds all the programs.
    #[error("{program} not found (searched PATH and {}/*/bin)", versions_root.display())]
    NotFound {
        /// The first program asked for.
        program: String,
        /// The versions root searched (normally [`VERSIONS_ROOT`]).
        versions_root: PathBuf,
    },
}

/// Every directory holding all of `programs`, in search order (see the
/// module's documentation): `explicit` alone when given, else `PATH`, then
/// [`VERSIONS_ROOT`], newest first. Never empty when `Ok`.
///
/// # Panics
/// When `programs` is empty.
pub fn search(explicit: Option<&Path>, programs: &[&str]) -> Result<Vec<PathBuf>, BinariesError> {
    search_in(
        explicit,
        programs,
        std::env::var_os("PATH").as_deref(),
        Path::new(VERSIONS_ROOT),
    )
}

/// [`search`] with `PATH` and the versions root given.
///
/// # Panics
/// When `programs` is empty.
pub fn search_in(
    explicit: Option<&Path>,
    programs: &[&str],
    path: Option<&OsStr>,
    versions_root: &Path,
) -> Result<Vec<PathBuf>, BinariesError> {
    let first = *programs.first().expect("at least one program to look for");
    let missing = |dir: &Path| programs.iter().find(|p| !dir.join(p).is_file());
    if let Some(dir) = explicit {
        return match missing(dir) {
            None => Ok(vec![dir.to_path_buf()]),
            Some(program) => Err(BinariesError::NotInDir {
                program: program.to_string(),
                dir: dir.to_path_buf(),
            }),
        };
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    for d in std::env::split_paths(path.unwrap_or_default()) {
        let Ok(real) = std::fs::canonicalize(d.join(first)) else {
            continue;
        };
        if real.file_name().is_some_and(|n| n == "pg_wrapper") {
            continue;
        }
        if let Some(parent) = real.parent() {
            dirs.push(parent.to_path_buf());
        }
    }
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir(versions_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
    dirs.extend(versioned.into_iter().map(|(_, d)| d));
    let mut found: Vec<PathBuf> = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    for d in dirs {
        let real = std::fs::canonicalize(&d).unwrap_or_else(|_| d.clone());
        if missing(&d).is_none() && !seen.contains(&real) {
            seen.push(real);
            found.push(d);
        }
    }
    if found.is_empty() {
        return Err(BinariesError::NotFound {
            program: first.to_string(),
            versions_root: versions_root.to_path_buf(),
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bin(dir: &Path, programs: &[&str]) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        for p in programs {
            std::fs::write(dir.join(p), "").unwrap();
        }
        dir.to_path_buf()
    }

    #[test]
    fn pg_wrapper_is_skipped_and_each_directory_listed_once() {
        let root = tempfile::tempdir().unwrap();
        let v15 = fake_bin(&root.path().join("15/bin"), &["pg_dump", "pg_restore"]);
        let v13 = fake_bin(&root.path().join("13/bin"), &["pg_dump", "pg_restore"]);
        // Debian: /usr/bin/pg_dump -> ../share/postgresql-common/pg_wrapper.
        let wrapper = fake_bin(&root.path().join("common"), &["pg_wrapper"]);
        let usr_bin = root.path().join("usr-bin");
        std::fs::create_dir(&usr_bin).unwrap();
        std::os::unix::fs::symlink(wrapper.join("pg_wrapper"), usr_bin.join("pg_dump")).unwrap();
        // A link to the 13 binaries on PATH comes before the newest version.
        let linked = root.path().join("linked");
        std::fs::create_dir(&linked).unwrap();
        std::os::unix::fs::symlink(v13.join("pg_dump"), linked.join("pg_dump")).unwrap();
        let path = std::env::join_paths([&usr_bin, &linked]).unwrap();
        let versions = root.path();
        let found = search_in(None, &["pg_dump", "pg_restore"], Some(&path), versions).unwrap();
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(canon(&found[0]), canon(&v13));
        assert_eq!(found[1], v15);
        assert_eq!(
            search_in(None, &["initdb"], Some(&path), versions),
            Err(BinariesError::NotFound {
                program: "initdb".into(),
                versions_root: versions.to_path_buf()
            })
        );
    }
}
