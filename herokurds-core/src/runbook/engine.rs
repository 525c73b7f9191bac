//! The loop that walks the steps, and the commands built on the journal:
//! run, resume, rollback, status.

use chrono::Utc;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::error::RunbookError;
use super::journal::{AppLock, Journal, RunState, StepId, StepStatus, WorkDir};
use super::report::Report;
use super::steps::{formation_words, restore_formation, Outcome, Runner};
use super::target::heroku_source_url;
use super::{cutover, writes, Context, Plan, RunbookEvent};
use crate::progress::Progress;
use crate::url::DatabaseUrl;

/// Performs the migration from the first step. Refuses when a migration of
/// the app is in progress (use [`resume`]) or completed (roll it back
/// first). An earlier aborted or rolled-back attempt is started over.
pub async fn run(
    plan: &Plan,
    ctx: &Context,
    progress: &impl Progress<RunbookEvent>,
    cancel: CancellationToken,
) -> Result<Report, RunbookError> {
    let app = &plan.heroku.app;
    let dir = WorkDir::new(&plan.work_dir);
    let _lock = AppLock::acquire(&dir, app)?;
    if let Some(previous) = Journal::load(&dir, app)? {
        match previous.state {
            RunState::InProgress => {
                return Err(RunbookError::WrongState {
                    message: format!(
                        "a migration of app {app} is in progress (next step: {}); continue it with \
                         `herokurds resume --config {p}` or undo it with `herokurds rollback --config {p}`",
                        previous.next_step().map_or("none".into(), |s| s.to_string()),
                        p = ctx.plan_path
                    ),
                });
            }
            RunState::Completed => {
                return Err(RunbookError::WrongState {
                    message: format!(
                        "app {app} was already migrated ({}); roll it back with `herokurds rollback --config {}` \
                         before migrating again",
                        dir.journal(app).display(),
                        ctx.plan_path
                    ),
                });
            }
            RunState::Aborted { .. } | RunState::RolledBack => {}
        }
    }
    let mut journal = Journal::new(app);
    journal.save(&dir)?;
    let (source, target) = match resolve_urls(plan, ctx, &journal).await {
        Ok(urls) => urls,
        Err(reason) => {
            journal.start(StepId::Preflight);
            journal.fail(StepId::Preflight, reason.clone());
            journal.state = RunState::Aborted {
                reason: reason.clone(),
            };
            journal.save(&dir)?;
            return Err(RunbookError::Preflight {
                app: app.clone(),
                problems: vec![reason],
            });
        }
    };
    drive(plan, ctx, dir, journal, source, target, progress, cancel).await
}

/// Continues an interrupted migration at its first unfinished step, never
/// redoing a finished cutover step.
pub async fn resume(
    plan: &Plan,
    ctx: &Context,
    progress: &impl Progress<RunbookEvent>,
    cancel: CancellationToken,
) -> Result<Report, RunbookError> {
    let app = &plan.heroku.app;
    let dir = WorkDir::new(&plan.work_dir);
    let _lock = AppLock::acquire(&dir, app)?;
    let journal = Journal::load(&dir, app)?.ok_or_else(|| RunbookError::WrongState {
        message: format!(
            "no migration of app {app} to resume (no journal at {}); start one with `herokurds run --config {}`",
            dir.journal(app).display(),
            ctx.plan_path
        ),
    })?;
    match &journal.state {
        RunState::InProgress => {}
        RunState::Aborted { reason } => {
            return Err(RunbookError::WrongState {
                message: format!(
                    "the last migration of app {app} stopped before the cutover ({reason}) and the app is back on its \
                     old database; start a new attempt with `herokurds run --config {}`",
                    ctx.plan_path
                ),
            });
        }
        RunState::Completed => {
            return Err(RunbookError::WrongState {
                message: format!("the migration of app {app} is complete; nothing to resume"),
            });
        }
        RunState::RolledBack => {
            return Err(RunbookError::WrongState {
                message: format!(
                    "the migration of app {app} was rolled back; start a new one with `herokurds run --config {}`",
                    ctx.plan_path
                ),
            });
        }
    }
    let (source, target) =
        resolve_urls(plan, ctx, &journal)
            .await
            .map_err(|reason| RunbookError::Step {
                what: "resolving the database URLs".into(),
                reason,
            })?;
    drive(plan, ctx, dir, journal, source, target, progress, cancel).await
}

