//! The Heroku client against the emulator, over real HTTP: every operation,
//! every error kind, the runbook's cutover and rollback, paging, retries,
//! the rate limit, timeouts, and no secret in logs or errors.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herokurds::heroku::{Client, HerokuError, RetryPolicy};
use herokurds_testkit::emulator::{Emulator, Fault, Seed, SeedAddon, SeedApp};
use secrecy::{ExposeSecret, SecretString};

const APP: &str = "micromasters-ci";
const TOKEN: &str = "tok-3f9a1c-emulated";
const OLD: &str = "postgresql-rigid-71273";
const NEW: &str = "postgresql-shiny-4242";
const OLD_URL: &str = "postgres://u:oldpassword-secret@ec2-1.compute-1.amazonaws.com:5432/d1";
const NEW_URL: &str = "postgres://u:newpassword-secret@ec2-2.compute-1.amazonaws.com:5432/d2";
const RDS_URL: &str =
    "postgres://app:rdspassword-secret@db.abc.us-east-1.rds.amazonaws.com:5432/app?sslmode=require";
const SECRET_KEY_VALUE: &str = "django-secret-value-8d7c";

fn seed() -> Seed {
    Seed::new()
        .token(TOKEN)
        .app(
            SeedApp::new(APP)
                .config_var("SECRET_KEY", SECRET_KEY_VALUE)
                .dynos("web", 2)
                .dynos("worker", 1)
                .dynos("clock", 1)
                .addon(
                    SeedAddon::postgres(OLD, OLD_URL)
                        .attach("DATABASE")
                        .attach("HEROKU_POSTGRESQL_YELLOW")
                        .attach_to("other-app", "SHARED_DB", None),
                )
                .addon(SeedAddon::postgres(NEW, NEW_URL).attach("HEROKU_POSTGRESQL_RED"))
                .addon(
                    SeedAddon::postgres("redis-cubed-1", "redis://h:6379")
                        .service("heroku-redis", "heroku-redis:mini")
                        .attach("REDIS"),
                ),
        )
        .app(SeedApp::new("other-app"))
}

async fn start() -> (Emulator, Client) {
    let em = Emulator::start(seed()).await.expect("emulator starts");
    let client = em.client_builder(TOKEN).build().expect("client builds");
    (em, client)
}

