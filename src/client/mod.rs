//! Client-side instrumentation: metrics, spans and trace propagation for outgoing HTTP calls.
//!
//! Every call made through it records `http_client_request_duration_seconds` (from sending to
//! the response headers, as the OpenTelemetry client conventions allow, labelled
//! `http_request_method`, `url_scheme`, `server_address`, `server_port`,
//! `http_response_status_code` and, on failure, `error_type` = the status code for 4xx/5xx or
//! `timeout`, `connection_refused`, `connect`, `connection_reset`, `cancelled`, …), the
//! request and response body sizes when known, and `http_client_active_requests`; the call
//! shows under `upstreams` in `/v1/stats`. It opens a client span
//! (`otel.kind = "client"`, `http.request.resend_count` on resends) as a child of the request
//! being served, and sends `traceparent` (with the client span as parent), `tracestate`,
//! `baggage` and `x-request-id` upstream. Upstream hosts come from outside the code, so every
//! label set is capped like the server's (`_OTHER` past the limit).
//!
//! It comes in the shapes clients are composed in:
//!
//! - a tower layer, [`ClientLayer`], over any `tower::Service<http::Request<B>>` (hyper-util's
//!   client, a tonic channel) and, with feature `reqwest`, over `reqwest::Client`, which is a
//!   `tower::Service<reqwest::Request>`;
//! - with feature `reqwest-middleware`, a `reqwest_middleware::Middleware`
//!   (`ClientLayer::middleware`).
//!
//! ```
//! # #[cfg(feature = "reqwest")]
//! # async fn demo() -> Result<(), reqwest::Error> {
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_observe::Observer;
//!
//! let observer = Observer::new();
//! let mut client = ServiceBuilder::new()
//!     .layer(observer.client_layer())
//!     .service(reqwest::Client::new());
//! let request = reqwest::Request::new(http::Method::GET, "http://127.0.0.1:1/".parse().unwrap());
//! let _ = client.ready().await?.call(request).await;
//! # Ok(()) }
//! ```
//!
//! With `reqwest::Client` as the tower service, a resend's span cannot carry
//! `http.request.resend_count` (reqwest 0.13 requests have no extensions); retries are still
//! counted by `RetryTracker::policy` (feature `tower-retry`).

mod classify;
#[cfg(feature = "reqwest-middleware")]
mod middleware;
mod service;

use std::sync::Arc;

use http::HeaderName;

pub(crate) use classify::status_label;
pub use classify::{
    classify_error_chain, ClientError, ClientRequest, ClientResponse, ERROR_CANCELLED,
    ERROR_CONNECT, ERROR_CONNECTION_REFUSED, ERROR_CONNECTION_RESET, ERROR_TIMEOUT,
};
#[cfg(feature = "reqwest-middleware")]
pub use middleware::{ClientMiddleware, RetryAccountingMiddleware};
pub use service::{ClientFuture, ObserveClient};

use crate::cache::{CacheHandle, CacheStatus};
use crate::hex::Hex;
use crate::labels::HttpMethod;
use crate::observer::{Endpoint, EndpointCache, Observer};
use crate::stats::Outcome;
use crate::trace::SpanIds;
use crate::trace::TraceContext;

/// Instruments an HTTP client; see the [module docs](self). Made by
/// [`Observer::client_layer`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientLayer {
    pub(crate) observer: Observer,
    pub(crate) options: Arc<ClientOptions>,
}

#[derive(Debug, Clone)]
pub(crate) struct ClientOptions {
    pub(crate) target: Arc<str>,
    propagate: bool,
    request_id_header: HeaderName,
    cache: Option<CacheHandle>,
    /// Constant labels on every client metric of this layer.
    labels: Arc<[(Arc<str>, Arc<str>)]>,
    /// Shared by the clones of one layer (and reset when a setting changes).
    endpoint_cache: Arc<EndpointCache>,
}

impl ClientLayer {
    pub(crate) fn new(observer: Observer) -> Self {
        Self {
            observer,
            options: Arc::new(ClientOptions {
                target: Arc::from("default"),
                propagate: true,
                request_id_header: HeaderName::from_static(crate::request_id::X_REQUEST_ID),
                cache: None,
                labels: Arc::from(Vec::new()),
                endpoint_cache: Arc::default(),
            }),
        }
    }

    fn options_mut(&mut self) -> &mut ClientOptions {
        let options = Arc::make_mut(&mut self.options);
        // The cached endpoint belongs to the settings it was made with.
        options.endpoint_cache = Arc::default();
        options
    }

