//! `GET /metrics`, `GET /v1/stats`, `GET /health`, `GET /health/live` and (with a reset
//! token) `POST /v1/stats/reset`, as an axum router fragment or a plain `tower::Service` for
//! hyper (or any Tower server) without axum.
//!
//! ```
//! use tower_observe::{endpoints::ObserveEndpoints, Observer};
//!
//! # async fn demo() {
//! use tower::ServiceExt;
//! let observer = Observer::new();
//! let endpoints = ObserveEndpoints::new(&observer);
//! let req = http::Request::get("/v1/stats").body(()).unwrap();
//! let res = endpoints.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! # }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo());
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use tower_service::Service;

use crate::Observer;

/// Content type of the Prometheus text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of the OpenMetrics text format, served when the client asks for it.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Default path of the Prometheus endpoint.
pub const METRICS_PATH: &str = "/metrics";
/// Default path of the JSON statistics endpoint.
pub const STATS_PATH: &str = "/v1/stats";
/// Path of the readiness endpoint (error rate, dependency checks).
pub const HEALTH_PATH: &str = "/health";
/// Path of the liveness endpoint.
pub const LIVE_PATH: &str = "/health/live";
/// Path of the history query (feature `history`, when configured).
pub const HISTORY_PATH: &str = "/v1/stats/history";
/// Path of the statistics reset (`POST`, bearer token), present only with a reset token.
pub const RESET_PATH: &str = "/v1/stats/reset";

/// Serves the observer's endpoints on their paths and answers 404 elsewhere.
#[derive(Debug, Clone)]
#[must_use]
pub struct ObserveEndpoints {
    observer: Observer,
    metrics_path: String,
    stats_path: String,
}

impl ObserveEndpoints {
    /// The endpoints of `observer`, on `/metrics` and `/v1/stats`.
    pub fn new(observer: &Observer) -> Self {
        Self {
            observer: observer.clone(),
            metrics_path: METRICS_PATH.to_owned(),
            stats_path: STATS_PATH.to_owned(),
        }
    }

    /// Serves Prometheus text on `path` instead of `/metrics`.
    pub fn metrics_path(mut self, path: impl Into<String>) -> Self {
        self.metrics_path = path.into();
        self
    }

    /// Serves the JSON statistics on `path` instead of `/v1/stats`.
    pub fn stats_path(mut self, path: impl Into<String>) -> Self {
        self.stats_path = path.into();
        self
    }

    fn route(&self, path: &str) -> Option<Endpoint> {
        Some(if path == self.metrics_path {
            Endpoint::Metrics
        } else if path == self.stats_path {
            Endpoint::Stats
        } else if path == HEALTH_PATH && self.observer.health_enabled() {
            Endpoint::Health
        } else if path == LIVE_PATH && self.observer.health_enabled() {
            Endpoint::Live
        } else if path == RESET_PATH && self.observer.reset_enabled() {
            Endpoint::Reset
        } else if path == HISTORY_PATH && history_enabled(&self.observer) {
            Endpoint::History
        } else {
            return None;
        })
    }
}

fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut res = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    res
}

/// `GET /health`.
pub(crate) async fn health_response(observer: &Observer) -> Response<Full<Bytes>> {
    let report = observer.health().await;
    let mut res = json(&report);
    if res.status() == StatusCode::OK {
        *res.status_mut() = report.http_status();
    }
    res
}

/// `POST /v1/stats/reset`.
pub(crate) fn reset_response(
    observer: &Observer,
    authorization: Option<&HeaderValue>,
) -> Response<Full<Bytes>> {
    use crate::health::ResetAuth;
    match observer.authorize_reset(authorization.map(HeaderValue::as_bytes)) {
        None => plain(StatusCode::NOT_FOUND, "not found"),
        Some(ResetAuth::Missing) => {
            let mut res = plain(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required: Authorization: Bearer <token>",
            );
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            res
        }
        Some(ResetAuth::Invalid) => plain(StatusCode::FORBIDDEN, "invalid token"),
        Some(ResetAuth::Granted) => {
            observer.reset_stats();
            json(&serde_json::json!({
                "reset": true,
                "at": crate::time_fmt::rfc3339(observer.clock().wall()),
            }))
        }
    }
}

