//! The emulator's state and the rules of the Platform API over it, with no
//! HTTP: each operation takes the request's identities and JSON body and
//! answers a JSON value or an [`ApiError`] with Heroku's id and message.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::seed::{Seed, SeedAddon, SeedApp, SeedAttachment};
use super::EmulatorError;
use herokurds_core::heroku::POSTGRES_SERVICE;

/// Colours Heroku uses for `HEROKU_POSTGRESQL_<COLOUR>` attachment names.
const COLOURS: &[&str] = &[
    "AMBER",
    "AQUA",
    "BLACK",
    "BLUE",
    "BRONZE",
    "BROWN",
    "CHARCOAL",
    "CHARTREUSE",
    "COBALT",
    "COPPER",
    "CRIMSON",
    "CYAN",
    "GOLD",
    "GRAY",
    "GREEN",
    "IVORY",
    "JADE",
    "LIME",
    "MAGENTA",
    "MAROON",
    "MAUVE",
    "NAVY",
    "OLIVE",
    "ONYX",
    "ORANGE",
    "PINK",
    "PUCE",
    "PURPLE",
    "RED",
    "ROSE",
    "SILVER",
    "TEAL",
    "WHITE",
    "YELLOW",
];

/// An error answer: HTTP status, Heroku's error id and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub id: &'static str,
    pub message: String,
    pub resource: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: u16, id: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            id,
            message: message.into(),
            resource: None,
        }
    }
    fn not_found(resource: &'static str, message: &str) -> Self {
        ApiError {
            resource: Some(resource),
            ..ApiError::new(404, "not_found", message)
        }
    }
    pub fn app_not_found() -> Self {
        Self::not_found("app", "Couldn't find that app.")
    }
    pub fn addon_not_found() -> Self {
        Self::not_found("add_on", "Couldn't find that add on.")
    }
    pub fn attachment_not_found() -> Self {
        Self::not_found("add_on attachment", "Couldn't find that add on attachment.")
    }
    fn release_not_found() -> Self {
        Self::not_found("release", "Couldn't find that release.")
    }
    fn formation_not_found() -> Self {
        Self::not_found("formation", "Couldn't find that formation.")
    }
    pub fn endpoint() -> Self {
        ApiError::new(
            404,
            "not_found",
            "The requested API endpoint was not found. Are you using the right HTTP verb (i.e. `GET` vs. `POST`), and did you specify your intended version with the `Accept` header?",
        )
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(422, "invalid_params", message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "bad_request", message)
    }
    fn confirmation(message: impl Into<String>) -> Self {
        ApiError::new(423, "confirmation_required", message)
    }
    pub fn range(message: impl Into<String>) -> Self {
        ApiError::new(416, "requested_range_not_satisfiable", message)
    }
    /// The JSON error body.
    pub fn body(&self) -> Value {
        let mut body = json!({ "id": self.id, "message": self.message });
        if let Some(resource) = self.resource {
            body["resource"] = json!(resource);
        }
        body
    }
}

type Res<T> = Result<T, ApiError>;

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

