//! Rendering of a migration for `herokurds`: one line per step, the live
//! downtime clock while maintenance is on, the transfer's, verification's
//! and sync's own bars while those steps run; NDJSON with `--json`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
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
    back: bool,
    step: Mutex<Option<StepId>>,
    settling_said: AtomicBool,
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
            back: false,
            step: Mutex::new(None),
            settling_said: AtomicBool::new(false),
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

    /// Events of `rollback` or `finish`: the change capture and its
    /// rounds are the one on the new database (RDS), copied back to the
    /// old one, and are worded so.
    pub fn copying_back(mut self, back: bool) -> Self {
        self.back = back;
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
        *self.step.lock().unwrap() = Some(step);
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
        self.settling_said.store(false, Ordering::Relaxed);
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
            } => {
                let which = if self.back {
                    "writes on the new database"
                } else {
                    "in-flight writes"
                };
                // Without a terminal's clock: one line per wait.
                if !self.tty && !self.settling_said.swap(true, Ordering::Relaxed) {
                    self.line(format!(
                        "        waiting for {which} to stop: {needed_seconds:.1} s of quiet needed"
                    ));
                }
                self.clock_message(format!(
                    "— waiting for {which} to stop: quiet {quiet_seconds:.1} of {needed_seconds:.1} s"
                ))
            }
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
                self.settling_said.store(false, Ordering::Relaxed);
                let side = if self.back {
                    Direction::Back
                } else if *self.step.lock().unwrap() == Some(StepId::OnlineFinish) {
                    Direction::Forward
                } else {
                    // Outside online mode's last step, capture is removed
                    // only from the target (a run that stopped after
                    // installing it there).
                    Direction::TargetCapture
                };
                if let Some(line) = online_line(o, self.verbose, side) {
                    self.line(format!("        {line}"));
                }
            }
            RunbookEvent::Warning { message } => self.line(format!("warning: {message}")),
            _ => {}
        }
    }
}

/// Which change capture online events are about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Online mode's, on the source, applied to the target.
    Forward,
    /// The one installed on the target at the cutover, outside a rollback
    /// (a run that stopped after installing it removes it).
    TargetCapture,
    /// The one on the target, copied back to the old database by
    /// `rollback` (or removed by `finish`).
    Back,
}

