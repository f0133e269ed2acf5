//! PagerDuty Events API v2.

use std::fmt;

use serde_json::{json, Map, Value};

use super::format::summary;
use super::http::{agent, post_json, root_setters, PrivateRoots, Target};
use super::{settings_setters, Deliver, DeliverContext, SendError, Settings};
use crate::alerts::{AlertEvent, EventStatus};
use crate::time_fmt::rfc3339;

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Sends each notification to PagerDuty's Events API v2: `trigger` when the alert fires,
/// `resolve` when it stops, both with the alert's fingerprint as `dedup_key` so PagerDuty
/// resolves the incident it opened.
///
/// The event's `payload` has the summary, `source` (see [`source`](Self::source)), the
/// severity (`critical`, `warning` or `info`), the time, a `component` (the alert's
/// `component`, `http_route` or `route` label, if any) and `custom_details` with the labels,
/// annotations, value and failed requests' trace IDs; `links` are the event's links. The
/// routing key is a secret: `Debug` output and errors never show it.
///
/// ```
/// use tower_observe::alerts::notify::{Channel, PagerDuty};
///
/// let channel: Channel = PagerDuty::new("R0ut1ngK3y")
///     .source("checkout-api")
///     .into();
/// assert!(!format!("{channel:?}").contains("R0ut1ngK3y"));
/// ```
#[derive(Clone)]
pub struct PagerDuty {
    pub(crate) settings: Settings,
    routing_key: String,
    target: Target,
    roots: PrivateRoots,
    source: Option<String>,
}

impl fmt::Debug for PagerDuty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PagerDuty")
            .field("settings", &self.settings)
            .field("routing_key", &"<redacted>")
            .field("endpoint", &self.target)
            .field("roots", &self.roots)
            .field("source", &self.source)
            .finish()
    }
}

impl PagerDuty {
    /// A channel sending to the integration whose routing (integration) key is `routing_key`.
    pub fn new(routing_key: impl Into<String>) -> Self {
        PagerDuty {
            settings: Settings::default(),
            routing_key: routing_key.into(),
            target: Target::new(PAGERDUTY_EVENTS_URL.to_owned()),
            roots: PrivateRoots::default(),
            source: None,
        }
    }

    /// Sends to another endpoint than [`PAGERDUTY_EVENTS_URL`] (a proxy, the EU service
    /// region, or a test receiver).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.target = Target::new(url.into());
        self
    }

    /// The `payload.source` of the events: where the alert comes from (default: the
    /// alert's `instance` or `service` label, else the service's external URL, else
    /// `tower-observe`).
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    root_setters!(
        "for `https://`, instead of Mozilla's roots (the channel talks to one server, whose root \
         is all it needs),"
    );

    settings_setters!();

    /// The field that cannot be used, and why.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        super::http::check_token(&self.routing_key).map_err(|e| ("routing_key", e))?;
        self.target.check().map_err(|e| ("endpoint", e))?;
        super::http::check_tls(&self.target, &self.roots)
    }

    pub(crate) fn into_deliver(self, ctx: &DeliverContext<'_>) -> PagerDutyDeliver {
        PagerDutyDeliver {
            agent: agent(&self.settings, &self.target, &self.roots),
            routing_key: self.routing_key,
            target: self.target,
            source: self.source,
            external_url: ctx.external_url.map(str::to_owned),
        }
    }
}

pub(crate) struct PagerDutyDeliver {
    agent: Result<ureq::Agent, SendError>,
    routing_key: String,
    target: Target,
    source: Option<String>,
    external_url: Option<String>,
}

impl Deliver for PagerDutyDeliver {
    fn send(&mut self, event: &AlertEvent) -> Result<(), SendError> {
        let body = event_body(
            event,
            &self.routing_key,
            self.source.as_deref(),
            self.external_url.as_deref(),
        );
        let body = serde_json::to_vec(&body)
            .map_err(|_| SendError::permanent("could not encode the event"))?;
        post_json(&self.agent, &self.target, &[], &body)
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn cut_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The Events API v2 body of `event`.
pub(crate) fn event_body(
    event: &AlertEvent,
    routing_key: &str,
    source: Option<&str>,
    external_url: Option<&str>,
) -> Value {
    let source = source
        .or_else(|| event.labels.get("instance").map(String::as_str))
        .or_else(|| event.labels.get("service").map(String::as_str))
        .or(external_url.filter(|u| !u.is_empty()))
        .unwrap_or("tower-observe");
    let (action, timestamp) = match event.status {
        EventStatus::Firing => ("trigger", event.starts_at),
        EventStatus::Resolved => (
            "resolve",
            event.ends_at.unwrap_or_else(std::time::SystemTime::now),
        ),
    };
    let mut details = Map::new();
    details.insert("labels".into(), json!(event.labels));
    details.insert("annotations".into(), json!(event.annotations));
    details.insert("value".into(), json!(event.value));
    if let Some(firing) = event.firing_value {
        details.insert("firing_value".into(), json!(firing));
    }
    if !event.failed_requests.is_empty() {
        let ids: Vec<&str> = event
            .failed_requests
            .iter()
            .map(|r| r.trace_id.as_str())
            .collect();
        details.insert("failed_request_trace_ids".into(), json!(ids));
        let views: Vec<&str> = event
            .failed_requests
            .iter()
            .filter_map(|r| r.view_url.as_deref())
            .collect();
        if !views.is_empty() {
            details.insert("failed_request_views".into(), json!(views));
        }
    }
    let mut payload = json!({
        "summary": cut_bytes(&summary(event), 1024),
        "source": cut_bytes(source, 255),
        "severity": event.severity.as_str(),
        "timestamp": rfc3339(timestamp),
        "class": event.rule,
        "custom_details": details,
    });
    let component = ["component", "http_route", "route"]
        .iter()
        .find_map(|name| event.labels.get(*name));
    if let (Some(component), Some(map)) = (component, payload.as_object_mut()) {
        map.insert("component".into(), json!(component));
    }
    let mut links: Vec<Value> = event
        .links
        .iter()
        .map(|(text, href)| json!({"href": href, "text": text}))
        .collect();
    for (request, url) in event
        .failed_requests
        .iter()
        .filter_map(|r| Some((r, r.view_url.as_ref()?)))
        .take(3)
    {
        let text = format!("Failed request {}", request.trace_id);
        links.push(json!({"href": url, "text": text}));
    }
    if !event.generator_url.is_empty()
        && !event.links.iter().any(|(_, u)| *u == event.generator_url)
    {
        links.push(json!({"href": event.generator_url, "text": "Source"}));
    }
    let mut body = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": event.fingerprint,
        "payload": payload,
        "links": links,
        "client": "tower-observe",
    });
    if let (Some(url), Some(map)) = (external_url.filter(|u| !u.is_empty()), body.as_object_mut()) {
        map.insert("client_url".into(), json!(url));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_pagerduty_debug_is_redacted() {
        let pd =
            PagerDuty::new("R0UTING-KEY-SECRET").endpoint("http://127.0.0.1:9/v2/enqueue?k=SECRET");
        let shown = format!("{pd:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("http://127.0.0.1:9"), "{shown}");
        assert_eq!(cut_bytes("héllo", 2), "h");
    }
}