fn database_url(client_vars: &herokurds::heroku::ConfigVars) -> String {
    client_vars
        .get("DATABASE_URL")
        .map(|v| v.expose_secret().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn app_info_and_maintenance() {
    let (em, client) = start().await;
    let app = client.app(APP).await.unwrap();
    assert_eq!(app.name, APP);
    assert!(!app.maintenance);
    assert!(app.created_at.is_some());
    // Apps can be named by id too.
    assert_eq!(client.app(&app.id).await.unwrap().name, APP);
    let after = client.set_maintenance(APP, true).await.unwrap();
    assert!(after.maintenance);
    assert!(client.maintenance(APP).await.unwrap());
    assert_eq!(em.maintenance(APP), Some(true));
    client.set_maintenance(APP, false).await.unwrap();
    assert_eq!(em.maintenance(APP), Some(false));
    let account = client.account().await.unwrap();
    assert!(account.email.contains('@'));
    let apps = client.apps().await.unwrap();
    assert_eq!(apps.len(), 2);
}

#[tokio::test]
async fn config_vars_get_set_unset_each_make_a_release() {
    let (em, client) = start().await;
    let vars = client.config_vars(APP).await.unwrap();
    assert!(vars.has_value("SECRET_KEY", SECRET_KEY_VALUE));
    assert!(vars.has_value("DATABASE_URL", OLD_URL));
    assert!(vars.has_value("HEROKU_POSTGRESQL_RED_URL", NEW_URL));
    let before = client.latest_release(APP).await.unwrap().unwrap();

    let after = client
        .set_config_vars(APP, [("BUCKET", "new-bucket"), ("CDN", "cdn.example.com")])
        .await
        .unwrap();
    assert!(after.has_value("BUCKET", "new-bucket"));
    let rel = client.latest_release(APP).await.unwrap().unwrap();
    assert_eq!(rel.version, before.version + 1);
    assert_eq!(rel.description, "Set BUCKET, CDN config vars");
    assert!(rel.current);

    let got = client.config_var(APP, "BUCKET").await.unwrap().unwrap();
    assert_eq!(got.expose_secret(), "new-bucket");
    assert!(client.config_var(APP, "NOPE").await.unwrap().is_none());

    let after = client.unset_config_vars(APP, ["BUCKET"]).await.unwrap();
    assert!(!after.contains_key("BUCKET"));
    assert!(!em.config_vars(APP).unwrap().contains_key("BUCKET"));
    let rel = client.latest_release(APP).await.unwrap().unwrap();
    assert_eq!(rel.description, "Remove BUCKET config vars");

    let all = client.releases(APP).await.unwrap();
    assert_eq!(all.last().unwrap().version, rel.version);
    assert!(all.windows(2).all(|w| w[0].version < w[1].version));

    let e = client
        .set_config_vars(APP, [("BAD-NAME", "x")])
        .await
        .unwrap_err();
    assert!(matches!(e, HerokuError::InvalidArgument { .. }), "{e}");
}

#[tokio::test]
async fn attachment_owned_vars_cannot_be_set_or_unset() {
    let (_em, client) = start().await;
    let e = client
        .set_config_vars(APP, [("DATABASE_URL", RDS_URL)])
        .await
        .unwrap_err();
    assert_eq!(e.id(), Some("invalid_params"));
    assert_eq!(
        e.api_message(),
        Some("Cannot overwrite attachment values DATABASE_URL.")
    );
    assert_eq!(e.app(), Some(APP));
    assert!(e.to_string().contains("detach"), "{e}");
    let e = client
        .unset_config_vars(APP, ["DATABASE_URL"])
        .await
        .unwrap_err();
    assert!(matches!(e, HerokuError::InvalidParams { .. }), "{e}");
}

#[tokio::test]
async fn addons_attachments_and_postgres_addons() {
    let (_em, client) = start().await;
    let addons = client.addons(APP).await.unwrap();
    assert_eq!(addons.len(), 3);
    let old = client.addon(OLD).await.unwrap();
    assert_eq!(old.addon_service.name, "heroku-postgresql");
    assert_eq!(old.plan.name, "heroku-postgresql:mini");
    assert_eq!(old.app.name, APP);
    assert!(old.config_vars.contains(&"DATABASE_URL".to_owned()));
    assert_eq!(client.addon(&old.id).await.unwrap().name, OLD);

    let on_app = client.attachments(APP).await.unwrap();
    assert_eq!(on_app.len(), 4);
    let of_old = client.addon_attachments(OLD).await.unwrap();
    assert_eq!(of_old.len(), 3, "attachments to other apps count too");
    let db = client.attachment(APP, "DATABASE").await.unwrap();
    assert_eq!(db.addon.name, OLD);
    assert_eq!(db.config_var(), "DATABASE_URL");
    assert_eq!(db.addon.app.as_ref().unwrap().name, APP);

    let pg = client.postgres_addons(APP).await.unwrap();
    assert_eq!(pg.len(), 2, "redis is not postgres");
    assert_eq!(pg[0].addon.name, OLD, "the DATABASE one comes first");
    assert!(pg[0].is_database(APP));
    assert_eq!(
        pg[0].attachment_names(APP),
        vec!["DATABASE", "HEROKU_POSTGRESQL_YELLOW"]
    );
    assert_eq!(pg[0].attachment_names("other-app"), vec!["SHARED_DB"]);
    assert_eq!(pg[1].attachment_names(APP), vec!["HEROKU_POSTGRESQL_RED"]);
    assert_eq!(
        client
            .database_addon(APP)
            .await
            .unwrap()
            .unwrap()
            .addon
            .name,
        OLD
    );
}

#[tokio::test]
async fn attach_under_a_taken_name_needs_confirm() {
    let (em, client) = start().await;
    // Taken by another attachment.
    let e = client
        .attach(APP, NEW, Some("DATABASE"), false)
        .await
        .unwrap_err();
    assert!(e.is_confirmation_required(), "{e}");
    assert_eq!(e.addon(), Some(NEW));
    assert!(e.to_string().contains("confirm"), "{e}");
    let att = client
        .attach(APP, NEW, Some("DATABASE"), true)
        .await
        .unwrap();
    assert_eq!(
        (att.name.as_str(), att.addon.name.as_str()),
        ("DATABASE", NEW)
    );
    assert_eq!(em.config_vars(APP).unwrap()["DATABASE_URL"], NEW_URL);
    let rel = client.releases(APP).await.unwrap();
    let n = rel.len();
    assert_eq!(
        rel[n - 2].description,
        format!("Detach DATABASE (@ref:{OLD})")
    );
    assert_eq!(
        rel[n - 1].description,
        format!("Attach DATABASE (@ref:{NEW})")
    );

    // Taken by an ordinary config var.
    client
        .set_config_vars(APP, [("CACHE_URL", "plain")])
        .await
        .unwrap();
    let e = client
        .attach(APP, NEW, Some("CACHE"), false)
        .await
        .unwrap_err();
    assert!(e.is_confirmation_required(), "{e}");
    client.attach(APP, NEW, Some("CACHE"), true).await.unwrap();
    assert_eq!(em.config_vars(APP).unwrap()["CACHE_URL"], NEW_URL);

    // Without a name, Heroku picks one.
    let picked = client.attach(APP, NEW, None, false).await.unwrap();
    assert!(
        picked.name.starts_with("HEROKU_POSTGRESQL_"),
        "{}",
        picked.name
    );

    let e = client
        .attach(APP, NEW, Some("lower-case"), false)
        .await
        .unwrap_err();
    assert!(matches!(e, HerokuError::InvalidParams { .. }), "{e}");
}

#[tokio::test]
async fn detach_rules_and_not_found() {
    let (em, client) = start().await;
    let e = client
        .detach(APP, "HEROKU_POSTGRESQL_RED")
        .await
        .unwrap_err();
    assert_eq!(
        e.api_message(),
        Some(format!("Cannot destroy last attachment to billing app for resource {NEW}").as_str())
    );
    assert!(
        e.to_string().contains("HEROKU_POSTGRES_DB"),
        "says what to do: {e}"
    );
    let e = client.detach(APP, "NOPE").await.unwrap_err();
    assert!(e.is_not_found());
    assert!(
        matches!(&e, HerokuError::NotFound { resource, .. } if resource == "add_on attachment")
    );
    let removed = client
        .detach(APP, "HEROKU_POSTGRESQL_YELLOW")
        .await
        .unwrap();
    assert_eq!(removed.addon.name, OLD);
    assert!(!em
        .config_vars(APP)
        .unwrap()
        .contains_key("HEROKU_POSTGRESQL_YELLOW_URL"));
    let rel = client.latest_release(APP).await.unwrap().unwrap();
    assert_eq!(
        rel.description,
        format!("Detach HEROKU_POSTGRESQL_YELLOW (@ref:{OLD})")
    );
}

#[tokio::test]
async fn unknown_app_addon_and_wrong_token() {
    let (em, client) = start().await;
    let e = client.app("no-such-app").await.unwrap_err();
    assert!(matches!(&e, HerokuError::NotFound { resource, message, .. }
        if resource == "app" && message == "Couldn't find that app."));
    assert_eq!(e.app(), Some("no-such-app"));
    let e = client.addon("postgresql-nope-1").await.unwrap_err();
    assert!(
        matches!(&e, HerokuError::NotFound { resource, .. } if resource == "add_on"),
        "{e}"
    );
    assert_eq!(e.addon(), Some("postgresql-nope-1"));
    let e = client
        .attach(APP, "postgresql-nope-1", Some("X"), false)
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");

    let bad = em.client_builder("wrong-token").build().unwrap();
    let sent = em.requests().len();
    let e = bad.config_vars(APP).await.unwrap_err();
    assert!(e.is_unauthorized(), "{e}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("HEROKU_API_KEY"), "{e}");
    assert_eq!(em.requests().len(), sent + 1, "a 401 is not retried");
}

#[tokio::test]
async fn error_kinds_are_keyed_on_the_api_id() {
    let (em, client) = start().await;
    let target = |e: &HerokuError| e.app().map(str::to_owned);
    em.inject(Fault::new(403, 1));
    let e = client.app(APP).await.unwrap_err();
    assert!(
        matches!(&e, HerokuError::Forbidden { id, .. } if id == "forbidden"),
        "{e}"
    );
    assert_eq!(target(&e).as_deref(), Some(APP));
    em.inject(Fault::new(403, 1).with_error("two_factor", "Two-factor code required."));
    let e = client.app(APP).await.unwrap_err();
    assert_eq!(e.id(), Some("two_factor"));
    em.inject(Fault::new(409, 1));
    let e = client.set_maintenance(APP, true).await.unwrap_err();
    assert!(matches!(e, HerokuError::Conflict { .. }), "{e}");
    assert!(!e.is_retryable());
    // The id decides, not the status.
    em.inject(Fault::new(422, 1).with_error("confirmation_required", "Confirm."));
    assert!(client
        .app(APP)
        .await
        .unwrap_err()
        .is_confirmation_required());
    em.inject(Fault::new(418, 1).with_error("teapot", "I'm a teapot."));
    let e = client.app(APP).await.unwrap_err();
    assert!(
        matches!(&e, HerokuError::Api { status: 418, id, message, .. }
        if id == "teapot" && message == "I'm a teapot."),
        "{e}"
    );
    em.inject(Fault::new(500, 1).with_error("internal_server_error", "boom"));
    // A 500 is retried, and the retry succeeds.
    assert_eq!(client.app(APP).await.unwrap().name, APP);
}

#[tokio::test]
async fn runbook_cutover_then_rollback_by_promote() {
    let (em, client) = start().await;
    client.set_maintenance(APP, true).await.unwrap();
    // Runbook step 1: note the add-on and its aliases.
    let db = client.database_addon(APP).await.unwrap().unwrap();
    assert_eq!(db.addon.name, OLD);
    // Step 8: attach a backup alias, detach DATABASE, set DATABASE_URL, read back.
    let backup = client
        .attach(APP, OLD, Some("HEROKU_POSTGRES_DB"), false)
        .await
        .unwrap();
    assert_eq!(backup.config_var(), "HEROKU_POSTGRES_DB_URL");
    client.detach(APP, "DATABASE").await.unwrap();
    let vars = client.config_vars(APP).await.unwrap();
    assert!(!vars.contains_key("DATABASE_URL"));
    assert!(vars.has_value("HEROKU_POSTGRES_DB_URL", OLD_URL));
    client
        .set_config_vars(APP, [("DATABASE_URL", RDS_URL)])
        .await
        .unwrap();
    let read_back = client
        .config_var(APP, "DATABASE_URL")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read_back.expose_secret(), RDS_URL);
    client.set_maintenance(APP, false).await.unwrap();

    // Rollback: promote the old add-on; DATABASE_URL is an ordinary var now,
    // and confirm lets the attachment replace it.
    let outcome = client.promote(APP, OLD).await.unwrap();
    assert_eq!(outcome.addon, OLD);
    assert_eq!(outcome.previous, None);
    assert!(!outcome.already_promoted);
    let vars = client.config_vars(APP).await.unwrap();
    assert_eq!(database_url(&vars), OLD_URL);
    let names: Vec<String> = em.attachments(APP).into_iter().map(|a| a.name).collect();
    assert!(names.contains(&"DATABASE".to_owned()), "{names:?}");
    // Promoting again changes nothing.
    let again = client.promote(APP, OLD).await.unwrap();
    assert!(again.already_promoted);
}

#[tokio::test]
async fn promote_keeps_the_outgoing_database_attached_and_repoints_the_pooler() {
    let seed = Seed::new().token(TOKEN).app(
        SeedApp::new(APP)
            .addon(
                SeedAddon::postgres(OLD, OLD_URL)
                    .attach("DATABASE")
                    .attach_to(
                        APP,
                        "DATABASE_CONNECTION_POOL",
                        Some("connection-pooling:default"),
                    ),
            )
            .addon(SeedAddon::postgres(NEW, NEW_URL).attach("HEROKU_POSTGRESQL_RED")),
    );
    let em = Emulator::start(seed).await.unwrap();
    let client = em.client_builder(TOKEN).build().unwrap();
    // Named by one of its attachments, like `heroku pg:promote HEROKU_POSTGRESQL_RED`.
    let outcome = client.promote(APP, "HEROKU_POSTGRESQL_RED").await.unwrap();
    assert_eq!(outcome.addon, NEW);
    assert_eq!(outcome.previous.as_deref(), Some(OLD));
    let backup = outcome
        .backup_attachment
        .clone()
        .expect("a backup alias was made");
    assert!(backup.starts_with("HEROKU_POSTGRESQL_"), "{backup}");
    assert!(outcome.repointed_pooler);
    let vars = em.config_vars(APP).unwrap();
    assert_eq!(vars["DATABASE_URL"], NEW_URL);
    assert_eq!(vars[&format!("{backup}_URL")], OLD_URL);
    let pool = em
        .attachments(APP)
        .into_iter()
        .find(|a| a.name == "DATABASE_CONNECTION_POOL")
        .unwrap();
    assert_eq!(pool.addon, NEW);
    assert_eq!(
        pool.namespace.as_deref(),
        Some("connection-pooling:default")
    );

    let redis = Seed::new().token(TOKEN).app(
        SeedApp::new(APP).addon(
            SeedAddon::postgres("redis-1", "redis://x")
                .service("heroku-redis", "heroku-redis:mini")
                .attach("REDIS"),
        ),
    );
    let em = Emulator::start(redis).await.unwrap();
    let client = em.client_builder(TOKEN).build().unwrap();
    let e = client.promote(APP, "redis-1").await.unwrap_err();
    assert!(matches!(e, HerokuError::NotPostgres { .. }), "{e}");
}

#[tokio::test]
async fn formation_list_and_scale_workers_to_zero() {
    let (em, client) = start().await;
    let formation = client.formation(APP).await.unwrap();
    let mut types: Vec<(String, u32)> = formation
        .iter()
        .map(|f| (f.process_type.clone(), f.quantity))
        .collect();
    types.sort();
    assert_eq!(
        types,
        vec![("clock".into(), 1), ("web".into(), 2), ("worker".into(), 1)]
    );
    let updated = client
        .scale(APP, &[("worker", 0), ("clock", 0)])
        .await
        .unwrap();
    assert_eq!(updated.len(), 2);
    assert!(updated.iter().all(|f| f.quantity == 0));
    assert_eq!(em.formation(APP)["worker"], 0);
    assert_eq!(em.formation(APP)["web"], 2);
    let e = client.scale(APP, &[("nope", 1)]).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_eq!(em.formation(APP)["worker"], 0);
}

#[tokio::test]
async fn lists_follow_next_range_across_pages() {
    let mut addon = SeedAddon::postgres(OLD, OLD_URL).attach("DATABASE");
    for i in 0..260 {
        addon = addon.attach(format!("ALIAS_{i:03}"));
    }
    let seed = Seed::new().token(TOKEN).app(SeedApp::new(APP).addon(addon));
    let em = Emulator::start(seed).await.unwrap();
    let path = format!("/apps/{APP}/addon-attachments");

    // Pages of 100: three requests, the first two answered 206.
    let client = em
        .client_builder(TOKEN)
        .page_size(Some(100))
        .build()
        .unwrap();
    let all = client.attachments(APP).await.unwrap();
    assert_eq!(all.len(), 261);
    let mut names: Vec<&str> = all.iter().map(|a| a.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 261, "no attachment twice");
    let reqs: Vec<_> = em
        .requests()
        .into_iter()
        .filter(|r| r.path == path)
        .collect();
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![206, 206, 200]
    );
    assert_eq!(reqs[0].range.as_deref(), Some("id ..; max=100"));
    assert!(
        reqs[1].range.as_deref().unwrap().starts_with("id ]"),
        "{:?}",
        reqs[1].range
    );

    // No Range header: Heroku's default page of 200, then the rest.
    let client = em.client_builder(TOKEN).page_size(None).build().unwrap();
    let before = em.requests().len();
    assert_eq!(client.addon_attachments(OLD).await.unwrap().len(), 261);
    let statuses: Vec<u16> = em.requests()[before..].iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![206, 200]);
}

