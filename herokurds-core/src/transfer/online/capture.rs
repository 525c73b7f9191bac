//! Trigger-based change capture: what a table owner may install on
//! Heroku Postgres, where logical replication is not available.
//!
//! Everything lives in one schema of herokurds' own ([`CAPTURE_SCHEMA`]):
//! - `log`: one row per changed row, written by the changing transaction
//!   itself (so it commits or rolls back with the change): the
//!   transaction id (`xid8`), the table's capture id, and the row's key as
//!   `jsonb`, or `op = 'T'` for a `TRUNCATE`;
//! - `tables`: the capture id, oid and key of every captured table;
//! - per table, one plpgsql function that reads the key columns directly
//!   (no `to_jsonb` of the whole row where a key exists), fired by an
//!   `AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW` trigger named
//!   [`ROW_TRIGGER`], and a statement trigger [`TRUNCATE_TRIGGER`].
//!
//! A table's key is its primary key, else a unique index whose columns are
//! all `NOT NULL` (no expressions, no predicate), else the whole row: the
//! old and the new row as `jsonb`, which costs a scan of that table for
//! each batch applied (`plan` lists those tables with their sizes).
//!
//! The functions skip sessions that set `herokurds.apply = on`: herokurds'
//! own apply sessions, so capture on both sides never loops. The log is a
//! logged table: a crash or failover of the source loses no captured
//! change (an unlogged one would, silently).
//!
//! Everything is removed by [`remove`], which drops the schema with
//! `CASCADE`: the functions, and with them every trigger that calls one.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::OnlineError;
use crate::pg::catalog::{quote_ident, quote_literal, TableInfo};
use crate::transfer::Side;

/// The schema that holds herokurds' capture objects on a database.
pub const CAPTURE_SCHEMA: &str = "herokurds_capture";
/// The row trigger's name on every captured table.
pub const ROW_TRIGGER: &str = "herokurds_capture";
/// The `TRUNCATE` statement trigger's name on every captured table.
pub const TRUNCATE_TRIGGER: &str = "herokurds_capture_truncate";

/// How long capture DDL waits for a table lock before giving up and
/// trying again. `CREATE TRIGGER` and `DROP TRIGGER` queue behind the
/// app's writers, and the app's next writes queue behind them: the wait
/// must stay short, and below the server's `deadlock_timeout` (1 s by
/// default), so that herokurds gives up before any of the app's sessions
/// runs the deadlock check and is the one cancelled.
const LOCK_TIMEOUT: &str = "500ms";
/// How often installing or removing capture on one table is tried.
const LOCK_ATTEMPTS: u32 = 60;

/// Whether a schema object (as the verification names it: `kind` and
/// qualified name) is one of herokurds' capture objects.
pub fn is_capture_object(kind: &str, name: &str) -> bool {
    // The names are plain lower-case words: the server never quotes them.
    name == CAPTURE_SCHEMA
        || name.starts_with(&format!("{CAPTURE_SCHEMA}."))
        || (kind == "trigger"
            && (name.ends_with(&format!(".{ROW_TRIGGER}"))
                || name.ends_with(&format!(".{TRUNCATE_TRIGGER}"))))
}

/// One key column of a captured table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyColumn {
    /// The column's name, unquoted.
    pub name: String,
    /// Its type, schema-qualified where needed (`format_type` with an
    /// empty `search_path`).
    pub type_name: String,
}

/// How a captured table's rows are identified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum RowKey {
    /// The primary key, or a unique index over `NOT NULL` columns.
    Columns {
        /// The key's columns, in index order.
        columns: Vec<KeyColumn>,
    },
    /// No usable key: the whole row (old and new) is logged.
    WholeRow,
}

/// A table under capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedTable {
    /// Its id in the log (`tbl`).
    pub id: i32,
    /// Schema name, unquoted.
    pub schema: String,
    /// Table name, unquoted.
    pub name: String,
    /// How its rows are identified.
    pub key: RowKey,
}

impl CapturedTable {
    /// `"schema"."name"`, quoted for SQL.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// Whether the table has a key (else whole rows are logged).
    pub fn has_key(&self) -> bool {
        matches!(self.key, RowKey::Columns { .. })
    }

