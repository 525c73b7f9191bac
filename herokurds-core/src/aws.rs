//! Where the RDS password and endpoint come from on the AWS side.
//!
//! The runbook copies the RDS password out of `pulumi config get` by hand and
//! the endpoint out of a grep. RDS can keep the master password in AWS
//! Secrets Manager itself (`ManageMasterUserPassword`), and rotation secrets
//! carry host, port and database name as well, so this module reads the
//! password (and whatever else the secret holds) from Secrets Manager, and
//! the endpoint and the managed secret's ARN from the RDS API. The pieces
//! come back as plain typed parts ([`DbSecret`], [`RdsEndpoint`]) that the
//! `url` module assembles into a `DatabaseUrl`.
//!
//! Secret values live in [`SecretString`]s; no error, log line or `Debug`
//! output of this module contains them.
//!
//! [`ClientOptions`] builds AWS clients from the standard credential chain
//! (environment, profiles, SSO) with an optional profile, region and
//! endpoint URL; it is shared with the `s3` and `cloudfront` modules.

use std::fmt;

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// Failures of the Secrets Manager and RDS look-ups.
///
/// Every variant names the secret id or instance identifier; none contains a
/// secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AwsError {
    /// Secrets Manager has no secret with this name or ARN.
    #[error("secret {secret_id} not found in AWS Secrets Manager: check the name or ARN, the region and the account")]
    SecretNotFound {
        /// The secret name or ARN asked for.
        secret_id: String,
    },
    /// Reading the secret failed (permissions, network, throttling...).
    #[error("could not read secret {secret_id} from AWS Secrets Manager: {reason}")]
    SecretAccess {
        /// The secret name or ARN asked for.
        secret_id: String,
        /// What the service or the client said.
        reason: String,
        /// Whether trying again may help.
        retryable: bool,
    },
    /// The secret exists but is not a database credential herokurds understands.
    #[error("secret {secret_id} is not a usable database secret: {reason}")]
    SecretMalformed {
        /// The secret name or ARN asked for.
        secret_id: String,
        /// What is wrong, without the value.
        reason: String,
    },
    /// RDS has no DB instance with this identifier.
    #[error(
        "RDS instance {instance_id} not found: check the identifier, the region and the account"
    )]
    RdsInstanceNotFound {
        /// The DB instance identifier asked for.
        instance_id: String,
    },
    /// DescribeDBInstances failed.
    #[error("could not describe RDS instance {instance_id}: {reason}")]
    Rds {
        /// The DB instance identifier asked for.
        instance_id: String,
        /// What the service or the client said.
        reason: String,
        /// Whether trying again may help.
        retryable: bool,
    },
    /// The AWS configuration is unusable (missing profile, no region...).
    #[error("AWS configuration for profile {profile} is unusable: {reason}")]
    Config {
        /// The profile asked for, or `(default chain)`.
        profile: String,
        /// What is missing and what to do.
        reason: String,
    },
    /// The instance exists but has no endpoint yet (still being created?).
    #[error("RDS instance {instance_id} has no {missing} yet (status {status}): wait until it is available")]
    RdsNotReady {
        /// The DB instance identifier asked for.
        instance_id: String,
        /// The missing part (`endpoint address`, `endpoint port`).
        missing: &'static str,
        /// The instance status RDS reported.
        status: String,
    },
}

impl AwsError {
    /// Whether the same call may succeed if tried again (throttling, 5xx, network).
    pub fn is_retryable(&self) -> bool {
        match self {
            AwsError::SecretAccess { retryable, .. } | AwsError::Rds { retryable, .. } => {
                *retryable
            }
            _ => false,
        }
    }
}

/// How AWS clients are built: the standard credential chain (environment,
/// shared config and credentials files, SSO, instance roles) with an
/// optional profile, region and endpoint URL.
///
/// Without an explicit endpoint, `AWS_ENDPOINT_URL` (and the per-service
/// `AWS_ENDPOINT_URL_S3`, ...) are honoured by the SDK. S3 clients use
/// path-style addressing whenever an endpoint URL is configured, as
/// S3-compatible servers expect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOptions {
    profile: Option<String>,
    region: Option<String>,
    endpoint_url: Option<String>,
    max_attempts: Option<u32>,
    credentials: Option<aws_sdk_s3::config::Credentials>,
}

