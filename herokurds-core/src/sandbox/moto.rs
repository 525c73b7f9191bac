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
//! use herokurds_core::sandbox::moto::MotoServer;
//! let moto = MotoServer::start()?;
//! let s3 = moto.s3_client();
//! # let _ = s3; Ok(()) }
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

/// The environment variable naming the `moto_server` executable to use.
pub const MOTO_SERVER_ENV: &str = "HEROKURDS_MOTO_SERVER";

/// The region every client handed out by [`MotoServer`] uses.
pub const MOTO_REGION: &str = "us-east-1";

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

/// A running moto server on `127.0.0.1`, stopped when dropped.
///
/// Dropping it sends SIGTERM (then SIGKILL) to the server's whole process
/// group. If the owning process dies without dropping it, the server still
/// exits: it is started under a tiny shell that watches a pipe from this
/// process and stops the server when the pipe closes.
pub struct MotoServer {
    child: Child,
    /// Held open for the lifetime of the server; its closing stops the server.
    _lifeline: Option<ChildStdin>,
    port: u16,
    program: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl std::fmt::Debug for MotoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotoServer")
            .field("endpoint", &self.endpoint_url())
            .field("pid", &self.child.id())
            .finish()
    }
}

impl MotoServer {
    /// Finds `moto_server` (see [`find_moto_server`]), starts it on a free
    /// loopback port and waits (blocking, usually 1-3 s) until
    /// `GET /moto-api/` answers.
    pub fn start() -> Result<MotoServer, MotoError> {
        let program = find_moto_server()?;
        let mut last = None;
        // A free port can be taken by someone else between our probe and the
        // server's bind; try a few.
        for _ in 0..3 {
            match Self::start_on(&program, free_port(&program)?) {
                Ok(server) => return Ok(server),
                Err(e @ MotoError::NotReady { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("three attempts were made"))
    }

    fn start_on(program: &Path, port: u16) -> Result<MotoServer, MotoError> {
        let spawn_err = |source| MotoError::Spawn {
            program: program.to_path_buf(),
            source,
        };
        let log_dir = tempfile::Builder::new()
            .prefix("herokurds-moto-")
            .tempdir()
            .map_err(spawn_err)?;
        let log_path = log_dir.path().join("moto.log");
        let log = std::fs::File::create(&log_path).map_err(spawn_err)?;
        let log2 = log.try_clone().map_err(spawn_err)?;
        // The shell runs moto in the background and stops it as soon as its
        // stdin (our lifeline pipe) reaches end of file.
        let script = r#"prog="$1"; shift; "$prog" "$@" </dev/null & m=$!; read -r _ignored; kill "$m" 2>/dev/null; wait "$m""#;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script)
            .arg("herokurds-moto")
            .arg(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log2);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let lifeline = child.stdin.take();
        let mut server = MotoServer {
            child,
            _lifeline: lifeline,
            port,
            program: program.to_path_buf(),
            _log_dir: log_dir,
        };
        let started = Instant::now();
        loop {
            if probe(port) {
                return Ok(server);
            }
            let reason = match server.child.try_wait() {
                Ok(Some(status)) => Some(format!("it exited ({status})")),
                Ok(None) if started.elapsed() > READY_TIMEOUT => {
                    Some(format!("no answer after {} s", READY_TIMEOUT.as_secs()))
                }
                Ok(None) => None,
                Err(e) => Some(format!("waiting for it failed: {e}")),
            };
            if let Some(reason) = reason {
                let log_tail = tail(&log_path, 20);
                return Err(MotoError::NotReady {
                    program: program.to_path_buf(),
                    port,
                    reason,
                    log_tail,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The id of the server's process group (benches read its CPU time
    /// from `/proc`).
    pub fn process_group(&self) -> u32 {
        self.child.id()
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `moto_server` executable that was started.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Environment variables that point the AWS CLI, the SDK's default
    /// credential chain or a herokurds binary at this server:
    /// `AWS_ENDPOINT_URL`, dummy `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION` and `AWS_DEFAULT_REGION`, and empty config/credential
    /// file paths so a developer's own profiles are not read.
    pub fn env_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint_url()),
            ("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", MOTO_ACCESS_KEY.to_string()),
            ("AWS_REGION", MOTO_REGION.to_string()),
            ("AWS_DEFAULT_REGION", MOTO_REGION.to_string()),
            ("AWS_CONFIG_FILE", "/dev/null".to_string()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_string()),
        ]
    }

    /// Static dummy credentials moto accepts.
    pub fn credentials() -> Credentials {
        Credentials::new(MOTO_ACCESS_KEY, MOTO_ACCESS_KEY, None, None, "moto")
    }

    /// An S3 client for this server: path-style addressing, dummy
    /// credentials, region `us-east-1`.
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(MOTO_REGION))
            .endpoint_url(self.endpoint_url())
            .credentials_provider(Self::credentials())
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
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
        self.s3_client()
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| MotoError::Request {
                what: format!("CreateBucket {bucket}"),
                reason: crate::aws::sdk_failure(&e).reason,
            })
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
        I: IntoIterator<Item = (String, Vec<u8>)>,
    {
        use futures::{StreamExt, TryStreamExt};
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
                        .map_err(|e| MotoError::Request {
                            what: format!("PutObject s3://{bucket}/{key}"),
                            reason: crate::aws::sdk_failure(&e).reason,
                        })
                }
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect::<()>()
            .await
    }

    /// Every key of a bucket, in listing order (all pages).
    pub async fn keys(&self, bucket: &str) -> Result<Vec<String>, MotoError> {
        let mut keys = Vec::new();
        let mut pages = self
            .s3_client()
            .list_objects_v2()
            .bucket(bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| MotoError::Request {
                what: format!("ListObjectsV2 {bucket}"),
                reason: crate::aws::sdk_failure(&e).reason,
            })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        Ok(keys)
    }

    /// Forgets every bucket, secret and instance (`POST /moto-api/reset`).
    ///
    /// Blocking; tests that share one server can call it between cases.
    pub fn reset(&self) -> std::io::Result<()> {
        let status = http_status(self.port, "POST", "/moto-api/reset")?;
        if status == 200 {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "POST /moto-api/reset answered {status}"
            )))
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals our own child's
        // process group, created with process_group(0) at spawn.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above; anything still alive in the group is ours.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Where `moto_server` is: `$HEROKURDS_MOTO_SERVER`, else
/// `<workspace>/.venv/bin/moto_server` (the workspace this crate was built in,
/// then any `.venv` above the current directory), else `moto_server` on
/// `PATH`.
pub fn find_moto_server() -> Result<PathBuf, MotoError> {
    if let Some(value) = std::env::var_os(MOTO_SERVER_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(MotoError::BadEnv { path })
        };
    }
    let mut searched = Vec::new();
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf);
    let cwd = std::env::current_dir().ok();
    let roots = built_in.into_iter().chain(
        cwd.iter()
            .flat_map(|d| d.ancestors().map(Path::to_path_buf)),
    );
    for root in roots {
        let candidate = root.join(".venv/bin/moto_server");
        if is_executable(&candidate) {
            return Ok(candidate);
        }
        if !searched.contains(&candidate) {
            searched.push(candidate);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("moto_server");
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(MotoError::NotFound { searched })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn free_port(program: &Path) -> Result<u16, MotoError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| MotoError::Spawn {
            program: program.to_path_buf(),
            source,
        })
}

/// True when `GET /moto-api/` answers 200.
fn probe(port: u16) -> bool {
    http_status(port, "GET", "/moto-api/").is_ok_and(|s| s == 200)
}

/// A minimal blocking HTTP/1.0 request; returns the status code.
fn http_status(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        let n = stream.read(&mut head[len..])?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let line = String::from_utf8_lossy(&head[..len]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {line:?}")))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
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

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&p, 2), "b\nc");
        assert_eq!(tail(&dir.path().join("none"), 2), "");
    }
}
