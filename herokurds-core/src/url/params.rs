//! The typed pieces of a database URL: scheme, `sslmode`, and the query
//! parameters herokurds accepts.
//!
//! The accepted parameters are the libpq ones that the connection code can
//! honour. A parameter libpq knows but herokurds cannot honour is refused
//! with the reason rather than silently ignored: a URL that says
//! `sslcrl=...` must not connect as if it did not.

use std::fmt;
use std::str::FromStr;

/// The URL scheme. Both are accepted by libpq; the one parsed is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scheme {
    /// `postgres://`, what Heroku writes (the default).
    #[default]
    Postgres,
    /// `postgresql://`.
    Postgresql,
}

impl Scheme {
    /// `"postgres"` or `"postgresql"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Postgres => "postgres",
            Scheme::Postgresql => "postgresql",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheme {
    type Err = String;

    /// Accepts exactly `postgres` or `postgresql`; the error says what was expected.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "postgres" => Ok(Scheme::Postgres),
            "postgresql" => Ok(Scheme::Postgresql),
            _ => Err("postgres or postgresql".to_string()),
        }
    }
}

/// libpq's `sslmode`: whether to encrypt, and what to verify.
///
/// The default is `require`, not libpq's `prefer`: `prefer` falls back to
/// an unencrypted connection, without a word, when TLS is refused on the
/// way (by a misconfigured server or by someone on the network path).
/// herokurds connects in plaintext only when a URL says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// Plain first; TLS only if the server refuses plain connections.
    Allow,
    /// TLS if the server offers it, plain otherwise (libpq's default, not herokurds').
    Prefer,
    /// TLS always; the certificate is not verified (unless `sslrootcert`
    /// is given, in which case libpq, and herokurds, verify the chain).
    /// herokurds' default.
    #[default]
    Require,
    /// TLS always; the chain is verified against `sslrootcert`, the host name is not.
    VerifyCa,
    /// TLS always; chain and host name verified.
    VerifyFull,
}

impl SslMode {
    /// Every mode, in libpq's order (weakest first).
    pub const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The libpq spelling: `disable`, `allow`, `prefer`, `require`, `verify-ca`, `verify-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a connection in this mode is always encrypted.
    pub fn requires_tls(self) -> bool {
        matches!(
            self,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = String;

    /// Accepts the six libpq spellings; the error lists them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SslMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| "one of disable, allow, prefer, require, verify-ca, verify-full".into())
    }
}

/// A query parameter herokurds accepts (libpq's name in [`Param::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Param {
    /// `sslmode`: see [`SslMode`].
    SslMode,
    /// `sslrootcert`: PEM file of trusted CA certificates (e.g. the RDS
    /// global bundle), or `system` for the system's roots.
    SslRootCert,
    /// `sslcert`: client certificate (PEM); needs `sslkey`.
    SslCert,
    /// `sslkey`: client key (PKCS#8 PEM); needs `sslcert`.
    SslKey,
    /// `sslnegotiation`: `postgres` or `direct`.
    SslNegotiation,
    /// `application_name`: shown in `pg_stat_activity`.
    ApplicationName,
    /// `fallback_application_name`: used when `application_name` is not given.
    FallbackApplicationName,
    /// `connect_timeout`: seconds to wait for the whole connection (0: forever).
    ConnectTimeout,
    /// `options`: command-line options sent to the server (`-c key=value`).
    Options,
    /// `target_session_attrs`: `any`, `read-write` or `read-only`.
    TargetSessionAttrs,
    /// `keepalives`: `1` (default) or `0`.
    Keepalives,
    /// `keepalives_idle`: seconds of idle before a TCP keepalive.
    KeepalivesIdle,
    /// `keepalives_interval`: seconds between unanswered keepalives.
    KeepalivesInterval,
    /// `keepalives_count`: unanswered keepalives before the connection is dead.
    KeepalivesCount,
    /// `tcp_user_timeout`: milliseconds unacknowledged data may wait.
    TcpUserTimeout,
    /// `channel_binding`: `disable`, `prefer` or `require`.
    ChannelBinding,
}

/// libpq parameters that herokurds refuses, with the reason.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("hostaddr", "give the address as the host"),
    (
        "passfile",
        "put the password in the URL, or build it with herokurds-url build --password-env",
    ),
    (
        "service",
        "pg_service.conf is not read; give every part in the URL",
    ),
    ("client_encoding", "herokurds always uses UTF8"),
    ("sslpassword", "use an unencrypted PKCS#8 key for sslkey"),
    ("sslcrl", "certificate revocation lists are not supported"),
    (
        "sslcrldir",
        "certificate revocation lists are not supported",
    ),
    (
        "sslcertmode",
        "client certificates are used whenever sslcert and sslkey are given",
    ),
    ("sslsni", "SNI is always sent for host names"),
    ("sslcompression", "TLS compression is never used"),
    (
        "ssl_min_protocol_version",
        "the TLS library's defaults are used",
    ),
    (
        "ssl_max_protocol_version",
        "the TLS library's defaults are used",
    ),
    (
        "require_auth",
        "not supported by the PostgreSQL driver herokurds uses",
    ),
    ("requirepeer", "Unix-domain sockets are not supported"),
    ("gssencmode", "GSSAPI is not supported"),
    ("gssdelegation", "GSSAPI is not supported"),
    ("krbsrvname", "Kerberos is not supported"),
    ("gsslib", "GSSAPI is not supported"),
    ("replication", "replication connections are not supported"),
    ("load_balance_hosts", "multi-host URLs are not supported"),
];

