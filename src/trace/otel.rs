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

/// The versions the bridge is built against: the application's `tracing-opentelemetry` layer
/// must be this version for request spans to join its traces.
pub(crate) const TRACING_OPENTELEMETRY_VERSION: &str = "0.34";
/// The `opentelemetry` version that goes with [`TRACING_OPENTELEMETRY_VERSION`].
pub(crate) const OPENTELEMETRY_VERSION: &str = "0.33";

/// The parent `tracing-opentelemetry`'s layer gave a contextual `span` when it opened: the
/// current span's context (the span the new one opened in), else the current OpenTelemetry
/// context. Setting it again changes nothing, which makes it a probe without side effects.
fn parent_as_opened(span: &tracing::Span) -> opentelemetry::Context {
    let current = tracing::Span::current();
    if current.id().is_some() && current.id() != span.id() {
        let cx = current.context();
        if cx.span().span_context().is_valid() {
            return cx;
        }
    }
    opentelemetry::Context::current()
}

/// Whether `span` is an OpenTelemetry span of the `tracing-opentelemetry` version this crate
/// uses, asked by setting its parent (`parent`, or the one it opened with): the layer answers
/// through `set_parent`, and nothing else can tell without starting the span. `Ok` also
/// when the span already started (its parent stays) or the layer filtered it out (it has no
/// OpenTelemetry IDs then, and keeps the crate's own). `joining` says the caller asked for a
/// trace to be joined: when the layer is not found then, a one-time warning says why not.
fn set_parent_probe(
    span: &tracing::Span,
    parent: Option<opentelemetry::Context>,
    joining: bool,
) -> bool {
    let parent = parent.unwrap_or_else(|| parent_as_opened(span));
    match span.set_parent(parent) {
        Ok(()) | Err(tracing_opentelemetry::SetParentError::AlreadyStarted) => true,
        Err(tracing_opentelemetry::SetParentError::LayerNotFound) => {
            if joining {
                warn_not_joined();
            }
            false
        }
        Err(_) => false,
    }
}

/// Logs, once per process, that an incoming trace could not be joined because the subscriber
/// has no `tracing-opentelemetry` layer of the version this crate uses.
fn warn_not_joined() {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if WARNED.swap(true, Relaxed) {
        return;
    }
    tracing::warn!(
        target: "tower_observe::trace",
        "tower-observe could not join an incoming trace: the subscriber has no \
         tracing-opentelemetry {TRACING_OPENTELEMETRY_VERSION} layer (the `opentelemetry` \
         feature is built against tracing-opentelemetry {TRACING_OPENTELEMETRY_VERSION} and \
         opentelemetry {OPENTELEMETRY_VERSION}). Request spans keep tower-observe's own IDs and \
         are not part of the exported traces. If the application runs another version of \
         tracing-opentelemetry, build its layer from the versions tower-observe re-exports: \
         tower_observe::tracing_opentelemetry and tower_observe::opentelemetry"
    );
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
    let caller = ctx.parent_span_id.map(|parent_id| {
        let parent = TraceParent {
            trace_id: ctx.span.trace_id,
            parent_id,
            flags: u8::from(ctx.span.sampled),
        };
        let state = ctx.trace_state().map(|s| s.as_str());
        opentelemetry::Context::new().with_remote_span_context(remote(&parent, state))
    });
    let joining = caller.is_some();
    if !is_opentelemetry(
        span,
        caller,
        joining,
        &ctx.span,
        ctx.parent_span_id.as_ref(),
        ids_recorded,
    ) {
        return;
    }
    let name = extras.name.as_ref().map(tracing::field::display);
    let details = extras.details;
    let user_agent = details
        .and_then(|d| d.user_agent)
        .map(|ua| Capped(ua, MAX_LOGGED_USER_AGENT_LEN).text());
    let user_agent = user_agent.as_deref();
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
    link_to_caller(span, ctx, extras.baggage_attributes);
    let parent = ctx.parent_span_id;
    settle_ids(span, &mut ctx.span, parent.as_ref(), joining, ids_recorded);
}

/// Whether `span` is an OpenTelemetry span, remembered for [`may_be_opentelemetry`]. A span
/// that is not, and opened without its IDs (`ids_recorded` false), gets `ids` and `parent`
/// now.
fn is_opentelemetry(
    span: &tracing::Span,
    otel_parent: Option<opentelemetry::Context>,
    joining: bool,
    ids: &SpanIds,
    parent: Option<&[u8; 8]>,
    ids_recorded: bool,
) -> bool {
    if span.is_disabled() {
        return false;
    }
    if !set_parent_probe(span, otel_parent, joining) {
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

/// After an OpenTelemetry span has been given its parent (`joined`: a caller's): its IDs
/// replace `ids` and are recorded once. `parent` is recorded only when
/// the span did not join (OpenTelemetry's own parent says it otherwise).
fn settle_ids(
    span: &tracing::Span,
    ids: &mut SpanIds,
    parent: Option<&[u8; 8]>,
    joined: bool,
    ids_recorded: bool,
) {
    if ids_recorded {
        adopt(span, ids);
        return;
    }
    let adopted = opentelemetry_ids(span);
    let joined = joined && adopted.is_some();
    if let Some(adopted) = adopted {
        *ids = adopted;
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

/// Adds the caller's context as a link of `span` (when untrusted) and copies allowlisted
/// baggage; its parent is set already.
fn link_to_caller(span: &tracing::Span, ctx: &TraceContext, baggage_attributes: &[String]) {
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
    let otel_parent = parent.map(|parent| {
        let parent = TraceParent {
            trace_id: parent.span.trace_id,
            parent_id: parent.span.span_id,
            flags: u8::from(parent.span.sampled),
        };
        opentelemetry::Context::new().with_remote_span_context(remote(&parent, None))
    });
    let joined = otel_parent.is_some();
    if !is_opentelemetry(span, otel_parent, false, ids, None, ids_recorded) {
        return;
    }
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
