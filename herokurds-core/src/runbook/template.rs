//! A commented `plan.toml` to start from, as `cargo init` writes a project:
//! what `herokurds init` writes. Someone who ran `cargo install` has no
//! README, so every section says what it is for and which keys it takes.
//!
//! With the app's facts from the Heroku API ([`AppFacts::fetch`]) the
//! template is filled: the Postgres add-on and its attachments, the config
//! vars that name buckets (values that look secret are never written), the
//! process types to scale down, and smoke URLs from the app's web URL. The
//! text always parses as a [`Plan`](super::Plan).

use crate::heroku::{Client, HerokuError};

use super::cutover::looks_secret;

/// What the Heroku API says about an app, as far as a plan needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppFacts {
    /// The app's name.
    pub app: String,
    /// The Postgres add-on attached as `DATABASE`, if any.
    pub addon: Option<String>,
    /// The names that add-on is attached under on the app.
    pub attachments: Vec<String>,
    /// The app's other Postgres add-ons (followers, forks).
    pub other_postgres: Vec<String>,
    /// Config vars whose name contains `BUCKET` and whose value is a bucket
    /// name: `(name, bucket)`.
    pub buckets: Vec<(String, String)>,
    /// Config vars whose name contains `BUCKET` left out: their value looks
    /// secret or is not a bucket name.
    pub withheld: Vec<String>,
    /// Running process types other than `web` (maintenance mode does not
    /// stop them).
    pub workers: Vec<String>,
    /// The app's web address.
    pub web_url: Option<String>,
}

impl AppFacts {
    /// Only the name: for a template without API access.
    pub fn named(app: impl Into<String>) -> Self {
        AppFacts {
            app: app.into(),
            ..AppFacts::default()
        }
    }

    /// Reads the app, its add-ons and attachments, its config vars and its
    /// formation. Config var values are read to recognise bucket names;
    /// none is kept unless it is a bucket name that does not look secret.
    pub async fn fetch(heroku: &Client, app: &str) -> Result<AppFacts, HerokuError> {
        let info = heroku.app(app).await?;
        let mut facts = AppFacts {
            app: info.name.clone(),
            web_url: info.web_url.clone(),
            ..AppFacts::default()
        };
        for pg in heroku.postgres_addons(app).await? {
            if pg.is_database(app) && facts.addon.is_none() {
                facts.addon = Some(pg.addon.name.clone());
                facts.attachments = pg
                    .attachment_names(app)
                    .into_iter()
                    .map(str::to_string)
                    .collect();
            } else {
                facts.other_postgres.push(pg.addon.name.clone());
            }
        }
        let vars = heroku.config_vars(app).await?;
        for (name, value) in vars.iter() {
            if !name.to_ascii_uppercase().contains("BUCKET") {
                continue;
            }
            let value = secrecy::ExposeSecret::expose_secret(value);
            if !looks_secret(name, value) && is_bucket_name(value) {
                facts.buckets.push((name.to_string(), value.to_string()));
            } else {
                facts.withheld.push(name.to_string());
            }
        }
        let mut workers: Vec<String> = heroku
            .formation(app)
            .await?
            .into_iter()
            .filter(|f| f.process_type != "web" && f.quantity > 0)
            .map(|f| f.process_type)
            .collect();
        workers.sort();
        facts.workers = workers;
        Ok(facts)
    }
}

/// An S3 bucket name: 3-63 lowercase letters, digits, dots and dashes,
/// starting and ending with a letter or digit.
fn is_bucket_name(s: &str) -> bool {
    let ok_ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && ok_ends(s.chars().next())
        && ok_ends(s.chars().last())
}

/// A TOML string literal (quoted and escaped).
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn list(items: &[String]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|s| quoted(s))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The app name written when none is given; a valid name, to be replaced.
pub const PLACEHOLDER_APP: &str = "my-heroku-app";

