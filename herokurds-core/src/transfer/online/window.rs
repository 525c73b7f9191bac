//! The maintenance window of online mode, and the checks that replace a
//! whole-database verification there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::apply::{self, TableChanges};
use super::capture::{is_capture_object, CapturedTable};
use super::state::HeldBack;
use super::{OnlineError, OnlineEvent, OnlineMigration};
use crate::pg::catalog::{self, quote_literal};
use crate::progress::Progress;
use crate::transfer::endpoint::Role;
use crate::transfer::Side;
use crate::verify::{Detail, Difference};

/// What the window did.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct WindowReport {
    /// Log rows applied by the last round.
    pub changes: u64,
    /// Keys applied by the last round.
    pub keys: u64,
    /// Tables the last round touched.
    pub tables: usize,
    /// Bytes the last round copied from the source.
    pub bytes: u64,
    /// Tables whose changed keys (since the cut) were compared.
    pub tables_checked: usize,
    /// Keys compared on both sides.
    pub keys_checked: u64,
    /// Tables whose rows were counted on both sides (every table changed
    /// since capture started, for a migration started in sync).
    pub tables_counted: usize,
    /// Large objects copied again (written since the copy), if any.
    pub large_objects_recopied: Option<usize>,
    /// Sequences set.
    pub sequences: usize,
    /// Foreign keys added back `NOT VALID`.
    pub foreign_keys: usize,
    /// Triggers enabled again.
    pub triggers: usize,
    /// Each step and how long it took.
    pub steps: Vec<(String, f64)>,
    /// The whole window's work.
    pub seconds: f64,
}

/// Writes to large objects: `pg_stat` counters of `pg_largeobject` and its
/// metadata (`lo_*` calls change no user table, so no trigger sees them).
pub(crate) async fn large_object_changes(c: &Client) -> Result<i64, OnlineError> {
    c.batch_execute("SELECT pg_catalog.pg_stat_clear_snapshot()")
        .await
        .map_err(OnlineError::query(
            Side::Source,
            "reading large-object counters",
        ))?;
    let row = c
        .query_one(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::int8
             FROM pg_catalog.pg_stat_all_tables
             WHERE relid IN ('pg_catalog.pg_largeobject'::regclass,
                             'pg_catalog.pg_largeobject_metadata'::regclass)",
            &[],
        )
        .await
        .map_err(OnlineError::query(
            Side::Source,
            "reading large-object counters",
        ))?;
    Ok(row.get(0))
}

/// The schema as one map, `kind name` to its properties, capture objects
/// left out.
type SchemaMap = BTreeMap<String, BTreeMap<String, String>>;

pub(crate) fn schema_path(journal: &Path) -> PathBuf {
    journal.with_file_name("online-schema.json")
}

async fn describe(c: &Client) -> Result<SchemaMap, OnlineError> {
    let objects = crate::verify::describe_schema(c)
        .await
        .map_err(OnlineError::query(Side::Source, "describing the schema"))?;
    Ok(objects
        .into_iter()
        .filter(|o| !is_capture_object(&o.kind, &o.name))
        .map(|o| (format!("{} {}", o.kind, o.name), o.props))
        .collect())
}

/// Describes the schema in the copy's snapshot (a session importing it)
/// and keeps it next to the journal, for [`schema_changes`].
pub(crate) async fn save_schema(
    journal: &Path,
    snapshot_id: &str,
    source: &crate::url::DatabaseUrl,
) -> Result<(), OnlineError> {
    let c = crate::transfer::endpoint::Endpoint::source(source)
        .connect(Role::SourceReader, "")
        .await?;
    crate::transfer::snapshot::import(&c, snapshot_id).await?;
    c.batch_execute("SELECT pg_catalog.set_config('search_path', '', true)")
        .await
        .map_err(OnlineError::query(Side::Source, "describing the schema"))?;
    let map = describe(&c).await?;
    let _ = c.batch_execute("ROLLBACK").await;
    let path = schema_path(journal);
    let text = serde_json::to_vec(&map).expect("a map of strings serializes");
    // Capture started in sync saves the schema before its first journal.
    if let Some(dir) = path.parent() {
        crate::fsutil::create_private_dir(dir).map_err(|source| OnlineError::Journal {
            path: path.clone(),
            source,
        })?;
    }
    crate::fsutil::write_atomic(&path, &text, crate::fsutil::PRIVATE_FILE)
        .map_err(|source| OnlineError::Journal { path, source })
}

