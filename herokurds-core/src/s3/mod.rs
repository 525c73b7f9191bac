//! Server-side S3 bucket sync: the runbook's `aws s3 sync s3://old s3://new`,
//! done faster and without losing anything.
//!
//! Heroku apps keep their uploads in S3; moving to AWS means moving them to
//! a new bucket, usually in another account. [`sync`] does what `aws s3
//! sync` does, with these differences:
//! - every copy is server-side (CopyObject, or multipart UploadPartCopy
//!   above [`SyncOptions::multipart_threshold`]), with up to 64 requests in
//!   flight and retries of throttling and 5xx errors;
//! - metadata, content headers and tags survive both copy paths (the aws
//!   CLI drops some of them on multipart copies);
//! - both listings stream and merge in key order, so memory stays flat on
//!   millions of keys;
//! - `--delete` refuses, before anything changes, to empty the destination
//!   from an empty source listing or to delete most of it (the `guard`),
//!   unless [`SyncOptions::force_delete`];
//! - `--delete` never runs after a failed copy, a failing key is reported
//!   by bucket and key while the rest finish, and [`verify`] proves the
//!   result.
//!
//! Credentials: each side has its own [`ClientSource`] (profile, region,
//! endpoint). The source's is used to list it and to read tags and headers
//! (HeadObject, GetObjectTagging); every copy is a request to the
//! destination, so across accounts the destination's credentials need
//! `s3:GetObject` and `s3:GetObjectTagging` on the source bucket (a bucket
//! policy). Not copied, like `aws s3 sync`: object ACLs (buckets created
//! since 2023 ignore them; grant public reads with a bucket policy), object
//! lock settings, and older versions; SSE-C sources are not supported.
//!
//! ```no_run
//! # async fn demo() -> Result<(), herokurds_core::s3::S3Error> {
//! use herokurds_core::progress::NoProgress;
//! use herokurds_core::s3::{sync, S3Location, SyncOptions};
//! use tokio_util::sync::CancellationToken;
//!
//! let from: S3Location = "s3://odl-micromasters-production".parse()?;
//! let to: S3Location = "s3://ol-micromasters-app-production".parse()?;
//! let report = sync(&from, &to, &SyncOptions::new(), &NoProgress, CancellationToken::new()).await?;
//! assert!(report.is_success(), "{:?}", report.failures);
//! # Ok(()) }
//! ```
//!
//! Layout: [`location`](S3Location) parsing and key encodings, filters,
//! options, the streaming listings and their merge (`list`), one object's
//! copy (`copy`), the loop (`sync`), the check (`verify`), and what is
//! reported (`report`).

mod copy;
mod error;
mod filter;
mod guard;
mod list;
mod location;
mod options;
mod report;
mod sync;
mod verify;

pub use error::S3Error;
pub use filter::{FilterKind, Filters};
pub use guard::{DeleteRefusal, DeleteRefusalReason, DELETE_GUARD_MIN};
pub use location::{escape_key, S3Location};
pub use options::{
    ClientSource, Sse, StorageClass, SyncOptions, GIB, MAX_PARTS, MAX_PART_SIZE, MIB, MIN_PART_SIZE,
};
pub use report::{
    DifferenceKind, KeyFailure, SyncEvent, SyncReport, VerifyDifference, VerifyReport,
};
pub use sync::sync;
pub use verify::verify;
