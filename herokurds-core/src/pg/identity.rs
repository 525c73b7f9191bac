//! Which database a URL reaches, beyond the text of the URL, and what the
//! session user owns there.
//!
//! `localhost` and `127.0.0.1`, or an RDS endpoint and a CNAME of it, are
//! one server under two names; two shells with different
//! `TARGET_DATABASE_URL`s are two servers under the same plan. The
//! server's own `system_identifier` (from `pg_control_system()`, set once
//! by `initdb`) tells them apart where the session may read it; where it
//! may not, the identity falls back to the URL's `host:port` and says so.
//! A physical replica, or an instance restored from a snapshot, keeps the
//! `system_identifier` of its origin: two names are one running server
//! only if the postmaster's start time is the same too.
//!
//! [`Holdings`] describes what a restart would drop (`DROP OWNED BY
//! CURRENT_USER`), for messages that refuse to.

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::ConnectError;
use crate::url::DatabaseUrl;

/// Who and where a session is: `user@host:port/dbname` from the URL, and
/// the server's `system_identifier` where readable. Holds no password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DbIdentity {
    /// The user (role) of the URL.
    pub user: String,
    /// The host as the URL names it.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The database name.
    pub dbname: String,
    /// `pg_control_system().system_identifier`, as text (`None`: not
    /// readable by this user).
    pub system_identifier: Option<String>,
    /// `pg_postmaster_start_time()`, as text: tells a running server from
    /// a replica or restored copy with the same `system_identifier`.
    #[serde(default)]
    pub server_started_at: Option<String>,
    /// How the server was identified: `pg_control_system()`, or why not
    /// and that `host:port` is compared instead.
    pub identified_by: String,
}

/// What [`DbIdentity::identified_by`] says when the server told its
/// `system_identifier`.
const BY_CONTROL_DATA: &str = "pg_control_system()";

impl DbIdentity {
    /// The identity of `url` from its text alone (no `system_identifier`).
    pub fn of_url(url: &DatabaseUrl, why_no_system_identifier: impl Into<String>) -> Self {
        DbIdentity {
            user: url.user().to_string(),
            host: url.host().to_string(),
            port: url.port(),
            dbname: url.dbname().to_string(),
            system_identifier: None,
            server_started_at: None,
            identified_by: why_no_system_identifier.into(),
        }
    }

    /// Asks the server behind `client` (connected with `url`) for its
    /// `system_identifier`. A server that refuses (the function is not
    /// granted to this user) gives an identity by `host:port` instead;
    /// this never fails.
    pub async fn read(client: &Client, url: &DatabaseUrl) -> Self {
        let started = client
            .query_one("SELECT pg_postmaster_start_time()::text", &[])
            .await
            .ok()
            .map(|r| r.get(0));
        let mut id = Self::read_control_data(client, url).await;
        id.server_started_at = started;
        id
    }

    async fn read_control_data(client: &Client, url: &DatabaseUrl) -> Self {
        match client
            .query_one(
                "SELECT system_identifier::text FROM pg_control_system()",
                &[],
            )
            .await
        {
            Ok(row) => DbIdentity {
                system_identifier: row.get(0),
                identified_by: BY_CONTROL_DATA.into(),
                ..Self::of_url(url, "")
            },
            Err(e) => {
                let why = e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string());
                Self::of_url(
                    url,
                    format!("host:port (pg_control_system() not readable: {why})"),
                )
            }
        }
    }

    /// Connects to `url` and reads its identity.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, ConnectError> {
        let client = super::connect(url).await?.into_client();
        Ok(Self::read(&client, url).await)
    }

    /// `user@host:port/dbname`.
    pub fn address(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }

    /// Whether both, read at about the same time, name the same database
    /// of the same running server, under whatever host name: the same
    /// `system_identifier`, postmaster start time and database name when
    /// the servers told them, else the same host (case-insensitive), port
    /// and database.
    pub fn same_database(&self, other: &DbIdentity) -> bool {
        let same_server = match (&self.system_identifier, &other.system_identifier) {
            (Some(a), Some(b)) => {
                a == b
                    && match (&self.server_started_at, &other.server_started_at) {
                        (Some(x), Some(y)) => x == y,
                        _ => true,
                    }
            }
            _ => self.host.eq_ignore_ascii_case(&other.host) && self.port == other.port,
        };
        same_server && self.dbname == other.dbname
    }

    /// Whether `other` (read later, e.g. on resume) is still this one: the
    /// same `user@host:port/dbname` and, when both are known, the same
    /// `system_identifier` (a restart in between is fine; another server
    /// behind the same address is not). The address must match as well
    /// because a replica or a restored snapshot keeps its origin's
    /// `system_identifier`.
    pub fn same_as(&self, other: &DbIdentity) -> bool {
        let same_system = match (&self.system_identifier, &other.system_identifier) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        same_system && self.address() == other.address()
    }
}

