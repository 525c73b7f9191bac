//! Reading a connection string: `postgres://...` URLs and libpq `key=value` strings.
//!
//! Both forms fill a [`DatabaseUrlBuilder`], which checks the parts, so a
//! parsed URL obeys exactly the rules of a built one. Problems never quote
//! the password, and when the text is too broken to tell the password from
//! the host (an unencoded `/`, `?` or `#` in a password), nothing after the
//! scheme is quoted at all.

use super::builder::DatabaseUrlBuilder;
use super::error::{UrlPart, UrlProblem};
use super::percent::decode;

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
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            builder.found.push(UrlProblem::Syntax {
                reason: "each query parameter must be key=value".into(),
            });
            continue;
        };
        match decode(key) {
            Ok(key) => set_keyword_encoded(builder, &key, value),
            Err(_) => builder.found.push(UrlProblem::Syntax {
                reason: "a query parameter name has a malformed percent-escape".into(),
            }),
        }
    }
}

/// Sets a part or parameter from its percent-encoded text.
fn set_keyword_encoded(builder: &mut DatabaseUrlBuilder, key: &str, encoded: &str) {
    let part = part_of_keyword(key);
    match decode(encoded) {
        Ok(value) => set_keyword(builder, part, value),
        Err(why) => builder.found.push(UrlProblem::Invalid {
            value: (part != UrlPart::Password).then(|| encoded.to_string()),
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
                builder.found.push(UrlProblem::Syntax {
                    reason: format!("the quoted value of {key:?} has no closing quote"),
                });
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
        set_keyword(builder, part_of_keyword(&key), value);
    }
}
