//! Shared glue for the herokurds binaries: logging, exit codes, output.
//!
//! Each binary in `src/bin/` parses its flags, builds library objects, calls
//! one library function and renders the result with the helpers here.
//! Exit codes are the same everywhere: 0 success, 1 a check found a
//! difference, 2 an error.

#[cfg(feature = "demo")]
pub mod demo;
pub mod heroku_input;
pub mod heroku_render;
pub mod init;
pub mod prompts;
pub mod runbook_render;
pub mod s3_input;
pub mod s3_render;
pub mod transfer_render;
pub mod url_input;
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

/// Sets up `tracing` on stderr: see [`init_tracing_verbose`] (verbosity 0).
pub fn init_tracing() {
    init_tracing_verbose(0);
}

/// Sets up `tracing` on stderr, filtered by `RUST_LOG` or else by
/// [`log_filter`]`(verbose)`; colour only when stderr is a terminal.
pub fn init_tracing_verbose(verbose: u8) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_filter(verbose)));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// The log filter of a verbosity (`-v` count): our warnings only, the AWS
/// SDK silent (its WARN lines are internals: the error says what failed);
/// `-v` adds our progress notes and the SDK's warnings; `-vv` everything
/// at debug level.
pub fn log_filter(verbose: u8) -> &'static str {
    match verbose {
        0 => "warn,aws=off",
        1 => "info,aws=warn",
        _ => "debug",
    }
}

/// Prints an error chain on stderr, `error: outer` then one `caused by:`
/// line per cause, and returns the error exit code. A cause whose text an
/// outer message already shows (`cannot read plan.toml: No such file or
/// directory`, then the io error itself) is not printed again.
pub fn report_error(err: &anyhow::Error) -> ExitCode {
    let _ = writeln!(io::stderr(), "{}", error_text(err));
    ExitCode::from(EXIT_ERROR)
}

/// The text [`report_error`] prints: each cause once.
pub fn error_text(err: &anyhow::Error) -> String {
    let mut msg = format!("error: {err}");
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !msg.contains(&cause) {
            msg.push_str(&format!("\n  caused by: {cause}"));
        }
    }
    msg
}

/// Parses the flags of a binary that reads SOURCE_DATABASE_URL and
/// TARGET_DATABASE_URL (or `--source`/`--target`). When a URL is missing it
/// says, instead of clap's "required arguments", which variables to set and
/// why flags are worse, and exits with [`EXIT_ERROR`].
pub fn parse_with_database_urls<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(e) if e.kind() == clap::error::ErrorKind::MissingRequiredArgument => {
            let missing = e
                .get(clap::error::ContextKind::InvalidArg)
                .map(|v| v.to_string())
                .unwrap_or_default();
            let source = missing.contains("--source");
            let target = missing.contains("--target");
            if !source && !target {
                e.exit();
            }
            let _ = writeln!(io::stderr(), "{}", missing_urls_text(source, target));
            std::process::exit(i32::from(EXIT_ERROR));
        }
        Err(e) => e.exit(),
    }
}

/// What [`parse_with_database_urls`] prints when `source`/`target` is missing.
pub fn missing_urls_text(source: bool, target: bool) -> String {
    let vars = match (source, target) {
        (true, true) => {
            "SOURCE_DATABASE_URL (the Heroku database) and TARGET_DATABASE_URL (the RDS database)"
        }
        (true, false) => "SOURCE_DATABASE_URL (the Heroku database)",
        _ => "TARGET_DATABASE_URL (the RDS database)",
    };
    let example = if source {
        "export SOURCE_DATABASE_URL=\"$(heroku config:get DATABASE_URL -a APP)\""
    } else {
        "herokurds-url build ... --env-var TARGET_DATABASE_URL --env-file rds.env && . ./rds.env"
    };
    format!(
        "error: no database URL: set {vars}, e.g. {example}\n\
         --source/--target work too, but are worse: command-line arguments, passwords included, \
         show in `ps` to every user of this machine."
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like the library's errors: the source in the message too.
    #[derive(Debug)]
    struct ReadPlan {
        path: &'static str,
        source: io::Error,
    }
    impl std::fmt::Display for ReadPlan {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot read plan {}: {}", self.path, self.source)
        }
    }
    impl std::error::Error for ReadPlan {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn caused_by_repeating_the_message_is_printed_once() {
        let err = anyhow::Error::new(ReadPlan {
            path: "plan.toml",
            source: io::Error::new(io::ErrorKind::NotFound, "No such file or directory"),
        });
        assert_eq!(
            error_text(&err),
            "error: cannot read plan plan.toml: No such file or directory"
        );
        let wrapped = err.context("loading the plan");
        assert_eq!(
            error_text(&wrapped),
            "error: loading the plan\n  caused by: cannot read plan plan.toml: No such file or directory"
        );
    }
}