struct AppRec {
    id: Uuid,
    name: String,
    maintenance: bool,
    vars: BTreeMap<String, String>,
    formation: Vec<FormationRec>,
    releases: Vec<ReleaseRec>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

struct AddonRec {
    id: Uuid,
    name: String,
    service: String,
    plan: String,
    billing_app: Uuid,
    url: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

struct AttRec {
    id: Uuid,
    name: String,
    namespace: Option<String>,
    addon: Uuid,
    app: Uuid,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

struct ReleaseRec {
    id: Uuid,
    version: u64,
    description: String,
    created_at: DateTime<Utc>,
}

struct FormationRec {
    id: Uuid,
    ptype: String,
    quantity: u32,
    size: String,
    command: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// One attachment, as the in-process inspection API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentView {
    /// Attachment name.
    pub name: String,
    /// Add-on name.
    pub addon: String,
    /// Namespace.
    pub namespace: Option<String>,
}

/// Everything the emulator knows.
pub(crate) struct World {
    pub tokens: Vec<String>,
    account_id: Uuid,
    email: String,
    created_at: DateTime<Utc>,
    apps: Vec<AppRec>,
    addons: Vec<AddonRec>,
    attachments: Vec<AttRec>,
    /// Stable ids of services, plans, stacks, regions.
    ids: BTreeMap<String, Uuid>,
}

/// `{"name": x}`, `{"id": x}` or `"x"`.
fn identity(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o
            .get("id")
            .or_else(|| o.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

fn valid_var_name(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_attachment_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn plan_cents(plan: &str) -> u64 {
    match plan.rsplit(':').next().unwrap_or("") {
        "mini" | "essential-0" => 500,
        "basic" | "essential-1" => 900,
        "essential-2" => 2000,
        "standard-0" => 5000,
        "standard-2" => 20000,
        "premium-0" => 20000,
        _ => 0,
    }
}

impl World {
    /// Builds the state a seed describes; refuses inconsistent seeds.
    pub fn from_seed(seed: &Seed) -> Result<World, EmulatorError> {
        let now = Utc::now();
        let mut w = World {
            tokens: seed.tokens.clone(),
            account_id: Uuid::new_v4(),
            email: seed
                .email
                .clone()
                .unwrap_or_else(|| "emulator@herokurds.invalid".into()),
            created_at: now,
            apps: Vec::new(),
            addons: Vec::new(),
            attachments: Vec::new(),
            ids: BTreeMap::new(),
        };
        for key in [
            "stack:heroku-24",
            "region:us",
            "generation:cedar",
            "size:Basic",
        ] {
            w.stable_id(key);
        }
        let bad = |m: String| EmulatorError::Seed(m);
        for app in &seed.apps {
            if app.name.is_empty() {
                return Err(bad("an app has no name".into()));
            }
            if w.apps.iter().any(|a| a.name == app.name) {
                return Err(bad(format!("app {} is listed twice", app.name)));
            }
            if let Some(key) = app.config_vars.keys().find(|k| !valid_var_name(k)) {
                return Err(bad(format!(
                    "app {}: config var name {key:?} is not ^\\w+$",
                    app.name
                )));
            }
            let formation = app
                .formation
                .clone()
                .unwrap_or_else(|| BTreeMap::from([("web".to_owned(), 1)]));
            let mut rec = AppRec {
                id: Uuid::new_v4(),
                name: app.name.clone(),
                maintenance: app.maintenance,
                vars: app.config_vars.clone(),
                formation: formation
                    .into_iter()
                    .map(|(ptype, quantity)| FormationRec {
                        id: Uuid::new_v4(),
                        command: format!("bin/{ptype}"),
                        ptype,
                        quantity,
                        size: "Basic".into(),
                        created_at: now,
                        updated_at: now,
                    })
                    .collect(),
                releases: Vec::new(),
                created_at: now,
                updated_at: now,
            };
            push_release(&mut rec, "Initial release".into());
            if !app.config_vars.is_empty() {
                let keys: Vec<&str> = app.config_vars.keys().map(String::as_str).collect();
                push_release(&mut rec, format!("Set {} config vars", keys.join(", ")));
            }
            w.apps.push(rec);
        }
        for app in &seed.apps {
            let billing = w
                .apps
                .iter()
                .find(|a| a.name == app.name)
                .map(|a| a.id)
                .unwrap_or_default();
            for addon in &app.addons {
                w.seed_addon(billing, &app.name, addon)?;
            }
        }
        Ok(w)
    }

    fn seed_addon(
        &mut self,
        billing: Uuid,
        app_name: &str,
        addon: &SeedAddon,
    ) -> Result<(), EmulatorError> {
        let bad = |m: String| EmulatorError::Seed(m);
        if addon.name.is_empty() {
            return Err(bad(format!("app {app_name}: an add-on has no name")));
        }
        if self.addons.iter().any(|a| a.name == addon.name) {
            return Err(bad(format!("add-on {} is listed twice", addon.name)));
        }
        let service = addon
            .service
            .clone()
            .unwrap_or_else(|| POSTGRES_SERVICE.into());
        let plan = addon
            .plan
            .clone()
            .unwrap_or_else(|| format!("{service}:mini"));
        let now = Utc::now();
        let rec = AddonRec {
            id: Uuid::new_v4(),
            name: addon.name.clone(),
            url: addon.url.clone().unwrap_or_else(|| {
                format!(
                    "postgres://u{0}:p{0}@{0}.emulator.invalid:5432/d{0}",
                    addon.name.replace('-', "")
                )
            }),
            service: service.clone(),
            plan: plan.clone(),
            billing_app: billing,
            created_at: now,
            updated_at: now,
        };
        self.stable_id(&format!("service:{service}"));
        self.stable_id(&format!("plan:{plan}"));
        let addon_id = rec.id;
        let addon_name = rec.name.clone();
        self.addons.push(rec);
        for att in &addon.attachments {
            let (name, app, namespace) = match att {
                SeedAttachment::Name(n) => (n.clone(), None, None),
                SeedAttachment::Full {
                    name,
                    app,
                    namespace,
                } => (name.clone(), app.clone(), namespace.clone()),
            };
            let target = app.unwrap_or_else(|| app_name.to_owned());
            let Some(idx) = self.apps.iter().position(|a| a.name == target) else {
                return Err(bad(format!(
                    "add-on {addon_name}: attachment {name} names unknown app {target}"
                )));
            };
            if !valid_attachment_name(&name) {
                return Err(bad(format!(
                    "add-on {addon_name}: attachment name {name:?} must start with a letter and hold only uppercase letters, digits and underscores"
                )));
            }
            let app_id = self.apps[idx].id;
            if self
                .attachments
                .iter()
                .any(|a| a.app == app_id && a.name == name)
            {
                return Err(bad(format!(
                    "app {target}: two attachments are named {name}"
                )));
            }
            if self.apps[idx].vars.contains_key(&format!("{name}_URL")) {
                return Err(bad(format!(
                    "app {target}: attachment {name} provides {name}_URL, which is also an ordinary config var"
                )));
            }
            self.attachments.push(AttRec {
                id: Uuid::new_v4(),
                name: name.clone(),
                namespace,
                addon: addon_id,
                app: app_id,
                created_at: now,
                updated_at: now,
            });
            push_release(
                &mut self.apps[idx],
                format!("Attach {name} (@ref:{addon_name})"),
            );
        }
        Ok(())
    }

    fn stable_id(&mut self, key: &str) -> Uuid {
        *self.ids.entry(key.to_owned()).or_insert_with(Uuid::new_v4)
    }

    fn id_of(&self, key: &str) -> String {
        self.ids.get(key).copied().unwrap_or_default().to_string()
    }

    /// The state as a seed (ids and timestamps are not kept).
    pub fn to_seed(&self) -> Seed {
        let mut seed = Seed {
            tokens: self.tokens.clone(),
            email: Some(self.email.clone()),
            apps: Vec::new(),
        };
        for app in &self.apps {
            let addons = self
                .addons
                .iter()
                .filter(|a| a.billing_app == app.id)
                .map(|addon| SeedAddon {
                    name: addon.name.clone(),
                    service: Some(addon.service.clone()),
                    plan: Some(addon.plan.clone()),
                    url: Some(addon.url.clone()),
                    attachments: self
                        .attachments
                        .iter()
                        .filter(|t| t.addon == addon.id)
                        .map(|t| {
                            if t.app == app.id && t.namespace.is_none() {
                                SeedAttachment::Name(t.name.clone())
                            } else {
                                SeedAttachment::Full {
                                    name: t.name.clone(),
                                    app: Some(self.app_by_id(t.app).name.clone()),
                                    namespace: t.namespace.clone(),
                                }
                            }
                        })
                        .collect(),
                })
                .collect();
            seed.apps.push(SeedApp {
                name: app.name.clone(),
                maintenance: app.maintenance,
                config_vars: app.vars.clone(),
                addons,
                formation: Some(
                    app.formation
                        .iter()
                        .map(|f| (f.ptype.clone(), f.quantity))
                        .collect(),
                ),
            });
        }
        seed
    }

    // ---- look-ups ---------------------------------------------------------

    fn app_idx(&self, ident: &str) -> Res<usize> {
        self.apps
            .iter()
            .position(|a| a.name == ident || a.id.to_string() == ident)
            .ok_or_else(ApiError::app_not_found)
    }

    fn app_rec(&self, ident: &str) -> Res<&AppRec> {
        Ok(&self.apps[self.app_idx(ident)?])
    }

    fn addon_idx(&self, ident: &str) -> Res<usize> {
        self.addons
            .iter()
            .position(|a| a.name == ident || a.id.to_string() == ident)
            .ok_or_else(ApiError::addon_not_found)
    }

    fn app_by_id(&self, id: Uuid) -> &AppRec {
        self.apps
            .iter()
            .find(|a| a.id == id)
            .expect("attachment app exists")
    }

    fn addon_by_id(&self, id: Uuid) -> &AddonRec {
        self.addons
            .iter()
            .find(|a| a.id == id)
            .expect("attachment add-on exists")
    }

    fn app_mut(&mut self, id: Uuid) -> &mut AppRec {
        self.apps
            .iter_mut()
            .find(|a| a.id == id)
            .expect("app exists")
    }

    /// All config vars of an app: its own and `NAME_URL` of each attachment.
    fn vars_of(&self, app: &AppRec) -> BTreeMap<String, String> {
        let mut vars = app.vars.clone();
        for att in self.attachments.iter().filter(|t| t.app == app.id) {
            vars.insert(
                format!("{}_URL", att.name),
                self.addon_by_id(att.addon).url.clone(),
            );
        }
        vars
    }

    // ---- rendering --------------------------------------------------------

    fn named(&self, id: Uuid, name: &str) -> Value {
        json!({ "id": id.to_string(), "name": name })
    }

    fn app_ref(&self, id: Uuid) -> Value {
        let app = self.app_by_id(id);
        self.named(app.id, &app.name)
    }

    fn app_json(&self, app: &AppRec) -> Value {
        let released_at = app.releases.last().map(|r| ts(r.created_at));
        json!({
            "acm": false,
            "archived_at": null,
            "buildpack_provided_description": null,
            "build_stack": { "id": self.id_of("stack:heroku-24"), "name": "heroku-24" },
            "created_at": ts(app.created_at),
            "generation": { "id": self.id_of("generation:cedar"), "name": "cedar" },
            "git_url": format!("https://git.heroku.com/{}.git", app.name),
            "id": app.id.to_string(),
            "internal_routing": null,
            "maintenance": app.maintenance,
            "name": app.name,
            "owner": { "email": self.email, "id": self.account_id.to_string() },
            "organization": null,
            "team": null,
            "region": { "id": self.id_of("region:us"), "name": "us" },
            "released_at": released_at,
            "repo_size": null,
            "slug_size": null,
            "space": null,
            "stack": { "id": self.id_of("stack:heroku-24"), "name": "heroku-24" },
            "updated_at": ts(app.updated_at),
            "web_url": format!("https://{}.herokuapp.com/", app.name),
        })
    }

    fn addon_json(&self, addon: &AddonRec, expand: bool) -> Value {
        let billing = self.app_by_id(addon.billing_app);
        let config_vars: Vec<String> = self
            .attachments
            .iter()
            .filter(|t| t.addon == addon.id && t.app == addon.billing_app)
            .map(|t| format!("{}_URL", t.name))
            .collect();
        let cents = plan_cents(&addon.plan);
        let service_id = self.id_of(&format!("service:{}", addon.service));
        let plan_id = self.id_of(&format!("plan:{}", addon.plan));
        let (service, plan) = if expand {
            let human = if addon.service == POSTGRES_SERVICE {
                "Heroku Postgres".to_owned()
            } else {
                addon.service.clone()
            };
            (
                json!({
                    "cli_plugin_name": null, "created_at": ts(self.created_at), "human_name": human,
                    "id": service_id, "name": addon.service, "state": "ga",
                    "supports_multiple_installations": true, "supports_sharing": true,
                    "updated_at": ts(self.created_at),
                }),
                json!({
                    "id": plan_id, "name": addon.plan,
                    "human_name": addon.plan.rsplit(':').next().unwrap_or(""),
                    "price": { "cents": cents, "contract": false, "unit": "month", "metered": false },
                    "state": "public", "default": false,
                }),
            )
        } else {
            (
                json!({ "id": service_id, "name": addon.service }),
                json!({ "id": plan_id, "name": addon.plan }),
            )
        };
        json!({
            "actions": [],
            "addon_service": service,
            "billing_entity": { "id": billing.id.to_string(), "name": billing.name, "type": "app" },
            "app": self.named(billing.id, &billing.name),
            "billed_price": { "cents": cents, "contract": false, "unit": "month" },
            "config_vars": config_vars,
            "created_at": ts(addon.created_at),
            "id": addon.id.to_string(),
            "name": addon.name,
            "plan": plan,
            "provider_id": format!("resource-{}@heroku.com", addon.id.simple()),
            "provision_message": null,
            "state": "provisioned",
            "updated_at": ts(addon.updated_at),
            "web_url": format!("https://data.heroku.com/datastores/{}", addon.id),
        })
    }

    fn attachment_json(&self, att: &AttRec) -> Value {
        let addon = self.addon_by_id(att.addon);
        json!({
            "addon": {
                "id": addon.id.to_string(),
                "name": addon.name,
                "app": self.app_ref(addon.billing_app),
            },
            "app": self.app_ref(att.app),
            "created_at": ts(att.created_at),
            "id": att.id.to_string(),
            "name": att.name,
            "namespace": att.namespace,
            "updated_at": ts(att.updated_at),
            "web_url": format!("https://data.heroku.com/datastores/{}", addon.id),
            "log_input_url": null,
        })
    }

    fn release_json(&self, app: &AppRec, r: &ReleaseRec) -> Value {
        let current = app.releases.last().map(|l| l.id) == Some(r.id);
        let mut plans: Vec<&str> = self
            .attachments
            .iter()
            .filter(|t| t.app == app.id)
            .map(|t| self.addon_by_id(t.addon).plan.as_str())
            .collect();
        plans.sort_unstable();
        plans.dedup();
        json!({
            "addon_plan_names": plans,
            "artifacts": [],
            "app": self.named(app.id, &app.name),
            "created_at": ts(r.created_at),
            "description": r.description,
            "id": r.id.to_string(),
            "updated_at": ts(r.created_at),
            "slug": null,
            "status": "succeeded",
            "user": { "id": self.account_id.to_string(), "email": self.email },
            "version": r.version,
            "current": current,
            "output_stream_url": null,
            "eligible_for_rollback": true,
        })
    }

    fn formation_json(&self, app: &AppRec, f: &FormationRec) -> Value {
        json!({
            "app": self.named(app.id, &app.name),
            "command": f.command,
            "created_at": ts(f.created_at),
            "dyno_size": { "id": self.id_of(&format!("size:{}", f.size)), "name": f.size },
            "id": f.id.to_string(),
            "quantity": f.quantity,
            "size": f.size,
            "type": f.ptype,
            "updated_at": ts(f.updated_at),
        })
    }

    // ---- account and apps -------------------------------------------------

    pub fn account(&self) -> Value {
        json!({
            "allow_tracking": true, "beta": false, "created_at": ts(self.created_at),
            "email": self.email, "federated": false, "id": self.account_id.to_string(),
            "identity_provider": null, "last_login": ts(self.created_at), "name": "Emulated Account",
            "sms_number": null, "suspended_at": null, "delinquent_at": null,
            "two_factor_authentication": false, "updated_at": ts(self.created_at), "verified": true,
            "country_of_residence": null, "default_organization": null, "default_team": null,
        })
    }

    pub fn list_apps(&self) -> Vec<Value> {
        self.apps.iter().map(|a| self.app_json(a)).collect()
    }

    pub fn get_app(&self, app: &str) -> Res<Value> {
        Ok(self.app_json(self.app_rec(app)?))
    }

    /// `PATCH /apps/{app}`: `maintenance` and `name`.
    pub fn patch_app(&mut self, app: &str, body: &Value) -> Res<Value> {
        let idx = self.app_idx(app)?;
        let obj = body
            .as_object()
            .ok_or_else(|| ApiError::bad_request("Request body must be a JSON object."))?;
        let maintenance = match obj.get("maintenance") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(ApiError::invalid("maintenance must be a boolean.")),
        };
        let name = match obj.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(n)) => {
                if n.is_empty() {
                    return Err(ApiError::invalid("Name must not be empty."));
                }
                if self
                    .apps
                    .iter()
                    .enumerate()
                    .any(|(i, a)| i != idx && &a.name == n)
                {
                    return Err(ApiError::invalid("Name is already taken"));
                }
                Some(n.clone())
            }
            Some(_) => return Err(ApiError::invalid("name must be a string.")),
        };
        let rec = &mut self.apps[idx];
        if let Some(m) = maintenance {
            rec.maintenance = m;
        }
        if let Some(n) = name {
            rec.name = n;
        }
        rec.updated_at = Utc::now();
        Ok(self.app_json(&self.apps[idx]))
    }

    // ---- config vars ------------------------------------------------------

    pub fn get_config(&self, app: &str) -> Res<Value> {
        let vars = self.vars_of(self.app_rec(app)?);
        Ok(json!(vars))
    }

    /// `PATCH /apps/{app}/config-vars`: strings set, `null` deletes;
    /// attachment-provided vars cannot be touched.
    pub fn patch_config(&mut self, app: &str, body: &Value) -> Res<Value> {
        let idx = self.app_idx(app)?;
        let obj = body
            .as_object()
            .ok_or_else(|| ApiError::bad_request("Request body must be a JSON object."))?;
        let app_id = self.apps[idx].id;
        let mut changes: Vec<(String, Option<String>)> = Vec::new();
        for (key, value) in obj {
            if !valid_var_name(key) {
                return Err(ApiError::invalid(format!(
                    "Invalid config var name: {key}. Names may contain only letters, digits and underscores."
                )));
            }
            let value = match value {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => {
                    return Err(ApiError::invalid(format!(
                        "Invalid value for config var {key}."
                    )))
                }
            };
            changes.push((key.clone(), value));
        }
        let owned: Vec<&str> = changes
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| {
                self.attachments
                    .iter()
                    .any(|t| t.app == app_id && format!("{}_URL", t.name) == *k)
            })
            .collect();
        if !owned.is_empty() {
            return Err(ApiError::invalid(format!(
                "Cannot overwrite attachment values {}.",
                owned.join(", ")
            )));
        }
        let rec = &mut self.apps[idx];
        let mut set = Vec::new();
        let mut removed = Vec::new();
        for (key, value) in changes {
            match value {
                Some(v) => {
                    rec.vars.insert(key.clone(), v);
                    set.push(key);
                }
                None => {
                    if rec.vars.remove(&key).is_some() {
                        removed.push(key);
                    }
                }
            }
        }
        let mut parts = Vec::new();
        if !set.is_empty() {
            parts.push(format!("Set {} config vars", set.join(", ")));
        }
        if !removed.is_empty() {
            parts.push(format!("Remove {} config vars", removed.join(", ")));
        }
        if !parts.is_empty() {
            push_release(rec, parts.join(", "));
        }
        self.get_config(app)
    }

