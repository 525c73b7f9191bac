//! The real `herokurds` binary against the sandbox stack: confirmation,
//! plan, a run killed during the transfer and finished with resume, status,
//! a rollback killed while copying RDS's writes back, finish, and no
//! secret in anything it prints.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use herokurds_testkit::demo::{DemoOptions, DemoStack, DEMO_APP};
use secrecy::ExposeSecret;

const BIN: &str = env!("CARGO_BIN_EXE_herokurds");

fn command(stack: &DemoStack) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", stack.work_dir())
        .envs(stack.env_vars());
    c
}

fn run(stack: &DemoStack, args: &[&str], stdin: &str) -> Output {
    common::output_with_stdin(command(stack).args(args), stdin)
}

/// [`run`], asserting its exit code and that its output holds no secret;
/// returns the output and its text (stdout then stderr).
fn run_expect(stack: &DemoStack, args: &[&str], stdin: &str, code: i32) -> (Output, String) {
    let out = run(stack, args, stdin);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(code), "{t}");
    assert_no_secrets(stack, &t);
    (out, t)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_no_secrets(stack: &DemoStack, out: &str) {
    for s in [
        stack.source.password().expose_secret().to_string(),
        stack.target.password().expose_secret().to_string(),
        stack.token().to_string(),
        stack.heroku.config_vars(DEMO_APP).unwrap()["SECRET_KEY"].clone(),
        stack.heroku.config_vars(DEMO_APP).unwrap()["AWS_SECRET_ACCESS_KEY"].clone(),
    ] {
        assert!(!out.contains(&s), "output leaks a secret:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_confirmation_changes_nothing_and_plan_lists_the_steps() {
    let stack = DemoStack::start(DemoOptions::default()).await.unwrap();
    let plan = stack.write_plan().unwrap();
    let plan = plan.to_str().unwrap();

    let out = run(&stack, &["run", "--config", plan], "not-the-app\n");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not confirmed"), "{}", text(&out));
    assert_eq!(stack.heroku.maintenance(DEMO_APP), Some(false));

    let out = run(&stack, &["plan", "--config", plan], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("22. smoke compare")
            && t.contains("14. install change capture on the target, for rollback")
            && t.contains("4. online copy")
            && t.contains("CloudFront")
            && t.contains("will switch origin")
            && t.contains("estimated maintenance window"),
        "{t}"
    );
    assert_no_secrets(&stack, &t);

    let out = run(&stack, &["plan", "--config", plan, "--json"], "");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["steps"].as_array().unwrap().len(), 23);
    assert_eq!(v["cloudfront"][0]["origins"].as_array().unwrap().len(), 1);
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);

    let out = run(&stack, &["status", "--config", plan], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("journal: none"), "{}", text(&out));

    let out = run(&stack, &["plan", "--config", "/nonexistent/plan.toml"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("/nonexistent/plan.toml"),
        "{}",
        text(&out)
    );
}

/// Starts `herokurds run --json` with `plan` and reads its events until
/// one contains `needle` (e.g. the first table copied, on a stack with
/// 400,000 event rows: mid-transfer). Returns the process, the rest of its
/// stdout and the events read.
fn run_until(
    stack: &DemoStack,
    plan: &str,
    needle: &str,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
    String,
) {
    spawn_until(stack, &["run", "--config", plan, "--yes", "--json"], needle)
}

/// Starts `herokurds` with `args` (`--json` among them) and reads its
/// stdout until a line contains `needle`; see [`run_until`].
fn spawn_until(
    stack: &DemoStack,
    args: &[&str],
    needle: &str,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
    String,
) {
    let mut child = command(stack)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(needle) {
            return (child, lines, seen);
        }
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!(
        "no {needle} event:\n{seen}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// [`spawn_until`], then SIGKILL (no cleanup runs); returns what it
/// printed, after checking it holds no secret.
fn killed_at(stack: &DemoStack, args: &[&str], needle: &str) -> String {
    let (mut child, _, seen) = spawn_until(stack, args, needle);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_no_secrets(stack, &seen);
    seen
}

/// [`run_until`] the first table is copied.
fn run_until_the_first_table(
    stack: &DemoStack,
    plan: &str,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
    String,
) {
    run_until(stack, plan, "\"event\":\"table_finished\"")
}

/// Rows of the demo's `events` table on the target.
async fn events_on_target(stack: &DemoStack) -> i64 {
    count_on_target(stack, "SELECT count(*) FROM events").await
}

/// A `count(*)` query's answer on the target.
async fn count_on_target(stack: &DemoStack, sql: &str) -> i64 {
    common::pg::scalar(&stack.target, sql).await
}

/// The demo stack without its S3 part (quicker to start).
async fn stack_without_s3() -> DemoStack {
    DemoStack::start(DemoOptions {
        s3: false,
        ..DemoOptions::default()
    })
    .await
    .unwrap()
}

async fn big_stack() -> DemoStack {
    DemoStack::start(DemoOptions {
        event_rows: 400_000,
        ..DemoOptions::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_killed_during_the_transfer_is_finished_by_resume() {
    let stack = big_stack().await;
    let plan = stack.write_plan().unwrap();
    let plan = plan.to_str().unwrap();
    let (mut child, _, seen) = run_until_the_first_table(&stack, plan);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_no_secrets(&stack, &seen);
    assert_eq!(
        stack.heroku.maintenance(DEMO_APP),
        Some(true),
        "killed inside the window"
    );

    let out = run(&stack, &["status", "--config", plan, "--json"], "");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["next_step"], "transfer", "{status}");
    assert_eq!(status["maintenance"], true);

    let out = run(&stack, &["run", "--config", plan, "--yes"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("herokurds resume"),
        "run refuses and points at resume: {}",
        text(&out)
    );

    let (_, t) = run_expect(&stack, &["resume", "--config", plan, "--yes"], "", 0);
    assert!(
        t.contains("already done") && t.contains("target equals source"),
        "{t}"
    );
    assert_no_secrets(&stack, &t);
    let db: herokurds_core::url::DatabaseUrl = stack.heroku.config_vars(DEMO_APP).unwrap()
        ["DATABASE_URL"]
        .parse()
        .unwrap();
    assert_eq!(db.port(), stack.target.port());
    assert_eq!(stack.heroku.maintenance(DEMO_APP), Some(false));
    assert_eq!(events_on_target(&stack).await, 400_000);

    let report = std::fs::read_to_string(
        stack
            .work_dir()
            .join("state")
            .join(DEMO_APP)
            .join("report.md"),
    )
    .unwrap();
    assert!(
        report.contains("completed: the app runs on the new database"),
        "{report}"
    );
    assert_no_secrets(&stack, &report);

    let out = run(&stack, &["rollback", "--config", plan, "--yes"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("back on its old database"),
        "{}",
        text(&out)
    );
    let db: herokurds_core::url::DatabaseUrl = stack.heroku.config_vars(DEMO_APP).unwrap()
        ["DATABASE_URL"]
        .parse()
        .unwrap();
    assert_eq!(db.port(), stack.source.port());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closed_terminal_during_the_transfer_stops_cleanly_and_resume_finishes() {
    let stack = big_stack().await;
    let plan = stack.write_plan().unwrap();
    let plan = plan.to_str().unwrap();
    let (child, lines, _) = run_until_the_first_table(&stack, plan);
    // What an SSH session that drops sends to its processes.
    herokurds_testkit::send_signal(&child, libc::SIGHUP).unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("interrupted during `database transfer`")
            && err.contains("herokurds resume --config"),
        "a journaled interruption, not a death: {err}"
    );
    assert_no_secrets(&stack, &format!("{err}{}", rest.join("\n")));
    assert_eq!(stack.heroku.maintenance(DEMO_APP), Some(true));

    let out = run(&stack, &["status", "--config", plan, "--json"], "");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["next_step"], "transfer", "{status}");

    let out = run(&stack, &["resume", "--config", plan, "--yes"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(events_on_target(&stack).await, 400_000);
    assert_eq!(stack.heroku.maintenance(DEMO_APP), Some(false));
}

/// The README's first command, as a user runs it: migrate, roll back,
/// migrate again, report, finish, clean up.
#[test]
fn the_demo_migrates_rolls_back_and_forward_and_cleans_up() {
    let out = Command::new(BIN)
        .args(["demo", "--rows", "20000"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for part in [
        "== herokurds plan",
        "== herokurds run",
        "== herokurds rollback",
        "== herokurds run --restart-target (forward again)",
        "== herokurds finish",
    ] {
        // Each header on the same stream as the body it heads.
        assert!(stdout.contains(part), "{part} missing:\n{stdout}");
    }
    assert!(
        !stdout.contains("moto_server not found"),
        "the demo ran without S3: {stdout}"
    );
    assert!(
        stdout.contains("completed: the app runs on the new database")
            && stdout.contains("back on its old database")
            && stdout.contains("demo finished: the app runs on the RDS-like cluster")
            && stdout.contains("change capture removed from the target")
            && stdout.contains("maintenance off"),
        "{stdout}"
    );
    // The report shows the plan's estimate next to the real window.
    assert!(
        stdout.contains("**Downtime (maintenance mode):**")
            && stdout.contains("(estimated before the run: "),
        "{stdout}"
    );
    // The demo's CloudFront distribution follows the bucket: planned,
    // switched and reported, switched back by the rollback.
    assert!(
        stdout.contains("will switch origin")
            && stdout.contains("## CloudFront")
            && stdout.contains("## The app's access to the new buckets"),
        "{stdout}"
    );
    // The report's S3 table counts copied objects; the second run finds
    // them up to date.
    assert!(stdout.to_lowercase().contains("s3"), "{stdout}");
    let plan = stdout
        .lines()
        .find_map(|l| l.strip_prefix("plan: "))
        .expect("the demo names its plan file");
    let dir = std::path::Path::new(plan.trim()).parent().unwrap();
    assert!(!dir.exists(), "the demo leaves {} behind", dir.display());
    // The demo's passwords are random; every URL it prints must hide its own.
    let all = format!("{stdout}{stderr}");
    let mut urls = 0;
    for (i, _) in all.match_indices("://") {
        let rest = &all[i + 3..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '/')
            .unwrap_or(rest.len());
        if let Some((userinfo, _host)) = rest[..end].rsplit_once('@') {
            urls += 1;
            if let Some((_user, password)) = userinfo.split_once(':') {
                assert_eq!(password, "***", "a URL shows its password:\n{all}");
            }
        }
    }
    assert!(
        urls > 0,
        "the demo names the URLs it switches between:\n{all}"
    );
}

/// The DATABASE_URL port the app runs on.
fn app_port(stack: &DemoStack) -> u16 {
    let db: herokurds_core::url::DatabaseUrl = stack.heroku.config_vars(DEMO_APP).unwrap()
        ["DATABASE_URL"]
        .parse()
        .unwrap();
    db.port()
}

async fn late_rows_on_target(stack: &DemoStack) -> i64 {
    count_on_target(
        stack,
        "SELECT count(*) FROM learners WHERE email = 'late@example.com'",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_exits_1_on_writes_made_on_rds_and_run_asks_before_restarting_the_target() {
    let stack = stack_without_s3().await;
    let plan = stack.write_plan().unwrap();
    let plan = plan.to_str().unwrap();
    let out = run(&stack, &["run", "--config", plan, "--yes"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(capture_schemas(&stack.target).await, 1, "capture on RDS");

    // finish asks first, saying what the rollback loses; a wrong answer
    // leaves the capture in place.
    let out = run(&stack, &["finish", "--config", plan], "not-the-app\n");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("can no longer copy") && text(&out).contains("not confirmed"),
        "{}",
        text(&out)
    );
    assert_eq!(capture_schemas(&stack.target).await, 1);

    // Without capture, a rollback can only count RDS's writes.
    let (out, t) = run_expect(
        &stack,
        &["finish", "--config", plan, "--yes", "--json"],
        "",
        0,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"event\":\"capture_removed\""), "{t}");
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(
        report["actions"][0]
            .as_str()
            .unwrap()
            .contains("change capture removed from the target"),
        "{report}"
    );
    assert_no_secrets(&stack, &t);
    assert_eq!(capture_schemas(&stack.target).await, 0, "{t}");
    // Again: harmless, and says so.
    let (_, t) = run_expect(&stack, &["finish", "--config", plan, "--yes"], "", 0);
    assert!(
        t.contains("no change capture on the target") && t.contains("can no longer copy"),
        "{t}"
    );
    assert_eq!(
        app_port(&stack),
        stack.target.port(),
        "finish switches nothing"
    );

    let target = stack.target.owner_client().await.unwrap();
    target
        .batch_execute(
            "INSERT INTO learners (email, name, country) VALUES ('late@example.com', 'Late', 'US')",
        )
        .await
        .unwrap();
    drop(target);

    let out = run(&stack, &["rollback", "--config", plan, "--yes"], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("public.learners: 1 row(s)")
            && text(&out).contains("--discard-target-writes"),
        "{}",
        text(&out)
    );
    assert_no_secrets(&stack, &text(&out));
    assert_eq!(app_port(&stack), stack.target.port(), "still on RDS");
    assert_eq!(stack.heroku.maintenance(DEMO_APP), Some(false));

    rollback_discarding_rds_writes(&stack, plan);

    // Migrating again would drop the row written on RDS: refused, exit 2.
    let out = run(&stack, &["run", "--config", plan, "--yes"], "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--restart-target"), "{}", text(&out));
    assert_no_secrets(&stack, &text(&out));
    assert_eq!(late_rows_on_target(&stack).await, 1);

    // --restart-target asks for the database's name; a wrong one changes nothing.
    let out = run(
        &stack,
        &["run", "--config", plan, "--restart-target"],
        "not-the-name\n",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not confirmed"), "{}", text(&out));
    assert_eq!(late_rows_on_target(&stack).await, 1);
    assert_eq!(app_port(&stack), stack.source.port());

    // The database's name, then the app's: a fresh copy and a cutover.
    let answers = format!("{}\n{DEMO_APP}\n", stack.target.database());
    let out = run(
        &stack,
        &["run", "--config", plan, "--restart-target"],
        &answers,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(late_rows_on_target(&stack).await, 0);
    assert_eq!(app_port(&stack), stack.target.port());
}

/// `rollback --discard-target-writes`: back on Heroku, saying that RDS's
/// writes were not copied back.
fn rollback_discarding_rds_writes(stack: &DemoStack, plan: &str) {
    let args = [
        "rollback",
        "--config",
        plan,
        "--yes",
        "--discard-target-writes",
    ];
    let (_, t) = run_expect(stack, &args, "", 0);
    assert!(
        t.contains("back on its old database") && t.contains("NOT copied back"),
        "{t}"
    );
    assert_eq!(app_port(stack), stack.source.port());
}

/// Schemas named herokurds_capture on `pg` (0 or 1).
async fn capture_schemas(pg: &herokurds_testkit::LocalPostgres) -> i64 {
    common::pg::scalar(
        pg,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'herokurds_capture'",
    )
    .await
}

/// A table's rows in one string, for comparing both sides.
async fn table_digest(pg: &herokurds_testkit::LocalPostgres, table: &str) -> (i64, String) {
    let row = pg
        .owner_client()
        .await
        .unwrap()
        .query_one(
            &format!(
                "SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY t.id)), '') FROM {table} t"
            ),
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_online_run_killed_during_the_catch_up_is_finished_by_resume_with_nothing_lost() {
    let stack = big_stack().await;
    let plan_path = stack.work_dir().join("plan.toml");
    let toml = stack.plan_toml().replace(
        "[transfer]\njobs = 2\n",
        "[transfer]\njobs = 2\nmode = \"online\"\n",
    );
    assert!(toml.contains("mode = \"online\""));
    std::fs::write(&plan_path, toml).unwrap();
    let plan = plan_path.to_str().unwrap();

    // The app writes until maintenance has been on for a moment.
    let client = stack.source.owner_client().await.unwrap();
    let heroku = stack.heroku_client();
    let writer = tokio::spawn(async move {
        let mut on_since: Option<Instant> = None;
        let mut i = 0u64;
        loop {
            if heroku.app(DEMO_APP).await.unwrap().maintenance {
                let since = *on_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(300) {
                    break i;
                }
            } else {
                on_since = None;
            }
            client
                .batch_execute(&format!(
                    "INSERT INTO learners (email, name, country) VALUES ('killed{i}@example.com', 'K', 'NL');
                     UPDATE learners SET name = name || '+' WHERE id = {}",
                    1 + i % 300
                ))
                .await
                .unwrap();
            i += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });

    let (mut child, _, seen) = run_until(&stack, plan, "\"event\":\"round_applied\"");
    child.kill().unwrap(); // SIGKILL: no cleanup runs.
    child.wait().unwrap();
    assert_no_secrets(&stack, &seen);
    assert_eq!(
        stack.heroku.maintenance(DEMO_APP),
        Some(false),
        "killed before the window"
    );

    let out = run(&stack, &["status", "--config", plan, "--json"], "");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["next_step"], "catch_up", "{status}");

    let (_, t) = run_expect(&stack, &["resume", "--config", plan, "--yes"], "", 0);
    assert_no_secrets(&stack, &t);
    let written = writer.await.unwrap();
    assert!(written > 10, "the app wrote during the migration");
    let db: herokurds_core::url::DatabaseUrl = stack.heroku.config_vars(DEMO_APP).unwrap()
        ["DATABASE_URL"]
        .parse()
        .unwrap();
    assert_eq!(db.port(), stack.target.port());
    for table in ["learners", "enrollments", "events"] {
        assert_eq!(
            table_digest(&stack.source, table).await,
            table_digest(&stack.target, table).await,
            "{table}"
        );
    }
    let leftovers = herokurds_core::transfer::online::capture_leftovers(
        &stack.source.url().expose_secret().parse().unwrap(),
    )
    .await;
    assert_eq!(leftovers.unwrap(), Vec::<String>::new());
}

/// Heroku's foreign keys: table, name, definition, validated.
async fn foreign_keys(pg: &herokurds_testkit::LocalPostgres) -> Vec<String> {
    common::pg::column(
        &pg.owner_client().await.unwrap(),
        "SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
                || ' validated=' || convalidated
           FROM pg_constraint WHERE contype = 'f' ORDER BY 1",
    )
    .await
}

/// Every sequence's last value and is_called, by an independent query.
async fn sequences(pg: &herokurds_testkit::LocalPostgres) -> Vec<String> {
    let c = pg.owner_client().await.unwrap();
    let names: Vec<String> = common::pg::column(
        &c,
        "SELECT oid::regclass::text FROM pg_class WHERE relkind = 'S' ORDER BY 1",
    )
    .await;
    let mut out = Vec::new();
    for n in names {
        let row = c
            .query_one(&format!("SELECT last_value, is_called FROM {n}"), &[])
            .await
            .unwrap();
        out.push(format!(
            "{n} {} {}",
            row.get::<_, i64>(0),
            row.get::<_, bool>(1)
        ));
    }
    out
}

/// User triggers not enabled (held back and never put back), on `pg`.
async fn disabled_triggers(pg: &herokurds_testkit::LocalPostgres) -> i64 {
    common::pg::scalar(
        pg,
        "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'O'",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollback_killed_during_the_replay_finishes_when_run_again_with_nothing_lost_or_applied_twice(
) {
    let stack = big_stack().await;
    let plan = stack.write_plan().unwrap();
    let plan = plan.to_str().unwrap();
    let keys_before = foreign_keys(&stack.source).await;
    assert!(keys_before.len() >= 4, "{keys_before:?}");
    let out = run(&stack, &["run", "--config", plan, "--yes"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(app_port(&stack), stack.target.port());

    // The app on RDS: a third of the big table updated, rows inserted and
    // deleted in several tables, a sequence advanced.
    let app = stack.target.owner_client().await.unwrap();
    app.batch_execute(
        "UPDATE events SET kind = kind || '!', payload = payload || '{\"seen\": true}' WHERE id % 3 = 0;
         INSERT INTO events (learner_id, kind, payload, at)
           SELECT 1 + i % 5000, 'rds', jsonb_build_object('i', i), now() FROM generate_series(1, 3000) AS i;
         DELETE FROM events WHERE id % 1000 = 7;
         INSERT INTO learners (email, name, country) VALUES ('rds1@example.com', 'On RDS', 'US'),
                                                             ('rds2@example.com', 'On RDS', 'FR');
         UPDATE learners SET name = name || ' (moved)' WHERE id % 50 = 0;
         DELETE FROM certificates WHERE id % 10 = 0;
         SELECT nextval('invoice_number_seq') FROM generate_series(1, 7);",
    )
    .await
    .unwrap();
    drop(app);

    let out = run(&stack, &["status", "--config", plan, "--json"], "");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let logged = status["target_capture"]["logged_changes"].as_i64().unwrap();
    assert!(logged > 130_000, "{status}");

    // Killed (SIGKILL: no cleanup) with the old database's foreign keys
    // dropped, before the copy-back round commits; then killed again
    // right after that round was journaled.
    let rds_learners = || async {
        common::pg::scalar::<i64>(
            &stack.source,
            "SELECT count(*) FROM learners WHERE email LIKE 'rds_@example.com'",
        )
        .await
    };
    let mut seen = String::new();
    for needle in ["\"event\":\"held_back\"", "\"event\":\"round_applied\""] {
        seen.push_str(&killed_at(
            &stack,
            &["rollback", "--config", plan, "--yes", "--json"],
            needle,
        ));
        assert_eq!(
            app_port(&stack),
            stack.target.port(),
            "killed before the switch"
        );
        // Killed mid-replay indeed: Heroku's foreign keys are held back,
        // and RDS's rows reach Heroku only with the round.
        assert!(foreign_keys(&stack.source).await.len() < keys_before.len());
        let copied = needle.contains("round_applied");
        assert_eq!(rds_learners().await, if copied { 2 } else { 0 }, "{needle}");
    }
    assert!(seen.contains("\"event\":\"settling\""), "{seen}");
    // The round's size and time, for whoever reads the test's log.
    for line in seen.lines().filter(|l| l.contains("round_applied")) {
        eprintln!("copy-back round before the kill: {line}");
    }

    let out = run(
        &stack,
        &["rollback", "--config", plan, "--yes", "--json"],
        "",
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_no_secrets(&stack, &t);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap()).unwrap_or_else(|e| panic!("{e}: {t}"));
    eprintln!("rollback run again: {}", report["replayed"]);
    assert!(
        report["replayed"]["keys_compared"].as_u64().unwrap() > 130_000,
        "every key changed on RDS compared: {report}"
    );
    // The round the second attempt applied before its kill counts: the
    // report covers every attempt.
    assert!(
        report["replayed"]["keys"].as_u64().unwrap() > 130_000
            && report["replayed"]["tables"].as_u64().unwrap() >= 3,
        "{report}"
    );
    assert_eq!(
        report["replayed"]["sequences"].as_u64().unwrap() as usize,
        sequences(&stack.target).await.len(),
        "{report}"
    );
    for line in stdout.lines() {
        let _: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not NDJSON ({e}): {line}"));
    }

    assert_eq!(app_port(&stack), stack.source.port(), "back on Heroku");
    assert_eq!(stack.heroku.maintenance(DEMO_APP), Some(false));
    // Nothing lost, nothing applied twice: both databases hold the same
    // rows (count and md5 of each table's sorted rows), sequences,
    // constraints and triggers.
    for table in [
        "programs",
        "courses",
        "learners",
        "enrollments",
        "certificates",
        "events",
    ] {
        assert_eq!(
            table_digest(&stack.source, table).await,
            table_digest(&stack.target, table).await,
            "{table}"
        );
    }
    assert_eq!(
        sequences(&stack.source).await,
        sequences(&stack.target).await
    );
    common::pg::assert_same(&stack.source, &stack.target).await;
    assert_eq!(rds_learners().await, 2);
    // Heroku's foreign keys: all back, validated, as before the run.
    assert_eq!(foreign_keys(&stack.source).await, keys_before);
    assert_eq!(disabled_triggers(&stack.source).await, 0);
    for pg in [&stack.source, &stack.target] {
        assert_eq!(
            common::pg::herokurds_objects(pg).await,
            Vec::<String>::new()
        );
    }

    let out = run(&stack, &["status", "--config", plan, "--json"], "");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(status["target_capture"].is_null(), "{status}");
    assert_eq!(status["state"]["state"], "rolled_back", "{status}");
    assert_no_secrets(&stack, &text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finish_refuses_an_unfinished_run_status_counts_the_writes_logged_on_rds_and_rollback_copies_them_back(
) {
    let stack = stack_without_s3().await;
    let plan = stack.write_plan().unwrap();
    let plan = plan.to_str().unwrap();
    killed_at(
        &stack,
        &["run", "--config", plan, "--yes", "--json"],
        "\"event\":\"table_finished\"",
    );

    let (_, t) = run_expect(&stack, &["finish", "--config", plan, "--yes"], "", 2);
    assert!(
        t.contains("has not completed")
            && t.contains("herokurds resume --config")
            && t.contains("herokurds rollback --config"),
        "{t}"
    );

    let out = run(&stack, &["resume", "--config", plan, "--yes"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let status = |stack: &DemoStack| {
        let out = run(stack, &["status", "--config", plan, "--json"], "");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let s = status(&stack);
    assert_eq!(s["target_capture"]["logged_changes"], 0, "{s}");
    assert!(s["target_capture"]["tables"].as_u64().unwrap() >= 5, "{s}");

    let app = stack.target.owner_client().await.unwrap();
    for i in 0..3 {
        app.batch_execute(&format!(
            "INSERT INTO learners (email, name, country) VALUES ('status{i}@example.com', 'S', 'DE')"
        ))
        .await
        .unwrap();
    }
    drop(app);
    let s = status(&stack);
    assert_eq!(s["target_capture"]["logged_changes"], 3, "{s}");
    assert!(s["target_capture"]["error"].is_null(), "{s}");
    let out = run(&stack, &["status", "--config", plan], "");
    let t = text(&out);
    assert!(
        t.contains("change capture on RDS: 3 change(s) logged since the cutover")
            && t.contains("`herokurds finish` removes it"),
        "{t}"
    );
    assert_no_secrets(&stack, &t);

    // The rollback copies them back, and says so in words.
    let (_, t) = run_expect(&stack, &["rollback", "--config", plan, "--yes"], "", 0);
    assert!(
        t.contains("waiting for writes on the new database to stop")
            && t.contains("held back on the old database while copying back")
            && t.contains("copied back from the new database: 3 change(s), 3 row(s) on 1 table(s)")
            && t.contains("change capture removed from the new database")
            && t.contains("copied back from RDS: 3 change(s) on 3 row(s) in 1 table(s)")
            && t.contains("3 key(s) compared, 1 table(s) counted")
            && !t.contains("NOT copied back"),
        "{t}"
    );
    assert_no_secrets(&stack, &t);
    assert_eq!(app_port(&stack), stack.source.port());
    assert_eq!(
        common::pg::scalar::<i64>(
            &stack.source,
            "SELECT count(*) FROM learners WHERE email LIKE 'status_@example.com'"
        )
        .await,
        3
    );
    assert!(status(&stack)["target_capture"].is_null());
    assert_eq!(capture_schemas(&stack.target).await, 0);

    let (_, t) = run_expect(&stack, &["finish", "--config", plan, "--yes"], "", 2);
    assert!(
        t.contains("nothing to finish") && t.contains("rolled back"),
        "{t}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollback_refuses_ddl_made_on_rds_with_exit_1_and_discard_target_writes_switches_back() {
    let stack = stack_without_s3().await;
    let plan = stack.write_plan().unwrap();
    let plan = plan.to_str().unwrap();
    run_expect(&stack, &["run", "--config", plan, "--yes"], "", 0);
    let app = stack.target.owner_client().await.unwrap();
    app.batch_execute(
        "ALTER TABLE learners ADD COLUMN nickname text;
         UPDATE learners SET nickname = 'n' WHERE id = 1;",
    )
    .await
    .unwrap();
    drop(app);

    let (_, t) = run_expect(&stack, &["rollback", "--config", plan, "--yes"], "", 1);
    assert!(
        t.contains("cannot be copied back")
            && t.contains("the schema changed on the target since the cutover")
            && t.contains("learners")
            && t.contains("--discard-target-writes"),
        "{t}"
    );
    assert_eq!(app_port(&stack), stack.target.port(), "nothing switched");
    assert_eq!(stack.heroku.maintenance(DEMO_APP), Some(false));
    assert_eq!(capture_schemas(&stack.target).await, 1, "capture kept");

    rollback_discarding_rds_writes(&stack, plan);
    for pg in [&stack.source, &stack.target] {
        assert_eq!(
            common::pg::herokurds_objects(pg).await,
            Vec::<String>::new()
        );
    }
    assert_eq!(disabled_triggers(&stack.source).await, 0);
}
