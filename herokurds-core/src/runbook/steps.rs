//! One method per runbook step. Each looks at the live state first and does
//! only what is missing, so a step cut short by a crash can simply run
//! again on `resume`.

use std::collections::BTreeMap;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::error::StepError;
use super::journal::{Journal, StepId, StepStatus, WorkDir};
use super::summary::{S3Summary, TransferSummary, VerifySummary};
use super::{cutover, forward, writes, Context, Plan, RunbookEvent};
use crate::pg::DbIdentity;
use crate::progress::Progress;
use crate::s3::{ClientSource, Filters, S3Location, SyncOptions};
use crate::transfer::{ResumeMode, Side, Snapshot};
use crate::url::DatabaseUrl;
use crate::verify::VerifyOptions;

/// How a step ended well.
pub(crate) enum Outcome {
    /// It did something; what, in words.
    Done(String),
    /// Nothing to do for this plan; why.
    Skipped(String),
}

type StepResult = Result<Outcome, StepError>;

/// The step refuses, saying why.
fn fail(message: impl Into<String>) -> StepError {
    StepError::Refused {
        message: message.into(),
    }
}

/// A check found a difference (exit code 1).
fn different(message: impl Into<String>) -> StepError {
    StepError::Different {
        message: message.into(),
    }
}

/// Everything a step needs.
pub(super) struct Runner<'a, P> {
    pub plan: &'a Plan,
    pub ctx: &'a Context,
    pub dir: WorkDir,
    pub journal: Journal,
    pub source: DatabaseUrl,
    pub target: DatabaseUrl,
    pub progress: &'a P,
    pub cancel: CancellationToken,
    /// The source snapshot the transfer read, held open until the
    /// verification has read the source in it too (this process only: a
    /// resumed run verifies against the source as it is then).
    pub snapshot: Option<Snapshot>,
}

