//! The migration plan: one TOML file that says which app, which target,
//! which buckets and pages, so that `plan`, `run`, `resume`, `rollback` and
//! `status` all act on the same thing.
//!
//! Secrets are never in the plan itself: it names where they come from (an
//! environment variable, a Secrets Manager secret, the RDS-managed secret).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A parsed and checked migration plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The Heroku app.
    pub heroku: HerokuSection,
    /// Where the source database is, when not the app's `DATABASE_URL`.
    #[serde(default)]
    pub source: SourceSection,
    /// The RDS database.
    pub target: TargetSection,
    /// How the database is copied.
    #[serde(default)]
    pub transfer: TransferSection,
    /// How the copy is checked.
    #[serde(default)]
    pub verify: VerifySection,
    /// The maintenance window.
    #[serde(default)]
    pub maintenance: MaintenanceSection,
    /// The switch of the app to the new database.
    #[serde(default)]
    pub cutover: CutoverSection,
    /// Buckets to sync.
    #[serde(default)]
    pub s3: Vec<S3Section>,
    /// The app's own access to the new buckets.
    #[serde(default)]
    pub assets: AssetsSection,
    /// CloudFront distributions whose origins follow the buckets.
    #[serde(default)]
    pub cloudfront: Vec<CloudfrontSection>,
    /// AWS settings shared by S3, Secrets Manager and RDS look-ups.
    #[serde(default)]
    pub aws: AwsSection,
    /// Pages to check before and after.
    #[serde(default)]
    pub smoke: SmokeSection,
    /// Where the journal, lock and transfer state live (default `.herokurds`).
    #[serde(default = "default_work_dir")]
    pub work_dir: PathBuf,
}

fn default_work_dir() -> PathBuf {
    PathBuf::from(".herokurds")
}

/// `[heroku]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HerokuSection {
    /// The app's name.
    pub app: String,
    /// The Postgres add-on to migrate, when the app has several
    /// (default: the one attached as `DATABASE`).
    #[serde(default)]
    pub addon: Option<String>,
}

/// `[source]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// An environment variable holding the source URL, overriding the app's
    /// `DATABASE_URL` (e.g. to read from a follower).
    #[serde(default)]
    pub url_env: Option<String>,
}

/// `[target]`: either `url_env`, or the parts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSection {
    /// An environment variable holding the whole target URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// The RDS host (the `address` output, not `endpoint`).
    #[serde(default)]
    pub host: Option<String>,
    /// The port (default 5432).
    #[serde(default)]
    pub port: Option<u16>,
    /// The database name.
    #[serde(default)]
    pub dbname: Option<String>,
    /// The user.
    #[serde(default)]
    pub user: Option<String>,
    /// An environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// A Secrets Manager secret (name or ARN) holding the password (and
    /// maybe user, host, port, dbname).
    #[serde(default)]
    pub password_secret: Option<String>,
    /// A `pulumi stack export` JSON file giving host, port, dbname and user.
    #[serde(default)]
    pub pulumi_export: Option<PathBuf>,
    /// Which `aws:rds/instance:Instance` of the export, when several.
    #[serde(default)]
    pub pulumi_resource: Option<String>,
    /// An RDS instance identifier: endpoint and managed secret from the RDS API.
    #[serde(default)]
    pub rds_instance: Option<String>,
    /// `sslmode` for the target (default `require`; `verify-full` with
    /// `sslrootcert` = the RDS CA bundle is stronger).
    #[serde(default)]
    pub sslmode: Option<String>,
    /// CA bundle for `verify-ca` / `verify-full`.
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
}

/// `[transfer]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferSection {
    /// Parallel copy workers (default 4).
    #[serde(default = "default_jobs")]
    pub jobs: usize,
    /// Tables larger than this are split into ctid ranges (`"1GB"`).
    #[serde(default)]
    pub split_tables_larger_than: Option<String>,
    /// Tables not copied (`schema.table` glob patterns).
    #[serde(default)]
    pub exclude_tables: Vec<String>,
    /// Extensions not created on the target (e.g. `pg_stat_statements`).
    #[serde(default)]
    pub exclude_extensions: Vec<String>,
    /// `offline` (default): the whole copy inside the maintenance window.
    /// `online`: copy while the app runs, with change capture on the
    /// source; the window holds only the last changes.
    #[serde(default)]
    pub mode: TransferMode,
}

