//! The CloudFront side of the cutover: a distribution that serves the
//! app's assets from the old bucket keeps doing so after the app moved,
//! unless its origin is switched too.
//!
//! [`planned_switches`] reads a distribution and says which origins point
//! at an `[[s3]] source` bucket (`<bucket>.s3.amazonaws.com`,
//! `<bucket>.s3.<region>.amazonaws.com`, the legacy `s3-<region>` and
//! website forms, or `<bucket>.<endpoint host>` for an S3-compatible
//! endpoint) and what each becomes: the same form for the matching target
//! bucket, the origin path moved from the source prefix to the target's.
//! [`switch`] applies those changes, or undoes them, on the distribution's
//! own configuration (GetDistributionConfig, then UpdateDistribution with
//! `If-Match` = its ETag), so every other setting of the origin and the
//! distribution is kept; an origin already as wanted is left alone, and
//! one that is neither as journaled nor as wanted is refused, naming it.
//! [`invalidate`] asks CloudFront to drop what it cached from the old bucket.

use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};
use serde::{Deserialize, Serialize};

use crate::s3::S3Location;

/// Why a CloudFront call could not be made or had to be refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloudFrontError {
    /// The API refused or failed.
    #[error("CloudFront {operation} of distribution {distribution_id} failed: {reason}")]
    Api {
        /// The distribution.
        distribution_id: String,
        /// The operation (`GetDistributionConfig`, `UpdateDistribution`, ...).
        operation: &'static str,
        /// What the service or the client said (error code first).
        reason: String,
        /// Whether trying again may help.
        retryable: bool,
    },
    /// An origin is neither as journaled before the switch nor as the switch
    /// leaves it: someone else changed it, and herokurds does not overwrite it.
    #[error(
        "origin {origin_id} of CloudFront distribution {distribution_id} is now {found}, expected {expected} \
         (or already {wanted}): it was changed outside herokurds; set it by hand and run again"
    )]
    OriginChanged {
        /// The distribution.
        distribution_id: String,
        /// The origin's id.
        origin_id: String,
        /// The domain and path herokurds expected to find.
        expected: String,
        /// The domain and path it should get.
        wanted: String,
        /// What it found.
        found: String,
    },
    /// The AWS configuration is unusable.
    #[error(transparent)]
    Aws(#[from] crate::aws::AwsError),
}

impl CloudFrontError {
    /// Whether the same call may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CloudFrontError::Api {
                retryable: true,
                ..
            }
        )
    }
}

/// One origin's switch: where it pointed before and where it points after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginSwitch {
    /// The origin's id within its distribution.
    pub origin_id: String,
    /// Its domain before the switch (`old-bucket.s3.amazonaws.com`).
    pub old_domain: String,
    /// Its origin path before (`""` or `/assets`).
    pub old_path: String,
    /// Its domain after the switch.
    pub new_domain: String,
    /// Its origin path after.
    pub new_path: String,
}

impl OriginSwitch {
    /// `domain/path` before, for messages.
    pub fn old_origin(&self) -> String {
        format!("{}{}", self.old_domain, self.old_path)
    }

    /// `domain/path` after, for messages.
    pub fn new_origin(&self) -> String {
        format!("{}{}", self.new_domain, self.new_path)
    }
}

impl std::fmt::Display for OriginSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "origin {}: {} -> {}",
            self.origin_id,
            self.old_origin(),
            self.new_origin()
        )
    }
}

/// A distribution's switch as the runbook plans, journals and reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistributionSwitch {
    /// The distribution.
    pub distribution_id: String,
    /// Its origins on a source bucket, each with its old and new domain.
    pub origins: Vec<OriginSwitch>,
    /// The paths invalidated after the switch (`/*` when empty).
    pub paths: Vec<String>,
    /// Whether the origins now point at the new buckets.
    pub switched: bool,
    /// The invalidation made after the switch, once made.
    pub invalidation_id: Option<String>,
}

/// Which way [`switch`] moves the origins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Direction {
    /// From the old bucket to the new one (the cutover).
    Forward,
    /// Back to the old bucket (rollback).
    Back,
}

/// A bucket pair of the plan: origins on `source` move to `target`.
#[derive(Debug, Clone)]
pub struct BucketMove {
    /// The `[[s3]] source`.
    pub source: S3Location,
    /// The `[[s3]] target`.
    pub target: S3Location,
}

