//! The Platform API resources the client reads, as typed values.
//!
//! Only the fields herokurds uses are modelled; the rest of each schema
//! object is ignored when reading. Timestamps are optional so that an
//! answer missing one still reads. Config var values are secrets:
//! [`ConfigVars`] keeps them in [`SecretString`]s and its `Debug` shows
//! names only.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The add-on service name of Heroku Postgres.
pub const POSTGRES_SERVICE: &str = "heroku-postgresql";
/// The attachment name that provides `DATABASE_URL`.
pub const DATABASE: &str = "DATABASE";
/// The attachment name of Heroku Postgres' connection pooler.
pub const DATABASE_CONNECTION_POOL: &str = "DATABASE_CONNECTION_POOL";
/// The namespace of Heroku Postgres' connection pooler attachment.
pub const POOLER_NAMESPACE: &str = "connection-pooling:default";

/// An `{id, name}` reference to another resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedRef {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
}

/// An app (`GET /apps/{app}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct App {
    /// UUID.
    pub id: String,
    /// Name, e.g. `micromasters-ci`.
    pub name: String,
    /// Whether maintenance mode is on (web requests get a maintenance page).
    pub maintenance: bool,
    /// The app's web address.
    #[serde(default)]
    pub web_url: Option<String>,
    /// When the app was created.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// When the app was last changed.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    /// When the app was last released.
    #[serde(default)]
    pub released_at: Option<DateTime<Utc>>,
}

/// The account behind the token (`GET /account`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Account {
    /// UUID.
    pub id: String,
    /// Email address.
    pub email: String,
}

/// An add-on (`GET /apps/{app}/addons`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Addon {
    /// UUID.
    pub id: String,
    /// Globally unique name, e.g. `postgresql-rigid-71273`.
    pub name: String,
    /// The service, e.g. `heroku-postgresql`.
    pub addon_service: NamedRef,
    /// The plan, e.g. `heroku-postgresql:standard-0`.
    pub plan: NamedRef,
    /// The billing app, which owns the add-on.
    pub app: NamedRef,
    /// Names of the config vars it gives its billing app.
    #[serde(default)]
    pub config_vars: Vec<String>,
    /// `provisioning`, `provisioned` or `deprovisioned`.
    #[serde(default)]
    pub state: Option<String>,
    /// When it was created.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// When it last changed.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

impl Addon {
    /// True for a Heroku Postgres database.
    pub fn is_postgres(&self) -> bool {
        self.addon_service.name == POSTGRES_SERVICE
    }
}

/// The add-on an attachment points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddonRef {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Its billing app.
    #[serde(default)]
    pub app: Option<NamedRef>,
}

/// An add-on attachment: an add-on made available to an app under a name,
/// which sets the config var `NAME_URL` on that app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Attachment {
    /// UUID.
    pub id: String,
    /// Name, e.g. `DATABASE` or `HEROKU_POSTGRESQL_YELLOW`.
    pub name: String,
    /// Namespace (`connection-pooling:default`, `credential:...`), if any.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The add-on.
    pub addon: AddonRef,
    /// The app it is attached to.
    pub app: NamedRef,
    /// When it was created.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// When it last changed.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

impl Attachment {
    /// The config var this attachment provides: `NAME_URL`.
    pub fn config_var(&self) -> String {
        format!("{}_URL", self.name)
    }
}

/// A release (`GET /apps/{app}/releases`): every config change, attach and
/// detach makes one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Release {
    /// UUID.
    pub id: String,
    /// Version number, `v` in `v42`.
    pub version: u64,
    /// What changed, e.g. `Set DATABASE_URL config vars`.
    pub description: String,
    /// `pending`, `succeeded`, `failed` or `expired`.
    pub status: String,
    /// Whether this is the app's current release.
    #[serde(default)]
    pub current: bool,
    /// When it was made.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
}

