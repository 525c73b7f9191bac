//! The URL rules, without a database.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

fn parse(s: &str) -> DatabaseUrl {
    s.parse()
        .unwrap_or_else(|e| panic!("{s} should parse: {e}"))
}

fn problems(s: &str) -> Vec<UrlProblem> {
    match s.parse::<DatabaseUrl>() {
        Ok(url) => panic!("{s} should not parse, got {url}"),
        Err(e) => e.problems().to_vec(),
    }
}

fn error_text(s: &str) -> String {
    s.parse::<DatabaseUrl>().unwrap_err().to_string()
}

fn invalid(part: UrlPart) -> impl Fn(&UrlProblem) -> bool {
    move |p| matches!(p, UrlProblem::Invalid { part: q, .. } if *q == part)
}

fn builder() -> DatabaseUrlBuilder {
    let mut b = DatabaseUrl::builder();
    b.user("u").password("pw".into()).host("h").dbname("d");
    b
}

#[test]
fn a_heroku_url_parses_into_its_parts() {
    let url = parse("postgres://uabc:p4ss@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d9x");
    assert_eq!(url.scheme(), Scheme::Postgres);
    assert_eq!(url.user(), "uabc");
    assert_eq!(url.password().expose_secret(), "p4ss");
    assert_eq!(
        url.host(),
        &Host::Name("ec2-1-2-3-4.compute-1.amazonaws.com".into())
    );
    assert_eq!(url.port(), 5432);
    assert_eq!(url.dbname(), "d9x");
    assert_eq!(url.params().count(), 0);
    // No sslmode means require here, not libpq's prefer.
    assert_eq!(url.ssl_mode(), SslMode::Require);
}

#[test]
fn the_parsed_scheme_is_kept() {
    let url = parse("postgresql://u:p@h/d");
    assert_eq!(url.scheme(), Scheme::Postgresql);
    assert_eq!(url.expose_url(), "postgresql://u:p@h:5432/d");
}

#[test]
fn the_port_is_always_written() {
    assert_eq!(
        parse("postgres://u:p@h/d").expose_url(),
        "postgres://u:p@h:5432/d"
    );
    assert_eq!(builder().build().unwrap().port(), 5432);
}

#[test]
fn every_missing_part_is_named_at_once() {
    let err = DatabaseUrl::builder().build().unwrap_err();
    assert_eq!(err.to_string(), "missing: user, password, host, dbname");
    assert_eq!(err.missing().count(), 4);
    assert_eq!(
        error_text("postgres:///"),
        "missing: user, password, host, dbname"
    );
    assert_eq!(error_text("postgres://u@/d"), "missing: password, host");
}

#[test]
fn missing_and_malformed_parts_are_named_together() {
    let err = DatabaseUrl::builder()
        .user("u")
        .dbname("d")
        .port_text("abc")
        .scheme_text("mysql")
        .param("sslmode", "on")
        .param("sslmod", "require")
        .build()
        .unwrap_err();
    let text = err.to_string();
    for expected in [
        "missing: password, host",
        "invalid: port (expected 1-65535)",
        "invalid: scheme (expected postgres or postgresql)",
        "invalid: parameter sslmode (expected one of disable, allow, prefer, require, verify-ca, verify-full)",
        r#"unknown parameter "sslmod" (did you mean sslmode?)"#,
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text:?}");
    }
    // Values are never quoted: in a malformed URL any may be a piece of the password.
    for value in ["abc", "mysql", "\"on\""] {
        assert!(!text.contains(value), "{value} in {text:?}");
    }
    assert_eq!(err.problems().len(), 6, "{:?}", err.problems());
}

#[test]
fn empty_parts_count_as_missing() {
    let err = DatabaseUrl::builder()
        .user("")
        .password("".into())
        .host("")
        .dbname("")
        .build()
        .unwrap_err();
    assert_eq!(err.to_string(), "missing: user, password, host, dbname");
    assert_eq!(
        error_text("postgres://:@:5432/"),
        "missing: user, password, host, dbname"
    );
}

