//! The driver's configuration for a URL: every part and parameter, with
//! herokurds' defaults (TLS with channel binding, keepalives, a timeout, an
//! application name).

use std::time::Duration;

use secrecy::ExposeSecret;
use tokio_postgres::config::{ChannelBinding, SslNegotiation, TargetSessionAttrs};
use tokio_postgres::Config;

use super::DEFAULT_CONNECT_TIMEOUT;
use crate::url::{DatabaseUrl, Param, SslMode};

/// TCP keepalive idle time when the URL sets no `keepalives_idle`: a
/// session idle through a long copy (an exported snapshot, a reader
/// waiting for its turn) keeps NAT and load-balancer idle timers from
/// dropping it, and a dead peer is noticed.
const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(30);

/// What `application_name` is when the URL names none.
const DEFAULT_APPLICATION_NAME: &str = "herokurds";

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
pub(super) fn effective_timeout(url: &DatabaseUrl) -> Option<Duration> {
    match url.connect_timeout() {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d.max(Duration::from_secs(2))),
        None => Some(DEFAULT_CONNECT_TIMEOUT),
    }
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
}