fn history_enabled(observer: &Observer) -> bool {
    #[cfg(feature = "history")]
    return observer.history().is_some();
    #[cfg(not(feature = "history"))]
    {
        let _ = observer;
        false
    }
}

/// `GET /v1/stats/history`: JSON, or CSV with `format=csv` or `Accept: text/csv`.
pub(crate) fn history_response(
    observer: &Observer,
    query: Option<&str>,
    accept: Option<&HeaderValue>,
) -> Response<Full<Bytes>> {
    #[cfg(feature = "history")]
    if let Some(history) = observer.history() {
        let wants_csv = accept
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.to_ascii_lowercase().contains("text/csv"));
        return match history.query_str(query, wants_csv) {
            Ok(answer) if answer.csv => with_type(
                Bytes::from(answer.response.to_csv()),
                "text/csv; charset=utf-8",
            ),
            Ok(answer) => json(&answer.response),
            Err(crate::history::QueryError::Storage(e)) => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("history unavailable: {e}"),
            ),
            Err(e) => plain(StatusCode::BAD_REQUEST, &e.to_string()),
        };
    }
    let _ = (observer, query, accept);
    plain(StatusCode::NOT_FOUND, "not found")
}

fn json<T: serde::Serialize>(value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(body) => with_type(Bytes::from(body), "application/json"),
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("could not encode the response: {e}"),
        ),
    }
}

/// One of the observer's endpoints.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Endpoint {
    Metrics,
    Stats,
    Health,
    Live,
    Reset,
    History,
}

impl Endpoint {
    pub(crate) fn respond(
        self,
        observer: &Observer,
        accept: Option<&HeaderValue>,
    ) -> Response<Full<Bytes>> {
        match self {
            Endpoint::Metrics if accept.is_some_and(wants_openmetrics) => {
                match observer
                    .registry()
                    .map(crate::registry::Registry::render_openmetrics)
                {
                    Some(text) => with_type(Bytes::from(text), OPENMETRICS_TEXT),
                    // A renderer we do not own speaks Prometheus text only.
                    None => Endpoint::Metrics.respond(observer, None),
                }
            }
            Endpoint::Metrics => match observer.render_metrics() {
                Some(text) => with_type(Bytes::from(text), PROMETHEUS_TEXT),
                None => plain(
                    StatusCode::NOT_FOUND,
                    "this observer records into an external recorder and has no renderer; \
                     configure one with ObserverBuilder::renderer",
                ),
            },
            Endpoint::Stats => json(&observer.stats()),
            Endpoint::Live => json(&serde_json::json!({ "status": "alive" })),
            // Asynchronous (checks) or with a body of their own: answered by their callers.
            Endpoint::Health | Endpoint::Reset | Endpoint::History => {
                plain(StatusCode::NOT_FOUND, "not found")
            }
        }
    }
}

/// Whether an `Accept` header prefers OpenMetrics to Prometheus text: an explicit
/// `application/openmetrics-text` range with a q-value at least that of `text/plain` (as
/// Prometheus sends it); `*/*` alone keeps the classic format.
fn wants_openmetrics(accept: &HeaderValue) -> bool {
    let Ok(accept) = accept.to_str() else {
        return false;
    };
    let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    openmetrics > 0.0 && openmetrics >= text
}

fn with_type(body: Bytes, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn plain(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut res = with_type(
        Bytes::from(format!("{message}\n")),
        "text/plain; charset=utf-8",
    );
    *res.status_mut() = status;
    res
}

/// The response future of [`ObserveEndpoints`].
pub type EndpointFuture =
    Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

impl<B> Service<Request<B>> for ObserveEndpoints {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = EndpointFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (parts, _) = req.into_parts();
        let observer = self.observer.clone();
        let endpoint = self.route(parts.uri.path());
        Box::pin(async move {
            let get = parts.method == Method::GET || parts.method == Method::HEAD;
            Ok(match endpoint {
                None => plain(StatusCode::NOT_FOUND, "not found"),
                Some(Endpoint::Reset) if parts.method == Method::POST => {
                    reset_response(&observer, parts.headers.get(header::AUTHORIZATION))
                }
                Some(Endpoint::Reset) => method_not_allowed("POST"),
                Some(_) if !get => method_not_allowed("GET, HEAD"),
                Some(Endpoint::Health) => health_response(&observer).await,
                Some(Endpoint::History) => history_response(
                    &observer,
                    parts.uri.query(),
                    parts.headers.get(header::ACCEPT),
                ),
                Some(e) => e.respond(&observer, parts.headers.get(header::ACCEPT)),
            })
        })
    }
}

