//! `rollback`: puts the app back on its old database.

use chrono::Utc;
use serde::Serialize;

use super::error::RunbookError;
use super::journal::{AppLock, Journal, RunState, StepId, StepStatus, WorkDir};
use super::run::{end_state, maintenance_still_on, restore_app, scale_back_failed};
use super::steps::{formation_words, restore_formation};
use super::target::{check_identity, resolve_urls, resolved_target};
use super::{cutover, replay, writes, Context, Plan, RunbookEvent};
use crate::pg::DbIdentity;
use crate::progress::Progress;
use crate::transfer::Side;
use crate::url::DatabaseUrl;

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
    /// What was copied back from the target (its change capture, installed
    /// at the cutover), when anything was.
    pub replayed: Option<super::ReplayReport>,
    /// Seconds from maintenance on to maintenance off, when this rollback
    /// turned it off.
    pub downtime_seconds: Option<f64>,
    /// Plan config vars whose old value was not journaled (it looked
    /// secret): restore them by hand.
    pub vars_to_restore_by_hand: Vec<String>,
}

/// Puts the app back on its old database: maintenance on while switching,
/// the plan's workers stopped, the old add-on promoted to `DATABASE`
/// (Heroku CLI's `pg:promote`), the plan's config vars restored, dynos
/// scaled back, maintenance off.
///
/// With the change capture installed on the target at the cutover (step
/// [`StepId::TargetCapture`], until [`finish`](super::finish)), every
/// write the app made on the target since then is first copied back to
/// the old database (see [`super::ReplayReport`]): the target settled, its
/// schema compared with the cutover's, the logged rows deleted and copied
/// again, every changed key and each changed table's row count compared,
/// sequences set. What cannot be copied back (DDL on the target, rows that
/// still differ, writes that do not stop) is refused with
/// [`RunbookError::ReplayRefused`] before anything is switched.
///
/// Without capture, the rows written on the target since the cutover are
/// counted (with maintenance on and the plan's workers stopped, so the
/// count is final): when there are any, or they cannot be counted, it
/// refuses with [`RunbookError::TargetWrites`].
///
/// Either refusal puts maintenance and dynos back as they were, unless
/// [`Context::discard_target_writes`] allows switching back without the
/// target's writes. A target other than the journaled one is refused with
/// [`RunbookError::IdentityMismatch`]. A rollback interrupted anywhere can
/// be run again: a replayed round applied twice gives the same rows.
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
        replayed: None,
        downtime_seconds: None,
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
            if journal.step(journal.copy_step()).status != StepStatus::Pending {
                (journal.target_end_mark, journal.target_end_owned) =
                    match resolved_target(plan, ctx).await {
                        Ok(target) => end_state(&target, ctx.flush_wait).await,
                        Err(_) => (None, None),
                    };
            }
            let mut failures = failures;
            let mut restored = restored;
            match super::online::remove_capture_for(plan, ctx, &journal).await {
                Some(Ok(done)) => restored.push(done),
                Some(Err(e)) => failures.push(e),
                None => {}
            }
            match replay::end_capture_for(plan, ctx, &journal, None, progress).await {
                Some(Ok(done)) => restored.push(done),
                Some(Err(e)) => failures.push(e),
                None => {}
            }
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
    // Downtime counts from here (or from this command's start when an
    // interrupted rollback left maintenance on).
    let window_start = std::time::Instant::now();
    let downtime = || window_start.elapsed().as_secs_f64();
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
    let mut stopped: Vec<(String, u32)> = Vec::new();
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
            formation_after.extend(running.iter().cloned());
            stopped = running;
        }
    }
    // With capture on the target, its writes are copied back; without,
    // they are counted, and a rollback that would lose some refuses.
    let capture = replay::active_capture(&dir, &app, &journal)
        .map_err(|e| step_err("reading the target's capture journal", &e))?;
    let mut urls = None;
    let mut replay_refusal = None;
    if capture.is_some() && !ctx.discard_target_writes {
        match replay_writes(plan, ctx, &dir, &journal, progress).await {
            Ok((replayed, source, target)) => {
                // All copied back: none left behind.
                report.target_writes = Some(0);
                report.replayed = Some(replayed);
                urls = Some((source, target));
            }
            Err(e) => replay_refusal = Some(e),
        }
    }
    // The app could write on the target only once DATABASE_URL was set.
    let counted = if report.replayed.is_some()
        || replay_refusal.is_some()
        || journal.step(StepId::SetConfig).status == StepStatus::Pending
    {
        None
    } else {
        Some(match &journal.target_mark {
            Some(mark) => rows_written_since(ctx, plan, &journal, mark).await,
            None => Err(TargetCount::Unknown(
                "the journal has no write position of the target at the cutover".into(),
            )),
        })
    };
    let refusal = match counted {
        None => None,
        Some(Ok((_, activity))) if activity.is_quiet() => {
            report.target_writes = Some(0);
            None
        }
        Some(Ok((target, activity))) => {
            let rows: i64 = activity.tables.values().map(|n| n.unwrap_or(0)).sum();
            report.target_writes = Some(rows);
            report.target_tables_written = activity.tables.keys().cloned().collect();
            Some(RunbookError::TargetWrites {
                app: app.clone(),
                target,
                tables: activity.tables.into_iter().collect(),
                unknown: None,
                plan: ctx.plan_path.clone(),
            })
        }
        Some(Err(TargetCount::Unknown(why))) => Some(RunbookError::TargetWrites {
            app: app.clone(),
            target: journal
                .target_identity
                .as_ref()
                .map_or_else(|| "the target".into(), DbIdentity::address),
            tables: Vec::new(),
            unknown: Some(why),
            plan: ctx.plan_path.clone(),
        }),
        Some(Err(TargetCount::Mismatch(e))) => Some(e),
    }
    .or(replay_refusal);
    if let Some(refusal) = refusal {
        let discardable = matches!(
            refusal,
            RunbookError::TargetWrites { .. } | RunbookError::ReplayRefused { .. }
        );
        if !(discardable && ctx.discard_target_writes) {
            // Put back what the rollback changed for counting: the app
            // keeps running on the target as before.
            let mut failures = Vec::new();
            if !stopped.is_empty() {
                if let Err(e) = restore_formation(ctx, &app, &stopped).await {
                    failures.push(scale_back_failed(
                        &app,
                        &stopped.iter().cloned().collect(),
                        &e,
                    ));
                }
            }
            if !maintenance_now {
                if let Err(e) = ctx.heroku.set_maintenance(&app, false).await {
                    failures.push(maintenance_still_on(&app, &e));
                } else {
                    progress.event(&RunbookEvent::MaintenanceOff {
                        at: Utc::now(),
                        downtime_seconds: downtime(),
                    });
                }
            }
            if !failures.is_empty() {
                // Rolling back again would refuse again: say what does help.
                let anyway = if discardable {
                    format!(
                        "; or, to switch back to the old database anyway and lose those writes, run \
                         `herokurds rollback --config {} --discard-target-writes`",
                        ctx.plan_path
                    )
                } else {
                    String::new()
                };
                return Err(RunbookError::Step {
                    what: format!(
                        "rollback of app {app}: putting the app back after refusing ({refusal})"
                    ),
                    reason: format!(
                        "{}\nthe rollback was refused and nothing was switched: the app still runs on the \
                         target. Run the command(s) above to put its dynos and maintenance mode back as they \
                         were{anyway}",
                        failures.join("; ")
                    ),
                });
            }
            return Err(refusal);
        }
        if let RunbookError::TargetWrites {
            target,
            tables,
            unknown,
            ..
        } = &refusal
        {
            progress.event(&RunbookEvent::Warning {
                message: format!(
                    "--discard-target-writes: switching back although {}; they stay on {target} and are NOT copied back",
                    super::error::target_writes_words(tables, unknown.as_deref())
                ),
            });
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
    let (switched_back, cloudfront_failures) = super::cdn::undo(plan, ctx, &mut journal).await;
    report.actions.extend(switched_back);
    for f in cloudfront_failures {
        progress.event(&RunbookEvent::Warning { message: f.clone() });
        report.actions.push(format!("NOT DONE: {f}"));
    }
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
        report.downtime_seconds = Some(downtime());
        progress.event(&RunbookEvent::MaintenanceOff {
            at: Utc::now(),
            downtime_seconds: downtime(),
        });
    }
    if journal.step(StepId::SetConfig).status == StepStatus::Pending {
        // The app never ran on the target: the next attempt may start over
        // if nothing writes there meanwhile.
        (journal.target_end_mark, journal.target_end_owned) = match resolved_target(plan, ctx).await
        {
            Ok(target) => end_state(&target, ctx.flush_wait).await,
            Err(_) => (None, None),
        };
    }
    match super::online::remove_capture_for(plan, ctx, &journal).await {
        Some(Ok(done)) => report.actions.push(done),
        Some(Err(e)) => progress.event(&RunbookEvent::Warning { message: e }),
        None => {}
    }
    // Foreign keys held back on the old database validated, capture
    // removed from the target (a discarded replay too).
    let urls = urls.as_ref().map(|(s, t)| (s, t));
    match replay::end_capture_for(plan, ctx, &journal, urls, progress).await {
        Some(Ok(done)) => report.actions.push(done),
        Some(Err(e)) => {
            progress.event(&RunbookEvent::Warning { message: e.clone() });
            report.actions.push(format!("NOT DONE: {e}"));
        }
        None => {}
    }
    journal.state = RunState::RolledBack;
    journal.save(&dir)?;
    Ok(report)
}

