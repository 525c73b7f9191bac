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
        /// Why, in words (the cause's message).
        reason: String,
        /// The step's error.
        #[source]
        cause: Box<StepError>,
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
        /// Why, in words (the cause's message).
        reason: String,
        /// The step's error.
        #[source]
        cause: Box<StepError>,
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
    /// `run` would start over on a target that holds data it cannot
    /// account for: a copy the app was switched to, or one that changed
    /// since its attempt stopped. Nothing was changed.
    #[error(
        "refusing to start the migration of app {app} over on target {target}: it holds {holdings}. {why}. \
         Starting over runs DROP OWNED BY CURRENT_USER CASCADE there, which deletes all of it.\n\
         To drop it and copy again: herokurds run --config {plan} --restart-target (you type the database \
         name to confirm; --yes skips that). To keep it, point [target] at another, empty database"
    )]
    TargetHasData {
        /// The app.
        app: String,
        /// `user@host:port/dbname` of the target.
        target: String,
        /// What the target user owns there, in words.
        holdings: String,
        /// Why it cannot be dropped silently (the cutover, a change since
        /// the copy), in words.
        why: String,
        /// The plan file, for the command.
        plan: String,
    },
    /// `rollback` would leave rows written on the target since the cutover
    /// behind (or cannot count them). Nothing was switched back; the app
    /// still runs on the target, and maintenance and dynos are as they
    /// were.
    #[error(
        "refusing to roll back app {app}: {}\n\
         Switching back would leave them on {target}: the app would run on its old database without them \
         (no change capture on the target: `[cutover] capture_target_writes` was off, or `herokurds finish` \
         removed it, so rollback cannot copy them back). The app still runs on {target}; maintenance and dynos are as they were.\n\
         To roll back anyway and lose those writes: herokurds rollback --config {plan} --discard-target-writes",
        target_writes_words(.tables, .unknown.as_deref())
    )]
    TargetWrites {
        /// The app.
        app: String,
        /// `user@host:port/dbname` of the target.
        target: String,
        /// Each table written since the cutover, with its rows changed
        /// (`None`: truncated, rewritten, created or dropped).
        tables: Vec<(String, Option<i64>)>,
        /// Why the writes could not be counted, when they could not.
        unknown: Option<String>,
        /// The plan file, for the command.
        plan: String,
    },
    /// `rollback` cannot copy the writes made on the target since the
    /// cutover back to the old database (DDL on the target, rows that
    /// differ after the replay, writes that do not stop). Nothing was
    /// switched back; the app still runs on the target, and maintenance
    /// and dynos are as they were.
    #[error(
        "refusing to roll back app {app}: the writes made on {target} since the cutover cannot be copied back \
         to the old database: {}\n\
         Nothing was switched: the app still runs on {target}; maintenance and dynos are as they were. Fix the \
         cause and run `herokurds rollback --config {plan}` again.\n\
         To roll back anyway and lose every write made on {target} since the cutover: herokurds rollback \
         --config {plan} --discard-target-writes",
        reasons.join("; ")
    )]
    ReplayRefused {
        /// The app.
        app: String,
        /// `user@host:port/dbname` of the target.
        target: String,
        /// What cannot be replayed, in words.
        reasons: Vec<String>,
        /// The plan file, for the command.
        plan: String,
    },
    /// The plan and environment now name another database than the one
    /// the journal recorded at preflight (another `TARGET_DATABASE_URL` in
    /// a new shell). Nothing was changed.
    #[error(
        "the {side} database of app {app} is not the one this migration used: the journal recorded {journaled}, \
         the plan and environment now give {now}. Continuing would work on a database that was never copied \
         or verified; give the {side} URL of the journal again (or `herokurds rollback --config {plan}` with it)"
    )]
    IdentityMismatch {
        /// The app.
        app: String,
        /// `source` or `target`.
        side: crate::transfer::Side,
        /// What the journal recorded (no password).
        journaled: String,
        /// What the current plan and environment reach (no password).
        now: String,
        /// The plan file, for the command.
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

/// The writes on the target a rollback would leave behind, in words.
pub(super) fn target_writes_words(
    tables: &[(String, Option<i64>)],
    unknown: Option<&str>,
) -> String {
    if let Some(why) = unknown {
        return format!(
            "the rows written on the new database since the cutover could not be counted ({why})"
        );
    }
    let rows: i64 = tables.iter().filter_map(|(_, n)| *n).sum();
    let each: Vec<String> = tables
        .iter()
        .map(|(t, n)| match n {
            Some(n) => format!("{t}: {n} row(s)"),
            None => format!("{t}: truncated, rewritten, created or dropped"),
        })
        .collect();
    format!(
        "{rows} row(s) were written on the new database since the cutover ({})",
        each.join(", ")
    )
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

/// Why a step failed: the step's own error, kept as the source, or the
/// step's refusal in words. [`is_check_failure`](Self::is_check_failure)
/// is decided by the variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// The checks before anything changes refused.
    #[error(transparent)]
    Preflight(Box<RunbookError>),
    /// A Heroku Platform API call failed.
    #[error(transparent)]
    Heroku(#[from] crate::heroku::HerokuError),
    /// A cutover change was refused or not read back.
    #[error(transparent)]
    Cutover(#[from] super::cutover::CutoverError),
    /// A database could not be reached.
    #[error(transparent)]
    Connect(#[from] crate::pg::ConnectError),
    /// The database copy stopped.
    #[error(transparent)]
    Transfer(#[from] crate::transfer::TransferError),
    /// The verification could not run.
    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),
    /// An online-mode step stopped (its checks included: a changed schema,
    /// a cut or changed rows that differ, a source still written).
    #[error(transparent)]
    Online(#[from] crate::transfer::online::OnlineError),
    /// An S3 sync failed.
    #[error(transparent)]
    S3(#[from] crate::s3::S3Error),
    /// A smoke page check could not run.
    #[error(transparent)]
    Smoke(#[from] crate::smoke::SmokeError),
    /// The journal could not be written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Reading a database's write position failed.
    #[error("reading the write position of {side}: {message}")]
    WriteMark {
        /// `source` or `target`.
        side: crate::transfer::Side,
        /// The server's message.
        message: String,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A check found a difference: the source kept being written, the copy
    /// differs from the source, or the source changed after the snapshot.
    #[error("{message}")]
    Different {
        /// What differs, naming tables, and what to do.
        message: String,
    },
    /// The step refused to go on, saying why.
    #[error("{message}")]
    Refused {
        /// Why, naming the object, and what to do.
        message: String,
    },
}

impl StepError {
    /// Whether a check found a difference (exit code 1) rather than an
    /// error (exit code 2).
    pub fn is_check_failure(&self) -> bool {
        match self {
            StepError::Different { .. } => true,
            StepError::Online(e) => e.is_check_failure(),
            _ => false,
        }
    }

    pub(crate) fn write_mark(
        side: crate::transfer::Side,
    ) -> impl FnOnce(tokio_postgres::Error) -> Self {
        move |e| StepError::WriteMark {
            side,
            message: crate::verify::db_message(&e),
            source: Box::new(e),
        }
    }
}

impl RunbookError {
    /// Whether a check found a difference (exit code 1) rather than an
    /// error (exit code 2): verification differences, writes on the source
    /// (a source that never settled included), preflight problems, writes
    /// on the target that stop a rollback.
    pub fn is_check_failure(&self) -> bool {
        matches!(
            self,
            RunbookError::Preflight { .. }
                | RunbookError::TargetWrites { .. }
                | RunbookError::ReplayRefused { .. }
        ) || matches!(self, RunbookError::Aborted { cause, .. } if cause.is_check_failure())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aborted(step: StepId, cause: StepError) -> RunbookError {
        RunbookError::Aborted {
            app: "app-one".into(),
            step,
            reason: cause.to_string(),
            cause: Box::new(cause),
            restored: Vec::new(),
            restore_failures: Vec::new(),
        }
    }

    /// The exit code was decided by the step's id: a settle or verify
    /// step that could not even connect counted as a difference found.
    #[test]
    fn a_check_failure_is_decided_by_the_steps_error_not_its_id() {
        let refused = || StepError::Refused {
            message: "cannot connect".into(),
        };
        let different = || StepError::Different {
            message: "2 difference(s)".into(),
        };
        assert!(!aborted(StepId::Verify, refused()).is_check_failure());
        assert!(!aborted(StepId::Settle, refused()).is_check_failure());
        assert!(aborted(StepId::Verify, different()).is_check_failure());
        assert!(aborted(StepId::WriteCheck, different()).is_check_failure());
        let e = aborted(StepId::Verify, different());
        assert_eq!(
            std::error::Error::source(&e).map(|s| s.to_string()),
            Some("2 difference(s)".to_string()),
            "the step's error is the source"
        );
    }
}
