//! Faults and concurrency: connections killed mid-COPY are retried from a
//! clean state; rows written on the source during the copy do not appear
//! half-way; cancellation leaves a state --resume finishes.

mod transfer_support;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herokurds::progress::NoProgress;
use herokurds::transfer::{
    self, ResumeMode, RetryPolicy, TransferError, TransferEvent, TransferOptions,
};
use herokurds::url::DatabaseUrl;
use herokurds_testkit::LocalPostgres;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;
use transfer_support::{assert_same, column, copy, copy_with, load, pair, url, Events};

const BIG: &str = "
CREATE TABLE big_a (id bigint PRIMARY KEY, payload text, n numeric);
INSERT INTO big_a SELECT i, repeat(md5(i::text), 4), i * 1.5 FROM generate_series(1, 250000) i;
CREATE TABLE big_b (id bigint PRIMARY KEY, a_id bigint REFERENCES big_a (id), payload text);
INSERT INTO big_b SELECT i, i, repeat(md5(i::text), 3) FROM generate_series(1, 200000) i;
CREATE INDEX big_b_payload ON big_b (payload);
CREATE TABLE small (id serial PRIMARY KEY, v text);
INSERT INTO small (v) SELECT 'v' || i FROM generate_series(1, 1000) i;
ANALYZE;
";

/// How long a transfer under test may take, and how long a helper waits
/// for what it watches: past these the test fails instead of hanging.
const RUN_DEADLINE: Duration = Duration::from_secs(120);
const WATCH_DEADLINE: Duration = Duration::from_secs(90);

/// Runs the transfer `run` with `helper` (which waits for something the run
/// should do, and acts on it) alongside. Returns the run's result, and the
/// helper's or `None` if the run ended first (the helper is then dropped,
/// so a run that fails early fails the test rather than hanging it).
/// Panics if the run takes longer than [`RUN_DEADLINE`].
async fn alongside<T, H>(
    run: impl Future<Output = T>,
    helper: impl Future<Output = H>,
) -> (T, Option<H>) {
    let both = async {
        tokio::pin!(run, helper);
        let mut helped = None;
        loop {
            tokio::select! {
                out = &mut run => return (out, helped),
                h = &mut helper, if helped.is_none() => helped = Some(h),
            }
        }
    };
    tokio::time::timeout(RUN_DEADLINE, both)
        .await
        .unwrap_or_else(|_| panic!("the transfer did not finish within {RUN_DEADLINE:?}"))
}

/// Panics once [`WATCH_DEADLINE`] has passed since `started`.
fn check_deadline(started: Instant, waiting_for: &str) {
    assert!(
        started.elapsed() < WATCH_DEADLINE,
        "no {waiting_for} within {WATCH_DEADLINE:?}"
    );
}

/// Terminates, as superuser, an active COPY of `user`'s whose text matches
/// `pattern` (not one of `spare`); returns its pid once terminated.
/// Panics if none appears within [`WATCH_DEADLINE`].
async fn kill_copy(pg: &LocalPostgres, user: &str, pattern: &str, spare: &[i32]) -> i32 {
    kill_session(pg, user, pattern, spare, true).await
}