    /// Adds a constant label to every client metric of this layer, for comparing clients:
    /// `strategy="round_robin"` against `strategy="least_latency"`, or `upstream="billing"`.
    /// The name must be a valid label name that is not one of the client labels.
    ///
    /// ```
    /// use tower_observe::Observer;
    ///
    /// let observer = Observer::new();
    /// let layer = observer.client_layer().label("strategy", "round_robin").unwrap();
    /// assert!(observer.client_layer().label("server_port", "1").is_err());
    /// # let _ = layer;
    /// ```
    pub fn label(mut self, name: &str, value: &str) -> Result<Self, crate::BuildError> {
        use crate::names;
        const RESERVED: [&str; 6] = [
            names::HTTP_REQUEST_METHOD,
            names::URL_SCHEME,
            names::SERVER_ADDRESS,
            names::SERVER_PORT,
            names::HTTP_RESPONSE_STATUS_CODE,
            names::ERROR_TYPE,
        ];
        if !crate::labels::is_valid_label_name(name) {
            return Err(crate::BuildError::InvalidDimension(name.to_owned()));
        }
        if RESERVED.contains(&name) || name.starts_with("__") || name == "le" {
            return Err(crate::BuildError::ReservedDimension(name.to_owned()));
        }
        let options = self.options_mut();
        let mut labels: Vec<(Arc<str>, Arc<str>)> = options
            .labels
            .iter()
            .filter(|(k, _)| **k != *name)
            .cloned()
            .collect();
        labels.push((Arc::from(name), Arc::from(value)));
        options.labels = labels.into();
        Ok(self)
    }

    /// The retry target resends through this client are counted under (default `"default"`;
    /// see [`crate::retry`]).
    pub fn target(mut self, name: &str) -> Self {
        self.options_mut().target = Arc::from(name);
        self
    }

    /// Whether to send `traceparent`, `tracestate`, `baggage` and the request ID upstream
    /// (default `true`). Turn it off for third-party APIs that should not see your trace IDs.
    pub fn propagate(mut self, propagate: bool) -> Self {
        self.options_mut().propagate = propagate;
        self
    }

    /// The header that carries the request ID upstream (default `x-request-id`).
    pub fn request_id_header(mut self, header: HeaderName) -> Self {
        self.options_mut().request_id_header = header;
        self
    }

    /// Classifies every response into `cache` as hit, miss, stale or bypass, from a
    /// [`CacheStatus`] extension or the `Cache-Status`, `X-Cache` and `Age` headers (see
    /// [`crate::cache`]). Responses that say nothing about caching are not counted.
    pub fn cache(mut self, cache: CacheHandle) -> Self {
        self.options_mut().cache = Some(cache);
        self
    }
}

/// Why an attempt is worth retrying.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "reqwest-middleware"), allow(dead_code))]
pub(crate) enum Failure {
    /// 5xx, 429 or 408.
    Status(u16),
    Error(&'static str),
}

impl Failure {
    /// A status worth retrying: 5xx, 429 (rate limited) and 408 (request timeout).
    pub(crate) fn of_status(status: u16) -> Option<Failure> {
        (status >= 500 || status == 429 || status == 408).then_some(Failure::Status(status))
    }

    #[cfg_attr(not(feature = "reqwest-middleware"), allow(dead_code))]
    /// The `reason` label.
    pub(crate) fn label(self) -> std::borrow::Cow<'static, str> {
        match self {
            Failure::Status(s) => status_label(s).into(),
            Failure::Error(e) => e.into(),
        }
    }
}

/// How one attempt ended, for retry accounting.
#[derive(Debug)]
#[cfg_attr(not(feature = "reqwest-middleware"), allow(dead_code))]
pub(crate) struct AttemptEnd {
    pub(crate) failure: Option<Failure>,
    /// The upstream it went to.
    pub(crate) endpoint: Option<Arc<Endpoint>>,
}

/// One outgoing call being measured: started before sending, finished with the response or
/// the error, recorded as `cancelled` if dropped before either.
#[derive(Debug)]
pub(crate) struct ClientCall {
    observer: Observer,
    pub(crate) endpoint: Option<Arc<Endpoint>>,
    cache: Option<CacheHandle>,
    method: HttpMethod,
    start: u64,
    request_bytes: Option<u64>,
    resend_count: u32,
    span: tracing::Span,
    ids: SpanIds,
    done: bool,
}

