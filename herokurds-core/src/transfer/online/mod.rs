//! Online mode: copy while the app keeps writing, then keep only a short
//! catch-up inside the maintenance window.
//!
//! Heroku Postgres offers no logical replication, replication slot or
//! superuser, but its default credential owns the tables, so it can
//! install triggers. [`OnlineMigration`] composes, in order (every step
//! journaled in `<work_dir>/online.json`, so a killed run resumes where it
//! stopped, and the capture keeps logging while herokurds is down):
//! 1. **capture** ([`capture`]): a trigger on every copied table logs each
//!    changed row's key into a table of herokurds' own schema;
//! 2. **copy**: the parallel transfer ([`super::run_in_snapshot`]) in a
//!    snapshot exported *after* capture is in place, so every change the
//!    copy does not contain is in the log. Then the target's foreign keys
//!    are held back (dropped, their definitions journaled) and its user
//!    triggers disabled, because applying changes row set by row set
//!    breaks both;
//! 3. **catch-up** ([`OnlineMigration::catch_up`]): in rounds, each in one
//!    new source snapshot: the changes visible in it and not in the last
//!    applied one are read from the log, their keys deleted on the target
//!    and their rows copied again from the source, in one target
//!    transaction. After a round the target equals the source as of that
//!    round's snapshot (rounds are idempotent, so a redone round is
//!    harmless);
//! 4. **cut** ([`OnlineMigration::verify_cut`]): one more round whose
//!    snapshot is exported, then the whole database verified against it
//!    while applying pauses;
//! 5. **window** ([`OnlineMigration::finish_window`]), with the app in
//!    maintenance and settled: a last round; the schema compared with the
//!    one the copy saw (DDL cannot be captured); the rows of every key
//!    changed since the cut compared on both sides (never an unchanged
//!    table); large objects copied again if any was written; sequences
//!    set; foreign keys added back `NOT VALID` and triggers enabled.
//!    [`OnlineMigration::check_quiet`] then proves, just before the
//!    cutover, that nothing was logged since;
//! 6. **finish** ([`OnlineMigration::finish`]), after the cutover: the foreign
//!    keys validated (which does not block writes) and capture removed from
//!    the source. [`OnlineMigration::abort`] removes capture without a
//!    cutover.

mod apply;
pub mod capture;
mod state;
mod window;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

pub use capture::{CapturedTable, KeyColumn, RowKey, CAPTURE_SCHEMA};
pub use state::{AppliedTotals, HeldBack, HeldForeignKey, HeldTrigger, OnlineState};
pub use window::WindowReport;

use super::endpoint::{Endpoint, Role};
use super::{
    ResumeMode, Side, Snapshot, TransferError, TransferEvent, TransferOptions, TransferReport,
};
use crate::pg::catalog::{self, TableInfo};
use crate::progress::Progress;
use crate::url::DatabaseUrl;
use crate::verify::{Difference, VerifyEvent, VerifyReport};

