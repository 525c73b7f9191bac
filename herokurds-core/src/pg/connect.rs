//! Connecting to PostgreSQL from a [`DatabaseUrl`], with TLS as its
//! `sslmode` says and a diagnosis in words when it fails.
//!
//! `psql` tells the runbook's operator "FATAL: password authentication
//! failed" and leaves them to work out which of the hand-copied parts is
//! wrong. [`ConnectError`] names the part instead: the user whose password
//! was refused, the database that does not exist, the host and port that
//! did not answer, the `sslmode` the server disagrees with, the
//! `sslrootcert` that did not verify the certificate.
//!
//! TLS follows libpq, with one difference: a URL without `sslmode` means
//! `require`, not libpq's `prefer`, so no session falls back to plaintext
//! unless its URL says it may. `disable` never encrypts; `allow` tries
//! plain, then TLS; `prefer` tries TLS, then plain; `require` encrypts
//! without verifying (unless `sslrootcert` is given: then, like libpq, the
//! chain is verified); `verify-ca` verifies the chain against
//! `sslrootcert` (the system's roots when absent or `system`);
//! `verify-full` also checks the host name. Whether a session is
//! encrypted ([`Connected::tls`]) is known from the client side: which
//! attempt succeeded, never what the server says about itself.
//!
//! Over TLS, SCRAM channel binding is required unless the URL's
//! `channel_binding` says otherwise: a server that authenticates with SCRAM
//! over TLS always offers it, so a session without it was either
//! authenticated another way (md5, password, trust) or intercepted. That
//! fails with [`ConnectError::NoChannelBinding`], which says how to allow it.

use std::error::Error as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use native_tls::{Certificate, Identity, TlsConnector};
use postgres_native_tls::MakeTlsConnector;
use secrecy::ExposeSecret;
use tokio_postgres::config::{ChannelBinding, SslNegotiation, TargetSessionAttrs};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};

use crate::url::{DatabaseUrl, Host, Param, SslMode};

/// How long [`connect`] waits for a whole connection when the URL has no
/// `connect_timeout` (libpq would wait forever; an operator in a
/// maintenance window should not).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// TCP keepalive idle time when the URL sets no `keepalives_idle`: a
/// session idle through a long copy (an exported snapshot, a reader
/// waiting for its turn) keeps NAT and load-balancer idle timers from
/// dropping it, and a dead peer is noticed.
const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(30);

/// What `application_name` is when the URL names none.
const DEFAULT_APPLICATION_NAME: &str = "herokurds";

/// Added to a wrong-password diagnosis when the password was literally `***`.
const REDACTED_HINT: &str = ". The URL's password is ***: this is a redacted URL (as printed \
     without --reveal); use the full one, e.g. from the env file herokurds-url build --env-file wrote";

/// Where to find the RDS certificate bundle, for hints.
pub(crate) const RDS_BUNDLE_URL: &str =
    "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem";

/// An open session: the client, and whether the connection is encrypted.
///
/// The connection itself runs on a task spawned on the current tokio
/// runtime; it ends when the client is dropped.
pub struct Connected {
    client: Client,
    tls: bool,
}

impl Connected {
    /// The client, to run queries and COPY on.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The client, owned.
    pub fn into_client(self) -> Client {
        self.client
    }

    /// Whether the connection is encrypted with TLS, as the client
    /// negotiated it (not as the server reports it).
    pub fn tls(&self) -> bool {
        self.tls
    }
}

