//! Outgoing requests: the current trace context injected into their headers.

use std::task::{Context, Poll};

use http::{HeaderName, Request};
use tower_layer::Layer;
use tower_service::Service;

use super::TraceContext;

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
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // An explicit context on the request wins over the ambient one.
        let ctx = req
            .extensions()
            .get::<TraceContext>()
            .cloned()
            .or_else(TraceContext::current);
        if let Some(ctx) = ctx {
            ctx.inject(req.headers_mut(), &self.request_id_header);
        }
        self.inner.call(req)
    }
}
