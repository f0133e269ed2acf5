//! Outgoing requests: the current trace context injected into their headers.

use std::task::{Context, Poll};

use http::{HeaderName, Request};
use tower_layer::Layer;
use tower_service::Service;

use tracing::instrument::{Instrument, Instrumented};

use super::TraceContext;
use crate::hex;
use crate::labels::HttpMethod;

/// Injects the current [`TraceContext`] into outgoing requests; see the [module docs](crate::trace).
#[derive(Debug, Clone)]
#[must_use]
pub struct PropagateLayer {
    request_id_header: HeaderName,
}

impl Default for PropagateLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl PropagateLayer {
    /// Propagates `traceparent`, `tracestate`, `baggage` and `x-request-id`.
    pub fn new() -> Self {
        Self {
            request_id_header: HeaderName::from_static(crate::request_id::X_REQUEST_ID),
        }
    }

    /// The header that carries the request ID (default `x-request-id`).
    pub fn request_id_header(mut self, header: HeaderName) -> Self {
        self.request_id_header = header;
        self
    }
}

impl<S> Layer<S> for PropagateLayer {
    type Service = Propagate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Propagate {
            inner,
            request_id_header: self.request_id_header.clone(),
        }
    }
}

/// The service made by [`PropagateLayer`].
#[derive(Debug, Clone)]
pub struct Propagate<S> {
    inner: S,
    request_id_header: HeaderName,
}

impl<S> Propagate<S> {
    inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for Propagate<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    /// Each outgoing request is a child of the request being served, with a span ID of its
    /// own (the W3C `parent-id` is "the ID of this request as known by the caller"): a client
    /// span is opened for it, and its ID is the `parent-id` sent. For metrics, error types and
    /// retries of the call as well, use the client instrumentation (`observer.client_layer()`),
    /// which does the same and more.
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // An explicit context on the request wins over the ambient one.
        let Some(parent) = TraceContext::for_outgoing(Some(req.extensions())) else {
            return self.inner.call(req).instrument(tracing::Span::none());
        };
        #[cfg_attr(not(feature = "opentelemetry"), allow(unused_mut))]
        let mut ids = TraceContext::client_span_ids(Some(&parent));
        let with_ids = !super::ids_come_later();
        let span_id = with_ids.then(|| hex::id8(&ids.span_id));
        let span = tracing::info_span!(
            target: "tower_observe::propagate",
            "HTTP client request",
            otel.name = client_span_name(req.method()),
            otel.kind = "client",
            span_id = span_id.as_ref().map(|id| id.as_str()),
        );
        #[cfg(feature = "opentelemetry")]
        super::otel::join(&span, Some(&parent), &mut ids, with_ids);
        TraceContext::inject_as_client(
            Some(parent),
            ids,
            req.headers_mut(),
            &self.request_id_header,
        );
        self.inner.call(req).instrument(span)
    }
}

/// The client span name: the method, `HTTP` for methods outside the known set.
pub(crate) fn client_span_name(method: &http::Method) -> &'static str {
    match HttpMethod::from_method(method) {
        HttpMethod::Other => "HTTP",
        m => m.as_str(),
    }
}
