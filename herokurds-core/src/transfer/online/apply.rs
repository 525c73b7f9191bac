//! Catch-up rounds: the changes logged between two source snapshots,
//! applied to the target by key.
//!
//! A round opens a `REPEATABLE READ` transaction on the source; its
//! snapshot `S` is the round's. The log rows visible in `S` but not in the
//! last applied snapshot `P` are exactly the changes committed between the
//! two (a log row commits with its change). For each table they touch, in
//! one target transaction: the keys' rows are deleted on the target and
//! copied again from the source as `S` sees them (`COPY (SELECT ... WHERE
//! key IN ...)`, piped raw as in the copy); a table truncated in between
//! is emptied and copied whole. Rows not touched were the same in `P` and
//! `S`, so afterwards the target equals the source as of `S`. Applying a
//! round twice gives the same result, so a round whose journal entry was
//! lost is simply done again.

use std::collections::HashMap;
use std::time::Instant;

use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::capture::{CapturedTable, CAPTURE_SCHEMA};
use super::OnlineError;
use crate::pg::catalog::{self, quote_ident, quote_literal, TableFilter, TableInfo};
use crate::transfer::copy::{self, effective_format, Rows};
use crate::transfer::{CopyFormat, Side};

/// The log rows committed after snapshot `$1` (text): not visible in it.
/// Rows older than its `xmin` are visible in it by definition.
const AFTER_SNAPSHOT: &str = "txid >= pg_catalog.pg_snapshot_xmin($1::text::pg_snapshot) \
     AND NOT pg_catalog.pg_visible_in_snapshot(txid, $1::text::pg_snapshot)";

/// Keys per statement: large enough for few round trips, small enough
/// for a readable plan and a bounded SQL text.
const KEYS_PER_CHUNK: usize = 10_000;

/// The source's current description of each captured table, by capture id.
pub(crate) type Infos = HashMap<i32, TableInfo>;

/// Reads the captured tables' columns on the source.
pub(crate) async fn table_infos(
    src: &Client,
    tables: &[CapturedTable],
) -> Result<Infos, OnlineError> {
    let all = catalog::tables(src, &TableFilter::new())
        .await
        .map_err(|e| crate::transfer::TransferError::Query {
            side: Side::Source,
            what: "reading the captured tables".into(),
            message: e.to_string(),
        })?;
    let by_name: HashMap<(String, String), TableInfo> = all
        .into_iter()
        .map(|t| ((t.schema.clone(), t.name.clone()), t))
        .collect();
    let mut out = HashMap::new();
    for t in tables {
        if let Some(info) = by_name.get(&(t.schema.clone(), t.name.clone())) {
            out.insert(t.id, info.clone());
        }
    }
    Ok(out)
}

/// What a round did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Round {
    /// The round's snapshot (`pg_current_snapshot()` text).
    pub(crate) snapshot: String,
    /// The exported snapshot id, when asked for.
    pub(crate) exported: Option<String>,
    /// Log rows read.
    pub(crate) changes: u64,
    /// Distinct keys applied.
    pub(crate) keys: u64,
    /// Tables touched.
    pub(crate) tables: usize,
    /// Their capture ids.
    pub(crate) table_ids: Vec<i32>,
    /// Bytes copied from the source (`COPY` text or binary).
    pub(crate) bytes: u64,
    pub(crate) seconds: f64,
}

/// One table's changes in a round.
pub(crate) struct TableChanges {
    pub(crate) id: i32,
    pub(crate) truncated: bool,
    pub(crate) changes: u64,
    pub(crate) keys: Vec<serde_json::Value>,
}

