//! Faults and concurrency: connections killed mid-COPY are retried from a
//! clean state; rows written on the source during the copy do not appear
//! half-way; cancellation leaves a state --resume finishes.

mod transfer_support;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herokurds_core::sandbox::LocalPostgres;
use herokurds_core::transfer::{
    self, ResumeMode, RetryPolicy, TransferError, TransferEvent, TransferOptions,
};
use tokio_util::sync::CancellationToken;
use transfer_support::{assert_same, copy, load, pair, url, Events};

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

/// Terminates, as superuser, an active COPY of `user`'s whose text matches
/// `pattern` (not one of `spare`); returns its pid once terminated.
async fn kill_copy(pg: &LocalPostgres, user: &str, pattern: &str, spare: &[i32]) -> i32 {
    let su = pg.superuser_client("postgres").await.unwrap();
    loop {
        let row = su
            .query_opt(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE usename = $1 AND state = 'active' AND query LIKE $2
                   AND NOT pid = ANY($3) LIMIT 1",
                &[&user, &pattern, &spare],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            return row.get(0);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
        let dying: Vec<i32> = tgt
            .superuser_client("postgres")
            .await
            .unwrap()
            .query(
                "SELECT pid FROM pg_stat_activity WHERE usename = 'rds_master'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        kill_copy(&tgt, "rds_master", "COPY%FROM STDIN%", &dying).await;
    };
    let (report, ()) = tokio::join!(
        transfer::run(&su, &tu, &opts, &events, CancellationToken::new()),
        killer
    );
    let report = report.unwrap_or_else(|e| panic!("{e}"));
    let retries: Vec<String> = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            TransferEvent::Retrying { item, error, .. } => Some(format!("{item}: {error}")),
            _ => None,
        })
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
    let (result, ()) = tokio::join!(copy(&src, &tgt, &opts), killer);
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
    assert!(err.to_string().contains("--resume"), "{err}");
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
    let (result, ()) = tokio::join!(transfer::run(&su, &tu, &opts, &events, cancel), stopper);
    assert!(
        matches!(result, Err(TransferError::Cancelled)),
        "{result:?}"
    );
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

    // --restart drops everything and copies again.
    let opts = opts.resume_mode(ResumeMode::Restart);
    let report = copy(&src, &tgt, &opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!report.resumed && report.tables.iter().all(|t| !t.from_earlier_run));
    assert_same(&src, &tgt).await;
}

/// Waits until an active COPY matching `pattern` runs on `pg`.
async fn kill_copy_wait(pg: &LocalPostgres, pattern: &str) {
    let su = pg.superuser_client("postgres").await.unwrap();
    loop {
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
    while written.load(Ordering::Relaxed) < 1100 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let work = tempfile::tempdir().unwrap();
    let opts = TransferOptions::new().jobs(2).work_dir(work.path());
    let report = copy(&src, &tgt, &opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
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
    let (first, second) = tokio::join!(copy(&src, &tgt, &opts), second);
    first.unwrap_or_else(|e| panic!("{e}"));
    match second {
        Err(TransferError::Locked { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
        other => panic!("expected the lock to refuse, got {other:?}"),
    }
    assert_same(&src, &tgt).await;
}