impl ClientOptions {
    /// The default chain, default region, default endpoint.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses this named profile from `~/.aws/config` / `~/.aws/credentials`.
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// Uses this region instead of the profile's or `AWS_REGION`.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sends requests to this endpoint (an S3-compatible server, moto...).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Tries each request at most this many times (throttling, 5xx and
    /// network errors are retried with exponential backoff). Default: the
    /// SDK's (3).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// Uses these credentials instead of the default chain (embedders that
    /// hold their own, local S3-compatible servers). Their `Debug` is
    /// redacted by the SDK.
    pub fn static_credentials(mut self, credentials: aws_sdk_s3::config::Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The profile, if one was set.
    pub fn get_profile(&self) -> Option<&str> {
        self.profile.as_deref()
    }

    /// The region, if one was set.
    pub fn get_region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The endpoint URL, if one was set.
    pub fn get_endpoint_url(&self) -> Option<&str> {
        self.endpoint_url.as_deref()
    }

    /// The maximum attempts per request, if set.
    pub fn get_max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    /// Loads the shared SDK configuration.
    ///
    /// Fails early, naming the profile, when a profile was asked for and
    /// gives no credentials (it does not exist, or its SSO session expired),
    /// or when no region is configured anywhere.
    pub async fn load(&self) -> Result<aws_config::SdkConfig, AwsError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(p) = &self.profile {
            loader = loader.profile_name(p);
        }
        if let Some(r) = &self.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some(e) = &self.endpoint_url {
            loader = loader.endpoint_url(e);
        }
        if let Some(c) = &self.credentials {
            loader = loader.credentials_provider(c.clone());
        }
        if let Some(n) = self.max_attempts {
            loader = loader
                .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(n));
        }
        let config = loader.load().await;
        let profile = self
            .profile
            .clone()
            .unwrap_or_else(|| "(default chain)".into());
        if let (Some(_), Some(provider)) = (&self.profile, config.credentials_provider()) {
            use aws_sdk_s3::config::ProvideCredentials;
            if let Err(e) = provider.provide_credentials().await {
                return Err(AwsError::Config {
                    profile,
                    reason: format!(
                        "it gives no credentials (is it in ~/.aws/config or \
                         ~/.aws/credentials, and is its SSO session current?): {e}"
                    ),
                });
            }
        }
        if config.region().is_none() {
            return Err(AwsError::Config {
                profile,
                reason: NO_REGION.into(),
            });
        }
        Ok(config)
    }

    /// An S3 client; path-style when an endpoint URL is configured.
    pub async fn s3_client(&self) -> Result<aws_sdk_s3::Client, AwsError> {
        let shared = self.load().await?;
        let path_style = shared.endpoint_url().is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some_and(|v| !v.is_empty());
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(path_style)
            .build();
        Ok(aws_sdk_s3::Client::from_conf(config))
    }

    /// A Secrets Manager client.
    pub async fn secrets_client(&self) -> Result<aws_sdk_secretsmanager::Client, AwsError> {
        Ok(aws_sdk_secretsmanager::Client::new(&self.load().await?))
    }

    /// An RDS client.
    pub async fn rds_client(&self) -> Result<aws_sdk_rds::Client, AwsError> {
        Ok(aws_sdk_rds::Client::new(&self.load().await?))
    }

    /// A CloudFront client.
    pub async fn cloudfront_client(&self) -> Result<aws_sdk_cloudfront::Client, AwsError> {
        Ok(aws_sdk_cloudfront::Client::new(&self.load().await?))
    }
}

/// Which layout a database secret had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum SecretFormat {
    /// The RDS-managed master user secret: `{"username","password"}`.
    RdsManaged,
    /// A rotation-style secret that also names the server:
    /// `{"engine","host","port","username","password","dbname"}`.
    Rotation,
    /// The secret string is the password itself.
    PlainString,
}

/// Database credentials read from a Secrets Manager secret.
///
/// `Debug` shows the password as `***`.
#[derive(Clone)]
#[non_exhaustive]
pub struct DbSecret {
    /// The user name, when the secret has one.
    pub username: Option<String>,
    /// The password.
    pub password: SecretString,
    /// The server host name, when the secret has one (rotation format).
    pub host: Option<String>,
    /// The server port, when the secret has one (rotation format).
    pub port: Option<u16>,
    /// The database name, when the secret has one (rotation format).
    pub dbname: Option<String>,
    /// The engine (`postgres`), when the secret has one.
    pub engine: Option<String>,
    /// Which layout the secret had.
    pub format: SecretFormat,
}

