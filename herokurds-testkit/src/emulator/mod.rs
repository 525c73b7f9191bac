//! A stateful emulator of the Heroku Platform API.
//!
//! Heroku's API cannot be reached from tests or demos, so this serves the
//! part herokurds and Heroku's own CLI use, on a loopback port, with the
//! same paths, JSON shapes (`schema.json`), error bodies and rules:
//! - `Authorization: Bearer <token>` must name a token of the [`Seed`],
//!   else `401 unauthorized` "Invalid credentials provided.";
//! - apps by name or id; add-ons by name or id; 404 `not_found` with
//!   Heroku's messages ("Couldn't find that app.") and `resource`;
//! - maintenance (`PATCH /apps/{app}`); config vars (`PATCH` with `null`
//!   deleting);
//! - an attachment `NAME` provides config var `NAME_URL`; such a var cannot
//!   be set or unset (`422 invalid_params` "Cannot overwrite attachment
//!   values DATABASE_URL."); attaching under a name that an attachment or
//!   an ordinary `NAME_URL` var holds needs `confirm: <app>` (`423
//!   confirmation_required`) and with it replaces them; an add-on's last
//!   attachment to its billing app cannot be removed;
//! - every config change, attach and detach makes a release with Heroku's
//!   descriptions (`Set X config vars`, `Attach DATABASE (@ref:addon)`);
//! - lists are paged (`Range`, `206` + `Next-Range`, default 200, max
//!   1000); every answer carries `RateLimit-Remaining` (4500, refilled 75 a
//!   minute; `429 rate_limit` at zero);
//! - formation list and scaling.
//!
//! It stays local: [`Emulator::start_on`] refuses a non-loopback address,
//! and every request (the control API included) must be addressed to
//! `localhost` or a loopback address in its `Host` header, else `403
//! forbidden`. The emulator has no real authentication (the control API
//! needs no token and shows every token and database URL), so a web page
//! must not reach it through DNS rebinding. [`Emulator::start_allowing_remote`]
//! lifts both rules, for a trusted network only. The state file (`--save`)
//! is written with mode 0600: it holds tokens and database passwords.
//!
//! Tests steer it in process ([`Emulator::inject`], [`Emulator::config_vars`])
//! or over HTTP: `POST /__emulator/faults` with `{"status": 503, "count": 2,
//! "path": "/apps", "method": "GET", "id"?: ..., "message"?: ...}` or
//! `{"latency_ms": 200}`, `DELETE
//! /__emulator/faults`, `POST /__emulator/rate-limit` `{"remaining": N}`,
//! `GET /__emulator/state`, `GET /__emulator/requests`.
//!
//! Not emulated: creating or destroying apps and add-ons, credentials,
//! Basic authentication, two-factor, teams, ETags; the `Accept` header's
//! version is not checked (`version=3` and `version=3.sdk` both work).

mod range;
mod seed;
mod server;
mod world;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use seed::{Seed, SeedAddon, SeedApp, SeedAttachment};
pub use world::AttachmentView;

use herokurds_core::heroku::{ClientBuilder, RetryPolicy};
use server::{lock, Control, Shared};
use world::World;

/// Errors starting the emulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// The state (seed) is malformed or inconsistent.
    #[error("emulator state: {0}")]
    Seed(String),
    /// The listen address is not a loopback address, and remote clients
    /// were not allowed.
    #[error(
        "refusing to listen on {addr}: not a loopback address, and the emulator has no real \
         authentication (its control API at /__emulator/ needs no token and shows every token \
         and database URL it holds); listen on 127.0.0.1, or pass --allow-remote to serve \
         other hosts anyway"
    )]
    NotLoopback {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The listen address cannot be bound.
    #[error("emulator cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Makes the next `count` matching requests fail with `status` (before the
/// token is checked, like a failing load balancer). The body is Heroku's
/// error for the status (429 `rate_limit`, 503 `service_unavailable`, other
/// 5xx `internal_server_error`, 403 `forbidden`, 409 `conflict`) unless
/// [`with_error`](Self::with_error) sets another id and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Fault {
    /// HTTP status.
    pub status: u16,
    /// How many requests fail.
    pub count: u32,
    /// Only requests whose path starts with this.
    pub path: Option<String>,
    /// Only requests with this method.
    pub method: Option<String>,
    /// The error `id` answered (default: Heroku's for the status).
    #[serde(default)]
    pub id: Option<String>,
    /// The error message answered.
    #[serde(default)]
    pub message: Option<String>,
}

impl Fault {
    /// The next `count` requests answer `status`.
    pub fn new(status: u16, count: u32) -> Self {
        Fault {
            status,
            count,
            path: None,
            method: None,
            id: None,
            message: None,
        }
    }

    /// Answers this error `id` and message instead of the status' default.
    pub fn with_error(mut self, id: impl Into<String>, message: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self.message = Some(message.into());
        self
    }

    /// Only requests whose path starts with `prefix`.
    pub fn on_path(mut self, prefix: impl Into<String>) -> Self {
        self.path = Some(prefix.into());
        self
    }