/// The S3 endpoint suffixes a bucket's domain can have (after
/// `<bucket>.`): the region, if the form has one, and how to write the
/// form for another region.
fn endpoint_region(suffix: &str) -> Option<Option<&str>> {
    let suffix = suffix.strip_suffix(".amazonaws.com")?;
    if suffix == "s3" || suffix == "s3-external-1" {
        return Some(None);
    }
    for start in ["s3.dualstack.", "s3-website.", "s3-website-", "s3.", "s3-"] {
        if let Some(region) = suffix.strip_prefix(start) {
            let ok = !region.is_empty()
                && region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            return ok.then_some(Some(region));
        }
    }
    None
}

/// What an origin on `domain` + `path` becomes when the buckets move, or
/// `None` when it is not on a source bucket (or its path lies outside the
/// source prefix). `region`: the target's region, written into regional
/// endpoint forms; `endpoint_host`: the host of an S3-compatible endpoint
/// the plan uses, whose `<bucket>.<host>` form is matched too.
pub fn retarget(
    domain: &str,
    path: &str,
    moves: &[BucketMove],
    region: Option<&str>,
    endpoint_host: Option<&str>,
) -> Option<(String, String)> {
    let lower = domain.to_ascii_lowercase();
    for m in moves {
        let Some(suffix) = lower
            .strip_prefix(&m.source.bucket().to_ascii_lowercase())
            .and_then(|s| s.strip_prefix('.'))
        else {
            continue;
        };
        let new_suffix = match endpoint_region(suffix) {
            Some(Some(old_region)) => match region {
                Some(r) => suffix.replacen(old_region, r, 1),
                None => suffix.to_string(),
            },
            Some(None) => suffix.to_string(),
            None if endpoint_host.is_some_and(|h| h.eq_ignore_ascii_case(suffix)) => {
                suffix.to_string()
            }
            None => continue,
        };
        // Paths: "" or "/dir" (CloudFront wants no trailing slash);
        // prefixes: "" or "dir/".
        let source_dir = m.source.prefix().trim_end_matches('/');
        let rest = if source_dir.is_empty() {
            path
        } else {
            let inside = path.strip_prefix('/')?.strip_prefix(source_dir)?;
            if !(inside.is_empty() || inside.starts_with('/')) {
                return None;
            }
            inside
        };
        let target_dir = m.target.prefix().trim_end_matches('/');
        let new_path = if target_dir.is_empty() {
            rest.to_string()
        } else {
            format!("/{target_dir}{rest}")
        };
        return Some((format!("{}.{new_suffix}", m.target.bucket()), new_path));
    }
    None
}

/// The distribution's config and its ETag (GetDistributionConfig).
async fn distribution_config(
    client: &aws_sdk_cloudfront::Client,
    distribution_id: &str,
) -> Result<
    aws_sdk_cloudfront::operation::get_distribution_config::GetDistributionConfigOutput,
    CloudFrontError,
> {
    client
        .get_distribution_config()
        .id(distribution_id)
        .send()
        .await
        .map_err(api_error(distribution_id, "GetDistributionConfig"))
}

fn api_error<'a, E>(
    distribution_id: &'a str,
    operation: &'static str,
) -> impl FnOnce(
    aws_sdk_cloudfront::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> CloudFrontError
       + 'a
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |e| {
        let f = crate::aws::sdk_failure(&e);
        CloudFrontError::Api {
            distribution_id: distribution_id.to_string(),
            operation,
            reason: f.reason,
            retryable: f.retryable,
        }
    }
}

/// What [`planned_switches`] found on a distribution.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PlannedSwitches {
    /// Its origins on a source bucket, and what each becomes.
    pub switches: Vec<OriginSwitch>,
    /// Every origin, `id = domain/path`, for messages.
    pub origins: Vec<String>,
    /// Worth knowing before the switch: an origin that reads its bucket
    /// through an origin access identity or control needs the new
    /// bucket's policy to grant it.
    pub warnings: Vec<String>,
}

/// The origins of `distribution_id` that are on a source bucket of
/// `moves`, and what each becomes (see [`retarget`]); changes nothing.
pub async fn planned_switches(
    client: &aws_sdk_cloudfront::Client,
    distribution_id: &str,
    moves: &[BucketMove],
    region: Option<&str>,
    endpoint_host: Option<&str>,
) -> Result<PlannedSwitches, CloudFrontError> {
    let out = distribution_config(client, distribution_id).await?;
    let origins = out
        .distribution_config()
        .and_then(|c| c.origins())
        .map(|o| o.items())
        .unwrap_or_default();
    let mut found = PlannedSwitches::default();
    for o in origins {
        let path = o.origin_path().unwrap_or("");
        found
            .origins
            .push(format!("{} = {}{path}", o.id(), o.domain_name()));
        if let Some((new_domain, new_path)) =
            retarget(o.domain_name(), path, moves, region, endpoint_host)
        {
            if let Some(identity) = access_identity(o) {
                found.warnings.push(format!(
                    "origin {} of CloudFront distribution {distribution_id} reads its bucket through {identity}: \
                     the policy of bucket {} must grant it s3:GetObject before the cutover, or the distribution \
                     answers 403 once it is switched",
                    o.id(),
                    moves
                        .iter()
                        .map(|m| m.target.bucket())
                        .find(|b| new_domain.starts_with(&format!("{b}.")))
                        .unwrap_or(&new_domain)
                ));
            }
            found.switches.push(OriginSwitch {
                origin_id: o.id().to_string(),
                old_domain: o.domain_name().to_string(),
                old_path: path.to_string(),
                new_domain,
                new_path,
            });
        }
    }
    Ok(found)
}

