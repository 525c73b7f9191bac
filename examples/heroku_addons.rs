//! Print an app's Heroku Postgres add-ons, the names they are attached
//! under, and which host `DATABASE_URL` points at (never the password).
//!
//! ```text
//! HEROKU_API_KEY=... cargo run --example heroku_addons -- micromasters-ci
//! cargo run --example heroku_addons -- --demo     # against an in-process emulator
//! ```

use herokurds::heroku::Client;
use herokurds_testkit::emulator::{Emulator, Seed, SeedAddon, SeedApp};
use secrecy::ExposeSecret;

/// The host of a `postgres://user:password@host:port/db` URL.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    host_port.split(':').next().unwrap_or("")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arg = std::env::args().nth(1).unwrap_or_default();
    let mut _emulator = None;
    let (client, app) = if arg == "--demo" {
        let seed = Seed::new().token("demo").app(
            SeedApp::new("demo-app")
                .addon(
                    SeedAddon::postgres(
                        "postgresql-rigid-71273",
                        "postgres://u:secret@ec2-1.compute-1.amazonaws.com:5432/d1",
                    )
                    .attach("DATABASE")
                    .attach("HEROKU_POSTGRESQL_YELLOW"),
                )
                .addon(SeedAddon::postgres(
                    "postgresql-new-2",
                    "postgres://u:secret@ec2-2.compute-1.amazonaws.com:5432/d2",
                )),
        );
        let em = Emulator::start(seed).await?;
        let client = em.client_builder("demo").build()?;
        _emulator = Some(em);
        (client, "demo-app".to_owned())
    } else if !arg.is_empty() {
        (Client::from_env()?, arg)
    } else {
        anyhow::bail!("usage: heroku_addons APP | --demo");
    };

    for pg in client.postgres_addons(&app).await? {
        println!("{} ({})", pg.addon.name, pg.addon.plan.name);
        for att in &pg.attachments {
            println!("  as {} on {}", att.name, att.app.name);
        }
    }
    match client.config_var(&app, "DATABASE_URL").await? {
        Some(url) => println!("DATABASE_URL points at {}", host_of(url.expose_secret())),
        None => println!("DATABASE_URL is not set"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_only() {
        assert_eq!(
            super::host_of("postgres://u:p@w@h.example.com:5432/db"),
            "h.example.com"
        );
        assert_eq!(super::host_of("postgres://h/db?sslmode=require"), "h");
        assert_eq!(super::host_of("postgres://u:p@[::1]:5432/db"), "::1");
    }
}