/// An online-mode event in words (`None`: nothing worth a line; capture
/// per table only with `-v`).
fn online_line(
    e: &herokurds_core::transfer::online::OnlineEvent,
    verbose: bool,
    side: Direction,
) -> Option<String> {
    use herokurds_core::transfer::online::OnlineEvent as E;
    let back = side == Direction::Back;
    match e {
        E::CaptureInstalled { table, key } if verbose => Some(format!("capture on {table}: {key}")),
        E::HeldBack {
            foreign_keys,
            triggers,
        } if back => Some(format!(
            "held back on the old database while copying back: {foreign_keys} foreign key(s), {triggers} trigger(s)"
        )),
        E::HeldBack {
            foreign_keys,
            triggers,
        } => Some(format!(
            "held back on the target until the window: {foreign_keys} foreign key(s), {triggers} trigger(s)"
        )),
        E::RoundApplied {
            changes,
            keys,
            tables,
            seconds,
            ..
        } if back => Some(format!(
            "copied back from the new database: {changes} change(s), {keys} row(s) on {tables} table(s) in {seconds:.2} s"
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
        E::WindowStep { step, seconds } if back => {
            Some(format!("{} ({seconds:.2} s)", back_step_words(step)))
        }
        E::WindowStep { step, seconds } => Some(format!("{step} ({seconds:.2} s)")),
        E::ForeignKeyValidated { name } if verbose && back => {
            Some(format!("validated {name} on the old database"))
        }
        E::ForeignKeyValidated { name } if verbose => Some(format!("validated {name}")),
        E::CaptureRemoved => Some(
            match side {
                Direction::Forward => "change capture removed from the source",
                Direction::TargetCapture | Direction::Back => {
                    "change capture removed from the new database"
                }
            }
            .into(),
        ),
        _ => None,
    }
}

/// A window step of the replay in rollback's words: the library names
/// them as online mode does (copy, cut, source, target), which are the
/// other way round in a rollback. An unknown step keeps its own words.
fn back_step_words(step: &str) -> &str {
    match step {
        "schema compared with the copy's" => {
            "schema of the new database compared with the cutover's"
        }
        "last catch-up round" => "the new database's writes copied back",
        "rows changed since the cut compared" => {
            "rows changed since the cutover compared on both databases"
        }
        "large objects copied again" => "large objects copied back",
        "sequences set" => "sequences set on the old database",
        "foreign keys (NOT VALID) and triggers back" => {
            "foreign keys (NOT VALID) and triggers back on the old database"
        }
        other => other,
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
    if let Some(c) = &s.target_capture {
        let logged = match (c.logged_changes, &c.error) {
            (Some(n), _) => format!(
                "{n} change(s) logged since the cutover on {} table(s)",
                c.tables
            ),
            (None, e) => format!(
                "on {} table(s); the changes logged could not be counted: {}",
                c.tables,
                e.as_deref().unwrap_or("unknown error")
            ),
        };
        t.push_str(&format!(
            "change capture on RDS: {logged}; `herokurds rollback` copies them back, \
             `herokurds finish` removes it\n"
        ));
    }
    t
}

/// `rollback` as text.
pub fn rollback_text(r: &herokurds_core::runbook::RollbackReport) -> String {
    let mut t = format!("app {} is back on its old database:\n", r.app);
    for a in &r.actions {
        t.push_str(&format!("  - {a}\n"));
    }
    if let Some(c) = &r.replayed {
        t.push_str(&replayed_text(c));
    }
    match r.target_writes {
        // Copied back: said above.
        _ if r.replayed.is_some() => {}
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

/// What a rollback copied back from the new database, in one block.
pub fn replayed_text(c: &herokurds_core::runbook::ReplayReport) -> String {
    let mut t = format!(
        "copied back from RDS: {} change(s) on {} row(s) in {} table(s), {}; \
         {} key(s) compared, {} table(s) counted, {} sequence(s) set",
        c.changes,
        c.keys,
        c.tables,
        indicatif::HumanBytes(c.bytes),
        c.keys_compared,
        c.tables_counted,
        c.sequences
    );
    if let Some(n) = c.large_objects_recopied {
        t.push_str(&format!(", {n} large object(s) copied again"));
    }
    t.push_str(&format!("; in {}\n", human_seconds(c.seconds)));
    t
}

/// `finish` as text.
pub fn finish_text(r: &herokurds_core::runbook::FinishReport) -> String {
    let mut t = format!("migration of app {} finished:\n", r.app);
    for a in &r.actions {
        t.push_str(&format!("  - {a}\n"));
    }
    t.push_str(
        "`herokurds rollback` can no longer copy writes made on RDS back to the old database: \
         once the app writes there, it refuses unless --discard-target-writes\n",
    );
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

#[cfg(test)]
mod tests {
    use super::*;
    use herokurds_core::transfer::online::OnlineEvent;

    /// The online events a rollback reports, in rollback's words.
    #[test]
    fn a_rollbacks_events_are_worded_as_copying_back() {
        let held = OnlineEvent::HeldBack {
            foreign_keys: 4,
            triggers: 1,
        };
        let round = OnlineEvent::RoundApplied {
            round: 1,
            changes: 7,
            keys: 5,
            tables: 2,
            seconds: 0.5,
        };
        let step = |s: &str| OnlineEvent::WindowStep {
            step: s.into(),
            seconds: 0.1,
        };
        let back = |e: &OnlineEvent| online_line(e, false, Direction::Back).unwrap();
        assert_eq!(
            back(&held),
            "held back on the old database while copying back: 4 foreign key(s), 1 trigger(s)"
        );
        assert_eq!(
            back(&round),
            "copied back from the new database: 7 change(s), 5 row(s) on 2 table(s) in 0.50 s"
        );
        // Every step the library's window names has rollback words.
        for s in [
            "schema compared with the copy's",
            "last catch-up round",
            "rows changed since the cut compared",
            "large objects copied again",
            "sequences set",
            "foreign keys (NOT VALID) and triggers back",
        ] {
            assert_ne!(back_step_words(s), s);
        }
        assert_eq!(
            back(&OnlineEvent::CaptureRemoved),
            "change capture removed from the new database"
        );
        assert_eq!(
            online_line(&OnlineEvent::CaptureRemoved, false, Direction::Forward).unwrap(),
            "change capture removed from the source"
        );
        assert!(
            online_line(&step("sequences set"), false, Direction::Forward)
                .unwrap()
                .starts_with("sequences set (")
        );
        assert_eq!(
            online_line(
                &OnlineEvent::ForeignKeyValidated {
                    name: "public.events.events_learner_id_fkey".into()
                },
                true,
                Direction::Back
            )
            .unwrap(),
            "validated public.events.events_learner_id_fkey on the old database"
        );

        // --json: one object per event, named by the online event.
        let line = serde_json::to_string(&RunbookEvent::Online(held)).unwrap();
        assert!(line.contains("\"event\":\"held_back\""), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["foreign_keys"], 4, "{line}");
        let line = serde_json::to_string(&RunbookEvent::Settling {
            waited_seconds: 0.5,
            quiet_seconds: 0.25,
            needed_seconds: 2.0,
        })
        .unwrap();
        assert!(line.contains("\"event\":\"settling\""), "{line}");
    }

    #[test]
    fn a_replay_is_one_block_in_human_units() {
        let mut c = herokurds_core::runbook::ReplayReport::default();
        c.changes = 1200;
        c.keys = 1000;
        c.tables = 3;
        c.bytes = 5 * 1024 * 1024;
        c.keys_compared = 1000;
        c.tables_counted = 3;
        c.sequences = 7;
        c.seconds = 1.25;
        assert_eq!(
            replayed_text(&c),
            "copied back from RDS: 1200 change(s) on 1000 row(s) in 3 table(s), 5.00 MiB; \
             1000 key(s) compared, 3 table(s) counted, 7 sequence(s) set; in 1.2 s\n"
        );
    }
}
