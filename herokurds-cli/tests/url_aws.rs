//! `herokurds-url build` from AWS sources: a Pulumi stack export for the
//! endpoint, a Secrets Manager secret or the RDS API for the password,
//! against a real moto server.

use std::process::{Command, Output};

use herokurds_testkit::moto::MotoServer;
use herokurds_testkit::pulumi;
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
    let export = pulumi::export(vec![pulumi::rds(
        "micromasters-db",
        "micromasters-production",
        pulumi::encrypted(),
    )]);
    let path = dir.join("stack.json");
    std::fs::write(&path, export).unwrap();
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

    let from_pulumi = [
        "--pulumi-export",
        export,
        "--password-secret",
        "rds!db-micromasters",
    ];
    let out = url_build(&moto, &from_pulumi);
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
            &from_pulumi[..],
            &["--reveal", "--param", "sslmode=verify-full"],
        ]
        .concat(),
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
    moto.create_managed_rds_instance("micromasters-production", "micromasters", "oldevops", None)
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
