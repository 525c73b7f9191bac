//! The whole migration's world on one machine: what `herokurds demo` and
//! the end-to-end tests run against.
//!
//! - a Heroku-Postgres-like source cluster filled with a sample app's data
//!   (`demo.sql`), owned by a non-superuser;
//! - an RDS-like target cluster, empty;
//! - the Heroku emulator with the app, its Postgres add-on attached as
//!   `DATABASE` and `HEROKU_POSTGRESQL_YELLOW`, config vars and dynos;
//! - a moto server with the app's asset bucket, an empty new one, and a
//!   CloudFront distribution serving the old bucket; the app's own AWS
//!   keys are config vars (moto accepts any);
//! - the sample app's web site, whose pages read the app's *current*
//!   `DATABASE_URL` and bucket through the emulator.
//!
//! Everything stops and is deleted when the stack is dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;

use super::moto::MotoServer;
use super::webapp::DemoWebApp;
use super::{LocalPostgres, PostgresOptions, SandboxError};
use crate::emulator::{Emulator, Seed, SeedAddon, SeedApp};
use herokurds_core::aws::ClientOptions;
use herokurds_core::runbook::{Context, Plan};

/// The demo app's name on the emulator.
pub const DEMO_APP: &str = "micromasters-demo";
/// Its Postgres add-on.
pub const DEMO_ADDON: &str = "postgresql-rigid-71273";
/// The bucket the app uses before the migration.
pub const OLD_BUCKET: &str = "odl-micromasters-demo";
/// The bucket it uses after.
pub const NEW_BUCKET: &str = "ol-micromasters-app-demo";
/// The environment variable the plan reads the target URL from (looked up
/// in [`DemoStack::context`], never set in the process environment).
pub const TARGET_URL_ENV: &str = "HEROKURDS_DEMO_TARGET_URL";

/// What the stack holds.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Start moto and sync a bucket (default true).
    pub s3: bool,
    /// Assets in the old bucket besides the program images (default 200).
    pub assets: usize,
    /// Rows of an extra `events` table (about 200 bytes each; default 0),
    /// to make the transfer take a while.
    pub event_rows: u64,
    /// Process types the plan scales to zero for the window (default
    /// `worker`, `clock`).
    pub scale_down: Vec<String>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            s3: true,
            assets: 200,
            event_rows: 0,
            scale_down: vec!["worker".into(), "clock".into()],
        }
    }
}

/// The running world; dropped = stopped and deleted.
pub struct DemoStack {
    /// The Heroku-like source.
    pub source: LocalPostgres,
    /// The RDS-like target.
    pub target: LocalPostgres,
    /// The Heroku Platform API emulator.
    pub heroku: Emulator,
    /// The local S3, when asked for.
    pub moto: Option<MotoServer>,
    /// The sample app's site.
    pub web: DemoWebApp,
    token: String,
    distribution_id: Option<String>,
    work: tempfile::TempDir,
    options: DemoOptions,
}