impl ClientCall {
    pub(crate) fn start<R: ClientRequest>(
        observer: &Observer,
        options: &ClientOptions,
        req: &mut R,
        resend_count: Option<u32>,
    ) -> Self {
        let resend_count = resend_count
            .or_else(|| {
                req.extensions()
                    .and_then(|e| e.get::<crate::retry::ResendCount>())
                    .map(|r| r.0)
            })
            .unwrap_or(0);
        let method = HttpMethod::from_method(req.method());
        let parent = TraceContext::for_outgoing(req.extensions());
        #[cfg_attr(not(feature = "opentelemetry"), allow(unused_mut))]
        let mut ids = TraceContext::client_span_ids(parent.as_ref());
        let server = req.server();
        let span = open_span(req, method, server, resend_count, &ids, parent.as_ref());
        #[cfg(feature = "opentelemetry")]
        crate::trace::otel::adopt(&span, &mut ids);
        let endpoint = server.map(|(scheme, host, port)| {
            observer.client_started(&options.endpoint_cache, &options.labels, scheme, host, port)
        });
        let request_bytes = req.body_size();
        if options.propagate {
            TraceContext::inject_as_client(
                parent,
                ids,
                req.headers_mut(),
                &options.request_id_header,
            );
        }
        Self {
            observer: observer.clone(),
            endpoint,
            cache: options.cache.clone(),
            method,
            start: observer.now_nanos(),
            request_bytes,
            resend_count,
            span,
            ids,
            done: false,
        }
    }

    /// Records a response.
    pub(crate) fn finish_response<Res: ClientResponse>(mut self, res: &Res) -> AttemptEnd {
        let status = res.status_code();
        if let Some(cache) = &self.cache {
            if let Some(result) =
                CacheStatus::classify(res.response_headers(), res.response_extensions())
            {
                cache.record(result);
            }
        }
        let error = (status >= 400).then(|| status_label(status));
        let outcome = if status >= 500 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        self.record(Some(status), error.as_deref(), outcome, res.body_size());
        AttemptEnd {
            failure: Failure::of_status(status),
            endpoint: self.endpoint.clone(),
        }
    }

    /// Records a transport error.
    pub(crate) fn finish_error(mut self, error_type: &'static str) -> AttemptEnd {
        self.record(None, Some(error_type), Outcome::Failure, None);
        AttemptEnd {
            failure: Some(Failure::Error(error_type)),
            endpoint: self.endpoint.clone(),
        }
    }

    fn record(
        &mut self,
        status: Option<u16>,
        error_type: Option<&str>,
        outcome: Outcome,
        response_bytes: Option<u64>,
    ) {
        self.done = true;
        let end = self.observer.now_nanos();
        if let Some(status) = status {
            self.span.record("http.response.status_code", status);
        }
        if let Some(error) = error_type {
            self.span.record("error.type", error);
            if error != ERROR_CANCELLED {
                self.span.record("otel.status_code", "ERROR");
            }
        }
        if let Some(endpoint) = &self.endpoint {
            self.observer
                .record_client(&crate::observer::ClientCompletion {
                    endpoint,
                    method: self.method,
                    status,
                    error_type,
                    outcome,
                    start: self.start,
                    end,
                    request_bytes: self.request_bytes,
                    response_bytes,
                    resend_count: self.resend_count,
                    exemplar: Some(self.ids),
                });
        }
    }
}

impl Drop for ClientCall {
    fn drop(&mut self) {
        if !self.done {
            self.record(None, Some(ERROR_CANCELLED), Outcome::Aborted, None);
        }
    }
}

/// The client span, with the OpenTelemetry HTTP client attributes. `url.full` leaves out the
/// query and any user info (credentials).
fn open_span<R: ClientRequest>(
    req: &R,
    method: HttpMethod,
    server: Option<(&str, &str, u16)>,
    resend_count: u32,
    ids: &SpanIds,
    parent: Option<&TraceContext>,
) -> tracing::Span {
    let name = match method {
        HttpMethod::Other => "HTTP",
        m => m.as_str(),
    };
    let (scheme, host, port) = server.unwrap_or(("", "", 0));
    let span = tracing::info_span!(
        target: "tower_observe::http_client",
        "HTTP client request",
        otel.name = name,
        otel.kind = "client",
        http.request.method = method.as_str(),
        http.request.method_original = tracing::field::Empty,
        server.address = host,
        server.port = port,
        url.full = %UrlFull { scheme, host, port, path: req.path() },
        http.request.resend_count = (resend_count > 0).then_some(resend_count),
        // Inside a served request the trace ID is the server span's (log layers read the
        // whole scope), so only a root client span records its own.
        trace_id = parent.is_none().then(|| tracing::field::display(Hex(&ids.trace_id))),
        span_id = %Hex(&ids.span_id),
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if method == HttpMethod::Other {
        span.record("http.request.method_original", req.method().as_str());
    }
    span
}

struct UrlFull<'a> {
    scheme: &'a str,
    host: &'a str,
    port: u16,
    path: &'a str,
}

impl std::fmt::Display for UrlFull<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = self.host;
        if host.contains(':') {
            write!(f, "{}://[{host}]:{}{}", self.scheme, self.port, self.path)
        } else {
            write!(f, "{}://{host}:{}{}", self.scheme, self.port, self.path)
        }
    }
}
