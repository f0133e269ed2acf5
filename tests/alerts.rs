//! The alert engine end to end: a real server, real requests, the engine on its own thread on
//! the real clock, and a local webhook receiver.
#![cfg(all(feature = "alerts", feature = "axum"))]

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tower_observe::alerts::{notify, AlertRule, AlertRules, Alerts, Figure, Severity};
use tower_observe::Observer;

#[path = "support/receiver.rs"]
mod receiver;
mod support;
use receiver::{Mode, Receiver};

fn get_json(url: &str) -> serde_json::Value {
    let body = std::process::Command::new("curl")
        .args(["-s", url])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
}

/// From the first failing request of a breach to the webhook receiving the firing
/// notification, with `for: 0` and the default 5 s tick; then the resolution, and what
/// `/v1/alerts` and `/health` show on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_is_notified_within_seconds_and_resolves() {
    let receiver = Receiver::start(Mode::Status(200));
    let rule = AlertRule::new("Errors", Figure::error_rate(Duration::from_secs(10)))
        .above(0.2)
        .min_requests(5)
        .severity(Severity::Critical)
        .summary("{{ $value | humanizePercentage }} of requests fail");
    let observer = Observer::builder()
        .alerts(
            Alerts::new(AlertRules::new().rule(rule))
                .channel(notify::Webhook::new(receiver.url("/hook")))
                .health(Some(Severity::Warning), Some(Severity::Critical)),
        )
        .unwrap()
        .build()
        .unwrap();
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .merge(observer.router())
        .layer(observer.layer());
    let addr = support::serve(app).await;
    let client = reqwest::Client::new();
    let hit = |path: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap();
        }
    };
    // Healthy traffic for a few ticks: nothing fires.
    for _ in 0..20 {
        hit("/ok").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(receiver.count(), 0);
    let alerts = get_json(&format!("http://{addr}/v1/alerts"));
    assert_eq!(alerts["rules"][0]["state"], "inactive", "{alerts}");

    // The breach: every request fails from now on.
    let breach = Instant::now();
    let mut fired = None;
    while breach.elapsed() < Duration::from_secs(30) {
        hit("/fail").await;
        if receiver.count() > 0 {
            fired = Some(breach.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let detection = fired.expect("no notification within 30 s of the breach");
    eprintln!("detection latency: {:.2} s", detection.as_secs_f64());
    let firing = receiver.wait_for(1)[0].json();
    assert_eq!(firing["status"], "firing");
    assert_eq!(firing["alerts"][0]["labels"]["alertname"], "Errors");
    assert_eq!(firing["alerts"][0]["labels"]["severity"], "critical");
    assert!(firing["alerts"][0]["annotations"]["summary"]
        .as_str()
        .unwrap()
        .ends_with("% of requests fail"));
    assert!(firing["alerts"][0]["generatorURL"]
        .as_str()
        .unwrap()
        .contains("/v1/stats/history?from="));

    let alerts = get_json(&format!("http://{addr}/v1/alerts"));
    assert_eq!(alerts["rules"][0]["state"], "firing", "{alerts}");
    assert_eq!(alerts["firing"], 1);
    assert!(!alerts["transitions"].as_array().unwrap().is_empty());
    assert_eq!(alerts["channels"][0]["kind"], "webhook");
    let health = get_json(&format!("http://{addr}/health"));
    assert_eq!(health["status"], "red", "{health}");
    assert_eq!(health["alerts"]["firing"][0], "Errors");

    // Recovery: healthy traffic until the 10 s window no longer breaches, while a load
    // balancer probes the red `/health` as often: its 503s are the observer's own endpoint,
    // not the application's errors, and must not keep the alert firing (nor would its
    // scrapes of `/metrics` count as the application's traffic).
    let recovery = Instant::now();
    while receiver.count() < 2 && recovery.elapsed() < Duration::from_secs(40) {
        hit("/ok").await;
        hit("/health").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        receiver.count(),
        2,
        "not resolved within 40 s of recovery while /health was probed"
    );
    let resolved = receiver.wait_for(2)[1].json();
    assert_eq!(resolved["status"], "resolved");
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(
        resolved["alerts"][0]["startsAt"],
        firing["alerts"][0]["startsAt"]
    );
    assert_eq!(
        resolved["alerts"][0]["fingerprint"],
        firing["alerts"][0]["fingerprint"]
    );
    eprintln!(
        "resolved {:.2} s after recovery",
        recovery.elapsed().as_secs_f64()
    );
    let alerts = get_json(&format!("http://{addr}/v1/alerts"));
    assert_eq!(alerts["rules"][0]["state"], "inactive");
    assert_eq!(alerts["channels"][0]["sent"], 2);
}
