//! The full server stack as one layer: request IDs and HTTP metrics in a single service.
//!
//! Stacking [`RequestIdLayer`] and [`HttpMetricsLayer`] works, but each `Router::layer`
//! costs axum a boxed service clone and a boxed future per request. [`ObserveLayer`] does
//! both jobs in one service and one future, with the same behaviour as the two stacked
//! (request-ID layer outermost).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::http_metrics::route::RouteLabel;
use crate::http_metrics::{
    self, Config, HttpMetricsLayer, RequestBody, ResponseBody, ResponseFuture,
};
use crate::request_id::RequestIdLayer;
use crate::trace::{TraceOptions, WithContext};
use crate::Observer;
use tracing::instrument::{Instrument, Instrumented};

/// Request IDs and HTTP metrics in one layer; made by [`Observer::layer`].
///
/// ```
/// use axum::{routing::get, Router};
/// use tower_observe::Observer;
///
/// let observer = Observer::new();
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hi" }))
///     .layer(observer.layer().request_id(observer.request_id_layer().max_len(64)));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ObserveLayer {
    request_id: RequestIdLayer,
    metrics: HttpMetricsLayer,
    traces: Option<TraceOptions>,
}

impl ObserveLayer {
    /// Replaces the request-ID settings.
    pub fn request_id(mut self, layer: RequestIdLayer) -> Self {
        self.request_id = layer;
        self
    }

    /// Replaces the metrics settings.
    pub fn http_metrics(mut self, layer: HttpMetricsLayer) -> Self {
        self.metrics = layer;
        self
    }

    /// Traces requests too: W3C context extraction, a `tracing` span per request (ending with
    /// the response body, like the duration metric), the context kept current for
    /// [`PropagateLayer`](crate::trace::PropagateLayer), and exemplars for sampled
    /// requests. See [`trace`](crate::trace).
    pub fn traces(mut self, options: TraceOptions) -> Self {
        self.traces = Some(options);
        self
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            shared: Arc::new(Shared {
                metrics: self.metrics.config_echoing(self.request_id.header.clone()),
                request_id: self.request_id.clone(),
                traces: self.traces.clone(),
            }),
        }
    }
}

/// Everything a request needs from the layer, behind one `Arc`: axum clones the service
/// for every request.
#[derive(Debug)]
struct Shared {
    request_id: RequestIdLayer,
    metrics: Arc<Config>,
    traces: Option<TraceOptions>,
}

/// The service made by [`ObserveLayer`].
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Observe<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Observe<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: http_body::Body,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<MaybeTraced<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let observer = &self.shared.metrics.observer;
        let now = observer.now_nanos();
        // One clock reading serves both the ID's timestamp and the start of the measurement.
        let system_now = observer.clock().is_system().then_some(now);
        let echo = self.shared.request_id.assign_at(&mut req, system_now);
        let Some(options) = &self.shared.traces else {
            let inner = &mut self.inner;
            return http_metrics::start(
                &self.shared.metrics,
                req,
                now,
                Some(echo),
                None,
                None,
                |req| MaybeTraced::Plain {
                    inner: inner.call(req),
                },
            );
        };
        let route = RouteLabel::from_request(&req);
        let trace = options.start(&mut req, Some(route.as_str()), Some(&echo));
        let span_ids = Some(trace.context.span);
        let instrument = trace.span.span.clone();
        let (context, span) = (trace.context, trace.span);
        let inner = &mut self.inner;
        http_metrics::start(
            &self.shared.metrics,
            req,
            now,
            Some(echo),
            Some(span),
            span_ids,
            |req| {
                // The handler runs in the request's span with its context current, from its first
                // synchronous line to its last poll.
                let future = instrument.in_scope(|| inner.call(req));
                MaybeTraced::Traced {
                    inner: Box::pin(WithContext::new(future, Some(context)).instrument(instrument)),
                }
            },
        )
    }
}

pin_project! {
    /// The inner future of [`Observe`]: as is, or (boxed, so untraced requests keep a small
    /// future) in the request's span with its trace context current.
    #[project = MaybeTracedProj]
    #[allow(missing_docs)] // variant fields: the handler's future (pin-project-lite takes no docs there)
    pub enum MaybeTraced<F> {
        /// Tracing is off.
        Plain {
            #[pin]
            inner: F,
        },
        /// Tracing is on.
        Traced {
            inner: Pin<Box<Instrumented<WithContext<F>>>>,
        },
    }
}

impl<F> std::fmt::Debug for MaybeTraced<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MaybeTraced::Plain { .. } => "MaybeTraced::Plain",
            MaybeTraced::Traced { .. } => "MaybeTraced::Traced",
        })
    }
}

impl<F: Future> Future for MaybeTraced<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project() {
            MaybeTracedProj::Plain { inner } => inner.poll(cx),
            MaybeTracedProj::Traced { inner } => inner.as_mut().poll(cx),
        }
    }
}

impl Observer {
    /// Request IDs and HTTP metrics in one layer (see [`ObserveLayer`]).
    pub fn layer(&self) -> ObserveLayer {
        ObserveLayer {
            request_id: self.request_id_layer(),
            metrics: self.http_metrics_layer(),
            traces: None,
        }
    }
}
