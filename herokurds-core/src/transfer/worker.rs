//! The data phase's workers and the post-data runner.
//!
//! `jobs` copy workers take tasks (largest tables first) from one queue;
//! each holds a source session inside the imported snapshot and a target
//! session. `index_jobs` index workers meanwhile build the early post-data
//! items — a table's indexes and keys, foreign keys between loaded tables,
//! triggers of loaded tables, `ANALYZE` — each as soon as the tables it
//! touches are loaded and the items it depends on are built (see
//! [`Sched`]). A copy worker that finds the queue empty joins the index
//! workers, so the tail after the last table's rows is as short as the
//! machine allows. After the data phase, the remaining post-data entries
//! run on `index_jobs` sessions in dependency order ([`run_late`]).
//!
//! Faults: a task that fails with a retryable error (lost connection,
//! terminated backend, ...) is redone on new sessions after a backoff, up
//! to the retry policy's attempts; whole tables are reloaded with
//! `TRUNCATE` in the same transaction, slices are rolled back by the
//! server (or, if the answer to COMMIT was lost, settled with
//! `pg_xact_status`), so a retry never duplicates rows. A non-retryable
//! error, or the last attempt failing, stops every worker; the journal
//! keeps what committed.
//!
//! Workers are spawned tasks; they report through a channel the caller
//! forwards to its [`Progress`](crate::progress::Progress), so the library
//! needs no `'static` progress object.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::copy::{self, is_retryable, message, Moved, Rows};
use super::endpoint::{Endpoint, Role};
use super::error::{Side, TransferError};
use super::journal::{Journal, Paths};
use super::options::{CopyFormat, TransferOptions};
use super::plan::{CopyTask, EarlyItem, EarlySteps};
use super::report::TransferEvent;
use super::schema::PostDataEntry;
use crate::pg::catalog::TableInfo;
use crate::url::DatabaseUrl;

/// Rows, bytes and time of one table in this run.
#[derive(Debug, Clone, Default)]
pub(crate) struct TableTally {
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
    pub(crate) seconds: f64,
    pub(crate) remaining: u32,
    pub(crate) started: Option<Instant>,
}

/// What every worker shares.
pub(crate) struct Shared {
    pub(crate) source: DatabaseUrl,
    pub(crate) target: DatabaseUrl,
    pub(crate) snapshot_id: String,
    pub(crate) opts: TransferOptions,
    pub(crate) cancel: CancellationToken,
    pub(crate) events: mpsc::UnboundedSender<TransferEvent>,
    pub(crate) paths: Paths,
    pub(crate) journal: Mutex<Journal>,
    last_save: Mutex<Instant>,
    fatal: Mutex<Option<TransferError>>,
    /// Post-data entries that were already run once (a resumed journal):
    /// "already exists" means done.
    pub(crate) rerun: bool,
    pub(crate) tables: Vec<TableInfo>,
    pub(crate) formats: Vec<CopyFormat>,
    pub(crate) tally: Mutex<Vec<TableTally>>,
    queue: Mutex<VecDeque<CopyTask>>,
    /// Per table: emptied before its slices (a tokio mutex, held across the TRUNCATE).
    truncated: Vec<tokio::sync::Mutex<bool>>,
    sched: Mutex<Sched>,
    pub(crate) post_data_items: std::sync::atomic::AtomicUsize,
}

