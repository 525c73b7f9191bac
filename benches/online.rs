//! Online mode under load: the maintenance window of a real
//! `herokurds run` with `[transfer] mode = "online"` while pgbench writes
//! to the source, at one or more sizes, and what change capture costs the
//! app's writes.
//!
//! For each pgbench scale (15 MB of data per unit of scale; 60 is about
//! 1 GB):
//! 1. loads `pgbench -i -s SCALE` into a Heroku-like source (TLS, scram,
//!    tables owned by the non-superuser `heroku_owner`, fsync on);
//! 2. **capture overhead**: pgbench tpcb-like (`-c 4 -j 2`, SECONDS long)
//!    without capture, then with capture installed
//!    ([`herokurds::transfer::online::install_capture`]), then removes it;
//!    prints both TPS and the ratio;
//! 3. **online run**: `herokurds run` (the release binary) against the
//!    Heroku emulator, while pgbench writes at RATE transactions per second
//!    until maintenance has been on for a second (the app's in-flight
//!    requests); prints the window (the report's `downtime_seconds`), the
//!    online copy's and the catch-up's durations, and checks that the
//!    target holds what the source holds (row counts and balance sums of
//!    every pgbench table) and that no capture object is left on the source;
//! 4. **rollback window**: the app (pgbench, RATE tps for SECONDS/2) then
//!    one statement change 1% of `pgbench_accounts` on RDS; `herokurds
//!    rollback` (release binary) copies them back to Heroku; prints the
//!    rollback's window (maintenance on to off, polled every 50 ms from the
//!    emulator) and the rows copied back, and checks that Heroku holds
//!    what RDS holds, that the app is back on Heroku, and that no capture
//!    object is left on either side.
//!
//! ```text
//! cargo build --release -p herokurds-cli
//! cargo bench --bench online -- [--scales "60 180"] [--seconds 20] [--rate 150] [--jobs 2]
//! ```

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use herokurds::progress::NoProgress;
use herokurds::transfer::online;
use herokurds::transfer::TransferOptions;
use herokurds_testkit::emulator::{Emulator, Seed, SeedAddon, SeedApp};
use herokurds_testkit::{LocalPostgres, PostgresOptions};
use secrecy::ExposeSecret;

mod common;
use common::{pg_options, release_bin};

struct Config {
    scales: Vec<u64>,
    seconds: u64,
    rate: u64,
    jobs: usize,
}

fn parse_args() -> Config {
    let mut c = Config {
        scales: vec![60],
        seconds: 20,
        rate: 150,
        jobs: 2,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--scales" => {
                c.scales = value()
                    .split_whitespace()
                    .map(|s| s.parse().expect("--scales: numbers"))
                    .collect()
            }
            "--seconds" => c.seconds = value().parse().expect("--seconds: a number"),
            "--rate" => c.rate = value().parse().expect("--rate: a number"),
            "--jobs" => c.jobs = value().parse().expect("--jobs: a number"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    c
}

/// pgbench against `pg`, the password in its environment.
fn pgbench(pg: &LocalPostgres) -> Command {
    let mut c = Command::new(pg.bin_dir().join("pgbench"));
    c.env("PGPASSWORD", pg.password().expose_secret())
        .env("PGSSLMODE", "require")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port().to_string())
        .env("PGUSER", pg.owner())
        .env("PGDATABASE", pg.database());
    c
}

/// Runs pgbench tpcb-like for `seconds`; its TPS.
fn tps(pg: &LocalPostgres, seconds: u64) -> f64 {
    let out = pgbench(pg)
        .args(["-n", "-c", "4", "-j", "2", "-T", &seconds.to_string()])
        .output()
        .expect("pgbench");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no tps in pgbench output: {text}"))
}

/// The app: pgbench's tpcb-like writes, 2 clients, paced at `rate`
/// transactions per second for `seconds`.
fn app_load(pg: &LocalPostgres, seconds: u64, rate: u64) -> Command {
    let mut c = pgbench(pg);
    c.args(["-n", "-c", "2", "-j", "1", "-T"])
        .arg(seconds.to_string())
        .args(["-R", &rate.to_string()]);
    c
}

