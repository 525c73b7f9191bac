//! Building the RDS `DATABASE_URL`: the runbook's "endpoint from `pulumi
//! stack export`, password from `pulumi config get`, glue them by hand"
//! step, done from typed sources.
//!
//! Each part comes from the first source that has it: the plan's explicit
//! value, the Pulumi export (or the RDS API), then the Secrets Manager
//! secret (whose rotation format may also carry host, port and dbname).
//! The user is the exception: a secret's user comes before the instance's
//! master username, because a rotation secret's password belongs to it.
//! [`resolve_target`] also says where each part came from, for `plan`.

use secrecy::SecretString;

use super::error::RunbookError;
use super::journal::Journal;
use super::plan::TargetSection;
use super::{Context, Plan};
use crate::aws::{ClientOptions, RdsEndpoint};
use crate::pg::DbIdentity;
use crate::transfer::Side;
use crate::url::{DatabaseUrl, Param};

/// Looks an environment variable up (the process environment by default;
/// tests and embedders pass their own).
pub type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// The process environment as an [`EnvLookup`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A target URL and where its parts came from.
pub struct ResolvedTarget {
    /// The URL (with the password).
    pub url: DatabaseUrl,
    /// `host from pulumi export stack.json (resource app-db)`, ...
    pub sources: Vec<String>,
}

impl std::fmt::Debug for ResolvedTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedTarget")
            .field("url", &self.url)
            .field("sources", &self.sources)
            .finish()
    }
}

/// Why the target URL could not be built. Each variant names the plan key
/// (or the instance, secret or variable) that failed, and keeps the
/// underlying error as its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// An environment variable the plan names is not set.
    #[error("{key}: environment variable {var} is not set{hint}")]
    EnvNotSet {
        /// The plan key (`target.url_env`, `target.password_env`).
        key: &'static str,
        /// The variable.
        var: String,
        /// What it should hold, when that helps.
        hint: &'static str,
    },
    /// A URL, or the parts gathered, do not make a valid database URL.
    #[error("{what}: {source}")]
    Url {
        /// What was being built or parsed, naming the key or variable.
        what: String,
        /// Why not.
        #[source]
        source: crate::url::UrlError,
    },
    /// The Pulumi export is unreadable, or lacks the RDS instance.
    #[error("target.pulumi_export: {source}")]
    Pulumi {
        /// Why.
        #[source]
        source: crate::pulumi::PulumiError,
    },
    /// An AWS call (RDS, Secrets Manager) failed.
    #[error("{what}: {source}")]
    Aws {
        /// The key or secret it served (`target.rds_instance`,
        /// `target.password_secret`, the instance's managed secret).
        what: &'static str,
        /// Why.
        #[source]
        source: crate::aws::AwsError,
    },
    /// Nothing names where the password comes from.
    #[error(
        "target: {}; set target.password_env or target.password_secret",
        match .rds_instance {
            Some(id) => format!("RDS instance {id} has no managed master-user secret"),
            None => "no password source".to_string(),
        }
    )]
    NoPassword {
        /// The RDS instance whose managed secret was looked for.
        rds_instance: Option<String>,
    },
}

