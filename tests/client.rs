//! Client side end to end: a real local upstream with failure injection, reached through the
//! client instrumentation (tower layer and reqwest-middleware), with retries, failover,
//! caches and pools.
#![cfg(all(
    feature = "axum",
    feature = "reqwest-middleware",
    feature = "tower-retry",
    feature = "cache",
    feature = "pool"
))]

mod support;

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use http_body_util::Full;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use reqwest_middleware::ClientBuilder;
use reqwest_retry::{policies::ExponentialBackoff, RetryTransientMiddleware};
use serde_json::Value;
use support::{sample, series_count, serve};
use tower::retry::{Policy, RetryLayer};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_observe::cache::{CacheResultsLayer, CacheStatus};
use tower_observe::trace::TraceOptions;
use tower_observe::{HttpClientRecord, HttpServerRecord, Observer, RecordSink};

const CLIENT_COUNT: &str = "http_client_request_duration_seconds_count";

/// An attempt's `x-request-id` and `traceparent`.
type Seen = (Option<String>, Option<String>);

#[derive(Clone, Default)]
struct Upstream {
    /// `/flaky/{key}/{n}`: how many times each key has been called.
    calls: Arc<Mutex<HashMap<String, u32>>>,
    hits: Arc<AtomicU32>,
    /// `/record/{key}/{n}`: the `x-request-id` and `traceparent` of every attempt.
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A local upstream: `/flaky/{key}/{n}` answers 503 `n` times then 200, `/down` always 503,
/// `/slow` takes 2 s, `/echo` returns the propagation headers it got, `/cache/{form}`
/// answers with each form of cache signal.
async fn upstream() -> (SocketAddr, Upstream) {
    let state = Upstream::default();
    let app = Router::new()
        .route(
            "/flaky/{key}/{n}",
            get(
                |State(s): State<Upstream>, Path((key, n)): Path<(String, u32)>| async move {
                    let mut calls = s.calls.lock().unwrap();
                    let seen = calls.entry(key).or_default();
                    *seen += 1;
                    if *seen <= n {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                },
            ),
        )
        .route(
            "/record/{key}/{n}",
            get(
                |State(s): State<Upstream>,
                 Path((key, n)): Path<(String, u32)>,
                 headers: HeaderMap| async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    s.seen
                        .lock()
                        .unwrap()
                        .push((header("x-request-id"), header("traceparent")));
                    let mut calls = s.calls.lock().unwrap();
                    let seen = calls.entry(key).or_default();
                    *seen += 1;
                    if *seen <= n {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                },
            ),
        )
        .route("/down", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route(
            "/ok",
            get(|State(s): State<Upstream>| async move {
                s.hits.fetch_add(1, Ordering::Relaxed);
                "fine"
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "late"
            }),
        )
        .route(
            "/echo",
            get(|headers: HeaderMap| async move {
                let get = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                Json(serde_json::json!({
                    "traceparent": get("traceparent"),
                    "x-request-id": get("x-request-id"),
                    "baggage": get("baggage"),
                }))
            }),
        )
        .route("/cache/{form}", get(cache_response))
        .with_state(state.clone());
    (serve(app).await, state)
}

async fn cache_response(Path(form): Path<String>) -> axum::response::Response {
    match form.as_str() {
        "cache-status-hit" => [("cache-status", "Edge; hit")].into_response(),
        "cache-status-miss" => [("cache-status", "Edge; fwd=uri-miss; stored")].into_response(),
        "cache-status-stale" => [("cache-status", "Edge; fwd=stale")].into_response(),
        "x-cache-hit" => [("x-cache", "HIT from edge")].into_response(),
        "x-cache-miss" => [("x-cache", "MISS")].into_response(),
        "age-hit" => [("age", "30")].into_response(),
        "extension-bypass" => (Extension(CacheStatus::Bypass), "x").into_response(),
        _ => "no signal".into_response(),
    }
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

fn metrics(observer: &Observer) -> String {
    observer.render_metrics().unwrap()
}

fn fast_backoff(retries: u32) -> ExponentialBackoff {
    ExponentialBackoff::builder()
        .retry_bounds(Duration::from_millis(1), Duration::from_millis(2))
        .build_with_max_retries(retries)
}

#[tokio::test]
async fn reqwest_retry_counts_attempts_retries_and_exhaustion() {
    let (addr, _) = upstream().await;
    let observer = Observer::new();
    let tracker = observer.retries("upstream");
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(tracker.reqwest_middleware())
        .with(RetryTransientMiddleware::new_with_policy(fast_backoff(2)))
        .with(observer.client_layer().target("upstream").middleware())
        .build();

    // 503 twice, then 200: two retries, three attempts, not exhausted.
    let res = client
        .get(format!("http://{addr}/flaky/a/2"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = metrics(&observer);
    let retries = [("target", "upstream"), ("reason", "503")];
    assert_eq!(sample(&text, "client_retries_total", &retries), Some(2.0));
    let target = [("target", "upstream")];
    assert_eq!(
        sample(&text, "client_request_attempts_sum", &target),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "client_request_attempts_count", &target),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "client_retry_exhausted_total", &target),
        Some(0.0)
    );
    let port = addr.port().to_string();
    let upstream_labels = |status: &'static str| {
        vec![
            ("server_address", "127.0.0.1".to_owned()),
            ("server_port", port.clone()),
            ("http_response_status_code", status.to_owned()),
        ]
    };
    let count = |text: &str, status| {
        let labels = upstream_labels(status);
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        sample(text, CLIENT_COUNT, &labels)
    };
    assert_eq!(count(&text, "503"), Some(2.0));
    assert_eq!(count(&text, "200"), Some(1.0));
    assert!(text.contains(r#"error_type="503""#), "{text}");

    // Always 503 with two retries allowed: exhausted.
    let res = client
        .get(format!("http://{addr}/down"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let text = metrics(&observer);
    assert_eq!(sample(&text, "client_retries_total", &retries), Some(4.0));
    assert_eq!(
        sample(&text, "client_retry_exhausted_total", &target),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "client_request_attempts_sum", &target),
        Some(6.0)
    );

    let stats = observer.stats();
    let entry = &stats.retries["upstream"];
    assert_eq!(entry.logical_requests, 2);
    assert_eq!(entry.attempts, 6);
    assert_eq!(entry.retries, 4);
    assert_eq!(entry.retries_by_reason["503"], 4);
    assert_eq!(entry.exhausted, 1);
    let upstream = &stats.upstreams[&format!("127.0.0.1:{port}")];
    assert_eq!(upstream.requests, 6);
    assert_eq!(upstream.errors, 5);
}

/// Collects the resend count of every client call.
#[derive(Default)]
struct Resends(Mutex<Vec<(String, u32)>>);

impl RecordSink for Resends {
    fn record_http_server(&self, _: &HttpServerRecord<'_>) {}

    fn record_http_client(&self, record: &HttpClientRecord<'_>) {
        self.0
            .lock()
            .unwrap()
            .push((record.server_port.to_owned(), record.resend_count));
    }
}

/// Retries failures up to `left` times, switching to `backup` on the first retry.
#[derive(Clone)]
struct Failover {
    left: u32,
    backup: SocketAddr,
}

type Req = http::Request<Full<Bytes>>;

impl<Res, E> Policy<Req, http::Response<Res>, E> for Failover {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        req: &mut Req,
        result: &mut Result<http::Response<Res>, E>,
    ) -> Option<Ready<()>> {
        let failed = match result {
            Ok(res) => res.status().is_server_error(),
            Err(_) => true,
        };
        if !failed || self.left == 0 {
            return None;
        }
        self.left -= 1;
        *req.uri_mut() = format!("http://{}{}", self.backup, req.uri().path())
            .parse()
            .unwrap();
        Some(ready(()))
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        let mut clone = http::Request::new(req.body().clone());
        *clone.method_mut() = req.method().clone();
        *clone.uri_mut() = req.uri().clone();
        Some(clone)
    }
}

#[tokio::test]
async fn tower_retry_counts_failover_and_marks_resends() {
    let closed = closed_port().await;
    let (primary, _) = upstream().await;
    let (backup, backup_state) = upstream().await;
    let resends = Arc::new(Resends::default());
    let observer = Observer::builder().sink(resends.clone()).build().unwrap();
    let tracker = observer.retries("pool");
    let hyper = HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut client = ServiceBuilder::new()
        .layer(RetryLayer::new(
            tracker.policy(Failover { left: 2, backup }),
        ))
        .layer(observer.client_layer())
        .service(hyper);
    let get = |url: String| {
        let mut req = http::Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = url.parse().unwrap();
        req
    };

    // Connection refused, failover to the backup, which answers.
    let res = client
        .ready()
        .await
        .unwrap()
        .call(get(format!("http://{closed}/ok")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(backup_state.hits.load(Ordering::Relaxed), 1);
    // 503 from the primary, failover, 503 twice from the backup: exhausted after 3 attempts.
    let res = client
        .ready()
        .await
        .unwrap()
        .call(get(format!("http://{primary}/down")))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);

    let text = metrics(&observer);
    let backup_label = format!("127.0.0.1:{}", backup.port());
    for from in [closed, primary] {
        let from = format!("127.0.0.1:{}", from.port());
        let labels = [("target", "pool"), ("from", &*from), ("to", &*backup_label)];
        assert_eq!(
            sample(&text, "client_failovers_total", &labels),
            Some(1.0),
            "{text}"
        );
    }
    let reason = |r| {
        sample(
            &text,
            "client_retries_total",
            &[("target", "pool"), ("reason", r)],
        )
    };
    assert_eq!(reason("connection_refused"), Some(1.0));
    assert_eq!(reason("503"), Some(2.0));
    let stats = observer.stats();
    let entry = &stats.retries["pool"];
    assert_eq!(
        (entry.logical_requests, entry.attempts, entry.exhausted),
        (2, 5, 1)
    );
    assert_eq!(entry.failovers.len(), 2);
    // Every attempt reached the recording path with its resend count.
    let calls = resends.0.lock().unwrap().clone();
    let counts: Vec<u32> = calls.iter().map(|c| c.1).collect();
    assert_eq!(counts, vec![0, 1, 0, 1, 2], "{calls:?}");
    let refused = [
        ("server_port", &*closed.port().to_string()),
        ("error_type", "connection_refused"),
    ];
    assert_eq!(sample(&text, CLIENT_COUNT, &refused), Some(1.0), "{text}");
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_classified() {
    let (addr, _) = upstream().await;
    let closed = closed_port().await;
    let observer = Observer::new();
    let client = ClientBuilder::new(
        reqwest::Client::builder()
            .timeout(Duration::from_millis(100))
            .build()
            .unwrap(),
    )
    .with(observer.client_layer().middleware())
    .build();
    let err = client
        .get(format!("http://{addr}/slow"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let err = client
        .get(format!("http://{closed}/"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");

    // The tower form, over reqwest::Client itself.
    let mut tower_client = ServiceBuilder::new()
        .layer(observer.client_layer())
        .service(
            reqwest::Client::builder()
                .timeout(Duration::from_millis(100))
                .build()
                .unwrap(),
        );
    let req = reqwest::Request::new(
        http::Method::GET,
        format!("http://{addr}/slow").parse().unwrap(),
    );
    assert!(tower_client.ready().await.unwrap().call(req).await.is_err());

    let text = metrics(&observer);
    let port = addr.port().to_string();
    assert_eq!(
        sample(
            &text,
            CLIENT_COUNT,
            &[("server_port", &port), ("error_type", "timeout")]
        ),
        Some(2.0),
        "{text}"
    );
    let closed_port = closed.port().to_string();
    assert_eq!(
        sample(
            &text,
            CLIENT_COUNT,
            &[
                ("server_port", &closed_port),
                ("error_type", "connection_refused")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "http_client_active_requests", &[]), Some(0.0));
}

#[tokio::test]
async fn cancelled_calls_are_recorded_and_release_the_gauge() {
    let (addr, _) = upstream().await;
    let observer = Observer::new();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(observer.client_layer().middleware())
        .build();
    let call = client.get(format!("http://{addr}/slow")).send();
    assert!(tokio::time::timeout(Duration::from_millis(100), call)
        .await
        .is_err());
    let text = metrics(&observer);
    // Recorded once, and (OpenTelemetry HTTP conventions) a cancellation by the caller is not
    // an error: no `error_type`, no status; `/v1/stats` counts it as aborted.
    assert_eq!(sample(&text, CLIENT_COUNT, &[]), Some(1.0), "{text}");
    assert!(!text.contains("error_type="), "{text}");
    assert!(!text.contains("http_response_status_code="), "{text}");
    let stats = observer.stats();
    let upstream = stats.upstreams.values().next().unwrap();
    assert_eq!(
        (upstream.requests, upstream.aborted, upstream.errors),
        (1, 1, 0)
    );
    assert_eq!(sample(&text, "http_client_active_requests", &[]), Some(0.0));
}

#[tokio::test]
async fn propagation_headers_reach_the_upstream() {
    let (upstream_addr, _) = upstream().await;
    let observer = Observer::new();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(observer.client_layer().middleware())
        .build();
    let front = Router::new()
        .route(
            "/call",
            get(move || {
                let client = client.clone();
                async move {
                    let echo: Value = client
                        .get(format!("http://{upstream_addr}/echo"))
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    Json(echo)
                }
            }),
        )
        .layer(observer.layer().traces(TraceOptions::new()));
    let front_addr = serve(front).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = reqwest::Client::new()
        .get(format!("http://{front_addr}/call"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .header("x-request-id", "req-42")
        .header("baggage", "tenant=acme")
        .send()
        .await
        .unwrap();
    let echo: Value = res.json().await.unwrap();
    let traceparent = echo["traceparent"].as_str().unwrap();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts[1], trace_id, "same trace");
    assert_ne!(parts[2], "00f067aa0ba902b7", "parent is our client span");
    assert_eq!(parts[3], "01");
    assert_eq!(echo["x-request-id"], "req-42");
    assert_eq!(echo["baggage"], "tenant=acme");

    // Without a request being served, a call starts its own trace.
    let echo: Value = ClientBuilder::new(reqwest::Client::new())
        .with(observer.client_layer().middleware())
        .build()
        .get(format!("http://{upstream_addr}/echo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(echo["traceparent"].as_str().unwrap().starts_with("00-"));
    assert!(echo["x-request-id"].is_null());
    // And `propagate(false)` sends nothing.
    let echo: Value = ClientBuilder::new(reqwest::Client::new())
        .with(observer.client_layer().propagate(false).middleware())
        .build()
        .get(format!("http://{upstream_addr}/echo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(echo["traceparent"].is_null());
}

/// The README's quick start, without traces: the request ID and one trace still reach every
/// attempt of a retried upstream call.
#[tokio::test]
async fn without_traces_the_request_id_and_one_trace_reach_every_attempt() {
    let (upstream_addr, state) = upstream().await;
    let observer = Observer::new();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(RetryTransientMiddleware::new_with_policy(fast_backoff(3)))
        .with(observer.client_layer().middleware())
        .build();
    let front = Router::new()
        .route(
            "/call/{key}",
            get(move |Path(key): Path<String>| {
                let client = client.clone();
                async move {
                    let url = format!("http://{upstream_addr}/record/{key}/2");
                    client
                        .get(url)
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                        .to_string()
                }
            }),
        )
        .merge(observer.router())
        .layer(observer.layer());
    let front_addr = serve(front).await;

    let trace_of =
        |tp: &Option<String>| tp.as_deref().unwrap().split('-').nth(1).unwrap().to_owned();
    let parent_of =
        |tp: &Option<String>| tp.as_deref().unwrap().split('-').nth(2).unwrap().to_owned();
    // A caller with a request ID and no trace.
    let status = reqwest::Client::new()
        .get(format!("http://{front_addr}/call/a"))
        .header("x-request-id", "req-7")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(status, "200");
    let seen: Vec<_> = std::mem::take(&mut *state.seen.lock().unwrap());
    assert_eq!(seen.len(), 3, "two 503s, then 200");
    assert!(
        seen.iter().all(|(id, _)| id.as_deref() == Some("req-7")),
        "{seen:?}"
    );
    let trace = trace_of(&seen[0].1);
    assert!(
        seen.iter().all(|(_, tp)| trace_of(tp) == trace),
        "one trace: {seen:?}"
    );
    let parents: std::collections::HashSet<_> = seen.iter().map(|(_, tp)| parent_of(tp)).collect();
    assert_eq!(parents.len(), 3, "each attempt is its own client span");

    // A caller with a trace: the attempts continue it.
    let caller = "4bf92f3577b34da6a3ce929d0e0e4736";
    reqwest::Client::new()
        .get(format!("http://{front_addr}/call/b"))
        .header("traceparent", format!("00-{caller}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    let seen: Vec<_> = std::mem::take(&mut *state.seen.lock().unwrap());
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|(_, tp)| trace_of(tp) == caller),
        "{seen:?}"
    );
    // A generated ID reaches the upstream too.
    assert!(seen
        .iter()
        .all(|(id, _)| id.as_ref().is_some_and(|id| id.len() == 36)));

    // GETs without a body are bodies of 0 bytes, not of unknown size; the response's HTTP
    // version labels the calls.
    let text = metrics(&observer);
    assert_eq!(
        sample(&text, "http_client_request_body_size_bytes_count", &[]),
        Some(6.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "http_client_request_body_size_bytes_sum", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, CLIENT_COUNT, &[("network_protocol_version", "1.1")]),
        Some(6.0)
    );

    // Outside any request, a retried call is one trace too.
    ClientBuilder::new(reqwest::Client::new())
        .with(RetryTransientMiddleware::new_with_policy(fast_backoff(3)))
        .with(observer.client_layer().middleware())
        .build()
        .get(format!("http://{upstream_addr}/record/c/2"))
        .send()
        .await
        .unwrap();
    let seen: Vec<_> = std::mem::take(&mut *state.seen.lock().unwrap());
    assert_eq!(seen.len(), 3);
    let trace = trace_of(&seen[0].1);
    assert!(seen.iter().all(|(_, tp)| trace_of(tp) == trace), "{seen:?}");
}

/// Past the cardinality limit, a successful call stays a success and a failed one a failure.
#[tokio::test]
async fn client_overflow_keeps_status_and_error_type() {
    let observer = Observer::builder()
        .max_label_sets_per_metric(2)
        .build()
        .unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(observer.client_layer().middleware())
        .build();
    // Ten upstreams on ten ports: two fill the table, the rest overflow.
    let mut upstreams = Vec::new();
    for _ in 0..10 {
        upstreams.push(upstream().await.0);
    }
    for addr in &upstreams[..2] {
        client
            .get(format!("http://{addr}/ok"))
            .send()
            .await
            .unwrap();
    }
    for addr in &upstreams[2..7] {
        client
            .get(format!("http://{addr}/ok"))
            .send()
            .await
            .unwrap();
    }
    for addr in &upstreams[7..] {
        client
            .get(format!("http://{addr}/down"))
            .send()
            .await
            .unwrap();
    }
    let text = metrics(&observer);
    let overflowed = |labels: &[(&str, &str)]| {
        let mut all = vec![("otel_metric_overflow", "true")];
        all.extend_from_slice(labels);
        sample(&text, CLIENT_COUNT, &all)
    };
    assert_eq!(
        overflowed(&[("http_response_status_code", "200")]),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        overflowed(&[("http_response_status_code", "503"), ("error_type", "503")]),
        Some(3.0),
        "{text}"
    );
    for line in text.lines().filter(|l| l.contains("otel_metric_overflow")) {
        assert!(line.contains("server_address=\"_OTHER\""), "{line}");
        assert!(
            !line.contains("server_port="),
            "a port is a number or absent: {line}"
        );
        if line.contains("status_code=\"200\"") {
            assert!(!line.contains("error_type"), "{line}");
        }
    }
    assert_eq!(
        sample(
            &text,
            "tower_observe_cardinality_overflow_total",
            &[("metric", "http_client_request_duration_seconds")]
        ),
        Some(8.0),
        "every recording counted"
    );
}

#[tokio::test]
async fn cache_results_from_headers_extension_and_api() {
    let (addr, _) = upstream().await;
    let observer = Observer::new();
    let edge = observer.cache("edge");
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(observer.client_layer().cache(edge.clone()).middleware())
        .build();
    for form in [
        "cache-status-hit",
        "cache-status-miss",
        "cache-status-stale",
        "x-cache-hit",
        "x-cache-miss",
        "age-hit",
        "none",
    ] {
        client
            .get(format!("http://{addr}/cache/{form}"))
            .send()
            .await
            .unwrap();
    }
    // Server side: the layer reads the extension set by the handler.
    let server_cache = observer.cache("responses");
    let app = Router::new()
        .route("/cache/{form}", get(cache_response))
        .layer(CacheResultsLayer::new(server_cache));
    let app_addr = serve(app).await;
    reqwest::get(format!("http://{app_addr}/cache/extension-bypass"))
        .await
        .unwrap();
    reqwest::get(format!("http://{app_addr}/cache/x-cache-hit"))
        .await
        .unwrap();
    // In-app cache.
    let models = observer.cache("models");
    models.hit();
    models.hit();
    models.miss();

    let text = metrics(&observer);
    let count = |cache, result| {
        sample(
            &text,
            "cache_requests_total",
            &[("cache", cache), ("result", result)],
        )
    };
    assert_eq!(count("edge", "hit"), Some(3.0), "{text}");
    assert_eq!(count("edge", "miss"), Some(2.0));
    assert_eq!(count("edge", "stale"), Some(1.0));
    assert_eq!(count("edge", "bypass"), Some(0.0));
    assert_eq!(count("responses", "bypass"), Some(1.0));
    assert_eq!(count("responses", "hit"), Some(1.0));
    let stats = observer.stats();
    assert_eq!(stats.caches["edge"].hit_ratio, Some(0.5));
    assert_eq!(stats.caches["models"].hit_ratio, Some(2.0 / 3.0));
    assert_eq!(stats.caches["responses"].hit_ratio, Some(1.0));
}

#[test]
fn pool_health_follows_reported_state() {
    let observer = Observer::new();
    let pool = observer.backend_pool("proxies", "round_robin");
    let gauge = |state| {
        let text = metrics(&observer);
        (
            sample(
                &text,
                "backend_pool_members",
                &[
                    ("pool", "proxies"),
                    ("strategy", "round_robin"),
                    ("state", state),
                ],
            ),
            sample(&text, "backend_pool_health_ratio", &[("pool", "proxies")]),
        )
    };
    for b in ["p1", "p2", "p3", "p4"] {
        pool.set_healthy(b, true);
    }
    assert_eq!(gauge("healthy"), (Some(4.0), Some(1.0)));
    pool.health_check("p2", Duration::from_millis(4), false);
    assert_eq!(gauge("unhealthy"), (Some(1.0), Some(0.75)));
    assert_eq!(pool.health_percent(), Some(75.0));
    pool.set_healthy("p3", false);
    assert_eq!(gauge("healthy"), (Some(2.0), Some(0.5)));
    pool.health_check("p2", Duration::from_millis(2), true);
    pool.remove("p3");
    assert_eq!(gauge("healthy"), (Some(3.0), Some(1.0)));
    let stats = observer.stats();
    let entry = &stats.pools["proxies"];
    assert_eq!(entry.health_percent, Some(100.0));
    assert_eq!(entry.strategy, "round_robin");
    assert_eq!(entry.backends["p2"].checks, 2);
    assert_eq!(entry.backends["p2"].failed_checks, 1);
    assert_eq!(entry.backends["p2"].last_check_ms, Some(2.0));
    let text = metrics(&observer);
    assert_eq!(
        sample(
            &text,
            "backend_health_check_duration_seconds_count",
            &[("pool", "proxies"), ("result", "failed")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn labels_from_user_input_stay_bounded() {
    let observer = Observer::builder()
        .max_label_sets_per_metric(5)
        .build()
        .unwrap();
    let client = ClientBuilder::new(
        reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap(),
    )
    .with(observer.client_layer().middleware())
    .build();
    // Twenty hosts (127.0.0.0/8 is all loopback), nothing listening: each is refused.
    let port = closed_port().await.port();
    for i in 2..22 {
        let _ = client
            .get(format!("http://127.0.0.{i}:{port}/"))
            .send()
            .await;
    }
    // Cache names and pool backends taken from requests.
    for i in 0..1000 {
        observer.cache(&format!("model-{i}")).hit();
    }
    let pool = observer.backend_pool("models", "random");
    for i in 0..(tower_observe::pool::MAX_BACKENDS_PER_POOL + 50) {
        pool.set_healthy(&format!("backend-{i}"), true);
    }
    let text = metrics(&observer);
    assert!(series_count(&text, CLIENT_COUNT) <= 6, "{text}");
    assert!(series_count(&text, "http_client_active_requests") <= 6);
    assert!(series_count(&text, "cache_requests_total") <= 4 * 257);
    let overflow = |metric| {
        sample(
            &text,
            "tower_observe_cardinality_overflow_total",
            &[("metric", metric)],
        )
    };
    assert!(overflow("http_client_active_requests").unwrap() >= 15.0);
    assert!(overflow("cache_requests_total").unwrap() >= 700.0);
    assert_eq!(overflow("backend_pool_members"), Some(50.0));
    let stats = observer.stats();
    assert_eq!(stats.pools["models"].backends.len(), 1024);
    assert!(stats.upstreams.len() <= 6);
    assert_eq!(
        stats.upstreams.values().map(|e| e.requests).sum::<u64>(),
        20
    );
}

#[tokio::test]
async fn constant_labels_separate_clients_for_comparison() {
    let (addr, _) = upstream().await;
    let observer = Observer::new();
    let client = |strategy: &str| {
        ClientBuilder::new(reqwest::Client::new())
            .with(
                observer
                    .client_layer()
                    .label("strategy", strategy)
                    .unwrap()
                    .middleware(),
            )
            .build()
    };
    let (rr, ll) = (client("round_robin"), client("least_latency"));
    for _ in 0..3 {
        rr.get(format!("http://{addr}/ok")).send().await.unwrap();
    }
    ll.get(format!("http://{addr}/ok")).send().await.unwrap();
    let text = metrics(&observer);
    let count = |s| sample(&text, CLIENT_COUNT, &[("strategy", s)]);
    assert_eq!(
        (count("round_robin"), count("least_latency")),
        (Some(3.0), Some(1.0)),
        "{text}"
    );
    for strategy in ["round_robin", "least_latency"] {
        let labels = [
            ("http_request_method", "GET"),
            ("server_address", "127.0.0.1"),
            ("strategy", strategy),
        ];
        assert_eq!(
            sample(&text, "http_client_active_requests", &labels),
            Some(0.0),
            "{text}"
        );
    }
    assert!(observer.client_layer().label("error_type", "x").is_err());
    assert!(observer.client_layer().label("bad-name", "x").is_err());
}
