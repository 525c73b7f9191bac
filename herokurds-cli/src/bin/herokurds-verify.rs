//! herokurds-verify: prove that the RDS target equals the Heroku source.
//!
//! Exit codes: 0 identical, 1 a difference (each on its own line on stdout,
//! or listed in `--json`), 2 an error.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use herokurds_cli::verify_render::{difference_lines, report_json, summary, VerifyBars};
use herokurds_cli::{print_json, println_safe, report_error, EXIT_DIFFERENT, EXIT_OK};
use herokurds_core::url::DatabaseUrl;
use herokurds_core::verify::{self, VerifyOptions};
use tokio_util::sync::CancellationToken;

/// Compare a migrated database with its source: schema objects, row counts,
/// content checksums, sequences and large objects.
///
/// Reads both databases (never writes) and prints one line per difference on
/// stdout, a summary on stderr. URLs come from SOURCE_DATABASE_URL and
/// TARGET_DATABASE_URL: --source/--target work too, but command-line
/// arguments, passwords included, show in `ps` to every user of the machine.
#[derive(Parser)]
#[command(
    name = "herokurds-verify",
    version,
    after_help = "Examples:
  export SOURCE_DATABASE_URL=\"$(heroku config:get DATABASE_URL -a myapp)\"
  export TARGET_DATABASE_URL=...      # the RDS database
  herokurds-verify                    # everything, with content checksums
  herokurds-verify --counts-only      # exact row counts only: seconds, not minutes
  herokurds-verify --json | jq .differences

Exit status: 0 identical; 1 a difference (each on its own line on stdout, or
listed in --json); 2 an error (a connection, a query, bad arguments, Ctrl-C)."
)]
struct Args {
    /// The source (Heroku) database URL.
    #[arg(long, env = "SOURCE_DATABASE_URL", hide_env_values = true)]
    source: String,
    /// The target (RDS) database URL.
    #[arg(long, env = "TARGET_DATABASE_URL", hide_env_values = true)]
    target: String,
    /// Compare row counts only, not contents.
    #[arg(long)]
    counts_only: bool,
    /// Sessions per database.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Leave out tables the transfer did not copy (glob over `schema.table`,
    /// or over the table name when it has no dot). Repeatable.
    #[arg(long = "exclude-table", value_name = "PATTERN")]
    exclude_tables: Vec<String>,
    /// Leave out an extension the transfer did not create. Repeatable.
    #[arg(long = "exclude-extension", value_name = "NAME")]
    exclude_extensions: Vec<String>,
    /// Read the source on this exported snapshot (the transfer's).
    #[arg(long)]
    snapshot: Option<String>,
    /// Tables larger than this many MB are read in slices of this size.
    #[arg(long, default_value_t = 64)]
    slice_mb: u64,
    /// Print the report as JSON on stdout instead of lines.
    #[arg(long)]
    json: bool,
}

fn url(flag: &str, text: &str) -> anyhow::Result<DatabaseUrl> {
    // The parse error names the parts at fault, never the text (it may hold
    // the password); clap is given a String for the same reason.
    text.parse().with_context(|| format!("--{flag}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    herokurds_cli::disable_core_dumps();
    herokurds_cli::init_tracing();
    match run(herokurds_cli::parse_with_database_urls()).await {
        Ok(code) => code,
        Err(e) => report_error(&e),
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let source = url("source", &args.source)?;
    let target = url("target", &args.target)?;
    let mut options = VerifyOptions::new()
        .counts_only(args.counts_only)
        .jobs(args.jobs)
        .source_snapshot(args.snapshot)
        .slice_threshold(args.slice_mb.saturating_mul(1024 * 1024));
    for p in args.exclude_tables {
        options = options.exclude_table(p);
    }
    for e in args.exclude_extensions {
        options = options.exclude_extension(e);
    }
    let cancel = CancellationToken::new();
    herokurds_cli::cancel_on_signals(cancel.clone(), "interrupt: stopping the verification");

    let bars = VerifyBars::stderr();
    let report = verify::run(&source, &target, &options, &bars, &cancel).await;
    bars.finish();
    let report = report?;

    if args.json {
        print_json(&report_json(&report))?;
    } else {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        for line in difference_lines(&report) {
            println_safe(line)?;
        }
        eprintln!("{}", summary(&report));
    }
    Ok(ExitCode::from(if report.is_identical() {
        EXIT_OK
    } else {
        EXIT_DIFFERENT
    }))
}
