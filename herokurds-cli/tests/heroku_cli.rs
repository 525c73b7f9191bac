//! `herokurds-heroku` and `herokurds-heroku-emulator`, the real binaries:
//! the emulator binary serves a state file, the CLI drives it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

const CLI: &str = env!("CARGO_BIN_EXE_herokurds-heroku");
const EMULATOR: &str = env!("CARGO_BIN_EXE_herokurds-heroku-emulator");
const TOKEN: &str = "cli-test-token-51b2";
const APP: &str = "micromasters-ci";
const OLD_URL: &str = "postgres://u:old-db-password@ec2-1.compute-1.amazonaws.com:5432/d1";
const RDS_URL: &str =
    "postgres://app:rds-db-password@db.abc.rds.amazonaws.com:5432/app?sslmode=require";

fn state() -> String {
    serde_json::json!({
        "tokens": [TOKEN],
        "apps": [{
            "name": APP, "maintenance": false,
            "config_vars": {"SECRET_KEY": "django-secret-9"},
            "formation": {"web": 1, "worker": 1},
            "addons": [
                {"name": "postgresql-rigid-71273", "service": "heroku-postgresql",
                 "plan": "heroku-postgresql:mini", "url": OLD_URL,
                 "attachments": ["DATABASE", "HEROKU_POSTGRESQL_YELLOW"]},
                {"name": "postgresql-new-2", "url": "postgres://n:new-db-password@h2:5432/d2",
                 "attachments": ["HEROKU_POSTGRESQL_RED"]},
                {"name": "redis-1", "service": "heroku-redis", "plan": "heroku-redis:mini",
                 "url": "redis://h:6379", "attachments": ["REDIS"]}
            ]
        }]
    })
    .to_string()
}

