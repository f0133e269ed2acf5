//! W3C Trace Context header forms through a real server: repeated field lines (RFC 9110
//! §5.3), the `tracestate` limits on the combined list, empty lists, and what goes out again —
//! checked on the context the handler sees and on the headers an outgoing call carries, with
//! traces on and off.
#![cfg(feature = "axum")]

mod support;

use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use support::serve;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_observe::trace::{PropagateLayer, TraceContext, TraceOptions};
use tower_observe::Observer;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const OTHER_TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An upstream that answers with the propagation headers it got (each field line).
async fn upstream() -> std::net::SocketAddr {
    let app = Router::new().route(
        "/echo",
        get(|headers: HeaderMap| async move {
            let all = |name: &str| -> Vec<String> {
                headers
                    .get_all(name)
                    .iter()
                    .map(|v| v.to_str().unwrap().to_owned())
                    .collect()
            };
            Json(json!({
                "traceparent": all("traceparent"),
                "tracestate": all("tracestate"),
                "x-request-id": all("x-request-id"),
            }))
        }),
    );
    serve(app).await
}

/// A front service whose handler reports its context and calls the upstream twice through
/// `PropagateLayer`.
async fn front(observer: &Observer, traced: bool, upstream: std::net::SocketAddr) -> String {
    let handler = move || async move {
        let ctx = TraceContext::current().expect("a context is current in the handler");
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let mut client = ServiceBuilder::new()
            .layer(PropagateLayer::new())
            .service(client);
        let mut seen = Vec::new();
        for _ in 0..2 {
            let req = http::Request::get(format!("http://{upstream}/echo"))
                .body(http_body_util::Empty::new())
                .unwrap();
            let res = client.ready().await.unwrap().call(req).await.unwrap();
            let body = http_body_util::BodyExt::collect(res.into_body())
                .await
                .unwrap()
                .to_bytes();
            seen.push(serde_json::from_slice::<Value>(&body).unwrap());
        }
        Json(json!({
            "trace_id": hex(&ctx.span.trace_id),
            "parent": ctx.parent_span_id.map(|p| hex(&p)),
            "tracestate": ctx.trace_state().map(|s| s.as_str().to_owned()),
            "outgoing": seen,
        }))
    };
    let layer = if traced {
        observer.layer().traces(TraceOptions::new())
    } else {
        observer.layer()
    };
    let app = Router::new().route("/call", get(handler)).layer(layer);
    format!("http://{}/call", serve(app).await)
}

/// Sends `headers` (repeated names are separate field lines) and returns the front's report.
async fn call(url: &str, headers: &[(&str, &str)]) -> Value {
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().json().await.unwrap()
}

fn members(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}=v{i}")).collect()
}

