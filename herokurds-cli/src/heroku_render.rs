//! How `herokurds-heroku` shows results: a line of text, or one JSON
//! document with `--json`. Nothing here prints a config value except
//! [`config_value`], which `config get` was asked for.

use herokurds_core::heroku::{Attachment, PostgresAddon, PromoteOutcome, Release};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::{print_json, println_safe};

fn version(release: Option<&Release>) -> String {
    release
        .map(|r| format!(" (v{})", r.version))
        .unwrap_or_default()
}

/// `config get`: the value alone on a line, or `{"app", "key", "value"}`.
pub fn config_value(json: bool, app: &str, key: &str, value: &SecretString) -> anyhow::Result<()> {
    if json {
        return print_json(&json!({ "app": app, "key": key, "value": value.expose_secret() }));
    }
    println_safe(value.expose_secret())?;
    Ok(())
}

/// `config set` / `config unset`: names and the release, never values.
pub fn config_changed(
    json: bool,
    app: &str,
    verb: &str,
    keys: &[String],
    release: Option<&Release>,
) -> anyhow::Result<()> {
    if json {
        return print_json(
            &json!({ "app": app, verb: keys, "release": release.map(|r| r.version) }),
        );
    }
    println_safe(format!(
        "{verb} {} on {app}{}",
        keys.join(", "),
        version(release)
    ))?;
    Ok(())
}

/// `maintenance`: `on` / `off`.
pub fn maintenance(json: bool, app: &str, on: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&json!({ "app": app, "maintenance": on }));
    }
    println_safe(if on { "on" } else { "off" })?;
    Ok(())
}

fn attachment_json(a: &Attachment) -> serde_json::Value {
    json!({
        "name": a.name,
        "app": a.app.name,
        "namespace": a.namespace,
        "config_var": a.config_var(),
    })
}

/// An attachment made or removed, with its add-on and the release it made.
fn change_json(a: &Attachment, release: Option<&Release>) -> serde_json::Value {
    let mut v = attachment_json(a);
    v["addon"] = json!(a.addon.name);
    v["release"] = json!(release.map(|r| r.version));
    v
}

/// An attachment change: its JSON, or `line` and the release it made.
fn attachment_changed(
    json: bool,
    a: &Attachment,
    release: Option<&Release>,
    line: String,
) -> anyhow::Result<()> {
    if json {
        return print_json(&change_json(a, release));
    }
    println_safe(format!("{line}{}", version(release)))?;
    Ok(())
}

/// `addons`: each Postgres add-on, its plan and billing app, and its attachments.
pub fn addons(json: bool, app: &str, addons: &[PostgresAddon]) -> anyhow::Result<()> {
    if json {
        let list: Vec<_> = addons
            .iter()
            .map(|p| {
                json!({
                    "name": p.addon.name,
                    "id": p.addon.id,
                    "service": p.addon.addon_service.name,
                    "plan": p.addon.plan.name,
                    "billing_app": p.addon.app.name,
                    "state": p.addon.state,
                    "attachments": p.attachments.iter().map(attachment_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        return print_json(&json!({ "app": app, "addons": list }));
    }
    if addons.is_empty() {
        println_safe(format!("no Heroku Postgres add-ons on {app}"))?;
        return Ok(());
    }
    for p in addons {
        let billed = if p.addon.app.name == app {
            String::new()
        } else {
            format!(" (billed to {})", p.addon.app.name)
        };
        println_safe(format!("{}  {}{billed}", p.addon.name, p.addon.plan.name))?;
        for a in &p.attachments {
            let on = if a.app.name == app {
                String::new()
            } else {
                format!(" on {}", a.app.name)
            };
            let ns = a
                .namespace
                .as_deref()
                .map(|n| format!(" [{n}]"))
                .unwrap_or_default();
            println_safe(format!("  as {}{on}{ns}  -> {}", a.name, a.config_var()))?;
        }
    }
    Ok(())
}

/// `attach`.
pub fn attached(
    json: bool,
    app: &str,
    a: &Attachment,
    release: Option<&Release>,
) -> anyhow::Result<()> {
    let (addon, name, var) = (&a.addon.name, &a.name, a.config_var());
    let line = format!("attached {addon} to {app} as {name} (sets {var})");
    attachment_changed(json, a, release, line)
}

/// `detach`.
pub fn detached(
    json: bool,
    app: &str,
    a: &Attachment,
    release: Option<&Release>,
) -> anyhow::Result<()> {
    let (addon, name, var) = (&a.addon.name, &a.name, a.config_var());
    let line = format!("detached {name} ({addon}) from {app}; {var} is gone");
    attachment_changed(json, a, release, line)
}

/// `promote`.
pub fn promoted(json: bool, o: &PromoteOutcome) -> anyhow::Result<()> {
    if json {
        return print_json(o);
    }
    if o.already_promoted {
        println_safe(format!("{} already is DATABASE on {}", o.addon, o.app))?;
        return Ok(());
    }
    let mut line = format!("promoted {} to DATABASE_URL on {}", o.addon, o.app);
    if let Some(prev) = &o.previous {
        let alias = o.backup_attachment.as_ref().or(o.existing_alias.as_ref());
        match alias {
            Some(alias) => line.push_str(&format!("; {prev} stays attached as {alias}")),
            None => line.push_str(&format!("; replaced {prev}")),
        }
    }
    if o.repointed_pooler {
        line.push_str("; DATABASE_CONNECTION_POOL re-pointed");
    }
    println_safe(line)?;
    Ok(())
}
