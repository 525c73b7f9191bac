//! `herokurds plan`: everything checked, nothing changed.
//!
//! Token and app, the Postgres add-on and its attachments, both database
//! connections over TLS, versions, extensions, an empty target, buckets,
//! smoke pages, dynos to scale down; then the numbered steps with what each
//! will change, and an estimate of the maintenance window from the
//! database's size and a read rate measured on the source.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;

use super::{Context, Plan, StepId};
use crate::smoke::PageCheck;
use crate::transfer::{PreflightReport, TransferOptions};
use crate::url::DatabaseUrl;

/// One step of the plan and what it will change.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    /// 1-based position.
    pub number: usize,
    /// Which step.
    pub step: StepId,
    /// What it will do to the app, the databases or the buckets.
    pub change: String,
}

/// What `plan` found.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PlanReport {
    /// The app.
    pub app: String,
    /// Whether the app is in maintenance mode now.
    pub maintenance_on: bool,
    /// The Postgres add-on to migrate.
    pub addon: String,
    /// Its attachments to the app (`DATABASE`, `HEROKU_POSTGRESQL_YELLOW`).
    pub attachments: Vec<String>,
    /// The source database host.
    pub source_host: String,
    /// The target database host.
    pub target_host: String,
    /// Where the target URL's parts came from.
    pub target_sources: Vec<String>,
    /// The `DATABASE_URL` the app will get at the cutover, password as
    /// `***`: built for the app ([`DatabaseUrl::for_app`]), not the
    /// operator's URL.
    pub app_database_url: Option<String>,
    /// The transfer's own preflight (versions, tools, extensions, size).
    pub transfer: Option<PreflightReport>,
    /// Process types and their dynos now.
    pub formation: Vec<(String, u32)>,
    /// Each bucket pair checked.
    pub buckets: Vec<String>,
    /// What the app's own credentials may do on each target bucket.
    pub app_access: Vec<super::AccessCheck>,
    /// The CloudFront origins the cutover will switch.
    pub cloudfront: Vec<crate::cloudfront::DistributionSwitch>,
    /// Each smoke page as it looks now.
    pub smoke: Vec<PageCheck>,
    /// Source read rate measured with one COPY stream, MB/s.
    pub read_rate_mb_s: Option<f64>,
    /// Estimated seconds of maintenance mode.
    pub estimated_window_seconds: Option<f64>,
    /// Online mode: tables without a key, with their sizes (their whole
    /// rows are logged; a catch-up round that touches one scans it).
    pub no_key_tables: Option<Vec<String>>,
    /// The source's connections and how many copy workers fit.
    pub connections: Option<crate::transfer::online::ConnectionBudget>,
    /// What the estimate is made of, each input measured.
    pub estimate: Option<WindowEstimate>,
    /// The steps `run` will take.
    pub steps: Vec<PlannedStep>,
    /// Reasons `run` would stop; empty means ready.
    pub problems: Vec<String>,
    /// Worth knowing.
    pub warnings: Vec<String>,
}

/// Checks everything `run` needs without changing anything, measures the
/// source's read rate, and lists the steps with what each will change.
/// (The app's credentials are tried by writing and deleting one probe
/// object under `herokurds-probe/` on each `[[s3]] target`.)
pub async fn preflight(plan: &Plan, ctx: &Context) -> Result<PlanReport, super::RunbookError> {
    let (report, _) = check(plan, ctx, true, true).await?;
    Ok(report)
}

/// The maintenance window estimate and what it is made of. Every input is
/// measured by `plan` (and by `run`'s preflight step, which journals the
/// total); the parts are seconds.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct WindowEstimate {
    /// Source read rate, one `COPY ... TO STDOUT` stream, MB/s.
    pub read_mb_s: f64,
    /// Target write rate, one `COPY ... FROM STDIN` into a temporary
    /// table, MB/s (`None`: the probe could not run).
    pub write_mb_s: Option<f64>,
    /// Target index builds, MB of table indexed per second.
    pub index_mb_s: Option<f64>,
    /// MB of table data the source's indexes cover (each index scans its table).
    pub index_scan_mb: f64,
    /// The rows: the slower of reading and writing.
    pub copy_seconds: f64,
    /// The indexes and constraints.
    pub index_seconds: f64,
    /// Verification: both sides read again, in parallel.
    pub verify_seconds: f64,
    /// The transfer's own checks, schema dump and restore, the write check:
    /// from the checks timed in the preflight.
    pub checks_seconds: f64,
    /// The Heroku API calls of the window (about 10), from one timed call.
    pub api_seconds: f64,
    /// The final S3 sync: the buckets' listings, from the timed checks.
    pub s3_seconds: f64,
    /// The settle step once the source is quiet: the plan's `settle`
    /// interval, plus one poll of the quiet check (it looks every 200 ms).
    pub settle_seconds: f64,
    /// The wait, in the settle step, for requests in flight when
    /// maintenance goes on: the slowest smoke page, images included (an
    /// upper bound of a request of the app's), or the oldest open write
    /// transaction on the source, whichever is longer.
    pub in_flight_seconds: f64,
    /// Rows the source wrote per second while `plan` ran (its table
    /// statistics before and after).
    pub source_rows_s: f64,
    /// Target probe: rows per second deleted and inserted again by key
    /// (`None`: the probe could not run).
    pub rewrite_rows_s: Option<f64>,
    /// Target probe: rows per second looked up by key.
    pub lookup_rows_s: Option<f64>,
    /// Online mode: rows changed since the cut that the window applies and
    /// compares: the source's write rate over the time from the cut to
    /// the end of the in-flight writes (the whole verification at the cut,
    /// maintenance on and scale down, the requests in flight).
    pub window_rows: f64,
    /// Online mode: the window's last round and the comparison of every
    /// row changed since the cut: per row, a delete and an insert on the
    /// target and three lookups by key (the source's copy, both sides'
    /// comparison); each table without a key that was written is scanned
    /// three times (delete, copy, comparison).
    pub changes_seconds: f64,
    /// Online mode: the copy and the whole verification happen before the
    /// window, so the rows, indexes and verification count nothing here;
    /// `changes_seconds` and the schema comparison (in `checks_seconds`)
    /// do.
    pub online: bool,
    /// The sum.
    pub total_seconds: f64,
}

