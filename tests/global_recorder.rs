//! The observer's registry installed as the global `metrics` recorder: the application's own
//! `metrics::counter!` calls show up on `/metrics` next to the HTTP metrics. (Its own test
//! binary, because a global recorder can be installed once per process.)
#![cfg(feature = "axum")]

mod support;

use axum::routing::get;
use axum::Router;
use support::{eventually, sample, serve};
use tower_observe::Observer;

#[tokio::test]
async fn user_metrics_appear_on_the_metrics_endpoint() {
    let observer = Observer::new();
    metrics::set_global_recorder(observer.registry().unwrap().clone()).unwrap();

    let app = Router::new()
        .route(
            "/orders",
            get(|| async {
                metrics::counter!("shop_orders_total", "kind" => "book").increment(1);
                "ordered"
            }),
        )
        .merge(observer.router())
        .layer(observer.layer());
    let addr = serve(app).await;
    for _ in 0..3 {
        reqwest::get(format!("http://{addr}/orders")).await.unwrap();
    }
    eventually(|| observer.stats().totals.requests == 3).await;
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(&text, "shop_orders_total", &[("kind", "book")]),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            "http_server_request_duration_seconds_count",
            &[("http_route", "/orders")]
        ),
        Some(3.0)
    );
}
