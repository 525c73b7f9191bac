//! How `herokurds-transfer` shows a transfer: progress bars on a terminal,
//! one line per step otherwise, NDJSON with `--json` (each event with `t`,
//! seconds since the start); and the final summary table.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use herokurds_core::progress::Progress;
use herokurds_core::transfer::{
    Phase, PreflightProblem, PreflightReport, Slice, TransferError, TransferEvent, TransferReport,
};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::{print_json, println_safe};

/// Where the events go.
enum Mode {
    /// One JSON object per line on stdout.
    Json,
    /// Bars on stderr (a terminal).
    Bars {
        multi: MultiProgress,
        overall: ProgressBar,
        tables: Mutex<HashMap<String, ProgressBar>>,
    },
    /// A line per step on stderr (not a terminal: logs, CI).
    Lines,
}

/// What `herokurds-transfer`'s flags can do about a preflight problem (the
/// library's messages name no flag).
pub fn problem_advice(p: &PreflightProblem) -> Option<String> {
    Some(match p {
        PreflightProblem::ToolsMissing { .. } | PreflightProblem::ToolsTooOld { .. } => {
            "--pg-bin-dir DIR (env HEROKURDS_PG_BIN_DIR) names the directory that holds \
             pg_dump and pg_restore"
                .into()
        }
        PreflightProblem::TargetNotEmpty { .. } => "point --target at an empty database, or pass \
             --resume to finish an interrupted transfer into it"
            .into(),
        PreflightProblem::ExtensionUnavailable { name, .. }
        | PreflightProblem::ExtensionNotCreatable { name, .. } => {
            format!("--exclude-extension {name} leaves it out")
        }
        _ => return None,
    })
}

/// What `herokurds-transfer`'s flags can do about the error that stopped
/// it, one hint a line: the library says what happened, the binary which
/// flag to pass.
pub fn advice(err: &anyhow::Error) -> Vec<String> {
    let Some(e) = err.downcast_ref::<TransferError>() else {
        return Vec::new();
    };
    let mut hints: Vec<String> = e
        .preflight_problems()
        .iter()
        .filter_map(problem_advice)
        .collect();
    match e {
        TransferError::Locked { .. } => {
            hints.push("another --work-dir runs a separate transfer".into())
        }
        TransferError::TargetHasData { .. } => hints.push(
            "--restart-target drops it and copies again (it asks you to type the database name; \
             --yes skips that); another --work-dir and an empty --target keep it"
                .into(),
        ),
        TransferError::WorkDir { .. } => hints.push(
            "--resume finishes the journaled transfer, --restart starts it over, another \
             --work-dir starts a separate one"
                .into(),
        ),
        _ if e.is_resumable() => hints.push(
            "the work directory records what is done: fix the cause and finish with --resume"
                .into(),
        ),
        _ => {}
    }
    hints
}

/// Renders [`TransferEvent`]s; a [`Progress`] for [`herokurds_core::transfer::run`].
pub struct TransferRender {
    mode: Mode,
    started: std::time::Instant,
    verbose: bool,
    /// Indexes and constraints built, tables analyzed: counted, and
    /// shown one line each only when `verbose`.
    built: Mutex<(u64, u64)>,
}

/// A transfer phase in words, for people (the enum names are for `--json`).
pub fn phase_words(phase: Phase) -> &'static str {
    match phase {
        Phase::Preflight => "checks",
        Phase::SchemaDump => "schema dump",
        Phase::PreData => "tables and types",
        Phase::Data => "rows and indexes",
        Phase::PostData => "foreign keys, triggers and the rest",
        Phase::Sequences => "sequences",
        Phase::LargeObjects => "large objects",
        _ => "other work",
    }
}

fn human_bytes(b: u64) -> String {
    indicatif::HumanBytes(b).to_string()
}

fn key(table: &str, slice: Option<Slice>) -> String {
    match slice {
        Some(s) => format!("{table} [{}/{}]", s.index, s.count),
        None => table.to_string(),
    }
}

