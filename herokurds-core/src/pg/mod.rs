//! PostgreSQL sessions: connecting with a diagnosis in words, and the
//! catalog, schema and COPY work built on them.
//!
//! Every session herokurds opens, to the Heroku source or the RDS target,
//! starts in [`connect`]: TLS as the URL's `sslmode` says, and a failure
//! explained in terms of the URL part to fix ([`ConnectError`]).

pub mod catalog;
mod connect;
mod identity;
mod server_info;

pub use connect::{connect, pg_config, ConnectError, Connected, DEFAULT_CONNECT_TIMEOUT};
pub use identity::{DbIdentity, Holdings};
pub use server_info::{server_info, ServerInfo};
