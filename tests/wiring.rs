//! Wiring mistakes fail loudly (issue 21), each tried as a user would make it: a channel URL
//! or SMTP setting that cannot work is refused when the observer is built, naming the channel
//! and the field; a rules error reads well through `?` in `main` (its `Debug`); a capability
//! that is off answers a JSON 404 that says how to turn it on; a misplaced layer, a history that
//! is not durable and a rule with nothing to read are warned about, in `/v1/stats`, `/health`
//! and the log; `/health` names every cause of its colour.
#![cfg(feature = "axum")]

#[cfg(feature = "alerts")]
#[path = "support/receiver.rs"]
mod receiver;
mod support;

use serde_json::Value;
use support::serve;
use tower_observe::Observer;

async fn get_json(url: &str) -> (u16, Value) {
    let res = reqwest::get(url).await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

#[cfg(feature = "alerts")]
mod channels {
    use tower_observe::alerts::notify::{Alertmanager, Email, PagerDuty, Slack, Webhook};
    use tower_observe::alerts::{AlertRules, Alerts, RuleError};
    use tower_observe::Observer;

    fn build(channel: impl Into<tower_observe::alerts::Channel>) -> Result<(), RuleError> {
        Observer::builder()
            .alerts(Alerts::new(AlertRules::recommended()).channel(channel))
            .map(|_| ())
    }

    fn field_of(result: Result<(), RuleError>) -> (String, &'static str, String) {
        match result {
            Err(RuleError::Channel {
                channel,
                field,
                reason,
            }) => (channel, field, reason),
            other => panic!("expected a channel error, got {other:?}"),
        }
    }

    #[test]
    fn channel_urls_without_http_scheme_or_host_are_refused_at_build_naming_the_field() {
        for (url, says) in [
            ("not a url", "not a URL"),
            ("ftp://hooks.example.com/alerts", "scheme `ftp`"),
            ("localhost:9099/hooks", "scheme"),
            ("", "empty"),
            ("/hooks", "no scheme"),
        ] {
            let (channel, field, reason) = field_of(build(Webhook::new(url)));
            assert_eq!((channel.as_str(), field), ("webhook", "url"), "{url}");
            assert!(reason.contains(says), "{url}: {reason}");
        }
        let (channel, field, _) = field_of(build(
            Slack::new("hooks.slack.com/services/T/B/X").name("ops"),
        ));
        assert_eq!((channel.as_str(), field), ("ops", "webhook_url"));
        let (_, field, _) = field_of(build(Alertmanager::new("alertmanager:9093")));
        assert_eq!(field, "base_url");
        let (_, field, _) = field_of(build(
            PagerDuty::new("KEY").endpoint("ftp://events.example.com"),
        ));
        assert_eq!(field, "endpoint");
        // Valid ones pass.
        build(Webhook::new("https://hooks.example.com/alerts?token=x")).unwrap();
        build(Alertmanager::new("http://127.0.0.1:9093")).unwrap();
    }

    #[test]
    fn a_secret_in_a_refused_url_is_never_quoted() {
        let err = build(Webhook::new(
            "ftp://user:s3cr3t@example.com/hook?token=s3cr3t",
        ))
        .unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        assert!(!format!("{err:?}").contains("s3cr3t"), "{err:?}");
    }

    #[test]
    fn tokens_must_be_one_word() {
        let (_, field, reason) = field_of(build(PagerDuty::new("")));
        assert_eq!(field, "routing_key");
        assert!(reason.contains("empty"), "{reason}");
        let (_, field, reason) = field_of(build(PagerDuty::new("R0UT1NG\n")));
        assert_eq!(field, "routing_key");
        assert!(reason.contains("whitespace"), "{reason}");
        assert!(!reason.contains("R0UT1NG"), "{reason}");
        let (_, field, _) = field_of(build(
            Webhook::new("https://hooks.example.com").header("Authorization", "Bearer a\nb"),
        ));
        assert_eq!(field, "header");
    }

    #[test]
    fn smtp_settings_are_checked_at_build() {
        let ok = || {
            Email::new("smtp.example.com")
                .from("alerts@example.com")
                .to("oncall@example.com")
        };
        build(ok()).unwrap();
        for (email, expected) in [
            (
                Email::new("").from("a@example.com").to("b@example.com"),
                "smtp_host",
            ),
            (
                Email::new("smtp://smtp.example.com:587")
                    .from("a@example.com")
                    .to("b@example.com"),
                "smtp_host",
            ),
            (ok().port(0), "port"),
            (Email::new("smtp.example.com").to("b@example.com"), "from"),
            (
                Email::new("smtp.example.com")
                    .from("not an address")
                    .to("b@example.com"),
                "from",
            ),
            (Email::new("smtp.example.com").from("a@example.com"), "to"),
            (ok().to("oncall at example"), "to"),
            (ok().credentials("", "pw"), "credentials.user"),
        ] {
            let (channel, field, reason) = field_of(build(email));
            assert_eq!((channel.as_str(), field), ("email", expected), "{reason}");
        }
    }

    #[test]
    fn a_rules_error_reads_well_through_debug() {
        let path = std::env::temp_dir().join("tower-observe-wiring-missing-rules.toml");
        let err = AlertRules::from_file(&path).unwrap_err();
        let debug = format!("{err:?}");
        // What `?` in `main` prints: the message itself, no escaped quotes, a type tag.
        assert!(debug.starts_with("RuleError: alert rules in "), "{debug}");
        assert!(debug.contains(&path.display().to_string()), "{debug}");
        assert!(!debug.contains("\\\""), "{debug}");
        assert!(matches!(err, RuleError::File { ref path, .. } if path.ends_with(".toml")));

        let err = AlertRules::from_toml("[[rule]]\nname = \"X\"\nfigure = \"error_rate\"\nwindow = \"5 minutes\"\nabove = 0.1\n")
            .unwrap_err();
        let debug = format!("{err:?}");
        assert!(debug.starts_with("RuleError: "), "{debug}");
        assert!(debug.contains('\n') || !debug.contains("\\n"), "{debug}");
        assert_eq!(debug, format!("RuleError: {err}"));
    }
}

#[tokio::test]
async fn the_routes_of_a_capability_that_is_off_answer_a_json_404_naming_it() {
    let observer = Observer::new();
    let app = axum::Router::new()
        .merge(observer.router())
        .layer(observer.layer());
    let base = format!("http://{}", serve(app).await);
    let (status, body) = get_json(&format!("{base}/v1/stats/history")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "history is off");
    assert_eq!(
        body["enable"],
        "ObserverBuilder::history(...) with feature `history`"
    );
    let (status, body) = get_json(&format!("{base}/v1/alerts")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("alerting is off"))
    );
    let (status, body) = get_json(&format!("{base}/v1/stats/stream")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("the dashboard is off"))
    );
}

