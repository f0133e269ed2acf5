//! The response future, and the state a request carries until its recording.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{HeaderValue, Response};
use pin_project_lite::pin_project;

use super::route::RouteLabel;
use super::{Config, ResponseBody};
use crate::labels::{Dimensions, HttpMethod};
use crate::names::{ERROR_ABORTED, ERROR_BODY, ERROR_SERVICE};
use crate::observer::{ErrorType, HttpCompletion, Scheme};
use crate::stats::Outcome;
use crate::trace::SpanHandle;
use crate::trace::SpanIds;

/// What a request knows from its arrival until it is recorded.
///
/// It is a drop guard: it moves from the service call into the response future, then into the
/// response body, and records exactly once — when told how the request ended, or, if it is
/// dropped first (client gone, timeout, a panic in the inner service), as `aborted`. So the
/// active-requests gauge always comes back down.
pub(crate) struct InFlight {
    pub(crate) config: Arc<Config>,
    /// Everything known when the request arrived.
    pub(crate) arrival: Arrival,
    /// Known once the response headers are out.
    pub(crate) status: Option<u16>,
    pub(crate) failed_status: bool,
    pub(crate) response_bytes: u64,
    recorded: bool,
}

/// What is known of a request when it arrives.
pub(crate) struct Arrival {
    /// `Clock::now_nanos` at arrival.
    pub(crate) start: u64,
    pub(crate) method: HttpMethod,
    pub(crate) scheme: Scheme,
    pub(crate) route: RouteLabel,
    /// Boxed: rare, and keeps the state every request moves around small.
    pub(crate) dimensions: Option<Box<Dimensions>>,
    pub(crate) request_bytes: Option<Arc<AtomicU64>>,
    /// The serving span, for an exemplar (from the request or response extensions).
    pub(crate) span_ids: Option<SpanIds>,
    /// The request's tracing span, closed when the request is recorded.
    pub(crate) span: Option<SpanHandle>,
}

/// How a request ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Finish {
    Complete,
    BodyError,
    Aborted,
    ServiceError,
}

impl InFlight {
    pub(crate) fn new(config: Arc<Config>, arrival: Arrival) -> Self {
        Self {
            config,
            arrival,
            status: None,
            failed_status: false,
            response_bytes: 0,
            recorded: false,
        }
    }

    /// Records the request (the first call only).
    pub(crate) fn finish(&mut self, how: Finish) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let (error, outcome) = match how {
            Finish::Complete if self.failed_status => (Some(ErrorType::Status), Outcome::Failure),
            Finish::Complete => (None, Outcome::Success),
            Finish::BodyError => (Some(ErrorType::Named(ERROR_BODY)), Outcome::Failure),
            Finish::Aborted => (Some(ErrorType::Named(ERROR_ABORTED)), Outcome::Aborted),
            Finish::ServiceError => (Some(ErrorType::Named(ERROR_SERVICE)), Outcome::Failure),
        };
        let observer = &self.config.observer;
        let end = observer.now_nanos();
        observer.record_http(&HttpCompletion {
            method: self.arrival.method,
            route: self.arrival.route.as_str(),
            scheme: self.arrival.scheme,
            status: self.status,
            error,
            outcome,
            dimensions: self.arrival.dimensions.as_deref(),
            start: self.arrival.start,
            end,
            request_bytes: self
                .arrival
                .request_bytes
                .as_ref()
                .map_or(0, |c| c.load(Relaxed)),
            response_bytes: self.response_bytes,
            exemplar: self.arrival.span_ids.filter(|ids| ids.sampled),
        });
        if let Some(span) = self.arrival.span.take() {
            let status_text = self
                .status
                .map(|s| itoa::Buffer::new().format(s).to_owned());
            let error_text = match error {
                Some(ErrorType::Status) => status_text.as_deref(),
                Some(ErrorType::Named(name)) => Some(name),
                None => None,
            };
            span.close(
                self.status,
                error_text,
                end.saturating_sub(self.arrival.start),
            );
        }
    }

    /// Whether this response carries no body on the wire (HEAD, 1xx, 204, 304, a successful
    /// CONNECT): servers drop such bodies unpolled, so the response is complete at its headers.
    fn is_bodiless(&self, status: http::StatusCode) -> bool {
        self.arrival.method == HttpMethod::Head
            || status.is_informational()
            || status == http::StatusCode::NO_CONTENT
            || status == http::StatusCode::NOT_MODIFIED
            || (self.arrival.method == HttpMethod::Connect && status.is_success())
    }

    /// Takes in what the response headers tell.
    fn on_response(&mut self, parts: &http::response::Parts) {
        self.status = Some(parts.status.as_u16());
        self.failed_status = self.config.is_failure(parts.status);
        if self.arrival.route.is_unmatched() {
            self.arrival.route = RouteLabel::from_response(&parts.extensions);
        }
        if let Some(ids) = parts.extensions.get::<SpanIds>() {
            self.arrival.span_ids = Some(*ids);
        }
        if self.config.observer.dimensions().is_empty() {
            return;
        }
        if let Some(extra) = parts.extensions.get::<Dimensions>() {
            match &mut self.arrival.dimensions {
                Some(dims) => dims.merge(extra),
                None => self.arrival.dimensions = Some(Box::new(extra.clone())),
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.finish(Finish::Aborted);
    }
}

pin_project! {
    /// Response future of [`HttpMetrics`](super::HttpMetrics).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
        // Set by the fused `ObserveLayer`: the request ID to echo (the header name is in
        // the config, to keep this future small).
        echo: Option<HeaderValue>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, in_flight: InFlight, echo: Option<HeaderValue>) -> Self {
        Self {
            inner,
            in_flight: Some(in_flight),
            echo,
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut in_flight = this.in_flight.take();
        Poll::Ready(match result {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                if let Some(in_flight) = &mut in_flight {
                    if let (Some(value), Some(name)) =
                        (this.echo.take(), &in_flight.config.echo_header)
                    {
                        parts.headers.insert(name.clone(), value);
                    }
                    in_flight.on_response(&parts);
                }
                if in_flight
                    .as_ref()
                    .is_some_and(|f| f.is_bodiless(parts.status))
                {
                    if let Some(mut f) = in_flight.take() {
                        f.finish(Finish::Complete);
                    }
                }
                Ok(Response::from_parts(
                    parts,
                    ResponseBody::new(body, in_flight),
                ))
            }
            Err(error) => {
                if let Some(in_flight) = &mut in_flight {
                    in_flight.finish(Finish::ServiceError);
                }
                Err(error)
            }
        })
    }
}
