//! [`ObserveLayer`] and its settings.

use std::fmt;
use std::sync::Arc;

use http::StatusCode;
use tower_layer::Layer;

use super::route::RouteRules;
use super::series::{Scheme, ServerPart};
use super::service::Observe;
use crate::request_id::{AssignRequestIdLayer, MakeRequestId};
use crate::trace::TraceOptions;
use crate::Observer;

type FailureFn = Arc<dyn Fn(StatusCode) -> bool + Send + Sync>;

/// Request IDs, HTTP server metrics and (opt-in) request spans in one layer; made by
/// [`Observer::layer`]. See the [module docs](super).
///
/// ```
/// # #[cfg(feature = "axum")]
/// # fn main() {
/// use axum::{routing::get, Router};
/// use tower_observe::Observer;
///
/// let observer = Observer::new();
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hi" }))
///     .layer(observer.layer().request_id(observer.request_id_layer().max_len(64)));
/// # }
/// # #[cfg(not(feature = "axum"))]
/// # fn main() {}
/// ```
#[derive(Clone)]
#[must_use]
pub struct ObserveLayer {
    config: Arc<Config>,
}

/// Everything a request needs from the layer, behind one `Arc`: axum clones the service for
/// every request, and the request's drop guard keeps a clone until it is recorded.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) observer: Observer,
    /// The server's series and statistics, attached to the observer when the layer was made.
    pub(crate) series: Arc<ServerPart>,
    pub(crate) request_id: Option<AssignRequestIdLayer>,
    pub(crate) traces: Option<TraceOptions>,
    failure_if: Option<FailureFn>,
    pub(crate) default_scheme: Scheme,
    pub(crate) own_endpoints: super::OwnEndpoints,
    pub(crate) catch_panics: bool,
    /// Routes ignored or grouped under one label.
    pub(crate) routes: RouteRules,
}

impl fmt::Debug for ObserveLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        f.debug_struct("ObserveLayer")
            .field("request_id", &c.request_id)
            .field("traces", &c.traces)
            .field("custom_failure_if", &c.failure_if.is_some())
            .field("default_scheme", &c.default_scheme.as_str())
            .field("own_endpoints", &c.own_endpoints)
            .field("catch_panics", &c.catch_panics)
            .field("routes", &c.routes)
            .finish_non_exhaustive()
    }
}

