//! The HTTP face of the emulator: routing, the bearer token, the rate
//! limit, ranges, fault injection and the `/__emulator/` control API.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use super::range;
use super::world::{ApiError, World};
use super::{Fault, RequestRecord};

/// Requests an account may make; refilled at [`REFILL_PER_SEC`].
pub(crate) const RATE_LIMIT: f64 = 4500.0;
/// 75 a minute.
const REFILL_PER_SEC: f64 = 75.0 / 60.0;
/// Request records kept for inspection.
const LOG_LIMIT: usize = 10_000;

pub(crate) struct Shared {
    pub world: Mutex<World>,
    pub ctl: Mutex<Control>,
    pub save: Mutex<Option<PathBuf>>,
    /// Whether requests may name any host (`--allow-remote`).
    pub allow_remote: bool,
    /// The bound address.
    pub listen: SocketAddr,
}

#[derive(Default)]
pub(crate) struct Control {
    pub faults: VecDeque<Fault>,
    pub latency: Duration,
    pub log: VecDeque<RequestRecord>,
    pub buckets: HashMap<String, Bucket>,
    /// Remaining requests a new token starts with (default [`RATE_LIMIT`]).
    pub initial: Option<f64>,
}

pub(crate) struct Bucket {
    remaining: f64,
    at: Instant,
}

impl Control {
    /// Sets every token's remaining requests.
    pub fn set_remaining(&mut self, n: u32) {
        let now = Instant::now();
        for b in self.buckets.values_mut() {
            b.remaining = f64::from(n);
            b.at = now;
        }
        self.initial = Some(f64::from(n));
    }

    /// Spends one request of `token`; `None` when none is left.
    fn spend(&mut self, token: &str) -> Result<u32, ()> {
        let now = Instant::now();
        let initial = self.initial.unwrap_or(RATE_LIMIT);
        let b = self.buckets.entry(token.to_owned()).or_insert(Bucket {
            remaining: initial,
            at: now,
        });
        b.remaining =
            (b.remaining + now.duration_since(b.at).as_secs_f64() * REFILL_PER_SEC).min(RATE_LIMIT);
        b.at = now;
        if b.remaining < 1.0 {
            return Err(());
        }
        b.remaining -= 1.0;
        Ok(b.remaining as u32)
    }

    fn take_fault(&mut self, method: &Method, path: &str) -> Option<Fault> {
        let pos = self.faults.iter().position(|f| {
            f.path.as_deref().is_none_or(|p| path.starts_with(p))
                && f.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
        })?;
        let fault = &mut self.faults[pos];
        let taken = fault.clone();
        fault.count = fault.count.saturating_sub(1);
        if fault.count == 0 {
            self.faults.remove(pos);
        }
        Some(taken)
    }

    fn record(&mut self, rec: RequestRecord) {
        if self.log.len() >= LOG_LIMIT {
            self.log.pop_front();
        }
        self.log.push_back(rec);
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a route answers before ranges are applied.
enum Reply {
    One(StatusCode, Value),
    List(Vec<Value>, &'static [&'static str]),
}

/// A finished answer.
struct Answer {
    status: StatusCode,
    body: Value,
    headers: Vec<(&'static str, String)>,
}

impl From<ApiError> for Answer {
    fn from(e: ApiError) -> Self {
        Answer {
            status: StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: e.body(),
            headers: Vec::new(),
        }
    }
}

pub(crate) async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, 4 << 20).await.unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let method = parts.method.clone();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if !shared.allow_remote {
        if let Err(e) = check_host(&parts, shared.listen) {
            return respond(e.into(), RATE_LIMIT as u32);
        }
    }
    if path == "/__emulator" || path.starts_with("/__emulator/") {
        return control(&shared, &method, &path, &bytes);
    }
    let latency = lock(&shared.ctl).latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (answer, remaining) = serve(&shared, &method, &path, &parts.headers, &bytes);
    let mutated = method != Method::GET && answer.status.is_success();
    {
        let mut ctl = lock(&shared.ctl);
        ctl.record(RequestRecord {
            method: method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or(path.clone()),
            range: header("range"),
            accept: header("accept"),
            status: answer.status.as_u16(),
        });
    }
    if mutated {
        save(&shared);
    }
    respond(answer, remaining)
}

