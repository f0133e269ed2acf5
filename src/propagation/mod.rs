//! Trace propagation: continue the caller's trace on the way in, pass it on on the way out.
//!
//! On the server side, [`TraceOptions`] (given to [`ObserveLayer::traces`](crate::ObserveLayer::traces))
//! makes the observe layer read `traceparent`, `tracestate` and `baggage` (strictly, see
//! [`trace_context`](crate::trace_context)), give the request a [`TraceContext`] with a span ID
//! of its own, open a `tracing` span for it, and keep the context current while the handler
//! runs. A malformed or oversized header starts a new root trace and is never echoed; with
//! [`untrusted_parent`](TraceOptions::untrusted_parent) every incoming context starts a new
//! root and is kept only as a link.
//!
//! On the client side, [`PropagateLayer`] wraps any `tower::Service<http::Request<B>>`: a
//! request made while a [`TraceContext`] is current carries `traceparent` (the serving span as
//! parent), `tracestate`, `baggage` and the request ID.
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_observe::propagation::{PropagateLayer, TraceContext};
//!
//! # async fn demo() {
//! let client = ServiceBuilder::new()
//!     .layer(PropagateLayer::new())
//!     .service(tower::service_fn(|req: http::Request<()>| async move {
//!         Ok::<_, std::convert::Infallible>(req.headers().contains_key("traceparent"))
//!     }));
//! # let _ = client;
//! # }
//! ```

mod context;
#[cfg(feature = "opentelemetry")]
pub(crate) mod otel;
mod server;

pub use context::{TraceContext, WithContext};
pub use server::TraceOptions;
pub(crate) use server::{new_trace_id, non_zero_span_id, Hex, SpanHandle};

use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request};
use tower_layer::Layer;
use tower_service::Service;

/// `traceparent`
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// `baggage`
pub const BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// Injects the current [`TraceContext`] into outgoing requests; see the [module docs](self).
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

/// A header value we built ourselves from validated parts.
fn header_value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}
