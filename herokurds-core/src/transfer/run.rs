//! The transfer as a flat list of numbered steps (see the module
//! documentation of [`super`]); each step is journaled and skipped when an
//! earlier run finished it.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::endpoint::{Endpoint, Role};
use super::error::{Side, TransferError};
use super::journal::{Journal, Paths};
use super::objects::{self, LargeObjectFailure};
use super::options::{ResumeMode, TransferOptions};
use super::plan::{self, EarlyItem, EarlySteps, PostDataPlan};
use super::report::{Phase, TableReport, TransferEvent, TransferReport};
use super::schema::{self, PostDataEntry};
use super::snapshot::{self, Snapshot};
use super::tools::Tools;
use super::worker::{self, Shared};
use super::{preflight, table_filter};
use crate::pg::catalog::{self, Inventory, TableInfo};
use crate::progress::Progress;
use crate::url::DatabaseUrl;

/// What every step uses.
struct Ctx<'a, P> {
    source: &'a DatabaseUrl,
    target: &'a DatabaseUrl,
    src: Endpoint<'a>,
    tgt: Endpoint<'a>,
    opts: &'a TransferOptions,
    progress: &'a P,
    cancel: &'a CancellationToken,
    paths: Paths,
    phases: Vec<(Phase, f64)>,
}

impl<P: Progress<TransferEvent>> Ctx<'_, P> {
    fn start(&self, phase: Phase) -> Instant {
        self.progress.event(&TransferEvent::PhaseStarted { phase });
        Instant::now()
    }

    fn finish(&mut self, phase: Phase, started: Instant) {
        let seconds = started.elapsed().as_secs_f64();
        self.phases.push((phase, seconds));
        self.progress
            .event(&TransferEvent::PhaseFinished { phase, seconds });
    }

    fn save(&self, journal: &mut Journal) -> Result<(), TransferError> {
        journal
            .save(&self.paths)
            .map_err(TransferError::work_dir(&self.paths.journal))
    }

    /// Stops with [`TransferError::Cancelled`] once cancelled.
    async fn cancellable<T>(
        &self,
        fut: impl Future<Output = Result<T, TransferError>>,
    ) -> Result<T, TransferError> {
        tokio::select! {
            _ = self.cancel.cancelled() => Err(TransferError::Cancelled),
            r = fut => r,
        }
    }
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

