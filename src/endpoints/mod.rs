//! `GET /metrics`, `GET /v1/stats`, and every route the observer's capabilities serve
//! (`GET /health`, `GET /health/live`, `GET /v1/stats/history` with history, `POST
//! /v1/stats/reset` with a reset token, …), as an axum router fragment or a plain
//! `tower::Service` for hyper (or any Tower server) without axum.
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
//!
//! The routes are read when the router fragment or the service is made: make them from an
//! observer that is built (the builder attaches the capabilities that serve routes).

#[cfg(feature = "axum")]
mod axum;
pub(crate) mod reset;

pub(crate) use reset::ResetPending;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use tower_service::Service;

// Every path the observer serves, defined by the module that serves it, re-exported here.
#[cfg(feature = "alerts")]
pub use crate::alerts::ALERTS_PATH;
#[cfg(feature = "dashboard")]
pub use crate::dashboard::{DASHBOARD_PATH, RECENT_REQUESTS_PATH, STREAM_PATH};
pub use crate::health::{HEALTH_PATH, LIVE_PATH};
#[cfg(feature = "history")]
pub use crate::history::HISTORY_PATH;
#[cfg(feature = "log-store")]
pub use crate::log_store::{LOGS_EXPORT_PATH, LOGS_PATH, REQUEST_PATH};
pub use crate::response::EndpointBody;

use crate::observer::{Route, RouteHandler, RouteMethod};
use crate::response::{json, method_not_allowed, not_found, plain, with_type};
use crate::server::ObserverEndpoint;
use crate::Observer;

/// Content type of the Prometheus text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of the OpenMetrics text format, served when the client asks for it.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Content type of the Prometheus protobuf format (length-delimited `MetricFamily` messages,
/// with native histograms), served when the client asks for it.
pub const PROMETHEUS_PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Default path of the Prometheus endpoint.
pub const METRICS_PATH: &str = "/metrics";
/// Default path of the JSON statistics endpoint.
pub const STATS_PATH: &str = "/v1/stats";
/// Path of the statistics reset (`POST`, bearer token), present only with a reset token.
pub const RESET_PATH: &str = "/v1/stats/reset";

/// Serves the observer's endpoints on their paths and answers 404 elsewhere.
#[derive(Debug, Clone)]
#[must_use]
pub struct ObserveEndpoints {
    routes: Arc<[Route]>,
}

impl ObserveEndpoints {
    /// The endpoints of `observer`, with `/metrics` and `/v1/stats` on their default paths.
    pub fn new(observer: &Observer) -> Self {
        let mut routes = routes(observer, METRICS_PATH, STATS_PATH);
        routes.extend(off_routes(&routes, true));
        let probe = crate::server::EndpointProbe::new(observer, false);
        Self {
            routes: probed(routes, &probe).into(),
        }
    }

    /// Serves Prometheus text on `path` instead of `/metrics`.
    pub fn metrics_path(self, path: impl Into<String>) -> Self {
        self.repath(METRICS_PATH, path.into())
    }

    /// Serves the JSON statistics on `path` instead of `/v1/stats`.
    pub fn stats_path(self, path: impl Into<String>) -> Self {
        self.repath(STATS_PATH, path.into())
    }

    fn repath(self, default: &str, path: String) -> Self {
        let routes = self
            .routes
            .iter()
            .cloned()
            .map(|mut route| {
                if route.path == default {
                    route.path.clone_from(&path);
                }
                route
            })
            .collect();
        Self { routes }
    }
}

/// Every route of `observer`: its own two, then those of its capabilities.
fn routes(observer: &Observer, metrics_path: &str, stats_path: &str) -> Vec<Route> {
    let metrics = observer.clone();
    let stats = observer.clone();
    let mut routes = vec![
        Route::new(metrics_path, RouteMethod::Get, move |parts| {
            let response = metrics_response(&metrics, parts.headers.get(header::ACCEPT));
            async move { response }
        }),
        Route::new(stats_path, RouteMethod::Get, move |_| {
            let response = json(&stats.stats());
            async move { response }
        }),
    ];
    // Health is served by default, so its part is attached here if the builder did not.
    observer.health_part();
    for part in observer.parts() {
        routes.extend(part.routes(observer));
    }
    for route in &mut routes {
        route.handler = marked(route.handler.clone());
    }
    routes
}

/// `handler`, its responses marked as the observer's own ([`ObserverEndpoint`]), so the
/// server layer keeps them apart from the application's.
fn marked(handler: RouteHandler) -> RouteHandler {
    Arc::new(move |parts| {
        let answer = handler(parts);
        Box::pin(async move {
            let mut response = answer.await;
            response.extensions_mut().insert(ObserverEndpoint);
            response
        })
    })
}

