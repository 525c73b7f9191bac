//! The migration report: what was done, how long the app was down, what
//! was copied and proven, in Markdown for people and JSON for scripts.
//!
//! Everything here is built from the journal, so a resumed run reports the
//! whole migration, not just its last part.

use serde::{Deserialize, Serialize};

use std::path::PathBuf;

use super::journal::{Journal, JournalError, RunState, StepRecord, StepStatus, WorkDir};
use crate::fsutil;
use crate::smoke::PageDifference;

pub use super::summary::{S3Summary, TransferSummary, VerifySummary};

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The app.
    pub app: String,
    /// Where the migration stands.
    pub state: RunState,
    /// Each step with its status and seconds.
    pub steps: Vec<ReportStep>,
    /// Seconds of maintenance mode (so far, if still on).
    pub downtime_seconds: Option<f64>,
    /// The window the preflight step estimated, seconds.
    pub estimated_window_seconds: Option<f64>,
    /// The old add-on.
    pub old_addon: Option<String>,
    /// Source and target hosts.
    pub source_host: Option<String>,
    /// Target host.
    pub target_host: Option<String>,
    /// The copy.
    pub transfer: Option<TransferSummary>,
    /// The proof.
    pub verify: Option<VerifySummary>,
    /// The buckets.
    pub s3: Vec<S3Summary>,
    /// Smoke pages checked.
    pub smoke_pages: usize,
    /// How pages changed after the cutover.
    pub smoke_differences: Vec<PageDifference>,
    /// What the app's own credentials may do on each target bucket.
    #[serde(default)]
    pub app_access: Vec<super::AccessCheck>,
    /// The CloudFront origins switched (and whether they still are).
    #[serde(default)]
    pub cloudfront: Vec<crate::cloudfront::DistributionSwitch>,
}

/// One step line of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportStep {
    /// 1-based number.
    pub number: usize,
    /// Title.
    pub title: String,
    /// Status.
    pub status: StepStatus,
    /// Seconds taken.
    pub seconds: Option<f64>,
    /// What it did.
    pub detail: Option<String>,
}

impl Report {
    /// Builds the report from a journal.
    pub fn from_journal(j: &Journal) -> Report {
        Report {
            app: j.app.clone(),
            state: j.state.clone(),
            steps: j
                .steps
                .iter()
                .enumerate()
                .map(|(i, s): (usize, &StepRecord)| ReportStep {
                    number: i + 1,
                    title: s.id.title().to_string(),
                    status: s.status,
                    seconds: s.seconds(),
                    detail: s.detail.clone(),
                })
                .collect(),
            downtime_seconds: j.downtime().map(|d| d.num_milliseconds() as f64 / 1000.0),
            estimated_window_seconds: j.estimated_window_seconds,
            old_addon: j.old_addon.clone(),
            source_host: j.source_host.clone(),
            target_host: j.target_host.clone(),
            transfer: j.transfer.clone(),
            verify: j.verify.clone(),
            s3: j.s3.clone(),
            smoke_pages: j.smoke_before.len(),
            smoke_differences: j.smoke_differences.clone(),
            app_access: j.app_access.clone(),
            cloudfront: j.cloudfront.clone(),
        }
    }