pub(crate) async fn run(
    source: &DatabaseUrl,
    target: &DatabaseUrl,
    given_snapshot: Option<&Snapshot>,
    opts: &TransferOptions,
    progress: &impl Progress<TransferEvent>,
    cancel: CancellationToken,
) -> Result<TransferReport, TransferError> {
    let started = Instant::now();
    let mut cx = Ctx {
        source,
        target,
        src: Endpoint::source(source),
        tgt: Endpoint::target(target),
        opts,
        progress,
        cancel: &cancel,
        paths: Paths::new(opts.get_work_dir()),
        phases: Vec::new(),
    };

    // 0. The work directory, its lock, the journal.
    cx.paths
        .create()
        .map_err(TransferError::work_dir(&cx.paths.dir))?;
    let _lock = crate::fsutil::FileLock::acquire(&cx.paths.lock)?;
    let (mut journal, resumed) = open_journal(&cx).await?;

    // 1. Preflight.
    let pre = preflight_step(&mut cx, resumed).await?;

    // 2. The snapshot, and the inventory as it sees it.
    let own_snapshot;
    let snap = match given_snapshot {
        Some(s) => s,
        None => {
            own_snapshot = cx.cancellable(Snapshot::export(source)).await?;
            &own_snapshot
        }
    };
    progress.event(&TransferEvent::SnapshotExported {
        id: snap.id().to_string(),
        lsn: snap.lsn().map(str::to_string),
    });
    let (inv, tables) = inventory_step(&cx, snap).await?;
    journal.runs += 1;
    cx.save(&mut journal)?;

    // 3. Schema: dumped once, pre-data restored once; post-data planned.
    schema_step(
        &mut cx,
        &pre.tools,
        snap,
        &mut journal,
        pre.report.target_tables,
    )
    .await?;
    let post = plan_post_data(&cx, &pre.tools, snap, &inv).await?;
    if resumed {
        settle_committing(&mut journal, &pre.target).await?;
        cx.save(&mut journal)?;
    }

    // 4. Data, with each table's indexes, keys and triggers built as soon
    //    as its rows are in.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let data = data_step(
        &mut cx, snap, &inv, tables, journal, resumed, post.early, tx, &mut rx,
    )
    .await?;
    let sh = &data.shared;

    // 5. Large objects, read in the snapshot.
    let lo_bytes = large_objects_step(&mut cx, snap, &inv, sh).await?;

    // 6. The rest of post-data.
    let late: Vec<PostDataEntry> = post
        .late
        .into_iter()
        .filter(|e| !data.post_done.contains(&e.dump_id))
        .collect();
    if !late.is_empty() {
        let t = cx.start(Phase::PostData);
        forwarding(worker::run_late(sh.clone(), late), &mut rx, progress).await;
        stop_if_failed(sh, &cancel)?;
        sh.journal_flush()?;
        cx.finish(Phase::PostData, t);
    }

    // 7. Sequences, read now: never behind the rows.
    let t = cx.start(Phase::Sequences);
    let sequences = catalog::sequences(&pre.source)
        .await
        .map_err(|e| TransferError::Query {
            side: Side::Source,
            what: "reading sequences".into(),
            message: e.to_string(),
        })?;
    cx.cancellable(objects::set_sequences(&pre.target, &sequences))
        .await?;
    progress.event(&TransferEvent::SequencesSet {
        count: sequences.len(),
    });
    cx.finish(Phase::Sequences, t);
    sh.journal_update(true, |j| {
        j.sequences_done = true;
        j.finished = true;
    })?;

    let journal = sh.journal.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let tally = sh.tally.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let tables = sh
        .tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let state = journal
                .tables
                .get(&t.qualified_name())
                .cloned()
                .unwrap_or_default();
            TableReport {
                table: t.to_string(),
                rows: state.rows.max(tally[i].rows),
                bytes: state.bytes.max(tally[i].bytes),
                seconds: state.seconds,
                slices: data.bounds[i].len() as u32 + 1,
                format: sh.formats[i],
                from_earlier_run: data.earlier_done[i],
                source_activity: snap.activity(t.oid),
            }
        })
        .collect();
    Ok(TransferReport {
        snapshot: snap.info().clone(),
        source_version: pre.report.source_version,
        target_version: pre.report.target_version,
        tables,
        excluded_tables: pre.report.excluded_tables,
        excluded_extensions: opts.get_exclude_extensions().to_vec(),
        post_data_items: sh
            .post_data_items
            .load(std::sync::atomic::Ordering::Relaxed),
        sequences: sequences.len(),
        large_objects: inv.large_objects.len(),
        large_object_bytes: lo_bytes,
        resumed,
        phases: cx.phases,
        seconds: started.elapsed().as_secs_f64(),
        warnings: pre.report.warnings,
    })
}