impl fmt::Debug for DbSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbSecret")
            .field("username", &self.username)
            .field("password", &"***")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("engine", &self.engine)
            .field("format", &self.format)
            .finish()
    }
}

/// Reads a database secret by name or ARN (`GetSecretValue`, current
/// version) and parses it with [`parse_db_secret`].
pub async fn fetch_db_secret(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<DbSecret, AwsError> {
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|err| {
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception())
            {
                return AwsError::SecretNotFound {
                    secret_id: secret_id.to_string(),
                };
            }
            let failure = sdk_failure(&err);
            AwsError::SecretAccess {
                secret_id: secret_id.to_string(),
                reason: failure.reason,
                retryable: failure.retryable,
            }
        })?;
    match out.secret_string() {
        Some(s) => parse_db_secret(secret_id, SecretString::from(s.to_string())),
        None if out.secret_binary().is_some() => Err(AwsError::SecretMalformed {
            secret_id: secret_id.to_string(),
            reason: "it holds binary data (SecretBinary); herokurds needs a SecretString".into(),
        }),
        None => Err(AwsError::SecretMalformed {
            secret_id: secret_id.to_string(),
            reason: "it has no value".into(),
        }),
    }
}

/// Parses a secret string: a JSON object with at least `password` (and
/// optionally `username`, `host`, `port` as a number or a string, `dbname`,
/// `engine`), or, when it does not start with `{`, the password itself.
///
/// Errors name `secret_id` and the offending field, never the value: a
/// JSON syntax error reports only its line and column.
pub fn parse_db_secret(secret_id: &str, value: SecretString) -> Result<DbSecret, AwsError> {
    let malformed = |reason: String| AwsError::SecretMalformed {
        secret_id: secret_id.to_string(),
        reason,
    };
    let text = value.expose_secret();
    if text.is_empty() {
        return Err(malformed("its value is empty".into()));
    }
    if !text.trim_start().starts_with('{') {
        return Ok(DbSecret {
            username: None,
            password: value,
            host: None,
            port: None,
            dbname: None,
            engine: None,
            format: SecretFormat::PlainString,
        });
    }
    let json: serde_json::Map<String, Value> = serde_json::from_str(text).map_err(|e| {
        malformed(format!(
            "it starts with '{{' but is not a JSON object ({:?} error at line {} column {}); \
             a plain-string password must not start with '{{'",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let string_field = |name: &'static str| -> Result<Option<String>, AwsError> {
        match json.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(malformed(format!(
                "field \"{name}\" is a {}, not a string",
                json_kind(other)
            ))),
        }
    };
    let password = match json.get("password") {
        Some(Value::String(s)) if !s.is_empty() => SecretString::from(s.clone()),
        Some(Value::String(_)) => return Err(malformed("field \"password\" is empty".into())),
        Some(other) => {
            return Err(malformed(format!(
                "field \"password\" is a {}, not a string",
                json_kind(other)
            )))
        }
        None => {
            let mut fields: Vec<&str> = json.keys().map(String::as_str).collect();
            fields.sort_unstable();
            return Err(malformed(format!(
                "it has no \"password\" field (fields: {})",
                fields.join(", ")
            )));
        }
    };
    let port = match json.get("port") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
                .ok_or_else(|| malformed("field \"port\" is not a TCP port number".into()))?,
        ),
        Some(Value::String(s)) => Some(
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| malformed("field \"port\" is not a TCP port number".into()))?,
        ),
        Some(other) => {
            return Err(malformed(format!(
                "field \"port\" is a {}, not a number",
                json_kind(other)
            )))
        }
    };
    let host = string_field("host")?;
    let dbname = match string_field("dbname")? {
        Some(d) => Some(d),
        None => string_field("database")?,
    };
    let format = if host.is_some() || port.is_some() || dbname.is_some() {
        SecretFormat::Rotation
    } else {
        SecretFormat::RdsManaged
    };
    Ok(DbSecret {
        username: string_field("username")?,
        password,
        host,
        port,
        dbname,
        engine: string_field("engine")?,
        format,
    })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Where an RDS instance listens and who its master user is: the typed parts
/// of a database URL, without the password.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RdsEndpoint {
    /// The host name (`address`, never `host:port`).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The initial database, when one was created with the instance.
    pub dbname: Option<String>,
    /// The master user name, when known.
    pub username: Option<String>,
}