impl<P: Progress<RunbookEvent>> Runner<'_, P> {
    fn app(&self) -> &str {
        &self.plan.heroku.app
    }

    /// Runs one step. `before` is the step's status before this attempt
    /// (a `Running` or `Failed` transfer is resumed, not restarted).
    pub async fn execute(&mut self, step: StepId, before: StepStatus) -> StepResult {
        match step {
            StepId::Preflight => self.preflight().await,
            StepId::SmokeBaseline => self.smoke_baseline().await,
            StepId::S3Presync => self.s3(true).await,
            StepId::OnlineCopy => self.online_copy(before).await,
            StepId::CatchUp => self.catch_up().await,
            StepId::OnlineVerify => self.online_verify().await,
            StepId::MaintenanceOn => self.maintenance_on().await,
            StepId::ScaleDown => self.scale_down().await,
            StepId::Settle => self.settle().await,
            StepId::Transfer => self.transfer(before).await,
            StepId::Verify => self.verify().await,
            StepId::WriteCheck => self.write_check().await,
            StepId::S3FinalSync => self.s3(false).await,
            StepId::TargetCapture => self.target_capture(before).await,
            StepId::AttachBackup => self.attach_backup().await,
            StepId::DetachDatabase => self.detach_database().await,
            StepId::SetConfig => self.set_config().await,
            StepId::CloudfrontOrigins => self.cloudfront().await,
            StepId::ReadBack => self.read_back().await,
            StepId::ScaleUp => self.scale_up().await,
            StepId::MaintenanceOff => self.maintenance_off().await,
            StepId::SmokeCompare => self.smoke_compare().await,
            StepId::OnlineFinish => self.online_finish().await,
        }
    }

    async fn preflight(&mut self) -> StepResult {
        let (report, _) = super::preflight::check(self.plan, self.ctx, false, true)
            .await
            .map_err(|e| StepError::Preflight(Box::new(e)))?;
        if !report.problems.is_empty() {
            return Err(fail(format!(
                "{} problem(s): {}",
                report.problems.len(),
                report.problems.join("; ")
            )));
        }
        for w in &report.warnings {
            self.progress
                .event(&RunbookEvent::Warning { message: w.clone() });
        }
        // Who both sides are, for resume and rollback to check against.
        let (source, target) = tokio::join!(
            DbIdentity::connect(&self.source),
            DbIdentity::connect(&self.target)
        );
        let (source, target) = (source?, target?);
        if source.same_database(&target) {
            return Err(fail(super::target::same_database_message(
                &source,
                &target,
                self.app(),
            )));
        }
        let j = &mut self.journal;
        j.source_identity = Some(source);
        j.target_identity = Some(target);
        j.old_addon = Some(report.addon.clone());
        j.old_attachments = report.attachments.clone();
        j.source_host = Some(report.source_host.clone());
        j.target_host = Some(report.target_host.clone());
        j.maintenance_was_on = report.maintenance_on;
        j.estimated_window_seconds = report.estimated_window_seconds;
        j.jobs_cap = report.connections.map(|b| b.jobs_cap);
        j.app_access = report.app_access.clone();
        Ok(Outcome::Done(format!(
            "app {}, add-on {} ({}), {} tables, {:.1} MB{}",
            report.app,
            report.addon,
            report.attachments.join(", "),
            report.transfer.as_ref().map_or(0, |t| t.tables),
            report.transfer.as_ref().map_or(0, |t| t.estimated_bytes) as f64 / 1_048_576.0,
            report
                .estimated_window_seconds
                .map(|w| format!("; window estimated at {}", super::report::human_seconds(w)))
                .unwrap_or_default()
        )))
    }

    async fn smoke_baseline(&mut self) -> StepResult {
        if self.plan.smoke.urls.is_empty() {
            return Ok(Outcome::Skipped("no [smoke] urls in the plan".into()));
        }
        let p = forward(self.progress, |e: &crate::smoke::SmokeEvent| {
            RunbookEvent::Smoke(e.clone())
        });
        let pages = crate::smoke::check_all(&self.plan.smoke.urls, &self.ctx.smoke, &p).await?;
        let healthy = pages.iter().filter(|p| p.is_healthy()).count();
        self.journal.smoke_before = pages;
        Ok(Outcome::Done(format!(
            "{} pages recorded, {healthy} healthy",
            self.journal.smoke_before.len()
        )))
    }

    async fn s3(&mut self, presync: bool) -> StepResult {
        let pass = if presync { "presync" } else { "final" };
        let pairs: Vec<_> = self
            .plan
            .s3
            .iter()
            .filter(|s| !presync || s.presync)
            .cloned()
            .collect();
        if pairs.is_empty() {
            return Ok(Outcome::Skipped(if self.plan.s3.is_empty() {
                "no [[s3]] in the plan".into()
            } else {
                "presync = false for every bucket".into()
            }));
        }
        let aws = self.ctx.aws_for(self.plan);
        let mut failed = Vec::new();
        let mut words = Vec::new();
        self.journal.s3.retain(|s| s.pass != pass);
        for pair in pairs {
            let src = parse_location(&pair.source)?;
            let dst = parse_location(&pair.target)?;
            let mut src_opts = aws.clone();
            if let Some(p) = &pair.source_profile {
                src_opts = src_opts.profile(p.clone());
            }
            if let Some(r) = &pair.source_region {
                src_opts = src_opts.region(r.clone());
            }
            let mut filters = Filters::new();
            for pattern in &pair.exclude {
                filters = filters.exclude(pattern)?;
            }
            let opts = SyncOptions::new()
                .delete(!presync && pair.delete)
                .force_delete(pair.force_delete)
                .filters(filters)
                .source(ClientSource::Options(src_opts))
                .destination(ClientSource::Options(aws.clone()));
            let p = forward(self.progress, |e: &crate::s3::SyncEvent| {
                RunbookEvent::S3(e.clone())
            });
            let r = crate::s3::sync(&src, &dst, &opts, &p, self.cancel.clone()).await?;
            words.push(format!(
                "{} -> {}: {} copied, {} up to date, {} deleted",
                pair.source, pair.target, r.copied, r.skipped, r.deleted
            ));
            for f in &r.failures {
                let key = crate::s3::escape_key(&f.key);
                failed.push(format!("s3://{}/{key}: {}", f.bucket, f.reason));
            }
            self.journal.s3.push(S3Summary {
                source: pair.source.clone(),
                target: pair.target.clone(),
                pass: pass.into(),
                copied: r.copied,
                skipped: r.skipped,
                deleted: r.deleted,
                failed: r.failed,
                bytes: r.bytes,
            });
        }
        if !failed.is_empty() {
            return Err(fail(format!(
                "{} object(s) failed to copy: {}",
                failed.len(),
                failed
                    .iter()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        Ok(Outcome::Done(words.join("; ")))
    }

    async fn maintenance_on(&mut self) -> StepResult {
        let at = *self.journal.maintenance_on_at.get_or_insert_with(Utc::now);
        self.journal.maintenance_off_at = None;
        if self.journal.maintenance_was_on {
            self.progress.event(&RunbookEvent::MaintenanceOn { at });
            return Ok(Outcome::Done(
                "maintenance was already on before the migration".into(),
            ));
        }
        let app = self.app().to_string();
        self.ctx.heroku.set_maintenance(&app, true).await?;
        self.progress.event(&RunbookEvent::MaintenanceOn { at });
        Ok(Outcome::Done(format!(
            "maintenance on for {app}; web traffic is held"
        )))
    }

    async fn scale_down(&mut self) -> StepResult {
        if self.plan.maintenance.scale_down.is_empty() {
            return Ok(Outcome::Skipped(
                "no [maintenance] scale_down: worker and clock dynos keep running (the write check guards the cutover)".into(),
            ));
        }
        let app = self.app().to_string();
        let formation = self.ctx.heroku.formation(&app).await?;
        let mut updates = Vec::new();
        for kind in &self.plan.maintenance.scale_down {
            let Some(f) = formation.iter().find(|f| &f.process_type == kind) else {
                let known: Vec<&str> = formation.iter().map(|f| f.process_type.as_str()).collect();
                return Err(fail(format!(
                    "process type {kind} is not in the formation of app {app} (it has: {}); fix [maintenance] scale_down",
                    known.join(", ")
                )));
            };
            // On resume the first recorded quantity wins: now it may be 0.
            let before = *self
                .journal
                .formation_before
                .entry(kind.clone())
                .or_insert(f.quantity);
            if f.quantity > 0 {
                updates.push((kind.clone(), before));
            }
        }
        let zero: Vec<(&str, u32)> = updates.iter().map(|(k, _)| (k.as_str(), 0)).collect();
        if !zero.is_empty() {
            self.ctx.heroku.scale(&app, &zero).await?;
        }
        Ok(Outcome::Done(format!(
            "scaled to 0: {}",
            self.journal
                .formation_before
                .iter()
                .map(|(k, v)| format!("{k} (was {v})"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// Waits until no transaction id is used on the source, and none is in
    /// progress, for the plan's settle interval: the writes of web requests
    /// still in flight when maintenance went on land before the snapshot.
    async fn settle(&mut self) -> StepResult {
        let m = &self.plan.maintenance;
        let client = crate::pg::connect(&self.source).await?.into_client();
        let needed = m.settle.as_secs_f64();
        let progress = self.progress;
        let tick = |p: writes::SettleProgress| {
            progress.event(&RunbookEvent::Settling {
                waited_seconds: p.waited.as_secs_f64(),
                quiet_seconds: p.quiet_for.as_secs_f64(),
                needed_seconds: needed,
            })
        };
        let settled = tokio::select! {
            s = writes::settle(&client, m.settle, m.settle_timeout, self.ctx.flush_wait, tick) => s.map_err(StepError::write_mark(Side::Source))?,
            _ = self.cancel.cancelled() => return Err(fail("interrupted")),
        };
        match settled {
            writes::Settled::Quiet {
                waited,
                transactions,
                elsewhere: false,
            } => Ok(Outcome::Done(format!(
                "source quiet for {} after {:.1} s ({transactions} transaction(s) landed while waiting)",
                crate::duration::format_duration(m.settle),
                waited.as_secs_f64()
            ))),
            writes::Settled::Quiet {
                waited,
                transactions,
                elsewhere: true,
            } => Ok(Outcome::Done(format!(
                "source quiet after {:.1} s: the server kept using transaction ids ({transactions}) but no \
                 table of this database changed and none of its sessions holds a write (other databases \
                 on a shared server, autovacuum); the write check still guards the cutover",
                waited.as_secs_f64()
            ))),
            writes::Settled::StillWriting {
                waited,
                activity,
                sessions,
            } => {
                let what = writes::still_writing_words(&activity, &sessions);
                Err(different(format!(
                    "the source did not settle: still written {:.0} s after maintenance on ({}). \
                     Something maintenance mode does not stop is writing (worker or clock dynos, a scheduler, \
                     an outside client): list its process types in [maintenance] scale_down or stop it, \
                     or raise [maintenance] settle_timeout (now {})",
                    waited.as_secs_f64(),
                    what.join("; "),
                    crate::duration::format_duration(m.settle_timeout)
                )))
            }
        }
    }

    /// Resume an interrupted copy, start over on an earlier attempt's
    /// (when `run` approved it), or start fresh.
    pub(super) fn resume_mode(&self, before: StepStatus) -> Result<ResumeMode, StepError> {
        let work = self.dir.transfer(self.app());
        Ok(
            if matches!(before, StepStatus::Running | StepStatus::Failed) {
                // The transfer journals before it writes to the target: an
                // attempt stopped before that has nothing to resume (and a
                // fresh copy still refuses a target that is not empty).
                if self.dir.transfer_journal(self.app()).exists() {
                    ResumeMode::Resume
                } else {
                    ResumeMode::Fresh
                }
            } else if work.exists() {
                // An earlier attempt left its copy on the target: `run` decided
                // whether it may go (and journaled why).
                if self.journal.restart_approved.is_none() {
                    return Err(fail(format!(
                        "{} holds an earlier transfer that this attempt was not allowed to drop; \
                     run `herokurds run --config {}` again to see what the target holds",
                        work.display(),
                        self.ctx.plan_path
                    )));
                }
                ResumeMode::Restart
            } else {
                ResumeMode::Fresh
            },
        )
    }

    /// The plan's `[transfer]` as the copy's options, with no more workers
    /// than the source has connections to spare.
    pub(super) fn transfer_options(
        &self,
        mode: ResumeMode,
    ) -> Result<crate::transfer::TransferOptions, StepError> {
        let t = &self.plan.transfer;
        let jobs = self.journal.jobs_cap.map_or(t.jobs, |cap| t.jobs.min(cap));
        Ok(t.options(self.ctx.pg_bin_dir.as_deref())
            .map_err(|e| fail(format!("[transfer] split_tables_larger_than: {e}")))?
            .jobs(jobs)
            .work_dir(self.dir.transfer_work_dir(self.app()))
            .resume_mode(mode)
            .restart_target(self.journal.restart_approved.is_some()))
    }

    async fn transfer(&mut self, before: StepStatus) -> StepResult {
        if super::online::is_online(self.plan) {
            return self.online_window().await;
        }
        if self.journal.source_mark.is_none() {
            let client = crate::pg::connect(&self.source).await?.into_client();
            self.journal.source_mark = Some(
                writes::mark(&client)
                    .await
                    .map_err(StepError::write_mark(Side::Source))?,
            );
            self.journal.save(&self.dir)?;
        }
        let opts = self.transfer_options(self.resume_mode(before)?)?;
        let p = forward(self.progress, |e: &crate::transfer::TransferEvent| {
            RunbookEvent::Transfer(e.clone())
        });
        // One snapshot for the copy and the proof: the verification reads
        // the source exactly as the copy did.
        let snapshot = tokio::select! {
            s = Snapshot::export(&self.source) => s?,
            _ = self.cancel.cancelled() => return Err(fail("interrupted")),
        };
        let r = crate::transfer::run_in_snapshot(
            &self.source,
            &self.target,
            &snapshot,
            &opts,
            &p,
            self.cancel.clone(),
        )
        .await?;
        self.snapshot = Some(snapshot);
        for w in &r.warnings {
            self.progress
                .event(&RunbookEvent::Warning { message: w.clone() });
        }
        let summary = TransferSummary::from(&r);
        let words = format!(
            "{} tables, {} rows, {:.1} MB in {:.1} s ({:.1} MB/s){}",
            summary.tables,
            summary.rows,
            summary.bytes as f64 / 1_048_576.0,
            summary.seconds,
            summary.mb_per_second(),
            if r.resumed { ", resumed" } else { "" }
        );
        self.journal.transfer = Some(summary);
        Ok(Outcome::Done(words))
    }

    /// The plan's `[verify]` as the verification's options.
    pub(super) fn verify_options(&self, snapshot: Option<&str>) -> VerifyOptions {
        let mut opts = VerifyOptions::new()
            .jobs(self.plan.transfer.jobs)
            .counts_only(self.plan.verify.counts_only)
            .source_snapshot(snapshot.map(str::to_owned));
        for p in &self.plan.transfer.exclude_tables {
            opts = opts.exclude_table(p.clone());
        }
        for e in &self.plan.transfer.exclude_extensions {
            opts = opts.exclude_extension(e.clone());
        }
        opts
    }

    /// Verifies the target against the source: in `snapshot` when given,
    /// else against the source as it is now.
    async fn run_verify(&mut self, snapshot: Option<&str>) -> Result<VerifySummary, StepError> {
        let opts = self.verify_options(snapshot);
        let p = forward(self.progress, |e: &crate::verify::VerifyEvent| {
            RunbookEvent::Verify(e.clone())
        });
        let started = std::time::Instant::now();
        let r = crate::verify::run(&self.source, &self.target, &opts, &p, &self.cancel).await?;
        Ok(VerifySummary {
            identical: r.is_identical(),
            tables: r.tables.len(),
            checksums: !self.plan.verify.counts_only,
            differences: r.differences.iter().map(|d| d.to_string()).collect(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    async fn verify(&mut self) -> StepResult {
        if super::online::is_online(self.plan) {
            return Ok(Outcome::Skipped(
                "online mode: the whole database was verified at the cut before the window, and every \
                 row changed since was compared in the transfer step"
                    .into(),
            ));
        }
        // The snapshot is released whatever the outcome: the write check
        // compares with the source as it is now.
        let snapshot = self.snapshot.take();
        let snapshot = match snapshot {
            Some(s) if s.is_alive().await => Some(s),
            Some(_) => {
                self.progress.event(&RunbookEvent::Warning {
                    message: "the transfer's snapshot session is gone; verifying against the source as it is now".into(),
                });
                None
            }
            None => None,
        };
        let v = self.run_verify(snapshot.as_ref().map(Snapshot::id)).await;
        drop(snapshot);
        let v = v?;
        let identical = v.identical;
        let (tables, n, first): (usize, usize, Vec<String>) = (
            v.tables,
            v.differences.len(),
            v.differences.iter().take(20).cloned().collect(),
        );
        self.journal.verify = Some(v);
        if identical {
            return Ok(Outcome::Done(format!(
                "{tables} tables: target equals source"
            )));
        }
        let mut why = format!(
            "{n} difference(s) between source and target: {}",
            first.join("; ")
        );
        if let Some(mark) = &self.journal.source_mark {
            let client = crate::pg::connect(&self.source).await?.into_client();
            let now = writes::mark(&client)
                .await
                .map_err(StepError::write_mark(Side::Source))?;
            let activity = writes::compare(mark, &now);
            if !activity.is_quiet() {
                why.push_str(&format!(
                    ". The source changed during the window: {}. Something maintenance mode does not stop is writing \
                     (worker or clock dynos, a scheduler, an outside client): list its process types in [maintenance] scale_down or stop it",
                    activity.describe()
                ));
            }
        }
        Err(different(why))
    }

    async fn write_check(&mut self) -> StepResult {
        if super::online::is_online(self.plan) {
            return self.online_write_check().await;
        }
        let Some(mark) = self.journal.source_mark.clone() else {
            return Err(fail(
                "no write mark was recorded before the transfer; run the migration again",
            ));
        };
        let client = crate::pg::connect(&self.source).await?.into_client();
        let activity = writes::check_since(&client, &mark, self.ctx.flush_wait)
            .await
            .map_err(StepError::write_mark(Side::Source))?;
        if activity.is_quiet() {
            return Ok(Outcome::Done(format!(
                "no table changed on the source since the snapshot ({} transaction ids used)",
                activity.transactions
            )));
        }
        // Counters moved: the change may predate the snapshot (a web request
        // finishing as maintenance went on). The contents decide.
        let v = self.run_verify(None).await?;
        if v.identical {
            return Ok(Outcome::Done(format!(
                "counters moved on {} but the target still equals the source: the changes predate the snapshot",
                activity.describe()
            )));
        }
        Err(different(format!(
            "the source changed after the snapshot: {}; the copy would lose those writes. \
             Something maintenance mode does not stop is writing (worker or clock dynos, a scheduler, an outside client): \
             list its process types in [maintenance] scale_down or stop it, then run again",
            activity.describe()
        )))
    }

    async fn attach_backup(&mut self) -> StepResult {
        let app = self.app().to_string();
        if !self.plan.cutover.config_vars.is_empty() && self.journal.config_before.is_empty() {
            let (before, withheld) = cutover::config_before(
                &self.ctx.heroku,
                &app,
                self.plan.cutover.config_vars.keys(),
            )
            .await?;
            self.journal.record_config_before(&self.dir, before)?;
            self.journal.unjournaled_vars = withheld;
            self.journal.save(&self.dir)?;
        }
        let addon = self.old_addon()?;
        Ok(Outcome::Done(
            cutover::attach_backup(
                &self.ctx.heroku,
                &app,
                &addon,
                &self.plan.cutover.backup_alias,
            )
            .await?,
        ))
    }

    async fn detach_database(&mut self) -> StepResult {
        let addon = self.old_addon()?;
        Ok(Outcome::Done(
            cutover::detach_database(&self.ctx.heroku, self.app(), &addon).await?,
        ))
    }

    async fn set_config(&mut self) -> StepResult {
        if self.journal.target_mark.is_none() {
            let client = crate::pg::connect(&self.target).await?.into_client();
            self.journal.target_mark = Some(
                writes::mark(&client)
                    .await
                    .map_err(StepError::write_mark(Side::Target))?,
            );
            self.journal.save(&self.dir)?;
        }
        Ok(Outcome::Done(
            cutover::set_config(
                &self.ctx.heroku,
                self.app(),
                &self.app_url(),
                &self.plan.cutover.config_vars,
            )
            .await?,
        ))
    }

    async fn cloudfront(&mut self) -> StepResult {
        if self.plan.cloudfront.is_empty() {
            return Ok(Outcome::Skipped("no [[cloudfront]] in the plan".into()));
        }
        Ok(Outcome::Done(
            super::cdn::switch(self.plan, self.ctx, &mut self.journal, &self.dir)
                .await
                .map_err(fail)?,
        ))
    }

    /// The `DATABASE_URL` the app gets: built for it, not the operator's URL.
    fn app_url(&self) -> DatabaseUrl {
        self.target.for_app(self.plan.cutover.app_ssl_mode())
    }

    async fn read_back(&mut self) -> StepResult {
        let wrong = cutover::read_back(
            &self.ctx.heroku,
            self.app(),
            &self.app_url(),
            &self.plan.cutover.config_vars,
        )
        .await?;
        if wrong.is_empty() {
            Ok(Outcome::Done(format!(
                "DATABASE_URL now points at {}:{}/{}{}",
                self.target.host(),
                self.target.port(),
                self.target.dbname(),
                if self.plan.cutover.config_vars.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} config var(s) as planned",
                        self.plan.cutover.config_vars.len()
                    )
                }
            )))
        } else {
            Err(fail(format!(
                "read back differs from what was set: {} (another change to the app's config during the window?)",
                wrong.join(", ")
            )))
        }
    }

    async fn scale_up(&mut self) -> StepResult {
        if self.journal.formation_before.is_empty() {
            return Ok(Outcome::Skipped("nothing was scaled down".into()));
        }
        let restore: Vec<(String, u32)> =
            self.journal.formation_before.clone().into_iter().collect();
        restore_formation(self.ctx, self.app(), &restore).await?;
        Ok(Outcome::Done(format!(
            "restored {}",
            restore
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    async fn maintenance_off(&mut self) -> StepResult {
        if self.journal.maintenance_was_on {
            return Ok(Outcome::Skipped(
                "maintenance was on before the migration; left on".into(),
            ));
        }
        self.ctx.heroku.set_maintenance(self.app(), false).await?;
        let at = Utc::now();
        self.journal.maintenance_off_at = Some(at);
        let downtime = self
            .journal
            .downtime()
            .map_or(0.0, |d| d.num_milliseconds() as f64 / 1000.0);
        self.progress.event(&RunbookEvent::MaintenanceOff {
            at,
            downtime_seconds: downtime,
        });
        Ok(Outcome::Done(format!(
            "maintenance off after {}",
            super::report::human_seconds(downtime)
        )))
    }

    async fn smoke_compare(&mut self) -> StepResult {
        if self.journal.smoke_before.is_empty() {
            return Ok(Outcome::Skipped("no smoke baseline".into()));
        }
        let p = forward(self.progress, |e: &crate::smoke::SmokeEvent| {
            RunbookEvent::Smoke(e.clone())
        });
        let after = crate::smoke::check_all(&self.plan.smoke.urls, &self.ctx.smoke, &p).await?;
        let diffs = crate::smoke::compare(&self.journal.smoke_before, &after);
        let words = if diffs.is_empty() {
            format!("{} pages look as before", after.len())
        } else {
            format!(
                "{} difference(s): {}",
                diffs.len(),
                diffs
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        self.journal.smoke_differences = diffs;
        Ok(Outcome::Done(words))
    }

    fn old_addon(&self) -> Result<String, StepError> {
        self.journal.old_addon.clone().ok_or_else(|| {
            fail("the journal does not name the old add-on (preflight did not finish)")
        })
    }
}

/// Scales process types back to their journaled quantities.
pub(super) async fn restore_formation(
    ctx: &Context,
    app: &str,
    quantities: &[(String, u32)],
) -> Result<(), crate::heroku::HerokuError> {
    let updates: Vec<(&str, u32)> = quantities.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    ctx.heroku.scale(app, &updates).await.map(|_| ())
}

fn parse_location(text: &str) -> Result<S3Location, StepError> {
    text.parse::<S3Location>()
        .map_err(|e| fail(format!("{text}: {e}")))
}

/// Quantities as a list, for messages.
pub(super) fn formation_words(f: &BTreeMap<String, u32>) -> String {
    f.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