/// Decides what to do with an existing journal, per the resume mode.
async fn open_journal<P: Progress<TransferEvent>>(
    cx: &Ctx<'_, P>,
) -> Result<(Journal, bool), TransferError> {
    let paths = &cx.paths;
    let (src, tgt) = (&cx.src, &cx.tgt);
    let existing = Journal::load(paths).map_err(TransferError::work_dir(&paths.journal))?;
    let wd = |message: String| TransferError::WorkDir {
        path: paths.journal.clone(),
        message,
    };
    let fresh = || Journal::new(src.identity(), tgt.identity());
    match cx.opts.get_resume_mode() {
        ResumeMode::Fresh => {
            if let Some(j) = existing {
                if !j.finished {
                    return Err(wd(format!(
                        "an unfinished transfer from {} to {} is journaled here: resume it, \
                         restart it, or use another work directory",
                        j.source, j.target
                    )));
                }
                Journal::remove(paths).map_err(TransferError::work_dir(&paths.dir))?;
            }
            Ok((fresh(), false))
        }
        ResumeMode::Resume => {
            let j = existing.ok_or_else(|| {
                wd("there is no transfer to resume here: start a fresh one".into())
            })?;
            if j.source != src.identity() || j.target != tgt.identity() {
                return Err(wd(format!(
                    "the journaled transfer is from {} to {}, not from {} to {}: resume it with \
                     those URLs, or use another work directory",
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
                        "the journaled transfer wrote to {}, not {}: a restart drops everything \
                         the target user owns in the target database, so it does so only for the \
                         database a transfer journaled here wrote to; pass that target, or use \
                         another work directory for a fresh transfer",
                        j.target,
                        tgt.identity()
                    )));
                }
                // What the transfer created belongs to the target user
                // (--no-owner), but so does anything else that user made in
                // this database: all of it goes. The database stays.
                let c = tgt.connect(Role::TargetLoader, "").await?;
                if j.finished && !cx.opts.get_restart_target() {
                    let holdings = match crate::pg::Holdings::read(&c).await {
                        Ok(h) => h.to_string(),
                        Err(e) => format!(
                            "(what it holds could not be read: {})",
                            super::copy::message(&e)
                        ),
                    };
                    return Err(TransferError::TargetHasData {
                        journal: paths.journal.clone(),
                        target: tgt.identity(),
                        finished_at: j.updated_at,
                        holdings,
                    });
                }
                c.batch_execute(
                    "DROP OWNED BY CURRENT_USER CASCADE; CREATE SCHEMA IF NOT EXISTS public",
                )
                .await
                .map_err(TransferError::query(
                    Side::Target,
                    format!(
                        "dropping everything {} owns (restart: DROP OWNED BY CURRENT_USER)",
                        tgt.identity()
                    ),
                ))?;
                Journal::remove(paths).map_err(TransferError::work_dir(&paths.dir))?;
                cx.progress.event(&TransferEvent::Warning {
                    message: format!(
                        "restart: dropped everything {} owned (DROP OWNED BY CURRENT_USER \
                         CASCADE), the earlier transfer's copy included",
                        tgt.identity()
                    ),
                });
            }
            Ok((fresh(), false))
        }
    }
}

/// What the preflight leaves for the other steps.
struct Pre {
    report: super::PreflightReport,
    tools: Tools,
    /// A plain reader session on the source (sequences).
    source: Client,
    /// A loader session on the target (sequences).
    target: Client,
}

/// 1. Checks everything before the target is touched.
async fn preflight_step<P: Progress<TransferEvent>>(
    cx: &mut Ctx<'_, P>,
    resumed: bool,
) -> Result<Pre, TransferError> {
    let t = cx.start(Phase::Preflight);
    let source = cx.src.open_as(Role::SourceReader, "").await?;
    let target = cx.tgt.open_as(Role::TargetLoader, "").await?;
    let filter = table_filter(cx.opts)?;
    let (pf, _) = preflight::check(&source, &target, cx.opts, &filter, resumed).await?;
    let (source, target) = (source.client, target.client);
    if !pf.report.is_ok() {
        return Err(TransferError::Preflight {
            problems: pf.report.problems,
        });
    }
    let tools = pf.tools.expect("no tools problem means tools found");
    for w in &pf.report.warnings {
        cx.progress
            .event(&TransferEvent::Warning { message: w.clone() });
    }
    let r = &pf.report;
    cx.progress.event(&TransferEvent::PreflightPassed {
        tables: r.tables,
        estimated_bytes: r.estimated_bytes,
        sequences: r.sequences,
        large_objects: r.large_objects,
        source_version: r.source_version.clone(),
        target_version: r.target_version.clone(),
    });
    cx.finish(Phase::Preflight, t);
    if cx.cancel.is_cancelled() {
        return Err(TransferError::Cancelled);
    }
    Ok(Pre {
        report: pf.report,
        tools,
        source,
        target,
    })
}

