//! The settle step: after maintenance on, the writes of web requests still
//! in flight land before the copy's snapshot; a source that never goes
//! quiet stops the run before anything is copied, maintenance off.

mod transfer_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herokurds::runbook::{self, Journal, RunState, RunbookEvent, StepId, StepStatus, WorkDir};
use herokurds_testkit::demo::{DemoOptions, DemoStack, DEMO_ADDON, DEMO_APP};
use tokio_util::sync::CancellationToken;
use transfer_support::{aborted_by_a_check, scalar};

async fn start() -> DemoStack {
    DemoStack::start(DemoOptions {
        s3: false,
        ..DemoOptions::default()
    })
    .await
    .unwrap()
}

fn database_url(stack: &DemoStack) -> String {
    stack.heroku.config_vars(DEMO_APP).unwrap()["DATABASE_URL"].clone()
}

async fn learners(pg: &herokurds_testkit::LocalPostgres) -> i64 {
    scalar(pg, "SELECT count(*) FROM learners").await
}

/// Tables, indexes and sequences in `public`.
async fn public_relations(pg: &herokurds_testkit::LocalPostgres) -> i64 {
    scalar(
        pg,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public'",
    )
    .await
}

/// Records when maintenance went on, and every event's name.
#[derive(Clone, Default)]
struct Watch {
    maintenance_on: Arc<Mutex<Option<Instant>>>,
    settling_events: Arc<AtomicU64>,
}

