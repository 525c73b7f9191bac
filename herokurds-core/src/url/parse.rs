//! Reading a connection string: `postgres://...` URLs and libpq `key=value` strings.
//!
//! Both forms fill a [`DatabaseUrlBuilder`], which checks the parts, so a
//! parsed URL obeys exactly the rules of a built one. Problems never quote
//! the password, and when the text is too broken to tell the password from
//! the host (an unencoded `/`, `?` or `#` in a password, or `user:password`
//! with no `@host`), nothing after the scheme is quoted at all.
//!
//! An unquoted password that holds a space (key=value form) or an `&` (a
//! URL's query) is split by libpq, and by us, into the password and a word
//! that looks like a parameter name. So a name we do not know, met after
//! `password=` and before any name we know, is never quoted: it may be the
//! rest of the password.

use std::net::Ipv6Addr;

use super::builder::DatabaseUrlBuilder;
use super::error::{is_plain_key, UrlPart, UrlProblem};
use super::host::parse_port;
use super::params::Param;
use super::percent::decode;

/// Reported instead of an unknown key=value name that follows `password=`.
const UNKNOWN_AFTER_PASSWORD: &str = "an unknown parameter follows password= (not named: it \
     may be the rest of the password); quote a password that contains spaces with single \
     quotes, escaping ' and \\ with a backslash: password='a b=c'";

/// Reported instead of an unknown query parameter name that follows `password=`.
const UNKNOWN_AFTER_PASSWORD_QUERY: &str = "an unknown query parameter follows password= (not \
     named: it may be the rest of the password); write an '&' in a password as %26";

/// Parses a `postgres://` / `postgresql://` URL or a libpq `key=value` string.
pub(crate) fn parse(text: &str) -> DatabaseUrlBuilder {
    let text = text.trim();
    let mut builder = DatabaseUrlBuilder::new();
    if let Some((scheme, rest)) = text.split_once("://") {
        if scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            builder.scheme_text(scheme);
            parse_uri_rest(&mut builder, rest);
            return builder;
        }
        if scheme.contains('=') && !scheme.contains(char::is_whitespace) {
            builder.found.push(UrlProblem::Syntax {
                reason: "the text starts with NAME= before the URL (as in a shell assignment \
                         or an env file): give the URL alone"
                    .into(),
            });
            return builder;
        }
    }
    if let Some(scheme) = malformed_scheme(text) {
        builder.found.push(UrlProblem::Syntax {
            reason: format!("a URL starts with {scheme}:// (a colon and two slashes)"),
        });
        return builder;
    }
    if text.contains('=') {
        parse_key_values(&mut builder, text);
    } else {
        builder.found.push(UrlProblem::Syntax {
            reason: "expected postgres://user:password@host:port/dbname?param=value \
                     or key=value pairs"
                .into(),
        });
    }
    builder
}

/// `postgres` or `postgresql` when `text` starts with one of them
/// followed by something other than `://` (`postgres:/`, `postgres//`,
/// `postgres:u:...`): a URL with a typo, not a `key=value` string.
fn malformed_scheme(text: &str) -> Option<&'static str> {
    let lower = text.get(..12).unwrap_or(text).to_ascii_lowercase();
    ["postgresql", "postgres"].into_iter().find(|scheme| {
        lower
            .strip_prefix(scheme)
            .is_some_and(|rest| rest.starts_with([':', '/']))
    })
}

/// Everything after `scheme://`.
fn parse_uri_rest(builder: &mut DatabaseUrlBuilder, rest: &str) {
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if tail.contains('@') {
        builder.found.push(UrlProblem::Syntax {
            reason: "an '@' comes after a '/', '?' or '#': if the user or password contains \
                     one of those characters, percent-encode it (%2F, %3F, %23); an '@' in the \
                     database name must be written %40"
                .into(),
        });
        return;
    }
    if tail.contains('#') {
        builder.found.push(UrlProblem::Syntax {
            reason: "'#' in the database name or a parameter must be written %23".into(),
        });
        return;
    }
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    if userinfo.is_none() && maybe_user_and_password(hostport) {
        builder.found.push(UrlProblem::Syntax {
            reason: "no '@' before the host, and what follows its ':' is not a port 1-65535: \
                     if this is user:password, add @host after it"
                .into(),
        });
        return;
    }
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        set_decoded(builder, UrlPart::User, user);
        if let Some(password) = password {
            set_decoded(builder, UrlPart::Password, password);
        }
    }
    if !hostport.is_empty() {
        set_decoded(builder, UrlPart::Host, hostport);
    }
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    if let Some(dbname) = path.strip_prefix('/') {
        if !dbname.is_empty() {
            set_decoded(builder, UrlPart::Dbname, dbname);
        }
    }
    let mut after_password = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            builder.found.push(UrlProblem::Syntax {
                reason: "each query parameter must be key=value".into(),
            });
            continue;
        };
        match decode(key) {
            Ok(key) if after_password && !is_known_keyword(&key) => {
                push_once(builder, UNKNOWN_AFTER_PASSWORD_QUERY);
            }
            Ok(key) => {
                after_password = key == "password";
                set_keyword_encoded(builder, &key, value);
            }
            Err(_) => builder.found.push(UrlProblem::Syntax {
                reason: "a query parameter name has a malformed percent-escape".into(),
            }),
        }
    }
}

