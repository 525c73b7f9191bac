//! The sync loop: merge the listings, decide per key, copy with bounded
//! concurrency, then (only if every copy succeeded) delete.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::copy::{Copier, CopyOutcome};
use super::guard::{self, DeleteCount};
use super::list::{Entry, Merge, Pair};
use super::location::escape_key;
use super::{verify, KeyFailure, S3Error, S3Location, SyncEvent, SyncOptions, SyncReport};
use crate::aws::sdk_failure;
use crate::progress::Progress;

/// Keys per DeleteObjects request (the S3 maximum).
const DELETE_BATCH: usize = 1000;

/// Makes `destination` hold what `source` holds, like `aws s3 sync`.
///
/// A source key is copied (server-side) when the destination lacks it, when
/// the sizes differ, or (unless [`SyncOptions::size_only`]) when the source's
/// LastModified is newer. With [`SyncOptions::delete`], destination keys the
/// source lacks are deleted, but only after every copy succeeded, and only
/// if the [guard](super::DeleteRefusal) agrees: unless
/// [`SyncOptions::force_delete`], a sync that would delete every destination
/// key from an empty source listing, or more than half of them and at least
/// [`DELETE_GUARD_MIN`](super::DELETE_GUARD_MIN), stops with
/// [`S3Error::DeleteRefused`] before it copies or deletes anything (both
/// sides are listed once more for that count). Filters
/// apply to both sides. With [`SyncOptions::dry_run`] nothing changes and
/// [`SyncEvent::WouldCopy`]/[`SyncEvent::WouldDelete`] say what would.
///
/// A key that fails (after retries) is reported in
/// [`SyncReport::failures`] with its bucket and key, and the rest of the
/// run goes on; check [`SyncReport::is_success`]. An `Err` means the run
/// as a whole could not go on: a bad option, a listing that failed or was
/// out of order, or cancellation. On cancellation, copies in flight finish
/// (multipart copies stop between parts and are aborted) and nothing is
/// deleted; running again resumes, since copied keys are then skipped.
///
/// Memory stays flat in the number of keys: listings stream through
/// bounded channels and at most [`SyncOptions::concurrency`] copies are in
/// flight. Only the keys to delete are held until the copies are done.
///
/// Must be called within a tokio runtime (the listings run on spawned tasks).
pub async fn sync(
    source: &S3Location,
    destination: &S3Location,
    options: &SyncOptions,
    progress: &impl Progress<SyncEvent>,
    cancel: CancellationToken,
) -> Result<SyncReport, S3Error> {
    let started = Instant::now();
    options.validate()?;
    check_no_overlap(source, destination)?;
    let (source_client, destination_client) = options.clients().await?;
    let guarded = guard::applies(options);
    if guarded && !options.dry_run {
        guard::check_before_sync(
            (&source_client, source),
            (&destination_client, destination),
            &options.filters,
            &cancel,
        )
        .await?;
    }
    let copier = Copier {
        source_client: &source_client,
        destination_client: &destination_client,
        source,
        destination,
        options,
        parts: Semaphore::new(options.concurrency),
        cancel: &cancel,
    };
    let mut report = SyncReport {
        dry_run: options.dry_run,
        ..SyncReport::default()
    };
    let mut merge = Merge::start(
        (&source_client, source),
        (&destination_client, destination),
        &options.filters,
    );
    let mut in_flight = FuturesUnordered::new();
    let mut to_delete: Vec<String> = Vec::new();
    let mut stopped: Option<S3Error> = None;
    let mut listed_all = false;
    let mut counted = DeleteCount::default();
    let listing_events = CountingProgress {
        inner: progress,
        objects: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    };
    loop {
        let listing = !listed_all && stopped.is_none();
        if !listing && in_flight.is_empty() {
            break;
        }
        let room = in_flight.len() < options.concurrency;
        tokio::select! {
            biased;
            () = cancel.cancelled(), if stopped.is_none() => {
                stopped = Some(S3Error::Cancelled {
                    source_location: source.to_string(),
                    destination: destination.to_string(),
                });
            }
            Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                record_copy(&mut report, outcome, source, destination, progress);
            }
            next = merge.next(&listing_events), if room && listing => {
                match next {
                    Err(e) => stopped = Some(e),
                    Ok(None) => listed_all = true,
                    Ok(Some(pair)) => match plan(counted.add(pair), options) {
                        Plan::Copy(entry, _) if options.dry_run => {
                            report.copied += 1;
                            report.bytes += entry.size;
                            progress.event(&SyncEvent::WouldCopy {
                                from: source.url(&entry.key),
                                to: destination.url(&entry.key),
                                bytes: entry.size,
                            });
                        }
                        Plan::Copy(entry, overwrite) => {
                            in_flight.push(copier.copy(entry, overwrite, progress));
                        }
                        Plan::Skip(entry) => {
                            report.skipped += 1;
                            progress.event(&SyncEvent::Skipped {
                                key: entry.key,
                                bytes: entry.size,
                            });
                        }
                        Plan::Delete(entry) if options.dry_run => {
                            report.deleted += 1;
                            progress.event(&SyncEvent::WouldDelete {
                                target: destination.url(&entry.key),
                            });
                        }
                        Plan::Delete(entry) => to_delete.push(entry.key),
                        Plan::Nothing => {}
                    },
                }
            }
        }
    }
    drop(in_flight);
    report.source_objects = listing_events.objects.load(Ordering::Relaxed);
    report.source_bytes = listing_events.bytes.load(Ordering::Relaxed);
    if let Some(e) = stopped {
        return Err(e);
    }
    // Checked again on this pass's own listing: a bucket may have changed
    // since the first count. Copies are made by now, deletions are not
    // (after a failed copy they are withheld below, and the report says so).
    let refusal = guarded
        .then(|| counted.refusal(source, destination, &options.filters))
        .flatten();
    if options.dry_run {
        report.delete_refusal = refusal;
    } else if let Some(refusal) = refusal.filter(|_| report.failed == 0) {
        return Err(S3Error::DeleteRefused(refusal));
    }
    if !to_delete.is_empty() {
        if report.failed > 0 {
            report.deletes_withheld = to_delete.len() as u64;
            progress.event(&SyncEvent::DeletesWithheld {
                count: report.deletes_withheld,
            });
        } else {
            delete_keys(
                &destination_client,
                destination,
                to_delete,
                &mut report,
                progress,
                &cancel,
            )
            .await?;
        }
    }
    if options.verify {
        let result = verify::compare(
            (&source_client, source),
            (&destination_client, destination),
            options,
            progress,
            &cancel,
        )
        .await?;
        report.verify = Some(result);
    }
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(report)
}

