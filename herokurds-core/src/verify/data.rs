//! Row counts and content checksums, sequence values and large objects,
//! computed on each server so that no rows cross the network.
//!
//! A table's checksum is the pair of sums, over its rows, of two 64-bit
//! hashes (`hashtextextended` with seeds 0 and 1) of the row's text form
//! `ROW(t.*)::text`. A sum does not depend on row order or physical layout,
//! so slices of a table (ranges of blocks, `ctid >= '(a,0)' AND ctid <
//! '(b,0)'`) can be summed separately, in parallel, and on each side
//! independently of how the other side lays its rows out. Both sums are
//! kept modulo 2^64; a change goes unnoticed only if it leaves both
//! 64-bit sums unchanged.
//!
//! The text form of a row depends on session settings (float digits, date
//! and interval styles, time zone, `bytea` and money output, and
//! `search_path` for `reg*` columns); every session pins them identically
//! (see `SESSION_SETTINGS` in the parent module). Every session also runs
//! with `row_security = off`, under which a query that row-level security
//! would filter fails instead: such a table is reported as not verified,
//! never as equal.
//!
//! Inheritance parents are read `FROM ONLY`, and partitioned tables
//! through their leaf partitions, so every row is counted exactly once,
//! under the table that stores it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use tokio_postgres::Client;

use super::report::Side;
use super::{db_message, TablePatterns, VerifyError, VerifyEvent};
use crate::progress::Progress;

/// Server version from which `ctid` range conditions are executed as a
/// TID range scan (reading only those blocks) rather than a filtered
/// sequential scan.
const TID_RANGE_SCAN_VERSION: i32 = 140000;

const TABLES_SQL: &str = "
SELECT n.nspname, c.relname, format('%I.%I', n.nspname, c.relname),
       pg_relation_size(c.oid)::int8, current_setting('block_size')::int8,
       CASE WHEN c.relrowsecurity AND NOT (r.rolsuper OR r.rolbypassrls) THEN
         CASE WHEN NOT pg_has_role(c.relowner, 'USAGE') THEN 'not owner'
              WHEN c.relforcerowsecurity THEN 'forced' END END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_roles r ON r.rolname = current_user
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
  AND (NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                     AND d.objid = c.oid AND d.deptype = 'e')
       OR c.oid IN (SELECT unnest(e.extconfig) FROM pg_extension e
                    WHERE NOT e.extname = ANY($1::text[])))";

const SEQUENCES_SQL: &str = "
SELECT format('%I.%I', n.nspname, c.relname), has_sequence_privilege(c.oid, 'SELECT')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S' AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                    AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1";

/// Per large object: its OID and a hash of its content, computed once.
const LO_HASHES: &str =
    "SELECT oid, oid::text || ':' || md5(lo_get(oid)) AS h FROM pg_largeobject_metadata OFFSET 0";

/// A table to read on one side.
#[derive(Debug, Clone)]
pub(crate) struct TablePlan {
    /// Unquoted schema and name, for `--exclude-table`.
    pub schema: String,
    pub name: String,
    /// `format('%I.%I')`: how it is named in SQL and in the report.
    pub qualified: String,
    /// Size of the main fork in bytes.
    pub bytes: u64,
    pub block_size: u64,
    /// Why row-level security would hide rows from the connecting role.
    pub rls: Option<String>,
}

/// The tables of one side (after exclusions), by qualified name.
pub(crate) async fn plan_tables(
    client: &Client,
    excluded_tables: &TablePatterns,
    excluded_extensions: &[String],
) -> Result<Vec<TablePlan>, tokio_postgres::Error> {
    let rows = client.query(TABLES_SQL, &[&excluded_extensions]).await?;
    let mut tables: Vec<TablePlan> = rows
        .iter()
        .map(|r| TablePlan {
            schema: r.get(0),
            name: r.get(1),
            qualified: r.get(2),
            bytes: r.get::<_, i64>(3).max(0) as u64,
            block_size: r.get::<_, i64>(4).max(1) as u64,
            rls: r.get(5),
        })
        .filter(|t| !excluded_tables.matches(&t.schema, &t.name))
        .collect();
    tables.sort_by(|a, b| a.qualified.cmp(&b.qualified));
    Ok(tables)
}