/// An authority without `@` whose `:` is followed by something that is not
/// a port: most likely `user:password` with the `@host` left out, so
/// neither half may be quoted.
fn maybe_user_and_password(hostport: &str) -> bool {
    if hostport.starts_with('[') || hostport.parse::<Ipv6Addr>().is_ok() {
        return false;
    }
    hostport
        .split_once(':')
        .is_some_and(|(_, port)| parse_port(port).is_err())
}

/// Whether libpq's `key` is one we know: a part of the URL, or a parameter
/// we accept or refuse by name.
fn is_known_keyword(key: &str) -> bool {
    !matches!(part_of_keyword(key), UrlPart::Param(_))
        || Param::from_name(key).is_some()
        || Param::unsupported_reason(key).is_some()
}

/// Records a syntax problem unless the same one is already recorded.
fn push_once(builder: &mut DatabaseUrlBuilder, reason: &str) {
    let problem = UrlProblem::Syntax {
        reason: reason.into(),
    };
    if !builder.found.contains(&problem) {
        builder.found.push(problem);
    }
}

/// Sets a part or parameter from its percent-encoded text.
fn set_keyword_encoded(builder: &mut DatabaseUrlBuilder, key: &str, encoded: &str) {
    let part = part_of_keyword(key);
    match decode(encoded) {
        Ok(value) => set_keyword(builder, part, value),
        Err(why) => builder.found.push(UrlProblem::Invalid {
            part,
            expected: why.expected().into(),
        }),
    }
}

fn set_decoded(builder: &mut DatabaseUrlBuilder, part: UrlPart, encoded: &str) {
    set_keyword_encoded(builder, keyword_of(&part), encoded);
}

fn keyword_of(part: &UrlPart) -> &str {
    match part {
        UrlPart::Scheme => "scheme",
        UrlPart::User => "user",
        UrlPart::Password => "password",
        UrlPart::Host => "host",
        UrlPart::Port => "port",
        UrlPart::Dbname => "dbname",
        UrlPart::Param(name) => name,
    }
}

/// libpq keywords for the URL's parts; anything else is a parameter.
fn part_of_keyword(key: &str) -> UrlPart {
    match key {
        "user" => UrlPart::User,
        "password" => UrlPart::Password,
        "host" => UrlPart::Host,
        "port" => UrlPart::Port,
        "dbname" => UrlPart::Dbname,
        other => UrlPart::Param(other.to_string()),
    }
}

/// Sets a part, reporting it as a duplicate if it was already given
/// (e.g. a host in the URL and again as `?host=`).
fn set_keyword(builder: &mut DatabaseUrlBuilder, part: UrlPart, value: String) {
    if !matches!(part, UrlPart::Param(_)) && builder.has(&part) {
        if !builder
            .found
            .contains(&UrlProblem::Duplicate { part: part.clone() })
        {
            builder.found.push(UrlProblem::Duplicate { part });
        }
        return;
    }
    match part {
        UrlPart::User => builder.user(value),
        UrlPart::Password => builder.password(value.into()),
        UrlPart::Host => builder.host(value),
        UrlPart::Port => builder.port_text(value),
        UrlPart::Dbname => builder.dbname(value),
        UrlPart::Param(name) => builder.param(name, value),
        UrlPart::Scheme => builder.scheme_text(value),
    };
}

/// libpq's `key=value key='quoted value'` form (`\` escapes inside values).
fn parse_key_values(builder: &mut DatabaseUrlBuilder, text: &str) {
    let mut chars = text.chars().peekable();
    // Set by `password=`, cleared by the next known key: an unknown key in
    // between may be the rest of an unquoted password.
    let mut after_password = false;
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'=').is_none() {
            builder.found.push(UrlProblem::Syntax {
                // The word is not quoted: it may be part of an unquoted password.
                reason: "a word without '=' in a key=value string (quote values that \
                         contain spaces: password='a b')"
                    .into(),
            });
            return;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let hidden = after_password && !is_known_keyword(&key);
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                let reason = if hidden {
                    "a quoted value after password= has no closing quote".to_string()
                } else if is_plain_key(&key) {
                    format!("the quoted value of {key:?} has no closing quote")
                } else {
                    "a quoted value has no closing quote".to_string()
                };
                builder.found.push(UrlProblem::Syntax { reason });
                return;
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        if hidden {
            push_once(builder, UNKNOWN_AFTER_PASSWORD);
            continue;
        }
        after_password = key == "password";
        set_keyword(builder, part_of_keyword(&key), value);
    }
}
