//! Errors of the Heroku Platform API client.
//!
//! The API answers errors as `{"id": "...", "message": "..."}`; callers act
//! on the kind, so [`HerokuError`] has one variant per `id` that matters
//! (keyed on the id, not on the status code, as Heroku recommends). Every
//! variant names what the request was about ([`Target`]: the app, add-on or
//! attachment) and carries Heroku's own message. No variant ever holds the
//! API token or a config var value.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// What a request was about; the names that go into an error message.
///
/// Kept small (boxed strings) so that `Result<_, HerokuError>` stays cheap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    app: Option<Box<str>>,
    addon: Option<Box<str>>,
    attachment: Option<Box<str>>,
}

impl Target {
    /// A target naming only an app.
    pub fn for_app(app: &str) -> Self {
        Target {
            app: Some(app.into()),
            ..Target::default()
        }
    }

    /// Adds the add-on's name.
    pub fn with_addon(mut self, addon: &str) -> Self {
        self.addon = Some(addon.into());
        self
    }

    /// Adds the attachment's name.
    pub fn with_attachment(mut self, attachment: &str) -> Self {
        self.attachment = Some(attachment.into());
        self
    }

    /// The app, by name or id, as the caller gave it.
    pub fn app(&self) -> Option<&str> {
        self.app.as_deref()
    }

    /// The add-on, by name or id.
    pub fn addon(&self) -> Option<&str> {
        self.addon.as_deref()
    }

    /// The add-on attachment, by name or id.
    pub fn attachment(&self) -> Option<&str> {
        self.attachment.as_deref()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(app) = &self.app {
            parts.push(format!("app {app}"));
        }
        if let Some(addon) = &self.addon {
            parts.push(format!("add-on {addon}"));
        }
        if let Some(attachment) = &self.attachment {
            parts.push(format!("attachment {attachment}"));
        }
        if parts.is_empty() {
            f.write_str("Heroku API")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// An error from the Heroku client.
///
/// API errors are keyed on the `id` of Heroku's error body. Use
/// [`HerokuError::is_retryable`] to decide whether trying again later can
/// help (the client has already retried those within its [`RetryPolicy`]).
///
/// [`RetryPolicy`]: super::RetryPolicy
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HerokuError {
    /// Neither `HEROKU_API_KEY` nor a netrc entry holds a token.
    #[error(
        "no Heroku API token: set HEROKU_API_KEY, or run `heroku login` so that {} has a `machine {machine}` entry",
        netrc.display()
    )]
    NoToken {
        /// The netrc machine that was looked up (`api.heroku.com`).
        machine: String,
        /// The netrc file that was read (`$NETRC` or `~/.netrc`).
        netrc: PathBuf,
    },
    /// The netrc file exists but cannot be read or parsed.
    #[error("cannot read the Heroku token from {}: {reason}", path.display())]
    Netrc {
        /// The netrc file.
        path: PathBuf,
        /// What is wrong with it (never its content).
        reason: String,
    },
    /// The API base URL is not usable.
    #[error("invalid Heroku API URL {url:?} (from {origin}): {reason}")]
    BaseUrl {
        /// The URL as given.
        url: String,
        /// Where it came from (`HEROKU_API_URL`, `HEROKU_HOST`, the builder).
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An argument was refused before any request was sent.
    #[error("{what}: {reason}")]
    InvalidArgument {
        /// The argument (e.g. `config var name "A-B"`).
        what: String,
        /// Why it was refused and what to do.
        reason: String,
    },
    /// 401 `unauthorized`: the token is wrong, expired or revoked.
    #[error(
        "Heroku rejected the API token ({message}); check HEROKU_API_KEY or run `heroku login`"
    )]
    Unauthorized {
        /// Heroku's message.
        message: String,
    },
    /// 403 `forbidden` (or `two_factor`, ...): the token may not do this.
    #[error("{target}: forbidden ({id}): {message}; the account behind the token lacks access to this app")]
    Forbidden {
        /// What the request was about.
        target: Target,
        /// The API error id.
        id: String,
        /// Heroku's message.
        message: String,
    },
    /// 404 `not_found`: the app, add-on or attachment does not exist (or is
    /// not visible to this account).
    #[error("{target}: not found: {message}{}", resource_hint(resource))]
    NotFound {
        /// What the request was about.
        target: Target,
        /// Heroku's `resource` field: `app`, `add_on`, `add_on attachment`...
        resource: String,
        /// Heroku's message.
        message: String,
    },
    /// `confirmation_required`: the change replaces something (an attachment
    /// or config var of that name) and must carry `confirm: <app>`.
    #[error(
        "{target}: confirmation required: {message} (pass confirm, e.g. --confirm, to replace it)"
    )]
    ConfirmationRequired {
        /// What the request was about.
        target: Target,
        /// Heroku's message.
        message: String,
    },
    /// 422 `invalid_params`, e.g. setting a config var that an attachment owns.
    #[error("{target}: invalid request: {message}{}", invalid_params_hint(message))]
    InvalidParams {
        /// What the request was about.
        target: Target,
        /// Heroku's message.
        message: String,
    },
    /// 409 `conflict`.
    #[error("{target}: conflict: {message}")]
    Conflict {
        /// What the request was about.
        target: Target,
        /// Heroku's message.
        message: String,
    },
    /// 429 `rate_limit`, still there after the retries.
    #[error("{target}: Heroku API rate limit reached after {attempts} attempt(s): {message}; wait a few minutes (about 75 requests a minute come back)")]
    RateLimited {
        /// What the request was about.
        target: Target,
        /// Heroku's message.
        message: String,
        /// Requests sent, retries included.
        attempts: u32,
    },
    /// 5xx (`service_unavailable`, ...), still there after the retries.
    #[error("{target}: Heroku API unavailable (HTTP {status} {id}) after {attempts} attempt(s): {message}; try again later")]
    Unavailable {
        /// What the request was about.
        target: Target,
        /// HTTP status.
        status: u16,
        /// The API error id (`service_unavailable`, `internal_server_error`...).
        id: String,
        /// Heroku's message.
        message: String,
        /// Requests sent, retries included.
        attempts: u32,
    },
    /// Any other API error.
    #[error("{target}: Heroku API error (HTTP {status} {id}): {message}")]
    Api {
        /// What the request was about.
        target: Target,
        /// HTTP status.
        status: u16,
        /// The API error id.
        id: String,
        /// Heroku's message.
        message: String,
    },
    /// No answer within the request timeout.
    #[error("{target}: {request} timed out after {after:?} ({attempts} attempt(s))")]
    Timeout {
        /// What the request was about.
        target: Target,
        /// Method and path, e.g. `GET /apps/example`.
        request: String,
        /// The per-request timeout.
        after: Duration,
        /// Requests sent, retries included.
        attempts: u32,
    },
    /// The request could not be sent or its answer not read.
    #[error("{target}: {request} failed ({attempts} attempt(s)): {reason}")]
    Transport {
        /// What the request was about.
        target: Target,
        /// Method and path.
        request: String,
        /// What went wrong.
        reason: String,
        /// Requests sent, retries included.
        attempts: u32,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The answer was not what the API documents.
    #[error("{target}: unexpected answer to {request}: {reason}")]
    Decode {
        /// What the request was about.
        target: Target,
        /// Method and path.
        request: String,
        /// What was wrong with it (never the body itself).
        reason: String,
    },
    /// The add-on is not a Heroku Postgres database.
    #[error("add-on {addon} is a {service} add-on, not heroku-postgresql")]
    NotPostgres {
        /// The add-on.
        addon: String,
        /// Its service.
        service: String,
    },
}

