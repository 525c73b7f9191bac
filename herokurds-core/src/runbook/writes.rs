//! Writers that maintenance mode does not stop.
//!
//! Heroku's maintenance mode holds web traffic only: worker and clock dynos
//! keep writing to the database during the window, and rows they write after
//! the copy's snapshot would be lost at the cutover. This module marks the
//! source's write position before the copy and checks it again just before
//! the cutover.
//!
//! The check has to ignore what is not a user write. WAL position moves with
//! checkpoints, hint bits and vacuum, so it is not used. Instead:
//! 1. the next transaction id: a write needs one, and nothing herokurds does
//!    on the source assigns one. If it has not moved, nothing wrote (the
//!    common case, answered at once);
//! 2. if it moved (a writer, or autoanalyze, or a temp table), per-table
//!    counters from `pg_stat_user_tables` (rows inserted, updated, deleted;
//!    plus `pg_largeobject` and its metadata, where `lo_*` writes land)
//!    and each table's file node (which `TRUNCATE` replaces) name the tables
//!    that changed. Backends report their counters within about ten seconds
//!    ([`STATS_FLUSH_WAIT`]), so the check waits that long first.
//!
//! A table named by step 2 is not yet proof of loss (the change may predate
//! the snapshot); the runbook re-verifies those tables against the target.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

/// How long a backend may hold its table counters before reporting them
/// (PostgreSQL 15+ flushes idle backends' statistics after 10 s).
pub const STATS_FLUSH_WAIT: Duration = Duration::from_secs(11);

/// How often [`settle`] looks at the source: quiet is seen up to this
/// long after it began.
pub const SETTLE_POLL: Duration = Duration::from_millis(200);

/// One table's write marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableMark {
    /// Rows inserted + updated + deleted since statistics were reset.
    pub changes: i64,
    /// The table's file node; `TRUNCATE`, `VACUUM FULL` and `CLUSTER`
    /// replace it.
    pub filenode: i64,
}

/// The source's write position at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteMark {
    /// The first transaction id not yet assigned.
    pub next_xid: i64,
    /// Per table (`schema.table`, quoted where needed).
    pub tables: BTreeMap<String, TableMark>,
}

/// What changed between two marks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteActivity {
    /// Transactions that wrote something since the first mark.
    pub transactions: i64,
    /// Tables whose counters or file node changed, with the number of
    /// rows changed (`None` when the table was truncated, rewritten,
    /// created or dropped).
    pub tables: BTreeMap<String, Option<i64>>,
}

impl WriteActivity {
    /// Whether no table changed.
    pub fn is_quiet(&self) -> bool {
        self.tables.is_empty()
    }

