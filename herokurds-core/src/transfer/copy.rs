//! One table (or one `ctid` slice of it) piped from source to target.
//!
//! `COPY ... TO STDOUT` on the source is read as a stream of raw CopyData
//! chunks and fed, unchanged, into `COPY ... FROM STDIN` on the target:
//! rows are never decoded. The source session sits in a transaction that
//! imported the transfer's snapshot; the target side is its own
//! transaction:
//! - a whole table: `BEGIN; TRUNCATE ONLY t; COPY t FROM STDIN (FREEZE);
//!   COMMIT` — idempotent, so a retry starts from a clean state, and the
//!   rows are written frozen (no later hint-bit or anti-wraparound
//!   rewrite);
//! - a slice: `BEGIN; COPY; COMMIT` on a table emptied beforehand (FREEZE
//!   needs the truncation in the same transaction, which concurrent slices
//!   cannot share). The transaction id is reported before `COMMIT`, so a
//!   commit whose answer was lost can be settled with `pg_xact_status`.
//!
//! On any error, or when cancelled, the function returns with the target
//! transaction still open; the caller drops the session, which rolls it
//! back. Nothing is half-committed.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::options::CopyFormat;
use crate::pg::catalog::{quote_literal, TableInfo};
pub(crate) use crate::pg::db_message as message;

/// Which rows of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rows {
    /// All of them, loaded with TRUNCATE + FREEZE.
    Whole,
    /// Heap blocks `[from, to)`; `None` bounds are open.
    Blocks { from: Option<i64>, to: Option<i64> },
}

/// What a copy moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Moved {
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
}

/// Why a copy failed.
#[derive(Debug)]
pub(crate) struct CopyFailure {
    /// Which side failed: `true` for the source.
    pub(crate) on_source: bool,
    pub(crate) error: tokio_postgres::Error,
    /// The COMMIT was sent and its answer lost: the transaction may have
    /// committed.
    pub(crate) commit_in_doubt: bool,
    /// What was moved, when the failure came at COMMIT.
    pub(crate) moved: Option<Moved>,
}

/// One table (or slice) to pipe, in a format.
#[derive(Clone, Copy)]
pub(crate) struct CopyJob<'a> {
    pub(crate) table: &'a TableInfo,
    pub(crate) rows: Rows,
    pub(crate) format: CopyFormat,
}

/// The `COPY ... TO STDOUT` statement for `rows` of `table`.
pub(crate) fn source_sql(table: &TableInfo, rows: Rows, format: CopyFormat) -> String {
    let cols = table.column_list();
    let opts = format_options(format, false);
    match rows {
        Rows::Whole if cols.is_empty() => {
            format!("COPY {} TO STDOUT{opts}", table.qualified_name())
        }
        Rows::Whole => format!("COPY {} ({cols}) TO STDOUT{opts}", table.qualified_name()),
        Rows::Blocks { from, to } => {
            let mut conds = Vec::new();
            if let Some(f) = from {
                conds.push(format!(
                    "ctid >= {}::tid",
                    quote_literal(&format!("({f},0)"))
                ));
            }
            if let Some(t) = to {
                conds.push(format!(
                    "ctid < {}::tid",
                    quote_literal(&format!("({t},0)"))
                ));
            }
            let filter = if conds.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", conds.join(" AND "))
            };
            format!(
                "COPY (SELECT {cols} FROM ONLY {}{filter}) TO STDOUT{opts}",
                table.qualified_name()
            )
        }
    }
}

/// The `COPY ... FROM STDIN` statement for `table`.
pub(crate) fn target_sql(table: &TableInfo, rows: Rows, format: CopyFormat) -> String {
    let cols = table.column_list();
    let opts = format_options(format, rows == Rows::Whole);
    if cols.is_empty() {
        format!("COPY {} FROM STDIN{opts}", table.qualified_name())
    } else {
        format!("COPY {} ({cols}) FROM STDIN{opts}", table.qualified_name())
    }
}

pub(crate) fn format_options(format: CopyFormat, freeze: bool) -> String {
    match (format, freeze) {
        (CopyFormat::Binary, true) => " (FORMAT binary, FREEZE)".into(),
        (CopyFormat::Binary, false) => " (FORMAT binary)".into(),
        (CopyFormat::Text, true) => " (FORMAT text, FREEZE)".into(),
        _ => " (FORMAT text)".into(),
    }
}

/// The format a table actually travels in: binary only when asked for and
/// every column's binary form is portable.
pub(crate) fn effective_format(table: &TableInfo, asked: CopyFormat) -> CopyFormat {
    if asked == CopyFormat::Binary && table.binary_portable() {
        CopyFormat::Binary
    } else {
        CopyFormat::Text
    }
}

/// How many bytes of rows go to the target per CopyData message.
const BATCH: usize = 128 * 1024;

