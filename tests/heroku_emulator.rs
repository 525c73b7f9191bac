//! The emulator over raw HTTP: Heroku's headers, error bodies, JSON shapes
//! (the property names of schema.json), ranges, and the control API.

use std::time::{Duration, Instant};

use herokurds_testkit::emulator::{Emulator, Seed, SeedAddon, SeedApp};
use serde_json::{json, Value};

const TOKEN: &str = "emulator-test-token";
const APP: &str = "micromasters-ci";

// Property names of each resource in Heroku's Platform API JSON schema
// (schema.json, the hyper-schema Heroku publishes for its API).
const APP_KEYS: &[&str] = &[
    "acm",
    "archived_at",
    "build_stack",
    "buildpack_provided_description",
    "created_at",
    "generation",
    "git_url",
    "id",
    "internal_routing",
    "maintenance",
    "name",
    "organization",
    "owner",
    "region",
    "released_at",
    "repo_size",
    "slug_size",
    "space",
    "stack",
    "team",
    "updated_at",
    "web_url",
];
const ADDON_KEYS: &[&str] = &[
    "actions",
    "addon_service",
    "app",
    "billed_price",
    "billing_entity",
    "config_vars",
    "created_at",
    "id",
    "name",
    "plan",
    "provider_id",
    "provision_message",
    "state",
    "updated_at",
    "web_url",
];
const ATTACHMENT_KEYS: &[&str] = &[
    "addon",
    "app",
    "created_at",
    "id",
    "log_input_url",
    "name",
    "namespace",
    "updated_at",
    "web_url",
];
const RELEASE_KEYS: &[&str] = &[
    "addon_plan_names",
    "app",
    "artifacts",
    "created_at",
    "current",
    "description",
    "eligible_for_rollback",
    "id",
    "output_stream_url",
    "slug",
    "status",
    "updated_at",
    "user",
    "version",
];
const FORMATION_KEYS: &[&str] = &[
    "app",
    "command",
    "created_at",
    "dyno_size",
    "id",
    "quantity",
    "size",
    "type",
    "updated_at",
];
const ACCOUNT_KEYS: &[&str] = &[
    "allow_tracking",
    "beta",
    "country_of_residence",
    "created_at",
    "default_organization",
    "default_team",
    "delinquent_at",
    "email",
    "federated",
    "id",
    "identity_provider",
    "last_login",
    "name",
    "sms_number",
    "suspended_at",
    "two_factor_authentication",
    "updated_at",
    "verified",
];

fn seed() -> Seed {
    let mut seed = Seed::new().token(TOKEN).app(
        SeedApp::new(APP)
            .config_var("SECRET_KEY", "x")
            .dynos("web", 1)
            .dynos("worker", 2)
            .addon(
                SeedAddon::postgres("postgresql-rigid-71273", "postgres://u:p@host:5432/db")
                    .service("heroku-postgresql", "heroku-postgresql:standard-0")
                    .attach("DATABASE")
                    .attach("HEROKU_POSTGRESQL_YELLOW"),
            ),
    );
    for name in ["app-e", "app-b", "app-d", "app-a", "app-c"] {
        seed = seed.app(SeedApp::new(name));
    }
    seed
}

struct Api {
    em: Emulator,
    http: reqwest::Client,
}

impl Api {
    async fn start() -> Api {
        Api {
            em: Emulator::start(seed()).await.unwrap(),
            http: reqwest::Client::new(),
        }
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.em.url()))
            .header("Accept", "application/vnd.heroku+json; version=3")
            .bearer_auth(TOKEN)
    }

    async fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        send(self.req(reqwest::Method::GET, path)).await
    }

    /// The URL of the control API's `path`.
    fn ctl(&self, path: &str) -> String {
        format!("{}/__emulator/{path}", self.em.url())
    }

    /// `GET /__emulator/{what}` of the control API, as JSON.
    async fn control(&self, what: &str) -> Value {
        let resp = self.http.get(self.ctl(what)).send().await.unwrap();
        resp.json().await.unwrap()
    }
}

async fn send(rb: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json::<Value>().await.unwrap();
    (status, headers, body)
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn assert_keys(v: &Value, keys: &[&str], what: &str) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not an object: {v}"));
    for k in keys {
        assert!(obj.contains_key(*k), "{what} lacks {k}: {v}");
    }
}

fn assert_uuid(v: &Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    let ok = s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    assert!(ok, "not a UUID: {s}");
}

