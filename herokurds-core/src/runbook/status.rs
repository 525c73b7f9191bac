//! `status`: where a migration stands, from the journal and the live app.

use serde::Serialize;

use super::error::RunbookError;
use super::journal::{Journal, RunState, StepId, StepStatus, WorkDir};
use super::steps::formation_words;
use super::{Context, Plan};
use crate::url::DatabaseUrl;

/// What the app runs on, its maintenance mode and any dynos still scaled
/// down, from the journal, in words.
pub(super) fn describe_state(j: &Journal, backup_alias: &str) -> String {
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
    /// The change capture on the target, while it is there.
    pub target_capture: Option<TargetCapture>,
}

/// The change capture installed on the target at the cutover, which
/// `rollback` replays and `finish` removes.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TargetCapture {
    /// Tables captured.
    pub tables: usize,
    /// Changes logged since the cutover (`None` when the target could not
    /// be read; `error` says why).
    pub logged_changes: Option<i64>,
    /// Why the changes could not be counted.
    pub error: Option<String>,
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
    let target_capture = match &journal {
        Some(j) => match super::replay::active_capture(&dir, &app, j) {
            Ok(Some(state)) => {
                let counted = match super::target::resolve_urls(plan, ctx, j).await {
                    Ok((source, target)) => {
                        super::replay::logged_changes(plan, ctx, &dir, &source, &target)
                            .await
                            .map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e),
                };
                Some(TargetCapture {
                    tables: state.tables.len(),
                    logged_changes: counted.as_ref().ok().copied(),
                    error: counted.err(),
                })
            }
            Ok(None) => None,
            Err(e) => Some(TargetCapture {
                tables: 0,
                logged_changes: None,
                error: Some(e.to_string()),
            }),
        },
        None => None,
    };
    Ok(Status {
        target_capture,
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
    use chrono::Utc;

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
