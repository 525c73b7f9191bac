//! What a first-time user meets in the first ten minutes, through the real
//! binaries: errors that say what to do (missing URLs, no AWS setup, a
//! missing plan file), `--help` texts with exit codes and examples, and
//! `herokurds init` (a commented plan, filled from the Heroku emulator).

use std::path::Path;
use std::process::{Command, Output};

use herokurds_core::runbook::Plan;
use herokurds_testkit::emulator::{Emulator, Seed, SeedAddon, SeedApp};

const HEROKURDS: &str = env!("CARGO_BIN_EXE_herokurds");
const TRANSFER: &str = env!("CARGO_BIN_EXE_herokurds-transfer");
const VERIFY: &str = env!("CARGO_BIN_EXE_herokurds-verify");
const S3_SYNC: &str = env!("CARGO_BIN_EXE_herokurds-s3-sync");
const ALL: [&str; 7] = [
    HEROKURDS,
    TRANSFER,
    VERIFY,
    S3_SYNC,
    env!("CARGO_BIN_EXE_herokurds-url"),
    env!("CARGO_BIN_EXE_herokurds-heroku"),
    env!("CARGO_BIN_EXE_herokurds-heroku-emulator"),
];

/// A bare environment: no URLs, no AWS or Heroku setup, an empty HOME.
fn bare(bin: &str, home: &Path) -> Command {
    let mut c = Command::new(bin);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .current_dir(home);
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn transfer_and_verify_without_urls_name_the_variables_first_and_say_why_not_flags() {
    let home = tempfile::tempdir().unwrap();
    for bin in [TRANSFER, VERIFY] {
        let out = bare(bin, home.path()).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{bin}: {err}");
        assert!(
            err.starts_with("error: no database URL: set SOURCE_DATABASE_URL")
                && err.contains("TARGET_DATABASE_URL"),
            "{bin}: {err}"
        );
        assert!(err.contains("`ps`"), "{bin}: {err}");
        assert!(!err.contains("required arguments"), "{bin}: {err}");
        // Only the target missing: named alone.
        let out = bare(bin, home.path())
            .env("SOURCE_DATABASE_URL", "postgres://u@h/d")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(
            err.starts_with("error: no database URL: set TARGET_DATABASE_URL")
                && !err.contains("set SOURCE_DATABASE_URL"),
            "{bin}: {err}"
        );
    }
}

#[test]
fn s3_sync_without_aws_setup_says_what_it_looked_for_in_under_three_lines_without_colour() {
    let home = tempfile::tempdir().unwrap();
    // No region anywhere: the flags to pass.
    let out = bare(S3_SYNC, home.path())
        .args(["s3://odl-old-bucket", "s3://ol-new-bucket"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.lines().count() < 3, "{err}");
    assert!(
        err.contains("--source-region") && err.contains("--dest-region"),
        "{err}"
    );
    // A region, no credentials (instance metadata refused or absent).
    let out = bare(S3_SYNC, home.path())
        .args(["s3://odl-old-bucket", "s3://ol-new-bucket"])
        .args(["--source-region", "us-east-1", "--dest-region", "us-east-1"])
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.lines().count() < 3, "{err}");
    assert!(err.contains("no AWS credentials found"), "{err}");
    for named in [
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "--source-profile",
        "--source-region",
    ] {
        assert!(err.contains(named), "{named} not named: {err}");
    }
    assert!(
        !err.contains('\u{1b}'),
        "colour escapes into a pipe: {err:?}"
    );
    assert!(
        !err.contains("WARN") && !err.contains("DispatchFailure"),
        "{err}"
    );
}

#[test]
fn a_missing_plan_file_prints_its_cause_once() {
    let home = tempfile::tempdir().unwrap();
    let out = bare(HEROKURDS, home.path())
        .args(["plan", "--config", "plan.toml"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot read plan plan.toml"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(!err.contains("caused by"), "{err}");
}

#[test]
fn every_help_lists_exit_codes_and_examples_and_no_empty_env_values() {
    let home = tempfile::tempdir().unwrap();
    for bin in ALL {
        let out = bare(bin, home.path())
            .env("HEROKURDS_PG_BIN_DIR", "")
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{bin}: {help}");
        assert!(
            help.contains("Exit status") || help.contains("Exit codes"),
            "{bin} --help lists no exit codes:\n{help}"
        );
        assert!(
            help.contains("Example"),
            "{bin} --help has no examples:\n{help}"
        );
        assert!(
            !help.contains("=]"),
            "{bin} --help shows an empty env value:\n{help}"
        );
    }
    let out = bare(VERIFY, home.path()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.starts_with("Compare a migrated database with its source"),
        "{help}"
    );
    let out = bare(HEROKURDS, home.path()).arg("--help").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("herokurds init"),
        "herokurds --help does not point to init"
    );
}

#[test]
fn herokurds_help_teaches_the_lifecycle_and_what_finish_ends() {
    let home = tempfile::tempdir().unwrap();
    let help = |args: &[&str]| {
        let out = bare(HEROKURDS, home.path()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let top = help(&["--help"]);
    assert!(
        top.contains("plan  ->  run  ->  rollback")
            && top.contains("or  finish")
            && top.contains("herokurds finish --config plan.toml"),
        "{top}"
    );
    let finish = help(&["finish", "--help"]);
    for part in [
        "herokurds_capture",
        "a rollback can no longer copy RDS's writes back",
        "Exit codes: 0 finished",
        "herokurds resume",
        "Example",
        "--yes",
    ] {
        assert!(finish.contains(part), "{part}:\n{finish}");
    }
    let rollback = help(&["rollback", "--help"]);
    for part in [
        "Until `herokurds finish`",
        "first copies those writes back",
        "DDL made on RDS",
        "Switch back WITHOUT copying RDS's writes back",
        "Exit codes: 0 switched back; 1 refused",
    ] {
        assert!(rollback.contains(part), "{part}:\n{rollback}");
    }
}

#[test]
fn init_writes_a_plan_that_parses_and_refuses_to_overwrite_without_force() {
    let home = tempfile::tempdir().unwrap();
    let out = bare(HEROKURDS, home.path()).arg("init").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let path = home.path().join("plan.toml");
    let plan = Plan::load(&path).unwrap();
    assert_eq!(plan.heroku.app, "my-heroku-app");
    // `herokurds plan` gets past the plan's parsing (it stops at the token).
    let out = bare(HEROKURDS, home.path())
        .args(["plan", "--config", "plan.toml"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        !err.contains("plan.toml is not valid") && !err.contains("has problems"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("HEROKU_API_KEY"),
        "it stops at the token: {err}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600,
        "the plan is written like every herokurds file"
    );

    std::fs::write(&path, "# my edited plan\n").unwrap();
    let out = bare(HEROKURDS, home.path()).arg("init").output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("plan.toml exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "# my edited plan\n"
    );
    let out = bare(HEROKURDS, home.path())
        .args(["init", "--force"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    Plan::load(&path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_with_an_app_fills_addon_buckets_workers_and_smoke_url_but_no_secret() {
    let token = "init-test-token-7f3";
    let secret_bucket_value = "bucket-secret-value-e91";
    let emulator = Emulator::start(
        Seed::new().token(token).app(
            SeedApp::new("micromasters-ci")
                .config_var("AWS_STORAGE_BUCKET_NAME", "odl-micromasters-ci")
                .config_var("BUCKET_SECRET_ACCESS_KEY", secret_bucket_value)
                .config_var("SECRET_KEY", "django-secret-9")
                .dynos("web", 1)
                .dynos("worker", 2)
                .dynos("clock", 1)
                .addon(
                    SeedAddon::postgres(
                        "postgresql-rigid-71273",
                        "postgres://u:old-db-password@ec2-1.compute-1.amazonaws.com:5432/d1",
                    )
                    .attach("DATABASE")
                    .attach("HEROKU_POSTGRESQL_YELLOW"),
                ),
        ),
    )
    .await
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = bare(HEROKURDS, home.path())
        .env("HEROKU_API_URL", emulator.url())
        .env("HEROKU_API_KEY", token)
        .args(["init", "--app", "micromasters-ci", "--output", "mm.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(home.path().join("mm.toml")).unwrap();
    let plan = Plan::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(plan.heroku.app, "micromasters-ci");
    assert_eq!(plan.heroku.addon.as_deref(), Some("postgresql-rigid-71273"));
    assert_eq!(plan.maintenance.scale_down, ["clock", "worker"]);
    assert_eq!(plan.smoke.urls, ["https://micromasters-ci.herokuapp.com/"]);
    assert!(
        text.contains("DATABASE, HEROKU_POSTGRESQL_YELLOW"),
        "{text}"
    );
    assert!(text.contains("s3://odl-micromasters-ci"), "{text}");
    assert!(text.contains("BUCKET_SECRET_ACCESS_KEY"), "{text}");
    for secret in [
        secret_bucket_value,
        "django-secret-9",
        "old-db-password",
        token,
    ] {
        assert!(!text.contains(secret), "the plan leaks {secret}:\n{text}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains(secret));
        assert!(!stderr(&out).contains(secret));
    }
    emulator.shutdown().await;
}
