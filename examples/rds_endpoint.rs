//! Where the new DATABASE_URL's parts come from: the RDS endpoint from a
//! `pulumi stack export` (or the RDS API) and the password from AWS Secrets
//! Manager. Prints each part and where it came from; the password as `***`.
//!
//! ```text
//! cargo run --example rds_endpoint -- --pulumi-export stack.json \
//!     [--pulumi-resource NAME] --password-secret 'rds!db-1234'
//! cargo run --example rds_endpoint -- --rds-instance micromasters-production
//! cargo run --example rds_endpoint -- --demo     # against a local moto server
//! ```
//! The secret's user wins over the endpoint's (rotation can rename it); the
//! endpoint's host, port and database win over a rotation secret's.

use std::path::PathBuf;

use herokurds::aws::{fetch_db_secret, rds_endpoint, ClientOptions, DbSecret, RdsEndpoint};
use herokurds::pulumi::StackExport;
use herokurds::sandbox::moto::MotoServer;

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
    let options = ClientOptions::new();
    let (secrets, rds) = match &moto {
        Some(m) => (m.secrets_client(), m.rds_client()),
        None => (options.secrets_client().await?, options.rds_client().await?),
    };

    let mut endpoint: Option<(RdsEndpoint, String)> = None;
    let mut secret_id = args.secret.clone();
    if let Some(path) = &args.export {
        let stack = StackExport::read(path)?;
        let instance = stack.rds_instance(args.resource.as_deref())?;
        endpoint = Some((instance.endpoint()?, format!("pulumi {}", instance.name())));
        secret_id = secret_id.or_else(|| instance.master_secret_arn());
        if args.demo {
            std::fs::remove_file(path)?;
        }
    }
    if let Some(id) = &args.instance {
        let info = rds_endpoint(&rds, id).await?;
        secret_id = secret_id.or(info.master_secret_arn);
        endpoint = endpoint.or(Some((info.endpoint, format!("RDS {id}"))));
    }
    let secret: Option<DbSecret> = match &secret_id {
        Some(id) => Some(fetch_db_secret(&secrets, id).await?),
        None => None,
    };

    let secret_label = format!("secret {}", secret_id.as_deref().unwrap_or("-"));
    let (ep, ep_source) = match &endpoint {
        Some((e, s)) => (Some(e), s.clone()),
        None => (None, String::new()),
    };
    let part = |name: &str, endpoint_value: Option<String>, secret_value: Option<String>| match (
        endpoint_value,
        secret_value,
    ) {
        (Some(v), _) => println!("{name:9} {v:50} ({ep_source})"),
        (None, Some(v)) => println!("{name:9} {v:50} ({})", secret_label),
        (None, None) => println!("{name:9} {:50} (nowhere: pass it explicitly)", "-"),
    };
    let s = secret.as_ref();
    part(
        "host",
        ep.map(|e| e.host.clone()),
        s.and_then(|s| s.host.clone()),
    );
    part(
        "port",
        ep.map(|e| e.port.to_string()),
        s.and_then(|s| s.port.map(|p| p.to_string())),
    );
    part(
        "dbname",
        ep.and_then(|e| e.dbname.clone()),
        s.and_then(|s| s.dbname.clone()),
    );
    match (
        s.and_then(|s| s.username.clone()),
        ep.and_then(|e| e.username.clone()),
    ) {
        (Some(u), _) => println!("{:9} {u:50} ({})", "user", secret_label),
        (None, Some(u)) => println!("{:9} {u:50} ({ep_source})", "user"),
        (None, None) => println!("{:9} {:50} (nowhere: pass it explicitly)", "user", "-"),
    }
    match s {
        Some(s) => println!(
            "{:9} {:50} ({}, {:?})",
            "password", "***", secret_label, s.format
        ),
        None => println!(
            "{:9} {:50} (no secret: use --password-secret)",
            "password", "-"
        ),
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