/// Why a connection could not be made, in terms of the URL part to fix.
///
/// Messages name the user, host, port, database and files involved; they
/// never contain the password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server refused the password (SQLSTATE 28P01).
    #[error(
        "password authentication failed for user {user:?} on {server}: the password in the URL \
         is not this user's (or no such user exists). Heroku and RDS passwords are per app and per environment (staging \
         and production differ, and Heroku changes them on a credential rotation): take it from \
         this app's DATABASE_URL, or from this stack's RDS secret{}",
        if *redacted { REDACTED_HINT } else { "" }
    )]
    WrongPassword {
        /// The user whose password was refused.
        user: String,
        /// `host:port`.
        server: String,
        /// Whether the URL's password was `***`: a redacted URL pasted back.
        redacted: bool,
    },
    /// The database does not exist (SQLSTATE 3D000).
    #[error(
        "database {dbname:?} does not exist on {server}: check the dbname part of the URL \
         (Heroku: the path of the app's DATABASE_URL; RDS: the instance's dbName output)"
    )]
    UnknownDatabase {
        /// The database asked for.
        dbname: String,
        /// `host:port`.
        server: String,
    },
    /// The role does not exist (SQLSTATE 28000).
    #[error("role {user:?} does not exist on {server}: check the user part of the URL")]
    UnknownRole {
        /// The user asked for.
        user: String,
        /// `host:port`.
        server: String,
    },
    /// The host name does not resolve.
    #[error("cannot resolve host {host:?}: {reason} (check the host part of the URL)")]
    Dns {
        /// The host name.
        host: String,
        /// The resolver's answer.
        reason: String,
        /// Whether the resolver said the failure was temporary.
        temporary: bool,
    },
    /// Nothing listens on the port (connection refused).
    #[error(
        "connection refused by {server}: no server listens there (check the host and port parts \
         of the URL, and that the server is running)"
    )]
    Refused {
        /// `host:port`.
        server: String,
    },
    /// No route to the host.
    #[error(
        "{server} is unreachable ({reason}): check the network path (VPC, subnet, VPN) to the host"
    )]
    Unreachable {
        /// `host:port`.
        server: String,
        /// The operating system's words.
        reason: String,
    },
    /// No answer within the timeout.
    #[error(
        "timed out after {}s connecting to {server}: nothing answered (a firewall or security \
         group dropping packets, a wrong host, or a server too busy to answer; RDS must allow \
         inbound TCP on its port from here; raise connect_timeout if the server is just slow)",
        after.as_secs()
    )]
    TimedOut {
        /// `host:port`.
        server: String,
        /// How long it waited.
        after: Duration,
    },
    /// The server demands TLS but the URL's `sslmode` forbids it.
    #[error(
        "{server} refuses unencrypted connections (pg_hba: no encryption) but the URL has \
         sslmode={ssl_mode}: use sslmode=require (Heroku), or sslmode=verify-full with \
         sslrootcert=<the RDS bundle> (RDS)"
    )]
    TlsRequired {
        /// `host:port`.
        server: String,
        /// The URL's `sslmode`.
        ssl_mode: SslMode,
    },
    /// The URL demands TLS but the server does not offer it.
    #[error(
        "{server} does not accept TLS, and sslmode={ssl_mode} requires it (require is herokurds' \
         default when the URL gives no sslmode): the server has ssl=off (or this is not the server \
         you meant); write sslmode=prefer or disable in the URL only if the network path is private"
    )]
    TlsRefused {
        /// `host:port`.
        server: String,
        /// The URL's `sslmode`.
        ssl_mode: SslMode,
    },
    /// The server's certificate did not verify.
    #[error(
        "the TLS certificate of {server} was rejected ({reason}) under sslmode={ssl_mode}, \
         checked against {}{}",
        describe_roots(root_cert.as_deref()),
        hostname_hint(reason, host)
    )]
    CertificateRejected {
        /// `host:port`.
        server: String,
        /// The host name or address the certificate had to match.
        host: String,
        /// The URL's `sslmode`.
        ssl_mode: SslMode,
        /// The `sslrootcert` file, if the URL names one.
        root_cert: Option<PathBuf>,
        /// The verifier's words (`self-signed certificate`, `hostname mismatch`, ...).
        reason: String,
    },
    /// The server authenticated without SCRAM channel binding over TLS,
    /// which herokurds requires unless the URL says `channel_binding=prefer`
    /// or `disable`.
    #[error(
        "{server} authenticated user {user:?} without SCRAM channel binding, which herokurds \
         requires over TLS: the server uses md5, password or trust authentication for this user, \
         or something on the network path intercepted the connection. If the server is known to \
         authenticate this way, give the user a SCRAM password (password_encryption = \
         'scram-sha-256', then ALTER ROLE ... PASSWORD), or write channel_binding=prefer in the \
         URL, with sslmode=verify-full so the server is still verified (herokurds run: give the \
         URL through [source] or [target] url_env to add it)"
    )]
    NoChannelBinding {
        /// `host:port`.
        server: String,
        /// The user.
        user: String,
    },
    /// The TLS handshake failed for another reason.
    #[error("TLS handshake with {server} failed: {reason}")]
    Tls {
        /// `host:port`.
        server: String,
        /// The TLS library's words.
        reason: String,
    },
    /// A certificate or key file named in the URL cannot be used.
    #[error("cannot use {param} file {}: {reason}", path.display())]
    TlsFile {
        /// `sslrootcert`, `sslcert` or `sslkey`.
        param: Param,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The server rejected the session for another reason (SQLSTATE given).
    #[error(
        "{server} rejected user {user:?} for database {dbname:?}: {message} (SQLSTATE {code})"
    )]
    Rejected {
        /// `host:port`.
        server: String,
        /// The user.
        user: String,
        /// The database.
        dbname: String,
        /// The SQLSTATE.
        code: String,
        /// The server's message.
        message: String,
    },
    /// A query on the new session failed.
    #[error("query on the new session failed ({what}): {reason}")]
    Query {
        /// What was being asked.
        what: &'static str,
        /// The driver's words.
        reason: String,
    },
    /// Anything else that went wrong while connecting.
    #[error("connecting to {server} failed: {reason}")]
    Other {
        /// `host:port`.
        server: String,
        /// The driver's words.
        reason: String,
    },
}

