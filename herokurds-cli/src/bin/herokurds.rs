//! `herokurds`: the whole migration of a Heroku app's Postgres database
//! (and S3 assets) to AWS RDS. Glue: parse flags, build the plan and
//! context, call one runbook function, render.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use herokurds_cli::runbook_render::{plan_text, RunbookRender};
use herokurds_cli::{print_json, println_safe, EXIT_DIFFERENT};
use herokurds_core::heroku::Client;
use herokurds_core::runbook::{self, Context, Plan, Report, RunbookError};
use tokio_util::sync::CancellationToken;

const ABOUT: &str =
    "Move a Heroku app's Postgres database and S3 assets to AWS RDS, with proof and rollback.";
const LONG_ABOUT: &str = "\
Moves a Heroku app's Heroku Postgres database (and S3 assets) to AWS RDS in the
lossless order: smoke baseline, S3 pre-sync, maintenance on, settle (in-flight
writes land), streaming copy, verification, final S3 sync, write check,
change capture on RDS, cutover (backup alias, detach DATABASE, set
DATABASE_URL), maintenance off, smoke compare. Every step is journaled in the
plan's work_dir.

The lifecycle of a migration:
  plan  ->  run  ->  rollback   (back to Heroku, RDS's writes copied back)
                 or  finish     (stay on RDS; rollback can no longer copy back)
`resume` continues an interrupted run, and `status` says where it stands.

Start with `herokurds demo` to watch it all on local sandboxes, then write a
plan with `herokurds init --app NAME` (a commented plan.toml, filled from the
Heroku API) and check it with `herokurds plan --config plan.toml`.

The Heroku token comes from HEROKU_API_KEY or ~/.netrc, the API URL from
HEROKU_API_URL / HEROKU_HOST; AWS credentials from the standard AWS chain.
Passwords are read from the environment or Secrets Manager, never from flags.

Examples:
  herokurds demo                                  # the whole migration, on local sandboxes
  herokurds init --app myapp                      # writes plan.toml; edit it
  herokurds plan --config plan.toml               # every check, nothing changed
  herokurds run --config plan.toml                # asks you to type the app name
  herokurds rollback --config plan.toml           # back to the old database, RDS's writes with it
  herokurds finish --config plan.toml             # once you trust RDS: capture removed

Exit codes: 0 success; 1 a check found a difference (preflight problems,
verification differences, writes on the source, smoke differences, writes
on RDS since the cutover that a rollback cannot copy back); 2 error (also:
run refusing to drop data on the target without --restart-target, resume or
rollback refusing a database other than the journaled one, finish before
the run completed).";

const ROLLBACK_ABOUT: &str = "\
Puts the app back on its old database: maintenance on and the plan's workers
stopped while switching, the old add-on promoted back to DATABASE (Heroku's
pg:promote), the plan's config vars and CloudFront origins restored, dynos
scaled back, maintenance off.

Until `herokurds finish`, `run` leaves change capture on RDS (schema
herokurds_capture: triggers that log the key of every row the app writes
there since the cutover). Rollback then first copies those writes back: it
waits until RDS is quiet, compares RDS's schema with the cutover's, deletes
the logged rows on the old database and copies them again from RDS, compares
every changed row and each changed table's row count on both sides, sets the
sequences, and only then switches; the capture is removed after. The output
says what was copied back (changes, rows, tables, bytes, seconds).

What cannot be copied back is refused (exit 1) before anything is switched,
naming it: DDL made on RDS, rows that still differ, writes that do not stop.
The app then stays on RDS, with maintenance and dynos as they were.

Without capture (after `finish`, or `[cutover] capture_target_writes =
false`), rollback counts the rows written on RDS since the cutover and
refuses (exit 1), naming each table and its count, when there are any.

A rollback killed at any point finishes when run again, from its journal:
nothing logged is lost, and a change copied back again gives the same rows,
never a duplicate.

Exit codes: 0 switched back; 1 refused (writes on RDS it cannot copy back);
2 error (nothing to roll back, a database other than the journaled one).

Examples:
  herokurds rollback --config plan.toml           # asks you to type the app name
  herokurds rollback --config plan.toml --discard-target-writes
                                                  # after a refusal: back without RDS's writes";

const FINISH_ABOUT: &str = "\
Ends a completed migration once you trust RDS: removes the change capture
`run` installed on RDS at the cutover (schema herokurds_capture and its
triggers, which log every write the app makes there so that `rollback` can
copy it back), and any capture online mode left on the Heroku database.
The app's writes on RDS stop paying for a trigger each.

After finish, a rollback can no longer copy RDS's writes back to the old
database: once the app wrote on RDS, `rollback` refuses (exit 1) unless
--discard-target-writes, which loses those writes. Run it when you are sure
you will not roll back (after the smoke checks, a day of traffic, the next
backup). Asks you to type the app name unless --yes. Running it again is
harmless.

Exit codes: 0 finished (or nothing left to remove); 2 error: the run has
not completed (finish it with `herokurds resume`, or undo it with
`herokurds rollback`), it was rolled back, or the capture could not be
removed (the message says how to remove it by hand).

Example:
  herokurds finish --config plan.toml             # asks you to type the app name";

#[derive(Parser)]
#[command(name = "herokurds", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Machine-readable output: NDJSON events, then the report as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// More detail: -v a line per index and ANALYZE of the copy, and info
    /// logs; -vv debug logs (RUST_LOG overrides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Command {
    /// Write a commented plan.toml to start from (filled from the Heroku API with --app).
    Init(InitArgs),
    /// Check everything, change nothing; print the steps and the window estimate.
    Plan(PlanArgs),
    /// Perform the migration (asks to type the app name unless --yes).
    Run(RunArgs),
    /// Continue an interrupted migration from its journal.
    Resume(ChangeArgs),
    /// Put the app back on its old database, copying RDS's writes back.
    #[command(long_about = ROLLBACK_ABOUT)]
    Rollback(RollbackArgs),
    /// End a completed migration: remove change capture from RDS (no copy-back after).
    #[command(long_about = FINISH_ABOUT)]
    Finish(ChangeArgs),
    /// Where the journal stands, where DATABASE_URL points, maintenance state.
    Status(PlanArgs),
    /// Run, roll back, run again and finish on local sandboxes (PostgreSQL binaries needed).
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
}

