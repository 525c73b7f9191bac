//! herokurds-transfer: copy a Heroku Postgres database into an empty RDS
//! database — consistent snapshot, parallel COPY streams, no dump file.
//! Exit codes: 0 done, 2 error (the work directory says what is done;
//! finish with --resume).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use herokurds_cli::transfer_render::TransferRender;
use herokurds_cli::{init_tracing_verbose, report_error};
use herokurds_core::transfer::{self, CopyFormat, ResumeMode, RetryPolicy, TransferOptions};
use herokurds_core::url::DatabaseUrl;
use tokio_util::sync::CancellationToken;

/// Copy a Heroku Postgres database into an empty (RDS) database.
///
/// Pass the URLs in SOURCE_DATABASE_URL and TARGET_DATABASE_URL rather than
/// as --source/--target: command-line arguments, passwords included, are
/// visible to every user of the machine in `ps`. Passwords never appear in
/// the output, the journal or the arguments of pg_dump/pg_restore.
#[derive(Parser)]
#[command(
    name = "herokurds-transfer",
    version,
    after_help = "Examples:
  export SOURCE_DATABASE_URL=\"$(heroku config:get DATABASE_URL -a myapp)\"
  export TARGET_DATABASE_URL=...        # or `. ./rds.env` from herokurds-url build --env-var TARGET_DATABASE_URL --env-file rds.env
  herokurds-transfer --preflight-only   # what would be copied; changes nothing
  herokurds-transfer --jobs 4 --exclude-extension pg_stat_statements
  herokurds-transfer --resume           # after an error or Ctrl-C: finish the copy

Exit status: 0 the transfer finished (with --preflight-only: no problem \
                  found); 2 an error (a preflight problem, a failed table, a lost connection \
                  after the retries, bad arguments, Ctrl-C, SIGTERM or SIGHUP, --restart refusing to drop a \
                  finished copy without --restart-target). After an error the work directory \
                  records what is done: fix the cause and finish with --resume.\n\
                  Give the URLs in the environment, SOURCE_DATABASE_URL and TARGET_DATABASE_URL, \
                  not as --source/--target (arguments are visible to every user in `ps`)."
)]
struct Args {
    /// Source database URL (Heroku's DATABASE_URL).
    #[arg(long, env = "SOURCE_DATABASE_URL", hide_env_values = true)]
    source: String,
    /// Target database URL (the RDS database, empty).
    #[arg(long, env = "TARGET_DATABASE_URL", hide_env_values = true)]
    target: String,
    /// Tables copied at once.
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// Index builds at once, overlapping the copy (default: --jobs).
    #[arg(long)]
    index_jobs: Option<usize>,
    /// Copy tables larger than this in several ctid slices at once.
    #[arg(long, default_value = "1GB", value_parser = herokurds_core::size::parse_size)]
    split_tables_larger_than: u64,
    /// Do not copy the rows of matching tables (glob on schema.table, or on
    /// the name alone); they are created empty. Repeatable.
    #[arg(long, value_name = "PATTERN")]
    exclude_table: Vec<String>,
    /// Do not create this extension on the target (e.g. pg_stat_statements
    /// in Heroku's heroku_ext schema). Repeatable.
    #[arg(long, value_name = "NAME")]
    exclude_extension: Vec<String>,
    /// COPY format: binary (fast) or text (portable fallback).
    #[arg(long, default_value = "binary")]
    format: CopyFormat,
    /// Finish the transfer journaled in --work-dir.
    #[arg(long, conflicts_with = "restart")]
    resume: bool,
    /// Start over after an UNFINISHED transfer: drop EVERYTHING the target
    /// user owns in the target database (`DROP OWNED BY CURRENT_USER
    /// CASCADE`: the earlier copy, and anything else that user created
    /// there), then copy again. Only done when --work-dir's journal records
    /// an earlier transfer into this same database (user@host:port/dbname);
    /// otherwise it refuses, or with no journal at all runs like a fresh
    /// transfer (target must be empty). When the journal says the copy
    /// FINISHED it refuses (exit 2): an app may run on it now; see
    /// --restart-target.
    #[arg(long)]
    restart: bool,
    /// --restart, also when the journaled copy finished: drops it and
    /// whatever was written into it since (e.g. by an app switched to it).
    /// Asks to type the target database's name unless --yes.
    #[arg(long, conflicts_with = "resume")]
    restart_target: bool,
    /// Do not ask for the target database's name with --restart-target.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Where the journal, lock and schema archive live.
    #[arg(long, default_value = ".herokurds")]
    work_dir: PathBuf,
    /// Use pg_dump and pg_restore from this directory only (e.g.
    /// /usr/lib/postgresql/16/bin); they must be at least as new as the
    /// source server. Default: PATH, then /usr/lib/postgresql/*/bin, newest
    /// first.
    #[arg(
        long,
        value_name = "DIR",
        env = "HEROKURDS_PG_BIN_DIR",
        hide_env_values = true
    )]
    pg_bin_dir: Option<PathBuf>,
    /// Attempts per table, slice, index or large-object batch on connection
    /// failures.
    #[arg(long, default_value_t = 4)]
    attempts: u32,
    /// Do not ANALYZE tables after loading them.
    #[arg(long)]
    skip_analyze: bool,
    /// Only run the preflight checks and print what they found.
    #[arg(long)]
    preflight_only: bool,
    /// Print events and the report as NDJSON on stdout.
    #[arg(long)]
    json: bool,
    /// A line per index, constraint and ANALYZE too, and info logs; -vv
    /// debug logs (RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    herokurds_cli::disable_core_dumps();
    let args: Args = herokurds_cli::parse_with_database_urls();
    init_tracing_verbose(args.verbose);
    let render = TransferRender::new(args.json).verbose(args.verbose > 0);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(args, &render)) {
        Ok(code) => code,
        Err(e) => {
            render.error(&format!("{e:#}"));
            let code = report_error(&e);
            for hint in herokurds_cli::transfer_render::advice(&e) {
                eprintln!("hint: {hint}");
            }
            code
        }
    }
}

