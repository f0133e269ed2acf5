//! The recent windows of `/v1/stats` (`windows."1m"`, `windows."5m"`) against the since-start
//! figures, on a manual clock: the handler moves the clock by the latency it stands for, so
//! every duration is exact. And the observer's own endpoints, kept out of the application's
//! figures by default.
#![cfg(feature = "axum")]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use tower::ServiceExt;
use tower_observe::clock::ManualClock;
use tower_observe::server::OwnEndpoints;
use tower_observe::Observer;

fn make_app(observer: &Observer, clock: &ManualClock) -> Router {
    let clock = clock.clone();
    Router::new()
        .route(
            "/work/{ms}",
            get(move |axum::extract::Path(ms): axum::extract::Path<u64>| {
                let clock = clock.clone();
                async move {
                    clock.advance(Duration::from_millis(ms));
                    "done"
                }
            }),
        )
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .merge(observer.router())
}

async fn get_path(app: &Router, path: &str) -> StatusCode {
    let res = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let _ = axum::body::to_bytes(res.into_body(), usize::MAX).await;
    status
}

fn ms(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

#[tokio::test]
async fn windowed_figures_move_within_a_minute_of_a_latency_change_while_since_start_ones_barely_do(
) {
    let clock = ManualClock::new();
    let observer = Observer::builder().clock(clock.clone()).build().unwrap();
    let app = make_app(&observer, &clock).layer(observer.layer());

    // Thirty minutes of 10 ms requests, 100 a minute.
    for _ in 0..3000 {
        assert_eq!(get_path(&app, "/work/10").await, StatusCode::OK);
        clock.advance(Duration::from_millis(590));
    }
    let before = serde_json::to_value(observer.stats()).unwrap();
    assert!((ms(&before["latency_ms"]["p50"]) - 10.0).abs() < 0.1);
    assert!((ms(&before["windows"]["1m"]["latency_ms"]["p50"]) - 10.0).abs() < 0.1);

    // Latency goes to 200 ms, same rate, for 40 seconds.
    for _ in 0..66 {
        get_path(&app, "/work/200").await;
        clock.advance(Duration::from_millis(400));
    }
    let after = serde_json::to_value(observer.stats()).unwrap();
    let (one, five) = (&after["windows"]["1m"], &after["windows"]["5m"]);
    // The last minute is mostly the slow requests: its median is the new latency.
    let p50_1m = ms(&one["latency_ms"]["p50"]);
    assert!(
        (p50_1m - 200.0).abs() < 200.0 * 0.01,
        "1m p50 {p50_1m}: {one}"
    );
    // Five minutes: 66 slow of about 500, above the 95th percentile.
    let p99_5m = ms(&five["latency_ms"]["p99"]);
    assert!((p99_5m - 200.0).abs() < 2.0, "5m p99 {p99_5m}: {five}");
    // Since start, the median has not moved and the mean barely has.
    let p50 = ms(&after["latency_ms"]["p50"]);
    let avg = ms(&after["latency_ms"]["avg"]);
    assert!((p50 - 10.0).abs() < 0.1, "since-start p50 {p50}");
    assert!(avg < 15.0, "since-start avg {avg}");
    // The windows' counts and rates are those of their time.
    let requests_1m = one["requests"].as_u64().unwrap();
    assert!((66..=66 + 40).contains(&requests_1m), "{one}");
    let seconds = ms(&one["seconds"]);
    assert!((50.0..=60.0).contains(&seconds), "{one}");
    let rps = ms(&one["requests_per_second"]);
    assert!((rps - requests_1m as f64 / seconds).abs() < 1e-9);
    // Per route too.
    let route = after["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "/work/{ms}")
        .unwrap();
    assert_eq!(route["windows"]["1m"]["requests"], one["requests"]);

    // Errors in the window; then ten quiet minutes empty both windows, not the since-start.
    for _ in 0..5 {
        get_path(&app, "/fail").await;
    }
    let errors = serde_json::to_value(observer.stats()).unwrap();
    assert_eq!(errors["windows"]["1m"]["errors"], 5);
    assert!(errors["windows"]["1m"]["success_rate"].as_f64().unwrap() < 1.0);
    clock.advance(Duration::from_secs(600));
    let quiet = serde_json::to_value(observer.stats()).unwrap();
    for w in ["1m", "5m"] {
        assert_eq!(quiet["windows"][w]["requests"], 0, "{w}");
        assert!(quiet["windows"][w]["latency_ms"].is_null(), "{w}");
    }
    assert_eq!(quiet["totals"]["requests"], 3000 + 66 + 5);
}

#[tokio::test]
async fn own_endpoints_stay_out_of_the_routes_and_the_error_rate_by_default() {
    let clock = ManualClock::new();
    let observer = Observer::builder().clock(clock.clone()).build().unwrap();
    let app = make_app(&observer, &clock).layer(observer.layer());
    for _ in 0..3 {
        get_path(&app, "/work/1").await;
        get_path(&app, "/metrics").await;
        get_path(&app, "/v1/stats").await;
    }
    get_path(&app, "/health").await;
    let stats = serde_json::to_value(observer.stats()).unwrap();
    let routes: Vec<&str> = stats["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["route"].as_str().unwrap())
        .collect();
    assert_eq!(routes, ["/work/{ms}"], "{stats}");
    assert_eq!(stats["totals"]["requests"], 3);
    assert_eq!(stats["windows"]["1m"]["requests"], 3);
    // Counted apart.
    assert_eq!(stats["observer_endpoints"]["requests"], 7, "{stats}");
    // Prometheus keeps them too, in a family of their own: the application's
    // `http_server_*` series (and every rule and panel over them) hold its requests only.
    let text = observer.render_metrics().unwrap();
    let own_series = |route: &str| {
        format!(
            r#"tower_observe_endpoint_request_duration_seconds_count{{http_request_method="GET",http_route="{route}""#
        )
    };
    assert!(text.contains(&own_series("/metrics")), "{text}");
    assert!(text.contains(&own_series("/v1/stats")), "{text}");
    assert!(text.contains(&own_series("/health")), "{text}");
    let app_routes: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("http_server_"))
        .filter_map(|l| l.split("http_route=\"").nth(1)?.split('"').next())
        .collect();
    assert!(!app_routes.is_empty());
    assert!(
        app_routes.iter().all(|r| *r == "/work/{ms}"),
        "{app_routes:?}"
    );

    // Left out entirely.
    let observer = Observer::builder().clock(clock.clone()).build().unwrap();
    let app =
        make_app(&observer, &clock).layer(observer.layer().own_endpoints(OwnEndpoints::Ignore));
    get_path(&app, "/v1/stats").await;
    get_path(&app, "/work/1").await;
    let stats = serde_json::to_value(observer.stats()).unwrap();
    assert_eq!(stats["totals"]["requests"], 1);
    assert_eq!(stats["observer_endpoints"]["requests"], 0);
    let text = observer.render_metrics().unwrap();
    assert!(!text.contains(r#"http_route="/v1/stats""#), "{text}");

    // Recorded with the application's, as before.
    let observer = Observer::builder().clock(clock.clone()).build().unwrap();
    let app =
        make_app(&observer, &clock).layer(observer.layer().own_endpoints(OwnEndpoints::Record));
    get_path(&app, "/v1/stats").await;
    get_path(&app, "/work/1").await;
    let stats = serde_json::to_value(observer.stats()).unwrap();
    assert_eq!(stats["totals"]["requests"], 2);
    let text = observer.render_metrics().unwrap();
    assert!(
        text.contains(r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/v1/stats""#),
        "{text}"
    );
    assert!(
        !text.contains("tower_observe_endpoint_request_duration_seconds"),
        "{text}"
    );
}

#[tokio::test]
async fn own_endpoints_are_recorded_when_the_applications_label_sets_are_at_their_limit() {
    let clock = ManualClock::new();
    let observer = Observer::builder()
        .clock(clock.clone())
        .max_label_sets_per_metric(1)
        .build()
        .unwrap();
    let app = make_app(&observer, &clock).layer(observer.layer());
    // The application takes the one label set; a second status goes to `_OTHER`.
    get_path(&app, "/work/1").await;
    get_path(&app, "/nowhere").await;
    get_path(&app, "/metrics").await;
    let text = observer.render_metrics().unwrap();
    assert!(
        text.contains(r#"tower_observe_endpoint_request_duration_seconds_count{http_request_method="GET",http_route="/metrics""#),
        "{text}"
    );
    // Only the 404 overflowed: the scrape is not in the application's `_OTHER` series.
    let overflowed: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("http_server_request_duration_seconds_count{")
                && l.contains("otel_metric_overflow")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(overflowed, 1.0, "{text}");
}