    // ---- add-ons ----------------------------------------------------------

    /// Add-ons billed to the app or attached to it.
    pub fn list_app_addons(&self, app: &str, expand: bool) -> Res<Vec<Value>> {
        let app_id = self.app_rec(app)?.id;
        Ok(self
            .addons
            .iter()
            .filter(|a| {
                a.billing_app == app_id
                    || self
                        .attachments
                        .iter()
                        .any(|t| t.addon == a.id && t.app == app_id)
            })
            .map(|a| self.addon_json(a, expand))
            .collect())
    }

    pub fn list_addons(&self, expand: bool) -> Vec<Value> {
        self.addons
            .iter()
            .map(|a| self.addon_json(a, expand))
            .collect()
    }

    pub fn get_addon(&self, addon: &str, expand: bool) -> Res<Value> {
        Ok(self.addon_json(&self.addons[self.addon_idx(addon)?], expand))
    }

    /// `GET /apps/{app}/addons/{addon}`: the add-on must belong or be attached to the app.
    pub fn get_app_addon(&self, app: &str, addon: &str, expand: bool) -> Res<Value> {
        let app_id = self.app_rec(app)?.id;
        let a = &self.addons[self.addon_idx(addon)?];
        let related = a.billing_app == app_id
            || self
                .attachments
                .iter()
                .any(|t| t.addon == a.id && t.app == app_id);
        if !related {
            return Err(ApiError::addon_not_found());
        }
        Ok(self.addon_json(a, expand))
    }