/// Builds the target URL from a `[target]` section. Errors list every
/// missing or malformed part and name the source that failed (the
/// environment variable, the export file, the secret id, the instance).
pub async fn resolve_target(
    t: &TargetSection,
    env: &EnvLookup,
    aws: &ClientOptions,
) -> Result<ResolvedTarget, TargetError> {
    let mut sources = Vec::new();
    if let Some(var) = &t.url_env {
        let text = env(var).ok_or_else(|| TargetError::EnvNotSet {
            key: "target.url_env",
            var: var.clone(),
            hint: " (it should hold the RDS DATABASE_URL)",
        })?;
        let mut url: DatabaseUrl = text.parse().map_err(|source| TargetError::Url {
            what: format!("target.url_env: {var} is not a valid database URL"),
            source,
        })?;
        if t.sslmode.is_some() || t.sslrootcert.is_some() {
            let mut b = url.to_builder();
            apply_tls(&mut b, t);
            url = b.build().map_err(|source| TargetError::Url {
                what: "target".into(),
                source,
            })?;
        }
        sources.push(format!("URL from ${var}"));
        return Ok(ResolvedTarget { url, sources });
    }

    let mut endpoint: Option<RdsEndpoint> = None;
    let mut managed_secret: Option<String> = None;
    if let Some(path) = &t.pulumi_export {
        // A file read (or stdin): off the runtime's worker.
        let owned = path.clone();
        let export = tokio::task::spawn_blocking(move || crate::pulumi::StackExport::read(&owned))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
            .map_err(|source| TargetError::Pulumi { source })?;
        let instance = export
            .rds_instance(t.pulumi_resource.as_deref())
            .map_err(|source| TargetError::Pulumi { source })?;
        let ep = instance
            .endpoint()
            .map_err(|source| TargetError::Pulumi { source })?;
        sources.push(format!(
            "endpoint from pulumi export {} ({})",
            path.display(),
            instance.name()
        ));
        managed_secret = instance.master_secret_arn();
        endpoint = Some(ep);
    } else if let Some(id) = &t.rds_instance {
        let client = aws.rds_client().await.map_err(|source| TargetError::Aws {
            what: "target.rds_instance",
            source,
        })?;
        let info = crate::aws::rds_endpoint(&client, id)
            .await
            .map_err(|source| TargetError::Aws {
                what: "target.rds_instance",
                source,
            })?;
        sources.push(format!("endpoint from RDS instance {id}"));
        managed_secret = info.master_secret_arn.clone();
        endpoint = Some(info.endpoint);
    }

    let mut user = t.user.clone();
    let mut host = t.host.clone();
    let mut port = t.port;
    let mut dbname = t.dbname.clone();
    if let Some(ep) = &endpoint {
        host = host.or_else(|| Some(ep.host.clone()));
        port = port.or(Some(ep.port));
        dbname = dbname.or_else(|| ep.dbname.clone());
    }

    let password: SecretString = if let Some(var) = &t.password_env {
        sources.push(format!("password from ${var}"));
        SecretString::from(env(var).ok_or_else(|| TargetError::EnvNotSet {
            key: "target.password_env",
            var: var.clone(),
            hint: "",
        })?)
    } else {
        let (secret_id, what) = match (&t.password_secret, &managed_secret) {
            (Some(id), _) => (id.clone(), "target.password_secret"),
            (None, Some(arn)) => (arn.clone(), "the RDS instance's managed secret"),
            (None, None) => {
                return Err(TargetError::NoPassword {
                    rds_instance: t.rds_instance.clone(),
                });
            }
        };
        let client = aws
            .secrets_client()
            .await
            .map_err(|source| TargetError::Aws { what, source })?;
        let secret = crate::aws::fetch_db_secret(&client, &secret_id)
            .await
            .map_err(|source| TargetError::Aws { what, source })?;
        sources.push(format!("password from secret {secret_id}"));
        // A rotation secret's user goes with its password (multi-user
        // rotation alternates users), so it wins over the master username.
        user = user.or(secret.username.clone());
        host = host.or(secret.host.clone());
        port = port.or(secret.port);
        dbname = dbname.or(secret.dbname.clone());
        secret.password
    };

    // Without a secret's user, the instance's master username.
    user = user.or_else(|| endpoint.as_ref().and_then(|e| e.username.clone()));
    let mut b = DatabaseUrl::builder();
    if let Some(u) = &user {
        b.user(u.clone());
    }
    if let Some(h) = &host {
        b.host(h.clone());
    }
    if let Some(p) = port {
        b.port(p);
    }
    if let Some(d) = &dbname {
        b.dbname(d.clone());
    }
    b.password(password);
    if t.sslmode.is_none() {
        // RDS speaks TLS; never send the password in clear by default.
        b.param(Param::SslMode.name(), "require");
    }
    apply_tls(&mut b, t);
    let url = b.build().map_err(|source| TargetError::Url {
        what: "target".into(),
        source,
    })?;
    Ok(ResolvedTarget { url, sources })
}

