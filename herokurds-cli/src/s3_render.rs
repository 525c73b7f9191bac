//! Rendering for `herokurds-s3-sync`: progress bars, dry-run lines,
//! failures and the summary.

use std::io::IsTerminal;

use herokurds_core::progress::Progress;
use herokurds_core::s3::{escape_key, S3Error, S3Location, SyncEvent, SyncReport, VerifyReport};
use indicatif::{
    HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle,
};

use crate::{println_safe, EXIT_DIFFERENT, EXIT_ERROR, EXIT_OK};

/// Receives sync events: progress bars on a terminal, `(dryrun)` lines on
/// stdout, failures on stderr.
pub struct SyncRenderer {
    bars: Option<(MultiProgress, ProgressBar, ProgressBar)>,
    destination: S3Location,
    print_dry_run: bool,
}

impl SyncRenderer {
    /// Bars only when `show_bars` and stderr is a terminal; dry-run lines
    /// unless `print_dry_run` is false (`--json`).
    pub fn new(destination: S3Location, show_bars: bool, print_dry_run: bool) -> Self {
        let multi = (show_bars && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self::in_multi(destination, multi, print_dry_run)
    }

    /// Bars added to `multi` (an existing set, e.g. under the runbook's
    /// downtime clock), or none when `None`.
    pub fn in_multi(
        destination: S3Location,
        multi: Option<MultiProgress>,
        print_dry_run: bool,
    ) -> Self {
        let bars = multi.map(|multi| {
            let objects = multi.add(ProgressBar::new(0).with_style(
                ProgressStyle::with_template(
                    "objects {bar:30.cyan/blue} {pos}/{len} ({rate}) {msg}",
                )
                .expect("valid template")
                .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}", objects_per_second(s.per_sec()));
                }),
            ));
            let bytes = multi.add(ProgressBar::new(0).with_style(
                ProgressStyle::with_template(
                    "bytes   {bar:30.green/blue} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
                )
                .expect("valid template"),
            ));
            (multi, objects, bytes)
        });
        SyncRenderer {
            bars,
            destination,
            print_dry_run,
        }
    }

    /// Removes the bars.
    pub fn finish(&self) {
        if let Some((_, objects, bytes)) = &self.bars {
            objects.finish_and_clear();
            bytes.finish_and_clear();
        }
    }

    fn line(&self, text: String, stderr: bool) {
        match (&self.bars, stderr) {
            (Some((multi, _, _)), _) => {
                let _ = multi.println(text);
            }
            (None, true) => eprintln!("{text}"),
            (None, false) => {
                let _ = println_safe(text);
            }
        }
    }
}

impl Progress<SyncEvent> for SyncRenderer {
    fn event(&self, event: &SyncEvent) {
        let bars = self.bars.as_ref().map(|(_, o, b)| (o, b));
        match event {
            SyncEvent::SourceListed { objects, bytes, .. } => {
                if let Some((o, b)) = bars {
                    o.set_length(*objects);
                    b.set_length(*bytes);
                }
            }
            SyncEvent::Copied {
                bytes, multipart, ..
            } => {
                if let Some((o, b)) = bars {
                    o.inc(1);
                    if !multipart {
                        b.inc(*bytes);
                    }
                }
            }
            SyncEvent::PartCopied { bytes, .. } => {
                if let Some((_, b)) = bars {
                    b.inc(*bytes);
                }
            }
            SyncEvent::Skipped { bytes, .. } => {
                if let Some((o, b)) = bars {
                    o.inc(1);
                    b.inc(*bytes);
                }
            }
            SyncEvent::Failed {
                bucket,
                key,
                reason,
            } => {
                if let Some((o, _)) = bars {
                    o.inc(1);
                }
                let (key, reason) = (escape_key(key), escape_key(reason));
                self.line(format!("failed: s3://{bucket}/{key}: {reason}"), true);
            }
            SyncEvent::WouldCopy { from, to, .. } if self.print_dry_run => {
                let (from, to) = (escape_key(from), escape_key(to));
                self.line(format!("(dryrun) copy: {from} to {to}"), false);
            }
            SyncEvent::WouldDelete { target } if self.print_dry_run => {
                let target = escape_key(target);
                self.line(format!("(dryrun) delete: {target}"), false);
            }
            SyncEvent::DeletesWithheld { count } => self.line(
                format!("not deleting {count} destination objects: some copies failed"),
                true,
            ),
            SyncEvent::VerifyDifference(d) => self.line(
                format!(
                    "verify: {} {:?} (source {} bytes, destination {})",
                    escape_key(&self.destination.url(&d.key)),
                    d.kind,
                    d.source_size,
                    d.destination_size
                        .map_or("missing".to_string(), |s| format!("{s} bytes"))
                ),
                true,
            ),
            _ => {}
        }
    }
}