    /// `POST /actions/addons/resolve`.
    pub fn resolve_addon(&self, body: &Value) -> Res<Vec<Value>> {
        let ident = body["addon"]
            .as_str()
            .ok_or_else(|| ApiError::invalid("addon is required."))?;
        let app_id = match body["app"].as_str() {
            Some(app) => Some(self.app_rec(app)?.id),
            None => None,
        };
        let service = body["addon_service"].as_str();
        let found: Vec<Value> = self
            .addons
            .iter()
            .filter(|a| {
                a.name == ident || a.id.to_string() == ident || self.attached_as(a, app_id, ident)
            })
            .filter(|a| service.is_none_or(|s| a.service == s))
            .map(|a| self.addon_json(a, false))
            .collect();
        if found.is_empty() {
            return Err(ApiError::addon_not_found());
        }
        Ok(found)
    }

    fn attached_as(&self, addon: &AddonRec, app: Option<Uuid>, name: &str) -> bool {
        self.attachments
            .iter()
            .any(|t| t.addon == addon.id && t.name == name && app.is_none_or(|a| a == t.app))
    }

    // ---- attachments ------------------------------------------------------

    pub fn list_attachments(&self) -> Vec<Value> {
        self.attachments
            .iter()
            .map(|t| self.attachment_json(t))
            .collect()
    }