/// How one attempt failed.
enum Failure {
    /// Worth another attempt on new sessions.
    Retry { side: Side, message: String },
    /// Stops the run.
    Fatal(TransferError),
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        source: DatabaseUrl,
        target: DatabaseUrl,
        snapshot_id: String,
        opts: TransferOptions,
        cancel: CancellationToken,
        events: mpsc::UnboundedSender<TransferEvent>,
        paths: Paths,
        journal: Journal,
        rerun: bool,
        tables: Vec<TableInfo>,
    ) -> Arc<Shared> {
        let formats = tables
            .iter()
            .map(|t| copy::effective_format(t, opts.get_format()))
            .collect();
        let n = tables.len();
        Arc::new(Shared {
            source,
            target,
            snapshot_id,
            opts,
            cancel,
            events,
            paths,
            journal: Mutex::new(journal),
            last_save: Mutex::new(Instant::now()),
            fatal: Mutex::new(None),
            rerun,
            formats,
            tally: Mutex::new(vec![TableTally::default(); n]),
            queue: Mutex::new(VecDeque::new()),
            truncated: (0..n).map(|_| tokio::sync::Mutex::new(false)).collect(),
            sched: Mutex::new(Sched {
                pending: Vec::new(),
                loaded: vec![false; n],
                done: HashSet::new(),
                running: 0,
            }),
            post_data_items: Default::default(),
            tables,
        })
    }

    pub(crate) fn emit(&self, event: TransferEvent) {
        let _ = self.events.send(event);
    }

    /// Records the first fatal error and stops every worker.
    pub(crate) fn fail(&self, err: TransferError) {
        let mut f = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(err);
        }
        self.cancel.cancel();
    }

    /// The first fatal error, if any.
    pub(crate) fn take_fatal(&self) -> Option<TransferError> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Changes the journal; saves it now if `force`, else at most once a
    /// second (what is lost by a crash in between is redone idempotently).
    ///
    /// The journal's mutex is held only to change or serialise it, never
    /// across the write: the write and its fsyncs run under `last_save`
    /// (which keeps saves in order, each newer than the one before) and
    /// off the runtime's worker ([`crate::fsutil::blocking_io`]), so other
    /// workers keep copying meanwhile.
    pub(crate) fn journal_update(
        &self,
        force: bool,
        f: impl FnOnce(&mut Journal),
    ) -> Result<(), TransferError> {
        f(&mut self.journal.lock().unwrap_or_else(|p| p.into_inner()));
        let due = |last: &Instant| force || last.elapsed() >= Duration::from_secs(1);
        if !due(&self.last_save.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(());
        }
        crate::fsutil::blocking_io(|| {
            let mut last = self.last_save.lock().unwrap_or_else(|p| p.into_inner());
            if !due(&last) {
                return Ok(());
            }
            let bytes = self
                .journal
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .stamped_bytes();
            bytes
                .and_then(|b| Journal::write(&self.paths, &b))
                .map_err(TransferError::work_dir(&self.paths.journal))?;
            *last = Instant::now();
            Ok(())
        })
    }

    /// Saves the journal now.
    pub(crate) fn journal_flush(&self) -> Result<(), TransferError> {
        self.journal_update(true, |_| {})
    }

    /// Queues the copy tasks (in order) and sets each table's slice count.
    pub(crate) fn queue_tasks(&self, tasks: Vec<CopyTask>) {
        let mut tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        for t in &tasks {
            tally[t.table].remaining += 1;
        }
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(tasks);
    }

    /// Schedules early items: each waits for the listed tables (indexes
    /// into the plan's tables) to be loaded and for its dependencies;
    /// `done` holds the dump ids finished by an earlier run.
    pub(crate) fn schedule(
        &self,
        items: Vec<(EarlyItem, Vec<usize>)>,
        done: impl IntoIterator<Item = i32>,
    ) {
        let mut s = self.sched.lock().unwrap_or_else(|p| p.into_inner());
        s.done.extend(done);
        for (item, tables) in items {
            s.pending.push(Pending { item, tables });
        }
    }

    fn table_key(&self, table: usize) -> String {
        self.tables[table].to_string()
    }

    /// The table's key in the journal: its quoted name (unquoted names
    /// can collide).
    fn journal_key(&self, table: usize) -> String {
        self.tables[table].qualified_name()
    }

    async fn backoff(&self, item: String, attempt: u32, error: String) -> bool {
        let policy = self.opts.get_retry();
        let wait = policy.backoff(attempt);
        tracing::warn!(%item, attempt, %error, "retrying");
        self.emit(TransferEvent::Retrying {
            item,
            attempt,
            of: policy.attempts,
            backoff: wait.as_secs_f64(),
            error,
        });
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }
}

