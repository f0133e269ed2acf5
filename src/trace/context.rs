//! The trace context of the request being served, and how it stays current.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName};
use pin_project_lite::pin_project;

use super::w3c::{Baggage, TraceParent, TraceState, BAGGAGE, TRACEPARENT, TRACESTATE};
use crate::request_id::{random_u64, RequestId};

/// The IDs of the span serving a request.
///
/// Put it in the request's (or the response's) extensions — the server span layer will, and
/// until then your own tracing integration can — and the metrics layer attaches sampled ones as
/// exemplars to `http_server_request_duration_seconds`, served on `/metrics` to clients that
/// ask for OpenMetrics.
///
/// ```
/// use tower_observe::trace::SpanIds;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(SpanIds {
///     trace_id: [0x4b; 16],
///     span_id: [0x7a; 8],
///     sampled: true,
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanIds {
    /// The trace the span belongs to.
    pub trace_id: [u8; 16],
    /// The span itself.
    pub span_id: [u8; 8],
    /// Whether the trace is sampled (recorded by the tracing back end); only sampled spans
    /// become exemplars, so an exemplar always leads to a trace that exists.
    pub sampled: bool,
}

impl SpanIds {
    /// The IDs an exemplar points to, for a sampled span (an exemplar must lead to a trace
    /// that was recorded).
    pub(crate) fn exemplar(self) -> Option<crate::observer::handles::ExemplarIds> {
        self.sampled.then_some((self.trace_id, self.span_id))
    }
}

/// Where one request stands in its trace: the span serving it, its remote parent, and what
/// travels with them.
///
/// The observe layer (with [`TraceOptions`](super::TraceOptions)) keeps it current while the
/// handler runs, so [`TraceContext::current`] and [`PropagateLayer`](super::PropagateLayer)
/// find it. (It is not put in the request extensions: that would cost every traced request an
/// allocation and usually a rehash of the extension map, for a value `current()` already gives.)
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TraceContext {
    /// The span serving this request. Without traces (no span is recorded) it is the caller's
    /// span, passed through, or the unrecorded root of a trace the request's calls share.
    pub span: SpanIds,
    /// The remote parent span, when the trace continues the caller's.
    pub parent_span_id: Option<[u8; 8]>,
    /// The request's ID.
    pub request_id: Option<RequestId>,
    /// What arrived with the caller's context. Boxed: rare, and every request served keeps a
    /// context, so it stays small.
    incoming: Option<Box<Incoming>>,
}

/// The rarer parts of a context.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Incoming {
    link: Option<TraceParent>,
    trace_state: Option<TraceState>,
    baggage: Option<Baggage>,
    /// The `baggage` header as received (validated, lines combined), for propagation.
    baggage_header: Option<String>,
}

/// A random span ID (never all zeros, which W3C reserves for "none").
pub(crate) fn non_zero_span_id() -> [u8; 8] {
    random_u64().max(1).to_be_bytes()
}

/// A random trace ID (never all zeros).
pub(crate) fn new_trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&random_u64().to_be_bytes());
    id[8..].copy_from_slice(&random_u64().max(1).to_be_bytes());
    id
}

/// A header value we built ourselves from validated parts.
fn header_value(text: &str) -> Option<http::HeaderValue> {
    http::HeaderValue::from_str(text).ok()
}

thread_local! {
    static CURRENT: RefCell<Option<TraceContext>> = const { RefCell::new(None) };
}

impl TraceContext {
    pub(crate) fn new(span: SpanIds) -> Self {
        Self {
            span,
            parent_span_id: None,
            request_id: None,
            incoming: None,
        }
    }

    /// The caller's context when it was not trusted as a parent (kept as a link).
    pub fn link(&self) -> Option<&TraceParent> {
        self.incoming.as_ref()?.link.as_ref()
    }

    /// The caller's `tracestate`, passed on.
    pub fn trace_state(&self) -> Option<&TraceState> {
        self.incoming.as_ref()?.trace_state.as_ref()
    }

    /// The caller's `baggage`, passed on unchanged.
    pub fn baggage(&self) -> Option<&Baggage> {
        self.incoming.as_ref()?.baggage.as_ref()
    }

    pub(crate) fn set_link(&mut self, link: Option<TraceParent>) {
        if link.is_some() {
            self.incoming.get_or_insert_with(Box::default).link = link;
        }
    }

    /// Takes the caller's `tracestate` and `baggage` (their field lines combined), to pass on.
    pub(crate) fn continue_from(&mut self, headers: &HeaderMap) {
        let trace_state = TraceState::from_headers(headers);
        let baggage = Baggage::from_headers(headers);
        if trace_state.is_none() && baggage.is_none() {
            return;
        }
        let incoming = self.incoming.get_or_insert_with(Box::default);
        incoming.trace_state = trace_state;
        if let Some((baggage, header)) = baggage {
            incoming.baggage = Some(baggage);
            incoming.baggage_header = Some(header);
        }
    }

    /// The context of a request served without a span of its own: the caller's trace passed
    /// through (its span stays the parent of the calls made while serving), or, without a
    /// valid `traceparent`, a new trace that this request's calls share; and the request ID.
    /// So request IDs and traces propagate whether or not spans are recorded.
    pub(crate) fn passed_through(headers: &HeaderMap, request_id: Option<RequestId>) -> Self {
        let mut ctx = match TraceParent::from_headers(headers) {
            Some(parent) => {
                let mut ctx = TraceContext::new(SpanIds {
                    trace_id: parent.trace_id,
                    span_id: parent.parent_id,
                    sampled: parent.sampled(),
                });
                ctx.continue_from(headers);
                ctx
            }
            None => TraceContext::new(SpanIds {
                trace_id: new_trace_id(),
                span_id: non_zero_span_id(),
                sampled: true,
            }),
        };
        ctx.request_id = request_id;
        ctx
    }

