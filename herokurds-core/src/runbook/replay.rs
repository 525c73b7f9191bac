//! Lossless rollback: change capture on the target from the cutover on
//! (step [`StepId::TargetCapture`]), replayed onto the old database by
//! `rollback`, and removed by `finish`.
//!
//! The capture is online mode's ([`crate::transfer::online`]) with the
//! roles swapped: RDS is the source of the changes and Heroku their
//! target. It starts "in sync" ([`OnlineMigration::start_in_sync`]) while
//! the window keeps both databases equal and quiet, so replaying is the
//! online window run the other way: the schema compared with the one at
//! the cutover (DDL cannot be captured), one round applying every logged
//! change, every changed key and each changed table's row count compared,
//! large objects copied again if any was written, sequences set. Its
//! journal lives in [`WorkDir::back_work_dir`]; each round commits on
//! Heroku in one transaction and is journaled after, and a round applied
//! again gives the same rows, so a rollback killed anywhere resumes.

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::error::RunbookError;
use super::journal::{Journal, StepId, StepStatus, WorkDir};
use super::steps::{Outcome, Runner};
use super::{writes, Context, Plan, RunbookEvent, StepError};
use crate::pg::DbIdentity;
use crate::progress::Progress;
use crate::transfer::online::{self, OnlineError, OnlineMigration, OnlineState};
use crate::transfer::TransferOptions;
use crate::url::DatabaseUrl;

/// What a rollback copied back from the target to the old database, over
/// every attempt (a rollback interrupted and run again reports it all).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Changes (logged row writes) made on the target since the cutover.
    pub changes: u64,
    /// Distinct rows (keys) copied back.
    pub keys: u64,
    /// Tables written on the target since the cutover.
    pub tables: usize,
    /// Bytes copied back.
    pub bytes: u64,
    /// Keys compared on both sides after the replay.
    pub keys_compared: u64,
    /// Tables whose row counts were compared on both sides.
    pub tables_counted: usize,
    /// Sequences set to the target's values.
    pub sequences: usize,
    /// Large objects copied again (written on the target), if any.
    pub large_objects_recopied: Option<usize>,
    /// The replay's own time (inside the rollback's window).
    pub seconds: f64,
}

/// The options of the capture on the target: the plan's table filter and
/// copy format, in its own work directory.
fn back_options(
    plan: &Plan,
    ctx: &Context,
    dir: &WorkDir,
) -> Result<TransferOptions, crate::size::SizeError> {
    Ok(plan
        .transfer
        .options(ctx.pg_bin_dir.as_deref())?
        .work_dir(dir.back_work_dir(&plan.heroku.app)))
}

/// The capture on the target, when this migration installed it and it is
/// still there.
pub(super) fn active_capture(
    dir: &WorkDir,
    app: &str,
    journal: &Journal,
) -> Result<Option<OnlineState>, OnlineError> {
    if matches!(
        journal.step(StepId::TargetCapture).status,
        StepStatus::Pending | StepStatus::Skipped
    ) {
        return Ok(None);
    }
    Ok(online::load_state(&dir.back_work_dir(app))?
        .filter(|s| s.capture_installed && !s.capture_removed))
}

impl<P: Progress<RunbookEvent>> Runner<'_, P> {
    /// Installs capture on the target, inside the window, just before the
    /// app is switched to it.
    pub(super) async fn target_capture(
        &mut self,
        before: StepStatus,
    ) -> Result<Outcome, StepError> {
        if !self.plan.cutover.capture_target_writes {
            return Ok(Outcome::Skipped(
                "[cutover] capture_target_writes = false: a rollback will refuse while rows written on the \
                 target since the cutover would be lost (--discard-target-writes loses them)"
                    .into(),
            ));
        }
        let opts =
            back_options(self.plan, self.ctx, &self.dir).map_err(|e| StepError::Refused {
                message: format!("[transfer] split_tables_larger_than: {e}"),
            })?;
        if before == StepStatus::Pending {
            // An earlier attempt's capture starts over.
            online::discard_journal(opts.get_work_dir())?;
        }
        let p = self.online_progress();
        let mut m = OnlineMigration::open(&self.target, &self.source, &opts)?;
        m.start_in_sync(&p).await?;
        Ok(Outcome::Done(format!(
            "change capture on {} table(s) of the target: the app's writes there are logged from the \
             cutover on, so `herokurds rollback` copies them back to the old database; `herokurds finish` \
             removes it",
            m.state().tables.len()
        )))
    }
}

/// Why a replay stopped.
pub(super) enum ReplayStop {
    /// What cannot be replayed, in words: refuse, naming it.
    Refused(Vec<String>),
    /// An error that running the rollback again may get past.
    Failed(RunbookError),
}