/// Opens a reader session inside the snapshot.
async fn open_reader(sh: &Shared) -> Result<Client, Failure> {
    let src = Endpoint::source(&sh.source)
        .connect(Role::SourceReader, "")
        .await
        .map_err(|e| Failure::Retry {
            side: Side::Source,
            message: e.to_string(),
        })?;
    super::snapshot::import(&src, &sh.snapshot_id)
        .await
        .map_err(|e| match e {
            TransferError::SnapshotLost { .. } => Failure::Fatal(e),
            other => Failure::Retry {
                side: Side::Source,
                message: other.to_string(),
            },
        })?;
    Ok(src)
}

async fn open_target(sh: &Shared, role: Role) -> Result<Client, Failure> {
    Endpoint::target(&sh.target)
        .connect(role, sh.opts.get_maintenance_work_mem())
        .await
        .map_err(|e| Failure::Retry {
            side: Side::Target,
            message: e.to_string(),
        })
}

/// A copy worker: takes tasks until the queue is empty, then builds
/// early items like an index worker, until the run stops.
pub(crate) async fn copy_worker(sh: Arc<Shared>) {
    let mut conns: Option<(Client, Client)> = None;
    loop {
        if sh.cancel.is_cancelled() {
            return;
        }
        let task = sh
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        let Some(task) = task else { break };
        if let Err(e) = copy_task(&sh, &task, &mut conns).await {
            sh.fail(e);
            return;
        }
    }
    // Nothing left to copy: help build indexes (work-conserving, so the
    // tail after the last table is as short as it can be).
    drop(conns);
    index_worker(sh).await;
}

async fn copy_task(
    sh: &Shared,
    task: &CopyTask,
    conns: &mut Option<(Client, Client)>,
) -> Result<(), TransferError> {
    let key = sh.table_key(task.table);
    let item = match task.slice {
        Some(s) => format!("table {key} slice {}/{}", s.index, s.count),
        None => format!("table {key}"),
    };
    let policy = sh.opts.get_retry();
    let mut attempt = 1;
    loop {
        let outcome = match task.rows {
            Rows::Blocks { .. } => match ensure_truncated(sh, task.table).await {
                Ok(()) => copy_attempt(sh, task, conns, attempt).await,
                Err(f) => Err(f),
            },
            Rows::Whole => copy_attempt(sh, task, conns, attempt).await,
        };
        match outcome {
            Ok(Some(moved)) => return finish_task(sh, task, moved),
            Ok(None) => return Ok(()),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry { side, message }) => {
                *conns = None;
                if !policy.may_retry(attempt) {
                    return Err(TransferError::Table {
                        table: key,
                        attempts: attempt,
                        side,
                        message,
                    });
                }
                attempt += 1;
                if !sh.backoff(item.clone(), attempt, message).await {
                    return Ok(());
                }
            }
        }
    }
}

/// Empties a table before its first slice (once, journaled).
async fn ensure_truncated(sh: &Shared, table: usize) -> Result<(), Failure> {
    let mut done = sh.truncated[table].lock().await;
    if *done {
        return Ok(());
    }
    let key = sh.table_key(table);
    let already = sh
        .journal
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .tables
        .get(&sh.journal_key(table))
        .is_some_and(|t| t.truncated);
    if !already {
        let tgt = open_target(sh, Role::TargetLoader).await?;
        tgt.batch_execute(&format!(
            "TRUNCATE ONLY {}",
            sh.tables[table].qualified_name()
        ))
        .await
        .map_err(|e| classify(e, false, &key, 1))?;
        sh.journal_update(true, |j| j.table(&sh.journal_key(table)).truncated = true)
            .map_err(Failure::Fatal)?;
    }
    *done = true;
    Ok(())
}

