//! Server-side copy of one object: CopyObject, or multipart UploadPartCopy.
//!
//! Both paths keep Content-Type, Cache-Control, Content-Disposition,
//! Content-Encoding, Content-Language, Expires, user metadata and tags:
//! CopyObject with `MetadataDirective: COPY`, multipart by reading them
//! (HeadObject, GetObjectTagging) and passing them to CreateMultipartUpload,
//! which `aws s3 sync` does not do.
//!
//! When the destination key already exists, CopyObject sends the source's
//! tags with `TaggingDirective: REPLACE` instead of `COPY`: real S3 gives the
//! new object the source's tags either way, but some S3 implementations
//! (moto) merge them into the overwritten key's old tags.
//!
//! Multipart parts carry `x-amz-copy-source-if-match` with the ETag that
//! HeadObject returned, so a source overwritten mid-copy fails the key
//! instead of producing an object stitched from two versions. A failed or
//! cancelled multipart copy is aborted (AbortMultipartUpload), leaving no
//! parts behind.

use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, MetadataDirective, ServerSideEncryption,
    StorageClass as SdkStorageClass, Tag, TaggingDirective,
};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::list::Entry;
use super::location::{copy_source, encode_component};
use super::{S3Location, Sse, SyncEvent, SyncOptions};
use aws_sdk_s3::error::ProvideErrorMetadata;

use crate::aws::sdk_failure;
use crate::progress::Progress;

/// Everything a copy needs, shared by all copies of one run.
pub(crate) struct Copier<'a> {
    pub(crate) source_client: &'a aws_sdk_s3::Client,
    pub(crate) destination_client: &'a aws_sdk_s3::Client,
    pub(crate) source: &'a S3Location,
    pub(crate) destination: &'a S3Location,
    pub(crate) options: &'a SyncOptions,
    /// Bounds the parts in flight over all multipart copies.
    pub(crate) parts: Semaphore,
    pub(crate) cancel: &'a CancellationToken,
}

/// How one copy went.
pub(crate) struct CopyOutcome {
    pub(crate) entry: Entry,
    pub(crate) result: Result<bool, String>,
}

/// Sets the destination storage class and encryption on a CopyObject or
/// CreateMultipartUpload request.
macro_rules! destination_options {
    ($request:expr, $options:expr) => {{
        let mut request = $request;
        if let Some(class) = &$options.storage_class {
            request = request.storage_class(SdkStorageClass::from(class.as_str()));
        }
        match &$options.sse {
            Some(Sse::Aes256) => {
                request = request.server_side_encryption(ServerSideEncryption::Aes256);
            }
            Some(Sse::Kms { key_id }) => {
                request = request
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .set_ssekms_key_id(key_id.clone());
            }
            None => {}
        }
        request
    }};
}

