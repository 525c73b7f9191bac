//! The streaming database copy: a Heroku Postgres database into an empty
//! RDS database, consistent, parallel, with no dump file.
//!
//! This replaces the runbook's `pg_dump -x -O > dump.sql; psql < dump.sql`.
//! [`run`] does, in order (each step journaled in the work directory, so
//! [`ResumeMode::Resume`] finishes an interrupted run):
//! 1. **preflight** ([`preflight`] runs it alone): both sessions over TLS,
//!    server versions, a `pg_dump` at least as new as the source, an empty
//!    target, every extension creatable on the target (or excluded), no
//!    rows hidden by row-level security;
//! 2. **snapshot** ([`Snapshot`]): one exported snapshot, held open; every
//!    reader imports it, `pg_dump` uses it;
//! 3. **schema**: `pg_dump --format=custom` of pre- and post-data into the
//!    work directory, pre-data restored in one transaction;
//! 4. **data**: `jobs` workers pipe `COPY TO STDOUT` into `COPY FROM STDIN`
//!    as raw bytes (binary format unless a column's binary form is not
//!    portable), whole tables as `TRUNCATE` + `COPY FREEZE` in one
//!    transaction, large tables in `ctid` slices; each table's indexes and
//!    primary/unique/exclusion constraints are built by `index_jobs` other
//!    sessions as soon as its rows are in, while other tables still copy;
//! 5. **large objects**, with their oids;
//! 6. **post-data**: foreign keys, triggers, policies, partitioned indexes,
//!    materialized-view refreshes, in dependency order, in parallel;
//! 7. **sequences**: `setval` with `last_value` and `is_called`, read last.
//!
//! The library never prints: it reports [`TransferEvent`]s to a
//! [`Progress`] and returns a [`TransferReport`]. Cancellation comes in as
//! a token; a cancelled run leaves only committed tables on the target and
//! a journal `--resume` finishes.
//!
//! **What resume guarantees.** A resumed run reads the rest of the data in
//! a *new* snapshot: tables finished before keep the rows of the old one.
//! That is exact for a source nobody writes to (the maintenance window,
//! with worker dynos stopped too), which is what a migration has; if the
//! source changed in between, the target mixes two instants — run the
//! verification (which compares against the source as it is now) to prove
//! it either way.

mod copy;
mod endpoint;
mod error;
mod journal;
mod objects;
mod options;
mod plan;
mod preflight;
mod report;
mod schema;
mod snapshot;
mod tools;
mod worker;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use error::{PreflightProblem, Side, TransferError};
pub use options::{parse_size, CopyFormat, ResumeMode, RetryPolicy, TransferOptions};
pub use report::{
    ExtensionCheck, Phase, PreflightReport, Slice, SnapshotInfo, TableActivity, TableReport,
    TransferEvent, TransferReport,
};
pub use snapshot::Snapshot;

use crate::pg::catalog::{self, TableFilter, TableInfo};
use crate::progress::Progress;
use crate::url::DatabaseUrl;
use endpoint::{Endpoint, Role};
use journal::{Journal, Lock, LockError, Paths};

/// Checks everything that can be checked without writing to the target
/// (see the module documentation). Problems are in the report, not an
/// error: `Err` means a check could not run (e.g. a connection failed).
/// With [`ResumeMode::Resume`] a non-empty target is expected.
pub async fn preflight(
    source: &DatabaseUrl,
    target: &DatabaseUrl,
    opts: &TransferOptions,
) -> Result<PreflightReport, TransferError> {
    let src = Endpoint::source(source)
        .connect(Role::SourceReader, "")
        .await?;
    let tgt = Endpoint::target(target).connect_plain().await?;
    let filter = table_filter(opts)?;
    let resuming = opts.get_resume_mode() == ResumeMode::Resume;
    let (pf, _) = preflight::check(&src, &tgt, opts, &filter, resuming).await?;
    Ok(pf.report)
}