/// The exit code of a finished sync: 2 when a key failed, 1 when the
/// verify pass found a difference or (dry run) the `--delete` guard would
/// refuse, else 0.
pub fn exit_code(report: &SyncReport) -> u8 {
    if report.failed > 0 {
        EXIT_ERROR
    } else if report.delete_refusal.is_some() || report.verify.as_ref().is_some_and(|v| !v.is_ok())
    {
        EXIT_DIFFERENT
    } else {
        EXIT_OK
    }
}

/// Prints why a sync stopped and returns its exit code: 1 when the
/// `--delete` guard refused (it found the source and destination too far
/// apart, and changed nothing), else 2.
pub fn stopped(err: S3Error) -> std::process::ExitCode {
    let code = if matches!(err, S3Error::DeleteRefused(_)) {
        EXIT_DIFFERENT
    } else {
        EXIT_ERROR
    };
    let hint = aws_setup_hint(&err);
    crate::report_error(&err.into());
    if let Some(hint) = hint {
        eprintln!("{hint}");
    }
    std::process::ExitCode::from(code)
}

/// What to do after a sync error about the AWS setup, naming this
/// command's flags (the library's error says what is missing).
pub fn aws_setup_hint(e: &S3Error) -> Option<&'static str> {
    match e {
        S3Error::NoCredentials { .. } => Some(
            "give credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile with \
             --source-profile/--dest-profile NAME; regions with --source-region/--dest-region",
        ),
        S3Error::Client { cause, .. } if cause.is_missing_region() => {
            Some("pass the buckets' regions: --source-region REGION --dest-region REGION (or set AWS_REGION)")
        }
        _ => None,
    }
}

/// The one-line human summary.
pub fn summary(report: &SyncReport) -> String {
    let verb = if report.dry_run {
        "would copy"
    } else {
        "copied"
    };
    let mut text = format!(
        "{verb} {} objects ({}), skipped {}, deleted {}, failed {} in {:.1} s",
        report.copied,
        HumanBytes(report.bytes),
        report.skipped,
        report.deleted,
        report.failed,
        report.elapsed_ms as f64 / 1000.0
    );
    if let Some(v) = &report.verify {
        text.push_str(&format!("; {}", verify_summary(v)));
    }
    if let Some(refusal) = &report.delete_refusal {
        text.push_str(&format!(
            "\n(dryrun) the --delete guard would stop: {refusal}"
        ));
    }
    text
}

/// The one-line verify summary.
pub fn verify_summary(v: &VerifyReport) -> String {
    format!(
        "verify: {} checked, {} missing, {} size differences, {} ETag differences \
         ({} compared by ETag, {} SSE-KMS/SSE-C encrypted compared by size only)",
        v.checked, v.missing, v.size_mismatch, v.etag_mismatch, v.etag_compared, v.size_only
    )
}

/// A copy rate in words: `9.18 objects/s`.
pub fn objects_per_second(rate: f64) -> String {
    format!("{rate:.2} objects/s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_rates_not_raw_per_sec() {
        assert_eq!(objects_per_second(9.180_6), "9.18 objects/s");
    }
}
