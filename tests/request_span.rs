//! The request span's fields, through a real server. Its own test binary: it installs a
//! global subscriber, and `tracing` caches callsite interest process-wide, so a scoped
//! subscriber here would race with other tests' threads.
#![cfg(feature = "axum")]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use support::{eventually, serve};
use tower_observe::trace::TraceOptions;
use tower_observe::Observer;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Captures the fields of `HTTP request` spans, and whether they closed.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<HashMap<String, String>>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S> tracing_subscriber::Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "HTTP request" {
            return;
        }
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        ctx.span(id).unwrap().extensions_mut().insert(fields);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<HashMap<String, String>>() {
            values.record(&mut Fields(fields));
        }
    }
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        let extensions = span.extensions();
        if let Some(fields) = extensions.get::<HashMap<String, String>>() {
            self.0.lock().unwrap().push(fields.clone());
        }
    }
}

#[tokio::test]
async fn the_request_span_carries_the_http_attributes_and_closes_with_the_request() {
    let spans = Spans::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(spans.clone()))
        .unwrap();
    let observer = Observer::new();
    let app = Router::new()
        .route("/whoami", get(|| async { "me" }))
        .route("/fail", get(|| async { StatusCode::BAD_GATEWAY }))
        .layer(observer.layer().traces(TraceOptions::new()));
    let addr = serve(app).await;
    let client = reqwest::Client::new();
    client
        .get(format!("http://{addr}/whoami"))
        .header("traceparent", TRACEPARENT)
        .header("x-request-id", "req-42")
        .send()
        .await
        .unwrap();
    client
        .get(format!("http://{addr}/fail"))
        .send()
        .await
        .unwrap();
    eventually(|| spans.0.lock().unwrap().len() >= 2).await;

    let closed = spans.0.lock().unwrap().clone();
    let ok = closed
        .iter()
        .find(|s| s.get("http.route").map(String::as_str) == Some("/whoami"))
        .unwrap();
    assert_eq!(ok["otel.kind"], "server");
    assert_eq!(ok["http.request.method"], "GET");
    assert_eq!(ok["url.path"], "/whoami");
    // What every line logged in the request would repeat for nothing is left to the access
    // log and to OpenTelemetry (`otel.name` is recorded only on an OpenTelemetry span).
    for detail in [
        "otel.name",
        "url.scheme",
        "network.protocol.version",
        "user_agent.original",
    ] {
        assert!(!ok.contains_key(detail), "{detail} in {ok:?}");
    }
    assert!(
        !ok.contains_key("url.query"),
        "queries may hold credentials: not recorded"
    );
    assert_eq!(ok["request_id"], "req-42");
    assert_eq!(ok["trace_id"], TRACE_ID);
    assert_eq!(ok["parent_span_id"], PARENT_ID);
    assert_eq!(ok["http.response.status_code"], "200");
    assert!(
        !ok.contains_key("otel.status_code"),
        "success leaves the status unset"
    );

    let failed = closed
        .iter()
        .find(|s| s.get("http.route").map(String::as_str) == Some("/fail"))
        .unwrap();
    assert_eq!(failed["http.response.status_code"], "502");
    assert_eq!(failed["error.type"], "502");
    assert_eq!(failed["otel.status_code"], "ERROR");

    // Behind a TLS terminator: the span's scheme agrees with the metric's. A 429 counted as a
    // failure is still not a server error on the span (the conventions leave 4xx unset).
    let tls = Observer::new();
    let app = Router::new()
        .route("/limited", get(|| async { StatusCode::TOO_MANY_REQUESTS }))
        .layer(
            tls.layer()
                .assume_https()
                .failure_if(|s| s.is_server_error() || s == 429)
                .traces(TraceOptions::new().access_log(true)),
        );
    let addr = serve(app).await;
    client
        .get(format!("http://{addr}/limited"))
        .header("user-agent", "shop-client/2.0")
        .send()
        .await
        .unwrap();
    eventually(|| spans.0.lock().unwrap().len() >= 3).await;
    let closed = spans.0.lock().unwrap().clone();
    let limited = closed
        .iter()
        .find(|s| s.get("http.route").map(String::as_str) == Some("/limited"))
        .unwrap();
    // With an access log, the span has the details its line reports.
    assert_eq!(limited["url.scheme"], "https");
    assert_eq!(limited["network.protocol.version"], "1.1");
    assert_eq!(limited["user_agent.original"], "shop-client/2.0");
    assert_eq!(limited["error.type"], "429");
    assert!(!limited.contains_key("otel.status_code"), "{limited:?}");
    assert_eq!(
        tls.stats().totals.errors,
        1,
        "still a failure in the metrics"
    );
}
