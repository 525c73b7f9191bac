//! The env snippet: a file that `source` turns into `export DATABASE_URL=...`.
//!
//! It holds a password, so it is created with mode 0600 from the first byte
//! (no window with wider permissions) and replaces any previous file
//! atomically (temporary file in the same directory, then rename), so a
//! reader sees the old snippet or the new one, never half of one.

use std::io;
use std::path::{Path, PathBuf};

use super::DatabaseUrl;

/// Why the env snippet could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvFileError {
    /// The variable name is not a shell identifier.
    #[error(
        "{name:?} is not a shell variable name (letters, digits and _, not starting with a digit)"
    )]
    InvalidVarName {
        /// The name as given.
        name: String,
    },
    /// Creating, writing or renaming the file failed.
    #[error("cannot write the env snippet {}: {source}", path.display())]
    Io {
        /// The file that failed (the snippet or its temporary file).
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// Quotes `s` for a POSIX shell: inside single quotes, each `'` becomes `'\''`.
///
/// `sh -c "printf %s $(shell_single_quote(s))"` prints exactly `s`, whatever
/// it contains (`$`, backslashes, newlines, quotes).
pub fn shell_single_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Writes `export VAR='URL'` (the full URL, password included) to `path`,
/// mode 0600, atomically replacing any existing file.
///
/// `source path` in bash or sh then sets `VAR` to exactly
/// [`DatabaseUrl::expose_url`].
pub fn write_env_snippet(
    path: &Path,
    var_name: &str,
    url: &DatabaseUrl,
) -> Result<(), EnvFileError> {
    let valid_name = var_name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && var_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(EnvFileError::InvalidVarName {
            name: var_name.to_string(),
        });
    }
    let text = format!(
        "# written by herokurds: holds a database password, keep it private\n\
         export {var_name}={}\n",
        shell_single_quote(&url.expose_url())
    );
    crate::fsutil::write_atomic(path, text.as_bytes(), crate::fsutil::PRIVATE_FILE).map_err(
        |source| EnvFileError::Io {
            path: path.to_path_buf(),
            source,
        },
    )
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    use super::*;

    /// What bash prints for `$VAR` after sourcing `file`.
    fn source_in(shell: &str, file: &Path, var: &str) -> String {
        let out = Command::new(shell)
            .arg("-c")
            .arg(format!(". \"$1\" && printf %s \"${var}\""))
            .arg(shell)
            .arg(file)
            .output()
            .expect("run shell");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn quoting_survives_every_awkward_character() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("q.sh");
        for s in [
            "it's",
            "'",
            "''",
            "$HOME `id` $(id)",
            r"back\slash\\",
            "new\nline\n",
            "tab\tand \"dq\"",
            "é 😀 !*?[a]",
        ] {
            fs::write(&file, format!("V={}\n", shell_single_quote(s))).unwrap();
            for shell in ["bash", "sh"] {
                assert_eq!(source_in(shell, &file, "V"), s, "{shell}: {s:?}");
            }
        }
    }

    #[test]
    fn snippet_is_private_and_sources_to_the_exact_url() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db.env");
        fs::write(&file, "old").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        for password in ["it's", "$x\\y", "line\nbreak", "@:/?#%[] é"] {
            let url = DatabaseUrl::builder()
                .user("o'neil")
                .password(password.into())
                .host("db.example.com")
                .dbname("app's db")
                .build()
                .unwrap();
            write_env_snippet(&file, "DATABASE_URL", &url).unwrap();
            let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let sourced = source_in("bash", &file, "DATABASE_URL");
            assert_eq!(sourced, url.expose_url());
            assert_eq!(sourced.parse::<DatabaseUrl>().unwrap(), url);
        }
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
    }

    #[test]
    fn bad_variable_names_are_refused() {
        let url: DatabaseUrl = "postgres://u:p@h/d".parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        for name in ["", "1X", "A-B", "A B", "X;rm"] {
            let err = write_env_snippet(&dir.path().join("f"), name, &url).unwrap_err();
            assert!(matches!(err, EnvFileError::InvalidVarName { .. }), "{name}");
        }
    }

    #[test]
    fn a_missing_directory_is_named() {
        let url: DatabaseUrl = "postgres://u:p@h/d".parse().unwrap();
        let err = write_env_snippet(Path::new("/nonexistent-dir/x.env"), "DATABASE_URL", &url)
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/"), "{err}");
        assert!(!err.to_string().contains("p@h"));
    }
}