impl ConnectError {
    /// Whether trying again later may succeed (a server starting, full, or
    /// not reachable yet), as opposed to a URL that must be fixed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectError::Dns { temporary, .. } => *temporary,
            ConnectError::Refused { .. }
            | ConnectError::Unreachable { .. }
            | ConnectError::TimedOut { .. }
            | ConnectError::Other { .. } => true,
            ConnectError::Rejected { code, .. } => {
                // 53xxx insufficient resources (too many connections),
                // 57P03 cannot connect now (starting up, shutting down),
                // 08xxx connection exceptions.
                code.starts_with("53") || code == "57P03" || code.starts_with("08")
            }
            _ => false,
        }
    }

    /// The SQLSTATE the server answered with, if it answered with one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            ConnectError::WrongPassword { .. } => Some("28P01"),
            ConnectError::UnknownDatabase { .. } => Some("3D000"),
            ConnectError::UnknownRole { .. } | ConnectError::TlsRequired { .. } => Some("28000"),
            ConnectError::Rejected { code, .. } => Some(code),
            _ => None,
        }
    }
}

fn describe_roots(root_cert: Option<&Path>) -> String {
    match root_cert {
        Some(path) if path == Path::new("system") => "the system's trusted roots".into(),
        Some(path) => format!("sslrootcert {}", path.display()),
        None => format!(
            "the system's trusted roots (no sslrootcert in the URL; for RDS download {RDS_BUNDLE_URL} \
             and add sslrootcert=<that file>)"
        ),
    }
}

fn hostname_hint(reason: &str, host: &str) -> String {
    if reason.contains("hostname mismatch") || reason.contains("IP address mismatch") {
        format!(
            "; the certificate does not name {host:?}: connect with the name it was issued for \
             (the RDS endpoint address), or use sslmode=verify-ca"
        )
    } else {
        String::new()
    }
}

