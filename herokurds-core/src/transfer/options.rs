//! How a transfer runs: [`TransferOptions`] and the small types it holds.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The `COPY` format rows travel in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CopyFormat {
    /// `FORMAT binary` (default): no text parsing of numbers, timestamps
    /// and `bytea` on the target. Tables with a column whose binary form
    /// carries server-specific type oids (composite types, arrays of
    /// user-defined types) are copied as text regardless.
    #[default]
    Binary,
    /// `FORMAT text`: the portable fallback.
    Text,
}

impl fmt::Display for CopyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CopyFormat::Binary => "binary",
            CopyFormat::Text => "text",
        })
    }
}

impl FromStr for CopyFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "binary" => Ok(CopyFormat::Binary),
            "text" => Ok(CopyFormat::Text),
            other => Err(format!("unknown COPY format `{other}` (binary or text)")),
        }
    }
}

/// What to do with the work directory's journal of an earlier run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ResumeMode {
    /// Start a new transfer; refuse if the journal of an unfinished one is
    /// there, or if the target holds tables.
    #[default]
    Fresh,
    /// Finish the journaled transfer: keep the schema archive and every
    /// table, slice and post-data entry already done, redo the rest.
    Resume,
    /// Start over: drop everything the target user owns in the target
    /// database (`DROP OWNED BY CURRENT_USER CASCADE` — the earlier copy,
    /// and anything else that user created there; privileges granted to it
    /// there are revoked too), then copy as a fresh run. Only done when the
    /// work directory's journal records a transfer into this same target
    /// (`user@host:port/dbname`); a journal of another target is refused,
    /// and with no journal at all this is [`ResumeMode::Fresh`] (the target
    /// must be empty). A journal that records the copy as *finished* is
    /// refused too ([`TransferError::TargetHasData`](super::TransferError::TargetHasData):
    /// a finished copy may have been put to use, and whatever was written
    /// into it since would go), unless
    /// [`TransferOptions::restart_target`] allows it.
    Restart,
}

/// How often and how patiently a failed table, slice or post-data entry is
/// retried (the crate's one [`crate::retry::RetryPolicy`]). Only failures
/// worth retrying are (a lost connection, a backend terminated by an
/// administrator, a deadlock, too many connections); a query the server
/// rejects stops the run at once.
pub use crate::retry::RetryPolicy;

/// Everything a transfer can be told, with defaults that suit a Heroku to
/// RDS move. Build with [`TransferOptions::new`] and the setters.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TransferOptions {
    jobs: usize,
    index_jobs: Option<usize>,
    split_threshold: u64,
    format: CopyFormat,
    exclude_tables: Vec<String>,
    exclude_extensions: Vec<String>,
    resume: ResumeMode,
    work_dir: PathBuf,
    retry: RetryPolicy,
    pg_bin_dir: Option<PathBuf>,
    maintenance_work_mem: String,
    analyze: bool,
    restart_target: bool,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            jobs: 4,
            index_jobs: None,
            split_threshold: 1 << 30,
            format: CopyFormat::Binary,
            exclude_tables: Vec::new(),
            exclude_extensions: Vec::new(),
            resume: ResumeMode::Fresh,
            work_dir: PathBuf::from(".herokurds"),
            retry: RetryPolicy::default(),
            pg_bin_dir: None,
            maintenance_work_mem: "512MB".into(),
            analyze: true,
            restart_target: false,
        }
    }
}

impl TransferOptions {
    /// The defaults: 4 jobs, tables split above 1 GiB, binary COPY, work
    /// directory `.herokurds/`, 4 attempts per table, `ANALYZE` after load.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tables copied at once (default 4; at least 1). Each job holds one
    /// source and one target session.
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// The number of tables copied at once.
    pub fn get_jobs(&self) -> usize {
        self.jobs
    }

    /// Index and constraint builds at once, on their own target sessions,
    /// overlapping the copy of other tables (default: same as `jobs`).
    pub fn index_jobs(mut self, jobs: usize) -> Self {
        self.index_jobs = Some(jobs.max(1));
        self
    }

    /// The number of index builds at once.
    pub fn get_index_jobs(&self) -> usize {
        self.index_jobs.unwrap_or(self.jobs)
    }

