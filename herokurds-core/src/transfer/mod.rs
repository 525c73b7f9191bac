//! The streaming database copy: a Heroku Postgres database into an empty
//! RDS database, consistent, parallel, with no dump file.
//!
//! This replaces the runbook's `pg_dump -x -O > dump.sql; psql < dump.sql`.
//! [`run`] does, in order (each step journaled in the work directory, so
//! [`ResumeMode::Resume`] finishes an interrupted run):
//! 1. **preflight** ([`preflight`] runs it alone): both sessions over TLS,
//!    server versions, a `pg_dump` at least as new as the source, an empty
//!    target, every extension creatable on the target (or excluded), no
//!    rows hidden by row-level security;
//! 2. **snapshot** ([`Snapshot`]): one exported snapshot, held open; every
//!    reader imports it, `pg_dump` uses it;
//! 3. **schema**: `pg_dump --format=custom` of pre- and post-data into the
//!    work directory, pre-data restored in one transaction;
//! 4. **data**: `jobs` workers pipe `COPY TO STDOUT` into `COPY FROM STDIN`
//!    as raw bytes (binary format unless a column's binary form is not
//!    portable), whole tables as `TRUNCATE` + `COPY FREEZE` in one
//!    transaction, large tables in `ctid` slices; each table's indexes and
//!    primary/unique/exclusion constraints are built by `index_jobs` other
//!    sessions as soon as its rows are in, while other tables still copy;
//! 5. **large objects**, with their oids;
//! 6. **post-data**: foreign keys, triggers, policies, partitioned indexes,
//!    materialized-view refreshes, in dependency order, in parallel;
//! 7. **sequences**: `setval` with `last_value` and `is_called`, read last.
//!
//! The library never prints: it reports [`TransferEvent`]s to a
//! [`Progress`] and returns a [`TransferReport`]. Cancellation comes in as
//! a token; a cancelled run leaves only committed tables on the target and
//! a journal `--resume` finishes.
//!
//! **What resume guarantees.** A resumed run reads the rest of the data in
//! a *new* snapshot: tables finished before keep the rows of the old one.
//! That is exact for a source nobody writes to (the maintenance window,
//! with worker dynos stopped too), which is what a migration has; if the
//! source changed in between, the target mixes two instants — run the
//! verification (which compares against the source as it is now) to prove
//! it either way.

mod copy;
mod endpoint;
mod error;
mod journal;
mod objects;
pub mod online;
mod options;
mod plan;
mod preflight;
mod report;
mod run;
mod schema;
mod snapshot;
mod tools;
mod worker;

use tokio_util::sync::CancellationToken;

pub use error::{PreflightProblem, Side, TransferError};
pub use options::{CopyFormat, ResumeMode, RetryPolicy, TransferOptions};
pub use report::{
    ExtensionCheck, Phase, PreflightReport, Slice, SnapshotInfo, TableActivity, TableReport,
    TransferEvent, TransferReport,
};
pub use snapshot::Snapshot;

pub(crate) use journal::Paths as StatePaths;

use crate::pg::catalog::TableFilter;
use crate::progress::Progress;
use crate::url::DatabaseUrl;
use endpoint::{Endpoint, Role};

/// Checks everything that can be checked without writing to the target
/// (see the module documentation). Problems are in the report, not an
/// error: `Err` means a check could not run (e.g. a connection failed).
/// With [`ResumeMode::Resume`] a non-empty target is expected.
pub async fn preflight(
    source: &DatabaseUrl,
    target: &DatabaseUrl,
    opts: &TransferOptions,
) -> Result<PreflightReport, TransferError> {
    let src = Endpoint::source(source)
        .open_as(Role::SourceReader, "")
        .await?;
    let tgt = Endpoint::target(target).open().await?;
    let filter = table_filter(opts)?;
    let resuming = opts.get_resume_mode() == ResumeMode::Resume;
    let (pf, _) = preflight::check(&src, &tgt, opts, &filter, resuming).await?;
    Ok(pf.report)
}

/// Copies `source` into `target` (see the module documentation), under a
/// snapshot of its own.
pub async fn run(
    source: &DatabaseUrl,
    target: &DatabaseUrl,
    opts: &TransferOptions,
    progress: &impl Progress<TransferEvent>,
    cancel: CancellationToken,
) -> Result<TransferReport, TransferError> {
    run::run(source, target, None, opts, progress, cancel).await
}

/// Like [`run`], reading in `snapshot`, which the caller exported and
/// keeps: verify the target in the same snapshot afterwards, then drop it.
pub async fn run_in_snapshot(
    source: &DatabaseUrl,
    target: &DatabaseUrl,
    snapshot: &Snapshot,
    opts: &TransferOptions,
    progress: &impl Progress<TransferEvent>,
    cancel: CancellationToken,
) -> Result<TransferReport, TransferError> {
    run::run(source, target, Some(snapshot), opts, progress, cancel).await
}

pub(crate) fn table_filter(opts: &TransferOptions) -> Result<TableFilter, TransferError> {
    TableFilter::from_patterns(opts.get_exclude_tables().iter().cloned()).map_err(|e| {
        TransferError::Query {
            side: Side::Source,
            what: "excluded table patterns".into(),
            message: e.to_string(),
        }
    })
}