    pub fn list_app_attachments(&self, app: &str) -> Res<Vec<Value>> {
        let app_id = self.app_rec(app)?.id;
        Ok(self
            .attachments
            .iter()
            .filter(|t| t.app == app_id)
            .map(|t| self.attachment_json(t))
            .collect())
    }

    pub fn list_addon_attachments(&self, addon: &str) -> Res<Vec<Value>> {
        let addon_id = self.addons[self.addon_idx(addon)?].id;
        Ok(self
            .attachments
            .iter()
            .filter(|t| t.addon == addon_id)
            .map(|t| self.attachment_json(t))
            .collect())
    }

    /// `GET /apps/{app}/addon-attachments/{id or name}`.
    pub fn get_app_attachment(&self, app: &str, ident: &str) -> Res<Value> {
        let app_id = self.app_rec(app)?.id;
        self.attachments
            .iter()
            .find(|t| t.app == app_id && (t.name == ident || t.id.to_string() == ident))
            .map(|t| self.attachment_json(t))
            .ok_or_else(ApiError::attachment_not_found)
    }

    /// `GET /addon-attachments/{id}`.
    pub fn get_attachment(&self, id: &str) -> Res<Value> {
        self.attachments
            .iter()
            .find(|t| t.id.to_string() == id)
            .map(|t| self.attachment_json(t))
            .ok_or_else(ApiError::attachment_not_found)
    }

