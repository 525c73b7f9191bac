//! The real `herokurds-verify` binary against real clusters: exit codes,
//! lines, `--json`, and no password in anything it prints.

mod common;

use std::process::{Command, Output};

use common::pg::{load, pair};
use secrecy::ExposeSecret;

const SCHEMA: &str = "
CREATE TABLE public.accounts (id int PRIMARY KEY, name text NOT NULL, balance numeric(10,2));
CREATE INDEX accounts_name_idx ON public.accounts (name);
INSERT INTO public.accounts SELECT i, 'account ' || i, i * 1.5 FROM generate_series(1, 500) i;
CREATE SEQUENCE public.ticket_seq;
SELECT setval('public.ticket_seq', 77);
";

fn verify(source: &str, target: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herokurds-verify"))
        .args(args)
        .env("SOURCE_DATABASE_URL", source)
        .env("TARGET_DATABASE_URL", target)
        .output()
        .expect("herokurds-verify runs")
}

/// The lines of a run that found differences (exit 1), sorted.
fn difference_lines(out: &Output) -> Vec<String> {
    let (o, e) = text(out);
    assert_eq!(out.status.code(), Some(1), "{o}\n{e}");
    let mut lines: Vec<String> = o.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn exit_codes_lines_and_json_never_show_a_password() {
    let (source, target) = pair().await;
    // The same statements on both sides make identical databases.
    for pg in [&source, &target] {
        load(pg, SCHEMA).await;
    }
    let (src_url, tgt_url) = (source.url(), target.url());
    let (src_url, tgt_url) = (src_url.expose_secret(), tgt_url.expose_secret());
    let passwords = [
        source.password().expose_secret().to_string(),
        target.password().expose_secret().to_string(),
    ];
    let no_secret = |out: &Output| {
        let (o, e) = text(out);
        for p in &passwords {
            assert!(
                !o.contains(p.as_str()) && !e.contains(p.as_str()),
                "password printed:\n{o}\n{e}"
            );
        }
    };

    // 0: identical; nothing on stdout, the verdict on stderr.
    let out = verify(src_url, tgt_url, &[]);
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{o}\n{e}");
    assert!(o.is_empty(), "{o}");
    assert!(e.contains("identical"), "{e}");
    no_secret(&out);

    // 1: one line per difference, naming the object.
    load(
        &target,
        "DELETE FROM public.accounts WHERE id = 7;
         DROP INDEX public.accounts_name_idx;
         SELECT setval('public.ticket_seq', 78);",
    )
    .await;
    let out = verify(src_url, tgt_url, &["--jobs", "3"]);
    let lines = difference_lines(&out);
    assert_eq!(
        lines,
        vec![
            "index public.accounts_name_idx: missing on target",
            "sequence public.ticket_seq: last_value 77 vs 78",
            "table public.accounts: row count 500 on source vs 499 on target",
        ]
    );
    let e = text(&out).1;
    assert!(e.contains("3 difference(s)"), "{e}");
    no_secret(&out);

    // --json: one object, the differences as a list; URLs given as flags.
    let out = Command::new(env!("CARGO_BIN_EXE_herokurds-verify"))
        .args([
            "--source",
            src_url,
            "--target",
            tgt_url,
            "--json",
            "--counts-only",
        ])
        .env_remove("SOURCE_DATABASE_URL")
        .env_remove("TARGET_DATABASE_URL")
        .output()
        .unwrap();
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{o}\n{e}");
    let v: serde_json::Value = serde_json::from_str(&o).expect("stdout is one JSON document");
    assert_eq!(v["identical"], false);
    assert_eq!(v["counts_only"], true);
    let diffs = v["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 3, "{diffs:#?}");
    let row = diffs.iter().find(|d| d["what"] == "row_count").unwrap();
    assert_eq!(row["kind"], "table");
    assert_eq!(row["name"], "public.accounts");
    assert_eq!(row["source"], 500);
    assert_eq!(row["target"], 499);
    assert_eq!(
        row["message"],
        "table public.accounts: row count 500 on source vs 499 on target"
    );
    no_secret(&out);

    // 2: a refused password is an error that says so, without the password.
    let wrong = tgt_url.replace(passwords[1].as_str(), "not-the-password");
    let out = verify(src_url, &wrong, &[]);
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{o}\n{e}");
    assert!(e.contains("target"), "{e}");
    assert!(e.contains("password authentication failed"), "{e}");
    assert!(!e.contains("not-the-password"), "{e}");
    no_secret(&out);

    // 2: a malformed URL is named by flag, its text (which may hold the
    // password) is not echoed.
    let out = verify(src_url, "postgres://u:hunter2@:notaport/db", &[]);
    let (_, e) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("--target"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}

#[tokio::test]
async fn excluding_the_differing_table_exits_0_and_an_unknown_flag_exits_2() {
    let (source, target) = pair().await;
    let both = "CREATE TABLE public.accounts (id int PRIMARY KEY);
                INSERT INTO public.accounts SELECT generate_series(1, 50);
                CREATE TABLE public.audit_log (id int PRIMARY KEY, at timestamptz);
                CREATE INDEX audit_log_at_idx ON public.audit_log (at);
                INSERT INTO public.audit_log SELECT i, now() FROM generate_series(1, 30) i;";
    for pg in [&source, &target] {
        load(pg, both).await;
    }
    // Only the excluded table differs: its rows and one of its indexes.
    load(
        &target,
        "DELETE FROM public.audit_log WHERE id = 3; DROP INDEX public.audit_log_at_idx;",
    )
    .await;
    let (src_url, tgt_url) = (source.url(), target.url());
    let (src_url, tgt_url) = (src_url.expose_secret(), tgt_url.expose_secret());

    let out = verify(src_url, tgt_url, &[]);
    let lines = difference_lines(&out);
    assert_eq!(
        lines,
        vec![
            "index public.audit_log_at_idx: missing on target",
            "table public.audit_log: row count 30 on source vs 29 on target",
        ]
    );

    for pattern in ["audit_log", "public.audit_*"] {
        let out = verify(src_url, tgt_url, &["--exclude-table", pattern]);
        let (o, e) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{pattern}: {o}\n{e}");
        assert!(o.is_empty(), "{pattern}: {o}");
        assert!(e.contains("identical"), "{pattern}: {e}");
    }
    // Excluding another table leaves the difference in place.
    let out = verify(src_url, tgt_url, &["--exclude-table", "accounts"]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));

    // An unknown flag is a usage error: 2, naming the flag, never a verdict.
    let out = verify(src_url, tgt_url, &["--exclude-tables", "audit_log"]);
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{o}\n{e}");
    assert!(e.contains("--exclude-tables"), "{e}");
    assert!(!e.contains("identical") && o.is_empty(), "{o}\n{e}");
    for pg in [&source, &target] {
        let password = pg.password().expose_secret();
        assert!(!o.contains(password) && !e.contains(password), "{e}");
    }
}