/// How often progress is reported while a copy runs.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Pipes `rows` of `table` from `source` (a session inside the snapshot
/// transaction) into `target` (a session with no open transaction).
///
/// `progress` is called at most every 500 ms with rows and bytes so far;
/// `before_commit` gets the target transaction id of a slice just before
/// its COMMIT is sent, and returns false to stop instead (the caller knows
/// why). Returns `Some` when committed, `None` when cancelled or stopped.
/// On failure, cancellation or stop the target transaction is left open:
/// drop `target` to roll it back.
pub(crate) async fn pipe(
    source: &Client,
    target: &Client,
    job: &CopyJob<'_>,
    cancel: &CancellationToken,
    mut progress: impl FnMut(Moved),
    before_commit: impl FnOnce(i64) -> bool,
) -> Result<Option<Moved>, CopyFailure> {
    let CopyJob {
        table,
        rows,
        format,
    } = *job;
    let tgt_err = |error| CopyFailure {
        on_source: false,
        error,
        commit_in_doubt: false,
        moved: None,
    };
    let begin = match rows {
        Rows::Whole => format!("BEGIN; TRUNCATE ONLY {}", table.qualified_name()),
        Rows::Blocks { .. } => "BEGIN".to_string(),
    };
    target.batch_execute(&begin).await.map_err(tgt_err)?;
    let xid = match rows {
        Rows::Whole => None,
        Rows::Blocks { .. } => Some(
            target
                .query_one("SELECT pg_current_xact_id()::text::bigint", &[])
                .await
                .map_err(tgt_err)?
                .get::<_, i64>(0),
        ),
    };
    let Some(moved) = stream(
        source,
        target,
        &source_sql(table, rows, format),
        &target_sql(table, rows, format),
        cancel,
        &mut progress,
    )
    .await?
    else {
        return Ok(None);
    };
    if cancel.is_cancelled() {
        return Ok(None);
    }
    if let Some(xid) = xid {
        if !before_commit(xid) {
            return Ok(None);
        }
    }
    target
        .batch_execute("COMMIT")
        .await
        .map_err(|error| CopyFailure {
            on_source: false,
            error,
            commit_in_doubt: true,
            moved: Some(moved),
        })?;
    Ok(Some(moved))
}

/// Streams `COPY (source_sql) TO STDOUT` on `source` into
/// `COPY (target_sql) FROM STDIN` on `target`, as raw CopyData, inside
/// whatever transactions the two sessions are in; commits nothing.
/// Returns `None` when cancelled.
pub(crate) async fn stream(
    source: &Client,
    target: &Client,
    source_sql: &str,
    target_sql: &str,
    cancel: &CancellationToken,
    progress: &mut impl FnMut(Moved),
) -> Result<Option<Moved>, CopyFailure> {
    let src_err = |error| CopyFailure {
        on_source: true,
        error,
        commit_in_doubt: false,
        moved: None,
    };
    let tgt_err = |error| CopyFailure {
        on_source: false,
        error,
        commit_in_doubt: false,
        moved: None,
    };
    let sink = target
        .copy_in::<_, bytes::Bytes>(target_sql)
        .await
        .map_err(tgt_err)?;
    let stream = source.copy_out(source_sql).await.map_err(src_err)?;
    futures::pin_mut!(sink, stream);

    let mut moved = Moved::default();
    let mut last = Instant::now();
    let mut messages: u64 = 0;
    // Rows arrive one CopyData message each; they leave in batches, so the
    // target connection writes (and encrypts) large records, not one per row.
    let mut batch = BytesMut::with_capacity(BATCH);
    loop {
        // The common case (data already buffered) skips the select.
        let next = match stream.next().now_or_never() {
            Some(next) => next,
            None => tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(None),
                next = stream.next() => next,
            },
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(src_err)?;
        messages += 1;
        moved.bytes += chunk.len() as u64;
        batch.extend_from_slice(&chunk);
        if batch.len() >= BATCH {
            sink.feed(batch.split().freeze()).await.map_err(tgt_err)?;
            batch.reserve(BATCH);
        }
        if messages % 4096 == 0 {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            if last.elapsed() >= PROGRESS_EVERY {
                last = Instant::now();
                // The server sends one CopyData message per row (binary adds
                // a header and a trailer message): close enough while running.
                moved.rows = messages;
                progress(moved);
            }
        }
    }
    if !batch.is_empty() {
        sink.feed(batch.freeze()).await.map_err(tgt_err)?;
    }
    moved.rows = sink.as_mut().finish().await.map_err(tgt_err)?;
    Ok(Some(moved))
}

/// Whether a failure is worth another attempt on new sessions: the
/// connection was lost or the server ended or cancelled the session
/// (admin shutdown, `pg_terminate_backend`, crash, too many connections,
/// deadlock, serialization failure).
pub(crate) fn is_retryable(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => e.is_closed() || caused_by_io(e),
        Some(code) => {
            let c = code.code();
            c.starts_with("08")
                || c.starts_with("57P")
                || matches!(c, "57014" | "53300" | "40001" | "40P01" | "55P03")
        }
    }
}

/// Whether an I/O error (reset, broken pipe, TLS) is in the error's chain.
fn caused_by_io(e: &tokio_postgres::Error) -> bool {
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if s.is::<std::io::Error>() {
            return true;
        }
        src = s.source();
    }
    false
}

/// Whether the error is PostgreSQL refusing to read a table whose policies
/// would filter rows (`row_security = off`).
pub(crate) fn is_row_security_refusal(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|d| d.code().code() == "42501" && d.message().contains("row-level security"))
}
