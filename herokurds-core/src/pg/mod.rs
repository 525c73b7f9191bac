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

/// The server's message (with its detail and hint), or the driver's error
/// with its causes: what errors of this crate quote from a failed query.
pub(crate) fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => {
            let mut m = d.message().to_string();
            if let Some(detail) = d.detail() {
                m.push_str(&format!(" ({detail})"));
            }
            if let Some(hint) = d.hint() {
                m.push_str(&format!("; hint: {hint}"));
            }
            m
        }
        None => {
            let mut m = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                m.push_str(&format!(": {s}"));
                src = s.source();
            }
            m
        }
    }
}
