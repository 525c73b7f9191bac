//! The journal: what a migration has done, so a crash or Ctrl-C resumes at
//! the first unfinished step and a rollback knows what to undo.
//!
//! One JSON file per app in the work directory, rewritten atomically (temp
//! file, fsync, rename; mode 0600) after every step. It holds names, hosts,
//! times and counts, never a password or a config var's value: the plan's
//! config vars are journaled as name and SHA-256, their old values kept in
//! a separate 0600 file for rollback. An exclusive `flock` on a lock file
//! beside it stops two runs on the same app; the kernel releases it when
//! the process dies, so there are no stale locks.
//!
//! The work directory may be the operator's own (`work_dir = "."`): herokurds
//! creates the directories it needs with mode 0700 and never changes the
//! mode of one that exists.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::fsutil;

/// The journal format this build reads and writes. Version 2 journals the
/// plan's config vars as SHA-256 (version 1 held their values).
pub const JOURNAL_VERSION: u32 = 2;

use super::summary::{S3Summary, TransferSummary, VerifySummary};
use super::writes::WriteMark;
use crate::pg::DbIdentity;
use crate::smoke::{PageCheck, PageDifference};

/// Every path herokurds uses under a work directory, declared in one place.
#[derive(Debug, Clone)]
pub struct WorkDir {
    root: PathBuf,
}

impl WorkDir {
    /// A work directory rooted at `root` (not created until needed).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        WorkDir { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<app>.journal.json`
    pub fn journal(&self, app: &str) -> PathBuf {
        self.root.join(format!("{app}.journal.json"))
    }

    /// `<root>/<app>.lock`
    pub fn lock(&self, app: &str) -> PathBuf {
        self.root.join(format!("{app}.lock"))
    }

    /// `<root>/<app>`: the app's own directory, herokurds' alone (mode
    /// 0700).
    pub fn app_dir(&self, app: &str) -> PathBuf {
        self.root.join(app)
    }

    /// `<root>/<app>`: the work directory handed to the transfer
    /// ([`TransferOptions::work_dir`](crate::transfer::TransferOptions::work_dir)),
    /// which keeps its state in [`transfer`](Self::transfer) under it.
    pub fn transfer_work_dir(&self, app: &str) -> PathBuf {
        self.app_dir(app)
    }

    /// `<root>/<app>/back`: the work directory of the capture installed on
    /// the target at the cutover, whose journal
    /// ([`online::journal_path`](crate::transfer::online::journal_path))
    /// a rollback replays from.
    pub fn back_work_dir(&self, app: &str) -> PathBuf {
        self.app_dir(app).join("back")
    }

    /// `<root>/<app>/transfer`: the transfer's own state (schema archive,
    /// per-table journal).
    pub fn transfer(&self, app: &str) -> PathBuf {
        crate::transfer::StatePaths::new(&self.transfer_work_dir(app)).dir
    }

    /// `<root>/<app>/transfer/journal.json`: the transfer's per-table
    /// journal.
    pub fn transfer_journal(&self, app: &str) -> PathBuf {
        crate::transfer::StatePaths::new(&self.transfer_work_dir(app)).journal
    }

    /// `<root>/<app>/transfer/transfer`: where herokurds up to commit
    /// 733d06a kept the transfer's state (it handed the transfer
    /// [`transfer`](Self::transfer) as its work directory, and the transfer
    /// appended `transfer` again). [`adopt_legacy_transfer`](Self::adopt_legacy_transfer)
    /// moves such state to where it belongs.
    pub fn legacy_transfer(&self, app: &str) -> PathBuf {
        crate::transfer::StatePaths::new(&self.transfer(app)).dir
    }

    /// Moves a transfer's state that an older herokurds left in
    /// [`legacy_transfer`](Self::legacy_transfer) up into
    /// [`transfer`](Self::transfer), so resuming that migration finds the
    /// tables it already copied. Returns whether anything moved. Refuses,
    /// naming both files, when both places hold a transfer journal (which
    /// one is the migration's cannot be told). Call it holding the app's
    /// [`AppLock`].
    pub fn adopt_legacy_transfer(&self, app: &str) -> Result<bool, JournalError> {
        let legacy = crate::transfer::StatePaths::new(&self.transfer(app));
        if !legacy.journal.exists() {
            return Ok(false);
        }
        let current = self.transfer_journal(app);
        if current.exists() {
            return Err(JournalError::TransferStateTwice {
                app: app.to_string(),
                current,
                legacy: legacy.journal,
            });
        }
        let into = self.transfer(app);
        let entries =
            fs::read_dir(&legacy.dir).map_err(|e| JournalError::io(&legacy.dir, "reading", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| JournalError::io(&legacy.dir, "reading", e))?;
            let to = into.join(entry.file_name());
            fs::rename(entry.path(), &to).map_err(|e| JournalError::io(&to, "moving into", e))?;
        }
        fs::remove_dir(&legacy.dir).map_err(|e| JournalError::io(&legacy.dir, "removing", e))?;
        if let Ok(dir) = File::open(&into) {
            let _ = dir.sync_all();
        }
        Ok(true)
    }

