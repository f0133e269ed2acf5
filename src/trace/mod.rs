// The examples in docs/tracing.md use axum and the `otlp` feature (and no hidden lines to gate
// them): the page is always rendered, and run as doctests when those features are on.
#![cfg_attr(
    any(not(doctest), all(feature = "axum", feature = "otlp")),
    doc = include_str!("../../docs/tracing.md")
)]

mod context;
#[cfg(feature = "opentelemetry")]
pub(crate) mod otel;
mod propagate;
mod server;
pub mod w3c;

pub(crate) use context::{new_trace_id, non_zero_span_id};
pub use context::{SpanIds, TraceContext, WithContext};
#[cfg(feature = "client")]
pub(crate) use propagate::client_span_name;
pub use propagate::{Propagate, PropagateLayer};
pub use server::TraceOptions;
pub(crate) use server::{ServerTrace, SpanHandle};

/// Longest `url.path` (and client `url.full`) put on a span; longer values are cut.
pub const MAX_LOGGED_URL_LEN: usize = 2048;
/// Longest `user_agent.original` put on a span (the ECS keyword limit).
pub const MAX_LOGGED_USER_AGENT_LEN: usize = 1024;
/// Longest `http.request.method_original` put on a span.
pub const MAX_LOGGED_METHOD_LEN: usize = 64;

/// What ends a value that was cut.
pub const TRUNCATION_MARKER: &str = "…";

/// A value from the request (a path, a header) written to a span field at most `max` bytes
/// long: cut at a character boundary and marked with [`TRUNCATION_MARKER`], so a hostile
/// request cannot make log lines of its size. Formatted only when a subscriber records it.
pub(crate) struct Capped<'a>(pub(crate) &'a str, pub(crate) usize);

impl<'a> Capped<'a> {
    /// The value as a field takes it: borrowed when it fits (almost always), so subscribers
    /// record a plain string rather than run formatting machinery.
    pub(crate) fn text(&self) -> std::borrow::Cow<'a, str> {
        if self.0.len() <= self.1 {
            std::borrow::Cow::Borrowed(self.0)
        } else {
            std::borrow::Cow::Owned(self.to_string())
        }
    }
}

impl std::fmt::Display for Capped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Capped(value, max) = *self;
        if value.len() <= max {
            return f.write_str(value);
        }
        let mut end = max.saturating_sub(TRUNCATION_MARKER.len());
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        f.write_str(&value[..end])?;
        f.write_str(TRUNCATION_MARKER)
    }
}

/// Whether a span about to open should leave its IDs for the OpenTelemetry bridge to record
/// once they are final: when the current subscriber may run `tracing-opentelemetry` (never
/// without feature `opentelemetry`).
pub(crate) fn ids_come_later() -> bool {
    may_be_opentelemetry()
}

/// Whether the current subscriber may run `tracing-opentelemetry` (always `false` without
/// feature `opentelemetry`).
pub(crate) fn may_be_opentelemetry() -> bool {
    #[cfg(feature = "opentelemetry")]
    return otel::may_be_opentelemetry();
    #[cfg(not(feature = "opentelemetry"))]
    false
}

/// Records the method as received on `span` (`http.request.method_original`), for methods
/// the label folds into `_OTHER`.
pub(crate) fn record_method_original(span: &tracing::Span, method: &http::Method) {
    span.record(
        "http.request.method_original",
        tracing::field::display(Capped(method.as_str(), MAX_LOGGED_METHOD_LEN)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_values_end_with_the_marker_within_the_limit() {
        assert_eq!(Capped("/short", 16).to_string(), "/short");
        let long = "é".repeat(100);
        let out = Capped(&long, 51).to_string();
        assert!(out.len() <= 51, "{}", out.len());
        assert!(out.ends_with(TRUNCATION_MARKER));
        assert!(matches!(
            Capped("/short", 16).text(),
            std::borrow::Cow::Borrowed("/short")
        ));
        assert_eq!(Capped(&long, 51).text(), out);
        assert!(out
            .trim_end_matches(TRUNCATION_MARKER)
            .chars()
            .all(|c| c == 'é'));
    }
}