fn apply_tls(b: &mut crate::url::DatabaseUrlBuilder, t: &TargetSection) {
    if let Some(mode) = &t.sslmode {
        b.param(Param::SslMode.name(), mode.clone());
    }
    if let Some(root) = &t.sslrootcert {
        b.param(Param::SslRootCert.name(), root.display().to_string());
    }
}

/// The source URL as Heroku gives it, made safe to use: Heroku Postgres
/// requires TLS but its URLs carry no `sslmode`, so `require` is added
/// when none is set.
pub fn heroku_source_url(text: &str) -> Result<DatabaseUrl, crate::url::UrlError> {
    let url: DatabaseUrl = text.parse()?;
    if url.param(Param::SslMode).is_some() {
        return Ok(url);
    }
    let mut b = url.to_builder();
    b.param(Param::SslMode.name(), "require");
    b.build()
}

/// Refuses when `url` reaches another database than the one preflight
/// journaled for `side` (nothing to compare before preflight).
pub(super) async fn check_identity(
    plan: &Plan,
    ctx: &Context,
    journal: &Journal,
    side: Side,
    url: &DatabaseUrl,
) -> Result<(), RunbookError> {
    let journaled = match side {
        Side::Source => &journal.source_identity,
        Side::Target => &journal.target_identity,
    };
    let Some(journaled) = journaled else {
        return Ok(());
    };
    let now = DbIdentity::connect(url)
        .await
        .map_err(|e| RunbookError::Step {
            what: format!("identifying the {side} database of app {}", plan.heroku.app),
            reason: e.to_string(),
        })?;
    if journaled.same_as(&now) {
        return Ok(());
    }
    Err(RunbookError::IdentityMismatch {
        app: plan.heroku.app.clone(),
        side,
        journaled: journaled.to_string(),
        now: now.to_string(),
        plan: ctx.plan_path.clone(),
    })
}

/// The source URL (the old add-on's, through any of its attachments, so it
/// is found before and after the cutover) and the target URL.
pub(super) async fn resolve_urls(
    plan: &Plan,
    ctx: &Context,
    journal: &Journal,
) -> Result<(DatabaseUrl, DatabaseUrl), String> {
    let app = &plan.heroku.app;
    let source = if let Some(var) = &plan.source.url_env {
        let text = (ctx.env)(var)
            .ok_or_else(|| format!("source.url_env: environment variable {var} is not set"))?;
        heroku_source_url(&text)
            .map_err(|e| format!("source.url_env: {var} is not a valid database URL: {e}"))?
    } else {
        source_from_heroku(plan, ctx, journal.old_addon.as_deref()).await?
    };
    let target = resolved_target(plan, ctx).await?;
    // The same server under two names (`localhost`, `127.0.0.1`, a CNAME)
    // is told by its system identifier; a side that cannot be reached yet
    // is compared by its URL (preflight compares again once connected).
    let (s, t) = tokio::join!(DbIdentity::connect(&source), DbIdentity::connect(&target));
    let s = s.unwrap_or_else(|e| DbIdentity::of_url(&source, e.to_string()));
    let t = t.unwrap_or_else(|e| DbIdentity::of_url(&target, e.to_string()));
    if s.same_database(&t) {
        return Err(same_database_message(&s, &t, app));
    }
    Ok((source, target))
}

/// Why source and target may not be one database, naming both.
pub(super) fn same_database_message(source: &DbIdentity, target: &DbIdentity, app: &str) -> String {
    format!(
        "source and target are the same database (source {source}, target {target}); check [target] of app {app}"
    )
}

