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

/// What a request knows from its arrival until it is recorded. Whoever holds it last
/// (the future, then the body) records it exactly once, on every path: end, error, drop.
pub(crate) struct InFlight {
    pub(crate) config: Arc<Config>,
    /// `Clock::now_nanos` at arrival.
    pub(crate) start: u64,
    pub(crate) method: HttpMethod,
    pub(crate) scheme: Scheme,
    pub(crate) route: RouteLabel,
    /// Boxed: rare, and keeps the state every request moves around small.
    pub(crate) dimensions: Option<Box<Dimensions>>,
    pub(crate) request_bytes: Option<Arc<AtomicU64>>,
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
    fn finish(self, status: Option<u16>, failed_status: bool, response_bytes: u64, how: Finish) {
        let (error, outcome) = match how {
            Finish::Complete if failed_status => (Some(ErrorType::Status), Outcome::Failure),
            Finish::Complete => (None, Outcome::Success),
            Finish::BodyError => (Some(ErrorType::Named(ERROR_BODY)), Outcome::Failure),
            Finish::Aborted => (Some(ErrorType::Named(ERROR_ABORTED)), Outcome::Aborted),
            Finish::ServiceError => (Some(ErrorType::Named(ERROR_SERVICE)), Outcome::Failure),
        };
        let observer = &self.config.observer;
        observer.record_http(&HttpCompletion {
            method: self.method,
            route: self.route.as_str(),
            scheme: self.scheme,
            status,
            error,
            outcome,
            dimensions: self.dimensions.as_deref(),
            start: self.start,
            end: observer.now_nanos(),
            request_bytes: self.request_bytes.map_or(0, |c| c.load(Relaxed)),
            response_bytes,
        });
    }
}

/// A request whose headers are out and whose body is streaming.
pub(crate) struct Recording {
    in_flight: InFlight,
    status: u16,
    failed_status: bool,
    pub(crate) response_bytes: u64,
}

impl Recording {
    pub(crate) fn finish(self, how: Finish) {
        self.in_flight.finish(
            Some(self.status),
            self.failed_status,
            self.response_bytes,
            how,
        );
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

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before the handler answered: the client went away (or a timeout fired).
            if let Some(in_flight) = this.project().in_flight.take() {
                in_flight.finish(None, false, 0, Finish::Aborted);
            }
        }
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
        let in_flight = this.in_flight.take();
        Poll::Ready(match result {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                if let (Some(value), Some(in_flight)) = (this.echo.take(), &in_flight) {
                    if let Some(name) = &in_flight.config.echo_header {
                        parts.headers.insert(name.clone(), value);
                    }
                }
                let recording = in_flight.map(|mut in_flight| {
                    let route = std::mem::replace(&mut in_flight.route, RouteLabel::Unmatched);
                    in_flight.route = route.or_from_response(&parts.extensions);
                    let wanted = !in_flight.config.observer.dimensions().is_empty();
                    if let Some(extra) = wanted
                        .then(|| parts.extensions.get::<Dimensions>())
                        .flatten()
                    {
                        match &mut in_flight.dimensions {
                            Some(dims) => dims.merge(extra),
                            None => in_flight.dimensions = Some(Box::new(extra.clone())),
                        }
                    }
                    Recording {
                        failed_status: in_flight.config.is_failure(parts.status),
                        status: parts.status.as_u16(),
                        in_flight,
                        response_bytes: 0,
                    }
                });
                Ok(Response::from_parts(
                    parts,
                    ResponseBody::new(body, recording),
                ))
            }
            Err(error) => {
                if let Some(in_flight) = in_flight {
                    in_flight.finish(None, false, 0, Finish::ServiceError);
                }
                Err(error)
            }
        })
    }
}