/// Why an online step stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnlineError {
    /// The copy (or a step it shares with the transfer) failed.
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// The verification could not run.
    #[error("verification: {0}")]
    Verify(#[from] crate::verify::VerifyError),
    /// A statement failed.
    #[error("{what} on the {side}: {message}")]
    Query {
        /// Which database.
        side: Side,
        /// What herokurds was doing.
        what: String,
        /// The server's message.
        message: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The online journal could not be read or written.
    #[error("online journal {path}: {source}")]
    Journal {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The journal belongs to other databases, or to a newer herokurds.
    #[error("online journal {path}: {message}")]
    JournalMismatch {
        /// The file.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
    /// A step ran before the one it needs.
    #[error("online mode: {step} needs {needs} first")]
    OutOfOrder {
        /// The step asked for.
        step: &'static str,
        /// The step it needs.
        needs: &'static str,
    },
    /// The target does not equal the source at the verified cut.
    #[error(
        "the target differs from the source at the verified cut ({} difference(s): {}); nothing \
         was switched",
        differences.len(),
        differences.iter().take(5).map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    CutDiffers {
        /// Every difference.
        differences: Vec<Difference>,
    },
    /// The source's schema changed after the copy: triggers cannot capture
    /// DDL, so the copy may be missing it.
    #[error(
        "the source's schema changed during the online copy, which capture cannot follow: {}; \
         nothing was switched: run the migration again from the start (--restart-target) once \
         the schema is stable",
        changes.join("; ")
    )]
    SchemaChanged {
        /// Each changed object, in words.
        changes: Vec<String>,
    },
    /// Rows changed since the cut are not the same on both sides.
    #[error(
        "rows changed since the verified cut differ on the target: {}; nothing was switched",
        tables.join("; ")
    )]
    KeysDiffer {
        /// Each table with its counts.
        tables: Vec<String>,
    },
    /// Something wrote to the source after the last catch-up round.
    #[error(
        "the source is still being written: {} change(s) logged since the last catch-up, in {}; \
         stop what writes (worker and clock dynos, scheduled jobs, other apps sharing the \
         database) before the cutover",
        changes,
        tables.join(", ")
    )]
    StillWriting {
        /// Changes logged since.
        changes: u64,
        /// The tables written.
        tables: Vec<String>,
    },
    /// Cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl OnlineError {
    pub(crate) fn query(
        side: Side,
        what: impl Into<String>,
    ) -> impl FnOnce(tokio_postgres::Error) -> OnlineError {
        let what = what.into();
        move |e| OnlineError::Query {
            side,
            what,
            message: super::copy::message(&e),
            source: e,
        }
    }

    /// Whether a check found a difference (exit code 1 for the binaries),
    /// rather than an error that stopped the work (exit code 2).
    pub fn is_check_failure(&self) -> bool {
        matches!(
            self,
            OnlineError::CutDiffers { .. }
                | OnlineError::SchemaChanged { .. }
                | OnlineError::KeysDiffer { .. }
                | OnlineError::StillWriting { .. }
        )
    }
}

/// What online mode is doing, for progress bars and logs.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnlineEvent {
    /// Capture is in place on one table.
    CaptureInstalled {
        /// `schema.name`.
        table: String,
        /// `primary key (id)` or `whole row`.
        key: String,
    },
    /// An event of the copy.
    Transfer {
        /// The transfer's event.
        transfer: TransferEvent,
    },
    /// Foreign keys and user triggers held back on the target until the
    /// window.
    HeldBack {
        /// Foreign keys dropped (their definitions are journaled).
        foreign_keys: usize,
        /// Triggers disabled.
        triggers: usize,
    },
    /// One catch-up round applied.
    RoundApplied {
        /// Rounds so far (all runs).
        round: u32,
        /// Log rows read.
        changes: u64,
        /// Distinct keys applied.
        keys: u64,
        /// Tables touched.
        tables: usize,
        /// How long the round took.
        seconds: f64,
    },
    /// An event of a verification.
    Verify {
        /// The verification's event.
        verify: VerifyEvent,
    },
    /// The whole database was verified at the cut.
    CutVerified {
        /// Tables compared.
        tables: usize,
        /// Differences expected until the window (held-back foreign keys
        /// and triggers, sequences, large objects written since the copy).
        expected: usize,
        /// How long it took.
        seconds: f64,
    },
    /// A window step finished.
    WindowStep {
        /// What it did, in words.
        step: String,
        /// How long it took.
        seconds: f64,
    },
    /// A foreign key held back was validated after the cutover.
    ForeignKeyValidated {
        /// `schema.table.constraint`.
        name: String,
    },
    /// Capture was removed from the source.
    CaptureRemoved,
}

/// What [`OnlineMigration::catch_up`] did.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct CatchUpReport {
    /// Rounds run by this call.
    pub rounds: u32,
    /// Log rows read.
    pub changes: u64,
    /// Keys applied.
    pub keys: u64,
    /// How long the last round took.
    pub last_round_seconds: f64,
    /// How long the call took.
    pub seconds: f64,
}