#[test]
fn an_rds_endpoint_pasted_as_host_is_split() {
    let endpoint = "mydb.c9abc.us-east-1.rds.amazonaws.com:5432";
    let url = builder().host(endpoint).build().unwrap();
    assert_eq!(
        url.host(),
        &Host::Name("mydb.c9abc.us-east-1.rds.amazonaws.com".into())
    );
    assert_eq!(url.port(), 5432);
    assert!(!url.expose_url().contains(":5432:5432"));
    // The same port given again is fine; another port is a conflict naming both.
    assert_eq!(builder().host(endpoint).port(5432).build().unwrap(), url);
    let err = builder().host(endpoint).port(6432).build().unwrap_err();
    assert_eq!(
        err.problems(),
        [UrlProblem::PortConflict {
            host_port: 5432,
            port: 6432
        }]
    );
    assert!(err.to_string().contains("5432") && err.to_string().contains("6432"));
    // A host carrying its port in a URL is a doubled port, not a host.
    assert!(problems("postgres://u:p@h:5432:5432/d")
        .iter()
        .any(invalid(UrlPart::Port)));
    assert!(error_text("postgres://u:p@h:5432:5432/d").contains("RDS endpoint"));
}

#[test]
fn a_host_from_the_runbook_template_is_refused() {
    // `postgres://user:pw@${endpoint}:5432/db` with endpoint = host:5432.
    let err = builder()
        .host("h.example.com:5432:5432")
        .build()
        .unwrap_err();
    assert!(err.problems().iter().any(invalid(UrlPart::Port)));
    assert!(err.to_string().contains("not several"), "{err}");
}

#[test]
fn ipv6_hosts_are_bracketed() {
    let url = parse("postgres://u:p@[2001:db8::7]:6543/d");
    assert_eq!(url.host(), &Host::Ipv6("2001:db8::7".parse().unwrap()));
    assert_eq!(url.port(), 6543);
    assert_eq!(url.expose_url(), "postgres://u:p@[2001:db8::7]:6543/d");
    let built = builder().host("::1").build().unwrap();
    assert_eq!(built.host(), &Host::Ipv6(Ipv6Addr::LOCALHOST));
    assert_eq!(built.expose_url(), "postgres://u:pw@[::1]:5432/d");
    let built = builder().host("[::1]:5433").build().unwrap();
    assert_eq!(built.port(), 5433);
    assert_eq!(
        parse("postgres://u:p@127.0.0.1/d").host(),
        &Host::Ipv4(Ipv4Addr::LOCALHOST)
    );
}

#[test]
fn bad_hosts_are_named() {
    for url in [
        "postgres://u:p@bad_host!/d",
        "postgres://u:p@[::zz]/d",
        "postgres://u:p@h1,h2/d",
        "postgres://u:p@%2Fvar%2Frun%2Fpostgresql/d",
    ] {
        let found = problems(url);
        assert!(
            found.iter().any(|p| matches!(
                p,
                UrlProblem::Invalid {
                    part: UrlPart::Host,
                    ..
                }
            )),
            "{url}: {found:?}"
        );
    }
    assert!(error_text("postgres://u:p@h1,h2/d").contains("multi-host"));
    assert!(error_text("postgres://u:p@%2Ftmp/d").contains("Unix-domain"));
}

#[test]
fn bad_ports_are_named() {
    for url in [
        "postgres://u:p@h:0/d",
        "postgres://u:p@h:65536/d",
        "postgres://u:p@h:/d",
        "postgres://u:p@h:54x/d",
    ] {
        assert!(problems(url).iter().any(invalid(UrlPart::Port)), "{url}");
    }
}

#[test]
fn params_are_parsed_checked_and_kept_in_order() {
    let url = parse(
        "postgres://u:p@h/d?sslmode=verify-full&sslrootcert=%2Fetc%2Frds%20bundle.pem\
         &application_name=herokurds%20check&connect_timeout=10&options=-c%20statement_timeout%3D0",
    );
    assert_eq!(url.ssl_mode(), SslMode::VerifyFull);
    assert_eq!(url.ssl_root_cert(), Some(Path::new("/etc/rds bundle.pem")));
    assert_eq!(url.application_name(), Some("herokurds check"));
    assert_eq!(url.connect_timeout(), Some(Duration::from_secs(10)));
    assert_eq!(url.param(Param::Options), Some("-c statement_timeout=0"));
    let names: Vec<_> = url.params().map(|(p, _)| p.name()).collect();
    assert_eq!(
        names,
        [
            "sslmode",
            "sslrootcert",
            "application_name",
            "connect_timeout",
            "options"
        ]
    );
    assert_eq!(parse(&url.expose_url()), url);
    // Paths stay readable in the written URL.
    assert!(url
        .expose_url()
        .contains("&sslrootcert=/etc/rds%20bundle.pem&"));
}