    /// `POST /actions/addon-attachments/resolve`.
    pub fn resolve_attachment(&self, body: &Value) -> Res<Vec<Value>> {
        let ident = body["addon_attachment"]
            .as_str()
            .ok_or_else(|| ApiError::invalid("addon_attachment is required."))?;
        let app_id = match body["app"].as_str() {
            Some(app) => Some(self.app_rec(app)?.id),
            None => None,
        };
        let service = body["addon_service"].as_str();
        let found: Vec<Value> = self
            .attachments
            .iter()
            .filter(|t| app_id.is_none_or(|a| a == t.app))
            .filter(|t| {
                let addon = self.addon_by_id(t.addon);
                (t.name == ident || t.id.to_string() == ident || addon.name == ident)
                    && service.is_none_or(|s| addon.service == s)
            })
            .map(|t| self.attachment_json(t))
            .collect();
        if found.is_empty() {
            return Err(ApiError::attachment_not_found());
        }
        Ok(found)
    }

    /// The name Heroku picks for an unnamed attachment.
    fn default_name(&self, app_id: Uuid, addon: &AddonRec) -> String {
        let app = self.app_by_id(app_id);
        let taken = |n: &str| {
            self.attachments
                .iter()
                .any(|t| t.app == app_id && t.name == n)
                || app.vars.contains_key(&format!("{n}_URL"))
        };
        let base = if addon.service == POSTGRES_SERVICE {
            "HEROKU_POSTGRESQL".to_owned()
        } else {
            addon
                .service
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        if addon.service != POSTGRES_SERVICE && !taken(&base) {
            return base;
        }
        COLOURS
            .iter()
            .map(|c| format!("{base}_{c}"))
            .chain((2..).map(|i| format!("{base}_{i}")))
            .find(|n| !taken(n))
            .expect("an unbounded list has a free name")
    }

    /// Refuses to remove the add-on's last attachment to its billing app.
    fn check_not_last_billing(&self, pos: usize) -> Res<()> {
        let att = &self.attachments[pos];
        let addon = self.addon_by_id(att.addon);
        if att.app != addon.billing_app {
            return Ok(());
        }
        let others = self
            .attachments
            .iter()
            .enumerate()
            .any(|(i, t)| i != pos && t.addon == addon.id && t.app == addon.billing_app);
        if others {
            Ok(())
        } else {
            Err(ApiError::invalid(format!(
                "Cannot destroy last attachment to billing app for resource {}",
                addon.name
            )))
        }
    }

    /// `POST /addon-attachments`.
    pub fn attach(&mut self, body: &Value) -> Res<Value> {
        let obj = body
            .as_object()
            .ok_or_else(|| ApiError::bad_request("Request body must be a JSON object."))?;
        let addon_ident =
            identity(obj.get("addon")).ok_or_else(|| ApiError::invalid("addon is required."))?;
        let app_ident =
            identity(obj.get("app")).ok_or_else(|| ApiError::invalid("app is required."))?;
        let addon_idx = self.addon_idx(&addon_ident)?;
        let app_idx = self.app_idx(&app_ident)?;
        let (addon_id, addon_name) = (
            self.addons[addon_idx].id,
            self.addons[addon_idx].name.clone(),
        );
        let (app_id, app_name) = (self.apps[app_idx].id, self.apps[app_idx].name.clone());
        let namespace = match obj.get("namespace") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ApiError::invalid("namespace must be a string.")),
        };
        let confirmed = obj.get("confirm").and_then(Value::as_str) == Some(app_name.as_str());
        let name = match obj.get("name") {
            None | Some(Value::Null) => self.default_name(app_id, &self.addons[addon_idx]),
            Some(Value::String(n)) if valid_attachment_name(n) => n.clone(),
            Some(_) => {
                return Err(ApiError::invalid(
                    "Name must start with a letter and can only contain uppercase letters, numbers, and underscores.",
                ))
            }
        };
        let var = format!("{name}_URL");
        let existing = self
            .attachments
            .iter()
            .position(|t| t.app == app_id && t.name == name);
        if let Some(pos) = existing {
            let old = &self.attachments[pos];
            if old.addon == addon_id && old.namespace == namespace {
                return Err(ApiError::invalid(format!(
                    "{addon_name} is already attached to {app_name} as {name}."
                )));
            }
            let old_addon = self.addon_by_id(old.addon).name.clone();
            if !confirmed {
                return Err(ApiError::confirmation(format!(
                    "This action would replace the {name} attachment to {old_addon} on {app_name}. To proceed, confirm with the app name ({app_name})."
                )));
            }
            self.check_not_last_billing(pos)?;
            self.attachments.remove(pos);
            push_release(
                self.app_mut(app_id),
                format!("Detach {name} (@ref:{old_addon})"),
            );
        } else if self.apps[app_idx].vars.contains_key(&var) {
            if !confirmed {
                return Err(ApiError::confirmation(format!(
                    "This action would overwrite the {var} config var of {app_name}. To proceed, confirm with the app name ({app_name})."
                )));
            }
            self.apps[app_idx].vars.remove(&var);
        }
        let now = Utc::now();
        let rec = AttRec {
            id: Uuid::new_v4(),
            name: name.clone(),
            namespace,
            addon: addon_id,
            app: app_id,
            created_at: now,
            updated_at: now,
        };
        let out = {
            self.attachments.push(rec);
            self.attachment_json(self.attachments.last().expect("just pushed"))
        };
        push_release(
            self.app_mut(app_id),
            format!("Attach {name} (@ref:{addon_name})"),
        );
        Ok(out)
    }