/// What [`OnlineMigration::verify_cut`] found.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CutReport {
    /// The verification (its differences include the expected ones).
    pub verify: VerifyReport,
    /// The differences expected until the window, and why each is.
    pub expected: Vec<String>,
    /// How long the cut took, its catch-up round included.
    pub seconds: f64,
}

/// The online migration of one source into one target (see the module
/// documentation). Each method is one journaled step.
pub struct OnlineMigration<'a> {
    source: &'a DatabaseUrl,
    target: &'a DatabaseUrl,
    opts: TransferOptions,
    state: OnlineState,
    path: PathBuf,
}

impl std::fmt::Debug for OnlineMigration<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnlineMigration")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// The online journal's file in a work directory.
pub fn journal_path(work_dir: &Path) -> PathBuf {
    work_dir.join("online.json")
}

/// Reads the online journal of a work directory, if there is one.
pub fn load_state(work_dir: &Path) -> Result<Option<OnlineState>, OnlineError> {
    state::load(&journal_path(work_dir))
}

/// Removes the online journal (and the schema it keeps) from a work
/// directory: a new attempt starts over. Nothing there is not an error.
pub fn discard_journal(work_dir: &Path) -> Result<(), OnlineError> {
    let journal = journal_path(work_dir);
    for path in [window::schema_path(&journal), journal] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(OnlineError::Journal { path, source }),
        }
    }
    Ok(())
}

impl<'a> OnlineMigration<'a> {
    /// Opens the migration journaled in `opts`' work directory, or a new
    /// one. A journal for other databases is refused.
    pub fn open(
        source: &'a DatabaseUrl,
        target: &'a DatabaseUrl,
        opts: &TransferOptions,
    ) -> Result<Self, OnlineError> {
        let path = journal_path(opts.get_work_dir());
        let (src, tgt) = (Endpoint::source(source), Endpoint::target(target));
        let state = match state::load(&path)? {
            Some(s) => {
                if s.source != src.identity() || s.target != tgt.identity() {
                    return Err(OnlineError::JournalMismatch {
                        path,
                        message: format!(
                            "it migrates {} to {}, not {} to {}",
                            s.source,
                            s.target,
                            src.identity(),
                            tgt.identity()
                        ),
                    });
                }
                s
            }
            None => OnlineState::new(src.identity(), tgt.identity()),
        };
        Ok(OnlineMigration {
            source,
            target,
            opts: opts.clone(),
            state,
            path,
        })
    }

    /// The journaled state.
    pub fn state(&self) -> &OnlineState {
        &self.state
    }

    fn save(&mut self) -> Result<(), OnlineError> {
        state::save(&self.path, &mut self.state)
    }

    async fn source_session(&self, role: Role) -> Result<Client, OnlineError> {
        Ok(Endpoint::source(self.source).connect(role, "").await?)
    }

    async fn target_session(&self, role: Role) -> Result<Client, OnlineError> {
        let mem = self.opts.get_maintenance_work_mem();
        Ok(Endpoint::target(self.target).connect(role, mem).await?)
    }