/// When the database is copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferMode {
    /// Inside the maintenance window.
    #[default]
    Offline,
    /// Before the window, under change capture
    /// ([`crate::transfer::online`]).
    Online,
}

fn default_jobs() -> usize {
    4
}

impl Default for TransferSection {
    fn default() -> Self {
        TransferSection {
            jobs: default_jobs(),
            split_tables_larger_than: None,
            exclude_tables: Vec::new(),
            exclude_extensions: Vec::new(),
            mode: TransferMode::Offline,
        }
    }
}

impl TransferSection {
    /// The transfer's options this section asks for (jobs, split size,
    /// excluded tables and extensions), with the PostgreSQL binaries from
    /// `pg_bin_dir`: the one place the plan becomes [`TransferOptions`],
    /// for `plan`'s checks and `run`'s copy alike. The caller adds the
    /// work directory and resume mode.
    ///
    /// [`TransferOptions`]: crate::transfer::TransferOptions
    pub fn options(
        &self,
        pg_bin_dir: Option<&std::path::Path>,
    ) -> Result<crate::transfer::TransferOptions, crate::size::SizeError> {
        let mut opts = crate::transfer::TransferOptions::new().jobs(self.jobs);
        if let Some(size) = &self.split_tables_larger_than {
            opts = opts.split_tables_larger_than(crate::size::parse_size(size)?);
        }
        for p in &self.exclude_tables {
            opts = opts.exclude_table(p.clone());
        }
        for e in &self.exclude_extensions {
            opts = opts.exclude_extension(e.clone());
        }
        if let Some(bin) = pg_bin_dir {
            opts = opts.pg_bin_dir(bin.to_path_buf());
        }
        Ok(opts)
    }
}

/// `[verify]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySection {
    /// Compare row counts only, not contents (faster, weaker).
    #[serde(default)]
    pub counts_only: bool,
}

/// `[maintenance]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSection {
    /// Process types scaled to zero for the window (maintenance mode only
    /// holds web traffic: worker and clock dynos keep writing). Restored
    /// afterwards and on rollback.
    #[serde(default)]
    pub scale_down: Vec<String>,
    /// How long the source must stay quiet (no transaction id used, none
    /// in progress) after maintenance on before the copy's snapshot: Heroku
    /// lets in-flight web requests finish for up to 30 s, and their writes
    /// must land before the snapshot (default `2s`).
    #[serde(default = "default_settle", with = "crate::duration::text")]
    pub settle: Duration,
    /// How long to wait for that quiet before giving up, with maintenance
    /// off and the writing tables named (default `30s`).
    #[serde(default = "default_settle_timeout", with = "crate::duration::text")]
    pub settle_timeout: Duration,
}

fn default_settle() -> Duration {
    Duration::from_secs(2)
}

fn default_settle_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Default for MaintenanceSection {
    fn default() -> Self {
        MaintenanceSection {
            scale_down: Vec::new(),
            settle: default_settle(),
            settle_timeout: default_settle_timeout(),
        }
    }
}

/// `[cutover]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CutoverSection {
    /// The attachment name the old add-on keeps after the cutover, for
    /// rollback (default `HEROKU_POSTGRES_DB`, as in the runbook).
    #[serde(default = "default_backup_alias")]
    pub backup_alias: String,
    /// Config vars set during the cutover (e.g. the bucket name).
    #[serde(default)]
    pub config_vars: BTreeMap<String, String>,
    /// `sslmode` of the `DATABASE_URL` the app gets (default `require`;
    /// `verify-ca` or `verify-full` only if the app trusts the RDS CA by
    /// itself: the URL never carries `sslrootcert`).
    #[serde(default)]
    pub app_sslmode: Option<String>,
    /// Install change capture on the target at the cutover (default
    /// `true`), so that `rollback` copies the writes made there back to
    /// the old database instead of refusing. It costs the app's writes
    /// on the target a trigger each, until `herokurds finish`.
    #[serde(default = "yes")]
    pub capture_target_writes: bool,
}