fn classify(e: tokio_postgres::Error, on_source: bool, table: &str, attempt: u32) -> Failure {
    let side = if on_source {
        Side::Source
    } else {
        Side::Target
    };
    if on_source && copy::is_row_security_refusal(&e) {
        return Failure::Fatal(TransferError::RowSecurity {
            table: table.to_string(),
        });
    }
    if is_retryable(&e) {
        Failure::Retry {
            side,
            message: message(&e),
        }
    } else {
        Failure::Fatal(TransferError::Table {
            table: table.to_string(),
            attempts: attempt,
            side,
            message: message(&e),
        })
    }
}

async fn copy_attempt(
    sh: &Shared,
    task: &CopyTask,
    conns: &mut Option<(Client, Client)>,
    attempt: u32,
) -> Result<Option<Moved>, Failure> {
    let table = &sh.tables[task.table];
    let key = table.to_string();
    let journal_key = sh.journal_key(task.table);
    if conns.is_none() {
        let src = open_reader(sh).await?;
        let tgt = open_target(sh, Role::TargetLoader).await?;
        *conns = Some((src, tgt));
    }
    let (src, tgt) = conns.as_ref().expect("just opened");
    {
        let mut tally = sh.tally.lock().unwrap_or_else(|p| p.into_inner());
        tally[task.table].started.get_or_insert_with(Instant::now);
    }
    sh.emit(TransferEvent::TableStarted {
        table: key.clone(),
        slice: task.slice,
        estimated_bytes: table.table_bytes.max(0) as u64,
        attempt,
    });
    let started = Instant::now();
    let slice = task.slice;
    let mut xid_seen = None;
    let mut journal_error = None;
    let result = copy::pipe(
        src,
        tgt,
        &copy::CopyJob {
            table,
            rows: task.rows,
            format: sh.formats[task.table],
        },
        &sh.cancel,
        |m| {
            sh.emit(TransferEvent::TableProgress {
                table: key.clone(),
                slice,
                rows: m.rows,
                bytes: m.bytes,
                elapsed: started.elapsed().as_secs_f64(),
            })
        },
        |xid| {
            xid_seen = Some(xid);
            let Some(s) = slice else { return true };
            // On disk before COMMIT, so a resume can settle it; if the
            // journal cannot be written, do not commit.
            match sh.journal_update(true, |j| {
                j.table(&journal_key).committing.insert(s.index, xid);
            }) {
                Ok(()) => true,
                Err(e) => {
                    journal_error = Some(e);
                    false
                }
            }
        },
    )
    .await;
    if let Some(e) = journal_error {
        return Err(Failure::Fatal(e));
    }
    match result {
        Ok(Some(moved)) => {
            if let Some(s) = slice {
                slice_done(sh, &journal_key, s.index)?;
                // Journaled; a whole table is journaled (then
                // reported) by finish_task.
                sh.emit(TransferEvent::TableFinished {
                    table: key.clone(),
                    slice,
                    rows: moved.rows,
                    bytes: moved.bytes,
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
            Ok(Some(moved))
        }
        Ok(None) => Ok(None),
        Err(f) => {
            *conns = None;
            if let (true, Some(xid), Some(s), Some(moved)) =
                (f.commit_in_doubt, xid_seen, slice, f.moved)
            {
                // The COMMIT was sent; did it happen?
                if let Ok(tgt) = open_target(sh, Role::TargetLoader).await {
                    if xact_committed(&tgt, xid).await == Some(true) {
                        slice_done(sh, &journal_key, s.index)?;
                        return Ok(Some(moved));
                    }
                }
            }
            Err(classify(f.error, f.on_source, &key, attempt))
        }
    }
}

/// Journals a committed slice of the table journaled as `key`.
fn slice_done(sh: &Shared, key: &str, index: u32) -> Result<(), Failure> {
    sh.journal_update(true, |j| {
        let t = j.table(key);
        t.committing.remove(&index);
        t.slices_done.insert(index);
    })
    .map_err(Failure::Fatal)
}

/// `pg_xact_status(xid)` on the target: `Some(true)` committed,
/// `Some(false)` aborted or unknown, `None` if it cannot be asked.
pub(crate) async fn xact_committed(target: &Client, xid: i64) -> Option<bool> {
    let row = target
        .query_one(
            "SELECT pg_xact_status($1::text::xid8) = 'committed'",
            &[&xid.to_string()],
        )
        .await
        .ok()?;
    Some(row.get::<_, Option<bool>>(0).unwrap_or(false))
}

/// A task committed: tally it; when it was the table's last, journal the
/// table and release its early post-data items.
fn finish_task(sh: &Shared, task: &CopyTask, moved: Moved) -> Result<(), TransferError> {
    let key = sh.table_key(task.table);
    let (done, tally) = {
        let mut tally = sh.tally.lock().unwrap_or_else(|p| p.into_inner());
        let t = &mut tally[task.table];
        t.rows += moved.rows;
        t.bytes += moved.bytes;
        t.remaining = t.remaining.saturating_sub(1);
        if t.remaining == 0 {
            t.seconds = t.started.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0);
        }
        (t.remaining == 0, t.clone())
    };
    if !done {
        return Ok(());
    }
    sh.journal_update(true, |j| {
        let t = j.table(&sh.journal_key(task.table));
        t.done = true;
        t.rows += tally.rows;
        t.bytes += tally.bytes;
        t.seconds += tally.seconds;
    })?;
    // Reported once on disk: whoever sees this event may rely on it.
    sh.emit(TransferEvent::TableFinished {
        table: key,
        slice: None,
        rows: tally.rows,
        bytes: tally.bytes,
        seconds: tally.seconds,
    });
    sh.sched.lock().unwrap_or_else(|p| p.into_inner()).loaded[task.table] = true;
    Ok(())
}

/// SQLSTATEs meaning "already there": on a re-run, the entry is done.
fn already_exists(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        matches!(
            c.code(),
            "42P07" | "42710" | "42723" | "42P06" | "42P16" | "42P04"
        )
    })
}

