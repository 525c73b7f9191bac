//! [`SyncOptions`]: what a sync decides, how hard it works, where it connects.

use std::fmt;
use std::str::FromStr;

use crate::aws::ClientOptions;

use super::{Filters, S3Error};

/// 1 MiB.
pub const MIB: u64 = 1024 * 1024;
/// 1 GiB.
pub const GIB: u64 = 1024 * MIB;
/// S3's smallest part (every part but the last).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part, and the largest object one CopyObject can copy.
pub const MAX_PART_SIZE: u64 = 5 * GIB;
/// S3's largest number of parts in one multipart upload.
pub const MAX_PARTS: u64 = 10_000;

/// A destination storage class (`--storage-class`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StorageClass(String);

/// The storage classes S3 accepts on a copy.
const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
    "OUTPOSTS",
    "SNOW",
    "EXPRESS_ONEZONE",
];

impl StorageClass {
    /// The S3 name (`STANDARD_IA`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for StorageClass {
    type Err = S3Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.to_ascii_uppercase();
        if STORAGE_CLASSES.contains(&upper.as_str()) {
            Ok(StorageClass(upper))
        } else {
            Err(S3Error::InvalidOption {
                option: "storage class",
                reason: format!("{s:?} is not one of {}", STORAGE_CLASSES.join(", ")),
            })
        }
    }
}

impl fmt::Display for StorageClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Server-side encryption of the copies (`--sse`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sse {
    /// SSE-S3, `AES256`.
    Aes256,
    /// SSE-KMS, `aws:kms`, with the account's default key or this one.
    Kms {
        /// A KMS key id or ARN; `None` for the AWS-managed `aws/s3` key.
        key_id: Option<String>,
    },
}

impl FromStr for Sse {
    type Err = S3Error;

    /// `AES256` or `aws:kms` (what `aws s3 --sse` accepts).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "AES256" | "aes256" => Ok(Sse::Aes256),
            "aws:kms" | "AWS:KMS" => Ok(Sse::Kms { key_id: None }),
            _ => Err(S3Error::InvalidOption {
                option: "sse",
                reason: format!("{s:?} is not AES256 or aws:kms"),
            }),
        }
    }
}

/// How to reach one side of a sync.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientSource {
    /// Build a client from these options (profile, region, endpoint).
    Options(ClientOptions),
    /// Use this client as it is.
    Client(aws_sdk_s3::Client),
}

impl Default for ClientSource {
    fn default() -> Self {
        ClientSource::Options(ClientOptions::default())
    }
}

impl ClientSource {
    /// The client (built from the options, or the one given) with at most
    /// `max_attempts` tries per request, backing off exponentially.
    ///
    /// `side` (`source` or `destination`) names it in errors.
    pub async fn client(
        &self,
        side: &'static str,
        max_attempts: u32,
    ) -> Result<aws_sdk_s3::Client, S3Error> {
        let client = match self {
            ClientSource::Options(o) => o
                .s3_client()
                .await
                .map_err(|cause| S3Error::Client { side, cause })?,
            ClientSource::Client(c) => c.clone(),
        };
        let retry = aws_sdk_s3::config::retry::RetryConfig::standard()
            .with_max_attempts(max_attempts.max(1));
        let config = client.config().to_builder().retry_config(retry).build();
        Ok(aws_sdk_s3::Client::from_conf(config))
    }
}

/// What a sync does and how. Built like `SyncOptions::new().delete(true)`.
///
/// Defaults: copy like `aws s3 sync` (missing, size differs, source newer),
/// no deletes, no filters, 64 requests in flight, CopyObject up to 5 GiB and
/// multipart UploadPartCopy with 64 MiB parts above, 8 attempts per request,
/// the default credential chain on both sides.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub(crate) size_only: bool,
    pub(crate) delete: bool,
    pub(crate) force_delete: bool,
    pub(crate) dry_run: bool,
    pub(crate) verify: bool,
    pub(crate) filters: Filters,
    pub(crate) concurrency: usize,
    pub(crate) multipart_threshold: u64,
    pub(crate) part_size: u64,
    pub(crate) storage_class: Option<StorageClass>,
    pub(crate) sse: Option<Sse>,
    pub(crate) max_attempts: u32,
    pub(crate) source: ClientSource,
    pub(crate) destination: ClientSource,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            size_only: false,
            delete: false,
            force_delete: false,
            dry_run: false,
            verify: false,
            filters: Filters::new(),
            concurrency: 64,
            multipart_threshold: MAX_PART_SIZE,
            part_size: 64 * MIB,
            storage_class: None,
            sse: None,
            max_attempts: 8,
            source: ClientSource::default(),
            destination: ClientSource::default(),
        }
    }
}

