//! Online mode against real clusters: capture on a Heroku-shaped source
//! (non-superuser owner) while a writer keeps changing it, the copy, the
//! catch-up, the verified cut and the window; afterwards the target
//! equals the source by an independent comparison and nothing of
//! herokurds is left on either side.

mod transfer_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herokurds::progress::NoProgress;
use herokurds::transfer::online::{OnlineError, OnlineMigration};
use herokurds::transfer::TransferOptions;
use herokurds::verify::VerifyOptions;
use herokurds_testkit::LocalPostgres;
use tokio_util::sync::CancellationToken;
use transfer_support::{assert_same, herokurds_objects, load, pair, url};

/// Keys, no keys, a unique key instead of a primary key, foreign keys
/// with actions, partitions, inheritance, a user trigger that would
/// change rows if it fired on the target, large objects and sequences.
const SCHEMA: &str = r#"
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, note text);
INSERT INTO accounts SELECT i, 0, repeat('x', 50) FROM generate_series(1, 20000) i;
CREATE TABLE history (account int, delta bigint, at timestamptz DEFAULT now());
INSERT INTO history SELECT i % 100, i, '2024-01-01' FROM generate_series(1, 5000) i;
CREATE TABLE cards (id bigserial PRIMARY KEY, account int NOT NULL REFERENCES accounts ON DELETE CASCADE, label text);
INSERT INTO cards (account, label) SELECT i, 'card ' || i FROM generate_series(1, 3000) i;
CREATE TABLE tags (code text NOT NULL, region int NOT NULL, hits int, UNIQUE (code, region));
INSERT INTO tags SELECT 't' || i, i % 3, 0 FROM generate_series(1, 1000) i;
CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY, at date NOT NULL, payload jsonb,
                     PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE events_default PARTITION OF events DEFAULT;
INSERT INTO events (at, payload) SELECT date '2023-06-01' + (i % 400), jsonb_build_object('i', i)
FROM generate_series(1, 3000) i;
CREATE TABLE animals (id int PRIMARY KEY, name text);
CREATE TABLE dogs (breed text) INHERITS (animals);
INSERT INTO animals VALUES (1, 'generic');
INSERT INTO dogs VALUES (2, 'rex', 'collie'), (3, 'fido', 'pug');
CREATE TABLE audit (n bigint);
INSERT INTO audit VALUES (0);
CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE audit SET n = n + 1; RETURN NEW; END $$;
CREATE TRIGGER accounts_audit AFTER UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION count_update();
CREATE SEQUENCE tickets;
SELECT lo_from_bytea(70001, 'large object one');
SELECT lo_from_bytea(70002, 'large object two');
ANALYZE;
"#;

/// One writer transaction: what an app does, across every kind of table.
const WRITE: &str = "
BEGIN;
UPDATE accounts SET balance = balance + 1 WHERE id = (random() * 19999)::int + 1;
INSERT INTO history (account, delta) VALUES ((random() * 99)::int, 1);
DELETE FROM history WHERE ctid = (SELECT ctid FROM history ORDER BY random() LIMIT 1);
INSERT INTO cards (account, label)
  SELECT id, 'new' FROM accounts WHERE id >= (random() * 19999)::int + 1 ORDER BY id LIMIT 1;
UPDATE cards SET label = 'changed' WHERE id = (random() * 2999)::int + 1;
DELETE FROM accounts WHERE id = (random() * 19999)::int + 1;
UPDATE tags SET hits = hits + 1 WHERE code = 't' || ((random() * 999)::int + 1) AND region IN (0, 1, 2);
INSERT INTO events (at, payload) VALUES (date '2023-01-01' + (random() * 700)::int, '{}');
UPDATE events SET at = at + 400 WHERE id = (random() * 2999)::int + 1;
UPDATE dogs SET name = name || '!' WHERE id = 2;
SELECT nextval('tickets');
COMMIT;";

/// Runs `WRITE` in a loop as the owner until stopped; counts commits.
struct Writer {
    stop: Arc<AtomicBool>,
    commits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    async fn start(pg: &LocalPostgres) -> Writer {
        let client = pg.owner_client().await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let commits = Arc::new(AtomicU64::new(0));
        let (s, c) = (stop.clone(), commits.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                client
                    .batch_execute(WRITE)
                    .await
                    .expect("the writer's transaction");
                c.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        Writer {
            stop,
            commits,
            task,
        }
    }

    /// Stops, and returns how many transactions committed.
    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        self.commits.load(Ordering::Relaxed)
    }

    fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

/// The audit trigger's count.
async fn audit(pg: &LocalPostgres) -> i64 {
    pg.owner_client()
        .await
        .unwrap()
        .query_one("SELECT n FROM audit", &[])
        .await
        .unwrap()
        .get(0)
}

async fn loaded_pair() -> (LocalPostgres, LocalPostgres) {
    let (src, tgt) = pair().await;
    load(&src, SCHEMA).await;
    (src, tgt)
}

/// A loaded pair, their URLs, the options of an online migration with
/// its own work directory (kept until the end), and a cancellation token.
async fn setup() -> (
    LocalPostgres,
    LocalPostgres,
    herokurds::url::DatabaseUrl,
    herokurds::url::DatabaseUrl,
    TransferOptions,
    CancellationToken,
    tempfile::TempDir,
) {
    let (src, tgt) = loaded_pair().await;
    let (su, tu) = (url(&src), url(&tgt));
    let work = tempfile::tempdir().unwrap();
    let opts = opts(work.path());
    (src, tgt, su, tu, opts, CancellationToken::new(), work)
}

fn opts(work: &std::path::Path) -> TransferOptions {
    TransferOptions::new()
        .jobs(2)
        .split_tables_larger_than(256 * 1024)
        .work_dir(work)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_online_copy_under_writes_ends_equal_and_leaves_nothing_behind() {
    let (src, tgt, su, tu, opts, cancel, _work) = setup().await;
    let before = herokurds_objects(&src).await;
    assert!(before.is_empty(), "{before:?}");

    let writer = Writer::start(&src).await;
    let mut m = OnlineMigration::open(&su, &tu, &opts).unwrap();
    m.copy(&NoProgress, cancel.clone()).await.unwrap().unwrap();
    let during_copy = writer.commits();
    assert!(
        herokurds_objects(&src).await.len() > 10,
        "capture is installed"
    );
    let held = m.state().held_back.clone().unwrap();
    assert_eq!(held.foreign_keys.len(), 1, "{held:?}");
    assert_eq!(held.triggers.len(), 1, "{held:?}");

    let catch = m
        .catch_up(Duration::from_secs(1), 20, &NoProgress, &cancel)
        .await
        .unwrap();
    assert!(catch.rounds >= 1 && catch.keys > 0, "{catch:?}");
    // Lower the threshold so the cut's verification slices tables too.
    let cut = m
        .verify_cut(&VerifyOptions::new().jobs(2), &NoProgress, &cancel)
        .await
        .unwrap();
    assert!(
        cut.expected
            .iter()
            .any(|e| e.contains("foreign key held back")),
        "{:?}",
        cut.expected
    );
    // Maintenance on: the writer stops (settled).
    let commits = writer.stop().await;
    assert!(
        commits > during_copy,
        "the writer kept writing after the copy"
    );
    // A large object written after the copy: no trigger sees it.
    load(
        &src,
        "SELECT lo_put(70001, 0, 'LARGE'); SELECT lo_from_bytea(70003, 'new one');",
    )
    .await;
    let window = m.finish_window(&NoProgress, &cancel).await.unwrap();
    assert!(window.keys_checked > 0, "{window:?}");
    assert_eq!(window.large_objects_recopied, Some(3), "{window:?}");
    assert_eq!(window.foreign_keys, 1);
    m.check_quiet().await.unwrap();
    m.finish(&NoProgress).await.unwrap();

    assert_eq!(herokurds_objects(&src).await, Vec::<String>::new());
    assert_eq!(herokurds_objects(&tgt).await, Vec::<String>::new());
    assert_same(&src, &tgt).await;
    // The target's user trigger did not fire while changes were applied:
    // its count is the source's.
    assert_eq!(audit(&src).await, audit(&tgt).await);
    assert!(audit(&src).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schema_change_during_the_online_copy_stops_the_window_and_abort_cleans_up() {
    let (src, _tgt, su, tu, opts, cancel, _work) = setup().await;
    let mut m = OnlineMigration::open(&su, &tu, &opts).unwrap();
    m.copy(&NoProgress, cancel.clone()).await.unwrap();
    m.verify_cut(&VerifyOptions::new(), &NoProgress, &cancel)
        .await
        .unwrap();
    load(&src, "ALTER TABLE accounts ADD COLUMN nickname text; UPDATE accounts SET nickname = 'n' WHERE id = 5;").await;
    let err = m.finish_window(&NoProgress, &cancel).await.unwrap_err();
    match &err {
        OnlineError::SchemaChanged { changes } => assert!(
            changes
                .iter()
                .any(|c| c.contains("public.accounts.nickname")),
            "{changes:?}"
        ),
        other => panic!("expected SchemaChanged, got {other:?}"),
    }
    assert!(err.is_check_failure());
    assert!(!herokurds_objects(&src).await.is_empty());
    m.abort(&NoProgress).await.unwrap();
    assert_eq!(herokurds_objects(&src).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_that_does_not_stop_fails_the_write_check_and_a_reopened_run_catches_up() {
    let (src, tgt, su, tu, opts, cancel, _work) = setup().await;
    let writer = Writer::start(&src).await;
    let mut m = OnlineMigration::open(&su, &tu, &opts).unwrap();
    m.copy(&NoProgress, cancel.clone()).await.unwrap();
    m.verify_cut(&VerifyOptions::new(), &NoProgress, &cancel)
        .await
        .unwrap();
    m.finish_window(&NoProgress, &cancel).await.unwrap();
    // The writer was never stopped: changes land after the last round.
    tokio::time::sleep(Duration::from_millis(300)).await;
    match m.check_quiet().await.unwrap_err() {
        OnlineError::StillWriting { changes, tables } => {
            assert!(changes > 0);
            assert!(
                tables.iter().any(|t| t.starts_with("public.accounts")),
                "{tables:?}"
            );
        }
        other => panic!("expected StillWriting, got {other:?}"),
    }
    writer.stop().await;

    // A new process (the journal, reopened) catches up what was left and
    // then ends equal.
    drop(m);
    let mut m = OnlineMigration::open(&su, &tu, &opts).unwrap();
    assert!(m.state().restored);
    // Catching up again holds foreign keys and triggers back again first.
    m.catch_up(Duration::from_secs(1), 5, &NoProgress, &cancel)
        .await
        .unwrap();
    assert!(!m.state().restored);
    m.finish_window(&NoProgress, &cancel).await.unwrap();
    m.check_quiet().await.unwrap();
    m.finish(&NoProgress).await.unwrap();
    assert_eq!(herokurds_objects(&src).await, Vec::<String>::new());
    assert_same(&src, &tgt).await;
    assert_eq!(audit(&src).await, audit(&tgt).await);
}
