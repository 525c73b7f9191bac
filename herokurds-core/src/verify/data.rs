//! Row counts and content checksums, sequence values and large objects,
//! computed on each server so that no rows cross the network.
//!
//! A table's checksum is the sum, modulo 2^64, over its rows, of a 64-bit
//! hash (`hashtextextended`, seed 0) of the row's text form
//! `ROW(t.*)::text`. A sum does not depend on row order or physical layout,
//! so slices of a table (ranges of blocks, `ctid >= '(a,0)' AND ctid <
//! '(b,0)'`) can be summed separately, in parallel, and on each side
//! independently of how the other side lays its rows out. A difference goes
//! unnoticed only if the changed rows' hashes happen to sum to the same
//! value: a chance of about 2^-64 (5e-20). On this machine one such hash
//! per row reads ~400 MB/s per core; two hashes of one row text (128 bits)
//! cost 1.6 times as much and `md5` three times as much, for no practical
//! gain in detection, so one is used.
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
use super::{db_message, VerifyError, VerifyEvent};
use crate::pg::catalog::{self, CatalogError, TableFilter};
use crate::progress::Progress;

/// Server version from which `ctid` range conditions are executed as a
/// TID range scan (reading only those blocks) rather than a filtered
/// sequential scan.
const TID_RANGE_SCAN_VERSION: i32 = 140000;

/// Tables that extensions mark as holding user configuration
/// (`pg_extension_config_dump`): `pg_dump` copies their rows, so they are
/// compared too, unless their extension is excluded.
const EXTENSION_CONFIG_TABLES_SQL: &str = "
SELECT n.nspname::text, c.relname::text, pg_relation_size(c.oid),
       pg_relation_size(c.oid) / current_setting('block_size')::int8
FROM pg_extension e CROSS JOIN LATERAL unnest(e.extconfig) AS cfg(oid)
  JOIN pg_class c ON c.oid = cfg.oid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND NOT e.extname = ANY($1::text[])";

/// Names as the server's `format('%I.%I')` writes them, as in the schema
/// comparison's differences.
const QUOTED_NAMES_SQL: &str = "
SELECT format('%I.%I', s, n) FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(s, n, i)
ORDER BY i";

/// Per large object: its OID and a hash of its content, computed once.
const LO_HASHES: &str =
    "SELECT oid, oid::text || ':' || md5(lo_get(oid)) AS h FROM pg_largeobject_metadata OFFSET 0";

/// A table to read on one side.
#[derive(Debug, Clone)]
pub(crate) struct TablePlan {
    /// How it is named in SQL and in the report (`format('%I.%I')`).
    pub qualified: String,
    /// Size of the main fork in bytes, and in blocks.
    pub bytes: u64,
    pub blocks: u64,
    /// Why row-level security would hide rows from the connecting role.
    pub rls: Option<Rls>,
}

/// How row-level security would hide rows from the connecting role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rls {
    /// `FORCE ROW LEVEL SECURITY`: even the owner is filtered.
    Forced,
    /// The role neither owns the table nor has `BYPASSRLS`.
    NotOwner,
}

/// The tables whose rows one side holds, after exclusions, from
/// [`catalog::tables`] (ordinary tables and leaf partitions, not
/// extension members), plus extensions' configuration tables.
pub(crate) async fn plan_tables(
    side: Side,
    client: &Client,
    filter: &TableFilter,
    excluded_extensions: &[String],
) -> Result<Vec<TablePlan>, VerifyError> {
    let catalog_error = |e: CatalogError| VerifyError::catalog(side, e);
    let mut found: Vec<(String, String, i64, i64, Option<Rls>)> = catalog::tables(client, filter)
        .await
        .map_err(catalog_error)?
        .into_iter()
        .filter(|t| t.holds_rows() && !t.excluded)
        .map(|t| {
            let rls = t.rows_hidden_by_rls.then_some(if t.force_row_security {
                Rls::Forced
            } else {
                Rls::NotOwner
            });
            (t.schema, t.name, t.heap_bytes, t.heap_blocks, rls)
        })
        .collect();
    let q = |what: &'static str| move |e| VerifyError::query(side, what, &e);
    for r in client
        .query(EXTENSION_CONFIG_TABLES_SQL, &[&excluded_extensions])
        .await
        .map_err(q("listing extension configuration tables"))?
    {
        let (schema, name): (String, String) = (r.get(0), r.get(1));
        if !filter.excludes(&schema, &name) {
            found.push((schema, name, r.get(2), r.get(3), None));
        }
    }
    let (schemas, names): (Vec<&str>, Vec<&str>) =
        found.iter().map(|t| (t.0.as_str(), t.1.as_str())).unzip();
    let quoted = client
        .query(QUOTED_NAMES_SQL, &[&schemas, &names])
        .await
        .map_err(q("quoting table names"))?;
    let mut tables: Vec<TablePlan> = found
        .iter()
        .zip(quoted)
        .map(|(t, q)| TablePlan {
            qualified: q.get(0),
            bytes: t.2.max(0) as u64,
            blocks: t.3.max(0) as u64,
            rls: t.4,
        })
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
    /// Bytes this item reads.
    pub(crate) fn bytes(&self) -> u64 {
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
        let blocks = t.blocks;
        let block_size = t.bytes.checked_div(blocks).unwrap_or(8192);
        let per_slice = (slice_bytes / block_size.max(1)).max(1);
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
                bytes: (to.min(blocks) - from) * block_size,
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
        format!("SELECT count(*)::int8, '0' FROM ONLY {table} t{filter}")
    } else {
        tally_sql(table, "t", &filter)
    }
}

