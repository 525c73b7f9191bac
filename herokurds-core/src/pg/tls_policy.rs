//! What herokurds accepts of a session's encryption, and what it warns
//! about, in one place: the transfer, the verification and `plan` all ask
//! [`tls_concerns`].
//!
//! A session is encrypted unless its URL says `sslmode=disable`, `allow`
//! or `prefer` ([`connect`](super::connect) defaults to `require`): one
//! that is not, although its URL does not allow it, is refused. A URL that
//! allows plaintext is warned about, naming the side, whether or not this
//! session happened to be encrypted. So is an encrypted session whose
//! server is not verified (`require`: anything on the network path could
//! answer in its place), or whose host name is not (`verify-ca`), saying
//! how to verify it.

use std::fmt;

use super::connect::RDS_BUNDLE_URL;
use crate::url::{DatabaseUrl, SslMode};

/// Something to say about one side's encryption.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConcern {
    /// The session is not encrypted, although its URL does not allow that.
    /// Refused: [`connect`](super::connect) never does this.
    #[error(
        "the {side} session is not encrypted although its URL does not allow plaintext \
         (sslmode={ssl_mode}); refusing to send data over it"
    )]
    NotEncrypted {
        /// `source` or `target`.
        side: String,
        /// The URL's `sslmode`.
        ssl_mode: SslMode,
    },
    /// The URL says `sslmode=disable`, `allow` or `prefer`: the session
    /// may be, or is, unencrypted.
    #[error(
        "the {side} URL allows an unencrypted connection (sslmode={ssl_mode} is written in it){}: \
         its password and data can cross the network in clear; remove sslmode from the URL \
         (herokurds then requires TLS) unless the network path is private",
        if *encrypted { "; this session is encrypted, but a later one may not be" }
        else { ", and this session is NOT encrypted" }
    )]
    PlaintextAllowed {
        /// `source` or `target`.
        side: String,
        /// The URL's `sslmode`.
        ssl_mode: SslMode,
        /// Whether this session is encrypted anyway.
        encrypted: bool,
    },
    /// The server's certificate is not checked.
    #[error(
        "the {side} server is not verified (sslmode={ssl_mode} checks no certificate): anything \
         on the network path could answer in its place and read the session; verify it with \
         sslmode=verify-full and sslrootcert=<the CA bundle that signed its certificate> \
         (RDS: {RDS_BUNDLE_URL})"
    )]
    CertificateNotVerified {
        /// `source` or `target`.
        side: String,
        /// The URL's `sslmode`.
        ssl_mode: SslMode,
    },
    /// The certificate chain is checked, the host name is not.
    #[error(
        "the {side} server's host name is not checked against its certificate \
         (sslmode={ssl_mode}): any server holding a certificate from the same CA could answer \
         in its place; use sslmode=verify-full"
    )]
    HostNameNotVerified {
        /// `source` or `target`.
        side: String,
        /// The URL's `sslmode`.
        ssl_mode: SslMode,
    },
}

impl TlsConcern {
    /// Whether this concern stops the work (else it is a warning).
    pub fn refuses(&self) -> bool {
        matches!(self, TlsConcern::NotEncrypted { .. })
    }

    /// The side it is about (`source` or `target`).
    pub fn side(&self) -> &str {
        match self {
            TlsConcern::NotEncrypted { side, .. }
            | TlsConcern::PlaintextAllowed { side, .. }
            | TlsConcern::CertificateNotVerified { side, .. }
            | TlsConcern::HostNameNotVerified { side, .. } => side,
        }
    }
}

/// What herokurds makes of a session to `url`, for the `side` named
/// (`source`, `target`): `encrypted` is [`Connected::tls`](super::Connected::tls).
/// Empty when the session is encrypted and the server fully verified.
pub fn tls_concerns(
    side: impl fmt::Display,
    url: &DatabaseUrl,
    encrypted: bool,
) -> Vec<TlsConcern> {
    let side = side.to_string();
    let ssl_mode = url.ssl_mode();
    let mut concerns = Vec::new();
    if ssl_mode.requires_tls() {
        if !encrypted {
            concerns.push(TlsConcern::NotEncrypted {
                side: side.clone(),
                ssl_mode,
            });
        }
    } else {
        concerns.push(TlsConcern::PlaintextAllowed {
            side: side.clone(),
            ssl_mode,
            encrypted,
        });
    }
    if !url.verifies_certificate() {
        concerns.push(TlsConcern::CertificateNotVerified { side, ssl_mode });
    } else if ssl_mode != SslMode::VerifyFull {
        concerns.push(TlsConcern::HostNameNotVerified { side, ssl_mode });
    }
    concerns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concerns(url: &str, encrypted: bool) -> Vec<TlsConcern> {
        tls_concerns("target", &url.parse().unwrap(), encrypted)
    }

    #[test]
    fn verify_full_over_tls_is_the_only_silent_case() {
        assert_eq!(
            concerns(
                "postgres://u:p@h/d?sslmode=verify-full&sslrootcert=/ca.pem",
                true
            ),
            []
        );
        assert_eq!(concerns("postgres://u:p@h/d?sslmode=verify-full", true), []);
    }

    #[test]
    fn an_unverified_server_is_named_with_how_to_verify_it() {
        let found = concerns("postgres://u:p@h/d", true);
        assert_eq!(
            found,
            [TlsConcern::CertificateNotVerified {
                side: "target".into(),
                ssl_mode: SslMode::Require
            }]
        );
        let text = found[0].to_string();
        assert!(
            text.starts_with("the target server is not verified"),
            "{text}"
        );
        assert!(
            text.contains("sslmode=verify-full")
                && text.contains("sslrootcert=")
                && text.contains("global-bundle.pem"),
            "{text}"
        );
        assert!(!found[0].refuses());
        let found = concerns("postgres://u:p@h/d?sslmode=verify-ca", true);
        assert!(
            matches!(&found[..], [TlsConcern::HostNameNotVerified { .. }]),
            "{found:?}"
        );
        let found = concerns("postgres://u:p@h/d?sslrootcert=/ca.pem", true);
        assert!(
            matches!(
                &found[..],
                [TlsConcern::HostNameNotVerified {
                    ssl_mode: SslMode::Require,
                    ..
                }]
            ),
            "{found:?}"
        );
    }

    #[test]
    fn written_plaintext_is_a_warning_and_unwritten_plaintext_a_refusal() {
        for mode in ["disable", "allow", "prefer"] {
            for encrypted in [false, true] {
                let found = concerns(&format!("postgres://u:p@h/d?sslmode={mode}"), encrypted);
                assert!(
                    matches!(&found[0], TlsConcern::PlaintextAllowed { side, .. } if side == "target"),
                    "{found:?}"
                );
                assert!(!found.iter().any(TlsConcern::refuses), "{found:?}");
                let text = found[0].to_string();
                assert!(text.contains(&format!("sslmode={mode}")), "{text}");
                assert_eq!(text.contains("NOT encrypted"), !encrypted, "{text}");
            }
        }
        let found = concerns("postgres://u:p@h/d", false);
        assert!(found[0].refuses(), "{found:?}");
        assert_eq!(found[0].side(), "target");
    }
}
