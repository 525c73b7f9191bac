//! `pg::connect` against real clusters: TLS per sslmode, and each failure
//! diagnosed in words that name the URL part, never the password.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use herokurds::pg::{self, ConnectError};
use herokurds::url::{DatabaseUrl, SslMode};
use herokurds_testkit::{LocalPostgres, PostgresOptions};
use secrecy::{ExposeSecret, SecretString};

/// A password that is easy to spot if it leaks, and awkward to encode.
const PASSWORD: &str = "Leak'me@:/?#%é$x";

async fn start(options: PostgresOptions) -> LocalPostgres {
    LocalPostgres::start(options.password(SecretString::from(PASSWORD)))
        .await
        .unwrap_or_else(|e| panic!("sandbox cluster (run scripts/test to install PostgreSQL): {e}"))
}

/// The cluster's owner URL with `sslmode` and extra parameters.
fn url(pg: &LocalPostgres, sslmode: &str, extra: &[(&str, &str)]) -> DatabaseUrl {
    let mut url: DatabaseUrl = pg
        .url_for(pg.database(), sslmode)
        .expose_secret()
        .parse()
        .unwrap();
    if !extra.is_empty() {
        let mut b = url.to_builder();
        for (k, v) in extra {
            b.param(*k, *v);
        }
        url = b.build().unwrap();
    }
    url
}

/// Connecting fails; returns the error after checking the password is nowhere in it.
async fn failure(url: &DatabaseUrl) -> ConnectError {
    let err = match pg::connect(url).await {
        Ok(_) => panic!("{url} connected"),
        Err(e) => e,
    };
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("Leak"), "password in error: {text}");
        assert!(
            !text.contains(&url.expose_url()),
            "full URL in error: {text}"
        );
    }
    err
}

#[tokio::test]
async fn check_succeeds_over_tls_with_each_verifying_mode() {
    let pg = start(PostgresOptions::heroku()).await;
    let ca = pg.ca_cert_path().unwrap();
    let ca = ca.to_str().unwrap();
    for (mode, extra) in [
        ("require", vec![]),
        ("prefer", vec![]),
        ("allow", vec![]),
        ("verify-ca", vec![("sslrootcert", ca)]),
        ("verify-full", vec![("sslrootcert", ca)]),
        ("require", vec![("sslrootcert", ca)]),
    ] {
        let url = url(&pg, mode, &extra);
        let connected = pg::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(connected.tls(), "{mode}: not encrypted");
        let info = pg::server_info(connected.client()).await.unwrap();
        assert_eq!(info.user, "heroku_owner");
        assert_eq!(info.database, "herokudb");
        assert_eq!(info.major, pg.major_version());
        assert!(
            info.version.starts_with(&info.major.to_string()),
            "{info:?}"
        );
    }
    // verify-full by name: the sandbox certificate names localhost too.
    let by_name = url(&pg, "verify-full", &[("sslrootcert", ca)])
        .to_builder()
        .host("localhost")
        .build()
        .unwrap();
    assert!(pg::connect(&by_name).await.unwrap().tls());
}

/// TLS connectors are cached per process; the cache must not outlive the
/// files they were built from: a replaced `sslrootcert` is what counts.
#[tokio::test]
async fn a_replaced_root_certificate_is_read_again() {
    let pg = start(PostgresOptions::heroku()).await;
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    let roots_str = roots.to_str().unwrap();
    let verify = url(&pg, "verify-ca", &[("sslrootcert", roots_str)]);
    let right = std::fs::read(pg.ca_cert_path().unwrap()).unwrap();
    let wrong = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap();

    std::fs::write(&roots, &right).unwrap();
    assert!(pg::connect(&verify).await.unwrap().tls());
    std::fs::write(&roots, &wrong).unwrap();
    let err = failure(&verify).await;
    assert!(
        matches!(err, ConnectError::CertificateRejected { .. }),
        "{err:?}"
    );
    std::fs::write(&roots, &right).unwrap();
    assert!(pg::connect(&verify).await.unwrap().tls());
    // Not verifying never reads the file, whatever it holds.
    std::fs::write(&roots, b"not a certificate").unwrap();
    assert!(
        pg::connect(&url(&pg, "prefer", &[("sslrootcert", roots_str)]))
            .await
            .unwrap()
            .tls()
    );
}

