//! Throttling: a real HTTP proxy in front of moto answers `503 SlowDown` to
//! the first CopyObject requests for chosen keys, the way S3 does under load;
//! the sync retries them with backoff, and a key that stays throttled beyond
//! the attempts allowed is reported while the others are copied.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use herokurds::progress::NoProgress;
use herokurds::s3::{sync, ClientSource, S3Location, SyncOptions};
use herokurds_testkit::moto::MotoServer;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How many more 503s each throttled request path gets.
type Budget = Arc<Mutex<HashMap<String, u32>>>;

/// Starts the proxy; returns its endpoint URL.
async fn throttling_proxy(moto_port: u16, budget: Budget) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let budget = budget.clone();
            tokio::spawn(async move {
                let _ = serve(client, moto_port, budget).await;
            });
        }
    });
    format!("http://127.0.0.1:{port}")
}

/// Serves one request per connection (`Connection: close` both ways).
async fn serve(client: TcpStream, moto_port: u16, budget: Budget) -> std::io::Result<()> {
    let mut client = BufReader::new(client);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if client.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        head.push(line);
    }
    let length: usize = head
        .iter()
        .find_map(|h| {
            let (name, value) = h.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    client.read_exact(&mut body).await?;
    let request_line = head[0].clone();
    let is_copy = head
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("x-amz-copy-source:"));
    // The SDK adds `?x-id=CopyObject`; the budget is keyed by path.
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let path = target.split('?').next().unwrap_or("").to_string();
    let throttle = is_copy && {
        let mut budget = budget.lock().unwrap();
        match budget.get_mut(&path) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    };
    let mut client = client.into_inner();
    if throttle {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                   <Message>Please reduce your request rate.</Message></Error>";
        let response = format!(
            "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
            xml.len()
        );
        client.write_all(response.as_bytes()).await?;
        return client.shutdown().await;
    }
    let mut upstream = TcpStream::connect(("127.0.0.1", moto_port)).await?;
    let mut request = request_line.into_bytes();
    for h in &head[1..] {
        if !h.to_ascii_lowercase().starts_with("connection:") {
            request.extend_from_slice(h.as_bytes());
        }
    }
    request.extend_from_slice(b"Connection: close\r\n\r\n");
    request.extend_from_slice(&body);
    upstream.write_all(&request).await?;
    tokio::io::copy(&mut upstream, &mut client).await?;
    client.shutdown().await
}

#[tokio::test]
async fn throttled_copies_are_retried_and_a_key_throttled_too_long_fails_alone() {
    let moto = MotoServer::start().unwrap_or_else(|e| panic!("{e}"));
    for bucket in ["src", "dst"] {
        moto.create_bucket(bucket).await.unwrap();
    }
    let objects = (0..10).map(|i| (format!("k{i}"), b"data".to_vec()));
    moto.put_objects("src", objects, 4).await.unwrap();

    let budget: Budget = Arc::new(Mutex::new(HashMap::from([
        ("/dst/k3".to_string(), 2),   // succeeds on the third attempt
        ("/dst/k7".to_string(), 100), // never gets through
    ])));
    let endpoint = throttling_proxy(moto.port(), budget.clone()).await;
    let config = moto
        .s3_client()
        .config()
        .to_builder()
        .endpoint_url(endpoint)
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    let options = SyncOptions::new()
        .max_attempts(3)
        .source(ClientSource::Client(client.clone()))
        .destination(ClientSource::Client(client));
    let (from, to): (S3Location, S3Location) =
        ("s3://src".parse().unwrap(), "s3://dst".parse().unwrap());
    let report = sync(&from, &to, &options, &NoProgress, CancellationToken::new())
        .await
        .unwrap();

    assert_eq!((report.copied, report.failed), (9, 1), "{report:?}");
    assert_eq!(report.failures[0].key, "k7");
    assert!(
        report.failures[0].reason.contains("SlowDown"),
        "{:?}",
        report.failures
    );
    let left = budget.lock().unwrap().clone();
    assert_eq!(left["/dst/k3"], 0, "k3 was throttled twice, then copied");
    assert_eq!(
        left["/dst/k7"], 97,
        "k7 was tried exactly max_attempts times"
    );
    let keys = moto.keys("dst").await.unwrap();
    assert_eq!(keys.len(), 9);
    assert!(!keys.contains(&"k7".to_string()));
}