impl Param {
    /// Every accepted parameter.
    pub const ALL: [Param; 16] = [
        Param::SslMode,
        Param::SslRootCert,
        Param::SslCert,
        Param::SslKey,
        Param::SslNegotiation,
        Param::ApplicationName,
        Param::FallbackApplicationName,
        Param::ConnectTimeout,
        Param::Options,
        Param::TargetSessionAttrs,
        Param::Keepalives,
        Param::KeepalivesIdle,
        Param::KeepalivesInterval,
        Param::KeepalivesCount,
        Param::TcpUserTimeout,
        Param::ChannelBinding,
    ];

    /// The libpq name, as written in the URL.
    pub fn name(self) -> &'static str {
        match self {
            Param::SslMode => "sslmode",
            Param::SslRootCert => "sslrootcert",
            Param::SslCert => "sslcert",
            Param::SslKey => "sslkey",
            Param::SslNegotiation => "sslnegotiation",
            Param::ApplicationName => "application_name",
            Param::FallbackApplicationName => "fallback_application_name",
            Param::ConnectTimeout => "connect_timeout",
            Param::Options => "options",
            Param::TargetSessionAttrs => "target_session_attrs",
            Param::Keepalives => "keepalives",
            Param::KeepalivesIdle => "keepalives_idle",
            Param::KeepalivesInterval => "keepalives_interval",
            Param::KeepalivesCount => "keepalives_count",
            Param::TcpUserTimeout => "tcp_user_timeout",
            Param::ChannelBinding => "channel_binding",
        }
    }

    /// The parameter with this libpq name.
    pub fn from_name(name: &str) -> Option<Param> {
        Param::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Checks a value; the error says what would have been accepted.
    pub fn check_value(self, value: &str) -> Result<(), String> {
        let one_of = |allowed: &[&str]| {
            if allowed.contains(&value) {
                Ok(())
            } else {
                Err(format!("one of {}", allowed.join(", ")))
            }
        };
        let unsigned = |what: &str| match value.parse::<u32>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("{what} (a whole number, 0 or more)")),
        };
        match self {
            Param::SslMode => value.parse::<SslMode>().map(drop),
            Param::SslRootCert | Param::SslCert | Param::SslKey => {
                if value.is_empty() {
                    Err("a file path".into())
                } else {
                    Ok(())
                }
            }
            Param::SslNegotiation => one_of(&["postgres", "direct"]),
            Param::ApplicationName | Param::FallbackApplicationName | Param::Options => {
                if value.contains('\0') {
                    Err("text without a NUL character".into())
                } else {
                    Ok(())
                }
            }
            Param::ConnectTimeout => unsigned("seconds"),
            Param::TargetSessionAttrs => one_of(&["any", "read-write", "read-only"]),
            Param::Keepalives => one_of(&["0", "1"]),
            Param::KeepalivesIdle | Param::KeepalivesInterval => unsigned("seconds"),
            Param::KeepalivesCount => unsigned("a count"),
            Param::TcpUserTimeout => unsigned("milliseconds"),
            Param::ChannelBinding => one_of(&["disable", "prefer", "require"]),
        }
    }

    /// Why herokurds refuses `name`, if it is a libpq parameter it does not support.
    pub(crate) fn unsupported_reason(name: &str) -> Option<&'static str> {
        UNSUPPORTED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, reason)| *reason)
    }

    /// The accepted parameter whose name is closest to `name`, if close enough
    /// to be a typo.
    pub(crate) fn suggest(name: &str) -> Option<Param> {
        Param::ALL
            .into_iter()
            .map(|p| (edit_distance(name, p.name()), p))
            .filter(|(d, _)| *d <= 2)
            .min_by_key(|(d, _)| *d)
            .map(|(_, p)| p)
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Levenshtein distance, for typo suggestions on short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_modes_round_trip_their_libpq_spelling() {
        for mode in SslMode::ALL {
            assert_eq!(mode.as_str().parse::<SslMode>(), Ok(mode));
        }
        assert_eq!(SslMode::default(), SslMode::Require);
        let err = "verify_full".parse::<SslMode>().unwrap_err();
        assert!(err.contains("verify-full"), "{err}");
    }

    #[test]
    fn params_round_trip_their_names() {
        for p in Param::ALL {
            assert_eq!(Param::from_name(p.name()), Some(p));
            assert!(Param::unsupported_reason(p.name()).is_none(), "{p}");
        }
        assert_eq!(Param::from_name("sslmod"), None);
    }

    #[test]
    fn typed_values_are_checked() {
        assert!(Param::ConnectTimeout.check_value("10").is_ok());
        assert!(Param::ConnectTimeout.check_value("-1").is_err());
        assert!(Param::ConnectTimeout.check_value("ten").is_err());
        assert!(Param::Keepalives.check_value("2").is_err());
        assert!(Param::TargetSessionAttrs.check_value("read-write").is_ok());
        assert!(Param::TargetSessionAttrs.check_value("primary").is_err());
        assert!(Param::SslRootCert.check_value("").is_err());
        assert!(Param::ApplicationName.check_value("any thing é").is_ok());
        assert!(Param::Options.check_value("a\0b").is_err());
    }

    #[test]
    fn typos_get_a_suggestion() {
        assert_eq!(Param::suggest("sslmod"), Some(Param::SslMode));
        assert_eq!(Param::suggest("ssl_mode"), Some(Param::SslMode));
        assert_eq!(Param::suggest("sslrootcrt"), Some(Param::SslRootCert));
        assert_eq!(Param::suggest("pool"), None);
    }

    #[test]
    fn schemes_parse_exactly() {
        assert_eq!("postgres".parse(), Ok(Scheme::Postgres));
        assert_eq!("postgresql".parse(), Ok(Scheme::Postgresql));
        assert!("mysql".parse::<Scheme>().is_err());
        assert_eq!(Scheme::default(), Scheme::Postgres);
    }
}
