//! Proof that a sync is complete: every source key (after filters) exists at
//! the destination with the same size and, when both are single-part
//! objects, the same ETag (the MD5 of the content).
//!
//! Multipart ETags depend on the part size, and SSE-KMS ETags are not MD5s,
//! so those keys are compared by size only; [`VerifyReport::etag_compared`]
//! says how many were compared by content.

use tokio_util::sync::CancellationToken;

use super::list::{Entry, Merge, Pair};
use super::{
    DifferenceKind, S3Error, S3Location, SyncEvent, SyncOptions, VerifyDifference, VerifyReport,
};
use crate::progress::Progress;

/// Compares `destination` with `source` without changing anything. Uses the
/// filters and clients of `options`; everything else in it is ignored.
pub async fn verify(
    source: &S3Location,
    destination: &S3Location,
    options: &SyncOptions,
    progress: &impl Progress<SyncEvent>,
    cancel: CancellationToken,
) -> Result<VerifyReport, S3Error> {
    let (source_client, destination_client) = options.clients().await?;
    compare(
        (&source_client, source),
        (&destination_client, destination),
        options,
        progress,
        &cancel,
    )
    .await
}

pub(crate) async fn compare(
    source: (&aws_sdk_s3::Client, &S3Location),
    destination: (&aws_sdk_s3::Client, &S3Location),
    options: &SyncOptions,
    progress: &impl Progress<SyncEvent>,
    cancel: &CancellationToken,
) -> Result<VerifyReport, S3Error> {
    let cancelled = || S3Error::Cancelled {
        source_location: source.1.to_string(),
        destination: destination.1.to_string(),
    };
    let mut merge = Merge::start(source, destination, &options.filters);
    let mut report = VerifyReport::default();
    // Listing events are not forwarded: the sync before already reported them.
    let quiet = crate::progress::NoProgress;
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return Err(cancelled()),
            next = merge.next(&quiet) => next?,
        };
        let Some(pair) = next else { break };
        let difference = match pair {
            Pair::DestinationOnly(_) => {
                report.extra += 1;
                continue;
            }
            Pair::SourceOnly(s) => {
                report.checked += 1;
                report.missing += 1;
                difference(s, DifferenceKind::Missing, None)
            }
            Pair::Both(s, d) => {
                report.checked += 1;
                if s.size != d.size {
                    report.size_mismatch += 1;
                    difference(s, DifferenceKind::Size, Some(d.size))
                } else if let (Some(a), Some(b)) = (s.single_part_etag(), d.single_part_etag()) {
                    report.etag_compared += 1;
                    if a == b {
                        report.matched += 1;
                        continue;
                    }
                    report.etag_mismatch += 1;
                    difference(s, DifferenceKind::Etag, Some(d.size))
                } else {
                    report.matched += 1;
                    continue;
                }
            }
        };
        progress.event(&SyncEvent::VerifyDifference(difference.clone()));
        if report.differences.len() < VerifyReport::MAX_LISTED {
            report.differences.push(difference);
        }
    }
    progress.event(&SyncEvent::Verified {
        checked: report.checked,
        differences: report.difference_count(),
    });
    Ok(report)
}

fn difference(
    source: Entry,
    kind: DifferenceKind,
    destination_size: Option<u64>,
) -> VerifyDifference {
    VerifyDifference {
        key: source.key,
        kind,
        source_size: source.size,
        destination_size,
    }
}