/// The source URL (the old add-on's, through any of its attachments, so it
/// is found before and after the cutover) and the target URL.
async fn resolve_urls(
    plan: &Plan,
    ctx: &Context,
    journal: &Journal,
) -> Result<(DatabaseUrl, DatabaseUrl), String> {
    let app = &plan.heroku.app;
    let source = if let Some(var) = &plan.source.url_env {
        let text = (ctx.env)(var)
            .ok_or_else(|| format!("source.url_env: environment variable {var} is not set"))?;
        heroku_source_url(&text)
            .map_err(|e| format!("source.url_env: {var} is not a valid database URL: {e}"))?
    } else {
        source_from_heroku(plan, ctx, journal.old_addon.as_deref()).await?
    };
    let target = super::target::resolve_target(&plan.target, &*ctx.env, &ctx.aws_for(plan))
        .await?
        .url;
    if source.host() == target.host()
        && source.port() == target.port()
        && source.dbname() == target.dbname()
    {
        return Err(format!(
            "source and target are the same database ({}:{}/{}); check [target] of app {app}",
            target.host(),
            target.port(),
            target.dbname()
        ));
    }
    Ok((source, target))
}

/// The old add-on's URL from the config var one of its attachments
/// provides (`DATABASE_URL` before the cutover, the backup alias after).
pub(super) async fn source_from_heroku(
    plan: &Plan,
    ctx: &Context,
    known_addon: Option<&str>,
) -> Result<DatabaseUrl, String> {
    let app = &plan.heroku.app;
    let heroku = &ctx.heroku;
    let addons = heroku
        .postgres_addons(app)
        .await
        .map_err(|e| e.to_string())?;
    let wanted = known_addon.or(plan.heroku.addon.as_deref());
    let addon = match wanted {
        Some(name) => addons
            .iter()
            .find(|a| a.addon.name == name || a.addon.id == name)
            .ok_or_else(|| format!("app {app} has no Heroku Postgres add-on named {name}"))?,
        None => addons
            .iter()
            .find(|a| a.is_database(app))
            .ok_or_else(|| {
                format!("app {app} has no Heroku Postgres add-on attached as DATABASE; name one with heroku.addon")
            })?,
    };
    let mut names: Vec<&str> = addon.attachment_names(app);
    names.sort_by_key(|n| *n != "DATABASE");
    let vars = heroku.config_vars(app).await.map_err(|e| e.to_string())?;
    for name in names {
        if let Some(v) = vars.get(&format!("{name}_URL")) {
            use secrecy::ExposeSecret;
            return heroku_source_url(v.expose_secret()).map_err(|e| {
                format!("config var {name}_URL of app {app} is not a valid database URL: {e}")
            });
        }
    }
    Err(format!(
        "no config var of app {app} holds the URL of add-on {}; is it attached?",
        addon.addon.name
    ))
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    plan: &Plan,
    ctx: &Context,
    dir: WorkDir,
    journal: Journal,
    source: DatabaseUrl,
    target: DatabaseUrl,
    progress: &impl Progress<RunbookEvent>,
    cancel: CancellationToken,
) -> Result<Report, RunbookError> {
    let mut r = Runner {
        plan,
        ctx,
        dir,
        journal,
        source,
        target,
        progress,
        cancel,
        snapshot: None,
    };
    for (i, step) in StepId::ALL.iter().copied().enumerate() {
        let number = i + 1;
        if r.journal.is_finished(step) {
            progress.event(&RunbookEvent::StepAlreadyDone { number, step });
            // A resumed window: the downtime clock goes on from the
            // first run's start.
            if let (StepId::MaintenanceOn, Some(at), None) = (
                step,
                r.journal.maintenance_on_at,
                r.journal.maintenance_off_at,
            ) {
                progress.event(&RunbookEvent::MaintenanceOn { at });
            }
            continue;
        }
        if r.cancel.is_cancelled() {
            return Err(interrupted(&mut r, step).await);
        }
        let before = r.journal.step(step).status;
        r.journal.start(step);
        r.journal.save(&r.dir)?;
        progress.event(&RunbookEvent::StepStarted { number, step });
        let result = r.execute(step, before).await;
        match result {
            Ok(Outcome::Done(detail)) => r.journal.finish(step, detail),
            Ok(Outcome::Skipped(why)) => r.journal.skip(step, why),
            Err(failure) => {
                if r.cancel.is_cancelled() {
                    r.journal.fail(step, "interrupted");
                    r.journal.save(&r.dir)?;
                    emit_finished(progress, &r.journal, number, step);
                    return Err(interrupted(&mut r, step).await);
                }
                r.journal.fail(step, failure.message.clone());
                r.journal.save(&r.dir)?;
                emit_finished(progress, &r.journal, number, step);
                return Err(if r.journal.cutover_started() {
                    RunbookError::CutoverIncomplete {
                        app: plan.heroku.app.clone(),
                        step,
                        reason: failure.message,
                        state: describe_state(&r.journal, &plan.cutover.backup_alias),
                        plan: ctx.plan_path.clone(),
                    }
                } else {
                    abort(&mut r, step, failure.message).await?
                });
            }
        }
        r.journal.save(&r.dir)?;
        emit_finished(progress, &r.journal, number, step);
    }
    r.journal.state = RunState::Completed;
    r.journal.save(&r.dir)?;
    Ok(Report::from_journal(&r.journal))
}