/// 2. The inventory in the snapshot; the tables to copy, largest first,
///    locked (ACCESS SHARE) so nobody drops or alters them meanwhile.
async fn inventory_step<P>(
    cx: &Ctx<'_, P>,
    snap: &Snapshot,
) -> Result<(Inventory, Vec<TableInfo>), TransferError> {
    let inv = catalog::inventory(snap.client(), &table_filter(cx.opts)?)
        .await
        .map_err(|e| TransferError::Query {
            side: Side::Source,
            what: "reading the catalog in the snapshot".into(),
            message: e.to_string(),
        })?;
    let mut tables: Vec<TableInfo> = inv.tables_to_copy().cloned().collect();
    tables.sort_by(|a, b| b.table_bytes.cmp(&a.table_bytes).then(a.oid.cmp(&b.oid)));
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
    Ok((inv, tables))
}

/// 3. `pg_dump` into the work directory, then pre-data in one transaction.
async fn schema_step<P: Progress<TransferEvent>>(
    cx: &mut Ctx<'_, P>,
    tools: &Tools,
    snap: &Snapshot,
    journal: &mut Journal,
    target_tables: usize,
) -> Result<(), TransferError> {
    if !journal.schema_dumped {
        let t = cx.start(Phase::SchemaDump);
        let conn = cx.src.tool_conn();
        cx.cancellable(async {
            schema::dump(tools, &conn, snap.id(), &cx.paths.archive)
                .await
                .map_err(TransferError::from)
        })
        .await?;
        journal.schema_dumped = true;
        cx.save(journal)?;
        cx.finish(Phase::SchemaDump, t);
    }
    if !journal.pre_data_done {
        if target_tables > 0 {
            // A run stopped between restoring pre-data and journaling it.
            return Err(TransferError::WorkDir {
                path: cx.paths.journal.clone(),
                message: "the target holds tables but the journal does not record the schema as \
                          restored: restart the transfer"
                    .into(),
            });
        }
        let t = cx.start(Phase::PreData);
        let conn = cx.tgt.tool_conn();
        cx.cancellable(async {
            schema::restore_pre_data(
                tools,
                &conn,
                &cx.paths.archive,
                &cx.paths.pre_data_list,
                cx.opts.get_exclude_extensions(),
            )
            .await
            .map_err(TransferError::from)
        })
        .await?;
        journal.pre_data_done = true;
        cx.save(journal)?;
        cx.finish(Phase::PreData, t);
    }
    Ok(())
}

/// The post-data entries of the archive, sorted into early and late.
async fn plan_post_data<P>(
    cx: &Ctx<'_, P>,
    tools: &Tools,
    snap: &Snapshot,
    inv: &Inventory,
) -> Result<PostDataPlan, TransferError> {
    let entries = schema::post_data(
        tools,
        &cx.paths.archive,
        &cx.paths.post_data_list,
        cx.opts.get_exclude_extensions(),
    )
    .await?;
    plan::classify(snap.client(), entries, &inv.tables).await
}

/// What the data step leaves for the others.
struct Data {
    shared: Arc<Shared>,
    /// Per table: the slice boundaries (empty: copied whole).
    bounds: Vec<Vec<i64>>,
    /// Per table: copied by an earlier run.
    earlier_done: Vec<bool>,
    /// Post-data entries finished by an earlier run.
    post_done: BTreeSet<i32>,
}

