//! What a transfer tells its caller: events while it runs, a preflight
//! report before, a [`TransferReport`] after.

use serde::Serialize;

use super::options::CopyFormat;

/// A step of the transfer, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// Connections, versions, tools, extensions, emptiness, row security.
    Preflight,
    /// `pg_dump` of the schema under the snapshot.
    SchemaDump,
    /// `pg_restore --section=pre-data`.
    PreData,
    /// Rows, with each table's indexes built as soon as its rows are in.
    Data,
    /// The rest of post-data: foreign keys, triggers, policies, refreshes.
    PostData,
    /// `setval` of every sequence.
    Sequences,
    /// Large objects with their oids.
    LargeObjects,
}

/// Which part of a table a copy moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Slice {
    /// 1-based.
    pub index: u32,
    /// How many slices the table is cut into.
    pub count: u32,
}

/// An event of a running transfer; rendered by the binary as progress bars
/// or NDJSON. Tables are named `schema.name`, unquoted.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TransferEvent {
    /// The preflight passed.
    PreflightPassed {
        /// Tables whose rows will be copied.
        tables: usize,
        /// Their estimated size (heap + TOAST).
        estimated_bytes: u64,
        /// Sequences.
        sequences: usize,
        /// Large objects.
        large_objects: usize,
        /// Source server version.
        source_version: String,
        /// Target server version.
        target_version: String,
    },
    /// The snapshot every session reads was exported.
    SnapshotExported {
        /// The snapshot id.
        id: String,
        /// The source's WAL position then, if readable.
        lsn: Option<String>,
    },
    /// A phase began.
    PhaseStarted {
        /// Which.
        phase: Phase,
    },
    /// A phase ended.
    PhaseFinished {
        /// Which.
        phase: Phase,
        /// How long it took.
        seconds: f64,
    },
    /// A table (or slice) began copying.
    TableStarted {
        /// `schema.name`.
        table: String,
        /// The slice, for a table copied in parts.
        slice: Option<Slice>,
        /// Estimated bytes of the whole table.
        estimated_bytes: u64,
        /// 1 for the first attempt.
        attempt: u32,
    },
    /// A table (or slice) is copying.
    TableProgress {
        /// `schema.name`.
        table: String,
        /// The slice, if any.
        slice: Option<Slice>,
        /// Rows so far (approximate until finished).
        rows: u64,
        /// Bytes of COPY data so far.
        bytes: u64,
        /// Seconds since it started.
        elapsed: f64,
    },
    /// A table (or slice) is committed on the target.
    TableFinished {
        /// `schema.name`.
        table: String,
        /// The slice, if any.
        slice: Option<Slice>,
        /// Rows copied.
        rows: u64,
        /// Bytes of COPY data.
        bytes: u64,
        /// Seconds.
        seconds: f64,
    },
    /// A table was not copied in this run.
    TableSkipped {
        /// `schema.name`.
        table: String,
        /// Why: already done (resume), or excluded.
        reason: String,
    },
    /// Something failed and will be tried again.
    Retrying {
        /// What: `table public.t`, `INDEX public.i`, ...
        item: String,
        /// The attempt about to start (2 for the first retry).
        attempt: u32,
        /// Attempts allowed.
        of: u32,
        /// Seconds waited before it.
        backoff: f64,
        /// What failed.
        error: String,
    },
    /// An index or constraint of a loaded table is being built.
    IndexStarted {
        /// `schema.name` of the table.
        table: String,
        /// e.g. `INDEX public.orders_customer_id_idx`.
        item: String,
    },
    /// An index or constraint is built.
    IndexFinished {
        /// `schema.name` of the table.
        table: String,
        /// e.g. `CONSTRAINT public.orders orders_pkey`.
        item: String,
        /// Seconds.
        seconds: f64,
    },
    /// A post-data entry (after all data) ran.
    PostDataItem {
        /// e.g. `FK CONSTRAINT public.orders orders_customer_id_fkey`.
        item: String,
        /// Seconds.
        seconds: f64,
    },
    /// Sequences are set.
    SequencesSet {
        /// How many.
        count: usize,
    },
    /// Large objects are copied.
    LargeObjectsCopied {
        /// How many.
        count: usize,
        /// Their total size.
        bytes: u64,
    },
    /// Worth knowing, not stopping for.
    Warning {
        /// What.
        message: String,
    },
}

