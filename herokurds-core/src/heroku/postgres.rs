//! Heroku Postgres on top of the add-on API: finding an app's databases
//! with every name they are attached under, and `pg:promote`.
//!
//! [`Client::promote`] follows Heroku CLI's `pg:promote` step by step, so a
//! rollback through herokurds leaves the app exactly as the CLI would:
//! 1. list the app's attachments and find the current `DATABASE`;
//! 2. if its add-on has no other attachment on the app (same namespace),
//!    attach it once more without a name, so that Heroku gives it an alias
//!    and the add-on is not left unattached;
//! 3. attach the promoted add-on as `DATABASE` with `confirm`, which
//!    replaces the old `DATABASE` attachment, or an ordinary `DATABASE_URL`
//!    config var left by a cutover;
//! 4. re-point a `DATABASE_CONNECTION_POOL` attachment (namespace
//!    `connection-pooling:default`) of the old add-on to the new one.

use super::client::Client;
use super::error::HerokuError;
use super::types::{
    Addon, PostgresAddon, PromoteOutcome, DATABASE, DATABASE_CONNECTION_POOL, POOLER_NAMESPACE,
};

impl Client {
    /// The app's Heroku Postgres add-ons (`addon_service.name ==
    /// "heroku-postgresql"`), each with all its attachments on any app. The
    /// one attached as `DATABASE` comes first.
    pub async fn postgres_addons(&self, app: &str) -> Result<Vec<PostgresAddon>, HerokuError> {
        let addons = self.addons(app).await?;
        let mut out = Vec::new();
        for addon in addons.into_iter().filter(Addon::is_postgres) {
            let mut attachments = self.addon_attachments(&addon.id).await?;
            attachments.sort_by(|a, b| (&a.app.name, &a.name).cmp(&(&b.app.name, &b.name)));
            out.push(PostgresAddon { addon, attachments });
        }
        out.sort_by_key(|p| (!p.is_database(app), p.addon.name.clone()));
        Ok(out)
    }

    /// The Postgres add-on attached to the app as `DATABASE`, if any.
    pub async fn database_addon(&self, app: &str) -> Result<Option<PostgresAddon>, HerokuError> {
        Ok(self
            .postgres_addons(app)
            .await?
            .into_iter()
            .find(|p| p.is_database(app)))
    }

    /// Makes `addon` the app's `DATABASE` (so `DATABASE_URL` points at it),
    /// like `heroku pg:promote` (see the module documentation). `addon` is an
    /// add-on name or id, or the name of one of the app's attachments.
    ///
    /// Promoting the add-on that already is `DATABASE` changes nothing and
    /// reports `already_promoted`, so a rollback can be repeated safely.
    pub async fn promote(&self, app: &str, addon: &str) -> Result<PromoteOutcome, HerokuError> {
        let attachments = self.attachments(app).await?;
        let promoted = match attachments.iter().find(|a| a.name == addon) {
            Some(att) => self.addon(&att.addon.id).await?,
            None => self.addon(addon).await?,
        };
        if !promoted.is_postgres() {
            return Err(HerokuError::NotPostgres {
                addon: promoted.name,
                service: promoted.addon_service.name,
            });
        }
        let mut outcome = PromoteOutcome {
            app: app.to_owned(),
            addon: promoted.name.clone(),
            previous: None,
            backup_attachment: None,
            existing_alias: None,
            repointed_pooler: false,
            already_promoted: false,
        };
        let current = attachments.iter().find(|a| a.name == DATABASE);
        if let Some(current) = current {
            if current.addon.id == promoted.id && current.namespace.is_none() {
                tracing::info!(app, addon = %promoted.name, "already promoted");
                outcome.already_promoted = true;
                return Ok(outcome);
            }
            outcome.previous = Some(current.addon.name.clone());
            let alias = attachments.iter().find(|a| {
                a.addon.id == current.addon.id
                    && a.namespace == current.namespace
                    && a.name != DATABASE
            });
            match alias {
                Some(alias) => outcome.existing_alias = Some(alias.name.clone()),
                None => {
                    let backup = self
                        .attach_in(
                            app,
                            &current.addon.name,
                            None,
                            current.namespace.as_deref(),
                            true,
                        )
                        .await?;
                    outcome.backup_attachment = Some(backup.name);
                }
            }
        }
        self.attach_in(app, &promoted.name, Some(DATABASE), None, true)
            .await?;
        let pooler = current.and_then(|current| {
            attachments.iter().find(|a| {
                a.namespace.as_deref() == Some(POOLER_NAMESPACE)
                    && a.addon.id == current.addon.id
                    && a.name == DATABASE_CONNECTION_POOL
            })
        });
        if let Some(pooler) = pooler {
            self.attach_in(
                app,
                &promoted.name,
                Some(&pooler.name),
                Some(POOLER_NAMESPACE),
                true,
            )
            .await?;
            outcome.repointed_pooler = true;
        }
        tracing::info!(app, addon = %promoted.name, previous = ?outcome.previous, "promoted");
        Ok(outcome)
    }
}
