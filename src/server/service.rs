//! [`Observe`]: the service, and the one `call` that starts measuring a request.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::body::{RequestBody, ResponseBody};
use super::future::ResponseFuture;
use super::in_flight::InFlight;
use super::layer::Config;
use super::panic::Place;
use super::route::RouteLabel;
use super::series::Scheme;
use crate::request_id::RequestId;

/// The service made by [`ObserveLayer`](super::ObserveLayer).
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Observe<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observe")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Observe<S> {
    pub(super) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Observe<S>
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

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let observer = &config.observer;
        let start = observer.now_nanos();
        // One clock reading serves both the ID's timestamp and the start of the measurement.
        let request_id = config.request_id.as_ref().map(|ids| {
            let system_now = observer.clock().is_system().then_some(start);
            ids.assign_at(&mut req, system_now)
        });
        let route = RouteLabel::from_request(&req);
        let method = observer.http_method(req.method());
        let scheme = match req.uri().scheme() {
            Some(s) if *s == http::uri::Scheme::HTTPS => Scheme::Https,
            Some(_) => Scheme::Http,
            None => config.default_scheme,
        };
        // The ID this layer gave the request, or one an outer layer did.
        let request_id = request_id.or_else(|| req.extensions().get::<RequestId>().cloned());
        let trace = config.traces.as_ref().map(|options| {
            options.start(
                &mut req,
                method,
                Some(route.as_str()),
                scheme.as_str(),
                request_id.clone(),
            )
        });
        // Armed before the inner call: even a panic in it brings the active gauge back down.
        let arrival = (start, method, scheme, route);
        let mut in_flight = InFlight::arrive(config.clone(), &req, arrival, trace, request_id);
        let (parts, body) = req.into_parts();
        let (body, request_bytes) = RequestBody::wrap(body);
        in_flight.count_request_bytes(request_bytes);
        let req = Request::from_parts(parts, body);
        let inner = &mut self.inner;
        // The handler runs in the request's span with its context current, from its first
        // synchronous line to its last poll.
        let future = if config.catch_panics {
            let call = AssertUnwindSafe(|| inner.call(req));
            match in_flight.in_scope(|| catch_unwind(call)) {
                Ok(future) => Some(future),
                Err(payload) => {
                    super::panic::report(&mut in_flight, &*payload, Place::Call);
                    None
                }
            }
        } else {
            Some(in_flight.in_scope(|| inner.call(req)))
        };
        ResponseFuture::new(future, in_flight)
    }
}
