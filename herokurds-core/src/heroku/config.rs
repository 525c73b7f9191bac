//! Where the client's token and API URL come from, and how it retries.
//!
//! [`ClientBuilder::from_env`] reads them the way Heroku's own CLI does, so
//! whatever works for `heroku config` works here: the token from
//! `HEROKU_API_KEY`, else the `password` of the `machine api.heroku.com`
//! entry of `~/.netrc` (`$NETRC` names another file); the URL from
//! `HEROKU_API_URL` (a full URL, as the Terraform provider reads it), else
//! `HEROKU_HOST` (a value starting with `http` is a full URL, any other is
//! a domain: `heroku.com` means `https://api.heroku.com`), else
//! `https://api.heroku.com`. For a URL other than the default, the netrc
//! machine is that URL's `host[:port]`, as in Heroku's CLI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::client::Client;
use super::error::HerokuError;
use super::netrc;

/// The Platform API's address.
pub const DEFAULT_API_URL: &str = "https://api.heroku.com";

/// How the client retries 429 and 5xx answers, timeouts and connection
/// failures: the crate's one [`crate::retry::RetryPolicy`], attempts counted
/// in all (the client's default: 5 attempts, 0.5 s doubling to 8 s).
///
/// Each wait is jittered (between half and all of the step). Requests that
/// may have reached Heroku (a timeout, or a 5xx other than 503, on anything
/// but a `GET`) are not retried, so a non-idempotent change is never sent
/// twice because of a slow or failed answer. How the client paces itself
/// when the rate limit runs low is [`ClientBuilder::pace_below`].
pub use crate::retry::RetryPolicy;

/// The client's default retry policy: 5 attempts, 0.5 s doubling to 8 s.
fn default_retry() -> RetryPolicy {
    RetryPolicy::new(5, Duration::from_millis(500), Duration::from_secs(8))
}

/// Below how many remaining requests the client pauses, and how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacing {
    /// When `RateLimit-Remaining` drops below this, pause before each request.
    pub(crate) below: u32,
    /// The pause (Heroku refills about 75 requests a minute: one per 0.8 s).
    pub(crate) pause: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            below: 50,
            pause: Duration::from_millis(800),
        }
    }
}

