//! Rendering a verification for people and for scripts: progress bars while
//! checksumming, one line per difference, or the whole report as JSON.

use std::time::Duration;

use herokurds_core::progress::Progress;
use herokurds_core::verify::{Side, VerifyEvent, VerifyReport};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Two byte-counting bars on stderr, one per side, fed by [`VerifyEvent`]s.
/// Hidden (and free) when stderr is not a terminal.
pub struct VerifyBars {
    _multi: MultiProgress,
    phase: ProgressBar,
    source: ProgressBar,
    target: ProgressBar,
}

impl VerifyBars {
    /// Bars drawn on stderr when it is a terminal, else nothing drawn.
    pub fn stderr() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        Self::in_multi(multi)
    }

    /// Bars added to an existing set (e.g. under the runbook's downtime
    /// clock), drawn wherever that set draws.
    pub fn in_multi(multi: MultiProgress) -> Self {
        let phase = multi.add(ProgressBar::new_spinner());
        phase.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
        phase.set_message("comparing schema objects");
        phase.enable_steady_tick(Duration::from_millis(120));
        let style = ProgressStyle::with_template(
            "{prefix:>7} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> ");
        let bar = |name: &str| {
            let b = multi.add(ProgressBar::new(0));
            b.set_style(style.clone());
            b.set_prefix(name.to_string());
            b
        };
        let (source, target) = (bar("source"), bar("target"));
        VerifyBars {
            _multi: multi,
            phase,
            source,
            target,
        }
    }

    fn bar(&self, side: Side) -> &ProgressBar {
        match side {
            Side::Source => &self.source,
            Side::Target => &self.target,
        }
    }

    /// Removes the bars from the screen.
    pub fn finish(&self) {
        for b in [&self.phase, &self.source, &self.target] {
            b.finish_and_clear();
        }
    }
}

impl Progress<VerifyEvent> for VerifyBars {
    fn event(&self, event: &VerifyEvent) {
        match event {
            VerifyEvent::SchemaCompared {
                objects,
                differences,
            } => self.phase.set_message(format!(
                "{objects} schema objects compared ({differences} differences); checksumming"
            )),
            VerifyEvent::DataPlanned { side, bytes, .. } => self.bar(*side).set_length(*bytes),
            VerifyEvent::SliceDone {
                side, table, bytes, ..
            } => {
                let bar = self.bar(*side);
                bar.inc(*bytes);
                bar.set_message(table.clone());
            }
            VerifyEvent::DataCompared { .. } => {
                self.phase
                    .set_message("comparing sequences and large objects");
            }
            _ => {}
        }
    }
}

/// One line per difference, naming the object and what differs.
pub fn difference_lines(report: &VerifyReport) -> Vec<String> {
    report.differences.iter().map(|d| d.to_string()).collect()
}

/// A short summary for stderr.
pub fn summary(report: &VerifyReport) -> String {
    let rows: u64 = report
        .tables
        .iter()
        .filter_map(|t| t.source.as_ref())
        .map(|t| t.rows)
        .sum();
    let what = if report.counts_only {
        "row counts"
    } else {
        "rows and checksums"
    };
    let verdict = if report.is_identical() {
        "identical".to_string()
    } else {
        format!("{} difference(s)", report.differences.len())
    };
    format!(
        "{verdict}: {} schema objects, {} tables ({rows} rows; {what}), {} sequences, {} large objects; \
         {:.1} MB read in {:.1} s",
        report.schema_objects,
        report.tables.len(),
        report.sequences,
        report.large_objects.as_ref().map_or(0, |l| l.source),
        report.bytes_read as f64 / 1e6,
        report.seconds,
    )
}

/// The report as one JSON object: everything in [`VerifyReport`], plus
/// `identical` and, on each difference, the `message` line.
pub fn report_json(report: &VerifyReport) -> serde_json::Value {
    let mut v = serde_json::to_value(report).expect("a report always serialises");
    if let Some(list) = v.get_mut("differences").and_then(|d| d.as_array_mut()) {
        for (item, d) in list.iter_mut().zip(&report.differences) {
            item["message"] = serde_json::Value::String(d.to_string());
        }
    }
    v["identical"] = serde_json::Value::Bool(report.is_identical());
    v
}
