//! End to end through a real TCP server: request IDs, HTTP metrics, `/metrics`, `/v1/stats`.
#![cfg(feature = "axum")]

mod support;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::Value;
use support::{eventually, sample, series_count, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_observe::clock::ManualClock;
use tower_observe::names::*;
use tower_observe::stats::LATENCY_RELATIVE_ERROR;
use tower_observe::{Dimensions, Observer, RequestId};

const DURATION_COUNT: &str = "http_server_request_duration_seconds_count";

fn app(observer: &Observer) -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route(
            "/fail",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route("/echo", post(|body: Bytes| async move { body }))
        .route("/id", get(|id: RequestId| async move { id.to_string() }))
        .route(
            "/stream",
            get(|| async { chunked(3, Duration::from_millis(150)) }),
        )
        .route(
            "/endless",
            get(|| async { chunked(usize::MAX, Duration::from_millis(20)) }),
        )
        .route(
            "/chat/{model}",
            get(|Path(model): Path<String>| async move {
                (Extension(Dimensions::new().with("model", model)), "ok")
            }),
        )
        .route(
            "/broken/{model}",
            get(|Path(model): Path<String>| async move {
                (
                    StatusCode::BAD_GATEWAY,
                    Extension(Dimensions::new().with("model", model)),
                    "upstream down",
                )
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                "late"
            }),
        )
        .merge(observer.router())
        .layer(observer.layer())
}

/// `chunks` chunks of 1 KiB, `gap` apart.
fn chunked(chunks: usize, gap: Duration) -> Body {
    let stream = futures_util::stream::unfold(0usize, move |i| async move {
        if i >= chunks {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        Some((
            Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1024])),
            i + 1,
        ))
    });
    Body::from_stream(stream)
}