/// Builds a [`Client`].
///
/// ```no_run
/// # async fn f() -> Result<(), herokurds_core::heroku::HerokuError> {
/// use herokurds_core::heroku::{ClientBuilder, RetryPolicy};
/// use std::time::Duration;
/// let client = ClientBuilder::new()
///     .from_env()?                          // token and URL like Heroku's CLI
///     .timeout(Duration::from_secs(20))
///     .retry(RetryPolicy::new(3, Duration::from_millis(500), Duration::from_secs(8)))
///     .build()?;
/// let app = client.app("micromasters-ci").await?;
/// # let _ = app; Ok(()) }
/// ```
pub struct ClientBuilder {
    base_url: Option<(String, String)>,
    token: Option<SecretString>,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
    pacing: Pacing,
    page_size: Option<u32>,
    user_agent: String,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url.as_ref().map(|(u, _)| u))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("page_size", &self.page_size)
            .finish()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            base_url: None,
            token: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: default_retry(),
            pacing: Pacing::default(),
            page_size: Some(1000),
            user_agent: format!("herokurds/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl ClientBuilder {
    /// A builder with no token, the default URL, a 30 s timeout, the
    /// default [`RetryPolicy`] and pages of 1000.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the API base URL (e.g. an emulator's `http://127.0.0.1:PORT`).
    /// Plain `http` is accepted only for loopback addresses.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some((url.into(), "the client builder".into()));
        self
    }

    /// Sets the API token.
    pub fn token(mut self, token: SecretString) -> Self {
        self.token = Some(token);
        self
    }

    /// Fills what is not set yet from the environment, like Heroku's CLI
    /// (see the module documentation). Errors when the URL is malformed or
    /// the netrc file is unreadable; a missing token is reported by
    /// [`build`](Self::build).
    pub fn from_env(mut self) -> Result<Self, HerokuError> {
        if self.base_url.is_none() {
            let (url, origin) = base_url_from(
                std::env::var("HEROKU_API_URL").ok(),
                std::env::var("HEROKU_HOST").ok(),
            );
            self.base_url = Some((url, origin.to_owned()));
        }
        if self.token.is_none() {
            let url = parse_base_url(self.base_url_str(), self.base_url_origin())?;
            self.token = token_from(
                std::env::var("HEROKU_API_KEY").ok(),
                &netrc_path(),
                &netrc_machine(&url),
            )?;
        }
        Ok(self)
    }

    /// Sets the per-request timeout (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the connect timeout (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the retry policy (default: 5 attempts, 0.5 s doubling to 8 s).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The retry policy.
    pub fn get_retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Pauses `pause` before each request while `RateLimit-Remaining` is
    /// below `remaining` (default: 0.8 s below 50; `Duration::ZERO` never
    /// pauses).
    pub fn pace_below(mut self, remaining: u32, pause: Duration) -> Self {
        self.pacing = Pacing {
            below: remaining,
            pause,
        };
        self
    }

    /// Sets the page size asked for with `Range: id ..; max=N` (1..=1000);
    /// `None` sends no `Range` and takes Heroku's default of 200.
    pub fn page_size(mut self, size: Option<u32>) -> Self {
        self.page_size = size.map(|n| n.clamp(1, 1000));
        self
    }

    /// Sets the `User-Agent`.
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = agent.into();
        self
    }

    fn base_url_str(&self) -> &str {
        self.base_url
            .as_ref()
            .map(|(u, _)| u.as_str())
            .unwrap_or(DEFAULT_API_URL)
    }

    fn base_url_origin(&self) -> &str {
        self.base_url
            .as_ref()
            .map(|(_, o)| o.as_str())
            .unwrap_or("the default")
    }

    /// Builds the client. Errors when no token was given or found.
    pub fn build(self) -> Result<Client, HerokuError> {
        let url = parse_base_url(self.base_url_str(), self.base_url_origin())?;
        let Some(token) = self.token else {
            return Err(HerokuError::NoToken {
                machine: netrc_machine(&url),
                netrc: netrc_path(),
            });
        };
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(self.user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| HerokuError::BaseUrl {
                url: url.to_string(),
                origin: "the HTTP client".into(),
                reason: e.to_string(),
            })?;
        Ok(Client::new(
            http,
            url,
            token,
            self.retry,
            self.pacing,
            self.page_size,
            self.timeout,
        ))
    }
}

/// Picks the base URL from `HEROKU_API_URL` and `HEROKU_HOST` values, and
/// says where it came from.
pub(crate) fn base_url_from(
    api_url: Option<String>,
    host: Option<String>,
) -> (String, &'static str) {
    if let Some(url) = api_url.filter(|s| !s.trim().is_empty()) {
        return (url.trim().to_owned(), "HEROKU_API_URL");
    }
    if let Some(host) = host.filter(|s| !s.trim().is_empty()) {
        let host = host.trim();
        if host.starts_with("http") {
            return (host.to_owned(), "HEROKU_HOST");
        }
        return (format!("https://api.{host}"), "HEROKU_HOST");
    }
    (DEFAULT_API_URL.to_owned(), "the default")
}

/// Parses and checks a base URL: http(s), a host, plain http only on loopback.
pub(crate) fn parse_base_url(url: &str, origin: &str) -> Result<Url, HerokuError> {
    let bad = |reason: &str| HerokuError::BaseUrl {
        url: url.to_owned(),
        origin: origin.to_owned(),
        reason: reason.to_owned(),
    };
    let mut parsed = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    let host = parsed.host_str().ok_or_else(|| bad("no host"))?.to_owned();
    match parsed.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => {
            return Err(bad(
                "plain http would send the token in clear; use https (http is allowed only for loopback emulators)",
            ))
        }
        _ => return Err(bad("the scheme must be https")),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "credentials do not belong in the URL; use HEROKU_API_KEY",
        ));
    }
    parsed.set_query(None);
    parsed.set_fragment(None);
    if !parsed.path().ends_with('/') {
        let path = format!("{}/", parsed.path());
        parsed.set_path(&path);
    }
    Ok(parsed)
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// The netrc machine for a base URL: `host[:port]`.
pub(crate) fn netrc_machine(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// `$NETRC`, else `~/.netrc`.
pub(crate) fn netrc_path() -> PathBuf {
    if let Some(p) = std::env::var_os("NETRC").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".netrc")
}

