//! The whole migration end to end on sandboxes: Heroku-like and RDS-like
//! PostgreSQL clusters, the Heroku emulator, moto, and the sample app's web
//! site whose pages follow the app's DATABASE_URL.

mod transfer_support;

use std::sync::Arc;

use herokurds::runbook::{self, Journal, RunState, RunbookError, RunbookEvent, StepId, WorkDir};
use herokurds::transfer::TransferEvent;
use herokurds::url::DatabaseUrl;
use herokurds_testkit::demo::{
    DemoOptions, DemoStack, DEMO_ADDON, NEW_BUCKET, OLD_BUCKET, TARGET_URL_ENV,
};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;
use transfer_support::{aborted_by_a_check, scalar, RunbookEvents as Events};

fn database_url(stack: &DemoStack) -> DatabaseUrl {
    stack
        .heroku
        .config_vars(herokurds_testkit::demo::DEMO_APP)
        .unwrap()["DATABASE_URL"]
        .parse()
        .unwrap()
}

fn var(stack: &DemoStack, name: &str) -> Option<String> {
    stack
        .heroku
        .config_vars(herokurds_testkit::demo::DEMO_APP)
        .unwrap()
        .get(name)
        .cloned()
}

fn url_of(pg: &herokurds_testkit::LocalPostgres) -> DatabaseUrl {
    pg.url().expose_secret().parse().unwrap()
}

fn attachments(stack: &DemoStack) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = stack
        .heroku
        .attachments(herokurds_testkit::demo::DEMO_APP)
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
        var(stack, "AWS_SECRET_ACCESS_KEY").unwrap(),
    ]
}

fn assert_no_secrets(stack: &DemoStack, what: &str, text: &str) {
    for s in secrets(stack) {
        assert!(!text.contains(&s), "{what} leaks a secret");
    }
}

async fn count(pg: &herokurds_testkit::LocalPostgres, sql: &str) -> i64 {
    scalar(pg, sql).await
}

/// The demo stack without moto.
async fn stack_without_s3() -> DemoStack {
    DemoStack::start(DemoOptions {
        s3: false,
        ..DemoOptions::default()
    })
    .await
    .unwrap()
}