fn emit_finished(progress: &impl Progress<RunbookEvent>, j: &Journal, number: usize, step: StepId) {
    let rec = j.step(step);
    progress.event(&RunbookEvent::StepFinished {
        number,
        step,
        status: rec.status,
        detail: rec.detail.clone(),
        seconds: rec.seconds(),
    });
}

async fn interrupted<P: Progress<RunbookEvent>>(
    r: &mut Runner<'_, P>,
    step: StepId,
) -> RunbookError {
    let maintenance_on = r
        .ctx
        .heroku
        .maintenance(&r.plan.heroku.app)
        .await
        .unwrap_or(r.journal.maintenance_on_at.is_some() && r.journal.maintenance_off_at.is_none());
    RunbookError::Interrupted {
        step,
        maintenance_on,
        plan: r.ctx.plan_path.clone(),
    }
}

/// Before the cutover: put back what the run changed (dynos, maintenance),
/// mark the journal aborted, and say so.
async fn abort<P: Progress<RunbookEvent>>(
    r: &mut Runner<'_, P>,
    step: StepId,
    reason: String,
) -> Result<RunbookError, RunbookError> {
    let app = r.plan.heroku.app.clone();
    let (restored, failures) = restore_app(r.ctx, &app, &mut r.journal).await;
    r.journal.state = RunState::Aborted {
        reason: reason.clone(),
    };
    r.journal.save(&r.dir)?;
    Ok(RunbookError::Aborted {
        app,
        step,
        reason,
        restored,
        restore_failures: failures,
    })
}

