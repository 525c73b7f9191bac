//! The runbook's "construct a new DATABASE_URL" step as a program: the RDS
//! endpoint from a `pulumi stack export` (or the RDS API), the password from
//! AWS Secrets Manager, glued into a typed `DatabaseUrl` by the library.
//! Prints the URL (password as `***`) and where each part came from.
//!
//! ```text
//! cargo run --example rds_endpoint -- --pulumi-export stack.json \
//!     [--pulumi-resource NAME] --password-secret 'rds!db-1234'
//! cargo run --example rds_endpoint -- --rds-instance micromasters-production
//! cargo run --example rds_endpoint -- --demo     # against a local moto server
//! ```
//! The secret's user wins over the endpoint's (a rotation secret's password
//! belongs to its user); the endpoint's host, port and database win over a
//! rotation secret's.

use std::path::PathBuf;

use herokurds::aws::ClientOptions;
use herokurds::runbook::plan::TargetSection;
use herokurds::runbook::resolve_target;
use herokurds_testkit::demo::moto_client_options;
use herokurds_testkit::moto::MotoServer;

#[derive(Default)]
struct Args {
    export: Option<PathBuf>,
    resource: Option<String>,
    secret: Option<String>,
    instance: Option<String>,
    demo: bool,
}

fn args() -> Args {
    let mut a = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--pulumi-export" => a.export = Some(value().into()),
            "--pulumi-resource" => a.resource = Some(value()),
            "--password-secret" => a.secret = Some(value()),
            "--rds-instance" => a.instance = Some(value()),
            "--demo" => a.demo = true,
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = args();
    // In demo mode the server lives until the end of main (drop stops it).
    let moto = if args.demo {
        let moto = MotoServer::start()?;
        args = demo_setup(&moto).await?;
        Some(moto)
    } else {
        None
    };
    let options = moto
        .as_ref()
        .map_or_else(ClientOptions::new, moto_client_options);
    let target = TargetSection {
        pulumi_export: args.export.clone(),
        pulumi_resource: args.resource,
        password_secret: args.secret,
        rds_instance: args.instance,
        ..TargetSection::default()
    };
    // No environment variables are consulted: every part comes from AWS.
    let resolved = resolve_target(&target, &|_| None, &options).await?;
    println!("{}", resolved.url);
    for source in &resolved.sources {
        println!("  {source}");
    }
    if let (true, Some(path)) = (args.demo, &args.export) {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

/// Creates an RDS instance with a managed password, a rotation-style secret
/// and a stack export in moto, as `pulumi up` would have.
async fn demo_setup(moto: &MotoServer) -> Result<Args, Box<dyn std::error::Error>> {
    moto.secrets_client()
        .create_secret()
        .name("micromasters/app-db")
        .secret_string(r#"{"engine":"postgres","username":"app","password":"demo-only","dbname":"micromasters"}"#)
        .send()
        .await?;
    let export = serde_json::json!({
        "version": 3,
        "deployment": {"resources": [{
            "urn": "urn:pulumi:production::ol-infrastructure::aws:rds/instance:Instance::micromasters-db",
            "type": "aws:rds/instance:Instance",
            "id": "micromasters-production",
            "outputs": {
                "address": "micromasters-production.c9akciq32.us-east-1.rds.amazonaws.com",
                "endpoint": "micromasters-production.c9akciq32.us-east-1.rds.amazonaws.com:5432",
                "port": 5432,
                "dbName": "micromasters",
                "username": "oldevops",
                "password": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "v1:AAAA"}
            }
        }]}
    });
    let path =
        std::env::temp_dir().join(format!("herokurds-demo-stack-{}.json", std::process::id()));
    std::fs::write(&path, export.to_string())?;
    Ok(Args {
        export: Some(path),
        secret: Some("micromasters/app-db".into()),
        ..Args::default()
    })
}
