//! Notification channels against local receivers, a real Alertmanager and a real SMTP server.
#![cfg(feature = "alerts")]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

#[path = "support/pki.rs"]
mod pki;
#[path = "support/receiver.rs"]
mod receiver;
use receiver::{wait_until, Mode, Received, Receiver};
use tower_observe::alerts::notify::{
    Alertmanager, Channel, ChannelStatus, Email, Notifier, PagerDuty, Slack, Tls, Webhook,
};
use tower_observe::alerts::{
    AlertEvent, AlertRules, Alerts, EventStatus, FailedRequest, RuleError, Severity,
};
use tower_observe::Observer;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// The dashboard's view of the failed request in [`event`].
const VIEW: &str = "http://svc.example:8080/dashboard#request=4bf92f3577b34da6a3ce929d0e0e4736";

fn event(status: EventStatus) -> AlertEvent {
    let labels = BTreeMap::from([
        ("alertname".to_owned(), "HighErrorRate".to_owned()),
        ("http_route".to_owned(), "/orders/{id}".to_owned()),
        ("severity".to_owned(), "critical".to_owned()),
    ]);
    let starts_at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_451_803_250);
    AlertEvent {
        rule: "HighErrorRate".into(),
        status,
        severity: Severity::Critical,
        labels,
        annotations: BTreeMap::from([
            (
                "summary".to_owned(),
                "Error rate 13.04% on /orders/{id} <5xx> & more".to_owned(),
            ),
            (
                "description".to_owned(),
                "More than 10% of requests failed for 5m.".to_owned(),
            ),
        ]),
        starts_at,
        ends_at: (status == EventStatus::Resolved).then(|| starts_at + Duration::from_secs(600)),
        // A resolved event carries the value that resolved it, and the last firing one.
        value: if status == EventStatus::Resolved {
            0.031
        } else {
            0.1304
        },
        firing_value: (status == EventStatus::Resolved).then_some(0.1304),
        fingerprint: "0123456789abcdef".into(),
        links: vec![(
            "History".into(),
            "http://svc.example:8080/v1/stats/history?route=/orders&window=1h".into(),
        )],
        generator_url: "http://svc.example:8080/v1/alerts".into(),
        failed_requests: vec![FailedRequest {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            view_url: Some(VIEW.into()),
        }],
    }
}

/// An event of another alert, `i` making its labels and fingerprint unique.
fn event_n(i: usize) -> AlertEvent {
    let mut e = event(EventStatus::Firing);
    e.labels.insert("instance".into(), format!("i{i}"));
    e.fingerprint = format!("{i:016x}");
    e
}

/// Fast retries for the failure tests.
fn quick<C>(c: C) -> C
where
    C: Quick,
{
    c.quick()
}

trait Quick {
    fn quick(self) -> Self;
}

macro_rules! quick_impl {
    ($($ty:ty),*) => {$(
        impl Quick for $ty {
            fn quick(self) -> Self {
                self.timeout(Duration::from_millis(500))
                    .connect_timeout(Duration::from_millis(300))
                    .retries(2)
                    .backoff(Duration::from_millis(10), Duration::from_millis(50))
            }
        }
    )*};
}
quick_impl!(Webhook, Slack, PagerDuty, Alertmanager, Email);

fn status_of(notifier: &Notifier, name: &str) -> ChannelStatus {
    notifier
        .statuses()
        .into_iter()
        .find(|s| s.name == name)
        .expect("channel status")
}

