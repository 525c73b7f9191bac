//! A throwaway moto server: local S3, Secrets Manager, RDS, CloudFront
//! and IAM APIs.
//!
//! herokurds never talks to real AWS in tests, benches or the demo. Instead it
//! starts moto (`moto_server`, installed into the workspace's `.venv/` by
//! `scripts/test`) on a free loopback port and points the AWS SDK at it with
//! path-style addressing and dummy credentials. [`MotoServer`] owns that
//! process: it waits until the server answers, hands out configured clients
//! and stops the server (and anything it started) when dropped.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use herokurds_testkit::moto::MotoServer;
//! let moto = MotoServer::start()?;
//! let s3 = moto.s3_client();
//! # let _ = s3; Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

use super::local_s3::{LocalS3, LocalS3Error, LOCAL_S3_REGION};
use super::process::{find_tool, http_status, ServerProcess, StartError, ToolSearch};

/// The environment variable naming the `moto_server` executable to use.
pub const MOTO_SERVER_ENV: &str = "HEROKURDS_MOTO_SERVER";

/// The region every client handed out by [`MotoServer`] uses.
pub const MOTO_REGION: &str = LOCAL_S3_REGION;

/// The access key id (and secret) of the clients handed out by [`MotoServer`];
/// moto accepts any.
pub const MOTO_ACCESS_KEY: &str = "herokurds-test";

/// How long [`MotoServer::start`] waits for the server to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a moto server could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MotoError {
    /// No `moto_server` executable was found.
    #[error(
        "moto_server not found (looked at ${MOTO_SERVER_ENV}, {}, and PATH): \
         run scripts/test, which installs it into .venv/, or \
         `pip install 'moto[server]'` and set ${MOTO_SERVER_ENV}",
        searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NotFound {
        /// The workspace virtualenv paths that were tried.
        searched: Vec<PathBuf>,
    },
    /// `$HEROKURDS_MOTO_SERVER` names something that is not an executable file.
    #[error("${MOTO_SERVER_ENV} is {}, which is not an executable file: run scripts/test or fix the variable", path.display())]
    BadEnv {
        /// The value of the variable.
        path: PathBuf,
    },
    /// The process could not be spawned, or its log file created.
    #[error("could not start moto_server {}: {source}", program.display())]
    Spawn {
        /// The executable.
        program: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server exited, or did not answer `GET /moto-api/` in time.
    #[error("moto_server {} on port {port} did not come up: {reason}; last lines of its log:\n{log_tail}", program.display())]
    NotReady {
        /// The executable.
        program: PathBuf,
        /// The port it was asked to listen on.
        port: u16,
        /// What went wrong (exit status or timeout).
        reason: String,
        /// The end of the server's output.
        log_tail: String,
    },
    /// A set-up request to the running server failed.
    #[error("moto request {what} failed: {reason}")]
    Request {
        /// The request (`CreateBucket my-bucket`).
        what: String,
        /// What the server or the client said.
        reason: String,
    },
}

impl From<LocalS3Error> for MotoError {
    fn from(e: LocalS3Error) -> Self {
        MotoError::Request {
            what: e.what,
            reason: e.reason,
        }
    }
}

/// A running moto server on `127.0.0.1`, stopped when dropped.
///
/// Dropping it sends SIGTERM (then SIGKILL) to the server's whole process
/// group. If the owning process dies without dropping it, the server still
/// exits: it is started under a tiny shell that watches a pipe from this
/// process and stops the server when the pipe closes.
pub struct MotoServer {
    process: ServerProcess,
    program: PathBuf,
}

impl std::fmt::Debug for MotoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotoServer")
            .field("endpoint", &self.endpoint_url())
            .field("pid", &self.process.pid())
            .finish()
    }
}

