//! The bridge to OpenTelemetry through `tracing-opentelemetry` (feature `opentelemetry`).
//!
//! When the application runs `tracing_opentelemetry`'s layer, the request span becomes an
//! OpenTelemetry span: the caller's context is set as its parent (or added as a link when
//! untrusted), and the IDs the SDK then gives the span replace the layer's own everywhere —
//! in `TraceContext::current()`, outgoing `traceparent`, exemplars and log fields — so every
//! signal points at the span that was exported. Without that layer nothing changes.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState as OtelTraceState,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::server::{Details, SpanName};
use super::w3c::TraceParent;
use super::{Capped, SpanIds, TraceContext, MAX_LOGGED_USER_AGENT_LEN};
use crate::hex::Hex;

fn remote(parent: &TraceParent, trace_state: Option<&str>) -> SpanContext {
    SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.parent_id),
        TraceFlags::new(parent.flags & 1),
        true,
        trace_state
            .and_then(|s| s.parse::<OtelTraceState>().ok())
            .unwrap_or_default(),
    )
}

/// What a server span adds when it is an OpenTelemetry span.
pub(crate) struct ServerExtras<'a> {
    /// The conventions' span name (the `tracing` span's name is fixed at compile time).
    pub(crate) name: SpanName<'a>,
    /// The request's details, when they are not span fields already.
    pub(crate) details: Option<&'a Details<'a>>,
    pub(crate) baggage_attributes: &'a [String],
}

/// Whether `span` is an OpenTelemetry span: `tracing-opentelemetry`'s layer keeps its data in
/// the span's extensions. Without a `Registry` to look in, the answer is "perhaps", and the
/// bridge finds out from what the layer accepts.
fn is_opentelemetry_span(span: &tracing::Span) -> bool {
    use tracing_subscriber::registry::{LookupSpan, SpanData};
    span.with_subscriber(|(id, dispatch)| {
        match dispatch.downcast_ref::<tracing_subscriber::Registry>() {
            Some(registry) => registry.span_data(id).is_some_and(|data| {
                data.extensions()
                    .get::<tracing_opentelemetry::OtelData>()
                    .is_some()
            }),
            None => true,
        }
    })
    .unwrap_or(false)
}

/// [`bridge`] for the request span of a server, which names it and adds the request's
/// details as attributes first. Spans of other subscribers are left as they are, so they pay
/// for none of it.
pub(crate) fn bridge_server(
    span: &tracing::Span,
    ctx: &mut TraceContext,
    extras: &ServerExtras<'_>,
) {
    if !is_opentelemetry_span(span) {
        return;
    }
    span.record("otel.name", tracing::field::display(&extras.name));
    if let Some(details) = extras.details {
        span.set_attribute("url.scheme", details.scheme);
        span.set_attribute("network.protocol.version", details.version);
        if let Some(user_agent) = details.user_agent {
            span.set_attribute(
                "user_agent.original",
                Capped(user_agent, MAX_LOGGED_USER_AGENT_LEN).to_string(),
            );
        }
    }
    bridge(span, ctx, extras.baggage_attributes);
}

/// Joins `span` to the OpenTelemetry trace and adopts the span's OpenTelemetry IDs in `ctx`.
pub(crate) fn bridge(span: &tracing::Span, ctx: &mut TraceContext, baggage_attributes: &[String]) {
    if let Some(parent_id) = ctx.parent_span_id {
        let parent = TraceParent {
            trace_id: ctx.span.trace_id,
            parent_id,
            flags: u8::from(ctx.span.sampled),
        };
        let state = ctx.trace_state().map(|s| s.as_str());
        let parent_cx =
            opentelemetry::Context::new().with_remote_span_context(remote(&parent, state));
        if span.set_parent(parent_cx).is_err() {
            return; // no OpenTelemetry layer (or the span is disabled): keep our own IDs
        }
    }
    if let Some(link) = ctx.link() {
        span.add_link(remote(link, None));
    }
    if let Some(baggage) = ctx.baggage() {
        for key in baggage_attributes {
            if let Some(value) = baggage.get(key) {
                span.set_attribute(format!("baggage.{key}"), value.to_owned());
            }
        }
    }
    adopt(span, &mut ctx.span);
}

/// Joins a client span to the trace of `parent` (the context the outgoing call continues,
/// whether or not a `tracing` span of the request is open) and adopts its OpenTelemetry IDs.
pub(crate) fn join(span: &tracing::Span, parent: Option<&TraceContext>, ids: &mut SpanIds) {
    if let Some(parent) = parent {
        let parent = TraceParent {
            trace_id: parent.span.trace_id,
            parent_id: parent.span.span_id,
            flags: u8::from(parent.span.sampled),
        };
        let parent_cx =
            opentelemetry::Context::new().with_remote_span_context(remote(&parent, None));
        if span.set_parent(parent_cx).is_err() {
            return;
        }
    }
    adopt(span, ids);
}

/// Replaces `ids` with the OpenTelemetry IDs of `span`, when an OpenTelemetry layer gave it
/// some, and records them on the span.
pub(crate) fn adopt(span: &tracing::Span, ids: &mut SpanIds) {
    let cx = span.context();
    let otel = cx.span().span_context().clone();
    if !otel.is_valid() {
        return;
    }
    let adopted = SpanIds {
        trace_id: otel.trace_id().to_bytes(),
        span_id: otel.span_id().to_bytes(),
        sampled: otel.is_sampled(),
    };
    // A continued trace keeps its ID: only what changed is recorded (and formatted) again.
    if adopted.trace_id != ids.trace_id {
        span.record("trace_id", tracing::field::display(Hex(&adopted.trace_id)));
    }
    if adopted.span_id != ids.span_id {
        span.record("span_id", tracing::field::display(Hex(&adopted.span_id)));
    }
    *ids = adopted;
}