    /// Tables whose heap is larger than this many bytes are copied in
    /// several `ctid` ranges at once (default 1 GiB).
    pub fn split_tables_larger_than(mut self, bytes: u64) -> Self {
        self.split_threshold = bytes.max(1);
        self
    }

    /// The split threshold in bytes.
    pub fn get_split_threshold(&self) -> u64 {
        self.split_threshold
    }

    /// The COPY format (default binary).
    pub fn format(mut self, format: CopyFormat) -> Self {
        self.format = format;
        self
    }

    /// The COPY format.
    pub fn get_format(&self) -> CopyFormat {
        self.format
    }

    /// Leaves the rows of matching tables behind (their definitions,
    /// indexes and constraints are still created, empty). Patterns are
    /// globs on `schema.table`, or on the bare name when there is no dot.
    pub fn exclude_table(mut self, pattern: impl Into<String>) -> Self {
        self.exclude_tables.push(pattern.into());
        self
    }

    /// The table exclusion patterns.
    pub fn get_exclude_tables(&self) -> &[String] {
        &self.exclude_tables
    }

    /// Does not create the named extension on the target (typically
    /// `pg_stat_statements`, which needs rights RDS's master user may
    /// lack). Objects that depend on it will fail to restore.
    pub fn exclude_extension(mut self, name: impl Into<String>) -> Self {
        self.exclude_extensions.push(name.into());
        self
    }

    /// The excluded extensions.
    pub fn get_exclude_extensions(&self) -> &[String] {
        &self.exclude_extensions
    }

    /// Fresh (default), resume or restart.
    pub fn resume_mode(mut self, mode: ResumeMode) -> Self {
        self.resume = mode;
        self
    }

    /// The resume mode.
    pub fn get_resume_mode(&self) -> ResumeMode {
        self.resume
    }

    /// Lets [`ResumeMode::Restart`] drop a copy the journal records as
    /// finished (default: refused). The caller has made sure nothing
    /// written into that copy since is wanted (the operator typed the
    /// target database's name, or the runbook proved nothing else wrote).
    pub fn restart_target(mut self, allow: bool) -> Self {
        self.restart_target = allow;
        self
    }

    /// Whether a finished copy may be dropped by a restart.
    pub fn get_restart_target(&self) -> bool {
        self.restart_target
    }

    /// Where the journal, lock and schema archive live (default
    /// `.herokurds/`; the transfer uses its `transfer/` subdirectory).
    pub fn work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_dir = dir.into();
        self
    }

    /// The work directory.
    pub fn get_work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// The retry policy for tables, slices and post-data entries.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The retry policy.
    pub fn get_retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Use `pg_dump` and `pg_restore` from this directory only (default:
    /// search `PATH`, then `/usr/lib/postgresql/*/bin`, newest first).
    pub fn pg_bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.pg_bin_dir = Some(dir.into());
        self
    }

    /// The explicit client-tools directory, if any.
    pub fn get_pg_bin_dir(&self) -> Option<&Path> {
        self.pg_bin_dir.as_deref()
    }

    /// `maintenance_work_mem` of the sessions that build indexes (default
    /// `512MB`; each index job may use this much on the target).
    pub fn maintenance_work_mem(mut self, value: impl Into<String>) -> Self {
        self.maintenance_work_mem = value.into();
        self
    }

    /// The index sessions' `maintenance_work_mem`.
    pub fn get_maintenance_work_mem(&self) -> &str {
        &self.maintenance_work_mem
    }

    /// Whether each table is `ANALYZE`d once its indexes are built, so the
    /// application's first queries on the target have statistics (default on).
    pub fn analyze(mut self, on: bool) -> Self {
        self.analyze = on;
        self
    }

    /// Whether tables are analyzed.
    pub fn get_analyze(&self) -> bool {
        self.analyze
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip() {
        for f in [CopyFormat::Binary, CopyFormat::Text] {
            assert_eq!(f.to_string().parse::<CopyFormat>(), Ok(f));
        }
        assert!("csv".parse::<CopyFormat>().is_err());
    }

    #[test]
    fn index_jobs_follow_jobs_unless_set() {
        let o = TransferOptions::new().jobs(3);
        assert_eq!(o.get_index_jobs(), 3);
        assert_eq!(o.index_jobs(1).get_index_jobs(), 1);
        assert_eq!(TransferOptions::new().jobs(0).get_jobs(), 1);
    }
}
