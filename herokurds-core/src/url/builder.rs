//! [`DatabaseUrlBuilder`]: parts as text in, a checked [`DatabaseUrl`] out.
//!
//! Parts come from flags, environment variables, Pulumi outputs and secrets,
//! all as text. The builder takes them as given and checks them together in
//! [`DatabaseUrlBuilder::build`], so one run names every missing or
//! malformed part. The URL parser fills the same builder, so a parsed URL
//! and a built one obey the same rules.

use secrecy::{ExposeSecret, SecretString};

use super::error::{is_plain_key, UrlError, UrlPart, UrlProblem};
use super::host::{parse_port, split_host_port};
use super::params::{Param, Scheme};
use super::DatabaseUrl;

/// Collects the parts of a database URL as text; [`build`](Self::build) checks them all.
///
/// ```
/// use herokurds_core::url::DatabaseUrlBuilder;
///
/// let url = DatabaseUrlBuilder::new()
///     .user("rds_master")
///     .password("s3cr:t@".into())
///     .host("mydb.abc.us-east-1.rds.amazonaws.com:5432") // an RDS endpoint, pasted whole
///     .dbname("app")
///     .param("sslmode", "require")
///     .build()
///     .unwrap();
/// assert_eq!(
///     url.to_string(),
///     "postgres://rds_master:***@mydb.abc.us-east-1.rds.amazonaws.com:5432/app?sslmode=require"
/// );
///
/// let err = DatabaseUrlBuilder::new().user("u").dbname("d").port_text("abc").build().unwrap_err();
/// assert_eq!(err.to_string(), "missing: password, host; invalid: port (expected 1-65535)");
/// ```
#[derive(Clone, Default)]
pub struct DatabaseUrlBuilder {
    scheme: Option<String>,
    user: Option<String>,
    password: Option<SecretString>,
    host: Option<String>,
    port: Option<String>,
    dbname: Option<String>,
    params: Vec<(String, String)>,
    /// Problems found while parsing text into this builder.
    pub(super) found: Vec<UrlProblem>,
}

/// Hand-written: the password is shown as `***`.
impl std::fmt::Debug for DatabaseUrlBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseUrlBuilder")
            .field("scheme", &self.scheme)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("params", &self.params)
            .field("found", &self.found)
            .finish()
    }
}

