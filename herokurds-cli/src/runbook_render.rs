//! Rendering of a migration for `herokurds`: one line per step, the live
//! downtime clock while maintenance is on, the transfer's, verification's
//! and sync's own bars while those steps run; NDJSON with `--json`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use herokurds_core::progress::Progress;
use herokurds_core::runbook::report::human_seconds;
use herokurds_core::runbook::{PlanReport, RunbookEvent, StepId, StepStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::s3_render::SyncRenderer;
use crate::transfer_render::TransferRender;
use crate::verify_render::VerifyBars;

/// Receives [`RunbookEvent`]s.
pub struct RunbookRender {
    json: bool,
    tty: bool,
    verbose: bool,
    multi: MultiProgress,
    clock: Mutex<Option<ProgressBar>>,
    transfer: Mutex<Option<TransferRender>>,
    verify: Mutex<Option<VerifyBars>>,
    s3: Mutex<Option<SyncRenderer>>,
}

impl RunbookRender {
    /// NDJSON on stdout when `json`; else lines (and bars on a terminal) on stderr.
    pub fn new(json: bool) -> Self {
        let tty = !json && std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        RunbookRender {
            json,
            tty,
            verbose: false,
            multi,
            clock: Mutex::new(None),
            transfer: Mutex::new(None),
            verify: Mutex::new(None),
            s3: Mutex::new(None),
        }
    }

    /// Also a line per index, constraint and ANALYZE of the copy (`-v`).
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    fn line(&self, text: String) {
        if self.tty {
            let _ = self.multi.println(text);
        } else {
            eprintln!("{text}");
        }
    }

    fn start_clock(&self, at: chrono::DateTime<chrono::Utc>) {
        let mut clock = self.clock.lock().unwrap();
        if clock.is_some() || !self.tty {
            return;
        }
        let elapsed = (chrono::Utc::now() - at).to_std().unwrap_or_default();
        let bar = self
            .multi
            .add(ProgressBar::new_spinner().with_elapsed(elapsed));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner:.red} maintenance ON, downtime {elapsed_precise} {msg}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        *clock = Some(bar);
    }

    /// Words after the downtime clock (the settle wait), on a terminal.
    fn clock_message(&self, text: String) {
        if let Some(bar) = self.clock.lock().unwrap().as_ref() {
            bar.set_message(text);
        }
    }

    fn stop_clock(&self) {
        if let Some(bar) = self.clock.lock().unwrap().take() {
            bar.finish_and_clear();
        }
    }

    fn step_started(&self, step: StepId) {
        match step {
            StepId::Transfer | StepId::OnlineCopy => {
                *self.transfer.lock().unwrap() = Some(
                    if self.tty {
                        TransferRender::in_multi(self.multi.clone())
                    } else {
                        TransferRender::new(false)
                    }
                    .verbose(self.verbose),
                )
            }
            StepId::Verify | StepId::WriteCheck | StepId::OnlineVerify => {
                *self.verify.lock().unwrap() = Some(VerifyBars::stderr())
            }
            StepId::S3Presync | StepId::S3FinalSync => {
                let any = "s3://herokurds/".parse().expect("a valid location");
                *self.s3.lock().unwrap() = Some(SyncRenderer::new(any, true, false));
            }
            _ => {}
        }
    }

    fn step_finished(&self) {
        self.clock_message(String::new());
        self.transfer.lock().unwrap().take();
        if let Some(v) = self.verify.lock().unwrap().take() {
            v.finish();
        }
        if let Some(s) = self.s3.lock().unwrap().take() {
            s.finish();
        }
    }
}

