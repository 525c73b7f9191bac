//! The cutover through the Platform API, and its undoing.
//!
//! The order is the runbook's, made lossless and repeatable: attach the old
//! add-on under a backup alias (so detaching `DATABASE` is not removing its
//! last attachment, and rollback has a handle on it), detach `DATABASE`
//! (an attachment-owned `DATABASE_URL` cannot be overwritten), set
//! `DATABASE_URL` and the plan's config vars, read everything back.
//!
//! Every step looks at the app's current state first and does only what is
//! still missing, so `resume` can repeat a step that was cut short.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};

use crate::heroku::{Client, HerokuError};
use crate::url::DatabaseUrl;

/// Why a cutover step could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CutoverError {
    /// The Platform API refused or failed.
    #[error(transparent)]
    Heroku(#[from] HerokuError),
    /// The app is not as the migration left it.
    #[error("app {app}: {message}")]
    AppChanged {
        /// The app.
        app: String,
        /// What is different.
        message: String,
    },
}

/// The config var the app reads its database from.
pub const DATABASE_URL: &str = "DATABASE_URL";

/// Whether a config var's value should stay out of the journal: names that
/// say secret, and URLs carrying credentials.
pub fn looks_secret(name: &str, value: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    let secret_name = [
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "TOKEN",
        "KEY",
        "CREDENTIAL",
        "PRIVATE",
        "AUTH",
    ]
    .iter()
    .any(|w| upper.contains(w));
    let url_with_credentials = value.split_once("://").is_some_and(|(_, rest)| {
        rest.split('/')
            .next()
            .is_some_and(|auth| auth.contains('@'))
    });
    secret_name || url_with_credentials
}

/// The plan's config vars as they are before the cutover: the values
/// (`None` = unset) for [`Journal::record_config_before`](super::Journal::record_config_before),
/// which keeps them out of the journal, and the names whose value looks
/// secret and is not kept at all.
pub async fn config_before(
    heroku: &Client,
    app: &str,
    names: impl IntoIterator<Item = &String>,
) -> Result<(BTreeMap<String, Option<String>>, Vec<String>), HerokuError> {
    let vars = heroku.config_vars(app).await?;
    let mut journaled = BTreeMap::new();
    let mut withheld = Vec::new();
    for name in names {
        match vars.get(name) {
            None => {
                journaled.insert(name.clone(), None);
            }
            Some(v) if looks_secret(name, v.expose_secret()) => withheld.push(name.clone()),
            Some(v) => {
                journaled.insert(name.clone(), Some(v.expose_secret().to_string()));
            }
        }
    }
    Ok((journaled, withheld))
}

/// Step: attach `addon` to `app` under `alias`, unless it already is.
pub async fn attach_backup(
    heroku: &Client,
    app: &str,
    addon: &str,
    alias: &str,
) -> Result<String, CutoverError> {
    let attachments = heroku.attachments(app).await?;
    if let Some(existing) = attachments.iter().find(|a| a.name == alias) {
        if existing.addon.name == addon || existing.addon.id == addon {
            return Ok(format!("{addon} already attached as {alias}"));
        }
        return Err(CutoverError::AppChanged {
            app: app.to_string(),
            message: format!(
                "{alias} is attached to {}, not {addon}; choose another cutover.backup_alias",
                existing.addon.name
            ),
        });
    }
    heroku.attach(app, addon, Some(alias), true).await?;
    Ok(format!("attached {addon} as {alias} ({alias}_URL)"))
}

/// Step: detach the `DATABASE` attachment if it still points at `addon`.
pub async fn detach_database(
    heroku: &Client,
    app: &str,
    addon: &str,
) -> Result<String, CutoverError> {
    let attachments = heroku.attachments(app).await?;
    match attachments
        .iter()
        .find(|a| a.name == "DATABASE" && a.namespace.is_none())
    {
        Some(a) if a.addon.name == addon || a.addon.id == addon => {
            heroku.detach(app, "DATABASE").await?;
            Ok(format!("detached DATABASE from {addon}"))
        }
        Some(a) => Err(CutoverError::AppChanged {
            app: app.to_string(),
            message: format!(
                "DATABASE is attached to {}, not to {addon} as when the migration started; \
                 someone changed the app during the window",
                a.addon.name
            ),
        }),
        None => Ok("DATABASE was already detached".to_string()),
    }
}

