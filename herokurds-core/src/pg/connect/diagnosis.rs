//! Why a connection failed, in terms of the URL part to fix: the driver's
//! error turned into a [`ConnectError`].

use std::error::Error as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio_postgres::error::SqlState;

use super::config::effective_timeout;
use super::server;
use crate::url::{DatabaseUrl, Param, SslMode};

/// Added to a wrong-password diagnosis when the password was literally `***`.
const REDACTED_HINT: &str = ". The URL's password is ***: this is a redacted URL (as printed \
     without --reveal); use the full one, e.g. from the env file herokurds-url build --env-file wrote";

/// Where to find the RDS certificate bundle, for hints.
pub(crate) const RDS_BUNDLE_URL: &str =
    "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem";

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

/// Turns a driver error into the diagnosis for `url`.
pub(super) fn diagnose(err: &tokio_postgres::Error, url: &DatabaseUrl) -> ConnectError {
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
}
