//! Heroku's own CLI (npm package `heroku`, installed by
//! scripts/setup.d/30-heroku-cli.sh) against the emulator: the runbook's
//! commands must work as against Heroku, with the right effects. This is
//! what keeps the emulator faithful to what real clients send and read.

use std::path::PathBuf;
use std::process::Output;

use herokurds_testkit::emulator::{Emulator, Seed, SeedAddon, SeedApp};

const TOKEN: &str = "compat-token-0c1d";
const APP: &str = "micromasters-ci";
const OLD: &str = "postgresql-rigid-71273";
const OLD_URL: &str = "postgres://u:p@ec2-1.compute-1.amazonaws.com:5432/d1";

/// `$HEROKURDS_HEROKU_CLI`, else where the setup step installs it.
fn heroku_cli() -> PathBuf {
    let path = std::env::var_os("HEROKURDS_HEROKU_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../.cache/heroku-cli/node_modules/.bin/heroku")
        });
    assert!(
        path.exists(),
        "Heroku's CLI is not installed at {}: run scripts/test (scripts/setup.d/30-heroku-cli.sh installs it) \
         or set HEROKURDS_HEROKU_CLI",
        path.display()
    );
    path
}

struct Heroku {
    bin: PathBuf,
    home: tempfile::TempDir,
    url: String,
}

impl Heroku {
    /// Runs `heroku ARGS` with a throwaway HOME and everything that would
    /// reach the network besides the API (update checks, telemetry) off.
    async fn run(&self, args: &[&str]) -> Output {
        let home = self.home.path();
        tokio::process::Command::new(&self.bin)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .env("HEROKU_HOST", &self.url)
            .env("HEROKU_API_KEY", TOKEN)
            .env("HEROKU_SKIP_NEW_VERSION_CHECK", "true")
            .env("HEROKU_DISABLE_AUTOUPDATE", "true")
            .env("HEROKU_SKIP_ANALYTICS", "1")
            .env("DISABLE_TELEMETRY", "true")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("heroku CLI runs")
    }

    async fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args).await;
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            out.status.success(),
            "heroku {args:?} failed\nstdout: {stdout}\nstderr: {stderr}"
        );
        (stdout, stderr)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heroku_cli_runbook_commands_work_against_the_emulator() {
    let bin = heroku_cli();
    let seed = Seed::new().token(TOKEN).app(
        SeedApp::new(APP)
            .config_var("SECRET_KEY", "django-secret")
            .addon(
                SeedAddon::postgres(OLD, OLD_URL)
                    .service("heroku-postgresql", "heroku-postgresql:standard-0")
                    .attach("DATABASE")
                    .attach("HEROKU_POSTGRESQL_YELLOW"),
            ),
    );
    let em = Emulator::start(seed).await.unwrap();
    let heroku = Heroku {
        bin,
        home: tempfile::tempdir().unwrap(),
        url: em.url().to_owned(),
    };
    let app = ["-a", APP];
    let with =
        |cmd: &[&'static str]| -> Vec<&'static str> { cmd.iter().copied().chain(app).collect() };

    let (out, _) = heroku.ok(&with(&["config"])).await;
    assert!(
        out.contains("SECRET_KEY") && out.contains("django-secret"),
        "{out}"
    );
    assert!(
        out.contains("DATABASE_URL") && out.contains(OLD_URL),
        "{out}"
    );
    let (out, _) = heroku.ok(&with(&["config:get", "SECRET_KEY"])).await;
    assert_eq!(out.trim_end(), "django-secret");

    // config:set reads the latest release to print "done, vN".
    let (_, err) = heroku.ok(&with(&["config:set", "BUCKET=new-bucket"])).await;
    assert_eq!(em.config_vars(APP).unwrap()["BUCKET"], "new-bucket");
    let latest = em.releases(APP).last().unwrap().0;
    assert!(err.contains(&format!("done, v{latest}")), "{err}");
    let (_, err) = heroku.ok(&with(&["config:unset", "BUCKET"])).await;
    assert!(!em.config_vars(APP).unwrap().contains_key("BUCKET"));
    assert!(
        err.contains(&format!("done, v{}", em.releases(APP).last().unwrap().0)),
        "{err}"
    );

    assert_eq!(heroku.ok(&with(&["maintenance"])).await.0.trim_end(), "off");
    heroku.ok(&with(&["maintenance:on"])).await;
    assert_eq!(em.maintenance(APP), Some(true));
    assert_eq!(heroku.ok(&with(&["maintenance"])).await.0.trim_end(), "on");
    heroku.ok(&with(&["maintenance:off"])).await;
    assert_eq!(em.maintenance(APP), Some(false));

    let (out, _) = heroku.ok(&with(&["addons"])).await;
    for needle in [
        "heroku-postgresql",
        OLD,
        "as DATABASE",
        "as HEROKU_POSTGRESQL_YELLOW",
        "standard-0",
        "$50/month",
    ] {
        assert!(out.contains(needle), "{needle} missing:\n{out}");
    }
    let (out, _) = heroku.ok(&with(&["addons", "--json"])).await;
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["attachments"].as_array().unwrap().len(), 2);

    // The runbook's cutover, with Heroku's CLI.
    let (_, err) = heroku
        .ok(&with(&["addons:attach", OLD, "--as", "HEROKU_POSTGRES_DB"]))
        .await;
    assert!(err.contains("done, v"), "{err}");
    assert_eq!(
        em.config_vars(APP).unwrap()["HEROKU_POSTGRES_DB_URL"],
        OLD_URL
    );
    heroku.ok(&with(&["addons:detach", "DATABASE"])).await;
    assert!(!em.config_vars(APP).unwrap().contains_key("DATABASE_URL"));
    heroku
        .ok(&with(&["config:set", "DATABASE_URL=postgres://rds/app"]))
        .await;
    assert_eq!(
        em.config_vars(APP).unwrap()["DATABASE_URL"],
        "postgres://rds/app"
    );
    // Rollback by hand: re-attach as DATABASE, replacing the plain var.
    heroku
        .ok(&with(&[
            "addons:attach",
            OLD,
            "--as",
            "DATABASE",
            "--confirm",
            APP,
        ]))
        .await;
    assert_eq!(em.config_vars(APP).unwrap()["DATABASE_URL"], OLD_URL);
    let names: Vec<String> = em.attachments(APP).into_iter().map(|a| a.name).collect();
    assert_eq!(
        names,
        ["DATABASE", "HEROKU_POSTGRESQL_YELLOW", "HEROKU_POSTGRES_DB"]
    );

    // Every request the CLI made hit an emulated endpoint; the release
    // look-ups used Heroku's Range form and were answered as one page.
    let requests = em.requests();
    assert!(requests.iter().all(|r| r.status < 400), "{requests:#?}");
    let release_lookups: Vec<_> = requests
        .iter()
        .filter(|r| r.path.ends_with("/releases"))
        .collect();
    assert_eq!(release_lookups.len(), 6, "{release_lookups:#?}");
    assert!(release_lookups.iter().all(|r| r
        .range
        .as_deref()
        .is_some_and(|h| h.contains("order=desc") && h.contains("max=1"))));
    for path in [
        "/addon-attachments",
        "/apps/micromasters-ci/addons",
        &format!("/addons/{OLD}"),
    ] {
        assert!(
            requests.iter().any(|r| r.path == path),
            "{path} not requested: {requests:#?}"
        );
    }
}
