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
//!     .merge(observer.router())   // GET /metrics, GET /v1/stats, GET /health
//!     .layer(observer.layer());   // request IDs + HTTP metrics
//! # let _ = app;
//! # }
//! # #[cfg(not(feature = "axum"))]
//! # fn main() {}
//! ```
//!
//! # Pieces
//!
//! The core, [`Observer`], records; each capability is a module that plugs into it (see
//! `docs/architecture.md`):
//!
//! - [`server`]: [`ObserveLayer`] — request IDs, HTTP server metrics measured to the end of the
//!   body, and (with `.traces(…)`) a span per request;
//! - [`request_id`]: validate or generate `x-request-id`, on its own;
//! - [`trace`]: W3C Trace Context in and out, request spans, [`trace::PropagateLayer`];
//! - `client`, `retry`, `cache`, `pool` (features of the same names, on by default): upstream
//!   calls, retries and failover, cache results, backend pool health;
//! - `grpc` (feature `tonic`): gRPC servers and clients, status from the trailers;
//! - [`health`]: `/health` and `/health/live`; `history` (feature `history`): rollups in an
//!   embedded file; `logs` (feature `logs`): ECS JSON logs; `otlp` (feature `otlp`);
//! - [`registry`]: the built-in `metrics` recorder and its Prometheus renderer; your own
//!   `metrics::counter!` calls land there too once it is installed;
//! - [`endpoints`]: the axum router fragment and the plain `tower::Service` for hyper;
//! - [`stats`]: the `/v1/stats` document; [`names`]: every metric and label name.
//!
//! Each layer works alone or stacked with `tower::ServiceBuilder`.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod macros;
mod observer;

mod access;
#[cfg(feature = "alerts")]
#[cfg_attr(docsrs, doc(cfg(feature = "alerts")))]
pub mod alerts;

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub mod cache;
pub mod classify;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
pub mod clock;
#[cfg(feature = "dashboard")]
#[cfg_attr(docsrs, doc(cfg(feature = "dashboard")))]
pub mod dashboard;
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
#[cfg(feature = "process")]
#[cfg_attr(docsrs, doc(cfg(feature = "process")))]
pub mod process;
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