impl DemoStack {
    /// Starts everything and fills the source.
    pub async fn start(options: DemoOptions) -> Result<DemoStack, SandboxError> {
        let (source, target) = tokio::try_join!(
            LocalPostgres::start(PostgresOptions::heroku()),
            LocalPostgres::start(PostgresOptions::rds()),
        )?;
        let owner = source.owner_client().await?;
        let sql_err = |e: tokio_postgres::Error| SandboxError::Sql {
            sql: "loading the demo data".into(),
            message: e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_string()),
        };
        owner
            .batch_execute(include_str!("demo.sql"))
            .await
            .map_err(sql_err)?;
        if options.event_rows > 0 {
            owner
                .batch_execute(&format!(
                    "CREATE TABLE events (id bigserial PRIMARY KEY, learner_id bigint REFERENCES learners(id),
                                          kind text NOT NULL, payload jsonb NOT NULL, at timestamptz NOT NULL);
                     INSERT INTO events (learner_id, kind, payload, at)
                     SELECT 1 + i % 5000, (ARRAY['view','click','submit'])[1 + i % 3],
                            jsonb_build_object('page', '/program/' || (i % 4) || '/', 'ms', i % 997,
                                               'agent', 'Mozilla/5.0 (X11; Linux x86_64) demo'),
                            timestamptz '2024-01-01' + i * interval '1 second'
                     FROM generate_series(1, {}) AS i;
                     CREATE INDEX events_learner_idx ON events (learner_id);
                     ANALYZE events;",
                    options.event_rows
                ))
                .await
                .map_err(sql_err)?;
        }
        drop(owner);

        let token = format!("demo-{}", super::postgres::random_token(20));
        let moto = if options.s3 {
            let moto = tokio::task::spawn_blocking(MotoServer::start)
                .await
                .map_err(|e| SandboxError::Failed {
                    what: "starting moto".into(),
                    log_tail: e.to_string(),
                })?
                .map_err(|e| SandboxError::Failed {
                    what: "starting moto".into(),
                    log_tail: e.to_string(),
                })?;
            fill_buckets(&moto, options.assets).await?;
            Some(moto)
        } else {
            None
        };
        let distribution_id = match &moto {
            Some(moto) => Some(moto.create_s3_distribution(OLD_BUCKET).await.map_err(|e| {
                SandboxError::Failed {
                    what: "creating the demo's CloudFront distribution".into(),
                    log_tail: e.to_string(),
                }
            })?),
            None => None,
        };

        let mut formation = BTreeMap::new();
        formation.insert("web".to_string(), 1);
        formation.insert("worker".to_string(), 2);
        formation.insert("clock".to_string(), 1);
        let seed = Seed::new().token(token.clone()).app(SeedApp {
            name: DEMO_APP.into(),
            maintenance: false,
            config_vars: [
                (
                    "AWS_STORAGE_BUCKET_NAME".to_string(),
                    OLD_BUCKET.to_string(),
                ),
                ("SECRET_KEY".to_string(), super::postgres::random_token(32)),
                (
                    "AWS_ACCESS_KEY_ID".to_string(),
                    format!("AKIA{}", super::postgres::random_token(16).to_uppercase()),
                ),
                (
                    "AWS_SECRET_ACCESS_KEY".to_string(),
                    super::postgres::random_token(40),
                ),
            ]
            .into_iter()
            .collect(),
            addons: vec![
                SeedAddon::postgres(DEMO_ADDON, source.url().expose_secret().to_string())
                    .attach("DATABASE")
                    .attach("HEROKU_POSTGRESQL_YELLOW"),
            ],
            formation: Some(formation),
        });
        let heroku = Emulator::start(seed)
            .await
            .map_err(|e| SandboxError::Failed {
                what: "starting the Heroku emulator".into(),
                log_tail: e.to_string(),
            })?;
        let client = heroku
            .client_builder(&token)
            .build()
            .map_err(|e| SandboxError::Failed {
                what: "building the Heroku client".into(),
                log_tail: e.to_string(),
            })?;
        let s3_base = moto
            .as_ref()
            .map_or_else(String::new, MotoServer::endpoint_url);
        let web = DemoWebApp::start(client, DEMO_APP, s3_base).await?;
        let work = tempfile::Builder::new()
            .prefix("herokurds-demo-")
            .tempdir()
            .map_err(|source| SandboxError::Io {
                what: "creating the demo work dir".into(),
                source,
            })?;
        Ok(DemoStack {
            source,
            target,
            heroku,
            moto,
            web,
            token,
            distribution_id,
            work,
            options,
        })
    }

    /// The Heroku API token the emulator accepts.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The CloudFront distribution serving the old bucket (with moto).
    pub fn distribution_id(&self) -> Option<&str> {
        self.distribution_id.as_deref()
    }

    /// A directory for the journal and the plan file, deleted with the stack.
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// The migration plan for this stack, as TOML (what an operator would
    /// write).
    pub fn plan_toml(&self) -> String {
        let mut t = format!(
            "# herokurds demo plan\n\
             work_dir = \"{work}\"\n\n\
             [heroku]\napp = \"{DEMO_APP}\"\n\n\
             [target]\nurl_env = \"{TARGET_URL_ENV}\"\n\n\
             [transfer]\njobs = 2\n\n\
             [maintenance]\nscale_down = [{scale}]\n\n\
             [cutover]\nbackup_alias = \"HEROKU_POSTGRES_DB\"\n",
            work = self.work.path().join("state").display(),
            scale = self
                .options
                .scale_down
                .iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if self.moto.is_some() {
            t.push_str(&format!(
                "config_vars = {{ AWS_STORAGE_BUCKET_NAME = \"{NEW_BUCKET}\" }}\n\n\
                 [[s3]]\nsource = \"s3://{OLD_BUCKET}\"\ntarget = \"s3://{NEW_BUCKET}\"\ndelete = true\n"
            ));
        }
        if let Some(id) = &self.distribution_id {
            t.push_str(&format!("\n[[cloudfront]]\ndistribution_id = \"{id}\"\n"));
        }
        t.push_str(&format!(
            "\n[smoke]\nurls = [\"{0}/\", \"{0}/program/scm/\", \"{0}/program/sds/\"]\n",
            self.web.url()
        ));
        t
    }

    /// The plan, parsed.
    pub fn plan(&self) -> Plan {
        Plan::parse(&self.plan_toml()).expect("the demo plan is valid")
    }

    /// Writes the plan to `<work dir>/plan.toml` and returns its path.
    pub fn write_plan(&self) -> Result<PathBuf, SandboxError> {
        let path = self.work.path().join("plan.toml");
        std::fs::write(&path, self.plan_toml()).map_err(|source| SandboxError::Io {
            what: format!("writing {}", path.display()),
            source,
        })?;
        Ok(path)
    }

    /// A Heroku client for the emulator.
    pub fn heroku_client(&self) -> herokurds_core::heroku::Client {
        self.heroku
            .client_builder(&self.token)
            .build()
            .expect("the emulator client builds")
    }

    /// The runbook's context: the emulator, the target URL under
    /// [`TARGET_URL_ENV`], moto for AWS, a short write-check wait.
    pub fn context(&self) -> Context {
        let target = self.target.url().expose_secret().to_string();
        let mut ctx = Context::new(self.heroku_client())
            .env(move |name| (name == TARGET_URL_ENV).then(|| target.clone()))
            .write_check_wait(std::time::Duration::from_secs(2))
            .pg_bin_dir(self.source.bin_dir());
        if let Some(moto) = &self.moto {
            ctx = ctx.aws(moto_client_options(moto));
        }
        ctx
    }

    /// Environment variables that point a `herokurds` process at this
    /// stack (for tests that run the real binary).
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("HEROKU_API_URL".to_string(), self.heroku.url().to_string()),
            ("HEROKU_API_KEY".to_string(), self.token.clone()),
            (
                TARGET_URL_ENV.to_string(),
                self.target.url().expose_secret().to_string(),
            ),
        ];
        if let Some(moto) = &self.moto {
            v.extend(moto.env_vars().into_iter().map(|(k, v)| (k.to_string(), v)));
        }
        v
    }
}

