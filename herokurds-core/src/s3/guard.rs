//! The `--delete` guard: a typo'd source prefix lists nothing, and a sync
//! with `--delete` would then empty the destination.
//!
//! Before anything changes, a sync with [`SyncOptions::delete`] counts the
//! keys in its scope (under both prefixes, after the filters) and refuses
//! with [`S3Error::DeleteRefused`] when
//! - the source lists no keys while the destination has some, or
//! - more than half of the destination's keys, and at least
//!   [`DELETE_GUARD_MIN`], would be deleted,
//!
//! unless [`SyncOptions::force_delete`] is set.
//!
//! Copies start while the listings are still being read, so the count is a
//! listing pass of its own (both sides at once, counting only: memory stays
//! flat), made before the sync lists again to copy. The sync counts again on
//! its own pass and checks once more before deleting, in case a bucket
//! changed in between. A dry run makes no extra pass: it reports what the
//! guard would say in [`SyncReport::delete_refusal`](super::SyncReport).

use std::fmt;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::list::{Merge, Pair};
use super::location::escape_key;
use super::{Filters, S3Error, S3Location, SyncOptions};
use crate::progress::NoProgress;

/// The guard refuses to delete more than half of the destination's keys
/// only from this many keys on: deleting 3 stale keys of 5 is ordinary.
pub const DELETE_GUARD_MIN: u64 = 100;

/// Why the `--delete` guard refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeleteRefusalReason {
    /// The source lists no keys while the destination has some.
    EmptySource,
    /// More than half of the destination's keys, and at least
    /// [`DELETE_GUARD_MIN`], would be deleted.
    MostOfDestination,
}

/// What the `--delete` guard refused, with the counts it saw. Its `Display`
/// names both locations, the number of keys that would be deleted, and the
/// flag that overrides it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeleteRefusal {
    /// The source location, `s3://bucket[/prefix]`.
    pub source: String,
    /// The destination location.
    pub destination: String,
    /// Which rule refused.
    pub reason: DeleteRefusalReason,
    /// Keys the source lists (after filters).
    pub source_keys: u64,
    /// Keys the destination lists (after filters).
    pub destination_keys: u64,
    /// Destination keys the source lacks: what `--delete` would delete.
    pub deletions: u64,
    /// Whether `--exclude`/`--include` rules narrowed the counts.
    pub filtered: bool,
}

impl fmt::Display for DeleteRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = escape_key(&self.source);
        let destination = escape_key(&self.destination);
        let filtered = if self.filtered {
            " after --exclude/--include"
        } else {
            ""
        };
        match self.reason {
            DeleteRefusalReason::EmptySource => write!(
                f,
                "refusing to delete all {} keys at {destination}: the source {source} lists \
                 no keys{filtered} (a mistyped bucket or prefix?)",
                self.deletions
            )?,
            DeleteRefusalReason::MostOfDestination => write!(
                f,
                "refusing to delete {} of the {} keys at {destination}: more than half of them \
                 (and at least {DELETE_GUARD_MIN}) are not at the source {source}, which lists {} \
                 keys{filtered}",
                self.deletions, self.destination_keys, self.source_keys
            )?,
        }
        write!(
            f,
            "; nothing was deleted. Check the source location, or pass --force-delete \
             (force_delete = true in the runbook's [[s3]]) to delete them"
        )
    }
}

/// Keys in a sync's scope, counted as the merged listings go by.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DeleteCount {
    source_keys: u64,
    destination_keys: u64,
    deletions: u64,
}

impl DeleteCount {
    /// Counts one merged key, and hands it on.
    pub(crate) fn add(&mut self, pair: Pair) -> Pair {
        match &pair {
            Pair::Both(..) => {
                self.source_keys += 1;
                self.destination_keys += 1;
            }
            Pair::SourceOnly(_) => self.source_keys += 1,
            Pair::DestinationOnly(_) => {
                self.destination_keys += 1;
                self.deletions += 1;
            }
        }
        pair
    }

