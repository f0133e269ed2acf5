//! Production-grade observability for Tower, axum and hyper services, in a few layers.
//!
//! tower-observe gives a service request IDs, OpenTelemetry-named HTTP metrics measured to
//! the end of the response body, a `/metrics` endpoint that renders fast and stays bounded in
//! memory, and a `/v1/stats` JSON endpoint with live percentiles — without a global
//! recorder, and without an external service.
//!
//! # Quick start (axum)
//!
//! ```
//! # #[cfg(feature = "axum")]
//! # fn main() {
//! use axum::{routing::get, Router};
//! use tower_observe::Observer;
//!
//! let observer = Observer::new();
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(|| async { "user" }))
//!     .merge(observer.router())   // GET /metrics, GET /v1/stats
//!     .layer(observer.layer());   // request IDs + HTTP metrics
//! # let _ = app;
//! # }
//! # #[cfg(not(feature = "axum"))]
//! # fn main() {}
//! ```
//!
//! # Pieces
//!
//! - [`request_id`]: validate or generate `x-request-id`, put it on the request, the
//!   response, the extensions and the current span.
//! - [`http_metrics`]: `http_server_request_duration_seconds` and friends, with route
//!   templates, `_OTHER` methods, `aborted` responses and a cardinality limit.
//! - [`Observer`]: the shared core. One record per request feeds the metrics, the
//!   statistics and any [`RecordSink`].
//! - [`registry`]: the built-in `metrics` recorder and its Prometheus renderer; your own
//!   `metrics::counter!` calls land there too once it is installed.
//! - [`endpoints`]: the axum router fragment and the plain `tower::Service` for hyper.
//! - [`stats`]: the `/v1/stats` document.
//!
//! Each layer works alone or stacked with `tower::ServiceBuilder`. The docs in `docs/`
//! cover metric names, the statistics schema and the registry's design.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod macros;
mod observer;

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub mod cache;
pub mod classify;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
pub mod clock;
pub mod endpoints;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub mod grpc;
pub mod health;
mod hex;
#[cfg(feature = "history")]
#[cfg_attr(docsrs, doc(cfg(feature = "history")))]
pub mod history;
pub mod labels;
#[cfg(feature = "logs")]
#[cfg_attr(docsrs, doc(cfg(feature = "logs")))]
pub mod logs;
pub mod names;
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub mod otlp;
#[cfg(feature = "pool")]
#[cfg_attr(docsrs, doc(cfg(feature = "pool")))]
pub mod pool;
pub mod registry;
pub mod request_id;
mod response;
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub mod retry;
pub mod server;
pub mod stats;
mod sync;
mod time_fmt;
pub mod trace;

pub use labels::{Dimensions, RouteTemplate};
pub use observer::{
    BuildError, HttpClientRecord, HttpServerRecord, Observer, ObserverBuilder, RecordSink,
    MAX_DIMENSIONS,
};
pub use request_id::{AssignRequestIdLayer, RequestId};
pub use server::ObserveLayer;
