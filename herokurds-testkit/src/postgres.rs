//! Throwaway PostgreSQL clusters shaped like Heroku Postgres and RDS.
//!
//! A [`LocalPostgres`] is a real `postgres` server started from the
//! machine's PostgreSQL binaries in a temporary directory, listening on a
//! free loopback port, and stopped (and deleted) on drop. Like the services
//! it stands in for, it requires TLS (a certificate signed by a throwaway
//! CA, see [`LocalPostgres::ca_cert_path`]), authenticates with
//! scram-sha-256, and the database belongs to a role that is **not** a
//! superuser: `heroku_owner` ([`PostgresOptions::heroku`]) or `rds_master`,
//! a member of `rds_superuser` ([`PostgresOptions::rds`]).
//!
//! As root, the server runs as the `postgres` OS user (initdb refuses root).
//! The postmaster is started with a parent-death signal, so a test process
//! that is killed does not leave servers behind.

use std::fmt;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use herokurds_core::pg::binaries::{self, BinariesError};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use secrecy::{ExposeSecret, SecretString};
use tempfile::TempDir;

/// What the cluster's owner role looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Shape {
    /// Heroku Postgres: the database belongs to a plain login role
    /// (no SUPERUSER, CREATEDB or CREATEROLE).
    Heroku,
    /// RDS: the master user has CREATEDB and CREATEROLE and is a member of
    /// a role named `rds_superuser`, but is not a superuser.
    Rds,
}

/// How to start a [`LocalPostgres`].
#[derive(Clone)]
pub struct PostgresOptions {
    shape: Shape,
    owner: String,
    database: String,
    password: Option<SecretString>,
    tls: bool,
    tls_only: bool,
    md5: bool,
    durable: bool,
    settings: Vec<(String, String)>,
    heroku_ext: bool,
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("shape", &self.shape)
            .field("owner", &self.owner)
            .field("database", &self.database)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .field("tls_only", &self.tls_only)
            .field("md5", &self.md5)
            .field("durable", &self.durable)
            .field("settings", &self.settings)
            .field("heroku_ext", &self.heroku_ext)
            .finish()
    }
}

impl PostgresOptions {
    /// A Heroku-Postgres-like source: TLS required, scram, database
    /// `herokudb` owned by the non-superuser `heroku_owner`.
    pub fn heroku() -> Self {
        PostgresOptions {
            shape: Shape::Heroku,
            owner: "heroku_owner".into(),
            database: "herokudb".into(),
            password: None,
            tls: true,
            tls_only: true,
            md5: false,
            durable: false,
            settings: Vec::new(),
            heroku_ext: false,
        }
    }

    /// An RDS-like target: TLS required, scram, database `rdsdb` owned by
    /// `rds_master` (CREATEDB, CREATEROLE, member of `rds_superuser`).
    pub fn rds() -> Self {
        PostgresOptions {
            shape: Shape::Rds,
            owner: "rds_master".into(),
            database: "rdsdb".into(),
            ..Self::heroku()
        }
    }

    /// The owner role's name.
    pub fn owner(mut self, name: impl Into<String>) -> Self {
        self.owner = name.into();
        self
    }

    /// The database's name.
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = name.into();
        self
    }

    /// The owner's password (default: a random one).
    pub fn password(mut self, password: SecretString) -> Self {
        self.password = Some(password);
        self
    }

    /// Whether the server offers TLS at all (default on).
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        if !on {
            self.tls_only = false;
        }
        self
    }

    /// Whether TCP connections without TLS are rejected (default on, as on
    /// Heroku). Implies [`tls`](Self::tls) when on.
    pub fn tls_only(mut self, on: bool) -> Self {
        self.tls_only = on;
        if on {
            self.tls = true;
        }
        self
    }

    /// Store the owner's password as md5 and authenticate with md5, as
    /// older Heroku and RDS setups do (default off: scram-sha-256). Over
    /// TLS, md5 gives no channel binding.
    pub fn md5(mut self, on: bool) -> Self {
        self.md5 = on;
        self
    }

    /// Keep `fsync` on and commits durable (default off: tests do not need
    /// crash safety and run faster without it; benchmarks turn it on).
    pub fn durable(mut self, on: bool) -> Self {
        self.durable = on;
        self
    }

    /// An extra `postgresql.conf` setting, e.g. `("shared_buffers", "256MB")`.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Heroku's legacy layout: a `heroku_ext` schema holding
    /// `pg_stat_statements`, created by the superuser.
    pub fn heroku_ext(mut self, on: bool) -> Self {
        self.heroku_ext = on;
        self
    }
}