/// The emulator binary, killed on drop.
struct Server {
    child: Child,
    url: String,
    home: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(state: &str) -> Server {
    serve_with(Command::new(EMULATOR), state)
}

/// Starts the emulator with `cmd`: the emulator binary itself, or a shell
/// that `exec`s it (`$0`) after changing something about the process.
fn serve_with(mut cmd: Command, state: &str) -> Server {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("state.json");
    std::fs::write(&path, state).unwrap();
    let mut child = cmd
        .args(["--listen", "127.0.0.1:0", "--state"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("emulator binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Server { child, url, home }
}

impl Server {
    fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(CLI);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("HEROKU_API_URL", &self.url)
            .env("HEROKU_API_KEY", TOKEN)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cli(args).output().unwrap()
    }

    fn run_stdin(&self, args: &[&str], input: &str) -> Output {
        common::output_with_stdin(&mut self.cli(args), input)
    }

    /// `GET` on the emulator's control API.
    fn control(&self, path: &str) -> Value {
        let addr = self.url.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /__emulator/{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1;
        serde_json::from_str(body).unwrap()
    }

    fn plain_config(&self) -> Value {
        let state = self.control("state");
        state["apps"][0]["config_vars"].clone()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

fn fails(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(2),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    stderr(o)
}

#[test]
fn help_teaches_the_cutover() {
    let out = Command::new(CLI).arg("--help").output().unwrap();
    let text = ok(&out);
    for needle in [
        "HEROKU_API_KEY",
        "netrc",
        "config set DATABASE_URL=-",
        "promote",
        "--confirm",
        "Exit status",
    ] {
        assert!(
            text.contains(needle) || text.contains(&needle.replace("--", "")),
            "{needle} missing:\n{text}"
        );
    }
    let out = Command::new(CLI)
        .args(["config", "set", "--help"])
        .output()
        .unwrap();
    assert!(ok(&out).contains("stdin"));
}

#[test]
fn config_get_set_unset_never_echo_values() {
    let srv = serve(&state());
    assert_eq!(
        ok(&srv.run(&["-a", APP, "config", "get", "SECRET_KEY"])),
        "django-secret-9\n"
    );
    let out = srv.run(&[
        "-a",
        APP,
        "config",
        "set",
        "BUCKET=my-new-bucket",
        "CDN=cdn.example.com",
    ]);
    let text = ok(&out);
    assert!(text.contains("BUCKET") && text.contains("CDN"), "{text}");
    assert!(!text.contains("my-new-bucket") && !stderr(&out).contains("my-new-bucket"));
    let out = srv.run_stdin(
        &["-a", APP, "config", "set", "API_SECRET=-"],
        "from-stdin-secret\n",
    );
    assert!(!ok(&out).contains("from-stdin-secret"));
    assert_eq!(
        srv.plain_config()["API_SECRET"],
        "from-stdin-secret",
        "trailing newline dropped"
    );
    assert_eq!(srv.plain_config()["BUCKET"], "my-new-bucket");

    let json: Value = serde_json::from_str(&ok(
        &srv.run(&["-a", APP, "--json", "config", "get", "BUCKET"])
    ))
    .unwrap();
    assert_eq!(
        json,
        serde_json::json!({"app": APP, "key": "BUCKET", "value": "my-new-bucket"})
    );
    let json: Value = serde_json::from_str(&ok(
        &srv.run(&["-a", APP, "config", "unset", "BUCKET", "--json"])
    ))
    .unwrap();
    assert_eq!(json["unset"], serde_json::json!(["BUCKET"]));
    assert!(json["release"].as_u64().unwrap() > 1);
    assert!(srv.plain_config().get("BUCKET").is_none());
    let err = fails(&srv.run(&["-a", APP, "config", "get", "BUCKET"]));
    assert!(err.contains("BUCKET is not set"), "{err}");

    let err = fails(&srv.run(&["-a", APP, "config", "set", "novalue-secret"]));
    assert!(
        err.contains("KEY=VALUE") && !err.contains("novalue-secret"),
        "{err}"
    );
}

#[test]
fn maintenance_and_heroku_app_from_env() {
    let srv = serve(&state());
    let status = |srv: &Server| {
        ok(&srv
            .cli(&["maintenance", "status"])
            .env("HEROKU_APP", APP)
            .output()
            .unwrap())
    };
    assert_eq!(status(&srv), "off\n");
    ok(&srv.run(&["-a", APP, "maintenance", "on"]));
    assert_eq!(status(&srv), "on\n");
    let json: Value =
        serde_json::from_str(&ok(&srv.run(&["-a", APP, "maintenance", "off", "--json"]))).unwrap();
    assert_eq!(json["maintenance"], false);
    assert_eq!(srv.control("state")["apps"][0]["maintenance"], false);
}

#[test]
fn addons_lists_postgres_and_every_attachment_name() {
    let srv = serve(&state());
    let text = ok(&srv.run(&["-a", APP, "addons"]));
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("postgresql-rigid-71273"),
        "DATABASE first: {text}"
    );
    for needle in [
        "as DATABASE",
        "DATABASE_URL",
        "as HEROKU_POSTGRESQL_YELLOW",
        "postgresql-new-2",
    ] {
        assert!(text.contains(needle), "{needle} missing: {text}");
    }
    assert!(
        !text.contains("redis") && !text.contains("password"),
        "{text}"
    );
    let json: Value =
        serde_json::from_str(&ok(&srv.run(&["-a", APP, "addons", "--json"]))).unwrap();
    let addons = json["addons"].as_array().unwrap();
    assert_eq!(addons.len(), 2);
    let names: Vec<&str> = addons[0]["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["DATABASE", "HEROKU_POSTGRESQL_YELLOW"]);
}

#[test]
fn cutover_then_rollback_with_the_cli() {
    let srv = serve(&state());
    let text = ok(&srv.run(&[
        "-a",
        APP,
        "attach",
        "postgresql-rigid-71273",
        "--as",
        "HEROKU_POSTGRES_DB",
    ]));
    assert!(text.contains("HEROKU_POSTGRES_DB_URL"), "{text}");
    let err = fails(&srv.run_stdin(&["-a", APP, "config", "set", "DATABASE_URL=-"], RDS_URL));
    assert!(
        err.contains("detach DATABASE"),
        "says to detach first: {err}"
    );
    assert!(!err.contains("rds-db-password"), "{err}");
    ok(&srv.run(&["-a", APP, "detach", "DATABASE"]));
    ok(&srv.run_stdin(&["-a", APP, "config", "set", "DATABASE_URL=-"], RDS_URL));
    assert_eq!(
        ok(&srv.run(&["-a", APP, "config", "get", "DATABASE_URL"])).trim_end(),
        RDS_URL
    );

    let text = ok(&srv.run(&["-a", APP, "promote", "postgresql-rigid-71273"]));
    assert!(text.contains("promoted postgresql-rigid-71273"), "{text}");
    assert_eq!(
        ok(&srv.run(&["-a", APP, "config", "get", "DATABASE_URL"])).trim_end(),
        OLD_URL
    );
    let json: Value = serde_json::from_str(&ok(&srv.run(&[
        "-a",
        APP,
        "promote",
        "postgresql-rigid-71273",
        "--json",
    ])))
    .unwrap();
    assert_eq!(json["already_promoted"], true);
}

#[test]
fn attach_name_taken_needs_confirm() {
    let srv = serve(&state());
    let err = fails(&srv.run(&["-a", APP, "attach", "postgresql-new-2", "--as", "DATABASE"]));
    assert!(err.contains("--confirm"), "{err}");
    let json: Value = serde_json::from_str(&ok(&srv.run(&[
        "-a",
        APP,
        "attach",
        "postgresql-new-2",
        "--as",
        "DATABASE",
        "--confirm",
        "--json",
    ])))
    .unwrap();
    assert_eq!(json["addon"], "postgresql-new-2");
    assert_eq!(json["config_var"], "DATABASE_URL");
    assert_eq!(
        ok(&srv.run(&["-a", APP, "config", "get", "DATABASE_URL"])).trim_end(),
        "postgres://n:new-db-password@h2:5432/d2"
    );
}

#[test]
fn errors_are_clear_and_exit_2() {
    let srv = serve(&state());
    let err = fails(
        &srv.cli(&["-a", APP, "addons"])
            .env("HEROKU_API_KEY", "wrong-token-77")
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("rejected the API token") && !err.contains("wrong-token-77"),
        "{err}"
    );
    let err = fails(&srv.run(&["-a", "no-such-app", "maintenance", "status"]));
    assert!(
        err.contains("Couldn't find that app") && err.contains("no-such-app"),
        "{err}"
    );
    let err = fails(&srv.run(&["-a", APP, "attach", "postgresql-nope-1", "--as", "X"]));
    assert!(err.contains("Couldn't find that add on"), "{err}");
    let err = fails(&srv.run(&["-a", APP, "detach", "NOPE"]));
    assert!(err.contains("attachment NOPE"), "{err}");
    let err = fails(&srv.run(&["-a", APP, "detach", "HEROKU_POSTGRESQL_RED"]));
    assert!(err.contains("last attachment"), "{err}");
    let err = fails(&srv.run(&["maintenance", "status"]));
    assert!(err.contains("HEROKU_APP"), "{err}");
    let err = fails(
        &srv.cli(&["-a", APP, "addons"])
            .env_remove("HEROKU_API_KEY")
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("HEROKU_API_KEY") && err.contains(".netrc"),
        "{err}"
    );
}

#[test]
fn emulator_binary_stops_on_sigterm_and_refuses_bad_state() {
    let mut srv = serve(&state());
    assert!(srv.url.starts_with("http://127.0.0.1:"), "{}", srv.url);
    herokurds_testkit::send_signal(&srv.child, libc::SIGTERM).unwrap();
    let status = srv.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"apps": [{"nmae": "typo"}]}"#).unwrap();
    let out = Command::new(EMULATOR)
        .args(["--state"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = fails(&out);
    assert!(err.contains("nmae"), "{err}");
    let out = Command::new(EMULATOR)
        .args(["--state"])
        .arg(Path::new("/nonexistent/state.json"))
        .output()
        .unwrap();
    assert!(fails(&out).contains("/nonexistent/state.json"));
}

/// A crash must not write secrets held in memory to a core file. The
/// emulator is started with core dumps allowed (soft limit raised to the
/// hard one, unlimited here); once it listens, both limits must be 0.
#[test]
fn binaries_turn_core_dumps_off_at_start() {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(r#"ulimit -S -c "$(ulimit -H -c)" && exec "$0" "$@""#)
        .arg(EMULATOR);
    let server = serve_with(sh, &state());
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap_or_else(|| panic!("no core line in {limits}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[4..6], ["0", "0"], "{line}");
}

/// The emulator has no real authentication: listening beyond loopback
/// needs --allow-remote, and the refusal says why.
#[test]
fn emulator_binary_refuses_a_non_loopback_listen_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, state()).unwrap();
    let mut child = Command::new(EMULATOR)
        .args(["--listen", "0.0.0.0:0", "--state"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Before the fix it listened and served until killed: do not hang.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("it listened on 0.0.0.0 instead of refusing: {out:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "it never listened: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for part in [
        "refusing to listen on 0.0.0.0:0",
        "no real authentication",
        "--allow-remote",
    ] {
        assert!(stderr.contains(part), "{part:?} not in {stderr}");
    }
}
