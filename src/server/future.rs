//! Future types.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use super::body::ResponseBody;
use super::in_flight::{Finish, InFlight};
use super::panic::Place;

pin_project! {
    /// Response future of [`Observe`](super::Observe).
    ///
    /// Polls the handler's future inside the request's span with its trace context current
    /// (when traced), then hands the request's drop guard to the response body.
    pub struct ResponseFuture<F> {
        // `None`: the inner service's `call` panicked; the future answers 500.
        #[pin]
        inner: Option<F>,
        in_flight: Option<InFlight>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: Option<F>, in_flight: InFlight) -> Self {
        Self {
            inner,
            in_flight: Some(in_flight),
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
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Ok(panic_response(this.in_flight.take())));
        };
        let poll = match this.in_flight.as_mut() {
            Some(in_flight) if in_flight.config.catch_panics => {
                let poll = AssertUnwindSafe(|| inner.poll(cx));
                match in_flight.in_scope(|| catch_unwind(poll)) {
                    Ok(poll) => poll,
                    Err(payload) => {
                        super::panic::report(in_flight, &*payload, Place::Future);
                        // Its state is unknown: never polled again.
                        this.inner.set(None);
                        return Poll::Ready(Ok(panic_response(this.in_flight.take())));
                    }
                }
            }
            Some(in_flight) => in_flight.in_scope(|| inner.poll(cx)),
            None => inner.poll(cx),
        };
        let result = ready!(poll);
        let mut in_flight = this.in_flight.take();
        Poll::Ready(match result {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                if let Some(in_flight) = &mut in_flight {
                    if let (Some(ids), Some(id)) =
                        (&in_flight.config.request_id, in_flight.request_id())
                    {
                        // Always ours: the echoed ID must be the validated one the logs carry.
                        parts
                            .headers
                            .insert(ids.header.clone(), id.header_value().clone());
                    }
                    in_flight.on_response(&parts);
                }
                if in_flight.as_ref().is_some_and(|f| {
                    f.is_bodiless(parts.status)
                        || parts.extensions.get::<super::LiveStream>().is_some()
                }) {
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

/// The answer to a request whose inner service panicked: `500`, an empty body, the request ID
/// echoed; the request recorded with `error_type="panic"`.
fn panic_response<B>(in_flight: Option<InFlight>) -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::panicked());
    *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from_static("0"),
    );
    if let Some(mut in_flight) = in_flight {
        if let (Some(ids), Some(id)) = (&in_flight.config.request_id, in_flight.request_id()) {
            response
                .headers_mut()
                .insert(ids.header.clone(), id.header_value().clone());
        }
        let (parts, body) = response.into_parts();
        in_flight.on_response(&parts);
        in_flight.finish(Finish::Panic);
        response = Response::from_parts(parts, body);
    }
    response
}
