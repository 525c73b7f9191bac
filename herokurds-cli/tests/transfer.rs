//! The real `herokurds-transfer` binary: killed mid-run and finished with
//! `--resume`; exit codes; NDJSON; passwords never printed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use common::pg::{assert_same, load, pair};
use secrecy::ExposeSecret;

const BIN: &str = env!("CARGO_BIN_EXE_herokurds-transfer");

const DATA: &str = "
CREATE TABLE first_big (id bigint PRIMARY KEY, payload text);
INSERT INTO first_big SELECT i, repeat(md5(i::text), 6) FROM generate_series(1, 150000) i;
CREATE TABLE second_big (id bigint PRIMARY KEY, ref bigint REFERENCES first_big (id), payload text);
INSERT INTO second_big SELECT i, i, repeat(md5(i::text), 5) FROM generate_series(1, 150000) i;
CREATE TABLE third (id serial PRIMARY KEY, v text);
INSERT INTO third (v) SELECT 'v' || i FROM generate_series(1, 5000) i;
SELECT lo_from_bytea(4242, 'blob');
";

fn command(src: &str, tgt: &str, work: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.env("SOURCE_DATABASE_URL", src)
        .env("TARGET_DATABASE_URL", tgt)
        .env_remove("RUST_LOG")
        .arg("--work-dir")
        .arg(work)
        .args(["--jobs", "1"]);
    c
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Starts a `--json` run and reads its NDJSON until the first table is in;
/// returns the running child and the lines read.
async fn start_until_first_table(
    src: &herokurds_testkit::LocalPostgres,
    tgt: &herokurds_testkit::LocalPostgres,
    work: &std::path::Path,
) -> (std::process::Child, Vec<String>) {
    let mut child = command(src.url().expose_secret(), tgt.url().expose_secret(), work)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first_lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.contains(r#""event":"table_finished""#);
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    })
    .await
    .unwrap();
    if !first_lines.iter().any(|l| l.contains("table_finished")) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no table finished: {first_lines:?}");
    }
    for l in &first_lines {
        let v: serde_json::Value = serde_json::from_str(l).expect("NDJSON");
        assert!(v.get("event").is_some(), "{l}");
    }
    (child, first_lines)
}