/// One unit of work for a session.
#[derive(Debug, Clone)]
pub(crate) enum Work {
    /// Blocks `[from, to)` of table `table` (`to` open-ended on the last
    /// slice, so rows in blocks added since the plan are counted too).
    Slice {
        table: usize,
        from: Option<u64>,
        to: Option<u64>,
        bytes: u64,
    },
    /// All large objects.
    LargeObjects { bytes: u64 },
}

impl Work {
    fn bytes(&self) -> u64 {
        match self {
            Work::Slice { bytes, .. } | Work::LargeObjects { bytes } => *bytes,
        }
    }
}

/// Splits tables larger than `slice_bytes` into ranges of blocks (only
/// where the server scans `ctid` ranges efficiently) and orders the work
/// largest first.
pub(crate) fn plan_work(
    tables: &[TablePlan],
    slice_bytes: u64,
    server_version: i32,
    large_objects_bytes: Option<u64>,
) -> VecDeque<Work> {
    let mut work = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let blocks = t.bytes / t.block_size;
        let per_slice = (slice_bytes / t.block_size).max(1);
        if server_version < TID_RANGE_SCAN_VERSION || t.bytes <= slice_bytes || blocks <= per_slice
        {
            work.push(Work::Slice {
                table: i,
                from: None,
                to: None,
                bytes: t.bytes,
            });
            continue;
        }
        let mut from = 0;
        while from < blocks {
            let to = from + per_slice;
            let last = to >= blocks;
            work.push(Work::Slice {
                table: i,
                from: (from > 0).then_some(from),
                to: (!last).then_some(to),
                bytes: (to.min(blocks) - from) * t.block_size,
            });
            from = to;
        }
    }
    if let Some(bytes) = large_objects_bytes {
        work.push(Work::LargeObjects { bytes });
    }
    work.sort_by_key(|w| std::cmp::Reverse(w.bytes()));
    work.into()
}

/// The SQL that tallies one slice.
pub(crate) fn slice_sql(
    table: &str,
    from: Option<u64>,
    to: Option<u64>,
    counts_only: bool,
) -> String {
    let mut conds = Vec::new();
    if let Some(f) = from {
        conds.push(format!("t.ctid >= '({f},0)'::tid"));
    }
    if let Some(t) = to {
        conds.push(format!("t.ctid < '({t},0)'::tid"));
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    if counts_only {
        format!("SELECT count(*)::int8, '0', '0' FROM ONLY {table} t{filter}")
    } else {
        format!(
            "SELECT count(*)::int8, coalesce(sum(hashtextextended(r, 0)), 0)::text, \
             coalesce(sum(hashtextextended(r, 1)), 0)::text \
             FROM (SELECT ROW(t.*)::text AS r FROM ONLY {table} t{filter} OFFSET 0) s"
        )
    }
}

fn lo_sql(counts_only: bool) -> String {
    if counts_only {
        "SELECT count(*)::int8, '0', '0' FROM pg_largeobject_metadata".into()
    } else {
        format!(
            "SELECT count(*)::int8, coalesce(sum(hashtextextended(h, 0)), 0)::text, \
             coalesce(sum(hashtextextended(h, 1)), 0)::text FROM ({LO_HASHES}) s"
        )
    }
}

/// Rows and two 64-bit hash sums; slices add up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sums {
    pub rows: u64,
    pub h0: u64,
    pub h1: u64,
}

impl Sums {
    fn add(&mut self, o: Sums) {
        self.rows += o.rows;
        self.h0 = self.h0.wrapping_add(o.h0);
        self.h1 = self.h1.wrapping_add(o.h1);
    }

    /// 32 hex digits.
    pub fn checksum(&self) -> String {
        format!("{:016x}{:016x}", self.h0, self.h1)
    }
}

/// A numeric sum of bigints, as text, reduced modulo 2^64.
fn wrap_u64(text: &str) -> u64 {
    // The sum of n signed 64-bit values fits in i128 for any n < 2^64.
    text.trim().parse::<i128>().map(|v| v as u64).unwrap_or(0)
}

/// What one side found for one table (or for the large objects).
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    pub sums: Sums,
    pub bytes: u64,
    /// Why the table could not be read in full.
    pub failed: Option<String>,
    pub started: Option<Instant>,
    pub finished: Option<Instant>,
    slices_left: usize,
}

/// Everything one side's workers found.
#[derive(Debug, Default)]
pub(crate) struct SideTallies {
    pub tables: Vec<Tally>,
    pub large_objects: Option<Tally>,
}

