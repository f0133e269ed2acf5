//! ECS JSON logs through a real server: every line written while serving a request carries
//! its request ID and trace, and the access-log line carries the HTTP fields. Its own test
//! binary, because it installs a global subscriber.
#![cfg(all(feature = "logs", feature = "axum"))]

mod support;

use axum::routing::get;
use axum::Router;
use support::{eventually, serve, Capture};
use tower_observe::logs::EcsJsonLayer;
use tower_observe::trace::TraceOptions;
use tower_observe::Observer;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test]
async fn request_logs_carry_request_and_trace_ids() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(EcsJsonLayer::new("shop").with_writer(capture.clone())),
    )
    .unwrap();

    let observer = Observer::new();
    let app = Router::new()
        .route(
            "/orders/{id}",
            get(|| async {
                tracing::info!(order.items = 3, "loading order");
                "ok"
            }),
        )
        .layer(
            observer
                .layer()
                .traces(TraceOptions::new().access_log(true)),
        );
    let addr = serve(app).await;
    reqwest::Client::new()
        .get(format!("http://{addr}/orders/7?token=s3cr3t"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("x-request-id", "req-77")
        .header("authorization", "Bearer s3cr3t")
        .send()
        .await
        .unwrap();
    eventually(|| capture.lines().len() >= 2).await;

    let lines = capture.lines();
    let raw = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(!raw.contains("s3cr3t"), "no secret reaches the log: {raw}");
    let handler = lines
        .iter()
        .find(|l| l["message"] == "loading order")
        .unwrap();
    let access = lines
        .iter()
        .find(|l| l["message"] == "request completed")
        .unwrap();
    for line in [handler, access] {
        assert_eq!(line["http.request.id"], "req-77");
        assert_eq!(line["trace.id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(line["span.id"].as_str().unwrap().len(), 16);
        assert_eq!(line["service.name"], "shop");
        assert_eq!(line["ecs.version"], "8.11.0");
        assert!(line["@timestamp"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(handler["order.items"], 3);
    assert_eq!(handler["log.level"], "info");
    assert_eq!(access["log.logger"], "tower_observe::access");
    assert_eq!(access["http.request.method"], "GET");
    assert_eq!(access["url.path"], "/orders/7");
    // ECS has no route field: the route is a label (and `http.route` would not be ECS).
    assert_eq!(access["labels.http_route"], "/orders/{id}");
    assert!(access.get("http.route").is_none());
    assert_eq!(access["transaction.id"], access["span.id"]);
    assert_eq!(access["http.response.status_code"], 200);
    assert!(access["event.duration"].as_u64().unwrap() > 0);

    // Requests served without a span still log their IDs: a trace the caller did not sample
    // (no span: nobody would see it) and the untraced quick start (no spans at all).
    let handler = || async {
        tracing::info!("serving");
        "ok"
    };
    let traced = Router::new()
        .route("/unsampled", get(handler))
        .layer(observer.layer().traces(TraceOptions::new()));
    let untraced = Router::new()
        .route("/untraced", get(handler))
        .layer(observer.layer());
    for (app, path, id) in [
        (traced, "/unsampled", "req-78"),
        (untraced, "/untraced", "req-79"),
    ] {
        let addr = serve(app).await;
        reqwest::Client::new()
            .get(format!("http://{addr}{path}"))
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
            )
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
        eventually(|| capture.lines().iter().any(|l| l["http.request.id"] == id)).await;
        let lines = capture.lines();
        let line = lines.iter().find(|l| l["http.request.id"] == id).unwrap();
        assert_eq!(line["message"], "serving");
        assert_eq!(line["trace.id"], "0af7651916cd43dd8448eb211c80319c");
        assert!(line.get("span.id").is_none(), "no span, no span.id: {line}");
        assert!(line.get("url.path").is_none(), "no span fields: {line}");
    }
}