#[derive(clap::Args)]
struct PlanArgs {
    /// The plan file (TOML).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
}

#[derive(clap::Args)]
struct ChangeArgs {
    #[command(flatten)]
    plan: PlanArgs,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    change: ChangeArgs,
    /// Drop what an earlier attempt left on the target (DROP OWNED BY
    /// CURRENT_USER CASCADE in the target database) and copy again, even
    /// when the app ran on it after a cutover and rows written there since
    /// would be lost. Without it, `run` refuses (exit 2) unless the earlier
    /// attempt stopped before the cutover and nothing wrote there since.
    /// Asks to type the target database's name unless --yes.
    #[arg(long)]
    restart_target: bool,
}

#[derive(clap::Args)]
struct RollbackArgs {
    #[command(flatten)]
    change: ChangeArgs,
    /// Switch back WITHOUT copying RDS's writes back: every row written on
    /// RDS since the cutover stays there, and the app runs without those rows. With
    /// capture on, this skips the copy-back (use it when rollback refused
    /// one, e.g. after DDL on RDS); without capture (after `finish`), it
    /// switches back although rows were written there or cannot be counted.
    /// Capture on RDS is removed either way.
    #[arg(long)]
    discard_target_writes: bool,
}

#[derive(clap::Args)]
struct InitArgs {
    /// The Heroku app: fills the add-on, attachments, bucket config vars,
    /// workers and smoke URL from the Heroku API (token: HEROKU_API_KEY or ~/.netrc).
    #[arg(long, short = 'a')]
    app: Option<String>,
    /// Where to write the plan.
    #[arg(long, short = 'o', value_name = "FILE", default_value = "plan.toml")]
    output: PathBuf,
    /// Replace the file if it exists.
    #[arg(long)]
    force: bool,
}

#[cfg(feature = "demo")]
#[derive(clap::Args)]
struct DemoArgs {
    /// Rows of the demo's extra `events` table (more = a longer copy).
    #[arg(long, default_value_t = 200_000)]
    rows: u64,
}

