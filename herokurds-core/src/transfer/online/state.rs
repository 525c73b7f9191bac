//! The online journal, and what online mode holds back on the target.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::capture::CapturedTable;
use super::OnlineError;
use crate::pg::catalog::quote_ident;
use crate::transfer::Side;

/// The journal's format; a newer one is refused.
const VERSION: u32 = 1;

/// Everything online mode has done, journaled after each step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct OnlineState {
    /// The journal format.
    pub version: u32,
    /// `user@host:port/dbname` of the source.
    pub source: String,
    /// `user@host:port/dbname` of the target.
    pub target: String,
    /// The captured tables, with their ids in the log and keys.
    pub tables: Vec<CapturedTable>,
    /// Capture is installed on the source.
    pub capture_installed: bool,
    /// Writes to large objects (`pg_stat` counters of `pg_largeobject`
    /// and its metadata) when capture was installed.
    pub large_object_changes: Option<i64>,
    /// The first copy snapshot (`pg_current_snapshot()` text).
    pub start_snapshot: Option<String>,
    /// The copy finished.
    pub copied: bool,
    /// The target already equalled the source when capture started (no
    /// copy): capture installed on RDS at the cutover, for a lossless
    /// rollback onto Heroku.
    pub in_sync: bool,
    /// Foreign keys and triggers held back on the target (journaled
    /// before they are dropped).
    pub held_back: Option<HeldBack>,
    /// `held_back` is journaled but its drop is not known to be done.
    pub holding: bool,
    /// The snapshot the target equals (the last round's).
    pub applied: Option<String>,
    /// Catch-up rounds applied, all runs.
    pub rounds: u32,
    /// What the rounds applied, all runs.
    pub applied_totals: AppliedTotals,
    /// The snapshot of the verified cut.
    pub cut: Option<String>,
    /// The window's checks passed and the target is complete.
    pub window_done: bool,
    /// Foreign keys and triggers are back on the target.
    pub restored: bool,
    /// The foreign keys added back were validated.
    pub validated: bool,
    /// Capture was removed from the source.
    pub capture_removed: bool,
}

impl OnlineState {
    pub(crate) fn new(source: String, target: String) -> Self {
        OnlineState {
            version: VERSION,
            source,
            target,
            ..OnlineState::default()
        }
    }
}

/// What catch-up rounds applied, summed over every round and run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct AppliedTotals {
    /// Log rows read.
    pub changes: u64,
    /// Keys applied (a key changed in two rounds counts twice).
    pub keys: u64,
    /// Bytes copied from the source.
    pub bytes: u64,
    /// The capture ids of the tables touched, sorted.
    pub tables: Vec<i32>,
}

impl AppliedTotals {
    pub(crate) fn add(&mut self, round: &super::apply::Round) {
        self.changes += round.changes;
        self.keys += round.keys;
        self.bytes += round.bytes;
        self.tables.extend(&round.table_ids);
        self.tables.sort_unstable();
        self.tables.dedup();
    }
}

/// What the target must not enforce or fire while changes are applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HeldBack {
    /// Foreign keys dropped, to add back `NOT VALID` in the window.
    pub foreign_keys: Vec<HeldForeignKey>,
    /// User triggers disabled, to enable in the window.
    pub triggers: Vec<HeldTrigger>,
}

/// A foreign key dropped on the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldForeignKey {
    /// The table, quoted and qualified.
    pub table: String,
    /// The constraint's name, unquoted.
    pub name: String,
    /// `pg_get_constraintdef`, schema-qualified.
    pub definition: String,
    /// The table is partitioned: `NOT VALID` is not allowed there, so it
    /// is added back validated.
    pub partitioned: bool,
    /// `schema.table.constraint` as the server quotes it (the
    /// verification's name for it).
    pub qualified: String,
}

impl std::fmt::Display for HeldForeignKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.qualified)
    }
}

/// A trigger disabled on the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldTrigger {
    /// The table, quoted and qualified.
    pub table: String,
    /// The trigger's name, unquoted.
    pub name: String,
    /// `pg_trigger.tgenabled` before: `O`, `A` or `R`.
    pub enabled: String,
    /// `schema.table.trigger` as the server quotes it.
    pub qualified: String,
}