    /// The condition that selects, in `FROM ONLY t AS herokurds_row`, the
    /// rows whose keys are in `keys` (a `jsonb` array expression: a bind
    /// parameter or a literal).
    pub(crate) fn match_sql(&self, keys: &str) -> String {
        match &self.key {
            RowKey::Columns { columns } => {
                let cols = columns
                    .iter()
                    .map(|c| quote_ident(&c.name))
                    .collect::<Vec<_>>();
                let defs = columns
                    .iter()
                    .map(|c| format!("{} {}", quote_ident(&c.name), c.type_name))
                    .collect::<Vec<_>>()
                    .join(", ");
                let row = |alias: &str| {
                    cols.iter()
                        .map(|c| format!("{alias}.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!(
                    "({}) IN (SELECT {} FROM pg_catalog.jsonb_to_recordset({keys}) AS k({defs}))",
                    row("herokurds_row"),
                    row("k")
                )
            }
            RowKey::WholeRow => format!(
                "pg_catalog.to_jsonb(herokurds_row) IN \
                 (SELECT pg_catalog.jsonb_array_elements({keys}))"
            ),
        }
    }
}

impl std::fmt::Display for CapturedTable {
    /// `schema.name`, unquoted, for messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Each table's key, read from the catalog: `tables` are the tables to
/// capture (the transfer's tables that hold rows), ids given in order.
pub(crate) async fn keys(
    client: &Client,
    tables: &[&TableInfo],
) -> Result<Vec<CapturedTable>, OnlineError> {
    let oids: Vec<u32> = tables.iter().map(|t| t.oid).collect();
    // format_type qualifies every type outside pg_catalog under an empty
    // search_path; the transaction keeps the setting local.
    client
        .batch_execute("BEGIN; SELECT pg_catalog.set_config('search_path', '', true)")
        .await
        .map_err(OnlineError::query(Side::Source, "reading the tables' keys"))?;
    let rows = client
        .query(
            "SELECT c.oid,
                    (SELECT array_agg(a.attname::text ORDER BY k.ord)
                     FROM pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                     WHERE k.ord <= i.indnkeyatts),
                    (SELECT array_agg(pg_catalog.format_type(a.atttypid, a.atttypmod) ORDER BY k.ord)
                     FROM pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                     WHERE k.ord <= i.indnkeyatts)
             FROM pg_catalog.unnest($1::oid[]) AS c(oid)
             LEFT JOIN LATERAL (
               SELECT i.* FROM pg_catalog.pg_index i
               WHERE i.indrelid = c.oid AND i.indisvalid AND i.indimmediate
                 AND (i.indisprimary OR (i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
                      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                                      WHERE a.attrelid = c.oid
                                        AND a.attnum = ANY (i.indkey::int2[])
                                        AND NOT a.attnotnull)))
               ORDER BY i.indisprimary DESC, i.indnkeyatts, i.indexrelid
               LIMIT 1) i ON true",
            &[&oids],
        )
        .await;
    let _ = client.batch_execute("ROLLBACK").await;
    let rows = rows.map_err(OnlineError::query(Side::Source, "reading the tables' keys"))?;
    let mut by_oid = std::collections::HashMap::new();
    for r in rows {
        let oid: u32 = r.get(0);
        let names: Option<Vec<String>> = r.get(1);
        let types: Option<Vec<String>> = r.get(2);
        by_oid.insert(
            oid,
            names
                .zip(types)
                .map(|(n, t)| n.into_iter().zip(t).collect::<Vec<_>>()),
        );
    }
    Ok(tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let key = match by_oid.get(&t.oid).cloned().flatten() {
                Some(cols) if !cols.is_empty() => RowKey::Columns {
                    columns: cols
                        .into_iter()
                        .map(|(name, type_name)| KeyColumn { name, type_name })
                        .collect(),
                },
                _ => RowKey::WholeRow,
            };
            CapturedTable {
                id: i as i32 + 1,
                schema: t.schema.clone(),
                name: t.name.clone(),
                key,
            }
        })
        .collect())
}

/// The schema, the log and the registry.
fn base_sql() -> String {
    let s = quote_ident(CAPTURE_SCHEMA);
    format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.log (
           txid pg_catalog.xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
           tbl int4 NOT NULL,
           op \"char\" NOT NULL,
           k jsonb);
         CREATE TABLE IF NOT EXISTS {s}.tables (
           id int4 PRIMARY KEY, relid oid NOT NULL, key jsonb NOT NULL);
         GRANT USAGE ON SCHEMA {s} TO PUBLIC;
         GRANT INSERT ON {s}.log TO PUBLIC;
         CREATE OR REPLACE FUNCTION {s}.truncated() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN
           IF pg_catalog.current_setting('herokurds.apply', true) = 'on' THEN RETURN NULL; END IF;
           INSERT INTO {s}.log (tbl, op) VALUES (TG_ARGV[0]::int4, 'T');
           RETURN NULL;
         END $f$;"
    )
}