impl Progress<RunbookEvent> for RunbookRender {
    fn event(&self, e: &RunbookEvent) {
        if self.json {
            if let Ok(line) = serde_json::to_string(e) {
                let _ = crate::println_safe(line);
            }
            return;
        }
        match e {
            RunbookEvent::StepStarted { number, step } => {
                self.line(format!("[{number:>2}/{}] {step} ...", StepId::ALL.len()));
                self.step_started(*step);
            }
            RunbookEvent::StepFinished {
                number,
                step,
                status,
                detail,
                seconds,
            } => {
                self.step_finished();
                let word = status_word(*status);
                self.line(format!(
                    "[{number:>2}/{}] {step}: {word}{}{}",
                    StepId::ALL.len(),
                    seconds
                        .map(|s| format!(" in {}", human_seconds(s)))
                        .unwrap_or_default(),
                    detail
                        .as_ref()
                        .map(|d| format!(" — {d}"))
                        .unwrap_or_default()
                ));
            }
            RunbookEvent::StepAlreadyDone { number, step } => {
                self.line(format!(
                    "[{number:>2}/{}] {step}: already done",
                    StepId::ALL.len()
                ));
            }
            RunbookEvent::MaintenanceOn { at } => {
                self.line(format!(
                    "maintenance ON at {} — downtime starts",
                    at.format("%H:%M:%S UTC")
                ));
                self.start_clock(*at);
            }
            RunbookEvent::MaintenanceOff {
                downtime_seconds, ..
            } => {
                self.stop_clock();
                self.line(format!(
                    "maintenance OFF — downtime {}",
                    human_seconds(*downtime_seconds)
                ));
            }
            RunbookEvent::Settling {
                quiet_seconds,
                needed_seconds,
                ..
            } => self.clock_message(format!(
                "— waiting for in-flight writes: quiet {quiet_seconds:.1} of {needed_seconds:.1} s"
            )),
            RunbookEvent::Transfer(t) => {
                if let Some(r) = self.transfer.lock().unwrap().as_ref() {
                    r.event(t);
                }
            }
            RunbookEvent::Verify(v) => {
                if let Some(r) = self.verify.lock().unwrap().as_ref() {
                    r.event(v);
                }
            }
            RunbookEvent::S3(s) => {
                if let Some(r) = self.s3.lock().unwrap().as_ref() {
                    r.event(s);
                }
            }
            RunbookEvent::Smoke(herokurds_core::smoke::SmokeEvent::Checked { page }) => {
                self.line(format!(
                    "        {} {} {:?}{}",
                    page.status.map_or("---".into(), |s| s.to_string()),
                    page.url,
                    page.title.as_deref().unwrap_or(""),
                    if page.broken_images.is_empty() {
                        String::new()
                    } else {
                        format!(" ({} broken images)", page.broken_images.len())
                    }
                ));
            }
            RunbookEvent::Online(o) => {
                if let Some(line) = online_line(o, self.verbose) {
                    self.line(format!("        {line}"));
                }
            }
            RunbookEvent::Warning { message } => self.line(format!("warning: {message}")),
            _ => {}
        }
    }
}

/// An online-mode event in words (`None`: nothing worth a line; capture
/// per table only with `-v`).
fn online_line(e: &herokurds_core::transfer::online::OnlineEvent, verbose: bool) -> Option<String> {
    use herokurds_core::transfer::online::OnlineEvent as E;
    match e {
        E::CaptureInstalled { table, key } if verbose => Some(format!("capture on {table}: {key}")),
        E::HeldBack {
            foreign_keys,
            triggers,
        } => Some(format!(
            "held back on the target until the window: {foreign_keys} foreign key(s), {triggers} trigger(s)"
        )),
        E::RoundApplied {
            round,
            changes,
            keys,
            tables,
            seconds,
        } => Some(format!(
            "catch-up round {round}: {changes} change(s), {keys} key(s) on {tables} table(s) in {seconds:.2} s"
        )),
        E::WindowStep { step, seconds } => Some(format!("{step} ({seconds:.2} s)")),
        E::ForeignKeyValidated { name } if verbose => Some(format!("validated {name}")),
        E::CaptureRemoved => Some("change capture removed from the source".into()),
        _ => None,
    }
}

/// A step's state in words (the enum names are for `--json`).
pub fn status_word(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Done => "done",
        StepStatus::Skipped => "skipped",
        StepStatus::Failed => "FAILED",
        StepStatus::Running => "running",
        StepStatus::Pending => "pending",
    }
}