#[test]
fn a_plus_in_a_value_is_a_plus() {
    // libpq does not decode `+` as a space; neither do we.
    assert_eq!(
        parse("postgres://u:p+q@h/d?application_name=a+b")
            .password()
            .expose_secret(),
        "p+q"
    );
    assert_eq!(
        parse("postgres://u:p@h/d?application_name=a+b").application_name(),
        Some("a+b")
    );
}

#[test]
fn unknown_unsupported_and_repeated_params_are_named() {
    let found = problems(
        "postgres://u:p@h/d?pool=5&gssencmode=disable&sslmode=require&sslmode=disable&host=x",
    );
    assert!(found.contains(&UrlProblem::UnknownParam {
        name: "pool".into(),
        suggestion: None
    }));
    assert!(found
        .iter()
        .any(|p| matches!(p, UrlProblem::UnsupportedParam { name, .. } if name == "gssencmode")));
    assert!(found.contains(&UrlProblem::Duplicate {
        part: UrlPart::Param("sslmode".into())
    }));
    assert!(found.contains(&UrlProblem::Duplicate {
        part: UrlPart::Host
    }));
    assert!(problems("postgres://u:p@h/d?sslmode")
        .iter()
        .any(|p| matches!(p, UrlProblem::Syntax { .. })));
    // A parameter naming a part, given through the builder, says where it belongs.
    let err = builder().param("password", "x").build().unwrap_err();
    assert!(err.to_string().contains("own part of the URL"), "{err}");
}

#[test]
fn a_client_certificate_needs_its_key() {
    let err = builder().param("sslcert", "/c.pem").build().unwrap_err();
    assert_eq!(
        err.problems(),
        [UrlProblem::Missing {
            part: UrlPart::Param("sslkey".into())
        }]
    );
    assert!(builder()
        .param("sslcert", "/c.pem")
        .param("sslkey", "/k.pem")
        .build()
        .is_ok());
}

#[test]
fn parts_may_come_from_the_query_like_libpq() {
    let url = parse("postgresql:///app?host=db.example.com&port=6432&user=me&password=p%40ss");
    assert_eq!(url.host(), &Host::Name("db.example.com".into()));
    assert_eq!(url.port(), 6432);
    assert_eq!(url.user(), "me");
    assert_eq!(url.password().expose_secret(), "p@ss");
    assert_eq!(url.dbname(), "app");
}

#[test]
fn key_value_form_is_accepted() {
    let url = parse(
        r"host=db.example.com port=6432 user=me password='it\'s a \\secret' dbname=app sslmode=require",
    );
    assert_eq!(url.host(), &Host::Name("db.example.com".into()));
    assert_eq!(url.port(), 6432);
    assert_eq!(url.password().expose_secret(), r"it's a \secret");
    assert_eq!(url.ssl_mode(), SslMode::Require);
    assert_eq!(
        url.expose_url(),
        "postgres://me:it%27s%20a%20%5Csecret@db.example.com:6432/app?sslmode=require"
    );
    let err = error_text("host=h user=u password='open dbname=d");
    assert!(err.contains("no closing quote"), "{err}");
    assert!(!err.contains("open"), "{err}");
    let err = error_text("host=h password=two words dbname=d user=u");
    assert!(err.contains("without '='"), "{err}");
    assert!(!err.contains("words"), "{err}");
}

#[test]
fn text_that_is_not_a_url_is_refused_without_quoting_it() {
    let err = error_text("my secret password");
    assert!(err.starts_with("not a PostgreSQL URL"), "{err}");
    assert!(!err.contains("secret"), "{err}");
    let err = error_text("mysql://u:secret@h/d");
    assert!(err.contains("invalid: scheme (expected"), "{err}");
    assert!(!err.contains("secret"), "{err}");
}

#[test]
fn special_characters_round_trip_exactly() {
    let password = "@:/?#%[] é'\"$\\\n\t😀&=+*";
    let url = builder()
        .user("us@er:/é")
        .password(password.into())
        .dbname("db/with?odd#chars é")
        .param("application_name", "a&b=c#d é")
        .build()
        .unwrap();
    let exposed = url.expose_url();
    assert!(
        !exposed.contains(' ') && !exposed.contains('\n'),
        "{exposed}"
    );
    let back = parse(&exposed);
    assert_eq!(back.password().expose_secret(), password);
    assert_eq!(back, url);
}

