//! `herokurds-url` as a user runs it: exit codes, output, the env file,
//! and no password anywhere it should not be.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use herokurds_core::url::DatabaseUrl;
use herokurds_testkit::{LocalPostgres, PostgresOptions};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

/// Easy to spot if it leaks; every character a URL or a shell cares about.
const PASSWORD: &str = "Leak'me\"@:/?#%[] é$HOME\\x";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herokurds-url"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run herokurds-url");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    let run = Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    for (name, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        if !args.contains(&"--reveal") {
            assert!(!text.contains("Leak"), "password in {name}: {text}");
        }
    }
    run
}

fn assert_has(text: &str, needle: &str) {
    assert!(text.contains(needle), "{needle:?} not in:\n{text}");
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

const RDS_BUILD: &[&str] = &[
    "build",
    "--user",
    "rds_master",
    "--host",
    "mydb.c9abc.us-east-1.rds.amazonaws.com:5432",
    "--dbname",
    "app",
    "--param",
    "sslmode=require",
    "--password-env",
    "PW",
];

#[test]
fn build_prints_the_url_redacted_and_splits_an_endpoint() {
    let r = run(RDS_BUILD, &[("PW", PASSWORD)], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "postgres://rds_master:***@mydb.c9abc.us-east-1.rds.amazonaws.com:5432/app?sslmode=require\n"
    );
}

#[test]
fn build_reveal_gives_the_exact_password_back() {
    let args = [RDS_BUILD, &["--reveal"]].concat();
    let r = run(&args, &[("PW", PASSWORD)], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let url: DatabaseUrl = r.stdout.trim().parse().unwrap();
    assert_eq!(url.password().expose_secret(), PASSWORD);
    assert!(!r.stderr.contains("Leak"));
}

#[test]
fn build_reads_the_password_from_stdin() {
    let args = [
        "build",
        "--user",
        "u",
        "--host",
        "h",
        "--dbname",
        "d",
        "--password-stdin",
        "--reveal",
    ];
    let r = run(&args, &[], Some("two\nlines\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let url: DatabaseUrl = r.stdout.trim().parse().unwrap();
    assert_eq!(url.password().expose_secret(), "two\nlines");
}

#[test]
fn build_lists_every_missing_and_invalid_part() {
    let r = run(
        &[
            "build",
            "--user",
            "u",
            "--port",
            "abc",
            "--param",
            "sslmod=require",
            "--password-env",
            "UNSET_PW",
        ],
        &[],
        None,
    );
    assert_eq!(r.code, 2);
    assert_eq!(r.stdout, "");
    for expected in [
        "missing: password, host, dbname",
        "invalid: port (expected 1-65535)",
        "unknown parameter \"sslmod\" (did you mean sslmode?)",
        "environment variable UNSET_PW is not set",
    ] {
        assert_has(&r.stderr, expected);
    }
}

#[test]
fn build_json_reports_problems_as_data() {
    let r = run(
        &[
            "build",
            "--user",
            "u",
            "--host",
            "db:5432",
            "--port",
            "6432",
            "--dbname",
            "d",
            "--password-env",
            "PW",
            "--json",
        ],
        &[("PW", PASSWORD)],
        None,
    );
    assert_eq!(r.code, 2);
    let v = json_of(&r.stdout);
    assert_eq!(
        v["problems"],
        json!([{"problem": "port_conflict", "host_port": 5432, "port": 6432}])
    );
    assert!(r.stderr.contains("5432") && r.stderr.contains("6432"));
}

#[test]
fn build_writes_a_private_env_file_that_sources_to_the_exact_url() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rds.env");
    let file_arg = file.to_str().unwrap();
    let args = [RDS_BUILD, &["--env-file", file_arg, "--json"]].concat();
    let r = run(&args, &[("PW", PASSWORD)], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json_of(&r.stdout);
    assert_eq!(v["parts"]["password"], "***");
    assert_eq!(v["env_file"], file_arg);
    let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let sourced = Command::new("bash")
        .arg("-c")
        .arg(". \"$1\" && printf %s \"$DATABASE_URL\"")
        .arg("bash")
        .arg(&file)
        .output()
        .unwrap();
    let url: DatabaseUrl = String::from_utf8(sourced.stdout).unwrap().parse().unwrap();
    assert_eq!(url.password().expose_secret(), PASSWORD);
    assert_eq!(
        url.host().to_string(),
        "mydb.c9abc.us-east-1.rds.amazonaws.com"
    );
}

#[test]
fn parse_prints_parts_from_the_argument_or_database_url() {
    let url = "postgresql://u%40x:Leak%21@[::1]:6543/my%2Fdb?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem";
    let r = run(&["parse", "--json"], &[("DATABASE_URL", url)], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        json_of(&r.stdout),
        json!({
            "scheme": "postgresql", "user": "u@x", "password": "***", "host": "::1",
            "port": 6543, "dbname": "my/db",
            "params": {"sslmode": "verify-full", "sslrootcert": "/tmp/ca.pem"},
        })
    );
    let r = run(&["parse", url], &[], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_has(&r.stdout, "password:    ***\n");
    assert_has(&r.stdout, "sslmode:     verify-full\n");
}

#[test]
fn parse_names_the_bad_part_and_exits_2() {
    let r = run(
        &["parse"],
        &[("DATABASE_URL", "postgres://u:Leak%zz@h:5432:5432/d")],
        None,
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("invalid: password (expected valid percent-escapes"),
        "{}",
        r.stderr
    );
    assert_has(
        &r.stderr,
        "invalid: port (expected one port 1-65535, not several",
    );
    let r = run(
        &["parse", "--json"],
        &[("DATABASE_URL", "postgres://u@h/d")],
        None,
    );
    assert_eq!(r.code, 2);
    assert_eq!(
        json_of(&r.stdout)["problems"],
        json!([{"problem": "missing", "part": "password"}])
    );
    let r = run(&["parse"], &[], None);
    assert_eq!(r.code, 2);
    assert_has(&r.stderr, "set DATABASE_URL");
}

#[test]
fn parse_never_echoes_a_password_that_was_split_or_left_without_a_host() {
    for url in [
        "host=h user=u password=Leak1 Leak2=Leak3 dbname=d",
        "host=h user=u password=Leak1\tLeak2='Leak3 dbname=d",
        "postgresql:///d?host=h&user=u&password=Leak1&Leak2=Leak3",
        "postgres://u:Leak1/d",
    ] {
        // `run` fails the test if "Leak" is on stdout or stderr.
        let r = run(&["parse"], &[("DATABASE_URL", url)], None);
        assert_eq!(r.code, 2, "{url}: {}", r.stderr);
        assert_has(&r.stderr, "password");
        let r = run(&["parse", "--json"], &[("DATABASE_URL", url)], None);
        assert_eq!(r.code, 2, "{url}: {}", r.stderr);
        assert_eq!(json_of(&r.stdout)["problems"][0]["problem"], "syntax");
    }
}

/// Issue 13: `parse 'postgres:/u:secr=et@h/db'` printed
/// `unknown parameter "postgres:/u:secr"`, and a known key's bad value
/// split from a password was quoted whole.
#[test]
fn parse_json_never_shows_a_piece_of_a_malformed_urls_password() {
    for (url, pieces) in [
        ("postgres:/u:Secr=Et9x@h/db", &["Secr", "Et9x"][..]),
        ("postgres//u:Secr=Et9x==@h/db", &["Secr", "Et9x"]),
        (
            "postgres://u@h/d?password=Secr&sslmode=Et9x",
            &["Secr", "Et9x"],
        ),
        ("postgres://u@h/d?password=Secr&Et9x=1", &["Secr", "Et9x"]),
        ("postgres://u:Secr@h:Et9x/d", &["Secr", "Et9x"]),
        ("DATABASE_URL=postgres://u:Secr@h/d", &["Secr"]),
        (
            "host=h user=u password=Secr Et9x=1 dbname=d",
            &["Secr", "Et9x"],
        ),
    ] {
        for args in [&["parse", "--json"][..], &["parse"]] {
            let r = run(args, &[("DATABASE_URL", url)], None);
            assert_eq!(r.code, 2, "{url}: {}", r.stderr);
            for piece in pieces {
                for (name, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
                    assert!(!text.contains(piece), "{url}: {piece} in {name}: {text}");
                }
            }
        }
        let r = run(&["parse", "--json"], &[("DATABASE_URL", url)], None);
        assert!(json_of(&r.stdout)["problems"].is_array(), "{}", r.stdout);
    }
}

#[test]
fn help_teaches_where_the_password_comes_from() {
    let r = run(&["--help"], &[], None);
    assert_eq!(r.code, 0);
    for expected in [
        "--password-env",
        "--password-stdin",
        "Examples:",
        "ps, /proc",
        "Exit codes",
    ] {
        assert!(r.stdout.contains(expected), "{expected:?} not in help");
    }
}

fn sandbox() -> LocalPostgres {
    LocalPostgres::start_blocking(PostgresOptions::heroku().password(SecretString::from(PASSWORD)))
        .unwrap_or_else(|e| panic!("sandbox cluster (run scripts/test to install PostgreSQL): {e}"))
}

#[test]
fn check_connects_and_diagnoses() {
    let pg = sandbox();
    let ca = pg.ca_cert_path().unwrap();
    let good = format!(
        "{}&sslrootcert={}",
        pg.url_for(pg.database(), "verify-full").expose_secret(),
        ca.display()
    );
    let r = run(&["check"], &[("DATABASE_URL", &good)], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for expected in [
        "server:   PostgreSQL ",
        "user:     heroku_owner",
        "database: herokudb",
        "tls:      yes (sslmode=verify-full, certificate verified)",
    ] {
        assert_has(&r.stdout, expected);
    }
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    let r = run(&["check", "--json"], &[("DATABASE_URL", &good)], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json_of(&r.stdout);
    assert_eq!(
        (v["user"].clone(), v["database"].clone(), v["tls"].clone()),
        (json!("heroku_owner"), json!("herokudb"), json!(true))
    );
    assert_eq!(v["major"], json!(pg.major_version()));
    assert_eq!(v["tls_warnings"], json!([]));

    // No sslmode: TLS all the same (not libpq's prefer), and said unverified.
    let bare = pg
        .url_for(pg.database(), "require")
        .expose_secret()
        .replace("?sslmode=require", "");
    let r = run(&["check"], &[("DATABASE_URL", &bare)], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_has(
        &r.stdout,
        "tls:      yes (sslmode=require, certificate NOT verified)",
    );
    assert_has(&r.stderr, "warning: the database server is not verified");
    assert_has(&r.stderr, "sslmode=verify-full and sslrootcert=");

    let wrong_password = pg
        .url_for(pg.database(), "require")
        .expose_secret()
        .replace("Leak", "Nope");
    let r = run(&["check"], &[("DATABASE_URL", &wrong_password)], None);
    assert_eq!(r.code, 2);
    assert_has(
        &r.stderr,
        "password authentication failed for user \"heroku_owner\"",
    );
    assert!(!r.stderr.contains("Nope"), "{}", r.stderr);

    // The redacted URL `build` prints, pasted back: said so.
    let redacted = good.parse::<DatabaseUrl>().unwrap().to_string();
    let r = run(&["check"], &[("DATABASE_URL", &redacted)], None);
    assert_eq!(r.code, 2);
    assert_has(&r.stderr, "this is a redacted URL");

    let r = run(
        &["check", "--json"],
        &[(
            "DATABASE_URL",
            pg.url_for("nosuch", "require").expose_secret(),
        )],
        None,
    );
    assert_eq!(r.code, 2);
    let v = json_of(&r.stdout);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("database \"nosuch\" does not exist"),
        "{v}"
    );
    assert_eq!(v["retryable"], json!(false));

    let r = run(
        &["check"],
        &[(
            "DATABASE_URL",
            pg.url_for(pg.database(), "disable").expose_secret(),
        )],
        None,
    );
    assert_eq!(r.code, 2);
    assert_has(&r.stderr, "refuses unencrypted connections");
}

#[test]
fn check_names_a_closed_port() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://u:Leak@127.0.0.1:{port}/d");
    let r = run(&["check"], &[("DATABASE_URL", &url)], None);
    assert_eq!(r.code, 2);
    assert_has(
        &r.stderr,
        &format!("connection refused by 127.0.0.1:{port}"),
    );
}
