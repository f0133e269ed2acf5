//! Recording through other recorders, and recording that fails.
#![cfg(feature = "axum")]

mod support;

use std::convert::Infallible;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http::{Request, Response};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use support::{eventually, sample, serve};
use tower::{Layer, Service, ServiceExt};
use tower_observe::names::*;
use tower_observe::Observer;

/// A recorder that panics whenever it is asked for anything.
struct PanickingRecorder;

impl Recorder for PanickingRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {
        panic!("describe_counter failed")
    }
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {
        panic!("describe_gauge failed")
    }
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {
        panic!("describe_histogram failed")
    }
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        panic!("register_counter failed")
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        panic!("register_gauge failed")
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        panic!("register_histogram failed")
    }
}

#[tokio::test]
async fn a_failing_recorder_never_fails_requests() {
    let observer = Observer::builder()
        .recorder(PanickingRecorder)
        .renderer(|| panic!("renderer failed"))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "fine" }))
        .merge(observer.router())
        .layer(observer.layer());
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    for _ in 0..20 {
        let res = client
            .get(format!("http://{addr}/"))
            .header("x-request-id", "bad id")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.text().await.unwrap(), "fine");
    }
    let res = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        404,
        "a broken renderer is reported, not a crash"
    );
    eventually(|| observer.recording_failures() >= 20).await;
}

#[tokio::test]
async fn metrics_exporter_prometheus_recorder_works_too() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let observer = Observer::builder()
        .recorder(recorder)
        .renderer(move || handle.render())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .merge(observer.router())
        .layer(observer.layer());
    let addr = serve(app).await;
    for i in 0..5 {
        reqwest::get(format!("http://{addr}/users/{i}"))
            .await
            .unwrap();
    }
    eventually(|| observer.stats().totals.requests == 5).await;
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(
            &text,
            "http_server_request_duration_seconds_count",
            &[(HTTP_ROUTE, "/users/{id}")]
        ),
        Some(5.0),
        "{text}"
    );
}

#[tokio::test]
async fn dropped_before_headers_is_aborted_without_status() {
    let observer = Observer::new();
    let inner = tower::service_fn(|_req: Request<_>| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let mut svc = observer.http_metrics_layer().layer(inner);
    let fut = svc.ready().await.unwrap().call(Request::new(String::new()));
    // Give it a chance to start, then drop it like a server does when the client leaves.
    let _ = tokio::time::timeout(Duration::from_millis(20), fut).await;
    let stats = observer.stats();
    assert_eq!(stats.totals.aborted, 1);
    assert_eq!(stats.status_codes.s2xx + stats.status_codes.s5xx, 0);
    let text = observer.render_metrics().unwrap();
    assert!(text.contains("error_type=\"aborted\""), "{text}");
    assert!(
        !text.contains("http_response_status_code"),
        "no status was sent: {text}"
    );
    assert_eq!(sample(&text, HTTP_SERVER_ACTIVE_REQUESTS, &[]), Some(0.0));
}

#[tokio::test]
async fn service_errors_are_recorded_as_other() {
    let observer = Observer::new();
    let inner = tower::service_fn(|_req: Request<_>| async {
        Err::<Response<String>, _>(std::io::Error::other("backend exploded"))
    });
    let res = observer
        .http_metrics_layer()
        .layer(inner)
        .oneshot(Request::new(String::new()))
        .await;
    assert!(res.is_err());
    let text = observer.render_metrics().unwrap();
    assert!(text.contains("error_type=\"_OTHER\""), "{text}");
    assert_eq!(observer.stats().totals.errors, 1);
}

/// `promtool check metrics` accepts our exposition. Runs wherever promtool is installed;
/// CI installs it and sets `CI`, so there it must run.
#[tokio::test]
async fn promtool_accepts_the_exposition() {
    let Some(promtool) = support::promtool() else {
        return;
    };
    let observer = Observer::builder().dimension("backend").build().unwrap();
    let app = Router::new()
        .route(
            "/a/{x}",
            get(|| async {
                (
                    axum::Extension(tower_observe::Dimensions::new().with("backend", "b\"1\\")),
                    "a",
                )
            }),
        )
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
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    support::promtool_check_metrics(&promtool, &text);
}

#[test]
fn a_panicking_inner_service_still_brings_the_gauge_down() {
    let observer = Observer::new();
    let inner = tower::service_fn(|_req: Request<tower_observe::server::RequestBody<String>>| -> std::future::Ready<Result<Response<String>, Infallible>> {
        panic!("handler bug")
    });
    // With panics not caught (the default catches them: tests/panics.rs).
    let mut svc = observer
        .http_metrics_layer()
        .catch_panics(false)
        .layer(inner);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drop(svc.call(Request::new(String::new())));
    }));
    assert!(outcome.is_err(), "the panic itself is the application's");
    let text = observer.render_metrics().unwrap();
    assert_eq!(
        sample(&text, HTTP_SERVER_ACTIVE_REQUESTS, &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(observer.stats().totals.aborted, 1);
}