fn resource_hint(resource: &str) -> &'static str {
    match resource {
        "app" => " (check the app name, and that the token's account can access it)",
        "add_on" | "add-on" | "addon" => " (check the add-on name, e.g. postgresql-rigid-71273)",
        "add_on attachment" | "add-on attachment" | "attachment" => {
            " (check the attachment name, e.g. DATABASE)"
        }
        _ => "",
    }
}

fn invalid_params_hint(message: &str) -> &'static str {
    if message.contains("attachment values") {
        " (the variable is provided by an add-on attachment: detach that attachment first)"
    } else if message.contains("last attachment to billing app") {
        " (attach the add-on under another name first, e.g. HEROKU_POSTGRES_DB)"
    } else {
        ""
    }
}

impl HerokuError {
    /// Builds the error for an API error answer (`id` and `message` from
    /// the body, or derived from the status when the body has none).
    pub(crate) fn from_api(
        status: u16,
        id: Option<String>,
        message: Option<String>,
        resource: Option<String>,
        target: Target,
        attempts: u32,
    ) -> Self {
        let id = id.unwrap_or_else(|| default_id(status).to_owned());
        let message = message.unwrap_or_else(|| format!("HTTP {status}"));
        match id.as_str() {
            "unauthorized" => HerokuError::Unauthorized { message },
            "forbidden" | "two_factor" | "suspended" | "delinquent" => HerokuError::Forbidden {
                target,
                id,
                message,
            },
            "not_found" => HerokuError::NotFound {
                target,
                resource: resource.unwrap_or_default(),
                message,
            },
            "confirmation_required" => HerokuError::ConfirmationRequired { target, message },
            "invalid_params" => HerokuError::InvalidParams { target, message },
            "conflict" => HerokuError::Conflict { target, message },
            "rate_limit" => HerokuError::RateLimited {
                target,
                message,
                attempts,
            },
            _ if status >= 500 => HerokuError::Unavailable {
                target,
                status,
                id,
                message,
                attempts,
            },
            _ if status == 401 => HerokuError::Unauthorized { message },
            _ => HerokuError::Api {
                target,
                status,
                id,
                message,
            },
        }
    }