    /// The changed tables in words: `public.jobs (12 rows), public.tmp (rewritten)`.
    pub fn describe(&self) -> String {
        self.tables
            .iter()
            .map(|(t, n)| match n {
                Some(n) => format!("{t} ({n} rows changed)"),
                None => format!("{t} (truncated, rewritten, created or dropped)"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// User tables (not temporary ones), and the two catalogs large objects
/// live in: `lo_*` writes change no user table. herokurds' own change
/// capture (schema `herokurds_capture`, see
/// [`CAPTURE_SCHEMA`](crate::transfer::online::CAPTURE_SCHEMA)) is left
/// out: its log is written along with the app's rows, and `finish` drops it.
const MARK_SQL: &str = "
SELECT format('%I.%I', s.schemaname, s.relname),
       (s.n_tup_ins + s.n_tup_upd + s.n_tup_del)::int8,
       coalesce(pg_relation_filenode(s.relid), 0)::int8
FROM pg_stat_all_tables s
WHERE (s.schemaname NOT IN ('pg_catalog', 'information_schema', 'herokurds_capture')
       AND s.schemaname !~ '^pg_(toast|temp_|toast_temp_)')
   OR s.relid IN ('pg_catalog.pg_largeobject'::regclass,
                  'pg_catalog.pg_largeobject_metadata'::regclass)";

/// Reads the current write position. Statistics are read fresh (not from
/// a cached stats snapshot).
pub async fn mark(client: &Client) -> Result<WriteMark, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT txid_snapshot_xmax(txid_current_snapshot())::int8",
            &[],
        )
        .await?;
    let next_xid: i64 = row.get(0);
    client
        .batch_execute("SELECT pg_stat_clear_snapshot()")
        .await?;
    let mut tables = BTreeMap::new();
    for row in client.query(MARK_SQL, &[]).await? {
        tables.insert(
            row.get::<_, String>(0),
            TableMark {
                changes: row.get(1),
                filenode: row.get(2),
            },
        );
    }
    Ok(WriteMark { next_xid, tables })
}

/// Compares a later mark with an earlier one.
pub fn compare(before: &WriteMark, after: &WriteMark) -> WriteActivity {
    let mut tables = BTreeMap::new();
    for (name, b) in &before.tables {
        match after.tables.get(name) {
            Some(a) if a.filenode != b.filenode => {
                tables.insert(name.clone(), None);
            }
            Some(a) if a.changes != b.changes => {
                tables.insert(name.clone(), Some(a.changes - b.changes));
            }
            Some(_) => {}
            None => {
                tables.insert(name.clone(), None);
            }
        }
    }
    for name in after.tables.keys() {
        if !before.tables.contains_key(name) {
            tables.insert(name.clone(), None);
        }
    }
    WriteActivity {
        transactions: after.next_xid - before.next_xid,
        tables,
    }
}

/// Checks whether anything wrote to the source since `before`: answers at
/// once when no transaction id was assigned; otherwise waits `flush_wait`
/// for backends to report their counters and compares per table.
pub async fn check_since(
    client: &Client,
    before: &WriteMark,
    flush_wait: Duration,
) -> Result<WriteActivity, tokio_postgres::Error> {
    let now = mark(client).await?;
    if now.next_xid == before.next_xid {
        return Ok(compare(before, &now));
    }
    tokio::time::sleep(flush_wait).await;
    let settled = mark(client).await?;
    Ok(compare(before, &settled))
}

/// A session on the source that holds a transaction id: it wrote, and its
/// write lands when it commits. Names only, never its query text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WritingSession {
    /// Backend process id.
    pub pid: i32,
    /// Its role, when visible.
    pub user: Option<String>,
    /// Its `application_name` (Heroku dynos set none by default).
    pub application: Option<String>,
    /// `active`, `idle in transaction`, ...
    pub state: Option<String>,
    /// Seconds since its transaction began.
    pub transaction_seconds: Option<f64>,
}

impl std::fmt::Display for WritingSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if let Some(u) = &self.user {
            write!(f, " (user {u}")?;
            if let Some(a) = self.application.as_deref().filter(|a| !a.is_empty()) {
                write!(f, ", application {a}")?;
            }
            f.write_str(")")?;
        }
        if let Some(s) = &self.state {
            write!(f, ", {s}")?;
        }
        if let Some(t) = self.transaction_seconds {
            write!(f, " for {t:.0} s")?;
        }
        Ok(())
    }
}

/// Where a wait for quiet stands, reported on every poll.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SettleProgress {
    /// Time waited so far.
    pub waited: Duration,
    /// How long the source has been quiet so far.
    pub quiet_for: Duration,
}

/// How a wait for quiet ended.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Settled {
    /// No transaction id was used on the server, and no session of this
    /// database held one, for the whole quiet interval; or (with
    /// `elsewhere`) the timeout passed with transaction ids still being
    /// used, but by nothing in this database: no table of it changed and no
    /// session of it holds a write (other databases of a shared server,
    /// autovacuum).
    Quiet {
        /// Time waited in all.
        waited: Duration,
        /// Transaction ids used on the server while waiting.
        transactions: i64,
        /// Whether those ids were used only outside this database.
        elsewhere: bool,
    },
    /// The timeout passed first.
    StillWriting {
        /// Time waited in all.
        waited: Duration,
        /// Tables changed while waiting (after the statistics flush).
        activity: WriteActivity,
        /// Sessions holding a transaction id at the end.
        sessions: Vec<WritingSession>,
    },
}