/// 4. The copy workers and the index workers, until every table is in and
///    every early post-data item built.
#[allow(clippy::too_many_arguments)]
async fn data_step<P: Progress<TransferEvent>>(
    cx: &mut Ctx<'_, P>,
    snap: &Snapshot,
    inv: &Inventory,
    tables: Vec<TableInfo>,
    mut journal: Journal,
    resumed: bool,
    early: Vec<EarlyItem>,
    tx: mpsc::UnboundedSender<TransferEvent>,
    rx: &mut mpsc::UnboundedReceiver<TransferEvent>,
) -> Result<Data, TransferError> {
    let t = cx.start(Phase::Data);
    let opts = cx.opts;
    let earlier_done: Vec<bool> = tables
        .iter()
        .map(|t| {
            journal
                .tables
                .get(&t.qualified_name())
                .is_some_and(|s| s.done)
        })
        .collect();
    let post_done = journal.post_data_done.clone();
    let mut tasks = Vec::new();
    let mut bounds = Vec::new();
    for (i, table) in tables.iter().enumerate() {
        let state = journal.table(&table.qualified_name());
        // A table already being filled in slices keeps its cut.
        let b = match &state.slice_bounds {
            Some(b) if state.truncated => b.clone(),
            _ => {
                let n = plan::slice_count(table, opts.get_split_threshold());
                let b = plan::slice_bounds(table.heap_blocks, n);
                state.slice_bounds = (!b.is_empty()).then(|| b.clone());
                b
            }
        };
        if !earlier_done[i] {
            tasks.extend(plan::tasks_for(i, &b).into_iter().filter(|t| {
                t.slice
                    .is_none_or(|s| !state.slices_done.contains(&s.index))
            }));
        }
        bounds.push(b);
    }
    for (table, _) in tables.iter().zip(&earlier_done).filter(|(_, done)| **done) {
        cx.progress.event(&TransferEvent::TableSkipped {
            table: table.to_string(),
            reason: "copied by an earlier run".into(),
        });
    }
    for t in inv.tables.iter().filter(|t| t.excluded && t.holds_rows()) {
        cx.progress.event(&TransferEvent::TableSkipped {
            table: t.to_string(),
            reason: "excluded".into(),
        });
    }
    let items = schedule_early(
        early,
        &tables,
        &earlier_done,
        &post_done,
        opts.get_analyze(),
    );
    let sh = Shared::new(
        cx.source.clone(),
        cx.target.clone(),
        snap.id().to_string(),
        opts.clone(),
        cx.cancel.child_token(),
        tx,
        cx.paths.clone(),
        journal,
        resumed,
        tables,
    );
    sh.journal_flush()?;
    sh.queue_tasks(tasks);
    sh.schedule(items, post_done.iter().copied());
    let workers = {
        let sh = sh.clone();
        async move {
            let copies: Vec<_> = (0..opts.get_jobs())
                .map(|_| tokio::spawn(worker::copy_worker(sh.clone())))
                .collect();
            let builders: Vec<_> = (0..opts.get_index_jobs())
                .map(|_| tokio::spawn(worker::index_worker(sh.clone())))
                .collect();
            for h in copies.into_iter().chain(builders) {
                let _ = h.await;
            }
        }
    };
    forwarding(workers, rx, cx.progress).await;
    stop_if_failed(&sh, cx.cancel)?;
    sh.journal_flush()?;
    cx.finish(Phase::Data, t);
    Ok(Data {
        shared: sh,
        bounds,
        earlier_done,
        post_done,
    })
}