impl MotoServer {
    /// Finds `moto_server` (see [`find_moto_server`]), starts it on a free
    /// loopback port and waits (blocking, usually 1-3 s) until
    /// `GET /moto-api/` answers.
    pub fn start() -> Result<MotoServer, MotoError> {
        let program = find_moto_server()?;
        let args = |port: u16, _: &Path| {
            ["-H", "127.0.0.1", "-p", &port.to_string()]
                .map(String::from)
                .to_vec()
        };
        let ready = |port| http_status(port, "GET", "/moto-api/").is_ok_and(|s| s == 200);
        match ServerProcess::start(&program, "herokurds-moto-", READY_TIMEOUT, args, ready) {
            Ok(process) => Ok(MotoServer { process, program }),
            Err(StartError::Io(source)) => Err(MotoError::Spawn { program, source }),
            Err(StartError::NotReady {
                port,
                reason,
                log_tail,
            }) => Err(MotoError::NotReady {
                program,
                port,
                reason,
                log_tail,
            }),
        }
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.process.port())
    }

    /// The id of the server's process group (benches read its CPU time
    /// from `/proc`).
    pub fn process_group(&self) -> u32 {
        self.process.pid()
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// The `moto_server` executable that was started.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Environment variables that point the AWS CLI, the SDK's default
    /// credential chain or a herokurds binary at this server (see
    /// [`LocalS3::env_vars`]).
    pub fn env_vars(&self) -> Vec<(&'static str, String)> {
        LocalS3::env_vars(self)
    }

    /// Static dummy credentials moto accepts.
    pub fn credentials() -> Credentials {
        Credentials::new(MOTO_ACCESS_KEY, MOTO_ACCESS_KEY, None, None, "moto")
    }

    /// An S3 client for this server: path-style addressing, dummy
    /// credentials, region `us-east-1`.
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        LocalS3::s3_client(self)
    }

    /// The SDK configuration every client for this server shares: its
    /// endpoint, dummy credentials, region `us-east-1`.
    fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(MOTO_REGION))
            .endpoint_url(self.endpoint_url())
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(Self::credentials()),
            )
            .build()
    }

    /// A Secrets Manager client for this server.
    pub fn secrets_client(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.sdk_config())
    }

    /// An RDS client for this server.
    pub fn rds_client(&self) -> aws_sdk_rds::Client {
        aws_sdk_rds::Client::new(&self.sdk_config())
    }

    /// A CloudFront client for this server.
    pub fn cloudfront_client(&self) -> aws_sdk_cloudfront::Client {
        aws_sdk_cloudfront::Client::new(&self.sdk_config())
    }

    /// Creates a CloudFront distribution with one S3 origin on `bucket`
    /// (`<bucket>.s3.amazonaws.com`, id `S3-<bucket>`) and returns its id.
    pub async fn create_s3_distribution(&self, bucket: &str) -> Result<String, MotoError> {
        use aws_sdk_cloudfront::types::{
            DefaultCacheBehavior, DistributionConfig, Origin, Origins, S3OriginConfig,
            ViewerProtocolPolicy,
        };
        let what = || format!("CreateDistribution for {bucket}");
        let built = |e: aws_sdk_cloudfront::error::BuildError| MotoError::Request {
            what: what(),
            reason: e.to_string(),
        };
        let origin_id = format!("S3-{bucket}");
        let config = DistributionConfig::builder()
            .caller_reference(format!("herokurds-sandbox-{bucket}"))
            .comment(format!("assets of {bucket}"))
            .enabled(true)
            .origins(
                Origins::builder()
                    .quantity(1)
                    .items(
                        Origin::builder()
                            .id(&origin_id)
                            .domain_name(format!("{bucket}.s3.amazonaws.com"))
                            .origin_path("")
                            .s3_origin_config(
                                S3OriginConfig::builder().origin_access_identity("").build(),
                            )
                            .build()
                            .map_err(built)?,
                    )
                    .build()
                    .map_err(built)?,
            )
            .default_cache_behavior(
                DefaultCacheBehavior::builder()
                    .target_origin_id(&origin_id)
                    .viewer_protocol_policy(ViewerProtocolPolicy::RedirectToHttps)
                    .build()
                    .map_err(built)?,
            )
            .build()
            .map_err(built)?;
        let out = self
            .cloudfront_client()
            .create_distribution()
            .distribution_config(config)
            .send()
            .await
            .map_err(|e| MotoError::Request {
                what: what(),
                reason: herokurds_core::aws::sdk_error_reason(&e),
            })?;
        Ok(out
            .distribution()
            .map(|d| d.id().to_string())
            .unwrap_or_default())
    }

    /// Turns moto's IAM enforcement on or off (`POST /moto-api/reset-auth`):
    /// when on, every request must be signed with the access key of an IAM
    /// user made by [`iam_user`](Self::iam_user) whose policies allow it;
    /// [`credentials`](Self::credentials) are refused then.
    pub async fn enforce_iam(&self, on: bool) -> Result<(), MotoError> {
        let body = if on { "0" } else { "inf" };
        let request = reqwest::Client::new()
            .post(format!("{}/moto-api/reset-auth", self.endpoint_url()))
            .body(body);
        send(request, format!("reset-auth {body}"))
            .await
            .map(|_| ())
    }

    /// Creates IAM user `name` with the inline policy `policy` (a JSON
    /// policy document) and an access key, and returns the key. Needs IAM
    /// enforcement off ([`enforce_iam`](Self::enforce_iam)).
    pub async fn iam_user(
        &self,
        name: &str,
        policy: &serde_json::Value,
    ) -> Result<Credentials, MotoError> {
        self.iam("CreateUser", &[("UserName", name)]).await?;
        self.put_user_policy(name, policy).await?;
        let xml = self.iam("CreateAccessKey", &[("UserName", name)]).await?;
        let field = |tag: &str| {
            let open = format!("<{tag}>");
            let start = xml.find(&open)? + open.len();
            let end = xml[start..].find(&format!("</{tag}>"))? + start;
            Some(xml[start..end].to_string())
        };
        match (field("AccessKeyId"), field("SecretAccessKey")) {
            (Some(id), Some(secret)) => Ok(Credentials::new(id, secret, None, None, "moto-iam")),
            _ => Err(MotoError::Request {
                what: format!("CreateAccessKey {name}"),
                reason: "the answer holds no access key".into(),
            }),
        }
    }

    /// Replaces the inline policy of IAM user `name` (needs IAM enforcement off).
    pub async fn put_user_policy(
        &self,
        name: &str,
        policy: &serde_json::Value,
    ) -> Result<(), MotoError> {
        self.iam(
            "PutUserPolicy",
            &[
                ("UserName", name),
                ("PolicyName", "herokurds-sandbox"),
                ("PolicyDocument", &policy.to_string()),
            ],
        )
        .await
        .map(|_| ())
    }

    /// One unsigned IAM Query API request; the answer's XML.
    async fn iam(&self, action: &str, params: &[(&str, &str)]) -> Result<String, MotoError> {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        let mut body = format!("Action={action}&Version=2010-05-08");
        for (k, v) in params {
            body.push_str(&format!(
                "&{k}={}",
                utf8_percent_encode(v, NON_ALPHANUMERIC)
            ));
        }
        let request = reqwest::Client::new()
            .post(format!("{}/", self.endpoint_url()))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header(
                "Authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential={MOTO_ACCESS_KEY}/20240101/{MOTO_REGION}/iam/aws4_request, \
                     SignedHeaders=host, Signature=0"
                ),
            )
            .body(body);
        send(request, format!("IAM {action}")).await
    }

    /// Creates a PostgreSQL RDS instance whose master password RDS manages
    /// in Secrets Manager (`db.t3.micro`, 20 GB), on `port` or RDS's 5432.
    pub async fn create_managed_rds_instance(
        &self,
        identifier: &str,
        dbname: &str,
        username: &str,
        port: Option<i32>,
    ) -> Result<(), MotoError> {
        self.rds_client()
            .create_db_instance()
            .db_instance_identifier(identifier)
            .engine("postgres")
            .db_instance_class("db.t3.micro")
            .allocated_storage(20)
            .master_username(username)
            .manage_master_user_password(true)
            .db_name(dbname)
            .set_port(port)
            .send()
            .await
            .map_err(|e| MotoError::Request {
                what: format!("CreateDBInstance {identifier}"),
                reason: aws_sdk_rds::error::DisplayErrorContext(e).to_string(),
            })?;
        Ok(())
    }

    /// Creates a bucket (in `us-east-1`).
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), MotoError> {
        Ok(LocalS3::create_bucket(self, bucket).await?)
    }

    /// Puts objects into a bucket, `concurrency` requests at a time (plain
    /// PutObject: no metadata, no tags; use [`MotoServer::s3_client`] for more).
    pub async fn put_objects<I>(
        &self,
        bucket: &str,
        objects: I,
        concurrency: usize,
    ) -> Result<(), MotoError>
    where
        I: IntoIterator<Item = (String, Vec<u8>)> + Send,
        I::IntoIter: Send,
    {
        Ok(LocalS3::put_objects(self, bucket, objects, concurrency).await?)
    }

    /// Every key of a bucket, in listing order (all pages).
    pub async fn keys(&self, bucket: &str) -> Result<Vec<String>, MotoError> {
        Ok(LocalS3::keys(self, bucket).await?)
    }

    /// Forgets every bucket, secret and instance (`POST /moto-api/reset`).
    ///
    /// Blocking; tests that share one server can call it between cases.
    pub fn reset(&self) -> std::io::Result<()> {
        let status = http_status(self.port(), "POST", "/moto-api/reset")?;
        if status == 200 {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "POST /moto-api/reset answered {status}"
            )))
        }
    }
}

