//! The whole migration as a flat list of numbered, journaled steps.
//!
//! [`plan::Plan`] says what to migrate. [`run`] performs the runbook in the
//! lossless order (maintenance goes off only *after* the cutover, so no
//! write made between the copy and the switch is lost), recording every
//! step in a [`journal::Journal`]; [`resume`] continues at the first
//! unfinished step; [`rollback`] puts the app back on its old database;
//! [`status`] says where things stand; [`preflight`] checks everything
//! without changing anything. Each step is also a library call of its own
//! module (`transfer`, `verify`, `s3`, `heroku`, `smoke`).
//!
//! Files: `run.rs` (run, resume: the loop over the steps), `rollback.rs`,
//! `status.rs`, `steps.rs` (one method per step), `target.rs` (where the
//! source and target URLs come from), `journal.rs` (the journal, the lock,
//! [`WorkDir`]: every path), `summary.rs` (what the journal keeps of the
//! long steps), `report.rs`, `error.rs`.
//!
//! ```text
//!  1 preflight             10 check for writes
//!  2 smoke baseline        11 attach old database under the backup alias
//!  3 S3 pre-sync           12 detach the old DATABASE attachment
//!  4 maintenance on        13 set DATABASE_URL and config vars
//!  5 scale down workers    14 switch CloudFront origins
//!  6 settle in-flight      15 read config back and compare
//!  7 database transfer     16 restore workers
//!  8 verify                17 maintenance off
//!  9 S3 final sync         18 smoke compare
//! ```
//!
//! Preflight also checks that the app's own AWS credentials (its config
//! vars) may list, read, write and delete on each new bucket; step 14
//! switches the plan's `[[cloudfront]]` origins from the old buckets to
//! the new ones, and rollback switches them back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::aws::ClientOptions;
use crate::heroku::Client;
use crate::progress::Progress;
use crate::smoke::{SmokeEvent, SmokeOptions};

mod app_access;
mod cdn;
pub mod cutover;
pub mod error;
pub mod journal;
mod online;
pub mod plan;
mod preflight;
mod replay;
pub mod report;
mod rollback;
mod run;
mod status;
mod steps;
pub mod summary;
pub mod target;
pub mod template;
pub mod writes;

pub use app_access::{AccessCheck, PROBE_PREFIX};
pub use error::{RunbookError, StepError};
pub use journal::{
    AppLock, EarlierCopy, Journal, JournalError, RunState, StepId, StepRecord, StepStatus, WorkDir,
};
pub use plan::{Plan, PlanError, TransferMode};
pub use preflight::{preflight, PlanReport, PlannedStep};
pub use replay::{finish, FinishReport, ReplayReport};
pub use report::Report;
pub use rollback::{rollback, RollbackReport};
pub use run::{resume, run, target_database};
pub use status::{status, Status, TargetCapture};
pub use target::{resolve_target, EnvLookup, ResolvedTarget, TargetError};

/// What the runbook needs from the outside world besides the plan: the
/// Heroku client, where environment variables come from, AWS settings.
#[derive(Clone)]
pub struct Context {
    heroku: Client,
    env: Arc<EnvLookup>,
    aws: ClientOptions,
    smoke: SmokeOptions,
    flush_wait: Duration,
    pg_bin_dir: Option<PathBuf>,
    plan_path: String,
    restart_target: bool,
    discard_target_writes: bool,
}

impl Context {
    /// A context using `heroku`, the process environment and the default
    /// AWS chain (overridden by the plan's `[aws]`).
    pub fn new(heroku: Client) -> Self {
        Context {
            heroku,
            env: Arc::new(target::process_env),
            aws: ClientOptions::new(),
            smoke: SmokeOptions::default(),
            flush_wait: writes::STATS_FLUSH_WAIT,
            pg_bin_dir: None,
            plan_path: "PLAN".into(),
            restart_target: false,
            discard_target_writes: false,
        }
    }

    /// Where `url_env`, `password_env` and similar are looked up.
    pub fn env(mut self, lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.env = Arc::new(lookup);
        self
    }

    /// AWS settings used when the plan's `[aws]` leaves them unset.
    pub fn aws(mut self, options: ClientOptions) -> Self {
        self.aws = options;
        self
    }

    /// How smoke pages are fetched.
    pub fn smoke(mut self, options: SmokeOptions) -> Self {
        self.smoke = options;
        self
    }

    /// How long the write check waits for backends to report their table
    /// counters (default [`writes::STATS_FLUSH_WAIT`]).
    pub fn write_check_wait(mut self, wait: Duration) -> Self {
        self.flush_wait = wait;
        self
    }

