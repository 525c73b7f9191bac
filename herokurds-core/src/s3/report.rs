//! What a sync tells its caller while it runs ([`SyncEvent`]) and when it
//! is done ([`SyncReport`], [`VerifyReport`]).

use serde::Serialize;

/// Progress of a sync or verify. Keys are relative to the locations unless
/// the variant says otherwise.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SyncEvent {
    /// Another page of the source was listed; running totals of everything
    /// listed so far (before filters). `done` on the last page.
    SourceListed {
        /// Objects listed so far.
        objects: u64,
        /// Their bytes.
        bytes: u64,
        /// Whether the listing is complete.
        done: bool,
    },
    /// An object was copied (for a multipart copy, its parts were reported
    /// by [`SyncEvent::PartCopied`] first).
    Copied {
        /// The key.
        key: String,
        /// Its size.
        bytes: u64,
        /// Whether it was copied in parts.
        multipart: bool,
    },
    /// One part of a multipart copy was copied.
    PartCopied {
        /// The key.
        key: String,
        /// The part number, from 1.
        part: u32,
        /// The part's size.
        bytes: u64,
    },
    /// The destination already had the object.
    Skipped {
        /// The key.
        key: String,
        /// Its size.
        bytes: u64,
    },
    /// A destination key absent from the source was deleted.
    Deleted {
        /// The key.
        key: String,
    },
    /// An object could not be copied or deleted; the run goes on.
    Failed {
        /// The bucket where it failed.
        bucket: String,
        /// The full key in that bucket.
        key: String,
        /// What went wrong.
        reason: String,
    },
    /// Dry run: this copy would be made (`from`/`to` are `s3://` URLs).
    WouldCopy {
        /// The source object.
        from: String,
        /// The destination object.
        to: String,
        /// Its size.
        bytes: u64,
    },
    /// Dry run: this destination object would be deleted.
    WouldDelete {
        /// The `s3://` URL of the object.
        target: String,
    },
    /// `--delete` was asked but some copies failed, so nothing was deleted.
    DeletesWithheld {
        /// How many deletions were held back.
        count: u64,
    },
    /// The verify pass found a difference.
    VerifyDifference(VerifyDifference),
    /// The verify pass is done.
    Verified {
        /// Source keys checked.
        checked: u64,
        /// Differences found.
        differences: u64,
    },
}

/// A key that could not be synced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyFailure {
    /// The bucket of the failed request.
    pub bucket: String,
    /// The full key in that bucket.
    pub key: String,
    /// What went wrong (the service's error code and message).
    pub reason: String,
}

/// What a sync did. With a dry run the counts are what it would have done.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct SyncReport {
    /// Objects copied.
    pub copied: u64,
    /// Objects the destination already had.
    pub skipped: u64,
    /// Destination objects deleted.
    pub deleted: u64,
    /// Objects that failed to copy or delete.
    pub failed: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Objects copied in parts.
    pub multipart: u64,
    /// Objects listed at the source (before filters).
    pub source_objects: u64,
    /// Their bytes.
    pub source_bytes: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Deletions not made because some copies failed.
    pub deletes_withheld: u64,
    /// Dry run: what the `--delete` guard would refuse (a real run stops
    /// with [`S3Error::DeleteRefused`](super::S3Error::DeleteRefused)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_refusal: Option<super::DeleteRefusal>,
    /// Wall-clock time of the run, in milliseconds.
    pub elapsed_ms: u64,
    /// Every failed key, with its bucket and the reason.
    pub failures: Vec<KeyFailure>,
    /// The verify pass, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyReport>,
}

impl SyncReport {
    /// No failures, no deletion the guard would refuse (dry run), and the
    /// verify pass (if any) found no difference.
    pub fn is_success(&self) -> bool {
        self.failed == 0
            && self.delete_refusal.is_none()
            && self.verify.as_ref().is_none_or(VerifyReport::is_ok)
    }
}

/// How a destination object differs from its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DifferenceKind {
    /// The destination does not have the key.
    Missing,
    /// The sizes differ.
    Size,
    /// Both are single-part objects, neither is encrypted with SSE-KMS or
    /// SSE-C, and their ETags (MD5s) differ.
    Etag,
}

/// One difference found by a verify pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyDifference {
    /// The key, relative to the locations.
    pub key: String,
    /// What differs.
    pub kind: DifferenceKind,
    /// The source object's size.
    pub source_size: u64,
    /// The destination object's size, when it exists.
    pub destination_size: Option<u64>,
}

/// The result of comparing every source key with the destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Source keys checked (after filters).
    pub checked: u64,
    /// Keys found equal (by ETag, or by size when ETags cannot be
    /// compared).
    pub matched: u64,
    /// Keys missing at the destination.
    pub missing: u64,
    /// Keys whose sizes differ.
    pub size_mismatch: u64,
    /// Keys whose single-part ETags differ.
    pub etag_mismatch: u64,
    /// Keys compared by content: both single-part, and either their ETags
    /// are equal or neither side is encrypted with SSE-KMS or SSE-C.
    pub etag_compared: u64,
    /// Keys of equal size whose single-part ETags differ because one side
    /// is encrypted with SSE-KMS (`aws:kms`, `aws:kms:dsse`) or SSE-C, so
    /// its ETag is not an MD5: accepted on size alone (counted in
    /// [`VerifyReport::matched`]), their content was not compared.
    pub size_only: u64,
    /// Destination keys the source does not have (not a difference).
    pub extra: u64,
    /// The first differences, at most [`VerifyReport::MAX_LISTED`].
    pub differences: Vec<VerifyDifference>,
}

impl VerifyReport {
    /// How many differences are kept in [`VerifyReport::differences`].
    pub const MAX_LISTED: usize = 1000;

    /// No key missing or different.
    pub fn is_ok(&self) -> bool {
        self.missing == 0 && self.size_mismatch == 0 && self.etag_mismatch == 0
    }

    /// Missing plus different keys.
    pub fn difference_count(&self) -> u64 {
        self.missing + self.size_mismatch + self.etag_mismatch
    }
}
