//! `herokurds run` with `[transfer] mode = "online"` on the demo stack:
//! the copy happens while the app writes; the window holds only the last
//! changes; nothing of herokurds stays on the source, whatever the ending.

mod transfer_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herokurds::runbook::{
    self, Journal, RunState, RunbookError, RunbookEvent, StepId, StepStatus, TransferMode, WorkDir,
};
use herokurds_testkit::demo::{DemoOptions, DemoStack, DEMO_APP};
use tokio_util::sync::CancellationToken;
use transfer_support::{assert_same, herokurds_objects};

async fn start() -> DemoStack {
    DemoStack::start(DemoOptions {
        s3: false,
        event_rows: 100_000,
        ..DemoOptions::default()
    })
    .await
    .unwrap()
}

/// Records when maintenance went on and off, and the steps that ran.
#[derive(Clone, Default)]
struct Watch {
    maintenance_on: Arc<Mutex<Option<Instant>>>,
    rounds: Arc<AtomicU64>,
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
            RunbookEvent::Online(herokurds::transfer::online::OnlineEvent::RoundApplied {
                ..
            }) => {
                self.rounds.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// The app: web requests that write (learners, enrollments, a sequence)
/// until `stop` says so, counting commits.
fn app_writer(
    client: tokio_postgres::Client,
    stop: impl Fn() -> bool + Send + 'static,
) -> (tokio::task::JoinHandle<()>, Arc<AtomicU64>) {
    let commits = Arc::new(AtomicU64::new(0));
    let c = commits.clone();
    let task = tokio::spawn(async move {
        let mut i = 0u64;
        while !stop() {
            client
                .batch_execute(&format!(
                    "BEGIN;
                     INSERT INTO learners (email, name, country) VALUES ('online{i}@example.com', 'Online', 'DE');
                     UPDATE learners SET name = name || '.' WHERE id = {};
                     DELETE FROM certificates WHERE id = {};
                     SELECT nextval('invoice_number_seq');
                     COMMIT;",
                    1 + i % 500,
                    1 + i
                ))
                .await
                .unwrap();
            c.fetch_add(1, Ordering::Relaxed);
            i += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (task, commits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_online_run_under_writes_moves_the_app_with_a_window_of_seconds_and_leaves_no_capture() {
    let stack = start().await;
    let (mut plan, ctx) = (stack.plan(), stack.context());
    plan.transfer.mode = TransferMode::Online;
    plan.maintenance.settle = Duration::from_millis(500);
    assert!(herokurds_objects(&stack.source).await.is_empty());
    let watch = Watch::default();
    // Web requests stop once maintenance has been on for a moment.
    let on = watch.maintenance_on.clone();
    let (writer, commits) = app_writer(stack.source.owner_client().await.unwrap(), move || {
        on.lock()
            .unwrap()
            .is_some_and(|t| t.elapsed() > Duration::from_millis(300))
    });
    let report = runbook::run(&plan, &ctx, &watch, CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("the online run fails: {e}"));
    writer.await.unwrap();
    let journal = Journal::load(&WorkDir::new(&plan.work_dir), DEMO_APP)
        .unwrap()
        .unwrap();
    assert_eq!(journal.state, RunState::Completed);
    for step in [
        StepId::OnlineCopy,
        StepId::CatchUp,
        StepId::OnlineVerify,
        StepId::OnlineFinish,
    ] {
        assert_eq!(journal.step(step).status, StepStatus::Done, "{step:?}");
    }
    assert_eq!(journal.step(StepId::Verify).status, StepStatus::Skipped);
    assert!(
        commits.load(Ordering::Relaxed) > 20,
        "the app wrote during the copy"
    );
    assert!(
        watch.rounds.load(Ordering::Relaxed) >= 2,
        "catch-up and window rounds"
    );
    // The app now runs on the target, which holds every write.
    let db: herokurds::url::DatabaseUrl = stack.heroku.config_vars(DEMO_APP).unwrap()
        ["DATABASE_URL"]
        .parse()
        .unwrap();
    assert_eq!(db.port(), stack.target.port());
    assert_eq!(herokurds_objects(&stack.source).await, Vec::<String>::new());
    // RDS keeps capture for a lossless rollback until `finish`.
    assert!(herokurds_objects(&stack.target)
        .await
        .contains(&"schema herokurds_capture".to_string()));
    assert_same(&stack.source, &stack.target).await;
    transfer_support::finish(&plan, &ctx).await;
    assert_eq!(herokurds_objects(&stack.target).await, Vec::<String>::new());
    assert_eq!(herokurds_objects(&stack.source).await, Vec::<String>::new());
    assert!(
        report.to_markdown().contains("online copy"),
        "{}",
        report.to_markdown()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_online_run_whose_source_keeps_being_written_aborts_with_maintenance_off_and_no_capture()
{
    let stack = start().await;
    let (mut plan, ctx) = (stack.plan(), stack.context());
    plan.transfer.mode = TransferMode::Online;
    plan.maintenance.settle = Duration::from_millis(500);
    plan.maintenance.settle_timeout = Duration::from_secs(3);
    // A writer maintenance does not stop.
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let (writer, _) = app_writer(stack.source.owner_client().await.unwrap(), move || {
        s.load(Ordering::Relaxed)
    });
    let err = runbook::run(&plan, &ctx, &Watch::default(), CancellationToken::new())
        .await
        .unwrap_err();
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let RunbookError::Aborted { step, restored, .. } = &err else {
        panic!("expected an abort, got {err}");
    };
    assert_eq!(*step, StepId::Settle);
    assert!(
        restored.iter().any(|r| r.contains("capture removed")),
        "{restored:?}"
    );
    assert_eq!(stack.heroku.maintenance(DEMO_APP), Some(false));
    let db: herokurds::url::DatabaseUrl = stack.heroku.config_vars(DEMO_APP).unwrap()
        ["DATABASE_URL"]
        .parse()
        .unwrap();
    assert_eq!(
        db.port(),
        stack.source.port(),
        "the app stays on its old database"
    );
    assert_eq!(herokurds_objects(&stack.source).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_online_run_rolled_back_before_the_cutover_removes_capture() {
    let stack = start().await;
    let (mut plan, ctx) = (stack.plan(), stack.context());
    plan.transfer.mode = TransferMode::Online;
    // Stop the run right after the catch-up: cancel on the first round.
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let stopper = move |e: &RunbookEvent| {
        if let RunbookEvent::Online(herokurds::transfer::online::OnlineEvent::RoundApplied {
            ..
        }) = e
        {
            c.cancel();
        }
    };
    let err = runbook::run(&plan, &ctx, &stopper, cancel)
        .await
        .unwrap_err();
    assert!(matches!(err, RunbookError::Interrupted { .. }), "{err}");
    assert!(
        !herokurds_objects(&stack.source).await.is_empty(),
        "capture stays while resumable"
    );
    let r = runbook::rollback(&plan, &ctx, &herokurds::progress::NoProgress)
        .await
        .unwrap();
    assert!(
        r.actions.iter().any(|a| a.contains("capture removed")),
        "{:?}",
        r.actions
    );
    assert_eq!(herokurds_objects(&stack.source).await, Vec::<String>::new());
}