/// A plain run refuses the unfinished journal (exit 2); `--resume`
/// finishes it, skipping what was done, and the target equals the source.
/// Returns everything the runs printed.
async fn resume_finishes(
    src: &herokurds_testkit::LocalPostgres,
    tgt: &herokurds_testkit::LocalPostgres,
    work: &std::path::Path,
) -> String {
    let (s_url, t_url) = (
        src.url().expose_secret().to_string(),
        tgt.url().expose_secret().to_string(),
    );
    let out = tokio::task::spawn_blocking({
        let (s, t, w) = (s_url.clone(), t_url.clone(), work.to_path_buf());
        move || command(&s, &t, &w).output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--resume"), "{}", text(&out));

    let out = tokio::task::spawn_blocking({
        let w = work.to_path_buf();
        move || {
            command(&s_url, &t_url, &w)
                .args(["--resume", "--json"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains(r#""event":"table_skipped""#), "{all}");
    let report = all
        .lines()
        .find(|l| l.contains(r#""event":"report""#))
        .expect("a report line");
    let report: serde_json::Value = serde_json::from_str(report).unwrap();
    assert_eq!(report["report"]["resumed"], true);
    assert_same(src, tgt).await;
    all
}

fn assert_no_password(
    src: &herokurds_testkit::LocalPostgres,
    tgt: &herokurds_testkit::LocalPostgres,
    printed: &[&str],
) {
    for p in [src.password(), tgt.password()] {
        for text in printed {
            assert!(
                !text.contains(p.expose_secret()),
                "password printed: {text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_run_the_binary_finishes_with_resume() {
    let (src, tgt) = pair().await;
    load(&src, DATA).await;
    let work = tempfile::tempdir().unwrap();

    // kill -9 once the first table is in: no chance to clean up.
    let (mut child, first_lines) = start_until_first_table(&src, &tgt, work.path()).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let all = resume_finishes(&src, &tgt, work.path()).await;
    let mut printed = vec![all.as_str()];
    printed.extend(first_lines.iter().map(String::as_str));
    assert_no_password(&src, &tgt, &printed);
}

/// SIGTERM (and SIGHUP, SIGINT) cancel: the run says so, exits 2 naming
/// `--resume`, and the journal it leaves is finished by `--resume`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_mid_run_the_binary_stops_cleanly_and_resume_finishes() {
    let (src, tgt) = pair().await;
    load(&src, DATA).await;
    let work = tempfile::tempdir().unwrap();

    let (child, first_lines) = start_until_first_table(&src, &tgt, work.path()).await;
    herokurds_testkit::send_signal(&child, libc::SIGTERM).unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stopped = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stopped}");
    assert!(
        stopped.contains("interrupt: stopping the transfer"),
        "{stopped}"
    );
    assert!(stopped.contains("--resume"), "{stopped}");

    let all = resume_finishes(&src, &tgt, work.path()).await;
    let mut printed = vec![all.as_str(), stopped.as_str()];
    printed.extend(first_lines.iter().map(String::as_str));
    assert_no_password(&src, &tgt, &printed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_exit_2_and_never_print_the_password() {
    let (src, tgt) = pair().await;
    load(&tgt, "CREATE TABLE occupied (id int)").await;
    let (s_url, t_url) = (
        src.url().expose_secret().to_string(),
        tgt.url().expose_secret().to_string(),
    );
    let work = tempfile::tempdir().unwrap();
    let outs = tokio::task::spawn_blocking({
        let w = work.path().to_path_buf();
        move || {
            vec![
                command(&s_url, &t_url, &w).output().unwrap(),
                command(&s_url, &t_url, &w)
                    .arg("--preflight-only")
                    .output()
                    .unwrap(),
                command(&s_url, &t_url, &w).arg("--help").output().unwrap(),
                // A URL given as an argument, broken: the error names the
                // flag, not the password.
                Command::new(BIN)
                    .args(["--source", &s_url.replace("127.0.0.1:", "127.0.0.1:x")])
                    .args(["--target", &t_url])
                    .output()
                    .unwrap(),
            ]
        }
    })
    .await
    .unwrap();
    assert_eq!(outs[0].status.code(), Some(2));
    assert!(
        text(&outs[0]).contains("already holds 1 table"),
        "{}",
        text(&outs[0])
    );
    assert_eq!(outs[1].status.code(), Some(2));
    assert!(text(&outs[1]).contains("problem:"), "{}", text(&outs[1]));
    assert_eq!(outs[2].status.code(), Some(0));
    // Words only: --help wraps its lines to the terminal.
    let help = text(&outs[2])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for needed in [
        "SOURCE_DATABASE_URL",
        "TARGET_DATABASE_URL",
        "--pg-bin-dir",
        "HEROKURDS_PG_BIN_DIR",
        "Exit status: 0",
        "2 an error",
        "DROP OWNED BY CURRENT_USER",
    ] {
        assert!(help.contains(needed), "--help lacks {needed}:\n{help}");
    }
    assert_eq!(outs[3].status.code(), Some(2));
    assert!(text(&outs[3]).contains("--source"), "{}", text(&outs[3]));
    for out in &outs {
        for p in [src.password(), tgt.password()] {
            assert!(!text(out).contains(p.expose_secret()), "{}", text(out));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pg_bin_dir_with_a_too_old_pg_dump_exits_2_naming_both_versions_and_the_flag() {
    use std::os::unix::fs::PermissionsExt;

    let (src, tgt) = pair().await;
    let (s_url, t_url) = (
        src.url().expose_secret().to_string(),
        tgt.url().expose_secret().to_string(),
    );
    let bin = tempfile::tempdir().unwrap();
    for tool in ["pg_dump", "pg_restore"] {
        let p = bin.path().join(tool);
        std::fs::write(&p, format!("#!/bin/sh\necho '{tool} (PostgreSQL) 9.6.0'\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let outs = tokio::task::spawn_blocking({
        let (w, b) = (work.path().to_path_buf(), bin.path().to_path_buf());
        move || {
            vec![
                command(&s_url, &t_url, &w)
                    .arg("--pg-bin-dir")
                    .arg(&b)
                    .output()
                    .unwrap(),
                // The same directory from the environment, preflight only.
                command(&s_url, &t_url, &w)
                    .env("HEROKURDS_PG_BIN_DIR", &b)
                    .arg("--preflight-only")
                    .output()
                    .unwrap(),
            ]
        }
    })
    .await
    .unwrap();
    let needed = format!("PostgreSQL {}", src.major_version());
    for out in &outs {
        let all = text(out);
        assert_eq!(out.status.code(), Some(2), "{all}");
        assert!(all.contains("pg_dump 9.6.0"), "{all}");
        assert!(all.contains(&needed), "{all}");
        assert!(all.contains("--pg-bin-dir"), "{all}");
        assert!(
            all.contains(&bin.path().join("pg_dump").display().to_string()),
            "{all}"
        );
        for p in [src.password(), tgt.password()] {
            assert!(!all.contains(p.expose_secret()), "{all}");
        }
    }
    // Nothing was written to the target.
    let c = tgt.superuser_client(tgt.database()).await.unwrap();
    let tables: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_refuses_a_finished_copy_unless_restart_target() {
    let (src, tgt) = pair().await;
    load(
        &src,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100);",
    )
    .await;
    let (s_url, t_url) = (
        src.url().expose_secret().to_string(),
        tgt.url().expose_secret().to_string(),
    );
    let work = tempfile::tempdir().unwrap();
    let w = work.path().to_path_buf();
    let go = move |args: &[&str], stdin: &str| {
        common::output_with_stdin(command(&s_url, &t_url, &w).args(args), stdin)
    };
    let out = go(&[], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // An app switched to the copy writes a row.
    load(&tgt, "INSERT INTO t VALUES (1000)").await;
    let rows = || async {
        tgt.owner_client()
            .await
            .unwrap()
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };

    let out = go(&["--restart"], "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let words = text(&out).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains("finished at")
            && words.contains("public.t")
            && words.contains("--restart-target"),
        "{words}"
    );
    assert_eq!(rows().await, 101, "the target is unchanged after a refusal");

    let out = go(&["--restart-target"], "wrong\n");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not confirmed"), "{}", text(&out));
    assert_eq!(rows().await, 101);

    let out = go(&["--restart-target"], &format!("{}\n", tgt.database()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(rows().await, 100, "copied again from the source");
    let out = go(&["--restart-target", "--yes"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&src, &tgt).await;
    assert_no_password(&src, &tgt, &[&text(&out)]);
}

/// libpq reads `PG*` variables for whatever the connection string leaves
/// out: a shell's `PGSSLMODE=disable`, a `PGSERVICE` or `PGOPTIONS` reached
/// `pg_dump` and `pg_restore`. The URLs here carry no `sslmode` and both
/// clusters reject connections without TLS (`hostnossl ... reject`), so a
/// transfer that succeeds ran its tools over TLS, with the URLs' settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_variables_of_the_callers_environment_do_not_reach_pg_dump_or_pg_restore() {
    let (src, tgt) = pair().await;
    load(
        &src,
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 100) i;",
    )
    .await;
    let bare = |pg: &herokurds_testkit::LocalPostgres| {
        let url = pg.url().expose_secret().to_string();
        assert!(
            url.ends_with("?sslmode=require"),
            "sandbox URLs ask for TLS"
        );
        url.trim_end_matches("?sslmode=require").to_string()
    };
    let work = tempfile::tempdir().unwrap();
    let out = command(&bare(&src), &bare(&tgt), work.path())
        .env("PGSSLMODE", "disable")
        .env("PGSERVICE", "herokurds-test-no-such-service")
        .env("PGOPTIONS", "-c default_transaction_read_only=on")
        .env("PGDATABASE", "wrong_database")
        .env("PGUSER", "wrong_user")
        .env("PGCONNECT_TIMEOUT", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same(&src, &tgt).await;
}

/// The transfer's own copy of the size parser saturated instead of
/// refusing: `99999999999TB` became u64::MAX and the run went ahead.
#[test]
fn a_split_size_too_large_for_64_bits_is_refused_before_connecting() {
    let work = tempfile::tempdir().unwrap();
    let out = command(
        "postgres://u@127.0.0.1:1/src",
        "postgres://u@127.0.0.1:1/tgt",
        work.path(),
    )
    .args(["--split-tables-larger-than", "99999999999TB"])
    .output()
    .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("`99999999999TB` is too large") && !all.contains("127.0.0.1:1"),
        "refused as a flag value, before any connection: {all}"
    );
}
