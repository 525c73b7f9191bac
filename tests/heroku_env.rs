//! `Client::from_env` reads the token and URL like Heroku's CLI. This file
//! holds one test because it changes the process environment.

use herokurds::heroku::{Client, HerokuError};
use herokurds_testkit::emulator::{Emulator, Seed, SeedApp};

const VARS: &[&str] = &["HEROKU_API_KEY", "HEROKU_API_URL", "HEROKU_HOST", "NETRC"];

#[tokio::test]
async fn token_and_url_from_env_and_netrc_like_heroku_cli() {
    let em = Emulator::start(
        Seed::new()
            .token("netrc-tok")
            .token("env-tok")
            .app(SeedApp::new("app")),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let netrc = dir.path().join("netrc");
    let machine = em.url().trim_start_matches("http://").to_owned();
    std::fs::write(
        &netrc,
        format!("machine api.heroku.com\n  login a@b.c\n  password wrong\nmachine {machine}\n  login a@b.c\n  password netrc-tok\n"),
    )
    .unwrap();
    for v in VARS {
        std::env::remove_var(v);
    }

    // HEROKU_HOST with a full URL, token from $NETRC's entry for host:port.
    std::env::set_var("NETRC", &netrc);
    std::env::set_var("HEROKU_HOST", em.url());
    let client = Client::from_env().unwrap();
    assert_eq!(client.base_url().as_str(), format!("{}/", em.url()));
    assert_eq!(client.app("app").await.unwrap().name, "app");

    // HEROKU_API_KEY wins over netrc; HEROKU_API_URL over HEROKU_HOST.
    std::env::set_var("HEROKU_API_KEY", "env-tok");
    std::env::set_var("HEROKU_HOST", "http://127.0.0.1:1");
    std::env::set_var("HEROKU_API_URL", em.url());
    let client = Client::from_env().unwrap();
    assert_eq!(client.app("app").await.unwrap().name, "app");
    assert!(!format!("{client:?}").contains("env-tok"));

    // A bare HEROKU_HOST is a domain: https://api.<domain>.
    std::env::remove_var("HEROKU_API_URL");
    std::env::set_var("HEROKU_HOST", "herokudev.com");
    let client = Client::from_env().unwrap();
    assert_eq!(client.base_url().as_str(), "https://api.herokudev.com/");

    // Neither a key nor a netrc entry: a clear error naming both.
    std::env::remove_var("HEROKU_API_KEY");
    std::env::remove_var("HEROKU_HOST");
    std::env::set_var("NETRC", dir.path().join("missing"));
    let e = Client::from_env().unwrap_err();
    assert!(matches!(e, HerokuError::NoToken { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("HEROKU_API_KEY") && msg.contains("machine api.heroku.com"),
        "{msg}"
    );

    // Plain http to a non-loopback host would send the token in clear.
    std::env::set_var("HEROKU_API_KEY", "env-tok");
    std::env::set_var("HEROKU_API_URL", "http://api.example.com");
    let e = Client::from_env().unwrap_err();
    assert!(matches!(e, HerokuError::BaseUrl { .. }), "{e}");
    assert!(e.to_string().contains("HEROKU_API_URL"), "{e}");
    for v in VARS {
        std::env::remove_var(v);
    }
}