/// Refuses a request whose `Host` is not `localhost`, a `.localhost`
/// name, a loopback address or the listen address: a web page that rebinds
/// its own name to 127.0.0.1 sends its name, and must not reach the
/// emulator, which has no real authentication.
fn check_host(parts: &axum::http::request::Parts, listen: SocketAddr) -> Result<(), ApiError> {
    let host = parts
        .headers
        .get(axum::http::header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .or_else(|| parts.uri.authority().map(|a| a.as_str().to_owned()));
    let Some(host) = host else {
        return Err(ApiError::new(
            403,
            "forbidden",
            "The request has no Host header; the emulator answers only requests addressed to \
             localhost or a loopback address (start it with --allow-remote to lift this).",
        ));
    };
    if is_local_host(&host, listen) {
        return Ok(());
    }
    Err(ApiError::new(
        403,
        "forbidden",
        format!(
            "Host {host:?} is not allowed: the emulator answers only requests addressed to \
             localhost or a loopback address, since it has no real authentication (a defence \
             against DNS rebinding); start it with --allow-remote to accept other hosts."
        ),
    ))
}

/// Whether a `Host` value (`name[:port]`, `[v6][:port]`) names this machine.
fn is_local_host(host: &str, listen: SocketAddr) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(ip, _)| ip),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback() || ip == listen.ip())
}

/// Fault, token, rate limit, then the route.
fn serve(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> (Answer, u32) {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .unwrap_or("")
        .to_owned();
    let remaining = {
        let mut ctl = lock(&shared.ctl);
        if let Some(fault) = ctl.take_fault(method, path) {
            let remaining = if fault.status == 429 {
                0
            } else {
                RATE_LIMIT as u32
            };
            return (fault_answer(&fault), remaining);
        }
        let known = !token.is_empty() && lock(&shared.world).tokens.contains(&token);
        if !known {
            let e = ApiError::new(401, "unauthorized", "Invalid credentials provided.");
            return (e.into(), RATE_LIMIT as u32);
        }
        match ctl.spend(&token) {
            Ok(n) => n,
            Err(()) => return (fault_answer(&Fault::new(429, 1)), 0),
        }
    };
    let expand = headers
        .get("accept-expansion")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("addon_service") || v.contains("plan"));
    let range_header = headers.get("range").and_then(|v| v.to_str().ok());
    let reply = {
        let mut world = lock(&shared.world);
        route(&mut world, method, path, body, expand)
    };
    let answer = match reply {
        Err(e) => e.into(),
        Ok(Reply::One(status, body)) => Answer {
            status,
            body,
            headers: Vec::new(),
        },
        Ok(Reply::List(items, fields)) => match range::parse(range_header, fields) {
            Err(e) => e.into(),
            Ok(spec) => {
                let page = range::paginate(items, &spec);
                let mut headers = vec![("accept-ranges", fields.join(", "))];
                if let Some(c) = page.content_range {
                    headers.push(("content-range", c));
                }
                let status = match page.next_range {
                    Some(next) => {
                        headers.push(("next-range", next));
                        StatusCode::PARTIAL_CONTENT
                    }
                    None => StatusCode::OK,
                };
                Answer {
                    status,
                    body: Value::Array(page.items),
                    headers,
                }
            }
        },
    };
    (answer, remaining)
}

