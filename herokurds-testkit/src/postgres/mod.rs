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
//!
//! Layout: options, errors and the cluster's handle here; which binaries
//! ([`discovery`]), the OS user ([`os_user`]), the cached `initdb` template
//! ([`template`]) and the server process ([`postmaster`]) in submodules.

use std::fmt;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use herokurds_core::url::DatabaseUrl;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use secrecy::{ExposeSecret, SecretString};
use tempfile::TempDir;

mod discovery;
mod os_user;
mod postmaster;
mod template;

use discovery::{find_pg_bin, server_major};
use os_user::OsUser;
use postmaster::{write_config, Keeper};
use template::{copy_tree, template_dir};

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

    /// The owner's connection URL to the database as a [`DatabaseUrl`]:
    /// the same as [`url`](Self::url), typed.
    ///
    /// # Panics
    /// Never for the URLs a cluster makes (it is checked by a test).
    pub fn database_url(&self) -> DatabaseUrl {
        self.url()
            .expose_secret()
            .parse()
            .expect("a sandbox cluster's URL parses")
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

    /// Stops the server (fast shutdown) and waits for it to exit, off the
    /// async runtime's threads. Dropping does the same, blocking; this form
    /// reports failures. Stopping a stopped cluster does nothing.
    pub async fn stop(&self) -> Result<(), SandboxError> {
        let Some(keeper) = self.take_keeper() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || keeper.stop())
            .await
            .map_err(|e| SandboxError::Failed {
                what: "stopping postgres".into(),
                log_tail: e.to_string(),
            })?
    }

    /// The blocking form of [`stop`](Self::stop), for non-async callers.
    pub fn stop_blocking(&self) -> Result<(), SandboxError> {
        self.take_keeper().map_or(Ok(()), Keeper::stop)
    }

    fn take_keeper(&self) -> Option<Keeper> {
        let mut guard = self.postmaster.lock().unwrap_or_else(|p| p.into_inner());
        guard.take()
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        let _ = self.stop_blocking();
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