/// Runs the work queue on one side: every client takes the next item until
/// the queue is empty. Returns the tallies of every table in `tables`.
pub(crate) async fn run_side(
    side: Side,
    clients: &[Client],
    tables: &[TablePlan],
    work: VecDeque<Work>,
    counts_only: bool,
    progress: &(impl Progress<VerifyEvent> + ?Sized),
) -> Result<SideTallies, VerifyError> {
    let mut tallies = SideTallies {
        tables: vec![Tally::default(); tables.len()],
        large_objects: None,
    };
    for w in &work {
        match w {
            Work::Slice { table, .. } => tallies.tables[*table].slices_left += 1,
            Work::LargeObjects { .. } => tallies.large_objects = Some(Tally::default()),
        }
    }
    let state = Mutex::new((work, tallies));
    let workers = clients.iter().map(|client| async {
        loop {
            let next = {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                let item = s.0.pop_front();
                if let Some(Work::Slice { table, .. }) = &item {
                    let t = &mut s.1.tables[*table];
                    t.started.get_or_insert_with(Instant::now);
                }
                item
            };
            let Some(item) = next else {
                return Ok::<(), VerifyError>(());
            };
            let (sql, what) = match &item {
                Work::Slice {
                    table, from, to, ..
                } => (
                    slice_sql(&tables[*table].qualified, *from, *to, counts_only),
                    format!("table {}", tables[*table].qualified),
                ),
                Work::LargeObjects { .. } => (lo_sql(counts_only), "large objects".to_string()),
            };
            let result = match guarded_query(client, &sql).await {
                Ok(row) => Ok(Sums {
                    rows: row.get::<_, i64>(0).max(0) as u64,
                    h0: wrap_u64(row.get(1)),
                    h1: wrap_u64(row.get(2)),
                }),
                Err(Guarded::Refused(msg)) => Err(msg),
                Err(Guarded::Fatal(e)) => {
                    return Err(VerifyError::query(side, &format!("reading {what}"), &e))
                }
            };
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            let (tally, table_name) = match &item {
                Work::Slice { table, .. } => {
                    (&mut s.1.tables[*table], tables[*table].qualified.clone())
                }
                Work::LargeObjects { .. } => (
                    s.1.large_objects.get_or_insert_with(Tally::default),
                    "large objects".to_string(),
                ),
            };
            let rows = match result {
                Ok(sums) => {
                    tally.sums.add(sums);
                    sums.rows
                }
                Err(msg) => {
                    tally.failed.get_or_insert(msg);
                    0
                }
            };
            tally.bytes += item.bytes();
            tally.slices_left = tally.slices_left.saturating_sub(1);
            if tally.slices_left == 0 {
                tally.finished = Some(Instant::now());
            }
            drop(s);
            progress.event(&VerifyEvent::SliceDone {
                side,
                table: table_name,
                bytes: item.bytes(),
                rows,
            });
        }
    });
    futures::future::try_join_all(workers).await?;
    Ok(state.into_inner().unwrap_or_else(|p| p.into_inner()).1)
}

/// How a query run under a savepoint ended, when not with a row.
pub(crate) enum Guarded {
    /// The server refused to run it (privileges, row-level security); the
    /// session is still usable. The message is the server's.
    Refused(String),
    /// The session failed.
    Fatal(tokio_postgres::Error),
}

/// Runs a query inside a savepoint, so that a refusal (permission denied,
/// row-level security) leaves the session's transaction, and its snapshot,
/// usable for the next item.
async fn guarded<T>(
    client: &Client,
    query: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Guarded> {
    client
        .batch_execute("SAVEPOINT herokurds_verify")
        .await
        .map_err(Guarded::Fatal)?;
    let (outcome, end) = match query.await {
        Ok(v) => (Ok(v), "RELEASE SAVEPOINT herokurds_verify"),
        Err(e) if is_refusal(&e) => (
            Err(Guarded::Refused(db_message(&e))),
            "ROLLBACK TO SAVEPOINT herokurds_verify",
        ),
        Err(e) => return Err(Guarded::Fatal(e)),
    };
    client.batch_execute(end).await.map_err(Guarded::Fatal)?;
    outcome
}

/// [`guarded`] for a one-row query.
pub(crate) async fn guarded_query(
    client: &Client,
    sql: &str,
) -> Result<tokio_postgres::Row, Guarded> {
    guarded(client, client.query_one(sql, &[])).await
}

/// Errors that concern one object, not the session: insufficient
/// privilege (SQLSTATE 42501, which is also what row-level security raises
/// under `row_security = off`) and an object that is not there.
fn is_refusal(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| {
        let code = d.code().code();
        code == "42501" || code == "42P01" || code == "42704"
    })
}

