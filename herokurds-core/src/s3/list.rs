//! Streaming listings and their merge.
//!
//! Each side is listed by its own task with paginated ListObjectsV2
//! (`encoding-type=url`, so any key survives the XML), one page at a time
//! into a channel of two pages: memory holds a few thousand entries whatever
//! the bucket size. S3 returns keys in strictly increasing UTF-8 byte order,
//! so the two listings merge like two sorted files: each key is seen once,
//! as present on both sides, on the source only, or on the destination only.
//! The order is checked, not trusted: a listing out of order stops the run
//! rather than copy or delete the wrong keys.

use std::cmp::Ordering;
use std::sync::Arc;

use aws_sdk_s3::types::EncodingType;
use tokio::sync::mpsc;

use super::location::decode_listed_key;
use super::{Filters, S3Error, S3Location, SyncEvent};
use crate::aws::sdk_failure;
use crate::progress::Progress;

/// Pages buffered per side.
const PAGES_AHEAD: usize = 2;

/// One listed object, its key relative to the location.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) size: u64,
    /// LastModified as (seconds, nanoseconds) since the epoch.
    pub(crate) modified: (i64, u32),
    pub(crate) etag: Option<String>,
}

impl Entry {
    /// Whether the ETag is a plain MD5 (single-part upload or copy).
    pub(crate) fn single_part_etag(&self) -> Option<&str> {
        self.etag.as_deref().filter(|e| !e.contains('-'))
    }
}

/// A page of entries and the running totals of everything listed so far
/// (before filters).
struct Page {
    entries: Vec<Entry>,
    objects: u64,
    bytes: u64,
    last: bool,
}

/// The receiving end of one side's listing.
pub(crate) struct Listing {
    rx: mpsc::Receiver<Result<Page, S3Error>>,
    page: std::vec::IntoIter<Entry>,
    head: Option<Entry>,
    finished: bool,
    is_source: bool,
}

impl Listing {
    /// Starts listing `location` on a background task. Dropping the
    /// `Listing` stops the task after its current request.
    pub(crate) fn start(
        client: aws_sdk_s3::Client,
        location: S3Location,
        filters: Arc<Filters>,
        is_source: bool,
    ) -> Listing {
        let (tx, rx) = mpsc::channel(PAGES_AHEAD);
        tokio::spawn(list_pages(client, location, filters, tx));
        Listing {
            rx,
            page: Vec::new().into_iter(),
            head: None,
            finished: false,
            is_source,
        }
    }

