//! Client-side cost per call: our client instrumentation against `reqwest-tracing`'s
//! middleware, measured in one run.
//!
//! ```text
//! cargo bench --bench client --all-features
//! ```
//!
//! - `client_in_process_*`: a `reqwest-middleware` chain whose last middleware answers at once
//!   (no network), so the figures are the middleware's own cost; first with no `tracing`
//!   subscriber, then with one installed (spans created and closed).
//! - `client_loopback`: real calls to an axum server on 127.0.0.1, with the bare
//!   `reqwest::Client` as baseline, to show the cost next to a real round trip.
//!
//! Read "added cost" = variant − `bare_*` of the same group.

#![allow(missing_docs)]

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http::Extensions;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use reqwest_tracing::TracingMiddleware;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_observe::Observer;

/// Answers every request with a small 200, without sending it.
struct Canned;

#[async_trait::async_trait]
impl Middleware for Canned {
    async fn handle(
        &self,
        _req: reqwest::Request,
        _extensions: &mut Extensions,
        _next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let res = http::Response::builder()
            .status(200)
            .header("content-length", "2")
            .body("ok")
            .unwrap();
        Ok(reqwest::Response::from(res))
    }
}

const URL: &str = "http://127.0.0.1:8080/v1/users/42";

fn bench_in_process(c: &mut Criterion, rt: &tokio::runtime::Runtime, observer: &Observer) {
    let chain = |with: &dyn Fn(ClientBuilder) -> ClientBuilder| {
        with(ClientBuilder::new(reqwest::Client::new()))
            .with(Canned)
            .build()
    };
    let variants: Vec<(&str, ClientWithMiddleware)> = vec![
        ("bare_middleware_chain", chain(&|b| b)),
        (
            "reqwest_tracing",
            chain(&|b| b.with(TracingMiddleware::default())),
        ),
        (
            "ours",
            chain(&|b| b.with(observer.client_layer().middleware())),
        ),
        (
            "ours_without_propagation",
            chain(&|b| b.with(observer.client_layer().propagate(false).middleware())),
        ),
        (
            "ours_with_retry_accounting",
            chain(&|b| {
                b.with(observer.retries("bench").reqwest_middleware())
                    .with(observer.client_layer().target("bench").middleware())
            }),
        ),
    ];
    for with_subscriber in [false, true] {
        if with_subscriber {
            // A subscriber that keeps span data, as any real one does, and writes nothing.
            use tracing_subscriber::layer::SubscriberExt;
            let subscriber = tracing_subscriber::registry()
                .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink));
            let _ = tracing::subscriber::set_global_default(subscriber);
        }
        let mut group = c.benchmark_group(if with_subscriber {
            "client_in_process_with_subscriber"
        } else {
            "client_in_process_no_subscriber"
        });
        group.measurement_time(Duration::from_secs(4));
        for (name, client) in &variants {
            group.bench_function(*name, |b| {
                b.iter(|| rt.block_on(async { client.get(URL).send().await.unwrap() }))
            });
        }
        group.finish();
    }
}

fn bench_loopback(c: &mut Criterion, rt: &tokio::runtime::Runtime, observer: &Observer) {
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/v1/users/{id}", get(|| async { "user" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    });
    let url = format!("http://{addr}/v1/users/42");
    let mut group = c.benchmark_group("client_loopback");
    group.measurement_time(Duration::from_secs(5));
    let bare = reqwest::Client::new();
    group.bench_function("bare_reqwest", |b| {
        b.iter(|| {
            rt.block_on(async { bare.get(&url).send().await.unwrap().bytes().await.unwrap() })
        })
    });
    let middleware = |with: &dyn Fn(ClientBuilder) -> ClientBuilder| {
        with(ClientBuilder::new(reqwest::Client::new())).build()
    };
    let variants: Vec<(&str, ClientWithMiddleware)> = vec![
        (
            "reqwest_tracing",
            middleware(&|b| b.with(TracingMiddleware::default())),
        ),
        (
            "ours_middleware",
            middleware(&|b| b.with(observer.client_layer().middleware())),
        ),
    ];
    for (name, client) in &variants {
        group.bench_function(*name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    client
                        .get(&url)
                        .send()
                        .await
                        .unwrap()
                        .bytes()
                        .await
                        .unwrap()
                })
            })
        });
    }
    let tower_client = ServiceBuilder::new()
        .layer(observer.client_layer())
        .service(reqwest::Client::new());
    group.bench_function("ours_tower_layer", |b| {
        b.iter(|| {
            rt.block_on(async {
                let req = reqwest::Request::new(http::Method::GET, url.parse().unwrap());
                let mut svc = tower_client.clone();
                let res = svc.ready().await.unwrap().call(req).await.unwrap();
                res.bytes().await.unwrap()
            })
        })
    });
    group.finish();
}

fn bench_client(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let observer = Observer::new();
    bench_loopback(c, &rt, &observer);
    bench_in_process(c, &rt, &observer);
}

criterion_group!(benches, bench_client);
criterion_main!(benches);