/// Copies the writes made on the target since the cutover back to the old
/// database (see [`replay`]), after checking the target is the journaled
/// one; returns what was copied and the URLs used.
async fn replay_writes(
    plan: &Plan,
    ctx: &Context,
    dir: &WorkDir,
    journal: &Journal,
    progress: &impl Progress<RunbookEvent>,
) -> Result<(super::ReplayReport, DatabaseUrl, DatabaseUrl), RunbookError> {
    let app = &plan.heroku.app;
    let (source, target) =
        resolve_urls(plan, ctx, journal)
            .await
            .map_err(|e| RunbookError::Step {
                what: format!("rollback of app {app}: finding the databases to copy back between"),
                reason: e,
            })?;
    check_identity(plan, ctx, journal, Side::Target, &target).await?;
    check_identity(plan, ctx, journal, Side::Source, &source).await?;
    match replay::replay(plan, ctx, dir, &source, &target, progress).await {
        Ok(r) => Ok((r, source, target)),
        Err(replay::ReplayStop::Refused(reasons)) => Err(RunbookError::ReplayRefused {
            app: app.clone(),
            target: DbIdentity::of_url(&target, "").address(),
            reasons,
            plan: ctx.plan_path.clone(),
        }),
        Err(replay::ReplayStop::Failed(e)) => Err(e),
    }
}