/// `alert_notifications_total{channel, result}` as rendered on /metrics.
fn notifications(observer: &Observer, channel: &str, result: &str) -> f64 {
    let text = observer.render_metrics().unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("alert_notifications_total{"))
        .filter(|l| {
            l.contains(&format!("channel=\"{channel}\""))
                && l.contains(&format!("result=\"{result}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

// ---------------------------------------------------------------------------------------------
// Payloads

#[test]
fn webhook_posts_alertmanager_v4_payload() {
    let receiver = Receiver::start(Mode::Status(200));
    let observer = Observer::new();
    let notifier = Notifier::new(
        vec![Webhook::new(receiver.url("/hook?token=secret"))
            .header("Authorization", "Bearer s3cr3t")
            .into()],
        &observer,
        Some("http://svc.example:8080".into()),
    );
    notifier.dispatch(&event(EventStatus::Firing));
    let firing = receiver.wait_for(1);
    notifier.dispatch(&event(EventStatus::Resolved));
    let got = receiver.wait_for(2);
    assert_eq!(firing[0].path, "/hook?token=secret");
    assert_eq!(got[0].header("authorization"), Some("Bearer s3cr3t"));
    assert_eq!(got[0].header("content-type"), Some("application/json"));

    for (i, status) in ["firing", "resolved"].into_iter().enumerate() {
        let body = got[i].json();
        let keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "alerts",
            "commonAnnotations",
            "commonLabels",
            "externalURL",
            "groupKey",
            "groupLabels",
            "receiver",
            "status",
            "truncatedAlerts",
            "version",
        ];
        expected.sort_unstable();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        assert_eq!(keys_sorted, expected);
        assert_eq!(body["version"], "4");
        assert_eq!(body["receiver"], "webhook");
        assert_eq!(body["status"], status);
        assert_eq!(body["externalURL"], "http://svc.example:8080");
        assert_eq!(body["truncatedAlerts"], 0);
        assert_eq!(
            body["groupKey"],
            r#"{}:{alertname="HighErrorRate", http_route="/orders/{id}", severity="critical"}"#
        );
        assert_eq!(body["commonLabels"]["alertname"], "HighErrorRate");
        assert_eq!(body["groupLabels"]["severity"], "critical");
        assert_eq!(
            body["commonAnnotations"]["description"],
            "More than 10% of requests failed for 5m."
        );
        let alerts = body["alerts"].as_array().unwrap();
        assert_eq!(alerts.len(), 1);
        let alert = &alerts[0];
        let mut alert_keys: Vec<&str> = alert
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        alert_keys.sort_unstable();
        assert_eq!(
            alert_keys,
            [
                "annotations",
                "endsAt",
                "fingerprint",
                "generatorURL",
                "labels",
                "startsAt",
                "status"
            ]
        );
        assert_eq!(alert["status"], status);
        assert_eq!(alert["labels"]["http_route"], "/orders/{id}");
        assert_eq!(
            alert["annotations"]["summary"],
            "Error rate 13.04% on /orders/{id} <5xx> & more"
        );
        assert_eq!(alert["startsAt"], "2026-11-23T16:36:43.250Z");
        assert_eq!(alert["generatorURL"], "http://svc.example:8080/v1/alerts");
        assert_eq!(alert["fingerprint"], "0123456789abcdef");
        let ends_at = if status == "firing" {
            "0001-01-01T00:00:00Z"
        } else {
            "2026-11-23T16:46:43.250Z"
        };
        assert_eq!(alert["endsAt"], ends_at);
    }
    wait_until("success counted", || {
        (notifications(&observer, "webhook", "success") == 2.0).then_some(())
    });
    let status = status_of(&notifier, "webhook");
    assert_eq!(
        (status.sent, status.failed, status.dropped, status.retries),
        (2, 0, 0, 0)
    );
    assert!(status.last_success.is_some() && status.last_error.is_none());
    let shown = format!("{notifier:?} {:?}", notifier.statuses());
    assert!(
        !shown.contains("secret") && !shown.contains("s3cr3t"),
        "{shown}"
    );
}

#[test]
fn slack_posts_text_and_blocks() {
    let receiver = Receiver::start(Mode::Status(200));
    let observer = Observer::new();
    let notifier = Notifier::new(
        vec![Slack::new(receiver.url("/services/T0/B0/XXXX"))
            .name("ops-slack")
            .into()],
        &observer,
        None,
    );
    notifier.dispatch(&event(EventStatus::Firing));
    receiver.wait_for(1);
    notifier.dispatch(&event(EventStatus::Resolved));
    let got = receiver.wait_for(2);
    assert_eq!(got[0].path, "/services/T0/B0/XXXX");

    let firing = got[0].json();
    let text = firing["text"].as_str().unwrap();
    assert!(text.contains("[FIRING] HighErrorRate (critical)"), "{text}");
    assert!(text.contains("&lt;5xx&gt; &amp; more"), "{text}");
    let blocks = firing["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert!(blocks[0]["text"]["text"]
        .as_str()
        .unwrap()
        .starts_with(":rotating_light: [FIRING]"));
    assert_eq!(blocks[1]["type"], "section");
    let main = blocks[1]["text"]["text"].as_str().unwrap();
    assert!(
        main.contains("*Error rate 13.04% on /orders/{id} &lt;5xx&gt; &amp; more*"),
        "{main}"
    );
    assert!(main.contains("More than 10% of requests failed"), "{main}");
    let fields: Vec<&str> = blocks[1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"*Severity*\ncritical"), "{fields:?}");
    assert!(fields.contains(&"*Value*\n0.1304"), "{fields:?}");
    // The resolved message carries the value that resolved it; the firing one is labelled.
    let resolved = serde_json::to_string(&got[1].json()["blocks"]).unwrap();
    assert!(
        resolved.contains("*Value*\\n0.031 when resolved (last firing value 0.1304)"),
        "{resolved}"
    );
    let all = serde_json::to_string(&blocks).unwrap();
    assert!(
        all.contains(
            "<http://svc.example:8080/v1/stats/history?route=/orders&amp;window=1h|History>"
        ),
        "{all}"
    );
    assert!(
        all.contains("<http://svc.example:8080/v1/alerts|Source>"),
        "{all}"
    );
    // The failed request's trace ID links to its view in the dashboard.
    assert!(
        all.contains(&format!("<{}|`4bf92f3577b34da6a3ce929d0e0e4736`>", VIEW)),
        "{all}"
    );

    let resolved = got[1].json();
    assert!(resolved["text"]
        .as_str()
        .unwrap()
        .contains("[RESOLVED] HighErrorRate"));
    assert!(resolved["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap()
        .starts_with(":white_check_mark:"));
    wait_until("success counted", || {
        (notifications(&observer, "ops-slack", "success") == 2.0).then_some(())
    });
}

#[test]
fn pagerduty_triggers_then_resolves_with_one_dedup_key() {
    let receiver = Receiver::start(Mode::Status(202));
    let observer = Observer::new();
    let notifier = Notifier::new(
        vec![PagerDuty::new("R0UTINGKEY")
            .endpoint(receiver.url("/v2/enqueue"))
            .into()],
        &observer,
        Some("http://svc.example:8080".into()),
    );
    notifier.dispatch(&event(EventStatus::Firing));
    receiver.wait_for(1);
    notifier.dispatch(&event(EventStatus::Resolved));
    let got = receiver.wait_for(2);
    let (trigger, resolve) = (got[0].json(), got[1].json());
    assert_eq!(got[0].path, "/v2/enqueue");
    assert_eq!(trigger["routing_key"], "R0UTINGKEY");
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(trigger["dedup_key"], "0123456789abcdef");
    assert_eq!(trigger["dedup_key"], resolve["dedup_key"]);
    let payload = &trigger["payload"];
    assert_eq!(
        payload["summary"],
        "Error rate 13.04% on /orders/{id} <5xx> & more"
    );
    assert_eq!(payload["source"], "http://svc.example:8080");
    assert_eq!(payload["severity"], "critical");
    assert_eq!(payload["timestamp"], "2026-11-23T16:36:43.250Z");
    assert_eq!(payload["component"], "/orders/{id}");
    assert_eq!(
        payload["custom_details"]["labels"]["alertname"],
        "HighErrorRate"
    );
    assert_eq!(
        payload["custom_details"]["annotations"]["description"],
        "More than 10% of requests failed for 5m."
    );
    assert_eq!(payload["custom_details"]["value"], 0.1304);
    assert_eq!(
        trigger["links"][0],
        serde_json::json!({"href": "http://svc.example:8080/v1/stats/history?route=/orders&window=1h", "text": "History"})
    );
    assert_eq!(
        payload["custom_details"]["failed_request_views"],
        serde_json::json!([VIEW])
    );
    assert_eq!(
        trigger["links"][1],
        serde_json::json!({"href": VIEW, "text": "Failed request 4bf92f3577b34da6a3ce929d0e0e4736"})
    );
    assert_eq!(resolve["payload"]["timestamp"], "2026-11-23T16:46:43.250Z");
    assert_eq!(resolve["payload"]["custom_details"]["value"], 0.031);
    assert_eq!(resolve["payload"]["custom_details"]["firing_value"], 0.1304);
    assert!(payload["custom_details"].get("firing_value").is_none());
    wait_until("success counted", || {
        (notifications(&observer, "pagerduty", "success") == 2.0).then_some(())
    });
    assert!(!format!("{notifier:?}").contains("R0UTINGKEY"));
}

#[test]
fn alertmanager_channel_resends_while_firing_and_stops_on_resolve() {
    let receiver = Receiver::start(Mode::Status(200));
    let observer = Observer::new();
    let notifier = Notifier::new(
        vec![Alertmanager::new(receiver.url("/"))
            .resend_interval(Duration::from_secs(1))
            .into()],
        &observer,
        None,
    );
    notifier.dispatch(&event(EventStatus::Firing));
    let got = receiver.wait_for(3); // the first post and two re-sends
    for r in &got {
        assert_eq!(r.path, "/api/v2/alerts");
        let alerts = r.json();
        let alert = &alerts[0];
        assert_eq!(alerts.as_array().unwrap().len(), 1);
        assert_eq!(alert["labels"]["alertname"], "HighErrorRate");
        assert_eq!(alert["startsAt"], "2026-11-23T16:36:43.250Z");
        assert_eq!(alert["generatorURL"], "http://svc.example:8080/v1/alerts");
        // endsAt is four intervals ahead: in the future, within 5 s.
        let ends = alert["endsAt"].as_str().unwrap().to_owned();
        let now = tower_observe_now();
        assert!(ends.as_str() > now.as_str(), "{ends} <= {now}");
    }
    notifier.dispatch(&event(EventStatus::Resolved));
    let resolved = wait_until("the resolve", || {
        receiver
            .received
            .lock()
            .unwrap()
            .iter()
            .map(Received::json)
            .find(|a| a[0]["endsAt"] == "2026-11-23T16:46:43.250Z")
    });
    assert_eq!(resolved[0]["labels"]["alertname"], "HighErrorRate");
    let count = receiver.count();
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(receiver.count(), count, "re-sent after the resolve");
}

/// Now as RFC 3339 with milliseconds (like the crate prints).
fn tower_observe_now() -> String {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (secs, ms) = (ms / 1000, ms % 1000);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // civil from days (Hinnant)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------------------------
// TLS: private roots, the crypto provider

/// A webhook to an HTTPS receiver whose certificate a private root issued: delivered when the
/// channel trusts the root (given as PEM bytes or as a file), a failure — counted, not a
/// panic — when it does not. No provider is installed in this test binary, so this is the
/// crate's own (`tls-ring` / `tls-aws-lc-rs`); `tests/alerts_tls_provider.rs` checks the
/// application's is preferred.
#[cfg(any(feature = "tls-ring", feature = "tls-aws-lc-rs"))]
#[test]
fn webhook_over_https_trusts_a_private_root() {
    let (ca_pem, cert, key) = pki::private_pki();
    let receiver = Receiver::start_tls(200, cert, key);
    let dir = TempDir::new("roots");
    let ca_file = dir.0.join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let observer = Observer::new();
    let channels: Vec<Channel> = vec![
        Webhook::new(receiver.https_url("/hook"))
            .name("trusted")
            .root_certificate_pem(ca_pem)
            .into(),
        Webhook::new(receiver.https_url("/hook-file"))
            .name("trusted-file")
            .root_certificate_pem_file(&ca_file)
            .into(),
        // Mozilla's roots only: the private root is not among them.
        quick(Webhook::new(receiver.https_url("/hook-untrusted")))
            .name("untrusted")
            .retries(0)
            .into(),
    ];
    // What `ObserverBuilder::alerts` checks passes for all three.
    let _checked = Observer::builder()
        .alerts(
            channels
                .iter()
                .fold(Alerts::new(AlertRules::recommended()), |alerts, c| {
                    alerts.channel(c.clone())
                }),
        )
        .expect("valid channels");
    let notifier = Notifier::new(channels, &observer, None);
    notifier.dispatch(&event(EventStatus::Firing));
    let got = receiver.wait_for(2);
    let mut paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/hook", "/hook-file"]);
    assert_eq!(got[0].json()["version"], "4");
    let untrusted = wait_until("the TLS failure", || {
        let s = status_of(&notifier, "untrusted");
        (s.failed == 1).then_some(s)
    });
    let message = untrusted.last_error.expect("error").message;
    assert!(
        message.contains("TLS") || message.contains("certificate"),
        "{message}"
    );
    assert!(
        message.contains(&format!("https://127.0.0.1:{}", receiver.port)),
        "{message}"
    );
    wait_until("counted", || {
        (notifications(&observer, "trusted", "success") == 1.0
            && notifications(&observer, "trusted-file", "success") == 1.0
            && notifications(&observer, "untrusted", "failure") == 1.0)
            .then_some(())
    });
    assert_eq!(notifications(&observer, "untrusted", "success"), 0.0);
    // The untrusted handshake never got as far as a request.
    assert_eq!(receiver.count(), 2);
}

/// A root that is not a certificate, or a file that cannot be read, fails
/// `ObserverBuilder::alerts` for every channel that takes roots, naming the channel and the
/// setter — and a channel handed straight to a `Notifier` counts each send as a failure.
#[test]
fn unusable_private_roots_are_refused_when_the_alerts_are_built() {
    let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let missing = std::env::temp_dir().join("tower-observe-no-such-root.pem");
    let refused = |channel: Channel| match Observer::builder()
        .alerts(Alerts::new(AlertRules::recommended()).channel(channel))
    {
        Ok(_) => panic!("accepted"),
        Err(RuleError::Channel {
            channel,
            field,
            reason,
        }) => (channel, field, reason),
        Err(other) => panic!("{other}"),
    };
    let url = "https://127.0.0.1:9/hook";
    let cases: Vec<(Channel, &str)> = vec![
        (
            Webhook::new(url).root_certificate_pem(garbage).into(),
            "webhook",
        ),
        (
            Slack::new(url).root_certificate_pem("no PEM here").into(),
            "slack",
        ),
        (
            PagerDuty::new("key")
                .endpoint(url)
                .root_certificate_pem(garbage)
                .into(),
            "pagerduty",
        ),
        (
            Alertmanager::new("https://127.0.0.1:9")
                .root_certificate_pem(garbage)
                .into(),
            "alertmanager",
        ),
        (
            Email::new("localhost")
                .from("a@example.com")
                .to("b@example.com")
                .root_certificate_pem(garbage)
                .into(),
            "email",
        ),
    ];
    for (channel, kind) in cases {
        let (name, field, reason) = refused(channel);
        assert_eq!(
            (name.as_str(), field),
            (kind, "root_certificate_pem"),
            "{reason}"
        );
        assert!(!reason.contains("AAAA"), "{reason}");
    }
    let (name, field, reason) = refused(
        Webhook::new(url)
            .name("ops")
            .root_certificate_pem_file(&missing)
            .into(),
    );
    assert_eq!((name.as_str(), field), ("ops", "root_certificate_pem_file"));
    assert!(
        reason.contains("cannot read") && reason.contains("tower-observe-no-such-root"),
        "{reason}"
    );

    // Not checked beforehand: every send fails, permanently, and is counted.
    let observer = Observer::new();
    let notifier = Notifier::new(
        vec![quick(Webhook::new(url).root_certificate_pem(garbage)).into()],
        &observer,
        None,
    );
    notifier.dispatch(&event(EventStatus::Firing));
    let status = wait_until("the failure", || {
        let s = status_of(&notifier, "webhook");
        (s.failed == 1).then_some(s)
    });
    assert_eq!(status.retries, 0, "a bad root is not retried");
    assert!(status
        .last_error
        .unwrap()
        .message
        .starts_with("root_certificate_pem: "));
    assert_eq!(notifications(&observer, "webhook", "failure"), 1.0);
}

/// Without a crypto provider (none installed, neither `tls-ring` nor `tls-aws-lc-rs`), an
/// `https://` channel or SMTP with TLS is refused when the alerts are built, naming `tls`;
/// plain `http://` needs none.
#[cfg(not(any(feature = "tls-ring", feature = "tls-aws-lc-rs")))]
#[test]
fn https_without_a_crypto_provider_is_refused_when_the_alerts_are_built() {
    let build = |channel: Channel| {
        Observer::builder().alerts(Alerts::new(AlertRules::recommended()).channel(channel))
    };
    for channel in [
        Channel::from(Webhook::new("https://hooks.example.com/x")),
        Slack::new("https://hooks.slack.com/services/T/B/X").into(),
        PagerDuty::new("key").into(),
        Alertmanager::new("https://am.example.com").into(),
        Email::new("smtp.example.com")
            .from("a@example.com")
            .to("b@example.com")
            .into(),
    ] {
        let kind = channel.kind();
        match build(channel) {
            Err(RuleError::Channel { field, reason, .. }) => {
                assert_eq!(field, "tls", "{kind}");
                assert!(reason.contains("tls-ring"), "{reason}");
            }
            other => panic!("{kind}: {:?}", other.err()),
        }
    }
    assert!(build(Webhook::new("http://hooks.example.com/x").into()).is_ok());
    assert!(build(
        Email::new("localhost")
            .tls(Tls::None)
            .from("a@example.com")
            .to("b@example.com")
            .into()
    )
    .is_ok());
}

// ---------------------------------------------------------------------------------------------
// Failures: retried, counted, redacted, bounded

#[test]
fn connection_refused_is_retried_counted_and_redacted() {
    let port = closed_port();
    let observer = Observer::new();
    let notifier = Notifier::new(
        vec![quick(Webhook::new(format!(
            "http://127.0.0.1:{port}/hook/SECRET-PATH"
        )))
        .into()],
        &observer,
        None,
    );
    notifier.dispatch(&event(EventStatus::Firing));
    let status = wait_until("the failure", || {
        let s = status_of(&notifier, "webhook");
        (s.failed == 1).then_some(s)
    });
    assert_eq!(status.retries, 2);
    assert_eq!(status.sent, 0);
    let error = status.last_error.expect("last error");
    assert_eq!(
        error.message,
        format!("connection refused (http://127.0.0.1:{port})")
    );
    assert!(!error.at.is_empty());
    assert_eq!(notifications(&observer, "webhook", "failure"), 1.0);
    assert_eq!(notifications(&observer, "webhook", "success"), 0.0);
    let metrics = observer.render_metrics().unwrap_or_default();
    assert!(!metrics.contains("SECRET"), "{metrics}");
}

#[test]
fn server_errors_are_retried_then_given_up() {
    let receiver = Receiver::start(Mode::Status(500));
    let observer = Observer::new();
    let notifier = Notifier::new(
        vec![quick(Slack::new(receiver.url("/services/T0/B0/SECRET"))).into()],
        &observer,
        None,
    );
    notifier.dispatch(&event(EventStatus::Firing));
    let status = wait_until("the failure", || {
        let s = status_of(&notifier, "slack");
        (s.failed == 1).then_some(s)
    });
    assert_eq!(receiver.count(), 3, "1 attempt + 2 retries");
    assert_eq!(status.retries, 2);
    let message = status.last_error.expect("last error").message;
    assert_eq!(
        message,
        format!("HTTP 500 from http://127.0.0.1:{}", receiver.port)
    );
    assert_eq!(notifications(&observer, "slack", "failure"), 1.0);
}

#[test]
fn client_errors_are_not_retried() {
    let receiver = Receiver::start(Mode::Status(400));
    let observer = Observer::new();
    let notifier = Notifier::new(
        vec![quick(PagerDuty::new("KEY").endpoint(receiver.url("/v2/enqueue"))).into()],
        &observer,
        None,
    );
    notifier.dispatch(&event(EventStatus::Firing));
    let status = wait_until("the failure", || {
        let s = status_of(&notifier, "pagerduty");
        (s.failed == 1).then_some(s)
    });
    assert_eq!((receiver.count(), status.retries), (1, 0));
}

#[test]
fn hanging_receiver_times_out_and_is_retried() {
    let receiver = Receiver::start(Mode::Hang);
    let observer = Observer::new();
    let notifier = Notifier::new(
        vec![Webhook::new(receiver.url("/hook"))
            .timeout(Duration::from_millis(200))
            .retries(1)
            .backoff(Duration::from_millis(10), Duration::from_millis(10))
            .into()],
        &observer,
        None,
    );
    let start = Instant::now();
    notifier.dispatch(&event(EventStatus::Firing));
    let status = wait_until("the failure", || {
        let s = status_of(&notifier, "webhook");
        (s.failed == 1).then_some(s)
    });
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(receiver.connections.load(Ordering::SeqCst), 2);
    let message = status.last_error.expect("last error").message;
    assert!(
        message.contains("timeout") && message.contains("127.0.0.1"),
        "{message}"
    );
    assert_eq!(notifications(&observer, "webhook", "failure"), 1.0);
}

#[test]
fn flood_is_dropped_not_blocked_and_queue_stays_bounded() {
    let receiver = Receiver::start(Mode::Hang);
    let observer = Observer::new();
    let notifier = Notifier::new(
        vec![Webhook::new(receiver.url("/hook"))
            .timeout(Duration::from_secs(30))
            .queue_capacity(256)
            .into()],
        &observer,
        None,
    );
    let events: Vec<AlertEvent> = (0..10_000).map(event_n).collect();
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for e in &events {
        let t = Instant::now();
        notifier.dispatch(e);
        slowest = slowest.max(t.elapsed());
    }
    let total = start.elapsed();
    assert!(
        total < Duration::from_secs(1),
        "10 000 dispatches took {total:?}"
    );
    assert!(
        slowest < Duration::from_millis(100),
        "slowest dispatch {slowest:?}"
    );
    let status = status_of(&notifier, "webhook");
    // At most the queue and the one event in flight were kept.
    assert!(status.queued <= 256, "{status:?}");
    assert!(status.dropped >= 10_000 - 257, "{status:?}");
    // Each event was queued, dropped or taken by the worker (at most one, stuck in flight).
    assert!(
        (9_999..=10_000).contains(&(status.dropped + status.queued)),
        "{status:?}"
    );
    assert_eq!(
        notifications(&observer, "webhook", "dropped"),
        status.dropped as f64
    );
    // Stopping is bounded even with a request in flight.
    let t = Instant::now();
    notifier.shutdown(Duration::from_millis(200));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

// ---------------------------------------------------------------------------------------------
// End to end against real servers (Debian packages)

/// Whether end-to-end tests must run (CI) or may be skipped.
fn require(binary: &str) -> bool {
    if Path::new(binary).exists() {
        return true;
    }
    if std::env::var("TOWER_OBSERVE_E2E").is_ok_and(|v| v == "1") {
        panic!("{binary} is missing and TOWER_OBSERVE_E2E=1");
    }
    eprintln!("skipping: {binary} is not installed (set TOWER_OBSERVE_E2E=1 to require it)");
    false
}

/// Kills the child process on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "tower-observe-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn http_ok(port: u16, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    );
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

fn wait_listening(port: u16) {
    wait_until(&format!("port {port}"), || {
        TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
    });
}

#[test]
fn alertmanager_end_to_end() {
    const BIN: &str = "/usr/bin/prometheus-alertmanager";
    if !require(BIN) {
        return;
    }
    let hook = Receiver::start(Mode::Status(200));
    let dir = TempDir::new("alertmanager");
    let config = dir.0.join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:
  receiver: test
  group_by: ['alertname']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 4h
receivers:
  - name: test
    webhook_configs:
      - url: {}
        send_resolved: true
",
            hook.url("/am-hook")
        ),
    )
    .expect("config");
    let port = closed_port();
    let child = Command::new(BIN)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.0.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start alertmanager");
    let _alertmanager = Killed(child);
    wait_until("Alertmanager ready", || {
        http_ok(port, "/-/ready").then_some(())
    });

    let observer = Observer::new();
    let notifier = Notifier::new(
        vec![Alertmanager::new(format!("http://127.0.0.1:{port}"))
            .resend_interval(Duration::from_secs(1))
            .into()],
        &observer,
        None,
    );
    let mut firing = event(EventStatus::Firing);
    firing.starts_at = SystemTime::now();
    notifier.dispatch(&firing);
    let first = hook.wait_for(1);
    let body = first[0].json();
    assert_eq!(first[0].path, "/am-hook");
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["receiver"], "test");
    assert_eq!(body["alerts"][0]["labels"]["alertname"], "HighErrorRate");
    assert_eq!(body["alerts"][0]["labels"]["http_route"], "/orders/{id}");
    assert_eq!(
        body["alerts"][0]["annotations"]["description"],
        "More than 10% of requests failed for 5m."
    );
    assert_eq!(body["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(
        body["alerts"][0]["generatorURL"],
        "http://svc.example:8080/v1/alerts"
    );

    // Re-sends keep it firing; then the resolve arrives.
    std::thread::sleep(Duration::from_millis(1_500));
    let mut resolved = firing;
    resolved.status = EventStatus::Resolved;
    resolved.ends_at = Some(SystemTime::now());
    notifier.dispatch(&resolved);
    let done = wait_until("the resolved webhook", || {
        hook.received
            .lock()
            .unwrap()
            .iter()
            .map(Received::json)
            .find(|b| b["status"] == "resolved")
    });
    assert_eq!(done["alerts"][0]["status"], "resolved");
    assert_ne!(done["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    let status = status_of(&notifier, "alertmanager");
    assert_eq!((status.sent, status.failed), (2, 0), "{status:?}");
    assert_eq!(notifications(&observer, "alertmanager", "success"), 2.0);
}

const SMTP_SINK: &str = r#"
import os

class Sink:
    """Writes each message to $SMTP_OUT/NNNN.eml."""

    async def handle_DATA(self, server, session, envelope):
        out = os.environ["SMTP_OUT"]
        n = len([f for f in os.listdir(out) if f.endswith(".eml")])
        tmp = os.path.join(out, "%04d.tmp" % n)
        with open(tmp, "wb") as f:
            f.write(b"X-Envelope-To: " + ", ".join(envelope.rcpt_tos).encode() + b"\r\n")
            f.write(envelope.content)
        os.rename(tmp, os.path.join(out, "%04d.eml" % n))
        return "250 OK"
"#;

fn start_smtp(dir: &TempDir, extra: &[&str]) -> (Killed, u16, PathBuf) {
    std::fs::write(dir.0.join("smtp_sink.py"), SMTP_SINK).expect("handler");
    let out = dir.0.join("out");
    std::fs::create_dir_all(&out).expect("out dir");
    let port = closed_port();
    let child = Command::new("/usr/bin/python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "smtp_sink.Sink",
        ])
        .args(extra)
        .env("PYTHONPATH", &dir.0)
        .env("SMTP_OUT", &out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start aiosmtpd");
    let child = Killed(child);
    wait_listening(port);
    (child, port, out)
}

fn read_mails(out: &Path, n: usize) -> Vec<String> {
    wait_until(&format!("{n} emails"), || {
        let mut files: Vec<PathBuf> = std::fs::read_dir(out)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort();
        (files.len() >= n).then(|| {
            files
                .iter()
                .map(|f| unquote(&std::fs::read_to_string(f).unwrap_or_default()))
                .collect()
        })
    })
}

/// Decodes quoted-printable (soft line breaks and `=XX`); headers pass through unchanged.
fn unquote(mail: &str) -> String {
    let joined = mail.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn aiosmtpd_installed() -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    require("/usr/lib/python3/dist-packages/aiosmtpd")
}

#[test]
fn email_end_to_end() {
    if !aiosmtpd_installed() {
        return;
    }
    let dir = TempDir::new("smtp");
    let (_smtp, port, out) = start_smtp(&dir, &[]);
    let observer = Observer::new();
    let notifier = Notifier::new(
        vec![Email::new("127.0.0.1")
            .port(port)
            .tls(Tls::None)
            .from("Alerts <alerts@example.com>")
            .to("oncall@example.com")
            .to("team@example.com")
            .into()],
        &observer,
        None,
    );
    notifier.dispatch(&event(EventStatus::Firing));
    read_mails(&out, 1);
    notifier.dispatch(&event(EventStatus::Resolved));
    let mails = read_mails(&out, 2);
    let (firing, resolved) = (&mails[0], &mails[1]);
    assert!(
        firing.contains("X-Envelope-To: oncall@example.com, team@example.com"),
        "{firing}"
    );
    assert!(
        firing.contains("Subject: [FIRING] HighErrorRate (critical)"),
        "{firing}"
    );
    assert!(
        firing.contains("From: Alerts <alerts@example.com>"),
        "{firing}"
    );
    for needle in [
        "HighErrorRate is FIRING (critical).",
        "Summary: Error rate 13.04% on /orders/{id} <5xx> & more",
        "Description: More than 10% of requests failed for 5m.",
        "Value: 0.1304",
        "alertname = HighErrorRate",
        "History: http://svc.example:8080/v1/stats/history?route=/orders&window=1h",
        "4bf92f3577b34da6a3ce929d0e0e4736",
        VIEW,
    ] {
        assert!(firing.contains(needle), "{needle:?} not in {firing}");
    }
    assert!(
        resolved.contains("Subject: [RESOLVED] HighErrorRate (critical)"),
        "{resolved}"
    );
    assert!(
        resolved.contains("Ended: 2026-11-23T16:46:43.250Z"),
        "{resolved}"
    );
    assert!(
        resolved.contains("Value: 0.031 when resolved (last firing value 0.1304)"),
        "{resolved}"
    );
    wait_until("success counted", || {
        (notifications(&observer, "email", "success") == 2.0).then_some(())
    });
}

// TLS needs a crypto provider; this binary installs none (see
// `https_without_a_crypto_provider_is_refused_when_the_alerts_are_built`).
#[cfg(any(feature = "tls-ring", feature = "tls-aws-lc-rs"))]
#[test]
fn email_starttls_with_a_private_root() {
    if !aiosmtpd_installed() || !require("/usr/bin/openssl") {
        return;
    }
    let dir = TempDir::new("smtps");
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    let made = Command::new("/usr/bin/openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success());
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
    let (_smtp, port, out) = start_smtp(&dir, &["--tlscert", &cert_arg, "--tlskey", &key_arg]);
    let observer = Observer::new();
    let pem = std::fs::read(&cert).expect("cert");
    let channels: Vec<Channel> = vec![
        Email::new("localhost")
            .port(port)
            .tls(Tls::StartTls)
            .root_certificate_pem(pem)
            .from("alerts@example.com")
            .to("oncall@example.com")
            .into(),
        // Without the private root, the certificate is refused.
        quick(
            Email::new("localhost")
                .port(port)
                .tls(Tls::StartTls)
                .retries(0),
        )
        .name("untrusted")
        .from("alerts@example.com")
        .to("oncall@example.com")
        .into(),
    ];
    let notifier = Notifier::new(channels, &observer, None);
    notifier.dispatch(&event(EventStatus::Firing));
    let mails = read_mails(&out, 1);
    assert!(mails[0].contains("Subject: [FIRING] HighErrorRate (critical)"));
    let untrusted = wait_until("the TLS failure", || {
        let s = status_of(&notifier, "untrusted");
        (s.failed == 1).then_some(s)
    });
    let message = untrusted.last_error.expect("error").message;
    assert!(
        message.contains("TLS") && message.contains(&format!("smtp://localhost:{port}")),
        "{message}"
    );
    wait_until("success counted", || {
        (notifications(&observer, "email", "success") == 1.0).then_some(())
    });
}