#[tokio::test]
async fn repeated_and_limited_header_fields() {
    let up = upstream().await;
    let over_128 = format!("big={}", "x".repeat(200));
    let long_list: Vec<String> = (0..20)
        .map(|i| format!("k{i:02}={}", "v".repeat(20)))
        .collect();
    let first_16 = members("a", 16);
    let last_17 = members("b", 17);
    let three_lines = ["r1=one,  , ", " r2=two", "r3=three"];
    for traced in [true, false] {
        let observer = Observer::new();
        let url = front(&observer, traced, up).await;

        // Two traceparent field lines combine into a list, which is not a traceparent: a new
        // trace, and the tracestate (of the invalid parent) is ignored.
        let v = call(
            &url,
            &[
                ("traceparent", TRACEPARENT),
                ("traceparent", OTHER_TRACEPARENT),
                ("tracestate", "rojo=00f067aa0ba902b7"),
            ],
        )
        .await;
        assert_ne!(v["trace_id"], TRACE_ID, "traced: {traced}");
        assert_ne!(v["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(v["parent"], Value::Null);
        assert_eq!(v["tracestate"], Value::Null);
        for out in v["outgoing"].as_array().unwrap() {
            assert_eq!(out["tracestate"], json!([]), "{v}");
            let sent = out["traceparent"][0].as_str().unwrap();
            assert!(sent.contains(v["trace_id"].as_str().unwrap()), "{v}");
        }

        // tracestate over two and three field lines: one list, in order; empty members and
        // optional whitespace dropped.
        let v = call(
            &url,
            &[
                ("traceparent", TRACEPARENT),
                ("tracestate", "rojo=00f067aa0ba902b7"),
                ("tracestate", "congo=t61rcWkgMzE"),
            ],
        )
        .await;
        assert_eq!(v["trace_id"], TRACE_ID);
        assert_eq!(v["tracestate"], "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
        for out in v["outgoing"].as_array().unwrap() {
            assert_eq!(
                out["tracestate"],
                json!(["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"])
            );
        }
        let mut headers = vec![("traceparent", TRACEPARENT)];
        headers.extend(three_lines.iter().map(|l| ("tracestate", *l)));
        let v = call(&url, &headers).await;
        assert_eq!(v["tracestate"], "r1=one,r2=two,r3=three");

        // An empty tracestate is accepted and not sent on.
        let v = call(&url, &[("traceparent", TRACEPARENT), ("tracestate", "")]).await;
        assert_eq!(v["trace_id"], TRACE_ID);
        assert_eq!(v["tracestate"], Value::Null);
        for out in v["outgoing"].as_array().unwrap() {
            assert_eq!(out["tracestate"], json!([]), "an empty list is not sent");
        }

        // 33 members over two lines: more than 32 makes the combined list invalid.
        let (line1, line2) = (first_16.join(","), last_17.join(","));
        let v = call(
            &url,
            &[
                ("traceparent", TRACEPARENT),
                ("tracestate", &line1),
                ("tracestate", &line2),
            ],
        )
        .await;
        assert_eq!(v["trace_id"], TRACE_ID, "the traceparent still holds");
        assert_eq!(v["tracestate"], Value::Null);
        // 32 are fine.
        let (line1, line2) = (first_16.join(","), last_17[..16].join(","));
        let v = call(
            &url,
            &[
                ("traceparent", TRACEPARENT),
                ("tracestate", &line1),
                ("tracestate", &line2),
            ],
        )
        .await;
        assert_eq!(v["tracestate"].as_str().unwrap().split(',').count(), 32);

        // Over 512 characters: whole entries go, those over 128 characters first; the header
        // is never dropped for being long.
        let mut list = long_list.clone();
        list.insert(5, over_128.clone());
        let (a, b) = list.split_at(11);
        let (line1, line2) = (a.join(","), b.join(","));
        let v = call(
            &url,
            &[
                ("traceparent", TRACEPARENT),
                ("tracestate", &line1),
                ("tracestate", &line2),
            ],
        )
        .await;
        assert_eq!(v["tracestate"], long_list.join(","));
        for out in v["outgoing"].as_array().unwrap() {
            assert_eq!(out["tracestate"], json!([long_list.join(",")]));
        }
        // A member longer than the grammar allows makes the list invalid.
        let too_long = format!("k=a,bad={}", "v".repeat(300));
        let v = call(
            &url,
            &[("traceparent", TRACEPARENT), ("tracestate", &too_long)],
        )
        .await;
        assert_eq!(v["tracestate"], Value::Null);
    }
}

#[tokio::test]
async fn each_outgoing_request_is_a_child_with_its_own_parent_id() {
    let up = upstream().await;
    for traced in [true, false] {
        let observer = Observer::new();
        let url = front(&observer, traced, up).await;
        let v = call(
            &url,
            &[("traceparent", TRACEPARENT), ("x-request-id", "req-9")],
        )
        .await;
        let outgoing = v["outgoing"].as_array().unwrap();
        let parents: Vec<&str> = outgoing
            .iter()
            .map(|o| {
                let tp = o["traceparent"][0].as_str().unwrap();
                assert!(tp.starts_with(&format!("00-{TRACE_ID}-")), "{tp}");
                assert_eq!(o["x-request-id"], json!(["req-9"]), "traced: {traced}");
                tp.split('-').nth(2).unwrap()
            })
            .collect();
        assert_ne!(parents[0], parents[1], "each request is its own child");
        assert!(!parents.contains(&"00f067aa0ba902b7"));
    }
}
