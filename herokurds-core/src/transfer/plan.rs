//! What the data phase will do: copy tasks (whole tables or `ctid`
//! slices), each table's own indexes and constraints to build as soon as
//! its rows are in, and the post-data entries that wait for all data.
//!
//! A post-data entry is built early, by the index jobs while other tables
//! still copy, when it is an `INDEX` or a `PRIMARY KEY`/`UNIQUE`/`EXCLUDE`
//! `CONSTRAINT` of an ordinary table (a leaf partition included) and
//! depends on no other post-data entry. Primary keys and unique
//! constraints on plain b-tree indexes are built as `CREATE UNIQUE INDEX`
//! (which, holding only a SHARE lock, runs alongside the table's other
//! index builds) followed by `ALTER TABLE ... ADD CONSTRAINT ... USING
//! INDEX`, which is instant. Everything else — foreign keys, triggers,
//! rules, policies, indexes of partitioned tables and their attachments,
//! `NOT VALID` checks, materialized-view refreshes (last) — runs after all
//! data, in dependency order, several at once.

use std::collections::{HashMap, HashSet};

use tokio_postgres::Client;

use super::copy::Rows;
use super::error::{Side, TransferError};
use super::report::Slice;
use super::schema::PostDataEntry;
use crate::pg::catalog::{quote_ident, TableInfo};

/// One unit of copying.
#[derive(Debug, Clone)]
pub(crate) struct CopyTask {
    /// Index into the plan's tables.
    pub(crate) table: usize,
    pub(crate) rows: Rows,
    pub(crate) slice: Option<Slice>,
}

/// How an early entry is built.
#[derive(Debug, Clone)]
pub(crate) enum EarlySteps {
    /// The entry's SQL as pg_dump wrote it.
    Sql(String),
    /// `CREATE UNIQUE INDEX`, then (unless the constraint exists already)
    /// `ALTER TABLE ... ADD CONSTRAINT ... USING INDEX`.
    UniqueViaIndex {
        create_index: String,
        /// `"schema"."index"`.
        index: String,
        /// `"schema"."table"`.
        table: String,
        constraint: String,
        add_constraint: String,
    },
    /// `ANALYZE` of a table once its indexes are built (not journaled:
    /// redoing it is harmless).
    Analyze(String),
}

/// A post-data entry of one table, built once its rows are in.
#[derive(Debug, Clone)]
pub(crate) struct EarlyItem {
    /// The TOC entry, journaled when built (`None` for `ANALYZE`).
    pub(crate) dump_id: Option<i32>,
    /// `schema.name` of the table.
    pub(crate) table: String,
    pub(crate) label: String,
    pub(crate) steps: EarlySteps,
}

/// The block boundaries splitting a table of `heap_blocks` blocks into
/// `n` slices: `n - 1` inner boundaries, ascending.
pub(crate) fn slice_bounds(heap_blocks: i64, n: u32) -> Vec<i64> {
    (1..n as i64).map(|i| i * heap_blocks / n as i64).collect()
}

/// How many slices a table is cut into: one unless its size exceeds the
/// threshold, then one per threshold's worth (at most one per block).
pub(crate) fn slice_count(table: &TableInfo, threshold: u64) -> u32 {
    let bytes = table.table_bytes.max(0) as u64;
    if bytes <= threshold || table.heap_blocks < 2 {
        return 1;
    }
    let n = bytes.div_ceil(threshold).max(2);
    n.min(table.heap_blocks as u64).min(10_000) as u32
}

/// The copy tasks of a table cut at `bounds` (empty: whole).
pub(crate) fn tasks_for(table: usize, bounds: &[i64]) -> Vec<CopyTask> {
    if bounds.is_empty() {
        return vec![CopyTask {
            table,
            rows: Rows::Whole,
            slice: None,
        }];
    }
    let count = bounds.len() as u32 + 1;
    (0..count)
        .map(|i| CopyTask {
            table,
            rows: Rows::Blocks {
                from: (i > 0).then(|| bounds[i as usize - 1]),
                to: bounds.get(i as usize).copied(),
            },
            slice: Some(Slice {
                index: i + 1,
                count,
            }),
        })
        .collect()
}

/// Post-data entries split into per-table early items and the rest.
pub(crate) struct PostDataPlan {
    /// By source table oid.
    pub(crate) early: HashMap<u32, Vec<EarlyItem>>,
    pub(crate) late: Vec<PostDataEntry>,
}

