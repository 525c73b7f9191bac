//! The Platform API client: one method per operation the runbook needs.
//!
//! Every request carries `Accept: application/vnd.heroku+json; version=3`
//! and the Bearer token; lists follow `206 Partial Content` + `Next-Range`
//! to the end; 429 and 503 answers, connection failures and, for reads,
//! any 5xx are retried within the [`RetryPolicy`]; a low `RateLimit-Remaining` slows the client
//! down. `tracing` events name the method, path, status and attempt, never
//! the token, a request body or a config var value.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, ACCEPT, RANGE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use url::Url;

use super::config::{ClientBuilder, Pacing, RetryPolicy};
use super::error::{HerokuError, Target};
use super::types::{Account, Addon, App, Attachment, ConfigVars, Formation, Release};

/// The media type of version 3 of the Platform API.
pub const ACCEPT_V3: &str = "application/vnd.heroku+json; version=3";
/// The header that says how many requests are left in the rate limit.
pub const RATE_LIMIT_REMAINING: &str = "ratelimit-remaining";
/// The header that says how to ask for the next page of a list.
pub const NEXT_RANGE: &str = "next-range";

/// Bytes left as they are in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b':')
    .remove(b'@');

/// Pages followed at most before a list is declared broken.
const MAX_PAGES: usize = 10_000;

/// A Heroku Platform API client. Cheap to clone; clones share the
/// connection pool and the rate-limit reading.
///
/// `Debug` shows the base URL and hides the token.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    token: SecretString,
    retry: RetryPolicy,
    pacing: Pacing,
    page_size: Option<u32>,
    timeout: Duration,
    /// Last `RateLimit-Remaining` seen; -1 until one was.
    rate_remaining: AtomicI64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base.as_str())
            .field("token", &"***")
            .field("retry", &self.inner.retry)
            .finish()
    }
}