/// The tokio-postgres configuration for `url`, TLS aside.
///
/// `sslmode` maps to the driver's three modes (`allow` to `disable`,
/// `verify-*` to `require`; no `sslmode` is `require`); the verification
/// those modes imply lives in the TLS connector [`connect`] builds, so use
/// [`connect`] rather than this configuration alone when TLS matters.
/// `channel_binding` is `require` when the mode always encrypts and the
/// URL does not say otherwise. `application_name` defaults to
/// `herokurds`; TCP keepalives are on, probing after 30 s idle unless the
/// URL's `keepalives*` parameters say otherwise.
pub fn pg_config(url: &DatabaseUrl) -> Config {
    use tokio_postgres::config::SslMode as PgSslMode;
    let mut config = Config::new();
    config
        .keepalives(true)
        .keepalives_idle(DEFAULT_KEEPALIVES_IDLE)
        .user(url.user())
        .password(url.password().expose_secret())
        .host(url.host().to_connect_string())
        .port(url.port())
        .dbname(url.dbname())
        .ssl_mode(match url.ssl_mode() {
            SslMode::Disable | SslMode::Allow => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            _ => PgSslMode::Require,
        })
        .application_name(
            url.application_name()
                .or(url.param(Param::FallbackApplicationName))
                .unwrap_or(DEFAULT_APPLICATION_NAME),
        );
    if url.ssl_mode().requires_tls() {
        config.channel_binding(ChannelBinding::Require);
    }
    let secs = |v: &str| Duration::from_secs(v.parse().unwrap_or(0));
    for (param, value) in url.params() {
        match param {
            Param::ConnectTimeout => {
                if let Some(timeout) = effective_timeout(url) {
                    config.connect_timeout(timeout);
                }
            }
            Param::Options => {
                config.options(value);
            }
            Param::TargetSessionAttrs => {
                config.target_session_attrs(match value {
                    "read-write" => TargetSessionAttrs::ReadWrite,
                    "read-only" => TargetSessionAttrs::ReadOnly,
                    _ => TargetSessionAttrs::Any,
                });
            }
            Param::Keepalives => {
                config.keepalives(value != "0");
            }
            Param::KeepalivesIdle => {
                config.keepalives_idle(secs(value));
            }
            Param::KeepalivesInterval => {
                config.keepalives_interval(secs(value));
            }
            Param::KeepalivesCount => {
                config.keepalives_retries(value.parse().unwrap_or(0));
            }
            Param::TcpUserTimeout => {
                config.tcp_user_timeout(Duration::from_millis(value.parse().unwrap_or(0)));
            }
            Param::ChannelBinding => {
                config.channel_binding(match value {
                    "disable" => ChannelBinding::Disable,
                    "require" => ChannelBinding::Require,
                    _ => ChannelBinding::Prefer,
                });
            }
            Param::SslNegotiation => {
                config.ssl_negotiation(match value {
                    "direct" => SslNegotiation::Direct,
                    _ => SslNegotiation::Postgres,
                });
            }
            Param::SslMode
            | Param::SslRootCert
            | Param::SslCert
            | Param::SslKey
            | Param::ApplicationName
            | Param::FallbackApplicationName => {}
        }
    }
    config
}

/// The whole-connection timeout: `connect_timeout` (at least 2 s, as in
/// libpq; 0 is forever), else [`DEFAULT_CONNECT_TIMEOUT`].
fn effective_timeout(url: &DatabaseUrl) -> Option<Duration> {
    match url.connect_timeout() {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d.max(Duration::from_secs(2))),
        None => Some(DEFAULT_CONNECT_TIMEOUT),
    }
}