/// Why a sandbox server could not be started or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// A program the sandbox needs is not installed.
    #[error("{program} not found ({searched}); install the Debian package `{package}` (scripts/demo and scripts/test do this)")]
    MissingProgram {
        /// The program looked for.
        program: String,
        /// Where it was looked for.
        searched: String,
        /// The Debian package that provides it.
        package: String,
    },
    /// A file-system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A server or tool failed; the end of its log is attached.
    #[error("{what} failed:\n{log_tail}")]
    Failed {
        /// What failed.
        what: String,
        /// The last lines of the program's output or log.
        log_tail: String,
    },
    /// A setup statement failed.
    #[error("sandbox SQL `{sql}` failed: {message}")]
    Sql {
        /// The statement (never contains a password).
        sql: String,
        /// The server's message.
        message: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Io { what, source }
}

/// A running throwaway PostgreSQL cluster; stopped and deleted on drop.
pub struct LocalPostgres {
    dir: TempDir,
    port: u16,
    options: PostgresOptions,
    password: SecretString,
    bin: PathBuf,
    major: u32,
    postmaster: Mutex<Option<Keeper>>,
}

/// The thread that started the postmaster and waits to stop it. The
/// postmaster's parent-death signal is tied to this thread, so it must live
/// exactly as long as the cluster.
struct Keeper {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl fmt::Debug for LocalPostgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalPostgres")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl LocalPostgres {
    /// Starts a cluster: copies a cached `initdb` template (made once per
    /// PostgreSQL version and OS user), writes TLS and auth settings, starts
    /// `postgres` on a free loopback port, and creates the owner role and
    /// database.
    ///
    /// Fails with [`SandboxError::MissingProgram`] naming the Debian package
    /// when the PostgreSQL server binaries are not installed.
    pub async fn start(options: PostgresOptions) -> Result<Self, SandboxError> {
        tokio::task::spawn_blocking(move || Self::start_blocking(options))
            .await
            .map_err(|e| SandboxError::Failed {
                what: "starting the sandbox cluster".into(),
                log_tail: e.to_string(),
            })?
    }

