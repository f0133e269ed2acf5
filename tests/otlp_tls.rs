//! OTLP over `https://` to a local receiver whose certificate is issued by a private root CA
//! generated here: spans and log records arrive (decoded with the official protobuf
//! definitions), the server span with the caller's parent, the log records with the trace ID
//! of the request they were logged in, redacted values nowhere in the bytes sent; an exporter
//! that does not trust the private root exports nothing. Its own test binary, because it
//! installs a global subscriber.
#![cfg(all(feature = "otlp", feature = "axum"))]

#[path = "support/pki.rs"]
mod pki;
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as ProtoValue;
use pki::private_pki;
use prost::Message;
use support::serve;
use tokio_rustls::rustls;
use tower_observe::opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use tower_observe::otlp::{OtlpLogLayer, OtlpLogs, OtlpTraces};
use tower_observe::trace::TraceOptions;
use tower_observe::Observer;
use tracing_subscriber::layer::SubscriberExt;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the receiver got: the raw bodies, the traces and the logs decoded.
#[derive(Default)]
struct Received {
    raw: Vec<u8>,
    traces: Vec<ExportTraceServiceRequest>,
    logs: Vec<ExportLogsServiceRequest>,
}

/// An OTLP/HTTP receiver over TLS on 127.0.0.1; stops with the runtime.
async fn tls_receiver(cert: Vec<u8>, key: Vec<u8>, received: Arc<Mutex<Received>>) -> u16 {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.into()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let received = received.clone();
            tokio::spawn(async move {
                // A client that does not trust the root fails the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let received = received.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = req.into_body().collect().await?.to_bytes();
                        let mut received = received.lock().unwrap();
                        received.raw.extend_from_slice(&body);
                        let answer = match path.as_str() {
                            "/v1/traces" => {
                                received.traces.push(
                                    ExportTraceServiceRequest::decode(body)
                                        .expect("valid OTLP trace protobuf"),
                                );
                                ExportTraceServiceResponse::default().encode_to_vec()
                            }
                            "/v1/logs" => {
                                received.logs.push(
                                    ExportLogsServiceRequest::decode(body)
                                        .expect("valid OTLP logs protobuf"),
                                );
                                ExportLogsServiceResponse::default().encode_to_vec()
                            }
                            other => panic!("unexpected path {other}"),
                        };
                        Ok::<_, hyper::Error>(
                            hyper::Response::builder()
                                .header("content-type", "application/x-protobuf")
                                .body(http_body_util::Full::new(bytes::Bytes::from(answer)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    port
}

fn string_value(value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(ProtoValue::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    }
}

#[test]
fn spans_and_logs_reach_a_tls_collector_with_a_private_root() {
    // Without the crate's own fallback provider (features `tls-ring`, `tls-aws-lc-rs`) the
    // exporters need the application's: install one, as an application would.
    #[cfg(not(any(feature = "tls-ring", feature = "tls-aws-lc-rs")))]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (ca_pem, cert, key) = private_pki();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let received = Arc::new(Mutex::new(Received::default()));
    let port = rt.block_on(tls_receiver(cert, key, received.clone()));
    let endpoint = format!("https://127.0.0.1:{port}");

    // Mozilla's roots do not include the private CA: the handshake fails, nothing is sent.
    let (untrusted, untrusted_stats) = OtlpTraces::new(&endpoint, "untrusted")
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    untrusted.tracer("probe").start("probe").end();
    let _ = untrusted.force_flush();
    assert!(
        untrusted_stats.failed() > 0,
        "an untrusted server was accepted"
    );
    assert_eq!(untrusted_stats.exported(), 0);
    assert!(received.lock().unwrap().traces.is_empty());

    let (traces, trace_stats) = OtlpTraces::new(&endpoint, "tls-test")
        .root_certificate_pem(ca_pem.clone())
        .export_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let (logs, log_stats) = OtlpLogs::new(&endpoint, "tls-test")
        .root_certificate_pem(ca_pem)
        .export_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            // Events go both ways here: as log records, and as span events, which
            // `OtlpTraces` redacts like the log records.
            .with(
                tower_observe::tracing_opentelemetry::layer()
                    .with_tracer(traces.tracer("tls-test")),
            )
            .with(OtlpLogLayer::new(&logs)),
    )
    .unwrap();

    rt.block_on(async {
        let observer = Observer::new();
        let app = Router::new()
            .route(
                "/items/{id}",
                get(|| async {
                    tracing::info!(
                        password = "s3cr3t-password",
                        url.full = "https://shop.test/pay?order=7&access_token=s3cr3t-token",
                        items = 3,
                        "item served"
                    );
                    "item"
                }),
            )
            .layer(observer.layer().traces(TraceOptions::new()));
        let addr = serve(app).await;
        let res = reqwest::Client::new()
            .get(format!("http://{addr}/items/9"))
            .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);

        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            {
                let r = received.lock().unwrap();
                let span = r
                    .traces
                    .iter()
                    .flat_map(|t| &t.resource_spans)
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans)
                    .find(|s| s.name == "GET /items/{id}");
                let log = r
                    .logs
                    .iter()
                    .flat_map(|l| &l.resource_logs)
                    .flat_map(|r| &r.scope_logs)
                    .flat_map(|s| &s.log_records)
                    .find(|l| string_value(&l.body) == "item served");
                if let (Some(span), Some(log)) = (span, log) {
                    // The server span joined the caller's trace, under the caller's span.
                    assert_eq!(hex(&span.trace_id), TRACE_ID);
                    assert_eq!(hex(&span.parent_span_id), PARENT_ID);
                    // The log record carries the trace context of the request it was logged in.
                    assert_eq!(hex(&log.trace_id), TRACE_ID);
                    assert_eq!(hex(&log.span_id), hex(&span.span_id));
                    assert_eq!(log.severity_text, "INFO");
                    let attr = |key: &str| {
                        log.attributes
                            .iter()
                            .find(|kv| kv.key == key)
                            .map(|kv| string_value(&kv.value))
                    };
                    assert!(attr("http.request.id").is_some_and(|id| !id.is_empty()));
                    // The span event of the same line, redacted the same way.
                    let event = span
                        .events
                        .iter()
                        .find(|e| e.name == "item served")
                        .expect("the line as a span event");
                    let event_attr = |key: &str| {
                        event
                            .attributes
                            .iter()
                            .find(|kv| kv.key == key)
                            .map(|kv| string_value(&kv.value))
                    };
                    assert_eq!(event_attr("password").as_deref(), Some("[REDACTED]"));
                    assert_eq!(
                        event_attr("url.full").as_deref(),
                        Some("https://shop.test/pay?order=7&access_token=[REDACTED]")
                    );
                    assert_eq!(attr("password").as_deref(), Some("[REDACTED]"));
                    assert_eq!(
                        attr("url.full").as_deref(),
                        Some("https://shop.test/pay?order=7&access_token=[REDACTED]")
                    );
                    let raw = String::from_utf8_lossy(&r.raw);
                    assert!(
                        !raw.contains("s3cr3t"),
                        "a redacted secret left the process"
                    );
                    let service = r.logs[0].resource_logs[0]
                        .resource
                        .as_ref()
                        .unwrap()
                        .attributes
                        .iter()
                        .find(|kv| kv.key == "service.name")
                        .map(|kv| string_value(&kv.value));
                    assert_eq!(service.as_deref(), Some("tls-test"));
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the TLS collector never received the span and the log record"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // The exporters count a batch once the collector has answered, which can be just after
    // the receiver recorded it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while (trace_stats.exported() == 0 || log_stats.exported() == 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(trace_stats.exported() > 0);
    assert!(log_stats.exported() > 0);
    assert_eq!(trace_stats.failed() + log_stats.failed(), 0);
    let _ = traces.shutdown();
    let _ = logs.shutdown();
    drop(rt);
}