    /// `<root>/<app>/report.md` and `report.json`.
    pub fn report(&self, app: &str, extension: &str) -> PathBuf {
        self.app_dir(app).join(format!("report.{extension}"))
    }

    /// `<root>/<app>/config-before.json`: the plan's config vars' values
    /// before the cutover (mode 0600), which rollback restores; the journal
    /// holds only their SHA-256.
    pub fn config_values(&self, app: &str) -> PathBuf {
        self.app_dir(app).join("config-before.json")
    }

    /// Creates the root if missing (mode 0700). A root that exists keeps
    /// its mode: it may be the operator's own directory.
    pub fn create(&self) -> Result<(), JournalError> {
        fsutil::create_private_dir(&self.root)
            .map_err(|e| JournalError::io(&self.root, "creating", e))
    }

    /// Creates [`app_dir`](Self::app_dir) (and the root) if missing, mode
    /// 0700. The app directory is herokurds' own: an existing one is made
    /// 0700 too (it holds the journal and config values); an existing root
    /// keeps its mode.
    pub fn create_app_dir(&self, app: &str) -> Result<PathBuf, JournalError> {
        let dir = self.app_dir(app);
        fsutil::make_own_dir(&dir).map_err(|e| JournalError::io(&dir, "creating", e))?;
        Ok(dir)
    }
}

/// The steps of a migration, in the order `run` performs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepId {
    /// Check everything, change nothing.
    Preflight,
    /// Record each smoke page before anything changes.
    SmokeBaseline,
    /// Sync the buckets' bulk before the window.
    S3Presync,
    /// Online mode: install change capture on the source and copy while
    /// the app keeps running.
    OnlineCopy,
    /// Online mode: apply the changes captured during the copy.
    CatchUp,
    /// Online mode: verify the whole database against a consistent cut,
    /// before the window.
    OnlineVerify,
    /// Maintenance mode on; the downtime clock starts.
    MaintenanceOn,
    /// Scale the plan's process types (workers, clock) to zero.
    ScaleDown,
    /// Wait until the source is quiet: in-flight web requests finish
    /// after maintenance goes on, and their writes must land before the
    /// copy's snapshot.
    Settle,
    /// Copy the database.
    Transfer,
    /// Prove the copy equals the source.
    Verify,
    /// Sync what changed in the buckets since the pre-sync.
    S3FinalSync,
    /// Check nothing wrote to the source since the snapshot, just before
    /// the cutover (after the final sync, so no write slips in between).
    WriteCheck,
    /// Install change capture on the target, still quiet inside the
    /// window, so that `rollback` can copy the writes made there after
    /// the cutover back to the old database.
    TargetCapture,
    /// Attach the old add-on under the backup alias.
    AttachBackup,
    /// Detach the old add-on's `DATABASE` attachment.
    DetachDatabase,
    /// Set `DATABASE_URL` and the plan's config vars.
    SetConfig,
    /// Switch the plan's CloudFront origins from the old buckets to the
    /// new ones, and invalidate.
    CloudfrontOrigins,
    /// Read the config back and compare.
    ReadBack,
    /// Restore the scaled-down process types.
    ScaleUp,
    /// Maintenance mode off; the downtime clock stops.
    MaintenanceOff,
    /// Fetch the smoke pages again and compare.
    SmokeCompare,
    /// Online mode: validate the foreign keys held back during catch-up
    /// and remove change capture from the source.
    OnlineFinish,
}

impl StepId {
    /// All steps in order.
    pub const ALL: [StepId; 23] = [
        StepId::Preflight,
        StepId::SmokeBaseline,
        StepId::S3Presync,
        StepId::OnlineCopy,
        StepId::CatchUp,
        StepId::OnlineVerify,
        StepId::MaintenanceOn,
        StepId::ScaleDown,
        StepId::Settle,
        StepId::Transfer,
        StepId::Verify,
        StepId::S3FinalSync,
        StepId::WriteCheck,
        StepId::TargetCapture,
        StepId::AttachBackup,
        StepId::DetachDatabase,
        StepId::SetConfig,
        StepId::CloudfrontOrigins,
        StepId::ReadBack,
        StepId::ScaleUp,
        StepId::MaintenanceOff,
        StepId::SmokeCompare,
        StepId::OnlineFinish,
    ];

    /// Whether the step changes what the app runs on: from the first of
    /// these on, a failure leaves maintenance on and says how to finish or
    /// roll back.
    pub fn is_cutover(self) -> bool {
        matches!(
            self,
            StepId::AttachBackup
                | StepId::DetachDatabase
                | StepId::SetConfig
                | StepId::CloudfrontOrigins
                | StepId::ReadBack
        )
    }