/// The changes visible in the current transaction's snapshot and not in
/// `since`, per table.
pub(crate) async fn changes_since(
    src: &Client,
    since: &str,
) -> Result<Vec<TableChanges>, OnlineError> {
    let rows = src
        .query(
            &format!(
                "SELECT tbl, bool_or(op = 'T'), count(*)::int8,
                        coalesce(jsonb_agg(DISTINCT k) FILTER (WHERE k IS NOT NULL), '[]')
                 FROM {}.log WHERE {AFTER_SNAPSHOT}
                 GROUP BY tbl ORDER BY tbl",
                quote_ident(CAPTURE_SCHEMA)
            ),
            &[&since],
        )
        .await
        .map_err(OnlineError::query(Side::Source, "reading the change log"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let keys: serde_json::Value = r.get(3);
            TableChanges {
                id: r.get(0),
                truncated: r.get(1),
                changes: r.get::<_, i64>(2) as u64,
                keys: match keys {
                    serde_json::Value::Array(a) => a,
                    _ => Vec::new(),
                },
            }
        })
        .collect())
}

/// Runs one round (see the module documentation) on `src` (a session
/// with no open transaction; it is left inside the round's snapshot
/// transaction for the caller to end) and `tgt`.
pub(crate) async fn round(
    src: &Client,
    tgt: &Client,
    tables: &[CapturedTable],
    infos: &Infos,
    since: &str,
    export: bool,
    format: CopyFormat,
) -> Result<Round, OnlineError> {
    let started = Instant::now();
    let q = |what: &'static str| OnlineError::query(Side::Source, what);
    src.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(q("opening a catch-up round"))?;
    let exported = if export {
        Some(
            src.query_one("SELECT pg_catalog.pg_export_snapshot()", &[])
                .await
                .map_err(q("exporting the cut's snapshot"))?
                .get::<_, String>(0),
        )
    } else {
        None
    };
    let snapshot: String = src
        .query_one("SELECT pg_catalog.pg_current_snapshot()::text", &[])
        .await
        .map_err(q("reading the round's snapshot"))?
        .get(0);
    let changes = changes_since(src, since).await?;
    let mut round = Round {
        snapshot,
        exported,
        tables: changes.len(),
        table_ids: changes.iter().map(|c| c.id).collect(),
        ..Round::default()
    };
    if changes.is_empty() {
        round.seconds = started.elapsed().as_secs_f64();
        return Ok(round);
    }
    let by_id: HashMap<i32, &CapturedTable> = tables.iter().map(|t| (t.id, t)).collect();
    let t = |what: String| OnlineError::query(Side::Target, what);
    tgt.batch_execute("BEGIN; SET LOCAL synchronous_commit = on; SET LOCAL herokurds.apply = 'on'")
        .await
        .map_err(t("opening the apply transaction".into()))?;
    for ch in &changes {
        round.changes += ch.changes;
        let (Some(table), Some(info)) = (by_id.get(&ch.id), infos.get(&ch.id)) else {
            let _ = tgt.batch_execute("ROLLBACK").await;
            return Err(OnlineError::OutOfOrder {
                step: "applying a change of a table not captured",
                needs: "the table in the capture registry",
            });
        };
        match apply_table(src, tgt, table, info, ch, format).await {
            Ok(bytes) => round.bytes += bytes,
            Err(e) => {
                // Nothing of the round stays on the target.
                let _ = tgt.batch_execute("ROLLBACK").await;
                return Err(e);
            }
        }
        round.keys += if ch.truncated {
            0
        } else {
            ch.keys.len() as u64
        };
    }
    tgt.batch_execute("COMMIT")
        .await
        .map_err(t("committing a catch-up round".into()))?;
    round.seconds = started.elapsed().as_secs_f64();
    Ok(round)
}