impl RdsEndpoint {
    /// An endpoint from its parts.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        RdsEndpoint {
            host: host.into(),
            port,
            dbname: None,
            username: None,
        }
    }

    /// Sets the database name.
    pub fn with_dbname(mut self, dbname: impl Into<String>) -> Self {
        self.dbname = Some(dbname.into());
        self
    }

    /// Sets the user name.
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }
}

/// What DescribeDBInstances says about one instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RdsInstanceInfo {
    /// The DB instance identifier.
    pub identifier: String,
    /// Host, port, initial database and master user.
    pub endpoint: RdsEndpoint,
    /// The ARN of the RDS-managed master user secret
    /// (`MasterUserSecret.SecretArn`), when RDS manages the password.
    pub master_secret_arn: Option<String>,
    /// The instance status (`available`, `creating`, ...).
    pub status: Option<String>,
    /// The engine (`postgres`).
    pub engine: Option<String>,
    /// The engine version.
    pub engine_version: Option<String>,
}

/// Describes one RDS instance by identifier: `Endpoint.Address`,
/// `Endpoint.Port`, `DBName`, `MasterUsername` and
/// `MasterUserSecret.SecretArn`.
pub async fn rds_endpoint(
    client: &aws_sdk_rds::Client,
    instance_id: &str,
) -> Result<RdsInstanceInfo, AwsError> {
    let out = client
        .describe_db_instances()
        .db_instance_identifier(instance_id)
        .send()
        .await
        .map_err(|err| {
            if err
                .as_service_error()
                .is_some_and(|e| e.is_db_instance_not_found_fault())
            {
                return AwsError::RdsInstanceNotFound {
                    instance_id: instance_id.to_string(),
                };
            }
            let failure = sdk_failure(&err);
            AwsError::Rds {
                instance_id: instance_id.to_string(),
                reason: failure.reason,
                retryable: failure.retryable,
            }
        })?;
    let instance = out
        .db_instances()
        .iter()
        .find(|i| i.db_instance_identifier() == Some(instance_id))
        .or_else(|| out.db_instances().first())
        .ok_or_else(|| AwsError::RdsInstanceNotFound {
            instance_id: instance_id.to_string(),
        })?;
    let status = instance.db_instance_status().map(str::to_string);
    let not_ready = |missing| AwsError::RdsNotReady {
        instance_id: instance_id.to_string(),
        missing,
        status: status.clone().unwrap_or_else(|| "unknown".into()),
    };
    let endpoint = instance.endpoint();
    let host = endpoint
        .and_then(|e| e.address())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| not_ready("endpoint address"))?;
    let port = endpoint
        .and_then(|e| e.port())
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| not_ready("endpoint port"))?;
    Ok(RdsInstanceInfo {
        identifier: instance
            .db_instance_identifier()
            .unwrap_or(instance_id)
            .to_string(),
        endpoint: RdsEndpoint {
            host: host.to_string(),
            port,
            dbname: instance.db_name().map(str::to_string),
            username: instance.master_username().map(str::to_string),
        },
        master_secret_arn: instance
            .master_user_secret()
            .and_then(|s| s.secret_arn())
            .map(str::to_string),
        status,
        engine: instance.engine().map(str::to_string),
        engine_version: instance.engine_version().map(str::to_string),
    })
}

const NO_REGION: &str = "no region: set one in the profile, AWS_REGION, or pass a region";

impl AwsError {
    /// Whether no region is configured anywhere (profile, `AWS_REGION`, option).
    pub fn is_missing_region(&self) -> bool {
        matches!(self, AwsError::Config { reason, .. } if reason == NO_REGION)
    }
}

/// An SDK failure reduced to words and a retry verdict.
pub(crate) struct SdkFailure {
    /// `code: message (HTTP status)`, or the client-side cause.
    pub(crate) reason: String,
    /// Throttling, 5xx, timeouts and network errors.
    pub(crate) retryable: bool,
    /// No credentials anywhere in the chain (`reason` says where it looked).
    pub(crate) no_credentials: bool,
}

/// Where the default AWS credentials chain looks, in its order.
pub const CREDENTIALS_LOOKED_IN: &str = "the environment (AWS_ACCESS_KEY_ID and \
AWS_SECRET_ACCESS_KEY), the profile (AWS_PROFILE, else default, in ~/.aws/credentials and \
~/.aws/config, SSO included), web identity, ECS and EC2 instance metadata";

/// Whether an SDK error comes from loading credentials (none configured,
/// or the instance metadata service refused).
fn is_credentials_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.downcast_ref::<aws_credential_types::provider::error::CredentialsError>()
            .is_some()
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Error codes worth retrying whatever the HTTP status (throttling, timeouts).
const RETRYABLE_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
];

