//! Proof that the target database equals the source, before the app is cut
//! over to it.
//!
//! The runbook this replaces said "examine the dump". Here the two databases
//! are compared directly, in three parts:
//!
//! 1. **Schema objects** ([`schema`](self) module): schemas, tables and
//!    partitions, columns, indexes, constraints, triggers, rules, views and
//!    materialized views, functions, sequences' definitions, types,
//!    extensions, row-level security settings and policies, statistics
//!    objects and comments, each described by the server in a form that
//!    does not depend on OIDs, and compared object by object. **Owners and
//!    privileges are not compared**: the transfer restores with
//!    `--no-owner --no-acl`, so on the target everything belongs to the RDS
//!    user by design. Objects that belong to an extension are compared
//!    through the extension (name, version, schema).
//! 2. **Data**: every table's exact row count and a content checksum that
//!    does not depend on row order or physical layout, computed on each
//!    server (no rows cross the network), large tables in parallel slices,
//!    both sides at once. A table that row-level security would filter for
//!    the connecting role is reported as not verified, never as equal.
//! 3. **Sequences** (`last_value`, `is_called`) and **large objects**
//!    (count and content).
//!
//! Every session reads inside one `REPEATABLE READ` transaction on a shared
//! snapshot: on the source, the transfer's exported snapshot when given
//! ([`VerifyOptions::source_snapshot`]), so the check sees exactly what was
//! copied even while the app keeps writing; otherwise one exported by the
//! first source session, and the report warns that the source may have
//! changed since the copy.
//!
//! [`run`] connects by itself; [`run_with_clients`] uses sessions the
//! caller already has open (the runbook calls it right after the transfer).
//! Nothing is printed: progress goes to a [`Progress`] of [`VerifyEvent`]s
//! and the result is a [`VerifyReport`].

mod compare;
mod data;
mod report;
mod schema;

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::pg::catalog::{CatalogError, TableFilter};
pub(crate) use crate::pg::db_message;
use crate::progress::Progress;
use crate::url::DatabaseUrl;
pub(crate) use data::tally_sql;
pub use report::{Detail, Difference, LargeObjectsResult, Side, TableResult, Tally, VerifyReport};
pub(crate) use schema::describe as describe_schema;

/// Default for [`VerifyOptions::slice_threshold`]: tables larger than this
/// are checksummed in slices of this many bytes.
pub const DEFAULT_SLICE_BYTES: u64 = 64 * 1024 * 1024;

/// How to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    counts_only: bool,
    jobs: usize,
    excluded_tables: Vec<String>,
    excluded_extensions: Vec<String>,
    source_snapshot: Option<String>,
    slice_bytes: u64,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            counts_only: false,
            jobs: 2,
            excluded_tables: Vec::new(),
            excluded_extensions: Vec::new(),
            source_snapshot: None,
            slice_bytes: DEFAULT_SLICE_BYTES,
        }
    }
}

impl VerifyOptions {
    /// Full verification, 2 sessions per side, nothing excluded, no snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Compare row counts only, not contents (a fast first pass).
    pub fn counts_only(mut self, on: bool) -> Self {
        self.counts_only = on;
        self
    }

    /// Sessions per side that [`run`] opens (at least 1). Both sides are
    /// read at the same time, so the two servers see `jobs` queries each.
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// Leaves out tables the transfer did not copy: the table, its columns,
    /// indexes, constraints, triggers, rules and policies, and its data.
    /// A pattern with a dot is a glob over `schema.table` (`public.audit_*`);
    /// without one, over the table name in any schema. Names are unquoted.
    pub fn exclude_table(mut self, pattern: impl Into<String>) -> Self {
        self.excluded_tables.push(pattern.into());
        self
    }

    /// Leaves out an extension the transfer did not create on the target
    /// (its configuration tables too).
    pub fn exclude_extension(mut self, name: impl Into<String>) -> Self {
        self.excluded_extensions.push(name.into());
        self
    }

