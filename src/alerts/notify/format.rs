//! Text shared by the channels: titles, values, redacted targets.

use super::super::{AlertEvent, EventStatus};

/// Alertmanager's `endsAt` for an alert that has not ended (Go's zero time).
pub(crate) const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `[FIRING] HighErrorRate (critical)` or `[RESOLVED] …`.
pub(crate) fn title(event: &AlertEvent) -> String {
    let status = match event.status {
        EventStatus::Firing => "FIRING",
        EventStatus::Resolved => "RESOLVED",
    };
    format!("[{status}] {} ({})", event.rule, event.severity.as_str())
}

/// The `summary` annotation, or a sentence made of the rule's name and status.
pub(crate) fn summary(event: &AlertEvent) -> String {
    match event.annotations.get("summary") {
        Some(summary) if !summary.trim().is_empty() => summary.clone(),
        _ => format!("{} is {}", event.rule, event.status.as_str()),
    }
}

/// A figure as people read it: integers without decimals, others with up to 4 decimals.
/// The value line of a notification: the value, and for a resolved alert the value that
/// resolved it with the last firing value labelled as such (`0.031 when resolved (last firing
/// value 0.229)`; `no data when resolved (…)` when the figure had no value).
pub(crate) fn value_text(event: &AlertEvent) -> String {
    match event.firing_value {
        None => value(event.value),
        Some(firing) => {
            let now = if event.value.is_nan() {
                "no data".to_owned()
            } else {
                value(event.value)
            };
            format!("{now} when resolved (last firing value {})", value(firing))
        }
    }
}

pub(crate) fn value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "0" || s == "-0" {
        // Too small for 4 decimals: keep its magnitude.
        format!("{v:e}")
    } else {
        s.to_owned()
    }
}

/// `scheme://host:port` of a URL (no user info, path or query), for error messages; the
/// port is the scheme's default when the URL has none.
pub(crate) fn redacted_target(url: &str) -> String {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return "<invalid URL>".to_owned();
    };
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return "<invalid URL>".to_owned();
    };
    let port = uri.port_u16().or(match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    });
    match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_values_read_well() {
        assert_eq!(value(3.0), "3");
        assert_eq!(value(0.1304), "0.1304");
        assert_eq!(value(0.25), "0.25");
        assert_eq!(value(12.345678), "12.3457");
        assert_eq!(value(f64::NAN), "NaN");
        assert_eq!(value(f64::INFINITY), "+Inf");
        assert_eq!(value(0.00001), "1e-5");
    }

    #[test]
    fn notify_targets_are_redacted() {
        assert_eq!(
            redacted_target("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com:443"
        );
        assert_eq!(
            redacted_target("http://user:pw@127.0.0.1:9093/api?token=x"),
            "http://127.0.0.1:9093"
        );
        assert_eq!(redacted_target("not a url with secret"), "<invalid URL>");
    }
}