/// An AWS SDK error in words, as herokurds' own errors put it:
/// `code: message (HTTP status)` for a service's answer, else the
/// client-side cause (no credentials, a timeout, a refused connection).
pub fn sdk_error_reason<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    sdk_failure(err).reason
}

/// Describes any AWS SDK error without dependency types leaking out.
pub(crate) fn sdk_failure<E>(err: &SdkError<E, HttpResponse>) -> SdkFailure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = err.code();
            let message = err.message().filter(|m| !m.is_empty());
            let reason = match (&code, message) {
                (Some(c), Some(m)) => format!("{c}: {m} (HTTP {status})"),
                (Some(c), None) => format!("{c} (HTTP {status})"),
                (None, Some(m)) => format!("{m} (HTTP {status})"),
                (None, None) => format!("HTTP {status}: {}", DisplayErrorContext(err)),
            };
            let retryable = status >= 500
                || status == 429
                || code.is_some_and(|c| RETRYABLE_CODES.contains(&c));
            SdkFailure {
                reason,
                retryable,
                no_credentials: false,
            }
        }
        SdkError::DispatchFailure(_) if is_credentials_error(err) => SdkFailure {
            reason: format!("no AWS credentials found (looked in {CREDENTIALS_LOOKED_IN})"),
            retryable: false,
            no_credentials: true,
        },
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            SdkFailure {
                reason: DisplayErrorContext(err).to_string(),
                retryable: true,
                no_credentials: false,
            }
        }
        _ => SdkFailure {
            reason: DisplayErrorContext(err).to_string(),
            retryable: false,
            no_credentials: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<DbSecret, AwsError> {
        parse_db_secret("prod/db", SecretString::from(value.to_string()))
    }

    #[test]
    fn rds_managed_secret_gives_user_and_password() {
        let s = parse(r#"{"username":"postgres","password":"p@ss:w/rd"}"#).unwrap();
        assert_eq!(s.username.as_deref(), Some("postgres"));
        assert_eq!(s.password.expose_secret(), "p@ss:w/rd");
        assert_eq!(s.format, SecretFormat::RdsManaged);
        assert_eq!(s.host, None);
    }

    #[test]
    fn rotation_secret_port_may_be_a_number_or_a_string() {
        for port in ["5433", "\"5433\""] {
            let s = parse(&format!(
                r#"{{"engine":"postgres","host":"db.x.rds.amazonaws.com","port":{port},"username":"app","password":"pw","dbname":"app"}}"#
            ))
            .unwrap();
            assert_eq!(s.port, Some(5433));
            assert_eq!(s.host.as_deref(), Some("db.x.rds.amazonaws.com"));
            assert_eq!(s.dbname.as_deref(), Some("app"));
            assert_eq!(s.engine.as_deref(), Some("postgres"));
            assert_eq!(s.format, SecretFormat::Rotation);
        }
    }

    #[test]
    fn a_plain_string_is_the_password() {
        let s = parse("  not json, just a password ").unwrap();
        assert_eq!(s.password.expose_secret(), "  not json, just a password ");
        assert_eq!(s.format, SecretFormat::PlainString);
        assert_eq!(s.username, None);
    }

    #[test]
    fn malformed_json_names_the_secret_but_not_the_value() {
        let err = parse(r#"{"username":"u","password":"hunter2-leak"#).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("prod/db"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!format!("{err:?}").contains("hunter2"));
    }

    #[test]
    fn missing_password_lists_the_fields_not_the_values() {
        let err = parse(r#"{"username":"u","pass":"hunter2-leak"}"#).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("no \"password\" field (fields: pass, username)"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn bad_port_is_rejected_without_echoing_it() {
        for port in ["\"abc-leak\"", "70000", "true"] {
            let err = parse(&format!(r#"{{"password":"pw","port":{port}}}"#)).unwrap_err();
            assert!(err.to_string().contains("\"port\""), "{err}");
            assert!(!err.to_string().contains("leak"), "{err}");
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let s = parse(r#"{"username":"u","password":"hunter2"}"#).unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("***"), "{dbg}");
    }

    #[test]
    fn empty_secret_is_an_error() {
        assert!(matches!(parse(""), Err(AwsError::SecretMalformed { .. })));
        assert!(matches!(
            parse(r#"{"password":""}"#),
            Err(AwsError::SecretMalformed { .. })
        ));
    }
}