    /// Reads the source on this exported snapshot (`pg_export_snapshot()`
    /// of the transfer). The transaction that exported it must stay open
    /// until the verification is done.
    pub fn source_snapshot(mut self, snapshot: Option<String>) -> Self {
        self.source_snapshot = snapshot;
        self
    }

    /// Tables whose main fork is larger than this many bytes are read in
    /// slices of this size, spread over the sessions (on PostgreSQL 14 and
    /// later, which scan `ctid` ranges without reading the whole table).
    pub fn slice_threshold(mut self, bytes: u64) -> Self {
        self.slice_bytes = bytes.max(8192);
        self
    }

    /// Whether only row counts are compared.
    pub fn is_counts_only(&self) -> bool {
        self.counts_only
    }

    /// Sessions per side.
    pub fn job_count(&self) -> usize {
        self.jobs
    }

    /// The table patterns left out.
    pub fn excluded_tables(&self) -> &[String] {
        &self.excluded_tables
    }

    /// The extensions left out.
    pub fn excluded_extensions(&self) -> &[String] {
        &self.excluded_extensions
    }

    /// The source snapshot to read on.
    pub fn snapshot(&self) -> Option<&str> {
        self.source_snapshot.as_deref()
    }

    /// The slice size in bytes.
    pub fn slice_bytes(&self) -> u64 {
        self.slice_bytes
    }
}

/// What a verification is doing, for progress bars and logs.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum VerifyEvent {
    /// Every session has begun its transaction.
    Started {
        /// The source snapshot in use, when one was given.
        source_snapshot: Option<String>,
    },
    /// The schema objects have been compared.
    SchemaCompared {
        /// Objects compared.
        objects: usize,
        /// Differences found.
        differences: usize,
    },
    /// One side's data reading is planned.
    DataPlanned {
        /// The side.
        side: Side,
        /// Tables to read.
        tables: usize,
        /// Work items (slices and whole tables).
        slices: usize,
        /// Bytes to read (main forks, and `pg_largeobject`).
        bytes: u64,
    },
    /// One slice (or a whole table, or the large objects) has been read.
    SliceDone {
        /// The side.
        side: Side,
        /// The table (`large objects` for those).
        table: String,
        /// Bytes of the slice.
        bytes: u64,
        /// Rows in the slice.
        rows: u64,
    },
    /// The data comparison is done.
    DataCompared {
        /// Tables compared.
        tables: usize,
        /// Tables that differ or could not be read.
        differences: usize,
    },
    /// Sequence values have been compared.
    SequencesCompared {
        /// Sequences compared.
        sequences: usize,
        /// Differences found.
        differences: usize,
    },
}

/// Why a verification could not run to the end. (Differences are not
/// errors: they are in the [`VerifyReport`].)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No session could be opened to a database.
    #[error("cannot connect to the {side} database: {message}")]
    Connect {
        /// Which database.
        side: Side,
        /// What went wrong, with the diagnosis (never the password).
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A session is not encrypted although its URL does not allow
    /// plaintext: the same refusal as the transfer's
    /// ([`crate::pg::tls_concerns`]).
    #[error("{concern}")]
    NotEncrypted {
        /// Which database.
        side: Side,
        /// What was found.
        concern: crate::pg::TlsConcern,
    },
    /// A query failed in a way that stops the verification (a lost
    /// connection, a server error not tied to one object).
    #[error("{what} on the {side} failed: {message}")]
    Query {
        /// Which database.
        side: Side,
        /// What was being done.
        what: String,
        /// The server's or driver's message.
        message: String,
        /// Whether running again may succeed (connection lost, server
        /// shutting down, serialization failure).
        retryable: bool,
    },
    /// The source snapshot could not be used.
    #[error(
        "cannot read the source on snapshot {snapshot:?}: {message}; the transaction that \
         exported it (the transfer's) must still be open, on the same database"
    )]
    Snapshot {
        /// The snapshot id given.
        snapshot: String,
        /// Why.
        message: String,
    },
    /// An `--exclude-table` pattern is not a valid glob.
    #[error("exclude pattern {pattern:?} is not a valid glob: {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },
    /// [`run_with_clients`] was given no session for a side.
    #[error("no session for the {side} database: give at least one client per side")]
    NoSessions {
        /// Which side.
        side: Side,
    },
    /// The cancellation token fired; the sessions are mid-transaction and
    /// should be dropped.
    #[error("verification cancelled")]
    Cancelled,
}