impl DatabaseUrlBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the scheme from text (`postgres` or `postgresql`; default `postgres`).
    pub fn scheme_text(&mut self, scheme: impl Into<String>) -> &mut Self {
        self.scheme = Some(scheme.into());
        self
    }

    /// Sets the scheme.
    pub fn scheme(&mut self, scheme: Scheme) -> &mut Self {
        self.scheme_text(scheme.as_str())
    }

    /// Sets the user (role) name.
    pub fn user(&mut self, user: impl Into<String>) -> &mut Self {
        self.user = Some(user.into());
        self
    }

    /// Sets the password.
    pub fn password(&mut self, password: SecretString) -> &mut Self {
        self.password = Some(password);
        self
    }

    /// Sets the host: a DNS name, IPv4 or IPv6 address, optionally followed by
    /// `:port` (an RDS `endpoint` output); that port must agree with
    /// [`port`](Self::port) if both are given.
    pub fn host(&mut self, host: impl Into<String>) -> &mut Self {
        self.host = Some(host.into());
        self
    }

    /// Sets the port.
    pub fn port(&mut self, port: u16) -> &mut Self {
        self.port_text(port.to_string())
    }

    /// Sets the port from text (checked by [`build`](Self::build): 1-65535).
    pub fn port_text(&mut self, port: impl Into<String>) -> &mut Self {
        self.port = Some(port.into());
        self
    }

    /// Sets the database name.
    pub fn dbname(&mut self, dbname: impl Into<String>) -> &mut Self {
        self.dbname = Some(dbname.into());
        self
    }

    /// Adds a query parameter (`sslmode`, `sslrootcert`, ...). Unknown names,
    /// bad values and repeats are reported by [`build`](Self::build).
    pub fn param(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// Removes every value of a query parameter.
    pub fn remove_param(&mut self, name: &str) -> &mut Self {
        self.params.retain(|(n, _)| n != name);
        self
    }

    /// Whether a part has been given (parsing uses it to spot a part given twice).
    pub(super) fn has(&self, part: &UrlPart) -> bool {
        match part {
            UrlPart::Scheme => self.scheme.is_some(),
            UrlPart::User => self.user.is_some(),
            UrlPart::Password => self.password.is_some(),
            UrlPart::Host => self.host.is_some(),
            UrlPart::Port => self.port.is_some(),
            UrlPart::Dbname => self.dbname.is_some(),
            UrlPart::Param(name) => self.params.iter().any(|(n, _)| n == name),
        }
    }

    /// Checks every part and returns the URL, or every problem at once.
    ///
    /// Required: user, password, host, dbname. The port defaults to 5432
    /// (or the port carried by the host); the scheme to `postgres`.
    pub fn build(&self) -> Result<DatabaseUrl, UrlError> {
        let mut problems = self.found.clone();
        let scheme = match self.scheme.as_deref().map(str::parse::<Scheme>) {
            None => Scheme::default(),
            Some(Ok(scheme)) => scheme,
            Some(Err(expected)) => {
                problems.push(UrlProblem::Invalid {
                    part: UrlPart::Scheme,
                    expected,
                });
                Scheme::default()
            }
        };
        let user = required_text(&mut problems, UrlPart::User, self.user.as_deref());
        let password = self.password.as_ref().and_then(|p| {
            let text = p.expose_secret();
            if text.is_empty() {
                missing(&mut problems, UrlPart::Password);
                None
            } else if text.contains('\0') {
                problems.push(UrlProblem::Invalid {
                    part: UrlPart::Password,
                    expected: "no NUL character (PostgreSQL cannot accept one)".into(),
                });
                None
            } else {
                Some(p.clone())
            }
        });
        if self.password.is_none() {
            missing(&mut problems, UrlPart::Password);
        }
        let host_and_port = self.host_and_port(&mut problems);
        let dbname = required_text(&mut problems, UrlPart::Dbname, self.dbname.as_deref());
        let params = self.checked_params(&mut problems);
        if problems
            .iter()
            .any(|p| matches!(p, UrlProblem::Syntax { .. }))
        {
            // Text that could not be split into parts: "missing" would mislead.
            problems.retain(|p| !matches!(p, UrlProblem::Missing { .. }));
        }
        match (user, password, host_and_port, dbname) {
            (Some(user), Some(password), Some((host, port)), Some(dbname))
                if problems.is_empty() =>
            {
                Ok(DatabaseUrl {
                    scheme,
                    user,
                    password,
                    host,
                    port,
                    dbname,
                    params,
                })
            }
            _ => Err(UrlError::new(problems)),
        }
    }

    fn host_and_port(&self, problems: &mut Vec<UrlProblem>) -> Option<(super::Host, u16)> {
        let port = match self.port.as_deref().map(parse_port).transpose() {
            Ok(port) => port,
            Err(problem) => {
                problems.push(problem);
                self.split_host(problems);
                return None;
            }
        };
        let (host, host_port) = self.split_host(problems)?;
        match (host_port, port) {
            (Some(host_port), Some(port)) if host_port != port => {
                problems.push(UrlProblem::PortConflict { host_port, port });
                None
            }
            (host_port, port) => Some((host, port.or(host_port).unwrap_or(5432))),
        }
    }

    fn split_host(&self, problems: &mut Vec<UrlProblem>) -> Option<(super::Host, Option<u16>)> {
        if already_reported(problems, &UrlPart::Host) {
            return None;
        }
        match self.host.as_deref() {
            None | Some("") => {
                missing(problems, UrlPart::Host);
                None
            }
            Some(text) => match split_host_port(text) {
                Ok(split) => Some(split),
                Err(found) => {
                    problems.extend(found);
                    None
                }
            },
        }
    }

    fn checked_params(&self, problems: &mut Vec<UrlProblem>) -> Vec<(Param, String)> {
        let mut params: Vec<(Param, String)> = Vec::new();
        let mut repeated: Vec<&str> = Vec::new();
        for (i, (name, value)) in self.params.iter().enumerate() {
            if !is_plain_key(name) {
                // Not a libpq name: report once, never by name.
                if !problems.contains(&UrlProblem::UnshownParam) {
                    problems.push(UrlProblem::UnshownParam);
                }
                continue;
            }
            if self.params[..i].iter().any(|(n, _)| n == name) {
                if !repeated.contains(&name.as_str()) {
                    repeated.push(name);
                    problems.push(UrlProblem::Duplicate {
                        part: UrlPart::Param(name.clone()),
                    });
                }
                continue;
            }
            match Param::from_name(name) {
                Some(param) => match param.check_value(value) {
                    Ok(()) => params.push((param, value.clone())),
                    Err(expected) => problems.push(UrlProblem::Invalid {
                        part: UrlPart::Param(name.clone()),
                        expected,
                    }),
                },
                None => problems.push(unknown_param(name)),
            }
        }
        let has = |p: Param| self.params.iter().any(|(n, _)| n == p.name());
        for (given, needed) in [
            (Param::SslCert, Param::SslKey),
            (Param::SslKey, Param::SslCert),
        ] {
            if has(given) && !has(needed) {
                missing(problems, UrlPart::Param(needed.name().into()));
            }
        }
        params
    }
}

/// The problem for a parameter name that is not accepted.
fn unknown_param(name: &str) -> UrlProblem {
    const PARTS: [&str; 5] = ["user", "password", "host", "port", "dbname"];
    if PARTS.contains(&name) {
        return UrlProblem::UnsupportedParam {
            name: name.into(),
            reason: format!("give the {name} as its own part of the URL, not as a parameter"),
        };
    }
    match Param::unsupported_reason(name) {
        Some(reason) => UrlProblem::UnsupportedParam {
            name: name.into(),
            reason: reason.into(),
        },
        None => UrlProblem::UnknownParam {
            name: name.into(),
            suggestion: Param::suggest(name).map(|p| p.name().into()),
        },
    }
}

fn already_reported(problems: &[UrlProblem], part: &UrlPart) -> bool {
    problems.iter().any(|p| p.part() == Some(part))
}

/// Records `part` as missing unless a problem about it is already recorded.
fn missing(problems: &mut Vec<UrlProblem>, part: UrlPart) {
    if !already_reported(problems, &part) {
        problems.push(UrlProblem::Missing { part });
    }
}

/// A required text part: present, non-empty, without NUL.
fn required_text(
    problems: &mut Vec<UrlProblem>,
    part: UrlPart,
    value: Option<&str>,
) -> Option<String> {
    match value {
        None | Some("") => {
            missing(problems, part);
            None
        }
        Some(text) if text.contains('\0') => {
            problems.push(UrlProblem::Invalid {
                part,
                expected: "no NUL character (PostgreSQL cannot accept one)".into(),
            });
            None
        }
        Some(text) => Some(text.into()),
    }
}
