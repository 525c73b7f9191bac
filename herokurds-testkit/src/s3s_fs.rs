//! A throwaway s3s-fs server: a fast local S3 over a directory.
//!
//! moto serves one request at a time, which caps any S3 client near the
//! same speed, so S3 speed is measured against s3s-fs as well: a
//! multi-threaded Rust server (crate `s3s-fs`, installed into the
//! workspace's `.cache/s3s-fs/` by `scripts/setup.d/50-s3s-fs.sh`) that
//! keeps each bucket as a folder of a temporary directory. The S3 sync
//! tests run against both servers where s3s-fs implements the operation.
//!
//! What s3s-fs 0.14 does: buckets, PutObject/GetObject/HeadObject with
//! Content-Type, Cache-Control, Content-Disposition/-Encoding/-Language,
//! Expires and user metadata, CopyObject (metadata copied), multipart
//! uploads with UploadPartCopy, ListObjectsV2 paging, DeleteObject(s).
//! What it lacks, so those cases run on moto only: object tagging
//! (`x-amz-tagging` is ignored, GetObjectTagging is not implemented, and
//! herokurds' multipart copy reads the source's tags, so it fails there),
//! storage classes other than STANDARD (no GLACIER objects to fail on),
//! server-side encryption, ListMultipartUploads, and more than one set of
//! credentials (a second profile's keys are refused). Its ListObjectsV2
//! returns no ETags (verify can only compare sizes) and echoes
//! `encoding-type=url` without encoding the keys, so a key with `+` or
//! `%` reads back wrong; keys of plain characters list correctly.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use herokurds_testkit::s3s_fs::S3sFsServer;
//! use herokurds_testkit::LocalS3;
//! let server = S3sFsServer::start()?;
//! let s3 = server.s3_client();
//! # let _ = s3; Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::config::Credentials;

use super::local_s3::LocalS3;
use super::process::{find_tool, http_status, ServerProcess, StartError, ToolSearch};

/// The environment variable naming the `s3s-fs` executable to use.
pub const S3S_FS_ENV: &str = "HEROKURDS_S3S_FS";

/// The access key id of the clients handed out by [`S3sFsServer`].
pub const S3S_FS_ACCESS_KEY: &str = "herokurds-test";

/// The secret key of the clients handed out by [`S3sFsServer`]. s3s-fs
/// takes it as a command-line argument; it guards nothing but a throwaway
/// local directory.
pub const S3S_FS_SECRET_KEY: &str = "herokurds-test-secret";

/// How long [`S3sFsServer::start`] waits for the server to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an s3s-fs server could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3sFsError {
    /// No `s3s-fs` executable was found.
    #[error(
        "s3s-fs not found (looked at ${S3S_FS_ENV}, {}, and PATH): run scripts/test, \
         which installs it into .cache/s3s-fs/, or `cargo install s3s-fs@0.14.1 \
         --features binary --locked` and set ${S3S_FS_ENV}",
        searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NotFound {
        /// The workspace paths that were tried.
        searched: Vec<PathBuf>,
    },
    /// `$HEROKURDS_S3S_FS` names something that is not an executable file.
    #[error("${S3S_FS_ENV} is {}, which is not an executable file: run scripts/test or fix the variable", path.display())]
    BadEnv {
        /// The value of the variable.
        path: PathBuf,
    },
    /// The process could not be spawned, or its directories created.
    #[error("could not start s3s-fs {}: {source}", program.display())]
    Spawn {
        /// The executable.
        program: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server exited, or did not answer HTTP in time.
    #[error("s3s-fs {} on port {port} did not come up: {reason}; last lines of its log:\n{log_tail}", program.display())]
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
}

/// A running s3s-fs server on `127.0.0.1` over a temporary directory,
/// stopped (and the directory deleted) when dropped.
///
/// Like [`super::moto::MotoServer`], it runs in its own process group
/// under a shell that stops it when this process goes away.
pub struct S3sFsServer {
    process: ServerProcess,
}

impl std::fmt::Debug for S3sFsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3sFsServer")
            .field("endpoint", &self.endpoint_url())
            .field("pid", &self.process.pid())
            .finish()
    }
}

impl S3sFsServer {
    /// Finds `s3s-fs` (see [`find_s3s_fs`]), starts it on a free loopback
    /// port over a new temporary directory and waits (blocking, usually
    /// well under a second) until it answers HTTP.
    pub fn start() -> Result<S3sFsServer, S3sFsError> {
        let program = find_s3s_fs()?;
        let args = |port: u16, dir: &Path| {
            let data = dir.join("data");
            let mut args = [
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                S3S_FS_ACCESS_KEY,
                "--secret-key",
                S3S_FS_SECRET_KEY,
            ]
            .map(String::from)
            .to_vec();
            // s3s-fs refuses a root that does not exist. Should creating it
            // fail, the server exits and `start` says so, with its log.
            let _ = std::fs::create_dir(&data);
            args.push(data.to_string_lossy().into_owned());
            args
        };
        // Any HTTP answer (an unsigned GET / is refused) means it serves.
        let ready = |port| http_status(port, "GET", "/").is_ok();
        match ServerProcess::start(&program, "herokurds-s3s-fs-", READY_TIMEOUT, args, ready) {
            Ok(process) => Ok(S3sFsServer { process }),
            Err(StartError::Io(source)) => Err(S3sFsError::Spawn { program, source }),
            Err(StartError::NotReady {
                port,
                reason,
                log_tail,
            }) => Err(S3sFsError::NotReady {
                program,
                port,
                reason,
                log_tail,
            }),
        }
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// The directory the buckets live in (one folder each).
    pub fn data_dir(&self) -> PathBuf {
        self.process.dir().join("data")
    }
}

impl LocalS3 for S3sFsServer {
    fn server_name(&self) -> &'static str {
        "s3s-fs"
    }

    fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    fn access_keys(&self) -> Credentials {
        Credentials::new(S3S_FS_ACCESS_KEY, S3S_FS_SECRET_KEY, None, None, "s3s-fs")
    }

    fn process_group(&self) -> u32 {
        self.process.pid()
    }
}

/// Where `s3s-fs` is: `$HEROKURDS_S3S_FS`, else
/// `<workspace>/.cache/s3s-fs/bin/s3s-fs` (the workspace this crate was
/// built in, then any directory above the current one), else `s3s-fs` on
/// `PATH`.
pub fn find_s3s_fs() -> Result<PathBuf, S3sFsError> {
    find_tool(S3S_FS_ENV, ".cache/s3s-fs/bin/s3s-fs", "s3s-fs").map_err(|e| match e {
        ToolSearch::BadEnv(path) => S3sFsError::BadEnv { path },
        ToolSearch::NotFound(searched) => S3sFsError::NotFound { searched },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_server_error_says_how_to_install_it() {
        let err = S3sFsError::NotFound {
            searched: vec![PathBuf::from("/w/.cache/s3s-fs/bin/s3s-fs")],
        };
        let text = err.to_string();
        assert!(text.contains("scripts/test"), "{text}");
        assert!(text.contains("cargo install s3s-fs@0.14.1"), "{text}");
        assert!(text.contains("/w/.cache/s3s-fs/bin/s3s-fs"), "{text}");
    }
}