/// Copies `source` into `target` (see the module documentation), under a
/// snapshot of its own.
pub async fn run(
    source: &DatabaseUrl,
    target: &DatabaseUrl,
    opts: &TransferOptions,
    progress: &impl Progress<TransferEvent>,
    cancel: CancellationToken,
) -> Result<TransferReport, TransferError> {
    run_inner(source, target, None, opts, progress, cancel).await
}

/// Like [`run`], reading in `snapshot`, which the caller exported and
/// keeps: verify the target in the same snapshot afterwards, then drop it.
pub async fn run_in_snapshot(
    source: &DatabaseUrl,
    target: &DatabaseUrl,
    snapshot: &Snapshot,
    opts: &TransferOptions,
    progress: &impl Progress<TransferEvent>,
    cancel: CancellationToken,
) -> Result<TransferReport, TransferError> {
    run_inner(source, target, Some(snapshot), opts, progress, cancel).await
}

fn table_filter(opts: &TransferOptions) -> Result<TableFilter, TransferError> {
    TableFilter::from_patterns(opts.get_exclude_tables().iter().cloned()).map_err(|e| {
        TransferError::Query {
            side: Side::Source,
            what: "--exclude-table".into(),
            message: e.to_string(),
        }
    })
}

/// Runs `fut` while forwarding the workers' events to `progress`.
async fn forwarding<P: Progress<TransferEvent>>(
    fut: impl Future<Output = ()>,
    rx: &mut mpsc::UnboundedReceiver<TransferEvent>,
    progress: &P,
) {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            _ = &mut fut => break,
            Some(ev) = rx.recv() => progress.event(&ev),
        }
    }
    while let Ok(ev) = rx.try_recv() {
        progress.event(&ev);
    }
}

/// Times phases and reports their start and end.
struct Phases<'p, P> {
    progress: &'p P,
    done: Vec<(Phase, f64)>,
}

impl<P: Progress<TransferEvent>> Phases<'_, P> {
    fn start(&self, phase: Phase) -> Instant {
        self.progress.event(&TransferEvent::PhaseStarted { phase });
        Instant::now()
    }

    fn finish(&mut self, phase: Phase, started: Instant) {
        let seconds = started.elapsed().as_secs_f64();
        self.done.push((phase, seconds));
        self.progress
            .event(&TransferEvent::PhaseFinished { phase, seconds });
    }
}

/// Stops with [`TransferError::Cancelled`] once `cancel` fires.
async fn cancellable<T>(
    cancel: &CancellationToken,
    fut: impl Future<Output = Result<T, TransferError>>,
) -> Result<T, TransferError> {
    tokio::select! {
        _ = cancel.cancelled() => Err(TransferError::Cancelled),
        r = fut => r,
    }
}

/// Decides what to do with an existing journal, per the resume mode.
async fn open_journal(
    paths: &Paths,
    mode: ResumeMode,
    src: &Endpoint<'_>,
    tgt: &Endpoint<'_>,
) -> Result<(Journal, bool), TransferError> {
    let existing = Journal::load(paths).map_err(TransferError::work_dir(&paths.journal))?;
    let wd = |message: String| TransferError::WorkDir {
        path: paths.journal.clone(),
        message,
    };
    let fresh = || Journal::new(src.identity(), tgt.identity());
    match mode {
        ResumeMode::Fresh => {
            if let Some(j) = existing {
                if !j.finished {
                    return Err(wd(format!(
                        "an unfinished transfer from {} to {} is journaled here: finish it with \
                         --resume, start over with --restart, or use another --work-dir",
                        j.source, j.target
                    )));
                }
                Journal::remove(paths).map_err(TransferError::work_dir(&paths.dir))?;
            }
            Ok((fresh(), false))
        }
        ResumeMode::Resume => {
            let j = existing.ok_or_else(|| {
                wd("there is no transfer to resume here: run without --resume".into())
            })?;
            if j.source != src.identity() || j.target != tgt.identity() {
                return Err(wd(format!(
                    "the journaled transfer is from {} to {}, not from {} to {}: resume it with \
                     those URLs, or use another --work-dir",
                    j.source,
                    j.target,
                    src.identity(),
                    tgt.identity()
                )));
            }
            Ok((j, true))
        }
        ResumeMode::Restart => {
            if let Some(j) = existing {
                if j.target != tgt.identity() {
                    return Err(wd(format!(
                        "the journaled transfer wrote to {}, not {}: --restart only drops what a \
                         transfer journaled here created",
                        j.target,
                        tgt.identity()
                    )));
                }
                // Everything the transfer created belongs to the target user
                // (--no-owner): drop it, keep the database.
                let c = tgt.connect_plain().await?;
                c.batch_execute(
                    "DROP OWNED BY CURRENT_USER CASCADE; CREATE SCHEMA IF NOT EXISTS public",
                )
                .await
                .map_err(TransferError::query(
                    Side::Target,
                    "dropping the earlier transfer's objects (--restart)",
                ))?;
                Journal::remove(paths).map_err(TransferError::work_dir(&paths.dir))?;
            }
            Ok((fresh(), false))
        }
    }
}