#[tokio::test]
async fn unavailable_and_rate_limited_answers_are_retried() {
    let (em, client) = start().await;
    em.inject(Fault::new(503, 2));
    assert_eq!(client.app(APP).await.unwrap().name, APP);
    em.inject(Fault::new(429, 2).on_path("/apps"));
    assert!(client.config_vars(APP).await.is_ok());
    // A change is retried too when Heroku says it did not take it.
    em.inject(Fault::new(503, 1).on_method("PATCH"));
    client.set_maintenance(APP, true).await.unwrap();
    assert_eq!(em.maintenance(APP), Some(true));
    let statuses: Vec<u16> = em.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 503, 200, 429, 429, 200, 503, 200]);
}

#[tokio::test]
async fn a_change_that_may_have_been_applied_is_not_sent_twice() {
    let (em, client) = start().await;
    // A 500 after a POST: Heroku may have attached already; a second
    // attach could create a second alias, so the error is returned as is.
    em.inject(Fault::new(500, 1).on_method("POST"));
    let before = em.requests().len();
    let e = client
        .attach(APP, OLD, Some("HEROKU_POSTGRES_DB"), false)
        .await
        .unwrap_err();
    assert_eq!(em.requests().len() - before, 1, "{e}");
    assert!(
        matches!(
            e,
            HerokuError::Unavailable {
                status: 500,
                attempts: 1,
                ..
            }
        ),
        "{e}"
    );
    // The same answer to a read is retried.
    em.inject(Fault::new(500, 1));
    assert_eq!(client.app(APP).await.unwrap().name, APP);
}

