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

/// A post-data entry run during the data phase, as soon as the tables it
/// touches hold their rows and the entries it depends on are done.
#[derive(Debug, Clone)]
pub(crate) struct EarlyItem {
    /// The TOC entry, journaled when built (`None` for `ANALYZE`).
    pub(crate) dump_id: Option<i32>,
    /// `schema.name` of the (first) table, for progress.
    pub(crate) table: String,
    pub(crate) label: String,
    pub(crate) steps: EarlySteps,
    /// Source oids of the tables whose rows must be in first.
    pub(crate) tables: Vec<u32>,
    /// Post-data entries (dump ids) that must be done first.
    pub(crate) deps: Vec<i32>,
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

/// Post-data entries split into early items and the rest.
pub(crate) struct PostDataPlan {
    pub(crate) early: Vec<EarlyItem>,
    pub(crate) late: Vec<PostDataEntry>,
}

/// What the source says about an index or constraint of the archive.
struct Con {
    table: u32,
    ref_table: u32,
    contype: String,
    deferrable: bool,
    deferred: bool,
    name: String,
    index_name: Option<String>,
    index_def: Option<String>,
    plain_btree: bool,
}

/// Sorts the entries into early items and late ones, looking up on the
/// source (inside the snapshot) which tables each index, constraint and
/// trigger belongs to.
///
/// Early: indexes and PRIMARY KEY/UNIQUE/EXCLUDE constraints of an
/// ordinary table; foreign keys between two ordinary tables; triggers on
/// an ordinary table (created once its rows are in, they never fire
/// during the load) — each only if every post-data entry it depends on is
/// early too. Everything else is late.
pub(crate) async fn classify(
    snapshot_client: &Client,
    entries: Vec<PostDataEntry>,
    tables: &[TableInfo],
) -> Result<PostDataPlan, TransferError> {
    let q = |what: &'static str| TransferError::query(Side::Source, what);
    let oids_of = |desc: &[&str], class: u32| -> Vec<u32> {
        entries
            .iter()
            .filter(|e| desc.contains(&e.desc.as_str()) && e.class_oid == class)
            .map(|e| e.obj_oid)
            .collect()
    };
    use crate::pg::catalog::{PG_CLASS_OID, PG_CONSTRAINT_OID, PG_TRIGGER_OID};
    let index_oids = oids_of(&["INDEX"], PG_CLASS_OID);
    let constraint_oids = oids_of(&["CONSTRAINT", "FK CONSTRAINT"], PG_CONSTRAINT_OID);
    let trigger_oids = oids_of(&["TRIGGER"], PG_TRIGGER_OID);
    // Fully qualified definitions, as pg_dump writes them; the setting is
    // undone (rolled back with a savepoint) so the snapshot's session is
    // left as the caller knows it.
    snapshot_client
        .batch_execute(
            "SAVEPOINT herokurds_defs; SELECT pg_catalog.set_config('search_path', '', true)",
        )
        .await
        .map_err(q("setting search_path"))?;
    let pairs = |rows: Vec<tokio_postgres::Row>| -> HashMap<u32, u32> {
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    let index_table = pairs(
        snapshot_client
            .query(
                "SELECT indexrelid, indrelid FROM pg_catalog.pg_index WHERE indexrelid = ANY($1)",
                &[&index_oids],
            )
            .await
            .map_err(q("looking up indexes"))?,
    );
    let trigger_table = pairs(
        snapshot_client
            .query(
                "SELECT oid, tgrelid FROM pg_catalog.pg_trigger WHERE oid = ANY($1)",
                &[&trigger_oids],
            )
            .await
            .map_err(q("looking up triggers"))?,
    );
    let constraints: HashMap<u32, Con> = snapshot_client
        .query(
            "SELECT c.oid, c.conrelid, c.confrelid, c.contype::text, c.condeferrable, c.condeferred,
                    c.conname::text, i.relname::text,
                    CASE WHEN c.conindid <> 0 AND c.contype IN ('p', 'u')
                         THEN pg_catalog.pg_get_indexdef(c.conindid) END,
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
                    ref_table: r.get(2),
                    contype: r.get(3),
                    deferrable: r.get(4),
                    deferred: r.get(5),
                    name: r.get(6),
                    index_name: r.get(7),
                    index_def: r.get(8),
                    plain_btree: r.get::<_, Option<bool>>(9).unwrap_or(false),
                },
            )
        })
        .collect();
    snapshot_client
        .batch_execute("ROLLBACK TO SAVEPOINT herokurds_defs; RELEASE SAVEPOINT herokurds_defs")
        .await
        .map_err(q("restoring search_path"))?;
    let by_oid: HashMap<u32, &TableInfo> = tables
        .iter()
        .filter(|t| t.holds_rows())
        .map(|t| (t.oid, t))
        .collect();

    // Candidates: (entry index, tables, steps).
    let mut candidates: HashMap<i32, (Vec<u32>, EarlySteps)> = HashMap::new();
    for entry in &entries {
        let sql = || EarlySteps::Sql(entry.sql.clone());
        let candidate = match entry.desc.as_str() {
            "INDEX" => index_table
                .get(&entry.obj_oid)
                .filter(|t| by_oid.contains_key(t))
                .map(|t| (vec![*t], sql())),
            "TRIGGER" => trigger_table
                .get(&entry.obj_oid)
                .filter(|t| by_oid.contains_key(t))
                .map(|t| (vec![*t], sql())),
            "FK CONSTRAINT" => constraints
                .get(&entry.obj_oid)
                .filter(|c| by_oid.contains_key(&c.table) && by_oid.contains_key(&c.ref_table))
                .map(|c| (vec![c.table, c.ref_table], sql())),
            "CONSTRAINT" => constraints
                .get(&entry.obj_oid)
                .filter(|c| matches!(c.contype.as_str(), "p" | "u" | "x"))
                .and_then(|c| Some((*by_oid.get(&c.table)?, c)))
                .map(|(t, c)| (vec![t.oid], unique_steps(t, c).unwrap_or_else(sql))),
            _ => None,
        };
        if let Some(c) = candidate {
            candidates.insert(entry.dump_id, c);
        }
    }
    // An entry depending on a late one is late too, transitively.
    let ids: HashSet<i32> = entries.iter().map(|e| e.dump_id).collect();
    loop {
        let demote: Vec<i32> = entries
            .iter()
            .filter(|e| candidates.contains_key(&e.dump_id))
            .filter(|e| {
                e.deps
                    .iter()
                    .any(|d| ids.contains(d) && !candidates.contains_key(d))
            })
            .map(|e| e.dump_id)
            .collect();
        if demote.is_empty() {
            break;
        }
        for d in demote {
            candidates.remove(&d);
        }
    }
    let mut plan = PostDataPlan {
        early: Vec::new(),
        late: Vec::new(),
    };
    for entry in entries {
        match candidates.remove(&entry.dump_id) {
            Some((needs, steps)) => plan.early.push(EarlyItem {
                dump_id: Some(entry.dump_id),
                table: by_oid
                    .get(&needs[0])
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                label: entry.label(),
                steps,
                tables: needs,
                deps: entry
                    .deps
                    .iter()
                    .copied()
                    .filter(|d| ids.contains(d))
                    .collect(),
            }),
            None => plan.late.push(entry),
        }
    }
    Ok(plan)
}

/// PRIMARY KEY / UNIQUE on a plain b-tree: build the index first (SHARE
/// lock, alongside the table's other index builds), then attach it.
fn unique_steps(t: &TableInfo, c: &Con) -> Option<EarlySteps> {
    let (def, index) = (c.index_def.as_ref()?, c.index_name.as_ref()?);
    if !c.plain_btree {
        return None;
    }
    let kind = match c.contype.as_str() {
        "p" => "PRIMARY KEY",
        "u" => "UNIQUE",
        _ => return None,
    };
    let deferral = match (c.deferrable, c.deferred) {
        (true, true) => " DEFERRABLE INITIALLY DEFERRED",
        (true, false) => " DEFERRABLE",
        _ => "",
    };
    Some(EarlySteps::UniqueViaIndex {
        create_index: def.clone(),
        index: format!("{}.{}", quote_ident(&t.schema), quote_ident(index)),
        table: t.qualified_name(),
        constraint: c.name.clone(),
        add_constraint: format!(
            "ALTER TABLE ONLY {} ADD CONSTRAINT {} {kind} USING INDEX {}{deferral}",
            t.qualified_name(),
            quote_ident(&c.name),
            quote_ident(index),
        ),
    })
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