    /// Makes `head` the next entry, if any. Cancel-safe: a page received is
    /// stored before the next await.
    async fn fill(&mut self, progress: &impl Progress<SyncEvent>) -> Result<(), S3Error> {
        while self.head.is_none() {
            if let Some(e) = self.page.next() {
                self.head = Some(e);
                break;
            }
            if self.finished {
                break;
            }
            match self.rx.recv().await {
                Some(Ok(page)) => {
                    if self.is_source {
                        progress.event(&SyncEvent::SourceListed {
                            objects: page.objects,
                            bytes: page.bytes,
                            done: page.last,
                        });
                    }
                    self.finished = page.last;
                    self.page = page.entries.into_iter();
                }
                Some(Err(e)) => {
                    self.finished = true;
                    return Err(e);
                }
                None => {
                    // The task ended without a last page: it panicked.
                    self.finished = true;
                    return Err(S3Error::BadListing {
                        bucket: String::new(),
                        key: String::new(),
                        reason: "the listing task stopped unexpectedly".into(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A key seen on one side or both.
#[derive(Debug)]
pub(crate) enum Pair {
    Both(Entry, Entry),
    SourceOnly(Entry),
    DestinationOnly(Entry),
}

/// The two listings merged by key.
pub(crate) struct Merge {
    source: Listing,
    destination: Listing,
}

impl Merge {
    /// Starts listing both sides concurrently.
    pub(crate) fn start(
        source: (&aws_sdk_s3::Client, &S3Location),
        destination: (&aws_sdk_s3::Client, &S3Location),
        filters: &Filters,
    ) -> Merge {
        let filters = Arc::new(filters.clone());
        Merge {
            source: Listing::start(source.0.clone(), source.1.clone(), filters.clone(), true),
            destination: Listing::start(
                destination.0.clone(),
                destination.1.clone(),
                filters,
                false,
            ),
        }
    }

    /// The next key in order, `None` when both listings are exhausted.
    /// Cancel-safe.
    pub(crate) async fn next(
        &mut self,
        progress: &impl Progress<SyncEvent>,
    ) -> Result<Option<Pair>, S3Error> {
        self.source.fill(progress).await?;
        self.destination.fill(progress).await?;
        let order = match (&self.source.head, &self.destination.head) {
            (None, None) => return Ok(None),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(s), Some(d)) => s.key.as_bytes().cmp(d.key.as_bytes()),
        };
        let pair = match order {
            Ordering::Less => Pair::SourceOnly(self.source.head.take().expect("checked")),
            Ordering::Greater => {
                Pair::DestinationOnly(self.destination.head.take().expect("checked"))
            }
            Ordering::Equal => Pair::Both(
                self.source.head.take().expect("checked"),
                self.destination.head.take().expect("checked"),
            ),
        };
        Ok(Some(pair))
    }
}

/// Lists `location` page by page into `tx` until done, an error, or the
/// receiver is dropped.
async fn list_pages(
    client: aws_sdk_s3::Client,
    location: S3Location,
    filters: Arc<Filters>,
    tx: mpsc::Sender<Result<Page, S3Error>>,
) {
    let mut token: Option<String> = None;
    let mut previous: Option<String> = None;
    let (mut objects, mut bytes) = (0u64, 0u64);
    loop {
        let result = client
            .list_objects_v2()
            .bucket(location.bucket())
            .prefix(location.prefix())
            .encoding_type(EncodingType::Url)
            .set_continuation_token(token.take())
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(err) => {
                let failure = sdk_failure(&err);
                let error = if failure.no_credentials {
                    S3Error::NoCredentials {
                        bucket: location.bucket().to_string(),
                        prefix: location.prefix().to_string(),
                        looked_in: crate::aws::CREDENTIALS_LOOKED_IN.to_string(),
                    }
                } else {
                    S3Error::List {
                        bucket: location.bucket().to_string(),
                        prefix: location.prefix().to_string(),
                        reason: failure.reason,
                        retryable: failure.retryable,
                    }
                };
                let _ = tx.send(Err(error)).await;
                return;
            }
        };
        let encoded = out.encoding_type() == Some(&EncodingType::Url);
        let mut entries = Vec::with_capacity(out.contents().len());
        let mut page = || -> Result<(), S3Error> {
            for object in out.contents() {
                let raw = object.key().unwrap_or_default();
                let bad = |reason: String| S3Error::BadListing {
                    bucket: location.bucket().to_string(),
                    key: raw.to_string(),
                    reason,
                };
                let key = if encoded {
                    decode_listed_key(raw)
                        .ok_or_else(|| bad("the URL-encoded key is not UTF-8".into()))?
                } else {
                    raw.to_string()
                };
                if let Some(prev) = &previous {
                    if key.as_bytes() <= prev.as_bytes() {
                        return Err(bad(format!(
                            "keys are not in increasing order (it follows {prev:?}); \
                             this endpoint's listing order cannot be used for a sync"
                        )));
                    }
                }
                let Some(relative) = key.strip_prefix(location.prefix()) else {
                    return Err(bad(format!(
                        "the key is outside the prefix {:?} that was listed",
                        location.prefix()
                    )));
                };
                let size = u64::try_from(object.size().unwrap_or(0)).unwrap_or(0);
                objects += 1;
                bytes += size;
                // The prefix's own "directory" marker has no relative name.
                if !relative.is_empty() && filters.is_included(relative) {
                    let modified = object
                        .last_modified()
                        .map(|t| (t.secs(), t.subsec_nanos()))
                        .unwrap_or((0, 0));
                    entries.push(Entry {
                        key: relative.to_string(),
                        size,
                        modified,
                        etag: object.e_tag().map(str::to_string),
                    });
                }
                previous = Some(key);
            }
            Ok(())
        };
        if let Err(e) = page() {
            let _ = tx.send(Err(e)).await;
            return;
        }
        token = out
            .next_continuation_token()
            .filter(|_| out.is_truncated() == Some(true))
            .map(str::to_string);
        let last = token.is_none();
        let sent = tx
            .send(Ok(Page {
                entries,
                objects,
                bytes,
                last,
            }))
            .await;
        if sent.is_err() || last {
            return;
        }
    }
}