/// One process type of an app's formation (`GET /apps/{app}/formation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Formation {
    /// UUID.
    pub id: String,
    /// Process type: `web`, `worker`, `clock`...
    #[serde(rename = "type")]
    pub process_type: String,
    /// Dynos running.
    pub quantity: u32,
    /// Dyno size, e.g. `Basic`.
    #[serde(default)]
    pub size: String,
    /// The command it runs.
    #[serde(default)]
    pub command: String,
}

/// A Heroku Postgres add-on of an app with every attachment of it, on any app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PostgresAddon {
    /// The add-on.
    pub addon: Addon,
    /// All its attachments, sorted by app then name.
    pub attachments: Vec<Attachment>,
}

impl PostgresAddon {
    /// Names of its attachments to `app`, e.g. `["DATABASE", "HEROKU_POSTGRESQL_YELLOW"]`.
    pub fn attachment_names(&self, app: &str) -> Vec<&str> {
        self.attachments
            .iter()
            .filter(|a| a.app.name == app || a.app.id == app)
            .map(|a| a.name.as_str())
            .collect()
    }

    /// True when it is attached to `app` as `DATABASE` (it is `DATABASE_URL`).
    pub fn is_database(&self, app: &str) -> bool {
        self.attachment_names(app).contains(&DATABASE)
    }
}

/// What [`Client::promote`](super::Client::promote) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PromoteOutcome {
    /// The app.
    pub app: String,
    /// The add-on now attached as `DATABASE`.
    pub addon: String,
    /// The add-on that was `DATABASE` before, if another one was.
    pub previous: Option<String>,
    /// The backup attachment made for the previous add-on because it had no
    /// other attachment (Heroku picks its name), if one was made.
    pub backup_attachment: Option<String>,
    /// An attachment the previous add-on already had besides `DATABASE`.
    pub existing_alias: Option<String>,
    /// Whether a `DATABASE_CONNECTION_POOL` attachment was re-pointed.
    pub repointed_pooler: bool,
    /// True when the add-on already was `DATABASE` and nothing changed.
    pub already_promoted: bool,
}

/// An app's config vars. Values are secrets: `Debug` lists names only.
#[derive(Clone, Default)]
pub struct ConfigVars(BTreeMap<String, SecretString>);

impl ConfigVars {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&SecretString> {
        self.0.get(key)
    }

    /// True when `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Sets `key`.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<SecretString>) {
        self.0.insert(key.into(), value.into());
    }

    /// Names, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Names and values, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SecretString)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `key` is set to exactly `value`.
    pub fn has_value(&self, key: &str, value: &str) -> bool {
        self.get(key).is_some_and(|v| v.expose_secret() == value)
    }
}

impl fmt::Debug for ConfigVars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl<'de> Deserialize<'de> for ConfigVars {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map: BTreeMap<String, Option<String>> = BTreeMap::deserialize(d)?;
        Ok(ConfigVars(
            map.into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, SecretString::from(v))))
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_vars_debug_shows_names_only() {
        let vars: ConfigVars =
            serde_json::from_str(r#"{"DATABASE_URL":"postgres://u:hunter2@h/db","X":"1"}"#)
                .unwrap();
        let dbg = format!("{vars:?}");
        assert!(
            dbg.contains("DATABASE_URL") && !dbg.contains("hunter2"),
            "{dbg}"
        );
        assert!(vars.has_value("X", "1"));
    }

    #[test]
    fn attachment_provides_name_url() {
        let a: Attachment = serde_json::from_value(serde_json::json!({
            "id": "1", "name": "HEROKU_POSTGRESQL_YELLOW", "namespace": null,
            "addon": {"id": "2", "name": "postgresql-rigid-71273", "app": {"id": "3", "name": "a"}},
            "app": {"id": "3", "name": "a"}, "created_at": "2024-01-02T03:04:05Z"
        }))
        .unwrap();
        assert_eq!(a.config_var(), "HEROKU_POSTGRESQL_YELLOW_URL");
        assert!(a.created_at.is_some());
    }
}
