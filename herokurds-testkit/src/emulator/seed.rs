//! The emulator's starting state: the JSON file `herokurds-heroku-emulator
//! --state FILE` reads, or the same built in code.
//!
//! ```json
//! {"tokens": ["tok"],
//!  "apps": [{"name": "micromasters-ci", "maintenance": false,
//!            "config_vars": {"SECRET_KEY": "x"},
//!            "formation": {"web": 1, "worker": 1},
//!            "addons": [{"name": "postgresql-rigid-71273",
//!                        "service": "heroku-postgresql",
//!                        "plan": "heroku-postgresql:mini",
//!                        "url": "postgres://u:p@host:5432/db",
//!                        "attachments": ["DATABASE", "HEROKU_POSTGRESQL_YELLOW"]}]}]}
//! ```
//! An app lists the add-ons it bills for. An attachment is a name (to the
//! add-on's own app) or `{"name": ..., "app": ..., "namespace": ...}` for an
//! attachment to another app or in a namespace. Ids, timestamps and the
//! billing app are filled in by the emulator. `service` defaults to
//! `heroku-postgresql`, `plan` to `<service>:mini`, `url` to a made-up
//! `postgres://` URL; `formation` defaults to `{"web": 1}`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::EmulatorError;

/// The emulator's starting state. `Debug` hides tokens and config values.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// API tokens the emulator accepts (as Bearer tokens or Basic passwords).
    #[serde(default)]
    pub tokens: Vec<String>,
    /// The account's email (default `emulator@herokurds.invalid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The apps.
    #[serde(default)]
    pub apps: Vec<SeedApp>,
}

/// An app of a [`Seed`].
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedApp {
    /// Name.
    pub name: String,
    /// Maintenance mode.
    #[serde(default)]
    pub maintenance: bool,
    /// Ordinary config vars (attachments add their `NAME_URL`).
    #[serde(default)]
    pub config_vars: BTreeMap<String, String>,
    /// Add-ons billed to this app.
    #[serde(default)]
    pub addons: Vec<SeedAddon>,
    /// Process types and dyno counts (default `{"web": 1}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formation: Option<BTreeMap<String, u32>>,
}

/// An add-on of a [`SeedApp`].
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedAddon {
    /// Globally unique name, e.g. `postgresql-rigid-71273`.
    pub name: String,
    /// Service (default `heroku-postgresql`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Plan (default `<service>:mini`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// The URL its attachments provide as `NAME_URL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Its attachments.
    #[serde(default)]
    pub attachments: Vec<SeedAttachment>,
}

/// An attachment of a [`SeedAddon`]: a name, or a name with an app and namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SeedAttachment {
    /// Attached to the add-on's own app under this name.
    Name(String),
    /// Attached to `app` (default: the add-on's own) in `namespace`.
    Full {
        /// Attachment name.
        name: String,
        /// The app it is attached to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        app: Option<String>,
        /// Namespace, e.g. `connection-pooling:default`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
    },
}

impl SeedAttachment {
    /// The attachment's name.
    pub fn name(&self) -> &str {
        match self {
            SeedAttachment::Name(n) | SeedAttachment::Full { name: n, .. } => n,
        }
    }
}

impl Seed {
    /// An empty seed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the JSON state file format.
    pub fn from_json(text: &str) -> Result<Self, EmulatorError> {
        serde_json::from_str(text)
            .map_err(|e| EmulatorError::Seed(format!("invalid state JSON: {e}")))
    }

    /// Reads a state file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, EmulatorError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EmulatorError::Seed(format!("cannot read {}: {e}", path.display())))?;
        Self::from_json(&text).map_err(|e| EmulatorError::Seed(format!("{}: {e}", path.display())))
    }

    /// The JSON state file format (tokens and config values included).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Adds an accepted token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.tokens.push(token.into());
        self
    }

    /// Adds an app.
    pub fn app(mut self, app: SeedApp) -> Self {
        self.apps.push(app);
        self
    }
}

impl SeedApp {
    /// An app with no config vars, add-ons or maintenance.
    pub fn new(name: impl Into<String>) -> Self {
        SeedApp {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Sets a config var.
    pub fn config_var(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config_vars.insert(key.into(), value.into());
        self
    }

    /// Sets maintenance mode.
    pub fn maintenance(mut self, on: bool) -> Self {
        self.maintenance = on;
        self
    }

    /// Adds an add-on billed to this app.
    pub fn addon(mut self, addon: SeedAddon) -> Self {
        self.addons.push(addon);
        self
    }

    /// Sets the dyno count of a process type.
    pub fn dynos(mut self, process_type: impl Into<String>, quantity: u32) -> Self {
        self.formation
            .get_or_insert_with(BTreeMap::new)
            .insert(process_type.into(), quantity);
        self
    }
}

impl SeedAddon {
    /// A Heroku Postgres add-on (`heroku-postgresql:mini`) with this URL.
    pub fn postgres(name: impl Into<String>, url: impl Into<String>) -> Self {
        SeedAddon {
            name: name.into(),
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// Sets the service and plan.
    pub fn service(mut self, service: impl Into<String>, plan: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self.plan = Some(plan.into());
        self
    }

    /// Attaches it to its own app under `name`.
    pub fn attach(mut self, name: impl Into<String>) -> Self {
        self.attachments.push(SeedAttachment::Name(name.into()));
        self
    }

    /// Attaches it to `app` under `name`, optionally in a namespace.
    pub fn attach_to(
        mut self,
        app: impl Into<String>,
        name: impl Into<String>,
        namespace: Option<&str>,
    ) -> Self {
        self.attachments.push(SeedAttachment::Full {
            name: name.into(),
            app: Some(app.into()),
            namespace: namespace.map(str::to_owned),
        });
        self
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Seed")
            .field("tokens", &format_args!("[{} hidden]", self.tokens.len()))
            .field("apps", &self.apps)
            .finish()
    }
}

impl fmt::Debug for SeedApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeedApp")
            .field("name", &self.name)
            .field("maintenance", &self.maintenance)
            .field("config_vars", &self.config_vars.keys().collect::<Vec<_>>())
            .field("addons", &self.addons)
            .field("formation", &self.formation)
            .finish()
    }
}

impl fmt::Debug for SeedAddon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeedAddon")
            .field("name", &self.name)
            .field("service", &self.service)
            .field("plan", &self.plan)
            .field("attachments", &self.attachments)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_issue_example() {
        let seed = Seed::from_json(
            r#"{"tokens": ["tok"], "apps": [{"name": "micromasters-ci", "maintenance": false, "config_vars": {"SECRET_KEY": "x"}, "addons": [{"name": "postgresql-rigid-71273", "service": "heroku-postgresql", "plan": "heroku-postgresql:mini", "url": "postgres://u:p@host:5432/db", "attachments": ["DATABASE", "HEROKU_POSTGRESQL_YELLOW"]}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            seed.apps[0].addons[0].attachments[1].name(),
            "HEROKU_POSTGRESQL_YELLOW"
        );
        let dbg = format!("{seed:?}");
        assert!(!dbg.contains("tok\"") && !dbg.contains("u:p@"), "{dbg}");
    }

    #[test]
    fn typos_are_refused() {
        let e = Seed::from_json(r#"{"apps": [{"name": "a", "config_var": {}}]}"#).unwrap_err();
        assert!(e.to_string().contains("config_var"), "{e}");
    }
}