/// Size of `pg_largeobject` when there are large objects at all.
pub(crate) async fn large_objects_bytes(
    client: &Client,
) -> Result<Option<u64>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_largeobject_metadata),
                    pg_relation_size('pg_largeobject')::int8",
            &[],
        )
        .await?;
    Ok(row
        .get::<_, bool>(0)
        .then(|| row.get::<_, i64>(1).max(0) as u64))
}

/// Each large object's OID and content hash, to name the ones that differ.
pub(crate) async fn large_object_hashes(client: &Client) -> Result<BTreeMap<u32, String>, Guarded> {
    let rows = guarded(client, client.query(LO_HASHES, &[])).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A sequence's state, or why it could not be read.
pub(crate) type SequenceValue = Result<(i64, bool), String>;

/// `last_value` and `is_called` of every sequence, read from the sequence
/// itself (`pg_sequences.last_value` is null for a sequence never used and
/// for one the role may not read, which would hide a difference).
pub(crate) async fn sequences(
    client: &Client,
) -> Result<BTreeMap<String, SequenceValue>, tokio_postgres::Error> {
    let rows = client.query(SEQUENCES_SQL, &[]).await?;
    let mut out = BTreeMap::new();
    let mut readable = Vec::new();
    for r in &rows {
        let name: String = r.get(0);
        if r.get::<_, bool>(1) {
            readable.push(name);
        } else {
            out.insert(
                name,
                Err("permission denied: the role may not read this sequence; \
                     grant it SELECT on the sequence"
                    .to_string()),
            );
        }
    }
    for chunk in readable.chunks(200) {
        let sql = chunk
            .iter()
            .enumerate()
            .map(|(i, name)| format!("SELECT {i}, last_value, is_called FROM {name}"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        for r in client.query(&sql, &[]).await? {
            let i: i32 = r.get(0);
            out.insert(chunk[i as usize].clone(), Ok((r.get(1), r.get(2))));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(bytes: u64) -> TablePlan {
        TablePlan {
            schema: "public".into(),
            name: "t".into(),
            qualified: "public.t".into(),
            bytes,
            block_size: 8192,
            rls: None,
        }
    }

    #[test]
    fn large_tables_are_sliced_into_block_ranges_covering_everything() {
        let work = plan_work(&[table(10 * 8192)], 4 * 8192, 150000, None);
        let ranges: Vec<_> = work
            .iter()
            .map(|w| match w {
                Work::Slice { from, to, .. } => (*from, *to),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            ranges,
            vec![(None, Some(4)), (Some(4), Some(8)), (Some(8), None)]
        );
    }

    #[test]
    fn old_servers_and_small_tables_are_read_whole() {
        assert_eq!(
            plan_work(&[table(10 * 8192)], 4 * 8192, 130000, None).len(),
            1
        );
        assert_eq!(
            plan_work(&[table(3 * 8192)], 4 * 8192, 150000, None).len(),
            1
        );
    }

    #[test]
    fn slice_sql_reads_only_the_table_itself_and_its_blocks() {
        let sql = slice_sql("public.t", Some(4), Some(8), false);
        assert!(sql.contains(
            "FROM ONLY public.t t WHERE t.ctid >= '(4,0)'::tid AND t.ctid < '(8,0)'::tid"
        ));
        assert!(sql.contains("hashtextextended(r, 1)"));
        assert!(!slice_sql("public.t", None, None, true).contains("hash"));
    }

    #[test]
    fn sums_wrap_modulo_two_to_the_64() {
        assert_eq!(wrap_u64("-1"), u64::MAX);
        assert_eq!(wrap_u64("18446744073709551617"), 1);
        let mut s = Sums {
            rows: 1,
            h0: u64::MAX,
            h1: 0,
        };
        s.add(Sums {
            rows: 2,
            h0: 2,
            h1: 5,
        });
        assert_eq!(
            s,
            Sums {
                rows: 3,
                h0: 1,
                h1: 5
            }
        );
        assert_eq!(s.checksum(), "00000000000000010000000000000005");
    }
}