/// What changed in the source's schema since [`save_schema`], in words.
pub(crate) async fn schema_changes(journal: &Path, c: &Client) -> Result<Vec<String>, OnlineError> {
    let path = schema_path(journal);
    let text = std::fs::read(&path).map_err(|source| OnlineError::Journal {
        path: path.clone(),
        source,
    })?;
    let before: SchemaMap =
        serde_json::from_slice(&text).map_err(|e| OnlineError::JournalMismatch {
            path: path.clone(),
            message: format!("not a schema description: {e}"),
        })?;
    c.batch_execute("BEGIN; SELECT pg_catalog.set_config('search_path', '', true)")
        .await
        .map_err(OnlineError::query(Side::Source, "describing the schema"))?;
    let now = describe(c).await;
    let _ = c.batch_execute("ROLLBACK").await;
    Ok(diff_schema(&before, &now?))
}

fn diff_schema(before: &SchemaMap, now: &SchemaMap) -> Vec<String> {
    let mut out = Vec::new();
    for (name, props) in before {
        match now.get(name) {
            None => out.push(format!("{name} was dropped")),
            Some(p) if p != props => {
                let changed: Vec<&str> = props
                    .keys()
                    .chain(p.keys())
                    .filter(|k| props.get(*k) != p.get(*k))
                    .map(String::as_str)
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                out.push(format!("{name} changed ({})", changed.join(", ")));
            }
            Some(_) => {}
        }
    }
    for name in now.keys().filter(|n| !before.contains_key(*n)) {
        out.push(format!("{name} was created"));
    }
    out
}

/// Sorts the cut's differences into those expected until the window (in
/// words, with why) and the rest.
pub(crate) fn sort_differences(
    differences: &[Difference],
    held: &HeldBack,
    large_objects_written: bool,
) -> (Vec<String>, Vec<Difference>) {
    let mut expected = Vec::new();
    let mut other = Vec::new();
    for d in differences {
        let why = match (&d.kind[..], &d.detail) {
            ("constraint", Detail::MissingOnTarget)
                if held.foreign_keys.iter().any(|fk| d.name == fk.qualified) =>
            {
                Some("foreign key held back until the window")
            }
            (
                "trigger",
                Detail::Property {
                    property, target, ..
                },
            ) if property == "enabled"
                && target.as_deref() == Some("disabled")
                && held.triggers.iter().any(|t| d.name == t.qualified) =>
            {
                Some("trigger disabled until the window")
            }
            ("sequence", Detail::Property { .. }) => Some("sequences are set in the window"),
            ("large objects" | "large object", _) if large_objects_written => {
                Some("large objects were written since the copy: copied again in the window")
            }
            _ => None,
        };
        match why {
            Some(why) => expected.push(format!("{d} ({why})")),
            None => other.push(d.clone()),
        }
    }
    (expected, other)
}

/// Counts and checksums, on one side, the rows of `table` whose keys are
/// in `keys` (or all its rows when `keys` is `None`), inside the session's
/// open transaction.
async fn tally(
    c: &Client,
    side: Side,
    table: &CapturedTable,
    keys: Option<&serde_json::Value>,
) -> Result<(i64, String), OnlineError> {
    let filter = match keys {
        None => String::new(),
        Some(k) => format!(
            " WHERE {}",
            table.match_sql(&format!("{}::jsonb", quote_literal(&k.to_string())))
        ),
    };
    let sql = crate::verify::tally_sql(&table.qualified_name(), "herokurds_row", &filter);
    let row = c.query_one(&sql, &[]).await.map_err(OnlineError::query(
        side,
        format!("comparing changed rows of {table}"),
    ))?;
    Ok((row.get(0), row.get(1)))
}