/// Opens a session as `url` says, spawning its connection task on the
/// current tokio runtime.
///
/// Waits at most `connect_timeout` (or [`DEFAULT_CONNECT_TIMEOUT`]) in all.
///
/// # Panics
/// Outside a tokio runtime.
pub async fn connect(url: &DatabaseUrl) -> Result<Connected, ConnectError> {
    let tls = tls_connector(url)?;
    let attempts = async {
        resolve(url).await?;
        match url.ssl_mode() {
            SslMode::Disable => attempt(url, Plain, &tls).await,
            SslMode::Allow => match attempt(url, Plain, &tls).await {
                Err(ConnectError::TlsRequired { .. }) => attempt(url, Encrypted, &tls).await,
                other => other,
            },
            // TLS first, plain when TLS failed: two attempts rather than
            // the driver's `prefer`, so the client knows which it got.
            SslMode::Prefer => match attempt(url, Encrypted, &tls).await {
                Err(
                    tls_error @ (ConnectError::TlsRefused { .. }
                    | ConnectError::Tls { .. }
                    | ConnectError::CertificateRejected { .. }),
                ) => attempt(url, Plain, &tls).await.map_err(|plain_error| {
                    if matches!(tls_error, ConnectError::TlsRefused { .. }) {
                        plain_error
                    } else {
                        tls_error
                    }
                }),
                other => other,
            },
            _ => attempt(url, Encrypted, &tls).await,
        }
    };
    match effective_timeout(url) {
        None => attempts.await,
        Some(after) => tokio::time::timeout(after, attempts)
            .await
            .unwrap_or_else(|_| {
                Err(ConnectError::TimedOut {
                    server: server(url),
                    after,
                })
            }),
    }
}

/// The TLS stance of one attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Attempt {
    Plain,
    Encrypted,
}
use Attempt::{Encrypted, Plain};

async fn attempt(
    url: &DatabaseUrl,
    how: Attempt,
    tls: &MakeTlsConnector,
) -> Result<Connected, ConnectError> {
    use tokio_postgres::config::SslMode as PgSslMode;
    let mut config = pg_config(url);
    config.ssl_mode(match how {
        Plain => PgSslMode::Disable,
        Encrypted => PgSslMode::Require,
    });
    tracing::debug!(url = %url, tls = ?how, "connecting");
    let (client, connection) = config
        .connect(tls.clone())
        .await
        .map_err(|e| diagnose(&e, url))?;
    let server_name = server(url);
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(server = %server_name, error = %e, "PostgreSQL connection ended with an error");
        }
    });
    Ok(Connected {
        client,
        tls: how == Encrypted,
    })
}

/// `host:port` as written in messages (IPv6 in brackets).
fn server(url: &DatabaseUrl) -> String {
    format!("{}:{}", url.host(), url.port())
}

/// Resolves a host name first, so a DNS failure is named as one.
async fn resolve(url: &DatabaseUrl) -> Result<(), ConnectError> {
    let Host::Name(name) = url.host() else {
        return Ok(());
    };
    let dns_error = |reason: String| ConnectError::Dns {
        host: name.clone(),
        temporary: reason.contains("Temporary") || reason.contains("temporary"),
        reason,
    };
    match tokio::net::lookup_host((name.as_str(), url.port())).await {
        Ok(mut addrs) => match addrs.next() {
            Some(_) => Ok(()),
            None => Err(dns_error("no address for this name".into())),
        },
        Err(e) => Err(dns_error(e.to_string())),
    }
}