/// `HEROKU_API_KEY` if set, else the netrc password of `machine`.
pub(crate) fn token_from(
    api_key: Option<String>,
    netrc: &Path,
    machine: &str,
) -> Result<Option<SecretString>, HerokuError> {
    if let Some(key) = api_key.filter(|k| !k.trim().is_empty()) {
        return Ok(Some(SecretString::from(key.trim().to_owned())));
    }
    let text = match std::fs::read_to_string(netrc) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(HerokuError::Netrc {
                path: netrc.to_owned(),
                reason: e.to_string(),
            })
        }
    };
    netrc::password_for(&text, machine).map_err(|reason| HerokuError::Netrc {
        path: netrc.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn base_url_like_heroku_cli() {
        assert_eq!(base_url_from(None, None).0, "https://api.heroku.com");
        assert_eq!(
            base_url_from(None, Some("http://127.0.0.1:5000".into())).0,
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            base_url_from(None, Some("herokudev.com".into())).0,
            "https://api.herokudev.com"
        );
        let (u, origin) = base_url_from(
            Some("https://api.example.com".into()),
            Some("heroku.com".into()),
        );
        assert_eq!(
            (u.as_str(), origin),
            ("https://api.example.com", "HEROKU_API_URL")
        );
    }

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(parse_base_url("http://127.0.0.1:5000", "t").is_ok());
        assert!(parse_base_url("http://localhost:5000", "t").is_ok());
        assert!(parse_base_url("http://[::1]:5000", "t").is_ok());
        let e = parse_base_url("http://api.example.com", "t").unwrap_err();
        assert!(e.to_string().contains("https"), "{e}");
        assert!(parse_base_url("ftp://x", "t").is_err());
        assert!(parse_base_url("https://u:p@api.heroku.com", "t").is_err());
    }

    #[test]
    fn netrc_machine_is_host_and_port() {
        let u = parse_base_url("https://api.heroku.com", "t").unwrap();
        assert_eq!(netrc_machine(&u), "api.heroku.com");
        let u = parse_base_url("http://127.0.0.1:5000", "t").unwrap();
        assert_eq!(netrc_machine(&u), "127.0.0.1:5000");
    }

    #[test]
    fn token_from_env_then_netrc() {
        let dir = tempfile::tempdir().unwrap();
        let netrc = dir.path().join("netrc");
        assert!(token_from(None, &netrc, "api.heroku.com")
            .unwrap()
            .is_none());
        std::fs::write(
            &netrc,
            "machine api.heroku.com login me password fromnetrc\n",
        )
        .unwrap();
        let t = token_from(None, &netrc, "api.heroku.com").unwrap().unwrap();
        assert_eq!(t.expose_secret(), "fromnetrc");
        let t = token_from(Some("fromenv".into()), &netrc, "api.heroku.com")
            .unwrap()
            .unwrap();
        assert_eq!(t.expose_secret(), "fromenv");
    }

    #[test]
    fn no_token_error_says_what_to_do() {
        let e = ClientBuilder::new().build().unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("HEROKU_API_KEY") && s.contains("machine api.heroku.com"),
            "{s}"
        );
    }

    #[test]
    fn the_default_retry_policy_is_four_retries_from_half_a_second() {
        let p = ClientBuilder::new().get_retry().clone();
        assert_eq!(p.retries(), 4);
        assert_eq!(p.backoff(2), Duration::from_millis(500));
        assert_eq!(p.backoff(5), Duration::from_secs(4));
        assert_eq!(p.backoff(40), Duration::from_secs(8));
    }

    #[test]
    fn builder_debug_hides_the_token() {
        let b = ClientBuilder::new().token(SecretString::from("s3cr3t-tok"));
        assert!(!format!("{b:?}").contains("s3cr3t"));
    }
}
