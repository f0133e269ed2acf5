//! The hooks users of the peers look for, through a real server: a request-ID generator of
//! the application's own (its IDs in the response header, the ECS log lines and the records
//! sinks get), routes ignored and grouped (absent from `/metrics` and `/v1/stats`, or under
//! the group's label), and a metric name prefix (on every series of both exposition formats,
//! accepted by `promtool check metrics`, and the alert engine still reading the registry).
//! Its own test binary, because it installs a global subscriber.
#![cfg(all(feature = "axum", feature = "logs"))]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::routing::get;
use axum::Router;
use serde_json::Value;
use support::{eventually, sample, serve, Capture};
use tower_observe::logs::EcsJsonLayer;
use tower_observe::names::{HTTP_ROUTE, HTTP_SERVER_REQUEST_DURATION};
use tower_observe::request_id::{MakeRequestId, RequestHead};
use tower_observe::trace::TraceOptions;
use tower_observe::{HttpServerRecord, Observer, RecordSink, RequestId};
use tracing_subscriber::layer::SubscriberExt;

/// `web-1-1`, `web-1-2`, …
struct Sequential(AtomicU64);

impl MakeRequestId for Sequential {
    fn make_request_id(&self, request: &RequestHead<'_>) -> Option<RequestId> {
        // The generator sees the request: health probes keep the default.
        if request.uri().path() == "/probe" {
            return None;
        }
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        RequestId::parse(&format!("web-1-{n}"), 128)
    }
}

/// Keeps the request IDs of the records the observer hands its sinks.
#[derive(Default)]
struct Ids(Mutex<Vec<String>>);

impl RecordSink for Ids {
    fn record_http_server(&self, record: &HttpServerRecord<'_>) {
        let id = record.request_id.unwrap_or_default().to_owned();
        self.0.lock().unwrap().push(id);
    }
}

