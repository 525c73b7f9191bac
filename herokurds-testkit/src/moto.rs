//! A throwaway moto server: local S3, Secrets Manager and RDS APIs.
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

    /// A Secrets Manager client for this server.
    pub fn secrets_client(&self) -> aws_sdk_secretsmanager::Client {
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(MOTO_REGION))
            .endpoint_url(self.endpoint_url())
            .credentials_provider(Self::credentials())
            .build();
        aws_sdk_secretsmanager::Client::from_conf(config)
    }

    /// An RDS client for this server.
    pub fn rds_client(&self) -> aws_sdk_rds::Client {
        let config = aws_sdk_rds::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(MOTO_REGION))
            .endpoint_url(self.endpoint_url())
            .credentials_provider(Self::credentials())
            .build();
        aws_sdk_rds::Client::from_conf(config)
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