    /// Writes `report.md` and `report.json` into the app's directory of
    /// `dir` ([`WorkDir::report`]), each atomically and mode 0600, and
    /// returns their paths.
    pub fn save(&self, dir: &WorkDir) -> Result<[PathBuf; 2], JournalError> {
        dir.create_app_dir(&self.app)?;
        let md = dir.report(&self.app, "md");
        let json = dir.report(&self.app, "json");
        let body = serde_json::to_vec_pretty(self).expect("the report serialises");
        for (path, bytes) in [(&md, self.to_markdown().into_bytes()), (&json, body)] {
            fsutil::blocking_io(|| fsutil::write_atomic(path, &bytes, fsutil::PRIVATE_FILE))
                .map_err(|e| JournalError::io(path, "writing", e))?;
        }
        Ok([md, json])
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut md = format!("# herokurds migration of `{}`\n\n", self.app);
        let state = match &self.state {
            RunState::InProgress => "in progress".to_string(),
            RunState::Aborted { reason } => format!("aborted before the cutover: {reason}"),
            RunState::Completed => "completed: the app runs on the new database".to_string(),
            RunState::RolledBack => "rolled back: the app runs on the old database".to_string(),
        };
        md.push_str(&format!("**State:** {state}\n\n"));
        if let Some(d) = self.downtime_seconds {
            md.push_str(&format!(
                "**Downtime (maintenance mode):** {}{}\n\n",
                human_seconds(d),
                self.estimated_window_seconds
                    .map(|e| format!(" (estimated before the run: {})", human_seconds(e)))
                    .unwrap_or_default()
            ));
        }
        if let (Some(s), Some(t)) = (&self.source_host, &self.target_host) {
            md.push_str(&format!(
                "**Database:** `{s}` ({}) → `{t}`\n\n",
                self.old_addon.as_deref().unwrap_or("source")
            ));
        }
        md.push_str("| # | step | status | time | detail |\n|---|---|---|---|---|\n");
        for s in &self.steps {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                s.number,
                s.title,
                status_word(s.status),
                s.seconds.map(human_seconds).unwrap_or_default(),
                s.detail
                    .as_deref()
                    .unwrap_or("")
                    .replace('|', "\\|")
                    .replace('\n', " "),
            ));
        }
        if let Some(t) = &self.transfer {
            md.push_str(&format!(
                "\n## Transfer\n{} tables, {} rows, {:.1} MB in {} ({:.1} MB/s, {:.0} rows/s); {} sequences, {} large objects\n",
                t.tables,
                t.rows,
                t.bytes as f64 / 1_048_576.0,
                human_seconds(t.seconds),
                t.mb_per_second(),
                t.rows_per_second(),
                t.sequences,
                t.large_objects
            ));
        }
        if let Some(v) = &self.verify {
            md.push_str(&format!(
                "\n## Verification\n{} ({} tables, {}) in {}\n",
                if v.identical {
                    "target equals source"
                } else {
                    "DIFFERENCES FOUND"
                },
                v.tables,
                if v.checksums {
                    "row counts and content checksums"
                } else {
                    "row counts only"
                },
                human_seconds(v.seconds)
            ));
            for d in &v.differences {
                md.push_str(&format!("- {d}\n"));
            }
        }
        if !self.s3.is_empty() {
            md.push_str("\n## S3\n| pass | source | target | copied | skipped | deleted | failed | MB |\n|---|---|---|---|---|---|---|---|\n");
            for s in &self.s3 {
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {:.1} |\n",
                    s.pass,
                    s.source,
                    s.target,
                    s.copied,
                    s.skipped,
                    s.deleted,
                    s.failed,
                    s.bytes as f64 / 1_048_576.0
                ));
            }
        }
        if !self.app_access.is_empty() {
            md.push_str("\n## The app's access to the new buckets\n");
            for c in &self.app_access {
                md.push_str(&format!("- {c}\n"));
            }
        }
        if !self.cloudfront.is_empty() {
            md.push_str("\n## CloudFront\n");
            for d in &self.cloudfront {
                md.push_str(&format!(
                    "- distribution {}{}{}\n",
                    d.distribution_id,
                    if d.switched {
                        ""
                    } else {
                        " (not switched, or switched back)"
                    },
                    d.invalidation_id
                        .as_deref()
                        .map(|i| format!(", invalidation {i}"))
                        .unwrap_or_default()
                ));
                for o in &d.origins {
                    md.push_str(&format!("  - {o}\n"));
                }
            }
        }
        if self.smoke_pages > 0 {
            md.push_str(&format!("\n## Smoke checks\n{} pages: ", self.smoke_pages));
            if self.smoke_differences.is_empty() {
                md.push_str("no differences after the cutover\n");
            } else {
                md.push_str("differences after the cutover:\n");
                for d in &self.smoke_differences {
                    md.push_str(&format!("- {d}\n"));
                }
            }
        }
        md
    }
}

fn status_word(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Pending => "pending",
        StepStatus::Running => "RUNNING",
        StepStatus::Done => "done",
        StepStatus::Skipped => "skipped",
        StepStatus::Failed => "FAILED",
    }
}

/// `42.3 s`, `3 min 05 s`, `1 h 02 min`.
pub fn human_seconds(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{} min {:02} s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{} h {:02} min",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::journal::StepId;

    #[test]
    fn markdown_names_downtime_steps_and_results() {
        let mut j = Journal::new("micromasters-ci");
        j.start(StepId::Preflight);
        j.finish(StepId::Preflight, "all checks passed");
        j.skip(StepId::S3Presync, "no [[s3]] in the plan");
        j.maintenance_on_at = Some(chrono::Utc::now() - chrono::Duration::seconds(75));
        j.maintenance_off_at = Some(chrono::Utc::now());
        j.transfer = Some(TransferSummary {
            tables: 3,
            rows: 1000,
            bytes: 10 * 1_048_576,
            seconds: 2.0,
            sequences: 2,
            large_objects: 1,
        });
        j.verify = Some(VerifySummary {
            identical: false,
            tables: 3,
            checksums: true,
            differences: vec!["table public.orders: row count 10 vs 9".into()],
            seconds: 1.0,
        });
        j.state = RunState::Aborted {
            reason: "verification found 1 difference".into(),
        };
        let md = Report::from_journal(&j).to_markdown();
        for needle in [
            "aborted before the cutover: verification found 1 difference",
            "**Downtime (maintenance mode):** 1 min 15 s",
            "| 1 | preflight checks | done |",
            "| 3 | S3 pre-sync | skipped |",
            "3 tables, 1000 rows, 10.0 MB in 2.0 s (5.0 MB/s, 500 rows/s)",
            "DIFFERENCES FOUND",
            "- table public.orders: row count 10 vs 9",
        ] {
            assert!(md.contains(needle), "missing {needle:?} in\n{md}");
        }
        let json = serde_json::to_value(Report::from_journal(&j)).unwrap();
        assert_eq!(json["transfer"]["rows"], 1000);
        assert_eq!(json["state"]["state"], "aborted");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_seconds(4.25), "4.2 s");
        assert_eq!(human_seconds(185.0), "3 min 05 s");
        assert_eq!(human_seconds(3720.0), "1 h 02 min");
    }
}
