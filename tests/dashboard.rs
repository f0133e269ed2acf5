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
    // The observer's own endpoint: in its own family (OwnEndpoints::Apart).
    let count = support::sample(
        &metrics,
        "tower_observe_endpoint_request_duration_seconds_count",
        &labels,
    );
    let sum = support::sample(
        &metrics,
        "tower_observe_endpoint_request_duration_seconds_sum",
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
    // Every asset the page names (relative to the page) is served, versioned, with a strong
    // validator.
    let mut seen = 0;
    for part in html.split("\"dashboard/assets/").skip(1) {
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

#[tokio::test]
async fn nested_under_a_prefix_the_page_and_everything_it_asks_for_are_served() {
    let observer = Observer::builder()
        .dashboard(DashboardOptions::new().tick(Duration::from_millis(200)))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/work", get(|| async { "done" }))
        .nest("/ops", observer.router())
        .layer(observer.layer());
    let base = format!("http://{}", support::serve(app).await);
    let page = reqwest::get(format!("{base}/ops/dashboard")).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    // No root-absolute URL: everything resolves against the page's own path.
    assert!(!html.contains("=\"/"), "{html}");
    let app_js = reqwest::get(format!("{base}/dashboard/assets/app.js"))
        .await
        .unwrap();
    assert_eq!(app_js.status(), 404, "not at the root");
    // What the page links and the script fetches, resolved against /ops/dashboard.
    let page_url = reqwest::Url::parse(&format!("{base}/ops/dashboard")).unwrap();
    let mut linked: Vec<String> = html
        .split(['"'])
        .filter(|s| s.starts_with("dashboard/assets/") || s.starts_with("v1/") || *s == "health")
        .map(str::to_owned)
        .collect();
    let js = reqwest::get(page_url.join("dashboard/assets/app.js").unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for fetched in [
        "health",
        "v1/stats/stream",
        "v1/stats/history",
        "v1/requests",
    ] {
        assert!(
            js.contains(&format!("'{fetched}")) || js.contains(&format!("`{fetched}")),
            "{fetched}"
        );
        linked.push(fetched.to_owned());
    }
    assert!(linked.len() >= 8, "{linked:?}");
    for path in linked {
        let path = path.split('?').next().unwrap();
        let url = page_url.join(path).unwrap();
        assert!(url.path().starts_with("/ops/"), "{url}");
        let res = reqwest::Client::new()
            .get(url.clone())
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        // The history is not configured here: its 404 is the page's cue to hide it.
        let expected = if path.starts_with("v1/stats/history") {
            404
        } else {
            200
        };
        assert_eq!(res.status(), expected, "{url}");
    }
    // Nested, the observer's own requests are still recognised and kept apart.
    let stats: serde_json::Value = reqwest::get(format!("{base}/ops/v1/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Only the 404 above at the root is the app's: the history that is off answers the
    // observer's own JSON 404, kept apart like its other routes.
    let routes = stats["routes"].as_array().unwrap();
    assert!(
        routes.iter().all(|r| r["route"] == "_UNMATCHED"),
        "{routes:?}"
    );
    assert_eq!(stats["totals"]["requests"], 1);
    assert!(stats["observer_endpoints"]["requests"].as_u64().unwrap() >= 8);
}

#[tokio::test]
async fn recent_requests_lists_the_slow_and_failed_newest_first_behind_the_token() {
    let observer = Observer::builder()
        .dashboard(DashboardOptions::new().token("s3cret"))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                "slow"
            }),
        )
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/fail",
            get(|| async { axum::http::StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .merge(observer.router())
        .layer(observer.layer());
    let base = format!("http://{}", support::serve(app).await);
    let client = reqwest::Client::new();
    let fail = client.get(format!("{base}/fail")).send().await.unwrap();
    let failed_id = fail.headers()["x-request-id"].to_str().unwrap().to_owned();
    client.get(format!("{base}/slow")).send().await.unwrap();
    for _ in 0..30 {
        client.get(format!("{base}/ok")).send().await.unwrap();
    }
    let refused = client
        .get(format!("{base}/v1/requests"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let res = client
        .get(format!("{base}/v1/requests?token=s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let doc: serde_json::Value = res.json().await.unwrap();
    assert_eq!(doc["window_seconds"], 300);
    let list = doc["requests"].as_array().unwrap();
    assert!(list.len() <= 40 && list.len() >= 2, "{doc}");
    let failed = list
        .iter()
        .find(|r| r["request_id"] == failed_id.as_str())
        .expect("the failed request");
    assert_eq!(
        (failed["failed"].as_bool(), failed["status"].as_u64()),
        (Some(true), Some(500))
    );
    assert_eq!(failed["route"], "/fail");
    assert_eq!(failed["trace_id"].as_str().map(str::len), Some(32));
    let slowest = list
        .iter()
        .max_by(|a, b| {
            a["duration_ms"]
                .as_f64()
                .partial_cmp(&b["duration_ms"].as_f64())
                .unwrap()
        })
        .unwrap();
    assert_eq!(slowest["route"], "/slow");
    assert!(slowest["duration_ms"].as_f64().unwrap() >= 30.0);
    let times: Vec<&str> = list.iter().map(|r| r["time"].as_str().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    // The observer's own requests (the refused one, this one) are not the application's.
    assert!(list.iter().all(|r| r["route"] != "/v1/requests"));
}
