//! OTLP export against a local receiver that decodes what it gets with the official protobuf
//! definitions: requests are unaffected while the collector is down, and export resumes when
//! it comes up. Its own test binary, because it installs a global subscriber.
#![cfg(all(feature = "otlp", feature = "axum"))]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::{get, post};
use axum::Router;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use support::serve;
use tower_observe::otlp::OtlpTraces;
use tower_observe::trace::TraceOptions;
use tower_observe::Observer;
use tracing_subscriber::layer::SubscriberExt;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `(span name, trace id, service.name)` of every span received.
type Received = Arc<Mutex<Vec<(String, String, String)>>>;

async fn receiver(port: u16, received: Received) {
    let app = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let received = received.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("valid OTLP protobuf");
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| kv.value.as_ref())
                        .map(|v| format!("{:?}", v.value))
                        .unwrap_or_default();
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            received.lock().unwrap().push((
                                span.name,
                                hex(&span.trace_id),
                                service.clone(),
                            ));
                        }
                    }
                }
                ExportTraceServiceResponse::default().encode_to_vec()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

#[test]
fn export_survives_a_collector_outage_and_resumes() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Built outside any async runtime: the exporter's blocking HTTP client must not be
    // created inside one.
    let (provider, stats) = OtlpTraces::new(format!("http://127.0.0.1:{port}"), "otlp-test")
        .export_interval(Duration::from_millis(100))
        .timeout(Duration::from_millis(500))
        .max_queue_size(256)
        .build()
        .unwrap();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("otlp-test"))),
    )
    .unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let observer = Observer::new();
        let app = Router::new()
            .route("/items/{id}", get(|| async { "item" }))
            .layer(observer.layer().traces(TraceOptions::new()));
        let addr = serve(app).await;
        let client = reqwest::Client::new();

        // Collector down: requests are served at full speed, failed exports are counted.
        let started = Instant::now();
        for i in 0..200 {
            let res = client
                .get(format!("http://{addr}/items/{i}"))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "requests waited on the exporter"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while stats.failed() == 0 {
            assert!(Instant::now() < deadline, "no failed export was counted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(stats.exported(), 0);

        // Collector up: export resumes, and what arrives decodes with the official schema.
        let received: Received = Arc::default();
        receiver(port, received.clone()).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            client
                .get(format!("http://{addr}/items/1"))
                .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
                .send()
                .await
                .unwrap();
            let found = received
                .lock()
                .unwrap()
                .iter()
                .any(|(name, trace, service)| {
                    name == "GET /items/{id}" && trace == TRACE_ID && service.contains("otlp-test")
                });
            if found {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the collector never received our span"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Counted once the collector has answered, which can be just after it recorded.
        let deadline = Instant::now() + Duration::from_secs(10);
        while stats.exported() == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(stats.exported() > 0);
    });
    drop(rt);
    let _ = provider.shutdown();
}