    /// Only requests with `method`.
    pub fn on_method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }
}

/// One request the emulator answered (bodies are not kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The `Range` header.
    pub range: Option<String>,
    /// The `Accept` header.
    pub accept: Option<String>,
    /// Status answered.
    pub status: u16,
}

/// A running emulator. Stops when dropped (or with [`shutdown`](Self::shutdown)).
pub struct Emulator {
    addr: SocketAddr,
    url: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator").field("url", &self.url).finish()
    }
}

impl Emulator {
    /// Starts on `127.0.0.1` and a free port, on the current tokio runtime.
    pub async fn start(seed: Seed) -> Result<Emulator, EmulatorError> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), seed).await
    }

    /// Starts on `addr` (port 0 picks one), which must be a loopback
    /// address; requests must name a loopback host in `Host`.
    pub async fn start_on(addr: SocketAddr, seed: Seed) -> Result<Emulator, EmulatorError> {
        if !addr.ip().to_canonical().is_loopback() {
            return Err(EmulatorError::NotLoopback { addr });
        }
        Self::serve(addr, seed, false).await
    }

    /// Starts on any `addr` and answers requests whatever their `Host`
    /// header (`--allow-remote`). Anyone who can reach the address can read
    /// and change the whole state, tokens and database URLs included: use it
    /// on a trusted network only.
    pub async fn start_allowing_remote(
        addr: SocketAddr,
        seed: Seed,
    ) -> Result<Emulator, EmulatorError> {
        Self::serve(addr, seed, true).await
    }

    async fn serve(
        addr: SocketAddr,
        seed: Seed,
        allow_remote: bool,
    ) -> Result<Emulator, EmulatorError> {
        let world = World::from_seed(&seed)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| EmulatorError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind { addr, source })?;
        let shared = Arc::new(Shared {
            world: Mutex::new(world),
            ctl: Mutex::new(Control::default()),
            save: Mutex::new(None),
            allow_remote,
            listen: addr,
        });
        let app = axum::Router::new()
            .fallback(server::handle)
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "heroku emulator stopped");
            }
        });
        tracing::debug!(%addr, "heroku emulator listening");
        Ok(Emulator {
            addr,
            url: format!("http://{addr}"),
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client builder pointed at this emulator with `token`, and retries
    /// short enough for tests (3 retries, 10 ms to 50 ms).
    pub fn client_builder(&self, token: &str) -> ClientBuilder {
        ClientBuilder::new()
            .base_url(self.url.clone())
            .token(SecretString::from(token.to_owned()))
            .timeout(Duration::from_secs(10))
            .retry(RetryPolicy::new(
                4,
                Duration::from_millis(10),
                Duration::from_millis(50),
            ))
            .pace_below(0, Duration::ZERO)
    }

    /// Writes the state (as a [`Seed`] file) to `path` after every change:
    /// atomically (a temporary file beside it, then a rename), mode 0600.
    pub fn save_state_to(&self, path: Option<PathBuf>) {
        *lock(&self.shared.save) = path;
    }

    /// The current state as a seed.
    pub fn snapshot(&self) -> Seed {
        lock(&self.shared.world).to_seed()
    }

    /// All config vars of `app` (attachment ones included); `None` for an unknown app.
    pub fn config_vars(&self, app: &str) -> Option<std::collections::BTreeMap<String, String>> {
        lock(&self.shared.world).inspect_config(app)
    }

    /// Maintenance mode of `app`.
    pub fn maintenance(&self, app: &str) -> Option<bool> {
        lock(&self.shared.world).inspect_maintenance(app)
    }

    /// Attachments on `app`, sorted by name.
    pub fn attachments(&self, app: &str) -> Vec<AttachmentView> {
        lock(&self.shared.world).inspect_attachments(app)
    }

    /// Releases of `app` as `(version, description)`, oldest first.
    pub fn releases(&self, app: &str) -> Vec<(u64, String)> {
        lock(&self.shared.world).inspect_releases(app)
    }

    /// Dyno counts of `app` by process type.
    pub fn formation(&self, app: &str) -> std::collections::BTreeMap<String, u32> {
        lock(&self.shared.world).inspect_formation(app)
    }

    /// Queues a fault.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.ctl).faults.push_back(fault);
    }

    /// Delays every API answer by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.shared.ctl).latency = latency;
    }

    /// Removes queued faults and latency.
    pub fn clear_faults(&self) {
        let mut ctl = lock(&self.shared.ctl);
        ctl.faults.clear();
        ctl.latency = Duration::ZERO;
    }

    /// Sets the requests every token has left (refilled at 75 a minute).
    pub fn set_rate_limit_remaining(&self, remaining: u32) {
        lock(&self.shared.ctl).set_remaining(remaining);
    }

    /// The requests answered so far (method, path, `Range`, status).
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.ctl).log.iter().cloned().collect()
    }

    /// Stops accepting requests and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // Graceful shutdown may wait for idle keep-alive connections;
            // a dropped emulator must not outlive its owner.
            task.abort();
        }
    }
}