/// The plan as text: findings, the numbered steps, the estimate, problems.
pub fn plan_text(r: &PlanReport) -> String {
    let mut t = format!(
        "app {}: add-on {} attached as {}; maintenance {}\n",
        r.app,
        if r.addon.is_empty() { "?" } else { &r.addon },
        r.attachments.join(", "),
        if r.maintenance_on { "ON" } else { "off" }
    );
    if let Some(tp) = &r.transfer {
        t.push_str(&format!(
            "source {} (PostgreSQL {}) -> target {} (PostgreSQL {}), {}\n",
            r.source_host,
            tp.source_version,
            r.target_host,
            tp.target_version,
            tp.pg_dump.as_deref().unwrap_or("pg_dump not found")
        ));
        t.push_str(&format!(
            "{} tables, about {:.1} MB, {} sequences, {} large objects; {} extension(s)\n",
            tp.tables,
            tp.estimated_bytes as f64 / 1_048_576.0,
            tp.sequences,
            tp.large_objects,
            tp.extensions.len()
        ));
    }
    if !r.target_sources.is_empty() {
        t.push_str(&format!("target URL: {}\n", r.target_sources.join("; ")));
    }
    if let Some(url) = &r.app_database_url {
        t.push_str(&format!("the app's DATABASE_URL will be: {url}\n"));
    }
    for b in &r.buckets {
        t.push_str(&format!("bucket {b}\n"));
    }
    for c in &r.app_access {
        t.push_str(&format!("app's credentials: {c}\n"));
    }
    for d in &r.cloudfront {
        for o in &d.origins {
            t.push_str(&format!(
                "CloudFront {} will switch {o}\n",
                d.distribution_id
            ));
        }
    }
    t.push_str("\nsteps:\n");
    for s in &r.steps {
        t.push_str(&format!(
            "  {:>2}. {:<44} {}\n",
            s.number,
            s.step.title(),
            s.change
        ));
    }
    if let Some(e) = &r.estimate {
        let rate = |r: Option<f64>| r.map_or("?".into(), |r| format!("{r:.0} MB/s"));
        let online = if e.online {
            format!(
                "; online: {:.0} rows changed since the cut applied and compared {}",
                e.window_rows,
                human_seconds(e.changes_seconds)
            )
        } else {
            String::new()
        };
        t.push_str(&format!(
            "\nestimated maintenance window: about {} (copy {}, indexes {}, verify {}, checks {}, \
             Heroku API {}, S3 {}, settle {} after {} of requests in flight{online}; measured: \
             source read {:.0} MB/s, target write {}, index builds {}, source writes {:.0} rows/s)\n",
            human_seconds(e.total_seconds),
            human_seconds(e.copy_seconds),
            human_seconds(e.index_seconds),
            human_seconds(e.verify_seconds),
            human_seconds(e.checks_seconds),
            human_seconds(e.api_seconds),
            human_seconds(e.s3_seconds),
            human_seconds(e.settle_seconds),
            human_seconds(e.in_flight_seconds),
            e.read_mb_s,
            rate(e.write_mb_s),
            rate(e.index_mb_s),
            e.source_rows_s,
        ));
    }
    for w in &r.warnings {
        t.push_str(&format!("warning: {w}\n"));
    }
    if r.problems.is_empty() {
        t.push_str("\nready: `herokurds run` will take these steps\n");
    } else {
        t.push_str(&format!(
            "\n{} problem(s) to fix before `herokurds run`:\n",
            r.problems.len()
        ));
        for p in &r.problems {
            t.push_str(&format!("  - {p}\n"));
        }
    }
    t
}

/// `status` as text.
pub fn status_text(s: &herokurds_core::runbook::Status) -> String {
    use herokurds_core::runbook::RunState;
    let mut t = format!("app {}\n", s.app);
    t.push_str(&format!(
        "DATABASE_URL host: {}\nDATABASE add-on: {}\nmaintenance: {}\n",
        s.database_url_host.as_deref().unwrap_or("(not set)"),
        s.database_addon
            .as_deref()
            .unwrap_or("(none: DATABASE_URL is a plain config var)"),
        if s.maintenance { "ON" } else { "off" }
    ));
    match &s.state {
        None => t.push_str("journal: none (no migration started with this plan's work_dir)\n"),
        Some(state) => {
            let words = match state {
                RunState::InProgress => "in progress".to_string(),
                RunState::Aborted { reason } => format!("aborted before the cutover: {reason}"),
                RunState::Completed => "completed".to_string(),
                RunState::RolledBack => "rolled back".to_string(),
            };
            t.push_str(&format!(
                "journal: {words}; {} of {} steps done",
                s.steps_done,
                StepId::ALL.len()
            ));
            if let Some(next) = s.next_step {
                t.push_str(&format!("; next: {next}"));
            }
            if let Some(d) = s.downtime_seconds {
                t.push_str(&format!("; downtime {}", human_seconds(d)));
            }
            t.push('\n');
            for (i, (step, status, detail)) in s.steps.iter().enumerate() {
                t.push_str(&format!(
                    "  {:>2}. {:<44} {}{}\n",
                    i + 1,
                    step.title(),
                    status_word(*status),
                    detail
                        .as_ref()
                        .map(|d| format!(" — {d}"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    t
}

/// `rollback` as text.
pub fn rollback_text(r: &herokurds_core::runbook::RollbackReport) -> String {
    let mut t = format!("app {} is back on its old database:\n", r.app);
    for a in &r.actions {
        t.push_str(&format!("  - {a}\n"));
    }
    match r.target_writes {
        Some(0) => t.push_str("no rows were written on the new database since the cutover\n"),
        Some(n) => t.push_str(&format!(
            "WARNING: {n} row(s) were written on the new database since the cutover ({}); they were NOT copied back\n",
            r.target_tables_written.join(", ")
        )),
        None => t.push_str("rows written on the new database since the cutover: unknown\n"),
    }
    if !r.vars_to_restore_by_hand.is_empty() {
        t.push_str(&format!(
            "restore by hand (their old values looked secret and were not journaled): {}\n",
            r.vars_to_restore_by_hand.join(", ")
        ));
    }
    t
}

/// Writes `report.md` and `report.json` (0600) into the plan's work dir.
pub fn save_report(
    plan: &herokurds_core::runbook::Plan,
    report: &herokurds_core::runbook::Report,
) -> anyhow::Result<()> {
    report.save(&herokurds_core::runbook::WorkDir::new(&plan.work_dir))?;
    Ok(())
}
