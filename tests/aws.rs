//! Secrets Manager and RDS look-ups against a real moto server.

use herokurds::aws::{fetch_db_secret, rds_endpoint, AwsError, SecretFormat};
use herokurds_testkit::moto::MotoServer;
use secrecy::ExposeSecret;

fn moto() -> MotoServer {
    MotoServer::start().unwrap_or_else(|e| panic!("{e}"))
}

async fn create_secret(moto: &MotoServer, name: &str, value: &str) -> String {
    moto.secrets_client()
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn secrets_in_every_format_are_read_by_name_or_arn() {
    let moto = moto();
    let client = moto.secrets_client();
    let arn = create_secret(
        &moto,
        "rds!db-1234",
        r#"{"username":"oldevops","password":"p@ss:w/rd?#"}"#,
    )
    .await;
    for id in ["rds!db-1234", arn.as_str()] {
        let secret = fetch_db_secret(&client, id).await.unwrap();
        assert_eq!(secret.format, SecretFormat::RdsManaged);
        assert_eq!(secret.username.as_deref(), Some("oldevops"));
        assert_eq!(secret.password.expose_secret(), "p@ss:w/rd?#");
    }

    create_secret(
        &moto,
        "micromasters/rotation",
        r#"{"engine":"postgres","host":"mm.c9a.us-east-1.rds.amazonaws.com","port":"5432","username":"app","password":"rotated","dbname":"micromasters"}"#,
    )
    .await;
    let secret = fetch_db_secret(&client, "micromasters/rotation")
        .await
        .unwrap();
    assert_eq!(secret.format, SecretFormat::Rotation);
    assert_eq!(
        secret.host.as_deref(),
        Some("mm.c9a.us-east-1.rds.amazonaws.com")
    );
    assert_eq!(secret.port, Some(5432));
    assert_eq!(secret.dbname.as_deref(), Some("micromasters"));
    assert_eq!(secret.password.expose_secret(), "rotated");

    create_secret(&moto, "plain", "just-the-password").await;
    let secret = fetch_db_secret(&client, "plain").await.unwrap();
    assert_eq!(secret.format, SecretFormat::PlainString);
    assert_eq!(secret.username, None);
    assert_eq!(secret.password.expose_secret(), "just-the-password");
}

#[tokio::test]
async fn a_missing_secret_is_named() {
    let moto = moto();
    let err = fetch_db_secret(&moto.secrets_client(), "prod/no-such-secret")
        .await
        .unwrap_err();
    assert!(matches!(err, AwsError::SecretNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("prod/no-such-secret"), "{err}");
}

#[tokio::test]
async fn a_malformed_secret_names_the_secret_but_never_leaks_its_value() {
    let moto = moto();
    create_secret(
        &moto,
        "broken",
        r#"{"username":"u","password":"hunter2-must-not-leak""#,
    )
    .await;
    let err = fetch_db_secret(&moto.secrets_client(), "broken")
        .await
        .unwrap_err();
    assert!(matches!(err, AwsError::SecretMalformed { .. }), "{err:?}");
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(text.contains("broken"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}

#[tokio::test]
async fn rds_endpoint_and_managed_secret_come_from_describe_db_instances() {
    let moto = moto();
    let rds = moto.rds_client();
    moto.create_managed_rds_instance(
        "micromasters-production",
        "micromasters",
        "oldevops",
        Some(5433),
    )
    .await
    .unwrap();
    rds.create_db_instance()
        .db_instance_identifier("other")
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("root")
        .master_user_password("not-managed-pw")
        .send()
        .await
        .unwrap();

    let info = rds_endpoint(&rds, "micromasters-production").await.unwrap();
    assert_eq!(info.identifier, "micromasters-production");
    assert!(
        info.endpoint.host.contains("micromasters-production"),
        "{info:?}"
    );
    assert!(!info.endpoint.host.contains(':'));
    assert_eq!(info.endpoint.port, 5433);
    assert_eq!(info.endpoint.dbname.as_deref(), Some("micromasters"));
    assert_eq!(info.endpoint.username.as_deref(), Some("oldevops"));
    let arn = info.master_secret_arn.expect("RDS manages the password");
    assert!(arn.starts_with("arn:aws:secretsmanager:"), "{arn}");

    let other = rds_endpoint(&rds, "other").await.unwrap();
    assert_eq!(other.master_secret_arn, None);
    assert_eq!(other.endpoint.port, 5432);

    let err = rds_endpoint(&rds, "no-such-db").await.unwrap_err();
    assert!(
        matches!(err, AwsError::RdsInstanceNotFound { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("no-such-db"));
}
