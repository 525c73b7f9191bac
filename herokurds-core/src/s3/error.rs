//! What can stop a sync as a whole. A key that fails to copy is not an
//! error of the run: it is a [`KeyFailure`](super::KeyFailure) in the report.

/// Errors that stop a sync or a verify before it is done.
///
/// Every variant names its bucket (and prefix or key) and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3Error {
    /// A location is not `s3://bucket[/prefix]`.
    #[error("invalid S3 location {input:?}: {reason} (expected s3://bucket[/prefix])")]
    InvalidLocation {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An `--exclude`/`--include` pattern is not a valid glob.
    #[error("invalid filter pattern {pattern:?}: {reason}")]
    InvalidFilter {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An option is out of range.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The AWS configuration of one side is unusable (profile, region).
    #[error("cannot reach the {side}: {cause}")]
    Client {
        /// `source` or `destination`.
        side: &'static str,
        /// What is wrong.
        cause: crate::aws::AwsError,
    },
    /// Listing a bucket failed (after the SDK's retries).
    #[error("could not list s3://{bucket}/{}: {reason}", super::escape_key(.prefix))]
    List {
        /// The bucket.
        bucket: String,
        /// The prefix listed.
        prefix: String,
        /// What the service or the client said.
        reason: String,
        /// Whether running again may help.
        retryable: bool,
    },
    /// No credentials to list a bucket: none in the environment, the
    /// profile, or the instance metadata.
    #[error(
        "cannot list s3://{bucket}/{}: no AWS credentials found (looked in {looked_in})",
        super::escape_key(.prefix)
    )]
    NoCredentials {
        /// The bucket.
        bucket: String,
        /// The prefix listed.
        prefix: String,
        /// Where the credentials chain looked.
        looked_in: String,
    },
    /// A listing was not in the order S3 guarantees (strictly increasing
    /// UTF-8 byte order), or returned a key outside the prefix or one that
    /// could not be decoded. The sync relies on that order, so it stops
    /// rather than copy or delete the wrong keys.
    #[error("listing of s3://{bucket} is unusable at key {key:?}: {reason}")]
    BadListing {
        /// The bucket.
        bucket: String,
        /// The offending key (as received).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// `--delete` would empty the destination (the source lists no keys)
    /// or delete most of it; nothing was deleted. Override with
    /// [`SyncOptions::force_delete`](super::SyncOptions::force_delete).
    #[error("{0}")]
    DeleteRefused(super::DeleteRefusal),
    /// The run was cancelled; work in flight was finished or aborted, no
    /// deletion was made after the cancellation. Running again resumes: keys
    /// already copied are skipped.
    #[error("sync from {source_location} to {destination} cancelled; run it again to finish")]
    Cancelled {
        /// The source location.
        source_location: String,
        /// The destination location.
        destination: String,
    },
}

impl S3Error {
    /// Whether running again may succeed (throttling, 5xx, network).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            S3Error::List {
                retryable: true,
                ..
            }
        )
    }
}
