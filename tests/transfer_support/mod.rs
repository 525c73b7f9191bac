//! Helpers shared by the root tests (and herokurds-cli's transfer test):
//! sandbox pairs, URLs, SQL one-liners, transfer runs and their events,
//! and a table-by-table, sequence-by-sequence comparison read as superuser
//! on both sides (so row-level security hides nothing from it).
//!
//! herokurds-cli's tests include this file too, and they see the library
//! only as `herokurds_core`: hence that name here, not `herokurds`.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use herokurds_core::pg::catalog::{self, TableFilter};
use herokurds_core::progress::{NoProgress, Progress};
use herokurds_core::runbook::{RunbookError, RunbookEvent, StepId};
use herokurds_core::transfer::{
    self, TransferError, TransferEvent, TransferOptions, TransferReport,
};
use herokurds_core::url::DatabaseUrl;
use herokurds_testkit::{LocalPostgres, PostgresOptions};
use secrecy::ExposeSecret;
use tokio_postgres::types::FromSqlOwned;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

/// A Heroku-shaped source and an RDS-shaped target.
pub async fn pair() -> (LocalPostgres, LocalPostgres) {
    let (s, t) = tokio::join!(
        LocalPostgres::start(PostgresOptions::heroku()),
        LocalPostgres::start(PostgresOptions::rds())
    );
    (
        s.expect("source sandbox (run scripts/test to install PostgreSQL)"),
        t.expect("target sandbox"),
    )
}

/// Runs SQL as the database owner.
pub async fn load(pg: &LocalPostgres, sql: &str) {
    pg.owner_client()
        .await
        .unwrap()
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("loading: {e}"));
}

/// Runs a transfer from `src` into `tgt`, without progress or cancellation.
pub async fn copy(
    src: &LocalPostgres,
    tgt: &LocalPostgres,
    opts: &TransferOptions,
) -> Result<TransferReport, TransferError> {
    copy_with(src, tgt, opts, &NoProgress).await
}

/// Runs a transfer from `src` into `tgt` reporting to `progress`, without
/// cancellation.
pub async fn copy_with(
    src: &LocalPostgres,
    tgt: &LocalPostgres,
    opts: &TransferOptions,
    progress: &impl Progress<TransferEvent>,
) -> Result<TransferReport, TransferError> {
    transfer::run(
        &url(src),
        &url(tgt),
        opts,
        progress,
        CancellationToken::new(),
    )
    .await
}

/// The first column of every row `sql` returns on `client`.
pub async fn column<T: FromSqlOwned>(client: &Client, sql: &str) -> Vec<T> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The one value the one row of `sql` holds, run as the database owner.
pub async fn scalar<T: FromSqlOwned>(pg: &LocalPostgres, sql: &str) -> T {
    pg.owner_client()
        .await
        .unwrap()
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// The owner's URL as a `DatabaseUrl`.
pub fn url(pg: &LocalPostgres) -> DatabaseUrl {
    pg.url()
        .expose_secret()
        .parse()
        .expect("sandbox URL parses")
}

/// Every event, serialized, for assertions.
#[derive(Default)]
pub struct Events(pub Mutex<Vec<TransferEvent>>);

impl Progress<TransferEvent> for Events {
    fn event(&self, e: &TransferEvent) {
        self.0.lock().unwrap().push(e.clone());
    }
}

impl Events {
    pub fn json(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect()
    }

    /// Every `Retrying` event's item and error, in order.
    pub fn retries(&self) -> Vec<(String, String)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                TransferEvent::Retrying { item, error, .. } => Some((item.clone(), error.clone())),
                _ => None,
            })
            .collect()
    }
}

/// Every runbook event, serialized, to check for secrets and order.
#[derive(Default, Clone)]
pub struct RunbookEvents(pub Arc<Mutex<Vec<String>>>);

impl Progress<RunbookEvent> for RunbookEvents {
    fn event(&self, e: &RunbookEvent) {
        self.0
            .lock()
            .unwrap()
            .push(serde_json::to_string(e).unwrap());
    }
}