/// Passes events through, remembering the source listing totals.
struct CountingProgress<'a, P> {
    inner: &'a P,
    objects: AtomicU64,
    bytes: AtomicU64,
}

impl<P: Progress<SyncEvent>> Progress<SyncEvent> for CountingProgress<'_, P> {
    fn event(&self, event: &SyncEvent) {
        if let SyncEvent::SourceListed { objects, bytes, .. } = event {
            self.objects.store(*objects, Ordering::Relaxed);
            self.bytes.store(*bytes, Ordering::Relaxed);
        }
        self.inner.event(event);
    }
}

/// What to do with one key.
enum Plan {
    Copy(Entry, bool),
    Skip(Entry),
    Delete(Entry),
    Nothing,
}

fn plan(pair: Pair, options: &SyncOptions) -> Plan {
    match pair {
        Pair::SourceOnly(s) => Plan::Copy(s, false),
        Pair::Both(s, d) => {
            let newer = !options.size_only && s.modified > d.modified;
            if s.size != d.size || newer {
                Plan::Copy(s, true)
            } else {
                Plan::Skip(s)
            }
        }
        Pair::DestinationOnly(d) if options.delete => Plan::Delete(d),
        Pair::DestinationOnly(_) => Plan::Nothing,
    }
}

fn record_copy(
    report: &mut SyncReport,
    outcome: CopyOutcome,
    source: &S3Location,
    destination: &S3Location,
    progress: &impl Progress<SyncEvent>,
) {
    let CopyOutcome { entry, result } = outcome;
    match result {
        Ok(multipart) => {
            report.copied += 1;
            report.bytes += entry.size;
            report.multipart += u64::from(multipart);
            progress.event(&SyncEvent::Copied {
                key: entry.key,
                bytes: entry.size,
                multipart,
            });
        }
        Err(reason) => {
            // Name the source object: that is the one the user recognises;
            // the reason says which request failed.
            let failure = KeyFailure {
                bucket: source.bucket().to_string(),
                key: source.key(&entry.key),
                reason: format!(
                    "copy to {} failed: {reason}",
                    escape_key(&destination.url(&entry.key))
                ),
            };
            report.failed += 1;
            progress.event(&SyncEvent::Failed {
                bucket: failure.bucket.clone(),
                key: failure.key.clone(),
                reason: failure.reason.clone(),
            });
            report.failures.push(failure);
        }
    }
}