impl Copier<'_> {
    /// Copies one object; `overwrite` says the destination key exists.
    /// The result is `Ok(multipart)` or `Err(reason)`.
    pub(crate) async fn copy(
        &self,
        entry: Entry,
        overwrite: bool,
        progress: &impl Progress<SyncEvent>,
    ) -> CopyOutcome {
        let result = if entry.size > self.options.multipart_threshold {
            self.copy_multipart(&entry, progress).await.map(|()| true)
        } else {
            self.copy_object(&entry, overwrite).await.map(|()| false)
        };
        CopyOutcome { entry, result }
    }

    async fn copy_object(&self, entry: &Entry, overwrite: bool) -> Result<(), String> {
        let source_key = self.source.key(&entry.key);
        let mut request = self
            .destination_client
            .copy_object()
            .bucket(self.destination.bucket())
            .key(self.destination.key(&entry.key))
            .copy_source(copy_source(self.source.bucket(), &source_key))
            .metadata_directive(MetadataDirective::Copy)
            .tagging_directive(TaggingDirective::Copy);
        if overwrite {
            match self.source_tags(&source_key).await {
                Ok(tags) => {
                    request = request
                        .tagging_directive(TaggingDirective::Replace)
                        .set_tagging(encode_tags(&tags));
                }
                Err(reason) => tracing::debug!(
                    key = %source_key,
                    %reason,
                    "source tags unreadable; copying with TaggingDirective COPY"
                ),
            }
        }
        request = destination_options!(request, self.options);
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("CopyObject: {}", sdk_failure(&e).reason))
    }

    async fn source_tags(&self, source_key: &str) -> Result<Vec<Tag>, String> {
        self.source_client
            .get_object_tagging()
            .bucket(self.source.bucket())
            .key(source_key)
            .send()
            .await
            .map(|out| out.tag_set().to_vec())
            .map_err(|e| format!("GetObjectTagging: {}", sdk_failure(&e).reason))
    }

    async fn copy_multipart(
        &self,
        entry: &Entry,
        progress: &impl Progress<SyncEvent>,
    ) -> Result<(), String> {
        let source_key = self.source.key(&entry.key);
        let destination_key = self.destination.key(&entry.key);
        let head = self
            .source_client
            .head_object()
            .bucket(self.source.bucket())
            .key(&source_key)
            .send()
            .await
            .map_err(|e| format!("HeadObject: {}", sdk_failure(&e).reason))?;
        let tags = self.source_tags(&source_key).await?;
        let size = head
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(entry.size);
        let etag = head.e_tag().map(str::to_string);
        let expires = head
            .expires_string()
            .and_then(|s| DateTime::from_str(s, DateTimeFormat::HttpDate).ok());
        let create = self
            .destination_client
            .create_multipart_upload()
            .bucket(self.destination.bucket())
            .key(&destination_key)
            .set_content_type(head.content_type().map(str::to_string))
            .set_cache_control(head.cache_control().map(str::to_string))
            .set_content_disposition(head.content_disposition().map(str::to_string))
            .set_content_encoding(head.content_encoding().map(str::to_string))
            .set_content_language(head.content_language().map(str::to_string))
            .set_expires(expires)
            .set_metadata(head.metadata().cloned())
            .set_tagging(encode_tags(&tags));
        let upload = destination_options!(create, self.options)
            .send()
            .await
            .map_err(|e| format!("CreateMultipartUpload: {}", sdk_failure(&e).reason))?;
        let upload_id = upload
            .upload_id()
            .ok_or("CreateMultipartUpload returned no upload id")?
            .to_string();
        let result = self
            .copy_parts(
                entry,
                &source_key,
                &destination_key,
                &upload_id,
                size,
                etag,
                progress,
            )
            .await;
        if result.is_err() {
            let abort = self
                .destination_client
                .abort_multipart_upload()
                .bucket(self.destination.bucket())
                .key(&destination_key)
                .upload_id(&upload_id)
                .send()
                .await;
            if let Err(e) = abort {
                tracing::warn!(
                    bucket = self.destination.bucket(),
                    key = %destination_key,
                    upload_id,
                    reason = %sdk_failure(&e).reason,
                    "could not abort a failed multipart copy; its parts stay until a lifecycle rule removes them"
                );
            }
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn copy_parts(
        &self,
        entry: &Entry,
        source_key: &str,
        destination_key: &str,
        upload_id: &str,
        size: u64,
        etag: Option<String>,
        progress: &impl Progress<SyncEvent>,
    ) -> Result<(), String> {
        let part_size = self.options.part_size_for(size);
        let count = size.div_ceil(part_size).max(1);
        let copy_source = copy_source(self.source.bucket(), source_key);
        let mut parts: Vec<CompletedPart> = futures::stream::iter(0..count)
            .map(|index| {
                let start = index * part_size;
                let end = (start + part_size).min(size).max(start + 1) - 1;
                let number = i32::try_from(index + 1).expect("at most 10,000 parts");
                let copy_source = &copy_source;
                let etag = &etag;
                async move {
                    let _permit = self.parts.acquire().await.map_err(|e| e.to_string())?;
                    if self.cancel.is_cancelled() {
                        return Err("cancelled".to_string());
                    }
                    let out = self
                        .destination_client
                        .upload_part_copy()
                        .bucket(self.destination.bucket())
                        .key(destination_key)
                        .upload_id(upload_id)
                        .part_number(number)
                        .copy_source(copy_source)
                        .copy_source_range(format!("bytes={start}-{end}"))
                        .set_copy_source_if_match(etag.clone())
                        .send()
                        .await
                        .map_err(|e| {
                            format!("UploadPartCopy part {number}: {}", sdk_failure(&e).reason)
                        })?;
                    progress.event(&SyncEvent::PartCopied {
                        key: entry.key.clone(),
                        part: number as u32,
                        bytes: end + 1 - start,
                    });
                    Ok(CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(
                            out.copy_part_result()
                                .and_then(|r| r.e_tag())
                                .map(str::to_string),
                        )
                        .build())
                }
            })
            .buffer_unordered(self.options.concurrency)
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.part_number());
        let completed = self
            .destination_client
            .complete_multipart_upload()
            .bucket(self.destination.bucket())
            .key(destination_key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        let err = match completed {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        let reason = format!("CompleteMultipartUpload: {}", sdk_failure(&err).reason);
        // Two answers do not say whether the object was assembled: a 200
        // whose body the SDK cannot parse (moto 5.2 names its root element
        // CompleteMultipartUploadResponse), and NoSuchUpload on a retry of a
        // completion that succeeded but whose answer was lost. Ask S3.
        let status = err.raw_response().map(|r| r.status().as_u16());
        let unparsed_success = status == Some(200) && err.code().is_none();
        let completed_before_retry = err.code() == Some("NoSuchUpload");
        if (unparsed_success || completed_before_retry)
            && self.is_assembled(destination_key, size, count).await
        {
            tracing::debug!(key = destination_key, %reason, "multipart copy confirmed by HeadObject");
            return Ok(());
        }
        Err(reason)
    }

    /// Whether the destination holds a `size`-byte object made of `parts` parts.
    async fn is_assembled(&self, destination_key: &str, size: u64, parts: u64) -> bool {
        let Ok(head) = self
            .destination_client
            .head_object()
            .bucket(self.destination.bucket())
            .key(destination_key)
            .send()
            .await
        else {
            return false;
        };
        let suffix = format!("-{parts}\"");
        head.content_length().and_then(|n| u64::try_from(n).ok()) == Some(size)
            && head.e_tag().is_some_and(|e| e.ends_with(&suffix))
    }
}

/// Tags as the `x-amz-tagging` header wants them: `k1=v1&k2=v2`,
/// percent-encoded; `None` for no tags.
fn encode_tags(tags: &[Tag]) -> Option<String> {
    if tags.is_empty() {
        return None;
    }
    let pairs: Vec<String> = tags
        .iter()
        .map(|t| {
            format!(
                "{}={}",
                encode_component(t.key()),
                encode_component(t.value())
            )
        })
        .collect();
    Some(pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_form_encoded() {
        let tags = vec![
            Tag::builder().key("team").value("ol eng").build().unwrap(),
            Tag::builder().key("a&b").value("c=d").build().unwrap(),
        ];
        assert_eq!(encode_tags(&tags).unwrap(), "team=ol%20eng&a%26b=c%3Dd");
        assert_eq!(encode_tags(&[]), None);
    }
}