impl CutoverSection {
    /// The `sslmode` of the app's `DATABASE_URL`: `app_sslmode`, else `require`.
    pub fn app_ssl_mode(&self) -> crate::url::SslMode {
        self.app_sslmode
            .as_deref()
            .and_then(|m| m.parse().ok())
            .unwrap_or(crate::url::SslMode::Require)
    }
}

fn default_backup_alias() -> String {
    "HEROKU_POSTGRES_DB".into()
}

impl Default for CutoverSection {
    fn default() -> Self {
        CutoverSection {
            backup_alias: default_backup_alias(),
            config_vars: BTreeMap::new(),
            app_sslmode: None,
            capture_target_writes: true,
        }
    }
}

/// `[[s3]]`: one bucket pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    /// `s3://bucket[/prefix]` on Heroku's side.
    pub source: String,
    /// `s3://bucket[/prefix]` on the AWS side.
    pub target: String,
    /// Delete target keys absent from the source (final sync only).
    #[serde(default)]
    pub delete: bool,
    /// Delete even when the guard refuses: the source lists no keys, or
    /// more than half of the target's keys (and at least 100) would go.
    #[serde(default)]
    pub force_delete: bool,
    /// Sync the bulk before the window (default true).
    #[serde(default = "yes")]
    pub presync: bool,
    /// Glob patterns excluded.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// AWS profile for the source bucket.
    #[serde(default)]
    pub source_profile: Option<String>,
    /// Region of the source bucket.
    #[serde(default)]
    pub source_region: Option<String>,
}

fn yes() -> bool {
    true
}

/// `[assets]`: how `plan` and `run` check that the app's own AWS
/// credentials (its config vars) reach each `[[s3]] target`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetsSection {
    /// The config var holding the app's access key id (default
    /// `AWS_ACCESS_KEY_ID`).
    #[serde(default = "default_access_key_var")]
    pub access_key_var: String,
    /// The config var holding the app's secret access key (default
    /// `AWS_SECRET_ACCESS_KEY`).
    #[serde(default = "default_secret_key_var")]
    pub secret_key_var: String,
    /// List, get, put and delete on each target with the app's credentials
    /// (default true).
    #[serde(default = "yes")]
    pub check_app_credentials: bool,
}

fn default_access_key_var() -> String {
    "AWS_ACCESS_KEY_ID".into()
}

fn default_secret_key_var() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}

impl Default for AssetsSection {
    fn default() -> Self {
        AssetsSection {
            access_key_var: default_access_key_var(),
            secret_key_var: default_secret_key_var(),
            check_app_credentials: true,
        }
    }
}

/// `[[cloudfront]]`: a distribution whose origins on an `[[s3]] source`
/// bucket are switched to the target at the cutover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudfrontSection {
    /// The distribution's id (`E2QWRUHAPOMQZL`).
    pub distribution_id: String,
    /// Paths invalidated after the switch (default `["/*"]`).
    #[serde(default)]
    pub paths: Vec<String>,
}

/// `[aws]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    /// Region (default: the AWS chain's).
    #[serde(default)]
    pub region: Option<String>,
    /// Profile (default: the AWS chain's).
    #[serde(default)]
    pub profile: Option<String>,
    /// An S3/Secrets Manager/RDS compatible endpoint (default:
    /// `AWS_ENDPOINT_URL`, else AWS).
    #[serde(default)]
    pub endpoint_url: Option<String>,
}

/// `[smoke]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmokeSection {
    /// Pages fetched before and after the cutover.
    #[serde(default)]
    pub urls: Vec<String>,
}

/// Why a plan file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The file could not be read.
    #[error("cannot read plan {path}: {source}")]
    Read {
        /// The plan file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("plan {path} is not valid: {message}")]
    Syntax {
        /// The plan file.
        path: PathBuf,
        /// The parser's message, with the line and key.
        message: String,
    },
    /// Keys are missing or contradict each other; every problem is listed.
    #[error("plan {path} has problems:\n  - {}", problems.join("\n  - "))]
    Invalid {
        /// The plan file.
        path: PathBuf,
        /// Each problem, naming the key.
        problems: Vec<String>,
    },
}