/// Sorts the entries into early items (per table) and late ones, looking
/// up on the source (inside the snapshot) which table each index and
/// constraint belongs to.
pub(crate) async fn classify(
    snapshot_client: &Client,
    entries: Vec<PostDataEntry>,
    tables: &[TableInfo],
) -> Result<PostDataPlan, TransferError> {
    let q = |what: &'static str| TransferError::query(Side::Source, what);
    let ids: HashSet<i32> = entries.iter().map(|e| e.dump_id).collect();
    let index_oids: Vec<u32> = entries
        .iter()
        .filter(|e| e.desc == "INDEX" && e.class_oid == 1259)
        .map(|e| e.obj_oid)
        .collect();
    let constraint_oids: Vec<u32> = entries
        .iter()
        .filter(|e| e.desc == "CONSTRAINT" && e.class_oid == 2606)
        .map(|e| e.obj_oid)
        .collect();
    // Fully qualified definitions, as pg_dump writes them.
    snapshot_client
        .batch_execute("SELECT pg_catalog.set_config('search_path', '', true)")
        .await
        .map_err(q("setting search_path"))?;
    let index_table: HashMap<u32, u32> = snapshot_client
        .query(
            "SELECT indexrelid, indrelid FROM pg_catalog.pg_index WHERE indexrelid = ANY($1)",
            &[&index_oids],
        )
        .await
        .map_err(q("looking up indexes"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    struct Con {
        table: u32,
        contype: String,
        deferrable: bool,
        deferred: bool,
        name: String,
        index_name: Option<String>,
        index_def: Option<String>,
        plain_btree: bool,
    }
    let constraints: HashMap<u32, Con> = snapshot_client
        .query(
            "SELECT c.oid, c.conrelid, c.contype::text, c.condeferrable, c.condeferred,
                    c.conname::text, i.relname::text,
                    CASE WHEN c.conindid <> 0 THEN pg_catalog.pg_get_indexdef(c.conindid) END,
                    c.conindid <> 0 AND am.amname = 'btree'
                      AND pg_catalog.pg_get_constraintdef(c.oid) !~ '(INCLUDE|NULLS NOT DISTINCT|WITH \\()'
             FROM pg_catalog.pg_constraint c
             LEFT JOIN pg_catalog.pg_class i ON i.oid = c.conindid
             LEFT JOIN pg_catalog.pg_am am ON am.oid = i.relam
             WHERE c.oid = ANY($1)",
            &[&constraint_oids],
        )
        .await
        .map_err(q("looking up constraints"))?
        .iter()
        .map(|r| {
            (
                r.get(0),
                Con {
                    table: r.get(1),
                    contype: r.get(2),
                    deferrable: r.get(3),
                    deferred: r.get(4),
                    name: r.get(5),
                    index_name: r.get(6),
                    index_def: r.get(7),
                    plain_btree: r.get::<_, Option<bool>>(8).unwrap_or(false),
                },
            )
        })
        .collect();
    let by_oid: HashMap<u32, &TableInfo> = tables
        .iter()
        .filter(|t| t.holds_rows())
        .map(|t| (t.oid, t))
        .collect();

    let mut plan = PostDataPlan {
        early: HashMap::new(),
        late: Vec::new(),
    };
    for entry in entries {
        let standalone = entry.deps.iter().all(|d| !ids.contains(d));
        let early = match (entry.desc.as_str(), standalone) {
            ("INDEX", true) => index_table
                .get(&entry.obj_oid)
                .and_then(|t| by_oid.get(t))
                .map(|t| (*t, EarlySteps::Sql(entry.sql.clone()))),
            ("CONSTRAINT", true) => constraints
                .get(&entry.obj_oid)
                .filter(|c| matches!(c.contype.as_str(), "p" | "u" | "x"))
                .and_then(|c| Some((*by_oid.get(&c.table)?, c)))
                .map(|(t, c)| {
                    let steps = match (&c.index_def, &c.index_name) {
                        (Some(def), Some(index)) if c.contype != "x" && c.plain_btree => {
                            EarlySteps::UniqueViaIndex {
                                create_index: def.clone(),
                                index: format!("{}.{}", quote_ident(&t.schema), quote_ident(index)),
                                table: t.qualified_name(),
                                constraint: c.name.clone(),
                                add_constraint: format!(
                                    "ALTER TABLE ONLY {} ADD CONSTRAINT {} {} USING INDEX {}{}",
                                    t.qualified_name(),
                                    quote_ident(&c.name),
                                    if c.contype == "p" {
                                        "PRIMARY KEY"
                                    } else {
                                        "UNIQUE"
                                    },
                                    quote_ident(index),
                                    match (c.deferrable, c.deferred) {
                                        (true, true) => " DEFERRABLE INITIALLY DEFERRED",
                                        (true, false) => " DEFERRABLE",
                                        _ => "",
                                    }
                                ),
                            }
                        }
                        _ => EarlySteps::Sql(entry.sql.clone()),
                    };
                    (t, steps)
                }),
            _ => None,
        };
        match early {
            Some((table, steps)) => plan.early.entry(table.oid).or_default().push(EarlyItem {
                dump_id: Some(entry.dump_id),
                table: table.to_string(),
                label: entry.label(),
                steps,
            }),
            None => plan.late.push(entry),
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_every_block_once() {
        assert_eq!(slice_bounds(100, 4), [25, 50, 75]);
        let tasks = tasks_for(7, &[25, 50, 75]);
        assert_eq!(tasks.len(), 4);
        assert_eq!(
            tasks[0].rows,
            Rows::Blocks {
                from: None,
                to: Some(25)
            }
        );
        assert_eq!(
            tasks[3].rows,
            Rows::Blocks {
                from: Some(75),
                to: None
            }
        );
        assert_eq!(tasks[3].slice, Some(Slice { index: 4, count: 4 }));
        let whole = tasks_for(1, &[]);
        assert_eq!(whole[0].rows, Rows::Whole);
        assert!(whole[0].slice.is_none());
    }
}