/// Runs one item's statements; on a re-run (a retry, or a resumed
/// journal) what already exists counts as done.
async fn exec_steps(
    c: &Client,
    steps: &EarlySteps,
    rerun: bool,
) -> Result<(), tokio_postgres::Error> {
    match steps {
        EarlySteps::Sql(sql) | EarlySteps::Analyze(sql) => c.batch_execute(sql).await,
        EarlySteps::UniqueViaIndex {
            create_index,
            index,
            table,
            constraint,
            add_constraint,
        } => {
            if rerun {
                let row = c
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint \
                         WHERE conrelid = $1::text::regclass AND conname = $2), \
                         pg_catalog.to_regclass($3::text) IS NOT NULL",
                        &[table, constraint, index],
                    )
                    .await?;
                if row.get::<_, bool>(0) {
                    return Ok(());
                }
                if !row.get::<_, bool>(1) {
                    c.batch_execute(create_index).await?;
                }
            } else {
                c.batch_execute(create_index).await?;
            }
            c.batch_execute(add_constraint).await
        }
    }
}

/// Runs an item on a builder session, retrying per the policy. `Ok(false)`
/// when cancelled.
async fn run_item(
    sh: &Shared,
    conn: &mut Option<Client>,
    label: &str,
    steps: &EarlySteps,
) -> Result<bool, TransferError> {
    let policy = sh.opts.get_retry();
    let mut attempt = 1;
    loop {
        if sh.cancel.is_cancelled() {
            return Ok(false);
        }
        let rerun = sh.rerun || attempt > 1;
        let failure = match conn {
            None => match open_target(sh, Role::TargetBuilder).await {
                Ok(c) => {
                    *conn = Some(c);
                    continue;
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry { message, .. }) => message,
            },
            Some(c) => {
                let result = tokio::select! {
                    _ = sh.cancel.cancelled() => return Ok(false),
                    r = exec_steps(c, steps, rerun) => r,
                };
                match result {
                    Ok(()) => return Ok(true),
                    Err(e) if rerun && already_exists(&e) => return Ok(true),
                    Err(e) if !is_retryable(&e) => {
                        return Err(TransferError::PostData {
                            item: label.to_string(),
                            attempts: attempt,
                            message: message(&e),
                        })
                    }
                    Err(e) => {
                        *conn = None;
                        message(&e)
                    }
                }
            }
        };
        if !policy.may_retry(attempt) {
            return Err(TransferError::PostData {
                item: label.to_string(),
                attempts: attempt,
                message: failure,
            });
        }
        attempt += 1;
        if !sh.backoff(label.to_string(), attempt, failure).await {
            return Ok(false);
        }
    }
}

