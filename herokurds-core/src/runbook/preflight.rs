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
    /// Each smoke page as it looks now.
    pub smoke: Vec<PageCheck>,
    /// Source read rate measured with one COPY stream, MB/s.
    pub read_rate_mb_s: Option<f64>,
    /// Estimated seconds of maintenance mode.
    pub estimated_window_seconds: Option<f64>,
    /// The steps `run` will take.
    pub steps: Vec<PlannedStep>,
    /// Reasons `run` would stop; empty means ready.
    pub problems: Vec<String>,
    /// Worth knowing.
    pub warnings: Vec<String>,
}

/// Checks everything `run` needs without changing anything, measures the
/// source's read rate, and lists the steps with what each will change.
pub async fn preflight(plan: &Plan, ctx: &Context) -> Result<PlanReport, super::RunbookError> {
    let (report, _) = check(plan, ctx, true).await?;
    Ok(report)
}

/// The checks; also returns the resolved URLs when they resolved.
pub(super) async fn check(
    plan: &Plan,
    ctx: &Context,
    measure: bool,
) -> Result<(PlanReport, Option<(DatabaseUrl, DatabaseUrl)>), super::RunbookError> {
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
        smoke: Vec::new(),
        read_rate_mb_s: None,
        estimated_window_seconds: None,
        steps: Vec::new(),
        problems: Vec::new(),
        warnings: Vec::new(),
    };

    // Heroku: token, app, add-on, attachments, backup alias, formation.
    match heroku.app(&app).await {
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
        None => super::engine::source_from_heroku(plan, ctx, Some(&r.addon)).await,
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
            for e in [s.err(), t.err()]
                .into_iter()
                .flatten()
                .filter(|e| !e.is_empty())
            {
                r.problems.push(e);
            }
            None
        }
    };
    if let Some((s, t)) = &urls {
        let mut opts = TransferOptions::new().jobs(plan.transfer.jobs);
        let dir = super::WorkDir::new(&plan.work_dir);
        let earlier = dir.transfer(&app);
        if earlier.exists() {
            // The target holds an earlier, aborted or rolled-back attempt's
            // copy: the transfer starts it over (and refuses if its journal
            // names another target), so it need not be empty.
            opts = opts
                .resume_mode(crate::transfer::ResumeMode::Resume)
                .work_dir(dir.app_dir(&app));
            r.warnings.push(format!(
                "the target holds the copy of an earlier attempt (state in {}); it will be dropped and copied again",
                plan.work_dir.display()
            ));
        }
        for p in &plan.transfer.exclude_tables {
            opts = opts.exclude_table(p.clone());
        }
        for e in &plan.transfer.exclude_extensions {
            opts = opts.exclude_extension(e.clone());
        }
        if let Some(bin) = &ctx.pg_bin_dir {
            opts = opts.pg_bin_dir(bin.clone());
        }
        match crate::transfer::preflight(s, t, &opts).await {
            Ok(tp) => {
                r.problems.extend(tp.problems.iter().map(|p| p.to_string()));
                r.warnings.extend(tp.warnings.iter().cloned());
                r.transfer = Some(tp);
            }
            Err(e) => r.problems.push(e.to_string()),
        }
        if measure {
            match read_rate(s).await {
                Ok(rate) => r.read_rate_mb_s = rate,
                Err(e) => r
                    .warnings
                    .push(format!("could not measure the source's read rate: {e}")),
            }
        }
    }

    // Buckets and pages.
    let aws = ctx.aws_for(plan);
    for pair in &plan.s3 {
        for (side, loc) in [("source", &pair.source), ("target", &pair.target)] {
            match bucket_reachable(&aws, loc).await {
                Ok(()) => r.buckets.push(format!("{loc} ({side}) reachable")),
                Err(e) => r.problems.push(format!("s3 {side} {loc}: {e}")),
            }
        }
    }
    if measure && !plan.smoke.urls.is_empty() {
        match crate::smoke::check_all(&plan.smoke.urls, &ctx.smoke, &crate::progress::NoProgress)
            .await
        {
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

    if let (Some(rate), Some(t)) = (r.read_rate_mb_s, &r.transfer) {
        r.estimated_window_seconds =
            Some(estimate_window(t.estimated_bytes, rate, plan.transfer.jobs));
    }
    r.steps = planned_steps(plan, &r);
    Ok((r, urls))
}

/// Window estimate: copying writes about a third as fast as one stream
/// reads once indexes are built alongside (measured with `anchors.sh`:
/// pgcopydb and herokurds-transfer both land near 0.25-0.35 of the read
/// ceiling on 2 cores), verification reads both sides once more in
/// parallel, and the API steps take about half a minute.
pub fn estimate_window(bytes: u64, read_mb_s: f64, jobs: usize) -> f64 {
    let mb = bytes as f64 / 1_048_576.0;
    let parallel = (jobs.clamp(1, 4) as f64).sqrt();
    let copy = mb / (read_mb_s * 0.3 * parallel);
    let verify = mb / (read_mb_s * parallel);
    copy + verify + 30.0
}

/// MB/s of one `COPY ... TO STDOUT` stream of the largest table, read for
/// at most two seconds or 256 MB. `None` when there are no tables.
async fn read_rate(source: &DatabaseUrl) -> Result<Option<f64>, String> {
    let client = crate::pg::connect(source)
        .await
        .map_err(|e| e.to_string())?
        .into_client();
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
    StepId::ALL
        .iter()
        .enumerate()
        .map(|(i, &step)| {
            let change = match step {
                StepId::Preflight => "check again; changes nothing".into(),
                StepId::SmokeBaseline => format!("fetch {} page(s); changes nothing", plan.smoke.urls.len()),
                StepId::S3Presync => s3("copy bulk before the window:"),
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
                StepId::Transfer => format!("copy {} -> {}{size}", r.source_host, r.target_host),
                StepId::Verify => "compare schema, row counts and checksums; any difference stops here, maintenance off".into(),
                StepId::WriteCheck => "refuse the cutover if anything wrote to the source since the snapshot".into(),
                StepId::S3FinalSync => s3("final"),
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
    use super::estimate_window;

    #[test]
    fn the_estimate_grows_with_size_and_shrinks_with_jobs() {
        let small = estimate_window(100 << 20, 100.0, 4);
        let big = estimate_window(10 << 30, 100.0, 4);
        assert!(small > 30.0 && small < 40.0, "{small}");
        assert!(big > 200.0 && big > 5.0 * small, "{big}");
        assert!(estimate_window(1 << 30, 100.0, 1) > estimate_window(1 << 30, 100.0, 4));
    }
}
