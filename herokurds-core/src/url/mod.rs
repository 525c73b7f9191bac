//! The typed `DATABASE_URL`: builder, parser, redaction and env snippet.
//!
//! The runbook this project replaces builds the RDS `DATABASE_URL` by hand
//! from a Pulumi endpoint and a password, then finds its mistakes one
//! `psql` failure at a time (a missing part, `host:5432:5432`, a password
//! with an `@` in it). [`DatabaseUrl`] is that URL as a value: every part
//! typed and checked, every problem reported at once ([`UrlError`]), the
//! password percent-encoded exactly and shown as `***` unless asked for
//! with [`DatabaseUrl::expose_url`]. Problems never quote the URL's text
//! (in a malformed URL any part may be a piece of the password).
//!
//! Without an `sslmode`, a URL means `require` here, not libpq's `prefer`
//! ([`SslMode`]). The URL handed to the app at the cutover is not the
//! operator's but one built for the app ([`DatabaseUrl::for_app`]).
//!
//! ```
//! use herokurds_core::url::{DatabaseUrl, SslMode};
//!
//! let url: DatabaseUrl = "postgres://u:p%40ss@db.example.com:5432/app?sslmode=require".parse().unwrap();
//! assert_eq!(url.user(), "u");
//! assert_eq!(url.ssl_mode(), SslMode::Require);
//! assert_eq!(url.to_string(), "postgres://u:***@db.example.com:5432/app?sslmode=require");
//! assert_eq!(url.expose_url(), "postgres://u:p%40ss@db.example.com:5432/app?sslmode=require");
//!
//! let err = "postgres://u@:abc/app".parse::<DatabaseUrl>().unwrap_err();
//! assert_eq!(err.to_string(), "missing: password, host; invalid: port (expected 1-65535)");
//! ```

mod builder;
mod env;
mod error;
mod host;
mod params;
mod parse;
mod percent;

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

pub use builder::DatabaseUrlBuilder;
pub use env::{shell_single_quote, write_env_snippet, EnvFileError};
pub use error::{UrlError, UrlPart, UrlProblem};
pub use host::Host;
pub use params::{Param, Scheme, SslMode};

/// A complete, checked PostgreSQL connection URL.
///
/// Made by [`DatabaseUrlBuilder::build`] or parsed with [`FromStr`] (URL or
/// libpq `key=value` form). `Display` and `Debug` show the password as
/// `***`; [`expose_url`](Self::expose_url) gives the URL to hand to a
/// program. Both round-trip through `FromStr` (the displayed one with `***`
/// as its password).
#[derive(Clone)]
pub struct DatabaseUrl {
    scheme: Scheme,
    user: String,
    password: SecretString,
    host: Host,
    port: u16,
    dbname: String,
    params: Vec<(Param, String)>,
}

impl DatabaseUrl {
    /// A builder, to assemble a URL from parts given as text.
    pub fn builder() -> DatabaseUrlBuilder {
        DatabaseUrlBuilder::new()
    }

    /// A builder holding this URL's parts, to change some and build again.
    pub fn to_builder(&self) -> DatabaseUrlBuilder {
        let mut builder = DatabaseUrlBuilder::new();
        builder
            .scheme(self.scheme)
            .user(self.user.clone())
            .password(self.password.clone())
            .host(self.host.to_string())
            .port(self.port)
            .dbname(self.dbname.clone());
        for (param, value) in &self.params {
            builder.param(param.name(), value.clone());
        }
        builder
    }