#[tokio::test]
async fn a_custom_generator_makes_the_ids_of_headers_logs_and_records() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(EcsJsonLayer::new("shop").with_writer(capture.clone())),
    )
    .unwrap();
    let ids = Arc::new(Ids::default());
    let observer = Observer::builder().sink(ids.clone()).build().unwrap();
    let app = Router::new()
        .route(
            "/orders/{id}",
            get(|id: RequestId| async move {
                tracing::info!("loading order");
                id.to_string()
            }),
        )
        .route("/probe", get(|| async { "ok" }))
        .layer(
            observer
                .layer()
                .make_request_id(Sequential(AtomicU64::new(0)))
                .traces(TraceOptions::new().access_log(true)),
        );
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    for expected in ["web-1-1", "web-1-2"] {
        let res = client
            .get(format!("http://{addr}/orders/7"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["x-request-id"], expected);
        assert_eq!(
            res.text().await.unwrap(),
            expected,
            "the handler's RequestId"
        );
    }
    // A valid incoming ID is kept: the generator is not asked.
    let res = client
        .get(format!("http://{addr}/orders/7"))
        .header("x-request-id", "from-client")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "from-client");
    // None: the default UUIDv7.
    let res = client
        .get(format!("http://{addr}/probe"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"].len(), 36);

    eventually(|| ids.0.lock().unwrap().len() == 4).await;
    assert_eq!(
        ids.0.lock().unwrap()[..3],
        ["web-1-1", "web-1-2", "from-client"]
    );
    eventually(|| {
        capture
            .lines()
            .iter()
            .filter(|l| l["message"] == "request completed")
            .count()
            == 4
    })
    .await;
    let lines = capture.lines();
    for id in ["web-1-1", "web-1-2"] {
        for message in ["loading order", "request completed"] {
            assert!(
                lines
                    .iter()
                    .any(|l| l["message"] == message && l["http.request.id"] == id),
                "{message} with {id}: {lines:?}"
            );
        }
    }
}

#[tokio::test]
async fn ignored_routes_are_not_recorded_and_grouped_routes_share_a_label() {
    let observer = Observer::new();
    let app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route("/livez", get(|| async { "alive" }))
        .route("/internal/jobs", get(|| async { "jobs" }))
        .route("/assets/{*path}", get(|| async { "asset" }))
        .route("/favicon.ico", get(|| async { "icon" }))
        .merge(observer.router())
        .layer(
            observer
                .layer()
                .ignore_routes(["/livez", "/internal/*"])
                .group_routes("/static", ["/assets/*", "/favicon.ico"]),
        );
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    for path in [
        "/users/1",
        "/livez",
        "/livez",
        "/internal/jobs",
        "/assets/app.js",
        "/assets/css/site.css",
        "/favicon.ico",
    ] {
        let res = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert!(
            res.headers().contains_key("x-request-id"),
            "still given an ID"
        );
    }
    eventually(|| observer.stats().totals.requests == 4).await;

    let text = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = format!("{HTTP_SERVER_REQUEST_DURATION}_count");
    assert_eq!(
        sample(&text, &count, &[(HTTP_ROUTE, "/users/{id}")]),
        Some(1.0)
    );
    assert_eq!(sample(&text, &count, &[(HTTP_ROUTE, "/static")]), Some(3.0));
    for absent in [
        "/livez",
        "/internal/jobs",
        "/assets/{*path}",
        "/favicon.ico",
    ] {
        assert!(
            !text.contains(&format!("http_route=\"{absent}\"")),
            "{absent} has no series:\n{text}"
        );
    }
    // The gauge came back down for the ignored requests too (only /metrics is in flight).
    assert_eq!(sample(&text, "http_server_active_requests", &[]), Some(1.0));

    let stats: Value = client
        .get(format!("http://{addr}/v1/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["totals"]["requests"], 4, "{stats}");
    let routes: Vec<(&str, u64)> = stats["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["route"].as_str().unwrap(),
                r["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(routes.contains(&("/static", 3)), "{routes:?}");
    assert!(routes.contains(&("/users/{id}", 1)), "{routes:?}");
    assert_eq!(routes.len(), 2, "{routes:?}");
}

#[tokio::test]
async fn a_prefix_is_on_every_series_and_promtool_accepts_it() {
    let observer = Observer::builder()
        .metric_prefix("shop")
        .dimension("backend")
        .build()
        .unwrap();
    let app = Router::new()
        .route("/a/{x}", get(|| async { "a" }))
        .route(
            "/fail",
            get(|| async { (http::StatusCode::BAD_GATEWAY, "x") }),
        )
        .merge(observer.router())
        .layer(observer.layer());
    let addr = serve(app).await;
    for path in ["/a/1", "/fail", "/missing", "/a/2"] {
        reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    }
    metrics::with_local_recorder(observer.registry().unwrap(), || {
        metrics::describe_counter!("app_jobs_total", "Jobs done.");
        metrics::counter!("app_jobs_total", "queue" => "mail").increment(2);
    });
    eventually(|| observer.stats().totals.requests == 4).await;
    let client = reqwest::Client::new();
    let text = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let openmetrics = client
        .get(format!("http://{addr}/metrics"))
        .header("accept", "application/openmetrics-text;version=1.0.0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for exposition in [&text, &openmetrics] {
        let mut names = 0;
        for line in exposition.lines().filter(|l| *l != "# EOF") {
            let name = match line.strip_prefix("# ") {
                Some(comment) => comment.split(' ').nth(1).unwrap(),
                None => line.split(['{', ' ']).next().unwrap(),
            };
            assert!(name.starts_with("shop_"), "{line}");
            names += 1;
        }
        assert!(names > 20, "{exposition}");
        assert!(exposition.contains("shop_http_server_request_duration_seconds_count{"));
        assert!(exposition.contains("shop_app_jobs_total{queue=\"mail\"} 2"));
    }
    promtool_check(&text);
}

#[cfg(feature = "alerts")]
#[tokio::test]
async fn the_alert_engine_reads_the_metrics_under_their_own_names_with_a_prefix() {
    use tower_observe::alerts::{AlertRule, AlertRules, Alerts, Figure, GaugeAggregation};

    let observer = Observer::builder()
        .metric_prefix("shop")
        .alerts(Alerts::new(
            AlertRules::new().rule(
                AlertRule::new(
                    "Backlog",
                    Figure::gauge("queue_depth", GaugeAggregation::Max),
                )
                .above(5.0),
            ),
        ))
        .unwrap()
        .build()
        .unwrap();
    metrics::with_local_recorder(observer.registry().unwrap(), || {
        metrics::gauge!("queue_depth").set(9.0);
    });
    observer.evaluate_alerts();
    let addr = serve(
        Router::new()
            .merge(observer.router())
            .layer(observer.layer()),
    )
    .await;
    let alerts: Value = reqwest::get(format!("http://{addr}/v1/alerts"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(alerts["rules"][0]["state"], "firing", "{alerts}");
    let text = observer.render_metrics().unwrap();
    assert!(text.contains("shop_queue_depth 9\n"), "{text}");
}

/// `promtool check metrics` on `text`; skipped without promtool unless `TOWER_OBSERVE_E2E=1`.
fn promtool_check(text: &str) {
    if let Some(promtool) = support::promtool() {
        support::promtool_check_metrics(&promtool, text);
    }
}
