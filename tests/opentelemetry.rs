//! With `tracing-opentelemetry` installed, request spans become OpenTelemetry spans: parented
//! to the caller's context, named and attributed per the HTTP conventions, with the IDs used
//! everywhere else (current context, exemplars). Checked with the SDK's in-memory exporter.
//! Its own test binary, because it installs a global subscriber.
#![cfg(all(feature = "opentelemetry", feature = "axum", feature = "client"))]

mod support;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::{json, Value};
use support::{eventually, serve};
use tower_observe::trace::{TraceContext, TraceOptions};
use tower_observe::Observer;
use tracing_subscriber::layer::SubscriberExt;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn request_spans_are_opentelemetry_spans_with_the_callers_parent() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test"))),
    )
    .unwrap();

    let observer = Observer::new();
    let app = Router::new()
        .route(
            "/items/{id}",
            get(|| async {
                let ctx = TraceContext::current().unwrap();
                axum::Json(json!({ "trace_id": hex(&ctx.span.trace_id), "span_id": hex(&ctx.span.span_id) }))
            }),
        )
        .route("/broken", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route(
            "/query",
            get(|| async {
                let _db = tracing::info_span!("db query").entered();
                "rows"
            }),
        )
        .layer(observer.layer().traces(TraceOptions::new().baggage_as_attribute("tenant")));
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    let seen: Value = client
        .get(format!("http://{addr}/items/9"))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .header("baggage", "tenant=acme,secret=not-copied")
        .header("user-agent", "shop-client/2.0")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    client
        .get(format!("http://{addr}/broken"))
        .send()
        .await
        .unwrap();
    eventually(|| exporter.get_finished_spans().unwrap().len() >= 2).await;

    let spans = exporter.get_finished_spans().unwrap();
    let item = spans
        .iter()
        .find(|s| s.name == "GET /items/{id}")
        .expect("span named by route");
    assert_eq!(item.span_kind, SpanKind::Server);
    assert_eq!(
        hex(&item.span_context.trace_id().to_bytes()),
        TRACE_ID,
        "continues the caller's trace"
    );
    assert_eq!(
        hex(&item.parent_span_id.to_bytes()),
        PARENT_ID,
        "child of the caller's span"
    );
    assert!(item.parent_span_is_remote);
    // The handler saw the exported span's IDs, not IDs of the layer's own.
    assert_eq!(seen["trace_id"], TRACE_ID);
    assert_eq!(
        seen["span_id"],
        hex(&item.span_context.span_id().to_bytes())
    );
    let attr = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(attr(item, "http.route").as_deref(), Some("/items/{id}"));
    assert_eq!(attr(item, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(attr(item, "url.path").as_deref(), Some("/items/9"));
    assert_eq!(attr(item, "url.scheme").as_deref(), Some("http"));
    assert_eq!(
        attr(item, "network.protocol.version").as_deref(),
        Some("1.1")
    );
    assert_eq!(
        attr(item, "user_agent.original").as_deref(),
        Some("shop-client/2.0")
    );
    assert_eq!(
        attr(item, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(item.status, Status::Unset);
    // The IDs log lines carry are the exported span's, recorded once; its parent is native.
    assert_eq!(attr(item, "trace_id").as_deref(), Some(TRACE_ID));
    assert_eq!(
        attr(item, "span_id"),
        Some(hex(&item.span_context.span_id().to_bytes()))
    );
    assert_eq!(attr(item, "parent_span_id"), None);
    assert_eq!(
        attr(item, "baggage.tenant").as_deref(),
        Some("acme"),
        "allowlisted baggage"
    );
    assert_eq!(attr(item, "baggage.secret"), None, "only the allowlist");

    let broken = spans.iter().find(|s| s.name == "GET /broken").unwrap();
    assert_eq!(
        broken.parent_span_id,
        opentelemetry::trace::SpanId::INVALID,
        "a new root"
    );
    assert!(
        matches!(broken.status, Status::Error { .. }),
        "{:?}",
        broken.status
    );
    assert_eq!(attr(broken, "error.type").as_deref(), Some("500"));

    // A caller that did not sample: neither the request span nor the handler's own spans are
    // exported (the handler's span is not a new root: its parent is the unsampled request).
    client
        .get(format!("http://{addr}/query"))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-00"))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let exported: Vec<String> = exporter
        .get_finished_spans()
        .unwrap()
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(exported.len(), 2, "{exported:?}");

    // The exemplar of the sampled request points at the exported span.
    let text = observer.registry().unwrap().render_openmetrics();
    let exported = hex(&item.span_context.span_id().to_bytes());
    assert!(text.contains(&format!("span_id=\"{exported}\"")), "{text}");

    // Outgoing calls: the client span is a child of the serving span, and the upstream gets
    // the client span's OpenTelemetry ID as its parent.
    let upstream = Router::new().route(
        "/echo",
        get(|headers: axum::http::HeaderMap| async move {
            headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        }),
    );
    let upstream_addr = serve(upstream).await;
    let instrumented = tower::ServiceBuilder::new()
        .layer(observer.client_layer())
        .service(reqwest::Client::new());
    let app = Router::new()
        .route(
            "/fanout",
            get(move || {
                let mut client = instrumented.clone();
                async move {
                    use tower::{Service, ServiceExt};
                    let req = reqwest::Request::new(
                        http::Method::GET,
                        format!("http://{upstream_addr}/echo").parse().unwrap(),
                    );
                    let res = client.ready().await.unwrap().call(req).await.unwrap();
                    res.text().await.unwrap()
                }
            }),
        )
        .layer(observer.layer().traces(TraceOptions::new()));
    let addr = serve(app).await;
    let sent = client
        .get(format!("http://{addr}/fanout"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    eventually(|| {
        exporter
            .get_finished_spans()
            .unwrap()
            .iter()
            .any(|s| s.name == "GET /fanout")
    })
    .await;
    let spans = exporter.get_finished_spans().unwrap();
    let server = spans.iter().find(|s| s.name == "GET /fanout").unwrap();
    let outgoing = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Client)
        .expect("a client span");
    assert_eq!(outgoing.name, "GET");
    // Each span has one `span_id` attribute, its own.
    for span in [server, outgoing] {
        let ids: Vec<String> = span
            .attributes
            .iter()
            .filter(|kv| kv.key.as_str() == "span_id")
            .map(|kv| kv.value.to_string())
            .collect();
        assert_eq!(ids, [hex(&span.span_context.span_id().to_bytes())]);
    }
    assert_eq!(
        outgoing.parent_span_id,
        server.span_context.span_id(),
        "child of the serving span"
    );
    assert_eq!(
        outgoing.span_context.trace_id(),
        server.span_context.trace_id()
    );
    assert_eq!(
        attr(outgoing, "server.port").as_deref(),
        Some(upstream_addr.port().to_string().as_str())
    );
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts[1], hex(&server.span_context.trace_id().to_bytes()));
    assert_eq!(
        parts[2],
        hex(&outgoing.span_context.span_id().to_bytes()),
        "the upstream's parent is the exported client span"
    );
}
