//! Without axum: a plain hyper server, a hand-written router that sets `RouteTemplate`, the
//! observer's layer around it and its endpoints as a plain `tower::Service`.
#![cfg(feature = "axum")]

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use support::{eventually, sample};
use tower::{Layer, ServiceExt};
use tower_observe::endpoints::EndpointBody;
use tower_observe::{Observer, RouteTemplate};

/// A hand-written dispatcher: `/orders/<n>` is one route; `/metrics` and `/v1/stats` go to the
/// observer's endpoints service.
async fn app(
    observer: Observer,
    mut req: Request<tower_observe::server::RequestBody<Incoming>>,
) -> Result<Response<EndpointBody>, Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/metrics" || path == "/v1/stats" {
        return observer.endpoints().oneshot(req).await;
    }
    if path.starts_with("/orders/") {
        req.extensions_mut()
            .insert(RouteTemplate::new("/orders/{n}"));
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut res = Response::new(Full::new(body).boxed());
        res.extensions_mut()
            .insert(RouteTemplate::new("/orders/{n}"));
        return Ok(res);
    }
    let mut res = Response::new(Full::new(Bytes::from_static(b"no such page")).boxed());
    *res.status_mut() = StatusCode::NOT_FOUND;
    Ok(res)
}

#[tokio::test]
async fn plain_hyper_server_with_route_templates_and_endpoints() {
    let observer = Observer::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_observer = observer.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let observer = server_observer.clone();
            let svc = observer
                .layer()
                .layer(tower::service_fn(move |req| app(observer.clone(), req)));
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                    .await;
            });
        }
    });

    let client = reqwest::Client::new();
    for i in 0..10 {
        let res = client
            .post(format!("http://{addr}/orders/{i}"))
            .body("12345")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-request-id"].len(), 36);
        assert_eq!(res.text().await.unwrap(), "12345");
    }
    client
        .get(format!("http://{addr}/nothing/here"))
        .send()
        .await
        .unwrap();
    eventually(|| observer.stats().totals.requests == 11).await;

    let text = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = "http_server_request_duration_seconds_count";
    assert_eq!(
        sample(&text, count, &[("http_route", "/orders/{n}")]),
        Some(10.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, count, &[("http_route", "_UNMATCHED")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "http_server_request_body_size_bytes_sum",
            &[("http_route", "/orders/{n}")]
        ),
        Some(50.0)
    );

    let stats = client
        .get(format!("http://{addr}/v1/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), 200);
    let stats: serde_json::Value = stats.json().await.unwrap();
    assert_eq!(
        stats["routes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["route"] == "/orders/{n}")
            .count(),
        1
    );
}
