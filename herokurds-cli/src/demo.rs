//! `herokurds demo`: the real `run` path, then `rollback`, then `run
//! --restart-target` again and `finish`, on local sandboxes (see
//! `herokurds_testkit::demo`).

use std::process::ExitCode;

use herokurds_core::runbook::{self, RunbookError};
use herokurds_testkit::demo::{DemoOptions, DemoStack};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::runbook_render::{finish_text, plan_text, rollback_text, RunbookRender};
use crate::{print_json, println_safe};

/// Starts the sandboxes, migrates, rolls back, migrates again and
/// finishes, prints the report; everything is stopped and deleted at the end, also when
/// `cancel` fires (Ctrl-C) half-way.
pub async fn run(rows: u64, json: bool, cancel: CancellationToken) -> anyhow::Result<ExitCode> {
    let s3 = herokurds_testkit::moto::find_moto_server().is_ok();
    // Headers on stdout, with the bodies they head (progress is on stderr).
    let say = |s: String| {
        if !json {
            let _ = println_safe(s);
        }
    };
    say("starting the sandbox: Heroku-like and RDS-like PostgreSQL clusters, the Heroku emulator, local S3, the sample app's site".into());
    if !s3 {
        say("note: moto_server not found (scripts/demo installs it into .venv/): the demo runs without the S3 part".into());
    }
    let stack = DemoStack::start(DemoOptions {
        s3,
        event_rows: rows,
        ..DemoOptions::default()
    })
    .await?;
    let plan_path = stack.write_plan()?;
    let plan = stack.plan();
    let ctx = stack.context().plan_path(plan_path.display().to_string());
    say(format!(
        "sandbox up: app {} on {}, its site at {}\nplan: {}\n",
        herokurds_testkit::demo::DEMO_APP,
        stack.heroku.url(),
        stack.web.url(),
        plan_path.display()
    ));
    let render = RunbookRender::new(json);

    say("== herokurds plan".into());
    let planned = runbook::preflight(&plan, &ctx).await?;
    if !json {
        println_safe(plan_text(&planned))?;
    }
    say("== herokurds run".into());
    let first = runbook::run(&plan, &ctx, &render, cancel.clone()).await?;
    let target_url: herokurds_core::url::DatabaseUrl =
        stack.target.url().expose_secret().parse()?;
    say(format!(
        "the app's DATABASE_URL now points at {target_url}\n"
    ));

    say("== herokurds rollback".into());
    let back_render = RunbookRender::new(json).copying_back(true);
    let back = runbook::rollback(&plan, &ctx, &back_render).await?;
    if !json {
        println_safe(rollback_text(&back))?;
    }

    // The app ran on the target after the first cutover: starting over
    // there drops it, which `run` does only when told to.
    say("== herokurds run --restart-target (forward again)".into());
    let again = runbook::run(&plan, &ctx.clone().restart_target(true), &render, cancel).await?;
    if !json {
        println_safe(again.to_markdown())?;
    }
    say("== herokurds finish (stay on RDS: change capture removed from it)".into());
    let finished = runbook::finish(&plan, &ctx, &back_render).await?;
    if !json {
        println_safe(finish_text(&finished))?;
    }
    let status = runbook::status(&plan, &ctx).await?;
    if json {
        print_json(
            &serde_json::json!({ "first_run": first, "rollback": back, "second_run": again, "finish": finished, "status": status }),
        )?;
    } else {
        println_safe(format!(
            "demo finished: the app runs on the RDS-like cluster (DATABASE_URL host {}, maintenance {}); cleaning up",
            status.database_url_host.as_deref().unwrap_or("?"),
            if status.maintenance { "on" } else { "off" }
        ))?;
    }
    if !again.smoke_differences.is_empty() {
        return Err(RunbookError::Step {
            what: "demo smoke comparison".into(),
            reason: format!("{} page difference(s)", again.smoke_differences.len()),
        }
        .into());
    }
    Ok(ExitCode::SUCCESS)
}
