//! Proof that a sync is complete: every source key (after filters) exists at
//! the destination with the same size and, when both are single-part
//! objects, the same ETag (the MD5 of the content).
//!
//! Multipart ETags depend on the part size, so multipart keys are compared
//! by size only. So are keys encrypted with SSE-KMS (`aws:kms`,
//! `aws:kms:dsse`) or SSE-C on either side: S3 does not make their ETags
//! the MD5 of the content, so two copies of the same bytes have different
//! ETags. Encryption is not in a listing, so when two single-part ETags
//! differ (and only then) both objects are read with HeadObject: if either
//! is encrypted that way, equal sizes are accepted and counted in
//! [`VerifyReport::size_only`]; otherwise the difference is real.
//! [`VerifyReport::etag_compared`] says how many keys were compared by
//! content.
//!
//! Those HeadObject requests run concurrently (up to
//! [`SyncOptions::concurrency`]) while the listings go on; results are
//! taken in key order, so differences are reported in key order. After a
//! sync with `--sse aws:kms` every key needs one (the destination's), so
//! such a verify costs one request per key on top of the listings.

use aws_sdk_s3::types::ServerSideEncryption;
use futures::{StreamExt, TryStreamExt};
use tokio_util::sync::CancellationToken;

use super::list::{Entry, Merge, Pair};
use super::{
    DifferenceKind, S3Error, S3Location, SyncEvent, SyncOptions, VerifyDifference, VerifyReport,
};
use crate::aws::sdk_failure;
use crate::progress::{NoProgress, Progress};

/// Compares `destination` with `source` without changing anything. Uses the
/// filters, clients and concurrency of `options`; everything else in it is
/// ignored.
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

/// What one key turned out to be.
enum Verdict {
    /// At the destination only (not a difference).
    Extra,
    /// Same size and same single-part ETag.
    SameEtag,
    /// Same size, ETags not comparable (multipart).
    SameSize,
    /// Same size, single-part ETags differ because one side is encrypted
    /// with SSE-KMS or SSE-C.
    SizeOnly,
    /// A difference.
    Differs(VerifyDifference),
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
    let merge = Merge::start(source, destination, &options.filters);
    // Listing events are not forwarded: the sync before already reported them.
    let pairs = futures::stream::try_unfold(merge, |mut merge| async move {
        let next = merge.next(&NoProgress).await?;
        Ok(next.map(|pair| (pair, merge)))
    });
    let verdicts = pairs
        .map_ok(|pair| judge(pair, source, destination))
        .try_buffered(options.concurrency.max(1));
    let mut verdicts = std::pin::pin!(verdicts);
    let mut report = VerifyReport::default();
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return Err(cancelled()),
            next = verdicts.next() => next.transpose()?,
        };
        let Some(verdict) = next else { break };
        let difference = match verdict {
            Verdict::Extra => {
                report.extra += 1;
                continue;
            }
            Verdict::SameEtag => {
                report.checked += 1;
                report.etag_compared += 1;
                report.matched += 1;
                continue;
            }
            Verdict::SameSize => {
                report.checked += 1;
                report.matched += 1;
                continue;
            }
            Verdict::SizeOnly => {
                report.checked += 1;
                report.size_only += 1;
                report.matched += 1;
                continue;
            }
            Verdict::Differs(difference) => {
                report.checked += 1;
                match difference.kind {
                    DifferenceKind::Missing => report.missing += 1,
                    DifferenceKind::Size => report.size_mismatch += 1,
                    DifferenceKind::Etag => {
                        report.etag_compared += 1;
                        report.etag_mismatch += 1;
                    }
                }
                difference
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

/// Compares one key; HeadObject requests only when single-part ETags
/// differ. Never fails: an object that cannot be read stays a difference.
async fn judge(
    pair: Pair,
    source: (&aws_sdk_s3::Client, &S3Location),
    destination: (&aws_sdk_s3::Client, &S3Location),
) -> Result<Verdict, S3Error> {
    let (s, d) = match pair {
        Pair::DestinationOnly(_) => return Ok(Verdict::Extra),
        Pair::SourceOnly(s) => {
            return Ok(Verdict::Differs(difference(
                s,
                DifferenceKind::Missing,
                None,
            )))
        }
        Pair::Both(s, d) => (s, d),
    };
    if s.size != d.size {
        return Ok(Verdict::Differs(difference(
            s,
            DifferenceKind::Size,
            Some(d.size),
        )));
    }
    let (Some(a), Some(b)) = (s.single_part_etag(), d.single_part_etag()) else {
        return Ok(Verdict::SameSize);
    };
    if a == b {
        return Ok(Verdict::SameEtag);
    }
    // The destination first: after `--sse aws:kms` it alone explains the
    // difference, so one request is enough.
    let mut unreadable = Vec::new();
    for (client, location) in [destination, source] {
        match etag_is_not_md5(client, location, &s.key).await {
            Ok(true) => return Ok(Verdict::SizeOnly),
            Ok(false) => {}
            Err(reason) => unreadable.push(reason),
        }
    }
    if !unreadable.is_empty() {
        tracing::warn!(
            key = %s.key,
            reasons = %unreadable.join("; "),
            "ETags differ and the encryption could not be read; reporting a difference"
        );
    }
    Ok(Verdict::Differs(difference(
        s,
        DifferenceKind::Etag,
        Some(d.size),
    )))
}

/// Whether the object is encrypted in a way that makes its ETag something
/// other than the MD5 of its content: SSE-KMS (`aws:kms`, `aws:kms:dsse`)
/// or SSE-C.
async fn etag_is_not_md5(
    client: &aws_sdk_s3::Client,
    location: &S3Location,
    key: &str,
) -> Result<bool, String> {
    let head = client
        .head_object()
        .bucket(location.bucket())
        .key(location.key(key))
        .send()
        .await
        .map_err(|e| {
            format!(
                "HeadObject {}: {}",
                location.url(key),
                sdk_failure(&e).reason
            )
        })?;
    let kms = matches!(
        head.server_side_encryption(),
        Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse)
    );
    Ok(kms || head.sse_customer_algorithm().is_some())
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
