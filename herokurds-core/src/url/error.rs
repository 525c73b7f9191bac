//! Everything wrong with a database URL, reported at once.
//!
//! A hand-built `DATABASE_URL` usually has more than one mistake; fixing them
//! one error at a time wastes a maintenance window. [`UrlError`] therefore
//! carries every [`UrlProblem`] found, each naming the [`UrlPart`] it is
//! about. Problems never quote text from the URL: when a URL is malformed,
//! any part of it may be a piece of the password (an unencoded `/`, `&` or
//! space splits a password where a parser does not expect it). The only
//! text quoted is a parameter name made of lowercase letters and `_`
//! (`is_plain_key`), which is what every libpq parameter looks like.

use std::fmt;

use serde::{Serialize, Serializer};

/// A part of a database URL, as named in problems.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UrlPart {
    /// `postgres` or `postgresql`.
    Scheme,
    /// The role name.
    User,
    /// The password (its text is never shown).
    Password,
    /// The host name or address.
    Host,
    /// The TCP port.
    Port,
    /// The database name.
    Dbname,
    /// A query parameter, by name (`sslmode`, `sslrootcert`, ...).
    Param(String),
}

impl fmt::Display for UrlPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlPart::Scheme => f.write_str("scheme"),
            UrlPart::User => f.write_str("user"),
            UrlPart::Password => f.write_str("password"),
            UrlPart::Host => f.write_str("host"),
            UrlPart::Port => f.write_str("port"),
            UrlPart::Dbname => f.write_str("dbname"),
            UrlPart::Param(name) => write!(f, "parameter {name}"),
        }
    }
}

/// Serialised as its display name: `"host"`, `"parameter sslmode"`.
impl Serialize for UrlPart {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One thing wrong with a database URL.
///
/// Serialised (for `--json`) with a `problem` tag: `{"problem":"missing","part":"host"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[non_exhaustive]
pub enum UrlProblem {
    /// A required part is absent or empty.
    Missing {
        /// The absent part.
        part: UrlPart,
    },
    /// A part is present but malformed. Its text is not carried: in a
    /// malformed URL it may be a piece of the password.
    Invalid {
        /// The malformed part.
        part: UrlPart,
        /// What would have been accepted.
        expected: String,
    },
    /// A query parameter that libpq does not know.
    UnknownParam {
        /// The parameter as given (always lowercase letters and `_`: other
        /// names are [`UrlProblem::UnshownParam`]).
        name: String,
        /// A known parameter with a similar name.
        suggestion: Option<String>,
    },
    /// A parameter libpq knows but herokurds does not support.
    UnsupportedParam {
        /// The parameter.
        name: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// A parameter whose name is not lowercase letters and `_`: not a
    /// libpq parameter, and not shown, as it may be a piece of the password.
    UnshownParam,
    /// A part or parameter given more than once.
    Duplicate {
        /// The repeated part.
        part: UrlPart,
    },
    /// The host carried a `:port` that disagrees with the explicit port
    /// (an RDS `endpoint` pasted whole, plus a different port).
    PortConflict {
        /// The port that came with the host.
        host_port: u16,
        /// The port given on its own.
        port: u16,
    },
    /// The text is not a PostgreSQL URL or key=value string at all.
    Syntax {
        /// What is wrong, without quoting the text (it may hold a password).
        reason: String,
    },
}

impl UrlProblem {
    /// The part this problem is about, if it is about one part.
    pub fn part(&self) -> Option<&UrlPart> {
        match self {
            UrlProblem::Missing { part }
            | UrlProblem::Invalid { part, .. }
            | UrlProblem::Duplicate { part } => Some(part),
            UrlProblem::PortConflict { .. } => Some(&UrlPart::Port),
            UrlProblem::UnknownParam { .. }
            | UrlProblem::UnsupportedParam { .. }
            | UrlProblem::UnshownParam
            | UrlProblem::Syntax { .. } => None,
        }
    }
}

impl fmt::Display for UrlProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlProblem::Missing { part } => write!(f, "missing: {part}"),
            UrlProblem::Invalid { part, expected } => {
                write!(f, "invalid: {part} (expected {expected})")
            }
            UrlProblem::UnknownParam { name, suggestion } => {
                write!(f, "unknown parameter {name:?}")?;
                match suggestion {
                    Some(s) => write!(f, " (did you mean {s}?)"),
                    None => Ok(()),
                }
            }
            UrlProblem::UnsupportedParam { name, reason } => {
                write!(f, "unsupported parameter {name:?}: {reason}")
            }
            UrlProblem::UnshownParam => f.write_str(
                "unknown parameter: its name is not lowercase letters and _ (not shown: it may \
                 be a piece of the password; percent-encode a password's special characters, \
                 e.g. & as %26, = as %3D, / as %2F)",
            ),
            UrlProblem::Duplicate { part } => write!(f, "duplicate: {part} given more than once"),
            UrlProblem::PortConflict { host_port, port } => write!(
                f,
                "conflict: the host carries port {host_port} but port is {port} \
                 (give the host without :port, or the same port)"
            ),
            UrlProblem::Syntax { reason } => write!(f, "not a PostgreSQL URL: {reason}"),
        }
    }
}