/// Every route answers after the wiring probe has looked at the request (whether it came
/// through the layer; see `server/wiring.rs`).
fn probed(routes: Vec<Route>, probe: &crate::server::EndpointProbe) -> Vec<Route> {
    routes
        .into_iter()
        .map(|mut route| {
            let (probe, handler) = (probe.clone(), route.handler);
            route.handler = Arc::new(move |parts| {
                probe.reached();
                handler(parts)
            });
            route
        })
        .collect()
}

/// The capabilities that serve routes, by path: what answers there when the capability is off
/// (its feature not compiled in, or not configured on the builder). `generic` marks a path
/// outside the observer's own `/v1/…` namespace, which the axum router fragment leaves to the
/// application (merging a router with a route there would panic).
const OFF_CAPABILITIES: &[(&str, &str, &str, bool)] = &[
    (
        "/v1/stats/history",
        "history",
        "ObserverBuilder::history(...) with feature `history`",
        false,
    ),
    (
        "/v1/alerts",
        "alerting",
        "ObserverBuilder::alerts(...) with feature `alerts`",
        false,
    ),
    (
        "/v1/stats/stream",
        "the dashboard",
        "ObserverBuilder::dashboard(...) with feature `dashboard`",
        false,
    ),
    (
        "/dashboard",
        "the dashboard",
        "ObserverBuilder::dashboard(...) with feature `dashboard`",
        true,
    ),
];

/// A `GET` route on the path of every capability that is off and serves nothing there,
/// answering a JSON 404 that names the capability and how to turn it on:
/// `{"error": "history is off", "enable": "ObserverBuilder::history(...) with feature `history`"}`.
fn off_routes(served: &[Route], with_generic_paths: bool) -> Vec<Route> {
    OFF_CAPABILITIES
        .iter()
        .filter(|(path, _, _, generic)| {
            (with_generic_paths || !generic) && !served.iter().any(|r| r.path == *path)
        })
        .map(|&(path, capability, enable, _)| {
            let mut route = Route::new(path, RouteMethod::Get, move |_| {
                let mut res = json(&serde_json::json!({
                    "error": format!("{capability} is off"),
                    "enable": enable,
                }));
                *res.status_mut() = StatusCode::NOT_FOUND;
                async move { res }
            });
            route.handler = marked(route.handler);
            route
        })
        .collect()
}

/// `GET /metrics`: Prometheus text, or OpenMetrics (with exemplars) or the protobuf format
/// (with native histograms) when the client asks for it.
fn metrics_response(observer: &Observer, accept: Option<&HeaderValue>) -> Response<EndpointBody> {
    let wanted = accept.map_or(Exposition::Text, negotiate);
    // A renderer we do not own speaks Prometheus text only.
    if let (Some(registry), false) = (observer.registry(), wanted == Exposition::Text) {
        observer.refresh_parts();
        return match wanted {
            Exposition::Protobuf => {
                with_type(Bytes::from(registry.render_protobuf()), PROMETHEUS_PROTOBUF)
            }
            _ => with_type(Bytes::from(registry.render_openmetrics()), OPENMETRICS_TEXT),
        };
    }
    match observer.render_metrics() {
        Some(text) => with_type(Bytes::from(text), PROMETHEUS_TEXT),
        None => plain(
            StatusCode::NOT_FOUND,
            "this observer records into an external recorder and has no renderer; \
             configure one with ObserverBuilder::renderer",
        ),
    }
}

/// The exposition formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exposition {
    Text,
    OpenMetrics,
    Protobuf,
}

/// The format an `Accept` header prefers: an explicit protobuf range
/// (`application/vnd.google.protobuf` with `proto=io.prometheus.client.MetricFamily` and
/// `encoding=delimited`) or `application/openmetrics-text` range with a q-value at least that
/// of the others (as Prometheus sends them); `*/*` alone keeps Prometheus text.
fn negotiate(accept: &HeaderValue) -> Exposition {
    let Ok(accept) = accept.to_str() else {
        return Exposition::Text;
    };
    let (mut protobuf, mut openmetrics, mut text) = (0.0f32, 0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let (mut q, mut proto, mut delimited) = (1.0, false, false);
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "q" => q = value.parse::<f32>().unwrap_or(0.0),
                "proto" => proto = value == "io.prometheus.client.MetricFamily",
                "encoding" => delimited = value.eq_ignore_ascii_case("delimited"),
                _ => {}
            }
        }
        match media.as_str() {
            "application/vnd.google.protobuf" if proto && delimited => protobuf = protobuf.max(q),
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    if protobuf > 0.0 && protobuf >= openmetrics && protobuf >= text {
        Exposition::Protobuf
    } else if openmetrics > 0.0 && openmetrics >= text {
        Exposition::OpenMetrics
    } else {
        Exposition::Text
    }
}

/// Whether an `Accept` header prefers OpenMetrics (see [`negotiate`]).
#[cfg(test)]
fn wants_openmetrics(accept: &HeaderValue) -> bool {
    negotiate(accept) == Exposition::OpenMetrics
}