/// Terminates, as superuser, a session of `user`'s whose current (or, if
/// not `active_only`, last) query matches `pattern`, not one of `spare`;
/// returns its pid. Panics if none appears within [`WATCH_DEADLINE`].
async fn kill_session(
    pg: &LocalPostgres,
    user: &str,
    pattern: &str,
    spare: &[i32],
    active_only: bool,
) -> i32 {
    let su = pg.superuser_client("postgres").await.unwrap();
    let started = Instant::now();
    loop {
        check_deadline(
            started,
            &format!("session {pattern} of {user} to terminate"),
        );
        let row = su
            .query_opt(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE usename = $1 AND (state = 'active' OR NOT $4) AND query LIKE $2
                   AND NOT pid = ANY($3) LIMIT 1",
                &[&user, &pattern, &spare, &active_only],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            return row.get(0);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The pids of the target's sessions open now, to spare them from a kill.
async fn rds_master_sessions(tgt: &LocalPostgres) -> Vec<i32> {
    column(
        &tgt.superuser_client("postgres").await.unwrap(),
        "SELECT pid FROM pg_stat_activity WHERE usename = 'rds_master'",
    )
    .await
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy::new(4, Duration::from_millis(100), Duration::from_millis(400))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_killed_on_either_side_mid_copy_are_redone_and_the_result_is_identical() {
    let (src, tgt) = pair().await;
    let (su, tu) = (url(&src), url(&tgt));
    load(&src, BIG).await;
    let work = tempfile::tempdir().unwrap();
    let events = Events::default();
    // big_a is copied in slices, big_b whole.
    let opts = TransferOptions::new()
        .jobs(1)
        .split_tables_larger_than(24 << 20)
        .retry(fast_retries())
        .work_dir(work.path());
    let killer = async {
        kill_copy(&src, "heroku_owner", "COPY%TO STDOUT%", &[]).await;
        // The target session of the killed copy is dropped with it: spare
        // it, and kill the next COPY into the target (the retry, the next
        // slice or table).
        let dying = rds_master_sessions(&tgt).await;
        kill_copy(&tgt, "rds_master", "COPY%FROM STDIN%", &dying).await;
    };
    let (report, killed) = alongside(
        transfer::run(&su, &tu, &opts, &events, CancellationToken::new()),
        killer,
    )
    .await;
    let report = report.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        killed.is_some(),
        "the run finished before both copies were killed"
    );
    let retries: Vec<String> = events
        .retries()
        .into_iter()
        .map(|(item, error)| format!("{item}: {error}"))
        .collect();
    assert!(retries.len() >= 2, "{retries:?}");
    assert!(report
        .tables
        .iter()
        .any(|t| t.table == "public.big_a" && t.slices > 1));
    assert_same(&src, &tgt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_that_keeps_failing_stops_the_run_by_name_and_resume_finishes() {
    let (src, tgt) = pair().await;
    load(&src, BIG).await;
    let work = tempfile::tempdir().unwrap();
    let opts = TransferOptions::new()
        .jobs(1)
        .retry(RetryPolicy::new(
            2,
            Duration::from_millis(50),
            Duration::from_millis(50),
        ))
        .work_dir(work.path());
    let killer = async {
        let first = kill_copy(&src, "heroku_owner", "COPY%big_a%TO STDOUT%", &[]).await;
        kill_copy(&src, "heroku_owner", "COPY%big_a%TO STDOUT%", &[first]).await;
    };
    let (result, _) = alongside(copy(&src, &tgt, &opts), killer).await;
    match result {
        Err(TransferError::Table {
            table, attempts, ..
        }) => {
            assert_eq!(table, "public.big_a");
            assert_eq!(attempts, 2);
        }
        other => panic!("expected big_a to fail, got {other:?}"),
    }
    // A fresh run refuses the unfinished journal; --resume finishes.
    let err = copy(&src, &tgt, &opts).await.unwrap_err();
    assert!(
        err.to_string().contains("resume it") && !err.to_string().contains("--"),
        "the library names no flag: {err}"
    );
    let opts = opts.resume_mode(ResumeMode::Resume);
    let report = copy(&src, &tgt, &opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.resumed);
    assert_same(&src, &tgt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_leaves_a_state_resume_finishes_and_restart_redoes() {
    let (src, tgt) = pair().await;
    let (su, tu) = (url(&src), url(&tgt));
    load(&src, BIG).await;
    let work = tempfile::tempdir().unwrap();
    let opts = TransferOptions::new().jobs(1).work_dir(work.path());
    let cancel = CancellationToken::new();
    let events = Events::default();
    let stopper = {
        let cancel = cancel.clone();
        let tgt = &tgt;
        async move {
            // Cancel while big_b (the second table) is copying.
            kill_copy_wait(tgt, "COPY%big_b%FROM STDIN%").await;
            cancel.cancel();
        }
    };
    let (result, stopped) =
        alongside(transfer::run(&su, &tu, &opts, &events, cancel), stopper).await;
    assert!(
        matches!(result, Err(TransferError::Cancelled)),
        "{result:?}"
    );
    assert!(stopped.is_some());
    let opts = opts.resume_mode(ResumeMode::Resume);
    let events = Events::default();
    let report = transfer::run(&su, &tu, &opts, &events, CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let a = report
        .tables
        .iter()
        .find(|t| t.table == "public.big_a")
        .unwrap();
    assert!(a.from_earlier_run, "big_a was done before the cancel");
    assert!(events.0.lock().unwrap().iter().any(|e| matches!(e,
        TransferEvent::TableSkipped { table, .. } if table == "public.big_a")));
    assert_same(&src, &tgt).await;

    // --restart refuses a target other than the journaled one (it would
    // drop everything the user owns there) ...
    let opts = opts.resume_mode(ResumeMode::Restart);
    let elsewhere: DatabaseUrl = tgt
        .url_for("postgres", "require")
        .expose_secret()
        .parse()
        .unwrap();
    let err = transfer::run(
        &su,
        &elsewhere,
        &opts,
        &NoProgress,
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/postgres")
            && msg.contains("everything")
            && msg.contains("another work directory"),
        "{msg}"
    );
    // ... refuses a finished copy (an app may run on it by now), naming
    // what the target holds and the flag, and changes nothing ...
    let err = transfer::run(&su, &tu, &opts, &NoProgress, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransferError::TargetHasData { .. }) && !err.is_resumable(),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("finished at")
            && msg.contains("table(s)")
            && msg.contains("dropping the target allowed")
            && !msg.contains("--"),
        "{msg}"
    );
    assert_same(&src, &tgt).await;
    // ... and with leave to, on the journaled target drops everything and
    // copies again, saying so.
    let opts = opts.restart_target(true);
    let events = Events::default();
    let report = transfer::run(&su, &tu, &opts, &events, CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!report.resumed && report.tables.iter().all(|t| !t.from_earlier_run));
    assert!(
        events.json().iter().any(|e| e.contains("warning")
            && e.contains("DROP OWNED BY CURRENT_USER")
            && e.contains("rds_master@")),
        "{:?}",
        events.json()
    );
    assert_same(&src, &tgt).await;
}

/// Waits until an active COPY matching `pattern` runs on `pg`. Panics if
/// none appears within [`WATCH_DEADLINE`].
async fn kill_copy_wait(pg: &LocalPostgres, pattern: &str) {
    let su = pg.superuser_client("postgres").await.unwrap();
    let started = Instant::now();
    loop {
        check_deadline(started, &format!("active {pattern}"));
        let n: i64 = su
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1",
                &[&pattern],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_committed_during_the_copy_do_not_appear_half_way() {
    let (src, tgt) = pair().await;
    src.owner_client()
        .await
        .unwrap()
        .batch_execute(
            "CREATE TABLE orders (id bigint PRIMARY KEY, note text);
             CREATE TABLE order_lines (order_id bigint PRIMARY KEY REFERENCES orders (id), qty int);
             INSERT INTO orders SELECT i, 'initial' FROM generate_series(1, 1000) i;
             INSERT INTO order_lines SELECT i, 1 FROM generate_series(1, 1000) i;
             CREATE TABLE filler (id bigint, payload text);
             INSERT INTO filler SELECT i, repeat(md5(i::text), 8) FROM generate_series(1, 300000) i;",
        )
        .await
        .unwrap();
    // A writer adds an order and its line in one transaction, continuously.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicI64::new(1000));
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        let client = src.owner_client().await.unwrap();
        tokio::spawn(async move {
            let mut id = 1000i64;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                client
                    .batch_execute(&format!(
                        "BEGIN; INSERT INTO orders VALUES ({id}, 'during');
                         INSERT INTO order_lines VALUES ({id}, 2); COMMIT;"
                    ))
                    .await
                    .unwrap();
                written.store(id, Ordering::Relaxed);
            }
        })
    };
    // Let some writes happen before the snapshot, then keep writing.
    let started = Instant::now();
    while written.load(Ordering::Relaxed) < 1100 {
        assert!(!writer.is_finished(), "the writer stopped early");
        check_deadline(started, "100 orders written");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let work = tempfile::tempdir().unwrap();
    let opts = TransferOptions::new().jobs(2).work_dir(work.path());
    let (report, _) = alongside(copy(&src, &tgt, &opts), std::future::pending::<()>()).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let report = report.unwrap_or_else(|e| panic!("{e}"));
    let final_written = written.load(Ordering::Relaxed);

    let t = tgt.superuser_client(tgt.database()).await.unwrap();
    let row = t
        .query_one(
            "SELECT (SELECT count(*) FROM orders), (SELECT max(id) FROM orders),
                    (SELECT count(*) FROM order_lines), (SELECT max(order_id) FROM order_lines),
                    (SELECT count(*) FROM orders o FULL JOIN order_lines l ON l.order_id = o.id
                      WHERE o.id IS NULL OR l.order_id IS NULL)",
            &[],
        )
        .await
        .unwrap();
    let (orders, max_order, lines, max_line, unmatched): (i64, i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(orders, max_order, "ids are contiguous: no gaps");
    assert_eq!(
        (orders, max_order),
        (lines, max_line),
        "both tables at one instant"
    );
    assert_eq!(unmatched, 0);
    assert!(
        orders >= 1100,
        "writes before the snapshot are in: {orders}"
    );
    assert!(
        orders < final_written,
        "writes after the snapshot are not: {orders} of {final_written}"
    );
    assert_eq!(
        report
            .tables
            .iter()
            .find(|t| t.table == "public.orders")
            .unwrap()
            .rows as i64,
        orders
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_work_directory_is_locked_out() {
    let (src, tgt) = pair().await;
    load(&src, BIG).await;
    let work = tempfile::tempdir().unwrap();
    let opts = TransferOptions::new().jobs(1).work_dir(work.path());
    let second = async {
        kill_copy_wait(&tgt, "COPY%FROM STDIN%").await;
        copy(&src, &tgt, &opts).await
    };
    let (first, second) = alongside(copy(&src, &tgt, &opts), second).await;
    first.unwrap_or_else(|e| panic!("{e}"));
    match second {
        Some(Err(TransferError::Locked { pid, .. })) => {
            assert_eq!(pid, std::process::id().to_string())
        }
        other => panic!("expected the lock to refuse the second run, got {other:?}"),
    }
    assert_same(&src, &tgt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_timeouts_of_one_second_do_not_end_the_sessions_of_a_longer_copy() {
    let (src, tgt) = pair().await;
    // `slow` takes at least 2 s to load on the target (each row's domain
    // check sleeps there), so its COPY statements outlast 1 s on both
    // sides; meanwhile the snapshot session idles in its transaction, and
    // the sessions kept for sequences and large objects idle outside one.
    load(
        &src,
        "CREATE DOMAIN slow_on_target AS int CHECK (
           CASE WHEN current_user = 'rds_master' THEN pg_sleep(0.001)::text = '' ELSE true END);
         CREATE TABLE slow (id slow_on_target PRIMARY KEY, payload text);
         INSERT INTO slow SELECT i, repeat(md5(i::text), 256) FROM generate_series(1, 2000) i;
         CREATE TABLE later (id serial PRIMARY KEY, v text);
         INSERT INTO later (v) SELECT 'v' || i FROM generate_series(1, 1000) i;
         SELECT lo_from_bytea(4243, 'blob');
         ANALYZE;",
    )
    .await;
    for pg in [&src, &tgt] {
        let o = pg.owner();
        pg.superuser_execute(
            "postgres",
            &format!(
                "ALTER ROLE {o} SET statement_timeout = '1s';
                 ALTER ROLE {o} SET idle_in_transaction_session_timeout = '1s';
                 ALTER ROLE {o} SET idle_session_timeout = '1s';"
            ),
        )
        .await
        .unwrap();
        let c = pg.owner_client().await.unwrap();
        for setting in [
            "statement_timeout",
            "idle_in_transaction_session_timeout",
            "idle_session_timeout",
        ] {
            let value: String = c
                .query_one(&format!("SHOW {setting}"), &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(value, "1s", "{setting} of {}", pg.owner());
        }
    }
    let work = tempfile::tempdir().unwrap();
    let opts = TransferOptions::new()
        .jobs(1)
        .index_jobs(1)
        .retry(RetryPolicy::none())
        .work_dir(work.path());
    let (report, _) = alongside(copy(&src, &tgt, &opts), std::future::pending::<()>()).await;
    let report = report.unwrap_or_else(|e| panic!("{e}"));
    let slow = report
        .tables
        .iter()
        .find(|t| t.table == "public.slow")
        .unwrap();
    assert!(slow.seconds > 1.5, "slow took only {}s", slow.seconds);
    let data = report
        .phases
        .iter()
        .find(|(p, _)| *p == transfer::Phase::Data)
        .unwrap();
    assert!(data.1 > 1.5, "the data phase took only {}s", data.1);
    assert_eq!((report.sequences, report.large_objects), (1, 1));
    assert_same(&src, &tgt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_object_sessions_killed_on_either_side_are_redone_and_the_result_is_identical() {
    let (src, tgt) = pair().await;
    // 24 objects of 4 MiB: several pieces each, long enough to be caught.
    load(
        &src,
        "CREATE TABLE docs (id int PRIMARY KEY, blob oid);
         INSERT INTO docs SELECT i, lo_from_bytea(0, convert_to(repeat(md5(i::text), 131072), 'UTF8'))
         FROM generate_series(1, 24) i;",
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let events = Events::default();
    let opts = TransferOptions::new()
        .jobs(1)
        .retry(fast_retries())
        .work_dir(work.path());
    let killer = async {
        // The reader in the snapshot (idle between pieces), then the
        // loader of the redone batch.
        kill_session(&src, "heroku_owner", "%lo_get%", &[], false).await;
        // Spare the loader dropped with it (and every session open now).
        let before = rds_master_sessions(&tgt).await;
        kill_session(&tgt, "rds_master", "%lo_put%", &before, false).await;
    };
    let (report, killed) = alongside(copy_with(&src, &tgt, &opts, &events), killer).await;
    let report = report.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        killed.is_some(),
        "the large objects were copied before both kills"
    );
    let retries: Vec<String> = events
        .retries()
        .into_iter()
        .map(|(item, _)| item)
        .filter(|item| item.starts_with("large objects"))
        .collect();
    assert!(retries.len() >= 2, "{retries:?}");
    assert_eq!(report.large_objects, 24);
    assert_same(&src, &tgt).await;
}
