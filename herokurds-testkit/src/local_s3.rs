//! What every local S3 server of the sandbox offers, so one test or bench
//! runs against each of them.
//!
//! Two servers speak S3 here: moto ([`super::moto::MotoServer`]), which
//! implements nearly every operation (tagging, storage classes, SSE) but
//! serves one request at a time, and s3s-fs
//! ([`super::s3s_fs::S3sFsServer`]), a multi-threaded server over a
//! directory that lacks some operations. [`LocalS3`] is the part they
//! share: an endpoint, credentials, a configured client and the set-up
//! requests tests need.

use std::future::Future;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// The region every client handed out by a [`LocalS3`] server uses.
pub const LOCAL_S3_REGION: &str = "us-east-1";

/// A set-up request to a local S3 server failed.
#[derive(Debug, thiserror::Error)]
#[error("{server} request {what} failed: {reason}")]
#[non_exhaustive]
pub struct LocalS3Error {
    /// The server (`moto`, `s3s-fs`).
    pub server: &'static str,
    /// The request (`CreateBucket my-bucket`).
    pub what: String,
    /// What the server or the client said.
    pub reason: String,
}

/// A running local S3 server on `127.0.0.1`.
pub trait LocalS3: Sync {
    /// A short name for messages and test names (`moto`, `s3s-fs`).
    fn server_name(&self) -> &'static str;

    /// The server's base URL, `http://127.0.0.1:PORT`.
    fn endpoint_url(&self) -> String;

    /// The access key id and secret the server accepts.
    fn access_keys(&self) -> Credentials;

    /// The id of the server's process group (benches read its CPU time
    /// from `/proc`).
    fn process_group(&self) -> u32;

    /// Environment variables that point the AWS CLI, the SDK's default
    /// credential chain or a herokurds binary at this server:
    /// `AWS_ENDPOINT_URL`, the credentials, `AWS_REGION` and
    /// `AWS_DEFAULT_REGION`, and empty config/credential file paths so a
    /// developer's own profiles are not read.
    fn env_vars(&self) -> Vec<(&'static str, String)> {
        let keys = self.access_keys();
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint_url()),
            ("AWS_ACCESS_KEY_ID", keys.access_key_id().to_string()),
            (
                "AWS_SECRET_ACCESS_KEY",
                keys.secret_access_key().to_string(),
            ),
            ("AWS_REGION", LOCAL_S3_REGION.to_string()),
            ("AWS_DEFAULT_REGION", LOCAL_S3_REGION.to_string()),
            ("AWS_CONFIG_FILE", "/dev/null".to_string()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_string()),
        ]
    }

    /// An S3 client for this server: path-style addressing, its
    /// credentials, region `us-east-1`.
    fn s3_client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(LOCAL_S3_REGION))
            .endpoint_url(self.endpoint_url())
            .credentials_provider(self.access_keys())
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Creates a bucket (in `us-east-1`).
    fn create_bucket(&self, bucket: &str) -> impl Future<Output = Result<(), LocalS3Error>> + Send {
        async move {
            self.s3_client()
                .create_bucket()
                .bucket(bucket)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    request_error(self.server_name(), format!("CreateBucket {bucket}"), &e)
                })
        }
    }

    /// Puts objects into a bucket, `concurrency` requests at a time (plain
    /// PutObject: no metadata, no tags; use [`LocalS3::s3_client`] for more).
    fn put_objects<I>(
        &self,
        bucket: &str,
        objects: I,
        concurrency: usize,
    ) -> impl Future<Output = Result<(), LocalS3Error>> + Send
    where
        I: IntoIterator<Item = (String, Vec<u8>)> + Send,
        I::IntoIter: Send,
    {
        use futures::{StreamExt, TryStreamExt};
        async move {
            let client = self.s3_client();
            futures::stream::iter(objects)
                .map(|(key, body)| {
                    let client = &client;
                    async move {
                        client
                            .put_object()
                            .bucket(bucket)
                            .key(&key)
                            .body(body.into())
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(|e| {
                                request_error(
                                    self.server_name(),
                                    format!("PutObject s3://{bucket}/{key}"),
                                    &e,
                                )
                            })
                    }
                })
                .buffer_unordered(concurrency.max(1))
                .try_collect::<()>()
                .await
        }
    }

    /// Every key of a bucket, in listing order (all pages).
    fn keys(&self, bucket: &str) -> impl Future<Output = Result<Vec<String>, LocalS3Error>> + Send {
        async move {
            let mut keys = Vec::new();
            let mut pages = self
                .s3_client()
                .list_objects_v2()
                .bucket(bucket)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    request_error(self.server_name(), format!("ListObjectsV2 {bucket}"), &e)
                })?;
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_string)),
                );
            }
            Ok(keys)
        }
    }
}

/// The error for a failed set-up request to `server`.
fn request_error<E>(
    server: &'static str,
    what: String,
    error: &SdkError<E, HttpResponse>,
) -> LocalS3Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    LocalS3Error {
        server,
        what,
        reason: herokurds_core::aws::sdk_error_reason(error),
    }
}

/// Declares two tests, `$case::moto` and `$case::s3s_fs`, that run the
/// async fn `$case(server: impl LocalS3)` against a fresh moto and a fresh
/// s3s-fs server. A server that cannot start fails its test (it never
/// skips). Arguments after the name go to `#[tokio::test(...)]`.
///
/// ```text
/// herokurds_testkit::on_both_s3_servers!(a_rerun_copies_nothing);
/// async fn a_rerun_copies_nothing(s3: impl LocalS3) { /* ... */ }
///
/// herokurds_testkit::on_both_s3_servers!(big_one, flavor = "multi_thread", worker_threads = 2);
/// async fn big_one(s3: impl LocalS3) { /* ... */ }
/// ```
#[macro_export]
macro_rules! on_both_s3_servers {
    ($case:ident $(, $($test_arg:tt)*)?) => {
        mod $case {
            #[tokio::test$(($($test_arg)*))?]
            async fn moto() {
                let server = $crate::moto::MotoServer::start()
                    .unwrap_or_else(|e| panic!("{e}"));
                super::$case(server).await
            }

            #[tokio::test$(($($test_arg)*))?]
            async fn s3s_fs() {
                let server = $crate::s3s_fs::S3sFsServer::start()
                    .unwrap_or_else(|e| panic!("{e}"));
                super::$case(server).await
            }
        }
    };
}
