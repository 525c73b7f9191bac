//! `herokurds-s3-sync` against `aws s3 sync` on the same S3 server, for
//! each of two servers: moto and s3s-fs.
//!
//! Both tools run as processes, as a user would run them, against one
//! server: a first sync of N small objects into an empty bucket, then an
//! up-to-date re-sync (nothing to copy). Each round uses fresh destination
//! buckets and alternates which tool goes first; medians are reported. For
//! every run the bench also records the client's CPU time and peak RSS
//! (`/usr/bin/time`) and the server's CPU time (`/proc`), which shows where
//! the time goes: moto serves one request at a time (Python), so its CPU
//! time is a floor no client can go under there; s3s-fs (Rust, one thread
//! per core) leaves the difference to the clients. Last, peak RSS of
//! `herokurds-s3-sync` on a large bucket (on the last server) shows that
//! memory does not grow with the number of keys.
//!
//! ```text
//! cargo build --release -p herokurds-cli --bin herokurds-s3-sync
//! cargo bench --bench s3_sync -- [--servers "moto s3s-fs"] [--objects 2000] [--rounds 3] [--rss-keys 100000] [--concurrency N]
//! ```
//! Needs `aws` (`$HEROKURDS_AWS_CLI`, default `.venv/bin/aws`, installed by
//! `scripts/test`), moto and s3s-fs (both installed by `scripts/test`).
//! `--rss-keys 0` skips the memory part, which spends most of its time
//! seeding the server (about 3 ms per PutObject on moto).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use herokurds_testkit::moto::MotoServer;
use herokurds_testkit::s3s_fs::S3sFsServer;
use herokurds_testkit::LocalS3;

struct Config {
    /// Which servers, in order (`moto`, `s3s-fs`).
    servers: Vec<String>,
    objects: usize,
    rounds: usize,
    rss_keys: usize,
    /// `--concurrency` for herokurds-s3-sync (default: its own, 64).
    concurrency: Option<usize>,
}

fn parse_args() -> Config {
    let mut config = Config {
        servers: vec!["moto".into(), "s3s-fs".into()],
        objects: 2000,
        rounds: 3,
        rss_keys: 100_000,
        concurrency: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{arg} needs a number"))
        };
        match arg.as_str() {
            "--objects" => config.objects = value(),
            "--rounds" => config.rounds = value().max(1),
            "--rss-keys" => config.rss_keys = value(),
            "--concurrency" => config.concurrency = Some(value()),
            "--servers" => {
                config.servers = args
                    .next()
                    .expect("--servers needs a list")
                    .split_whitespace()
                    .map(String::from)
                    .collect()
            }
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    config
}

fn herokurds_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HEROKURDS_S3_SYNC_BIN") {
        return p.into();
    }
    // target/release/deps/s3_sync-HASH -> target/release/herokurds-s3-sync
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("herokurds-s3-sync"))
        .expect("a target directory");
    assert!(
        bin.exists(),
        "{} is missing: cargo build --release -p herokurds-cli --bin herokurds-s3-sync",
        bin.display()
    );
    bin
}

fn aws_bin() -> PathBuf {
    let bin = std::env::var_os("HEROKURDS_AWS_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/aws"));
    assert!(
        bin.exists(),
        "{} is missing: run scripts/test (it installs awscli into .venv)",
        bin.display()
    );
    bin
}

/// What one run of a tool cost.
#[derive(Clone, Copy, Default)]
struct Run {
    /// Wall-clock seconds.
    wall: f64,
    /// The tool's user + system CPU seconds.
    client_cpu: f64,
    /// The S3 server's CPU seconds during the run.
    server_cpu: f64,
    /// The tool's peak resident set, KiB.
    rss_kib: u64,
}

/// CPU seconds used so far by every process in a process group.
fn group_cpu(pgid: u32) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command name: state ppid pgrp ...
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) != Some(pgid) {
            continue;
        }
        let (utime, stime) = (fields[11], fields[12]);
        total +=
            (utime.parse::<f64>().unwrap_or(0.0) + stime.parse::<f64>().unwrap_or(0.0)) / ticks;
    }
    total
}

/// Runs a tool under `/usr/bin/time` with the server's environment.
fn measure(server: &impl LocalS3, program: &Path, args: &[String]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("time");
    let server_before = group_cpu(server.process_group());
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%e %U %S %M", "-o"])
        .arg(&report)
        .arg(program)
        .args(args)
        .envs(server.env_vars())
        .stdin(Stdio::null())
        .output()
        .expect("/usr/bin/time runs");
    let server_cpu = group_cpu(server.process_group()) - server_before;
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&report).unwrap();
    let f: Vec<f64> = text
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    assert_eq!(f.len(), 4, "unexpected /usr/bin/time output {text:?}");
    Run {
        wall: f[0],
        client_cpu: f[1] + f[2],
        server_cpu,
        rss_kib: f[3] as u64,
    }
}

