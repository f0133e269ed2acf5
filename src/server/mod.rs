//! The HTTP server layer: request IDs, OpenTelemetry-named metrics measured to the end of the
//! response body, and (opt-in) a span per request with W3C propagation — one service, one
//! future, one body wrapper.
//!
//! [`ObserveLayer`] (made by [`Observer::layer`]) records, per request:
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `http_server_request_duration_seconds` | histogram | method, route, status, scheme, `error_type` on failure, dimensions |
//! | `http_server_request_body_size_bytes` | histogram | same |
//! | `http_server_response_body_size_bytes` | histogram | same |
//! | `http_server_active_requests` | gauge | method, scheme |
//!
//! Rules it keeps:
//!
//! - the duration runs from the request's arrival until its response body has been fully
//!   handed to the server (or dropped), not until the headers: a 30 s stream records 30 s;
//! - a response dropped before its end (the client went away) is recorded with
//!   `error_type="aborted"`, and the active-requests gauge always comes back down;
//! - `http_route` is axum's `MatchedPath` template (or a [`RouteTemplate`] extension);
//!   unmatched requests get `_UNMATCHED`, never the raw path; methods outside RFC 9110 and
//!   `PATCH` become `_OTHER`;
//! - by default 5xx responses are failures (`error_type="503"`); change it with
//!   [`failure_if`](ObserveLayer::failure_if);
//! - body sizes are bytes actually read and sent, not `Content-Length`.
//!
//! With axum, add it with `Router::layer` so it sees the matched route (it then also sees
//! the fallback). The recorded values feed `/metrics`, `/v1/stats` and every [`RecordSink`]
//! of the observer.
//!
//! ```
//! # #[cfg(feature = "axum")]
//! # fn main() {
//! use axum::{routing::get, Router};
//! use tower_observe::{trace::TraceOptions, Observer};
//!
//! let observer = Observer::new();
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(|| async { "user" }))
//!     .layer(
//!         observer
//!             .layer()
//!             .failure_if(|s| s.is_server_error() || s == 429)
//!             .traces(TraceOptions::new()),
//!     );
//! # }
//! # #[cfg(not(feature = "axum"))]
//! # fn main() {}
//! ```
//!
//! [`observer.http_metrics_layer()`](Observer::http_metrics_layer) is the same layer with
//! request IDs off, for stacks that assign them elsewhere.
//!
//! [`RouteTemplate`]: crate::labels::RouteTemplate
//! [`RecordSink`]: crate::RecordSink
//!
// An example in docs/metrics.md uses axum (and no hidden lines to gate it): the page is always
// rendered, and run as doctests when the `axum` feature is on.
#![cfg_attr(any(not(doctest), feature = "axum"), doc = include_str!("../../docs/metrics.md"))]

mod body;
pub mod future;
mod in_flight;
mod layer;
mod panic;
mod route;
mod series;
mod service;
mod wiring;

pub(crate) use wiring::EndpointProbe;

pub use body::{RequestBody, ResponseBody};
pub use layer::ObserveLayer;
#[cfg(feature = "tonic")]
pub use panic::CatchUnwind;
pub use panic::{
    install_panic_hook, PanicBacktraces, MAX_LOGGED_PANIC_MESSAGE_LEN, MAX_LOGGED_STACK_TRACE_LEN,
};
pub use service::Observe;

/// A response extension that marks a live stream (Server-Sent Events, a long poll, a
/// WebSocket upgrade): its body lasts as long as the client stays, so the request is measured
/// to its response headers instead of to the end of its body, and does not count as in flight
/// while the stream is open. Without it, one dashboard left open for an hour would read as a
/// one-hour request in the latency percentiles.
///
/// ```
/// let mut response = http::Response::new(());
/// response.extensions_mut().insert(tower_observe::server::LiveStream);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveStream;

/// A response extension that marks the observer's own endpoints (`/metrics`, `/v1/*`,
/// `/health*`, `/dashboard*`): the router fragment and [`ObserveEndpoints`] put it on every
/// response they make, and the server layer records those requests as its
/// [`own_endpoints`](ObserveLayer::own_endpoints) setting says. A service can mark its own
/// operational endpoints the same way.
///
/// ```
/// let mut response = http::Response::new(());
/// response.extensions_mut().insert(tower_observe::server::ObserverEndpoint);
/// ```
///
/// [`ObserveEndpoints`]: crate::endpoints::ObserveEndpoints
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObserverEndpoint;

/// How the server layer records requests to the observer's own endpoints (responses marked
/// [`ObserverEndpoint`]); set with [`ObserveLayer::own_endpoints`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OwnEndpoints {
    /// The default. In Prometheus, a family of their own,
    /// `tower_observe_endpoint_request_duration_seconds` (the labels of
    /// `http_server_request_duration_seconds`, no body sizes), so that no rule or panel
    /// over the `http_server_*` families counts them; in `/v1/stats` only as one summary,
    /// `observer_endpoints`: not in `routes`, the totals, the windows, the health's error
    /// rate, nor given to record sinks (history, the dashboard's notable requests). A
    /// dashboard left open or a scraper every 15 s would otherwise fill the route table and
    /// dilute the application's error rate, and a red `/health` answering its probes with
    /// 503 would count as the application failing.
    #[default]
    Apart,
    /// Not recorded at all (the active-requests gauge still goes up and down).
    Ignore,
    /// Recorded like the application's routes.
    Record,
}

use crate::Observer;

impl Observer {
    /// Request IDs and HTTP server metrics in one layer (see [`ObserveLayer`]); add
    /// [`traces`](ObserveLayer::traces) for a span per request.
    pub fn layer(&self) -> ObserveLayer {
        ObserveLayer::new(self)
    }

    /// The same layer with request IDs off: HTTP server metrics only.
    pub fn http_metrics_layer(&self) -> ObserveLayer {
        ObserveLayer::new(self).without_request_id()
    }
}