    /// Steps 1 and 2: installs capture, copies in a snapshot taken after
    /// it, and holds back the target's foreign keys and user triggers.
    /// Resumes an interrupted copy (the transfer's own journal); does
    /// nothing once the copy is journaled as done.
    pub async fn copy(
        &mut self,
        progress: &impl Progress<OnlineEvent>,
        cancel: CancellationToken,
    ) -> Result<Option<TransferReport>, OnlineError> {
        if self.state.copied {
            return Ok(None);
        }
        let src = self.source_session(Role::SourceReader).await?;
        if !self.state.capture_installed {
            let captured = install_on(&src, &self.opts, progress).await?;
            self.state.tables = captured;
            self.state.capture_installed = true;
            self.state.large_object_changes = Some(window::large_object_changes(&src).await?);
            self.save()?;
        }
        // The snapshot is exported after every trigger is in place.
        let snap = tokio::select! {
            s = Snapshot::export(self.source) => s?,
            _ = cancel.cancelled() => return Err(OnlineError::Cancelled),
        };
        let current = current_snapshot(&snap).await?;
        let mut opts = self.opts.clone();
        if self.state.start_snapshot.is_none() {
            self.state.start_snapshot = Some(current.clone());
            window::save_schema(&self.path, snap.id(), self.source).await?;
            self.save()?;
        } else if super::journal::Paths::new(self.opts.get_work_dir())
            .journal
            .exists()
        {
            // A resumed copy reads the rest in a newer snapshot; the
            // catch-up starts from the first one, which re-applies (harmlessly)
            // what the newer one already holds.
            opts = opts.resume_mode(ResumeMode::Resume);
        }
        let forward = |e: &TransferEvent| {
            progress.event(&OnlineEvent::Transfer {
                transfer: e.clone(),
            })
        };
        let report =
            super::run_in_snapshot(self.source, self.target, &snap, &opts, &forward, cancel)
                .await?;
        drop(snap);
        self.hold_back(progress).await?;
        self.state.applied = self.state.start_snapshot.clone();
        self.state.copied = true;
        self.save()?;
        Ok(Some(report))
    }