/// Heroku API calls inside the window: maintenance on and off, formation
/// and scale down and up, attach, detach, config set and read back.
const WINDOW_API_CALLS: f64 = 10.0;

/// Sessions online mode opens inside the window besides the one the schema
/// comparison uses (timed with it): the settle step's, the window's source
/// and target sessions, the target session that adds the foreign keys
/// back, and the write check's.
const ONLINE_WINDOW_SESSIONS: f64 = 5.0;

/// What `check` timed on the way, for the estimate.
#[derive(Default)]
struct Timed {
    api_call: f64,
    transfer_checks: f64,
    bucket_listings: f64,
    /// The slowest smoke page.
    slowest_page: f64,
    /// The oldest open write transaction on the source.
    oldest_write: f64,
    /// Rows the source wrote per second while the checks ran.
    source_rows_s: f64,
    /// Describing the source's schema once, in a new session (online: the
    /// window compares it).
    schema_describe: f64,
    /// Opening one session on the source (TLS, authentication, settings).
    connect: f64,
    /// MB of the tables without a key that the source wrote to (online).
    no_key_written_mb: f64,
}

/// The checks; also returns the resolved URLs when they resolved.
///
/// `measure`: also fetch the smoke pages. `estimate`: measure the rates the
/// window estimate needs (a few seconds of reading, a write probe into a
/// temporary table on the target).
pub(super) async fn check(
    plan: &Plan,
    ctx: &Context,
    measure: bool,
    estimate: bool,
) -> Result<(PlanReport, Option<(DatabaseUrl, DatabaseUrl)>), super::RunbookError> {
    let mut timed = Timed::default();
    let app = plan.heroku.app.clone();
    let heroku = &ctx.heroku;
    let mut r = PlanReport {
        app: app.clone(),
        maintenance_on: false,
        addon: String::new(),
        attachments: Vec::new(),
        source_host: String::new(),
        target_host: String::new(),
        target_sources: Vec::new(),
        app_database_url: None,
        transfer: None,
        formation: Vec::new(),
        buckets: Vec::new(),
        app_access: Vec::new(),
        cloudfront: Vec::new(),
        smoke: Vec::new(),
        read_rate_mb_s: None,
        estimated_window_seconds: None,
        no_key_tables: None,
        connections: None,
        estimate: None,
        steps: Vec::new(),
        problems: Vec::new(),
        warnings: Vec::new(),
    };

    // Heroku: token, app, add-on, attachments, backup alias, formation.
    let started = Instant::now();
    let info = heroku.app(&app).await;
    timed.api_call = started.elapsed().as_secs_f64();
    match info {
        Ok(a) => r.maintenance_on = a.maintenance,
        Err(e) => {
            r.problems.push(e.to_string());
            return Ok((r, None));
        }
    }
    if r.maintenance_on {
        r.warnings.push(format!(
            "app {app} is already in maintenance mode; herokurds will leave it on at the end"
        ));
    }
    match heroku.postgres_addons(&app).await {
        Ok(addons) => {
            let chosen = match &plan.heroku.addon {
                Some(name) => addons
                    .iter()
                    .find(|a| &a.addon.name == name || &a.addon.id == name),
                None => addons.iter().find(|a| a.is_database(&app)),
            };
            match chosen {
                Some(a) => {
                    r.addon = a.addon.name.clone();
                    r.attachments = a
                        .attachment_names(&app)
                        .iter()
                        .map(|s| s.to_string())
                        .collect();
                    if !a.is_database(&app) {
                        r.problems.push(format!(
                            "add-on {} is not attached to app {app} as DATABASE; the app does not run on it",
                            a.addon.name
                        ));
                    }
                    let alias = &plan.cutover.backup_alias;
                    if let Some(other) = addons.iter().find(|o| {
                        o.addon.id != a.addon.id
                            && o.attachment_names(&app).contains(&alias.as_str())
                    }) {
                        r.problems.push(format!(
                            "cutover.backup_alias {alias} is already attached to {}; choose another alias",
                            other.addon.name
                        ));
                    }
                    if addons.len() > 1 {
                        r.warnings.push(format!(
                            "app {app} has {} Postgres add-ons; migrating {} (set heroku.addon to choose)",
                            addons.len(),
                            a.addon.name
                        ));
                    }
                }
                None => r.problems.push(match &plan.heroku.addon {
                    Some(name) => format!("app {app} has no Heroku Postgres add-on named {name}"),
                    None => format!("app {app} has no Heroku Postgres add-on attached as DATABASE"),
                }),
            }
        }
        Err(e) => r.problems.push(e.to_string()),
    }
    if !plan.maintenance.scale_down.is_empty() {
        match heroku.formation(&app).await {
            Ok(f) => {
                r.formation = f
                    .iter()
                    .map(|f| (f.process_type.clone(), f.quantity))
                    .collect();
                for kind in &plan.maintenance.scale_down {
                    if !f.iter().any(|x| &x.process_type == kind) {
                        r.problems.push(format!(
                            "maintenance.scale_down: app {app} has no process type {kind} (it has {})",
                            f.iter().map(|x| x.process_type.as_str()).collect::<Vec<_>>().join(", ")
                        ));
                    }
                }
            }
            Err(e) => r.problems.push(e.to_string()),
        }
    }

    // Databases.
    let source = match &plan.source.url_env {
        Some(var) => (ctx.env)(var)
            .ok_or_else(|| format!("source.url_env: environment variable {var} is not set"))
            .and_then(|t| {
                super::target::heroku_source_url(&t)
                    .map_err(|e| format!("source.url_env: {var}: {e}"))
            }),
        None if r.addon.is_empty() => Err(String::new()),
        None => super::target::source_from_heroku(plan, ctx, Some(&r.addon)).await,
    };
    let target = super::target::resolve_target(&plan.target, &*ctx.env, &ctx.aws_for(plan)).await;
    let urls = match (source, target) {
        (Ok(s), Ok(t)) => {
            r.source_host = s.host().to_string();
            r.target_host = t.url.host().to_string();
            r.target_sources = t.sources;
            let app_url = t.url.for_app(plan.cutover.app_ssl_mode());
            if app_url.ssl_mode() != crate::url::SslMode::Require {
                r.warnings.push(format!(
                    "the app's DATABASE_URL will say sslmode={} without sslrootcert (a path on \
                     this machine means nothing on the dynos): the app must trust the RDS CA by \
                     itself, or it will not connect after the cutover",
                    app_url.ssl_mode()
                ));
            }
            r.app_database_url = Some(app_url.redacted_url());
            Some((s, t.url))
        }
        (s, t) => {
            for e in [s.err(), t.err().map(|e| e.to_string())]
                .into_iter()
                .flatten()
                .filter(|e| !e.is_empty())
            {
                r.problems.push(e);
            }
            None
        }
    };
    // The source's write position when the checks start: with the one at
    // the end, the rate the app writes at (online: the window's changes).
    let mut first_mark = None;
    let mut no_key: Vec<(String, i64)> = Vec::new();
    if let Some((s, t)) = &urls {
        if estimate {
            first_mark = source_write_mark(s).await.ok();
        }
        let mut opts = match plan.transfer.options(ctx.pg_bin_dir.as_deref()) {
            Ok(opts) => opts,
            Err(e) => {
                r.problems
                    .push(format!("[transfer] split_tables_larger_than: {e}"));
                TransferOptions::new().jobs(plan.transfer.jobs)
            }
        };
        let dir = super::WorkDir::new(&plan.work_dir);
        let earlier = dir.transfer(&app);
        if earlier.exists() {
            // The target holds an earlier, aborted or rolled-back attempt's
            // copy: the transfer starts it over (and refuses if its journal
            // names another target), so it need not be empty.
            opts = opts
                .resume_mode(crate::transfer::ResumeMode::Resume)
                .work_dir(dir.transfer_work_dir(&app));
            r.warnings.push(format!(
                "the target holds the copy of an earlier attempt (state in {}); it will be dropped and copied again",
                plan.work_dir.display()
            ));
        }
        let started = Instant::now();
        let checked = crate::transfer::preflight(s, t, &opts).await;
        timed.transfer_checks = started.elapsed().as_secs_f64();
        match checked {
            Ok(tp) => {
                r.problems.extend(tp.problems.iter().map(|p| p.to_string()));
                r.warnings.extend(tp.warnings.iter().cloned());
                r.transfer = Some(tp);
            }
            Err(e) => r.problems.push(e.to_string()),
        }
        match crate::transfer::online::connection_budget(s).await {
            Ok(b) => {
                if b.jobs_cap < plan.transfer.jobs {
                    r.warnings.push(format!(
                        "the source allows {} connections and {} are in use: the copy uses {} worker(s), \
                         not [transfer] jobs = {}, leaving {} for the app",
                        b.max_connections - b.reserved,
                        b.in_use,
                        b.jobs_cap,
                        plan.transfer.jobs,
                        b.app_reserve
                    ));
                }
                r.connections = Some(b);
            }
            Err(e) => r
                .warnings
                .push(format!("could not read the source's connection limit: {e}")),
        }
        if super::online::is_online(plan) {
            match crate::transfer::online::plan_capture(s, &opts).await {
                Ok(c) => {
                    no_key = c.without_key.clone();
                    r.no_key_tables = Some(
                        c.without_key
                            .iter()
                            .map(|(t, bytes)| {
                                format!("{t} ({:.1} MB)", *bytes as f64 / 1_048_576.0)
                            })
                            .collect(),
                    )
                }
                Err(e) => r.problems.push(format!("online mode: {e}")),
            }
        }
        if estimate {
            match read_rate(s).await {
                Ok(rate) => r.read_rate_mb_s = rate,
                Err(e) => r
                    .warnings
                    .push(format!("could not measure the source's read rate: {e}")),
            }
        }
    }
    let mut probes = None;
    if let (true, Some((s, t)), Some(_)) = (estimate, &urls, r.read_rate_mb_s) {
        let index_scan = index_scan_bytes(s).await;
        if let Ok((connect, oldest)) = oldest_write_seconds(s).await {
            (timed.connect, timed.oldest_write) = (connect, oldest);
        }
        if super::online::is_online(plan) {
            let started = Instant::now();
            if describe_source_schema(s).await.is_ok() {
                timed.schema_describe = started.elapsed().as_secs_f64();
            }
        }
        let target = target_probe(t).await;
        if let Err(e) = &target {
            r.warnings
                .push(format!("could not probe the target's write rate: {e}"));
        }
        probes = Some((index_scan.unwrap_or(0), target.ok()));
    }

    // Buckets and pages.
    let aws = ctx.aws_for(plan);
    for pair in &plan.s3 {
        for (side, loc) in [("source", &pair.source), ("target", &pair.target)] {
            let started = Instant::now();
            let reachable = bucket_reachable(&aws, loc).await;
            timed.bucket_listings += started.elapsed().as_secs_f64();
            match reachable {
                Ok(()) => r.buckets.push(format!("{loc} ({side}) reachable")),
                Err(e) => r.problems.push(format!("s3 {side} {loc}: {e}")),
            }
        }
    }
    let access = super::app_access::check(plan, ctx).await;
    r.app_access = access.checks;
    r.problems.extend(access.problems);
    r.warnings.extend(access.warnings);
    let (cloudfront, problems, warnings) =
        super::cdn::plan_switches(plan, ctx, &plan.cloudfront).await;
    r.cloudfront = cloudfront;
    r.problems.extend(problems);
    r.warnings.extend(warnings);
    if (measure || estimate) && !plan.smoke.urls.is_empty() {
        // Page by page, timed: the slowest is a request of the app's that
        // maintenance mode lets finish (`run` records the pages in its own
        // step; here it only times them).
        let mut fetched = Ok(Vec::new());
        for url in &plan.smoke.urls {
            let started = Instant::now();
            let page = crate::smoke::check_all(
                std::slice::from_ref(url),
                &ctx.smoke,
                &crate::progress::NoProgress,
            )
            .await;
            timed.slowest_page = timed.slowest_page.max(started.elapsed().as_secs_f64());
            match (page, &mut fetched) {
                (Ok(p), Ok(all)) => all.extend(p),
                (Err(e), _) => {
                    fetched = Err(e);
                    break;
                }
                (Ok(_), Err(_)) => {}
            }
        }
        match fetched {
            _ if !measure => {}
            Ok(pages) => {
                for p in pages.iter().filter(|p| !p.is_healthy()) {
                    r.warnings.push(format!(
                        "smoke page {} is not healthy now (status {}, {} broken images{}); it is compared as it is",
                        p.url,
                        p.status.map_or("none".into(), |s| s.to_string()),
                        p.broken_images.len(),
                        p.error.as_ref().map(|e| format!(", {e}")).unwrap_or_default()
                    ));
                }
                r.smoke = pages;
            }
            Err(e) => r.problems.push(e.to_string()),
        }
    }

    if let (Some((s, _)), Some((started, before))) = (&urls, &first_mark) {
        if let Ok((ended, after)) = source_write_mark(s).await {
            let activity = super::writes::compare(before, &after);
            let rows: i64 = activity.tables.values().flatten().sum();
            timed.source_rows_s =
                rows.max(0) as f64 / ended.duration_since(*started).as_secs_f64().max(0.001);
            // Marks name tables `%I.%I`; the capture plan unquoted.
            let written: Vec<String> = activity.tables.keys().map(|t| t.replace('"', "")).collect();
            timed.no_key_written_mb = no_key
                .iter()
                .filter(|(t, _)| written.contains(t))
                .map(|(_, bytes)| *bytes as f64 / 1_048_576.0)
                .sum();
        }
    }
    if let (Some(rate), Some(t), Some((index_scan, target))) =
        (r.read_rate_mb_s, &r.transfer, probes)
    {
        let e = estimate_window(
            t.estimated_bytes,
            index_scan,
            plan.transfer.jobs,
            WindowEstimate {
                read_mb_s: rate,
                write_mb_s: target.map(|p| p.write_mb_s),
                index_mb_s: target.map(|p| p.index_mb_s),
                rewrite_rows_s: target.map(|p| p.rewrite_rows_s),
                lookup_rows_s: target.map(|p| p.lookup_rows_s),
                settle_seconds: plan.maintenance.settle.as_secs_f64(),
                online: super::online::is_online(plan),
                ..WindowEstimate::default()
            },
            &timed,
        );
        r.estimated_window_seconds = Some(e.total_seconds);
        r.estimate = Some(e);
    }
    r.steps = planned_steps(plan, &r);
    Ok((r, urls))
}

