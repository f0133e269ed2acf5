//! Every field the crate can put on an ECS JSON log line, checked against the Elastic Common
//! Schema: real servers (HTTP traced, continued, linked, failing, unknown method, hostile
//! sizes; an HTTP client with a resend; gRPC server and client), the access log, and the
//! crate's own warnings, written through `EcsJsonLayer`; each field must be an ECS field of
//! the right type (`tests/data/ecs-8.11.0-fields.txt`, checked against Elastic's own list in
//! CI) or a `labels.*` string. Its own test binary: it installs a global subscriber.
#![cfg(all(
    feature = "logs",
    feature = "axum",
    feature = "reqwest-middleware",
    feature = "tonic",
    feature = "history"
))]

mod support;

#[allow(clippy::all, unreachable_pub, missing_docs)]
#[path = "../proto/echo_v1.rs"]
mod echo;

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use echo::echo_client::EchoClient;
use echo::echo_server::{Echo, EchoServer};
use echo::{CountRequest, SayReply, SayRequest};
use reqwest_middleware::ClientBuilder;
use reqwest_retry::{policies::ExponentialBackoff, RetryTransientMiddleware};
use serde_json::Value;
use support::{eventually, serve, Capture};
use tokio_stream::Stream;
use tower_observe::history::HistoryOptions;
use tower_observe::logs::EcsJsonLayer;
use tower_observe::trace::TraceOptions;
use tower_observe::Observer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer as _;

/// The ECS subset: name → type.
fn ecs_fields() -> BTreeMap<String, String> {
    include_str!("data/ecs-8.11.0-fields.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, ty) = l.split_once(' ').unwrap();
            (name.to_owned(), ty.trim().to_owned())
        })
        .collect()
}

#[derive(Default)]
struct EchoService;

type ReplyStream = Pin<Box<dyn Stream<Item = Result<SayReply, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn say(
        &self,
        request: tonic::Request<SayRequest>,
    ) -> Result<tonic::Response<SayReply>, tonic::Status> {
        tracing::info!("saying");
        let req = request.into_inner();
        if req.fail_with != 0 {
            return Err(tonic::Status::new(req.fail_with.into(), "asked to fail"));
        }
        Ok(tonic::Response::new(SayReply {
            message: req.message,
        }))
    }

    type CountStream = ReplyStream;

    async fn count(
        &self,
        _: tonic::Request<CountRequest>,
    ) -> Result<tonic::Response<Self::CountStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("not here"))
    }
}

/// Logs inside the client call's span, as the HTTP stack below would.
struct LogInsideTheCall;

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for LogInsideTheCall {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        tracing::info!("sending");
        let res = next.run(req, extensions).await;
        tracing::info!("received");
        res
    }
}

/// Every field name the crate's spans carry, some recorded only when the span ends (so no
/// event of the crate's own is logged after them), on one span, with values of their types.
fn every_span_field() {
    let span = tracing::info_span!(
        target: "tower_observe::http",
        "all fields",
        otel.name = "GET /x",
        otel.kind = "server",
        http.request.method = "_OTHER",
        http.request.method_original = "PURGE",
        http.route = "/x",
        url.path = "/x",
        url.scheme = "https",
        url.full = "https://example.test:443/x",
        network.protocol.version = "2",
        user_agent.original = "curl/8",
        request_id = "req-1",
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
        span_id = "00f067aa0ba902b7",
        parent_span_id = "00f067aa0ba902b8",
        link.trace_id = "4bf92f3577b34da6a3ce929d0e0e4737",
        link.span_id = "00f067aa0ba902b9",
        http.response.status_code = 503u64,
        error.type = "503",
        otel.status_code = "ERROR",
        server.address = "example.test",
        server.port = 443u64,
        http.request.resend_count = 2u64,
        rpc.system.name = "grpc",
        rpc.method = "echo.v1.Echo/Say",
        rpc.method_original = "echo.v1.Echo/Say",
        rpc.status_code = "INTERNAL",
    );
    span.in_scope(|| {
        tracing::info!(target: "tower_observe::access", { "event.duration" = 1200u64 }, "request failed")
    });
}

