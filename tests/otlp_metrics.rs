//! OTLP metric export against a local OTLP/HTTP receiver that decodes every request with the
//! official protobuf definitions (`opentelemetry-proto`): the OpenTelemetry names, units and
//! attributes of the HTTP server metrics, the resource, exponential histograms whose buckets
//! add up to their count at the configured scale, cumulative and delta temporality (the
//! deltas of two exports are what happened between them), and an export that fails while the
//! collector is down, is counted, and succeeds once it is up.
#![cfg(all(feature = "otlp", feature = "axum"))]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::{get, post};
use axum::Router;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Metric,
};
use prost::Message;
use support::serve;
use tower_observe::otlp::{OtlpMetrics, OtlpMetricsHandle, Temporality};
use tower_observe::Observer;

type Received = Arc<Mutex<Vec<ExportMetricsServiceRequest>>>;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An OTLP/HTTP receiver on `port`, keeping every request it decodes.
async fn receiver(port: u16, received: Received) {
    let app = Router::new().route(
        "/v1/metrics",
        post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let received = received.clone();
            async move {
                assert_eq!(
                    headers.get("content-type").unwrap(),
                    "application/x-protobuf"
                );
                assert_eq!(headers.get("x-api-key").unwrap(), "test-key");
                let request =
                    ExportMetricsServiceRequest::decode(body).expect("valid OTLP protobuf");
                received.lock().unwrap().push(request);
                ExportMetricsServiceResponse::default().encode_to_vec()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

/// The observed app: `/items/{id}` answers at once.
async fn app(observer: &Observer) -> SocketAddr {
    let app = Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .layer(observer.layer());
    serve(app).await
}

async fn send(addr: SocketAddr, n: usize) {
    let client = reqwest::Client::new();
    for i in 0..n {
        let res = client
            .get(format!("http://{addr}/items/{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap();
    }
}

fn metric<'a>(request: &'a ExportMetricsServiceRequest, name: &str) -> Option<&'a Metric> {
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == name)
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn string(value: Option<&Value>) -> Option<&str> {
    match value {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// Requests of `/items/{id}` in the duration histogram of `request` (all its series).
fn duration_count(request: &ExportMetricsServiceRequest) -> u64 {
    match metric(request, "http.server.request.duration").and_then(|m| m.data.as_ref()) {
        Some(Data::ExponentialHistogram(h)) => h
            .data_points
            .iter()
            .filter(|p| string(attribute(&p.attributes, "http.route")) == Some("/items/{id}"))
            .map(|p| p.count)
            .sum(),
        _ => 0,
    }
}

fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn exporter(port: u16) -> OtlpMetrics {
    OtlpMetrics::new(format!("http://127.0.0.1:{port}"), "otlp-metrics-test")
        .service_version("9.9.9")
        .header("x-api-key", "test-key")
        .timeout(Duration::from_millis(500))
}

#[test]
fn cumulative_export_carries_opentelemetry_names_attributes_and_exponential_buckets() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = free_port();
    let received: Received = Arc::default();
    rt.block_on(receiver(port, received.clone()));
    let observer = Observer::builder()
        .native_histogram_schema(2)
        .build()
        .unwrap();
    let addr = rt.block_on(app(&observer));
    rt.block_on(send(addr, 25));
    let handle = observer
        .export_metrics(exporter(port).export_interval(Duration::from_millis(100)))
        .unwrap();
    wait("an export with the 25 requests", || {
        received
            .lock()
            .unwrap()
            .iter()
            .any(|r| duration_count(r) == 25)
    });
    let request = received
        .lock()
        .unwrap()
        .iter()
        .find(|r| duration_count(r) == 25)
        .cloned()
        .unwrap();

    // The resource: service name and version, a per-process instance ID.
    let resource = &request.resource_metrics[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes;
    assert_eq!(
        string(attribute(resource, "service.name")),
        Some("otlp-metrics-test")
    );
    assert_eq!(
        string(attribute(resource, "service.version")),
        Some("9.9.9")
    );
    assert_eq!(
        string(attribute(resource, "service.instance.id")).map(str::len),
        Some(36)
    );
    let scope = request.resource_metrics[0].scope_metrics[0]
        .scope
        .as_ref()
        .unwrap();
    assert_eq!(scope.name, "tower-observe");

    // The duration: an exponential histogram under its OpenTelemetry name, in seconds,
    // cumulative, at the configured scale, whose buckets add up to its count.
    let duration = metric(&request, "http.server.request.duration").unwrap();
    assert_eq!(duration.unit, "s");
    let Some(Data::ExponentialHistogram(h)) = &duration.data else {
        panic!("{duration:?}");
    };
    assert_eq!(
        h.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let point = h
        .data_points
        .iter()
        .find(|p| string(attribute(&p.attributes, "http.route")) == Some("/items/{id}"))
        .unwrap();
    assert_eq!(point.count, 25);
    assert_eq!(point.scale, 2);
    let positive = point.positive.as_ref().unwrap();
    let buckets: u64 = positive.bucket_counts.iter().sum();
    let negative: u64 = point
        .negative
        .as_ref()
        .map_or(0, |b| b.bucket_counts.iter().sum());
    assert_eq!(buckets + negative + point.zero_count, point.count);
    let sum = point.sum.unwrap();
    assert!(sum > 0.0);
    // Every observation lies in its bucket: the sum is between the lower and the upper
    // bounds of the buckets, weighted by their counts (base 2^(2^-2) at scale 2).
    let base = 2f64.powf(2f64.powi(-point.scale));
    let (mut low, mut high) = (0.0, 0.0);
    for (i, n) in positive.bucket_counts.iter().enumerate() {
        let index = positive.offset + i as i32;
        low += *n as f64 * base.powi(index);
        high += *n as f64 * base.powi(index + 1);
    }
    assert!(low <= sum && sum <= high, "{low} <= {sum} <= {high}");
    assert!(point.start_time_unix_nano > 0 && point.start_time_unix_nano < point.time_unix_nano);
    // Attributes under their OpenTelemetry keys, the status code an integer.
    assert_eq!(
        string(attribute(&point.attributes, "http.request.method")),
        Some("GET")
    );
    assert_eq!(
        string(attribute(&point.attributes, "url.scheme")),
        Some("http")
    );
    assert_eq!(
        attribute(&point.attributes, "http.response.status_code"),
        Some(&Value::IntValue(200))
    );
    assert!(point
        .attributes
        .iter()
        .all(|kv| !kv.key.contains('_') || kv.key.contains('.')));

    // Requests in flight: an up-down counter (a non-monotonic sum), not a gauge.
    let active = metric(&request, "http.server.active_requests").unwrap();
    assert_eq!(active.unit, "{request}");
    let Some(Data::Sum(active)) = &active.data else {
        panic!("{active:?}");
    };
    assert!(!active.is_monotonic);

    // A histogram recorded in classic buckets only: explicit bounds, counts adding up.
    let size = metric(&request, "http.server.response.body.size").unwrap();
    assert_eq!(size.unit, "By");
    let Some(Data::Histogram(size)) = &size.data else {
        panic!("{size:?}");
    };
    let point = &size.data_points[0];
    assert_eq!(point.bucket_counts.len(), point.explicit_bounds.len() + 1);
    assert_eq!(point.bucket_counts.iter().sum::<u64>(), point.count);

    // The crate's own counters: dotted names, monotonic sums.
    wait("an export counting the earlier ones", || {
        received.lock().unwrap().iter().any(|r| {
            metric(r, "tower_observe.otlp.metrics.exports").is_some_and(|m| {
                matches!(&m.data, Some(Data::Sum(s)) if s.is_monotonic && !s.data_points.is_empty())
            })
        })
    });
    // (The receiver keeps a request before the exporter reads its answer and counts it.)
    wait("two exports counted", || handle.exported() >= 2);
    assert_eq!(handle.failed(), 0);
    let stats = serde_json::to_value(observer.stats()).unwrap();
    assert_eq!(stats["otlp_metrics"]["temporality"], "cumulative");
    assert_eq!(
        stats["otlp_metrics"]["endpoint"],
        format!("http://127.0.0.1:{port}/v1/metrics")
    );
    assert!(!format!("{handle:?} {stats}").contains("test-key"));
}

fn counter_value(request: &ExportMetricsServiceRequest, name: &str, outcome: &str) -> Option<i64> {
    match metric(request, name)?.data.as_ref()? {
        Data::Sum(sum) => sum
            .data_points
            .iter()
            .find(|p| string(attribute(&p.attributes, "outcome")) == Some(outcome))
            .and_then(|p| match p.value {
                Some(number_data_point::Value::AsInt(v)) => Some(v),
                _ => None,
            }),
        _ => None,
    }
}

#[test]
fn delta_exports_carry_what_happened_between_them() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = free_port();
    let received: Received = Arc::default();
    rt.block_on(receiver(port, received.clone()));
    let observer = Observer::new();
    let addr = rt.block_on(app(&observer));
    // The interval is long: exports happen at start and on `flush`.
    let handle: OtlpMetricsHandle = observer
        .export_metrics(
            exporter(port)
                .export_interval(Duration::from_secs(3600))
                .temporality(Temporality::Delta),
        )
        .unwrap();
    wait("the first export", || handle.exported() == 1);

    rt.block_on(send(addr, 5));
    assert!(handle.flush());
    rt.block_on(send(addr, 7));
    assert!(handle.flush());

    let requests = received.lock().unwrap().clone();
    assert_eq!(requests.len(), 3);
    assert_eq!(duration_count(&requests[1]), 5);
    assert_eq!(duration_count(&requests[2]), 7);
    let h = |r: &ExportMetricsServiceRequest| match metric(r, "http.server.request.duration")
        .and_then(|m| m.data.clone())
    {
        Some(Data::ExponentialHistogram(h)) => h,
        other => panic!("{other:?}"),
    };
    let (second, third) = (h(&requests[1]), h(&requests[2]));
    assert_eq!(
        third.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
    // Each delta starts where the previous export read the registry.
    let p2 = &second.data_points[0];
    let p3 = &third.data_points[0];
    assert_eq!(p3.start_time_unix_nano, p2.time_unix_nano);
    for p in [p2, p3] {
        let buckets: u64 = p
            .positive
            .as_ref()
            .map_or(0, |b| b.bucket_counts.iter().sum());
        assert_eq!(buckets + p.zero_count, p.count);
    }
    // The export counter: one success between two exports.
    for r in &requests[1..] {
        assert_eq!(
            counter_value(r, "tower_observe.otlp.metrics.exports", "success"),
            Some(1)
        );
    }
}

#[test]
fn a_collector_down_then_up_fails_counted_then_succeeds() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = free_port();
    let observer = Observer::new();
    let addr = rt.block_on(app(&observer));
    let handle = observer
        .export_metrics(exporter(port).export_interval(Duration::from_millis(100)))
        .unwrap();
    // Down: requests are served, failures are counted, nothing waits on the collector.
    let started = Instant::now();
    rt.block_on(send(addr, 50));
    assert!(started.elapsed() < Duration::from_secs(10));
    wait("failed exports", || handle.failed() >= 2);
    assert_eq!(handle.exported(), 0);
    assert!(handle.last_error().is_some());
    let text = observer.render_metrics().unwrap();
    assert!(
        support::sample(
            &text,
            "tower_observe_otlp_metrics_exports_total",
            &[("outcome", "failure")]
        )
        .is_some_and(|n| n >= 2.0),
        "{text}"
    );
    let stats = serde_json::to_value(observer.stats()).unwrap();
    assert!(stats["otlp_metrics"]["failed"].as_u64().unwrap() >= 2);
    assert!(stats["otlp_metrics"]["last_error"].is_string());

    // Up: the next export succeeds and carries everything recorded while it was down.
    let received: Received = Arc::default();
    rt.block_on(receiver(port, received.clone()));
    wait("an export after the collector came up", || {
        handle.exported() >= 1
    });
    wait("the requests served meanwhile", || {
        received
            .lock()
            .unwrap()
            .iter()
            .any(|r| duration_count(r) == 50)
    });
    assert!(handle.last_error().is_none());
    let text = observer.render_metrics().unwrap();
    assert!(
        support::sample(
            &text,
            "tower_observe_otlp_metrics_exports_total",
            &[("outcome", "success")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
}

#[test]
fn a_slow_collector_skips_ticks_instead_of_piling_up() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = free_port();
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (now, max) = (in_flight, most.clone());
    let app = Router::new().route(
        "/v1/metrics",
        post(move |_body: Bytes| {
            let (now, max) = (now.clone(), max.clone());
            async move {
                let n = now.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                max.fetch_max(n, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                ExportMetricsServiceResponse::default().encode_to_vec()
            }
        }),
    );
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    });
    let observer = Observer::new();
    let handle = observer
        .export_metrics(
            OtlpMetrics::new(format!("http://127.0.0.1:{port}"), "slow")
                .export_interval(Duration::from_millis(50))
                .timeout(Duration::from_secs(5)),
        )
        .unwrap();
    wait("skipped ticks", || {
        handle.skipped() >= 4 && handle.exported() >= 2
    });
    assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(handle.failed(), 0);
}
