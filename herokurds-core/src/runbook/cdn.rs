//! The plan's `[[cloudfront]]` distributions at the cutover and on
//! rollback: which origins move, moving them once, and moving them back.
//!
//! The switch of each distribution is journaled (every origin's old and
//! new domain) *before* UpdateDistribution is sent, so a resumed run finds
//! the old origin in the journal even if the process died right after the
//! update, and [`crate::cloudfront::switch`] leaves an origin already on
//! the new bucket alone: resume never switches twice.

use super::journal::{Journal, WorkDir};
use super::plan::CloudfrontSection;
use super::{Context, Plan};
use crate::aws::ClientOptions;
use crate::cloudfront::{self, BucketMove, Direction, DistributionSwitch};

/// The bucket pairs of the plan, and where origins may point.
struct Moves {
    moves: Vec<BucketMove>,
    region: Option<String>,
    endpoint_host: Option<String>,
}

async fn moves(plan: &Plan, aws: &ClientOptions) -> Moves {
    let moves = plan
        .s3
        .iter()
        .filter_map(|p| {
            Some(BucketMove {
                source: p.source.parse().ok()?,
                target: p.target.parse().ok()?,
            })
        })
        .collect();
    let region = match aws.get_region() {
        Some(r) => Some(r.to_string()),
        None => aws
            .load()
            .await
            .ok()
            .and_then(|c| c.region().map(|r| r.to_string())),
    };
    let endpoint_host = aws
        .get_endpoint_url()
        .and_then(|e| ::url::Url::parse(e).ok())
        .and_then(|u| u.host_str().map(str::to_string));
    Moves {
        moves,
        region,
        endpoint_host,
    }
}