/// Step: set `DATABASE_URL` to `app_url` and the plan's config vars.
///
/// `app_url` is the target's URL built for the app
/// ([`DatabaseUrl::for_app`]), never the operator's: that one may name
/// files (`sslrootcert=/home/...`) that the dynos do not have.
pub async fn set_config(
    heroku: &Client,
    app: &str,
    app_url: &DatabaseUrl,
    vars: &BTreeMap<String, String>,
) -> Result<String, HerokuError> {
    let mut set: Vec<(String, SecretString)> = vec![(
        DATABASE_URL.to_string(),
        SecretString::from(app_url.expose_url()),
    )];
    set.extend(
        vars.iter()
            .map(|(k, v)| (k.clone(), SecretString::from(v.clone()))),
    );
    let names: Vec<String> = set.iter().map(|(k, _)| k.clone()).collect();
    heroku.set_config_vars(app, set).await?;
    Ok(format!("set {}", names.join(", ")))
}

/// Step: read the config back; every name whose value is not what was
/// set (`DATABASE_URL` is compared with `app_url`, the URL built for the app).
pub async fn read_back(
    heroku: &Client,
    app: &str,
    app_url: &DatabaseUrl,
    vars: &BTreeMap<String, String>,
) -> Result<Vec<String>, HerokuError> {
    let now = heroku.config_vars(app).await?;
    let mut wrong = Vec::new();
    let db_ok = now
        .get(DATABASE_URL)
        .and_then(|v| v.expose_secret().parse::<DatabaseUrl>().ok())
        .is_some_and(|u| &u == app_url);
    if !db_ok {
        wrong.push(DATABASE_URL.to_string());
    }
    for (k, v) in vars {
        if now
            .get(k)
            .map(|x| x.expose_secret() != v.as_str())
            .unwrap_or(true)
        {
            wrong.push(k.clone());
        }
    }
    Ok(wrong)
}

/// Rollback: the old add-on becomes `DATABASE` again (`heroku pg:promote`),
/// the plan's config vars get their old values back, and the backup alias
/// herokurds added is removed when the add-on did not have it before.
pub async fn undo(
    heroku: &Client,
    app: &str,
    old_addon: &str,
    backup_alias: &str,
    old_attachments: &[String],
    config_before: &BTreeMap<String, Option<String>>,
) -> Result<Vec<String>, HerokuError> {
    let mut done = Vec::new();
    let outcome = heroku.promote(app, old_addon).await?;
    done.push(if outcome.already_promoted {
        format!("{old_addon} already was DATABASE")
    } else {
        format!("promoted {old_addon} to DATABASE (DATABASE_URL restored)")
    });
    let restore: Vec<(String, SecretString)> = config_before
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref()
                .map(|v| (k.clone(), SecretString::from(v.clone())))
        })
        .collect();
    if !restore.is_empty() {
        let names: Vec<String> = restore.iter().map(|(k, _)| k.clone()).collect();
        heroku.set_config_vars(app, restore).await?;
        done.push(format!("restored {}", names.join(", ")));
    }
    let unset: Vec<String> = config_before
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k.clone())
        .collect();
    if !unset.is_empty() {
        let current = heroku.config_vars(app).await?;
        let present: Vec<String> = unset
            .into_iter()
            .filter(|k| current.contains_key(k))
            .collect();
        if !present.is_empty() {
            heroku.unset_config_vars(app, present.clone()).await?;
            done.push(format!("unset {}", present.join(", ")));
        }
    }
    if !old_attachments.iter().any(|a| a == backup_alias) {
        let attachments = heroku.attachments(app).await?;
        let ours = attachments
            .iter()
            .any(|a| a.name == backup_alias && a.addon.name == old_addon);
        if ours {
            heroku.detach(app, backup_alias).await?;
            done.push(format!("detached the backup alias {backup_alias}"));
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::looks_secret;

    #[test]
    fn secret_looking_values_stay_out_of_the_journal() {
        assert!(looks_secret("SECRET_KEY", "abc"));
        assert!(looks_secret("AWS_ACCESS_KEY_ID", "AKIA"));
        assert!(looks_secret("STRIPE_TOKEN", "x"));
        assert!(looks_secret("REDIS_URL", "redis://h:pw@host:6379"));
        assert!(!looks_secret(
            "AWS_STORAGE_BUCKET_NAME",
            "ol-micromasters-app-ci"
        ));
        assert!(!looks_secret("CDN_URL", "https://cdn.example.com/static"));
    }
}