/// `2012-01-01T12:00:00Z`, as Heroku writes them.
fn assert_timestamp(v: &Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    let shape: String = s
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999-99-99T99:99:99Z", "not a timestamp: {s}");
}

#[tokio::test]
async fn shapes_follow_the_schema() {
    let api = Api::start().await;
    let (s, _, app) = api.get(&format!("/apps/{APP}")).await;
    assert_eq!(s, 200);
    assert_keys(&app, APP_KEYS, "app");
    assert_uuid(&app["id"]);
    assert_timestamp(&app["created_at"]);
    assert_eq!(app["git_url"], format!("https://git.heroku.com/{APP}.git"));

    let (_, _, addons) = api.get(&format!("/apps/{APP}/addons")).await;
    let addon = &addons[0];
    assert_keys(addon, ADDON_KEYS, "add-on");
    assert_eq!(addon["addon_service"]["name"], "heroku-postgresql");
    assert_eq!(addon["plan"]["name"], "heroku-postgresql:standard-0");
    assert_eq!(addon["app"]["name"], APP);
    assert_uuid(&addon["app"]["id"]);
    assert_eq!(addon["state"], "provisioned");
    assert_eq!(
        addon["config_vars"],
        json!(["DATABASE_URL", "HEROKU_POSTGRESQL_YELLOW_URL"])
    );

    let (_, _, atts) = api.get(&format!("/apps/{APP}/addon-attachments")).await;
    let att = &atts[0];
    assert_keys(att, ATTACHMENT_KEYS, "attachment");
    assert_eq!(att["addon"]["name"], "postgresql-rigid-71273");
    assert_eq!(att["addon"]["app"]["name"], APP);
    assert_eq!(att["app"]["name"], APP);
    assert!(att["namespace"].is_null());

    let (_, _, rels) = api.get(&format!("/apps/{APP}/releases")).await;
    assert_keys(&rels[0], RELEASE_KEYS, "release");
    assert_eq!(rels[0]["description"], "Initial release");
    assert_eq!(rels[0]["version"], 1);

    let (_, _, formation) = api.get(&format!("/apps/{APP}/formation")).await;
    assert_keys(&formation[0], FORMATION_KEYS, "formation");

    let (_, _, account) = api.get("/account").await;
    assert_keys(&account, ACCOUNT_KEYS, "account");

    // What Heroku's `addons` command asks for: expanded service and plan.
    let (_, _, expanded) = send(
        api.req(reqwest::Method::GET, &format!("/apps/{APP}/addons"))
            .header("Accept", "application/vnd.heroku+json; version=3.sdk")
            .header("Accept-Expansion", "addon_service,plan"),
    )
    .await;
    assert_eq!(expanded[0]["plan"]["price"]["cents"], 5000);
    assert_eq!(
        expanded[0]["addon_service"]["human_name"],
        "Heroku Postgres"
    );
}

