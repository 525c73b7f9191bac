//! What can stop a transfer, each naming its object and what to do.

use std::fmt;
use std::path::PathBuf;

/// Which database: of a transfer, a verification, a runbook step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The database copied from (Heroku).
    Source,
    /// The database copied into (RDS).
    Target,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
        })
    }
}

/// A reason the preflight refuses to start. All of them are reported at
/// once, before anything is written to the target.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PreflightProblem {
    /// A session is not encrypted although its URL does not allow
    /// plaintext (`sslmode=disable`, `allow` or `prefer` written in it).
    #[error(
        "the {side} connection is not encrypted although its URL does not allow plaintext: \
         refusing to copy over it"
    )]
    NotEncrypted {
        /// Which database.
        side: Side,
    },
    /// No `pg_dump`/`pg_restore` pair was found.
    #[error(
        "pg_dump and pg_restore not found (searched {searched}); install the Debian package \
         `{package}`, or name the PostgreSQL bin directory that holds both"
    )]
    ToolsMissing {
        /// Where they were looked for.
        searched: String,
        /// The package that provides a suitable version.
        package: String,
    },
    /// Only a `pg_dump` older than the source server was found.
    #[error(
        "pg_dump {found} cannot dump a PostgreSQL {needed} server (it needs pg_dump {needed} or newer); \
         install the Debian package `{package}`, or name a PostgreSQL bin directory that holds \
         pg_dump and pg_restore {needed} or newer"
    )]
    ToolsTooOld {
        /// The versions found, with their paths.
        found: String,
        /// The source server's major version.
        needed: u32,
        /// The package to install.
        package: String,
    },
    /// The target already holds tables.
    #[error(
        "the target database already holds {count} table(s) ({examples}); copy into an empty \
         database, or resume the interrupted transfer into this one"
    )]
    TargetNotEmpty {
        /// How many tables.
        count: usize,
        /// A few of them.
        examples: String,
    },
    /// An extension of the source is not installed on the target server.
    #[error(
        "extension {name} (schema {schema}) is not available on the target server; \
         install it there, or exclude extension {name} from the transfer"
    )]
    ExtensionUnavailable {
        /// The extension.
        name: String,
        /// Its schema on the source.
        schema: String,
    },
    /// An extension the target user may not create.
    #[error(
        "extension {name} (schema {schema}) cannot be created by target user {user}: {why}; \
         exclude extension {name} from the transfer (or create it on the target beforehand as a superuser)"
    )]
    ExtensionNotCreatable {
        /// The extension.
        name: String,
        /// Its schema on the source.
        schema: String,
        /// The target user.
        user: String,
        /// Why not.
        why: String,
    },
    /// Row-level security would hide rows of these tables from the source user.
    #[error(
        "row-level security would hide rows of {tables} from source user {user} (FORCE ROW LEVEL SECURITY \
         applies to the table owner): for the transfer, run `ALTER TABLE ... NO FORCE ROW LEVEL SECURITY` \
         on each (and FORCE again afterwards), or connect as a role with BYPASSRLS"
    )]
    RowSecurity {
        /// The tables, `schema.name`.
        tables: String,
        /// The source user.
        user: String,
    },
    /// The source user may not read these tables.
    #[error("source user {user} may not SELECT from {tables}: grant it, or connect as the tables' owner")]
    Unreadable {
        /// The tables, `schema.name`.
        tables: String,
        /// The source user.
        user: String,
    },
}

