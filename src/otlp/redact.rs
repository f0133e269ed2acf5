//! Redaction of exported spans: `tracing-opentelemetry` turns a span's fields into attributes
//! and an event's fields into a span event's attributes exactly as they were recorded, so a
//! secret logged as a field would leave the process in a span. [`RedactSpans`] applies the
//! rules of the JSON log layer to every attribute before the exporter sees it.

use std::borrow::Cow;
use std::time::Duration;

use opentelemetry::{Context, KeyValue, StringValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;

use crate::logs::redact::{Redaction, REDACTED};

/// A span processor that redacts span, event and link attributes, then hands the span to
/// `P` (the batch processor that exports it).
///
/// An attribute is redacted when its name (or the name's last dotted segment) is sensitive —
/// the same list and rules as [`EcsJsonLayer`](crate::logs::EcsJsonLayer): `password`,
/// `token`, `authorization`, `api_key`, … — and a URL attribute (`url.full`, `url.query`,
/// `url.original`, `http.request.uri`) keeps its text with the values of sensitive query
/// parameters redacted. [`OtlpTraces`](super::OtlpTraces) puts one in front of its exporter;
/// wrap your own processor when you build the provider yourself.
///
/// With `opentelemetry_sdk = "0.33"` (the `testing` feature for the in-memory exporter) and
/// `tracing-subscriber = "0.3"`:
///
/// ```
/// use tower_observe::opentelemetry::trace::TracerProvider as _;
/// use tower_observe::otlp::RedactSpans;
/// use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let exporter = InMemorySpanExporter::default();
/// let provider = SdkTracerProvider::builder()
///     .with_span_processor(
///         RedactSpans::new(SimpleSpanProcessor::new(exporter.clone())).redact_field("card_number"),
///     )
///     .build();
/// let layer = tower_observe::tracing_opentelemetry::layer().with_tracer(provider.tracer("shop"));
/// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
///     let _span = tracing::info_span!("checkout", card_number = "4111111111111111").entered();
/// });
/// let spans = exporter.get_finished_spans().unwrap();
/// assert!(!format!("{spans:?}").contains("4111111111111111"));
/// ```
#[derive(Debug)]
pub struct RedactSpans<P> {
    inner: P,
    redaction: Redaction,
}

impl<P> RedactSpans<P> {
    /// Redacts what the JSON log layer redacts by default, then hands spans to `inner`.
    pub fn new(inner: P) -> Self {
        Self::with_redaction(inner, Redaction::default())
    }

    pub(super) fn with_redaction(inner: P, redaction: Redaction) -> Self {
        Self { inner, redaction }
    }

    /// Also redacts attributes with this name (or last dotted segment), case-insensitively.
    pub fn redact_field(mut self, name: impl Into<String>) -> Self {
        self.redaction.add_field(name.into());
        self
    }

    /// Also redacts the value of this query parameter in URL attributes.
    pub fn redact_query_param(mut self, name: impl Into<String>) -> Self {
        self.redaction.add_param(name.into());
        self
    }
}

/// Redacts `attributes` in place: a sensitive name's value becomes the redaction marker, a
/// URL's sensitive query values are replaced.
fn redact_attributes(redaction: &Redaction, attributes: &mut [KeyValue]) {
    for kv in attributes {
        let name = kv.key.as_str();
        if redaction.is_sensitive_field(name) {
            kv.value = Value::String(StringValue::from(REDACTED));
        } else if Redaction::is_url_field(name) {
            if let Value::String(s) = &kv.value {
                if let Cow::Owned(redacted) = redaction.redact_query(s.as_str()) {
                    kv.value = Value::String(StringValue::from(redacted));
                }
            }
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for RedactSpans<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        redact_attributes(&self.redaction, &mut span.attributes);
        for event in &mut span.events.events {
            redact_attributes(&self.redaction, &mut event.attributes);
        }
        for link in &mut span.links.links {
            redact_attributes(&self.redaction, &mut link.attributes);
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SimpleSpanProcessor};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn span_and_event_attributes_are_redacted_like_the_ecs_lines() {
        let exporter = InMemorySpanExporter::default();
        let processor = RedactSpans::new(SimpleSpanProcessor::new(exporter.clone()))
            .redact_field("card_number")
            .redact_query_param("session");
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let span = tracing::info_span!(
                "checkout",
                card_number = "4111111111111111",
                url.full = "https://shop.test/pay?order=7&api_key=s3cr3t-key&session=s3cr3t-s",
                rows = 3_u64,
            );
            let _entered = span.enter();
            tracing::warn!(password = "s3cr3t-password", attempt = 2_u64, "retrying");
        });
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1);
        let span = &spans[0];
        let attr = |attributes: &[KeyValue], key: &str| {
            attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(
            attr(&span.attributes, "card_number").as_deref(),
            Some(REDACTED)
        );
        assert_eq!(
            attr(&span.attributes, "url.full"),
            Some(format!(
                "https://shop.test/pay?order=7&api_key={REDACTED}&session={REDACTED}"
            ))
        );
        assert_eq!(attr(&span.attributes, "rows").as_deref(), Some("3"));
        let event = &span.events.events[0];
        assert_eq!(
            attr(&event.attributes, "password").as_deref(),
            Some(REDACTED)
        );
        assert_eq!(attr(&event.attributes, "attempt").as_deref(), Some("2"));
        assert!(!format!("{spans:?}").contains("s3cr3t"));
        assert!(!format!("{spans:?}").contains("4111111111111111"));
    }
}
