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

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::server::{Details, SpanName};
use super::w3c::TraceParent;
use super::{Capped, SpanIds, TraceContext, MAX_LOGGED_USER_AGENT_LEN};
use crate::hex;

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
    /// The conventions' span name (the `tracing` span's name is fixed at compile time), when
    /// the span does not have it as a field already.
    pub(crate) name: Option<SpanName<'a>>,
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

/// The `Registry` (by address) of the last subscriber whose span was not an OpenTelemetry
/// span, or 0. A span opening under that subscriber again records its IDs at once; any other
/// defers them to [`bridge_server`] or [`join`], which is right for every subscriber and costs
/// one more record where OpenTelemetry is absent. (A new subscriber at the address of a
/// dropped one would be taken for it until its first span says otherwise.)
static WITHOUT_OPENTELEMETRY: AtomicUsize = AtomicUsize::new(0);

/// The address of the current subscriber's `Registry`, if it has one.
fn current_registry() -> Option<usize> {
    tracing::dispatcher::get_default(|dispatch| {
        dispatch
            .downcast_ref::<tracing_subscriber::Registry>()
            .map(|registry| registry as *const _ as usize)
    })
}

/// Whether the current subscriber may run OpenTelemetry: unless it is known not to. A span
/// opening under it leaves its IDs to [`bridge_server`] or [`join`].
pub(crate) fn may_be_opentelemetry() -> bool {
    let known = WITHOUT_OPENTELEMETRY.load(Relaxed);
    known == 0 || current_registry() != Some(known)
}

/// Joins a server's request span (HTTP or gRPC) to OpenTelemetry, when it is an
/// OpenTelemetry span: the caller's context becomes its parent (or a link, when untrusted),
/// the name and the request's details are set in one record before it starts, and the IDs the
/// SDK assigns replace the layer's own in `ctx` — recorded on the span once, when final (its
/// parent is native to OpenTelemetry, so `parent_span_id` is not repeated as an attribute).
/// Other spans get their IDs if they opened without them (`ids_recorded` false) and nothing
/// else.
pub(crate) fn bridge_server(
    span: &tracing::Span,
    ctx: &mut TraceContext,
    extras: &ServerExtras<'_>,
    ids_recorded: bool,
) {
    if !is_opentelemetry(span, &ctx.span, ctx.parent_span_id.as_ref(), ids_recorded) {
        return;
    }
    let name = extras.name.as_ref().map(tracing::field::display);
    let details = extras.details;
    let user_agent = details
        .and_then(|d| d.user_agent)
        .map(|ua| tracing::field::display(Capped(ua, MAX_LOGGED_USER_AGENT_LEN)));
    record_values(
        span,
        [
            ("otel.name", name.as_ref().map(|n| n as &dyn tracing::Value)),
            (
                "url.scheme",
                details.map(|d| &d.scheme as &dyn tracing::Value),
            ),
            (
                "network.protocol.version",
                details.map(|d| &d.version as &dyn tracing::Value),
            ),
            (
                "user_agent.original",
                user_agent.as_ref().map(|ua| ua as &dyn tracing::Value),
            ),
        ],
    );
    let joined = link_to_caller(span, ctx, extras.baggage_attributes);
    let parent = ctx.parent_span_id;
    settle_ids(span, &mut ctx.span, parent.as_ref(), joined, ids_recorded);
}

/// Whether `span` is an OpenTelemetry span, remembered for [`may_be_opentelemetry`]. A span
/// that is not, and opened without its IDs (`ids_recorded` false), gets `ids` and `parent`
/// now.
fn is_opentelemetry(
    span: &tracing::Span,
    ids: &SpanIds,
    parent: Option<&[u8; 8]>,
    ids_recorded: bool,
) -> bool {
    if span.is_disabled() {
        return false;
    }
    if !is_opentelemetry_span(span) {
        if !ids_recorded {
            record_ids(span, ids, parent);
            if let Some(registry) = current_registry() {
                WITHOUT_OPENTELEMETRY.store(registry, Relaxed);
            }
        }
        return false;
    }
    if ids_recorded {
        // This subscriber runs OpenTelemetry after all: defer the IDs from now on.
        WITHOUT_OPENTELEMETRY.store(0, Relaxed);
    }
    true
}