async fn run_inner(
    source: &DatabaseUrl,
    target: &DatabaseUrl,
    given_snapshot: Option<&Snapshot>,
    opts: &TransferOptions,
    progress: &impl Progress<TransferEvent>,
    cancel: CancellationToken,
) -> Result<TransferReport, TransferError> {
    let started = Instant::now();
    let src = Endpoint::source(source);
    let tgt = Endpoint::target(target);
    let filter = table_filter(opts)?;
    let mut phases = Phases {
        progress,
        done: Vec::new(),
    };

    // The work directory, its lock, the journal.
    let paths = Paths::new(opts.get_work_dir());
    paths
        .create()
        .map_err(TransferError::work_dir(&paths.dir))?;
    let _lock = Lock::acquire(&paths.lock).map_err(|e| match e {
        LockError::Held(pid) => TransferError::Locked {
            path: paths.lock.clone(),
            pid,
        },
        LockError::Io(e) => TransferError::work_dir(&paths.lock)(e),
    })?;
    let (mut journal, resumed) = open_journal(&paths, opts.get_resume_mode(), &src, &tgt).await?;

    // 1. Preflight.
    let t = phases.start(Phase::Preflight);
    let meta_src = src.connect(Role::SourceReader, "").await?;
    let meta_tgt = tgt.connect(Role::TargetLoader, "").await?;
    let (pf, _) = preflight::check(&meta_src, &meta_tgt, opts, &filter, resumed).await?;
    if !pf.report.is_ok() {
        return Err(TransferError::Preflight {
            problems: pf.report.problems,
        });
    }
    let tools = pf
        .tools
        .clone()
        .expect("no tools problem means tools found");
    let mut warnings = pf.report.warnings.clone();
    for w in &warnings {
        progress.event(&TransferEvent::Warning { message: w.clone() });
    }
    progress.event(&TransferEvent::PreflightPassed {
        tables: pf.report.tables,
        estimated_bytes: pf.report.estimated_bytes,
        sequences: pf.report.sequences,
        large_objects: pf.report.large_objects,
        source_version: pf.report.source_version.clone(),
        target_version: pf.report.target_version.clone(),
    });
    phases.finish(Phase::Preflight, t);
    if cancel.is_cancelled() {
        return Err(TransferError::Cancelled);
    }

    // 2. The snapshot, and the inventory as it sees it.
    let own_snapshot;
    let snap = match given_snapshot {
        Some(s) => s,
        None => {
            own_snapshot = cancellable(&cancel, Snapshot::export(source)).await?;
            &own_snapshot
        }
    };
    progress.event(&TransferEvent::SnapshotExported {
        id: snap.id().to_string(),
        lsn: snap.lsn().map(str::to_string),
    });
    let inv = catalog::inventory(snap.client(), &filter)
        .await
        .map_err(|e| TransferError::Query {
            side: Side::Source,
            what: "reading the catalog in the snapshot".into(),
            message: e.to_string(),
        })?;
    let mut tables: Vec<TableInfo> = inv.tables_to_copy().cloned().collect();
    tables.sort_by(|a, b| b.table_bytes.cmp(&a.table_bytes).then(a.oid.cmp(&b.oid)));
    // Nobody may drop or alter them while they are copied.
    for chunk in tables.chunks(500) {
        let names: Vec<String> = chunk.iter().map(|t| t.qualified_name()).collect();
        snap.client()
            .batch_execute(&format!(
                "LOCK TABLE {} IN ACCESS SHARE MODE",
                names.join(", ")
            ))
            .await
            .map_err(TransferError::query(
                Side::Source,
                "locking the tables to copy",
            ))?;
    }
    journal.runs += 1;
    journal
        .save(&paths)
        .map_err(TransferError::work_dir(&paths.journal))?;

    // 3. Schema: dump once, pre-data once.
    let excluded_ext: Vec<String> = opts.get_exclude_extensions().to_vec();
    if !journal.schema_dumped {
        let t = phases.start(Phase::SchemaDump);
        let conn = src.tool_conn();
        cancellable(&cancel, async {
            schema::dump(&tools, &conn, snap.id(), &paths.archive)
                .await
                .map_err(TransferError::from)
        })
        .await?;
        journal.schema_dumped = true;
        journal
            .save(&paths)
            .map_err(TransferError::work_dir(&paths.journal))?;
        phases.finish(Phase::SchemaDump, t);
    }
    if !journal.pre_data_done {
        let t = phases.start(Phase::PreData);
        let conn = tgt.tool_conn();
        cancellable(&cancel, async {
            schema::restore_pre_data(
                &tools,
                &conn,
                &paths.archive,
                &paths.pre_data_list,
                &excluded_ext,
            )
            .await
            .map_err(TransferError::from)
        })
        .await?;
        journal.pre_data_done = true;
        journal
            .save(&paths)
            .map_err(TransferError::work_dir(&paths.journal))?;
        phases.finish(Phase::PreData, t);
    }
    let entries =
        schema::post_data(&tools, &paths.archive, &paths.post_data_list, &excluded_ext).await?;
    let mut post = plan::classify(snap.client(), entries, &inv.tables).await?;

    // Slices a resumed run left committing: did they commit?
    if resumed {
        settle_committing(&mut journal, &meta_tgt).await?;
        journal
            .save(&paths)
            .map_err(TransferError::work_dir(&paths.journal))?;
    }

    // 4. Data, with each table's indexes built as soon as it is in.
    let t = phases.start(Phase::Data);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let work_cancel = cancel.child_token();
    let earlier_done: Vec<bool> = tables
        .iter()
        .map(|t| journal.tables.get(&t.to_string()).is_some_and(|s| s.done))
        .collect();
    let post_done = journal.post_data_done.clone();
    let mut all_tasks = Vec::new();
    let mut bounds_by_table = Vec::new();
    for (i, table) in tables.iter().enumerate() {
        let key = table.to_string();
        let state = journal.table(&key);
        let bounds = match &state.slice_bounds {
            Some(b) if state.truncated => b.clone(),
            _ => {
                let n = plan::slice_count(table, opts.get_split_threshold());
                let b = plan::slice_bounds(table.heap_blocks, n);
                state.slice_bounds = (!b.is_empty()).then(|| b.clone());
                b
            }
        };
        bounds_by_table.push(bounds.clone());
        if earlier_done[i] {
            continue;
        }
        all_tasks.extend(plan::tasks_for(i, &bounds).into_iter().filter(|t| {
            t.slice
                .is_none_or(|s| !state.slices_done.contains(&s.index))
        }));
    }
    // Interleave: largest tables first, a split table's slices together.
    let sh = worker::Shared::new(
        source.clone(),
        target.clone(),
        snap.id().to_string(),
        opts.clone(),
        work_cancel.clone(),
        tx,
        paths.clone(),
        journal,
        resumed,
        tables.clone(),
    );
    sh.journal_flush()?;
    sh.queue_tasks(all_tasks);
    for (i, table) in tables.iter().enumerate() {
        if earlier_done[i] {
            progress.event(&TransferEvent::TableSkipped {
                table: table.to_string(),
                reason: "copied by an earlier run".into(),
            });
        }
    }
    for t in inv.tables.iter().filter(|t| t.excluded && t.holds_rows()) {
        progress.event(&TransferEvent::TableSkipped {
            table: t.to_string(),
            reason: "excluded".into(),
        });
    }
    sh.schedule(
        schedule_early(
            std::mem::take(&mut post.early),
            &tables,
            &earlier_done,
            &post_done,
            opts.get_analyze(),
        ),
        post_done.iter().copied(),
    );
    let workers = {
        let sh = sh.clone();
        async move {
            let copies: Vec<_> = (0..opts.get_jobs())
                .map(|_| tokio::spawn(worker::copy_worker(sh.clone())))
                .collect();
            let builders: Vec<_> = (0..opts.get_index_jobs())
                .map(|_| tokio::spawn(worker::index_worker(sh.clone())))
                .collect();
            for h in copies {
                let _ = h.await;
            }
            sh.close_early();
            for h in builders {
                let _ = h.await;
            }
        }
    };
    forwarding(workers, &mut rx, progress).await;
    stop_if_failed(&sh, &cancel)?;
    sh.journal_flush()?;
    phases.finish(Phase::Data, t);

    // 5. Large objects, read in the snapshot.
    let lo_done = sh
        .journal
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .large_objects_done;
    let mut lo_bytes = 0;
    if !lo_done && !inv.large_objects.is_empty() {
        let t = phases.start(Phase::LargeObjects);
        let reader = src.connect(Role::SourceReader, "").await?;
        snapshot::import(&reader, snap.id()).await?;
        for chunk in inv.large_objects.chunks(1000) {
            lo_bytes += cancellable(
                &cancel,
                objects::copy_large_objects(&reader, &meta_tgt, chunk),
            )
            .await?;
        }
        sh.journal_update(true, |j| j.large_objects_done = true)?;
        progress.event(&TransferEvent::LargeObjectsCopied {
            count: inv.large_objects.len(),
            bytes: lo_bytes,
        });
        phases.finish(Phase::LargeObjects, t);
    }

    // 6. The rest of post-data.
    let late: Vec<schema::PostDataEntry> = post
        .late
        .into_iter()
        .filter(|e| !post_done.contains(&e.dump_id))
        .collect();
    if !late.is_empty() {
        let t = phases.start(Phase::PostData);
        forwarding(worker::run_late(sh.clone(), late), &mut rx, progress).await;
        stop_if_failed(&sh, &cancel)?;
        sh.journal_flush()?;
        phases.finish(Phase::PostData, t);
    }

    // 7. Sequences, read now: never behind the rows.
    let t = phases.start(Phase::Sequences);
    let sequences = catalog::sequences(&meta_src)
        .await
        .map_err(|e| TransferError::Query {
            side: Side::Source,
            what: "reading sequences".into(),
            message: e.to_string(),
        })?;
    cancellable(&cancel, objects::set_sequences(&meta_tgt, &sequences)).await?;
    progress.event(&TransferEvent::SequencesSet {
        count: sequences.len(),
    });
    phases.finish(Phase::Sequences, t);

    sh.journal_update(true, |j| {
        j.sequences_done = true;
        j.finished = true;
    })?;
    let journal = sh.journal.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let tally = sh.tally.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if lo_bytes == 0 && lo_done {
        warnings.push("large objects were copied by an earlier run".into());
    }
    let report_tables = tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let state = journal
                .tables
                .get(&t.to_string())
                .cloned()
                .unwrap_or_default();
            TableReport {
                table: t.to_string(),
                rows: state.rows.max(tally[i].rows),
                bytes: state.bytes.max(tally[i].bytes),
                seconds: state.seconds,
                slices: bounds_by_table[i].len() as u32 + 1,
                format: sh.formats[i],
                from_earlier_run: earlier_done[i],
                source_activity: snap.activity(t.oid),
            }
        })
        .collect();
    Ok(TransferReport {
        snapshot: snap.info().clone(),
        source_version: pf.report.source_version,
        target_version: pf.report.target_version,
        tables: report_tables,
        excluded_tables: pf.report.excluded_tables,
        excluded_extensions: excluded_ext,
        post_data_items: sh
            .post_data_items
            .load(std::sync::atomic::Ordering::Relaxed),
        sequences: sequences.len(),
        large_objects: inv.large_objects.len(),
        large_object_bytes: lo_bytes,
        resumed,
        phases: phases.done,
        seconds: started.elapsed().as_secs_f64(),
        warnings,
    })
}