/// An early item waiting for its tables and dependencies.
struct Pending {
    item: EarlyItem,
    tables: Vec<usize>,
}

/// The early items of the data phase and what they wait for.
struct Sched {
    pending: Vec<Pending>,
    loaded: Vec<bool>,
    done: HashSet<i32>,
    running: usize,
}

/// What an index worker should do next.
enum Next {
    Run(EarlyItem),
    Wait,
    Finished,
    /// Every table loaded, nothing running, and these can never run.
    Stuck(Vec<String>),
}

impl Sched {
    /// The first item (in plan order: largest tables first) whose tables
    /// are loaded and whose dependencies are done; `ANALYZE`s only when
    /// nothing else is ready, so they fill idle time rather than delay an
    /// index on the critical path.
    fn next(&mut self) -> Next {
        let ready = |p: &Pending| {
            p.tables.iter().all(|t| self.loaded[*t])
                && p.item.deps.iter().all(|d| self.done.contains(d))
        };
        let is_analyze = |p: &Pending| matches!(p.item.steps, EarlySteps::Analyze(_));
        let pick = self
            .pending
            .iter()
            .position(|p| !is_analyze(p) && ready(p))
            .or_else(|| self.pending.iter().position(ready));
        match pick {
            Some(i) => {
                self.running += 1;
                Next::Run(self.pending.remove(i).item)
            }
            None if self.pending.is_empty() => Next::Finished,
            None if self.running == 0 && self.loaded.iter().all(|l| *l) => {
                Next::Stuck(self.pending.iter().map(|p| p.item.label.clone()).collect())
            }
            None => Next::Wait,
        }
    }
}

