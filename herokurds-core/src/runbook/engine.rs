//! The loop that walks the steps, and the commands built on the journal:
//! run, resume, rollback, status.

use chrono::Utc;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::error::RunbookError;
use super::journal::{AppLock, Journal, OwnedObjects, RunState, StepId, StepStatus, WorkDir};
use super::report::Report;
use super::steps::{formation_words, restore_formation, Outcome, Runner};
use super::target::heroku_source_url;
use super::{cutover, writes, Context, Plan, RunbookEvent};
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
    let dir = WorkDir::new(&plan.work_dir);
    let _lock = AppLock::acquire(&dir, app)?;
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
async fn owned_objects(
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
    check_identity(plan, ctx, &journal, Side::Source, &source).await?;
    check_identity(plan, ctx, &journal, Side::Target, &target).await?;
    drive(plan, ctx, dir, journal, source, target, progress, cancel).await
}

/// Refuses when `url` reaches another database than the one preflight
/// journaled for `side` (nothing to compare before preflight).
async fn check_identity(
    plan: &Plan,
    ctx: &Context,
    journal: &Journal,
    side: Side,
    url: &DatabaseUrl,
) -> Result<(), RunbookError> {
    let journaled = match side {
        Side::Source => &journal.source_identity,
        Side::Target => &journal.target_identity,
    };
    let Some(journaled) = journaled else {
        return Ok(());
    };
    let now = DbIdentity::connect(url)
        .await
        .map_err(|e| RunbookError::Step {
            what: format!("identifying the {side} database of app {}", plan.heroku.app),
            reason: e.to_string(),
        })?;
    if journaled.same_as(&now) {
        return Ok(());
    }
    Err(RunbookError::IdentityMismatch {
        app: plan.heroku.app.clone(),
        side,
        journaled: journaled.to_string(),
        now: now.to_string(),
        plan: ctx.plan_path.clone(),
    })
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
    let target = resolved_target(plan, ctx).await?;
    // The same server under two names (`localhost`, `127.0.0.1`, a CNAME)
    // is told by its system identifier; a side that cannot be reached yet
    // is compared by its URL (preflight compares again once connected).
    let (s, t) = tokio::join!(DbIdentity::connect(&source), DbIdentity::connect(&target));
    let s = s.unwrap_or_else(|e| DbIdentity::of_url(&source, e.to_string()));
    let t = t.unwrap_or_else(|e| DbIdentity::of_url(&target, e.to_string()));
    if s.same_database(&t) {
        return Err(same_database_message(&s, &t, app));
    }
    Ok((source, target))
}

/// Why source and target may not be one database, naming both.
pub(super) fn same_database_message(source: &DbIdentity, target: &DbIdentity, app: &str) -> String {
    format!(
        "source and target are the same database (source {source}, target {target}); check [target] of app {app}"
    )
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
    if r.journal.step(StepId::Transfer).status != StepStatus::Pending {
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
fn scale_back_failed(
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
fn maintenance_still_on(app: &str, e: &dyn std::fmt::Display) -> String {
    format!("maintenance is still ON ({e}); run: herokurds-heroku maintenance off -a {app}")
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
/// plan's config vars restored, dynos scaled back, maintenance off.
///
/// First counts the rows written on the target since the cutover (with
/// maintenance on and the plan's workers stopped, so the count is final):
/// rollback does not copy them back, so when there are any, or they cannot
/// be counted, it refuses with [`RunbookError::TargetWrites`] before
/// switching anything, and puts maintenance and dynos back as they were,
/// unless [`Context::discard_target_writes`] allows it. A target other
/// than the journaled one is refused with
/// [`RunbookError::IdentityMismatch`]. Repeating a rollback is harmless.
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
            if journal.step(StepId::Transfer).status != StepStatus::Pending {
                (journal.target_end_mark, journal.target_end_owned) =
                    match resolved_target(plan, ctx).await {
                        Ok(target) => end_state(&target, ctx.flush_wait).await,
                        Err(_) => (None, None),
                    };
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
    // The app could write on the target only once DATABASE_URL was set.
    let counted = if journal.step(StepId::SetConfig).status == StepStatus::Pending {
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
    };
    if let Some(refusal) = refusal {
        let discardable = matches!(refusal, RunbookError::TargetWrites { .. });
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
                        downtime_seconds: 0.0,
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
        progress.event(&RunbookEvent::MaintenanceOff {
            at: Utc::now(),
            downtime_seconds: 0.0,
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
    journal.state = RunState::RolledBack;
    journal.save(&dir)?;
    Ok(report)
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

/// The target URL as the plan and environment give it now.
async fn resolved_target(plan: &Plan, ctx: &Context) -> Result<DatabaseUrl, String> {
    super::target::resolve_target(&plan.target, &*ctx.env, &ctx.aws_for(plan))
        .await
        .map(|t| t.url)
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
async fn end_state(
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