impl Plan {
    /// Reads and checks a plan file. Relative paths inside it
    /// (`pulumi_export`, `sslrootcert`, `work_dir`) are taken relative to
    /// the plan file's directory.
    pub fn load(path: &Path) -> Result<Plan, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut plan = Plan::parse(&text).map_err(|e| match e {
            PlanError::Syntax { message, .. } => PlanError::Syntax {
                path: path.to_path_buf(),
                message,
            },
            PlanError::Invalid { problems, .. } => PlanError::Invalid {
                path: path.to_path_buf(),
                problems,
            },
            other => other,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let anchor = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        anchor(&mut plan.work_dir);
        if let Some(p) = plan.target.pulumi_export.as_mut() {
            anchor(p);
        }
        if let Some(p) = plan.target.sslrootcert.as_mut() {
            anchor(p);
        }
        Ok(plan)
    }

    /// Parses and checks plan text (paths are left as written).
    pub fn parse(text: &str) -> Result<Plan, PlanError> {
        let plan: Plan = toml::from_str(text).map_err(|e| PlanError::Syntax {
            path: PathBuf::from("<plan>"),
            message: e.to_string(),
        })?;
        let problems = plan.problems();
        if problems.is_empty() {
            Ok(plan)
        } else {
            Err(PlanError::Invalid {
                path: PathBuf::from("<plan>"),
                problems,
            })
        }
    }

    /// Every problem with the plan's values, each naming its key.
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !is_app_name(&self.heroku.app) {
            p.push(format!(
                "heroku.app {:?}: a Heroku app name is 3-30 lowercase letters, digits and dashes, starting with a letter",
                self.heroku.app
            ));
        }
        let t = &self.target;
        let parts = [
            ("host", t.host.is_some()),
            ("dbname", t.dbname.is_some()),
            ("user", t.user.is_some()),
        ];
        let from_elsewhere = t.pulumi_export.is_some() || t.rds_instance.is_some();
        if t.url_env.is_some() {
            for (key, set) in parts.iter().chain(
                [
                    ("password_env", t.password_env.is_some()),
                    ("port", t.port.is_some()),
                ]
                .iter(),
            ) {
                if *set {
                    p.push(format!("target.{key} cannot be combined with target.url_env (the URL already has it)"));
                }
            }
        } else {
            let secret_gives_user = t.password_secret.is_some();
            for (key, set) in parts {
                let covered = from_elsewhere || (key == "user" && secret_gives_user);
                if !set && !covered {
                    p.push(format!(
                        "target.{key} is missing (or give target.url_env, target.pulumi_export or target.rds_instance)"
                    ));
                }
            }
            let password_sources = [t.password_env.is_some(), t.password_secret.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if password_sources == 0 && t.rds_instance.is_none() {
                p.push("target password: set target.password_env, target.password_secret or target.rds_instance (its managed secret)".into());
            }
            if password_sources > 1 {
                p.push(
                    "target.password_env and target.password_secret are both set: choose one"
                        .into(),
                );
            }
            if t.pulumi_export.is_some() && t.rds_instance.is_some() {
                p.push("target.pulumi_export and target.rds_instance both give the endpoint: choose one".into());
            }
        }
        if t.pulumi_resource.is_some() && t.pulumi_export.is_none() {
            p.push("target.pulumi_resource needs target.pulumi_export".into());
        }
        for (key, value) in [
            ("target.url_env", &t.url_env),
            ("target.password_env", &t.password_env),
            ("source.url_env", &self.source.url_env),
        ] {
            if let Some(v) = value {
                if !is_env_name(v) {
                    p.push(format!("{key} {v:?} is not an environment variable name"));
                }
            }
        }
        if let Some(mode) = &t.sslmode {
            if ![
                "disable",
                "allow",
                "prefer",
                "require",
                "verify-ca",
                "verify-full",
            ]
            .contains(&mode.as_str())
            {
                p.push(format!(
                    "target.sslmode {mode:?}: use one of disable, allow, prefer, require, verify-ca, verify-full"
                ));
            }
        }
        if let Some(mode) = &self.cutover.app_sslmode {
            if !["require", "verify-ca", "verify-full"].contains(&mode.as_str()) {
                p.push(format!(
                    "cutover.app_sslmode {mode:?}: use require, verify-ca or verify-full (the app's \
                     connection to RDS is never allowed to fall back to plaintext)"
                ));
            }
        }
        if self.transfer.jobs == 0 || self.transfer.jobs > 64 {
            p.push(format!("transfer.jobs {}: use 1 to 64", self.transfer.jobs));
        }
        if let Some(size) = &self.transfer.split_tables_larger_than {
            if crate::size::parse_size(size).is_err() {
                p.push(format!(
                    "transfer.split_tables_larger_than {size:?}: use a size like \"1GB\" or \"512MB\""
                ));
            }
        }
        if !is_config_var_name(&self.cutover.backup_alias)
            || self.cutover.backup_alias == "DATABASE"
        {
            p.push(format!(
                "cutover.backup_alias {:?}: use an upper-case attachment name other than DATABASE, like HEROKU_POSTGRES_DB",
                self.cutover.backup_alias
            ));
        }
        for key in self.cutover.config_vars.keys() {
            if !is_config_var_name(key) {
                p.push(format!(
                    "cutover.config_vars.{key}: config var names are letters, digits and _"
                ));
            }
            if key == "DATABASE_URL" {
                p.push("cutover.config_vars.DATABASE_URL: herokurds sets DATABASE_URL itself from [target]".into());
            }
        }
        for kind in &self.maintenance.scale_down {
            if kind.is_empty()
                || !kind
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                p.push(format!(
                    "maintenance.scale_down {kind:?} is not a process type"
                ));
            }
            if kind == "web" {
                p.push("maintenance.scale_down \"web\": maintenance mode already holds web traffic; scaling web to zero would break the smoke checks".into());
            }
        }
        let m = &self.maintenance;
        if m.settle_timeout < m.settle {
            p.push(format!(
                "maintenance.settle_timeout ({}) is shorter than maintenance.settle ({}): the source could never settle",
                crate::duration::format_duration(m.settle_timeout),
                crate::duration::format_duration(m.settle)
            ));
        }
        for (i, s3) in self.s3.iter().enumerate() {
            for (key, v) in [("source", &s3.source), ("target", &s3.target)] {
                if !v.starts_with("s3://") || v.len() <= "s3://".len() {
                    p.push(format!(
                        "s3[{i}].{key} {v:?}: write it as s3://bucket[/prefix]"
                    ));
                }
            }
        }
        for (key, name) in [
            ("assets.access_key_var", &self.assets.access_key_var),
            ("assets.secret_key_var", &self.assets.secret_key_var),
        ] {
            if !is_config_var_name(name) {
                p.push(format!(
                    "{key} {name:?}: config var names are letters, digits and _"
                ));
            }
        }
        for (i, cf) in self.cloudfront.iter().enumerate() {
            if cf.distribution_id.is_empty()
                || !cf
                    .distribution_id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric())
            {
                p.push(format!(
                    "cloudfront[{i}].distribution_id {:?}: a distribution id is letters and digits, like E2QWRUHAPOMQZL",
                    cf.distribution_id
                ));
            }
            for path in cf.paths.iter().filter(|p| !p.starts_with('/')) {
                p.push(format!(
                    "cloudfront[{i}].paths {path:?}: invalidation paths start with /"
                ));
            }
        }
        if !self.cloudfront.is_empty() && self.s3.is_empty() {
            p.push("[[cloudfront]] switches origins from [[s3]] source buckets to their targets, and the plan has no [[s3]]".into());
        }
        for url in &self.smoke.urls {
            if let Err(e) = crate::smoke::validate_url(url) {
                p.push(format!("smoke.urls: {e}"));
            }
        }
        p
    }
}