/// The commented plan text. `facts` fills it (at least the app's name);
/// without them the app is [`PLACEHOLDER_APP`] and every suggestion is a
/// comment. The result always parses as a [`Plan`](super::Plan).
pub fn plan_template(facts: Option<&AppFacts>) -> String {
    let empty = AppFacts::named(PLACEHOLDER_APP);
    let f = facts.unwrap_or(&empty);
    let mut t = String::new();
    let mut line = |s: &str| {
        t.push_str(s);
        t.push('\n');
    };
    line("# herokurds migration plan: `herokurds plan --config plan.toml` checks it and");
    line("# changes nothing; `herokurds run --config plan.toml` migrates. Secrets never go");
    line("# in this file: it names where they come from (environment, Secrets Manager).");
    if facts.is_some_and(|f| f.web_url.is_some() || f.addon.is_some()) {
        line(&format!(
            "# Filled by `herokurds init --app {}` from the Heroku API; check every line.",
            f.app
        ));
    }
    line("");
    line("work_dir = \".herokurds\"                 # journal, lock, report");
    line("");
    line("[heroku]");
    line(&format!(
        "app = {:<36}# token: HEROKU_API_KEY or ~/.netrc (heroku login)",
        quoted(&f.app)
    ));
    match &f.addon {
        Some(addon) => {
            line(&format!(
                "addon = {:<34}# attached as {}",
                quoted(addon),
                if f.attachments.is_empty() {
                    "DATABASE".to_string()
                } else {
                    f.attachments.join(", ")
                }
            ));
        }
        None => line(
            "# addon = \"postgresql-rigid-71273\"      # default: the add-on attached as DATABASE",
        ),
    }
    if !f.other_postgres.is_empty() {
        line(&format!(
            "# the app's other Postgres add-ons (not migrated): {}",
            f.other_postgres.join(", ")
        ));
    }
    line("");
    line("# [source]");
    line("# url_env = \"SOURCE_DATABASE_URL\"       # default: the app's DATABASE_URL, through the API");
    line("");
    line("[target]                                # the RDS database: the whole URL from the environment,");
    line("url_env = \"TARGET_DATABASE_URL\"         # or (instead of url_env) its parts:");
    line("# pulumi_export = \"stack.json\"          # `pulumi stack export > stack.json`: address, port, dbName, username");
    line("# rds_instance = \"my-db\"                # or: endpoint and managed secret from the RDS API");
    line("# host / port / dbname / user = ...     # or explicit parts");
    line("# password_env = \"RDS_PASSWORD\"         # or: password_secret = \"rds!db-...\" (Secrets Manager)");
    line("# sslmode = \"verify-full\"               # default require");
    line("# sslrootcert = \"global-bundle.pem\"     # the RDS CA bundle, for verify-full");
    line("");
    line("[transfer]");
    line("jobs = 4                                # tables copied at once");
    line("# exclude_tables = [\"public.django_session\"]");
    line("# exclude_extensions = [\"pg_stat_statements\"]   # Heroku's heroku_ext legacy");
    line("");
    line("[maintenance]                           # maintenance mode only holds web traffic:");
    if f.workers.is_empty() {
        line(
            "# scale_down = [\"worker\", \"clock\"]      # process types stopped during the window",
        );
    } else {
        line(&format!(
            "scale_down = {:<29}# the app's running process types besides web",
            list(&f.workers)
        ));
    }
    line("");
    line("[cutover]");
    line(
        "backup_alias = \"HEROKU_POSTGRES_DB\"     # the old add-on keeps this name, for rollback",
    );
    if f.buckets.is_empty() {
        line("# config_vars = { AWS_STORAGE_BUCKET_NAME = \"new-bucket\" }   # set during the cutover");
    } else {
        let pairs: Vec<String> = f
            .buckets
            .iter()
            .map(|(name, _)| format!("{name} = \"NEW-BUCKET\""))
            .collect();
        line("# set during the cutover: the app's bucket config vars, to the new bucket(s)");
        line(&format!("# config_vars = {{ {} }}", pairs.join(", ")));
    }
    if !f.withheld.is_empty() {
        line(&format!(
            "# not written (values look secret, or are not bucket names): {}",
            f.withheld.join(", ")
        ));
    }
    line("");
    if f.buckets.is_empty() {
        line("# [[s3]]                                # one section per bucket to copy");
        line("# source = \"s3://old-bucket\"");
        line("# target = \"s3://new-bucket\"");
        line("# delete = true                         # the final sync removes keys absent from the source");
    } else {
        for (name, bucket) in &f.buckets {
            line(&format!(
                "# [[s3]]                                # from {name}"
            ));
            line(&format!("# source = {}", quoted(&format!("s3://{bucket}"))));
            line("# target = \"s3://NEW-BUCKET\"           # the bucket on the AWS side");
        }
    }
    line("");
    line("# [assets]                              # plan and run check the app's own AWS keys on each target:");
    line("# access_key_var = \"AWS_ACCESS_KEY_ID\"  # list, get, put and delete a herokurds-probe/ key");
    line("# secret_key_var = \"AWS_SECRET_ACCESS_KEY\"");
    line("# check_app_credentials = true");
    line("");
    line("# [[cloudfront]]                        # origins on an [[s3]] source bucket move to its target");
    line("# distribution_id = \"E2QWRUHAPOMQZL\"    # at the cutover, back on rollback");
    line("# paths = [\"/*\"]                        # invalidated after the switch");
    line("");
    line("[smoke]                                 # pages fetched before and after, compared");
    match &f.web_url {
        Some(url) => {
            line(&format!("urls = {}", list(std::slice::from_ref(url))));
            line("# add pages that read the database, e.g. a list or a detail page");
        }
        None => line("# urls = [\"https://my-heroku-app.herokuapp.com/\"]"),
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::Plan;

    #[test]
    fn the_bare_template_parses_as_a_plan() {
        let text = plan_template(None);
        let plan = Plan::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(plan.heroku.app, PLACEHOLDER_APP);
        assert_eq!(plan.target.url_env.as_deref(), Some("TARGET_DATABASE_URL"));
        assert!(plan.s3.is_empty() && plan.smoke.urls.is_empty());
        // The commented keys parse when uncommented.
        let uncommented = text
            .replace("# [assets]", "[assets]")
            .replace("# access_key_var", "access_key_var")
            .replace("# secret_key_var", "secret_key_var")
            .replace("# check_app_credentials", "check_app_credentials")
            .replace("# [[s3]]", "[[s3]]")
            .replace("# source =", "source =")
            .replace("# target =", "target =")
            .replace("# [[cloudfront]]", "[[cloudfront]]")
            .replace("# distribution_id", "distribution_id")
            .replace("# paths", "paths");
        let plan = Plan::parse(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        assert_eq!(plan.cloudfront[0].distribution_id, "E2QWRUHAPOMQZL");
        assert_eq!(plan.cloudfront[0].paths, ["/*"]);
        assert!(plan.assets.check_app_credentials);
        assert_eq!(plan.assets.secret_key_var, "AWS_SECRET_ACCESS_KEY");
    }

    #[test]
    fn a_filled_template_parses_and_carries_the_facts() {
        let facts = AppFacts {
            app: "micromasters-ci".into(),
            addon: Some("postgresql-rigid-71273".into()),
            attachments: vec!["DATABASE".into(), "HEROKU_POSTGRESQL_YELLOW".into()],
            other_postgres: vec!["postgresql-new-2".into()],
            buckets: vec![(
                "AWS_STORAGE_BUCKET_NAME".into(),
                "odl-micromasters-ci".into(),
            )],
            withheld: vec!["BUCKET_KEY".into()],
            workers: vec!["clock".into(), "worker".into()],
            web_url: Some("https://micromasters-ci.herokuapp.com/".into()),
        };
        let text = plan_template(Some(&facts));
        let plan = Plan::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(plan.heroku.addon.as_deref(), Some("postgresql-rigid-71273"));
        assert_eq!(plan.maintenance.scale_down, ["clock", "worker"]);
        assert_eq!(plan.smoke.urls, ["https://micromasters-ci.herokuapp.com/"]);
        assert!(
            text.contains("DATABASE, HEROKU_POSTGRESQL_YELLOW"),
            "{text}"
        );
        assert!(
            text.contains("# source = \"s3://odl-micromasters-ci\""),
            "{text}"
        );
        assert!(
            text.contains("AWS_STORAGE_BUCKET_NAME = \"NEW-BUCKET\""),
            "{text}"
        );
        assert!(
            text.contains("not written") && text.contains("BUCKET_KEY"),
            "{text}"
        );
    }

    #[test]
    fn bucket_names_are_recognised() {
        for ok in ["odl-micromasters-ci", "a.b-c", "abc"] {
            assert!(is_bucket_name(ok), "{ok}");
        }
        for bad in [
            "ab",
            "Upper",
            "-dash",
            "dash-",
            "s3://x",
            "a b c",
            &"x".repeat(64),
        ] {
            assert!(!is_bucket_name(bad), "{bad}");
        }
    }
}