/// 5. Large objects, read in the snapshot, 1000 per target transaction.
///    A batch that fails on a lost connection (or the like) is redone on
///    new sessions, per the retry policy: objects are written by truncate
///    and `lo_put`, so a redo is exact.
async fn large_objects_step<P: Progress<TransferEvent>>(
    cx: &mut Ctx<'_, P>,
    snap: &Snapshot,
    inv: &Inventory,
    sh: &Shared,
) -> Result<u64, TransferError> {
    let done = sh
        .journal
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .large_objects_done;
    if done || inv.large_objects.is_empty() {
        return Ok(0);
    }
    let t = cx.start(Phase::LargeObjects);
    let policy = cx.opts.get_retry().clone();
    let mut sessions = None;
    let mut bytes = 0;
    for chunk in inv.large_objects.chunks(1000) {
        let mut attempt = 1;
        bytes += loop {
            let outcome = tokio::select! {
                _ = cx.cancel.cancelled() => return Err(TransferError::Cancelled),
                r = large_object_batch(cx, snap, &mut sessions, chunk) => r,
            };
            let failure = match outcome {
                Ok(n) => break n,
                Err(f) => f,
            };
            sessions = None;
            if !failure.retryable || !policy.may_retry(attempt) {
                return Err(match failure.error {
                    TransferError::LargeObject { oid, message } if attempt > 1 => {
                        TransferError::LargeObject {
                            oid,
                            message: format!("{message} (after {attempt} attempts)"),
                        }
                    }
                    other => other,
                });
            }
            attempt += 1;
            let wait = policy.backoff(attempt);
            let (first, last) = (chunk[0].oid, chunk[chunk.len() - 1].oid);
            tracing::warn!(first, last, attempt, error = %failure.error, "retrying large objects");
            cx.progress.event(&TransferEvent::Retrying {
                item: format!("large objects {first}..{last}"),
                attempt,
                of: policy.attempts,
                backoff: wait.as_secs_f64(),
                error: failure.error.to_string(),
            });
            tokio::select! {
                _ = cx.cancel.cancelled() => return Err(TransferError::Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
        };
    }
    sh.journal_update(true, |j| j.large_objects_done = true)?;
    cx.progress.event(&TransferEvent::LargeObjectsCopied {
        count: inv.large_objects.len(),
        bytes,
    });
    cx.finish(Phase::LargeObjects, t);
    Ok(bytes)
}

/// One batch of large objects, on `sessions` (a reader in the snapshot and
/// a loader), opened first if there are none.
async fn large_object_batch<P>(
    cx: &Ctx<'_, P>,
    snap: &Snapshot,
    sessions: &mut Option<(Client, Client)>,
    chunk: &[catalog::LargeObject],
) -> Result<u64, LargeObjectFailure> {
    // As for the copy workers: a session that cannot be opened is worth
    // another try, a lost snapshot is not.
    let failed = |error: TransferError| LargeObjectFailure {
        retryable: !matches!(error, TransferError::SnapshotLost { .. }),
        error,
    };
    if sessions.is_none() {
        let reader = cx
            .src
            .connect(Role::SourceReader, "")
            .await
            .map_err(failed)?;
        snapshot::import(&reader, snap.id()).await.map_err(failed)?;
        let target = cx
            .tgt
            .connect(Role::TargetLoader, "")
            .await
            .map_err(failed)?;
        *sessions = Some((reader, target));
    }
    let (reader, target) = sessions.as_ref().expect("just opened");
    objects::copy_large_objects(reader, target, chunk).await
}

/// The early items with the copied tables (by plan index) each waits for,
/// ordered so the largest tables' items come first; an `ANALYZE` per table
/// copied in this run follows its table's other items.
fn schedule_early(
    early: Vec<EarlyItem>,
    tables: &[TableInfo],
    earlier_done: &[bool],
    post_done: &BTreeSet<i32>,
    analyze: bool,
) -> Vec<(EarlyItem, Vec<usize>)> {
    let index_of: HashMap<u32, usize> =
        tables.iter().enumerate().map(|(i, t)| (t.oid, i)).collect();
    let mut own: HashMap<usize, Vec<i32>> = HashMap::new();
    let mut out: Vec<(usize, bool, EarlyItem, Vec<usize>)> = Vec::new();
    for item in early {
        let Some(id) = item.dump_id else { continue };
        let copied: Vec<usize> = item
            .tables
            .iter()
            .filter_map(|oid| index_of.get(oid).copied())
            .collect();
        if let ([only], 1) = (&copied[..], item.tables.len()) {
            own.entry(*only).or_default().push(id);
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
            let item = EarlyItem {
                dump_id: None,
                table: table.to_string(),
                label: format!("ANALYZE {table}"),
                steps: EarlySteps::Analyze(format!("ANALYZE {}", table.qualified_name())),
                tables: vec![table.oid],
                deps: own.remove(&i).unwrap_or_default(),
            };
            out.push((i, true, item, vec![i]));
        }
    }
    out.sort_by_key(|(order, is_analyze, _, _)| (*order, *is_analyze));
    out.into_iter()
        .map(|(_, _, item, waits)| (item, waits))
        .collect()
}

/// The first worker failure, or cancellation, stops the run.
fn stop_if_failed(sh: &Arc<Shared>, cancel: &CancellationToken) -> Result<(), TransferError> {
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
async fn settle_committing(journal: &mut Journal, target: &Client) -> Result<(), TransferError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::catalog::TableKind;

    fn table(oid: u32, name: &str) -> TableInfo {
        TableInfo {
            schema: "public".into(),
            name: name.into(),
            oid,
            kind: TableKind::Ordinary,
            is_partition: false,
            is_inheritance_parent: false,
            unlogged: false,
            owner: "o".into(),
            columns: Vec::new(),
            generated_columns: 0,
            heap_bytes: 0,
            table_bytes: 0,
            heap_blocks: 0,
            estimated_rows: None,
            row_security: false,
            force_row_security: false,
            rows_hidden_by_rls: false,
            readable: true,
            excluded: false,
        }
    }

    fn item(id: i32, tables: &[u32], deps: &[i32]) -> EarlyItem {
        EarlyItem {
            dump_id: Some(id),
            table: String::new(),
            label: format!("item {id}"),
            steps: EarlySteps::Sql(String::new()),
            tables: tables.to_vec(),
            deps: deps.to_vec(),
        }
    }

    fn summary(items: &[(EarlyItem, Vec<usize>)]) -> Vec<(String, Vec<usize>, Vec<i32>)> {
        items
            .iter()
            .map(|(i, w)| (i.label.clone(), w.clone(), i.deps.clone()))
            .collect()
    }

    #[test]
    fn early_items_follow_table_order_and_analyze_waits_for_its_table() {
        let tables = [table(1, "big"), table(2, "small")];
        let early = vec![
            item(10, &[2], &[]),
            item(11, &[1], &[]),
            item(12, &[2, 1], &[11]),
        ];
        let out = schedule_early(early, &tables, &[false, false], &BTreeSet::new(), true);
        assert_eq!(
            summary(&out),
            [
                ("item 11".to_string(), vec![0], vec![]),
                ("ANALYZE public.big".to_string(), vec![0], vec![11]),
                ("item 10".to_string(), vec![1], vec![]),
                ("item 12".to_string(), vec![1, 0], vec![11]),
                ("ANALYZE public.small".to_string(), vec![1], vec![10]),
            ]
        );
    }

    #[test]
    fn items_done_before_are_dropped_and_earlier_tables_are_not_waited_for() {
        let tables = [table(1, "big"), table(2, "small")];
        let early = vec![
            item(10, &[2], &[]),
            item(11, &[1], &[]),
            item(12, &[2, 1], &[11]),
        ];
        let done: BTreeSet<i32> = [11].into();
        let out = schedule_early(early, &tables, &[true, false], &done, true);
        assert_eq!(
            summary(&out),
            [
                ("item 10".to_string(), vec![1], vec![]),
                ("item 12".to_string(), vec![1], vec![11]),
                ("ANALYZE public.small".to_string(), vec![1], vec![10]),
            ]
        );
        let out = schedule_early(
            vec![item(13, &[99], &[])],
            &tables,
            &[false, false],
            &done,
            false,
        );
        assert_eq!(summary(&out), [("item 13".to_string(), vec![], vec![])]);
    }
}