/// Scales dynos back and turns maintenance off when the migration turned
/// it on; returns what was restored and what could not be (with the command
/// that does it).
async fn restore_app(
    ctx: &Context,
    app: &str,
    journal: &mut Journal,
) -> (Vec<String>, Vec<String>) {
    let mut restored = Vec::new();
    let mut failures = Vec::new();
    if !journal.formation_before.is_empty() && !journal.is_finished(StepId::ScaleUp) {
        let q: Vec<(String, u32)> = journal.formation_before.clone().into_iter().collect();
        match restore_formation(ctx, app, &q).await {
            Ok(()) => restored.push(format!(
                "dynos {}",
                formation_words(&journal.formation_before)
            )),
            Err(e) => failures.push(format!(
                "scaling back {} failed ({e}); run: heroku ps:scale {} -a {app}",
                formation_words(&journal.formation_before),
                journal
                    .formation_before
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
        }
    }
    if !journal.maintenance_was_on
        && journal.maintenance_on_at.is_some()
        && journal.maintenance_off_at.is_none()
    {
        match ctx.heroku.set_maintenance(app, false).await {
            Ok(_) => {
                journal.maintenance_off_at = Some(Utc::now());
                restored.push("maintenance off".into());
            }
            Err(e) => failures.push(format!(
                "maintenance is still ON ({e}); run: herokurds-heroku maintenance off -a {app}"
            )),
        }
    }
    (restored, failures)
}

/// What the app runs on, its maintenance mode and any dynos still scaled
/// down, from the journal, in words.
fn describe_state(j: &Journal, backup_alias: &str) -> String {
    let addon = j.old_addon.as_deref().unwrap_or("the old add-on");
    let target = j.target_host.as_deref().unwrap_or("the target");
    let attached = j.is_finished(StepId::AttachBackup);
    let detached = j.is_finished(StepId::DetachDatabase);
    let set = j.is_finished(StepId::SetConfig);
    let database = match (attached, detached, set) {
        (_, _, true) => format!(
            "DATABASE_URL points at {target}; {addon} is attached as {backup_alias}"
        ),
        (_, true, false) => format!(
            "{addon} is detached from DATABASE (attached as {backup_alias}) and DATABASE_URL may be UNSET: \
             the app has no database until resume or rollback"
        ),
        (true, false, _) => format!(
            "the app still uses {addon} as DATABASE (also attached as {backup_alias})"
        ),
        _ => format!("the app still uses {addon} as DATABASE"),
    };
    let maintenance = if j.maintenance_off_at.is_some() || j.maintenance_on_at.is_none() {
        "maintenance mode is off"
    } else {
        "maintenance mode is still ON"
    };
    let mut words = format!("{database}; {maintenance}");
    if !j.formation_before.is_empty() && !j.is_finished(StepId::ScaleUp) {
        words.push_str(&format!(
            "; scaled to 0 until resume or rollback: {}",
            formation_words(&j.formation_before)
        ));
    }
    words
}

/// What a rollback did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RollbackReport {
    /// The app.
    pub app: String,
    /// Each action, in words.
    pub actions: Vec<String>,
    /// Rows inserted, updated or deleted on the target since the cutover,
    /// which the rollback does not copy back (`None` if unknown).
    pub target_writes: Option<i64>,
    /// The tables those writes touched.
    pub target_tables_written: Vec<String>,
    /// Plan config vars whose old value was not journaled (it looked
    /// secret): restore them by hand.
    pub vars_to_restore_by_hand: Vec<String>,
}

/// Puts the app back on its old database: maintenance on while switching,
/// the old add-on promoted to `DATABASE` (Heroku CLI's `pg:promote`), the
/// plan's config vars restored, dynos scaled back, maintenance off. Counts
/// the rows written on the target since the cutover (not copied back).
/// Repeating a rollback is harmless.
pub async fn rollback(
    plan: &Plan,
    ctx: &Context,
    progress: &impl Progress<RunbookEvent>,
) -> Result<RollbackReport, RunbookError> {
    let app = plan.heroku.app.clone();
    let dir = WorkDir::new(&plan.work_dir);
    let _lock = AppLock::acquire(&dir, &app)?;
    let mut journal = Journal::load(&dir, &app)?.ok_or_else(|| RunbookError::WrongState {
        message: format!(
            "no migration of app {app} to roll back (no journal at {})",
            dir.journal(&app).display()
        ),
    })?;
    let step_err = |what: &str, e: &dyn std::fmt::Display| RunbookError::Step {
        what: format!("rollback of app {app}: {what}"),
        reason: format!(
            "{e}\nnothing after this was done; run `herokurds rollback --config {}` again",
            ctx.plan_path
        ),
    };
    let mut report = RollbackReport {
        app: app.clone(),
        actions: Vec::new(),
        target_writes: None,
        target_tables_written: Vec::new(),
        vars_to_restore_by_hand: journal.unjournaled_vars.clone(),
    };
    match &journal.state {
        RunState::RolledBack => {
            return Err(RunbookError::WrongState {
                message: format!("the migration of app {app} is already rolled back"),
            });
        }
        RunState::Aborted { reason } => {
            return Err(RunbookError::WrongState {
                message: format!(
                    "nothing to roll back: the last migration of app {app} stopped before the cutover ({reason}); \
                     the app runs on its old database"
                ),
            });
        }
        RunState::InProgress if !journal.cutover_started() => {
            let (restored, failures) = restore_app(ctx, &app, &mut journal).await;
            journal.state = RunState::Aborted {
                reason: "rolled back by the operator before the cutover".into(),
            };
            journal.save(&dir)?;
            if !failures.is_empty() {
                return Err(step_err("restoring the app", &failures.join("; ")));
            }
            report
                .actions
                .push("the cutover had not started: the app was still on its old database".into());
            report.actions.extend(restored);
            return Ok(report);
        }
        RunState::InProgress | RunState::Completed => {}
    }
    let old_addon = journal
        .old_addon
        .clone()
        .ok_or_else(|| RunbookError::WrongState {
            message: format!(
                "the journal of app {app} does not name the old add-on; nothing to roll back to"
            ),
        })?;
    let maintenance_now = ctx
        .heroku
        .maintenance(&app)
        .await
        .map_err(|e| step_err("reading maintenance", &e))?;
    if !maintenance_now {
        ctx.heroku
            .set_maintenance(&app, true)
            .await
            .map_err(|e| step_err("maintenance on", &e))?;
        report
            .actions
            .push("maintenance on while switching back".into());
        progress.event(&RunbookEvent::MaintenanceOn { at: Utc::now() });
    }
    // Stop the writers maintenance mode does not hold before counting, so
    // the count is what the switch back leaves behind.
    let mut formation_after = journal.formation_before.clone();
    if !plan.maintenance.scale_down.is_empty() {
        let formation = ctx
            .heroku
            .formation(&app)
            .await
            .map_err(|e| step_err("reading the formation", &e))?;
        let running: Vec<(String, u32)> = formation
            .into_iter()
            .filter(|f| f.quantity > 0 && plan.maintenance.scale_down.contains(&f.process_type))
            .map(|f| (f.process_type, f.quantity))
            .collect();
        if !running.is_empty() {
            let zero: Vec<(&str, u32)> = running.iter().map(|(k, _)| (k.as_str(), 0)).collect();
            ctx.heroku
                .scale(&app, &zero)
                .await
                .map_err(|e| step_err("scaling down while switching back", &e))?;
            report.actions.push(format!(
                "scaled to 0 while switching back: {}",
                zero.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
            ));
            // What runs now is what comes back.
            formation_after.extend(running);
        }
    }
    if let Some(mark) = &journal.target_mark {
        match rows_written_since(ctx, plan, mark).await {
            Ok(activity) => {
                let rows: i64 = activity.tables.values().map(|n| n.unwrap_or(0)).sum();
                report.target_writes = Some(rows);
                report.target_tables_written = activity.tables.keys().cloned().collect();
                if !activity.is_quiet() {
                    progress.event(&RunbookEvent::Warning {
                        message: format!(
                            "{rows} row(s) were written on the new database since the cutover ({}); they are NOT copied back",
                            activity.describe()
                        ),
                    });
                }
            }
            Err(e) => progress.event(&RunbookEvent::Warning {
                message: format!(
                    "could not count rows written on the new database since the cutover: {e}"
                ),
            }),
        }
    }
    let (config_before, unrecoverable) = journal.config_to_restore(&dir);
    if !unrecoverable.is_empty() {
        progress.event(&RunbookEvent::Warning {
            message: format!(
                "the old values of {} are missing from {} or differ from the journal: set them by hand",
                unrecoverable.join(", "),
                dir.config_values(&app).display()
            ),
        });
        report.vars_to_restore_by_hand.extend(unrecoverable);
    }
    let undone = cutover::undo(
        &ctx.heroku,
        &app,
        &old_addon,
        &plan.cutover.backup_alias,
        &journal.old_attachments,
        &config_before,
    )
    .await
    .map_err(|e| step_err("switching back to the old add-on", &e))?;
    report.actions.extend(undone);
    if !formation_after.is_empty() {
        let q: Vec<(String, u32)> = formation_after.clone().into_iter().collect();
        restore_formation(ctx, &app, &q)
            .await
            .map_err(|e| step_err("scaling dynos back", &e))?;
        report
            .actions
            .push(format!("dynos {}", formation_words(&formation_after)));
    }
    if !journal.maintenance_was_on {
        ctx.heroku
            .set_maintenance(&app, false)
            .await
            .map_err(|e| step_err("maintenance off", &e))?;
        report.actions.push("maintenance off".into());
        progress.event(&RunbookEvent::MaintenanceOff {
            at: Utc::now(),
            downtime_seconds: 0.0,
        });
    }
    journal.state = RunState::RolledBack;
    journal.save(&dir)?;
    Ok(report)
}

async fn rows_written_since(
    ctx: &Context,
    plan: &Plan,
    mark: &writes::WriteMark,
) -> Result<writes::WriteActivity, String> {
    let target = super::target::resolve_target(&plan.target, &*ctx.env, &ctx.aws_for(plan)).await?;
    let client = crate::pg::connect(&target.url)
        .await
        .map_err(|e| e.to_string())?
        .into_client();
    // Backends report their counters up to seconds late: wait for them
    // when anything was written at all.
    writes::check_since(&client, mark, ctx.flush_wait)
        .await
        .map_err(|e| e.to_string())
}

/// Where a migration stands, from the journal and the live app.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Status {
    /// The app.
    pub app: String,
    /// The journal's state, if there is a journal.
    pub state: Option<RunState>,
    /// The next step to run.
    pub next_step: Option<StepId>,
    /// Steps done so far.
    pub steps_done: usize,
    /// Every step's status.
    pub steps: Vec<(StepId, StepStatus, Option<String>)>,
    /// The host `DATABASE_URL` points at now.
    pub database_url_host: Option<String>,
    /// The add-on attached as `DATABASE` now, if any.
    pub database_addon: Option<String>,
    /// Whether the app is in maintenance mode.
    pub maintenance: bool,
    /// Seconds of maintenance so far in this migration.
    pub downtime_seconds: Option<f64>,
}