/// What each `[[cloudfront]]` distribution's switch will change; the
/// problems (a distribution that cannot be read) and warnings (one with no
/// origin on a source bucket) in words.
pub(super) async fn plan_switches(
    plan: &Plan,
    ctx: &Context,
    distributions: &[CloudfrontSection],
) -> (Vec<DistributionSwitch>, Vec<String>, Vec<String>) {
    let (mut planned, mut problems, mut warnings) = (Vec::new(), Vec::new(), Vec::new());
    if distributions.is_empty() {
        return (planned, problems, warnings);
    }
    let aws = ctx.aws_for(plan);
    let client = match aws.cloudfront_client().await {
        Ok(c) => c,
        Err(e) => {
            problems.push(format!("CloudFront: {e}"));
            return (planned, problems, warnings);
        }
    };
    let m = moves(plan, &aws).await;
    for d in distributions {
        match cloudfront::planned_switches(
            &client,
            &d.distribution_id,
            &m.moves,
            m.region.as_deref(),
            m.endpoint_host.as_deref(),
        )
        .await
        {
            Ok(found) => {
                warnings.extend(found.warnings);
                let (origins, all) = (found.switches, found.origins);
                if origins.is_empty() {
                    warnings.push(format!(
                        "CloudFront distribution {} has no origin on an [[s3]] source bucket (its origins: {}); \
                         the cutover leaves it as it is",
                        d.distribution_id,
                        all.join(", ")
                    ));
                }
                planned.push(DistributionSwitch {
                    distribution_id: d.distribution_id.clone(),
                    origins,
                    paths: d.paths.clone(),
                    switched: false,
                    invalidation_id: None,
                });
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    (planned, problems, warnings)
}

/// The cutover step: journals each distribution's planned switch before
/// changing it, switches its origins, and invalidates its paths. Returns
/// what it did, in words.
pub(super) async fn switch(
    plan: &Plan,
    ctx: &Context,
    journal: &mut Journal,
    dir: &WorkDir,
) -> Result<String, String> {
    let client = ctx
        .aws_for(plan)
        .cloudfront_client()
        .await
        .map_err(|e| e.to_string())?;
    let mut words = Vec::new();
    for d in &plan.cloudfront {
        if !journal
            .cloudfront
            .iter()
            .any(|j| j.distribution_id == d.distribution_id)
        {
            let (mut planned, problems, _) =
                plan_switches(plan, ctx, std::slice::from_ref(d)).await;
            if let Some(p) = problems.into_iter().next() {
                return Err(p);
            }
            journal.cloudfront.append(&mut planned);
            journal.save(dir).map_err(|e| e.to_string())?;
        }
        let entry = journal
            .cloudfront
            .iter_mut()
            .find(|j| j.distribution_id == d.distribution_id)
            .expect("journaled above");
        if entry.origins.is_empty() {
            words.push(format!(
                "{}: no origin on a source bucket, left as it is",
                entry.distribution_id
            ));
            continue;
        }
        let changed = cloudfront::switch(
            &client,
            &entry.distribution_id,
            &entry.origins,
            Direction::Forward,
        )
        .await
        .map_err(|e| e.to_string())?;
        entry.switched = true;
        let origins: Vec<String> = entry.origins.iter().map(|o| o.to_string()).collect();
        let already = if changed == 0 {
            " (already switched)"
        } else {
            ""
        };
        if entry.invalidation_id.is_none() {
            let reference = format!(
                "herokurds-{}-{}",
                journal.app,
                journal.started_at.timestamp_millis()
            );
            let id = cloudfront::invalidate(&client, &d.distribution_id, &d.paths, &reference)
                .await
                .map_err(|e| e.to_string())?;
            let entry = journal
                .cloudfront
                .iter_mut()
                .find(|j| j.distribution_id == d.distribution_id)
                .expect("journaled above");
            entry.invalidation_id = Some(id);
        }
        journal.save(dir).map_err(|e| e.to_string())?;
        words.push(format!(
            "{}: {}{already}; invalidated {}",
            d.distribution_id,
            origins.join(", "),
            invalidated_paths(&d.paths)
        ));
    }
    Ok(words.join("; "))
}

/// Rollback: every journaled distribution back to its old origins, then
/// invalidated. Also those not marked switched: the process may have died
/// between UpdateDistribution and saving the journal; an origin still on
/// the old bucket is left alone. Returns one line per distribution moved
/// back, and each failure naming the distribution and what to set by hand.
pub(super) async fn undo(
    plan: &Plan,
    ctx: &Context,
    journal: &mut Journal,
) -> (Vec<String>, Vec<String>) {
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    if !journal.cloudfront.iter().any(|d| !d.origins.is_empty()) {
        return (done, failed);
    }
    let client = match ctx.aws_for(plan).cloudfront_client().await {
        Ok(c) => c,
        Err(e) => {
            failed.push(format!("CloudFront: {e}"));
            return (done, failed);
        }
    };
    let reference = format!(
        "herokurds-{}-{}-rollback",
        journal.app,
        journal.started_at.timestamp_millis()
    );
    for d in journal
        .cloudfront
        .iter_mut()
        .filter(|d| !d.origins.is_empty())
    {
        let by_hand = || {
            d.origins
                .iter()
                .map(|o| format!("origin {} back to {}", o.origin_id, o.old_origin()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match cloudfront::switch(&client, &d.distribution_id, &d.origins, Direction::Back).await {
            Ok(0) if !d.switched => {}
            Ok(_) => {
                d.switched = false;
                let invalidated =
                    cloudfront::invalidate(&client, &d.distribution_id, &d.paths, &reference)
                        .await
                        .map(|_| format!("invalidated {}", invalidated_paths(&d.paths)))
                        .unwrap_or_else(|e| format!("invalidation failed: {e}"));
                done.push(format!(
                    "CloudFront {}: {}; {invalidated}",
                    d.distribution_id,
                    by_hand()
                ));
            }
            Err(e) => failed.push(format!(
                "{e}; switch it back by hand: {} of distribution {}",
                by_hand(),
                d.distribution_id
            )),
        }
    }
    (done, failed)
}

fn invalidated_paths(paths: &[String]) -> String {
    if paths.is_empty() {
        "/*".into()
    } else {
        paths.join(" ")
    }
}