/// The early items with the copied tables (by plan index) each waits for,
/// ordered so the largest tables' items come first; an `ANALYZE` per table
/// copied in this run follows its table's other items.
fn schedule_early(
    early: Vec<plan::EarlyItem>,
    tables: &[TableInfo],
    earlier_done: &[bool],
    post_done: &std::collections::BTreeSet<i32>,
    analyze: bool,
) -> Vec<(plan::EarlyItem, Vec<usize>)> {
    let index_of: std::collections::HashMap<u32, usize> =
        tables.iter().enumerate().map(|(i, t)| (t.oid, i)).collect();
    let mut own: std::collections::HashMap<usize, Vec<i32>> = Default::default();
    let mut out: Vec<(usize, bool, plan::EarlyItem, Vec<usize>)> = Vec::new();
    for item in early {
        let Some(id) = item.dump_id else { continue };
        let copied: Vec<usize> = item
            .tables
            .iter()
            .filter_map(|oid| index_of.get(oid).copied())
            .collect();
        if let [only] = copied[..] {
            if item.tables.len() == 1 {
                own.entry(only).or_default().push(id);
            }
        }
        if post_done.contains(&id) {
            continue;
        }
        let waits: Vec<usize> = copied
            .iter()
            .copied()
            .filter(|i| !earlier_done[*i])
            .collect();
        let order = copied.iter().copied().max().unwrap_or(0);
        out.push((order, false, item, waits));
    }
    if analyze {
        for (i, table) in tables.iter().enumerate().filter(|(i, _)| !earlier_done[*i]) {
            out.push((
                i,
                true,
                plan::EarlyItem {
                    dump_id: None,
                    table: table.to_string(),
                    label: format!("ANALYZE {table}"),
                    steps: plan::EarlySteps::Analyze(format!("ANALYZE {}", table.qualified_name())),
                    tables: vec![table.oid],
                    deps: own.remove(&i).unwrap_or_default(),
                },
                vec![i],
            ));
        }
    }
    out.sort_by_key(|(order, is_analyze, _, _)| (*order, *is_analyze));
    out.into_iter()
        .map(|(_, _, item, waits)| (item, waits))
        .collect()
}

