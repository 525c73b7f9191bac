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
//!
//! Layout: the session's driver configuration ([`config`]), its TLS
//! connector and the connector cache ([`tls`]), and the failure's
//! diagnosis ([`diagnosis`]); the attempts themselves are here.

use std::time::Duration;

use postgres_native_tls::MakeTlsConnector;
use tokio_postgres::Client;

use crate::url::{DatabaseUrl, Host, SslMode};

mod config;
mod diagnosis;
mod tls;

use config::effective_timeout;
pub use config::pg_config;
use diagnosis::diagnose;
pub use diagnosis::ConnectError;
pub(crate) use diagnosis::RDS_BUNDLE_URL;
use tls::tls_connector;

/// How long [`connect`] waits for a whole connection when the URL has no
/// `connect_timeout` (libpq would wait forever; an operator in a
/// maintenance window should not).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

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

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> DatabaseUrl {
        s.parse().unwrap()
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