    /// A short human title.
    pub fn title(self) -> &'static str {
        match self {
            StepId::Preflight => "preflight checks",
            StepId::SmokeBaseline => "smoke baseline",
            StepId::S3Presync => "S3 pre-sync",
            StepId::OnlineCopy => "online copy (capture on, app running)",
            StepId::CatchUp => "catch up with the app's writes",
            StepId::OnlineVerify => "verify the whole database at a cut",
            StepId::MaintenanceOn => "maintenance on",
            StepId::ScaleDown => "scale down workers",
            StepId::Settle => "wait for in-flight writes to settle",
            StepId::Transfer => "database transfer",
            StepId::Verify => "verify target equals source",
            StepId::WriteCheck => "check for writes since the snapshot",
            StepId::S3FinalSync => "S3 final sync",
            StepId::TargetCapture => "install change capture on the target, for rollback",
            StepId::AttachBackup => "attach old database under the backup alias",
            StepId::DetachDatabase => "detach the old DATABASE attachment",
            StepId::SetConfig => "set DATABASE_URL and config vars",
            StepId::CloudfrontOrigins => "switch CloudFront origins",
            StepId::ReadBack => "read config back and compare",
            StepId::ScaleUp => "restore workers",
            StepId::MaintenanceOff => "maintenance off",
            StepId::SmokeCompare => "smoke compare",
            StepId::OnlineFinish => "validate held-back keys, remove capture",
        }
    }
}

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.title())
    }
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started.
    Pending,
    /// Started and not finished (a crash leaves this).
    Running,
    /// Finished.
    Done,
    /// Nothing to do for this plan (e.g. no buckets).
    Skipped,
    /// Failed; `detail` says why.
    Failed,
}

/// One step's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Which step.
    pub id: StepId,
    /// Where it stands.
    pub status: StepStatus,
    /// When it last started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished or failed.
    pub finished_at: Option<DateTime<Utc>>,
    /// What it did or why it failed, in words, without secrets.
    pub detail: Option<String>,
}

impl StepRecord {
    /// Seconds between start and finish.
    pub fn seconds(&self) -> Option<f64> {
        Some((self.finished_at? - self.started_at?).num_milliseconds() as f64 / 1000.0)
    }
}

/// Where the whole migration stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum RunState {
    /// Started and not finished: `resume` continues it.
    InProgress,
    /// Stopped before the cutover with the app back on its old database and
    /// maintenance off; `run` may start again.
    Aborted {
        /// Why.
        reason: String,
    },
    /// The app runs on the new database.
    Completed,
    /// `rollback` put the app back on the old database.
    RolledBack,
}

/// What a migration has learned and done: everything `resume`,
/// `rollback` and `status` need, and nothing secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    /// Format version.
    pub version: u32,
    /// The Heroku app.
    pub app: String,
    /// Where the migration stands.
    pub state: RunState,
    /// When `run` started.
    pub started_at: DateTime<Utc>,
    /// Last write.
    pub updated_at: DateTime<Utc>,
    /// Every step in order.
    pub steps: Vec<StepRecord>,
    /// The Postgres add-on the app ran on before the cutover.
    pub old_addon: Option<String>,
    /// Other attachment names the old add-on had.
    pub old_attachments: Vec<String>,
    /// Source database host (never the URL: it has the password).
    pub source_host: Option<String>,
    /// Target database host.
    pub target_host: Option<String>,
    /// When maintenance went on, and off.
    pub maintenance_on_at: Option<DateTime<Utc>>,
    /// When maintenance went off.
    pub maintenance_off_at: Option<DateTime<Utc>>,
    /// Whether maintenance was already on before `run` (then it is left on).
    pub maintenance_was_on: bool,
    /// Process types scaled down and their quantities before.
    pub formation_before: BTreeMap<String, u32>,
    /// The plan's config vars before the cutover: the SHA-256 (hex) of each
    /// value, `None` for a var that was unset. The values themselves are in
    /// [`WorkDir::config_values`], never here. Values that look secret are
    /// not kept at all: see `unjournaled_vars`.
    pub config_before: BTreeMap<String, Option<String>>,
    /// Plan config vars whose old value was not journaled because it looks
    /// secret; rollback asks the operator to restore these.
    pub unjournaled_vars: Vec<String>,
    /// The source's write position just before the copy's snapshot.
    pub source_mark: Option<WriteMark>,
    /// The target's write position at the cutover, to count rows written on
    /// RDS before a rollback.
    pub target_mark: Option<WriteMark>,
    /// What the database copy did.
    pub transfer: Option<TransferSummary>,
    /// What verification found.
    pub verify: Option<VerifySummary>,
    /// Each bucket sync pass.
    pub s3: Vec<S3Summary>,
    /// The smoke pages before anything changed.
    pub smoke_before: Vec<PageCheck>,
    /// How the pages changed after the cutover.
    pub smoke_differences: Vec<PageDifference>,
    /// The source database as preflight identified it
    /// (`user@host:port/dbname` and the server's `system_identifier`):
    /// `resume` and `rollback` refuse another one.
    #[serde(default)]
    pub source_identity: Option<DbIdentity>,
    /// The target database as preflight identified it.
    #[serde(default)]
    pub target_identity: Option<DbIdentity>,
    /// What an earlier attempt left on the target, carried from attempt to
    /// attempt until a transfer starts over.
    #[serde(default)]
    pub earlier_copy: Option<EarlierCopy>,
    /// The target's write position when this attempt ended (abort or
    /// rollback), to prove on the next attempt that nothing wrote there
    /// since.
    #[serde(default)]
    pub target_end_mark: Option<WriteMark>,
    /// What the target's user owned there when this attempt ended (abort
    /// or rollback), to prove on the next attempt that no view, function,
    /// type or schema was created or dropped since.
    #[serde(default)]
    pub target_end_owned: Option<OwnedObjects>,
    /// Why this attempt may drop the earlier copy on the target
    /// (`--restart-target`, or the proof that nothing but the transfer
    /// wrote there); `None`: it may not.
    #[serde(default)]
    pub restart_approved: Option<String>,
    /// The maintenance window the preflight step estimated, seconds.
    #[serde(default)]
    pub estimated_window_seconds: Option<f64>,
    /// Copy workers the source's free connections allow (preflight).
    #[serde(default)]
    pub jobs_cap: Option<usize>,
    /// What the app's own credentials were allowed to do on each target
    /// bucket, as the preflight step checked it.
    #[serde(default)]
    pub app_access: Vec<super::app_access::AccessCheck>,
    /// Each CloudFront distribution's switch: every origin's old and new
    /// domain, journaled before the switch is sent.
    #[serde(default)]
    pub cloudfront: Vec<crate::cloudfront::DistributionSwitch>,
}