impl VerifyError {
    pub(crate) fn query(side: Side, what: &str, e: &tokio_postgres::Error) -> Self {
        let retryable = e.is_closed()
            || e.as_db_error().is_none()
            || e.code().is_some_and(|c| {
                let c = c.code();
                c.starts_with("08") || c.starts_with("57P") || c == "40001" || c == "40P01"
            });
        VerifyError::Query {
            side,
            what: what.to_string(),
            message: db_message(e),
            retryable,
        }
    }

    pub(crate) fn catalog(side: Side, e: CatalogError) -> Self {
        match e {
            CatalogError::Pattern { pattern, message } => VerifyError::Pattern { pattern, message },
            e => VerifyError::Query {
                side,
                what: "reading the catalog".into(),
                retryable: e.is_connection_lost(),
                message: e.to_string(),
            },
        }
    }

    /// Whether running the verification again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            VerifyError::Query { retryable, .. } => *retryable,
            VerifyError::Connect { .. } => true,
            _ => false,
        }
    }

    /// The side the error is about, when it is about one.
    pub fn side(&self) -> Option<Side> {
        match self {
            VerifyError::Connect { side, .. }
            | VerifyError::NotEncrypted { side, .. }
            | VerifyError::Query { side, .. }
            | VerifyError::NoSessions { side } => Some(*side),
            VerifyError::Snapshot { .. } => Some(Side::Source),
            _ => None,
        }
    }
}

/// Session settings that make the text form of every value the same on
/// both servers (floats exact, ISO dates, UTC, hex `bytea`, C money,
/// qualified `reg*` names), and that let the check read everything or fail
/// loudly (`row_security = off`, no timeouts). JIT is off: compiling the
/// checksum expression costs more than it saves (measured: 0.7 s on a 4M-row table). `SET LOCAL`: the caller's
/// sessions are left as they were.
pub(crate) const SESSION_SETTINGS: &str = "
SET LOCAL extra_float_digits = 3;
SET LOCAL DateStyle = 'ISO, MDY';
SET LOCAL IntervalStyle = 'postgres';
SET LOCAL TimeZone = 'UTC';
SET LOCAL bytea_output = 'hex';
SET LOCAL lc_monetary = 'C';
SET LOCAL search_path = '';
SET LOCAL row_security = off;
SET LOCAL statement_timeout = 0;
SET LOCAL lock_timeout = 0;
SET LOCAL idle_in_transaction_session_timeout = 0;
SET LOCAL jit = off;";

