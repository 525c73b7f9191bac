//! The `initdb` template every cluster is copied from, made once per
//! PostgreSQL version and OS user.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use super::os_user::{effective_uid, OsUser};
use super::{io_err, tail, SandboxError};

/// The `initdb` template for this PostgreSQL version and OS user, made
/// once and cached under the temp dir (made aside and renamed into place, so
/// concurrent test processes never see a half-made template).
pub(super) fn template_dir(bin: &Path, major: u32, user: &OsUser) -> Result<PathBuf, SandboxError> {
    let uid = user.ids.map(|(u, _)| u).unwrap_or_else(effective_uid);
    let root = std::env::temp_dir().join(format!("herokurds-pg-template-{major}-{uid}-v1"));
    if root.join("data").join("PG_VERSION").is_file() {
        return Ok(root.join("data"));
    }
    let staging = tempfile::Builder::new()
        .prefix("herokurds-pg-template-")
        .tempdir()
        .map_err(io_err("creating the initdb template dir"))?;
    fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755))
        .map_err(io_err("opening the initdb template dir"))?;
    let data = staging.path().join("data");
    fs::create_dir(&data).map_err(io_err("creating the template data dir"))?;
    user.chown_tree(&data)?;
    let out = user
        .command(bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=reject",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "-N",
        ])
        .output()
        .map_err(io_err("running initdb"))?;
    if !out.status.success() {
        return Err(SandboxError::Failed {
            what: format!("initdb as OS user {}", user.name),
            log_tail: tail(&String::from_utf8_lossy(&out.stderr), 20),
        });
    }
    let staged = staging.keep();
    match fs::rename(&staged, &root) {
        Ok(()) => {}
        // Another process won the race: use theirs, drop ours.
        Err(_) if root.join("data").join("PG_VERSION").is_file() => {
            let _ = fs::remove_dir_all(&staged);
        }
        Err(e) => return Err(io_err("caching the initdb template")(e)),
    }
    Ok(root.join("data"))
}

pub(super) fn copy_tree(from: &Path, to: &Path) -> Result<(), SandboxError> {
    fn visit(from: &Path, to: &Path) -> io::Result<()> {
        let meta = fs::symlink_metadata(from)?;
        if meta.is_dir() {
            fs::create_dir(to)?;
            fs::set_permissions(to, meta.permissions())?;
            for e in fs::read_dir(from)? {
                let e = e?;
                visit(&e.path(), &to.join(e.file_name()))?;
            }
        } else if meta.file_type().is_symlink() {
            symlink(fs::read_link(from)?, to)?;
        } else {
            fs::copy(from, to)?;
        }
        Ok(())
    }
    visit(from, to).map_err(io_err(format!(
        "copying the initdb template to {}",
        to.display()
    )))
}