#[cfg(feature = "history")]
mod history {
    use super::{get_json, serve};
    use tower_observe::history::HistoryOptions;
    use tower_observe::{BuildError, Observer};

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tower-observe-wiring-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn a_history_file_in_a_missing_directory_is_created_and_durable() {
        let dir = scratch("missing");
        let path = dir.join("nested/deeper/history.redb");
        let observer = Observer::builder()
            .history(HistoryOptions::file(&path).require_durable())
            .build()
            .unwrap();
        assert!(path.is_file());
        assert!(observer.history().unwrap().is_durable());
        assert!(observer.warnings().is_empty());
        let app = axum::Router::new()
            .merge(observer.router())
            .layer(observer.layer());
        let base = format!("http://{}", serve(app).await);
        let (status, body) = get_json(&format!("{base}/v1/stats/history")).await;
        assert_eq!(
            (status, body["durable"].as_bool()),
            (200, Some(true)),
            "{body}"
        );
        let (_, health) = get_json(&format!("{base}/health")).await;
        assert_eq!(health["reasons"], serde_json::json!([]), "{health}");
        drop(observer);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn with_require_durable_an_unopenable_path_is_a_build_error() {
        let dir = scratch("unopenable");
        std::fs::create_dir_all(&dir).unwrap();
        // A directory where the file should be.
        let err = Observer::builder()
            .history(HistoryOptions::file(&dir).require_durable())
            .build()
            .unwrap_err();
        match &err {
            BuildError::Capability {
                capability, field, ..
            } => assert_eq!((*capability, *field), ("history", "path")),
            other => panic!("{other:?}"),
        }
        let debug = format!("{err:?}");
        assert!(
            debug.starts_with("BuildError: history, setting `path`: cannot open"),
            "{debug}"
        );
        assert!(debug.contains(&dir.display().to_string()), "{debug}");
        // Under a regular file: its "directory" cannot be created.
        let file = dir.join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let err = Observer::builder()
            .history(HistoryOptions::file(file.join("history.redb")).require_durable())
            .build()
            .unwrap_err();
        assert!(
            err.to_string().contains("cannot create the directory"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn without_require_durable_the_fallback_to_memory_is_a_warning_everywhere() {
        let dir = scratch("fallback");
        std::fs::create_dir_all(&dir).unwrap();
        let observer = Observer::builder()
            .history(HistoryOptions::file(&dir))
            .build()
            .unwrap();
        assert!(!observer.history().unwrap().is_durable());
        let app = axum::Router::new()
            .merge(observer.router())
            .layer(observer.layer());
        let base = format!("http://{}", serve(app).await);
        let (_, body) = get_json(&format!("{base}/v1/stats/history")).await;
        assert_eq!(body["durable"], false, "{body}");
        let (_, stats) = get_json(&format!("{base}/v1/stats")).await;
        let warnings = stats["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1, "{stats}");
        assert_eq!(warnings[0]["code"], "history_not_durable");
        assert!(
            warnings[0]["message"]
                .as_str()
                .unwrap()
                .contains("require_durable"),
            "{stats}"
        );
        let (status, health) = get_json(&format!("{base}/health")).await;
        assert_eq!((status, health["status"].as_str()), (200, Some("green")));
        assert!(
            health["reasons"][0]
                .as_str()
                .unwrap()
                .starts_with("history is kept in memory"),
            "{health}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn history_in_memory_by_choice_is_a_health_reason_not_a_warning() {
        let observer = Observer::builder()
            .history(HistoryOptions::in_memory())
            .build()
            .unwrap();
        assert!(observer.warnings().is_empty());
        let app = axum::Router::new()
            .merge(observer.router())
            .layer(observer.layer());
        let base = format!("http://{}", serve(app).await);
        let (_, body) = get_json(&format!("{base}/v1/stats/history")).await;
        assert_eq!(body["durable"], false);
        let (_, health) = get_json(&format!("{base}/health")).await;
        assert_eq!(health["status"], "green");
        assert!(
            health["reasons"][0]
                .as_str()
                .unwrap()
                .contains("in memory only"),
            "{health}"
        );
    }
}

#[tokio::test]
async fn health_reasons_name_the_threshold_the_error_rate_crossed() {
    use axum::http::StatusCode;
    use axum::routing::get;
    let observer = Observer::new();
    let app = axum::Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .merge(observer.router())
        .layer(observer.layer());
    let base = format!("http://{}", serve(app).await);
    let client = reqwest::Client::new();
    for i in 0..20 {
        let path = if i < 3 { "fail" } else { "ok" };
        client.get(format!("{base}/{path}")).send().await.unwrap();
    }
    support::eventually(|| observer.stats().totals.requests >= 20).await;
    // 3 of 20: 15 % > 10 %: red.
    let (status, health) = get_json(&format!("{base}/health")).await;
    assert_eq!(
        (status, health["status"].as_str()),
        (503, Some("red")),
        "{health}"
    );
    assert_eq!(
        health["reasons"][0],
        "error rate 15% > red threshold 10% (3 of 20 requests in the last minute)",
        "{health}"
    );
    // 3 of 40 (the red /health probe is the observer's own request, kept apart from the
    // application's error rate): 7.5 % ≥ 5 %: yellow.
    for _ in 0..20 {
        client.get(format!("{base}/ok")).send().await.unwrap();
    }
    support::eventually(|| observer.stats().totals.requests >= 40).await;
    let (_, health) = get_json(&format!("{base}/health")).await;
    assert_eq!(health["status"], "yellow", "{health}");
    assert_eq!(
        health["reasons"][0],
        "error rate 7.5% ≥ yellow threshold 5% (3 of 40 requests in the last minute)",
        "{health}"
    );
}

/// The `WARN` lines logged while `f` runs on this thread (the servers of these tests run on
/// the test's current-thread runtime, so on this thread too).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(needle)
            .count()
    }
}

fn codes(stats: &Value) -> Vec<String> {
    stats["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_layer_added_before_the_routes_is_warned_about_once_and_shown() {
    use axum::routing::get;
    use std::time::Duration;
    use tower_observe::clock::ManualClock;
    let logs = Captured::default();
    let _guard = logs.install();
    let clock = ManualClock::new();
    let observer = Observer::builder().clock(clock.clone()).build().unwrap();
    // The mistake: Router::layer wraps only what was added before it.
    let app = axum::Router::new()
        .layer(observer.layer())
        .route("/hello", get(|| async { "hi" }))
        .merge(observer.router());
    let base = format!("http://{}", serve(app).await);
    for _ in 0..3 {
        reqwest::get(format!("{base}/hello")).await.unwrap();
    }
    let (_, stats) = get_json(&format!("{base}/v1/stats")).await;
    assert_eq!(stats["totals"]["requests"], 0, "nothing recorded: {stats}");
    // Within the grace period (a separate admin listener may not have had traffic yet).
    assert!(codes(&stats).is_empty(), "{stats}");
    clock.advance(Duration::from_secs(61));
    let (_, stats) = get_json(&format!("{base}/v1/stats")).await;
    assert_eq!(codes(&stats), ["layer_not_in_front"], "{stats}");
    let message = stats["warnings"][0]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains(".layer(observer.layer()) last"),
        "{message}"
    );
    let (status, health) = get_json(&format!("{base}/health")).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("green")));
    assert_eq!(
        health["reasons"][0].as_str(),
        Some(message.as_str()),
        "{health}"
    );
    for _ in 0..3 {
        get_json(&format!("{base}/v1/stats")).await;
        reqwest::get(format!("{base}/metrics")).await.unwrap();
    }
    assert_eq!(logs.count("layer_not_in_front"), 1, "logged once");
    assert_eq!(observer.warnings().len(), 1);
}

#[tokio::test]
async fn a_layer_wrapping_the_router_from_outside_is_warned_about() {
    use axum::routing::get;
    let logs = Captured::default();
    let _guard = logs.install();
    let observer = Observer::new();
    let router = axum::Router::new()
        .route("/hello", get(|| async { "hi" }))
        .merge(observer.router());
    // The mistake: the layer outside the router, where no route is matched yet.
    let app = axum::Router::new().fallback_service(tower::Layer::layer(&observer.layer(), router));
    let base = format!("http://{}", serve(app).await);
    for _ in 0..3 {
        reqwest::get(format!("{base}/hello")).await.unwrap();
    }
    support::eventually(|| observer.stats().totals.requests >= 3).await;
    let (_, stats) = get_json(&format!("{base}/v1/stats")).await;
    assert_eq!(codes(&stats), ["layer_outside_router"], "{stats}");
    assert!(stats["routes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["route"] == "_UNMATCHED"));
    let (_, health) = get_json(&format!("{base}/health")).await;
    assert_eq!(health["status"], "green");
    assert!(health["reasons"][0]
        .as_str()
        .unwrap()
        .contains("wraps the axum Router from outside"));
    get_json(&format!("{base}/v1/stats")).await;
    assert_eq!(logs.count("layer_outside_router"), 1, "logged once");
}

#[tokio::test]
async fn a_well_wired_app_has_no_warning_even_with_the_endpoints_on_another_listener() {
    use axum::routing::get;
    let observer = Observer::new();
    let app = axum::Router::new()
        .route("/hello", get(|| async { "hi" }))
        .merge(observer.router())
        .layer(observer.layer());
    let base = format!("http://{}", serve(app).await);
    // The endpoints on an admin listener, without the layer.
    let admin = format!("http://{}", serve(observer.router()).await);
    reqwest::get(format!("{base}/hello")).await.unwrap();
    support::eventually(|| observer.stats().totals.requests >= 1).await;
    let (_, stats) = get_json(&format!("{base}/v1/stats")).await;
    assert!(codes(&stats).is_empty(), "{stats}");
    let (_, stats) = get_json(&format!("{admin}/v1/stats")).await;
    assert!(codes(&stats).is_empty(), "{stats}");
}

#[cfg(feature = "alerts")]
mod rules {
    use super::{get_json, serve, Captured};
    use tower_observe::alerts::{AlertRules, Alerts};
    use tower_observe::Observer;

    #[tokio::test]
    async fn the_cpu_rule_without_process_metrics_is_reported_everywhere() {
        let logs = Captured::default();
        let _guard = logs.install();
        let observer = Observer::builder()
            .alerts(Alerts::new(AlertRules::recommended()))
            .unwrap()
            .build()
            .unwrap();
        // Logged when the observer is built, not at the first request.
        assert_eq!(logs.count("rule_reads_unrecorded_metric"), 1);
        let warnings = observer.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].code, "rule_reads_unrecorded_metric");
        assert!(
            warnings[0]
                .message
                .starts_with("alert rule \"HighCpuUtilization\" reads process_cpu_"),
            "{}",
            warnings[0].message
        );
        assert!(warnings[0].message.contains(".process_metrics()"));
        let app = axum::Router::new()
            .merge(observer.router())
            .layer(observer.layer());
        let base = format!("http://{}", serve(app).await);
        let (_, alerts) = get_json(&format!("{base}/v1/alerts")).await;
        let rules = alerts["rules"].as_array().unwrap();
        let cpu = rules
            .iter()
            .find(|r| r["name"] == "HighCpuUtilization")
            .unwrap();
        assert!(
            cpu["note"]
                .as_str()
                .unwrap()
                .contains("the rule can never fire"),
            "{cpu}"
        );
        assert!(rules
            .iter()
            .filter(|r| r["name"] != "HighCpuUtilization")
            .all(|r| r.get("note").is_none()));
        let (_, stats) = get_json(&format!("{base}/v1/stats")).await;
        assert_eq!(stats["warnings"][0]["code"], "rule_reads_unrecorded_metric");
        let (_, health) = get_json(&format!("{base}/health")).await;
        assert_eq!(health["status"], "green");
        assert!(health["reasons"][0]
            .as_str()
            .unwrap()
            .contains("HighCpuUtilization"));
        assert_eq!(logs.count("rule_reads_unrecorded_metric"), 1, "logged once");
    }

    #[cfg(feature = "process")]
    #[test]
    fn with_process_metrics_the_cpu_rule_has_nothing_to_report() {
        let observer = Observer::builder()
            .alerts(Alerts::new(AlertRules::recommended()))
            .unwrap()
            .process_metrics()
            .build()
            .unwrap();
        assert!(observer.warnings().is_empty(), "{:?}", observer.warnings());
    }
}

#[cfg(feature = "alerts")]
#[tokio::test]
async fn a_resolved_notification_carries_the_value_that_resolved_it() {
    use axum::http::StatusCode;
    use axum::routing::get;
    use receiver::{Mode, Receiver};
    use std::time::Duration;
    use tower_observe::alerts::{notify, AlertRule, AlertRules, Alerts, Figure};
    use tower_observe::clock::ManualClock;

    let receiver = Receiver::start(Mode::Status(200));
    let clock = ManualClock::new();
    let rule = AlertRule::new("Errors", Figure::error_rate(Duration::from_secs(60)))
        .above(0.2)
        .min_requests(5)
        .summary("Error rate is {{ $value | humanizePercentage }}");
    let observer = Observer::builder()
        .clock(clock.clone())
        .alerts(
            Alerts::new(AlertRules::new().rule(rule))
                .channel(notify::Webhook::new(receiver.url("/hook"))),
        )
        .unwrap()
        .build()
        .unwrap();
    let app = axum::Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .layer(observer.layer());
    let base = format!("http://{}", serve(app).await);
    let client = reqwest::Client::new();
    observer.evaluate_alerts();
    // A sampling (ours, or the engine thread's first) at t=0 before any request: the failures'
    // series are then first seen later, and counted from zero at the sampling before.
    clock.advance(Duration::from_secs(1));
    for _ in 0..10 {
        client.get(format!("{base}/fail")).send().await.unwrap();
    }
    support::eventually(|| observer.stats().totals.requests >= 10).await;
    clock.advance(Duration::from_secs(10));
    observer.evaluate_alerts();
    let firing = receiver.wait_for(1)[0].json();
    assert_eq!(firing["status"], "firing");
    assert_eq!(
        firing["alerts"][0]["annotations"]["summary"],
        "Error rate is 100%"
    );
    // 10 failed of 100 now: 10 % < 20 %, resolved.
    for _ in 0..90 {
        client.get(format!("{base}/ok")).send().await.unwrap();
    }
    support::eventually(|| observer.stats().totals.requests >= 100).await;
    clock.advance(Duration::from_secs(10));
    observer.evaluate_alerts();
    let got = receiver.wait_for(2);
    let resolved = got
        .iter()
        .map(|r| r.json())
        .find(|j| j["status"] == "resolved")
        .expect("a resolved notification");
    // The value that resolved it, not the last firing one ("Error rate is 100%").
    assert_eq!(
        resolved["alerts"][0]["annotations"]["summary"], "Error rate is 10%",
        "{resolved}"
    );
}

#[cfg(all(feature = "dashboard", feature = "history"))]
#[tokio::test]
async fn the_dashboard_shows_the_warnings_of_the_stats() {
    use tower_observe::dashboard::DashboardOptions;
    use tower_observe::history::HistoryOptions;
    let dir =
        std::env::temp_dir().join(format!("tower-observe-wiring-dash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let observer = Observer::builder()
        .history(HistoryOptions::file(&dir))
        .dashboard(DashboardOptions::new())
        .build()
        .unwrap();
    let app = axum::Router::new()
        .merge(observer.router())
        .layer(observer.layer());
    let base = format!("http://{}", serve(app).await);
    let page = reqwest::get(format!("{base}/dashboard"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"id="warnings""#),
        "the page has a warnings block"
    );
    let script = reqwest::get(format!("{base}/dashboard/assets/app.js"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(script.contains("renderWarnings(s.warnings)"));
    // What the block reads, from the stream's snapshot (the same as /v1/stats).
    let (_, stats) = get_json(&format!("{base}/v1/stats")).await;
    assert_eq!(stats["warnings"][0]["code"], "history_not_durable");
    let _ = std::fs::remove_dir_all(&dir);
}
