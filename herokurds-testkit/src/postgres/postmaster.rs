//! A cluster's server process: its settings, its start (tied to a thread
//! by a parent-death signal) and its fast shutdown.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::os_user::OsUser;
use super::{io_err, quote_literal, tail, PostgresOptions, SandboxError};

pub(super) fn write_config(
    data: &Path,
    socket_dir: &Path,
    port: u16,
    o: &PostgresOptions,
) -> Result<(), SandboxError> {
    let mut conf = fs::read_to_string(data.join("postgresql.conf"))
        .map_err(io_err("reading postgresql.conf"))?;
    if let Some(i) = conf.find("\n# herokurds sandbox\n") {
        conf.truncate(i);
    }
    conf.push_str("\n# herokurds sandbox\n");
    let mut set = |k: &str, v: &str| conf.push_str(&format!("{k} = {v}\n"));
    set("port", &port.to_string());
    set("listen_addresses", "'127.0.0.1'");
    set(
        "unix_socket_directories",
        &quote_literal(&socket_dir.display().to_string()),
    );
    let auth = if o.md5 { "md5" } else { "scram-sha-256" };
    set("password_encryption", &quote_literal(auth));
    set("max_connections", "100");
    set("shared_buffers", "128MB");
    set("max_wal_size", "2GB");
    set("logging_collector", "off");
    set("log_min_messages", "warning");
    if !o.durable {
        set("fsync", "off");
        set("synchronous_commit", "off");
        set("full_page_writes", "off");
    }
    if o.tls {
        set("ssl", "on");
        set("ssl_cert_file", "'server.crt'");
        set("ssl_key_file", "'server.key'");
    }
    for (k, v) in &o.settings {
        set(k, v);
    }
    fs::write(data.join("postgresql.conf"), conf).map_err(io_err("writing postgresql.conf"))?;
    let mut hba = String::from("local all postgres trust\n");
    if o.tls_only {
        hba.push_str(&format!("hostssl all all 127.0.0.1/32 {auth}\n"));
        hba.push_str("hostnossl all all 127.0.0.1/32 reject\n");
    } else {
        hba.push_str(&format!("host all all 127.0.0.1/32 {auth}\n"));
    }
    fs::write(data.join("pg_hba.conf"), hba).map_err(io_err("writing pg_hba.conf"))
}

/// The thread that started the postmaster and waits to stop it. The
/// postmaster's parent-death signal is tied to this thread, so it must live
/// exactly as long as the cluster.
pub(super) struct Keeper {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Keeper {
    /// Starts the postmaster from a new thread and waits until it is ready.
    pub(super) fn start(
        bin: &Path,
        data: &Path,
        dir: &Path,
        user: &OsUser,
    ) -> Result<Keeper, SandboxError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop, stop_rx) = mpsc::channel::<()>();
        let (bin, data, dir) = (bin.to_path_buf(), data.to_path_buf(), dir.to_path_buf());
        let cmd = user.command(bin.join("postgres"));
        let thread = std::thread::Builder::new()
            .name("herokurds-postmaster".into())
            .spawn(move || match start_postmaster(cmd, &data, &dir) {
                Ok(mut child) => {
                    let _ = ready_tx.send(Ok(()));
                    // Wait for stop() or for the cluster to be dropped.
                    let _ = stop_rx.recv();
                    fast_shutdown(&mut child);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(io_err("starting the postmaster thread"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Keeper { stop, thread }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(SandboxError::Failed {
                what: "starting postgres".into(),
                log_tail: "the postmaster thread panicked".into(),
            }),
        }
    }
}

impl Keeper {
    /// Tells the keeper thread to shut the postmaster down and waits for it.
    pub(super) fn stop(self) -> Result<(), SandboxError> {
        let _ = self.stop.send(());
        self.thread.join().map_err(|_| SandboxError::Failed {
            what: "stopping postgres".into(),
            log_tail: "the keeper thread panicked".into(),
        })
    }
}

/// SIGINT ("fast" shutdown), then SIGKILL after 30 s.
fn fast_shutdown(child: &mut Child) {
    // SAFETY: kill(2) only sends a signal; the pid is our own child's,
    // not yet waited for, so it names the postmaster.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Starts `postgres -D data` as a child that dies with the calling thread,
/// and waits until `postmaster.pid` says "ready".
fn start_postmaster(mut cmd: Command, data: &Path, dir: &Path) -> Result<Child, SandboxError> {
    let log = dir.join("server.log");
    let log_file = fs::File::create(&log).map_err(io_err("creating server.log"))?;
    let log_err = log_file.try_clone().map_err(io_err("opening server.log"))?;
    cmd.arg("-D")
        .arg(data)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err);
    // SAFETY: prctl and setsid are async-signal-safe. The closure runs after
    // the uid change, which would otherwise clear the death signal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(io_err("starting postgres"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().map_err(io_err("waiting for postgres"))? {
            let text = fs::read_to_string(&log).unwrap_or_default();
            return Err(SandboxError::Failed {
                what: format!("postgres ({status})"),
                log_tail: tail(&text, 20),
            });
        }
        let pid_file = fs::read_to_string(data.join("postmaster.pid")).unwrap_or_default();
        if pid_file.lines().nth(7).map(str::trim) == Some("ready") {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SandboxError::Failed {
                what: "postgres did not become ready within 60 s".into(),
                log_tail: tail(&fs::read_to_string(&log).unwrap_or_default(), 20),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