/// AWS client options that reach `moto` with its dummy credentials.
pub fn moto_client_options(moto: &MotoServer) -> ClientOptions {
    ClientOptions::new()
        .endpoint_url(moto.endpoint_url())
        .region("us-east-1")
        .static_credentials(MotoServer::credentials())
}

/// A tiny valid PNG (1x1), different per `seed` so sizes and ETags differ.
fn png(seed: u8) -> Vec<u8> {
    let mut v = vec![
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R', 0,
        0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89,
    ];
    v.extend(std::iter::repeat_n(seed, 16 + seed as usize));
    v
}

async fn fill_buckets(moto: &MotoServer, assets: usize) -> Result<(), SandboxError> {
    let fail = |e: super::moto::MotoError| SandboxError::Failed {
        what: "filling the demo buckets".into(),
        log_tail: e.to_string(),
    };
    for bucket in [OLD_BUCKET, NEW_BUCKET] {
        moto.create_bucket(bucket).await.map_err(fail)?;
        // Public assets, as the app's buckets are (CopyObject does not carry
        // object ACLs, so the new bucket needs its own policy, as on AWS).
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                "Resource": format!("arn:aws:s3:::{bucket}/*"),
            }],
        });
        moto.s3_client()
            .put_bucket_policy()
            .bucket(bucket)
            .policy(policy.to_string())
            .send()
            .await
            .map_err(|e| SandboxError::Failed {
                what: format!("PutBucketPolicy {bucket}"),
                log_tail: herokurds_core::aws::sdk_error_reason(&e),
            })?;
    }
    let mut objects: Vec<(String, Vec<u8>)> = ["scm", "dedp", "sds", "fin"]
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("programs/{p}.png"), png(i as u8)))
        .collect();
    objects.extend((0..assets).map(|i| {
        (
            format!("media/uploads/{:03}/avatar {i}+ü.png", i % 17),
            png((i % 200) as u8),
        )
    }));
    moto.put_objects(OLD_BUCKET, objects, 16)
        .await
        .map_err(fail)
}
