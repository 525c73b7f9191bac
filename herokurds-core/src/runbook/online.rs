//! The runbook's steps for online mode (`[transfer] mode = "online"`),
//! composed from [`crate::transfer::online`]: the copy and the catch-up
//! run before maintenance on; the window keeps the last round and checks.

use std::time::Duration;

use super::journal::{StepId, StepStatus};
use super::steps::{Outcome, Runner};
use super::summary::TransferSummary;
use super::StepError;
use super::{forward, Plan, RunbookEvent, TransferMode};
use crate::progress::Progress;
use crate::transfer::online::{self, OnlineEvent, OnlineMigration};
use crate::transfer::ResumeMode;

/// A catch-up round shorter than this means the backlog is seconds of
/// work: the window can start.
pub(crate) const CATCH_UP_GOAL: Duration = Duration::from_secs(2);
/// Catch-up rounds before the window at most (a source written faster
/// than rounds apply would never reach the goal).
pub(crate) const CATCH_UP_ROUNDS: u32 = 30;

type StepResult = Result<Outcome, StepError>;

/// Whether the plan copies online.
pub(super) fn is_online(plan: &Plan) -> bool {
    plan.transfer.mode == TransferMode::Online
}

fn offline() -> StepResult {
    Ok(Outcome::Skipped(
        "offline mode ([transfer] mode = \"offline\"): the copy happens inside the window".into(),
    ))
}

impl<P: Progress<RunbookEvent>> Runner<'_, P> {
    /// Online events as runbook events: the copy's and the verification's
    /// go where the offline steps' go.
    pub(super) fn online_progress(&self) -> impl Progress<OnlineEvent> + '_ {
        forward(self.progress, |e: &OnlineEvent| match e {
            OnlineEvent::Transfer { transfer } => RunbookEvent::Transfer(transfer.clone()),
            OnlineEvent::Verify { verify } => RunbookEvent::Verify(verify.clone()),
            other => RunbookEvent::Online(other.clone()),
        })
    }

    /// Steps before the window: capture, copy, hold back.
    pub(super) async fn online_copy(&mut self, before: StepStatus) -> StepResult {
        if !is_online(self.plan) {
            return offline();
        }
        let mode = self.resume_mode(before)?;
        let opts = self.transfer_options(mode)?;
        if mode != ResumeMode::Resume {
            // A new attempt: an earlier attempt's capture and online
            // journal start over with its copy.
            online::discard_journal(opts.get_work_dir())?;
            online::remove_capture(&self.source).await?;
        }
        let mut m = OnlineMigration::open(&self.source, &self.target, &opts)?;
        let report = m.copy(&self.online_progress(), self.cancel.clone()).await?;
        let held = m.state().held_back.clone().unwrap_or_default();
        let no_key: Vec<String> = m
            .state()
            .tables
            .iter()
            .filter(|t| !t.has_key())
            .map(|t| t.to_string())
            .collect();
        let Some(r) = report else {
            return Ok(Outcome::Done("copied by an earlier run".into()));
        };
        for w in &r.warnings {
            self.progress
                .event(&RunbookEvent::Warning { message: w.clone() });
        }
        let summary = TransferSummary::from(&r);
        let words = format!(
            "capture on {} tables ({}), {} rows, {:.1} MB copied in {:.1} s while the app ran; \
             held back on the target until the window: {} foreign key(s), {} trigger(s)",
            m.state().tables.len(),
            if no_key.is_empty() {
                "every one with a key".to_string()
            } else {
                format!("whole rows logged for {}", no_key.join(", "))
            },
            summary.rows,
            summary.bytes as f64 / 1_048_576.0,
            summary.seconds,
            held.foreign_keys.len(),
            held.triggers.len()
        );
        self.journal.transfer = Some(summary);
        Ok(Outcome::Done(words))
    }

    /// Catch-up rounds until one is short.
    pub(super) async fn catch_up(&mut self) -> StepResult {
        if !is_online(self.plan) {
            return offline();
        }
        let opts = self.transfer_options(ResumeMode::Resume)?;
        let p = self.online_progress();
        let mut m = OnlineMigration::open(&self.source, &self.target, &opts)?;
        let r = m
            .catch_up(CATCH_UP_GOAL, CATCH_UP_ROUNDS, &p, &self.cancel)
            .await?;
        Ok(Outcome::Done(format!(
            "{} round(s), {} change(s) on {} key(s) in {:.1} s; the last round took {:.1} s",
            r.rounds, r.changes, r.keys, r.seconds, r.last_round_seconds
        )))
    }

    /// The whole database verified against a cut, before the window.
    pub(super) async fn online_verify(&mut self) -> StepResult {
        if !is_online(self.plan) {
            return offline();
        }
        let opts = self.transfer_options(ResumeMode::Resume)?;
        let verify = self.verify_options(None);
        let p = self.online_progress();
        let mut m = OnlineMigration::open(&self.source, &self.target, &opts)?;
        let cut = m.verify_cut(&verify, &p, &self.cancel).await?;
        Ok(Outcome::Done(format!(
            "{} tables: target equals source at the cut ({:.1} s); until the window: {}",
            cut.verify.tables.len(),
            cut.seconds,
            if cut.expected.is_empty() {
                "nothing".to_string()
            } else {
                cut.expected.join("; ")
            }
        )))
    }

    /// Inside the window: the last round, the schema, the changed keys,
    /// large objects, sequences; foreign keys and triggers back.
    pub(super) async fn online_window(&mut self) -> StepResult {
        let opts = self.transfer_options(ResumeMode::Resume)?;
        let p = self.online_progress();
        let mut m = OnlineMigration::open(&self.source, &self.target, &opts)?;
        let w = m.finish_window(&p, &self.cancel).await?;
        Ok(Outcome::Done(format!(
            "last round: {} change(s) on {} key(s); {} key(s) changed since the cut compared on {} table(s); \
             {}{} sequences set; {} foreign key(s) back NOT VALID, {} trigger(s) enabled; {:.1} s",
            w.changes,
            w.keys,
            w.keys_checked,
            w.tables_checked,
            w.large_objects_recopied
                .map(|n| format!("{n} large object(s) copied again; "))
                .unwrap_or_default(),
            w.sequences,
            w.foreign_keys,
            w.triggers,
            w.seconds
        )))
    }

    /// Just before the cutover: nothing logged since the last round.
    pub(super) async fn online_write_check(&mut self) -> StepResult {
        let opts = self.transfer_options(ResumeMode::Resume)?;
        let m = OnlineMigration::open(&self.source, &self.target, &opts)?;
        m.check_quiet().await?;
        Ok(Outcome::Done(
            "nothing logged on the source since the window's last round".into(),
        ))
    }

    /// After the cutover: validate the foreign keys, remove capture.
    pub(super) async fn online_finish(&mut self) -> StepResult {
        if !is_online(self.plan) {
            return offline();
        }
        let opts = self.transfer_options(ResumeMode::Resume)?;
        let p = self.online_progress();
        let mut m = OnlineMigration::open(&self.source, &self.target, &opts)?;
        let fks = m
            .state()
            .held_back
            .as_ref()
            .map_or(0, |h| h.foreign_keys.len());
        m.finish(&p).await?;
        Ok(Outcome::Done(format!(
            "{fks} foreign key(s) validated on the target; capture removed from the source"
        )))
    }
}