/// Row counts and balance sums of the pgbench tables.
async fn digest(pg: &LocalPostgres) -> Vec<(String, i64, i64)> {
    let c = pg.owner_client().await.expect("a session");
    let mut out = Vec::new();
    for (t, col) in [
        ("pgbench_accounts", "abalance"),
        ("pgbench_branches", "bbalance"),
        ("pgbench_tellers", "tbalance"),
        ("pgbench_history", "delta"),
    ] {
        let r = c
            .query_one(
                &format!("SELECT count(*), coalesce(sum({col}), 0)::int8 FROM {t}"),
                &[],
            )
            .await
            .expect("a digest");
        out.push((t.to_string(), r.get(0), r.get(1)));
    }
    out
}

struct Outcome {
    scale: u64,
    mb: f64,
    tps_without: f64,
    tps_with: f64,
    window: Option<f64>,
    estimate: Option<f64>,
    copy: Option<f64>,
    catch_up: Option<f64>,
    rollback_window: Option<f64>,
    rows_back: Option<u64>,
    same: bool,
    note: String,
}

async fn one_scale(scale: u64, c: &Config) -> Outcome {
    let (src, tgt) = tokio::join!(
        LocalPostgres::start(pg_options(PostgresOptions::heroku())),
        LocalPostgres::start(pg_options(PostgresOptions::rds()))
    );
    let (src, tgt) = (src.expect("source cluster"), tgt.expect("target cluster"));
    let started = Instant::now();
    let status = pgbench(&src)
        .args(["-i", "-q", "-s", &scale.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("pgbench -i");
    assert!(status.success(), "pgbench -i failed");
    let mb: f64 = src
        .owner_client()
        .await
        .unwrap()
        .query_one(
            "SELECT pg_database_size(current_database())::float8 / 1048576",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    eprintln!(
        "scale {scale}: {mb:.0} MB loaded in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // Capture overhead.
    let url: herokurds::url::DatabaseUrl = src.url().expose_secret().parse().unwrap();
    let tps_without = tps(&src, c.seconds);
    let opts = TransferOptions::new();
    online::install_capture(&url, &opts, &NoProgress)
        .await
        .expect("installing capture");
    let tps_with = tps(&src, c.seconds);
    online::remove_capture(&url)
        .await
        .expect("removing capture");
    eprintln!("scale {scale}: tpcb-like {tps_without:.0} tps without capture, {tps_with:.0} with");

    // The online run under a steady load.
    let (app, token) = ("bench-app", "bench-token");
    let seed = Seed::new().token(token).app(SeedApp {
        name: app.into(),
        addons: vec![SeedAddon::postgres(
            "postgresql-bench-1",
            src.url().expose_secret().to_string(),
        )
        .attach("DATABASE")],
        ..SeedApp::default()
    });
    let heroku = Emulator::start(seed).await.expect("the Heroku emulator");
    let work = tempfile::tempdir().expect("a work dir");
    let plan = work.path().join("plan.toml");
    std::fs::write(
        &plan,
        format!(
            "work_dir = \"{}\"\n\n[heroku]\napp = \"{app}\"\n\n[target]\nurl_env = \"BENCH_TARGET_URL\"\n\n\
             [transfer]\njobs = {}\nmode = \"online\"\n\n[maintenance]\nsettle = \"1s\"\n",
            work.path().join("state").display(),
            c.jobs
        ),
    )
    .expect("plan file");
    let mut load = app_load(&src, 100_000, c.rate)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pgbench load");
    let herokurds = |command: &str| {
        let mut c = Command::new(release_bin("herokurds"));
        c.args([command, "--json", "--config"])
            .arg(&plan)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", work.path())
            .env("HEROKU_API_URL", heroku.url())
            .env("HEROKU_API_KEY", token)
            .env("BENCH_TARGET_URL", tgt.url().expose_secret())
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    // What the estimate is made of, measured under the same load.
    let planned = herokurds("plan").output().expect("herokurds plan");
    let estimate_parts = String::from_utf8_lossy(&planned.stdout)
        .lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()?
                .get("estimate")
                .cloned()
        })
        .filter(|e| !e.is_null());
    let log = work.path().join("run.log");
    let mut run = herokurds("run");
    run.arg("--yes")
        .stdout(std::fs::File::create(&log).expect("log"));
    let mut child = run.spawn().expect("herokurds run");
    // The app's web traffic stops a second after maintenance goes on.
    let mut on_since: Option<Instant> = None;
    let code = loop {
        if let Some(status) = child.try_wait().expect("waiting for herokurds") {
            break status.code();
        }
        if heroku.maintenance(app) == Some(true) {
            let since = *on_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(1) {
                let _ = load.kill();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = load.kill();
    let _ = load.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let report = text.lines().rev().find_map(|l| {
        serde_json::from_str::<serde_json::Value>(l)
            .ok()
            .filter(|v| v.get("downtime_seconds").is_some())
    });
    let step = |title: &str| {
        report.as_ref().and_then(|r| {
            r["steps"].as_array()?.iter().find_map(|s| {
                (s["title"].as_str()? == title)
                    .then(|| s["seconds"].as_f64())
                    .flatten()
            })
        })
    };
    // The window, step by step: the runbook's steps from maintenance on to
    // off, and the online window's own steps (its `window_step` events).
    let mut window_steps = Vec::new();
    if let Some(steps) = report.as_ref().and_then(|r| r["steps"].as_array()) {
        let titles: Vec<(&str, f64)> = steps
            .iter()
            .filter_map(|s| Some((s["title"].as_str()?, s["seconds"].as_f64()?)))
            .collect();
        let on = titles
            .iter()
            .position(|(t, _)| t.starts_with("maintenance on"));
        let off = titles
            .iter()
            .position(|(t, _)| t.starts_with("maintenance off"));
        if let (Some(on), Some(off)) = (on, off) {
            for (t, s) in &titles[on..=off] {
                window_steps.push(format!("{t}: {s:.2} s"));
            }
        }
    }
    for l in text.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
            if let (Some("window_step"), Some(step), Some(s)) = (
                v["event"].as_str(),
                v["step"].as_str(),
                v["seconds"].as_f64(),
            ) {
                window_steps.push(format!("  online window: {step}: {s:.2} s"));
            }
        }
    }
    eprintln!(
        "scale {scale}: the plan's estimate: {}\nscale {scale}: the window's steps:\n  {}",
        estimate_parts.map_or("-".into(), |e| e.to_string()),
        window_steps.join("\n  ")
    );
    let (a, b) = (digest(&src).await, digest(&tgt).await);
    let leftovers = online::capture_leftovers(&url).await.unwrap_or_default();
    let same = code == Some(0) && a == b && leftovers.is_empty();

    // The app runs on RDS for a while, then 1% of the accounts change
    // there; the rollback copies them back.
    let rds_url: herokurds::url::DatabaseUrl = tgt.url().expose_secret().parse().unwrap();
    let on_rds = online::capture_leftovers(&rds_url)
        .await
        .unwrap_or_default();
    let status = app_load(&tgt, (c.seconds / 2).max(1), c.rate)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("pgbench on RDS");
    assert!(status.success(), "pgbench on RDS failed");
    tgt.owner_client()
        .await
        .unwrap()
        .batch_execute("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 0")
        .await
        .expect("1% of the accounts changed on RDS");
    let back_log = work.path().join("rollback.log");
    let mut child = herokurds("rollback")
        .arg("--yes")
        .stdout(std::fs::File::create(&back_log).expect("log"))
        .spawn()
        .expect("herokurds rollback");
    let (mut on, mut off) = (None, None);
    let back_code = loop {
        let status = child.try_wait().expect("waiting for herokurds");
        match (heroku.maintenance(app), on) {
            (Some(true), None) => on = Some(Instant::now()),
            (Some(false), Some(_)) if off.is_none() => off = Some(Instant::now()),
            _ => {}
        }
        if let Some(status) = status {
            break status.code();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let back_text = std::fs::read_to_string(&back_log).unwrap_or_default();
    let replayed = back_text.lines().rev().find_map(|l| {
        serde_json::from_str::<serde_json::Value>(l)
            .ok()
            .and_then(|v| v.get("replayed").cloned())
    });
    // Where the rollback's time went: its replay steps, and the rest.
    let mut steps: Vec<String> = back_text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "window_step" || v["event"] == "settling")
        .filter_map(|v| match v["event"].as_str()? {
            "window_step" => Some(format!(
                "{} {:.2} s",
                v["step"].as_str()?,
                v["seconds"].as_f64()?
            )),
            _ => None,
        })
        .collect();
    if let Some(r) = &replayed {
        steps.push(format!(
            "replay {:.2} s in all",
            r["seconds"].as_f64().unwrap_or_default()
        ));
    }
    eprintln!("scale {scale}: rollback: {}", steps.join("; "));
    let (a2, b2) = (digest(&src).await, digest(&tgt).await);
    let left_src = online::capture_leftovers(&url).await.unwrap_or_default();
    let left_tgt = online::capture_leftovers(&rds_url)
        .await
        .unwrap_or_default();
    let on_heroku = heroku
        .config_vars(app)
        .and_then(|v| v.get("DATABASE_URL").cloned())
        .and_then(|u| u.parse::<herokurds::url::DatabaseUrl>().ok())
        .is_some_and(|u| u.port() == url.port());
    let rolled_back = back_code == Some(0)
        && !on_rds.is_empty()
        && a2 == b2
        && a2 != a
        && left_src.is_empty()
        && left_tgt.is_empty()
        && on_heroku;
    Outcome {
        scale,
        mb,
        tps_without,
        tps_with,
        window: report.as_ref().and_then(|r| r["downtime_seconds"].as_f64()),
        estimate: report
            .as_ref()
            .and_then(|r| r["estimated_window_seconds"].as_f64()),
        copy: step("online copy (capture on, app running)"),
        catch_up: step("catch up with the app's writes"),
        rollback_window: on.zip(off).map(|(on, off)| (off - on).as_secs_f64()),
        rows_back: replayed.as_ref().and_then(|r| r["keys"].as_u64()),
        same: same && rolled_back,
        note: match (same, rolled_back) {
            (true, true) => String::new(),
            (false, _) => format!(
                "run: exit {code:?}; source {a:?} target {b:?}; leftovers {leftovers:?}; log tail: {}",
                text.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
            ),
            (true, false) => format!(
                "rollback: exit {back_code:?}; capture on RDS after the run {on_rds:?}; Heroku {a2:?} RDS {b2:?}; \
                 leftovers {left_src:?} {left_tgt:?}; back on Heroku {on_heroku}; log tail: {}",
                back_text.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
            ),
        },
    }
}

#[tokio::main]
async fn main() {
    let c = parse_args();
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut outcomes = Vec::new();
    for &scale in &c.scales {
        outcomes.push(one_scale(scale, &c).await);
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\n== benches/online.rs: pgbench load {} tps during the run, jobs={}, {} cores; load average before {}, after {}",
        c.rate,
        c.jobs,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_before.split(' ').take(3).collect::<Vec<_>>().join(" "),
        load_after.split(' ').take(3).collect::<Vec<_>>().join(" "),
    );
    println!(
        "{:>5} {:>7} {:>10} {:>10} {:>9} {:>9} {:>10} {:>10} {:>9} {:>10} {:>9}  check",
        "scale",
        "MB",
        "tps plain",
        "tps capt.",
        "overhead",
        "window s",
        "estimate s",
        "copy s",
        "catch-up s",
        "rollback s",
        "rows back"
    );
    let show = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.1}"));
    for o in &outcomes {
        println!(
            "{:>5} {:>7.0} {:>10.0} {:>10.0} {:>8.0}% {:>9} {:>10} {:>10} {:>9} {:>10} {:>9}  {}{}",
            o.scale,
            o.mb,
            o.tps_without,
            o.tps_with,
            (1.0 - o.tps_with / o.tps_without) * 100.0,
            show(o.window),
            show(o.estimate),
            show(o.copy),
            show(o.catch_up),
            show(o.rollback_window),
            o.rows_back.map_or("-".to_string(), |n| n.to_string()),
            if o.same { "OK" } else { "FAILED" },
            if o.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", o.note)
            }
        );
    }
    if let (Some(first), Some(last)) = (outcomes.first(), outcomes.last()) {
        if let (Some(a), Some(b), true) = (first.window, last.window, outcomes.len() > 1) {
            println!(
                "window at scale {} / window at scale {} = {:.2}",
                last.scale,
                first.scale,
                b / a
            );
        }
        if let (Some(a), Some(b), true) = (
            first.rollback_window,
            last.rollback_window,
            outcomes.len() > 1,
        ) {
            println!(
                "rollback window at scale {} / at scale {} = {:.2}",
                last.scale,
                first.scale,
                b / a
            );
        }
    }
    if outcomes.iter().any(|o| !o.same) {
        std::process::exit(1);
    }
}
