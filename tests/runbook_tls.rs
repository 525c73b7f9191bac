//! TLS and the app's URL through the whole workflow (issue 13, items 3, 4
//! and 6): on sandboxes, plan names every side whose server is not
//! verified and warns about plaintext written in a URL; the verification
//! checks TLS as the transfer does; the app gets a `DATABASE_URL` built for
//! it; a malformed URL's password never reaches the journal.

use herokurds::progress::NoProgress;
use herokurds::runbook::{self, Journal, RunState, StepId, WorkDir};
use herokurds::url::{DatabaseUrl, Param, SslMode};
use herokurds::verify::{self, VerifyOptions};
use herokurds_testkit::demo::{DemoOptions, DemoStack, DEMO_APP, TARGET_URL_ENV};
use herokurds_testkit::{LocalPostgres, PostgresOptions};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

fn no_s3() -> DemoOptions {
    DemoOptions {
        s3: false,
        ..DemoOptions::default()
    }
}

/// `pg`'s owner URL with `query` instead of `?sslmode=require`.
fn url_with(pg: &LocalPostgres, query: &str) -> String {
    pg.url().expose_secret().replace("?sslmode=require", query)
}

/// The app's `DATABASE_URL` on the emulator.
fn app_database_url(stack: &DemoStack) -> String {
    stack.heroku.config_vars(DEMO_APP).unwrap()["DATABASE_URL"].clone()
}

/// Issue 13 item 4: the operator's `sslrootcert=/home/...` was set on the
/// app as it was, so the dynos got a path they do not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_app_gets_a_database_url_built_for_it_without_the_operators_files() {
    let stack = DemoStack::start(no_s3()).await.unwrap();
    let ca = stack.target.ca_cert_path().unwrap();
    let operator_url = url_with(
        &stack.target,
        &format!(
            "?sslmode=verify-full&sslrootcert={}&application_name=operator&connect_timeout=20",
            ca.display()
        ),
    );
    let operator: DatabaseUrl = operator_url.parse().unwrap();
    let ctx = stack
        .context()
        .env(move |name| (name == TARGET_URL_ENV).then(|| operator_url.clone()));
    let plan = stack.plan();

    // plan shows the URL the app will get, password redacted.
    let planned = runbook::preflight(&plan, &ctx).await.unwrap();
    assert!(planned.problems.is_empty(), "{:?}", planned.problems);
    let expected = format!(
        "postgres://rds_master:***@127.0.0.1:{}/rdsdb?sslmode=require",
        stack.target.port()
    );
    assert_eq!(planned.app_database_url.as_deref(), Some(expected.as_str()));
    let set_config = planned
        .steps
        .iter()
        .find(|s| s.step == StepId::SetConfig)
        .unwrap();
    assert!(
        set_config
            .change
            .contains(&format!("DATABASE_URL={expected}")),
        "{}",
        set_config.change
    );
    // The target is verify-full: not named as unverified.
    assert!(
        !planned.warnings.iter().any(|w| w.contains("target server")),
        "{:?}",
        planned.warnings
    );

    let report = runbook::run(&plan, &ctx, &NoProgress, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.state, RunState::Completed);

    // What the dynos got: the server and credentials, sslmode=require, no file.
    let on_heroku = app_database_url(&stack);
    for operator_only in [
        "sslrootcert",
        "sslcert",
        "sslkey",
        "application_name",
        "connect_timeout",
    ] {
        assert!(
            !on_heroku.contains(operator_only),
            "{operator_only} in the app's URL"
        );
    }
    assert!(!on_heroku.contains(&ca.display().to_string()));
    let app: DatabaseUrl = on_heroku.parse().unwrap();
    assert_eq!(app.param(Param::SslMode), Some("require"));
    assert_eq!(app.params().count(), 1);
    assert_eq!(
        (app.user(), app.host(), app.port(), app.dbname()),
        (
            operator.user(),
            operator.host(),
            operator.port(),
            operator.dbname()
        )
    );
    assert_eq!(
        app.password().expose_secret(),
        stack.target.password().expose_secret()
    );
    // read_back compared against the app's URL: the run passed it; the
    // journal has it done.
    let journal = Journal::load(&WorkDir::new(&plan.work_dir), DEMO_APP)
        .unwrap()
        .unwrap();
    assert!(
        journal
            .steps
            .iter()
            .any(|s| s.id == StepId::ReadBack && s.status == runbook::StepStatus::Done),
        "{:?}",
        journal.steps
    );
    // The app can use it.
    assert!(herokurds::pg::connect(&app).await.unwrap().tls());
}