fn median(runs: &[Run], metric: fn(&Run) -> f64) -> f64 {
    let mut v: Vec<f64> = runs.iter().map(metric).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn seed(server: &impl LocalS3, bucket: &str, n: usize) {
    let started = std::time::Instant::now();
    server.create_bucket(bucket).await.unwrap();
    let objects = (0..n).map(|i| {
        (
            format!("media/{:03}/object-{i:06}.txt", i % 100),
            format!("object {i} {}", "x".repeat(64)).into_bytes(),
        )
    });
    server.put_objects(bucket, objects, 8).await.unwrap();
    eprintln!(
        "seeded s3://{bucket} with {n} objects in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn show(tool: &str, what: &str, runs: &[Run]) -> f64 {
    let wall = median(runs, |r| r.wall);
    println!(
        "  {what:11} {tool:17} wall {wall:6.2} s   client CPU {:5.2} s   server CPU {:5.2} s   peak RSS {:6.0} KiB",
        median(runs, |r| r.client_cpu),
        median(runs, |r| r.server_cpu),
        median(runs, |r| r.rss_kib as f64),
    );
    wall
}

#[tokio::main]
async fn main() {
    let config = parse_args();
    let herokurds = herokurds_bin();
    let aws = aws_bin();
    for (i, name) in config.servers.iter().enumerate() {
        let last = i + 1 == config.servers.len();
        let rss_keys = if last { config.rss_keys } else { 0 };
        match name.as_str() {
            "moto" => {
                let server = MotoServer::start().unwrap_or_else(|e| panic!("{e}"));
                bench_server(&server, &config, rss_keys, &herokurds, &aws).await
            }
            "s3s-fs" => {
                let server = S3sFsServer::start().unwrap_or_else(|e| panic!("{e}"));
                bench_server(&server, &config, rss_keys, &herokurds, &aws).await
            }
            other => panic!("unknown server {other}: moto or s3s-fs"),
        }
    }
}

/// The comparison on one server, then (`rss_keys` > 0) the memory part.
async fn bench_server(
    server: &impl LocalS3,
    config: &Config,
    rss_keys: usize,
    herokurds: &Path,
    aws: &Path,
) {
    eprintln!("== {} at {}", server.server_name(), server.endpoint_url());
    let endpoint = server.endpoint_url();
    seed(server, "bench-src", config.objects).await;

    let ours = |src: &str, dst: &str| -> Vec<String> {
        let mut args = vec![
            format!("s3://{src}"),
            format!("s3://{dst}"),
            "--no-progress".into(),
            "--json".into(),
        ];
        if let Some(n) = config.concurrency {
            args.extend(["--concurrency".into(), n.to_string()]);
        }
        args
    };
    let theirs = |dst: &str| -> Vec<String> {
        [
            "s3",
            "sync",
            "s3://bench-src",
            &format!("s3://{dst}"),
            "--endpoint-url",
            &endpoint,
            "--only-show-errors",
        ]
        .map(String::from)
        .to_vec()
    };

    let mut runs: [Vec<Run>; 4] = Default::default(); // ours first, ours again, aws first, aws again
    for round in 0..config.rounds {
        let (h_dst, a_dst) = (format!("bench-h{round}"), format!("bench-a{round}"));
        server.create_bucket(&h_dst).await.unwrap();
        server.create_bucket(&a_dst).await.unwrap();
        let run_ours = || {
            let args = ours("bench-src", &h_dst);
            [
                measure(server, herokurds, &args),
                measure(server, herokurds, &args),
            ]
        };
        let run_theirs = || {
            let args = theirs(&a_dst);
            [measure(server, aws, &args), measure(server, aws, &args)]
        };
        let (h, a) = if round % 2 == 0 {
            let h = run_ours();
            (h, run_theirs())
        } else {
            let a = run_theirs();
            (run_ours(), a)
        };
        for (bucket, tool) in [(&h_dst, "herokurds"), (&a_dst, "aws")] {
            let n = server.keys(bucket).await.unwrap().len();
            assert_eq!(n, config.objects, "{tool} left {n} keys in {bucket}");
        }
        eprintln!(
            "round {round}: herokurds {:.2} s / {:.2} s, aws {:.2} s / {:.2} s (first / re-sync)",
            h[0].wall, h[1].wall, a[0].wall, a[1].wall
        );
        for (i, run) in h.into_iter().chain(a).enumerate() {
            runs[i].push(run);
        }
    }
    println!(
        "{}: {} objects, medians of {} rounds:",
        server.server_name(),
        config.objects,
        config.rounds
    );
    let hf = show("herokurds-s3-sync", "first sync", &runs[0]);
    let af = show("aws s3 sync", "first sync", &runs[2]);
    let ha = show("herokurds-s3-sync", "re-sync", &runs[1]);
    let aa = show("aws s3 sync", "re-sync", &runs[3]);
    println!(
        "  ratio (aws / herokurds wall): first sync {:.1}x, re-sync {:.1}x",
        af / hf,
        aa / ha
    );

    if rss_keys == 0 {
        return;
    }
    seed(server, "bench-big", rss_keys).await;
    server.create_bucket("bench-big-dst").await.unwrap();
    let args = ours("bench-big", "bench-big-dst");
    let first = measure(server, herokurds, &args);
    let again = measure(server, herokurds, &args);
    assert_eq!(server.keys("bench-big-dst").await.unwrap().len(), rss_keys);
    println!("{}: {rss_keys} objects:", server.server_name());
    show("herokurds-s3-sync", "first sync", &[first]);
    show("herokurds-s3-sync", "re-sync", &[again]);
}
