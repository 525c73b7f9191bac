//! The one exported snapshot every session of a transfer reads.
//!
//! A REPEATABLE READ, READ ONLY transaction on the source calls
//! `pg_export_snapshot()` and stays open (idle) for the whole copy; every
//! worker imports it with `SET TRANSACTION SNAPSHOT`, and `pg_dump` gets it
//! with `--snapshot`. Rows committed on the source after the export are
//! invisible to all of them, so the target is the source as of one instant.
//!
//! The snapshot lives exactly as long as the [`Snapshot`] value: keep it to
//! run a verification in the same snapshot after the transfer, then drop it.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::endpoint::{Endpoint, Role};
use super::error::{Side, TransferError};
use super::report::{SnapshotInfo, TableActivity};
use crate::url::DatabaseUrl;

/// An exported snapshot of the source, held open by its own session.
pub struct Snapshot {
    client: Client,
    info: SnapshotInfo,
    activity: HashMap<u32, TableActivity>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// Opens a session on `source` and exports a snapshot from it, with the
    /// source's WAL position (`pg_current_wal_lsn()`, or the replay
    /// position on a standby; `None` if not permitted) and each table's
    /// write counters from `pg_stat_user_tables`.
    pub async fn export(source: &DatabaseUrl) -> Result<Snapshot, TransferError> {
        let client = Endpoint::source(source)
            .connect(Role::SourceReader, "")
            .await?;
        let q = |what: &'static str| TransferError::query(Side::Source, what);
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(q("opening the snapshot transaction"))?;
        let id: String = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map_err(q("exporting the snapshot"))?
            .get(0);
        client
            .batch_execute("SAVEPOINT herokurds_lsn")
            .await
            .map_err(q("reading the WAL position"))?;
        let lsn = match client
            .query_one(
                "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                 ELSE pg_current_wal_lsn() END)::text",
                &[],
            )
            .await
        {
            Ok(row) => row.get::<_, Option<String>>(0),
            Err(_) => {
                client
                    .batch_execute("ROLLBACK TO SAVEPOINT herokurds_lsn")
                    .await
                    .map_err(q("reading the WAL position"))?;
                None
            }
        };
        let activity = client
            .query(
                "SELECT relid, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables",
                &[],
            )
            .await
            .map_err(q("reading pg_stat_user_tables"))?
            .iter()
            .map(|r| {
                (
                    r.get::<_, u32>(0),
                    TableActivity {
                        inserted: r.get(1),
                        updated: r.get(2),
                        deleted: r.get(3),
                    },
                )
            })
            .collect();
        Ok(Snapshot {
            client,
            info: SnapshotInfo {
                id,
                lsn,
                taken_at: chrono::Utc::now(),
            },
            activity,
        })
    }

    /// The snapshot id, for `SET TRANSACTION SNAPSHOT` and `pg_dump --snapshot`.
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// The source's WAL position at export, if it could be read.
    pub fn lsn(&self) -> Option<&str> {
        self.info.lsn.as_deref()
    }

    /// Id, WAL position and time of export.
    pub fn info(&self) -> &SnapshotInfo {
        &self.info
    }

    /// A table's write counters at export (by source oid).
    pub fn activity(&self, table_oid: u32) -> Option<TableActivity> {
        self.activity.get(&table_oid).copied()
    }

    /// The session holding the snapshot, inside its transaction: queries on
    /// it see the snapshot. Do not end its transaction. A transfer run in
    /// this snapshot leaves ACCESS SHARE locks on the tables it copied
    /// here (no DDL on them until the snapshot is dropped), nothing else.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the holding session is still there (and the snapshot with it).
    pub async fn is_alive(&self) -> bool {
        !self.client.is_closed() && self.client.simple_query("SELECT 1").await.is_ok()
    }
}

/// Starts a transaction on a reader session that sees `snapshot_id`.
/// An invalid (lost) snapshot is [`TransferError::SnapshotLost`].
pub(crate) async fn import(client: &Client, snapshot_id: &str) -> Result<(), TransferError> {
    let sql = format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
        crate::pg::catalog::quote_literal(snapshot_id)
    );
    client.batch_execute(&sql).await.map_err(|e| {
        let m = super::copy::message(&e);
        if e.code().is_some_and(|c| c.code() == "22023") {
            TransferError::SnapshotLost { message: m }
        } else {
            TransferError::Query {
                side: Side::Source,
                what: "importing the snapshot".into(),
                message: m,
            }
        }
    })
}
