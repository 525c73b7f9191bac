//! `herokurds-heroku-emulator`: the Heroku Platform API emulator as a server.
//!
//! Prints `listening on http://ADDR` once it accepts requests, then serves
//! until SIGINT or SIGTERM. Point Heroku's CLI at it with
//! `HEROKU_HOST=http://ADDR HEROKU_API_KEY=<a token of the state file>`,
//! and herokurds with `HEROKU_API_URL=http://ADDR`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use herokurds_testkit::emulator::{Emulator, Seed};
use tokio::signal::unix::{signal, SignalKind};

/// Serve a stateful emulator of the Heroku Platform API on a loopback port.
///
/// It stays local: a non-loopback --listen is refused, and requests whose Host
/// header is not localhost or a loopback address get 403 (a DNS-rebinding
/// defence), unless --allow-remote.
///
/// The state file is JSON:
/// {"tokens": ["tok"], "apps": [{"name": "micromasters-ci", "maintenance": false,
///   "config_vars": {"SECRET_KEY": "x"}, "formation": {"web": 1, "worker": 1},
///   "addons": [{"name": "postgresql-rigid-71273", "service": "heroku-postgresql",
///     "plan": "heroku-postgresql:mini", "url": "postgres://u:p@host:5432/db",
///     "attachments": ["DATABASE", "HEROKU_POSTGRESQL_YELLOW"]}]}]}
///
/// Control API (no token): POST /__emulator/faults {"status":503,"count":2} or
/// {"latency_ms":200}; DELETE /__emulator/faults; POST /__emulator/rate-limit
/// {"remaining":N}; GET /__emulator/state; GET /__emulator/requests.
#[derive(Parser)]
#[command(
    version,
    verbatim_doc_comment,
    after_help = "Example:
  herokurds-heroku-emulator --state state.json --save &
  HEROKU_API_URL=http://127.0.0.1:PORT HEROKU_API_KEY=tok herokurds-heroku -a micromasters-ci addons

Exit status: 0 stopped by SIGINT or SIGTERM; 2 an error (the state file, the address)."
)]
struct Args {
    /// Address to listen on; port 0 picks a free one. A loopback address
    /// unless --allow-remote.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Listen on a non-loopback address and answer any Host header. The
    /// emulator has no real authentication: anyone who reaches it can read
    /// every token and database URL of the state. Trusted networks only.
    #[arg(long)]
    allow_remote: bool,
    /// The state file (JSON, see above).
    #[arg(long)]
    state: PathBuf,
    /// Write the state back to the state file after every change (mode 0600).
    #[arg(long)]
    save: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    herokurds_cli::disable_core_dumps();
    herokurds_cli::init_tracing();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => herokurds_cli::report_error(&e),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let seed = Seed::from_file(&args.state)?;
    let emulator = if args.allow_remote {
        eprintln!(
            "warning: --allow-remote: anyone who can reach {} can read and change every \
             token and database URL of the state",
            args.listen
        );
        Emulator::start_allowing_remote(args.listen, seed).await?
    } else {
        Emulator::start_on(args.listen, seed).await?
    };
    if args.save {
        emulator.save_state_to(Some(args.state.clone()));
    }
    // Watch the signals before saying we are ready: a SIGTERM right after
    // the line must stop the server cleanly, not kill it.
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    herokurds_cli::println_safe(format!("listening on {}", emulator.url()))?;
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    emulator.shutdown().await;
    Ok(())
}
