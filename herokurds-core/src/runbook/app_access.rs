//! Whether the app's own AWS credentials reach its new buckets.
//!
//! The cutover points the app's bucket config var at the new bucket, but
//! the app talks to S3 with its own keys (its `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY` config vars, or the names `[assets]` gives). If
//! that IAM user may not use the new bucket, the site loses its uploads
//! and media the moment the cutover ends. So `plan`, and `run` before
//! maintenance goes on, use exactly those keys (the plan's `[cutover]
//! config_vars` replace them when they set the same names) on each
//! `[[s3]] target`:
//!
//! 1. `ListObjectsV2` (one key) under the target prefix;
//! 2. `GetObject` (first byte) of the key listed, an object the sync
//!    copied; before the pre-sync the target may hold none, and then
//!    reading is checked on the probe below instead (said in the detail);
//! 3. `PutObject` of a probe key under `herokurds-probe/`;
//! 4. `DeleteObject` of that probe.
//!
//! A refusal is a plan problem naming the bucket, the operation and the
//! error code. The keys themselves never leave this module: not in a
//! message, the journal or a report (the SDK's `Credentials` hides the
//! secret in `Debug`).

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{Context, Plan};
use crate::aws::ClientOptions;
use crate::s3::S3Location;

/// The folder (under the target prefix) of the probe object.
pub const PROBE_PREFIX: &str = "herokurds-probe/";

/// One operation tried with the app's credentials on a target bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessCheck {
    /// The target, `s3://bucket[/prefix]`.
    pub target: String,
    /// The S3 operation (`ListObjectsV2`, `GetObject`, `PutObject`,
    /// `DeleteObject`).
    pub operation: String,
    /// The key it used, if any.
    pub key: Option<String>,
    /// Whether S3 allowed it.
    pub ok: bool,
    /// What happened: the error code and message on a refusal, or why the
    /// operation used the key it did.
    pub detail: String,
}

impl std::fmt::Display for AccessCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}{}: {}{}",
            self.target,
            self.operation,
            self.key
                .as_deref()
                .map(|k| format!(" {}", crate::s3::escape_key(k)))
                .unwrap_or_default(),
            if self.ok { "allowed" } else { "REFUSED" },
            if self.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.detail)
            }
        )
    }
}

/// What the check found: each operation, and the plan problems and
/// warnings it raises.
#[derive(Default)]
pub(super) struct AccessFindings {
    pub checks: Vec<AccessCheck>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// Runs the checks for every `[[s3]] target` of the plan, unless
/// `[assets] check_app_credentials = false` or there are no buckets.
pub(super) async fn check(plan: &Plan, ctx: &Context) -> AccessFindings {
    let mut found = AccessFindings::default();
    if plan.s3.is_empty() {
        return found;
    }
    let a = &plan.assets;
    if !a.check_app_credentials {
        found.warnings.push(
            "[assets] check_app_credentials = false: the app's own access to the new buckets is not checked".into(),
        );
        return found;
    }
    let app = &plan.heroku.app;
    let keys = match app_credentials(plan, ctx).await {
        Ok(k) => k,
        Err(why) => {
            found.problems.push(why);
            return found;
        }
    };
    let base = ctx.aws_for(plan);
    let mut options = ClientOptions::new().static_credentials(keys);
    if let Some(r) = base.get_region() {
        options = options.region(r);
    }
    if let Some(e) = base.get_endpoint_url() {
        options = options.endpoint_url(e);
    }
    let client = match options.s3_client().await {
        Ok(c) => c,
        Err(e) => {
            found
                .problems
                .push(format!("checking the app's access to the buckets: {e}"));
            return found;
        }
    };
    let whose = format!(
        "the credentials of app {app} (config vars {} and {})",
        a.access_key_var, a.secret_key_var
    );
    for pair in &plan.s3 {
        let Ok(target) = pair.target.parse::<S3Location>() else {
            continue; // the bucket check names a malformed location
        };
        let checks = check_target(&client, &target).await;
        for c in checks.iter().filter(|c| !c.ok) {
            found.problems.push(format!(
                "{whose} cannot {} on s3 target {}{}: {}; grant the app's IAM user s3:{} on arn:aws:s3:::{}{}",
                c.operation,
                target,
                c.key
                    .as_deref()
                    .map(|k| format!(" (key {})", crate::s3::escape_key(k)))
                    .unwrap_or_default(),
                c.detail,
                action_of(&c.operation),
                target.bucket(),
                if c.operation == "ListObjectsV2" { "" } else { "/*" },
            ));
        }
        found.checks.extend(checks);
    }
    found
}

/// The IAM action an S3 operation needs.
fn action_of(operation: &str) -> &str {
    match operation {
        "ListObjectsV2" => "ListBucket",
        other => other,
    }
}

/// The app's access key id and secret from its config vars, the plan's
/// `[cutover] config_vars` winning for the same names. The error says
/// which var is missing, never a value.
async fn app_credentials(
    plan: &Plan,
    ctx: &Context,
) -> Result<aws_sdk_s3::config::Credentials, String> {
    let app = &plan.heroku.app;
    let a = &plan.assets;
    let vars = ctx.heroku.config_vars(app).await.map_err(|e| {
        format!("reading the config vars of app {app} for its AWS credentials: {e}")
    })?;
    let value = |name: &str| -> Option<SecretString> {
        plan.cutover
            .config_vars
            .get(name)
            .map(|v| SecretString::from(v.clone()))
            .or_else(|| vars.get(name).cloned())
    };
    let missing: Vec<&str> = [&a.access_key_var, &a.secret_key_var]
        .into_iter()
        .filter(|n| value(n).is_none_or(|v| v.expose_secret().is_empty()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "app {app} has no config var {} (the AWS credentials it reaches its bucket with): set it, \
             name the app's vars with [assets] access_key_var and secret_key_var, or turn the check \
             off with [assets] check_app_credentials = false",
            missing.join(" or ")
        ));
    }
    let id = value(&a.access_key_var).expect("checked above");
    let secret = value(&a.secret_key_var).expect("checked above");
    Ok(aws_sdk_s3::config::Credentials::new(
        id.expose_secret(),
        secret.expose_secret(),
        None,
        None,
        "heroku-config-vars",
    ))
}