    /// Step 3: catch-up rounds until one takes less than `goal` (its
    /// backlog is then seconds of work), or `max_rounds` ran.
    pub async fn catch_up(
        &mut self,
        goal: Duration,
        max_rounds: u32,
        progress: &impl Progress<OnlineEvent>,
        cancel: &CancellationToken,
    ) -> Result<CatchUpReport, OnlineError> {
        self.need_copied("catch-up")?;
        let started = Instant::now();
        let mut report = CatchUpReport::default();
        let src = self.source_session(Role::SourceReader).await?;
        let tgt = self.target_session(Role::TargetLoader).await?;
        let infos = apply::table_infos(&src, &self.state.tables).await?;
        self.hold_back(progress).await?;
        while report.rounds < max_rounds {
            let round = self
                .round(&src, &tgt, &infos, false, progress, cancel)
                .await?;
            src.batch_execute("COMMIT")
                .await
                .map_err(OnlineError::query(Side::Source, "ending a catch-up round"))?;
            report.rounds += 1;
            report.changes += round.changes;
            report.keys += round.keys;
            report.last_round_seconds = round.seconds;
            self.trim_log(&src).await?;
            if round.seconds < goal.as_secs_f64() {
                break;
            }
        }
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Holds back the target's foreign keys and user triggers unless they
    /// are held back already: after the copy; again after a window that
    /// did not end in a cutover (a write check that failed, which put them
    /// back); first thing for a migration started in sync. What is held
    /// back is journaled before it is dropped, and a drop that may not
    /// have happened is done again.
    pub(crate) async fn hold_back(
        &mut self,
        progress: &impl Progress<OnlineEvent>,
    ) -> Result<(), OnlineError> {
        if self.state.held_back.is_some() && !self.state.restored && !self.state.holding {
            return Ok(());
        }
        let builder = self.target_session(Role::TargetBuilder).await?;
        if self.state.held_back.is_none() || self.state.restored {
            self.state.held_back = Some(state::holdable(&builder).await?);
            self.state.restored = false;
            self.state.window_done = false;
            self.state.holding = true;
            self.save()?;
        }
        let held = self.state.held_back.clone().unwrap_or_default();
        state::hold_back(&builder, &held).await?;
        self.state.holding = false;
        self.save()?;
        progress.event(&OnlineEvent::HeldBack {
            foreign_keys: held.foreign_keys.len(),
            triggers: held.triggers.len(),
        });
        Ok(())
    }

    /// Starts capture on a source the target already equals, instead of a
    /// copy: right after a cutover, RDS (this migration's source) is
    /// captured so that a rollback can replay its writes onto Heroku (this
    /// migration's target) with [`finish_window`](Self::finish_window),
    /// which then compares every key changed since this call. The source
    /// must be quiet (inside the maintenance window). Capture left by an
    /// interrupted call is replaced; once journaled, does nothing and
    /// returns `false`. Foreign keys and triggers on the target are held
    /// back only when changes are applied.
    pub async fn start_in_sync(
        &mut self,
        progress: &impl Progress<OnlineEvent>,
    ) -> Result<bool, OnlineError> {
        if self.state.copied {
            return Ok(false);
        }
        let src = self.source_session(Role::SourceReader).await?;
        capture::remove(&src).await?;
        self.state.tables = install_on(&src, &self.opts, progress).await?;
        self.state.large_object_changes = Some(window::large_object_changes(&src).await?);
        let snap = Snapshot::export(self.source).await?;
        let current = current_snapshot(&snap).await?;
        window::save_schema(&self.path, snap.id(), self.source).await?;
        drop(snap);
        self.state.capture_installed = true;
        self.state.in_sync = true;
        self.state.start_snapshot = Some(current.clone());
        self.state.applied = Some(current.clone());
        self.state.cut = Some(current);
        self.state.copied = true;
        self.save()?;
        Ok(true)
    }

    /// Changes logged on the source and not yet applied (for `status`).
    pub async fn pending_changes(&self) -> Result<i64, OnlineError> {
        let since = self
            .state
            .applied
            .as_deref()
            .ok_or(OnlineError::OutOfOrder {
                step: "counting logged changes",
                needs: "capture",
            })?;
        let src = self.source_session(Role::SourceReader).await?;
        apply::count_since(&src, since).await
    }

    /// One round on `src` (left inside its snapshot transaction, which
    /// the caller ends) and `tgt`; journaled.
    async fn round(
        &mut self,
        src: &Client,
        tgt: &Client,
        infos: &apply::Infos,
        export: bool,
        progress: &impl Progress<OnlineEvent>,
        cancel: &CancellationToken,
    ) -> Result<apply::Round, OnlineError> {
        let since = self.state.applied.clone().ok_or(OnlineError::OutOfOrder {
            step: "a catch-up round",
            needs: "the copy",
        })?;
        let round = tokio::select! {
            r = apply::round(src, tgt, &self.state.tables, infos, &since, export, self.opts.get_format()) => r,
            _ = cancel.cancelled() => return Err(OnlineError::Cancelled),
        };
        let round = match round {
            Ok(r) => r,
            Err(e) => {
                // DDL on the source is the likeliest reason a round cannot
                // apply (a column the target lacks): say so.
                let _ = src.batch_execute("ROLLBACK").await;
                let changes = window::schema_changes(&self.path, src).await;
                return Err(match changes {
                    Ok(changes) if !changes.is_empty() => OnlineError::SchemaChanged { changes },
                    _ => e,
                });
            }
        };
        self.state.applied = Some(round.snapshot.clone());
        self.state.rounds += 1;
        self.state.applied_totals.add(&round);
        self.save()?;
        progress.event(&OnlineEvent::RoundApplied {
            round: self.state.rounds,
            changes: round.changes,
            keys: round.keys,
            tables: round.tables,
            seconds: round.seconds,
        });
        Ok(round)
    }

    /// Deletes the log rows no later step needs: those applied, or, once a
    /// cut is verified, those visible at the cut (the window compares the
    /// keys changed since). Writes on the source: never inside the window.
    async fn trim_log(&self, src: &Client) -> Result<(), OnlineError> {
        let Some(upto) = self.state.cut.as_ref().or(self.state.applied.as_ref()) else {
            return Ok(());
        };
        apply::trim(src, upto).await
    }

    /// Step 4: one round in an exported snapshot, then the whole database
    /// verified against it. The differences expected until the window
    /// (held-back foreign keys and triggers, sequences, large objects when
    /// some were written since the copy) are reported, not failed; any
    /// other is [`OnlineError::CutDiffers`].
    pub async fn verify_cut(
        &mut self,
        verify: &crate::verify::VerifyOptions,
        progress: &impl Progress<OnlineEvent>,
        cancel: &CancellationToken,
    ) -> Result<CutReport, OnlineError> {
        self.need_copied("the cut")?;
        let started = Instant::now();
        let src = self.source_session(Role::SourceReader).await?;
        let tgt = self.target_session(Role::TargetLoader).await?;
        let infos = apply::table_infos(&src, &self.state.tables).await?;
        let round = self
            .round(&src, &tgt, &infos, true, progress, cancel)
            .await?;
        let exported = round.exported.clone().expect("asked to export");
        let options = verify.clone().source_snapshot(Some(exported));
        let forward = |e: &VerifyEvent| progress.event(&OnlineEvent::Verify { verify: e.clone() });
        let result = crate::verify::run(self.source, self.target, &options, &forward, cancel).await;
        let _ = src.batch_execute("COMMIT").await;
        let report = result?;
        let lo_written = window::large_object_changes(&src).await?
            != self.state.large_object_changes.unwrap_or_default();
        let held = self.state.held_back.clone().unwrap_or_default();
        let (expected, unexpected) =
            window::sort_differences(&report.differences, &held, lo_written);
        if !unexpected.is_empty() {
            return Err(OnlineError::CutDiffers {
                differences: unexpected,
            });
        }
        self.state.cut = Some(round.snapshot);
        self.save()?;
        self.trim_log(&src).await?;
        let seconds = started.elapsed().as_secs_f64();
        progress.event(&OnlineEvent::CutVerified {
            tables: report.tables.len(),
            expected: expected.len(),
            seconds,
        });
        Ok(CutReport {
            verify: report,
            expected,
            seconds,
        })
    }

    /// Step 5, inside the maintenance window with the source settled (see
    /// the module documentation). Refuses, naming what, when the schema
    /// changed or a changed row differs.
    pub async fn finish_window(
        &mut self,
        progress: &impl Progress<OnlineEvent>,
        cancel: &CancellationToken,
    ) -> Result<WindowReport, OnlineError> {
        if self.state.cut.is_none() {
            return Err(OnlineError::OutOfOrder {
                step: "the window",
                needs: "a verified cut",
            });
        }
        window::finish(self, progress, cancel).await
    }

    /// Just before the cutover: nothing was logged since the window's last
    /// round ([`OnlineError::StillWriting`] names the tables otherwise).
    pub async fn check_quiet(&self) -> Result<(), OnlineError> {
        let since = self
            .state
            .applied
            .as_deref()
            .ok_or(OnlineError::OutOfOrder {
                step: "the write check",
                needs: "the copy",
            })?;
        let src = self.source_session(Role::SourceReader).await?;
        apply::check_quiet(&src, &self.state.tables, since).await
    }

    /// Step 6, after the cutover: validates the foreign keys added back
    /// `NOT VALID` (this takes no lock that blocks writes) and removes
    /// capture from the source.
    pub async fn finish(
        &mut self,
        progress: &impl Progress<OnlineEvent>,
    ) -> Result<(), OnlineError> {
        if self.state.restored && !self.state.validated {
            let tgt = self.target_session(Role::TargetBuilder).await?;
            let held = self.state.held_back.clone().unwrap_or_default();
            for fk in &held.foreign_keys {
                state::validate(&tgt, fk).await?;
                progress.event(&OnlineEvent::ForeignKeyValidated {
                    name: fk.to_string(),
                });
            }
            self.state.validated = true;
            self.save()?;
        }
        self.abort(progress).await
    }

    /// Puts back the foreign keys (`NOT VALID`) and triggers held back on
    /// the target without applying anything more (changes that will not be
    /// applied after all); [`finish`](Self::finish) then validates them.
    /// Does nothing when none are held back.
    pub async fn release(&mut self) -> Result<(), OnlineError> {
        let Some(held) = self.state.held_back.clone() else {
            return Ok(());
        };
        if self.state.restored {
            return Ok(());
        }
        let builder = self.target_session(Role::TargetBuilder).await?;
        state::restore(&builder, &held).await?;
        self.state.restored = true;
        self.save()
    }

    /// Removes capture from the source (after an abort, a rollback, or
    /// [`finish`](Self::finish)); the target is left as it is.
    pub async fn abort(
        &mut self,
        progress: &impl Progress<OnlineEvent>,
    ) -> Result<(), OnlineError> {
        let src = self.source_session(Role::SourceReader).await?;
        capture::remove(&src).await?;
        self.state.capture_installed = false;
        self.state.capture_removed = true;
        self.save()?;
        progress.event(&OnlineEvent::CaptureRemoved);
        Ok(())
    }

    fn need_copied(&self, step: &'static str) -> Result<(), OnlineError> {
        if self.state.copied {
            Ok(())
        } else {
            Err(OnlineError::OutOfOrder {
                step,
                needs: "the copy",
            })
        }
    }
}

/// The exported snapshot as `pg_current_snapshot()` text: where catch-up
/// rounds start from.
async fn current_snapshot(snap: &Snapshot) -> Result<String, OnlineError> {
    Ok(snap
        .client()
        .query_one("SELECT pg_catalog.pg_current_snapshot()::text", &[])
        .await
        .map_err(OnlineError::query(Side::Source, "reading the snapshot"))?
        .get(0))
}

/// `primary key (a, b)` or `whole row`, for messages and `plan`.
pub fn describe_key(t: &CapturedTable) -> String {
    match &t.key {
        RowKey::Columns { columns } => format!(
            "key ({})",
            columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        RowKey::WholeRow => "whole row (no primary key)".into(),
    }
}

/// Removes capture from the database at `url` (an orphan found by a
/// resume or a status check): see [`capture::remove`].
pub async fn remove_capture(url: &DatabaseUrl) -> Result<(), OnlineError> {
    let c = Endpoint::source(url)
        .connect(Role::SourceReader, "")
        .await?;
    capture::remove(&c).await
}

/// Lists capture objects on the database at `url` ([`capture::leftovers`]).
pub async fn capture_leftovers(url: &DatabaseUrl) -> Result<Vec<String>, OnlineError> {
    let c = Endpoint::source(url)
        .connect(Role::SourceReader, "")
        .await?;
    capture::leftovers(&c).await
}

/// The tables the copy copies (those that hold rows, not excluded): the
/// ones to capture.
async fn tables_to_capture(
    c: &Client,
    opts: &TransferOptions,
) -> Result<Vec<TableInfo>, OnlineError> {
    let filter = super::table_filter(opts)?;
    let tables = catalog::tables(c, &filter)
        .await
        .map_err(|e| TransferError::Query {
            side: Side::Source,
            what: "reading the tables to capture".into(),
            message: e.to_string(),
        })?;
    Ok(tables
        .into_iter()
        .filter(|t| t.holds_rows() && !t.excluded)
        .collect())
}

/// Installs capture on every table the copy would copy, on a session of
/// the source.
async fn install_on(
    src: &Client,
    opts: &TransferOptions,
    progress: &impl Progress<OnlineEvent>,
) -> Result<Vec<CapturedTable>, OnlineError> {
    let tables = tables_to_capture(src, opts).await?;
    let copied: Vec<&TableInfo> = tables.iter().collect();
    let captured = capture::keys(src, &copied).await?;
    capture::install(src, &captured, |t| {
        progress.event(&OnlineEvent::CaptureInstalled {
            table: t.to_string(),
            key: describe_key(t),
        })
    })
    .await?;
    Ok(captured)
}

/// Installs capture alone, as [`OnlineMigration::copy`] does first (to
/// measure what it costs the app's writes, for instance); remove it with
/// [`remove_capture`].
pub async fn install_capture(
    source: &DatabaseUrl,
    opts: &TransferOptions,
    progress: &impl Progress<OnlineEvent>,
) -> Result<Vec<CapturedTable>, OnlineError> {
    let c = Endpoint::source(source)
        .connect(Role::SourceReader, "")
        .await?;
    install_on(&c, opts, progress).await
}

/// What capture will cost, for `plan`.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct CapturePlan {
    /// Tables that would be captured.
    pub tables: usize,
    /// Tables without a primary key or a unique key over `NOT NULL`
    /// columns, with their sizes in bytes: their whole rows are logged,
    /// and each catch-up round that touches one scans it on both sides.
    pub without_key: Vec<(String, i64)>,
}

/// Reads which tables would be captured and which have no key, changing
/// nothing.
pub async fn plan_capture(
    source: &DatabaseUrl,
    opts: &TransferOptions,
) -> Result<CapturePlan, OnlineError> {
    let c = Endpoint::source(source)
        .connect(Role::SourceReader, "")
        .await?;
    let tables = tables_to_capture(&c, opts).await?;
    let copied: Vec<&TableInfo> = tables.iter().collect();
    let keys = capture::keys(&c, &copied).await?;
    Ok(CapturePlan {
        tables: keys.len(),
        without_key: keys
            .iter()
            .zip(&copied)
            .filter(|(k, _)| !k.has_key())
            .map(|(k, t)| (k.to_string(), t.table_bytes))
            .collect(),
    })
}

/// Connections herokurds may open on the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ConnectionBudget {
    /// `max_connections`.
    pub max_connections: i64,
    /// Slots only superusers (and `pg_use_reserved_connections`) may use.
    pub reserved: i64,
    /// Sessions open now (the app's included).
    pub in_use: i64,
    /// Left for the app to grow into (a tenth of `max_connections`, at
    /// least 2).
    pub app_reserve: i64,
    /// Copy workers that fit: what is free, less the app's reserve and
    /// herokurds' own other sessions ([`OWN_SESSIONS`]); at least 1.
    pub jobs_cap: usize,
}

