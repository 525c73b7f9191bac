//! Finding `pg_dump` and `pg_restore` of a major version that can read the
//! source server.
//!
//! `pg_dump` refuses servers newer than itself ("server version mismatch"),
//! and it says so only when it runs; the preflight asks first. Where they
//! are looked for is [`crate::pg::binaries`]: an explicit directory if
//! given, else `PATH`, then the newest `/usr/lib/postgresql/*/bin`.

use std::path::{Path, PathBuf};
use tokio::process::Command;

use crate::pg::binaries::{self, BinariesError};

/// The pair of client tools the schema steps run.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    pub(crate) pg_dump: PathBuf,
    pub(crate) pg_restore: PathBuf,
    /// `pg_dump --version`'s major version (9.6 is 9).
    pub(crate) major: u32,
    /// `pg_dump --version`'s whole version, e.g. `15.18`.
    pub(crate) version: String,
}

/// What the search found when no suitable pair exists.
#[derive(Debug, Clone)]
pub(crate) enum ToolsProblem {
    /// No `pg_dump` (with a `pg_restore` next to it) anywhere searched.
    Missing { searched: String },
    /// Only versions older than the server's were found.
    TooOld {
        found: Vec<(PathBuf, String)>,
        needed: u32,
    },
}

/// Parses `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` into
/// `(15, "15.18")`; `9.6.24` gives `(9, "9.6.24")`.
pub(crate) fn parse_version(output: &str) -> Option<(u32, String)> {
    let version = output
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?
        .trim_end_matches(|c: char| !c.is_ascii_digit());
    let major = version
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some((major, version.to_string()))
}

/// Asks `dir`'s `pg_dump` its version (a child process, awaited: the
/// runtime keeps serving other tasks meanwhile).
async fn probe(dir: &Path) -> Option<Tools> {
    let pg_dump = dir.join("pg_dump");
    let pg_restore = dir.join("pg_restore");
    if !pg_dump.is_file() || !pg_restore.is_file() {
        return None;
    }
    let out = Command::new(&pg_dump)
        .arg("--version")
        .kill_on_drop(true)
        .output()
        .await
        .ok()?;
    let (major, version) = parse_version(&String::from_utf8_lossy(&out.stdout))?;
    Some(Tools {
        pg_dump,
        pg_restore,
        major,
        version,
    })
}

/// Finds a `pg_dump`/`pg_restore` pair whose major version is at least
/// `server_major`: the first suitable one in [`crate::pg::binaries`]'
/// search order.
pub(crate) async fn find(
    explicit: Option<&Path>,
    server_major: u32,
) -> Result<Tools, ToolsProblem> {
    let dirs = binaries::search(explicit, &["pg_dump", "pg_restore"]).map_err(|e| {
        let searched = match e {
            BinariesError::NotInDir { dir, .. } => dir.display().to_string(),
            BinariesError::NotFound { versions_root, .. } => {
                format!("PATH, {}/*/bin", versions_root.display())
            }
        };
        ToolsProblem::Missing { searched }
    })?;
    let mut found: Vec<Tools> = Vec::new();
    for d in &dirs {
        found.extend(probe(d).await);
    }
    if let Some(t) = found.iter().find(|t| t.major >= server_major) {
        return Ok(t.clone());
    }
    if found.is_empty() {
        let searched = match explicit {
            Some(d) => d.display().to_string(),
            None => "PATH, /usr/lib/postgresql/*/bin".to_string(),
        };
        return Err(ToolsProblem::Missing { searched });
    }
    Err(ToolsProblem::TooOld {
        found: found.into_iter().map(|t| (t.pg_dump, t.version)).collect(),
        needed: server_major,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_debian_and_old_outputs() {
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some((15, "15.18".to_string()))
        );
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 9.6.24"),
            Some((9, "9.6.24".to_string()))
        );
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 17devel"),
            Some((17, "17".to_string()))
        );
        assert_eq!(parse_version("no digits here"), None);
    }

    #[tokio::test]
    async fn an_explicit_directory_is_the_only_one_searched() {
        let dir = tempfile::tempdir().unwrap();
        match find(Some(dir.path()), 15).await {
            Err(ToolsProblem::Missing { searched }) => {
                assert_eq!(searched, dir.path().display().to_string())
            }
            other => panic!("{other:?}"),
        }
    }

    /// `pg_dump --version` was spawned with std's Command: the runtime's
    /// thread stood still until it answered.
    #[tokio::test(flavor = "current_thread")]
    async fn asking_pg_dump_its_version_does_not_stall_the_runtime() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = "#!/bin/sh\nsleep 0.6\necho 'pg_dump (PostgreSQL) 15.18'\n";
        for tool in ["pg_dump", "pg_restore"] {
            let path = dir.path().join(tool);
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        let tools = find(Some(dir.path()), 15).await.unwrap();
        ticker.abort();
        assert_eq!(tools.version, "15.18");
        let n = ticks.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            n >= 10,
            "the runtime ran other tasks only {n} times in 0.6 s"
        );
    }
}