/// The response future of [`ObserveEndpoints`].
pub type EndpointFuture =
    Pin<Box<dyn Future<Output = Result<Response<EndpointBody>, Infallible>> + Send>>;

impl<B> Service<Request<B>> for ObserveEndpoints {
    type Response = Response<EndpointBody>;
    type Error = Infallible;
    type Future = EndpointFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (parts, _) = req.into_parts();
        let path = parts.uri.path();
        let mut on_path = self
            .routes
            .iter()
            .filter(|r| path_matches(&r.path, path))
            .peekable();
        let Some(first) = on_path.peek().copied() else {
            return Box::pin(async { Ok(not_found()) });
        };
        match on_path.find(|r| r.method.allows(&parts.method)) {
            Some(route) => {
                let answer = (route.handler)(parts);
                Box::pin(async move { Ok(answer.await) })
            }
            None => {
                let res = method_not_allowed(first.method.allow_header());
                Box::pin(async move { Ok(res) })
            }
        }
    }
}

/// Whether `path` is served by a route of `template`: the same path, or, for a template
/// ending in a `{name}` segment (`/v1/requests/{id}`), the same prefix and one non-empty
/// segment.
fn path_matches(template: &str, path: &str) -> bool {
    if template == path {
        return true;
    }
    let Some(prefix) = template
        .strip_suffix('}')
        .and_then(|t| t.rfind('{').map(|at| &t[..at]))
        .filter(|p| p.ends_with('/'))
    else {
        return false;
    };
    path.strip_prefix(prefix)
        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
}

impl Observer {
    /// The endpoints as a plain `tower::Service` (for hyper without axum).
    pub fn endpoints(&self) -> ObserveEndpoints {
        ObserveEndpoints::new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[test]
    fn a_template_with_a_final_parameter_takes_one_segment() {
        assert!(path_matches("/metrics", "/metrics"));
        assert!(!path_matches("/metrics", "/metrics/x"));
        let t = "/v1/requests/{id}";
        assert!(path_matches(t, "/v1/requests/req-1"));
        assert!(path_matches(t, t));
        assert!(!path_matches(t, "/v1/requests/"));
        assert!(!path_matches(t, "/v1/requests"));
        assert!(!path_matches(t, "/v1/requests/a/b"));
        assert!(!path_matches(t, "/v1/requestsx"));
    }

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
    fn protobuf_is_served_when_asked_for_first() {
        // What Prometheus 2.x sends with `--enable-feature=native-histograms`.
        let prometheus = HeaderValue::from_static(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        );
        assert_eq!(negotiate(&prometheus), Exposition::Protobuf);
        let with_openmetrics_first = HeaderValue::from_static(
            "application/openmetrics-text;version=1.0.0,application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5",
        );
        assert_eq!(negotiate(&with_openmetrics_first), Exposition::OpenMetrics);
        // Not the delimited MetricFamily stream: not ours to guess.
        for other in [
            "application/vnd.google.protobuf",
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text",
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0",
        ] {
            assert_eq!(negotiate(&HeaderValue::from_static(other)), Exposition::Text, "{other}");
        }
        assert_eq!(
            negotiate(&HeaderValue::from_static("*/*")),
            Exposition::Text
        );
    }

    #[tokio::test]
    async fn metrics_answers_in_the_negotiated_format() {
        let observer = Observer::new();
        for (accept, content_type) in [
            (None, PROMETHEUS_TEXT),
            (Some("application/openmetrics-text"), OPENMETRICS_TEXT),
            (
                Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"),
                PROMETHEUS_PROTOBUF,
            ),
        ] {
            let mut req = Request::get(METRICS_PATH);
            if let Some(accept) = accept {
                req = req.header(header::ACCEPT, accept);
            }
            let res = observer
                .endpoints()
                .oneshot(req.body(()).unwrap())
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            assert_eq!(res.headers()[header::CONTENT_TYPE], content_type);
        }
    }

    #[tokio::test]
    async fn a_capability_that_is_off_answers_a_json_404_naming_it() {
        let observer = Observer::new();
        for (path, error, enable) in [
            (
                "/v1/stats/history",
                "history is off",
                "ObserverBuilder::history(...) with feature `history`",
            ),
            (
                "/v1/alerts",
                "alerting is off",
                "ObserverBuilder::alerts(...) with feature `alerts`",
            ),
            (
                "/dashboard",
                "the dashboard is off",
                "ObserverBuilder::dashboard(...) with feature `dashboard`",
            ),
        ] {
            let res = observer
                .endpoints()
                .oneshot(Request::get(path).body(()).unwrap())
                .await
                .unwrap();
            assert_eq!(res.status(), 404, "{path}");
            let body = http_body_util::BodyExt::collect(res.into_body())
                .await
                .unwrap()
                .to_bytes();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"], error, "{path}");
            assert_eq!(body["enable"], enable, "{path}");
        }
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