impl ObserveLayer {
    /// Request IDs and metrics into `observer`, no traces.
    pub(crate) fn new(observer: &Observer) -> Self {
        let series = observer.part(ServerPart::default);
        series
            .wiring
            .layer_made
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Self {
            config: Arc::new(Config {
                observer: observer.clone(),
                series,
                request_id: Some(observer.request_id_layer()),
                traces: None,
                failure_if: None,
                default_scheme: Scheme::Http,
                own_endpoints: super::OwnEndpoints::default(),
                catch_panics: true,
                routes: RouteRules::default(),
            }),
        }
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Replaces the request-ID settings.
    pub fn request_id(mut self, layer: AssignRequestIdLayer) -> Self {
        self.config_mut().request_id = Some(layer);
        self
    }

    /// Makes the IDs of requests that arrive without a valid one with `make` instead of
    /// UUIDv7 (see [`MakeRequestId`]; tower-http's `MakeRequestId`). Turns request IDs on
    /// if [`without_request_id`](Self::without_request_id) had turned them off; the other
    /// request-ID settings are kept.
    pub fn make_request_id(mut self, make: impl MakeRequestId) -> Self {
        let config = self.config_mut();
        let ids = config
            .request_id
            .take()
            .unwrap_or_else(|| config.observer.request_id_layer());
        config.request_id = Some(ids.make_request_id(make));
        self
    }

    /// Leaves request IDs alone (for a stack that assigns them elsewhere).
    pub fn without_request_id(mut self) -> Self {
        self.config_mut().request_id = None;
        self
    }

    /// Traces requests too: W3C context extraction, a `tracing` span per request (ending with
    /// the response body, like the duration metric), the context kept current for
    /// [`PropagateLayer`](crate::trace::PropagateLayer), and exemplars for sampled requests.
    /// See [`trace`](crate::trace).
    pub fn traces(mut self, options: TraceOptions) -> Self {
        self.config_mut().traces = Some(options);
        self
    }

    /// Which statuses count as failures (`error_type` set, `errors` in `/v1/stats`).
    /// Default: 5xx.
    pub fn failure_if(mut self, f: impl Fn(StatusCode) -> bool + Send + Sync + 'static) -> Self {
        self.config_mut().failure_if = Some(Arc::new(f));
        self
    }

    /// How requests to the observer's own endpoints (`/metrics`, `/v1/*`, `/health*`,
    /// `/dashboard*`) are recorded; default [`OwnEndpoints::Apart`](super::OwnEndpoints::Apart):
    /// kept out of the application's routes and error rate, summarised apart.
    pub fn own_endpoints(mut self, how: super::OwnEndpoints) -> Self {
        self.config_mut().own_endpoints = how;
        self
    }

    /// Routes not recorded at all: no Prometheus series, no `/v1/stats` entry, nothing given
    /// to record sinks (history, the dashboard) — like axum-prometheus'
    /// `with_ignore_patterns`. For probes and internal routes that would only add noise.
    ///
    /// A pattern is matched against the request's route template (the `http_route` value:
    /// axum's `MatchedPath` such as `/users/{id}`, a [`RouteTemplate`], or `_UNMATCHED`);
    /// `*` stands for any run of characters, so `/internal/*` takes every route under
    /// `/internal/`. Patterns are read once, when the layer is built, and matched without a
    /// regular expression or an allocation. Ignore patterns are checked before
    /// [`group_routes`](Self::group_routes). The request still gets its request ID and span,
    /// and the active-requests gauge (which has no route label) still counts it while it runs.
    ///
    /// ```
    /// let observer = tower_observe::Observer::new();
    /// let layer = observer.layer().ignore_routes(["/health/live", "/internal/*"]);
    /// # let _ = layer;
    /// ```
    ///
    /// [`RouteTemplate`]: crate::RouteTemplate
    pub fn ignore_routes<P: AsRef<str>>(mut self, patterns: impl IntoIterator<Item = P>) -> Self {
        let rules = &mut self.config_mut().routes;
        for pattern in patterns {
            rules.ignore(pattern.as_ref());
        }
        self
    }

    /// Records every route matching one of `patterns` under the one `http_route` value
    /// `label`, in Prometheus and in `/v1/stats` — like axum-prometheus'
    /// `with_group_patterns_as`. For families of routes that mean one thing to an operator
    /// (`/assets/*` → `/assets`) or that would otherwise take many label sets.
    ///
    /// Patterns are matched as in [`ignore_routes`](Self::ignore_routes); when several groups
    /// match, the one added first wins.
    ///
    /// ```
    /// let observer = tower_observe::Observer::new();
    /// let layer = observer
    ///     .layer()
    ///     .group_routes("/assets", ["/assets/*", "/favicon.ico"]);
    /// # let _ = layer;
    /// ```
    pub fn group_routes<P: AsRef<str>>(
        mut self,
        label: impl AsRef<str>,
        patterns: impl IntoIterator<Item = P>,
    ) -> Self {
        let rules = &mut self.config_mut().routes;
        for pattern in patterns {
            rules.group(label.as_ref(), pattern.as_ref());
        }
        self
    }

    /// Whether a panic in the inner service (its `call`, its future, or its response body) is
    /// caught: answered `500` (when the headers are not out yet), recorded with
    /// `error_type="panic"` and logged once with its message and stack trace. Default: on.
    /// A panic in a response body after its headers were sent is recorded and logged, then
    /// resumed, so the server drops the connection. See "Panics" in the metrics docs and
    /// [`install_panic_hook`](super::install_panic_hook).
    pub fn catch_panics(mut self, catch: bool) -> Self {
        self.config_mut().catch_panics = catch;
        self
    }

    /// Labels requests whose URI has no scheme (the usual case on a server) `url_scheme="https"`
    /// instead of `http`: for services behind a TLS terminator or serving TLS themselves.
    pub fn assume_https(mut self) -> Self {
        self.config_mut().default_scheme = Scheme::Https;
        self
    }
}

impl Config {
    pub(crate) fn is_failure(&self, status: StatusCode) -> bool {
        match &self.failure_if {
            None => status.is_server_error(),
            Some(f) => f(status),
        }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe::new(inner, self.config.clone())
    }
}