async fn delete_keys(
    client: &aws_sdk_s3::Client,
    destination: &S3Location,
    keys: Vec<String>,
    report: &mut SyncReport,
    progress: &impl Progress<SyncEvent>,
    cancel: &CancellationToken,
) -> Result<(), S3Error> {
    for batch in keys.chunks(DELETE_BATCH) {
        if cancel.is_cancelled() {
            return Err(S3Error::Cancelled {
                source_location: String::new(),
                destination: destination.to_string(),
            });
        }
        let objects: Vec<ObjectIdentifier> = batch
            .iter()
            .map(|k| {
                ObjectIdentifier::builder()
                    .key(destination.key(k))
                    .build()
                    .expect("key is set")
            })
            .collect();
        let request = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .expect("objects are set");
        let failed_keys: Vec<(String, String)> = match client
            .delete_objects()
            .bucket(destination.bucket())
            .delete(request)
            .send()
            .await
        {
            Ok(out) => out
                .errors()
                .iter()
                .map(|e| {
                    let reason = format!(
                        "DeleteObjects: {}: {}",
                        e.code().unwrap_or("error"),
                        e.message().unwrap_or("")
                    );
                    (e.key().unwrap_or_default().to_string(), reason)
                })
                .collect(),
            Err(e) => {
                let reason = format!("DeleteObjects: {}", sdk_failure(&e).reason);
                batch
                    .iter()
                    .map(|k| (destination.key(k), reason.clone()))
                    .collect()
            }
        };
        for key in batch {
            let full = destination.key(key);
            if let Some((_, reason)) = failed_keys.iter().find(|(k, _)| *k == full) {
                report.failed += 1;
                let failure = KeyFailure {
                    bucket: destination.bucket().to_string(),
                    key: full,
                    reason: reason.clone(),
                };
                progress.event(&SyncEvent::Failed {
                    bucket: failure.bucket.clone(),
                    key: failure.key.clone(),
                    reason: failure.reason.clone(),
                });
                report.failures.push(failure);
            } else {
                report.deleted += 1;
                progress.event(&SyncEvent::Deleted { key: key.clone() });
            }
        }
    }
    Ok(())
}

/// Refuses a source and destination in the same bucket where one prefix
/// contains the other: copies would land in the listing being read.
fn check_no_overlap(source: &S3Location, destination: &S3Location) -> Result<(), S3Error> {
    if source.bucket() == destination.bucket()
        && (source.prefix().starts_with(destination.prefix())
            || destination.prefix().starts_with(source.prefix()))
    {
        return Err(S3Error::InvalidOption {
            option: "locations",
            reason: format!(
                "{source} and {destination} overlap; sync between disjoint prefixes or buckets"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, size: u64, secs: i64) -> Entry {
        Entry {
            key: key.into(),
            size,
            modified: (secs, 0),
            etag: None,
        }
    }

    #[test]
    fn decides_like_aws_s3_sync() {
        let o = SyncOptions::new();
        let both = |s, d| plan(Pair::Both(s, d), &o);
        assert!(matches!(
            plan(Pair::SourceOnly(entry("a", 1, 1)), &o),
            Plan::Copy(_, false)
        ));
        assert!(matches!(
            both(entry("a", 1, 5), entry("a", 1, 9)),
            Plan::Skip(_)
        ));
        assert!(matches!(
            both(entry("a", 1, 5), entry("a", 1, 5)),
            Plan::Skip(_)
        ));
        assert!(matches!(
            both(entry("a", 1, 9), entry("a", 1, 5)),
            Plan::Copy(_, true)
        ));
        assert!(matches!(
            both(entry("a", 2, 1), entry("a", 1, 5)),
            Plan::Copy(_, true)
        ));
        let size_only = SyncOptions::new().size_only(true);
        assert!(matches!(
            plan(Pair::Both(entry("a", 1, 9), entry("a", 1, 5)), &size_only),
            Plan::Skip(_)
        ));
        assert!(matches!(
            plan(Pair::DestinationOnly(entry("z", 1, 1)), &o),
            Plan::Nothing
        ));
        let delete = SyncOptions::new().delete(true);
        assert!(matches!(
            plan(Pair::DestinationOnly(entry("z", 1, 1)), &delete),
            Plan::Delete(_)
        ));
    }

    #[test]
    fn overlapping_locations_are_refused() {
        let l = |s: &str| s.parse::<S3Location>().unwrap();
        assert!(check_no_overlap(&l("s3://bkt"), &l("s3://bkt/backup")).is_err());
        assert!(check_no_overlap(&l("s3://bkt/a/b"), &l("s3://bkt/a")).is_err());
        assert!(check_no_overlap(&l("s3://bkt/a"), &l("s3://bkt/ab")).is_ok());
        assert!(check_no_overlap(&l("s3://bkt"), &l("s3://other")).is_ok());
    }
}