    /// The context of the request being served on this thread, if any.
    ///
    /// Current inside the handler's future (and anything it awaits). A task spawned from it
    /// starts without one: carry it over with [`scope`](Self::scope).
    pub fn current() -> Option<TraceContext> {
        CURRENT
            .try_with(|c| c.try_borrow().ok().and_then(|c| c.clone()))
            .ok()
            .flatten()
    }

    /// Runs `f` with the context current on this thread, if any, borrowed (nothing is
    /// cloned).
    pub(crate) fn peek_current<R>(f: impl FnOnce(&TraceContext) -> R) -> Option<R> {
        CURRENT
            .try_with(|c| {
                let current = c.try_borrow().ok()?;
                current.as_ref().map(f)
            })
            .ok()
            .flatten()
    }

    /// Runs `future` with this context current (for tasks spawned while serving a request).
    ///
    /// ```
    /// # async fn demo(work: impl std::future::Future<Output = ()> + Send + 'static) {
    /// use tower_observe::trace::TraceContext;
    /// if let Some(ctx) = TraceContext::current() {
    ///     tokio::spawn(ctx.scope(work));
    /// }
    /// # }
    /// ```
    pub fn scope<F: Future>(self, future: F) -> WithContext<F> {
        WithContext {
            inner: future,
            context: Some(self),
        }
    }

    /// The context an outgoing request continues: one set on the request, else the current.
    pub(crate) fn for_outgoing(extensions: Option<&http::Extensions>) -> Option<TraceContext> {
        extensions
            .and_then(|e| e.get::<TraceContext>().cloned())
            .or_else(TraceContext::current)
    }

    /// IDs for a client span: a child of `parent` (same trace, the parent's sampling
    /// decision), or the root of a new, sampled trace.
    pub(crate) fn client_span_ids(parent: Option<&TraceContext>) -> SpanIds {
        SpanIds {
            trace_id: parent.map_or_else(new_trace_id, |p| p.span.trace_id),
            span_id: non_zero_span_id(),
            sampled: parent.is_none_or(|p| p.span.sampled),
        }
    }

    /// Sends `parent`'s trace upstream with `client` (the client span) as the parent span.
    pub(crate) fn inject_as_client(
        parent: Option<TraceContext>,
        client: SpanIds,
        headers: &mut HeaderMap,
        request_id_header: &HeaderName,
    ) {
        let mut ctx = parent.unwrap_or_else(|| TraceContext::new(client));
        ctx.span = client;
        ctx.inject(headers, request_id_header);
    }

    /// The `traceparent` to send downstream: same trace, this request's span as parent.
    pub fn traceparent(&self) -> String {
        TraceParent {
            trace_id: self.span.trace_id,
            parent_id: self.span.span_id,
            flags: u8::from(self.span.sampled),
        }
        .to_string()
    }

    /// Writes `traceparent`, `tracestate`, `baggage` and the request ID into `headers`
    /// (an existing request-ID header is left alone).
    pub(crate) fn inject(&self, headers: &mut HeaderMap, request_id_header: &HeaderName) {
        let traceparent = TraceParent {
            trace_id: self.span.trace_id,
            parent_id: self.span.span_id,
            flags: u8::from(self.span.sampled),
        }
        .header_bytes();
        if let Ok(v) = http::HeaderValue::from_bytes(&traceparent) {
            headers.insert(TRACEPARENT, v);
        }
        if let Some(incoming) = &self.incoming {
            // An empty list is not sent at all.
            if let Some(v) = incoming
                .trace_state
                .as_ref()
                .filter(|s| !s.is_empty())
                .and_then(|s| header_value(s.as_str()))
            {
                headers.insert(TRACESTATE, v);
            }
            if let Some(v) = incoming.baggage_header.as_deref().and_then(header_value) {
                headers.insert(BAGGAGE, v);
            }
        }
        if let Some(id) = &self.request_id {
            if !headers.contains_key(request_id_header) {
                headers.insert(request_id_header.clone(), id.header_value().clone());
            }
        }
    }
}

pin_project! {
    /// A future that runs with a [`TraceContext`] current; see [`TraceContext::scope`].
    pub struct WithContext<F> {
        #[pin]
        inner: F,
        context: Option<TraceContext>,
    }
}

impl<F> WithContext<F> {
    #[cfg(feature = "tonic")]
    pub(crate) fn new(inner: F, context: Option<TraceContext>) -> Self {
        Self { inner, context }
    }
}

impl<F> std::fmt::Debug for WithContext<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithContext")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// Swaps `slot` with the thread's current context (both ways), if the thread-local is usable.
fn swap_current(slot: &mut Option<TraceContext>) {
    let _ = CURRENT.try_with(|current| {
        if let Ok(mut current) = current.try_borrow_mut() {
            std::mem::swap(&mut *current, slot);
        }
    });
}

impl TraceContext {
    /// Runs `f` with the context in `slot` current: moved in for the call and back out after,
    /// even if `f` panics. An empty slot runs `f` as is.
    #[inline]
    pub(crate) fn with_current<R>(slot: &mut Option<TraceContext>, f: impl FnOnce() -> R) -> R {
        if slot.is_none() {
            return f();
        }
        struct Restore<'a>(&'a mut Option<TraceContext>);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                swap_current(self.0);
            }
        }
        swap_current(slot);
        let _restore = Restore(slot);
        f()
    }
}

impl<F: Future> Future for WithContext<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let inner = this.inner;
        TraceContext::with_current(this.context, || inner.poll(cx))
    }
}