/// What kept a database from settling, in words: the tables written, the
/// sessions holding a write, or else the transaction ids used.
pub(crate) fn still_writing_words(
    activity: &WriteActivity,
    sessions: &[WritingSession],
) -> Vec<String> {
    let mut what = Vec::new();
    if !activity.is_quiet() {
        what.push(format!("tables written: {}", activity.describe()));
    }
    if !sessions.is_empty() {
        what.push(format!(
            "sessions holding an open write transaction: {}",
            sessions
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    if what.is_empty() {
        what.push(format!(
            "{} transaction id(s) used, by no user table (autovacuum, temporary tables?)",
            activity.transactions
        ));
    }
    what
}

/// `(the server's next xid, whether a session of this database other than
/// this one holds an xid)`. Transaction ids are the server's: on a shared
/// server (Heroku's Essential plans) other databases use them too, so an
/// open write is looked for in this database only.
async fn xid_state(client: &Client) -> Result<(i64, bool), tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT txid_snapshot_xmax(txid_current_snapshot())::int8, \
                    EXISTS (SELECT 1 FROM pg_stat_activity \
                            WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() \
                              AND datname = current_database())",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Sessions other than this one that hold a transaction id.
async fn writing_sessions(client: &Client) -> Result<Vec<WritingSession>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT pid, usename::text, application_name, state, \
                    extract(epoch FROM now() - xact_start)::float8 \
             FROM pg_stat_activity \
             WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND datname = current_database() \
             ORDER BY xact_start",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| WritingSession {
            pid: r.get(0),
            user: r.get(1),
            application: r.get(2),
            state: r.get(3),
            transaction_seconds: r.get(4),
        })
        .collect())
}

/// Waits until the source is quiet: no transaction id used on the server,
/// and none held by a session of this database, for `quiet` in a row.
/// After `timeout` it waits `flush_wait` for the statistics and looks at
/// this database alone: tables changed while waiting, sessions holding a
/// write. Neither: the ids went elsewhere, and the source counts as quiet
/// (`elsewhere`); else it names them. Polls a few times a second; `tick`
/// hears each poll. Reads only: it assigns no transaction id itself.
pub async fn settle(
    client: &Client,
    quiet: Duration,
    timeout: Duration,
    flush_wait: Duration,
    tick: impl Fn(SettleProgress),
) -> Result<Settled, tokio_postgres::Error> {
    let started = tokio::time::Instant::now();
    let before = mark(client).await?;
    let mut last_xid = before.next_xid;
    let mut quiet_since = started;
    loop {
        let (next_xid, in_progress) = xid_state(client).await?;
        let now = tokio::time::Instant::now();
        if next_xid != last_xid || in_progress {
            quiet_since = now;
            last_xid = next_xid;
        }
        let progress = SettleProgress {
            waited: now - started,
            quiet_for: now - quiet_since,
        };
        tick(progress);
        if progress.quiet_for >= quiet {
            return Ok(Settled::Quiet {
                waited: progress.waited,
                transactions: next_xid - before.next_xid,
                elsewhere: false,
            });
        }
        if progress.waited >= timeout {
            let sessions = writing_sessions(client).await?;
            tokio::time::sleep(flush_wait).await;
            let after = mark(client).await?;
            let activity = compare(&before, &after);
            if activity.is_quiet() && sessions.is_empty() {
                return Ok(Settled::Quiet {
                    waited: started.elapsed(),
                    transactions: activity.transactions,
                    elsewhere: true,
                });
            }
            return Ok(Settled::StillWriting {
                waited: progress.waited,
                activity,
                sessions,
            });
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(xid: i64, tables: &[(&str, i64, i64)]) -> WriteMark {
        WriteMark {
            next_xid: xid,
            tables: tables
                .iter()
                .map(|(n, c, f)| {
                    (
                        n.to_string(),
                        TableMark {
                            changes: *c,
                            filenode: *f,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn counters_file_nodes_and_new_or_dropped_tables_are_changes() {
        let before = m(
            100,
            &[
                ("public.a", 5, 1),
                ("public.b", 7, 2),
                ("public.gone", 0, 3),
            ],
        );
        let after = m(
            104,
            &[("public.a", 5, 1), ("public.b", 9, 2), ("public.new", 0, 4)],
        );
        let act = compare(&before, &after);
        assert_eq!(act.transactions, 4);
        assert_eq!(
            act.describe(),
            "public.b (2 rows changed), public.gone (truncated, rewritten, created or dropped), \
             public.new (truncated, rewritten, created or dropped)"
        );
        let truncated = m(
            101,
            &[
                ("public.a", 5, 9),
                ("public.b", 7, 2),
                ("public.gone", 0, 3),
            ],
        );
        assert_eq!(
            compare(&before, &truncated).tables.get("public.a"),
            Some(&None)
        );
        assert!(compare(&before, &before).is_quiet());
    }
}
