//! What the journal keeps of each long step (the copy, the proof, each
//! bucket sync): persisted with the journal, so a resumed run's report
//! covers the whole migration. The report renders them.

use serde::{Deserialize, Serialize};

/// What the database copy did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TransferSummary {
    /// Tables copied.
    pub tables: usize,
    /// Rows copied.
    pub rows: u64,
    /// Bytes of COPY data moved.
    pub bytes: u64,
    /// Wall seconds of the whole transfer.
    pub seconds: f64,
    /// Sequences set.
    pub sequences: usize,
    /// Large objects copied.
    pub large_objects: u64,
}

impl From<&crate::transfer::TransferReport> for TransferSummary {
    fn from(r: &crate::transfer::TransferReport) -> Self {
        TransferSummary {
            tables: r.tables.len(),
            rows: r.rows(),
            bytes: r.bytes(),
            seconds: r.seconds,
            sequences: r.sequences,
            large_objects: r.large_objects as u64,
        }
    }
}

impl TransferSummary {
    /// MB/s (MiB) over the whole transfer.
    pub fn mb_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / 1_048_576.0 / self.seconds
        } else {
            0.0
        }
    }

    /// Rows per second over the whole transfer.
    pub fn rows_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.rows as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// What verification found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifySummary {
    /// Whether the target equals the source.
    pub identical: bool,
    /// Tables compared.
    pub tables: usize,
    /// Whether contents were checksummed (not just counted).
    pub checksums: bool,
    /// Each difference, naming its object.
    pub differences: Vec<String>,
    /// Wall seconds.
    pub seconds: f64,
}

/// What one bucket sync did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct S3Summary {
    /// `s3://` source.
    pub source: String,
    /// `s3://` target.
    pub target: String,
    /// Which pass: `presync` or `final`.
    pub pass: String,
    /// Objects copied.
    pub copied: u64,
    /// Objects already up to date.
    pub skipped: u64,
    /// Objects deleted at the target.
    pub deleted: u64,
    /// Objects that failed.
    pub failed: u64,
    /// Bytes copied.
    pub bytes: u64,
}
