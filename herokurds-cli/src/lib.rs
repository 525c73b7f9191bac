//! Shared glue for the herokurds binaries: logging, exit codes, output.
//!
//! Each binary in `src/bin/` parses its flags, builds library objects, calls
//! one library function and renders the result with the helpers here.
//! Exit codes are the same everywhere: 0 success, 1 a check found a
//! difference, 2 an error.

pub mod confirm;
pub mod demo;
pub mod heroku_input;
pub mod heroku_render;
pub mod runbook_render;
pub mod s3_render;
pub mod transfer_render;
pub mod url_render;
pub mod verify_render;

use std::io::{self, Write};
use std::process::ExitCode;

/// Everything went as asked.
pub const EXIT_OK: u8 = 0;
/// A check ran and found a difference (verify, plan drift).
pub const EXIT_DIFFERENT: u8 = 1;
/// An error stopped the command.
pub const EXIT_ERROR: u8 = 2;

/// Turns core dumps off for this process and the tools it starts
/// (`RLIMIT_CORE` 0, soft and hard): a crash must not write the passwords,
/// tokens and config values in memory to a core file. Every binary calls
/// it first thing in `main`.
pub fn disable_core_dumps() {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        let e = io::Error::last_os_error();
        let _ = writeln!(io::stderr(), "warning: cannot turn core dumps off: {e}");
    }
}

/// Sets up `tracing` on stderr, filtered by `RUST_LOG` (default `warn`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_target(false)
        .try_init();
}

/// Prints an error chain on stderr as `error: outer: inner` and returns the error exit code.
pub fn report_error(err: &anyhow::Error) -> ExitCode {
    let mut msg = format!("error: {err}");
    for cause in err.chain().skip(1) {
        msg.push_str(&format!("\n  caused by: {cause}"));
    }
    let _ = writeln!(io::stderr(), "{msg}");
    ExitCode::from(EXIT_ERROR)
}

/// Cancels `token` on the first SIGINT (Ctrl-C), SIGTERM or SIGHUP (the
/// terminal or SSH session closed), after printing `message` on stderr, so
/// the library stops cleanly and leaves a resumable state instead of
/// dying mid-step. Must be called inside a Tokio runtime.
pub fn cancel_on_signals(token: tokio_util::sync::CancellationToken, message: &'static str) {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    fn watch(kind: SignalKind) -> Option<Signal> {
        signal(kind)
            .map_err(|e| tracing::warn!("cannot watch signal {kind:?}: {e}"))
            .ok()
    }
    async fn next(s: &mut Option<Signal>) {
        let delivered = match s {
            Some(s) => s.recv().await.is_some(),
            None => false,
        };
        if !delivered {
            std::future::pending::<()>().await;
        }
    }
    let mut int = watch(SignalKind::interrupt());
    let mut term = watch(SignalKind::terminate());
    let mut hup = watch(SignalKind::hangup());
    tokio::spawn(async move {
        tokio::select! {
            _ = next(&mut int) => {}
            _ = next(&mut term) => {}
            _ = next(&mut hup) => {}
        }
        // stderr may be gone with the terminal: ignore write errors.
        let _ = writeln!(io::stderr(), "\n{message}");
        token.cancel();
    });
}

/// Writes a line to stdout; a closed pipe (`| head`) is not an error.
pub fn println_safe(line: impl AsRef<str>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match writeln!(out, "{}", line.as_ref()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Serialises `value` as one line of JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println_safe(serde_json::to_string(value)?)?;
    Ok(())
}