    /// `DELETE /addon-attachments/{id}`.
    pub fn detach(&mut self, id: &str) -> Res<Value> {
        let pos = self
            .attachments
            .iter()
            .position(|t| t.id.to_string() == id)
            .ok_or_else(ApiError::attachment_not_found)?;
        self.check_not_last_billing(pos)?;
        let out = self.attachment_json(&self.attachments[pos]);
        let att = self.attachments.remove(pos);
        let addon = self.addon_by_id(att.addon).name.clone();
        push_release(
            self.app_mut(att.app),
            format!("Detach {} (@ref:{addon})", att.name),
        );
        Ok(out)
    }

    // ---- releases ---------------------------------------------------------

    pub fn list_releases(&self, app: &str) -> Res<Vec<Value>> {
        let rec = self.app_rec(app)?;
        Ok(rec
            .releases
            .iter()
            .map(|r| self.release_json(rec, r))
            .collect())
    }

    /// `GET /apps/{app}/releases/{id or version}`.
    pub fn get_release(&self, app: &str, ident: &str) -> Res<Value> {
        let rec = self.app_rec(app)?;
        rec.releases
            .iter()
            .find(|r| r.id.to_string() == ident || r.version.to_string() == ident)
            .map(|r| self.release_json(rec, r))
            .ok_or_else(ApiError::release_not_found)
    }

    // ---- formation --------------------------------------------------------

    pub fn list_formation(&self, app: &str) -> Res<Vec<Value>> {
        let rec = self.app_rec(app)?;
        Ok(rec
            .formation
            .iter()
            .map(|f| self.formation_json(rec, f))
            .collect())
    }

    pub fn get_formation(&self, app: &str, ptype: &str) -> Res<Value> {
        let rec = self.app_rec(app)?;
        rec.formation
            .iter()
            .find(|f| f.ptype == ptype || f.id.to_string() == ptype)
            .map(|f| self.formation_json(rec, f))
            .ok_or_else(ApiError::formation_not_found)
    }

    /// `PATCH /apps/{app}/formation` (`{"updates": [...]}`), all or nothing.
    pub fn patch_formation(&mut self, app: &str, body: &Value) -> Res<Vec<Value>> {
        let idx = self.app_idx(app)?;
        let updates = body["updates"]
            .as_array()
            .ok_or_else(|| ApiError::invalid("updates is required and must be an array."))?;
        let mut planned = Vec::new();
        for u in updates {
            let ptype = u["type"]
                .as_str()
                .ok_or_else(|| ApiError::invalid("Each update needs a type."))?;
            let pos = self.apps[idx]
                .formation
                .iter()
                .position(|f| f.ptype == ptype || f.id.to_string() == ptype)
                .ok_or_else(|| ApiError {
                    resource: Some("formation"),
                    ..ApiError::new(
                        404,
                        "not_found",
                        format!("Couldn't find that process type ({ptype})."),
                    )
                })?;
            planned.push((pos, formation_change(u)?));
        }
        let now = Utc::now();
        let rec = &mut self.apps[idx];
        for (pos, (quantity, size)) in &planned {
            let f = &mut rec.formation[*pos];
            if let Some(q) = quantity {
                f.quantity = *q;
            }
            if let Some(s) = size {
                f.size.clone_from(s);
            }
            f.updated_at = now;
        }
        let rec = &self.apps[idx];
        Ok(planned
            .iter()
            .map(|(pos, _)| self.formation_json(rec, &rec.formation[*pos]))
            .collect())
    }

    /// `PATCH /apps/{app}/formation/{type}`.
    pub fn patch_formation_one(&mut self, app: &str, ptype: &str, body: &Value) -> Res<Value> {
        let idx = self.app_idx(app)?;
        let pos = self.apps[idx]
            .formation
            .iter()
            .position(|f| f.ptype == ptype || f.id.to_string() == ptype)
            .ok_or_else(ApiError::formation_not_found)?;
        let (quantity, size) = formation_change(body)?;
        let f = &mut self.apps[idx].formation[pos];
        if let Some(q) = quantity {
            f.quantity = q;
        }
        if let Some(s) = size {
            f.size = s;
        }
        f.updated_at = Utc::now();
        let rec = &self.apps[idx];
        Ok(self.formation_json(rec, &rec.formation[pos]))
    }

    // ---- in-process inspection --------------------------------------------

    pub fn inspect_config(&self, app: &str) -> Option<BTreeMap<String, String>> {
        let idx = self.app_idx(app).ok()?;
        Some(self.vars_of(&self.apps[idx]))
    }

    pub fn inspect_maintenance(&self, app: &str) -> Option<bool> {
        Some(self.apps[self.app_idx(app).ok()?].maintenance)
    }