fn fault_answer(fault: &Fault) -> Answer {
    let (id, message) = match fault.status {
        429 => (
            "rate_limit",
            "Your account reached the API rate limit\nPlease wait a few minutes before making new requests",
        ),
        503 => ("service_unavailable", "The API is temporarily unavailable. Please try again."),
        s if s >= 500 => ("internal_server_error", "Internal server error."),
        403 => ("forbidden", "You do not have access to the app."),
        409 => ("conflict", "A conflicting change is in progress."),
        _ => ("emulated_fault", "Fault injected by the emulator."),
    };
    Answer {
        status: StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body: json!({
            "id": fault.id.as_deref().unwrap_or(id),
            "message": fault.message.as_deref().unwrap_or(message),
        }),
        headers: Vec::new(),
    }
}

fn respond(answer: Answer, remaining: u32) -> Response {
    let mut resp = Response::new(Body::from(answer.body.to_string()));
    *resp.status_mut() = answer.status;
    let h = resp.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert("ratelimit-remaining", HeaderValue::from(remaining));
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert("request-id", v);
    }
    for (name, value) in answer.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    resp
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request("Request invalid, validate usage and try again."))
}

fn route(
    w: &mut World,
    method: &Method,
    path: &str,
    body: &[u8],
    expand: bool,
) -> Result<Reply, ApiError> {
    const IDS: &[&str] = &["id", "name"];
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let one = |v: Value| Reply::One(StatusCode::OK, v);
    let m = method.clone();
    Ok(match (m, s.as_slice()) {
        (Method::GET, ["account"]) => one(w.account()),
        (Method::GET, ["apps"]) => Reply::List(w.list_apps(), IDS),
        (Method::GET, ["apps", app]) => one(w.get_app(app)?),
        (Method::PATCH, ["apps", app]) => one(w.patch_app(app, &parse_body(body)?)?),
        (Method::GET, ["apps", app, "config-vars"]) => one(w.get_config(app)?),
        (Method::PATCH, ["apps", app, "config-vars"]) => {
            one(w.patch_config(app, &parse_body(body)?)?)
        }
        (Method::GET, ["apps", app, "addons"]) => Reply::List(w.list_app_addons(app, expand)?, IDS),
        (Method::GET, ["apps", app, "addons", addon]) => one(w.get_app_addon(app, addon, expand)?),
        (Method::GET, ["apps", app, "addon-attachments"]) => {
            Reply::List(w.list_app_attachments(app)?, IDS)
        }
        (Method::GET, ["apps", app, "addon-attachments", att]) => {
            one(w.get_app_attachment(app, att)?)
        }
        (Method::GET, ["apps", app, "releases"]) => {
            Reply::List(w.list_releases(app)?, &["version", "id"])
        }
        (Method::GET, ["apps", app, "releases", rel]) => one(w.get_release(app, rel)?),
        (Method::GET, ["apps", app, "formation"]) => {
            Reply::List(w.list_formation(app)?, &["id", "type"])
        }
        (Method::PATCH, ["apps", app, "formation"]) => {
            Reply::List(w.patch_formation(app, &parse_body(body)?)?, &["id", "type"])
        }
        (Method::GET, ["apps", app, "formation", t]) => one(w.get_formation(app, t)?),
        (Method::PATCH, ["apps", app, "formation", t]) => {
            one(w.patch_formation_one(app, t, &parse_body(body)?)?)
        }
        (Method::GET, ["addons"]) => Reply::List(w.list_addons(expand), IDS),
        (Method::GET, ["addons", addon]) => one(w.get_addon(addon, expand)?),
        (Method::GET, ["addons", addon, "addon-attachments"]) => {
            Reply::List(w.list_addon_attachments(addon)?, IDS)
        }
        (Method::GET, ["addon-attachments"]) => Reply::List(w.list_attachments(), IDS),
        (Method::POST, ["addon-attachments"]) => {
            Reply::One(StatusCode::CREATED, w.attach(&parse_body(body)?)?)
        }
        (Method::GET, ["addon-attachments", id]) => one(w.get_attachment(id)?),
        (Method::DELETE, ["addon-attachments", id]) => one(w.detach(id)?),
        (Method::POST, ["actions", "addon-attachments", "resolve"]) => {
            Reply::List(w.resolve_attachment(&parse_body(body)?)?, IDS)
        }
        (Method::POST, ["actions", "addons", "resolve"]) => {
            Reply::List(w.resolve_addon(&parse_body(body)?)?, IDS)
        }
        _ => return Err(ApiError::endpoint()),
    })
}

