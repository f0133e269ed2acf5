//! The dashboard's endpoints through a real server: the page and its assets, the token, and
//! the Server-Sent Events stream (reconnects with `Last-Event-ID`, one snapshot per tick).
#![cfg(all(feature = "dashboard", feature = "axum"))]

use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use tower_observe::dashboard::DashboardOptions;
use tower_observe::Observer;

mod support;

async fn app(options: DashboardOptions) -> (Observer, std::net::SocketAddr) {
    let observer = Observer::builder()
        .dashboard(options.tick(Duration::from_millis(200)))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/work", get(|| async { "done" }))
        .merge(observer.router())
        .layer(observer.layer());
    let addr = support::serve(app).await;
    (observer, addr)
}

/// Reads SSE events (`id`, `data`) from a response until `n` events arrived.
async fn events(res: reqwest::Response, n: usize) -> (String, Vec<(String, serde_json::Value)>) {
    let mut stream = res.bytes_stream();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, stream.next())
            .await
            .expect("events within 10 s")
            .expect("stream open")
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        out.clear();
        for block in text.split("\n\n") {
            let id = block.lines().find_map(|l| l.strip_prefix("id: "));
            let data = block.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some(id), Some(data)) = (id, data) {
                out.push((id.to_owned(), serde_json::from_str(data).unwrap()));
            }
        }
    }
    (text, out)
}

fn seq(id: &str) -> u64 {
    id.split_once('.').unwrap().1.parse().unwrap()
}

#[tokio::test]
async fn the_stream_sends_stats_and_resumes_after_the_last_event() {
    let (_observer, addr) = app(DashboardOptions::new()).await;
    let client = reqwest::Client::new();
    client
        .get(format!("http://{addr}/work"))
        .send()
        .await
        .unwrap();
    let url = format!("http://{addr}/v1/stats/stream");
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let (text, got) = events(res, 3).await;
    assert!(text.starts_with("retry: 2000\n\n"), "{text}");
    assert!(text.contains("event: stats\n"));
    // The data is the /v1/stats document, and it is live.
    assert!(got[0].1["totals"]["requests"].as_u64().unwrap() >= 1);
    assert!(seq(&got[0].0) < seq(&got[1].0) && seq(&got[1].0) < seq(&got[2].0));

    // Disconnected (the response is dropped), then back with Last-Event-ID: the next event
    // comes after the last one seen.
    let last = got[2].0.clone();
    let res = client
        .get(&url)
        .header("last-event-id", &last)
        .send()
        .await
        .unwrap();
    let (_, resumed) = events(res, 1).await;
    assert!(
        seq(&resumed[0].0) > seq(&last),
        "{} after {last}",
        resumed[0].0
    );

    // An ID from another process (a restart): the current figures at once.
    let res = client
        .get(&url)
        .header("last-event-id", "1.999999")
        .send()
        .await
        .unwrap();
    let started = Instant::now();
    let (_, fresh) = events(res, 1).await;
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "sent at once"
    );
    assert!(fresh[0].1["uptime_seconds"].is_number());
}

#[tokio::test]
async fn an_open_stream_is_measured_to_its_headers() {
    let (observer, addr) = app(DashboardOptions::new()).await;
    let client = reqwest::Client::new();
    let res = client
        .get(format!("http://{addr}/v1/stats/stream"))
        .send()
        .await
        .unwrap();
    let _ = events(res, 5).await; // about a second open, then dropped
    let metrics = observer.render_metrics().unwrap();
    let labels = [("http_route", "/v1/stats/stream")];
    let count = support::sample(
        &metrics,
        "http_server_request_duration_seconds_count",
        &labels,
    );
    let sum = support::sample(
        &metrics,
        "http_server_request_duration_seconds_sum",
        &labels,
    );
    assert_eq!(count, Some(1.0), "{metrics}");
    assert!(
        sum.unwrap() < 0.5,
        "the stream's open time is not its duration: {sum:?}"
    );
    let active = support::sample(&metrics, "http_server_active_requests", &[]).unwrap_or(0.0);
    assert_eq!(active, 0.0);
}

#[tokio::test]
async fn the_page_and_its_assets_are_cached_by_content() {
    let (_observer, addr) = app(DashboardOptions::new()).await;
    let client = reqwest::Client::new();
    let page = client
        .get(format!("http://{addr}/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    let etag = page.headers()["etag"].clone();
    let html = page.text().await.unwrap();
    let again = client
        .get(format!("http://{addr}/dashboard"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    // Every asset the page names is served, versioned, with a strong validator.
    let mut seen = 0;
    for part in html.split("/dashboard/assets/").skip(1) {
        let path = part.split('"').next().unwrap();
        let res = client
            .get(format!("http://{addr}/dashboard/assets/{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert!(res.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable"));
        assert!(res.headers()["etag"].to_str().unwrap().starts_with('"'));
        assert!(path.contains("?v="), "{path}");
        seen += 1;
    }
    assert!(seen >= 2, "{html}");
}

#[tokio::test]
async fn a_token_guards_the_page_and_the_stream() {
    let (observer, addr) = app(DashboardOptions::new().token("s3cret")).await;
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("http://{addr}{path}")).send();
    assert_eq!(get("/dashboard").await.unwrap().status(), 401);
    assert_eq!(get("/dashboard?token=nope").await.unwrap().status(), 403);
    assert_eq!(get("/v1/stats/stream").await.unwrap().status(), 401);
    assert_eq!(get("/dashboard?token=s3cret").await.unwrap().status(), 200);
    let res = get("/v1/stats/stream?token=s3cret").await.unwrap();
    assert_eq!(res.status(), 200);
    drop(res);
    let bearer = client
        .get(format!("http://{addr}/dashboard"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    // Assets are code, served without the token.
    assert_eq!(get("/dashboard/assets/app.js").await.unwrap().status(), 200);
    let metrics = observer.render_metrics().unwrap();
    let rejected = |reason| {
        support::sample(
            &metrics,
            "tower_observe_dashboard_rejected_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(rejected("missing"), Some(2.0));
    assert_eq!(rejected("invalid"), Some(1.0));
    assert!(!metrics.contains("s3cret"));
}

#[tokio::test]
async fn every_open_stream_gets_the_same_snapshots() {
    let (_observer, addr) = app(DashboardOptions::new()).await;
    let client = reqwest::Client::new();
    let mut readers = Vec::new();
    for _ in 0..20 {
        let res = client
            .get(format!("http://{addr}/v1/stats/stream"))
            .send()
            .await
            .unwrap();
        readers.push(tokio::spawn(events(res, 4)));
    }
    let mut ids = Vec::new();
    for reader in readers {
        let (_, got) = reader.await.unwrap();
        ids.extend(got.into_iter().map(|(id, _)| seq(&id)));
    }
    // Twenty clients, four events each, over a handful of ticks: one snapshot per tick, not
    // one per client (20 × 4 snapshots would number up to 80).
    let highest = ids.iter().max().copied().unwrap();
    assert!(highest <= 12, "snapshots taken: {highest}");
}