impl herokurds::progress::Progress<RunbookEvent> for Watch {
    fn event(&self, e: &RunbookEvent) {
        match e {
            RunbookEvent::MaintenanceOn { .. } => {
                self.maintenance_on
                    .lock()
                    .unwrap()
                    .get_or_insert_with(Instant::now);
            }
            RunbookEvent::Settling { .. } => {
                self.settling_events.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_of_requests_in_flight_at_maintenance_on_land_before_the_snapshot() {
    let stack = start().await;
    let (mut plan, ctx) = (stack.plan(), stack.context());
    plan.maintenance.settle = Duration::from_millis(1500);
    let watch = Watch::default();

    // The web dyno: it writes until maintenance has been on for 1.5 s,
    // as requests still in flight when the router starts answering 503 do.
    let written_after_on = Arc::new(AtomicU64::new(0));
    let writer = {
        let on = watch.maintenance_on.clone();
        let after = written_after_on.clone();
        let client = stack.source.owner_client().await.unwrap();
        tokio::spawn(async move {
            for i in 0.. {
                let since_on = on.lock().unwrap().map(|t| t.elapsed());
                if since_on.is_some_and(|d| d > Duration::from_millis(1500)) {
                    break;
                }
                client
                    .execute(
                        "INSERT INTO learners (email, name, country) VALUES ($1, 'In flight', 'FR')",
                        &[&format!("inflight{i}@example.com")],
                    )
                    .await
                    .unwrap();
                if since_on.is_some() {
                    after.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let report = runbook::run(&plan, &ctx, &watch, CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("the run fails: {e}"));
    writer.await.unwrap();
    assert!(
        written_after_on.load(Ordering::Relaxed) > 5,
        "the writer kept writing after maintenance went on (the case under test)"
    );
    assert_eq!(
        learners(&stack.source).await,
        learners(&stack.target).await,
        "every in-flight write reached the target"
    );
    assert!(watch.settling_events.load(Ordering::Relaxed) > 0);
    let journal = Journal::load(&WorkDir::new(&plan.work_dir), DEMO_APP)
        .unwrap()
        .unwrap();
    let settle = journal.step(StepId::Settle);
    assert_eq!(settle.status, StepStatus::Done);
    let detail = settle.detail.as_deref().unwrap();
    let landed: i64 = detail
        .split_once('(')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {detail:?}"));
    assert!(
        landed > 0,
        "in-flight writes landed while it waited: {detail}"
    );
    assert_eq!(journal.state, RunState::Completed);
    assert!(
        report.to_markdown().contains("settle"),
        "the report lists the step"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_that_never_goes_quiet_stops_the_run_with_maintenance_off_naming_the_writers() {
    let stack = start().await;
    let (mut plan, ctx) = (stack.plan(), stack.context());
    plan.maintenance.settle = Duration::from_secs(1);
    plan.maintenance.settle_timeout = Duration::from_secs(4);
    let source_url = database_url(&stack);

    // A writer maintenance does not stop (an outside client), and a
    // session holding an open write transaction.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let client = stack.source.owner_client().await.unwrap();
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                client
                    .execute(
                        "INSERT INTO learners (email, name, country) VALUES ($1, 'Cron', 'US')",
                        &[&format!("cron{i}@example.com")],
                    )
                    .await
                    .unwrap();
                i += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let open = stack.source.owner_client().await.unwrap();
    open.batch_execute(
        "SET application_name = 'worker.1'; BEGIN; \
         INSERT INTO learners (email, name, country) VALUES ('open@example.com', 'Open', 'US')",
    )
    .await
    .unwrap();
    let open_pid: i32 = open
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    let before_target = public_relations(&stack.target).await;
    let err = runbook::run(&plan, &ctx, &Watch::default(), CancellationToken::new())
        .await
        .unwrap_err();
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    open.batch_execute("ROLLBACK").await.unwrap();

    let (step, reason) = aborted_by_a_check(&err);
    assert_eq!(step, StepId::Settle, "{err}");
    assert!(
        reason.contains("public.learners"),
        "names the table: {reason}"
    );
    assert!(
        reason.contains(&format!("pid {open_pid}")) && reason.contains("worker.1"),
        "names the session holding a transaction: {reason}"
    );
    assert!(
        reason.contains("scale_down") && reason.contains("settle_timeout"),
        "says what to do: {reason}"
    );
    assert_eq!(stack.heroku.maintenance(DEMO_APP), Some(false));
    assert_eq!(database_url(&stack), source_url, "the app is untouched");
    assert!(stack
        .heroku
        .attachments(DEMO_APP)
        .iter()
        .any(|a| a.name == "DATABASE" && a.addon == DEMO_ADDON));
    let after_target = public_relations(&stack.target).await;
    assert_eq!(before_target, after_target, "nothing was copied");
    let journal = Journal::load(&WorkDir::new(&plan.work_dir), DEMO_APP)
        .unwrap()
        .unwrap();
    assert!(matches!(journal.state, RunState::Aborted { .. }));
    assert_eq!(journal.step(StepId::Transfer).status, StepStatus::Pending);
}

/// Transaction ids are the server's: on a shared server (Heroku's Essential
/// plans) another database keeps using them. That is not a write on the
/// source: the run goes on once the timeout shows nothing of its own
/// database changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_in_another_database_of_the_server_do_not_stop_the_run() {
    let stack = start().await;
    let (mut plan, ctx) = (stack.plan(), stack.context());
    plan.maintenance.settle = Duration::from_secs(1);
    plan.maintenance.settle_timeout = Duration::from_secs(3);
    stack
        .source
        .superuser_execute("postgres", "CREATE DATABASE other_tenant")
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tenant = {
        let stop = stop.clone();
        let client = stack.source.superuser_client("other_tenant").await.unwrap();
        client
            .batch_execute("CREATE TABLE hits (n int)")
            .await
            .unwrap();
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                client
                    .execute("INSERT INTO hits VALUES ($1)", &[&n])
                    .await
                    .unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            n
        })
    };
    let report = runbook::run(&plan, &ctx, &Watch::default(), CancellationToken::new()).await;
    stop.store(true, Ordering::Relaxed);
    let inserts = tenant.await.unwrap();
    let report = report.unwrap_or_else(|e| panic!("the run fails: {e}"));
    assert!(inserts > 20, "the other tenant kept writing: {inserts}");
    assert_eq!(report.state, RunState::Completed);
    let journal = Journal::load(&WorkDir::new(&plan.work_dir), DEMO_APP)
        .unwrap()
        .unwrap();
    let detail = journal.step(StepId::Settle).detail.clone().unwrap();
    assert!(
        detail.contains("no table of this database changed"),
        "{detail}"
    );
}