/// After an OpenTelemetry span has been given its parent (`joined`; `false` when the layer
/// refused it): its IDs replace `ids` and are recorded once. `parent` is recorded only when
/// the span did not join (OpenTelemetry's own parent says it otherwise).
fn settle_ids(
    span: &tracing::Span,
    ids: &mut SpanIds,
    parent: Option<&[u8; 8]>,
    joined: bool,
    ids_recorded: bool,
) {
    if ids_recorded {
        if joined {
            adopt(span, ids);
        }
        return;
    }
    if joined {
        if let Some(adopted) = opentelemetry_ids(span) {
            *ids = adopted;
        }
    }
    record_ids(span, ids, parent.filter(|_| !joined));
}

/// Records `trace_id`, `span_id` and, if given, `parent_span_id` on `span`, in one record.
fn record_ids(span: &tracing::Span, ids: &SpanIds, parent: Option<&[u8; 8]>) {
    let (trace_id, span_id) = (hex::id16(&ids.trace_id), hex::id8(&ids.span_id));
    let (trace_id, span_id) = (trace_id.as_str(), span_id.as_str());
    let parent = parent.map(hex::id8);
    let parent = parent.as_ref().map(|p| p.as_str());
    record_values(
        span,
        [
            ("trace_id", Some(&trace_id as &dyn tracing::Value)),
            ("span_id", Some(&span_id as &dyn tracing::Value)),
            (
                "parent_span_id",
                parent.as_ref().map(|p| p as &dyn tracing::Value),
            ),
        ],
    );
}

/// Records the given values of `span`'s fields in one record (one pass through the
/// subscriber's layers).
fn record_values<const N: usize>(
    span: &tracing::Span,
    values: [(&str, Option<&dyn tracing::Value>); N],
) {
    let Some(meta) = span.metadata() else { return };
    let fields = meta.fields();
    // A name the span lacks (never the case for the crate's spans) gets no value, in the
    // slot of some field of the span.
    let Some(any) = fields.iter().next() else {
        return;
    };
    let found = values.map(|(name, value)| (fields.field(name), value));
    let pairs = found.each_ref().map(|(field, value)| match field {
        Some(field) => (field, *value),
        None => (&any, None),
    });
    span.record_all(&fields.value_set(&pairs));
}

/// Sets the caller's context as the parent of `span` (or a link, when untrusted) and copies
/// allowlisted baggage; `false` when `span` is not an OpenTelemetry span.
fn link_to_caller(span: &tracing::Span, ctx: &TraceContext, baggage_attributes: &[String]) -> bool {
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
            return false; // no OpenTelemetry layer (or the span is disabled): keep our own IDs
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
    true
}

/// Joins a client span to the trace of `parent` (the context the outgoing call continues,
/// whether or not a `tracing` span of the request is open) and adopts its OpenTelemetry IDs,
/// recorded once (`ids_recorded`: the span opened with the layer's own).
pub(crate) fn join(
    span: &tracing::Span,
    parent: Option<&TraceContext>,
    ids: &mut SpanIds,
    ids_recorded: bool,
) {
    if !is_opentelemetry(span, ids, None, ids_recorded) {
        return;
    }
    let joined = match parent {
        Some(parent) => {
            let parent = TraceParent {
                trace_id: parent.span.trace_id,
                parent_id: parent.span.span_id,
                flags: u8::from(parent.span.sampled),
            };
            let parent_cx =
                opentelemetry::Context::new().with_remote_span_context(remote(&parent, None));
            span.set_parent(parent_cx).is_ok()
        }
        None => true,
    };
    settle_ids(span, ids, None, joined, ids_recorded);
}

/// Replaces `ids` with the OpenTelemetry IDs of `span`, when an OpenTelemetry layer gave it
/// some, and records them on the span.
pub(crate) fn adopt(span: &tracing::Span, ids: &mut SpanIds) {
    let Some(adopted) = opentelemetry_ids(span) else {
        return;
    };
    // A continued trace keeps its ID: only what changed is recorded (and formatted) again.
    if adopted.trace_id != ids.trace_id {
        span.record("trace_id", hex::id16(&adopted.trace_id).as_str());
    }
    if adopted.span_id != ids.span_id {
        span.record("span_id", hex::id8(&adopted.span_id).as_str());
    }
    *ids = adopted;
}

/// The IDs OpenTelemetry gave `span` (starting it), if it is an OpenTelemetry span.
fn opentelemetry_ids(span: &tracing::Span) -> Option<SpanIds> {
    let cx = span.context();
    let otel = cx.span().span_context().clone();
    otel.is_valid().then(|| SpanIds {
        trace_id: otel.trace_id().to_bytes(),
        span_id: otel.span_id().to_bytes(),
        sampled: otel.is_sampled(),
    })
}