/// The SQL that counts the rows of `FROM ONLY table AS alias` (with
/// `filter`, a `WHERE` clause or nothing) and sums their hashes: the same
/// checksum on both sides for the same rows, in any order.
pub(crate) fn tally_sql(table: &str, alias: &str, filter: &str) -> String {
    format!(
        "SELECT count(*)::int8, \
         coalesce(sum(hashtextextended(ROW({alias}.*)::text, 0)), 0)::text \
         FROM ONLY {table} {alias}{filter}"
    )
}

fn lo_sql(counts_only: bool) -> String {
    if counts_only {
        "SELECT count(*)::int8, '0' FROM pg_largeobject_metadata".into()
    } else {
        format!(
            "SELECT count(*)::int8, coalesce(sum(hashtextextended(h, 0)), 0)::text \
             FROM ({LO_HASHES}) s"
        )
    }
}

/// Rows and the sum of their hashes; slices add up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sums {
    pub rows: u64,
    pub hash: u64,
}

impl Sums {
    fn add(&mut self, o: Sums) {
        self.rows += o.rows;
        self.hash = self.hash.wrapping_add(o.hash);
    }

    /// 16 hex digits.
    pub fn checksum(&self) -> String {
        format!("{:016x}", self.hash)
    }
}

/// A numeric sum of bigints, as text, reduced modulo 2^64; `None` when the
/// text is not an integer.
fn wrap_u64(text: &str) -> Option<u64> {
    // The sum of n signed 64-bit values fits in i128 for any n < 2^64.
    text.trim().parse::<i128>().ok().map(|v| v as u64)
}