fn is_app_name(s: &str) -> bool {
    (3..=30).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_config_var_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[heroku]
app = "micromasters-ci"
[target]
url_env = "TARGET_DATABASE_URL"
[transfer]
jobs = 4
[cutover]
backup_alias = "HEROKU_POSTGRES_DB"
config_vars = { AWS_STORAGE_BUCKET_NAME = "ol-micromasters-app-ci" }
[[s3]]
source = "s3://odl-micromasters-ci"
target = "s3://ol-micromasters-app-ci"
[smoke]
urls = ["https://micromasters-ci.herokuapp.com/", "https://micromasters-ci.herokuapp.com/program/1/"]
"#;

    #[test]
    fn the_issue_example_parses_with_defaults() {
        let plan = Plan::parse(EXAMPLE).unwrap();
        assert_eq!(plan.heroku.app, "micromasters-ci");
        assert_eq!(plan.target.url_env.as_deref(), Some("TARGET_DATABASE_URL"));
        assert_eq!(
            plan.cutover.config_vars["AWS_STORAGE_BUCKET_NAME"],
            "ol-micromasters-app-ci"
        );
        assert_eq!(plan.s3.len(), 1);
        assert!(plan.s3[0].presync && !plan.s3[0].delete && !plan.s3[0].force_delete);
        let forced = EXAMPLE.replace("[smoke]", "delete = true\nforce_delete = true\n[smoke]");
        let forced = Plan::parse(&forced).unwrap();
        assert!(forced.s3[0].delete && forced.s3[0].force_delete);
        assert_eq!(plan.smoke.urls.len(), 2);
        assert_eq!(plan.work_dir, PathBuf::from(".herokurds"));
        assert!(plan.maintenance.scale_down.is_empty());
        assert_eq!(plan.maintenance.settle, Duration::from_secs(2));
        assert_eq!(plan.maintenance.settle_timeout, Duration::from_secs(30));
        assert_eq!(plan.cutover.app_ssl_mode(), crate::url::SslMode::Require);
        let verify = Plan::parse(
            &EXAMPLE.replace("[cutover]\n", "[cutover]\napp_sslmode = \"verify-full\"\n"),
        )
        .unwrap();
        assert_eq!(
            verify.cutover.app_ssl_mode(),
            crate::url::SslMode::VerifyFull
        );
    }

    #[test]
    fn settle_durations_are_read_as_written_and_checked() {
        let plan = Plan::parse(&format!(
            "{EXAMPLE}\n[maintenance]\nsettle = \"500ms\"\nsettle_timeout = \"1m\"\n"
        ))
        .unwrap();
        assert_eq!(plan.maintenance.settle, Duration::from_millis(500));
        assert_eq!(plan.maintenance.settle_timeout, Duration::from_secs(60));
        let err = Plan::parse(&format!(
            "{EXAMPLE}\n[maintenance]\nsettle = \"10s\"\nsettle_timeout = \"5s\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("maintenance.settle_timeout (5s)"), "{err}");
        let err = Plan::parse(&format!("{EXAMPLE}\n[maintenance]\nsettle = \"soon\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`soon` is not a duration"), "{err}");
    }

    #[test]
    fn every_problem_is_listed_at_once_naming_its_key() {
        let text = r#"
[heroku]
app = "Bad_App"
[target]
host = "db.example.com"
password_env = "1NOPE"
sslmode = "on"
[transfer]
jobs = 0
split_tables_larger_than = "huge"
[cutover]
backup_alias = "DATABASE"
config_vars = { DATABASE_URL = "x" }
app_sslmode = "prefer"
[maintenance]
scale_down = ["web"]
[[s3]]
source = "odl-bucket"
target = "s3://new"
[smoke]
urls = ["ftp://x/"]
"#;
        let err = Plan::parse(text).unwrap_err();
        let PlanError::Invalid { problems, .. } = &err else {
            panic!("{err}")
        };
        let all = problems.join("\n");
        for needle in [
            "heroku.app \"Bad_App\"",
            "target.dbname is missing",
            "target.user is missing",
            "target.password_env \"1NOPE\"",
            "target.sslmode \"on\"",
            "transfer.jobs 0",
            "transfer.split_tables_larger_than \"huge\"",
            "cutover.backup_alias \"DATABASE\"",
            "cutover.config_vars.DATABASE_URL",
            "cutover.app_sslmode \"prefer\"",
            "maintenance.scale_down \"web\"",
            "s3[0].source \"odl-bucket\"",
            "smoke.urls",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert!(!all.contains("target.host"), "{all}");
    }

    #[test]
    fn assets_and_cloudfront_keys_parse_with_defaults_and_are_checked() {
        let plan = Plan::parse(EXAMPLE).unwrap();
        assert_eq!(plan.assets, AssetsSection::default());
        assert_eq!(plan.assets.access_key_var, "AWS_ACCESS_KEY_ID");
        assert!(plan.assets.check_app_credentials && plan.cloudfront.is_empty());
        let text = format!(
            "{EXAMPLE}\n[assets]\naccess_key_var = \"S3_KEY\"\ncheck_app_credentials = false\n\
             [[cloudfront]]\ndistribution_id = \"E2QWRUHAPOMQZL\"\npaths = [\"/media/*\"]\n"
        );
        let plan = Plan::parse(&text).unwrap();
        assert_eq!(plan.assets.access_key_var, "S3_KEY");
        assert_eq!(plan.assets.secret_key_var, "AWS_SECRET_ACCESS_KEY");
        assert!(!plan.assets.check_app_credentials);
        assert_eq!(plan.cloudfront[0].paths, ["/media/*"]);
        let bad = format!(
            "{EXAMPLE}\n[assets]\nsecret_key_var = \"MY-SECRET\"\n\
             [[cloudfront]]\ndistribution_id = \"E2/x\"\npaths = [\"media/*\"]\n"
        );
        let err = Plan::parse(&bad).unwrap_err().to_string();
        for needle in [
            "assets.secret_key_var \"MY-SECRET\"",
            "cloudfront[0].distribution_id \"E2/x\"",
            "cloudfront[0].paths \"media/*\"",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in {err}");
        }
        let no_s3 = EXAMPLE.split("[[s3]]").next().unwrap().to_string()
            + "[[cloudfront]]\ndistribution_id = \"E2QWRUHAPOMQZL\"\n";
        let err = Plan::parse(&no_s3).unwrap_err().to_string();
        assert!(err.contains("the plan has no [[s3]]"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = Plan::parse(&EXAMPLE.replace("jobs = 4", "jobz = 4"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("jobz"), "{err}");
    }

    #[test]
    fn target_from_pulumi_and_secret_needs_no_parts() {
        let text = r#"
[heroku]
app = "micromasters-ci"
[target]
pulumi_export = "stack.json"
password_secret = "arn:aws:secretsmanager:us-east-1:1:secret:rds"
"#;
        let plan = Plan::parse(text).unwrap();
        assert_eq!(plan.target.pulumi_export, Some(PathBuf::from("stack.json")));
        let text = text.replace("pulumi_export = \"stack.json\"\n", "");
        let err = Plan::parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("target.host is missing") && err.contains("target.dbname is missing"),
            "{err}"
        );
        assert!(
            !err.contains("target.user"),
            "the secret can give the user: {err}"
        );
    }

    #[test]
    fn relative_paths_are_anchored_at_the_plan_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.toml");
        let text = EXAMPLE.replace(
            "url_env = \"TARGET_DATABASE_URL\"",
            "url_env = \"TARGET_DATABASE_URL\"\nsslrootcert = \"certs/rds.pem\"",
        );
        std::fs::write(&path, text).unwrap();
        let plan = Plan::load(&path).unwrap();
        assert_eq!(plan.work_dir, dir.path().join(".herokurds"));
        assert_eq!(
            plan.target.sslrootcert,
            Some(dir.path().join("certs/rds.pem"))
        );
        let missing = Plan::load(&dir.path().join("nope.toml"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.toml"), "{missing}");
    }

    #[test]
    fn the_transfer_section_becomes_transfer_options_in_one_place() {
        let t = TransferSection {
            jobs: 3,
            split_tables_larger_than: Some("2GB".into()),
            exclude_tables: vec!["audit.*".into()],
            exclude_extensions: vec!["pg_stat_statements".into()],
            mode: TransferMode::Online,
        };
        let o = t
            .options(Some(std::path::Path::new("/opt/pg/bin")))
            .unwrap();
        assert_eq!(o.get_jobs(), 3);
        assert_eq!(o.get_split_threshold(), 2 << 30);
        assert_eq!(o.get_exclude_tables(), ["audit.*"]);
        assert_eq!(o.get_exclude_extensions(), ["pg_stat_statements"]);
        assert_eq!(
            o.get_pg_bin_dir(),
            Some(std::path::Path::new("/opt/pg/bin"))
        );
        let bad = TransferSection {
            split_tables_larger_than: Some("99999999999TB".into()),
            ..TransferSection::default()
        };
        assert!(bad.options(None).is_err());
    }
}