/// Issue 13 item 3: plan warns about plaintext written in a URL (naming the
/// side), and names every side whose server is not verified with how to
/// verify it. Before, an unencrypted session was a problem with no way
/// through, and an unverified server went unmentioned.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plan_warns_about_written_plaintext_and_names_every_unverified_side() {
    let stack = DemoStack::start(no_s3()).await.unwrap();
    // A source that accepts both plaintext and TLS, empty (plan only).
    let plain_ok = LocalPostgres::start(PostgresOptions::heroku().tls_only(false))
        .await
        .unwrap();
    let source_disabled = url_with(&plain_ok, "?sslmode=disable");
    let target_bare = url_with(&stack.target, "");
    let plan = runbook::Plan::parse(&format!(
        "{}\n[source]\nurl_env = \"SOURCE_OVERRIDE\"\n",
        stack.plan_toml()
    ))
    .unwrap();
    let (s, t) = (source_disabled.clone(), target_bare.clone());
    let ctx = stack.context().env(move |name| match name {
        "SOURCE_OVERRIDE" => Some(s.clone()),
        TARGET_URL_ENV => Some(t.clone()),
        _ => None,
    });
    let report = runbook::preflight(&plan, &ctx).await.unwrap();
    let warnings = report.warnings.join("\n");
    assert!(
        !report.problems.iter().any(|p| p.contains("encrypted")),
        "written plaintext is a warning, not a problem: {:?}",
        report.problems
    );
    assert!(
        warnings.contains(
            "the source URL allows an unencrypted connection (sslmode=disable is written in it), \
             and this session is NOT encrypted"
        ),
        "{warnings}"
    );
    assert!(
        warnings.contains("the target server is not verified (sslmode=require")
            && warnings.contains("sslmode=verify-full and sslrootcert=")
            && warnings.contains("global-bundle.pem"),
        "{warnings}"
    );
    assert!(
        warnings.contains("the source server is not verified"),
        "{warnings}"
    );
    // The target, with no sslmode, was encrypted all the same.
    assert!(
        !warnings.contains("target URL allows"),
        "no sslmode is require: {warnings}"
    );
    for secret in [
        plain_ok.password().expose_secret(),
        stack.target.password().expose_secret(),
    ] {
        assert!(!serde_json::to_string(&report).unwrap().contains(secret));
    }

    // Verified sides are not named; prefer is warned about although encrypted.
    let ca = stack.target.ca_cert_path().unwrap();
    let target_verified = url_with(
        &stack.target,
        &format!("?sslmode=verify-full&sslrootcert={}", ca.display()),
    );
    let source_prefer = url_with(&plain_ok, "?sslmode=prefer");
    let ctx = stack.context().env(move |name| match name {
        "SOURCE_OVERRIDE" => Some(source_prefer.clone()),
        TARGET_URL_ENV => Some(target_verified.clone()),
        _ => None,
    });
    let report = runbook::preflight(&plan, &ctx).await.unwrap();
    let warnings = report.warnings.join("\n");
    assert!(!warnings.contains("target server"), "{warnings}");
    assert!(
        warnings.contains("the source URL allows an unencrypted connection (sslmode=prefer")
            && warnings.contains("this session is encrypted, but a later one may not be"),
        "{warnings}"
    );
}