/// Begins a read-only repeatable-read transaction on every session of a
/// side, all on one snapshot: `snapshot` when given, else one exported by
/// the first session. Returns a warning when sessions could not share one.
async fn begin_side(
    side: Side,
    clients: &[Client],
    snapshot: Option<&str>,
) -> Result<Option<String>, VerifyError> {
    const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
    let plain = format!("{BEGIN}; {SESSION_SETTINGS}");
    let import = |id: &str| format!("{BEGIN}; SET TRANSACTION SNAPSHOT '{id}'; {SESSION_SETTINGS}");
    if let Some(id) = snapshot {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(VerifyError::Snapshot {
                snapshot: id.to_string(),
                message: "not a snapshot id (pg_export_snapshot() returns e.g. \
                          00000003-0000001B-1)"
                    .into(),
            });
        }
        return begin_all(clients, &import(id))
            .await
            .map(|()| None)
            .map_err(|e| match side {
                Side::Source => VerifyError::Snapshot {
                    snapshot: id.to_string(),
                    message: db_message(&e),
                },
                Side::Target => VerifyError::query(side, "importing the snapshot", &e),
            });
    }
    let failed =
        |e: tokio_postgres::Error| VerifyError::query(side, "beginning the transaction", &e);
    let (first, rest) = clients
        .split_first()
        .expect("at least one session per side");
    first.batch_execute(&plain).await.map_err(failed)?;
    match first.query_one("SELECT pg_export_snapshot()", &[]).await {
        Ok(row) => {
            begin_all(rest, &import(row.get(0))).await.map_err(failed)?;
            Ok(None)
        }
        Err(e) => {
            // A standby may refuse to export: one snapshot per session, said.
            first.batch_execute("ROLLBACK").await.ok();
            begin_all(clients, &plain).await.map_err(failed)?;
            Ok(Some(format!(
                "the {side} sessions could not share a snapshot ({}); each read on its own",
                db_message(&e)
            )))
        }
    }
}

/// Runs `sql` on every session at once.
async fn begin_all(sessions: &[Client], sql: &str) -> Result<(), tokio_postgres::Error> {
    futures::future::try_join_all(sessions.iter().map(|c| c.batch_execute(sql)))
        .await
        .map(drop)
}

/// Ends every session's transaction (read-only, so rolling back loses nothing).
async fn end_side(clients: &[Client]) {
    futures::future::join_all(clients.iter().map(|c| c.batch_execute("ROLLBACK"))).await;
}

/// What one side looks like before its data is read.
struct SideInfo {
    objects: Vec<schema::SchemaObject>,
    tables: Vec<data::TablePlan>,
    sequences: Result<BTreeMap<String, (i64, bool)>, String>,
    large_objects_bytes: Option<u64>,
    server_version: i32,
}

async fn inspect(
    side: Side,
    client: &Client,
    filter: &TableFilter,
    options: &VerifyOptions,
) -> Result<SideInfo, VerifyError> {
    let q = |what: &'static str| move |e: tokio_postgres::Error| VerifyError::query(side, what, &e);
    let server_version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(q("reading the server version"))?
        .get(0);
    let objects = schema::describe(client)
        .await
        .map_err(q("describing the schema"))?;
    let tables = data::plan_tables(side, client, filter, &options.excluded_extensions).await?;
    let sequences = data::sequences(side, client).await?;
    let large_objects_bytes = data::large_objects_bytes(client)
        .await
        .map_err(q("looking for large objects"))?;
    Ok(SideInfo {
        objects,
        tables,
        sequences,
        large_objects_bytes,
        server_version,
    })
}

/// Verifies that `target` equals `source`: opens [`VerifyOptions::jobs`]
/// sessions to each (with [`pg::connect`](crate::pg::connect): TLS as each
/// URL's `sslmode` says), runs [`run_with_clients`] on them and closes them.
///
/// TLS is checked as the transfer checks it ([`crate::pg::tls_concerns`]):
/// an unencrypted session whose URL does not allow plaintext is refused
/// ([`VerifyError::NotEncrypted`]); a URL that allows plaintext, and a
/// server that is not verified, are in the report's warnings.
///
/// Differences are not errors: they are in the report
/// ([`VerifyReport::is_identical`]). Errors are what stopped the check
/// (a connection refused, a lost session, an unusable snapshot).
///
/// # Panics
/// Outside a tokio runtime.
pub async fn run(
    source: &DatabaseUrl,
    target: &DatabaseUrl,
    options: &VerifyOptions,
    progress: &impl Progress<VerifyEvent>,
    cancel: &CancellationToken,
) -> Result<VerifyReport, VerifyError> {
    let ((source, source_tls), (target, target_tls)) = tokio::select! {
        r = async { futures::try_join!(open(Side::Source, source, options.jobs), open(Side::Target, target, options.jobs)) } => r?,
        _ = cancel.cancelled() => return Err(VerifyError::Cancelled),
    };
    let mut report = run_with_clients(&source, &target, options, progress, cancel).await?;
    let tls: Vec<String> = source_tls
        .iter()
        .chain(&target_tls)
        .map(ToString::to_string)
        .collect();
    report.warnings.splice(0..0, tls);
    Ok(report)
}

