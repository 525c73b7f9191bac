//! PostgreSQL sessions: connecting with a diagnosis in words, and the
//! catalog, schema and COPY work built on them.
//!
//! Every session herokurds opens, to the Heroku source or the RDS target,
//! starts in [`connect`]: TLS as the URL's `sslmode` says (`require` when
//! it says nothing), and a failure explained in terms of the URL part to
//! fix ([`ConnectError`]). What is accepted of a session's TLS, and warned
//! about, is [`tls_concerns`].

pub mod binaries;
pub mod catalog;
mod connect;
mod identity;
mod server_info;
mod tls_policy;

pub use connect::{connect, pg_config, ConnectError, Connected, DEFAULT_CONNECT_TIMEOUT};
pub use identity::{DbIdentity, Holdings};
pub use server_info::{server_info, ServerInfo};
pub use tls_policy::{tls_concerns, TlsConcern};
