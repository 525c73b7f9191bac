//! Which PostgreSQL server binaries a cluster runs, and their version.

use std::path::{Path, PathBuf};
use std::process::Command;

use herokurds_core::pg::binaries::{self, BinariesError};

use super::{io_err, SandboxError};

/// Where the PostgreSQL server binaries are: `HEROKURDS_PGBIN` (unless
/// empty), else herokurds' one search ([`herokurds_core::pg::binaries`]):
/// the directory of `initdb` on `PATH`, then the newest
/// `/usr/lib/postgresql/*/bin`.
pub(super) fn find_pg_bin() -> Result<PathBuf, SandboxError> {
    find_pg_bin_in(
        std::env::var_os("HEROKURDS_PGBIN")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
        std::env::var_os("PATH"),
        Path::new(binaries::VERSIONS_ROOT),
    )
}

/// [`find_pg_bin`] with its three places given. A `HEROKURDS_PGBIN` that
/// lacks the binaries is an error naming it, not a silent fall-back to
/// another version.
fn find_pg_bin_in(
    pgbin: Option<PathBuf>,
    path: Option<std::ffi::OsString>,
    versions_root: &Path,
) -> Result<PathBuf, SandboxError> {
    const PROGRAMS: [&str; 3] = ["initdb", "postgres", "psql"];
    match binaries::search_in(pgbin.as_deref(), &PROGRAMS, path.as_deref(), versions_root) {
        Ok(dirs) => Ok(dirs.into_iter().next().expect("search finds one or fails")),
        Err(BinariesError::NotInDir { program, dir }) => Err(SandboxError::MissingProgram {
            program,
            searched: format!(
                "HEROKURDS_PGBIN={}; unset it to search PATH and {}/*/bin",
                dir.display(),
                versions_root.display()
            ),
            package: "postgresql".into(),
        }),
        Err(_) => Err(SandboxError::MissingProgram {
            program: "initdb".into(),
            searched: format!(
                "HEROKURDS_PGBIN unset, PATH, {}/*/bin",
                versions_root.display()
            ),
            package: "postgresql".into(),
        }),
    }
}

pub(super) fn server_major(bin: &Path) -> Result<u32, SandboxError> {
    let out = Command::new(bin.join("postgres"))
        .arg("--version")
        .output()
        .map_err(io_err("running postgres --version"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.split('.').next()?.parse().ok())
        .ok_or_else(|| SandboxError::Failed {
            what: "reading the server version".into(),
            log_tail: text.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// A directory with empty files named like the server binaries.
    fn fake_bin(dir: &Path, programs: &[&str]) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        for p in programs {
            fs::write(dir.join(p), "").unwrap();
        }
        dir.to_path_buf()
    }

    #[test]
    fn a_pgbin_without_the_binaries_is_named_not_skipped() {
        let root = tempfile::tempdir().unwrap();
        fake_bin(&root.path().join("15/bin"), &["initdb", "postgres", "psql"]);
        let wrong = fake_bin(&root.path().join("wrong"), &["initdb", "psql"]);
        let err = find_pg_bin_in(Some(wrong.clone()), None, root.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("postgres not found"), "{text}");
        assert!(
            text.contains(&format!("HEROKURDS_PGBIN={}", wrong.display())),
            "{text}"
        );
        assert!(text.contains("`postgresql`"), "{text}");
        let right = root.path().join("15/bin");
        assert_eq!(
            find_pg_bin_in(Some(right.clone()), None, root.path()).unwrap(),
            right
        );
    }

    #[test]
    fn path_then_the_newest_installed_version() {
        let root = tempfile::tempdir().unwrap();
        let all = ["initdb", "postgres", "psql"];
        for v in ["9", "14", "16"] {
            fake_bin(&root.path().join(v).join("bin"), &all);
        }
        fake_bin(&root.path().join("17/bin"), &["initdb"]); // incomplete
        let newest = find_pg_bin_in(None, None, root.path()).unwrap();
        assert_eq!(newest, root.path().join("16/bin"));

        let on_path = fake_bin(&root.path().join("custom"), &all);
        let path = std::env::join_paths([root.path().join("nothing"), on_path.clone()]).unwrap();
        let found = find_pg_bin_in(None, Some(path), root.path()).unwrap();
        assert_eq!(found, fs::canonicalize(on_path).unwrap());
    }

    #[test]
    fn nothing_installed_names_every_place_searched_and_the_package() {
        let root = tempfile::tempdir().unwrap();
        let err = find_pg_bin_in(None, Some("".into()), root.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("initdb not found"), "{text}");
        assert!(text.contains("PATH"), "{text}");
        assert!(
            text.contains(&format!("{}/*/bin", root.path().display())),
            "{text}"
        );
        assert!(
            text.contains("install the Debian package `postgresql`"),
            "{text}"
        );
    }
}