/// Replays onto `source` (the old database) every change logged on
/// `target` since the cutover. The app must be in maintenance with its
/// workers stopped: the target is settled first.
pub(super) async fn replay(
    plan: &Plan,
    ctx: &Context,
    dir: &WorkDir,
    source: &DatabaseUrl,
    target: &DatabaseUrl,
    progress: &impl Progress<RunbookEvent>,
) -> Result<ReplayReport, ReplayStop> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        ReplayStop::Failed(RunbookError::Step {
            what: format!("rollback of app {}: {what}", plan.heroku.app),
            reason: e.to_string(),
        })
    };
    let opts = back_options(plan, ctx, dir).map_err(|e| failed("the plan's [transfer]", &e))?;
    let address = DbIdentity::of_url(target, "").address();

    // Settle: requests in flight when maintenance went on write to RDS.
    let client = crate::pg::connect(target)
        .await
        .map_err(|e| failed("connecting to the target", &e))?
        .into_client();
    let m = &plan.maintenance;
    let settled = writes::settle(&client, m.settle, m.settle_timeout, ctx.flush_wait, |p| {
        progress.event(&RunbookEvent::Settling {
            waited_seconds: p.waited.as_secs_f64(),
            quiet_seconds: p.quiet_for.as_secs_f64(),
            needed_seconds: m.settle.as_secs_f64(),
        })
    })
    .await
    .map_err(|e| failed("waiting for the target to settle", &e))?;
    drop(client);
    if let writes::Settled::StillWriting {
        activity, sessions, ..
    } = settled
    {
        let mut what = vec![format!(
            "{address} was still being written after {} of maintenance",
            crate::duration::format_duration(m.settle_timeout)
        )];
        what.extend(writes::still_writing_words(&activity, &sessions));
        what.push(
            "stop what writes there (other apps, scheduled jobs, process types not in \
             [maintenance] scale_down)"
                .into(),
        );
        return Err(ReplayStop::Refused(what));
    }

    let p = super::forward(progress, |e: &online::OnlineEvent| {
        RunbookEvent::Online(e.clone())
    });
    let mut back = OnlineMigration::open(target, source, &opts)
        .map_err(|e| failed("opening the target's change log", &e))?;
    let w = match back.finish_window(&p, &CancellationToken::new()).await {
        Ok(w) => w,
        Err(OnlineError::SchemaChanged { changes }) => {
            return Err(ReplayStop::Refused(
                changes
                    .into_iter()
                    .map(|c| format!("the schema changed on the target since the cutover: {c}"))
                    .collect(),
            ))
        }
        Err(OnlineError::KeysDiffer { tables }) => {
            return Err(ReplayStop::Refused(
                tables
                    .into_iter()
                    .map(|t| format!("after copying back, {t} (source = old database)"))
                    .collect(),
            ))
        }
        Err(e) => return Err(failed("copying the target's writes back", &e)),
    };
    match back.check_quiet().await {
        Ok(()) => {}
        Err(OnlineError::StillWriting { changes, tables }) => {
            return Err(ReplayStop::Refused(vec![format!(
                "{changes} change(s) were logged on the target while copying back, in {}",
                tables.join(", ")
            )]))
        }
        Err(e) => return Err(failed("checking the target's change log", &e)),
    }
    // Every round since the cutover: a rollback interrupted after its
    // round and run again applies nothing new.
    let totals = &back.state().applied_totals;
    Ok(ReplayReport {
        changes: totals.changes,
        keys: totals.keys,
        tables: totals.tables.len(),
        bytes: totals.bytes,
        keys_compared: w.keys_checked,
        tables_counted: w.tables_counted,
        sequences: w.sequences,
        large_objects_recopied: w.large_objects_recopied,
        seconds: w.seconds,
    })
}

/// Ends the capture on the target: foreign keys held back on the old
/// database put back and validated, capture removed from the target.
/// Returns what was done, in words, or what to do by hand.
pub(super) async fn end_capture(
    plan: &Plan,
    ctx: &Context,
    dir: &WorkDir,
    source: &DatabaseUrl,
    target: &DatabaseUrl,
    progress: &impl Progress<RunbookEvent>,
) -> Result<String, RunbookError> {
    let by_hand = |e: &dyn std::fmt::Display| RunbookError::Step {
        what: format!(
            "removing change capture from the target of app {}",
            plan.heroku.app
        ),
        reason: format!(
            "{e}\nrun the same command again, or as the target's owner: DROP SCHEMA {} CASCADE",
            online::CAPTURE_SCHEMA
        ),
    };
    let opts = back_options(plan, ctx, dir).map_err(|e| by_hand(&e))?;
    let p = super::forward(progress, |e: &online::OnlineEvent| {
        RunbookEvent::Online(e.clone())
    });
    let mut back = OnlineMigration::open(target, source, &opts).map_err(|e| by_hand(&e))?;
    let held = back
        .state()
        .held_back
        .as_ref()
        .map_or(0, |h| h.foreign_keys.len());
    back.release().await.map_err(|e| by_hand(&e))?;
    back.finish(&p).await.map_err(|e| by_hand(&e))?;
    Ok(if held > 0 {
        format!(
            "change capture removed from the target; {held} foreign key(s) of the old database validated"
        )
    } else {
        "change capture removed from the target".into()
    })
}

