//! Smoke checks against a real local web server: status, redirects, title,
//! images that load and images that do not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect};
use axum::routing::get;
use axum::Router;
use herokurds::progress::NoProgress;
use herokurds::smoke::{check_all, compare, SmokeOptions};

async fn serve(broken: Arc<AtomicBool>) -> String {
    let b = broken.clone();
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let b = b.clone();
                async move {
                    if b.load(Ordering::SeqCst) {
                        (StatusCode::INTERNAL_SERVER_ERROR, Html("<title>Server Error</title>"))
                            .into_response()
                    } else {
                        Html(
                            "<html><head><title>Home | Demo</title></head><body>\
                             <img src=\"/static/logo.png\"><img src='img/missing.png'></body></html>",
                        )
                        .into_response()
                    }
                }
            }),
        )
        .route("/old", get(|| async { Redirect::permanent("/program/1/") }))
        .route(
            "/program/1/",
            get(|| async { Html("<title>Program 1</title><img src=\"/static/logo.png\">") }),
        )
        .route(
            "/static/logo.png",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], vec![0x89u8, b'P', b'N', b'G']) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn pages_are_recorded_and_a_breakage_after_the_cutover_is_named() {
    let broken = Arc::new(AtomicBool::new(false));
    let base = serve(broken.clone()).await;
    let urls = vec![format!("{base}/"), format!("{base}/old")];
    let before = check_all(&urls, &SmokeOptions::default(), &NoProgress)
        .await
        .unwrap();

    assert_eq!(before[0].status, Some(200));
    assert_eq!(before[0].title.as_deref(), Some("Home | Demo"));
    assert_eq!(before[0].images, 2);
    assert_eq!(before[0].broken_images.len(), 1, "{:?}", before[0]);
    assert_eq!(
        before[0].broken_images[0].url,
        format!("{base}/img/missing.png")
    );
    assert_eq!(before[0].broken_images[0].reason, "status 404");
    assert_eq!(
        before[1].final_url.as_deref(),
        Some(format!("{base}/program/1/").as_str())
    );
    assert!(before[1].is_healthy());

    let again = check_all(&urls, &SmokeOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert!(compare(&before, &again).is_empty(), "nothing changed yet");

    broken.store(true, Ordering::SeqCst);
    let after = check_all(&urls, &SmokeOptions::default(), &NoProgress)
        .await
        .unwrap();
    let diffs: Vec<String> = compare(&before, &after)
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert!(
        diffs.contains(&format!("{base}/: status 200 -> 500")),
        "{diffs:?}"
    );
    assert!(
        diffs
            .iter()
            .any(|d| d.contains("title \"Home | Demo\" -> \"Server Error\"")),
        "{diffs:?}"
    );
    assert!(
        !diffs.iter().any(|d| d.starts_with(&format!("{base}/old"))),
        "{diffs:?}"
    );
}

#[tokio::test]
async fn a_server_that_is_down_is_an_error_on_the_page_not_a_failure() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let urls = vec![format!("http://127.0.0.1:{port}/")];
    let pages = check_all(&urls, &SmokeOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(pages[0].status, None);
    assert_eq!(pages[0].error.as_deref(), Some("could not connect"));
    assert!(!pages[0].is_healthy());
}