/// Compares, table by table, the rows of every key changed since the cut.
async fn compare_changed(
    src: &Client,
    tgt: &Client,
    tables: &[CapturedTable],
    changed: &[TableChanges],
) -> Result<(usize, u64), OnlineError> {
    let mut differ = Vec::new();
    let mut keys = 0;
    for ch in changed {
        let Some(table) = tables.iter().find(|t| t.id == ch.id) else {
            continue;
        };
        let chunks: Vec<Option<serde_json::Value>> = if ch.truncated {
            vec![None]
        } else {
            ch.keys
                .chunks(10_000)
                .map(|c| Some(serde_json::Value::Array(c.to_vec())))
                .collect()
        };
        for k in &chunks {
            let (s, t) = futures::try_join!(
                tally(src, Side::Source, table, k.as_ref()),
                tally(tgt, Side::Target, table, k.as_ref())
            )?;
            if s != t {
                differ.push(format!(
                    "{table}: {} row(s) on the source vs {} on the target{}",
                    s.0,
                    t.0,
                    if s.0 == t.0 { " (contents differ)" } else { "" }
                ));
                break;
            }
        }
        keys += ch.keys.len() as u64;
    }
    if differ.is_empty() {
        Ok((changed.len(), keys))
    } else {
        Err(OnlineError::KeysDiffer { tables: differ })
    }
}

/// Compares the row count of every table in `changed` on both sides.
async fn compare_counts(
    src: &Client,
    tgt: &Client,
    tables: &[CapturedTable],
    changed: &[TableChanges],
) -> Result<(), OnlineError> {
    let mut differ = Vec::new();
    for ch in changed {
        let Some(table) = tables.iter().find(|t| t.id == ch.id) else {
            continue;
        };
        let sql = format!("SELECT count(*)::int8 FROM ONLY {}", table.qualified_name());
        let what = format!("counting the rows of {table}");
        let (s, t) = futures::try_join!(
            count(src, Side::Source, &sql, &what),
            count(tgt, Side::Target, &sql, &what)
        )?;
        if s != t {
            differ.push(format!(
                "{table}: {s} row(s) on the source vs {t} on the target"
            ));
        }
    }
    if differ.is_empty() {
        Ok(())
    } else {
        Err(OnlineError::KeysDiffer { tables: differ })
    }
}

async fn count(c: &Client, side: Side, sql: &str, what: &str) -> Result<i64, OnlineError> {
    c.query_one(sql, &[])
        .await
        .map(|r| r.get(0))
        .map_err(OnlineError::query(side, what))
}

