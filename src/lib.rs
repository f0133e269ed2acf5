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
//! [`architecture`]). One cargo feature per capability; the first six are on by default:
//!
//! | feature | module | what it adds |
//! |---|---|---|
//! | — (always) | [`server`], [`request_id`], [`trace`], [`registry`], [`stats`], [`health`], [`endpoints`], [`env`](mod@env) | request IDs, HTTP server metrics, W3C trace context and request spans, the built-in registry, `/metrics`, `/v1/stats`, `/health`, the `TOWER_OBSERVE_*` variables |
//! | `axum` | [`endpoints`] | route templates from axum's `MatchedPath`, `observer.router()` |
//! | `logs` | `logs` | ECS JSON log lines with the request and trace IDs, redaction |
//! | `client` | `client`, [`classify`] | `http_client_*` metrics, client spans and propagation for any tower HTTP client |
//! | `retry` | `retry` | retries and failovers per target (`client_retries_total`, …) |
//! | `cache` | `cache` | cache results and hit ratios (`cache_requests_total`) |
//! | `pool` | `pool` | backend pool members and health (`backend_pool_health_ratio`) |
//! | `opentelemetry` | [`trace`] | request spans join OpenTelemetry traces through `tracing-opentelemetry` |
//! | `otlp` | `otlp` | request spans, log records and metrics (exponential histograms, cumulative or delta) exported to an OpenTelemetry collector (OTLP/HTTP, TLS, `OTEL_*` variables) |
//! | `reqwest`, `reqwest-middleware` | `client` | `reqwest::Client` as an instrumented tower service, or as middleware |
//! | `tower-retry` | `retry` | retry accounting for `tower::retry` policies |
//! | `tonic` | `grpc` | gRPC server and client layers, status from the trailers |
//! | `history` | `history` | 1m/5m/1h/1d rollups in an embedded file, `/v1/stats/history` |
//! | `alerts` | `alerts` | rules evaluated in process, notifications, `/v1/alerts`, rules for Prometheus |
//! | `tls-aws-lc-rs` (default), `tls-ring` | — | the rustls crypto provider `alerts` and `otlp` fall back to when the application installs none |
//! | `process` | `process` | `process_*` metrics, CPU utilization, tokio runtime figures |
//! | `log-store` | `log_store` | captured events and spans in an embedded file, `/v1/requests/{id}`, `/v1/logs`, ECS export |
//! | `dashboard` | `dashboard` | the live dashboard at `/dashboard`, `/v1/stats/stream`, recent slow and failed requests at `/v1/requests` |
//! | `llm` | `llm` | GenAI server and client layers: tokens, time to first token, per provider and model |
//! | `admin` | `admin` | the observability routes on their own listener, with graceful shutdown |
//! | `operations` | `operations` | database calls, messaging, functions and external APIs timed (`db_client_operation_duration_seconds`, `function_calls_total`, …), queues and workers |
//!
//! [`names`] holds every metric and label name, [`labels`] the label checks and dimensions,
//! [`clock`] the clock the layers read.
//!
//! Each layer works alone or stacked with `tower::ServiceBuilder`.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod macros;
mod observer;

mod access;
#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
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
pub mod env;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub mod grpc;
pub mod health;
mod hex;
#[cfg(feature = "history")]
#[cfg_attr(docsrs, doc(cfg(feature = "history")))]
pub mod history;
pub mod labels;
#[cfg(feature = "llm")]
#[cfg_attr(docsrs, doc(cfg(feature = "llm")))]
pub mod llm;
#[cfg(feature = "log-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "log-store")))]
pub mod log_store;
#[cfg(feature = "logs")]
#[cfg_attr(docsrs, doc(cfg(feature = "logs")))]
pub mod logs;
pub mod names;
#[cfg(feature = "operations")]
#[cfg_attr(docsrs, doc(cfg(feature = "operations")))]
pub mod operations;
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub mod otlp;
#[cfg(any(feature = "history", feature = "log-store"))]
mod redb_file;

// The OpenTelemetry crates the bridge and the exporters are built against, for the application
// to build its layer and providers from (a second version would not join: docs/tracing.md).
/// `opentelemetry` 0.33, the version the bridge is built against (feature `opentelemetry`).
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub use opentelemetry;
/// `opentelemetry_otlp` 0.33, the exporter [`otlp`] uses (feature `otlp`).
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub use opentelemetry_otlp;
/// `opentelemetry_sdk` 0.33, whose providers [`otlp`] builds (feature `otlp`).
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub use opentelemetry_sdk;
/// `tracing-opentelemetry` 0.34: request spans join traces through a layer of this version
/// (feature `opentelemetry`).
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub use tracing_opentelemetry;
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
// Outgoing TLS (crypto provider, roots) shared by the alert channels and the OTLP exporter.
mod time_fmt;
#[cfg(any(feature = "alerts", feature = "otlp"))]
mod tls;
pub mod trace;

#[doc = include_str!("../docs/architecture.md")]
pub mod architecture {}

// A page, not code: its example renders alert rules, hence the feature.
#[cfg(feature = "alerts")]
#[cfg_attr(docsrs, doc(cfg(feature = "alerts")))]
#[doc = include_str!("../docs/deploy.md")]
pub mod deploy {}

pub use labels::{Dimensions, RouteTemplate};
pub use observer::OperationRecord;
pub use observer::{
    BuildError, HttpClientRecord, HttpServerRecord, Observer, ObserverBuilder, RecordSink,
    MAX_DIMENSIONS,
};
pub use request_id::{AssignRequestIdLayer, RequestId};
pub use server::ObserveLayer;