/// Why rows written on the target could not be counted.
enum TargetCount {
    /// The count failed; why.
    Unknown(String),
    /// The plan now names another target than the journal.
    Mismatch(RunbookError),
}

/// The target's address and the rows written there since `mark`, after
/// checking it is the database the journal recorded.
async fn rows_written_since(
    ctx: &Context,
    plan: &Plan,
    journal: &Journal,
    mark: &writes::WriteMark,
) -> Result<(String, writes::WriteActivity), TargetCount> {
    let target = resolved_target(plan, ctx)
        .await
        .map_err(TargetCount::Unknown)?;
    check_identity(plan, ctx, journal, Side::Target, &target)
        .await
        .map_err(|e| match e {
            RunbookError::IdentityMismatch { .. } => TargetCount::Mismatch(e),
            other => TargetCount::Unknown(other.to_string()),
        })?;
    let client = crate::pg::connect(&target)
        .await
        .map_err(|e| TargetCount::Unknown(e.to_string()))?
        .into_client();
    // Backends report their counters up to seconds late: wait for them
    // when anything was written at all.
    let activity = writes::check_since(&client, mark, ctx.flush_wait)
        .await
        .map_err(|e| TargetCount::Unknown(e.to_string()))?;
    Ok((DbIdentity::of_url(&target, "").address(), activity))
}
