//! The Heroku Platform API: a client for what the migration changes on
//! Heroku. Its emulator, to test against, is in the `herokurds-testkit` crate.
//!
//! The runbook's Heroku CLI steps (`config:get/set`, `addons`,
//! `maintenance:on/off`, `addons:attach --as`, `addons:detach`,
//! `pg:promote`) become calls on one [`Client`], so herokurds needs no
//! Heroku CLI and every change is read back through the same API. Heroku's
//! real API cannot be reached from tests, hence `herokurds_testkit::emulator`: the same paths,
//! shapes, errors and attachment rules, served on a loopback port.
//!
//! ```no_run
//! # async fn f() -> Result<(), herokurds_core::heroku::HerokuError> {
//! use herokurds_core::heroku::Client;
//! let heroku = Client::from_env()?; // HEROKU_API_KEY or ~/.netrc, like the CLI
//! for pg in heroku.postgres_addons("micromasters-ci").await? {
//!     println!("{} as {:?}", pg.addon.name, pg.attachment_names("micromasters-ci"));
//! }
//! heroku.set_maintenance("micromasters-ci", true).await?;
//! # Ok(()) }
//! ```
//!
//! Layout: [`ClientBuilder`] and [`RetryPolicy`] (token, URL, retries),
//! [`Client`] (operations), [`HerokuError`], and the resource types.

mod client;
mod config;
mod error;
mod netrc;
mod postgres;
mod types;

pub use client::{Client, ACCEPT_V3, NEXT_RANGE, RATE_LIMIT_REMAINING};
pub use config::{ClientBuilder, RetryPolicy, DEFAULT_API_URL};
pub use error::{HerokuError, Target};
pub use types::{
    Account, Addon, AddonRef, App, Attachment, ConfigVars, Formation, NamedRef, PostgresAddon,
    PromoteOutcome, Release, DATABASE, DATABASE_CONNECTION_POOL, POOLER_NAMESPACE,
    POSTGRES_SERVICE,
};