    /// What the guard says about these counts: `None` when deleting is fine.
    pub(crate) fn refusal(
        &self,
        source: &S3Location,
        destination: &S3Location,
        filters: &Filters,
    ) -> Option<DeleteRefusal> {
        let reason = if self.deletions == 0 {
            return None;
        } else if self.source_keys == 0 {
            DeleteRefusalReason::EmptySource
        } else if self.deletions >= DELETE_GUARD_MIN
            && self.deletions.saturating_mul(2) > self.destination_keys
        {
            DeleteRefusalReason::MostOfDestination
        } else {
            return None;
        };
        Some(DeleteRefusal {
            source: source.to_string(),
            destination: destination.to_string(),
            reason,
            source_keys: self.source_keys,
            destination_keys: self.destination_keys,
            deletions: self.deletions,
            filtered: !filters.is_empty(),
        })
    }
}

/// Whether the guard applies to a sync with these options.
pub(crate) fn applies(options: &SyncOptions) -> bool {
    options.delete && !options.force_delete
}

/// Lists both sides once, counting only, and refuses before anything
/// changes when the guard says so.
pub(crate) async fn check_before_sync(
    source: (&aws_sdk_s3::Client, &S3Location),
    destination: (&aws_sdk_s3::Client, &S3Location),
    filters: &Filters,
    cancel: &CancellationToken,
) -> Result<(), S3Error> {
    let mut merge = Merge::start(source, destination, filters);
    let mut count = DeleteCount::default();
    loop {
        let next = tokio::select! {
            biased;
            () = cancel.cancelled() => {
                return Err(S3Error::Cancelled {
                    source_location: source.1.to_string(),
                    destination: destination.1.to_string(),
                })
            }
            next = merge.next(&NoProgress) => next?,
        };
        match next {
            Some(pair) => {
                count.add(pair);
            }
            None => break,
        }
    }
    tracing::debug!(?count, "--delete guard counted");
    match count.refusal(source.1, destination.1, filters) {
        Some(refusal) => Err(S3Error::DeleteRefused(refusal)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::list::Entry;

    fn pair(kind: &str) -> Pair {
        let e = || Entry {
            key: "k".into(),
            size: 1,
            modified: (0, 0),
            etag: None,
        };
        match kind {
            "both" => Pair::Both(e(), e()),
            "source" => Pair::SourceOnly(e()),
            _ => Pair::DestinationOnly(e()),
        }
    }

    fn refusal(both: u64, source_only: u64, destination_only: u64) -> Option<DeleteRefusal> {
        let mut count = DeleteCount::default();
        for (kind, n) in [
            ("both", both),
            ("source", source_only),
            ("dest", destination_only),
        ] {
            for _ in 0..n {
                count.add(pair(kind));
            }
        }
        let l = |s: &str| s.parse::<S3Location>().unwrap();
        count.refusal(&l("s3://old/uploads"), &l("s3://new"), &Filters::new())
    }

    #[test]
    fn refuses_an_empty_source_and_deleting_most_of_the_destination() {
        assert_eq!(refusal(0, 0, 0), None);
        assert_eq!(refusal(0, 5, 0), None);
        let empty = refusal(0, 0, 1).expect("an empty source refuses");
        assert_eq!(empty.reason, DeleteRefusalReason::EmptySource);
        assert_eq!((empty.deletions, empty.destination_keys), (1, 1));
        // 120 of 200 go: refused; 99 of 100, or exactly half of 200: allowed.
        let most = refusal(80, 3, 120).expect("120 of 200 refuses");
        assert_eq!(most.reason, DeleteRefusalReason::MostOfDestination);
        assert_eq!(
            (most.source_keys, most.destination_keys, most.deletions),
            (83, 200, 120)
        );
        assert_eq!(refusal(1, 0, 99), None);
        assert_eq!(refusal(100, 0, 100), None);
        assert!(refusal(99, 0, 100).is_some());
    }

    #[test]
    fn the_message_names_both_locations_the_count_and_the_flag() {
        let text = refusal(80, 0, 120).unwrap().to_string();
        for part in [
            "s3://old/uploads/",
            "s3://new",
            "120 of the 200",
            "--force-delete",
        ] {
            assert!(text.contains(part), "{part:?} not in {text}");
        }
        let text = refusal(0, 0, 7).unwrap().to_string();
        assert!(text.contains("all 7 keys at s3://new"), "{text}");
        assert!(text.contains("lists no keys"), "{text}");
    }
}