/// An extension of the source and whether the target can have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ExtensionCheck {
    /// Its name.
    pub name: String,
    /// Its schema on the source.
    pub schema: String,
    /// Its version on the source.
    pub version: String,
    /// Already installed in the target database.
    pub installed_on_target: bool,
    /// Offered by the target server (`pg_available_extensions`).
    pub available_on_target: bool,
    /// The target user may create it (trusted, superuser, or RDS's
    /// `rds_superuser` for an extension RDS allows).
    pub creatable: bool,
    /// Excluded by the caller.
    pub excluded: bool,
}

/// What the preflight found; `problems` empty means the transfer may start.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PreflightReport {
    /// Source server version (`server_version`).
    pub source_version: String,
    /// Target server version.
    pub target_version: String,
    /// The source user.
    pub source_user: String,
    /// The target user.
    pub target_user: String,
    /// The `pg_dump` that will run, and its version.
    pub pg_dump: Option<String>,
    /// Tables whose rows will be copied.
    pub tables: usize,
    /// Tables matched by an exclusion pattern.
    pub excluded_tables: Vec<String>,
    /// Estimated bytes to copy (heap + TOAST of those tables).
    pub estimated_bytes: u64,
    /// Sequences.
    pub sequences: usize,
    /// Large objects.
    pub large_objects: usize,
    /// Every extension of the source.
    pub extensions: Vec<ExtensionCheck>,
    /// Tables already in the target database.
    pub target_tables: usize,
    /// Reasons not to start.
    pub problems: Vec<super::PreflightProblem>,
    /// Worth knowing, not stopping for.
    pub warnings: Vec<String>,
}

impl PreflightReport {
    /// Whether the transfer may start.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Write activity counters of a source table when the snapshot was taken
/// (`pg_stat_user_tables`), so later activity can be told apart. They are
/// the statistics system's, which sessions report when a transaction ends
/// (at most once a second), so very recent writes may not be counted yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TableActivity {
    /// `n_tup_ins`.
    pub inserted: i64,
    /// `n_tup_upd`.
    pub updated: i64,
    /// `n_tup_del`.
    pub deleted: i64,
}

/// One table of the final report.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TableReport {
    /// `schema.name`.
    pub table: String,
    /// Rows copied (over all runs, for a resumed transfer).
    pub rows: u64,
    /// Bytes of COPY data.
    pub bytes: u64,
    /// Seconds spent copying.
    pub seconds: f64,
    /// Slices it was cut into (1 when copied whole).
    pub slices: u32,
    /// The COPY format used.
    pub format: CopyFormat,
    /// Copied by an earlier run (resume).
    pub from_earlier_run: bool,
    /// Source activity counters at snapshot time.
    pub source_activity: Option<TableActivity>,
}

/// The snapshot a transfer read, for verification and for telling later
/// source writes apart.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// The exported snapshot id (valid only while its session is open).
    pub id: String,
    /// `pg_current_wal_lsn()` on the source when exported, if permitted.
    pub lsn: Option<String>,
    /// When it was exported.
    pub taken_at: chrono::DateTime<chrono::Utc>,
}

/// What a finished transfer did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TransferReport {
    /// The snapshot the rows of this run were read in.
    pub snapshot: SnapshotInfo,
    /// Source server version.
    pub source_version: String,
    /// Target server version.
    pub target_version: String,
    /// Every copied table.
    pub tables: Vec<TableReport>,
    /// Tables excluded from the copy (created empty).
    pub excluded_tables: Vec<String>,
    /// Extensions left out.
    pub excluded_extensions: Vec<String>,
    /// Indexes and constraints built per table, plus post-data entries run.
    pub post_data_items: usize,
    /// Sequences set.
    pub sequences: usize,
    /// Large objects copied.
    pub large_objects: usize,
    /// Their bytes.
    pub large_object_bytes: u64,
    /// Whether this run finished an earlier one.
    pub resumed: bool,
    /// Seconds per phase.
    pub phases: Vec<(Phase, f64)>,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
    /// Worth knowing.
    pub warnings: Vec<String>,
}

impl TransferReport {
    /// Rows copied.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    /// Bytes of COPY data plus large objects.
    pub fn bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.bytes).sum::<u64>() + self.large_object_bytes
    }

    /// Throughput over the whole run, in MB (10^6 bytes) per second.
    pub fn mb_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes() as f64 / 1e6 / self.seconds
        } else {
            0.0
        }
    }

    /// Rows per second over the whole run.
    pub fn rows_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.rows() as f64 / self.seconds
        } else {
            0.0
        }
    }
}
