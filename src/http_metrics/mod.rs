//! HTTP server metrics, OpenTelemetry-named, measured to the end of the response body.
//!
//! [`HttpMetricsLayer`] (made by [`Observer::http_metrics_layer`]) records, per request:
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
//!   [`failure_if`](HttpMetricsLayer::failure_if);
//! - body sizes are bytes actually read and sent, not `Content-Length`.
//!
//! With axum, add it with `Router::layer` so it sees the matched route (it then also sees
//! the fallback). The recorded values feed `/metrics`, `/v1/stats` and every [`RecordSink`]
//! of the observer.
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower_observe::Observer;
//!
//! let observer = Observer::new();
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(|| async { "user" }))
//!     .layer(observer.http_metrics_layer().failure_if(|s| s.is_server_error() || s == 429));
//! ```
//!
//! [`RouteTemplate`]: crate::labels::RouteTemplate
//! [`RecordSink`]: crate::RecordSink

mod body;
mod future;
pub(crate) mod route;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

pub use body::{RequestBody, ResponseBody};
pub use future::ResponseFuture;

use crate::labels::{Dimensions, HttpMethod};
use crate::observer::Scheme;
use crate::trace::SpanHandle;
use crate::trace::SpanIds;
use crate::Observer;
use future::{Arrival, InFlight};

type FailureFn = Arc<dyn Fn(StatusCode) -> bool + Send + Sync>;

/// Records HTTP server metrics into an [`Observer`]; see the [module docs](self).
#[derive(Clone)]
#[must_use]
pub struct HttpMetricsLayer {
    config: Arc<Config>,
}

/// Shared by every request of a layer, so a request clones one `Arc`.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) observer: Observer,
    failure_if: Option<FailureFn>,
    default_scheme: Scheme,
    /// Set by the fused `ObserveLayer`: the header that echoes the request ID.
    pub(crate) echo_header: Option<http::HeaderName>,
}

impl fmt::Debug for HttpMetricsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HttpMetricsLayer")
            .field(&self.config)
            .finish()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("custom_classifier", &self.failure_if.is_some())
            .field("default_scheme", &self.default_scheme.as_str())
            .field("echo_header", &self.echo_header)
            .finish_non_exhaustive()
    }
}

impl HttpMetricsLayer {
    /// A layer recording into `observer`.
    pub fn new(observer: &Observer) -> Self {
        Self {
            config: Arc::new(Config {
                observer: observer.clone(),
                failure_if: None,
                default_scheme: Scheme::Http,
                echo_header: None,
            }),
        }
    }

    /// Which statuses count as failures (`error_type` set, `errors` in `/v1/stats`).
    /// Default: 5xx.
    pub fn failure_if(mut self, f: impl Fn(StatusCode) -> bool + Send + Sync + 'static) -> Self {
        Arc::make_mut(&mut self.config).failure_if = Some(Arc::new(f));
        self
    }

    /// Labels requests whose URI has no scheme (the usual case on a server) `url_scheme="https"`
    /// instead of `http`: for services behind a TLS terminator or serving TLS themselves.
    pub fn assume_https(mut self) -> Self {
        Arc::make_mut(&mut self.config).default_scheme = Scheme::Https;
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

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetrics {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`HttpMetricsLayer`].
#[derive(Clone)]
pub struct HttpMetrics<S> {
    inner: S,
    layer: HttpMetricsLayer,
}

impl<S: fmt::Debug> fmt::Debug for HttpMetrics<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpMetrics")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl HttpMetricsLayer {
    /// This layer's settings, echoing the request ID in `header` (for the fused layer).
    pub(crate) fn config_echoing(&self, header: http::HeaderName) -> Arc<Config> {
        let mut config = (*self.config).clone();
        config.echo_header = Some(header);
        Arc::new(config)
    }
}

impl<S> HttpMetrics<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpMetrics<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: http_body::Body,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let now = self.layer.config.observer.now_nanos();
        let inner = &mut self.inner;
        start(&self.layer.config, req, now, None, None, None, |req| {
            inner.call(req)
        })
    }
}

/// Starts measuring `req` (which arrived at `start`, an observer clock reading) and calls
/// `inner` with it: the body of [`HttpMetrics::call`],
/// shared with the fused [`ObserveLayer`](crate::ObserveLayer) service.
#[allow(clippy::too_many_arguments)] // one private call site per layer
pub(crate) fn start<ReqBody, Fut>(
    config: &Arc<Config>,
    req: Request<ReqBody>,
    start: u64,
    echo: Option<http::HeaderValue>,
    span: Option<SpanHandle>,
    span_ids: Option<SpanIds>,
    call: impl FnOnce(Request<RequestBody<ReqBody>>) -> Fut,
) -> ResponseFuture<Fut>
where
    ReqBody: http_body::Body,
{
    let observer = &config.observer;
    let method = HttpMethod::from_method(req.method());
    let scheme = match req.uri().scheme() {
        Some(s) if *s == http::uri::Scheme::HTTPS => Scheme::Https,
        Some(_) => Scheme::Http,
        None => config.default_scheme,
    };
    let route = route::RouteLabel::from_request(&req);
    let dimensions = if observer.dimensions().is_empty() {
        None
    } else {
        req.extensions().get::<Dimensions>().cloned().map(Box::new)
    };
    let span_ids = span_ids.or_else(|| req.extensions().get::<SpanIds>().copied());
    let (parts, body) = req.into_parts();
    let (body, request_bytes) = RequestBody::wrap(body);
    observer.request_started(method, scheme);
    // Armed before the inner call: even a panic in it brings the active gauge back down.
    let in_flight = InFlight::new(
        config.clone(),
        Arrival {
            start,
            method,
            scheme,
            route,
            dimensions,
            request_bytes,
            span_ids,
            span,
        },
    );
    ResponseFuture::new(call(Request::from_parts(parts, body)), in_flight, echo)
}

impl Observer {
    /// An [`HttpMetricsLayer`] recording into this observer.
    pub fn http_metrics_layer(&self) -> HttpMetricsLayer {
        HttpMetricsLayer::new(self)
    }
}
