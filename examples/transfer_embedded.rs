//! Embedding the transfer: a program with its own progress handling.
//!
//! The library never prints; this program decides what to show. It keeps
//! a running tally of finished tables, logs retries, and prints one line
//! per phase, then a summary — the kind of thing a deploy bot or a web
//! dashboard would do with the same events.
//!
//! Run against two databases (URLs in the environment, not argv):
//! ```sh
//! SOURCE_DATABASE_URL=postgres://... TARGET_DATABASE_URL=postgres://... \
//!   cargo run --example transfer_embedded
//! ```
//! Without them, it starts two throwaway sandbox clusters, loads a small
//! schema and copies it (needs the PostgreSQL server binaries).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herokurds::progress::Progress;
use herokurds::transfer::{self, RetryPolicy, TransferEvent, TransferOptions};
use herokurds::url::DatabaseUrl;
use tokio_util::sync::CancellationToken;

/// Counts what finished and says so, tersely.
#[derive(Default)]
struct Dashboard {
    tables: AtomicU64,
    bytes: AtomicU64,
}

impl Progress<TransferEvent> for Dashboard {
    fn event(&self, event: &TransferEvent) {
        match event {
            TransferEvent::PreflightPassed {
                tables,
                estimated_bytes,
                ..
            } => println!(
                "[plan] {tables} tables, ~{} MB",
                estimated_bytes / 1_000_000
            ),
            TransferEvent::PhaseFinished { phase, seconds } => {
                println!("[phase] {phase:?} done in {seconds:.1} s")
            }
            TransferEvent::TableFinished {
                table,
                slice: None,
                rows,
                bytes,
                ..
            } => {
                let n = self.tables.fetch_add(1, Ordering::Relaxed) + 1;
                let total = self.bytes.fetch_add(*bytes, Ordering::Relaxed) + bytes;
                println!(
                    "[data] #{n} {table}: {rows} rows ({} MB so far)",
                    total / 1_000_000
                );
            }
            TransferEvent::Retrying {
                item,
                attempt,
                error,
                ..
            } => {
                eprintln!("[retry] {item}, attempt {attempt}: {error}")
            }
            _ => {}
        }
    }
}

async fn from_env() -> Option<(DatabaseUrl, DatabaseUrl)> {
    let s = std::env::var("SOURCE_DATABASE_URL").ok()?;
    let t = std::env::var("TARGET_DATABASE_URL").ok()?;
    Some((s.parse().ok()?, t.parse().ok()?))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    use herokurds_testkit::{LocalPostgres, PostgresOptions};
    use secrecy::ExposeSecret;

    let mut sandboxes = None;
    let (source, target) = match from_env().await {
        Some(urls) => urls,
        None => {
            let src = LocalPostgres::start(PostgresOptions::heroku()).await?;
            let tgt = LocalPostgres::start(PostgresOptions::rds()).await?;
            src.owner_client().await?.batch_execute(
                "CREATE TABLE authors (id serial PRIMARY KEY, name text NOT NULL);
                 CREATE TABLE posts (id serial PRIMARY KEY, author int REFERENCES authors, body jsonb);
                 INSERT INTO authors (name) SELECT 'author ' || i FROM generate_series(1, 1000) i;
                 INSERT INTO posts (author, body)
                 SELECT 1 + i % 1000, jsonb_build_object('n', i) FROM generate_series(1, 50000) i;",
            ).await?;
            let urls = (
                src.url().expose_secret().parse()?,
                tgt.url().expose_secret().parse()?,
            );
            sandboxes = Some((src, tgt));
            urls
        }
    };
    let work = tempfile::tempdir()?;
    let opts = TransferOptions::new()
        .jobs(2)
        .work_dir(work.path())
        .retry(RetryPolicy::new(
            3,
            Duration::from_millis(500),
            Duration::from_secs(5),
        ));
    let preflight = transfer::preflight(&source, &target, &opts).await?;
    if !preflight.is_ok() {
        for p in &preflight.problems {
            eprintln!("cannot start: {p}");
        }
        std::process::exit(2);
    }
    let dashboard = Dashboard::default();
    let report = transfer::run(
        &source,
        &target,
        &opts,
        &dashboard,
        CancellationToken::new(),
    )
    .await?;
    println!(
        "[done] {} rows, {:.1} MB/s, snapshot {} (source WAL {})",
        report.rows(),
        report.mb_per_second(),
        report.snapshot.id,
        report.snapshot.lsn.as_deref().unwrap_or("?")
    );
    drop(sandboxes);
    Ok(())
}
