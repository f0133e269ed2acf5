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

use super::w3c::TraceParent;
use super::{SpanIds, TraceContext};
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
    *ids = SpanIds {
        trace_id: otel.trace_id().to_bytes(),
        span_id: otel.span_id().to_bytes(),
        sampled: otel.is_sampled(),
    };
    span.record("trace_id", tracing::field::display(Hex(&ids.trace_id)));
    span.record("span_id", tracing::field::display(Hex(&ids.span_id)));
}