async fn run(args: Args, render: &TransferRender) -> anyhow::Result<ExitCode> {
    let source: DatabaseUrl = args
        .source
        .parse()
        .context("--source / SOURCE_DATABASE_URL")?;
    let target: DatabaseUrl = args
        .target
        .parse()
        .context("--target / TARGET_DATABASE_URL")?;
    let mut opts = TransferOptions::new()
        .jobs(args.jobs)
        .split_tables_larger_than(args.split_tables_larger_than)
        .format(args.format)
        .work_dir(args.work_dir)
        .analyze(!args.skip_analyze)
        .retry(RetryPolicy::new(
            args.attempts,
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(30),
        ))
        .restart_target(args.restart_target)
        .resume_mode(match (args.resume, args.restart || args.restart_target) {
            (true, _) => ResumeMode::Resume,
            (_, true) => ResumeMode::Restart,
            _ => ResumeMode::Fresh,
        });
    if args.restart_target && !args.yes && !args.preflight_only {
        herokurds_cli::prompts::restart_target(target.dbname())?;
    }
    if let Some(n) = args.index_jobs {
        opts = opts.index_jobs(n);
    }
    if let Some(dir) = args.pg_bin_dir {
        opts = opts.pg_bin_dir(dir);
    }
    for p in args.exclude_table {
        opts = opts.exclude_table(p);
    }
    for e in args.exclude_extension {
        opts = opts.exclude_extension(e);
    }
    if args.preflight_only {
        let report = transfer::preflight(&source, &target, &opts).await?;
        render.preflight(&report)?;
        return Ok(ExitCode::from(if report.is_ok() {
            herokurds_cli::EXIT_OK
        } else {
            herokurds_cli::EXIT_ERROR
        }));
    }
    let cancel = CancellationToken::new();
    herokurds_cli::cancel_on_signals(
        cancel.clone(),
        "interrupt: stopping the transfer after the tables in flight roll back",
    );
    let report = transfer::run(&source, &target, &opts, render, cancel).await?;
    render.finish(&report)?;
    Ok(ExitCode::from(herokurds_cli::EXIT_OK))
}
