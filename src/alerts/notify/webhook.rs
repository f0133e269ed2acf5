//! The generic webhook: Alertmanager's webhook payload, version 4.

use std::collections::BTreeMap;

use serde::Serialize;

use super::format::ZERO_TIME;
use super::http::{
    agent, header_setter, post_json, root_setters, PrivateRoots, SecretHeader, Target,
};
use super::{settings_setters, Deliver, DeliverContext, SendError, Settings};
use crate::alerts::{AlertEvent, EventStatus};
use crate::time_fmt::rfc3339;

/// POSTs each notification as Alertmanager's webhook payload (`"version": "4"`), so receivers
/// written for Alertmanager work unchanged.
///
/// Every notification carries one alert (no grouping delay): `status` is `firing` or
/// `resolved`, `endsAt` is `0001-01-01T00:00:00Z` while firing, `groupLabels` and
/// `commonLabels` are the alert's labels (as with `group_by: ['...']`), `receiver` is the
/// channel's name and `externalURL` the service's external URL.
///
/// ```
/// use std::time::Duration;
/// use tower_observe::alerts::notify::{Channel, Webhook};
///
/// let channel: Channel = Webhook::new("https://hooks.example.com/alerts")
///     .header("Authorization", "Bearer s3cr3t")
///     .retries(3)
///     .backoff(Duration::from_millis(200), Duration::from_secs(10))
///     .into();
/// assert!(!format!("{channel:?}").contains("s3cr3t"));
/// ```
#[derive(Debug, Clone)]
pub struct Webhook {
    pub(crate) settings: Settings,
    target: Target,
    roots: PrivateRoots,
    headers: Vec<SecretHeader>,
}

impl Webhook {
    /// A webhook posting to `url` (kept secret: only its scheme, host and port are shown).
    pub fn new(url: impl Into<String>) -> Self {
        Webhook {
            settings: Settings::default(),
            target: Target::new(url.into()),
            headers: Vec::new(),
            roots: PrivateRoots::default(),
        }
    }

    header_setter! {
        /// Adds a request header, e.g. `Authorization` (its value is kept secret).
    }

    root_setters!(
        "for `https://`, instead of Mozilla's roots (the channel talks to one server, whose root \
         is all it needs),"
    );

    settings_setters!();

    /// The field that cannot be used, and why.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        self.target.check().map_err(|e| ("url", e))?;
        super::http::check_headers(&self.headers).map_err(|e| ("header", e))?;
        super::http::check_tls(&self.target, &self.roots)
    }

    pub(crate) fn into_deliver(self, ctx: &DeliverContext<'_>) -> WebhookDeliver {
        WebhookDeliver {
            agent: agent(&self.settings, &self.target, &self.roots),
            receiver: ctx.name.to_owned(),
            external_url: ctx.external_url.unwrap_or_default().to_owned(),
            target: self.target,
            headers: self.headers,
        }
    }
}

pub(crate) struct WebhookDeliver {
    agent: Result<ureq::Agent, SendError>,
    receiver: String,
    external_url: String,
    target: Target,
    headers: Vec<SecretHeader>,
}

impl Deliver for WebhookDeliver {
    fn send(&mut self, event: &AlertEvent) -> Result<(), SendError> {
        let body = serde_json::to_vec(&payload(event, &self.receiver, &self.external_url))
            .map_err(|_| SendError::permanent("could not encode the payload"))?;
        post_json(&self.agent, &self.target, &self.headers, &body)
    }
}

/// Alertmanager's webhook message, version 4.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Payload<'a> {
    receiver: &'a str,
    status: &'static str,
    alerts: [PayloadAlert<'a>; 1],
    group_labels: &'a BTreeMap<String, String>,
    common_labels: &'a BTreeMap<String, String>,
    common_annotations: &'a BTreeMap<String, String>,
    #[serde(rename = "externalURL")]
    external_url: &'a str,
    version: &'static str,
    group_key: String,
    truncated_alerts: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PayloadAlert<'a> {
    status: &'static str,
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    starts_at: String,
    ends_at: String,
    #[serde(rename = "generatorURL")]
    generator_url: &'a str,
    fingerprint: &'a str,
}

pub(crate) fn payload<'a>(
    event: &'a AlertEvent,
    receiver: &'a str,
    external_url: &'a str,
) -> Payload<'a> {
    let ends_at = match (event.status, event.ends_at) {
        (EventStatus::Resolved, Some(t)) => rfc3339(t),
        (EventStatus::Resolved, None) => rfc3339(std::time::SystemTime::now()),
        (EventStatus::Firing, _) => ZERO_TIME.to_owned(),
    };
    Payload {
        receiver,
        status: event.status.as_str(),
        alerts: [PayloadAlert {
            status: event.status.as_str(),
            labels: &event.labels,
            annotations: &event.annotations,
            starts_at: rfc3339(event.starts_at),
            ends_at,
            generator_url: &event.generator_url,
            fingerprint: &event.fingerprint,
        }],
        group_labels: &event.labels,
        common_labels: &event.labels,
        common_annotations: &event.annotations,
        external_url,
        version: "4",
        group_key: group_key(&event.labels),
        truncated_alerts: 0,
    }
}

/// Alertmanager's group key for a route grouping by every label: `{}:{a="1", b="2"}`.
fn group_key(labels: &BTreeMap<String, String>) -> String {
    let mut key = String::from("{}:{");
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            key.push_str(", ");
        }
        key.push_str(name);
        key.push_str("=\"");
        for c in value.chars() {
            match c {
                '"' => key.push_str("\\\""),
                '\\' => key.push_str("\\\\"),
                '\n' => key.push_str("\\n"),
                c => key.push(c),
            }
        }
        key.push('"');
    }
    key.push('}');
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_webhook_group_key() {
        let labels = BTreeMap::from([
            ("alertname".to_owned(), "High".to_owned()),
            ("route".to_owned(), "/a\"b".to_owned()),
        ]);
        assert_eq!(
            group_key(&labels),
            r#"{}:{alertname="High", route="/a\"b"}"#
        );
    }

    #[test]
    fn notify_webhook_debug_is_redacted() {
        let hook = Webhook::new("https://user:pw@example.com:8443/hook/secret-token")
            .header("Authorization", "Bearer secret-token");
        let shown = format!("{hook:?}");
        assert!(
            !shown.contains("secret-token") && !shown.contains("pw"),
            "{shown}"
        );
        assert!(shown.contains("https://example.com:8443"), "{shown}");
    }
}
