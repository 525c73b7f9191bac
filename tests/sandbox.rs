//! The sandbox clusters look like Heroku Postgres and RDS where it matters:
//! TLS required, scram passwords, a non-superuser owner.

use herokurds_testkit::{LocalPostgres, PostgresOptions};
use secrecy::ExposeSecret;

async fn owner_facts(pg: &LocalPostgres) -> (bool, bool, String, String) {
    let client = pg.owner_client().await.expect("owner connects over TLS");
    let row = client
        .query_one(
            "SELECT r.rolsuper, s.ssl, current_user::text, d.datdba::regrole::text
             FROM pg_roles r, pg_stat_ssl s, pg_database d
             WHERE r.rolname = current_user AND s.pid = pg_backend_pid()
               AND d.datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

#[tokio::test]
async fn heroku_shape_owner_is_not_superuser_and_tls_is_required() {
    let pg = LocalPostgres::start(PostgresOptions::heroku())
        .await
        .unwrap();
    let (superuser, ssl, user, db_owner) = owner_facts(&pg).await;
    assert!(!superuser, "heroku_owner must not be a superuser");
    assert!(ssl, "the owner's session must be encrypted");
    assert_eq!(user, "heroku_owner");
    assert_eq!(db_owner, "heroku_owner");

    // A connection without TLS is refused by pg_hba, as on Heroku.
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(pg.host())
        .port(pg.port())
        .user(pg.owner())
        .password(pg.password().expose_secret())
        .dbname(pg.database());
    let err = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("plain TCP refused");
    let msg = err
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(msg.contains("no encryption"), "{err:?}");

    // Password auth is scram: the stored verifier says so.
    let su = pg.superuser_client("postgres").await.unwrap();
    let row = su
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'heroku_owner'",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, String>(0).starts_with("SCRAM-SHA-256$"));
    assert!(pg.url().expose_secret().contains("sslmode=require"));

    // Like Heroku's owner role: it can neither create roles nor databases.
    let row = su
        .query_one(
            "SELECT rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = 'heroku_owner'",
            &[],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0), "heroku_owner must be NOCREATEROLE");
    assert!(!row.get::<_, bool>(1), "heroku_owner must be NOCREATEDB");

    // The typed URL is the same URL, and the library connects with it over TLS.
    let url = pg.database_url();
    assert_eq!(url.port(), pg.port());
    assert_eq!(url.user(), pg.owner());
    assert_eq!(url.dbname(), pg.database());
    let session = herokurds::pg::connect(&url).await.unwrap();
    assert!(session.tls());
    drop(session);

    // stop() waits for the server to exit; a second stop() does nothing.
    let port = pg.port();
    pg.stop().await.unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    pg.stop().await.unwrap();
}

#[tokio::test]
async fn rds_shape_owner_belongs_to_rds_superuser_and_can_create_databases() {
    let pg = LocalPostgres::start(PostgresOptions::rds()).await.unwrap();
    let (superuser, ssl, user, db_owner) = owner_facts(&pg).await;
    assert!(!superuser);
    assert!(ssl);
    assert_eq!(user, "rds_master");
    assert_eq!(db_owner, "rds_master");
    let client = pg.owner_client().await.unwrap();
    let row = client
        .query_one(
            "SELECT pg_has_role('rds_master', 'rds_superuser', 'MEMBER'), rolcreatedb, rolcreaterole
             FROM pg_roles WHERE rolname = 'rds_master'",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0) && row.get::<_, bool>(1) && row.get::<_, bool>(2));
    // The owner can use what it owns; a trusted extension can be created.
    client
        .batch_execute("CREATE EXTENSION citext; CREATE TABLE t (x citext)")
        .await
        .unwrap();
}

#[tokio::test]
async fn certificate_verifies_against_the_sandbox_ca_for_loopback_names() {
    let pg = LocalPostgres::start(PostgresOptions::heroku())
        .await
        .unwrap();
    let ca = std::fs::read(pg.ca_cert_path().unwrap()).unwrap();
    let tls = native_tls_connector(&ca);
    for host in ["127.0.0.1", "localhost"] {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(host)
            .port(pg.port())
            .user(pg.owner())
            .password(pg.password().expose_secret())
            .dbname(pg.database())
            .ssl_mode(tokio_postgres::config::SslMode::Require);
        let (client, conn) = cfg
            .connect(postgres_native_tls::MakeTlsConnector::new(tls.clone()))
            .await
            .unwrap_or_else(|e| panic!("verified TLS to {host}: {e}"));
        tokio::spawn(conn);
        client.simple_query("SELECT 1").await.unwrap();
    }
}

fn native_tls_connector(ca_pem: &[u8]) -> native_tls::TlsConnector {
    native_tls::TlsConnector::builder()
        .add_root_certificate(native_tls::Certificate::from_pem(ca_pem).unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn dropping_the_cluster_stops_the_server_and_removes_its_files() {
    let pg = LocalPostgres::start(PostgresOptions::rds()).await.unwrap();
    let port = pg.port();
    let dir = pg.socket_dir();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(pg);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(!dir.exists());
}

#[tokio::test]
async fn reset_database_leaves_an_empty_database_owned_by_the_owner() {
    let pg = LocalPostgres::start(PostgresOptions::heroku().heroku_ext(true))
        .await
        .unwrap();
    let c = pg.owner_client().await.unwrap();
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
             WHERE extname = 'pg_stat_statements' AND nspname = 'heroku_ext'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "heroku_ext holds pg_stat_statements");
    c.batch_execute("CREATE TABLE t (x int)").await.unwrap();
    drop(c);
    pg.reset_database().await.unwrap();
    let c = pg.owner_client().await.unwrap();
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}
