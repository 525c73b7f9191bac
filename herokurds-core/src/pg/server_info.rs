//! What a session is connected to: server version, user, database.
//!
//! `herokurds-url check` prints it, and preflight compares it across the
//! source and the target (pg_dump must be at least the source's major
//! version; the target must be the database the plan names). Whether the
//! session is encrypted is not asked of the server (`pg_stat_ssl` is the
//! server's word, and whoever answers could say anything): it is
//! [`Connected::tls`](super::Connected::tls), what the client negotiated.

use serde::Serialize;
use tokio_postgres::Client;

use super::ConnectError;

/// The server and session a client is connected to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ServerInfo {
    /// `server_version` as the server reports it (`15.18 (Debian 15.18-1)`).
    pub version: String,
    /// `server_version_num` (`150018`).
    pub version_num: u32,
    /// The major version (`15`; for servers before 10, `version_num / 100`, e.g. `906`).
    pub major: u32,
    /// `current_user`.
    pub user: String,
    /// `current_database()`.
    pub database: String,
}

/// Asks the server who and where this session is.
pub async fn server_info(client: &Client) -> Result<ServerInfo, ConnectError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), \
                    current_setting('server_version_num')::int4, \
                    current_user::text, current_database()::text",
            &[],
        )
        .await
        .map_err(|e| query_error("server version, user and database", &e))?;
    let version_num = u32::try_from(row.get::<_, i32>(1)).unwrap_or(0);
    Ok(ServerInfo {
        version: row.get(0),
        version_num,
        major: if version_num >= 100_000 {
            version_num / 10_000
        } else {
            version_num / 100
        },
        user: row.get(2),
        database: row.get(3),
    })
}

fn query_error(what: &'static str, e: &tokio_postgres::Error) -> ConnectError {
    ConnectError::Query {
        what,
        reason: match e.as_db_error() {
            Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            None => e.to_string(),
        },
    }
}