/// A successful answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Client {
    pub(crate) fn new(
        http: reqwest::Client,
        base: Url,
        token: SecretString,
        retry: RetryPolicy,
        pacing: Pacing,
        page_size: Option<u32>,
        timeout: Duration,
    ) -> Self {
        Client {
            inner: Arc::new(Inner {
                http,
                base,
                token,
                retry,
                pacing,
                page_size,
                timeout,
                rate_remaining: AtomicI64::new(-1),
            }),
        }
    }

    /// A builder, to set the URL, token, timeout and retry policy.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// A client configured like Heroku's CLI: token from `HEROKU_API_KEY` or
    /// `~/.netrc`, URL from `HEROKU_API_URL` / `HEROKU_HOST` (see
    /// [`ClientBuilder::from_env`]).
    pub fn from_env() -> Result<Self, HerokuError> {
        ClientBuilder::new().from_env()?.build()
    }

    /// The API base URL.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// The last `RateLimit-Remaining` Heroku reported, if any yet.
    pub fn rate_limit_remaining(&self) -> Option<u32> {
        let v = self.inner.rate_remaining.load(Ordering::Relaxed);
        u32::try_from(v).ok()
    }

    // ---- operations -------------------------------------------------------

    /// The account behind the token; a cheap way to check the token.
    pub async fn account(&self) -> Result<Account, HerokuError> {
        self.get_json("account", &Target::default()).await
    }

    /// The apps the account can access (every page).
    pub async fn apps(&self) -> Result<Vec<App>, HerokuError> {
        self.list("apps", &Target::default()).await
    }

    /// An app, by name or id.
    pub async fn app(&self, app: &str) -> Result<App, HerokuError> {
        self.get_json(&format!("apps/{}", seg(app)), &Target::for_app(app))
            .await
    }

    /// Whether maintenance mode is on.
    pub async fn maintenance(&self, app: &str) -> Result<bool, HerokuError> {
        Ok(self.app(app).await?.maintenance)
    }

    /// Turns maintenance mode on or off; returns the app as Heroku now has it.
    pub async fn set_maintenance(&self, app: &str, on: bool) -> Result<App, HerokuError> {
        tracing::info!(app, maintenance = on, "setting maintenance mode");
        let target = Target::for_app(app);
        self.send_json(
            Method::PATCH,
            &format!("apps/{}", seg(app)),
            Some(&json!({ "maintenance": on })),
            "PATCH app",
            &target,
        )
        .await
    }

    /// All config vars of the app, including those attachments provide.
    pub async fn config_vars(&self, app: &str) -> Result<ConfigVars, HerokuError> {
        self.get_json(&app_path(app, "config-vars"), &Target::for_app(app))
            .await
    }

    /// One config var, `None` when it is not set.
    pub async fn config_var(
        &self,
        app: &str,
        key: &str,
    ) -> Result<Option<SecretString>, HerokuError> {
        let vars = self.config_vars(app).await?;
        Ok(vars.get(key).cloned())
    }

    /// Sets config vars (one release); returns all of the app's vars after.
    ///
    /// A var an attachment provides (e.g. `DATABASE_URL` while `DATABASE` is
    /// attached) cannot be set: Heroku answers `invalid_params`.
    pub async fn set_config_vars<I, K, V>(
        &self,
        app: &str,
        vars: I,
    ) -> Result<ConfigVars, HerokuError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<SecretString>,
    {
        let mut body = Map::new();
        for (k, v) in vars {
            let k = k.into();
            check_config_key(&k)?;
            let v: SecretString = v.into();
            body.insert(k, Value::String(v.expose_secret().to_owned()));
        }
        self.patch_config(app, body).await
    }

    /// Removes config vars (one release); returns all of the app's vars after.
    /// Removing a var that is not set is not an error.
    pub async fn unset_config_vars<I, K>(
        &self,
        app: &str,
        keys: I,
    ) -> Result<ConfigVars, HerokuError>
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        let mut body = Map::new();
        for k in keys {
            let k = k.into();
            check_config_key(&k)?;
            body.insert(k, Value::Null);
        }
        self.patch_config(app, body).await
    }

    async fn patch_config(
        &self,
        app: &str,
        body: Map<String, Value>,
    ) -> Result<ConfigVars, HerokuError> {
        if body.is_empty() {
            return Err(HerokuError::InvalidArgument {
                what: "config vars".into(),
                reason: "no variable given".into(),
            });
        }
        let set: Vec<&str> = body
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, _)| k.as_str())
            .collect();
        let unset: Vec<&str> = body
            .iter()
            .filter(|(_, v)| v.is_null())
            .map(|(k, _)| k.as_str())
            .collect();
        tracing::info!(app, ?set, ?unset, "updating config vars");
        let target = Target::for_app(app);
        self.send_json(
            Method::PATCH,
            &app_path(app, "config-vars"),
            Some(&Value::Object(body)),
            "PATCH config-vars",
            &target,
        )
        .await
    }

    /// The add-ons of the app: those it owns and those attached to it.
    pub async fn addons(&self, app: &str) -> Result<Vec<Addon>, HerokuError> {
        self.list(&app_path(app, "addons"), &Target::for_app(app))
            .await
    }

    /// An add-on, by globally unique name or id.
    pub async fn addon(&self, addon: &str) -> Result<Addon, HerokuError> {
        let target = Target::default().with_addon(addon);
        self.get_json(&format!("addons/{}", seg(addon)), &target)
            .await
    }

    /// The attachments on the app (of its own add-ons and others').
    pub async fn attachments(&self, app: &str) -> Result<Vec<Attachment>, HerokuError> {
        self.list(&app_path(app, "addon-attachments"), &Target::for_app(app))
            .await
    }

    /// The attachments of an add-on, to any app.
    pub async fn addon_attachments(&self, addon: &str) -> Result<Vec<Attachment>, HerokuError> {
        let target = Target::default().with_addon(addon);
        self.list(&format!("addons/{}/addon-attachments", seg(addon)), &target)
            .await
    }

    /// One attachment on the app, by name (`DATABASE`) or id.
    pub async fn attachment(&self, app: &str, name: &str) -> Result<Attachment, HerokuError> {
        let target = Target::for_app(app).with_attachment(name);
        self.get_json(
            &format!("apps/{}/addon-attachments/{}", seg(app), seg(name)),
            &target,
        )
        .await
    }

    /// Attaches `addon` to `app` as `name` (Heroku picks one when `None`),
    /// which sets `NAME_URL` on the app.
    ///
    /// When the name is taken (by another attachment, or an ordinary
    /// `NAME_URL` config var) Heroku answers `confirmation_required` unless
    /// `confirm` is true; with it, the attachment replaces what was there.
    pub async fn attach(
        &self,
        app: &str,
        addon: &str,
        name: Option<&str>,
        confirm: bool,
    ) -> Result<Attachment, HerokuError> {
        self.attach_in(app, addon, name, None, confirm).await
    }

    /// [`attach`](Self::attach) in a namespace (e.g. `connection-pooling:default`).
    pub(crate) async fn attach_in(
        &self,
        app: &str,
        addon: &str,
        name: Option<&str>,
        namespace: Option<&str>,
        confirm: bool,
    ) -> Result<Attachment, HerokuError> {
        let mut target = Target::for_app(app).with_addon(addon);
        if let Some(name) = name {
            target = target.with_attachment(name);
        }
        tracing::info!(app, addon, name, namespace, confirm, "attaching add-on");
        let mut body = json!({ "addon": { "name": addon }, "app": { "name": app } });
        if let Some(name) = name {
            body["name"] = json!(name);
        }
        if let Some(namespace) = namespace {
            body["namespace"] = json!(namespace);
        }
        if confirm {
            body["confirm"] = json!(app);
        }
        self.send_json(
            Method::POST,
            "addon-attachments",
            Some(&body),
            "POST addon-attachments",
            &target,
        )
        .await
    }

    /// Detaches the attachment `name` from `app` (looked up first: the API
    /// deletes by id), which removes `NAME_URL`. Returns what was removed.
    ///
    /// Heroku refuses to remove an add-on's last attachment to its billing
    /// app (`Cannot destroy last attachment to billing app`): attach a
    /// backup alias first.
    pub async fn detach(&self, app: &str, name: &str) -> Result<Attachment, HerokuError> {
        let found = self.attachment(app, name).await?;
        let target = Target::for_app(app)
            .with_addon(&found.addon.name)
            .with_attachment(name);
        tracing::info!(app, attachment = name, addon = %found.addon.name, "detaching add-on");
        self.send_json(
            Method::DELETE,
            &format!("addon-attachments/{}", seg(&found.id)),
            None,
            "DELETE addon-attachment",
            &target,
        )
        .await
    }

    /// The app's process types and their dyno counts.
    pub async fn formation(&self, app: &str) -> Result<Vec<Formation>, HerokuError> {
        self.list(&app_path(app, "formation"), &Target::for_app(app))
            .await
    }

    /// Scales process types in one request, e.g. `[("worker", 0), ("clock", 0)]`
    /// to stop everything but web during a maintenance window.
    pub async fn scale(
        &self,
        app: &str,
        updates: &[(&str, u32)],
    ) -> Result<Vec<Formation>, HerokuError> {
        tracing::info!(app, ?updates, "scaling formation");
        let target = Target::for_app(app);
        let updates: Vec<Value> = updates
            .iter()
            .map(|(t, q)| json!({ "type": t, "quantity": q }))
            .collect();
        self.send_json(
            Method::PATCH,
            &app_path(app, "formation"),
            Some(&json!({ "updates": updates })),
            "PATCH formation",
            &target,
        )
        .await
    }

    /// Every release of the app, oldest first.
    pub async fn releases(&self, app: &str) -> Result<Vec<Release>, HerokuError> {
        let max = self.inner.page_size.unwrap_or(200);
        self.list_from(
            &app_path(app, "releases"),
            &Target::for_app(app),
            Some(format!("version ..; max={max}")),
        )
        .await
    }

    /// The newest release, asked for the way Heroku's CLI does after a
    /// change (`Range: version ..; max=1, order=desc`, one page).
    pub async fn latest_release(&self, app: &str) -> Result<Option<Release>, HerokuError> {
        let target = Target::for_app(app);
        let answer = self
            .call(
                Method::GET,
                &app_path(app, "releases"),
                None,
                Some("version ..; max=1, order=desc"),
                &target,
            )
            .await?;
        let releases: Vec<Release> = decode(&answer, "GET releases", &target)?;
        Ok(releases.into_iter().next())
    }

    // ---- plumbing ---------------------------------------------------------

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        target: &Target,
    ) -> Result<T, HerokuError> {
        let what = format!("GET /{path}");
        self.send_json(Method::GET, path, None, &what, target).await
    }

    /// Sends one request (no range) and decodes its JSON answer; `what`
    /// names the request in a decoding error.
    async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
        target: &Target,
    ) -> Result<T, HerokuError> {
        let answer = self.call(method, path, body, None, target).await?;
        decode(&answer, what, target)
    }

    /// Every page of a list.
    pub(crate) async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        target: &Target,
    ) -> Result<Vec<T>, HerokuError> {
        let first = self.inner.page_size.map(|n| format!("id ..; max={n}"));
        self.list_from(path, target, first).await
    }

    async fn list_from<T: DeserializeOwned>(
        &self,
        path: &str,
        target: &Target,
        first: Option<String>,
    ) -> Result<Vec<T>, HerokuError> {
        let request = format!("GET /{path}");
        let mut range = first;
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let answer = self
                .call(Method::GET, path, None, range.as_deref(), target)
                .await?;
            let items: Vec<T> = decode(&answer, &request, target)?;
            let got = items.len();
            out.extend(items);
            let next = answer
                .headers
                .get(NEXT_RANGE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match next {
                Some(next) if answer.status == StatusCode::PARTIAL_CONTENT => {
                    if range.as_deref() == Some(next.as_str()) || got == 0 {
                        return Err(HerokuError::Decode {
                            target: target.clone(),
                            request,
                            reason: format!(
                                "paging does not advance at page {page} (Next-Range {next:?})"
                            ),
                        });
                    }
                    tracing::debug!(path, page, items = got, "following Next-Range");
                    range = Some(next);
                }
                _ => return Ok(out),
            }
        }
        Err(HerokuError::Decode {
            target: target.clone(),
            request,
            reason: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// Sends one request, retrying within the policy. Returns 2xx answers;
    /// everything else becomes a [`HerokuError`].
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        range: Option<&str>,
        target: &Target,
    ) -> Result<Answer, HerokuError> {
        let inner = &self.inner;
        let url = inner
            .base
            .join(path)
            .map_err(|e| HerokuError::InvalidArgument {
                what: format!("path {path:?}"),
                reason: e.to_string(),
            })?;
        let request = format!("{method} /{path}");
        let policy = &inner.retry;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.pace().await;
            let started = Instant::now();
            let mut rb = inner
                .http
                .request(method.clone(), url.clone())
                .header(ACCEPT, ACCEPT_V3)
                .bearer_auth(inner.token.expose_secret());
            if let Some(range) = range {
                rb = rb.header(RANGE, range);
            }
            if let Some(body) = body {
                rb = rb.json(body);
            }
            let sent = rb.send().await;
            let failure = match sent {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let remaining = self.note_rate_limit(&headers);
                    match resp.bytes().await {
                        Ok(body) => {
                            tracing::debug!(
                                method = %method,
                                path,
                                status = status.as_u16(),
                                attempt,
                                elapsed_ms = started.elapsed().as_millis() as u64,
                                rate_limit_remaining = remaining,
                                "heroku api"
                            );
                            if status.is_success() {
                                return Ok(Answer {
                                    status,
                                    headers,
                                    body,
                                });
                            }
                            let err = api_error(status, &body, target.clone(), attempt);
                            // 429 and 503 mean Heroku did not take the
                            // request; after another 5xx a change may have
                            // been applied, so only a read is sent again.
                            let retryable = status == StatusCode::TOO_MANY_REQUESTS
                                || status == StatusCode::SERVICE_UNAVAILABLE
                                || (status.is_server_error() && method == Method::GET);
                            if !retryable || !policy.may_retry(attempt) {
                                return Err(err);
                            }
                            err
                        }
                        Err(e) => {
                            let err = transport_error(e, target, &request, attempt, inner.timeout);
                            if method != Method::GET || !policy.may_retry(attempt) {
                                return Err(err);
                            }
                            err
                        }
                    }
                }
                Err(e) => {
                    // A request that never connected can be sent again;
                    // one that may have reached Heroku only if it is a GET.
                    let safe = e.is_connect() || method == Method::GET;
                    let err = transport_error(e, target, &request, attempt, inner.timeout);
                    if !safe || !policy.may_retry(attempt) {
                        return Err(err);
                    }
                    err
                }
            };
            let wait = jitter(policy.backoff(attempt + 1));
            tracing::warn!(
                method = %method,
                path,
                attempt,
                wait_ms = wait.as_millis() as u64,
                error = %failure,
                "heroku api request failed, retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Records `RateLimit-Remaining`; returns it.
    fn note_rate_limit(&self, headers: &HeaderMap) -> Option<u32> {
        let remaining = headers
            .get(RATE_LIMIT_REMAINING)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok())?;
        self.inner
            .rate_remaining
            .store(i64::from(remaining), Ordering::Relaxed);
        Some(remaining)
    }

    /// Waits a little before a request while the rate limit is low.
    async fn pace(&self) {
        let pacing = self.inner.pacing;
        if let Some(remaining) = self.rate_limit_remaining() {
            if remaining < pacing.below && !pacing.pause.is_zero() {
                tracing::debug!(
                    remaining,
                    pause_ms = pacing.pause.as_millis() as u64,
                    "rate limit low, pacing"
                );
                tokio::time::sleep(pacing.pause).await;
            }
        }
    }
}

/// Percent-encodes one path segment.
pub(crate) fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// `apps/{app}/{rest}`, the app's name encoded.
fn app_path(app: &str, rest: &str) -> String {
    format!("apps/{}/{rest}", seg(app))
}

/// Config var names match `^\w+$`.
fn check_config_key(key: &str) -> Result<(), HerokuError> {
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(HerokuError::InvalidArgument {
            what: format!("config var name {key:?}"),
            reason: "names may contain only letters, digits and underscores".into(),
        });
    }
    Ok(())
}

