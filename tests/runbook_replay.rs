//! Lossless rollback: the writes the app makes on RDS after the cutover
//! are captured there and copied back to Heroku by `rollback`; `finish`
//! removes the capture; DDL on RDS makes the rollback refuse, naming it.

mod transfer_support;

use std::time::Duration;

use herokurds::progress::NoProgress;
use herokurds::runbook::{self, Journal, RunState, RunbookError, StepId, StepStatus, WorkDir};
use herokurds_testkit::demo::{DemoOptions, DemoStack, DEMO_APP};
use herokurds_testkit::LocalPostgres;
use tokio_util::sync::CancellationToken;
use transfer_support::{assert_same, column, fingerprint, herokurds_objects, RunbookEvents};

/// The demo stack, plus a table without a primary key on the source.
async fn start() -> DemoStack {
    let stack = DemoStack::start(DemoOptions {
        s3: false,
        ..DemoOptions::default()
    })
    .await
    .unwrap();
    stack
        .source
        .owner_client()
        .await
        .unwrap()
        .batch_execute(
            "CREATE TABLE page_views (path text NOT NULL, viewed_at timestamptz NOT NULL);
             INSERT INTO page_views
             SELECT '/courses/' || i % 40, timestamptz '2024-01-01' + i * interval '1 minute'
             FROM generate_series(1, 2000) AS i;",
        )
        .await
        .unwrap();
    stack
}

/// The port the app's `DATABASE_URL` points at.
fn app_port(stack: &DemoStack) -> u16 {
    let db: herokurds::url::DatabaseUrl = stack.heroku.config_vars(DEMO_APP).unwrap()
        ["DATABASE_URL"]
        .parse()
        .unwrap();
    db.port()
}

/// Foreign keys with their validity, by an independent query.
async fn foreign_keys(pg: &LocalPostgres) -> Vec<String> {
    column(
        &pg.owner_client().await.unwrap(),
        "SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) || ' ' || convalidated
         FROM pg_constraint WHERE contype = 'f' ORDER BY 1",
    )
    .await
}