impl LocalS3 for MotoServer {
    fn server_name(&self) -> &'static str {
        "moto"
    }

    fn endpoint_url(&self) -> String {
        MotoServer::endpoint_url(self)
    }

    fn access_keys(&self) -> Credentials {
        MotoServer::credentials()
    }

    fn process_group(&self) -> u32 {
        MotoServer::process_group(self)
    }
}

/// Sends a set-up request; the answer's body, or what went wrong naming `what`.
async fn send(request: reqwest::RequestBuilder, what: String) -> Result<String, MotoError> {
    let response = request.send().await.map_err(|e| MotoError::Request {
        what: what.clone(),
        reason: e.to_string(),
    })?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(text)
    } else {
        Err(MotoError::Request {
            what,
            reason: format!("HTTP {status}: {text}"),
        })
    }
}

/// Where `moto_server` is: `$HEROKURDS_MOTO_SERVER`, else
/// `<workspace>/.venv/bin/moto_server` (the workspace this crate was built in,
/// then any `.venv` above the current directory), else `moto_server` on
/// `PATH`.
pub fn find_moto_server() -> Result<PathBuf, MotoError> {
    find_tool(MOTO_SERVER_ENV, ".venv/bin/moto_server", "moto_server").map_err(|e| match e {
        ToolSearch::BadEnv(path) => MotoError::BadEnv { path },
        ToolSearch::NotFound(searched) => MotoError::NotFound { searched },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_server_error_says_how_to_install_it() {
        let err = MotoError::NotFound {
            searched: vec![PathBuf::from("/w/.venv/bin/moto_server")],
        };
        let text = err.to_string();
        assert!(text.contains("scripts/test"), "{text}");
        assert!(text.contains("pip install 'moto[server]'"), "{text}");
        assert!(text.contains("/w/.venv/bin/moto_server"), "{text}");
    }
}
