//! The host of a database URL: a DNS name, an IPv4 address or an IPv6 address.
//!
//! Hosts arrive from people and from tools: `heroku config:get`, a Pulumi
//! `endpoint` output that is `address:port`, an IPv6 address with or without
//! brackets. [`split_host_port`] turns any of those into a [`Host`] and the
//! port it carried, so the URL is written with exactly one port.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::error::{UrlPart, UrlProblem};

/// A validated host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name (`ec2-1-2-3-4.compute-1.amazonaws.com`, `localhost`).
    Name(String),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address (written in brackets in a URL).
    Ipv6(Ipv6Addr),
}

/// What a host must look like, for problems.
const HOST_EXPECTED: &str = "a DNS name, an IPv4 address or an [IPv6] address";

impl Host {
    /// The host as a connection needs it: names and addresses without brackets.
    pub fn to_connect_string(&self) -> String {
        match self {
            Host::Name(name) => name.clone(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
        }
    }

    /// Whether TLS host-name verification applies (names) or an IP address is checked.
    pub fn is_name(&self) -> bool {
        matches!(self, Host::Name(_))
    }
}

/// As written in a URL: IPv6 in brackets.
impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ipv4(ip) => write!(f, "{ip}"),
            Host::Ipv6(ip) => write!(f, "[{ip}]"),
        }
    }
}

impl FromStr for Host {
    type Err = String;