/// The first worker failure, or cancellation, stops the run.
fn stop_if_failed(
    sh: &Arc<worker::Shared>,
    cancel: &CancellationToken,
) -> Result<(), TransferError> {
    if let Some(e) = sh.take_fatal() {
        let _ = sh.journal_flush();
        return Err(e);
    }
    if cancel.is_cancelled() {
        let _ = sh.journal_flush();
        return Err(TransferError::Cancelled);
    }
    Ok(())
}

/// For every slice whose COMMIT was in flight when the last run stopped,
/// asks the target whether that transaction committed.
async fn settle_committing(
    journal: &mut Journal,
    target: &tokio_postgres::Client,
) -> Result<(), TransferError> {
    for state in journal.tables.values_mut() {
        let pending: Vec<(u32, i64)> = state.committing.iter().map(|(s, x)| (*s, *x)).collect();
        for (slice, xid) in pending {
            match worker::xact_committed(target, xid).await {
                Some(true) => {
                    state.slices_done.insert(slice);
                }
                Some(false) => {}
                None => {
                    return Err(TransferError::Query {
                        side: Side::Target,
                        what: format!("asking whether transaction {xid} committed"),
                        message: "pg_xact_status failed".into(),
                    })
                }
            }
            state.committing.remove(&slice);
        }
    }
    Ok(())
}