impl TransferRender {
    /// NDJSON when `json`, bars when stderr is a terminal, else lines.
    pub fn new(json: bool) -> Self {
        if json {
            Self::with_mode(Mode::Json)
        } else if std::io::stderr().is_terminal() {
            Self::in_multi(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        } else {
            Self::with_mode(Mode::Lines)
        }
    }

    /// Bars added to an existing set (e.g. under the runbook's downtime
    /// clock), drawn wherever that set draws.
    pub fn in_multi(multi: MultiProgress) -> Self {
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template(
                "{prefix:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {elapsed_precise} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        overall.set_prefix("transfer");
        overall.enable_steady_tick(Duration::from_millis(200));
        Self::with_mode(Mode::Bars {
            multi,
            overall,
            tables: Mutex::new(HashMap::new()),
        })
    }

    fn with_mode(mode: Mode) -> Self {
        TransferRender {
            mode,
            started: std::time::Instant::now(),
            verbose: false,
            built: Mutex::new((0, 0)),
        }
    }

    /// Also a line per index, constraint and ANALYZE (`-v`); by default
    /// one line per table and a count at the end of the data phase.
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    fn line(&self, text: String) {
        match &self.mode {
            Mode::Bars { multi, .. } => {
                let _ = multi.println(text);
            }
            Mode::Lines => eprintln!("{text}"),
            Mode::Json => {}
        }
    }

    /// Shows a preflight report (for `--preflight-only`).
    pub fn preflight(&self, r: &PreflightReport) -> anyhow::Result<()> {
        if let Mode::Json = self.mode {
            return print_json(r);
        }
        println_safe(format!(
            "source {} as {}; target {} as {}; pg_dump {}",
            r.source_version,
            r.source_user,
            r.target_version,
            r.target_user,
            r.pg_dump.as_deref().unwrap_or("not found")
        ))?;
        println_safe(format!(
            "{} tables (~{}), {} sequences, {} large objects; {} excluded; target holds {} tables",
            r.tables,
            human_bytes(r.estimated_bytes),
            r.sequences,
            r.large_objects,
            r.excluded_tables.len(),
            r.target_tables
        ))?;
        for e in &r.extensions {
            println_safe(format!(
                "extension {} {} (schema {}): {}",
                e.name,
                e.version,
                e.schema,
                if e.excluded {
                    "excluded"
                } else if e.creatable {
                    "ok"
                } else {
                    "cannot be created on the target"
                }
            ))?;
        }
        for w in &r.warnings {
            println_safe(format!("warning: {w}"))?;
        }
        for p in &r.problems {
            println_safe(format!("problem: {p}"))?;
            if let Some(hint) = problem_advice(p) {
                println_safe(format!("  hint: {hint}"))?;
            }
        }
        Ok(())
    }

    /// Clears the bars and prints the summary (or the report as JSON).
    pub fn finish(&self, report: &TransferReport) -> anyhow::Result<()> {
        match &self.mode {
            Mode::Json => {
                return print_json(&serde_json::json!({ "event": "report", "report": report }))
            }
            Mode::Bars { overall, multi, .. } => {
                overall.finish_and_clear();
                let _ = multi.clear();
            }
            Mode::Lines => {}
        }
        println_safe(format!(
            "{:<48} {:>12} {:>12} {:>8} {:>9}",
            "table", "rows", "bytes", "seconds", "MB/s"
        ))?;
        for t in &report.tables {
            let mbs = if t.seconds > 0.0 {
                t.bytes as f64 / 1e6 / t.seconds
            } else {
                0.0
            };
            println_safe(format!(
                "{:<48} {:>12} {:>12} {:>8.1} {:>9.1}{}",
                t.table,
                t.rows,
                human_bytes(t.bytes),
                t.seconds,
                mbs,
                if t.from_earlier_run {
                    "  (earlier run)"
                } else {
                    ""
                }
            ))?;
        }
        println_safe(format!(
            "total: {} rows, {} in {:.1} s = {:.1} MB/s, {:.0} rows/s; {} indexes/constraints/post-data items, \
             {} sequences, {} large objects{}",
            report.rows(),
            human_bytes(report.bytes()),
            report.seconds,
            report.mb_per_second(),
            report.rows_per_second(),
            report.post_data_items,
            report.sequences,
            report.large_objects,
            if report.resumed { " (resumed)" } else { "" }
        ))?;
        println_safe(format!(
            "snapshot {} at source WAL {}",
            report.snapshot.id,
            report.snapshot.lsn.as_deref().unwrap_or("(not readable)")
        ))?;
        Ok(())
    }

    /// Reports a failure in `--json` mode (stderr gets it in every mode).
    pub fn error(&self, message: &str) {
        if let Mode::Json = self.mode {
            let _ = print_json(&serde_json::json!({ "event": "error", "message": message }));
        }
    }

    fn bar_for(&self, name: &str, total: u64) -> Option<ProgressBar> {
        let Mode::Bars { multi, tables, .. } = &self.mode else {
            return None;
        };
        let mut tables = tables.lock().unwrap_or_else(|p| p.into_inner());
        Some(
            tables
                .entry(name.to_string())
                .or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(total));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "  {prefix:<40!} {bytes:>10} {bytes_per_sec:>12} {msg}",
                        )
                        .expect("valid template"),
                    );
                    bar.set_prefix(name.to_string());
                    bar
                })
                .clone(),
        )
    }

    fn remove_bar(&self, name: &str) {
        if let Mode::Bars { multi, tables, .. } = &self.mode {
            if let Some(bar) = tables
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(name)
            {
                bar.finish_and_clear();
                multi.remove(&bar);
            }
        }
    }
}

