//! `herokurds-url build` from AWS sources: a Pulumi stack export for the
//! endpoint, a Secrets Manager secret or the RDS API for the password,
//! against a real moto server.

use std::process::{Command, Output};

use herokurds_testkit::moto::MotoServer;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_herokurds-url");
const PASSWORD: &str = "s3cr@t:/?#[] é'$";

fn url_build(moto: &MotoServer, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("build")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(moto.env_vars())
        .output()
        .unwrap()
}

fn stack_export(dir: &std::path::Path) -> std::path::PathBuf {
    let address = "micromasters-production.c9akciq32.us-east-1.rds.amazonaws.com";
    let export = json!({
        "version": 3,
        "deployment": {"manifest": {}, "resources": [{
            "urn": "urn:pulumi:production::ol-infrastructure::aws:rds/instance:Instance::micromasters-db",
            "custom": true,
            "type": "aws:rds/instance:Instance",
            "outputs": {
                "address": address,
                "endpoint": format!("{address}:5432"),
                "port": 5432,
                "dbName": "micromasters",
                "username": "oldevops",
                "password": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
                             "ciphertext": "v1:AAAA"},
                "identifier": "micromasters-production"
            }
        }]}
    });
    let path = dir.join("stack.json");
    std::fs::write(&path, export.to_string()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn build_takes_the_endpoint_from_pulumi_and_the_password_from_secrets_manager() {
    let moto = tokio::task::spawn_blocking(MotoServer::start)
        .await
        .unwrap()
        .unwrap();
    moto.secrets_client()
        .create_secret()
        .name("rds!db-micromasters")
        .secret_string(json!({"username": "oldevops", "password": PASSWORD}).to_string())
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let export = stack_export(dir.path());
    let export = export.to_str().unwrap();

    let out = url_build(
        &moto,
        &[
            "--pulumi-export",
            export,
            "--password-secret",
            "rds!db-micromasters",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "postgres://oldevops:***@micromasters-production.c9akciq32.us-east-1.rds.amazonaws.com:5432/micromasters?sslmode=require",
        "address, not endpoint: never host:5432:5432"
    );

    let out = url_build(
        &moto,
        &[
            "--pulumi-export",
            export,
            "--password-secret",
            "rds!db-micromasters",
            "--reveal",
            "--param",
            "sslmode=verify-full",
        ],
    );
    let revealed: herokurds_core::url::DatabaseUrl =
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(revealed.password()),
        PASSWORD
    );
    assert_eq!(revealed.ssl_mode().as_str(), "verify-full");

    // A missing secret is named; its value never printed.
    let out = url_build(
        &moto,
        &[
            "--pulumi-export",
            export,
            "--password-secret",
            "no-such-secret",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("no-such-secret"), "{err}");

    // The RDS API gives the endpoint and the managed secret.
    let rds = moto.rds_client();
    rds.create_db_instance()
        .db_instance_identifier("micromasters-production")
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("oldevops")
        .manage_master_user_password(true)
        .db_name("micromasters")
        .send()
        .await
        .unwrap();
    let out = url_build(
        &moto,
        &["--rds-instance", "micromasters-production", "--reveal"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let url: herokurds_core::url::DatabaseUrl =
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // The user is the managed secret's (on AWS it is the master username;
    // moto writes its own), since the secret's password belongs to it.
    let arn = moto
        .rds_client()
        .describe_db_instances()
        .db_instance_identifier("micromasters-production")
        .send()
        .await
        .unwrap()
        .db_instances()[0]
        .master_user_secret()
        .unwrap()
        .secret_arn()
        .unwrap()
        .to_string();
    let secret = moto
        .secrets_client()
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .unwrap();
    let secret: serde_json::Value = serde_json::from_str(secret.secret_string().unwrap()).unwrap();
    assert_eq!(url.user(), secret["username"].as_str().unwrap());
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(url.password()),
        secret["password"].as_str().unwrap()
    );
    assert_eq!(url.dbname(), "micromasters");
}