impl SyncOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Compare sizes only, not modification times (`--size-only`).
    pub fn size_only(mut self, yes: bool) -> Self {
        self.size_only = yes;
        self
    }

    /// Delete destination keys that the source does not have (`--delete`).
    /// Deletions run only after every copy succeeded.
    pub fn delete(mut self, yes: bool) -> Self {
        self.delete = yes;
        self
    }

    /// Delete even when the `--delete` guard would refuse
    /// (`--force-delete`): the source lists no keys while the destination
    /// has some (a typo'd prefix), or more than half of the destination's
    /// keys, and at least [`DELETE_GUARD_MIN`](super::DELETE_GUARD_MIN), would
    /// go. Without it such a sync stops with [`S3Error::DeleteRefused`]
    /// before any copy or delete. Only matters with [`delete`](Self::delete).
    pub fn force_delete(mut self, yes: bool) -> Self {
        self.force_delete = yes;
        self
    }

    /// Report what would be copied and deleted, change nothing (`--dryrun`).
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }

    /// After the sync, check every source key at the destination (`--verify`).
    pub fn verify(mut self, yes: bool) -> Self {
        self.verify = yes;
        self
    }

    /// The include/exclude rules.
    pub fn filters(mut self, filters: Filters) -> Self {
        self.filters = filters;
        self
    }

    /// Requests in flight at once (at least 1; `--concurrency`).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Objects larger than this are copied in parts (`--multipart-threshold`);
    /// at most 5 GiB, the CopyObject limit.
    pub fn multipart_threshold(mut self, bytes: u64) -> Self {
        self.multipart_threshold = bytes;
        self
    }

    /// The size of each UploadPartCopy part (5 MiB to 5 GiB; raised when an
    /// object would need more than 10,000 parts).
    pub fn part_size(mut self, bytes: u64) -> Self {
        self.part_size = bytes;
        self
    }

    /// The destination storage class (`--storage-class`).
    pub fn storage_class(mut self, class: Option<StorageClass>) -> Self {
        self.storage_class = class;
        self
    }

    /// Server-side encryption of the copies (`--sse`).
    pub fn sse(mut self, sse: Option<Sse>) -> Self {
        self.sse = sse;
        self
    }

    /// Attempts per request before a key is reported failed (at least 1).
    /// Throttling (503 SlowDown), 5xx and network errors are retried with
    /// exponential backoff and jitter.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// How to reach the source bucket.
    pub fn source(mut self, source: ClientSource) -> Self {
        self.source = source;
        self
    }

    /// How to reach the destination bucket.
    pub fn destination(mut self, destination: ClientSource) -> Self {
        self.destination = destination;
        self
    }

    /// Whether sizes alone decide.
    pub fn get_size_only(&self) -> bool {
        self.size_only
    }

    /// Whether extra destination keys are deleted.
    pub fn get_delete(&self) -> bool {
        self.delete
    }

    /// Whether the `--delete` guard is overridden.
    pub fn get_force_delete(&self) -> bool {
        self.force_delete
    }

    /// Whether nothing is changed.
    pub fn get_dry_run(&self) -> bool {
        self.dry_run
    }

    /// Whether a verify pass follows.
    pub fn get_verify(&self) -> bool {
        self.verify
    }

    /// The include/exclude rules.
    pub fn get_filters(&self) -> &Filters {
        &self.filters
    }

    /// Requests in flight at once.
    pub fn get_concurrency(&self) -> usize {
        self.concurrency
    }

    /// The multipart threshold in bytes.
    pub fn get_multipart_threshold(&self) -> u64 {
        self.multipart_threshold
    }

    /// The part size in bytes.
    pub fn get_part_size(&self) -> u64 {
        self.part_size
    }

    /// The destination storage class.
    pub fn get_storage_class(&self) -> Option<&StorageClass> {
        self.storage_class.as_ref()
    }

    /// The server-side encryption of the copies.
    pub fn get_sse(&self) -> Option<&Sse> {
        self.sse.as_ref()
    }

    /// Attempts per request.
    pub fn get_max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The source and destination clients, with the retry policy applied.
    pub(crate) async fn clients(
        &self,
    ) -> Result<(aws_sdk_s3::Client, aws_sdk_s3::Client), S3Error> {
        Ok((
            self.source.client("source", self.max_attempts).await?,
            self.destination
                .client("destination", self.max_attempts)
                .await?,
        ))
    }

    /// Checks the ranges S3 imposes.
    pub fn validate(&self) -> Result<(), S3Error> {
        if self.multipart_threshold == 0 || self.multipart_threshold > MAX_PART_SIZE {
            return Err(S3Error::InvalidOption {
                option: "multipart threshold",
                reason: format!(
                    "{} bytes; it must be between 1 byte and 5 GiB (the CopyObject limit)",
                    self.multipart_threshold
                ),
            });
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(S3Error::InvalidOption {
                option: "part size",
                reason: format!("{} bytes; S3 parts are 5 MiB to 5 GiB", self.part_size),
            });
        }
        Ok(())
    }

    /// The part size used for an object of `size` bytes: the configured one,
    /// raised (to a whole MiB) so that no more than 10,000 parts are needed.
    pub fn part_size_for(&self, size: u64) -> u64 {
        let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
        self.part_size.max(needed).min(MAX_PART_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_grows_past_ten_thousand_parts() {
        let o = SyncOptions::new().part_size(5 * MIB);
        assert_eq!(o.part_size_for(10 * MIB), 5 * MIB);
        let huge = 5 * MIB * MAX_PARTS + 1;
        let p = o.part_size_for(huge);
        assert!(huge.div_ceil(p) <= MAX_PARTS);
        assert_eq!(p % MIB, 0);
    }

    #[test]
    fn validate_rejects_sizes_s3_refuses() {
        assert!(SyncOptions::new().validate().is_ok());
        assert!(SyncOptions::new().part_size(MIB).validate().is_err());
        assert!(SyncOptions::new()
            .multipart_threshold(6 * GIB)
            .validate()
            .is_err());
    }

    #[test]
    fn storage_class_and_sse_parse() {
        assert_eq!(
            "standard_ia".parse::<StorageClass>().unwrap().as_str(),
            "STANDARD_IA"
        );
        assert!("FAST".parse::<StorageClass>().is_err());
        assert_eq!("AES256".parse::<Sse>().unwrap(), Sse::Aes256);
        assert_eq!("aws:kms".parse::<Sse>().unwrap(), Sse::Kms { key_id: None });
    }
}
