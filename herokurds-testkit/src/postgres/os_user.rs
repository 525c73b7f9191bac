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
        if effective_uid() != 0 {
            return Ok(OsUser {
                ids: None,
                name: std::env::var("USER").unwrap_or_else(|_| "current user".into()),
            });
        }
        let name = std::env::var("HEROKURDS_PG_OS_USER").unwrap_or_else(|_| "postgres".into());
        let ids = user_ids(&name).map_err(io_err(format!("looking up OS user `{name}`")))?;
        let Some(ids) = ids else {
            return Err(SandboxError::MissingProgram {
                program: format!("OS user `{name}` (the server cannot run as root)"),
                searched: "/etc/passwd".into(),
                package: "postgresql".into(),
            });
        };
        Ok(OsUser {
            ids: Some(ids),
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

/// This process's effective user id.
pub(super) fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) takes nothing, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

/// The uid and gid of the OS user `name`, or `None` when there is no such
/// user. Uses the reentrant `getpwnam_r`: tests start clusters from many
/// threads, and `getpwnam`'s static buffer is shared by all of them.
fn user_ids(name: &str) -> io::Result<Option<(u32, u32)>> {
    let cname = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the user name"))?;
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: `passwd` is plain data (integers and pointers), for which
        // all zeroes is a valid value; getpwnam_r overwrites it.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: `cname` is NUL-terminated; `entry` and `found` are live
        // locals; `buf` is writable for `buf.len()` bytes. The strings
        // getpwnam_r stores point into `buf`, and we read only the ids.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut entry,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        match rc {
            0 if found.is_null() => return Ok(None),
            0 => return Ok(Some((entry.pw_uid, entry.pw_gid))),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            // Some libcs report "no such user" as an error number.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            errno => return Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_finds_root_and_not_a_made_up_user() {
        assert_eq!(user_ids("root").unwrap(), Some((0, 0)));
        assert_eq!(user_ids("herokurds-no-such-user").unwrap(), None);
    }
}