/// An index worker: builds early items as they become ready, until the
/// data phase ends.
pub(crate) async fn index_worker(sh: Arc<Shared>) {
    let mut conn: Option<Client> = None;
    loop {
        if sh.cancel.is_cancelled() {
            return;
        }
        let next = sh.sched.lock().unwrap_or_else(|p| p.into_inner()).next();
        match next {
            Next::Run(item) => {
                let result = build_early(&sh, &item, &mut conn).await;
                let mut s = sh.sched.lock().unwrap_or_else(|p| p.into_inner());
                s.running -= 1;
                match result {
                    Ok(true) => {
                        if let Some(id) = item.dump_id {
                            s.done.insert(id);
                        }
                    }
                    Ok(false) => return,
                    Err(e) => {
                        drop(s);
                        sh.fail(e);
                        return;
                    }
                }
            }
            Next::Wait => {
                tokio::select! {
                    _ = sh.cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
            Next::Finished => return,
            Next::Stuck(labels) => {
                sh.fail(TransferError::PostData {
                    item: super::preflight::some_names(labels.iter().map(String::as_str)),
                    attempts: 0,
                    message: "their dependencies cannot be met".into(),
                });
                return;
            }
        }
    }
}

/// Builds one early item; `Ok(false)` when cancelled.
async fn build_early(
    sh: &Shared,
    item: &EarlyItem,
    conn: &mut Option<Client>,
) -> Result<bool, TransferError> {
    sh.emit(TransferEvent::IndexStarted {
        table: item.table.clone(),
        item: item.label.clone(),
    });
    let started = Instant::now();
    if !run_item(sh, conn, &item.label, &item.steps).await? {
        return Ok(false);
    }
    if let Some(id) = item.dump_id {
        sh.post_data_items
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        sh.journal_update(false, |j| {
            j.post_data_done.insert(id);
        })?;
    }
    sh.emit(TransferEvent::IndexFinished {
        table: item.table.clone(),
        item: item.label.clone(),
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(true)
}

/// Runs the late post-data entries (all data is in), honouring their
/// dependencies, on `index_jobs` sessions. Materialized-view refreshes go
/// last, as pg_restore does.
pub(crate) async fn run_late(sh: Arc<Shared>, entries: Vec<PostDataEntry>) {
    let ids: HashSet<i32> = entries.iter().map(|e| e.dump_id).collect();
    let refresh: Vec<i32> = entries
        .iter()
        .filter(|e| e.desc != "MATERIALIZED VIEW DATA")
        .map(|e| e.dump_id)
        .collect();
    let mut waiting: HashMap<i32, HashSet<i32>> = HashMap::new();
    for e in &entries {
        let mut deps: HashSet<i32> = e.deps.iter().copied().filter(|d| ids.contains(d)).collect();
        if e.desc == "MATERIALIZED VIEW DATA" {
            deps.extend(refresh.iter().copied());
        }
        deps.remove(&e.dump_id);
        waiting.insert(e.dump_id, deps);
    }
    let by_id: HashMap<i32, PostDataEntry> = entries.into_iter().map(|e| (e.dump_id, e)).collect();
    let state = Arc::new(Mutex::new(LateState {
        waiting,
        running: 0,
    }));
    let by_id = Arc::new(by_id);
    let mut handles = Vec::new();
    for _ in 0..sh.opts.get_index_jobs() {
        let (sh, state, by_id) = (sh.clone(), state.clone(), by_id.clone());
        handles.push(tokio::spawn(async move {
            let mut conn = None;
            loop {
                let next = {
                    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                    let ready = st
                        .waiting
                        .iter()
                        .filter(|(_, d)| d.is_empty())
                        .map(|(id, _)| *id)
                        .min();
                    match ready {
                        Some(id) => {
                            st.waiting.remove(&id);
                            st.running += 1;
                            Some(id)
                        }
                        None if st.waiting.is_empty() || st.running == 0 => None,
                        None => Some(-1),
                    }
                };
                match next {
                    None => {
                        let st = state.lock().unwrap_or_else(|p| p.into_inner());
                        if !st.waiting.is_empty() && st.running == 0 && !sh.cancel.is_cancelled() {
                            let left: Vec<String> = st
                                .waiting
                                .keys()
                                .filter_map(|id| by_id.get(id).map(|e| e.label()))
                                .collect();
                            drop(st);
                            sh.fail(TransferError::PostData {
                                item: super::preflight::some_names(left.iter().map(String::as_str)),
                                attempts: 0,
                                message: "their dependencies cannot be met".into(),
                            });
                        }
                        return;
                    }
                    Some(-1) => {
                        if sh.cancel.is_cancelled() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Some(id) => {
                        let entry = &by_id[&id];
                        let started = Instant::now();
                        let steps = EarlySteps::Sql(entry.sql.clone());
                        let r = run_item(&sh, &mut conn, &entry.label(), &steps).await;
                        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                        st.running -= 1;
                        match r {
                            Ok(true) => {
                                for deps in st.waiting.values_mut() {
                                    deps.remove(&id);
                                }
                                drop(st);
                                sh.post_data_items
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                if let Err(e) = sh.journal_update(false, |j| {
                                    j.post_data_done.insert(id);
                                }) {
                                    sh.fail(e);
                                    return;
                                }
                                sh.emit(TransferEvent::PostDataItem {
                                    item: entry.label(),
                                    seconds: started.elapsed().as_secs_f64(),
                                });
                            }
                            Ok(false) => return,
                            Err(e) => {
                                drop(st);
                                sh.fail(e);
                                return;
                            }
                        }
                    }
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
}

struct LateState {
    waiting: HashMap<i32, HashSet<i32>>,
    running: usize,
}
