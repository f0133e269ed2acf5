//! `/health`, `/health/live` and `POST /v1/stats/reset` through a real server.
#![cfg(feature = "axum")]

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use support::{sample, serve};
use tower_observe::clock::ManualClock;
use tower_observe::health::HealthOptions;
use tower_observe::Observer;

fn app(observer: &Observer) -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .merge(observer.router())
        .layer(observer.layer())
}

async fn traffic(base: &str, ok: usize, failed: usize) {
    let client = reqwest::Client::new();
    for _ in 0..ok {
        client.get(format!("{base}/ok")).send().await.unwrap();
    }
    for _ in 0..failed {
        client.get(format!("{base}/fail")).send().await.unwrap();
    }
}

async fn health(base: &str) -> (u16, Value) {
    let res = reqwest::get(format!("{base}/health")).await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn health_follows_the_recent_error_rate_across_thresholds_and_back() {
    let clock = ManualClock::new();
    let observer = Observer::builder()
        .clock(clock.clone())
        .service_version("9.9.9")
        .build()
        .unwrap();
    let base = format!("http://{}", serve(app(&observer)).await);

    let (code, body) = health(&base).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("green")));
    assert_eq!(body["version"], "9.9.9");
    assert!(body["error_rate"].is_null());

    // 4 failed of 101 (the earlier /health probe counts as a success): green.
    traffic(&base, 96, 4).await;
    let (code, body) = health(&base).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("green")),
        "{body}"
    );
    // +4 failed: 8 / 106 ≈ 7.5 %: yellow, still 200.
    traffic(&base, 0, 4).await;
    let (code, body) = health(&base).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("yellow")),
        "{body}"
    );
    // +6 failed: 14 / 113 ≈ 12.4 %: red, 503.
    traffic(&base, 0, 6).await;
    let (code, body) = health(&base).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (503, Some("red")),
        "{body}"
    );
    let rate = body["error_rate"].as_f64().unwrap();
    assert!((0.10..0.14).contains(&rate), "{rate}");

    // A minute later the window holds only fresh traffic.
    clock.advance(Duration::from_secs(61));
    traffic(&base, 50, 0).await;
    let (code, body) = health(&base).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("green")),
        "{body}"
    );
    // The probe being answered is recorded after its response: the window holds the 50.
    assert_eq!(body["requests_last_minute"], 50);
}

#[tokio::test]
async fn failed_dependency_check_is_red_and_liveness_stays_up() {
    let observer = Observer::builder()
        .health(
            HealthOptions::new()
                .check("cache", || Box::pin(async { Ok(()) }))
                .check("database", || {
                    Box::pin(async {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Err("connection refused".to_owned())
                    })
                }),
        )
        .build()
        .unwrap();
    let base = format!("http://{}", serve(app(&observer)).await);
    let (code, body) = health(&base).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (503, Some("red")),
        "{body}"
    );
    assert_eq!(body["checks"]["cache"]["status"], "green");
    assert_eq!(body["checks"]["database"]["status"], "red");
    assert_eq!(body["checks"]["database"]["error"], "connection refused");
    assert!(body["checks"]["database"]["latency_ms"].as_f64().unwrap() >= 20.0);
    let live = reqwest::get(format!("{base}/health/live")).await.unwrap();
    assert_eq!(live.status(), 200);

    // Without axum: the plain service answers the same.
    use tower::ServiceExt;
    let res = observer
        .endpoints()
        .oneshot(http::Request::get("/health").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
}

#[tokio::test]
async fn health_routes_can_be_left_to_the_app() {
    let observer = Observer::builder()
        .health(HealthOptions::disabled())
        .build()
        .unwrap();
    // The app's own /health does not collide with the fragment.
    let app = Router::new()
        .route("/health", get(|| async { "mine" }))
        .merge(observer.router());
    let base = format!("http://{}", serve(app).await);
    let text = reqwest::get(format!("{base}/health"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "mine");
}

#[tokio::test]
async fn reset_needs_the_token_and_leaves_prometheus_counters_alone() {
    // No token configured: no route.
    let observer = Observer::new();
    let base = format!("http://{}", serve(app(&observer)).await);
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{base}/v1/stats/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    let observer = Observer::builder().reset_token("s3cret").build().unwrap();
    let base = format!("http://{}", serve(app(&observer)).await);
    traffic(&base, 5, 2).await;
    let res = client
        .post(format!("{base}/v1/stats/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let res = client
        .post(format!("{base}/v1/stats/reset"))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(observer.stats().totals.requests >= 7);

    let res = client
        .post(format!("{base}/v1/stats/reset"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["reset"], true);
    let stats = observer.stats();
    // Only requests recorded after the reset remain (the refused resets were recorded
    // before it; the successful one is recorded when its response ends, after the reset).
    assert!(stats.totals.requests <= 1, "{:?}", stats.totals);
    assert_eq!(stats.totals.errors, 0);
    let text = observer.render_metrics().unwrap();
    let ok = sample(
        &text,
        "http_server_request_duration_seconds_count",
        &[("http_route", "/ok")],
    );
    assert_eq!(ok, Some(5.0), "Prometheus counters stay monotonic");
    let refused = |reason| {
        sample(
            &text,
            "tower_observe_stats_reset_rejected_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(
        (refused("missing"), refused("invalid")),
        (Some(1.0), Some(1.0))
    );
    let res = client
        .get(format!("{base}/v1/stats/reset"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
}