/// How an origin is allowed into its bucket, when CloudFront signs its
/// requests (an origin access identity or control), in words.
fn access_identity(o: &aws_sdk_cloudfront::types::Origin) -> Option<String> {
    o.s3_origin_config()
        .map(|c| c.origin_access_identity())
        .filter(|i| !i.is_empty())
        .map(|i| format!("origin access identity {i}"))
        .or_else(|| {
            o.origin_access_control_id()
                .filter(|i| !i.is_empty())
                .map(|i| format!("origin access control {i}"))
        })
}

/// Moves the journaled `switches` of `distribution_id` in `direction`, on
/// the distribution's current configuration, in one UpdateDistribution
/// (`If-Match` = the ETag read with it). Origins already as wanted are
/// left alone; an origin found as neither side is refused
/// ([`CloudFrontError::OriginChanged`]) before anything changes. Returns how
/// many origins changed (0: nothing was sent).
pub async fn switch(
    client: &aws_sdk_cloudfront::Client,
    distribution_id: &str,
    switches: &[OriginSwitch],
    direction: Direction,
) -> Result<usize, CloudFrontError> {
    let out = distribution_config(client, distribution_id).await?;
    let etag = out.e_tag().unwrap_or_default().to_string();
    let Some(mut config) = out.distribution_config else {
        return Err(CloudFrontError::Api {
            distribution_id: distribution_id.to_string(),
            operation: "GetDistributionConfig",
            reason: "the answer holds no distribution configuration".into(),
            retryable: false,
        });
    };
    let mut changed = 0;
    if let Some(origins) = config.origins.as_mut() {
        for s in switches {
            let (from, to) = match direction {
                Direction::Forward => ((&s.old_domain, &s.old_path), (&s.new_domain, &s.new_path)),
                Direction::Back => ((&s.new_domain, &s.new_path), (&s.old_domain, &s.old_path)),
            };
            let Some(o) = origins.items.iter_mut().find(|o| o.id == s.origin_id) else {
                return Err(CloudFrontError::OriginChanged {
                    distribution_id: distribution_id.to_string(),
                    origin_id: s.origin_id.clone(),
                    expected: format!("{}{}", from.0, from.1),
                    wanted: format!("{}{}", to.0, to.1),
                    found: "gone".into(),
                });
            };
            let now = (&o.domain_name, o.origin_path.as_deref().unwrap_or(""));
            if now.0.eq_ignore_ascii_case(to.0) && now.1 == to.1.as_str() {
                continue;
            }
            if !(now.0.eq_ignore_ascii_case(from.0) && now.1 == from.1.as_str()) {
                return Err(CloudFrontError::OriginChanged {
                    distribution_id: distribution_id.to_string(),
                    origin_id: s.origin_id.clone(),
                    expected: format!("{}{}", from.0, from.1),
                    wanted: format!("{}{}", to.0, to.1),
                    found: format!("{}{}", now.0, now.1),
                });
            }
            o.domain_name = to.0.clone();
            o.origin_path = Some(to.1.clone());
            changed += 1;
        }
    }
    if changed == 0 {
        return Ok(0);
    }
    client
        .update_distribution()
        .id(distribution_id)
        .if_match(etag)
        .distribution_config(config)
        .send()
        .await
        .map_err(api_error(distribution_id, "UpdateDistribution"))?;
    Ok(changed)
}

