//! The source and the target as the transfer uses them: sessions set up
//! for long copies, and connection strings for `pg_dump`/`pg_restore`.

use tokio_postgres::Client;

use super::error::{Side, TransferError};
use super::schema::ToolConn;
use crate::url::{DatabaseUrl, Param};

/// What a session is for; decides its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Reads rows on the source: no timeouts (a long copy must not be
    /// killed), `row_security = off` (so a policy that would hide rows
    /// raises an error instead of filtering), output styles that text
    /// COPY reads back exactly.
    SourceReader,
    /// Loads rows on the target: no timeouts, `synchronous_commit = off`.
    TargetLoader,
    /// Runs post-data SQL on the target: pg_restore's session settings
    /// plus a large `maintenance_work_mem`.
    TargetBuilder,
}

/// One of the two databases.
pub(crate) struct Endpoint<'a> {
    pub(crate) url: &'a DatabaseUrl,
    pub(crate) side: Side,
}

/// Every timeout that could end a session of a long copy, whatever the
/// role or database sets: a statement (a COPY of a large table, an index
/// build), a transaction (the exported snapshot's, held for the whole
/// run), or the session left idle meanwhile (the snapshot holder, the
/// sessions kept for sequences and large objects). `idle_session_timeout`
/// exists from PostgreSQL 14, `transaction_timeout` from 17: they are
/// turned off only where they exist.
const NO_TIMEOUTS: &str = "SET statement_timeout = 0; SET lock_timeout = 0; \
     SET idle_in_transaction_session_timeout = 0; \
     SELECT pg_catalog.set_config('idle_session_timeout', '0', false) \
      WHERE pg_catalog.current_setting('server_version_num')::int >= 140000; \
     SELECT pg_catalog.set_config('transaction_timeout', '0', false) \
      WHERE pg_catalog.current_setting('server_version_num')::int >= 170000;";

/// libpq's `keepalives_idle` for `pg_dump`/`pg_restore` when the URL sets
/// none (as [`crate::pg::connect`] does for our own sessions).
const TOOL_KEEPALIVES_IDLE: &str = "30";

impl<'a> Endpoint<'a> {
    pub(crate) fn source(url: &'a DatabaseUrl) -> Self {
        Endpoint {
            url,
            side: Side::Source,
        }
    }

    pub(crate) fn target(url: &'a DatabaseUrl) -> Self {
        Endpoint {
            url,
            side: Side::Target,
        }
    }

    /// Opens a plain session (no settings beyond the connection's).
    pub(crate) async fn connect_plain(&self) -> Result<Client, TransferError> {
        let connected = crate::pg::connect(self.url)
            .await
            .map_err(|e| TransferError::Connect {
                side: self.side,
                url: self.url.redacted_url(),
                message: e.to_string(),
                source: Box::new(e),
            })?;
        Ok(connected.into_client())
    }

    /// Opens a session set up for `role`.
    pub(crate) async fn connect(
        &self,
        role: Role,
        maintenance_work_mem: &str,
    ) -> Result<Client, TransferError> {
        let client = self.connect_plain().await?;
        let settings = match role {
            Role::SourceReader => format!(
                "{NO_TIMEOUTS} SET row_security = off; SET datestyle = 'ISO'; \
                 SET intervalstyle = 'postgres'; SET extra_float_digits = 3;"
            ),
            Role::TargetLoader => format!(
                "{NO_TIMEOUTS} SET synchronous_commit = off; SET datestyle = 'ISO'; \
                 SET intervalstyle = 'postgres';"
            ),
            Role::TargetBuilder => format!(
                "{NO_TIMEOUTS} SET synchronous_commit = off; SET maintenance_work_mem = {}; \
                 SET client_min_messages = warning; SET standard_conforming_strings = on; \
                 SET check_function_bodies = false; SET xmloption = content; \
                 SET row_security = off; SELECT pg_catalog.set_config('search_path', '', false);",
                crate::pg::catalog::quote_literal(maintenance_work_mem)
            ),
        };
        client
            .batch_execute(&settings)
            .await
            .map_err(TransferError::query(self.side, "setting up the session"))?;
        Ok(client)
    }

    /// `user@host:port/dbname`: who and where, without the password.
    pub(crate) fn identity(&self) -> String {
        format!(
            "{}@{}:{}/{}",
            self.url.user(),
            self.url.host(),
            self.url.port(),
            self.url.dbname()
        )
    }

    /// A libpq connection string without the password (which goes to the
    /// child's `PGPASSWORD`), carrying every URL parameter (`sslmode`,
    /// `sslrootcert`, ...) and always an `sslmode`: the one in effect for
    /// herokurds' own sessions, so the tool never falls back to libpq's
    /// or the environment's default.
    pub(crate) fn tool_conn(&self) -> ToolConn {
        let mut conninfo = format!(
            "host={} port={} user={} dbname={}",
            conninfo_value(&self.url.host().to_connect_string()),
            self.url.port(),
            conninfo_value(self.url.user()),
            conninfo_value(self.url.dbname()),
        );
        for (param, value) in self.url.params() {
            conninfo.push_str(&format!(" {}={}", param.name(), conninfo_value(value)));
        }
        if self.url.param(Param::SslMode).is_none() {
            conninfo.push_str(&format!(" sslmode={}", self.url.ssl_mode()));
        }
        if self.url.param(Param::KeepalivesIdle).is_none() {
            conninfo.push_str(&format!(" keepalives_idle={TOOL_KEEPALIVES_IDLE}"));
        }
        ToolConn {
            conninfo,
            password: self.url.password().clone(),
        }
    }
}

/// A libpq `key=value` value: single-quoted, `\` and `'` escaped.
fn conninfo_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn tool_conninfo_carries_parameters_but_never_the_password() {
        let url: DatabaseUrl =
            "postgres://o'neil:s3cr%27t@db.example.com:6543/app?sslmode=verify-full&sslrootcert=/tmp/ca.pem"
                .parse()
                .unwrap();
        let t = Endpoint::source(&url).tool_conn();
        assert_eq!(
            t.conninfo,
            "host='db.example.com' port=6543 user='o\\'neil' dbname='app' \
             sslmode='verify-full' sslrootcert='/tmp/ca.pem' keepalives_idle=30"
        );
        let own: DatabaseUrl = "postgres://u:p@h/d?keepalives_idle=5".parse().unwrap();
        assert_eq!(
            Endpoint::source(&own).tool_conn().conninfo,
            format!(
                "host='h' port=5432 user='u' dbname='d' keepalives_idle='5' sslmode={}",
                own.ssl_mode()
            )
        );
        assert!(!t.conninfo.contains("s3cr"));
        assert_eq!(t.password.expose_secret(), "s3cr't");
        assert_eq!(
            Endpoint::target(&url).identity(),
            "o'neil@db.example.com:6543/app"
        );
    }
}