/// The control API: faults, latency, rate limit, state and request log.
fn control(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Response {
    let ok = |v: Value| Answer {
        status: StatusCode::OK,
        body: v,
        headers: Vec::new(),
    };
    let answer = match (method.clone(), path.trim_end_matches('/')) {
        (Method::GET, "/__emulator/state") => {
            ok(serde_json::to_value(lock(&shared.world).to_seed()).unwrap_or_default())
        }
        (Method::GET, "/__emulator/requests") => {
            ok(json!(lock(&shared.ctl).log.iter().collect::<Vec<_>>()))
        }
        (Method::DELETE, "/__emulator/requests") => {
            lock(&shared.ctl).log.clear();
            ok(json!({}))
        }
        (Method::POST, "/__emulator/faults") => {
            match serde_json::from_slice::<FaultRequest>(body) {
                Ok(req) => {
                    let mut ctl = lock(&shared.ctl);
                    if let Some(ms) = req.latency_ms {
                        ctl.latency = Duration::from_millis(ms);
                    }
                    if let Some(status) = req.status {
                        ctl.faults.push_back(Fault {
                            status,
                            count: req.count.unwrap_or(1),
                            path: req.path,
                            method: req.method,
                            id: req.id,
                            message: req.message,
                        });
                    }
                    ok(
                        json!({ "faults": ctl.faults.len(), "latency_ms": ctl.latency.as_millis() as u64 }),
                    )
                }
                Err(e) => ApiError::bad_request(format!("fault: {e}")).into(),
            }
        }
        (Method::DELETE, "/__emulator/faults") => {
            let mut ctl = lock(&shared.ctl);
            ctl.faults.clear();
            ctl.latency = Duration::ZERO;
            ok(json!({}))
        }
        (Method::POST, "/__emulator/rate-limit") => match serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["remaining"].as_u64())
            .and_then(|n| u32::try_from(n).ok())
        {
            Some(n) => {
                lock(&shared.ctl).set_remaining(n);
                ok(json!({ "remaining": n }))
            }
            None => ApiError::bad_request("expected {\"remaining\": N}").into(),
        },
        _ => ApiError::endpoint().into(),
    };
    respond(answer, RATE_LIMIT as u32)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    status: Option<u16>,
    count: Option<u32>,
    path: Option<String>,
    method: Option<String>,
    id: Option<String>,
    message: Option<String>,
    latency_ms: Option<u64>,
}

/// Writes the state file after a change, when asked to (`--save`).
pub(crate) fn save(shared: &Shared) {
    let Some(path) = lock(&shared.save).clone() else {
        return;
    };
    let text = lock(&shared.world).to_seed().to_json();
    let result = herokurds_core::fsutil::write_atomic(
        &path,
        text.as_bytes(),
        herokurds_core::fsutil::PRIVATE_FILE,
    );
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot save emulator state");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_are_local() {
        let listen: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        for host in [
            "127.0.0.1:4000",
            "127.0.0.1",
            "127.9.9.9:1",
            "localhost:4000",
            "LOCALHOST.",
            "api.localhost:80",
            "[::1]:4000",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(is_local_host(host, listen), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:4000",
            "localhost.evil.example",
            "10.0.0.5:4000",
            "[fe80::1]:4000",
            "0.0.0.0:4000",
            "",
        ] {
            assert!(!is_local_host(host, listen), "{host}");
        }
    }
}