fn main() -> ExitCode {
    herokurds_cli::disable_core_dumps();
    let cli = Cli::parse();
    herokurds_cli::init_tracing_verbose(cli.verbose);
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => match e.downcast_ref::<RunbookError>() {
            Some(r) if r.is_check_failure() => {
                eprintln!("error: {r}");
                ExitCode::from(EXIT_DIFFERENT)
            }
            _ => herokurds_cli::report_error(&e),
        },
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    let cancel = CancellationToken::new();
    herokurds_cli::cancel_on_signals(
        cancel.clone(),
        "interrupt: finishing the current unit of work, then stopping (resumable)",
    );
    match &cli.command {
        #[cfg(feature = "demo")]
        Command::Demo(args) => return herokurds_cli::demo::run(args.rows, json, cancel).await,
        Command::Init(a) => {
            return herokurds_cli::init::run(a.app.as_deref(), &a.output, a.force).await
        }
        _ => {}
    }
    let (args, yes) = match &cli.command {
        Command::Plan(a) | Command::Status(a) => (a, true),
        Command::Run(RunArgs { change: a, .. })
        | Command::Resume(a)
        | Command::Finish(a)
        | Command::Rollback(RollbackArgs { change: a, .. }) => (&a.plan, a.yes),
        #[cfg(feature = "demo")]
        Command::Demo(_) => unreachable!("handled above"),
        Command::Init(_) => unreachable!("handled above"),
    };
    let plan = Plan::load(&args.config)?;
    let heroku = Client::from_env().context("setting up the Heroku API client")?;
    let mut ctx = Context::new(heroku).plan_path(args.config.display().to_string());
    match &cli.command {
        Command::Run(a) if a.restart_target => {
            if !yes {
                herokurds_cli::prompts::restart_target(
                    &runbook::target_database(&plan, &ctx).await?,
                )?;
            }
            ctx = ctx.restart_target(true);
        }
        Command::Rollback(a) => ctx = ctx.discard_target_writes(a.discard_target_writes),
        _ => {}
    }
    let render = RunbookRender::new(json)
        .verbose(cli.verbose > 0)
        .copying_back(matches!(
            cli.command,
            Command::Rollback(_) | Command::Finish(_)
        ));
    match cli.command {
        Command::Plan(_) => {
            let report = runbook::preflight(&plan, &ctx).await?;
            if json {
                print_json(&report)?;
            } else {
                println_safe(plan_text(&report))?;
            }
            Ok(ExitCode::from(if report.problems.is_empty() {
                0
            } else {
                EXIT_DIFFERENT
            }))
        }
        Command::Status(_) => {
            let status = runbook::status(&plan, &ctx).await?;
            if json {
                print_json(&status)?;
            } else {
                println_safe(herokurds_cli::runbook_render::status_text(&status))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Finish(_) => {
            if !yes {
                herokurds_cli::prompts::finish(&plan.heroku.app)?;
            }
            let r = runbook::finish(&plan, &ctx, &render).await?;
            if json {
                print_json(&r)?;
            } else {
                println_safe(herokurds_cli::runbook_render::finish_text(&r))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(_) | Command::Resume(_) | Command::Rollback(_) if !yes => {
            herokurds_cli::prompts::app_change(&plan.heroku.app)?;
            run_command(cli.command, &plan, &ctx, &render, cancel, json).await
        }
        command => run_command(command, &plan, &ctx, &render, cancel, json).await,
    }
}

async fn run_command(
    command: Command,
    plan: &Plan,
    ctx: &Context,
    render: &RunbookRender,
    cancel: CancellationToken,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let report: Report = match command {
        Command::Run(_) => runbook::run(plan, ctx, render, cancel).await?,
        Command::Resume(_) => runbook::resume(plan, ctx, render, cancel).await?,
        Command::Rollback(_) => {
            let r = runbook::rollback(plan, ctx, render).await?;
            if json {
                print_json(&r)?;
            } else {
                println_safe(herokurds_cli::runbook_render::rollback_text(&r))?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        _ => unreachable!("only changing commands get here"),
    };
    herokurds_cli::runbook_render::save_report(plan, &report)?;
    if json {
        print_json(&report)?;
    } else {
        println_safe(report.to_markdown())?;
    }
    Ok(ExitCode::from(if report.smoke_differences.is_empty() {
        0
    } else {
        EXIT_DIFFERENT
    }))
}