/// Applies one table's changes inside the open transactions; returns the
/// bytes copied.
async fn apply_table(
    src: &Client,
    tgt: &Client,
    table: &CapturedTable,
    info: &TableInfo,
    ch: &TableChanges,
    format: CopyFormat,
) -> Result<u64, OnlineError> {
    let format = effective_format(info, format);
    let name = table.qualified_name();
    let target_sql = copy::target_sql(
        info,
        Rows::Blocks {
            from: None,
            to: None,
        },
        format,
    );
    let cancel = CancellationToken::new();
    let failed = |what: String| {
        move |f: copy::CopyFailure| OnlineError::Query {
            side: if f.on_source {
                Side::Source
            } else {
                Side::Target
            },
            what,
            message: copy::message(&f.error),
            source: f.error,
        }
    };
    if ch.truncated {
        tgt.batch_execute(&format!("TRUNCATE ONLY {name}"))
            .await
            .map_err(OnlineError::query(
                Side::Target,
                format!("emptying {table}"),
            ))?;
        let moved = copy::stream(
            src,
            tgt,
            &copy::source_sql(info, Rows::Whole, format),
            &target_sql,
            &cancel,
            &mut |_| {},
        )
        .await
        .map_err(failed(format!(
            "copying {table} again (truncated on the source)"
        )))?;
        return Ok(moved.map_or(0, |m| m.bytes));
    }
    let mut bytes = 0;
    for chunk in ch.keys.chunks(KEYS_PER_CHUNK) {
        let keys = serde_json::Value::Array(chunk.to_vec());
        tgt.execute(
            &format!(
                "DELETE FROM ONLY {name} AS herokurds_row WHERE {}",
                table.match_sql("$1::jsonb")
            ),
            &[&keys],
        )
        .await
        .map_err(OnlineError::query(
            Side::Target,
            format!("deleting changed rows of {table}"),
        ))?;
        let literal = format!("{}::jsonb", quote_literal(&keys.to_string()));
        let source_sql = format!(
            "COPY (SELECT {} FROM ONLY {name} AS herokurds_row WHERE {}) TO STDOUT{}",
            copy_columns(info),
            table.match_sql(&literal),
            copy::format_options(format, false)
        );
        let moved = copy::stream(src, tgt, &source_sql, &target_sql, &cancel, &mut |_| {})
            .await
            .map_err(failed(format!("copying changed rows of {table}")))?;
        bytes += moved.map_or(0, |m| m.bytes);
    }
    Ok(bytes)
}

/// The copied columns, qualified with the row alias.
fn copy_columns(info: &TableInfo) -> String {
    info.columns
        .iter()
        .map(|c| format!("herokurds_row.{}", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Deletes the log rows visible in `upto` (applied, or verified at the cut).
pub(crate) async fn trim(src: &Client, upto: &str) -> Result<(), OnlineError> {
    src.execute(
        &format!(
            "DELETE FROM {}.log WHERE txid < pg_catalog.pg_snapshot_xmin($1::text::pg_snapshot)
               OR pg_catalog.pg_visible_in_snapshot(txid, $1::text::pg_snapshot)",
            quote_ident(CAPTURE_SCHEMA)
        ),
        &[&upto],
    )
    .await
    .map_err(OnlineError::query(Side::Source, "trimming the change log"))?;
    Ok(())
}

/// Log rows committed after `since`.
pub(crate) async fn count_since(src: &Client, since: &str) -> Result<i64, OnlineError> {
    Ok(src
        .query_one(
            &format!(
                "SELECT count(*)::int8 FROM {}.log WHERE {AFTER_SNAPSHOT}",
                quote_ident(CAPTURE_SCHEMA)
            ),
            &[&since],
        )
        .await
        .map_err(OnlineError::query(Side::Source, "counting logged changes"))?
        .get(0))
}

/// [`OnlineError::StillWriting`] when anything was logged after `since`.
pub(crate) async fn check_quiet(
    src: &Client,
    tables: &[CapturedTable],
    since: &str,
) -> Result<(), OnlineError> {
    let rows = src
        .query(
            &format!(
                "SELECT tbl, count(*)::int8 FROM {}.log WHERE {AFTER_SNAPSHOT}
                 GROUP BY tbl ORDER BY tbl",
                quote_ident(CAPTURE_SCHEMA)
            ),
            &[&since],
        )
        .await
        .map_err(OnlineError::query(Side::Source, "reading the change log"))?;
    if rows.is_empty() {
        return Ok(());
    }
    let names: HashMap<i32, String> = tables.iter().map(|t| (t.id, t.to_string())).collect();
    let mut changes = 0;
    let mut written = Vec::new();
    for r in &rows {
        let (id, n): (i32, i64) = (r.get(0), r.get(1));
        changes += n as u64;
        written.push(format!(
            "{} ({n})",
            names
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("table #{id}"))
        ));
    }
    Err(OnlineError::StillWriting {
        changes,
        tables: written,
    })
}