impl Observer {
    /// The endpoints as a plain `tower::Service` (for hyper without axum).
    pub fn endpoints(&self) -> ObserveEndpoints {
        ObserveEndpoints::new(self)
    }
}

#[cfg(feature = "axum")]
mod router {
    use axum::routing::{get, post};
    use axum::Router;
    use http::{header, HeaderMap};

    use super::{
        health_response, history_enabled, history_response, reset_response, Endpoint, HEALTH_PATH,
        HISTORY_PATH, LIVE_PATH, METRICS_PATH, RESET_PATH, STATS_PATH,
    };
    use crate::Observer;

    impl Observer {
        /// An axum router fragment serving `GET /metrics`, `GET /v1/stats`, `GET /health`,
        /// `GET /health/live` and, when a reset token is configured, `POST /v1/stats/reset`;
        /// merge it into your app with `Router::merge`.
        ///
        /// ```
        /// use axum::Router;
        /// let observer = tower_observe::Observer::new();
        /// let app: Router = Router::new().merge(observer.router());
        /// ```
        pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
            let metrics = self.clone();
            let stats = self.clone();
            let health = self.clone();
            let live = self.clone();
            let mut router =
                Router::new()
                    .route(
                        METRICS_PATH,
                        get(move |headers: HeaderMap| {
                            let observer = metrics.clone();
                            async move {
                                Endpoint::Metrics.respond(&observer, headers.get(header::ACCEPT))
                            }
                        }),
                    )
                    .route(
                        STATS_PATH,
                        get(move || {
                            let observer = stats.clone();
                            async move { Endpoint::Stats.respond(&observer, None) }
                        }),
                    );
            if self.health_enabled() {
                router = router
                    .route(
                        HEALTH_PATH,
                        get(move || {
                            let observer = health.clone();
                            async move { health_response(&observer).await }
                        }),
                    )
                    .route(
                        LIVE_PATH,
                        get(move || {
                            let observer = live.clone();
                            async move { Endpoint::Live.respond(&observer, None) }
                        }),
                    );
            }
            if history_enabled(self) {
                let history = self.clone();
                router = router.route(
                    HISTORY_PATH,
                    get(move |uri: http::Uri, headers: HeaderMap| {
                        let observer = history.clone();
                        async move {
                            history_response(&observer, uri.query(), headers.get(header::ACCEPT))
                        }
                    }),
                );
            }
            if !self.reset_enabled() {
                return router;
            }
            let reset = self.clone();
            router.route(
                RESET_PATH,
                post(move |headers: HeaderMap| {
                    let observer = reset.clone();
                    async move { reset_response(&observer, headers.get(header::AUTHORIZATION)) }
                }),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn routes_and_methods() {
        let observer = Observer::new();
        let svc = observer.endpoints();
        let res = svc
            .clone()
            .oneshot(Request::get("/metrics").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()[header::CONTENT_TYPE], PROMETHEUS_TEXT);
        let res = svc
            .clone()
            .oneshot(Request::get("/nope").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        let res = svc
            .oneshot(Request::post("/v1/stats").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 405);
    }

    #[test]
    fn accept_negotiation() {
        let prometheus_scraper = HeaderValue::from_static(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        );
        assert!(wants_openmetrics(&prometheus_scraper));
        assert!(!wants_openmetrics(&HeaderValue::from_static("*/*")));
        assert!(!wants_openmetrics(&HeaderValue::from_static("text/plain")));
        assert!(!wants_openmetrics(&HeaderValue::from_static(
            "application/openmetrics-text;q=0.2, text/plain"
        )));
        assert!(!wants_openmetrics(&HeaderValue::from_static(
            "application/openmetrics-text;q=0"
        )));
        assert!(wants_openmetrics(&HeaderValue::from_static(
            "Application/OpenMetrics-Text"
        )));
    }

    #[tokio::test]
    async fn external_recorder_without_renderer_is_a_clear_404() {
        let observer = Observer::builder()
            .recorder(metrics::NoopRecorder)
            .build()
            .unwrap();
        let res = observer
            .endpoints()
            .oneshot(Request::get("/metrics").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
    }
}