/// The app runs on RDS, which holds all 300 000 events.
async fn assert_on_rds_with_every_event(stack: &DemoStack) {
    assert_eq!(database_url(stack), url_of(&stack.target));
    assert_eq!(
        count(&stack.target, "SELECT count(*) FROM events").await,
        300_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_run_moves_the_app_to_rds_and_rollback_brings_it_back() {
    let stack = DemoStack::start(DemoOptions::default()).await.unwrap();
    let (plan, ctx) = (stack.plan(), stack.context());
    let secret_key = var(&stack, "SECRET_KEY");

    let planned = runbook::preflight(&plan, &ctx).await.unwrap();
    assert!(planned.problems.is_empty(), "{:?}", planned.problems);
    assert_eq!(planned.steps.len(), StepId::ALL.len());
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

    // The operator trusts RDS: `finish` removes the change capture, so a
    // rollback can no longer copy RDS's writes back.
    transfer_support::finish(&plan, &ctx).await;

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

    // Switching back would leave those rows behind: refused, exit 1,
    // naming the table and its count; nothing switched, workers and
    // maintenance as they were.
    let err = runbook::rollback(&plan, &ctx, &events).await.unwrap_err();
    let RunbookError::TargetWrites {
        tables, unknown, ..
    } = &err
    else {
        panic!("expected a refusal naming the writes on RDS, got: {err}")
    };
    assert_eq!(tables, &vec![("public.learners".to_string(), Some(2))]);
    assert!(unknown.is_none());
    assert!(err.is_check_failure(), "exit code 1");
    let words = err.to_string();
    assert!(
        words.contains("public.learners: 2 row(s)") && words.contains("--discard-target-writes"),
        "{words}"
    );
    assert_eq!(database_url(&stack), url_of(&stack.target), "still on RDS");
    assert_eq!(stack.heroku.maintenance("micromasters-demo"), Some(false));
    let formation = stack.heroku.formation("micromasters-demo");
    assert_eq!((formation["worker"], formation["clock"]), (2, 1));
    assert_eq!(journal(&stack).state, RunState::Completed);

    let discard = ctx.clone().discard_target_writes(true);
    let rolled = runbook::rollback(&plan, &discard, &events).await.unwrap();
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

    // Forward again: the app ran on RDS, so starting over there is refused
    // and the target keeps its rows ...
    let late = "SELECT count(*) FROM learners WHERE email LIKE 'late%'";
    let learners_before = count(&stack.target, "SELECT count(*) FROM learners").await;
    let err = runbook::run(&plan, &ctx, &events, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RunbookError::TargetHasData { .. }) && !err.is_check_failure(),
        "exit 2: {err}"
    );
    let words = err.to_string();
    assert!(
        words.contains("--restart-target")
            && words.contains("became the app's database")
            && words.contains("table(s)"),
        "{words}"
    );
    assert_no_secrets(&stack, "refusal", &words);
    assert_eq!(
        count(&stack.target, "SELECT count(*) FROM learners").await,
        learners_before
    );
    assert_eq!(count(&stack.target, late).await, 2);
    assert_eq!(journal(&stack).state, RunState::RolledBack, "journal kept");
    assert_eq!(database_url(&stack), url_of(&stack.source));

    // ... until the operator says so: a fresh copy and a new cutover.
    let restart = ctx.clone().restart_target(true);
    let again = runbook::run(&plan, &restart, &events, CancellationToken::new())
        .await
        .unwrap();
    assert!(again.verify.unwrap().identical);
    assert_eq!(database_url(&stack), url_of(&stack.target));
    assert_eq!(
        count(&stack.target, late).await,
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
    // window has started and the in-flight requests have settled (a write
    // before that only delays the snapshot).
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
        if matches!(
            e,
            RunbookEvent::StepFinished {
                step: StepId::Settle,
                ..
            }
        ) {
            notify.notify_one();
        }
    };
    let err = runbook::run(&plan, &ctx, &progress, CancellationToken::new())
        .await
        .unwrap_err();
    writer.await.unwrap();
    let (step, reason) = aborted_by_a_check(&err);
    assert!(matches!(step, StepId::Verify | StepId::WriteCheck), "{err}");
    assert!(
        reason.contains("public.learners"),
        "the changed table is named: {reason}"
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
    let stack = stack_without_s3().await;
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

/// A stack with a 300 000-row `events` table, and a run of it cancelled
/// once the first table of the transfer is in.
async fn interrupted_during_the_transfer() -> (DemoStack, RunbookError) {
    let stack = DemoStack::start(DemoOptions {
        s3: false,
        event_rows: 300_000,
        ..DemoOptions::default()
    })
    .await
    .unwrap();
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let progress = move |e: &RunbookEvent| {
        if let RunbookEvent::Transfer(TransferEvent::TableFinished { .. }) = e {
            c.cancel();
        }
    };
    let err = runbook::run(&stack.plan(), &stack.context(), &progress, cancel)
        .await
        .unwrap_err();
    (stack, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_transfer_resumes_and_finishes() {
    let (stack, err) = interrupted_during_the_transfer().await;
    let (plan, ctx) = (stack.plan(), stack.context());
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
    assert_on_rds_with_every_event(&stack).await;
}

/// Stopped as the transfer step starts, before the transfer journaled
/// anything: `resume` copies afresh (there was nothing to resume) instead
/// of failing with "no transfer to resume".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_stopped_before_the_transfer_journaled_anything_is_resumed_by_a_fresh_copy() {
    let stack = stack_without_s3().await;
    let (plan, ctx) = (stack.plan(), stack.context());
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let progress = move |e: &RunbookEvent| {
        if let RunbookEvent::StepStarted {
            step: StepId::Transfer,
            ..
        } = e
        {
            c.cancel();
        }
    };
    let err = runbook::run(&plan, &ctx, &progress, cancel)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RunbookError::Interrupted {
                step: StepId::Transfer,
                ..
            }
        ),
        "{err}"
    );
    let dir = WorkDir::new(&plan.work_dir);
    assert!(!dir.transfer_journal(&plan.heroku.app).exists());
    let report = runbook::resume(&plan, &ctx, &Events::default(), CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("resume fails: {e}"));
    assert!(report.verify.unwrap().identical);
    assert_eq!(database_url(&stack), url_of(&stack.target));
}

/// herokurds up to 733d06a kept the transfer's state in
/// `<app>/transfer/transfer`: resuming such a migration finds its journal
/// (and skips the tables it copied) instead of copying into a target that
/// already holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_journal_left_in_transfer_transfer_by_an_older_herokurds_is_resumed() {
    let (stack, _err) = interrupted_during_the_transfer().await;
    let (plan, ctx) = (stack.plan(), stack.context());
    let dir = WorkDir::new(&plan.work_dir);
    let app = plan.heroku.app.clone();
    let (current, legacy) = (dir.transfer(&app), dir.legacy_transfer(&app));
    std::fs::create_dir(&legacy).unwrap();
    for entry in std::fs::read_dir(&current).unwrap() {
        let entry = entry.unwrap();
        if entry.path() != legacy {
            std::fs::rename(entry.path(), legacy.join(entry.file_name())).unwrap();
        }
    }
    assert!(!dir.transfer_journal(&app).exists());

    let events = Events::default();
    let report = runbook::resume(&plan, &ctx, &events, CancellationToken::new())
        .await
        .unwrap();
    assert!(report.verify.unwrap().identical);
    let all = events.all();
    assert!(all.contains("moved the transfer state"), "{all}");
    assert!(
        all.contains("\"event\":\"table_skipped\""),
        "the table copied before the interruption is not copied again: {all}"
    );
    assert!(dir.transfer_journal(&app).is_file());
    assert!(!legacy.exists());
    assert_on_rds_with_every_event(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_heroku_outage_during_the_cutover_is_retried_then_reported_and_resume_finishes() {
    use herokurds_testkit::emulator::Fault;
    let stack = stack_without_s3().await;
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
        &herokurds::progress::NoProgress,
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
        &herokurds::progress::NoProgress,
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

/// Runs the migration with a write landing on the source just before the
/// write check, so the attempt aborts after its copy finished.
async fn run_aborted_by_a_source_write(stack: &DemoStack, ctx: &runbook::Context) {
    let plan = stack.plan();
    let written = Arc::new(tokio::sync::Notify::new());
    let writer = {
        let written = written.clone();
        let client = stack.source.owner_client().await.unwrap();
        tokio::spawn(async move {
            written.notified().await;
            client
                .batch_execute("UPDATE programs SET title = title || ' (new)' WHERE slug = 'fin'")
                .await
                .unwrap();
        })
    };
    let progress = move |e: &RunbookEvent| {
        if let RunbookEvent::StepFinished {
            step: StepId::S3FinalSync,
            ..
        } = e
        {
            written.notify_one();
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    };
    let err = runbook::run(&plan, ctx, &progress, CancellationToken::new())
        .await
        .unwrap_err();
    writer.await.unwrap();
    assert!(
        matches!(
            err,
            RunbookError::Aborted {
                step: StepId::WriteCheck,
                ..
            }
        ),
        "{err}"
    );
}

/// Runs `sql` on the target as its owner; the client exits so its
/// counters reach the statistics.
async fn on_target(stack: &DemoStack, sql: &str) {
    let target = stack.target.owner_client().await.unwrap();
    target.batch_execute(sql).await.unwrap();
}

/// A run that must refuse to start over on the target: its words, checked
/// for secrets.
async fn refused_start(stack: &DemoStack, ctx: &runbook::Context) -> String {
    let err = runbook::run(
        &stack.plan(),
        ctx,
        &Events::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    let words = err.to_string();
    assert!(matches!(err, RunbookError::TargetHasData { .. }), "{words}");
    assert!(words.contains("--restart-target"), "{words}");
    assert_no_secrets(stack, "refusal", &words);
    words
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_aborted_copy_is_started_over_only_while_nothing_else_wrote_on_the_target() {
    let stack = stack_without_s3().await;
    let (plan, ctx) = (stack.plan(), stack.context());
    run_aborted_by_a_source_write(&stack, &ctx).await;

    // Someone else writes on the target after the attempt stopped.
    on_target(
        &stack,
        "INSERT INTO learners (email, name, country) VALUES ('stray@example.com', 'Stray', 'FR')",
    )
    .await;
    let stray = "SELECT count(*) FROM learners WHERE email = 'stray@example.com'";
    let learners = count(&stack.target, "SELECT count(*) FROM learners").await;
    let words = refused_start(&stack, &ctx).await;
    assert!(
        words.contains("public.learners") && words.contains("changed after"),
        "{words}"
    );
    assert_eq!(
        count(&stack.target, "SELECT count(*) FROM learners").await,
        learners,
        "a refusal changes nothing on the target"
    );
    assert_eq!(count(&stack.target, stray).await, 1);
    assert!(matches!(journal(&stack).state, RunState::Aborted { .. }));

    // With leave to, the attempt starts over (dropping the stray row) and
    // stops again at the write check.
    run_aborted_by_a_source_write(&stack, &ctx.clone().restart_target(true)).await;
    assert_eq!(count(&stack.target, stray).await, 0);
    assert!(
        journal(&stack).target_end_owned.is_some(),
        "the abort records what the target's user owns"
    );

    // A view is no table: its creation moves no table counter, but
    // starting over would drop it.
    on_target(
        &stack,
        "CREATE VIEW stray_report AS SELECT email FROM learners",
    )
    .await;
    let views = "SELECT count(*) FROM pg_views WHERE viewname = 'stray_report'";
    let words = refused_start(&stack, &ctx).await;
    assert!(
        words.contains("view public.stray_report") && words.contains("changed after"),
        "{words}"
    );
    assert_eq!(count(&stack.target, views).await, 1, "the view is kept");
    on_target(&stack, "DROP VIEW stray_report").await;

    // Another target than the one the earlier copy was made on: what that
    // attempt recorded proves nothing about it.
    {
        use herokurds_testkit::{LocalPostgres, PostgresOptions};
        let other = LocalPostgres::start(PostgresOptions::rds()).await.unwrap();
        let other_url = other.url().expose_secret().to_string();
        let elsewhere = ctx
            .clone()
            .env(move |name| (name == TARGET_URL_ENV).then(|| other_url.clone()));
        let words = refused_start(&stack, &elsewhere).await;
        assert!(
            words.contains(&format!(":{}/", stack.target.port()))
                && words.contains(&format!(":{}/", other.port())),
            "both identities named: {words}"
        );
        assert!(!words.contains(other.password().expose_secret()));
    }

    // Nobody wrote on the target since: the next run starts over by itself.
    let events = Events::default();
    let report = runbook::run(&plan, &ctx, &events, CancellationToken::new())
        .await
        .unwrap();
    assert!(
        events
            .all()
            .contains("nothing but the transfer wrote there"),
        "{}",
        events.all()
    );
    assert!(report.verify.unwrap().identical);
    assert_eq!(database_url(&stack), url_of(&stack.target));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resume_refuses_a_target_other_than_the_journaled_one_naming_both() {
    use herokurds_testkit::{LocalPostgres, PostgresOptions};
    let (stack, err) = interrupted_during_the_transfer().await;
    let (plan, ctx) = (stack.plan(), stack.context());
    assert!(matches!(err, RunbookError::Interrupted { .. }), "{err}");
    let journaled = journal(&stack)
        .target_identity
        .expect("preflight identified the target");
    assert_eq!(journaled.port, stack.target.port());
    assert!(
        journaled.system_identifier.is_some(),
        "the target's system identifier is readable by its owner: {journaled:?}"
    );

    // A new shell whose target URL names another cluster.
    let other = LocalPostgres::start(PostgresOptions::rds()).await.unwrap();
    let other_url = other.url().expose_secret().to_string();
    let wrong = stack
        .context()
        .env(move |name| (name == TARGET_URL_ENV).then(|| other_url.clone()));
    let err = runbook::resume(&plan, &wrong, &Events::default(), CancellationToken::new())
        .await
        .unwrap_err();
    let words = err.to_string();
    assert!(
        matches!(err, RunbookError::IdentityMismatch { .. }) && !err.is_check_failure(),
        "exit 2: {words}"
    );
    assert!(
        words.contains(&format!(":{}/", stack.target.port()))
            && words.contains(&format!(":{}/", other.port()))
            && words.contains("never copied"),
        "both identities named: {words}"
    );
    assert_no_secrets(&stack, "refusal", &words);
    assert!(!words.contains(other.password().expose_secret()));
    assert_eq!(
        count(
            &other,
            "SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
        )
        .await,
        0,
        "nothing was copied into the other cluster"
    );
    assert_eq!(
        journal(&stack).step(StepId::Transfer).status,
        runbook::StepStatus::Failed
    );

    // With the journaled target it finishes.
    let report = runbook::resume(&plan, &ctx, &Events::default(), CancellationToken::new())
        .await
        .unwrap();
    assert!(report.verify.unwrap().identical);
    assert_on_rds_with_every_event(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_that_is_the_source_under_another_host_name_is_refused() {
    let stack = stack_without_s3().await;
    let plan = stack.plan();
    let source_url = database_url(&stack);
    // The source's own URL, by name instead of address.
    let same = stack
        .source
        .url()
        .expose_secret()
        .replace("@127.0.0.1:", "@localhost:");
    assert!(same.contains("@localhost:"));
    let ctx = stack
        .context()
        .env(move |name| (name == TARGET_URL_ENV).then(|| same.clone()));
    let err = runbook::run(&plan, &ctx, &Events::default(), CancellationToken::new())
        .await
        .unwrap_err();
    let words = err.to_string();
    assert!(
        words.contains("same database") && words.contains("system identifier"),
        "{words}"
    );
    assert_no_secrets(&stack, "refusal", &words);
    assert_eq!(database_url(&stack), source_url);
    assert_eq!(stack.heroku.maintenance("micromasters-demo"), Some(false));
}

/// What a run leaves on disk: no config value and no smoke password in the
/// journal (the old value sits in a 0600 file rollback restores from),
/// reports 0600, the operator's existing work_dir keeps its mode, and the
/// transfer's state is in `<app>/transfer/`, not `<app>/transfer/transfer/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_journals_no_config_value_or_smoke_password_and_leaves_the_work_dir_mode_alone() {
    use std::os::unix::fs::PermissionsExt;
    const OLD_CDN: &str = "cdn-old-7f3kq9.example.org";
    const SMOKE_PASSWORD: &str = "smoke-pw-4k2z";
    let stack = DemoStack::start(DemoOptions {
        s3: false,
        ..DemoOptions::default()
    })
    .await
    .unwrap();
    let (mut plan, ctx) = (stack.plan(), stack.context());
    let app = plan.heroku.app.clone();
    ctx.heroku()
        .set_config_vars(&app, vec![("CDN_HOST", OLD_CDN)])
        .await
        .unwrap();
    plan.cutover
        .config_vars
        .insert("CDN_HOST".into(), "cdn-new.example.org".into());
    let first = plan.smoke.urls[0].clone();
    plan.smoke.urls[0] = first.replacen(
        "http://",
        &format!("http://smoke-user:{SMOKE_PASSWORD}@"),
        1,
    );
    assert_ne!(plan.smoke.urls[0], first);
    let project = tempfile::tempdir().unwrap();
    std::fs::set_permissions(project.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    plan.work_dir = project.path().to_path_buf();

    let report = runbook::run(&plan, &ctx, &Events::default(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.state, RunState::Completed);
    assert!(
        report.smoke_differences.is_empty(),
        "{:?}",
        report.smoke_differences
    );
    assert_eq!(
        var(&stack, "CDN_HOST").as_deref(),
        Some("cdn-new.example.org")
    );

    let dir = WorkDir::new(&plan.work_dir);
    let journal_text = std::fs::read_to_string(dir.journal(&app)).unwrap();
    assert!(
        !journal_text.contains(OLD_CDN),
        "the journal holds a config value"
    );
    assert!(
        !journal_text.contains(SMOKE_PASSWORD),
        "the journal holds a smoke password"
    );
    assert!(!journal_text.contains("smoke-user"), "userinfo is stripped");
    assert!(
        journal_text.contains(&first),
        "the page is journaled without it"
    );
    let hash = Journal::load(&dir, &app).unwrap().unwrap().config_before["CDN_HOST"].clone();
    assert_eq!(
        hash.map(|h| h.len()),
        Some(64),
        "name and SHA-256 are journaled"
    );

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    std::fs::write(dir.report(&app, "md"), "old").unwrap();
    std::fs::set_permissions(
        dir.report(&app, "md"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let [md, json] = report.save(&dir).unwrap();
    for f in [&md, &json, &dir.journal(&app), &dir.config_values(&app)] {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    assert!(!std::fs::read_to_string(&md)
        .unwrap()
        .contains(SMOKE_PASSWORD));
    assert_eq!(
        mode(project.path()),
        0o755,
        "the existing work_dir keeps its mode"
    );
    assert_eq!(mode(&dir.app_dir(&app)), 0o700);
    assert!(dir.transfer(&app).join("journal.json").is_file());
    assert!(!dir.transfer(&app).join("transfer").exists());

    runbook::rollback(&plan, &ctx, &Events::default())
        .await
        .unwrap();
    assert_eq!(
        var(&stack, "CDN_HOST").as_deref(),
        Some(OLD_CDN),
        "rollback restores the value"
    );
}