/// Invalidates `paths` (`/*` when empty) of `distribution_id`;
/// `caller_reference` makes a repeated request the same invalidation.
/// Returns the invalidation's id.
pub async fn invalidate(
    client: &aws_sdk_cloudfront::Client,
    distribution_id: &str,
    paths: &[String],
    caller_reference: &str,
) -> Result<String, CloudFrontError> {
    let items: Vec<String> = if paths.is_empty() {
        vec!["/*".to_string()]
    } else {
        paths.to_vec()
    };
    let build = |reason: String| CloudFrontError::Api {
        distribution_id: distribution_id.to_string(),
        operation: "CreateInvalidation",
        reason,
        retryable: false,
    };
    let batch = InvalidationBatch::builder()
        .paths(
            Paths::builder()
                .quantity(items.len() as i32)
                .set_items(Some(items))
                .build()
                .map_err(|e| build(e.to_string()))?,
        )
        .caller_reference(caller_reference)
        .build()
        .map_err(|e| build(e.to_string()))?;
    let out = client
        .create_invalidation()
        .distribution_id(distribution_id)
        .invalidation_batch(batch)
        .send()
        .await
        .map_err(api_error(distribution_id, "CreateInvalidation"))?;
    Ok(out
        .invalidation()
        .map(|i| i.id().to_string())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moves(source: &str, target: &str) -> Vec<BucketMove> {
        vec![BucketMove {
            source: source.parse().unwrap(),
            target: target.parse().unwrap(),
        }]
    }

    #[test]
    fn every_s3_endpoint_form_of_the_source_bucket_moves_to_the_target_in_the_same_form() {
        let m = moves("s3://odl-app", "s3://ol-app");
        let r = |d: &str| retarget(d, "", &m, Some("us-west-2"), None).map(|(d, _)| d);
        for (origin, moved) in [
            ("odl-app.s3.amazonaws.com", "ol-app.s3.amazonaws.com"),
            (
                "odl-app.s3.us-east-1.amazonaws.com",
                "ol-app.s3.us-west-2.amazonaws.com",
            ),
            (
                "odl-app.s3-us-east-1.amazonaws.com",
                "ol-app.s3-us-west-2.amazonaws.com",
            ),
            (
                "odl-app.s3-website-us-east-1.amazonaws.com",
                "ol-app.s3-website-us-west-2.amazonaws.com",
            ),
            ("ODL-APP.S3.AMAZONAWS.COM", "ol-app.s3.amazonaws.com"),
        ] {
            assert_eq!(r(origin).as_deref(), Some(moved), "{origin}");
        }
        // Not the source bucket, or not S3.
        for origin in [
            "odl-app2.s3.amazonaws.com",
            "other.s3.amazonaws.com",
            "odl-app.example.com",
            "app.herokuapp.com",
        ] {
            assert_eq!(r(origin), None, "{origin}");
        }
        // An S3-compatible endpoint's virtual-host form, when the plan uses one.
        assert_eq!(
            retarget("odl-app.minio.local", "", &m, None, Some("minio.local")),
            Some(("ol-app.minio.local".into(), String::new()))
        );
        // Without a known region the origin's region is kept.
        assert_eq!(
            retarget("odl-app.s3.eu-west-1.amazonaws.com", "", &m, None, None),
            Some(("ol-app.s3.eu-west-1.amazonaws.com".into(), String::new()))
        );
    }

    #[test]
    fn an_origin_signed_by_an_access_identity_or_control_is_told_apart() {
        use aws_sdk_cloudfront::types::{Origin, S3OriginConfig};
        let origin = |oai: &str, oac: Option<&str>| {
            Origin::builder()
                .id("S3-odl-app")
                .domain_name("odl-app.s3.amazonaws.com")
                .s3_origin_config(
                    S3OriginConfig::builder()
                        .origin_access_identity(oai)
                        .build(),
                )
                .set_origin_access_control_id(oac.map(str::to_string))
                .build()
                .unwrap()
        };
        assert_eq!(access_identity(&origin("", None)), None);
        assert_eq!(
            access_identity(&origin("origin-access-identity/cloudfront/E1", None)).as_deref(),
            Some("origin access identity origin-access-identity/cloudfront/E1")
        );
        assert_eq!(
            access_identity(&origin("", Some("E2OAC"))).as_deref(),
            Some("origin access control E2OAC")
        );
    }

    #[test]
    fn the_origin_path_moves_from_the_source_prefix_to_the_target_prefix() {
        let m = moves("s3://odl-app/assets", "s3://ol-app/static/assets");
        let r = |p: &str| retarget("odl-app.s3.amazonaws.com", p, &m, None, None);
        assert_eq!(
            r("/assets"),
            Some(("ol-app.s3.amazonaws.com".into(), "/static/assets".into()))
        );
        assert_eq!(
            r("/assets/img"),
            Some((
                "ol-app.s3.amazonaws.com".into(),
                "/static/assets/img".into()
            ))
        );
        // Outside the synced prefix: the target does not have it.
        assert_eq!(r(""), None);
        assert_eq!(r("/assetsX"), None);
        let whole = moves("s3://odl-app", "s3://ol-app/app");
        assert_eq!(
            retarget("odl-app.s3.amazonaws.com", "/media", &whole, None, None),
            Some(("ol-app.s3.amazonaws.com".into(), "/app/media".into()))
        );
    }
}