#[tokio::test]
async fn errors_have_heroku_ids_messages_and_rate_limit_headers() {
    let api = Api::start().await;
    let (s, h, body) = api.get(&format!("/apps/{APP}")).await;
    assert_eq!(s, 200);
    let first: u32 = header(&h, "ratelimit-remaining").unwrap().parse().unwrap();
    let (_, h, _) = api.get(&format!("/apps/{APP}")).await;
    let second: u32 = header(&h, "ratelimit-remaining").unwrap().parse().unwrap();
    assert!(second < first, "{first} then {second}");
    assert!(header(&h, "request-id").is_some());
    assert_eq!(body["name"], APP);

    let (s, h, body) = send(
        api.http
            .get(format!("{}/apps/{APP}", api.em.url()))
            .bearer_auth("nope"),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(
        body,
        json!({"id": "unauthorized", "message": "Invalid credentials provided."})
    );
    assert!(header(&h, "ratelimit-remaining").is_some());
    let (s, _, _) = send(api.http.get(format!("{}/apps/{APP}", api.em.url()))).await;
    assert_eq!(s, 401, "no token at all");

    let (s, h, body) = api.get("/apps/no-such-app").await;
    assert_eq!(s, 404);
    assert_eq!(
        body,
        json!({"id": "not_found", "message": "Couldn't find that app.", "resource": "app"})
    );
    assert!(header(&h, "ratelimit-remaining").is_some());
    let (_, _, body) = api.get("/addons/postgresql-nope").await;
    assert_eq!(body["message"], "Couldn't find that add on.");
    assert_eq!(body["resource"], "add_on");
    let (s, _, body) = api.get("/no/such/endpoint").await;
    assert_eq!((s, body["id"].as_str()), (404, Some("not_found")));

    let (s, _, body) = send(
        api.req(reqwest::Method::PATCH, &format!("/apps/{APP}/config-vars"))
            .json(&json!({"DATABASE_URL": "postgres://elsewhere"})),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(
        body,
        json!({"id": "invalid_params", "message": "Cannot overwrite attachment values DATABASE_URL."})
    );

    // A name whose NAME_URL is an ordinary var needs confirm; string
    // identities work as well as {"name": ...}.
    let (s, _, _) = send(
        api.req(reqwest::Method::PATCH, &format!("/apps/{APP}/config-vars"))
            .json(&json!({"OTHER_URL": "x"})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, body) = send(
        api.req(reqwest::Method::POST, "/addon-attachments")
            .json(&json!({"addon": "postgresql-rigid-71273", "app": APP, "name": "OTHER"})),
    )
    .await;
    assert_eq!(s, 423);
    assert_eq!(body["id"], "confirmation_required");
    let (s, _, body) = send(
        api.req(reqwest::Method::PATCH, &format!("/apps/{APP}"))
            .body("{not json"),
    )
    .await;
    assert_eq!((s, body["id"].as_str()), (400, Some("bad_request")));
}

#[tokio::test]
async fn config_patch_with_null_deletes_and_returns_the_whole_map() {
    let api = Api::start().await;
    let (s, _, body) = send(
        api.req(reqwest::Method::PATCH, &format!("/apps/{APP}/config-vars"))
            .json(&json!({"SECRET_KEY": null, "NEW": "v"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["NEW"], "v");
    assert!(body.get("SECRET_KEY").is_none());
    assert_eq!(
        body["DATABASE_URL"], "postgres://u:p@host:5432/db",
        "attachment vars are in the map"
    );
    let (_, _, app) = send(
        api.req(reqwest::Method::PATCH, &format!("/apps/{APP}"))
            .json(&json!({"maintenance": true})),
    )
    .await;
    assert_eq!(app["maintenance"], true);
}

#[tokio::test]
async fn ranges_page_with_206_next_range_and_content_range() {
    let api = Api::start().await;
    let mut range = Some("name ..; max=2".to_owned());
    let mut names = Vec::new();
    let mut statuses = Vec::new();
    while let Some(r) = range.take() {
        let (s, h, body) = send(api.req(reqwest::Method::GET, "/apps").header("Range", r)).await;
        statuses.push(s);
        names.extend(
            body.as_array()
                .unwrap()
                .iter()
                .map(|a| a["name"].as_str().unwrap().to_owned()),
        );
        assert!(header(&h, "content-range").unwrap().starts_with("name "));
        range = header(&h, "next-range").map(str::to_owned);
        if s == 206 {
            assert!(range.as_deref().unwrap().starts_with("name ]"), "{range:?}");
        } else {
            assert!(range.is_none());
        }
    }
    assert_eq!(names, ["app-a", "app-b", "app-c", "app-d", "app-e", APP]);
    assert_eq!(statuses, [206, 206, 200]);

    // The newest release, the way Heroku's CLI asks after a change.
    for r in [
        "version ..; order=desc,max=1",
        "version ..; max=1, order=desc",
    ] {
        let (s, h, body) = send(
            api.req(reqwest::Method::GET, &format!("/apps/{APP}/releases"))
                .header("Range", r),
        )
        .await;
        assert_eq!(s, 206);
        assert_eq!(body.as_array().unwrap().len(), 1);
        assert_eq!(body[0]["current"], true);
        assert!(header(&h, "next-range").unwrap().contains("order=desc"));
    }
    let (s, _, body) = send(
        api.req(reqwest::Method::GET, "/apps")
            .header("Range", "color .."),
    )
    .await;
    assert_eq!(
        (s, body["id"].as_str()),
        (416, Some("requested_range_not_satisfiable"))
    );
}

#[tokio::test]
async fn control_api_faults_latency_rate_limit_state_and_requests() {
    let api = Api::start().await;
    let ctl = |path: &str| api.ctl(path);
    let r = api
        .http
        .post(ctl("faults"))
        .json(&json!({"status": 503, "count": 1}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let (s, _, body) = api.get(&format!("/apps/{APP}")).await;
    assert_eq!((s, body["id"].as_str()), (503, Some("service_unavailable")));
    assert_eq!(api.get(&format!("/apps/{APP}")).await.0, 200);

    api.http
        .post(ctl("faults"))
        .json(&json!({"latency_ms": 150}))
        .send()
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(api.get(&format!("/apps/{APP}")).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    api.http.delete(ctl("faults")).send().await.unwrap();

    api.http
        .post(ctl("rate-limit"))
        .json(&json!({"remaining": 0}))
        .send()
        .await
        .unwrap();
    let (s, h, body) = api.get(&format!("/apps/{APP}")).await;
    assert_eq!((s, body["id"].as_str()), (429, Some("rate_limit")));
    assert_eq!(header(&h, "ratelimit-remaining"), Some("0"));

    let state = api.control("state").await;
    let seed = Seed::from_json(&state.to_string()).unwrap();
    assert_eq!(seed.apps.len(), 6);
    let log = api.control("requests").await;
    let statuses: Vec<u64> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [503, 200, 200, 429]);
}

#[tokio::test]
async fn formation_batch_and_single_updates() {
    let api = Api::start().await;
    let (s, _, body) = send(
        api.req(reqwest::Method::PATCH, &format!("/apps/{APP}/formation"))
            .json(&json!({"updates": [{"type": "worker", "quantity": 0}]})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body[0]["quantity"], 0);
    let (s, _, body) = send(
        api.req(
            reqwest::Method::PATCH,
            &format!("/apps/{APP}/formation/web"),
        )
        .json(&json!({"quantity": 3})),
    )
    .await;
    assert_eq!((s, body["quantity"].as_u64()), (200, Some(3)));
    assert_eq!(api.em.formation(APP)["web"], 3);
}

#[tokio::test]
async fn save_writes_the_state_file_after_each_change() {
    use std::os::unix::fs::PermissionsExt;
    let api = Api::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    // A world-readable state file (as an editor writes it) is replaced by a
    // private one: the state holds tokens and database passwords.
    std::fs::write(&path, seed().to_json()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    api.em.save_state_to(Some(path.clone()));
    let (s, _, _) = send(
        api.req(reqwest::Method::PATCH, &format!("/apps/{APP}"))
            .json(&json!({"maintenance": true})),
    )
    .await;
    assert_eq!(s, 200);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the state file is private");
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(files, 1, "no temporary file is left behind");
    let saved = Seed::from_file(&path).unwrap();
    let app = saved.apps.iter().find(|a| a.name == APP).unwrap();
    assert!(app.maintenance);
    assert_eq!(app.addons[0].attachments.len(), 2);
    // The saved file starts an identical emulator.
    let again = Emulator::start(saved).await.unwrap();
    assert_eq!(again.maintenance(APP), Some(true));
    assert_eq!(again.config_vars(APP), api.em.config_vars(APP));
}

/// One raw HTTP/1.1 GET with this `Host` header: the status and the body.
async fn get_with_host(em: &Emulator, path: &str, host: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(em.addr()).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Accept: application/vnd.heroku+json; version=3\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// DNS rebinding: a web page whose name now resolves to 127.0.0.1 sends
/// its own name as `Host`, and must reach neither the API nor the control
/// API (which needs no token and shows every token and database URL).
#[tokio::test]
async fn a_request_for_another_host_is_refused_with_herokus_error_shape() {
    let api = Api::start().await;
    for path in [format!("/apps/{APP}"), "/__emulator/state".to_string()] {
        let (status, body) = get_with_host(&api.em, &path, "evil.example").await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["id"], "forbidden", "{body}");
        let message = body["message"].as_str().unwrap();
        for part in ["\"evil.example\"", "loopback", "--allow-remote"] {
            assert!(message.contains(part), "{part:?} not in {message}");
        }
        assert!(!body.to_string().contains(TOKEN), "{body}");
    }
    let port = api.em.addr().port();
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let (status, body) = get_with_host(&api.em, &format!("/apps/{APP}"), &host).await;
        assert_eq!((status, &body["name"]), (200, &json!(APP)), "{host}");
    }

    let remote = Emulator::start_allowing_remote("127.0.0.1:0".parse().unwrap(), seed())
        .await
        .unwrap();
    let (status, _) = get_with_host(&remote, &format!("/apps/{APP}"), "evil.example").await;
    assert_eq!(status, 200, "--allow-remote accepts any Host");
}

#[tokio::test]
async fn a_non_loopback_address_is_refused_naming_allow_remote() {
    let err = Emulator::start_on("0.0.0.0:0".parse().unwrap(), seed())
        .await
        .expect_err("0.0.0.0 is refused");
    let text = err.to_string();
    for part in ["0.0.0.0:0", "not a loopback address", "--allow-remote"] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
}