/// The window from the measured rates. Rows move at the slower of one
/// read stream and one write stream, times sqrt(jobs) for parallel
/// streams (measured on 2 cores: 2 jobs give about 1.4x one stream); each
/// index scans its table at the probed index rate, overlapping the copy on
/// as many sessions; verification reads both sides again in parallel; the
/// transfer's checks, schema dump and restore and the write check take
/// about three times the checks timed in the preflight; the API calls of
/// the window as long as the timed one; the final S3 sync as long as two
/// listings of each bucket; the settle step the requests in flight, then
/// the `settle` interval and one poll.
///
/// Online mode keeps, of the rows, what changed since the cut: the source
/// wrote at the measured rate from the cut (before the whole verification)
/// until its requests in flight ended; the window applies those rows and
/// compares them ([`WindowEstimate::changes_seconds`]), and compares the
/// schema (timed once).
fn estimate_window(
    bytes: u64,
    index_scan_bytes: u64,
    jobs: usize,
    mut e: WindowEstimate,
    timed: &Timed,
) -> WindowEstimate {
    let mb = bytes as f64 / 1_048_576.0;
    let parallel = (jobs.clamp(1, 4) as f64).sqrt();
    let read = e.read_mb_s.max(0.1);
    // Without a write probe: writing with indexes runs at about a third of
    // the read rate (anchors.sh, pgcopydb and herokurds-transfer alike).
    let write = e.write_mb_s.unwrap_or(read * 0.3).max(0.1);
    let index_rate = e.index_mb_s.unwrap_or(write).max(0.1);
    e.index_scan_mb = index_scan_bytes as f64 / 1_048_576.0;
    e.copy_seconds = mb / (read.min(write) * parallel);
    e.index_seconds = e.index_scan_mb / (index_rate * parallel);
    e.verify_seconds = mb / (read * std::f64::consts::SQRT_2);
    e.checks_seconds = 3.0 * timed.transfer_checks;
    e.api_seconds = WINDOW_API_CALLS * timed.api_call;
    e.s3_seconds = 2.0 * timed.bucket_listings;
    e.settle_seconds += super::writes::SETTLE_POLL.as_secs_f64();
    e.in_flight_seconds = timed.slowest_page.max(timed.oldest_write);
    e.source_rows_s = timed.source_rows_s;
    if e.online {
        // From the cut to the last write: the whole verification (the
        // offline estimate's), maintenance on and scale down, in flight.
        let written_for = e.verify_seconds + 2.0 * timed.api_call + e.in_flight_seconds;
        e.window_rows = e.source_rows_s * written_for;
        let per_row = |rate: Option<f64>| rate.map_or(0.0, |r| 1.0 / r.max(1.0));
        let no_key_scans = if e.window_rows > 0.0 {
            3.0 * timed.no_key_written_mb / read
        } else {
            0.0
        };
        e.changes_seconds = e.window_rows
            * (per_row(e.rewrite_rows_s) + 3.0 * per_row(e.lookup_rows_s))
            + no_key_scans;
        // The transfer's checks do not run in the window: its schema
        // comparison does, and it opens its own sessions.
        e.checks_seconds = timed.schema_describe + ONLINE_WINDOW_SESSIONS * timed.connect;
        (e.copy_seconds, e.index_seconds, e.verify_seconds) = (0.0, 0.0, 0.0);
    }
    e.total_seconds = e.copy_seconds
        + e.index_seconds
        + e.verify_seconds
        + e.checks_seconds
        + e.api_seconds
        + e.s3_seconds
        + e.settle_seconds
        + e.in_flight_seconds
        + e.changes_seconds;
    e
}