/// The window (see [`OnlineMigration::finish_window`]).
pub(crate) async fn finish(
    m: &mut OnlineMigration<'_>,
    progress: &impl Progress<OnlineEvent>,
    cancel: &CancellationToken,
) -> Result<WindowReport, OnlineError> {
    let started = Instant::now();
    let mut report = WindowReport::default();
    let mut step_started = Instant::now();
    let mut step = |report: &mut WindowReport, name: &str| {
        let seconds = step_started.elapsed().as_secs_f64();
        progress.event(&OnlineEvent::WindowStep {
            step: name.to_string(),
            seconds,
        });
        report.steps.push((name.to_string(), seconds));
        step_started = Instant::now();
    };
    let src = m.source_session(Role::SourceReader).await?;
    let tgt = m.target_session(Role::TargetLoader).await?;
    let settings = crate::verify::SESSION_SETTINGS;

    if !m.state.window_done {
        // 1. DDL: the schema the copy saw (before applying: a changed
        //    table may not apply at all).
        let aux = m.source_session(Role::SourceReader).await?;
        let changes = schema_changes(&m.path, &aux).await?;
        if !changes.is_empty() {
            return Err(OnlineError::SchemaChanged { changes });
        }
        step(&mut report, "schema compared with the copy's");

        // 2. The last round; the source is settled, so it holds everything.
        m.hold_back(progress).await?;
        let infos = apply::table_infos(&src, &m.state.tables).await?;
        let round = m.round(&src, &tgt, &infos, false, progress, cancel).await?;
        report.changes = round.changes;
        report.keys = round.keys;
        report.tables = round.tables;
        report.bytes = round.bytes;
        step(&mut report, "last catch-up round");

        // 3. Every key changed since the cut, on both sides (the source
        //    still in the last round's snapshot).
        let cut = m.state.cut.clone().expect("checked by the caller");
        src.batch_execute(settings)
            .await
            .map_err(OnlineError::query(
                Side::Source,
                "setting up the comparison",
            ))?;
        tgt.batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; {settings}"
        ))
        .await
        .map_err(OnlineError::query(
            Side::Target,
            "setting up the comparison",
        ))?;
        let changed = apply::changes_since(&src, &cut).await?;
        let mut compared = compare_changed(&src, &tgt, &m.state.tables, &changed).await;
        if m.state.in_sync && compared.is_ok() {
            // Started in sync: each changed table's whole count too.
            if let Err(e) = compare_counts(&src, &tgt, &m.state.tables, &changed).await {
                compared = Err(e);
            }
            report.tables_counted = changed.len();
        }
        let _ = tgt.batch_execute("ROLLBACK").await;
        let (tables, keys) = compared?;
        report.tables_checked = tables;
        report.keys_checked = keys;
        step(&mut report, "rows changed since the cut compared");

        // 4. Large objects, if any was written since the copy.
        if large_object_changes(&aux).await? != m.state.large_object_changes.unwrap_or_default() {
            let los = catalog::large_objects(&src).await.map_err(|e| {
                crate::transfer::TransferError::Query {
                    side: Side::Source,
                    what: "listing large objects".into(),
                    message: e.to_string(),
                }
            })?;
            let oids: Vec<u32> = los.iter().map(|l| l.oid).collect();
            tgt.execute(
                "SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata \
                 WHERE oid <> ALL($1::oid[])",
                &[&oids],
            )
            .await
            .map_err(OnlineError::query(
                Side::Target,
                "removing large objects deleted on the source",
            ))?;
            for chunk in los.chunks(1000) {
                crate::transfer::objects::copy_large_objects(&src, &tgt, chunk)
                    .await
                    .map_err(|f| f.error)?;
            }
            report.large_objects_recopied = Some(los.len());
            step(&mut report, "large objects copied again");
        }
        let _ = src.batch_execute("COMMIT").await;

        // 5. Sequences, read now, set, and read back.
        let sequences = read_sequences(&src, Side::Source).await?;
        crate::transfer::objects::set_sequences(&tgt, &sequences).await?;
        let values = |s: &[catalog::SequenceInfo]| {
            s.iter()
                .map(|q| (q.qualified_name(), q.last_value, q.is_called))
                .collect::<Vec<_>>()
        };
        if values(&read_sequences(&tgt, Side::Target).await?) != values(&sequences) {
            return Err(OnlineError::KeysDiffer {
                tables: vec!["sequences differ on the target after setting them".into()],
            });
        }
        report.sequences = sequences.len();
        step(&mut report, "sequences set");
        m.state.window_done = true;
        m.save()?;
    }

    // 6. Foreign keys and triggers back.
    if !m.state.restored {
        let held = m.state.held_back.clone().unwrap_or_default();
        let builder = m.target_session(Role::TargetBuilder).await?;
        super::state::restore(&builder, &held).await?;
        report.foreign_keys = held.foreign_keys.len();
        report.triggers = held.triggers.len();
        m.state.restored = true;
        m.save()?;
        step(&mut report, "foreign keys (NOT VALID) and triggers back");
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn read_sequences(c: &Client, side: Side) -> Result<Vec<catalog::SequenceInfo>, OnlineError> {
    catalog::sequences(c).await.map_err(|e| {
        crate::transfer::TransferError::Query {
            side,
            what: "reading sequences".into(),
            message: e.to_string(),
        }
        .into()
    })
}