/// What an attempt left on the target, as the next attempt sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlierCopy {
    /// The target it copied into, if preflight identified it.
    pub target: Option<DbIdentity>,
    /// When that attempt's copy finished, if it did.
    pub copied_at: Option<DateTime<Utc>>,
    /// When the app was switched to the target (`DATABASE_URL` set), if
    /// it was: the app may have written there since.
    pub cutover_at: Option<DateTime<Utc>>,
    /// When the attempt ended (abort or rollback).
    pub ended_at: DateTime<Utc>,
    /// The target's write position when it ended (`None`: not read).
    pub end_mark: Option<WriteMark>,
    /// What the target's user owned there when it ended (`None`: not read,
    /// or a journal from before herokurds recorded it).
    #[serde(default)]
    pub end_owned: Option<OwnedObjects>,
}

/// The objects a user owns in a database (what `DROP OWNED BY` would
/// drop), summed up: equal summaries, same objects. Holds names only
/// through their count and a digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedObjects {
    /// The user (role).
    pub user: String,
    /// How many objects it owns there (tables, views, functions, types,
    /// schemas, sequences ...).
    pub objects: i64,
    /// MD5 of the sorted list of those objects (catalog and OID): one
    /// object created and another dropped still changes it.
    pub fingerprint: String,
    /// The highest OID among them: objects created later have higher ones
    /// (OIDs grow until they wrap around), which names what is new.
    pub newest_oid: i64,
}

impl Journal {
    /// A fresh journal for `app`: every step pending.
    pub fn new(app: &str) -> Self {
        let now = Utc::now();
        Journal {
            version: JOURNAL_VERSION,
            app: app.to_string(),
            state: RunState::InProgress,
            started_at: now,
            updated_at: now,
            steps: StepId::ALL
                .iter()
                .map(|&id| StepRecord {
                    id,
                    status: StepStatus::Pending,
                    started_at: None,
                    finished_at: None,
                    detail: None,
                })
                .collect(),
            old_addon: None,
            old_attachments: Vec::new(),
            source_host: None,
            target_host: None,
            maintenance_on_at: None,
            maintenance_off_at: None,
            maintenance_was_on: false,
            formation_before: BTreeMap::new(),
            config_before: BTreeMap::new(),
            unjournaled_vars: Vec::new(),
            source_mark: None,
            target_mark: None,
            transfer: None,
            verify: None,
            s3: Vec::new(),
            smoke_before: Vec::new(),
            smoke_differences: Vec::new(),
            source_identity: None,
            target_identity: None,
            earlier_copy: None,
            target_end_mark: None,
            target_end_owned: None,
            restart_approved: None,
            estimated_window_seconds: None,
            jobs_cap: None,
            app_access: Vec::new(),
            cloudfront: Vec::new(),
        }
    }

    /// What this attempt leaves on the target for the next one: its own
    /// copy once its transfer started, else what it inherited.
    pub fn earlier_copy_for_next(&self) -> Option<EarlierCopy> {
        let copy = self.copy_step();
        if self.step(copy).status == StepStatus::Pending {
            return self.earlier_copy.clone();
        }
        let set = self.step(StepId::SetConfig);
        Some(EarlierCopy {
            target: self.target_identity.clone(),
            copied_at: self
                .is_finished(copy)
                .then(|| self.step(copy).finished_at)
                .flatten(),
            cutover_at: (set.status != StepStatus::Pending)
                .then_some(set.started_at)
                .flatten(),
            ended_at: self.updated_at,
            end_mark: self.target_end_mark.clone(),
            end_owned: self.target_end_owned.clone(),
        })
    }

    /// The step that copies the database: [`StepId::OnlineCopy`] once it
    /// ran (online mode), else [`StepId::Transfer`].
    pub fn copy_step(&self) -> StepId {
        match self.step(StepId::OnlineCopy).status {
            StepStatus::Pending | StepStatus::Skipped => StepId::Transfer,
            _ => StepId::OnlineCopy,
        }
    }

    /// The record of `id`.
    pub fn step(&self, id: StepId) -> &StepRecord {
        self.steps
            .iter()
            .find(|s| s.id == id)
            .expect("every step has a record")
    }

    fn step_mut(&mut self, id: StepId) -> &mut StepRecord {
        self.steps
            .iter_mut()
            .find(|s| s.id == id)
            .expect("every step has a record")
    }