/// Reads a JSON answer. The error never quotes the body (it may hold
/// config values): only where parsing stopped.
fn decode<T: DeserializeOwned>(
    answer: &Answer,
    request: &str,
    target: &Target,
) -> Result<T, HerokuError> {
    serde_json::from_slice(&answer.body).map_err(|e| HerokuError::Decode {
        target: target.clone(),
        request: request.to_owned(),
        reason: format!(
            "not the documented JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ),
    })
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    id: Option<String>,
    message: Option<String>,
    resource: Option<String>,
}

fn api_error(status: StatusCode, body: &[u8], target: Target, attempts: u32) -> HerokuError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let (id, message, resource) = match parsed {
        Some(b) => (b.id, b.message, b.resource),
        None => (None, None, None),
    };
    HerokuError::from_api(status.as_u16(), id, message, resource, target, attempts)
}

fn transport_error(
    e: reqwest::Error,
    target: &Target,
    request: &str,
    attempts: u32,
    timeout: Duration,
) -> HerokuError {
    if e.is_timeout() {
        return HerokuError::Timeout {
            target: target.clone(),
            request: request.to_owned(),
            after: timeout,
            attempts,
        };
    }
    // The innermost cause says what happened ("Connection refused"); the
    // whole chain stays reachable through `source`.
    let mut reason = e.to_string();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(s) = source {
        reason = s.to_string();
        source = s.source();
    }
    HerokuError::Transport {
        target: target.clone(),
        request: request.to_owned(),
        reason,
        attempts,
        source: Box::new(e),
    }
}

/// Between half and all of `d`.
fn jitter(d: Duration) -> Duration {
    let f: f64 = rand::random_range(0.5..=1.0);
    d.mul_f64(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(seg("postgresql-rigid-71273"), "postgresql-rigid-71273");
        assert_eq!(seg("a/b?c"), "a%2Fb%3Fc");
    }

    #[test]
    fn client_and_its_futures_are_send() {
        fn is_send<T: Send>(_: &T) {}
        fn is_sync<T: Sync>(_: &T) {}
        let client = ClientBuilder::new()
            .token(SecretString::from("t"))
            .build()
            .unwrap();
        is_sync(&client);
        is_send(&client.promote("a", "b"));
        is_send(&client.set_config_vars("a", [("K", "v")]));
        is_send(&client.attachments("a"));
        is_send(&client.scale("a", &[("worker", 0)]));
    }

    #[test]
    fn config_keys_are_checked() {
        assert!(check_config_key("DATABASE_URL").is_ok());
        assert!(check_config_key("A-B").is_err());
        assert!(check_config_key("").is_err());
    }
}