/// The old add-on's URL from the config var one of its attachments
/// provides (`DATABASE_URL` before the cutover, the backup alias after).
pub(super) async fn source_from_heroku(
    plan: &Plan,
    ctx: &Context,
    known_addon: Option<&str>,
) -> Result<DatabaseUrl, String> {
    let app = &plan.heroku.app;
    let heroku = &ctx.heroku;
    let addons = heroku
        .postgres_addons(app)
        .await
        .map_err(|e| e.to_string())?;
    let wanted = known_addon.or(plan.heroku.addon.as_deref());
    let addon = match wanted {
        Some(name) => addons
            .iter()
            .find(|a| a.addon.name == name || a.addon.id == name)
            .ok_or_else(|| format!("app {app} has no Heroku Postgres add-on named {name}"))?,
        None => addons
            .iter()
            .find(|a| a.is_database(app))
            .ok_or_else(|| {
                format!("app {app} has no Heroku Postgres add-on attached as DATABASE; name one with heroku.addon")
            })?,
    };
    let mut names: Vec<&str> = addon.attachment_names(app);
    names.sort_by_key(|n| *n != "DATABASE");
    let vars = heroku.config_vars(app).await.map_err(|e| e.to_string())?;
    for name in names {
        if let Some(v) = vars.get(&format!("{name}_URL")) {
            use secrecy::ExposeSecret;
            return heroku_source_url(v.expose_secret()).map_err(|e| {
                format!("config var {name}_URL of app {app} is not a valid database URL: {e}")
            });
        }
    }
    Err(format!(
        "no config var of app {app} holds the URL of add-on {}; is it attached?",
        addon.addon.name
    ))
}

/// The target URL as the plan and environment give it now.
pub(super) async fn resolved_target(plan: &Plan, ctx: &Context) -> Result<DatabaseUrl, String> {
    super::target::resolve_target(&plan.target, &*ctx.env, &ctx.aws_for(plan))
        .await
        .map(|t| t.url)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env_of(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<String> + Send + Sync {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[tokio::test]
    async fn parts_and_password_env_make_a_tls_url() {
        let t = TargetSection {
            host: Some("db.abc.us-east-1.rds.amazonaws.com:5432".into()),
            dbname: Some("app".into()),
            user: Some("rds_master".into()),
            password_env: Some("RDS_PW".into()),
            ..TargetSection::default()
        };
        let env = env_of(&[("RDS_PW", "p@ss:/w?rd")]);
        let r = resolve_target(&t, &env, &ClientOptions::new())
            .await
            .unwrap();
        assert_eq!(
            r.url.expose_url(),
            "postgres://rds_master:p%40ss%3A%2Fw%3Frd@db.abc.us-east-1.rds.amazonaws.com:5432/app?sslmode=require"
        );
        assert_eq!(r.sources, vec!["password from $RDS_PW"]);
        assert!(!format!("{r:?}").contains("p@ss"));
    }

    #[tokio::test]
    async fn url_env_missing_or_bad_is_named_without_the_value() {
        let t = TargetSection {
            url_env: Some("TARGET_DATABASE_URL".into()),
            ..TargetSection::default()
        };
        let e = resolve_target(&t, &env_of(&[]), &ClientOptions::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("TARGET_DATABASE_URL is not set"), "{e}");
        let env = env_of(&[("TARGET_DATABASE_URL", "postgres://u:hunter2@h:99999/d")]);
        let e = resolve_target(&t, &env, &ClientOptions::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("port") && !e.contains("hunter2"), "{e}");
    }

    #[tokio::test]
    async fn missing_parts_are_listed() {
        let t = TargetSection {
            host: Some("db.example.com".into()),
            password_env: Some("PW".into()),
            ..TargetSection::default()
        };
        let e = resolve_target(&t, &env_of(&[("PW", "x")]), &ClientOptions::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("user") && e.contains("dbname"), "{e}");
    }

    #[test]
    fn heroku_urls_get_sslmode_require() {
        let u = heroku_source_url("postgres://u:p@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d8abc")
            .unwrap();
        assert_eq!(u.param(Param::SslMode), Some("require"));
        let u = heroku_source_url("postgres://u:p@h:5432/d?sslmode=verify-full").unwrap();
        assert_eq!(u.param(Param::SslMode), Some("verify-full"));
        assert_eq!(u.password().expose_secret(), "p");
    }
}