    /// Whether `id` is done or skipped.
    pub fn is_finished(&self, id: StepId) -> bool {
        matches!(self.step(id).status, StepStatus::Done | StepStatus::Skipped)
    }

    /// The first step not done or skipped.
    pub fn next_step(&self) -> Option<StepId> {
        self.steps
            .iter()
            .find(|s| !matches!(s.status, StepStatus::Done | StepStatus::Skipped))
            .map(|s| s.id)
    }

    /// Whether any cutover step has started: from then on the app may be
    /// on the new database.
    pub fn cutover_started(&self) -> bool {
        self.steps
            .iter()
            .any(|s| s.id.is_cutover() && s.status != StepStatus::Pending)
    }

    /// Marks `id` running.
    pub fn start(&mut self, id: StepId) {
        let s = self.step_mut(id);
        s.status = StepStatus::Running;
        s.started_at = Some(Utc::now());
        s.finished_at = None;
        s.detail = None;
    }

    /// Marks `id` done with what it did.
    pub fn finish(&mut self, id: StepId, detail: impl Into<String>) {
        let s = self.step_mut(id);
        s.status = StepStatus::Done;
        s.finished_at = Some(Utc::now());
        let d = detail.into();
        s.detail = (!d.is_empty()).then_some(d);
    }

    /// Marks `id` skipped, saying why.
    pub fn skip(&mut self, id: StepId, why: impl Into<String>) {
        let s = self.step_mut(id);
        s.status = StepStatus::Skipped;
        s.started_at.get_or_insert_with(Utc::now);
        s.finished_at = Some(Utc::now());
        s.detail = Some(why.into());
    }

    /// Marks `id` failed, saying why.
    pub fn fail(&mut self, id: StepId, why: impl Into<String>) {
        let s = self.step_mut(id);
        s.status = StepStatus::Failed;
        s.finished_at = Some(Utc::now());
        s.detail = Some(why.into());
    }

    /// Puts steps from `from` on back to pending (a new attempt after an
    /// abort).
    pub fn reset_from(&mut self, from: StepId) {
        for s in self.steps.iter_mut().filter(|s| s.id >= from) {
            s.status = StepStatus::Pending;
            s.started_at = None;
            s.finished_at = None;
            s.detail = None;
        }
    }

    /// The downtime so far (or in all, once maintenance is off).
    pub fn downtime(&self) -> Option<chrono::Duration> {
        let on = self.maintenance_on_at?;
        Some(self.maintenance_off_at.unwrap_or_else(Utc::now) - on)
    }

    /// Reads the journal of `app`, if there is one.
    pub fn load(dir: &WorkDir, app: &str) -> Result<Option<Journal>, JournalError> {
        let path = dir.journal(app);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(JournalError::io(&path, "reading", e)),
        };
        // The version first: another version's fields may not parse.
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let corrupt = |e: serde_json::Error| JournalError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        };
        let found = serde_json::from_str::<Versioned>(&text)
            .map_err(corrupt)?
            .version;
        if found != JOURNAL_VERSION {
            return Err(JournalError::Version {
                path,
                found,
                supported: JOURNAL_VERSION,
            });
        }
        let mut journal: Journal = serde_json::from_str(&text).map_err(corrupt)?;
        journal.add_missing_steps();
        if journal.app != app {
            return Err(JournalError::Corrupt {
                path,
                message: format!("it belongs to app {:?}, not {app:?}", journal.app),
            });
        }
        Ok(Some(journal))
    }

    /// Gives steps added since the journal was written (a journal of an
    /// earlier herokurds) a pending record in their place.
    fn add_missing_steps(&mut self) {
        for id in StepId::ALL {
            if !self.steps.iter().any(|s| s.id == id) {
                let at = self.steps.iter().position(|s| s.id > id);
                let record = StepRecord {
                    id,
                    status: StepStatus::Pending,
                    started_at: None,
                    finished_at: None,
                    detail: None,
                };
                match at {
                    Some(i) => self.steps.insert(i, record),
                    None => self.steps.push(record),
                }
            }
        }
    }

    /// Writes the journal atomically ([`fsutil::write_atomic`]), mode 0600.
    pub fn save(&mut self, dir: &WorkDir) -> Result<(), JournalError> {
        self.updated_at = Utc::now();
        dir.create()?;
        let path = dir.journal(&self.app);
        let mut body = serde_json::to_vec_pretty(self).expect("the journal serialises");
        body.push(b'\n');
        fsutil::blocking_io(|| fsutil::write_atomic(&path, &body, fsutil::PRIVATE_FILE))
            .map_err(|e| JournalError::io(&path, "writing", e))
    }

    /// Records the plan's config vars as they were before the cutover
    /// (`None`: unset): the values go to [`WorkDir::config_values`] (mode
    /// 0600), the journal gets each name with the SHA-256 of its value.
    /// Saves neither the journal nor anything else.
    pub fn record_config_before(
        &mut self,
        dir: &WorkDir,
        values: BTreeMap<String, Option<String>>,
    ) -> Result<(), JournalError> {
        dir.create_app_dir(&self.app)?;
        let path = dir.config_values(&self.app);
        let kept: BTreeMap<&String, &String> = values
            .iter()
            .filter_map(|(k, v)| Some((k, v.as_ref()?)))
            .collect();
        let body = serde_json::to_vec_pretty(&kept).expect("a map of strings serialises");
        fsutil::blocking_io(|| fsutil::write_atomic(&path, &body, fsutil::PRIVATE_FILE))
            .map_err(|e| JournalError::io(&path, "writing", e))?;
        self.config_before = values
            .into_iter()
            .map(|(k, v)| (k, v.map(|v| sha256_hex(&v))))
            .collect();
        Ok(())
    }

    /// The config vars to restore on rollback: each journaled var with its
    /// old value (`None`: it was unset), read from
    /// [`WorkDir::config_values`] and checked against the journaled
    /// SHA-256. The second list names the vars whose value is missing from
    /// that file or differs from what was journaled: they are not restored,
    /// and the operator must set them by hand.
    pub fn config_to_restore(
        &self,
        dir: &WorkDir,
    ) -> (BTreeMap<String, Option<String>>, Vec<String>) {
        let stored: BTreeMap<String, String> = fs::read(dir.config_values(&self.app))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let mut restore = BTreeMap::new();
        let mut by_hand = Vec::new();
        for (name, hash) in &self.config_before {
            match (hash, stored.get(name)) {
                (None, _) => {
                    restore.insert(name.clone(), None);
                }
                (Some(h), Some(v)) if sha256_hex(v) == *h => {
                    restore.insert(name.clone(), Some(v.clone()));
                }
                (Some(_), _) => by_hand.push(name.clone()),
            }
        }
        (restore, by_hand)
    }
}

