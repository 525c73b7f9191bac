//! A local server process the sandbox starts and owns (moto, s3s-fs).
//!
//! One home for what every such server needs: finding its executable,
//! starting it on a free loopback port with its log in a temporary
//! directory, waiting until it answers, and stopping its whole process
//! group. If the owning process dies without dropping the server, the
//! server still exits: it runs under a tiny shell that watches a pipe from
//! this process and stops the server when the pipe closes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server process, stopped (SIGTERM, then SIGKILL, to its whole
/// process group) and its directory deleted when dropped.
pub(super) struct ServerProcess {
    child: Child,
    /// Held open for the lifetime of the server; its closing stops the server.
    _lifeline: Option<ChildStdin>,
    port: u16,
    /// `server.log`, and whatever the server keeps (s3s-fs's buckets).
    dir: tempfile::TempDir,
}

/// Why [`ServerProcess::start`] failed.
pub(super) enum StartError {
    /// The directory or the process could not be created.
    Io(std::io::Error),
    /// The server exited, or did not answer in time.
    NotReady {
        /// The port it was asked to listen on.
        port: u16,
        /// What went wrong (exit status or timeout).
        reason: String,
        /// The end of the server's output.
        log_tail: String,
    },
}

impl ServerProcess {
    /// Starts `program` with `args(port, dir)` on a free loopback port, in
    /// a new temporary directory named `prefix...`, and waits (blocking) up
    /// to `timeout` until `ready(port)`. A free port can be taken by
    /// someone else between our probe and the server's bind, so up to three
    /// ports are tried.
    pub(super) fn start(
        program: &Path,
        prefix: &str,
        timeout: Duration,
        args: impl Fn(u16, &Path) -> Vec<String>,
        ready: impl Fn(u16) -> bool,
    ) -> Result<ServerProcess, StartError> {
        let mut last = None;
        for _ in 0..3 {
            let port = loopback_port().map_err(StartError::Io)?;
            match Self::start_on(program, prefix, port, timeout, &args, &ready) {
                Ok(server) => return Ok(server),
                Err(e @ StartError::NotReady { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("three attempts were made"))
    }

    fn start_on(
        program: &Path,
        prefix: &str,
        port: u16,
        timeout: Duration,
        args: &impl Fn(u16, &Path) -> Vec<String>,
        ready: &impl Fn(u16) -> bool,
    ) -> Result<ServerProcess, StartError> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map_err(StartError::Io)?;
        let log = dir.path().join("server.log");
        let (child, lifeline) =
            spawn_with_lifeline(program, &args(port, dir.path()), &log).map_err(StartError::Io)?;
        let mut server = ServerProcess {
            child,
            _lifeline: lifeline,
            port,
            dir,
        };
        let started = Instant::now();
        loop {
            if ready(port) {
                return Ok(server);
            }
            let reason = match server.child.try_wait() {
                Ok(Some(status)) => Some(format!("it exited ({status})")),
                Ok(None) if started.elapsed() > timeout => {
                    Some(format!("no answer after {} s", timeout.as_secs()))
                }
                Ok(None) => None,
                Err(e) => Some(format!("waiting for it failed: {e}")),
            };
            if let Some(reason) = reason {
                return Err(StartError::NotReady {
                    port,
                    reason,
                    log_tail: tail(&log, 20),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port it listens on.
    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// Its process id, which is also its process group's.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its temporary directory.
    pub(super) fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        stop_process_group(&mut self.child);
    }
}

/// Starts `program args...` in a new process group under a tiny shell that
/// stops it when the returned pipe closes (when the caller drops it or
/// dies), with stdout and stderr in `log`.
fn spawn_with_lifeline(
    program: &Path,
    args: &[String],
    log: &Path,
) -> std::io::Result<(Child, Option<ChildStdin>)> {
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    // The shell runs the server in the background and stops it as soon as
    // its stdin (our lifeline pipe) reaches end of file.
    let script = r#"prog="$1"; shift; "$prog" "$@" </dev/null & m=$!; read -r _ignored; kill "$m" 2>/dev/null; wait "$m""#;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .arg("herokurds-server")
        .arg(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(err);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn()?;
    let lifeline = child.stdin.take();
    Ok((child, lifeline))
}

/// Sends `signal` (`libc::SIGTERM`, `libc::SIGHUP`, ...) to `child`, as
/// `kill -TERM PID` does, without the `kill` program: procps, which has
/// it, is not in minimal Debian images.
pub fn send_signal(child: &Child, signal: libc::c_int) -> std::io::Result<()> {
    // SAFETY: kill(2) on the pid of a child we hold and have not reaped.
    match unsafe { libc::kill(child.id() as libc::pid_t, signal) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// SIGTERM, then after 3 s SIGKILL, to the process group `child` leads
/// (started by [`spawn_with_lifeline`]); waits for it.
fn stop_process_group(child: &mut Child) {
    let pgid = child.id() as libc::pid_t;
    // SAFETY: kill(2) with a negative pid signals our own child's
    // process group, created with process_group(0) at spawn.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above; anything still alive in the group is ours.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
}

/// Why [`find_tool`] found nothing.
pub(super) enum ToolSearch {
    /// The variable names something that is not an executable file.
    BadEnv(PathBuf),
    /// Nothing at these workspace paths, nor on PATH.
    NotFound(Vec<PathBuf>),
}

/// A server executable: `$env`, else `<workspace>/<in_workspace>` (the
/// workspace this crate was built in, then any directory above the current
/// one), else `name` on `PATH`.
pub(super) fn find_tool(env: &str, in_workspace: &str, name: &str) -> Result<PathBuf, ToolSearch> {
    if let Some(value) = std::env::var_os(env).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(ToolSearch::BadEnv(path))
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
        let candidate = root.join(in_workspace);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
        if !searched.contains(&candidate) {
            searched.push(candidate);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(ToolSearch::NotFound(searched))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A loopback port nobody listens on right now.
fn loopback_port() -> std::io::Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

/// A minimal blocking HTTP/1.0 request; returns the status code.
pub(super) fn http_status(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
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
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&p, 2), "b\nc");
        assert_eq!(tail(&dir.path().join("none"), 2), "");
    }
}