/// Why a transfer stopped.
///
/// Messages name the table, index, sequence or file involved; they never
/// contain a password. A transfer stopped by any of these can be finished
/// with [`ResumeMode::Resume`](super::ResumeMode::Resume) once the cause is
/// fixed, unless the message says otherwise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// A session could not be opened.
    #[error("cannot connect to the {side} ({url}): {message}")]
    Connect {
        /// Which database.
        side: Side,
        /// The URL, password redacted.
        url: String,
        /// The diagnosis.
        message: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The preflight found reasons not to start.
    #[error("preflight refused to start:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Preflight {
        /// Every problem found.
        problems: Vec<PreflightProblem>,
    },
    /// A query outside any one table failed (catalog, snapshot, settings).
    #[error("{side}: {what}: {message}")]
    Query {
        /// Which database.
        side: Side,
        /// What was being done.
        what: String,
        /// The server's message.
        message: String,
    },
    /// The exported snapshot was lost (its session ended): tables copied
    /// after this would not be consistent with the others.
    #[error("the source snapshot was lost ({message}); resume the transfer to finish under a new snapshot")]
    SnapshotLost {
        /// What happened to the session.
        message: String,
    },
    /// `pg_dump` or `pg_restore` failed.
    #[error("{what} failed:\n{stderr_tail}")]
    Tool {
        /// The command (no connection string, no password).
        what: String,
        /// The end of its stderr.
        stderr_tail: String,
    },
    /// A table could not be copied, after the retries allowed.
    #[error("copying table {table} failed after {attempts} attempt(s) ({side}): {message}")]
    Table {
        /// `schema.name`.
        table: String,
        /// Attempts made.
        attempts: u32,
        /// Which side failed.
        side: Side,
        /// The last error.
        message: String,
    },
    /// Row-level security refused a read of the whole table mid-copy.
    #[error(
        "row-level security would hide rows of {table} from the source user: run \
         `ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY` for the transfer, or connect as a role with BYPASSRLS"
    )]
    RowSecurity {
        /// `schema.name`.
        table: String,
    },
    /// A post-data entry (index, constraint, trigger, refresh ...) failed.
    #[error("creating {item} on the target failed after {attempts} attempt(s): {message}")]
    PostData {
        /// e.g. `INDEX public.orders_customer_id_idx`.
        item: String,
        /// Attempts made.
        attempts: u32,
        /// The server's message.
        message: String,
    },
    /// A sequence could not be set.
    #[error("setting sequence {sequence} on the target failed: {message}")]
    Sequence {
        /// `schema.name`.
        sequence: String,
        /// The server's message.
        message: String,
    },
    /// A large object could not be copied.
    #[error("copying large object {oid} failed: {message}")]
    LargeObject {
        /// Its oid.
        oid: u32,
        /// The last error.
        message: String,
    },
    /// The work directory or journal could not be used.
    #[error("work directory {path}: {message}")]
    WorkDir {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong and what to do.
        message: String,
    },
    /// Another transfer holds the work directory's lock.
    #[error(
        "another transfer (pid {pid}) is using {path}; wait for it, or use another work directory"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// The holder's pid, as it wrote it.
        pid: String,
    },
    /// `--restart` would drop a copy that finished: it may have been put to
    /// use since (an app switched to it), and whatever was written there
    /// would be lost. Nothing was changed.
    #[error(
        "refusing to restart: the transfer journaled in {journal} finished at {finished_at} and {target} \
         holds its copy: {holdings}. Restarting runs DROP OWNED BY CURRENT_USER CASCADE there, which deletes \
         all of it, including every row written since the copy finished (by an app switched to this \
         database). To drop it anyway and copy again, restart with dropping the target allowed; to keep \
         it, copy into another, empty database with another work directory"
    )]
    TargetHasData {
        /// The transfer journal.
        journal: PathBuf,
        /// `user@host:port/dbname` of the target.
        target: String,
        /// When the copy finished (the journal's last write).
        finished_at: chrono::DateTime<chrono::Utc>,
        /// What the target user owns there, in words (or why that could
        /// not be read).
        holdings: String,
    },
    /// Cancelled (Ctrl-C): the target holds only committed tables; finish
    /// with [`ResumeMode::Resume`](super::ResumeMode::Resume).
    #[error(
        "cancelled; the work directory records what is done: resume the transfer to finish it"
    )]
    Cancelled,
}

impl TransferError {
    /// Whether the run can be finished with
    /// [`ResumeMode::Resume`](super::ResumeMode::Resume) after fixing the
    /// cause (false for a preflight refusal, which wrote nothing). Messages
    /// name no command-line flag: each frontend says how to resume in its
    /// own words.
    pub fn is_resumable(&self) -> bool {
        !matches!(
            self,
            TransferError::Preflight { .. }
                | TransferError::Locked { .. }
                | TransferError::TargetHasData { .. }
        )
    }

    /// The preflight problems, if this is a preflight refusal.
    pub fn preflight_problems(&self) -> &[PreflightProblem] {
        match self {
            TransferError::Preflight { problems } => problems,
            _ => &[],
        }
    }

    pub(crate) fn query(
        side: Side,
        what: impl Into<String>,
    ) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let what = what.into();
        move |e| TransferError::Query {
            side,
            what,
            message: super::copy::message(&e),
        }
    }

    pub(crate) fn work_dir(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |e| TransferError::WorkDir {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

impl From<crate::fsutil::LockError> for TransferError {
    fn from(e: crate::fsutil::LockError) -> Self {
        let pid = e.pid();
        match e {
            crate::fsutil::LockError::Held { path, holder } => TransferError::Locked {
                path,
                pid: pid.map_or(holder, |p| p.to_string()),
            },
            crate::fsutil::LockError::Io { path, source, .. } => TransferError::WorkDir {
                path,
                message: source.to_string(),
            },
        }
    }
}

impl From<super::schema::ToolFailure> for TransferError {
    fn from(f: super::schema::ToolFailure) -> Self {
        TransferError::Tool {
            what: f.what,
            stderr_tail: f.stderr_tail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runbook and embedding programs call the transfer too: its
    /// messages say what to do in words, and each binary names its flags.
    #[test]
    fn transfer_errors_name_no_command_line_flag() {
        let problems = vec![
            PreflightProblem::ToolsMissing {
                searched: "/usr/bin".into(),
                package: "postgresql-client-15".into(),
            },
            PreflightProblem::ToolsTooOld {
                found: "9.6".into(),
                needed: 15,
                package: "postgresql-client-15".into(),
            },
            PreflightProblem::TargetNotEmpty {
                count: 1,
                examples: "public.t".into(),
            },
            PreflightProblem::ExtensionUnavailable {
                name: "postgis".into(),
                schema: "public".into(),
            },
            PreflightProblem::ExtensionNotCreatable {
                name: "pg_stat_statements".into(),
                schema: "public".into(),
                user: "app".into(),
                why: "not trusted".into(),
            },
        ];
        let errors = [
            TransferError::Preflight { problems },
            TransferError::SnapshotLost {
                message: "gone".into(),
            },
            TransferError::Locked {
                path: "/w/transfer/lock".into(),
                pid: "42".into(),
            },
            TransferError::TargetHasData {
                journal: "/w/transfer/journal.json".into(),
                target: "u@h:5432/db".into(),
                finished_at: chrono::Utc::now(),
                holdings: "3 table(s)".into(),
            },
            TransferError::Cancelled,
        ];
        for e in errors {
            let text = e.to_string();
            assert!(!text.contains("--"), "{text}");
        }
    }
}