/// The row function and both triggers of one table.
fn table_sql(t: &CapturedTable) -> String {
    let s = quote_ident(CAPTURE_SCHEMA);
    let f = format!("{s}.c{}", t.id);
    let log = |rec: &str| match &t.key {
        RowKey::Columns { columns } => {
            let mut pairs = String::new();
            for (i, c) in columns.iter().enumerate() {
                if i > 0 {
                    pairs.push_str(", ");
                }
                let _ = write!(
                    pairs,
                    "{}, {rec}.{}",
                    quote_literal(&c.name),
                    quote_ident(&c.name)
                );
            }
            format!(
                "INSERT INTO {s}.log (tbl, op, k) VALUES ({}, 'R', pg_catalog.jsonb_build_object({pairs}));",
                t.id
            )
        }
        RowKey::WholeRow => format!(
            "INSERT INTO {s}.log (tbl, op, k) VALUES ({}, 'R', pg_catalog.to_jsonb({rec}));",
            t.id
        ),
    };
    let key_changed = match &t.key {
        RowKey::Columns { columns } => {
            let row = |rec: &str| {
                columns
                    .iter()
                    .map(|c| format!("{rec}.{}", quote_ident(&c.name)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!("ROW({}) IS DISTINCT FROM ROW({})", row("NEW"), row("OLD"))
        }
        RowKey::WholeRow => "true".into(),
    };
    let table = t.qualified_name();
    format!(
        "CREATE OR REPLACE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN
           IF pg_catalog.current_setting('herokurds.apply', true) = 'on' THEN RETURN NULL; END IF;
           IF TG_OP = 'INSERT' THEN
             {new}
           ELSIF TG_OP = 'DELETE' THEN
             {old}
           ELSE
             {old}
             IF {key_changed} THEN
               {new}
             END IF;
           END IF;
           RETURN NULL;
         END $f$;
         DROP TRIGGER IF EXISTS {row} ON {table};
         CREATE TRIGGER {row} AFTER INSERT OR UPDATE OR DELETE ON {table}
           FOR EACH ROW EXECUTE FUNCTION {f}();
         DROP TRIGGER IF EXISTS {trunc} ON {table};
         CREATE TRIGGER {trunc} AFTER TRUNCATE ON {table}
           FOR EACH STATEMENT EXECUTE FUNCTION {s}.truncated('{id}');
         INSERT INTO {s}.tables (id, relid, key) VALUES ({id}, {oid}::regclass, {key})
           ON CONFLICT (id) DO UPDATE SET relid = EXCLUDED.relid, key = EXCLUDED.key;",
        new = log("NEW"),
        old = log("OLD"),
        row = quote_ident(ROW_TRIGGER),
        trunc = quote_ident(TRUNCATE_TRIGGER),
        id = t.id,
        oid = quote_literal(&table),
        key = quote_literal(&serde_json::to_string(&t.key).unwrap_or_default()),
    )
}

/// Installs capture on every table of `tables` (each in its own short
/// transaction, waiting at most [`LOCK_TIMEOUT`] for its lock, tried again
/// up to [`LOCK_ATTEMPTS`] times). Installing again is harmless: every
/// statement replaces what is there.
///
/// `CREATE TRIGGER` waits for the transactions that are writing the table;
/// once it holds, every later write is logged. So a snapshot taken after
/// this returns sees every change it does not contain in the log.
pub(crate) async fn install(
    client: &Client,
    tables: &[CapturedTable],
    mut installed: impl FnMut(&CapturedTable),
) -> Result<(), OnlineError> {
    with_lock_retries(client, &base_sql(), "creating the capture schema").await?;
    for t in tables {
        with_lock_retries(client, &table_sql(t), &format!("installing capture on {t}")).await?;
        installed(t);
    }
    Ok(())
}

/// Runs `sql` in one transaction with a short lock timeout, again while it
/// fails on that timeout (or a deadlock).
async fn with_lock_retries(client: &Client, sql: &str, what: &str) -> Result<(), OnlineError> {
    let mut attempt = 1;
    loop {
        let r = client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL lock_timeout = {}; {sql}; COMMIT",
                quote_literal(LOCK_TIMEOUT)
            ))
            .await;
        match r {
            Ok(()) => return Ok(()),
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                let waiting = e
                    .code()
                    .is_some_and(|c| matches!(c.code(), "55P03" | "40P01"));
                if !waiting || attempt >= LOCK_ATTEMPTS {
                    return Err(OnlineError::query(Side::Source, what.to_string())(e));
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Removes every capture object from the database `client` is on. First
/// the triggers, one table per transaction (each takes that table's lock
/// alone, with [`LOCK_TIMEOUT`], so it never holds one table while waiting
/// for another: the app's multi-table transactions cannot deadlock with
/// it), then the schema with `CASCADE` (the log, the registry, the
/// functions: nothing the app touches once no trigger calls them).
/// Removing what is not there is not an error.
pub async fn remove(client: &Client) -> Result<(), OnlineError> {
    let tables = client
        .query(
            "SELECT DISTINCT t.tgrelid::regclass::text FROM pg_catalog.pg_trigger t
             JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
             JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = $1",
            &[&CAPTURE_SCHEMA],
        )
        .await
        .map_err(OnlineError::query(Side::Source, "listing capture triggers"))?;
    for row in &tables {
        let table: String = row.get(0);
        with_lock_retries(
            client,
            &format!(
                "DROP TRIGGER IF EXISTS {} ON {table}; DROP TRIGGER IF EXISTS {} ON {table}",
                quote_ident(ROW_TRIGGER),
                quote_ident(TRUNCATE_TRIGGER)
            ),
            &format!("removing capture from {table}"),
        )
        .await?;
    }
    with_lock_retries(
        client,
        &format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            quote_ident(CAPTURE_SCHEMA)
        ),
        "removing capture (DROP SCHEMA herokurds_capture CASCADE)",
    )
    .await
}

/// Every capture object on the database `client` is on, as
/// `kind name` lines (`schema herokurds_capture`, `trigger public.t.herokurds_capture`,
/// ...): empty once [`remove`] ran.
pub async fn leftovers(client: &Client) -> Result<Vec<String>, OnlineError> {
    let rows = client
        .query(
            "SELECT 'schema ' || n.nspname FROM pg_catalog.pg_namespace n WHERE n.nspname = $1
             UNION ALL
             SELECT 'trigger ' || t.tgrelid::regclass::text || '.' || t.tgname
             FROM pg_catalog.pg_trigger t WHERE t.tgname IN ($2, $3)
             UNION ALL
             SELECT 'function ' || p.oid::regprocedure::text
             FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = $1
             UNION ALL
             SELECT 'relation ' || c.oid::regclass::text
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1
             ORDER BY 1",
            &[&CAPTURE_SCHEMA, &ROW_TRIGGER, &TRUNCATE_TRIGGER],
        )
        .await
        .map_err(OnlineError::query(Side::Source, "listing capture objects"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(key: RowKey) -> CapturedTable {
        CapturedTable {
            id: 3,
            schema: "public".into(),
            name: "Order".into(),
            key,
        }
    }

    #[test]
    fn capture_objects_are_recognised_by_schema_and_trigger_name() {
        assert!(is_capture_object("schema", "herokurds_capture"));
        assert!(is_capture_object("function", "herokurds_capture.c1()"));
        assert!(is_capture_object(
            "trigger",
            "public.orders.herokurds_capture"
        ));
        assert!(is_capture_object(
            "trigger",
            "public.orders.herokurds_capture_truncate"
        ));
        assert!(!is_capture_object("trigger", "public.orders.audit"));
        assert!(!is_capture_object(
            "table",
            "public.herokurds_capture_notes"
        ));
    }

    #[test]
    fn keyed_tables_match_on_their_columns_and_others_on_the_whole_row() {
        let t = table(RowKey::Columns {
            columns: vec![
                KeyColumn {
                    name: "id".into(),
                    type_name: "integer".into(),
                },
                KeyColumn {
                    name: "Region".into(),
                    type_name: "public.region".into(),
                },
            ],
        });
        assert_eq!(
            t.match_sql("$1::jsonb"),
            "(herokurds_row.\"id\", herokurds_row.\"Region\") IN (SELECT k.\"id\", k.\"Region\" FROM \
             pg_catalog.jsonb_to_recordset($1::jsonb) AS k(\"id\" integer, \"Region\" public.region))"
        );
        let sql = table_sql(&t);
        assert!(sql
            .contains("pg_catalog.jsonb_build_object('id', NEW.\"id\", 'Region', NEW.\"Region\")"));
        assert!(sql.contains(
            "ROW(NEW.\"id\", NEW.\"Region\") IS DISTINCT FROM ROW(OLD.\"id\", OLD.\"Region\")"
        ));
        let w = table(RowKey::WholeRow);
        assert!(w
            .match_sql("$1")
            .starts_with("pg_catalog.to_jsonb(herokurds_row) IN"));
        assert!(table_sql(&w).contains("pg_catalog.to_jsonb(OLD)"));
        assert!(table_sql(&w).contains("ON \"public\".\"Order\""));
    }
}