/// [`end_capture`] when the capture on the target is active (`None` when
/// there is none), on `urls` or, without them, on the URLs resolved as
/// `resume` does. Returns what was done, or what to do by hand.
pub(super) async fn end_capture_for(
    plan: &Plan,
    ctx: &Context,
    journal: &Journal,
    urls: Option<(&DatabaseUrl, &DatabaseUrl)>,
    progress: &impl Progress<RunbookEvent>,
) -> Option<Result<String, String>> {
    let dir = WorkDir::new(&plan.work_dir);
    match active_capture(&dir, &plan.heroku.app, journal) {
        Ok(None) => return None,
        Ok(Some(_)) => {}
        Err(e) => {
            return Some(Err(format!(
                "reading the target capture's journal: {e}; if schema {} is on the target, \
                 remove it with `herokurds finish --config {}`",
                online::CAPTURE_SCHEMA,
                ctx.plan_path
            )))
        }
    }
    let resolved;
    let (source, target) = match urls {
        Some(u) => u,
        None => match super::target::resolve_urls(plan, ctx, journal).await {
            Ok(u) => {
                resolved = u;
                (&resolved.0, &resolved.1)
            }
            Err(e) => {
                return Some(Err(format!(
                    "change capture is still on the target ({e}); remove it with \
                     `herokurds finish --config {}`",
                    ctx.plan_path
                )))
            }
        },
    };
    Some(
        end_capture(plan, ctx, &dir, source, target, progress)
            .await
            .map_err(|e| e.to_string()),
    )
}

/// Changes logged on the target since the cutover, for `status`.
pub(super) async fn logged_changes(
    plan: &Plan,
    ctx: &Context,
    dir: &WorkDir,
    source: &DatabaseUrl,
    target: &DatabaseUrl,
) -> Result<i64, RunbookError> {
    let failed = |e: &dyn std::fmt::Display| RunbookError::Step {
        what: "counting the changes logged on the target".into(),
        reason: e.to_string(),
    };
    let opts = back_options(plan, ctx, dir).map_err(|e| failed(&e))?;
    OnlineMigration::open(target, source, &opts)
        .map_err(|e| failed(&e))?
        .pending_changes()
        .await
        .map_err(|e| failed(&e))
}

/// What `finish` did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FinishReport {
    /// The app.
    pub app: String,
    /// Each action, in words.
    pub actions: Vec<String>,
}

/// Ends a completed migration once the operator trusts the target: removes
/// the change capture installed on the target at the cutover (a rollback
/// then can no longer copy the target's writes back, and refuses unless
/// told to lose them) and any capture online mode left on the source.
/// Repeating it is harmless.
pub async fn finish(
    plan: &Plan,
    ctx: &Context,
    progress: &impl Progress<RunbookEvent>,
) -> Result<FinishReport, RunbookError> {
    let app = plan.heroku.app.clone();
    let dir = WorkDir::new(&plan.work_dir);
    let _lock = super::journal::AppLock::acquire(&dir, &app)?;
    let journal = Journal::load(&dir, &app)?.ok_or_else(|| RunbookError::WrongState {
        message: format!(
            "no migration of app {app} to finish (no journal at {})",
            dir.journal(&app).display()
        ),
    })?;
    match &journal.state {
        super::RunState::Completed => {}
        super::RunState::InProgress => {
            return Err(RunbookError::WrongState {
                message: format!(
                    "the migration of app {app} has not completed (next step: {}); finish it with \
                     `herokurds resume --config {plan}` or undo it with `herokurds rollback --config {plan}` first",
                    journal
                        .next_step()
                        .map_or_else(|| "none".to_string(), |s| s.to_string()),
                    plan = ctx.plan_path
                ),
            })
        }
        other => {
            return Err(RunbookError::WrongState {
                message: format!(
                    "nothing to finish: the migration of app {app} is {} (its capture was removed then)",
                    match other {
                        super::RunState::RolledBack => "rolled back",
                        _ => "aborted",
                    }
                ),
            })
        }
    }
    let mut report = FinishReport {
        app: app.clone(),
        actions: Vec::new(),
    };
    let capture = active_capture(&dir, &app, &journal).map_err(|e| RunbookError::Step {
        what: format!("reading the target capture's journal of app {app}"),
        reason: e.to_string(),
    })?;
    let (source, target) = super::target::resolve_urls(plan, ctx, &journal)
        .await
        .map_err(|e| RunbookError::Step {
            what: format!("finish of app {app}: finding the databases"),
            reason: e,
        })?;
    if capture.is_some() {
        super::target::check_identity(plan, ctx, &journal, crate::transfer::Side::Target, &target)
            .await?;
        report
            .actions
            .push(end_capture(plan, ctx, &dir, &source, &target, progress).await?);
    } else {
        report
            .actions
            .push("no change capture on the target (already removed, or off in the plan)".into());
    }
    if let Some(done) = super::online::remove_capture(&journal, &source).await {
        report
            .actions
            .push(done.map_err(|reason| RunbookError::Step {
                what: format!("finish of app {app}: removing capture from the source"),
                reason,
            })?);
    }
    Ok(report)
}