#[tokio::test]
async fn retries_are_bounded() {
    let (em, _) = start().await;
    let client = em
        .client_builder(TOKEN)
        .retry(RetryPolicy::new(
            3,
            Duration::from_millis(5),
            Duration::from_millis(20),
        ))
        .pace_below(0, Duration::ZERO)
        .build()
        .unwrap();
    em.inject(Fault::new(503, 10));
    let e = client.app(APP).await.unwrap_err();
    assert!(
        matches!(
            e,
            HerokuError::Unavailable {
                status: 503,
                attempts: 3,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.is_retryable());
    assert!(e.to_string().contains("try again later"), "{e}");
    assert_eq!(em.requests().len(), 3);
    em.clear_faults();

    em.set_rate_limit_remaining(0);
    let e = client.app(APP).await.unwrap_err();
    assert!(
        matches!(e, HerokuError::RateLimited { attempts: 3, .. }),
        "{e}"
    );
    assert_eq!(e.id(), Some("rate_limit"));
    assert_eq!(client.rate_limit_remaining(), Some(0));
}

#[tokio::test]
async fn low_rate_limit_slows_the_client_down() {
    let (em, _) = start().await;
    let pause = Duration::from_millis(150);
    let client = em
        .client_builder(TOKEN)
        .pace_below(100, pause)
        .build()
        .unwrap();
    em.set_rate_limit_remaining(20);
    let started = Instant::now();
    client.app(APP).await.unwrap();
    let first = started.elapsed();
    let remaining = client.rate_limit_remaining().unwrap();
    assert!(remaining < 20, "{remaining}");
    client.app(APP).await.unwrap();
    client.app(APP).await.unwrap();
    assert!(
        started.elapsed() >= first + 2 * pause,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn slow_answers_time_out() {
    let (em, _) = start().await;
    let client = em
        .client_builder(TOKEN)
        .timeout(Duration::from_millis(100))
        .retry(RetryPolicy::new(
            2,
            Duration::from_millis(5),
            Duration::from_millis(5),
        ))
        .build()
        .unwrap();
    em.set_latency(Duration::from_millis(400));
    let e = client.app(APP).await.unwrap_err();
    assert!(matches!(e, HerokuError::Timeout { attempts: 2, .. }), "{e}");
    // A change that timed out may have reached Heroku: it is not sent twice.
    let e = client.set_maintenance(APP, true).await.unwrap_err();
    assert!(matches!(e, HerokuError::Timeout { attempts: 1, .. }), "{e}");
    em.clear_faults();
}

/// Captures every tracing event, at every level, as text.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_token_or_config_value_in_logs_or_errors() {
    let capture = Capture::default();
    let sink = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut errors: Vec<String> = Vec::new();
    rt.block_on(async {
        let (em, client) = start().await;
        errors.push(format!("{client:?}"));
        let vars = client.config_vars(APP).await.unwrap();
        errors.push(format!("{vars:?}"));
        client
            .set_config_vars(APP, [("NEW_SECRET", SecretString::from(RDS_URL))])
            .await
            .unwrap();
        for e in [
            client
                .set_config_vars(APP, [("DATABASE_URL", RDS_URL)])
                .await
                .unwrap_err(),
            client
                .unset_config_vars(APP, ["DATABASE_URL"])
                .await
                .unwrap_err(),
            client
                .attach(APP, NEW, Some("DATABASE"), false)
                .await
                .unwrap_err(),
            client.app("nope").await.unwrap_err(),
            em.client_builder("wrong-token")
                .build()
                .unwrap()
                .app(APP)
                .await
                .unwrap_err(),
        ] {
            errors.push(e.to_string());
            errors.push(format!("{e:?}"));
        }
        em.inject(Fault::new(503, 1));
        client.config_vars(APP).await.unwrap();
        client.promote(APP, NEW).await.unwrap();
        client.set_maintenance(APP, true).await.unwrap();
    });
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("heroku api"), "the capture works: {logs}");
    assert!(logs.contains("retrying"), "{logs}");
    for secret in [
        TOKEN,
        "wrong-token",
        OLD_URL,
        NEW_URL,
        RDS_URL,
        SECRET_KEY_VALUE,
        "password-secret",
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
        for e in &errors {
            assert!(!e.contains(secret), "{secret} leaked into {e}");
        }
    }
}