impl std::fmt::Display for DbIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.system_identifier {
            Some(id) => write!(f, "{} (system identifier {id})", self.address()),
            None => write!(f, "{} (system identifier unknown)", self.address()),
        }
    }
}

/// What the session user owns in the current database: what `DROP OWNED
/// BY CURRENT_USER CASCADE` would drop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Holdings {
    /// The user.
    pub user: String,
    /// Every object it owns here (tables, indexes, sequences, schemas,
    /// functions, types, large objects ...).
    pub objects: i64,
    /// Tables among them.
    pub tables: i64,
    /// Rows in those tables, as the statistics estimate them.
    pub rows_estimate: i64,
    /// Bytes of those tables, indexes and TOAST included.
    pub bytes: i64,
    /// The largest tables, `schema.name`, up to five.
    pub largest: Vec<String>,
}

impl Holdings {
    /// Reads what the session user owns in the current database.
    pub async fn read(client: &Client) -> Result<Self, tokio_postgres::Error> {
        let row = client
            .query_one(
                "SELECT current_user::text,
                        (SELECT count(*) FROM pg_shdepend d
                         WHERE d.refclassid = 'pg_authid'::regclass
                           AND d.refobjid = (SELECT oid FROM pg_roles WHERE rolname = current_user)
                           AND d.deptype = 'o'
                           AND d.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()))",
                &[],
            )
            .await?;
        let (user, objects): (String, i64) = (row.get(0), row.get(1));
        let tables = client
            .query(
                "SELECT format('%I.%I', n.nspname, c.relname),
                        greatest(c.reltuples, 0)::int8,
                        pg_total_relation_size(c.oid)::int8
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('r', 'p', 'm')
                   AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
                 ORDER BY 3 DESC, 1",
                &[],
            )
            .await?;
        Ok(Holdings {
            user,
            objects,
            tables: tables.len() as i64,
            rows_estimate: tables.iter().map(|r| r.get::<_, i64>(1)).sum(),
            bytes: tables.iter().map(|r| r.get::<_, i64>(2)).sum(),
            largest: tables.iter().take(5).map(|r| r.get(0)).collect(),
        })
    }

    /// Whether the user owns nothing here.
    pub fn is_empty(&self) -> bool {
        self.objects == 0 && self.tables == 0
    }
}

impl std::fmt::Display for Holdings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} object(s) owned by {}, among them {} table(s) with about {} row(s), {:.1} MB",
            self.objects,
            self.user,
            self.tables,
            self.rows_estimate,
            self.bytes as f64 / 1_048_576.0
        )?;
        if !self.largest.is_empty() {
            write!(f, " ({})", self.largest.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(host: &str, port: u16, db: &str, sysid: Option<&str>) -> DbIdentity {
        DbIdentity {
            user: "app".into(),
            host: host.into(),
            port,
            dbname: db.into(),
            system_identifier: sysid.map(str::to_string),
            server_started_at: Some("2026-12-07 03:00:00+00".into()),
            identified_by: BY_CONTROL_DATA.into(),
        }
    }

    #[test]
    fn the_same_server_under_two_names_is_the_same_database() {
        let a = id("localhost", 5432, "app", Some("7301"));
        let b = id("127.0.0.1", 5432, "app", Some("7301"));
        assert!(a.same_database(&b));
        assert!(!a.same_database(&id("127.0.0.1", 5432, "other", Some("7301"))));
        assert!(!a.same_database(&id("localhost", 5432, "app", Some("9999"))));
        // A replica or restored snapshot: same system, another server.
        let mut copy = b.clone();
        copy.server_started_at = Some("2026-12-07 04:00:00+00".into());
        assert!(!a.same_database(&copy));
        // Without a system identifier on one side, the host text decides.
        assert!(!a.same_database(&id("127.0.0.1", 5432, "app", None)));
        assert!(a.same_database(&id("LOCALHOST", 5432, "app", None)));
        let mut other_user = b.clone();
        other_user.user = "admin".into();
        assert!(a.same_database(&other_user));
    }

    #[test]
    fn resume_needs_the_same_address_and_system() {
        let a = id("db.example", 5432, "app", Some("7301"));
        let mut restarted = a.clone();
        restarted.server_started_at = None;
        assert!(a.same_as(&restarted));
        assert!(a.same_as(&id("db.example", 5432, "app", None)));
        assert!(!a.same_as(&id("db.example", 5432, "app", Some("9999"))));
        assert!(!a.same_as(&id("db.example", 5433, "app", Some("7301"))));
        assert!(!a.same_as(&id("copy.example", 5432, "app", Some("7301"))));
    }

    #[test]
    fn display_names_address_and_system_identifier() {
        assert_eq!(
            id("db.example", 6543, "app", Some("7301")).to_string(),
            "app@db.example:6543/app (system identifier 7301)"
        );
        assert_eq!(
            id("db.example", 6543, "app", None).to_string(),
            "app@db.example:6543/app (system identifier unknown)"
        );
    }
}