    /// The scheme, as parsed (`postgres` when built without one).
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The user (role) name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The password. Expose it only to hand it to a connection or a child
    /// process's environment.
    pub fn password(&self) -> &SecretString {
        &self.password
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port (5432 unless given).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database name.
    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// The query parameters, in the order given.
    pub fn params(&self) -> impl Iterator<Item = (Param, &str)> {
        self.params.iter().map(|(p, v)| (*p, v.as_str()))
    }

    /// A query parameter's value, if given.
    pub fn param(&self, param: Param) -> Option<&str> {
        self.params
            .iter()
            .find(|(p, _)| *p == param)
            .map(|(_, v)| v.as_str())
    }

    /// The `sslmode` in effect: the one given, else herokurds' default,
    /// `require` (not libpq's `prefer`, which may fall back to plaintext).
    pub fn ssl_mode(&self) -> SslMode {
        self.param(Param::SslMode)
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    }

    /// Whether the server's certificate chain is checked: `verify-ca`,
    /// `verify-full`, or `require` with an `sslrootcert` (as libpq does).
    pub fn verifies_certificate(&self) -> bool {
        match self.ssl_mode() {
            SslMode::VerifyCa | SslMode::VerifyFull => true,
            SslMode::Require => self.ssl_root_cert().is_some(),
            _ => false,
        }
    }

    /// The URL the app itself gets as its `DATABASE_URL` at the cutover:
    /// the same user, password, host, port and database, `sslmode` as
    /// given, and nothing else.
    ///
    /// The operator's URL is for the operator's machine: its file
    /// parameters (`sslrootcert`, `sslcert`, `sslkey`) name files the
    /// app's dynos do not have, and its other parameters (timeouts,
    /// `application_name`) are the operator's choices, not the app's. The
    /// scheme is `postgres://`, as Heroku writes it.
    ///
    /// ```
    /// use herokurds_core::url::{DatabaseUrl, SslMode};
    ///
    /// let operator: DatabaseUrl = "postgresql://app:pw@db.rds.amazonaws.com/app\
    ///     ?sslmode=verify-full&sslrootcert=/home/me/global-bundle.pem&connect_timeout=5"
    ///     .parse()
    ///     .unwrap();
    /// assert_eq!(
    ///     operator.for_app(SslMode::Require).expose_url(),
    ///     "postgres://app:pw@db.rds.amazonaws.com:5432/app?sslmode=require"
    /// );
    /// ```
    pub fn for_app(&self, ssl_mode: SslMode) -> DatabaseUrl {
        DatabaseUrl {
            scheme: Scheme::Postgres,
            user: self.user.clone(),
            password: self.password.clone(),
            host: self.host.clone(),
            port: self.port,
            dbname: self.dbname.clone(),
            params: vec![(Param::SslMode, ssl_mode.as_str().to_string())],
        }
    }

    /// `sslrootcert`, if given (the special value `system` means the system's roots).
    pub fn ssl_root_cert(&self) -> Option<&Path> {
        self.param(Param::SslRootCert).map(Path::new)
    }

    /// `connect_timeout`, if given (zero means wait forever).
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.param(Param::ConnectTimeout)
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs)
    }

    /// `application_name`, if given.
    pub fn application_name(&self) -> Option<&str> {
        self.param(Param::ApplicationName)
    }

    /// The full URL, password included, percent-encoded exactly.
    ///
    /// For handing to a program (a config var, an env snippet). Never log it.
    pub fn expose_url(&self) -> String {
        self.render(true)
    }

    /// The URL with the password as `***` (the same as `to_string()`).
    pub fn redacted_url(&self) -> String {
        self.render(false)
    }

    fn render(&self, reveal: bool) -> String {
        let mut url = format!(
            "{}://{}:{}@{}:{}/{}",
            self.scheme,
            percent::encode(&self.user),
            if reveal {
                percent::encode(self.password.expose_secret())
            } else {
                "***".to_string()
            },
            self.host,
            self.port,
            percent::encode(&self.dbname),
        );
        for (i, (param, value)) in self.params.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(param.name());
            url.push('=');
            url.push_str(&percent::encode_query_value(value));
        }
        url
    }
}

impl FromStr for DatabaseUrl {
    type Err = UrlError;

    /// Parses `postgres://user:password@host:port/dbname?param=value`
    /// (or `postgresql://`), or libpq's `key=value` form, naming every
    /// problem at once.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse::parse(s).build()
    }
}

/// The URL with the password shown as `***`.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted_url())
    }
}

/// Hand-written: the password is shown as `***`.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseUrl")
            .field("scheme", &self.scheme)
            .field("user", &self.user)
            .field("password", &"***")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("params", &self.params)
            .finish()
    }
}

/// Equal when every part is, password included.
impl PartialEq for DatabaseUrl {
    fn eq(&self, other: &Self) -> bool {
        self.scheme == other.scheme
            && self.user == other.user
            && self.password.expose_secret() == other.password.expose_secret()
            && self.host == other.host
            && self.port == other.port
            && self.dbname == other.dbname
            && self.params == other.params
    }
}

impl Eq for DatabaseUrl {}

#[cfg(test)]
mod tests;