/// Lower-case hex SHA-256 of `value`.
fn sha256_hex(value: &str) -> String {
    sha2::Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An exclusive lock on one app's migration; released on drop or when the
/// process exits.
#[derive(Debug)]
pub struct AppLock {
    lock: fsutil::FileLock,
}

impl AppLock {
    /// Takes the lock for `app`, or fails at once naming the holder.
    pub fn acquire(dir: &WorkDir, app: &str) -> Result<AppLock, JournalError> {
        dir.create()?;
        let path = dir.lock(app);
        match fsutil::FileLock::acquire(&path) {
            Ok(lock) => Ok(AppLock { lock }),
            Err(fsutil::LockError::Held { path, holder }) => Err(JournalError::Locked {
                app: app.to_string(),
                path,
                holder,
            }),
            Err(e) => Err(JournalError::Lock(e)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        self.lock.path()
    }
}

/// Why the journal or lock could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The journal was written in a format this build does not read.
    #[error(
        "journal {path} has format version {found}, and this herokurds reads version {supported} only: \
         finish or roll back that migration with the herokurds that wrote it, or move the file aside to start over"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The journal does not parse.
    #[error(
        "journal {path} is unreadable ({message}); move it aside to start over, or restore it"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The transfer's journal is both where it belongs and where an older
    /// herokurds left it (`transfer/transfer`).
    #[error(
        "app {app} has two transfer journals, {current} and {legacy} (left by an older herokurds): \
         keep the one of the migration to resume and move the other's directory aside"
    )]
    TransferStateTwice {
        /// The app.
        app: String,
        /// Where the journal belongs.
        current: PathBuf,
        /// Where an older herokurds left one.
        legacy: PathBuf,
    },
    /// The app's lock file could not be opened, locked or written.
    #[error(transparent)]
    Lock(fsutil::LockError),
    /// Another process holds the app's lock.
    #[error("another herokurds process is migrating app {app} ({holder}); lock file {path}")]
    Locked {
        /// The app.
        app: String,
        /// The lock file.
        path: PathBuf,
        /// What the holder wrote into it.
        holder: String,
    },
}

