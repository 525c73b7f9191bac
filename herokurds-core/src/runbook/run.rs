//! `run` and `resume`: the loop that walks the steps, journaling each,
//! and what puts the app back when a run stops before the cutover.

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::error::{RunbookError, StepError};
use super::journal::{AppLock, Journal, OwnedObjects, RunState, StepId, StepStatus, WorkDir};
use super::report::Report;
use super::status::describe_state;
use super::steps::{formation_words, restore_formation, Outcome, Runner};
use super::target::{check_identity, resolve_urls, resolved_target};
use super::{writes, Context, Plan, RunbookEvent};
use crate::pg::DbIdentity;
use crate::progress::Progress;
use crate::transfer::Side;
use crate::url::DatabaseUrl;

/// Performs the migration from the first step. Refuses when a migration of
/// the app is in progress (use [`resume`]) or completed (roll it back
/// first). An earlier aborted or rolled-back attempt is started over, and
/// its copy on the target dropped, only when nothing but the transfer can
/// have written there (the attempt stopped before the app was switched to
/// the target, the target is the database it copied into, and since then
/// no table there changed and the target's user owns the same objects:
/// no view, function, type or schema was created or dropped), or when
/// [`Context::restart_target`] allows it; otherwise
/// [`RunbookError::TargetHasData`] says what the target holds, and nothing
/// is changed.
pub async fn run(
    plan: &Plan,
    ctx: &Context,
    progress: &impl Progress<RunbookEvent>,
    cancel: CancellationToken,
) -> Result<Report, RunbookError> {
    let app = &plan.heroku.app;
    let (dir, _lock) = lock_app(plan, progress)?;
    let previous = Journal::load(&dir, app)?;
    if let Some(previous) = &previous {
        match &previous.state {
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
    // The earlier journal is replaced only once this attempt may go ahead:
    // a refusal leaves it as it was.
    let mut journal = Journal::new(app);
    journal.earlier_copy = previous.as_ref().and_then(Journal::earlier_copy_for_next);
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
    if dir.transfer(app).exists() {
        let why = approve_restart(plan, ctx, &journal, &target).await?;
        progress.event(&RunbookEvent::Warning {
            message: format!(
                "starting over: the earlier copy on {} will be dropped ({why})",
                DbIdentity::of_url(&target, "").address()
            ),
        });
        journal.restart_approved = Some(why);
    }
    journal.save(&dir)?;
    drive(plan, ctx, dir, journal, source, target, progress, cancel).await
}

/// Decides whether this attempt may drop what an earlier one left on the
/// target: yes with `--restart-target`, or when that attempt stopped
/// before the app was switched to the target, the target is the database
/// it copied into, and since it stopped no table there changed and the
/// target's user owns the same objects (so nothing but the transfer wrote
/// there: no view, function, type or schema was added). Otherwise refuses,
/// saying what the target holds and what changed.
async fn approve_restart(
    plan: &Plan,
    ctx: &Context,
    journal: &Journal,
    target: &DatabaseUrl,
) -> Result<String, RunbookError> {
    if ctx.restart_target {
        return Ok("--restart-target: the operator confirmed".into());
    }
    let client = crate::pg::connect(target)
        .await
        .map_err(|e| RunbookError::Step {
            what: format!("checking what the target of app {} holds", plan.heroku.app),
            reason: e.to_string(),
        })?
        .into_client();
    let read_err = |what: &str, e: tokio_postgres::Error| RunbookError::Step {
        what: format!("reading {what} of the target of app {}", plan.heroku.app),
        reason: e.to_string(),
    };
    let earlier = journal.earlier_copy.as_ref();
    let why = match earlier {
        None => {
            "the work directory holds a transfer that no journaled attempt accounts for".to_string()
        }
        Some(e) => {
            let copied = e
                .copied_at
                .map_or("did not finish".to_string(), |t| format!("finished at {t}"));
            let now = DbIdentity::read(&client, target).await;
            match (&e.cutover_at, &e.target, &e.end_mark, &e.end_owned) {
                (Some(at), ..) => format!(
                    "An earlier attempt's copy ({copied}) became the app's database at {at} and the app ran on it \
                     until {}: everything written there since the cutover would be lost",
                    e.ended_at
                ),
                (None, None, ..) => format!(
                    "An earlier attempt ({copied}, stopped at {}) did not identify the database it copied into, \
                     so nothing proves the target now ({now}) holds only its copy",
                    e.ended_at
                ),
                (None, Some(then), ..) if !then.same_as(&now) => format!(
                    "An earlier attempt's copy ({copied}) was made on {then}, but the target is now {now}: what \
                     that attempt recorded when it stopped at {} says nothing about this database",
                    e.ended_at
                ),
                (None, Some(_), Some(mark), Some(owned)) => {
                    let activity = writes::check_since(&client, mark, ctx.flush_wait)
                        .await
                        .map_err(|e| read_err("the write position", e))?;
                    let owned_now = owned_objects(&client)
                        .await
                        .map_err(|e| read_err("the objects owned by the user", e))?;
                    let mut changes = Vec::new();
                    if !activity.is_quiet() {
                        changes.push(activity.describe());
                    }
                    if owned_now != *owned {
                        let new = objects_created_since(&client, owned.newest_oid)
                            .await
                            .map_err(|e| read_err("the objects owned by the user", e))?;
                        changes.push(owned_change_words(owned, &owned_now, &new));
                    }
                    if changes.is_empty() {
                        return Ok(format!(
                            "it is the copy of the attempt that stopped at {} before the cutover, and no table \
                             there changed and no object was created or dropped since: nothing but the transfer \
                             wrote there",
                            e.ended_at
                        ));
                    }
                    format!(
                        "An earlier attempt's copy ({copied}) changed after that attempt stopped at {}: {}; \
                         something other than herokurds writes there",
                        e.ended_at,
                        changes.join("; ")
                    )
                }
                (None, Some(_), ..) => format!(
                    "An earlier attempt's copy ({copied}) is there; that attempt stopped at {} without recording \
                     the target's write position and what its user owned there, so nothing proves only the \
                     transfer wrote there",
                    e.ended_at
                ),
            }
        }
    };
    let holdings = match crate::pg::Holdings::read(&client).await {
        Ok(h) => h.to_string(),
        Err(e) => format!("data that could not be listed ({e})"),
    };
    Err(RunbookError::TargetHasData {
        app: plan.heroku.app.clone(),
        target: DbIdentity::of_url(target, "").address(),
        holdings,
        why,
        plan: ctx.plan_path.clone(),
    })
}

/// Which objects the session user owns in the current database, summed up
/// (what `DROP OWNED BY CURRENT_USER` would drop; the same count as
/// [`crate::pg::Holdings`]).
pub(super) async fn owned_objects(
    client: &tokio_postgres::Client,
) -> Result<OwnedObjects, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_user::text, count(*)::int8,
                    md5(coalesce(string_agg(format('%s:%s:%s', d.classid, d.objid, d.objsubid), ','
                                            ORDER BY d.classid, d.objid, d.objsubid), '')),
                    coalesce(max(d.objid::int8), 0)::int8
             FROM pg_shdepend d
             WHERE d.refclassid = 'pg_authid'::regclass
               AND d.refobjid = (SELECT oid FROM pg_roles WHERE rolname = current_user)
               AND d.deptype = 'o'
               AND d.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await?;
    Ok(OwnedObjects {
        user: row.get(0),
        objects: row.get(1),
        fingerprint: row.get(2),
        newest_oid: row.get(3),
    })
}

/// Up to six objects the session user owns here that were created after
/// the object with OID `newest_oid`, in words (`view public.report`).
async fn objects_created_since(
    client: &tokio_postgres::Client,
    newest_oid: i64,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT i.type || ' ' || i.identity
             FROM pg_shdepend d,
                  LATERAL pg_identify_object(d.classid, d.objid, d.objsubid) AS i
             WHERE d.refclassid = 'pg_authid'::regclass
               AND d.refobjid = (SELECT oid FROM pg_roles WHERE rolname = current_user)
               AND d.deptype = 'o'
               AND d.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND d.objid::int8 > $1
             ORDER BY d.objid
             LIMIT 6",
            &[&newest_oid],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// How what the user owns changed, in words, naming new objects.
fn owned_change_words(then: &OwnedObjects, now: &OwnedObjects, new: &[String]) -> String {
    let mut words = format!(
        "the objects owned by {} changed ({} then, {} now",
        now.user, then.objects, now.objects
    );
    match new {
        [] => words.push_str("; some were dropped or replaced)"),
        [..] if new.len() > 5 => {
            words.push_str(&format!("; created since: {}, ...)", new[..5].join(", ")))
        }
        _ => words.push_str(&format!("; created since: {})", new.join(", "))),
    }
    words
}

/// The target database's name as the plan and environment resolve it
/// (what the binary asks the operator to type before `--restart-target`).
pub async fn target_database(plan: &Plan, ctx: &Context) -> Result<String, RunbookError> {
    resolved_target(plan, ctx)
        .await
        .map(|t| t.dbname().to_string())
        .map_err(|reason| RunbookError::Step {
            what: format!("resolving the target of app {}", plan.heroku.app),
            reason,
        })
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
    let (dir, _lock) = lock_app(plan, progress)?;
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
    check_identity(plan, ctx, &journal, Side::Source, &source).await?;
    check_identity(plan, ctx, &journal, Side::Target, &target).await?;
    drive(plan, ctx, dir, journal, source, target, progress, cancel).await
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
                let reason = failure.to_string();
                r.journal.fail(step, reason.clone());
                r.journal.save(&r.dir)?;
                emit_finished(progress, &r.journal, number, step);
                return Err(if r.journal.cutover_started() {
                    RunbookError::CutoverIncomplete {
                        app: plan.heroku.app.clone(),
                        step,
                        reason,
                        cause: Box::new(failure),
                        state: describe_state(&r.journal, &plan.cutover.backup_alias),
                        plan: ctx.plan_path.clone(),
                    }
                } else {
                    abort(&mut r, step, failure).await?
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

pub(super) async fn interrupted<P: Progress<RunbookEvent>>(
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
pub(super) async fn abort<P: Progress<RunbookEvent>>(
    r: &mut Runner<'_, P>,
    step: StepId,
    cause: StepError,
) -> Result<RunbookError, RunbookError> {
    let reason = cause.to_string();
    let app = r.plan.heroku.app.clone();
    let (mut restored, mut failures) = restore_app(r.ctx, &app, &mut r.journal).await;
    match super::online::remove_capture(&r.journal, &r.source).await {
        Some(Ok(done)) => restored.push(done),
        Some(Err(e)) => failures.push(e),
        None => {}
    }
    let urls = Some((&r.source, &r.target));
    match super::replay::end_capture_for(r.plan, r.ctx, &r.journal, urls, r.progress).await {
        Some(Ok(done)) => restored.push(done),
        Some(Err(e)) => failures.push(e),
        None => {}
    }
    if r.journal.step(r.journal.copy_step()).status != StepStatus::Pending {
        let (mark, owned) = end_state(&r.target, r.ctx.flush_wait).await;
        r.journal.target_end_mark = mark;
        r.journal.target_end_owned = owned;
    }
    r.journal.state = RunState::Aborted {
        reason: reason.clone(),
    };
    r.journal.save(&r.dir)?;
    Ok(RunbookError::Aborted {
        app,
        step,
        reason,
        cause: Box::new(cause),
        restored,
        restore_failures: failures,
    })
}

/// Scales dynos back and turns maintenance off when the migration turned
/// it on; returns what was restored and what could not be (with the command
/// that does it).
pub(super) async fn restore_app(
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
            Err(e) => failures.push(scale_back_failed(app, &journal.formation_before, &e)),
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
            Err(e) => failures.push(maintenance_still_on(app, &e)),
        }
    }
    (restored, failures)
}

/// A failed scale-back in words, with the command that does it by hand.
pub(super) fn scale_back_failed(
    app: &str,
    formation: &std::collections::BTreeMap<String, u32>,
    e: &dyn std::fmt::Display,
) -> String {
    format!(
        "scaling back {} failed ({e}); run: heroku ps:scale {} -a {app}",
        formation_words(formation),
        formation
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// A failed maintenance-off in words, with the command that does it by hand.
pub(super) fn maintenance_still_on(app: &str, e: &dyn std::fmt::Display) -> String {
    format!("maintenance is still ON ({e}); run: herokurds-heroku maintenance off -a {app}")
}

/// The write position of `target` and what its user owns there, each
/// `None` when it cannot be read (the next attempt then cannot prove the
/// target untouched, and refuses to start over without
/// `--restart-target`).
///
/// A session reports its table counters when it ends (or, idle, within
/// seconds): sessions the abort cancelled may still be ending. So this
/// first waits until no other session of the target's database remains,
/// at most `flush_wait` (the time counters take to be reported), rather
/// than record a position those sessions' writes would move a moment
/// later. No other session: no wait.
pub(super) async fn end_state(
    target: &DatabaseUrl,
    flush_wait: std::time::Duration,
) -> (Option<writes::WriteMark>, Option<OwnedObjects>) {
    let Ok(connection) = crate::pg::connect(target).await else {
        return (None, None);
    };
    let client = connection.into_client();
    let started = std::time::Instant::now();
    loop {
        let others = client
            .query_one(
                "SELECT count(*)::int8 FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()
                   AND backend_type = 'client backend'",
                &[],
            )
            .await
            .map(|row| row.get::<_, i64>(0));
        match others {
            Ok(n) if n > 0 && started.elapsed() < flush_wait => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            _ => break,
        }
    }
    (
        writes::mark(&client).await.ok(),
        owned_objects(&client).await.ok(),
    )
}

/// The plan's work directory and the app's lock, taken; a transfer state
/// an older herokurds left in the wrong place is moved where it belongs.
fn lock_app(
    plan: &Plan,
    progress: &impl Progress<RunbookEvent>,
) -> Result<(WorkDir, AppLock), RunbookError> {
    let dir = WorkDir::new(&plan.work_dir);
    let lock = AppLock::acquire(&dir, &plan.heroku.app)?;
    adopt_legacy_transfer(&dir, &plan.heroku.app, progress)?;
    Ok((dir, lock))
}

/// Moves a transfer's state an older herokurds left in
/// `<app>/transfer/transfer` to `<app>/transfer` (see
/// [`WorkDir::adopt_legacy_transfer`]), saying so.
fn adopt_legacy_transfer(
    dir: &WorkDir,
    app: &str,
    progress: &impl Progress<RunbookEvent>,
) -> Result<(), RunbookError> {
    if dir.adopt_legacy_transfer(app)? {
        progress.event(&RunbookEvent::Warning {
            message: format!(
                "moved the transfer state an older herokurds left in {} to {}",
                dir.legacy_transfer(app).display(),
                dir.transfer(app).display()
            ),
        });
    }
    Ok(())
}