/// What a TLS connector is built from. Connectors are cached by it for the
/// life of the process: building one loads the system's CA bundle, tens of
/// milliseconds of CPU that a transfer opening dozens of sessions would
/// otherwise pay for each of them.
#[derive(PartialEq, Eq)]
struct TlsSettings {
    /// Check the certificate chain (else accept any certificate).
    verify_chain: bool,
    /// Check the host name too (`verify-full`).
    verify_hostname: bool,
    /// The `sslrootcert` file's contents, when it replaces the system roots.
    roots: Option<Vec<u8>>,
    /// The `sslcert` and `sslkey` files' contents.
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Builds (or takes from the cache) the TLS connector `url`'s `sslmode`,
/// `sslrootcert`, `sslcert` and `sslkey` call for. The files are read
/// every time, so a replaced file is picked up.
fn tls_connector(url: &DatabaseUrl) -> Result<MakeTlsConnector, ConnectError> {
    /// A handful of entries at most (one per distinct TLS setup).
    static CACHE: std::sync::Mutex<Vec<(TlsSettings, TlsConnector)>> =
        std::sync::Mutex::new(Vec::new());
    let mode = url.ssl_mode();
    let root_cert = url.ssl_root_cert();
    let verify_chain = url.verifies_certificate();
    let roots_path = root_cert.filter(|p| verify_chain && *p != Path::new("system"));
    let key_path = url.param(Param::SslKey);
    let settings = TlsSettings {
        verify_chain,
        verify_hostname: mode == SslMode::VerifyFull,
        roots: roots_path
            .map(|path| read_tls_file(Param::SslRootCert, path))
            .transpose()?,
        identity: match (url.param(Param::SslCert), key_path) {
            (Some(cert), Some(key)) => Some((
                read_tls_file(Param::SslCert, Path::new(cert))?,
                read_tls_file(Param::SslKey, Path::new(key))?,
            )),
            _ => None,
        },
    };
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, connector)) = cache.iter().find(|(s, _)| *s == settings) {
        return Ok(MakeTlsConnector::new(connector.clone()));
    }
    let mut builder = TlsConnector::builder();
    if let (Some(path), Some(pem)) = (roots_path, &settings.roots) {
        let certs = Certificate::stack_from_pem(pem)
            .ok()
            .filter(|certs| !certs.is_empty())
            .ok_or_else(|| ConnectError::TlsFile {
                param: Param::SslRootCert,
                path: path.into(),
                reason: "no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)".into(),
            })?;
        builder.disable_built_in_roots(true);
        for cert in certs {
            builder.add_root_certificate(cert);
        }
    }
    builder.danger_accept_invalid_certs(!verify_chain);
    builder.danger_accept_invalid_hostnames(!settings.verify_hostname);
    if let (Some(key), Some((cert_pem, key_pem))) = (key_path, &settings.identity) {
        let identity =
            Identity::from_pkcs8(cert_pem, key_pem).map_err(|e| ConnectError::TlsFile {
                param: Param::SslKey,
                path: key.into(),
                reason: format!(
                    "{e} (sslkey must be an unencrypted PKCS#8 PEM key matching sslcert)"
                ),
            })?;
        builder.identity(identity);
    }
    let connector = builder.build().map_err(|e| ConnectError::Tls {
        server: server(url),
        reason: e.to_string(),
    })?;
    cache.push((settings, connector.clone()));
    Ok(MakeTlsConnector::new(connector))
}

fn read_tls_file(param: Param, path: &Path) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|e| ConnectError::TlsFile {
        param,
        path: path.into(),
        reason: e.to_string(),
    })
}