/// A slice's row count and checksum sum as the server returned them. A sum
/// that cannot be read stops the verification: counting it as any number
/// could make two different tables look equal.
fn slice_sums(side: Side, what: &str, rows: i64, sum: Option<&str>) -> Result<Sums, VerifyError> {
    match sum.and_then(wrap_u64) {
        Some(hash) => Ok(Sums {
            rows: rows.max(0) as u64,
            hash,
        }),
        None => Err(VerifyError::Query {
            side,
            what: what.to_string(),
            message: format!(
                "the server returned {sum:?} as the checksum sum, which is not an integer, so \
                 nothing could be compared (please report this)"
            ),
            retryable: false,
        }),
    }
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
            let what = format!("reading {what}");
            let result = match guarded(side, &what, client, client.query_one(&sql, &[])).await? {
                Ok(row) => Ok(slice_sums(
                    side,
                    &what,
                    row.get(0),
                    row.try_get::<_, Option<&str>>(1).ok().flatten(),
                )?),
                Err(refused) => Err(refused),
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

/// An error that may concern one object only (the server refused to read
/// it) rather than the session.
pub(crate) trait Refusal: Sized {
    /// The server's message when the error is such a refusal.
    fn refusal(&self) -> Option<String>;
    /// The error that stops the verification otherwise.
    fn fatal(self, side: Side, what: &str) -> VerifyError;
}

impl Refusal for tokio_postgres::Error {
    fn refusal(&self) -> Option<String> {
        is_refusal(self).then(|| db_message(self))
    }
    fn fatal(self, side: Side, what: &str) -> VerifyError {
        VerifyError::query(side, what, &self)
    }
}

impl Refusal for CatalogError {
    fn refusal(&self) -> Option<String> {
        let pg = std::error::Error::source(self)?.downcast_ref::<tokio_postgres::Error>()?;
        is_refusal(pg).then(|| self.to_string())
    }
    fn fatal(self, side: Side, _what: &str) -> VerifyError {
        VerifyError::catalog(side, self)
    }
}

/// Runs a query inside a savepoint, so that a refusal (permission denied,
/// row-level security) leaves the session's transaction, and its snapshot,
/// usable for the next item. `Ok(Err(message))` is such a refusal; `Err`
/// stops the verification.
pub(crate) async fn guarded<T, E: Refusal>(
    side: Side,
    what: &str,
    client: &Client,
    query: impl std::future::Future<Output = Result<T, E>>,
) -> Result<Result<T, String>, VerifyError> {
    let savepoint = |sql| async move {
        client
            .batch_execute(sql)
            .await
            .map_err(|e| VerifyError::query(side, what, &e))
    };
    savepoint("SAVEPOINT herokurds_verify").await?;
    match query.await {
        Ok(v) => {
            savepoint("RELEASE SAVEPOINT herokurds_verify").await?;
            Ok(Ok(v))
        }
        Err(e) => match e.refusal() {
            Some(message) => {
                savepoint("ROLLBACK TO SAVEPOINT herokurds_verify").await?;
                Ok(Err(message))
            }
            None => Err(e.fatal(side, what)),
        },
    }
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
pub(crate) async fn large_object_hashes(
    side: Side,
    client: &Client,
) -> Result<Result<BTreeMap<u32, String>, String>, VerifyError> {
    let rows = guarded(
        side,
        "reading large objects",
        client,
        client.query(LO_HASHES, &[]),
    )
    .await?;
    Ok(rows.map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect()))
}

/// `last_value` and `is_called` of every sequence by name, from
/// [`catalog::sequences`] (which reads each sequence itself:
/// `pg_sequences.last_value` is null for a sequence never used), or why
/// they could not be read.
pub(crate) async fn sequences(
    side: Side,
    client: &Client,
) -> Result<Result<BTreeMap<String, (i64, bool)>, String>, VerifyError> {
    let seqs = guarded(
        side,
        "reading sequences",
        client,
        catalog::sequences(client),
    )
    .await?;
    let Ok(seqs) = seqs else {
        return Ok(Err(seqs.unwrap_err()));
    };
    let (schemas, names): (Vec<&str>, Vec<&str>) = seqs
        .iter()
        .map(|s| (s.schema.as_str(), s.name.as_str()))
        .unzip();
    let quoted = client
        .query(QUOTED_NAMES_SQL, &[&schemas, &names])
        .await
        .map_err(|e| VerifyError::query(side, "quoting sequence names", &e))?;
    Ok(Ok(seqs
        .iter()
        .zip(quoted)
        .map(|(s, q)| (q.get(0), (s.last_value, s.is_called)))
        .collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(bytes: u64) -> TablePlan {
        TablePlan {
            qualified: "public.t".into(),
            bytes,
            blocks: bytes / 8192,
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
        assert!(sql.contains("sum(hashtextextended(ROW(t.*)::text, 0))"));
        assert!(!slice_sql("public.t", None, None, true).contains("hash"));
    }

    #[test]
    fn sums_wrap_modulo_two_to_the_64() {
        assert_eq!(wrap_u64("-1"), Some(u64::MAX));
        assert_eq!(wrap_u64("18446744073709551617"), Some(1));
        assert_eq!(wrap_u64(" 0\n"), Some(0));
        let mut s = Sums {
            rows: 1,
            hash: u64::MAX,
        };
        s.add(Sums { rows: 2, hash: 2 });
        assert_eq!(s, Sums { rows: 3, hash: 1 });
        assert_eq!(s.checksum(), "0000000000000001");
    }

    #[test]
    fn a_checksum_sum_that_cannot_be_read_is_an_error_never_zero() {
        for text in [
            "",
            "abc",
            "1.5",
            "1e3",
            "NaN",
            "0x10",
            "340282366920938463463374607431768211456",
        ] {
            assert_eq!(wrap_u64(text), None, "{text:?}");
            let err =
                slice_sums(Side::Target, "reading table public.t", 3, Some(text)).unwrap_err();
            let shown = err.to_string();
            assert!(
                shown.starts_with("reading table public.t on the target failed:")
                    && shown.contains("not an integer"),
                "{shown}"
            );
            assert!(!err.is_retryable());
        }
        assert!(slice_sums(Side::Source, "reading large objects", 1, None).is_err());
        assert_eq!(
            slice_sums(Side::Source, "reading table public.t", -1, Some("-1")).unwrap(),
            Sums {
                rows: 0,
                hash: u64::MAX
            }
        );
    }
}