/// Source sessions herokurds holds besides its copy workers: the
/// snapshot, the preflight and sequence reader, the large-object reader.
pub const OWN_SESSIONS: i64 = 3;

/// Reads the source's connection limit and use (Heroku plans cap
/// connections: Essential 20, Standard-0 120).
pub async fn connection_budget(source: &DatabaseUrl) -> Result<ConnectionBudget, OnlineError> {
    let c = Endpoint::source(source)
        .connect(Role::SourceReader, "")
        .await?;
    let row = c
        .query_one(
            "SELECT current_setting('max_connections')::int8,
                    current_setting('superuser_reserved_connections')::int8
                      + coalesce(current_setting('reserved_connections', true)::int8, 0),
                    (SELECT count(*) FROM pg_catalog.pg_stat_activity
                     WHERE backend_type = 'client backend')::int8",
            &[],
        )
        .await
        .map_err(OnlineError::query(Side::Source, "reading max_connections"))?;
    let (max_connections, reserved, in_use): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    Ok(budget(max_connections, reserved, in_use))
}

fn budget(max_connections: i64, reserved: i64, in_use: i64) -> ConnectionBudget {
    let app_reserve = (max_connections / 10).max(2);
    // This session is counted in `in_use` and closes before the copy.
    let free = max_connections - reserved - (in_use - 1);
    ConnectionBudget {
        max_connections,
        reserved,
        in_use,
        app_reserve,
        jobs_cap: (free - app_reserve - OWN_SESSIONS).max(1) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::budget;

    #[test]
    fn jobs_fit_in_what_the_app_leaves_free() {
        // Heroku Essential: 20 connections, the app holds 12.
        let b = budget(20, 3, 13);
        assert_eq!((b.app_reserve, b.jobs_cap), (2, 1));
        // Standard-0: 120, the app holds 20.
        assert_eq!(budget(120, 3, 21).jobs_cap, 120 - 3 - 20 - 12 - 3);
        // A full server still allows one worker (the copy then waits for
        // a slot, as the app would).
        assert_eq!(budget(20, 3, 30).jobs_cap, 1);
    }
}