#[tokio::test]
async fn each_failure_is_diagnosed_in_words() {
    let pg = start(PostgresOptions::heroku()).await;

    // Wrong password: which user, and that passwords are per app and environment.
    let wrong = url(&pg, "require", &[])
        .to_builder()
        .password("not-the-password".into())
        .build()
        .unwrap();
    let err = failure(&wrong).await;
    assert!(matches!(err, ConnectError::WrongPassword { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("\"heroku_owner\""), "{text}");
    assert!(text.contains("per app and per environment"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
    assert!(!err.is_retryable());

    // Unknown database, named.
    let err = failure(
        &url(&pg, "require", &[])
            .to_builder()
            .dbname("nosuchdb")
            .build()
            .unwrap(),
    )
    .await;
    assert!(
        matches!(err, ConnectError::UnknownDatabase { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("database \"nosuchdb\" does not exist"),
        "{err}"
    );
    assert_eq!(err.sqlstate(), Some("3D000"));

    // A TLS-only server and sslmode=disable.
    let err = failure(&url(&pg, "disable", &[])).await;
    assert!(
        matches!(
            err,
            ConnectError::TlsRequired {
                ssl_mode: SslMode::Disable,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("refuses unencrypted connections"), "{text}");
    assert!(
        text.contains("sslmode=disable") && text.contains("sslmode=require"),
        "{text}"
    );

    // A certificate that does not chain to sslrootcert: the file is named.
    let bundle = "/etc/ssl/certs/ca-certificates.crt";
    for mode in ["verify-ca", "verify-full"] {
        let err = failure(&url(&pg, mode, &[("sslrootcert", bundle)])).await;
        assert!(
            matches!(err, ConnectError::CertificateRejected { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(bundle), "{text}");
        assert!(text.contains(&format!("sslmode={mode}")), "{text}");
    }
    // verify-full without sslrootcert: the system roots, and where the RDS bundle is.
    let err = failure(&url(&pg, "verify-full", &[])).await;
    assert!(err.to_string().contains("global-bundle.pem"), "{err}");

    // A role that may not log in: the server's words, with the user and database.
    pg.superuser_execute("postgres", "ALTER ROLE heroku_owner NOLOGIN")
        .await
        .unwrap();
    let err = failure(&url(&pg, "require", &[])).await;
    assert!(matches!(err, ConnectError::Rejected { .. }), "{err:?}");
    assert!(err.to_string().contains("not permitted to log in"), "{err}");
}

#[tokio::test]
async fn a_server_without_tls() {
    let pg = start(PostgresOptions::rds().tls(false)).await;
    let err = failure(&url(&pg, "require", &[])).await;
    assert!(matches!(err, ConnectError::TlsRefused { .. }), "{err:?}");
    assert!(err.to_string().contains("does not accept TLS"), "{err}");
    for mode in ["prefer", "allow", "disable"] {
        let connected = pg::connect(&url(&pg, mode, &[])).await.unwrap();
        assert!(!connected.tls(), "{mode}");
        let info = pg::server_info(connected.client()).await.unwrap();
        assert_eq!(info.user, "rds_master");
    }
}

/// Whether the owner's sessions are encrypted, as the server sees them
/// (a check of the client's word, asked over the superuser's socket).
async fn server_sees_tls(pg: &LocalPostgres) -> Vec<bool> {
    let admin = pg.superuser_client("postgres").await.unwrap();
    admin
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.usename = $1",
            &[&pg.owner()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Issue 13: a URL without sslmode ran as libpq's `prefer` and could
/// silently fall back to plaintext. On a server that accepts both, it is
/// encrypted; plaintext happens only when the URL says so.
#[tokio::test]
async fn a_url_without_sslmode_is_encrypted_where_plaintext_is_accepted() {
    let pg = start(PostgresOptions::heroku().tls_only(false)).await;
    let bare = url(&pg, "require", &[])
        .to_builder()
        .remove_param("sslmode")
        .build()
        .unwrap();
    assert_eq!(bare.param(herokurds::url::Param::SslMode), None);
    let connected = pg::connect(&bare).await.unwrap();
    assert!(connected.tls(), "no sslmode: not encrypted");
    assert_eq!(server_sees_tls(&pg).await, [true]);
    drop(connected);

    // Written out, plaintext is what it says.
    let plain = pg::connect(&url(&pg, "disable", &[])).await.unwrap();
    assert!(!plain.tls());
    // prefer: TLS when offered, known from the client side.
    let preferred = pg::connect(&url(&pg, "prefer", &[])).await.unwrap();
    assert!(preferred.tls());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut seen = server_sees_tls(&pg).await;
    seen.sort();
    assert_eq!(seen, [false, true]);

    // Where TLS fails, no sslmode is refused, not sent in clear (it was:
    // libpq's prefer falls back without a word).
    let no_tls = start(PostgresOptions::rds().tls(false)).await;
    let bare = url(&no_tls, "require", &[])
        .to_builder()
        .remove_param("sslmode")
        .build()
        .unwrap();
    let err = failure(&bare).await;
    assert!(matches!(err, ConnectError::TlsRefused { .. }), "{err:?}");
    assert!(err.to_string().contains("sslmode=require"), "{err}");
}

/// Channel binding is required over TLS by default; a server that
/// authenticates with md5 fails with a diagnosis that says how to allow it.
#[tokio::test]
async fn md5_over_tls_is_refused_for_lack_of_channel_binding_unless_the_url_allows_it() {
    let pg = start(PostgresOptions::rds().md5(true)).await;
    let err = failure(&url(&pg, "require", &[])).await;
    assert!(
        matches!(err, ConnectError::NoChannelBinding { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    for needle in [
        "\"rds_master\"",
        "without SCRAM channel binding",
        "md5",
        "channel_binding=prefer",
        &format!("127.0.0.1:{}", pg.port()),
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    assert!(!err.is_retryable());
    for allowed in ["prefer", "disable"] {
        let connected = pg::connect(&url(&pg, "require", &[("channel_binding", allowed)]))
            .await
            .unwrap_or_else(|e| panic!("channel_binding={allowed}: {e}"));
        assert!(connected.tls());
    }
    // The same server with SCRAM passes with the default.
    let scram = start(PostgresOptions::rds()).await;
    assert!(pg::connect(&url(&scram, "require", &[]))
        .await
        .unwrap()
        .tls());
}

#[tokio::test]
async fn a_closed_port_is_refused_and_named() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url: DatabaseUrl = format!("postgres://u:Leak@127.0.0.1:{port}/d?sslmode=require")
        .parse()
        .unwrap();
    let err = failure(&url).await;
    assert!(matches!(err, ConnectError::Refused { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_silent_server_times_out_and_is_named() {
    // Accepts TCP, never answers: the startup handshake waits.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url: DatabaseUrl =
        format!("postgres://u:Leak@127.0.0.1:{port}/d?sslmode=require&connect_timeout=2")
            .parse()
            .unwrap();
    let started = Instant::now();
    let err = failure(&url).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(err, ConnectError::TimedOut { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("timed out after 2s"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    drop(listener);
}
