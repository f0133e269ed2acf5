//! What the engine hands to the notification channels: one alert's change of state.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

/// How urgent an alert is. Its label value is `severity="critical"` and so on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For information only.
    Info,
    /// Needs attention soon.
    Warning,
    /// Needs attention now (pages).
    Critical,
}

impl Severity {
    /// The label value: `info`, `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Whether an alert started or stopped firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    /// The alert went from pending (or inactive, with `for: 0`) to firing.
    Firing,
    /// The alert stopped firing.
    Resolved,
}

impl EventStatus {
    /// `firing` or `resolved`, as in Alertmanager's payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Firing => "firing",
            EventStatus::Resolved => "resolved",
        }
    }
}

/// A request that failed during the breach: where to look first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedRequest {
    /// Its W3C trace ID (32 hex digits).
    pub trace_id: String,
    /// The span of the request (16 hex digits).
    pub span_id: String,
    /// The request's view in the dashboard (`{external_url}/dashboard#request=<trace ID>`:
    /// its spans and log lines, with a log store), when an external URL and the dashboard are
    /// configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view_url: Option<String>,
}

/// One alert's change of state, sent to every channel.
///
/// `labels` identify the alert (they include `alertname` and `severity`, the rule's labels and,
/// for a rule evaluated per route or per dimension value, that label); `annotations` are the
/// rule's templates filled in (`summary`, `description`, …).
#[derive(Debug, Clone, Serialize)]
pub struct AlertEvent {
    /// The rule's name (`alertname`).
    pub rule: String,
    /// Firing or resolved.
    pub status: EventStatus,
    /// The rule's severity.
    pub severity: Severity,
    /// The alert's identity.
    pub labels: BTreeMap<String, String>,
    /// Summary, description and the rule's other annotations, filled in.
    pub annotations: BTreeMap<String, String>,
    /// When the alert started firing.
    #[serde(serialize_with = "crate::time_fmt::serialize_rfc3339")]
    pub starts_at: SystemTime,
    /// When it stopped firing (resolved events only).
    #[serde(serialize_with = "crate::time_fmt::serialize_rfc3339_opt")]
    pub ends_at: Option<SystemTime>,
    /// The figure's value: for a firing event, at the evaluation where the condition held;
    /// for a resolved event, at the evaluation that resolved it (NaN when the figure had no
    /// value then, e.g. too little traffic). Annotations are rendered with it.
    pub value: f64,
    /// Resolved events: the figure's value at the last evaluation where the condition held
    /// (`None` for a firing event).
    pub firing_value: Option<f64>,
    /// A stable fingerprint of `labels` (16 hex digits): the same alert always has the same
    /// one, so receivers can deduplicate (PagerDuty's `dedup_key`).
    pub fingerprint: String,
    /// Links to the breach: the service's external URL, the history slice, … (title, URL).
    pub links: Vec<(String, String)>,
    /// A link to the breach's data (`generatorURL` in Alertmanager's payloads).
    pub generator_url: String,
    /// A few recent failing requests, from the exemplars of the breached figure.
    pub failed_requests: Vec<FailedRequest>,
}

/// A stable fingerprint of a label set: FNV-1a over `name=value` pairs in order, 16 hex digits.
pub(crate) fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for byte in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}