    /// The blocking form of [`start`](Self::start), for non-async callers.
    pub fn start_blocking(options: PostgresOptions) -> Result<Self, SandboxError> {
        let bin = find_pg_bin()?;
        let major = server_major(&bin)?;
        let os_user = OsUser::current_or_postgres()?;
        let template = template_dir(&bin, major, &os_user)?;

        let dir = tempfile::Builder::new()
            .prefix("herokurds-pg-")
            .tempdir()
            .map_err(io_err("creating the cluster's temp dir"))?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .map_err(io_err("opening the cluster's temp dir to the server user"))?;
        let data = dir.path().join("data");
        copy_tree(&template, &data)?;
        let sock = dir.path().join("sock");
        fs::create_dir(&sock).map_err(io_err("creating the socket dir"))?;
        os_user.chown_tree(&data)?;
        os_user.chown_tree(&sock)?;

        let password = options
            .password
            .clone()
            .unwrap_or_else(|| SecretString::from(random_token(24)));
        if options.tls {
            super::tls::write_server_certs(dir.path(), &data)?;
            os_user.chown_tree(&data)?;
        }
        let mut last_err = None;
        for _attempt in 0..5 {
            let port = free_port()?;
            write_config(&data, &sock, port, &options)?;
            match Keeper::start(&bin, &data, dir.path(), &os_user) {
                Ok(keeper) => {
                    let pg = LocalPostgres {
                        dir,
                        port,
                        options,
                        password,
                        bin,
                        major,
                        postmaster: Mutex::new(Some(keeper)),
                    };
                    pg.bootstrap()?;
                    return Ok(pg);
                }
                Err(e @ SandboxError::Failed { .. })
                    if e.to_string().contains("could not bind")
                        || e.to_string().contains("in use") =>
                {
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("five failed attempts leave an error"))
    }

    /// Creates roles, the database and (optionally) `heroku_ext`, as the
    /// superuser over the cluster's Unix socket.
    fn bootstrap(&self) -> Result<(), SandboxError> {
        let o = &self.options;
        let owner = quote_ident(&o.owner);
        let pw = quote_literal(self.password.expose_secret());
        let mut script = String::new();
        match o.shape {
            Shape::Heroku => script.push_str(&format!(
                "CREATE ROLE {owner} LOGIN PASSWORD {pw} NOSUPERUSER NOCREATEDB NOCREATEROLE;\n"
            )),
            Shape::Rds => script.push_str(&format!(
                "CREATE ROLE rds_superuser NOLOGIN;\n\
                 CREATE ROLE {owner} LOGIN PASSWORD {pw} NOSUPERUSER CREATEDB CREATEROLE;\n\
                 GRANT rds_superuser TO {owner} WITH ADMIN OPTION;\n"
            )),
        }
        script.push_str(&format!(
            "CREATE DATABASE {} OWNER {owner};\n",
            quote_ident(&o.database)
        ));
        self.psql_superuser("postgres", &script, "creating the owner role and database")?;
        if o.heroku_ext {
            self.psql_superuser(
                &o.database,
                "CREATE SCHEMA heroku_ext;\n\
                 GRANT USAGE, CREATE ON SCHEMA heroku_ext TO PUBLIC;\n\
                 CREATE EXTENSION pg_stat_statements WITH SCHEMA heroku_ext;\n",
                "creating heroku_ext with pg_stat_statements",
            )?;
        }
        Ok(())
    }

    /// Runs SQL as the superuser with `psql` over the Unix socket. The
    /// script goes through stdin, so nothing secret reaches `ps`.
    fn psql_superuser(&self, database: &str, sql: &str, what: &str) -> Result<(), SandboxError> {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.socket_dir())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(io_err("running psql"))?;
        {
            use io::Write;
            let mut stdin = child.stdin.take().expect("stdin is piped");
            stdin
                .write_all(sql.as_bytes())
                .map_err(io_err("writing to psql"))?;
        }
        let out = child.wait_with_output().map_err(io_err("running psql"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(SandboxError::Sql {
                sql: what.to_string(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The owner role's name.
    pub fn owner(&self) -> &str {
        &self.options.owner
    }

    /// The owner's password.
    pub fn password(&self) -> &SecretString {
        &self.password
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        &self.options.database
    }

    /// What the cluster imitates.
    pub fn shape(&self) -> Shape {
        self.options.shape
    }

    /// The server's major version (e.g. 15).
    pub fn major_version(&self) -> u32 {
        self.major
    }

    /// The directory holding the PostgreSQL binaries used.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The directory of the server's Unix socket (superuser access).
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// The server log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The CA certificate that signed the server's certificate (for
    /// `sslrootcert`); `None` when TLS is off.
    pub fn ca_cert_path(&self) -> Option<PathBuf> {
        self.options.tls.then(|| self.dir.path().join("ca.crt"))
    }

    /// The owner's connection URL to the database, **with** the password,
    /// `sslmode=require` when TLS is on (else `disable`).
    pub fn url(&self) -> SecretString {
        let mode = if self.options.tls {
            "require"
        } else {
            "disable"
        };
        self.url_for(&self.options.database, mode)
    }

    /// The owner's connection URL to `database` with the given `sslmode`,
    /// with the password.
    pub fn url_for(&self, database: &str, sslmode: &str) -> SecretString {
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        SecretString::from(format!(
            "postgres://{}:{}@127.0.0.1:{}/{}?sslmode={sslmode}",
            enc(&self.options.owner),
            enc(self.password.expose_secret()),
            self.port,
            enc(database),
        ))
    }

    /// A libpq connection string for the superuser `postgres` over the Unix
    /// socket (no password needed; nothing secret in it).
    pub fn superuser_conninfo(&self, database: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={}",
            self.socket_dir().display(),
            self.port,
            database
        )
    }

    /// Connects as the superuser over the Unix socket to `database`. The
    /// connection task is spawned on the current runtime.
    pub async fn superuser_client(
        &self,
        database: &str,
    ) -> Result<tokio_postgres::Client, SandboxError> {
        let (client, conn) =
            tokio_postgres::connect(&self.superuser_conninfo(database), tokio_postgres::NoTls)
                .await
                .map_err(|e| SandboxError::Failed {
                    what: format!("superuser connection to {database}"),
                    log_tail: e.to_string(),
                })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Runs SQL statements as the superuser in `database`.
    pub async fn superuser_execute(&self, database: &str, sql: &str) -> Result<(), SandboxError> {
        let client = self.superuser_client(database).await?;
        client
            .batch_execute(sql)
            .await
            .map_err(|e| SandboxError::Sql {
                sql: sql.chars().take(200).collect(),
                message: db_message(&e),
            })
    }

    /// Connects as the owner to the owner's database over TLS (without
    /// verifying the certificate) or plain TCP when TLS is off.
    pub async fn owner_client(&self) -> Result<tokio_postgres::Client, SandboxError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(&self.options.owner)
            .password(self.password.expose_secret())
            .dbname(&self.options.database);
        let fail = |e: &dyn fmt::Display| SandboxError::Failed {
            what: format!("owner connection to {}", self.options.database),
            log_tail: e.to_string(),
        };
        if self.options.tls {
            let tls = native_tls::TlsConnector::builder()
                .danger_accept_invalid_certs(true)
                .danger_accept_invalid_hostnames(true)
                .build()
                .map_err(|e| fail(&e))?;
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let (client, conn) = config
                .connect(postgres_native_tls::MakeTlsConnector::new(tls))
                .await
                .map_err(|e| fail(&e))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(client)
        } else {
            let (client, conn) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| fail(&e))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(client)
        }
    }

    /// Drops and re-creates the owner's database, empty. Sessions still
    /// connected to it are terminated.
    pub async fn reset_database(&self) -> Result<(), SandboxError> {
        let db = quote_ident(&self.options.database);
        let owner = quote_ident(&self.options.owner);
        let client = self.superuser_client("postgres").await?;
        for sql in [
            format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
            format!("CREATE DATABASE {db} OWNER {owner}"),
        ] {
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| SandboxError::Sql {
                    sql: sql.clone(),
                    message: db_message(&e),
                })?;
        }
        Ok(())
    }

    /// Stops the server (fast shutdown) and waits for it to exit. Dropping
    /// does the same; this form reports failures.
    pub fn stop(&self) -> Result<(), SandboxError> {
        let mut guard = self.postmaster.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(keeper) = guard.take() {
            let _ = keeper.stop.send(());
            keeper.thread.join().map_err(|_| SandboxError::Failed {
                what: "stopping postgres".into(),
                log_tail: "the keeper thread panicked".into(),
            })?;
        }
        Ok(())
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The server's message for a failed statement, without the driver's
/// generic prefix.
fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

/// Where the PostgreSQL server binaries are: `HEROKURDS_PGBIN` (unless
/// empty), else herokurds' one search ([`herokurds_core::pg::binaries`]):
/// the directory of `initdb` on `PATH`, then the newest
/// `/usr/lib/postgresql/*/bin`.
pub(crate) fn find_pg_bin() -> Result<PathBuf, SandboxError> {
    find_pg_bin_in(
        std::env::var_os("HEROKURDS_PGBIN")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
        std::env::var_os("PATH"),
        Path::new(binaries::VERSIONS_ROOT),
    )
}

/// [`find_pg_bin`] with its three places given. A `HEROKURDS_PGBIN` that
/// lacks the binaries is an error naming it, not a silent fall-back to
/// another version.
fn find_pg_bin_in(
    pgbin: Option<PathBuf>,
    path: Option<std::ffi::OsString>,
    versions_root: &Path,
) -> Result<PathBuf, SandboxError> {
    const PROGRAMS: [&str; 3] = ["initdb", "postgres", "psql"];
    match binaries::search_in(pgbin.as_deref(), &PROGRAMS, path.as_deref(), versions_root) {
        Ok(dirs) => Ok(dirs.into_iter().next().expect("search finds one or fails")),
        Err(BinariesError::NotInDir { program, dir }) => Err(SandboxError::MissingProgram {
            program,
            searched: format!(
                "HEROKURDS_PGBIN={}; unset it to search PATH and {}/*/bin",
                dir.display(),
                versions_root.display()
            ),
            package: "postgresql".into(),
        }),
        Err(_) => Err(SandboxError::MissingProgram {
            program: "initdb".into(),
            searched: format!(
                "HEROKURDS_PGBIN unset, PATH, {}/*/bin",
                versions_root.display()
            ),
            package: "postgresql".into(),
        }),
    }
}

fn server_major(bin: &Path) -> Result<u32, SandboxError> {
    let out = Command::new(bin.join("postgres"))
        .arg("--version")
        .output()
        .map_err(io_err("running postgres --version"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.split('.').next()?.parse().ok())
        .ok_or_else(|| SandboxError::Failed {
            what: "reading the server version".into(),
            log_tail: text.to_string(),
        })
}

/// The OS account the server runs as: ourselves, or `postgres` when we are
/// root (the server refuses to run as root).
struct OsUser {
    ids: Option<(u32, u32)>,
    name: String,
}

impl OsUser {
    fn current_or_postgres() -> Result<Self, SandboxError> {
        if unsafe { libc::geteuid() } != 0 {
            return Ok(OsUser {
                ids: None,
                name: std::env::var("USER").unwrap_or_else(|_| "current user".into()),
            });
        }
        let name = std::env::var("HEROKURDS_PG_OS_USER").unwrap_or_else(|_| "postgres".into());
        let cname = std::ffi::CString::new(name.clone()).expect("user name has no NUL");
        let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
        if pw.is_null() {
            return Err(SandboxError::MissingProgram {
                program: format!("OS user `{name}` (the server cannot run as root)"),
                searched: "/etc/passwd".into(),
                package: "postgresql".into(),
            });
        }
        let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
        Ok(OsUser {
            ids: Some((uid, gid)),
            name,
        })
    }

    fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new(program.as_ref());
        if let Some((uid, gid)) = self.ids {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn chown_tree(&self, path: &Path) -> Result<(), SandboxError> {
        let Some((uid, gid)) = self.ids else {
            return Ok(());
        };
        let walk = |p: &Path| std::os::unix::fs::lchown(p, Some(uid), Some(gid));
        fn visit(p: &Path, f: &dyn Fn(&Path) -> io::Result<()>) -> io::Result<()> {
            f(p)?;
            if p.is_dir() && !p.is_symlink() {
                for e in fs::read_dir(p)? {
                    visit(&e?.path(), f)?;
                }
            }
            Ok(())
        }
        visit(path, &walk).map_err(io_err(format!(
            "giving {} to OS user {}",
            path.display(),
            self.name
        )))
    }
}

/// The `initdb` template for this PostgreSQL version and OS user, made
/// once and cached under the temp dir (made aside and renamed into place, so
/// concurrent test processes never see a half-made template).
fn template_dir(bin: &Path, major: u32, user: &OsUser) -> Result<PathBuf, SandboxError> {
    let uid = user
        .ids
        .map(|(u, _)| u)
        .unwrap_or_else(|| unsafe { libc::geteuid() });
    let root = std::env::temp_dir().join(format!("herokurds-pg-template-{major}-{uid}-v1"));
    if root.join("data").join("PG_VERSION").is_file() {
        return Ok(root.join("data"));
    }
    let staging = tempfile::Builder::new()
        .prefix("herokurds-pg-template-")
        .tempdir()
        .map_err(io_err("creating the initdb template dir"))?;
    fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755))
        .map_err(io_err("opening the initdb template dir"))?;
    let data = staging.path().join("data");
    fs::create_dir(&data).map_err(io_err("creating the template data dir"))?;
    user.chown_tree(&data)?;
    let out = user
        .command(bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=reject",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "-N",
        ])
        .output()
        .map_err(io_err("running initdb"))?;
    if !out.status.success() {
        return Err(SandboxError::Failed {
            what: format!("initdb as OS user {}", user.name),
            log_tail: tail(&String::from_utf8_lossy(&out.stderr), 20),
        });
    }
    let staged = staging.keep();
    match fs::rename(&staged, &root) {
        Ok(()) => {}
        // Another process won the race: use theirs, drop ours.
        Err(_) if root.join("data").join("PG_VERSION").is_file() => {
            let _ = fs::remove_dir_all(&staged);
        }
        Err(e) => return Err(io_err("caching the initdb template")(e)),
    }
    Ok(root.join("data"))
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), SandboxError> {
    fn visit(from: &Path, to: &Path) -> io::Result<()> {
        let meta = fs::symlink_metadata(from)?;
        if meta.is_dir() {
            fs::create_dir(to)?;
            fs::set_permissions(to, meta.permissions())?;
            for e in fs::read_dir(from)? {
                let e = e?;
                visit(&e.path(), &to.join(e.file_name()))?;
            }
        } else if meta.file_type().is_symlink() {
            symlink(fs::read_link(from)?, to)?;
        } else {
            fs::copy(from, to)?;
        }
        Ok(())
    }
    visit(from, to).map_err(io_err(format!(
        "copying the initdb template to {}",
        to.display()
    )))
}

fn write_config(
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

impl Keeper {
    /// Starts the postmaster from a new thread and waits until it is ready.
    fn start(bin: &Path, data: &Path, dir: &Path, user: &OsUser) -> Result<Keeper, SandboxError> {
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

/// SIGINT ("fast" shutdown), then SIGKILL after 30 s.
fn fast_shutdown(child: &mut Child) {
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

/// A loopback port nobody listens on right now.
pub(crate) fn free_port() -> Result<u16, SandboxError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io_err("finding a free port"))?;
    Ok(l.local_addr()
        .map_err(io_err("finding a free port"))?
        .port())
}

/// A random alphanumeric string (passwords, names).
pub(crate) fn random_token(len: usize) -> String {
    use rand::distr::Alphanumeric;
    use rand::Rng;
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory with empty files named like the server binaries.
    fn fake_bin(dir: &Path, programs: &[&str]) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        for p in programs {
            fs::write(dir.join(p), "").unwrap();
        }
        dir.to_path_buf()
    }

    #[test]
    fn a_pgbin_without_the_binaries_is_named_not_skipped() {
        let root = tempfile::tempdir().unwrap();
        fake_bin(&root.path().join("15/bin"), &["initdb", "postgres", "psql"]);
        let wrong = fake_bin(&root.path().join("wrong"), &["initdb", "psql"]);
        let err = find_pg_bin_in(Some(wrong.clone()), None, root.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("postgres not found"), "{text}");
        assert!(
            text.contains(&format!("HEROKURDS_PGBIN={}", wrong.display())),
            "{text}"
        );
        assert!(text.contains("`postgresql`"), "{text}");
        let right = root.path().join("15/bin");
        assert_eq!(
            find_pg_bin_in(Some(right.clone()), None, root.path()).unwrap(),
            right
        );
    }

    #[test]
    fn path_then_the_newest_installed_version() {
        let root = tempfile::tempdir().unwrap();
        let all = ["initdb", "postgres", "psql"];
        for v in ["9", "14", "16"] {
            fake_bin(&root.path().join(v).join("bin"), &all);
        }
        fake_bin(&root.path().join("17/bin"), &["initdb"]); // incomplete
        let newest = find_pg_bin_in(None, None, root.path()).unwrap();
        assert_eq!(newest, root.path().join("16/bin"));

        let on_path = fake_bin(&root.path().join("custom"), &all);
        let path = std::env::join_paths([root.path().join("nothing"), on_path.clone()]).unwrap();
        let found = find_pg_bin_in(None, Some(path), root.path()).unwrap();
        assert_eq!(found, fs::canonicalize(on_path).unwrap());
    }

    #[test]
    fn nothing_installed_names_every_place_searched_and_the_package() {
        let root = tempfile::tempdir().unwrap();
        let err = find_pg_bin_in(None, Some("".into()), root.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("initdb not found"), "{text}");
        assert!(text.contains("PATH"), "{text}");
        assert!(
            text.contains(&format!("{}/*/bin", root.path().display())),
            "{text}"
        );
        assert!(
            text.contains("install the Debian package `postgresql`"),
            "{text}"
        );
    }
}