/// `herokurds-verify` checks TLS as the transfer does: plaintext written in
/// a URL and unverified servers are in the report's warnings.
#[tokio::test]
async fn verify_names_written_plaintext_and_unverified_servers_like_the_transfer() {
    let (source, target) = tokio::try_join!(
        LocalPostgres::start(PostgresOptions::heroku().tls_only(false)),
        LocalPostgres::start(PostgresOptions::rds()),
    )
    .unwrap();
    let source_url: DatabaseUrl = url_with(&source, "?sslmode=disable").parse().unwrap();
    let target_url: DatabaseUrl = url_with(&target, "").parse().unwrap();
    assert_eq!(target_url.ssl_mode(), SslMode::Require);
    let report = verify::run(
        &source_url,
        &target_url,
        &VerifyOptions::new().jobs(1),
        &NoProgress,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(report.is_identical(), "two empty databases");
    let warnings = report.warnings.join("\n");
    assert!(
        warnings.contains("the source URL allows an unencrypted connection (sslmode=disable")
            && warnings.contains("NOT encrypted"),
        "{warnings}"
    );
    assert!(
        warnings.contains("the target server is not verified (sslmode=require"),
        "{warnings}"
    );
    // The same words as the transfer's preflight.
    let transfer = herokurds::transfer::preflight(
        &source_url,
        &target_url,
        &herokurds::transfer::TransferOptions::new().pg_bin_dir(source.bin_dir()),
    )
    .await
    .unwrap();
    for w in report
        .warnings
        .iter()
        .filter(|w| w.contains("URL allows") || w.contains("not verified"))
    {
        assert!(
            transfer.warnings.contains(w),
            "{w} not in {:?}",
            transfer.warnings
        );
    }
}

/// Issue 13 item 6: a preflight failure quoting a malformed URL wrote a
/// piece of its password into the journal (and the error).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_target_url_never_puts_its_password_in_the_journal() {
    let stack = DemoStack::start(no_s3()).await.unwrap();
    let plan = stack.plan();
    let journal_path = WorkDir::new(&plan.work_dir).journal(DEMO_APP);
    for malformed in [
        "postgres:/rds_master:Zq7Secr=Et9xPw@127.0.0.1/rdsdb",
        "postgres//rds_master:Zq7Secr==@127.0.0.1/rdsdb",
        "postgres://rds_master@127.0.0.1/rdsdb?password=Zq7Secr&sslmode=Et9xPw",
        "postgres://rds_master@127.0.0.1/rdsdb?password=Zq7Secr&Et9xPw=1",
        "postgres://rds_master:Zq7Secr@127.0.0.1:Et9xPw/rdsdb",
        "host=127.0.0.1 user=rds_master password=Zq7Secr Et9xPw=1 dbname=rdsdb",
    ] {
        let text = malformed.to_string();
        let ctx = stack
            .context()
            .env(move |name| (name == TARGET_URL_ENV).then(|| text.clone()));
        let err = runbook::run(&plan, &ctx, &NoProgress, CancellationToken::new())
            .await
            .unwrap_err();
        let journal = std::fs::read_to_string(&journal_path).unwrap();
        assert!(
            journal.contains("target.url_env"),
            "{malformed}: the failure is journaled: {journal}"
        );
        for piece in ["Zq7", "Secr", "Et9x"] {
            assert!(
                !journal.contains(piece),
                "{malformed}: {piece} in the journal: {journal}"
            );
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(!shown.contains(piece), "{malformed}: {piece} in {shown}");
            }
        }
        assert!(
            matches!(
                Journal::load(&WorkDir::new(&plan.work_dir), DEMO_APP)
                    .unwrap()
                    .unwrap()
                    .state,
                RunState::Aborted { .. }
            ),
            "{malformed}"
        );
    }
}
