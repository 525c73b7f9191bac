//! What can stop a migration, and in which state it leaves the app.
//!
//! The variants the operator must act on differently are kept apart:
//! [`RunbookError::Aborted`] (before the cutover: the app is back on its old
//! database, maintenance off), [`RunbookError::CutoverIncomplete`] (the
//! cutover began: maintenance stays on and the message says exactly what
//! the app runs on and which command finishes or undoes it) and
//! [`RunbookError::Interrupted`] (Ctrl-C: nothing undone, `resume`
//! continues).

use super::journal::{JournalError, StepId};
use super::plan::PlanError;

/// Why a migration command stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunbookError {
    /// The plan file is unusable.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The journal or lock is unusable.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A check before anything changed failed; each problem is listed.
    #[error("preflight of app {app} found {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "))]
    Preflight {
        /// The app.
        app: String,
        /// Each problem, in words.
        problems: Vec<String>,
    },
    /// The journal does not allow this command now.
    #[error("{message}")]
    WrongState {
        /// What the journal says and what to do instead.
        message: String,
    },
    /// The operator did not confirm.
    #[error("not confirmed: nothing was changed")]
    NotConfirmed,
    /// A step failed before the cutover. The app is on its old database
    /// and what the run changed (maintenance, scaled-down dynos) was
    /// restored, unless `restore_failures` says otherwise.
    #[error("{}", aborted_message(.app, *.step, .reason, .restored, .restore_failures))]
    Aborted {
        /// The app.
        app: String,
        /// The step that failed.
        step: StepId,
        /// Why.
        reason: String,
        /// What was put back.
        restored: Vec<String>,
        /// What could not be put back, with the command that does it.
        restore_failures: Vec<String>,
    },
    /// A step failed after the cutover began; maintenance is left as it
    /// was (on, unless the failing step came after maintenance off).
    #[error(
        "step `{step}` failed during the cutover of app {app}: {reason}\n\
         state now: {state}\n\
         To finish the migration: herokurds resume --config {plan}\n\
         To go back to the old database instead: herokurds rollback --config {plan}"
    )]
    CutoverIncomplete {
        /// The app.
        app: String,
        /// The step that failed.
        step: StepId,
        /// Why.
        reason: String,
        /// What the app runs on now, its maintenance mode and scaled-down
        /// dynos, from the journal.
        state: String,
        /// The plan file, for the commands.
        plan: String,
    },
    /// Cancelled (Ctrl-C); the journal says where to continue.
    #[error(
        "interrupted during `{step}`; {}\n\
         continue with: herokurds resume --config {plan}   (or undo with: herokurds rollback --config {plan})",
        if *.maintenance_on { "maintenance mode is still ON" } else { "maintenance mode is off" }
    )]
    Interrupted {
        /// The step that was running.
        step: StepId,
        /// Whether the app is in maintenance mode.
        maintenance_on: bool,
        /// The plan file, for the commands.
        plan: String,
    },
    /// A step failed outside `run` (rollback, status, plan).
    #[error("{what}: {reason}")]
    Step {
        /// What was being done.
        what: String,
        /// Why it failed.
        reason: String,
    },
}

fn aborted_message(
    app: &str,
    step: StepId,
    reason: &str,
    restored: &[String],
    restore_failures: &[String],
) -> String {
    let mut m = format!(
        "migration of app {app} stopped at `{step}` before the cutover: {reason}\n\
         the app still runs on its old database"
    );
    if !restored.is_empty() {
        m.push_str(&format!("; restored: {}", restored.join(", ")));
    }
    if restore_failures.is_empty() {
        m.push_str("\nnothing was lost; fix the cause and run `herokurds run` again");
    } else {
        m.push_str("\nCOULD NOT RESTORE:");
        for f in restore_failures {
            m.push_str(&format!("\n  - {f}"));
        }
    }
    m
}

impl RunbookError {
    /// Whether a check found a difference (exit code 1) rather than an
    /// error (exit code 2): verification differences, writes on the source
    /// (a source that never settled included), preflight problems.
    pub fn is_check_failure(&self) -> bool {
        matches!(
            self,
            RunbookError::Preflight { .. }
                | RunbookError::Aborted {
                    step: StepId::Settle | StepId::Verify | StepId::WriteCheck,
                    ..
                }
        )
    }
}
