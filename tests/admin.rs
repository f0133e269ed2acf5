//! The admin listener over real servers on 127.0.0.1: it serves the observability routes while
//! the application's listener serves only its own (and `/health/live`), the observer's own
//! requests are still recorded apart, and a graceful shutdown lets a request in progress
//! finish and then ends the listener.
#![cfg(feature = "admin")]

mod support;

use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use serde_json::Value;
use support::{eventually, sample, serve};
use tower_observe::health::{HealthOptions, LIVE_PATH};
use tower_observe::names::{
    HTTP_ROUTE, HTTP_SERVER_REQUEST_DURATION, OBSERVER_ENDPOINT_REQUEST_DURATION,
};
use tower_observe::Observer;

/// The application: its routes and the liveness probe, not the observability routes.
fn app(observer: &Observer) -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route(LIVE_PATH, get(|| async { "alive" }))
        .layer(observer.layer())
}

async fn status(client: &reqwest::Client, url: String) -> u16 {
    client.get(url).send().await.unwrap().status().as_u16()
}

async fn stats(addr: std::net::SocketAddr) -> Value {
    reqwest::get(format!("http://{addr}/v1/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_admin_listener_serves_the_routes_the_app_listener_does_not() {
    let observer = Observer::builder()
        .admin_addr(([127, 0, 0, 1], 0))
        .reset_token("admin-secret")
        .build()
        .unwrap();
    let app_addr = serve(app(&observer)).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = observer
        .serve_admin(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    let admin_addr = admin.local_addr();
    assert_ne!(admin_addr.port(), 0, "the bound port is reported");
    assert_ne!(admin_addr, app_addr);

    let client = reqwest::Client::new();
    for _ in 0..3 {
        assert_eq!(
            status(&client, format!("http://{app_addr}/hello")).await,
            200
        );
    }
    assert_eq!(
        status(&client, format!("http://{app_addr}{LIVE_PATH}")).await,
        200
    );
    for path in ["/metrics", "/v1/stats", "/health", "/v1/stats/reset"] {
        assert_eq!(
            status(&client, format!("http://{app_addr}{path}")).await,
            404,
            "{path} is not on the application's port"
        );
    }
    for path in ["/metrics", "/v1/stats", "/health", LIVE_PATH] {
        assert_eq!(
            status(&client, format!("http://{admin_addr}{path}")).await,
            200,
            "{path} is on the admin port"
        );
    }
    #[cfg(feature = "dashboard")]
    {
        // Without `ObserverBuilder::dashboard` its path says how to turn it on.
        let res = client
            .get(format!("http://{admin_addr}/dashboard"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        assert!(res.text().await.unwrap().contains("dashboard"));
    }
    let reset = client
        .post(format!("http://{admin_addr}/v1/stats/reset"))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200, "admin routes are on the admin port");
    assert_eq!(
        status(&client, format!("http://{admin_addr}/hello")).await,
        404
    );
    assert_eq!(
        status(&client, format!("http://{admin_addr}/nope")).await,
        404
    );

    // After the reset: two application requests, and admin requests kept apart.
    assert_eq!(
        status(&client, format!("http://{app_addr}/hello")).await,
        200
    );
    assert_eq!(
        status(&client, format!("http://{app_addr}/hello")).await,
        200
    );
    let mut snapshot = Value::Null;
    eventually(|| {
        snapshot = serde_json::to_value(observer.stats()).unwrap();
        snapshot["totals"]["requests"] == 2
    })
    .await;
    let stats = stats(admin_addr).await;
    assert_eq!(stats["totals"]["requests"], 2, "{stats}");
    // Routes seen before the reset stay listed, at zero.
    let routes: Vec<&str> = stats["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["requests"].as_u64() > Some(0))
        .map(|r| r["route"].as_str().unwrap())
        .collect();
    assert_eq!(
        routes,
        ["/hello"],
        "admin requests (and the admin 404s) are not routes"
    );
    // The reset itself, /hello and /nope on the admin port, then this /v1/stats: the
    // observer's own, as OwnEndpoints::Apart says.
    assert!(
        stats["observer_endpoints"]["requests"].as_u64().unwrap() >= 3,
        "{stats}"
    );
    assert!(stats["warnings"].as_array().unwrap().is_empty(), "{stats}");

    let text = client
        .get(format!("http://{admin_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = format!("{HTTP_SERVER_REQUEST_DURATION}_count");
    assert_eq!(sample(&text, &count, &[(HTTP_ROUTE, "/hello")]), Some(5.0));
    // The scrapes are the observer's own endpoint: a family of their own.
    assert_eq!(sample(&text, &count, &[(HTTP_ROUTE, "/metrics")]), None);
    let own = format!("{OBSERVER_ENDPOINT_REQUEST_DURATION}_count");
    assert!(sample(&text, &own, &[(HTTP_ROUTE, "/metrics")]).unwrap() >= 1.0);
    assert_eq!(
        sample(
            &text,
            &count,
            &[
                (HTTP_ROUTE, "_UNMATCHED"),
                ("http_response_status_code", "200")
            ]
        ),
        None
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), admin)
        .await
        .expect("the listener ends")
        .unwrap();
    assert!(
        client
            .get(format!("http://{admin_addr}/metrics"))
            .send()
            .await
            .is_err(),
        "nothing listens any more"
    );
    assert_eq!(
        status(&client, format!("http://{app_addr}/hello")).await,
        200
    );
}

#[tokio::test]
async fn graceful_shutdown_lets_a_request_in_progress_finish() {
    let observer = Observer::builder()
        .admin_addr(([127, 0, 0, 1], 0))
        .health(HealthOptions::new().check("slow", || {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok(())
            })
        }))
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = observer
        .serve_admin(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    let addr = admin.local_addr();
    let slow = tokio::spawn(async move { reqwest::get(format!("http://{addr}/health")).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), admin)
        .await
        .expect("the listener ends")
        .unwrap();
    let response = slow
        .await
        .unwrap()
        .expect("the request in progress got its answer");
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() < tower_observe::admin::ADMIN_SHUTDOWN_GRACE,
        "it ended when the request was done, not at the grace's end"
    );
}

#[tokio::test]
async fn without_an_address_serve_admin_says_how_to_set_one() {
    let observer = Observer::new();
    let err = observer.serve_admin(async {}).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(
        err.to_string().contains("TOWER_OBSERVE_ADMIN_ADDR"),
        "{err}"
    );

    // A listener bound by the caller works without one.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = observer
        .serve_admin_on(listener, async {
            let _ = stopped.await;
        })
        .unwrap();
    let metrics = reqwest::get(format!("http://{}/metrics", admin.local_addr()))
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    stop.send(()).unwrap();
    admin.await.unwrap();
}
