//! Traces: continue the caller's W3C trace on the way in, give each request a span, and pass
//! the context on on the way out.
//!
//! On the server side, [`TraceOptions`] (given to `ObserveLayer::traces`) makes the observe
//! layer read `traceparent`, `tracestate` and `baggage` (strictly, see [`w3c`]), give the
//! request a [`TraceContext`] with a span ID of its own, open a `tracing` span for it, and keep
//! the context current while the handler runs. A malformed or oversized header starts a new
//! root trace and is never echoed; with [`untrusted_parent`](TraceOptions::untrusted_parent)
//! every incoming context starts a new root and is kept only as a link.
//!
//! On the client side, [`PropagateLayer`] wraps any `tower::Service<http::Request<B>>`: a
//! request made while a [`TraceContext`] is current carries `traceparent` (the serving span as
//! parent), `tracestate`, `baggage` and the request ID.
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_observe::trace::{PropagateLayer, TraceContext};
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
mod propagate;
mod server;
pub mod w3c;

pub(crate) use context::{new_trace_id, non_zero_span_id};
pub use context::{SpanIds, TraceContext, WithContext};
pub use propagate::{Propagate, PropagateLayer};
pub use server::TraceOptions;
pub(crate) use server::{ServerTrace, SpanHandle};
