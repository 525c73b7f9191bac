//! Sequences and large objects: the state `COPY` does not carry.
//!
//! Sequences are not transactional, so no snapshot describes them: they
//! are read after the rows are in, as late as possible, which can only put
//! them ahead of the copied rows (a gap), never behind (a duplicate key
//! after cutover). Each is set with `setval(seq, last_value, is_called)`
//! (the name bound as a parameter), which reproduces descending sequences,
//! sequences never called and sequences ahead of their column's maximum
//! exactly.
//!
//! Large objects keep their oids (applications store them in their own
//! columns). Their contents are read in the snapshot with `lo_get` in
//! 4 MiB pieces — the source user can read the objects it owns — and
//! written with `lo_create(oid)` (unless pre-data already created it) and
//! `lo_put`, after truncating, so a retry or a resume rewrites them
//! exactly. They end up owned by the target user.

use tokio_postgres::Client;

use super::copy::{is_retryable, message};
use super::error::TransferError;
use crate::pg::catalog::{LargeObject, SequenceInfo};

/// Sets every sequence on the target, 500 per statement. Names, values
/// and flags travel as bind parameters (the quoted name cast with
/// `::regclass` on the server), never spliced into SQL text, so no name
/// can change the statement whatever the session's quoting settings.
pub(crate) async fn set_sequences(
    target: &Client,
    sequences: &[SequenceInfo],
) -> Result<(), TransferError> {
    for chunk in sequences.chunks(500) {
        let names: Vec<String> = chunk.iter().map(SequenceInfo::qualified_name).collect();
        let values: Vec<i64> = chunk.iter().map(|s| s.last_value).collect();
        let called: Vec<bool> = chunk.iter().map(|s| s.is_called).collect();
        let batch = target
            .execute(
                "SELECT pg_catalog.setval(s.name::regclass, s.value, s.called) \
                 FROM unnest($1::text[], $2::int8[], $3::bool[]) AS s(name, value, called)",
                &[&names, &values, &called],
            )
            .await;
        if batch.is_err() {
            // Name the sequence: set them one by one.
            for s in chunk {
                target
                    .execute(
                        "SELECT pg_catalog.setval($1::text::regclass, $2, $3)",
                        &[&s.qualified_name(), &s.last_value, &s.is_called],
                    )
                    .await
                    .map_err(|e| TransferError::Sequence {
                        sequence: s.to_string(),
                        message: message(&e),
                    })?;
            }
        }
    }
    Ok(())
}

/// How much of a large object is moved per round trip.
const LO_PIECE: i32 = 4 << 20;

/// Why a batch of large objects was not copied.
pub(crate) struct LargeObjectFailure {
    /// What failed, naming the object.
    pub(crate) error: TransferError,
    /// Worth redoing the batch on new sessions (a lost connection, a
    /// terminated backend, ...).
    pub(crate) retryable: bool,
}

/// Copies `objects` from `source` (a session inside the snapshot
/// transaction) to `target`, all in one target transaction. Returns the
/// bytes copied. Redoing a batch after a failure, even one whose COMMIT
/// went through unanswered, writes the same objects again exactly.
pub(crate) async fn copy_large_objects(
    source: &Client,
    target: &Client,
    objects: &[LargeObject],
) -> Result<u64, LargeObjectFailure> {
    let fail = |oid: u32| {
        move |e: tokio_postgres::Error| LargeObjectFailure {
            retryable: is_retryable(&e),
            error: TransferError::LargeObject {
                oid,
                message: message(&e),
            },
        }
    };
    let first = objects.first().map(|o| o.oid).unwrap_or(0);
    target.batch_execute("BEGIN").await.map_err(fail(first))?;
    let mut total = 0u64;
    for lo in objects {
        let oid = lo.oid;
        target
            .execute(
                "SELECT lo_create($1) WHERE NOT EXISTS \
                 (SELECT 1 FROM pg_largeobject_metadata WHERE oid = $1)",
                &[&oid],
            )
            .await
            .map_err(fail(oid))?;
        target
            .execute("SELECT lo_truncate(lo_open($1, 131072), 0)", &[&oid])
            .await
            .map_err(fail(oid))?;
        let mut offset: i64 = 0;
        loop {
            let piece: Vec<u8> = source
                .query_one("SELECT lo_get($1, $2, $3)", &[&oid, &offset, &LO_PIECE])
                .await
                .map_err(fail(oid))?
                .get(0);
            if piece.is_empty() {
                break;
            }
            target
                .execute("SELECT lo_put($1, $2, $3)", &[&oid, &offset, &piece])
                .await
                .map_err(fail(oid))?;
            offset += piece.len() as i64;
            total += piece.len() as u64;
            if piece.len() < LO_PIECE as usize {
                break;
            }
        }
    }
    target.batch_execute("COMMIT").await.map_err(fail(first))?;
    Ok(total)
}
