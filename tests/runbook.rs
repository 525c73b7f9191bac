//! The whole migration end to end on sandboxes: Heroku-like and RDS-like
//! PostgreSQL clusters, the Heroku emulator, moto, and the sample app's web
//! site whose pages follow the app's DATABASE_URL.

use std::sync::{Arc, Mutex};

use herokurds_core::runbook::{
    self, Journal, RunState, RunbookError, RunbookEvent, StepId, WorkDir,
};
use herokurds_core::sandbox::demo::{
    DemoOptions, DemoStack, DEMO_ADDON, NEW_BUCKET, OLD_BUCKET, TARGET_URL_ENV,
};
use herokurds_core::transfer::TransferEvent;
use herokurds_core::url::DatabaseUrl;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

/// Collects every event, serialised, to check for secrets and order.
#[derive(Default, Clone)]
struct Events(Arc<Mutex<Vec<String>>>);

impl herokurds_core::progress::Progress<RunbookEvent> for Events {
    fn event(&self, e: &RunbookEvent) {
        self.0
            .lock()
            .unwrap()
            .push(serde_json::to_string(e).unwrap());
    }
}

impl Events {
    fn all(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

fn database_url(stack: &DemoStack) -> DatabaseUrl {
    stack
        .heroku
        .config_vars(herokurds_core::sandbox::demo::DEMO_APP)
        .unwrap()["DATABASE_URL"]
        .parse()
        .unwrap()
}

fn var(stack: &DemoStack, name: &str) -> Option<String> {
    stack
        .heroku
        .config_vars(herokurds_core::sandbox::demo::DEMO_APP)
        .unwrap()
        .get(name)
        .cloned()
}

fn url_of(pg: &herokurds_core::sandbox::LocalPostgres) -> DatabaseUrl {
    pg.url().expose_secret().parse().unwrap()
}

fn attachments(stack: &DemoStack) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = stack
        .heroku
        .attachments(herokurds_core::sandbox::demo::DEMO_APP)
        .into_iter()
        .map(|a| (a.name.clone(), a.addon.clone()))
        .collect();
    v.sort();
    v
}

fn journal(stack: &DemoStack) -> Journal {
    let plan = stack.plan();
    Journal::load(&WorkDir::new(&plan.work_dir), &plan.heroku.app)
        .unwrap()
        .unwrap()
}

/// Every secret of the stack: passwords, the API token, a config value.
fn secrets(stack: &DemoStack) -> Vec<String> {
    vec![
        stack.source.password().expose_secret().to_string(),
        stack.target.password().expose_secret().to_string(),
        stack.token().to_string(),
        var(stack, "SECRET_KEY").unwrap(),
    ]
}

fn assert_no_secrets(stack: &DemoStack, what: &str, text: &str) {
    for s in secrets(stack) {
        assert!(!text.contains(&s), "{what} leaks a secret");
    }
}

async fn count(pg: &herokurds_core::sandbox::LocalPostgres, sql: &str) -> i64 {
    pg.owner_client()
        .await
        .unwrap()
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_run_moves_the_app_to_rds_and_rollback_brings_it_back() {
    let stack = DemoStack::start(DemoOptions::default()).await.unwrap();
    let (plan, ctx) = (stack.plan(), stack.context());
    let secret_key = var(&stack, "SECRET_KEY");

    let planned = runbook::preflight(&plan, &ctx).await.unwrap();
    assert!(planned.problems.is_empty(), "{:?}", planned.problems);
    assert_eq!(planned.steps.len(), 16);
    assert_eq!(planned.addon, DEMO_ADDON);
    assert!(planned.read_rate_mb_s.is_some() && planned.estimated_window_seconds.is_some());
    // Measured, not assumed: the target's write probe ran, and the demo's
    // small database is estimated in seconds (a fixed 30 s once made it 31 s).
    let estimate = planned.estimate.as_ref().expect("the estimate's parts");
    assert!(
        estimate.write_mb_s.is_some() && estimate.index_mb_s.is_some(),
        "{estimate:?}"
    );
    assert!(estimate.total_seconds < 30.0, "{estimate:?}");
    assert_eq!(
        stack.heroku.maintenance("micromasters-demo"),
        Some(false),
        "plan changes nothing"
    );

    let events = Events::default();
    let report = runbook::run(&plan, &ctx, &events, CancellationToken::new())
        .await
        .unwrap();
    assert!(
        report.estimated_window_seconds.is_some() && report.downtime_seconds.is_some(),
        "the report shows the estimate next to the real window"
    );
    assert!(
        events.all().contains("\"source_snapshot\":\""),
        "the verification reads the source in the transfer's snapshot"
    );

    // The app runs on RDS, maintenance is off, the old add-on is kept for rollback.
    assert_eq!(database_url(&stack), url_of(&stack.target));
    assert_eq!(stack.heroku.maintenance("micromasters-demo"), Some(false));
    assert_eq!(
        attachments(&stack),
        vec![
            ("HEROKU_POSTGRESQL_YELLOW".into(), DEMO_ADDON.into()),
            ("HEROKU_POSTGRES_DB".into(), DEMO_ADDON.into()),
        ]
    );
    assert_eq!(
        var(&stack, "AWS_STORAGE_BUCKET_NAME").as_deref(),
        Some(NEW_BUCKET)
    );
    assert_eq!(
        var(&stack, "SECRET_KEY"),
        secret_key,
        "other config vars untouched"
    );
    let formation = stack.heroku.formation("micromasters-demo");
    assert_eq!(
        (formation["worker"], formation["clock"]),
        (2, 1),
        "dynos restored"
    );

    // Data verified equal, bucket synced, pages look the same.
    let v = report.verify.as_ref().unwrap();
    assert!(v.identical && v.checksums && v.tables >= 5, "{v:?}");
    assert_eq!(
        count(&stack.target, "SELECT count(*) FROM enrollments").await,
        count(&stack.source, "SELECT count(*) FROM enrollments").await
    );
    let moto = stack.moto.as_ref().unwrap();
    assert_eq!(
        moto.keys(OLD_BUCKET).await.unwrap(),
        moto.keys(NEW_BUCKET).await.unwrap()
    );
    assert!(
        report.smoke_pages == 3 && report.smoke_differences.is_empty(),
        "{:?}",
        report.smoke_differences
    );
    assert!(report.downtime_seconds.unwrap() > 0.0);
    assert_eq!(report.state, RunState::Completed);
    let events_text = events.all();
    assert!(
        events_text.contains("\"event\":\"maintenance_on\"")
            && events_text.contains("\"event\":\"maintenance_off\"")
    );

    // No secret in the journal, the report or the events.
    let plan_dir = WorkDir::new(&plan.work_dir);
    let journal_text = std::fs::read_to_string(plan_dir.journal(&plan.heroku.app)).unwrap();
    assert_no_secrets(&stack, "journal", &journal_text);
    assert_no_secrets(&stack, "report", &report.to_markdown());
    assert_no_secrets(
        &stack,
        "report JSON",
        &serde_json::to_string(&report).unwrap(),
    );
    assert_no_secrets(&stack, "events", &events_text);

    // A worker writes to RDS after the cutover, then stops (the rollback
    // scales workers down before counting); its counters reach the
    // statistics as it exits, which the count waits for.
    let target = stack.target.owner_client().await.unwrap();
    target
        .batch_execute(
            "INSERT INTO learners (email, name, country) VALUES ('late1@example.com', 'Late', 'US'), ('late2@example.com', 'Late', 'US')",
        )
        .await
        .unwrap();
    drop(target);

    let rolled = runbook::rollback(&plan, &ctx, &events).await.unwrap();
    assert!(
        rolled
            .actions
            .iter()
            .any(|a| a.starts_with("scaled to 0 while switching back")),
        "workers stop before the count: {:?}",
        rolled.actions
    );
    assert_eq!(rolled.target_writes, Some(2), "{rolled:?}");
    assert_eq!(
        rolled.target_tables_written,
        vec!["public.learners".to_string()]
    );
    assert_eq!(database_url(&stack), url_of(&stack.source));
    assert_eq!(
        attachments(&stack),
        vec![
            ("DATABASE".into(), DEMO_ADDON.into()),
            ("HEROKU_POSTGRESQL_YELLOW".into(), DEMO_ADDON.into())
        ],
        "exactly the attachments from before"
    );
    assert_eq!(
        var(&stack, "AWS_STORAGE_BUCKET_NAME").as_deref(),
        Some(OLD_BUCKET)
    );
    assert_eq!(stack.heroku.maintenance("micromasters-demo"), Some(false));
    assert_eq!(journal(&stack).state, RunState::RolledBack);

    // Forward again: a fresh copy (the target is started over) and a new cutover.
    let again = runbook::run(&plan, &ctx, &events, CancellationToken::new())
        .await
        .unwrap();
    assert!(again.verify.unwrap().identical);
    assert_eq!(database_url(&stack), url_of(&stack.target));
    assert_eq!(
        count(
            &stack.target,
            "SELECT count(*) FROM learners WHERE email LIKE 'late%'"
        )
        .await,
        0,
        "rows written on RDS before the rollback are gone after the fresh copy"
    );
    let err = runbook::run(&plan, &ctx, &events, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already migrated"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_writing_during_the_window_stops_the_cutover() {
    let stack = DemoStack::start(DemoOptions {
        s3: false,
        scale_down: vec![],
        ..DemoOptions::default()
    })
    .await
    .unwrap();
    let (plan, ctx) = (stack.plan(), stack.context());
    let source_url = database_url(&stack);

    // A clock dyno: maintenance mode does not stop it. It writes once the
    // window has started.
    let started = Arc::new(tokio::sync::Notify::new());
    let writer = {
        let started = started.clone();
        let client = stack.source.owner_client().await.unwrap();
        tokio::spawn(async move {
            started.notified().await;
            for i in 0..40 {
                client
                    .execute(
                        "INSERT INTO learners (email, name, country) VALUES ($1, 'Clock', 'DE')",
                        &[&format!("clock{i}@example.com")],
                    )
                    .await
                    .unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
    };
    let notify = started.clone();
    let progress = move |e: &RunbookEvent| {
        if matches!(e, RunbookEvent::MaintenanceOn { .. }) {
            notify.notify_one();
        }
    };
    let err = runbook::run(&plan, &ctx, &progress, CancellationToken::new())
        .await
        .unwrap_err();
    writer.await.unwrap();
    let RunbookError::Aborted {
        step,
        reason,
        restored,
        restore_failures,
        ..
    } = &err
    else {
        panic!("expected an abort before the cutover, got: {err}")
    };
    assert!(matches!(step, StepId::Verify | StepId::WriteCheck), "{err}");
    assert!(
        reason.contains("public.learners"),
        "the changed table is named: {reason}"
    );
    assert!(
        err.is_check_failure(),
        "exit code 1: a check found a difference"
    );
    assert!(
        restored.contains(&"maintenance off".to_string()) && restore_failures.is_empty(),
        "{err}"
    );
    assert_eq!(stack.heroku.maintenance("micromasters-demo"), Some(false));
    assert_eq!(
        database_url(&stack),
        source_url,
        "the app still runs on the old database"
    );
    assert!(attachments(&stack).contains(&("DATABASE".into(), DEMO_ADDON.into())));
    assert!(matches!(journal(&stack).state, RunState::Aborted { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_write_after_the_final_sync_is_caught_by_the_write_check() {
    let stack = DemoStack::start(DemoOptions {
        s3: false,
        ..DemoOptions::default()
    })
    .await
    .unwrap();
    let (plan, ctx) = (stack.plan(), stack.context());
    let source_url = database_url(&stack);
    let verified = Arc::new(tokio::sync::Notify::new());
    let writer = {
        let verified = verified.clone();
        let client = stack.source.owner_client().await.unwrap();
        tokio::spawn(async move {
            verified.notified().await;
            client
                .batch_execute("UPDATE programs SET title = title || ' (new)' WHERE slug = 'fin'")
                .await
                .unwrap();
        })
    };
    let notify = verified.clone();
    let progress = move |e: &RunbookEvent| {
        // The last step before the write check: a write here is the last
        // one that could slip into the cutover.
        if let RunbookEvent::StepFinished {
            step: StepId::S3FinalSync,
            ..
        } = e
        {
            notify.notify_one();
            // Give the writer time to commit before the check starts.
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    };
    let err = runbook::run(&plan, &ctx, &progress, CancellationToken::new())
        .await
        .unwrap_err();
    writer.await.unwrap();
    let RunbookError::Aborted { step, reason, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*step, StepId::WriteCheck, "{err}");
    assert!(
        reason.contains("public.programs") && reason.contains("scale_down"),
        "{reason}"
    );
    assert_eq!(database_url(&stack), source_url);
    assert_eq!(stack.heroku.maintenance("micromasters-demo"), Some(false));
    let formation = stack.heroku.formation("micromasters-demo");
    assert_eq!(
        (formation["worker"], formation["clock"]),
        (2, 1),
        "dynos scaled back up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_transfer_resumes_and_finishes() {
    let stack = DemoStack::start(DemoOptions {
        s3: false,
        event_rows: 300_000,
        ..DemoOptions::default()
    })
    .await
    .unwrap();
    let (plan, ctx) = (stack.plan(), stack.context());
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let progress = move |e: &RunbookEvent| {
        if let RunbookEvent::Transfer(TransferEvent::TableFinished { .. }) = e {
            c.cancel();
        }
    };
    let err = runbook::run(&plan, &ctx, &progress, cancel)
        .await
        .unwrap_err();
    let RunbookError::Interrupted {
        step,
        maintenance_on,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(*step, StepId::Transfer);
    assert!(
        *maintenance_on,
        "an interruption leaves maintenance on for resume"
    );
    assert!(
        err.to_string().contains("herokurds resume --config"),
        "{err}"
    );

    let status = runbook::status(&plan, &ctx).await.unwrap();
    assert_eq!(status.next_step, Some(StepId::Transfer));
    assert!(status.maintenance);
    assert_eq!(status.database_addon.as_deref(), Some(DEMO_ADDON));

    let events = Events::default();
    let report = runbook::resume(&plan, &ctx, &events, CancellationToken::new())
        .await
        .unwrap();
    assert!(report.verify.unwrap().identical);
    assert!(events.all().contains("\"event\":\"step_already_done\""));
    assert!(
        events.all().contains("\"event\":\"maintenance_on\""),
        "the resumed window shows its downtime clock"
    );
    assert_eq!(database_url(&stack), url_of(&stack.target));
    assert_eq!(
        count(&stack.target, "SELECT count(*) FROM events").await,
        300_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_heroku_outage_during_the_cutover_is_retried_then_reported_and_resume_finishes() {
    use herokurds_core::heroku::emulator::Fault;
    let stack = DemoStack::start(DemoOptions {
        s3: false,
        ..DemoOptions::default()
    })
    .await
    .unwrap();
    let (plan, ctx) = (stack.plan(), stack.context());
    let emulator = &stack.heroku;
    let progress = |e: &RunbookEvent| match e {
        // One failed request: the client retries it and the step succeeds.
        RunbookEvent::StepStarted {
            step: StepId::AttachBackup,
            ..
        } => emulator.inject(Fault::new(503, 1)),
        // A lasting outage: the retries run out and the run stops.
        RunbookEvent::StepStarted {
            step: StepId::DetachDatabase,
            ..
        } => emulator.inject(Fault::new(503, 1000)),
        _ => {}
    };
    let err = runbook::run(&plan, &ctx, &progress, CancellationToken::new())
        .await
        .unwrap_err();
    let RunbookError::CutoverIncomplete { step, state, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*step, StepId::DetachDatabase);
    assert!(
        state.contains("still uses postgresql-rigid-71273 as DATABASE")
            && state.contains("HEROKU_POSTGRES_DB"),
        "{state}"
    );
    let text = err.to_string();
    assert!(
        text.contains("maintenance mode is still ON")
            && text.contains("herokurds rollback --config"),
        "{text}"
    );
    assert!(text.contains("503"), "the API's failure is named: {text}");
    assert!(journal(&stack).is_finished(StepId::AttachBackup));
    emulator.clear_faults();
    assert_eq!(emulator.maintenance("micromasters-demo"), Some(true));

    let report = runbook::resume(
        &plan,
        &ctx,
        &herokurds_core::progress::NoProgress,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.state, RunState::Completed);
    assert_eq!(database_url(&stack), url_of(&stack.target));
    assert_eq!(emulator.maintenance("micromasters-demo"), Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plan_names_every_problem_and_changes_nothing() {
    let stack = DemoStack::start(DemoOptions::default()).await.unwrap();
    stack
        .target
        .owner_client()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE leftover (x int)")
        .await
        .unwrap();
    let mut text = stack.plan_toml().replace(NEW_BUCKET, "no-such-bucket");
    text = text.replace(
        "scale_down = [\"worker\", \"clock\"]",
        "scale_down = [\"worker\", \"sidekiq\"]",
    );
    let plan = runbook::Plan::parse(&text).unwrap();
    let releases_before = stack.heroku.releases("micromasters-demo").len();
    let report = runbook::preflight(&plan, &stack.context()).await.unwrap();
    let all = report.problems.join("\n");
    assert!(all.contains("sidekiq"), "{all}");
    assert!(all.contains("no-such-bucket"), "{all}");
    assert!(
        all.to_lowercase().contains("target") && all.contains("table"),
        "{all}"
    );
    assert_eq!(
        stack.heroku.releases("micromasters-demo").len(),
        releases_before
    );
    assert_eq!(stack.heroku.maintenance("micromasters-demo"), Some(false));
    assert_no_secrets(
        &stack,
        "plan report",
        &serde_json::to_string(&report).unwrap(),
    );

    // run refuses at preflight, before maintenance.
    let err = runbook::run(
        &plan,
        &stack.context(),
        &herokurds_core::progress::NoProgress,
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            RunbookError::Aborted {
                step: StepId::Preflight,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(stack.heroku.maintenance("micromasters-demo"), Some(false));

    // [source] url_env replaces the app's DATABASE_URL: an unset variable
    // is named; a set one is the URL used (its wrong password is reported
    // although the add-on's own URL is right).
    let plan = runbook::Plan::parse(&format!(
        "{}\n[source]\nurl_env = \"SOURCE_OVERRIDE\"\n",
        stack.plan_toml()
    ))
    .unwrap();
    let report = runbook::preflight(&plan, &stack.context()).await.unwrap();
    let all = report.problems.join("\n");
    assert!(
        all.contains("source.url_env: environment variable SOURCE_OVERRIDE is not set"),
        "{all}"
    );
    let target = stack.target.url().expose_secret().to_string();
    let wrong = format!(
        "postgres://{}:not-the-password@{}:{}/{}?sslmode=require",
        stack.source.owner(),
        stack.source.host(),
        stack.source.port(),
        stack.source.database()
    );
    let ctx = stack.context().env(move |name| match name {
        "SOURCE_OVERRIDE" => Some(wrong.clone()),
        TARGET_URL_ENV => Some(target.clone()),
        _ => None,
    });
    let report = runbook::preflight(&plan, &ctx).await.unwrap();
    let all = report.problems.join("\n");
    assert!(
        all.contains("password") && all.contains(stack.source.owner()),
        "the override is the source used: {all}"
    );
    assert!(!all.contains("not-the-password"), "{all}");
}
