//! Panics in the inner service through real servers: answered 500, recorded with
//! `error_type="panic"`, logged once (ECS, with the message, the stack trace and the request
//! and trace IDs), and the next request served. Its own test binary: it installs a global
//! subscriber and the process panic hook.
#![cfg(all(feature = "logs", feature = "axum"))]

mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use support::{eventually, sample, serve, Capture};
use tower::Layer;
use tower_observe::logs::EcsJsonLayer;
use tower_observe::server::{install_panic_hook, PanicBacktraces, RequestBody};
use tower_observe::trace::TraceOptions;
use tower_observe::Observer;
use tracing_subscriber::layer::SubscriberExt;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The ECS output of the whole binary, and the panic hook, set up once.
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry()
                .with(EcsJsonLayer::new("shop").with_writer(capture.clone())),
        )
        .unwrap();
        install_panic_hook(PanicBacktraces::Always);
        capture
    })
}

/// The panic lines logged for request `id`.
fn panic_lines(capture: &Capture, id: &str) -> Vec<serde_json::Value> {
    capture
        .lines()
        .into_iter()
        .filter(|l| l["http.request.id"] == id && l["error.type"] == "panic")
        .collect()
}

async fn send(addr: std::net::SocketAddr, path: &str, id: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .header("traceparent", TRACEPARENT)
        .header("x-request-id", id)
        .send()
        .await
        .unwrap()
}

fn metrics(observer: &Observer) -> String {
    observer.render_metrics().unwrap()
}

/// One panic line for `id`, with every field the central logs need.
async fn assert_logged_once(capture: &Capture, id: &str, message: &str) -> serde_json::Value {
    eventually(|| !panic_lines(capture, id).is_empty()).await;
    let lines = panic_lines(capture, id);
    assert_eq!(lines.len(), 1, "exactly one line: {lines:?}");
    let line = lines.into_iter().next().unwrap();
    assert_eq!(line["log.level"], "error");
    assert_eq!(line["trace.id"], TRACE_ID);
    assert!(
        line["error.message"].as_str().unwrap().contains(message),
        "{line}"
    );
    let stack = line["error.stack_trace"].as_str().unwrap_or_default();
    assert!(
        !stack.is_empty(),
        "the hook's stack trace is logged: {line}"
    );
    assert!(stack.len() <= tower_observe::server::MAX_LOGGED_STACK_TRACE_LEN);
    line
}

#[tokio::test]
async fn a_panicking_axum_handler_answers_500_and_the_next_request_is_served() {
    let capture = capture();
    let observer = Observer::new();
    let app = Router::new()
        .route(
            "/boom",
            get(|| async {
                tokio::task::yield_now().await;
                let order = 7;
                panic!("order {order} is inconsistent");
                #[allow(unreachable_code)]
                "never"
            }),
        )
        .route("/ok", get(|| async { "ok" }))
        .merge(observer.router())
        .layer(observer.layer().traces(TraceOptions::new()));
    let addr = serve(app).await;

    let res = send(addr, "/boom", "req-axum-panic").await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.headers()["x-request-id"], "req-axum-panic");
    assert_eq!(res.text().await.unwrap(), "");
    let line = assert_logged_once(capture, "req-axum-panic", "order 7 is inconsistent").await;
    assert!(
        line["message"].as_str().unwrap().contains("panics.rs"),
        "{line}"
    );

    // The process (and the connection's server) keeps serving.
    let ok = send(addr, "/ok", "req-axum-ok").await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "ok");

    eventually(|| observer.stats().totals.requests == 2).await;
    let text = send(addr, "/metrics", "req-scrape")
        .await
        .text()
        .await
        .unwrap();
    let count = "http_server_request_duration_seconds_count";
    assert_eq!(
        sample(
            &text,
            count,
            &[
                ("http_route", "/boom"),
                ("error_type", "panic"),
                ("http_response_status_code", "500"),
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, count, &[("http_route", "/ok")]), Some(1.0));
    assert_eq!(
        sample(&metrics(&observer), "http_server_active_requests", &[]),
        Some(0.0)
    );
}

/// A body that panics when polled, after its headers were sent.
struct PanickingBody;

impl http_body::Body for PanickingBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        panic!("the body's source went away");
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A hand-written service: `/call` panics in `call` itself, `/future` in its future, `/body`
/// in its response body, anything else answers.
fn app(
    req: &Request<RequestBody<Incoming>>,
) -> std::future::Ready<Result<Response<Body>, Infallible>> {
    match req.uri().path() {
        "/call" => panic!("no handler for this shape"),
        "/body" => std::future::ready(Ok(Response::new(PanickingBody.boxed()))),
        _ => std::future::ready(Ok(Response::new(
            Full::new(Bytes::from_static(b"served")).boxed(),
        ))),
    }
}

#[tokio::test]
async fn a_plain_hyper_service_panicking_in_call_future_and_body() {
    let capture = capture();
    let observer = Observer::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let layer = observer.layer().traces(TraceOptions::new());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = layer.layer(tower::service_fn(|req: Request<RequestBody<Incoming>>| {
                let ready = app(&req);
                async move {
                    if req.uri().path() == "/future" {
                        tokio::task::yield_now().await;
                        panic!("the future gave up");
                    }
                    ready.await
                }
            }));
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                    .await;
            });
        }
    });

    let res = send(addr, "/call", "req-call").await;
    assert_eq!(res.status(), 500);
    assert_logged_once(capture, "req-call", "no handler for this shape").await;

    let res = send(addr, "/future", "req-future").await;
    assert_eq!(res.status(), 500);
    assert_logged_once(capture, "req-future", "the future gave up").await;

    // Once the headers are made, the connection is dropped: the client sees a cut response
    // (hyper polls the body before it writes the headers, so here no headers at all).
    let cut = reqwest::Client::new()
        .get(format!("http://{addr}/body"))
        .header("traceparent", TRACEPARENT)
        .header("x-request-id", "req-body")
        .send()
        .await;
    match cut {
        Ok(res) => assert!(res.bytes().await.is_err()),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    assert_logged_once(capture, "req-body", "the body's source went away").await;

    let res = send(addr, "/fine", "req-fine").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "served");

    eventually(|| observer.stats().totals.requests == 4).await;
    let text = metrics(&observer);
    let count = "http_server_request_duration_seconds_count";
    assert_eq!(
        sample(
            &text,
            count,
            &[
                ("error_type", "panic"),
                ("http_response_status_code", "500")
            ]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            count,
            &[
                ("error_type", "panic"),
                ("http_response_status_code", "200")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "http_server_active_requests", &[]), Some(0.0));
}