/// Opens `n` sessions to one side; refuses an unencrypted one that its URL
/// does not allow, and returns the warnings about the side's TLS.
async fn open(
    side: Side,
    url: &DatabaseUrl,
    n: usize,
) -> Result<(Vec<Client>, Vec<crate::pg::TlsConcern>), VerifyError> {
    let sessions = (0..n).map(|_| crate::pg::connect(url));
    let sessions =
        futures::future::try_join_all(sessions)
            .await
            .map_err(|e| VerifyError::Connect {
                side,
                message: e.to_string(),
                source: Some(Box::new(e)),
            })?;
    // Every session of a side has the same URL: the least encrypted one speaks for all.
    let encrypted = sessions.iter().all(crate::pg::Connected::tls);
    let mut concerns = crate::pg::tls_concerns(side, url, encrypted);
    if let Some(i) = concerns.iter().position(crate::pg::TlsConcern::refuses) {
        return Err(VerifyError::NotEncrypted {
            side,
            concern: concerns.swap_remove(i),
        });
    }
    Ok((
        sessions.into_iter().map(|c| c.into_client()).collect(),
        concerns,
    ))
}

/// Verifies on sessions the caller already has open: `source` and `target`
/// each hold one or more idle clients (not inside a transaction), and their
/// number sets the parallelism on that side ([`VerifyOptions::jobs`] is not
/// used). Every session runs one read-only transaction, rolled back at the
/// end, with `SET LOCAL` settings only, so the sessions are returned as
/// they were. On [`VerifyError::Cancelled`] they are mid-query: drop them.
pub async fn run_with_clients(
    source: &[Client],
    target: &[Client],
    options: &VerifyOptions,
    progress: &impl Progress<VerifyEvent>,
    cancel: &CancellationToken,
) -> Result<VerifyReport, VerifyError> {
    if source.is_empty() {
        return Err(VerifyError::NoSessions { side: Side::Source });
    }
    if target.is_empty() {
        return Err(VerifyError::NoSessions { side: Side::Target });
    }
    let filter = TableFilter::from_patterns(&options.excluded_tables)
        .map_err(|e| VerifyError::catalog(Side::Source, e))?;
    let result = tokio::select! {
        r = verify(source, target, options, &filter, progress) => r,
        _ = cancel.cancelled() => return Err(VerifyError::Cancelled),
    };
    futures::join!(end_side(source), end_side(target));
    result
}

