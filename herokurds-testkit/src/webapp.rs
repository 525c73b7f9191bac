//! The demo's web app: a tiny site whose pages come from whatever database
//! the Heroku app's `DATABASE_URL` points at *right now*, with images from
//! the bucket its `AWS_STORAGE_BUCKET_NAME` names.
//!
//! It stands in for the real app behind the smoke checks: after the cutover
//! its pages must come from RDS and look the same; if the cutover broke
//! something (a wrong URL, an empty database, a missing bucket), a page or
//! an image fails and the smoke comparison says which.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use secrecy::ExposeSecret;
use tokio::sync::oneshot;

use super::SandboxError;
use herokurds_core::heroku::Client;
use herokurds_core::url::DatabaseUrl;

/// The running web app; stopped on drop.
pub struct DemoWebApp {
    url: String,
    stop: Option<oneshot::Sender<()>>,
}

struct AppState {
    heroku: Client,
    app: String,
    s3_base: String,
}

impl DemoWebApp {
    /// Serves the site on a free loopback port. `s3_base` is the S3
    /// endpoint images are linked from (path style: `{s3_base}/{bucket}/{key}`).
    pub async fn start(
        heroku: Client,
        app: impl Into<String>,
        s3_base: impl Into<String>,
    ) -> Result<DemoWebApp, SandboxError> {
        let state = Arc::new(AppState {
            heroku,
            app: app.into(),
            s3_base: s3_base.into().trim_end_matches('/').to_string(),
        });
        let router = Router::new()
            .route("/", get(home))
            .route("/program/{slug}/", get(program))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| SandboxError::Io {
                what: "binding the demo web app".into(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Io {
            what: "reading the demo web app's address".into(),
            source,
        })?;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(DemoWebApp {
            url: format!("http://{addr}"),
            stop: Some(stop),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for DemoWebApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Where the app's data is right now: its database and its bucket.
async fn current(state: &AppState) -> Result<(tokio_postgres::Client, String, String), Response> {
    let vars = state
        .heroku
        .config_vars(&state.app)
        .await
        .map_err(|e| page_error(StatusCode::BAD_GATEWAY, &format!("Heroku API: {e}")))?;
    let url: DatabaseUrl = vars
        .get("DATABASE_URL")
        .ok_or_else(|| page_error(StatusCode::INTERNAL_SERVER_ERROR, "DATABASE_URL is not set"))?
        .expose_secret()
        .parse()
        .map_err(|e| {
            page_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("DATABASE_URL: {e}"),
            )
        })?;
    let bucket = vars
        .get("AWS_STORAGE_BUCKET_NAME")
        .map(|b| b.expose_secret().to_string())
        .unwrap_or_default();
    let host = url.host().to_string();
    let client = herokurds_core::pg::connect(&url)
        .await
        .map_err(|e| page_error(StatusCode::INTERNAL_SERVER_ERROR, &format!("database: {e}")))?
        .into_client();
    Ok((client, bucket, host))
}

fn page_error(status: StatusCode, why: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><title>Server Error</title></head><body><h1>Server Error</h1><p>{}</p></body></html>",
        escape(why)
    );
    (status, Html(body)).into_response()
}

async fn home(State(state): State<Arc<AppState>>) -> Response {
    let (db, bucket, host) = match current(&state).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let rows = match db
        .query(
            "SELECT p.slug, p.title, p.image_key, (SELECT count(*) FROM learners)
             FROM programs p WHERE p.live ORDER BY p.id",
            &[],
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => return page_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let learners: i64 = rows.first().map(|r| r.get(3)).unwrap_or(0);
    let mut body = format!(
        "<!doctype html><html><head><title>Programs | MicroMasters demo</title></head><body>\
         <h1>{} programs, {learners} learners</h1><ul>",
        rows.len()
    );
    for r in &rows {
        let (slug, title, image): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        body.push_str(&format!(
            "<li><a href=\"/program/{slug}/\">{}</a> <img src=\"{}/{bucket}/{image}\" alt=\"\"></li>",
            escape(&title),
            state.s3_base
        ));
    }
    body.push_str(&format!(
        "</ul><footer>served from database host {}</footer></body></html>",
        escape(&host)
    ));
    Html(body).into_response()
}

async fn program(State(state): State<Arc<AppState>>, Path(slug): Path<String>) -> Response {
    let (db, bucket, host) = match current(&state).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let row = match db
        .query_opt(
            "SELECT p.title, p.description, p.image_key,
                    (SELECT count(*) FROM enrollments e JOIN courses c ON c.id = e.course_id
                     WHERE c.program_id = p.id)
             FROM programs p WHERE p.slug = $1",
            &[&slug],
        )
        .await
    {
        Ok(Some(row)) => row,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                Html("<!doctype html><title>Not Found</title><h1>Not Found</h1>".to_string()),
            )
                .into_response();
        }
        Err(e) => return page_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let (title, description, image, enrollments): (String, String, String, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    Html(format!(
        "<!doctype html><html><head><title>{} | MicroMasters demo</title></head><body>\
         <h1>{}</h1><img src=\"{}/{bucket}/{image}\" alt=\"\"><p>{}</p><p>{enrollments} enrollments</p>\
         <footer>served from database host {}</footer></body></html>",
        escape(&title),
        escape(&title),
        state.s3_base,
        escape(&description),
        escape(&host)
    ))
    .into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