#[tokio::test]
async fn every_field_the_crate_emits_is_ecs_or_a_label() {
    let capture = Capture::default();
    // The crate's spans and events, and this test's own; not those of hyper, h2 or tonic.
    let ours = tracing_subscriber::filter::Targets::new()
        .with_target("tower_observe", tracing::Level::TRACE)
        .with_target("ecs_fields", tracing::Level::TRACE);
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(
            EcsJsonLayer::new("shop")
                .with_writer(capture.clone())
                .with_filter(ours),
        ),
    )
    .unwrap();

    // An upstream that fails once per key, then answers.
    let calls = Arc::new(Mutex::new(BTreeSet::new()));
    let upstream = Router::new().route(
        "/once/{key}",
        get(
            move |axum::extract::Path(key): axum::extract::Path<String>| {
                let calls = calls.clone();
                async move {
                    if calls.lock().unwrap().insert(key) {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            },
        ),
    );
    let upstream = serve(upstream).await;

    let observer = Observer::new();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(RetryTransientMiddleware::new_with_policy(
            ExponentialBackoff::builder()
                .retry_bounds(Duration::from_millis(1), Duration::from_millis(2))
                .build_with_max_retries(2),
        ))
        .with(observer.client_layer().middleware())
        .with(LogInsideTheCall)
        .build();
    let app = Router::new()
        .route(
            "/orders/{id}",
            get(
                move |axum::extract::Path(id): axum::extract::Path<String>| {
                    let client = client.clone();
                    async move {
                        tracing::info!("loading order");
                        let url = format!("http://{upstream}/once/{id}");
                        client
                            .get(url)
                            .send()
                            .await
                            .unwrap()
                            .status()
                            .as_u16()
                            .to_string()
                    }
                },
            ),
        )
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .layer(
            observer
                .layer()
                .traces(TraceOptions::new().access_log(true)),
        );
    let addr = serve(app).await;
    let public = Observer::new();
    let public_app = Router::new().route("/", get(|| async { "hi" })).layer(
        public
            .layer()
            .traces(TraceOptions::new().untrusted_parent(true).access_log(true)),
    );
    let public_addr = serve(public_app).await;

    let http = reqwest::Client::new();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    http.get(format!("http://{addr}/orders/7"))
        .header("traceparent", traceparent)
        .header("x-request-id", "req-1")
        .send()
        .await
        .unwrap();
    http.get(format!("http://{addr}/fail"))
        .send()
        .await
        .unwrap();
    let purge = reqwest::Method::from_bytes(b"PURGE").unwrap();
    http.request(purge, format!("http://{addr}/fail"))
        .send()
        .await
        .unwrap();
    http.get(format!("http://{public_addr}/"))
        .header("traceparent", traceparent)
        .send()
        .await
        .unwrap();
    // Hostile sizes: a 60 KB path and a 10 KB user agent.
    let long_path = format!("/orders/{}", "p".repeat(60 * 1024));
    let long_agent = "a".repeat(10 * 1024);
    let _ = http
        .get(format!("http://{addr}{long_path}"))
        .header("user-agent", &long_agent)
        .send()
        .await;

    // gRPC, both sides traced.
    let grpc_observer = Observer::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(
                grpc_observer
                    .grpc_server_layer()
                    .traces(TraceOptions::new()),
            )
            .add_service(EchoServer::new(EchoService))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = EchoClient::new(
        tower::ServiceBuilder::new()
            .layer(
                grpc_observer
                    .grpc_client_layer()
                    .server("127.0.0.1", grpc_addr.port()),
            )
            .service(channel),
    );
    grpc.say(SayRequest {
        message: "hi".into(),
        fail_with: 0,
    })
    .await
    .unwrap();
    let _ = grpc
        .say(SayRequest {
            message: "no".into(),
            fail_with: 13,
        })
        .await;

    // The crate's own warnings: an unusable history file, a metric registered as two types.
    let unusable = std::env::temp_dir();
    let with_history = Observer::builder()
        .history(HistoryOptions::file(&unusable))
        .build()
        .unwrap();
    let registry = with_history.registry().unwrap().clone();
    metrics::with_local_recorder(&registry, || {
        metrics::counter!("twice").increment(1);
        metrics::gauge!("twice", "kind" => "gauge").set(1.0);
    });
    every_span_field();
    // What `tracing-log` puts on events bridged from the `log` crate.
    tracing::info!(
        {
            "log.target" = "legacy",
            "log.module_path" = "legacy::db",
            "log.file" = "src/db.rs",
            "log.line" = 42u64,
        },
        "bridged"
    );

    eventually(|| {
        capture
            .raw_lines()
            .iter()
            .filter(|l| l.contains("request completed") || l.contains("request failed"))
            .count()
            >= 5
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let ecs = ecs_fields();
    let raw = capture.raw_lines();
    let mut seen = BTreeSet::new();
    for line in &raw {
        // A hostile request makes no line of its size.
        assert!(line.len() < 8 * 1024, "a log line of {} bytes", line.len());
        let value: Value = serde_json::from_str(line).unwrap();
        for (name, value) in value.as_object().unwrap() {
            seen.insert(name.clone());
            if name.starts_with("labels.") {
                assert!(value.is_string(), "{name} is a label, so a string: {line}");
                continue;
            }
            let Some(ty) = ecs.get(name) else {
                panic!("{name} is not an ECS field (nor a label): {line}");
            };
            let ok = match ty.as_str() {
                "long" => value.is_u64() || value.is_i64(),
                "date" | "keyword" | "wildcard" | "match_only_text" => value.is_string(),
                other => panic!("unexpected ECS type {other}"),
            };
            assert!(ok, "{name} must be an ECS {ty}, got {value}: {line}");
        }
    }
    // The test reached every kind of field it means to check.
    for expected in [
        "http.version",
        "event.outcome",
        "transaction.id",
        "http.request.method",
        "user_agent.original",
        "server.port",
        "event.duration",
        "labels.http_route",
        "labels.otel_kind",
        "labels.parent_span_id",
        "labels.link_trace_id",
        "labels.http_request_resend_count",
        "labels.rpc_method",
        "labels.rpc_status_code",
        "labels.rpc_system_name",
        "labels.rpc_method_original",
        "labels.otel_name",
        "labels.link_span_id",
        "url.full",
        "server.address",
        "file.path",
        "error.message",
        "labels.metric",
        "log.origin.file.name",
        "log.origin.file.line",
    ] {
        assert!(
            seen.contains(expected),
            "no line carried {expected}: {seen:?}"
        );
    }
    // The unknown method is logged as received, not as `_OTHER`.
    assert!(raw
        .iter()
        .any(|l| l.contains(r#""http.request.method":"PURGE""#)));
    // The long values are cut and marked.
    let long = raw
        .iter()
        .find(|l| l.contains("\"url.path\":\"/orders/ppp"))
        .expect("the long request is logged");
    assert!(long.contains("…"), "{}", &long[..200]);
}