/// Turns a driver error into the diagnosis for `url`.
fn diagnose(err: &tokio_postgres::Error, url: &DatabaseUrl) -> ConnectError {
    let server = server(url);
    if let Some(db) = err.as_db_error() {
        let message = db.message();
        let code = db.code();
        return if *code == SqlState::INVALID_PASSWORD {
            ConnectError::WrongPassword {
                user: url.user().into(),
                server,
                redacted: url.password().expose_secret() == "***",
            }
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            ConnectError::UnknownDatabase {
                dbname: url.dbname().into(),
                server,
            }
        } else if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            && message.contains("no encryption")
        {
            ConnectError::TlsRequired {
                server,
                ssl_mode: url.ssl_mode(),
            }
        } else if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            && message.starts_with("role ")
            && message.ends_with("does not exist")
        {
            ConnectError::UnknownRole {
                user: url.user().into(),
                server,
            }
        } else {
            ConnectError::Rejected {
                server,
                user: url.user().into(),
                dbname: url.dbname().into(),
                code: code.code().into(),
                message: message.into(),
            }
        };
    }
    let cause = err.source().map(ToString::to_string).unwrap_or_default();
    // The driver's error kinds are private; this is its only words for it.
    if cause.contains("did not use channel binding") {
        return ConnectError::NoChannelBinding {
            server,
            user: url.user().into(),
        };
    }
    // The driver's error kinds are private; its TLS failures say so in their text.
    if err.to_string().contains("TLS handshake") {
        return if cause.contains("server does not support TLS") {
            ConnectError::TlsRefused {
                server,
                ssl_mode: url.ssl_mode(),
            }
        } else if cause.contains("certificate verify failed") {
            ConnectError::CertificateRejected {
                server,
                host: url.host().to_connect_string(),
                ssl_mode: url.ssl_mode(),
                root_cert: url.ssl_root_cert().map(Path::to_path_buf),
                reason: verify_reason(&cause),
            }
        } else {
            ConnectError::Tls {
                server,
                reason: cause,
            }
        };
    }
    let io_error = err.source().and_then(|s| s.downcast_ref::<io::Error>());
    match io_error.map(io::Error::kind) {
        Some(io::ErrorKind::ConnectionRefused) => ConnectError::Refused { server },
        Some(io::ErrorKind::TimedOut) => ConnectError::TimedOut {
            server,
            after: effective_timeout(url).unwrap_or_default(),
        },
        Some(io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable) => {
            ConnectError::Unreachable {
                server,
                reason: cause,
            }
        }
        _ => ConnectError::Other {
            server,
            reason: if cause.is_empty() {
                err.to_string()
            } else {
                format!("{err}: {cause}")
            },
        },
    }
}

