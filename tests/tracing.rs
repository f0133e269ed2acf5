//! Trace propagation through real servers: continuing, restarting and linking traces, the
//! request span's fields, and passing the context on to a second service.
#![cfg(feature = "axum")]

mod support;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use support::{eventually, serve};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_observe::trace::{PropagateLayer, TraceContext, TraceOptions};
use tower_observe::Observer;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reports the current trace context as JSON.
async fn whoami() -> axum::Json<Value> {
    let ctx = TraceContext::current().expect("a context is current in the handler");
    axum::Json(json!({
        "trace_id": hex(&ctx.span.trace_id),
        "span_id": hex(&ctx.span.span_id),
        "parent": ctx.parent_span_id.map(|p| hex(&p)),
        "link": ctx.link().map(|l| hex(&l.trace_id)),
        "sampled": ctx.span.sampled,
        "request_id": ctx.request_id.map(|r| r.to_string()),
    }))
}

fn app(observer: &Observer, options: TraceOptions) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/fail", get(|| async { StatusCode::BAD_GATEWAY }))
        .merge(observer.router())
        .layer(observer.layer().traces(options))
}

async fn get_json(url: &str, headers: &[(&str, &str)]) -> Value {
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    assert!(
        !res.headers().contains_key("traceparent"),
        "incoming context is never echoed"
    );
    res.json().await.unwrap()
}

#[tokio::test]
async fn continues_the_callers_trace() {
    let observer = Observer::new();
    let addr = serve(app(&observer, TraceOptions::new())).await;
    let v = get_json(
        &format!("http://{addr}/whoami"),
        &[("traceparent", TRACEPARENT)],
    )
    .await;
    assert_eq!(v["trace_id"], TRACE_ID);
    assert_eq!(v["parent"], PARENT_ID);
    assert_ne!(v["span_id"], PARENT_ID);
    assert_eq!(v["span_id"].as_str().unwrap().len(), 16);
    assert_eq!(v["sampled"], true);
    assert_eq!(v["request_id"].as_str().unwrap().len(), 36);

    let unsampled = TRACEPARENT.replace("-01", "-00");
    let v = get_json(
        &format!("http://{addr}/whoami"),
        &[("traceparent", &unsampled)],
    )
    .await;
    assert_eq!(
        v["sampled"], false,
        "continued traces follow the caller's decision"
    );
}

#[tokio::test]
async fn malformed_context_starts_a_new_root_and_untrusted_context_becomes_a_link() {
    let observer = Observer::new();
    let addr = serve(app(&observer, TraceOptions::new())).await;
    let url = format!("http://{addr}/whoami");
    for bad in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "not a traceparent",
        &format!("{TRACEPARENT}{}", "0".repeat(400)),
    ] {
        let v = get_json(&url, &[("traceparent", bad)]).await;
        assert_ne!(v["trace_id"], TRACE_ID, "{bad}");
        assert_eq!(v["parent"], Value::Null, "{bad}");
        assert_eq!(v["trace_id"].as_str().unwrap().len(), 32);
    }

    let public = Observer::new();
    let addr = serve(app(&public, TraceOptions::new().untrusted_parent(true))).await;
    let v = get_json(
        &format!("http://{addr}/whoami"),
        &[("traceparent", TRACEPARENT)],
    )
    .await;
    assert_ne!(v["trace_id"], TRACE_ID);
    assert_eq!(v["parent"], Value::Null);
    assert_eq!(v["link"], TRACE_ID);
}

#[tokio::test]
async fn context_and_request_id_propagate_through_an_outgoing_call() {
    // Service B reports what arrived.
    let b_observer = Observer::new();
    let b = serve(app(&b_observer, TraceOptions::new())).await;

    // Service A calls B through a client wrapped in PropagateLayer.
    let a_observer = Observer::new();
    let b_url = format!("http://{b}/whoami");
    let app_a = Router::new()
        .route(
            "/call",
            get(move || {
                let url = b_url.clone();
                async move {
                    let http = reqwest::Client::new();
                    let mut client = ServiceBuilder::new()
                        .layer(PropagateLayer::new())
                        .service_fn(move |req: http::Request<String>| {
                            let http = http.clone();
                            async move {
                                let req = reqwest::Request::try_from(req)?;
                                http.execute(req).await?.json::<Value>().await
                            }
                        });
                    let req = http::Request::get(url).body(String::new()).unwrap();
                    let from_b = client.ready().await.unwrap().call(req).await.unwrap();
                    let here = TraceContext::current().unwrap();
                    axum::Json(json!({
                        "a_trace_id": hex(&here.span.trace_id),
                        "a_span_id": hex(&here.span.span_id),
                        "a_request_id": here.request_id.map(|r| r.to_string()),
                        "b": from_b,
                    }))
                }
            }),
        )
        .layer(a_observer.layer().traces(TraceOptions::new()));
    let a = serve(app_a).await;

    let v = get_json(
        &format!("http://{a}/call"),
        &[("traceparent", TRACEPARENT), ("x-request-id", "chain-1")],
    )
    .await;
    assert_eq!(v["a_trace_id"], TRACE_ID);
    assert_eq!(v["b"]["trace_id"], TRACE_ID, "same trace end to end");
    // B's parent is the outgoing request's own client span (a child of A's span, W3C's
    // "the ID of this request as known by the caller"), not A's span itself.
    let b_parent = v["b"]["parent"].as_str().unwrap();
    assert_eq!(b_parent.len(), 16);
    assert_ne!(b_parent, v["a_span_id"].as_str().unwrap());
    assert_ne!(b_parent, "00f067aa0ba902b7");
    assert_eq!(v["a_request_id"], "chain-1");
    assert_eq!(
        v["b"]["request_id"], "chain-1",
        "same request ID end to end"
    );
}

#[tokio::test]
async fn sampled_requests_leave_exemplars_with_their_trace() {
    let observer = Observer::new();
    let addr = serve(app(&observer, TraceOptions::new())).await;
    get_json(
        &format!("http://{addr}/whoami"),
        &[("traceparent", TRACEPARENT)],
    )
    .await;
    eventually(|| observer.stats().totals.requests == 1).await;
    let text = observer.registry().unwrap().render_openmetrics();
    let line = text
        .lines()
        .find(|l| l.contains(" # {"))
        .expect("an exemplar");
    assert!(line.contains(&format!("trace_id=\"{TRACE_ID}\"")), "{line}");

    // Not sampled: no exemplar.
    let quiet = Observer::new();
    let addr = serve(app(&quiet, TraceOptions::new().root_sample_ratio(0.0))).await;
    get_json(&format!("http://{addr}/whoami"), &[]).await;
    eventually(|| quiet.stats().totals.requests == 1).await;
    assert!(!quiet
        .registry()
        .unwrap()
        .render_openmetrics()
        .contains(" # {"));
}

#[tokio::test]
async fn baggage_can_become_a_metric_dimension() {
    let observer = Observer::builder().dimension("tenant").build().unwrap();
    let addr = serve(app(
        &observer,
        TraceOptions::new().baggage_as_dimension("tenant"),
    ))
    .await;
    get_json(
        &format!("http://{addr}/whoami"),
        &[
            ("traceparent", TRACEPARENT),
            ("baggage", "tenant=acme,other=x"),
        ],
    )
    .await;
    eventually(|| observer.stats().totals.requests == 1).await;
    assert_eq!(observer.stats().dimensions["tenant"]["acme"].requests, 1);
    assert!(observer
        .render_metrics()
        .unwrap()
        .contains("tenant=\"acme\""));
}