impl JournalError {
    pub(crate) fn io(path: &Path, action: &'static str, source: io::Error) -> Self {
        JournalError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_progress_and_resume_at_the_first_unfinished_one() {
        let mut j = Journal::new("micromasters-ci");
        assert_eq!(j.next_step(), Some(StepId::Preflight));
        j.start(StepId::Preflight);
        j.finish(StepId::Preflight, "ok");
        j.skip(StepId::SmokeBaseline, "no smoke URLs");
        j.start(StepId::S3Presync);
        assert_eq!(j.next_step(), Some(StepId::S3Presync));
        assert!(!j.cutover_started());
        j.finish(StepId::S3Presync, "");
        for id in [StepId::OnlineCopy, StepId::CatchUp, StepId::OnlineVerify] {
            j.skip(id, "offline mode");
        }
        // Maintenance on up to the S3 final sync.
        let window = StepId::ALL
            .into_iter()
            .skip_while(|&id| id != StepId::MaintenanceOn)
            .take_while(|&id| id != StepId::WriteCheck);
        for id in window {
            j.start(id);
            j.finish(id, "");
        }
        j.start(StepId::WriteCheck);
        j.fail(StepId::WriteCheck, "public.jobs changed");
        assert_eq!(j.next_step(), Some(StepId::WriteCheck));
        j.reset_from(StepId::MaintenanceOn);
        assert_eq!(j.next_step(), Some(StepId::MaintenanceOn));
        assert!(j.is_finished(StepId::S3Presync));
        j.start(StepId::AttachBackup);
        assert!(j.cutover_started());
    }

    #[test]
    fn save_and_load_round_trip_with_private_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = WorkDir::new(tmp.path().join("work"));
        assert!(Journal::load(&dir, "app-one").unwrap().is_none());
        let mut j = Journal::new("app-one");
        j.old_addon = Some("postgresql-rigid-71273".into());
        j.save(&dir).unwrap();
        let back = Journal::load(&dir, "app-one").unwrap().unwrap();
        assert_eq!(back.old_addon, j.old_addon);
        assert_eq!(back.steps, j.steps);
        let mode = fs::metadata(dir.journal("app-one"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = fs::metadata(dir.root()).unwrap().permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);
        // No temp files are left behind.
        let names: Vec<_> = fs::read_dir(dir.root())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_corrupt_or_foreign_journal_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = WorkDir::new(tmp.path());
        fs::write(dir.journal("app-two"), "{not json").unwrap();
        let e = Journal::load(&dir, "app-two").unwrap_err().to_string();
        assert!(
            e.contains("app-two.journal.json") && e.contains("unreadable"),
            "{e}"
        );
        let mut other = Journal::new("app-three");
        other.save(&dir).unwrap();
        fs::copy(dir.journal("app-three"), dir.journal("app-two")).unwrap();
        let e = Journal::load(&dir, "app-two").unwrap_err().to_string();
        assert!(e.contains("belongs to app \"app-three\""), "{e}");
    }

    #[test]
    fn a_journal_of_another_version_is_refused_naming_the_file_and_both_versions() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = WorkDir::new(tmp.path());
        for found in [1, JOURNAL_VERSION + 1] {
            let mut j = Journal::new("app-one");
            j.save(&dir).unwrap();
            let text = fs::read_to_string(dir.journal("app-one")).unwrap();
            let changed = text.replacen(
                &format!("\"version\": {JOURNAL_VERSION}"),
                &format!("\"version\": {found}"),
                1,
            );
            assert_ne!(text, changed);
            fs::write(dir.journal("app-one"), changed).unwrap();
            let e = Journal::load(&dir, "app-one").unwrap_err();
            assert!(matches!(e, JournalError::Version { .. }), "{e:?}");
            let e = e.to_string();
            assert!(
                e.contains("app-one.journal.json")
                    && e.contains(&format!("format version {found}"))
                    && e.contains(&format!("reads version {JOURNAL_VERSION}")),
                "{e}"
            );
        }
    }

    #[test]
    fn the_work_dir_layout_puts_every_file_in_its_one_place() {
        let dir = WorkDir::new("/srv/state");
        let app = "app-one";
        let expected = [
            (dir.journal(app), "/srv/state/app-one.journal.json"),
            (dir.lock(app), "/srv/state/app-one.lock"),
            (dir.app_dir(app), "/srv/state/app-one"),
            (
                dir.config_values(app),
                "/srv/state/app-one/config-before.json",
            ),
            (dir.report(app, "md"), "/srv/state/app-one/report.md"),
            (dir.report(app, "json"), "/srv/state/app-one/report.json"),
            (dir.transfer_work_dir(app), "/srv/state/app-one"),
            (dir.transfer(app), "/srv/state/app-one/transfer"),
            (
                dir.transfer_journal(app),
                "/srv/state/app-one/transfer/journal.json",
            ),
            (
                dir.legacy_transfer(app),
                "/srv/state/app-one/transfer/transfer",
            ),
        ];
        for (got, want) in expected {
            assert_eq!(got, Path::new(want));
        }
        // The transfer, handed transfer_work_dir, writes where WorkDir says.
        let paths = crate::transfer::StatePaths::new(&dir.transfer_work_dir(app));
        assert_eq!(paths.dir, dir.transfer(app));
        assert_eq!(paths.journal, dir.transfer_journal(app));
    }