/// The source's write position now (see [`super::writes::mark`]).
async fn source_write_mark(
    source: &DatabaseUrl,
) -> Result<(Instant, super::writes::WriteMark), String> {
    let client = probe_client(source).await?;
    let mark = super::writes::mark(&client)
        .await
        .map_err(|e| e.to_string())?;
    Ok((Instant::now(), mark))
}

/// Seconds to open a session on the source, and seconds the oldest open
/// write transaction there (one holding a transaction id, in this
/// database, not this session) has run: a request in flight that the
/// settle step waits for.
async fn oldest_write_seconds(source: &DatabaseUrl) -> Result<(f64, f64), String> {
    let started = Instant::now();
    let client = probe_client(source).await?;
    let connect = started.elapsed().as_secs_f64();
    let row = client
        .query_one(
            "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)), 0)::float8
             FROM pg_catalog.pg_stat_activity
             WHERE datname = current_database() AND backend_xid IS NOT NULL
               AND pid <> pg_catalog.pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok((connect, row.get::<_, f64>(0).max(0.0)))
}

/// Describes the source's schema once, as the online window does to
/// compare it with the copy's.
async fn describe_source_schema(source: &DatabaseUrl) -> Result<(), String> {
    let client = probe_client(source).await?;
    client
        .batch_execute("BEGIN; SELECT pg_catalog.set_config('search_path', '', true)")
        .await
        .map_err(|e| e.to_string())?;
    let described = crate::verify::describe_schema(&client).await;
    let _ = client.batch_execute("ROLLBACK").await;
    described.map(|_| ()).map_err(|e| e.to_string())
}

/// A session for a measurement; the error in words.
async fn probe_client(url: &DatabaseUrl) -> Result<tokio_postgres::Client, String> {
    Ok(crate::pg::connect(url)
        .await
        .map_err(|e| e.to_string())?
        .into_client())
}

/// Bytes of table data the source's indexes cover: each index build scans
/// its whole table once.
async fn index_scan_bytes(source: &DatabaseUrl) -> Result<u64, String> {
    let client = probe_client(source).await?;
    let row = client
        .query_one(
            "SELECT coalesce(sum(pg_table_size(i.indrelid)), 0)::bigint FROM pg_index i
             JOIN pg_class c ON c.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname !~ '^pg_toast'",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

/// Bytes written by the target probe: enough to get past the first
/// buffers, little enough to take a second or two.
const PROBE_BYTES: usize = 16 << 20;

/// Rows the target probe rewrites and looks up by key.
const PROBE_KEYS: i64 = 2000;

/// What [`target_probe`] measured.
#[derive(Debug, Clone, Copy)]
struct TargetProbe {
    /// One `COPY ... FROM STDIN`, MB/s.
    write_mb_s: f64,
    /// MB of table indexed per second.
    index_mb_s: f64,
    /// Rows deleted and inserted again by key, per second.
    rewrite_rows_s: f64,
    /// Rows looked up by key, per second.
    lookup_rows_s: f64,
}

/// Writes [`PROBE_BYTES`] into a temporary table on the target with one
/// `COPY ... FROM STDIN`, builds two indexes on it, then deletes and
/// inserts again [`PROBE_KEYS`] rows by key and looks them up, as a
/// catch-up round and the online window's comparison do. The table is
/// temporary: it is gone when the session ends, and the target stays as
/// it was.
async fn target_probe(target: &DatabaseUrl) -> Result<TargetProbe, String> {
    use futures::SinkExt;
    let client = probe_client(target).await?;
    client
        .batch_execute(
            "SET synchronous_commit = off;
             CREATE TEMPORARY TABLE herokurds_probe (id bigint, body text)",
        )
        .await
        .map_err(|e| format!("creating a temporary table: {e}"))?;
    let mut rows = String::with_capacity(PROBE_BYTES + 256);
    let mut i = 0u64;
    while rows.len() < PROBE_BYTES {
        // A pseudo-random text column, as real rows are not sorted.
        let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        rows.push_str(&format!(
            "{i}\t{h:016x} some text of an ordinary row {h:x}\n"
        ));
        i += 1;
    }
    let started = Instant::now();
    let sink = client
        .copy_in::<_, bytes::Bytes>("COPY herokurds_probe FROM STDIN")
        .await
        .map_err(|e| format!("writing the probe: {e}"))?;
    futures::pin_mut!(sink);
    for chunk in rows.as_bytes().chunks(1 << 20) {
        sink.feed(bytes::Bytes::copy_from_slice(chunk))
            .await
            .map_err(|e| format!("writing the probe: {e}"))?;
    }
    sink.as_mut()
        .finish()
        .await
        .map_err(|e| format!("writing the probe: {e}"))?;
    let write = PROBE_BYTES as f64 / 1_048_576.0 / started.elapsed().as_secs_f64().max(0.001);
    let table_mb = {
        let row = client
            .query_one("SELECT pg_table_size('herokurds_probe')", &[])
            .await
            .map_err(|e| e.to_string())?;
        row.get::<_, i64>(0) as f64 / 1_048_576.0
    };
    let started = Instant::now();
    client
        .batch_execute(
            "CREATE INDEX ON herokurds_probe (id);
             CREATE INDEX ON herokurds_probe (body)",
        )
        .await
        .map_err(|e| format!("indexing the probe: {e}"))?;
    let index = 2.0 * table_mb / started.elapsed().as_secs_f64().max(0.001);
    client
        .batch_execute("ANALYZE herokurds_probe")
        .await
        .map_err(|e| format!("analyzing the probe: {e}"))?;
    // Keys spread over the table, as an app's changes are.
    let step = (i as i64 / PROBE_KEYS).max(1);
    let keys: Vec<i64> = (0..PROBE_KEYS).map(|k| k * step).collect();
    let timed = |sql: &'static str| {
        let (client, keys) = (&client, &keys);
        async move {
            let started = Instant::now();
            client
                .execute(sql, &[keys])
                .await
                .map_err(|e| format!("rewriting probe rows by key: {e}"))?;
            Ok::<_, String>(PROBE_KEYS as f64 / started.elapsed().as_secs_f64().max(0.001))
        }
    };
    let rewrite = timed(
        "WITH gone AS (DELETE FROM herokurds_probe WHERE id = ANY($1) RETURNING *)
         INSERT INTO herokurds_probe SELECT * FROM gone",
    )
    .await?;
    let lookup =
        timed("SELECT count(*), sum(hashtext(body)) FROM herokurds_probe WHERE id = ANY($1)")
            .await?;
    client
        .batch_execute("DROP TABLE herokurds_probe")
        .await
        .map_err(|e| format!("dropping the probe: {e}"))?;
    Ok(TargetProbe {
        write_mb_s: write,
        index_mb_s: index,
        rewrite_rows_s: rewrite,
        lookup_rows_s: lookup,
    })
}

/// MB/s of one `COPY ... TO STDOUT` stream of the largest table, read for
/// at most two seconds or 256 MB. `None` when there are no tables.
async fn read_rate(source: &DatabaseUrl) -> Result<Option<f64>, String> {
    let client = probe_client(source).await?;
    let row = client
        .query_opt(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname !~ '^pg_toast' AND has_table_privilege(c.oid, 'SELECT')
             ORDER BY pg_relation_size(c.oid) DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    let Some(row) = row else { return Ok(None) };
    let table: String = row.get(0);
    let stream = client
        .copy_out(&format!("COPY (SELECT * FROM ONLY {table}) TO STDOUT"))
        .await
        .map_err(|e| format!("reading {table}: {e}"))?;
    futures::pin_mut!(stream);
    let started = Instant::now();
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        bytes += chunk.map_err(|e| format!("reading {table}: {e}"))?.len() as u64;
        if started.elapsed() > Duration::from_secs(2) || bytes > 256 << 20 {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64().max(0.001);
    Ok((bytes > 0).then(|| bytes as f64 / 1_048_576.0 / secs))
}

async fn bucket_reachable(aws: &crate::aws::ClientOptions, location: &str) -> Result<(), String> {
    let loc: crate::s3::S3Location = location
        .parse()
        .map_err(|e: crate::s3::S3Error| e.to_string())?;
    let client = aws.s3_client().await.map_err(|e| e.to_string())?;
    client
        .list_objects_v2()
        .bucket(loc.bucket())
        .max_keys(1)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| crate::aws::sdk_failure(&e).reason)
}

fn planned_steps(plan: &Plan, r: &PlanReport) -> Vec<PlannedStep> {
    let app = &plan.heroku.app;
    let alias = &plan.cutover.backup_alias;
    let s3 = |pass: &str| {
        if plan.s3.is_empty() {
            "skipped: no [[s3]]".to_string()
        } else {
            plan.s3
                .iter()
                .map(|s| {
                    format!(
                        "{pass} {} -> {}{}",
                        s.source,
                        s.target,
                        if pass == "final" && s.delete {
                            " (deleting extra keys)"
                        } else {
                            ""
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        }
    };
    let size = r.transfer.as_ref().map_or(String::new(), |t| {
        format!(
            " ({} tables, about {:.0} MB)",
            t.tables,
            t.estimated_bytes as f64 / 1_048_576.0
        )
    });
    let online = super::online::is_online(plan);
    StepId::ALL
        .iter()
        .enumerate()
        .map(|(i, &step)| {
            let change = match step {
                StepId::Preflight if !plan.s3.is_empty() && plan.assets.check_app_credentials => {
                    format!("check again, the app's keys on each new bucket too (a {} object written and deleted); changes nothing", super::PROBE_PREFIX)
                }
                StepId::Preflight => "check again; changes nothing".into(),
                StepId::SmokeBaseline => format!("fetch {} page(s); changes nothing", plan.smoke.urls.len()),
                StepId::S3Presync => s3("copy bulk before the window:"),
                StepId::OnlineCopy | StepId::CatchUp | StepId::OnlineVerify | StepId::OnlineFinish
                    if !online =>
                {
                    "skipped: offline mode".into()
                }
                StepId::OnlineCopy => format!(
                    "install change capture (triggers, schema herokurds_capture) on the source{}, then copy \
                     {} -> {}{size} while the app runs; each of the app's writes also writes the changed key \
                     (pgbench's write TPS fell 10-21% under capture in benches/online.rs)",
                    r.no_key_tables.as_ref().map_or(String::new(), |t| if t.is_empty() {
                        String::new()
                    } else {
                        format!(" (no key, whole rows logged, each catch-up scans them: {})", t.join(", "))
                    }),
                    r.source_host,
                    r.target_host
                ),
                StepId::CatchUp => "apply the writes made during the copy, in rounds, until one takes under 2 s".into(),
                StepId::OnlineVerify => "verify the whole database against a consistent cut (app still running)".into(),
                StepId::OnlineFinish => "validate the foreign keys held back during catch-up; remove capture from the source".into(),
                StepId::MaintenanceOn => format!("maintenance ON for {app}: web traffic held, downtime starts"),
                StepId::ScaleDown if plan.maintenance.scale_down.is_empty() => {
                    "skipped: no [maintenance] scale_down (worker/clock dynos keep running; the write check guards)".into()
                }
                StepId::ScaleDown => format!("scale {} to 0", plan.maintenance.scale_down.join(", ")),
                StepId::Settle => format!(
                    "wait until the source is quiet for {} (in-flight requests finish), at most {}",
                    crate::duration::format_duration(plan.maintenance.settle),
                    crate::duration::format_duration(plan.maintenance.settle_timeout)
                ),
                StepId::Transfer if online => "apply the last changes; compare the schema with the copy's and every row \
                     changed since the cut; large objects, sequences; foreign keys back NOT VALID".into(),
                StepId::Transfer => format!("copy {} -> {}{size}", r.source_host, r.target_host),
                StepId::Verify if online => "skipped: verified at the cut, changed rows in the window".into(),
                StepId::Verify => "compare schema, row counts and checksums; any difference stops here, maintenance off".into(),
                StepId::WriteCheck if online => "refuse the cutover if anything was logged on the source since the last round".into(),
                StepId::WriteCheck => "refuse the cutover if anything wrote to the source since the snapshot".into(),
                StepId::S3FinalSync => s3("final"),
                StepId::TargetCapture if !plan.cutover.capture_target_writes => {
                    "skipped: [cutover] capture_target_writes = false (a rollback refuses once the app wrote on the \
                     target, or loses those writes with --discard-target-writes)"
                        .into()
                }
                StepId::TargetCapture => format!(
                    "install change capture (triggers, schema herokurds_capture) on {}, still quiet, so that \
                     `herokurds rollback` copies the app's writes made there back to {}; each write on the target \
                     also logs its key (pgbench's write TPS fell 10-21% under capture in benches/online.rs) until \
                     `herokurds finish` removes it",
                    r.target_host, r.addon
                ),
                StepId::AttachBackup => format!("attach {} to {app} as {alias}", r.addon),
                StepId::DetachDatabase => format!("detach DATABASE ({}) from {app}", r.addon),
                StepId::SetConfig => {
                    let mut vars = vec![match &r.app_database_url {
                        Some(url) => format!("DATABASE_URL={url}"),
                        None => "DATABASE_URL".to_string(),
                    }];
                    vars.extend(plan.cutover.config_vars.keys().cloned());
                    format!("set {} on {app}", vars.join(", "))
                }
                StepId::CloudfrontOrigins if plan.cloudfront.is_empty() => "skipped: no [[cloudfront]]".into(),
                StepId::CloudfrontOrigins => r
                    .cloudfront
                    .iter()
                    .map(|d| {
                        let origins: Vec<String> = d.origins.iter().map(|o| o.to_string()).collect();
                        format!(
                            "distribution {}: {}; invalidate {}",
                            d.distribution_id,
                            if origins.is_empty() { "no origin on a source bucket".into() } else { origins.join(", ") },
                            if d.paths.is_empty() { "/*".into() } else { d.paths.join(" ") }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                StepId::ReadBack => "read config back and compare; changes nothing".into(),
                StepId::ScaleUp if plan.maintenance.scale_down.is_empty() => "skipped".into(),
                StepId::ScaleUp => format!("scale {} back", plan.maintenance.scale_down.join(", ")),
                StepId::MaintenanceOff if r.maintenance_on => "skipped: maintenance was on before; left on".into(),
                StepId::MaintenanceOff => format!("maintenance OFF for {app}: downtime ends"),
                StepId::SmokeCompare => "fetch the pages again and compare; changes nothing".into(),
            };
            PlannedStep {
                number: i + 1,
                step,
                change,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{estimate_window, Timed, WindowEstimate};

    fn rates(read: f64, write: Option<f64>) -> WindowEstimate {
        WindowEstimate {
            read_mb_s: read,
            write_mb_s: write,
            index_mb_s: write,
            ..WindowEstimate::default()
        }
    }

    /// Online mode copies and verifies before the window: its estimate
    /// does not grow with the database; the settle interval is in both.
    #[test]
    fn an_online_window_does_not_grow_with_size_and_both_modes_count_the_settle() {
        let t = Timed::default();
        let online = |bytes| {
            estimate_window(
                bytes,
                bytes,
                2,
                WindowEstimate {
                    online: true,
                    settle_seconds: 2.0,
                    ..rates(100.0, Some(50.0))
                },
                &t,
            )
            .total_seconds
        };
        // A quiet source: nothing written since the cut.
        assert_eq!(online(100 << 20), online(100 << 30));
        assert!(
            online(1 << 30) >= 2.0 + 0.2,
            "the settle interval and one poll"
        );
        let offline = estimate_window(
            1 << 30,
            0,
            2,
            WindowEstimate {
                settle_seconds: 2.0,
                ..rates(100.0, Some(50.0))
            },
            &t,
        );
        assert!(offline.total_seconds > offline.copy_seconds + 2.0 - 1e-9);
    }

    /// The online estimate once left out the wait for requests in flight,
    /// the settle step's poll, and the rows written since the cut that the
    /// window applies and compares: 1.2 s for windows of 2.7 s and 3.4 s.
    #[test]
    fn an_online_window_counts_in_flight_requests_and_the_rows_written_since_the_cut() {
        let timed = Timed {
            api_call: 0.01,
            slowest_page: 0.4,
            oldest_write: 0.1,
            source_rows_s: 600.0,
            schema_describe: 0.05,
            connect: 0.01,
            no_key_written_mb: 4.0,
            ..Timed::default()
        };
        let online = |bytes: u64, t: &Timed| {
            estimate_window(
                bytes,
                bytes,
                2,
                WindowEstimate {
                    online: true,
                    settle_seconds: 1.0,
                    rewrite_rows_s: Some(10_000.0),
                    lookup_rows_s: Some(30_000.0),
                    ..rates(100.0, Some(50.0))
                },
                t,
            )
        };
        let e = online(1 << 30, &timed);
        // The slower of the smoke page and the open transaction.
        assert!((e.in_flight_seconds - 0.4).abs() < 1e-9, "{e:?}");
        assert!((e.settle_seconds - 1.2).abs() < 1e-9, "{e:?}");
        // Written from the cut (a whole verification: 1024 MB at 100 MB/s
        // times sqrt 2) until the requests in flight ended.
        let written_for = 1024.0 / (100.0 * std::f64::consts::SQRT_2) + 0.02 + 0.4;
        assert!((e.window_rows - 600.0 * written_for).abs() < 1e-6, "{e:?}");
        let per_row = 1.0 / 10_000.0 + 3.0 / 30_000.0;
        let scans = 3.0 * 4.0 / 100.0;
        assert!(
            (e.changes_seconds - (e.window_rows * per_row + scans)).abs() < 1e-9,
            "{e:?}"
        );
        // The schema comparison, and the window's other sessions.
        assert!(
            (e.checks_seconds - (0.05 + 5.0 * 0.01)).abs() < 1e-9,
            "{e:?}"
        );
        let parts = e.api_seconds + e.settle_seconds + e.in_flight_seconds + e.checks_seconds;
        assert!(
            (e.total_seconds - parts - e.changes_seconds).abs() < 1e-9,
            "{e:?}"
        );
        // A bigger database takes longer to verify at the cut: more rows
        // changed since, a longer window.
        assert!(online(4 << 30, &timed).total_seconds > e.total_seconds + 1.0);
        // A source nobody writes: nothing to apply, no table scanned.
        let quiet = Timed {
            source_rows_s: 0.0,
            ..timed
        };
        let q = online(4 << 30, &quiet);
        assert_eq!((q.window_rows, q.changes_seconds), (0.0, 0.0), "{q:?}");
        assert!((q.total_seconds - (q.api_seconds + 1.2 + 0.4 + 0.1)).abs() < 1e-9);
    }

    #[test]
    fn the_estimate_grows_with_size_and_shrinks_with_jobs() {
        let t = Timed::default();
        let small = estimate_window(100 << 20, 0, 4, rates(100.0, Some(50.0)), &t).total_seconds;
        let big = estimate_window(10 << 30, 0, 4, rates(100.0, Some(50.0)), &t).total_seconds;
        assert!(big > 90.0 * small, "{small} {big}");
        let one = estimate_window(1 << 30, 1 << 30, 1, rates(100.0, Some(50.0)), &t);
        let four = estimate_window(1 << 30, 1 << 30, 4, rates(100.0, Some(50.0)), &t);
        assert!(one.total_seconds > four.total_seconds);
    }

    /// The estimate once had 30 s of fixed API time: 31.2 s for a demo
    /// whose window was 2.6 s. The fixed parts now come from timings.
    #[test]
    fn a_small_database_with_a_fast_api_is_estimated_in_seconds_not_half_a_minute() {
        let timed = Timed {
            api_call: 0.01,
            transfer_checks: 0.3,
            bucket_listings: 0.05,
            ..Timed::default()
        };
        let e = estimate_window(32 << 20, 40 << 20, 4, rates(19.0, Some(20.0)), &timed);
        assert!(e.total_seconds > 2.0 && e.total_seconds < 8.0, "{e:?}");
        assert!((e.checks_seconds - 0.9).abs() < 1e-9 && (e.api_seconds - 0.1).abs() < 1e-9);
        // Writing slower than reading: the copy goes at the write rate.
        let slow = estimate_window(32 << 20, 0, 1, rates(19.0, Some(5.0)), &timed);
        assert!((slow.copy_seconds - 32.0 / 5.0).abs() < 1e-9, "{slow:?}");
    }
}