async fn verify(
    source: &[Client],
    target: &[Client],
    options: &VerifyOptions,
    filter: &TableFilter,
    progress: &impl Progress<VerifyEvent>,
) -> Result<VerifyReport, VerifyError> {
    let started = Instant::now();
    let mut warnings = Vec::new();
    let (sw, tw) = futures::try_join!(
        begin_side(Side::Source, source, options.snapshot()),
        begin_side(Side::Target, target, None),
    )?;
    warnings.extend(sw.into_iter().chain(tw));
    if options.source_snapshot.is_none() {
        warnings.push(
            "the source was not read on the transfer's snapshot: if the app was still \
             writing, differences may be new writes rather than copy errors"
                .into(),
        );
    }
    if options.counts_only {
        warnings.push("counts only: row contents were not compared".into());
    }
    progress.event(&VerifyEvent::Started {
        source_snapshot: options.source_snapshot.clone(),
    });

    let (src, tgt) = futures::try_join!(
        inspect(Side::Source, &source[0], filter, options),
        inspect(Side::Target, &target[0], filter, options),
    )?;

    // 1. Schema objects.
    let schema_filter = schema::SchemaFilter {
        tables: filter,
        extensions: &options.excluded_extensions,
    };
    let (schema_objects, mut differences) =
        schema::diff(src.objects, tgt.objects, &schema_filter, &mut warnings);
    progress.event(&VerifyEvent::SchemaCompared {
        objects: schema_objects,
        differences: differences.len(),
    });
    tracing::debug!(
        objects = schema_objects,
        differences = differences.len(),
        "schema compared"
    );

    // 2. Data, both sides at once.
    let src_work = data::plan_work(
        &src.tables,
        options.slice_bytes,
        src.server_version,
        src.large_objects_bytes,
    );
    let tgt_work = data::plan_work(
        &tgt.tables,
        options.slice_bytes,
        tgt.server_version,
        tgt.large_objects_bytes,
    );
    for (side, tables, work) in [
        (Side::Source, &src.tables, &src_work),
        (Side::Target, &tgt.tables, &tgt_work),
    ] {
        progress.event(&VerifyEvent::DataPlanned {
            side,
            tables: tables.len(),
            slices: work.len(),
            bytes: work.iter().map(data::Work::bytes).sum(),
        });
        tracing::debug!(%side, tables = tables.len(), slices = work.len(), "data planned");
    }
    let (src_tally, tgt_tally) = futures::try_join!(
        data::run_side(
            Side::Source,
            source,
            &src.tables,
            src_work,
            options.counts_only,
            progress
        ),
        data::run_side(
            Side::Target,
            target,
            &tgt.tables,
            tgt_work,
            options.counts_only,
            progress
        ),
    )?;
    let before = differences.len();
    let tables = compare::compare_tables(
        &src.tables,
        &src_tally,
        &tgt.tables,
        &tgt_tally,
        options.counts_only,
        &mut differences,
    );
    progress.event(&VerifyEvent::DataCompared {
        tables: tables.len(),
        differences: differences.len() - before,
    });

    // 3. Sequences and large objects.
    let before = differences.len();
    let sequences = compare::compare_sequences(&src.sequences, &tgt.sequences, &mut differences);
    if options.source_snapshot.is_some() && differences.len() > before {
        warnings.push(
            "sequence values are not part of a snapshot: they are read as they are now, so a \
             sequence that differs may have moved on the source after the copy, which means \
             the app wrote rows the copy does not have (worker or clock dynos keep writing \
             during Heroku maintenance mode)"
                .into(),
        );
    }
    progress.event(&VerifyEvent::SequencesCompared {
        sequences,
        differences: differences.len() - before,
    });
    let large_objects = compare::compare_large_objects(
        (&source[0], src_tally.large_objects.as_ref()),
        (&target[0], tgt_tally.large_objects.as_ref()),
        options.counts_only,
        &mut differences,
    )
    .await?;

    let bytes_read = src_tally
        .tables
        .iter()
        .chain(&tgt_tally.tables)
        .map(|t| t.bytes)
        .sum();
    Ok(VerifyReport {
        differences,
        tables,
        sequences,
        large_objects,
        schema_objects,
        warnings,
        counts_only: options.counts_only,
        source_snapshot: options.source_snapshot.clone(),
        seconds: started.elapsed().as_secs_f64(),
        bytes_read,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_pattern_is_named() {
        let err = TableFilter::from_patterns(["public.["])
            .map_err(|e| VerifyError::catalog(Side::Source, e))
            .unwrap_err();
        assert!(matches!(err, VerifyError::Pattern { .. }));
        assert!(err.to_string().contains("\"public.[\""), "{err}");
    }

    #[test]
    fn options_keep_what_was_set() {
        let o = VerifyOptions::new()
            .jobs(0)
            .counts_only(true)
            .exclude_table("a")
            .source_snapshot(Some("00000003-0000001B-1".into()));
        assert_eq!(o.job_count(), 1);
        assert!(o.is_counts_only());
        assert_eq!(o.excluded_tables(), ["a"]);
        assert_eq!(o.snapshot(), Some("00000003-0000001B-1"));
    }
}
