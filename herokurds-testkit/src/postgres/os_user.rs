//! The OS account a cluster's server runs as.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use super::{io_err, SandboxError};

/// The OS account the server runs as: ourselves, or `postgres` when we are
/// root (the server refuses to run as root).
pub(super) struct OsUser {
    pub(super) ids: Option<(u32, u32)>,
    pub(super) name: String,
}

impl OsUser {
    pub(super) fn current_or_postgres() -> Result<Self, SandboxError> {
        if unsafe { libc::geteuid() } != 0 {
            return Ok(OsUser {
                ids: None,
                name: std::env::var("USER").unwrap_or_else(|_| "current user".into()),
            });
        }
        let name = std::env::var("HEROKURDS_PG_OS_USER").unwrap_or_else(|_| "postgres".into());
        let cname = std::ffi::CString::new(name.clone()).expect("user name has no NUL");
        let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
        if pw.is_null() {
            return Err(SandboxError::MissingProgram {
                program: format!("OS user `{name}` (the server cannot run as root)"),
                searched: "/etc/passwd".into(),
                package: "postgresql".into(),
            });
        }
        let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
        Ok(OsUser {
            ids: Some((uid, gid)),
            name,
        })
    }

    pub(super) fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new(program.as_ref());
        if let Some((uid, gid)) = self.ids {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    pub(super) fn chown_tree(&self, path: &Path) -> Result<(), SandboxError> {
        let Some((uid, gid)) = self.ids else {
            return Ok(());
        };
        let walk = |p: &Path| std::os::unix::fs::lchown(p, Some(uid), Some(gid));
        fn visit(p: &Path, f: &dyn Fn(&Path) -> io::Result<()>) -> io::Result<()> {
            f(p)?;
            if p.is_dir() && !p.is_symlink() {
                for e in fs::read_dir(p)? {
                    visit(&e?.path(), f)?;
                }
            }
            Ok(())
        }
        visit(path, &walk).map_err(io_err(format!(
            "giving {} to OS user {}",
            path.display(),
            self.name
        )))
    }
}