impl RunbookEvents {
    /// Every event so far, one JSON document a line.
    pub fn all(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// The step and reason of a run a check aborted before the cutover, after
/// asserting that it exits 1 and that maintenance was put back off with
/// nothing left to restore by hand.
pub fn aborted_by_a_check(err: &RunbookError) -> (StepId, &str) {
    let RunbookError::Aborted {
        step,
        reason,
        restored,
        restore_failures,
        ..
    } = err
    else {
        panic!("expected an abort, got: {err}")
    };
    assert!(
        err.is_check_failure(),
        "exit code 1: a check found a difference: {err}"
    );
    assert!(
        restored.contains(&"maintenance off".to_string()) && restore_failures.is_empty(),
        "{err}"
    );
    (*step, reason)
}

/// One line per table (count + md5 of sorted rows), sequence (last_value,
/// is_called), large object (md5), and schema object, as superuser.
/// herokurds' own capture (schema `herokurds_capture`, its triggers) is
/// left out: [`herokurds_objects`] lists it.
pub async fn fingerprint(pg: &LocalPostgres) -> Vec<String> {
    let c = pg.superuser_client(pg.database()).await.unwrap();
    let inv = catalog::inventory(&c, &TableFilter::new()).await.unwrap();
    let mut out = Vec::new();
    for t in inv.tables.iter().filter(|t| t.holds_rows()) {
        let row = c
            .query_one(
                &format!(
                    "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) \
                     FROM ONLY {} t",
                    t.qualified_name()
                ),
                &[],
            )
            .await
            .unwrap();
        out.push(format!(
            "T {t} {} {}",
            row.get::<_, i64>(0),
            row.get::<_, String>(1)
        ));
    }
    for s in &inv.sequences {
        out.push(format!("S {s} {} {}", s.last_value, s.is_called));
    }
    for r in c
        .query(
            "SELECT oid::text, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid",
            &[],
        )
        .await
        .unwrap()
    {
        out.push(format!(
            "L {} {}",
            r.get::<_, String>(0),
            r.get::<_, String>(1)
        ));
    }
    let objects = "
        SELECT 'I ' || schemaname || ' ' || indexdef FROM pg_indexes
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'herokurds_capture')
        UNION ALL
        SELECT 'C ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
               || ' ' || condeferrable::text || condeferred::text || convalidated::text
          FROM pg_constraint WHERE connamespace::regnamespace::text NOT IN ('pg_catalog', 'information_schema', 'herokurds_capture')
        UNION ALL
        SELECT 'G ' || tgrelid::regclass::text || ' ' || pg_get_triggerdef(oid) FROM pg_trigger
         WHERE NOT tgisinternal AND tgname NOT LIKE 'herokurds%'
        UNION ALL
        SELECT 'P ' || schemaname || '.' || tablename || ' ' || policyname || ' ' || coalesce(qual, '') FROM pg_policies
        UNION ALL
        SELECT 'R ' || relname || ' ' || relrowsecurity::text || relforcerowsecurity::text || relpersistence::text FROM pg_class
         WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'm')
        UNION ALL
        SELECT 'M ' || matviewname || ' ' || ispopulated::text FROM pg_matviews
        UNION ALL
        SELECT 'E ' || extname || ' ' || extnamespace::regnamespace::text FROM pg_extension WHERE oid >= 16384
        ORDER BY 1";
    for r in c.query(objects, &[]).await.unwrap() {
        out.push(r.get::<_, String>(0));
    }
    out.sort();
    out
}

/// Asserts both databases hold the same, printing the differences.
pub async fn assert_same(source: &LocalPostgres, target: &LocalPostgres) {
    let (s, t) = tokio::join!(fingerprint(source), fingerprint(target));
    let only_s: Vec<&String> = s.iter().filter(|l| !t.contains(l)).collect();
    let only_t: Vec<&String> = t.iter().filter(|l| !s.contains(l)).collect();
    assert!(
        only_s.is_empty() && only_t.is_empty(),
        "source and target differ.\nonly in source:\n  {}\nonly in target:\n  {}",
        only_s
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  "),
        only_t
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  "),
    );
}

/// herokurds' objects on a database, listed by an independent query.
pub async fn herokurds_objects(pg: &LocalPostgres) -> Vec<String> {
    column(
        &pg.owner_client().await.unwrap(),
        "SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname LIKE 'herokurds%'
             UNION ALL SELECT 'trigger ' || tgrelid::regclass || ' ' || tgname
               FROM pg_trigger WHERE tgname LIKE 'herokurds%'
             UNION ALL SELECT 'function ' || oid::regprocedure FROM pg_proc
               WHERE proname LIKE 'herokurds%' OR pronamespace::regnamespace::text LIKE 'herokurds%'
             UNION ALL SELECT 'relation ' || oid::regclass FROM pg_class
               WHERE relnamespace::regnamespace::text LIKE 'herokurds%'",
    )
    .await
}

/// `finish`, asserting it removed the change capture from the target.
pub async fn finish(plan: &herokurds_core::runbook::Plan, ctx: &herokurds_core::runbook::Context) {
    let finished = herokurds_core::runbook::finish(plan, ctx, &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("finish fails: {e}"));
    assert!(
        finished
            .actions
            .iter()
            .any(|a| a.contains("capture removed from the target")),
        "{:?}",
        finished.actions
    );
}
