//! Wiring mistakes fail loudly (issue 21), each tried as a user would make it: a channel URL
//! or SMTP setting that cannot work is refused when the observer is built, naming the channel
//! and the field; a rules error reads well through `?` in `main` (its `Debug`); a capability
//! that is off answers a JSON 404 that says how to turn it on; a misplaced layer, a history that
//! is not durable and a rule with nothing to read are warned about, in `/v1/stats`, `/health`
//! and the log; `/health` names every cause of its colour.
#![cfg(feature = "axum")]

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