#[test]
fn an_unencoded_special_in_a_password_is_not_mistaken_for_a_host() {
    // A hand-built URL with a raw `/` in the password: libpq would report
    // "invalid port" quoting part of the password. We quote nothing.
    for url in [
        "postgres://u:zq/xk@h:5432/d",
        "postgres://u:zq?xk@h:5432/d",
        "postgres://u:zq#xk@h:5432/d",
    ] {
        let err = error_text(url);
        assert!(err.contains("percent-encode"), "{err}");
        assert!(!err.contains("zq") && !err.contains("xk"), "{url}: {err}");
    }
    // A raw `@` is unambiguous: the host follows the last one.
    assert_eq!(
        parse("postgres://u:p@ss@h/d").password().expose_secret(),
        "p@ss"
    );
    // A raw `:` in a password is fine too.
    assert_eq!(
        parse("postgres://u:a:b@h/d").password().expose_secret(),
        "a:b"
    );
}

#[test]
fn a_malformed_password_escape_is_named_not_shown() {
    for url in [
        "postgres://u:sec%zzret@h/d",
        "postgres://u:secret%@h/d",
        "postgres://u:secret%ff@h/d",
        "postgres://u:p@h/d?password=sec%zzret",
    ] {
        let found = problems(url);
        assert!(
            found.iter().any(invalid(UrlPart::Password)),
            "{url}: {found:?}"
        );
        let text = error_text(url);
        assert!(!text.contains("sec") && !text.contains("%zz"), "{text}");
        assert!(
            !text.contains("missing: password"),
            "reported twice: {text}"
        );
    }
    assert!(problems("postgres://us%zzer:p@h/d")
        .iter()
        .any(invalid(UrlPart::User)));
    assert!(!error_text("postgres://us%zzer:p@h/d").contains("us%zzer"));
}

/// Parses `input`, which must fail, and checks that no `fragment` is in
/// the error's `Display`, `Debug` or JSON.
fn error_hiding(input: &str, fragments: &[&str]) -> UrlError {
    let err = input.parse::<DatabaseUrl>().unwrap_err();
    for shown in [
        err.to_string(),
        format!("{err:?}"),
        serde_json::to_string(&err).unwrap(),
    ] {
        for fragment in fragments {
            assert!(
                !shown.contains(fragment),
                "{input:?}: {fragment:?} shown in {shown}"
            );
        }
    }
    err
}

fn syntax_reason(err: &UrlError) -> &str {
    match err.problems() {
        [UrlProblem::Syntax { reason }] => reason,
        other => panic!("expected one syntax problem, got {other:?}"),
    }
}

#[test]
fn an_unquoted_password_split_by_a_space_is_not_quoted() {
    // libpq splits these too; the word after the space looks like a key.
    for input in [
        "host=h user=u password=Zq7ab Xk9cd=Wv3ef dbname=d",
        "host=h user=u password=Zq7ab\tXk9cd=Wv3ef dbname=d",
        "host=h user=u password=Zq7ab  \t Xk9cd=Wv3ef",
        "password=Zq7ab Xk9cd=Wv3ef host=h user=u dbname=d",
        // Several words: still one problem.
        "host=h user=u password=Zq7ab Xk9cd=Wv3ef Xk9gh=Wv3ij dbname=d",
        // An unknown key straight after the password (a typo, or not).
        "host=h user=u password=Zq7ab Xk9cd=1 dbname=d",
        "host=h user=u password=Zq7ab Xk9cd= dbname=d",
        // A quoted password with text glued after its closing quote.
        "host=h user=u password='Zq7ab'Xk9cd=Wv3ef dbname=d",
        r"host=h user=u password='Zq7ab' Xk9cd='Wv3\'ef' dbname=d",
    ] {
        let err = error_hiding(input, &["Zq7", "Xk9", "Wv3"]);
        let reason = syntax_reason(&err);
        assert!(
            reason.contains("follows password=") && reason.contains("single quotes"),
            "{input:?}: {reason}"
        );
    }
    // An unclosed quote after the password does not name its key either.
    let err = error_hiding(
        "host=h user=u password=Zq7ab Xk9cd='Wv3ef dbname=d",
        &["Zq7", "Xk9", "Wv3"],
    );
    assert!(syntax_reason(&err).contains("no closing quote"), "{err}");
    // A word without '=' after the password is not quoted.
    error_hiding(
        "host=h user=u password=Zq7ab Xk9cd Wv3=ef dbname=d",
        &["Zq7", "Xk9", "Wv3"],
    );
    // Quoted, the same password is fine.
    let url = parse("host=h user=u password='Zq7ab Xk9cd=Wv3ef' dbname=d");
    assert_eq!(url.password().expose_secret(), "Zq7ab Xk9cd=Wv3ef");
}