async fn metrics_text(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn request_id_is_accepted_replaced_or_generated_and_echoed() {
    let observer = Observer::new();
    let addr = serve(app(&observer)).await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/id");

    let res = client
        .get(&url)
        .header("x-request-id", "trace-42:a/b+c=")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-42:a/b+c=");
    assert_eq!(res.text().await.unwrap(), "trace-42:a/b+c=");

    for bad in ["has space", "quote\"d", &"x".repeat(129), "semi;colon"] {
        let res = client
            .get(&url)
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        let echoed = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(echoed, bad);
        assert_eq!(echoed.len(), 36, "a fresh UUIDv7");
        assert_eq!(
            res.text().await.unwrap(),
            echoed,
            "handler sees the same ID"
        );
    }

    let a = client.get(&url).send().await.unwrap();
    let b = client.get(&url).send().await.unwrap();
    let (a, b) = (
        a.headers()["x-request-id"].clone(),
        b.headers()["x-request-id"].clone(),
    );
    assert_ne!(a, b);
    assert!(a.to_str().unwrap() < b.to_str().unwrap(), "time-ordered");

    let text = metrics_text(addr).await;
    assert_eq!(sample(&text, REQUEST_ID_REJECTED, &[]), Some(4.0));
}

#[tokio::test]
async fn exact_counts_after_concurrent_requests() {
    let observer = Observer::new();
    let addr = serve(app(&observer)).await;
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let res = match i % 3 {
                0 => client.get(format!("http://{addr}/users/{i}")).send().await,
                1 => client.get(format!("http://{addr}/fail")).send().await,
                _ => {
                    client
                        .post(format!("http://{addr}/echo"))
                        .body(vec![b'a'; 1000])
                        .send()
                        .await
                }
            };
            res.unwrap().bytes().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    eventually(|| observer.stats().totals.requests == 300).await;

    let text = metrics_text(addr).await;
    let route = |r| sample(&text, DURATION_COUNT, &[(HTTP_ROUTE, r)]);
    assert_eq!(route("/users/{id}"), Some(100.0));
    assert_eq!(route("/fail"), Some(100.0));
    assert_eq!(route("/echo"), Some(100.0));
    assert_eq!(
        sample(
            &text,
            DURATION_COUNT,
            &[
                (HTTP_ROUTE, "/fail"),
                (ERROR_TYPE, "503"),
                (HTTP_RESPONSE_STATUS_CODE, "503")
            ]
        ),
        Some(100.0)
    );
    assert!(!text.contains("http_route=\"/users/{id}\",url_scheme=\"http\",http_response_status_code=\"200\",error_type"));
    assert_eq!(
        sample(
            &text,
            "http_server_request_body_size_bytes_sum",
            &[(HTTP_ROUTE, "/echo")]
        ),
        Some(100_000.0)
    );
    assert_eq!(
        sample(
            &text,
            "http_server_response_body_size_bytes_sum",
            &[(HTTP_ROUTE, "/echo")]
        ),
        Some(100_000.0)
    );
    // Only the /metrics request itself is still in flight while it renders.
    assert_eq!(sample(&text, HTTP_SERVER_ACTIVE_REQUESTS, &[]), Some(1.0));

    let stats: Value = reqwest::get(format!("http://{addr}/v1/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The /metrics request is the observer's own: counted apart, not in the totals.
    assert_eq!(stats["totals"]["requests"], 300);
    assert_eq!(stats["observer_endpoints"]["requests"], 1);
    assert_eq!(stats["totals"]["errors"], 100);
    let fail = stats["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "/fail")
        .unwrap();
    assert_eq!(fail["method"], "GET");
    assert_eq!(fail["requests"], 100);
    assert_eq!(fail["success_rate"], 0.0);
    assert_eq!(fail["status_codes"]["5xx"], 100);
    assert!(stats["requests_per_second"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn unmatched_paths_share_one_series() {
    let observer = Observer::new();
    let addr = serve(app(&observer)).await;
    let client = reqwest::Client::new();
    for _ in 0..1000 {
        let path: String = (0..12).map(|_| fastrand::alphanumeric()).collect();
        let res = client
            .get(format!("http://{addr}/{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
    }
    eventually(|| observer.stats().totals.requests == 1000).await;
    let text = metrics_text(addr).await;
    assert_eq!(
        sample(
            &text,
            DURATION_COUNT,
            &[
                (HTTP_ROUTE, "_UNMATCHED"),
                (HTTP_RESPONSE_STATUS_CODE, "404")
            ]
        ),
        Some(1000.0)
    );
    // The scrape itself is recorded after it renders, so this is the only series.
    assert_eq!(series_count(&text, DURATION_COUNT), 1, "{text}");
}

#[tokio::test]
async fn unknown_methods_become_other() {
    let observer = Observer::new();
    let addr = serve(app(&observer)).await;
    let purge = reqwest::Method::from_bytes(b"PURGE").unwrap();
    let res = reqwest::Client::new()
        .request(purge, format!("http://{addr}/users/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    eventually(|| observer.stats().totals.requests == 1).await;
    let text = metrics_text(addr).await;
    assert_eq!(
        sample(&text, DURATION_COUNT, &[(HTTP_REQUEST_METHOD, "_OTHER")]),
        Some(1.0)
    );
    assert!(!text.contains("PURGE"));
}

#[tokio::test]
async fn streaming_body_is_timed_to_its_end() {
    let observer = Observer::new();
    let addr = serve(app(&observer)).await;
    let res = reqwest::get(format!("http://{addr}/stream")).await.unwrap();
    assert_eq!(res.bytes().await.unwrap().len(), 3 * 1024);
    eventually(|| observer.stats().totals.requests == 1).await;
    let text = metrics_text(addr).await;
    let stream = [(HTTP_ROUTE, "/stream")];
    // Headers went out at once; the body took two 150 ms gaps.
    assert_eq!(
        sample(
            &text,
            "http_server_request_duration_seconds_bucket",
            &[stream[0], ("le", "0.25")]
        ),
        Some(0.0)
    );
    assert!(sample(&text, "http_server_request_duration_seconds_sum", &stream).unwrap() >= 0.3);
    assert_eq!(
        sample(&text, "http_server_response_body_size_bytes_sum", &stream),
        Some(3072.0)
    );
}

#[tokio::test]
async fn client_gone_mid_body_is_recorded_as_aborted() {
    let observer = Observer::new();
    let addr = serve(app(&observer)).await;
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /endless HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(conn);

    eventually(|| observer.stats().totals.aborted == 1).await;
    let text = metrics_text(addr).await;
    assert_eq!(
        sample(
            &text,
            DURATION_COUNT,
            &[
                (HTTP_ROUTE, "/endless"),
                (ERROR_TYPE, "aborted"),
                (HTTP_RESPONSE_STATUS_CODE, "200")
            ]
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &text,
            "http_server_response_body_size_bytes_sum",
            &[(HTTP_ROUTE, "/endless")]
        )
        .unwrap()
            >= 1024.0
    );
    // Only the scrape itself is active: the aborted request brought the gauge back down.
    assert_eq!(sample(&text, HTTP_SERVER_ACTIVE_REQUESTS, &[]), Some(1.0));
    let stats = observer.stats();
    assert_eq!(stats.totals.errors, 0, "an abort is not a server error");
}

#[tokio::test]
async fn percentiles_within_stated_error_on_known_distribution() {
    let clock = ManualClock::new();
    let observer = Observer::builder().clock(clock.clone()).build().unwrap();
    let work_clock = clock.clone();
    let app = Router::new()
        .route(
            "/work",
            get(
                move |Query(q): Query<std::collections::HashMap<String, u64>>| {
                    let clock = work_clock.clone();
                    async move {
                        clock.advance(Duration::from_micros(q["us"]));
                        "done"
                    }
                },
            ),
        )
        .layer(observer.layer());
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    // A long-tailed mix: 90 % fast (1–10 ms), 10 % slow (100 ms – 2 s), shuffled.
    let mut rng = fastrand::Rng::with_seed(42);
    let mut latencies: Vec<u64> = (0..1000)
        .map(|i| {
            if i % 10 == 0 {
                rng.u64(100_000..2_000_000)
            } else {
                rng.u64(1_000..10_000)
            }
        })
        .collect();
    rng.shuffle(&mut latencies);
    for us in &latencies {
        client
            .get(format!("http://{addr}/work?us={us}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    eventually(|| observer.stats().totals.requests == 1000).await;

    latencies.sort_unstable();
    let exact = |q: f64| latencies[((q * 1000.0).ceil() as usize).max(1) - 1] as f64 / 1000.0;
    let got = observer.stats().latency_ms.unwrap();
    for (q, value) in [(0.5, got.p50), (0.95, got.p95), (0.99, got.p99)] {
        let want = exact(q);
        let err = (value - want).abs() / want;
        assert!(
            err <= LATENCY_RELATIVE_ERROR,
            "p{q}: {value} vs {want} (error {err})"
        );
    }
    assert_eq!(got.min, latencies[0] as f64 / 1000.0);
    assert_eq!(got.max, latencies[999] as f64 / 1000.0);
    let avg = latencies.iter().sum::<u64>() as f64 / 1000.0 / 1000.0;
    assert!((got.avg - avg).abs() < 1e-3, "{} vs {avg}", got.avg);
}

#[tokio::test]
async fn dimension_labels_are_capped_and_broken_down() {
    let observer = Observer::builder()
        .dimension("model")
        .max_label_sets_per_metric(50)
        .build()
        .unwrap();
    let addr = serve(app(&observer)).await;
    let client = reqwest::Client::new();
    for i in 0..200 {
        client
            .get(format!("http://{addr}/chat/model-{i}"))
            .send()
            .await
            .unwrap();
    }
    eventually(|| observer.stats().totals.requests == 200).await;
    let stats = observer.stats();
    let models = &stats.dimensions["model"];
    assert_eq!(models.len(), 51, "50 named values + _OTHER");
    assert_eq!(models["_OTHER"].requests, 150);
    assert_eq!(models["model-0"].requests, 1);

    let text = metrics_text(addr).await;
    assert!(series_count(&text, DURATION_COUNT) <= 51);
    assert_eq!(
        sample(&text, DURATION_COUNT, &[("model", "_OTHER")]),
        Some(150.0)
    );
    assert_eq!(
        sample(
            &text,
            CARDINALITY_OVERFLOW,
            &[("metric", HTTP_SERVER_REQUEST_DURATION)]
        ),
        Some(150.0)
    );
    assert_eq!(
        sample(&text, DURATION_COUNT, &[("model", "model-7")]),
        Some(1.0)
    );
}

#[tokio::test]
async fn overflow_keeps_failures_successes_and_status_codes() {
    let observer = Observer::builder()
        .dimension("model")
        .max_label_sets_per_metric(3)
        .build()
        .unwrap();
    let addr = serve(app(&observer)).await;
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        async move { client.get(path).send().await.unwrap().status() }
    };
    // Three label sets fill the table; everything after goes to overflow series.
    for i in 0..3 {
        get(format!("http://{addr}/chat/fill-{i}")).await;
    }
    for i in 0..5 {
        assert_eq!(get(format!("http://{addr}/chat/ok-{i}")).await, 200);
    }
    for i in 0..4 {
        assert_eq!(get(format!("http://{addr}/broken/m-{i}")).await, 502);
    }
    eventually(|| observer.stats().totals.requests == 12).await;
    let stats = observer.stats();
    let text = metrics_text(addr).await;
    let overflowed = |labels: &[(&str, &str)]| {
        let mut all = vec![(OTEL_METRIC_OVERFLOW, "true")];
        all.extend_from_slice(labels);
        sample(&text, DURATION_COUNT, &all)
    };
    // Successes stay successes: 200, no error_type.
    assert_eq!(
        overflowed(&[(HTTP_RESPONSE_STATUS_CODE, "200")]),
        Some(5.0),
        "{text}"
    );
    // Failures stay failures: their status and error_type are kept.
    assert_eq!(
        overflowed(&[(HTTP_RESPONSE_STATUS_CODE, "502"), (ERROR_TYPE, "502")]),
        Some(4.0),
        "{text}"
    );
    for line in text
        .lines()
        .filter(|l| l.contains("otel_metric_overflow=\"true\""))
    {
        if line.contains("http_response_status_code=\"200\"") {
            assert!(!line.contains("error_type"), "{line}");
        }
        // Only the high-cardinality labels fold.
        assert!(line.contains("http_route=\"_OTHER\""), "{line}");
        assert!(line.contains("model=\"_OTHER\""), "{line}");
        assert!(line.contains("http_request_method=\"GET\""), "{line}");
    }
    // Status codes keep their value domain everywhere.
    assert!(
        !text.contains("http_response_status_code=\"_OTHER\""),
        "{text}"
    );
    // The counter counts recordings, not label sets.
    assert_eq!(
        sample(
            &text,
            CARDINALITY_OVERFLOW,
            &[("metric", HTTP_SERVER_REQUEST_DURATION)]
        ),
        Some(9.0)
    );
    // The error rate is right through the overflow.
    assert_eq!((stats.totals.requests, stats.totals.errors), (12, 4));
    assert_eq!(
        stats
            .routes
            .iter()
            .find(|r| r.route == "/broken/{model}")
            .unwrap()
            .stats
            .errors,
        4
    );
}

#[tokio::test]
async fn a_client_gone_before_the_handler_answers_is_aborted_once() {
    let observer = Observer::new();
    let addr = serve(app(&observer)).await;
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let gone = std::time::Instant::now();
    drop(conn);
    eventually(|| observer.stats().totals.aborted == 1).await;
    // Recorded when the server dropped the handler's future, not when the handler ended.
    assert!(
        gone.elapsed() < Duration::from_millis(1300),
        "{:?}",
        gone.elapsed()
    );
    // Past the handler's end, nothing else is recorded for it.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let stats = observer.stats();
    let slow = stats.routes.iter().find(|r| r.route == "/slow").unwrap();
    assert_eq!((slow.stats.requests, slow.stats.aborted), (1, 1));
    assert_eq!(slow.stats.errors, 0);
    // Latency is that of completed requests: the aborted one is not in it.
    assert!(slow.stats.latency_ms.is_none());
    let text = metrics_text(addr).await;
    assert_eq!(
        sample(
            &text,
            DURATION_COUNT,
            &[(HTTP_ROUTE, "/slow"), (ERROR_TYPE, "aborted")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, HTTP_SERVER_ACTIVE_REQUESTS, &[]),
        Some(1.0),
        "only the scrape"
    );
}

#[tokio::test]
async fn protocol_version_and_known_methods() {
    let observer = Observer::new();
    let addr = serve(app(&observer)).await;
    let client = reqwest::Client::new();
    let query = reqwest::Method::from_bytes(b"QUERY").unwrap();
    client
        .request(query, format!("http://{addr}/users/1"))
        .send()
        .await
        .unwrap();
    client
        .get(format!("http://{addr}/users/1"))
        .send()
        .await
        .unwrap();
    eventually(|| observer.stats().totals.requests == 2).await;
    let text = metrics_text(addr).await;
    assert_eq!(
        sample(
            &text,
            DURATION_COUNT,
            &[
                (HTTP_REQUEST_METHOD, "GET"),
                (NETWORK_PROTOCOL_VERSION, "1.1")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, DURATION_COUNT, &[(HTTP_REQUEST_METHOD, "QUERY")]),
        Some(1.0),
        "QUERY is a known method"
    );

    // The list can be replaced in full: PURGE known, QUERY not.
    let custom = Observer::builder()
        .known_http_methods(["GET", "PURGE"])
        .build()
        .unwrap();
    let addr = serve(app(&custom)).await;
    for method in [&b"PURGE"[..], b"QUERY", b"GET"] {
        let method = reqwest::Method::from_bytes(method).unwrap();
        client
            .request(method, format!("http://{addr}/users/1"))
            .send()
            .await
            .unwrap();
    }
    eventually(|| custom.stats().totals.requests == 3).await;
    let text = metrics_text(addr).await;
    let by_method = |m| sample(&text, DURATION_COUNT, &[(HTTP_REQUEST_METHOD, m)]);
    assert_eq!(
        (by_method("PURGE"), by_method("_OTHER"), by_method("GET")),
        (Some(1.0), Some(1.0), Some(1.0)),
        "{text}"
    );
    assert!(Observer::builder()
        .known_http_methods(["NOT A METHOD"])
        .build()
        .is_err());
}

#[tokio::test]
async fn stats_document_has_every_field() {
    let observer = Observer::builder().dimension("model").build().unwrap();
    let addr = serve(app(&observer)).await;
    reqwest::get(format!("http://{addr}/chat/small"))
        .await
        .unwrap();
    eventually(|| observer.stats().totals.requests == 1).await;
    let res = reqwest::get(format!("http://{addr}/v1/stats"))
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "application/json");
    let v: Value = res.json().await.unwrap();
    for field in [
        "started_at",
        "uptime_seconds",
        "totals",
        "requests_per_second",
        "success_rate",
        "latency_ms",
        "latency_relative_error",
        "status_codes",
        "routes",
        "dimensions",
    ] {
        assert!(v.get(field).is_some(), "missing {field}: {v}");
    }
    for field in ["min", "avg", "p50", "p95", "p99", "max"] {
        assert!(v["latency_ms"][field].is_number(), "latency_ms.{field}");
    }
    assert!(v["started_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["dimensions"]["model"]["small"]["requests"], 1);
    assert_eq!(v["success_rate"], 1.0);
}

#[tokio::test]
async fn head_204_custom_failures_https_and_nested_routes() {
    let observer = Observer::new();
    let nested = Router::new().route("/items/{id}", get(|| async { "item" }));
    let app = Router::new()
        .route("/empty", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/limited",
            get(|| async { (StatusCode::TOO_MANY_REQUESTS, "slow down") }),
        )
        .nest("/shop", nested)
        .layer(
            observer
                .layer()
                .failure_if(|s| s.is_server_error() || s == 429)
                .assume_https(),
        );
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("http://{addr}/empty"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        client
            .head(format!("http://{addr}/shop/items/3"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("http://{addr}/limited"))
            .send()
            .await
            .unwrap()
            .status(),
        429
    );
    eventually(|| observer.stats().totals.requests == 3).await;

    let text = observer.render_metrics().unwrap();
    assert_eq!(
        sample(
            &text,
            DURATION_COUNT,
            &[(HTTP_ROUTE, "/empty"), (HTTP_RESPONSE_STATUS_CODE, "204")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            DURATION_COUNT,
            &[
                (HTTP_ROUTE, "/shop/items/{id}"),
                (HTTP_REQUEST_METHOD, "HEAD"),
                (URL_SCHEME, "https")
            ]
        ),
        Some(1.0),
        "nested routers report the full template: {text}"
    );
    assert_eq!(
        sample(
            &text,
            DURATION_COUNT,
            &[(HTTP_ROUTE, "/limited"), (ERROR_TYPE, "429")]
        ),
        Some(1.0)
    );
    assert_eq!(observer.stats().totals.errors, 1);
    assert_eq!(
        observer.stats().totals.aborted,
        0,
        "empty bodies are complete, not aborted"
    );
    assert_eq!(sample(&text, HTTP_SERVER_ACTIVE_REQUESTS, &[]), Some(0.0));
}

#[tokio::test]
async fn streamed_request_body_is_counted_as_read() {
    let observer = Observer::new();
    let addr = serve(app(&observer)).await;
    let chunks = futures_util::stream::iter(
        (0..10).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'z'; 700]))),
    );
    let res = reqwest::Client::new()
        .post(format!("http://{addr}/echo"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(res.bytes().await.unwrap().len(), 7000);
    eventually(|| observer.stats().totals.requests == 1).await;
    let text = observer.render_metrics().unwrap();
    let echo = [(HTTP_ROUTE, "/echo")];
    assert_eq!(
        sample(&text, "http_server_request_body_size_bytes_sum", &echo),
        Some(7000.0),
        "chunked, no Content-Length"
    );
    assert_eq!(
        sample(&text, "http_server_response_body_size_bytes_sum", &echo),
        Some(7000.0)
    );
}

#[tokio::test]
async fn a_failing_response_body_is_a_body_error() {
    let observer = Observer::new();
    let app = Router::new()
        .route(
            "/broken",
            get(|| async {
                let chunks = futures_util::stream::iter([
                    Ok(Bytes::from_static(b"partial")),
                    Err(std::io::Error::other("disk gone")),
                ]);
                Body::from_stream(chunks)
            }),
        )
        .layer(observer.layer());
    let addr = serve(app).await;
    // The client sees a truncated response; whatever it reports, the server must classify it.
    let _ = reqwest::get(format!("http://{addr}/broken"))
        .await
        .map(|r| r.bytes());
    eventually(|| observer.stats().totals.requests == 1).await;
    let text = observer.render_metrics().unwrap();
    assert_eq!(
        sample(
            &text,
            DURATION_COUNT,
            &[
                (HTTP_ROUTE, "/broken"),
                (ERROR_TYPE, "body_error"),
                (HTTP_RESPONSE_STATUS_CODE, "200")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(observer.stats().totals.errors, 1);
}

#[tokio::test]
async fn stats_count_the_requests_in_flight() {
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let wait = gate.clone();
    let observer = Observer::new();
    let app = Router::new()
        .route(
            "/slow",
            get(move || {
                let wait = wait.clone();
                async move {
                    wait.notified().await;
                    "done"
                }
            }),
        )
        .layer(observer.layer());
    let addr = serve(app).await;
    assert_eq!(observer.stats().in_flight, Some(0));
    let pending = tokio::spawn(reqwest::get(format!("http://{addr}/slow")));
    eventually(|| observer.stats().in_flight == Some(1)).await;
    gate.notify_one();
    pending.await.unwrap().unwrap().text().await.unwrap();
    eventually(|| observer.stats().in_flight == Some(0)).await;
}