    /// True when trying again later may succeed: rate limits, 5xx,
    /// timeouts and transport failures.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            HerokuError::RateLimited { .. }
                | HerokuError::Unavailable { .. }
                | HerokuError::Timeout { .. }
                | HerokuError::Transport { .. }
        )
    }

    /// The API error `id` (`not_found`, `invalid_params`...), for API errors.
    pub fn id(&self) -> Option<&str> {
        Some(match self {
            HerokuError::Unauthorized { .. } => "unauthorized",
            HerokuError::Forbidden { id, .. } => id,
            HerokuError::NotFound { .. } => "not_found",
            HerokuError::ConfirmationRequired { .. } => "confirmation_required",
            HerokuError::InvalidParams { .. } => "invalid_params",
            HerokuError::Conflict { .. } => "conflict",
            HerokuError::RateLimited { .. } => "rate_limit",
            HerokuError::Unavailable { id, .. } | HerokuError::Api { id, .. } => id,
            _ => return None,
        })
    }

    /// Heroku's message, for API errors.
    pub fn api_message(&self) -> Option<&str> {
        match self {
            HerokuError::Unauthorized { message }
            | HerokuError::Forbidden { message, .. }
            | HerokuError::NotFound { message, .. }
            | HerokuError::ConfirmationRequired { message, .. }
            | HerokuError::InvalidParams { message, .. }
            | HerokuError::Conflict { message, .. }
            | HerokuError::RateLimited { message, .. }
            | HerokuError::Unavailable { message, .. }
            | HerokuError::Api { message, .. } => Some(message),
            _ => None,
        }
    }

    /// What the failed request was about, when it was a request.
    pub fn target(&self) -> Option<&Target> {
        match self {
            HerokuError::Forbidden { target, .. }
            | HerokuError::NotFound { target, .. }
            | HerokuError::ConfirmationRequired { target, .. }
            | HerokuError::InvalidParams { target, .. }
            | HerokuError::Conflict { target, .. }
            | HerokuError::RateLimited { target, .. }
            | HerokuError::Unavailable { target, .. }
            | HerokuError::Api { target, .. }
            | HerokuError::Timeout { target, .. }
            | HerokuError::Transport { target, .. }
            | HerokuError::Decode { target, .. } => Some(target),
            _ => None,
        }
    }

    /// The app the failed request was about.
    pub fn app(&self) -> Option<&str> {
        self.target().and_then(Target::app)
    }

    /// The add-on the failed request was about.
    pub fn addon(&self) -> Option<&str> {
        match self {
            HerokuError::NotPostgres { addon, .. } => Some(addon),
            _ => self.target().and_then(Target::addon),
        }
    }

    /// True for 404 `not_found`.
    pub fn is_not_found(&self) -> bool {
        matches!(self, HerokuError::NotFound { .. })
    }

    /// True for 401 `unauthorized`.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, HerokuError::Unauthorized { .. })
    }

    /// True for `confirmation_required`.
    pub fn is_confirmation_required(&self) -> bool {
        matches!(self, HerokuError::ConfirmationRequired { .. })
    }
}

/// The error id Heroku uses for a status, when a body has none.
fn default_id(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        422 => "invalid_params",
        423 => "confirmation_required",
        429 => "rate_limit",
        503 => "service_unavailable",
        s if s >= 500 => "internal_server_error",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_on_id_not_status() {
        let e = HerokuError::from_api(
            422,
            Some("confirmation_required".into()),
            Some("confirm".into()),
            None,
            Target::for_app("a"),
            1,
        );
        assert!(e.is_confirmation_required());
        let e = HerokuError::from_api(404, None, None, None, Target::for_app("a"), 1);
        assert!(e.is_not_found());
        let e = HerokuError::from_api(502, None, None, None, Target::default(), 3);
        assert!(e.is_retryable());
        assert_eq!(e.id(), Some("internal_server_error"));
    }

    #[test]
    fn messages_name_the_target_and_say_what_to_do() {
        let e = HerokuError::from_api(
            404,
            Some("not_found".into()),
            Some("Couldn't find that app.".into()),
            Some("app".into()),
            Target::for_app("nope"),
            1,
        );
        let s = e.to_string();
        assert!(s.contains("app nope"), "{s}");
        assert!(s.contains("Couldn't find that app."), "{s}");
        assert_eq!(e.app(), Some("nope"));
        let e = HerokuError::from_api(
            422,
            Some("invalid_params".into()),
            Some("Cannot overwrite attachment values DATABASE_URL.".into()),
            None,
            Target::for_app("a"),
            1,
        );
        assert!(e.to_string().contains("detach"), "{e}");
    }
}