pub(crate) fn load(path: &Path) -> Result<Option<OnlineState>, OnlineError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(OnlineError::Journal {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let state: OnlineState =
        serde_json::from_slice(&text).map_err(|e| OnlineError::JournalMismatch {
            path: path.to_path_buf(),
            message: format!("not an online journal: {e}"),
        })?;
    if state.version > VERSION {
        return Err(OnlineError::JournalMismatch {
            path: path.to_path_buf(),
            message: format!(
                "written by a newer herokurds (format {}, this one reads {VERSION})",
                state.version
            ),
        });
    }
    Ok(Some(state))
}

pub(crate) fn save(path: &Path, state: &mut OnlineState) -> Result<(), OnlineError> {
    state.version = VERSION;
    let io = |source| OnlineError::Journal {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        crate::fsutil::create_private_dir(dir).map_err(io)?;
    }
    let text = serde_json::to_vec_pretty(state).expect("the state serializes");
    crate::fsutil::write_atomic(path, &text, crate::fsutil::PRIVATE_FILE).map_err(io)
}

/// Lists every foreign key and enabled user trigger on the target: what
/// [`hold_back`] takes. Journal it before holding back, so that a run
/// killed half-way still knows what to put back.
pub(crate) async fn holdable(target: &Client) -> Result<HeldBack, OnlineError> {
    let q = |what: &'static str| OnlineError::query(Side::Target, what);
    target
        .batch_execute("BEGIN; SELECT pg_catalog.set_config('search_path', '', true)")
        .await
        .map_err(q("listing foreign keys and triggers"))?;
    let fks = target
        .query(
            "SELECT c.conrelid::regclass::text, c.conname::text,
                    pg_catalog.pg_get_constraintdef(c.oid), r.relkind = 'p',
                    c.conrelid::regclass::text || '.' || pg_catalog.quote_ident(c.conname)
             FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_class r ON r.oid = c.conrelid
             WHERE c.contype = 'f' AND c.conparentid = 0
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(q("listing the target's foreign keys"))?;
    let triggers = target
        .query(
            "SELECT t.tgrelid::regclass::text, t.tgname::text, t.tgenabled::text,
                    t.tgrelid::regclass::text || '.' || pg_catalog.quote_ident(t.tgname)
             FROM pg_catalog.pg_trigger t
             WHERE NOT t.tgisinternal AND t.tgenabled <> 'D'
               AND t.tgname NOT IN ($1, $2)
             ORDER BY 1, 2",
            &[
                &super::capture::ROW_TRIGGER,
                &super::capture::TRUNCATE_TRIGGER,
            ],
        )
        .await
        .map_err(q("listing the target's triggers"))?;
    target
        .batch_execute("COMMIT")
        .await
        .map_err(q("listing foreign keys and triggers"))?;
    Ok(HeldBack {
        foreign_keys: fks
            .iter()
            .map(|r| HeldForeignKey {
                table: r.get(0),
                name: r.get(1),
                definition: r.get(2),
                partitioned: r.get(3),
                qualified: r.get(4),
            })
            .collect(),
        triggers: triggers
            .iter()
            .map(|r| HeldTrigger {
                table: r.get(0),
                name: r.get(1),
                enabled: r.get(2),
                qualified: r.get(3),
            })
            .collect(),
    })
}

/// Drops the foreign keys and disables the triggers of `held` (listed by
/// [`holdable`]) in one transaction. Doing it again is harmless.
pub(crate) async fn hold_back(target: &Client, held: &HeldBack) -> Result<(), OnlineError> {
    let mut sql = String::from("BEGIN;\n");
    for fk in &held.foreign_keys {
        sql.push_str(&format!(
            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {};\n",
            fk.table,
            quote_ident(&fk.name)
        ));
    }
    for t in &held.triggers {
        sql.push_str(&format!(
            "ALTER TABLE {} DISABLE TRIGGER {};\n",
            t.table,
            quote_ident(&t.name)
        ));
    }
    sql.push_str("COMMIT");
    target.batch_execute(&sql).await.map_err(OnlineError::query(
        Side::Target,
        "dropping foreign keys and disabling triggers",
    ))
}

/// Puts back what [`hold_back`] took, in one transaction: foreign keys as
/// `NOT VALID` (no scan; rows written from now on are checked), triggers
/// enabled as they were. Doing it again is harmless.
pub(crate) async fn restore(target: &Client, held: &HeldBack) -> Result<(), OnlineError> {
    // A restore killed after its commit and before the journal said so
    // runs again: what is already there stays.
    let q = |what: &'static str| OnlineError::query(Side::Target, what);
    target
        .batch_execute("BEGIN; SELECT pg_catalog.set_config('search_path', '', true)")
        .await
        .map_err(q("adding back foreign keys and enabling triggers"))?;
    let present: std::collections::HashSet<String> = target
        .query(
            "SELECT c.conrelid::regclass::text || '.' || pg_catalog.quote_ident(c.conname)
             FROM pg_catalog.pg_constraint c WHERE c.contype = 'f' AND c.conparentid = 0",
            &[],
        )
        .await
        .map_err(q("listing the target's foreign keys"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut sql = String::new();
    for fk in held
        .foreign_keys
        .iter()
        .filter(|fk| !present.contains(&fk.qualified))
    {
        let not_valid = if fk.partitioned { "" } else { " NOT VALID" };
        sql.push_str(&format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {}{not_valid};\n",
            fk.table,
            quote_ident(&fk.name),
            fk.definition
        ));
    }
    for t in &held.triggers {
        let how = match t.enabled.as_str() {
            "A" => "ALWAYS ",
            "R" => "REPLICA ",
            _ => "",
        };
        sql.push_str(&format!(
            "ALTER TABLE {} ENABLE {how}TRIGGER {};\n",
            t.table,
            quote_ident(&t.name)
        ));
    }
    sql.push_str("COMMIT");
    let done = target.batch_execute(&sql).await;
    if done.is_err() {
        let _ = target.batch_execute("ROLLBACK").await;
    }
    done.map_err(q("adding back foreign keys and enabling triggers"))
}

/// `VALIDATE CONSTRAINT` for one foreign key added back `NOT VALID`.
pub(crate) async fn validate(target: &Client, fk: &HeldForeignKey) -> Result<(), OnlineError> {
    if fk.partitioned {
        return Ok(());
    }
    target
        .batch_execute(&format!(
            "ALTER TABLE {} VALIDATE CONSTRAINT {}",
            fk.table,
            quote_ident(&fk.name)
        ))
        .await
        .map_err(OnlineError::query(
            Side::Target,
            format!("validating foreign key {fk}"),
        ))
}