    /// Parses a host without a port: a DNS name, IPv4, or IPv6 with or
    /// without brackets. The error says what was expected.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            return inner
                .parse::<Ipv6Addr>()
                .map(Host::Ipv6)
                .map_err(|_| "an IPv6 address inside the brackets".to_string());
        }
        if let Ok(ip) = s.parse::<Ipv6Addr>() {
            return Ok(Host::Ipv6(ip));
        }
        if let Ok(ip) = s.parse::<Ipv4Addr>() {
            return Ok(Host::Ipv4(ip));
        }
        if s.starts_with('/') {
            return Err("a TCP host (Unix-domain socket directories are not supported)".into());
        }
        if s.contains(',') {
            return Err("a single host (multi-host URLs are not supported)".into());
        }
        if is_dns_name(s) {
            Ok(Host::Name(s.to_string()))
        } else {
            Err(HOST_EXPECTED.into())
        }
    }
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_`
/// (1-63 bytes, not starting or ending with `-`), at most 253 bytes, an
/// optional trailing dot, and a last label that is not all digits (that
/// would be a mistyped IPv4 address).
fn is_dns_name(s: &str) -> bool {
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let last_numeric = labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    labels.iter().all(label_ok) && !last_numeric
}

/// Parses a port: 1-65535.
pub(crate) fn parse_port(s: &str) -> Result<u16, UrlProblem> {
    match s.parse::<u16>() {
        Ok(port) if port > 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ if s.contains(':') && s.split(':').all(|p| p.parse::<u16>().is_ok_and(|p| p > 0)) => {
            Err(UrlProblem::Invalid {
                part: UrlPart::Port,
                expected: "one port 1-65535, not several (the host carries :port more than \
                           once: an RDS endpoint, which is host:port, with :port added again?)"
                    .into(),
            })
        }
        _ => Err(UrlProblem::Invalid {
            part: UrlPart::Port,
            expected: "1-65535".into(),
        }),
    }
}

/// Splits a host as given (`name`, `name:port`, `1.2.3.4:5432`, `::1`,
/// `[::1]:5432`) into the host and the port it carried.
///
/// Returns every problem found (host and port are checked independently).
pub(crate) fn split_host_port(s: &str) -> Result<(Host, Option<u16>), Vec<UrlProblem>> {
    let invalid_host = |expected: String| UrlProblem::Invalid {
        part: UrlPart::Host,
        expected,
    };
    let (host_text, port_text) = if s.starts_with('[') {
        match s.find(']').map(|i| s.split_at(i + 1)) {
            Some((bracketed, "")) => (bracketed, None),
            Some((bracketed, after)) => match after.strip_prefix(':') {
                Some(port) => (bracketed, Some(port)),
                None => return Err(vec![invalid_host(format!("{HOST_EXPECTED}, then :port"))]),
            },
            None => {
                return Err(vec![invalid_host(
                    "a closing ] after an IPv6 address".into(),
                )])
            }
        }
    } else if s.parse::<Ipv6Addr>().is_ok() {
        (s, None)
    } else {
        match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    let host = if host_text.is_empty() {
        Err(UrlProblem::Missing {
            part: UrlPart::Host,
        })
    } else {
        host_text.parse::<Host>().map_err(invalid_host)
    };
    let port = port_text.map(parse_port).transpose();
    match (host, port) {
        (Ok(host), Ok(port)) => Ok((host, port)),
        (host, port) => Err(host.err().into_iter().chain(port.err()).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> (Host, Option<u16>) {
        split_host_port(s).unwrap_or_else(|e| panic!("{s}: {e:?}"))
    }

    #[test]
    fn names_and_addresses() {
        assert_eq!(split("localhost"), (Host::Name("localhost".into()), None));
        assert_eq!(
            split("mydb.abc123.us-east-1.rds.amazonaws.com"),
            (
                Host::Name("mydb.abc123.us-east-1.rds.amazonaws.com".into()),
                None
            )
        );
        assert_eq!(
            split("10.0.0.1"),
            (Host::Ipv4(Ipv4Addr::new(10, 0, 0, 1)), None)
        );
        assert_eq!(split("::1"), (Host::Ipv6(Ipv6Addr::LOCALHOST), None));
        assert_eq!(split("[::1]"), (Host::Ipv6(Ipv6Addr::LOCALHOST), None));
    }

    #[test]
    fn an_endpoint_pasted_whole_is_split() {
        assert_eq!(
            split("mydb.abc123.us-east-1.rds.amazonaws.com:5432"),
            (
                Host::Name("mydb.abc123.us-east-1.rds.amazonaws.com".into()),
                Some(5432)
            )
        );
        assert_eq!(
            split("[2001:db8::1]:6432"),
            (Host::Ipv6("2001:db8::1".parse().unwrap()), Some(6432))
        );
        assert_eq!(
            split("127.0.0.1:5433"),
            (Host::Ipv4(Ipv4Addr::LOCALHOST), Some(5433))
        );
    }

    #[test]
    fn a_doubled_port_is_refused_not_kept() {
        let problems = split_host_port("db.example.com:5432:5432").unwrap_err();
        assert!(
            matches!(
                &problems[..],
                [UrlProblem::Invalid { part: UrlPart::Port, expected }] if expected.contains("RDS endpoint")
            ),
            "{problems:?}"
        );
        assert!(!problems[0].to_string().contains("5432"), "{}", problems[0]);
    }

    #[test]
    fn bad_hosts_and_ports_are_both_named() {
        let problems = split_host_port("bad host:abc").unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(matches!(
            &problems[0],
            UrlProblem::Invalid {
                part: UrlPart::Host,
                ..
            }
        ));
        assert!(matches!(
            &problems[1],
            UrlProblem::Invalid {
                part: UrlPart::Port,
                ..
            }
        ));
        assert!(
            !problems.iter().any(|p| p.to_string().contains("abc")),
            "{problems:?}"
        );
        for bad in [
            "a b",
            "-lead.example.com",
            "x..y",
            "999.1.1.1",
            "h@st",
            "[::1",
            "[nope]",
            "[::1]5432",
            "/var/run/postgresql",
            "h1,h2",
            "é.example.com",
        ] {
            assert!(split_host_port(bad).is_err(), "{bad} accepted");
        }
        for bad_port in ["h:0", "h:65536", "h:", "h:+1", "h:-1"] {
            let problems = split_host_port(bad_port).unwrap_err();
            assert!(
                matches!(
                    &problems[0],
                    UrlProblem::Invalid {
                        part: UrlPart::Port,
                        ..
                    }
                ),
                "{bad_port}: {problems:?}"
            );
        }
        assert_eq!(
            split_host_port(":5432").unwrap_err(),
            vec![UrlProblem::Missing {
                part: UrlPart::Host
            }]
        );
    }

    #[test]
    fn ipv6_is_written_in_brackets() {
        assert_eq!(Host::Ipv6(Ipv6Addr::LOCALHOST).to_string(), "[::1]");
        assert_eq!(Host::Ipv6(Ipv6Addr::LOCALHOST).to_connect_string(), "::1");
        assert_eq!("[::1]".parse::<Host>(), Ok(Host::Ipv6(Ipv6Addr::LOCALHOST)));
    }
}