    pub fn inspect_attachments(&self, app: &str) -> Vec<AttachmentView> {
        let Ok(idx) = self.app_idx(app) else {
            return Vec::new();
        };
        let app_id = self.apps[idx].id;
        let mut out: Vec<AttachmentView> = self
            .attachments
            .iter()
            .filter(|t| t.app == app_id)
            .map(|t| AttachmentView {
                name: t.name.clone(),
                addon: self.addon_by_id(t.addon).name.clone(),
                namespace: t.namespace.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn inspect_releases(&self, app: &str) -> Vec<(u64, String)> {
        let Ok(idx) = self.app_idx(app) else {
            return Vec::new();
        };
        self.apps[idx]
            .releases
            .iter()
            .map(|r| (r.version, r.description.clone()))
            .collect()
    }

    pub fn inspect_formation(&self, app: &str) -> BTreeMap<String, u32> {
        let Ok(idx) = self.app_idx(app) else {
            return BTreeMap::new();
        };
        self.apps[idx]
            .formation
            .iter()
            .map(|f| (f.ptype.clone(), f.quantity))
            .collect()
    }
}

/// `quantity` and `size`/`dyno_size` of a formation update.
fn formation_change(u: &Value) -> Res<(Option<u32>, Option<String>)> {
    let quantity = match &u["quantity"] {
        Value::Null => None,
        v => Some(
            v.as_u64()
                .and_then(|q| u32::try_from(q).ok())
                .ok_or_else(|| ApiError::invalid("quantity must be a non-negative integer."))?,
        ),
    };
    let size = u["size"]
        .as_str()
        .or_else(|| u["dyno_size"]["name"].as_str())
        .map(str::to_owned);
    Ok((quantity, size))
}

fn push_release(app: &mut AppRec, description: String) {
    let now = Utc::now();
    let version = app.releases.last().map(|r| r.version + 1).unwrap_or(1);
    app.releases.push(ReleaseRec {
        id: Uuid::new_v4(),
        version,
        description,
        created_at: now,
    });
    app.updated_at = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> World {
        let seed = Seed::new().token("t").app(
            SeedApp::new("app")
                .config_var("SECRET_KEY", "x")
                .addon(
                    SeedAddon::postgres("postgresql-old-1", "postgres://old")
                        .attach("DATABASE")
                        .attach("HEROKU_POSTGRESQL_YELLOW"),
                )
                .addon(
                    SeedAddon::postgres("postgresql-new-2", "postgres://new")
                        .attach("HEROKU_POSTGRESQL_RED"),
                ),
        );
        World::from_seed(&seed).unwrap()
    }

    #[test]
    fn attachments_provide_name_url_and_own_it() {
        let mut w = world();
        let vars = w.inspect_config("app").unwrap();
        assert_eq!(vars["DATABASE_URL"], "postgres://old");
        let e = w
            .patch_config("app", &json!({"DATABASE_URL": "postgres://x"}))
            .unwrap_err();
        assert_eq!((e.status, e.id), (422, "invalid_params"));
        assert_eq!(
            e.message,
            "Cannot overwrite attachment values DATABASE_URL."
        );
        let e = w
            .patch_config("app", &json!({"DATABASE_URL": null}))
            .unwrap_err();
        assert_eq!(e.id, "invalid_params");
    }

    #[test]
    fn taken_names_need_confirm_and_confirm_replaces() {
        let mut w = world();
        let body = json!({"addon": {"name": "postgresql-new-2"}, "app": {"name": "app"}, "name": "DATABASE"});
        let e = w.attach(&body).unwrap_err();
        assert_eq!((e.status, e.id), (423, "confirmation_required"));
        let mut body = body;
        body["confirm"] = json!("app");
        w.attach(&body).unwrap();
        assert_eq!(
            w.inspect_config("app").unwrap()["DATABASE_URL"],
            "postgres://new"
        );
        let rel = w.inspect_releases("app");
        let n = rel.len();
        assert_eq!(rel[n - 2].1, "Detach DATABASE (@ref:postgresql-old-1)");
        assert_eq!(rel[n - 1].1, "Attach DATABASE (@ref:postgresql-new-2)");
    }

    #[test]
    fn plain_var_of_that_name_needs_confirm() {
        let mut w = world();
        w.patch_config("app", &json!({"BACKUP_URL": "plain"}))
            .unwrap();
        let mut body = json!({"addon": "postgresql-old-1", "app": "app", "name": "BACKUP"});
        assert_eq!(w.attach(&body).unwrap_err().id, "confirmation_required");
        body["confirm"] = json!("app");
        w.attach(&body).unwrap();
        assert_eq!(
            w.inspect_config("app").unwrap()["BACKUP_URL"],
            "postgres://old"
        );
    }

    #[test]
    fn last_billing_attachment_cannot_go() {
        let mut w = world();
        let red = w
            .attachments
            .iter()
            .find(|t| t.name == "HEROKU_POSTGRESQL_RED")
            .unwrap()
            .id
            .to_string();
        let e = w.detach(&red).unwrap_err();
        assert_eq!(
            e.message,
            "Cannot destroy last attachment to billing app for resource postgresql-new-2"
        );
        let db = w
            .attachments
            .iter()
            .find(|t| t.name == "DATABASE")
            .unwrap()
            .id
            .to_string();
        w.detach(&db).unwrap();
        assert!(!w
            .inspect_config("app")
            .unwrap()
            .contains_key("DATABASE_URL"));
    }

    #[test]
    fn unnamed_postgres_attachment_gets_a_colour() {
        let mut w = world();
        let att = w
            .attach(&json!({"addon": {"name": "postgresql-new-2"}, "app": {"name": "app"}}))
            .unwrap();
        let name = att["name"].as_str().unwrap();
        assert!(
            name.starts_with("HEROKU_POSTGRESQL_") && name != "HEROKU_POSTGRESQL_RED",
            "{name}"
        );
    }

    #[test]
    fn config_patch_with_null_deletes_and_releases() {
        let mut w = world();
        let before = w.inspect_releases("app").len();
        let vars = w
            .patch_config("app", &json!({"A": "1", "SECRET_KEY": null}))
            .unwrap();
        assert_eq!(vars["A"], "1");
        assert!(vars.get("SECRET_KEY").is_none());
        let rel = w.inspect_releases("app");
        assert_eq!(rel.len(), before + 1);
        assert_eq!(
            rel.last().unwrap().1,
            "Set A config vars, Remove SECRET_KEY config vars"
        );
    }

    #[test]
    fn seed_conflicts_are_refused() {
        let seed = Seed::new().app(
            SeedApp::new("a")
                .config_var("DATABASE_URL", "x")
                .addon(SeedAddon::postgres("pg", "postgres://p").attach("DATABASE")),
        );
        assert!(World::from_seed(&seed).is_err());
    }
}