    /// Where `pg_dump` and `pg_restore` are (default: PATH, then
    /// `/usr/lib/postgresql/*/bin`).
    pub fn pg_bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.pg_bin_dir = Some(dir.into());
        self
    }

    /// The plan file's path as the operator typed it, used in the commands
    /// error messages suggest.
    pub fn plan_path(mut self, path: impl Into<String>) -> Self {
        self.plan_path = path.into();
        self
    }

    /// Lets [`run`] drop what an earlier attempt left on the target
    /// (`DROP OWNED BY CURRENT_USER CASCADE`) and copy again, even after a
    /// cutover, when rows the app wrote there would go with it (default:
    /// refused with [`RunbookError::TargetHasData`]). The binary's
    /// `--restart-target`, confirmed by typing the database's name.
    pub fn restart_target(mut self, allow: bool) -> Self {
        self.restart_target = allow;
        self
    }

    /// Lets [`rollback`] switch back even when rows were written on the
    /// target since the cutover, or their count is unknown; they stay on
    /// the target and are not copied back (default: refused with
    /// [`RunbookError::TargetWrites`]). The binary's
    /// `--discard-target-writes`.
    pub fn discard_target_writes(mut self, allow: bool) -> Self {
        self.discard_target_writes = allow;
        self
    }

    /// The Heroku client.
    pub fn heroku(&self) -> &Client {
        &self.heroku
    }

    fn aws_for(&self, plan: &Plan) -> ClientOptions {
        let mut o = self.aws.clone();
        if let Some(r) = &plan.aws.region {
            o = o.region(r.clone());
        }
        if let Some(p) = &plan.aws.profile {
            o = o.profile(p.clone());
        }
        if let Some(e) = &plan.aws.endpoint_url {
            o = o.endpoint_url(e.clone());
        }
        o
    }
}

/// What a migration reports while it works.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunbookEvent {
    /// A step started.
    StepStarted {
        /// 1-based position in the runbook.
        number: usize,
        /// Which step.
        step: StepId,
    },
    /// A step ended (done, skipped or failed).
    StepFinished {
        /// 1-based position.
        number: usize,
        /// Which step.
        step: StepId,
        /// How it ended.
        status: StepStatus,
        /// What it did, or why it failed.
        detail: Option<String>,
        /// Seconds it took.
        seconds: Option<f64>,
    },
    /// A step was already done by an earlier run.
    StepAlreadyDone {
        /// 1-based position.
        number: usize,
        /// Which step.
        step: StepId,
    },
    /// Maintenance went on: the downtime clock starts at `at`.
    MaintenanceOn {
        /// When.
        at: DateTime<Utc>,
    },
    /// Maintenance went off: the downtime clock stops.
    MaintenanceOff {
        /// When.
        at: DateTime<Utc>,
        /// Seconds of downtime.
        downtime_seconds: f64,
    },
    /// Waiting for the source to settle before the snapshot (reported a
    /// few times a second).
    Settling {
        /// Seconds waited so far.
        waited_seconds: f64,
        /// Seconds the source has been quiet so far.
        quiet_seconds: f64,
        /// Seconds of quiet needed.
        needed_seconds: f64,
    },
    /// An event of the database copy.
    Transfer(crate::transfer::TransferEvent),
    /// An event of verification.
    Verify(crate::verify::VerifyEvent),
    /// An event of online mode (capture, catch-up, cut, window).
    Online(crate::transfer::online::OnlineEvent),
    /// An event of a bucket sync.
    S3(crate::s3::SyncEvent),
    /// An event of the smoke checks.
    Smoke(SmokeEvent),
    /// Worth knowing, not stopping for.
    Warning {
        /// In words.
        message: String,
    },
}

/// Forwards a module's events into [`RunbookEvent`]s.
struct Forward<'a, P, F> {
    inner: &'a P,
    wrap: F,
}

impl<E, P, F> Progress<E> for Forward<'_, P, F>
where
    P: Progress<RunbookEvent>,
    F: Fn(&E) -> RunbookEvent + Send + Sync,
{
    fn event(&self, event: &E) {
        self.inner.event(&(self.wrap)(event))
    }
}

fn forward<'a, P, E, F>(inner: &'a P, wrap: F) -> Forward<'a, P, F>
where
    P: Progress<RunbookEvent>,
    F: Fn(&E) -> RunbookEvent + Send + Sync,
{
    Forward { inner, wrap }
}