/// The verifier's reason from an OpenSSL error text: the last `(...)`.
fn verify_reason(text: &str) -> String {
    text.rfind(" (")
        .and_then(|i| text[i + 2..].strip_suffix(')'))
        .unwrap_or("certificate verify failed")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> DatabaseUrl {
        s.parse().unwrap()
    }

    #[test]
    fn config_carries_every_part_and_param() {
        let config = pg_config(&url(
            "postgres://me:p%40ss@[::1]:6432/app?sslmode=verify-full&connect_timeout=1\
             &options=-c%20search_path%3Dx&keepalives=0&target_session_attrs=read-write",
        ));
        assert_eq!(config.get_user(), Some("me"));
        assert_eq!(config.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(
            config.get_hosts(),
            [tokio_postgres::config::Host::Tcp("::1".into())]
        );
        assert_eq!(config.get_ports(), [6432]);
        assert_eq!(config.get_dbname(), Some("app"));
        assert_eq!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        // libpq's minimum of 2 seconds.
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(2)));
        assert_eq!(config.get_options(), Some("-c search_path=x"));
        assert!(!config.get_keepalives());
        assert_eq!(
            config.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
        assert_eq!(config.get_application_name(), Some("herokurds"));
    }

    #[test]
    fn no_sslmode_means_tls_with_channel_binding() {
        use tokio_postgres::config::SslMode as PgSslMode;
        let config = pg_config(&url("postgres://u:p@h/d"));
        assert_eq!(config.get_ssl_mode(), PgSslMode::Require);
        assert_eq!(config.get_channel_binding(), ChannelBinding::Require);
        for (text, ssl, binding) in [
            (
                "postgres://u:p@h/d?sslmode=verify-full",
                PgSslMode::Require,
                ChannelBinding::Require,
            ),
            (
                "postgres://u:p@h/d?channel_binding=prefer",
                PgSslMode::Require,
                ChannelBinding::Prefer,
            ),
            (
                "postgres://u:p@h/d?sslmode=prefer",
                PgSslMode::Prefer,
                ChannelBinding::Prefer,
            ),
            (
                "postgres://u:p@h/d?sslmode=disable",
                PgSslMode::Disable,
                ChannelBinding::Prefer,
            ),
        ] {
            let config = pg_config(&url(text));
            assert_eq!(config.get_ssl_mode(), ssl, "{text}");
            assert_eq!(config.get_channel_binding(), binding, "{text}");
        }
    }

    #[test]
    fn keepalives_are_on_and_early_unless_the_url_says_otherwise() {
        let config = pg_config(&url("postgres://u:p@h/d"));
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), DEFAULT_KEEPALIVES_IDLE);
        let config = pg_config(&url("postgres://u:p@h/d?keepalives_idle=7"));
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(7));
    }

    #[test]
    fn application_name_falls_back() {
        let config = pg_config(&url("postgres://u:p@h/d?fallback_application_name=fb"));
        assert_eq!(config.get_application_name(), Some("fb"));
        let config = pg_config(&url(
            "postgres://u:p@h/d?fallback_application_name=fb&application_name=app",
        ));
        assert_eq!(config.get_application_name(), Some("app"));
    }

    #[test]
    fn timeouts_follow_libpq() {
        assert_eq!(
            effective_timeout(&url("postgres://u:p@h/d")),
            Some(DEFAULT_CONNECT_TIMEOUT)
        );
        assert_eq!(
            effective_timeout(&url("postgres://u:p@h/d?connect_timeout=0")),
            None
        );
        assert_eq!(
            effective_timeout(&url("postgres://u:p@h/d?connect_timeout=7")),
            Some(Duration::from_secs(7))
        );
    }

    #[test]
    fn a_missing_or_empty_root_cert_file_is_named() {
        let err = tls_connector(&url(
            "postgres://u:p@h/d?sslmode=verify-ca&sslrootcert=/no/such/bundle.pem",
        ))
        .err()
        .unwrap();
        assert!(matches!(
            err,
            ConnectError::TlsFile {
                param: Param::SslRootCert,
                ..
            }
        ));
        assert!(err.to_string().contains("/no/such/bundle.pem"), "{err}");
        let empty = tempfile::NamedTempFile::new().unwrap();
        let err = tls_connector(&url(&format!(
            "postgres://u:p@h/d?sslmode=verify-full&sslrootcert={}",
            empty.path().display()
        )))
        .err()
        .unwrap();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        // Without verification the file is not read.
        assert!(tls_connector(&url(
            "postgres://u:p@h/d?sslmode=prefer&sslrootcert=/no/such/bundle.pem"
        ))
        .is_ok());
    }

    #[test]
    fn verify_reason_is_the_last_parenthesis() {
        assert_eq!(
            verify_reason(
                "error:0A000086:SSL routines:tls_post_process_server_certificate:certificate \
                 verify failed:../ssl/statem/statem_clnt.c:1889: (self-signed certificate)"
            ),
            "self-signed certificate"
        );
        assert_eq!(verify_reason("garbage"), "certificate verify failed");
    }

    #[test]
    fn retryable_errors_are_the_transient_ones() {
        let server = "h:5432".to_string();
        assert!(ConnectError::Refused {
            server: server.clone()
        }
        .is_retryable());
        let wrong = ConnectError::WrongPassword {
            user: "u".into(),
            server: server.clone(),
            redacted: true,
        };
        assert!(!wrong.is_retryable());
        assert!(wrong.to_string().contains("redacted URL"), "{wrong}");
        let rejected = |code: &str| ConnectError::Rejected {
            server: server.clone(),
            user: "u".into(),
            dbname: "d".into(),
            code: code.into(),
            message: "m".into(),
        };
        assert!(rejected("53300").is_retryable());
        assert!(rejected("57P03").is_retryable());
        assert!(!rejected("42501").is_retryable());
    }

    #[tokio::test]
    async fn an_unresolvable_host_is_a_dns_failure() {
        let err = connect(&url("postgres://u:secret@no-such-host.invalid/d"))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, ConnectError::Dns { .. }), "{err:?}");
        assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
        assert!(!err.to_string().contains("secret"));
    }
}