/// Reads the journal and the app's current state; changes nothing.
pub async fn status(plan: &Plan, ctx: &Context) -> Result<Status, RunbookError> {
    let app = plan.heroku.app.clone();
    let dir = WorkDir::new(&plan.work_dir);
    let journal = Journal::load(&dir, &app)?;
    let api = |what: &str, e: crate::heroku::HerokuError| RunbookError::Step {
        what: format!("reading {what} of app {app}"),
        reason: e.to_string(),
    };
    let maintenance = ctx
        .heroku
        .maintenance(&app)
        .await
        .map_err(|e| api("maintenance", e))?;
    let vars = ctx
        .heroku
        .config_vars(&app)
        .await
        .map_err(|e| api("config vars", e))?;
    let database_url_host = vars.get("DATABASE_URL").map(|v| {
        use secrecy::ExposeSecret;
        v.expose_secret()
            .parse::<DatabaseUrl>()
            .map(|u| u.host().to_string())
            .unwrap_or_else(|_| "(not a valid database URL)".into())
    });
    let database_addon = ctx
        .heroku
        .database_addon(&app)
        .await
        .map_err(|e| api("add-ons", e))?
        .map(|p| p.addon.name);
    Ok(Status {
        app,
        state: journal.as_ref().map(|j| j.state.clone()),
        next_step: journal.as_ref().and_then(Journal::next_step),
        steps_done: journal.as_ref().map_or(0, |j| {
            StepId::ALL.iter().filter(|s| j.is_finished(**s)).count()
        }),
        steps: journal
            .as_ref()
            .map(|j| {
                j.steps
                    .iter()
                    .map(|s| (s.id, s.status, s.detail.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        database_url_host,
        database_addon,
        maintenance,
        downtime_seconds: journal
            .as_ref()
            .and_then(Journal::downtime)
            .map(|d| d.num_milliseconds() as f64 / 1000.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_after_a_late_failure_says_maintenance_is_off() {
        let mut j = Journal::new("app");
        j.old_addon = Some("postgresql-rigid-71273".into());
        j.target_host = Some("rds.example".into());
        for step in [
            StepId::AttachBackup,
            StepId::DetachDatabase,
            StepId::SetConfig,
        ] {
            j.start(step);
            j.finish(step, "done".to_string());
        }
        j.maintenance_on_at = Some(Utc::now());
        j.formation_before.insert("worker".into(), 2);
        let during = describe_state(&j, "HEROKU_POSTGRES_DB");
        assert!(
            during.contains("DATABASE_URL points at rds.example"),
            "{during}"
        );
        assert!(during.contains("maintenance mode is still ON"), "{during}");
        assert!(
            during.contains("scaled to 0") && during.contains("worker"),
            "{during}"
        );

        j.start(StepId::ScaleUp);
        j.finish(StepId::ScaleUp, "done".to_string());
        j.maintenance_off_at = Some(Utc::now());
        let late = describe_state(&j, "HEROKU_POSTGRES_DB");
        assert!(late.contains("maintenance mode is off"), "{late}");
        assert!(!late.contains("scaled to 0"), "{late}");
    }
}