/// What the app does on RDS after the cutover: inserts, updates, deletes
/// (children first, as its foreign keys require), a table without a key,
/// a sequence.
const APP_WRITES_ON_RDS: &str = "
    INSERT INTO learners (email, name, country) VALUES ('after1@example.com', 'After', 'NL'), ('after2@example.com', 'After', 'NL');
    UPDATE learners SET name = name || ' (edited)', profile = profile || '{\"edited\": true}' WHERE id % 50 = 0;
    DELETE FROM certificates WHERE id IN (SELECT id FROM certificates ORDER BY id LIMIT 25);
    DELETE FROM enrollments WHERE status = 'audit' AND NOT EXISTS (SELECT FROM certificates c WHERE c.enrollment_id = enrollments.id) AND id % 7 = 0;
    INSERT INTO enrollments (learner_id, course_id, status, grade, enrolled_at)
      SELECT id, 1, 'verified', NULL, now() FROM learners WHERE email LIKE 'after%';
    UPDATE page_views SET path = path || '?edited' WHERE viewed_at < '2024-01-01 01:00';
    DELETE FROM page_views WHERE path = '/courses/7';
    INSERT INTO page_views VALUES ('/new', now()), ('/new', now());
    SELECT nextval('invoice_number_seq') FROM generate_series(1, 5);
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollback_copies_every_write_made_on_rds_back_to_heroku_and_leaves_nothing_behind() {
    let stack = start().await;
    let (mut plan, ctx) = (stack.plan(), stack.context());
    plan.maintenance.settle = Duration::from_millis(300);
    let heroku_keys = foreign_keys(&stack.source).await;
    assert!(!heroku_keys.is_empty());
    let events = RunbookEvents::default();
    runbook::run(&plan, &ctx, &events, CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("the run fails: {e}"));
    assert_eq!(app_port(&stack), stack.target.port());
    let journal = Journal::load(&WorkDir::new(&plan.work_dir), DEMO_APP)
        .unwrap()
        .unwrap();
    assert_eq!(journal.step(StepId::TargetCapture).status, StepStatus::Done);
    // Capture is on RDS from the cutover, and on RDS only.
    let on_rds = herokurds_objects(&stack.target).await;
    assert!(
        on_rds.contains(&"schema herokurds_capture".to_string())
            && on_rds
                .iter()
                .any(|o| o.starts_with("trigger page_views herokurds_capture")),
        "{on_rds:?}"
    );
    assert_eq!(herokurds_objects(&stack.source).await, Vec::<String>::new());
    let status = runbook::status(&plan, &ctx).await.unwrap();
    let capture = status.target_capture.expect("status shows the capture");
    assert_eq!(capture.logged_changes, Some(0), "{:?}", capture.error);
    assert!(capture.tables >= 6, "{}", capture.tables);

    // The app writes on RDS.
    let heroku_before = fingerprint(&stack.source).await;
    stack
        .target
        .owner_client()
        .await
        .unwrap()
        .batch_execute(APP_WRITES_ON_RDS)
        .await
        .unwrap();
    let status = runbook::status(&plan, &ctx).await.unwrap();
    let logged = status
        .target_capture
        .and_then(|c| c.logged_changes)
        .unwrap();
    assert!(logged > 100, "{logged}");

    let rolled = runbook::rollback(&plan, &ctx, &events)
        .await
        .unwrap_or_else(|e| panic!("the rollback fails: {e}"));
    let replayed = rolled
        .replayed
        .as_ref()
        .expect("the writes were copied back");
    assert_eq!(replayed.changes as i64, logged, "{replayed:?}");
    assert!(
        replayed.tables == 4 && replayed.keys > 100 && replayed.bytes > 0,
        "{replayed:?}"
    );
    assert!(replayed.keys_compared >= replayed.keys && replayed.tables_counted == 4);
    assert_eq!(app_port(&stack), stack.source.port(), "back on Heroku");
    assert_eq!(stack.heroku.maintenance(DEMO_APP), Some(false));
    assert_ne!(
        fingerprint(&stack.source).await,
        heroku_before,
        "Heroku changed"
    );
    // Heroku now holds exactly what RDS holds: rows, sequences, keys.
    assert_same(&stack.source, &stack.target).await;
    assert_eq!(foreign_keys(&stack.source).await, heroku_keys);
    // Nothing of herokurds on either side.
    assert_eq!(herokurds_objects(&stack.target).await, Vec::<String>::new());
    assert_eq!(herokurds_objects(&stack.source).await, Vec::<String>::new());
    let journal = Journal::load(&WorkDir::new(&plan.work_dir), DEMO_APP)
        .unwrap()
        .unwrap();
    assert_eq!(journal.state, RunState::RolledBack);
    let all = events.all();
    assert!(all.contains("\"event\":\"round_applied\""), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ddl_on_rds_after_the_cutover_makes_rollback_refuse_naming_it_until_told_to_discard() {
    let stack = start().await;
    let (mut plan, ctx) = (stack.plan(), stack.context());
    plan.maintenance.settle = Duration::from_millis(300);
    runbook::run(&plan, &ctx, &NoProgress, CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("the run fails: {e}"));
    stack
        .target
        .owner_client()
        .await
        .unwrap()
        .batch_execute(
            "ALTER TABLE learners ADD COLUMN nickname text;
             INSERT INTO learners (email, name, country, nickname) VALUES ('ddl@example.com', 'D', 'NL', 'dd');",
        )
        .await
        .unwrap();
    let heroku_before = fingerprint(&stack.source).await;
    let heroku_keys = foreign_keys(&stack.source).await;

    let err = runbook::rollback(&plan, &ctx, &NoProgress)
        .await
        .unwrap_err();
    let RunbookError::ReplayRefused { reasons, .. } = &err else {
        panic!("expected a refusal naming the DDL, got: {err}");
    };
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("learners") && r.contains("nickname")),
        "{reasons:?}"
    );
    let words = err.to_string();
    assert!(
        words.contains("--discard-target-writes") && words.contains("Nothing was switched"),
        "{words}"
    );
    assert!(err.is_check_failure(), "exit code 1");
    // Nothing switched, Heroku untouched, the app up on RDS.
    assert_eq!(app_port(&stack), stack.target.port());
    assert_eq!(stack.heroku.maintenance(DEMO_APP), Some(false));
    assert_eq!(fingerprint(&stack.source).await, heroku_before);
    assert_eq!(foreign_keys(&stack.source).await, heroku_keys);
    assert!(!herokurds_objects(&stack.target).await.is_empty());

    // Told to lose the writes: switched back, capture removed.
    let discard = ctx.clone().discard_target_writes(true);
    let rolled = runbook::rollback(&plan, &discard, &NoProgress)
        .await
        .unwrap();
    assert!(rolled.replayed.is_none());
    assert_eq!(app_port(&stack), stack.source.port());
    assert_eq!(fingerprint(&stack.source).await, heroku_before);
    assert_eq!(herokurds_objects(&stack.target).await, Vec::<String>::new());
    assert_eq!(herokurds_objects(&stack.source).await, Vec::<String>::new());
}