#[test]
fn unknown_keys_away_from_the_password_are_still_named() {
    for input in [
        "host=h pool=5 user=u password=p dbname=d",
        "host=h user=u password=p dbname=d pool=5",
    ] {
        assert_eq!(
            problems(input),
            [UrlProblem::UnknownParam {
                name: "pool".into(),
                suggestion: None
            }],
            "{input}"
        );
    }
    // A typo straight after the password is not named; a known key is, and
    // ends the doubt.
    assert!(
        error_text("host=h user=u password=p sslmod=require dbname=d")
            .contains("follows password=")
    );
    assert!(
        error_text("host=h user=u password=p gssencmode=disable dbname=d")
            .contains(r#"unsupported parameter "gssencmode""#)
    );
}

#[test]
fn an_unencoded_ampersand_in_a_query_password_is_not_quoted() {
    let err = error_hiding(
        "postgresql:///d?host=h&user=u&password=Zq7ab&Xk9cd=Wv3ef&Xk9gh=Wv3%zz",
        &["Zq7", "Xk9", "Wv3"],
    );
    assert!(syntax_reason(&err).contains("%26"), "{err}");
    // After a known parameter, unknown ones are named again.
    assert!(
        problems("postgres://u:p@h/d?password=x&sslmode=require&pool=5").contains(
            &UrlProblem::UnknownParam {
                name: "pool".into(),
                suggestion: None
            }
        )
    );
}

#[test]
fn user_and_password_without_a_host_are_not_quoted() {
    // `postgres://user:password/db`: without '@', libpq reads host:port
    // and would report the password as an invalid port.
    for input in [
        "postgres://Zq7:Xk9Wv3/d",
        "postgres://Zq7:Xk9%zzWv3/d",
        "postgres://Zq7:Xk9Wv3",
        "postgres://Zq7:Xk9?Wv3=1",
        "postgres://Zq7:Xk9Wv3/d?Zq7=1",
        "postgres://Zq7:999999/d",
    ] {
        let err = error_hiding(input, &["Zq7", "Xk9", "Wv3", "999999"]);
        assert!(syntax_reason(&err).contains("add @host"), "{input}: {err}");
    }
    // Hosts without userinfo still parse.
    assert_eq!(error_text("postgres://h:6432/d"), "missing: user, password");
    assert_eq!(error_text("postgres://::1/d"), "missing: user, password");
    assert_eq!(
        error_text("postgres://[::1]:6432/d"),
        "missing: user, password"
    );
}

#[test]
fn a_malformed_password_never_shows_in_debug_or_json() {
    for input in [
        "postgres://u:Zq7%zzXk9@h/d",
        "postgres://u:Zq7Xk9%@h/d",
        "postgres://u:Zq7%ffXk9@h/d",
        "postgres://u:Zq7%e9Xk9@h/d",
        "postgres://u@h/d?password=Zq7%zzXk9",
        "host=h user=u dbname=d password=Zq7\u{0}Xk9",
        "host=h user=u dbname=d password='Zq7\u{0}Xk9'",
    ] {
        let err = error_hiding(input, &["Zq7", "Xk9", "%zz"]);
        assert!(
            err.problems().iter().any(invalid(UrlPart::Password)),
            "{input:?}: {:?}",
            err.problems()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever an unquoted password's words look like, the error names none.
    #[test]
    fn no_word_of_an_unquoted_password_is_ever_shown(
        words in proptest::collection::vec("Ж[a-z0-9='\\\\]{0,6}", 1..5),
        gaps in proptest::collection::vec(prop_oneof![Just(" "), Just("\t"), Just("  ")], 4),
        after in prop_oneof![Just(" dbname=d"), Just(""), Just(" sslmode=require dbname=d")],
    ) {
        let mut password = words[0].clone();
        for (word, gap) in words[1..].iter().zip(&gaps) {
            password.push_str(gap);
            password.push_str(word);
        }
        let input = format!("host=h user=u password={password}{after}");
        if let Err(err) = input.parse::<DatabaseUrl>() {
            for shown in [err.to_string(), format!("{err:?}"), serde_json::to_string(&err).unwrap()] {
                prop_assert!(!shown.contains('Ж'), "{:?}: {}", input, shown);
            }
        }
    }
}

#[test]
fn nul_characters_are_refused() {
    let err = builder().password("a\0b".into()).build().unwrap_err();
    assert!(err.problems().iter().any(invalid(UrlPart::Password)));
    assert!(!err.to_string().contains("a\\0b"), "{err}");
    assert!(builder().user("a\0").build().is_err());
    assert!(builder().dbname("a\0").build().is_err());
}

#[test]
fn display_and_debug_hide_the_password() {
    let url = builder().password("hunter2-secret".into()).build().unwrap();
    assert_eq!(url.to_string(), "postgres://u:***@h:5432/d");
    assert_eq!(url.redacted_url(), url.to_string());
    let debug = format!("{url:?}");
    assert!(debug.contains("\"***\""), "{debug}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(!format!("{:?}", url.to_builder().build()).contains("hunter2"));
    let builder_debug = format!("{:?}", url.to_builder());
    assert!(builder_debug.contains("Some(\"***\")"), "{builder_debug}");
    assert!(!builder_debug.contains("hunter2"), "{builder_debug}");
    assert!(url.expose_url().contains("hunter2-secret"));
}

#[test]
fn display_round_trips_with_the_password_redacted() {
    let url = parse("postgresql://u%20x:secret@[::1]:6000/d%2Fb?sslmode=require&keepalives=0");
    let shown: DatabaseUrl = url.to_string().parse().unwrap();
    assert_eq!(shown.password().expose_secret(), "***");
    assert_eq!(
        shown
            .to_builder()
            .password("secret".into())
            .build()
            .unwrap(),
        url
    );
    assert_eq!(parse(&url.expose_url()), url);
}

#[test]
fn to_builder_allows_changing_one_part() {
    let url = parse("postgres://u:p@h/d?sslmode=require");
    let changed = url
        .to_builder()
        .remove_param("sslmode")
        .param("sslmode", "verify-full")
        .dbname("other")
        .build()
        .unwrap();
    assert_eq!(
        changed.expose_url(),
        "postgres://u:p@h:5432/other?sslmode=verify-full"
    );
}

#[test]
fn surrounding_whitespace_is_ignored() {
    assert_eq!(parse("  postgres://u:p@h/d\n"), parse("postgres://u:p@h/d"));
}

/// Any string PostgreSQL can take (no NUL), of any characters.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^\u{0}]{1,40}",
        proptest::collection::vec(
            prop_oneof![
                Just('@'),
                Just(':'),
                Just('/'),
                Just('?'),
                Just('#'),
                Just('%'),
                Just('['),
                Just(']'),
                Just(' '),
                Just('\''),
                Just('\n'),
                Just('é'),
                Just('😀'),
                (1u8..0x20).prop_map(char::from),
                any::<char>().prop_filter("no NUL", |c| *c != '\0'),
            ],
            1..30
        )
        .prop_map(|chars| chars.into_iter().collect()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_user_password_dbname_and_param_round_trip(
        user in any_text(),
        password in any_text(),
        dbname in any_text(),
        app in any_text(),
        scheme in prop_oneof![Just("postgres"), Just("postgresql")],
        port in 1u16..,
    ) {
        let url = DatabaseUrl::builder()
            .scheme_text(scheme)
            .user(user.clone())
            .password(password.clone().into())
            .host("db.example.com")
            .port(port)
            .dbname(dbname.clone())
            .param("application_name", app.clone())
            .build()
            .unwrap();
        let back: DatabaseUrl = url.expose_url().parse().unwrap();
        prop_assert_eq!(back.user(), user.as_str());
        prop_assert_eq!(back.password().expose_secret(), password.as_str());
        prop_assert_eq!(back.dbname(), dbname.as_str());
        prop_assert_eq!(back.application_name(), Some(app.as_str()));
        prop_assert_eq!(&back, &url);
        // Display differs from the full URL in the password alone, which it shows as ***.
        let redacted: DatabaseUrl = url.to_string().parse().unwrap();
        prop_assert_eq!(redacted.password().expose_secret(), "***");
        prop_assert_eq!(redacted.to_builder().password(password.into()).build().unwrap(), url);
    }
}

#[test]
fn a_url_missing_a_slash_quotes_no_piece_of_the_password() {
    // Issue 13: this printed `unknown parameter "postgres:/u:secr"`.
    for input in [
        "postgres:/u:secr=et@h/db",
        "postgres//u:secr=et@h/db",
        "postgres:u:secr=et@h/db",
        "postgresql:/u:secr=et@h/db",
        "POSTGRES:/u:secr=et@h/db",
    ] {
        let err = error_hiding(input, &["secr", "et@"]);
        assert!(syntax_reason(&err).contains("://"), "{input}: {err}");
    }
    // A password ending in `==` (base64) leaked almost whole as a key.
    for input in [
        "postgres:/u:c2VjcmV0==@h/db",
        "u:c2VjcmV0==@h/db",
        "postgres//u:c2VjcmV0==@h/db",
    ] {
        error_hiding(input, &["c2Vj", "cmV0"]);
    }
    // A URL pasted with its variable name: the name is not shown either.
    let err = error_hiding("DATABASE_URL=postgres://u:c2VjcmV0@h/db", &["c2Vj"]);
    assert!(syntax_reason(&err).contains("NAME="), "{err}");
}

#[test]
fn only_lowercase_parameter_names_are_quoted() {
    assert!(problems("postgres://u:p@h/d?Zq7x=1").contains(&UrlProblem::UnshownParam));
    let err = error_hiding(
        "postgres://u:p@h/d?Zq7x=1&Zq7x=2&sslmode=require&a-b=3",
        &["Zq7", "a-b"],
    );
    assert_eq!(
        err.problems(),
        [UrlProblem::UnshownParam],
        "reported once, no duplicate naming it"
    );
    assert!(err.to_string().contains("%26"), "{err}");
    let err = builder().param("Bad Name", "x").build().unwrap_err();
    assert_eq!(err.problems(), [UrlProblem::UnshownParam]);
    // A lowercase name is still named, with a suggestion.
    assert!(error_text("postgres://u:p@h/d?ssl_mode=require").contains(r#""ssl_mode""#));
}

#[test]
fn a_known_key_after_a_split_password_shows_no_value() {
    // `password=ab&sslmode=cd` is how libpq reads a raw '&' in a password:
    // the value of sslmode is then a piece of it.
    let err = error_hiding(
        "postgres://u@h/d?password=Zq7ab&sslmode=Xk9cd",
        &["Zq7", "Xk9"],
    );
    assert!(err
        .problems()
        .iter()
        .any(invalid(UrlPart::Param("sslmode".into()))));
    error_hiding(
        "host=h user=u password=Zq7ab port=Xk9cd dbname=d",
        &["Zq7", "Xk9"],
    );
}

#[test]
fn the_app_url_keeps_the_server_and_credentials_and_drops_client_files() {
    let operator = parse(
        "postgresql://rds_master:p%40ss%3Dw@[2001:db8::7]:6543/app\
         ?sslmode=verify-full&sslrootcert=/home/me/global-bundle.pem\
         &sslcert=/home/me/c.pem&sslkey=/home/me/k.pem&application_name=herokurds\
         &connect_timeout=5&keepalives_idle=7&options=-c%20x%3D1",
    );
    let app = operator.for_app(SslMode::Require);
    assert_eq!(
        app.expose_url(),
        "postgres://rds_master:p%40ss%3Dw@[2001:db8::7]:6543/app?sslmode=require"
    );
    assert_eq!(app.password().expose_secret(), "p@ss=w");
    assert_eq!(parse(&app.expose_url()), app);
    for file_param in [
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslcrl",
        "passfile",
        "/home/me",
    ] {
        assert!(!app.expose_url().contains(file_param), "{file_param}");
    }
    assert_eq!(
        app.to_string(),
        "postgres://rds_master:***@[2001:db8::7]:6543/app?sslmode=require"
    );
    // The plan may ask for another mode; the app must then bring its own CA.
    assert_eq!(
        operator.for_app(SslMode::VerifyFull).param(Param::SslMode),
        Some("verify-full")
    );
    // Without any parameter, the app still gets an explicit sslmode.
    assert_eq!(
        parse("postgres://u:p@h/d")
            .for_app(SslMode::Require)
            .expose_url(),
        "postgres://u:p@h:5432/d?sslmode=require"
    );
}

#[test]
fn certificate_verification_follows_libpq() {
    for (url, verified) in [
        ("postgres://u:p@h/d", false),
        ("postgres://u:p@h/d?sslmode=prefer", false),
        ("postgres://u:p@h/d?sslmode=require", false),
        (
            "postgres://u:p@h/d?sslmode=require&sslrootcert=/ca.pem",
            true,
        ),
        ("postgres://u:p@h/d?sslmode=verify-ca", true),
        (
            "postgres://u:p@h/d?sslmode=verify-full&sslrootcert=/ca.pem",
            true,
        ),
        (
            "postgres://u:p@h/d?sslmode=disable&sslrootcert=/ca.pem",
            false,
        ),
    ] {
        assert_eq!(parse(url).verifies_certificate(), verified, "{url}");
    }
}

/// The places a password goes in a connection string, written by hand:
/// each template's `{P}` is the password as typed (not encoded), and the
/// malformed ones are the mistakes people make around it.
const PASSWORD_TEMPLATES: &[&str] = &[
    // Well-formed, but the password is not percent-encoded.
    "postgres://u:{P}@h:5432/d",
    "postgresql://u:{P}@h/d?sslmode=require",
    "postgres://u:{P}@h",
    "postgres://:{P}@h/d",
    "postgres://u@h/d?password={P}",
    "postgresql:///d?host=h&user=u&password={P}&sslmode=require",
    "host=h user=u password={P} dbname=d",
    "password={P} host=h user=u dbname=d",
    "host=h user=u password='{P}' dbname=d",
    "host=h user=u password='{P} dbname=d",
    // Malformed around it.
    "postgres:/u:{P}@h/d",
    "postgres//u:{P}@h/d",
    "postgres:u:{P}@h/d",
    "//u:{P}@h/d",
    "u:{P}@h/d",
    "postgres://u:{P}/d",
    "postgres://u:{P}",
    "postgres://u:{P}@",
    "postgres://u:{P}@/d",
    "postgres://u:{P}@@h/d",
    "postgres://u:{P}@h:5432:5432/d",
    "postgres://u:{P}@h:abc/d",
    "postgres://u:{P}@h/d?sslmode=on",
    "postgres://u:{P}@h/d?sslmod=require",
    "postgres://u:{P}@h/d?pool=5&sslmode=require&sslmode=disable",
    "postgres://u:{P}@h/d#frag",
    "postgres://u:{P}@h/d?password={P}",
    "mysql://u:{P}@h/d",
    "DATABASE_URL=postgres://u:{P}@h/d",
    "export DATABASE_URL='postgres://u:{P}@h/d'",
    "  postgres://u:{P}@h/d\n",
    "host=h user=u password={P} dbname=d sslmode=on port=0",
];

/// Every four-character window of `password` that holds a letter of its
/// random words (`QXZJK`, which no message uses): none may be shown.
fn windows(password: &str) -> Vec<String> {
    let chars: Vec<char> = password.chars().collect();
    chars
        .windows(4)
        .filter(|w| w.iter().any(|c| "QXZJK".contains(*c)))
        .map(|w| w.iter().collect())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// A known password, split anywhere by any character a URL or libpq
    /// treats specially, in every template: no four characters of it show
    /// in the error's Display, Debug or JSON, nor, when the URL parses with
    /// this password, in the URL's Display or Debug.
    #[test]
    fn no_piece_of_a_password_is_shown_wherever_it_is_written(
        words in proptest::collection::vec("[QXZJ][QXZJK2-9]{3,6}", 1..4),
        separators in proptest::collection::vec(
            prop_oneof![
                Just(":"), Just("@"), Just("/"), Just("?"), Just("#"), Just("&"),
                Just("="), Just("=="), Just("%"), Just(" "), Just("'"), Just("\\"),
                Just("\""), Just(","), Just(";"), Just("+"), Just("["), Just("]"),
                Just("%2"), Just("%zz"), Just("://"), Just("\t"),
            ],
            3,
        ),
        trailer in prop_oneof![Just(""), Just("=="), Just("="), Just("%"), Just("@")],
        template in proptest::sample::select(PASSWORD_TEMPLATES),
    ) {
        let mut password = words[0].clone();
        for (word, sep) in words[1..].iter().zip(&separators) {
            password.push_str(sep);
            password.push_str(word);
        }
        password.push_str(trailer);
        let input = template.replace("{P}", &password);
        let shown = match input.parse::<DatabaseUrl>() {
            Err(err) => vec![
                err.to_string(),
                format!("{err:?}"),
                serde_json::to_string(&err).unwrap(),
            ],
            // Read as another password (a '%XX' decoded, a raw '&' or
            // space splitting it as libpq would): the URL says something
            // else than was meant, and shows what it says.
            Ok(url) if url.password().expose_secret() != password => vec![],
            Ok(url) => vec![url.to_string(), format!("{url:?}")],
        };
        for text in &shown {
            for piece in windows(&password) {
                prop_assert!(!text.contains(&piece), "{:?}: {:?} shown in {}", input, piece, text);
            }
        }
    }
}