impl Progress<TransferEvent> for TransferRender {
    fn event(&self, e: &TransferEvent) {
        if let Mode::Json = self.mode {
            // Each line also says when: seconds since the command started.
            let mut v = serde_json::to_value(e).unwrap_or_default();
            if let Some(map) = v.as_object_mut() {
                let t = (self.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
                map.insert("t".into(), t.into());
            }
            let _ = print_json(&v);
            return;
        }
        match e {
            TransferEvent::PreflightPassed {
                tables,
                estimated_bytes,
                source_version,
                target_version,
                ..
            } => {
                if let Mode::Bars { overall, .. } = &self.mode {
                    overall.set_length(*estimated_bytes);
                }
                self.line(format!(
                    "preflight ok: {tables} tables, ~{} (source {source_version}, target {target_version})",
                    human_bytes(*estimated_bytes)
                ));
            }
            TransferEvent::PhaseStarted { phase } => {
                if let Mode::Bars { overall, .. } = &self.mode {
                    overall.set_message(phase_words(*phase));
                }
                if let (Mode::Lines, true) = (&self.mode, self.verbose) {
                    self.line(format!("{}: started", phase_words(*phase)));
                }
            }
            TransferEvent::PhaseFinished { phase, seconds } => {
                if let (Mode::Bars { overall, .. }, Phase::Data) = (&self.mode, phase) {
                    // The estimate was the tables' on-disk size; COPY data differs.
                    overall.set_length(overall.position());
                }
                let mut line = format!("{}: done in {seconds:.1} s", phase_words(*phase));
                let (built, analyzed) = *self.built.lock().unwrap_or_else(|p| p.into_inner());
                if *phase == Phase::Data && !self.verbose && built + analyzed > 0 {
                    line.push_str(&format!(
                        " ({built} indexes and constraints built, {analyzed} tables analyzed)"
                    ));
                }
                self.line(line)
            }
            TransferEvent::TableStarted { table, slice, .. } => {
                if let Some(bar) = self.bar_for(&key(table, *slice), 0) {
                    bar.set_message("copying");
                }
            }
            TransferEvent::TableProgress {
                table,
                slice,
                rows,
                bytes,
                ..
            } => {
                if let Some(bar) = self.bar_for(&key(table, *slice), 0) {
                    bar.set_position(*bytes);
                    bar.set_message(format!("~{rows} rows"));
                }
            }
            TransferEvent::TableFinished {
                table,
                slice,
                rows,
                bytes,
                seconds,
            } => {
                let name = key(table, *slice);
                self.remove_bar(&name);
                if slice.is_none() {
                    if let Mode::Bars { overall, .. } = &self.mode {
                        overall.inc(*bytes);
                    }
                }
                if slice.is_none() || matches!(self.mode, Mode::Lines) {
                    self.line(format!(
                        "copied {name}: {rows} rows, {} in {seconds:.1} s",
                        human_bytes(*bytes)
                    ));
                }
            }
            TransferEvent::TableSkipped { table, reason } => {
                self.line(format!("skipped {table}: {reason}"))
            }
            TransferEvent::Retrying {
                item,
                attempt,
                of,
                backoff,
                error,
            } => self.line(format!(
                "retrying {item} (attempt {attempt} of {of}, after {backoff:.0} s): {error}"
            )),
            TransferEvent::IndexFinished { item, seconds, .. } => {
                {
                    let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
                    if item.starts_with("ANALYZE") {
                        built.1 += 1;
                    } else {
                        built.0 += 1;
                    }
                }
                if self.verbose && matches!(self.mode, Mode::Lines) {
                    self.line(format!("built {item} in {seconds:.1} s"))
                }
            }
            TransferEvent::SequencesSet { count } => self.line(format!("set {count} sequences")),
            TransferEvent::LargeObjectsCopied { count, bytes } => self.line(format!(
                "copied {count} large objects ({})",
                human_bytes(*bytes)
            )),
            TransferEvent::Warning { message } => self.line(format!("warning: {message}")),
            _ => {}
        }
    }
}