    #[test]
    fn a_transfer_journal_left_in_transfer_transfer_is_moved_where_resume_looks() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = WorkDir::new(tmp.path());
        let app = "app-one";
        assert!(!dir.adopt_legacy_transfer(app).unwrap(), "nothing to move");
        let legacy = dir.legacy_transfer(app);
        fs::create_dir_all(&legacy).unwrap();
        fs::write(legacy.join("journal.json"), "{\"tables\":{}}").unwrap();
        fs::write(legacy.join("schema.dump"), "archive").unwrap();
        assert!(dir.adopt_legacy_transfer(app).unwrap());
        assert_eq!(
            fs::read_to_string(dir.transfer_journal(app)).unwrap(),
            "{\"tables\":{}}"
        );
        assert_eq!(
            fs::read_to_string(dir.transfer(app).join("schema.dump")).unwrap(),
            "archive"
        );
        assert!(!legacy.exists(), "the old directory is gone");
        assert!(
            !dir.adopt_legacy_transfer(app).unwrap(),
            "a second call moves nothing"
        );
    }

    #[test]
    fn transfer_journals_in_both_places_are_refused_naming_both() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = WorkDir::new(tmp.path());
        let app = "app-one";
        fs::create_dir_all(dir.legacy_transfer(app)).unwrap();
        fs::write(dir.legacy_transfer(app).join("journal.json"), "old").unwrap();
        fs::write(dir.transfer_journal(app), "new").unwrap();
        let e = dir.adopt_legacy_transfer(app).unwrap_err().to_string();
        assert!(
            e.contains(&dir.transfer_journal(app).display().to_string())
                && e.contains(
                    &dir.legacy_transfer(app)
                        .join("journal.json")
                        .display()
                        .to_string()
                )
                && e.contains("aside"),
            "{e}"
        );
        assert_eq!(
            fs::read_to_string(dir.transfer_journal(app)).unwrap(),
            "new"
        );
    }

    #[test]
    fn a_work_dir_that_exists_keeps_its_mode_and_only_herokurds_dirs_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let project = tempfile::tempdir().unwrap();
        fs::set_permissions(project.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let dir = WorkDir::new(project.path());
        // An app directory left readable by others (an older herokurds,
        // a restored backup) is made private again.
        fs::create_dir(dir.app_dir("app-one")).unwrap();
        fs::set_permissions(dir.app_dir("app-one"), fs::Permissions::from_mode(0o755)).unwrap();
        let _lock = AppLock::acquire(&dir, "app-one").unwrap();
        let mut j = Journal::new("app-one");
        j.record_config_before(
            &dir,
            BTreeMap::from([("CDN".to_string(), Some("v".into()))]),
        )
        .unwrap();
        j.save(&dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode(project.path()),
            0o755,
            "the operator's directory is untouched"
        );
        assert_eq!(mode(&dir.app_dir("app-one")), 0o700);
        for f in [
            dir.journal("app-one"),
            dir.lock("app-one"),
            dir.config_values("app-one"),
        ] {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
    }

    #[test]
    fn config_values_stay_out_of_the_journal_and_come_back_only_when_they_match_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = WorkDir::new(tmp.path());
        let mut j = Journal::new("app-one");
        j.record_config_before(
            &dir,
            BTreeMap::from([
                (
                    "CDN_HOST".to_string(),
                    Some("cdn-old-q7x.example.org".to_string()),
                ),
                ("NEW_VAR".to_string(), None),
            ]),
        )
        .unwrap();
        j.save(&dir).unwrap();
        let text = fs::read_to_string(dir.journal("app-one")).unwrap();
        assert!(!text.contains("cdn-old-q7x"), "{text}");
        assert_eq!(
            j.config_before["CDN_HOST"],
            Some(sha256_hex("cdn-old-q7x.example.org"))
        );
        assert_eq!(j.config_before["NEW_VAR"], None);
        let (restore, by_hand) = j.config_to_restore(&dir);
        assert_eq!(
            restore,
            BTreeMap::from([
                (
                    "CDN_HOST".to_string(),
                    Some("cdn-old-q7x.example.org".to_string())
                ),
                ("NEW_VAR".to_string(), None),
            ])
        );
        assert!(by_hand.is_empty());
        // A value changed behind herokurds' back is not restored.
        fs::write(dir.config_values("app-one"), r#"{"CDN_HOST": "evil"}"#).unwrap();
        let (restore, by_hand) = j.config_to_restore(&dir);
        assert_eq!(by_hand, vec!["CDN_HOST".to_string()]);
        assert!(!restore.contains_key("CDN_HOST") && restore.contains_key("NEW_VAR"));
    }

    /// A journal written before the CloudFront step existed lacked its
    /// record, and `step()` panicked on it ("every step has a record").
    #[test]
    fn a_journal_without_a_newer_step_reads_with_that_step_pending_in_its_place() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = WorkDir::new(tmp.path());
        let mut j = Journal::new("app-one");
        for id in [StepId::Preflight, StepId::SetConfig, StepId::ReadBack] {
            j.start(id);
            j.finish(id, "done");
        }
        j.save(&dir).unwrap();
        let mut old: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(dir.journal("app-one")).unwrap()).unwrap();
        let obj = old.as_object_mut().unwrap();
        obj.remove("cloudfront");
        obj.remove("app_access");
        obj["steps"]
            .as_array_mut()
            .unwrap()
            .retain(|s| s["id"] != "cloudfront_origins");
        fs::write(dir.journal("app-one"), old.to_string()).unwrap();
        let back = Journal::load(&dir, "app-one").unwrap().unwrap();
        assert_eq!(
            back.steps.iter().map(|s| s.id).collect::<Vec<_>>(),
            StepId::ALL.to_vec()
        );
        assert_eq!(
            back.step(StepId::CloudfrontOrigins).status,
            StepStatus::Pending
        );
        assert!(back.is_finished(StepId::ReadBack) && back.cloudfront.is_empty());
    }

    #[test]
    fn sha256_is_the_standard_one() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_lock_is_exclusive_and_released_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = WorkDir::new(tmp.path());
        let lock = AppLock::acquire(&dir, "app-one").unwrap();
        let e = AppLock::acquire(&dir, "app-one").unwrap_err().to_string();
        assert!(
            e.contains("another herokurds process")
                && e.contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        let _other_app = AppLock::acquire(&dir, "app-two").unwrap();
        drop(lock);
        AppLock::acquire(&dir, "app-one").unwrap();
    }
}
