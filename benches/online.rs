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
//!    every pgbench table) and that no capture object is left.
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
    let mut load = pgbench(&src)
        .args([
            "-n",
            "-c",
            "2",
            "-j",
            "1",
            "-T",
            "100000",
            "-R",
            &c.rate.to_string(),
        ])
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
        same,
        note: if same {
            String::new()
        } else {
            format!(
                "exit {code:?}; source {a:?} target {b:?}; leftovers {leftovers:?}; log tail: {}",
                text.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
            )
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
        "{:>5} {:>7} {:>10} {:>10} {:>9} {:>9} {:>10} {:>10} {:>9}  check",
        "scale",
        "MB",
        "tps plain",
        "tps capt.",
        "overhead",
        "window s",
        "estimate s",
        "copy s",
        "catch-up s"
    );
    let show = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.1}"));
    for o in &outcomes {
        println!(
            "{:>5} {:>7.0} {:>10.0} {:>10.0} {:>8.0}% {:>9} {:>10} {:>10} {:>9}  {}{}",
            o.scale,
            o.mb,
            o.tps_without,
            o.tps_with,
            (1.0 - o.tps_with / o.tps_without) * 100.0,
            show(o.window),
            show(o.estimate),
            show(o.copy),
            show(o.catch_up),
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
    }
    if outcomes.iter().any(|o| !o.same) {
        std::process::exit(1);
    }
}