/// Removes online capture from `source` when this attempt installed it
/// (an abort, a rollback): nothing of herokurds stays on the customer's
/// database. Returns what was done, in words, or why it could not be.
pub(super) async fn remove_capture(
    journal: &super::Journal,
    source: &crate::url::DatabaseUrl,
) -> Option<Result<String, String>> {
    let copy = journal.step(StepId::OnlineCopy).status;
    if matches!(copy, StepStatus::Pending | StepStatus::Skipped)
        || journal.is_finished(StepId::OnlineFinish)
    {
        return None;
    }
    Some(match online::remove_capture(source).await {
        Ok(()) => Ok("change capture removed from the source".into()),
        Err(e) => Err(format!(
            "removing change capture from the source failed ({e}); run \
             `DROP SCHEMA herokurds_capture CASCADE` on it as its owner"
        )),
    })
}

/// [`remove_capture`] on the plan's source, resolved as `resume` does
/// (rollback has no URLs of its own).
pub(super) async fn remove_capture_for(
    plan: &Plan,
    ctx: &super::Context,
    journal: &super::Journal,
) -> Option<Result<String, String>> {
    let copy = journal.step(StepId::OnlineCopy).status;
    if matches!(copy, StepStatus::Pending | StepStatus::Skipped) {
        return None;
    }
    match super::target::resolve_urls(plan, ctx, journal).await {
        Ok((source, _)) => remove_capture(journal, &source).await,
        Err(e) => Some(Err(format!(
            "the source could not be resolved to remove change capture from it ({e}); run \
             `DROP SCHEMA herokurds_capture CASCADE` on it as its owner"
        ))),
    }
}