/// List, get, put and delete on one target with the app's client.
async fn check_target(client: &aws_sdk_s3::Client, target: &S3Location) -> Vec<AccessCheck> {
    let t = target.to_string();
    let check = |operation: &str, key: Option<&str>, result: Result<String, String>| {
        let ok = result.is_ok();
        AccessCheck {
            target: t.clone(),
            operation: operation.into(),
            key: key.map(str::to_string),
            ok,
            detail: result.unwrap_or_else(|e| e),
        }
    };
    let mut checks = Vec::new();
    let listed = client
        .list_objects_v2()
        .bucket(target.bucket())
        .prefix(target.prefix())
        .max_keys(1)
        .send()
        .await;
    let copied = match listed {
        Ok(out) => {
            let key = out
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .find(|k| !k.starts_with(&target.key(PROBE_PREFIX)))
                .map(str::to_string);
            checks.push(check("ListObjectsV2", None, Ok(String::new())));
            key
        }
        Err(e) => {
            checks.push(check(
                "ListObjectsV2",
                None,
                Err(crate::aws::sdk_failure(&e).reason),
            ));
            None
        }
    };
    if let Some(key) = &copied {
        let got = get_first_byte(client, target.bucket(), key).await;
        checks.push(check("GetObject", Some(key), got.map(|()| String::new())));
    }
    let probe = target.key(&format!("{PROBE_PREFIX}{}", uuid::Uuid::new_v4().simple()));
    let put = client
        .put_object()
        .bucket(target.bucket())
        .key(&probe)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"herokurds checks the app's access; safe to delete\n",
        ))
        .send()
        .await
        .map(|_| String::new())
        .map_err(|e| crate::aws::sdk_failure(&e).reason);
    let put_ok = put.is_ok();
    checks.push(check("PutObject", Some(&probe), put));
    if put_ok {
        if copied.is_none() {
            let got = get_first_byte(client, target.bucket(), &probe).await;
            checks.push(check(
                "GetObject",
                Some(&probe),
                got.map(|()| {
                    "the bucket holds no copied object yet: read the probe instead".into()
                }),
            ));
        }
        let deleted = client
            .delete_object()
            .bucket(target.bucket())
            .key(&probe)
            .send()
            .await
            .map(|_| String::new())
            .map_err(|e| {
                format!(
                    "{}; the probe object stays behind (the final sync with delete removes it)",
                    crate::aws::sdk_failure(&e).reason
                )
            });
        checks.push(check("DeleteObject", Some(&probe), deleted));
    }
    checks
}

/// Reads the first byte of `key`.
async fn get_first_byte(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<(), String> {
    client
        .get_object()
        .bucket(bucket)
        .key(key)
        .range("bytes=0-0")
        .send()
        .await
        .map(|_| ())
        .or_else(|e| {
            let reason = crate::aws::sdk_failure(&e).reason;
            // An empty object has no first byte; reading it was allowed.
            if reason.starts_with("InvalidRange") {
                Ok(())
            } else {
                Err(reason)
            }
        })
}