/// Whether `key` may be quoted in a message: lowercase ASCII letters and
/// `_` only, like every libpq parameter name. Anything else found where a
/// key was expected may be a piece of a password split by an unencoded
/// special character.
pub(crate) fn is_plain_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// Every problem found in a database URL (never empty).
///
/// `Display` lists the missing parts first, then the other problems:
/// `missing: host, password; invalid: port (expected 1-65535)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UrlError {
    problems: Vec<UrlProblem>,
}

impl UrlError {
    /// Builds an error from its problems.
    ///
    /// # Panics
    /// If `problems` is empty: an error without a problem is a bug.
    pub fn new(problems: Vec<UrlProblem>) -> Self {
        assert!(!problems.is_empty(), "UrlError without a problem");
        UrlError { problems }
    }

    /// The problems, in the order found.
    pub fn problems(&self) -> &[UrlProblem] {
        &self.problems
    }

    /// The parts reported missing.
    pub fn missing(&self) -> impl Iterator<Item = &UrlPart> {
        self.problems.iter().filter_map(|p| match p {
            UrlProblem::Missing { part } => Some(part),
            _ => None,
        })
    }
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let missing: Vec<String> = self.missing().map(ToString::to_string).collect();
        let mut first = true;
        if !missing.is_empty() {
            write!(f, "missing: {}", missing.join(", "))?;
            first = false;
        }
        for problem in &self.problems {
            if matches!(problem, UrlProblem::Missing { .. }) {
                continue;
            }
            if !first {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
            first = false;
        }
        Ok(())
    }
}

impl std::error::Error for UrlError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_groups_missing_parts_first() {
        let err = UrlError::new(vec![
            UrlProblem::Invalid {
                part: UrlPart::Port,
                expected: "1-65535".into(),
            },
            UrlProblem::Missing {
                part: UrlPart::Host,
            },
            UrlProblem::Missing {
                part: UrlPart::Password,
            },
        ]);
        assert_eq!(
            err.to_string(),
            "missing: host, password; invalid: port (expected 1-65535)"
        );
    }

    #[test]
    fn json_names_parts_by_their_display_name() {
        let err = UrlError::new(vec![
            UrlProblem::Missing {
                part: UrlPart::Param("sslkey".into()),
            },
            UrlProblem::Invalid {
                part: UrlPart::Password,
                expected: "no NUL character".into(),
            },
        ]);
        let json = serde_json::to_value(&err).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"problems": [
                {"problem": "missing", "part": "parameter sslkey"},
                {"problem": "invalid", "part": "password", "expected": "no NUL character"},
            ]})
        );
    }

    #[test]
    #[should_panic(expected = "without a problem")]
    fn an_error_needs_a_problem() {
        let _ = UrlError::new(Vec::new());
    }
}
